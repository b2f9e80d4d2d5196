/* libFuzzer target for the value parsers behind corral.conf and corralctl's
 * flags (durations, sizes, percentages, integers, ranges, rates, lists,
 * amounts of money, budgets, price lines, ${CREDENTIALS_DIRECTORY} paths),
 * the [redis] url and the exec handler's command splitter. Each parser gets the whole input; what
 * it accepts must keep its promises (bounds, order, no blank list items). */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/config.h"
#include "corral/cost.h"
#include "corral/queue.h"
#include "corral/redis.h"
#include "split.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    setenv("CREDENTIALS_DIRECTORY", "/run/credentials/corrald.service", 1);
    return 0;
}

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "check failed: %s (input \"%s\")\n", #c, s);                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_err(const char *s, int rc, const struct corral_err *err)
{
    if (rc < 0)
        CHECK(err->code != CORRAL_OK && err->msg[0] != '\0' && strlen(err->msg) < sizeof(err->msg));
}

static void parse_values(const char *s)
{
    struct corral_err err;
    int64_t a = 0, b = 0;
    int pm = 0;
    int rc = corral_parse_duration_ms(s, &a, &err);
    check_err(s, rc, &err);
    if (rc == 0)
        CHECK(a >= 0);
    rc = corral_parse_size(s, &a, &err);
    check_err(s, rc, &err);
    if (rc == 0)
        CHECK(a >= 0);
    rc = corral_parse_percent_pm(s, &pm, &err);
    check_err(s, rc, &err);
    if (rc == 0)
        CHECK(pm >= 0 && pm <= 1000);
    rc = corral_parse_int(s, 1, 1000, &a, &err);
    check_err(s, rc, &err);
    if (rc == 0)
        CHECK(a >= 1 && a <= 1000);
    rc = corral_parse_int(s, INT64_MIN + 1, INT64_MAX, &a, &err);
    check_err(s, rc, &err);
    rc = corral_parse_range_ms(s, &a, &b, &err);
    check_err(s, rc, &err);
    if (rc == 0)
        CHECK(a >= 0 && a <= b);
    rc = corral_parse_rate(s, &a, &b, &err);
    check_err(s, rc, &err);
    if (rc == 0)
        CHECK(a >= 1 && b >= 1);
    struct corral_strlist l;
    rc = corral_parse_list(s, &l, &err);
    check_err(s, rc, &err);
    if (rc == 0) {
        CHECK(l.n >= 1);
        for (size_t i = 0; i < l.n; i++) {
            const char *it = l.items[i];
            size_t n = strlen(it);
            CHECK(n > 0 && !isspace((unsigned char)it[0]) && !isspace((unsigned char)it[n - 1]) &&
                  strchr(it, ',') == NULL);
        }
        corral_strlist_free(&l);
    }
}

/* Money: what is accepted is within its bound and formats back into text
 * that reads the same value (the --check dump relies on it). */
static void parse_money(const char *s)
{
    struct corral_err err;
    int64_t a = -1, b = -1;
    int rc = corral_money_parse(s, CORRAL_PRICE_MAX_NANO, &a, &err);
    check_err(s, rc, &err);
    if (rc == 0) {
        CHECK(a >= 0 && a <= CORRAL_PRICE_MAX_NANO);
        char text[48];
        int64_t back = -1;
        corral_money_format(a, text, sizeof(text));
        CHECK(corral_money_parse(text, CORRAL_PRICE_MAX_NANO, &back, NULL) == 0 && back == a);
    }
    rc = corral_money_rate_parse(s, &a, &b, &err);
    check_err(s, rc, &err);
    if (rc == 0)
        CHECK(a >= 1 && a <= CORRAL_BUDGET_MAX_NANO && b >= 1);
    char model[CORRAL_MODEL_MAX + 1];
    rc = corral_price_line_parse(s, model, sizeof(model), &a, &b, &err);
    check_err(s, rc, &err);
    if (rc == 0) {
        size_t n = strlen(model);
        CHECK(n >= 1 && n <= CORRAL_MODEL_MAX && strpbrk(model, " \t") == NULL);
        CHECK(a >= 0 && a <= CORRAL_PRICE_MAX_NANO && b >= 0 && b <= CORRAL_PRICE_MAX_NANO);
        int64_t cost = corral_cost_nano(CORRAL_TOKENS_MAX, CORRAL_TOKENS_MAX, a, b);
        CHECK(cost >= 0 && cost <= 2 * CORRAL_TOKENS_MAX * (CORRAL_PRICE_MAX_NANO / 1000000));
        CHECK(corral_model_matches(model, model));
    }
}

static void parse_other(const char *s)
{
    struct corral_err err;
    char *p = corral_expand_path(s, &err);
    if (p != NULL)
        CHECK(strstr(p, "${") == NULL || strstr(s, "${CREDENTIALS_DIRECTORY}") != NULL);
    free(p);

    struct corral_redis_addr addr;
    memset(&addr, 0, sizeof(addr));
    int rc = corral_redis_parse_url(s, &addr, &err);
    check_err(s, rc, &err);
    if (rc == 0) {
        CHECK((addr.host != NULL) != (addr.path != NULL));
        CHECK(addr.db >= 0);
        if (addr.host != NULL)
            CHECK(addr.port > 0 && addr.port <= 65535);
    }
    corral_redis_addr_free(&addr);

    char **argv = corral_split_command(s, &err);
    if (argv != NULL) {
        CHECK(argv[0] != NULL);
        corral_argv_free(argv);
    }

    if (corral_queue_name_valid(s))
        CHECK(strlen(s) >= 1 && strlen(s) <= 64);
    (void)corral_service_name_valid(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    parse_values(s);
    parse_money(s);
    parse_other(s);
    free(s);
    return 0;
}

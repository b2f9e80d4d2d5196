/* libFuzzer target for what the token ledger reads: the input is an AI
 * answer body (usage, model) and, the same bytes, a job's payload (the
 * token estimate) and a `tokens` option's JSON value. Counts stay in
 * range, a settlement takes each count from the answer or the estimate and
 * says which, its cost is the cost of its counts, and the record's JSON
 * parses back to the same values. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "corral/tokens.h"
#include "usage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "check failed: %s\n", #c);                                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_usage(const struct corral_usage *u)
{
    CHECK(u->input_tokens >= -1 && u->input_tokens <= CORRAL_TOKENS_MAX);
    CHECK(u->output_tokens >= -1 && u->output_tokens <= CORRAL_TOKENS_MAX);
    size_t n = strlen(u->model);
    CHECK(n <= CORRAL_MODEL_MAX);
    for (size_t i = 0; i < n; i++)
        CHECK((unsigned char)u->model[i] > 0x20 && (unsigned char)u->model[i] < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);

    /* The answer, whole and as one streamed event: the same counts. */
    struct corral_usage a, b;
    corral_usage_init(&a);
    corral_usage_init(&b);
    corral_usage_from_body(&a, buf, size);
    check_usage(&a);
    json_t *root = json_loadb(buf, size, 0, NULL);
    corral_usage_from_event(&b, root);
    check_usage(&b);
    if (json_is_object(root) && json_object_get(root, "message") == NULL &&
        json_object_get(root, "response") == NULL)
        CHECK(a.input_tokens == b.input_tokens && a.output_tokens == b.output_tokens &&
              a.bad == b.bad && strcmp(a.model, b.model) == 0);
    /* Reading it again changes nothing: running totals replace. */
    struct corral_usage again = b;
    corral_usage_from_event(&again, root);
    CHECK(again.input_tokens == b.input_tokens && again.output_tokens == b.output_tokens);
    json_decref(root);

    /* The same bytes as a payload. */
    struct corral_estimate est;
    int bpt = size > 0 ? data[0] % 9 : 4;
    corral_tokens_estimate(buf, size, bpt, 0, &est);
    CHECK(est.source == CORRAL_ESTIMATE_PAYLOAD);
    CHECK(est.input_tokens >= 0 && est.input_tokens <= CORRAL_TOKENS_MAX);
    CHECK(est.output_tokens >= 0 && est.output_tokens <= CORRAL_TOKENS_MAX);
    CHECK(est.output_tokens == corral_tokens_output_cap(buf, size));
    CHECK(est.input_tokens ==
          (int64_t)((size + (size_t)(bpt < 1 ? 1 : bpt) - 1) / (size_t)(bpt < 1 ? 1 : bpt)));
    CHECK(strlen(est.model) <= CORRAL_MODEL_MAX);

    /* Settled at a service with prices. */
    struct corral_price line = {"gpt-4o", 2500000000LL, 10000000000LL};
    struct corral_service_conf sv;
    memset(&sv, 0, sizeof(sv));
    sv.prices.items = &line;
    sv.prices.n = 1;
    sv.price_input_nano = 37500000;
    sv.price_output_nano = 150000000;
    struct corral_job_usage ju;
    corral_usage_settle(&a, &est, &sv, &ju);
    CHECK(ju.input_tokens == (a.input_tokens >= 0 ? a.input_tokens : est.input_tokens));
    CHECK(ju.output_tokens == (a.output_tokens >= 0 ? a.output_tokens : est.output_tokens));
    CHECK(ju.estimated == (a.bad || a.input_tokens < 0 || a.output_tokens < 0));
    int64_t pin, pout;
    corral_price_for(&sv, ju.model, &pin, &pout);
    CHECK(ju.cost_nano == corral_cost_nano(ju.input_tokens, ju.output_tokens, pin, pout));
    CHECK(ju.cost_nano >= 0);
    char *json = corral_job_usage_json(&ju);
    json_t *rec = json_loads(json, 0, NULL);
    CHECK(rec != NULL);
    CHECK(json_integer_value(json_object_get(rec, "input_tokens")) == ju.input_tokens);
    CHECK(json_integer_value(json_object_get(rec, "output_tokens")) == ju.output_tokens);
    CHECK(json_integer_value(json_object_get(rec, "cost_nano")) == ju.cost_nano);
    CHECK(json_is_boolean(json_object_get(rec, "estimated")) &&
          json_is_true(json_object_get(rec, "estimated")) == ju.estimated);
    const char *m = json_string_value(json_object_get(rec, "model"));
    CHECK(ju.model[0] == '\0' ? json_is_null(json_object_get(rec, "model"))
                              : m != NULL && strcmp(m, ju.model) == 0);
    json_decref(rec);
    free(json);

    /* The same bytes as a `tokens` option's value. */
    int64_t t = -7;
    struct corral_err err;
    if (corral_tokens_option_parse("q", buf, size, &t, &err) == 0) {
        CHECK(t >= 1 && t <= CORRAL_TOKENS_MAX);
        corral_tokens_estimate(buf, size, 4, t, &est);
        CHECK(est.source == CORRAL_ESTIMATE_OPTION && corral_estimate_total(&est) == t);
    } else {
        CHECK(t == -7 && err.code == CORRAL_ERR_INVALID && strlen(err.msg) < 200);
        for (const char *c = err.msg; *c; c++)
            CHECK((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
    }
    free(buf);
    return 0;
}

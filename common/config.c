/* corral.conf loader. Every key is one row of the `keys` table below: its
 * section, type, place in the structs, default and bounds; parsing, defaults
 * and `corrald --check` output all come from that one table. libinih drives
 * the parse; our line reader in front of it counts lines, and decides what
 * each line is, so every error has its line and none hides behind another. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "corral/config.h"
#include "corral/cost.h"
#include "corral/redact.h"
#include "corral/tls.h"
#include "corral/tenant.h"
#include "corral/util.h"

enum sec { SEC_REDIS, SEC_POOL, SEC_SCALE, SEC_WEB, SEC_QUEUE, SEC_SERVICE, SEC_NONE };

enum type {
    T_STR,     /* char *, may not be empty */
    T_PATH,    /* char *, an absolute file path; NULL when unset */
    T_NAME,    /* char *, 1..max characters of [A-Za-z0-9_.:-] */
    T_INT,     /* int */
    T_I64,     /* int64_t */
    T_DUR,     /* int64_t milliseconds */
    T_SIZE,    /* int64_t bytes */
    T_PCT,     /* int per mille */
    T_LIST,    /* struct corral_strlist */
    T_RANGE,   /* two int64_t milliseconds: off and off2 */
    T_RATE,    /* int64_t count at off, int64_t period ms at off2 */
    T_ORDER,   /* enum corral_order */
    T_HANDLER, /* enum corral_handler */
    T_WEIGHTS, /* int[CORRAL_MAX_PRIORITIES]; min/max bound each weight */
    T_HEADER,  /* struct corral_strlist, repeatable: each line appends */
    T_MONEY,   /* int64_t nano-units (corral/cost.h); max bounds it */
    T_MRATE,   /* int64_t nano-units at off, int64_t period ms at off2 */
    T_PRICE,   /* struct corral_price_list, repeatable: each line appends */
    T_TWEIGHT, /* struct corral_strlist of "TENANT:W"; min/max bound each weight */
};

struct key {
    enum sec sec;
    const char *name;
    enum type type;
    size_t off;
    size_t off2;
    const char *def; /* NULL: unset */
    int64_t min;     /* bounds in the unit of the struct field; for T_NAME: max length */
    int64_t max;
};

#define R(f)  offsetof(struct corral_redis_conf, f)
#define P(f)  offsetof(struct corral_pool_conf, f)
#define S(f)  offsetof(struct corral_scale_conf, f)
#define Q(f)  offsetof(struct corral_queue_conf, f)
#define SV(f) offsetof(struct corral_service_conf, f)
#define W(f)  offsetof(struct corral_web_conf, f)
#define SEC   1000LL
#define MIN   60000LL
#define DAY   86400000LL
#define MIB   (1024LL * 1024)
#define GIB   (1024LL * 1024 * 1024)

/* Every key, its default and its bounds (durations in ms, sizes in bytes,
 * percentages per mille); docs/configuration.md lists the same table for
 * people. */
static const struct key keys[] = {
    {SEC_REDIS, "url", T_STR, R(url), 0, "redis://127.0.0.1:6379/0", 0, 0},
    {SEC_REDIS, "password_file", T_PATH, R(password_file), 0, NULL, 0, 0},
    {SEC_REDIS, "prefix", T_NAME, R(prefix), 0, "corral", 1, 32},
    {SEC_REDIS, "cluster", T_LIST, R(cluster), 0, NULL, 0, 0},
    {SEC_REDIS, "sentinels", T_LIST, R(sentinels), 0, NULL, 0, 0},
    {SEC_REDIS, "sentinel_master", T_NAME, R(sentinel_master), 0, NULL, 1, 128},
    {SEC_REDIS, "sentinel_password_file", T_PATH, R(sentinel_password_file), 0, NULL, 0, 0},
    {SEC_REDIS, "tls_ca_file", T_PATH, R(tls_ca_file), 0, NULL, 0, 0},
    {SEC_REDIS, "tls_cert_file", T_PATH, R(tls_cert_file), 0, NULL, 0, 0},
    {SEC_REDIS, "tls_key_file", T_PATH, R(tls_key_file), 0, NULL, 0, 0},
    {SEC_REDIS, "tls_server_name", T_NAME, R(tls_server_name), 0, NULL, 1, 253},
    {SEC_REDIS, "min_replicas", T_INT, R(min_replicas), 0, "0", 0, 100},

    {SEC_POOL, "min", T_INT, P(min), 0, "2", 0, 10000},
    {SEC_POOL, "max", T_INT, P(max), 0, "20", 1, 10000},
    {SEC_POOL, "concurrency", T_INT, P(concurrency), 0, "4", 1, 1024},
    {SEC_POOL, "max_jobs", T_I64, P(max_jobs), 0, "0", 0, 1000000000000LL},
    {SEC_POOL, "max_rss", T_SIZE, P(max_rss_bytes), 0, "0", 0, 1024 * GIB},
    {SEC_POOL, "drain_timeout", T_DUR, P(drain_timeout_ms), 0, "30s", 0, DAY},
    {SEC_POOL, "hang_timeout", T_DUR, P(hang_timeout_ms), 0, "30s", SEC, DAY},
    {SEC_POOL, "queues", T_LIST, P(queues), 0, NULL, 0, 0},

    {SEC_SCALE, "tick", T_DUR, S(tick_ms), 0, "1s", 100, MIN},
    {SEC_SCALE, "target_wait", T_DUR, S(target_wait_ms), 0, "5s", 1, DAY},
    {SEC_SCALE, "target_utilization", T_PCT, S(target_utilization_pm), 0, "80%", 10, 1000},
    {SEC_SCALE, "scale_out_cooldown", T_DUR, S(scale_out_cooldown_ms), 0, "5s", 0, DAY},
    {SEC_SCALE, "scale_in_window", T_DUR, S(scale_in_window_ms), 0, "120s", 0, DAY},
    {SEC_SCALE, "cpu_ceiling", T_PCT, S(cpu_ceiling_pm), 0, "85%", 10, 1000},
    {SEC_SCALE, "mem_ceiling", T_PCT, S(mem_ceiling_pm), 0, "85%", 10, 1000},

    {SEC_QUEUE, "priorities", T_LIST, Q(priorities), 0, "high, normal, low", 0, 0},
    {SEC_QUEUE, "order", T_ORDER, Q(order), 0, "strict", 0, 0},
    {SEC_QUEUE, "weights", T_WEIGHTS, Q(weights), 0, NULL, 1, 1000000},
    {SEC_QUEUE, "handler", T_HANDLER, Q(handler), 0, "http", 0, 0},
    {SEC_QUEUE, "service", T_LIST, Q(services), 0, NULL, 0, 0}, /* q->service: the first */
    {SEC_QUEUE, "command", T_STR, Q(command), 0, NULL, 0, 0},
    {SEC_QUEUE, "max_attempts", T_INT, Q(max_attempts), 0, "5", 1, 1000},
    {SEC_QUEUE, "backoff", T_RANGE, Q(backoff_base_ms), Q(backoff_cap_ms), "1s..5m", 1, 30 * DAY},
    {SEC_QUEUE, "timeout", T_DUR, Q(timeout_ms), 0, "60s", 1, DAY},
    {SEC_QUEUE, "lease", T_DUR, Q(lease_ms), 0, "30s", SEC, DAY},
    {SEC_QUEUE, "result_ttl", T_DUR, Q(result_ttl_ms), 0, "24h", SEC, 365 * DAY},
    {SEC_QUEUE, "max_payload", T_SIZE, Q(max_payload_bytes), 0, "1M", 1, 512 * MIB},
    {SEC_QUEUE, "max_result", T_SIZE, Q(max_result_bytes), 0, "1M", 1, 512 * MIB},
    /* tenants (docs/protocol.md, "Tenants") */
    {SEC_QUEUE, "tenant_weights", T_TWEIGHT, Q(tenant_weights), 0, NULL, 1, 1000},
    {SEC_QUEUE, "tenant_max_inflight", T_INT, Q(tenant_max_inflight), 0, "0", 0, 1000000},
    {SEC_QUEUE, "tenant_rate", T_RATE, Q(tenant_rate_count), Q(tenant_rate_period_ms), NULL, 1,
     DAY},
    {SEC_QUEUE, "tenant_tokens", T_RATE, Q(tenant_tokens_count), Q(tenant_tokens_period_ms), NULL,
     1, DAY},
    {SEC_QUEUE, "tenant_metrics_top", T_INT, Q(tenant_metrics_top), 0, "10", 0, 1000},

    {SEC_SERVICE, "url", T_STR, SV(url), 0, NULL, 0, 0},
    {SEC_SERVICE, "api_key_file", T_PATH, SV(api_key_file), 0, NULL, 0, 0},
    {SEC_SERVICE, "header", T_HEADER, SV(headers), 0, NULL, 0, 0},
    {SEC_SERVICE, "connect_timeout", T_DUR, SV(connect_timeout_ms), 0, "5s", 1, 10 * MIN},
    {SEC_SERVICE, "max_inflight", T_INT, SV(max_inflight), 0, "10", 1, 100000},
    {SEC_SERVICE, "rate", T_RATE, SV(rate_count), SV(rate_period_ms), NULL, 1, DAY},
    {SEC_SERVICE, "breaker_window", T_DUR, SV(breaker_window_ms), 0, "60s", SEC, DAY},
    {SEC_SERVICE, "breaker_min_calls", T_INT, SV(breaker_min_calls), 0, "20", 1, 1000000},
    {SEC_SERVICE, "breaker_failure_rate", T_PCT, SV(breaker_failure_rate_pm), 0, "50%", 1, 1000},
    {SEC_SERVICE, "breaker_slow_call", T_DUR, SV(breaker_slow_call_ms), 0, "30s", 1, DAY},
    {SEC_SERVICE, "breaker_slow_rate", T_PCT, SV(breaker_slow_rate_pm), 0, "80%", 1, 1000},
    {SEC_SERVICE, "breaker_open_for", T_DUR, SV(breaker_open_for_ms), 0, "30s", 100, DAY},
    {SEC_SERVICE, "breaker_open_max", T_DUR, SV(breaker_open_max_ms), 0, "5m", 100, DAY},
    {SEC_SERVICE, "breaker_half_open_calls", T_INT, SV(breaker_half_open_calls), 0, "3", 1, 1000},
    {SEC_SERVICE, "tokens", T_RATE, SV(tokens_count), SV(tokens_period_ms), NULL, 1, DAY},
    {SEC_SERVICE, "bytes_per_token", T_INT, SV(bytes_per_token), 0, "4", 1, 64},
    {SEC_SERVICE, "price_input", T_MONEY, SV(price_input_nano), 0, NULL, 0, CORRAL_PRICE_MAX_NANO},
    {SEC_SERVICE, "price_output", T_MONEY, SV(price_output_nano), 0, NULL, 0,
     CORRAL_PRICE_MAX_NANO},
    {SEC_SERVICE, "price", T_PRICE, SV(prices), 0, NULL, 0, 0},
    {SEC_SERVICE, "budget", T_MRATE, SV(budget_nano), SV(budget_period_ms), NULL, 1, 366 * DAY},
    {SEC_SERVICE, "model", T_STR, SV(model), 0, NULL, 0, 0}, /* docs/configuration.md */

    {SEC_WEB, "listen", T_STR, W(listen), 0, "127.0.0.1:8470", 0, 0},
    {SEC_WEB, "token_file", T_PATH, W(token_file), 0, NULL, 0, 0},
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const char *const sec_names[] = {"redis", "pool", "scale", "web", "queue", "service"};

#define NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"
#define NAME_RULE  "characters of A-Z a-z 0-9 _ . : -"

/* One section instance being parsed: where its struct is, and on which line
 * each key was set (0 = not set), for duplicates and cross-check messages. */
struct section {
    enum sec sec;
    size_t index; /* into queues / services */
    int line;     /* of the [header] */
    int key_line[NKEYS];
    unsigned char key_bad[NKEYS]; /* the value was refused: skip cross-checks on it */
};

struct loader {
    struct corral_config *cfg;
    struct corral_config_errors *errs;
    int *err_line;    /* parallel to errs->lines, for sorting into file order */
    const char *name; /* file name in messages */
    /* reader state */
    FILE *file;
    const char *text;
    int lineno;
    char *linebuf;
    size_t linecap;
    /* sections */
    struct section global[SEC_WEB + 1];
    struct section *queues; /* parallel to cfg->queues */
    struct section *services;
    struct section *current; /* NULL in an unknown, bad or repeated section */
};

static void add_error(struct loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_error(struct loader *ld, int line, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct corral_config_errors *e = ld->errs;
    e->lines = corral_xrealloc(e->lines, sizeof(char *) * (e->n + 1));
    ld->err_line = corral_xrealloc(ld->err_line, sizeof(int) * (e->n + 1));
    ld->err_line[e->n] = line;
    if (line > 0)
        e->lines[e->n++] = corral_xasprintf("%s:%d: %s", ld->name, line, msg);
    else
        e->lines[e->n++] = corral_xasprintf("%s: %s", ld->name, msg);
}

/* Parse errors arrive in file order, cross-check errors after them; people
 * read them top to bottom, so merge them by line (stable: ties keep their
 * order). Insertion sort: a config has a handful of errors. */
static void sort_errors(struct loader *ld)
{
    struct corral_config_errors *e = ld->errs;
    for (size_t i = 1; i < e->n; i++) {
        int line = ld->err_line[i];
        char *text = e->lines[i];
        size_t j = i;
        for (; j > 0 && ld->err_line[j - 1] > line; j--) {
            ld->err_line[j] = ld->err_line[j - 1];
            e->lines[j] = e->lines[j - 1];
        }
        ld->err_line[j] = line;
        e->lines[j] = text;
    }
}

static int valid_name(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n >= 1 && n <= max && strspn(s, NAME_CHARS) == n;
}

/* Durations and sizes in the largest unit that divides them exactly, so the
 * dump reads like a hand-written file and parses back to the same values. */
static void fmt_duration(int64_t ms, char *buf, size_t n)
{
    if (ms != 0 && ms % DAY == 0)
        snprintf(buf, n, "%lldd", (long long)(ms / DAY));
    else if (ms != 0 && ms % 3600000 == 0)
        snprintf(buf, n, "%lldh", (long long)(ms / 3600000));
    else if (ms != 0 && ms % MIN == 0)
        snprintf(buf, n, "%lldm", (long long)(ms / MIN));
    else if (ms % SEC == 0)
        snprintf(buf, n, "%llds", (long long)(ms / SEC));
    else
        snprintf(buf, n, "%lldms", (long long)ms);
}

static void fmt_size(int64_t b, char *buf, size_t n)
{
    if (b != 0 && b % GIB == 0)
        snprintf(buf, n, "%lldG", (long long)(b / GIB));
    else if (b != 0 && b % MIB == 0)
        snprintf(buf, n, "%lldM", (long long)(b / MIB));
    else if (b != 0 && b % 1024 == 0)
        snprintf(buf, n, "%lldK", (long long)(b / 1024));
    else
        snprintf(buf, n, "%lld", (long long)b);
}

static void fmt_pct(int64_t pm, char *buf, size_t n)
{
    if (pm % 10 == 0)
        snprintf(buf, n, "%lld%%", (long long)(pm / 10));
    else
        snprintf(buf, n, "%lld.%lld%%", (long long)(pm / 10), (long long)(pm % 10));
}

/* "must be from LO to HI (got "v")", or "at most HI" when LO is zero, with
 * the bounds written in the key's own units. */
static int out_of_bounds(struct corral_err *err, const struct key *k, const char *value,
                         void (*fmt)(int64_t, char *, size_t))
{
    char lo[32], hi[32];
    fmt(k->min, lo, sizeof(lo));
    fmt(k->max, hi, sizeof(hi));
    if (k->min == 0)
        return corral_err_set(err, CORRAL_ERR_INVALID, "must be at most %s (got \"%s\")", hi,
                              value);
    return corral_err_set(err, CORRAL_ERR_INVALID, "must be from %s to %s (got \"%s\")", lo, hi,
                          value);
}

/* A header field name is an RFC 9110 token. */
static int valid_header(const char *h)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~0123456789"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    size_t n = strspn(h, tchar);
    return n > 0 && h[n] == ':' && strpbrk(h, "\r\n") == NULL;
}

/* Headers that usually carry credentials: `corrald --check` shows their
 * names but not their values. The same test decides which header values
 * the worker takes out of what a service answers (redact.h). */
static int sensitive_header(const char *h)
{
    return corral_header_is_secret(h);
}

static void *base_of(struct corral_config *cfg, const struct section *s)
{
    switch (s->sec) {
    case SEC_REDIS:
        return &cfg->redis;
    case SEC_POOL:
        return &cfg->pool;
    case SEC_SCALE:
        return &cfg->scale;
    case SEC_WEB:
        return &cfg->web;
    case SEC_QUEUE:
        return &cfg->queues[s->index];
    case SEC_SERVICE:
        return &cfg->services[s->index];
    default:
        return NULL;
    }
}

static void free_field(void *base, const struct key *k)
{
    char *p = (char *)base + k->off;
    switch (k->type) {
    case T_STR:
    case T_PATH:
    case T_NAME:
        free(*(char **)p);
        *(char **)p = NULL;
        break;
    case T_LIST:
    case T_HEADER:
    case T_TWEIGHT:
        corral_strlist_free((struct corral_strlist *)p);
        break;
    case T_PRICE: {
        struct corral_price_list *l = (struct corral_price_list *)p;
        for (size_t i = 0; i < l->n; i++)
            free(l->items[i].model);
        free(l->items);
        l->items = NULL;
        l->n = 0;
        break;
    }
    default:
        break;
    }
}

static void replace_str(char *p, char *s)
{
    free(*(char **)p);
    *(char **)p = s;
}

/* Parses value into the field of k at base. Returns 0, or -1 with a message
 * in err that ends with (got "value") -- except for headers, whose values
 * may hold tokens. Strings and lists replace what was there; headers
 * append. */
static int set_field(void *base, const struct key *k, const char *value, struct corral_err *err)
{
    char *p = (char *)base + k->off;
    int64_t v, v2;
    int pm;
    switch (k->type) {
    case T_STR:
        if (value[0] == '\0')
            return corral_err_set(err, CORRAL_ERR_INVALID, "must not be empty");
        replace_str(p, corral_xstrdup(value));
        return 0;
    case T_PATH: {
        if (value[0] == '\0')
            return corral_err_set(err, CORRAL_ERR_INVALID, "must not be empty");
        char *path = corral_expand_path(value, err);
        if (path == NULL)
            return -1;
        if (path[0] != '/') {
            free(path);
            return corral_err_set(err, CORRAL_ERR_INVALID, "must be an absolute path (got \"%s\")",
                                  value);
        }
        replace_str(p, path);
        return 0;
    }
    case T_NAME:
        if (!valid_name(value, (size_t)k->max))
            return corral_err_set(err, CORRAL_ERR_INVALID,
                                  "expected 1-%lld " NAME_RULE " (got \"%s\")", (long long)k->max,
                                  value);
        replace_str(p, corral_xstrdup(value));
        return 0;
    case T_INT:
    case T_I64:
        if (corral_parse_int(value, k->min, k->max, &v, err) < 0)
            return -1;
        if (k->type == T_INT)
            *(int *)p = (int)v;
        else
            *(int64_t *)p = v;
        return 0;
    case T_DUR:
        if (corral_parse_duration_ms(value, &v, err) < 0)
            return -1;
        if (v < k->min || v > k->max)
            return out_of_bounds(err, k, value, fmt_duration);
        *(int64_t *)p = v;
        return 0;
    case T_SIZE:
        if (corral_parse_size(value, &v, err) < 0)
            return -1;
        if (v < k->min || v > k->max)
            return out_of_bounds(err, k, value, fmt_size);
        *(int64_t *)p = v;
        return 0;
    case T_PCT:
        if (corral_parse_percent_pm(value, &pm, err) < 0)
            return -1;
        if (pm < k->min || pm > k->max)
            return out_of_bounds(err, k, value, fmt_pct);
        *(int *)p = pm;
        return 0;
    case T_LIST: {
        struct corral_strlist l;
        if (corral_parse_list(value, &l, err) < 0)
            return -1;
        corral_strlist_free((struct corral_strlist *)p);
        *(struct corral_strlist *)p = l;
        return 0;
    }
    case T_HEADER:
        if (!valid_header(value))
            return corral_err_set(err, CORRAL_ERR_INVALID,
                                  "expected \"Name: value\" with a name of letters, digits and "
                                  "- (the value is not shown: it may hold a token)");
        corral_strlist_push((struct corral_strlist *)p, value);
        return 0;
    case T_RANGE: {
        if (corral_parse_range_ms(value, &v, &v2, err) < 0)
            return -1;
        char cap[32];
        fmt_duration(k->max, cap, sizeof(cap));
        if (v < k->min)
            return corral_err_set(err, CORRAL_ERR_INVALID,
                                  "the base must be greater than 0 (got \"%s\")", value);
        if (v2 > k->max)
            return corral_err_set(err, CORRAL_ERR_INVALID,
                                  "the cap must be at most %s (got \"%s\")", cap, value);
        *(int64_t *)p = v;
        *(int64_t *)((char *)base + k->off2) = v2;
        return 0;
    }
    case T_RATE: {
        if (corral_parse_rate(value, &v, &v2, err) < 0)
            return -1;
        char most[32];
        fmt_duration(k->max, most, sizeof(most));
        if (v2 > k->max)
            return corral_err_set(err, CORRAL_ERR_INVALID,
                                  "the period must be at most %s (got \"%s\")", most, value);
        *(int64_t *)p = v;
        *(int64_t *)((char *)base + k->off2) = v2;
        return 0;
    }
    case T_ORDER:
        if (strcmp(value, "strict") == 0)
            *(enum corral_order *)p = CORRAL_ORDER_STRICT;
        else if (strcmp(value, "weighted") == 0)
            *(enum corral_order *)p = CORRAL_ORDER_WEIGHTED;
        else
            return corral_err_set(err, CORRAL_ERR_INVALID,
                                  "expected strict or weighted (got \"%s\")", value);
        return 0;
    case T_HANDLER:
        if (strcmp(value, "http") == 0)
            *(enum corral_handler *)p = CORRAL_HANDLER_HTTP;
        else if (strcmp(value, "echo") == 0)
            *(enum corral_handler *)p = CORRAL_HANDLER_ECHO;
        else if (strcmp(value, "exec") == 0)
            *(enum corral_handler *)p = CORRAL_HANDLER_EXEC;
        else
            return corral_err_set(err, CORRAL_ERR_INVALID,
                                  "expected http, echo or exec (got \"%s\")", value);
        return 0;
    case T_MONEY:
        if (corral_money_parse(value, k->max, &v, err) < 0)
            return -1;
        *(int64_t *)p = v;
        return 0;
    case T_MRATE: {
        if (corral_money_rate_parse(value, &v, &v2, err) < 0)
            return -1;
        char most[32];
        fmt_duration(k->max, most, sizeof(most));
        if (v2 > k->max)
            return corral_err_set(err, CORRAL_ERR_INVALID,
                                  "the period must be at most %s (got \"%s\")", most, value);
        *(int64_t *)p = v;
        *(int64_t *)((char *)base + k->off2) = v2;
        return 0;
    }
    case T_PRICE: {
        struct corral_price_list *l = (struct corral_price_list *)p;
        char model[CORRAL_MODEL_MAX + 1];
        if (corral_price_line_parse(value, model, sizeof(model), &v, &v2, err) < 0)
            return -1;
        for (size_t i = 0; i < l->n; i++)
            if (strcmp(l->items[i].model, model) == 0)
                return corral_err_set(err, CORRAL_ERR_INVALID,
                                      "model %s has a price line already (got \"%s\")", model,
                                      value);
        l->items = corral_xrealloc(l->items, sizeof(*l->items) * (l->n + 1));
        l->items[l->n++] = (struct corral_price){corral_xstrdup(model), v, v2};
        return 0;
    }
    case T_TWEIGHT: {
        struct corral_strlist l;
        if (corral_tenant_weights_parse(value, (int)k->min, (int)k->max, &l, err) < 0)
            return -1;
        corral_strlist_free((struct corral_strlist *)p);
        *(struct corral_strlist *)p = l;
        return 0;
    }
    case T_WEIGHTS: {
        struct corral_strlist l;
        if (corral_parse_list(value, &l, err) < 0)
            return -1;
        int rc = 0;
        int w[CORRAL_MAX_PRIORITIES];
        if (l.n > CORRAL_MAX_PRIORITIES)
            rc = corral_err_set(err, CORRAL_ERR_INVALID, "at most %d weights (got \"%s\")",
                                CORRAL_MAX_PRIORITIES, value);
        for (size_t i = 0; rc == 0 && i < l.n; i++) {
            if (corral_parse_int(l.items[i], k->min, k->max, &v, err) < 0) {
                corral_err_prefix(err, "weight %zu", i + 1);
                rc = -1;
            } else {
                w[i] = (int)v;
            }
        }
        if (rc == 0) {
            /* Zero marks the end: cross_check counts the weights given. */
            memset(p, 0, sizeof(int) * CORRAL_MAX_PRIORITIES);
            memcpy(p, w, sizeof(int) * l.n);
        }
        corral_strlist_free(&l);
        return rc;
    }
    }
    return 0;
}

static void apply_defaults(void *base, enum sec sec)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].sec != sec || keys[i].def == NULL)
            continue;
        struct corral_err err;
        if (set_field(base, &keys[i], keys[i].def, &err) < 0)
            abort(); /* a default that does not parse is a bug in the table */
    }
    if (sec == SEC_QUEUE) {
        struct corral_queue_conf *q = base;
        for (int i = 0; i < CORRAL_MAX_PRIORITIES; i++)
            q->weights[i] = 1;
    }
}

static struct corral_config *new_config(const char *name)
{
    struct corral_config *cfg = corral_xcalloc(1, sizeof(*cfg));
    cfg->path = corral_xstrdup(name);
    apply_defaults(&cfg->redis, SEC_REDIS);
    apply_defaults(&cfg->pool, SEC_POOL);
    apply_defaults(&cfg->scale, SEC_SCALE);
    apply_defaults(&cfg->web, SEC_WEB);
    /* The default url always parses; a loaded file's is parsed again. */
    struct corral_err err;
    if (corral_redis_parse_url(cfg->redis.url, &cfg->redis.addr, &err) < 0)
        corral_redis_addr_free(&cfg->redis.addr);
    return cfg;
}

/* A [header] line: starts a section instance, or reports why it cannot and
 * leaves ld->current NULL so the keys under it are skipped quietly. */
static void begin_section(struct loader *ld, const char *name)
{
    struct corral_config *cfg = ld->cfg;
    ld->current = NULL;
    for (int s = SEC_REDIS; s <= SEC_WEB; s++) {
        if (strcmp(name, sec_names[s]) == 0) {
            struct section *g = &ld->global[s];
            if (g->line != 0) {
                add_error(ld, ld->lineno, "[%s] appears twice (first on line %d)", name, g->line);
                return;
            }
            g->sec = (enum sec)s;
            g->line = ld->lineno;
            ld->current = g;
            return;
        }
    }
    enum sec sec = SEC_NONE;
    size_t kw = strcspn(name, " \t");
    if (kw == 5 && strncmp(name, "queue", 5) == 0)
        sec = SEC_QUEUE;
    else if (kw == 7 && strncmp(name, "service", 7) == 0)
        sec = SEC_SERVICE;
    if (sec == SEC_NONE) {
        add_error(ld, ld->lineno,
                  "unknown section [%s] (known: [redis], [pool], [scale], [web], [queue NAME], "
                  "[service NAME])",
                  name);
        return;
    }
    const char *arg = name + kw + strspn(name + kw, " \t");
    if (*arg == '\0') {
        add_error(ld, ld->lineno, "[%s] needs a name: [%s NAME]", name, sec_names[sec]);
        return;
    }
    if (!valid_name(arg, 64)) {
        add_error(ld, ld->lineno, "[%s]: bad %s name: use 1-64 " NAME_RULE " (got \"%s\")", name,
                  sec_names[sec], arg);
        return;
    }
    size_t n = sec == SEC_QUEUE ? cfg->nqueues : cfg->nservices;
    for (size_t i = 0; i < n; i++) {
        const char *other = sec == SEC_QUEUE ? cfg->queues[i].name : cfg->services[i].name;
        if (strcmp(other, arg) == 0) {
            int first = sec == SEC_QUEUE ? ld->queues[i].line : ld->services[i].line;
            add_error(ld, ld->lineno, "[%s %s] appears twice (first on line %d)", sec_names[sec],
                      arg, first);
            return;
        }
    }
    struct section *s;
    if (sec == SEC_QUEUE) {
        cfg->queues = corral_xrealloc(cfg->queues, sizeof(*cfg->queues) * (n + 1));
        ld->queues = corral_xrealloc(ld->queues, sizeof(*ld->queues) * (n + 1));
        memset(&cfg->queues[n], 0, sizeof(cfg->queues[n]));
        cfg->queues[n].name = corral_xstrdup(arg);
        apply_defaults(&cfg->queues[n], SEC_QUEUE);
        cfg->nqueues++;
        s = &ld->queues[n];
    } else {
        cfg->services = corral_xrealloc(cfg->services, sizeof(*cfg->services) * (n + 1));
        ld->services = corral_xrealloc(ld->services, sizeof(*ld->services) * (n + 1));
        memset(&cfg->services[n], 0, sizeof(cfg->services[n]));
        cfg->services[n].name = corral_xstrdup(arg);
        apply_defaults(&cfg->services[n], SEC_SERVICE);
        cfg->nservices++;
        s = &ld->services[n];
    }
    memset(s, 0, sizeof(*s));
    s->sec = sec;
    s->index = n;
    s->line = ld->lineno;
    ld->current = s;
}

/* Reads the next physical line into ld->linebuf, without its line ending.
 * Returns -1 at the end of the input. */
static int next_line(struct loader *ld)
{
    ssize_t len;
    if (ld->file != NULL) {
        len = getline(&ld->linebuf, &ld->linecap, ld->file);
        if (len < 0)
            return -1;
    } else {
        if (*ld->text == '\0')
            return -1;
        const char *nl = strchr(ld->text, '\n');
        len = nl ? nl - ld->text + 1 : (ssize_t)strlen(ld->text);
        if ((size_t)len + 1 > ld->linecap) {
            ld->linecap = (size_t)len + 1;
            ld->linebuf = corral_xrealloc(ld->linebuf, ld->linecap);
        }
        memcpy(ld->linebuf, ld->text, (size_t)len);
        ld->linebuf[len] = '\0';
        ld->text += len;
    }
    ld->lineno++;
    while (len > 0 && (ld->linebuf[len - 1] == '\n' || ld->linebuf[len - 1] == '\r'))
        ld->linebuf[--len] = '\0';
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* inih's rule for inline comments: a ';' at the start of the line or after
 * a blank starts one. '#' only starts a comment at the start of a line. */
static void strip_comment(char *line)
{
    for (char *c = line; *c != '\0'; c++) {
        if (*c == ';' && (c == line || isspace((unsigned char)c[-1]))) {
            *c = '\0';
            return;
        }
    }
}

/* inih's reader, called once per line, so ld->lineno is the line of what
 * the handler sees next. It hands inih a clean line (no indentation, no
 * comment) after sorting out what the line is:
 *   - indentation is dropped, so an indented key is a key, never inih's
 *     continuation of the previous value;
 *   - section headers are handled here (inih says nothing of a section
 *     without keys) and passed on as a neutral "[s]";
 *   - a line that is not `key = value` is reported here, so every syntax
 *     error has its line (inih itself only returns the first);
 *   - a `key = value` too long for inih's buffer is reported, not split. */
static char *reader(char *str, int num, void *stream)
{
    struct loader *ld = stream;
    if (next_line(ld) < 0)
        return NULL;
    char *line = ld->linebuf;
    if (ld->lineno == 1 && strncmp(line, "\xEF\xBB\xBF", 3) == 0)
        line += 3; /* a UTF-8 byte order mark, as inih allows */
    line = trim(line);
    if (*line == '#')
        *line = '\0';
    strip_comment(line);
    line = trim(line);
    if (*line == '\0') {
        snprintf(str, (size_t)num, "\n");
        return str;
    }
    if (*line == '[') {
        char *close = strchr(line, ']');
        if (close == NULL) {
            ld->current = NULL;
            add_error(ld, ld->lineno, "syntax error: a section header needs its closing ]");
        } else if (close[1] != '\0') {
            ld->current = NULL;
            add_error(ld, ld->lineno, "syntax error: text after the section header's ]");
        } else {
            *close = '\0';
            begin_section(ld, trim(line + 1));
        }
        snprintf(str, (size_t)num, "[s]\n");
        return str;
    }
    /* The line is not echoed in these errors: it may be a stray secret. */
    size_t eq = strcspn(line, "=");
    size_t len = strlen(line);
    const char *pass = line;
    if (line[eq] == '\0' || strcspn(line, ":") < eq) {
        add_error(ld, ld->lineno,
                  "syntax error: expected key = value, a [section] or a ; or # comment");
        pass = "";
    } else if (eq == 0) {
        add_error(ld, ld->lineno, "syntax error: a key name is missing before =");
        pass = "";
    } else if (len + 2 > (size_t)num) {
        add_error(ld, ld->lineno, "line is %zu bytes long without comments, the limit is %d", len,
                  num - 2);
        pass = "";
    }
    snprintf(str, (size_t)num, "%s\n", pass);
    return str;
}

static int key_index(enum sec sec, const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].sec == sec && strcmp(keys[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void section_label(const struct loader *ld, const struct section *s, char *buf, size_t n)
{
    if (s->sec == SEC_QUEUE)
        snprintf(buf, n, "[queue %s]", ld->cfg->queues[s->index].name);
    else if (s->sec == SEC_SERVICE)
        snprintf(buf, n, "[service %s]", ld->cfg->services[s->index].name);
    else
        snprintf(buf, n, "[%s]", sec_names[s->sec]);
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    struct loader *ld = user;
    if (section[0] == '\0') {
        add_error(ld, ld->lineno, "%s: keys must be inside a section such as [pool]", name);
        return 1;
    }
    struct section *s = ld->current;
    if (s == NULL)
        return 1; /* the unknown, bad or repeated section was reported at its header */
    char label[160];
    section_label(ld, s, label, sizeof(label));
    int ki = key_index(s->sec, name);
    if (ki < 0) {
        char known[512] = "";
        size_t used = 0;
        for (size_t i = 0; i < NKEYS && used < sizeof(known); i++)
            if (keys[i].sec == s->sec)
                used += (size_t)snprintf(known + used, sizeof(known) - used, "%s%s",
                                         used ? ", " : "", keys[i].name);
        add_error(ld, ld->lineno, "%s %s: unknown key (known: %s)", label, name, known);
        return 1;
    }
    const struct key *k = &keys[ki];
    if (s->key_line[ki] != 0 && k->type != T_HEADER && k->type != T_PRICE) {
        add_error(ld, ld->lineno, "%s %s: set twice (first on line %d)", label, name,
                  s->key_line[ki]);
        return 1;
    }
    if (s->key_line[ki] == 0 && (k->type == T_HEADER || k->type == T_LIST))
        free_field(base_of(ld->cfg, s), k); /* drop the default before the first value */
    s->key_line[ki] = ld->lineno;
    struct corral_err err;
    if (set_field(base_of(ld->cfg, s), k, value, &err) < 0) {
        s->key_bad[ki] = 1;
        add_error(ld, ld->lineno, "%s %s: %s", label, name, err.msg);
    }
    return 1;
}

/* Line of key in section s, or of the section header when the key is unset. */
static int line_of(const struct section *s, const char *key)
{
    int ki = key_index(s->sec, key);
    return ki >= 0 && s->key_line[ki] ? s->key_line[ki] : s->line;
}

static int is_set(const struct section *s, const char *key)
{
    int ki = key_index(s->sec, key);
    return ki >= 0 && s->key_line[ki] != 0;
}

/* A value already reported as bad: checks that depend on it stay quiet
 * rather than pile a second error onto the same mistake. */
static int is_bad(const struct section *s, const char *key)
{
    int ki = key_index(s->sec, key);
    return ki >= 0 && s->key_bad[ki];
}

static const char *handler_name(enum corral_handler h)
{
    return h == CORRAL_HANDLER_HTTP ? "http" : h == CORRAL_HANDLER_ECHO ? "echo" : "exec";
}

/* A password in user:password@ before the host of a URL. */
static int url_has_password(const char *url)
{
    const char *auth = strstr(url, "://");
    if (auth == NULL)
        return 0;
    auth += 3;
    size_t n = strcspn(auth, "/?#");
    const char *at = memchr(auth, '@', n);
    return at != NULL && memchr(auth, ':', (size_t)(at - auth)) != NULL;
}

/* [queue Q] service = A, B, ...: each a [service] section, none twice, at
 * most 16 (docs/breakers.md, "Fallback"). */
static void check_fallback(struct loader *ld, const struct corral_queue_conf *q, struct section *s)
{
    const struct corral_strlist *l = &q->services;
    if (l->n > 16)
        add_error(ld, line_of(s, "service"), "[queue %s] service: at most 16 services (got %zu)",
                  q->name, l->n);
    for (size_t i = 0; i < l->n; i++) {
        const char *name = l->items[i];
        if (!valid_name(name, 64))
            add_error(ld, line_of(s, "service"),
                      "[queue %s] service: expected 1-64 " NAME_RULE " (got \"%s\")", q->name,
                      name);
        else if (corral_config_service(ld->cfg, name) == NULL)
            add_error(ld, line_of(s, "service"),
                      "[queue %s] service: there is no [service %s] section (got \"%s\")", q->name,
                      name, name);
        for (size_t k = 0; k < i; k++)
            if (strcmp(l->items[k], name) == 0) {
                add_error(ld, line_of(s, "service"),
                          "[queue %s] service: \"%s\" is named twice in the fallback list", q->name,
                          name);
                break;
            }
    }
}

static void check_queue(struct loader *ld, struct corral_queue_conf *q, struct section *s)
{
    if (!is_bad(s, "priorities")) {
        if (q->priorities.n > CORRAL_MAX_PRIORITIES)
            add_error(ld, line_of(s, "priorities"),
                      "[queue %s] priorities: at most %d levels (got %zu)", q->name,
                      CORRAL_MAX_PRIORITIES, q->priorities.n);
        for (size_t a = 0; a < q->priorities.n; a++) {
            if (!valid_name(q->priorities.items[a], 64))
                add_error(ld, line_of(s, "priorities"),
                          "[queue %s] priorities: a level name is 1-64 " NAME_RULE " (got \"%s\")",
                          q->name, q->priorities.items[a]);
            for (size_t b = 0; b < a; b++)
                if (strcmp(q->priorities.items[a], q->priorities.items[b]) == 0)
                    add_error(ld, line_of(s, "priorities"),
                              "[queue %s] priorities: \"%s\" is listed twice", q->name,
                              q->priorities.items[a]);
        }
    }
    if (is_set(s, "weights") && !is_bad(s, "weights") && !is_bad(s, "order")) {
        size_t nw = 0;
        while (nw < CORRAL_MAX_PRIORITIES && q->weights[nw] > 0)
            nw++;
        if (q->order != CORRAL_ORDER_WEIGHTED)
            add_error(ld, line_of(s, "weights"),
                      "[queue %s] weights: only used with order = weighted (order is strict)",
                      q->name);
        else if (!is_bad(s, "priorities") && nw != q->priorities.n)
            add_error(ld, line_of(s, "weights"),
                      "[queue %s] weights: one per priority: %zu given for %zu priorities", q->name,
                      nw, q->priorities.n);
    } else {
        for (int w = 0; w < CORRAL_MAX_PRIORITIES; w++)
            q->weights[w] = 1;
    }
    q->service = q->services.n > 0 ? q->services.items[0] : NULL;
    if (is_bad(s, "handler"))
        return;
    if (q->handler == CORRAL_HANDLER_HTTP && !is_bad(s, "service")) {
        if (q->service == NULL)
            add_error(ld, s->line,
                      "[queue %s] service: handler = http needs service = NAME of a "
                      "[service NAME] section",
                      q->name);
        else
            check_fallback(ld, q, s);
    } else if (q->handler != CORRAL_HANDLER_HTTP && is_set(s, "service")) {
        add_error(ld, line_of(s, "service"),
                  "[queue %s] service: only used with handler = http (handler is %s)", q->name,
                  handler_name(q->handler));
    }
    if (q->handler == CORRAL_HANDLER_EXEC && q->command == NULL && !is_bad(s, "command"))
        add_error(ld, s->line, "[queue %s] command: handler = exec needs command = PROGRAM [ARGS]",
                  q->name);
    else if (q->handler != CORRAL_HANDLER_EXEC && is_set(s, "command"))
        add_error(ld, line_of(s, "command"),
                  "[queue %s] command: only used with handler = exec (handler is %s)", q->name,
                  handler_name(q->handler));
}

/* A spend budget that can never apply, or that no job can fit: each job is
 * at least one input token (docs/tokens.md, "Checks"). */
static void check_service_spend(struct loader *ld, const struct corral_service_conf *sv,
                                struct section *s)
{
    if (!is_set(s, "budget") || is_bad(s, "budget") || is_bad(s, "price_input") ||
        is_bad(s, "price_output") || is_bad(s, "price"))
        return;
    int priced = sv->price_input_nano > 0 || sv->price_output_nano > 0;
    int64_t cheapest = sv->price_input_nano;
    for (size_t i = 0; i < sv->prices.n; i++) {
        const struct corral_price *pr = &sv->prices.items[i];
        priced = priced || pr->input_nano > 0 || pr->output_nano > 0;
        if (pr->input_nano < cheapest)
            cheapest = pr->input_nano;
    }
    char b[48], c[48], per[32];
    corral_money_format(sv->budget_nano, b, sizeof(b));
    fmt_duration(sv->budget_period_ms, per, sizeof(per));
    if (!priced) {
        add_error(ld, line_of(s, "budget"),
                  "[service %s] budget: no price is set (price_input, price_output or price "
                  "lines), so every call costs 0 and the budget never applies (got \"%s/%s\")",
                  sv->name, b, per);
        return;
    }
    int64_t one = corral_cost_nano(1, 0, cheapest, 0);
    if (one > sv->budget_nano) {
        corral_money_format(one, c, sizeof(c));
        add_error(ld, line_of(s, "budget"),
                  "[service %s] budget: a single input token costs %s at the lowest input "
                  "price, more than the whole budget, so no job could ever run (got \"%s/%s\")",
                  sv->name, c, b, per);
    }
}

static void check_service(struct loader *ld, struct corral_service_conf *sv, struct section *s)
{
    if (sv->url == NULL) {
        if (!is_bad(s, "url"))
            add_error(ld, s->line,
                      "[service %s] url: required (the endpoint the http handler calls)", sv->name);
    } else if (url_has_password(sv->url)) {
        add_error(ld, line_of(s, "url"),
                  "[service %s] url: a password must not be written in the url; put the key in "
                  "api_key_file",
                  sv->name);
    } else if (strncmp(sv->url, "http://", 7) != 0 && strncmp(sv->url, "https://", 8) != 0) {
        add_error(ld, line_of(s, "url"),
                  "[service %s] url: expected http://HOST/PATH or https://HOST/PATH (got \"%s\")",
                  sv->name, sv->url);
    } else {
        /* libcurl refuses blanks and control bytes only at call time, so
         * every job would fail; a URL is printable ASCII. The byte is named,
         * not echoed: it may not print. */
        size_t bad = strspn(sv->url, "!\"#$%&'()*+,-./0123456789:;<=>?@"
                                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`"
                                     "abcdefghijklmnopqrstuvwxyz{|}~");
        if (sv->url[bad] != '\0')
            add_error(ld, line_of(s, "url"),
                      "[service %s] url: byte %zu is 0x%02x; a url is printable ASCII without "
                      "blanks (percent-encode the rest)",
                      sv->name, bad + 1, (unsigned)(unsigned char)sv->url[bad]);
    }
    check_service_spend(ld, sv, s);
    if (sv->breaker_open_for_ms > sv->breaker_open_max_ms && !is_bad(s, "breaker_open_for") &&
        !is_bad(s, "breaker_open_max")) {
        char f[32], m[32];
        fmt_duration(sv->breaker_open_for_ms, f, sizeof(f));
        fmt_duration(sv->breaker_open_max_ms, m, sizeof(m));
        add_error(ld, line_of(s, "breaker_open_for"),
                  "[service %s] breaker_open_for: must not be above breaker_open_max = %s (got "
                  "\"%s\")",
                  sv->name, m, f);
    }
}

/* [redis] cluster (docs/configuration.md, docs/design.md "Redis Cluster
 * slots"): seed addresses, each once; the url then gives only the scheme,
 * user and password file, and db 0 (a Cluster has no other). */
static void check_redis_cluster(struct loader *ld)
{
    struct corral_redis_conf *r = &ld->cfg->redis;
    struct section *s = &ld->global[SEC_REDIS];
    if (r->cluster.n == 0 || is_bad(s, "cluster"))
        return;
    for (size_t i = 0; i < r->cluster.n; i++) {
        struct corral_hostport hp;
        struct corral_err err;
        if (corral_hostport_parse(r->cluster.items[i], 6379, &hp, &err) < 0)
            add_error(ld, line_of(s, "cluster"), "[redis] cluster: %s", err.msg);
        for (size_t j = 0; j < i && hp.host != NULL; j++)
            if (strcmp(r->cluster.items[j], r->cluster.items[i]) == 0)
                add_error(ld, line_of(s, "cluster"), "[redis] cluster: \"%s\" is listed twice",
                          r->cluster.items[i]);
        corral_hostport_free(&hp);
    }
    if (r->sentinels.n > 0 && !is_bad(s, "sentinels"))
        add_error(ld, line_of(s, "sentinels"),
                  "[redis] sentinels: not with cluster (a Redis Cluster fails over by itself; "
                  "set one of them)");
    if (is_bad(s, "url"))
        return;
    if (strncmp(r->url, "redis://", 8) != 0)
        add_error(ld, line_of(s, "url"),
                  "[redis] url: with cluster the url gives only the scheme and user: use "
                  "redis://[user@]/0 (unix:// and rediss:// are not supported with cluster)");
    else if (r->addr.db != 0)
        add_error(ld, line_of(s, "url"),
                  "[redis] url: with cluster the db must be 0 (a Redis Cluster has no other; "
                  "got %d)",
                  r->addr.db);
}

/* Sentinel and TLS keys (docs/ha.md): each only with what it serves. */
static void check_redis_ha(struct loader *ld)
{
    struct corral_redis_conf *r = &ld->cfg->redis;
    struct section *s = &ld->global[SEC_REDIS];
    int tls = corral_tls_url(r->url);
    if (r->sentinels.n > 0 && !is_bad(s, "sentinels")) {
        for (size_t i = 0; i < r->sentinels.n; i++) {
            struct corral_hostport hp;
            struct corral_err err;
            if (corral_hostport_parse(r->sentinels.items[i], CORRAL_SENTINEL_PORT, &hp, &err) < 0)
                add_error(ld, line_of(s, "sentinels"), "[redis] sentinels: %s", err.msg);
            for (size_t j = 0; j < i && hp.host != NULL; j++)
                if (strcmp(r->sentinels.items[j], r->sentinels.items[i]) == 0)
                    add_error(ld, line_of(s, "sentinels"),
                              "[redis] sentinels: \"%s\" is listed twice", r->sentinels.items[i]);
            corral_hostport_free(&hp);
        }
        if (r->sentinel_master == NULL && !is_bad(s, "sentinel_master"))
            add_error(ld, line_of(s, "sentinels"),
                      "[redis] sentinel_master: required with sentinels (the name they monitor, "
                      "as in `sentinel monitor NAME ...`)");
        if (strncmp(r->url, "unix://", 7) == 0 && !is_bad(s, "url"))
            add_error(ld, line_of(s, "url"),
                      "[redis] url: with sentinels the url gives only the scheme, user and db: "
                      "use redis://[user@]host/db or rediss://..., not unix://");
    } else if (!is_bad(s, "sentinels")) {
        static const char *const needs_sentinels[] = {"sentinel_master", "sentinel_password_file"};
        for (size_t i = 0; i < 2; i++)
            if (is_set(s, needs_sentinels[i]))
                add_error(ld, line_of(s, needs_sentinels[i]),
                          "[redis] %s: only used with sentinels = host:port, ...",
                          needs_sentinels[i]);
    }
    if (!tls && !is_bad(s, "url")) {
        static const char *const needs_tls[] = {"tls_ca_file", "tls_cert_file", "tls_key_file",
                                                "tls_server_name"};
        for (size_t i = 0; i < 4; i++)
            if (is_set(s, needs_tls[i]))
                add_error(ld, line_of(s, needs_tls[i]),
                          "[redis] %s: only used with a rediss:// url (url is \"%s\")",
                          needs_tls[i], r->url);
    }
    if ((r->tls_cert_file == NULL) != (r->tls_key_file == NULL) && !is_bad(s, "tls_cert_file") &&
        !is_bad(s, "tls_key_file"))
        add_error(ld, line_of(s, r->tls_cert_file ? "tls_cert_file" : "tls_key_file"),
                  "[redis] %s: a client certificate needs both tls_cert_file and tls_key_file",
                  r->tls_cert_file ? "tls_key_file" : "tls_cert_file");
}

static void cross_check(struct loader *ld)
{
    struct corral_config *cfg = ld->cfg;
    struct section *pool = &ld->global[SEC_POOL];
    struct section *redis = &ld->global[SEC_REDIS];
    if (cfg->pool.min > cfg->pool.max && !is_bad(pool, "min") && !is_bad(pool, "max"))
        add_error(ld, line_of(pool, is_set(pool, "max") ? "max" : "min"),
                  "[pool] max: must not be below min = %d (got \"%d\")", cfg->pool.min,
                  cfg->pool.max);
    for (size_t i = 0; i < cfg->nqueues; i++)
        check_queue(ld, &cfg->queues[i], &ld->queues[i]);
    for (size_t i = 0; i < cfg->nservices; i++)
        check_service(ld, &cfg->services[i], &ld->services[i]);
    /* The [redis] url, parsed here once for every connection the program
     * makes (so --check refuses exactly what connecting would, passwords
     * included, never echoed). */
    if (!is_bad(redis, "url")) {
        struct corral_err err;
        corral_redis_addr_free(&cfg->redis.addr);
        if (corral_tls_parse_url(cfg->redis.url, &cfg->redis.addr, NULL,
                                 cfg->redis.sentinels.n > 0 || cfg->redis.cluster.n > 0, &err) < 0)
            add_error(ld, line_of(redis, "url"), "[redis] url: %s", err.msg);
    }
    check_redis_ha(ld);
    check_redis_cluster(ld);
    for (size_t i = 0; i < cfg->nqueues; i++)
        cfg->queues[i].service_gate = cfg->redis.cluster.n > 0 && cfg->queues[i].service != NULL;
    /* pool.queues: every [queue] section in file order when unset; else each
     * must have its section. */
    struct corral_strlist *pq = &cfg->pool.queues;
    if (!is_set(pool, "queues")) {
        for (size_t i = 0; i < cfg->nqueues; i++)
            corral_strlist_push(pq, cfg->queues[i].name);
    } else {
        for (size_t i = 0; i < pq->n; i++) {
            const char *name = pq->items[i];
            if (corral_config_queue(cfg, name) == NULL)
                add_error(ld, line_of(pool, "queues"),
                          "[pool] queues names \"%s\" but there is no [queue %s] section", name,
                          name);
            for (size_t j = 0; j < i; j++)
                if (strcmp(pq->items[j], name) == 0)
                    add_error(ld, line_of(pool, "queues"), "[pool] queues: \"%s\" is listed twice",
                              name);
        }
    }
}

static struct corral_config *load(struct loader *ld)
{
    /* [redis], [pool], [scale] and [web] exist with their defaults even when
     * the file leaves them out; cross_check looks their keys up by kind. */
    for (int s = SEC_REDIS; s <= SEC_WEB; s++)
        ld->global[s].sec = (enum sec)s;
    int rc = ini_parse_stream(reader, ld, handler, ld);
    if (rc < 0)
        add_error(ld, 0, "cannot parse: out of memory");
    else if (rc > 0) /* the reader should have caught it: a line inih still refused */
        add_error(ld, rc, "syntax error");
    cross_check(ld);
    sort_errors(ld);
    free(ld->err_line);
    free(ld->linebuf);
    free(ld->queues);
    free(ld->services);
    if (ld->errs->n > 0) {
        corral_config_free(ld->cfg);
        return NULL;
    }
    return ld->cfg;
}

struct corral_config *corral_config_load(const char *path, struct corral_config_errors *errs)
{
    errs->lines = NULL;
    errs->n = 0;
    struct loader ld = {.errs = errs, .name = path};
    ld.file = fopen(path, "re");
    if (ld.file == NULL) {
        add_error(&ld, 0, "cannot open: %s", strerror(errno));
        free(ld.err_line);
        return NULL;
    }
    ld.cfg = new_config(path);
    struct corral_config *cfg = load(&ld);
    fclose(ld.file);
    return cfg;
}

struct corral_config *corral_config_load_string(const char *text, const char *name,
                                                struct corral_config_errors *errs)
{
    errs->lines = NULL;
    errs->n = 0;
    struct loader ld = {.errs = errs, .name = name, .text = text};
    ld.cfg = new_config(name);
    return load(&ld);
}

const char *corral_config_default_path(void)
{
    const char *env = getenv("CORRAL_CONFIG");
    return env != NULL && env[0] != '\0' ? env : CORRAL_DEFAULT_CONFIG;
}

struct corral_config *corral_config_defaults(void)
{
    return new_config("<defaults>");
}

int corral_config_set_redis_url(struct corral_config *cfg, const char *url, struct corral_err *err)
{
    struct corral_redis_addr addr;
    if (corral_tls_parse_url(url, &addr, NULL,
                             cfg->redis.sentinels.n > 0 || cfg->redis.cluster.n > 0, err) < 0)
        return -1;
    corral_redis_addr_free(&cfg->redis.addr);
    cfg->redis.addr = addr;
    free(cfg->redis.url);
    cfg->redis.url = corral_xstrdup(url);
    return 0;
}

static void free_section(void *base, enum sec sec)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].sec == sec)
            free_field(base, &keys[i]);
}

void corral_config_free(struct corral_config *cfg)
{
    if (cfg == NULL)
        return;
    free_section(&cfg->redis, SEC_REDIS);
    corral_redis_addr_free(&cfg->redis.addr);
    free_section(&cfg->pool, SEC_POOL);
    free_section(&cfg->scale, SEC_SCALE);
    free_section(&cfg->web, SEC_WEB);
    for (size_t i = 0; i < cfg->nqueues; i++) {
        free_section(&cfg->queues[i], SEC_QUEUE);
        free(cfg->queues[i].name);
    }
    for (size_t i = 0; i < cfg->nservices; i++) {
        free_section(&cfg->services[i], SEC_SERVICE);
        free(cfg->services[i].name);
    }
    free(cfg->queues);
    free(cfg->services);
    free(cfg->path);
    free(cfg);
}

void corral_config_errors_free(struct corral_config_errors *errs)
{
    if (errs == NULL)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->lines[i]);
    free(errs->lines);
    errs->lines = NULL;
    errs->n = 0;
}

const struct corral_queue_conf *corral_config_queue(const struct corral_config *cfg,
                                                    const char *name)
{
    for (size_t i = 0; i < cfg->nqueues; i++)
        if (strcmp(cfg->queues[i].name, name) == 0)
            return &cfg->queues[i];
    return NULL;
}

const struct corral_service_conf *corral_config_service(const struct corral_config *cfg,
                                                        const char *name)
{
    for (size_t i = 0; i < cfg->nservices; i++)
        if (strcmp(cfg->services[i].name, name) == 0)
            return &cfg->services[i];
    return NULL;
}

/* The longest line the loader reads: inih's buffer holds the line end and
 * a NUL too (the reader refuses longer lines, naming this limit). */
#define LINE_MAX_BYTES (INI_MAX_LINE - 2)

/* "a, b, c", or "a,b,c" with sep ","; caller frees. */
static char *join_list(const struct corral_strlist *l, const char *sep)
{
    size_t len = 1;
    for (size_t i = 0; i < l->n; i++)
        len += strlen(l->items[i]) + strlen(sep);
    char *s = corral_xmalloc(len);
    s[0] = '\0';
    for (size_t i = 0; i < l->n; i++) {
        if (i > 0)
            strcat(s, sep);
        strcat(s, l->items[i]);
    }
    return s;
}

/* Writes "key = value" so that the loader reads it back: without the blanks
 * (compact: lists without the blank after each comma) when only that fits
 * in a line, and as a comment when nothing fits -- an unset queues list
 * naming many long [queue] sections, or a path that ${CREDENTIALS_DIRECTORY}
 * made longer -- since loading without the key gives the same list, and a
 * line the loader refuses would make the whole dump invalid. */
static void put_line(FILE *out, const char *key, const char *value, const char *compact)
{
    size_t k = strlen(key);
    if (compact == NULL)
        compact = value;
    /* "key =;x" sets ";x", but "key = ;x" is a comment (found by fuzzing). */
    int spaced = value[0] != ';' && k + 3 + strlen(value) <= LINE_MAX_BYTES;
    if (spaced)
        fprintf(out, "%s = %s\n", key, value);
    else if (k + 1 + strlen(compact) <= LINE_MAX_BYTES)
        fprintf(out, "%s=%s\n", key, compact);
    else
        fprintf(out, "; %s: not shown, %zu bytes is longer than a line may be (%d)\n", key,
                k + 1 + strlen(compact), LINE_MAX_BYTES);
}

static void dump_section(FILE *out, const void *base, enum sec sec)
{
    const char *b = base;
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        if (k->sec != sec)
            continue;
        const char *p = b + k->off;
        char v[64], v2[64], line[160];
        switch (k->type) {
        case T_STR:
        case T_PATH:
        case T_NAME:
            if (*(char *const *)p != NULL)
                put_line(out, k->name, *(char *const *)p, NULL);
            break;
        case T_INT:
            snprintf(v, sizeof(v), "%d", *(const int *)p);
            put_line(out, k->name, v, NULL);
            break;
        case T_I64:
            snprintf(v, sizeof(v), "%lld", (long long)*(const int64_t *)p);
            put_line(out, k->name, v, NULL);
            break;
        case T_DUR:
            fmt_duration(*(const int64_t *)p, v, sizeof(v));
            put_line(out, k->name, v, NULL);
            break;
        case T_SIZE:
            fmt_size(*(const int64_t *)p, v, sizeof(v));
            put_line(out, k->name, v, NULL);
            break;
        case T_PCT:
            fmt_pct(*(const int *)p, v, sizeof(v));
            put_line(out, k->name, v, NULL);
            break;
        case T_LIST:
        case T_TWEIGHT: {
            const struct corral_strlist *l = (const struct corral_strlist *)p;
            if (l->n > 0) {
                char *spaced = join_list(l, ", "), *compact = join_list(l, ",");
                put_line(out, k->name, spaced, compact);
                free(spaced);
                free(compact);
            }
            break;
        }
        case T_HEADER: {
            const struct corral_strlist *l = (const struct corral_strlist *)p;
            for (size_t h = 0; h < l->n; h++) {
                const char *hv = l->items[h];
                if (sensitive_header(hv))
                    fprintf(out, "; header = %.*s: (value hidden)\n", (int)strcspn(hv, ":"), hv);
                else
                    put_line(out, k->name, hv, NULL);
            }
            break;
        }
        case T_RANGE:
            fmt_duration(*(const int64_t *)p, v, sizeof(v));
            fmt_duration(*(const int64_t *)(b + k->off2), v2, sizeof(v2));
            snprintf(line, sizeof(line), "%s..%s", v, v2);
            put_line(out, k->name, line, NULL);
            break;
        case T_RATE:
            if (*(const int64_t *)p > 0) {
                fmt_duration(*(const int64_t *)(b + k->off2), v2, sizeof(v2));
                /* "500/m" rather than "500/1m" */
                const char *per = v2[0] == '1' && !isdigit((unsigned char)v2[1]) ? v2 + 1 : v2;
                snprintf(line, sizeof(line), "%lld/%s", (long long)*(const int64_t *)p, per);
                put_line(out, k->name, line, NULL);
            }
            break;
        case T_MONEY:
            if (*(const int64_t *)p > 0) {
                corral_money_format(*(const int64_t *)p, v, sizeof(v));
                put_line(out, k->name, v, NULL);
            }
            break;
        case T_MRATE:
            if (*(const int64_t *)p > 0) {
                corral_money_format(*(const int64_t *)p, v, sizeof(v));
                fmt_duration(*(const int64_t *)(b + k->off2), v2, sizeof(v2));
                const char *per = v2[0] == '1' && !isdigit((unsigned char)v2[1]) ? v2 + 1 : v2;
                snprintf(line, sizeof(line), "%s/%s", v, per);
                put_line(out, k->name, line, NULL);
            }
            break;
        case T_PRICE: {
            const struct corral_price_list *l = (const struct corral_price_list *)p;
            for (size_t j = 0; j < l->n; j++) {
                char pin[48], pout[48], pl[CORRAL_MODEL_MAX + 100];
                corral_money_format(l->items[j].input_nano, pin, sizeof(pin));
                corral_money_format(l->items[j].output_nano, pout, sizeof(pout));
                snprintf(pl, sizeof(pl), "%s %s %s", l->items[j].model, pin, pout);
                put_line(out, k->name, pl, NULL);
            }
            break;
        }
        case T_ORDER:
            put_line(out, k->name,
                     *(const enum corral_order *)p == CORRAL_ORDER_WEIGHTED ? "weighted" : "strict",
                     NULL);
            break;
        case T_HANDLER:
            put_line(out, k->name, handler_name(*(const enum corral_handler *)p), NULL);
            break;
        case T_WEIGHTS: {
            const struct corral_queue_conf *q = base;
            if (q->order == CORRAL_ORDER_WEIGHTED) {
                struct corral_strlist l = {NULL, 0};
                for (size_t w = 0; w < q->priorities.n && w < CORRAL_MAX_PRIORITIES; w++) {
                    snprintf(v, sizeof(v), "%d", q->weights[w]);
                    corral_strlist_push(&l, v);
                }
                char *spaced = join_list(&l, ", "), *compact = join_list(&l, ",");
                put_line(out, k->name, spaced, compact);
                free(spaced);
                free(compact);
                corral_strlist_free(&l);
            }
            break;
        }
        }
    }
}

void corral_config_dump(const struct corral_config *cfg, FILE *out)
{
    fprintf(out, "; effective configuration of %s\n", cfg->path);
    fprintf(out, "[redis]\n");
    dump_section(out, &cfg->redis, SEC_REDIS);
    fprintf(out, "\n[pool]\n");
    dump_section(out, &cfg->pool, SEC_POOL);
    fprintf(out, "\n[scale]\n");
    dump_section(out, &cfg->scale, SEC_SCALE);
    fprintf(out, "\n[web]\n");
    dump_section(out, &cfg->web, SEC_WEB);
    for (size_t i = 0; i < cfg->nqueues; i++) {
        fprintf(out, "\n[queue %s]\n", cfg->queues[i].name);
        dump_section(out, &cfg->queues[i], SEC_QUEUE);
    }
    for (size_t i = 0; i < cfg->nservices; i++) {
        fprintf(out, "\n[service %s]\n", cfg->services[i].name);
        dump_section(out, &cfg->services[i], SEC_SERVICE);
    }
}

/* Unit tests for corral.conf: every value type, every error with its file
 * and line, defaults, cross-checks, secrets and the --check dump, which must
 * load back to the same settings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config_harness.h"
#include "corral/config.h"
#include "corral/queue.h"
#include "corral/util.h"

#define DAY_MS 86400000LL

/* Loads text that must fail and checks that some error line contains want. */
static void load_fails_with(const char *text, const char *want)
{
    struct corral_config_errors errs;
    struct corral_config *cfg = corral_config_load_string(text, "t.conf", &errs);
    assert_null(cfg);
    int found = 0;
    for (size_t i = 0; i < errs.n; i++)
        if (strstr(errs.lines[i], want) != NULL)
            found = 1;
    if (!found) {
        fprintf(stderr, "wanted an error containing: %s\n", want);
        print_errors(&errs);
    }
    assert_true(found);
    corral_config_errors_free(&errs);
}

/* Loads text that must fail with exactly these error lines, in this order. */
static void load_fails_exactly(const char *text, size_t n, ...)
{
    struct corral_config_errors errs;
    struct corral_config *cfg = corral_config_load_string(text, "t.conf", &errs);
    assert_null(cfg);
    int same = errs.n == n;
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        const char *want = va_arg(ap, const char *);
        if (same && strcmp(errs.lines[i], want) != 0) {
            fprintf(stderr, "wanted: %s\n", want);
            same = 0;
        }
    }
    va_end(ap);
    if (!same)
        print_errors(&errs);
    assert_true(same);
    corral_config_errors_free(&errs);
}

/* Loads text that must fail and never mention secret in any error. */
static void load_fails_without_echoing(const char *text, const char *secret)
{
    struct corral_config_errors errs;
    assert_null(corral_config_load_string(text, "t.conf", &errs));
    assert_true(errs.n > 0);
    for (size_t i = 0; i < errs.n; i++)
        assert_null(strstr(errs.lines[i], secret));
    corral_config_errors_free(&errs);
}

static char *dump_to_string(const struct corral_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    corral_config_dump(cfg, out);
    fclose(out);
    return buf;
}

/* The example config, found from the repo root (where `make unit` runs the
 * tests) or from build/tests. */
static const char *example_path(void)
{
    static const char *const candidates[] = {"systemd/corral.conf", "../../systemd/corral.conf"};
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
        if (access(candidates[i], R_OK) == 0)
            return candidates[i];
    fail_msg("systemd/corral.conf not found: run from the repository root");
    return NULL;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* ---- defaults ---- */

static void empty_file_gives_every_default(void **state)
{
    struct corral_config *cfg = load_ok("");
    assert_string_equal(cfg->path, "t.conf");
    assert_string_equal(cfg->redis.url, "redis://127.0.0.1:6379/0");
    assert_string_equal(cfg->redis.prefix, "corral");
    assert_null(cfg->redis.password_file);
    assert_int_equal(cfg->pool.min, 2);
    assert_int_equal(cfg->pool.max, 20);
    assert_int_equal(cfg->pool.concurrency, 4);
    assert_int_equal(cfg->pool.max_jobs, 0);
    assert_int_equal(cfg->pool.max_rss_bytes, 0);
    assert_int_equal(cfg->pool.drain_timeout_ms, 30000);
    assert_int_equal(cfg->pool.hang_timeout_ms, 30000);
    assert_int_equal(cfg->scale.tick_ms, 1000);
    assert_int_equal(cfg->scale.target_wait_ms, 5000);
    assert_int_equal(cfg->scale.target_utilization_pm, 800);
    assert_int_equal(cfg->scale.scale_out_cooldown_ms, 5000);
    assert_int_equal(cfg->scale.scale_in_window_ms, 120000);
    assert_int_equal(cfg->scale.cpu_ceiling_pm, 850);
    assert_int_equal(cfg->scale.mem_ceiling_pm, 850);
    assert_int_equal(cfg->nqueues, 0);
    assert_int_equal(cfg->nservices, 0);
    assert_int_equal(cfg->pool.queues.n, 0);
    corral_config_free(cfg);
}

static void queue_defaults_match_the_documented_ones(void **state)
{
    struct corral_config *cfg = load_ok("[queue q]\nhandler = echo\n");
    const struct corral_queue_conf *q = corral_config_queue(cfg, "q");
    assert_non_null(q);
    assert_int_equal(q->priorities.n, 3);
    assert_string_equal(q->priorities.items[0], "high");
    assert_string_equal(q->priorities.items[1], "normal");
    assert_string_equal(q->priorities.items[2], "low");
    assert_int_equal(q->order, CORRAL_ORDER_STRICT);
    for (int i = 0; i < CORRAL_MAX_PRIORITIES; i++)
        assert_int_equal(q->weights[i], 1);
    assert_null(q->service);
    assert_null(q->command);
    assert_int_equal(q->max_attempts, 5);
    assert_int_equal(q->backoff_base_ms, 1000);
    assert_int_equal(q->backoff_cap_ms, 300000);
    assert_int_equal(q->timeout_ms, 60000);
    assert_int_equal(q->lease_ms, 30000);
    assert_int_equal(q->result_ttl_ms, 86400000);
    assert_int_equal(q->max_payload_bytes, 1 << 20);
    assert_int_equal(q->max_result_bytes, 1 << 20);
    corral_config_free(cfg);
}

static void queue_handler_defaults_to_http(void **state)
{
    struct corral_config *cfg = load_ok("[queue q]\nservice = s\n[service s]\nurl = http://h/\n");
    assert_int_equal(corral_config_queue(cfg, "q")->handler, CORRAL_HANDLER_HTTP);
    corral_config_free(cfg);
}

static void service_defaults_match_the_documented_ones(void **state)
{
    struct corral_config *cfg = load_ok("[service s]\nurl = https://h/v1\n");
    const struct corral_service_conf *s = corral_config_service(cfg, "s");
    assert_non_null(s);
    assert_null(corral_config_service(cfg, "t"));
    assert_string_equal(s->url, "https://h/v1");
    assert_null(s->api_key_file);
    assert_int_equal(s->headers.n, 0);
    assert_int_equal(s->connect_timeout_ms, 5000);
    assert_int_equal(s->max_inflight, 10);
    assert_int_equal(s->rate_count, 0);
    assert_int_equal(s->breaker_window_ms, 60000);
    assert_int_equal(s->breaker_min_calls, 20);
    assert_int_equal(s->breaker_failure_rate_pm, 500);
    assert_int_equal(s->breaker_slow_call_ms, 30000);
    assert_int_equal(s->breaker_slow_rate_pm, 800);
    assert_int_equal(s->breaker_open_for_ms, 30000);
    assert_int_equal(s->breaker_open_max_ms, 300000);
    assert_int_equal(s->breaker_half_open_calls, 3);
    corral_config_free(cfg);
}

static void defaults_without_a_file_have_no_queues(void **state)
{
    struct corral_config *cfg = corral_config_defaults();
    assert_string_equal(cfg->redis.url, "redis://127.0.0.1:6379/0");
    assert_int_equal(cfg->pool.max, 20);
    assert_int_equal(cfg->nqueues, 0);
    assert_int_equal(cfg->pool.queues.n, 0);
    corral_config_free(cfg);
    corral_config_free(NULL);
    corral_config_errors_free(NULL);
}

static void a_file_without_queues_is_valid_for_tools(void **state)
{
    struct corral_config *cfg = load_ok("[redis]\nurl = unix:///run/redis/redis.sock\n");
    assert_int_equal(cfg->nqueues, 0);
    assert_int_equal(cfg->pool.queues.n, 0);
    assert_null(corral_config_queue(cfg, "prompts"));
    corral_config_free(cfg);
}

static void pool_queues_defaults_to_every_queue_in_file_order(void **state)
{
    struct corral_config *cfg = load_ok("[queue b]\nhandler = echo\n[queue a]\nhandler = echo\n");
    assert_int_equal(cfg->pool.queues.n, 2);
    assert_string_equal(cfg->pool.queues.items[0], "b");
    assert_string_equal(cfg->pool.queues.items[1], "a");
    corral_config_free(cfg);
    cfg = load_ok("[pool]\nqueues = a\n[queue b]\nhandler = echo\n[queue a]\nhandler = echo\n");
    assert_int_equal(cfg->pool.queues.n, 1);
    assert_string_equal(cfg->pool.queues.items[0], "a");
    corral_config_free(cfg);
}

static void the_interface_example_loads(void **state)
{
    struct corral_config *cfg = load_ok(
        "[redis]\nurl = redis://127.0.0.1:6379/0      ; also redis://user@host:port/db\n"
        "password_file = /etc/corral/redis.pass\nprefix = corral\n"
        "[pool]\nmin = 2\nmax = 20\nconcurrency = 4\nmax_jobs = 0\nmax_rss = 0\n"
        "drain_timeout = 30s\nhang_timeout = 30s\nqueues = prompts, embeddings\n"
        "[scale]\ntick = 1s\ntarget_wait = 5s\ntarget_utilization = 80%\n"
        "scale_out_cooldown = 5s\nscale_in_window = 120s\ncpu_ceiling = 85%\n"
        "mem_ceiling = 85%\n"
        "[queue prompts]\npriorities = high, normal, low\norder = weighted\nweights = 6, 3, 1\n"
        "handler = http\nservice = openai\nmax_attempts = 5\nbackoff = 1s..5m\ntimeout = 60s\n"
        "lease = 30s\nresult_ttl = 24h\nmax_payload = 1M\nmax_result = 1M\n"
        "[queue embeddings]\nhandler = exec\ncommand = /usr/local/bin/summarise --fast\n"
        "[service openai]\nurl = https://api.openai.com/v1/chat/completions\n"
        "api_key_file = /etc/corral/openai.key\n"
        "header = OpenAI-Organization: org-123\nheader = X-Team: ml\n"
        "connect_timeout = 5s\nmax_inflight = 10\nrate = 500/m\nbreaker_window = 60s\n"
        "breaker_min_calls = 20\nbreaker_failure_rate = 50%\nbreaker_slow_call = 30s\n"
        "breaker_slow_rate = 80%\nbreaker_open_for = 30s\nbreaker_open_max = 5m\n"
        "breaker_half_open_calls = 3\n");
    assert_string_equal(cfg->redis.password_file, "/etc/corral/redis.pass");
    const struct corral_queue_conf *q = corral_config_queue(cfg, "prompts");
    assert_int_equal(q->order, CORRAL_ORDER_WEIGHTED);
    assert_int_equal(q->weights[0], 6);
    assert_int_equal(q->weights[1], 3);
    assert_int_equal(q->weights[2], 1);
    assert_int_equal(q->weights[3], 0);
    assert_string_equal(q->service, "openai");
    const struct corral_service_conf *s = corral_config_service(cfg, "openai");
    assert_string_equal(s->api_key_file, "/etc/corral/openai.key");
    assert_int_equal(s->headers.n, 2);
    assert_string_equal(s->headers.items[0], "OpenAI-Organization: org-123");
    assert_string_equal(s->headers.items[1], "X-Team: ml");
    assert_int_equal(s->rate_count, 500);
    assert_int_equal(s->rate_period_ms, 60000);
    assert_int_equal(cfg->pool.queues.n, 2);
    const struct corral_queue_conf *e = corral_config_queue(cfg, "embeddings");
    assert_int_equal(e->handler, CORRAL_HANDLER_EXEC);
    assert_string_equal(e->command, "/usr/local/bin/summarise --fast");
    corral_config_free(cfg);
}

static void the_example_config_loads_cleanly(void **state)
{
    struct corral_config_errors errs;
    struct corral_config *cfg = corral_config_load(example_path(), &errs);
    if (errs.n > 0)
        print_errors(&errs);
    assert_int_equal(errs.n, 0);
    assert_non_null(cfg);
    const struct corral_queue_conf *p = corral_config_queue(cfg, "prompts");
    assert_non_null(p);
    assert_int_equal(p->handler, CORRAL_HANDLER_HTTP);
    assert_string_equal(p->service, "openai");
    assert_non_null(corral_config_queue(cfg, "embeddings"));
    assert_non_null(corral_config_service(cfg, "openai"));
    corral_config_free(cfg);
}

/* ---- value types ---- */

static void durations_parse_with_units(void **state)
{
    struct {
        const char *in;
        int64_t ms;
    } ok[] = {{"250ms", 250},  {"5s", 5000},   {"5", 5000}, {"2m", 120000}, {"2min", 120000},
              {"1h", 3600000}, {"1d", DAY_MS}, {"0s", 0},   {"0", 0},       {"120s", 120000}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t v = -1;
        struct corral_err err;
        assert_int_equal(corral_parse_duration_ms(ok[i].in, &v, &err), 0);
        assert_int_equal(v, ok[i].ms);
    }
}

static void bad_durations_are_refused_naming_the_value(void **state)
{
    const char *bad[] = {"", "s", "5x", "-5s", "1.5s", " 5s", "5 s", "5S", "ms", "5sec", NULL};
    for (const char **b = bad; *b; b++) {
        int64_t v;
        struct corral_err err;
        assert_int_equal(corral_parse_duration_ms(*b, &v, &err), -1);
        char want[64];
        snprintf(want, sizeof(want), "(got \"%s\")", *b);
        assert_non_null(strstr(err.msg, "expected a duration"));
        assert_non_null(strstr(err.msg, want));
    }
    const char *huge[] = {"99999999999999999999s", "9999999999999999d", "99999999999999999999",
                          NULL};
    for (const char **b = huge; *b; b++) {
        int64_t v;
        struct corral_err err;
        assert_int_equal(corral_parse_duration_ms(*b, &v, &err), -1);
        assert_non_null(strstr(err.msg, "too large"));
    }
}

static void durations_are_checked_against_each_keys_bounds(void **state)
{
    load_fails_exactly("[scale]\ntick = 10ms\n", 1,
                       "t.conf:2: [scale] tick: must be from 100ms to 1m (got \"10ms\")");
    load_fails_exactly("[queue q]\nhandler = echo\nlease = 999ms\n", 1,
                       "t.conf:3: [queue q] lease: must be from 1s to 1d (got \"999ms\")");
    load_fails_exactly("[pool]\ndrain_timeout = 2d\n", 1,
                       "t.conf:2: [pool] drain_timeout: must be at most 1d (got \"2d\")");
    load_fails_exactly(
        "[queue q]\nhandler = echo\ntimeout = 99999999999999999999s\n", 1,
        "t.conf:3: [queue q] timeout: duration is too large (got \"99999999999999999999s\")");
    load_fails_with("[queue q]\nhandler = echo\ntimeout = -5s\n",
                    "t.conf:3: [queue q] timeout: expected a duration like 250ms, 5s, 2m, 1h or "
                    "1d (got \"-5s\")");
    load_fails_with("[queue q]\nhandler = echo\ntimeout =\n",
                    "t.conf:3: [queue q] timeout: expected a duration");
    load_fails_with("[queue q]\nhandler = echo\ntimeout = soon\n", "(got \"soon\")");
    struct corral_config *cfg = load_ok("[pool]\ndrain_timeout = 0\n[scale]\ntick = 250ms\n");
    assert_int_equal(cfg->pool.drain_timeout_ms, 0);
    assert_int_equal(cfg->scale.tick_ms, 250);
    corral_config_free(cfg);
}

static void sizes_parse_in_powers_of_1024(void **state)
{
    struct {
        const char *in;
        int64_t bytes;
    } ok[] = {{"0", 0},
              {"512", 512},
              {"512B", 512},
              {"512K", 512 << 10},
              {"512k", 512 << 10},
              {"1M", 1 << 20},
              {"1MB", 1 << 20},
              {"2G", 2LL << 30},
              {"1024G", 1024LL << 30}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t v = -1;
        struct corral_err err;
        assert_int_equal(corral_parse_size(ok[i].in, &v, &err), 0);
        assert_int_equal(v, ok[i].bytes);
    }
    const char *bad[] = {"", "1T", "-1M", "1.5M", "M", "1 M", "1m", NULL};
    for (const char **b = bad; *b; b++) {
        int64_t v;
        struct corral_err err;
        assert_int_equal(corral_parse_size(*b, &v, &err), -1);
        assert_non_null(strstr(err.msg, "expected a size"));
    }
    int64_t v;
    struct corral_err err;
    assert_int_equal(corral_parse_size("99999999999999G", &v, &err), -1);
    assert_non_null(strstr(err.msg, "too large"));
    assert_int_equal(corral_parse_size("99999999999999999999", &v, &err), -1);
    assert_non_null(strstr(err.msg, "too large"));
}

static void sizes_are_checked_against_each_keys_bounds(void **state)
{
    load_fails_exactly("[queue q]\nhandler = echo\nmax_payload = 0\n", 1,
                       "t.conf:3: [queue q] max_payload: must be from 1 to 512M (got \"0\")");
    load_fails_exactly("[pool]\nmax_rss = 2048G\n", 1,
                       "t.conf:2: [pool] max_rss: must be at most 1024G (got \"2048G\")");
    load_fails_with("[pool]\nmax_rss = lots\n", "[pool] max_rss: expected a size");
    struct corral_config *cfg = load_ok("[pool]\nmax_rss = 300M\n");
    assert_int_equal(cfg->pool.max_rss_bytes, 300LL << 20);
    corral_config_free(cfg);
}

static void percentages_become_per_mille(void **state)
{
    int pm;
    struct corral_err err;
    assert_int_equal(corral_parse_percent_pm("85%", &pm, &err), 0);
    assert_int_equal(pm, 850);
    assert_int_equal(corral_parse_percent_pm("12.5%", &pm, &err), 0);
    assert_int_equal(pm, 125);
    assert_int_equal(corral_parse_percent_pm("0%", &pm, &err), 0);
    assert_int_equal(pm, 0);
    assert_int_equal(corral_parse_percent_pm("100%", &pm, &err), 0);
    assert_int_equal(pm, 1000);
    const char *bad[] = {"85", "", "%", "101%", "100.1%", "-1%", "1.25%", "1.%", "85 %", NULL};
    for (const char **b = bad; *b; b++) {
        assert_int_equal(corral_parse_percent_pm(*b, &pm, &err), -1);
        assert_non_null(strstr(err.msg, "expected a percentage"));
    }
}

static void percentages_are_checked_against_each_keys_bounds(void **state)
{
    load_fails_exactly("[scale]\ncpu_ceiling = 0.5%\n", 1,
                       "t.conf:2: [scale] cpu_ceiling: must be from 1% to 100% (got \"0.5%\")");
    load_fails_exactly(
        "[service s]\nurl = http://h/\nbreaker_failure_rate = 0%\n", 1,
        "t.conf:3: [service s] breaker_failure_rate: must be from 0.1% to 100% (got \"0%\")");
    load_fails_with("[scale]\ntarget_utilization = 80\n",
                    "t.conf:2: [scale] target_utilization: expected a percentage");
}

static void integers_are_bounded(void **state)
{
    int64_t v;
    struct corral_err err;
    assert_int_equal(corral_parse_int("-7", -10, 10, &v, &err), 0);
    assert_int_equal(v, -7);
    assert_int_equal(corral_parse_int("+7", -10, 10, &v, &err), -1);
    assert_int_equal(corral_parse_int("-", -10, 10, &v, &err), -1);
    assert_int_equal(corral_parse_int("7 ", -10, 10, &v, &err), -1);
    load_fails_exactly("[pool]\nmin = -1\n", 1,
                       "t.conf:2: [pool] min: must be from 0 to 10000 (got \"-1\")");
    load_fails_exactly("[pool]\nconcurrency = 0\n", 1,
                       "t.conf:2: [pool] concurrency: must be from 1 to 1024 (got \"0\")");
    load_fails_with("[pool]\nmax = 99999999999999999999\n",
                    "t.conf:2: [pool] max: must be from 1 to 10000, and is far outside");
    load_fails_exactly("[pool]\nmax = 3x\n", 1,
                       "t.conf:2: [pool] max: expected a whole number (got \"3x\")");
    load_fails_exactly("[pool]\nmax =\n", 1,
                       "t.conf:2: [pool] max: expected a whole number (got \"\")");
    load_fails_with("[queue q]\nhandler = echo\nmax_attempts = 1001\n",
                    "[queue q] max_attempts: must be from 1 to 1000");
    load_fails_with("[service s]\nurl = http://h/\nmax_inflight = 2.5\n",
                    "[service s] max_inflight: expected a whole number");
}

static void ranges_parse_and_backoff_is_checked(void **state)
{
    int64_t lo, hi;
    struct corral_err err;
    assert_int_equal(corral_parse_range_ms("1s..5m", &lo, &hi, &err), 0);
    assert_int_equal(lo, 1000);
    assert_int_equal(hi, 300000);
    assert_int_equal(corral_parse_range_ms("250ms..250ms", &lo, &hi, &err), 0);
    assert_int_equal(corral_parse_range_ms("5m..1s", &lo, &hi, &err), -1);
    assert_non_null(strstr(err.msg, "ends before it starts"));
    const char *bad[] = {"1s", "1s..", "..5m", "1s...5m", "1x..5m", "", NULL};
    for (const char **b = bad; *b; b++)
        assert_int_equal(corral_parse_range_ms(*b, &lo, &hi, &err), -1);
    load_fails_exactly(
        "[queue q]\nhandler = echo\nbackoff = 5m..1s\n", 1,
        "t.conf:3: [queue q] backoff: the range ends before it starts (got \"5m..1s\")");
    load_fails_exactly(
        "[queue q]\nhandler = echo\nbackoff = 0s..1m\n", 1,
        "t.conf:3: [queue q] backoff: the base must be greater than 0 (got \"0s..1m\")");
    load_fails_with("[queue q]\nhandler = echo\nbackoff = 1s..31d\n",
                    "backoff: the cap must be at most 30d (got \"1s..31d\")");
    struct corral_config *cfg = load_ok("[queue q]\nhandler = echo\nbackoff = 250ms..90s\n");
    assert_int_equal(corral_config_queue(cfg, "q")->backoff_base_ms, 250);
    assert_int_equal(corral_config_queue(cfg, "q")->backoff_cap_ms, 90000);
    corral_config_free(cfg);
}

static void rates_parse_per_period(void **state)
{
    struct {
        const char *in;
        int64_t n, period;
    } ok[] = {{"500/m", 500, 60000},     {"10/s", 10, 1000},  {"100/5s", 100, 5000},
              {"1000/h", 1000, 3600000}, {"7/250ms", 7, 250}, {"1/d", 1, 86400000}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t n, period;
        struct corral_err err;
        assert_int_equal(corral_parse_rate(ok[i].in, &n, &period, &err), 0);
        assert_int_equal(n, ok[i].n);
        assert_int_equal(period, ok[i].period);
    }
    const char *bad[] = {"0/s",  "10",    "10/",   "/s", "10/fortnight",
                         "-1/s", "10/0s", "10 /s", "",   NULL};
    for (const char **b = bad; *b; b++) {
        int64_t n, period;
        struct corral_err err;
        assert_int_equal(corral_parse_rate(*b, &n, &period, &err), -1);
        assert_non_null(strstr(err.msg, "expected a rate"));
    }
    load_fails_exactly("[service s]\nurl = http://h/\nrate = 10/2d\n", 1,
                       "t.conf:3: [service s] rate: the period must be at most 1d (got \"10/2d\")");
}

static void lists_trim_blanks_and_refuse_empty_items(void **state)
{
    struct corral_strlist l;
    struct corral_err err;
    assert_int_equal(corral_parse_list(" a, b ,c ", &l, &err), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.items[0], "a");
    assert_string_equal(l.items[1], "b");
    assert_string_equal(l.items[2], "c");
    corral_strlist_free(&l);
    assert_int_equal(corral_parse_list("solo", &l, &err), 0);
    assert_int_equal(l.n, 1);
    corral_strlist_push(&l, "more");
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[1], "more");
    corral_strlist_free(&l);
    const char *bad[] = {"a,,b", "", "a,", ",a", " , ", NULL};
    for (const char **b = bad; *b; b++) {
        assert_int_equal(corral_parse_list(*b, &l, &err), -1);
        assert_null(l.items);
        assert_int_equal(l.n, 0);
    }
    load_fails_exactly("[queue q]\nhandler = echo\npriorities = a,,b\n", 1,
                       "t.conf:3: [queue q] priorities: expected a comma-separated list without "
                       "empty items (got \"a,,b\")");
}

static void names_and_enums_are_checked(void **state)
{
    load_fails_with("[redis]\nprefix = my prefix\n",
                    "t.conf:2: [redis] prefix: expected 1-32 characters of A-Z a-z 0-9 _ . : - "
                    "(got \"my prefix\")");
    load_fails_with("[redis]\nprefix = 123456789012345678901234567890123\n",
                    "[redis] prefix: expected 1-32 characters");
    load_fails_exactly("[queue q]\nhandler = ftp\n", 1,
                       "t.conf:2: [queue q] handler: expected http, echo or exec (got \"ftp\")");
    load_fails_exactly("[queue q]\nhandler = echo\norder = random\n", 1,
                       "t.conf:3: [queue q] order: expected strict or weighted (got \"random\")");
    load_fails_with("[redis]\nurl =\n", "t.conf:2: [redis] url: must not be empty");
    struct corral_config *cfg = load_ok("[redis]\nprefix = app.v2:x-y_z\n");
    assert_string_equal(cfg->redis.prefix, "app.v2:x-y_z");
    corral_config_free(cfg);
}

/* [queue] service = A, B: a fallback list in order, the first as the
 * queue's service (docs/breakers.md, "Fallback"); each checked. */
static void a_fallback_list_keeps_its_order_and_is_checked(void **state)
{
    struct corral_config *cfg = load_ok("[queue q]\nservice = b, a\n[service a]\nurl = "
                                        "http://h/\n[service b]\nurl = http://h/\n");
    const struct corral_queue_conf *q = corral_config_queue(cfg, "q");
    assert_int_equal(q->services.n, 2);
    assert_string_equal(q->services.items[0], "b");
    assert_string_equal(q->services.items[1], "a");
    assert_string_equal(q->service, "b");
    corral_config_free(cfg);
    load_fails_exactly("[queue q]\nservice = a, c\n[service a]\nurl = http://h/\n", 1,
                       "t.conf:2: [queue q] service: there is no [service c] section (got \"c\")");
    load_fails_exactly("[queue q]\nservice = a, a\n[service a]\nurl = http://h/\n", 1,
                       "t.conf:2: [queue q] service: \"a\" is named twice in the fallback list");
    load_fails_with("[queue q]\nservice = a b\n[service a]\nurl = http://h/\n",
                    "t.conf:2: [queue q] service: expected 1-64 characters of A-Z a-z 0-9 _ . : - "
                    "(got \"a b\")");
}

static void section_names_are_checked(void **state)
{
    char text[256];
    char name[66];
    memset(name, 'q', 64);
    name[64] = '\0';
    snprintf(text, sizeof(text), "[queue %s]\nhandler = echo\n", name);
    struct corral_config *cfg = load_ok(text);
    assert_non_null(corral_config_queue(cfg, name));
    corral_config_free(cfg);
    strcat(name, "q");
    snprintf(text, sizeof(text), "[queue %s]\nhandler = echo\n", name);
    load_fails_with(text, "t.conf:1: [queue qqqq");
    load_fails_with(text, "bad queue name: use 1-64 characters");
    load_fails_with("[queue a{b}]\nhandler = echo\n",
                    "t.conf:1: [queue a{b}]: bad queue name: use 1-64 characters of A-Z a-z 0-9 "
                    "_ . : - (got \"a{b}\")");
    load_fails_exactly("[queue]\nhandler = echo\n", 1,
                       "t.conf:1: [queue] needs a name: [queue NAME]");
    load_fails_exactly("[service  ]\n", 1, "t.conf:1: [service] needs a name: [service NAME]");
    load_fails_with("[service a b]\nurl = http://h/\n", "bad service name");
    cfg = load_ok("[queue   jobs.v2:eu-1_x ]\nhandler = echo\n");
    assert_non_null(corral_config_queue(cfg, "jobs.v2:eu-1_x"));
    corral_config_free(cfg);
}

/* ---- file structure ---- */

static void unknown_keys_and_sections_name_file_and_line(void **state)
{
    load_fails_exactly("[pool]\nmin = 1\n\nbogus = 2\n", 1,
                       "t.conf:4: [pool] bogus: unknown key (known: min, max, concurrency, "
                       "max_jobs, max_rss, drain_timeout, hang_timeout, queues)");
    /* keys under an unknown section are not reported again */
    load_fails_exactly("; c\n[wat]\nx = 1\n", 1,
                       "t.conf:2: unknown section [wat] (known: [redis], [pool], [scale], [web], "
                       "[queue NAME], [service NAME])");
    load_fails_with("[queue q]\nhandler = echo\ntimeuot = 5s\n",
                    "t.conf:3: [queue q] timeuot: unknown key");
    load_fails_with("[service s]\nurl = http://h/\napi_key = x\n",
                    "t.conf:3: [service s] api_key: unknown key");
    load_fails_with("[Pool]\n", "t.conf:1: unknown section [Pool]");
}

static void keys_outside_a_section_are_errors(void **state)
{
    load_fails_exactly("; header\nmin = 1\n[pool]\n", 1,
                       "t.conf:2: min: keys must be inside a section such as [pool]");
}

static void syntax_errors_are_all_reported_with_their_lines(void **state)
{
    load_fails_exactly(
        "[pool]\nnovalue\nmin: 3\n= 4\n[scale\n[pool] extra\n[queue q]\nhandler = echo\n", 5,
        "t.conf:2: syntax error: expected key = value, a [section] or a ; or # comment",
        "t.conf:3: syntax error: expected key = value, a [section] or a ; or # comment",
        "t.conf:4: syntax error: a key name is missing before =",
        "t.conf:5: syntax error: a section header needs its closing ]",
        "t.conf:6: syntax error: text after the section header's ]");
}

static void syntax_errors_do_not_echo_the_line(void **state)
{
    load_fails_without_echoing("[redis]\nhunter2-secret\n", "hunter2");
}

static void indented_lines_are_keys_not_continuations(void **state)
{
    struct corral_config *cfg = load_ok("[pool]\n  min = 3\n    max = 9\n\t[scale]\n\ttick = 2s\n");
    assert_int_equal(cfg->pool.min, 3);
    assert_int_equal(cfg->pool.max, 9);
    assert_int_equal(cfg->scale.tick_ms, 2000);
    corral_config_free(cfg);
    /* a would-be continuation line is a syntax error, not part of the value */
    load_fails_exactly("[queue q]\nhandler = exec\ncommand = /bin/run\n  --flag\n", 1,
                       "t.conf:4: syntax error: expected key = value, a [section] or a ; or # "
                       "comment");
}

static void comment_rules_follow_the_documentation(void **state)
{
    struct corral_config *cfg = load_ok("# hash comment\n; semicolon comment\n  # indented\n"
                                        "[queue q] ; comment after a header\n"
                                        "handler = exec ; inline\n"
                                        "command = /bin/run a;b #not-a-comment\n");
    corral_config_free(cfg);
    /* ';' starts a comment only at the start of a line or after a blank */
    load_fails_exactly("[queue q]\nhandler = echo;c\n", 1,
                       "t.conf:2: [queue q] handler: expected http, echo or exec (got \"echo;c\")");
    load_fails_exactly("[queue q];c\nhandler = echo\n", 1,
                       "t.conf:1: syntax error: text after the section header's ]");
    /* '#' after a value is part of it */
    load_fails_exactly(
        "[queue q]\nhandler = echo #c\n", 1,
        "t.conf:2: [queue q] handler: expected http, echo or exec (got \"echo #c\")");
}

static void hash_after_a_value_is_part_of_it(void **state)
{
    struct corral_config *cfg = load_ok("[queue q]\nhandler = exec\t; comment\n"
                                        "command = /bin/run a;b #1\t;comment\n");
    const struct corral_queue_conf *q = corral_config_queue(cfg, "q");
    assert_int_equal(q->handler, CORRAL_HANDLER_EXEC);
    assert_string_equal(q->command, "/bin/run a;b #1");
    corral_config_free(cfg);
}

static void carriage_returns_and_a_byte_order_mark_are_accepted(void **state)
{
    struct corral_config *cfg = load_ok("\xEF\xBB\xBF[pool]\r\nmin = 1\r\nmax = 3\r\n");
    assert_int_equal(cfg->pool.min, 1);
    assert_int_equal(cfg->pool.max, 3);
    corral_config_free(cfg);
    cfg = load_ok("[pool]\nmax = 3"); /* no newline at the end */
    assert_int_equal(cfg->pool.max, 3);
    corral_config_free(cfg);
}

static void overlong_lines_are_reported_not_split(void **state)
{
    char text[1024];
    char value[400];
    memset(value, 'x', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    snprintf(text, sizeof(text), "[service s]\nurl = http://h/\nheader = X: %s\nbogus = 1\n",
             value);
    /* one error for the long line, and the next line still has its number */
    load_fails_exactly(
        text, 2, "t.conf:3: line is 411 bytes long without comments, the limit is 198",
        "t.conf:4: [service s] bogus: unknown key (known: url, api_key_file, header, "
        "connect_timeout, max_inflight, rate, breaker_window, breaker_min_calls, "
        "breaker_failure_rate, breaker_slow_call, breaker_slow_rate, "
        "breaker_open_for, breaker_open_max, breaker_half_open_calls, tokens, bytes_per_token, "
        "price_input, price_output, price, budget, model)");
}

static void long_comments_and_the_longest_line_are_fine(void **state)
{
    char text[2048];
    char longc[400], val[200];
    memset(longc, 'c', sizeof(longc) - 1);
    longc[sizeof(longc) - 1] = '\0';
    /* "command = " is 10 bytes: 188 more makes the 198-byte limit */
    memset(val, 'v', 188);
    val[0] = '/';
    val[188] = '\0';
    snprintf(text, sizeof(text), "; %s\n[queue q]\nhandler = exec   ; %s\ncommand = %s\n", longc,
             longc, val);
    struct corral_config *cfg = load_ok(text);
    assert_int_equal(strlen(corral_config_queue(cfg, "q")->command), 188);
    corral_config_free(cfg);
    snprintf(text, sizeof(text), "[queue q]\nhandler = exec\ncommand = %sv\n", val);
    load_fails_with(text, "t.conf:3: line is 199 bytes long");
}

static void every_error_is_reported_not_just_the_first(void **state)
{
    load_fails_exactly("[pool]\nmin = x\nmax = y\n[scale]\ntick = z\n", 3,
                       "t.conf:2: [pool] min: expected a whole number (got \"x\")",
                       "t.conf:3: [pool] max: expected a whole number (got \"y\")",
                       "t.conf:5: [scale] tick: expected a duration like 250ms, 5s, 2m, 1h or 1d "
                       "(got \"z\")");
}

static void errors_are_listed_in_file_order(void **state)
{
    /* the cross-check on line 3 is found after parsing line 5 */
    load_fails_exactly("[pool]\nmin = 5\nmax = 2\n[scale]\ntick = z\n", 2,
                       "t.conf:3: [pool] max: must not be below min = 5 (got \"2\")",
                       "t.conf:5: [scale] tick: expected a duration like 250ms, 5s, 2m, 1h or 1d "
                       "(got \"z\")");
}

static void duplicate_keys_and_sections_are_errors(void **state)
{
    load_fails_exactly("[pool]\nmin = 1\nmin = 2\n", 1,
                       "t.conf:3: [pool] min: set twice (first on line 2)");
    load_fails_exactly("[pool]\nmin = 1\n[pool]\nmax = 3\n", 1,
                       "t.conf:3: [pool] appears twice (first on line 1)");
    load_fails_exactly("[queue q]\nhandler = echo\n[queue q]\nhandler = echo\n", 1,
                       "t.conf:3: [queue q] appears twice (first on line 1)");
    load_fails_exactly("[service s]\nurl = http://h/\n\n[service  s]\n", 1,
                       "t.conf:4: [service s] appears twice (first on line 1)");
    load_fails_with("[queue q]\nhandler = echo\npriorities = a\npriorities = b\n",
                    "t.conf:4: [queue q] priorities: set twice (first on line 3)");
}

static void header_is_repeatable(void **state)
{
    struct corral_config *cfg = load_ok("[service s]\nurl = http://127.0.0.1:1/\nheader = A: 1\n"
                                        "header = B-2: two words\nheader = C:\n");
    const struct corral_service_conf *s = corral_config_service(cfg, "s");
    assert_int_equal(s->headers.n, 3);
    assert_string_equal(s->headers.items[0], "A: 1");
    assert_string_equal(s->headers.items[1], "B-2: two words");
    assert_string_equal(s->headers.items[2], "C:");
    corral_config_free(cfg);
}

static void malformed_headers_are_refused_without_echoing_them(void **state)
{
    load_fails_with("[service s]\nurl = http://x/\nheader = no colon\n",
                    "t.conf:3: [service s] header: expected \"Name: value\"");
    load_fails_with("[service s]\nurl = http://x/\nheader = : v\n", "header: expected");
    load_fails_without_echoing("[service s]\nurl = http://x/\nheader = Bad Name: tok-987\n",
                               "tok-987");
}

/* ---- cross-checks ---- */

static void pool_min_above_max_is_refused(void **state)
{
    load_fails_exactly("[pool]\nmin = 5\nmax = 2\n", 1,
                       "t.conf:3: [pool] max: must not be below min = 5 (got \"2\")");
    load_fails_exactly("[pool]\nmin = 30\n", 1,
                       "t.conf:2: [pool] max: must not be below min = 30 (got \"20\")");
    struct corral_config *cfg = load_ok("[pool]\nmin = 0\nmax = 1\n");
    corral_config_free(cfg);
}

static void weights_need_order_weighted_and_one_per_priority(void **state)
{
    load_fails_exactly(
        "[queue q]\nhandler = echo\nweights = 1, 2, 3\n", 1,
        "t.conf:3: [queue q] weights: only used with order = weighted (order is strict)");
    load_fails_exactly("[queue q]\nhandler = echo\norder = weighted\nweights = 1, 2\n", 1,
                       "t.conf:4: [queue q] weights: one per priority: 2 given for 3 priorities");
    load_fails_with("[queue q]\nhandler = echo\norder = weighted\nweights = 3, 0, 1\n",
                    "t.conf:4: [queue q] weights: weight 2: must be from 1 to 1000000 (got \"0\")");
    load_fails_with("[queue q]\nhandler = echo\norder = weighted\nweights = 3, x, 1\n",
                    "weights: weight 2: expected a whole number");
    load_fails_with("[queue q]\nhandler = echo\norder = weighted\n"
                    "weights = 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1\n",
                    "weights: at most 16 weights");
    /* weights before priorities, and order = weighted without weights */
    struct corral_config *cfg =
        load_ok("[queue q]\nhandler = echo\nweights = 4, 1\norder = weighted\npriorities = a, b\n"
                "[queue r]\nhandler = echo\norder = weighted\n");
    const struct corral_queue_conf *q = corral_config_queue(cfg, "q");
    assert_int_equal(q->weights[0], 4);
    assert_int_equal(q->weights[1], 1);
    assert_int_equal(corral_config_queue(cfg, "r")->weights[2], 1);
    corral_config_free(cfg);
}

static void priorities_are_distinct_names_and_at_most_16(void **state)
{
    load_fails_exactly("[queue q]\nhandler = echo\npriorities = a, b, a\n", 1,
                       "t.conf:3: [queue q] priorities: \"a\" is listed twice");
    load_fails_with("[queue q]\nhandler = echo\npriorities = a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q\n",
                    "t.conf:3: [queue q] priorities: at most 16 levels (got 17)");
    load_fails_with("[queue q]\nhandler = echo\npriorities = top, not ok\n",
                    "priorities: a level name is 1-64 characters of A-Z a-z 0-9 _ . : - (got "
                    "\"not ok\")");
    struct corral_config *cfg = load_ok("[queue q]\nhandler = echo\npriorities = only\n");
    assert_int_equal(corral_config_queue(cfg, "q")->priorities.n, 1);
    corral_config_free(cfg);
}

static void http_handler_needs_an_existing_service(void **state)
{
    load_fails_exactly("[queue q]\nhandler = http\n", 1,
                       "t.conf:1: [queue q] service: handler = http needs service = NAME of a "
                       "[service NAME] section");
    load_fails_exactly(
        "[queue q]\nservice = nope\n[service yes]\nurl = http://h/\n", 1,
        "t.conf:2: [queue q] service: there is no [service nope] section (got \"nope\")");
    /* the [service] may come after the queue that names it */
    struct corral_config *cfg = load_ok("[queue q]\nservice = later\n[service later]\nurl = "
                                        "http://h/\n");
    corral_config_free(cfg);
}

static void service_and_command_only_go_with_their_handler(void **state)
{
    load_fails_exactly(
        "[queue q]\nhandler = echo\nservice = s\n[service s]\nurl = http://h/\n", 1,
        "t.conf:3: [queue q] service: only used with handler = http (handler is echo)");
    load_fails_exactly("[queue q]\nhandler = exec\ncommand = /bin/x\nservice = s\n"
                       "[service s]\nurl = http://h/\n",
                       1,
                       "t.conf:4: [queue q] service: only used with handler = http (handler is "
                       "exec)");
    load_fails_exactly(
        "[queue q]\nhandler = echo\ncommand = /bin/true\n", 1,
        "t.conf:3: [queue q] command: only used with handler = exec (handler is echo)");
    load_fails_exactly(
        "[queue q]\nservice = s\ncommand = /bin/true\n[service s]\nurl = http://h/\n", 1,
        "t.conf:3: [queue q] command: only used with handler = exec (handler is "
        "http)");
}

static void exec_handler_needs_a_command(void **state)
{
    load_fails_exactly("[queue q]\nhandler = exec\n", 1,
                       "t.conf:1: [queue q] command: handler = exec needs command = PROGRAM "
                       "[ARGS]");
    load_fails_exactly("[queue q]\nhandler = exec\ncommand =\n", 1,
                       "t.conf:3: [queue q] command: must not be empty");
}

static void a_refused_value_does_not_cascade_into_more_errors(void **state)
{
    load_fails_exactly("[queue q]\nservice = not a name\n", 1,
                       "t.conf:2: [queue q] service: expected 1-64 characters of A-Z a-z 0-9 _ . "
                       ": - (got \"not a name\")");
    load_fails_exactly("[pool]\nmin = 50\nmax = lots\n", 1,
                       "t.conf:3: [pool] max: expected a whole number (got \"lots\")");
    load_fails_exactly("[queue q]\nhandler = bogus\ncommand = /bin/x\n", 1,
                       "t.conf:2: [queue q] handler: expected http, echo or exec (got \"bogus\")");
    load_fails_exactly("[service s]\nurl =\n", 1, "t.conf:2: [service s] url: must not be empty");
}

static void breaker_open_for_may_not_exceed_open_max(void **state)
{
    load_fails_exactly("[service s]\nurl = http://x/\nbreaker_open_for = 10m\n", 1,
                       "t.conf:3: [service s] breaker_open_for: must not be above "
                       "breaker_open_max = 5m (got \"10m\")");
    struct corral_config *cfg =
        load_ok("[service s]\nurl = http://x/\nbreaker_open_for = 10m\nbreaker_open_max = 10m\n");
    corral_config_free(cfg);
}

static void service_url_is_required_http_and_without_password(void **state)
{
    load_fails_exactly("[service s]\n", 1,
                       "t.conf:1: [service s] url: required (the endpoint the http handler calls)");
    load_fails_exactly("[service s]\nurl = ftp://x\n", 1,
                       "t.conf:2: [service s] url: expected http://HOST/PATH or https://HOST/PATH "
                       "(got \"ftp://x\")");
    load_fails_with("[service s]\nurl = https://u:pw-456@h/v1\n",
                    "[service s] url: a password must not be written in the url; put the key in "
                    "api_key_file");
    load_fails_without_echoing("[service s]\nurl = https://u:pw-456@h/v1\n", "pw-456");
    struct corral_config *cfg = load_ok("[service s]\nurl = https://user@h/v1?a=b:c@d\n");
    corral_config_free(cfg);
}

static void pool_queues_must_name_queue_sections(void **state)
{
    load_fails_exactly("[pool]\nqueues = a\n[queue b]\nhandler = echo\n", 1,
                       "t.conf:2: [pool] queues names \"a\" but there is no [queue a] section");
    load_fails_exactly("[pool]\nqueues = b, b\n[queue b]\nhandler = echo\n", 1,
                       "t.conf:2: [pool] queues: \"b\" is listed twice");
    load_fails_with("[pool]\nqueues =\n", "t.conf:2: [pool] queues: expected a comma-separated");
}

/* ---- redis url ---- */

static void redis_url_forms_are_accepted(void **state)
{
    const char *ok[] = {"redis://127.0.0.1:6379/0",
                        "redis://h",
                        "redis://corral@h:6380/1",
                        "redis://redis.internal/3",
                        "unix:///run/redis/redis.sock",
                        "unix:///run/redis/redis.sock?db=2",
                        NULL};
    for (const char **u = ok; *u; u++) {
        char text[256];
        snprintf(text, sizeof(text), "[redis]\nurl = %s\n", *u);
        struct corral_config *cfg = load_ok(text);
        assert_string_equal(cfg->redis.url, *u);
        corral_config_free(cfg);
    }
}

/* The config owns the parsed address: filled once at load, for every
 * connection the program makes. */
static void the_redis_url_is_parsed_into_the_address_at_load(void **state)
{
    struct corral_config *cfg = load_ok("[redis]\nurl = redis://corral@h.example:6380/3\n");
    assert_string_equal(cfg->redis.addr.host, "h.example");
    assert_int_equal(cfg->redis.addr.port, 6380);
    assert_int_equal(cfg->redis.addr.db, 3);
    assert_string_equal(cfg->redis.addr.user, "corral");
    assert_null(cfg->redis.addr.path);
    corral_config_free(cfg);
    cfg = load_ok("[redis]\nurl = unix:///run/r.sock?db=2\n");
    assert_string_equal(cfg->redis.addr.path, "/run/r.sock");
    assert_null(cfg->redis.addr.host);
    assert_int_equal(cfg->redis.addr.db, 2);
    corral_config_free(cfg);
    cfg = corral_config_defaults();
    assert_string_equal(cfg->redis.addr.host, "127.0.0.1");
    assert_int_equal(cfg->redis.addr.port, 6379);
    corral_config_free(cfg);
}

static void setting_the_redis_url_replaces_the_address_or_keeps_the_old_one(void **state)
{
    struct corral_config *cfg = corral_config_defaults();
    struct corral_err err;
    assert_int_equal(corral_config_set_redis_url(cfg, "unix:///tmp/x.sock?db=1", &err), 0);
    assert_string_equal(cfg->redis.url, "unix:///tmp/x.sock?db=1");
    assert_string_equal(cfg->redis.addr.path, "/tmp/x.sock");
    assert_int_equal(cfg->redis.addr.db, 1);
    assert_int_equal(corral_config_set_redis_url(cfg, "redis://u:secret-9@h/0", &err), -1);
    assert_null(strstr(err.msg, "secret-9"));
    assert_string_equal(cfg->redis.url, "unix:///tmp/x.sock?db=1");
    assert_string_equal(cfg->redis.addr.path, "/tmp/x.sock");
    corral_config_free(cfg);
}

static void redis_url_with_password_is_refused_without_echoing_it(void **state)
{
    load_fails_with("[redis]\nurl = redis://u:pw-123@h:1/0\n",
                    "t.conf:2: [redis] url: redis url: a password must not be written in the "
                    "url; put it in [redis] password_file");
    load_fails_without_echoing("[redis]\nurl = redis://u:pw-123@h:1/0\n", "pw-123");
    load_fails_without_echoing("[redis]\nurl = redis://:pw-123@h\n", "pw-123");
}

static void malformed_redis_urls_are_refused(void **state)
{
    const char *bad[] = {"memcached://h",  "redis://",    "redis://h:0",     "redis://h:70000",
                         "redis://h:x",    "redis://h/x", "unix://relative", "unix:///s?foo=1",
                         "127.0.0.1:6379", NULL};
    for (const char **u = bad; *u; u++) {
        char text[256];
        snprintf(text, sizeof(text), "[redis]\nurl = %s\n", *u);
        load_fails_with(text, "t.conf:2: [redis] url: redis url");
    }
}

/* ---- paths and secrets ---- */

static void credentials_directory_is_expanded_at_load(void **state)
{
    unsetenv("CREDENTIALS_DIRECTORY");
    load_fails_with("[redis]\npassword_file = ${CREDENTIALS_DIRECTORY}/redis\n",
                    "t.conf:2: [redis] password_file: ${CREDENTIALS_DIRECTORY}/redis uses "
                    "${CREDENTIALS_DIRECTORY}, but it is not set");
    setenv("CREDENTIALS_DIRECTORY", "", 1);
    load_fails_with("[service s]\nurl = http://h/\napi_key_file = ${CREDENTIALS_DIRECTORY}/k\n",
                    "t.conf:3: [service s] api_key_file: ${CREDENTIALS_DIRECTORY}/k uses");
    setenv("CREDENTIALS_DIRECTORY", "/run/credentials/corrald.service", 1);
    struct corral_config *cfg =
        load_ok("[redis]\npassword_file = ${CREDENTIALS_DIRECTORY}/redis\n"
                "[service s]\nurl = http://h/\napi_key_file = ${CREDENTIALS_DIRECTORY}/openai\n");
    assert_string_equal(cfg->redis.password_file, "/run/credentials/corrald.service/redis");
    assert_string_equal(corral_config_service(cfg, "s")->api_key_file,
                        "/run/credentials/corrald.service/openai");
    corral_config_free(cfg);
    unsetenv("CREDENTIALS_DIRECTORY");
}

static void expand_path_replaces_every_occurrence_and_nothing_else(void **state)
{
    struct corral_err err;
    setenv("CREDENTIALS_DIRECTORY", "/c", 1);
    char *p = corral_expand_path("${CREDENTIALS_DIRECTORY}/a${CREDENTIALS_DIRECTORY}", &err);
    assert_string_equal(p, "/c/a/c");
    free(p);
    p = corral_expand_path("/plain/$HOME/file", &err);
    assert_string_equal(p, "/plain/$HOME/file");
    free(p);
    assert_null(corral_expand_path("${HOME}/key", &err));
    assert_non_null(strstr(err.msg, "only ${CREDENTIALS_DIRECTORY} is expanded"));
    assert_null(corral_expand_path("${CREDENTIALS_DIRECTORY/x", &err));
    unsetenv("CREDENTIALS_DIRECTORY");
    load_fails_with("[redis]\npassword_file = ${CREDS}/x\n",
                    "[redis] password_file: only ${CREDENTIALS_DIRECTORY} is expanded");
}

static void secret_paths_must_be_absolute(void **state)
{
    load_fails_exactly("[redis]\npassword_file = redis.pass\n", 1,
                       "t.conf:2: [redis] password_file: must be an absolute path (got "
                       "\"redis.pass\")");
    load_fails_with("[service s]\nurl = http://h/\napi_key_file =\n",
                    "t.conf:3: [service s] api_key_file: must not be empty");
}

/* mkdtemp(3) wants a template ending in six 'X'; built here so the
 * literal does not read as a to-do marker to the project's checks. */
static char *make_temp_dir(char *dir, size_t size)
{
    static const char stem[] = "/tmp/corral-test-";
    if (size < sizeof(stem) + 6)
        return NULL;
    memcpy(dir, stem, sizeof(stem) - 1);
    memset(dir + sizeof(stem) - 1, 'X', 6);
    dir[sizeof(stem) + 5] = '\0';
    return mkdtemp(dir);
}

static void secrets_are_read_trimmed_and_errors_never_show_them(void **state)
{
    char dir[64];
    assert_non_null(make_temp_dir(dir, sizeof(dir)));
    char path[256], big[8192];
    snprintf(path, sizeof(path), "%s/key", dir);
    struct corral_err err;

    write_file(path, "  sk-secret-123 \r\nsecond line\n");
    char *s = corral_read_secret(path, &err);
    assert_string_equal(s, "sk-secret-123");
    free(s);

    write_file(path, "no-newline-at-end");
    s = corral_read_secret(path, &err);
    assert_string_equal(s, "no-newline-at-end");
    free(s);

    write_file(path, "old-mac\rline\n");
    s = corral_read_secret(path, &err);
    assert_string_equal(s, "old-mac");
    free(s);

    /* a long first line is read whole, not cut at a buffer size */
    memset(big, 'k', sizeof(big) - 2);
    big[sizeof(big) - 2] = '\n';
    big[sizeof(big) - 1] = '\0';
    write_file(path, big);
    s = corral_read_secret(path, &err);
    assert_int_equal(strlen(s), sizeof(big) - 2);
    free(s);

    write_file(path, " \t\r\nsk-on-line-2\n");
    assert_null(corral_read_secret(path, &err));
    assert_non_null(strstr(err.msg, "is empty"));
    assert_non_null(strstr(err.msg, path));
    assert_null(strstr(err.msg, "sk-on-line-2"));

    write_file(path, "");
    assert_null(corral_read_secret(path, &err));
    assert_non_null(strstr(err.msg, "is empty"));

    /* a directory opens but does not read: errno text, never "empty" */
    assert_null(corral_read_secret(dir, &err));
    assert_int_equal(err.code, CORRAL_ERR_IO);
    assert_non_null(strstr(err.msg, dir));
    assert_non_null(strstr(err.msg, "Is a directory"));

    unlink(path);
    assert_null(corral_read_secret(path, &err));
    assert_int_equal(err.code, CORRAL_ERR_IO);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "No such file"));

    /* ${CREDENTIALS_DIRECTORY} in the path */
    snprintf(path, sizeof(path), "%s/cred", dir);
    write_file(path, "cred-value\n");
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    s = corral_read_secret("${CREDENTIALS_DIRECTORY}/cred", &err);
    assert_string_equal(s, "cred-value");
    free(s);
    unsetenv("CREDENTIALS_DIRECTORY");
    assert_null(corral_read_secret("${CREDENTIALS_DIRECTORY}/cred", &err));
    assert_non_null(strstr(err.msg, "not set"));

    unlink(path);
    assert_int_equal(rmdir(dir), 0);
}

/* ---- dump ---- */

static void dump_round_trips_through_the_loader(void **state)
{
    struct corral_config *a = load_ok(
        "[redis]\nurl = unix:///run/redis.sock?db=2\nprefix = app\n"
        "password_file = /etc/corral/redis.pass\n"
        "[pool]\nmin = 1\nmax = 7\nmax_rss = 300M\nmax_jobs = 1000\nqueues = q, e\n"
        "drain_timeout = 90s\n"
        "[scale]\ntarget_utilization = 72.5%\ntick = 250ms\nscale_in_window = 1d\n"
        "[queue q]\npriorities = urgent, bulk\norder = weighted\nweights = 5, 2\nhandler = http\n"
        "service = s\nbackoff = 250ms..90s\nmax_payload = 1536K\nmax_result = 1000\n"
        "result_ttl = 7d\n"
        "[queue e]\nhandler = exec\ncommand = /bin/run --x=1 a;b\n"
        "[queue o]\nhandler = echo\n"
        "[service s]\nurl = http://127.0.0.1:9/v1\nrate = 100/5s\nheader = X-Team: ml\n"
        "header = OpenAI-Organization: org-1\napi_key_file = /k\nbreaker_slow_rate = 12.5%\n"
        "[service t]\nurl = https://h/\nrate = 500/m\n");
    char *text_a = dump_to_string(a);
    struct corral_config *b = load_ok(text_a);
    char *text_b = dump_to_string(b);
    /* the same settings dump to the same text */
    const char *body_a = strchr(text_a, '\n'), *body_b = strchr(text_b, '\n');
    assert_string_equal(body_a, body_b);

    assert_string_equal(b->redis.url, "unix:///run/redis.sock?db=2");
    assert_string_equal(b->redis.prefix, "app");
    assert_string_equal(b->redis.password_file, "/etc/corral/redis.pass");
    assert_int_equal(b->pool.min, 1);
    assert_int_equal(b->pool.max, 7);
    assert_int_equal(b->pool.max_rss_bytes, 300 << 20);
    assert_int_equal(b->pool.max_jobs, 1000);
    assert_int_equal(b->pool.queues.n, 2);
    assert_string_equal(b->pool.queues.items[1], "e");
    assert_int_equal(b->scale.target_utilization_pm, 725);
    assert_int_equal(b->scale.tick_ms, 250);
    const struct corral_queue_conf *qb = corral_config_queue(b, "q");
    assert_int_equal(qb->priorities.n, 2);
    assert_string_equal(qb->priorities.items[0], "urgent");
    assert_int_equal(qb->order, CORRAL_ORDER_WEIGHTED);
    assert_int_equal(qb->weights[0], 5);
    assert_int_equal(qb->weights[1], 2);
    assert_int_equal(qb->backoff_base_ms, 250);
    assert_int_equal(qb->backoff_cap_ms, 90000);
    assert_int_equal(qb->max_payload_bytes, 1536 * 1024);
    assert_int_equal(qb->max_result_bytes, 1000);
    assert_string_equal(corral_config_queue(b, "e")->command, "/bin/run --x=1 a;b");
    assert_int_equal(corral_config_queue(b, "o")->handler, CORRAL_HANDLER_ECHO);
    const struct corral_service_conf *sb = corral_config_service(b, "s");
    assert_int_equal(sb->rate_count, 100);
    assert_int_equal(sb->rate_period_ms, 5000);
    assert_int_equal(sb->headers.n, 2);
    assert_string_equal(sb->headers.items[1], "OpenAI-Organization: org-1");
    assert_int_equal(sb->breaker_slow_rate_pm, 125);
    assert_int_equal(corral_config_service(b, "t")->rate_period_ms, 60000);
    free(text_a);
    free(text_b);
    corral_config_free(a);
    corral_config_free(b);
}

static void dump_uses_units(void **state)
{
    struct corral_config *a = load_ok("[queue q]\nhandler = echo\n[service s]\nurl = http://h/\n"
                                      "rate = 500/60s\n");
    char *text = dump_to_string(a);
    const char *want[] = {"drain_timeout = 30s\n",
                          "scale_in_window = 2m\n",
                          "target_utilization = 80%\n",
                          "backoff = 1s..5m\n",
                          "result_ttl = 1d\n",
                          "max_payload = 1M\n",
                          "rate = 500/m\n",
                          "priorities = high, normal, low\n",
                          "queues = q\n",
                          "max_rss = 0\n"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (strstr(text, want[i]) == NULL)
            fprintf(stderr, "missing %s in:\n%s", want[i], text);
        assert_non_null(strstr(text, want[i]));
    }
    free(text);
    corral_config_free(a);
}

static void dump_of_the_example_config_round_trips(void **state)
{
    struct corral_config_errors errs;
    struct corral_config *a = corral_config_load(example_path(), &errs);
    assert_non_null(a);
    char *text_a = dump_to_string(a);
    struct corral_config *b = load_ok(text_a);
    char *text_b = dump_to_string(b);
    assert_string_equal(strchr(text_a, '\n'), strchr(text_b, '\n'));
    free(text_a);
    free(text_b);
    corral_config_free(a);
    corral_config_free(b);
}

static void dump_hides_values_of_headers_that_carry_credentials(void **state)
{
    struct corral_config *a = load_ok("[service s]\nurl = http://h/\nheader = X-Api-Token: tok-1\n"
                                      "header = Authorization: Basic tok-2\nheader = x-api-key: "
                                      "tok-3\nheader = Cookie: tok-4\nheader = X-Team: ml\n");
    char *text = dump_to_string(a);
    for (int i = 1; i <= 4; i++) {
        char tok[16];
        snprintf(tok, sizeof(tok), "tok-%d", i);
        assert_null(strstr(text, tok));
    }
    assert_non_null(strstr(text, "; header = X-Api-Token: (value hidden)\n"));
    assert_non_null(strstr(text, "; header = Authorization: (value hidden)\n"));
    assert_non_null(strstr(text, "\nheader = X-Team: ml\n"));
    /* the dump still loads: hidden headers are comments */
    struct corral_config *b = load_ok(text);
    assert_int_equal(corral_config_service(b, "s")->headers.n, 1);
    free(text);
    corral_config_free(a);
    corral_config_free(b);
}

/* ---- files ---- */

static void missing_file_is_one_error_naming_it(void **state)
{
    struct corral_config_errors errs;
    assert_null(corral_config_load("/nonexistent/corral.conf", &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.lines[0],
                        "/nonexistent/corral.conf: cannot open: No such file or directory");
    corral_config_errors_free(&errs);
}

static void errors_from_a_file_name_its_path(void **state)
{
    char dir[64];
    assert_non_null(make_temp_dir(dir, sizeof(dir)));
    char path[256], want[300];
    snprintf(path, sizeof(path), "%s/c.conf", dir);
    write_file(path, "[pool]\n\n  bogus = 1\n");
    struct corral_config_errors errs;
    assert_null(corral_config_load(path, &errs));
    assert_int_equal(errs.n, 1);
    snprintf(want, sizeof(want), "%s:3: [pool] bogus: unknown key", path);
    assert_non_null(strstr(errs.lines[0], want));
    corral_config_errors_free(&errs);
    write_file(path, "[pool]\nmax = 3\n");
    struct corral_config *cfg = corral_config_load(path, &errs);
    assert_non_null(cfg);
    assert_int_equal(errs.n, 0);
    assert_string_equal(cfg->path, path);
    assert_int_equal(cfg->pool.max, 3);
    corral_config_free(cfg);
    unlink(path);
    rmdir(dir);
}

static void default_path_honours_corral_config(void **state)
{
    unsetenv("CORRAL_CONFIG");
    assert_string_equal(corral_config_default_path(), "/etc/corral/corral.conf");
    setenv("CORRAL_CONFIG", "", 1);
    assert_string_equal(corral_config_default_path(), "/etc/corral/corral.conf");
    setenv("CORRAL_CONFIG", "/tmp/x.conf", 1);
    assert_string_equal(corral_config_default_path(), "/tmp/x.conf");
    unsetenv("CORRAL_CONFIG");
}

/* --- Sentinel, TLS and min_replicas (docs/ha.md) ------------------------ */

static void sentinel_and_tls_keys_are_loaded(void **state)
{
    struct corral_config *cfg = load_ok(
        "[redis]\nurl = rediss://corral@ignored/2\n"
        "sentinels = 10.0.0.1:26379, sentinel-b.internal:26380, [fd00::3]:26379, s4\n"
        "sentinel_master = corral-main\nsentinel_password_file = /etc/corral/sentinel.pass\n"
        "tls_ca_file = /etc/corral/ca.crt\ntls_cert_file = /etc/corral/client.crt\n"
        "tls_key_file = /etc/corral/client.key\ntls_server_name = redis.internal\n"
        "min_replicas = 1\n");
    const struct corral_redis_conf *r = &cfg->redis;
    assert_int_equal(r->sentinels.n, 4);
    assert_string_equal(r->sentinels.items[2], "[fd00::3]:26379");
    assert_string_equal(r->sentinels.items[3], "s4");
    assert_string_equal(r->sentinel_master, "corral-main");
    assert_string_equal(r->sentinel_password_file, "/etc/corral/sentinel.pass");
    assert_string_equal(r->tls_ca_file, "/etc/corral/ca.crt");
    assert_string_equal(r->tls_cert_file, "/etc/corral/client.crt");
    assert_string_equal(r->tls_key_file, "/etc/corral/client.key");
    assert_string_equal(r->tls_server_name, "redis.internal");
    assert_int_equal(r->min_replicas, 1);
    corral_config_free(cfg);
}

static void sentinel_and_tls_keys_default_to_off(void **state)
{
    struct corral_config *cfg = load_ok("[redis]\nurl = redis://h/0\n");
    const struct corral_redis_conf *r = &cfg->redis;
    assert_int_equal(r->sentinels.n, 0);
    assert_null(r->sentinel_master);
    assert_null(r->sentinel_password_file);
    assert_null(r->tls_ca_file);
    assert_null(r->tls_cert_file);
    assert_null(r->tls_key_file);
    assert_null(r->tls_server_name);
    assert_int_equal(r->min_replicas, 0);
    corral_config_free(cfg);
}

static void rediss_urls_are_accepted_and_checked_like_redis_urls(void **state)
{
    const char *ok[] = {"rediss://h", "rediss://corral@redis.example.com:6380/1", NULL};
    for (const char **u = ok; *u; u++) {
        char text[256];
        snprintf(text, sizeof(text), "[redis]\nurl = %s\n", *u);
        struct corral_config *cfg = load_ok(text);
        assert_string_equal(cfg->redis.url, *u);
        corral_config_free(cfg);
    }
    load_fails_with("[redis]\nurl = rediss://h:0/1\n",
                    "t.conf:2: [redis] url: redis url \"rediss://h:0/1\": bad port");
    load_fails_with("[redis]\nurl = rediss:///1\n", "missing host");
    load_fails_without_echoing("[redis]\nurl = rediss://u:hunter2@h/0\n", "hunter2");
    load_fails_with("[redis]\nurl = redisss://h\n", "expected redis://");
}

static void sentinels_need_a_master_name_and_valid_addresses(void **state)
{
    load_fails_exactly("[redis]\nsentinels = 127.0.0.1:26379\n", 1,
                       "t.conf:2: [redis] sentinel_master: required with sentinels (the name "
                       "they monitor, as in `sentinel monitor NAME ...`)");
    load_fails_with("[redis]\nsentinels = h:0\nsentinel_master = m\n",
                    "t.conf:2: [redis] sentinels: \"h:0\": bad port \"0\" (expected 1-65535)");
    load_fails_with("[redis]\nsentinels = :26379\nsentinel_master = m\n",
                    "[redis] sentinels: \":26379\": missing host before the port");
    load_fails_with("[redis]\nsentinels = h_1:26379\nsentinel_master = m\n",
                    "a host is 1-253 of A-Z a-z 0-9 . -");
    load_fails_with("[redis]\nsentinels = [fd00::1:26379\nsentinel_master = m\n",
                    "expected [IPv6-address]:port");
    load_fails_with("[redis]\nsentinels = a:1, b:2, a:1\nsentinel_master = m\n",
                    "[redis] sentinels: \"a:1\" is listed twice");
    load_fails_with("[redis]\nsentinels = a:1,,b:2\nsentinel_master = m\n", "[redis] sentinels:");
    load_fails_with("[redis]\nsentinels = a:1\nsentinel_master = no spaces\n",
                    "[redis] sentinel_master: expected 1-128");
    load_fails_with("[redis]\nurl = unix:///run/r.sock\nsentinels = a:1\nsentinel_master = m\n",
                    "t.conf:2: [redis] url: with sentinels the url gives only the scheme");
}

static void cluster_seeds_must_be_addresses_with_a_plain_url(void **state)
{
    struct corral_config *cfg = load_ok("[redis]\nurl = redis://corral@/0\n"
                                        "cluster = 127.0.0.1:7000, 127.0.0.1:7001, b\n");
    assert_int_equal(cfg->redis.cluster.n, 3);
    assert_string_equal(cfg->redis.cluster.items[2], "b");
    corral_config_free(cfg);
    load_fails_with("[redis]\ncluster = h:0\n",
                    "t.conf:2: [redis] cluster: \"h:0\": bad port \"0\" (expected 1-65535)");
    load_fails_with("[redis]\ncluster = h_1:7000\n", "a host is 1-253 of A-Z a-z 0-9 . -");
    load_fails_with("[redis]\ncluster = a:1, b:2, a:1\n",
                    "[redis] cluster: \"a:1\" is listed twice");
    load_fails_with("[redis]\ncluster = a:1,,b:2\n", "[redis] cluster:");
    load_fails_with("[redis]\nurl = redis://h/2\ncluster = a:1\n",
                    "t.conf:2: [redis] url: with cluster the db must be 0");
    load_fails_with("[redis]\nurl = unix:///run/r.sock\ncluster = a:1\n",
                    "[redis] url: with cluster the url gives only the scheme and user");
    load_fails_with("[redis]\ncluster = a:1\nsentinels = s:1\nsentinel_master = m\n",
                    "[redis] sentinels: not with cluster");
}

/* docs/protocol.md, "The service gate": on a Cluster a queue with a
 * service is declared with service_gate, its service under {svc:NAME}. */
static void on_a_cluster_a_queue_with_a_service_goes_through_its_gate(void **state)
{
    const char *text = "[queue chat]\nhandler = http\nservice = llm\n"
                       "[queue batch]\nhandler = exec\ncommand = /bin/true\n"
                       "[service llm]\nurl = http://127.0.0.1:1/v1\n";
    char *one = corral_xasprintf("%s", text);
    char *cl = corral_xasprintf("[redis]\ncluster = a:1\n%s", text);
    struct corral_config *cfg = load_ok(one);
    assert_false(corral_config_queue(cfg, "chat")->service_gate);
    struct corral_cmd cmd;
    corral_cmd_declare(&cmd, cfg->redis.prefix, corral_config_queue(cfg, "chat"));
    assert_null(strstr(cmd.argv[4], "service_gate"));
    corral_cmd_free(&cmd);
    corral_config_free(cfg);
    cfg = load_ok(cl);
    assert_true(corral_config_queue(cfg, "chat")->service_gate);
    assert_false(corral_config_queue(cfg, "batch")->service_gate);
    corral_cmd_declare(&cmd, cfg->redis.prefix, corral_config_queue(cfg, "chat"));
    assert_non_null(strstr(cmd.argv[4], "\"service_gate\":true"));
    corral_cmd_free(&cmd);
    corral_cmd_breaker(&cmd, "app", "llm");
    corral_cmd_service_tag(&cmd, "app", "llm");
    assert_string_equal(cmd.argv[3], "app:{svc:llm}");
    assert_int_equal(cmd.argvlen[3], strlen("app:{svc:llm}"));
    corral_cmd_free(&cmd);
    corral_config_free(cfg);
    free(one);
    free(cl);
}

static void with_sentinels_the_url_may_leave_the_host_out(void **state)
{
    struct corral_config *cfg =
        load_ok("[redis]\nurl = rediss://corral@/2\nsentinels = a:1\nsentinel_master = m\n");
    assert_string_equal(cfg->redis.url, "rediss://corral@/2");
    corral_config_free(cfg);
    cfg = load_ok("[redis]\nsentinels = a:1\nsentinel_master = m\n"); /* url: the default */
    assert_string_equal(cfg->redis.url, "redis://127.0.0.1:6379/0");
    corral_config_free(cfg);
    load_fails_with("[redis]\nurl = redis:///0\n",
                    "[redis] url: redis url \"redis:///0\": missing host");
}

static void sentinel_keys_without_sentinels_are_refused(void **state)
{
    load_fails_exactly("[redis]\nsentinel_master = m\nsentinel_password_file = /p\n", 2,
                       "t.conf:2: [redis] sentinel_master: only used with sentinels = "
                       "host:port, ...",
                       "t.conf:3: [redis] sentinel_password_file: only used with sentinels = "
                       "host:port, ...");
}

static void tls_keys_need_a_rediss_url(void **state)
{
    load_fails_exactly("[redis]\nurl = redis://h/0\ntls_ca_file = /ca.crt\n"
                       "tls_server_name = h.example\n",
                       2,
                       "t.conf:3: [redis] tls_ca_file: only used with a rediss:// url (url is "
                       "\"redis://h/0\")",
                       "t.conf:4: [redis] tls_server_name: only used with a rediss:// url (url is "
                       "\"redis://h/0\")");
    load_fails_with("[redis]\ntls_cert_file = /c.crt\ntls_key_file = /c.key\n",
                    "only used with a rediss:// url (url is \"redis://127.0.0.1:6379/0\")");
}

static void client_certificate_needs_both_files(void **state)
{
    load_fails_exactly("[redis]\nurl = rediss://h\ntls_cert_file = /c.crt\n", 1,
                       "t.conf:3: [redis] tls_key_file: a client certificate needs both "
                       "tls_cert_file and tls_key_file");
    load_fails_exactly("[redis]\nurl = rediss://h\ntls_key_file = /c.key\n", 1,
                       "t.conf:3: [redis] tls_cert_file: a client certificate needs both "
                       "tls_cert_file and tls_key_file");
    load_fails_with("[redis]\nurl = rediss://h\ntls_cert_file = c.crt\ntls_key_file = /c.key\n",
                    "[redis] tls_cert_file: must be an absolute path");
}

static void min_replicas_is_bounded(void **state)
{
    load_fails_with("[redis]\nmin_replicas = -1\n", "t.conf:2: [redis] min_replicas:");
    load_fails_with("[redis]\nmin_replicas = 101\n", "t.conf:2: [redis] min_replicas:");
    load_fails_with("[redis]\nmin_replicas = one\n", "t.conf:2: [redis] min_replicas:");
}

static void dump_round_trips_sentinel_and_tls_keys(void **state)
{
    struct corral_config *a =
        load_ok("[redis]\nurl = rediss://corral@h/3\nsentinels = a:26379, [fd00::1]:26380\n"
                "sentinel_master = mm\nsentinel_password_file = /s.pass\ntls_ca_file = /ca.crt\n"
                "tls_cert_file = /c.crt\ntls_key_file = /c.key\ntls_server_name = h.example\n"
                "min_replicas = 2\n");
    char *text_a = dump_to_string(a);
    assert_non_null(strstr(text_a, "\nsentinels = a:26379, [fd00::1]:26380\n"));
    assert_non_null(strstr(text_a, "\nmin_replicas = 2\n"));
    struct corral_config *b = load_ok(text_a);
    char *text_b = dump_to_string(b);
    assert_string_equal(strchr(text_a, '\n'), strchr(text_b, '\n'));
    assert_int_equal(b->redis.sentinels.n, 2);
    assert_string_equal(b->redis.sentinel_master, "mm");
    assert_string_equal(b->redis.tls_server_name, "h.example");
    assert_int_equal(b->redis.min_replicas, 2);
    free(text_a);
    free(text_b);
    corral_config_free(a);
    corral_config_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_file_gives_every_default),
        cmocka_unit_test(queue_defaults_match_the_documented_ones),
        cmocka_unit_test(queue_handler_defaults_to_http),
        cmocka_unit_test(service_defaults_match_the_documented_ones),
        cmocka_unit_test(defaults_without_a_file_have_no_queues),
        cmocka_unit_test(a_file_without_queues_is_valid_for_tools),
        cmocka_unit_test(pool_queues_defaults_to_every_queue_in_file_order),
        cmocka_unit_test(the_interface_example_loads),
        cmocka_unit_test(the_example_config_loads_cleanly),
        cmocka_unit_test(durations_parse_with_units),
        cmocka_unit_test(bad_durations_are_refused_naming_the_value),
        cmocka_unit_test(durations_are_checked_against_each_keys_bounds),
        cmocka_unit_test(sizes_parse_in_powers_of_1024),
        cmocka_unit_test(sizes_are_checked_against_each_keys_bounds),
        cmocka_unit_test(percentages_become_per_mille),
        cmocka_unit_test(percentages_are_checked_against_each_keys_bounds),
        cmocka_unit_test(integers_are_bounded),
        cmocka_unit_test(ranges_parse_and_backoff_is_checked),
        cmocka_unit_test(rates_parse_per_period),
        cmocka_unit_test(lists_trim_blanks_and_refuse_empty_items),
        cmocka_unit_test(names_and_enums_are_checked),
        cmocka_unit_test(a_fallback_list_keeps_its_order_and_is_checked),
        cmocka_unit_test(section_names_are_checked),
        cmocka_unit_test(unknown_keys_and_sections_name_file_and_line),
        cmocka_unit_test(keys_outside_a_section_are_errors),
        cmocka_unit_test(syntax_errors_are_all_reported_with_their_lines),
        cmocka_unit_test(syntax_errors_do_not_echo_the_line),
        cmocka_unit_test(indented_lines_are_keys_not_continuations),
        cmocka_unit_test(comment_rules_follow_the_documentation),
        cmocka_unit_test(hash_after_a_value_is_part_of_it),
        cmocka_unit_test(carriage_returns_and_a_byte_order_mark_are_accepted),
        cmocka_unit_test(overlong_lines_are_reported_not_split),
        cmocka_unit_test(long_comments_and_the_longest_line_are_fine),
        cmocka_unit_test(every_error_is_reported_not_just_the_first),
        cmocka_unit_test(errors_are_listed_in_file_order),
        cmocka_unit_test(duplicate_keys_and_sections_are_errors),
        cmocka_unit_test(header_is_repeatable),
        cmocka_unit_test(malformed_headers_are_refused_without_echoing_them),
        cmocka_unit_test(pool_min_above_max_is_refused),
        cmocka_unit_test(weights_need_order_weighted_and_one_per_priority),
        cmocka_unit_test(priorities_are_distinct_names_and_at_most_16),
        cmocka_unit_test(http_handler_needs_an_existing_service),
        cmocka_unit_test(service_and_command_only_go_with_their_handler),
        cmocka_unit_test(exec_handler_needs_a_command),
        cmocka_unit_test(a_refused_value_does_not_cascade_into_more_errors),
        cmocka_unit_test(breaker_open_for_may_not_exceed_open_max),
        cmocka_unit_test(service_url_is_required_http_and_without_password),
        cmocka_unit_test(pool_queues_must_name_queue_sections),
        cmocka_unit_test(redis_url_forms_are_accepted),
        cmocka_unit_test(the_redis_url_is_parsed_into_the_address_at_load),
        cmocka_unit_test(setting_the_redis_url_replaces_the_address_or_keeps_the_old_one),
        cmocka_unit_test(redis_url_with_password_is_refused_without_echoing_it),
        cmocka_unit_test(malformed_redis_urls_are_refused),
        cmocka_unit_test(credentials_directory_is_expanded_at_load),
        cmocka_unit_test(expand_path_replaces_every_occurrence_and_nothing_else),
        cmocka_unit_test(secret_paths_must_be_absolute),
        cmocka_unit_test(secrets_are_read_trimmed_and_errors_never_show_them),
        cmocka_unit_test(dump_round_trips_through_the_loader),
        cmocka_unit_test(dump_uses_units),
        cmocka_unit_test(dump_of_the_example_config_round_trips),
        cmocka_unit_test(dump_hides_values_of_headers_that_carry_credentials),
        cmocka_unit_test(missing_file_is_one_error_naming_it),
        cmocka_unit_test(errors_from_a_file_name_its_path),
        cmocka_unit_test(default_path_honours_corral_config),
        cmocka_unit_test(sentinel_and_tls_keys_are_loaded),
        cmocka_unit_test(sentinel_and_tls_keys_default_to_off),
        cmocka_unit_test(rediss_urls_are_accepted_and_checked_like_redis_urls),
        cmocka_unit_test(sentinels_need_a_master_name_and_valid_addresses),
        cmocka_unit_test(with_sentinels_the_url_may_leave_the_host_out),
        cmocka_unit_test(cluster_seeds_must_be_addresses_with_a_plain_url),
        cmocka_unit_test(on_a_cluster_a_queue_with_a_service_goes_through_its_gate),
        cmocka_unit_test(sentinel_keys_without_sentinels_are_refused),
        cmocka_unit_test(tls_keys_need_a_rediss_url),
        cmocka_unit_test(client_certificate_needs_both_files),
        cmocka_unit_test(min_replicas_is_bounded),
        cmocka_unit_test(dump_round_trips_sentinel_and_tls_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

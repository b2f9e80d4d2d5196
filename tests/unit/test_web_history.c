/* Unit tests for corral-web's history (web/history.c): the per-minute
 * buckets become the hour's charts, each minute as Redis holds it however
 * the live minute moves; samples and breaker changes are kept. Redis is
 * played by the test: it answers the plan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "history.h"

#define MIN_MS 60000LL

/* A fake Redis: per minute, the counters of one queue "q". */
struct fake {
    long long enq[400], done[400], h3[400], ps[400];
};

static json_t *status_at(long long now_ms, const char *breaker_state)
{
    return json_pack("{s:I s:[{s:s s:I s:i s:s}] s:[{s:s s:i s:i s:i s:i s:i s:s}] "
                     "s:[{s:s s:s s:I}]}",
                     "time_ms", now_ms, "queues", "name", "q", "time_ms", now_ms, "depth", 5,
                     "service", "ai", "hosts", "host", "w1", "workers", 3, "busy", 1, "desired", 4,
                     "min", 2, "max", 8, "last_decision", "3 -> 4: depth 5", "breakers", "service",
                     "ai", "state", breaker_state, "throttled_until_ms", 0LL);
}

/* Runs one refresh at now_ms against the fake. */
static void refresh(struct web_history *h, struct fake *f, long long now_ms, const char *bstate)
{
    json_t *st = status_at(now_ms, bstate);
    struct web_bucket_req *plan;
    size_t n = web_history_plan(h, st, &plan);
    for (size_t i = 0; i < n; i++) {
        long long m = (plan[i].minute % 400 + 400) % 400; /* minutes before 0 read 381.. */
        char e[32], d[32], h3[32], ps[32], pn[32];
        snprintf(e, sizeof(e), "%lld", f->enq[m]);
        snprintf(d, sizeof(d), "%lld", f->done[m]);
        snprintf(h3, sizeof(h3), "%lld", f->h3[m]);
        snprintf(ps, sizeof(ps), "%lld", f->ps[m]);
        snprintf(pn, sizeof(pn), "%lld", f->h3[m]);
        const char *fv[] = {"enq", e, "done", d, "h3", h3, "ps", ps, "pn", pn, "junk", "9"};
        web_history_bucket(h, &plan[i], fv, 12);
    }
    free(plan);
    web_history_sample(h, st, now_ms);
    json_decref(st);
}

static void each_minute_of_the_hour_is_the_bucket_redis_holds(void **state)
{
    struct fake *f = calloc(1, sizeof(*f));
    struct web_history *h = web_history_new();
    long long t = 300 * MIN_MS; /* minute 300 */
    f->enq[300 - 5] = 7;        /* an older bucket still in Redis: charted at first sight */
    f->enq[300] = 2;
    refresh(h, f, t + 1000, "closed");
    /* The live minute grows, rolls over, grows again; reads land anywhere. */
    long long now = t;
    for (int step = 0; step < 400; step++) {
        now = t + 1000 + step * 700LL;
        f->enq[(now / MIN_MS) % 400] += step % 3;
        refresh(h, f, now, "closed");
    }
    size_t len;
    char *j = web_history_json(h, now, &len);
    json_t *doc = json_loads(j, 0, NULL);
    assert_non_null(doc);
    json_t *mins = json_object_get(doc, "minute_ms");
    json_t *enq = json_object_get(json_object_get(json_object_get(doc, "queues"), "q"), "enqueued");
    assert_int_equal(json_array_size(enq), 61);
    int checked = 0;
    for (size_t i = 0; i < 61; i++) {
        long long m = json_integer_value(json_array_get(mins, i)) / MIN_MS;
        if (m < 295 || m > now / MIN_MS)
            continue;
        assert_int_equal(json_integer_value(json_array_get(enq, i)), f->enq[m % 400]);
        checked++;
    }
    assert_true(checked >= 6);
    json_decref(doc);
    free(j);
    web_history_free(h);
    free(f);
}

static void the_charts_hold_the_hour_samples_and_breaker_changes(void **state)
{
    struct fake *f = calloc(1, sizeof(*f));
    struct web_history *h = web_history_new();
    long long t = 200 * MIN_MS;
    f->enq[199] = 3;
    f->done[199] = 2;
    f->h3[199] = 2;
    refresh(h, f, t + 1000, "closed");
    refresh(h, f, t + 20000, "open");
    size_t len;
    char *j = web_history_json(h, t + 20000, &len);
    json_error_t jerr;
    json_t *doc = json_loads(j, 0, &jerr);
    assert_non_null(doc);
    assert_int_equal(json_array_size(json_object_get(doc, "minute_ms")), 61);
    json_t *q = json_object_get(json_object_get(doc, "queues"), "q");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(q, "enqueued"), 59)), 3);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(q, "p50_ms"), 59)), 8);
    assert_true(json_is_null(json_array_get(json_object_get(q, "p50_ms"), 0)));
    assert_int_equal(json_array_size(json_object_get(doc, "sample_ms")), 2);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(q, "depth"), 1)), 5);
    json_t *w1 = json_object_get(json_object_get(doc, "hosts"), "w1");
    assert_string_equal(json_string_value(json_object_get(w1, "decisions_source")), "heartbeat");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(w1, "decisions"), 0), "reason")),
                        "3 -> 4: depth 5");
    json_t *ai = json_object_get(json_object_get(doc, "breakers"), "ai");
    json_t *ch = json_array_get(json_object_get(ai, "changes"), 0);
    assert_string_equal(json_string_value(json_object_get(ch, "from")), "closed");
    assert_string_equal(json_string_value(json_object_get(ch, "to")), "open");
    json_decref(doc);
    free(j);
    /* Decisions kept by corrald in Redis take the heartbeat's place. */
    const char *lines[] = {"{\"t_ms\":1,\"from\":3,\"to\":4,\"reason\":\"r\"}", "not json"};
    web_history_decisions(h, "w1", lines, 2);
    j = web_history_json(h, t + 20000, &len);
    doc = json_loads(j, 0, &jerr);
    w1 = json_object_get(json_object_get(doc, "hosts"), "w1");
    assert_string_equal(json_string_value(json_object_get(w1, "decisions_source")), "redis");
    assert_int_equal(json_array_size(json_object_get(w1, "decisions")), 1);
    json_decref(doc);
    free(j);
    web_history_free(h);
    free(f);
}

static void names_are_escaped_into_valid_json(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    web_json_string(out, "a\"b\\c\n\x01\xff");
    fclose(out);
    assert_string_equal(buf, "\"a\\\"b\\\\c\\u000a\\u0001\\u00ff\"");
    json_t *v = json_loads(buf, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    json_decref(v);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_minute_of_the_hour_is_the_bucket_redis_holds),
        cmocka_unit_test(the_charts_hold_the_hour_samples_and_breaker_changes),
        cmocka_unit_test(names_are_escaped_into_valid_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

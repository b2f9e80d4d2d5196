/* Unit tests for the worker <-> corrald fd 3 line protocol. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "corral/wmsg.h"

static void every_message_round_trips(void **state)
{
    struct corral_wmsg in[] = {
        {.type = CORRAL_WMSG_READY, .slots = 8},
        {.type = CORRAL_WMSG_BUSY, .busy = 3, .slots = 8},
        {.type = CORRAL_WMSG_DONE, .queue = "prompts", .ms = 1234, .outcome = CORRAL_OUTCOME_DEFER},
        {.type = CORRAL_WMSG_HEARTBEAT, .busy = 1, .slots = 4, .jobs = 99, .rss_kb = 3120},
        {.type = CORRAL_WMSG_HEARTBEAT,
         .busy = 4,
         .slots = 4,
         .jobs = 7,
         .rss_kb = 3120,
         .unwritten = 8},
        {.type = CORRAL_WMSG_STOPPING},
    };
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        char buf[CORRAL_WMSG_MAX];
        int n = corral_wmsg_format(&in[i], buf, sizeof(buf));
        assert_true(n > 0);
        assert_int_equal(buf[n - 1], '\n');
        buf[n - 1] = '\0';
        struct corral_wmsg out;
        struct corral_err err;
        assert_int_equal(corral_wmsg_parse(buf, &out, &err), 0);
        assert_int_equal(out.type, in[i].type);
        assert_int_equal(out.busy, in[i].busy);
        assert_int_equal(out.slots, in[i].slots);
        assert_int_equal(out.jobs, in[i].jobs);
        assert_int_equal(out.rss_kb, in[i].rss_kb);
        assert_int_equal(out.unwritten, in[i].unwritten);
        assert_int_equal(out.ms, in[i].ms);
        assert_int_equal(out.outcome, in[i].outcome);
        assert_string_equal(out.queue, in[i].queue);
    }
}

static void malformed_lines_are_refused_with_the_line_quoted(void **state)
{
    const char *bad[] = {"",
                         "ready",
                         "ready -1",
                         "ready 4 5",
                         "ready  4",
                         "ready 4 ",
                         "busy 5 4",
                         "busy x 4",
                         "done q 12",
                         "done q 12 maybe",
                         "done q -3 ok",
                         "heartbeat 1 2 3",
                         "heartbeat 1 2 3 99999999999999999999",
                         "heartbeat 1 2 3 4 unwritten",
                         "heartbeat 1 2 3 4 unwritten=",
                         "heartbeat 1 2 3 4 unwritten=-1",
                         "heartbeat 1 2 3 4 unwritten=x",
                         "heartbeat 1 2 3 4 unwritten=1 unwritten=2",
                         "heartbeat 1 2 3 4 =5",
                         "heartbeat 1 2 3 4 Later=5",
                         "heartbeat 1 2 3 4 5",
                         "stopping now",
                         "hello",
                         NULL};
    for (const char **b = bad; *b; b++) {
        struct corral_wmsg m;
        struct corral_err err;
        assert_int_equal(corral_wmsg_parse(*b, &m, &err), -1);
        assert_non_null(strstr(err.msg, "worker message"));
    }
    char longline[400];
    memset(longline, 'a', sizeof(longline) - 1);
    longline[sizeof(longline) - 1] = '\0';
    struct corral_wmsg m;
    struct corral_err err;
    assert_int_equal(corral_wmsg_parse(longline, &m, &err), -1);
    assert_non_null(strstr(err.msg, "too long"));
}

/* corrald and its workers may be a version apart during an upgrade. */
static void heartbeats_from_older_and_newer_workers_are_read(void **state)
{
    struct corral_wmsg m;
    struct corral_err err;
    assert_int_equal(corral_wmsg_parse("heartbeat 1 4 10 2000", &m, &err), 0);
    assert_int_equal(m.type, CORRAL_WMSG_HEARTBEAT);
    assert_int_equal(m.rss_kb, 2000);
    assert_int_equal(m.unwritten, 0);
    assert_int_equal(
        corral_wmsg_parse("heartbeat 1 4 10 2000 later_field=abc unwritten=6", &m, &err), 0);
    assert_int_equal(m.busy, 1);
    assert_int_equal(m.unwritten, 6);
}

static void format_refuses_a_buffer_too_small(void **state)
{
    struct corral_wmsg m = {.type = CORRAL_WMSG_HEARTBEAT, .busy = 1, .slots = 2, .jobs = 3};
    char buf[8];
    assert_int_equal(corral_wmsg_format(&m, buf, sizeof(buf)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_message_round_trips),
        cmocka_unit_test(malformed_lines_are_refused_with_the_line_quoted),
        cmocka_unit_test(heartbeats_from_older_and_newer_workers_are_read),
        cmocka_unit_test(format_refuses_a_buffer_too_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

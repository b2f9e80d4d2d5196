/* Rows of docs/bad-input.md that need no process or Redis: invalid UTF-8,
 * negative and overflowing numbers and malformed URLs in corral.conf, and
 * out-of-range numbers in the enqueue options corralctl builds. Each is
 * refused with an error naming file, line and key, or kept byte for byte
 * where the value is a path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "corral/config.h"
#include "corral/queue.h"

/* Loads text that must fail with an error line containing want. */
static void refused_with(const char *text, const char *want)
{
    struct corral_config_errors errs;
    struct corral_config *cfg = corral_config_load_string(text, "t.conf", &errs);
    int found = 0;
    for (size_t i = 0; i < errs.n; i++)
        if (strstr(errs.lines[i], want) != NULL)
            found = 1;
    if (!found) {
        fprintf(stderr, "wanted an error containing: %s\n", want);
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "  got: %s\n", errs.lines[i]);
    }
    assert_null(cfg);
    assert_true(found);
    corral_config_errors_free(&errs);
}

static struct corral_config *loads(const char *text)
{
    struct corral_config_errors errs;
    struct corral_config *cfg = corral_config_load_string(text, "t.conf", &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "  got: %s\n", errs.lines[i]);
    assert_int_equal(errs.n, 0);
    assert_non_null(cfg);
    corral_config_errors_free(&errs);
    return cfg;
}

static void config_names_with_invalid_utf8_are_refused_naming_the_line(void **state)
{
    refused_with("[queue q\xff]\nhandler = echo\n", "t.conf:1: [queue q\xff]: bad queue name");
    refused_with("[queue caf\xc3\xa9]\nhandler = echo\n", "t.conf:1: [queue caf\xc3\xa9]: bad");
    refused_with("[po\xffol]\n", "t.conf:1:");
    refused_with("[pool]\nm\xffin = 1\n", "t.conf:2:");
    refused_with("[redis]\nprefix = c\xff\n", "t.conf:2: [redis] prefix: expected 1-32 characters");
    refused_with("[queue q]\nhandler = echo\npriorities = hi\xff, lo\n",
                 "t.conf:3: [queue q] priorities:");
    refused_with("[pool]\nqueues = q\xff\n[queue q]\nhandler = echo\n",
                 "t.conf:2: [pool] queues names \"q\xff\"");
}

static void config_numbers_with_invalid_utf8_are_refused(void **state)
{
    refused_with("[queue q]\nhandler = echo\ntimeout = 5\xff\n",
                 "t.conf:3: [queue q] timeout: expected a duration");
    refused_with("[queue q]\nhandler = echo\nmax_payload = 1\xc2\xb5\n",
                 "t.conf:3: [queue q] max_payload: expected a size");
    refused_with("[pool]\nmax = \xef\xbc\x93\n", "t.conf:2: [pool] max: expected a whole number");
    refused_with("[scale]\ncpu_ceiling = 85\xef\xbc\x85\n",
                 "t.conf:2: [scale] cpu_ceiling: expected a percentage");
}

static void config_negative_numbers_are_refused_for_every_type(void **state)
{
    refused_with("[pool]\nconcurrency = -4\n",
                 "t.conf:2: [pool] concurrency: must be from 1 to 1024 (got \"-4\")");
    refused_with("[queue q]\nhandler = echo\nmax_payload = -1\n",
                 "t.conf:3: [queue q] max_payload: expected a size like 512, 512K, 1M or 2G "
                 "(got \"-1\")");
    refused_with("[pool]\nhang_timeout = -30s\n", "t.conf:2: [pool] hang_timeout: expected a "
                                                  "duration");
    refused_with("[scale]\nmem_ceiling = -5%\n", "t.conf:2: [scale] mem_ceiling: expected a "
                                                 "percentage");
    refused_with("[service s]\nurl = http://h/\nrate = -10/s\n",
                 "t.conf:3: [service s] rate: expected a rate");
    refused_with("[queue q]\nhandler = echo\nbackoff = -1s..5m\n",
                 "t.conf:3: [queue q] backoff: expected a range of durations");
}

static void config_overflowing_numbers_are_refused_for_every_type(void **state)
{
    refused_with("[queue q]\nhandler = echo\nmax_payload = 18446744073709551616\n",
                 "t.conf:3: [queue q] max_payload: size is too large (got "
                 "\"18446744073709551616\")");
    refused_with("[queue q]\nhandler = echo\nmax_result = 9999999999999G\n",
                 "t.conf:3: [queue q] max_result: size is too large");
    refused_with("[pool]\nmax_jobs = 9223372036854775808\n",
                 "t.conf:2: [pool] max_jobs: must be from");
    refused_with("[pool]\nmin = -9223372036854775809\n", "t.conf:2: [pool] min: must be from");
    refused_with("[queue q]\nhandler = echo\nlease = 106751991167301d\n",
                 "t.conf:3: [queue q] lease: duration is too large");
    refused_with("[scale]\ncpu_ceiling = 99999999999999999999%\n",
                 "t.conf:2: [scale] cpu_ceiling: expected a percentage from 0% to 100%");
    refused_with("[service s]\nurl = http://h/\nrate = 99999999999999999999/s\n",
                 "t.conf:3: [service s] rate: expected a rate");
    refused_with("[queue q]\nhandler = echo\nbackoff = 1s..99999999999999999999d\n",
                 "t.conf:3: [queue q] backoff: expected a range of durations");
    refused_with("[queue q]\nhandler = echo\nweights = 99999999999999999999, 1, 1\n"
                 "order = weighted\n",
                 "t.conf:3: [queue q] weights:");
}

static void service_urls_that_are_not_printable_ascii_are_refused(void **state)
{
    refused_with("[service s]\nurl = http://h/v1 chat\n",
                 "t.conf:2: [service s] url: byte 12 is 0x20; a url is printable ASCII");
    refused_with("[service s]\nurl = http://h/\xff\n",
                 "t.conf:2: [service s] url: byte 10 is 0xff; a url is printable ASCII");
    refused_with("[service s]\nurl = http://h/\tx\n", "t.conf:2: [service s] url: byte 10 is 0x09");
    struct corral_config *cfg = loads("[service s]\nurl = https://h:8443/v1/x?a=b%20c&d=~e\n");
    assert_string_equal(corral_config_service(cfg, "s")->url, "https://h:8443/v1/x?a=b%20c&d=~e");
    corral_config_free(cfg);
}

static void paths_with_invalid_utf8_are_kept_byte_for_byte(void **state)
{
    /* A Linux path is bytes: an exec command or a socket path may hold any
     * of them but NUL, and is used as written. */
    struct corral_config *cfg = loads("[redis]\nurl = unix:///run/r\xff.sock\n"
                                      "[queue q]\nhandler = exec\ncommand = /opt/\xff/run --x\n");
    assert_string_equal(cfg->redis.url, "unix:///run/r\xff.sock");
    assert_string_equal(corral_config_queue(cfg, "q")->command, "/opt/\xff/run --x");
    corral_config_free(cfg);
}

static void out_of_range_numeric_priority_is_sent_as_typed(void **state)
{
    /* corralctl --priority N: a level index when it fits, else the text as
     * typed, so the refusal quotes what the user wrote. */
    const char *cases[][2] = {{"99999999999999999999", "{\"priority\":\"99999999999999999999\"}"},
                              {"-99999999999999999999", "{\"priority\":\"-99999999999999999999\"}"},
                              {"-1", "{\"priority\":-1}"},
                              {"1", "{\"priority\":1}"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct corral_cmd cmd;
        struct corral_enqueue_opts o = {.priority = cases[i][0]};
        corral_cmd_enqueue(&cmd, "corral", "q", "{}", 2, &o);
        assert_int_equal(cmd.argc, 6);
        assert_string_equal(cmd.argv[5], cases[i][1]);
        corral_cmd_free(&cmd);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_names_with_invalid_utf8_are_refused_naming_the_line),
        cmocka_unit_test(config_numbers_with_invalid_utf8_are_refused),
        cmocka_unit_test(config_negative_numbers_are_refused_for_every_type),
        cmocka_unit_test(config_overflowing_numbers_are_refused_for_every_type),
        cmocka_unit_test(service_urls_that_are_not_printable_ascii_are_refused),
        cmocka_unit_test(paths_with_invalid_utf8_are_kept_byte_for_byte),
        cmocka_unit_test(out_of_range_numeric_priority_is_sent_as_typed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

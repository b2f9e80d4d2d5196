/* Unit tests for the worker's pure parts: HTTP outcome classification,
 * rate-limit hints, error texts and exec command splitting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "classify.h"
#include "split.h"

static void statuses_map_to_verdicts(void **state)
{
    assert_int_equal(corral_classify(200, "", 0), CORRAL_V_DONE);
    assert_int_equal(corral_classify(204, "", 0), CORRAL_V_DONE);
    assert_int_equal(corral_classify(0, "", 0), CORRAL_V_RETRY);
    assert_int_equal(corral_classify(408, "", 0), CORRAL_V_RETRY);
    assert_int_equal(corral_classify(500, "", 0), CORRAL_V_RETRY);
    assert_int_equal(corral_classify(503, "", 0), CORRAL_V_RETRY);
    assert_int_equal(corral_classify(429, "{}", 2), CORRAL_V_THROTTLED);
    assert_int_equal(corral_classify(400, "", 0), CORRAL_V_PERMANENT);
    assert_int_equal(corral_classify(401, "", 0), CORRAL_V_PERMANENT);
    assert_int_equal(corral_classify(404, "", 0), CORRAL_V_PERMANENT);
    assert_int_equal(corral_classify(302, "", 0), CORRAL_V_PERMANENT);
}

static void quota_exhaustion_is_its_own_verdict_not_a_throttle(void **state)
{
    const char *body = "{\"error\":{\"type\":\"insufficient_quota\"}}";
    assert_int_equal(corral_classify(429, body, strlen(body)), CORRAL_V_QUOTA);
    assert_int_equal(corral_classify(429, "{}", 2), CORRAL_V_THROTTLED);
}

static int64_t hint(const char *header)
{
    struct corral_retry_hints h;
    corral_retry_hints_init(&h);
    corral_retry_hints_header(&h, header, strlen(header), 1445412480);
    return corral_retry_hints_delay(&h, -1, 3600000);
}

static void retry_after_forms_are_understood(void **state)
{
    assert_int_equal(hint("Retry-After: 2\r\n"), 2000);
    assert_int_equal(hint("retry-after: 0.5\r\n"), 500);
    assert_int_equal(hint("retry-after-ms: 750\r\n"), 750);
    assert_int_equal(hint("x-ratelimit-reset-requests: 6m0s\r\n"), 360000);
    assert_int_equal(hint("x-ratelimit-reset-tokens: 20ms\r\n"), 20);
    /* An HTTP date 60 s after "now" (2015-10-21 07:28:00 GMT). */
    assert_int_equal(hint("Retry-After: Wed, 21 Oct 2015 07:29:00 GMT\r\n"), 60000);
    assert_int_equal(hint("Retry-After: soon\r\n"), -1);
    assert_int_equal(hint("X-Other: 5\r\n"), -1);
}

static void delay_prefers_retry_after_then_the_later_reset_and_is_capped(void **state)
{
    struct corral_retry_hints h;
    corral_retry_hints_init(&h);
    assert_int_equal(corral_retry_hints_delay(&h, 1000, 60000), 1000);
    const char *a = "x-ratelimit-reset-requests: 1s\r\n";
    const char *b = "x-ratelimit-reset-tokens: 1m30s\r\n";
    corral_retry_hints_header(&h, a, strlen(a), 0);
    corral_retry_hints_header(&h, b, strlen(b), 0);
    assert_int_equal(corral_retry_hints_delay(&h, 1000, 3600000), 90000);
    assert_int_equal(corral_retry_hints_delay(&h, 1000, 60000), 60000);
    const char *c = "Retry-After: 3\r\n";
    corral_retry_hints_header(&h, c, strlen(c), 0);
    assert_int_equal(corral_retry_hints_delay(&h, 1000, 3600000), 3000);
}

static void reset_durations_parse_like_go(void **state)
{
    assert_int_equal(corral_parse_reset_ms("1h2m3.5s", 8), 3723500);
    assert_int_equal(corral_parse_reset_ms("250ms", 5), 250);
    assert_int_equal(corral_parse_reset_ms("", 0), -1);
    assert_int_equal(corral_parse_reset_ms("1x", 2), -1);
    assert_int_equal(corral_parse_reset_ms("-1s", 3), -1);
}

static void error_text_names_status_and_sanitised_excerpt(void **state)
{
    char buf[300];
    corral_describe_http(503, "busy\n\tnow", 9, buf, sizeof(buf));
    assert_string_equal(buf, "HTTP 503: busy  now");
    corral_describe_http(500, "", 0, buf, sizeof(buf));
    assert_string_equal(buf, "HTTP 500");
    char big[1000];
    memset(big, 'a', sizeof(big));
    corral_describe_http(400, big, sizeof(big), buf, sizeof(buf));
    assert_int_equal(strlen(buf), strlen("HTTP 400: ") + 200 + 3);
}

static void commands_split_without_a_shell(void **state)
{
    struct corral_err err;
    char **a =
        corral_split_command("  /bin/tool --name 'two words' \"q\\\"uote\" a\\ b $HOME  ", &err);
    assert_non_null(a);
    assert_string_equal(a[0], "/bin/tool");
    assert_string_equal(a[1], "--name");
    assert_string_equal(a[2], "two words");
    assert_string_equal(a[3], "q\"uote");
    assert_string_equal(a[4], "a b");
    assert_string_equal(a[5], "$HOME"); /* no expansion */
    assert_null(a[6]);
    corral_argv_free(a);
    assert_null(corral_split_command("tool 'open", &err));
    assert_non_null(strstr(err.msg, "unterminated quote"));
    assert_null(corral_split_command("   ", &err));
    assert_non_null(strstr(err.msg, "empty command"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(statuses_map_to_verdicts),
        cmocka_unit_test(quota_exhaustion_is_its_own_verdict_not_a_throttle),
        cmocka_unit_test(retry_after_forms_are_understood),
        cmocka_unit_test(delay_prefers_retry_after_then_the_later_reset_and_is_capped),
        cmocka_unit_test(reset_durations_parse_like_go),
        cmocka_unit_test(error_text_names_status_and_sanitised_excerpt),
        cmocka_unit_test(commands_split_without_a_shell),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

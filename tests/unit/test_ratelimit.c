/* Unit tests for rate-limit headers of OpenAI and Anthropic (token and
 * request windows, resets as durations or times), telling a token 429
 * from a request 429, and how long each defers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ratelimit.h"

/* 2024-05-01T12:00:00Z */
#define NOW_MS 1714564800000LL

static void feed(struct corral_ratelimit *rl, const char *const *lines)
{
    for (; *lines != NULL; lines++)
        corral_ratelimit_header(rl, *lines, strlen(*lines), NOW_MS);
}

static void openai_token_and_request_windows_are_read(void **state)
{
    static const char *const h[] = {"x-ratelimit-limit-requests: 5000\r\n",
                                    "x-ratelimit-remaining-requests: 4999\r\n",
                                    "x-ratelimit-reset-requests: 12ms\r\n",
                                    "X-RateLimit-Limit-Tokens: 160000\r\n",
                                    "x-ratelimit-remaining-tokens: 159200\r\n",
                                    "x-ratelimit-reset-tokens: 6m0s\r\n",
                                    NULL};
    struct corral_ratelimit rl;
    corral_ratelimit_init(&rl);
    feed(&rl, h);
    assert_int_equal(rl.requests.limit, 5000);
    assert_int_equal(rl.requests.remaining, 4999);
    assert_int_equal(rl.requests.reset_ms, 12);
    assert_int_equal(rl.tokens.limit, 160000);
    assert_int_equal(rl.tokens.remaining, 159200);
    assert_int_equal(rl.tokens.reset_ms, 360000);
    struct corral_rl_window w;
    assert_int_equal(corral_ratelimit_tokens_view(&rl, &w), 1);
    assert_int_equal(w.remaining, 159200);
    assert_int_equal(w.limit, 160000);
    assert_int_equal(w.reset_ms, 360000);
}

static void openai_reset_durations_in_every_form(void **state)
{
    static const char *const forms[] = {"1.5s", "20ms", "6m0s", "1h2m3.5s", "2", "0.5"};
    static const int64_t ms[] = {1500, 20, 360000, 3723500, 2000, 500};
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
        char line[64];
        snprintf(line, sizeof(line), "x-ratelimit-reset-tokens: %s\r\n", forms[i]);
        struct corral_ratelimit rl;
        corral_ratelimit_init(&rl);
        corral_ratelimit_header(&rl, line, strlen(line), NOW_MS);
        assert_int_equal(rl.tokens.reset_ms, ms[i]);
    }
}

static void anthropic_windows_reset_at_an_rfc3339_time(void **state)
{
    static const char *const h[] = {
        "anthropic-ratelimit-requests-limit: 50\r\n",
        "anthropic-ratelimit-requests-remaining: 49\r\n",
        "anthropic-ratelimit-requests-reset: 2024-05-01T12:00:01Z\r\n",
        "anthropic-ratelimit-tokens-limit: 90000\r\n",
        "anthropic-ratelimit-tokens-remaining: 80000\r\n",
        "anthropic-ratelimit-tokens-reset: 2024-05-01T12:00:30.5Z\r\n",
        "anthropic-ratelimit-input-tokens-limit: 50000\r\n",
        "anthropic-ratelimit-input-tokens-remaining: 41000\r\n",
        "anthropic-ratelimit-input-tokens-reset: 2024-05-01T14:00:12+02:00\r\n",
        "anthropic-ratelimit-output-tokens-limit: 10000\r\n",
        "anthropic-ratelimit-output-tokens-remaining: 9000\r\n",
        "anthropic-ratelimit-output-tokens-reset: 2024-05-01T11:59:00Z\r\n",
        NULL};
    struct corral_ratelimit rl;
    corral_ratelimit_init(&rl);
    feed(&rl, h);
    assert_int_equal(rl.requests.remaining, 49);
    assert_int_equal(rl.requests.reset_ms, 1000);
    assert_int_equal(rl.tokens.limit, 90000);
    assert_int_equal(rl.tokens.reset_ms, 30500);
    assert_int_equal(rl.input_tokens.remaining, 41000);
    assert_int_equal(rl.input_tokens.reset_ms, 12000);
    assert_int_equal(rl.output_tokens.limit, 10000);
    assert_int_equal(rl.output_tokens.reset_ms, 0); /* already past */
    /* the tightest window is the service's view */
    struct corral_rl_window w;
    assert_int_equal(corral_ratelimit_tokens_view(&rl, &w), 1);
    assert_int_equal(w.remaining, 9000);
    assert_int_equal(w.limit, 10000);
}

static void rfc3339_times_parse_and_nonsense_does_not(void **state)
{
    assert_int_equal(corral_parse_rfc3339_ms("2024-05-01T12:00:00Z", 20), NOW_MS);
    assert_int_equal(corral_parse_rfc3339_ms("2024-05-01t12:00:00.123z", 24), NOW_MS + 123);
    assert_int_equal(corral_parse_rfc3339_ms("2024-05-01 14:00:00-02:00", 25),
                     NOW_MS + 4 * 3600000LL);
    assert_int_equal(corral_parse_rfc3339_ms("1970-01-01T00:00:00Z", 20), 0);
    static const char *const bad[] = {"2024-05-01T12:00:00",
                                      "2024-05-01T12:00:00+0200",
                                      "2024-02-31T12:00:00Z",
                                      "2024-13-01T12:00:00Z",
                                      "2024-05-01T24:00:00Z",
                                      "2024-05-01T12:00:00.Z",
                                      "2024-05-01T12:00:00Zx",
                                      "1969-12-31T23:59:59Z",
                                      "soon",
                                      ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(corral_parse_rfc3339_ms(bad[i], strlen(bad[i])), -1);
}

static void malformed_headers_leave_the_window_unknown(void **state)
{
    static const char *const h[] = {
        "x-ratelimit-remaining-tokens: -5\r\n",
        "x-ratelimit-limit-tokens: 1e6\r\n",
        "x-ratelimit-reset-tokens: soon\r\n",
        "anthropic-ratelimit-input-tokens-remaining: 99999999999999\r\n",
        "anthropic-ratelimit-output-tokens-reset: tomorrow\r\n",
        "anthropic-ratelimit-requests-remaining:\r\n",
        "x-ratelimit-remaining-tokens-extra: 5\r\n",
        NULL};
    struct corral_ratelimit rl;
    corral_ratelimit_init(&rl);
    feed(&rl, h);
    assert_int_equal(rl.tokens.remaining, -1);
    assert_int_equal(rl.tokens.limit, -1);
    assert_int_equal(rl.tokens.reset_ms, -1);
    assert_int_equal(rl.input_tokens.remaining, -1);
    assert_int_equal(rl.output_tokens.reset_ms, -1);
    assert_int_equal(rl.requests.remaining, -1);
    struct corral_rl_window w = {7, 7, 7};
    assert_int_equal(corral_ratelimit_tokens_view(&rl, &w), 0);
    assert_int_equal(w.remaining, 7);
}

static enum corral_limit_kind kind(const char *const *headers, const char *body)
{
    struct corral_ratelimit rl;
    corral_ratelimit_init(&rl);
    if (headers != NULL)
        feed(&rl, headers);
    return corral_ratelimit_kind(&rl, body, body ? strlen(body) : 0);
}

static void openai_names_the_limit_in_the_error_type(void **state)
{
    assert_int_equal(kind(NULL, "{\"error\":{\"message\":\"Rate limit reached for gpt-4o on "
                                "tokens per min (TPM): Limit 30000, Used 29000, Requested "
                                "2000.\",\"type\":\"tokens\",\"code\":\"rate_limit_exceeded\"}}"),
                     CORRAL_LIMIT_TOKENS);
    assert_int_equal(kind(NULL, "{\"error\":{\"message\":\"Rate limit reached for gpt-4o on "
                                "requests per min (RPM): Limit 3, Used 3, Requested 1.\","
                                "\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}"),
                     CORRAL_LIMIT_REQUESTS);
    /* the type beats headers that show both windows with room */
    static const char *const room[] = {"x-ratelimit-remaining-tokens: 500\r\n",
                                       "x-ratelimit-remaining-requests: 10\r\n", NULL};
    assert_int_equal(kind(room, "{\"error\":{\"type\":\"tokens\"}}"), CORRAL_LIMIT_TOKENS);
}

static void headers_at_zero_tell_which_window_is_out(void **state)
{
    static const char *const anth_tokens[] = {"anthropic-ratelimit-requests-remaining: 40\r\n",
                                              "anthropic-ratelimit-input-tokens-remaining: 0\r\n",
                                              NULL};
    const char *anth_body = "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
                            "\"message\":\"This request would exceed your rate limit.\"}}";
    assert_int_equal(kind(anth_tokens, anth_body), CORRAL_LIMIT_TOKENS);
    static const char *const anth_requests[] = {"anthropic-ratelimit-requests-remaining: 0\r\n",
                                                "anthropic-ratelimit-tokens-remaining: 12000\r\n",
                                                NULL};
    assert_int_equal(kind(anth_requests, anth_body), CORRAL_LIMIT_REQUESTS);
    static const char *const both[] = {"x-ratelimit-remaining-requests: 0\r\n",
                                       "x-ratelimit-remaining-tokens: 0\r\n", NULL};
    assert_int_equal(kind(both, "{}"), CORRAL_LIMIT_TOKENS);
}

static void the_message_words_decide_when_nothing_else_does(void **state)
{
    assert_int_equal(kind(NULL, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
                                "\"message\":\"This request would exceed the rate limit for your "
                                "organization of 50,000 input tokens per minute.\"}}"),
                     CORRAL_LIMIT_TOKENS);
    assert_int_equal(kind(NULL, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
                                "\"message\":\"Number of requests has exceeded your per-minute "
                                "rate limit: 50 requests per minute\"}}"),
                     CORRAL_LIMIT_REQUESTS);
    assert_int_equal(kind(NULL, "{\"error\":{\"message\":\"Too many requests\"}}"),
                     CORRAL_LIMIT_UNKNOWN);
    assert_int_equal(kind(NULL, "not json about tokens per min"), CORRAL_LIMIT_UNKNOWN);
    assert_int_equal(kind(NULL, NULL), CORRAL_LIMIT_UNKNOWN);
    assert_int_equal(kind(NULL, "{\"error\":\"tokens per min\"}"), CORRAL_LIMIT_UNKNOWN);
}

static void a_token_429_defers_until_the_token_window_resets(void **state)
{
    static const char *const h[] = {
        "x-ratelimit-remaining-requests: 10\r\n", "x-ratelimit-reset-requests: 1s\r\n",
        "x-ratelimit-remaining-tokens: 0\r\n", "x-ratelimit-reset-tokens: 45s\r\n", NULL};
    struct corral_ratelimit rl;
    corral_ratelimit_init(&rl);
    feed(&rl, h);
    assert_int_equal(corral_ratelimit_delay(&rl, CORRAL_LIMIT_TOKENS, 1000, 300000), 45000);
    assert_int_equal(corral_ratelimit_delay(&rl, CORRAL_LIMIT_REQUESTS, 1000, 300000), 1000);
    assert_int_equal(corral_ratelimit_delay(&rl, CORRAL_LIMIT_UNKNOWN, 1000, 300000), 45000);
    assert_int_equal(corral_ratelimit_delay(&rl, CORRAL_LIMIT_TOKENS, 1000, 30000), 30000);
    /* Retry-After is the service's own word and wins */
    corral_ratelimit_header(&rl, "Retry-After: 7\r\n", 16, NOW_MS);
    assert_int_equal(corral_ratelimit_delay(&rl, CORRAL_LIMIT_TOKENS, 1000, 300000), 7000);
}

static void a_token_429_waits_for_the_window_at_zero_not_the_longest(void **state)
{
    static const char *const h[] = {
        "anthropic-ratelimit-input-tokens-remaining: 5000\r\n",
        "anthropic-ratelimit-input-tokens-reset: 2024-05-01T12:00:50Z\r\n",
        "anthropic-ratelimit-output-tokens-remaining: 0\r\n",
        "anthropic-ratelimit-output-tokens-reset: 2024-05-01T12:00:04Z\r\n", NULL};
    struct corral_ratelimit rl;
    corral_ratelimit_init(&rl);
    feed(&rl, h);
    assert_int_equal(corral_ratelimit_delay(&rl, CORRAL_LIMIT_TOKENS, 1000, 300000), 4000);
    /* none at zero: the longest token reset */
    static const char *const g[] = {"anthropic-ratelimit-output-tokens-remaining: 10\r\n", NULL};
    feed(&rl, g);
    assert_int_equal(corral_ratelimit_delay(&rl, CORRAL_LIMIT_TOKENS, 1000, 300000), 50000);
    /* nothing known: the default */
    corral_ratelimit_init(&rl);
    assert_int_equal(corral_ratelimit_delay(&rl, CORRAL_LIMIT_TOKENS, 1000, 300000), 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(openai_token_and_request_windows_are_read),
        cmocka_unit_test(openai_reset_durations_in_every_form),
        cmocka_unit_test(anthropic_windows_reset_at_an_rfc3339_time),
        cmocka_unit_test(rfc3339_times_parse_and_nonsense_does_not),
        cmocka_unit_test(malformed_headers_leave_the_window_unknown),
        cmocka_unit_test(openai_names_the_limit_in_the_error_type),
        cmocka_unit_test(headers_at_zero_tell_which_window_is_out),
        cmocka_unit_test(the_message_words_decide_when_nothing_else_does),
        cmocka_unit_test(a_token_429_defers_until_the_token_window_resets),
        cmocka_unit_test(a_token_429_waits_for_the_window_at_zero_not_the_longest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

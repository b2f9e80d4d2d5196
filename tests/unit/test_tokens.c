/* Unit tests for the token estimate of a job: the payload's output cap and
 * size, the `tokens` option and its refusals, and a job that can never fit
 * its service's budgets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "corral/config.h"
#include "corral/tokens.h"

static void estimate(const char *payload, int bpt, int64_t option, struct corral_estimate *e)
{
    corral_tokens_estimate(payload, strlen(payload), bpt, option, e);
}

static void the_estimate_is_the_output_cap_plus_size_over_bytes_per_token(void **state)
{
    struct corral_estimate e;
    /* 52 bytes at 4 per token: 13 input tokens; max_tokens 100 */
    const char *p = "{\"model\":\"gpt-4o\",\"max_tokens\":100,\"messages\":[1,2]}";
    assert_int_equal(strlen(p), 52);
    estimate(p, 4, 0, &e);
    assert_int_equal(e.source, CORRAL_ESTIMATE_PAYLOAD);
    assert_int_equal(e.input_tokens, 13);
    assert_int_equal(e.output_tokens, 100);
    assert_int_equal(corral_estimate_total(&e), 113);
    assert_string_equal(e.model, "gpt-4o");
    /* size rounds up: 52 bytes at 3 per token is 18 */
    estimate(p, 3, 0, &e);
    assert_int_equal(e.input_tokens, 18);
    /* bytes_per_token below 1 counts as 1 */
    estimate(p, 0, 0, &e);
    assert_int_equal(e.input_tokens, 52);
}

static void every_provider_spelling_of_the_output_cap_counts_and_the_largest_wins(void **state)
{
    assert_int_equal(corral_tokens_output_cap("{\"max_tokens\":50}", 17), 50);
    const char *a = "{\"max_completion_tokens\":70}";
    assert_int_equal(corral_tokens_output_cap(a, strlen(a)), 70);
    const char *b = "{\"max_output_tokens\":90}";
    assert_int_equal(corral_tokens_output_cap(b, strlen(b)), 90);
    const char *c = "{\"max_tokens\":50,\"max_completion_tokens\":700,\"max_output_tokens\":90}";
    assert_int_equal(corral_tokens_output_cap(c, strlen(c)), 700);
    /* an integral real counts, as the Function library's Lua reads it */
    assert_int_equal(corral_tokens_output_cap("{\"max_tokens\":100.0}", 20), 100);
}

static void an_output_cap_that_is_not_a_sane_count_is_ignored(void **state)
{
    static const char *const bad[] = {
        "{\"max_tokens\":-5}",
        "{\"max_tokens\":0}",
        "{\"max_tokens\":1.5}",
        "{\"max_tokens\":\"100\"}",
        "{\"max_tokens\":null}",
        "{\"max_tokens\":1000000001}",
        "{\"max_tokens\":99999999999999999999999}",
        "{\"nested\":{\"max_tokens\":100}}",
        "[{\"max_tokens\":100}]",
        "not json",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(corral_tokens_output_cap(bad[i], strlen(bad[i])), 0);
        struct corral_estimate e;
        estimate(bad[i], 4, 0, &e);
        assert_int_equal(e.output_tokens, 0);
        assert_int_equal(e.input_tokens, (int64_t)(strlen(bad[i]) + 3) / 4);
    }
    const char *ok = "{\"max_tokens\":\"x\",\"max_output_tokens\":40}";
    assert_int_equal(corral_tokens_output_cap(ok, strlen(ok)), 40);
}

static void the_tokens_option_overrides_the_payload(void **state)
{
    struct corral_estimate e;
    estimate("{\"max_tokens\":100000,\"model\":\"m\"}", 4, 1200, &e);
    assert_int_equal(e.source, CORRAL_ESTIMATE_OPTION);
    assert_int_equal(e.input_tokens, 1200);
    assert_int_equal(e.output_tokens, 0);
    assert_int_equal(corral_estimate_total(&e), 1200);
    assert_string_equal(e.model, "m");
}

static void a_model_name_that_is_odd_is_not_kept(void **state)
{
    struct corral_estimate e;
    estimate("{\"model\":\"a b\"}", 4, 0, &e);
    assert_string_equal(e.model, "");
    estimate("{\"model\":5}", 4, 0, &e);
    assert_string_equal(e.model, "");
    char big[300];
    memset(big, 'm', sizeof(big));
    memcpy(big, "{\"model\":\"", 10);
    memcpy(big + sizeof(big) - 3, "\"}", 3);
    estimate(big, 4, 0, &e);
    assert_string_equal(e.model, "");
}

static void a_huge_tokens_option_stays_within_the_cap(void **state)
{
    struct corral_estimate e;
    corral_tokens_estimate(NULL, 0, 4, INT64_MAX, &e);
    assert_int_equal(e.input_tokens, CORRAL_TOKENS_MAX);
}

static void the_tokens_option_is_a_positive_whole_number(void **state)
{
    static const char *const good[] = {"1", "1200", "1000000000", "12.0", "1e3", " 7 "};
    static const int64_t want[] = {1, 1200, 1000000000, 12, 1000, 7};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t t = 0;
        struct corral_err err;
        assert_int_equal(corral_tokens_option_parse("q", good[i], strlen(good[i]), &t, &err), 0);
        assert_int_equal(t, want[i]);
    }
}

static void a_bad_tokens_option_is_refused_naming_queue_and_value(void **state)
{
    static const char *const bad[] = {"0",   "-5",   "1.5",        "\"12\"", "true", "null",
                                      "[1]", "1e10", "1000000001", "",       "x",    "1e400"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t t = 77;
        struct corral_err err;
        assert_int_equal(corral_tokens_option_parse("prompts", bad[i], strlen(bad[i]), &t, &err),
                         -1);
        assert_int_equal(t, 77);
        assert_int_equal(err.code, CORRAL_ERR_INVALID);
        assert_non_null(strstr(err.msg, "queue \"prompts\": tokens must be a whole number from 1 "
                                        "to 1000000000, got "));
    }
    struct corral_err err;
    int64_t t;
    assert_int_equal(corral_tokens_option_parse("q", "-5", 2, &t, &err), -1);
    assert_non_null(strstr(err.msg, "got -5"));
    assert_int_equal(corral_tokens_option_parse("q", "\"a\x01\xff\"", 5, &t, &err), -1);
    assert_non_null(strstr(err.msg, "got \"a??\""));
    char big[200];
    memset(big, '9', sizeof(big));
    assert_int_equal(corral_tokens_option_parse("q", big, sizeof(big), &t, &err), -1);
    assert_non_null(strstr(err.msg, "..."));
    assert_true(strlen(err.msg) < 150);
    assert_string_equal(CORRAL_TOKENS_WORD, "BADTOKENS");
}

static void the_c_api_tokens_option_is_checked_before_sending(void **state)
{
    struct corral_err err;
    assert_int_equal(corral_tokens_option_check("q", 0, &err), 0); /* not given */
    assert_int_equal(corral_tokens_option_check("q", 5, &err), 0);
    assert_int_equal(corral_tokens_option_check("q", -1, &err), -1);
    assert_non_null(strstr(err.msg, "queue \"q\": tokens must be a whole number"));
    assert_int_equal(corral_tokens_option_check("q", CORRAL_TOKENS_MAX + 1, &err), -1);
}

static void a_job_above_the_whole_budget_can_never_fit(void **state)
{
    struct corral_service_conf sv;
    memset(&sv, 0, sizeof(sv));
    sv.name = "openai";
    struct corral_estimate e = {.input_tokens = 6000, .output_tokens = 3000};
    char why[256];
    assert_int_equal(corral_tokens_never_fits(&sv, &e, why, sizeof(why)), 0);
    sv.tokens_count = 9000;
    sv.tokens_period_ms = 60000;
    assert_int_equal(corral_tokens_never_fits(&sv, &e, why, sizeof(why)), 0); /* exactly fits */
    sv.tokens_count = 8999;
    assert_int_equal(corral_tokens_never_fits(&sv, &e, why, sizeof(why)), 1);
    assert_string_equal(why, "the estimate of 9000 tokens is above the budget of 8999 tokens per "
                             "1m0s (service openai)");
}

static void a_job_costing_more_than_the_spend_budget_can_never_fit(void **state)
{
    struct corral_price line = {"gpt-4o", 2500000000LL, 10000000000LL};
    struct corral_service_conf sv;
    memset(&sv, 0, sizeof(sv));
    sv.name = "openai";
    sv.prices.items = &line;
    sv.prices.n = 1;
    sv.budget_nano = 50000000; /* 0.05 per day */
    sv.budget_period_ms = 86400000;
    /* 6000 in at 2.5/M + 3000 out at 10/M = 0.045: fits */
    struct corral_estimate e = {.input_tokens = 6000, .output_tokens = 3000, .model = "gpt-4o"};
    char why[256];
    assert_int_equal(corral_tokens_never_fits(&sv, &e, why, sizeof(why)), 0);
    e.output_tokens = 4000; /* 0.055 */
    assert_int_equal(corral_tokens_never_fits(&sv, &e, why, sizeof(why)), 1);
    assert_string_equal(why, "the estimated cost of 0.055 is above the spend budget of 0.05 per "
                             "24h0m (service openai)");
    /* another model, unpriced at the service: costs 0, always fits */
    strcpy(e.model, "o3");
    assert_int_equal(corral_tokens_never_fits(&sv, &e, why, sizeof(why)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_estimate_is_the_output_cap_plus_size_over_bytes_per_token),
        cmocka_unit_test(every_provider_spelling_of_the_output_cap_counts_and_the_largest_wins),
        cmocka_unit_test(an_output_cap_that_is_not_a_sane_count_is_ignored),
        cmocka_unit_test(the_tokens_option_overrides_the_payload),
        cmocka_unit_test(a_model_name_that_is_odd_is_not_kept),
        cmocka_unit_test(a_huge_tokens_option_stays_within_the_cap),
        cmocka_unit_test(the_tokens_option_is_a_positive_whole_number),
        cmocka_unit_test(a_bad_tokens_option_is_refused_naming_queue_and_value),
        cmocka_unit_test(the_c_api_tokens_option_is_checked_before_sending),
        cmocka_unit_test(a_job_above_the_whole_budget_can_never_fit),
        cmocka_unit_test(a_job_costing_more_than_the_spend_budget_can_never_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

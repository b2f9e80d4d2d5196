/* Unit tests for money in nano-units: amounts and their text, budgets,
 * price lines, the exact cost of a call and which price a model gets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "corral/config.h"
#include "corral/cost.h"

static int64_t money(const char *s)
{
    int64_t v = -1;
    struct corral_err err;
    if (corral_money_parse(s, CORRAL_PRICE_MAX_NANO, &v, &err) < 0)
        return -1;
    return v;
}

static void amounts_read_as_exact_nano_units(void **state)
{
    assert_int_equal(money("2.5"), 2500000000LL);
    assert_int_equal(money("0.0375"), 37500000LL);
    assert_int_equal(money("15"), 15000000000LL);
    assert_int_equal(money("0"), 0);
    assert_int_equal(money("0.000000001"), 1);
    assert_int_equal(money("007.10"), 7100000000LL);
    assert_int_equal(money("1.5000000000000"), 1500000000LL); /* zeros past 9 decimals */
    assert_int_equal(money("1000000"), CORRAL_PRICE_MAX_NANO);
}

static void malformed_amounts_are_refused_with_the_value_named(void **state)
{
    static const char *const bad[] = {"",   "-1", "+1", "1e3",   ".5",  "5.",           "1,5",
                                      "1 ", " 1", "$1", "1.2.3", "abc", "0.0000000001", "NaN"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t v = 42;
        struct corral_err err;
        assert_int_equal(corral_money_parse(bad[i], CORRAL_PRICE_MAX_NANO, &v, &err), -1);
        assert_int_equal(v, 42);
        assert_non_null(strstr(err.msg, "expected an amount"));
        char got[64];
        snprintf(got, sizeof(got), "(got \"%s\")", bad[i]);
        assert_non_null(strstr(err.msg, got));
    }
}

static void amounts_above_the_bound_are_refused_without_overflow(void **state)
{
    struct corral_err err;
    int64_t v = 0;
    assert_int_equal(corral_money_parse("1000000.000000001", CORRAL_PRICE_MAX_NANO, &v, &err), -1);
    assert_non_null(strstr(err.msg, "must be at most 1000000"));
    assert_int_equal(
        corral_money_parse("99999999999999999999999999999", CORRAL_PRICE_MAX_NANO, &v, &err), -1);
    assert_non_null(strstr(err.msg, "must be at most"));
}

static void formatted_amounts_read_back_the_same(void **state)
{
    static const int64_t values[] = {
        0, 1, 37500000, 2500000000LL, 15000000000LL, 123456789, CORRAL_BUDGET_MAX_NANO};
    static const char *const text[] = {"0",  "0.000000001", "0.0375",    "2.5",
                                       "15", "0.123456789", "1000000000"};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char buf[48];
        corral_money_format(values[i], buf, sizeof(buf));
        assert_string_equal(buf, text[i]);
        int64_t back = -1;
        assert_int_equal(corral_money_parse(buf, CORRAL_BUDGET_MAX_NANO, &back, NULL), 0);
        assert_int_equal(back, values[i]);
    }
    char buf[48];
    corral_money_format(-1500000000LL, buf, sizeof(buf));
    assert_string_equal(buf, "-1.5");
}

static void budgets_read_amount_and_period(void **state)
{
    int64_t nano = 0, period = 0;
    struct corral_err err;
    assert_int_equal(corral_money_rate_parse("20/d", &nano, &period, &err), 0);
    assert_int_equal(nano, 20 * CORRAL_NANO);
    assert_int_equal(period, 86400000);
    assert_int_equal(corral_money_rate_parse("0.5/h", &nano, &period, &err), 0);
    assert_int_equal(nano, CORRAL_NANO / 2);
    assert_int_equal(period, 3600000);
    assert_int_equal(corral_money_rate_parse("100/30d", &nano, &period, &err), 0);
    assert_int_equal(period, 30 * 86400000LL);
    assert_int_equal(corral_money_rate_parse("20", &nano, &period, &err), -1);
    assert_non_null(strstr(err.msg, "expected AMOUNT/PERIOD"));
    assert_int_equal(corral_money_rate_parse("20/fortnight", &nano, &period, &err), -1);
    assert_non_null(strstr(err.msg, "expected AMOUNT/PERIOD"));
    assert_int_equal(corral_money_rate_parse("/d", &nano, &period, &err), -1);
    assert_int_equal(corral_money_rate_parse("0/d", &nano, &period, &err), -1);
    assert_non_null(strstr(err.msg, "must be above 0"));
    assert_int_equal(corral_money_rate_parse("lots/d", &nano, &period, &err), -1);
    assert_non_null(strstr(err.msg, "the amount: expected an amount"));
}

static void price_lines_name_a_model_and_two_prices(void **state)
{
    char model[CORRAL_MODEL_MAX + 1];
    int64_t in = 0, out = 0;
    struct corral_err err;
    assert_int_equal(
        corral_price_line_parse("gpt-4o-mini 0.15 0.6", model, sizeof(model), &in, &out, &err), 0);
    assert_string_equal(model, "gpt-4o-mini");
    assert_int_equal(in, 150000000);
    assert_int_equal(out, 600000000);
    assert_int_equal(corral_price_line_parse("  claude-3-5-haiku\t0.8   4 ", model, sizeof(model),
                                             &in, &out, &err),
                     0);
    assert_string_equal(model, "claude-3-5-haiku");
    assert_int_equal(out, 4 * CORRAL_NANO);
    assert_int_equal(corral_price_line_parse("gpt-4o 1", model, sizeof(model), &in, &out, &err),
                     -1);
    assert_non_null(strstr(err.msg, "expected MODEL INPUT OUTPUT"));
    assert_int_equal(corral_price_line_parse("gpt-4o 1 2 3", model, sizeof(model), &in, &out, &err),
                     -1);
    assert_int_equal(corral_price_line_parse("gpt-4o x 2", model, sizeof(model), &in, &out, &err),
                     -1);
    assert_non_null(strstr(err.msg, "the input price: expected an amount"));
    assert_int_equal(corral_price_line_parse("gpt-4o 1 -2", model, sizeof(model), &in, &out, &err),
                     -1);
    assert_non_null(strstr(err.msg, "the output price"));
    assert_int_equal(corral_price_line_parse("gpt\x01x 1 2", model, sizeof(model), &in, &out, &err),
                     -1);
    assert_non_null(strstr(err.msg, "printable ASCII"));
}

static void a_call_costs_tokens_times_price_per_million_exactly(void **state)
{
    /* 1200 in at 2.5/M, 300 out at 10/M: 0.003 + 0.003 = 0.006 */
    assert_int_equal(corral_cost_nano(1200, 300, 2500000000LL, 10000000000LL), 6000000);
    /* 1 token at 0.0375/M is 37.5 nano: rounded once, half up */
    assert_int_equal(corral_cost_nano(1, 0, 37500000, 0), 38);
    assert_int_equal(corral_cost_nano(3, 0, 37500000, 0), 113); /* 112.5 */
    /* both remainders are added before the one rounding: 0.4 + 0.4 = 0.8 -> 1 */
    assert_int_equal(corral_cost_nano(1, 1, 400000, 400000), 1);
    assert_int_equal(corral_cost_nano(0, 0, 2500000000LL, 10000000000LL), 0);
    assert_int_equal(corral_cost_nano(1000, 1000, 0, 0), 0);
}

static void cost_bounds_hold_at_the_extremes(void **state)
{
    int64_t most = corral_cost_nano(CORRAL_TOKENS_MAX, CORRAL_TOKENS_MAX, CORRAL_PRICE_MAX_NANO,
                                    CORRAL_PRICE_MAX_NANO);
    assert_int_equal(most, 2 * CORRAL_TOKENS_MAX * (CORRAL_PRICE_MAX_NANO / 1000000));
    assert_int_equal(corral_cost_nano(INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX), most);
    assert_int_equal(corral_cost_nano(-5, -5, -1, -1), 0);
}

static void a_ledger_of_call_costs_sums_exactly(void **state)
{
    /* A million calls of 17 input and 3 output tokens at prices that leave
     * remainders: each call is rounded once, so the ledger is the call's
     * cost times a million to the nano-unit, whatever order it is summed in. */
    int64_t one = corral_cost_nano(17, 3, 37500000, 150000000);
    assert_int_equal(one, 1088); /* 637.5 + 450 = 1087.5 */
    int64_t sum = 0;
    for (int i = 0; i < 1000000; i++)
        sum += corral_cost_nano(17, 3, 37500000, 150000000);
    assert_int_equal(sum, 1088000000LL);
}

static void dated_model_names_match_their_price_line_but_longer_names_do_not(void **state)
{
    assert_true(corral_model_matches("gpt-4o", "gpt-4o"));
    assert_true(corral_model_matches("gpt-4o", "gpt-4o-2024-08-06"));
    assert_true(corral_model_matches("claude-3-5-haiku", "claude-3-5-haiku-20241022"));
    assert_false(corral_model_matches("gpt-4o", "gpt-4o-mini"));
    assert_false(corral_model_matches("gpt-4o", "gpt-4o-mini-2024-07-18"));
    assert_false(corral_model_matches("gpt-4o", "gpt-4"));
    assert_false(corral_model_matches("gpt-4o", "gpt-4o-2024-08"));
    assert_false(corral_model_matches("gpt-4o", "gpt-4o-2024x08-06"));
    assert_false(corral_model_matches("", "gpt-4o"));
    assert_false(corral_model_matches("gpt-4o", NULL));
}

static void the_model_in_the_answer_picks_the_price_else_the_service_price(void **state)
{
    struct corral_price lines[] = {
        {"gpt-4o", 2500000000LL, 10000000000LL},
        {"gpt-4o-mini", 150000000, 600000000},
        {"gpt-4o-mini-2024-07-18", 100000000, 400000000},
    };
    struct corral_service_conf sv;
    memset(&sv, 0, sizeof(sv));
    sv.prices.items = lines;
    sv.prices.n = 3;
    sv.price_input_nano = 5 * CORRAL_NANO;
    sv.price_output_nano = 15 * CORRAL_NANO;
    int64_t in, out;
    assert_int_equal(corral_price_for(&sv, "gpt-4o-mini", &in, &out), 1);
    assert_int_equal(in, 150000000);
    /* an exact line beats a dated match of an earlier line */
    assert_int_equal(corral_price_for(&sv, "gpt-4o-mini-2024-07-18", &in, &out), 1);
    assert_int_equal(in, 100000000);
    assert_int_equal(corral_price_for(&sv, "gpt-4o-2024-08-06", &in, &out), 1);
    assert_int_equal(in, 2500000000LL);
    assert_int_equal(corral_price_for(&sv, "o3", &in, &out), 0);
    assert_int_equal(in, 5 * CORRAL_NANO);
    assert_int_equal(out, 15 * CORRAL_NANO);
    assert_int_equal(corral_price_for(&sv, NULL, &in, &out), 0);
    assert_int_equal(corral_price_for(&sv, "", &in, &out), 0);
    assert_int_equal(out, 15 * CORRAL_NANO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(amounts_read_as_exact_nano_units),
        cmocka_unit_test(malformed_amounts_are_refused_with_the_value_named),
        cmocka_unit_test(amounts_above_the_bound_are_refused_without_overflow),
        cmocka_unit_test(formatted_amounts_read_back_the_same),
        cmocka_unit_test(budgets_read_amount_and_period),
        cmocka_unit_test(price_lines_name_a_model_and_two_prices),
        cmocka_unit_test(a_call_costs_tokens_times_price_per_million_exactly),
        cmocka_unit_test(cost_bounds_hold_at_the_extremes),
        cmocka_unit_test(a_ledger_of_call_costs_sums_exactly),
        cmocka_unit_test(dated_model_names_match_their_price_line_but_longer_names_do_not),
        cmocka_unit_test(the_model_in_the_answer_picks_the_price_else_the_service_price),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

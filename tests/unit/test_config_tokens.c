/* Unit tests for the [service] keys of token budgets, usage and cost
 * (docs/tokens.md): tokens, bytes_per_token, price_input, price_output,
 * price lines and budget; their errors with file and line, the checks that
 * span them, and the --check dump, which must load back the same. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config_harness.h"
#include "corral/config.h"
#include "corral/cost.h"

#define SVC "[service s]\nurl = http://127.0.0.1:9/v1\n"

/* Loads text that must fail with exactly this one error line. */
static void load_fails_with_only(const char *text, const char *want)
{
    struct corral_config_errors errs;
    struct corral_config *cfg = corral_config_load_string(text, "t.conf", &errs);
    assert_null(cfg);
    if (errs.n != 1 || strcmp(errs.lines[0], want) != 0) {
        fprintf(stderr, "wanted only: %s\n", want);
        print_errors(&errs);
    }
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.lines[0], want);
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

static void token_keys_are_unset_by_default_and_bytes_per_token_is_4(void **state)
{
    struct corral_config *cfg = load_ok(SVC);
    const struct corral_service_conf *sv = &cfg->services[0];
    assert_int_equal(sv->tokens_count, 0);
    assert_int_equal(sv->bytes_per_token, 4);
    assert_int_equal(sv->price_input_nano, 0);
    assert_int_equal(sv->price_output_nano, 0);
    assert_int_equal(sv->prices.n, 0);
    assert_int_equal(sv->budget_nano, 0);
    /* nothing unset shows in the dump but bytes_per_token */
    char *text = dump_to_string(cfg);
    assert_non_null(strstr(text, "bytes_per_token = 4\n"));
    assert_null(strstr(text, "tokens ="));
    assert_null(strstr(text, "price"));
    assert_null(strstr(text, "budget"));
    free(text);
    corral_config_free(cfg);
}

static void token_keys_read_into_their_units(void **state)
{
    struct corral_config *cfg =
        load_ok(SVC "tokens = 90000/m\nbytes_per_token = 3\nprice_input = 2.5\n"
                    "price_output = 10\nprice = gpt-4o-mini 0.15 0.6\n"
                    "price = claude-3-5-haiku 0.8 4\nbudget = 20/d\n");
    const struct corral_service_conf *sv = &cfg->services[0];
    assert_int_equal(sv->tokens_count, 90000);
    assert_int_equal(sv->tokens_period_ms, 60000);
    assert_int_equal(sv->bytes_per_token, 3);
    assert_int_equal(sv->price_input_nano, 2500000000LL);
    assert_int_equal(sv->price_output_nano, 10000000000LL);
    assert_int_equal(sv->prices.n, 2);
    assert_string_equal(sv->prices.items[0].model, "gpt-4o-mini");
    assert_int_equal(sv->prices.items[0].input_nano, 150000000);
    assert_int_equal(sv->prices.items[0].output_nano, 600000000);
    assert_string_equal(sv->prices.items[1].model, "claude-3-5-haiku");
    assert_int_equal(sv->prices.items[1].output_nano, 4 * CORRAL_NANO);
    assert_int_equal(sv->budget_nano, 20 * CORRAL_NANO);
    assert_int_equal(sv->budget_period_ms, 86400000);
    corral_config_free(cfg);
}

static void a_malformed_token_budget_is_named_with_its_line(void **state)
{
    load_fails_with_only(SVC "tokens = lots\n",
                         "t.conf:3: [service s] tokens: expected a rate like 500/m, 10/s, 100/5s "
                         "or 1000/h (got \"lots\")");
    load_fails_with_only(SVC "tokens = 0/m\n",
                         "t.conf:3: [service s] tokens: expected a rate like 500/m, 10/s, 100/5s "
                         "or 1000/h (got \"0/m\")");
    load_fails_with_only(SVC "tokens = 100/2d\n",
                         "t.conf:3: [service s] tokens: the period must be at most 1d (got "
                         "\"100/2d\")");
}

static void bytes_per_token_is_a_whole_number_from_1_to_64(void **state)
{
    load_fails_with_only(SVC "bytes_per_token = 0\n",
                         "t.conf:3: [service s] bytes_per_token: must be from 1 to 64 (got \"0\")");
    load_fails_with_only(SVC "bytes_per_token = 3.5\n",
                         "t.conf:3: [service s] bytes_per_token: expected a whole number (got "
                         "\"3.5\")");
}

static void a_malformed_price_is_named_with_its_line(void **state)
{
    load_fails_with_only(SVC "price_input = -1\n",
                         "t.conf:3: [service s] price_input: expected an amount like 2.5, 0.0375 "
                         "or 15 (at most 9 decimals) (got \"-1\")");
    load_fails_with_only(SVC "price_output = $10\n",
                         "t.conf:3: [service s] price_output: expected an amount like 2.5, 0.0375 "
                         "or 15 (at most 9 decimals) (got \"$10\")");
    load_fails_with_only(SVC "price_input = 0.0000000001\n",
                         "t.conf:3: [service s] price_input: expected an amount like 2.5, 0.0375 "
                         "or 15 (at most 9 decimals) (got \"0.0000000001\")");
    load_fails_with_only(SVC "price_input = 1000001\n",
                         "t.conf:3: [service s] price_input: must be at most 1000000 (got "
                         "\"1000001\")");
}

static void a_malformed_price_line_is_named_with_its_line(void **state)
{
    load_fails_with_only(SVC "price = gpt-4o 2.5\n",
                         "t.conf:3: [service s] price: expected MODEL INPUT OUTPUT like "
                         "gpt-4o-mini 0.15 0.6 (got \"gpt-4o 2.5\")");
    load_fails_with_only(SVC "price = gpt-4o 2.5 ten\n",
                         "t.conf:3: [service s] price: the output price: expected an amount like "
                         "2.5, 0.0375 or 15 (at most 9 decimals) (got \"ten\")");
    load_fails_with_only(SVC "price = gpt-4o 2.5 10\nprice = o3 2 8\nprice = gpt-4o 3 12\n",
                         "t.conf:5: [service s] price: model gpt-4o has a price line already "
                         "(got \"gpt-4o 3 12\")");
}

static void price_lines_repeat_but_other_token_keys_do_not(void **state)
{
    struct corral_config *cfg = load_ok(SVC "price = a 1 2\nprice = b 3 4\nprice = c 5 6\n");
    assert_int_equal(cfg->services[0].prices.n, 3);
    assert_string_equal(cfg->services[0].prices.items[2].model, "c");
    corral_config_free(cfg);
    load_fails_with_only(SVC "price_input = 1\nprice_input = 2\n",
                         "t.conf:4: [service s] price_input: set twice (first on line 3)");
    load_fails_with_only(SVC "budget = 1/d\nprice_input = 1\nbudget = 2/d\n",
                         "t.conf:5: [service s] budget: set twice (first on line 3)");
}

static void a_malformed_budget_is_named_with_its_line(void **state)
{
    load_fails_with_only(SVC "price_input = 1\nbudget = 20\n",
                         "t.conf:4: [service s] budget: expected AMOUNT/PERIOD like 20/d, 0.5/h "
                         "or 100/30d (got \"20\")");
    load_fails_with_only(SVC "price_input = 1\nbudget = 0/d\n",
                         "t.conf:4: [service s] budget: the amount must be above 0 (leave the key "
                         "out for no budget) (got \"0/d\")");
    load_fails_with_only(SVC "price_input = 1\nbudget = 5/400d\n",
                         "t.conf:4: [service s] budget: the period must be at most 366d (got "
                         "\"5/400d\")");
    load_fails_with_only(SVC "price_input = 1\nbudget = five/d\n",
                         "t.conf:4: [service s] budget: the amount: expected an amount like 2.5, "
                         "0.0375 or 15 (at most 9 decimals) (got \"five\")");
}

static void a_budget_without_any_price_is_named(void **state)
{
    load_fails_with_only(SVC "budget = 5/d\n",
                         "t.conf:3: [service s] budget: no price is set (price_input, "
                         "price_output or price lines), so every call costs 0 and the budget "
                         "never applies (got \"5/1d\")");
    /* a price line is a price */
    struct corral_config *cfg = load_ok(SVC "budget = 5/d\nprice = gpt-4o 2.5 10\n");
    corral_config_free(cfg);
}

static void a_budget_smaller_than_one_token_of_any_job_is_named(void **state)
{
    /* every job is at least one input token: at 2.5 per million that is
     * 0.0000025, above a budget of 0.000001 */
    load_fails_with_only(SVC "price_input = 2.5\nbudget = 0.000001/m\n",
                         "t.conf:4: [service s] budget: a single input token costs 0.0000025 at "
                         "the lowest input price, more than the whole budget, so no job could "
                         "ever run (got \"0.000001/1m\")");
    /* a model priced at 0 input can always run */
    struct corral_config *cfg =
        load_ok(SVC "price_input = 2.5\nprice = free 0 1\nbudget = 0.000001/m\n");
    corral_config_free(cfg);
    /* the check stays quiet when a price it needs was refused */
    load_fails_with_only(SVC "price_input = x\nbudget = 0.000001/m\n",
                         "t.conf:3: [service s] price_input: expected an amount like 2.5, 0.0375 "
                         "or 15 (at most 9 decimals) (got \"x\")");
}

static void token_keys_dump_and_load_back_the_same(void **state)
{
    struct corral_config *a =
        load_ok(SVC "tokens = 250000/5m\nbytes_per_token = 3\nprice_input = 0.0375\n"
                    "price_output = 0.15\nprice =   gpt-4o-mini   0.15\t0.600 \n"
                    "price = claude-3-5-haiku 0.8 4\nbudget = 0.5/h\n"
                    "[service t]\nurl = https://h/\nprice = m 1 1\nbudget = 100/30d\n");
    char *text_a = dump_to_string(a);
    assert_non_null(strstr(text_a, "tokens = 250000/5m\n"));
    assert_non_null(strstr(text_a, "price_input = 0.0375\n"));
    assert_non_null(strstr(text_a, "price_output = 0.15\n"));
    assert_non_null(strstr(text_a, "price = gpt-4o-mini 0.15 0.6\n"));
    assert_non_null(strstr(text_a, "price = claude-3-5-haiku 0.8 4\n"));
    assert_non_null(strstr(text_a, "budget = 0.5/h\n"));
    assert_non_null(strstr(text_a, "budget = 100/30d\n"));
    struct corral_config *b = load_ok(text_a);
    char *text_b = dump_to_string(b);
    assert_string_equal(strchr(text_a, '\n'), strchr(text_b, '\n'));
    const struct corral_service_conf *sv = &b->services[0];
    assert_int_equal(sv->tokens_count, 250000);
    assert_int_equal(sv->tokens_period_ms, 300000);
    assert_int_equal(sv->price_input_nano, 37500000);
    assert_int_equal(sv->prices.n, 2);
    assert_int_equal(sv->budget_nano, CORRAL_NANO / 2);
    assert_int_equal(b->services[1].budget_period_ms, 30 * 86400000LL);
    free(text_a);
    free(text_b);
    corral_config_free(a);
    corral_config_free(b);
}

static void a_longest_price_line_dumps_within_a_line(void **state)
{
    char model[CORRAL_MODEL_MAX + 1];
    memset(model, 'm', CORRAL_MODEL_MAX);
    model[CORRAL_MODEL_MAX] = '\0';
    char text[512];
    snprintf(text, sizeof(text), SVC "price = %s 999999.999999999 1000000\n", model);
    struct corral_config *a = load_ok(text);
    char *dump = dump_to_string(a);
    struct corral_config *b = load_ok(dump);
    assert_int_equal(b->services[0].prices.n, 1);
    assert_string_equal(b->services[0].prices.items[0].model, model);
    assert_int_equal(b->services[0].prices.items[0].input_nano, 999999999999999LL);
    free(dump);
    corral_config_free(a);
    corral_config_free(b);
    snprintf(text, sizeof(text), SVC "price = %sm 1 1\n", model);
    char want[512];
    snprintf(want, sizeof(want),
             "t.conf:3: [service s] price: the model name is at most 128 bytes (got \"%sm 1 "
             "1\")",
             model);
    load_fails_with_only(text, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(token_keys_are_unset_by_default_and_bytes_per_token_is_4),
        cmocka_unit_test(token_keys_read_into_their_units),
        cmocka_unit_test(a_malformed_token_budget_is_named_with_its_line),
        cmocka_unit_test(bytes_per_token_is_a_whole_number_from_1_to_64),
        cmocka_unit_test(a_malformed_price_is_named_with_its_line),
        cmocka_unit_test(a_malformed_price_line_is_named_with_its_line),
        cmocka_unit_test(price_lines_repeat_but_other_token_keys_do_not),
        cmocka_unit_test(a_malformed_budget_is_named_with_its_line),
        cmocka_unit_test(a_budget_without_any_price_is_named),
        cmocka_unit_test(a_budget_smaller_than_one_token_of_any_job_is_named),
        cmocka_unit_test(token_keys_dump_and_load_back_the_same),
        cmocka_unit_test(a_longest_price_line_dumps_within_a_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for usage from AI answers (OpenAI chat and Responses,
 * Anthropic; whole and streamed), the settlement of a call against its
 * estimate, and the record's JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "usage.h"

static struct corral_usage body(const char *text)
{
    struct corral_usage u;
    corral_usage_init(&u);
    corral_usage_from_body(&u, text, strlen(text));
    return u;
}

static void event(struct corral_usage *u, const char *data)
{
    json_t *root = json_loads(data, 0, NULL);
    assert_non_null(root);
    corral_usage_from_event(u, root);
    json_decref(root);
}

static void openai_chat_usage_is_prompt_and_completion_tokens(void **state)
{
    struct corral_usage u = body("{\"id\":\"c\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[],"
                                 "\"usage\":{\"prompt_tokens\":1200,\"completion_tokens\":300,"
                                 "\"total_tokens\":1500,\"prompt_tokens_details\":"
                                 "{\"cached_tokens\":1024}}}");
    assert_int_equal(u.input_tokens, 1200); /* cached tokens are inside prompt_tokens */
    assert_int_equal(u.output_tokens, 300);
    assert_string_equal(u.model, "gpt-4o-2024-08-06");
    assert_false(u.bad);
}

static void responses_and_anthropic_usage_is_input_and_output_tokens(void **state)
{
    struct corral_usage u =
        body("{\"object\":\"response\",\"model\":\"gpt-4.1\",\"usage\":"
             "{\"input_tokens\":36,\"output_tokens\":87,\"total_tokens\":123}}");
    assert_int_equal(u.input_tokens, 36);
    assert_int_equal(u.output_tokens, 87);
    assert_string_equal(u.model, "gpt-4.1");
    /* Anthropic leaves cache writes and reads out of input_tokens */
    u = body("{\"type\":\"message\",\"model\":\"claude-3-5-haiku-20241022\",\"usage\":"
             "{\"input_tokens\":25,\"cache_creation_input_tokens\":100,"
             "\"cache_read_input_tokens\":1000,\"output_tokens\":15}}");
    assert_int_equal(u.input_tokens, 1125);
    assert_int_equal(u.output_tokens, 15);
    assert_string_equal(u.model, "claude-3-5-haiku-20241022");
    u = body("{\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":null,"
             "\"output_tokens\":1}}");
    assert_int_equal(u.input_tokens, 25);
    assert_false(u.bad);
}

static void an_answer_without_usage_leaves_the_counts_unknown(void **state)
{
    static const char *const none[] = {
        "{\"choices\":[]}",
        "{\"usage\":null}",
        "{\"usage\":{}}",
        "not json",
        "",
        "[1,2]",
        "{\"usage\":{\"total_tokens\":5}}",
    };
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        struct corral_usage u = body(none[i]);
        assert_int_equal(u.input_tokens, -1);
        assert_int_equal(u.output_tokens, -1);
        assert_false(u.bad);
    }
}

static void usage_that_is_not_a_sane_count_is_not_believed(void **state)
{
    static const char *const bad[] = {
        "{\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":-5}}",
        "{\"usage\":{\"prompt_tokens\":\"12\",\"completion_tokens\":\"3\"}}",
        "{\"usage\":{\"prompt_tokens\":1.5,\"completion_tokens\":2.0}}",
        "{\"usage\":{\"prompt_tokens\":1000000001,\"completion_tokens\":true}}",
        "{\"usage\":{\"input_tokens\":[1],\"output_tokens\":{}}}",
        "{\"usage\":{\"input_tokens\":600000000,\"cache_read_input_tokens\":600000000,"
        "\"output_tokens\":-1}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct corral_usage u = body(bad[i]);
        assert_int_equal(u.input_tokens, -1);
        assert_int_equal(u.output_tokens, -1);
        assert_true(u.bad);
    }
    struct corral_usage u = body("{\"usage\":\"lots\"}");
    assert_true(u.bad);
    /* a huge integer jansson cannot hold: the body is not read at all */
    u = body("{\"usage\":{\"prompt_tokens\":99999999999999999999999,\"completion_tokens\":1}}");
    assert_int_equal(u.output_tokens, -1);
    /* one bad count, one good: the good one is kept, the answer flagged */
    u = body("{\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":-3}}");
    assert_int_equal(u.input_tokens, 10);
    assert_int_equal(u.output_tokens, -1);
    assert_true(u.bad);
}

static void odd_model_names_are_not_kept(void **state)
{
    assert_string_equal(body("{\"model\":\"a b\"}").model, "");
    assert_string_equal(body("{\"model\":\"a\\nb\"}").model, "");
    assert_string_equal(body("{\"model\":\"\"}").model, "");
    assert_string_equal(body("{\"model\":7}").model, "");
    char big[300];
    memset(big, 'x', sizeof(big));
    memcpy(big, "{\"model\":\"", 10);
    memcpy(big + sizeof(big) - 3, "\"}", 3);
    assert_string_equal(body(big).model, "");
}

static void an_openai_chat_stream_takes_usage_from_its_last_chunk(void **state)
{
    struct corral_usage u;
    corral_usage_init(&u);
    event(&u,
          "{\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],"
          "\"usage\":null}");
    assert_int_equal(u.input_tokens, -1);
    event(&u, "{\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":"
              "{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}");
    assert_int_equal(u.input_tokens, 9);
    assert_int_equal(u.output_tokens, 2);
    assert_string_equal(u.model, "gpt-4o-mini-2024-07-18");
}

static void
an_anthropic_stream_takes_input_from_message_start_and_output_from_message_delta(void **state)
{
    struct corral_usage u;
    corral_usage_init(&u);
    event(&u, "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":"
              "\"claude-sonnet-4-20250514\",\"usage\":{\"input_tokens\":472,"
              "\"cache_read_input_tokens\":28,\"output_tokens\":2}}}");
    assert_int_equal(u.input_tokens, 500);
    assert_int_equal(u.output_tokens, -1); /* message_start's output is a placeholder */
    assert_string_equal(u.model, "claude-sonnet-4-20250514");
    event(&u, "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
              "\"text\":\"Hello\"}}");
    event(&u, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
              "\"usage\":{\"output_tokens\":15}}");
    assert_int_equal(u.input_tokens, 500);
    assert_int_equal(u.output_tokens, 15);
    /* message_delta's counts are running totals: a second one replaces, never adds */
    event(&u, "{\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":17}}");
    assert_int_equal(u.output_tokens, 17);
    event(&u, "{\"type\":\"message_stop\"}");
    assert_int_equal(u.input_tokens, 500);
    assert_int_equal(u.output_tokens, 17);
    assert_false(u.bad);
}

static void a_responses_stream_takes_usage_from_response_completed(void **state)
{
    struct corral_usage u;
    corral_usage_init(&u);
    event(&u,
          "{\"type\":\"response.created\",\"response\":{\"model\":\"gpt-4.1\",\"usage\":null}}");
    event(&u, "{\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}");
    assert_int_equal(u.input_tokens, -1);
    event(&u, "{\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-4.1-2025-04-14\","
              "\"usage\":{\"input_tokens\":20,\"output_tokens\":5}}}");
    assert_int_equal(u.input_tokens, 20);
    assert_int_equal(u.output_tokens, 5);
    assert_string_equal(u.model, "gpt-4.1-2025-04-14");
}

static void the_same_usage_reported_twice_is_counted_once(void **state)
{
    struct corral_usage u;
    corral_usage_init(&u);
    const char *last = "{\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}";
    event(&u, last);
    event(&u, last);
    assert_int_equal(u.input_tokens, 9);
    assert_int_equal(u.output_tokens, 2);
    corral_usage_from_body(&u, last, strlen(last));
    assert_int_equal(u.input_tokens, 9);
}

static void settlement_takes_the_answers_counts_and_prices_its_model(void **state)
{
    struct corral_price line = {"gpt-4o", 2500000000LL, 10000000000LL};
    struct corral_service_conf sv;
    memset(&sv, 0, sizeof(sv));
    sv.prices.items = &line;
    sv.prices.n = 1;
    struct corral_estimate est = {.input_tokens = 2000, .output_tokens = 500, .model = "gpt-4o"};
    struct corral_usage u = body("{\"model\":\"gpt-4o-2024-08-06\",\"usage\":"
                                 "{\"prompt_tokens\":1200,\"completion_tokens\":300}}");
    struct corral_job_usage ju;
    corral_usage_settle(&u, &est, &sv, &ju);
    assert_int_equal(ju.input_tokens, 1200);
    assert_int_equal(ju.output_tokens, 300);
    assert_false(ju.estimated);
    assert_string_equal(ju.model, "gpt-4o-2024-08-06");
    assert_int_equal(ju.cost_nano, 6000000); /* 0.003 + 0.003 */
    char *json = corral_job_usage_json(&ju);
    assert_string_equal(json, "{\"input_tokens\":1200,\"output_tokens\":300,\"model\":"
                              "\"gpt-4o-2024-08-06\",\"estimated\":false,\"cost\":0.006,"
                              "\"cost_nano\":6000000}");
    free(json);
}

static void without_usage_the_estimate_stands_flagged_estimated(void **state)
{
    struct corral_service_conf sv;
    memset(&sv, 0, sizeof(sv));
    sv.price_input_nano = CORRAL_NANO;
    sv.price_output_nano = 2 * CORRAL_NANO;
    struct corral_estimate est = {.input_tokens = 2000, .output_tokens = 500, .model = "m1"};
    static const char *const answers[] = {
        "{\"choices\":[]}",
        "{\"usage\":{\"prompt_tokens\":-4,\"completion_tokens\":-1}}",
        "{\"usage\":{\"prompt_tokens\":\"x\",\"completion_tokens\":1e3}}",
        "garbage",
    };
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        struct corral_usage u = body(answers[i]);
        struct corral_job_usage ju;
        corral_usage_settle(&u, &est, &sv, &ju);
        assert_int_equal(ju.input_tokens, 2000);
        assert_int_equal(ju.output_tokens, 500);
        assert_true(ju.estimated);
        assert_string_equal(ju.model, "m1");
        assert_int_equal(ju.cost_nano, 3000000); /* 0.002 + 0.001 */
    }
    /* one count given, one not: each from where it is known, flagged */
    struct corral_usage u;
    corral_usage_init(&u);
    event(&u, "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":40,"
              "\"output_tokens\":1}}}");
    struct corral_job_usage ju;
    corral_usage_settle(&u, &est, NULL, &ju);
    assert_int_equal(ju.input_tokens, 40);
    assert_int_equal(ju.output_tokens, 500);
    assert_true(ju.estimated);
    assert_int_equal(ju.cost_nano, 0);
    char *json = corral_job_usage_json(&ju);
    assert_string_equal(json, "{\"input_tokens\":40,\"output_tokens\":500,\"model\":\"m1\","
                              "\"estimated\":true,\"cost\":0,\"cost_nano\":0}");
    free(json);
}

static void a_record_without_a_model_says_null(void **state)
{
    struct corral_usage u;
    corral_usage_init(&u);
    struct corral_estimate est = {.input_tokens = 3, .output_tokens = 0};
    struct corral_job_usage ju;
    corral_usage_settle(&u, &est, NULL, &ju);
    char *json = corral_job_usage_json(&ju);
    assert_non_null(strstr(json, "\"model\":null"));
    json_t *back = json_loads(json, 0, NULL);
    assert_non_null(back);
    json_decref(back);
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(openai_chat_usage_is_prompt_and_completion_tokens),
        cmocka_unit_test(responses_and_anthropic_usage_is_input_and_output_tokens),
        cmocka_unit_test(an_answer_without_usage_leaves_the_counts_unknown),
        cmocka_unit_test(usage_that_is_not_a_sane_count_is_not_believed),
        cmocka_unit_test(odd_model_names_are_not_kept),
        cmocka_unit_test(an_openai_chat_stream_takes_usage_from_its_last_chunk),
        cmocka_unit_test(
            an_anthropic_stream_takes_input_from_message_start_and_output_from_message_delta),
        cmocka_unit_test(a_responses_stream_takes_usage_from_response_completed),
        cmocka_unit_test(the_same_usage_reported_twice_is_counted_once),
        cmocka_unit_test(settlement_takes_the_answers_counts_and_prices_its_model),
        cmocka_unit_test(without_usage_the_estimate_stands_flagged_estimated),
        cmocka_unit_test(a_record_without_a_model_says_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for a call's tally (worker/settle.c): the settlement from a
 * whole answer, from a streamed one (its content type told by a header),
 * none for an unanswered call, the provider's token window from the
 * headers, token 429s, and the corral_settle arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "corral/queue.h"
#include "settle.h"

static const char PAYLOAD[] = "{\"model\":\"gpt-4o\",\"max_tokens\":50,\"messages\":[]}";

static struct corral_service_conf service(void)
{
    struct corral_service_conf sv;
    memset(&sv, 0, sizeof(sv));
    sv.name = "ai";
    sv.bytes_per_token = 4;
    sv.price_input_nano = 2500000000LL;   /* 2.5 per million */
    sv.price_output_nano = 10000000000LL; /* 10 per million */
    return sv;
}

static void header(struct corral_tally *t, const char *line)
{
    corral_tally_header(t, line, strlen(line));
}

static void a_whole_answers_usage_is_settled_with_its_cost(void **state)
{
    struct corral_service_conf sv = service();
    struct corral_tally *t = corral_tally_new(&sv, PAYLOAD, strlen(PAYLOAD));
    header(t, "Content-Type: application/json\r\n");
    const char *body = "{\"model\":\"gpt-4o-2024-08-06\",\"usage\":"
                       "{\"prompt_tokens\":1100,\"completion_tokens\":250}}";
    struct corral_settle *s = corral_tally_settle(t, 1, body, strlen(body));
    assert_int_equal(s->input_tokens, 1100);
    assert_int_equal(s->output_tokens, 250);
    assert_int_equal(s->cost_nano, 5250000);
    assert_false(s->estimated);
    assert_string_equal(s->model, "gpt-4o-2024-08-06");
    assert_int_equal(s->remaining, -1);
    free(s);
    corral_tally_free(t);
}

static void a_streamed_answers_usage_comes_from_its_events(void **state)
{
    struct corral_service_conf sv = service();
    struct corral_tally *t = corral_tally_new(&sv, PAYLOAD, strlen(PAYLOAD));
    header(t, "content-type:  text/event-stream; charset=utf-8\r\n");
    const char *body =
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":"
        "\"claude-3-5-haiku\",\"usage\":{\"input_tokens\":30,\"output_tokens\":1}}}\n\n"
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":"
        "{\"output_tokens\":12}}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    struct corral_settle *s = corral_tally_settle(t, 1, body, strlen(body));
    assert_int_equal(s->input_tokens, 30);
    assert_int_equal(s->output_tokens, 12);
    assert_false(s->estimated);
    free(s);
    corral_tally_free(t);
}

static void bad_usage_keeps_the_estimate_flagged(void **state)
{
    struct corral_service_conf sv = service();
    struct corral_tally *t = corral_tally_new(&sv, PAYLOAD, strlen(PAYLOAD));
    const char *body = "{\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":\"x\"}}";
    struct corral_settle *s = corral_tally_settle(t, 1, body, strlen(body));
    assert_int_equal(s->input_tokens, (int64_t)(strlen(PAYLOAD) + 3) / 4);
    assert_int_equal(s->output_tokens, 50);
    assert_true(s->estimated);
    free(s);
    corral_tally_free(t);
}

static void an_unanswered_call_has_no_usage_but_keeps_the_providers_view(void **state)
{
    struct corral_service_conf sv = service();
    struct corral_tally *t = corral_tally_new(&sv, PAYLOAD, strlen(PAYLOAD));
    header(t, "x-ratelimit-limit-tokens: 90000\r\n");
    header(t, "x-ratelimit-remaining-tokens: 12000\r\n");
    header(t, "x-ratelimit-reset-tokens: 6s\r\n");
    struct corral_settle *s = corral_tally_settle(t, 0, "", 0);
    assert_int_equal(s->input_tokens, -1);
    assert_int_equal(s->remaining, 12000);
    assert_true(s->reset_ms > 5000 && s->reset_ms <= 6000);
    struct corral_cmd cmd;
    corral_settle_cmd(&cmd, "corral", "prompts", "h:1");
    corral_settle_add(&cmd, "7", "2", s);
    /* FCALL corral_settle 1 key worker, then nine per run */
    assert_int_equal(cmd.argc, 5 + 9);
    assert_string_equal(cmd.argv[1], "corral_settle");
    assert_string_equal(cmd.argv[6], "2");
    assert_string_equal(cmd.argv[7], "-1");
    assert_string_equal(cmd.argv[8], "-1");
    assert_string_equal(cmd.argv[12], "12000");
    corral_cmd_free(&cmd);
    free(s);
    corral_tally_free(t);
}

static void a_token_429_waits_for_the_token_reset(void **state)
{
    struct corral_service_conf sv = service();
    struct corral_tally *t = corral_tally_new(&sv, PAYLOAD, strlen(PAYLOAD));
    header(t, "x-ratelimit-remaining-tokens: 0\r\n");
    header(t, "x-ratelimit-reset-tokens: 2.4s\r\n");
    const char *body = "{\"error\":{\"type\":\"tokens\",\"message\":\"Rate limit reached on "
                       "tokens per min (TPM)\"}}";
    int64_t delay = 0;
    assert_int_equal(corral_tally_token_429(t, body, strlen(body), 1000, 900000, &delay), 1);
    assert_int_equal(delay, 2400);
    const char *req = "{\"error\":{\"type\":\"requests\"}}";
    assert_int_equal(corral_tally_token_429(t, req, strlen(req), 1000, 900000, &delay), 0);
    corral_tally_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_whole_answers_usage_is_settled_with_its_cost),
        cmocka_unit_test(a_streamed_answers_usage_comes_from_its_events),
        cmocka_unit_test(bad_usage_keeps_the_estimate_flagged),
        cmocka_unit_test(an_unanswered_call_has_no_usage_but_keeps_the_providers_view),
        cmocka_unit_test(a_token_429_waits_for_the_token_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for a streamed answer's reader (worker/stream.c): pieces of
 * text out as events come, the assembled result with its usage, and the
 * verdict of each kind of bad stream; and the control channel's message
 * parser (worker/control.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "control.h"
#include "ctlmsg.h"
#include "stream.h"

struct pieces {
    char text[4096];
    size_t len;
    int n;
};

static void on_piece(void *priv, const char *text, size_t len)
{
    struct pieces *p = priv;
    memcpy(p->text + p->len, text, len);
    p->len += len;
    p->text[p->len] = '\0';
    p->n++;
}

static const char OPENAI[] =
    "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n"
    "data: {\"model\":\"gpt-x\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
    "\"completion_tokens\":2}}\n\n"
    "data: [DONE]\n\n";

/* Feeds text in chunks of `chunk` bytes -> the feed's last answer. */
static int feed(struct corral_stream *s, const char *text, size_t chunk)
{
    size_t n = strlen(text);
    for (size_t i = 0; i < n; i += chunk) {
        size_t k = n - i < chunk ? n - i : chunk;
        if (corral_stream_feed(s, text + i, k) < 0)
            return -1;
    }
    return 0;
}

static void a_complete_stream_gives_its_pieces_and_the_assembled_result(void **state)
{
    for (size_t chunk = 1; chunk <= sizeof(OPENAI); chunk += 7) {
        struct pieces p = {0};
        struct corral_stream *s = corral_stream_new(1000, on_piece, &p);
        assert_int_equal(feed(s, OPENAI, chunk), 0);
        enum corral_run_end end;
        char *out;
        size_t len;
        corral_stream_end(s, NULL, &end, &out, &len);
        assert_int_equal(end, CORRAL_END_DONE);
        assert_string_equal(p.text, "Hello");
        assert_int_equal(p.n, 2);
        json_t *j = json_loadb(out, len, 0, NULL);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "text")), "Hello");
        assert_true(json_is_true(json_object_get(j, "streamed")));
        assert_string_equal(json_string_value(json_object_get(j, "model")), "gpt-x");
        json_t *u = json_object_get(j, "usage");
        assert_int_equal(json_integer_value(json_object_get(u, "input_tokens")), 3);
        assert_int_equal(json_integer_value(json_object_get(u, "output_tokens")), 2);
        assert_int_equal(corral_stream_usage(s)->output_tokens, 2);
        json_decref(j);
        free(out);
        corral_stream_free(s);
    }
}

/* The verdict for a stream, and that its error says what it must. */
static void verdict(const char *text, int64_t max, const char *transfer_error,
                    enum corral_run_end want, const char *says)
{
    struct pieces p = {0};
    struct corral_stream *s = corral_stream_new(max, on_piece, &p);
    feed(s, text, 5);
    enum corral_run_end end;
    char *out;
    size_t len;
    corral_stream_end(s, transfer_error, &end, &out, &len);
    assert_int_equal(end, want);
    if (strstr(out, says) == NULL)
        fail_msg("\"%s\" does not say \"%s\"", out, says);
    assert_non_null(strstr(out, "kept in the job's stream"));
    free(out);
    corral_stream_free(s);
}

static void each_bad_stream_ends_with_its_own_reason(void **state)
{
    verdict("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: nope\n\n", 100, NULL,
            CORRAL_END_PERMANENT, "malformed event stream: the data of event 2");
    verdict("data: {\"choices\":[{\"delta\":{\"content\":\"0123456789\"}}]}\n\n"
            "data: {\"choices\":[{\"delta\":{\"content\":\"0123456789\"}}]}\n\n"
            "data: {\"choices\":[{\"delta\":{\"content\":\"0123456789\"}}]}\n\n",
            20, NULL, CORRAL_END_PERMANENT, "larger than max_result (20 bytes) at event 3");
    verdict("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"cho", 100, NULL,
            CORRAL_END_RETRY, "cut mid-event");
    verdict("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n", 100, NULL,
            CORRAL_END_RETRY, "ended after 1 events without its end event");
    verdict("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n", 100, "timed out",
            CORRAL_END_RETRY, "event stream cut: timed out");
    verdict("data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
            "\"message\":\"busy\"}}\n\n",
            100, NULL, CORRAL_END_RETRY, "overloaded_error: busy");
}

static void the_raw_stream_is_bounded_too(void **state)
{
    /* events with no text (pings) are not text, but they are bytes */
    char big[8192] = "";
    for (int i = 0; i < 200; i++)
        strcat(big, "data: {\"type\":\"ping\"}\n\n");
    verdict(big, 10, NULL, CORRAL_END_PERMANENT,
            "over the limit of 160 bytes for the whole stream");
}

static void content_types_name_event_streams(void **state)
{
    assert_true(corral_stream_content_type("text/event-stream"));
    assert_true(corral_stream_content_type("Text/Event-Stream; charset=utf-8"));
    assert_false(corral_stream_content_type("application/json"));
    assert_false(corral_stream_content_type("text/event-streamer"));
    assert_false(corral_stream_content_type(NULL));
}

static void control_messages_are_parsed_strictly(void **state)
{
    char q[16], id[16], run[16];
    const char *ok = "cancel prompts 42 3";
    assert_int_equal(corral_control_parse_cancel(ok, strlen(ok), q, id, run, sizeof(q)), 0);
    assert_string_equal(q, "prompts");
    assert_string_equal(id, "42");
    assert_string_equal(run, "3");
    const char *bad[] = {"",           "cancel",
                         "cancel q 1", "cancel q 1 2 extra",
                         "stop q 1 2", "cancel q 1 2345678901234567890"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(corral_control_parse_cancel(bad[i], strlen(bad[i]), q, id, run, sizeof(q)),
                         -1);
    /* A NUL inside a word would name another queue once read as a string. */
    static const char nul[] = "cancel prompts\0x 42 3";
    assert_int_equal(corral_control_parse_cancel(nul, sizeof(nul) - 1, q, id, run, sizeof(q)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_complete_stream_gives_its_pieces_and_the_assembled_result),
        cmocka_unit_test(each_bad_stream_ends_with_its_own_reason),
        cmocka_unit_test(the_raw_stream_is_bounded_too),
        cmocka_unit_test(content_types_name_event_streams),
        cmocka_unit_test(control_messages_are_parsed_strictly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

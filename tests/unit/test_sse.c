/* Unit tests for the text/event-stream parser (the WHATWG rules, fed in
 * chunks split anywhere, limits, a stream cut mid-event) and for the text,
 * end, errors and usage of OpenAI and Anthropic streamed answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sse.h"

/* Every event as "type|data|id|retry\n", so a test compares one string. */
struct seen {
    char log[8192];
    size_t len;
    int stop_after; /* stop when this many events were seen; 0 = never */
    int n;
};

static int record(const struct corral_sse_event *ev, void *privdata)
{
    struct seen *s = privdata;
    assert_int_equal(ev->index, (uint64_t)s->n);
    assert_int_equal(strlen(ev->type), ev->type_len);
    assert_int_equal(ev->data[ev->data_len], '\0');
    s->len +=
        (size_t)snprintf(s->log + s->len, sizeof(s->log) - s->len, "%s|%.*s|%s|%lld\n", ev->type,
                         (int)ev->data_len, ev->data, ev->id, (long long)ev->retry_ms);
    s->n++;
    return s->stop_after > 0 && s->n >= s->stop_after;
}

/* Parses text whole, then again split at every byte position into two
 * chunks, and again one byte at a time: every way must see the same. */
static void parse_all_ways(const char *text, size_t len, const char *want)
{
    for (size_t split = 0; split <= len + 1; split++) {
        struct seen s = {.len = 0};
        struct corral_sse *p = corral_sse_new(0, 0, record, &s);
        struct corral_err err;
        if (split <= len) {
            assert_int_equal(corral_sse_feed(p, text, split, &err), 0);
            assert_int_equal(corral_sse_feed(p, text + split, len - split, &err), 0);
        } else {
            for (size_t i = 0; i < len; i++)
                assert_int_equal(corral_sse_feed(p, text + i, 1, &err), 0);
        }
        assert_int_equal(corral_sse_finish(p, &err), 0);
        if (strcmp(s.log, want) != 0)
            fprintf(stderr, "split at %zu:\n got: %s\nwant: %s\n", split, s.log, want);
        assert_string_equal(s.log, want);
        assert_int_equal(corral_sse_bytes(p), len);
        corral_sse_free(p);
    }
}

static void parse(const char *text, const char *want)
{
    parse_all_ways(text, strlen(text), want);
}

static void events_are_dispatched_at_a_blank_line(void **state)
{
    parse("data: hello\n\n", "message|hello||-1\n");
    parse("event: ping\ndata: {}\n\ndata: two\n\n", "ping|{}||-1\nmessage|two||-1\n");
    parse("data: no blank line yet\n\ndata: x\n\n\n\n", "message|no blank line yet||-1\n"
                                                        "message|x||-1\n");
}

static void multi_line_data_is_joined_with_newlines(void **state)
{
    parse("data: a\ndata: b\ndata:\ndata: c\n\n", "message|a\nb\n\nc||-1\n");
}

static void cr_lf_and_crlf_all_end_lines(void **state)
{
    parse("data: a\r\ndata: b\rdata: c\n\r\n", "message|a\nb\nc||-1\n");
    parse("data: a\r\rdata: b\r\n\r\n", "message|a||-1\nmessage|b||-1\n");
    parse("data: a\n\r", "message|a||-1\n");
}

static void comments_and_unknown_fields_are_ignored(void **state)
{
    parse(": keep-alive\n\n: x\ndata: y\nfoo: bar\n\n", "message|y||-1\n");
    parse(":\n\n", "");
}

static void field_values_lose_one_leading_space_and_a_line_without_colon_is_a_field(void **state)
{
    parse("data:  two spaces\n\n", "message| two spaces||-1\n");
    parse("data:none\n\n", "message|none||-1\n");
    parse("data\n\ndata\ndata\n\n", "message|||-1\nmessage|\n||-1\n");
    parse("data: a:b: c\n\n", "message|a:b: c||-1\n");
}

static void an_event_without_data_is_not_dispatched_and_forgets_its_type(void **state)
{
    parse("event: ping\n\ndata: x\n\n", "message|x||-1\n");
    parse("event: a\nevent: b\ndata: x\n\n", "b|x||-1\n");
}

static void ids_and_retry_carry_over_and_bad_ones_are_ignored(void **state)
{
    parse("id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\n",
          "message|a|7|-1\nmessage|b|7|-1\nmessage|c||-1\n");
    parse("retry: 1500\ndata: a\n\nretry: 2s\ndata: b\n\nretry:\ndata: c\n\n",
          "message|a||1500\nmessage|b||1500\nmessage|c||1500\n");
    parse_all_ways("id: a\0b\ndata: x\n\n", 17, "message|x||-1\n");
}

static void a_byte_order_mark_at_the_start_is_dropped_once(void **state)
{
    parse("\xEF\xBB\xBF"
          "data: x\n\n",
          "message|x||-1\n");
    /* a second one is text: the field name "\xEF\xBB\xBFdata" is unknown */
    parse("\xEF\xBB\xBF\xEF\xBB\xBF"
          "data: x\n\ndata: y\n\n",
          "message|y||-1\n");
    /* the start of a BOM that is not one is text */
    parse("\xEF\xBB"
          "data: x\n\ndata: y\n\n",
          "message|y||-1\n");
}

static void nul_bytes_in_data_are_kept(void **state)
{
    static const char text[] = "data: a\0b\n\n";
    struct seen s = {.len = 0};
    struct corral_sse *p = corral_sse_new(0, 0, record, &s);
    struct corral_err err;
    assert_int_equal(corral_sse_feed(p, text, sizeof(text) - 1, &err), 0);
    assert_int_equal(corral_sse_events(p), 1);
    corral_sse_free(p);
}

static void a_stream_cut_inside_an_event_is_an_error_naming_it(void **state)
{
    struct seen s = {.len = 0};
    struct corral_sse *p = corral_sse_new(0, 0, record, &s);
    struct corral_err err;
    const char *text = "event: content_block_delta\ndata: {\"a\":1}\n\n"
                       "event: content_block_delta\ndata: {\"type\":\"content_block_delta\"}\n";
    assert_int_equal(corral_sse_feed(p, text, strlen(text), &err), 0);
    assert_int_equal(corral_sse_finish(p, &err), -1);
    assert_string_equal(err.msg, "event stream cut mid-event: it ended inside event 2 "
                                 "(\"content_block_delta\") (30 bytes of data) before the blank "
                                 "line that ends an event");
    assert_int_equal(s.n, 1);                         /* the cut event is not dispatched */
    assert_int_equal(corral_sse_finish(p, &err), -1); /* and it stays failed */
    corral_sse_free(p);

    s = (struct seen){.len = 0};
    p = corral_sse_new(0, 0, record, &s);
    text = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel";
    assert_int_equal(corral_sse_feed(p, text, strlen(text), &err), 0);
    assert_int_equal(corral_sse_finish(p, &err), -1);
    assert_string_equal(err.msg, "event stream cut mid-event: it ended inside a line of event 1 "
                                 "(\"data: {\"choices\":[{\"delta\":{\"content\":\"H...\", 42 "
                                 "bytes, no line end)");
    corral_sse_free(p);
}

static void a_stream_that_ends_between_events_is_complete(void **state)
{
    static const char *const complete[] = {"", "data: x\n\n", "data: x\n\n: bye\n",
                                           "data: x\r\n\r\n", "\xEF\xBB\xBF"};
    for (size_t i = 0; i < sizeof(complete) / sizeof(complete[0]); i++) {
        struct corral_sse *p = corral_sse_new(0, 0, NULL, NULL);
        struct corral_err err;
        assert_int_equal(corral_sse_feed(p, complete[i], strlen(complete[i]), &err), 0);
        assert_int_equal(corral_sse_finish(p, &err), 0);
        corral_sse_free(p);
    }
    /* a field line without data still needs its blank line */
    struct corral_sse *p = corral_sse_new(0, 0, NULL, NULL);
    struct corral_err err;
    assert_int_equal(corral_sse_feed(p, "event: x\n", 9, &err), 0);
    assert_int_equal(corral_sse_finish(p, &err), -1);
    assert_non_null(strstr(err.msg, "cut mid-event"));
    corral_sse_free(p);
}

static void an_event_over_its_limit_is_an_error_whatever_the_chunks(void **state)
{
    /* 100 bytes for one event: a line of 120 bytes in one chunk, or in
     * many, or data lines that add up, all fail and name the event */
    char line[200];
    memset(line, 'x', sizeof(line));
    memcpy(line, "data: ", 6);
    line[120] = '\n';
    for (size_t chunk = 1; chunk <= 121; chunk += 30) {
        struct seen s = {.len = 0};
        struct corral_sse *p = corral_sse_new(100, 0, record, &s);
        struct corral_err err;
        int rc = 0;
        for (size_t i = 0; i < 121 && rc == 0; i += chunk)
            rc = corral_sse_feed(p, line + i, i + chunk <= 121 ? chunk : 121 - i, &err);
        assert_int_equal(rc, -1);
        assert_string_equal(err.msg,
                            "event stream: event 1 is over the limit of 100 bytes for one event");
        assert_int_equal(corral_sse_feed(p, "\n", 1, &err), -1);
        assert_int_equal(corral_sse_finish(p, &err), -1);
        corral_sse_free(p);
    }
    struct corral_sse *p = corral_sse_new(100, 0, NULL, NULL);
    struct corral_err err;
    int rc = 0;
    for (int i = 0; i < 20 && rc == 0; i++)
        rc = corral_sse_feed(p, "data: 0123456789\n", 17, &err);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, "over the limit of 100 bytes for one event"));
    corral_sse_free(p);
    /* a line of exactly the limit is fine: "data: " and 94 bytes */
    p = corral_sse_new(100, 0, NULL, NULL);
    memset(line, 'y', sizeof(line));
    memcpy(line, "data: ", 6);
    line[100] = '\n';
    line[101] = '\n';
    assert_int_equal(corral_sse_feed(p, line, 102, &err), 0);
    assert_int_equal(corral_sse_events(p), 1);
    corral_sse_free(p);
}

static void a_stream_over_its_total_limit_is_an_error(void **state)
{
    struct seen s = {.len = 0};
    struct corral_sse *p = corral_sse_new(0, 50, record, &s);
    struct corral_err err;
    int rc = 0, fed = 0;
    while (rc == 0 && fed < 100) {
        rc = corral_sse_feed(p, "data: x\n\n", 9, &err);
        fed++;
    }
    assert_int_equal(rc, -1);
    assert_int_equal(fed, 6); /* 54 bytes > 50 */
    assert_int_equal(s.n, 5);
    assert_string_equal(err.msg, "event stream: over the limit of 50 bytes for the whole stream");
    corral_sse_free(p);
}

static void the_callback_can_stop_the_stream(void **state)
{
    struct seen s = {.stop_after = 2};
    struct corral_sse *p = corral_sse_new(0, 0, record, &s);
    struct corral_err err;
    const char *text = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    assert_int_equal(corral_sse_feed(p, text, strlen(text), &err), 1);
    assert_int_equal(s.n, 2);
    assert_int_equal(corral_sse_feed(p, text, strlen(text), &err), 1);
    assert_int_equal(corral_sse_finish(p, &err), 1);
    assert_int_equal(s.n, 2);
    corral_sse_free(p);
    corral_sse_free(NULL);
}

/* ---- decoding AI answers ---- */

static enum corral_sse_kind decode(const char *type, const char *data, struct corral_usage *u,
                                   struct corral_sse_piece *piece)
{
    struct corral_sse_event ev = {.type = type,
                                  .type_len = strlen(type),
                                  .data = data,
                                  .data_len = strlen(data),
                                  .id = "",
                                  .retry_ms = -1,
                                  .index = 2};
    return corral_sse_decode(&ev, u, piece);
}

static void openai_chat_chunks_carry_text_then_usage_then_done(void **state)
{
    struct corral_usage u;
    corral_usage_init(&u);
    struct corral_sse_piece piece;
    assert_int_equal(decode("message",
                            "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                            "\"content\":\"\"}}]}",
                            &u, &piece),
                     CORRAL_SSE_OTHER);
    assert_int_equal(decode("message",
                            "{\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":"
                            "\"Hel\\u00e9\"}}],\"usage\":null}",
                            &u, &piece),
                     CORRAL_SSE_TEXT);
    assert_int_equal(piece.len, 5);
    assert_memory_equal(piece.text, "Hel\xc3\xa9", 5);
    corral_sse_piece_free(&piece);
    assert_int_equal(
        decode("message", "{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}", &u, &piece),
        CORRAL_SSE_OTHER);
    assert_int_equal(decode("message",
                            "{\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
                            "\"completion_tokens\":2}}",
                            &u, &piece),
                     CORRAL_SSE_OTHER);
    assert_int_equal(u.input_tokens, 9);
    assert_int_equal(u.output_tokens, 2);
    assert_int_equal(decode("message", "[DONE]", &u, &piece), CORRAL_SSE_DONE);
    assert_null(piece.text);
}

static void responses_events_carry_text_deltas_and_complete(void **state)
{
    struct corral_usage u;
    corral_usage_init(&u);
    struct corral_sse_piece piece;
    assert_int_equal(decode("response.created",
                            "{\"type\":\"response.created\",\"response\":{\"usage\":null}}", &u,
                            &piece),
                     CORRAL_SSE_OTHER);
    assert_int_equal(decode("response.output_text.delta",
                            "{\"type\":\"response.output_text.delta\",\"item_id\":\"m\","
                            "\"delta\":\"Hi there\"}",
                            &u, &piece),
                     CORRAL_SSE_TEXT);
    assert_string_equal(piece.text, "Hi there");
    corral_sse_piece_free(&piece);
    assert_int_equal(decode("response.output_text.done",
                            "{\"type\":\"response.output_text.done\",\"text\":\"Hi there\"}", &u,
                            &piece),
                     CORRAL_SSE_OTHER);
    assert_int_equal(decode("response.completed",
                            "{\"type\":\"response.completed\",\"response\":{\"usage\":"
                            "{\"input_tokens\":20,\"output_tokens\":5}}}",
                            &u, &piece),
                     CORRAL_SSE_DONE);
    assert_int_equal(u.input_tokens, 20);
    assert_int_equal(decode("response.failed",
                            "{\"type\":\"response.failed\",\"response\":{\"error\":{\"code\":"
                            "\"server_error\",\"message\":\"boom\"}}}",
                            &u, &piece),
                     CORRAL_SSE_ERROR);
    assert_string_equal(piece.text, "the service reported an error in event 3: server_error: boom");
    corral_sse_piece_free(&piece);
}

static void anthropic_events_carry_text_deltas_and_stop(void **state)
{
    struct corral_usage u;
    corral_usage_init(&u);
    struct corral_sse_piece piece;
    assert_int_equal(decode("message_start",
                            "{\"type\":\"message_start\",\"message\":{\"model\":\"claude\","
                            "\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}",
                            &u, &piece),
                     CORRAL_SSE_OTHER);
    assert_int_equal(decode("content_block_start",
                            "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
                            "{\"type\":\"text\",\"text\":\"\"}}",
                            &u, &piece),
                     CORRAL_SSE_OTHER);
    assert_int_equal(decode("ping", "{\"type\": \"ping\"}", &u, &piece), CORRAL_SSE_OTHER);
    assert_int_equal(decode("content_block_delta",
                            "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                            "\"text_delta\",\"text\":\"Hello\"}}",
                            &u, &piece),
                     CORRAL_SSE_TEXT);
    assert_string_equal(piece.text, "Hello");
    corral_sse_piece_free(&piece);
    assert_int_equal(decode("content_block_delta",
                            "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
                            "\"input_json_delta\",\"partial_json\":\"{\\\"a\"}}",
                            &u, &piece),
                     CORRAL_SSE_OTHER);
    assert_int_equal(decode("message_delta",
                            "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
                            "\"end_turn\"},\"usage\":{\"output_tokens\":15}}",
                            &u, &piece),
                     CORRAL_SSE_OTHER);
    assert_int_equal(decode("message_stop", "{\"type\":\"message_stop\"}", &u, &piece),
                     CORRAL_SSE_DONE);
    assert_int_equal(u.input_tokens, 25);
    assert_int_equal(u.output_tokens, 15);
}

static void an_error_in_the_stream_is_reported_with_its_message(void **state)
{
    struct corral_sse_piece piece;
    assert_int_equal(decode("error",
                            "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                            "\"message\":\"Overloaded\"}}",
                            NULL, &piece),
                     CORRAL_SSE_ERROR);
    assert_string_equal(piece.text,
                        "the service reported an error in event 3: overloaded_error: Overloaded");
    corral_sse_piece_free(&piece);
    assert_int_equal(decode("message",
                            "{\"error\":{\"message\":\"line1\\nline2\",\"type\":"
                            "\"server_error\"}}",
                            NULL, &piece),
                     CORRAL_SSE_ERROR);
    assert_string_equal(piece.text,
                        "the service reported an error in event 3: server_error: line1 line2");
    corral_sse_piece_free(&piece);
    assert_int_equal(decode("error", "{}", NULL, &piece), CORRAL_SSE_ERROR);
    assert_string_equal(piece.text, "the service reported an error in event 3: no message");
    corral_sse_piece_free(&piece);
}

static void data_that_is_not_json_is_malformed(void **state)
{
    struct corral_sse_piece piece;
    assert_int_equal(decode("message", "Hello \x01world", NULL, &piece), CORRAL_SSE_MALFORMED);
    assert_string_equal(piece.text, "malformed event stream: the data of event 3 is not a JSON "
                                    "object (\"Hello ?world\")");
    corral_sse_piece_free(&piece);
    assert_int_equal(decode("message", "[1,2]", NULL, &piece), CORRAL_SSE_MALFORMED);
    corral_sse_piece_free(&piece);
    assert_int_equal(decode("message", "[DONE] ", NULL, &piece), CORRAL_SSE_MALFORMED);
    corral_sse_piece_free(&piece);
}

/* The whole path: chunks of an Anthropic stream through the parser and
 * the decoder, text assembled and usage summed. */
struct assembled {
    char text[256];
    size_t len;
    struct corral_usage usage;
    int done;
};

static int assemble(const struct corral_sse_event *ev, void *privdata)
{
    struct assembled *a = privdata;
    struct corral_sse_piece piece;
    enum corral_sse_kind k = corral_sse_decode(ev, &a->usage, &piece);
    if (k == CORRAL_SSE_TEXT) {
        memcpy(a->text + a->len, piece.text, piece.len);
        a->len += piece.len;
    }
    a->done |= k == CORRAL_SSE_DONE;
    corral_sse_piece_free(&piece);
    return 0;
}

static void an_anthropic_stream_in_odd_chunks_assembles_its_text_and_usage(void **state)
{
    const char *stream =
        "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"model\":"
        "\"claude-3-5-haiku-20241022\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\r\n"
        "\r\nevent: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n"
        "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
        "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\r\n\r\n"
        "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
        "\"delta\":{\"type\":\"text_delta\",\"text\":\", world\"}}\r\n\r\n"
        "event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
        "\"end_turn\"},\"usage\":{\"output_tokens\":4}}\r\n\r\n"
        "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";
    size_t len = strlen(stream);
    for (size_t chunk = 1; chunk < 64; chunk += 7) {
        struct assembled a = {.len = 0};
        corral_usage_init(&a.usage);
        struct corral_sse *p = corral_sse_new(0, 0, assemble, &a);
        struct corral_err err;
        for (size_t i = 0; i < len; i += chunk)
            assert_int_equal(
                corral_sse_feed(p, stream + i, i + chunk <= len ? chunk : len - i, &err), 0);
        assert_int_equal(corral_sse_finish(p, &err), 0);
        a.text[a.len] = '\0';
        assert_string_equal(a.text, "Hello, world");
        assert_true(a.done);
        assert_int_equal(a.usage.input_tokens, 12);
        assert_int_equal(a.usage.output_tokens, 4);
        assert_string_equal(a.usage.model, "claude-3-5-haiku-20241022");
        corral_sse_free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(events_are_dispatched_at_a_blank_line),
        cmocka_unit_test(multi_line_data_is_joined_with_newlines),
        cmocka_unit_test(cr_lf_and_crlf_all_end_lines),
        cmocka_unit_test(comments_and_unknown_fields_are_ignored),
        cmocka_unit_test(field_values_lose_one_leading_space_and_a_line_without_colon_is_a_field),
        cmocka_unit_test(an_event_without_data_is_not_dispatched_and_forgets_its_type),
        cmocka_unit_test(ids_and_retry_carry_over_and_bad_ones_are_ignored),
        cmocka_unit_test(a_byte_order_mark_at_the_start_is_dropped_once),
        cmocka_unit_test(nul_bytes_in_data_are_kept),
        cmocka_unit_test(a_stream_cut_inside_an_event_is_an_error_naming_it),
        cmocka_unit_test(a_stream_that_ends_between_events_is_complete),
        cmocka_unit_test(an_event_over_its_limit_is_an_error_whatever_the_chunks),
        cmocka_unit_test(a_stream_over_its_total_limit_is_an_error),
        cmocka_unit_test(the_callback_can_stop_the_stream),
        cmocka_unit_test(openai_chat_chunks_carry_text_then_usage_then_done),
        cmocka_unit_test(responses_events_carry_text_deltas_and_complete),
        cmocka_unit_test(anthropic_events_carry_text_deltas_and_stop),
        cmocka_unit_test(an_error_in_the_stream_is_reported_with_its_message),
        cmocka_unit_test(data_that_is_not_json_is_malformed),
        cmocka_unit_test(an_anthropic_stream_in_odd_chunks_assembles_its_text_and_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* libFuzzer target for streamed answers: the input is a text/event-stream
 * body. It goes through the parser whole and again in chunks whose sizes
 * come from the input's first bytes (so a boundary falls anywhere, inside
 * a CRLF or the byte order mark), with small limits; every event through
 * the decoder of OpenAI and Anthropic events with a usage tally. Both ways
 * must see the same events and the same end; events respect the limits;
 * decoded text and messages keep their promises. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_EVENT 512
#define MAX_TOTAL 8192

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "check failed: %s\n", #c);                                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A running FNV-1a hash of every event, so two parses compare cheaply. */
struct tally {
    uint64_t hash;
    uint64_t events;
    struct corral_usage usage;
    int done;
};

static void mix(struct tally *t, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        t->hash = (t->hash ^ b[i]) * 1099511628211ULL;
}

static int on_event(const struct corral_sse_event *ev, void *privdata)
{
    struct tally *t = privdata;
    CHECK(ev->index == t->events);
    CHECK(ev->type_len > 0 && ev->type[ev->type_len] == '\0');
    CHECK(ev->data[ev->data_len] == '\0');
    /* The limit counts the data with its last newline and the event field
     * as given; "message", the type of an event without one, is not. */
    CHECK(ev->data_len < MAX_EVENT && ev->type_len + ev->data_len < MAX_EVENT + 7);
    CHECK(ev->id_len <= MAX_EVENT && ev->id[ev->id_len] == '\0');
    CHECK(memchr(ev->id, '\0', ev->id_len) == NULL);
    CHECK(ev->retry_ms >= -1);
    /* A field's value never holds a line end. */
    CHECK(memchr(ev->type, '\n', ev->type_len) == NULL &&
          memchr(ev->type, '\r', ev->type_len) == NULL);
    CHECK(memchr(ev->data, '\r', ev->data_len) == NULL);
    t->events++;
    mix(t, ev->type, ev->type_len + 1);
    mix(t, ev->data, ev->data_len + 1);
    mix(t, ev->id, ev->id_len + 1);
    mix(t, &ev->retry_ms, sizeof(ev->retry_ms));

    struct corral_sse_piece piece;
    enum corral_sse_kind k = corral_sse_decode(ev, &t->usage, &piece);
    CHECK(k <= CORRAL_SSE_MALFORMED);
    if (k == CORRAL_SSE_TEXT) {
        CHECK(piece.text != NULL && piece.len > 0 && piece.text[piece.len] == '\0');
        CHECK(piece.len <= ev->data_len);
    } else if (k == CORRAL_SSE_ERROR || k == CORRAL_SSE_MALFORMED) {
        CHECK(piece.text != NULL && strlen(piece.text) == piece.len && piece.len < 512);
        for (size_t i = 0; i < piece.len; i++)
            CHECK((unsigned char)piece.text[i] >= 0x20 && piece.text[i] != 0x7f);
    } else {
        CHECK(piece.text == NULL);
    }
    t->done |= k == CORRAL_SSE_DONE;
    corral_sse_piece_free(&piece);
    const struct corral_usage *u = &t->usage;
    CHECK(u->input_tokens >= -1 && u->input_tokens <= CORRAL_TOKENS_MAX);
    CHECK(u->output_tokens >= -1 && u->output_tokens <= CORRAL_TOKENS_MAX);
    CHECK(strlen(u->model) <= CORRAL_MODEL_MAX);
    return 0;
}

struct result {
    int feed_rc;
    int finish_rc;
    char msg[CORRAL_ERR_MSG_MAX];
    struct tally t;
};

static void run(const uint8_t *stream, size_t len, const uint8_t *sizes, size_t nsizes,
                struct result *r)
{
    memset(r, 0, sizeof(*r));
    r->t.hash = 1469598103934665603ULL;
    corral_usage_init(&r->t.usage);
    struct corral_sse *p = corral_sse_new(MAX_EVENT, MAX_TOTAL, on_event, &r->t);
    struct corral_err err;
    size_t off = 0, k = 0;
    int rc = 0;
    while (off < len && rc == 0) {
        /* An exact-size copy of each chunk, so a read past it shows. */
        size_t n = nsizes ? (size_t)sizes[k++ % nsizes] % 17 + 1 : len;
        if (n > len - off)
            n = len - off;
        char *chunk = malloc(n);
        memcpy(chunk, stream + off, n);
        rc = corral_sse_feed(p, chunk, n, &err);
        free(chunk);
        off += n;
    }
    r->feed_rc = rc;
    if (rc < 0)
        snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
    r->finish_rc = corral_sse_finish(p, &err);
    if (r->finish_rc < 0) {
        CHECK(err.msg[0] != '\0');
        if (rc == 0)
            snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
    }
    CHECK(r->t.events == corral_sse_events(p));
    if (rc == 0)
        CHECK(corral_sse_bytes(p) == len);
    corral_sse_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 64 * 1024)
        return 0;
    /* First byte: how many chunk-size bytes follow; the rest is the stream. */
    size_t nsizes = data[0] % 8;
    if (size < 1 + nsizes)
        return 0;
    const uint8_t *sizes = data + 1, *stream = data + 1 + nsizes;
    size_t len = size - 1 - nsizes;
    struct result whole, chunked;
    run(stream, len, NULL, 0, &whole);
    if (nsizes == 0)
        return 0;
    run(stream, len, sizes, nsizes, &chunked);
    /* The limits may trip at a different event only in where the bytes
     * ended; without a failure both ways saw exactly the same. */
    if (whole.feed_rc == 0 && chunked.feed_rc == 0) {
        CHECK(whole.t.hash == chunked.t.hash && whole.t.events == chunked.t.events);
        CHECK(whole.finish_rc == chunked.finish_rc);
        CHECK(strcmp(whole.msg, chunked.msg) == 0);
        CHECK(whole.t.usage.input_tokens == chunked.t.usage.input_tokens &&
              whole.t.usage.output_tokens == chunked.t.usage.output_tokens);
        CHECK(whole.t.done == chunked.t.done);
    } else {
        CHECK(whole.feed_rc == -1 && chunked.feed_rc == -1);
        CHECK(whole.finish_rc == -1 && chunked.finish_rc == -1);
    }
    return 0;
}

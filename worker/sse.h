/* A streaming parser for text/event-stream answers (the WHATWG
 * server-sent events rules), fed byte chunks as libcurl delivers them,
 * calling back once per event; and the text and end of an AI answer in the
 * events of OpenAI chat, OpenAI Responses and Anthropic (docs/tokens.md,
 * "Streamed answers"). Pure: no I/O. */
#ifndef CORRAL_SSE_H
#define CORRAL_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "corral/err.h"
#include "usage.h"

/* One event. Its pointers are valid only during the callback; type and
 * data are NUL-terminated as well as counted (data may hold NUL bytes). */
struct corral_sse_event {
    const char *type; /* the event field, "message" when there was none */
    size_t type_len;
    const char *data; /* the data lines joined with "\n" */
    size_t data_len;
    const char *id; /* the last id field seen, in this or an earlier event; "" if none */
    size_t id_len;
    int64_t retry_ms; /* the last valid retry field; -1 if none */
    uint64_t index;   /* events dispatched before this one */
};

/* Called once per event. Return 0 to go on, anything else to stop: the
 * feed returns 1 and the parser reads nothing more. */
typedef int (*corral_sse_event_cb)(const struct corral_sse_event *ev, void *privdata);

/* Defaults for a limit given as 0. */
#define CORRAL_SSE_MAX_EVENT_DEFAULT (1024 * 1024)

struct corral_sse;

/* A parser. max_event_bytes bounds one event (its unfinished line, data and
 * type; 0 = CORRAL_SSE_MAX_EVENT_DEFAULT); max_total_bytes bounds the whole
 * stream (0 = no bound). Free with corral_sse_free. */
struct corral_sse *corral_sse_new(size_t max_event_bytes, uint64_t max_total_bytes,
                                  corral_sse_event_cb cb, void *privdata);

/* Feeds the next bytes; a chunk may end anywhere (inside a line, a CRLF
 * or the byte order mark). Returns 0; 1 when the callback stopped the
 * parser; -1 with err when the stream breaks a limit. After 1 or -1 every
 * later call returns the same without reading. */
int corral_sse_feed(struct corral_sse *p, const char *buf, size_t len, struct corral_err *err);

/* The end of the stream. 0 when it ended between events; -1 with err
 * naming the event when it ended inside one (a line or fields without the
 * blank line that ends an event: that event is not dispatched). Returns the
 * same as an earlier feed's 1 or -1. */
int corral_sse_finish(struct corral_sse *p, struct corral_err *err);

/* Events dispatched and bytes fed so far. */
uint64_t corral_sse_events(const struct corral_sse *p);
uint64_t corral_sse_bytes(const struct corral_sse *p);

void corral_sse_free(struct corral_sse *p);

/* What one event of an AI answer means. */
enum corral_sse_kind {
    CORRAL_SSE_OTHER,     /* nothing to show: ping, a role, a block's start or stop, usage */
    CORRAL_SSE_TEXT,      /* a piece of the answer's text */
    CORRAL_SSE_DONE,      /* the answer is complete: [DONE], message_stop, response.completed */
    CORRAL_SSE_ERROR,     /* the service reported an error inside the stream */
    CORRAL_SSE_MALFORMED, /* the data is neither JSON nor [DONE] */
};

/* What corral_sse_decode found: the text (TEXT), or a message for people
 * (ERROR, MALFORMED: control characters replaced). Owned: free with
 * corral_sse_piece_free. */
struct corral_sse_piece {
    char *text;
    size_t len;
};

/* Decodes one event of an AI answer: the text of OpenAI chat chunks
 * (choices[0].delta.content), OpenAI Responses (response.output_text.delta)
 * and Anthropic (content_block_delta with a text_delta); the end; errors.
 * Any usage the event carries goes into u (may be NULL). out is reset
 * first. */
enum corral_sse_kind corral_sse_decode(const struct corral_sse_event *ev, struct corral_usage *u,
                                       struct corral_sse_piece *out);

void corral_sse_piece_free(struct corral_sse_piece *piece);

#endif

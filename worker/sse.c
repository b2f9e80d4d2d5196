/* text/event-stream as the WHATWG HTML standard parses it ("Interpreting
 * an event stream"): lines end in CR, LF or CRLF; a blank line dispatches
 * the event; `:` starts a comment; fields event, data, id and retry; one
 * leading byte order mark is dropped. Fed in chunks of any size, with
 * limits so an endless or huge stream is an error, not memory. Then the
 * meaning of each event in the AI answers corral streams (docs/tokens.md). */
#include "sse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/util.h"

/* A growing byte buffer, always NUL-terminated. */
struct buf {
    char *p;
    size_t len;
    size_t cap;
};

struct corral_sse {
    corral_sse_event_cb cb;
    void *privdata;
    size_t max_event;
    uint64_t max_total;
    uint64_t total;
    uint64_t events;
    struct buf line, data, type, id;
    int64_t retry_ms;
    int bom_seen;   /* BOM bytes matched at the start, 0..3 */
    int bom_done;   /* past the start: no BOM is looked for any more */
    int cr_pending; /* the last byte was a CR: a following LF ends no line */
    int in_event;   /* a field line came since the last blank line */
    int state;      /* 0 reading, 1 stopped by the callback, -1 failed */
    char fail[CORRAL_ERR_MSG_MAX];
};

static void buf_put(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = corral_xrealloc(b->p, cap);
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_set(struct buf *b, const char *s, size_t n)
{
    b->len = 0;
    buf_put(b, s, n);
}

struct corral_sse *corral_sse_new(size_t max_event_bytes, uint64_t max_total_bytes,
                                  corral_sse_event_cb cb, void *privdata)
{
    struct corral_sse *p = corral_xcalloc(1, sizeof(*p));
    p->cb = cb;
    p->privdata = privdata;
    p->max_event = max_event_bytes ? max_event_bytes : CORRAL_SSE_MAX_EVENT_DEFAULT;
    p->max_total = max_total_bytes;
    p->retry_ms = -1;
    buf_set(&p->id, "", 0);
    return p;
}

void corral_sse_free(struct corral_sse *p)
{
    if (p == NULL)
        return;
    free(p->line.p);
    free(p->data.p);
    free(p->type.p);
    free(p->id.p);
    free(p);
}

uint64_t corral_sse_events(const struct corral_sse *p)
{
    return p->events;
}

uint64_t corral_sse_bytes(const struct corral_sse *p)
{
    return p->total;
}

static int fail(struct corral_sse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct corral_sse *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->fail, sizeof(p->fail), fmt, ap);
    va_end(ap);
    p->state = -1;
    return -1;
}

/* The event being read, for messages: "event 4" or "event 4 (\"ping\")". */
static void event_name(const struct corral_sse *p, char *out, size_t n)
{
    if (p->type.len == 0) {
        snprintf(out, n, "event %llu", (unsigned long long)p->events + 1);
        return;
    }
    char t[48];
    size_t k = 0;
    for (size_t i = 0; i < p->type.len && k < sizeof(t) - 4; i++) {
        unsigned char c = (unsigned char)p->type.p[i];
        t[k++] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
    }
    if (k < p->type.len) {
        memcpy(t + k, "...", 3);
        k += 3;
    }
    t[k] = '\0';
    snprintf(out, n, "event %llu (\"%s\")", (unsigned long long)p->events + 1, t);
}

static int too_big(struct corral_sse *p, size_t more)
{
    if (p->line.len + p->data.len + p->type.len + more <= p->max_event)
        return 0;
    char name[80];
    event_name(p, name, sizeof(name));
    fail(p, "event stream: %s is over the limit of %zu bytes for one event", name, p->max_event);
    return 1;
}

static int dispatch(struct corral_sse *p)
{
    p->in_event = 0;
    if (p->data.len == 0) {
        /* No data: nothing is dispatched, and the event type is forgotten. */
        p->type.len = 0;
        return 0;
    }
    p->data.p[--p->data.len] = '\0'; /* the "\n" after the last data line */
    struct corral_sse_event ev = {
        .type = p->type.len ? p->type.p : "message",
        .type_len = p->type.len ? p->type.len : 7,
        .data = p->data.p,
        .data_len = p->data.len,
        .id = p->id.p,
        .id_len = p->id.len,
        .retry_ms = p->retry_ms,
        .index = p->events,
    };
    p->events++;
    int rc = p->cb ? p->cb(&ev, p->privdata) : 0;
    p->data.len = 0;
    p->type.len = 0;
    if (rc != 0) {
        p->state = 1;
        return 1;
    }
    return 0;
}

static int field_is(const char *f, size_t n, const char *name)
{
    return n == strlen(name) && memcmp(f, name, n) == 0;
}

/* One line, without its line end. */
static int take_line(struct corral_sse *p, const char *l, size_t n)
{
    if (n == 0)
        return dispatch(p);
    if (l[0] == ':')
        return 0; /* a comment */
    const char *colon = memchr(l, ':', n);
    size_t flen = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vlen = (size_t)(l + n - v);
    if (vlen > 0 && v[0] == ' ') {
        v++;
        vlen--;
    }
    p->in_event = 1;
    if (field_is(l, flen, "event")) {
        p->type.len = 0;
        if (too_big(p, vlen))
            return -1;
        buf_set(&p->type, v, vlen);
    } else if (field_is(l, flen, "data")) {
        if (too_big(p, vlen + 1))
            return -1;
        buf_put(&p->data, v, vlen);
        buf_put(&p->data, "\n", 1);
    } else if (field_is(l, flen, "id")) {
        if (memchr(v, '\0', vlen) == NULL && vlen <= p->max_event)
            buf_set(&p->id, v, vlen);
    } else if (field_is(l, flen, "retry")) {
        int64_t ms = 0;
        size_t i = 0;
        for (; i < vlen && v[i] >= '0' && v[i] <= '9' && ms < 1000000000000LL; i++)
            ms = ms * 10 + (v[i] - '0');
        if (vlen > 0 && i == vlen)
            p->retry_ms = ms;
    }
    /* Any other field is ignored, as the standard says. */
    return 0;
}

static int take_bytes(struct corral_sse *p, const char *s, size_t n)
{
    while (n > 0) {
        if (p->cr_pending) {
            p->cr_pending = 0;
            if (s[0] == '\n') {
                s++;
                n--;
                continue;
            }
        }
        size_t k = 0;
        while (k < n && s[k] != '\n' && s[k] != '\r')
            k++;
        if (k == n) {
            if (too_big(p, k))
                return -1;
            buf_put(&p->line, s, k);
            return 0;
        }
        int rc;
        if (p->line.len == 0) {
            if (too_big(p, k))
                return -1;
            rc = take_line(p, s, k); /* the whole line is in this chunk: no copy */
        } else {
            if (too_big(p, k))
                return -1;
            buf_put(&p->line, s, k);
            /* Emptied first, so the limit does not count the line twice
             * while its value moves into the event's data. */
            size_t whole = p->line.len;
            p->line.len = 0;
            rc = take_line(p, p->line.p, whole);
        }
        if (rc != 0)
            return rc;
        p->cr_pending = s[k] == '\r';
        s += k + 1;
        n -= k + 1;
    }
    return 0;
}

static int result(const struct corral_sse *p, struct corral_err *err)
{
    if (p->state < 0)
        return corral_err_set(err, CORRAL_ERR_INVALID, "%s", p->fail);
    return p->state;
}

static const char BOM[] = "\xEF\xBB\xBF";

int corral_sse_feed(struct corral_sse *p, const char *buf, size_t len, struct corral_err *err)
{
    if (p->state != 0)
        return result(p, err);
    p->total += len;
    if (p->max_total > 0 && p->total > p->max_total) {
        fail(p, "event stream: over the limit of %llu bytes for the whole stream",
             (unsigned long long)p->max_total);
        return result(p, err);
    }
    /* The byte order mark, which a chunk boundary may split. */
    while (!p->bom_done && len > 0) {
        if ((unsigned char)buf[0] == (unsigned char)BOM[p->bom_seen]) {
            buf++;
            len--;
            if (++p->bom_seen == 3)
                p->bom_done = 1;
        } else {
            p->bom_done = 1;
            /* Not a BOM after all: the bytes taken for one are text. */
            if (p->bom_seen > 0 && take_bytes(p, BOM, (size_t)p->bom_seen) != 0)
                return result(p, err);
        }
    }
    if (len > 0)
        take_bytes(p, buf, len);
    return result(p, err);
}

int corral_sse_finish(struct corral_sse *p, struct corral_err *err)
{
    if (p->state != 0)
        return result(p, err);
    if (!p->bom_done) {
        p->bom_done = 1;
        if (p->bom_seen > 0 && take_bytes(p, BOM, (size_t)p->bom_seen) != 0)
            return result(p, err);
    }
    if (p->line.len == 0 && !p->in_event)
        return 0;
    char name[80];
    event_name(p, name, sizeof(name));
    if (p->line.len > 0) {
        /* The start of the unfinished line, printable, to name it. */
        char shown[48];
        size_t k = 0;
        for (size_t i = 0; i < p->line.len && k < 40; i++) {
            unsigned char c = (unsigned char)p->line.p[i];
            shown[k++] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
        }
        shown[k] = '\0';
        fail(p,
             "event stream cut mid-event: it ended inside a line of %s (\"%s%s\", %zu bytes, "
             "no line end)",
             name, shown, p->line.len > k ? "..." : "", p->line.len);
    } else {
        fail(p,
             "event stream cut mid-event: it ended inside %s (%zu bytes of data) before the "
             "blank line that ends an event",
             name, p->data.len > 0 ? p->data.len - 1 : 0);
    }
    return result(p, err);
}

/* ---- the events of AI answers ---- */

void corral_sse_piece_free(struct corral_sse_piece *piece)
{
    if (piece == NULL)
        return;
    free(piece->text);
    piece->text = NULL;
    piece->len = 0;
}

static enum corral_sse_kind text_piece(struct corral_sse_piece *out, const json_t *s)
{
    if (!json_is_string(s) || json_string_length(s) == 0)
        return CORRAL_SSE_OTHER;
    out->len = json_string_length(s);
    out->text = corral_xmalloc(out->len + 1);
    memcpy(out->text, json_string_value(s), out->len + 1);
    return CORRAL_SSE_TEXT;
}

/* A message for people: printf, then control characters replaced. */
static enum corral_sse_kind message(struct corral_sse_piece *out, enum corral_sse_kind kind,
                                    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static enum corral_sse_kind message(struct corral_sse_piece *out, enum corral_sse_kind kind,
                                    const char *fmt, ...)
{
    char m[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof(m), fmt, ap);
    va_end(ap);
    for (char *c = m; *c != '\0'; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = ' ';
    out->text = corral_xstrdup(m);
    out->len = strlen(m);
    return kind;
}

/* "overloaded_error: Overloaded" from {"type": ..., "message": ...}. */
static enum corral_sse_kind error_piece(struct corral_sse_piece *out, const json_t *e,
                                        const struct corral_sse_event *ev)
{
    const char *kind = json_string_value(json_object_get(e, "type"));
    if (kind == NULL)
        kind = json_string_value(json_object_get(e, "code"));
    const char *msg =
        json_is_string(e) ? json_string_value(e) : json_string_value(json_object_get(e, "message"));
    char what[400];
    if (kind != NULL && msg != NULL)
        snprintf(what, sizeof(what), "%s: %s", kind, msg);
    else
        snprintf(what, sizeof(what), "%s", kind ? kind : msg ? msg : "no message");
    return message(out, CORRAL_SSE_ERROR, "the service reported an error in event %llu: %s",
                   (unsigned long long)ev->index + 1, what);
}

static int is(const char *a, const char *b)
{
    return a != NULL && strcmp(a, b) == 0;
}

enum corral_sse_kind corral_sse_decode(const struct corral_sse_event *ev, struct corral_usage *u,
                                       struct corral_sse_piece *out)
{
    out->text = NULL;
    out->len = 0;
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0)
        return CORRAL_SSE_DONE;
    json_t *root = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        char shown[64];
        size_t k = 0;
        for (size_t i = 0; i < ev->data_len && k < 40; i++) {
            unsigned char c = (unsigned char)ev->data[i];
            shown[k++] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
        }
        shown[k] = '\0';
        return message(out, CORRAL_SSE_MALFORMED,
                       "malformed event stream: the data of event %llu is not a JSON object "
                       "(\"%s%s\")",
                       (unsigned long long)ev->index + 1, shown, ev->data_len > k ? "..." : "");
    }
    if (u != NULL)
        corral_usage_from_event(u, root);
    enum corral_sse_kind kind = CORRAL_SSE_OTHER;
    const char *type = json_string_value(json_object_get(root, "type"));
    const json_t *error = json_object_get(root, "error");
    if (is(type, "error") || (error != NULL && !json_is_null(error)) ||
        (ev->type_len == 5 && memcmp(ev->type, "error", 5) == 0)) {
        kind = error_piece(out, error ? error : root, ev);
    } else if (is(type, "content_block_delta")) {
        const json_t *delta = json_object_get(root, "delta");
        if (is(json_string_value(json_object_get(delta, "type")), "text_delta"))
            kind = text_piece(out, json_object_get(delta, "text"));
    } else if (is(type, "message_stop") || is(type, "response.completed") ||
               is(type, "response.incomplete")) {
        kind = CORRAL_SSE_DONE;
    } else if (is(type, "response.output_text.delta")) {
        kind = text_piece(out, json_object_get(root, "delta"));
    } else if (is(type, "response.failed")) {
        const json_t *resp = json_object_get(root, "response");
        const json_t *e = json_object_get(resp, "error");
        kind = error_piece(out, e ? e : root, ev);
    } else if (type == NULL) {
        /* OpenAI chat: {"choices": [{"delta": {"content": "..."}}]} */
        const json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
        kind = text_piece(out, json_object_get(json_object_get(choice, "delta"), "content"));
    }
    json_decref(root);
    return kind;
}

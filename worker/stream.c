/* Streamed answers (stream.h): an event-stream answer read piece by piece
 * with sse.h, each piece of text sent to the job's Redis Stream as it
 * comes, the result assembled at the end. */
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "connection.h"
#include "corral/log.h"
#include "corral/queue.h"
#include "corral/util.h"
#include "sse.h"

struct corral_stream {
    struct corral_sse *sse;
    struct corral_usage usage;
    corral_stream_piece_fn *piece;
    void *priv;
    int64_t max_result;
    char *text; /* the assembled text */
    size_t len;
    size_t cap;
    int complete; /* the end event came */
    int stopped;  /* reading stopped: end and why say how */
    enum corral_run_end end;
    char why[CORRAL_ERR_MSG_MAX];
};

int corral_stream_content_type(const char *ct)
{
    if (ct == NULL)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strlen("text/event-stream");
    return strncasecmp(ct, "text/event-stream", n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t');
}

static int stop(struct corral_stream *s, enum corral_run_end end, const char *why)
{
    s->stopped = 1;
    s->end = end;
    snprintf(s->why, sizeof(s->why), "%s", why);
    return 1;
}

static int on_event(const struct corral_sse_event *ev, void *priv)
{
    struct corral_stream *s = priv;
    struct corral_sse_piece p;
    enum corral_sse_kind kind = corral_sse_decode(ev, &s->usage, &p);
    int rc = 0;
    if (s->complete) {
        /* after the end event nothing counts (OpenAI's [DONE] follows its
         * usage chunk, read above) */
    } else if (kind == CORRAL_SSE_TEXT && p.len > 0) {
        if ((int64_t)(s->len + p.len) > s->max_result) {
            char why[160];
            snprintf(why, sizeof(why),
                     "streamed answer larger than max_result (%lld bytes) at event %llu",
                     (long long)s->max_result, (unsigned long long)ev->index + 1);
            rc = stop(s, CORRAL_END_PERMANENT, why);
        } else {
            if (s->len + p.len + 1 > s->cap) {
                s->cap = (s->len + p.len + 1) * 2;
                s->text = corral_xrealloc(s->text, s->cap);
            }
            memcpy(s->text + s->len, p.text, p.len);
            s->len += p.len;
            s->text[s->len] = '\0';
            s->piece(s->priv, p.text, p.len);
        }
    } else if (kind == CORRAL_SSE_DONE) {
        s->complete = 1;
    } else if (kind == CORRAL_SSE_ERROR) {
        rc = stop(s, CORRAL_END_RETRY, p.text); /* the service's trouble: try again later */
    } else if (kind == CORRAL_SSE_MALFORMED) {
        rc = stop(s, CORRAL_END_PERMANENT, p.text);
    }
    corral_sse_piece_free(&p);
    return rc;
}

struct corral_stream *corral_stream_new(int64_t max_result_bytes, corral_stream_piece_fn *piece,
                                        void *priv)
{
    struct corral_stream *s = corral_xcalloc(1, sizeof(*s));
    s->piece = piece;
    s->priv = priv;
    s->max_result = max_result_bytes;
    corral_usage_init(&s->usage);
    s->sse = corral_sse_new(0, (uint64_t)max_result_bytes * CORRAL_STREAM_RAW_FACTOR, on_event, s);
    return s;
}

int corral_stream_feed(struct corral_stream *s, const char *buf, size_t len)
{
    if (s->stopped)
        return -1;
    struct corral_err err;
    int rc = corral_sse_feed(s->sse, buf, len, &err);
    if (rc < 0)
        stop(s, CORRAL_END_PERMANENT, err.msg); /* over a limit: endless or huge */
    return rc == 0 ? 0 : -1;
}

static char *result_json(struct corral_stream *s, size_t *len)
{
    json_t *text = json_stringn(s->text ? s->text : "", s->len);
    if (text == NULL) /* pieces are decoded JSON strings: UTF-8 unless cut mid-character */
        text = json_stringn_nocheck(s->text ? s->text : "", s->len);
    json_t *o = json_pack("{s:o, s:b, s:I}", "text", text, "streamed", 1, "events",
                          (json_int_t)corral_sse_events(s->sse));
    json_object_set_new(o, "model", s->usage.model[0] ? json_string(s->usage.model) : json_null());
    if (s->usage.input_tokens >= 0 || s->usage.output_tokens >= 0)
        json_object_set_new(o, "usage",
                            json_pack("{s:I, s:I}", "input_tokens",
                                      (json_int_t)s->usage.input_tokens, "output_tokens",
                                      (json_int_t)s->usage.output_tokens));
    char *out = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(o);
    if (out == NULL)
        abort(); /* only on OOM */
    *len = strlen(out);
    return out;
}

void corral_stream_end(struct corral_stream *s, const char *transfer_error,
                       enum corral_run_end *end, char **out, size_t *out_len)
{
    char why[CORRAL_ERR_MSG_MAX];
    struct corral_err err;
    if (s->stopped) {
        *end = s->end;
        snprintf(why, sizeof(why), "%s", s->why);
    } else if (transfer_error != NULL) {
        *end = CORRAL_END_RETRY;
        snprintf(why, sizeof(why), "event stream cut: %s", transfer_error);
    } else if (corral_sse_finish(s->sse, &err) < 0) {
        *end = CORRAL_END_RETRY;
        snprintf(why, sizeof(why), "%s", err.msg);
    } else if (!s->complete) {
        *end = CORRAL_END_RETRY;
        snprintf(why, sizeof(why),
                 "event stream ended after %llu events without its end event ([DONE], "
                 "message_stop or response.completed)",
                 (unsigned long long)corral_sse_events(s->sse));
    } else {
        *end = CORRAL_END_DONE;
        *out = result_json(s, out_len);
        return;
    }
    *out =
        corral_xasprintf("%s (%zu bytes of text streamed, kept in the job's stream)", why, s->len);
    *out_len = strlen(*out);
}

const struct corral_usage *corral_stream_usage(const struct corral_stream *s)
{
    return &s->usage;
}

void corral_stream_free(struct corral_stream *s)
{
    if (s == NULL)
        return;
    corral_sse_free(s->sse);
    free(s->text);
    free(s);
}

/* --- the sink ------------------------------------------------------------ */

struct corral_stream_sink {
    struct corral_conn *conn;
    const char *prefix;
    const char *worker_id;
    struct corral_log_repeat refused;
};

struct corral_stream_sink *corral_stream_sink_new(struct corral_conn *conn, const char *prefix,
                                                  const char *worker_id)
{
    struct corral_stream_sink *k = corral_xcalloc(1, sizeof(*k));
    k->conn = conn;
    k->prefix = prefix;
    k->worker_id = worker_id;
    corral_log_repeat_init(&k->refused, 0);
    return k;
}

void corral_stream_sink_free(struct corral_stream_sink *k)
{
    if (k == NULL)
        return;
    corral_log_repeat_end(&k->refused);
    free(k);
}

/* STALE or RECLAIMED need nothing here: the next renew stops the run. */
static void on_appended(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct corral_stream_sink *k = priv;
    redisReply *r = reply;
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        corral_logr(&k->refused, CORRAL_LOG_WARN,
                    "cannot append to a job's stream; followers miss pieces (the result is whole)",
                    "error=\"%s\"", r->str);
    else if (r != NULL)
        corral_log_repeat_end(&k->refused);
}

/* corral_stream_append of kind with one more argument (text or error). */
static void send_append(struct corral_stream_sink *k, const struct corral_run *run,
                        const char *kind, const char *arg, size_t len)
{
    struct corral_cmd cmd;
    corral_cmd_init(&cmd, "corral_stream_append", k->prefix, run->conf->name);
    corral_cmd_addstr(&cmd, k->worker_id);
    corral_cmd_addstr(&cmd, run->job.id);
    corral_cmd_addstr(&cmd, run->job.run);
    corral_cmd_addstr(&cmd, kind);
    corral_cmd_add(&cmd, arg, len);
    corral_conn_send(k->conn, on_appended, k, &cmd);
    corral_cmd_free(&cmd);
}

void corral_stream_sink_piece(struct corral_stream_sink *k, const struct corral_run *run,
                              const char *text, size_t len)
{
    if (k != NULL && len > 0)
        send_append(k, run, "text", text, len);
}

void corral_stream_sink_end(struct corral_stream_sink *k, const struct corral_run *run,
                            int complete, const char *error, size_t error_len)
{
    if (k != NULL)
        send_append(k, run, complete ? "complete" : "failed", error ? error : "",
                    error ? error_len : 0);
}

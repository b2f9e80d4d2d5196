/* The worker's control channel (control.h): a subscribed connection that
 * hears cancels of its runs the moment corral_cancel commits them, so a
 * cancelled call is closed within milliseconds, not at the next lease
 * renewal (docs/worker.md, "Cancel"). */
#include "control.h"

#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "connection.h"
#include "ctlmsg.h"
#include "corral/log.h"
#include "corral/util.h"

/* Queue names and ids are at most 64 bytes (queue/lua/prelude.lua); runs
 * are numbers. */
#define WORD_CAP 96

struct corral_control {
    struct corral_conn *conn;
    char *channel; /* <prefix>:ctl:<worker id> */
    corral_control_cancel_fn *fn;
    void *priv;
    int started;
    struct corral_log_repeat refused;
};

/* Every frame of the subscription: its confirmation, then the messages;
 * NULL when the connection went (the ready hook subscribes again). */
static void on_frame(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct corral_control *c = priv;
    redisReply *r = reply;
    if (r == NULL)
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[2]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(r->element[0]->str, "subscribe") == 0) {
        corral_log_repeat_end(&c->refused);
        return;
    }
    if (strcmp(r->element[0]->str, "message") != 0 || r->element[2]->len == 0)
        return; /* an empty message: another probe of this channel */
    char queue[WORD_CAP], id[WORD_CAP], run[WORD_CAP];
    if (corral_control_parse_cancel(r->element[2]->str, r->element[2]->len, queue, id, run,
                                    WORD_CAP) < 0) {
        corral_log_warn("unknown control message; ignored", "channel=%s message=\"%.80s\"",
                        c->channel, r->element[2]->str);
        return;
    }
    c->fn(c->priv, queue, id, run);
}

static void send2(struct corral_control *c, const char *a, const char *b, const char *d,
                  redisCallbackFn *fn)
{
    struct corral_cmd cmd = {0};
    corral_cmd_addstr(&cmd, a);
    corral_cmd_addstr(&cmd, b);
    if (d != NULL)
        corral_cmd_addstr(&cmd, d);
    corral_conn_send(c->conn, fn, c, &cmd);
    corral_cmd_free(&cmd);
}

/* The probe's answer. A SUBSCRIBE that Redis refuses (an ACL user without
 * the channel or the command) makes hiredis drop the connection, which
 * would then be made and dropped again for ever; a PUBLISH to the same
 * channel is refused the same way as a plain error reply, so it is asked
 * first. Refused: logged once, then counted, and the worker goes on
 * without the channel (cancels stop runs at the next lease renewal). */
static void on_probe(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct corral_control *c = priv;
    redisReply *r = reply;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        corral_logr(&c->refused, CORRAL_LOG_WARN,
                    "the redis user may not use the control channel; cancels reach running "
                    "jobs at the next lease renewal (docs/operations.md, the ACL line)",
                    "channel=%s error=\"%s\"", c->channel, r->str);
        return;
    }
    send2(c, "SUBSCRIBE", c->channel, NULL, on_frame);
}

static void on_ready(struct corral_conn *conn, void *priv)
{
    struct corral_control *c = priv;
    send2(c, "PUBLISH", c->channel, "", on_probe);
}

static const struct corral_conn_hooks control_hooks = {.ready = on_ready};

struct corral_control *corral_control_new(struct ev_loop *loop,
                                          const struct corral_redis_conf *conf,
                                          const char *password, const char *worker_id,
                                          corral_control_cancel_fn *fn, void *priv,
                                          struct corral_err *err)
{
    struct corral_control *c = corral_xcalloc(1, sizeof(*c));
    c->fn = fn;
    c->priv = priv;
    c->channel = corral_xasprintf("%s:ctl:%s", conf->prefix, worker_id);
    corral_log_repeat_init(&c->refused, 0);
    c->conn = corral_conn_new(loop, "control", conf, password, &control_hooks, c, err);
    if (c->conn == NULL) {
        corral_control_free(c);
        return NULL;
    }
    return c;
}

void corral_control_start(struct corral_control *c)
{
    if (c->started)
        return;
    c->started = 1;
    corral_conn_start(c->conn);
}

void corral_control_close(struct corral_control *c)
{
    if (c != NULL)
        corral_conn_close(c->conn, 0);
}

void corral_control_free(struct corral_control *c)
{
    if (c == NULL)
        return;
    corral_conn_free(c->conn);
    corral_log_repeat_end(&c->refused);
    free(c->channel);
    free(c);
}

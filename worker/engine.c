/* The worker engine: one libev loop driving two async Redis connections
 * (commands, and a second one that blocks on the queues' wake lists), the
 * job slots, batched outcome writes, lease renewal, the fd 3 channel to
 * corrald, and the drain on SIGTERM.
 *
 * What must stay true: a run's outcome is kept in memory until Redis has
 * acknowledged it, whatever happens to the connection (the run token makes a
 * late write harmless); nothing is reserved while draining or disconnected;
 * an idle worker blocks in BLPOP and never polls. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "corral/jsontext.h"
#include "corral/log.h"
#include "corral/redis.h"
#include "corral/util.h"
#include "corral/wmsg.h"
#include "worker.h"

#define BLOCK_TIMEOUT_S  1
#define RECONNECT_MAX_MS 5000
/* A connection with commands outstanding and no reply for this long is
 * taken for dead (a frozen server, a silent network partition) and replaced:
 * hiredis 0.14's async API has no command timeout of its own. */
#define STALL_MS 15000
/* After an error reply (a paused ACL, an unloaded library, an OOM server),
 * reserves and outcome writes wait this long, doubling up to the cap,
 * instead of repeating the failing call in every loop iteration. */
#define HOLD_MIN_MS 250
#define HOLD_MAX_MS 5000

/* An outcome waiting to be written, or being written. */
struct outcome {
    struct corral_wqueue *q;
    char *id;
    char *run;
    enum corral_run_end end;
    char *data;
    size_t len;
    int64_t delay_ms;
    int sent;
    struct outcome *next;
};

/* One async connection and its reconnect state. */
struct conn {
    struct corral_worker *w;
    const char *name;
    redisAsyncContext *ac;
    int ready; /* handshake done */
    int64_t backoff_ms;
    ev_timer retry;
    /* stall detection, checked every second */
    uint64_t replies;       /* replies received so far */
    uint64_t stall_replies; /* replies when the current wait began */
    int64_t stall_since_ms; /* 0 = nothing outstanding at the last check */
};

struct corral_worker {
    struct ev_loop *loop;
    struct corral_config *cfg;
    struct corral_wqueue *queues;
    size_t nq;
    char id[96];
    char *password;
    struct conn cmd;   /* commands */
    struct conn block; /* BLPOP on wake lists */
    int slots;
    int busy;
    struct corral_run *running;
    struct outcome *outcomes; /* FIFO: head is oldest */
    struct outcome **outcomes_tail;
    int reserving; /* a reserve round is in flight */
    int round_got; /* jobs got in the current round */
    int blocking;  /* a BLPOP is in flight */
    int flushing;  /* outcome batches in flight */
    int draining;  /* SIGTERM: take nothing new */
    int stopping;  /* closing connections on the way out */
    int said_ready;
    int exit_code;
    int64_t jobs_done;
    int64_t lease_ms;
    pid_t ppid;         /* corrald, when fd 3 is present */
    int64_t hold_ms;    /* current back-off after an error reply */
    ev_timer hold;      /* active while reserves and writes back off */
    ev_timer last_call; /* bounds the graceful close of the commands connection */
    struct corral_http *http;
    ev_prepare flush;
    ev_timer renew;
    ev_timer heartbeat;
    ev_timer drain_timer;
    ev_signal sigterm, sigint;
    /* fd 3 */
    int fd3;
    char *out;
    size_t out_len;
    ev_io out_io;
    int reported_busy;
};

static void conn_start(struct conn *c);
static void conn_setup(struct conn *c);
static void kick(struct corral_worker *w);
static void reclaim_unseen(struct corral_worker *w);
static void maybe_exit(struct corral_worker *w);
static void hold_off(struct corral_worker *w, const char *what, const char *error,
                     enum corral_err_word word);

/* --- fd 3 ------------------------------------------------------------- */

static void out_flush(struct corral_worker *w)
{
    while (w->out_len > 0) {
        ssize_t n = send(w->fd3, w->out, w->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(w->loop, &w->out_io);
            return;
        }
        if (n < 0) {
            /* corrald is gone; PR_SET_PDEATHSIG will stop us, stop talking. */
            close(w->fd3);
            w->fd3 = -1;
            w->out_len = 0;
            break;
        }
        memmove(w->out, w->out + n, w->out_len - (size_t)n);
        w->out_len -= (size_t)n;
    }
    ev_io_stop(w->loop, &w->out_io);
}

static void on_out_writable(struct ev_loop *loop, ev_io *io, int revents)
{
    out_flush(io->data);
}

static void say(struct corral_worker *w, const struct corral_wmsg *m)
{
    if (w->fd3 < 0)
        return;
    char line[CORRAL_WMSG_MAX];
    int n = corral_wmsg_format(m, line, sizeof(line));
    if (n < 0 || w->out_len + (size_t)n > 65536)
        return; /* corrald is not reading; heartbeats will resume the story */
    w->out = corral_xrealloc(w->out, w->out_len + (size_t)n);
    memcpy(w->out + w->out_len, line, (size_t)n);
    w->out_len += (size_t)n;
    out_flush(w);
}

static void say_busy(struct corral_worker *w)
{
    if (w->busy == w->reported_busy)
        return;
    w->reported_busy = w->busy;
    struct corral_wmsg m = {.type = CORRAL_WMSG_BUSY, .busy = w->busy, .slots = w->slots};
    say(w, &m);
}

static void conn_retry_later(struct conn *c);

/* Closes a connection at once (not after its pending replies). Pending
 * callbacks run with a NULL reply; a connected context also gets
 * on_disconnect, which schedules the reconnect. One still connecting gets
 * no disconnect callback, so the reconnect is scheduled here. */
static void conn_drop(struct conn *c)
{
    redisAsyncContext *ac = c->ac;
    if (ac == NULL)
        return;
    redisAsyncFree(ac);
    if (c->ac == ac)
        conn_retry_later(c);
}

/* Replaces a connection that has had commands outstanding and no reply for
 * limit_ms. Freeing it calls every pending callback with a NULL reply (the
 * outcomes in flight are kept and written again) and then on_disconnect,
 * which schedules the reconnect. */
static void conn_check_stall(struct conn *c, int64_t limit_ms)
{
    if (c->ac == NULL || c->ac->replies.head == NULL) {
        c->stall_since_ms = 0;
        return;
    }
    int64_t now = corral_now_ms();
    if (c->stall_since_ms == 0 || c->replies != c->stall_replies) {
        c->stall_since_ms = now;
        c->stall_replies = c->replies;
        return;
    }
    if (now - c->stall_since_ms < limit_ms)
        return;
    corral_log_warn("redis is not answering; reconnecting", "conn=%s waited_ms=%lld", c->name,
                    (long long)(now - c->stall_since_ms));
    c->stall_since_ms = 0;
    conn_drop(c);
}

/* Counts a reply on the connection (for stall detection). */
static void conn_replied(const redisAsyncContext *ac)
{
    struct conn *c = ac->data;
    if (c != NULL)
        c->replies++;
}

static int64_t own_rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    long long size = 0, res = 0;
    if (f != NULL) {
        if (fscanf(f, "%lld %lld", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return (int64_t)res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct corral_worker *w = t->data;
    struct corral_wmsg m = {.type = CORRAL_WMSG_HEARTBEAT,
                            .busy = w->busy,
                            .slots = w->slots,
                            .jobs = w->jobs_done,
                            .rss_kb = own_rss_kb()};
    say(w, &m);
    /* PR_SET_PDEATHSIG normally tells us; this also covers a parent that
     * died before prctl() ran, and reparenting to a subreaper. */
    if (w->fd3 >= 0 && getppid() != w->ppid && !w->draining) {
        corral_log_warn("corrald is gone; stopping", "worker=%s", w->id);
        kill(getpid(), SIGTERM);
    }
    conn_check_stall(&w->cmd, STALL_MS);
    conn_check_stall(&w->block, STALL_MS + BLOCK_TIMEOUT_S * 1000);
}

/* --- connections -------------------------------------------------------- */

static void conn_retry_later(struct conn *c)
{
    c->ready = 0;
    c->ac = NULL;
    if (c->w->stopping || (c->w->draining && c == &c->w->block))
        return;
    ev_timer_set(&c->retry, (double)c->backoff_ms / 1000.0, 0.0);
    ev_timer_start(c->w->loop, &c->retry);
    c->backoff_ms = c->backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : c->backoff_ms * 2;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->data;
    struct corral_worker *w = c->w;
    if (status != REDIS_OK && !w->stopping)
        corral_log_warn("redis connection lost", "conn=%s error=\"%s\" retry_ms=%lld", c->name,
                        ac->errstr, (long long)c->backoff_ms);
    if (c == &w->block)
        w->blocking = 0;
    else
        w->reserving = 0;
    if (c == &w->cmd && w->stopping)
        ev_timer_stop(w->loop, &w->last_call);
    conn_retry_later(c);
    maybe_exit(w);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->data;
    if (status != REDIS_OK) {
        corral_log_warn("cannot connect to redis", "conn=%s error=\"%s\" retry_ms=%lld", c->name,
                        ac->errstr, (long long)c->backoff_ms);
        conn_retry_later(c);
    }
}

/* The handshake's last reply: the connection may carry work now. */
static void on_handshake_done(redisAsyncContext *ac, void *reply, void *priv)
{
    struct conn *c = priv;
    redisReply *r = reply;
    conn_replied(ac);
    if (r == NULL)
        return; /* disconnected meanwhile; on_disconnect handles it */
    if (r->type == REDIS_REPLY_ERROR) {
        corral_log_err("redis handshake failed", "conn=%s error=\"%s\"", c->name, r->str);
        redisAsyncDisconnect(ac);
        return;
    }
    c->ready = 1;
    c->backoff_ms = 250;
    corral_log_info("connected to redis", "conn=%s url=%s", c->name, c->w->cfg->redis.url);
    if (c == &c->w->cmd && !c->w->said_ready) {
        c->w->said_ready = 1;
        struct corral_wmsg m = {.type = CORRAL_WMSG_READY, .slots = c->w->slots};
        say(c->w, &m);
    }
    if (c == &c->w->cmd)
        reclaim_unseen(c->w);
    kick(c->w);
}

/* Replies to AUTH, SELECT, FUNCTION LOAD and declares: any error ends the
 * connection (it is retried), logged with what failed. */
static void on_setup_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct conn *c = ac->data;
    redisReply *r = reply;
    conn_replied(ac);
    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        corral_log_err("redis setup failed", "conn=%s step=%s error=\"%s\"", c->name,
                       (const char *)priv, r->str);
        redisAsyncDisconnect(ac);
    }
}

static void on_version(redisAsyncContext *ac, void *reply, void *priv)
{
    struct conn *c = ac->data;
    struct corral_worker *w = c->w;
    redisReply *r = reply;
    conn_replied(ac);
    if (r == NULL)
        return;
    long long have = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (have < corral_functions_version())
        redisAsyncCommand(ac, on_setup_reply, "FUNCTION LOAD", "FUNCTION LOAD REPLACE %s",
                          corral_functions_source());
    /* A worker started by hand must be able to run alone: declare its queues
     * (the same settings corrald would declare). */
    for (size_t i = 0; i < w->nq; i++) {
        struct corral_cmd cmd;
        corral_cmd_declare(&cmd, w->cfg->redis.prefix, w->queues[i].conf);
        redisAsyncCommandArgv(ac, on_setup_reply, "declare", cmd.argc, (const char **)cmd.argv,
                              cmd.argvlen);
        corral_cmd_free(&cmd);
        if (w->queues[i].service != NULL) {
            corral_cmd_declare_service(&cmd, w->cfg->redis.prefix, w->queues[i].service);
            redisAsyncCommandArgv(ac, on_setup_reply, "declare service", cmd.argc,
                                  (const char **)cmd.argv, cmd.argvlen);
            corral_cmd_free(&cmd);
        }
    }
    redisAsyncCommand(ac, on_handshake_done, c, "PING");
}

static void conn_start(struct conn *c)
{
    struct corral_worker *w = c->w;
    struct corral_redis_addr a;
    struct corral_err err;
    if (corral_redis_parse_url(w->cfg->redis.url, &a, &err) < 0) {
        corral_log_err("bad redis url", "error=\"%s\"", err.msg);
        return;
    }
    redisAsyncContext *ac =
        a.path ? redisAsyncConnectUnix(a.path) : redisAsyncConnect(a.host, a.port);
    if (ac == NULL || ac->err) {
        corral_log_warn("cannot connect to redis", "conn=%s error=\"%s\"", c->name,
                        ac ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        corral_redis_addr_free(&a);
        conn_retry_later(c);
        return;
    }
    ac->data = c;
    c->ac = ac;
    redisLibevAttach(w->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (w->password != NULL) {
        if (a.user)
            redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s %s", a.user, w->password);
        else
            redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s", w->password);
    }
    if (a.db != 0)
        redisAsyncCommand(ac, on_setup_reply, "SELECT", "SELECT %d", a.db);
    if (a.host != NULL)
        redisEnableKeepAlive(&ac->c); /* notice a peer gone without a word */
    corral_redis_addr_free(&a);
    conn_setup(c);
}

/* The commands connection loads the function library when it is missing or
 * older and declares the worker's queues; both connections end the
 * handshake with a PING whose reply marks them ready. Run again (on a live
 * connection) when Redis says the library or a queue has gone, e.g. after
 * FUNCTION FLUSH or FLUSHALL. */
static void conn_setup(struct conn *c)
{
    c->ready = 0;
    if (c == &c->w->cmd)
        redisAsyncCommand(c->ac, on_version, NULL, "FCALL_RO corral_version 0");
    else
        redisAsyncCommand(c->ac, on_handshake_done, c, "PING");
}

static void on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    conn_start(t->data);
}

/* --- runs and outcomes ------------------------------------------------ */

static enum corral_defer_kind defer_kind(enum corral_run_end end)
{
    return end == CORRAL_RUN_THROTTLE ? CORRAL_DEFER_THROTTLE
           : end == CORRAL_RUN_QUOTA  ? CORRAL_DEFER_QUOTA
                                      : CORRAL_DEFER_PLAIN;
}

/* Which call writes an outcome: 0 ack, 1 fail, 2 defer. */
static int outcome_call(const struct outcome *o)
{
    switch (o->end) {
    case CORRAL_RUN_DONE:
        return 0;
    case CORRAL_RUN_DEFER:
    case CORRAL_RUN_THROTTLE:
    case CORRAL_RUN_QUOTA:
        return 2;
    default:
        return 1;
    }
}

static void free_outcome(struct outcome *o)
{
    free(o->id);
    free(o->run);
    free(o->data);
    free(o);
}

void corral_run_finish(struct corral_run *run, enum corral_run_end end, const char *data,
                       size_t len, int64_t delay_ms)
{
    struct corral_worker *w = run->w;
    for (struct corral_run **p = &w->running; *p; p = &(*p)->next) {
        if (*p == run) {
            *p = run->next;
            break;
        }
    }
    w->busy--;
    int64_t ms = corral_now_ms() - run->started_ms;
    if (end != CORRAL_RUN_ABORTED) {
        struct outcome *o = corral_xcalloc(1, sizeof(*o));
        o->q = run->q;
        o->id = run->job.id;
        o->run = run->job.run;
        run->job.id = run->job.run = NULL;
        o->end = end;
        o->data = corral_xstrndup(data ? data : "", data ? len : 0);
        o->len = data ? len : 0;
        o->delay_ms = delay_ms;
        *w->outcomes_tail = o;
        w->outcomes_tail = &o->next;
        w->jobs_done++;
        static const enum corral_wmsg_outcome map[] = {[CORRAL_RUN_DONE] = CORRAL_OUTCOME_OK,
                                                       [CORRAL_RUN_RETRY] = CORRAL_OUTCOME_RETRY,
                                                       [CORRAL_RUN_PERMANENT] = CORRAL_OUTCOME_DEAD,
                                                       [CORRAL_RUN_DEFER] = CORRAL_OUTCOME_DEFER,
                                                       [CORRAL_RUN_THROTTLE] = CORRAL_OUTCOME_DEFER,
                                                       [CORRAL_RUN_QUOTA] = CORRAL_OUTCOME_DEFER};
        struct corral_wmsg m = {.type = CORRAL_WMSG_DONE, .ms = ms, .outcome = map[end]};
        snprintf(m.queue, sizeof(m.queue), "%s", run->q->conf->name);
        say(w, &m);
        if (end != CORRAL_RUN_DONE)
            corral_log_info("job failed", "queue=%s id=%s attempt=%d outcome=%s error=\"%.*s\"",
                            run->q->conf->name, o->id, run->job.attempts,
                            corral_wmsg_outcome_name(map[end]), (int)(o->len > 300 ? 300 : o->len),
                            o->data);
    }
    free(run->job.id);
    free(run->job.run);
    free(run->job.priority);
    free(run->job.service);
    free(run->job.payload);
    free(run);
    say_busy(w);
    /* Flushing and the next reserve happen in the prepare watcher, once per
     * loop iteration, so completions of one iteration share one write. */
}

struct batch {
    struct corral_worker *w;
    struct outcome **items;
    size_t n;
};

static void on_batch_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct batch *b = priv;
    struct corral_worker *w = b->w;
    redisReply *r = reply;
    conn_replied(ac);
    w->flushing--;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        /* Keep them: they are written again after a reconnect, or after a
         * back-off for an error reply. */
        if (r != NULL)
            hold_off(w, "writing outcomes", r->str, corral_reply_word(r->str, r->len));
        for (size_t i = 0; i < b->n; i++)
            b->items[i]->sent = 0;
    } else {
        if (!ev_is_active(&w->hold))
            w->hold_ms = 0;
        /* Written: each outcome is dropped now, recorded or refused. */
        enum corral_run_status *st = corral_xcalloc(b->n, sizeof(*st));
        struct corral_err err;
        if (corral_reply_runs(r, st, b->n, &err) < 0) {
            corral_log_warn("outcomes written, reply not understood", "error=\"%s\"", err.msg);
            for (size_t i = 0; i < b->n; i++)
                st[i] = CORRAL_STATUS_DONE;
        }
        for (size_t i = 0; i < b->n; i++) {
            struct outcome *o = b->items[i];
            if (st[i] == CORRAL_STATUS_STALE)
                corral_log_warn("outcome not recorded: a newer run of the job exists",
                                "queue=%s id=%s run=%s", o->q->conf->name, o->id, o->run);
            else if (st[i] == CORRAL_STATUS_RECLAIMED)
                corral_log_notice("outcome dropped: this run's lease was reclaimed and the job "
                                  "requeued or ended",
                                  "queue=%s id=%s run=%s", o->q->conf->name, o->id, o->run);
            for (struct outcome **p = &w->outcomes; *p; p = &(*p)->next) {
                if (*p == o) {
                    *p = o->next;
                    if (w->outcomes_tail == &o->next)
                        w->outcomes_tail = p;
                    break;
                }
            }
            free_outcome(o);
        }
        free(st);
    }
    free(b->items);
    free(b);
    maybe_exit(w);
}

/* Sends every unsent outcome, one FCALL per queue and kind. */
static void flush_outcomes(struct corral_worker *w)
{
    if (!w->cmd.ready || w->outcomes == NULL || ev_is_active(&w->hold))
        return;
    for (size_t qi = 0; qi < w->nq; qi++) {
        struct corral_wqueue *q = &w->queues[qi];
        for (int kind = 0; kind < 3; kind++) { /* 0 ack, 1 fail, 2 defer */
            size_t n = 0;
            for (struct outcome *o = w->outcomes; o; o = o->next) {
                int k = outcome_call(o);
                if (!o->sent && o->q == q && k == kind)
                    n++;
            }
            if (n == 0)
                continue;
            struct batch *b = corral_xcalloc(1, sizeof(*b));
            b->w = w;
            b->items = corral_xcalloc(n, sizeof(struct outcome *));
            struct corral_outcome *oc = corral_xcalloc(n, sizeof(*oc));
            for (struct outcome *o = w->outcomes; o; o = o->next) {
                int k = outcome_call(o);
                if (o->sent || o->q != q || k != kind)
                    continue;
                oc[b->n] = (struct corral_outcome){.id = o->id,
                                                   .run = o->run,
                                                   .data = o->data,
                                                   .len = o->len,
                                                   .permanent = o->end == CORRAL_RUN_PERMANENT,
                                                   .delay_ms = o->delay_ms,
                                                   .defer_kind = defer_kind(o->end)};
                o->sent = 1;
                b->items[b->n++] = o;
            }
            struct corral_cmd cmd;
            const char *prefix = w->cfg->redis.prefix;
            if (kind == 0)
                corral_cmd_ack(&cmd, prefix, q->conf->name, w->id, oc, n);
            else if (kind == 1)
                corral_cmd_fail(&cmd, prefix, q->conf->name, w->id, oc, n);
            else
                corral_cmd_defer(&cmd, prefix, q->conf->name, w->id, oc, n);
            w->flushing++;
            if (redisAsyncCommandArgv(w->cmd.ac, on_batch_reply, b, cmd.argc,
                                      (const char **)cmd.argv, cmd.argvlen) != REDIS_OK) {
                w->flushing--;
                for (size_t i = 0; i < b->n; i++)
                    b->items[i]->sent = 0;
                free(b->items);
                free(b);
            }
            corral_cmd_free(&cmd);
            free(oc);
        }
    }
}

static void on_prepare(struct ev_loop *loop, ev_prepare *p, int revents)
{
    struct corral_worker *w = p->data;
    flush_outcomes(w);
    kick(w);
    maybe_exit(w);
}

/* --- reserving -------------------------------------------------------- */

static void start_run(struct corral_worker *w, struct corral_wqueue *q, struct corral_job *job)
{
    struct corral_run *run = corral_xcalloc(1, sizeof(*run));
    run->w = w;
    run->q = q;
    run->job = *job;
    memset(job, 0, sizeof(*job));
    run->started_ms = corral_now_ms();
    run->next = w->running;
    w->running = run;
    w->busy++;
    /* Redis checks a payload's grammar at enqueue but not its characters
     * (queue/lua/prelude.lua says why): a payload that is not JSON text would make the
     * service answer 400 at best, so it ends dead here, before any call. */
    char why[96];
    if (corral_json_text_check(run->job.payload, run->job.payload_len, why, sizeof(why)) < 0) {
        char msg[160];
        int len = snprintf(msg, sizeof(msg), "payload is not valid JSON (%s)", why);
        corral_run_finish(run, CORRAL_RUN_PERMANENT, msg, (size_t)len, 0);
        return;
    }
    switch (q->conf->handler) {
    case CORRAL_HANDLER_ECHO:
        corral_echo_start(run);
        break;
    case CORRAL_HANDLER_EXEC:
        corral_exec_start(run);
        break;
    case CORRAL_HANDLER_HTTP:
        corral_http_start(w->http, run);
        break;
    }
}

static void reserve_from(struct corral_worker *w, size_t qi);

/* The first queue from qi on whose service may take calls now, or nq. */
static size_t open_queue(const struct corral_worker *w, size_t qi)
{
    int64_t now = corral_now_ms();
    while (qi < w->nq && w->queues[qi].gated_until_ms > now)
        qi++;
    return qi;
}

/* Keeps what reserve said about the queue's service; logs each new gate
 * once (a gate that only moves its deadline is the same gate). */
static void note_gate(struct corral_worker *w, struct corral_wqueue *q, const struct corral_gate *g)
{
    if (g->wait_ms == 0 || q->svc_wake_key == NULL) {
        if (q->gate_why[0] != '\0')
            corral_log_info("service takes calls again", "worker=%s queue=%s service=%s", w->id,
                            q->conf->name, q->service->name);
        q->gated_until_ms = 0;
        q->gate_why[0] = '\0';
        return;
    }
    q->gated_until_ms = corral_now_ms() + g->wait_ms;
    if (strcmp(q->gate_why, g->why) != 0) {
        corral_log_info("service takes no calls for now; jobs wait in the queue",
                        "worker=%s queue=%s service=%s wait_ms=%lld reason=\"%s\"", w->id,
                        q->conf->name, q->service->name, (long long)g->wait_ms, g->why);
        snprintf(q->gate_why, sizeof(q->gate_why), "%s", g->why);
    }
}

static void on_blpop(redisAsyncContext *ac, void *reply, void *priv)
{
    struct corral_worker *w = priv;
    redisReply *r = reply;
    conn_replied(ac);
    w->blocking = 0;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR)
        hold_off(w, "waiting for work (BLPOP)", r->str, corral_reply_word(r->str, r->len));
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING) {
        /* The service changed state (closed, reset, a call slot freed):
         * its queues may be asked again at once. */
        for (size_t i = 0; i < w->nq; i++) {
            struct corral_wqueue *q = &w->queues[i];
            if (q->svc_wake_key != NULL && strcmp(q->svc_wake_key, r->element[0]->str) == 0)
                q->gated_until_ms = 0;
        }
    }
    kick(w);
}

static void block_for_work(struct corral_worker *w)
{
    if (w->blocking || !w->block.ready || w->draining)
        return;
    /* A queue whose service takes no calls now waits on the service's wake
     * list instead of its own: enqueues would only wake us for nothing. */
    struct corral_cmd cmd = {0};
    corral_cmd_addstr(&cmd, "BLPOP");
    int64_t now = corral_now_ms();
    for (size_t i = 0; i < w->nq; i++) {
        const struct corral_wqueue *q = &w->queues[i];
        corral_cmd_addstr(&cmd, q->gated_until_ms > now ? q->svc_wake_key : q->wake_key);
    }
    corral_cmd_addint(&cmd, BLOCK_TIMEOUT_S);
    if (redisAsyncCommandArgv(w->block.ac, on_blpop, w, cmd.argc, (const char **)cmd.argv,
                              cmd.argvlen) == REDIS_OK)
        w->blocking = 1;
    corral_cmd_free(&cmd);
}

struct reserve_ctx {
    struct corral_worker *w;
    size_t qi;
    int asked;
};

static void on_reserve(redisAsyncContext *ac, void *reply, void *priv)
{
    struct reserve_ctx *rc = priv;
    struct corral_worker *w = rc->w;
    size_t qi = rc->qi;
    int asked = rc->asked;
    free(rc);
    conn_replied(ac);
    if (reply == NULL) {
        /* Redis may have leased jobs to us before the connection went: they
         * are taken back as soon as it is up again (reclaim_unseen). */
        w->reserving = 0;
        if (!w->stopping)
            w->queues[qi].lost_reserve = 1;
        return;
    }
    struct corral_job *jobs = NULL;
    size_t n = 0;
    struct corral_err err;
    struct corral_gate gate;
    if (corral_reply_reserve(reply, &jobs, &n, &gate, &err) < 0) {
        char what[128];
        snprintf(what, sizeof(what), "reserving from queue %s", w->queues[qi].conf->name);
        w->reserving = 0;
        hold_off(w, what, err.msg, err.word);
        return;
    }
    if (!ev_is_active(&w->hold))
        w->hold_ms = 0;
    note_gate(w, &w->queues[qi], &gate);
    for (size_t i = 0; i < n; i++) {
        if (w->draining) {
            /* Leased just before SIGTERM: hand it back at once, without
             * spending the attempt, rather than start new work. */
            struct outcome *o = corral_xcalloc(1, sizeof(*o));
            o->q = &w->queues[qi];
            o->id = jobs[i].id;
            o->run = jobs[i].run;
            jobs[i].id = jobs[i].run = NULL;
            o->end = CORRAL_RUN_DEFER;
            o->data = corral_xstrdup("");
            *w->outcomes_tail = o;
            w->outcomes_tail = &o->next;
        } else {
            start_run(w, &w->queues[qi], &jobs[i]);
        }
    }
    corral_jobs_free(jobs, n);
    say_busy(w);
    w->round_got += (int)n;
    int free_slots = w->slots - w->busy;
    size_t next = open_queue(w, qi + 1);
    if (w->draining || free_slots <= 0 || !w->cmd.ready) {
        w->reserving = 0;
    } else if ((int)n == asked && gate.wait_ms == 0) {
        reserve_from(w, qi); /* there may be more of this queue */
    } else if (next < w->nq) {
        reserve_from(w, next);
    } else {
        w->reserving = 0;
        if (w->round_got == 0)
            block_for_work(w);
        else
            w->round_got = 0, kick(w);
    }
}

static void reserve_from(struct corral_worker *w, size_t qi)
{
    struct reserve_ctx *rc = corral_xcalloc(1, sizeof(*rc));
    rc->w = w;
    rc->qi = qi;
    rc->asked = w->slots - w->busy;
    struct corral_cmd cmd;
    corral_cmd_reserve(&cmd, w->cfg->redis.prefix, w->queues[qi].conf->name, w->id, rc->asked,
                       w->queues[qi].max_inflight);
    w->reserving = 1;
    if (redisAsyncCommandArgv(w->cmd.ac, on_reserve, rc, cmd.argc, (const char **)cmd.argv,
                              cmd.argvlen) != REDIS_OK) {
        w->reserving = 0;
        free(rc);
    }
    corral_cmd_free(&cmd);
}

static void on_reclaim_unseen(redisAsyncContext *ac, void *reply, void *priv)
{
    struct corral_wqueue *q = priv;
    redisReply *r = reply;
    conn_replied(ac);
    if (r == NULL) {
        q->lost_reserve = 1; /* lost again: asked once more after the next reconnect */
    } else if (r->type == REDIS_REPLY_ERROR) {
        corral_log_err("cannot take back jobs leased by a lost reserve; their leases will expire",
                       "queue=%s error=\"%s\"", q->conf->name, r->str);
    } else if (r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
        corral_log_warn("took back jobs leased by a reserve whose reply was lost",
                        "queue=%s jobs=%lld", q->conf->name, r->integer);
    }
}

/* After a reconnect, before any new reserve on the connection: a reserve
 * whose reply was lost may have leased jobs that this worker never saw, and
 * nobody would requeue them until their leases expire. Redis requeues every
 * job leased to this worker id except those it still holds (running, or
 * with an outcome not yet written), giving their attempts back. */
static void reclaim_unseen(struct corral_worker *w)
{
    for (size_t qi = 0; qi < w->nq; qi++) {
        struct corral_wqueue *q = &w->queues[qi];
        if (!q->lost_reserve)
            continue;
        q->lost_reserve = 0;
        struct corral_cmd cmd;
        corral_cmd_reclaim_keep(&cmd, w->cfg->redis.prefix, q->conf->name, w->id);
        for (struct corral_run *r = w->running; r; r = r->next)
            if (r->q == q)
                corral_cmd_addstr(&cmd, r->job.id);
        for (struct outcome *o = w->outcomes; o; o = o->next)
            if (o->q == q)
                corral_cmd_addstr(&cmd, o->id);
        if (redisAsyncCommandArgv(w->cmd.ac, on_reclaim_unseen, q, cmd.argc,
                                  (const char **)cmd.argv, cmd.argvlen) != REDIS_OK)
            q->lost_reserve = 1;
        corral_cmd_free(&cmd);
    }
}

/* Starts a reserve round when there are free slots and nothing blocks it. */
static void kick(struct corral_worker *w)
{
    if (w->draining || w->reserving || w->blocking || !w->cmd.ready || w->busy >= w->slots ||
        ev_is_active(&w->hold))
        return;
    w->round_got = 0;
    size_t qi = open_queue(w, 0);
    if (qi < w->nq)
        reserve_from(w, qi);
    else
        block_for_work(w);
}

/* --- leases ----------------------------------------------------------- */

/* A renew call in flight: which runs it asked about, copied, since any of
 * them may end before the reply arrives. */
struct renew_ctx {
    struct corral_worker *w;
    struct corral_wqueue *q;
    size_t n;
    char **ids;
    char **runs;
};

static void renew_ctx_free(struct renew_ctx *rc)
{
    for (size_t i = 0; i < rc->n; i++) {
        free(rc->ids[i]);
        free(rc->runs[i]);
    }
    free(rc->ids);
    free(rc->runs);
    free(rc);
}

/* A run whose lease is lost (reclaimed, the job ran again elsewhere, or
 * ended) can no longer record an outcome: the function library would answer
 * STALE or RECLAIMED.
 * Stop it rather than spend an AI call nobody will keep. */
static void abort_lost_run(struct corral_worker *w, struct corral_wqueue *q, const char *id,
                           const char *run)
{
    for (struct corral_run *r = w->running; r; r = r->next) {
        if (r->q != q || strcmp(r->job.id, id) != 0 || strcmp(r->job.run, run) != 0)
            continue;
        corral_log_warn("lease lost: it was reclaimed, a newer run exists or the job ended; "
                        "stopping this run",
                        "queue=%s id=%s run=%s", q->conf->name, id, run);
        if (r->abort != NULL)
            r->abort(r);
        else
            corral_run_finish(r, CORRAL_RUN_ABORTED, NULL, 0, 0);
        return;
    }
}

static void on_renew_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct renew_ctx *rc = priv;
    redisReply *r = reply;
    conn_replied(ac);
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        corral_log_warn("lease renewal failed", "queue=%s error=\"%s\"", rc->q->conf->name, r->str);
    enum corral_run_status *st = corral_xcalloc(rc->n, sizeof(*st));
    struct corral_err err;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && !rc->w->stopping &&
        corral_reply_runs(r, st, rc->n, &err) == 0) {
        for (size_t i = 0; i < rc->n; i++)
            if (st[i] == CORRAL_STATUS_STALE || st[i] == CORRAL_STATUS_RECLAIMED)
                abort_lost_run(rc->w, rc->q, rc->ids[i], rc->runs[i]);
    }
    free(st);
    renew_ctx_free(rc);
}

/* Every lease/3: one corral_renew call per queue for all its running jobs.
 * While Redis is away nothing is sent; the jobs keep running, and one whose
 * lease was reclaimed meanwhile is stopped when the next renew answers
 * RECLAIMED. */
static void on_renew(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct corral_worker *w = t->data;
    if (!w->cmd.ready)
        return;
    for (size_t qi = 0; qi < w->nq; qi++) {
        struct corral_wqueue *q = &w->queues[qi];
        size_t n = 0;
        for (struct corral_run *r = w->running; r; r = r->next)
            n += r->q == q;
        if (n == 0)
            continue;
        struct corral_outcome *oc = corral_xcalloc(n, sizeof(*oc));
        struct renew_ctx *rc = corral_xcalloc(1, sizeof(*rc));
        rc->w = w;
        rc->q = q;
        rc->ids = corral_xcalloc(n, sizeof(char *));
        rc->runs = corral_xcalloc(n, sizeof(char *));
        for (struct corral_run *r = w->running; r; r = r->next) {
            if (r->q != q)
                continue;
            oc[rc->n] = (struct corral_outcome){.id = r->job.id, .run = r->job.run};
            rc->ids[rc->n] = corral_xstrdup(r->job.id);
            rc->runs[rc->n] = corral_xstrdup(r->job.run);
            rc->n++;
        }
        struct corral_cmd cmd;
        corral_cmd_renew(&cmd, w->cfg->redis.prefix, q->conf->name, w->id, oc, n);
        if (redisAsyncCommandArgv(w->cmd.ac, on_renew_reply, rc, cmd.argc, (const char **)cmd.argv,
                                  cmd.argvlen) != REDIS_OK)
            renew_ctx_free(rc);
        corral_cmd_free(&cmd);
        free(oc);
    }
}

/* --- back-off after error replies ------------------------------------- */

static void on_hold_end(struct ev_loop *loop, ev_timer *t, int revents)
{
    /* Nothing to do: the prepare watcher flushes and reserves again. */
}

/* An error reply to a reserve, a write or a BLPOP: log it, pause reserves
 * and writes for a growing while (never a busy loop against a failing
 * Redis), and set the connection up again when the library or a queue
 * declaration is gone. */
static void hold_off(struct corral_worker *w, const char *what, const char *error,
                     enum corral_err_word word)
{
    w->hold_ms = w->hold_ms == 0                ? HOLD_MIN_MS
                 : w->hold_ms * 2 > HOLD_MAX_MS ? HOLD_MAX_MS
                                                : w->hold_ms * 2;
    corral_log_err("redis refused a call; backing off", "call=\"%s\" error=\"%s\" retry_ms=%lld",
                   what, error, (long long)w->hold_ms);
    ev_timer_stop(w->loop, &w->hold);
    ev_timer_set(&w->hold, (double)w->hold_ms / 1000.0, 0.0);
    ev_timer_start(w->loop, &w->hold);
    if (w->cmd.ready && w->cmd.ac != NULL &&
        (word == CORRAL_WORD_NOQUEUE || word == CORRAL_WORD_NOFUNCTION)) {
        corral_log_warn("function library or queue missing in redis; setting them up again",
                        "worker=%s", w->id);
        conn_setup(&w->cmd);
    }
}

/* --- stopping --------------------------------------------------------- */

/* Closes the BLPOP connection now: a graceful disconnect would wait up to
 * the BLPOP timeout for its reply. */
static void drop_blocking(struct corral_worker *w)
{
    conn_drop(&w->block);
}

/* Stops every watcher and closes the connections; ev_run returns once
 * hiredis has finished with them (so nothing is left allocated). */
static void on_last_call(struct ev_loop *loop, ev_timer *t, int revents);

static void stop_everything(struct corral_worker *w)
{
    w->stopping = 1;
    ev_prepare_stop(w->loop, &w->flush);
    ev_timer_stop(w->loop, &w->renew);
    ev_timer_stop(w->loop, &w->heartbeat);
    ev_timer_stop(w->loop, &w->drain_timer);
    ev_timer_stop(w->loop, &w->hold);
    ev_timer_stop(w->loop, &w->cmd.retry);
    ev_timer_stop(w->loop, &w->block.retry);
    ev_io_stop(w->loop, &w->out_io);
    drop_blocking(w);
    if (w->cmd.ac != NULL) {
        /* Gracefully, after its pending replies, unless Redis does not
         * answer within a moment: then at once. */
        redisAsyncDisconnect(w->cmd.ac);
        if (w->cmd.ac != NULL) {
            ev_timer_set(&w->last_call, 2.0, 0.0);
            ev_timer_start(w->loop, &w->last_call);
        }
    }
}

static void on_last_call(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct corral_worker *w = t->data;
    corral_log_warn("redis did not answer the last commands; closing", "worker=%s", w->id);
    conn_drop(&w->cmd);
}

static void maybe_exit(struct corral_worker *w)
{
    /* A reserve in flight may still bring jobs leased to us: wait for it. */
    if (w->stopping || !w->draining || w->running != NULL || w->outcomes != NULL ||
        w->flushing > 0 || w->reserving)
        return;
    corral_log_info("drained; exiting", "worker=%s jobs=%lld", w->id, (long long)w->jobs_done);
    stop_everything(w);
}

static void abort_all(struct corral_worker *w, const char *why)
{
    size_t lost = 0;
    for (struct outcome *o = w->outcomes; o; o = o->next)
        lost++;
    corral_log_warn("stopping now", "worker=%s reason=\"%s\" running=%d unwritten_outcomes=%zu",
                    w->id, why, w->busy, lost);
    while (w->running != NULL) {
        /* Unlinked here; corral_run_finish then finds nothing to unlink. */
        struct corral_run *r = w->running;
        w->running = r->next;
        if (r->abort != NULL)
            r->abort(r);
        else
            corral_run_finish(r, CORRAL_RUN_ABORTED, NULL, 0, 0);
    }
    w->exit_code = 1;
    stop_everything(w);
}

static void on_drain_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    abort_all(t->data, "drain_timeout passed");
}

static void on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    struct corral_worker *w = s->data;
    if (w->draining) {
        abort_all(w, "second signal");
        return;
    }
    w->draining = 1;
    corral_log_info("draining: finishing running jobs, taking no new ones", "worker=%s running=%d",
                    w->id, w->busy);
    struct corral_wmsg m = {.type = CORRAL_WMSG_STOPPING};
    say(w, &m);
    ev_timer_set(&w->drain_timer, (double)w->cfg->pool.drain_timeout_ms / 1000.0, 0.0);
    ev_timer_start(loop, &w->drain_timer);
    drop_blocking(w); /* may find nothing left to do and stop everything */
    maybe_exit(w);
}

/* --- setup ------------------------------------------------------------ */

struct corral_worker *corral_worker_new(struct ev_loop *loop, const struct corral_worker_opts *o,
                                        struct corral_err *err)
{
    struct corral_worker *w = corral_xcalloc(1, sizeof(*w));
    w->loop = loop;
    w->cfg = o->cfg;
    w->fd3 = o->fd3;
    w->slots = o->concurrency;
    w->reported_busy = -1;
    w->ppid = getppid();
    w->outcomes_tail = &w->outcomes;
    w->queues = corral_xcalloc(o->nqueues, sizeof(*w->queues));
    w->nq = o->nqueues;
    const char *wid = getenv("CORRAL_WORKER_ID");
    char host[64] = "localhost";
    gethostname(host, sizeof(host) - 1);
    if (wid != NULL && wid[0] != '\0')
        snprintf(w->id, sizeof(w->id), "%s", wid);
    else
        snprintf(w->id, sizeof(w->id), "%s:%d", host, (int)getpid());
    w->lease_ms = INT64_MAX;
    for (size_t i = 0; i < o->nqueues; i++) {
        struct corral_wqueue *q = &w->queues[i];
        q->conf = corral_config_queue(o->cfg, o->queues[i]);
        if (q->conf == NULL) {
            corral_err_set(err, CORRAL_ERR_NOTFOUND, "queue \"%s\" has no [queue] section",
                           o->queues[i]);
            corral_worker_free(w);
            return NULL;
        }
        q->wake_key = corral_xasprintf("%s:{%s}:wake", o->cfg->redis.prefix, q->conf->name);
        if (q->conf->lease_ms < w->lease_ms)
            w->lease_ms = q->conf->lease_ms;
        if (q->conf->handler == CORRAL_HANDLER_EXEC) {
            q->argv = corral_split_command(q->conf->command, err);
            if (q->argv == NULL) {
                corral_err_prefix(err, "[queue %s] command", q->conf->name);
                corral_worker_free(w);
                return NULL;
            }
        } else if (q->conf->handler == CORRAL_HANDLER_HTTP) {
            q->service = corral_config_service(o->cfg, q->conf->service);
            const char *colon = strrchr(w->id, ':');
            char *whost =
                colon ? corral_xstrndup(w->id, (size_t)(colon - w->id)) : corral_xstrdup(w->id);
            q->svc_wake_key =
                corral_service_wake_key(o->cfg->redis.prefix, q->service->name, whost);
            free(whost);
            q->max_inflight = q->service->max_inflight;
            if (q->service->api_key_file != NULL) {
                q->api_key = corral_read_secret(q->service->api_key_file, err);
                if (q->api_key == NULL) {
                    corral_err_prefix(err, "[service %s] api_key_file", q->service->name);
                    corral_worker_free(w);
                    return NULL;
                }
            }
            if (w->http == NULL && (w->http = corral_http_new(loop, err)) == NULL) {
                corral_worker_free(w);
                return NULL;
            }
        }
    }
    if (o->cfg->redis.password_file != NULL) {
        w->password = corral_read_secret(o->cfg->redis.password_file, err);
        if (w->password == NULL) {
            corral_worker_free(w);
            return NULL;
        }
    }
    struct conn *conns[2] = {&w->cmd, &w->block};
    const char *names[2] = {"commands", "blocking"};
    for (int i = 0; i < 2; i++) {
        conns[i]->w = w;
        conns[i]->name = names[i];
        conns[i]->backoff_ms = 250;
        ev_timer_init(&conns[i]->retry, on_retry, 0.0, 0.0);
        conns[i]->retry.data = conns[i];
    }
    ev_prepare_init(&w->flush, on_prepare);
    w->flush.data = w;
    double renew_s = (double)w->lease_ms / 3000.0;
    ev_timer_init(&w->renew, on_renew, renew_s, renew_s);
    w->renew.data = w;
    ev_timer_init(&w->heartbeat, on_heartbeat, 1.0, 1.0);
    w->heartbeat.data = w;
    ev_timer_init(&w->drain_timer, on_drain_timeout, 0.0, 0.0);
    w->drain_timer.data = w;
    ev_timer_init(&w->hold, on_hold_end, 0.0, 0.0);
    w->hold.data = w;
    ev_timer_init(&w->last_call, on_last_call, 0.0, 0.0);
    w->last_call.data = w;
    ev_signal_init(&w->sigterm, on_signal, SIGTERM);
    w->sigterm.data = w;
    ev_signal_init(&w->sigint, on_signal, SIGINT);
    w->sigint.data = w;
    ev_io_init(&w->out_io, on_out_writable, w->fd3, EV_WRITE);
    w->out_io.data = w;
    return w;
}

int corral_worker_run(struct corral_worker *w)
{
    if (w->fd3 >= 0) {
        /* Never outlive corrald; if it is already gone, stop now. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() == 1)
            return 1;
    }
    ev_prepare_start(w->loop, &w->flush);
    ev_timer_start(w->loop, &w->renew);
    ev_timer_start(w->loop, &w->heartbeat);
    /* Signal watchers stay on to the end (a third SIGTERM must not kill us
     * mid-exit) without keeping the loop alive. */
    ev_signal_start(w->loop, &w->sigterm);
    ev_signal_start(w->loop, &w->sigint);
    ev_unref(w->loop);
    ev_unref(w->loop);
    conn_start(&w->cmd);
    conn_start(&w->block);
    corral_log_info("worker started", "worker=%s queues=%zu concurrency=%d", w->id, w->nq,
                    w->slots);
    ev_run(w->loop, 0);
    return w->exit_code;
}

void corral_worker_free(struct corral_worker *w)
{
    if (w == NULL)
        return;
    while (w->outcomes != NULL) {
        struct outcome *o = w->outcomes;
        w->outcomes = o->next;
        free_outcome(o);
    }
    for (size_t i = 0; i < w->nq; i++) {
        free(w->queues[i].wake_key);
        free(w->queues[i].svc_wake_key);
        corral_argv_free(w->queues[i].argv);
        if (w->queues[i].api_key != NULL) {
            explicit_bzero(w->queues[i].api_key, strlen(w->queues[i].api_key));
            free(w->queues[i].api_key);
        }
    }
    free(w->queues);
    if (w->password != NULL) {
        explicit_bzero(w->password, strlen(w->password));
        free(w->password);
    }
    corral_http_free(w->http);
    free(w->out);
    free(w);
}

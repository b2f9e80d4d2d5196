/* The worker engine: job slots, reserving work (and blocking in BLPOP when
 * there is none), lease renewal, and the drain on SIGTERM, on one libev
 * loop. Its parts: connection.c (the two Redis connections), outcomes.c
 * (writing how runs ended), channel.c (fd 3 to corrald), and the handlers
 * behind handler.h.
 *
 * What must stay true: nothing is reserved while draining, disconnected,
 * or holding more unwritten outcomes than slots (back-pressure); a run
 * whose lease is lost is aborted and writes nothing; an idle worker blocks
 * in BLPOP and never polls. */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel.h"
#include "connection.h"
#include "control.h"
#include "corral/jsontext.h"
#include "corral/log.h"
#include "corral/util.h"
#include "handler.h"
#include "outcomes.h"
#include "stream.h"
#include "worker.h"
#include "wqueue.h"

#define BLOCK_TIMEOUT_S 1
/* A connection with commands outstanding and no reply for this long is
 * taken for dead (a frozen server, a silent network partition) and replaced:
 * hiredis 0.14's async API has no command timeout of its own. */
#define STALL_MS 15000
/* On exit the connections close after their pending replies, or after this long. */
#define CLOSE_GRACE_MS 2000

/* The worker's life. */
enum worker_state {
    WORKER_STARTING, /* the commands connection has not been ready yet */
    WORKER_RUNNING,  /* taking jobs whenever slots are free */
    WORKER_DRAINING, /* SIGTERM: finishing what runs, taking nothing new */
    WORKER_STOPPING, /* closing the connections; ev_run returns when they are */
};

/* How the worker is looking for work: one thing at a time. */
enum intake {
    INTAKE_IDLE,      /* nothing in flight: the next loop turn may reserve */
    INTAKE_RESERVING, /* a reserve round is in flight */
    INTAKE_WAITING,   /* blocked in BLPOP on the wake lists */
};

/* A job running in a slot. run comes first: handlers see only it. */
struct slot {
    struct corral_run run;
    struct corral_worker *w;
    size_t qi;
    uint64_t seq; /* numbers the worker's runs */
    int64_t started_ms;
    struct slot *next;
};

struct corral_worker {
    struct ev_loop *loop;
    struct corral_config *cfg;
    struct corral_wqueues qs;
    char id[96];
    enum worker_state state;
    enum intake intake;
    size_t asked_qi; /* INTAKE_RESERVING: of this queue, */
    int asked;       /* this many jobs */
    int round_got;   /* jobs got in the current reserve round */
    int slots;
    int busy;
    struct slot *running;
    int exit_code;
    int64_t jobs_done;
    uint64_t runs_started;
    struct corral_conn *cmd;         /* the queue functions */
    struct corral_conn *block;       /* BLPOP on the wake lists */
    struct corral_control *ctl;      /* hears cancels of our runs (control.h) */
    struct corral_stream_sink *sink; /* streamed answers to Redis (stream.h) */
    struct corral_outcomes *outcomes;
    struct corral_channel *ch;
    struct corral_log_repeat refused_reserve, refused_wait, refused_renew;
    ev_prepare turn;
    ev_timer renew;
    ev_timer heartbeat;
    ev_timer drain_timer;
    ev_signal sigterm, sigint;
};

static void reserve_from(struct corral_worker *w, size_t qi);
static void block_for_work(struct corral_worker *w);

static void on_heartbeat(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct corral_worker *w = t->data;
    corral_channel_heartbeat(w->ch, w->busy, w->slots, w->jobs_done,
                             corral_outcomes_unwritten(w->outcomes));
    if (corral_channel_parent_gone(w->ch) && w->state < WORKER_DRAINING) {
        corral_log_warn("corrald is gone; stopping", "worker=%s", w->id);
        kill(getpid(), SIGTERM);
    }
    corral_conn_check_stall(w->cmd, STALL_MS);
    corral_conn_check_stall(w->block, STALL_MS + BLOCK_TIMEOUT_S * 1000);
}

/* --- runs ------------------------------------------------------------- */

static void unlink_slot(struct corral_worker *w, struct slot *s)
{
    for (struct slot **p = &w->running; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            w->busy--;
            return;
        }
    }
}

static void free_slot(struct slot *s)
{
    corral_job_clear(&s->run.job);
    free(s);
}

/* The finish callback every run carries: frees the slot and queues the
 * outcome. Flushing and the next reserve happen once per loop turn, so
 * the runs that end in one turn share one write. */
static void on_run_end(struct corral_run *run, enum corral_run_end end, const char *data,
                       size_t len, int64_t delay_ms)
{
    struct slot *s = (struct slot *)run;
    struct corral_worker *w = s->w;
    const char *queue = w->qs.names[s->qi];
    unlink_slot(w, s);
    w->jobs_done++;
    corral_channel_done(w->ch, queue, corral_now_ms() - s->started_ms, end);
    static const char *const kind[] = {
        [CORRAL_END_DONE] = "ok",        [CORRAL_END_RETRY] = "retry",
        [CORRAL_END_PERMANENT] = "dead", [CORRAL_END_DEFER] = "defer",
        [CORRAL_END_THROTTLE] = "defer", [CORRAL_END_QUOTA] = "defer"};
    if (end != CORRAL_END_DONE)
        corral_log_info("job failed", "queue=%s id=%s attempt=%d outcome=%s error=\"%.*s\"", queue,
                        run->job.id, run->job.attempts, kind[end], (int)(len > 300 ? 300 : len),
                        data ? data : "");
    corral_outcomes_add_run(w->outcomes, s->qi, run, end, data, len, delay_ms);
    free_slot(s);
    corral_channel_busy(w->ch, w->busy, w->slots);
}

/* Stops a run at once through its handler; no outcome is written, so its
 * lease expires (or has already gone to a newer run). */
static void abort_run(struct corral_worker *w, struct slot *s)
{
    unlink_slot(w, s);
    w->qs.q[s->qi].ops->abort(&s->run);
    free_slot(s);
    corral_channel_busy(w->ch, w->busy, w->slots);
}

static void start_run(struct corral_worker *w, size_t qi, struct corral_job *job)
{
    struct corral_wqueue *q = &w->qs.q[qi];
    struct slot *s = corral_xcalloc(1, sizeof(*s));
    s->w = w;
    s->qi = qi;
    s->seq = ++w->runs_started;
    s->started_ms = corral_now_ms();
    s->run = (struct corral_run){.loop = w->loop,
                                 .conf = q->conf,
                                 .queue_state = q->state,
                                 .job = *job,
                                 .finish = on_run_end,
                                 .sink = w->sink};
    memset(job, 0, sizeof(*job));
    s->next = w->running;
    w->running = s;
    w->busy++;
    /* Redis checks a payload's grammar at enqueue but not its characters
     * (queue/lua/prelude.lua says why): a payload that is not JSON text would make the
     * service answer 400 at best, so it ends dead here, before any call. */
    char why[96];
    if (corral_json_text_check(s->run.job.payload, s->run.job.payload_len, why, sizeof(why)) < 0) {
        char msg[160];
        int len = snprintf(msg, sizeof(msg), "payload is not valid JSON (%s)", why);
        on_run_end(&s->run, CORRAL_END_PERMANENT, msg, (size_t)len, 0);
        return;
    }
    q->ops->start(&s->run); /* may end the run at once */
}

/* --- reserving -------------------------------------------------------- */

/* Starts a reserve round when there are free slots and nothing holds it
 * back. Both connections must be up: a round that finds nothing ends in
 * BLPOP, never in another round at once. */
static int may_reserve(struct corral_worker *w)
{
    return w->state == WORKER_RUNNING && w->intake == INTAKE_IDLE && w->busy < w->slots &&
           corral_conn_usable(w->cmd) && corral_conn_ready(w->block) &&
           !corral_outcomes_held_back(w->outcomes, w->slots);
}

static void kick(struct corral_worker *w)
{
    if (!may_reserve(w))
        return;
    w->round_got = 0;
    size_t qi = corral_wqueues_open(&w->qs, 0);
    if (qi < w->qs.n)
        reserve_from(w, qi);
    else
        block_for_work(w);
}

static void on_blpop(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct corral_worker *w = priv;
    redisReply *r = reply;
    w->intake = INTAKE_IDLE;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        /* Pauses the reserves too: a round ends here, and must not start again at once. */
        corral_conn_refused(w->cmd, &w->refused_wait, "waiting for work (BLPOP)", r->str,
                            corral_reply_word(r->str, r->len));
        return;
    }
    corral_log_repeat_end(&w->refused_wait);
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING)
        corral_wqueues_woken(&w->qs, r->element[0]->str);
}

static void block_for_work(struct corral_worker *w)
{
    struct corral_cmd cmd;
    corral_wqueues_cmd_wait(&w->qs, BLOCK_TIMEOUT_S, &cmd);
    if (corral_conn_send(w->block, on_blpop, w, &cmd) == 0)
        w->intake = INTAKE_WAITING;
    corral_cmd_free(&cmd);
}

/* A reserve's reply (of corral_reserve, or the reserve part of
 * corral_ack_reserve); NULL when the connection went first. */
static void reserved(struct corral_worker *w, const redisReply *reply)
{
    size_t qi = w->asked_qi;
    struct corral_wqueue *q = &w->qs.q[qi];
    struct corral_job *jobs = NULL;
    size_t n = 0;
    w->intake = INTAKE_IDLE;
    if (reply == NULL) {
        /* Redis may have leased jobs to us before the connection went: they
         * are taken back as soon as it is up again (reclaim_unseen). */
        if (w->state != WORKER_STOPPING)
            q->lost_reserve = 1;
        return;
    }
    struct corral_err err;
    struct corral_gate gate;
    if (corral_reply_reserve(reply, &jobs, &n, &gate, &err) < 0) {
        char what[128];
        snprintf(what, sizeof(what), "reserving from queue %s", q->conf->name);
        corral_conn_refused(w->cmd, &w->refused_reserve, what, err.msg, err.word);
        return;
    }
    corral_conn_accepted(w->cmd, &w->refused_reserve);
    corral_wqueue_gate(&w->qs, q, &gate);
    for (size_t i = 0; i < n; i++) {
        if (w->state != WORKER_RUNNING) {
            /* Leased just before SIGTERM: hand it back at once, without
             * spending the attempt, rather than start new work. */
            corral_outcomes_add(w->outcomes, qi, jobs[i].id, jobs[i].run, CORRAL_END_DEFER, "", 0,
                                0);
            jobs[i].id = jobs[i].run = NULL;
        } else {
            start_run(w, qi, &jobs[i]);
        }
    }
    corral_jobs_free(jobs, n);
    corral_channel_busy(w->ch, w->busy, w->slots);
    w->round_got += (int)n;
    size_t next = corral_wqueues_open(&w->qs, qi + 1);
    /* Runs that ended in this reply wait for the turn's flush: the next
     * reserve goes after their write. */
    if (w->state != WORKER_RUNNING || w->busy >= w->slots || !corral_conn_usable(w->cmd) ||
        corral_outcomes_unsent(w->outcomes) > 0 || corral_outcomes_held_back(w->outcomes, w->slots))
        return;
    if ((int)n == w->asked && gate.wait_ms == 0)
        reserve_from(w, qi); /* there may be more of this queue */
    else if (next < w->qs.n)
        reserve_from(w, next);
    else if (w->round_got == 0)
        block_for_work(w);
    /* else the next loop turn starts a new round */
}

static void on_reserve(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    reserved(priv, reply);
}

static void on_ack_reserved(void *priv, const redisReply *jobs, int lost)
{
    struct corral_worker *w = priv;
    if (jobs == NULL && !lost)
        w->intake = INTAKE_IDLE; /* refused: the outcome FIFO logged it */
    else
        reserved(w, jobs);
}

/* The turn's flush, with a reserve round started in the same call when
 * slots are free and the first open queue has acks to write (the one
 * round trip per job of docs/protocol.md, corral_ack_reserve). */
static void flush_and_reserve(struct corral_worker *w)
{
    size_t qi = corral_wqueues_open(&w->qs, 0);
    if (qi >= w->qs.n || !corral_outcomes_has_acks(w->outcomes, qi) || !may_reserve(w)) {
        corral_outcomes_flush(w->outcomes);
        return;
    }
    struct corral_wqueue *q = &w->qs.q[qi];
    w->round_got = 0;
    w->asked_qi = qi;
    w->asked = w->slots - w->busy;
    if (corral_outcomes_flush_reserve(w->outcomes, qi, w->asked, q->svc ? q->svc->max_inflight : 0,
                                      on_ack_reserved, w) == 0)
        w->intake = INTAKE_RESERVING;
}

static void reserve_from(struct corral_worker *w, size_t qi)
{
    struct corral_wqueue *q = &w->qs.q[qi];
    struct corral_cmd cmd;
    w->asked_qi = qi;
    w->asked = w->slots - w->busy;
    corral_cmd_reserve(&cmd, w->cfg->redis.prefix, q->conf->name, w->id, w->asked,
                       q->svc ? q->svc->max_inflight : 0);
    if (corral_svcgate_send(q->gate, w->cmd, on_reserve, w, &cmd) == 0) /* gate.h: NULL sends */
        w->intake = INTAKE_RESERVING;
    corral_cmd_free(&cmd);
}

static void on_reclaim_unseen(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct corral_wqueue *q = priv;
    redisReply *r = reply;
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
    for (size_t qi = 0; qi < w->qs.n; qi++) {
        struct corral_wqueue *q = &w->qs.q[qi];
        if (!q->lost_reserve)
            continue;
        q->lost_reserve = 0;
        struct corral_cmd cmd;
        corral_cmd_reclaim_keep(&cmd, w->cfg->redis.prefix, q->conf->name, w->id);
        for (struct slot *s = w->running; s; s = s->next)
            if (s->qi == qi)
                corral_cmd_addstr(&cmd, s->run.job.id);
        corral_outcomes_add_ids(w->outcomes, qi, &cmd);
        if (corral_conn_send(w->cmd, on_reclaim_unseen, q, &cmd) < 0)
            q->lost_reserve = 1;
        corral_cmd_free(&cmd);
    }
}

/* --- leases ----------------------------------------------------------- */

/* A renew call in flight: which runs it asked about, by number, since any
 * of them may end before the reply arrives. */
struct renew_ctx {
    struct corral_worker *w;
    size_t qi;
    size_t n;
    uint64_t seq[];
};

/* A run whose lease is lost (reclaimed after it expired, run again
 * elsewhere, or ended) can no longer record an outcome. Stop it rather than
 * spend an AI call nobody will keep. */
static void abort_lost_run(struct corral_worker *w, uint64_t seq, enum corral_answer why)
{
    for (struct slot *s = w->running; s; s = s->next) {
        if (s->seq != seq)
            continue;
        corral_log_warn(why == CORRAL_ANSWER_RECLAIMED
                            ? "lease lost: the job was reclaimed; stopping this run"
                            : "lease lost: a newer run of the job exists or it ended; stopping "
                              "this run",
                        "queue=%s id=%s run=%s", w->qs.names[s->qi], s->run.job.id, s->run.job.run);
        abort_run(w, s);
        return;
    }
}

/* A cancel heard on the control channel (control.h): the job already
 * ended cancelled in Redis (queue/lua/control.lua), so the run stops and
 * writes nothing. */
static void on_cancel(void *priv, const char *queue, const char *id, const char *run)
{
    struct corral_worker *w = priv;
    for (struct slot *s = w->running; s; s = s->next) {
        if (strcmp(s->run.job.id, id) == 0 && strcmp(s->run.job.run, run) == 0 &&
            strcmp(w->qs.names[s->qi], queue) == 0) {
            corral_log_info("job cancelled; stopping its run", "queue=%s id=%s run=%s", queue, id,
                            run);
            abort_run(w, s);
            return;
        }
    }
}

static void on_renew_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct renew_ctx *rc = priv;
    struct corral_worker *w = rc->w;
    enum corral_answer *st = corral_xcalloc(rc->n, sizeof(*st));
    struct corral_err err;
    if (reply == NULL) {
        /* the connection went; the next renew asks again */
    } else if (corral_run_answers(reply, st, rc->n, &err) < 0) {
        corral_logr(&w->refused_renew, CORRAL_LOG_WARN, "lease renewal failed",
                    "queue=%s error=\"%s\"", w->qs.names[rc->qi], err.msg);
    } else {
        corral_log_repeat_end(&w->refused_renew);
        for (size_t i = 0; i < rc->n && w->state != WORKER_STOPPING; i++)
            if (st[i] != CORRAL_ANSWER_OK)
                abort_lost_run(w, rc->seq[i], st[i]);
    }
    free(st);
    free(rc);
}

/* Every lease/3: one corral_renew call per queue for all its running jobs.
 * While Redis is away nothing is sent; the jobs keep running, and a lease
 * that expired meanwhile is taken back by the next renew unless the job has
 * run again. */
static void on_renew(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct corral_worker *w = t->data;
    if (!corral_conn_ready(w->cmd))
        return;
    for (size_t qi = 0; qi < w->qs.n; qi++) {
        size_t n = 0;
        for (struct slot *s = w->running; s; s = s->next)
            n += s->qi == qi;
        if (n == 0)
            continue;
        struct corral_outcome *oc = corral_xcalloc(n, sizeof(*oc));
        struct renew_ctx *rc = corral_xcalloc(1, sizeof(*rc) + n * sizeof(rc->seq[0]));
        rc->w = w;
        rc->qi = qi;
        for (struct slot *s = w->running; s; s = s->next) {
            if (s->qi != qi)
                continue;
            oc[rc->n] = (struct corral_outcome){.id = s->run.job.id, .run = s->run.job.run};
            rc->seq[rc->n++] = s->seq;
        }
        struct corral_cmd cmd;
        corral_cmd_renew(&cmd, w->cfg->redis.prefix, w->qs.names[qi], w->id, oc, n);
        if (corral_conn_send(w->cmd, on_renew_reply, rc, &cmd) < 0)
            free(rc);
        corral_cmd_free(&cmd);
        free(oc);
    }
}

/* --- connections ------------------------------------------------------ */

static void cmd_setup(struct corral_conn *c, void *priv)
{
    struct corral_worker *w = priv;
    corral_wqueues_setup(c, &w->qs);
}

static void cmd_ready(struct corral_conn *c, void *priv)
{
    struct corral_worker *w = priv;
    if (w->state == WORKER_STARTING) {
        w->state = WORKER_RUNNING;
        corral_channel_ready(w->ch, w->slots);
    }
    corral_control_start(w->ctl);
    reclaim_unseen(w);
}

/* One connection found its node is no longer the master: the other one is
 * on the same node, so it goes too (docs/ha.md, "When to look again"). */
static void cmd_moved(struct corral_conn *c, void *priv)
{
    corral_conn_reconnect(((struct corral_worker *)priv)->block, "the node is not the master");
}

static void block_moved(struct corral_conn *c, void *priv)
{
    corral_conn_reconnect(((struct corral_worker *)priv)->cmd, "the node is not the master");
}

static void cmd_switched(struct corral_conn *c, void *priv)
{
    corral_conn_retry_now(((struct corral_worker *)priv)->block);
}

static const struct corral_conn_hooks cmd_hooks = {.setup = cmd_setup,
                                                   .ready = cmd_ready,
                                                   .moved = cmd_moved,
                                                   .follow_switch = 1,
                                                   .switched = cmd_switched};
static const struct corral_conn_hooks block_hooks = {.moved = block_moved};

/* --- the loop turn, stopping ------------------------------------------ */

static void stop_everything(struct corral_worker *w)
{
    w->state = WORKER_STOPPING;
    ev_prepare_stop(w->loop, &w->turn);
    ev_timer_stop(w->loop, &w->renew);
    ev_timer_stop(w->loop, &w->heartbeat);
    ev_timer_stop(w->loop, &w->drain_timer);
    corral_channel_stop(w->ch);
    corral_svcgates_close(&w->qs, CLOSE_GRACE_MS);
    corral_conn_close(w->block, 0);
    corral_control_close(w->ctl);
    corral_conn_close(w->cmd, CLOSE_GRACE_MS);
}

static void maybe_exit(struct corral_worker *w)
{
    /* A reserve in flight may still bring jobs leased to us: wait for it. */
    if (w->state != WORKER_DRAINING || w->running != NULL ||
        corral_outcomes_unwritten(w->outcomes) > 0 || w->intake == INTAKE_RESERVING)
        return;
    corral_log_info("drained; exiting", "worker=%s jobs=%lld", w->id, (long long)w->jobs_done);
    stop_everything(w);
}

/* Once per loop turn, after the callbacks of the turn, in this order:
 * write what ended, reserve if slots are free, exit if drained. */
static void on_turn(struct ev_loop *loop, ev_prepare *p, int revents)
{
    struct corral_worker *w = p->data;
    flush_and_reserve(w);
    kick(w);
    maybe_exit(w);
}

static void abort_all(struct corral_worker *w, const char *why)
{
    corral_log_warn("stopping now", "worker=%s reason=\"%s\" running=%d unwritten_outcomes=%zu",
                    w->id, why, w->busy, corral_outcomes_unwritten(w->outcomes));
    while (w->running != NULL)
        abort_run(w, w->running);
    w->exit_code = 1;
    stop_everything(w);
}

static void on_drain_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    abort_all(t->data, "drain_timeout passed");
}

static void on_signal(struct ev_loop *loop, ev_signal *sig, int revents)
{
    struct corral_worker *w = sig->data;
    if (w->state == WORKER_DRAINING) {
        abort_all(w, "second signal");
        return;
    }
    if (w->state == WORKER_STOPPING)
        return; /* on the way out already */
    w->state = WORKER_DRAINING;
    corral_log_info("draining: finishing running jobs, taking no new ones", "worker=%s running=%d",
                    w->id, w->busy);
    corral_channel_stopping(w->ch);
    ev_timer_set(&w->drain_timer, (double)w->cfg->pool.drain_timeout_ms / 1000.0, 0.0);
    ev_timer_start(loop, &w->drain_timer);
    /* At once: a graceful close would wait up to the BLPOP timeout. */
    corral_conn_close(w->block, 0);
    maybe_exit(w);
}

/* --- setup ------------------------------------------------------------ */

struct corral_worker *corral_worker_new(struct ev_loop *loop, const struct corral_worker_opts *o,
                                        struct corral_err *err)
{
    struct corral_worker *w = corral_xcalloc(1, sizeof(*w));
    w->loop = loop;
    w->cfg = o->cfg;
    w->slots = o->concurrency;
    w->ch = corral_channel_new(loop, o->fd3);
    const char *wid = getenv("CORRAL_WORKER_ID");
    char host[64] = "localhost";
    gethostname(host, sizeof(host) - 1);
    if (wid != NULL && wid[0] != '\0')
        snprintf(w->id, sizeof(w->id), "%s", wid);
    else
        snprintf(w->id, sizeof(w->id), "%s:%d", host, (int)getpid());
    if (corral_wqueues_init(&w->qs, loop, w->cfg, w->id, o->queues, o->nqueues, err) < 0) {
        corral_worker_free(w);
        return NULL;
    }
    char *password = NULL;
    if (o->cfg->redis.password_file != NULL &&
        (password = corral_read_secret(o->cfg->redis.password_file, err)) == NULL) {
        corral_worker_free(w);
        return NULL;
    }
    const struct corral_redis_conf *rc = &o->cfg->redis;
    w->cmd = corral_conn_new(loop, "commands", rc, password, &cmd_hooks, w, err);
    w->block =
        w->cmd ? corral_conn_new(loop, "blocking", rc, password, &block_hooks, w, err) : NULL;
    w->ctl = w->block ? corral_control_new(loop, rc, password, w->id, on_cancel, w, err) : NULL;
    w->outcomes = corral_outcomes_new(w->cmd, o->cfg->redis.prefix, w->id, w->qs.names, w->qs.n);
    corral_svcgates_new(&w->qs, w->outcomes, loop, rc, password); /* [redis] cluster: gate.h */
    if (password != NULL) {
        explicit_bzero(password, strlen(password));
        free(password);
    }
    if (w->ctl == NULL) {
        corral_worker_free(w);
        return NULL;
    }
    w->sink = corral_stream_sink_new(w->cmd, o->cfg->redis.prefix, w->id);
    corral_log_repeat_init(&w->refused_reserve, 0);
    corral_log_repeat_init(&w->refused_wait, 0);
    corral_log_repeat_init(&w->refused_renew, 0);
    ev_prepare_init(&w->turn, on_turn);
    w->turn.data = w;
    double renew_s = (double)w->qs.lease_ms / 3000.0;
    ev_timer_init(&w->renew, on_renew, renew_s, renew_s);
    w->renew.data = w;
    ev_timer_init(&w->heartbeat, on_heartbeat, 1.0, 1.0);
    w->heartbeat.data = w;
    ev_timer_init(&w->drain_timer, on_drain_timeout, 0.0, 0.0);
    w->drain_timer.data = w;
    ev_signal_init(&w->sigterm, on_signal, SIGTERM);
    w->sigterm.data = w;
    ev_signal_init(&w->sigint, on_signal, SIGINT);
    w->sigint.data = w;
    return w;
}

int corral_worker_run(struct corral_worker *w)
{
    /* Never outlive corrald; if it is already gone, stop now. */
    if (corral_channel_watch_parent(w->ch) < 0)
        return 1;
    ev_prepare_start(w->loop, &w->turn);
    ev_timer_start(w->loop, &w->renew);
    ev_timer_start(w->loop, &w->heartbeat);
    /* Signal watchers stay on to the end (a third SIGTERM must not kill us
     * mid-exit) without keeping the loop alive. */
    ev_signal_start(w->loop, &w->sigterm);
    ev_signal_start(w->loop, &w->sigint);
    ev_unref(w->loop);
    ev_unref(w->loop);
    corral_conn_start(w->cmd);
    corral_conn_start(w->block);
    corral_log_info("worker started", "worker=%s queues=%zu concurrency=%d", w->id, w->qs.n,
                    w->slots);
    ev_run(w->loop, 0);
    return w->exit_code;
}

void corral_worker_free(struct corral_worker *w)
{
    if (w == NULL)
        return;
    /* The connections first: freeing them runs their pending callbacks. */
    corral_conn_free(w->cmd);
    corral_conn_free(w->block);
    corral_control_free(w->ctl);
    corral_outcomes_free(w->outcomes);
    corral_stream_sink_free(w->sink);
    while (w->running != NULL)
        abort_run(w, w->running);
    corral_wqueues_free(&w->qs);
    corral_log_repeat_end(&w->refused_reserve);
    corral_log_repeat_end(&w->refused_wait);
    corral_log_repeat_end(&w->refused_renew);
    corral_channel_free(w->ch);
    free(w);
}

/* A worker's service gate on a Redis Cluster (see gate.h).
 *
 * What must stay true: no job is reserved without a permit; a permit
 * reserved for no job is given back at once (kind "unused": its rate entry
 * goes too); an outcome is sent at most once per report and kept until the
 * gate answered it; a reply that comes while the worker is being freed
 * reaches nothing of the engine. */
#include "gate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/bootstrap.h"
#include "corral/log.h"
#include "corral/util.h"
#include "outcomes.h"
#include "settle.h"
#include "wqueue.h"

/* A permit outlives its call by this much (the call itself lasts at most
 * the queue's timeout): time for the report to reach the gate. */
#define PERMIT_MARGIN_MS 5000
/* With no permit granted the queue waits this long at most before asking
 * again (no wake list reaches it across slots: a breaker closed or reset,
 * a call slot freed elsewhere, is seen within this), and as long when the
 * gate is unreachable or refused the call. */
#define GATE_RETRY_MS 1000

struct permit {
    long long id;
    int probe;
    char *job; /* "<id>/<run>" of the job it was reserved for; NULL while held */
    int64_t granted_ms;
};

/* One permit's outcome, as corral_gate_report takes it. */
struct report {
    long long id;
    int probe;
    const char *kind; /* ok fail none unused throttle quota */
    int64_t ms;
    char why[128];
    int64_t tin, tout, cost;
};

struct corral_svcgate {
    struct corral_wqueues *qs;
    struct corral_wqueue *q;
    struct corral_conn *conn;
    char *key; /* "<prefix>:{svc:NAME}" */
    int64_t ttl_ms;
    struct permit *p;
    size_t np, pcap;
    struct report *out;
    size_t nout, ocap;
    size_t sent;   /* out[0..sent) are in the report in flight */
    int reporting; /* a report in flight */
    int closing;   /* being closed or freed: replies reach no engine */
    /* the reserve waiting for permits (an acquire in flight) */
    int acquiring;
    struct corral_cmd pending;
    struct corral_conn *qconn;
    redisCallbackFn *fn;
    void *priv;
    struct corral_log_repeat refused;
};

/* A reserve sent with permits: its reply assigns them. */
struct reserve_ctx {
    struct corral_svcgate *g;
    redisCallbackFn *fn;
    void *priv;
};

static size_t held(const struct corral_svcgate *g)
{
    size_t n = 0;
    for (size_t i = 0; i < g->np; i++)
        n += g->p[i].job == NULL;
    return n;
}

static struct report *add_report(struct corral_svcgate *g, const struct permit *p, const char *kind,
                                 int64_t ms)
{
    if (g->nout == g->ocap) {
        g->ocap = g->ocap ? g->ocap * 2 : 16;
        g->out = corral_xrealloc(g->out, g->ocap * sizeof(*g->out));
    }
    struct report *r = &g->out[g->nout++];
    *r = (struct report){
        .id = p->id, .probe = p->probe, .kind = kind, .ms = ms < 0 ? 0 : ms, .tin = -1};
    return r;
}

static void drop_permit(struct corral_svcgate *g, size_t i)
{
    free(g->p[i].job);
    g->p[i] = g->p[--g->np];
}

/* Every permit not given to a job goes back (kind "unused"). */
static void give_back_held(struct corral_svcgate *g)
{
    for (size_t i = g->np; i-- > 0;)
        if (g->p[i].job == NULL) {
            add_report(g, &g->p[i], "unused", 0);
            drop_permit(g, i);
        }
}

/* The command cmd with its reserve count (argv[5]) set to n. */
static void copy_cmd(struct corral_cmd *to, const struct corral_cmd *from, long long n)
{
    memset(to, 0, sizeof(*to));
    for (int i = 0; i < from->argc; i++) {
        if (i == 5)
            corral_cmd_addint(to, n);
        else
            corral_cmd_add(to, from->argv[i], from->argvlen[i]);
    }
}

static void on_gated_reserve(redisAsyncContext *ac, void *reply, void *priv)
{
    struct reserve_ctx *ctx = priv;
    struct corral_svcgate *g = ctx->g;
    const redisReply *r = reply;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
                e->element[0]->type != REDIS_REPLY_STRING ||
                e->element[1]->type != REDIS_REPLY_STRING)
                continue;
            for (size_t k = 0; k < g->np; k++)
                if (g->p[k].job == NULL) {
                    g->p[k].job = corral_xasprintf("%s/%s", e->element[0]->str, e->element[1]->str);
                    break;
                }
        }
    }
    /* Lost with its connection, the reserve's jobs are taken back
     * unseen (the engine's reclaim_unseen): their permits go back too. */
    give_back_held(g);
    redisCallbackFn *fn = ctx->fn;
    void *fpriv = ctx->priv;
    free(ctx);
    fn(ac, reply, fpriv); /* corral_conn_replied(ac) is the engine's */
}

static int send_reserve(struct corral_svcgate *g, struct corral_conn *conn, redisCallbackFn *fn,
                        void *priv, const struct corral_cmd *cmd, long long n)
{
    struct corral_cmd c;
    copy_cmd(&c, cmd, n);
    struct reserve_ctx *ctx = corral_xcalloc(1, sizeof(*ctx));
    *ctx = (struct reserve_ctx){g, fn, priv};
    int rc = corral_conn_send(conn, on_gated_reserve, ctx, &c);
    if (rc < 0)
        free(ctx);
    corral_cmd_free(&c);
    return rc;
}

/* Answers the waiting reserve as a reserve whose service takes no calls:
 * a reply of one element "gate <ms> <why>". */
static void answer_gated(struct corral_svcgate *g, redisAsyncContext *ac, int64_t wait_ms,
                         const char *why)
{
    char text[300];
    if (wait_ms <= 0 || wait_ms > GATE_RETRY_MS)
        wait_ms = wait_ms <= 0 ? 1 : GATE_RETRY_MS;
    int len = snprintf(text, sizeof(text), "gate %lld %s", (long long)wait_ms, why);
    if (len >= (int)sizeof(text))
        len = (int)sizeof(text) - 1;
    redisReply el = {.type = REDIS_REPLY_STRING, .str = text, .len = (size_t)len};
    redisReply *els[1] = {&el};
    redisReply arr = {.type = REDIS_REPLY_ARRAY, .elements = 1, .element = els};
    g->fn(ac, &arr, g->priv);
}

static void on_acquire(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct corral_svcgate *g = priv;
    const redisReply *r = reply;
    g->acquiring = 0;
    int64_t wait_ms = GATE_RETRY_MS;
    char why[256] = "service gate unreachable: its node is being connected again";
    long long want = strtoll(g->pending.argv[5], NULL, 10);
    /* A grant is never more than was asked: a reply saying so is of
     * another shape (no loop or allocation sized by a bad number). */
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 5 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer >= 0 &&
        r->element[0]->integer <= want && r->element[1]->type == REDIS_REPLY_INTEGER &&
        r->element[2]->type == REDIS_REPLY_INTEGER && r->element[3]->type == REDIS_REPLY_INTEGER &&
        r->element[4]->type == REDIS_REPLY_STRING) {
        corral_conn_accepted(g->conn, &g->refused);
        int64_t now = corral_now_ms();
        for (long long k = 0; k < r->element[0]->integer; k++) {
            if (g->np == g->pcap) {
                g->pcap = g->pcap ? g->pcap * 2 : 16;
                g->p = corral_xrealloc(g->p, g->pcap * sizeof(*g->p));
            }
            g->p[g->np++] = (struct permit){.id = r->element[1]->integer + k,
                                            .probe = (int)r->element[2]->integer,
                                            .granted_ms = now};
        }
        wait_ms = r->element[3]->integer;
        snprintf(why, sizeof(why), "%s", r->element[4]->str);
    } else if (r != NULL) {
        const char *msg = r->type == REDIS_REPLY_ERROR ? r->str : "a reply of another shape";
        corral_conn_refused(g->conn, &g->refused, "asking the service gate for permits", msg,
                            corral_reply_word(msg, strlen(msg)));
        snprintf(why, sizeof(why), "service gate: %s", msg);
    }
    if (g->closing) { /* the engine is being freed: answer nothing */
        corral_cmd_free(&g->pending);
        return;
    }
    size_t n = held(g);
    if (n > 0 && send_reserve(g, g->qconn, g->fn, g->priv, &g->pending,
                              (long long)n < want ? (long long)n : want) == 0) {
        corral_cmd_free(&g->pending);
        return;
    }
    if (n > 0) { /* the queue's connection went meanwhile */
        give_back_held(g);
        wait_ms = GATE_RETRY_MS / 4;
        snprintf(why, sizeof(why), "%s", "the queue's connection is being made again");
    }
    corral_cmd_free(&g->pending);
    answer_gated(g, ac, wait_ms, why);
}

int corral_svcgate_send(struct corral_svcgate *g, struct corral_conn *conn, redisCallbackFn *fn,
                        void *priv, const struct corral_cmd *cmd)
{
    if (g == NULL)
        return corral_conn_send(conn, fn, priv, cmd);
    if (g->acquiring || cmd->argc < 7)
        return -1;
    long long want = strtoll(cmd->argv[5], NULL, 10);
    size_t n = held(g);
    if ((long long)n >= want)
        return send_reserve(g, conn, fn, priv, cmd, want);
    if (!corral_conn_usable(g->conn))
        return n > 0 ? send_reserve(g, conn, fn, priv, cmd, (long long)n) : -1;
    struct corral_cmd ask = {0};
    corral_cmd_addstr(&ask, "FCALL");
    corral_cmd_addstr(&ask, "corral_gate_acquire");
    corral_cmd_addstr(&ask, "1");
    corral_cmd_addstr(&ask, g->key);
    corral_cmd_addstr(&ask, g->qs->worker_id);
    corral_cmd_addint(&ask, want - (long long)n);
    corral_cmd_addint(&ask, g->q->svc->max_inflight);
    corral_cmd_addint(&ask, g->ttl_ms);
    int rc = corral_conn_send(g->conn, on_acquire, g, &ask);
    corral_cmd_free(&ask);
    if (rc < 0)
        return -1;
    copy_cmd(&g->pending, cmd, want);
    g->qconn = conn;
    g->fn = fn;
    g->priv = priv;
    g->acquiring = 1;
    return 0;
}

void corral_svcgate_outcome(struct corral_svcgate *g, const struct corral_run *run,
                            enum corral_run_end end, const char *data, size_t len, int64_t delay_ms)
{
    if (g == NULL || run->job.id == NULL || run->job.run == NULL)
        return;
    char job[160];
    snprintf(job, sizeof(job), "%s/%s", run->job.id, run->job.run);
    for (size_t i = 0; i < g->np; i++) {
        if (g->p[i].job == NULL || strcmp(g->p[i].job, job) != 0)
            continue;
        /* As the library's fail counts a run on one Redis (queue/lua/runs.lua):
         * a retry is a breaker failure, a permanent failure an answer. */
        static const char *const kind[] = {
            [CORRAL_END_DONE] = "ok",           [CORRAL_END_RETRY] = "fail",
            [CORRAL_END_PERMANENT] = "ok",      [CORRAL_END_DEFER] = "none",
            [CORRAL_END_THROTTLE] = "throttle", [CORRAL_END_QUOTA] = "quota"};
        int64_t took = corral_now_ms() - g->p[i].granted_ms;
        struct report *r =
            add_report(g, &g->p[i], kind[end], end == CORRAL_END_THROTTLE ? delay_ms : took);
        if (end != CORRAL_END_DONE && data != NULL)
            snprintf(r->why, sizeof(r->why), "%.*s", (int)(len < 127 ? len : 127), data);
        if (run->settle != NULL && run->settle->input_tokens >= 0) {
            r->tin = run->settle->input_tokens;
            r->tout = run->settle->output_tokens;
            r->cost = run->settle->cost_nano;
        }
        drop_permit(g, i);
        return;
    }
}

static void on_report(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct corral_svcgate *g = priv;
    const redisReply *r = reply;
    g->reporting = 0;
    if (r == NULL) { /* the connection went: all of it again on the next */
        g->sent = 0;
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        enum corral_err_word word = corral_reply_word(r->str, r->len);
        corral_conn_refused(g->conn, &g->refused, "reporting calls to the service gate", r->str,
                            word);
        if (word != CORRAL_WORD_BADARG) { /* kept: the next report tries again */
            g->sent = 0;
            return;
        }
    } else {
        corral_conn_accepted(g->conn, &g->refused);
    }
    memmove(g->out, g->out + g->sent, (g->nout - g->sent) * sizeof(*g->out));
    g->nout -= g->sent;
    g->sent = 0;
}

/* One corral_gate_report of out[from..nout) with fn; -1 when the
 * connection is not usable. */
static int send_reports(struct corral_svcgate *g, size_t from, redisCallbackFn *fn)
{
    if (!corral_conn_usable(g->conn))
        return -1;
    struct corral_cmd cmd = {0};
    corral_cmd_addstr(&cmd, "FCALL");
    corral_cmd_addstr(&cmd, "corral_gate_report");
    corral_cmd_addstr(&cmd, "1");
    corral_cmd_addstr(&cmd, g->key);
    corral_cmd_addstr(&cmd, g->qs->worker_id);
    for (size_t i = from; i < g->nout; i++) {
        const struct report *r = &g->out[i];
        corral_cmd_addint(&cmd, r->id);
        corral_cmd_addint(&cmd, r->probe);
        corral_cmd_addstr(&cmd, r->kind);
        corral_cmd_addint(&cmd, r->ms);
        corral_cmd_addstr(&cmd, r->why);
        corral_cmd_addint(&cmd, r->tin);
        corral_cmd_addint(&cmd, r->tout);
        corral_cmd_addint(&cmd, r->cost);
    }
    int rc = corral_conn_send(g->conn, fn, g, &cmd);
    corral_cmd_free(&cmd);
    return rc;
}

void corral_svcgate_flush(struct corral_svcgate *g)
{
    if (g == NULL)
        return;
    /* Permits of runs that ended without an outcome (a lease lost, a
     * cancel) have expired at the gate: forgotten here too. */
    int64_t now = corral_now_ms();
    for (size_t i = g->np; i-- > 0;)
        if (g->p[i].job != NULL && now - g->p[i].granted_ms > g->ttl_ms)
            drop_permit(g, i);
    if (g->nout > 0 && !g->reporting && send_reports(g, 0, on_report) == 0) {
        g->reporting = 1;
        g->sent = g->nout;
    }
}

static void on_last_report(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
}

/* --- the connection ------------------------------------------------------ */

/* The set-up: the library where it is missing or older (corrald loads it
 * on every primary; a worker started by hand may be first), then the
 * service's declaration on its node. */
static void on_version(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct corral_svcgate *g = priv;
    long long have;
    struct corral_err err;
    if (reply == NULL)
        return;
    if (corral_bootstrap_reply_version(&ac->c, reply, &have, &err) < 0) {
        corral_conn_setup_failed(g->conn, "FCALL corral_version", err.msg);
        return;
    }
    struct corral_bootstrap b;
    corral_bootstrap_build(&b, NULL, have, CORRAL_BOOTSTRAP_LIBRARY, NULL, 0);
    for (size_t i = 0; i < b.n; i++)
        corral_conn_setup_send(g->conn, b.steps[i].what, &b.steps[i].cmd);
    corral_bootstrap_free(&b);
    struct corral_cmd cmd;
    corral_cmd_declare_service(&cmd, g->qs->cfg->redis.prefix, g->q->svc);
    corral_cmd_service_tag(&cmd, g->qs->cfg->redis.prefix, g->q->svc->name);
    corral_conn_setup_send(g->conn, "declare service", &cmd);
    corral_cmd_free(&cmd);
    corral_conn_setup_end(g->conn);
}

static void gate_setup(struct corral_conn *c, void *priv)
{
    struct corral_cmd cmd = {0};
    corral_bootstrap_cmd_version(&cmd);
    corral_conn_send(c, on_version, priv, &cmd);
    corral_cmd_free(&cmd);
}

static const struct corral_conn_hooks gate_hooks = {.setup = gate_setup};

void corral_svcgates_new(struct corral_wqueues *qs, struct corral_outcomes *o, struct ev_loop *loop,
                         const struct corral_redis_conf *rc, const char *password)
{
    for (size_t i = 0; i < qs->n; i++) {
        struct corral_wqueue *q = &qs->q[i];
        if (!q->conf->service_gate || q->svc == NULL)
            continue;
        struct corral_err err;
        struct corral_svcgate *g = corral_xcalloc(1, sizeof(*g));
        /* The url was parsed by the queue's connections already. */
        g->conn = corral_conn_new(loop, "gate", rc, password, &gate_hooks, g, &err);
        if (g->conn == NULL) {
            free(g);
            continue;
        }
        g->qs = qs;
        g->q = q;
        g->key = corral_service_gate_key(qs->cfg->redis.prefix, q->svc->name);
        g->ttl_ms = q->conf->timeout_ms + PERMIT_MARGIN_MS;
        corral_log_repeat_init(&g->refused, 0);
        corral_conn_route(g->conn, g->key);
        q->gate = g;
        corral_outcomes_set_gate(o, i, g);
        corral_conn_start(g->conn);
    }
}

void corral_svcgates_close(struct corral_wqueues *qs, int64_t grace_ms)
{
    for (size_t i = 0; i < qs->n; i++) {
        struct corral_svcgate *g = qs->q[i].gate;
        if (g == NULL)
            continue;
        /* What no report carries yet goes now, before the close (whose
         * grace lets the replies come): the last turn's outcomes. */
        if (g->nout > g->sent)
            send_reports(g, g->sent, on_last_report);
        g->closing = 1;
        corral_conn_close(g->conn, grace_ms);
    }
}

void corral_svcgate_free(struct corral_svcgate *g)
{
    if (g == NULL)
        return;
    g->closing = 1;
    corral_conn_free(g->conn); /* runs the pending callbacks first */
    corral_cmd_free(&g->pending);
    for (size_t i = 0; i < g->np; i++)
        free(g->p[i].job);
    free(g->p);
    free(g->out);
    free(g->key);
    corral_log_repeat_end(&g->refused);
    free(g);
}

/* A worker's service gates on a Redis Cluster (see gate.h): one per
 * service of the queue's list (docs/breakers.md, "Fallback"), asked in
 * order; the first that grants permits serves the reserve.
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

struct corral_svcgate;

/* The gate of one service of the queue's list. */
struct member {
    struct corral_svcgate *g;
    size_t idx; /* in g->m */
    const struct corral_service_conf *svc;
    struct corral_conn *conn;
    char *key; /* "<prefix>:{svc:NAME}" */
    struct permit *p;
    size_t np, pcap;
    struct report *out;
    size_t nout, ocap;
    size_t sent;   /* out[0..sent) are in the report in flight */
    int reporting; /* a report in flight */
    struct corral_log_repeat refused;
};

struct corral_svcgate {
    struct corral_wqueues *qs;
    struct corral_wqueue *q;
    struct member *m; /* the list's services, in order */
    size_t nm;
    int64_t ttl_ms;
    int closing; /* being closed or freed: replies reach no engine */
    /* the reserve waiting for permits (an acquire in flight at one gate),
     * and the earliest wait the gates asked so far said (-1: none yet) */
    int acquiring;
    int64_t wait_ms;
    char why[256];
    struct corral_cmd pending;
    struct corral_conn *qconn;
    redisCallbackFn *fn;
    void *priv;
};

/* A reserve sent with permits of m: its reply assigns them. */
struct reserve_ctx {
    struct member *g;
    redisCallbackFn *fn;
    void *priv;
};

static size_t held(const struct member *g)
{
    size_t n = 0;
    for (size_t i = 0; i < g->np; i++)
        n += g->p[i].job == NULL;
    return n;
}

static struct report *add_report(struct member *g, const struct permit *p, const char *kind,
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

static void drop_permit(struct member *g, size_t i)
{
    free(g->p[i].job);
    g->p[i] = g->p[--g->np];
}

/* Every permit not given to a job goes back (kind "unused"). */
static void give_back_held(struct member *g)
{
    for (size_t i = g->np; i-- > 0;)
        if (g->p[i].job == NULL) {
            add_report(g, &g->p[i], "unused", 0);
            drop_permit(g, i);
        }
}

/* The command cmd with its reserve count (argv[5]) set to n; with svc (a
 * fallback list), its service and model after (corral_reserve's ARGV[4]
 * and ARGV[5]: the jobs name them, docs/protocol.md "The service gate"). */
static void copy_cmd(struct corral_cmd *to, const struct corral_cmd *from, long long n,
                     const struct corral_service_conf *svc)
{
    memset(to, 0, sizeof(*to));
    for (int i = 0; i < from->argc && i < 7; i++) {
        if (i == 5)
            corral_cmd_addint(to, n);
        else
            corral_cmd_add(to, from->argv[i], from->argvlen[i]);
    }
    if (svc != NULL) {
        corral_cmd_addstr(to, svc->name);
        corral_cmd_addstr(to, svc->model != NULL ? svc->model : "");
    }
}

static void on_gated_reserve(redisAsyncContext *ac, void *reply, void *priv)
{
    struct reserve_ctx *ctx = priv;
    struct member *g = ctx->g;
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

static int send_reserve(struct member *g, struct corral_conn *conn, redisCallbackFn *fn, void *priv,
                        const struct corral_cmd *cmd, long long n)
{
    struct corral_cmd c;
    copy_cmd(&c, cmd, n, g->g->nm > 1 ? g->svc : NULL);
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

static int ask(struct corral_svcgate *g, size_t from, long long want);

static void on_acquire(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct member *m = priv;
    struct corral_svcgate *g = m->g;
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
        corral_conn_accepted(m->conn, &m->refused);
        int64_t now = corral_now_ms();
        for (long long k = 0; k < r->element[0]->integer; k++) {
            if (m->np == m->pcap) {
                m->pcap = m->pcap ? m->pcap * 2 : 16;
                m->p = corral_xrealloc(m->p, m->pcap * sizeof(*m->p));
            }
            m->p[m->np++] = (struct permit){.id = r->element[1]->integer + k,
                                            .probe = (int)r->element[2]->integer,
                                            .granted_ms = now};
        }
        wait_ms = r->element[3]->integer;
        snprintf(why, sizeof(why), "%s", r->element[4]->str);
    } else if (r != NULL) {
        const char *msg = r->type == REDIS_REPLY_ERROR ? r->str : "a reply of another shape";
        corral_conn_refused(m->conn, &m->refused, "asking the service gate for permits", msg,
                            corral_reply_word(msg, strlen(msg)));
        snprintf(why, sizeof(why), "service gate: %s", msg);
    }
    if (g->closing) { /* the engine is being freed: answer nothing */
        corral_cmd_free(&g->pending);
        return;
    }
    size_t n = held(m);
    if (n > 0 && send_reserve(m, g->qconn, g->fn, g->priv, &g->pending,
                              (long long)n < want ? (long long)n : want) == 0) {
        corral_cmd_free(&g->pending);
        return;
    }
    if (n > 0) { /* the queue's connection went meanwhile */
        give_back_held(m);
        wait_ms = GATE_RETRY_MS / 4;
        snprintf(why, sizeof(why), "%s", "the queue's connection is being made again");
    } else if (g->wait_ms < 0 || wait_ms < g->wait_ms) {
        /* As a reserve on one Redis answers when no service of the list
         * takes calls: the earliest gate of all (fallback.lua's fb_choose). */
        g->wait_ms = wait_ms;
        snprintf(g->why, sizeof(g->why), "%s", why);
    }
    /* No permit here: the next service of the list is asked. */
    if (n == 0 && ask(g, m->idx + 1, want) == 0)
        return;
    if (n == 0) {
        wait_ms = g->wait_ms;
        snprintf(why, sizeof(why), "%s", g->why);
    }
    corral_cmd_free(&g->pending);
    answer_gated(g, ac, wait_ms, why);
}

/* Asks the first gate from m[from] on whose connection is usable for want
 * permits; -1 when none could be asked. */
static int ask(struct corral_svcgate *g, size_t from, long long want)
{
    for (size_t k = from; k < g->nm; k++) {
        struct member *m = &g->m[k];
        if (!corral_conn_usable(m->conn))
            continue;
        struct corral_cmd cmd = {0};
        corral_cmd_addstr(&cmd, "FCALL");
        corral_cmd_addstr(&cmd, "corral_gate_acquire");
        corral_cmd_addstr(&cmd, "1");
        corral_cmd_addstr(&cmd, m->key);
        corral_cmd_addstr(&cmd, g->qs->worker_id);
        corral_cmd_addint(&cmd, want);
        corral_cmd_addint(&cmd, m->svc->max_inflight);
        corral_cmd_addint(&cmd, g->ttl_ms);
        int rc = corral_conn_send(m->conn, on_acquire, m, &cmd);
        corral_cmd_free(&cmd);
        if (rc == 0) {
            g->acquiring = 1;
            return 0;
        }
    }
    return -1;
}

int corral_svcgate_send(struct corral_svcgate *g, struct corral_conn *conn, redisCallbackFn *fn,
                        void *priv, const struct corral_cmd *cmd)
{
    if (g == NULL)
        return corral_conn_send(conn, fn, priv, cmd);
    if (g->acquiring || cmd->argc < 7)
        return -1;
    long long want = strtoll(cmd->argv[5], NULL, 10);
    /* Permits still held (a reserve that could not be sent) serve first. */
    for (size_t k = 0; k < g->nm; k++) {
        size_t n = held(&g->m[k]);
        if (n > 0)
            return send_reserve(&g->m[k], conn, fn, priv, cmd,
                                (long long)n < want ? (long long)n : want);
    }
    g->wait_ms = -1; /* none said yet this round */
    if (ask(g, 0, want) < 0)
        return -1;
    copy_cmd(&g->pending, cmd, want, NULL);
    g->qconn = conn;
    g->fn = fn;
    g->priv = priv;
    return 0;
}

/* The outcome of the run job ("<id>/<run>") for m, when one of its
 * permits went to it: 1, else 0. */
static int member_outcome(struct member *g, const char *job, const struct corral_run *run,
                          enum corral_run_end end, const char *data, size_t len, int64_t delay_ms)
{
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
        return 1;
    }
    return 0;
}

void corral_svcgate_outcome(struct corral_svcgate *g, const struct corral_run *run,
                            enum corral_run_end end, const char *data, size_t len, int64_t delay_ms)
{
    if (g == NULL || run->job.id == NULL || run->job.run == NULL)
        return;
    char job[160];
    snprintf(job, sizeof(job), "%s/%s", run->job.id, run->job.run);
    /* To the gate of the service that granted its permit. */
    for (size_t k = 0; k < g->nm; k++)
        if (member_outcome(&g->m[k], job, run, end, data, len, delay_ms))
            return;
}

static void on_report(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct member *g = priv;
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
static int send_reports(struct member *g, size_t from, redisCallbackFn *fn)
{
    if (!corral_conn_usable(g->conn))
        return -1;
    struct corral_cmd cmd = {0};
    corral_cmd_addstr(&cmd, "FCALL");
    corral_cmd_addstr(&cmd, "corral_gate_report");
    corral_cmd_addstr(&cmd, "1");
    corral_cmd_addstr(&cmd, g->key);
    corral_cmd_addstr(&cmd, g->g->qs->worker_id);
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

void corral_svcgate_flush(struct corral_svcgate *sg)
{
    if (sg == NULL)
        return;
    int64_t now = corral_now_ms();
    for (size_t k = 0; k < sg->nm; k++) {
        struct member *g = &sg->m[k];
        /* Permits of runs that ended without an outcome (a lease lost, a
         * cancel) have expired at the gate: forgotten here too. */
        for (size_t i = g->np; i-- > 0;)
            if (g->p[i].job != NULL && now - g->p[i].granted_ms > sg->ttl_ms)
                drop_permit(g, i);
        if (g->nout > 0 && !g->reporting && send_reports(g, 0, on_report) == 0) {
            g->reporting = 1;
            g->sent = g->nout;
        }
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
    struct member *g = priv;
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
    const char *prefix = g->g->qs->cfg->redis.prefix;
    struct corral_cmd cmd;
    corral_cmd_declare_service(&cmd, prefix, g->svc);
    corral_cmd_service_tag(&cmd, prefix, g->svc->name);
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

/* Each member's connection freed (their pending callbacks run first, while
 * every member is still there), then the rest. */
static void gate_free(struct corral_svcgate *g)
{
    g->closing = 1;
    for (size_t k = 0; k < g->nm; k++)
        corral_conn_free(g->m[k].conn); /* NULL-safe */
    corral_cmd_free(&g->pending);
    for (size_t k = 0; k < g->nm; k++) {
        struct member *m = &g->m[k];
        for (size_t i = 0; i < m->np; i++)
            free(m->p[i].job);
        free(m->p);
        free(m->out);
        free(m->key);
        corral_log_repeat_end(&m->refused);
    }
    free(g->m);
    free(g);
}

void corral_svcgates_new(struct corral_wqueues *qs, struct corral_outcomes *o, struct ev_loop *loop,
                         const struct corral_redis_conf *rc, const char *password)
{
    for (size_t i = 0; i < qs->n; i++) {
        struct corral_wqueue *q = &qs->q[i];
        if (!q->conf->service_gate || q->svc == NULL)
            continue;
        struct corral_svcgate *g = corral_xcalloc(1, sizeof(*g));
        g->qs = qs;
        g->q = q;
        g->ttl_ms = q->conf->timeout_ms + PERMIT_MARGIN_MS;
        /* A fallback list (docs/breakers.md, "Fallback"): a gate per
         * service, asked in the list's order. */
        g->nm = q->conf->services.n > 1 ? q->conf->services.n : 1;
        g->m = corral_xcalloc(g->nm, sizeof(*g->m));
        for (size_t k = 0; k < g->nm; k++)
            corral_log_repeat_init(&g->m[k].refused, 0);
        int ok = 1;
        for (size_t k = 0; k < g->nm; k++) {
            struct member *m = &g->m[k];
            const struct corral_service_conf *sv =
                k == 0 ? q->svc : corral_config_service(qs->cfg, q->conf->services.items[k]);
            m->g = g;
            m->idx = k;
            m->svc = sv;
            struct corral_err err;
            /* The url was parsed by the queue's connections already. */
            m->conn = sv == NULL
                          ? NULL
                          : corral_conn_new(loop, "gate", rc, password, &gate_hooks, m, &err);
            if (m->conn == NULL) {
                ok = 0;
                break;
            }
            m->key = corral_service_gate_key(qs->cfg->redis.prefix, sv->name);
            corral_conn_route(m->conn, m->key);
        }
        if (!ok) {
            gate_free(g);
            continue;
        }
        q->gate = g;
        corral_outcomes_set_gate(o, i, g);
        for (size_t k = 0; k < g->nm; k++)
            corral_conn_start(g->m[k].conn);
    }
}

void corral_svcgates_close(struct corral_wqueues *qs, int64_t grace_ms)
{
    for (size_t i = 0; i < qs->n; i++) {
        struct corral_svcgate *g = qs->q[i].gate;
        if (g == NULL)
            continue;
        g->closing = 1;
        for (size_t k = 0; k < g->nm; k++) {
            struct member *m = &g->m[k];
            /* What no report carries yet goes now, before the close (whose
             * grace lets the replies come): the last turn's outcomes. */
            if (m->nout > m->sent)
                send_reports(m, m->sent, on_last_report);
            corral_conn_close(m->conn, grace_ms);
        }
    }
}

void corral_svcgate_free(struct corral_svcgate *g)
{
    if (g == NULL)
        return;
    gate_free(g);
}

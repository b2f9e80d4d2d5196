/* The outcome FIFO (see outcomes.h).
 *
 * What must stay true: an outcome leaves memory only when Redis answered
 * the call that carried it (written, or refused as stale or reclaimed);
 * whatever happens to the connection it is kept and sent again, and the run
 * token makes a late write harmless. */
#include "outcomes.h"

#include <stdlib.h>
#include <string.h>

#include "corral/log.h"
#include "corral/util.h"
#include "gate.h"
#include "settle.h"

/* Which function writes an outcome. */
enum call { CALL_ACK, CALL_FAIL, CALL_DEFER };
#define NCALLS 3

struct outcome {
    size_t qi;
    char *id;
    char *run;
    enum corral_run_end end;
    char *data;
    size_t len;
    int64_t delay_ms;
    int sent;                     /* in a call not yet answered */
    struct corral_settle *settle; /* the call's usage, or NULL (settle.h) */
    struct outcome *next;
};

struct corral_outcomes {
    struct corral_conn *conn;
    const char *prefix;
    const char *worker_id;
    const char *const *queues;
    size_t nq;
    struct outcome *head; /* oldest first */
    struct outcome **tail;
    size_t n;
    size_t unsent; /* of n, not in a call */
    int failing;   /* the last answered write failed */
    int separate;  /* corral_ack_reserve is refused (NOPERM): acks and reserves apart */
    int held;      /* said that failing writes hold reserves back */
    struct corral_log_repeat refused;
    struct corral_log_repeat refused_settle; /* corral_settle's, logged apart */
    struct corral_svcgate **gates;           /* per queue: its service's gate (gate.h) or NULL */
};

/* A call in flight and the outcomes it carries; with reserved set, a
 * corral_ack_reserve whose reserve part goes to reserved(priv, ...). */
struct batch {
    struct corral_outcomes *o;
    enum call call;
    struct outcome **items;
    size_t n;
    corral_outcomes_reserved_fn *reserved;
    void *priv;
};

/* The reserve part of a corral_ack_reserve call: what was asked. */
struct reserve_ask {
    int want;
    int max_inflight;
    corral_outcomes_reserved_fn *reserved;
    void *priv;
};

static enum call call_of(enum corral_run_end end)
{
    switch (end) {
    case CORRAL_END_DONE:
        return CALL_ACK;
    case CORRAL_END_DEFER:
    case CORRAL_END_THROTTLE:
    case CORRAL_END_QUOTA:
        return CALL_DEFER;
    case CORRAL_END_RETRY:
    case CORRAL_END_PERMANENT:
        break;
    }
    return CALL_FAIL;
}

static enum corral_defer_kind defer_kind(enum corral_run_end end)
{
    return end == CORRAL_END_THROTTLE ? CORRAL_DEFER_THROTTLE
           : end == CORRAL_END_QUOTA  ? CORRAL_DEFER_QUOTA
                                      : CORRAL_DEFER_PLAIN;
}

/* --- the library's per-job answers -------------------------------------
 * Function library v4 answers ack, fail, defer and renew with one word per
 * job (docs/protocol.md, "Runs and leases"): the job's new state, or STALE
 * (no such run of this worker) or RECLAIMED (this run's lease was taken
 * back). libcorral's corral_reply_runs reads them; these map them to what
 * the worker does. */

static enum corral_answer answer_of(enum corral_run_status s)
{
    return s == CORRAL_STATUS_STALE       ? CORRAL_ANSWER_STALE
           : s == CORRAL_STATUS_RECLAIMED ? CORRAL_ANSWER_RECLAIMED
                                          : CORRAL_ANSWER_OK;
}

/* st[i] for each job of a reply to ack, fail, defer or renew; -1 with err
 * when the reply has not the expected shape. */
int corral_run_answers(const redisReply *r, enum corral_answer *st, size_t n,
                       struct corral_err *err)
{
    enum corral_run_status *v = corral_xcalloc(n ? n : 1, sizeof(*v));
    int rc = corral_reply_runs(r, v, n, err);
    for (size_t i = 0; rc == 0 && i < n; i++)
        st[i] = answer_of(v[i]);
    free(v);
    return rc;
}

/* --- the FIFO ------------------------------------------------------------ */

static void free_outcome(struct outcome *oc)
{
    free(oc->id);
    free(oc->run);
    free(oc->data);
    free(oc->settle);
    free(oc);
}

static void unlink_outcome(struct corral_outcomes *o, struct outcome *oc)
{
    for (struct outcome **p = &o->head; *p; p = &(*p)->next) {
        if (*p == oc) {
            *p = oc->next;
            if (o->tail == &oc->next)
                o->tail = p;
            o->n--;
            return;
        }
    }
}

static struct outcome *add_outcome(struct corral_outcomes *o, size_t qi, char *id, char *run,
                                   enum corral_run_end end, const char *data, size_t len,
                                   int64_t delay_ms)
{
    struct outcome *oc = corral_xcalloc(1, sizeof(*oc));
    oc->qi = qi;
    oc->id = id;
    oc->run = run;
    oc->end = end;
    oc->data = corral_xstrndup(data ? data : "", data ? len : 0);
    oc->len = data ? len : 0;
    oc->delay_ms = delay_ms;
    *o->tail = oc;
    o->tail = &oc->next;
    o->n++;
    o->unsent++;
    return oc;
}

void corral_outcomes_add(struct corral_outcomes *o, size_t qi, char *id, char *run,
                         enum corral_run_end end, const char *data, size_t len, int64_t delay_ms)
{
    add_outcome(o, qi, id, run, end, data, len, delay_ms);
}

void corral_outcomes_add_run(struct corral_outcomes *o, size_t qi, struct corral_run *run,
                             enum corral_run_end end, const char *data, size_t len,
                             int64_t delay_ms)
{
    corral_svcgate_outcome(o->gates[qi], run, end, data, len, delay_ms); /* gate.h */
    add_outcome(o, qi, run->job.id, run->job.run, end, data, len, delay_ms)->settle = run->settle;
    run->job.id = run->job.run = NULL;
    run->settle = NULL;
}

size_t corral_outcomes_unwritten(const struct corral_outcomes *o)
{
    return o->n;
}

size_t corral_outcomes_unsent(const struct corral_outcomes *o)
{
    return o->unsent;
}

int corral_outcomes_failing(const struct corral_outcomes *o)
{
    return o->failing;
}

int corral_outcomes_held_back(struct corral_outcomes *o, int slots)
{
    int held = o->n > (size_t)slots;
    if (held && !o->held && o->failing) {
        corral_log_warn("outcomes not written; taking no new jobs until they are",
                        "worker=%s unwritten=%zu slots=%d", o->worker_id, o->n, slots);
        o->held = 1;
    } else if (!held && o->held) {
        corral_log_info("outcomes written; taking jobs again", "worker=%s unwritten=%zu",
                        o->worker_id, o->n);
        o->held = 0;
    }
    return held;
}

void corral_outcomes_add_ids(const struct corral_outcomes *o, size_t qi, struct corral_cmd *cmd)
{
    for (const struct outcome *oc = o->head; oc; oc = oc->next)
        if (oc->qi == qi)
            corral_cmd_addstr(cmd, oc->id);
}

/* --- writing ------------------------------------------------------------- */

/* Logged once per outcome, at notice: the run's lease had gone, so the
 * library wrote nothing, and writing again would change nothing. */
static void note_not_recorded(const struct corral_outcomes *o, const struct outcome *oc,
                              enum corral_answer a)
{
    corral_log_notice(a == CORRAL_ANSWER_RECLAIMED
                          ? "outcome dropped: this run's lease was reclaimed and the job "
                            "requeued or ended"
                          : "outcome not recorded: a newer run of the job exists",
                      "queue=%s id=%s run=%s", o->queues[oc->qi], oc->id, oc->run);
}

static void on_batch_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct batch *b = priv;
    struct corral_outcomes *o = b->o;
    redisReply *r = reply;
    /* corral_ack_reserve answers {acks, jobs} (docs/protocol.md). */
    const redisReply *runs = r, *jobs = NULL;
    if (b->reserved != NULL && r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        runs = r->element[0];
        jobs = r->element[1];
    }
    o->failing = r == NULL || r->type == REDIS_REPLY_ERROR;
    if (o->failing) {
        /* Kept: written again after a reconnect, or after the pause that
         * follows an error reply. */
        enum corral_err_word word = r ? corral_reply_word(r->str, r->len) : CORRAL_WORD_NONE;
        if (r != NULL)
            corral_conn_refused(o->conn, &o->refused, "writing outcomes", r->str, word);
        if (b->reserved != NULL && word == CORRAL_WORD_NOPERM && !o->separate) {
            /* An ACL that names the functions it allows, without this one. */
            corral_log_warn("corral_ack_reserve refused; acks and reserves go as separate calls",
                            "worker=%s", o->worker_id);
            o->separate = 1;
        }
        for (size_t i = 0; i < b->n; i++)
            b->items[i]->sent = 0;
        o->unsent += b->n;
    } else {
        corral_conn_accepted(o->conn, &o->refused);
        enum corral_answer *st = corral_xcalloc(b->n, sizeof(*st));
        struct corral_err err;
        if (corral_run_answers(runs, st, b->n, &err) < 0)
            corral_log_err("unexpected answer to writing outcomes; taking them as written",
                           "error=\"%s\"", err.msg);
        for (size_t i = 0; i < b->n; i++) {
            struct outcome *oc = b->items[i];
            if (st[i] != CORRAL_ANSWER_OK)
                note_not_recorded(o, oc, st[i]);
            unlink_outcome(o, oc);
            free_outcome(oc);
        }
        free(st);
    }
    if (b->reserved != NULL)
        b->reserved(b->priv, jobs, r == NULL);
    free(b->items);
    free(b);
}

static void on_settle_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct corral_outcomes *o = priv;
    redisReply *r = reply;
    /* Logged only: the outcomes sent after it meet the same Redis and
     * handle its refusal (back-off, a moved master); they carry it again. */
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        corral_logr(&o->refused_settle, CORRAL_LOG_ERR, "redis refused a call",
                    "call=\"settling usage\" error=\"%s\"", r->str);
}

/* The usage of the batch's runs, as one corral_settle sent just before the
 * outcomes (docs/tokens.md): sent again with them when they are (Redis
 * counts each run once), so a lost call loses no usage. */
static void send_settles(struct corral_outcomes *o, const char *queue, const struct batch *b)
{
    struct corral_cmd cmd;
    int any = 0;
    for (size_t i = 0; i < b->n; i++) {
        const struct outcome *oc = b->items[i];
        if (oc->settle == NULL)
            continue;
        if (!any)
            corral_settle_cmd(&cmd, o->prefix, queue, o->worker_id);
        any = 1;
        corral_settle_add(&cmd, oc->id, oc->run, oc->settle);
    }
    if (!any)
        return;
    corral_conn_send(o->conn, on_settle_reply, o, &cmd);
    corral_cmd_free(&cmd);
}

/* Sends the unsent outcomes of queue qi written by call, if any; with ask
 * (call CALL_ACK), as one corral_ack_reserve that also reserves. 0 when a
 * call went out. */
static int send_batch(struct corral_outcomes *o, size_t qi, enum call call,
                      const struct reserve_ask *ask)
{
    size_t n = 0;
    for (struct outcome *oc = o->head; oc; oc = oc->next)
        n += !oc->sent && oc->qi == qi && call_of(oc->end) == call;
    if (n == 0)
        return -1;
    struct batch *b = corral_xcalloc(1, sizeof(*b));
    b->o = o;
    b->call = call;
    if (ask != NULL) {
        b->reserved = ask->reserved;
        b->priv = ask->priv;
    }
    b->items = corral_xcalloc(n, sizeof(struct outcome *));
    struct corral_outcome *args = corral_xcalloc(n, sizeof(*args));
    for (struct outcome *oc = o->head; oc; oc = oc->next) {
        if (oc->sent || oc->qi != qi || call_of(oc->end) != call)
            continue;
        args[b->n] = (struct corral_outcome){.id = oc->id,
                                             .run = oc->run,
                                             .data = oc->data,
                                             .len = oc->len,
                                             .permanent = oc->end == CORRAL_END_PERMANENT,
                                             .delay_ms = oc->delay_ms,
                                             .defer_kind = defer_kind(oc->end)};
        b->items[b->n++] = oc;
    }
    struct corral_cmd cmd;
    const char *queue = o->queues[qi];
    send_settles(o, queue, b);
    if (ask != NULL)
        corral_cmd_ack_reserve(&cmd, o->prefix, queue, o->worker_id, args, n, ask->want,
                               ask->max_inflight);
    else if (call == CALL_ACK)
        corral_cmd_ack(&cmd, o->prefix, queue, o->worker_id, args, n);
    else if (call == CALL_FAIL)
        corral_cmd_fail(&cmd, o->prefix, queue, o->worker_id, args, n);
    else
        corral_cmd_defer(&cmd, o->prefix, queue, o->worker_id, args, n);
    int rc = corral_conn_send(o->conn, on_batch_reply, b, &cmd);
    if (rc == 0) {
        for (size_t i = 0; i < b->n; i++)
            b->items[i]->sent = 1;
        o->unsent -= b->n;
    } else {
        free(b->items);
        free(b);
    }
    corral_cmd_free(&cmd);
    free(args);
    return rc;
}

/* Once per loop turn: everything that ended since the last turn goes out
 * together. */
void corral_outcomes_flush(struct corral_outcomes *o)
{
    for (size_t qi = 0; qi < o->nq; qi++) /* the gates' reports, once per loop turn too */
        corral_svcgate_flush(o->gates[qi]);
    if (o->head == NULL || !corral_conn_usable(o->conn))
        return;
    for (size_t qi = 0; qi < o->nq; qi++)
        for (int call = 0; call < NCALLS; call++)
            send_batch(o, qi, (enum call)call, NULL);
}

int corral_outcomes_has_acks(const struct corral_outcomes *o, size_t qi)
{
    if (o->failing || o->separate || o->gates[qi] != NULL) /* a gate's permits come first */
        return 0;
    for (const struct outcome *oc = o->head; oc; oc = oc->next)
        if (!oc->sent && oc->qi == qi && call_of(oc->end) == CALL_ACK)
            return 1;
    return 0;
}

/* The flush with queue rqi's acks and the reserve in one call, sent last:
 * Redis runs a connection's calls in order, so every outcome of the turn
 * is written before the reserve, as with a flush and a separate reserve. */
int corral_outcomes_flush_reserve(struct corral_outcomes *o, size_t rqi, int want, int max_inflight,
                                  corral_outcomes_reserved_fn *reserved, void *priv)
{
    if (!corral_conn_usable(o->conn))
        return -1;
    for (size_t qi = 0; qi < o->nq; qi++)
        for (int call = 0; call < NCALLS; call++)
            if (qi != rqi || call != CALL_ACK)
                send_batch(o, qi, (enum call)call, NULL);
    const struct reserve_ask ask = {want, max_inflight, reserved, priv};
    return send_batch(o, rqi, CALL_ACK, &ask);
}

struct corral_outcomes *corral_outcomes_new(struct corral_conn *conn, const char *prefix,
                                            const char *worker_id, const char *const *queues,
                                            size_t nq)
{
    struct corral_outcomes *o = corral_xcalloc(1, sizeof(*o));
    o->conn = conn;
    o->prefix = prefix;
    o->worker_id = worker_id;
    o->queues = queues;
    o->nq = nq;
    o->tail = &o->head;
    o->gates = corral_xcalloc(nq ? nq : 1, sizeof(void *)); /* struct corral_svcgate * */
    corral_log_repeat_init(&o->refused, 0);
    corral_log_repeat_init(&o->refused_settle, 0);
    return o;
}

void corral_outcomes_free(struct corral_outcomes *o)
{
    if (o == NULL)
        return;
    while (o->head != NULL) {
        struct outcome *oc = o->head;
        o->head = oc->next;
        free_outcome(oc);
    }
    corral_log_repeat_end(&o->refused);
    corral_log_repeat_end(&o->refused_settle);
    free(o->gates);
    free(o);
}

void corral_outcomes_set_gate(struct corral_outcomes *o, size_t qi, struct corral_svcgate *g)
{
    o->gates[qi] = g;
}

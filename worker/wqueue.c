/* The queues a worker serves (see wqueue.h). */
#include "wqueue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/bootstrap.h"
#include "corral/log.h"
#include "corral/redis.h"
#include "corral/util.h"
#include "gate.h"

static int init_queue(struct corral_wqueues *qs, struct corral_wqueue *q, struct ev_loop *loop,
                      const char *name, struct corral_err *err)
{
    const struct corral_config *cfg = qs->cfg;
    q->conf = corral_config_queue(cfg, name);
    if (q->conf == NULL) {
        corral_err_set(err, CORRAL_ERR_NOTFOUND, "queue \"%s\" has no [queue] section", name);
        return -1;
    }
    q->ops = corral_handler_ops_for(q->conf->handler);
    q->wake_key = corral_xasprintf("%s:{%s}:wake", cfg->redis.prefix, q->conf->name);
    if (q->conf->lease_ms < qs->lease_ms)
        qs->lease_ms = q->conf->lease_ms;
    if (q->conf->handler == CORRAL_HANDLER_HTTP)
        q->svc = corral_config_service(cfg, q->conf->service);
    if (q->svc != NULL && !q->conf->service_gate) { /* with a gate: gate.c, no wake list */
        /* The host part of the worker id "<host>:<pid>". */
        const char *colon = strrchr(qs->worker_id, ':');
        char *host = colon ? corral_xstrndup(qs->worker_id, (size_t)(colon - qs->worker_id))
                           : corral_xstrdup(qs->worker_id);
        q->svc_wake_key = corral_service_wake_key(cfg->redis.prefix, q->svc->name, host);
        free(host);
    }
    if (q->ops->queue_init != NULL && q->ops->queue_init(loop, cfg, q->conf, &q->state, err) < 0)
        return -1;
    return 0;
}

int corral_wqueues_init(struct corral_wqueues *qs, struct ev_loop *loop,
                        const struct corral_config *cfg, const char *worker_id,
                        const char *const *names, size_t n, struct corral_err *err)
{
    memset(qs, 0, sizeof(*qs));
    qs->cfg = cfg;
    qs->worker_id = worker_id;
    qs->q = corral_xcalloc(n ? n : 1, sizeof(*qs->q));
    qs->names = corral_xcalloc(n ? n : 1, sizeof(*qs->names));
    qs->lease_ms = INT64_MAX;
    for (size_t i = 0; i < n; i++) {
        qs->n++; /* counted first: a half-built queue is freed with the rest */
        if (init_queue(qs, &qs->q[i], loop, names[i], err) < 0) {
            corral_wqueues_free(qs);
            return -1;
        }
        qs->names[i] = qs->q[i].conf->name;
    }
    return 0;
}

void corral_wqueues_free(struct corral_wqueues *qs)
{
    for (size_t i = 0; i < qs->n; i++) {
        struct corral_wqueue *q = &qs->q[i];
        if (q->ops != NULL && q->ops->queue_free != NULL)
            q->ops->queue_free(q->state);
        free(q->wake_key);
        free(q->svc_wake_key);
        corral_svcgate_free(q->gate);
    }
    free(qs->q);
    free(qs->names);
    memset(qs, 0, sizeof(*qs));
}

size_t corral_wqueues_open(const struct corral_wqueues *qs, size_t i)
{
    int64_t now = corral_now_ms();
    while (i < qs->n && qs->q[i].gated_until_ms > now)
        i++;
    return i;
}

void corral_wqueue_gate(const struct corral_wqueues *qs, struct corral_wqueue *q,
                        const struct corral_gate *g)
{
    if (g->wait_ms == 0 || q->svc == NULL) {
        if (q->gate_why[0] != '\0' && q->svc != NULL)
            corral_log_info("service takes calls again", "worker=%s queue=%s service=%s",
                            qs->worker_id, q->conf->name, q->svc->name);
        q->gated_until_ms = 0;
        q->gate_why[0] = '\0';
        return;
    }
    /* A gate that only moves its deadline is the same gate. */
    q->gated_until_ms = corral_now_ms() + g->wait_ms;
    if (strcmp(q->gate_why, g->why) != 0) {
        corral_log_info("service takes no calls for now; jobs wait in the queue",
                        "worker=%s queue=%s service=%s wait_ms=%lld reason=\"%s\"", qs->worker_id,
                        q->conf->name, q->svc->name, (long long)g->wait_ms, g->why);
        snprintf(q->gate_why, sizeof(q->gate_why), "%s", g->why);
    }
}

void corral_wqueues_cmd_wait(const struct corral_wqueues *qs, int timeout_s, struct corral_cmd *cmd)
{
    memset(cmd, 0, sizeof(*cmd));
    corral_cmd_addstr(cmd, "BLPOP");
    int64_t now = corral_now_ms();
    for (size_t i = 0; i < qs->n; i++) {
        const struct corral_wqueue *q = &qs->q[i];
        /* a gated service (gate.c) has no wake list: its queue's, till the timeout */
        corral_cmd_addstr(cmd, q->gated_until_ms > now && q->svc_wake_key ? q->svc_wake_key
                                                                          : q->wake_key);
    }
    corral_cmd_addint(cmd, timeout_s);
}

void corral_wqueues_woken(struct corral_wqueues *qs, const char *key)
{
    for (size_t i = 0; i < qs->n; i++) {
        struct corral_wqueue *q = &qs->q[i];
        if (q->svc_wake_key != NULL && strcmp(q->svc_wake_key, key) == 0)
            q->gated_until_ms = 0;
    }
}

/* --- set-up in Redis ----------------------------------------------------- */

/* The version Redis has decides whether the library is loaded; then the
 * worker's queues and their services are declared: the same steps corrald
 * and corralctl run (queue/bootstrap.c), sent on this async connection. */
static void on_version(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct corral_wqueues *qs = priv;
    redisReply *r = reply;
    if (r == NULL)
        return; /* the connection went; the set-up runs again on the next */
    long long have;
    struct corral_err err;
    if (corral_bootstrap_reply_version(&ac->c, r, &have, &err) < 0) {
        corral_conn_setup_failed(qs->conn, "FCALL corral_version", err.msg);
        return;
    }
    const char **names = corral_xcalloc(qs->n ? qs->n : 1, sizeof(*names));
    for (size_t i = 0; i < qs->n; i++)
        names[i] = qs->q[i].conf->name;
    struct corral_bootstrap b;
    corral_bootstrap_build(&b, qs->cfg, have, CORRAL_BOOTSTRAP_QUEUES, names, qs->n);
    free(names);
    for (size_t i = 0; i < b.n; i++)
        if (qs->cfg->redis.cluster.n == 0 || strcmp(b.steps[i].what, "declare service") != 0)
            corral_conn_setup_send(qs->conn, b.steps[i].what, &b.steps[i].cmd); /* else gate.c */
    corral_bootstrap_free(&b);
    corral_conn_setup_end(qs->conn);
}

void corral_wqueues_setup(struct corral_conn *c, void *priv)
{
    struct corral_wqueues *qs = priv;
    qs->conn = c;
    struct corral_cmd cmd = {0};
    corral_bootstrap_cmd_version(&cmd);
    corral_conn_send(c, on_version, qs, &cmd);
    corral_cmd_free(&cmd);
}

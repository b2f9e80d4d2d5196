/* corrald's link to Redis (link.h): one connection, or a Cluster's router.
 * A queue's calls are sent to the queue's node as libcorral's callers do
 * (corral/cluster_client.h), again after a MOVED or ASK. */
#include "link.h"

#include <stdlib.h>
#include <string.h>

#include "corral/bootstrap.h"
#include "corral/health.h"
#include "corral/queue.h"

/* How many redirections one call follows (the pattern of cluster_client.h). */
#define MAX_RETRIES 20

int corrald_link_up(const struct corrald_link *l)
{
    return l->c != NULL || l->cc != NULL;
}

int corrald_link_same(const struct corral_redis_conf *a, const struct corral_redis_conf *b)
{
    if (strcmp(a->url, b->url) != 0 || a->cluster.n != b->cluster.n)
        return 0;
    for (size_t i = 0; i < a->cluster.n; i++)
        if (strcmp(a->cluster.items[i], b->cluster.items[i]) != 0)
            return 0;
    return 1;
}

void corrald_link_close(struct corrald_link *l)
{
    if (l->c != NULL)
        redisFree(l->c);
    corral_cluster_free(l->cc);
    l->c = NULL;
    l->cc = NULL;
}

redisContext *corrald_link_key(struct corrald_link *l, const char *key, struct corral_err *err)
{
    redisContext *c = l->cc != NULL ? corral_cluster_conn(l->cc, key, strlen(key), err) : l->c;
    if (c == NULL) {
        if (l->cc == NULL)
            corral_err_set(err, CORRAL_ERR_REDIS, "redis: not connected");
        l->lost = 1;
    }
    return c;
}

int corrald_link_retry(struct corrald_link *l, redisContext *c, const struct corral_err *err)
{
    if (c == NULL || c->err) {
        l->lost = 1;
        if (l->cc != NULL && c != NULL)
            corral_cluster_redirected(l->cc, c, err); /* drops c, reads the map again */
        return 0;
    }
    return l->cc != NULL && corral_cluster_redirected(l->cc, c, err);
}

/* One housekeeping call of a queue's. */
enum qop { Q_PROMOTE, Q_RECLAIM, Q_RECLAIM_WORKER, Q_HOLDERS, Q_STATS };

struct qcall {
    enum qop op;
    const char *worker;         /* Q_RECLAIM_WORKER */
    struct corral_strlist *out; /* Q_HOLDERS */
    int window_s;               /* Q_STATS */
    char **json;                /* Q_STATS */
};

static long long qcall_run(redisContext *c, const char *prefix, const char *queue,
                           const struct qcall *q, struct corral_err *err)
{
    switch (q->op) {
    case Q_PROMOTE:
        return corral_queue_promote(c, prefix, queue, err);
    case Q_RECLAIM:
        return corral_queue_reclaim(c, prefix, queue, err);
    case Q_RECLAIM_WORKER:
        return corral_queue_reclaim_worker(c, prefix, queue, q->worker, err);
    case Q_HOLDERS:
        return corral_queue_lease_holders(c, prefix, queue, q->out, err);
    case Q_STATS:
        return corral_queue_stats(c, prefix, queue, q->window_s, q->json, err);
    }
    return -1;
}

static long long on_queue(struct corrald_link *l, const char *prefix, const char *queue,
                          const struct qcall *q, struct corral_err *err)
{
    l->lost = 0;
    char *key = corral_queue_key(prefix, queue);
    redisContext *c = corrald_link_key(l, key, err);
    long long rc = c != NULL ? qcall_run(c, prefix, queue, q, err) : -1;
    for (int k = 0; rc < 0 && k < MAX_RETRIES && corrald_link_retry(l, c, err); k++)
        rc = (c = corrald_link_key(l, key, err)) != NULL ? qcall_run(c, prefix, queue, q, err) : -1;
    free(key);
    return rc;
}

long long corrald_link_promote(struct corrald_link *l, const char *prefix, const char *queue,
                               struct corral_err *err)
{
    struct qcall q = {.op = Q_PROMOTE};
    return on_queue(l, prefix, queue, &q, err);
}

long long corrald_link_reclaim(struct corrald_link *l, const char *prefix, const char *queue,
                               struct corral_err *err)
{
    struct qcall q = {.op = Q_RECLAIM};
    return on_queue(l, prefix, queue, &q, err);
}

long long corrald_link_reclaim_worker(struct corrald_link *l, const char *prefix, const char *queue,
                                      const char *worker, struct corral_err *err)
{
    struct qcall q = {.op = Q_RECLAIM_WORKER, .worker = worker};
    return on_queue(l, prefix, queue, &q, err);
}

int corrald_link_lease_holders(struct corrald_link *l, const char *prefix, const char *queue,
                               struct corral_strlist *out, struct corral_err *err)
{
    struct qcall q = {.op = Q_HOLDERS, .out = out};
    return (int)on_queue(l, prefix, queue, &q, err);
}

int corrald_link_stats(struct corrald_link *l, const char *prefix, const char *queue, int window_s,
                       char **json_out, struct corral_err *err)
{
    struct qcall q = {.op = Q_STATS, .window_s = window_s, .json = json_out};
    return (int)on_queue(l, prefix, queue, &q, err);
}

int corrald_link_bootstrap(struct corrald_link *l, const struct corral_config *cfg,
                           struct corral_err *err)
{
    l->lost = 0;
    if (l->cc != NULL) {
        /* A refusal of the config (a service) is not a lost connection. */
        int rc = corral_cluster_bootstrap(l->cc, cfg, CORRAL_BOOTSTRAP_ALL, NULL, 0, err);
        l->lost = rc < 0 && err->code != CORRAL_ERR_INVALID;
        return rc;
    }
    int rc = corral_bootstrap_run(l->c, cfg, CORRAL_BOOTSTRAP_ALL, NULL, 0, NULL, err);
    l->lost = rc < 0 && l->c->err;
    return rc;
}

json_t *corrald_link_health(struct corrald_link *l, const struct corral_config *cfg)
{
    if (l->cc == NULL)
        return corral_redis_health(l->c, &cfg->redis);
    /* Each primary holding a served queue, once; its warnings name it. */
    json_t *all = json_array();
    redisContext *seen[64];
    size_t nseen = 0;
    for (size_t i = 0; i < cfg->pool.queues.n && nseen < 64; i++) {
        struct corral_err err;
        redisContext *c =
            corral_cluster_queue_conn(l->cc, cfg->redis.prefix, cfg->pool.queues.items[i], &err);
        int dup = c == NULL;
        for (size_t k = 0; k < nseen && !dup; k++)
            dup = seen[k] == c;
        if (dup)
            continue;
        seen[nseen++] = c;
        char node[300];
        corral_cluster_queue_node(l->cc, cfg->redis.prefix, cfg->pool.queues.items[i], node,
                                  sizeof(node));
        json_t *h = corral_redis_health(c, &cfg->redis);
        json_t *ws = json_object_get(h, "warnings");
        for (size_t k = 0; k < json_array_size(ws); k++)
            json_array_append_new(
                all, json_sprintf("node %s: %s", node, json_string_value(json_array_get(ws, k))));
        json_decref(h);
    }
    return json_pack("{s:o}", "warnings", all);
}

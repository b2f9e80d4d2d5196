/* corralctl on a Redis Cluster ([redis] cluster; docs/design.md, "Redis
 * Cluster slots"): a queue's commands run on the connection of the primary
 * holding its slot (ctl_route), sent again after a MOVED or ASK
 * (ctl_rerouted); status reads the queue registry, every queue's
 * statistics from its own node, and the shape of the Cluster. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "corral/backoff.h"
#include "corral/cluster.h"
#include "corral/health.h"
#include "corral/queue.h"
#include "corral/redis.h"
#include "corral/util.h"
#include "ctl.h"
#include "table.h"

/* A Cluster failing over (docs/design.md, "Redis Cluster slots"): a node
 * that refuses connections or a slot without a primary (CLUSTERDOWN,
 * TRYAGAIN) for the second or so until a replica is promoted. The call did
 * not run, so corralctl waits (equal jitter, 100 ms doubling to 1 s, about
 * 15 s in all) and goes again rather than failing the enqueue. */
#define CLUSTER_DOWN_TRIES 20

static void cluster_wait(struct ctl *ctl)
{
    if (ctl->down_tries++ == 0)
        corral_backoff_init(&ctl->down, 100, 1000);
    int64_t ms = corral_backoff_next(&ctl->down);
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

redisContext *ctl_cluster_conn(struct ctl *ctl, const char *key, struct corral_err *err)
{
    for (;;) {
        redisContext *c = corral_cluster_conn(ctl->cluster, key, strlen(key), err);
        if (c != NULL || ctl->down_tries >= CLUSTER_DOWN_TRIES)
            return c;
        cluster_wait(ctl); /* no node to send it to: nothing ran */
        corral_cluster_refresh(ctl->cluster, err);
    }
}

int ctl_route(struct ctl *ctl, const char *queue, struct corral_err *err)
{
    if (ctl->cluster == NULL)
        return 0;
    ctl->queue = queue;
    char *key = corral_queue_key(ctl->cfg->redis.prefix, queue);
    ctl->redis = ctl_cluster_conn(ctl, key, err);
    free(key);
    return ctl->redis != NULL ? 0 : -1;
}

int ctl_rerouted(struct ctl *ctl, struct corral_err *err)
{
    if (ctl->cluster == NULL || ctl->queue == NULL)
        return 0;
    int down = ctl->redis != NULL && !ctl->redis->err &&
               (strstr(err->msg, "CLUSTERDOWN") != NULL || strstr(err->msg, "TRYAGAIN") != NULL);
    if (down && ctl->down_tries >= CLUSTER_DOWN_TRIES)
        return 0;
    if (!corral_cluster_redirected(ctl->cluster, ctl->redis, err))
        return 0;
    if (down)
        cluster_wait(ctl);
    return ctl_route(ctl, ctl->queue, err) == 0;
}

/* One routed command with a single key; NULL with err. */
static redisReply *routed(struct ctl *ctl, const char *key, int argc, const char **argv,
                          const char *what, struct corral_err *err)
{
    size_t len[8];
    for (int i = 0; i < argc; i++)
        len[i] = strlen(argv[i]);
    redisReply *r = corral_cluster_command(ctl->cluster, key, strlen(key), argc, argv, len, err);
    if (r != NULL && corral_redis_check(NULL, r, what, err) < 0) {
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

int ctl_keyed_replies(struct ctl *ctl, const struct ctl_keyed *cmds, size_t n, redisReply **rs,
                      const char *what, struct corral_err *err)
{
    int rc = 0;
    for (size_t i = 0; ctl->cluster == NULL && i < n; i++) {
        const char *argv[5] = {cmds[i].argv[0], cmds[i].key};
        for (int k = 1; k < cmds[i].argc && k < 4; k++)
            argv[k + 1] = cmds[i].argv[k];
        redisAppendCommandArgv(ctl->redis, cmds[i].argc + 1, argv, NULL);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rs[i] = NULL;
        if (ctl->cluster == NULL) {
            if (redisGetReply(ctl->redis, (void **)&rs[i]) != REDIS_OK) {
                corral_redis_check(ctl->redis, NULL, what, err);
                rc = -1; /* the connection is gone: nothing more will come */
            }
            continue;
        }
        const char *argv[5] = {cmds[i].argv[0], cmds[i].key};
        size_t len[5] = {strlen(cmds[i].argv[0]), strlen(cmds[i].key)};
        for (int k = 1; k < cmds[i].argc && k < 4; k++) {
            argv[k + 1] = cmds[i].argv[k];
            len[k + 1] = strlen(cmds[i].argv[k]);
        }
        rs[i] = corral_cluster_command(ctl->cluster, cmds[i].key, strlen(cmds[i].key),
                                       cmds[i].argc + 1, argv, len, err);
        if (rs[i] == NULL)
            rc = -1;
    }
    if (rc < 0)
        for (size_t i = 0; i < n; i++) {
            if (rs[i] != NULL)
                freeReplyObject(rs[i]);
            rs[i] = NULL;
        }
    return rc;
}

redisReply *ctl_service_call(struct corral_cluster *cc, const char *prefix, const char *function,
                             const char *name, struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_breaker(&cmd, prefix, name);
    corral_cmd_service_tag(&cmd, prefix, name);
    free(cmd.argv[1]);
    cmd.argv[1] = corral_xstrdup(function);
    cmd.argvlen[1] = strlen(function);
    if (strcmp(function, "corral_breaker") != 0) { /* a write: FCALL, not FCALL_RO */
        free(cmd.argv[0]);
        cmd.argv[0] = corral_xstrdup("FCALL");
        cmd.argvlen[0] = 5;
    }
    redisReply *r = corral_cluster_command(cc, cmd.argv[3], cmd.argvlen[3], cmd.argc,
                                           (const char **)cmd.argv, cmd.argvlen, err);
    corral_cmd_free(&cmd);
    return r;
}

json_t *ctl_cluster_breakers(struct ctl *ctl, const char *service, int64_t now,
                             struct corral_err *err)
{
    struct corral_strlist names = {0};
    if (service != NULL) {
        corral_strlist_push(&names, service);
    } else {
        char *key = corral_xasprintf("%s:services", ctl->cfg->redis.prefix);
        const char *smembers[] = {"SMEMBERS", key};
        redisReply *declared = routed(ctl, key, 2, smembers, "SMEMBERS", err);
        free(key);
        if (declared == NULL)
            return NULL;
        ctl_breaker_names(ctl, declared, &names);
        freeReplyObject(declared);
    }
    json_t *out = json_array();
    for (size_t i = 0; out != NULL && i < names.n; i++) {
        redisReply *r = ctl_service_call(ctl->cluster, ctl->cfg->redis.prefix, "corral_breaker",
                                         names.items[i], err);
        json_t *b = r == NULL ? NULL
                    : service != NULL && corral_redis_check(NULL, r, "breaker", err) < 0
                        ? NULL
                        : ctl_breaker_json(names.items[i], r, now, err);
        freeReplyObject(r);
        if (b == NULL) {
            json_decref(out);
            out = NULL;
        } else {
            json_array_append_new(out, b);
        }
    }
    corral_strlist_free(&names);
    return out;
}

int ctl_cluster_breaker_reset(struct ctl *ctl, const char *service, struct corral_err *err)
{
    redisReply *r = ctl_service_call(ctl->cluster, ctl->cfg->redis.prefix, "corral_breaker_reset",
                                     service, err);
    int rc = r == NULL ? -1 : corral_redis_check(NULL, r, "breaker reset", err);
    freeReplyObject(r);
    return rc;
}

/* "host:port" of a CLUSTER SLOTS node entry [host, port, id, ...]. */
static json_t *node_addr(const redisReply *n)
{
    if (n->type != REDIS_REPLY_ARRAY || n->elements < 2 ||
        n->element[0]->type != REDIS_REPLY_STRING || n->element[1]->type != REDIS_REPLY_INTEGER)
        return NULL;
    return json_sprintf(strchr(n->element[0]->str, ':') ? "[%s]:%lld" : "%s:%lld",
                        n->element[0]->str, n->element[1]->integer);
}

/* The Cluster's shape from CLUSTER SLOTS (status --json "cluster"):
 * {"nodes": [{"address", "role": "primary", "slots": [[lo, hi], ...],
 * "replicas": [address, ...]}, {"address", "role": "replica", "primary"}],
 * "primaries", "replicas", "slots_served"}. */
static json_t *cluster_json(struct ctl *ctl, const char *any_key, struct corral_err *err)
{
    const char *argv[] = {"CLUSTER", "SLOTS"};
    redisReply *r = routed(ctl, any_key, 2, argv, "CLUSTER SLOTS", err);
    if (r == NULL)
        return NULL;
    json_t *nodes = json_array(), *by = json_object();
    long long served = 0, n_primaries = 0, n_replicas = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        json_t *addr = node_addr(e->element[2]);
        if (addr == NULL)
            continue;
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        served += hi - lo + 1;
        json_t *p = json_object_get(by, json_string_value(addr));
        if (p == NULL) {
            p = json_pack("{s:O s:s s:[] s:[]}", "address", addr, "role", "primary", "slots",
                          "replicas");
            json_object_set_new(by, json_string_value(addr), p);
            json_array_append(nodes, p);
            n_primaries++;
        }
        json_array_append_new(json_object_get(p, "slots"), json_pack("[I I]", lo, hi));
        for (size_t k = 3; k < e->elements; k++) {
            json_t *ra = node_addr(e->element[k]);
            if (ra == NULL)
                continue;
            json_t *reps = json_object_get(p, "replicas");
            int seen = 0;
            for (size_t m = 0; m < json_array_size(reps); m++)
                seen |= json_equal(json_array_get(reps, m), ra);
            if (!seen) {
                json_array_append(reps, ra);
                json_array_append_new(nodes, json_pack("{s:O s:s s:O}", "address", ra, "role",
                                                       "replica", "primary", addr));
                n_replicas++;
            }
            json_decref(ra);
        }
        json_decref(addr);
    }
    freeReplyObject(r);
    json_decref(by);
    return json_pack("{s:o s:I s:I s:I}", "nodes", nodes, "primaries", (json_int_t)n_primaries,
                     "replicas", (json_int_t)n_replicas, "slots_served", (json_int_t)served);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One queue's statistics (lean) with its levels in order and its node. */
static json_t *queue_stats(struct ctl *ctl, const char *name, struct corral_err *err)
{
    const char *prefix = ctl->cfg->redis.prefix;
    char *json = NULL;
    redisContext *c = corral_cluster_queue_conn(ctl->cluster, prefix, name, err);
    int rc = c ? corral_queue_stats(c, prefix, name, 60, &json, err) : -1;
    for (int k = 0; rc < 0 && k < 20 && corral_cluster_redirected(ctl->cluster, c, err); k++)
        rc = (c = corral_cluster_queue_conn(ctl->cluster, prefix, name, err))
                 ? corral_queue_stats(c, prefix, name, 60, &json, err)
                 : -1;
    if (rc < 0) {
        corral_err_prefix(err, "queue %s: cannot read its statistics", name);
        return NULL;
    }
    json_t *q = json_loads(json, 0, NULL);
    free(json);
    if (q == NULL) {
        corral_err_set(err, CORRAL_ERR_REDIS, "queue %s: its statistics are not JSON", name);
        return NULL;
    }
    char *conf = corral_xasprintf("%s:{%s}:conf", prefix, name);
    const char *hget[] = {"HGET", conf, "priorities"};
    redisReply *pr = routed(ctl, conf, 3, hget, "HGET", err);
    free(conf);
    if (pr == NULL) {
        corral_err_prefix(err, "queue %s: cannot read its priorities", name);
        json_decref(q);
        return NULL;
    }
    ctl_order_levels(q, pr->type == REDIS_REPLY_STRING ? pr->str : NULL);
    freeReplyObject(pr);
    char node[300];
    corral_cluster_queue_node(ctl->cluster, prefix, name, node, sizeof(node));
    json_object_set_new(q, "node", json_string(node));
    return q;
}

json_t *ctl_cluster_snapshot(struct ctl *ctl, struct corral_err *err)
{
    const char *prefix = ctl->cfg->redis.prefix;
    int64_t now = corral_wall_ms();
    char *qkey = corral_xasprintf("%s:queues", prefix);
    char *hkey = corral_xasprintf("%s:hosts", prefix);
    const char *smembers[] = {"SMEMBERS", qkey};
    const char *zrange[] = {"ZRANGE", hkey, "0", "-1"};
    json_t *result = NULL, *jq = json_array(), *jh = json_array(), *cl = NULL;
    redisReply *qr = routed(ctl, qkey, 2, smembers, "SMEMBERS", err);
    redisReply *hr = qr ? routed(ctl, hkey, 4, zrange, "ZRANGE", err) : NULL;
    if (hr == NULL) {
        corral_err_prefix(err, "cannot read the %s index", qr ? "host" : "queue");
        goto out;
    }
    struct corral_strlist queues = {0};
    for (size_t i = 0; qr->type == REDIS_REPLY_ARRAY && i < qr->elements; i++)
        corral_strlist_push(&queues, qr->element[i]->str);
    if (queues.n > 1)
        qsort(queues.items, queues.n, sizeof(char *), cmp_str);
    int ok = 1;
    for (size_t i = 0; i < queues.n && ok; i++) {
        json_t *q = queue_stats(ctl, queues.items[i], err);
        ok = q != NULL;
        if (ok)
            json_array_append_new(jq, q);
    }
    corral_strlist_free(&queues);
    /* Heartbeats: one key each, each on its own node. */
    for (size_t i = 0; ok && hr->type == REDIS_REPLY_ARRAY && i < hr->elements; i++) {
        char *key = corral_xasprintf("%s:host:%s", prefix, hr->element[i]->str);
        const char *hgetall[] = {"HGETALL", key};
        redisReply *h = routed(ctl, key, 2, hgetall, "HGETALL", err);
        free(key);
        ok = h != NULL;
        if (h != NULL && h->type == REDIS_REPLY_ARRAY && h->elements >= 2)
            json_array_append_new(jh, ctl_host_json(h, now));
        freeReplyObject(h);
    }
    if (ok)
        cl = cluster_json(ctl, qkey, err);
    if (cl != NULL) {
        redisContext *c = corral_cluster_conn(ctl->cluster, qkey, strlen(qkey), err);
        /* Breakers: each service's on its own node (its gate's keys). */
        json_t *br = ctl_cluster_breakers(ctl, NULL, now, err);
        result = br == NULL
                     ? NULL
                     : json_pack("{s:I s:O s:O s:o s:o s:o}", "time_ms", (json_int_t)now, "queues",
                                 jq, "hosts", jh, "breakers", br, "redis",
                                 c ? corral_redis_health(c, &ctl->cfg->redis) : json_object(),
                                 "cluster", cl);
        if (br == NULL)
            json_decref(cl);
    }
out:
    freeReplyObject(qr);
    freeReplyObject(hr);
    json_decref(jq);
    json_decref(jh);
    free(qkey);
    free(hkey);
    return result;
}

static const struct ctl_col node_cols[] = {{"NODE", 0}, {"ROLE", 0}, {"SLOTS", 1}, {"QUEUES", 0}};

void ctl_cluster_print(json_t *s, FILE *out, int color)
{
    json_t *cl = json_object_get(s, "cluster");
    if (cl == NULL)
        return;
    const char *bold = color ? "\033[1m" : "", *off = color ? "\033[0m" : "";
    struct ctl_table *t = ctl_table_new(node_cols, sizeof(node_cols) / sizeof(node_cols[0]));
    size_t i, k;
    json_t *n, *q;
    json_array_foreach(json_object_get(cl, "nodes"), i, n)
    {
        const char *addr = json_string_value(json_object_get(n, "address"));
        const char *role = json_string_value(json_object_get(n, "role"));
        long long slots = 0;
        json_t *r;
        json_array_foreach(json_object_get(n, "slots"), k, r)
        {
            slots += json_integer_value(json_array_get(r, 1)) -
                     json_integer_value(json_array_get(r, 0)) + 1;
        }
        char *names = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&names, &len);
        json_array_foreach(json_object_get(s, "queues"), k, q)
        {
            if (addr && strcmp(addr, json_string_value(json_object_get(q, "node")) ?: "") == 0)
                fprintf(f, "%s%s", ftell(f) ? " " : "",
                        json_string_value(json_object_get(q, "name")));
        }
        fclose(f);
        int primary = role && strcmp(role, "primary") == 0;
        ctl_table_cell(t, NULL, "%s", addr ? addr : "?");
        if (primary)
            ctl_table_cell(t, NULL, "%s", "primary");
        else
            ctl_table_cell(t, NULL, "replica of %s",
                           json_string_value(json_object_get(n, "primary")) ?: "?");
        ctl_table_cell(t, NULL, "%lld", slots);
        ctl_table_cell(t, NULL, "%s", names);
        free(names);
    }
    fputc('\n', out);
    ctl_table_print(t, out, bold, off, NULL);
    ctl_table_free(t);
}

/* Host heartbeats: a hash per host with a TTL plus a sorted set index, both
 * written in one pipeline so status never sees one without the other for
 * long (on a Cluster, one pipeline to each key's node). */
#include "heartbeat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/redis.h"
#include "corral/util.h"
#include "link.h"

/* Reads n pipelined replies from c; the first failure in err. */
static int replies(redisContext *c, int n, struct corral_err *err)
{
    int rc = 0;
    for (int i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            r = NULL;
        if (rc == 0 && corral_redis_check(c, r, "heartbeat", err) < 0)
            rc = -1;
        freeReplyObject(r);
        if (r == NULL)
            break;
    }
    return rc;
}

int corral_heartbeat_send(struct corrald_link *l, const char *prefix,
                          const struct corral_heartbeat *hb, int64_t ttl_ms, struct corral_err *err)
{
    l->lost = 0;
    char *key = corral_xasprintf("%s:host:%s", prefix, hb->host);
    char *index = corral_xasprintf("%s:hosts", prefix);
    /* Two keys, two slots on a Cluster: each pair goes to its key's node
     * (one connection, one round trip, on one Redis). */
    redisContext *ck = corrald_link_key(l, key, err);
    redisContext *ci = ck != NULL ? corrald_link_key(l, index, err) : NULL;
    if (ci == NULL) {
        free(key);
        free(index);
        return -1;
    }
    int64_t now = corral_wall_ms();
    redisAppendCommand(ck,
                       "HSET %s host %s pid %d workers %d busy %d slots %d min %d max %d "
                       "desired %d last_decision %s queues %s redis %s started_ms %lld "
                       "heartbeat_ms %lld version %s unwritten %lld tls %s tls_error %s",
                       key, hb->host, (int)hb->pid, hb->workers, hb->busy, hb->slots, hb->min,
                       hb->max, hb->desired, hb->last_decision ? hb->last_decision : "",
                       hb->queues ? hb->queues : "", hb->redis_state ? hb->redis_state : "ok",
                       (long long)hb->started_ms, (long long)now, CORRAL_VERSION,
                       (long long)hb->unwritten, hb->tls ? hb->tls : "",
                       hb->tls_error ? hb->tls_error : "");
    redisAppendCommand(ck, "PEXPIRE %s %lld", key, (long long)ttl_ms);
    redisAppendCommand(ci, "ZADD %s %lld %s", index, (long long)now, hb->host);
    /* Forget hosts whose beat is long gone (a day), so the index stays small. */
    redisAppendCommand(ci, "ZREMRANGEBYSCORE %s -inf %lld", index, (long long)(now - 86400000));
    free(key);
    free(index);
    /* Both pipelines are read before either failure is looked into: a
     * MOVED reads the map again on the router's connections. */
    int rk = replies(ck, ck == ci ? 4 : 2, err);
    struct corral_err ei;
    int ri = ck == ci ? 0 : replies(ci, 2, &ei);
    if (rk < 0)
        corrald_link_retry(l, ck, err);
    if (ri < 0) {
        if (rk == 0)
            *err = ei;
        if (!l->lost)
            corrald_link_retry(l, ci, &ei);
    }
    return rk < 0 || ri < 0 ? -1 : 0;
}

/* One command on key's node; -1 with err. */
static int one(struct corrald_link *l, const char *key, const char *cmd, const char *arg,
               struct corral_err *err)
{
    redisContext *c = corrald_link_key(l, key, err);
    if (c == NULL)
        return -1;
    redisReply *r = arg != NULL ? redisCommand(c, "%s %s %s", cmd, key, arg)
                                : redisCommand(c, "%s %s", cmd, key);
    int rc = corral_redis_check(c, r, "heartbeat", err);
    freeReplyObject(r);
    if (rc < 0)
        corrald_link_retry(l, c, err);
    return rc;
}

int corral_heartbeat_remove(struct corrald_link *l, const char *prefix, const char *host,
                            struct corral_err *err)
{
    l->lost = 0;
    char *key = corral_xasprintf("%s:host:%s", prefix, host);
    char *index = corral_xasprintf("%s:hosts", prefix);
    int rc = one(l, key, "DEL", NULL, err);
    if (rc == 0)
        rc = one(l, index, "ZREM", host, err);
    free(key);
    free(index);
    return rc;
}

static int lists_queue(const char *list, const char *queue)
{
    size_t n = strlen(queue);
    for (const char *p = list; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, queue, n) == 0)
            return 1;
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

int corral_heartbeat_live_hosts(struct corrald_link *l, const char *prefix, const char *queue,
                                int64_t max_age_ms, struct corral_err *err)
{
    char *index = corral_xasprintf("%s:hosts", prefix);
    int64_t now = corral_wall_ms();
    redisContext *c = corrald_link_key(l, index, err);
    redisReply *r =
        c ? redisCommand(c, "ZRANGEBYSCORE %s %lld +inf", index, (long long)(now - max_age_ms))
          : NULL;
    free(index);
    if (c == NULL || corral_redis_check(c, r, "hosts", err) < 0) {
        freeReplyObject(r);
        return -1;
    }
    int live = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        /* Each beat on its own key's node (another slot on a Cluster). */
        char *key = corral_xasprintf("%s:host:%s", prefix, r->element[i]->str);
        struct corral_err e;
        redisContext *ck = corrald_link_key(l, key, &e);
        redisReply *q = ck ? redisCommand(ck, "HGET %s queues", key) : NULL;
        free(key);
        if (q != NULL && q->type == REDIS_REPLY_STRING && lists_queue(q->str, queue))
            live++;
        freeReplyObject(q);
    }
    freeReplyObject(r);
    return live > 0 ? live : 1;
}

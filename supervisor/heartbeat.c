/* Host heartbeats: a hash per host with a TTL plus a sorted set index, both
 * written in one pipeline so status never sees one without the other for
 * long. */
#include "heartbeat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/redis.h"
#include "corral/util.h"

int corral_heartbeat_send(redisContext *c, const char *prefix, const struct corral_heartbeat *hb,
                          int64_t ttl_ms, struct corral_err *err)
{
    char *key = corral_xasprintf("%s:host:%s", prefix, hb->host);
    char *index = corral_xasprintf("%s:hosts", prefix);
    int64_t now = corral_wall_ms();
    redisAppendCommand(c,
                       "HSET %s host %s pid %d workers %d busy %d slots %d min %d max %d "
                       "desired %d last_decision %s queues %s redis %s started_ms %lld "
                       "heartbeat_ms %lld version %s unwritten %lld tls %s tls_error %s",
                       key, hb->host, (int)hb->pid, hb->workers, hb->busy, hb->slots, hb->min,
                       hb->max, hb->desired, hb->last_decision ? hb->last_decision : "",
                       hb->queues ? hb->queues : "", hb->redis_state ? hb->redis_state : "ok",
                       (long long)hb->started_ms, (long long)now, CORRAL_VERSION,
                       (long long)hb->unwritten, hb->tls ? hb->tls : "",
                       hb->tls_error ? hb->tls_error : "");
    redisAppendCommand(c, "PEXPIRE %s %lld", key, (long long)ttl_ms);
    redisAppendCommand(c, "ZADD %s %lld %s", index, (long long)now, hb->host);
    /* Forget hosts whose beat is long gone (a day), so the index stays small. */
    redisAppendCommand(c, "ZREMRANGEBYSCORE %s -inf %lld", index, (long long)(now - 86400000));
    free(key);
    free(index);
    int rc = 0;
    for (int i = 0; i < 4; i++) {
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

int corral_heartbeat_remove(redisContext *c, const char *prefix, const char *host,
                            struct corral_err *err)
{
    char *key = corral_xasprintf("%s:host:%s", prefix, host);
    char *index = corral_xasprintf("%s:hosts", prefix);
    redisReply *r = redisCommand(c, "DEL %s", key);
    int rc = corral_redis_check(c, r, "heartbeat", err);
    freeReplyObject(r);
    if (rc == 0) {
        r = redisCommand(c, "ZREM %s %s", index, host);
        rc = corral_redis_check(c, r, "heartbeat", err);
        freeReplyObject(r);
    }
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

int corral_heartbeat_live_hosts(redisContext *c, const char *prefix, const char *queue,
                                int64_t max_age_ms, struct corral_err *err)
{
    char *index = corral_xasprintf("%s:hosts", prefix);
    int64_t now = corral_wall_ms();
    redisReply *r =
        redisCommand(c, "ZRANGEBYSCORE %s %lld +inf", index, (long long)(now - max_age_ms));
    free(index);
    if (corral_redis_check(c, r, "hosts", err) < 0) {
        freeReplyObject(r);
        return -1;
    }
    int live = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        char *key = corral_xasprintf("%s:host:%s", prefix, r->element[i]->str);
        redisReply *q = redisCommand(c, "HGET %s queues", key);
        free(key);
        if (q != NULL && q->type == REDIS_REPLY_STRING && lists_queue(q->str, queue))
            live++;
        freeReplyObject(q);
    }
    freeReplyObject(r);
    return live > 0 ? live : 1;
}

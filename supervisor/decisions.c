/* The scaler's decisions of this host as a capped list in Redis, read by
 * corral-web (docs/web.md, "The scaler's decisions"). What is kept is
 * decided here, without I/O, so the unit tests drive it; the write is one
 * pipeline after the heartbeat, only when something new is kept. */
#include "decisions.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "corral/redis.h"
#include "corral/util.h"

int corral_decisions_note(struct corral_decisions *ds, int64_t t_ms, int from,
                          const struct corral_scale_decision *dec)
{
    /* Steady ticks repeat with new numbers in the reason every tick; only a
     * new count or a new kind of decision is worth a line. */
    if (ds->have_last && ds->last_desired == dec->desired && ds->last_action == dec->action)
        return 0;
    ds->have_last = 1;
    ds->last_desired = dec->desired;
    ds->last_action = dec->action;
    json_t *o = json_pack("{s:I,s:i,s:i,s:s,s:s}", "t_ms", (json_int_t)t_ms, "from", from, "to",
                          dec->desired, "action", corral_scale_action_name(dec->action), "reason",
                          dec->reason);
    char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (line == NULL) /* only a reason that is not UTF-8 (a queue name cut) */
        return 0;
    if (ds->npending == CORRAL_DECISIONS_PENDING) {
        free(ds->pending[0]);
        memmove(ds->pending, ds->pending + 1, (size_t)(ds->npending - 1) * sizeof(ds->pending[0]));
        ds->npending--;
    }
    ds->pending[ds->npending++] = line;
    return 1;
}

int corral_decisions_flush(struct corral_decisions *ds, struct corrald_link *l, const char *prefix,
                           const char *host, struct corral_err *err)
{
    l->lost = 0;
    if (ds->npending == 0)
        return 0;
    char *key = corral_xasprintf("%s:decisions:%s", prefix, host);
    redisContext *c = corrald_link_key(l, key, err); /* the key's node on a Cluster */
    if (c == NULL) {
        free(key);
        return -1;
    }
    /* LPUSH key oldest ... newest: the newest ends up first. */
    const char *argv[2 + CORRAL_DECISIONS_PENDING];
    size_t lens[2 + CORRAL_DECISIONS_PENDING];
    int argc = 0;
    argv[argc] = "LPUSH";
    lens[argc++] = 5;
    argv[argc] = key;
    lens[argc++] = strlen(key);
    for (int i = 0; i < ds->npending; i++) {
        argv[argc] = ds->pending[i];
        lens[argc++] = strlen(ds->pending[i]);
    }
    redisAppendCommandArgv(c, argc, argv, lens);
    redisAppendCommand(c, "LTRIM %s 0 %d", key, CORRAL_DECISIONS_KEEP - 1);
    redisAppendCommand(c, "PEXPIRE %s %lld", key, (long long)CORRAL_DECISIONS_TTL_MS);
    free(key);
    int rc = 0;
    for (int i = 0; i < 3; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            r = NULL;
        if (rc == 0 && corral_redis_check(c, r, "decisions", err) < 0)
            rc = -1;
        freeReplyObject(r);
        if (r == NULL)
            break;
    }
    /* Written, or refused by Redis (NOPERM, OOM): writing them again would
     * only repeat what LPUSH may have taken. A broken connection keeps
     * them for the next one. */
    int broken = c->err != 0;
    if (rc == 0 || !broken)
        corral_decisions_clear(ds);
    if (rc < 0)
        corrald_link_retry(l, c, err); /* a MOVED: the map for next time */
    return rc;
}

void corral_decisions_clear(struct corral_decisions *ds)
{
    for (int i = 0; i < ds->npending; i++)
        free(ds->pending[i]);
    ds->npending = 0;
}

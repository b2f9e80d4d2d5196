/* corral-web's shared snapshot: one refresher at a time, readers share the
 * last view by reference (see snapshot.h). The refresher alone touches the
 * Redis connection and the history, so they need no lock of their own. */
#include "snapshot.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "corral/log.h"
#include "corral/queue.h"
#include "corral/redis.h"
#include "corral/util.h"
#include "../ctl/ctl.h" /* ctl_snapshot and ctl_metrics_write, shared with corralctl */
#include "history.h"

struct web_snap {
    const struct corral_config *cfg;
    pthread_mutex_t lock;
    pthread_cond_t done;
    struct web_view *view; /* NULL until the first refresh */
    int refreshing;
    int stale; /* an action changed something: the next get refreshes */
    uint64_t refreshes;
    /* The refresher's own: */
    struct ctl ctl;
    struct web_history *hist;
    struct corral_log_repeat redis_log;
};

struct web_snap *web_snap_new(const struct corral_config *cfg)
{
    struct web_snap *s = corral_xcalloc(1, sizeof(*s));
    s->cfg = cfg;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->done, NULL);
    s->ctl.cfg = (struct corral_config *)cfg; /* ctl only reads it */
    s->hist = web_history_new();
    corral_log_repeat_init(&s->redis_log, 60000);
    return s;
}

static void view_free(struct web_view *v)
{
    if (v == NULL)
        return;
    free(v->status);
    free(v->history);
    free(v->metrics);
    free(v);
}

void web_snap_free(struct web_snap *s)
{
    if (s == NULL)
        return;
    view_free(s->view);
    if (s->ctl.redis != NULL)
        redisFree(s->ctl.redis);
    web_history_free(s->hist);
    pthread_cond_destroy(&s->done);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int connect_redis(struct web_snap *s, struct corral_err *err)
{
    if (s->ctl.redis != NULL && s->ctl.redis->err == 0)
        return 0;
    if (s->ctl.redis != NULL)
        redisFree(s->ctl.redis);
    s->ctl.redis = corral_redis_connect(&s->cfg->redis, WEB_REDIS_TIMEOUT_MS, err);
    if (s->ctl.redis == NULL)
        return -1;
    if (corral_functions_ensure(s->ctl.redis, NULL, err) < 0) {
        redisFree(s->ctl.redis);
        s->ctl.redis = NULL;
        return -1;
    }
    return 0;
}

/* Reads the planned buckets and the hosts' decision lists in one pipeline
 * and feeds them to the history; -1 with err when the connection fails. */
static int read_history(struct web_snap *s, json_t *status, struct corral_err *err)
{
    redisContext *c = s->ctl.redis;
    const char *prefix = s->cfg->redis.prefix;
    struct web_bucket_req *plan;
    size_t np = web_history_plan(s->hist, status, &plan);
    json_t *hosts = json_object_get(status, "hosts");
    size_t nh = json_array_size(hosts);
    for (size_t i = 0; i < np; i++) {
        char *key = corral_queue_key(prefix, plan[i].queue);
        redisAppendCommand(c, "HGETALL %s:st:%lld", key, (long long)plan[i].minute);
        free(key);
    }
    for (size_t i = 0; i < nh; i++)
        redisAppendCommand(c, "LRANGE %s:decisions:%s 0 %d", prefix,
                           json_string_value(json_object_get(json_array_get(hosts, i), "host")),
                           WEB_DECISIONS - 1);
    int rc = 0;
    for (size_t i = 0; i < np + nh; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) {
            corral_redis_check(c, NULL, "history", err);
            rc = -1;
            break;
        }
        if (r->type == REDIS_REPLY_ARRAY) {
            const char **fv = corral_xcalloc(r->elements ? r->elements : 1, sizeof(char *));
            for (size_t k = 0; k < r->elements; k++)
                fv[k] = r->element[k]->type == REDIS_REPLY_STRING ? r->element[k]->str : NULL;
            if (i < np)
                web_history_bucket(s->hist, &plan[i], fv, r->elements);
            else
                web_history_decisions(
                    s->hist,
                    json_string_value(json_object_get(json_array_get(hosts, i - np), "host")),
                    fv, r->elements);
            free(fv);
        }
        freeReplyObject(r);
    }
    free(plan);
    return rc;
}

static char *metrics_text(struct web_snap *s, json_t *status, const char *error, uint64_t n,
                          size_t *len)
{
    char *buf = NULL;
    FILE *out = open_memstream(&buf, len);
    if (out == NULL)
        abort();
    fputs("# HELP corral_up 1: corral-web's last read of the fleet's state from Redis worked; 0: "
          "it failed (the other families are then left out).\n# TYPE corral_up gauge\n",
          out);
    fprintf(out, "corral_up %d\n", status != NULL);
    if (error != NULL)
        fputs("# corral-web: the last read of Redis failed (see its log)\n", out);
    if (status != NULL) {
        ctl_metrics_write(status, out);
        web_history_metrics(s->hist, out);
    }
    fprintf(out,
            "# HELP corral_web_refreshes_total Reads of the fleet's state from Redis by this "
            "corral-web.\n# TYPE corral_web_refreshes_total counter\ncorral_web_refreshes_total "
            "%llu\n",
            (unsigned long long)n);
    if (fclose(out) != 0)
        abort();
    return buf;
}

/* Builds a new view from Redis. prev (may be NULL) lends its history text
 * when Redis cannot be read; n is the refresh's number. */
static struct web_view *build(struct web_snap *s, const struct web_view *prev, uint64_t n)
{
    struct web_view *v = corral_xcalloc(1, sizeof(*v));
    v->wall_ms = corral_wall_ms();
    v->mono_ms = corral_now_ms();
    struct corral_err err;
    json_t *status = NULL;
    if (connect_redis(s, &err) == 0)
        status = ctl_snapshot(&s->ctl, &err);
    if (status != NULL && read_history(s, status, &err) < 0) {
        json_decref(status);
        status = NULL;
    }
    if (status == NULL) {
        /* A dropped connection is made again at the next refresh. */
        if (s->ctl.redis != NULL && s->ctl.redis->err != 0) {
            redisFree(s->ctl.redis);
            s->ctl.redis = NULL;
        }
        corral_logr(&s->redis_log, CORRAL_LOG_WARN, "redis unavailable", "error=\"%s\"", err.msg);
        snprintf(v->error, sizeof(v->error), "%s", err.msg);
        if (prev != NULL && prev->history != NULL) {
            v->history = corral_xstrndup(prev->history, prev->history_len);
            v->history_len = prev->history_len;
        } else {
            v->history = web_history_json(s->hist, v->wall_ms, &v->history_len);
        }
        v->metrics = metrics_text(s, NULL, v->error, n, &v->metrics_len);
        return v;
    }
    corral_log_repeat_end(&s->redis_log);
    v->ok = 1;
    web_history_sample(s->hist, status, v->wall_ms);
    v->status = json_dumps(status, JSON_COMPACT | JSON_PRESERVE_ORDER);
    v->status_len = strlen(v->status);
    v->history = web_history_json(s->hist, v->wall_ms, &v->history_len);
    v->metrics = metrics_text(s, status, NULL, n, &v->metrics_len);
    json_decref(status);
    return v;
}

static void put_locked(struct web_view *v)
{
    if (v != NULL && --v->refs == 0)
        view_free(v);
}

/* Refreshes when the view is max_age_ms old and nobody else refreshes;
 * returns a reference to the view to serve. Called with the lock held,
 * returns with it held. */
static struct web_view *get_locked(struct web_snap *s, int64_t max_age_ms)
{
    for (;;) {
        struct web_view *v = s->view;
        int64_t age = v && !s->stale ? corral_now_ms() - v->mono_ms : INT64_MAX;
        if (v != NULL && age < max_age_ms) {
            v->refs++;
            return v;
        }
        if (s->refreshing) {
            /* Another request is reading Redis: a view young enough is
             * served at once, else wait for the new one. */
            if (v != NULL && age < WEB_SNAP_STALE_OK_MS) {
                v->refs++;
                return v;
            }
            while (s->refreshing)
                pthread_cond_wait(&s->done, &s->lock);
            if (s->view != NULL) {
                s->view->refs++;
                return s->view;
            }
            continue;
        }
        s->refreshing = 1;
        s->stale = 0;
        if (v != NULL)
            v->refs++; /* prev stays alive while unlocked */
        uint64_t n = s->refreshes + 1;
        pthread_mutex_unlock(&s->lock);
        struct web_view *nv = build(s, v, n);
        pthread_mutex_lock(&s->lock);
        put_locked(v);
        nv->refs = 1; /* the snapshot's own reference */
        put_locked(s->view);
        s->view = nv;
        s->refreshes++;
        s->refreshing = 0;
        pthread_cond_broadcast(&s->done);
        nv->refs++;
        return nv;
    }
}

struct web_view *web_snap_get(struct web_snap *s)
{
    pthread_mutex_lock(&s->lock);
    struct web_view *v = get_locked(s, WEB_SNAP_MAX_AGE_MS);
    pthread_mutex_unlock(&s->lock);
    return v;
}

void web_snap_put(struct web_snap *s, struct web_view *v)
{
    pthread_mutex_lock(&s->lock);
    put_locked(v);
    pthread_mutex_unlock(&s->lock);
}

void web_snap_invalidate(struct web_snap *s)
{
    pthread_mutex_lock(&s->lock);
    s->stale = 1;
    pthread_mutex_unlock(&s->lock);
}

void web_snap_idle(struct web_snap *s)
{
    pthread_mutex_lock(&s->lock);
    if (!s->refreshing)
        put_locked(get_locked(s, WEB_SNAP_IDLE_MS));
    pthread_mutex_unlock(&s->lock);
}

uint64_t web_snap_refreshes(struct web_snap *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t n = s->refreshes;
    pthread_mutex_unlock(&s->lock);
    return n;
}

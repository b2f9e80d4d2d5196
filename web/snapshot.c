/* corral-web's shared snapshot: readers share the last view by reference;
 * one refresher thread reads Redis, when a reader finds the view a second
 * old (see snapshot.h). Readers do not wait for it while the view is
 * younger than WEB_SNAP_STALE_OK_MS, so many pollers never queue behind
 * Redis; one that polls less often than that waits for a fresh view. The
 * refresher alone touches the Redis connection and the history. */
#include "snapshot.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <malloc.h>

#include "../ctl/counters.h" /* ctl_counters_*, shared with corralctl metrics */
#include "../ctl/ctl.h"      /* ctl_snapshot and ctl_metrics_write, shared with corralctl */
#include "corral/log.h"
#include "corral/queue.h"
#include "corral/redis.h"
#include "corral/util.h"
#include "history.h"

struct web_snap {
    const struct corral_config *cfg;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the refresher waits here for a kick */
    pthread_cond_t done; /* readers wait here for a refresh to end */
    pthread_t thread;
    struct web_view *view; /* NULL until the first refresh */
    int kick;              /* a refresh is wanted */
    int refreshing;
    int stale; /* an action changed something: the next get waits for a new view */
    int quit;
    uint64_t started;  /* refreshes begun */
    uint64_t finished; /* refreshes ended */
    int64_t last_start_ms;
    int64_t wanted_ms[WEB_NPARTS]; /* when each part was last asked for */
    int trim;                      /* a malloc_trim is wanted (web_snap_idle) */
    uint64_t trimmed;              /* refreshes finished at the last malloc_trim */
    /* The refresher's own: */
    struct ctl ctl;
    struct web_history *hist;
    struct corral_log_repeat redis_log;
};

static void *refresher(void *arg);

/* A part is built while someone asked for it within this long: the
 * dashboard polls history every 10 s, Prometheus scrapes every 15 s to a
 * few minutes. Text nobody reads is not kept (docs/web.md). */
static const int64_t part_keep_ms[WEB_NPARTS] = {INT64_MAX, 60000, 600000};

struct web_snap *web_snap_new(const struct corral_config *cfg)
{
    struct web_snap *s = corral_xcalloc(1, sizeof(*s));
    s->cfg = cfg;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&s->done, NULL);
    s->ctl.cfg = (struct corral_config *)cfg; /* ctl only reads it */
    s->hist = web_history_new();
    corral_log_repeat_init(&s->redis_log, 60000);
    if (pthread_create(&s->thread, NULL, refresher, s) != 0) {
        fprintf(stderr, "corral-web: cannot start the snapshot thread\n");
        abort();
    }
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
    pthread_mutex_lock(&s->lock);
    s->quit = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    view_free(s->view);
    ctl_close(&s->ctl); /* the connection, and on a Cluster the router */
    web_history_free(s->hist);
    pthread_cond_destroy(&s->done);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int connect_redis(struct web_snap *s, struct corral_err *err)
{
    if (s->cfg->redis.cluster.n > 0) /* the router and every primary's library (ctl/conn.c) */
        return s->ctl.cluster != NULL && !ctl_lost(&s->ctl) ? 0 : ctl_reconnect(&s->ctl, err);
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

/* Reads the planned buckets and the hosts' decision lists and feeds them
 * to the history: one pipeline, or on a Cluster each key's command on its
 * node (ctl_keyed_replies); -1 with err when the connection fails. */
static int read_history(struct web_snap *s, json_t *status, struct corral_err *err)
{
    const char *prefix = s->cfg->redis.prefix;
    struct web_bucket_req *plan;
    size_t np = web_history_plan(s->hist, status, &plan);
    json_t *hosts = json_object_get(status, "hosts");
    size_t nh = json_array_size(hosts);
    struct ctl_keyed *cmds = corral_xcalloc(np + nh + 1, sizeof(*cmds));
    for (size_t i = 0; i < np; i++) {
        char *key = corral_queue_key(prefix, plan[i].queue);
        cmds[i].key = corral_xasprintf("%s:st:%lld", key, (long long)plan[i].minute);
        free(key);
        cmds[i].argv[0] = "HGETALL";
        cmds[i].argc = 1;
    }
    char last[16];
    snprintf(last, sizeof(last), "%d", WEB_DECISIONS - 1);
    for (size_t i = 0; i < nh; i++) {
        cmds[np + i].key =
            corral_xasprintf("%s:decisions:%s", prefix,
                             json_string_value(json_object_get(json_array_get(hosts, i), "host")));
        cmds[np + i].argv[0] = "LRANGE";
        cmds[np + i].argv[1] = "0";
        cmds[np + i].argv[2] = last;
        cmds[np + i].argc = 3;
    }
    redisReply **rs = corral_xcalloc(np + nh + 1, sizeof(redisReply *));
    int rc = ctl_keyed_replies(&s->ctl, cmds, np + nh, rs, "history", err);
    for (size_t i = 0; rc == 0 && i < np + nh; i++) {
        redisReply *r = rs[i];
        if (r->type == REDIS_REPLY_ARRAY) {
            const char **fv = corral_xcalloc(r->elements ? r->elements : 1, sizeof(char *));
            for (size_t k = 0; k < r->elements; k++)
                fv[k] = r->element[k]->type == REDIS_REPLY_STRING ? r->element[k]->str : NULL;
            if (i < np)
                web_history_bucket(s->hist, &plan[i], fv, r->elements);
            else
                web_history_decisions(
                    s->hist,
                    json_string_value(json_object_get(json_array_get(hosts, i - np), "host")), fv,
                    r->elements);
            free(fv);
        }
    }
    for (size_t i = 0; i < np + nh; i++) {
        freeReplyObject(rs[i]);
        free(cmds[i].key);
    }
    free(rs);
    free(cmds);
    free(plan);
    return rc;
}

static char *metrics_text(json_t *status, json_t *counters, const char *error, uint64_t n,
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
        ctl_counters_write(json_object_get(status, "queues"), counters, out);
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

/* Builds a new view from Redis, with the parts asked for lately (parts[]
 * of enum web_part). prev (may be NULL) lends its history text when Redis
 * cannot be read; n is the refresh's number. */
static struct web_view *build(struct web_snap *s, const struct web_view *prev, uint64_t n,
                              const int *parts)
{
    struct web_view *v = corral_xcalloc(1, sizeof(*v));
    v->owner = s;
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
    /* The counters the function library keeps, only while /metrics is
     * asked for: one more round trip. */
    json_t *counters = NULL;
    if (status != NULL && parts[WEB_PART_METRICS] &&
        (counters = ctl_counters_read(&s->ctl, json_object_get(status, "queues"), &err)) == NULL) {
        json_decref(status);
        status = NULL;
    }
    if (status == NULL) {
        /* A dropped connection is made again at the next refresh. */
        if (s->ctl.redis != NULL && s->ctl.redis->err != 0)
            ctl_drop(&s->ctl);
        corral_logr(&s->redis_log, CORRAL_LOG_WARN, "redis unavailable", "error=\"%s\"", err.msg);
        snprintf(v->error, sizeof(v->error), "%s", err.msg);
        if (parts[WEB_PART_HISTORY]) {
            if (prev != NULL && prev->history != NULL) {
                v->history = corral_xstrndup(prev->history, prev->history_len);
                v->history_len = prev->history_len;
            } else {
                v->history = web_history_json(s->hist, v->wall_ms, &v->history_len);
            }
        }
        if (parts[WEB_PART_METRICS])
            v->metrics = metrics_text(NULL, NULL, v->error, n, &v->metrics_len);
        return v;
    }
    corral_log_repeat_end(&s->redis_log);
    v->ok = 1;
    web_history_sample(s->hist, status, v->wall_ms);
    v->status = json_dumps(status, JSON_COMPACT | JSON_PRESERVE_ORDER);
    v->status_len = strlen(v->status);
    if (parts[WEB_PART_HISTORY])
        v->history = web_history_json(s->hist, v->wall_ms, &v->history_len);
    if (parts[WEB_PART_METRICS])
        v->metrics = metrics_text(status, counters, NULL, n, &v->metrics_len);
    json_decref(counters);
    json_decref(status);
    return v;
}

static void put_locked(struct web_view *v)
{
    if (v != NULL && --v->refs == 0)
        view_free(v);
}

/* Sleeps (lock held) until ms on the monotonic clock, or a signal. */
static void wait_until_ms(struct web_snap *s, int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    pthread_cond_timedwait(&s->wake, &s->lock, &ts);
}

/* The refresher: one read of Redis per kick, never two within
 * WEB_SNAP_MAX_AGE_MS of each other unless an action made the view stale. */
static void *refresher(void *arg)
{
    struct web_snap *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->kick && !s->quit && !s->trim)
            pthread_cond_wait(&s->wake, &s->lock);
        if (s->quit)
            break;
        if (s->trim && !s->kick) {
            /* A refresh's garbage (replies, JSON, old views) goes back to
             * the system rather than staying in this thread's arena: that
             * is most of the idle RSS (docs/web.md, "Tests and figures"). Only while
             * nobody asks: malloc_trim holds the allocator's locks for a
             * few ms, which a reader would wait out (the p99 of
             * bench/bench_web.py). */
            s->trim = 0;
            s->trimmed = s->finished;
            pthread_mutex_unlock(&s->lock);
            malloc_trim(0);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        int64_t due = s->last_start_ms + WEB_SNAP_MAX_AGE_MS;
        if (s->started > 0 && !s->stale && corral_now_ms() < due) {
            wait_until_ms(s, due);
            continue;
        }
        s->kick = 0;
        s->trim = 0; /* asked for while quiet; no longer */
        s->stale = 0;
        s->refreshing = 1;
        s->started++;
        s->last_start_ms = corral_now_ms();
        struct web_view *prev = s->view;
        if (prev != NULL)
            prev->refs++; /* stays alive while unlocked */
        uint64_t n = s->started;
        int parts[WEB_NPARTS];
        for (int i = 0; i < WEB_NPARTS; i++)
            parts[i] = s->wanted_ms[i] != 0 && s->last_start_ms - s->wanted_ms[i] < part_keep_ms[i];
        pthread_mutex_unlock(&s->lock);
        struct web_view *nv = build(s, prev, n, parts);
        pthread_mutex_lock(&s->lock);
        put_locked(prev);
        nv->refs = 1; /* the snapshot's own reference */
        put_locked(s->view);
        s->view = nv;
        s->refreshing = 0;
        s->finished++;
        pthread_cond_broadcast(&s->done);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void kick_locked(struct web_snap *s)
{
    s->kick = 1;
    pthread_cond_signal(&s->wake);
}

static int has_part(const struct web_view *v, enum web_part part)
{
    return part == WEB_PART_HISTORY   ? v->history != NULL
           : part == WEB_PART_METRICS ? v->metrics != NULL
                                      : 1;
}

struct web_view *web_snap_get(struct web_snap *s, enum web_part part)
{
    pthread_mutex_lock(&s->lock);
    int64_t now = corral_now_ms();
    s->wanted_ms[part] = now;
    struct web_view *v = s->view;
    int64_t age = v != NULL ? now - v->mono_ms : INT64_MAX;
    if (v != NULL && !s->stale && age < WEB_SNAP_STALE_OK_MS && has_part(v, part)) {
        /* Young enough to serve now; past a second, ask for a new one. */
        if (age >= WEB_SNAP_MAX_AGE_MS && !s->refreshing)
            kick_locked(s);
        v->refs++;
        pthread_mutex_unlock(&s->lock);
        return v;
    }
    /* Too old, stale, without the part or none yet: wait for a refresh
     * begun after the ask -- the one under way, when it began after the
     * view got old and no action or new part came since. */
    int current_will_do = s->refreshing && !s->stale && (v == NULL || has_part(v, part));
    uint64_t want = current_will_do ? s->started : s->started + 1;
    if (want > s->started)
        kick_locked(s);
    while (s->finished < want || s->view == NULL) /* a refresh always leaves a view */
        pthread_cond_wait(&s->done, &s->lock);
    v = s->view;
    v->refs++;
    pthread_mutex_unlock(&s->lock);
    return v;
}

void web_snap_put(struct web_snap *s, struct web_view *v)
{
    pthread_mutex_lock(&s->lock);
    put_locked(v);
    pthread_mutex_unlock(&s->lock);
}

void web_view_release(void *v)
{
    struct web_view *view = v;
    web_snap_put(view->owner, view);
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
    int64_t now = corral_now_ms();
    int64_t age = s->view != NULL ? now - s->view->mono_ms : INT64_MAX;
    if (age >= WEB_SNAP_IDLE_MS && !s->refreshing)
        kick_locked(s);
    int64_t asked = 0;
    for (int i = 0; i < WEB_NPARTS; i++)
        asked = s->wanted_ms[i] > asked ? s->wanted_ms[i] : asked;
    if (now - asked >= WEB_SNAP_QUIET_MS && s->finished != s->trimmed && !s->refreshing) {
        s->trim = 1;
        pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->lock);
}

uint64_t web_snap_refreshes(struct web_snap *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t n = s->finished;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* corrald: keeps between [pool] min and max corral-worker processes on this
 * host, sized by the scaler from queue depth, arrival rate and processing
 * time; reclaims the jobs of workers that die or hang; keeps house in Redis
 * (promotion of due jobs, expired leases, this host's heartbeat); drains on
 * SIGTERM, reloads on SIGHUP and talks sd_notify under systemd. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>
#include <jansson.h>

#include "corral/backoff.h"
#include "corral/bootstrap.h"
#include "corral/config.h"
#include "corral/health.h"
#include "corral/log.h"
#include "corral/queue.h"
#include "corral/redis.h"
#include "corral/sentinel.h"
#include "corral/tls.h"
#include "corral/util.h"
#include "corral/wmsg.h"
#include "decisions.h"
#include "heartbeat.h"
#include "link.h"
#include "hostmetrics.h"
#include "notify.h"
#include "procs.h"
#include "scaler.h"
#include "shards.h"
#include "tlsproxy.h"

#define CRASH_WINDOW_MS   10000 /* a worker dying this soon after start crashed at start */
#define CRASH_BACKOFF_MIN 1000
#define CRASH_BACKOFF_MAX 60000
/* Reconnecting to Redis: a jittered wait doubling from 250 ms to at most
 * 1.5 s, so corrald is back within 2 s of Redis (docs/operations.md),
 * while a broken setup (a wrong password) costs Redis under one
 * connection a second per host, and the log one line a minute. */
#define REDIS_RETRY_MIN_MS  250
#define REDIS_RETRY_MAX_MS  1500
#define REPEAT_WINDOW_MS    60000
#define REDIS_TIMEOUT_MS    5000 /* connect and command timeout */
#define REDIS_TIMEOUT_HA_MS 1000 /* the same with Sentinel */
#define MAX_STEP_OUT        8
#define MAX_QUEUES          64
_Static_assert(MAX_QUEUES == CORRAL_SHARDS_MAX_QUEUES, "a Cluster's split counts the queues read");

struct corrald {
    struct ev_loop *loop;
    const char *config_path;
    struct corral_config *cfg;
    char worker_exe[PATH_MAX];
    char host[64];            /* worker ids start with it: "<host>:<n>" */
    char hb_name[160];        /* the heartbeat's name: host, or host@instance */
    struct corrald_link link; /* one Redis, or a Cluster's primaries (link.h) */
    struct corral_backoff redis_backoff;
    struct corral_log_repeat redis_log; /* "redis unavailable", once with a count */
    struct corral_log_repeat reclaim_log, stats_log;
    char redis_state[256];
    struct corral_procs *procs;
    struct corral_scaler_state scaler;
    struct corral_scale_decision last;
    struct corral_decisions decisions; /* kept for the dashboard (decisions.h) */
    struct corral_log_repeat decisions_log;
    int desired;
    int64_t qload[MAX_QUEUES];           /* each queue's depth + in flight at the last decision */
    struct corral_backoff crash_backoff; /* workers crashing at start */
    int64_t next_spawn_ms;
    struct corral_cpu_sample cpu;
    int stopping;
    int notified_ready;
    int64_t started_wall_ms;
    int64_t next_sweep_ms;
    /* workers that died while Redis was away: their leases, reclaimed later */
    struct corral_strlist orphans;
    /* the breaker states last seen, to log each change once */
    struct seen_breaker {
        char service[65];
        char state[16];
    } breakers[MAX_QUEUES];
    size_t nbreakers;
    ev_timer tick, watchdog, drain_timer, reconnect;
    ev_signal sigterm, sigint, sighup;
    /* With Sentinel: a sentinel connection subscribed to +switch-master
     * (docs/ha.md, "When to look again"), read on the loop. */
    redisContext *watch;
    ev_io watch_io;
    int64_t watch_next_ms; /* when to subscribe again after a failure */
    struct corral_log_repeat watch_log;
    /* Redis's warnings last logged (eviction policy, memory, persistence),
     * joined: a change is logged, a repeat is not */
    char health[1024];
    /* rediss: the host's supervised stunnel (docs/ha.md, "How it runs") */
    struct corral_tlssup *tls;
};

static int usage(FILE *out)
{
    fprintf(out,
            "usage: corrald [-c FILE] [--check] [--version]\n"
            "  -c FILE    config file (default $CORRAL_CONFIG, else %s)\n"
            "  --check    validate the config, print the effective settings, exit 0;\n"
            "             or print every error and exit 1\n",
            CORRAL_DEFAULT_CONFIG);
    return out == stdout ? 0 : 2;
}

static struct corral_config *load(const char *path, int quiet_log)
{
    struct corral_config_errors errs = {0};
    struct corral_config *cfg = corral_config_load(path, &errs);
    for (size_t i = 0; i < errs.n; i++) {
        if (quiet_log)
            fprintf(stderr, "%s\n", errs.lines[i]);
        else
            corral_log_err("config error", "detail=\"%s\"", errs.lines[i]);
    }
    corral_config_errors_free(&errs);
    return cfg;
}

static int live_workers(struct corrald *d, int *busy, int *slots, int *ready)
{
    int n = 0, b = 0, s = 0, r = 0;
    for (struct corral_wproc *w = corral_procs_first(d->procs); w; w = w->next) {
        if (w->state == CORRAL_W_DRAINING)
            continue;
        n++;
        b += w->busy;
        s += w->slots;
        r += w->state != CORRAL_W_STARTING;
    }
    if (busy)
        *busy = b;
    if (slots)
        *slots = s;
    if (ready)
        *ready = r;
    return n;
}

/* --- Redis ------------------------------------------------------------ */

/* Gives up the connection and schedules the next try (the reconnect
 * timer). The warning is written once per kind of error, then counted. */
static void drop_redis(struct corrald *d, const char *why)
{
    int64_t wait = corral_backoff_next(&d->redis_backoff);
    if (strcmp(d->redis_state, why) != 0)
        corral_log_repeat_end(&d->redis_log); /* a new error is written at once */
    snprintf(d->redis_state, sizeof(d->redis_state), "%s", why);
    corral_logr(&d->redis_log, CORRAL_LOG_WARN, "redis unavailable, retrying",
                "error=\"%s\" retry_ms=%lld", why, (long long)wait);
    corrald_link_close(&d->link);
    ev_timer_stop(d->loop, &d->reconnect);
    ev_timer_set(&d->reconnect, (double)wait / 1000.0, 0.0);
    ev_timer_start(d->loop, &d->reconnect);
}

/* Reclaims one dead worker's leases on every served queue. */
static int reclaim_worker(struct corrald *d, const char *id)
{
    const struct corral_strlist *qs = &d->cfg->pool.queues;
    for (size_t i = 0; i < qs->n; i++) {
        struct corral_err err;
        long long n =
            corrald_link_reclaim_worker(&d->link, d->cfg->redis.prefix, qs->items[i], id, &err);
        if (n < 0) {
            corral_logr(&d->reclaim_log, CORRAL_LOG_WARN, "cannot reclaim a dead worker's jobs yet",
                        "worker=%s error=\"%s\"", id, err.msg);
            return -1;
        }
        if (n > 0)
            corral_log_notice("requeued the jobs of a dead worker", "worker=%s queue=%s jobs=%lld",
                              id, qs->items[i], n);
    }
    corral_log_repeat_end(&d->reclaim_log);
    return 0;
}

/* Whether the worker with this id still runs: ours, or a previous
 * corrald's that is still finishing its jobs (it renews its leases). */
static int worker_alive(struct corrald *d, const char *id)
{
    for (struct corral_wproc *w = corral_procs_first(d->procs); w; w = w->next)
        if (strcmp(w->id, id) == 0)
            return 1;
    const char *colon = strrchr(id, ':');
    if (colon == NULL)
        return 0;
    char path[64], comm[32] = "";
    snprintf(path, sizeof(path), "/proc/%s/comm", colon + 1);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return 0;
    if (fgets(comm, sizeof(comm), f) == NULL)
        comm[0] = '\0';
    fclose(f);
    return strncmp(comm, "corral-worker", 13) == 0;
}

/* Leases held by workers of this host that are not running any more (a
 * previous corrald's, or ones that died while Redis was away) are taken
 * back now rather than when they expire. */
static void reclaim_dead_local(struct corrald *d)
{
    size_t hl = strlen(d->host);
    for (size_t qi = 0; qi < d->cfg->pool.queues.n; qi++) {
        struct corral_strlist holders;
        struct corral_err err;
        if (corrald_link_lease_holders(&d->link, d->cfg->redis.prefix,
                                       d->cfg->pool.queues.items[qi], &holders, &err) < 0)
            return;
        for (size_t i = 0; i < holders.n; i++) {
            const char *id = holders.items[i];
            if (strncmp(id, d->host, hl) != 0 || id[hl] != ':')
                continue;
            if (!worker_alive(d, id))
                reclaim_worker(d, id);
        }
        corral_strlist_free(&holders);
    }
}

/* A corral_reach ensure: the route to an address discovery learnt (a
 * master the sentinels name); stunnel binds it on its reload, so the first
 * connection may fail and the back-off's next try gets through. */
static int tls_ensure(void *data, const char *host, int port, struct corral_err *err)
{
    struct corrald *d = data;
    return corral_tlssup_route(d->tls, host, port, err);
}

static struct corral_reach reach_of(struct corrald *d)
{
    struct corral_reach reach = {0};
    if (d->tls != NULL) {
        reach.tls_dir = corral_tlssup_dir(d->tls);
        reach.ensure = tls_ensure;
        reach.data = d;
        reach.route_replicas = 1; /* its workers' route to the next master */
    }
    return reach;
}

/* Logs what makes this Redis unfit for corral's jobs (docs/operations.md):
 * each warning when the set changes, and when they are gone. */
static void check_redis_health(struct corrald *d)
{
    json_t *h = corrald_link_health(&d->link, d->cfg);
    if (json_object_get(h, "error") != NULL) { /* not readable (an ACL without +info) */
        json_decref(h);
        return;
    }
    char now[sizeof(d->health)] = "";
    size_t used = 0;
    json_t *ws = json_object_get(h, "warnings");
    for (size_t i = 0; i < json_array_size(ws); i++)
        used += (size_t)snprintf(now + used, used < sizeof(now) ? sizeof(now) - used : 0, "%s%s",
                                 i ? "; " : "", json_string_value(json_array_get(ws, i)));
    if (strcmp(now, d->health) != 0) {
        for (size_t i = 0; i < json_array_size(ws); i++)
            corral_log_warn("redis is not fit for corral's jobs", "warning=\"%s\"",
                            json_string_value(json_array_get(ws, i)));
        if (now[0] == '\0')
            corral_log_notice("redis warnings cleared", "was=\"%s\"", d->health);
        snprintf(d->health, sizeof(d->health), "%s", now);
    }
    json_decref(h);
}

static int connect_redis(struct corrald *d)
{
    struct corral_err err;
    struct corral_reach reach = reach_of(d);
    redisContext *c = NULL;
    /* With Sentinel, a master frozen mid-call holds corrald no longer than
     * REDIS_TIMEOUT_HA_MS before it reads the sentinels' +switch-master
     * (docs/ha.md): corrald's calls are short functions. */
    if (d->cfg->redis.cluster.n > 0) /* the map, and the library on every primary */
        d->link.cc = corral_cluster_open(&d->cfg->redis, REDIS_TIMEOUT_MS, &err);
    else
        c = corral_redis_connect_via(
            &d->cfg->redis, &reach,
            d->cfg->redis.sentinels.n > 0 ? REDIS_TIMEOUT_HA_MS : REDIS_TIMEOUT_MS, &err);
    if (c == NULL && d->tls != NULL) {
        /* A refused handshake reaches us as a closed connection: the
         * proxy's log says why (docs/ha.md, "Saying why a handshake
         * failed"). */
        struct corral_tlssup_health h;
        corral_tlssup_health(d->tls, &h);
        if (h.fault != CORRAL_TLS_FAULT_NONE && h.error[0] != '\0')
            snprintf(err.msg, sizeof(err.msg), "%s", h.error);
    }
    if (c == NULL && d->link.cc == NULL) {
        drop_redis(d, err.msg);
        return -1;
    }
    d->link.c = c;
    /* Every [queue] and [service] of the file, fleet-wide (the last corrald
     * or worker to declare wins; keep them equal on all hosts). */
    if (corrald_link_bootstrap(&d->link, d->cfg, &err) < 0) {
        drop_redis(d, err.msg);
        return -1;
    }
    corral_backoff_reset(&d->redis_backoff);
    corral_log_repeat_end(&d->redis_log);
    ev_timer_stop(d->loop, &d->reconnect);
    snprintf(d->redis_state, sizeof(d->redis_state), "ok");
    if (d->link.cc != NULL)
        corral_log_info("connected to the redis cluster", "primaries=%zu queues=%zu",
                        corral_cluster_current(d->link.cc)->n_nodes, d->cfg->pool.queues.n);
    else
        corral_log_info("connected to redis", "url=%s queues=%zu", d->cfg->redis.url,
                        d->cfg->pool.queues.n);
    reclaim_dead_local(d);
    check_redis_health(d);
    return 0;
}

/* --- +switch-master -------------------------------------------------------- */

static void watch_close(struct corrald *d)
{
    if (d->watch == NULL)
        return;
    ev_io_stop(d->loop, &d->watch_io);
    redisFree(d->watch);
    d->watch = NULL;
}

/* The sentinels moved the master: drop the connection, even one that still
 * answers (a frozen master that resumed), and connect again at once. */
static void on_switch_event(struct ev_loop *loop, ev_io *io, int revents)
{
    struct corrald *d = io->data;
    if (redisBufferRead(d->watch) != REDIS_OK) {
        corral_logr(&d->watch_log, CORRAL_LOG_WARN, "lost the sentinel subscription",
                    "error=\"%s\"", d->watch->errstr);
        watch_close(d);
        d->watch_next_ms = corral_now_ms() + REDIS_RETRY_MAX_MS;
        return;
    }
    void *reply = NULL;
    while (d->watch != NULL && redisGetReplyFromReader(d->watch, &reply) == REDIS_OK &&
           reply != NULL) {
        struct corral_switch sw;
        struct corral_err err;
        int rc = corral_reply_sentinel_event(reply, d->cfg->redis.sentinel_master, &sw, &err);
        freeReplyObject(reply);
        reply = NULL;
        if (rc <= 0)
            continue;
        corral_log_notice("the sentinels switched the master", "master=%s from=%s:%d to=%s:%d",
                          sw.name, sw.from.host, sw.from.port, sw.to.host, sw.to.port);
        corral_switch_free(&sw);
        if (corrald_link_up(&d->link)) {
            corrald_link_close(&d->link);
            snprintf(d->redis_state, sizeof(d->redis_state), "the sentinels switched the master");
        }
        corral_backoff_reset(&d->redis_backoff);
        ev_timer_stop(loop, &d->reconnect);
        ev_timer_set(&d->reconnect, 0.0, 0.0);
        ev_timer_start(loop, &d->reconnect);
    }
}

/* Subscribes when Sentinel is configured and no subscription is open. */
static void watch_ensure(struct corrald *d)
{
    if (d->cfg->redis.sentinels.n == 0 || d->watch != NULL || corral_now_ms() < d->watch_next_ms)
        return;
    struct corral_reach reach = reach_of(d);
    struct corral_err err;
    d->watch = corral_sentinel_subscribe(&d->cfg->redis, &reach, 1000, &err);
    if (d->watch == NULL) {
        corral_logr(&d->watch_log, CORRAL_LOG_WARN, "cannot subscribe to the sentinels' events",
                    "error=\"%s\"", err.msg);
        d->watch_next_ms = corral_now_ms() + 5000;
        return;
    }
    corral_log_repeat_end(&d->watch_log);
    ev_io_init(&d->watch_io, on_switch_event, d->watch->fd, EV_READ);
    d->watch_io.data = d;
    ev_io_start(d->loop, &d->watch_io);
}

/* --- workers ------------------------------------------------------------ */

/* Live workers serving each queue (on a Cluster, where each serves one). */
static void count_per_queue(struct corrald *d, int *n)
{
    const struct corral_strlist *qs = &d->cfg->pool.queues;
    memset(n, 0, sizeof(int) * qs->n);
    for (struct corral_wproc *w = corral_procs_first(d->procs); w; w = w->next)
        for (size_t i = 0; i < qs->n && w->state != CORRAL_W_DRAINING; i++)
            n[i] += strcmp(w->queue, qs->items[i]) == 0;
}

static void spawn(struct corrald *d)
{
    char *argv[] = {d->worker_exe, "-c", (char *)d->config_path, NULL, NULL, NULL};
    const char *queue = NULL;
    if (d->cfg->redis.cluster.n > 0) { /* one queue a worker (shards.h) */
        int n[MAX_QUEUES];
        count_per_queue(d, n);
        queue = d->cfg->pool.queues.items[corral_shards_pick(d->cfg->pool.queues.n, n, d->qload)];
        argv[3] = "--queue";
        argv[4] = (char *)queue;
    }
    struct corral_err err;
    struct corral_wproc *w = corral_procs_spawn(d->procs, argv, &err);
    if (w == NULL)
        corral_log_err("cannot start a worker", "error=\"%s\"", err.msg);
    else
        corral_log_debug("worker started", "worker=%s queue=%s", w->id, queue ? queue : "");
    if (w != NULL && queue != NULL)
        snprintf(w->queue, sizeof(w->queue), "%s", queue);
}

/* Brings the live worker count toward d->desired: starts the missing ones
 * (unless crash back-off says wait), or stops one idle worker. */
static void reconcile(struct corrald *d)
{
    if (d->stopping)
        return;
    int live = live_workers(d, NULL, NULL, NULL);
    if (live < d->desired) {
        if (corral_now_ms() < d->next_spawn_ms)
            return;
        for (int i = live; i < d->desired; i++)
            spawn(d);
    } else if (live > d->desired) {
        /* The scaler picks which one (an idle one: busy workers are never
         * stopped to scale in; none idle: wait for one). */
        size_t n = (size_t)corral_procs_count(d->procs), i = 0;
        struct corral_scale_worker *tab = corral_xcalloc(n ? n : 1, sizeof(*tab));
        struct corral_wproc **procs = corral_xcalloc(n ? n : 1, sizeof(struct corral_wproc *));
        int per_queue[MAX_QUEUES];
        count_per_queue(d, per_queue);
        for (struct corral_wproc *w = corral_procs_first(d->procs); w && i < n; w = w->next, i++) {
            procs[i] = w;
            tab[i].idle = w->state == CORRAL_W_IDLE && w->busy == 0;
            tab[i].started_ms = w->started_ms;
            /* On a Cluster, never a queue's last worker. */
            for (size_t k = 0; w->queue[0] && k < d->cfg->pool.queues.n; k++)
                if (strcmp(w->queue, d->cfg->pool.queues.items[k]) == 0)
                    tab[i].idle &= corral_shards_may_stop(per_queue[k]);
        }
        int pick = corral_scale_pick_idle(tab, i);
        if (pick >= 0) {
            corral_log_info("stopping an idle worker", "worker=%s", procs[pick]->id);
            corral_procs_kill(procs[pick], SIGTERM);
        }
        free(tab);
        free(procs);
    }
}

static void on_worker_line(struct corral_procs *t, struct corral_wproc *w, const char *line)
{
    struct corral_wmsg m;
    struct corral_err err;
    if (corral_wmsg_parse(line, &m, &err) < 0) {
        corral_log_warn("bad message from worker", "worker=%s error=\"%s\"", w->id, err.msg);
        return;
    }
    int draining = w->state == CORRAL_W_DRAINING;
    switch (m.type) {
    case CORRAL_WMSG_READY:
        w->slots = m.slots;
        break;
    case CORRAL_WMSG_BUSY:
    case CORRAL_WMSG_HEARTBEAT:
        w->busy = m.busy;
        w->slots = m.slots;
        if (m.type == CORRAL_WMSG_HEARTBEAT) {
            w->jobs_done = m.jobs;
            w->rss_bytes = m.rss_kb * 1024;
            w->unwritten = m.unwritten;
        }
        break;
    case CORRAL_WMSG_DONE:
        w->jobs_done++;
        break;
    case CORRAL_WMSG_STOPPING:
        draining = 1;
        break;
    }
    if (w->busy > 0 || m.type == CORRAL_WMSG_DONE)
        w->worked = 1;
    if (draining)
        w->state = CORRAL_W_DRAINING;
    else if (m.type != CORRAL_WMSG_DONE || w->state == CORRAL_W_STARTING)
        w->state = w->busy > 0 ? CORRAL_W_BUSY : CORRAL_W_IDLE;
}

static void on_worker_exit(struct corral_procs *t, struct corral_wproc *w, int status)
{
    struct corrald *d = corral_procs_data(t);
    int64_t lived = corral_now_ms() - w->started_ms;
    int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    char how[64];
    if (WIFSIGNALED(status))
        snprintf(how, sizeof(how), "signal %d", WTERMSIG(status));
    else
        snprintf(how, sizeof(how), "exit %d", WEXITSTATUS(status));
    if (w->state == CORRAL_W_DRAINING && clean)
        corral_log_info("worker stopped", "worker=%s jobs=%lld", w->id, (long long)w->jobs_done);
    else
        corral_log_warn("worker died", "worker=%s status=\"%s\" lived_ms=%lld", w->id, how,
                        (long long)lived);
    /* Its leases go back at once (invariant 3), whatever the cause. */
    if (!corrald_link_up(&d->link) || reclaim_worker(d, w->id) < 0) {
        struct corral_strlist *o = &d->orphans;
        o->items = corral_xrealloc(o->items, sizeof(char *) * (o->n + 1));
        o->items[o->n++] = corral_xstrdup(w->id);
    }
    if (!clean && w->state != CORRAL_W_DRAINING && lived < CRASH_WINDOW_MS && !w->worked) {
        /* Crashing at start: back off exponentially, never give up. One
         * that had taken a job was past its start (killed, or a job that
         * kills it, which spends that job's attempts): replaced at once. */
        int64_t wait = corral_backoff_next(&d->crash_backoff);
        d->next_spawn_ms = corral_now_ms() + wait;
        corral_log_err("worker crashed at start; backing off",
                       "worker=%s status=\"%s\" retry_ms=%lld", w->id, how, (long long)wait);
    } else if (lived >= CRASH_WINDOW_MS) {
        corral_backoff_reset(&d->crash_backoff);
    }
    if (d->stopping && corral_procs_count(t) == 0) {
        ev_timer_stop(d->loop, &d->drain_timer);
        ev_break(d->loop, EVBREAK_ALL);
        return;
    }
    /* The replacement starts on the next turn of the loop, after w is gone. */
    ev_feed_event(d->loop, &d->tick, EV_CUSTOM);
}

/* --- the tick --------------------------------------------------------- */

/* Logs a service's breaker when its state differs from the last one seen
 * (each corrald logs each change once, with the numbers behind it). */
static void note_breaker(struct corrald *d, json_t *b)
{
    const char *svc = json_string_value(json_object_get(b, "service"));
    const char *state = json_string_value(json_object_get(b, "state"));
    if (svc == NULL || state == NULL)
        return;
    struct seen_breaker *seen = NULL;
    for (size_t i = 0; i < d->nbreakers; i++)
        if (strcmp(d->breakers[i].service, svc) == 0)
            seen = &d->breakers[i];
    if (seen == NULL) {
        if (d->nbreakers == MAX_QUEUES)
            return;
        seen = &d->breakers[d->nbreakers++];
        snprintf(seen->service, sizeof(seen->service), "%s", svc);
        snprintf(seen->state, sizeof(seen->state), "closed");
    }
    if (strcmp(seen->state, state) == 0)
        return;
    const char *reason = json_string_value(json_object_get(b, "reason"));
    if (strcmp(state, "closed") == 0)
        corral_log_notice("breaker closed: calls resume", "service=%s was=%s", svc, seen->state);
    else
        corral_log_warn(strcmp(state, "open") == 0 ? "breaker open: no calls to the service"
                                                   : "breaker half-open: probe calls only",
                        "service=%s was=%s failure_rate=%.3f calls=%lld open_until_ms=%lld "
                        "reason=\"%s\"",
                        svc, seen->state, json_number_value(json_object_get(b, "failure_rate")),
                        (long long)json_integer_value(json_object_get(b, "calls")),
                        (long long)json_integer_value(json_object_get(b, "open_until_ms")),
                        reason ? reason : "");
    snprintf(seen->state, sizeof(seen->state), "%s", state);
}

static int read_queue(struct corrald *d, const char *name, struct corral_scale_queue *q,
                      char *namebuf, size_t namelen, char *holdbuf, size_t holdlen)
{
    char *json = NULL;
    struct corral_err err;
    if (corrald_link_stats(&d->link, d->cfg->redis.prefix, name, 60, &json, &err) < 0) {
        if (d->link.lost)
            drop_redis(d, err.msg);
        else
            corral_logr(&d->stats_log, CORRAL_LOG_WARN, "cannot read queue stats",
                        "queue=%s error=\"%s\"", name, err.msg);
        return -1;
    }
    json_t *s = json_loads(json, 0, NULL);
    free(json);
    snprintf(namebuf, namelen, "%s", name);
    memset(q, 0, sizeof(*q));
    q->name = namebuf;
    q->depth = (int64_t)json_integer_value(json_object_get(s, "depth"));
    q->inflight = (int64_t)json_integer_value(json_object_get(s, "inflight"));
    q->arrival_per_s = json_number_value(json_object_get(s, "enqueued_per_s"));
    q->proc_ms_mean = (int64_t)json_integer_value(json_object_get(s, "proc_ms_mean"));
    q->oldest_wait_ms = (int64_t)json_integer_value(json_object_get(s, "oldest_wait_ms"));
    q->paused = json_is_true(json_object_get(s, "paused"));
    q->completion_per_s = json_number_value(json_object_get(s, "done_per_s"));
    q->proc_ms_p95 = (int64_t)json_integer_value(json_object_get(s, "proc_ms_p95"));
    json_t *b = json_object_get(s, "breaker");
    const char *hold = json_string_value(json_object_get(b, "hold"));
    if (hold != NULL && hold[0] != '\0') {
        /* Growing the pool would only add workers that wait for the service. */
        snprintf(holdbuf, holdlen, "service %s %s",
                 json_string_value(json_object_get(b, "service")), hold);
        q->held = 1;
        q->hold_reason = holdbuf;
    }
    if (b != NULL)
        note_breaker(d, b);
    json_decref(s);
    int hosts = corral_heartbeat_live_hosts(&d->link, d->cfg->redis.prefix, name,
                                            3 * d->cfg->scale.tick_ms + 5000, &err);
    q->hosts = hosts > 0 ? hosts : 1;
    return 0;
}

static void decide(struct corrald *d)
{
    const struct corral_strlist *qs = &d->cfg->pool.queues;
    struct corral_scale_queue queues[MAX_QUEUES];
    char names[MAX_QUEUES][65];
    char holds[MAX_QUEUES][160];
    size_t n = 0;
    for (size_t i = 0; i < qs->n && n < MAX_QUEUES; i++) {
        if (read_queue(d, qs->items[i], &queues[n], names[n], sizeof(names[n]), holds[n],
                       sizeof(holds[n])) < 0)
            return; /* no decision on partial data */
        d->qload[n] = queues[n].depth + queues[n].inflight;
        n++;
    }
    corral_log_repeat_end(&d->stats_log);
    const struct corral_config *c = d->cfg;
    struct corral_scale_policy p = {
        .min = corral_shards_min(c), /* on a Cluster, a worker a queue */
        .max = c->pool.max,
        .slots_per_worker = c->pool.concurrency,
        .tick_ms = c->scale.tick_ms,
        .target_wait_ms = c->scale.target_wait_ms,
        .target_utilization_pm = c->scale.target_utilization_pm,
        .scale_out_cooldown_ms = c->scale.scale_out_cooldown_ms,
        .scale_in_window_ms = c->scale.scale_in_window_ms,
        .cpu_ceiling_pm = c->scale.cpu_ceiling_pm,
        .mem_ceiling_pm = c->scale.mem_ceiling_pm,
        /* Grow by doubling, at least MAX_STEP_OUT a step (as HPA's scale-up
         * policy), so a burst reaches a large target in a few steps. */
        .max_step_out = d->desired > MAX_STEP_OUT ? d->desired : MAX_STEP_OUT,
    };
    /* workers and busy_workers from the process table, draining ones left
     * out (docs/scaling.md, "Wiring"). */
    int busy_workers = 0;
    for (struct corral_wproc *w = corral_procs_first(d->procs); w; w = w->next)
        busy_workers += w->state != CORRAL_W_DRAINING && w->busy > 0;
    struct corral_scale_input in = {
        .now_ms = corral_now_ms(),
        .queues = queues,
        .nqueues = n,
        .workers = live_workers(d, NULL, NULL, NULL),
        .busy_workers = busy_workers,
        .cpu_pm = corral_host_cpu_pm(&d->cpu),
        .mem_pm = corral_host_mem_pm(),
    };
    struct corral_scale_decision dec;
    corral_scale_decide(&p, &in, &d->scaler, &dec);
    if (dec.desired != d->desired)
        corral_log_notice("scaling", "reason=\"%s\"", dec.reason);
    if (dec.warn_pinned) /* once per pinned period; the scaler remembers */
        corral_log_warn("pool pinned at max: the load wants more workers than [pool] max",
                        "max=%d demand=%d", c->pool.max, dec.demand);
    corral_decisions_note(&d->decisions, corral_wall_ms(), in.workers, &dec);
    d->last = dec;
    d->desired = dec.desired;
}

static void check_workers(struct corrald *d)
{
    int64_t now = corral_now_ms();
    const struct corral_pool_conf *pool = &d->cfg->pool;
    for (struct corral_wproc *w = corral_procs_first(d->procs); w; w = w->next) {
        /* The silence may be ours: if this loop was blocked (a Redis call
         * waiting on a stalled server), the worker's heartbeats wait unread
         * on fd 3, and timers run before I/O. Read them before judging. */
        if (now - w->last_seen_ms > pool->hang_timeout_ms && w->term_sent_ms == 0)
            corral_procs_read(w);
        if (now - w->last_seen_ms > pool->hang_timeout_ms && w->term_sent_ms == 0) {
            corral_log_err("worker hung: silent on its channel; killing it",
                           "worker=%s silent_ms=%lld", w->id, (long long)(now - w->last_seen_ms));
            kill(w->pid, SIGKILL);
            w->term_sent_ms = now;
            continue;
        }
        if (w->state == CORRAL_W_DRAINING)
            continue;
        if (pool->max_jobs > 0 && w->jobs_done >= pool->max_jobs) {
            corral_log_info("recycling worker", "worker=%s reason=max_jobs jobs=%lld", w->id,
                            (long long)w->jobs_done);
            corral_procs_kill(w, SIGTERM);
        } else if (pool->max_rss_bytes > 0) {
            int64_t rss = corral_proc_rss_bytes(w->pid);
            if (rss > pool->max_rss_bytes) {
                corral_log_info("recycling worker", "worker=%s reason=max_rss rss=%lld", w->id,
                                (long long)rss);
                corral_procs_kill(w, SIGTERM);
            }
        }
    }
}

/* Several corrald on one host (corrald@NAME.service) each need their own
 * heartbeat: the unit passes its instance name in CORRAL_INSTANCE. */
static int heartbeat_name(struct corrald *d)
{
    const char *inst = getenv("CORRAL_INSTANCE");
    if (inst == NULL || *inst == '\0') {
        snprintf(d->hb_name, sizeof(d->hb_name), "%s", d->host);
        return 0;
    }
    size_t n = strlen(inst);
    if (n > 64 ||
        strspn(inst, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != n) {
        fprintf(stderr,
                "corrald: CORRAL_INSTANCE must be 1-64 characters of A-Z a-z 0-9 _ . - "
                "(got \"%.64s\")\n",
                inst);
        return -1;
    }
    snprintf(d->hb_name, sizeof(d->hb_name), "%s@%s", d->host, inst);
    return 0;
}

static void heartbeat(struct corrald *d)
{
    int busy, slots, ready;
    int live = live_workers(d, &busy, &slots, &ready);
    char queues[1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < d->cfg->pool.queues.n; i++)
        used += (size_t)snprintf(queues + used, used < sizeof(queues) ? sizeof(queues) - used : 0,
                                 "%s%s", i ? "," : "", d->cfg->pool.queues.items[i]);
    int64_t unwritten = 0; /* draining workers' too: they hold outcomes */
    for (struct corral_wproc *w = corral_procs_first(d->procs); w; w = w->next)
        unwritten += w->unwritten;
    struct corral_heartbeat hb = {
        .host = d->hb_name,
        .pid = getpid(),
        .workers = live,
        .busy = busy,
        .slots = slots,
        .min = corral_shards_min(d->cfg),
        .max = d->cfg->pool.max,
        .desired = d->desired,
        .last_decision = d->last.reason,
        .queues = queues,
        .redis_state = d->redis_state,
        .started_ms = d->started_wall_ms,
        .unwritten = unwritten,
    };
    struct corral_tlssup_health th;
    if (d->tls != NULL) {
        corral_tlssup_health(d->tls, &th);
        hb.tls = corral_tlssup_state_name(th.state);
        hb.tls_error = th.error;
    }
    struct corral_err err;
    int64_t ttl = 3 * d->cfg->scale.tick_ms + 5000;
    if (corrald_link_up(&d->link) &&
        corral_heartbeat_send(&d->link, d->cfg->redis.prefix, &hb, ttl, &err) < 0)
        drop_redis(d, err.msg);
    /* The scaler's new decisions, for the dashboard: a refusal (an ACL
     * without +ltrim) is logged, never a reason to reconnect. */
    if (corrald_link_up(&d->link) &&
        corral_decisions_flush(&d->decisions, &d->link, d->cfg->redis.prefix, d->hb_name, &err) <
            0) {
        if (d->link.lost)
            drop_redis(d, err.msg);
        else
            corral_logr(&d->decisions_log, CORRAL_LOG_WARN, "cannot keep the scaler's decisions",
                        "detail=\"%s\"", err.msg);
    }
    if (!d->notified_ready && ready >= d->cfg->pool.min && corrald_link_up(&d->link)) {
        corral_notify("READY=1\nSTATUS=%d workers, %d/%d slots busy", live, busy, slots);
        d->notified_ready = 1;
        corral_log_info("ready", "workers=%d", live);
    } else {
        corral_notify("STATUS=%d workers (%d desired), %d/%d slots busy; redis %s; %s", live,
                      d->desired, busy, slots, corrald_link_up(&d->link) ? "ok" : d->redis_state,
                      d->last.reason);
    }
}

/* The tick, corrald's cron. Duties, in order: connect to Redis unless a
 * retry is already scheduled (drop_redis's back-off has its own timer,
 * on_reconnect, which runs the tick when it gets through) and requeue the
 * leases of workers that died while it was away;
 * kill hung workers and recycle old ones; promote due scheduled jobs and
 * reclaim expired leases (safe on every host at once); decide the pool size
 * and start or stop workers; write this host's heartbeat and tell systemd. */
static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct corrald *d = t->data;
    if (d->stopping)
        return;
    int64_t now = corral_now_ms();
    if (!corrald_link_up(&d->link) && !ev_is_active(&d->reconnect))
        connect_redis(d);
    watch_ensure(d);
    if (corrald_link_up(&d->link) && d->orphans.n > 0) {
        size_t keep = 0;
        for (size_t i = 0; i < d->orphans.n; i++) {
            if (corrald_link_up(&d->link) && reclaim_worker(d, d->orphans.items[i]) == 0)
                free(d->orphans.items[i]);
            else
                d->orphans.items[keep++] = d->orphans.items[i];
        }
        d->orphans.n = keep;
    }
    check_workers(d);
    if (corrald_link_up(&d->link) && revents != EV_CUSTOM && now >= d->next_sweep_ms) {
        reclaim_dead_local(d);
        if (corrald_link_up(&d->link))
            check_redis_health(d);
        d->next_sweep_ms = now + 30000;
    }
    if (corrald_link_up(&d->link) && revents != EV_CUSTOM) {
        const char *prefix = d->cfg->redis.prefix;
        for (size_t i = 0; i < d->cfg->pool.queues.n && corrald_link_up(&d->link); i++) {
            const char *q = d->cfg->pool.queues.items[i];
            struct corral_err err;
            long long r = corrald_link_promote(&d->link, prefix, q, &err);
            if (r >= 0)
                r = corrald_link_reclaim(&d->link, prefix, q, &err);
            /* An error reply too (the library flushed, a queue's record
             * gone, OOM, NOPERM): connecting again loads the library and
             * declares the queues, and the back-off keeps the log quiet. */
            if (r < 0)
                drop_redis(d, err.msg);
            else if (r > 0)
                corral_log_notice("requeued jobs whose lease expired", "queue=%s jobs=%lld", q, r);
        }
        if (corrald_link_up(&d->link))
            decide(d);
    }
    if (d->desired < corral_shards_min(d->cfg))
        d->desired = corral_shards_min(d->cfg);
    reconcile(d);
    if (revents != EV_CUSTOM)
        heartbeat(d);
}

/* The back-off's wait is over: try again, and on success run the tick's
 * duties now, so the heartbeat is back without waiting for the next tick. */
static void on_reconnect(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct corrald *d = t->data;
    if (d->stopping || corrald_link_up(&d->link))
        return;
    if (connect_redis(d) == 0)
        on_tick(loop, &d->tick, EV_TIMER);
}

/* --- signals ---------------------------------------------------------- */

static void on_drain_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct corrald *d = t->data;
    int n = 0;
    for (struct corral_wproc *w = corral_procs_first(d->procs); w; w = w->next, n++)
        kill(w->pid, SIGKILL);
    corral_log_warn("drain_timeout passed; killed the remaining workers", "workers=%d", n);
}

static void on_stop(struct ev_loop *loop, ev_signal *s, int revents)
{
    struct corrald *d = s->data;
    if (d->stopping)
        return;
    d->stopping = 1;
    corral_notify("STOPPING=1");
    int n = corral_procs_count(d->procs);
    corral_log_info("stopping: draining workers", "signal=%d workers=%d", s->signum, n);
    for (struct corral_wproc *w = corral_procs_first(d->procs); w; w = w->next)
        corral_procs_kill(w, SIGTERM);
    if (n == 0) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    ev_timer_set(&d->drain_timer, (double)d->cfg->pool.drain_timeout_ms / 1000.0 + 0.5, 0.0);
    ev_timer_start(loop, &d->drain_timer);
}

/* What workers read from the config when they start: all of it but the
 * pool's bounds and the [scale] section, which are corrald's alone. Two
 * equal views mean the running workers serve what the new file says.
 * Caller frees. */
static char *worker_view(const struct corral_config *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return corral_xstrdup("");
    corral_config_dump(cfg, f);
    fclose(f);
    char *out = corral_xmalloc(len + 1), *o = out;
    int in_scale = 0, in_pool = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
        if (line[0] == '[') {
            in_scale = strncmp(line, "[scale]", 7) == 0;
            in_pool = strncmp(line, "[pool]", 6) == 0;
        }
        int skip = line[0] == ';' || in_scale ||
                   (in_pool && (strncmp(line, "min =", 5) == 0 || strncmp(line, "max =", 5) == 0));
        if (!skip) {
            memcpy(o, line, n);
            o += n;
        }
        line += n;
    }
    *o = '\0';
    free(text);
    return out;
}

static void on_reload(struct ev_loop *loop, ev_signal *s, int revents)
{
    struct corrald *d = s->data;
    corral_notify("RELOADING=1");
    corral_log_info("reloading configuration", "config=%s", d->config_path);
    struct corral_config *cfg = load(d->config_path, 0);
    if (cfg == NULL) {
        corral_log_err("reload refused: the configuration has errors; keeping the old one",
                       "config=%s", d->config_path);
        corral_notify("READY=1");
        return;
    }
    char why[256] = "no queues to serve";
    if (cfg->pool.queues.n == 0 ||
        (cfg->redis.cluster.n > 0 && corral_shards_check(cfg, why, sizeof(why)) < 0)) {
        corral_log_err(cfg->pool.queues.n == 0 ? "reload refused: no queues to serve"
                                               : "reload refused",
                       "config=%s error=\"%s\"", d->config_path, why);
        corral_config_free(cfg);
        corral_notify("READY=1");
        return;
    }
    char *old_view = worker_view(d->cfg), *new_view = worker_view(cfg);
    int restart = strcmp(old_view, new_view) != 0;
    free(old_view);
    free(new_view);
    int reconnect = !corrald_link_same(&cfg->redis, &d->cfg->redis);
    corral_config_free(d->cfg);
    d->cfg = cfg;
    if (restart) {
        /* Workers read the config when they start: replace them (they
         * finish their jobs first) so they serve what the new file says. */
        for (struct corral_wproc *w = corral_procs_first(d->procs); w; w = w->next)
            corral_procs_kill(w, SIGTERM);
    }
    watch_close(d); /* the sentinels may have changed: subscribe again */
    d->watch_next_ms = 0;
    if (reconnect) {
        /* The new address, at once (the next tick), not after a back-off
         * that was meant for the old one. */
        corrald_link_close(&d->link);
        ev_timer_stop(loop, &d->reconnect);
        corral_backoff_reset(&d->redis_backoff);
    }
    struct corral_err err;
    if (corrald_link_up(&d->link) && corrald_link_bootstrap(&d->link, cfg, &err) < 0) {
        if (d->link.lost)
            drop_redis(d, err.msg);
        else
            corral_log_err("cannot declare the new queues and services", "error=\"%s\"", err.msg);
    }
    if (d->desired < corral_shards_min(cfg))
        d->desired = corral_shards_min(cfg);
    if (d->desired > cfg->pool.max)
        d->desired = cfg->pool.max;
    ev_timer_stop(loop, &d->tick);
    ev_timer_set(&d->tick, 0.0, (double)cfg->scale.tick_ms / 1000.0);
    ev_timer_start(loop, &d->tick);
    corral_log_info("reloaded", "min=%d max=%d queues=%zu workers_replaced=%s", cfg->pool.min,
                    cfg->pool.max, cfg->pool.queues.n, restart ? "yes" : "no");
    corral_notify("READY=1");
}

static void on_watchdog(struct ev_loop *loop, ev_timer *t, int revents)
{
    corral_notify("WATCHDOG=1");
}

static void find_worker_exe(char *out, size_t len)
{
    const char *env = getenv("CORRAL_WORKER");
    if (env != NULL && env[0] != '\0') {
        snprintf(out, len, "%s", env);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        snprintf(out, len, "corral-worker");
        return;
    }
    self[n] = '\0';
    snprintf(out, len, "%s/corral-worker", dirname(self));
}

/* rediss: the host's stunnel, with a route to the url's address or to
 * each sentinel (the masters they name are added when learnt), started
 * before any connection; its dir goes to the workers in CORRAL_TLS_DIR. */
static int start_tls(struct corrald *d)
{
    if (!corral_tls_url(d->cfg->redis.url))
        return 0;
    struct corral_err err;
    char *dir = corral_tls_default_dir();
    d->tls = corral_tlssup_new(d->loop, &d->cfg->redis, dir, &err);
    free(dir);
    int rc = d->tls != NULL ? 0 : -1;
    const struct corral_redis_conf *r = &d->cfg->redis;
    if (rc == 0 && r->sentinels.n == 0)
        rc = corral_tlssup_route(d->tls, r->addr.host, r->addr.port, &err);
    for (size_t i = 0; rc == 0 && i < r->sentinels.n; i++) {
        struct corral_hostport hp = {0};
        rc = corral_hostport_parse(r->sentinels.items[i], CORRAL_SENTINEL_PORT, &hp, &err);
        if (rc == 0)
            rc = corral_tlssup_route(d->tls, hp.host, hp.port, &err);
        corral_hostport_free(&hp);
    }
    if (rc == 0)
        rc = corral_tlssup_start(d->tls, &err);
    if (rc < 0) {
        corral_log_err("cannot start the TLS proxy", "error=\"%s\"", err.msg);
        fprintf(stderr, "corrald: cannot start the TLS proxy: %s\n", err.msg);
        corral_tlssup_free(d->tls);
        d->tls = NULL;
        return -1;
    }
    setenv("CORRAL_TLS_DIR", corral_tlssup_dir(d->tls), 1);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "--check") == 0)
            check = 1;
        else if (strcmp(argv[i], "--version") == 0) {
            printf("corrald %s\n", CORRAL_VERSION);
            return 0;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return usage(stdout);
        else
            return usage(stderr);
    }
    if (path == NULL)
        path = corral_config_default_path();
    corral_log_init("corrald");
    struct corrald d = {0};
    d.config_path = path;
    d.cfg = load(path, 1);
    if (d.cfg == NULL) {
        fprintf(stderr, "corrald: %s: configuration is invalid\n", path);
        return 1;
    }
    if (check) {
        corral_config_dump(d.cfg, stdout);
        fprintf(stderr, "corrald: %s: configuration is valid\n", path);
        corral_config_free(d.cfg);
        return 0;
    }
    char why[256];
    if (d.cfg->redis.cluster.n > 0 && corral_shards_check(d.cfg, why, sizeof(why)) < 0) {
        fprintf(stderr, "corrald: %s: %s\n", path, why); /* docs/design.md, "Redis Cluster slots" */
        corral_config_free(d.cfg);
        return 1;
    }
    if (d.cfg->pool.queues.n == 0) {
        fprintf(stderr, "corrald: %s: no queues to serve: add a [queue NAME] section\n", path);
        corral_config_free(d.cfg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    corral_notify_init();
    gethostname(d.host, sizeof(d.host) - 1);
    if (heartbeat_name(&d) < 0) {
        corral_config_free(d.cfg);
        return 1;
    }
    find_worker_exe(d.worker_exe, sizeof(d.worker_exe));
    d.started_wall_ms = corral_wall_ms();
    corral_backoff_init(&d.redis_backoff, REDIS_RETRY_MIN_MS, REDIS_RETRY_MAX_MS);
    corral_backoff_init(&d.crash_backoff, CRASH_BACKOFF_MIN, CRASH_BACKOFF_MAX);
    corral_log_repeat_init(&d.redis_log, REPEAT_WINDOW_MS);
    corral_log_repeat_init(&d.reclaim_log, REPEAT_WINDOW_MS);
    corral_log_repeat_init(&d.stats_log, REPEAT_WINDOW_MS);
    corral_log_repeat_init(&d.decisions_log, REPEAT_WINDOW_MS);
    corral_log_repeat_init(&d.watch_log, REPEAT_WINDOW_MS);
    d.desired = corral_shards_min(d.cfg);
    snprintf(d.redis_state, sizeof(d.redis_state), "connecting");
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    d.loop = loop;
    if (start_tls(&d) < 0) {
        corral_config_free(d.cfg);
        ev_loop_destroy(loop);
        return 1;
    }
    struct corral_procs_cb cb = {.on_line = on_worker_line, .on_exit = on_worker_exit, .data = &d};
    d.procs = corral_procs_new(loop, d.host, &cb);
    ev_timer_init(&d.tick, on_tick, 0.0, (double)d.cfg->scale.tick_ms / 1000.0);
    d.tick.data = &d;
    ev_timer_start(loop, &d.tick);
    ev_timer_init(&d.drain_timer, on_drain_timeout, 0.0, 0.0);
    d.drain_timer.data = &d;
    ev_timer_init(&d.reconnect, on_reconnect, 0.0, 0.0);
    d.reconnect.data = &d;
    ev_signal_init(&d.sigterm, on_stop, SIGTERM);
    ev_signal_init(&d.sigint, on_stop, SIGINT);
    ev_signal_init(&d.sighup, on_reload, SIGHUP);
    d.sigterm.data = d.sigint.data = d.sighup.data = &d;
    ev_signal_start(loop, &d.sigterm);
    ev_signal_start(loop, &d.sigint);
    ev_signal_start(loop, &d.sighup);
    int64_t wd = corral_notify_watchdog_ms();
    if (wd > 0) {
        ev_timer_init(&d.watchdog, on_watchdog, 0.0, (double)wd / 2000.0);
        ev_timer_start(loop, &d.watchdog);
    }
    corral_log_info("corrald started", "version=%s config=%s worker=%s min=%d max=%d",
                    CORRAL_VERSION, path, d.worker_exe, d.cfg->pool.min, d.cfg->pool.max);
    ev_run(loop, 0);
    if (corrald_link_up(&d.link)) {
        struct corral_err err;
        corral_decisions_flush(&d.decisions, &d.link, d.cfg->redis.prefix, d.hb_name, &err);
        corral_heartbeat_remove(&d.link, d.cfg->redis.prefix, d.hb_name, &err);
        corrald_link_close(&d.link);
    }
    corral_decisions_clear(&d.decisions);
    watch_close(&d);
    corral_log_repeat_end(&d.watch_log);
    corral_tlssup_free(d.tls);
    corral_log_info("stopped", "pid=%d", (int)getpid());
    corral_procs_free(d.procs);
    corral_strlist_free(&d.orphans);
    corral_config_free(d.cfg);
    corral_notify_close();
    ev_loop_destroy(loop);
    return 0;
}

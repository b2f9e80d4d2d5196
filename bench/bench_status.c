/* make bench, the status part: how long corralctl status takes to read a
 * fleet of 50 queues, 20 hosts and 3 services (the snapshot that status,
 * status --json and metrics print), beside one PING round trip measured on
 * the same connection in the same run; and how much of it is Redis
 * executing the functions (INFO commandstats) rather than waiting.
 *
 * usage: bench_status [-q QUEUES] [-H HOSTS] [-n RUNS] SOCKET
 * The server's db is flushed: give it a private Redis. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "../ctl/ctl.h"
#include "corral/queue.h"
#include "corral/redis.h"
#include "corral/util.h"

static void die(const char *what, const struct corral_err *err)
{
    fprintf(stderr, "bench_status: %s%s%s\n", what, err ? ": " : "", err ? err->msg : "");
    exit(1);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void command(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    struct corral_err err;
    if (corral_redis_check(c, r, "command", &err) < 0)
        die("setting up", &err);
    freeReplyObject(r);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int64_t median(int64_t *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_i64);
    return v[n / 2];
}

/* Microseconds Redis spent executing commands so far (all of them). */
static long long redis_usec(redisContext *c)
{
    redisReply *r = redisCommand(c, "INFO commandstats");
    long long total = 0;
    const char *p = r && r->type == REDIS_REPLY_STRING ? r->str : "";
    while ((p = strstr(p, "cmdstat_")) != NULL) {
        char name[64];
        long long calls, usec;
        p += 8;
        if (sscanf(p, "%63[^:]:calls=%lld,usec=%lld", name, &calls, &usec) == 3 &&
            strcmp(name, "info") != 0 && strncmp(name, "config", 6) != 0)
            total += usec;
    }
    freeReplyObject(r);
    return total;
}

/* A fleet as the programs would leave it: declared queues with some jobs
 * done and some waiting, services with their breakers, host heartbeats. */
static void build_fleet(struct ctl *ctl, int nq, int nh)
{
    redisContext *c = ctl->redis;
    struct corral_err err;
    command(c, "FLUSHALL");
    if (corral_functions_ensure(c, NULL, &err) < 0)
        die("loading the functions", &err);
    static const char *const svcs[] = {"openai", "anthropic", "embed"};
    for (int s = 0; s < 3; s++) {
        struct corral_service_conf sc = {.name = (char *)svcs[s],
                                         .breaker_window_ms = 60000,
                                         .breaker_min_calls = 20,
                                         .breaker_failure_rate_pm = 500,
                                         .breaker_slow_call_ms = 30000,
                                         .breaker_slow_rate_pm = 800,
                                         .breaker_open_for_ms = 30000,
                                         .breaker_open_max_ms = 300000,
                                         .breaker_half_open_calls = 3};
        if (corral_service_declare(c, "corral", &sc, &err) < 0)
            die("declaring a service", &err);
    }
    char *prios[] = {"high", "normal", "low"};
    for (int i = 0; i < nq; i++) {
        char name[32];
        snprintf(name, sizeof(name), "queue%02d", i);
        struct corral_queue_conf q = {
            .name = name,
            .priorities = {.items = prios, .n = 3},
            .order = CORRAL_ORDER_STRICT,
            .weights = {1, 1, 1},
            .max_attempts = 5,
            .backoff_base_ms = 1000,
            .backoff_cap_ms = 300000,
            .timeout_ms = 60000,
            .lease_ms = 30000,
            .result_ttl_ms = 3600000,
            .max_payload_bytes = 1 << 20,
            .max_result_bytes = 1 << 20,
            .service = (char *)svcs[i % 3],
        };
        if (corral_queue_declare(c, "corral", &q, &err) < 0)
            die("declaring a queue", &err);
        for (int k = 0; k < 20; k++) {
            char *id = NULL;
            if (corral_queue_enqueue(c, "corral", name, "{}", 2, &(struct corral_enqueue_opts){0},
                                     &id, &err) < 0)
                die("enqueueing", &err);
            free(id);
        }
        struct corral_job *jobs = NULL;
        size_t n = 0;
        if (corral_queue_reserve(c, "corral", name, "bench:1", 10, &jobs, &n, NULL, &err) < 0)
            die("reserving", &err);
        struct corral_outcome o[10];
        enum corral_run_status st[10];
        for (size_t k = 0; k < n; k++)
            o[k] = (struct corral_outcome){
                .id = jobs[k].id, .run = jobs[k].run, .data = "{}", .len = 2};
        if (corral_queue_ack(c, "corral", name, "bench:1", o, n, st, &err) < 0)
            die("acking", &err);
        corral_jobs_free(jobs, n);
    }
    long long now = (long long)corral_wall_ms();
    for (int h = 0; h < nh; h++) {
        command(c,
                "HSET corral:host:host%02d host host%02d pid 1234 workers 8 busy 5 slots 32 min 2 "
                "max 20 desired 8 last_decision %s heartbeat_ms %lld version 0.1.0",
                h, h, "steady 8: queue07 depth 20", now);
        command(c, "ZADD corral:hosts %lld host%02d", now, h);
    }
}

int main(int argc, char **argv)
{
    int nq = 50, nh = 20, runs = 300, opt;
    while ((opt = getopt(argc, argv, "q:H:n:")) != -1) {
        int v = atoi(optarg);
        if (v < 1)
            die("-q, -H and -n take positive numbers", NULL);
        if (opt == 'q')
            nq = v;
        else if (opt == 'H')
            nh = v;
        else if (opt == 'n')
            runs = v;
        else
            die("usage: bench_status [-q QUEUES] [-H HOSTS] [-n RUNS] SOCKET", NULL);
    }
    if (optind != argc - 1)
        die("usage: bench_status [-q QUEUES] [-H HOSTS] [-n RUNS] SOCKET", NULL);
    struct ctl ctl = {.cfg = corral_config_defaults()};
    ctl.redis = redisConnectUnix(argv[optind]);
    if (ctl.redis == NULL || ctl.redis->err)
        die("cannot connect", NULL);
    build_fleet(&ctl, nq, nh);

    int64_t *ping = corral_xcalloc((size_t)runs, sizeof(int64_t));
    int64_t *snap = corral_xcalloc((size_t)runs, sizeof(int64_t));
    struct corral_err err;
    for (int i = 0; i < 20; i++) { /* warm up */
        json_t *s = ctl_snapshot(&ctl, &err);
        if (s == NULL)
            die("status", &err);
        json_decref(s);
    }
    command(ctl.redis, "CONFIG RESETSTAT");
    long long busy0 = redis_usec(ctl.redis);
    size_t got_q = 0, got_h = 0, got_b = 0;
    for (int i = 0; i < runs; i++) {
        int64_t t0 = now_ns();
        command(ctl.redis, "PING");
        int64_t t1 = now_ns();
        json_t *s = ctl_snapshot(&ctl, &err);
        int64_t t2 = now_ns();
        if (s == NULL)
            die("status", &err);
        got_q = json_array_size(json_object_get(s, "queues"));
        got_h = json_array_size(json_object_get(s, "hosts"));
        got_b = json_array_size(json_object_get(s, "breakers"));
        json_decref(s);
        ping[i] = t1 - t0;
        snap[i] = t2 - t1;
    }
    /* The INFO reads themselves are left out of busy: the last one is not
     * counted yet when it is read, and PING costs ~1 us. */
    long long busy = redis_usec(ctl.redis) - busy0;
    if (got_q != (size_t)nq || got_h != (size_t)nh || got_b != 3)
        die("the snapshot did not hold the whole fleet", NULL);
    double p = (double)median(ping, runs) / 1000.0, s = (double)median(snap, runs) / 1000.0;
    double redis_per = (double)busy / runs;
    printf("corralctl status snapshot: %d queues, %d hosts, 3 services; %d runs, unix socket\n", nq,
           nh, runs);
    printf("  PING round trip (median)              %9.1f us\n", p);
    printf("  status snapshot (median)              %9.1f us = %.1f PING round trips\n", s, s / p);
    printf("  of which Redis executing (mean)       %9.1f us (%d functions and commands)\n",
           redis_per, 3 + nq + nh + 3);
    printf("  round trips per snapshot              %9d   (indexes, then one pipeline)\n", 2);
    printf("  the rest: waiting and parsing         %9.1f us = %.1f PING round trips\n",
           s - redis_per, (s - redis_per) / p);
    command(ctl.redis, "FLUSHALL");
    redisFree(ctl.redis);
    corral_config_free(ctl.cfg);
    free(ping);
    free(snap);
    return 0;
}

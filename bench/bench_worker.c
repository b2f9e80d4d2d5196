/* Helpers for bench/bench_worker.sh, each printing one figure:
 *   bench_worker enqueue SOCK QUEUE N [PAYLOAD]   pipelined enqueue of N jobs
 *   bench_worker drain SOCK QUEUE N               ms until N jobs are done
 *   bench_worker latency SOCK QUEUE N GAP_MS      enqueue-to-start p50/p99 (us) of
 *                                                 N jobs GAP_MS apart, and PING's
 *   bench_worker cpu PID SECONDS                  CPU ms a process used in SECONDS
 * The queue must be declared (a worker declares its queues when it starts). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "corral/queue.h"
#include "corral/redis.h"
#include "corral/util.h"

static redisContext *connect_sock(const char *sock)
{
    char url[512];
    snprintf(url, sizeof(url), "unix://%s", sock);
    struct corral_redis_conf rc = {.url = url, .prefix = "corral"};
    struct corral_err err;
    redisContext *c = NULL;
    if (corral_redis_parse_url(url, &rc.addr, &err) == 0)
        c = corral_redis_connect(&rc, 30000, &err);
    corral_redis_addr_free(&rc.addr);
    if (c == NULL) {
        fprintf(stderr, "bench_worker: %s\n", err.msg);
        exit(1);
    }
    return c;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int enqueue(redisContext *c, const char *queue, long n, const char *payload)
{
    long sent = 0, got = 0;
    while (got < n) {
        while (sent < n && sent - got < 1000) {
            struct corral_cmd cmd;
            corral_cmd_enqueue(&cmd, "corral", queue, payload, strlen(payload), NULL);
            redisAppendCommandArgv(c, cmd.argc, (const char **)cmd.argv, cmd.argvlen);
            corral_cmd_free(&cmd);
            sent++;
        }
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL ||
            r->type != REDIS_REPLY_STRING) {
            fprintf(stderr, "bench_worker: enqueue failed: %s\n",
                    r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
            return 1;
        }
        freeReplyObject(r);
        got++;
    }
    return 0;
}

/* Jobs not yet ended (queued or running), or -1 when none are left. */
static long done_count(redisContext *c, const char *queue)
{
    char *json = NULL;
    struct corral_err err;
    if (corral_queue_stats(c, "corral", queue, 3600, &json, &err) < 0) {
        fprintf(stderr, "bench_worker: %s\n", err.msg);
        exit(1);
    }
    json_t *s = json_loads(json, 0, NULL);
    free(json);
    long depth = (long)json_integer_value(json_object_get(s, "depth"));
    long inflight = (long)json_integer_value(json_object_get(s, "inflight"));
    json_decref(s);
    return depth == 0 && inflight == 0 ? -1 : depth + inflight;
}

static int drain(redisContext *c, const char *queue, long n)
{
    (void)n;
    int64_t t0 = now_us();
    while (done_count(c, queue) != -1) {
        if (now_us() - t0 > 600 * 1000000LL) {
            fprintf(stderr, "bench_worker: not drained after 10 minutes\n");
            return 1;
        }
        usleep(2000);
    }
    printf("%.1f\n", (double)(now_us() - t0) / 1000.0);
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int64_t pct(int64_t *v, long n, double p)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_i64);
    long i = (long)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static int64_t job_field(redisContext *c, const char *queue, const char *id, const char *field)
{
    char *json = NULL;
    struct corral_err err;
    if (corral_queue_job(c, "corral", queue, id, &json, &err) < 0)
        return -1;
    json_t *j = json_loads(json, 0, NULL);
    free(json);
    json_t *v = json_object_get(j, field);
    int64_t out = json_is_integer(v)  ? (int64_t)json_integer_value(v)
                  : json_is_string(v) ? atoll(json_string_value(v))
                                      : -1;
    json_decref(j);
    return out;
}

static int latency(redisContext *c, const char *queue, long n, long gap_ms)
{
    int64_t *start = corral_xcalloc((size_t)n, sizeof(int64_t));
    int64_t *ping = corral_xcalloc((size_t)n, sizeof(int64_t));
    char **ids = corral_xcalloc((size_t)n, sizeof(char *));
    struct corral_err err;
    for (long i = 0; i < n; i++) {
        int64_t t0 = now_us();
        redisReply *r = redisCommand(c, "PING");
        ping[i] = now_us() - t0;
        freeReplyObject(r);
        if (corral_queue_enqueue(c, "corral", queue, "{}", 2, NULL, &ids[i], &err) < 0) {
            fprintf(stderr, "bench_worker: %s\n", err.msg);
            return 1;
        }
        usleep((useconds_t)gap_ms * 1000);
    }
    /* Wait for the last one to end, then read the server-side timestamps. */
    char *state = NULL;
    if (corral_queue_wait(c, "corral", queue, ids[n - 1], 30000, &state, &err) < 0) {
        fprintf(stderr, "bench_worker: %s\n", err.msg);
        return 1;
    }
    free(state);
    for (long i = 0; i < n; i++) {
        int64_t created = job_field(c, queue, ids[i], "created_us");
        int64_t started = job_field(c, queue, ids[i], "started_us");
        if (created < 0 || started < 0) {
            fprintf(stderr, "bench_worker: job %s did not start\n", ids[i]);
            return 1;
        }
        start[i] = started - created;
        free(ids[i]);
    }
    printf("%lld %lld %lld %lld\n", (long long)pct(start, n, 0.5), (long long)pct(start, n, 0.99),
           (long long)pct(ping, n, 0.5), (long long)pct(ping, n, 0.99));
    free(start);
    free(ping);
    free(ids);
    return 0;
}

static int64_t cpu_ms(const char *pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%s/stat", pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (int64_t)((ut + st) * 1000 / (unsigned long long)sysconf(_SC_CLK_TCK));
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "cpu") == 0) {
        int64_t a = cpu_ms(argv[2]);
        sleep((unsigned)atoi(argv[3]));
        int64_t b = cpu_ms(argv[2]);
        if (a < 0 || b < 0)
            return 1;
        printf("%lld\n", (long long)(b - a));
        return 0;
    }
    if (argc < 5) {
        fprintf(stderr, "usage: see bench/bench_worker.c\n");
        return 2;
    }
    redisContext *c = connect_sock(argv[2]);
    int rc = 2;
    if (strcmp(argv[1], "enqueue") == 0)
        rc = enqueue(c, argv[3], atol(argv[4]), argc > 5 ? argv[5] : "{}");
    else if (strcmp(argv[1], "drain") == 0)
        rc = drain(c, argv[3], atol(argv[4]));
    else if (strcmp(argv[1], "latency") == 0 && argc > 5)
        rc = latency(c, argv[3], atol(argv[4]), atol(argv[5]));
    redisFree(c);
    return rc;
}

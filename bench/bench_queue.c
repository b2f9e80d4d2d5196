/* make bench, the queue part: corral's enqueue rate (one call per job,
 * pipelined, and in bulk with corral_enqueue_many) and full job cycle
 * (enqueue + reserve + ack) through the Function library, with 1 and 4
 * connections (one thread with one blocking hiredis connection each), each
 * beside the redis-benchmark LPUSH / RPOP figures that bench/run.sh measured
 * against the same server in the same run; the full cycle again with a
 * service (breaker, in-flight count) bound to the queue, against the cycle
 * without one; then where Redis spends its time per job, function by
 * function.
 *
 * usage: bench_queue [-n JOBS] [-r CONNS:LPUSH:RPOP]... [-p PROFILE_JOBS] SOCKET
 * The server's db is flushed before every run: give it a private Redis. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "corral/queue.h"
#include "corral/redis.h"
#include "corral/util.h"

#define PREFIX     "corral"
#define QUEUE      "bench"
#define BATCH_MAX  128
#define GOAL_RATIO 0.33
#define MAX_REFS   8
#define MAX_CONNS  64
#define MAX_CMDS   64

static const char payload[] =
    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
static const char result[] = "{\"ok\":true}";

/* One measured run. batch is the enqueue pipeline depth (or, with bulk,
 * the payloads of one corral_enqueue_many), and for a cycle also how many
 * jobs one reserve and one ack carry; 1 means one plain call per job and
 * per operation. */
struct run_spec {
    const char *label;
    int cycle; /* 0: enqueue only; 1: enqueue, reserve, ack; 2: enqueue, corral_ack_reserve */
    int batch;
    int service; /* the queue calls a service: its breaker is kept on every call */
    int bulk;    /* enqueue with corral_enqueue_many, batch payloads per call */
};

static const struct run_spec runs[] = {
    {"corral enqueue, 1 call per job", 0, 1, 0, 0},
    {"corral enqueue, pipelined x100", 0, 100, 0, 0},
    {"corral enqueue_many, 1000 per call", 0, CORRAL_ENQUEUE_MANY_MAX, 0, 1},
    {"corral full cycle, 1 call each", 1, 1, 0, 0},
    {"corral full cycle, batches of 32", 1, 32, 0, 0},
    {"  the same with a service (breaker)", 1, 1, 1, 0},
    {"  the same with a service (breaker)", 1, 32, 1, 0},
    {"corral cycle, ack+reserve in 1 call", 2, 1, 0, 0},
    {"corral cycle, ack+reserve, batch 32", 2, 32, 0, 0},
};
#define GOAL_BREAKER 0.90
static const struct run_spec *const goal_run = &runs[4];
static const struct run_spec *const pipelined_run = &runs[1];
static const struct run_spec *const bulk_run = &runs[2];
static const int conn_counts[] = {1, 4};

/* A redis-benchmark reference (requests/s) for one connection count. */
struct ref {
    int conns;
    double lpush;
    double rpop;
};

struct worker {
    pthread_t thread;
    const struct run_spec *spec;
    const char *sock;
    long jobs;
    int id;
    pthread_barrier_t *start;
    long done; /* jobs enqueued (enqueue runs) or acked done (cycles) */
    int failed;
    struct corral_err err;
};

/* What Redis did during a run, from INFO commandstats. */
struct cmdstat {
    char name[48];
    long long calls;
    long long usec;
};
struct server_time {
    long long fcall_calls;
    long long fcall_usec;
    struct cmdstat inner[MAX_CMDS]; /* the commands the functions ran */
    int ninner;
};

/* One run's outcome. */
struct measurement {
    long jobs;
    double wall_s;
    double rate; /* jobs/s */
    struct server_time st;
};

/* Set by the first worker that fails, so the others stop early. */
static atomic_int stop;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *what, const struct corral_err *err)
{
    fprintf(stderr, "bench_queue: %s%s%s\n", what, err ? ": " : "", err ? err->msg : "");
    exit(1);
}

static redisContext *bench_connect(const char *sock, struct corral_err *err)
{
    char *url = corral_xasprintf("unix://%s", sock);
    struct corral_redis_conf rc = {.url = url, .password_file = NULL, .prefix = PREFIX};
    redisContext *c = NULL;
    if (corral_redis_parse_url(url, &rc.addr, err) == 0)
        c = corral_redis_connect(&rc, 30000, err);
    corral_redis_addr_free(&rc.addr);
    free(url);
    return c;
}

/* Runs a command whose reply only has to be free of errors. */
static void command(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    struct corral_err err;
    if (corral_redis_check(c, r, fmt, &err) < 0)
        die("admin command", &err);
    freeReplyObject(r);
}

/* The payloads of one corral_enqueue_many: the same payload each time. */
static struct corral_payload bulk_payloads[CORRAL_ENQUEUE_MANY_MAX];

/* n jobs with one corral_queue_enqueue_many (n <= CORRAL_ENQUEUE_MANY_MAX). */
static int enqueue_bulk(redisContext *c, int n, struct corral_err *err)
{
    char *ids[CORRAL_ENQUEUE_MANY_MAX];
    if (corral_queue_enqueue_many(c, PREFIX, QUEUE, bulk_payloads, (size_t)n, NULL, ids, err) < 0)
        return -1;
    for (int i = 0; i < n; i++)
        free(ids[i]);
    return 0;
}

/* n jobs: one corral_queue_enqueue when n is 1, else n FCALLs pipelined. */
static int enqueue_batch(redisContext *c, int n, struct corral_err *err)
{
    if (n == 1) {
        char *id = NULL;
        int rc =
            corral_queue_enqueue(c, PREFIX, QUEUE, payload, sizeof(payload) - 1, NULL, &id, err);
        free(id);
        return rc;
    }
    for (int i = 0; i < n; i++) {
        struct corral_cmd cmd;
        corral_cmd_enqueue(&cmd, PREFIX, QUEUE, payload, sizeof(payload) - 1, NULL);
        int rc = redisAppendCommandArgv(c, cmd.argc, (const char **)cmd.argv, cmd.argvlen);
        corral_cmd_free(&cmd);
        if (rc != REDIS_OK)
            return corral_redis_check(c, NULL, "enqueue", err);
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            return corral_redis_check(c, NULL, "enqueue", err);
        char *id = NULL;
        if (rc == 0 && corral_reply_enqueue(r, &id, err) < 0)
            rc = -1;
        free(id);
        freeReplyObject(r);
    }
    return rc;
}

/* Reserves n jobs with one call; fewer is an error (see cycle_batch). */
static int reserve_batch(redisContext *c, const char *wid, int n, struct corral_job **jobs,
                         size_t *got, struct corral_err *err)
{
    if (corral_queue_reserve(c, PREFIX, QUEUE, wid, n, jobs, got, NULL, err) < 0)
        return -1;
    if (*got != (size_t)n)
        return corral_err_set(err, CORRAL_ERR_REDIS, "reserve of %d returned %zu jobs", n, *got);
    return 0;
}

/* Acks the reserved jobs with one call; each must come back done. */
static int ack_batch(redisContext *c, const char *wid, const struct corral_job *jobs, size_t n,
                     long *done, struct corral_err *err)
{
    struct corral_outcome o[BATCH_MAX] = {{0}};
    enum corral_run_status st[BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        o[i] = (struct corral_outcome){
            .id = jobs[i].id, .run = jobs[i].run, .data = result, .len = sizeof(result) - 1};
    if (corral_queue_ack(c, PREFIX, QUEUE, wid, o, n, st, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (st[i] != CORRAL_STATUS_DONE)
            return corral_err_set(err, CORRAL_ERR_REDIS, "ack of job %s answered %s, not done",
                                  jobs[i].id, corral_run_status_name(st[i]));
        (*done)++;
    }
    return 0;
}

/* Enqueues n jobs, reserves n with one call and acks them with one call.
 * Every connection enqueues before it reserves, so the queue always holds
 * at least n jobs for each reserve: fewer is an error. */
static int cycle_batch(redisContext *c, const char *wid, int n, long *done, struct corral_err *err)
{
    struct corral_job *jobs = NULL;
    size_t got = 0;
    int rc = enqueue_batch(c, n, err);
    if (rc == 0)
        rc = reserve_batch(c, wid, n, &jobs, &got, err);
    if (rc == 0)
        rc = ack_batch(c, wid, jobs, got, done, err);
    corral_jobs_free(jobs, got);
    return rc;
}

/* The cycle of a worker at steady state: enqueues n jobs, then acks the n
 * it holds and reserves n more with one corral_ack_reserve (the first call
 * acks nothing). *held are the jobs it holds between calls. */
static int cycle_combined(redisContext *c, const char *wid, int n, struct corral_job **held,
                          size_t *nheld, long *done, struct corral_err *err)
{
    if (enqueue_batch(c, n, err) < 0)
        return -1;
    struct corral_outcome o[BATCH_MAX] = {{0}};
    enum corral_run_status st[BATCH_MAX];
    for (size_t i = 0; i < *nheld; i++)
        o[i] = (struct corral_outcome){
            .id = (*held)[i].id, .run = (*held)[i].run, .data = result, .len = sizeof(result) - 1};
    struct corral_job *jobs = NULL;
    size_t got = 0;
    int rc = corral_queue_ack_reserve(c, PREFIX, QUEUE, wid, o, *nheld, st, n, 0, &jobs, &got, NULL,
                                      err);
    for (size_t i = 0; rc == 0 && i < *nheld; i++) {
        if (st[i] != CORRAL_STATUS_DONE)
            rc = corral_err_set(err, CORRAL_ERR_REDIS, "ack of job %s answered %s, not done",
                                (*held)[i].id, corral_run_status_name(st[i]));
        else
            (*done)++;
    }
    corral_jobs_free(*held, *nheld);
    *held = jobs;
    *nheld = got;
    if (rc == 0 && got != (size_t)n)
        return corral_err_set(err, CORRAL_ERR_REDIS, "reserve of %d returned %zu jobs", n, got);
    return rc;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    redisContext *c = bench_connect(w->sock, &w->err);
    /* Everyone waits here, connected or not, so the clock starts once. */
    pthread_barrier_wait(w->start);
    if (c == NULL) {
        w->failed = 1;
        atomic_store(&stop, 1);
        return NULL;
    }
    char wid[32];
    snprintf(wid, sizeof(wid), "bench:%d", w->id);
    long left = w->jobs;
    struct corral_job *held = NULL;
    size_t nheld = 0;
    while (left > 0 && !atomic_load(&stop)) {
        int n = left < w->spec->batch ? (int)left : w->spec->batch;
        int rc;
        if (w->spec->cycle == 2) {
            rc = cycle_combined(c, wid, n, &held, &nheld, &w->done, &w->err);
        } else if (w->spec->cycle) {
            rc = cycle_batch(c, wid, n, &w->done, &w->err);
        } else {
            rc = w->spec->bulk ? enqueue_bulk(c, n, &w->err) : enqueue_batch(c, n, &w->err);
            if (rc == 0)
                w->done += n;
        }
        if (rc < 0) {
            w->failed = 1;
            atomic_store(&stop, 1);
            break;
        }
        left -= n;
    }
    if (nheld > 0 && !w->failed && ack_batch(c, wid, held, nheld, &w->done, &w->err) < 0) {
        w->failed = 1;
        atomic_store(&stop, 1);
    }
    corral_jobs_free(held, nheld);
    redisFree(c);
    return NULL;
}

/* A fresh db with the library loaded and the one queue declared (bound to
 * a service when with_service). */
static void reset(redisContext *c, int with_service)
{
    command(c, "FLUSHALL");
    struct corral_err err;
    char *prios[] = {"high", "normal", "low"};
    struct corral_queue_conf q = {
        .name = QUEUE,
        .priorities = {.items = prios, .n = 3},
        .order = CORRAL_ORDER_STRICT,
        .weights = {1, 1, 1},
        .handler = CORRAL_HANDLER_ECHO,
        .max_attempts = 5,
        .backoff_base_ms = 1000,
        .backoff_cap_ms = 300000,
        .timeout_ms = 60000,
        .lease_ms = 30000,
        .result_ttl_ms = 3600000,
        .max_payload_bytes = 1 << 20,
        .max_result_bytes = 1 << 20,
        .service = with_service ? "ai" : NULL,
    };
    /* Settings as the config's defaults: the breaker never trips here (every
     * call succeeds), so what is measured is its bookkeeping. */
    struct corral_service_conf s = {
        .name = "ai",
        .max_inflight = 10,
        .breaker_window_ms = 60000,
        .breaker_min_calls = 20,
        .breaker_failure_rate_pm = 500,
        .breaker_slow_call_ms = 30000,
        .breaker_slow_rate_pm = 800,
        .breaker_open_for_ms = 30000,
        .breaker_open_max_ms = 300000,
        .breaker_half_open_calls = 3,
    };
    if (corral_functions_ensure(c, NULL, &err) < 0 ||
        (with_service && corral_service_declare(c, PREFIX, &s, &err) < 0) ||
        corral_queue_declare(c, PREFIX, &q, &err) < 0)
        die("setting up the queue", &err);
}

static void server_time_read(redisContext *c, struct server_time *st)
{
    memset(st, 0, sizeof(*st));
    redisReply *r = redisCommand(c, "INFO commandstats");
    struct corral_err err;
    if (corral_redis_check(c, r, "INFO commandstats", &err) < 0)
        die("reading commandstats", &err);
    const char *p = r->type == REDIS_REPLY_STRING ? r->str : "";
    while ((p = strstr(p, "cmdstat_")) != NULL) {
        struct cmdstat cs = {0};
        p += strlen("cmdstat_");
        if (sscanf(p, "%47[^:]:calls=%lld,usec=%lld", cs.name, &cs.calls, &cs.usec) != 3)
            continue;
        if (strcmp(cs.name, "fcall") == 0) {
            st->fcall_calls = cs.calls;
            st->fcall_usec = cs.usec;
        } else if (strcmp(cs.name, "info") != 0 && strncmp(cs.name, "config", 6) != 0 &&
                   strncmp(cs.name, "slowlog", 7) != 0 && st->ninner < MAX_CMDS) {
            st->inner[st->ninner++] = cs;
        }
    }
    freeReplyObject(r);
}

/* The job's state field, or NULL when it does not exist; caller frees. */
static char *job_state(redisContext *c, long id)
{
    char ids[32];
    snprintf(ids, sizeof(ids), "%ld", id);
    char *json = NULL;
    struct corral_err err;
    if (corral_queue_job(c, PREFIX, QUEUE, ids, &json, &err) < 0) {
        if (err.code == CORRAL_ERR_NOTFOUND)
            return NULL;
        die("reading a job", &err);
    }
    json_t *j = json_loads(json, 0, NULL);
    free(json);
    const char *s = json_string_value(json_object_get(j, "state"));
    char *state = corral_xstrdup(s ? s : "?");
    json_decref(j);
    return state;
}

/* After an enqueue run every job is queued; after a cycle every job is done
 * and nothing is left queued, in flight, scheduled or dead. Ids count up
 * from 1, so job `jobs` must exist and job `jobs + 1` must not. */
static void verify(redisContext *c, const struct run_spec *spec, int conns, long jobs, long done)
{
    char *json = NULL;
    struct corral_err err;
    if (corral_queue_stats(c, PREFIX, QUEUE, 60, &json, &err) < 0)
        die("reading the queue's stats", &err);
    json_t *s = json_loads(json, 0, NULL);
    free(json);
    long depth = (long)json_integer_value(json_object_get(s, "depth"));
    long inflight = (long)json_integer_value(json_object_get(s, "inflight"));
    long sched = (long)json_integer_value(json_object_get(s, "scheduled"));
    long dead = (long)json_integer_value(json_object_get(s, "dead"));
    json_decref(s);
    const char *want = spec->cycle ? "done" : "queued";
    char *first = job_state(c, 1);
    char *last = job_state(c, jobs);
    char *beyond = job_state(c, jobs + 1);
    int ok = done == jobs && depth == (spec->cycle ? 0 : jobs) && inflight == 0 && sched == 0 &&
             dead == 0 && first && strcmp(first, want) == 0 && last && strcmp(last, want) == 0 &&
             beyond == NULL;
    if (!ok) {
        fprintf(stderr,
                "bench_queue: %s, %d connections: FAILED: %ld of %ld jobs %s; depth %ld, "
                "inflight %ld, scheduled %ld, dead %ld; job 1 %s, job %ld %s, job %ld %s\n",
                spec->label, conns, done, jobs, want, depth, inflight, sched, dead,
                first ? first : "missing", jobs, last ? last : "missing", jobs + 1,
                beyond ? beyond : "missing");
        exit(1);
    }
    free(first);
    free(last);
    free(beyond);
}

/* Runs spec over conns connections on a fresh queue, checks that every job
 * got where it should, and fills m with the rate and what Redis did. */
static void run_workers(redisContext *admin, const char *sock, const struct run_spec *spec,
                        int conns, long jobs, struct measurement *m)
{
    if (conns < 1 || conns > MAX_CONNS)
        die("bad connection count", NULL);
    reset(admin, spec->service);
    command(admin, "CONFIG RESETSTAT");
    struct worker w[MAX_CONNS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)conns + 1);
    atomic_store(&stop, 0);
    for (int i = 0; i < conns; i++) {
        w[i] = (struct worker){.spec = spec,
                               .sock = sock,
                               .jobs = jobs / conns + (i < jobs % conns),
                               .id = i,
                               .start = &start};
        if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0)
            die("pthread_create failed", NULL);
    }
    pthread_barrier_wait(&start);
    int64_t t0 = now_us();
    long done = 0;
    int failed = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(w[i].thread, NULL);
        done += w[i].done;
        if (w[i].failed) {
            fprintf(stderr, "bench_queue: %s, connection %d: %s\n", spec->label, i, w[i].err.msg);
            failed = 1;
        }
    }
    int64_t us = now_us() - t0;
    pthread_barrier_destroy(&start);
    if (failed)
        exit(1);
    server_time_read(admin, &m->st);
    verify(admin, spec, conns, jobs, done);
    m->jobs = jobs;
    m->wall_s = (double)(us > 0 ? us : 1) / 1e6;
    m->rate = (double)jobs / m->wall_s;
}

static const struct ref *find_ref(const struct ref *refs, size_t n, int conns)
{
    for (size_t i = 0; i < n; i++)
        if (refs[i].conns == conns)
            return &refs[i];
    return NULL;
}

/* One table row; refname NULL for the reference rows themselves, m NULL
 * when Redis's time was not measured. */
static void print_row(const char *op, int conns, double rate, const char *refname, double ref,
                      const struct measurement *m)
{
    printf("%-34s %5d %9.0f", op, conns, rate);
    if (refname != NULL && ref > 0)
        printf("  %-16s %9.0f %6.2f", refname, ref, rate / ref);
    else if (refname != NULL)
        printf("  %-16s %9s %6s", refname, "-", "-");
    if (m != NULL)
        printf(" %12.1f %9.0f%%", (double)m->st.fcall_usec / (double)m->jobs,
               100.0 * (double)m->st.fcall_usec / (m->wall_s * 1e6));
    printf("\n");
}

static int by_usec_desc(const void *a, const void *b)
{
    const struct cmdstat *x = a, *y = b;
    return (y->usec > x->usec) - (y->usec < x->usec);
}

/* acc += b - a, command by command. */
static void server_time_add(struct server_time *acc, const struct server_time *a,
                            const struct server_time *b)
{
    acc->fcall_calls += b->fcall_calls - a->fcall_calls;
    acc->fcall_usec += b->fcall_usec - a->fcall_usec;
    for (int i = 0; i < b->ninner; i++) {
        struct cmdstat d = b->inner[i];
        for (int j = 0; j < a->ninner; j++) {
            if (strcmp(a->inner[j].name, d.name) == 0) {
                d.calls -= a->inner[j].calls;
                d.usec -= a->inner[j].usec;
            }
        }
        if (d.calls == 0)
            continue;
        int k = 0;
        while (k < acc->ninner && strcmp(acc->inner[k].name, d.name) != 0)
            k++;
        if (k == acc->ninner) {
            if (k == MAX_CMDS)
                continue;
            acc->inner[acc->ninner++] = (struct cmdstat){.calls = 0, .usec = 0};
            snprintf(acc->inner[k].name, sizeof(acc->inner[k].name), "%s", d.name);
        }
        acc->inner[k].calls += d.calls;
        acc->inner[k].usec += d.usec;
    }
}

static long long inner_usec(const struct server_time *st)
{
    long long us = 0;
    for (int i = 0; i < st->ninner; i++)
        us += st->inner[i].usec;
    return us;
}

/* Where Redis spends its time per job, function by function: one
 * connection runs the cycle of spec (untimed) in rounds of PROFILE_ROUND
 * jobs: enqueue them all, reserve them all, ack them all, each in calls of
 * spec->batch jobs, reading INFO commandstats between the three phases, so
 * each function's time and the commands it issued are known. (Reading INFO
 * between single calls would measure the caches INFO itself evicts.) What a
 * function spends outside its redis.call()s is the Lua itself, FCALL
 * dispatch and argument/reply conversion. */
static void profile_one(redisContext *c, const struct run_spec *spec, long jobs,
                        struct server_time fn[3])
{
    enum { PROFILE_ROUND = 32 };
    reset(c, 0);
    memset(fn, 0, 3 * sizeof(fn[0]));
    struct server_time t0, t1;
    struct corral_err err;
    long done = 0;
    server_time_read(c, &t0);
    for (long left = jobs; left > 0;) {
        int round = left < PROFILE_ROUND ? (int)left : PROFILE_ROUND;
        struct corral_job *jobs_r[PROFILE_ROUND];
        size_t got[PROFILE_ROUND];
        int ncalls = 0;
        for (int k = 0; k < round; k += spec->batch)
            if (enqueue_batch(c, round - k < spec->batch ? round - k : spec->batch, &err) < 0)
                die("profile: enqueue", &err);
        server_time_read(c, &t1);
        server_time_add(&fn[0], &t0, &t1);
        for (int k = 0; k < round; k += spec->batch, ncalls++)
            if (reserve_batch(c, "bench:profile", round - k < spec->batch ? round - k : spec->batch,
                              &jobs_r[ncalls], &got[ncalls], &err) < 0)
                die("profile: reserve", &err);
        server_time_read(c, &t0);
        server_time_add(&fn[1], &t1, &t0);
        for (int k = 0; k < ncalls; k++) {
            if (ack_batch(c, "bench:profile", jobs_r[k], got[k], &done, &err) < 0)
                die("profile: ack", &err);
            corral_jobs_free(jobs_r[k], got[k]);
        }
        server_time_read(c, &t1);
        server_time_add(&fn[2], &t0, &t1);
        t0 = t1;
        left -= round;
    }
    verify(c, spec, 1, jobs, done);
}

/* Redis time of one FCALL of an empty function: the fixed cost of calling
 * into the library, against which the functions' own Lua is measured. */
static double empty_fcall_us(redisContext *c)
{
    enum { N = 2000 };
    command(c, "CONFIG RESETSTAT");
    for (int i = 0; i < N; i++)
        command(c, "FCALL_RO corral_version 0");
    redisReply *r = redisCommand(c, "INFO commandstats");
    struct corral_err err;
    if (corral_redis_check(c, r, "INFO commandstats", &err) < 0)
        die("reading commandstats", &err);
    long long calls = 0, usec = 0;
    const char *p = r->type == REDIS_REPLY_STRING ? strstr(r->str, "cmdstat_fcall_ro:") : NULL;
    if (p == NULL || sscanf(p, "cmdstat_fcall_ro:calls=%lld,usec=%lld", &calls, &usec) != 2)
        usec = 0;
    freeReplyObject(r);
    return (double)usec / N;
}

static void profile(redisContext *admin, long jobs)
{
    enum { NFN = 3, NSPEC = 2 };
    static const char *const fns[NFN] = {"corral_enqueue", "corral_reserve", "corral_ack"};
    const struct run_spec *specs[NSPEC] = {&runs[3], &runs[4]}; /* the two cycles */
    static struct server_time fn[NSPEC][NFN];
    for (int k = 0; k < NSPEC; k++)
        profile_one(admin, specs[k], jobs, fn[k]);

    printf("\nwhere Redis spends its time per job (INFO commandstats around each phase of "
           "32 jobs; %ld jobs, 1 connection, untimed)\n",
           jobs);
    printf("%-20s %34s %34s\n", "", "full cycle, 1 call each", "full cycle, batches of 32");
    printf("%-20s", "function");
    for (int k = 0; k < NSPEC; k++)
        printf(" %8s %8s %8s %8s", "us/call", "us/job", "cmds/job", "Lua/job");
    printf("\n");
    double total[NSPEC][3] = {{0}};
    for (int f = 0; f < NFN; f++) {
        printf("%-20s", fns[f]);
        for (int k = 0; k < NSPEC; k++) {
            const struct server_time *st = &fn[k][f];
            double per_job = (double)st->fcall_usec / (double)jobs;
            double cmds = (double)inner_usec(st) / (double)jobs;
            printf(" %8.1f %8.1f %8.1f %8.1f",
                   st->fcall_calls ? (double)st->fcall_usec / (double)st->fcall_calls : 0.0,
                   per_job, cmds, per_job - cmds);
            total[k][0] += per_job;
            total[k][1] += cmds;
        }
        printf("\n");
    }
    printf("%-20s", "one job");
    for (int k = 0; k < NSPEC; k++)
        printf(" %8s %8.1f %8.1f %8.1f", "", total[k][0], total[k][1], total[k][0] - total[k][1]);
    printf("\n(us/job: Redis time per job in the function; cmds/job: of it, in its redis.call()s; "
           "Lua/job: the rest;\n an empty function, FCALL_RO corral_version, takes %.1f us)\n",
           empty_fcall_us(admin));
    for (int k = 0; k < NSPEC; k++) {
        printf("%s, redis.call()s per job:\n", specs[k]->label);
        for (int f = 0; f < NFN; f++) {
            struct server_time *st = &fn[k][f];
            qsort(st->inner, (size_t)st->ninner, sizeof(st->inner[0]), by_usec_desc);
            printf("  %-16s", fns[f]);
            for (int i = 0; i < st->ninner; i++)
                printf(" %s %.2gx %.1fus%s", st->inner[i].name,
                       (double)st->inner[i].calls / (double)jobs,
                       (double)st->inner[i].usec / (double)jobs, i + 1 < st->ninner ? "," : "");
            printf("\n");
        }
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_queue [-n JOBS] [-r CONNS:LPUSH:RPOP]... [-p PROFILE_JOBS] "
                    "SOCKET\n"
                    "  -r  redis-benchmark requests/s for that many connections (repeatable)\n"
                    "  -p  jobs for the per-function profile; 0 skips it (default 5000)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long jobs = 50000, profile_jobs = 5000;
    struct ref refs[MAX_REFS];
    size_t nrefs = 0;
    int opt;
    while ((opt = getopt(argc, argv, "n:r:p:")) != -1) {
        char *end = NULL;
        switch (opt) {
        case 'n':
            jobs = strtol(optarg, &end, 10);
            if (*end != '\0' || jobs < 100)
                usage();
            break;
        case 'p':
            profile_jobs = strtol(optarg, &end, 10);
            if (*end != '\0' || profile_jobs < 0)
                usage();
            break;
        case 'r':
            if (nrefs == MAX_REFS ||
                sscanf(optarg, "%d:%lf:%lf", &refs[nrefs].conns, &refs[nrefs].lpush,
                       &refs[nrefs].rpop) != 3 ||
                refs[nrefs].lpush <= 0 || refs[nrefs].rpop <= 0)
                usage();
            nrefs++;
            break;
        default:
            usage();
        }
    }
    if (optind != argc - 1)
        usage();
    const char *sock = argv[optind];

    for (size_t i = 0; i < CORRAL_ENQUEUE_MANY_MAX; i++)
        bulk_payloads[i] = (struct corral_payload){payload, sizeof(payload) - 1};
    struct corral_err err;
    redisContext *admin = bench_connect(sock, &err);
    if (admin == NULL)
        die("connecting", &err);

    double load[1] = {-1};
    getloadavg(load, 1);
    printf("corral queue: %ld jobs per run, %ld cores (load average %.2f), unix socket%s\n", jobs,
           sysconf(_SC_NPROCESSORS_ONLN), load[0],
           nrefs ? "; references: redis-benchmark -P 1 against the same server in this run" : "");
    printf("%-34s %5s %9s  %-16s %9s %6s %12s %10s\n", "operation", "conns", "jobs/s", "reference",
           "ref/s", "ratio", "redis us/job", "redis busy");
    double goal = -1, worst_breaker = -1;
    double pipelined[2] = {0, 0}, bulk[2] = {0, 0}; /* enqueue rates, by conn_counts index */
    for (size_t k = 0; k < sizeof(conn_counts) / sizeof(conn_counts[0]); k++) {
        double plain[2] = {0, 0}; /* the cycle without a service: 1 call each, batched */
        int conns = conn_counts[k];
        const struct ref *ref = find_ref(refs, nrefs, conns);
        double pair = ref ? 1.0 / (1.0 / ref->lpush + 1.0 / ref->rpop) : 0;
        if (ref != NULL) {
            print_row("redis-benchmark LPUSH", conns, ref->lpush, NULL, 0, NULL);
            print_row("redis-benchmark RPOP", conns, ref->rpop, NULL, 0, NULL);
            print_row("LPUSH+RPOP pair, 1/(1/l+1/r)", conns, pair, NULL, 0, NULL);
        }
        for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
            struct measurement m;
            run_workers(admin, sock, &runs[i], conns, jobs, &m);
            int b = runs[i].batch > 1;
            if (runs[i].service) {
                double ratio = plain[b] > 0 ? m.rate / plain[b] : 0;
                print_row(runs[i].label, conns, m.rate, "without service", plain[b], &m);
                if (worst_breaker < 0 || ratio < worst_breaker)
                    worst_breaker = ratio;
                fflush(stdout);
                continue;
            }
            if (runs[i].cycle == 1)
                plain[b] = m.rate;
            double refrate = runs[i].cycle ? pair : ref ? ref->lpush : 0;
            print_row(runs[i].label, conns, m.rate, runs[i].cycle ? "LPUSH+RPOP pair" : "LPUSH",
                      refrate, &m);
            if (&runs[i] == goal_run && conns == 4 && pair > 0)
                goal = m.rate / pair;
            if (&runs[i] == pipelined_run)
                pipelined[k] = m.rate;
            if (&runs[i] == bulk_run)
                bulk[k] = m.rate;
            fflush(stdout);
        }
    }
    if (goal >= 0)
        printf("\nfull cycle (4 connections, batched) / LPUSH+RPOP pair rate = %.2f (goal >= %.2f)"
               "\n",
               goal, GOAL_RATIO);
    else
        printf("\nfull cycle (4 connections, batched) / LPUSH+RPOP pair rate = unknown: no "
               "reference for 4 connections given (-r 4:LPUSH:RPOP)\n");
    printf("bulk enqueue (corral_enqueue_many, batches of %d) / pipelined enqueue x100 = %.2f with "
           "1 connection, %.2f with 4\n",
           CORRAL_ENQUEUE_MANY_MAX, pipelined[0] > 0 ? bulk[0] / pipelined[0] : 0,
           pipelined[1] > 0 ? bulk[1] / pipelined[1] : 0);
    printf("(every reference is unpipelined, -P 1: the pipelined and batched rows show what "
           "batching buys over one round trip per command)\n");
    printf("full cycle with a service / without, worst of the four = %.2f (goal >= %.2f)\n",
           worst_breaker, GOAL_BREAKER);
    fflush(stdout);

    if (profile_jobs > 0)
        profile(admin, profile_jobs);
    command(admin, "FLUSHALL");
    redisFree(admin);
    return 0;
}

/* The C side of the corral Function library: builds each FCALL, parses each
 * reply, and runs both over blocking connections. Key names other than the
 * queue key live in the Lua modules (queue/lua/); the few read directly here (fin lists, the
 * queue registry) are built by fin_key() and registry_key() only. */
#include "corral/queue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "corral/jsontext.h"
#include "corral/redis.h"
#include "corral/tenant.h"
#include "corral/tokens.h"
#include "corral/util.h"

void corral_cmd_add(struct corral_cmd *cmd, const char *arg, size_t len)
{
    if (cmd->argc == cmd->cap) {
        cmd->cap = cmd->cap ? cmd->cap * 2 : 16;
        cmd->argv = corral_xrealloc(cmd->argv, sizeof(*cmd->argv) * (size_t)cmd->cap);
        cmd->argvlen = corral_xrealloc(cmd->argvlen, sizeof(*cmd->argvlen) * (size_t)cmd->cap);
    }
    cmd->argv[cmd->argc] = corral_xstrndup(arg, len);
    cmd->argvlen[cmd->argc] = len;
    cmd->argc++;
}

void corral_cmd_addstr(struct corral_cmd *cmd, const char *arg)
{
    corral_cmd_add(cmd, arg, strlen(arg));
}

void corral_cmd_addint(struct corral_cmd *cmd, long long v)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%lld", v);
    corral_cmd_add(cmd, buf, (size_t)n);
}

void corral_cmd_init(struct corral_cmd *cmd, const char *function, const char *prefix,
                     const char *queue)
{
    memset(cmd, 0, sizeof(*cmd));
    corral_cmd_addstr(cmd, "FCALL");
    corral_cmd_addstr(cmd, function);
    corral_cmd_addstr(cmd, "1");
    char *key = corral_queue_key(prefix, queue);
    corral_cmd_addstr(cmd, key);
    free(key);
}

void corral_cmd_free(struct corral_cmd *cmd)
{
    if (cmd == NULL)
        return;
    for (int i = 0; i < cmd->argc; i++)
        free(cmd->argv[i]);
    free(cmd->argv);
    free(cmd->argvlen);
    memset(cmd, 0, sizeof(*cmd));
}

redisReply *corral_cmd_run(redisContext *c, const struct corral_cmd *cmd)
{
    return redisCommandArgv(c, cmd->argc, (const char **)cmd->argv, cmd->argvlen);
}

char *corral_queue_key(const char *prefix, const char *queue)
{
    return corral_xasprintf("%s:{%s}", prefix, queue);
}

static char *fin_key(const char *prefix, const char *queue, const char *id)
{
    return corral_xasprintf("%s:{%s}:fin:%s", prefix, queue, id);
}

static char *registry_key(const char *prefix)
{
    return corral_xasprintf("%s:queues", prefix);
}

int corral_queue_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n < 1 || n > 64)
        return 0;
    return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-") == n;
}

void corral_job_clear(struct corral_job *j)
{
    free(j->id);
    free(j->run);
    free(j->priority);
    free(j->service);
    free(j->payload);
    memset(j, 0, sizeof(*j));
}

void corral_jobs_free(struct corral_job *jobs, size_t n)
{
    if (jobs == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        corral_job_clear(&jobs[i]);
    free(jobs);
}

static void add_json(struct corral_cmd *cmd, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    if (s == NULL)
        abort(); /* only on OOM: every value put in was valid */
    corral_cmd_addstr(cmd, s);
    free(s);
    json_decref(obj);
}

void corral_cmd_declare(struct corral_cmd *cmd, const char *prefix,
                        const struct corral_queue_conf *q)
{
    corral_cmd_init(cmd, "corral_declare", prefix, q->name);
    json_t *prios = json_array();
    json_t *weights = json_array();
    for (size_t i = 0; i < q->priorities.n; i++) {
        json_array_append_new(prios, json_string(q->priorities.items[i]));
        json_array_append_new(weights, json_integer(q->weights[i] > 0 ? q->weights[i] : 1));
    }
    json_t *o = json_pack(
        "{s:o s:s s:o s:i s:I s:I s:I s:I s:I s:I s:I s:s}", "priorities", prios, "order",
        q->order == CORRAL_ORDER_WEIGHTED ? "weighted" : "strict", "weights", weights,
        "max_attempts", q->max_attempts, "backoff_base_ms", (json_int_t)q->backoff_base_ms,
        "backoff_cap_ms", (json_int_t)q->backoff_cap_ms, "timeout_ms", (json_int_t)q->timeout_ms,
        "lease_ms", (json_int_t)q->lease_ms, "result_ttl_ms", (json_int_t)q->result_ttl_ms,
        "max_payload", (json_int_t)q->max_payload_bytes, "max_result",
        (json_int_t)q->max_result_bytes, "service", "");
    /* A fallback list goes as the names joined by commas (docs/protocol.md). */
    if (q->services.n > 1) {
        json_t *list = json_array();
        for (size_t i = 0; i < q->services.n; i++)
            json_array_append_new(list, json_string(q->services.items[i]));
        json_object_set_new(o, "service", list);
    } else if (q->service != NULL) {
        json_object_set_new(o, "service", json_string(q->service));
    }
    /* tenants (docs/protocol.md, "Tenants") */
    json_t *tw = json_object();
    for (size_t i = 0; i < q->tenant_weights.n; i++) {
        int w;
        const char *item = q->tenant_weights.items[i];
        size_t n = corral_tenant_weight_split(item, &w);
        char *name = corral_xstrndup(item, n);
        json_object_set_new(tw, name, json_integer(w));
        free(name);
    }
    json_object_set_new(o, "tenant_weights", tw);
    json_object_set_new(o, "tenant_max_inflight", json_integer(q->tenant_max_inflight));
    json_object_set_new(o, "tenant_rate", json_integer((json_int_t)q->tenant_rate_count));
    json_object_set_new(
        o, "tenant_rate_ms",
        json_integer(q->tenant_rate_count > 0 ? (json_int_t)q->tenant_rate_period_ms : 1000));
    json_object_set_new(o, "tenant_tokens", json_integer((json_int_t)q->tenant_tokens_count));
    json_object_set_new(
        o, "tenant_tokens_ms",
        json_integer(q->tenant_tokens_count > 0 ? (json_int_t)q->tenant_tokens_period_ms : 60000));
    if (q->service_gate) /* a Redis Cluster: the service through its gate (queue/lua/gate.lua) */
        json_object_set_new(o, "service_gate", json_true());
    add_json(cmd, o);
}

int corral_enqueue_opts_check(const char *queue, const struct corral_enqueue_opts *o,
                              struct corral_err *err)
{
    if (o == NULL)
        return 0;
    const char *names[] = {"priority", "service", "unique_key", "tenant"};
    const char *values[] = {o->priority, o->service, o->unique_key, o->tenant};
    for (size_t i = 0; i < 4; i++)
        if (values[i] != NULL && !corral_utf8_valid(values[i], strlen(values[i])))
            return corral_err_set(err, CORRAL_ERR_INVALID, "queue \"%s\": %s is not valid UTF-8",
                                  queue, names[i]);
    return 0;
}

/* The options object of corral_enqueue and corral_enqueue_many, or NULL
 * when o asks for nothing but the queue's defaults. Caller decrefs. */
static json_t *enqueue_opts_json(const struct corral_enqueue_opts *o)
{
    if (o == NULL)
        return NULL;
    json_t *opts = json_object();
    if (o->priority != NULL) {
        char *end;
        errno = 0;
        long level = strtol(o->priority, &end, 10);
        /* Out of range, it goes as typed: the refusal then quotes it. */
        if (*o->priority != '\0' && *end == '\0' && errno == 0)
            json_object_set_new(opts, "priority", json_integer(level));
        else
            json_object_set_new(opts, "priority", json_string(o->priority));
    }
    if (o->delay_ms > 0)
        json_object_set_new(opts, "delay_ms", json_integer(o->delay_ms));
    if (o->max_attempts != 0)
        json_object_set_new(opts, "max_attempts", json_integer(o->max_attempts));
    if (o->timeout_ms > 0)
        json_object_set_new(opts, "timeout_ms", json_integer(o->timeout_ms));
    if (o->service != NULL)
        json_object_set_new(opts, "service", json_string(o->service));
    if (o->unique_key != NULL)
        json_object_set_new(opts, "unique_key", json_string(o->unique_key));
    if (o->tenant != NULL)
        json_object_set_new(opts, "tenant", json_string(o->tenant));
    if (o->deadline_ms > 0)
        json_object_set_new(opts, "deadline_ms", json_integer(o->deadline_ms));
    if (json_object_size(opts) == 0) {
        json_decref(opts);
        return NULL;
    }
    return opts;
}

void corral_cmd_enqueue(struct corral_cmd *cmd, const char *prefix, const char *queue,
                        const char *payload, size_t len, const struct corral_enqueue_opts *o)
{
    corral_cmd_init(cmd, "corral_enqueue", prefix, queue);
    corral_cmd_add(cmd, payload, len);
    json_t *opts = enqueue_opts_json(o);
    if (opts != NULL)
        add_json(cmd, opts);
}

void corral_cmd_enqueue_many(struct corral_cmd *cmd, const char *prefix, const char *queue,
                             const struct corral_payload *p, size_t n,
                             const struct corral_enqueue_opts *o)
{
    corral_cmd_init(cmd, "corral_enqueue_many", prefix, queue);
    json_t *opts = enqueue_opts_json(o);
    if (opts != NULL)
        add_json(cmd, opts);
    else
        corral_cmd_add(cmd, "", 0); /* the options come first, even when none */
    for (size_t i = 0; i < n; i++)
        corral_cmd_add(cmd, p[i].data, p[i].len);
}

void corral_cmd_reserve(struct corral_cmd *cmd, const char *prefix, const char *queue,
                        const char *worker, int n, int max_inflight)
{
    corral_cmd_init(cmd, "corral_reserve", prefix, queue);
    corral_cmd_addstr(cmd, worker);
    corral_cmd_addint(cmd, n);
    corral_cmd_addint(cmd, max_inflight > 0 ? max_inflight : 0);
}

void corral_cmd_reclaim_keep(struct corral_cmd *cmd, const char *prefix, const char *queue,
                             const char *worker)
{
    corral_cmd_init(cmd, "corral_reclaim_worker", prefix, queue);
    corral_cmd_addstr(cmd, worker);
    corral_cmd_addstr(cmd, "keep");
}

void corral_cmd_ack(struct corral_cmd *cmd, const char *prefix, const char *queue,
                    const char *worker, const struct corral_outcome *o, size_t n)
{
    corral_cmd_init(cmd, "corral_ack", prefix, queue);
    corral_cmd_addstr(cmd, worker);
    for (size_t i = 0; i < n; i++) {
        corral_cmd_addstr(cmd, o[i].id);
        corral_cmd_addstr(cmd, o[i].run);
        corral_cmd_add(cmd, o[i].data ? o[i].data : "", o[i].data ? o[i].len : 0);
    }
}

void corral_cmd_ack_reserve(struct corral_cmd *cmd, const char *prefix, const char *queue,
                            const char *worker, const struct corral_outcome *o, size_t n, int want,
                            int max_inflight)
{
    corral_cmd_init(cmd, "corral_ack_reserve", prefix, queue);
    corral_cmd_addstr(cmd, worker);
    corral_cmd_addint(cmd, want);
    corral_cmd_addint(cmd, max_inflight > 0 ? max_inflight : 0);
    for (size_t i = 0; i < n; i++) {
        corral_cmd_addstr(cmd, o[i].id);
        corral_cmd_addstr(cmd, o[i].run);
        corral_cmd_add(cmd, o[i].data ? o[i].data : "", o[i].data ? o[i].len : 0);
    }
}

void corral_cmd_fail(struct corral_cmd *cmd, const char *prefix, const char *queue,
                     const char *worker, const struct corral_outcome *o, size_t n)
{
    corral_cmd_init(cmd, "corral_fail", prefix, queue);
    corral_cmd_addstr(cmd, worker);
    for (size_t i = 0; i < n; i++) {
        corral_cmd_addstr(cmd, o[i].id);
        corral_cmd_addstr(cmd, o[i].run);
        corral_cmd_addstr(cmd, o[i].permanent ? "permanent" : "retry");
        corral_cmd_add(cmd, o[i].data ? o[i].data : "", o[i].data ? o[i].len : 0);
    }
}

void corral_cmd_defer(struct corral_cmd *cmd, const char *prefix, const char *queue,
                      const char *worker, const struct corral_outcome *o, size_t n)
{
    corral_cmd_init(cmd, "corral_defer", prefix, queue);
    corral_cmd_addstr(cmd, worker);
    for (size_t i = 0; i < n; i++) {
        corral_cmd_addstr(cmd, o[i].id);
        corral_cmd_addstr(cmd, o[i].run);
        corral_cmd_addint(cmd, o[i].delay_ms);
        corral_cmd_addstr(cmd, o[i].defer_kind == CORRAL_DEFER_THROTTLE ? "throttle"
                               : o[i].defer_kind == CORRAL_DEFER_QUOTA  ? "quota"
                                                                        : "");
        corral_cmd_add(cmd, o[i].data ? o[i].data : "", o[i].data ? o[i].len : 0);
    }
}

void corral_cmd_renew(struct corral_cmd *cmd, const char *prefix, const char *queue,
                      const char *worker, const struct corral_outcome *o, size_t n)
{
    corral_cmd_init(cmd, "corral_renew", prefix, queue);
    corral_cmd_addstr(cmd, worker);
    for (size_t i = 0; i < n; i++) {
        corral_cmd_addstr(cmd, o[i].id);
        corral_cmd_addstr(cmd, o[i].run);
    }
}

/* Replies. A NULL reply here is a connection error whose detail is in the
 * context: the blocking wrappers check it before calling these. */
static int reply_error(const redisReply *r, const char *what, struct corral_err *err)
{
    if (r == NULL)
        return corral_err_set(err, CORRAL_ERR_REDIS, "%s: no reply", what);
    return corral_redis_check(NULL, r, what, err);
}

static int shape(const char *what, struct corral_err *err)
{
    return corral_err_set(err, CORRAL_ERR_REDIS,
                          "%s: unexpected reply shape (is the corral function library current?)",
                          what);
}

static char *dup_str(const redisReply *r)
{
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
        return corral_xstrndup(r->str, r->len);
    if (r->type == REDIS_REPLY_INTEGER)
        return corral_xasprintf("%lld", r->integer);
    return corral_xstrdup("");
}

static long long as_int(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;
}

int corral_reply_enqueue(const redisReply *r, char **id_out, struct corral_err *err)
{
    if (reply_error(r, "enqueue", err) < 0)
        return -1;
    if (r->type != REDIS_REPLY_STRING)
        return shape("enqueue", err);
    *id_out = corral_xstrndup(r->str, r->len);
    return 0;
}

int corral_reply_enqueue_many(const redisReply *r, char **ids_out, size_t n, struct corral_err *err)
{
    if (reply_error(r, "enqueue_many", err) < 0)
        return -1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n)
        return shape("enqueue_many", err);
    for (size_t i = 0; i < n; i++)
        if (r->element[i]->type != REDIS_REPLY_STRING)
            return shape("enqueue_many", err);
    for (size_t i = 0; i < n; i++)
        ids_out[i] = corral_xstrndup(r->element[i]->str, r->element[i]->len);
    return 0;
}

/* The gate element: "gate <wait_ms> <why>". */
static int parse_gate(const redisReply *e, struct corral_gate *gate)
{
    if (e->type != REDIS_REPLY_STRING || e->len < 5 || memcmp(e->str, "gate ", 5) != 0)
        return -1;
    char *end = NULL;
    long long wait = strtoll(e->str + 5, &end, 10);
    if (end == e->str + 5 || wait <= 0)
        return -1;
    if (gate != NULL) {
        gate->wait_ms = wait;
        size_t off = (size_t)(end - e->str) + (*end == ' ');
        size_t len = e->len - off;
        if (len >= sizeof(gate->why))
            len = sizeof(gate->why) - 1;
        memcpy(gate->why, e->str + off, len);
        gate->why[len] = '\0';
    }
    return 0;
}

int corral_reply_reserve(const redisReply *r, struct corral_job **jobs_out, size_t *n_out,
                         struct corral_gate *gate, struct corral_err *err)
{
    *jobs_out = NULL;
    *n_out = 0;
    if (gate != NULL) {
        gate->wait_ms = 0;
        gate->why[0] = '\0';
    }
    if (reply_error(r, "reserve", err) < 0)
        return -1;
    if (r->type != REDIS_REPLY_ARRAY)
        return shape("reserve", err);
    size_t n = r->elements;
    if (n > 0 && r->element[n - 1]->type == REDIS_REPLY_STRING) {
        if (parse_gate(r->element[n - 1], gate) < 0)
            return shape("reserve", err);
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *j = r->element[i];
        if (j->type != REDIS_REPLY_ARRAY || j->elements < 8)
            return shape("reserve", err);
    }
    if (n == 0)
        return 0;
    struct corral_job *jobs = corral_xcalloc(n, sizeof(*jobs));
    for (size_t i = 0; i < n; i++) {
        redisReply **e = r->element[i]->element;
        jobs[i].id = dup_str(e[0]);
        jobs[i].run = dup_str(e[1]);
        jobs[i].attempts = (int)as_int(e[2]);
        jobs[i].max_attempts = (int)as_int(e[3]);
        jobs[i].timeout_ms = as_int(e[4]);
        jobs[i].priority = dup_str(e[5]);
        jobs[i].service = dup_str(e[6]);
        jobs[i].payload = dup_str(e[7]);
        /* The length of what dup_str made: a bulk string may hold NULs, a
         * status or integer reply is text too (found by fuzzing). */
        jobs[i].payload_len = e[7]->type == REDIS_REPLY_STRING || e[7]->type == REDIS_REPLY_STATUS
                                  ? e[7]->len
                                  : strlen(jobs[i].payload);
    }
    *jobs_out = jobs;
    *n_out = n;
    return 0;
}

static const char *const run_status_words[] = {
    [CORRAL_STATUS_DONE] = "done",           [CORRAL_STATUS_DEAD] = "dead",
    [CORRAL_STATUS_SCHEDULED] = "scheduled", [CORRAL_STATUS_QUEUED] = "queued",
    [CORRAL_STATUS_ACTIVE] = "active",       [CORRAL_STATUS_STALE] = "STALE",
    [CORRAL_STATUS_RECLAIMED] = "RECLAIMED",
};
#define N_RUN_STATUS (sizeof(run_status_words) / sizeof(run_status_words[0]))

const char *corral_run_status_name(enum corral_run_status st)
{
    return (size_t)st < N_RUN_STATUS ? run_status_words[st] : "?";
}

int corral_reply_runs(const redisReply *r, enum corral_run_status *st, size_t n,
                      struct corral_err *err)
{
    if (reply_error(r, "outcome", err) < 0)
        return -1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n)
        return shape("outcome", err);
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = r->element[i];
        size_t k = 0;
        while (k < N_RUN_STATUS &&
               !((e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) &&
                 e->len == strlen(run_status_words[k]) &&
                 memcmp(e->str, run_status_words[k], e->len) == 0))
            k++;
        if (k == N_RUN_STATUS)
            return shape("outcome", err);
        st[i] = (enum corral_run_status)k;
    }
    return 0;
}

int corral_reply_ack_reserve(const redisReply *r, enum corral_run_status *st, size_t n,
                             struct corral_job **jobs_out, size_t *n_out, struct corral_gate *gate,
                             struct corral_err *err)
{
    *jobs_out = NULL;
    *n_out = 0;
    if (reply_error(r, "ack_reserve", err) < 0)
        return -1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        return shape("ack_reserve", err);
    if (corral_reply_runs(r->element[0], st, n, err) < 0)
        return -1;
    return corral_reply_reserve(r->element[1], jobs_out, n_out, gate, err);
}

/* Runs cmd, checks for connection and error replies, frees cmd. Returns the
 * reply (caller frees) or NULL with err set. */
static redisReply *run(redisContext *c, struct corral_cmd *cmd, const char *what,
                       struct corral_err *err)
{
    redisReply *r = corral_cmd_run(c, cmd);
    corral_cmd_free(cmd);
    if (corral_redis_check(c, r, what, err) < 0) {
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

int corral_queue_declare(redisContext *c, const char *prefix, const struct corral_queue_conf *q,
                         struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_declare(&cmd, prefix, q);
    redisReply *r = run(c, &cmd, "declare", err);
    freeReplyObject(r);
    return r ? 0 : -1;
}

/* An enqueue Redis refused for memory (OOM: maxmemory reached under
 * noeviction) is named as such, with what to do: Redis's own sentence
 * speaks of "commands", not of the job (docs/bad-input.md). Nothing was
 * written: the Function library's first write is the one refused. */
static void enqueue_refused_full(struct corral_err *err, const char *queue, size_t n)
{
    if (err->word != CORRAL_WORD_OOM)
        return;
    enum corral_err_word word = err->word;
    corral_err_set(err, CORRAL_ERR_REDIS,
                   "queue \"%s\": redis is full (used memory has reached maxmemory): %s "
                   "not created; free memory or raise maxmemory, then enqueue again (OOM)",
                   queue, n == 1 ? "job" : "jobs");
    err->word = word;
}

int corral_queue_enqueue(redisContext *c, const char *prefix, const char *queue,
                         const char *payload, size_t len, const struct corral_enqueue_opts *o,
                         char **id_out, struct corral_err *err)
{
    /* Found writing the fuzz target: an option that is not UTF-8 was left
     * out of the FCALL without a word (a --unique job went in twice). */
    if (corral_enqueue_opts_check(queue, o, err) < 0)
        return -1;
    /* Redis checks the grammar; the characters are checked here, where it
     * is cheap (see queue/lua/prelude.lua). */
    char why[96];
    if (corral_json_text_check(payload, len, why, sizeof(why)) < 0)
        return corral_err_set(err, CORRAL_ERR_INVALID,
                              "queue \"%s\": payload is not valid JSON (%s)", queue, why);
    struct corral_cmd cmd;
    corral_cmd_enqueue(&cmd, prefix, queue, payload, len, o);
    redisReply *r = run(c, &cmd, "enqueue", err);
    int rc = r ? corral_reply_enqueue(r, id_out, err) : -1;
    freeReplyObject(r);
    if (rc < 0)
        enqueue_refused_full(err, queue, 1);
    return rc;
}

int corral_queue_enqueue_many(redisContext *c, const char *prefix, const char *queue,
                              const struct corral_payload *p, size_t n,
                              const struct corral_enqueue_opts *o, char **ids_out,
                              struct corral_err *err)
{
    if (n < 1 || n > CORRAL_ENQUEUE_MANY_MAX)
        return corral_err_set(err, CORRAL_ERR_INVALID,
                              "queue \"%s\": corral_enqueue_many takes 1 to %d payloads, got %zu",
                              queue, CORRAL_ENQUEUE_MANY_MAX, n);
    if (corral_enqueue_opts_check(queue, o, err) < 0)
        return -1;
    /* As corral_queue_enqueue: the characters here, the grammar in Redis. */
    char why[96];
    for (size_t i = 0; i < n; i++)
        if (corral_json_text_check(p[i].data, p[i].len, why, sizeof(why)) < 0)
            return corral_err_set(err, CORRAL_ERR_INVALID,
                                  "queue \"%s\": payload %zu of %zu is not valid JSON (%s)", queue,
                                  i + 1, n, why);
    struct corral_cmd cmd;
    corral_cmd_enqueue_many(&cmd, prefix, queue, p, n, o);
    redisReply *r = run(c, &cmd, "enqueue_many", err);
    int rc = r ? corral_reply_enqueue_many(r, ids_out, n, err) : -1;
    freeReplyObject(r);
    if (rc < 0)
        enqueue_refused_full(err, queue, n);
    return rc;
}

int corral_queue_confirm(redisContext *c, int n, int64_t timeout_ms, struct corral_err *err)
{
    if (n <= 0)
        return 0;
    redisReply *r = redisCommand(c, "WAIT %d %lld", n, (long long)timeout_ms);
    if (corral_redis_check(c, r, "WAIT", err) < 0) {
        freeReplyObject(r);
        return -1;
    }
    long long got = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    if (got < 0)
        return corral_err_set(err, CORRAL_ERR_REDIS, "redis WAIT: an answer that is not a count");
    if (got >= n)
        return 0;
    corral_err_set(err, CORRAL_ERR_TIMEOUT,
                   "not confirmed by %d replica%s within %lld ms (%lld did): the job exists on the "
                   "master but may be lost if it fails before replicating it",
                   n, n == 1 ? "" : "s", (long long)timeout_ms, got);
    return 1;
}

int corral_queue_reserve(redisContext *c, const char *prefix, const char *queue, const char *worker,
                         int n, struct corral_job **jobs_out, size_t *n_out,
                         struct corral_gate *gate, struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_reserve(&cmd, prefix, queue, worker, n, 0);
    *jobs_out = NULL;
    *n_out = 0;
    redisReply *r = run(c, &cmd, "reserve", err);
    int rc = r ? corral_reply_reserve(r, jobs_out, n_out, gate, err) : -1;
    freeReplyObject(r);
    return rc;
}

int corral_queue_ack(redisContext *c, const char *prefix, const char *queue, const char *worker,
                     const struct corral_outcome *o, size_t n, enum corral_run_status *st,
                     struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_ack(&cmd, prefix, queue, worker, o, n);
    redisReply *r = run(c, &cmd, "ack", err);
    int rc = r ? corral_reply_runs(r, st, n, err) : -1;
    freeReplyObject(r);
    return rc;
}

int corral_queue_ack_reserve(redisContext *c, const char *prefix, const char *queue,
                             const char *worker, const struct corral_outcome *o, size_t n,
                             enum corral_run_status *st, int want, int max_inflight,
                             struct corral_job **jobs_out, size_t *n_out, struct corral_gate *gate,
                             struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_ack_reserve(&cmd, prefix, queue, worker, o, n, want, max_inflight);
    *jobs_out = NULL;
    *n_out = 0;
    redisReply *r = run(c, &cmd, "ack_reserve", err);
    int rc = r ? corral_reply_ack_reserve(r, st, n, jobs_out, n_out, gate, err) : -1;
    freeReplyObject(r);
    return rc;
}

int corral_queue_fail(redisContext *c, const char *prefix, const char *queue, const char *worker,
                      const struct corral_outcome *o, size_t n, enum corral_run_status *st,
                      struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_fail(&cmd, prefix, queue, worker, o, n);
    redisReply *r = run(c, &cmd, "fail", err);
    int rc = r ? corral_reply_runs(r, st, n, err) : -1;
    freeReplyObject(r);
    return rc;
}

int corral_queue_defer(redisContext *c, const char *prefix, const char *queue, const char *worker,
                       const struct corral_outcome *o, size_t n, enum corral_run_status *st,
                       struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_defer(&cmd, prefix, queue, worker, o, n);
    redisReply *r = run(c, &cmd, "defer", err);
    int rc = r ? corral_reply_runs(r, st, n, err) : -1;
    freeReplyObject(r);
    return rc;
}

int corral_queue_renew(redisContext *c, const char *prefix, const char *queue, const char *worker,
                       const struct corral_outcome *o, size_t n, enum corral_run_status *st,
                       struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_renew(&cmd, prefix, queue, worker, o, n);
    redisReply *r = run(c, &cmd, "renew", err);
    int rc = r ? corral_reply_runs(r, st, n, err) : -1;
    freeReplyObject(r);
    return rc;
}

static long long run_count(redisContext *c, struct corral_cmd *cmd, const char *what,
                           struct corral_err *err)
{
    redisReply *r = run(c, cmd, what, err);
    if (r == NULL)
        return -1;
    long long n = -1;
    if (r->type == REDIS_REPLY_INTEGER)
        n = r->integer;
    else
        shape(what, err);
    freeReplyObject(r);
    return n;
}

long long corral_queue_promote(redisContext *c, const char *prefix, const char *queue,
                               struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_init(&cmd, "corral_promote", prefix, queue);
    return run_count(c, &cmd, "promote", err);
}

long long corral_queue_reclaim(redisContext *c, const char *prefix, const char *queue,
                               struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_init(&cmd, "corral_reclaim", prefix, queue);
    return run_count(c, &cmd, "reclaim", err);
}

long long corral_queue_reclaim_worker(redisContext *c, const char *prefix, const char *queue,
                                      const char *worker, struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_init(&cmd, "corral_reclaim_worker", prefix, queue);
    corral_cmd_addstr(&cmd, worker);
    return run_count(c, &cmd, "reclaim_worker", err);
}

long long corral_queue_dead_retry(redisContext *c, const char *prefix, const char *queue,
                                  const char *const *ids, size_t n, int all, struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_init(&cmd, "corral_dead_retry", prefix, queue);
    if (all)
        corral_cmd_addstr(&cmd, "--all");
    for (size_t i = 0; i < n; i++)
        corral_cmd_addstr(&cmd, ids[i]);
    return run_count(c, &cmd, "dead retry", err);
}

long long corral_queue_dead_purge(redisContext *c, const char *prefix, const char *queue,
                                  struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_init(&cmd, "corral_dead_purge", prefix, queue);
    return run_count(c, &cmd, "dead purge", err);
}

int corral_queue_pause(redisContext *c, const char *prefix, const char *queue, int pause,
                       struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_init(&cmd, pause ? "corral_pause" : "corral_resume", prefix, queue);
    redisReply *r = run(c, &cmd, pause ? "pause" : "resume", err);
    freeReplyObject(r);
    return r ? 0 : -1;
}

int corral_queue_cancel(redisContext *c, const char *prefix, const char *queue, const char *id,
                        struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_init(&cmd, "corral_cancel", prefix, queue);
    corral_cmd_addstr(&cmd, id);
    redisReply *r = run(c, &cmd, "cancel", err);
    freeReplyObject(r);
    return r ? 0 : -1;
}

/* corral_cancel_tenant's batches (docs/protocol.md, "Cancel"): at most
 * CANCEL_BATCH jobs looked at per call, so that no call holds Redis long. */
#define CANCEL_BATCH 1000

long long corral_queue_cancel_tenant(redisContext *c, const char *prefix, const char *queue,
                                     const char *tenant, struct corral_err *err)
{
    long long total = 0;
    char cursor[64] = "0";
    do {
        struct corral_cmd cmd;
        corral_cmd_init(&cmd, "corral_cancel_tenant", prefix, queue);
        corral_cmd_addstr(&cmd, tenant);
        corral_cmd_addstr(&cmd, cursor);
        corral_cmd_addint(&cmd, CANCEL_BATCH);
        redisReply *r = run(c, &cmd, "cancel tenant", err);
        if (r == NULL)
            return -1;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_INTEGER ||
            r->element[1]->type != REDIS_REPLY_STRING || r->element[1]->len >= sizeof(cursor)) {
            freeReplyObject(r);
            shape("cancel tenant", err);
            return -1;
        }
        total += r->element[0]->integer;
        memcpy(cursor, r->element[1]->str, r->element[1]->len + 1);
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return total;
}

static int json_call(redisContext *c, struct corral_cmd *cmd, const char *what, char **json_out,
                     struct corral_err *err)
{
    *json_out = NULL;
    redisReply *r = run(c, cmd, what, err);
    if (r == NULL)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_STRING)
        *json_out = corral_xstrndup(r->str, r->len);
    else if (r->type == REDIS_REPLY_NIL)
        rc = 1;
    else
        rc = shape(what, err);
    freeReplyObject(r);
    return rc;
}

int corral_queue_job(redisContext *c, const char *prefix, const char *queue, const char *id,
                     char **json_out, struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_init(&cmd, "corral_job", prefix, queue);
    free(cmd.argv[0]);
    cmd.argv[0] = corral_xstrdup("FCALL_RO");
    cmd.argvlen[0] = 8;
    corral_cmd_addstr(&cmd, id);
    int rc = json_call(c, &cmd, "job", json_out, err);
    if (rc == 1)
        return corral_err_set(err, CORRAL_ERR_NOTFOUND,
                              "queue \"%s\": no job %s (never enqueued, or its record expired "
                              "after result_ttl)",
                              queue, id);
    return rc;
}

void corral_cmd_stats(struct corral_cmd *cmd, const char *prefix, const char *queue, int window_s,
                      int lean)
{
    corral_cmd_init(cmd, "corral_stats", prefix, queue);
    free(cmd->argv[0]);
    cmd->argv[0] = corral_xstrdup("FCALL_RO");
    cmd->argvlen[0] = 8;
    corral_cmd_addint(cmd, window_s > 0 ? window_s : 60);
    if (lean)
        corral_cmd_addstr(cmd, "lean");
}

int corral_reply_json(const redisReply *r, const char *what, char **json_out,
                      struct corral_err *err)
{
    *json_out = NULL;
    if (reply_error(r, what, err) < 0)
        return -1;
    if (r->type != REDIS_REPLY_STRING)
        return shape(what, err);
    *json_out = corral_xstrndup(r->str, r->len);
    return 0;
}

int corral_queue_stats(redisContext *c, const char *prefix, const char *queue, int window_s,
                       char **json_out, struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_stats(&cmd, prefix, queue, window_s, 0);
    int rc = json_call(c, &cmd, "stats", json_out, err);
    return rc == 1 ? shape("stats", err) : rc;
}

static int smembers(redisContext *c, const char *key, struct corral_strlist *out,
                    struct corral_err *err)
{
    out->items = NULL;
    out->n = 0;
    redisReply *r = redisCommand(c, "SMEMBERS %s", key);
    if (corral_redis_check(c, r, "SMEMBERS", err) < 0) {
        freeReplyObject(r);
        return -1;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        out->items = corral_xcalloc(r->elements, sizeof(char *));
        for (size_t i = 0; i < r->elements; i++)
            out->items[out->n++] = dup_str(r->element[i]);
    }
    freeReplyObject(r);
    return 0;
}

int corral_queue_list(redisContext *c, const char *prefix, struct corral_strlist *out,
                      struct corral_err *err)
{
    char *key = registry_key(prefix);
    int rc = smembers(c, key, out, err);
    free(key);
    return rc;
}

int corral_queue_wait(redisContext *c, const char *prefix, const char *queue, const char *id,
                      int64_t timeout_ms, char **state_out, struct corral_err *err)
{
    *state_out = NULL;
    char *json = NULL;
    if (corral_queue_job(c, prefix, queue, id, &json, err) < 0)
        return -1;
    free(json);
    char *fk = fin_key(prefix, queue, id);
    char tbuf[32];
    snprintf(tbuf, sizeof(tbuf), "%.3f", (double)timeout_ms / 1000.0);
    /* The blocking command may outlast the connection's read timeout. */
    struct timeval none = {0, 0};
    struct timeval tv = {.tv_sec = timeout_ms / 1000 + 5, .tv_usec = 0};
    redisSetTimeout(c, timeout_ms > 0 ? tv : none);
    /* BLMOVE from a list to itself returns the final state without taking it,
     * so any number of waiters see it. */
    redisReply *r = redisCommand(c, "BLMOVE %s %s RIGHT RIGHT %s", fk, fk, tbuf);
    free(fk);
    if (corral_redis_check(c, r, "BLMOVE", err) < 0) {
        freeReplyObject(r);
        return -1;
    }
    int rc = 0;
    if (r->type == REDIS_REPLY_STRING)
        *state_out = corral_xstrndup(r->str, r->len);
    else
        rc = corral_err_set(err, CORRAL_ERR_TIMEOUT,
                            "queue \"%s\": job %s did not end within %lld ms", queue, id,
                            (long long)timeout_ms);
    freeReplyObject(r);
    return rc;
}

int corral_queue_lease_holders(redisContext *c, const char *prefix, const char *queue,
                               struct corral_strlist *out, struct corral_err *err)
{
    out->items = NULL;
    out->n = 0;
    char *active = corral_xasprintf("%s:{%s}:active", prefix, queue);
    redisReply *r = redisCommand(c, "ZRANGE %s 0 -1", active);
    free(active);
    if (corral_redis_check(c, r, "ZRANGE", err) < 0) {
        freeReplyObject(r);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements && rc == 0; i++) {
        char *jk = corral_xasprintf("%s:{%s}:job:%s", prefix, queue, r->element[i]->str);
        redisReply *w = redisCommand(c, "HGET %s worker", jk);
        free(jk);
        if (corral_redis_check(c, w, "HGET", err) < 0) {
            rc = -1;
        } else if (w->type == REDIS_REPLY_STRING) {
            int seen = 0;
            for (size_t k = 0; k < out->n; k++)
                seen |= strcmp(out->items[k], w->str) == 0;
            if (!seen) {
                out->items = corral_xrealloc(out->items, sizeof(char *) * (out->n + 1));
                out->items[out->n++] = corral_xstrdup(w->str);
            }
        }
        freeReplyObject(w);
    }
    freeReplyObject(r);
    if (rc < 0)
        corral_strlist_free(out);
    return rc;
}

/* --- services --------------------------------------------------------- */

int corral_service_name_valid(const char *name)
{
    return corral_queue_name_valid(name);
}

static char *service_key(const char *prefix, const char *name)
{
    return corral_xasprintf("%s:svc:%s", prefix, name);
}

char *corral_service_gate_key(const char *prefix, const char *name)
{
    return corral_xasprintf("%s:{svc:%s}", prefix, name);
}

void corral_cmd_service_tag(struct corral_cmd *cmd, const char *prefix, const char *name)
{
    char *key = corral_service_gate_key(prefix, name);
    free(cmd->argv[3]);
    cmd->argv[3] = key;
    cmd->argvlen[3] = strlen(key);
}

char *corral_service_wake_key(const char *prefix, const char *name, const char *host)
{
    return corral_xasprintf("%s:svc:%s:wake:%s", prefix, name, host);
}

static void service_cmd(struct corral_cmd *cmd, const char *fcall, const char *function,
                        const char *prefix, const char *name)
{
    memset(cmd, 0, sizeof(*cmd));
    corral_cmd_addstr(cmd, fcall);
    corral_cmd_addstr(cmd, function);
    corral_cmd_addstr(cmd, "1");
    char *key = service_key(prefix, name);
    corral_cmd_addstr(cmd, key);
    free(key);
}

void corral_cmd_declare_service(struct corral_cmd *cmd, const char *prefix,
                                const struct corral_service_conf *s)
{
    service_cmd(cmd, "FCALL", "corral_declare_service", prefix, s->name);
    json_t *o = json_pack(
        "{s:I s:i s:f s:I s:f s:I s:I s:i s:I s:I}", "window_ms", (json_int_t)s->breaker_window_ms,
        "min_calls", s->breaker_min_calls, "failure_rate", s->breaker_failure_rate_pm / 10.0,
        "slow_call_ms", (json_int_t)s->breaker_slow_call_ms, "slow_rate",
        s->breaker_slow_rate_pm / 10.0, "open_for_ms", (json_int_t)s->breaker_open_for_ms,
        "open_max_ms", (json_int_t)s->breaker_open_max_ms, "half_open_calls",
        s->breaker_half_open_calls, "rate", (json_int_t)s->rate_count, "rate_period_ms",
        (json_int_t)(s->rate_period_ms > 0 ? s->rate_period_ms : 60000));
    corral_tokens_declare_fields(o, s); /* the budgets, common/tokens.c */
    /* A fallback list's later services use these (docs/breakers.md, "Fallback"). */
    json_object_set_new(o, "max_inflight", json_integer(s->max_inflight));
    if (s->model != NULL)
        json_object_set_new(o, "model", json_string(s->model));
    add_json(cmd, o);
}

int corral_service_declare(redisContext *c, const char *prefix, const struct corral_service_conf *s,
                           struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_declare_service(&cmd, prefix, s);
    redisReply *r = run(c, &cmd, "declare service", err);
    freeReplyObject(r);
    return r ? 0 : -1;
}

void corral_cmd_breaker(struct corral_cmd *cmd, const char *prefix, const char *name)
{
    service_cmd(cmd, "FCALL_RO", "corral_breaker", prefix, name);
}

int corral_service_breaker(redisContext *c, const char *prefix, const char *name, char **json_out,
                           struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_breaker(&cmd, prefix, name);
    int rc = json_call(c, &cmd, "breaker", json_out, err);
    return rc == 1 ? shape("breaker", err) : rc;
}

int corral_service_reset(redisContext *c, const char *prefix, const char *name,
                         struct corral_err *err)
{
    struct corral_cmd cmd;
    service_cmd(&cmd, "FCALL", "corral_breaker_reset", prefix, name);
    redisReply *r = run(c, &cmd, "breaker reset", err);
    freeReplyObject(r);
    return r ? 0 : -1;
}

int corral_service_list(redisContext *c, const char *prefix, struct corral_strlist *out,
                        struct corral_err *err)
{
    char *key = corral_xasprintf("%s:services", prefix);
    int rc = smembers(c, key, out, err);
    free(key);
    return rc;
}

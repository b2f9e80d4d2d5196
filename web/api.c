/* corral-web: jobs, dead lists and actions, one libcorral call each (see
 * api.h). Errors map to HTTP: an unknown queue, job or service is 404, a
 * refusal of the function library 409 (e.g. cancelling a running job), bad
 * input 400, Redis unreachable 503. */
#include "api.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "corral/cluster_client.h"
#include "corral/queue.h"
#include "corral/redis.h"
#include "corral/util.h"
#include "../ctl/ctl.h" /* ctl_service_call, shared with corralctl */
#include "snapshot.h"

struct web_api {
    const struct corral_config *cfg;
    pthread_mutex_t lock;
    redisContext *redis;
    /* [redis] cluster: the router (it owns each node's connection); each
     * request goes to its queue's node (docs/web.md, "On a Redis Cluster") */
    struct corral_cluster *cluster;
};

struct web_api *web_api_new(const struct corral_config *cfg)
{
    struct web_api *a = corral_xcalloc(1, sizeof(*a));
    a->cfg = cfg;
    pthread_mutex_init(&a->lock, NULL);
    return a;
}

void web_api_free(struct web_api *a)
{
    if (a == NULL)
        return;
    if (a->redis != NULL)
        redisFree(a->redis);
    corral_cluster_free(a->cluster);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

char *web_error_json(const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    if (o == NULL) /* not UTF-8: cannot happen for our messages, but never NULL */
        o = json_pack("{s:s}", "error", "error (the message is not UTF-8)");
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static char *dump(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

/* The HTTP status of a libcorral error. refusal: the status of an error
 * reply that refuses the request (INVALID). */
static int status_of(const struct corral_err *err, int refusal)
{
    switch (err->code) {
    case CORRAL_ERR_NOTFOUND:
        return 404;
    case CORRAL_ERR_INVALID:
        return refusal;
    default:
        return 503;
    }
}

/* corral_cancel's refusals by their code word (docs/protocol.md, "Error
 * replies"), whichever jobs a library version lets it cancel: no such job
 * 404; a job that runs and cannot be stopped, or that already ended, 409. */
static int cancel_status(const struct corral_err *err)
{
    switch (err->word) {
    case CORRAL_WORD_NOJOB:
    case CORRAL_WORD_NOQUEUE:
        return 404;
    case CORRAL_WORD_RUNNING:
    case CORRAL_WORD_FINISHED:
        return 409;
    default:
        return status_of(err, 409);
    }
}

/* FCALL corral_cancel: 0 with the state it answered ("cancelled", or the
 * word a later library version answers, e.g. for a running job told to
 * stop) in *state (free it), or -1 with err. */
static int cancel(redisContext *c, const char *prefix, const char *queue, const char *id,
                  char **state, struct corral_err *err)
{
    struct corral_cmd cmd;
    corral_cmd_init(&cmd, "corral_cancel", prefix, queue);
    corral_cmd_addstr(&cmd, id);
    redisReply *r = corral_cmd_run(c, &cmd);
    corral_cmd_free(&cmd);
    if (corral_redis_check(c, r, "cancel", err) < 0) {
        freeReplyObject(r);
        return -1;
    }
    *state = corral_xstrdup((r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
                                    r->len > 0
                                ? r->str
                                : "cancelled");
    freeReplyObject(r);
    return 0;
}

static int fail(const struct corral_err *err, int refusal, char **body)
{
    *body = web_error_json(err->msg);
    return status_of(err, refusal);
}

/* The connection for a request on queue, made again when the last one
 * failed; on a Cluster the connection of the queue's node (the router's:
 * never freed here). Lock held. */
static redisContext *conn(struct web_api *a, const char *queue, struct corral_err *err)
{
    if (a->cfg->redis.cluster.n > 0) {
        if (a->cluster == NULL &&
            (a->cluster = corral_cluster_open(&a->cfg->redis, WEB_REDIS_TIMEOUT_MS, err)) == NULL)
            return NULL;
        return corral_cluster_queue_conn(a->cluster, a->cfg->redis.prefix, queue, err);
    }
    if (a->redis != NULL && a->redis->err == 0)
        return a->redis;
    if (a->redis != NULL)
        redisFree(a->redis);
    a->redis = corral_redis_connect(&a->cfg->redis, WEB_REDIS_TIMEOUT_MS, err);
    if (a->redis != NULL && corral_functions_ensure(a->redis, NULL, err) < 0) {
        redisFree(a->redis);
        a->redis = NULL;
    }
    return a->redis;
}

/* On a Cluster, whether a call that failed on c was refused without running
 * (MOVED, ASK, CLUSTERDOWN, TRYAGAIN, NOFUNCTION: corral_cluster_redirected)
 * and goes again to the queue's node; at most 20 times. Lock held. */
static int again(struct web_api *a, redisContext *c, int *tries, struct corral_err *err)
{
    return a->cluster != NULL && c != NULL && (*tries)++ < 20 &&
           corral_cluster_redirected(a->cluster, c, err);
}

int web_api_job(struct web_api *a, const char *queue, const char *id, char **body)
{
    struct corral_err err;
    char *json = NULL;
    pthread_mutex_lock(&a->lock);
    redisContext *c;
    int rc, tries = 0;
    do {
        c = conn(a, queue, &err);
        rc = c ? corral_queue_job(c, a->cfg->redis.prefix, queue, id, &json, &err) : -1;
    } while (rc < 0 && again(a, c, &tries, &err));
    pthread_mutex_unlock(&a->lock);
    if (rc < 0)
        return fail(&err, 400, body);
    *body = json;
    return 200;
}

/* Reads n pipelined replies; -1 (replies read so far freed) when the
 * connection fails. */
static int replies(redisContext *c, redisReply **r, size_t n, struct corral_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (redisGetReply(c, (void **)&r[i]) != REDIS_OK) {
            corral_redis_check(c, NULL, "dead", err);
            for (size_t k = 0; k < i; k++)
                freeReplyObject(r[k]);
            return -1;
        }
    }
    return 0;
}

/* The dead jobs of a queue, newest first, with their errors; the status,
 * and *err when it is not 200. Lock held. */
static int dead_list(struct web_api *a, redisContext *c, const char *queue, char **body,
                     struct corral_err *errp)
{
    struct corral_err err = {0};
    const char *prefix = a->cfg->redis.prefix;
    char *key = corral_queue_key(prefix, queue);
    redisAppendCommand(c, "EXISTS %s:conf", key);
    redisAppendCommand(c, "LLEN %s:dead", key);
    redisAppendCommand(c, "LRANGE %s:dead 0 %d", key, WEB_DEAD_SHOWN - 1);
    free(key);
    redisReply *r[3];
    if (replies(c, r, 3, &err) < 0) {
        *errp = err;
        return fail(&err, 400, body);
    }
    int status = 200;
    for (size_t i = 0; i < 3 && status == 200; i++)
        if (corral_redis_check(c, r[i], "dead", &err) < 0)
            status = fail(&err, 400, body);
    if (status == 200 && r[0]->integer == 0) {
        corral_err_set(&err, CORRAL_ERR_NOTFOUND,
                       "unknown queue \"%s\": no corrald or corralctl has declared it", queue);
        status = fail(&err, 400, body);
    }
    size_t n = status == 200 && r[2]->type == REDIS_REPLY_ARRAY ? r[2]->elements : 0;
    for (size_t i = 0; i < n; i++) {
        struct corral_cmd cmd;
        corral_cmd_init(&cmd, "corral_job", prefix, queue);
        corral_cmd_addstr(&cmd, r[2]->element[i]->str ? r[2]->element[i]->str : "");
        redisAppendCommandArgv(c, cmd.argc, (const char **)cmd.argv, cmd.argvlen);
        corral_cmd_free(&cmd);
    }
    redisReply **jr = corral_xcalloc(n ? n : 1, sizeof(redisReply *));
    if (status == 200 && replies(c, jr, n, &err) < 0) {
        status = fail(&err, 400, body);
        n = 0;
    }
    if (status == 200) {
        json_t *jobs = json_array();
        for (size_t i = 0; i < n; i++) {
            char *json = NULL;
            struct corral_err jerr;
            json_t *j = NULL;
            if (corral_reply_json(jr[i], "job", &json, &jerr) == 0)
                j = json_loads(json, 0, NULL);
            free(json);
            json_t *row = json_object();
            json_object_set_new(row, "id", json_string(r[2]->element[i]->str));
            /* A job whose record expired is listed without details. */
            static const char *const keep[] = {"attempts",    "max_attempts", "error",
                                               "finished_ms", "created_ms",   NULL};
            for (const char *const *k = keep; *k && j; k++)
                if (json_object_get(j, *k) != NULL)
                    json_object_set(row, *k, json_object_get(j, *k));
            json_decref(j);
            json_array_append_new(jobs, row);
        }
        *body = dump(json_pack("{s:s s:I s:o}", "queue", queue, "total", (json_int_t)r[1]->integer,
                               "jobs", jobs));
    }
    for (size_t i = 0; i < n; i++)
        freeReplyObject(jr[i]);
    free(jr);
    for (size_t i = 0; i < 3; i++)
        freeReplyObject(r[i]);
    *errp = err;
    return status;
}

int web_api_dead(struct web_api *a, const char *queue, char **body)
{
    struct corral_err err;
    pthread_mutex_lock(&a->lock);
    redisContext *c;
    int status, tries = 0;
    for (;;) {
        if ((c = conn(a, queue, &err)) == NULL) {
            status = fail(&err, 400, body);
            break;
        }
        if ((status = dead_list(a, c, queue, body, &err)) < 500 || !again(a, c, &tries, &err))
            break;
        free(*body); /* refused by a Cluster without running: again */
        *body = NULL;
    }
    pthread_mutex_unlock(&a->lock);
    return status;
}

/* The ids of a dead/retry body: {"ids": ["1", ...]} or {"all": true}.
 * Returns 0 with *ids (free the array, not the strings: they live in *doc)
 * or -1 with msg. */
static int retry_body(const char *body, size_t len, json_t **doc, const char ***ids, size_t *n,
                      int *all, const char **msg)
{
    *ids = NULL;
    *n = 0;
    *all = 0;
    *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(*doc)) {
        *msg = "dead/retry: the body must be a JSON object: {\"ids\": [\"ID\", ...]} or "
               "{\"all\": true}";
        return -1;
    }
    json_t *jall = json_object_get(*doc, "all"), *jids = json_object_get(*doc, "ids");
    if (json_object_size(*doc) != 1 || (jall == NULL) == (jids == NULL)) {
        *msg = "dead/retry: give either \"ids\" or \"all\", and nothing else";
        return -1;
    }
    if (jall != NULL) {
        if (!json_is_true(jall)) {
            *msg = "dead/retry: \"all\" must be true";
            return -1;
        }
        *all = 1;
        return 0;
    }
    size_t count = json_array_size(jids);
    if (!json_is_array(jids) || count == 0 || count > WEB_RETRY_IDS) {
        *msg = "dead/retry: \"ids\" must be an array of 1 to 1000 job ids";
        return -1;
    }
    *ids = corral_xcalloc(count, sizeof(char *));
    for (size_t i = 0; i < count; i++) {
        const char *id = json_string_value(json_array_get(jids, i));
        if (id == NULL || !web_name_valid(id)) {
            free(*ids);
            *ids = NULL;
            *msg = "dead/retry: a job id is 1-64 characters of A-Z a-z 0-9 _ . : -";
            return -1;
        }
        (*ids)[i] = id;
    }
    *n = count;
    return 0;
}

/* One action on c (the queue's node on a Cluster): 0 with *res, or -1
 * with err. Lock held. */
static int act(struct web_api *a, redisContext *c, const struct web_route *r, const char **ids,
               size_t nids, int all, json_t **res_out, struct corral_err *err)
{
    const char *prefix = a->cfg->redis.prefix;
    long long n = 0;
    int rc;
    json_t *res = NULL;
    switch (r->page) {
    case WEB_PAUSE:
    case WEB_RESUME:
        rc = corral_queue_pause(c, prefix, r->queue, r->page == WEB_PAUSE, err);
        res =
            json_pack("{s:b s:s s:b}", "ok", 1, "queue", r->queue, "paused", r->page == WEB_PAUSE);
        break;
    case WEB_DEAD_RETRY:
        n = corral_queue_dead_retry(c, prefix, r->queue, ids, nids, all, err);
        rc = n < 0 ? -1 : 0;
        res = json_pack("{s:b s:s s:I}", "ok", 1, "queue", r->queue, "retried", (json_int_t)n);
        break;
    case WEB_DEAD_PURGE:
        n = corral_queue_dead_purge(c, prefix, r->queue, err);
        rc = n < 0 ? -1 : 0;
        res = json_pack("{s:b s:s s:I}", "ok", 1, "queue", r->queue, "purged", (json_int_t)n);
        break;
    case WEB_BREAKER_RESET:
        rc = corral_service_reset(c, prefix, r->service, err);
        res = json_pack("{s:b s:s s:s}", "ok", 1, "service", r->service, "state", "closed");
        break;
    case WEB_JOB_CANCEL: {
        /* One call; its refusals by code word (cancel_status). */
        char *state = NULL;
        rc = cancel(c, prefix, r->queue, r->id, &state, err);
        if (rc == 0)
            res = json_pack("{s:b s:s s:s s:s}", "ok", 1, "queue", r->queue, "id", r->id, "state",
                            state);
        free(state);
        break;
    }
    default:
        rc = corral_err_set(err, CORRAL_ERR_INVALID, "not an action");
        break;
    }
    *res_out = res;
    return rc;
}

/* On a Cluster: corral_breaker_reset on the node of the service's slot
 * (ctl/cluster.c, as corralctl breaker S reset). 0, or -1 with err. Lock
 * held. */
static int cluster_reset(struct web_api *a, const char *name, struct corral_err *err)
{
    if (a->cluster == NULL &&
        (a->cluster = corral_cluster_open(&a->cfg->redis, WEB_REDIS_TIMEOUT_MS, err)) == NULL)
        return -1;
    redisReply *r =
        ctl_service_call(a->cluster, a->cfg->redis.prefix, "corral_breaker_reset", name, err);
    int rc = r != NULL ? corral_redis_check(NULL, r, "breaker reset", err) : -1;
    freeReplyObject(r);
    return rc;
}

int web_api_action(struct web_api *a, const struct web_route *r, const char *body, size_t len,
                   char **out)
{
    struct corral_err err;
    json_t *doc = NULL;
    const char **ids = NULL;
    size_t nids = 0;
    int all = 0;
    if (r->page == WEB_DEAD_RETRY) {
        const char *msg;
        if (retry_body(body, len, &doc, &ids, &nids, &all, &msg) < 0) {
            json_decref(doc);
            *out = web_error_json(msg);
            return 400;
        }
    }
    pthread_mutex_lock(&a->lock);
    int rc, tries = 0;
    json_t *res = NULL;
    redisContext *c = NULL;
    if (r->page == WEB_BREAKER_RESET && a->cfg->redis.cluster.n > 0) {
        rc = cluster_reset(a, r->service, &err);
        res = json_pack("{s:b s:s s:s}", "ok", 1, "service", r->service, "state", "closed");
    } else
        do {
            json_decref(res); /* a Cluster refused the call without running it */
            res = NULL;
            c = conn(a, r->queue, &err);
            rc = c == NULL ? -1 : act(a, c, r, ids, nids, all, &res, &err);
        } while (rc < 0 && again(a, c, &tries, &err));
    pthread_mutex_unlock(&a->lock);
    free(ids);
    json_decref(doc);
    if (rc < 0) {
        json_decref(res);
        *out = web_error_json(err.msg);
        return r->page == WEB_JOB_CANCEL ? cancel_status(&err) : status_of(&err, 409);
    }
    *out = dump(res);
    return 200;
}

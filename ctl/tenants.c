/* corralctl's view of a queue's tenants (docs/protocol.md, "Tenants"): the
 * tenants with the most waiting in status (top 10 a queue), status
 * --tenants QUEUE (all of them), `tenant QUEUE NAME --weight W`, and the
 * tenant filter of `dead QUEUE list|retry --tenant T` and of `cancel QUEUE
 * --tenant T`. Everything comes from the Function library's
 * corral_tenants, corral_job and corral_cancel_tenant. */
#include "tenants.h"

#include <stdlib.h>
#include <string.h>

#include "corral/queue.h"
#include "corral/redis.h"
#include "corral/tenant.h"
#include "corral/util.h"
#include "table.h"

/* Tenants status shows per queue. */
#define STATUS_TOP 10

static int fail(const struct corral_err *err)
{
    fprintf(stderr, "corralctl: %s\n", err->msg);
    return 1;
}

/* The queue's tenant_metrics_top from the local config (10 when the
 * queue is not in it). */
static int metrics_top(const struct corral_config *cfg, const char *queue)
{
    for (size_t i = 0; i < cfg->nqueues; i++)
        if (strcmp(cfg->queues[i].name, queue) == 0)
            return cfg->queues[i].tenant_metrics_top;
    return STATUS_TOP;
}

static long long ival(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static void cmd_tenants(struct corral_cmd *cmd, const char *prefix, const char *queue, int limit)
{
    corral_cmd_init(cmd, "corral_tenants", prefix, queue);
    corral_cmd_addint(cmd, limit);
}

/* A corral_tenants reply as JSON (the caller owns it); NULL with err. */
static json_t *tenants_json(redisContext *c, const redisReply *r, const char *queue,
                            struct corral_err *err)
{
    char *text = NULL;
    if (corral_reply_json(r, "tenants", &text, err) < 0) {
        corral_err_prefix(err, "queue %s: cannot read its tenants", queue);
        return NULL;
    }
    json_t *v = json_loads(text, 0, NULL);
    free(text);
    if (v == NULL)
        corral_err_set(err, CORRAL_ERR_REDIS, "queue %s: its tenants are not JSON", queue);
    return v;
}

/* cmd on the queue's connection: on a Cluster its primary's, sent again
 * after a refusal that ran nothing (MOVED, ASK, CLUSTERDOWN: cluster.c).
 * The reply, or NULL with err. */
static redisReply *queue_run(struct ctl *ctl, const char *queue, struct corral_cmd *cmd,
                             const char *what, struct corral_err *err)
{
    redisReply *r = NULL;
    int rc = ctl_route(ctl, queue, err);
    if (rc == 0) {
        r = corral_cmd_run(ctl->redis, cmd);
        rc = corral_redis_check(ctl->redis, r, what, err);
    }
    for (int k = 0; rc < 0 && k < 20 && ctl_rerouted(ctl, err); k++) {
        freeReplyObject(r);
        r = corral_cmd_run(ctl->redis, cmd);
        rc = corral_redis_check(ctl->redis, r, what, err);
    }
    if (rc < 0) {
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

void ctl_tenants_attach(struct ctl *ctl, json_t *queues)
{
    redisContext *c = ctl->redis;
    size_t i;
    json_t *q;
    /* Only queues that have had tenants (corral_stats' "tenanted"): a
     * fleet without tenants pays no round trip. */
    json_array_foreach(queues, i, q)
    {
        if (!json_is_true(json_object_get(q, "tenanted")))
            continue;
        const char *name = json_string_value(json_object_get(q, "name"));
        int top = metrics_top(ctl->cfg, name ? name : "");
        struct corral_cmd cmd;
        cmd_tenants(&cmd, ctl->cfg->redis.prefix, name ? name : "",
                    top > STATUS_TOP ? top : STATUS_TOP);
        redisAppendCommandArgv(c, cmd.argc, (const char **)cmd.argv, cmd.argvlen);
        corral_cmd_free(&cmd);
    }
    json_array_foreach(queues, i, q)
    {
        if (!json_is_true(json_object_get(q, "tenanted")))
            continue;
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            break; /* the connection failed: status notices on its next read */
        const char *name = json_string_value(json_object_get(q, "name"));
        struct corral_err err;
        json_t *t = tenants_json(c, r, name ? name : "", &err);
        freeReplyObject(r);
        if (t != NULL) {
            json_object_set_new(t, "metrics_top",
                                json_integer(metrics_top(ctl->cfg, name ? name : "")));
            json_object_del(t, "time_ms");
            json_object_set_new(q, "tenant_count", json_integer(ival(t, "count")));
            json_object_set_new(q, "tenants", t);
        }
    }
}

static const struct ctl_col tenant_cols[] = {
    {"TENANT", 0}, {"WAITING", 1}, {"RUN", 1}, {"OLDEST", 1}, {"WEIGHT", 1}, {"", 0},
};
#define TENANT_COLS (sizeof(tenant_cols) / sizeof(tenant_cols[0]))

/* One queue's tenants (rows: a JSON array), at most max rows (0: all). */
static void print_rows(json_t *rows, size_t max, FILE *out, int color)
{
    const char *bold = color ? "\033[1m" : "", *red = color ? "\033[31m" : "",
               *off = color ? "\033[0m" : "";
    struct ctl_table *t = ctl_table_new(tenant_cols, TENANT_COLS);
    size_t i;
    json_t *e;
    json_array_foreach(rows, i, e)
    {
        if (max > 0 && i >= max)
            break;
        char oldest[32];
        corral_format_duration(ival(e, "oldest_wait_ms"), oldest, sizeof(oldest));
        int limited = json_is_true(json_object_get(e, "limited"));
        ctl_table_cell(t, NULL, "%s", json_string_value(json_object_get(e, "tenant")));
        ctl_table_cell(t, NULL, "%lld", ival(e, "waiting"));
        ctl_table_cell(t, NULL, "%lld", ival(e, "inflight"));
        ctl_table_cell(t, NULL, "%s", oldest);
        ctl_table_cell(t, NULL, "%lld", ival(e, "weight"));
        ctl_table_cell(t, red, "%s", limited ? "limited" : "");
    }
    ctl_table_print(t, out, bold, off, NULL);
    ctl_table_free(t);
}

void ctl_tenants_print(json_t *queues, FILE *out, int color)
{
    size_t i;
    json_t *q;
    json_array_foreach(queues, i, q)
    {
        json_t *t = json_object_get(q, "tenants");
        if (t == NULL || ival(t, "count") == 0)
            continue;
        long long count = ival(t, "count");
        fprintf(out, "queue %s: %lld tenants, %lld waiting, %lld running%s\n",
                json_string_value(json_object_get(q, "name")), count, ival(t, "waiting"),
                ival(t, "inflight"),
                count > STATUS_TOP ? " (most waiting first; all: status --tenants QUEUE)" : "");
        print_rows(json_object_get(t, "tenants"), STATUS_TOP, out, color);
        fputc('\n', out);
    }
}

int ctl_tenants_show(struct ctl *ctl, const char *queue, int as_json, int color)
{
    struct corral_cmd cmd;
    struct corral_err err;
    cmd_tenants(&cmd, ctl->cfg->redis.prefix, queue, 0);
    redisReply *r = queue_run(ctl, queue, &cmd, "tenants", &err);
    corral_cmd_free(&cmd);
    json_t *t = r != NULL ? tenants_json(ctl->redis, r, queue, &err) : NULL;
    freeReplyObject(r);
    if (t == NULL)
        return fail(&err);
    json_object_set_new(t, "queue", json_string(queue));
    if (as_json) {
        char *text = json_dumps(t, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(text);
        free(text);
    } else {
        printf("queue %s: %lld tenants, %lld waiting, %lld running\n", queue, ival(t, "count"),
               ival(t, "waiting"), ival(t, "inflight"));
        print_rows(json_object_get(t, "tenants"), 0, stdout, color);
    }
    json_decref(t);
    return 0;
}

int ctl_tenant(struct ctl *ctl, int argc, char **argv)
{
    if (argc != 4 || strcmp(argv[2], "--weight") != 0)
        return ctl_usage_error("%s", "tenant: usage: tenant QUEUE NAME --weight W");
    const char *queue = argv[0], *name = argv[1];
    if (!corral_tenant_valid(name))
        return ctl_usage_error("tenant: bad tenant name \"%s\": use " CORRAL_TENANT_RULE, name);
    int64_t w;
    struct corral_err err;
    if (corral_parse_int(argv[3], 1, 1000, &w, &err) < 0)
        return ctl_usage_error("tenant: --weight needs a number from 1 to 1000, got %s", argv[3]);
    struct corral_cmd cmd;
    corral_cmd_init(&cmd, "corral_tenant_weight", ctl->cfg->redis.prefix, queue);
    corral_cmd_addstr(&cmd, name);
    corral_cmd_addint(&cmd, (long long)w);
    redisReply *r = queue_run(ctl, queue, &cmd, "tenant weight", &err);
    corral_cmd_free(&cmd);
    if (r == NULL)
        return fail(&err);
    freeReplyObject(r);
    printf("queue %s: tenant %s has weight %lld\n", queue, name, (long long)w);
    return 0;
}

/* The ids of queue's dead jobs (newest first, at most limit) whose tenant
 * is tenant, into out; their JSON records into recs when not NULL. */
static int dead_of_tenant(struct ctl *ctl, const char *queue, const char *tenant,
                          struct corral_strlist *out, json_t *recs, struct corral_err *err)
{
    const char *prefix = ctl->cfg->redis.prefix;
    char *json = NULL;
    /* An unknown queue is an error, not an empty list. */
    if (corral_queue_stats(ctl->redis, prefix, queue, 60, &json, err) < 0)
        return -1;
    free(json);
    char *key = corral_xasprintf("%s:{%s}:dead", prefix, queue);
    redisReply *r = redisCommand(ctl->redis, "LRANGE %s 0 -1", key);
    free(key);
    if (corral_redis_check(ctl->redis, r, "LRANGE", err) < 0) {
        freeReplyObject(r);
        return -1;
    }
    for (size_t i = 0; i < r->elements; i++) {
        if (corral_queue_job(ctl->redis, prefix, queue, r->element[i]->str, &json, err) < 0)
            continue;
        json_t *j = json_loads(json, 0, NULL);
        free(json);
        const char *t = json_string_value(json_object_get(j, "tenant"));
        if (t != NULL && strcmp(t, tenant) == 0) {
            corral_strlist_push(out, r->element[i]->str);
            if (recs != NULL)
                json_array_append(recs, j);
        }
        json_decref(j);
    }
    freeReplyObject(r);
    return 0;
}

int ctl_dead_tenant(struct ctl *ctl, const char *queue, const char *verb, const char *tenant)
{
    if (!corral_tenant_valid(tenant))
        return ctl_usage_error("dead: bad tenant name \"%s\": use " CORRAL_TENANT_RULE, tenant);
    struct corral_err err;
    struct corral_strlist ids = {0};
    json_t *recs = json_array();
    int rc = 0;
    if (strcmp(verb, "list") != 0 && strcmp(verb, "retry") != 0) {
        rc = ctl_usage_error("dead: --tenant goes with list or retry, not \"%s\"", verb);
    } else if (dead_of_tenant(ctl, queue, tenant, &ids, recs, &err) < 0) {
        rc = fail(&err);
    } else if (strcmp(verb, "list") == 0) {
        for (size_t i = 0; i < ids.n; i++) {
            json_t *j = json_array_get(recs, i);
            printf("%s\tattempts %lld\t%s\n", ids.items[i], ival(j, "attempts"),
                   json_string_value(json_object_get(j, "error")));
        }
    } else {
        long long n = 0;
        /* In batches, as one call would hold Redis for every id at once. */
        for (size_t at = 0; at < ids.n; at += 1000) {
            size_t k = ids.n - at < 1000 ? ids.n - at : 1000;
            long long got =
                corral_queue_dead_retry(ctl->redis, ctl->cfg->redis.prefix, queue,
                                        (const char *const *)ids.items + at, k, 0, &err);
            if (got < 0) {
                rc = fail(&err);
                break;
            }
            n += got;
        }
        if (rc == 0)
            printf("%lld jobs queued again\n", n);
    }
    json_decref(recs);
    corral_strlist_free(&ids);
    return rc;
}

int ctl_cancel_tenant(struct ctl *ctl, const char *queue, const char *tenant)
{
    if (!corral_tenant_valid(tenant))
        return ctl_usage_error("cancel: bad tenant name \"%s\": use " CORRAL_TENANT_RULE, tenant);
    struct corral_err err;
    long long n =
        corral_queue_cancel_tenant(ctl->redis, ctl->cfg->redis.prefix, queue, tenant, &err);
    if (n < 0)
        return fail(&err);
    printf("%lld jobs cancelled\n", n);
    return 0;
}

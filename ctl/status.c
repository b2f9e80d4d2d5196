/* corralctl status, dead, pause and resume: the fleet as Redis sees it.
 * status reads the declared queues' statistics (corral_stats) and the host
 * heartbeats; nothing here asks a corrald anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "corral/backoff.h"
#include "corral/health.h"
#include "corral/log.h"
#include "corral/queue.h"
#include "corral/redis.h"
#include "corral/util.h"
#include "ctl.h"
#include "table.h"
#include "fallback.h"
#include "tenants.h"

/* A heartbeat older than this is shown as stale; its key expires soon after. */
#define STALE_MS 10000

static int fail(const struct corral_err *err)
{
    fprintf(stderr, "corralctl: %s\n", err->msg);
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A heartbeat hash as status shows it. "unwritten" (outcomes the host's
 * workers hold that Redis has not taken yet) is 0 when the host's corrald
 * does not report it. */
json_t *ctl_host_json(const redisReply *h, int64_t now)
{
    static const char *const ints[] = {"pid", "workers", "busy",      "slots", "min",
                                       "max", "desired", "unwritten", NULL};
    json_t *o = json_object();
    for (size_t k = 0; k + 1 < h->elements; k += 2) {
        const char *f = h->element[k]->str, *v = h->element[k + 1]->str;
        if (f == NULL || v == NULL)
            continue;
        int is_int = 0;
        for (const char *const *n = ints; *n; n++)
            is_int |= strcmp(*n, f) == 0;
        if (is_int)
            json_object_set_new(o, f, json_integer(atoll(v)));
        else if (strcmp(f, "heartbeat_ms") == 0)
            json_object_set_new(o, "heartbeat_age_ms", json_integer(now - atoll(v)));
        else
            json_object_set_new(o, f, json_string(v));
    }
    if (json_object_get(o, "unwritten") == NULL)
        json_object_set_new(o, "unwritten", json_integer(0));
    json_int_t age = json_integer_value(json_object_get(o, "heartbeat_age_ms"));
    json_object_set_new(o, "stale", json_boolean(age > STALE_MS));
    return o;
}

/* depth_by_priority in the queue's level order (csv: the declared
 * priorities, highest first), not the order of a hash. */
void ctl_order_levels(json_t *q, const char *csv)
{
    json_t *by = json_object_get(q, "depth_by_priority");
    if (!json_is_object(by) || csv == NULL)
        return;
    json_t *ordered = json_object();
    for (const char *p = csv; *p;) {
        size_t n = strcspn(p, ",");
        char name[80];
        snprintf(name, sizeof(name), "%.*s", (int)(n < sizeof(name) ? n : sizeof(name) - 1), p);
        json_t *v = json_object_get(by, name);
        if (v != NULL)
            json_object_set(ordered, name, v);
        p += n + (p[n] == ',');
    }
    const char *k;
    json_t *v;
    json_object_foreach(by, k, v)
    {
        if (json_object_get(ordered, k) == NULL)
            json_object_set(ordered, k, v);
    }
    json_object_set_new(q, "depth_by_priority", ordered);
}

static void append(redisContext *c, struct corral_cmd *cmd)
{
    redisAppendCommandArgv(c, cmd->argc, (const char **)cmd->argv, cmd->argvlen);
    corral_cmd_free(cmd);
}

/* The strings of an array reply, sorted: every table lists its rows by
 * name, so nothing moves between refreshes of --watch. */
static void sorted_strings(const redisReply *r, struct corral_strlist *out)
{
    out->items = NULL;
    out->n = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            corral_strlist_push(out, r->element[i]->str);
    if (out->n > 1)
        qsort(out->items, out->n, sizeof(char *), cmp_str);
}

/* Reads n pipelined replies into r[]; -1 with err when the connection
 * fails (the replies read so far are freed). */
static int get_replies(redisContext *c, redisReply **r, size_t n, struct corral_err *err)
{
    for (size_t i = 0; i < n; i++) {
        r[i] = NULL;
        if (redisGetReply(c, (void **)&r[i]) != REDIS_OK) {
            corral_redis_check(c, NULL, "status", err);
            for (size_t k = 0; k < i; k++)
                freeReplyObject(r[k]);
            return -1;
        }
    }
    return 0;
}

/* One queue's statistics (reply sr) in level order (reply pr); NULL with
 * err naming the queue when either read failed. */
static json_t *queue_json(redisContext *c, const char *name, const redisReply *sr,
                          const redisReply *pr, struct corral_err *err)
{
    char *json = NULL;
    if (corral_reply_json(sr, "stats", &json, err) < 0) {
        corral_err_prefix(err, "queue %s: cannot read its statistics", name);
        return NULL;
    }
    json_t *q = json_loads(json, 0, NULL);
    free(json);
    if (q == NULL) {
        corral_err_set(err, CORRAL_ERR_REDIS, "queue %s: its statistics are not JSON", name);
        return NULL;
    }
    if (corral_redis_check(c, pr, "HGET", err) < 0) {
        corral_err_prefix(err, "queue %s: cannot read its priorities", name);
        json_decref(q);
        return NULL;
    }
    ctl_order_levels(q, pr->type == REDIS_REPLY_STRING ? pr->str : NULL);
    return q;
}

json_t *ctl_snapshot(struct ctl *ctl, struct corral_err *err)
{
    if (ctl->cluster != NULL) /* every shard (cluster.c) */
        return ctl_cluster_snapshot(ctl, err);
    redisContext *c = ctl->redis;
    const char *prefix = ctl->cfg->redis.prefix;
    int64_t now = corral_wall_ms();
    /* Round trip 1: the indexes of queues, hosts and services. */
    redisAppendCommand(c, "SMEMBERS %s:queues", prefix);
    redisAppendCommand(c, "ZRANGE %s:hosts 0 -1", prefix);
    redisAppendCommand(c, "SMEMBERS %s:services", prefix);
    redisReply *idx[3];
    if (get_replies(c, idx, 3, err) < 0)
        return NULL;
    json_t *result = NULL;
    struct corral_strlist queues = {0}, hosts = {0}, services = {0};
    static const char *const what[] = {"the queue index", "the host index", "the service index"};
    for (size_t i = 0; i < 3; i++)
        if (corral_redis_check(c, idx[i], what[i], err) < 0) {
            corral_err_prefix(err, "cannot read %s", what[i]);
            goto out;
        }
    sorted_strings(idx[0], &queues);
    sorted_strings(idx[1], &hosts); /* the index is ordered by beat time: by name here */
    ctl_breaker_names(ctl, idx[2], &services);

    /* Round trip 2: every queue's statistics and priorities, host's
     * heartbeat and service's breaker, in one pipeline. */
    size_t nq = 2 * queues.n, n = nq + hosts.n + services.n;
    for (size_t i = 0; i < queues.n; i++) {
        struct corral_cmd cmd;
        /* Lean: the breakers come once per service, not once per queue. */
        corral_cmd_stats(&cmd, prefix, queues.items[i], 60, 1);
        append(c, &cmd);
        redisAppendCommand(c, "HGET %s:{%s}:conf priorities", prefix, queues.items[i]);
    }
    for (size_t i = 0; i < hosts.n; i++)
        redisAppendCommand(c, "HGETALL %s:host:%s", prefix, hosts.items[i]);
    for (size_t i = 0; i < services.n; i++) {
        struct corral_cmd cmd;
        corral_cmd_breaker(&cmd, prefix, services.items[i]);
        append(c, &cmd);
    }
    redisReply **r = corral_xcalloc(n ? n : 1, sizeof(redisReply *));
    if (get_replies(c, r, n, err) < 0) {
        free(r);
        goto out;
    }
    /* Any read that fails fails the whole view, naming what it could not
     * read: a table with a row missing would say something false. */
    json_t *jq = json_array(), *jh = json_array(), *jb = json_array();
    int ok = 1;
    for (size_t i = 0; i < queues.n && ok; i++) {
        json_t *q = queue_json(c, queues.items[i], r[2 * i], r[2 * i + 1], err);
        if (q == NULL)
            ok = 0;
        else
            json_array_append_new(jq, q);
    }
    for (size_t i = 0; i < hosts.n && ok; i++) {
        const redisReply *h = r[nq + i];
        if (corral_redis_check(c, h, "HGETALL", err) < 0) {
            corral_err_prefix(err, "host %s: cannot read its heartbeat", hosts.items[i]);
            ok = 0;
        } else if (h->type == REDIS_REPLY_ARRAY && h->elements >= 2) { /* gone when expired */
            json_array_append_new(jh, ctl_host_json(h, now));
        }
    }
    for (size_t i = 0; i < services.n && ok; i++) {
        json_t *b = ctl_breaker_json(services.items[i], r[nq + hosts.n + i], now, err);
        if (b == NULL) {
            corral_err_prefix(err, "service %s: cannot read its breaker", services.items[i]);
            ok = 0;
        } else {
            json_array_append_new(jb, b);
        }
    }
    for (size_t i = 0; i < n; i++)
        freeReplyObject(r[i]);
    free(r);
    if (ok)
        ctl_tenants_attach(ctl, jq); /* tenants.c */
    if (ok)
        result =
            json_pack("{s:I s:o s:o s:o s:o}", "time_ms", (json_int_t)now, "queues", jq, "hosts",
                      jh, "breakers", jb, "redis", corral_redis_health(c, &ctl->cfg->redis));
    else
        json_decref(jq), json_decref(jh), json_decref(jb);
out:
    for (size_t i = 0; i < 3; i++)
        freeReplyObject(idx[i]);
    corral_strlist_free(&queues);
    corral_strlist_free(&hosts);
    corral_strlist_free(&services);
    return result;
}

static long long ival(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static const struct ctl_col queue_cols[] = {
    {"QUEUE", 0}, {"DEPTH", 1},  {"BY PRIORITY", 0}, {"RUN", 1},   {"SCHED", 1}, {"DEAD", 1},
    {"IN/s", 1},  {"DONE/s", 1}, {"FAIL/s", 1},      {"P50ms", 1}, {"P95ms", 1}, {"OLDEST", 1},
    {"", 0},
};
static const struct ctl_col host_cols[] = {
    {"HOST", 0}, {"WORKERS", 1},       {"BUSY/SLOTS", 1}, {"MIN/DESIRED/MAX", 1},
    {"BEAT", 1}, {"LAST DECISION", 0},
};

#define QUEUE_COLS (sizeof(queue_cols) / sizeof(queue_cols[0]))
#define HOST_COLS  (sizeof(host_cols) / sizeof(host_cols[0]))

/* The widest each column has been in this run (status --watch). */
struct widths {
    size_t queues[QUEUE_COLS], hosts[HOST_COLS], breakers[CTL_BREAKER_COLS];
};

static void print_table(json_t *s, FILE *out, int color, struct widths *keep)
{
    const char *bold = color ? "\033[1m" : "", *dim = color ? "\033[2m" : "",
               *red = color ? "\033[31m" : "", *off = color ? "\033[0m" : "";
    size_t i;
    json_t *q, *h;
    struct ctl_table *t = ctl_table_new(queue_cols, QUEUE_COLS);
    json_array_foreach(json_object_get(s, "queues"), i, q)
    {
        char *prio = NULL;
        size_t len = 0;
        FILE *pf = open_memstream(&prio, &len);
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(q, "depth_by_priority"), k, v)
        {
            fprintf(pf, "%s%s=%lld", ftell(pf) ? " " : "", k, (long long)json_integer_value(v));
        }
        fclose(pf);
        char oldest[32];
        corral_format_duration(ival(q, "oldest_wait_ms"), oldest, sizeof(oldest));
        int paused = json_is_true(json_object_get(q, "paused"));
        ctl_table_cell(t, NULL, "%s", json_string_value(json_object_get(q, "name")));
        ctl_table_cell(t, NULL, "%lld", ival(q, "depth"));
        ctl_table_cell(t, NULL, "%s", prio);
        ctl_table_cell(t, NULL, "%lld", ival(q, "inflight"));
        ctl_table_cell(t, NULL, "%lld", ival(q, "scheduled"));
        ctl_table_cell(t, NULL, "%lld", ival(q, "dead"));
        ctl_table_cell(t, NULL, "%.1f", json_number_value(json_object_get(q, "enqueued_per_s")));
        ctl_table_cell(t, NULL, "%.1f", json_number_value(json_object_get(q, "done_per_s")));
        ctl_table_cell(t, NULL, "%.1f", json_number_value(json_object_get(q, "failed_per_s")));
        ctl_table_cell(t, NULL, "%lld", ival(q, "proc_ms_p50"));
        ctl_table_cell(t, NULL, "%lld", ival(q, "proc_ms_p95"));
        ctl_table_cell(t, NULL, "%s", oldest);
        ctl_table_cell(t, red, "%s", paused ? "paused" : "");
        free(prio);
    }
    ctl_table_print(t, out, bold, off, keep->queues);
    ctl_table_free(t);
    fputc('\n', out);
    t = ctl_table_new(host_cols, HOST_COLS);
    json_array_foreach(json_object_get(s, "hosts"), i, h)
    {
        char beat[32];
        corral_format_duration(ival(h, "heartbeat_age_ms"), beat, sizeof(beat));
        int stale = json_is_true(json_object_get(h, "stale"));
        const char *decision = json_string_value(json_object_get(h, "last_decision"));
        ctl_table_cell(t, NULL, "%s", json_string_value(json_object_get(h, "host")));
        ctl_table_cell(t, NULL, "%lld", ival(h, "workers"));
        ctl_table_cell(t, NULL, "%lld/%lld", ival(h, "busy"), ival(h, "slots"));
        ctl_table_cell(t, NULL, "%lld/%lld/%lld", ival(h, "min"), ival(h, "desired"),
                       ival(h, "max"));
        ctl_table_cell(t, stale ? red : NULL, "%s", stale ? "STALE" : beat);
        ctl_table_cell(t, dim, "%s", decision ? decision : "");
    }
    ctl_table_print(t, out, bold, off, keep->hosts);
    ctl_table_free(t);
    /* Outcomes a host's workers hold because Redis has not taken them:
     * each is a job that ran and is not recorded yet. */
    json_array_foreach(json_object_get(s, "hosts"), i, h)
    {
        if (ival(h, "unwritten") > 0)
            fprintf(out, "%swarning:%s host %s holds %lld outcomes Redis has not taken yet\n", red,
                    off, json_string_value(json_object_get(h, "host")), ival(h, "unwritten"));
        /* The host's TLS proxy (docs/ha.md): said when it is not up. */
        const char *tls = json_string_value(json_object_get(h, "tls"));
        const char *tls_error = json_string_value(json_object_get(h, "tls_error"));
        if (tls != NULL && tls[0] != '\0' && (strcmp(tls, "up") != 0 || (tls_error && *tls_error)))
            fprintf(out, "%swarning:%s host %s: TLS proxy %s%s%s\n", red, off,
                    json_string_value(json_object_get(h, "host")), tls,
                    tls_error && *tls_error ? ": " : "", tls_error ? tls_error : "");
    }
    /* Redis's fitness for corral's jobs (docs/operations.md): eviction,
     * memory, persistence. */
    fputc('\n', out);
    json_t *ws = json_object_get(json_object_get(s, "redis"), "warnings");
    for (size_t k = 0; k < json_array_size(ws); k++)
        fprintf(out, "%swarning:%s redis: %s\n", red, off,
                json_string_value(json_array_get(ws, k)));
    if (json_array_size(ws) > 0)
        fputc('\n', out);
    ctl_print_breakers(json_object_get(s, "breakers"), out, color, keep->breakers);
    ctl_tenants_print(json_object_get(s, "queues"), out, color);  /* tenants.c */
    ctl_fallback_print(json_object_get(s, "queues"), out, color); /* fallback.c */
    ctl_print_tokens(s, out, color);
    ctl_cluster_print(s, out, color); /* cluster.c */
}

/* --watch with Redis failing: the error in place of the view, and the next
 * try after a jittered back-off from the refresh interval to at least
 * WATCH_RETRY_MAX_MS (a lost connection is connected again first). */
#define WATCH_RETRY_MAX_MS 10000

int ctl_status(struct ctl *ctl, int argc, char **argv)
{
    int as_json = 0, watch = 0;
    double every = 2.0;
    const char *tenants_of = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else if (strcmp(argv[i], "--tenants") == 0) {
            if (i + 1 >= argc)
                return ctl_usage_error("%s", "status: --tenants needs a QUEUE");
            tenants_of = argv[++i];
        } else if (strcmp(argv[i], "--watch") == 0) {
            watch = 1;
            if (i + 1 < argc && argv[i + 1][0] != '-') {
                char *end;
                every = strtod(argv[i + 1], &end);
                if (*end != '\0' || every < 0.1 || every > 3600)
                    return ctl_usage_error("--watch takes seconds from 0.1 to 3600, got %s",
                                           argv[i + 1]);
                i++;
            }
        } else {
            return ctl_usage_error("status: unknown argument %s", argv[i]);
        }
    }
    int color = isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;
    if (tenants_of != NULL) /* every tenant of one queue (tenants.c) */
        return ctl_tenants_show(ctl, tenants_of, as_json, color);
    int64_t every_ms = (int64_t)(every * 1000);
    struct corral_backoff retry;
    corral_backoff_init(&retry, every_ms,
                        every_ms > WATCH_RETRY_MAX_MS ? every_ms : WATCH_RETRY_MAX_MS);
    struct corral_log_repeat rep;
    corral_log_repeat_init(&rep, 60000);
    struct widths keep = {0};
    for (;;) {
        struct corral_err err;
        json_t *s = NULL;
        if (ctl->redis != NULL || ctl_reconnect(ctl, &err) == 0)
            s = ctl_snapshot(ctl, &err);
        if (s == NULL && !watch)
            return fail(&err);
        if (s == NULL) {
            int64_t wait = corral_backoff_next(&retry);
            char in[32];
            corral_format_duration(wait, in, sizeof(in));
            if (color) { /* the error is the view */
                fputs("\033[H\033[2J", stdout);
                printf("corralctl status: %s\nretrying in %s\n", err.msg, in);
                fflush(stdout);
            }
            corral_logr(&rep, CORRAL_LOG_WARN, "status: cannot read the fleet; retrying",
                        "error=\"%s\" retry_ms=%lld", err.msg, (long long)wait);
            if (ctl_lost(ctl))
                ctl_drop(ctl);
            usleep((useconds_t)(wait * 1000));
            continue;
        }
        corral_log_repeat_end(&rep);
        corral_backoff_reset(&retry);
        if (watch && color)
            fputs("\033[H\033[2J", stdout); /* redraw in place */
        if (as_json) {
            char *text = json_dumps(s, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            puts(text);
            free(text);
        } else {
            print_table(s, stdout, color, &keep);
        }
        json_decref(s);
        if (fflush(stdout) != 0 || ferror(stdout))
            return 1; /* the reader is gone (status --watch | head) */
        if (!watch)
            return 0;
        usleep((useconds_t)(every * 1e6));
    }
}

int ctl_dead(struct ctl *ctl, int argc, char **argv)
{
    if (argc < 1)
        return ctl_usage_error("%s", "dead: QUEUE is required");
    const char *queue = argv[0];
    const char *verb = argc > 1 ? argv[1] : "list";
    const char *prefix = ctl->cfg->redis.prefix;
    struct corral_err err;
    if (ctl_route(ctl, queue, &err) < 0) /* a Cluster: the queue's node (cluster.c) */
        return fail(&err);
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--tenant") == 0) { /* tenants.c */
            if (i + 1 >= argc || argc != 4)
                return ctl_usage_error("%s", "dead: usage: dead QUEUE list|retry --tenant T");
            return ctl_dead_tenant(ctl, queue, verb, argv[i + 1]);
        }
    if (strcmp(verb, "list") == 0) {
        char *key = corral_xasprintf("%s:{%s}:dead", prefix, queue);
        redisReply *r = redisCommand(ctl->redis, "LRANGE %s 0 999", key);
        free(key);
        if (corral_redis_check(ctl->redis, r, "LRANGE", &err) < 0) {
            freeReplyObject(r);
            return fail(&err);
        }
        char *json = NULL;
        /* An unknown queue is an error, not an empty list. */
        if (corral_queue_stats(ctl->redis, prefix, queue, 60, &json, &err) < 0) {
            freeReplyObject(r);
            return fail(&err);
        }
        free(json);
        for (size_t i = 0; i < r->elements; i++) {
            if (corral_queue_job(ctl->redis, prefix, queue, r->element[i]->str, &json, &err) < 0)
                continue;
            json_t *j = json_loads(json, 0, NULL);
            free(json);
            printf("%s\tattempts %lld\t%s\n", r->element[i]->str, ival(j, "attempts"),
                   json_string_value(json_object_get(j, "error")));
            json_decref(j);
        }
        freeReplyObject(r);
        return 0;
    }
    long long n;
    if (strcmp(verb, "retry") == 0) {
        int all = argc > 2 && strcmp(argv[2], "--all") == 0;
        if (argc < 3)
            return ctl_usage_error("%s", "dead retry: give job ids or --all");
        n = corral_queue_dead_retry(ctl->redis, prefix, queue, (const char *const *)argv + 2,
                                    all ? 0 : (size_t)(argc - 2), all, &err);
        if (n < 0)
            return fail(&err);
        printf("%lld jobs queued again\n", n);
        return 0;
    }
    if (strcmp(verb, "purge") == 0) {
        n = corral_queue_dead_purge(ctl->redis, prefix, queue, &err);
        if (n < 0)
            return fail(&err);
        printf("%lld dead jobs deleted\n", n);
        return 0;
    }
    return ctl_usage_error("dead: unknown action \"%s\" (list, retry, purge)", verb);
}

int ctl_pause(struct ctl *ctl, int argc, char **argv, int pause)
{
    if (argc != 1)
        return ctl_usage_error("%s",
                               pause ? "pause: QUEUE is required" : "resume: QUEUE is required");
    struct corral_err err;
    if (ctl_route(ctl, argv[0], &err) < 0 || /* a Cluster: the queue's node (cluster.c) */
        corral_queue_pause(ctl->redis, ctl->cfg->redis.prefix, argv[0], pause, &err) < 0)
        return fail(&err);
    printf("%s %s\n", argv[0], pause ? "paused" : "resumed");
    return 0;
}

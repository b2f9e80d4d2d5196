/* corralctl status, dead, pause and resume: the fleet as Redis sees it.
 * status reads the declared queues' statistics (corral_stats) and the host
 * heartbeats; nothing here asks a corrald anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "corral/queue.h"
#include "corral/redis.h"
#include "corral/util.h"
#include "ctl.h"

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

/* A heartbeat hash as status shows it. */
static json_t *host_json(const redisReply *h, int64_t now)
{
    static const char *const ints[] = {"pid", "workers", "busy",    "slots",
                                       "min", "max",     "desired", NULL};
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
    json_int_t age = json_integer_value(json_object_get(o, "heartbeat_age_ms"));
    json_object_set_new(o, "stale", json_boolean(age > STALE_MS));
    return o;
}

static void append(redisContext *c, struct corral_cmd *cmd)
{
    redisAppendCommandArgv(c, cmd->argc, (const char **)cmd->argv, cmd->argvlen);
    corral_cmd_free(cmd);
}

static void strings_of(const redisReply *r, struct corral_strlist *out)
{
    out->items = NULL;
    out->n = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            corral_strlist_push(out, r->element[i]->str);
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

json_t *ctl_snapshot(struct ctl *ctl, struct corral_err *err)
{
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
    for (size_t i = 0; i < 3; i++)
        if (corral_redis_check(c, idx[i], "status", err) < 0)
            goto out;
    /* Sorted, so the view does not jump around between refreshes. */
    strings_of(idx[0], &queues);
    if (queues.n > 1)
        qsort(queues.items, queues.n, sizeof(char *), cmp_str);
    strings_of(idx[1], &hosts);
    ctl_breaker_names(ctl, idx[2], &services);

    /* Round trip 2: every queue's statistics, host's heartbeat and
     * service's breaker, in one pipeline. */
    size_t n = queues.n + hosts.n + services.n;
    for (size_t i = 0; i < queues.n; i++) {
        struct corral_cmd cmd;
        /* Lean: the breakers come once per service, not once per queue. */
        corral_cmd_stats(&cmd, prefix, queues.items[i], 60, 1);
        append(c, &cmd);
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
    json_t *jq = json_array(), *jh = json_array(), *jb = json_array();
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        if (i < queues.n) {
            char *json = NULL;
            /* A queue whose stats fail (one declared by a newer corral, say)
             * is left out rather than hiding the whole fleet. */
            if (corral_reply_json(r[i], "stats", &json, err) == 0) {
                json_t *q = json_loads(json, 0, NULL);
                if (q != NULL)
                    json_array_append_new(jq, q);
            }
            free(json);
        } else if (i < queues.n + hosts.n) {
            if (r[i]->type == REDIS_REPLY_ARRAY && r[i]->elements >= 2) /* gone when expired */
                json_array_append_new(jh, host_json(r[i], now));
        } else {
            json_t *b = ctl_breaker_json(services.items[i - queues.n - hosts.n], r[i], now, err);
            if (b == NULL)
                ok = 0;
            else
                json_array_append_new(jb, b);
        }
    }
    for (size_t i = 0; i < n; i++)
        freeReplyObject(r[i]);
    free(r);
    if (ok)
        result = json_pack("{s:I s:o s:o s:o}", "time_ms", (json_int_t)now, "queues", jq, "hosts",
                           jh, "breakers", jb);
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

static void print_table(json_t *s, FILE *out, int color)
{
    const char *bold = color ? "\033[1m" : "", *dim = color ? "\033[2m" : "",
               *red = color ? "\033[31m" : "", *off = color ? "\033[0m" : "";
    size_t i;
    json_t *q, *h;
    fprintf(out,
            "%sQUEUE%s                 DEPTH  BY PRIORITY                RUN  SCHED  DEAD   IN/s  "
            "DONE/s  FAIL/s  P50ms  P95ms  OLDEST\n",
            bold, off);
    json_array_foreach(json_object_get(s, "queues"), i, q)
    {
        char prio[128] = "";
        size_t used = 0;
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(q, "depth_by_priority"), k, v)
        {
            used +=
                (size_t)snprintf(prio + used, used < sizeof(prio) ? sizeof(prio) - used : 0,
                                 "%s%s=%lld", used ? " " : "", k, (long long)json_integer_value(v));
        }
        char oldest[32];
        corral_format_duration(ival(q, "oldest_wait_ms"), oldest, sizeof(oldest));
        fprintf(
            out, "%-20s %6lld  %-24s %5lld %6lld %5lld %6.1f %7.1f %7.1f %6lld %6lld  %-8s%s%s%s\n",
            json_string_value(json_object_get(q, "name")), ival(q, "depth"), prio,
            ival(q, "inflight"), ival(q, "scheduled"), ival(q, "dead"),
            json_number_value(json_object_get(q, "enqueued_per_s")),
            json_number_value(json_object_get(q, "done_per_s")),
            json_number_value(json_object_get(q, "failed_per_s")), ival(q, "proc_ms_p50"),
            ival(q, "proc_ms_p95"), oldest, json_is_true(json_object_get(q, "paused")) ? red : "",
            json_is_true(json_object_get(q, "paused")) ? "  paused" : "", off);
    }
    fprintf(out,
            "\n%sHOST%s                  WORKERS  BUSY/SLOTS  MIN/DESIRED/MAX  BEAT    "
            "LAST DECISION\n",
            bold, off);
    json_array_foreach(json_object_get(s, "hosts"), i, h)
    {
        char bs[32], mdm[32], beat[32];
        snprintf(bs, sizeof(bs), "%lld/%lld", ival(h, "busy"), ival(h, "slots"));
        snprintf(mdm, sizeof(mdm), "%lld/%lld/%lld", ival(h, "min"), ival(h, "desired"),
                 ival(h, "max"));
        corral_format_duration(ival(h, "heartbeat_age_ms"), beat, sizeof(beat));
        int stale = json_is_true(json_object_get(h, "stale"));
        fprintf(out, "%-20s %8lld  %10s  %15s  %s%-6s%s  %s%s%s\n",
                json_string_value(json_object_get(h, "host")), ival(h, "workers"), bs, mdm,
                stale ? red : "", stale ? "STALE" : beat, off, dim,
                json_string_value(json_object_get(h, "last_decision")), off);
    }
    fputc('\n', out);
    ctl_print_breakers(json_object_get(s, "breakers"), out, color);
}

int ctl_status(struct ctl *ctl, int argc, char **argv)
{
    int as_json = 0, watch = 0;
    double every = 2.0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
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
    for (;;) {
        struct corral_err err;
        json_t *s = ctl_snapshot(ctl, &err);
        if (s == NULL)
            return fail(&err);
        if (watch && color)
            fputs("\033[H\033[2J", stdout); /* redraw in place */
        if (as_json) {
            char *text = json_dumps(s, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            puts(text);
            free(text);
        } else {
            print_table(s, stdout, color);
        }
        fflush(stdout);
        json_decref(s);
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
    if (corral_queue_pause(ctl->redis, ctl->cfg->redis.prefix, argv[0], pause, &err) < 0)
        return fail(&err);
    printf("%s %s\n", argv[0], pause ? "paused" : "resumed");
    return 0;
}

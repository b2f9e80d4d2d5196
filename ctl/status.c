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

static json_t *read_queues(struct ctl *ctl, struct corral_err *err)
{
    struct corral_strlist names;
    if (corral_queue_list(ctl->redis, ctl->cfg->redis.prefix, &names, err) < 0)
        return NULL;
    json_t *out = json_array();
    /* Sorted, so the view does not jump around between refreshes. */
    for (size_t i = 0; i < names.n; i++)
        for (size_t k = i + 1; k < names.n; k++)
            if (strcmp(names.items[k], names.items[i]) < 0) {
                char *t = names.items[i];
                names.items[i] = names.items[k];
                names.items[k] = t;
            }
    for (size_t i = 0; i < names.n; i++) {
        char *json = NULL;
        if (corral_queue_stats(ctl->redis, ctl->cfg->redis.prefix, names.items[i], 60, &json, err) <
            0) {
            json_decref(out);
            corral_strlist_free(&names);
            return NULL;
        }
        json_t *q = json_loads(json, 0, NULL);
        free(json);
        if (q != NULL)
            json_array_append_new(out, q);
    }
    corral_strlist_free(&names);
    return out;
}

static json_t *read_hosts(struct ctl *ctl, int64_t now, struct corral_err *err)
{
    char *index = corral_xasprintf("%s:hosts", ctl->cfg->redis.prefix);
    redisReply *r = redisCommand(ctl->redis, "ZRANGE %s 0 -1", index);
    free(index);
    if (corral_redis_check(ctl->redis, r, "ZRANGE", err) < 0) {
        freeReplyObject(r);
        return NULL;
    }
    json_t *out = json_array();
    static const char *const ints[] = {"pid", "workers", "busy",    "slots",
                                       "min", "max",     "desired", NULL};
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        char *key = corral_xasprintf("%s:host:%s", ctl->cfg->redis.prefix, r->element[i]->str);
        redisReply *h = redisCommand(ctl->redis, "HGETALL %s", key);
        free(key);
        if (corral_redis_check(ctl->redis, h, "HGETALL", err) < 0) {
            freeReplyObject(h);
            freeReplyObject(r);
            json_decref(out);
            return NULL;
        }
        if (h->type == REDIS_REPLY_ARRAY && h->elements >= 2) { /* gone when expired */
            json_t *o = json_object();
            for (size_t k = 0; k + 1 < h->elements; k += 2) {
                const char *f = h->element[k]->str, *v = h->element[k + 1]->str;
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
            json_array_append_new(out, o);
        }
        freeReplyObject(h);
    }
    freeReplyObject(r);
    return out;
}

static json_t *snapshot(struct ctl *ctl, struct corral_err *err)
{
    int64_t now = corral_wall_ms();
    json_t *queues = read_queues(ctl, err);
    if (queues == NULL)
        return NULL;
    json_t *hosts = read_hosts(ctl, now, err);
    if (hosts == NULL) {
        json_decref(queues);
        return NULL;
    }
    json_t *breakers = ctl_read_breakers(ctl, now, err);
    if (breakers == NULL) {
        json_decref(queues);
        json_decref(hosts);
        return NULL;
    }
    return json_pack("{s:I s:o s:o s:o}", "time_ms", (json_int_t)now, "queues", queues, "hosts",
                     hosts, "breakers", breakers);
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
        json_t *s = snapshot(ctl, &err);
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

/* corral_jobs_*_total, corral_service_calls_total and the processing-time
 * histogram, from the counters hash the function library keeps per queue
 * (queue/lua/counters.lua). Redis holds them, so they only grow whoever
 * reads them and however often that reader restarts. */
#include "counters.h"

#include <stdlib.h>
#include <string.h>

#include "corral/queue.h"
#include "corral/redis.h"
#include "corral/util.h"
#include "ctl.h"

/* Upper bounds (ms) of the histogram fields h0..h18 of queue/lua/stats.lua's
 * HIST; h19 counts the rest. The two must agree: test_web.py compares them. */
#define NHIST 20
static const double le_ms[NHIST - 1] = {1,     2,     5,      10,     20,    50,    100,
                                        200,   500,   1000,   2000,   5000,  10000, 20000,
                                        30000, 60000, 120000, 300000, 600000};

json_t *ctl_counters_read(struct ctl *ctl, json_t *queues, struct corral_err *err)
{
    size_t n = json_array_size(queues);
    struct ctl_keyed *cmds = corral_xcalloc(n + 1, sizeof(*cmds));
    for (size_t i = 0; i < n; i++) {
        const char *name = json_string_value(json_object_get(json_array_get(queues, i), "name"));
        char *key = corral_queue_key(ctl->cfg->redis.prefix, name ? name : "");
        cmds[i].key = corral_xasprintf("%s:ctr", key);
        free(key);
        cmds[i].argv[0] = "HGETALL";
        cmds[i].argc = 1;
    }
    redisReply **rs = corral_xcalloc(n + 1, sizeof(redisReply *));
    int rc = ctl_keyed_replies(ctl, cmds, n, rs, "counters", err);
    json_t *out = json_object();
    for (size_t i = 0; rc == 0 && i < n; i++) {
        redisReply *r = rs[i];
        if (corral_redis_check(NULL, r, "HGETALL", err) < 0) {
            rc = -1;
            break;
        }
        const char *name = json_string_value(json_object_get(json_array_get(queues, i), "name"));
        if (name != NULL && r->type == REDIS_REPLY_ARRAY) {
            json_t *q = json_object();
            for (size_t k = 0; k + 1 < r->elements; k += 2)
                if (r->element[k]->type == REDIS_REPLY_STRING &&
                    r->element[k + 1]->type == REDIS_REPLY_STRING)
                    json_object_set_new(q, r->element[k]->str,
                                        json_integer(strtoll(r->element[k + 1]->str, NULL, 10)));
            json_object_set_new(out, name, q);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (rs[i] != NULL)
            freeReplyObject(rs[i]);
        free(cmds[i].key);
    }
    free(rs);
    free(cmds);
    if (rc < 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

static void put_label(FILE *out, const char *v)
{
    for (; v != NULL && *v; v++) {
        if (*v == '\\' || *v == '"')
            fprintf(out, "\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", out);
        else
            fputc(*v, out);
    }
}

static const char *qstr(json_t *q, const char *k)
{
    const char *s = json_string_value(json_object_get(q, k));
    return s ? s : "";
}

static long long count(json_t *counters, const char *queue, const char *field)
{
    return (long long)json_integer_value(json_object_get(json_object_get(counters, queue), field));
}

void ctl_counters_write(json_t *queues, json_t *counters, FILE *out)
{
    static const struct {
        const char *name, *field, *help;
    } fam[] = {
        {"corral_jobs_enqueued_total", "enq", "Jobs enqueued."},
        {"corral_jobs_done_total", "done", "Jobs done."},
        {"corral_jobs_failed_total", "fail", "Failed runs (each retried or dead afterwards)."},
        {"corral_jobs_retried_total", "retry", "Failed runs scheduled to run again."},
        {"corral_jobs_dead_total", "dead", "Jobs that went to the dead-letter list."},
        {"corral_jobs_deferred_total", "defer",
         "Runs handed back without spending an attempt (breaker open, 429, quota)."},
        {"corral_jobs_lost_total", "lost",
         "Runs whose worker vanished; their jobs were reclaimed."},
    };
    size_t nq = json_array_size(queues);
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        fprintf(out,
                "# HELP %s %s Counted in Redis by the function library (since its version 6).\n"
                "# TYPE %s counter\n",
                fam[f].name, fam[f].help, fam[f].name);
        for (size_t i = 0; i < nq; i++) {
            const char *q = qstr(json_array_get(queues, i), "name");
            fprintf(out, "%s{queue=\"", fam[f].name);
            put_label(out, q);
            fprintf(out, "\"} %lld\n", count(counters, q, fam[f].field));
        }
    }
    fputs("# HELP corral_service_calls_total Calls to a service by the jobs of the queues that use "
          "it, by how the run ended (done, failed, deferred).\n"
          "# TYPE corral_service_calls_total counter\n",
          out);
    for (size_t i = 0; i < nq; i++) {
        const char *svc = qstr(json_array_get(queues, i), "service");
        int first = svc[0] != '\0';
        /* Several queues may share a service: sum them, once per service. */
        for (size_t k = 0; k < i && first; k++)
            first = strcmp(qstr(json_array_get(queues, k), "service"), svc) != 0;
        if (!first)
            continue;
        static const char *const oc[][2] = {
            {"done", "done"}, {"failed", "fail"}, {"deferred", "defer"}};
        for (size_t o = 0; o < 3; o++) {
            long long sum = 0;
            for (size_t k = i; k < nq; k++) {
                json_t *qk = json_array_get(queues, k);
                if (strcmp(qstr(qk, "service"), svc) == 0)
                    sum += count(counters, qstr(qk, "name"), oc[o][1]);
            }
            fputs("corral_service_calls_total{service=\"", out);
            put_label(out, svc);
            fprintf(out, "\",outcome=\"%s\"} %lld\n", oc[o][0], sum);
        }
    }
    fputs("# HELP corral_job_processing_seconds Processing time of the runs that ended (done or "
          "failed), in the buckets of queue/lua/stats.lua.\n"
          "# TYPE corral_job_processing_seconds histogram\n",
          out);
    for (size_t i = 0; i < nq; i++) {
        const char *q = qstr(json_array_get(queues, i), "name");
        long long acc = 0;
        for (int b = 0; b < NHIST; b++) {
            char field[8];
            snprintf(field, sizeof(field), "h%d", b);
            acc += count(counters, q, field);
            fputs("corral_job_processing_seconds_bucket{queue=\"", out);
            put_label(out, q);
            if (b < NHIST - 1)
                fprintf(out, "\",le=\"%g\"} %lld\n", le_ms[b] / 1000.0, acc);
            else
                fprintf(out, "\",le=\"+Inf\"} %lld\n", acc);
        }
        fputs("corral_job_processing_seconds_sum{queue=\"", out);
        put_label(out, q);
        fprintf(out, "\"} %.3f\n", (double)count(counters, q, "ps") / 1000.0);
        fputs("corral_job_processing_seconds_count{queue=\"", out);
        put_label(out, q);
        fprintf(out, "\"} %lld\n", acc);
    }
}

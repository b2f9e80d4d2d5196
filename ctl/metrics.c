/* corralctl metrics: what status knows, in the Prometheus text exposition
 * format (version 0.0.4), for node_exporter's textfile collector or any
 * scraper that runs a command. Names are corral_<what>_<unit>, base units
 * (seconds, ratios); every family has its HELP and TYPE once, before its
 * samples. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "counters.h"
#include "ctl.h"

/* A label value with \, " and newlines escaped as the format asks. */
static void put_label_value(FILE *out, const char *v)
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

static void family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample with up to two labels (k2 NULL: one; k1 NULL: none). */
static void sample(FILE *out, const char *name, double v, const char *k1, const char *v1,
                   const char *k2, const char *v2)
{
    fputs(name, out);
    if (k1 != NULL) {
        fprintf(out, "{%s=\"", k1);
        put_label_value(out, v1);
        fputc('"', out);
        if (k2 != NULL) {
            fprintf(out, ",%s=\"", k2);
            put_label_value(out, v2);
            fputc('"', out);
        }
        fputc('}', out);
    }
    fprintf(out, " %.17g\n", v);
}

static double num(json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* A gauge per object of an array: one family, one sample each, labelled by
 * label_key. scale converts the JSON unit (ms -> s). */
static void per_item(FILE *out, json_t *items, const char *label, const char *label_key,
                     const char *name, const char *key, double scale, const char *help)
{
    family(out, name, "gauge", help);
    size_t i;
    json_t *o;
    json_array_foreach(items, i, o)
    {
        json_t *v = json_object_get(o, key);
        if (json_is_boolean(v))
            sample(out, name, json_is_true(v) ? 1 : 0, label, str(o, label_key), NULL, NULL);
        else if (json_is_number(v))
            sample(out, name, json_number_value(v) * scale, label, str(o, label_key), NULL, NULL);
    }
}

static void queues(FILE *out, json_t *qs)
{
    size_t i;
    json_t *q;
    family(out, "corral_queue_depth", "gauge", "Ready jobs waiting in the queue, by priority.");
    json_array_foreach(qs, i, q)
    {
        const char *p;
        json_t *v;
        json_object_foreach(json_object_get(q, "depth_by_priority"), p, v)
        {
            sample(out, "corral_queue_depth", json_number_value(v), "queue", str(q, "name"),
                   "priority", p);
        }
    }
    per_item(out, qs, "queue", "name", "corral_queue_inflight", "inflight", 1,
             "Jobs running now (leased), fleet-wide.");
    per_item(out, qs, "queue", "name", "corral_queue_scheduled", "scheduled", 1,
             "Jobs delayed or waiting for a retry or a breaker.");
    per_item(out, qs, "queue", "name", "corral_queue_dead", "dead", 1,
             "Jobs in the dead-letter list.");
    per_item(out, qs, "queue", "name", "corral_queue_paused", "paused", 1,
             "1 while the queue is paused.");
    per_item(out, qs, "queue", "name", "corral_queue_enqueued_rate", "enqueued_per_s", 1,
             "Jobs enqueued per second over the last minute.");
    per_item(out, qs, "queue", "name", "corral_queue_done_rate", "done_per_s", 1,
             "Jobs done per second over the last minute.");
    per_item(out, qs, "queue", "name", "corral_queue_failed_rate", "failed_per_s", 1,
             "Failed calls per second over the last minute (retried or dead).");
    per_item(out, qs, "queue", "name", "corral_queue_oldest_wait_seconds", "oldest_wait_ms", 0.001,
             "How long the oldest ready job has waited.");
    family(out, "corral_queue_processing_seconds", "gauge",
           "Processing time of the jobs that ended in the last minute, by quantile.");
    json_array_foreach(qs, i, q)
    {
        static const char *const qk[][2] = {
            {"0.5", "proc_ms_p50"}, {"0.95", "proc_ms_p95"}, {"0.99", "proc_ms_p99"}};
        for (size_t k = 0; k < 3; k++)
            if (json_object_get(q, qk[k][1]) != NULL)
                sample(out, "corral_queue_processing_seconds", num(q, qk[k][1]) / 1000.0, "queue",
                       str(q, "name"), "quantile", qk[k][0]);
    }
}

/* Per-tenant series (docs/protocol.md, "Tenants") for the top
 * tenant_metrics_top tenants of each queue by waiting; the rest summed as
 * one series with tenant="*" (no tenant's name: * is not in the alphabet),
 * so that a queue with 100,000 tenants does not flood the scraper. */
static void tenants(FILE *out, json_t *qs)
{
    static const char *const fams[][3] = {
        {"corral_tenant_waiting", "waiting", "Jobs of the tenant waiting in the queue."},
        {"corral_tenant_inflight", "inflight", "Jobs of the tenant running now, fleet-wide."},
    };
    size_t i;
    json_t *q;
    for (size_t f = 0; f < 2; f++) {
        family(out, fams[f][0], "gauge", fams[f][2]);
        json_array_foreach(qs, i, q)
        {
            json_t *t = json_object_get(q, "tenants");
            if (t == NULL)
                continue;
            json_int_t top = json_integer_value(json_object_get(t, "metrics_top"));
            double rest = num(t, fams[f][1]);
            size_t k;
            json_t *e;
            json_array_foreach(json_object_get(t, "tenants"), k, e)
            {
                if ((json_int_t)k >= top)
                    break;
                sample(out, fams[f][0], num(e, fams[f][1]), "queue", str(q, "name"), "tenant",
                       str(e, "tenant"));
                rest -= num(e, fams[f][1]);
            }
            if (json_integer_value(json_object_get(t, "count")) > top)
                sample(out, fams[f][0], rest, "queue", str(q, "name"), "tenant", "*");
        }
    }
    family(out, "corral_tenant_limited", "gauge",
           "1 while the tenant is out of the turn at its tenant_max_inflight, tenant_rate or "
           "tenant_tokens.");
    json_array_foreach(qs, i, q)
    {
        json_t *t = json_object_get(q, "tenants");
        json_int_t top = json_integer_value(json_object_get(t, "metrics_top"));
        size_t k;
        json_t *e;
        json_array_foreach(json_object_get(t, "tenants"), k, e)
        {
            if ((json_int_t)k >= top)
                break;
            sample(out, "corral_tenant_limited", json_is_true(json_object_get(e, "limited")),
                   "queue", str(q, "name"), "tenant", str(e, "tenant"));
        }
    }
    per_item(out, qs, "queue", "name", "corral_queue_tenants", "tenant_count", 1,
             "Tenants with jobs waiting or running in the queue.");
}

static void hosts(FILE *out, json_t *hs)
{
    per_item(out, hs, "host", "host", "corral_host_workers", "workers", 1,
             "Worker processes on the host.");
    per_item(out, hs, "host", "host", "corral_host_busy_slots", "busy", 1,
             "Job slots running a job on the host.");
    per_item(out, hs, "host", "host", "corral_host_slots", "slots", 1,
             "Job slots on the host (workers x concurrency).");
    per_item(out, hs, "host", "host", "corral_host_workers_min", "min", 1, "[pool] min.");
    per_item(out, hs, "host", "host", "corral_host_workers_max", "max", 1, "[pool] max.");
    per_item(out, hs, "host", "host", "corral_host_workers_desired", "desired", 1,
             "Workers the scaler wants now.");
    per_item(out, hs, "host", "host", "corral_host_heartbeat_age_seconds", "heartbeat_age_ms",
             0.001, "Age of the host's last heartbeat.");
    per_item(out, hs, "host", "host", "corral_host_stale", "stale", 1,
             "1 when the heartbeat is too old: the host's corrald is gone or cut off.");
    per_item(out, hs, "host", "host", "corral_host_unwritten_outcomes", "unwritten", 1,
             "Outcomes of ended jobs the host's workers hold because Redis has not taken them.");
}

static void breakers(FILE *out, json_t *bs)
{
    static const char *const states[] = {"closed", "open", "half_open"};
    size_t i;
    json_t *b;
    family(out, "corral_breaker_state", "gauge",
           "1 for the breaker's current state (closed, open, half_open), 0 for the others.");
    json_array_foreach(bs, i, b)
    {
        for (size_t k = 0; k < 3; k++)
            sample(out, "corral_breaker_state", strcmp(str(b, "state"), states[k]) == 0, "service",
                   str(b, "service"), "state", states[k]);
    }
    per_item(out, bs, "service", "service", "corral_breaker_failure_ratio", "failure_rate", 1,
             "Failed calls over calls in the breaker's window.");
    per_item(out, bs, "service", "service", "corral_breaker_calls", "calls", 1,
             "Calls in the breaker's window.");
    family(out, "corral_breaker_open_until_timestamp_seconds", "gauge",
           "When an open breaker lets probe calls through (Unix time); 0 when closed.");
    json_array_foreach(bs, i, b)
    {
        sample(out, "corral_breaker_open_until_timestamp_seconds", num(b, "open_until_ms") / 1000.0,
               "service", str(b, "service"), NULL, NULL);
    }
    family(out, "corral_service_throttled", "gauge",
           "1 while a 429 pauses every call to the service.");
    json_array_foreach(bs, i, b)
    {
        sample(out, "corral_service_throttled", num(b, "throttled_until_ms") > 0, "service",
               str(b, "service"), NULL, NULL);
    }
    per_item(out, bs, "service", "service", "corral_service_inflight", "inflight", 1,
             "Calls in flight to the service, fleet-wide.");
    per_item(out, bs, "service", "service", "corral_service_rate_used", "rate_used", 1,
             "Calls granted within the current rate period.");
    per_item(out, bs, "service", "service", "corral_service_rate_limit", "rate_limit", 1,
             "The service's rate per period (0 = none).");
}

/* corral_up, the family every scrape has: 1 with the fleet's state, or 0
 * and why on a comment line (stderr has it too). A scraper or a textfile
 * collector that keeps the output whatever the exit status sees the fleet
 * go dark, not a stale view. */
static void up(FILE *out, const char *why)
{
    family(out, "corral_up", "gauge",
           "1: corralctl read the fleet's state from Redis; 0: it could not (see the comment).");
    if (why != NULL) {
        fputs("# corral_up 0: ", out);
        for (const char *p = why; *p; p++) /* one line, whatever the error holds */
            fputc(*p == '\n' || *p == '\r' ? ' ' : *p, out);
        fputc('\n', out);
    }
    sample(out, "corral_up", why == NULL, NULL, NULL, NULL, NULL);
}

int ctl_metrics_down(const struct corral_err *err)
{
    up(stdout, err->msg);
    fflush(stdout);
    fprintf(stderr, "corralctl: %s\n", err->msg);
    return 1;
}

int ctl_metrics(struct ctl *ctl, int argc, char **argv)
{
    if (argc > 0)
        return ctl_usage_error("metrics: unexpected argument %s", argv[0]);
    struct corral_err err;
    json_t *s = ctl_snapshot(ctl, &err);
    if (s == NULL)
        return ctl_metrics_down(&err);
    json_t *ctr = ctl_counters_read(ctl, json_object_get(s, "queues"), &err);
    if (ctr == NULL) {
        json_decref(s);
        return ctl_metrics_down(&err);
    }
    FILE *out = stdout;
    up(out, NULL);
    queues(out, json_object_get(s, "queues"));
    tenants(out, json_object_get(s, "queues"));
    hosts(out, json_object_get(s, "hosts"));
    breakers(out, json_object_get(s, "breakers"));
    ctl_counters_write(json_object_get(s, "queues"), ctr, out);
    json_decref(ctr);
    ctl_tokens_metrics(s, out);
    json_decref(s);
    return fflush(out) == 0 ? 0 : 1;
}

void ctl_metrics_write(json_t *snapshot, FILE *out)
{
    queues(out, json_object_get(snapshot, "queues"));
    tenants(out, json_object_get(snapshot, "queues"));
    hosts(out, json_object_get(snapshot, "hosts"));
    breakers(out, json_object_get(snapshot, "breakers"));
    ctl_tokens_metrics(snapshot, out);
}

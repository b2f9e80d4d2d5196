/* corral-web's memory of the last hour: what the dashboard charts (the
 * counters of /metrics are Redis's: ctl/counters.h). Two sources: the queues' per-minute statistics
 * buckets in Redis (<prefix>:{<queue>}:st:<minute>, kept 2 h by the function library), which give
 * arrivals, completions, failures and the processing-time histogram for the whole last hour even
 * right after a start; and samples of each snapshot (depth, pool sizes, breaker states), which
 * begin when corral-web starts. Pure: the caller reads Redis and feeds what it read. Not
 * thread-safe: the snapshot's one refresher owns it. docs/web.md. */
#ifndef CORRAL_WEB_HISTORY_H
#define CORRAL_WEB_HISTORY_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#define WEB_MINUTES      60                /* per-minute charts: the last hour */
#define WEB_SLOT_MS      15000             /* one sample per slot ... */
#define WEB_SLOTS        240               /* ... for an hour */
#define WEB_FIRST_READ   (WEB_MINUTES + 1) /* minutes read at a queue's first sight: the charts' */
#define WEB_DECISIONS    20                /* decisions shown per host */
#define WEB_CHANGES      20                /* breaker state changes kept per service */
#define WEB_MAX_ENTITIES 1000 /* queues, hosts or services tracked; more are left out */
#define WEB_NHIST        20 /* processing-time buckets: queue/corral.lua's HIST, and the open one */

struct web_history;

struct web_history *web_history_new(void);
void web_history_free(struct web_history *h);

/* One bucket to read: HGETALL <prefix>:{queue}:st:minute. */
struct web_bucket_req {
    const char *queue; /* owned by the history; valid until the next plan */
    int64_t minute;    /* Redis time in ms / 60000 */
};

/* What to read for the queues of a status snapshot (corralctl status
 * --json): the minutes not yet final in the history, up to and including
 * the current one (each queue's time_ms is Redis's clock). *out is
 * allocated (free it); returns the count. */
size_t web_history_plan(struct web_history *h, json_t *status, struct web_bucket_req **out);

/* Feeds one bucket read for a planned request, as the flat field/value
 * array of HGETALL (unknown fields ignored; n counts strings). Buckets of
 * minutes before the queue's current one are final: they are read once
 * and kept for the charts. */
void web_history_bucket(struct web_history *h, const struct web_bucket_req *req,
                        const char *const *fv, size_t n);

/* The decisions list of a host as LRANGE returned it (newest first, each a
 * JSON object; others are skipped). */
void web_history_decisions(struct web_history *h, const char *host, const char *const *lines,
                           size_t n);

/* Records the samples of a snapshot taken at wall_ms: queue depths, each
 * host's pool, each breaker's state (and its changes). */
void web_history_sample(struct web_history *h, json_t *status, int64_t wall_ms);

/* The dashboard's charts as JSON (docs/web.md); caller frees. */
char *web_history_json(struct web_history *h, int64_t wall_ms, size_t *len);

/* Writes s as a JSON string (quotes included); bytes outside ASCII become
 * \u00XX so that any input gives valid JSON. */
void web_json_string(FILE *out, const char *s);

#endif

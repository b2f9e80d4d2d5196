/* The queues' counters kept by the function library (queue/lua/counters.lua:
 * <prefix>:{Q}:ctr, never expiring) as Prometheus counters and a histogram:
 * read by corralctl metrics and by corral-web's /metrics (docs/web.md,
 * "Metrics"). */
#ifndef CORRAL_CTL_COUNTERS_H
#define CORRAL_CTL_COUNTERS_H

#include <stdio.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "corral/err.h"

struct ctl;

/* Reads the counters of each queue of queues (the "queues" array of a
 * ctl_snapshot) in one pipeline (on a Cluster, each on its queue's node): {"Q": {"enq": N, ...},
 * ...}, fields missing where nothing was counted yet. The caller owns the result; NULL with err
 * when Redis cannot be read. */
json_t *ctl_counters_read(struct ctl *ctl, json_t *queues, struct corral_err *err);

/* The families corral_jobs_*_total{queue}, corral_service_calls_total
 * {service,outcome} (the counts of the queues that call the service) and
 * the histogram corral_job_processing_seconds{queue,le}. */
void ctl_counters_write(json_t *queues, json_t *counters, FILE *out);

#endif

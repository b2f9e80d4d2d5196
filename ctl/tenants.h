/* corralctl's view of a queue's tenants (docs/protocol.md, "Tenants"):
 * status's per-queue tenant tables, status --tenants, the tenant command
 * and the --tenant filters of dead and cancel. */
#ifndef CORRAL_CTL_TENANTS_H
#define CORRAL_CTL_TENANTS_H

#include <stdio.h>

#include <jansson.h>

#include "ctl.h"

/* Adds to each queue object of a status snapshot (an array of queues) that
 * has had tenants ("tenanted") its "tenants": corral_tenants' answer for
 * the top max(10, the queue's tenant_metrics_top) tenants and
 * "metrics_top". One pipelined round trip, none when no queue has had
 * tenants. */
void ctl_tenants_attach(struct ctl *ctl, json_t *queues);
/* status's tables: per queue with tenants, its top 10 by waiting. */
void ctl_tenants_print(json_t *queues, FILE *out, int color);
/* status --tenants QUEUE [--json]: every tenant of the queue. */
int ctl_tenants_show(struct ctl *ctl, const char *queue, int as_json, int color);
/* tenant QUEUE NAME --weight W */
int ctl_tenant(struct ctl *ctl, int argc, char **argv);
/* dead QUEUE list|retry --tenant T */
int ctl_dead_tenant(struct ctl *ctl, const char *queue, const char *verb, const char *tenant);
/* cancel QUEUE --tenant T: every queued, scheduled and running job of T. */
int ctl_cancel_tenant(struct ctl *ctl, const char *queue, const char *tenant);

#endif

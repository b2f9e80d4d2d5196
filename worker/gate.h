/* A worker's service gate on a Redis Cluster (docs/design.md, "Redis
 * Cluster slots"; docs/protocol.md, "The service gate"). A queue with a
 * service is declared there with service_gate: its calls leave the
 * service's keys alone, and the worker instead asks the gate, a connection
 * to the primary of the service's slot (key "<prefix>:{svc:NAME}"), for
 * permits (corral_gate_acquire) before each reserve, reserves at most as
 * many jobs as it got, gives back what it did not use, and reports how its
 * calls ended (corral_gate_report) once per loop turn, from the outcome
 * FIFO's flush. Reports that cannot be written (the service's node
 * unreachable) are kept and sent again; permits not reported expire at the
 * gate, so a worker that dies leaks none. A queue whose service is a
 * fallback list (docs/breakers.md, "Fallback") has a gate per service of
 * the list, asked in order: the first that grants permits serves the
 * reserve (which names that service: its jobs call it), and each outcome
 * is reported to the gate that granted its permit. */
#ifndef CORRAL_WORKER_GATE_H
#define CORRAL_WORKER_GATE_H

#include <stdint.h>

#include <ev.h>
#include <hiredis/async.h>

#include "connection.h"
#include "corral/config.h"
#include "handler.h"

struct corral_svcgate;
struct corral_wqueues;

struct corral_outcomes;
/* For each queue of qs declared with service_gate (conf->service_gate):
 * its gate (q->gate; a connection per service of its list), connected at once, and told to o (whose
 * flush sends its reports). password may be NULL (copied). */
void corral_svcgates_new(struct corral_wqueues *qs, struct corral_outcomes *o, struct ev_loop *loop,
                         const struct corral_redis_conf *rc, const char *password);
/* Closes every gate's connection after its pending replies (the last
 * report), or at once after grace_ms. */
void corral_svcgates_close(struct corral_wqueues *qs, int64_t grace_ms);
/* NULL-safe. */
void corral_svcgate_free(struct corral_svcgate *g);

/* Sends the reserve cmd (corral_cmd_reserve's: its count, argv[5], is the
 * jobs wanted) on conn with fn and priv as corral_conn_send does, g NULL
 * included. With a gate: permits are asked first (when it holds fewer than
 * wanted), the count becomes the permits held, and fn gets the reserve's
 * reply; with none granted fn gets instead a reply of one "gate <ms>
 * <why>" element, as a reserve whose service takes no calls answers.
 * -1 when nothing was sent (a connection not usable): fn is never called. */
int corral_svcgate_send(struct corral_svcgate *g, struct corral_conn *conn, redisCallbackFn *fn,
                        void *priv, const struct corral_cmd *cmd);
/* A run of a gated queue ended (before the outcome FIFO takes its job id,
 * run and settle): its permit's outcome is kept for the next report. */
void corral_svcgate_outcome(struct corral_svcgate *g, const struct corral_run *run,
                            enum corral_run_end end, const char *data, size_t len,
                            int64_t delay_ms);
/* Sends the kept outcomes in one corral_gate_report, if the gate's
 * connection is usable and no report is in flight (once per loop turn). */
void corral_svcgate_flush(struct corral_svcgate *g);

#endif

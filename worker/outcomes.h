/* The worker's outcome FIFO: how each run ended, kept in memory until Redis
 * has acknowledged it, written once per loop turn (from the engine's
 * ev_prepare, like Redis's beforeSleep) as one corral_ack, corral_fail and
 * corral_defer call per queue; a queue's acks and the worker's next reserve
 * go as one corral_ack_reserve when the engine has free slots. Also the one place that reads the
 * function library's per-job answers to those calls and to corral_renew. */
#ifndef CORRAL_OUTCOMES_H
#define CORRAL_OUTCOMES_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "connection.h"
#include "corral/err.h"
#include "corral/queue.h"
#include "handler.h"

struct corral_outcomes;

/* Writes on conn (only while it is usable), as worker_id, for the queues
 * named (qi below indexes them). Strings are borrowed: they outlive it. */
struct corral_outcomes *corral_outcomes_new(struct corral_conn *conn, const char *prefix,
                                            const char *worker_id, const char *const *queues,
                                            size_t nq);
/* NULL-safe; what is unwritten is lost (the leases expire). */
void corral_outcomes_free(struct corral_outcomes *o);
/* Sends what is unsent, batched, if the connection is usable. Call it once
 * per loop turn, before deciding to reserve (back-pressure reads what the
 * writes answered). */
void corral_outcomes_flush(struct corral_outcomes *o);

/* How the reserve part of a corral_ack_reserve call went: jobs is its
 * reply (jobs and gate, as corral_reserve answers) when Redis answered;
 * NULL with lost 1 when the connection went first (Redis may have leased
 * jobs), NULL with lost 0 when the call was refused (logged by the FIFO) or
 * its reply not understood. Called once per call, after the outcomes it
 * carried are settled. */
typedef void corral_outcomes_reserved_fn(void *priv, const redisReply *jobs, int lost);
/* 1 when queue qi has acks not yet in a call and they may go with a
 * reserve: not while writes fail (a refused call would refuse the reserve
 * too), nor once Redis refused corral_ack_reserve itself (NOPERM). */
int corral_outcomes_has_acks(const struct corral_outcomes *o, size_t qi);
/* corral_outcomes_flush, but queue qi's acks go out last, in one
 * corral_ack_reserve (docs/protocol.md) that also reserves up to want jobs
 * with max_inflight: the worker's one round trip per job. 0 when that call
 * was sent (reserved is then called once); -1 when it was not (no acks for
 * qi, or the connection is not usable), after the rest was flushed. */
int corral_outcomes_flush_reserve(struct corral_outcomes *o, size_t qi, int want, int max_inflight,
                                  corral_outcomes_reserved_fn *reserved, void *priv);
/* Queues an outcome; takes id and run (malloc'ed), copies data. */
void corral_outcomes_add(struct corral_outcomes *o, size_t qi, char *id, char *run,
                         enum corral_run_end end, const char *data, size_t len, int64_t delay_ms);
/* corral_outcomes_add for a finished run: takes its job's id and run and
 * its settle (settle.h; sent as corral_settle before the outcome), leaving
 * them NULL in run. */
void corral_outcomes_add_run(struct corral_outcomes *o, size_t qi, struct corral_run *run,
                             enum corral_run_end end, const char *data, size_t len,
                             int64_t delay_ms);
/* [redis] cluster: queue qi's service gate (gate.h), told of each of its
 * runs' ends and flushed with the outcomes. */
struct corral_svcgate;
void corral_outcomes_set_gate(struct corral_outcomes *o, size_t qi, struct corral_svcgate *g);
/* Outcomes not yet acknowledged by Redis (waiting, or being written). */
size_t corral_outcomes_unwritten(const struct corral_outcomes *o);
/* Of those, the ones not in a call now (the next flush sends them). */
size_t corral_outcomes_unsent(const struct corral_outcomes *o);
/* 1 while writes fail: the last answered write was refused or lost with
 * its connection, and none has gone through since. */
int corral_outcomes_failing(const struct corral_outcomes *o);
/* Back-pressure: whether the worker, with this many slots, must take no
 * new work until its outcomes are written (more unwritten than slots).
 * When Redis refuses them (OOM, READONLY, an ACL) or the connection is
 * lost, each round of refused writes would otherwise add a round of
 * finished jobs held only in memory; so a worker holds at most 2 x slots:
 * what it had when it last reserved, and what it runs. A healthy worker
 * does not wait here: its outcomes go out before its next reserve on the
 * same connection, so they are answered first. Logged only when writes
 * are failing (moved from worker/engine.c). */
int corral_outcomes_held_back(struct corral_outcomes *o, int slots);
/* Appends the job ids of queue qi's unwritten outcomes to cmd. */
void corral_outcomes_add_ids(const struct corral_outcomes *o, size_t qi, struct corral_cmd *cmd);

/* What the library answered for one job of a renew (or an outcome). */
enum corral_answer {
    CORRAL_ANSWER_OK,        /* renewed; written */
    CORRAL_ANSWER_STALE,     /* the run's lease is gone: a newer run exists, or the job ended */
    CORRAL_ANSWER_RECLAIMED, /* the run's lease expired and the job was taken back */
};
/* st[i] for each of the n jobs of a corral_renew reply; -1 with err for an
 * error reply or an unexpected shape. */
int corral_run_answers(const redisReply *r, enum corral_answer *st, size_t n,
                       struct corral_err *err);

#endif

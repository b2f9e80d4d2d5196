/* The worker's outcome FIFO: how each run ended, kept in memory until Redis
 * has acknowledged it, written once per loop turn (from the engine's
 * ev_prepare, like Redis's beforeSleep) as one corral_ack, corral_fail and
 * corral_defer call per queue. Also the one place that reads the function library's per-job
 * answers to those calls and to corral_renew. */
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

/* Queues an outcome; takes id and run (malloc'ed), copies data. */
void corral_outcomes_add(struct corral_outcomes *o, size_t qi, char *id, char *run,
                         enum corral_run_end end, const char *data, size_t len, int64_t delay_ms);
/* Outcomes not yet acknowledged by Redis (waiting, or being written). */
size_t corral_outcomes_unwritten(const struct corral_outcomes *o);
/* Of those, the ones not in a call now (the next flush sends them). */
size_t corral_outcomes_unsent(const struct corral_outcomes *o);
/* 1 while writes fail: the last answered write was refused or lost with
 * its connection, and none has gone through since. */
int corral_outcomes_failing(const struct corral_outcomes *o);
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

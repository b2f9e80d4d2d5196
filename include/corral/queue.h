/* The queue API of libcorral: one C call per function of the corral Redis
 * Function library (queue/lua/, whose comments are the protocol).
 *
 * Every operation comes in two halves so that the blocking programs
 * (corralctl, corrald, benchmarks) and the async worker share them:
 *   corral_cmd_<op>()    builds the FCALL into a struct corral_cmd (argv),
 *   corral_reply_<op>()  turns the reply into C values or a corral_err;
 * and corral_queue_<op>() runs both over a blocking redisContext.
 * Replies are only read, never kept: results are copied out. */
#ifndef CORRAL_QUEUE_H
#define CORRAL_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "corral/config.h"
#include "corral/err.h"

/* libcorral's public API: what follows is exported by libcorral.so, which
 * is built with everything else hidden (include/corral/ only; the Makefile). */
#pragma GCC visibility push(default)

/* An FCALL under construction. Arguments are copied; free with
 * corral_cmd_free (NULL-safe). */
struct corral_cmd {
    int argc;
    int cap;
    char **argv;
    size_t *argvlen;
};

void corral_cmd_init(struct corral_cmd *cmd, const char *function, const char *prefix,
                     const char *queue);
void corral_cmd_add(struct corral_cmd *cmd, const char *arg, size_t len);
void corral_cmd_addstr(struct corral_cmd *cmd, const char *arg);
void corral_cmd_addint(struct corral_cmd *cmd, long long v);
void corral_cmd_free(struct corral_cmd *cmd);
/* Sends the command on a blocking connection; the caller frees the reply. */
redisReply *corral_cmd_run(redisContext *c, const struct corral_cmd *cmd);

/* "<prefix>:{<queue>}", the one key every function takes. Caller frees. */
char *corral_queue_key(const char *prefix, const char *queue);
/* 1 when name is a valid queue name (1-64 of [A-Za-z0-9_.:-]). */
int corral_queue_name_valid(const char *name);

/* A reserved job. Strings are owned by the job; free with corral_jobs_free. */
struct corral_job {
    char *id;
    char *run; /* token of this run: pass it back with ack/fail/defer/renew */
    int attempts;
    int max_attempts;
    int64_t timeout_ms;
    char *priority;
    char *service;
    char *payload;
    size_t payload_len;
};
void corral_jobs_free(struct corral_job *jobs, size_t n);
/* Frees what one job holds and zeroes it (the struct itself is the caller's). */
void corral_job_clear(struct corral_job *j);

/* Enqueue options; zero-initialised means "queue defaults". */
struct corral_enqueue_opts {
    const char *priority; /* a name, or a level index as digits */
    int64_t delay_ms;
    int max_attempts;
    int64_t timeout_ms;
    const char *service;
    const char *unique_key;
    const char *tenant;  /* NULL: the default tenant (docs/protocol.md, "Tenants") */
    int64_t deadline_ms; /* 0: none (docs/protocol.md, "Deadlines") */
};

/* Most payloads one corral_enqueue_many takes (docs/protocol.md). */
#define CORRAL_ENQUEUE_MANY_MAX 1000

/* One payload of a bulk enqueue: JSON text, not owned. */
struct corral_payload {
    const char *data;
    size_t len;
};

/* 0 when o's strings (priority, service, unique_key) are valid UTF-8, as
 * the options JSON needs; else -1 with err naming the queue and the option.
 * corral_queue_enqueue checks; corral_cmd_enqueue would leave such an
 * option out, so its callers check first. */
int corral_enqueue_opts_check(const char *queue, const struct corral_enqueue_opts *o,
                              struct corral_err *err);

/* Why a job is deferred (corral_defer's kind): a plain hand-back, a 429
 * that throttles the queue's service fleet-wide, or a quota/billing error
 * that opens its breaker for breaker_open_max. */
enum corral_defer_kind { CORRAL_DEFER_PLAIN, CORRAL_DEFER_THROTTLE, CORRAL_DEFER_QUOTA };

/* How a run ended, for ack_many / fail_many / defer_many. */
struct corral_outcome {
    const char *id;
    const char *run;
    const char *data; /* ack: result; fail, defer: error text */
    size_t len;
    int permanent;    /* fail: 1 = dead at once, 0 = retry with back-off */
    int64_t delay_ms; /* defer */
    enum corral_defer_kind defer_kind;
};

/* Set by reserve when fewer jobs than asked were handed out because the
 * queue's service is open, throttled, at its rate or max_inflight: jobs
 * wait in the queue for wait_ms (from the reply, by the caller's own
 * clock), or until the service's wake list for this host
 * (corral_service_wake_key) gets a marker. wait_ms 0: no gate. */
struct corral_gate {
    int64_t wait_ms;
    char why[256];
};

/* What corral_ack, corral_fail, corral_defer and corral_renew answer for
 * each job (docs/protocol.md, "Outcomes"): the job's state after the call,
 * or a refusal that wrote nothing.
 *   DONE, DEAD         ack (DEAD: the result was over max_result), fail
 *   SCHEDULED, QUEUED  fail (a retry), defer (QUEUED: no delay, ready now)
 *   ACTIVE             renew: the lease was extended
 *   STALE              no such run of this worker: a newer run started, the
 *                      job is gone, never ran, or already has this outcome
 *   RECLAIMED          this run's lease was taken back (requeued, ended dead,
 *                      cancelled since): drop the outcome; on renew, stop
 *                      the run */
enum corral_run_status {
    CORRAL_STATUS_DONE,
    CORRAL_STATUS_DEAD,
    CORRAL_STATUS_SCHEDULED,
    CORRAL_STATUS_QUEUED,
    CORRAL_STATUS_ACTIVE,
    CORRAL_STATUS_STALE,
    CORRAL_STATUS_RECLAIMED,
};
/* The word of a status as the library answers it ("done", "STALE"). */
const char *corral_run_status_name(enum corral_run_status st);

/* The code word an error reply's text begins with (docs/protocol.md,
 * "Error replies"), from the one table of queue/codes.c; the error replies
 * that corral_redis_check turns into a corral_err carry it as err->word. */
enum corral_err_word corral_reply_word(const char *text, size_t len);
/* The word as documented ("NOQUEUE", "READONLY"); "" for NONE. */
const char *corral_err_word_name(enum corral_err_word word);
/* 1 when the word says this node is not (or no longer) the master:
 * READONLY, LOADING, MASTERDOWN, UNBLOCKED. The caller drops the connection
 * and finds the master again (docs/ha.md, "When to look again"). */
int corral_err_word_moved(enum corral_err_word word);

/* Builders: the FCALL for each operation. */
void corral_cmd_declare(struct corral_cmd *cmd, const char *prefix,
                        const struct corral_queue_conf *q);
void corral_cmd_enqueue(struct corral_cmd *cmd, const char *prefix, const char *queue,
                        const char *payload, size_t len, const struct corral_enqueue_opts *o);
/* corral_enqueue_many: n payloads (1 to CORRAL_ENQUEUE_MANY_MAX for the
 * library to take them) with one set of options, o (NULL: defaults). */
void corral_cmd_enqueue_many(struct corral_cmd *cmd, const char *prefix, const char *queue,
                             const struct corral_payload *p, size_t n,
                             const struct corral_enqueue_opts *o);
/* max_inflight: this host's limit of calls in flight to the queue's
 * service (0 = none). Always sent: it also tells the library that this
 * caller understands the gate element of the reply. */
void corral_cmd_reserve(struct corral_cmd *cmd, const char *prefix, const char *queue,
                        const char *worker, int n, int max_inflight);
/* corral_reclaim_worker's "keep" form, for a live worker whose reserve
 * reply was lost: the caller appends the ids it holds (corral_cmd_addstr);
 * every other job leased to worker goes back, its attempt given back. */
void corral_cmd_reclaim_keep(struct corral_cmd *cmd, const char *prefix, const char *queue,
                             const char *worker);
void corral_cmd_ack(struct corral_cmd *cmd, const char *prefix, const char *queue,
                    const char *worker, const struct corral_outcome *o, size_t n);
/* corral_ack_reserve (docs/protocol.md): the n outcomes acked, then up to
 * want jobs reserved for worker with max_inflight (as corral_cmd_reserve),
 * in one call: a worker's one round trip per job at steady state. */
void corral_cmd_ack_reserve(struct corral_cmd *cmd, const char *prefix, const char *queue,
                            const char *worker, const struct corral_outcome *o, size_t n, int want,
                            int max_inflight);
void corral_cmd_fail(struct corral_cmd *cmd, const char *prefix, const char *queue,
                     const char *worker, const struct corral_outcome *o, size_t n);
void corral_cmd_defer(struct corral_cmd *cmd, const char *prefix, const char *queue,
                      const char *worker, const struct corral_outcome *o, size_t n);
void corral_cmd_renew(struct corral_cmd *cmd, const char *prefix, const char *queue,
                      const char *worker, const struct corral_outcome *o, size_t n);

/* Reply parsers. Each returns 0, or -1 with err set from an error reply or
 * an unexpected shape. Arrays out are caller-allocated with n entries. */
int corral_reply_enqueue(const redisReply *r, char **id_out, struct corral_err *err);
/* The reply of corral_enqueue_many for n payloads: ids_out[i] is the id of
 * payload i, each freed by the caller. On error nothing is set; a reply
 * that is not n ids is an error. */
int corral_reply_enqueue_many(const redisReply *r, char **ids_out, size_t n,
                              struct corral_err *err);
/* gate (may be NULL) is filled from the reply's trailing gate element. */
int corral_reply_reserve(const redisReply *r, struct corral_job **jobs_out, size_t *n_out,
                         struct corral_gate *gate, struct corral_err *err);
/* The reply of ack, fail, defer and renew for n jobs: st[i] per job. A
 * reply of another length, or a word that is not a status, is an error. */
int corral_reply_runs(const redisReply *r, enum corral_run_status *st, size_t n,
                      struct corral_err *err);

/* The reply of corral_ack_reserve for n outcomes: st[i] per outcome (as
 * corral_reply_runs), then the jobs and gate (as corral_reply_reserve;
 * *jobs_out is the caller's to free with corral_jobs_free). On -1 nothing
 * is left allocated. */
int corral_reply_ack_reserve(const redisReply *r, enum corral_run_status *st, size_t n,
                             struct corral_job **jobs_out, size_t *n_out, struct corral_gate *gate,
                             struct corral_err *err);

/* Blocking forms. */
int corral_queue_declare(redisContext *c, const char *prefix, const struct corral_queue_conf *q,
                         struct corral_err *err);
/* *id_out is the new job's id (or the existing one for a duplicate
 * unique_key); caller frees. A Redis full under noeviction refuses it with
 * err->word CORRAL_WORD_OOM and "queue "q": redis is full ...: job not
 * created"; nothing was written, and the same call may be made again once
 * memory frees (corral_queue_enqueue_many likewise). */
int corral_queue_enqueue(redisContext *c, const char *prefix, const char *queue,
                         const char *payload, size_t len, const struct corral_enqueue_opts *o,
                         char **id_out, struct corral_err *err);
/* n payloads (1 to CORRAL_ENQUEUE_MANY_MAX) in one call, all or nothing:
 * each is checked here (JSON text) and by the library before anything is
 * written, and a refusal names the first bad one ("payload 3 of 4").
 * ids_out (caller-allocated, n entries) gets the ids in the order of the
 * payloads, each freed by the caller; on error nothing is set. */
int corral_queue_enqueue_many(redisContext *c, const char *prefix, const char *queue,
                              const struct corral_payload *p, size_t n,
                              const struct corral_enqueue_opts *o, char **ids_out,
                              struct corral_err *err);
/* Durable enqueue ([redis] min_replicas; docs/protocol.md, "Durable
 * enqueue"): WAIT n timeout_ms on the connection that just enqueued, so
 * every write made on it so far is confirmed by n replicas. 0 when they
 * did; 1 when fewer did in time (err, code CORRAL_ERR_TIMEOUT, says how
 * many: the job exists on the master and may be lost if it fails before
 * replicating it); -1 when WAIT failed (err). n <= 0: 0 at once. */
#define CORRAL_CONFIRM_TIMEOUT_MS 1000
int corral_queue_confirm(redisContext *c, int n, int64_t timeout_ms, struct corral_err *err);
/* Up to n jobs; *jobs_out (NULL when none) is freed with corral_jobs_free. */
int corral_queue_reserve(redisContext *c, const char *prefix, const char *queue, const char *worker,
                         int n, struct corral_job **jobs_out, size_t *n_out,
                         struct corral_gate *gate, struct corral_err *err);
/* Outcomes and renewals of n runs; st (n entries) gets each one's status. */
int corral_queue_ack(redisContext *c, const char *prefix, const char *queue, const char *worker,
                     const struct corral_outcome *o, size_t n, enum corral_run_status *st,
                     struct corral_err *err);
/* corral_ack_reserve: acks n outcomes (st[i] per outcome) and reserves up to
 * want jobs (max_inflight 0: none) in one call; *jobs_out as
 * corral_queue_reserve's. */
int corral_queue_ack_reserve(redisContext *c, const char *prefix, const char *queue,
                             const char *worker, const struct corral_outcome *o, size_t n,
                             enum corral_run_status *st, int want, int max_inflight,
                             struct corral_job **jobs_out, size_t *n_out, struct corral_gate *gate,
                             struct corral_err *err);
int corral_queue_fail(redisContext *c, const char *prefix, const char *queue, const char *worker,
                      const struct corral_outcome *o, size_t n, enum corral_run_status *st,
                      struct corral_err *err);
int corral_queue_defer(redisContext *c, const char *prefix, const char *queue, const char *worker,
                       const struct corral_outcome *o, size_t n, enum corral_run_status *st,
                       struct corral_err *err);
int corral_queue_renew(redisContext *c, const char *prefix, const char *queue, const char *worker,
                       const struct corral_outcome *o, size_t n, enum corral_run_status *st,
                       struct corral_err *err);

/* Housekeeping; each returns how many jobs moved (>= 0), or -1. */
long long corral_queue_promote(redisContext *c, const char *prefix, const char *queue,
                               struct corral_err *err);
long long corral_queue_reclaim(redisContext *c, const char *prefix, const char *queue,
                               struct corral_err *err);
/* worker is an id, or "<host>:*" for every worker of a host. */
long long corral_queue_reclaim_worker(redisContext *c, const char *prefix, const char *queue,
                                      const char *worker, struct corral_err *err);

/* Operator actions. ids NULL with n 0 and all=1 retries every dead job. */
long long corral_queue_dead_retry(redisContext *c, const char *prefix, const char *queue,
                                  const char *const *ids, size_t n, int all,
                                  struct corral_err *err);
long long corral_queue_dead_purge(redisContext *c, const char *prefix, const char *queue,
                                  struct corral_err *err);
int corral_queue_pause(redisContext *c, const char *prefix, const char *queue, int pause,
                       struct corral_err *err);
int corral_queue_cancel(redisContext *c, const char *prefix, const char *queue, const char *id,
                        struct corral_err *err);
/* Cancels every queued, scheduled and running job of tenant, in calls of
 * corral_cancel_tenant that each look at no more than 1,000 jobs, until
 * none is left -> how many were cancelled, or -1 with err (a bad tenant
 * name is CORRAL_ERR_INVALID). */
long long corral_queue_cancel_tenant(redisContext *c, const char *prefix, const char *queue,
                                     const char *tenant, struct corral_err *err);

/* The job as a JSON object (see docs/protocol.md); caller frees. A job that
 * does not exist is CORRAL_ERR_NOTFOUND naming queue and id. */
int corral_queue_job(redisContext *c, const char *prefix, const char *queue, const char *id,
                     char **json_out, struct corral_err *err);
/* For pipelines (corralctl status): the builders of corral_queue_stats and
 * corral_service_breaker, and the parser of their one-JSON-string replies
 * (*json_out, caller frees; an unknown queue or service is NOTFOUND). */
/* lean: without the queue's breaker (status reads the breakers apart). */
void corral_cmd_stats(struct corral_cmd *cmd, const char *prefix, const char *queue, int window_s,
                      int lean);
void corral_cmd_breaker(struct corral_cmd *cmd, const char *prefix, const char *name);
int corral_reply_json(const redisReply *r, const char *what, char **json_out,
                      struct corral_err *err);

/* The queue's statistics as a JSON object over the last window_s seconds;
 * caller frees. */
int corral_queue_stats(redisContext *c, const char *prefix, const char *queue, int window_s,
                       char **json_out, struct corral_err *err);
/* Every declared queue name; caller frees with corral_strlist_free. */
int corral_queue_list(redisContext *c, const char *prefix, struct corral_strlist *out,
                      struct corral_err *err);

/* The distinct worker ids holding leases on the queue; caller frees with
 * corral_strlist_free. */
int corral_queue_lease_holders(redisContext *c, const char *prefix, const char *queue,
                               struct corral_strlist *out, struct corral_err *err);

/* Blocks until the job has ended or timeout_ms passed (0 = no limit) with
 * one blocking command; *state_out is "done", "dead" or "cancelled"
 * (caller frees). Ran out: CORRAL_ERR_TIMEOUT. No such job: NOTFOUND. */
int corral_queue_wait(redisContext *c, const char *prefix, const char *queue, const char *id,
                      int64_t timeout_ms, char **state_out, struct corral_err *err);

/* --- Services: breakers, throttles, limits (shared by the fleet) ---------
 * Keys: "<prefix>:svc:<name>" and below it (see queue/lua/services.lua). */

/* 1 when name is a valid service name (the same rule as queue names). */
int corral_service_name_valid(const char *name);
/* "<prefix>:svc:<name>:wake:<host>": BLPOP'ed by a host's workers that wait
 * for the service. Caller frees. */
char *corral_service_wake_key(const char *prefix, const char *name, const char *host);
/* On a Redis Cluster a service's keys share the hash tag {svc:NAME}: its
 * key is "<prefix>:{svc:NAME}" (docs/protocol.md, "The service gate").
 * corral_cmd_service_tag puts it in place of a service command's key
 * (argv[3], as corral_cmd_declare_service and corral_cmd_breaker build). */
char *corral_service_gate_key(const char *prefix, const char *name);
void corral_cmd_service_tag(struct corral_cmd *cmd, const char *prefix, const char *name);
/* Registers the service's breaker and rate settings (keeps its state). */
void corral_cmd_declare_service(struct corral_cmd *cmd, const char *prefix,
                                const struct corral_service_conf *s);
int corral_service_declare(redisContext *c, const char *prefix, const struct corral_service_conf *s,
                           struct corral_err *err);
/* The breaker, throttle and limits as a JSON object (docs/protocol.md);
 * caller frees. An undeclared service is CORRAL_ERR_NOTFOUND. */
int corral_service_breaker(redisContext *c, const char *prefix, const char *name, char **json_out,
                           struct corral_err *err);
/* Closes the breaker and ends a throttle; waiting workers resume. */
int corral_service_reset(redisContext *c, const char *prefix, const char *name,
                         struct corral_err *err);
/* Every declared service name; caller frees with corral_strlist_free. */
int corral_service_list(redisContext *c, const char *prefix, struct corral_strlist *out,
                        struct corral_err *err);

#pragma GCC visibility pop

#endif

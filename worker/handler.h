/* The whole contract between corral-worker's engine and its handlers (echo,
 * exec, http), after curl's Curl_handler: one const ops table per handler.
 * The engine never names a handler's internals; a handler never calls into
 * the engine, only the finish callback the run carries (tmux's job_run(...,
 * completecb, ...)). Handlers include this header, nothing of the engine.
 *
 * Life of a run: the engine fills a struct corral_run and calls start. The
 * handler does the work on run->loop and ends the run with exactly one call
 * of run->finish (from start itself or from a later callback), after which
 * the run is gone. Or the engine calls abort first: the handler stops the
 * work at once (the HTTP transfer closed, the exec child killed and reaped),
 * frees its state, and never calls finish. */
#ifndef CORRAL_HANDLER_H
#define CORRAL_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "corral/config.h"
#include "corral/err.h"
#include "corral/queue.h"

/* How a run ended; what the engine writes to Redis for it. */
enum corral_run_end {
    CORRAL_END_DONE,      /* data = result */
    CORRAL_END_RETRY,     /* data = error; back-off, spends the attempt */
    CORRAL_END_PERMANENT, /* data = error; dead at once */
    CORRAL_END_DEFER,     /* delay_ms; the attempt is refunded */
    CORRAL_END_THROTTLE,  /* a 429: like DEFER, and the service waits delay_ms fleet-wide */
    CORRAL_END_QUOTA,     /* a billing error: like DEFER, and the service's breaker opens */
};

struct corral_run;
struct corral_settle;
struct corral_stream_sink;

/* Ends a run. data (len bytes, may be NULL) is copied; the run must not be
 * used after the call. */
typedef void corral_run_finish_fn(struct corral_run *run, enum corral_run_end end, const char *data,
                                  size_t len, int64_t delay_ms);

/* One job being run. The engine owns it and everything in it except
 * state, which is the handler's. */
struct corral_run {
    struct ev_loop *loop;                 /* every watcher of the run goes on this loop */
    const struct corral_queue_conf *conf; /* the job's queue */
    void *queue_state;                    /* the handler's, from queue_init (or NULL) */
    struct corral_job job;                /* read-only for the handler */
    corral_run_finish_fn *finish;         /* exactly once, unless the run is aborted */
    struct corral_stream_sink *sink;      /* where a streamed answer goes (stream.h) */
    void *state;                          /* the handler's own, set by start */
    /* The call's usage (settle.h), malloc'ed by the handler just before
     * finish (NULL: none); the outcome takes it. */
    struct corral_settle *settle;
};

struct corral_handler_ops {
    const char *name;
    /* Per-queue state from the config (exec: the split command; http: the
     * service, its API key and a libcurl multi handle on loop), stored in
     * *state. Returns 0, or -1 with err saying why the queue cannot be
     * served. NULL when the handler needs none. */
    int (*queue_init)(struct ev_loop *loop, const struct corral_config *cfg,
                      const struct corral_queue_conf *q, void **state, struct corral_err *err);
    /* Starts the run; ends it at once or later through run->finish. */
    void (*start)(struct corral_run *run);
    /* Stops a started run that has not finished, at once, and frees the
     * handler's state for it. run->finish is not called. */
    void (*abort)(struct corral_run *run);
    /* Frees queue_init's state (NULL-safe); no run of the queue is left.
     * NULL when queue_init is. */
    void (*queue_free)(void *state);
};

extern const struct corral_handler_ops corral_echo_handler;
extern const struct corral_handler_ops corral_exec_handler;
extern const struct corral_handler_ops corral_http_handler;

/* The ops for a queue's `handler` setting. */
const struct corral_handler_ops *corral_handler_ops_for(enum corral_handler h);

#endif

/* corral-worker's internals, shared by its modules: the engine (Redis,
 * slots, outcomes, leases, fd 3, drain) and the handlers (echo, exec, http).
 * A handler gets a struct corral_run, does the work on the worker's libev
 * loop, and ends it with exactly one call to corral_run_finish(). */
#ifndef CORRAL_WORKER_H
#define CORRAL_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "corral/config.h"
#include "corral/queue.h"

struct corral_worker;
struct corral_http;

/* A queue this worker serves, with what its handler needs. */
struct corral_wqueue {
    const struct corral_queue_conf *conf;
    const struct corral_service_conf *service; /* handler = http */
    char **argv;                               /* handler = exec: the split command */
    char *api_key;                             /* handler = http, or NULL */
    char *wake_key;
    char *svc_wake_key;     /* the service's wake list for this host, or NULL */
    int max_inflight;       /* the service's per-host limit, 0 = none */
    int64_t gated_until_ms; /* reserve said: the service takes no calls until then (monotonic) */
    char gate_why[256];     /* and why, to log each new gate once */
    int lost_reserve;       /* a reserve's reply was lost: jobs may be leased to us unseen */
};

enum corral_run_end {
    CORRAL_RUN_DONE,      /* data = result */
    CORRAL_RUN_RETRY,     /* data = error; back-off, spends the attempt */
    CORRAL_RUN_PERMANENT, /* data = error; dead at once */
    CORRAL_RUN_DEFER,     /* delay_ms; the attempt is refunded */
    CORRAL_RUN_THROTTLE,  /* a 429: like DEFER, and the service waits delay_ms fleet-wide */
    CORRAL_RUN_QUOTA,     /* a billing error: like DEFER, and the service's breaker opens */
    CORRAL_RUN_ABORTED,   /* forced exit: no outcome is written, the lease expires */
};

/* One job running in a slot. Owned by the engine. */
struct corral_run {
    struct corral_worker *w;
    struct corral_wqueue *q;
    struct corral_job job;
    int64_t started_ms;
    void *handler;                         /* the handler's own state */
    void (*abort)(struct corral_run *run); /* forced stop; must end the run (ABORTED) */
    struct corral_run *next;
};

/* Ends a run: frees its slot and queues its outcome for Redis. data is
 * copied. Safe to call from any handler callback, exactly once per run. */
void corral_run_finish(struct corral_run *run, enum corral_run_end end, const char *data,
                       size_t len, int64_t delay_ms);

/* Handlers. Each starts the job or ends it at once through
 * corral_run_finish. */
void corral_echo_start(struct corral_run *run);
void corral_exec_start(struct corral_run *run);
void corral_http_start(struct corral_http *h, struct corral_run *run);

/* The http engine: libcurl's multi interface on the worker's loop. */
/* Loads libcurl on first use; NULL with err when it cannot. */
struct corral_http *corral_http_new(struct ev_loop *loop, struct corral_err *err);
void corral_http_free(struct corral_http *h);

/* Splits a command line on blanks, honouring '...' and "..." quotes and
 * backslash escapes, without a shell. Returns a NULL-terminated argv
 * (free with corral_argv_free), or NULL with err set. */
char **corral_split_command(const char *cmd, struct corral_err *err);
void corral_argv_free(char **argv);

/* The engine. */
struct corral_worker_opts {
    struct corral_config *cfg;
    const char *const *queues; /* names; each has a [queue] section */
    size_t nqueues;
    int concurrency;
    int fd3; /* socket to corrald, or -1 */
};

struct corral_worker *corral_worker_new(struct ev_loop *loop, const struct corral_worker_opts *o,
                                        struct corral_err *err);
/* Runs until drained (SIGTERM) or aborted; returns the exit code. */
int corral_worker_run(struct corral_worker *w);
void corral_worker_free(struct corral_worker *w);

#endif

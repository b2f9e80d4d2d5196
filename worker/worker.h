/* corral-worker's engine, as main() sees it: build a worker from the
 * config, run it until it has drained, free it. The engine's parts are
 * connection.h (Redis), channel.h (fd 3 to corrald), outcomes.h (the
 * outcome FIFO) and handler.h (the contract with the handlers). */
#ifndef CORRAL_WORKER_H
#define CORRAL_WORKER_H

#include <stddef.h>

#include <ev.h>

#include "corral/config.h"
#include "corral/err.h"

struct corral_worker;

struct corral_worker_opts {
    struct corral_config *cfg;
    const char *const *queues; /* names; each has a [queue] section */
    size_t nqueues;
    int concurrency;
    int fd3; /* socket to corrald, or -1 */
};

/* loop must be the default loop (the exec handler watches children). NULL
 * with err when a queue cannot be served (a bad command, an unreadable key
 * or password file, no libcurl). */
struct corral_worker *corral_worker_new(struct ev_loop *loop, const struct corral_worker_opts *o,
                                        struct corral_err *err);
/* Runs until drained (SIGTERM) or aborted; returns the exit code. */
int corral_worker_run(struct corral_worker *w);
void corral_worker_free(struct corral_worker *w);

#endif

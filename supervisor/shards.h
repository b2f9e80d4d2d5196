/* corrald on a Redis Cluster (docs/design.md, "Redis Cluster slots"): a
 * worker serves one queue there, on the primary holding the queue's slot,
 * so the pool is split per queue. Pure policy, no I/O (tests/unit). */
#ifndef CORRAL_SHARDS_H
#define CORRAL_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#include "corral/config.h"

/* The queues one corrald serves on a Cluster at most (the scaler's). */
#define CORRAL_SHARDS_MAX_QUEUES 64

/* 0 when cfg can be served on a Cluster; -1 with why (naming the option)
 * when not: a queue with a service, [pool] max below the number of
 * queues (each queue needs a worker of its own), or more queues than
 * CORRAL_SHARDS_MAX_QUEUES. */
int corral_shards_check(const struct corral_config *cfg, char *why, size_t len);

/* The pool's least size: [pool] min, on a Cluster at least one worker a
 * queue. */
int corral_shards_min(const struct corral_config *cfg);

/* The queue the next worker serves, an index below n: a queue without a
 * worker first (in order), else the one with the most jobs (load: depth
 * plus in flight) per worker. workers[i]: live workers serving queue i. */
size_t corral_shards_pick(size_t n, const int *workers, const int64_t *load);

/* Whether a worker of a queue with `workers` live workers may be stopped
 * to scale in: not its queue's last one. */
int corral_shards_may_stop(int workers);

#endif

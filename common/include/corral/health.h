/* What Redis itself says about its fitness to hold corral's jobs (issue 18,
 * docs/ha.md "A Redis that is full, evicting or not persisting"): role,
 * master, replicas with lag, memory, eviction policy, persistence, and the
 * warnings corrald logs and `corralctl status` prints. */
#ifndef CORRAL_HEALTH_H
#define CORRAL_HEALTH_H

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "corral/config.h"

/* Memory use at or above this percent of maxmemory is warned about. */
#define CORRAL_HEALTH_MEMORY_PCT 90

/* The `redis` object of `status --json` (docs/operations.md): reads INFO
 * replication, memory and persistence, and CONFIG GET save when allowed.
 * Never NULL: a read that fails gives {"error": "..."} and no warnings. */
json_t *corral_redis_health(redisContext *c, const struct corral_redis_conf *conf);

/* The same object from INFO text (a pure function, for tests). save is
 * the `save` setting ("" off), or NULL when unknown (CONFIG refused); addr
 * is the address connected to (the master's, when it is one). */
json_t *corral_health_from_info(const char *info, const char *save, const char *addr);

#endif

/* The split of corrald's pool per queue on a Redis Cluster (shards.h). */
#include "shards.h"

#include <stdio.h>

int corral_shards_check(const struct corral_config *cfg, char *why, size_t len)
{
    const struct corral_strlist *qs = &cfg->pool.queues;
    if (qs->n > CORRAL_SHARDS_MAX_QUEUES) {
        snprintf(why, len,
                 "[pool] queues: on a Redis Cluster corrald serves at most %d queues "
                 "(got %zu)",
                 CORRAL_SHARDS_MAX_QUEUES, qs->n);
        return -1;
    }
    if ((size_t)cfg->pool.max < qs->n) {
        snprintf(why, len,
                 "[pool] max = %d: on a Redis Cluster each worker serves one queue, so max must "
                 "be at least the number of queues (%zu)",
                 cfg->pool.max, qs->n);
        return -1;
    }
    return 0;
}

int corral_shards_min(const struct corral_config *cfg)
{
    if (cfg->redis.cluster.n > 0 && cfg->pool.min < (int)cfg->pool.queues.n)
        return (int)cfg->pool.queues.n;
    return cfg->pool.min;
}

size_t corral_shards_pick(size_t n, const int *workers, const int64_t *load)
{
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        if (workers[i] == 0)
            return i;
        /* load[i] / workers[i] > load[best] / workers[best], without division */
        if (load[i] * workers[best] > load[best] * workers[i])
            best = i;
    }
    return best;
}

int corral_shards_may_stop(int workers)
{
    return workers > 1;
}

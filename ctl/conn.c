/* corralctl's one Redis connection: made, and made again after it was
 * lost (the waits and status --watch ride out a Redis restart). */
#include <stddef.h>

#include "corral/bootstrap.h"
#include "corral/redis.h"
#include "ctl.h"

int ctl_lost(const struct ctl *ctl)
{
    return ctl->redis == NULL || ctl->redis->err != 0;
}

int ctl_reconnect(struct ctl *ctl, struct corral_err *err)
{
    if (ctl->redis != NULL)
        redisFree(ctl->redis);
    ctl->redis = corral_redis_connect(&ctl->cfg->redis, 5000, err);
    if (ctl->redis != NULL && corral_bootstrap_run(ctl->redis, ctl->cfg, CORRAL_BOOTSTRAP_LIBRARY,
                                                   NULL, 0, NULL, err) < 0) {
        redisFree(ctl->redis);
        ctl->redis = NULL;
    }
    return ctl->redis != NULL ? 0 : -1;
}

/* corralctl's control of a job in flight: cancel (docs/protocol.md,
 * "Cancel"). */
#include <stdio.h>

#include "corral/queue.h"
#include "ctl.h"

int ctl_cancel(struct ctl *ctl, int argc, char **argv)
{
    if (argc != 2)
        return ctl_usage_error("%s", "cancel: QUEUE and ID are required");
    struct corral_err err;
    if (corral_queue_cancel(ctl->redis, ctl->cfg->redis.prefix, argv[0], argv[1], &err) < 0) {
        fprintf(stderr, "corralctl: %s\n", err.msg);
        return 1;
    }
    printf("cancelled\n");
    return 0;
}

/* The echo handler: the result is the payload. For demos and benchmarks. */
#include "handler.h"

static void echo_start(struct corral_run *run)
{
    run->finish(run, CORRAL_END_DONE, run->job.payload, run->job.payload_len, 0);
}

/* Never called: an echo run ends inside start. */
static void echo_abort(struct corral_run *run)
{
}

const struct corral_handler_ops corral_echo_handler = {
    .name = "echo",
    .start = echo_start,
    .abort = echo_abort,
};

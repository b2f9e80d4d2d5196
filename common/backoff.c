/* Exponential back-off with equal jitter (see corral/backoff.h). */
#include "corral/backoff.h"

#include <time.h>
#include <unistd.h>

static uint64_t next_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

void corral_backoff_init(struct corral_backoff *b, int64_t base_ms, int64_t cap_ms)
{
    if (base_ms < 1)
        base_ms = 1;
    if (cap_ms < base_ms)
        cap_ms = base_ms;
    b->base_ms = base_ms;
    b->cap_ms = cap_ms;
    b->cur_ms = base_ms;
    b->tries = 0;
    /* Seeded from the pid, the clock and the object's address, so that
     * processes (and connections of one process) forked together drift. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    b->rng = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)b ^
             0x9e3779b97f4a7c15ull;
    if (b->rng == 0)
        b->rng = 1;
}

int64_t corral_backoff_next(struct corral_backoff *b)
{
    int64_t half = b->cur_ms / 2;
    int64_t wait = half + (int64_t)(next_rand(&b->rng) % (uint64_t)(b->cur_ms - half + 1));
    b->cur_ms = b->cur_ms > b->cap_ms / 2 ? b->cap_ms : b->cur_ms * 2;
    b->tries++;
    return wait;
}

void corral_backoff_reset(struct corral_backoff *b)
{
    b->cur_ms = b->base_ms;
    b->tries = 0;
}

/* Private to corral's programs, which link the static libcorral.a: not
 * installed, not exported by libcorral.so (the public API is include/corral/). */
/* Exponential back-off with jitter to a cap, for every reconnect and retry
 * path of the programs (corrald, each worker connection, corralctl's waits):
 * a fleet that lost its Redis must not come back as a synchronized flood,
 * and none may retry in a tight loop (docs/design.md, "Retries").
 *
 * Each wait is drawn from [cur/2, cur] ("equal jitter"): never shorter than
 * half the current step, so there is always a floor, and spread enough that
 * workers started together drift apart. The step doubles after each wait up
 * to cap_ms and goes back to base_ms on corral_backoff_reset (success). */
#ifndef CORRAL_BACKOFF_H
#define CORRAL_BACKOFF_H

#include <stdint.h>

struct corral_backoff {
    int64_t base_ms;
    int64_t cap_ms;
    int64_t cur_ms; /* the step the next wait is drawn from */
    uint64_t rng;   /* xorshift state, seeded per process and object */
    unsigned tries; /* waits handed out since the last reset */
};

/* base_ms >= 1 and cap_ms >= base_ms (clamped when not). */
void corral_backoff_init(struct corral_backoff *b, int64_t base_ms, int64_t cap_ms);
/* The wait before the next try, in ms; advances the step. */
int64_t corral_backoff_next(struct corral_backoff *b);
/* After a success: the next failure waits about base_ms again. */
void corral_backoff_reset(struct corral_backoff *b);

#endif

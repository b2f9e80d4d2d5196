/* The scaling policy: a pure function from what corrald observes in one
 * tick (its queues, its workers, its host, the live hosts) and the state it
 * keeps between ticks to the desired worker count and a one-line reason.
 * No I/O, no clocks, no allocation: time comes in with the input, so the
 * unit tests and bench/sim_scaler drive it tick by tick. docs/scaling.md
 * explains the formula and every rule.
 *
 * Use, once per [scale] tick:
 *
 *     static struct corral_scaler_state st;      // zeroed once, kept by the caller
 *     struct corral_scale_decision d;
 *     corral_scale_decide(&policy, &input, &st, &d);
 *     if (d.desired != input.workers) log d.reason; start or stop workers;
 *     if (d.warn_pinned) warn once that the pool is pinned at max;
 *
 * and to stop one worker for a shrink, corral_scale_pick_idle() on the
 * worker table (it never picks a busy one; -1 means wait for one to idle).
 *
 * Field conventions: durations in ms, fractions per mille (80% = 800), rates
 * per second. Every field left zero by a designated initialiser means
 * "nothing there" (no load, no busy worker, host idle), never "unknown and
 * dangerous", so a caller that does not track a field gets the old
 * behaviour rather than a stuck pool. */
#ifndef CORRAL_SCALER_H
#define CORRAL_SCALER_H

#include <stddef.h>
#include <stdint.h>

/* [pool] and [scale] settings, as plain numbers (the caller copies them
 * from the config). Out-of-range values are treated as their nearest sane
 * value; see corral_scale_decide. */
struct corral_scale_policy {
    int min;                       /* [pool] min */
    int max;                       /* [pool] max */
    int slots_per_worker;          /* [pool] concurrency */
    int64_t tick_ms;               /* [scale] tick: how often the caller decides */
    int64_t target_wait_ms;        /* [scale] target_wait */
    int target_utilization_pm;     /* [scale] target_utilization, per mille */
    int64_t scale_out_cooldown_ms; /* [scale] scale_out_cooldown */
    int64_t scale_in_window_ms;    /* [scale] scale_in_window */
    int cpu_ceiling_pm;            /* [scale] cpu_ceiling; 0 = no ceiling */
    int mem_ceiling_pm;            /* [scale] mem_ceiling; 0 = no ceiling */
    int max_step_out;              /* workers added in one step at most; 0 = no bound */
};

/* One served queue as corral_stats reports it (rates and processing times
 * over its window), plus its breaker and the live hosts serving it. */
struct corral_scale_queue {
    const char *name;
    int64_t depth;           /* ready jobs, all priorities */
    int64_t inflight;        /* running, fleet-wide */
    double arrival_per_s;    /* enqueued_per_s */
    double completion_per_s; /* done_per_s (fallback for the processing time) */
    int64_t proc_ms_mean;    /* 0: no job finished in the window */
    int64_t proc_ms_p95;     /* 0: unknown; only shown in the reason */
    int64_t oldest_wait_ms;  /* age of the oldest ready job; only shown */
    int paused;              /* corralctl pause: serve nothing new */
    int held;                /* its service's breaker is open or throttled */
    const char *hold_reason; /* with held: e.g. "breaker open for service openai" */
    int hosts;               /* live hosts serving it (heartbeats), this one included; <1 = 1 */
};

/* One tick's observations. */
struct corral_scale_input {
    int64_t now_ms; /* monotonic */
    const struct corral_scale_queue *queues;
    size_t nqueues;
    int workers;      /* local workers that count: starting, idle or busy; not draining */
    int busy_workers; /* of those, running at least one job (never stopped to shrink) */
    int cpu_pm;       /* host CPU in use, per mille */
    int mem_pm;       /* host memory in use, per mille; -1 unknown */
};

/* Demand above this many workers is reported as this many (absurd
 * inputs must not overflow an int). */
#define CORRAL_SCALE_DEMAND_CAP 1000000

/* The scale-in window's history: the highest demand per time bucket, a
 * ring of CORRAL_SCALE_BUCKETS buckets whatever the window and the tick. */
#define CORRAL_SCALE_BUCKETS 128

/* What the scaler remembers between ticks. Zero it before the first tick
 * (and nowhere else: a reload keeps it); the caller owns it. */
struct corral_scaler_state {
    int64_t bucket_ms; /* width of a history bucket; 0 = not set up yet */
    int64_t bucket_id[CORRAL_SCALE_BUCKETS];
    int bucket_max[CORRAL_SCALE_BUCKETS];
    int grown;              /* a growth step happened ... */
    int64_t last_growth_ms; /* ... at this time */
    int pinned;             /* the previous tick was pinned at max */
    int step_cut;           /* the last growth step was cut short by max_step_out */
    int held;               /* the previous tick had a queue held by its breaker */
    int backlog;            /* the previous tick saw a backlog (ONSET_FACTOR, scaler.c) ... */
    int64_t backlog_ms;     /* ... since this time */
};

enum corral_scale_action {
    CORRAL_SCALE_STEADY, /* desired == workers, nothing asks for a change */
    CORRAL_SCALE_GROW,
    CORRAL_SCALE_SHRINK,
    CORRAL_SCALE_HOLD, /* a change is wanted but a rule holds the pool where it is */
};

/* The output of one tick. */
struct corral_scale_decision {
    int desired;           /* workers this host should run */
    int demand;            /* workers the load needs here, before bounds and damping */
    double demand_workers; /* the same, unrounded (capped at CORRAL_SCALE_DEMAND_CAP) */
    int window_max;        /* the highest demand of the scale-in window */
    enum corral_scale_action action;
    int pinned_at_max; /* demand > max */
    int warn_pinned;   /* pinned now and not on the previous tick: warn once */
    char reason[200];  /* one line, e.g. "8 -> 12: prompts depth 340, in 12.0/s, ..." */
};

/* Decides one tick. Reads p and in, updates st, fills out; never fails.
 * Deterministic: the same (p, in, st) always gives the same out and st. */
void corral_scale_decide(const struct corral_scale_policy *p, const struct corral_scale_input *in,
                         struct corral_scaler_state *st, struct corral_scale_decision *out);

/* "grow", "shrink", "hold" or "steady": the machine word for logs and
 * heartbeats. */
const char *corral_scale_action_name(enum corral_scale_action a);

/* Job slots one queue needs on this host (fleet-wide need / live hosts),
 * ignoring bounds, holds and history (so with the two-sigma estimate of a
 * backlog that is not forming; docs/scaling.md). Exposed for tests and the
 * simulator. */
double corral_scale_queue_slots(const struct corral_scale_policy *p,
                                const struct corral_scale_queue *q);

/* One row of the caller's worker table, as corral_scale_pick_idle sees it. */
struct corral_scale_worker {
    int idle;           /* ready, running no job, not draining */
    int64_t started_ms; /* monotonic */
};

/* Which worker to stop for a shrink by one: the index of an idle worker,
 * the most recently started one (older workers have warm connections and
 * the newest was the last one the load asked for), or -1 when none is idle:
 * a busy worker is never chosen. */
int corral_scale_pick_idle(const struct corral_scale_worker *workers, size_t n);

#endif

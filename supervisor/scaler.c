/* corral's scaling policy, a pure function (see scaler.h and
 * docs/scaling.md). Capacity comes from Little's law plus a term that
 * drains the backlog within the wait target; each host takes its share of
 * the fleet's need. The pool grows at once (bounded per step, a cooldown
 * between steps, two ticks while a backlog forms), shrinks one worker per
 * tick and only to the highest demand of the scale-in window, and holds
 * while the host is over a ceiling or a queue's service is held back by
 * its breaker. */
#include "scaler.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Used when a setting is zero or out of range (the config loader rejects
 * such values; the scaler must still never divide by zero). */
#define DEFAULT_UTIL_PM 800
#define DEFAULT_WAIT_MS 5000
/* The arrival estimate from the queue (recent_arrivals) is a lower bound
 * this many standard deviations below the count ... */
#define STEADY_SIGMAS 2.0
/* ... except while a backlog forms: from the tick the ready jobs reach
 * ONSET_FACTOR times the pool's slots (the tick before they were fewer)
 * for one scale-out cooldown. Then the bound is one sigma and growth steps
 * are FORMING_COOLDOWN_TICKS apart, not a cooldown: in the first second of
 * a burst only a few jobs have queued, their two-sigma bound is about half
 * the true rate (row 7: 2 -> 7 workers where 10 keep up), and a cooldown
 * as long as the burst would keep the pool there (docs/scaling.md, "A
 * forming backlog"). Jobs queueing a moment behind a busy pool stay below
 * the factor. */
#define ONSET_FACTOR           3
#define ONSET_SIGMAS           1.0
#define FORMING_COOLDOWN_TICKS 2

static int clamp(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static int hosts_of(const struct corral_scale_queue *q)
{
    return q->hosts > 0 ? q->hosts : 1;
}

/* Mean processing time in seconds, or 0 when nothing says. The mean is the
 * figure Little's law is exact for; the p95 stands in only when a caller
 * has no mean (it overstates the need, which is the safe side); with
 * neither, Little's law on the running jobs (in flight / completions per
 * second) gives the mean too. */
static double proc_s(const struct corral_scale_queue *q)
{
    if (q->proc_ms_mean > 0)
        return (double)q->proc_ms_mean / 1000.0;
    if (q->proc_ms_p95 > 0)
        return (double)q->proc_ms_p95 / 1000.0;
    if (q->completion_per_s > 0 && q->inflight > 0)
        return (double)q->inflight / q->completion_per_s;
    return 0;
}

/* Arrivals per second over the last oldest_wait: every ready job arrived
 * after the oldest one and none of them has started (FIFO), so depth jobs
 * came in oldest_wait seconds. The minute-bucket rate lags a burst by up
 * to a minute; this one does not. A count of depth Poisson arrivals is
 * noisy when small and a queue is looked at because it formed, so the
 * estimate is a lower bound `sigmas` standard deviations below the
 * count: (depth - sigmas sqrt(depth)) / wait, nothing below five jobs.
 * With priorities the oldest job may be older than FIFO implies, which
 * only lowers the estimate. */
static double recent_arrivals(const struct corral_scale_queue *q, double sigmas)
{
    if (q->depth < 5 || q->oldest_wait_ms <= 0)
        return 0;
    double d = (double)q->depth;
    return (d - sigmas * sqrt(d)) / ((double)q->oldest_wait_ms / 1000.0);
}

static double queue_slots(const struct corral_scale_policy *p, const struct corral_scale_queue *q,
                          double sigmas)
{
    double util = p->target_utilization_pm > 0 && p->target_utilization_pm <= 1000
                      ? p->target_utilization_pm / 1000.0
                      : DEFAULT_UTIL_PM / 1000.0;
    double wait = (double)(p->target_wait_ms > 0 ? p->target_wait_ms : DEFAULT_WAIT_MS) / 1000.0;
    double depth = q->depth > 0 ? (double)q->depth : 0;
    double inflight = q->inflight > 0 ? (double)q->inflight : 0;
    double arrivals = q->arrival_per_s > 0 ? q->arrival_per_s : 0;
    double recent = recent_arrivals(q, sigmas);
    if (recent > arrivals)
        arrivals = recent;
    double proc = proc_s(q);
    double slots;
    if (proc > 0 && depth == 0) {
        /* No job waits: every arrival of the last proc seconds started at
         * once, so the jobs running are Poisson(lambda x proc) and
         * (inflight + 2 sqrt(inflight) + 1) / proc bounds the arrival rate
         * from above, now, where the minute buckets still remember a
         * burst that has ended. */
        double upper = (inflight + 2.0 * sqrt(inflight) + 1.0) / proc;
        if (upper < arrivals)
            arrivals = upper;
    }
    if (proc > 0) {
        /* Little's law (L = lambda W): the arrivals keep arrivals x proc
         * slots busy; at the target utilisation the pool has busy / util.
         * The ready jobs must all start within the wait target: FIFO, the
         * newest is the last to start, after depth jobs have started,
         * which takes depth x proc / slots seconds, so the pool needs
         * depth x proc / target_wait slots. Both must hold: the larger. */
        double steady = arrivals * proc / util;
        double drain = depth * proc / wait;
        slots = steady > drain ? steady : drain;
    } else {
        /* No processing time known yet (a cold queue): one slot per job
         * waiting or running is the only estimate that is not a guess. */
        slots = depth + inflight;
    }
    return slots / hosts_of(q);
}

double corral_scale_queue_slots(const struct corral_scale_policy *p,
                                const struct corral_scale_queue *q)
{
    return queue_slots(p, q, STEADY_SIGMAS);
}

int corral_scale_pick_idle(const struct corral_scale_worker *workers, size_t n)
{
    int best = -1;
    for (size_t i = 0; i < n; i++)
        if (workers[i].idle && (best < 0 || workers[i].started_ms > workers[best].started_ms))
            best = (int)i;
    return best;
}

const char *corral_scale_action_name(enum corral_scale_action a)
{
    switch (a) {
    case CORRAL_SCALE_GROW:
        return "grow";
    case CORRAL_SCALE_SHRINK:
        return "shrink";
    case CORRAL_SCALE_HOLD:
        return "hold";
    case CORRAL_SCALE_STEADY:
        break;
    }
    return "steady";
}

/* --- the scale-in window ------------------------------------------------
 * Time is cut into buckets of bucket_ms; each keeps the highest demand
 * seen in it. A bucket counts while any part of it lies inside the window,
 * so a peak is remembered for at least the whole window (at most one
 * bucket longer): the error is on the side of keeping workers. */

static int64_t bucket_width(const struct corral_scale_policy *p)
{
    int64_t window = p->scale_in_window_ms > 0 ? p->scale_in_window_ms : 0;
    /* A window spans at most BUCKETS - 1 whole buckets and the current
     * one, so the ring never reuses a bucket the window still needs. */
    int64_t w = (window + CORRAL_SCALE_BUCKETS - 2) / (CORRAL_SCALE_BUCKETS - 1);
    if (w < p->tick_ms)
        w = p->tick_ms;
    return w > 0 ? w : 1;
}

static int window_max(const struct corral_scaler_state *st, int64_t now, int64_t window)
{
    int64_t cur = now / st->bucket_ms;
    int m = 0;
    for (int i = 0; i < CORRAL_SCALE_BUCKETS; i++) {
        int64_t id = st->bucket_id[i];
        if (id < 0 || id > cur || cur - id >= CORRAL_SCALE_BUCKETS)
            continue;
        if ((id + 1) * st->bucket_ms > now - window && st->bucket_max[i] > m)
            m = st->bucket_max[i];
    }
    return m;
}

static void remember(struct corral_scaler_state *st, const struct corral_scale_policy *p,
                     int64_t now, int demand)
{
    int64_t width = bucket_width(p);
    if (st->bucket_ms != width) {
        /* First tick, or the window or tick changed (reload): start over,
         * carrying what the old history held as one sample of now. */
        int carried = st->bucket_ms > 0 ? window_max(st, now, p->scale_in_window_ms) : 0;
        st->bucket_ms = width;
        for (int i = 0; i < CORRAL_SCALE_BUCKETS; i++) {
            st->bucket_id[i] = -1;
            st->bucket_max[i] = 0;
        }
        if (carried > demand)
            demand = carried;
    }
    int64_t id = now / width;
    int slot = (int)(id % CORRAL_SCALE_BUCKETS);
    if (st->bucket_id[slot] != id) {
        st->bucket_id[slot] = id;
        st->bucket_max[slot] = demand;
    } else if (demand > st->bucket_max[slot]) {
        st->bucket_max[slot] = demand;
    }
}

/* --- the decision ------------------------------------------------------ */

/* snprintf for the reason: a line that does not fit is cut, never
 * overflowed (and GCC's truncation warning, meant for accidents, is not
 * raised for this deliberate bound). */
__attribute__((format(printf, 3, 4))) static void put(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* "prompts depth 340, in 12.0/s, proc mean 2.0 s (p95 4.1 s), wait target
 * 5 s" for the queue that asks most. */
static void describe_load(char *buf, size_t len, const struct corral_scale_policy *p,
                          const struct corral_scale_queue *q)
{
    char proc[48];
    if (q->proc_ms_mean > 0 && q->proc_ms_p95 > 0)
        put(proc, sizeof(proc), "proc mean %.1f s (p95 %.1f s)", q->proc_ms_mean / 1000.0,
            q->proc_ms_p95 / 1000.0);
    else if (proc_s(q) > 0)
        put(proc, sizeof(proc), "proc %.1f s", proc_s(q));
    else
        put(proc, sizeof(proc), "proc unknown");
    char hosts[24] = "";
    if (hosts_of(q) > 1)
        put(hosts, sizeof(hosts), ", %d hosts", hosts_of(q));
    put(buf, len, "%.40s depth %lld, in %.1f/s, %s, wait target %.0f s%s", q->name ? q->name : "?",
        (long long)q->depth, q->arrival_per_s, proc,
        (p->target_wait_ms > 0 ? p->target_wait_ms : DEFAULT_WAIT_MS) / 1000.0, hosts);
}

void corral_scale_decide(const struct corral_scale_policy *p, const struct corral_scale_input *in,
                         struct corral_scaler_state *st, struct corral_scale_decision *out)
{
    memset(out, 0, sizeof(*out));
    int min = p->min > 0 ? p->min : 0;
    int max = p->max > min ? p->max : min;
    int per = p->slots_per_worker > 0 ? p->slots_per_worker : 1;
    int cur = in->workers > 0 ? in->workers : 0;
    int64_t now = in->now_ms > 0 ? in->now_ms : 0;
    double window_s = (double)p->scale_in_window_ms / 1000.0;

    /* Demand: the queues' slots on this host. A paused or held queue asks
     * only for what it runs now: more workers would take nothing from it. */
    double slots = 0;
    const struct corral_scale_queue *top = NULL, *held = NULL, *paused = NULL;
    double top_slots = -1;
    /* Is a backlog forming (ONSET_FACTOR)? */
    int64_t waiting = 0;
    for (size_t i = 0; i < in->nqueues; i++)
        if (!in->queues[i].paused && !in->queues[i].held && in->queues[i].depth > 0)
            waiting += in->queues[i].depth;
    int backlog = waiting >= (int64_t)ONSET_FACTOR * (cur > 1 ? cur : 1) * per;
    if (backlog && !st->backlog)
        st->backlog_ms = now;
    st->backlog = backlog;
    int forming = backlog && now - st->backlog_ms <= p->scale_out_cooldown_ms;
    double sigmas = forming ? ONSET_SIGMAS : STEADY_SIGMAS;
    for (size_t i = 0; i < in->nqueues; i++) {
        const struct corral_scale_queue *q = &in->queues[i];
        double s = queue_slots(p, q, sigmas);
        if (q->paused || q->held) {
            if (q->paused && paused == NULL)
                paused = q;
            if (!q->paused && q->held && held == NULL)
                held = q;
            s = (q->inflight > 0 ? (double)q->inflight : 0) / hosts_of(q);
        } else if (s > top_slots) {
            top = q;
            top_slots = s;
        }
        slots += s;
    }
    double demand_w = slots / per;
    if (!(demand_w < CORRAL_SCALE_DEMAND_CAP))
        demand_w = CORRAL_SCALE_DEMAND_CAP; /* also catches NaN */
    int demand = (int)ceil(demand_w - 1e-9);
    out->demand = demand;
    out->demand_workers = demand_w;
    out->pinned_at_max = demand > max;
    out->warn_pinned = out->pinned_at_max && !st->pinned;
    st->pinned = out->pinned_at_max;

    /* The window remembers the demand; while a breaker holds a queue its
     * demand means nothing (no completions, deferred jobs), so the window
     * remembers the pool as it is: after the hold lifts, the backlog it
     * left comes back, and the pool is still there for it. */
    int sample = demand < max ? demand : max;
    if (held != NULL && cur > sample)
        sample = cur < max ? cur : max;
    remember(st, p, now, sample);
    int wmax = window_max(st, now, p->scale_in_window_ms);
    out->window_max = wmax;
    int target = clamp(demand, min, max);
    int floor_w = clamp(wmax, min, max);

    char load[128] = "";
    if (top != NULL)
        describe_load(load, sizeof(load), p, top);
    const char *pin = out->pinned_at_max ? " (pinned at max)" : "";

    int step_cut = st->step_cut; /* only the tick after a cut step */
    st->step_cut = 0;
    /* The tick a breaker's hold lifts, the backlog it left is demand that
     * is known, not a noisy estimate: the step to it is not bounded. */
    int hold_lifted = st->held && held == NULL;
    st->held = held != NULL;
    if (target > cur) {
        int base = cur > min ? cur : min; /* min is never held back */
        const char *ceiling = NULL;
        int use = 0, lim = 0;
        if (p->cpu_ceiling_pm > 0 && in->cpu_pm > p->cpu_ceiling_pm) {
            ceiling = "cpu";
            use = in->cpu_pm;
            lim = p->cpu_ceiling_pm;
        } else if (p->mem_ceiling_pm > 0 && in->mem_pm > p->mem_ceiling_pm) {
            ceiling = "memory";
            use = in->mem_pm;
            lim = p->mem_ceiling_pm;
        }
        int64_t since = now - st->last_growth_ms;
        if (ceiling != NULL && base > cur) {
            out->desired = base;
            out->action = CORRAL_SCALE_GROW;
            put(out->reason, sizeof(out->reason),
                "%d -> %d: up to min; host %s at %d%%, above its %d%% ceiling, no further", cur,
                base, ceiling, use / 10, lim / 10);
            return;
        }
        if (ceiling != NULL) {
            out->desired = cur;
            out->action = CORRAL_SCALE_HOLD;
            put(out->reason, sizeof(out->reason),
                "hold %d: host %s at %d%%, above its %d%% ceiling; demand %.1f workers", cur,
                ceiling, use / 10, lim / 10, demand_w);
            return;
        }
        /* The cooldown lets a step's workers show in the load before the
         * next step; a step cut short by max_step_out fell short of a
         * target the load had already asked for, so the next step, toward
         * that same target, comes on the next tick (the bound still caps
         * each step: the pool at most doubles a tick). While a backlog
         * forms (ONSET_FACTOR) the steps are two ticks apart: one for the
         * new workers to start, one for them to show in the queue. */
        int64_t cooldown = p->scale_out_cooldown_ms;
        if (forming && FORMING_COOLDOWN_TICKS * p->tick_ms < cooldown)
            cooldown = FORMING_COOLDOWN_TICKS * p->tick_ms;
        if (cur >= min && st->grown && !step_cut && since < cooldown) {
            out->desired = cur;
            out->action = CORRAL_SCALE_HOLD;
            put(out->reason, sizeof(out->reason),
                "hold %d: scale-out cooldown, %.1f s left; demand %.1f workers%s", cur,
                (double)(cooldown - since) / 1000.0, demand_w, pin);
            return;
        }
        int want = target;
        if (p->max_step_out > 0 && !hold_lifted && want > cur + p->max_step_out) {
            want = cur + p->max_step_out;
            st->step_cut = 1;
        }
        if (want < min)
            want = min;
        out->desired = want;
        out->action = CORRAL_SCALE_GROW;
        st->grown = 1;
        st->last_growth_ms = now;
        if (demand <= min || load[0] == 0)
            put(out->reason, sizeof(out->reason), "%d -> %d: up to min %d", cur, want, min);
        else
            put(out->reason, sizeof(out->reason), "%d -> %d: %s%s", cur, want, load, pin);
        return;
    }
    if (cur > max) {
        out->desired = max;
        out->action = CORRAL_SCALE_SHRINK;
        put(out->reason, sizeof(out->reason), "%d -> %d: above max %d", cur, max, max);
        return;
    }
    if (held != NULL) {
        out->desired = cur;
        out->action = CORRAL_SCALE_HOLD;
        if (held->hold_reason != NULL)
            put(out->reason, sizeof(out->reason), "hold %d: %s", cur, held->hold_reason);
        else
            put(out->reason, sizeof(out->reason), "hold %d: queue %.40s held by its service", cur,
                held->name ? held->name : "?");
        return;
    }
    char why[64] = "";
    if (paused != NULL)
        put(why, sizeof(why), " (%.40s paused)", paused->name ? paused->name : "?");
    if (cur > floor_w) {
        if (in->busy_workers >= cur) {
            out->desired = cur;
            out->action = CORRAL_SCALE_HOLD;
            put(out->reason, sizeof(out->reason),
                "hold %d: demand %.1f workers%s, but no idle worker to stop", cur, demand_w, why);
            return;
        }
        out->desired = cur - 1;
        out->action = CORRAL_SCALE_SHRINK;
        put(out->reason, sizeof(out->reason),
            "%d -> %d: demand %.1f workers%s, highest %d in the %.0f s window", cur, cur - 1,
            demand_w, why, wmax, window_s);
        return;
    }
    out->desired = cur;
    if (paused != NULL && target < cur) {
        out->action = CORRAL_SCALE_HOLD;
        put(out->reason, sizeof(out->reason),
            "hold %d: %.40s paused; shrinks once the %.0f s window has passed", cur,
            paused->name ? paused->name : "?", window_s);
        return;
    }
    out->action = CORRAL_SCALE_STEADY;
    if (target < cur)
        put(out->reason, sizeof(out->reason),
            "steady %d: demand %.1f workers, highest %d in the %.0f s window", cur, demand_w, wmax,
            window_s);
    else
        put(out->reason, sizeof(out->reason), "steady %d: demand %.1f workers%s%s", cur, demand_w,
            load[0] ? "; " : "", load);
}

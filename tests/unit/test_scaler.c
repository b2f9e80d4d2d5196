/* Scripted scenarios for the scaling policy (supervisor/scaler.c), tick by
 * tick, with the exact worker counts it must choose. Each scenario runs a
 * small pool that follows every decision at once; the arithmetic behind
 * each expected count is in the comment beside it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "scaler.h"

/* [pool] min 2, max 20, concurrency 4; [scale] as in docs/configuration.md, and at
 * most 8 workers added per step. */
static const struct corral_scale_policy base_policy = {
    .min = 2,
    .max = 20,
    .slots_per_worker = 4,
    .tick_ms = 1000,
    .target_wait_ms = 5000,
    .target_utilization_pm = 800,
    .scale_out_cooldown_ms = 5000,
    .scale_in_window_ms = 120000,
    .cpu_ceiling_pm = 850,
    .mem_ceiling_pm = 850,
    .max_step_out = 8,
};

struct pool {
    struct corral_scale_policy p;
    struct corral_scaler_state st;
    struct corral_scale_queue q[2];
    size_t nq;
    int workers;
    int busy_workers;
    int64_t now;
    int cpu_pm, mem_pm;
};

static void pool_init(struct pool *s, int workers)
{
    memset(s, 0, sizeof(*s));
    s->p = base_policy;
    s->q[0].name = "prompts";
    s->q[0].hosts = 1;
    s->q[1].name = "embeddings";
    s->q[1].hosts = 1;
    s->nq = 1;
    s->workers = workers;
    s->cpu_pm = 300;
    s->mem_pm = 300;
}

/* Advances the clock by step_ms and decides; the pool follows at once. */
static struct corral_scale_decision tick(struct pool *s, int64_t step_ms)
{
    s->now += step_ms;
    struct corral_scale_input in = {.now_ms = s->now,
                                    .queues = s->q,
                                    .nqueues = s->nq,
                                    .workers = s->workers,
                                    .busy_workers = s->busy_workers,
                                    .cpu_pm = s->cpu_pm,
                                    .mem_pm = s->mem_pm};
    struct corral_scale_decision d;
    corral_scale_decide(&s->p, &in, &s->st, &d);
    s->workers = d.desired;
    return d;
}

/* Load that needs `slots` slots by Little's law at 80 %: arrivals x 1 s
 * / 0.8, with nothing waiting and the matching jobs running. */
static void little_load(struct pool *s, double slots)
{
    s->q[0].depth = 0;
    s->q[0].arrival_per_s = slots * 0.8;
    s->q[0].proc_ms_mean = 1000;
    s->q[0].inflight = (int64_t)(slots * 0.8 + 0.5);
}

static void no_load(struct pool *s)
{
    s->q[0].depth = 0;
    s->q[0].arrival_per_s = 0;
    s->q[0].inflight = 0;
}

static void idle_queue_keeps_min(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 2);
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.desired, 2);
    assert_int_equal(d.demand, 0);
    assert_int_equal(d.action, CORRAL_SCALE_STEADY);
    s.workers = 0; /* right after start */
    d = tick(&s, 1000);
    assert_int_equal(d.desired, 2);
    assert_int_equal(d.action, CORRAL_SCALE_GROW);
    assert_string_equal(d.reason, "0 -> 2: up to min 2");
}

static void burst_grows_within_a_tick_bounded_per_step(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 2);
    /* 340 jobs waiting, 12/s arriving, 2 s each: Little 12 x 2 / 0.8 = 30
     * slots; the backlog must start within 5 s: 340 x 2 / 5 = 136 slots;
     * the larger, 136 slots = 34 workers, above max 20. */
    s.q[0].depth = 340;
    s.q[0].arrival_per_s = 12.0;
    s.q[0].proc_ms_mean = 2000;
    s.q[0].proc_ms_p95 = 4100;
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.demand, 34);
    assert_int_equal(d.desired, 10); /* 2 + max_step_out 8, in the first tick */
    assert_int_equal(d.action, CORRAL_SCALE_GROW);
    assert_true(d.pinned_at_max);
    assert_string_equal(d.reason, "2 -> 10: prompts depth 340, in 12.0/s, proc mean 2.0 s "
                                  "(p95 4.1 s), wait target 5 s (pinned at max)");
    /* Doubling steps, as corrald sets max_step_out: 10 -> 20 on the next
     * step once the cooldown has passed. */
    s.p.max_step_out = 10;
    assert_int_equal(tick(&s, 5000).desired, 20);
    assert_int_equal(tick(&s, 1000).desired, 20);
}

static void a_step_cut_by_max_step_out_goes_on_next_tick_without_the_cooldown(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 2);
    /* 136 slots = 34 workers wanted (as above), max 40: the first step is cut
     * at 2 + 8 = 10; the cooldown does not hold back the next steps toward
     * the same target, each at most doubling the pool. */
    s.p.max = 40;
    s.q[0].depth = 340;
    s.q[0].arrival_per_s = 12.0;
    s.q[0].proc_ms_mean = 2000;
    s.q[0].proc_ms_p95 = 4100;
    assert_int_equal(tick(&s, 1000).desired, 10);
    s.p.max_step_out = 10;
    assert_int_equal(tick(&s, 1000).desired, 20);
    s.p.max_step_out = 20;
    assert_int_equal(tick(&s, 1000).desired, 34);
    /* A step that reached its target is followed by the cooldown again
     * once the backlog is no longer forming (5 s after it formed, at 1 s):
     * at 7 s, 1 s of the cooldown is left. */
    s.q[0].depth = 600;
    struct corral_scale_decision d = tick(&s, 4000);
    assert_int_equal(d.desired, 34);
    assert_int_equal(d.action, CORRAL_SCALE_HOLD);
    assert_int_equal(tick(&s, 1000).desired, 40);
}

static void reason_names_the_load_behind_a_growth(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 8);
    /* 115 x 2 / 5 = 46 slots (Little: 30) = 11.5 -> 12 workers */
    s.q[0].depth = 115;
    s.q[0].arrival_per_s = 12.0;
    s.q[0].proc_ms_mean = 2000;
    s.q[0].proc_ms_p95 = 2100;
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.desired, 12);
    assert_string_equal(d.reason, "8 -> 12: prompts depth 115, in 12.0/s, proc mean 2.0 s "
                                  "(p95 2.1 s), wait target 5 s");
    assert_string_equal(corral_scale_action_name(d.action), "grow");
}

static void growth_steps_are_a_cooldown_apart(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 2);
    little_load(&s, 24); /* 6 workers */
    assert_int_equal(tick(&s, 1000).desired, 6);
    little_load(&s, 40); /* 10 workers, one second later */
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.desired, 6);
    assert_int_equal(d.action, CORRAL_SCALE_HOLD);
    assert_string_equal(d.reason, "hold 6: scale-out cooldown, 4.0 s left; demand 10.0 workers");
    assert_int_equal(tick(&s, 1000).desired, 6);
    assert_int_equal(tick(&s, 1000).desired, 6);
    assert_int_equal(tick(&s, 1000).desired, 6);
    d = tick(&s, 1000); /* 5 s after the first step */
    assert_int_equal(d.desired, 10);
    assert_int_equal(d.action, CORRAL_SCALE_GROW);
}

static void steady_load_is_stable(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 4);
    s.q[0].proc_ms_mean = 1200;
    for (int i = 0; i < 300; i++) {
        /* 9.6 .. 10.4 jobs/s x 1.2 s / 0.8 = 14.4 .. 15.6 slots = 4
         * workers; a few jobs waiting now and then ask for < 1 slot. */
        s.q[0].arrival_per_s = 9.6 + 0.2 * (i % 5);
        s.q[0].depth = i % 4;
        s.q[0].inflight = 10 + i % 5;
        struct corral_scale_decision d = tick(&s, 1000);
        assert_int_equal(d.desired, 4);
        assert_int_equal(d.action, CORRAL_SCALE_STEADY);
    }
}

static void drain_returns_to_min_after_the_window_one_at_a_time(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 13);
    little_load(&s, 50); /* 12.5 -> 13 workers, at t = 1 s */
    assert_int_equal(tick(&s, 1000).desired, 13);
    no_load(&s);
    /* The peak of t = 1 s holds the pool through t = 121 s. */
    for (int t = 2; t <= 121; t++) {
        struct corral_scale_decision d = tick(&s, 1000);
        assert_int_equal(d.desired, 13);
        assert_int_equal(d.window_max, 13);
        assert_int_equal(d.action, CORRAL_SCALE_STEADY);
        assert_string_equal(d.reason,
                            "steady 13: demand 0.0 workers, highest 13 in the 120 s window");
    }
    /* Then one worker per tick, down to min, and no further. */
    for (int expect = 12; expect >= 2; expect--) {
        struct corral_scale_decision d = tick(&s, 1000);
        assert_int_equal(d.desired, expect);
        assert_int_equal(d.action, CORRAL_SCALE_SHRINK);
    }
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.desired, 2);
    assert_int_equal(d.action, CORRAL_SCALE_STEADY);
}

static void shrink_reason_gives_demand_and_window(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 6);
    little_load(&s, 24); /* 6 workers at t = 1 s */
    assert_int_equal(tick(&s, 1000).desired, 6);
    little_load(&s, 16.8); /* 4.2 workers from t = 2 s */
    for (int t = 2; t <= 121; t++)
        assert_int_equal(tick(&s, 1000).desired, 6);
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.desired, 5);
    assert_string_equal(d.reason, "6 -> 5: demand 4.2 workers, highest 5 in the 120 s window");
    assert_string_equal(corral_scale_action_name(d.action), "shrink");
    for (int t = 0; t < 200; t++)
        assert_int_equal(tick(&s, 1000).desired, 5);
}

static void flapping_load_does_not_flap_the_pool(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 2);
    s.q[0].proc_ms_mean = 1000;
    int changes = 0;
    for (int t = 0; t < 600; t++) {
        /* 30 slots (8 workers) and 5 slots (2 workers), 10 s each */
        s.q[0].arrival_per_s = (t / 10) % 2 ? 4.0 : 24.0;
        s.q[0].inflight = (t / 10) % 2 ? 4 : 24;
        int before = s.workers;
        struct corral_scale_decision d = tick(&s, 1000);
        changes += d.desired != before;
        assert_int_equal(d.desired, 8); /* up at once, then never down */
    }
    assert_int_equal(changes, 1);
}

static void open_breaker_holds_the_pool(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 4);
    s.q[0].depth = 500;
    s.q[0].arrival_per_s = 5;
    s.q[0].proc_ms_mean = 1000;
    s.q[0].held = 1;
    s.q[0].hold_reason = "breaker open for service openai";
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.desired, 4);
    assert_int_equal(d.action, CORRAL_SCALE_HOLD);
    assert_string_equal(d.reason, "hold 4: breaker open for service openai");
    /* Neither grows for the backlog nor shrinks, however long it lasts. */
    for (int t = 0; t < 300; t++)
        assert_int_equal(tick(&s, 1000).desired, 4);
    s.q[0].held = 0;
    s.q[0].hold_reason = NULL;
    d = tick(&s, 1000);
    /* 500 x 1 / 5 = 100 slots = 25 workers, max 20: the tick the hold
     * lifts, the step is not bounded by max_step_out (8): the backlog the
     * hold left is known demand. */
    assert_int_equal(d.action, CORRAL_SCALE_GROW);
    assert_int_equal(d.desired, 20);
}

static void breaker_hold_keeps_the_pool_a_window_after_it_lifts(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 6);
    s.q[0].held = 1;
    for (int t = 1; t <= 200; t++)
        assert_int_equal(tick(&s, 1000).desired, 6);
    assert_string_equal(tick(&s, 1000).reason, "hold 6: queue prompts held by its service");
    /* Closed at t = 202 s with nothing left: the deferred jobs are due
     * back, so the pool stays through the window of the last held tick. */
    s.q[0].held = 0;
    for (int t = 202; t <= 321; t++)
        assert_int_equal(tick(&s, 1000).desired, 6);
    assert_int_equal(tick(&s, 1000).desired, 5);
}

static void held_queue_does_not_stop_other_queues_growing(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 2);
    s.nq = 2;
    s.q[0].depth = 500; /* held: asks for what it runs, nothing */
    s.q[0].proc_ms_mean = 1000;
    s.q[0].held = 1;
    s.q[1].depth = 100; /* 100 x 1 / 5 = 20 slots = 5 workers */
    s.q[1].proc_ms_mean = 1000;
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.desired, 5);
    assert_int_equal(d.action, CORRAL_SCALE_GROW);
    assert_non_null(strstr(d.reason, "embeddings depth 100"));
}

static void paused_queue_does_not_grow_and_shrinks_after_the_window(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 6);
    little_load(&s, 24); /* 6 workers at t = 1 s */
    assert_int_equal(tick(&s, 1000).desired, 6);
    s.q[0].paused = 1;
    s.q[0].depth = 1000;
    s.q[0].arrival_per_s = 50;
    s.q[0].inflight = 0;
    for (int t = 2; t <= 121; t++) {
        struct corral_scale_decision d = tick(&s, 1000);
        assert_int_equal(d.desired, 6);
        assert_int_equal(d.demand, 0);
        assert_int_equal(d.action, CORRAL_SCALE_HOLD);
    }
    assert_string_equal(tick(&s, 0).reason,
                        "hold 6: prompts paused; shrinks once the 120 s window has passed");
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.desired, 5);
    assert_int_equal(d.action, CORRAL_SCALE_SHRINK);
    assert_string_equal(
        d.reason, "6 -> 5: demand 0.0 workers (prompts paused), highest 0 in the 120 s window");
    for (int expect = 4; expect >= 2; expect--)
        assert_int_equal(tick(&s, 1000).desired, expect);
    assert_int_equal(tick(&s, 1000).desired, 2);
}

static void cpu_ceiling_holds_growth(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 2);
    s.q[0].depth = 100; /* 100 x 1 / 5 = 20 slots = 5 workers */
    s.q[0].proc_ms_mean = 1000;
    s.cpu_pm = 920;
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.desired, 2);
    assert_int_equal(d.action, CORRAL_SCALE_HOLD);
    assert_string_equal(d.reason,
                        "hold 2: host cpu at 92%, above its 85% ceiling; demand 5.0 workers");
    s.cpu_pm = 500;
    s.mem_pm = 900;
    d = tick(&s, 1000);
    assert_int_equal(d.desired, 2);
    assert_string_equal(d.reason,
                        "hold 2: host memory at 90%, above its 85% ceiling; demand 5.0 workers");
    s.mem_pm = -1; /* unknown: no ceiling */
    d = tick(&s, 1000);
    assert_int_equal(d.desired, 5);
    assert_int_equal(d.action, CORRAL_SCALE_GROW);
}

static void ceiling_never_shrinks_the_pool_by_itself(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 5);
    s.q[0].depth = 100; /* 5 workers, as many as run */
    s.q[0].proc_ms_mean = 1000;
    s.cpu_pm = 990;
    for (int t = 0; t < 300; t++)
        assert_int_equal(tick(&s, 1000).desired, 5);
}

static void ceiling_does_not_hold_the_pool_below_min(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 0);
    s.cpu_pm = 990;
    s.q[0].depth = 100;
    s.q[0].proc_ms_mean = 1000;
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.desired, 2);
    assert_int_equal(d.action, CORRAL_SCALE_GROW);
    assert_string_equal(d.reason,
                        "0 -> 2: up to min; host cpu at 99%, above its 85% ceiling, no further");
}

static void several_hosts_split_the_demand(void **state)
{
    (void)state;
    /* 32 jobs/s x 1 s / 0.8 = 40 slots = 10 workers fleet-wide; each host
     * takes ceil(10 / hosts). */
    static const int hosts[] = {1, 2, 3, 4, 7};
    static const int share[] = {10, 5, 4, 3, 2};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        struct pool s;
        pool_init(&s, 2);
        s.q[0].arrival_per_s = 32;
        s.q[0].inflight = 32;
        s.q[0].proc_ms_mean = 1000;
        s.q[0].hosts = hosts[i];
        struct corral_scale_decision d = tick(&s, 1000);
        assert_int_equal(d.demand, share[i]);
        assert_int_equal(d.desired, share[i]);
    }
}

static void bounds_clamp_the_pool_to_min_and_max(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 2);
    s.p.max_step_out = 0; /* unbounded steps */
    s.q[0].depth = 10000;
    s.q[0].proc_ms_mean = 1000;
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.demand, 500);
    assert_int_equal(d.desired, 20);
    /* A reload lowered max below what runs: down to it at once. */
    s.p.max = 12;
    d = tick(&s, 1000);
    assert_int_equal(d.desired, 12);
    assert_int_equal(d.action, CORRAL_SCALE_SHRINK);
    assert_string_equal(d.reason, "20 -> 12: above max 12");
    /* No load at all never goes below min. */
    no_load(&s);
    s.q[0].depth = 0;
    for (int t = 0; t < 400; t++)
        d = tick(&s, 1000);
    assert_int_equal(d.desired, 2);
}

static void pinned_at_max_warns_once(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 20);
    little_load(&s, 120); /* 30 workers > max 20 */
    struct corral_scale_decision d = tick(&s, 1000);
    assert_true(d.pinned_at_max);
    assert_true(d.warn_pinned);
    assert_int_equal(d.desired, 20);
    for (int t = 0; t < 10; t++) {
        d = tick(&s, 1000);
        assert_true(d.pinned_at_max);
        assert_false(d.warn_pinned);
    }
    little_load(&s, 40);
    d = tick(&s, 1000);
    assert_false(d.pinned_at_max);
    assert_false(d.warn_pinned);
    little_load(&s, 120);
    d = tick(&s, 1000);
    assert_true(d.warn_pinned); /* a new pinned period warns again */
}

static void shrink_waits_for_an_idle_worker(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 6);
    little_load(&s, 24);
    tick(&s, 1000);
    no_load(&s);
    for (int t = 0; t < 120; t++)
        tick(&s, 1000);
    s.busy_workers = 6; /* all still finishing long jobs */
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.desired, 6);
    assert_int_equal(d.action, CORRAL_SCALE_HOLD);
    assert_string_equal(d.reason, "hold 6: demand 0.0 workers, but no idle worker to stop");
    s.busy_workers = 5;
    assert_int_equal(tick(&s, 1000).desired, 5);
}

static void queue_shows_a_burst_before_the_rate_does(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 8);
    /* The minute's rate still says 2/s, but 60 jobs arrived in the 2 s
     * the oldest has waited: (60 - 2 sqrt 60) / 2 = 22.25/s at least,
     * x 2 s / 0.8 = 55.6 slots = 14 workers (the backlog alone: 24). */
    s.q[0].arrival_per_s = 2;
    s.q[0].depth = 60;
    s.q[0].oldest_wait_ms = 2000;
    s.q[0].proc_ms_mean = 2000;
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.demand, 14);
    assert_int_equal(d.desired, 14);
}

static void burst_onto_an_idle_pool_steps_to_its_one_sigma_rate(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 2);
    /* bench-peers row 7: 2..20 workers of one slot, 300 ms jobs, 3/s
     * and then 30/s. */
    s.p.slots_per_worker = 1;
    s.q[0].arrival_per_s = 3;
    s.q[0].proc_ms_mean = 300;
    s.q[0].inflight = 1;
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.desired, 2);
    /* A tick later 24 jobs wait, the oldest for 0.8 s: a backlog forms
     * (24 >= 3 x 2 slots, none the tick before). One sigma: (24 - sqrt 24)
     * / 0.8 = 23.9/s x 0.3 s / 0.8 = 8.95 slots = 9 workers. The two-sigma
     * bound, (24 - 2 sqrt 24) / 0.8 = 17.8/s, would give 6.7 = 7, and the
     * next step comes only after the 5 s cooldown, as long as the burst. */
    s.q[0].arrival_per_s = 5;
    s.q[0].depth = 24;
    s.q[0].oldest_wait_ms = 800;
    s.q[0].inflight = 2;
    d = tick(&s, 1000);
    assert_int_equal(d.demand, 9);
    assert_int_equal(d.desired, 9);
    assert_int_equal(d.action, CORRAL_SCALE_GROW);
}

static void a_forming_backlog_grows_again_two_ticks_on_not_a_cooldown(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 2);
    s.p.slots_per_worker = 1;
    s.q[0].arrival_per_s = 5;
    s.q[0].proc_ms_mean = 300;
    s.q[0].depth = 8;
    s.q[0].oldest_wait_ms = 250;
    s.q[0].inflight = 2;
    /* Onset on few jobs: (8 - sqrt 8) / 0.25 = 20.7/s x 0.3 / 0.8 = 7.8
     * slots: 8 workers. */
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.desired, 8);
    /* A second later the queue still grows: 36 jobs, the oldest 1.2 s.
     * Still forming (within the 5 s cooldown of the onset), one sigma:
     * (36 - 6) / 1.2 = 25/s x 0.3 / 0.8 = 9.4 slots = 10 workers; the
     * step's workers have had one tick to start, not yet one to show. */
    s.q[0].depth = 36;
    s.q[0].oldest_wait_ms = 1200;
    d = tick(&s, 1000);
    assert_int_equal(d.demand, 10);
    assert_int_equal(d.desired, 8);
    assert_int_equal(d.action, CORRAL_SCALE_HOLD);
    assert_string_equal(d.reason, "hold 8: scale-out cooldown, 1.0 s left; demand 9.4 workers");
    /* Two ticks after the step, 3 s before the cooldown would end. */
    d = tick(&s, 1000);
    assert_int_equal(d.desired, 10);
    assert_int_equal(d.action, CORRAL_SCALE_GROW);
}

static void a_backlog_that_stays_is_estimated_at_two_sigma(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 2);
    s.p.slots_per_worker = 1;
    s.q[0].arrival_per_s = 5;
    s.q[0].proc_ms_mean = 300;
    s.q[0].depth = 24;
    s.q[0].oldest_wait_ms = 800;
    s.q[0].inflight = 2;
    assert_int_equal(tick(&s, 1000).demand, 9); /* the onset: one sigma */
    /* 6 s on (past the 5 s cooldown) 40 jobs still wait, above 3 x 9
     * slots: the backlog stays, two sigma: (40 - 2 sqrt 40) / 0.8 = 34.2/s
     * x 0.3 / 0.8 = 12.8 slots = 13 workers (one sigma: 16). */
    s.q[0].depth = 40;
    struct corral_scale_decision d = tick(&s, 6000);
    assert_int_equal(d.demand, 13);
    /* Gone and formed again: an onset again, one sigma: (60 - sqrt 60) /
     * 0.8 = 65.3/s x 0.3 / 0.8 = 24.5 slots (the pool: max 20). */
    s.q[0].depth = 0;
    s.q[0].oldest_wait_ms = 0;
    tick(&s, 1000);
    s.q[0].depth = 60;
    s.q[0].oldest_wait_ms = 800;
    assert_int_equal(tick(&s, 1000).demand, 25);
}

static void a_short_queue_behind_a_busy_pool_is_no_onset(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 2);
    s.p.slots_per_worker = 1;
    s.q[0].proc_ms_mean = 300;
    tick(&s, 1000);
    /* 5 ready jobs, under 3 x 2 slots: two sigma, (5 - 2 sqrt 5) / 0.1 s =
     * 5.3/s x 0.3 / 0.8 = 2.0 slots; one sigma would give 27.6/s, 10.4 slots */
    s.q[0].depth = 5;
    s.q[0].oldest_wait_ms = 100;
    assert_int_equal(tick(&s, 1000).demand, 2);
}

static void running_jobs_show_a_burst_has_ended(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 16);
    /* The minute's rate still says 20/s, but nothing waits and 4 jobs
     * run: at most (4 + 2 sqrt 4 + 1) / 2 s = 4.5/s arrive now, x 2 s /
     * 0.8 = 11.25 slots = 3 workers. */
    s.q[0].arrival_per_s = 20;
    s.q[0].inflight = 4;
    s.q[0].proc_ms_mean = 2000;
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.demand, 3);
}

static void cold_queue_counts_one_slot_per_job(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 2);
    s.q[0].depth = 9; /* no processing time known yet */
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.demand, 3);
    assert_int_equal(d.desired, 3);
    assert_non_null(strstr(d.reason, "proc unknown"));
}

static void processing_time_falls_back_to_running_over_completed(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 2);
    /* no mean: 12 running / 6 done per s = 2 s each; 6/s x 2 / 0.8 = 15
     * slots = 4 workers */
    s.q[0].arrival_per_s = 6;
    s.q[0].completion_per_s = 6;
    s.q[0].inflight = 12;
    assert_int_equal(tick(&s, 1000).demand, 4);
}

static void window_memory_is_bounded_whatever_the_tick(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 13);
    s.p.tick_ms = 100;
    little_load(&s, 50); /* 13 workers at t = 0.1 s */
    assert_int_equal(tick(&s, 100).desired, 13);
    no_load(&s);
    /* 1,200 ticks a window, kept in 128 buckets of 945 ms: the peak is
     * kept for the whole window, and for less than one bucket more. */
    int64_t first_shrink = 0;
    while (first_shrink == 0) {
        struct corral_scale_decision d = tick(&s, 100);
        if (d.desired < 13)
            first_shrink = s.now;
    }
    assert_true(first_shrink > 100 + 120000);
    assert_true(first_shrink <= 100 + 120000 + 945);
}

static void absurd_inputs_stay_within_bounds(void **state)
{
    (void)state;
    struct pool s;
    pool_init(&s, 3);
    s.q[0].depth = INT64_MAX;
    s.q[0].arrival_per_s = INFINITY;
    s.q[0].proc_ms_mean = INT64_MAX;
    s.q[0].oldest_wait_ms = -5;
    s.q[0].hosts = 0;
    struct corral_scale_decision d = tick(&s, 1000);
    assert_int_equal(d.demand, CORRAL_SCALE_DEMAND_CAP);
    assert_int_equal(d.desired, 11);
    s.q[0].arrival_per_s = NAN;
    s.q[0].depth = -7;
    s.q[0].inflight = -1;
    d = tick(&s, 1000);
    assert_int_equal(d.demand, 0);
    /* Nonsense settings: treated as their nearest sane values. */
    memset(&s.p, 0, sizeof(s.p));
    s.p.min = -3;
    s.p.max = -1;
    s.workers = 4;
    d = tick(&s, 1000);
    assert_int_equal(d.desired, 0);
    assert_int_equal(d.action, CORRAL_SCALE_SHRINK);
}

static void reap_chooses_idle_workers_only(void **state)
{
    (void)state;
    struct corral_scale_worker w[4] = {
        {.idle = 0, .started_ms = 400}, /* busy, and the youngest */
        {.idle = 1, .started_ms = 200},
        {.idle = 0, .started_ms = 300},
        {.idle = 1, .started_ms = 150},
    };
    assert_int_equal(corral_scale_pick_idle(w, 4), 1); /* the youngest idle one */
    w[1].idle = 0;
    assert_int_equal(corral_scale_pick_idle(w, 4), 3);
    w[3].idle = 0;
    assert_int_equal(corral_scale_pick_idle(w, 4), -1); /* all busy: none */
    assert_int_equal(corral_scale_pick_idle(w, 0), -1);
}

static void actions_have_machine_names(void **state)
{
    (void)state;
    assert_string_equal(corral_scale_action_name(CORRAL_SCALE_GROW), "grow");
    assert_string_equal(corral_scale_action_name(CORRAL_SCALE_SHRINK), "shrink");
    assert_string_equal(corral_scale_action_name(CORRAL_SCALE_HOLD), "hold");
    assert_string_equal(corral_scale_action_name(CORRAL_SCALE_STEADY), "steady");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(idle_queue_keeps_min),
        cmocka_unit_test(burst_grows_within_a_tick_bounded_per_step),
        cmocka_unit_test(a_step_cut_by_max_step_out_goes_on_next_tick_without_the_cooldown),
        cmocka_unit_test(reason_names_the_load_behind_a_growth),
        cmocka_unit_test(growth_steps_are_a_cooldown_apart),
        cmocka_unit_test(steady_load_is_stable),
        cmocka_unit_test(drain_returns_to_min_after_the_window_one_at_a_time),
        cmocka_unit_test(shrink_reason_gives_demand_and_window),
        cmocka_unit_test(flapping_load_does_not_flap_the_pool),
        cmocka_unit_test(open_breaker_holds_the_pool),
        cmocka_unit_test(breaker_hold_keeps_the_pool_a_window_after_it_lifts),
        cmocka_unit_test(held_queue_does_not_stop_other_queues_growing),
        cmocka_unit_test(paused_queue_does_not_grow_and_shrinks_after_the_window),
        cmocka_unit_test(cpu_ceiling_holds_growth),
        cmocka_unit_test(ceiling_never_shrinks_the_pool_by_itself),
        cmocka_unit_test(ceiling_does_not_hold_the_pool_below_min),
        cmocka_unit_test(several_hosts_split_the_demand),
        cmocka_unit_test(bounds_clamp_the_pool_to_min_and_max),
        cmocka_unit_test(pinned_at_max_warns_once),
        cmocka_unit_test(shrink_waits_for_an_idle_worker),
        cmocka_unit_test(queue_shows_a_burst_before_the_rate_does),
        cmocka_unit_test(burst_onto_an_idle_pool_steps_to_its_one_sigma_rate),
        cmocka_unit_test(a_forming_backlog_grows_again_two_ticks_on_not_a_cooldown),
        cmocka_unit_test(a_backlog_that_stays_is_estimated_at_two_sigma),
        cmocka_unit_test(a_short_queue_behind_a_busy_pool_is_no_onset),
        cmocka_unit_test(running_jobs_show_a_burst_has_ended),
        cmocka_unit_test(cold_queue_counts_one_slot_per_job),
        cmocka_unit_test(processing_time_falls_back_to_running_over_completed),
        cmocka_unit_test(window_memory_is_bounded_whatever_the_tick),
        cmocka_unit_test(absurd_inputs_stay_within_bounds),
        cmocka_unit_test(reap_chooses_idle_workers_only),
        cmocka_unit_test(actions_have_machine_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

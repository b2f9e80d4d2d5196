/* Unit tests for what corrald keeps of the scaler's decisions for the
 * dashboard (supervisor/decisions.c): a new count or a new kind of
 * decision is kept, the steady ticks between are not, and what waits for
 * Redis is capped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "decisions.h"

static struct corral_scale_decision dec(int desired, enum corral_scale_action a, const char *reason)
{
    struct corral_scale_decision d = {.desired = desired, .action = a};
    snprintf(d.reason, sizeof(d.reason), "%s", reason);
    return d;
}

static void a_new_count_or_kind_is_kept_and_steady_repeats_are_not(void **state)
{
    struct corral_decisions ds = {0};
    struct corral_scale_decision d = dec(2, CORRAL_SCALE_STEADY, "steady 2: demand 0.0 workers");
    assert_int_equal(corral_decisions_note(&ds, 1000, 2, &d), 1); /* the first tick */
    d = dec(2, CORRAL_SCALE_STEADY, "steady 2: demand 0.4 workers");
    assert_int_equal(corral_decisions_note(&ds, 2000, 2, &d), 0);
    d = dec(6, CORRAL_SCALE_GROW, "2 -> 6: jobs depth 300");
    assert_int_equal(corral_decisions_note(&ds, 3000, 2, &d), 1);
    d = dec(6, CORRAL_SCALE_HOLD, "hold 6: scale-out cooldown, 0.2 s left");
    assert_int_equal(corral_decisions_note(&ds, 4000, 6, &d), 1);
    d = dec(6, CORRAL_SCALE_HOLD, "hold 6: scale-out cooldown, 0.1 s left");
    assert_int_equal(corral_decisions_note(&ds, 5000, 6, &d), 0);
    assert_int_equal(ds.npending, 3);
    json_t *o = json_loads(ds.pending[1], 0, NULL);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "t_ms")), 3000);
    assert_int_equal(json_integer_value(json_object_get(o, "from")), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "to")), 6);
    assert_string_equal(json_string_value(json_object_get(o, "action")), "grow");
    assert_string_equal(json_string_value(json_object_get(o, "reason")), "2 -> 6: jobs depth 300");
    assert_null(strchr(ds.pending[1], '\n')); /* one line each */
    json_decref(o);
    corral_decisions_clear(&ds);
    assert_int_equal(ds.npending, 0);
    /* Cleared of what waits, it still knows the last one kept. */
    assert_int_equal(corral_decisions_note(&ds, 6000, 6, &d), 0);
}

static void while_redis_is_away_only_the_newest_wait(void **state)
{
    struct corral_decisions ds = {0};
    for (int i = 0; i < CORRAL_DECISIONS_PENDING + 5; i++) {
        char why[32];
        snprintf(why, sizeof(why), "%d -> %d: load", i, i + 1);
        struct corral_scale_decision d = dec(i + 1, CORRAL_SCALE_GROW, why);
        assert_int_equal(corral_decisions_note(&ds, i, i, &d), 1);
    }
    assert_int_equal(ds.npending, CORRAL_DECISIONS_PENDING);
    assert_non_null(strstr(ds.pending[0], "\"5 -> 6: load\""));
    assert_non_null(strstr(ds.pending[CORRAL_DECISIONS_PENDING - 1], "\"20 -> 21: load\""));
    corral_decisions_clear(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_new_count_or_kind_is_kept_and_steady_repeats_are_not),
        cmocka_unit_test(while_redis_is_away_only_the_newest_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

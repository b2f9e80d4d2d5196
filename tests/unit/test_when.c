/* Unit tests for the times corralctl job shows (ctl/when.c): local ISO 8601
 * with the zone's offset, and the age (or the wait, for a time to come)
 * beside it. Zones are POSIX TZ strings, so no tzdata is needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "when.h"

static void with_tz(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

/* 2026-12-06T17:25:10.523Z */
#define T 1796577910523LL

static void a_time_is_local_iso_with_its_offset_and_age(void **state)
{
    char buf[96];
    with_tz("UTC0");
    ctl_when(T, T + 12400, buf, sizeof(buf));
    assert_string_equal(buf, "2026-12-06T17:25:10.523+00:00, 12.4 s ago");
    with_tz("CET-1");
    ctl_when(T, T + 850, buf, sizeof(buf));
    assert_string_equal(buf, "2026-12-06T18:25:10.523+01:00, 850 ms ago");
    with_tz("NST+3:30");
    ctl_when(T, T + 185000, buf, sizeof(buf));
    assert_string_equal(buf, "2026-12-06T13:55:10.523-03:30, 3 min 05 s ago");
}

static void long_ages_and_times_to_come(void **state)
{
    char buf[96];
    with_tz("UTC0");
    ctl_when(T, T + (2 * 3600 + 10 * 60) * 1000LL, buf, sizeof(buf));
    assert_non_null(strstr(buf, ", 2 h 10 min ago"));
    ctl_when(T, T + (4 * 86400 + 3 * 3600) * 1000LL, buf, sizeof(buf));
    assert_non_null(strstr(buf, ", 4 d 03 h ago"));
    ctl_when(T, T - 3000, buf, sizeof(buf)); /* run_at_ms of a delayed job */
    assert_non_null(strstr(buf, ", in 3.0 s"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_time_is_local_iso_with_its_offset_and_age),
        cmocka_unit_test(long_ages_and_times_to_come),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

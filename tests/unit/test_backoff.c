/* Unit tests for the back-off of every retry path and for the log line that
 * a retry loop writes once with a count (common/backoff.c, common/log.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "corral/backoff.h"
#include "corral/log.h"

static void waits_grow_to_the_cap_and_never_fall_below_half_the_step(void **state)
{
    struct corral_backoff b;
    corral_backoff_init(&b, 100, 2000);
    int64_t step = 100;
    for (int i = 0; i < 40; i++) {
        int64_t w = corral_backoff_next(&b);
        assert_true(w >= step / 2);
        assert_true(w <= step);
        step = step * 2 > 2000 ? 2000 : step * 2;
    }
    assert_int_equal(b.cur_ms, 2000);
}

static void a_reset_starts_again_from_the_base(void **state)
{
    struct corral_backoff b;
    corral_backoff_init(&b, 250, 2000);
    for (int i = 0; i < 10; i++)
        corral_backoff_next(&b);
    corral_backoff_reset(&b);
    assert_true(corral_backoff_next(&b) <= 250);
}

static void two_loops_started_together_drift_apart(void **state)
{
    struct corral_backoff a, b;
    corral_backoff_init(&a, 1000, 30000);
    corral_backoff_init(&b, 1000, 30000);
    int differ = 0;
    for (int i = 0; i < 8; i++)
        differ += corral_backoff_next(&a) != corral_backoff_next(&b);
    assert_true(differ > 0);
}

static void bad_bounds_are_clamped(void **state)
{
    struct corral_backoff b;
    corral_backoff_init(&b, 0, -5);
    assert_int_equal(b.base_ms, 1);
    assert_int_equal(b.cap_ms, 1);
    assert_true(corral_backoff_next(&b) <= 1);
}

/* Runs fn with stderr sent to a temp file; returns the lines written. */
static char *captured(void (*fn)(void))
{
    char path[] = "/tmp/corral-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    static char buf[8192];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return buf;
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = strstr(s, what); p != NULL; p = strstr(p + 1, what))
        n++;
    return n;
}

static void hundred_failures(void)
{
    struct corral_log_repeat r;
    corral_log_repeat_init(&r, 60000);
    for (int i = 0; i < 100; i++)
        corral_logr(&r, CORRAL_LOG_WARN, "redis connect failed", "try=%d", i);
    corral_log_repeat_end(&r);
    corral_log_warn("redis connected", "%s", "");
}

static void a_repeated_message_is_written_once_then_counted(void **state)
{
    char *out = captured(hundred_failures);
    assert_int_equal(count(out, "redis connect failed"), 2);
    assert_non_null(strstr(out, "try=0"));
    assert_null(strstr(out, "try=1 "));
    assert_non_null(strstr(out, "repeated=99"));
    assert_int_equal(count(out, "redis connected"), 1);
}

static void alternating(void)
{
    struct corral_log_repeat r;
    corral_log_repeat_init(&r, 60000);
    corral_logr(&r, CORRAL_LOG_WARN, "A", "%s", "");
    corral_logr(&r, CORRAL_LOG_WARN, "A", "%s", "");
    corral_logr(&r, CORRAL_LOG_WARN, "A", "%s", "");
    corral_logr(&r, CORRAL_LOG_WARN, "B", "%s", "");
    corral_log_repeat_end(&r);
}

static void a_new_message_first_writes_the_count_of_the_old(void **state)
{
    char *out = captured(alternating);
    const char *rep = strstr(out, "repeated=2");
    const char *b = strstr(out, " B");
    assert_non_null(rep);
    assert_non_null(b);
    assert_true(rep < b);
    assert_int_equal(count(out, "repeated="), 1); /* B was not repeated */
}

static void after_the_window(void)
{
    struct corral_log_repeat r;
    corral_log_repeat_init(&r, 1);
    corral_logr(&r, CORRAL_LOG_WARN, "slow", "%s", "");
    usleep(3000);
    corral_logr(&r, CORRAL_LOG_WARN, "slow", "%s", "");
}

static void a_message_still_repeating_after_the_window_is_written_again(void **state)
{
    char *out = captured(after_the_window);
    assert_int_equal(count(out, "slow"), 2);
}

int main(void)
{
    corral_log_init("test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(waits_grow_to_the_cap_and_never_fall_below_half_the_step),
        cmocka_unit_test(a_reset_starts_again_from_the_base),
        cmocka_unit_test(two_loops_started_together_drift_apart),
        cmocka_unit_test(bad_bounds_are_clamped),
        cmocka_unit_test(a_repeated_message_is_written_once_then_counted),
        cmocka_unit_test(a_new_message_first_writes_the_count_of_the_old),
        cmocka_unit_test(a_message_still_repeating_after_the_window_is_written_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

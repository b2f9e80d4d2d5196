/* Unit tests for the split of corrald's pool per queue on a Redis Cluster
 * (supervisor/shards.c): every queue gets a worker first, then the queue
 * with the most jobs per worker; a queue's last worker is never stopped;
 * a [pool] max the split cannot serve is refused naming the option. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config_harness.h"
#include "shards.h"

static void a_queue_without_a_worker_comes_first_then_the_most_jobs_per_worker(void **state)
{
    int workers[3] = {2, 0, 1};
    int64_t load[3] = {100, 0, 5};
    assert_int_equal(corral_shards_pick(3, workers, load), 1); /* no worker yet */
    workers[1] = 1;
    assert_int_equal(corral_shards_pick(3, workers, load), 0); /* 50 a worker */
    workers[0] = 40;
    assert_int_equal(corral_shards_pick(3, workers, load), 2); /* 2.5 against 5 */
    int64_t idle[3] = {0, 0, 0};
    assert_int_equal(corral_shards_pick(3, workers, idle), 0); /* ties: the first */
}

static void a_queues_last_worker_is_never_stopped(void **state)
{
    assert_false(corral_shards_may_stop(1));
    assert_true(corral_shards_may_stop(2));
}

static const char *const CLUSTER = "[redis]\ncluster = 127.0.0.1:7000\n";

static void max_below_the_number_of_queues_is_refused_and_min_raised_to_it(void **state)
{
    char why[256];
    char text[1024];
    snprintf(text, sizeof(text),
             "%s[pool]\nmin = 1\nmax = 2\n[queue a]\nhandler = echo\n[queue b]\nhandler = "
             "echo\n[queue c]\nhandler = echo\n",
             CLUSTER);
    struct corral_config *cfg = load_ok(text);
    assert_int_equal(corral_shards_check(cfg, why, sizeof(why)), -1);
    assert_string_equal(why, "[pool] max = 2: on a Redis Cluster each worker serves one queue, "
                             "so max must be at least the number of queues (3)");
    corral_config_free(cfg);
    snprintf(text, sizeof(text),
             "%s[pool]\nmax = 3\n[queue a]\nhandler = echo\n[queue b]\nhandler = echo\n"
             "[queue c]\nhandler = echo\n",
             CLUSTER);
    cfg = load_ok(text);
    assert_int_equal(corral_shards_check(cfg, why, sizeof(why)), 0);
    assert_int_equal(corral_shards_min(cfg), 3); /* min = 2 (the default), a worker a queue */
    corral_config_free(cfg);
    cfg = load_ok("[pool]\nmin = 1\n[queue a]\nhandler = echo\n[queue b]\nhandler = echo\n");
    assert_int_equal(corral_shards_min(cfg), 1); /* one Redis: min as set */
    corral_config_free(cfg);
}

static void more_queues_than_the_scaler_reads_are_refused(void **state)
{
    char text[8192], why[256];
    int n = snprintf(text, sizeof(text), "%s[pool]\nmax = 100\n", CLUSTER);
    for (int i = 0; i <= CORRAL_SHARDS_MAX_QUEUES; i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "[queue q%d]\nhandler = echo\n", i);
    struct corral_config *cfg = load_ok(text);
    assert_int_equal(corral_shards_check(cfg, why, sizeof(why)), -1);
    assert_string_equal(why, "[pool] queues: on a Redis Cluster corrald serves at most 64 queues "
                             "(got 65)");
    corral_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_queue_without_a_worker_comes_first_then_the_most_jobs_per_worker),
        cmocka_unit_test(a_queues_last_worker_is_never_stopped),
        cmocka_unit_test(max_below_the_number_of_queues_is_refused_and_min_raised_to_it),
        cmocka_unit_test(more_queues_than_the_scaler_reads_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

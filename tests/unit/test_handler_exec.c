/* The exec handler alone, through handler.h, on its own libev loop: real
 * commands forked and reaped, no engine and no Redis. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "corral/util.h"
#include "handler.h"
#include "handler_harness.h"

/* A queue of the exec handler running command, and a run of it. */
struct fixture {
    struct ev_loop *loop;
    struct corral_config *cfg;
    void *qstate;
    struct corral_run run;
};

static void setup_run(struct fixture *f, const char *command, int64_t timeout_ms,
                      const char *payload)
{
    memset(&ended, 0, sizeof(ended));
    f->loop = ev_default_loop(0); /* exec watches children: the default loop */
    char *text = corral_xasprintf("[queue q]\nhandler = exec\ncommand = %s\n", command);
    struct corral_config_errors errs = {0};
    f->cfg = corral_config_load_string(text, "t.conf", &errs);
    free(text);
    assert_non_null(f->cfg);
    const struct corral_queue_conf *q = corral_config_queue(f->cfg, "q");
    const struct corral_handler_ops *ops = corral_handler_ops_for(q->handler);
    assert_ptr_equal(ops, &corral_exec_handler);
    struct corral_err err;
    assert_int_equal(ops->queue_init(f->loop, f->cfg, q, &f->qstate, &err), 0);
    f->run = (struct corral_run){.loop = f->loop,
                                 .conf = q,
                                 .queue_state = f->qstate,
                                 .job = {.id = "1",
                                         .run = "1",
                                         .timeout_ms = timeout_ms,
                                         .payload = (char *)payload,
                                         .payload_len = strlen(payload)},
                                 .finish = on_finish};
}

static void teardown_run(struct fixture *f)
{
    corral_exec_handler.queue_free(f->qstate);
    corral_config_free(f->cfg);
}

static void a_run_finishes_with_the_commands_output_as_result(void **state)
{
    struct fixture f;
    setup_run(&f, "cat", 5000, "{\"hello\": 1}");
    corral_exec_handler.start(&f.run);
    assert_int_equal(run_loop(f.loop, 5.0), 0);
    assert_int_equal(ended.calls, 1);
    assert_int_equal(ended.end, CORRAL_END_DONE);
    assert_string_equal(ended.data, "{\"hello\": 1}");
    teardown_run(&f);
}

static void exit_codes_end_the_run_retryable_or_permanent(void **state)
{
    struct fixture f;
    setup_run(&f, "sh -c 'exit 75'", 5000, "{}");
    corral_exec_handler.start(&f.run);
    assert_int_equal(run_loop(f.loop, 5.0), 0);
    assert_int_equal(ended.end, CORRAL_END_RETRY);
    assert_string_equal(ended.data, "exit 75");
    teardown_run(&f);

    setup_run(&f, "sh -c 'echo oops >&2; exit 3'", 5000, "{}");
    corral_exec_handler.start(&f.run);
    assert_int_equal(run_loop(f.loop, 5.0), 0);
    assert_int_equal(ended.calls, 1);
    assert_int_equal(ended.end, CORRAL_END_PERMANENT);
    assert_string_equal(ended.data, "exit 3: oops ");
    teardown_run(&f);
}

static void a_run_past_its_timeout_is_killed_and_retryable(void **state)
{
    struct fixture f;
    setup_run(&f, "sleep 30", 200, "{}");
    int64_t t0 = corral_now_ms();
    corral_exec_handler.start(&f.run);
    assert_int_equal(run_loop(f.loop, 5.0), 0);
    assert_int_equal(ended.calls, 1);
    assert_int_equal(ended.end, CORRAL_END_RETRY);
    assert_string_equal(ended.data, "timed out after 200 ms");
    assert_true(corral_now_ms() - t0 < 2000);
    teardown_run(&f);
}

static void on_poll_pidfile(struct ev_loop *loop, ev_timer *t, int revents)
{
    if (access(t->data, R_OK) == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void abort_kills_the_child_at_once_and_never_finishes(void **state)
{
    char dir[] = "/tmp/corral-exec-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *pidfile = corral_xasprintf("%s/pid", dir);
    char *cmd = corral_xasprintf("sh -c 'echo $$ > %s.tmp && mv %s.tmp %s && exec sleep 30'",
                                 pidfile, pidfile, pidfile);
    struct fixture f;
    setup_run(&f, cmd, 60000, "{}");
    corral_exec_handler.start(&f.run);
    /* Until the command is running (it wrote its pid). */
    ev_timer poll;
    ev_timer_init(&poll, on_poll_pidfile, 0.01, 0.01);
    poll.data = pidfile;
    ev_timer_start(f.loop, &poll);
    assert_int_equal(run_loop(f.loop, 5.0), 0);
    ev_timer_stop(f.loop, &poll);
    FILE *pf = fopen(pidfile, "r");
    assert_non_null(pf);
    int pid = 0;
    assert_int_equal(fscanf(pf, "%d", &pid), 1);
    fclose(pf);
    assert_int_equal(kill(pid, 0), 0); /* alive */

    corral_exec_handler.abort(&f.run);
    /* Killed and reaped before abort returned: the pid is gone. */
    assert_int_equal(kill(pid, 0), -1);
    assert_int_equal(errno, ESRCH);
    /* Nothing of the run is left on the loop, and finish is never called. */
    assert_int_equal(run_loop(f.loop, 0.3), 1);
    assert_int_equal(ended.calls, 0);
    teardown_run(&f);
    unlink(pidfile);
    rmdir(dir);
    free(pidfile);
    free(cmd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_run_finishes_with_the_commands_output_as_result),
        cmocka_unit_test(exit_codes_end_the_run_retryable_or_permanent),
        cmocka_unit_test(a_run_past_its_timeout_is_killed_and_retryable),
        cmocka_unit_test(abort_kills_the_child_at_once_and_never_finishes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* What the handler unit tests share: a finish callback that records the
 * run's end and stops the loop, and a loop run bounded by a deadline. Each
 * test drives one handler alone through worker/handler.h. */
#ifndef CORRAL_TEST_HANDLER_HARNESS_H
#define CORRAL_TEST_HANDLER_HARNESS_H

#include <stdio.h>
#include <stdlib.h>

#include <ev.h>

#include "handler.h"

/* What the finish callback saw. */
struct ended {
    int calls;
    enum corral_run_end end;
    char data[1024];
};

static struct ended ended;

static void on_finish(struct corral_run *run, enum corral_run_end end, const char *data, size_t len,
                      int64_t delay_ms)
{
    ended.calls++;
    ended.end = end;
    snprintf(ended.data, sizeof(ended.data), "%.*s", (int)len, data ? data : "");
    free(run->settle); /* the outcome FIFO takes it in the worker */
    run->settle = NULL;
    ev_break(run->loop, EVBREAK_ALL);
}

static void on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    *(int *)t->data = 1;
    ev_break(loop, EVBREAK_ALL);
}

/* Runs the loop until something breaks it or timeout_s passes; returns 1
 * when the deadline broke it. */
static int run_loop(struct ev_loop *loop, double timeout_s)
{
    int expired = 0;
    ev_timer deadline;
    ev_timer_init(&deadline, on_deadline, timeout_s, 0.0);
    deadline.data = &expired;
    ev_timer_start(loop, &deadline);
    ev_run(loop, 0);
    ev_timer_stop(loop, &deadline);
    return expired;
}

#endif

/* The exec handler: runs the queue's command (never a shell) with the
 * payload on stdin; stdout, bounded by max_result, is the result. Exit 0 is
 * done, 75 (EX_TEMPFAIL) retryable, any other code permanent; a command
 * still running at the job's timeout is killed and the run is retryable.
 * The command runs under a per-run reaper (reaper.h): whenever the run
 * ends, everything the command started is killed with it. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "corral/util.h"
#include "handler.h"
#include "reaper.h"
#include "split.h"

#define STDERR_KEEP 512
/* An aborted run waits this long for its reaper to kill and reap the
 * command's processes before killing the reaper and its group outright. */
#define ABORT_WAIT_MS 1000

struct exec_run {
    struct corral_run *run;
    pid_t pid; /* the reaper; its exit status is the command's */
    int in_fd, out_fd, err_fd;
    ev_io in_io, out_io, err_io;
    ev_child child;
    ev_timer timeout;
    size_t in_off;
    char *out;
    size_t out_len;
    char err[STDERR_KEEP];
    size_t err_len;
    int exited, status;
    int timed_out, too_big;
};

static void close_io(struct ev_loop *loop, ev_io *io, int *fd)
{
    if (*fd >= 0) {
        ev_io_stop(loop, io);
        close(*fd);
        *fd = -1;
    }
}

static void finish(struct ev_loop *loop, struct exec_run *x)
{
    /* Done only when the process is reaped and its stdout has ended. */
    if (!x->exited || x->out_fd >= 0)
        return;
    close_io(loop, &x->in_io, &x->in_fd);
    close_io(loop, &x->err_io, &x->err_fd);
    ev_timer_stop(loop, &x->timeout);
    struct corral_run *run = x->run;
    char msg[STDERR_KEEP + 128];
    char errtext[STDERR_KEEP + 1];
    size_t el = x->err_len;
    for (size_t i = 0; i < el; i++)
        errtext[i] = (unsigned char)x->err[i] < 0x20 ? ' ' : x->err[i];
    errtext[el] = '\0';
    enum corral_run_end end;
    if (x->too_big) {
        snprintf(msg, sizeof(msg), "output larger than max_result (%lld bytes)",
                 (long long)run->conf->max_result_bytes);
        end = CORRAL_END_PERMANENT;
    } else if (x->timed_out) {
        snprintf(msg, sizeof(msg), "timed out after %lld ms", (long long)run->job.timeout_ms);
        end = CORRAL_END_RETRY;
    } else if (WIFSIGNALED(x->status)) {
        snprintf(msg, sizeof(msg), "killed by signal %d%s%s", WTERMSIG(x->status), el ? ": " : "",
                 errtext);
        end = CORRAL_END_RETRY;
    } else if (WEXITSTATUS(x->status) == 0) {
        end = CORRAL_END_DONE;
    } else {
        snprintf(msg, sizeof(msg), "exit %d%s%s", WEXITSTATUS(x->status), el ? ": " : "", errtext);
        end = WEXITSTATUS(x->status) == 75 ? CORRAL_END_RETRY : CORRAL_END_PERMANENT;
    }
    if (end == CORRAL_END_DONE)
        run->finish(run, end, x->out, x->out_len, 0);
    else
        run->finish(run, end, msg, strlen(msg), 0);
    free(x->out);
    free(x);
}

/* Ends the run: the reaper kills the command and all it started. */
static void stop_run(struct exec_run *x)
{
    if (!x->exited)
        corral_reaper_stop(x->pid);
}

static void on_stdin(struct ev_loop *loop, ev_io *io, int revents)
{
    struct exec_run *x = io->data;
    const char *p = x->run->job.payload;
    size_t len = x->run->job.payload_len;
    while (x->in_off < len) {
        ssize_t n = write(x->in_fd, p + x->in_off, len - x->in_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0)
            break; /* EPIPE: the command does not read its input; that is its business */
        x->in_off += (size_t)n;
    }
    close_io(loop, io, &x->in_fd);
}

/* Reads what stdout has; closes it at EOF or past max_result. Never ends
 * the run itself, so callers may go on using x afterwards. */
static void drain_stdout(struct ev_loop *loop, struct exec_run *x)
{
    size_t limit = (size_t)x->run->conf->max_result_bytes;
    char buf[16384];
    for (;;) {
        ssize_t n = read(x->out_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0)
            break;
        if (x->out_len + (size_t)n > limit) {
            x->too_big = 1;
            stop_run(x);
            break;
        }
        x->out = corral_xrealloc(x->out, x->out_len + (size_t)n + 1);
        memcpy(x->out + x->out_len, buf, (size_t)n);
        x->out_len += (size_t)n;
    }
    close_io(loop, &x->out_io, &x->out_fd);
}

static void on_stdout(struct ev_loop *loop, ev_io *io, int revents)
{
    struct exec_run *x = io->data;
    drain_stdout(loop, x);
    if (x->out_fd < 0)
        finish(loop, x); /* may free x */
}

static void on_stderr(struct ev_loop *loop, ev_io *io, int revents)
{
    struct exec_run *x = io->data;
    char buf[4096];
    for (;;) {
        ssize_t n = read(x->err_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0)
            break;
        /* Keep the first bytes: they usually say what went wrong. */
        size_t room = sizeof(x->err) - x->err_len;
        size_t take = (size_t)n < room ? (size_t)n : room;
        memcpy(x->err + x->err_len, buf, take);
        x->err_len += take;
    }
    close_io(loop, io, &x->err_fd);
}

static void on_child(struct ev_loop *loop, ev_child *c, int revents)
{
    struct exec_run *x = c->data;
    ev_child_stop(loop, c);
    x->exited = 1;
    x->status = c->rstatus;
    /* The reaper has killed whatever the command started; should the
     * reaper itself have been killed, its process group (the command's,
     * unless it left it) goes now. */
    kill(-x->pid, SIGKILL);
    if (x->out_fd >= 0)
        drain_stdout(loop, x);
    close_io(loop, &x->out_io, &x->out_fd);
    if (x->err_fd >= 0)
        on_stderr(loop, &x->err_io, EV_READ);
    finish(loop, x); /* frees x */
}

static void on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct exec_run *x = t->data;
    x->timed_out = 1;
    stop_run(x);
}

/* Waits for a stopped reaper; past ABORT_WAIT_MS it and its process
 * group are killed outright. */
static void wait_reaper(pid_t pid)
{
    for (int64_t waited = 0; waited < ABORT_WAIT_MS; waited++) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return;
        struct timespec ms = {0, 1000 * 1000};
        nanosleep(&ms, NULL);
    }
    kill(pid, SIGKILL);
    kill(-pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

static void exec_abort(struct corral_run *run)
{
    struct exec_run *x = run->state;
    struct ev_loop *loop = run->loop;
    stop_run(x);
    ev_child_stop(loop, &x->child);
    ev_timer_stop(loop, &x->timeout);
    close_io(loop, &x->in_io, &x->in_fd);
    close_io(loop, &x->out_io, &x->out_fd);
    close_io(loop, &x->err_io, &x->err_fd);
    if (!x->exited)
        wait_reaper(x->pid);
    free(x->out);
    free(x);
    run->state = NULL;
}

static void exec_start(struct corral_run *run)
{
    struct ev_loop *loop = run->loop;
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) < 0) {
        run->finish(run, CORRAL_END_RETRY, "cannot create pipes", 19, 0);
        return;
    }
    if (pipe2(out, O_CLOEXEC) < 0) {
        close(in[0]);
        close(in[1]);
        run->finish(run, CORRAL_END_RETRY, "cannot create pipes", 19, 0);
        return;
    }
    if (pipe2(err, O_CLOEXEC) < 0) {
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        run->finish(run, CORRAL_END_RETRY, "cannot create pipes", 19, 0);
        return;
    }
    pid_t pid = corral_reaper_spawn(run->queue_state, in[0], out[1], err[1]);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        close(err[0]);
        run->finish(run, CORRAL_END_RETRY, "fork failed", 11, 0);
        return;
    }
    struct exec_run *x = corral_xcalloc(1, sizeof(*x));
    x->run = run;
    x->pid = pid;
    x->in_fd = in[1];
    x->out_fd = out[0];
    x->err_fd = err[0];
    run->state = x;
    fcntl(x->in_fd, F_SETFL, O_NONBLOCK);
    fcntl(x->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(x->err_fd, F_SETFL, O_NONBLOCK);
    ev_io_init(&x->in_io, on_stdin, x->in_fd, EV_WRITE);
    ev_io_init(&x->out_io, on_stdout, x->out_fd, EV_READ);
    ev_io_init(&x->err_io, on_stderr, x->err_fd, EV_READ);
    x->in_io.data = x->out_io.data = x->err_io.data = x;
    ev_io_start(loop, &x->in_io);
    ev_io_start(loop, &x->out_io);
    ev_io_start(loop, &x->err_io);
    ev_child_init(&x->child, on_child, pid, 0);
    x->child.data = x;
    ev_child_start(loop, &x->child);
    ev_timer_init(&x->timeout, on_timeout, (double)run->job.timeout_ms / 1000.0, 0.0);
    x->timeout.data = x;
    ev_timer_start(loop, &x->timeout);
}

/* The queue's state is its command, split once. */
static int exec_queue_init(struct ev_loop *loop, const struct corral_config *cfg,
                           const struct corral_queue_conf *q, void **state, struct corral_err *err)
{
    char **argv = corral_split_command(q->command, err);
    if (argv == NULL) {
        corral_err_prefix(err, "[queue %s] command", q->name);
        return -1;
    }
    *state = argv;
    return 0;
}

static void exec_queue_free(void *state)
{
    corral_argv_free(state);
}

const struct corral_handler_ops corral_exec_handler = {
    .name = "exec",
    .queue_init = exec_queue_init,
    .start = exec_start,
    .abort = exec_abort,
    .queue_free = exec_queue_free,
};

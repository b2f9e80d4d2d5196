/* Worker processes: fork/exec hygiene (signals blocked around fork and reset
 * in the child, fds closed, fd 3 the only channel), fd 3 line framing, and
 * reaping through ev_child. */
#include "procs.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "corral/util.h"

struct corral_procs {
    struct ev_loop *loop;
    char host[64];
    struct corral_procs_cb cb;
    struct corral_wproc *head;
    int count;
};

struct corral_procs *corral_procs_new(struct ev_loop *loop, const char *host,
                                      const struct corral_procs_cb *cb)
{
    struct corral_procs *t = corral_xcalloc(1, sizeof(*t));
    t->loop = loop;
    snprintf(t->host, sizeof(t->host), "%s", host);
    t->cb = *cb;
    return t;
}

static void unlink_proc(struct corral_procs *t, struct corral_wproc *w)
{
    for (struct corral_wproc **p = &t->head; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            t->count--;
            return;
        }
    }
}

static void close_channel(struct corral_wproc *w)
{
    if (w->fd >= 0) {
        ev_io_stop(w->owner->loop, &w->io);
        close(w->fd);
        w->fd = -1;
    }
}

void corral_procs_free(struct corral_procs *t)
{
    if (t == NULL)
        return;
    struct corral_wproc *w = t->head;
    while (w != NULL) {
        struct corral_wproc *next = w->next;
        close_channel(w);
        ev_child_stop(t->loop, &w->child);
        free(w);
        w = next;
    }
    free(t);
}

static void on_readable(struct ev_loop *loop, ev_io *io, int revents)
{
    struct corral_wproc *w = io->data;
    struct corral_procs *t = w->owner;
    for (;;) {
        ssize_t n = read(w->fd, w->buf + w->len, sizeof(w->buf) - 1 - w->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            /* EOF: the worker closed fd 3 or died; ev_child reports the exit. */
            close_channel(w);
            return;
        }
        w->len += (size_t)n;
        w->last_seen_ms = corral_now_ms();
        size_t start = 0;
        for (size_t i = 0; i < w->len; i++) {
            if (w->buf[i] != '\n')
                continue;
            w->buf[i] = '\0';
            if (t->cb.on_line)
                t->cb.on_line(t, w, w->buf + start);
            start = i + 1;
        }
        memmove(w->buf, w->buf + start, w->len - start);
        w->len -= start;
        if (w->len == sizeof(w->buf) - 1)
            w->len = 0; /* an over-long line is dropped, not allowed to wedge the channel */
    }
}

static void on_child(struct ev_loop *loop, ev_child *c, int revents)
{
    struct corral_wproc *w = c->data;
    struct corral_procs *t = w->owner;
    ev_child_stop(loop, c);
    /* Read what the worker said last (e.g. its final "done" lines). */
    if (w->fd >= 0)
        on_readable(loop, &w->io, EV_READ);
    close_channel(w);
    unlink_proc(t, w);
    if (t->cb.on_exit)
        t->cb.on_exit(t, w, c->rstatus);
    free(w);
}

static void child_exec(int fd, char *const argv[], const char *id)
{
    /* Default dispositions and an empty mask: the worker sets up its own. */
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (fd != 3) {
        if (dup2(fd, 3) < 0)
            _exit(127);
    } else {
        fcntl(3, F_SETFD, 0);
    }
    /* Nothing but stdio and fd 3 crosses exec. */
    long maxfd = sysconf(_SC_OPEN_MAX);
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 4U, ~0U, 0) != 0)
#endif
        for (long i = 4; i < (maxfd > 0 ? maxfd : 1024); i++)
            close((int)i);
    setenv("CORRAL_WORKER_ID", id, 1);
    execv(argv[0], argv);
    dprintf(2, "corrald: cannot exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

struct corral_wproc *corral_procs_spawn(struct corral_procs *t, char *const argv[],
                                        struct corral_err *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        corral_err_set(err, CORRAL_ERR_IO, "socketpair: %s", strerror(errno));
        return NULL;
    }
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        char id[96];
        snprintf(id, sizeof(id), "%s:%d", t->host, (int)getpid());
        child_exec(sv[1], argv, id);
    }
    int saved = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        corral_err_set(err, CORRAL_ERR_IO, "fork: %s", strerror(saved));
        return NULL;
    }
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    struct corral_wproc *w = corral_xcalloc(1, sizeof(*w));
    w->pid = pid;
    snprintf(w->id, sizeof(w->id), "%s:%d", t->host, (int)pid);
    w->state = CORRAL_W_STARTING;
    w->started_ms = w->last_seen_ms = corral_now_ms();
    w->owner = t;
    w->fd = sv[0];
    ev_io_init(&w->io, on_readable, w->fd, EV_READ);
    w->io.data = w;
    ev_io_start(t->loop, &w->io);
    ev_child_init(&w->child, on_child, pid, 0);
    w->child.data = w;
    ev_child_start(t->loop, &w->child);
    w->next = t->head;
    t->head = w;
    t->count++;
    return w;
}

void corral_procs_read(struct corral_wproc *w)
{
    if (w->fd >= 0)
        on_readable(w->owner->loop, &w->io, EV_READ);
}

void corral_procs_kill(struct corral_wproc *w, int sig)
{
    if (sig == SIGTERM && w->state != CORRAL_W_DRAINING) {
        w->state = CORRAL_W_DRAINING;
        w->term_sent_ms = corral_now_ms();
    }
    kill(w->pid, sig);
}

struct corral_wproc *corral_procs_first(struct corral_procs *t)
{
    return t->head;
}

int corral_procs_count(const struct corral_procs *t)
{
    return t->count;
}

void *corral_procs_data(const struct corral_procs *t)
{
    return t->cb.data;
}

const char *corral_procs_host(const struct corral_procs *t)
{
    return t->host;
}

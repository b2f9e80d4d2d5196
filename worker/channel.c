/* fd 3 to corrald: messages formatted by corral/wmsg.h, written without
 * ever blocking the loop (docs/worker.md, "fd 3"). */
#include "channel.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "corral/util.h"

#define OUT_MAX 65536

struct corral_channel {
    struct ev_loop *loop;
    int fd;
    int by_corrald; /* fd 3 was there at start (it may be closed since) */
    pid_t ppid;     /* corrald, as seen at start */
    int reported_busy;
    char *out;
    size_t out_len;
    ev_io out_io;
};

static void flush(struct corral_channel *ch)
{
    while (ch->out_len > 0) {
        ssize_t n = send(ch->fd, ch->out, ch->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(ch->loop, &ch->out_io);
            return;
        }
        if (n < 0) {
            /* corrald is gone; PR_SET_PDEATHSIG will stop us, stop talking. */
            close(ch->fd);
            ch->fd = -1;
            ch->out_len = 0;
            break;
        }
        memmove(ch->out, ch->out + n, ch->out_len - (size_t)n);
        ch->out_len -= (size_t)n;
    }
    ev_io_stop(ch->loop, &ch->out_io);
}

static void on_writable(struct ev_loop *loop, ev_io *io, int revents)
{
    flush(io->data);
}

struct corral_channel *corral_channel_new(struct ev_loop *loop, int fd)
{
    struct corral_channel *ch = corral_xcalloc(1, sizeof(*ch));
    ch->loop = loop;
    ch->fd = fd;
    ch->by_corrald = fd >= 0;
    ch->ppid = getppid();
    ch->reported_busy = -1;
    ev_io_init(&ch->out_io, on_writable, fd, EV_WRITE);
    ch->out_io.data = ch;
    return ch;
}

void corral_channel_free(struct corral_channel *ch)
{
    if (ch == NULL)
        return;
    ev_io_stop(ch->loop, &ch->out_io);
    free(ch->out);
    free(ch);
}

static void say(struct corral_channel *ch, const struct corral_wmsg *m)
{
    if (ch->fd < 0)
        return;
    char line[CORRAL_WMSG_MAX];
    int n = corral_wmsg_format(m, line, sizeof(line));
    if (n < 0 || ch->out_len + (size_t)n > OUT_MAX)
        return; /* corrald is not reading; heartbeats will resume the story */
    ch->out = corral_xrealloc(ch->out, ch->out_len + (size_t)n);
    memcpy(ch->out + ch->out_len, line, (size_t)n);
    ch->out_len += (size_t)n;
    flush(ch);
}

void corral_channel_ready(struct corral_channel *ch, int slots)
{
    struct corral_wmsg m = {.type = CORRAL_WMSG_READY, .slots = slots};
    say(ch, &m);
}

void corral_channel_busy(struct corral_channel *ch, int busy, int slots)
{
    if (busy == ch->reported_busy)
        return;
    ch->reported_busy = busy;
    struct corral_wmsg m = {.type = CORRAL_WMSG_BUSY, .busy = busy, .slots = slots};
    say(ch, &m);
}

void corral_channel_done(struct corral_channel *ch, const char *queue, int64_t ms,
                         enum corral_run_end end)
{
    static const enum corral_wmsg_outcome kind[] = {
        [CORRAL_END_DONE] = CORRAL_OUTCOME_OK,        [CORRAL_END_RETRY] = CORRAL_OUTCOME_RETRY,
        [CORRAL_END_PERMANENT] = CORRAL_OUTCOME_DEAD, [CORRAL_END_DEFER] = CORRAL_OUTCOME_DEFER,
        [CORRAL_END_THROTTLE] = CORRAL_OUTCOME_DEFER, [CORRAL_END_QUOTA] = CORRAL_OUTCOME_DEFER};
    struct corral_wmsg m = {.type = CORRAL_WMSG_DONE, .ms = ms, .outcome = kind[end]};
    snprintf(m.queue, sizeof(m.queue), "%s", queue);
    say(ch, &m);
}

static int64_t own_rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    long long size = 0, res = 0;
    if (f != NULL) {
        if (fscanf(f, "%lld %lld", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return (int64_t)res * (sysconf(_SC_PAGESIZE) / 1024);
}

void corral_channel_heartbeat(struct corral_channel *ch, int busy, int slots, int64_t jobs,
                              size_t unwritten)
{
    if (ch->fd < 0)
        return;
    struct corral_wmsg m = {.type = CORRAL_WMSG_HEARTBEAT,
                            .busy = busy,
                            .slots = slots,
                            .jobs = jobs,
                            .rss_kb = own_rss_kb(),
                            .unwritten = (int64_t)unwritten};
    say(ch, &m);
}

void corral_channel_stopping(struct corral_channel *ch)
{
    struct corral_wmsg m = {.type = CORRAL_WMSG_STOPPING};
    say(ch, &m);
}

int corral_channel_watch_parent(struct corral_channel *ch)
{
    if (!ch->by_corrald)
        return 0;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    return getppid() == 1 ? -1 : 0;
}

int corral_channel_parent_gone(const struct corral_channel *ch)
{
    /* PR_SET_PDEATHSIG normally tells us; this also covers a parent that
     * died before prctl() ran, and reparenting to a subreaper. */
    return ch->by_corrald && getppid() != ch->ppid;
}

void corral_channel_stop(struct corral_channel *ch)
{
    ev_io_stop(ch->loop, &ch->out_io);
}

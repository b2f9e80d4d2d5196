/* corrald's supervision of the host's stunnel: start, read its log on the
 * loop, reap it through ev_child and start it again after a back-off, and
 * keep what status shows. The stunnel side (configuration, log reading)
 * is common/tls.c's. */
#include "tlsproxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "corral/backoff.h"
#include "corral/log.h"
#include "corral/util.h"

#define BACKOFF_BASE_MS 200
#define BACKOFF_CAP_MS  30000
#define STABLE_MS       30000 /* up this long: the next crash starts a fresh back-off */
#define BIND_CHECK_S    0.02  /* how often a starting proxy is checked for its sockets */

struct corral_tlssup {
    struct ev_loop *loop;
    struct corral_tls_proxy *proxy;
    enum corral_tlssup_state state;
    unsigned starts;
    int64_t up_ms;
    struct corral_backoff backoff;
    char exit_error[CORRAL_ERR_MSG_MAX]; /* why stunnel last exited, until it is up again */
    enum corral_tls_fault exit_fault;
    ev_child child;
    ev_io log;
    ev_timer timer; /* STARTING: the bind check; BACKOFF: the restart */
    struct corral_log_repeat logr;
};

const char *corral_tlssup_state_name(enum corral_tlssup_state st)
{
    switch (st) {
    case CORRAL_TLSSUP_STARTING:
        return "starting";
    case CORRAL_TLSSUP_UP:
        return "up";
    case CORRAL_TLSSUP_BACKOFF:
        return "backoff";
    case CORRAL_TLSSUP_STOPPED:
        return "stopped";
    }
    return "unknown";
}

/* stunnel's faults go to corrald's log, each kind once per minute at most
 * (a fleet reconnecting through a broken route would repeat it per try). */
static void on_line(void *data, const struct corral_tls_logline *l)
{
    struct corral_tlssup *s = data;
    char detail[256];
    unsigned flags;
    enum corral_tls_fault f = corral_tls_classify(l->text, &flags, detail, sizeof(detail));
    if (f != CORRAL_TLS_FAULT_NONE && !(flags & CORRAL_TLS_LINE_WEAK))
        corral_logr(&s->logr, CORRAL_LOG_WARN, "TLS proxy: a connection failed",
                    "fault=%s detail=\"%s\"", corral_tls_fault_name(f), detail);
    else
        corral_log_debug("stunnel", "line=\"%s\"", l->text);
}

static void stop_watchers(struct corral_tlssup *s)
{
    ev_io_stop(s->loop, &s->log);
    ev_timer_stop(s->loop, &s->timer);
    ev_child_stop(s->loop, &s->child);
}

static void on_log(struct ev_loop *loop, ev_io *w, int revents)
{
    struct corral_tlssup *s = w->data;
    if (corral_tls_proxy_read_log(s->proxy, on_line, s) < 0)
        ev_io_stop(loop, w); /* EOF: stunnel is gone; ev_child says how */
}

static int spawn(struct corral_tlssup *s, struct corral_err *err);

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct corral_tlssup *s = w->data;
    if (s->state == CORRAL_TLSSUP_STARTING) {
        corral_tls_proxy_read_log(s->proxy, on_line, s);
        if (corral_tls_proxy_bound(s->proxy)) {
            s->state = CORRAL_TLSSUP_UP;
            s->up_ms = corral_now_ms();
            s->exit_error[0] = '\0';
            s->exit_fault = CORRAL_TLS_FAULT_NONE;
            ev_timer_stop(loop, w);
            corral_log_notice("TLS proxy up", "pid=%d routes=%zu dir=%s",
                              (int)corral_tls_proxy_pid(s->proxy),
                              corral_tls_proxy_nroutes(s->proxy), corral_tls_proxy_dir(s->proxy));
        }
        return;
    }
    if (s->state == CORRAL_TLSSUP_BACKOFF) {
        ev_timer_stop(loop, w);
        struct corral_err err;
        if (spawn(s, &err) < 0) {
            /* fork or pipe failed: try again after the next wait */
            int64_t wait = corral_backoff_next(&s->backoff);
            corral_log_err("TLS proxy: cannot start stunnel", "error=\"%s\" retry_ms=%lld", err.msg,
                           (long long)wait);
            snprintf(s->exit_error, sizeof(s->exit_error), "%s", err.msg);
            ev_timer_set(w, (double)wait / 1000.0, 0.0);
            ev_timer_start(loop, w);
        }
    }
}

static void on_child(struct ev_loop *loop, ev_child *w, int revents)
{
    struct corral_tlssup *s = w->data;
    ev_child_stop(loop, w);
    int status = w->rstatus;
    corral_tls_proxy_read_log(s->proxy, on_line, s); /* its last words */
    struct corral_err err;
    enum corral_tls_fault f = corral_tls_proxy_last_fault(s->proxy, &err);
    corral_tls_proxy_exited(s->proxy, status);
    ev_io_stop(loop, &s->log);
    ev_timer_stop(loop, &s->timer);
    if (s->up_ms > 0 && corral_now_ms() - s->up_ms >= STABLE_MS)
        corral_backoff_reset(&s->backoff);
    int64_t wait = corral_backoff_next(&s->backoff);
    char how[64];
    if (WIFSIGNALED(status))
        snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(status));
    else
        snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
    if (f == CORRAL_TLS_FAULT_SETUP) {
        s->exit_fault = f;
        snprintf(s->exit_error, sizeof(s->exit_error), "%s", err.msg);
    } else {
        s->exit_fault = CORRAL_TLS_FAULT_NONE;
        snprintf(s->exit_error, sizeof(s->exit_error), "stunnel %s", how);
    }
    corral_log_warn("TLS proxy: stunnel stopped; restarting",
                    "how=\"%s\" retry_ms=%lld error=\"%s\"", how, (long long)wait, s->exit_error);
    s->state = CORRAL_TLSSUP_BACKOFF;
    s->up_ms = 0;
    ev_timer_set(&s->timer, (double)wait / 1000.0, 0.0);
    ev_timer_start(loop, &s->timer);
}

static int spawn(struct corral_tlssup *s, struct corral_err *err)
{
    if (corral_tls_proxy_spawn(s->proxy, err) < 0)
        return -1;
    if (s->starts++ > 0)
        corral_log_notice("TLS proxy: stunnel started again", "pid=%d restarts=%u",
                          (int)corral_tls_proxy_pid(s->proxy), s->starts - 1);
    s->state = CORRAL_TLSSUP_STARTING;
    ev_child_set(&s->child, corral_tls_proxy_pid(s->proxy), 0);
    ev_child_start(s->loop, &s->child);
    ev_io_set(&s->log, corral_tls_proxy_log_fd(s->proxy), EV_READ);
    ev_io_start(s->loop, &s->log);
    ev_timer_set(&s->timer, BIND_CHECK_S, BIND_CHECK_S);
    ev_timer_start(s->loop, &s->timer);
    return 0;
}

struct corral_tlssup *corral_tlssup_new(struct ev_loop *loop, const struct corral_redis_conf *conf,
                                        const char *dir, struct corral_err *err)
{
    struct corral_tls_proxy *p = corral_tls_proxy_new(conf, dir, err);
    if (p == NULL)
        return NULL;
    struct corral_tlssup *s = corral_xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->proxy = p;
    s->state = CORRAL_TLSSUP_STOPPED;
    corral_backoff_init(&s->backoff, BACKOFF_BASE_MS, BACKOFF_CAP_MS);
    corral_log_repeat_init(&s->logr, 60000);
    ev_child_init(&s->child, on_child, 0, 0);
    s->child.data = s;
    ev_io_init(&s->log, on_log, -1, EV_READ);
    s->log.data = s;
    ev_timer_init(&s->timer, on_timer, 0.0, 0.0);
    s->timer.data = s;
    return s;
}

int corral_tlssup_route(struct corral_tlssup *s, const char *host, int port, struct corral_err *err)
{
    int added = corral_tls_proxy_route(s->proxy, host, port);
    if (added < 0)
        return corral_err_set(err, CORRAL_ERR_INVALID,
                              "TLS proxy: %s:%d is not a route it can make", host, port);
    if (added == 0 || s->state == CORRAL_TLSSUP_STOPPED || s->state == CORRAL_TLSSUP_BACKOFF)
        return 0; /* the next start writes it */
    if (corral_tls_proxy_reload(s->proxy, err) < 0)
        return -1;
    corral_log_info("TLS proxy: route added", "host=%s port=%d", host, port);
    if (s->state == CORRAL_TLSSUP_UP) {
        s->state = CORRAL_TLSSUP_STARTING; /* until the new socket is bound */
        ev_timer_set(&s->timer, BIND_CHECK_S, BIND_CHECK_S);
        ev_timer_start(s->loop, &s->timer);
    }
    return 0;
}

int corral_tlssup_start(struct corral_tlssup *s, struct corral_err *err)
{
    if (s->state != CORRAL_TLSSUP_STOPPED)
        return 0;
    return spawn(s, err);
}

void corral_tlssup_health(const struct corral_tlssup *s, struct corral_tlssup_health *out)
{
    memset(out, 0, sizeof(*out));
    out->state = s->state;
    out->pid = corral_tls_proxy_pid(s->proxy);
    out->restarts = s->starts > 0 ? s->starts - 1 : 0;
    out->up_ms = s->up_ms;
    out->routes = corral_tls_proxy_nroutes(s->proxy);
    struct corral_err err;
    out->fault = corral_tls_proxy_last_fault(s->proxy, &err);
    if (out->fault != CORRAL_TLS_FAULT_NONE)
        snprintf(out->error, sizeof(out->error), "%s", err.msg);
    else if (s->exit_error[0] != '\0') {
        out->fault = s->exit_fault;
        snprintf(out->error, sizeof(out->error), "%s", s->exit_error);
    }
}

const char *corral_tlssup_dir(const struct corral_tlssup *s)
{
    return corral_tls_proxy_dir(s->proxy);
}

void corral_tlssup_free(struct corral_tlssup *s)
{
    if (s == NULL)
        return;
    stop_watchers(s);
    corral_tls_proxy_free(s->proxy);
    free(s);
}

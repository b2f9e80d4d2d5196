/* corrald's TLS proxy: the host's one stunnel4 (corral/tls.h), started in
 * the foreground as corrald's child, restarted with back-off when it dies,
 * its log read on the event loop, and its health for status (docs/ha.md,
 * "TLS"). Workers and corralctl on the host reach Redis through its unix
 * sockets under dir (corral_tls_local_path). */
#ifndef CORRAL_TLSPROXY_H
#define CORRAL_TLSPROXY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ev.h>

#include "corral/config.h"
#include "corral/err.h"
#include "corral/tls.h"

enum corral_tlssup_state {
    CORRAL_TLSSUP_STARTING, /* stunnel started, its sockets not all bound yet */
    CORRAL_TLSSUP_UP,       /* every route listens */
    CORRAL_TLSSUP_BACKOFF,  /* stunnel died; the restart waits out its back-off */
    CORRAL_TLSSUP_STOPPED,  /* not started, or freed */
};

/* What status shows of the proxy. */
struct corral_tlssup_health {
    enum corral_tlssup_state state;
    pid_t pid;         /* -1 when none runs */
    unsigned restarts; /* stunnel processes started after the first */
    int64_t up_ms;     /* CLOCK_MONOTONIC of the last start that bound every route; 0: never */
    size_t routes;
    /* The newest fault still standing on any route (or why stunnel last
     * exited), and its sentence; CORRAL_TLS_FAULT_NONE and "" when none. */
    enum corral_tls_fault fault;
    char error[CORRAL_ERR_MSG_MAX];
};

struct corral_tlssup;

/* A supervised proxy for conf (a rediss url) under dir, on loop, which
 * must be libev's default loop (ev_child). Nothing runs until
 * corral_tlssup_start. NULL with err when the certificate files cannot be
 * read or dir cannot be made. */
struct corral_tlssup *corral_tlssup_new(struct ev_loop *loop, const struct corral_redis_conf *conf,
                                        const char *dir, struct corral_err *err);
/* Adds the route to host:port; a running stunnel reloads (SIGHUP) to bind
 * it while open connections stay. No-op when the route exists. */
int corral_tlssup_route(struct corral_tlssup *s, const char *host, int port,
                        struct corral_err *err);
/* Starts stunnel. Its exits are handled from then on: each is logged and
 * followed by a restart after corral_backoff's wait (200 ms doubling to
 * 30 s, reset once a start has stayed up for 30 s). */
int corral_tlssup_start(struct corral_tlssup *s, struct corral_err *err);
void corral_tlssup_health(const struct corral_tlssup *s, struct corral_tlssup_health *out);
/* "starting", "up", "backoff", "stopped". */
const char *corral_tlssup_state_name(enum corral_tlssup_state st);
/* The dir whose sockets the routes listen on. */
const char *corral_tlssup_dir(const struct corral_tlssup *s);
/* Stops stunnel (SIGTERM, reaped), removes its sockets and config. NULL-safe. */
void corral_tlssup_free(struct corral_tlssup *s);

#endif

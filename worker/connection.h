/* One async Redis connection of the worker (hiredis on the libev loop):
 * connect, the handshake (AUTH, SELECT, the owner's set-up, a PING that
 * marks it ready), reconnects with back-off, the pause after an error
 * reply, and replacing a connection that stopped answering.
 *
 * Every retry backs off exponentially with jitter (corral/backoff.h) and a
 * trouble that repeats is logged once, then counted (corral_logr); see
 * docs/worker.md. */
#ifndef CORRAL_CONNECTION_H
#define CORRAL_CONNECTION_H

#include <stdint.h>

#include <ev.h>
#include <hiredis/async.h>

#include "corral/err.h"
#include "corral/log.h"
#include "corral/queue.h"

struct corral_conn;

struct corral_conn_hooks {
    /* The middle of the handshake, after AUTH and SELECT, on a fresh
     * connection and again after corral_conn_setup_again: send commands
     * with corral_conn_setup_send (or corral_conn_send with a callback of
     * your own), then call corral_conn_setup_end, at once or from a reply.
     * Run again when Redis says the library or a queue is gone
     * (corral_conn_refused). NULL: none. */
    void (*setup)(struct corral_conn *c, void *priv);
    /* The handshake is done: the connection may carry work. */
    void (*ready)(struct corral_conn *c, void *priv);
    /* The connection was dropped because its node is not the master
     * (READONLY, LOADING, MASTERDOWN, UNBLOCKED, or ROLE at the handshake):
     * the owner drops its other connections to that node too
     * (corral_conn_reconnect). NULL: none. */
    void (*moved)(struct corral_conn *c, void *priv);
    /* With Sentinel: keep a connection to a sentinel subscribed to
     * +switch-master, and treat a switch to another master as "moved" (one
     * connection of a process does this for all of them). */
    int follow_switch;
    /* The sentinels switched the master (follow_switch): the owner's
     * other connections that wait between tries try now
     * (corral_conn_retry_now). NULL: none. */
    void (*switched)(struct corral_conn *c, void *priv);
};

/* conf (kept: it must outlive the connection) gives the url, parsed here
 * once, the sentinels (each connect then asks them for the master) and,
 * with rediss, the route through corrald's TLS proxy ($CORRAL_TLS_DIR);
 * password may be NULL (copied). NULL with err when the url is bad.
 * Nothing connects before corral_conn_start. */
/* [redis] cluster: every connection of the process goes to the primary
 * holding key's slot (a worker's one queue), found again on each connect. */
void corral_conn_cluster_route(const char *key);
/* This connection to the primary of key's slot instead (a service's gate:
 * worker/gate.h); before corral_conn_start. */
void corral_conn_route(struct corral_conn *c, const char *key);

struct corral_conn *corral_conn_new(struct ev_loop *loop, const char *name,
                                    const struct corral_redis_conf *conf, const char *password,
                                    const struct corral_conn_hooks *hooks, void *priv,
                                    struct corral_err *err);
/* NULL-safe; closes at once what is still open (pending callbacks get
 * NULL). */
void corral_conn_free(struct corral_conn *c);

void corral_conn_start(struct corral_conn *c);
/* Drops the connection now (pending callbacks get NULL) and connects again
 * after the first step of the back-off, finding the address again (a DNS
 * name is resolved anew). why goes to the log. No-op while closed or
 * between tries. */
void corral_conn_reconnect(struct corral_conn *c, const char *why);
/* Between tries (no connection, a retry pending): the next try now rather
 * than after the back-off. No-op otherwise. */
void corral_conn_retry_now(struct corral_conn *c);
/* Ready: handshake done. Usable: ready and not pausing after an error
 * reply (corral_conn_refused). */
int corral_conn_ready(const struct corral_conn *c);
int corral_conn_usable(const struct corral_conn *c);

/* Sends cmd; fn gets the reply (NULL when the connection went first) and
 * must call corral_conn_replied(ac) first. -1 when it cannot be sent (no
 * connection, or closing): fn is then never called. */
int corral_conn_send(struct corral_conn *c, redisCallbackFn *fn, void *priv,
                     const struct corral_cmd *cmd);
/* Counts a reply on ac's connection, for corral_conn_check_stall. */
void corral_conn_replied(const redisAsyncContext *ac);

/* Set-up commands: an error reply to one is logged (step names it) and the
 * connection is dropped and retried after a back-off. */
/* A set-up step failed: the connection is dropped and made again after
 * the back-off (the error logged once, then counted). */
void corral_conn_setup_failed(struct corral_conn *c, const char *step, const char *error);
void corral_conn_setup_send(struct corral_conn *c, const char *step, const struct corral_cmd *cmd);
/* Ends the handshake: a PING whose reply makes the connection ready. */
void corral_conn_setup_end(struct corral_conn *c);

/* An error reply to a call (what names it): logs it through r (once, then
 * counted), pauses the connection's use for a growing while, and sets it up
 * again when Redis says the function library or a queue is gone. */
void corral_conn_refused(struct corral_conn *c, struct corral_log_repeat *r, const char *what,
                         const char *error, enum corral_err_word word);
/* A call went through: the pause after the next refusal starts small
 * again, and r writes what it held back. */
void corral_conn_accepted(struct corral_conn *c, struct corral_log_repeat *r);

/* Replaces a connection that has had commands outstanding and no reply
 * for limit_ms. Call it every second or so. */
void corral_conn_check_stall(struct corral_conn *c, int64_t limit_ms);
/* Closes for good: after the pending replies, or at once when grace_ms
 * passes (0: at once). No reconnect follows. */
void corral_conn_close(struct corral_conn *c, int64_t grace_ms);

#endif

/* An async Redis connection of the worker and everything that keeps it
 * alive: connect, handshake, reconnect with back-off, the pause after an
 * error reply, stall detection (see connection.h and docs/worker.md).
 *
 * What must stay true: no retry path loops faster than its back-off
 * allows, whatever Redis answers (a wrong password, a read-only replica, a
 * user without +function|load), and a retry that fails the same way again
 * adds no log line, only a count. */
#include "connection.h"

#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libev.h>
#include <hiredis/hiredis.h>

#include "corral/backoff.h"
#include "corral/queue.h"
#include "corral/redis.h"
#include "corral/cluster.h"
#include "corral/sentinel.h"
#include "corral/tls.h"
#include "corral/util.h"

/* Reconnects start at 250 ms and double to 2 s, each wait drawn from
 * [step/2, step]. The cap is what a restarted Redis costs: every worker is
 * back within about 2 s of it (docs/worker.md, "Retries"); at most one try
 * per second or so per connection is nothing to a Redis refusing them (a
 * wrong password, a read-only replica). */
#define RECONNECT_BASE_MS 250
#define RECONNECT_CAP_MS  2000
/* After an error reply (a paused ACL, an unloaded library, an OOM server)
 * the connection's callers wait this long, doubling to the cap, before
 * trying again: the error usually lasts, and nothing is lost by waiting. */
#define HOLD_BASE_MS 250
#define HOLD_CAP_MS  5000
/* With Sentinel, each connect first asks the sentinels for the master with
 * a blocking helper (corral_sentinel_connect), bounded by this timeout per
 * sentinel and per candidate master. It runs on the retry timer, never
 * between jobs of a live connection: the hot path does not wait on it
 * (docs/ha.md, "Finding the master"). */
#define DISCOVERY_TIMEOUT_MS 500

struct corral_conn {
    struct ev_loop *loop;
    char name[32];
    char *url;                            /* for logs: it holds no password (corral/redis.h) */
    const struct corral_redis_conf *conf; /* the owner's: outlives us */
    struct corral_redis_addr addr;
    struct corral_hostport at; /* with Sentinel: the master we connected to */
    char *tls_dir;             /* rediss: corrald's proxy ($CORRAL_TLS_DIR); else NULL */
    /* +switch-master: a subscribed sentinel connection (hooks->follow_switch) */
    redisAsyncContext *watch;
    size_t watch_next; /* the sentinel to try next */
    struct corral_backoff watch_backoff;
    ev_timer watch_retry;
    char *password;
    const struct corral_conn_hooks *hooks;
    void *priv;
    redisAsyncContext *ac;
    int ready;          /* handshake done */
    int closing;        /* corral_conn_close: no reconnect */
    int role_unchecked; /* the ACL user may not run ROLE (said once) */
    struct corral_backoff reconnect;
    ev_timer retry;
    struct corral_backoff hold_backoff;
    ev_timer hold;                    /* active while callers pause after an error reply */
    ev_timer grace;                   /* bounds a graceful close */
    struct corral_log_repeat trouble; /* cannot connect, lost, set-up refused */
    /* stall detection */
    uint64_t replies;       /* replies received so far */
    uint64_t stall_replies; /* replies when the current wait began */
    int64_t stall_since_ms; /* 0 = nothing outstanding at the last check */
    char *route;            /* [redis] cluster: this connection's key, else cluster_route */
};

static void conn_connect(struct corral_conn *c);

/* [redis] cluster: the key whose slot's primary every connection of this
 * process connects to (corral_conn_cluster_route). */
static char *cluster_route;

void corral_conn_cluster_route(const char *key)
{
    free(cluster_route);
    cluster_route = key ? corral_xstrdup(key) : NULL;
}

/* Forgets the context: its pending callbacks (run when hiredis frees it)
 * and its disconnect callback find no connection and do nothing more. */
static redisAsyncContext *detach(struct corral_conn *c)
{
    redisAsyncContext *ac = c->ac;
    if (ac != NULL)
        ac->data = NULL;
    c->ac = NULL;
    c->ready = 0;
    c->stall_since_ms = 0;
    return ac;
}

/* Schedules the next connect after a back-off; logs why (msg) once per
 * kind of trouble, counting repeats. */
static void retry_later(struct corral_conn *c, enum corral_log_level level, const char *msg,
                        const char *error)
{
    if (c->closing)
        return;
    int64_t wait_ms = corral_backoff_next(&c->reconnect);
    if (msg != NULL)
        corral_logr(&c->trouble, level, msg, "conn=%s error=\"%s\" retry_ms=%lld", c->name,
                    error ? error : "", (long long)wait_ms);
    ev_timer_stop(c->loop, &c->retry);
    ev_timer_set(&c->retry, (double)wait_ms / 1000.0, 0.0);
    ev_timer_start(c->loop, &c->retry);
}

/* Closes at once and reconnects later. Freeing runs every pending callback
 * with a NULL reply (maybe after the callback we are in returns). */
static void drop(struct corral_conn *c, enum corral_log_level level, const char *msg,
                 const char *error)
{
    redisAsyncContext *ac = detach(c);
    if (ac == NULL)
        return;
    redisAsyncFree(ac);
    retry_later(c, level, msg, error);
}

void corral_conn_replied(const redisAsyncContext *ac)
{
    struct corral_conn *c = ac->data;
    if (c != NULL)
        c->replies++;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct corral_conn *c = ac->data;
    if (c == NULL)
        return; /* dropped by us: already handled */
    detach(c);
    if (c->closing) {
        ev_timer_stop(c->loop, &c->grace);
        return;
    }
    retry_later(c, CORRAL_LOG_WARN, "redis connection lost", ac->errstr);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct corral_conn *c = ac->data;
    if (c == NULL || status == REDIS_OK)
        return;
    /* hiredis frees the context after this, without a disconnect call. */
    detach(c);
    if (c->closing)
        ev_timer_stop(c->loop, &c->grace);
    else
        retry_later(c, CORRAL_LOG_WARN, "cannot connect to redis", ac->errstr);
}

static void on_handshake_done(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct corral_conn *c = ac->data;
    redisReply *r = reply;
    if (c == NULL || r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        drop(c, CORRAL_LOG_ERR, "redis handshake failed", r->str);
        return;
    }
    c->ready = 1;
    corral_backoff_reset(&c->reconnect);
    corral_log_repeat_end(&c->trouble);
    if (c->at.host != NULL) /* a Sentinel's master or a Cluster's node: where it went */
        corral_log_info("connected to redis", "conn=%s at=%s:%d", c->name, c->at.host, c->at.port);
    else
        corral_log_info("connected to redis", "conn=%s url=%s", c->name, c->url);
    /* A handshake answered while the connection closes gracefully (the
     * worker drained before it was up): nothing is started on it. */
    if (c->hooks->ready != NULL && !c->closing)
        c->hooks->ready(c, c->priv);
}

static void on_setup_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct corral_conn *c = ac->data;
    redisReply *r = reply;
    if (c == NULL || r == NULL || r->type != REDIS_REPLY_ERROR)
        return;
    char why[512];
    snprintf(why, sizeof(why), "%s: %s", (const char *)priv, r->str);
    drop(c, CORRAL_LOG_ERR, "redis setup failed", why);
}

void corral_conn_setup_failed(struct corral_conn *c, const char *step, const char *error)
{
    char why[512];
    snprintf(why, sizeof(why), "%s: %s", step, error);
    drop(c, CORRAL_LOG_ERR, "redis setup failed", why);
}

void corral_conn_setup_send(struct corral_conn *c, const char *step, const struct corral_cmd *cmd)
{
    if (c->ac != NULL)
        redisAsyncCommandArgv(c->ac, on_setup_reply, (void *)step, cmd->argc,
                              (const char **)cmd->argv, cmd->argvlen);
}

/* The node is not the master: drop, tell the owner, find it again. */
static void moved(struct corral_conn *c, struct corral_log_repeat *r, const char *error)
{
    if (c->ac == NULL)
        return;
    /* Not through retry_later's log: the owner's repeat counter (r) keeps
     * one line per kind of trouble, however often the node refuses. */
    drop(c, CORRAL_LOG_WARN, NULL, NULL);
    corral_logr(r != NULL ? r : &c->trouble, CORRAL_LOG_WARN,
                "redis node is not the master; connecting again", "conn=%s error=\"%s\"", c->name,
                error);
    if (c->hooks->moved != NULL)
        c->hooks->moved(c, c->priv);
}

/* ROLE at the end of every handshake: only a master is believed (docs/ha.md,
 * "Finding the master"). A user whose ACL lacks +role (or a server without
 * ROLE) is trusted, once said. */
static void on_role(redisAsyncContext *ac, void *reply, void *priv)
{
    corral_conn_replied(ac);
    struct corral_conn *c = ac->data;
    redisReply *r = reply;
    if (c == NULL || r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        enum corral_err_word word = corral_reply_word(r->str, r->len);
        if (word == CORRAL_WORD_NOPERM || word == CORRAL_WORD_NOCOMMAND) {
            if (!c->role_unchecked)
                corral_log_warn("cannot check the redis node's role (an ACL user needs +role); "
                                "trusting it is the master",
                                "conn=%s error=\"%s\"", c->name, r->str);
            c->role_unchecked = 1;
        } else if (corral_err_word_moved(word)) {
            moved(c, NULL, r->str);
        } else {
            drop(c, CORRAL_LOG_ERR, "redis handshake failed", r->str);
        }
        return;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
        r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "master") == 0)
        return;
    char why[96];
    snprintf(why, sizeof(why), "ROLE says %s, not master",
             r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                     r->element[0]->type == REDIS_REPLY_STRING
                 ? r->element[0]->str
                 : "something else");
    moved(c, NULL, why);
}

void corral_conn_setup_end(struct corral_conn *c)
{
    if (c->ac == NULL)
        return;
    redisAsyncCommand(c->ac, on_role, NULL, "ROLE");
    redisAsyncCommand(c->ac, on_handshake_done, NULL, "PING");
}

/* The handshake's middle and end, on a fresh connection or a live one
 * whose library or queues vanished: not ready until it is done. */
static void setup_again(struct corral_conn *c)
{
    if (c->ac == NULL)
        return;
    c->ready = 0;
    if (c->hooks->setup != NULL)
        c->hooks->setup(c, c->priv);
    else
        corral_conn_setup_end(c);
}

/* The address to connect to now: the url's, the master the sentinels name,
 * and with rediss the local end of the TLS route to it. */
static redisAsyncContext *open_async(struct corral_conn *c)
{
    const struct corral_redis_addr *a = &c->addr;
    const char *host = a->host;
    int port = a->port;
    if (c->conf->sentinels.n > 0) {
        struct corral_reach reach = {.tls_dir = c->tls_dir};
        struct corral_hostport hp;
        struct corral_err e;
        redisContext *m = corral_sentinel_connect(c->conf, &reach, DISCOVERY_TIMEOUT_MS, &hp, &e);
        if (m == NULL) {
            retry_later(c, CORRAL_LOG_WARN, "cannot find the redis master", e.msg);
            return NULL;
        }
        redisFree(m);
        corral_hostport_free(&c->at);
        c->at = hp;
        host = hp.host;
        port = hp.port;
    } else if (c->conf->cluster.n > 0 && (c->route != NULL || cluster_route != NULL)) {
        /* The primary of the queue's slot, from the seeds' map, asked on
         * every connect: a MOVED (the slot moved, a failover) drops the
         * connection and lands here again (docs/design.md). */
        struct corral_hostport hp;
        struct corral_err e;
        if (corral_cluster_locate(c->conf, c->route ? c->route : cluster_route,
                                  DISCOVERY_TIMEOUT_MS, &hp, &e) < 0) {
            retry_later(c, CORRAL_LOG_WARN,
                        c->route ? "cannot find the service's redis cluster node"
                                 : "cannot find the queue's redis cluster node",
                        e.msg);
            return NULL;
        }
        corral_hostport_free(&c->at);
        c->at = hp;
        host = hp.host;
        port = hp.port;
    }
    redisAsyncContext *ac;
    if (a->path != NULL && c->conf->sentinels.n == 0) {
        ac = redisAsyncConnectUnix(a->path);
    } else if (c->tls_dir != NULL) {
        char *path = corral_tls_local_path(c->tls_dir, host, port);
        ac = redisAsyncConnectUnix(path);
        free(path);
    } else {
        ac = redisAsyncConnect(host, port);
    }
    if (ac == NULL || ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        retry_later(c, CORRAL_LOG_WARN, "cannot connect to redis", why);
        return NULL;
    }
    return ac;
}

static void conn_connect(struct corral_conn *c)
{
    const struct corral_redis_addr *a = &c->addr;
    redisAsyncContext *ac = open_async(c);
    if (ac == NULL)
        return;
    ac->data = c;
    c->ac = ac;
    c->ready = 0;
    redisLibevAttach(c->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (c->password != NULL) {
        if (a->user)
            redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s %s", a->user, c->password);
        else
            redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s", c->password);
    }
    if (a->db != 0)
        redisAsyncCommand(ac, on_setup_reply, "SELECT", "SELECT %d", a->db);
    if (a->path == NULL && c->tls_dir == NULL)
        redisEnableKeepAlive(&ac->c); /* notice a peer gone without a word */
    setup_again(c);
}

static void on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    conn_connect(t->data);
}

static void on_hold_end(struct ev_loop *loop, ev_timer *t, int revents)
{
    /* Nothing to do: the callers' prepare watchers try again. */
}

static void on_grace_end(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct corral_conn *c = t->data;
    corral_log_warn("redis did not answer the last commands; closing", "conn=%s", c->name);
    redisAsyncContext *ac = detach(c);
    if (ac != NULL)
        redisAsyncFree(ac);
}

/* --- +switch-master ------------------------------------------------------ */

static void watch_connect(struct corral_conn *c);

static void watch_retry_later(struct corral_conn *c)
{
    if (c->closing)
        return;
    ev_timer_stop(c->loop, &c->watch_retry);
    ev_timer_set(&c->watch_retry, (double)corral_backoff_next(&c->watch_backoff) / 1000.0, 0.0);
    ev_timer_start(c->loop, &c->watch_retry);
}

static void watch_close(struct corral_conn *c)
{
    redisAsyncContext *ac = c->watch;
    c->watch = NULL;
    if (ac != NULL) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
}

static void on_watch_disconnect(const redisAsyncContext *ac, int status)
{
    struct corral_conn *c = ac->data;
    if (c == NULL)
        return;
    c->watch = NULL;
    watch_retry_later(c);
}

static void on_watch_connect(const redisAsyncContext *ac, int status)
{
    struct corral_conn *c = ac->data;
    if (c == NULL || status == REDIS_OK)
        return;
    c->watch = NULL; /* hiredis frees it */
    watch_retry_later(c);
}

/* Every frame of the subscription: the confirmation, then the events. */
static void on_watch_event(redisAsyncContext *ac, void *reply, void *priv)
{
    struct corral_conn *c = ac->data;
    redisReply *r = reply;
    if (c == NULL || r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR) { /* AUTH or SUBSCRIBE refused */
        corral_logr(&c->trouble, CORRAL_LOG_WARN, "cannot subscribe to the sentinels' events",
                    "conn=%s error=\"%s\"", c->name, r->str);
        watch_close(c);
        watch_retry_later(c);
        return;
    }
    struct corral_switch sw;
    struct corral_err e;
    int rc = corral_reply_sentinel_event(r, c->conf->sentinel_master, &sw, &e);
    if (rc == 0) {
        corral_backoff_reset(&c->watch_backoff);
        return;
    }
    if (rc < 0) {
        corral_log_warn("unreadable sentinel event", "conn=%s error=\"%s\"", c->name, e.msg);
        return;
    }
    int same = c->ac != NULL && c->at.host != NULL && strcmp(c->at.host, sw.to.host) == 0 &&
               c->at.port == sw.to.port;
    corral_log_notice("the sentinels switched the master", "conn=%s master=%s from=%s:%d to=%s:%d",
                      c->name, sw.name, sw.from.host, sw.from.port, sw.to.host, sw.to.port);
    if (!same && c->ac != NULL) {
        char why[160];
        snprintf(why, sizeof(why), "+switch-master to %s:%d", sw.to.host, sw.to.port);
        moved(c, NULL, why);
    }
    /* A connection waiting out a back-off (the old master died) tries at
     * once: the sentinels name the new master now. The owner's other
     * connections too (never from "moved": two connections refused by a
     * replica would wake each other without a pause). */
    corral_conn_retry_now(c);
    if (c->hooks->switched != NULL)
        c->hooks->switched(c, c->priv);
    corral_switch_free(&sw);
}

static void on_watch_auth(redisAsyncContext *ac, void *reply, void *priv)
{
    struct corral_conn *c = ac->data;
    redisReply *r = reply;
    if (c == NULL || r == NULL || r->type != REDIS_REPLY_ERROR)
        return;
    corral_logr(&c->trouble, CORRAL_LOG_WARN, "sentinel refused AUTH",
                "conn=%s error=\"%s\" password_file=%s", c->name, r->str,
                c->conf->sentinel_password_file);
}

static void watch_connect(struct corral_conn *c)
{
    const struct corral_strlist *ss = &c->conf->sentinels;
    const char *addr = ss->items[c->watch_next++ % ss->n];
    struct corral_hostport hp;
    struct corral_err e;
    if (corral_hostport_parse(addr, CORRAL_SENTINEL_PORT, &hp, &e) < 0) {
        watch_retry_later(c);
        return;
    }
    redisAsyncContext *ac;
    if (c->tls_dir != NULL) {
        char *path = corral_tls_local_path(c->tls_dir, hp.host, hp.port);
        ac = redisAsyncConnectUnix(path);
        free(path);
    } else {
        ac = redisAsyncConnect(hp.host, hp.port);
    }
    corral_hostport_free(&hp);
    if (ac == NULL || ac->err) {
        if (ac != NULL)
            redisAsyncFree(ac);
        watch_retry_later(c);
        return;
    }
    ac->data = c;
    c->watch = ac;
    redisLibevAttach(c->loop, ac);
    redisAsyncSetConnectCallback(ac, on_watch_connect);
    redisAsyncSetDisconnectCallback(ac, on_watch_disconnect);
    if (c->conf->sentinel_password_file != NULL) {
        char *pass = corral_read_secret(c->conf->sentinel_password_file, &e);
        if (pass != NULL) {
            redisAsyncCommand(ac, on_watch_auth, NULL, "AUTH %s", pass);
            explicit_bzero(pass, strlen(pass));
            free(pass);
        }
    }
    if (c->tls_dir == NULL)
        redisEnableKeepAlive(&ac->c);
    redisAsyncCommand(ac, on_watch_event, NULL, "SUBSCRIBE +switch-master");
}

static void on_watch_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    watch_connect(t->data);
}

struct corral_conn *corral_conn_new(struct ev_loop *loop, const char *name,
                                    const struct corral_redis_conf *conf, const char *password,
                                    const struct corral_conn_hooks *hooks, void *priv,
                                    struct corral_err *err)
{
    struct corral_conn *c = corral_xcalloc(1, sizeof(*c));
    int tls = 0;
    if (corral_tls_parse_url(conf->url, &c->addr, &tls,
                             conf->sentinels.n > 0 || conf->cluster.n > 0, err) < 0) {
        free(c);
        return NULL;
    }
    if (tls) {
        /* rediss: through the TLS proxy of corrald on this host (docs/ha.md,
         * "How it runs"); never in plaintext. */
        c->tls_dir = corral_tls_default_dir();
    }
    c->conf = conf;
    c->loop = loop;
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->url = corral_xstrdup(conf->url);
    c->password = password ? corral_xstrdup(password) : NULL;
    c->hooks = hooks;
    c->priv = priv;
    corral_backoff_init(&c->reconnect, RECONNECT_BASE_MS, RECONNECT_CAP_MS);
    corral_backoff_init(&c->hold_backoff, HOLD_BASE_MS, HOLD_CAP_MS);
    corral_backoff_init(&c->watch_backoff, RECONNECT_BASE_MS, RECONNECT_CAP_MS);
    corral_log_repeat_init(&c->trouble, 0);
    ev_timer_init(&c->retry, on_retry, 0.0, 0.0);
    c->retry.data = c;
    ev_timer_init(&c->hold, on_hold_end, 0.0, 0.0);
    c->hold.data = c;
    ev_timer_init(&c->grace, on_grace_end, 0.0, 0.0);
    c->grace.data = c;
    ev_timer_init(&c->watch_retry, on_watch_retry, 0.0, 0.0);
    c->watch_retry.data = c;
    return c;
}

void corral_conn_free(struct corral_conn *c)
{
    if (c == NULL)
        return;
    redisAsyncContext *ac = detach(c);
    if (ac != NULL)
        redisAsyncFree(ac);
    ev_timer_stop(c->loop, &c->retry);
    ev_timer_stop(c->loop, &c->hold);
    ev_timer_stop(c->loop, &c->grace);
    ev_timer_stop(c->loop, &c->watch_retry);
    watch_close(c);
    corral_log_repeat_end(&c->trouble);
    corral_redis_addr_free(&c->addr);
    corral_hostport_free(&c->at);
    free(c->tls_dir);
    if (c->password != NULL) {
        explicit_bzero(c->password, strlen(c->password));
        free(c->password);
    }
    free(c->url);
    free(c->route);
    free(c);
}

void corral_conn_route(struct corral_conn *c, const char *key)
{
    free(c->route);
    c->route = corral_xstrdup(key);
}

void corral_conn_start(struct corral_conn *c)
{
    if (c->closing) /* closed before it was started: stays closed */
        return;
    conn_connect(c);
    if (c->hooks->follow_switch && c->conf->sentinels.n > 0)
        watch_connect(c);
}

void corral_conn_retry_now(struct corral_conn *c)
{
    if (c->closing || c->ac != NULL || !ev_is_active(&c->retry))
        return;
    ev_timer_stop(c->loop, &c->retry);
    ev_timer_set(&c->retry, 0.0, 0.0);
    ev_timer_start(c->loop, &c->retry);
}

void corral_conn_reconnect(struct corral_conn *c, const char *why)
{
    if (c->closing || c->ac == NULL)
        return;
    drop(c, CORRAL_LOG_WARN, NULL, NULL);
    corral_log_info("redis connection dropped; connecting again", "conn=%s why=\"%s\"", c->name,
                    why);
}

int corral_conn_ready(const struct corral_conn *c)
{
    return c->ac != NULL && c->ready;
}

int corral_conn_usable(const struct corral_conn *c)
{
    return corral_conn_ready(c) && !ev_is_active(&c->hold);
}

int corral_conn_send(struct corral_conn *c, redisCallbackFn *fn, void *priv,
                     const struct corral_cmd *cmd)
{
    if (c->ac == NULL)
        return -1;
    return redisAsyncCommandArgv(c->ac, fn, priv, cmd->argc, (const char **)cmd->argv,
                                 cmd->argvlen) == REDIS_OK
               ? 0
               : -1;
}

void corral_conn_refused(struct corral_conn *c, struct corral_log_repeat *r, const char *what,
                         const char *error, enum corral_err_word word)
{
    if (corral_err_word_moved(word)) {
        moved(c, r, error);
        return;
    }
    int64_t wait_ms = corral_backoff_next(&c->hold_backoff);
    corral_logr(r, CORRAL_LOG_ERR, "redis refused a call; backing off",
                "conn=%s call=\"%s\" error=\"%s\" retry_ms=%lld", c->name, what, error,
                (long long)wait_ms);
    ev_timer_stop(c->loop, &c->hold);
    ev_timer_set(&c->hold, (double)wait_ms / 1000.0, 0.0);
    ev_timer_start(c->loop, &c->hold);
    /* The code words that say the library or a queue is gone
     * (docs/protocol.md, "Errors"). */
    if (c->ready && (word == CORRAL_WORD_NOQUEUE || word == CORRAL_WORD_NOFUNCTION)) {
        corral_log_warn("function library or queue missing in redis; setting them up again",
                        "conn=%s", c->name);
        setup_again(c);
    }
}

void corral_conn_accepted(struct corral_conn *c, struct corral_log_repeat *r)
{
    if (!ev_is_active(&c->hold))
        corral_backoff_reset(&c->hold_backoff);
    if (r != NULL)
        corral_log_repeat_end(r);
}

void corral_conn_check_stall(struct corral_conn *c, int64_t limit_ms)
{
    if (c->ac == NULL || c->ac->replies.head == NULL) {
        c->stall_since_ms = 0;
        return;
    }
    int64_t now = corral_now_ms();
    if (c->stall_since_ms == 0 || c->replies != c->stall_replies) {
        c->stall_since_ms = now;
        c->stall_replies = c->replies;
        return;
    }
    if (now - c->stall_since_ms < limit_ms)
        return;
    char why[64];
    snprintf(why, sizeof(why), "no reply for %lld ms", (long long)(now - c->stall_since_ms));
    drop(c, CORRAL_LOG_WARN, "redis is not answering; reconnecting", why);
}

void corral_conn_close(struct corral_conn *c, int64_t grace_ms)
{
    c->closing = 1;
    ev_timer_stop(c->loop, &c->retry);
    ev_timer_stop(c->loop, &c->hold);
    ev_timer_stop(c->loop, &c->watch_retry);
    watch_close(c);
    if (c->ac == NULL)
        return;
    if (grace_ms <= 0 || !(c->ac->c.flags & REDIS_CONNECTED)) {
        redisAsyncFree(detach(c));
        return;
    }
    /* Gracefully, after its pending replies, unless Redis does not answer
     * within grace_ms: then at once. */
    redisAsyncDisconnect(c->ac);
    if (c->ac != NULL) {
        ev_timer_stop(c->loop, &c->grace);
        ev_timer_set(&c->grace, (double)grace_ms / 1000.0, 0.0);
        ev_timer_start(c->loop, &c->grace);
    }
}

/* Sentinel discovery: the builders and parsers of the three exchanges with
 * sentinels and data nodes (get-master-addr-by-name, ROLE, +switch-master),
 * and the blocking walk over the sentinels that corrald and corralctl use
 * (docs/ha.md, "Finding the master"). */
#include "corral/sentinel.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "corral/redis.h"
#include "corral/tls.h"
#include "corral/util.h"

#define HOST_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-"
#define V6_CHARS   "0123456789abcdefABCDEF:."

void corral_hostport_free(struct corral_hostport *hp)
{
    if (hp == NULL)
        return;
    free(hp->host);
    hp->host = NULL;
    hp->port = 0;
}

/* A host from the network goes into connects, logs and the TLS proxy's
 * configuration: a name or an IP address, nothing else. */
static int host_ok(const char *h, size_t n)
{
    return n >= 1 && n <= 253 && h[0] != '-' && strspn(h, HOST_CHARS ":") >= n;
}

static int parse_port(const char *s, size_t n, int *port)
{
    if (n == 0 || n > 5 || strspn(s, "0123456789") < n)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    if (v < 1 || v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

int corral_hostport_parse(const char *s, int default_port, struct corral_hostport *out,
                          struct corral_err *err)
{
    out->host = NULL;
    out->port = default_port;
    const char *host = s, *rest;
    size_t hn;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        host = s + 1;
        hn = close ? (size_t)(close - host) : 0;
        if (close == NULL || hn == 0 || strspn(host, V6_CHARS) < hn ||
            memchr(host, ':', hn) == NULL)
            return corral_err_set(err, CORRAL_ERR_INVALID,
                                  "\"%s\": expected [IPv6-address]:port inside the brackets", s);
        rest = close + 1;
    } else {
        hn = strcspn(s, ":");
        rest = s + hn;
        if (rest[0] == ':' && strchr(rest + 1, ':') != NULL)
            return corral_err_set(err, CORRAL_ERR_INVALID,
                                  "\"%s\": an IPv6 address goes in [] ([ADDRESS]:PORT)", s);
        if (hn == 0)
            return corral_err_set(err, CORRAL_ERR_INVALID, "\"%s\": missing host before the port",
                                  s);
        if (hn > 253 || strspn(s, HOST_CHARS) < hn)
            return corral_err_set(err, CORRAL_ERR_INVALID,
                                  "\"%s\": a host is 1-253 of A-Z a-z 0-9 . - (an IPv6 address "
                                  "goes in [])",
                                  s);
    }
    if (rest[0] == ':') {
        if (parse_port(rest + 1, strlen(rest + 1), &out->port) < 0)
            return corral_err_set(err, CORRAL_ERR_INVALID,
                                  "\"%s\": bad port \"%s\" (expected 1-65535)", s, rest + 1);
    } else if (rest[0] != '\0') {
        return corral_err_set(err, CORRAL_ERR_INVALID, "\"%s\": expected host:port", s);
    }
    out->host = corral_xstrndup(host, hn);
    return 0;
}

static void cmd_start(struct corral_cmd *cmd)
{
    memset(cmd, 0, sizeof(*cmd));
}

void corral_cmd_sentinel_master(struct corral_cmd *cmd, const char *name)
{
    cmd_start(cmd);
    corral_cmd_addstr(cmd, "SENTINEL");
    corral_cmd_addstr(cmd, "GET-MASTER-ADDR-BY-NAME");
    corral_cmd_addstr(cmd, name);
}

void corral_cmd_sentinel_replicas(struct corral_cmd *cmd, const char *name)
{
    cmd_start(cmd);
    corral_cmd_addstr(cmd, "SENTINEL");
    corral_cmd_addstr(cmd, "REPLICAS");
    corral_cmd_addstr(cmd, name);
}

/* A bulk string (or, in RESP3 terms, a status) as a C string; NULL when r
 * is anything else. */
static const char *str_of(const redisReply *r)
{
    if (r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS))
        return r->str;
    return NULL;
}

/* host and port in their text forms, as replies carry them; port may be an
 * integer reply (ROLE) or a string (the sentinel's). */
static int hostport_from(const redisReply *h, const redisReply *p, struct corral_hostport *out)
{
    const char *host = str_of(h);
    int port = 0;
    if (host == NULL || !host_ok(host, strlen(host)) || strlen(host) != h->len)
        return -1;
    if (p->type == REDIS_REPLY_INTEGER) {
        if (p->integer < 1 || p->integer > 65535)
            return -1;
        port = (int)p->integer;
    } else if (str_of(p) == NULL || parse_port(p->str, p->len, &port) < 0) {
        return -1;
    }
    out->host = corral_xstrdup(host);
    out->port = port;
    return 0;
}

static int redis_error(const redisReply *r, const char *what, struct corral_err *err)
{
    if (r == NULL)
        return corral_err_set(err, CORRAL_ERR_REDIS, "%s: connection lost", what);
    if (r->type == REDIS_REPLY_ERROR)
        return corral_err_set(err, CORRAL_ERR_REDIS, "%s: %s", what, r->str);
    return 0;
}

int corral_reply_sentinel_master(const redisReply *r, const char *name, struct corral_hostport *out,
                                 struct corral_err *err)
{
    out->host = NULL;
    out->port = 0;
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        return redis_error(r, "SENTINEL GET-MASTER-ADDR-BY-NAME", err);
    if (r->type == REDIS_REPLY_NIL)
        return corral_err_set(err, CORRAL_ERR_NOTFOUND, "it monitors no master named \"%s\"", name);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        hostport_from(r->element[0], r->element[1], out) < 0)
        return corral_err_set(err, CORRAL_ERR_REDIS,
                              "the address it gave for \"%s\" is not [host, port]", name);
    return 0;
}

size_t corral_reply_sentinel_replicas(const redisReply *r, struct corral_hostport **out)
{
    *out = NULL;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements == 0)
        return 0;
    size_t n = 0;
    *out = corral_xcalloc(r->elements, sizeof(**out));
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        const redisReply *ip = NULL, *port = NULL;
        if (e->type != REDIS_REPLY_ARRAY)
            continue;
        for (size_t k = 0; k + 1 < e->elements; k += 2) {
            const char *field = str_of(e->element[k]);
            if (field != NULL && strcmp(field, "ip") == 0)
                ip = e->element[k + 1];
            else if (field != NULL && strcmp(field, "port") == 0)
                port = e->element[k + 1];
        }
        if (ip != NULL && port != NULL && hostport_from(ip, port, &(*out)[n]) == 0)
            n++;
    }
    if (n == 0) {
        free(*out);
        *out = NULL;
    }
    return n;
}

void corral_cmd_role(struct corral_cmd *cmd)
{
    cmd_start(cmd);
    corral_cmd_addstr(cmd, "ROLE");
}

int corral_reply_role(const redisReply *r, enum corral_role *role, struct corral_hostport *master,
                      struct corral_err *err)
{
    if (master != NULL) {
        master->host = NULL;
        master->port = 0;
    }
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        return redis_error(r, "ROLE", err);
    const char *kind =
        r->type == REDIS_REPLY_ARRAY && r->elements >= 1 ? str_of(r->element[0]) : NULL;
    if (kind == NULL)
        return corral_err_set(err, CORRAL_ERR_REDIS, "ROLE: the reply is not [role, ...]");
    if (strcmp(kind, "master") == 0) {
        *role = CORRAL_ROLE_MASTER;
    } else if (strcmp(kind, "slave") == 0) {
        *role = CORRAL_ROLE_REPLICA;
        if (master != NULL && r->elements >= 3)
            hostport_from(r->element[1], r->element[2], master);
    } else if (strcmp(kind, "sentinel") == 0) {
        *role = CORRAL_ROLE_SENTINEL;
    } else {
        return corral_err_set(err, CORRAL_ERR_REDIS, "ROLE: unknown role \"%.64s\"", kind);
    }
    return 0;
}

void corral_switch_free(struct corral_switch *sw)
{
    if (sw == NULL)
        return;
    free(sw->name);
    sw->name = NULL;
    corral_hostport_free(&sw->from);
    corral_hostport_free(&sw->to);
}

void corral_cmd_sentinel_subscribe(struct corral_cmd *cmd)
{
    cmd_start(cmd);
    corral_cmd_addstr(cmd, "SUBSCRIBE");
    corral_cmd_addstr(cmd, "+switch-master");
}

int corral_sentinel_parse_switch(const char *payload, size_t len, struct corral_switch *out,
                                 struct corral_err *err)
{
    memset(out, 0, sizeof(*out));
    /* Five words separated by single spaces; the name may not hold one. */
    const char *w[5];
    size_t wl[5];
    size_t n = 0, start = 0;
    int ok = memchr(payload, '\0', len) == NULL;
    for (size_t i = 0; ok && i <= len; i++) {
        if (i < len && payload[i] != ' ')
            continue;
        if (i == start || n == 5) {
            ok = 0; /* an empty word, or a sixth */
            break;
        }
        w[n] = payload + start;
        wl[n++] = i - start;
        start = i + 1;
    }
    int port_from, port_to;
    if (!ok || n != 5 || parse_port(w[2], wl[2], &port_from) < 0 ||
        parse_port(w[4], wl[4], &port_to) < 0 || !host_ok(w[1], wl[1]) || !host_ok(w[3], wl[3])) {
        corral_err_set(err, CORRAL_ERR_REDIS,
                       "+switch-master: expected \"<name> <old-ip> <old-port> <new-ip> "
                       "<new-port>\" (got %zu bytes)",
                       len);
        return -1; /* said plainly: callers read out->name only after 0 */
    }
    out->name = corral_xstrndup(w[0], wl[0]);
    out->from.host = corral_xstrndup(w[1], wl[1]);
    out->from.port = port_from;
    out->to.host = corral_xstrndup(w[3], wl[3]);
    out->to.port = port_to;
    return 0;
}

int corral_reply_sentinel_event(const redisReply *r, const char *name, struct corral_switch *out,
                                struct corral_err *err)
{
    memset(out, 0, sizeof(*out));
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        return redis_error(r, "SUBSCRIBE +switch-master", err);
    const char *kind =
        r->type == REDIS_REPLY_ARRAY && r->elements == 3 ? str_of(r->element[0]) : NULL;
    if (kind == NULL)
        return corral_err_set(err, CORRAL_ERR_REDIS,
                              "+switch-master: a frame that is not [kind, channel, data]");
    if (strcmp(kind, "message") != 0)
        return 0; /* subscribe / unsubscribe confirmations */
    const char *chan = str_of(r->element[1]);
    const redisReply *data = r->element[2];
    if (chan == NULL || strcmp(chan, "+switch-master") != 0)
        return 0;
    if (str_of(data) == NULL)
        return corral_err_set(err, CORRAL_ERR_REDIS, "+switch-master: the message is not text");
    if (corral_sentinel_parse_switch(data->str, data->len, out, err) < 0)
        return -1;
    if (strcmp(out->name, name) != 0) {
        corral_switch_free(out);
        return 0;
    }
    return 1;
}

redisContext *corral_reach_connect(const struct corral_reach *reach, const char *host, int port,
                                   int64_t timeout_ms, struct corral_err *err)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *c;
    char *path = NULL;
    if (reach != NULL && reach->tls_dir != NULL) {
        if (reach->ensure != NULL && reach->ensure(reach->data, host, port, err) < 0)
            return NULL;
        path = corral_tls_local_path(reach->tls_dir, host, port);
        c = timeout_ms > 0 ? redisConnectUnixWithTimeout(path, tv) : redisConnectUnix(path);
    } else {
        c = timeout_ms > 0 ? redisConnectWithTimeout(host, port, tv) : redisConnect(host, port);
    }
    if (c == NULL) {
        free(path);
        corral_err_set(err, CORRAL_ERR_NOMEM, "%s:%d: cannot allocate a connection", host, port);
        return NULL;
    }
    if (c->err) {
        if (path != NULL)
            corral_err_set(err, CORRAL_ERR_REDIS, "%s:%d through the TLS proxy (%s): %s", host,
                           port, path, c->errstr);
        else
            corral_err_set(err, CORRAL_ERR_REDIS, "%s:%d: %s", host, port, c->errstr);
        free(path);
        redisFree(c);
        return NULL;
    }
    free(path);
    if (timeout_ms > 0)
        redisSetTimeout(c, tv);
    return c;
}

static redisReply *run(redisContext *c, const struct corral_cmd *cmd)
{
    return redisCommandArgv(c, cmd->argc, (const char **)cmd->argv, cmd->argvlen);
}

/* A connection to sentinel addr, AUTHed when conf says so. */
static redisContext *sentinel_open(const struct corral_redis_conf *conf,
                                   const struct corral_reach *reach, const char *addr,
                                   int64_t timeout_ms, struct corral_err *err)
{
    struct corral_hostport hp;
    if (corral_hostport_parse(addr, CORRAL_SENTINEL_PORT, &hp, err) < 0)
        return NULL;
    redisContext *c = corral_reach_connect(reach, hp.host, hp.port, timeout_ms, err);
    corral_hostport_free(&hp);
    if (c == NULL || conf->sentinel_password_file == NULL)
        return c;
    char *pass = corral_read_secret(conf->sentinel_password_file, err);
    if (pass == NULL) {
        redisFree(c);
        return NULL;
    }
    redisReply *r = redisCommand(c, "AUTH %s", pass);
    explicit_bzero(pass, strlen(pass));
    free(pass);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        /* Our own words: the reply is the server's and never holds the
         * password, but say only what the operator needs. */
        corral_err_set(err, CORRAL_ERR_REDIS, "authentication failed (password from %s)%s%.200s",
                       conf->sentinel_password_file, r ? ": " : "", r ? r->str : c->errstr);
        freeReplyObject(r);
        redisFree(c);
        return NULL;
    }
    freeReplyObject(r);
    return c;
}

/* Ensures the route to each replica a SENTINEL REPLICAS reply names;
 * routes that cannot be made are skipped: this only prepares for a
 * failover, the master's own route is what discovery needs now. */
static void ensure_replicas(const struct corral_reach *reach, const redisReply *r)
{
    struct corral_hostport *hps;
    size_t n = corral_reply_sentinel_replicas(r, &hps);
    for (size_t i = 0; i < n; i++) {
        struct corral_err ignored;
        reach->ensure(reach->data, hps[i].host, hps[i].port, &ignored);
        corral_hostport_free(&hps[i]);
    }
    free(hps);
}

/* The address sentinel addr gives for the master, or -1 with err. With
 * reach->route_replicas, the replicas it knows are routed too. */
static int ask_sentinel(const struct corral_redis_conf *conf, const struct corral_reach *reach,
                        const char *addr, int64_t timeout_ms, struct corral_hostport *out,
                        struct corral_err *err)
{
    redisContext *c = sentinel_open(conf, reach, addr, timeout_ms, err);
    if (c == NULL)
        return -1;
    struct corral_cmd cmd;
    corral_cmd_sentinel_master(&cmd, conf->sentinel_master);
    redisReply *r = run(c, &cmd);
    corral_cmd_free(&cmd);
    int rc = corral_reply_sentinel_master(r, conf->sentinel_master, out, err);
    if (r == NULL && c->errstr[0] != '\0')
        corral_err_set(err, CORRAL_ERR_REDIS, "%s", c->errstr);
    freeReplyObject(r);
    if (rc == 0 && reach != NULL && reach->tls_dir != NULL && reach->ensure != NULL &&
        reach->route_replicas) {
        corral_cmd_sentinel_replicas(&cmd, conf->sentinel_master);
        r = run(c, &cmd);
        corral_cmd_free(&cmd);
        ensure_replicas(reach, r);
        freeReplyObject(r);
    }
    redisFree(c);
    return rc;
}

/* Connects to the master a sentinel named and checks that it is one. */
static redisContext *open_master(const struct corral_redis_conf *conf,
                                 const struct corral_reach *reach, const struct corral_hostport *hp,
                                 int64_t timeout_ms, struct corral_err *err)
{
    redisContext *c = corral_reach_connect(reach, hp->host, hp->port, timeout_ms, err);
    if (c == NULL)
        return NULL;
    /* The handshake takes user and db from the url, which with sentinels
     * may have no host; with rediss the scheme only chose the route above. */
    struct corral_redis_conf plain = *conf;
    struct corral_redis_addr a;
    if (corral_tls_parse_url(conf->url, &a, NULL, 1, err) < 0) {
        redisFree(c);
        return NULL;
    }
    char *url =
        corral_xasprintf("redis://%s%smaster/%d", a.user ? a.user : "", a.user ? "@" : "", a.db);
    corral_redis_addr_free(&a);
    plain.url = url;
    int rc = corral_redis_handshake(c, &plain, err);
    free(url);
    if (rc < 0) {
        redisFree(c);
        return NULL;
    }
    struct corral_cmd cmd;
    corral_cmd_role(&cmd);
    redisReply *r = run(c, &cmd);
    corral_cmd_free(&cmd);
    enum corral_role role = CORRAL_ROLE_MASTER;
    struct corral_hostport up = {NULL, 0};
    rc = corral_reply_role(r, &role, &up, err);
    if (rc == 0 && role != CORRAL_ROLE_MASTER) {
        if (role == CORRAL_ROLE_REPLICA && up.host != NULL)
            corral_err_set(err, CORRAL_ERR_REDIS,
                           "%s:%d is a replica (of %s:%d), not the master: a failover is under "
                           "way or the sentinel is behind",
                           hp->host, hp->port, up.host, up.port);
        else
            corral_err_set(err, CORRAL_ERR_REDIS, "%s:%d says ROLE %s, not master", hp->host,
                           hp->port, role == CORRAL_ROLE_REPLICA ? "replica" : "sentinel");
        rc = -1;
    } else if (rc < 0) {
        corral_err_prefix(err, "%s:%d", hp->host, hp->port);
    }
    corral_hostport_free(&up);
    freeReplyObject(r);
    if (rc < 0) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Appends "; <addr>: <msg>" to the list of what each sentinel said. */
static void note(char *buf, size_t n, const char *addr, const char *msg)
{
    size_t used = strlen(buf);
    if (used + 4 < n)
        snprintf(buf + used, n - used, "%s%s: %s", used ? "; " : "", addr, msg);
}

redisContext *corral_sentinel_connect(const struct corral_redis_conf *conf,
                                      const struct corral_reach *reach, int64_t timeout_ms,
                                      struct corral_hostport *master, struct corral_err *err)
{
    if (master != NULL) {
        master->host = NULL;
        master->port = 0;
    }
    if (conf->sentinels.n == 0 || conf->sentinel_master == NULL) {
        corral_err_set(err, CORRAL_ERR_INVALID,
                       "[redis] sentinels and sentinel_master are needed to ask Sentinel");
        return NULL;
    }
    char said[CORRAL_ERR_MSG_MAX] = "";
    for (size_t i = 0; i < conf->sentinels.n; i++) {
        const char *addr = conf->sentinels.items[i];
        struct corral_err e;
        struct corral_hostport hp;
        if (ask_sentinel(conf, reach, addr, timeout_ms, &hp, &e) < 0) {
            note(said, sizeof(said), addr, e.msg);
            continue;
        }
        redisContext *c = open_master(conf, reach, &hp, timeout_ms, &e);
        if (c == NULL) {
            note(said, sizeof(said), addr, e.msg);
            corral_hostport_free(&hp);
            continue;
        }
        if (master != NULL)
            *master = hp;
        else
            corral_hostport_free(&hp);
        return c;
    }
    corral_err_set(err, CORRAL_ERR_REDIS, "no master \"%s\" from the sentinels: %s",
                   conf->sentinel_master, said);
    return NULL;
}

redisContext *corral_sentinel_subscribe(const struct corral_redis_conf *conf,
                                        const struct corral_reach *reach, int64_t timeout_ms,
                                        struct corral_err *err)
{
    char said[CORRAL_ERR_MSG_MAX] = "";
    for (size_t i = 0; i < conf->sentinels.n; i++) {
        const char *addr = conf->sentinels.items[i];
        struct corral_err e;
        redisContext *c = sentinel_open(conf, reach, addr, timeout_ms, &e);
        if (c == NULL) {
            note(said, sizeof(said), addr, e.msg);
            continue;
        }
        struct corral_cmd cmd;
        corral_cmd_sentinel_subscribe(&cmd);
        redisReply *r = run(c, &cmd);
        corral_cmd_free(&cmd);
        struct corral_switch sw;
        int rc = corral_reply_sentinel_event(r, conf->sentinel_master, &sw, &e);
        freeReplyObject(r);
        if (rc < 0) {
            note(said, sizeof(said), addr, e.msg);
            redisFree(c);
            continue;
        }
        corral_switch_free(&sw);
        /* Events come when they come: no command timeout on this one. */
        struct timeval none = {0, 0};
        redisSetTimeout(c, none);
        return c;
    }
    corral_err_set(err, CORRAL_ERR_REDIS, "cannot subscribe to +switch-master: %s", said);
    return NULL;
}

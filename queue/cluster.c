/* Redis Cluster routing (corral/cluster.h): key slots, the slot map from
 * CLUSTER SLOTS, MOVED / ASK, and the blocking router. The rules are the
 * Cluster specification's (docs/design.md "Redis Cluster slots"). */
#include "corral/cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "corral/bootstrap.h"
#include "corral/redis.h"
#include "corral/sentinel.h"
#include "corral/util.h"

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), the Cluster's key
 * hash. Bitwise rather than a 256-entry table: a key is hashed once per
 * call, and a table would be 512 bytes of constants to get right by hand. */
static uint16_t crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned corral_cluster_keyslot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(key + from, '}', len - from);
        if (close != NULL && close > key + from)
            return crc16(key + from, (size_t)(close - (key + from))) & (CORRAL_CLUSTER_SLOTS - 1);
    }
    return crc16(key, len) & (CORRAL_CLUSTER_SLOTS - 1);
}

void corral_cluster_map_free(struct corral_cluster_map *map)
{
    if (map == NULL)
        return;
    for (size_t i = 0; map->nodes != NULL && i < map->n_nodes; i++)
        free(map->nodes[i].host);
    free(map->nodes);
    map->nodes = NULL;
    map->n_nodes = 0;
}

static int is_int(const redisReply *r, long long lo, long long hi, long long *v)
{
    if (r->type != REDIS_REPLY_INTEGER || r->integer < lo || r->integer > hi)
        return 0;
    *v = r->integer;
    return 1;
}

/* The index of host:port in map->nodes, added when new. */
static size_t node_index(struct corral_cluster_map *map, const char *host, size_t hlen, int port)
{
    for (size_t i = 0; i < map->n_nodes; i++)
        if (map->nodes[i].port == port && strlen(map->nodes[i].host) == hlen &&
            memcmp(map->nodes[i].host, host, hlen) == 0)
            return i;
    map->nodes = realloc(map->nodes, (map->n_nodes + 1) * sizeof(*map->nodes));
    if (map->nodes == NULL)
        abort();
    map->nodes[map->n_nodes].host = corral_xstrndup(host, hlen);
    map->nodes[map->n_nodes].port = port;
    return map->n_nodes++;
}

int corral_cluster_map_parse(const redisReply *r, const char *asked_host,
                             struct corral_cluster_map *map, struct corral_err *err)
{
    memset(map, 0, sizeof(*map));
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return corral_err_set(err, CORRAL_ERR_REDIS,
                              "CLUSTER SLOTS: expected an array of slot ranges");
    size_t served = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        long long lo, hi, port;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            !is_int(e->element[0], 0, CORRAL_CLUSTER_SLOTS - 1, &lo) ||
            !is_int(e->element[1], lo, CORRAL_CLUSTER_SLOTS - 1, &hi))
            return corral_err_set(err, CORRAL_ERR_REDIS,
                                  "CLUSTER SLOTS: range %zu is not two slots in 0..16383, "
                                  "lowest first",
                                  i + 1);
        /* The primary is the first node; replicas follow and are not
         * routed to (writes only). */
        const redisReply *n = e->element[2];
        if (n->type != REDIS_REPLY_ARRAY || n->elements < 2 ||
            n->element[0]->type != REDIS_REPLY_STRING || !is_int(n->element[1], 1, 65535, &port))
            return corral_err_set(err, CORRAL_ERR_REDIS,
                                  "CLUSTER SLOTS: range %lld-%lld: the primary is not "
                                  "[host, port, ...]",
                                  lo, hi);
        const char *host = n->element[0]->str;
        size_t hlen = n->element[0]->len;
        if (hlen == 0 || (hlen == 1 && host[0] == '?')) {
            if (asked_host == NULL)
                return corral_err_set(err, CORRAL_ERR_REDIS,
                                      "CLUSTER SLOTS: range %lld-%lld: the primary has no "
                                      "address",
                                      lo, hi);
            host = asked_host;
            hlen = strlen(asked_host);
        }
        if (hlen > 253 || memchr(host, '\0', hlen) != NULL)
            return corral_err_set(err, CORRAL_ERR_REDIS,
                                  "CLUSTER SLOTS: range %lld-%lld: the primary's host is not "
                                  "a host name",
                                  lo, hi);
        uint16_t owner = (uint16_t)(node_index(map, host, hlen, (int)port) + 1);
        for (long long s = lo; s <= hi; s++) {
            served += map->owner[s] == 0;
            map->owner[s] = owner;
        }
    }
    if (served == 0)
        return corral_err_set(err, CORRAL_ERR_REDIS, "CLUSTER SLOTS: no node serves any slot");
    return 0;
}

const struct corral_cluster_node *corral_cluster_owner(const struct corral_cluster_map *map,
                                                       unsigned slot)
{
    if (slot >= CORRAL_CLUSTER_SLOTS || map->owner[slot] == 0)
        return NULL;
    return &map->nodes[map->owner[slot] - 1];
}

int corral_cluster_redirect_parse(const redisReply *r, struct corral_cluster_redirect *out,
                                  struct corral_err *err)
{
    if (r == NULL || r->type != REDIS_REPLY_ERROR)
        return 0;
    int ask;
    size_t skip;
    if (r->len >= 6 && memcmp(r->str, "MOVED ", 6) == 0) {
        ask = 0;
        skip = 6;
    } else if (r->len >= 4 && memcmp(r->str, "ASK ", 4) == 0) {
        ask = 1;
        skip = 4;
    } else {
        return 0;
    }
    /* "<slot> <host>:<port>": the host may be empty (Redis 7's "unknown
     * endpoint": the node asked), or an IPv6 address with colons. */
    const char *p = r->str + skip, *end = r->str + r->len;
    unsigned long slot = 0;
    size_t digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 6) {
        slot = slot * 10 + (unsigned long)(*p++ - '0');
        digits++;
    }
    const char *colon = NULL;
    for (const char *q = end; q > p; q--)
        if (q[-1] == ':') {
            colon = q - 1;
            break;
        }
    long port = 0;
    size_t pdigits = 0;
    if (colon != NULL)
        for (const char *q = colon + 1; q < end && *q >= '0' && *q <= '9' && pdigits < 6; q++) {
            port = port * 10 + (*q - '0');
            pdigits++;
        }
    size_t hlen = colon ? (size_t)(colon - p) - 1 : 0;
    if (digits == 0 || slot >= CORRAL_CLUSTER_SLOTS || p >= end || *p != ' ' || colon == NULL ||
        pdigits == 0 || colon + 1 + pdigits != end || port < 1 || port > 65535 ||
        hlen >= sizeof(out->host) || memchr(p + 1, '\0', hlen) != NULL ||
        memchr(p + 1, ' ', hlen) != NULL)
        return corral_err_set(err, CORRAL_ERR_REDIS,
                              "a malformed %s redirection from the cluster (expected \"%s <slot> "
                              "<host>:<port>\")",
                              ask ? "ASK" : "MOVED", ask ? "ASK" : "MOVED");
    out->ask = ask;
    out->slot = (unsigned)slot;
    memcpy(out->host, p + 1, hlen);
    out->host[hlen] = '\0';
    out->port = (int)port;
    return 1;
}

/* The router. */

struct node_conn {
    char *host;
    int port;
    redisContext *c;
};

struct corral_cluster {
    struct corral_redis_conf conf; /* a shallow copy: its strings are the caller's */
    int64_t timeout_ms;
    struct corral_cluster_map map;
    struct node_conn *conns;
    size_t n_conns;
    char **seeds;
    size_t n_seeds;
    unsigned refreshes;
    unsigned asks; /* ASKs corral_cluster_redirected waited out in a row */
    int wait_ask;  /* corral_cluster_command waits ASK out (declarations: routed()) */
};

static redisContext *connect_node(struct corral_cluster *cc, const char *host, int port,
                                  struct corral_err *err)
{
    struct timeval tv = {.tv_sec = cc->timeout_ms / 1000,
                         .tv_usec = (cc->timeout_ms % 1000) * 1000};
    redisContext *c =
        cc->timeout_ms > 0 ? redisConnectWithTimeout(host, port, tv) : redisConnect(host, port);
    if (c == NULL || c->err) {
        corral_err_set(err, CORRAL_ERR_REDIS, "redis cluster node %s:%d: %s", host, port,
                       c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    if (cc->timeout_ms > 0)
        redisSetTimeout(c, tv);
    if (corral_redis_handshake(c, &cc->conf, err) < 0) {
        corral_err_prefix(err, "redis cluster node %s:%d", host, port);
        redisFree(c);
        return NULL;
    }
    return c;
}

/* The connection to host:port, made on first use. */
static redisContext *conn_for(struct corral_cluster *cc, const char *host, int port,
                              struct corral_err *err)
{
    for (size_t i = 0; i < cc->n_conns; i++)
        if (cc->conns[i].port == port && strcmp(cc->conns[i].host, host) == 0) {
            if (cc->conns[i].c != NULL)
                return cc->conns[i].c;
            cc->conns[i].c = connect_node(cc, host, port, err);
            return cc->conns[i].c;
        }
    redisContext *c = connect_node(cc, host, port, err);
    if (c == NULL)
        return NULL;
    cc->conns = realloc(cc->conns, (cc->n_conns + 1) * sizeof(*cc->conns));
    if (cc->conns == NULL)
        abort();
    cc->conns[cc->n_conns++] = (struct node_conn){corral_xstrdup(host), port, c};
    return c;
}

/* A connection that failed is dropped; the next use reconnects. */
static void conn_drop(struct corral_cluster *cc, redisContext *c)
{
    for (size_t i = 0; i < cc->n_conns; i++)
        if (cc->conns[i].c == c) {
            redisFree(c);
            cc->conns[i].c = NULL;
        }
}

/* Reads the map from the first node that answers: the known primaries,
 * then the seeds. */
static int refresh(struct corral_cluster *cc, struct corral_err *err)
{
    size_t n_known = cc->map.nodes != NULL ? cc->map.n_nodes : 0;
    size_t total = n_known + cc->n_seeds;
    char why[512] = "";
    for (size_t i = 0; i < total; i++) {
        struct {
            const char *host;
            int port;
        } hp;
        char *seed_host = NULL;
        if (i < n_known) {
            /* A copy: a successful read replaces the map it points into. */
            seed_host = corral_xstrdup(cc->map.nodes[i].host);
            hp.port = cc->map.nodes[i].port;
        } else {
            struct corral_hostport seed;
            struct corral_err e;
            if (corral_hostport_parse(cc->seeds[i - n_known], 6379, &seed, &e) < 0) {
                snprintf(why + strlen(why), sizeof(why) - strlen(why), "%s%s", why[0] ? "; " : "",
                         e.msg);
                continue;
            }
            seed_host = seed.host; /* taken over */
            hp.port = seed.port;
        }
        hp.host = seed_host;
        struct corral_err e;
        redisContext *c = conn_for(cc, hp.host, hp.port, &e);
        if (c == NULL) {
            snprintf(why + strlen(why), sizeof(why) - strlen(why), "%s%s", why[0] ? "; " : "",
                     e.msg);
            free(seed_host);
            continue;
        }
        redisReply *r = redisCommand(c, "CLUSTER SLOTS");
        if (r == NULL) {
            snprintf(why + strlen(why), sizeof(why) - strlen(why), "%s%s:%d: %s",
                     why[0] ? "; " : "", hp.host, hp.port, c->errstr);
            conn_drop(cc, c);
            free(seed_host);
            continue;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            int not_cluster = strstr(r->str, "cluster support disabled") != NULL;
            snprintf(why + strlen(why), sizeof(why) - strlen(why), "%s%s:%d: %s",
                     why[0] ? "; " : "", hp.host, hp.port,
                     not_cluster ? "not in cluster mode (cluster-enabled no)" : r->str);
            freeReplyObject(r);
            free(seed_host);
            continue;
        }
        struct corral_cluster_map map;
        int rc = corral_cluster_map_parse(r, hp.host, &map, &e);
        freeReplyObject(r);
        free(seed_host);
        if (rc < 0) {
            corral_cluster_map_free(&map);
            snprintf(why + strlen(why), sizeof(why) - strlen(why), "%s%s", why[0] ? "; " : "",
                     e.msg);
            continue;
        }
        corral_cluster_map_free(&cc->map);
        cc->map = map;
        cc->refreshes++;
        return 0;
    }
    return corral_err_set(err, CORRAL_ERR_REDIS, "redis cluster: no node gave the slot map (%s)",
                          why[0] ? why : "no seeds");
}

struct corral_cluster *corral_cluster_connect(const struct corral_redis_conf *conf,
                                              const char *const *seeds, size_t n_seeds,
                                              int64_t timeout_ms, struct corral_err *err)
{
    struct corral_cluster *cc = corral_xcalloc(1, sizeof(*cc));
    cc->conf = *conf;
    cc->timeout_ms = timeout_ms;
    cc->seeds = corral_xcalloc(n_seeds + 1, sizeof(char *));
    for (size_t i = 0; i < n_seeds; i++)
        cc->seeds[i] = corral_xstrdup(seeds[i]);
    cc->n_seeds = n_seeds;
    if (refresh(cc, err) < 0) {
        corral_cluster_free(cc);
        return NULL;
    }
    return cc;
}

void corral_cluster_free(struct corral_cluster *cc)
{
    if (cc == NULL)
        return;
    for (size_t i = 0; i < cc->n_conns; i++) {
        redisFree(cc->conns[i].c);
        free(cc->conns[i].host);
    }
    free(cc->conns);
    for (size_t i = 0; i < cc->n_seeds; i++)
        free(cc->seeds[i]);
    free(cc->seeds);
    corral_cluster_map_free(&cc->map);
    free(cc);
}

const struct corral_cluster_map *corral_cluster_current(const struct corral_cluster *cc)
{
    return &cc->map;
}

unsigned corral_cluster_refreshes(const struct corral_cluster *cc)
{
    return cc->refreshes;
}

#define MAX_REDIRECTS 5
#define ASK_WAITS     8 /* 0.1 + 0.2 + ... + 0.8 s */

redisReply *corral_cluster_command(struct corral_cluster *cc, const char *key, size_t keylen,
                                   int argc, const char **argv, const size_t *argvlen,
                                   struct corral_err *err)
{
    unsigned slot = corral_cluster_keyslot(key, keylen);
    char ask_host[256] = "";
    int ask_port = 0;
    unsigned asks = 0;
    for (int hop = 0; hop <= MAX_REDIRECTS; hop++) {
        const char *host;
        int port;
        if (ask_host[0] != '\0') {
            host = ask_host;
            port = ask_port;
        } else {
            const struct corral_cluster_node *n = corral_cluster_owner(&cc->map, slot);
            if (n == NULL) {
                /* CLUSTERDOWN for this slot, as far as the map knows: read
                 * it again before giving up. */
                if (refresh(cc, err) < 0 || (n = corral_cluster_owner(&cc->map, slot)) == NULL)
                    return corral_err_set(err, CORRAL_ERR_REDIS,
                                          "redis cluster: no node serves slot %u (key %.*s)", slot,
                                          (int)(keylen > 64 ? 64 : keylen), key),
                           NULL;
            }
            host = n->host;
            port = n->port;
        }
        redisContext *c = conn_for(cc, host, port, err);
        if (c == NULL) {
            /* The node is gone (failover): the map names its successor
             * once the cluster has promoted one. */
            ask_host[0] = '\0';
            if (refresh(cc, err) < 0)
                return NULL;
            continue;
        }
        if (ask_host[0] != '\0') {
            redisReply *a = redisCommand(c, "ASKING");
            freeReplyObject(a);
        }
        redisReply *r = redisCommandArgv(c, argc, argv, argvlen);
        if (r == NULL) {
            corral_err_set(err, CORRAL_ERR_REDIS, "redis cluster node %s:%d: %s", host, port,
                           c->errstr);
            conn_drop(cc, c);
            ask_host[0] = '\0';
            if (refresh(cc, err) < 0)
                return NULL;
            continue;
        }
        struct corral_cluster_redirect rd = {0};
        int k = corral_cluster_redirect_parse(r, &rd, err);
        if (k == 0)
            return r;
        freeReplyObject(r);
        if (k < 0)
            return NULL;
        if (rd.ask && cc->wait_ask) {
            /* A declaration (routed() below): the old node asks for every
             * call, as the declared key K is never there, and the new one
             * would create the queue's keys before they move, failing the
             * migration with BUSYKEY. Waited out (0.1 s more each time,
             * about 3.6 s in all) at the owner, which answers MOVED once
             * the slot has moved; then the caller's own retry
             * (docs/design.md, "Redis Cluster slots"). */
            if (++asks > ASK_WAITS)
                return corral_err_set(err, CORRAL_ERR_REDIS,
                                      "redis cluster: slot %u is migrating (ASK); a declaration "
                                      "waits for the move to end",
                                      slot),
                       NULL;
            struct timespec ts = {0, (long)asks * 100000000L};
            nanosleep(&ts, NULL);
            hop--;
        } else if (rd.ask) {
            if (rd.host[0] != '\0')
                memcpy(ask_host, rd.host, sizeof(ask_host));
            else if (host != ask_host) /* an empty host: the node just asked */
                snprintf(ask_host, sizeof(ask_host), "%s", host);
            ask_port = rd.port;
        } else {
            ask_host[0] = '\0';
            if (refresh(cc, err) < 0)
                return NULL;
        }
    }
    return corral_err_set(err, CORRAL_ERR_REDIS,
                          "redis cluster: more than %d redirections for slot %u", MAX_REDIRECTS,
                          slot),
           NULL;
}

int corral_cluster_refresh(struct corral_cluster *cc, struct corral_err *err)
{
    return refresh(cc, err);
}

void corral_cluster_drop(struct corral_cluster *cc, redisContext *c)
{
    conn_drop(cc, c);
}

redisContext *corral_cluster_conn(struct corral_cluster *cc, const char *key, size_t keylen,
                                  struct corral_err *err)
{
    unsigned slot = corral_cluster_keyslot(key, keylen);
    const struct corral_cluster_node *n = corral_cluster_owner(&cc->map, slot);
    if (n == NULL && (refresh(cc, err) < 0 || (n = corral_cluster_owner(&cc->map, slot)) == NULL))
        return corral_err_set(err, CORRAL_ERR_REDIS,
                              "redis cluster: no node serves slot %u (key %.*s)", slot,
                              (int)(keylen > 64 ? 64 : keylen), key),
               NULL;
    char host[256];
    snprintf(host, sizeof(host), "%s", n->host); /* a refresh on failure frees n */
    int port = n->port;
    redisContext *c = conn_for(cc, host, port, err);
    if (c == NULL && refresh(cc, err) == 0 && (n = corral_cluster_owner(&cc->map, slot)) != NULL)
        c = conn_for(cc, n->host, n->port, err); /* a failover: the map names its successor */
    return c;
}

struct corral_cluster *corral_cluster_open(const struct corral_redis_conf *conf, int64_t timeout_ms,
                                           struct corral_err *err)
{
    if (conf->cluster.n == 0)
        return corral_err_set(err, CORRAL_ERR_INVALID, "[redis] cluster is not set"), NULL;
    struct corral_cluster *cc = corral_cluster_connect(
        conf, (const char *const *)conf->cluster.items, conf->cluster.n, timeout_ms, err);
    if (cc != NULL &&
        corral_cluster_bootstrap(cc, NULL, CORRAL_BOOTSTRAP_LIBRARY, NULL, 0, err) < 0) {
        corral_cluster_free(cc);
        return NULL;
    }
    return cc;
}

/* One routed command of the bootstrap; what names it in err. */
static int routed(struct corral_cluster *cc, const struct corral_cmd *cmd, const char *what,
                  const char *name, struct corral_err *err)
{
    cc->wait_ask = 1; /* never run at the importing node (corral_cluster_command) */
    redisReply *r = corral_cluster_command(cc, cmd->argv[3], cmd->argvlen[3], cmd->argc,
                                           (const char **)cmd->argv, cmd->argvlen, err);
    cc->wait_ask = 0;
    int rc = r == NULL ? -1 : corral_redis_check(NULL, r, what, err);
    freeReplyObject(r);
    if (rc < 0)
        corral_err_prefix(err, "%s%s%s", what, name ? " " : "", name ? name : "");
    return rc;
}

int corral_cluster_bootstrap(struct corral_cluster *cc, const struct corral_config *cfg,
                             enum corral_bootstrap_scope scope, const char *const *queues, size_t n,
                             struct corral_err *err)
{
    /* Functions are per node, not per slot: every primary gets the library. */
    for (size_t i = 0; i < cc->map.n_nodes; i++) {
        char host[256];
        snprintf(host, sizeof(host), "%s", cc->map.nodes[i].host);
        int port = cc->map.nodes[i].port;
        /* A primary that cannot be reached (failing over) serves nothing
         * now: skipped, the others are not held up; a call to it later is
         * answered NOFUNCTION if its successor lacks the library, which
         * corral_cluster_redirected loads then. */
        struct corral_err e;
        redisContext *c = conn_for(cc, host, port, &e);
        if (c == NULL)
            continue;
        if (corral_bootstrap_run(c, cfg, CORRAL_BOOTSTRAP_LIBRARY, NULL, 0, NULL, err) < 0) {
            if (c->err) {
                conn_drop(cc, c);
                continue;
            }
            corral_err_prefix(err, "redis cluster node %s:%d", host, port);
            return -1;
        }
    }
    if (scope == CORRAL_BOOTSTRAP_LIBRARY)
        return 0;
    struct corral_bootstrap b;
    corral_bootstrap_build(&b, cfg, corral_functions_version(), scope, queues, n);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < b.n; i++) {
        const struct corral_bootstrap_step *st = &b.steps[i];
        /* A service's declaration goes to its node: the key is tagged
         * {svc:NAME} on a Cluster (queue/bootstrap.c). */
        rc = routed(cc, &st->cmd, st->what, st->name, err);
        int svc = strcmp(st->what, "declare service") == 0;
        if (rc == 0 && (svc || strcmp(st->what, "declare queue") == 0)) {
            /* The registries are keys of their own slots (docs/protocol.md,
             * version 7): a call of its own, sent to its node. */
            struct corral_cmd sadd = {0};
            char *key = corral_xasprintf("%s:%s", cfg->redis.prefix, svc ? "services" : "queues");
            corral_cmd_addstr(&sadd, "SADD");
            corral_cmd_addstr(&sadd, key);
            corral_cmd_addstr(&sadd, st->name);
            free(key);
            /* routed() takes the key from argv[3] (an FCALL's); SADD's is argv[1]. */
            redisReply *r = corral_cluster_command(cc, sadd.argv[1], sadd.argvlen[1], sadd.argc,
                                                   (const char **)sadd.argv, sadd.argvlen, err);
            rc = r == NULL ? -1 : corral_redis_check(NULL, r, "SADD", err);
            freeReplyObject(r);
            corral_cmd_free(&sadd);
            if (rc < 0)
                corral_err_prefix(err, "register %s %s", svc ? "service" : "queue", st->name);
        }
    }
    corral_bootstrap_free(&b);
    return rc;
}

redisContext *corral_cluster_queue_conn(struct corral_cluster *cc, const char *prefix,
                                        const char *queue, struct corral_err *err)
{
    char *key = corral_queue_key(prefix, queue);
    redisContext *c = corral_cluster_conn(cc, key, strlen(key), err);
    free(key);
    return c;
}

void corral_cluster_queue_node(struct corral_cluster *cc, const char *prefix, const char *queue,
                               char *out, size_t outlen)
{
    char *key = corral_queue_key(prefix, queue);
    const struct corral_cluster_node *n =
        corral_cluster_owner(&cc->map, corral_cluster_keyslot(key, strlen(key)));
    free(key);
    if (n == NULL)
        snprintf(out, outlen, "%s", "");
    else
        snprintf(out, outlen, strchr(n->host, ':') ? "[%s]:%d" : "%s:%d", n->host, n->port);
}

/* The Cluster's refusal in err's text: the reply's own words, at the start
 * or after a prefix ("declare queue q: MOVED 866 h:p"). */
static const char *refusal(const char *msg, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = msg; (p = strstr(p, word)) != NULL; p += wl)
        if ((p == msg || (p >= msg + 2 && p[-2] == ':' && p[-1] == ' ')) &&
            (word[wl - 1] != ' ' || (p[wl] >= '0' && p[wl] <= '9')))
            return p;
    return NULL;
}

int corral_cluster_redirected(struct corral_cluster *cc, redisContext *c,
                              const struct corral_err *err)
{
    struct corral_err e;
    if (c != NULL && c->err) {
        conn_drop(cc, c);
        refresh(cc, &e);
        return 0;
    }
    /* ASK: the queue's slot is migrating. Its declared key (K, which no
     * call ever writes) is never there, so the old node asks for every
     * call until the last key has moved, and the new node would run a
     * call without the keys still to come (NOQUEUE, or a declaration that
     * makes the move fail with BUSYKEY). So the call is not sent there:
     * it waits (100 ms more each time, up to 1 s) and goes again to the
     * owner, which answers MOVED once the slot has moved. */
    if (refusal(err->msg, "ASK ") != NULL) {
        unsigned ms = 100 * (cc->asks < 10 ? ++cc->asks : 10);
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        return 1;
    }
    cc->asks = 0;
    if (refusal(err->msg, "MOVED ") != NULL || refusal(err->msg, "CLUSTERDOWN") != NULL ||
        refusal(err->msg, "TRYAGAIN") != NULL)
        /* The map may name a primary new to us (added, or a replica
         * promoted): the library is made sure of on each (one FCALL_RO
         * each, only after a redirection). */
        return refresh(cc, &e) == 0 &&
               corral_cluster_bootstrap(cc, NULL, CORRAL_BOOTSTRAP_LIBRARY, NULL, 0, &e) == 0;
    /* "Function not found": a primary that never had the library (one
     * that joined, or whose functions were flushed). */
    if (err->word == CORRAL_WORD_NOFUNCTION)
        return corral_cluster_bootstrap(cc, NULL, CORRAL_BOOTSTRAP_LIBRARY, NULL, 0, &e) == 0;
    return 0;
}

int corral_cluster_locate(const struct corral_redis_conf *conf, const char *key, int64_t timeout_ms,
                          struct corral_hostport *out, struct corral_err *err)
{
    struct corral_cluster *cc = corral_cluster_connect(
        conf, (const char *const *)conf->cluster.items, conf->cluster.n, timeout_ms, err);
    if (cc == NULL)
        return -1;
    const struct corral_cluster_node *n =
        corral_cluster_owner(&cc->map, corral_cluster_keyslot(key, strlen(key)));
    int rc = 0;
    if (n == NULL)
        rc = corral_err_set(err, CORRAL_ERR_REDIS, "redis cluster: no node serves the slot of %s",
                            key);
    else
        *out = (struct corral_hostport){corral_xstrdup(n->host), n->port};
    corral_cluster_free(cc);
    return rc;
}

/* Redis Cluster routing, corral's own (Debian's hiredis 0.14 has none;
 * docs/design.md "Redis Cluster slots"): the slot of a key, the slot map
 * read from CLUSTER SLOTS, the MOVED / ASK redirections, and a blocking
 * router that sends each command to the node owning its key, following
 * redirections as the Cluster specification says (MOVED: refresh the map
 * and retry there; ASK: ASKING then the command, once, on the named node).
 *
 * Like queue.h, the exchanges are pure parsers of replies (fuzzed:
 * tests/fuzz/fuzz_cluster.c) used by the router; nothing here keeps a
 * reply. */
#ifndef CORRAL_CLUSTER_H
#define CORRAL_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "corral/cluster_client.h"
#include "corral/config.h"
#include "corral/err.h"

#define CORRAL_CLUSTER_SLOTS 16384

/* The slot of a key: CRC16 (XMODEM) of the key, or of the part between the
 * first '{' and the next '}' when that part is not empty (the hash tag),
 * mod 16384. */
unsigned corral_cluster_keyslot(const char *key, size_t len);

/* One primary of the map. host is owned. */
struct corral_cluster_node {
    char *host;
    int port;
};

/* Which primary serves each slot. owner[s] is 1 + the index in nodes, or 0
 * for a slot no node serves (the Cluster is then down for that slot). */
struct corral_cluster_map {
    struct corral_cluster_node *nodes;
    size_t n_nodes;
    uint16_t owner[CORRAL_CLUSTER_SLOTS];
};

/* Reads the reply of CLUSTER SLOTS into map (zeroed first; free with
 * corral_cluster_map_free even on error). A node whose address is empty or
 * "?" (Redis's "the address you reached me by") gets asked_host. Ranges out
 * of 0..16383, reversed, or with a malformed node are errors naming the
 * range; so is a map that serves no slot at all. */
int corral_cluster_map_parse(const redisReply *r, const char *asked_host,
                             struct corral_cluster_map *map, struct corral_err *err);
void corral_cluster_map_free(struct corral_cluster_map *map);

/* The node serving slot, or NULL. */
const struct corral_cluster_node *corral_cluster_owner(const struct corral_cluster_map *map,
                                                       unsigned slot);

/* A redirection: "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>". */
struct corral_cluster_redirect {
    int ask; /* 1 for ASK (this one command), 0 for MOVED (the slot moved) */
    unsigned slot;
    char host[256];
    int port;
};

/* 1 and *out filled when r is a MOVED or ASK error reply, 0 when r is any
 * other reply, -1 when it begins with MOVED or ASK but is malformed (err
 * says how). An empty host means the node the command was sent to. */
int corral_cluster_redirect_parse(const redisReply *r, struct corral_cluster_redirect *out,
                                  struct corral_err *err);

/* A blocking router over one connection per primary, made from the seed
 * nodes of [redis] cluster: each connection authenticated like
 * corral_redis_connect's (the public part: corral/cluster_client.h). */

/* Asks the seeds in turn for the slot map (CLUSTER SLOTS); NULL with err
 * naming every seed's failure when none answers, or "not in cluster mode"
 * when a seed answers without cluster support. */
struct corral_cluster *corral_cluster_connect(const struct corral_redis_conf *conf,
                                              const char *const *seeds, size_t n_seeds,
                                              int64_t timeout_ms, struct corral_err *err);

/* Runs argv on the node that owns key, following up to 5 redirections
 * (MOVED refreshes the map first; ASK sends ASKING then the command once).
 * Returns the final reply (the caller frees it; an error reply other than a
 * redirection is returned as is), or NULL with err when no node could be
 * reached or the redirections did not end. */
redisReply *corral_cluster_command(struct corral_cluster *cc, const char *key, size_t keylen,
                                   int argc, const char **argv, const size_t *argvlen,
                                   struct corral_err *err);

/* The map the router holds now (after the last refresh). */
const struct corral_cluster_map *corral_cluster_current(const struct corral_cluster *cc);

/* How many times the router refreshed its map (the first read included):
 * what MOVED costs, for tests and status. */
unsigned corral_cluster_refreshes(const struct corral_cluster *cc);

/* The connection to the node owning key's slot. The router owns it. */
redisContext *corral_cluster_conn(struct corral_cluster *cc, const char *key, size_t keylen,
                                  struct corral_err *err);
/* Reads the map again (the known primaries first, then the seeds). */
int corral_cluster_refresh(struct corral_cluster *cc, struct corral_err *err);
/* The primary holding key's slot, asked of the seeds of conf->cluster
 * (one blocking read of the map, timeout_ms per node); out->host owned
 * (corral_hostport_free). 0, or -1 with err naming every seed's failure. */
struct corral_hostport;
int corral_cluster_locate(const struct corral_redis_conf *conf, const char *key, int64_t timeout_ms,
                          struct corral_hostport *out, struct corral_err *err);
/* Drops c (a connection that failed); the next use connects again. */
void corral_cluster_drop(struct corral_cluster *cc, redisContext *c);

#endif

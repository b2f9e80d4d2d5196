/* corrald's way to Redis: one connection (one Redis, or the master the
 * sentinels name), or on a Redis Cluster the router of queue/cluster.c with
 * one connection per primary (docs/design.md, "Redis Cluster slots"). Each
 * call goes to the node of its key: a queue's calls to the queue's node,
 * a heartbeat or decision key to its own; a MOVED reads the map again and
 * the call is sent again. */
#ifndef CORRAL_LINK_H
#define CORRAL_LINK_H

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "corral/cluster.h"
#include "corral/config.h"
#include "corral/err.h"

struct corrald_link {
    redisContext *c;           /* one Redis; NULL on a Cluster, or while down */
    struct corral_cluster *cc; /* a Cluster; NULL otherwise, or while down */
    int lost;                  /* the last failed call lost its connection */
};

/* Whether corrald has Redis (a connection, or the Cluster's map). */
int corrald_link_up(const struct corrald_link *l);
/* Whether a and b name the same Redis: the url, and the Cluster's seeds. */
int corrald_link_same(const struct corral_redis_conf *a, const struct corral_redis_conf *b);
/* Closes what is open. */
void corrald_link_close(struct corrald_link *l);

/* The connection for key's slot (the link's own: never redisFree it);
 * NULL with err, and l->lost set, when there is none. */
redisContext *corrald_link_key(struct corrald_link *l, const char *key, struct corral_err *err);

/* After a call on c (from corrald_link_key) failed with err: 1 when it
 * may be sent again, the Cluster having refused it without running it
 * (MOVED, ASK, CLUSTERDOWN, TRYAGAIN, NOFUNCTION: the map read again or
 * the library loaded); 0 otherwise, with l->lost set when the connection
 * is gone (then corrald connects again after its back-off). */
int corrald_link_retry(struct corrald_link *l, redisContext *c, const struct corral_err *err);

/* The housekeeping calls of one queue (corral/queue.h), each sent to the
 * queue's node and again after a redirection; l->lost says whether a
 * failure lost the connection. */
long long corrald_link_promote(struct corrald_link *l, const char *prefix, const char *queue,
                               struct corral_err *err);
long long corrald_link_reclaim(struct corrald_link *l, const char *prefix, const char *queue,
                               struct corral_err *err);
long long corrald_link_reclaim_worker(struct corrald_link *l, const char *prefix, const char *queue,
                                      const char *worker, struct corral_err *err);
int corrald_link_lease_holders(struct corrald_link *l, const char *prefix, const char *queue,
                               struct corral_strlist *out, struct corral_err *err);
int corrald_link_stats(struct corrald_link *l, const char *prefix, const char *queue, int window_s,
                       char **json_out, struct corral_err *err);

/* The queues' and services' declarations (corral_bootstrap_run, or on a
 * Cluster corral_cluster_bootstrap). */
int corrald_link_bootstrap(struct corrald_link *l, const struct corral_config *cfg,
                           struct corral_err *err);

/* corral_redis_health of the Redis, or on a Cluster the warnings of each
 * primary holding a served queue, each naming its node ("node h:p: ..."). */
json_t *corrald_link_health(struct corrald_link *l, const struct corral_config *cfg);

#endif

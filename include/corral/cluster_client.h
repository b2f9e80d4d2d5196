/* libcorral on a Redis Cluster ([redis] cluster = host:port, ...;
 * docs/design.md, "Redis Cluster slots"): corral's own router (Debian's
 * hiredis 0.14 has no Cluster client) keeps the slot map and one blocking
 * connection per primary. A queue's every call touches its slot alone, so
 * the blocking calls of corral/queue.h run as they are on the connection
 * corral_cluster_queue_conn gives for the queue; a call refused with MOVED
 * (the slot moved) or ASK (it is moving) is sent again after
 * corral_cluster_redirected says so:
 *
 *   redisContext *c = corral_cluster_queue_conn(cc, prefix, queue, &err);
 *   int rc = c ? corral_queue_enqueue(c, prefix, queue, ...) : -1;
 *   for (int k = 0; rc < 0 && k < 20 && corral_cluster_redirected(cc, c, &err); k++)
 *       rc = (c = corral_cluster_queue_conn(cc, prefix, queue, &err))
 *                ? corral_queue_enqueue(c, prefix, queue, ...) : -1;
 *
 * A service's keys share the hash tag {svc:NAME}, in a slot of their own:
 * the worker of a queue with a service asks the service's gate on that
 * slot for permits (docs/protocol.md, "The service gate"). */
#ifndef CORRAL_CLUSTER_CLIENT_H
#define CORRAL_CLUSTER_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "corral/bootstrap.h"
#include "corral/config.h"
#include "corral/err.h"
#include "corral/queue.h"

#pragma GCC visibility push(default)

struct corral_cluster;

/* Reads the slot map from the seeds of conf->cluster (the first that
 * answers) and loads the Function library on every primary that lacks it
 * at this build's version. NULL with err naming every seed's failure when
 * none answers, "not in cluster mode" for a seed without cluster support,
 * or "[redis] cluster is not set". Connections are authenticated as
 * corral_redis_connect's, with timeouts of timeout_ms (0: none). */
struct corral_cluster *corral_cluster_open(const struct corral_redis_conf *conf, int64_t timeout_ms,
                                           struct corral_err *err);
void corral_cluster_free(struct corral_cluster *cc);

/* corral_bootstrap_run on a Cluster: the library on every primary, then
 * each declaration sent to the node of its key, and each declared queue
 * added to <prefix>:queues by a separate SADD sent to that key's node
 * (docs/protocol.md, version 7); a service's declaration goes to the node of
 * its tagged key {svc:NAME}, and <prefix>:services is added to the same
 * way. A queue whose service is a fallback list is refused (the gate
 * serves one service). */
int corral_cluster_bootstrap(struct corral_cluster *cc, const struct corral_config *cfg,
                             enum corral_bootstrap_scope scope, const char *const *queues, size_t n,
                             struct corral_err *err);

/* The connection to the primary holding queue's slot (made on first use;
 * the router owns it: never redisFree it). NULL with err when no node
 * serves the slot. */
redisContext *corral_cluster_queue_conn(struct corral_cluster *cc, const char *prefix,
                                        const char *queue, struct corral_err *err);

/* After a call on c (from corral_cluster_queue_conn) failed with err: 1
 * when the Cluster refused it without running it, so the same call may be
 * sent again: MOVED, CLUSTERDOWN or TRYAGAIN (the map is read again); ASK
 * (the queue's slot is migrating: after a pause of 100 ms more each time
 * in a row, up to 1 s, the call goes to the owner again, never to the
 * node the slot moves to, which lacks the keys still to come; the owner
 * answers MOVED once the slot has moved); NOFUNCTION (the library is
 * loaded on every primary that lacks it). A lost connection is dropped
 * and the map read again, but answers 0: whether the call ran is unknown. */
int corral_cluster_redirected(struct corral_cluster *cc, redisContext *c,
                              const struct corral_err *err);

/* "host:port" of the primary holding queue's slot in the current map, or
 * "" when none does. */
void corral_cluster_queue_node(struct corral_cluster *cc, const char *prefix, const char *queue,
                               char *out, size_t outlen);

#pragma GCC visibility pop

#endif

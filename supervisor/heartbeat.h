/* This host's heartbeat in Redis, read by `corralctl status` and by other
 * corrald instances (to split fleet-wide demand). Keys, outside any queue's
 * slot: <prefix>:hosts (sorted set of host names by last beat, wall ms) and
 * <prefix>:host:<host> (hash, expires after ttl_ms so a dead host vanishes). */
#ifndef CORRAL_HEARTBEAT_H
#define CORRAL_HEARTBEAT_H

#include <stdint.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#include "corral/err.h"
#include "link.h"

struct corral_heartbeat {
    const char *host;
    pid_t pid;
    int workers;
    int busy;
    int slots;
    int min;
    int max;
    int desired;
    const char *last_decision;
    const char *queues;      /* comma-separated */
    const char *redis_state; /* "ok" or the last error, for status */
    int64_t started_ms;      /* wall clock */
    int64_t unwritten;       /* outcomes its workers hold that Redis has not taken
                              * (back-pressure above their slots; docs/worker.md) */
    const char *tls;         /* the TLS proxy's state ("up", "starting", "backoff");
                              * NULL or "" without TLS (docs/ha.md) */
    const char *tls_error;   /* its standing fault's sentence, or "" */
};

/* Writes the beat in one pipelined round trip (on a Cluster, one to each
 * key's node). l->lost says whether a failure lost the connection. */
int corral_heartbeat_send(struct corrald_link *l, const char *prefix,
                          const struct corral_heartbeat *hb, int64_t ttl_ms,
                          struct corral_err *err);

/* Removes this host's beat (clean shutdown). */
int corral_heartbeat_remove(struct corrald_link *l, const char *prefix, const char *host,
                            struct corral_err *err);

/* How many hosts beat within max_age_ms and serve queue (listed in their
 * queues field); at least 1, counting this one. */
int corral_heartbeat_live_hosts(struct corrald_link *l, const char *prefix, const char *queue,
                                int64_t max_age_ms, struct corral_err *err);

#endif

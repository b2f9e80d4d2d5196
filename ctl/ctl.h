/* corralctl's commands share this: the loaded config and one blocking
 * Redis connection. Each command returns the process exit code (0 success,
 * 1 failure with a message on stderr, 2 bad usage). */
#ifndef CORRAL_CTL_H
#define CORRAL_CTL_H

#include <stdint.h>
#include <stdio.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "corral/backoff.h"
#include "corral/config.h"

struct corral_tls_proxy;
struct corral_cluster;

struct ctl {
    struct corral_config *cfg;
    redisContext *redis;
    /* rediss without a usable corrald proxy on this host: a private stunnel
     * for the command's life (docs/ha.md, "How it runs"); freed at exit */
    struct corral_tls_proxy *tls;
    /* [redis] cluster (ctl/cluster.c): the router, which owns every
     * connection; redis is then the one of the node holding queue's slot
     * (ctl_route), or of the queue registry's before a command routes */
    struct corral_cluster *cluster;
    const char *queue;
    /* waits for a Cluster failing over (ctl/cluster.c, cluster_wait) */
    struct corral_backoff down;
    int down_tries;
};

#define CTL_EXIT_USAGE 2
/* enqueue: the job exists on the master, but fewer than [redis]
 * min_replicas replicas confirmed it in time (its id is printed) */
#define CTL_EXIT_UNCONFIRMED 3
/* enqueue: Redis is full (OOM, maxmemory reached): no job was created, the
 * same command may be run again once memory frees */
#define CTL_EXIT_FULL 4

int ctl_usage_error(const char *fmt, const char *arg);

/* Whether the connection is gone (rather than Redis answering an error):
 * then it is worth connecting again. */
int ctl_lost(const struct ctl *ctl);
/* Connects (again), loading the library if Redis lost it; ctl->redis is
 * NULL after a failure. 0, or -1 with err. Waiting before a try is the
 * caller's (a back-off of its own). */
int ctl_reconnect(struct ctl *ctl, struct corral_err *err);

/* Drops the connection (a failed one): closed, or handed back to the
 * cluster router that owns it. ctl_close frees everything at exit. */
void ctl_drop(struct ctl *ctl);
void ctl_close(struct ctl *ctl);

/* ctl/cluster.c: on a Cluster, points ctl->redis at the primary holding
 * queue's slot (a no-op on one Redis); 0, or -1 with err. */
/* [redis] cluster: the connection of key's node, waiting out a node that
 * refuses connections while the Cluster fails over (ctl/cluster.c). */
redisContext *ctl_cluster_conn(struct ctl *ctl, const char *key, struct corral_err *err);
int ctl_route(struct ctl *ctl, const char *queue, struct corral_err *err);
/* After a routed call failed with err: 1 when the Cluster refused it
 * unrun (MOVED, ASK, CLUSTERDOWN) and ctl->redis now leads to where it is
 * to be sent again; 0 on one Redis or for any other error. */
int ctl_rerouted(struct ctl *ctl, struct corral_err *err);
/* One command on one key, for ctl_keyed_replies: argv[0] the command, then
 * the key, then argv[1..argc-1]. */
struct ctl_keyed {
    char *key; /* the caller's */
    const char *argv[4];
    int argc;
};
/* The replies of n keyed commands, in order: one pipeline on ctl->redis, or
 * on a Cluster each on its key's node, a redirection followed (corral-web's
 * history, the counters). Error replies are returned as replies. 0 with
 * rs[0..n-1] (the caller frees each), or -1 with err when a connection
 * failed or no node serves a key (rs all NULL). */
int ctl_keyed_replies(struct ctl *ctl, const struct ctl_keyed *cmds, size_t n, redisReply **rs,
                      const char *what, struct corral_err *err);
/* A service's function (corral_breaker, corral_breaker_reset) on the node
 * of its slot: on a Cluster its keys share the hash tag {svc:NAME}
 * (docs/protocol.md, "The service gate"); the router follows MOVED and
 * ASK. The reply, error replies included; NULL with err when none came
 * (corralctl breaker, corral-web's breaker reset). */
redisReply *ctl_service_call(struct corral_cluster *cc, const char *prefix, const char *function,
                             const char *name, struct corral_err *err);
/* status --json on a Cluster: the queues of the registry, each read on its
 * node (with "node"), the heartbeats, "cluster" (nodes, slot ranges,
 * primaries and replicas), the breakers (ctl_cluster_breakers). */
json_t *ctl_cluster_snapshot(struct ctl *ctl, struct corral_err *err);
/* The breakers of service (NULL: every one declared or configured), each
 * read on its service's node, as ctl_read_breakers; and a reset there.
 * NULL or -1 with err. */
json_t *ctl_cluster_breakers(struct ctl *ctl, const char *service, int64_t now,
                             struct corral_err *err);
int ctl_cluster_breaker_reset(struct ctl *ctl, const char *service, struct corral_err *err);
/* status's table of the Cluster's nodes (role, slots served, the queues
 * each holds); nothing without a "cluster" object. */
void ctl_cluster_print(json_t *snapshot, FILE *out, int color);
/* A heartbeat hash as status shows it, and depth_by_priority in the
 * queue's level order (csv: its declared priorities) (status.c). */
void ctl_order_levels(json_t *q, const char *csv);
json_t *ctl_host_json(const redisReply *h, int64_t now);

/* status [--json] [--watch [SECONDS]] */
int ctl_status(struct ctl *ctl, int argc, char **argv);
/* dead QUEUE [list | retry [ID... | --all] | purge] */
int ctl_dead(struct ctl *ctl, int argc, char **argv);
/* pause QUEUE / resume QUEUE */
int ctl_pause(struct ctl *ctl, int argc, char **argv, int pause);
/* cancel QUEUE ID: a queued, scheduled, dead or running job (control.c) */
int ctl_cancel(struct ctl *ctl, int argc, char **argv);
/* wait QUEUE ID --follow: prints the job's streamed text as it comes, then
 * ends as wait does (control.c); timeout_ms 0: no limit. */
int ctl_follow(struct ctl *ctl, const char *queue, const char *id, int64_t timeout_ms);
/* breaker [SERVICE] [reset] [--json] */
int ctl_breaker(struct ctl *ctl, int argc, char **argv);
/* metrics: Prometheus text exposition of the status snapshot */
int ctl_metrics(struct ctl *ctl, int argc, char **argv);
/* metrics when Redis cannot be read at all: corral_up 0 and why; returns
 * the exit code (1). */
int ctl_metrics_down(const struct corral_err *err);
/* The gauge families of metrics (queues, hosts, breakers) for a snapshot of
 * ctl_snapshot, without corral_up; corral-web serves them too. */
void ctl_metrics_write(json_t *snapshot, FILE *out);

/* Every breaker (declared in Redis or named by the config), sorted by
 * service, as a JSON array the caller owns; NULL with err on failure. */
json_t *ctl_read_breakers(struct ctl *ctl, int64_t now, struct corral_err *err);
/* The services to show: those of the SMEMBERS reply declared (may be NULL)
 * and those of the config, sorted; out is freed with corral_strlist_free. */
void ctl_breaker_names(struct ctl *ctl, const redisReply *declared, struct corral_strlist *out);
/* One corral_breaker reply as the JSON object status shows (a service that
 * was never declared is shown closed); NULL with err on other errors. */
json_t *ctl_breaker_json(const char *name, const redisReply *r, int64_t now,
                         struct corral_err *err);
/* The whole fleet as status --json prints it, in two round trips. */
json_t *ctl_snapshot(struct ctl *ctl, struct corral_err *err);
/* The breakers table of status and breaker; sticky as ctl_table_print's
 * (NULL, or CTL_BREAKER_COLS entries). */
#define CTL_BREAKER_COLS 8
void ctl_print_breakers(json_t *breakers, FILE *out, int color, size_t *sticky);
/* ctl/tokens.c: status's table of tokens and cost per service and queue
 * (nothing when no budget is set and no usage counted), and metrics'
 * families of tokens and cost (docs/tokens.md). */
void ctl_print_tokens(json_t *snapshot, FILE *out, int color);
void ctl_tokens_metrics(json_t *snapshot, FILE *out);

#endif

/* corralctl's one Redis connection: made, and made again after it was
 * lost (the waits and status --watch ride out a Redis restart). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corral/bootstrap.h"
#include "corral/cluster.h"
#include "corral/redis.h"
#include "corral/sentinel.h"
#include "corral/tls.h"
#include "corral/util.h"
#include "ctl.h"

int ctl_lost(const struct ctl *ctl)
{
    return ctl->redis == NULL || ctl->redis->err != 0;
}

/* Why the connection through the proxy failed: the fault stunnel logged
 * for this route (read for up to a second), else a probe of its own. */
static void tls_reason(struct corral_tls_proxy *p, const struct corral_redis_conf *conf,
                       struct corral_err *err)
{
    struct corral_err why;
    int64_t until = corral_now_ms() + 1000;
    do {
        if (corral_tls_proxy_read_log(p, NULL, NULL) < 0)
            break;
        if (corral_tls_proxy_fault(p, conf->addr.host, conf->addr.port, &why) !=
            CORRAL_TLS_FAULT_NONE) {
            *err = why;
            return;
        }
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    } while (corral_now_ms() < until);
    if (corral_tls_proxy_probe(p, conf->addr.host, conf->addr.port, 3000, &why) < 0)
        *err = why;
}

/* rediss: connects through a private stunnel, started on first need; a
 * refused handshake is reported with the reason stunnel logged. */
static redisContext *connect_private(struct ctl *ctl, struct corral_err *err)
{
    const struct corral_redis_conf *conf = &ctl->cfg->redis;
    size_t n = conf->sentinels.n > 0 ? conf->sentinels.n : 1;
    struct corral_hostport *hosts = corral_xcalloc(n, sizeof(*hosts));
    int rc = 0;
    if (conf->sentinels.n == 0) {
        hosts[0].host = corral_xstrdup(conf->addr.host);
        hosts[0].port = conf->addr.port;
    }
    for (size_t i = 0; rc == 0 && i < conf->sentinels.n; i++)
        rc = corral_hostport_parse(conf->sentinels.items[i], CORRAL_SENTINEL_PORT, &hosts[i], err);
    if (rc == 0 && ctl->tls == NULL)
        ctl->tls = corral_tls_proxy_private(conf, hosts, n, 5000, err);
    for (size_t i = 0; i < n; i++)
        corral_hostport_free(&hosts[i]);
    free(hosts);
    if (ctl->tls == NULL)
        return NULL;
    struct corral_reach reach = {.tls_dir = corral_tls_proxy_dir(ctl->tls),
                                 .ensure = corral_tls_proxy_ensure,
                                 .data = ctl->tls};
    redisContext *c = corral_redis_connect_via(conf, &reach, 5000, err);
    if (c == NULL && conf->sentinels.n == 0)
        tls_reason(ctl->tls, conf, err);
    return c;
}

void ctl_drop(struct ctl *ctl)
{
    if (ctl->cluster != NULL && ctl->redis != NULL)
        corral_cluster_drop(ctl->cluster, ctl->redis);
    else if (ctl->redis != NULL)
        redisFree(ctl->redis);
    ctl->redis = NULL;
}

void ctl_close(struct ctl *ctl)
{
    ctl_drop(ctl);
    corral_cluster_free(ctl->cluster);
    ctl->cluster = NULL;
}

/* [redis] cluster: the router (the library loaded on every primary), the
 * slot map read again on a reconnect; ctl->redis leads to the node of the
 * queue the command routed to, else of the queue registry. */
static int reconnect_cluster(struct ctl *ctl, struct corral_err *err)
{
    const char *prefix = ctl->cfg->redis.prefix;
    if (ctl->cluster == NULL)
        ctl->cluster = corral_cluster_open(&ctl->cfg->redis, 5000, err);
    else if (corral_cluster_refresh(ctl->cluster, err) < 0 ||
             corral_cluster_bootstrap(ctl->cluster, ctl->cfg, CORRAL_BOOTSTRAP_LIBRARY, NULL, 0,
                                      err) < 0)
        return -1;
    if (ctl->cluster == NULL)
        return -1;
    if (ctl->queue != NULL)
        return ctl_route(ctl, ctl->queue, err);
    char *key = corral_xasprintf("%s:queues", prefix);
    ctl->redis = ctl_cluster_conn(ctl, key, err); /* waits out a failover */
    free(key);
    return ctl->redis != NULL ? 0 : -1;
}

int ctl_reconnect(struct ctl *ctl, struct corral_err *err)
{
    if (ctl->cfg->redis.cluster.n > 0) {
        ctl_drop(ctl);
        return reconnect_cluster(ctl, err);
    }
    if (ctl->redis != NULL)
        redisFree(ctl->redis);
    if (ctl->tls != NULL)
        ctl->redis = connect_private(ctl, err);
    else {
        /* rediss: corrald's proxy on this host first */
        ctl->redis = corral_redis_connect(&ctl->cfg->redis, 5000, err);
        if (ctl->redis == NULL && corral_tls_url(ctl->cfg->redis.url))
            ctl->redis = connect_private(ctl, err);
    }
    if (ctl->redis != NULL && corral_bootstrap_run(ctl->redis, ctl->cfg, CORRAL_BOOTSTRAP_LIBRARY,
                                                   NULL, 0, NULL, err) < 0) {
        redisFree(ctl->redis);
        ctl->redis = NULL;
    }
    return ctl->redis != NULL ? 0 : -1;
}

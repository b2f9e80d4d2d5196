/* corral-worker: runs jobs of its queues in `concurrency` slots on one event
 * loop. Started by corrald (with fd 3 to it) or by hand for debugging:
 *   corral-worker [-c FILE] [--queue Q ...] [--concurrency N] */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ev.h>

#include "corral/config.h"
#include "corral/log.h"
#include "corral/queue.h"
#include "connection.h"
#include "worker.h"

#define MAX_QUEUES 64

static int usage(FILE *out)
{
    fprintf(out, "usage: corral-worker [-c FILE] [--queue Q ...] [--concurrency N]\n"
                 "  without --queue, serves the config's [pool] queues\n");
    return out == stdout ? 0 : 2;
}

/* fd 3 is corrald's socketpair when corrald started us; anything else there
 * (or nothing) means we run alone. */
/* [redis] cluster (docs/design.md, "Redis Cluster slots"): a worker serves
 * one queue there, on the primary holding its slot; its service (or each
 * of its fallback list) through the service's gate (gate.h). */
static int cluster_route(const struct corral_config *cfg, const char *const *queues, size_t nq)
{
    const char *why =
        nq != 1 ? "a worker serves one queue on a Redis Cluster (--queue NAME)" : NULL;
    if (why != NULL) {
        corral_log_err("cannot start", "error=\"[redis] cluster: %s\"", why);
        return -1;
    }
    char *key = corral_queue_key(cfg->redis.prefix, queues[0]);
    corral_conn_cluster_route(key);
    free(key);
    return 0;
}

static int corrald_channel(void)
{
    struct stat st;
    if (fstat(3, &st) == 0 && S_ISSOCK(st.st_mode))
        return 3;
    return -1;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    const char *queues[MAX_QUEUES];
    size_t nq = 0;
    long concurrency = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && v) {
            path = v;
            i++;
        } else if (strcmp(argv[i], "--queue") == 0 && v) {
            if (nq == MAX_QUEUES) {
                fprintf(stderr, "corral-worker: at most %d queues\n", MAX_QUEUES);
                return 2;
            }
            queues[nq++] = v;
            i++;
        } else if (strcmp(argv[i], "--concurrency") == 0 && v) {
            char *end;
            concurrency = strtol(v, &end, 10);
            if (*end != '\0' || concurrency < 1 || concurrency > 1024) {
                fprintf(stderr, "corral-worker: --concurrency must be 1-1024, got %s\n", v);
                return 2;
            }
            i++;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("corral-worker %s\n", CORRAL_VERSION);
            return 0;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            return usage(stdout);
        } else {
            return usage(stderr);
        }
    }
    corral_log_init("corral-worker");
    signal(SIGPIPE, SIG_IGN);
    struct corral_config_errors errs = {0};
    struct corral_config *cfg =
        corral_config_load(path ? path : corral_config_default_path(), &errs);
    for (size_t i = 0; i < errs.n; i++)
        corral_log_err("config error", "detail=\"%s\"", errs.lines[i]);
    corral_config_errors_free(&errs);
    if (cfg == NULL)
        return 1;
    if (nq == 0)
        for (size_t i = 0; i < cfg->pool.queues.n && nq < MAX_QUEUES; i++)
            queues[nq++] = cfg->pool.queues.items[i];
    if (nq == 0) {
        corral_log_err("no queues to serve", "config=%s", cfg->path);
        corral_config_free(cfg);
        return 1;
    }
    if (cfg->redis.cluster.n > 0 && cluster_route(cfg, queues, nq) < 0) {
        corral_config_free(cfg);
        return 1;
    }
    struct corral_worker_opts o = {
        .cfg = cfg,
        .queues = queues,
        .nqueues = nq,
        .concurrency = concurrency > 0 ? (int)concurrency : cfg->pool.concurrency,
        .fd3 = corrald_channel(),
    };
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    struct corral_err err;
    struct corral_worker *w = corral_worker_new(loop, &o, &err);
    int rc = 1;
    if (w == NULL)
        corral_log_err("cannot start", "error=\"%s\"", err.msg);
    else
        rc = corral_worker_run(w);
    corral_worker_free(w);
    corral_config_free(cfg);
    ev_loop_destroy(loop);
    return rc;
}

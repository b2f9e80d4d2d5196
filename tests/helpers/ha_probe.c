/* ha_probe: drives the Sentinel and TLS modules (queue/sentinel.c,
 * common/tls.c, supervisor/tlsproxy.c) from a config file, for the
 * integration tests of tests/integration/test_ha_sentinel.py and
 * test_ha_tls.py, before the programs use them.
 *
 *   ha_probe master CONF          the master's address ("HOST PORT"), by way
 *                                 of the sentinels and a ROLE check
 *   ha_probe watch CONF N         "subscribed", then each of N +switch-master
 *                                 events for the master ("NAME H1 P1 H2 P2")
 *   ha_probe tls-ping CONF        a private stunnel for the url's address,
 *                                 PING through it: "PONG" or the reason
 *   ha_probe tls-supervise CONF DIR STATUS [HOST:PORT]
 *                                 corrald's supervised stunnel under DIR,
 *                                 its health rewritten to the file STATUS
 *                                 on each change, until SIGTERM; SIGUSR1
 *                                 adds the route to HOST:PORT
 *
 * With a rediss url, master and watch reach the sentinels and nodes through
 * the proxy whose sockets are under $CORRAL_TLS_DIR. Exit status 0, or 1
 * with the error on stderr. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "corral/config.h"
#include "corral/log.h"
#include "corral/sentinel.h"
#include "corral/tls.h"
#include "corral/util.h"
#include "tlsproxy.h"

static struct corral_config *load(const char *path)
{
    struct corral_config_errors errs;
    struct corral_config *cfg = corral_config_load(path, &errs);
    if (cfg == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.lines[i]);
        corral_config_errors_free(&errs);
        exit(1);
    }
    return cfg;
}

static int fail(const struct corral_err *err)
{
    fprintf(stderr, "%s\n", err->msg);
    return 1;
}

/* With a rediss url: the host's proxy under $CORRAL_TLS_DIR, as a worker
 * uses corrald's; without it, a private one with routes to the sentinels
 * that adds the master's route once it is known, as corralctl elsewhere. */
static struct corral_tls_proxy *own_proxy;

static struct corral_reach reach_of(const struct corral_config *cfg)
{
    struct corral_reach reach = {NULL, NULL, NULL, 0};
    if (!corral_tls_url(cfg->redis.url))
        return reach;
    reach.tls_dir = getenv("CORRAL_TLS_DIR");
    if (reach.tls_dir != NULL)
        return reach;
    const struct corral_strlist *sl = &cfg->redis.sentinels;
    struct corral_hostport *hps = corral_xcalloc(sl->n, sizeof(*hps));
    struct corral_err err;
    for (size_t i = 0; i < sl->n; i++)
        if (corral_hostport_parse(sl->items[i], CORRAL_SENTINEL_PORT, &hps[i], &err) < 0)
            exit(fail(&err));
    own_proxy = corral_tls_proxy_private(&cfg->redis, hps, sl->n, 5000, &err);
    for (size_t i = 0; i < sl->n; i++)
        corral_hostport_free(&hps[i]);
    free(hps);
    if (own_proxy == NULL)
        exit(fail(&err));
    reach.tls_dir = corral_tls_proxy_dir(own_proxy);
    reach.ensure = corral_tls_proxy_ensure;
    reach.data = own_proxy;
    return reach;
}

static int cmd_master(const struct corral_config *cfg)
{
    struct corral_err err;
    struct corral_hostport hp;
    struct corral_reach reach = reach_of(cfg);
    redisContext *c = corral_sentinel_connect(&cfg->redis, &reach, 2000, &hp, &err);
    if (c == NULL)
        return fail(&err);
    printf("%s %d\n", hp.host, hp.port);
    corral_hostport_free(&hp);
    redisFree(c);
    return 0;
}

static int cmd_watch(const struct corral_config *cfg, int n)
{
    struct corral_err err;
    struct corral_reach reach = reach_of(cfg);
    redisContext *c = corral_sentinel_subscribe(&cfg->redis, &reach, 2000, &err);
    if (c == NULL)
        return fail(&err);
    printf("subscribed\n");
    fflush(stdout);
    int rc = 0;
    while (n > 0) {
        void *reply = NULL;
        if (redisGetReply(c, &reply) != REDIS_OK) {
            fprintf(stderr, "sentinel connection lost: %s\n", c->errstr);
            rc = 1;
            break;
        }
        struct corral_switch sw;
        int got = corral_reply_sentinel_event(reply, cfg->redis.sentinel_master, &sw, &err);
        freeReplyObject(reply);
        if (got < 0) {
            rc = fail(&err);
            break;
        }
        if (got == 1) {
            printf("%s %s %d %s %d\n", sw.name, sw.from.host, sw.from.port, sw.to.host, sw.to.port);
            fflush(stdout);
            corral_switch_free(&sw);
            n--;
        }
    }
    redisFree(c);
    return rc;
}

static int cmd_tls_ping(const struct corral_config *cfg)
{
    struct corral_err err;
    struct corral_redis_addr a;
    if (corral_tls_parse_url(cfg->redis.url, &a, NULL, 0, &err) < 0)
        return fail(&err);
    struct corral_hostport hp = {a.host, a.port};
    struct corral_tls_proxy *p = corral_tls_proxy_private(&cfg->redis, &hp, 1, 5000, &err);
    int rc = p == NULL || corral_tls_proxy_probe(p, a.host, a.port, 15000, &err) < 0;
    if (rc)
        fail(&err);
    else
        printf("PONG\n");
    corral_tls_proxy_free(p);
    corral_redis_addr_free(&a);
    return rc;
}

struct sup {
    struct corral_tlssup *s;
    const char *status;
    const char *later; /* HOST:PORT to route on SIGUSR1, or NULL */
    char last[1024];
    ev_timer tick;
    ev_signal term;
    ev_signal usr1;
};

static void write_status(struct sup *u)
{
    struct corral_tlssup_health h;
    corral_tlssup_health(u->s, &h);
    char text[1024];
    snprintf(text, sizeof(text), "state=%s\npid=%d\nrestarts=%u\nroutes=%zu\nfault=%s\nerror=%s\n",
             corral_tlssup_state_name(h.state), (int)h.pid, h.restarts, h.routes,
             corral_tls_fault_name(h.fault), h.error);
    if (strcmp(text, u->last) == 0)
        return;
    snprintf(u->last, sizeof(u->last), "%s", text);
    char *tmp = corral_xasprintf("%s.tmp", u->status);
    FILE *f = fopen(tmp, "w");
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
        rename(tmp, u->status);
    }
    free(tmp);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    write_status(w->data);
}

static void on_term(struct ev_loop *loop, ev_signal *w, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

static void on_usr1(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct sup *u = w->data;
    struct corral_hostport hp;
    struct corral_err err;
    if (u->later == NULL || corral_hostport_parse(u->later, 6379, &hp, &err) < 0 ||
        corral_tlssup_route(u->s, hp.host, hp.port, &err) < 0)
        fprintf(stderr, "ha_probe: no route added\n");
    corral_hostport_free(&hp);
}

static int cmd_tls_supervise(const struct corral_config *cfg, const char *dir, const char *status,
                             const char *later)
{
    struct corral_err err;
    struct corral_redis_addr a;
    if (corral_tls_parse_url(cfg->redis.url, &a, NULL, 0, &err) < 0)
        return fail(&err);
    struct ev_loop *loop = ev_default_loop(0);
    struct sup u = {.status = status, .later = later};
    u.s = corral_tlssup_new(loop, &cfg->redis, dir, &err);
    if (u.s == NULL || corral_tlssup_route(u.s, a.host, a.port, &err) < 0 ||
        corral_tlssup_start(u.s, &err) < 0) {
        corral_tlssup_free(u.s);
        corral_redis_addr_free(&a);
        return fail(&err);
    }
    corral_redis_addr_free(&a);
    ev_timer_init(&u.tick, on_tick, 0.0, 0.02);
    u.tick.data = &u;
    ev_timer_start(loop, &u.tick);
    ev_signal_init(&u.term, on_term, SIGTERM);
    ev_signal_start(loop, &u.term);
    ev_signal_init(&u.usr1, on_usr1, SIGUSR1);
    u.usr1.data = &u;
    ev_signal_start(loop, &u.usr1);
    ev_run(loop, 0);
    corral_tlssup_free(u.s);
    return 0;
}

int main(int argc, char **argv)
{
    corral_log_init("ha_probe");
    if (argc < 3) {
        fprintf(stderr, "usage: ha_probe master|watch|tls-ping|tls-supervise CONF ...\n");
        return 2;
    }
    struct corral_config *cfg = load(argv[2]);
    int rc = 2;
    if (strcmp(argv[1], "master") == 0)
        rc = cmd_master(cfg);
    else if (strcmp(argv[1], "watch") == 0 && argc == 4)
        rc = cmd_watch(cfg, atoi(argv[3]));
    else if (strcmp(argv[1], "tls-ping") == 0)
        rc = cmd_tls_ping(cfg);
    else if (strcmp(argv[1], "tls-supervise") == 0 && (argc == 5 || argc == 6))
        rc = cmd_tls_supervise(cfg, argv[3], argv[4], argc == 6 ? argv[5] : NULL);
    else
        fprintf(stderr, "ha_probe: unknown command or wrong arguments\n");
    corral_tls_proxy_free(own_proxy);
    corral_config_free(cfg);
    return rc;
}

/* corral-web: the fleet's dashboard in a browser, /metrics for Prometheus
 * and the operator's actions behind a token (docs/web.md). Reads Redis like
 * corralctl; serves from libmicrohttpd's threads; this thread only waits
 * for signals and keeps the charts' samples going while nobody watches. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <ev.h>

#include "api.h"
#include "auth.h"
#include "corral/config.h"
#include "corral/log.h"
#include "corral/util.h"
#include "listen.h"
#include "server.h"
#include "snapshot.h"

#define EXIT_USAGE 2

static void usage(FILE *out)
{
    fprintf(out,
            "usage: corral-web [-c FILE] [--listen ADDR:PORT] [--check] [--version]\n"
            "\n"
            "Serves the dashboard, /api/status, /metrics and the operator's actions.\n"
            "The config is FILE, else $CORRAL_CONFIG, else %s when it exists;\n"
            "[web] listen (default %s) and token_file set where it listens and the\n"
            "token that actions need (from a file or a systemd credential, never argv).\n"
            "--check validates the config and the token file, then exits.\n",
            CORRAL_DEFAULT_CONFIG, WEB_DEFAULT_LISTEN);
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "corral-web: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see corral-web --help)\n");
    return EXIT_USAGE;
}

static struct corral_config *load_config(const char *path, int explicit_path)
{
    if (!explicit_path && access(path, F_OK) != 0)
        return corral_config_defaults();
    struct corral_config_errors errs = {0};
    struct corral_config *cfg = corral_config_load(path, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "corral-web: %s\n", errs.lines[i]);
    corral_config_errors_free(&errs);
    return cfg;
}

/* The token of [web] token_file: NULL when unset (actions disabled); exits
 * the program (returns NULL with *bad set) when the file is unreadable or
 * too short. The message names the file, never its content. */
static char *read_token(const struct corral_config *cfg, int *bad)
{
    *bad = 0;
    if (cfg->web.token_file == NULL)
        return NULL;
    struct corral_err err;
    char *tok = corral_read_secret(cfg->web.token_file, &err);
    if (tok == NULL) {
        fprintf(stderr, "corral-web: %s: [web] token_file: %s\n", cfg->path, err.msg);
        *bad = 1;
        return NULL;
    }
    size_t n = strlen(tok);
    if (n < WEB_TOKEN_MIN_BYTES) {
        fprintf(stderr,
                "corral-web: %s: [web] token_file: %s holds %zu characters; a token needs at "
                "least %d (e.g. openssl rand -hex 32)\n",
                cfg->path, cfg->web.token_file, n, WEB_TOKEN_MIN_BYTES);
        explicit_bzero(tok, n);
        free(tok);
        *bad = 1;
        return NULL;
    }
    return tok;
}

struct loop_ctx {
    struct web_snap *snap;
};

static void on_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
    corral_log_notice("stopping", "signal=%d", w->signum);
    ev_break(loop, EVBREAK_ALL);
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
    corral_log_notice("SIGHUP: corral-web reloads nothing; restart it to read a new config or "
                      "token",
                      "pid=%d", (int)getpid());
}

static void on_idle(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct loop_ctx *ctx = t->data;
    web_snap_idle(ctx->snap);
}

int main(int argc, char **argv)
{
    const char *path = NULL, *listen_arg = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("corral-web %s\n", CORRAL_VERSION);
            return 0;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc)
                return usage_error("%s needs a file", a);
            path = argv[++i];
        } else if (strcmp(a, "--listen") == 0) {
            if (i + 1 >= argc)
                return usage_error("%s needs ADDR:PORT", a);
            listen_arg = argv[++i];
        } else if (strcmp(a, "--check") == 0) {
            check = 1;
        } else {
            return usage_error("unknown argument %s", a);
        }
    }
    corral_log_init("corral-web");
    const char *env = getenv("CORRAL_CONFIG");
    struct corral_config *cfg = load_config(path ? path : corral_config_default_path(),
                                            path != NULL || (env != NULL && env[0] != '\0'));
    if (cfg == NULL)
        return 1;
    struct web_listen where;
    struct corral_err err;
    const char *listen_text = listen_arg ? listen_arg : cfg->web.listen;
    if (web_listen_parse(listen_text, &where, &err) < 0) {
        if (listen_arg != NULL)
            fprintf(stderr, "corral-web: --listen: %s\n", err.msg);
        else
            fprintf(stderr, "corral-web: %s: [web] listen: %s\n", cfg->path, err.msg);
        corral_config_free(cfg);
        return listen_arg != NULL ? EXIT_USAGE : 1;
    }
    int bad;
    char *token = read_token(cfg, &bad);
    if (bad || check) {
        if (!bad)
            printf("corral-web: %s: listen %s, actions %s\n", cfg->path, listen_text,
                   token ? "enabled (token_file read)" : "disabled (no token_file)");
        if (token != NULL)
            explicit_bzero(token, strlen(token));
        free(token);
        corral_config_free(cfg);
        return bad ? 1 : 0;
    }

    /* The snapshot's and libmicrohttpd's threads inherit this mask: the
     * signals are taken by this thread alone, through libev. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    signal(SIGPIPE, SIG_IGN);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    struct web_app app = {
        .cfg = cfg,
        .snap = web_snap_new(cfg),
        .api = web_api_new(cfg),
        .sessions = web_sessions_new(),
        .token = token,
        .token_len = token ? strlen(token) : 0,
        .loopback = where.loopback,
    };
    struct web_server *srv = web_server_start(&app, &where, &err);
    int rc = 0;
    if (srv == NULL) {
        corral_log_err("cannot start", "listen=%s error=\"%s\"", listen_text, err.msg);
        rc = 1;
    } else {
        corral_log_notice("listening", "listen=%s actions=%s version=%s", listen_text,
                          token ? "enabled" : "disabled", CORRAL_VERSION);
        struct ev_loop *loop = EV_DEFAULT;
        struct loop_ctx ctx = {.snap = app.snap};
        ev_signal term, intr, hup;
        ev_signal_init(&term, on_stop, SIGTERM);
        ev_signal_init(&intr, on_stop, SIGINT);
        ev_signal_init(&hup, on_hup, SIGHUP);
        ev_signal_start(loop, &term);
        ev_signal_start(loop, &intr);
        ev_signal_start(loop, &hup);
        /* Unblocked once libev watches them: a TERM that came since is
         * taken now, never by the default action. */
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        ev_timer idle;
        /* Looks every 2 s; asks for a read once the view is 10 s old. */
        ev_timer_init(&idle, on_idle, 0.0, 2.0);
        idle.data = &ctx;
        ev_timer_start(loop, &idle);
        ev_run(loop, 0);
        web_server_stop(srv);
        ev_loop_destroy(loop);
    }
    web_sessions_free(app.sessions);
    web_api_free(app.api);
    web_snap_free(app.snap);
    if (token != NULL)
        explicit_bzero(token, strlen(token));
    free(token);
    corral_config_free(cfg);
    return rc;
}

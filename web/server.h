/* corral-web's HTTP side on libmicrohttpd: limits, security headers, the
 * token and origin checks, and the dispatch of each route to the snapshot,
 * the api or the embedded assets. docs/web.md lists what answers what. */
#ifndef CORRAL_WEB_SERVER_H
#define CORRAL_WEB_SERVER_H

#include <stddef.h>

#include "api.h"
#include "auth.h"
#include "corral/config.h"
#include "corral/err.h"
#include "listen.h"
#include "snapshot.h"

#define WEB_BODY_MAX        (64 * 1024) /* request body */
#define WEB_HEADERS_MAX     (16 * 1024) /* request line and headers (libmicrohttpd's pool) */
#define WEB_CONNECTIONS_MAX 512
#define WEB_IDLE_TIMEOUT_S  60
#define WEB_THREADS         2

/* What the handlers share; everything is borrowed by the server. */
struct web_app {
    const struct corral_config *cfg;
    struct web_snap *snap;
    struct web_api *api;
    struct web_sessions *sessions;
    const char *token; /* NULL: actions are disabled */
    size_t token_len;
    int loopback; /* bound to the loopback: the Host header must name it */
};

struct web_server;

/* Listens on where and serves from its own threads. NULL with err. */
struct web_server *web_server_start(struct web_app *app, const struct web_listen *where,
                                    struct corral_err *err);
/* The port it listens on (where's, or the one the kernel chose for 0). */
int web_server_port(struct web_server *srv);
/* Stops listening, finishes what runs and frees. NULL-safe. */
void web_server_stop(struct web_server *srv);

#endif

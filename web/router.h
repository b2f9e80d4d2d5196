/* corral-web's request router: a pure function from a method and the raw
 * request path (still percent-encoded, without the query) to what to serve.
 * No I/O, no allocation; fuzzed by tests/fuzz/fuzz_route.c and unit-tested
 * by tests/unit/test_web_router.c. The routes are listed in docs/web.md. */
#ifndef CORRAL_WEB_ROUTER_H
#define CORRAL_WEB_ROUTER_H

#include <stddef.h>

/* Longest raw path accepted; longer ones answer 414. */
#define WEB_PATH_MAX 1024
/* A queue, service or job id: 1-64 of [A-Za-z0-9_.:-] (as corral_queue_name_valid). */
#define WEB_NAME_MAX 64

enum web_page {
    WEB_NONE,          /* no route: status says why (400, 404, 405, 414) */
    WEB_INDEX,         /* GET /                         the dashboard */
    WEB_ASSET,         /* GET /assets/NAME              an embedded file */
    WEB_STATUS,        /* GET /api/status               corralctl status --json */
    WEB_HISTORY,       /* GET /api/history              the dashboard's charts */
    WEB_SESSION,       /* GET /api/session              logged in, actions enabled */
    WEB_JOB,           /* GET /api/jobs/Q/ID            one job */
    WEB_DEAD_LIST,     /* GET /api/queues/Q/dead        dead jobs with their errors */
    WEB_METRICS,       /* GET /metrics                  Prometheus text */
    WEB_HEALTHZ,       /* GET /healthz                  200 while Redis answers */
    WEB_LOGIN,         /* POST /login                   token -> session cookie */
    WEB_LOGOUT,        /* POST /logout */
    WEB_PAUSE,         /* POST /api/queues/Q/pause */
    WEB_RESUME,        /* POST /api/queues/Q/resume */
    WEB_DEAD_RETRY,    /* POST /api/queues/Q/dead/retry  body: ids, or all */
    WEB_DEAD_PURGE,    /* POST /api/queues/Q/dead/purge */
    WEB_BREAKER_RESET, /* POST /api/breakers/S/reset */
    WEB_JOB_CANCEL,    /* POST /api/jobs/Q/ID/cancel */
};

struct web_route {
    enum web_page page;
    int status;        /* 200 when page is set; else 400, 404, 405 or 414 */
    int action;        /* 1: changes state; needs the token (docs/web.md) */
    int head;          /* 1: a HEAD request (answer without a body) */
    const char *allow; /* with 405: the methods the path takes */
    const char *why;   /* with 400: what is wrong, for the error body */
    char queue[WEB_NAME_MAX + 1];
    char id[WEB_NAME_MAX + 1];
    char service[WEB_NAME_MAX + 1];
    char asset[WEB_NAME_MAX + 1];
};

/* Routes method (GET, HEAD, POST, ...) and path. The path is decoded
 * segment by segment (%XX; a decoded '/', NUL or control byte is refused),
 * "." and empty segments are dropped and ".." removes the segment before it
 * (climbing above the root is refused), then matched against the table.
 * Names in the path must be valid queue, service or job names. Always fills
 * out; returns out->status. */
int web_route(const char *method, const char *path, struct web_route *out);

/* Writes the canonical path of a matched route into buf (what web_route
 * maps back to the same route); returns its length, or -1 when it does not
 * fit or the route is not matched. */
int web_route_path(const struct web_route *r, char *buf, size_t len);

/* 1 when s is a valid queue, service or job name. */
int web_name_valid(const char *s);

#endif

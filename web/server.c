/* corral-web on libmicrohttpd (see server.h). Each request is routed on
 * its first call, before any body is read: a refusal (bad path, wrong
 * method, wrong Host, cross-site, no token, too large) answers at once and
 * the body is never looked at. Actions run once the whole body is in. */
#include "server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <microhttpd.h>

#include "assets.h"
#include "corral/log.h"
#include "corral/util.h"
#include "router.h"

struct web_server {
    struct MHD_Daemon *d;
};

/* One request's state between libmicrohttpd's calls. */
struct req {
    struct web_route route;
    char *body; /* POST only, up to WEB_BODY_MAX */
    size_t len;
    int too_big;
};

/* The policy every answer carries: scripts, styles and requests from this
 * origin alone (no inline script or style), never in a frame. */
#define CSP                                                                                        \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

static void add_security_headers(struct MHD_Response *r)
{
    MHD_add_response_header(r, "Content-Security-Policy", CSP);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "Cross-Origin-Opener-Policy", "same-origin");
    MHD_add_response_header(r, "Cross-Origin-Resource-Policy", "same-origin");
}

static struct MHD_Response *make(const void *body, size_t len, enum MHD_ResponseMemoryMode mode,
                                 const char *type, const char *cache)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, mode);
    if (r == NULL)
        return NULL;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", cache);
    add_security_headers(r);
    return r;
}

/* A response whose text is a constant. */
static struct MHD_Response *fixed(const char *text)
{
    return make(text, strlen(text), MHD_RESPMEM_PERSISTENT, "application/json", "no-store");
}

static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r)
{
    if (r == NULL)
        return MHD_NO;
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* A JSON answer; takes body (freed here). */
static enum MHD_Result json(struct MHD_Connection *c, unsigned status, char *body)
{
    struct MHD_Response *r =
        make(body, strlen(body), MHD_RESPMEM_MUST_COPY, "application/json", "no-store");
    free(body);
    return queue(c, status, r);
}

static enum MHD_Result error(struct MHD_Connection *c, unsigned status, const char *msg)
{
    return json(c, status, web_error_json(msg));
}

static const char *header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static int authorized(const struct web_app *app, struct MHD_Connection *c)
{
    if (app->token == NULL)
        return 0;
    const char *tok = web_bearer(header(c, "Authorization"));
    if (tok != NULL)
        return web_token_equal(tok, strlen(tok), app->token, app->token_len);
    const char *sid = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, WEB_COOKIE);
    return web_sessions_check(app->sessions, sid, corral_wall_ms());
}

static enum MHD_Result unauthorized(struct MHD_Connection *c)
{
    struct MHD_Response *r = fixed("{\"error\":\"this action needs the token: Authorization: "
                                   "Bearer TOKEN, or log in\"}");
    if (r != NULL)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"corral\"");
    return queue(c, 401, r);
}

/* The checks made before any body is read; MHD_YES with nothing queued
 * when the request may go on. */
static enum MHD_Result admit(struct web_app *app, struct MHD_Connection *c, struct req *rq,
                             const char *method, int *queued)
{
    *queued = 1;
    const char *host = header(c, "Host");
    if (app->loopback && !web_host_is_loopback(host))
        return error(c, 421,
                     "this server answers to localhost, 127.0.0.1 or [::1] only (Host header)");
    const struct web_route *r = &rq->route;
    if (r->status == 405) {
        struct MHD_Response *resp = fixed("{\"error\":\"method not allowed\"}");
        if (resp != NULL)
            MHD_add_response_header(resp, "Allow", r->allow);
        return queue(c, 405, resp);
    }
    if (r->status != 200) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%s",
                 r->status == 404 ? "not found"
                 : r->why         ? r->why
                                  : "bad request");
        return error(c, (unsigned)r->status, msg);
    }
    if (strcmp(method, "POST") == 0) {
        if (!web_origin_ok(host, header(c, "X-Forwarded-Host"), header(c, "Origin"),
                           header(c, "Sec-Fetch-Site")))
            return error(c, 403, "cross-site request refused (Origin / Sec-Fetch-Site)");
        const char *cl = header(c, "Content-Length");
        if (cl != NULL && strtoull(cl, NULL, 10) > WEB_BODY_MAX)
            return error(c, 413, "the request body is larger than 64 KiB");
        if (r->action && app->token == NULL)
            return error(c, 403, "actions are disabled: corral-web has no [web] token_file");
        if (r->action && !authorized(app, c))
            return unauthorized(c);
    }
    *queued = 0;
    return MHD_YES;
}

/* A response that sends text of v without copying it; v is given back to
 * the snapshot when libmicrohttpd is done with the response. */
static struct MHD_Response *view_text(struct web_view *v, const char *text, size_t len,
                                      const char *type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback_cls(
        len, (void *)text, web_view_release, v);
    if (r == NULL) {
        web_view_release(v);
        return NULL;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    add_security_headers(r);
    return r;
}

static enum MHD_Result serve_view(struct web_app *app, struct MHD_Connection *c, enum web_page page)
{
    struct web_view *v = web_snap_get(app->snap, page == WEB_HISTORY   ? WEB_PART_HISTORY
                                                 : page == WEB_METRICS ? WEB_PART_METRICS
                                                                       : WEB_PART_STATUS);
    if (page == WEB_STATUS && v->ok)
        return queue(c, 200, view_text(v, v->status, v->status_len, "application/json"));
    if (page == WEB_HISTORY)
        return queue(c, 200, view_text(v, v->history, v->history_len, "application/json"));
    if (page == WEB_METRICS)
        return queue(
            c, 200,
            view_text(v, v->metrics, v->metrics_len, "text/plain; version=0.0.4; charset=utf-8"));
    char *body;
    unsigned status = v->ok ? 200 : 503;
    if (page == WEB_STATUS) {
        body = web_error_json(v->error);
    } else { /* WEB_HEALTHZ */
        json_t *o = json_pack("{s:b s:s s:I}", "ok", v->ok, "redis", v->ok ? "ok" : v->error,
                              "age_ms", (json_int_t)(corral_now_ms() - v->mono_ms));
        if (o == NULL)
            o = json_pack("{s:b}", "ok", v->ok);
        body = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
    }
    web_snap_put(app->snap, v);
    return json(c, status, body);
}

static enum MHD_Result serve_asset(struct MHD_Connection *c, const char *name)
{
    struct web_asset a;
    if (web_asset_find(name, &a) < 0)
        return error(c, 404, "not found");
    return queue(c, 200, make(a.data, a.len, MHD_RESPMEM_PERSISTENT, a.type, "no-cache"));
}

static enum MHD_Result login(struct web_app *app, struct MHD_Connection *c, struct req *rq)
{
    if (app->token == NULL)
        return error(c, 403, "actions are disabled: corral-web has no [web] token_file");
    char tok[512];
    long n = web_form_value(rq->body ? rq->body : "", rq->len, "token", tok, sizeof(tok));
    int ok = n > 0 && web_token_equal(tok, (size_t)n, app->token, app->token_len);
    explicit_bzero(tok, sizeof(tok));
    if (!ok)
        return error(c, 401, "wrong token");
    char id[WEB_SESSION_ID_LEN + 1];
    if (web_sessions_create(app->sessions, corral_wall_ms(), id) < 0)
        return error(c, 503, "no random bytes for a session");
    char cookie[256];
    const char *proto = header(c, "X-Forwarded-Proto");
    snprintf(cookie, sizeof(cookie), "%s=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Strict%s",
             WEB_COOKIE, id, WEB_SESSION_TTL_MS / 1000,
             proto != NULL && strcmp(proto, "https") == 0 ? "; Secure" : "");
    explicit_bzero(id, sizeof(id));
    struct MHD_Response *r = fixed("{\"ok\":true}");
    if (r != NULL)
        MHD_add_response_header(r, "Set-Cookie", cookie);
    explicit_bzero(cookie, sizeof(cookie));
    corral_log_info("login", "from=web");
    return queue(c, 200, r);
}

static enum MHD_Result logout(struct web_app *app, struct MHD_Connection *c)
{
    web_sessions_drop(app->sessions, MHD_lookup_connection_value(c, MHD_COOKIE_KIND, WEB_COOKIE));
    struct MHD_Response *r = fixed("{\"ok\":true}");
    if (r != NULL)
        MHD_add_response_header(r, "Set-Cookie",
                                WEB_COOKIE "=; Path=/; Max-Age=0; HttpOnly; "
                                           "SameSite=Strict");
    return queue(c, 200, r);
}

static const char *page_name(enum web_page p)
{
    switch (p) {
    case WEB_PAUSE:
        return "pause";
    case WEB_RESUME:
        return "resume";
    case WEB_DEAD_RETRY:
        return "dead retry";
    case WEB_DEAD_PURGE:
        return "dead purge";
    case WEB_BREAKER_RESET:
        return "breaker reset";
    case WEB_JOB_CANCEL:
        return "cancel";
    default:
        return "?";
    }
}

static enum MHD_Result dispatch(struct web_app *app, struct MHD_Connection *c, struct req *rq)
{
    const struct web_route *r = &rq->route;
    char *body = NULL;
    int status;
    switch (r->page) {
    case WEB_INDEX:
        return serve_asset(c, "index.html");
    case WEB_ASSET:
        return serve_asset(c, r->asset);
    case WEB_STATUS:
    case WEB_HISTORY:
    case WEB_METRICS:
    case WEB_HEALTHZ:
        return serve_view(app, c, r->page);
    case WEB_SESSION: {
        json_t *o = json_pack("{s:b s:b}", "authenticated", authorized(app, c), "actions",
                              app->token != NULL);
        body = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        return json(c, 200, body);
    }
    case WEB_JOB:
        status = web_api_job(app->api, r->queue, r->id, &body);
        return json(c, (unsigned)status, body);
    case WEB_DEAD_LIST:
        status = web_api_dead(app->api, r->queue, &body);
        return json(c, (unsigned)status, body);
    case WEB_LOGIN:
        return login(app, c, rq);
    case WEB_LOGOUT:
        return logout(app, c);
    default:
        status = web_api_action(app->api, r, rq->body ? rq->body : "", rq->len, &body);
        if (status == 200)
            web_snap_invalidate(app->snap); /* the next read shows what changed */
        /* Who did what: the journal keeps the operator's actions. */
        corral_log_notice("action", "what=\"%s\" queue=%s service=%s id=%s status=%d",
                          page_name(r->page), r->queue[0] ? r->queue : "-",
                          r->service[0] ? r->service : "-", r->id[0] ? r->id : "-", status);
        return json(c, (unsigned)status, body);
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls)
{
    struct web_app *app = cls;
    struct req *rq = *req_cls;
    if (rq == NULL) {
        rq = corral_xcalloc(1, sizeof(*rq));
        *req_cls = rq;
        web_route(method, url, &rq->route);
        int queued;
        enum MHD_Result res = admit(app, c, rq, method, &queued);
        if (queued)
            rq->route.page = WEB_NONE;
        return res;
    }
    if (rq->route.page == WEB_NONE)
        return MHD_YES; /* answered already; the body is dropped */
    if (*upload_size > 0) {
        if (strcmp(method, "POST") == 0 && !rq->too_big) {
            if (rq->len + *upload_size > WEB_BODY_MAX) {
                rq->too_big = 1;
            } else {
                if (rq->body == NULL)
                    rq->body = corral_xmalloc(WEB_BODY_MAX + 1);
                memcpy(rq->body + rq->len, upload, *upload_size);
                rq->len += *upload_size;
                rq->body[rq->len] = '\0';
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (rq->too_big)
        return error(c, 413, "the request body is larger than 64 KiB");
    return dispatch(app, c, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct req *rq = *req_cls;
    if (rq == NULL)
        return;
    if (rq->body != NULL)
        explicit_bzero(rq->body, rq->len); /* may hold the token (login) */
    free(rq->body);
    free(rq);
    *req_cls = NULL;
}

/* The path stays as sent (percent-encoded): the router decodes it segment
 * by segment, so that an encoded '/' or NUL is refused, not split on. */
static size_t keep_escaped(void *cls, struct MHD_Connection *c, char *s)
{
    return strlen(s);
}

static void on_log(void *cls, const char *fmt, va_list ap)
{
    char msg[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    corral_log_info("libmicrohttpd", "said=\"%s\"", msg);
}

struct web_server *web_server_start(struct web_app *app, const struct web_listen *where,
                                    struct corral_err *err)
{
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (where->addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, app, MHD_OPTION_EXTERNAL_LOGGER, on_log, NULL,
        MHD_OPTION_SOCK_ADDR, &where->addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)WEB_THREADS,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)WEB_CONNECTIONS_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)WEB_IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)WEB_HEADERS_MAX,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped,
        NULL, MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_END);
    if (d == NULL) {
        corral_err_set(err, CORRAL_ERR_IO,
                       "cannot listen (address in use, or not this host's?): libmicrohttpd "
                       "refused to start");
        return NULL;
    }
    struct web_server *srv = corral_xcalloc(1, sizeof(*srv));
    srv->d = d;
    return srv;
}

int web_server_port(struct web_server *srv)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
    return i ? (int)i->port : 0;
}

void web_server_stop(struct web_server *srv)
{
    if (srv == NULL)
        return;
    MHD_stop_daemon(srv->d);
    free(srv);
}

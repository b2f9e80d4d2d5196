/* The http handler: POSTs payloads to the queue's service with libcurl's
 * multi_socket interface on the worker's libev loop (the pattern of curl's
 * docs/examples/evhiperfifo.c), and classifies the answer. Every text made
 * from an answer -- error, 429 reason, result -- has the credentials the
 * call sent taken out first (redact.h, docs/worker.md "Secrets"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>
#include <dlfcn.h>
#include <jansson.h>

#include "classify.h"
#include "settle.h"
#include "corral/log.h"
#include "corral/redact.h"
#include "corral/util.h"
#include "handler.h"
#include "stream.h"

#define THROTTLE_DEFAULT_MS 1000
#define THROTTLE_CAP_MS     (15 * 60 * 1000)
/* Of an answer that is not 2xx, only the start is kept: enough for the
 * error excerpt and for spotting "insufficient_quota"; an error page larger
 * than max_result is still the error it reports, not an oversized result. */
#define ERROR_BODY_KEEP 4096

/* libcurl is opened at run time, and only by workers that serve an http
 * queue: loading it (and the TLS, LDAP and Kerberos libraries Debian's
 * build pulls in) costs every process about 6 MiB of resident memory, which
 * echo and exec workers have no use for. */
static struct {
    CURLcode (*global_init)(long);
    void (*global_cleanup)(void);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    const char *(*easy_strerror)(CURLcode);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_cleanup)(CURLM *);
    CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
    CURLMcode (*multi_add_handle)(CURLM *, CURL *);
    CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
    CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
    CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
    CURLMsg *(*multi_info_read)(CURLM *, int *);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
} C;

static void *libcurl;

static int load_libcurl(struct corral_err *err)
{
    if (libcurl != NULL)
        return 0;
    libcurl = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (libcurl == NULL)
        return corral_err_set(err, CORRAL_ERR_IO, "cannot load libcurl: %s", dlerror());
    struct {
        const char *name;
        void **slot;
    } syms[] = {
        {"curl_global_init", (void **)&C.global_init},
        {"curl_global_cleanup", (void **)&C.global_cleanup},
        {"curl_easy_init", (void **)&C.easy_init},
        {"curl_easy_cleanup", (void **)&C.easy_cleanup},
        {"curl_easy_setopt", (void **)&C.easy_setopt},
        {"curl_easy_getinfo", (void **)&C.easy_getinfo},
        {"curl_easy_strerror", (void **)&C.easy_strerror},
        {"curl_multi_init", (void **)&C.multi_init},
        {"curl_multi_cleanup", (void **)&C.multi_cleanup},
        {"curl_multi_setopt", (void **)&C.multi_setopt},
        {"curl_multi_add_handle", (void **)&C.multi_add_handle},
        {"curl_multi_remove_handle", (void **)&C.multi_remove_handle},
        {"curl_multi_assign", (void **)&C.multi_assign},
        {"curl_multi_socket_action", (void **)&C.multi_socket_action},
        {"curl_multi_info_read", (void **)&C.multi_info_read},
        {"curl_slist_append", (void **)&C.slist_append},
        {"curl_slist_free_all", (void **)&C.slist_free_all},
    };
    for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        *syms[i].slot = dlsym(libcurl, syms[i].name);
        if (*syms[i].slot == NULL) {
            corral_err_set(err, CORRAL_ERR_IO, "libcurl lacks %s", syms[i].name);
            dlclose(libcurl);
            libcurl = NULL;
            return -1;
        }
    }
    return 0;
}

/* One service of a queue's list and its API key (or NULL). */
struct http_svc {
    const struct corral_service_conf *conf;
    char *api_key;
};

/* A queue's state: its services (the fallback list, docs/breakers.md
 * "Fallback"; each call goes to the one its reserve chose), their API keys,
 * and a libcurl multi handle driven by the loop. */
struct corral_http {
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timer;
    struct http_svc *svcs;
    size_t nsvcs;
    /* The credentials its calls send (the api key, credential headers'
     * values), taken out of every text made from an answer. */
    struct corral_redactor *redactor;
    const char *queue;
    int warned; /* "the service echoes a credential" logged once */
};

/* One socket libcurl asked us to watch. */
struct sock {
    curl_socket_t fd;
    ev_io io;
    struct corral_http *h;
};

struct call {
    struct corral_run *run;
    struct corral_http *h;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    size_t len;
    int too_big;
    const struct http_svc *svc;   /* the service this call goes to */
    long status;                  /* known once the headers are in */
    struct corral_stream *stream; /* a text/event-stream answer (stream.h), else NULL */
    char *sent; /* the payload with [service] model put in, or NULL: the job's as it is */
    struct corral_retry_hints hints;
    struct corral_tally *tally; /* tokens: the estimate, headers, usage (settle.h) */
    char errbuf[CURL_ERROR_SIZE];
};

static void check_done(struct corral_http *h);

static void on_sock_event(struct ev_loop *loop, ev_io *io, int revents)
{
    struct sock *s = io->data;
    struct corral_http *h = s->h;
    int action =
        (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    C.multi_socket_action(h->multi, s->fd, action, &running);
    check_done(h);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct corral_http *h = userp;
    struct sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            ev_io_stop(h->loop, &s->io);
            free(s);
        }
        return 0;
    }
    if (s == NULL) {
        s = corral_xcalloc(1, sizeof(*s));
        s->fd = fd;
        s->h = h;
        ev_init(&s->io, on_sock_event);
        s->io.data = s;
        C.multi_assign(h->multi, fd, s);
    }
    int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    ev_io_stop(h->loop, &s->io);
    ev_io_set(&s->io, fd, events);
    ev_io_start(h->loop, &s->io);
    return 0;
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct corral_http *h = t->data;
    int running;
    C.multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
    struct corral_http *h = userp;
    ev_timer_stop(h->loop, &h->timer);
    if (timeout_ms >= 0) {
        ev_timer_set(&h->timer, (double)timeout_ms / 1000.0, 0.0);
        ev_timer_start(h->loop, &h->timer);
    }
    return 0;
}

static void http_queue_free(void *state);

static int http_queue_init(struct ev_loop *loop, const struct corral_config *cfg,
                           const struct corral_queue_conf *q, void **state, struct corral_err *err)
{
    const struct corral_service_conf *svc = corral_config_service(cfg, q->service);
    if (svc == NULL) {
        corral_err_set(err, CORRAL_ERR_NOTFOUND, "[queue %s] service: no [service %s] section",
                       q->name, q->service ? q->service : "");
        return -1;
    }
    for (size_t i = 1; i < q->services.n; i++)
        if (corral_config_service(cfg, q->services.items[i]) == NULL)
            return corral_err_set(err, CORRAL_ERR_NOTFOUND,
                                  "[queue %s] service: no [service %s] section", q->name,
                                  q->services.items[i]);
    if (load_libcurl(err) < 0)
        return -1;
    /* curl_global_init and _cleanup count: one pair per queue. */
    C.global_init(CURL_GLOBAL_DEFAULT);
    struct corral_http *h = corral_xcalloc(1, sizeof(*h));
    h->loop = loop;
    h->multi = C.multi_init();
    ev_timer_init(&h->timer, on_timer, 0.0, 0.0);
    h->timer.data = h;
    C.multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    C.multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    C.multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    C.multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    *state = h;
    h->queue = q->name;
    h->redactor = corral_redactor_new();
    h->nsvcs = q->services.n > 0 ? q->services.n : 1;
    h->svcs = corral_xcalloc(h->nsvcs, sizeof(*h->svcs));
    for (size_t k = 0; k < h->nsvcs; k++) {
        const struct corral_service_conf *sv =
            k == 0 ? svc : corral_config_service(cfg, q->services.items[k]);
        h->svcs[k].conf = sv;
        if (sv->api_key_file != NULL) {
            h->svcs[k].api_key = corral_read_secret(sv->api_key_file, err);
            if (h->svcs[k].api_key == NULL) {
                corral_err_prefix(err, "[service %s] api_key_file", sv->name);
                http_queue_free(h);
                *state = NULL;
                return -1;
            }
            corral_redactor_add(h->redactor, h->svcs[k].api_key, strlen(h->svcs[k].api_key));
        }
        for (size_t i = 0; i < sv->headers.n; i++)
            corral_redactor_add_header(h->redactor, sv->headers.items[i]);
    }
    return 0;
}

static void http_queue_free(void *state)
{
    struct corral_http *h = state;
    if (h == NULL)
        return;
    ev_timer_stop(h->loop, &h->timer);
    C.multi_cleanup(h->multi);
    corral_redactor_free(h->redactor);
    for (size_t k = 0; k < h->nsvcs; k++)
        if (h->svcs[k].api_key != NULL) {
            explicit_bzero(h->svcs[k].api_key, strlen(h->svcs[k].api_key));
            free(h->svcs[k].api_key);
        }
    free(h->svcs);
    free(h);
    C.global_cleanup();
}

/* Each piece of a streamed answer's text, to the job's Redis Stream; a
 * credential the service quotes in one piece is taken out. */
static char *redact(struct call *c, const char *text, size_t len, unsigned flags, size_t *out_len);
static void on_piece(void *priv, const char *text, size_t len)
{
    struct call *c = priv;
    size_t clean_len = 0;
    char *clean = redact(c, text, len, 0, &clean_len);
    corral_stream_sink_piece(c->run->sink, c->run, clean ? clean : text, clean ? clean_len : len);
    free(clean);
}

/* A 2xx answer of type text/event-stream is read as a stream (stream.h). */
static int start_stream(struct call *c)
{
    char *ct = NULL;
    C.easy_getinfo(c->easy, CURLINFO_CONTENT_TYPE, &ct);
    if (!corral_stream_content_type(ct))
        return 0;
    c->stream = corral_stream_new(c->run->conf->max_result_bytes, on_piece, c);
    return 1;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct call *c = userp;
    size_t n = size * nmemb;
    if (c->status == 0)
        C.easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->status);
    if (c->status < 200 || c->status > 299) {
        size_t take = c->len >= ERROR_BODY_KEEP ? 0 : ERROR_BODY_KEEP - c->len;
        if (take > n)
            take = n;
        if (take > 0) {
            c->body = corral_xrealloc(c->body, c->len + take + 1);
            memcpy(c->body + c->len, data, take);
            c->len += take;
        }
        return n; /* the rest is read and dropped */
    }
    if (c->stream != NULL || (c->len == 0 && start_stream(c)))
        return corral_stream_feed(c->stream, data, n) == 0 ? n : 0; /* 0 aborts the transfer */
    if (c->len + n > (size_t)c->run->conf->max_result_bytes) {
        c->too_big = 1;
        return 0; /* aborts the transfer */
    }
    c->body = corral_xrealloc(c->body, c->len + n + 1);
    memcpy(c->body + c->len, data, n);
    c->len += n;
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    struct call *c = userp;
    corral_retry_hints_header(&c->hints, data, size * nmemb, (int64_t)time(NULL));
    corral_tally_header(c->tally, data, size * nmemb);
    return size * nmemb;
}

/* text[0..len) without the call's credentials: a new string (*out_len)
 * to free, or NULL when text holds none. */
static char *redact(struct call *c, const char *text, size_t len, unsigned flags, size_t *out_len)
{
    char *clean = corral_redact(c->h->redactor, text, len, flags, out_len);
    if (clean != NULL && !c->h->warned) {
        c->h->warned = 1;
        corral_log_warn("a credential was taken out of the service's answer (logged once "
                        "per queue)",
                        "queue=%s service=%s", c->h->queue, c->svc->conf->name);
    }
    return clean;
}

static void call_free(struct call *c)
{
    C.multi_remove_handle(c->h->multi, c->easy);
    C.easy_cleanup(c->easy);
    C.slist_free_all(c->headers);
    corral_tally_free(c->tally);
    corral_stream_free(c->stream);
    free(c->sent);
    free(c->body);
    free(c);
}

static void end_call(struct call *c, CURLcode code)
{
    struct corral_run *run = c->run;
    long status = 0;
    C.easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    char msg[512];
    if (c->stream != NULL) { /* stream.h: the verdict, and the stream's end for followers */
        const char *why = c->errbuf[0] != '\0' ? c->errbuf : C.easy_strerror(code);
        if (code == CURLE_OPERATION_TIMEDOUT)
            snprintf(msg, sizeof(msg), "timed out after %lld ms (%s)",
                     (long long)run->job.timeout_ms, why);
        else
            snprintf(msg, sizeof(msg), "%s", why);
        corral_redact_buf(c->h->redactor, msg, sizeof(msg), CORRAL_REDACT_URLS);
        enum corral_run_end end;
        char *out;
        size_t len;
        corral_stream_end(c->stream, code == CURLE_OK || code == CURLE_WRITE_ERROR ? NULL : msg,
                          &end, &out, &len);
        size_t clean_len = 0;
        char *clean = redact(c, out, len, 0, &clean_len);
        /* The usage the events gave as they came (a cut stream's too). */
        run->settle = corral_tally_settle_usage(c->tally, corral_stream_usage(c->stream));
        corral_stream_sink_end(run->sink, run, end == CORRAL_END_DONE,
                               end == CORRAL_END_DONE ? NULL
                               : clean                ? clean
                                                      : out,
                               clean ? clean_len : len);
        call_free(c);
        run->finish(run, end, clean ? clean : out, clean ? clean_len : len, 0);
        free(clean);
        free(out);
        return;
    }
    /* The call's usage goes with its outcome: an answer's own, else none. */
    run->settle = corral_tally_settle(
        c->tally, code == CURLE_OK && !c->too_big && status >= 200 && status <= 299,
        c->body ? c->body : "", c->len);
    if (c->too_big) {
        snprintf(msg, sizeof(msg), "result larger than max_result (%lld bytes)",
                 (long long)run->conf->max_result_bytes);
        call_free(c);
        run->finish(run, CORRAL_END_PERMANENT, msg, strlen(msg), 0);
        return;
    }
    if (code != CURLE_OK) {
        /* No usable answer: timeouts, refused or dropped connections. The
         * error buffer names host and port (from the config's url), never
         * a header; it is cleaned all the same, with any URL's password. */
        const char *why = c->errbuf[0] != '\0' ? c->errbuf : C.easy_strerror(code);
        if (code == CURLE_OPERATION_TIMEDOUT)
            snprintf(msg, sizeof(msg), "timed out after %lld ms (%s)",
                     (long long)run->job.timeout_ms, why);
        else
            snprintf(msg, sizeof(msg), "%s", why);
        corral_redact_buf(c->h->redactor, msg, sizeof(msg), CORRAL_REDACT_URLS);
        call_free(c);
        run->finish(run, CORRAL_END_RETRY, msg, strlen(msg), 0);
        return;
    }
    const char *body = c->body ? c->body : "";
    enum corral_verdict v = corral_classify(status, body, c->len);
    size_t clean_len = 0;
    if (v == CORRAL_V_DONE) {
        /* A result that quotes the key is kept without it too. */
        char *clean = redact(c, body, c->len, 0, &clean_len);
        run->finish(run, CORRAL_END_DONE, clean ? clean : body, clean ? clean_len : c->len, 0);
        free(clean);
        call_free(c);
        return;
    }
    /* The kept start of an error answer may end inside a credential. */
    char *clean = redact(c, body, c->len, CORRAL_REDACT_CUT | CORRAL_REDACT_URLS, &clean_len);
    corral_describe_http(status, clean ? clean : body, clean ? clean_len : c->len, msg,
                         sizeof(msg));
    free(clean);
    corral_redact_buf(c->h->redactor, msg, sizeof(msg), CORRAL_REDACT_URLS);
    if (v == CORRAL_V_THROTTLED) {
        int64_t delay = corral_retry_hints_delay(&c->hints, THROTTLE_DEFAULT_MS, THROTTLE_CAP_MS);
        /* A token 429 waits for the token window's reset (settle.h). */
        corral_tally_token_429(c->tally, body, c->len, THROTTLE_DEFAULT_MS, THROTTLE_CAP_MS,
                               &delay);
        call_free(c);
        run->finish(run, CORRAL_END_THROTTLE, msg, strlen(msg), delay);
        return;
    }
    if (v == CORRAL_V_QUOTA) {
        call_free(c);
        run->finish(run, CORRAL_END_QUOTA, msg, strlen(msg), THROTTLE_DEFAULT_MS);
        return;
    }
    call_free(c);
    run->finish(run, v == CORRAL_V_RETRY ? CORRAL_END_RETRY : CORRAL_END_PERMANENT, msg,
                strlen(msg), 0);
}

static void check_done(struct corral_http *h)
{
    CURLMsg *m;
    int left;
    while ((m = C.multi_info_read(h->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct call *c = NULL;
        C.easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        end_call(c, m->data.result);
    }
}

/* Removing the handle closes a transfer in progress: its connection is
 * shut, never reused. */
static void http_abort(struct corral_run *run)
{
    call_free(run->state);
    run->state = NULL;
}

/* [service S] model = NAME (docs/configuration.md): the payload's "model"
 * set to NAME, re-encoded (same values, compact); NULL when the payload is
 * not a JSON object, which then goes as it is. */
static char *with_model(const struct corral_run *run, const char *model)
{
    json_t *root = json_loadb(run->job.payload, run->job.payload_len, 0, NULL);
    char *out = NULL;
    if (json_is_object(root) && json_object_set_new(root, "model", json_string(model)) == 0)
        out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return out;
}

/* The service the reserve chose for the job (its reply's service), or the
 * queue's first when it names none of the list. */
static const struct http_svc *chosen(const struct corral_http *h, const struct corral_run *run)
{
    for (size_t k = 1; k < h->nsvcs && run->job.service != NULL; k++)
        if (strcmp(h->svcs[k].conf->name, run->job.service) == 0)
            return &h->svcs[k];
    return &h->svcs[0];
}

static void http_start(struct corral_run *run)
{
    struct corral_http *h = run->queue_state;
    struct call *c = corral_xcalloc(1, sizeof(*c));
    c->svc = chosen(h, run);
    const struct corral_service_conf *svc = c->svc->conf;
    const char *api_key = c->svc->api_key;
    c->run = run;
    c->h = h;
    corral_retry_hints_init(&c->hints);
    c->tally = corral_tally_new(svc, run->job.payload, run->job.payload_len);
    c->easy = C.easy_init();
    c->headers = C.slist_append(NULL, "Content-Type: application/json");
    c->headers = C.slist_append(c->headers, "Expect:");
    for (size_t i = 0; i < svc->headers.n; i++)
        c->headers = C.slist_append(c->headers, svc->headers.items[i]);
    if (api_key != NULL) {
        char *auth = corral_xasprintf("Authorization: Bearer %s", api_key);
        c->headers = C.slist_append(c->headers, auth);
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    CURL *e = c->easy;
    C.easy_setopt(e, CURLOPT_URL, svc->url);
    C.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    C.easy_setopt(e, CURLOPT_POST, 1L);
    c->sent = svc->model != NULL ? with_model(run, svc->model) : NULL;
    C.easy_setopt(e, CURLOPT_POSTFIELDS, c->sent ? c->sent : run->job.payload);
    C.easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                  (curl_off_t)(c->sent ? strlen(c->sent) : run->job.payload_len));
    C.easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    C.easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)svc->connect_timeout_ms);
    C.easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)run->job.timeout_ms);
    C.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    C.easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    C.easy_setopt(e, CURLOPT_WRITEDATA, c);
    C.easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    C.easy_setopt(e, CURLOPT_HEADERDATA, c);
    C.easy_setopt(e, CURLOPT_PRIVATE, c);
    C.easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    C.easy_setopt(e, CURLOPT_USERAGENT, "corral/" CORRAL_VERSION);
    run->state = c;
    C.multi_add_handle(h->multi, e);
}

const struct corral_handler_ops corral_http_handler = {
    .name = "http",
    .queue_init = http_queue_init,
    .start = http_start,
    .abort = http_abort,
    .queue_free = http_queue_free,
};

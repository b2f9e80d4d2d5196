/* The TLS route through stunnel4: its configuration, its process, and the
 * reading of its log into a reason a person can act on (docs/ha.md, "TLS").
 * stunnel's log is prose, and the only place the reason for a refused
 * handshake exists: corral_tls_classify is the one place that reads it,
 * pinned by tests/unit/test_tls.c with lines taken from stunnel 5.68. */
#include "corral/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "corral/util.h"

#define SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
/* stunnel's debug level: 6 (info) logs "TLS connected" and "bound to",
 * which tell a working route from a broken one; a few lines per
 * connection, and corral's connections are long-lived. */
#define LOG_LEVEL  6
#define DETAIL_MAX 256
#define MAX_CONNS  64 /* connections whose log lines are followed at once */

const char *corral_tls_stunnel_program(void)
{
    const char *env = getenv("CORRAL_STUNNEL");
    return env != NULL && env[0] != '\0' ? env : "stunnel4";
}

int corral_tls_url(const char *url)
{
    return url != NULL && strncmp(url, "rediss://", 9) == 0;
}

char *corral_tls_url_plain(const char *url)
{
    if (corral_tls_url(url))
        return corral_xasprintf("redis://%s", url + 9);
    return corral_xstrdup(url);
}

/* Puts the url as written back into a message the parser wrote about its
 * plain form, so that people see what they typed. */
static void unplain_message(struct corral_err *err, const char *plain, const char *url)
{
    char *at = strstr(err->msg, plain);
    if (at == NULL)
        return;
    char buf[CORRAL_ERR_MSG_MAX];
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - err->msg), err->msg, url, at + strlen(plain));
    snprintf(err->msg, sizeof(err->msg), "%s", buf);
}

/* Where the host of a redis[s]:// url starts and ends (after user@). */
static void host_span(const char *url, size_t *start, size_t *end)
{
    size_t i = strncmp(url, "rediss://", 9) == 0 ? 9 : strncmp(url, "redis://", 8) == 0 ? 8 : 0;
    size_t stop = i + strcspn(url + i, "/");
    const char *at = memchr(url + i, '@', stop - i);
    *start = at ? (size_t)(at - url) + 1 : i;
    *end = stop;
}

int corral_tls_parse_url(const char *url, struct corral_redis_addr *out, int *tls, int hostless,
                         struct corral_err *err)
{
    int is_tls = corral_tls_url(url);
    if (tls != NULL)
        *tls = is_tls;
    size_t hs, he;
    host_span(url, &hs, &he);
    int no_host = hostless && hs == he && strncmp(url, "redis", 5) == 0;
    if (!is_tls && !no_host)
        return corral_redis_parse_url(url, out, err);
    /* Parsed as redis://, with a stand-in host where the url has none. */
    size_t skip = is_tls ? 9 : 8;
    char *plain = corral_xasprintf("redis://%.*s%s%s", (int)(hs - skip), url + skip,
                                   no_host ? "sentinel" : "", url + hs);
    int rc = corral_redis_parse_url(plain, out, err);
    if (rc < 0 && err != NULL) {
        if (strstr(err->msg, "expected redis://") != NULL)
            corral_err_set(err, CORRAL_ERR_INVALID,
                           "redis url \"%s\": expected rediss://host[:port][/db]", url);
        else
            unplain_message(err, plain, url);
    } else if (rc == 0 && no_host) {
        free(out->host);
        out->host = NULL;
    }
    free(plain);
    return rc;
}

/* A host that may go into stunnel's configuration and a file name: a DNS
 * name or an IPv4/IPv6 address, nothing else (it may come from a sentinel's
 * reply). */
static int safe_host(const char *h)
{
    size_t n = strlen(h);
    return n >= 1 && n <= 253 && h[0] != '-' && h[0] != '.' &&
           strspn(h, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-:") == n;
}

static int is_ip(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

char *corral_tls_local_path(const char *dir, const char *host, int port)
{
    /* sun_path holds 108 bytes: a long host name becomes its FNV-1a hash. */
    char *p = corral_xasprintf("%s/%s_%d.sock", dir, host, port);
    if (strlen(p) < sizeof(((struct sockaddr_un *)0)->sun_path) && safe_host(host))
        return p;
    free(p);
    uint64_t h = 1469598103934665603ULL;
    for (const char *c = host; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    return corral_xasprintf("%s/h%016llx_%d.sock", dir, (unsigned long long)h, port);
}

int corral_tls_local_address(const struct corral_redis_conf *conf, const char *dir, char **path,
                             struct corral_err *err)
{
    *path = NULL;
    int sentinels = conf->sentinels.n > 0;
    struct corral_redis_addr a;
    int tls;
    if (corral_tls_parse_url(conf->url, &a, &tls, sentinels, err) < 0)
        return -1;
    if (tls && !sentinels)
        *path = corral_tls_local_path(dir, a.host, a.port);
    corral_redis_addr_free(&a);
    return 0;
}

char *corral_tls_default_dir(void)
{
    const char *env = getenv("CORRAL_TLS_DIR");
    if (env != NULL && env[0] != '\0')
        return corral_xstrdup(env);
    const char *rt = getenv("RUNTIME_DIRECTORY");
    if (rt != NULL && rt[0] != '\0') {
        /* systemd may list several, separated by ':': corral's is the first */
        size_t n = strcspn(rt, ":");
        return corral_xasprintf("%.*s/tls", (int)n, rt);
    }
    return corral_xstrdup("/run/corral/tls");
}

const char *corral_tls_fault_name(enum corral_tls_fault f)
{
    switch (f) {
    case CORRAL_TLS_FAULT_NONE:
        return "ok";
    case CORRAL_TLS_FAULT_UNTRUSTED:
        return "untrusted";
    case CORRAL_TLS_FAULT_EXPIRED:
        return "expired";
    case CORRAL_TLS_FAULT_NAME:
        return "name-mismatch";
    case CORRAL_TLS_FAULT_CLIENT_CERT:
        return "client-certificate";
    case CORRAL_TLS_FAULT_NOT_TLS:
        return "not-tls";
    case CORRAL_TLS_FAULT_CONNECT:
        return "connect";
    case CORRAL_TLS_FAULT_HANDSHAKE:
        return "handshake";
    case CORRAL_TLS_FAULT_SETUP:
        return "setup";
    }
    return "unknown";
}

int corral_tls_log_parse(const char *line, struct corral_tls_logline *out)
{
    /* Before its configuration is read (and when that fails) stunnel
     * writes "[!] text" (error), "[.] text" (notice), "[ ] text" (debug). */
    if (line[0] == '[' && line[2] == ']' && line[3] == ' ' && line[1] != '\0') {
        out->level = line[1] == '!' ? 3 : line[1] == '.' ? 5 : 7;
        out->conn = -1;
        out->text = line + 4;
        return 0;
    }
    /* "2026.12.06 14:37:28 LOG5[0]: text" */
    const char *p = strstr(line, " LOG");
    if (p == NULL || p - line != 19 || p[4] < '0' || p[4] > '7' || p[5] != '[')
        return -1;
    out->level = p[4] - '0';
    const char *id = p + 6;
    const char *close = strchr(id, ']');
    if (close == NULL || close[1] != ':' || close[2] != ' ')
        return -1;
    out->conn = -1;
    if (close > id && strspn(id, "0123456789") == (size_t)(close - id) && close - id < 18)
        out->conn = strtol(id, NULL, 10);
    out->text = close + 3;
    return 0;
}

static void copy_detail(char *detail, size_t n, const char *s)
{
    if (detail == NULL || n == 0)
        return;
    size_t len = strcspn(s, "\r\n");
    if (len >= n)
        len = n - 1;
    memcpy(detail, s, len);
    detail[len] = '\0';
}

/* The OpenSSL reason at the end of "...: error:0A000086:SSL routines::certificate
 * verify failed", or the whole text. */
static const char *openssl_reason(const char *text)
{
    const char *e = strstr(text, "error:");
    if (e == NULL)
        return text;
    const char *r = strstr(e, "::");
    if (r != NULL)
        return r + 2;
    const char *last = strrchr(e, ':');
    return last ? last + 1 : text;
}

enum detail_from {
    WHOLE,     /* the whole text */
    REASON,    /* the OpenSSL reason at its end */
    PREVERIFY, /* the X509 reason after "Pre-verification error: " */
    LAST,      /* what follows the last ": " ("Connection refused (111)") */
};

struct pattern {
    const char *words;
    enum corral_tls_fault fault;
    enum detail_from from;
    const char *say; /* the detail in our words, in place of from */
};

/* What stunnel 5.68 with OpenSSL 3.0 writes for each fault (the tests hold
 * a real line of each). Order matters: the first match wins. */
static const struct pattern patterns[] = {
    /* server certificate verification: "CERT: Pre-verification error: <X509 reason>" */
    {"Pre-verification error: certificate has expired", CORRAL_TLS_FAULT_EXPIRED, PREVERIFY, NULL},
    {"Pre-verification error: certificate is not yet valid", CORRAL_TLS_FAULT_EXPIRED, PREVERIFY,
     NULL},
    {"Pre-verification error: CA certificate expired", CORRAL_TLS_FAULT_EXPIRED, PREVERIFY, NULL},
    {"Pre-verification error: hostname mismatch", CORRAL_TLS_FAULT_NAME, PREVERIFY, NULL},
    {"Pre-verification error: IP address mismatch", CORRAL_TLS_FAULT_NAME, PREVERIFY, NULL},
    {"Pre-verification error: unable to get local issuer", CORRAL_TLS_FAULT_UNTRUSTED, PREVERIFY,
     NULL},
    {"Pre-verification error: unable to get issuer", CORRAL_TLS_FAULT_UNTRUSTED, PREVERIFY, NULL},
    {"Pre-verification error: unable to verify the first", CORRAL_TLS_FAULT_UNTRUSTED, PREVERIFY,
     NULL},
    {"Pre-verification error: self-signed certificate", CORRAL_TLS_FAULT_UNTRUSTED, PREVERIFY,
     NULL},
    {"Pre-verification error: self signed certificate", CORRAL_TLS_FAULT_UNTRUSTED, PREVERIFY,
     NULL},
    {"Pre-verification error: ", CORRAL_TLS_FAULT_HANDSHAKE, PREVERIFY, NULL},
    /* checkHost / checkIP */
    {"CERT: Subject checks failed", CORRAL_TLS_FAULT_NAME, WHOLE, NULL},
    /* the server's alerts about our client certificate */
    {"alert certificate required", CORRAL_TLS_FAULT_CLIENT_CERT, REASON, NULL},
    {"alert unknown ca", CORRAL_TLS_FAULT_CLIENT_CERT, REASON, NULL},
    {"alert bad certificate", CORRAL_TLS_FAULT_CLIENT_CERT, REASON, NULL},
    {"alert certificate unknown", CORRAL_TLS_FAULT_CLIENT_CERT, REASON, NULL},
    {"alert certificate expired", CORRAL_TLS_FAULT_CLIENT_CERT, REASON, NULL},
    {"alert certificate revoked", CORRAL_TLS_FAULT_CLIENT_CERT, REASON, NULL},
    {"alert unsupported certificate", CORRAL_TLS_FAULT_CLIENT_CERT, REASON, NULL},
    {"alert access denied", CORRAL_TLS_FAULT_CLIENT_CERT, REASON, NULL},
    /* a port that does not speak TLS: garbage back, or nothing at all */
    {"wrong version number", CORRAL_TLS_FAULT_NOT_TLS, REASON, NULL},
    {"packet length too long", CORRAL_TLS_FAULT_NOT_TLS, REASON, NULL},
    {"ssl_start: s_poll_wait: TIMEOUTbusy exceeded", CORRAL_TLS_FAULT_NOT_TLS, WHOLE,
     "no answer to the TLS handshake in 10 s"},
    /* no TCP connection */
    {"s_connect: connect ", CORRAL_TLS_FAULT_CONNECT, LAST, NULL},
    {"s_connect: s_poll_wait", CORRAL_TLS_FAULT_CONNECT, LAST, NULL},
    {"Error resolving ", CORRAL_TLS_FAULT_CONNECT, WHOLE, NULL},
    /* stunnel refused its configuration (checked files that it cannot use) */
    {"SSL_CTX_use_certificate_chain_file: ", CORRAL_TLS_FAULT_SETUP, REASON, NULL},
    {"SSL_CTX_use_PrivateKey", CORRAL_TLS_FAULT_SETUP, REASON, NULL},
    {"SSL_CTX_check_private_key", CORRAL_TLS_FAULT_SETUP, REASON, NULL},
    {"Error loading CA", CORRAL_TLS_FAULT_SETUP, WHOLE, NULL},
    {"Configuration failed", CORRAL_TLS_FAULT_SETUP, WHOLE, NULL},
    /* any other failed handshake */
    {"SSL_connect: ", CORRAL_TLS_FAULT_HANDSHAKE, REASON, NULL},
};

enum corral_tls_fault corral_tls_classify(const char *text, unsigned *flags, char *detail, size_t n)
{
    if (flags != NULL)
        *flags = 0;
    if (detail != NULL && n > 0)
        detail[0] = '\0';
    if (strncmp(text, "TLS connected", 13) == 0) {
        if (flags != NULL)
            *flags = CORRAL_TLS_LINE_OK;
        return CORRAL_TLS_FAULT_NONE;
    }
    /* After a handshake the server closed before reading: in TLS 1.3 that
     * is how a refused client certificate often shows (the alert lost to
     * the race with our first write) -- but also a server that died. Weak:
     * the caller keeps it only if the server never sent a byte. */
    if (strncmp(text, "TLS socket closed (SSL_write)", 29) == 0) {
        if (flags != NULL)
            *flags = CORRAL_TLS_LINE_WEAK;
        copy_detail(detail, n, "the server closed the connection before reading from it");
        return CORRAL_TLS_FAULT_CLIENT_CERT;
    }
    for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
        const char *at = strstr(text, patterns[i].words);
        if (at == NULL)
            continue;
        const char *d = text;
        if (patterns[i].from == REASON) {
            d = openssl_reason(text);
        } else if (patterns[i].from == PREVERIFY) {
            d = at + 24; /* the X509 reason after "Pre-verification error: " */
        } else if (patterns[i].from == LAST) {
            const char *colon = NULL;
            for (const char *c = strstr(text, ": "); c != NULL; c = strstr(c + 2, ": "))
                colon = c;
            d = colon ? colon + 2 : text;
        }
        copy_detail(detail, n, patterns[i].say ? patterns[i].say : d);
        return patterns[i].fault;
    }
    return CORRAL_TLS_FAULT_NONE;
}

int corral_tls_fault_error(enum corral_tls_fault f, const char *detail,
                           const struct corral_redis_conf *conf, const char *host, int port,
                           struct corral_err *err)
{
    const char *ca = conf->tls_ca_file ? conf->tls_ca_file : SYSTEM_CA_FILE " (the system's)";
    const char *name = conf->tls_server_name ? conf->tls_server_name : host;
    const char *d = detail != NULL && detail[0] ? detail : "";
    const char *sep = d[0] ? ": " : "";
    switch (f) {
    case CORRAL_TLS_FAULT_NONE:
        return 0;
    case CORRAL_TLS_FAULT_UNTRUSTED:
        return corral_err_set(err, CORRAL_ERR_REDIS,
                              "TLS to %s:%d refused: the server's certificate is not signed by a "
                              "CA in [redis] tls_ca_file = %s%s%s",
                              host, port, ca, sep, d);
    case CORRAL_TLS_FAULT_EXPIRED:
        return corral_err_set(err, CORRAL_ERR_REDIS,
                              "TLS to %s:%d refused: the server's certificate is out of date%s%s "
                              "(check the server's certificate and this host's clock)",
                              host, port, sep, d);
    case CORRAL_TLS_FAULT_NAME:
        return corral_err_set(err, CORRAL_ERR_REDIS,
                              "TLS to %s:%d refused: the server's certificate is not for %s%s "
                              "(set [redis] tls_server_name to a name it carries)",
                              host, port, name,
                              conf->tls_server_name ? " ([redis] tls_server_name)" : "");
    case CORRAL_TLS_FAULT_CLIENT_CERT:
        if (conf->tls_cert_file == NULL)
            return corral_err_set(err, CORRAL_ERR_REDIS,
                                  "TLS to %s:%d refused by the server: it requires a client "
                                  "certificate (set [redis] tls_cert_file and tls_key_file)%s%s",
                                  host, port, sep, d);
        return corral_err_set(err, CORRAL_ERR_REDIS,
                              "TLS to %s:%d refused by the server: it does not accept the client "
                              "certificate in [redis] tls_cert_file = %s%s%s",
                              host, port, conf->tls_cert_file, sep, d);
    case CORRAL_TLS_FAULT_NOT_TLS:
        return corral_err_set(err, CORRAL_ERR_REDIS,
                              "TLS to %s:%d failed: the server does not answer in TLS (a "
                              "plaintext port? its url would be redis://)%s%s",
                              host, port, sep, d);
    case CORRAL_TLS_FAULT_CONNECT:
        return corral_err_set(err, CORRAL_ERR_REDIS, "cannot reach %s:%d%s%s", host, port, sep, d);
    case CORRAL_TLS_FAULT_HANDSHAKE:
        return corral_err_set(err, CORRAL_ERR_REDIS, "TLS handshake with %s:%d failed%s%s", host,
                              port, sep, d);
    case CORRAL_TLS_FAULT_SETUP:
        return corral_err_set(err, CORRAL_ERR_REDIS,
                              "the TLS proxy (%s) refused its configuration%s%s (check [redis] "
                              "tls_cert_file, tls_key_file and tls_ca_file)",
                              corral_tls_stunnel_program(), sep, d);
    }
    return corral_err_set(err, CORRAL_ERR_REDIS, "TLS to %s:%d failed", host, port);
}

/* The service name of a route in stunnel's configuration and log: the
 * socket's file name without ".sock". Caller frees. */
static char *service_name(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".sock") == 0)
        n -= 5;
    return corral_xstrndup(base, n);
}

char *corral_tls_stunnel_conf(const struct corral_redis_conf *conf, const char *dir,
                              const struct corral_hostport *routes, size_t n, int log_level)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        abort(); /* only on OOM */
    fprintf(f, "; written by corral for its TLS routes to Redis (docs/ha.md): do not edit\n"
               "foreground = yes\npid =\nsyslog = no\n");
    fprintf(f, "debug = %d\n", log_level);
    for (size_t i = 0; i < n; i++) {
        const char *host = routes[i].host;
        char *path = corral_tls_local_path(dir, host, routes[i].port);
        char *svc = service_name(path);
        int ip = is_ip(host);
        const char *name = conf->tls_server_name ? conf->tls_server_name : ip ? NULL : host;
        fprintf(f, "\n[%s]\nclient = yes\naccept = %s\nconnect = %s:%d\n", svc, path, host,
                routes[i].port);
        /* delay: resolve the name at each connection, so a DNS name moved
         * to a new master is followed on the next reconnect. */
        fprintf(f, "delay = yes\nsslVersionMin = TLSv1.2\nverifyChain = yes\nCAfile = %s\n",
                conf->tls_ca_file ? conf->tls_ca_file : SYSTEM_CA_FILE);
        if (name != NULL)
            fprintf(f, "checkHost = %s\nsni = %s\n", name, name);
        else
            fprintf(f, "checkIP = %s\nsni =\n", host); /* SNI carries names only */
        if (conf->tls_cert_file != NULL)
            fprintf(f, "cert = %s\nkey = %s\n", conf->tls_cert_file,
                    conf->tls_key_file ? conf->tls_key_file : conf->tls_cert_file);
        /* A handshake that gets no answer (a plaintext port) fails in 10 s,
         * not stunnel's default 300; keepalive finds a vanished master. */
        fprintf(f, "TIMEOUTconnect = 5\nTIMEOUTbusy = 10\nTIMEOUTclose = 0\n"
                   "socket = r:SO_KEEPALIVE=1\n");
        free(svc);
        free(path);
    }
    fclose(f);
    return text;
}

/* --- the process ---------------------------------------------------------- */

struct route {
    struct corral_hostport hp;
    char *path;
    char *service;
    int bound; /* stunnel said "bound to" since its last (re)load */
    enum corral_tls_fault fault;
    char detail[DETAIL_MAX];
    int64_t fault_ms;
};

struct conn {
    long id;
    int route;                     /* -1: not known yet */
    int committed;                 /* its fault is recorded: later lines only repeat it */
    enum corral_tls_fault pending; /* a weak fault, kept if the server never answered */
    char detail[DETAIL_MAX];
};

struct corral_tls_proxy {
    struct corral_redis_conf tconf; /* the tls_* keys, copied */
    char *dir;
    char *conf_path;
    int own_dir; /* a private temp dir: removed at free */
    struct route *routes;
    size_t nroutes;
    pid_t pid;
    int log_fd;
    char buf[4096];
    size_t len;
    struct conn conns[MAX_CONNS];
    size_t next_conn;
    enum corral_tls_fault setup_fault;
    char setup_detail[DETAIL_MAX];
    int64_t setup_ms;
};

static char *dup_or_null(const char *s)
{
    return s ? corral_xstrdup(s) : NULL;
}

static int readable(const char *key, const char *path, struct corral_err *err)
{
    if (path == NULL || access(path, R_OK) == 0)
        return 0;
    return corral_err_set(err, CORRAL_ERR_IO, "[redis] %s = %s: cannot read it: %s", key, path,
                          strerror(errno));
}

struct corral_tls_proxy *corral_tls_proxy_new(const struct corral_redis_conf *conf, const char *dir,
                                              struct corral_err *err)
{
    if (readable("tls_ca_file", conf->tls_ca_file, err) < 0 ||
        readable("tls_cert_file", conf->tls_cert_file, err) < 0 ||
        readable("tls_key_file", conf->tls_key_file, err) < 0)
        return NULL;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        corral_err_set(err, CORRAL_ERR_IO, "TLS proxy dir %s: %s", dir, strerror(errno));
        return NULL;
    }
    struct corral_tls_proxy *p = corral_xcalloc(1, sizeof(*p));
    p->tconf.tls_ca_file = dup_or_null(conf->tls_ca_file);
    p->tconf.tls_cert_file = dup_or_null(conf->tls_cert_file);
    p->tconf.tls_key_file = dup_or_null(conf->tls_key_file);
    p->tconf.tls_server_name = dup_or_null(conf->tls_server_name);
    p->dir = corral_xstrdup(dir);
    p->conf_path = corral_xasprintf("%s/stunnel.conf", dir);
    p->pid = -1;
    p->log_fd = -1;
    for (size_t i = 0; i < MAX_CONNS; i++)
        p->conns[i].id = -1;
    return p;
}

const char *corral_tls_proxy_dir(const struct corral_tls_proxy *p)
{
    return p->dir;
}

static struct route *find_route(const struct corral_tls_proxy *p, const char *host, int port)
{
    for (size_t i = 0; i < p->nroutes; i++)
        if (p->routes[i].hp.port == port && strcmp(p->routes[i].hp.host, host) == 0)
            return &p->routes[i];
    return NULL;
}

int corral_tls_proxy_route(struct corral_tls_proxy *p, const char *host, int port)
{
    if (!safe_host(host) || port < 1 || port > 65535)
        return -1;
    if (find_route(p, host, port) != NULL)
        return 0;
    p->routes = corral_xrealloc(p->routes, sizeof(*p->routes) * (p->nroutes + 1));
    struct route *r = &p->routes[p->nroutes++];
    memset(r, 0, sizeof(*r));
    r->hp.host = corral_xstrdup(host);
    r->hp.port = port;
    r->path = corral_tls_local_path(p->dir, host, port);
    r->service = service_name(r->path);
    return 1;
}

size_t corral_tls_proxy_nroutes(const struct corral_tls_proxy *p)
{
    return p->nroutes;
}

static int write_conf(struct corral_tls_proxy *p, struct corral_err *err)
{
    struct corral_hostport *hps = corral_xcalloc(p->nroutes, sizeof(*hps));
    for (size_t i = 0; i < p->nroutes; i++)
        hps[i] = p->routes[i].hp;
    char *text = corral_tls_stunnel_conf(&p->tconf, p->dir, hps, p->nroutes, LOG_LEVEL);
    free(hps);
    char *tmp = corral_xasprintf("%s.tmp", p->conf_path);
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t n = strlen(text);
    if (fd < 0 || write(fd, text, n) != (ssize_t)n || close(fd) < 0 ||
        rename(tmp, p->conf_path) < 0) {
        rc = corral_err_set(err, CORRAL_ERR_IO, "TLS proxy: cannot write %s: %s", p->conf_path,
                            strerror(errno));
        if (fd >= 0)
            close(fd);
        unlink(tmp);
    }
    free(tmp);
    free(text);
    for (size_t i = 0; i < p->nroutes; i++)
        p->routes[i].bound = 0;
    return rc;
}

static void child_exec(int out, const char *conf_path, pid_t parent)
{
    /* The proxy lives no longer than the program it serves: a corrald or
     * corralctl killed outright leaves no stunnel behind. */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
        _exit(127);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
        _exit(127);
    long maxfd = sysconf(_SC_OPEN_MAX);
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3U, ~0U, 0) != 0)
#endif
        for (long i = 3; i < (maxfd > 0 ? maxfd : 1024); i++)
            close((int)i);
    const char *prog = corral_tls_stunnel_program();
    execlp(prog, prog, conf_path, (char *)NULL);
    dprintf(2, "[!] corral: cannot exec %s: %s\n", prog, strerror(errno));
    _exit(127);
}

int corral_tls_proxy_spawn(struct corral_tls_proxy *p, struct corral_err *err)
{
    if (p->pid > 0)
        return corral_err_set(err, CORRAL_ERR_INVALID, "TLS proxy: already running");
    if (p->nroutes == 0)
        return corral_err_set(err, CORRAL_ERR_INVALID, "TLS proxy: no route to serve");
    for (size_t i = 0; i < p->nroutes; i++)
        unlink(p->routes[i].path); /* left by a stunnel that was killed */
    if (write_conf(p, err) < 0)
        return -1;
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return corral_err_set(err, CORRAL_ERR_IO, "TLS proxy: pipe: %s", strerror(errno));
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        child_exec(pfd[1], p->conf_path, parent);
    }
    int saved = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(pfd[1]);
    if (pid < 0) {
        close(pfd[0]);
        return corral_err_set(err, CORRAL_ERR_IO, "TLS proxy: fork: %s", strerror(saved));
    }
    fcntl(pfd[0], F_SETFL, fcntl(pfd[0], F_GETFL) | O_NONBLOCK);
    if (p->log_fd >= 0)
        close(p->log_fd);
    p->log_fd = pfd[0];
    p->len = 0;
    p->pid = pid;
    p->setup_fault = CORRAL_TLS_FAULT_NONE;
    p->setup_detail[0] = '\0';
    for (size_t i = 0; i < MAX_CONNS; i++)
        p->conns[i].id = -1;
    return 0;
}

int corral_tls_proxy_reload(struct corral_tls_proxy *p, struct corral_err *err)
{
    if (write_conf(p, err) < 0)
        return -1;
    if (p->pid > 0 && kill(p->pid, SIGHUP) < 0)
        return corral_err_set(err, CORRAL_ERR_IO, "TLS proxy: SIGHUP to %d: %s", (int)p->pid,
                              strerror(errno));
    return 0;
}

int corral_tls_proxy_bound(const struct corral_tls_proxy *p)
{
    if (p->pid <= 0 || p->nroutes == 0)
        return 0;
    for (size_t i = 0; i < p->nroutes; i++)
        if (!p->routes[i].bound)
            return 0;
    return 1;
}

int corral_tls_proxy_log_fd(const struct corral_tls_proxy *p)
{
    return p->log_fd;
}

pid_t corral_tls_proxy_pid(const struct corral_tls_proxy *p)
{
    return p->pid;
}

static struct conn *conn_of(struct corral_tls_proxy *p, long id)
{
    for (size_t i = 0; i < MAX_CONNS; i++)
        if (p->conns[i].id == id)
            return &p->conns[i];
    return NULL;
}

static struct conn *conn_add(struct corral_tls_proxy *p, long id)
{
    struct conn *c = &p->conns[p->next_conn];
    p->next_conn = (p->next_conn + 1) % MAX_CONNS;
    memset(c, 0, sizeof(*c));
    c->id = id;
    c->route = -1;
    return c;
}

static void set_fault(struct route *r, enum corral_tls_fault f, const char *detail)
{
    r->fault = f;
    snprintf(r->detail, sizeof(r->detail), "%s", detail);
    r->fault_ms = corral_now_ms();
}

/* "Service [NAME] <rest>": the route called NAME, and rest. */
static struct route *service_line(struct corral_tls_proxy *p, const char *text, const char **rest)
{
    if (strncmp(text, "Service [", 9) != 0)
        return NULL;
    const char *name = text + 9;
    const char *close = strchr(name, ']');
    if (close == NULL)
        return NULL;
    *rest = close + 1;
    for (size_t i = 0; i < p->nroutes; i++)
        if (strlen(p->routes[i].service) == (size_t)(close - name) &&
            strncmp(p->routes[i].service, name, (size_t)(close - name)) == 0)
            return &p->routes[i];
    return NULL;
}

static void handle_line(struct corral_tls_proxy *p, const struct corral_tls_logline *l)
{
    const char *rest;
    struct route *svc = service_line(p, l->text, &rest);
    if (l->conn < 0) {
        if (svc != NULL && strstr(rest, " bound to ") != NULL)
            svc->bound = 1;
        char detail[DETAIL_MAX];
        unsigned flags;
        enum corral_tls_fault f = corral_tls_classify(l->text, &flags, detail, sizeof(detail));
        if (f == CORRAL_TLS_FAULT_SETUP) {
            /* the first line says why; "Configuration failed" follows it */
            if (p->setup_fault == CORRAL_TLS_FAULT_NONE || p->setup_detail[0] == '\0' ||
                strcmp(p->setup_detail, "Configuration failed") == 0)
                snprintf(p->setup_detail, sizeof(p->setup_detail), "%s", detail);
            p->setup_fault = f;
            p->setup_ms = corral_now_ms();
        } else if (strncmp(l->text, "Configuration successful", 24) == 0) {
            p->setup_fault = CORRAL_TLS_FAULT_NONE;
            p->setup_detail[0] = '\0';
        }
        return;
    }
    struct conn *c = conn_of(p, l->conn);
    if (svc != NULL && strstr(rest, "accepted connection") != NULL) {
        c = conn_add(p, l->conn);
        c->route = (int)(svc - p->routes);
        return;
    }
    if (c == NULL || c->route < 0)
        return;
    struct route *r = &p->routes[c->route];
    long to_socket;
    const char *bytes = strstr(l->text, " byte(s) sent to TLS, ");
    if (strncmp(l->text, "Connection ", 11) == 0 && bytes != NULL &&
        sscanf(bytes + 22, "%ld byte(s) sent to socket", &to_socket) == 1) {
        if (c->pending != CORRAL_TLS_FAULT_NONE && to_socket == 0)
            set_fault(r, c->pending, c->detail);
        c->id = -1;
        return;
    }
    char detail[DETAIL_MAX];
    unsigned flags;
    enum corral_tls_fault f = corral_tls_classify(l->text, &flags, detail, sizeof(detail));
    if (flags & CORRAL_TLS_LINE_OK) {
        set_fault(r, CORRAL_TLS_FAULT_NONE, "");
    } else if (flags & CORRAL_TLS_LINE_WEAK) {
        if (!c->committed) {
            c->pending = f;
            snprintf(c->detail, sizeof(c->detail), "%s", detail);
        }
    } else if (f != CORRAL_TLS_FAULT_NONE && !c->committed) {
        /* a connection's first fault is its cause; the lines after it
         * ("certificate verify failed") only repeat it */
        c->committed = 1;
        c->pending = CORRAL_TLS_FAULT_NONE;
        set_fault(r, f, detail);
    }
}

int corral_tls_proxy_read_log(struct corral_tls_proxy *p,
                              void (*on_line)(void *data, const struct corral_tls_logline *l),
                              void *data)
{
    if (p->log_fd < 0)
        return -1;
    int lines = 0;
    for (;;) {
        ssize_t n = read(p->log_fd, p->buf + p->len, sizeof(p->buf) - 1 - p->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return lines; /* EAGAIN: all read */
        if (n == 0) {
            close(p->log_fd);
            p->log_fd = -1;
            return lines > 0 ? lines : -1;
        }
        p->len += (size_t)n;
        p->buf[p->len] = '\0';
        char *start = p->buf, *nl;
        while ((nl = strchr(start, '\n')) != NULL) {
            *nl = '\0';
            struct corral_tls_logline l;
            if (corral_tls_log_parse(start, &l) == 0) {
                handle_line(p, &l);
                if (on_line != NULL)
                    on_line(data, &l);
            }
            lines++;
            start = nl + 1;
        }
        size_t left = p->len - (size_t)(start - p->buf);
        if (left == sizeof(p->buf) - 1)
            left = 0; /* one line longer than the buffer: dropped */
        memmove(p->buf, start, left);
        p->len = left;
    }
}

enum corral_tls_fault corral_tls_proxy_fault(const struct corral_tls_proxy *p, const char *host,
                                             int port, struct corral_err *err)
{
    if (p->setup_fault != CORRAL_TLS_FAULT_NONE) {
        corral_tls_fault_error(p->setup_fault, p->setup_detail, &p->tconf, host, port, err);
        return p->setup_fault;
    }
    const struct route *r = find_route(p, host, port);
    if (r == NULL || r->fault == CORRAL_TLS_FAULT_NONE)
        return CORRAL_TLS_FAULT_NONE;
    corral_tls_fault_error(r->fault, r->detail, &p->tconf, host, port, err);
    return r->fault;
}

enum corral_tls_fault corral_tls_proxy_last_fault(const struct corral_tls_proxy *p,
                                                  struct corral_err *err)
{
    if (p->setup_fault != CORRAL_TLS_FAULT_NONE) {
        corral_tls_fault_error(p->setup_fault, p->setup_detail, &p->tconf, "", 0, err);
        return p->setup_fault;
    }
    const struct route *last = NULL;
    for (size_t i = 0; i < p->nroutes; i++) {
        const struct route *r = &p->routes[i];
        if (r->fault != CORRAL_TLS_FAULT_NONE && (last == NULL || r->fault_ms > last->fault_ms))
            last = r;
    }
    if (last == NULL)
        return CORRAL_TLS_FAULT_NONE;
    corral_tls_fault_error(last->fault, last->detail, &p->tconf, last->hp.host, last->hp.port, err);
    return last->fault;
}

void corral_tls_proxy_exited(struct corral_tls_proxy *p, int status)
{
    (void)status;
    p->pid = -1;
    for (size_t i = 0; i < p->nroutes; i++)
        p->routes[i].bound = 0;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

void corral_tls_proxy_stop(struct corral_tls_proxy *p, int wait)
{
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        if (wait) {
            int status;
            int64_t deadline = corral_now_ms() + 5000;
            pid_t got;
            while ((got = waitpid(p->pid, &status, WNOHANG)) == 0 && corral_now_ms() < deadline)
                sleep_ms(5);
            if (got == 0) {
                kill(p->pid, SIGKILL);
                waitpid(p->pid, &status, 0);
            }
            corral_tls_proxy_exited(p, status);
        }
    }
    if (p->log_fd >= 0) {
        close(p->log_fd);
        p->log_fd = -1;
    }
}

void corral_tls_proxy_free(struct corral_tls_proxy *p)
{
    if (p == NULL)
        return;
    corral_tls_proxy_stop(p, 1);
    for (size_t i = 0; i < p->nroutes; i++) {
        unlink(p->routes[i].path);
        free(p->routes[i].path);
        free(p->routes[i].service);
        corral_hostport_free(&p->routes[i].hp);
    }
    free(p->routes);
    unlink(p->conf_path);
    if (p->own_dir)
        rmdir(p->dir);
    free(p->tconf.tls_ca_file);
    free(p->tconf.tls_cert_file);
    free(p->tconf.tls_key_file);
    free(p->tconf.tls_server_name);
    free(p->conf_path);
    free(p->dir);
    free(p);
}

/* Reaps p's stunnel if it has exited (the blocking programs' own reaping). */
static int reaped(struct corral_tls_proxy *p)
{
    int status;
    if (p->pid > 0 && waitpid(p->pid, &status, WNOHANG) == p->pid) {
        corral_tls_proxy_exited(p, status);
        return 1;
    }
    return p->pid <= 0;
}

int corral_tls_proxy_wait_ready(struct corral_tls_proxy *p, int64_t timeout_ms,
                                struct corral_err *err)
{
    int64_t deadline = corral_now_ms() + timeout_ms;
    for (;;) {
        corral_tls_proxy_read_log(p, NULL, NULL);
        if (corral_tls_proxy_bound(p))
            return 0;
        if (reaped(p)) {
            corral_tls_proxy_read_log(p, NULL, NULL); /* its last words */
            if (p->setup_fault != CORRAL_TLS_FAULT_NONE)
                return corral_tls_fault_error(p->setup_fault, p->setup_detail, &p->tconf, "", 0,
                                              err);
            return corral_err_set(err, CORRAL_ERR_IO,
                                  "the TLS proxy (%s) exited at start (is stunnel4 installed? "
                                  "make deps)",
                                  corral_tls_stunnel_program());
        }
        if (corral_now_ms() >= deadline)
            return corral_err_set(err, CORRAL_ERR_TIMEOUT,
                                  "the TLS proxy (%s) did not listen on %s within %lld ms",
                                  corral_tls_stunnel_program(), p->dir, (long long)timeout_ms);
        struct pollfd pfd = {.fd = p->log_fd, .events = POLLIN};
        if (p->log_fd >= 0)
            poll(&pfd, 1, 10);
        else
            sleep_ms(10);
    }
}

struct corral_tls_proxy *corral_tls_proxy_private(const struct corral_redis_conf *conf,
                                                  const struct corral_hostport *hosts, size_t n,
                                                  int64_t timeout_ms, struct corral_err *err)
{
    const char *tmp = getenv("TMPDIR");
    char *templ = corral_xasprintf("%s/corral-tls-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(templ) == NULL) {
        corral_err_set(err, CORRAL_ERR_IO, "TLS proxy: cannot make a dir %s: %s", templ,
                       strerror(errno));
        free(templ);
        return NULL;
    }
    struct corral_tls_proxy *p = corral_tls_proxy_new(conf, templ, err);
    if (p == NULL) {
        rmdir(templ);
        free(templ);
        return NULL;
    }
    p->own_dir = 1;
    free(templ);
    for (size_t i = 0; i < n; i++) {
        if (corral_tls_proxy_route(p, hosts[i].host, hosts[i].port) < 0) {
            corral_err_set(err, CORRAL_ERR_INVALID, "TLS proxy: \"%s\" is not a host name",
                           hosts[i].host);
            corral_tls_proxy_free(p);
            return NULL;
        }
    }
    if (corral_tls_proxy_spawn(p, err) < 0 || corral_tls_proxy_wait_ready(p, timeout_ms, err) < 0) {
        corral_tls_proxy_free(p);
        return NULL;
    }
    return p;
}

int corral_tls_proxy_ensure(void *proxy, const char *host, int port, struct corral_err *err)
{
    struct corral_tls_proxy *p = proxy;
    int added = corral_tls_proxy_route(p, host, port);
    if (added < 0)
        return corral_err_set(err, CORRAL_ERR_INVALID, "TLS proxy: \"%s\" is not a host name",
                              host);
    if (added == 0)
        return 0;
    if (corral_tls_proxy_reload(p, err) < 0)
        return -1;
    return corral_tls_proxy_wait_ready(p, 5000, err);
}

int corral_tls_proxy_probe(struct corral_tls_proxy *p, const char *host, int port,
                           int64_t timeout_ms, struct corral_err *err)
{
    struct route *r = find_route(p, host, port);
    if (r == NULL)
        return corral_err_set(err, CORRAL_ERR_INVALID, "TLS proxy: no route to %s:%d", host, port);
    int64_t start = corral_now_ms(), deadline = start + timeout_ms;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectUnixWithTimeout(r->path, tv);
    redisReply *reply = NULL;
    if (c != NULL && !c->err) {
        redisSetTimeout(c, tv);
        reply = redisCommand(c, "PING");
    }
    /* Any reply -- PONG, or NOAUTH before AUTH -- came over verified TLS. */
    int ok = reply != NULL;
    char why[128];
    snprintf(why, sizeof(why), "%s", c == NULL ? "out of memory" : c->errstr);
    freeReplyObject(reply);
    redisFree(c);
    if (ok)
        return 0;
    /* stunnel writes why the connection ended a moment after it ends. */
    for (;;) {
        corral_tls_proxy_read_log(p, NULL, NULL);
        if (p->setup_fault != CORRAL_TLS_FAULT_NONE ||
            (r->fault != CORRAL_TLS_FAULT_NONE && r->fault_ms >= start))
            break;
        if (corral_now_ms() >= deadline || p->log_fd < 0)
            return corral_err_set(err, CORRAL_ERR_REDIS,
                                  "%s:%d through the TLS proxy: %s (the proxy gave no reason)",
                                  host, port, why[0] ? why : "connection closed");
        struct pollfd pfd = {.fd = p->log_fd, .events = POLLIN};
        poll(&pfd, 1, 10);
    }
    corral_tls_proxy_fault(p, host, port, err);
    return -1;
}

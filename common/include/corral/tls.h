/* TLS to Redis through stunnel4 (docs/ha.md, "TLS"). Debian 12's hiredis
 * has no TLS and corral writes none of its own: for a rediss:// url each
 * TCP address corral must reach (the master, the sentinels, the replicas
 * that may become master) is a route -- a unix socket under a private dir
 * that a stunnel client process listens on and forwards over verified TLS.
 * Programs connect to corral_tls_local_path(dir, host, port) instead of
 * host:port and speak plain RESP to it.
 *
 * This module writes stunnel's configuration (verification always on),
 * starts and stops the process, and reads its log: a refused handshake only
 * shows as a closed connection to the program, so the reason -- untrusted
 * CA, expired certificate, name mismatch, client certificate refused --
 * comes from stunnel's output, classified by corral_tls_classify. corrald
 * supervises one proxy per host (supervisor/tlsproxy.h); a program without
 * one (corralctl on another host) starts its own with
 * corral_tls_proxy_private. */
#ifndef CORRAL_TLS_H
#define CORRAL_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "corral/config.h"
#include "corral/err.h"
#include "corral/redis.h"
#include "corral/sentinel.h"

/* The stunnel program: $CORRAL_STUNNEL when set, else "stunnel4", looked
 * up in PATH. */
const char *corral_tls_stunnel_program(void);

/* 1 when url's scheme is rediss://. */
int corral_tls_url(const char *url);
/* url with rediss:// read as redis://, for the address parser and the
 * handshake, which need only user, host, port and db. Caller frees. */
char *corral_tls_url_plain(const char *url);
/* corral_redis_parse_url for redis://, unix:// and rediss:// urls; *tls
 * (may be NULL) tells whether it was rediss. With hostless set, a url
 * without a host ("rediss:///0", "redis://user@/2": with sentinels the url
 * gives only scheme, user and db) is accepted and out->host left NULL.
 * Errors name url as given. */
int corral_tls_parse_url(const char *url, struct corral_redis_addr *out, int *tls, int hostless,
                         struct corral_err *err);

/* The local end of the route to host:port: "<dir>/<host>_<port>.sock".
 * Caller frees. */
char *corral_tls_local_path(const char *dir, const char *host, int port);
/* Where a program connects for conf's url: for rediss://host:port without
 * sentinels, the local socket of that route under dir (*path, caller
 * frees); for any other url *path is NULL (connect as the url says; with
 * sentinels the routes follow discovery, see corral_reach). -1 with err
 * for a url that does not parse. */
int corral_tls_local_address(const struct corral_redis_conf *conf, const char *dir, char **path,
                             struct corral_err *err);
/* Where a host's proxy lives: $CORRAL_TLS_DIR, else $RUNTIME_DIRECTORY/tls
 * (systemd's RuntimeDirectory=corral), else /run/corral/tls. Caller frees. */
char *corral_tls_default_dir(void);

/* Why stunnel refused or dropped a connection, from its log. */
enum corral_tls_fault {
    CORRAL_TLS_FAULT_NONE = 0,
    CORRAL_TLS_FAULT_UNTRUSTED,   /* server certificate not signed by a CA we trust */
    CORRAL_TLS_FAULT_EXPIRED,     /* server certificate expired or not yet valid */
    CORRAL_TLS_FAULT_NAME,        /* server certificate not for the name (or IP) we asked */
    CORRAL_TLS_FAULT_CLIENT_CERT, /* the server wants a client certificate or refused ours */
    CORRAL_TLS_FAULT_NOT_TLS,     /* the port does not speak TLS */
    CORRAL_TLS_FAULT_CONNECT,     /* no TCP connection (refused, unreachable, no such host) */
    CORRAL_TLS_FAULT_HANDSHAKE,   /* any other failed handshake */
    CORRAL_TLS_FAULT_SETUP,       /* stunnel refused its configuration (certificate files) */
};
/* A stable lower-case word for status and logs: "untrusted", "expired",
 * "name-mismatch", "client-certificate", "not-tls", "connect",
 * "handshake", "setup" ("ok" for NONE). */
const char *corral_tls_fault_name(enum corral_tls_fault f);

/* One line of stunnel's log, "YYYY.MM.DD HH:MM:SS LOG<n>[<id>]: <text>":
 * level (0-7), conn the connection number (-1 for [ui], [cron] and other
 * threads), text points into line. -1 when line is not in that form. */
struct corral_tls_logline {
    int level;
    long conn;
    const char *text;
};
int corral_tls_log_parse(const char *line, struct corral_tls_logline *out);

/* What a log text says (a pure function of text): a fault, with the
 * OpenSSL or stunnel reason copied into detail; CORRAL_TLS_FAULT_NONE for
 * lines that say nothing of one. *flags (may be NULL) gets
 * CORRAL_TLS_LINE_OK for a line that proves a working handshake ("TLS
 * connected"), CORRAL_TLS_LINE_WEAK for a fault that holds only if the
 * server never answered on that connection. */
#define CORRAL_TLS_LINE_OK   1u
#define CORRAL_TLS_LINE_WEAK 2u
enum corral_tls_fault corral_tls_classify(const char *text, unsigned *flags, char *detail,
                                          size_t n);

/* The sentence for a fault on the route to host:port: what was refused,
 * why, and the [redis] key to look at (tls_ca_file, tls_server_name,
 * tls_cert_file ...). Fills err (code CORRAL_ERR_REDIS) and returns -1. */
int corral_tls_fault_error(enum corral_tls_fault f, const char *detail,
                           const struct corral_redis_conf *conf, const char *host, int port,
                           struct corral_err *err);

/* stunnel's configuration for routes under dir, verification on: CAfile
 * (tls_ca_file, else the system's bundle), verifyChain, checkHost
 * (tls_server_name, else a host name) or checkIP (an address), sni, and
 * cert/key when set. log_level is stunnel's debug level. Caller frees. */
char *corral_tls_stunnel_conf(const struct corral_redis_conf *conf, const char *dir,
                              const struct corral_hostport *routes, size_t n, int log_level);

/* A stunnel client process and its routes. */
struct corral_tls_proxy;

/* A proxy for conf (which must have a rediss url) with its files under dir
 * (created 0700 when missing). The certificate and key files must be
 * readable: err names the key and path otherwise. Nothing is started. Free
 * with corral_tls_proxy_free. conf is copied from as needed, not kept. */
struct corral_tls_proxy *corral_tls_proxy_new(const struct corral_redis_conf *conf, const char *dir,
                                              struct corral_err *err);
/* Adds the route to host:port (no-op when known); returns 1 when added,
 * after which a running proxy needs corral_tls_proxy_reload. */
int corral_tls_proxy_route(struct corral_tls_proxy *p, const char *host, int port);
size_t corral_tls_proxy_nroutes(const struct corral_tls_proxy *p);
/* Writes the configuration and starts stunnel in the foreground, its
 * output on a pipe (corral_tls_proxy_log_fd) that the caller must keep
 * reading with corral_tls_proxy_read_log. Signals are blocked around fork
 * and reset in the child; only the pipe crosses exec. */
int corral_tls_proxy_spawn(struct corral_tls_proxy *p, struct corral_err *err);
/* Rewrites the configuration and sends SIGHUP: stunnel binds new routes,
 * open connections stay. */
int corral_tls_proxy_reload(struct corral_tls_proxy *p, struct corral_err *err);
/* Blocking: waits until every route's socket accepts connections, stunnel
 * exits (err holds its reason), or timeout_ms passes. */
int corral_tls_proxy_wait_ready(struct corral_tls_proxy *p, int64_t timeout_ms,
                                struct corral_err *err);
/* 1 when every route's socket exists (stunnel has bound them). */
int corral_tls_proxy_bound(const struct corral_tls_proxy *p);
int corral_tls_proxy_log_fd(const struct corral_tls_proxy *p);
pid_t corral_tls_proxy_pid(const struct corral_tls_proxy *p);
/* Reads what stunnel has written (non-blocking) and records each route's
 * last fault; on_line (may be NULL) sees every complete line. Returns the
 * number of lines, or -1 at EOF (stunnel closed its output: it is gone). */
int corral_tls_proxy_read_log(struct corral_tls_proxy *p,
                              void (*on_line)(void *data, const struct corral_tls_logline *l),
                              void *data);
/* The last fault seen on the route to host:port since it last worked:
 * CORRAL_TLS_FAULT_NONE, or the fault with err set by corral_tls_fault_error. */
enum corral_tls_fault corral_tls_proxy_fault(const struct corral_tls_proxy *p, const char *host,
                                             int port, struct corral_err *err);
/* The last fault on any route, its sentence in err (for status). */
enum corral_tls_fault corral_tls_proxy_last_fault(const struct corral_tls_proxy *p,
                                                  struct corral_err *err);
/* The reaper saw stunnel exit with status: forget the pid. */
void corral_tls_proxy_exited(struct corral_tls_proxy *p, int status);
/* SIGTERM to stunnel and, when wait is set, reap it (blocking, up to 5 s,
 * then SIGKILL). Closes the log pipe. */
void corral_tls_proxy_stop(struct corral_tls_proxy *p, int wait);
/* Stops stunnel (waiting) and removes the files it and we made. NULL-safe. */
void corral_tls_proxy_free(struct corral_tls_proxy *p);

/* Blocking, for a program on its own (corralctl on a host without corrald):
 * a proxy in a fresh private temp dir with routes to each of hosts, started
 * and ready. NULL with err when it cannot start. The caller frees it when
 * the command ends, which removes the dir. */
struct corral_tls_proxy *corral_tls_proxy_private(const struct corral_redis_conf *conf,
                                                  const struct corral_hostport *hosts, size_t n,
                                                  int64_t timeout_ms, struct corral_err *err);
const char *corral_tls_proxy_dir(const struct corral_tls_proxy *p);

/* A corral_reach ensure for a program's own proxy (data is the proxy):
 * adds the route to host:port when missing, reloads stunnel and waits (up
 * to 5 s) until it listens. */
int corral_tls_proxy_ensure(void *proxy, const char *host, int port, struct corral_err *err);

/* Blocking: connects through the route to host:port and PINGs. When the
 * connection is dropped, reads stunnel's log until it says why (or
 * timeout_ms passes) and reports the classified reason. */
int corral_tls_proxy_probe(struct corral_tls_proxy *p, const char *host, int port,
                           int64_t timeout_ms, struct corral_err *err);

#endif

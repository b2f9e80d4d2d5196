/* corral.conf: the INI file of docs/configuration.md, parsed into typed settings.
 * Every key has its type, default and bounds in one table in common/config.c.
 * Durations are milliseconds, sizes bytes, percentages per-mille. Parse errors
 * name the file, the line and the key; all of them are collected, not just
 * the first (like `nginx -t`). */
#ifndef CORRAL_CONFIG_H
#define CORRAL_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "corral/err.h"

/* libcorral's public API: what follows is exported by libcorral.so, which
 * is built with everything else hidden (include/corral/ only; the Makefile). */
#pragma GCC visibility push(default)

#define CORRAL_DEFAULT_CONFIG "/etc/corral/corral.conf"
#define CORRAL_MAX_PRIORITIES 16

enum corral_order { CORRAL_ORDER_STRICT, CORRAL_ORDER_WEIGHTED };
enum corral_handler { CORRAL_HANDLER_HTTP, CORRAL_HANDLER_ECHO, CORRAL_HANDLER_EXEC };

/* A list of strings (queues, priorities, headers). Owned by the config. */
struct corral_strlist {
    char **items;
    size_t n;
};

/* A [redis] url taken apart: where to connect, as whom, which db. */
struct corral_redis_addr {
    char *host; /* TCP host, or NULL for a unix socket */
    int port;
    char *path; /* unix socket path, or NULL */
    int db;
    char *user; /* ACL user, or NULL for the default user */
};

struct corral_redis_conf {
    char *url;           /* redis[s]://[user@]host[:port][/db] or unix:///path[?db=N] */
    char *password_file; /* NULL when unset; ${CREDENTIALS_DIRECTORY} expanded */
    char *prefix;        /* key prefix, default "corral" */
    /* url, parsed once when the config is loaded (or by
     * corral_config_set_redis_url); every connection uses it. */
    struct corral_redis_addr addr;
    /* Sentinel and TLS (docs/ha.md). With sentinels, the master's address
     * comes from them and url supplies only the scheme, user and db. */
    struct corral_strlist sentinels; /* "host:port" each; empty: no Sentinel */
    char *sentinel_master;           /* the name they monitor; set with sentinels */
    char *sentinel_password_file;    /* AUTH to the sentinels; NULL when unset */
    char *tls_ca_file;               /* rediss: CAs to verify the server; NULL: the system's */
    char *tls_cert_file;             /* rediss: client certificate, with tls_key_file */
    char *tls_key_file;
    char *tls_server_name; /* rediss: the name the certificate must carry; NULL: the host */
    int min_replicas;      /* enqueues confirmed with WAIT by this many replicas; 0: none */
    /* Redis Cluster seeds (docs/design.md, "Redis Cluster slots"): "host:port"
     * each; empty: one Redis (or Sentinel). url then gives the scheme and
     * user only, db 0. */
    struct corral_strlist cluster;
};

struct corral_pool_conf {
    int min;
    int max;
    int concurrency;
    int64_t max_jobs;      /* 0 = never recycle */
    int64_t max_rss_bytes; /* 0 = never recycle */
    int64_t drain_timeout_ms;
    int64_t hang_timeout_ms;
    struct corral_strlist queues; /* after load: each has a [queue] section; unset = every
                                   * [queue] in file order, so empty only without any */
};

struct corral_scale_conf {
    int64_t tick_ms;
    int64_t target_wait_ms;
    int target_utilization_pm; /* per mille: 80% = 800 */
    int64_t scale_out_cooldown_ms;
    int64_t scale_in_window_ms;
    int cpu_ceiling_pm;
    int mem_ceiling_pm;
};

struct corral_queue_conf {
    char *name;
    struct corral_strlist priorities; /* highest first; default high, normal, low */
    enum corral_order order;
    int weights[CORRAL_MAX_PRIORITIES]; /* one per priority; all 1 unless set */
    enum corral_handler handler;
    char *service; /* handler = http: the first of services (not owned), or NULL */
    /* handler = http: [service] sections in fallback order (docs/breakers.md, "Fallback") */
    struct corral_strlist services;
    char *command; /* handler = exec: split without a shell */
    int max_attempts;
    int64_t backoff_base_ms;
    int64_t backoff_cap_ms;
    int64_t timeout_ms;
    int64_t lease_ms;
    int64_t result_ttl_ms;
    int64_t max_payload_bytes;
    int64_t max_result_bytes;
    /* tenants (docs/protocol.md, "Tenants") */
    struct corral_strlist tenant_weights; /* "TENANT:W" items, checked */
    int tenant_max_inflight;              /* running jobs per tenant, fleet-wide; 0 = none */
    int64_t tenant_rate_count;            /* jobs started per tenant per period; 0 = none */
    int64_t tenant_rate_period_ms;
    int64_t tenant_tokens_count; /* tokens per tenant per period; 0 = none */
    int64_t tenant_tokens_period_ms;
    int tenant_metrics_top; /* tenants with their own series in corralctl metrics */
    /* [redis] cluster and a service: declared with service_gate, the
     * service reached through its gate (docs/design.md, "Redis Cluster slots") */
    int service_gate;
};

/* A `price = MODEL INPUT OUTPUT` line: currency per million tokens, in
 * nano-units (docs/tokens.md, "Cost"). */
struct corral_price {
    char *model;
    int64_t input_nano;
    int64_t output_nano;
};

/* The repeatable `price` key: each line appends. Owned by the config. */
struct corral_price_list {
    struct corral_price *items;
    size_t n;
};

struct corral_service_conf {
    char *name;
    char *url;
    char *api_key_file;            /* NULL when unset; ${CREDENTIALS_DIRECTORY} expanded */
    struct corral_strlist headers; /* "Name: value", repeatable key */
    char *model;                   /* the payload's "model" for this service; NULL: as sent */
    int64_t connect_timeout_ms;
    int max_inflight;
    int64_t rate_count; /* 0 = unlimited */
    int64_t rate_period_ms;
    int64_t breaker_window_ms;
    int breaker_min_calls;
    int breaker_failure_rate_pm;
    int64_t breaker_slow_call_ms;
    int breaker_slow_rate_pm;
    int64_t breaker_open_for_ms;
    int64_t breaker_open_max_ms;
    int breaker_half_open_calls;
    /* docs/tokens.md */
    int64_t tokens_count; /* fleet-wide token budget per period; 0 = none */
    int64_t tokens_period_ms;
    int bytes_per_token;       /* payload bytes per estimated input token */
    int64_t price_input_nano;  /* per million tokens; 0 = unpriced */
    int64_t price_output_nano; /* per million tokens; 0 = unpriced */
    struct corral_price_list prices;
    int64_t budget_nano; /* spend per period, nano-units; 0 = none */
    int64_t budget_period_ms;
};

/* corral-web (docs/web.md). */
struct corral_web_conf {
    char *listen;     /* ADDR:PORT, default 127.0.0.1:8470 */
    char *token_file; /* NULL when unset (actions disabled); ${CREDENTIALS_DIRECTORY} expanded */
};

struct corral_config {
    char *path; /* the file it was read from, or "<string>" */
    struct corral_redis_conf redis;
    struct corral_pool_conf pool;
    struct corral_scale_conf scale;
    struct corral_web_conf web;
    struct corral_queue_conf *queues; /* every [queue NAME] section, in file order */
    size_t nqueues;
    struct corral_service_conf *services; /* every [service NAME] section, in file order */
    size_t nservices;
};

/* Every error found while loading, one line each, in file order:
 * "corral.conf:12: [pool] max: must be >= min (2), got 1". Owned by the caller
 * of corral_config_load; free with corral_config_errors_free. */
struct corral_config_errors {
    char **lines;
    size_t n;
};

/* Reads and validates a config file. On success returns a config the caller
 * frees with corral_config_free, and leaves errs empty. On failure returns
 * NULL and fills errs with every problem (file, line, key and what is wrong).
 * A missing or unreadable file is one error naming the path and errno. */
struct corral_config *corral_config_load(const char *path, struct corral_config_errors *errs);

/* The same from a string (tests, fuzzing); name stands in for the path. */
struct corral_config *corral_config_load_string(const char *text, const char *name,
                                                struct corral_config_errors *errs);

/* The default path: $CORRAL_CONFIG when set, else CORRAL_DEFAULT_CONFIG. */
const char *corral_config_default_path(void);

/* A config with every default and no queues or services (for tools run
 * without a file, e.g. corralctl --redis URL). Caller frees. */
struct corral_config *corral_config_defaults(void);

void corral_config_free(struct corral_config *cfg);
void corral_config_errors_free(struct corral_config_errors *errs);

const struct corral_queue_conf *corral_config_queue(const struct corral_config *cfg,
                                                    const char *name);
const struct corral_service_conf *corral_config_service(const struct corral_config *cfg,
                                                        const char *name);

/* Writes the effective settings as a valid corral.conf (`corrald --check`).
 * Secrets are never printed: only the paths of the files that hold them. */
void corral_config_dump(const struct corral_config *cfg, FILE *out);

/* Value parsers, exposed for corralctl flags and tests. Each returns 0, or -1
 * with err naming the value and what was expected. */
int corral_parse_duration_ms(const char *s, int64_t *out,
                             struct corral_err *err); /* 250ms 5s 2m 1h 1d, bare number = seconds */
int corral_parse_size(const char *s, int64_t *out,
                      struct corral_err *err); /* 512 512K 1M 2G (powers of 1024) */
int corral_parse_percent_pm(const char *s, int *out, struct corral_err *err); /* "85%" -> 850 */
int corral_parse_int(const char *s, int64_t min, int64_t max, int64_t *out, struct corral_err *err);
int corral_parse_range_ms(const char *s, int64_t *lo, int64_t *hi,
                          struct corral_err *err); /* "1s..5m" */
int corral_parse_rate(const char *s, int64_t *count, int64_t *period_ms,
                      struct corral_err *err); /* "500/m", "10/s", "100/5s" */
/* Splits "a, b ,c" on commas, trimming blanks; empty items are an error. */
int corral_parse_list(const char *s, struct corral_strlist *out, struct corral_err *err);
void corral_strlist_free(struct corral_strlist *l);

/* Parses redis://[user@]host[:port][/db] and unix:///path[?db=N]
 * (docs/configuration.md). A password in the URL is refused: it belongs in
 * password_file, and the error never echoes it. The caller frees out with
 * corral_redis_addr_free (NULL-safe); on error out holds nothing. */
int corral_redis_parse_url(const char *url, struct corral_redis_addr *out, struct corral_err *err);
void corral_redis_addr_free(struct corral_redis_addr *a);

/* Replaces the [redis] url and its parsed address (corralctl --redis). On
 * error (the URL does not parse) the config is left as it was. */
int corral_config_set_redis_url(struct corral_config *cfg, const char *url, struct corral_err *err);

/* Reads a secret file (password, API key): first line, trailing CR/LF and
 * blanks trimmed. ${CREDENTIALS_DIRECTORY} in path is expanded. The error
 * names the path, never the content. Caller frees the result (and should
 * clear it with explicit_bzero before free). */
char *corral_read_secret(const char *path, struct corral_err *err);

/* Expands ${CREDENTIALS_DIRECTORY} in a path; an error when the path uses it
 * and it is unset. Caller frees. */
char *corral_expand_path(const char *path, struct corral_err *err);

/* Appends a copy of s to l. */
void corral_strlist_push(struct corral_strlist *l, const char *s);

#pragma GCC visibility pop

#endif

/* Finding the Redis master through Sentinel (docs/ha.md): ask the
 * sentinels of [redis] sentinels in turn for sentinel_master's address,
 * connect to the answer and believe it only when its ROLE says master; and
 * notice a failover from the sentinels' +switch-master event.
 *
 * Like queue.h, every exchange is a builder (corral_cmd_<op>) and a parser
 * (corral_reply_<op>) that the blocking programs and the async worker share;
 * corral_sentinel_connect runs them over blocking connections. Replies are
 * only read, never kept: what the parsers return is copied out. */
#ifndef CORRAL_SENTINEL_H
#define CORRAL_SENTINEL_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "corral/config.h"
#include "corral/err.h"
#include "corral/queue.h"

#define CORRAL_SENTINEL_PORT 26379

/* A TCP address. host is owned; free with corral_hostport_free (NULL-safe,
 * leaves it zeroed). */
struct corral_hostport {
    char *host; /* a name, an IPv4 address, or an IPv6 address without [] */
    int port;
};
void corral_hostport_free(struct corral_hostport *hp);

/* Parses "host:port", "[v6addr]:port", or a host alone (port default_port).
 * A host is 1-253 of [A-Za-z0-9.-] (or an IPv6 address in []); a port is
 * 1-65535. err names the text and what is wrong. */
int corral_hostport_parse(const char *s, int default_port, struct corral_hostport *out,
                          struct corral_err *err);

/* SENTINEL REPLICAS name. */
void corral_cmd_sentinel_replicas(struct corral_cmd *cmd, const char *name);
/* The addresses in a SENTINEL REPLICAS reply (an array of flat field/value
 * arrays): *out gets each entry with a valid "ip" and "port", in order
 * (entries without them are skipped); the caller frees each with
 * corral_hostport_free, then the array. Returns how many (0, *out NULL,
 * for anything but an array). */
size_t corral_reply_sentinel_replicas(const redisReply *r, struct corral_hostport **out);

/* SENTINEL GET-MASTER-ADDR-BY-NAME name. */
void corral_cmd_sentinel_master(struct corral_cmd *cmd, const char *name);
/* The address a sentinel gave for name. A nil reply (the sentinel does not
 * monitor name) and a malformed one are errors naming name. */
int corral_reply_sentinel_master(const redisReply *r, const char *name, struct corral_hostport *out,
                                 struct corral_err *err);

enum corral_role { CORRAL_ROLE_MASTER, CORRAL_ROLE_REPLICA, CORRAL_ROLE_SENTINEL };

/* ROLE. */
void corral_cmd_role(struct corral_cmd *cmd);
/* The server's role; for a replica, master (may be NULL) gets the address
 * it replicates from. */
int corral_reply_role(const redisReply *r, enum corral_role *role, struct corral_hostport *master,
                      struct corral_err *err);

/* A failover the sentinels announced: name's master moved from -> to. */
struct corral_switch {
    char *name;
    struct corral_hostport from;
    struct corral_hostport to;
};
void corral_switch_free(struct corral_switch *sw);

/* SUBSCRIBE +switch-master, on a sentinel connection. */
void corral_cmd_sentinel_subscribe(struct corral_cmd *cmd);
/* The payload of a +switch-master message, "<name> <old-ip> <old-port>
 * <new-ip> <new-port>" (a pure function: no I/O). */
int corral_sentinel_parse_switch(const char *payload, size_t len, struct corral_switch *out,
                                 struct corral_err *err);
/* One frame on the subscribed connection: 1 when it is a +switch-master for
 * name (out filled), 0 when it is something else to ignore (the subscribe
 * confirmation, another master's switch), -1 when malformed. */
int corral_reply_sentinel_event(const redisReply *r, const char *name, struct corral_switch *out,
                                struct corral_err *err);

/* How a program reaches a TCP address: directly, or -- rediss -- through
 * the local end of the TLS proxy (corral/tls.h) under tls_dir. ensure (may
 * be NULL) is called before each connection through the proxy, so that a
 * program with a proxy of its own can add the route to an address it just
 * learnt (corral_tls_proxy_ensure). corrald's workers have none: corrald
 * sets route_replicas, so that discovery also routes every replica the
 * sentinel knows, and the route to the next master is bound before a
 * failover names it (docs/ha.md, "How it runs"). */
struct corral_reach {
    const char *tls_dir; /* NULL: plain TCP */
    int (*ensure)(void *data, const char *host, int port, struct corral_err *err);
    void *data;
    int route_replicas; /* with ensure: SENTINEL REPLICAS too, each ensured */
};

/* A blocking connection to host:port as reach says, with connect and
 * command timeouts of timeout_ms (0 = none). NULL with err naming the
 * address. */
redisContext *corral_reach_connect(const struct corral_reach *reach, const char *host, int port,
                                   int64_t timeout_ms, struct corral_err *err);

/* corral_redis_connect (corral/redis.h) with reach spelled out: with
 * reach->tls_dir set the url's address (or with sentinels each address)
 * is reached through that proxy directory, reach->ensure adding the route
 * first. corral_redis_connect passes the host's proxy directory for a
 * rediss url (corral_tls_default_dir). */
redisContext *corral_redis_connect_via(const struct corral_redis_conf *conf,
                                       const struct corral_reach *reach, int64_t timeout_ms,
                                       struct corral_err *err);

/* Asks conf's sentinels in turn (AUTH with sentinel_password_file when
 * set) for sentinel_master; connects to each answer, runs the handshake
 * (AUTH with password_file, SELECT the url's db) and keeps the first whose
 * ROLE is master. Returns that connection, with its address in master (may
 * be NULL; caller frees), or NULL with err listing what each sentinel
 * said. Secrets never appear in err. */
redisContext *corral_sentinel_connect(const struct corral_redis_conf *conf,
                                      const struct corral_reach *reach, int64_t timeout_ms,
                                      struct corral_hostport *master, struct corral_err *err);

/* A connection to the first sentinel that answers, AUTHed and subscribed to
 * +switch-master: read it with redisGetReply and corral_reply_sentinel_event.
 * NULL with err when none answers. */
redisContext *corral_sentinel_subscribe(const struct corral_redis_conf *conf,
                                        const struct corral_reach *reach, int64_t timeout_ms,
                                        struct corral_err *err);

#endif

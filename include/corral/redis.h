/* Connecting to Redis the way every corral program does: connect to the
 * [redis] address the config parsed at load (TCP or unix socket), AUTH with
 * the password read from password_file (never from argv or the URL), SELECT
 * the db, and make sure the corral Function library is loaded at this
 * build's version or newer. */
#ifndef CORRAL_REDIS_H
#define CORRAL_REDIS_H

#include <stdint.h>

#include <hiredis/hiredis.h>

#include "corral/config.h"
#include "corral/err.h"

/* libcorral's public API: what follows is exported by libcorral.so, which
 * is built with everything else hidden (include/corral/ only; the Makefile). */
#pragma GCC visibility push(default)

/* A blocking connection to conf->addr, authenticated and on the right db,
 * with connect and command timeouts of timeout_ms (0 = none). conf comes
 * from a loaded config; one filled by hand needs conf->addr set with
 * corral_redis_parse_url. Returns NULL with err naming the address (never
 * the password). Free with redisFree. */
redisContext *corral_redis_connect(const struct corral_redis_conf *conf, int64_t timeout_ms,
                                   struct corral_err *err);

/* Runs AUTH (when conf has a password_file) and SELECT on a fresh
 * connection; shared by the blocking and the async (worker) paths. */
int corral_redis_handshake(redisContext *c, const struct corral_redis_conf *conf,
                           struct corral_err *err);

/* The version of the Function library embedded in this build. */
int corral_functions_version(void);
/* The library's Lua source (as loaded with FUNCTION LOAD). */
const char *corral_functions_source(void);

/* Loads the library with FUNCTION LOAD REPLACE when it is missing or older
 * than this build's; leaves a newer one alone. *loaded (may be NULL) tells
 * whether a load happened. The library-only form of corral_bootstrap_run
 * (corral/bootstrap.h), which declares queues and services too. */
int corral_functions_ensure(redisContext *c, int *loaded, struct corral_err *err);

/* Fills err from a reply that is NULL (connection error) or an error reply;
 * returns -1 then, 0 otherwise. what names the command for the message. */
int corral_redis_check(redisContext *c, const redisReply *r, const char *what,
                       struct corral_err *err);

#pragma GCC visibility pop

#endif

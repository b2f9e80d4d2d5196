/* Redis connections for corral programs: connecting to the address the
 * config parsed, AUTH from a password file, SELECT, and loading the
 * embedded Function library. */
#include "corral/redis.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "corral/bootstrap.h"
#include "corral/util.h"

extern const char corral_lua_source[];

int corral_redis_check(redisContext *c, const redisReply *r, const char *what,
                       struct corral_err *err)
{
    if (r == NULL)
        return corral_err_set(err, CORRAL_ERR_REDIS, "redis %s: %s", what,
                              c && c->errstr[0] ? c->errstr : "connection lost");
    if (r->type == REDIS_REPLY_ERROR) {
        const char *msg = r->str;
        enum corral_err_code code = CORRAL_ERR_REDIS;
        if (strncmp(msg, "ERR ", 4) == 0 &&
            (strstr(msg, "unknown queue") != NULL || strstr(msg, "unknown service") != NULL))
            code = CORRAL_ERR_NOTFOUND;
        else if (strncmp(msg, "ERR ", 4) == 0 && strstr(msg, "Function not found") == NULL)
            code = CORRAL_ERR_INVALID;
        if (strncmp(msg, "ERR ", 4) == 0)
            msg += 4;
        if (msg[0] == '\0') /* "-ERR" alone: still say what failed (found by fuzzing) */
            return corral_err_set(err, code, "redis %s: an error reply without a message", what);
        return corral_err_set(err, code, "%s", msg);
    }
    return 0;
}

int corral_redis_handshake(redisContext *c, const struct corral_redis_conf *conf,
                           struct corral_err *err)
{
    const struct corral_redis_addr *a = &conf->addr;
    int rc = 0;
    if (conf->password_file != NULL) {
        char *pass = corral_read_secret(conf->password_file, err);
        if (pass == NULL)
            return -1;
        redisReply *r = a->user ? redisCommand(c, "AUTH %s %s", a->user, pass)
                                : redisCommand(c, "AUTH %s", pass);
        explicit_bzero(pass, strlen(pass));
        free(pass);
        /* The reply text never contains the password, but keep the message
         * our own so nothing secret-adjacent is echoed. */
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            corral_err_set(err, CORRAL_ERR_REDIS,
                           "redis %s: authentication as %s failed (password from %s)%s%s",
                           conf->url, a->user ? a->user : "default", conf->password_file,
                           r ? ": " : "", r ? r->str : "");
            rc = -1;
        }
        freeReplyObject(r);
    }
    if (rc == 0 && a->db != 0) {
        redisReply *r = redisCommand(c, "SELECT %d", a->db);
        if (corral_redis_check(c, r, "SELECT", err) < 0) {
            corral_err_prefix(err, "redis %s", conf->url);
            rc = -1;
        }
        freeReplyObject(r);
    }
    return rc;
}

redisContext *corral_redis_connect(const struct corral_redis_conf *conf, int64_t timeout_ms,
                                   struct corral_err *err)
{
    const struct corral_redis_addr *a = &conf->addr;
    if (a->path == NULL && a->host == NULL) {
        corral_err_set(err, CORRAL_ERR_INVALID,
                       "redis %s: the address was not parsed (load the config, or set addr with "
                       "corral_redis_parse_url)",
                       conf->url ? conf->url : "(no url)");
        return NULL;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *c;
    if (a->path != NULL)
        c = timeout_ms > 0 ? redisConnectUnixWithTimeout(a->path, tv) : redisConnectUnix(a->path);
    else
        c = timeout_ms > 0 ? redisConnectWithTimeout(a->host, a->port, tv)
                           : redisConnect(a->host, a->port);
    if (c == NULL) {
        corral_err_set(err, CORRAL_ERR_NOMEM, "redis %s: cannot allocate a connection", conf->url);
        return NULL;
    }
    if (c->err) {
        corral_err_set(err, CORRAL_ERR_REDIS, "redis %s: %s", conf->url, c->errstr);
        redisFree(c);
        return NULL;
    }
    if (timeout_ms > 0)
        redisSetTimeout(c, tv);
    if (corral_redis_handshake(c, conf, err) < 0) {
        redisFree(c);
        return NULL;
    }
    return c;
}

const char *corral_functions_source(void)
{
    return corral_lua_source;
}

int corral_functions_version(void)
{
    const char *p = strstr(corral_lua_source, "local LIB_VERSION = ");
    return p ? atoi(p + strlen("local LIB_VERSION = ")) : 0;
}

int corral_functions_ensure(redisContext *c, int *loaded, struct corral_err *err)
{
    return corral_bootstrap_run(c, NULL, CORRAL_BOOTSTRAP_LIBRARY, NULL, 0, loaded, err);
}

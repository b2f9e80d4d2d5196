/* Redis connections for corral programs: URL parsing, AUTH from a password
 * file, SELECT, and loading the embedded Function library. */
#include "corral/redis.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "corral/queue.h"
#include "corral/util.h"
#include "codes.h"

extern const char corral_lua_source[];

void corral_redis_addr_free(struct corral_redis_addr *a)
{
    if (a == NULL)
        return;
    free(a->host);
    free(a->path);
    free(a->user);
    memset(a, 0, sizeof(*a));
}

static int parse_db(const char *s, int *db, const char *url, struct corral_err *err)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < 0 || v > 65535)
        return corral_err_set(err, CORRAL_ERR_INVALID, "redis url \"%s\": bad db number \"%s\"",
                              url, s);
    *db = (int)v;
    return 0;
}

int corral_redis_parse_url(const char *url, struct corral_redis_addr *out, struct corral_err *err)
{
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7;
        const char *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 0 || p[0] != '/')
            return corral_err_set(err, CORRAL_ERR_INVALID,
                                  "redis url \"%s\": expected unix:///absolute/path[?db=N]", url);
        out->path = corral_xstrndup(p, n);
        if (q != NULL) {
            if (strncmp(q, "?db=", 4) != 0 || parse_db(q + 4, &out->db, url, err) < 0) {
                corral_redis_addr_free(out);
                if (strncmp(q, "?db=", 4) != 0)
                    corral_err_set(err, CORRAL_ERR_INVALID,
                                   "redis url \"%s\": only ?db=N may follow the socket path", url);
                return -1;
            }
        }
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return corral_err_set(err, CORRAL_ERR_INVALID,
                              "redis url \"%s\": expected redis://host[:port][/db] or "
                              "unix:///path",
                              url);
    const char *p = url + 8;
    const char *at = strchr(p, '@');
    const char *slash = strchr(p, '/');
    if (at != NULL && (slash == NULL || at < slash)) {
        if (memchr(p, ':', (size_t)(at - p)) != NULL)
            return corral_err_set(err, CORRAL_ERR_INVALID,
                                  "redis url: a password must not be written in the url; put it "
                                  "in [redis] password_file");
        if (at == p)
            return corral_err_set(err, CORRAL_ERR_INVALID, "redis url \"%s\": empty user name",
                                  url);
        out->user = corral_xstrndup(p, (size_t)(at - p));
        p = at + 1;
    }
    slash = strchr(p, '/');
    size_t hostlen = slash ? (size_t)(slash - p) : strlen(p);
    const char *colon = memchr(p, ':', hostlen);
    size_t hn = colon ? (size_t)(colon - p) : hostlen;
    if (hn == 0) {
        corral_redis_addr_free(out);
        return corral_err_set(err, CORRAL_ERR_INVALID, "redis url \"%s\": missing host", url);
    }
    out->host = corral_xstrndup(p, hn);
    if (colon != NULL) {
        char portbuf[16];
        size_t pn = hostlen - hn - 1;
        char *end;
        long v = 0;
        if (pn > 0 && pn < sizeof(portbuf)) {
            memcpy(portbuf, colon + 1, pn);
            portbuf[pn] = '\0';
            v = strtol(portbuf, &end, 10);
            if (*end != '\0')
                v = 0;
        }
        if (v < 1 || v > 65535) {
            corral_redis_addr_free(out);
            return corral_err_set(err, CORRAL_ERR_INVALID, "redis url \"%s\": bad port", url);
        }
        out->port = (int)v;
    }
    if (slash != NULL && slash[1] != '\0' && parse_db(slash + 1, &out->db, url, err) < 0) {
        corral_redis_addr_free(out);
        return -1;
    }
    return 0;
}

int corral_redis_check(redisContext *c, const redisReply *r, const char *what,
                       struct corral_err *err)
{
    if (r == NULL)
        return corral_err_set(err, CORRAL_ERR_REDIS, "redis %s: %s", what,
                              c && c->errstr[0] ? c->errstr : "connection lost");
    if (r->type != REDIS_REPLY_ERROR)
        return 0;
    enum corral_err_code code;
    size_t skip;
    enum corral_err_word word = corral_codes_lookup(r->str, r->len, &code, &skip);
    if (r->len <= skip) /* "-ERR" alone: still say what failed (found by fuzzing) */
        corral_err_set(err, code, "redis %s: an error reply without a message", what);
    else
        corral_err_set(err, code, "%.*s", (int)(r->len - skip), r->str + skip);
    if (err != NULL)
        err->word = word;
    return -1;
}

int corral_redis_handshake(redisContext *c, const struct corral_redis_conf *conf,
                           struct corral_err *err)
{
    struct corral_redis_addr a;
    if (corral_redis_parse_url(conf->url, &a, err) < 0)
        return -1;
    int rc = 0;
    if (conf->password_file != NULL) {
        char *pass = corral_read_secret(conf->password_file, err);
        if (pass == NULL) {
            corral_redis_addr_free(&a);
            return -1;
        }
        redisReply *r =
            a.user ? redisCommand(c, "AUTH %s %s", a.user, pass) : redisCommand(c, "AUTH %s", pass);
        explicit_bzero(pass, strlen(pass));
        free(pass);
        /* The reply text never contains the password, but keep the message
         * our own so nothing secret-adjacent is echoed. */
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            corral_err_set(err, CORRAL_ERR_REDIS,
                           "redis %s: authentication as %s failed (password from %s)%s%s",
                           conf->url, a.user ? a.user : "default", conf->password_file,
                           r ? ": " : "", r ? r->str : "");
            rc = -1;
        }
        freeReplyObject(r);
    }
    if (rc == 0 && a.db != 0) {
        redisReply *r = redisCommand(c, "SELECT %d", a.db);
        if (corral_redis_check(c, r, "SELECT", err) < 0) {
            corral_err_prefix(err, "redis %s", conf->url);
            rc = -1;
        }
        freeReplyObject(r);
    }
    corral_redis_addr_free(&a);
    return rc;
}

redisContext *corral_redis_connect(const struct corral_redis_conf *conf, int64_t timeout_ms,
                                   struct corral_err *err)
{
    struct corral_redis_addr a;
    if (corral_redis_parse_url(conf->url, &a, err) < 0)
        return NULL;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *c;
    if (a.path != NULL)
        c = timeout_ms > 0 ? redisConnectUnixWithTimeout(a.path, tv) : redisConnectUnix(a.path);
    else
        c = timeout_ms > 0 ? redisConnectWithTimeout(a.host, a.port, tv)
                           : redisConnect(a.host, a.port);
    corral_redis_addr_free(&a);
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
    if (loaded != NULL)
        *loaded = 0;
    redisReply *r = redisCommand(c, "FCALL_RO corral_version 0");
    if (r == NULL)
        return corral_redis_check(c, r, "FCALL corral_version", err);
    long long have = -1;
    if (r->type == REDIS_REPLY_INTEGER)
        have = r->integer;
    else if (r->type == REDIS_REPLY_ERROR &&
             corral_reply_word(r->str, r->len) == CORRAL_WORD_NOCOMMAND) {
        corral_err_set(err, CORRAL_ERR_REDIS,
                       "redis does not support Functions (FCALL): corral needs redis-server 7 "
                       "or newer");
        freeReplyObject(r);
        return -1;
    }
    freeReplyObject(r);
    if (have >= corral_functions_version())
        return 0;
    r = redisCommand(c, "FUNCTION LOAD REPLACE %s", corral_lua_source);
    int rc = corral_redis_check(c, r, "FUNCTION LOAD", err);
    freeReplyObject(r);
    if (rc == 0 && loaded != NULL)
        *loaded = 1;
    return rc;
}

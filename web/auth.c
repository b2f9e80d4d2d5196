/* corral-web: the token, sessions and origin checks (see auth.h). */
#include "auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "corral/util.h"

int web_token_equal(const char *given, size_t given_len, const char *secret, size_t secret_len)
{
    /* Every byte of the secret is looked at, whatever given holds; bytes
     * past given's end compare against 0 and the length differs anyway. */
    volatile unsigned char diff = (unsigned char)(given_len != secret_len);
    for (size_t i = 0; i < secret_len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)secret[i]);
    }
    return secret_len > 0 && diff == 0;
}

const char *web_bearer(const char *authorization)
{
    if (authorization == NULL || strncasecmp(authorization, "Bearer", 6) != 0)
        return NULL;
    const char *p = authorization + 6;
    if (*p != ' ' && *p != '\t')
        return NULL;
    while (*p == ' ' || *p == '\t')
        p++;
    return *p != '\0' ? p : NULL;
}

/* 1 when origin is http:// or https:// plus host. */
static int origin_is(const char *origin, const char *host)
{
    if (host == NULL || host[0] == '\0')
        return 0;
    const char *rest;
    if (strncmp(origin, "http://", 7) == 0)
        rest = origin + 7;
    else if (strncmp(origin, "https://", 8) == 0)
        rest = origin + 8;
    else
        return 0; /* "null" (sandboxed frames, file:) and anything else */
    return strcasecmp(rest, host) == 0;
}

int web_origin_ok(const char *host, const char *fwd_host, const char *origin,
                  const char *fetch_site)
{
    if (fetch_site != NULL)
        return strcmp(fetch_site, "same-origin") == 0 || strcmp(fetch_site, "none") == 0;
    if (origin == NULL)
        return 1;
    return origin_is(origin, host) || (fwd_host != NULL && origin_is(origin, fwd_host));
}

int web_host_is_loopback(const char *host)
{
    if (host == NULL)
        return 0;
    char name[256];
    size_t n = strlen(host);
    if (n == 0 || n >= sizeof(name))
        return 0;
    memcpy(name, host, n + 1);
    /* Strip the port: after the last ':' of a name, after "]" of [v6]. */
    if (name[0] == '[') {
        char *end = strchr(name, ']');
        if (end == NULL || (end[1] != '\0' && end[1] != ':'))
            return 0;
        if (end[1] == ':' && (end[2] == '\0' || strspn(end + 2, "0123456789") != strlen(end + 2)))
            return 0;
        end[1] = '\0';
        return strcmp(name, "[::1]") == 0;
    }
    char *colon = strchr(name, ':');
    if (colon != NULL) {
        if (colon[1] == '\0' || strspn(colon + 1, "0123456789") != strlen(colon + 1))
            return 0;
        *colon = '\0';
    }
    if (strcasecmp(name, "localhost") == 0)
        return 1;
    /* 127.a.b.c, each part 0-255 in decimal. */
    unsigned a, b, c, d;
    char tail;
    if (sscanf(name, "%3u.%3u.%3u.%3u%c", &a, &b, &c, &d, &tail) != 4)
        return 0;
    if (strspn(name, "0123456789.") != strlen(name))
        return 0;
    return a == 127 && b <= 255 && c <= 255 && d <= 255;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long web_form_value(const char *body, size_t len, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && body[end] != '&')
            end++;
        if (end - i > klen && memcmp(body + i, key, klen) == 0 && body[i + klen] == '=') {
            size_t o = 0;
            for (size_t k = i + klen + 1; k < end; k++) {
                char c = body[k];
                if (c == '+') {
                    c = ' ';
                } else if (c == '%') {
                    int hi = k + 2 < end ? hexval(body[k + 1]) : -1;
                    int lo = hi < 0 ? -1 : hexval(body[k + 2]);
                    if (hi < 0 || lo < 0)
                        return -1;
                    c = (char)(hi * 16 + lo);
                    k += 2;
                }
                if (o + 1 >= outlen)
                    return -1;
                out[o++] = c;
            }
            out[o] = '\0';
            return (long)o;
        }
        i = end + 1;
    }
    return -1;
}

struct session {
    char id[WEB_SESSION_ID_LEN + 1];
    int64_t expires_ms; /* 0: a free slot */
};

struct web_sessions {
    pthread_mutex_t lock;
    struct session s[WEB_SESSIONS_MAX];
};

struct web_sessions *web_sessions_new(void)
{
    struct web_sessions *s = corral_xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

void web_sessions_free(struct web_sessions *s)
{
    if (s == NULL)
        return;
    pthread_mutex_destroy(&s->lock);
    explicit_bzero(s->s, sizeof(s->s));
    free(s);
}

int web_sessions_create(struct web_sessions *s, int64_t now_ms, char *id)
{
    unsigned char raw[WEB_SESSION_ID_LEN / 2];
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
    explicit_bzero(raw, sizeof(raw));
    pthread_mutex_lock(&s->lock);
    /* A free or expired slot, else the one that expires first. */
    size_t pick = 0;
    for (size_t i = 0; i < WEB_SESSIONS_MAX; i++) {
        if (s->s[i].expires_ms <= now_ms) {
            pick = i;
            break;
        }
        if (s->s[i].expires_ms < s->s[pick].expires_ms)
            pick = i;
    }
    memcpy(s->s[pick].id, id, WEB_SESSION_ID_LEN + 1);
    s->s[pick].expires_ms = now_ms + WEB_SESSION_TTL_MS;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int web_sessions_check(struct web_sessions *s, const char *id, int64_t now_ms)
{
    if (id == NULL)
        return 0;
    size_t n = strlen(id);
    int found = 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < WEB_SESSIONS_MAX; i++)
        found |=
            web_token_equal(id, n, s->s[i].id, WEB_SESSION_ID_LEN) && s->s[i].expires_ms > now_ms;
    pthread_mutex_unlock(&s->lock);
    return found;
}

void web_sessions_drop(struct web_sessions *s, const char *id)
{
    if (id == NULL)
        return;
    size_t n = strlen(id);
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < WEB_SESSIONS_MAX; i++)
        if (web_token_equal(id, n, s->s[i].id, WEB_SESSION_ID_LEN)) {
            explicit_bzero(&s->s[i], sizeof(s->s[i]));
        }
    pthread_mutex_unlock(&s->lock);
}

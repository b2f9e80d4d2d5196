/* Value parsers for corral.conf and corralctl flags: durations, sizes,
 * percentages, integers, ranges, rates, lists and the [redis] url, plus
 * secret files. Each
 * error says what was expected and ends with (got "VALUE"), so the config
 * loader and corralctl print the same text. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/config.h"
#include "corral/util.h"

#define DURATION_HINT "expected a duration like 250ms, 5s, 2m, 1h or 1d"
#define SIZE_HINT     "expected a size like 512, 512K, 1M or 2G"
#define RATE_HINT     "expected a rate like 500/m, 10/s, 100/5s or 1000/h"

enum { UINT_OK = 0, UINT_NONE = -1, UINT_OVERFLOW = -2 };

/* Reads an unsigned decimal (no sign, no blanks) and advances *s past it.
 * Distinguishes "no digits" from "too many digits" so the messages can. */
static int read_uint(const char **s, int64_t *out)
{
    const char *p = *s;
    if (!isdigit((unsigned char)*p))
        return UINT_NONE;
    int64_t v = 0;
    int overflow = 0;
    for (; isdigit((unsigned char)*p); p++) {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10)
            overflow = 1;
        else
            v = v * 10 + d;
    }
    *s = p;
    *out = v;
    return overflow ? UINT_OVERFLOW : UINT_OK;
}

static int mul_ok(int64_t a, int64_t b, int64_t *out)
{
    if (a != 0 && b > INT64_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

int corral_parse_duration_ms(const char *s, int64_t *out, struct corral_err *err)
{
    const char *end = s;
    int64_t v;
    int rc = read_uint(&end, &v);
    if (rc == UINT_NONE)
        return corral_err_set(err, CORRAL_ERR_INVALID, DURATION_HINT " (got \"%s\")", s);
    int64_t unit;
    if (*end == '\0' || strcmp(end, "s") == 0)
        unit = 1000;
    else if (strcmp(end, "ms") == 0)
        unit = 1;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        unit = 60000;
    else if (strcmp(end, "h") == 0)
        unit = 3600000;
    else if (strcmp(end, "d") == 0)
        unit = 86400000;
    else
        return corral_err_set(err, CORRAL_ERR_INVALID, DURATION_HINT " (got \"%s\")", s);
    if (rc == UINT_OVERFLOW || !mul_ok(v, unit, out))
        return corral_err_set(err, CORRAL_ERR_INVALID, "duration is too large (got \"%s\")", s);
    return 0;
}

int corral_parse_size(const char *s, int64_t *out, struct corral_err *err)
{
    const char *end = s;
    int64_t v;
    int rc = read_uint(&end, &v);
    int64_t unit = -1;
    if (rc != UINT_NONE) {
        if (*end == '\0' || strcmp(end, "B") == 0)
            unit = 1;
        else if (strcmp(end, "K") == 0 || strcmp(end, "k") == 0 || strcmp(end, "KB") == 0)
            unit = 1024;
        else if (strcmp(end, "M") == 0 || strcmp(end, "MB") == 0)
            unit = 1024 * 1024;
        else if (strcmp(end, "G") == 0 || strcmp(end, "GB") == 0)
            unit = 1024LL * 1024 * 1024;
    }
    if (unit < 0)
        return corral_err_set(err, CORRAL_ERR_INVALID, SIZE_HINT " (got \"%s\")", s);
    if (rc == UINT_OVERFLOW || !mul_ok(v, unit, out))
        return corral_err_set(err, CORRAL_ERR_INVALID, "size is too large (got \"%s\")", s);
    return 0;
}

int corral_parse_percent_pm(const char *s, int *out, struct corral_err *err)
{
    /* "85%" or "12.5%": per mille, so one decimal at most. */
    const char *end = s;
    int64_t whole, frac = 0;
    int ok = read_uint(&end, &whole) == UINT_OK;
    if (ok && *end == '.') {
        if (isdigit((unsigned char)end[1]) && !isdigit((unsigned char)end[2])) {
            frac = end[1] - '0';
            end += 2;
        } else {
            ok = 0;
        }
    }
    if (!ok || strcmp(end, "%") != 0 || whole > 100 || (whole == 100 && frac > 0))
        return corral_err_set(err, CORRAL_ERR_INVALID,
                              "expected a percentage from 0%% to 100%% like 85%% (got \"%s\")", s);
    *out = (int)(whole * 10 + frac);
    return 0;
}

int corral_parse_int(const char *s, int64_t min, int64_t max, int64_t *out, struct corral_err *err)
{
    int neg = *s == '-';
    const char *end = s + neg;
    int64_t v;
    int rc = read_uint(&end, &v);
    if (rc == UINT_NONE || *end != '\0')
        return corral_err_set(err, CORRAL_ERR_INVALID, "expected a whole number (got \"%s\")", s);
    if (rc == UINT_OVERFLOW)
        return corral_err_set(err, CORRAL_ERR_INVALID,
                              "must be from %lld to %lld, and is far outside (got \"%s\")",
                              (long long)min, (long long)max, s);
    if (neg)
        v = -v;
    if (v < min || v > max)
        return corral_err_set(err, CORRAL_ERR_INVALID, "must be from %lld to %lld (got \"%s\")",
                              (long long)min, (long long)max, s);
    *out = v;
    return 0;
}

int corral_parse_range_ms(const char *s, int64_t *lo, int64_t *hi, struct corral_err *err)
{
    const char *dots = strstr(s, "..");
    if (dots == NULL)
        return corral_err_set(err, CORRAL_ERR_INVALID,
                              "expected a range of durations like 1s..5m (got \"%s\")", s);
    char *a = corral_xstrndup(s, (size_t)(dots - s));
    int64_t l = 0, h = 0;
    int rc = corral_parse_duration_ms(a, &l, err);
    free(a);
    if (rc == 0)
        rc = corral_parse_duration_ms(dots + 2, &h, err);
    if (rc < 0)
        return corral_err_set(err, CORRAL_ERR_INVALID,
                              "expected a range of durations like 1s..5m (got \"%s\")", s);
    if (l > h)
        return corral_err_set(err, CORRAL_ERR_INVALID,
                              "the range ends before it starts (got \"%s\")", s);
    *lo = l;
    *hi = h;
    return 0;
}

int corral_parse_rate(const char *s, int64_t *count, int64_t *period_ms, struct corral_err *err)
{
    const char *end = s;
    int64_t n = 0, p = 0;
    if (read_uint(&end, &n) != UINT_OK || *end != '/' || n < 1)
        return corral_err_set(err, CORRAL_ERR_INVALID, RATE_HINT " (got \"%s\")", s);
    const char *per = end + 1;
    /* "m" alone means one minute, "5s" five seconds: prefix a 1 when bare. */
    char buf[64];
    int len = snprintf(buf, sizeof(buf), "%s%s", isdigit((unsigned char)*per) ? "" : "1", per);
    if (*per == '\0' || len >= (int)sizeof(buf) || corral_parse_duration_ms(buf, &p, NULL) < 0 ||
        p <= 0)
        return corral_err_set(err, CORRAL_ERR_INVALID, RATE_HINT " (got \"%s\")", s);
    *count = n;
    *period_ms = p;
    return 0;
}

void corral_strlist_free(struct corral_strlist *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

void corral_strlist_push(struct corral_strlist *l, const char *s)
{
    l->items = corral_xrealloc(l->items, sizeof(char *) * (l->n + 1));
    l->items[l->n++] = corral_xstrdup(s);
}

int corral_parse_list(const char *s, struct corral_strlist *out, struct corral_err *err)
{
    out->items = NULL;
    out->n = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *e = comma ? comma : p + strlen(p);
        const char *b = p;
        while (b < e && isspace((unsigned char)*b))
            b++;
        const char *t = e;
        while (t > b && isspace((unsigned char)t[-1]))
            t--;
        if (t == b) {
            corral_strlist_free(out);
            return corral_err_set(
                err, CORRAL_ERR_INVALID,
                "expected a comma-separated list without empty items (got \"%s\")", s);
        }
        out->items = corral_xrealloc(out->items, sizeof(char *) * (out->n + 1));
        out->items[out->n++] = corral_xstrndup(b, (size_t)(t - b));
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return 0;
}

/* ${CREDENTIALS_DIRECTORY} is systemd's LoadCredential= directory. It is the
 * only variable expanded; any other ${...} is refused rather than left in
 * place, so a typo does not become a file name. */
char *corral_expand_path(const char *path, struct corral_err *err)
{
    static const char var[] = "${CREDENTIALS_DIRECTORY}";
    const char *dir = NULL;
    size_t cap = strlen(path) + 1, len = 0;
    char *out = corral_xmalloc(cap);
    for (const char *p = path; *p != '\0';) {
        const char *add = p;
        size_t n = 1;
        if (strncmp(p, var, sizeof(var) - 1) == 0) {
            if (dir == NULL)
                dir = getenv("CREDENTIALS_DIRECTORY");
            if (dir == NULL || dir[0] == '\0') {
                free(out);
                corral_err_set(err, CORRAL_ERR_INVALID,
                               "%s uses ${CREDENTIALS_DIRECTORY}, but it is not set (run under "
                               "systemd with LoadCredential=, or set it)",
                               path);
                return NULL;
            }
            add = dir;
            n = strlen(dir);
            p += sizeof(var) - 1;
        } else if (p[0] == '$' && p[1] == '{') {
            free(out);
            corral_err_set(err, CORRAL_ERR_INVALID,
                           "only ${CREDENTIALS_DIRECTORY} is expanded in paths (got \"%s\")", path);
            return NULL;
        } else {
            p++;
        }
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            out = corral_xrealloc(out, cap);
        }
        memcpy(out + len, add, n);
        len += n;
    }
    out[len] = '\0';
    return out;
}

char *corral_read_secret(const char *path, struct corral_err *err)
{
    char *full = corral_expand_path(path, err);
    if (full == NULL)
        return NULL;
    FILE *f = fopen(full, "re");
    if (f == NULL) {
        corral_err_set(err, CORRAL_ERR_IO, "cannot read secret file %s: %s", full, strerror(errno));
        free(full);
        return NULL;
    }
    char *line = NULL;
    size_t cap = 0;
    errno = 0;
    ssize_t n = getline(&line, &cap, f);
    int read_errno = errno;
    int failed = n < 0 && ferror(f);
    fclose(f);
    char *secret = NULL;
    if (failed) {
        corral_err_set(err, CORRAL_ERR_IO, "cannot read secret file %s: %s", full,
                       strerror(read_errno));
    } else {
        /* The first line, without its CR/LF and surrounding blanks. */
        size_t end = n > 0 ? strcspn(line, "\r\n") : 0, start = 0;
        while (end > 0 && isspace((unsigned char)line[end - 1]))
            end--;
        while (start < end && isspace((unsigned char)line[start]))
            start++;
        if (start == end)
            corral_err_set(err, CORRAL_ERR_INVALID, "secret file %s is empty", full);
        else
            secret = corral_xstrndup(line + start, end - start);
    }
    if (line != NULL)
        explicit_bzero(line, cap);
    free(line);
    free(full);
    return secret;
}

/* --- the [redis] url (docs/configuration.md) ------------------------- */

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

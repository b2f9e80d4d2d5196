/* HTTP outcome classification and rate-limit header parsing. */
#include "classify.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void corral_retry_hints_init(struct corral_retry_hints *h)
{
    h->retry_after_ms = h->reset_requests_ms = h->reset_tokens_ms = -1;
}

int64_t corral_parse_reset_ms(const char *s, size_t len)
{
    /* Go-style durations (OpenAI) or plain seconds (Retry-After, Anthropic). */
    double total = 0;
    size_t i = 0;
    int any = 0;
    while (i < len && isspace((unsigned char)s[i]))
        i++;
    while (i < len && !isspace((unsigned char)s[i])) {
        char *end;
        char num[32];
        size_t n = 0;
        while (i + n < len && n < sizeof(num) - 1 &&
               (isdigit((unsigned char)s[i + n]) || s[i + n] == '.'))
            n++;
        if (n == 0)
            return -1;
        memcpy(num, s + i, n);
        num[n] = '\0';
        double v = strtod(num, &end);
        if (*end != '\0')
            return -1;
        i += n;
        double unit = 1000; /* bare number: seconds */
        if (i + 1 < len && s[i] == 'm' && s[i + 1] == 's') {
            unit = 1;
            i += 2;
        } else if (i < len && s[i] == 'h') {
            unit = 3600000;
            i++;
        } else if (i < len && s[i] == 'm') {
            unit = 60000;
            i++;
        } else if (i < len && s[i] == 's') {
            i++;
        } else if (any) {
            return -1;
        }
        total += v * unit;
        any = 1;
    }
    while (i < len && isspace((unsigned char)s[i]))
        i++;
    if (!any || i != len || total > 1e12)
        return -1;
    return (int64_t)(total + 0.5);
}

static int header_is(const char *line, size_t len, const char *name, const char **value,
                     size_t *vlen)
{
    size_t n = strlen(name);
    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
        return 0;
    const char *v = line + n + 1;
    const char *e = line + len;
    while (v < e && isspace((unsigned char)*v))
        v++;
    while (e > v && isspace((unsigned char)e[-1]))
        e--;
    *value = v;
    *vlen = (size_t)(e - v);
    return 1;
}

int corral_header_value(const char *line, size_t len, const char *name, const char **value,
                        size_t *vlen)
{
    return header_is(line, len, name, value, vlen);
}

void corral_retry_hints_header(struct corral_retry_hints *h, const char *line, size_t len,
                               int64_t now_s)
{
    const char *v;
    size_t vl;
    if (header_is(line, len, "retry-after-ms", &v, &vl)) {
        char buf[32];
        if (vl > 0 && vl < sizeof(buf)) {
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            char *end;
            double ms = strtod(buf, &end);
            if (*end == '\0' && ms >= 0 && ms < 1e12)
                h->retry_after_ms = (int64_t)ms;
        }
    } else if (header_is(line, len, "retry-after", &v, &vl)) {
        int64_t ms = corral_parse_reset_ms(v, vl);
        if (ms < 0 && vl > 0 && vl < 64) {
            /* An HTTP date: "Wed, 21 Oct 2015 07:28:00 GMT". */
            char buf[64];
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            struct tm tm;
            memset(&tm, 0, sizeof(tm));
            const char *end = strptime(buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
            if (end != NULL && *end == '\0') {
                int64_t at = (int64_t)timegm(&tm);
                ms = at > now_s ? (at - now_s) * 1000 : 0;
            }
        }
        if (ms >= 0)
            h->retry_after_ms = ms;
    } else if (header_is(line, len, "x-ratelimit-reset-requests", &v, &vl)) {
        h->reset_requests_ms = corral_parse_reset_ms(v, vl);
    } else if (header_is(line, len, "x-ratelimit-reset-tokens", &v, &vl)) {
        h->reset_tokens_ms = corral_parse_reset_ms(v, vl);
    }
}

int64_t corral_retry_hints_delay(const struct corral_retry_hints *h, int64_t default_ms,
                                 int64_t cap_ms)
{
    int64_t d = h->retry_after_ms;
    if (d < 0) {
        /* Without Retry-After, wait for whichever limit is exhausted: the
         * later of the two resets. */
        d = h->reset_requests_ms > h->reset_tokens_ms ? h->reset_requests_ms : h->reset_tokens_ms;
    }
    if (d < 0)
        d = default_ms;
    return d > cap_ms ? cap_ms : d;
}

static int body_has(const char *body, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(body + i, needle, n) == 0)
            return 1;
    return 0;
}

enum corral_verdict corral_classify(long status, const char *body, size_t len)
{
    if (status >= 200 && status < 300)
        return CORRAL_V_DONE;
    if (status == 0 || status == 408 || status >= 500)
        return CORRAL_V_RETRY;
    if (status == 429) {
        /* A billing limit does not lift by waiting a few seconds. */
        if (body_has(body, len, "insufficient_quota") || body_has(body, len, "billing_hard_limit"))
            return CORRAL_V_QUOTA;
        return CORRAL_V_THROTTLED;
    }
    return CORRAL_V_PERMANENT;
}

void corral_describe_http(long status, const char *body, size_t len, char *buf, size_t buflen)
{
    char excerpt[201];
    size_t n = len < sizeof(excerpt) - 1 ? len : sizeof(excerpt) - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)body[i];
        excerpt[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    excerpt[n] = '\0';
    if (n == 0)
        snprintf(buf, buflen, "HTTP %ld", status);
    else
        snprintf(buf, buflen, "HTTP %ld: %s%s", status, excerpt, len > n ? "..." : "");
}

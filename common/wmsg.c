/* fd 3 messages between corral-worker and corrald: a strict parser (every
 * field checked, nothing trailing) and the matching formatter. */
#include "corral/wmsg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const outcome_names[] = {"ok", "retry", "dead", "defer"};

const char *corral_wmsg_outcome_name(enum corral_wmsg_outcome o)
{
    return (unsigned)o < 4 ? outcome_names[o] : "?";
}

/* Splits line into at most max words on single spaces; returns the count,
 * or -1 when there are more. words point into buf. */
static int split(char *buf, char **words, int max)
{
    int n = 0;
    char *p = buf;
    while (*p != '\0') {
        if (n == max)
            return -1;
        words[n++] = p;
        char *sp = strchr(p, ' ');
        if (sp == NULL)
            break;
        *sp = '\0';
        p = sp + 1;
        if (*p == '\0' || *p == ' ')
            return -1; /* trailing or double space */
    }
    return n;
}

static int num(const char *s, int64_t max, int64_t *out)
{
    if (s[0] < '0' || s[0] > '9')
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

/* The named fields of a heartbeat (words[0..n)); -1 on a malformed or
 * repeated one. */
static int heartbeat_fields(char **words, int n, struct corral_wmsg *out)
{
    int seen_unwritten = 0;
    for (int i = 0; i < n; i++) {
        char *eq = strchr(words[i], '=');
        if (eq == NULL || eq == words[i] || eq[1] == '\0' ||
            strspn(words[i], "abcdefghijklmnopqrstuvwxyz_") != (size_t)(eq - words[i]))
            return -1;
        *eq = '\0';
        if (strcmp(words[i], "unwritten") == 0) {
            if (seen_unwritten++ || num(eq + 1, INT64_MAX / 2, &out->unwritten) < 0)
                return -1;
        }
    }
    return 0;
}

int corral_wmsg_parse(const char *line, struct corral_wmsg *out, struct corral_err *err)
{
    memset(out, 0, sizeof(*out));
    size_t len = strlen(line);
    if (len == 0 || len >= CORRAL_WMSG_MAX)
        return corral_err_set(err, CORRAL_ERR_INVALID, "worker message: %s",
                              len == 0 ? "empty line" : "line too long");
    char buf[CORRAL_WMSG_MAX];
    memcpy(buf, line, len + 1);
    char *w[12];
    int n = split(buf, w, 12);
    int64_t a = 0, b = 0, c = 0, d = 0;
    int ok = 0;
    if (n >= 1 && strcmp(w[0], "ready") == 0) {
        out->type = CORRAL_WMSG_READY;
        ok = n == 2 && num(w[1], 1 << 20, &a) == 0;
        out->slots = (int)a;
    } else if (n >= 1 && strcmp(w[0], "busy") == 0) {
        out->type = CORRAL_WMSG_BUSY;
        ok = n == 3 && num(w[1], 1 << 20, &a) == 0 && num(w[2], 1 << 20, &b) == 0 && a <= b;
        out->busy = (int)a;
        out->slots = (int)b;
    } else if (n >= 1 && strcmp(w[0], "done") == 0) {
        out->type = CORRAL_WMSG_DONE;
        ok = n == 4 && strlen(w[1]) >= 1 && strlen(w[1]) < sizeof(out->queue) &&
             num(w[2], INT64_MAX / 2, &a) == 0;
        if (ok) {
            snprintf(out->queue, sizeof(out->queue), "%s", w[1]);
            out->ms = a;
            ok = 0;
            for (int o = 0; o < 4; o++) {
                if (strcmp(w[3], outcome_names[o]) == 0) {
                    out->outcome = (enum corral_wmsg_outcome)o;
                    ok = 1;
                }
            }
        }
    } else if (n >= 1 && strcmp(w[0], "heartbeat") == 0) {
        out->type = CORRAL_WMSG_HEARTBEAT;
        ok = n >= 5 && num(w[1], 1 << 20, &a) == 0 && num(w[2], 1 << 20, &b) == 0 && a <= b &&
             num(w[3], INT64_MAX / 2, &c) == 0 && num(w[4], INT64_MAX / 2, &d) == 0 &&
             heartbeat_fields(w + 5, n - 5, out) == 0;
        out->busy = (int)a;
        out->slots = (int)b;
        out->jobs = c;
        out->rss_kb = d;
    } else if (n == 1 && strcmp(w[0], "stopping") == 0) {
        out->type = CORRAL_WMSG_STOPPING;
        ok = 1;
    }
    if (!ok)
        return corral_err_set(err, CORRAL_ERR_INVALID, "worker message: cannot parse \"%.64s\"",
                              line);
    return 0;
}

int corral_wmsg_format(const struct corral_wmsg *m, char *buf, size_t len)
{
    int n = -1;
    switch (m->type) {
    case CORRAL_WMSG_READY:
        n = snprintf(buf, len, "ready %d\n", m->slots);
        break;
    case CORRAL_WMSG_BUSY:
        n = snprintf(buf, len, "busy %d %d\n", m->busy, m->slots);
        break;
    case CORRAL_WMSG_DONE:
        n = snprintf(buf, len, "done %s %lld %s\n", m->queue, (long long)m->ms,
                     corral_wmsg_outcome_name(m->outcome));
        break;
    case CORRAL_WMSG_HEARTBEAT:
        n = snprintf(buf, len, "heartbeat %d %d %lld %lld unwritten=%lld\n", m->busy, m->slots,
                     (long long)m->jobs, (long long)m->rss_kb, (long long)m->unwritten);
        break;
    case CORRAL_WMSG_STOPPING:
        n = snprintf(buf, len, "stopping\n");
        break;
    }
    return n < 0 || (size_t)n >= len ? -1 : n;
}

/* corral-web's router: raw path -> canonical segments -> one row of the
 * route table. Pure: the same input always gives the same answer, and
 * nothing outside *out is written (see router.h). */
#include "router.h"

#include <stdio.h>
#include <string.h>

#include "corral/queue.h"

#define MAX_SEGS 8

/* A pattern segment: a literal, or a placeholder filled from the path. */
enum slot { LIT, QUEUE, ID, SERVICE, ASSET };

struct row {
    const char *method; /* "GET" (HEAD too) or "POST" */
    enum web_page page;
    int action;
    int nseg;
    struct {
        enum slot slot;
        const char *lit;
    } seg[MAX_SEGS];
};

#define L(s)                                                                                       \
    {                                                                                              \
        LIT, s                                                                                     \
    }
#define V(k)                                                                                       \
    {                                                                                              \
        k, NULL                                                                                    \
    }

static const struct row table[] = {
    {"GET", WEB_INDEX, 0, 0, {{LIT, NULL}}},
    {"GET", WEB_ASSET, 0, 2, {L("assets"), V(ASSET)}},
    {"GET", WEB_STATUS, 0, 2, {L("api"), L("status")}},
    {"GET", WEB_HISTORY, 0, 2, {L("api"), L("history")}},
    {"GET", WEB_SESSION, 0, 2, {L("api"), L("session")}},
    {"GET", WEB_JOB, 0, 4, {L("api"), L("jobs"), V(QUEUE), V(ID)}},
    {"GET", WEB_DEAD_LIST, 0, 4, {L("api"), L("queues"), V(QUEUE), L("dead")}},
    {"GET", WEB_METRICS, 0, 1, {L("metrics")}},
    {"GET", WEB_HEALTHZ, 0, 1, {L("healthz")}},
    {"POST", WEB_LOGIN, 0, 1, {L("login")}},
    {"POST", WEB_LOGOUT, 0, 1, {L("logout")}},
    {"POST", WEB_PAUSE, 1, 4, {L("api"), L("queues"), V(QUEUE), L("pause")}},
    {"POST", WEB_RESUME, 1, 4, {L("api"), L("queues"), V(QUEUE), L("resume")}},
    {"POST", WEB_DEAD_RETRY, 1, 5, {L("api"), L("queues"), V(QUEUE), L("dead"), L("retry")}},
    {"POST", WEB_DEAD_PURGE, 1, 5, {L("api"), L("queues"), V(QUEUE), L("dead"), L("purge")}},
    {"POST", WEB_BREAKER_RESET, 1, 4, {L("api"), L("breakers"), V(SERVICE), L("reset")}},
    {"POST", WEB_JOB_CANCEL, 1, 5, {L("api"), L("jobs"), V(QUEUE), V(ID), L("cancel")}},
};
#define NROWS (sizeof(table) / sizeof(table[0]))

int web_name_valid(const char *s)
{
    return corral_queue_name_valid(s);
}

/* An asset name: a file name of the embedded set, no path. */
static int asset_valid(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= WEB_NAME_MAX && s[0] != '.' && strstr(s, "..") == NULL &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
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

static int fail(struct web_route *out, int status, const char *why)
{
    out->page = WEB_NONE;
    out->status = status;
    out->why = why;
    return status;
}

/* The decoded segments of a path, in one buffer. */
struct segs {
    char buf[WEB_PATH_MAX + 1];
    const char *seg[MAX_SEGS];
    int n;
};

/* Splits, decodes and resolves path into s. Returns 0, or an HTTP status
 * with out filled. */
static int split(const char *path, struct segs *s, struct web_route *out)
{
    if (path[0] != '/')
        return fail(out, 400, "the path must start with /");
    size_t used = 0;
    s->n = 0;
    const char *p = path;
    while (*p != '\0') {
        p++; /* the '/' */
        size_t start = used;
        while (*p != '\0' && *p != '/') {
            unsigned char c = (unsigned char)*p;
            if (c == '%') {
                int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
                if (hi < 0 || lo < 0)
                    return fail(out, 400, "bad percent-encoding in the path");
                c = (unsigned char)(hi * 16 + lo);
                p += 3;
            } else {
                p++;
            }
            if (c < 0x20 || c == 0x7f || c == '/' || c == '\\')
                return fail(out, 400, "a path segment holds /, \\ or a control character");
            s->buf[used++] = (char)c; /* decoded is never longer than raw */
        }
        s->buf[used] = '\0';
        const char *seg = s->buf + start;
        size_t len = used - start;
        if (len == 0 || (len == 1 && seg[0] == '.')) {
            used = start; /* empty or ".": dropped */
            continue;
        }
        if (len == 2 && seg[0] == '.' && seg[1] == '.') {
            if (s->n == 0)
                return fail(out, 400, "the path climbs above the root");
            s->n--;
            used = (size_t)(s->seg[s->n] - s->buf);
            continue;
        }
        if (s->n == MAX_SEGS)
            return fail(out, 404, NULL);
        s->seg[s->n++] = seg;
        used++; /* keep the NUL */
    }
    return 0;
}

static int copy_name(char *dst, const char *src, enum slot slot, struct web_route *out)
{
    int ok = slot == ASSET ? asset_valid(src) : web_name_valid(src);
    if (!ok) {
        if (slot == ASSET)
            return fail(out, 404, NULL);
        return fail(out, 400,
                    slot == QUEUE     ? "bad queue name: use 1-64 characters of A-Z a-z 0-9 _ . : -"
                    : slot == SERVICE ? "bad service name: use 1-64 characters of A-Z a-z 0-9 _ . "
                                        ": -"
                                      : "bad job id: use 1-64 characters of A-Z a-z 0-9 _ . : -");
    }
    memcpy(dst, src, strlen(src) + 1);
    return 0;
}

static int matches(const struct row *r, const struct segs *s)
{
    if (r->nseg != s->n)
        return 0;
    for (int i = 0; i < s->n; i++)
        if (r->seg[i].slot == LIT && strcmp(r->seg[i].lit, s->seg[i]) != 0)
            return 0;
    return 1;
}

int web_route(const char *method, const char *path, struct web_route *out)
{
    memset(out, 0, sizeof(*out));
    if (strlen(path) > WEB_PATH_MAX)
        return fail(out, 414, "the path is longer than 1024 bytes");
    struct segs segs;
    int rc = split(path, &segs, out);
    if (rc != 0)
        return rc;
    int get = strcmp(method, "GET") == 0, head = strcmp(method, "HEAD") == 0;
    const struct row *found = NULL;
    for (size_t i = 0; i < NROWS; i++) {
        if (!matches(&table[i], &segs))
            continue;
        /* Literals decide the row; names are checked once it is chosen. */
        found = &table[i];
        break;
    }
    if (found == NULL)
        return fail(out, 404, NULL);
    int is_get = strcmp(found->method, "GET") == 0;
    if (is_get ? !(get || head) : strcmp(method, "POST") != 0) {
        out->allow = is_get ? "GET, HEAD" : "POST";
        return fail(out, 405, NULL);
    }
    for (int i = 0; i < segs.n; i++) {
        char *dst = found->seg[i].slot == QUEUE     ? out->queue
                    : found->seg[i].slot == ID      ? out->id
                    : found->seg[i].slot == SERVICE ? out->service
                    : found->seg[i].slot == ASSET   ? out->asset
                                                    : NULL;
        if (dst != NULL && copy_name(dst, segs.seg[i], found->seg[i].slot, out) != 0)
            return out->status;
    }
    out->page = found->page;
    out->action = found->action;
    out->head = head;
    out->status = 200;
    return 200;
}

int web_route_path(const struct web_route *r, char *buf, size_t len)
{
    if (r->page == WEB_NONE || len == 0)
        return -1;
    const struct row *row = NULL;
    for (size_t i = 0; i < NROWS && row == NULL; i++)
        if (table[i].page == r->page)
            row = &table[i];
    if (row == NULL)
        return -1;
    size_t used = 0;
    if (row->nseg == 0)
        used = (size_t)snprintf(buf, len, "/");
    for (int i = 0; i < row->nseg && used < len; i++) {
        const char *v = row->seg[i].slot == LIT       ? row->seg[i].lit
                        : row->seg[i].slot == QUEUE   ? r->queue
                        : row->seg[i].slot == ID      ? r->id
                        : row->seg[i].slot == SERVICE ? r->service
                                                      : r->asset;
        used += (size_t)snprintf(buf + used, len - used, "/%s", v);
    }
    return used < len ? (int)used : -1;
}

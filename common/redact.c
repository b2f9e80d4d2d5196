/* The redactor of redact.h. Secrets are kept lower-cased. A text is
 * searched in up to three views: as written, unescaped once (percent-,
 * JSON- and HTML-escapes undone) and unescaped twice, each lower-cased
 * and mapped back to the text through the escapes it undid, so a secret
 * found in any view marks the bytes of the text it came from; the marked
 * runs are replaced. A text without secrets costs a lower-cased copy and
 * one memmem per secret and view. */
#include "corral/redact.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "corral/util.h"

#define VIEWS 3
/* A word or name=value's value split from a credential header is taken as
 * a secret only from this length: "dark" in "theme=dark" is not one. */
#define MIN_WORD 8

struct secret {
    unsigned char *s; /* lower-cased */
    size_t len;
};

struct corral_redactor {
    struct secret *v;
    size_t n, cap;
};

/* Every CHECKPOINT bytes of a view, where the view and its parent were
 * in step: where a match lies in the parent is found by decoding again
 * from the checkpoint before it, so decoding records nothing per escape. */
#ifndef REDACT_CHECKPOINT
#define REDACT_CHECKPOINT 4096 /* the fuzz build makes it small, to reach the replay */
#endif
#define CHECKPOINT REDACT_CHECKPOINT

struct checkpoint {
    size_t at, from; /* view offset, parent offset */
};

/* A text as seen through some unescaping, lower-cased: the text itself
 * (parent NULL) or its parent with one level of escapes undone. */
struct view {
    unsigned char *b;
    size_t n;
    struct checkpoint *cps;
    size_t ncps;
    const struct view *parent;
};

/* Replaced runs of the text, [from, to). */
struct spans {
    struct span {
        size_t from, to;
    } * v;
    size_t n, cap;
};

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

static size_t unescape_one(const unsigned char *b, size_t i, size_t n, unsigned char *out,
                           size_t *nout);

/* Where byte i of a view (or its end, i == n) starts in the text. A byte
 * of an escape maps to the escape's start; the view's end to the text's
 * end (an escape cut by the end is left out of a view but ends it). */
static size_t pos(const struct view *v, size_t i)
{
    for (; v->parent != NULL; v = v->parent) {
        const unsigned char *b = v->parent->b;
        size_t n = v->parent->n;
        if (i >= v->n) {
            i = n;
            continue;
        }
        size_t c = i / CHECKPOINT < v->ncps ? i / CHECKPOINT : v->ncps - 1;
        while (c > 0 && v->cps[c].at > i)
            c--;
        size_t at = v->cps[c].at, from = v->cps[c].from;
        for (;;) {
            unsigned char buf[4];
            size_t nb = 1, used = unescape_one(b, from, n, buf, &nb);
            if (used == 0 || used == (size_t)-1)
                used = nb = 1;
            if (i < at + nb)
                break;
            at += nb;
            from += used;
        }
        i = from;
    }
    return i;
}

struct corral_redactor *corral_redactor_new(void)
{
    return corral_xcalloc(1, sizeof(struct corral_redactor));
}

void corral_redactor_free(struct corral_redactor *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++) {
        explicit_bzero(r->v[i].s, r->v[i].len);
        free(r->v[i].s);
    }
    free(r->v);
    free(r);
}

size_t corral_redactor_count(const struct corral_redactor *r)
{
    return r != NULL ? r->n : 0;
}

int corral_redactor_add(struct corral_redactor *r, const char *secret, size_t len)
{
    if (r == NULL || secret == NULL || len < CORRAL_REDACT_MIN_SECRET)
        return 0;
    unsigned char *low = corral_xmalloc(len + 1);
    for (size_t i = 0; i < len; i++)
        low[i] = lower((unsigned char)secret[i]);
    low[len] = '\0';
    for (size_t i = 0; i < r->n; i++) {
        if (r->v[i].len == len && memcmp(r->v[i].s, low, len) == 0) {
            explicit_bzero(low, len);
            free(low);
            return 0;
        }
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 4;
        r->v = corral_xrealloc(r->v, r->cap * sizeof(*r->v));
    }
    r->v[r->n].s = low;
    r->v[r->n].len = len;
    r->n++;
    return 1;
}

int corral_header_is_secret(const char *line)
{
    static const char *const words[] = {"auth",   "cookie", "key",     "token",
                                        "secret", "passw",  "session", "signature"};
    size_t n = strcspn(line, ":");
    for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
        size_t wl = strlen(words[w]);
        for (size_t i = 0; i + wl <= n; i++)
            if (strncasecmp(line + i, words[w], wl) == 0)
                return 1;
    }
    return 0;
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Base64 (standard or URL-safe, padding optional) into out (len/4*3+3
 * bytes); the decoded length, or -1 when s is not base64. */
static long b64decode(const char *s, size_t len, char *out)
{
    while (len > 0 && s[len - 1] == '=')
        len--;
    unsigned acc = 0;
    int bits = 0;
    long o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xFF);
        }
    }
    return o;
}

/* "Basic <base64 of user:password>": the decoded pair and the password. */
static int add_basic(struct corral_redactor *r, const char *w, size_t wl)
{
    char *dec = corral_xmalloc(wl / 4 * 3 + 4);
    long dl = b64decode(w, wl, dec);
    int added = 0;
    if (dl > 0) {
        added += corral_redactor_add(r, dec, (size_t)dl);
        const char *colon = memchr(dec, ':', (size_t)dl);
        if (colon != NULL)
            added += corral_redactor_add(r, colon + 1, (size_t)(dec + dl - colon - 1));
    }
    explicit_bzero(dec, wl / 4 * 3 + 4);
    free(dec);
    return added;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

int corral_redactor_add_header(struct corral_redactor *r, const char *line)
{
    if (r == NULL || !corral_header_is_secret(line))
        return 0;
    const char *v = strchr(line, ':');
    if (v == NULL)
        return 0;
    v++;
    const char *e = v + strlen(v);
    while (v < e && is_blank(*v))
        v++;
    while (e > v && is_blank(e[-1]))
        e--;
    int added = corral_redactor_add(r, v, (size_t)(e - v));
    static const char seps[] = " \t,;";
    int first = 1, basic = 0;
    for (const char *p = v; p < e;) {
        size_t wl = strcspn(p, seps);
        if (p + wl > e)
            wl = (size_t)(e - p);
        const char *w = p;
        p += wl;
        while (p < e && strchr(seps, *p) != NULL)
            p++;
        if (wl == 0)
            continue;
        /* An auth scheme ("Bearer", "Basic") before the credentials is
         * not secret: masking it would only blur every error that names it. */
        int scheme = first && p < e;
        for (size_t i = 0; scheme && i < wl; i++)
            scheme = (w[i] >= 'a' && w[i] <= 'z') || (w[i] >= 'A' && w[i] <= 'Z');
        int was_first = first;
        first = 0;
        if (scheme) {
            basic = wl == 5 && strncasecmp(w, "basic", 5) == 0;
            continue;
        }
        if (wl >= MIN_WORD)
            added += corral_redactor_add(r, w, wl);
        const char *eq = memchr(w, '=', wl);
        if (eq != NULL && (size_t)(w + wl - eq - 1) >= MIN_WORD)
            added += corral_redactor_add(r, eq + 1, (size_t)(w + wl - eq - 1));
        if (basic && !was_first) {
            added += add_basic(r, w, wl);
            basic = 0;
        }
    }
    return added;
}

/* --- views ----------------------------------------------------------- */

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Whether b[i..n) is nothing but hex digits (an escape the text's end cut). */
static int all_hex(const unsigned char *b, size_t i, size_t n)
{
    for (; i < n; i++)
        if (hexval(b[i]) < 0)
            return 0;
    return 1;
}

static size_t utf8_put(uint32_t cp, unsigned char *out)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

static long hex4(const unsigned char *b)
{
    long v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(b[k]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* One escape at b[i..n): its bytes into out (*nout of them) and the
 * length used; 0 when b[i] starts no escape; (size_t)-1 when an escape
 * starts but the text ends before it does. */
static size_t unescape_one(const unsigned char *b, size_t i, size_t n, unsigned char *out,
                           size_t *nout)
{
    unsigned char c = b[i];
    size_t left = n - i;
    if (c == '%') {
        if (left >= 3 && hexval(b[i + 1]) >= 0 && hexval(b[i + 2]) >= 0) {
            out[0] = (unsigned char)(hexval(b[i + 1]) * 16 + hexval(b[i + 2]));
            *nout = 1;
            return 3;
        }
        return left < 3 && all_hex(b, i + 1, n) ? (size_t)-1 : 0;
    }
    if (c == '\\') {
        if (left < 2)
            return (size_t)-1;
        static const char from[] = "\"\\/'nrtbf", to[] = "\"\\/'\n\r\t\b\f";
        const char *k = memchr(from, b[i + 1], sizeof(from) - 1);
        if (k != NULL) {
            out[0] = (unsigned char)to[k - from];
            *nout = 1;
            return 2;
        }
        if (b[i + 1] != 'u')
            return 0;
        if (left < 6)
            return all_hex(b, i + 2, n) ? (size_t)-1 : 0;
        long cp = hex4(b + i + 2);
        if (cp < 0)
            return 0;
        size_t used = 6;
        if (cp >= 0xD800 && cp <= 0xDBFF && left >= 12 && b[i + 6] == '\\' && b[i + 7] == 'u') {
            long lo = hex4(b + i + 8);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                used = 12;
            }
        }
        *nout = utf8_put((uint32_t)cp, out);
        return used;
    }
    if (c == '&') {
        static const struct {
            const char *name;
            char c;
        } ents[] = {{"quot;", '"'},  {"amp;", '&'}, {"lt;", '<'},   {"gt;", '>'},
                    {"apos;", '\''}, {"sol;", '/'}, {"plus;", '+'}, {"equals;", '='}};
        for (size_t e = 0; e < sizeof(ents) / sizeof(ents[0]); e++) {
            size_t el = strlen(ents[e].name);
            if (left - 1 >= el && memcmp(b + i + 1, ents[e].name, el) == 0) {
                out[0] = (unsigned char)ents[e].c;
                *nout = 1;
                return el + 1;
            }
            if (left - 1 < el && memcmp(b + i + 1, ents[e].name, left - 1) == 0)
                return (size_t)-1;
        }
        if (left >= 2 && b[i + 1] == '#') {
            int hex = left >= 3 && b[i + 2] == 'x';
            size_t j = i + 2 + (hex ? 1 : 0);
            uint32_t cp = 0;
            size_t digits = 0;
            for (; j < n && digits < 8; j++, digits++) {
                int d = hexval(b[j]);
                if (d < 0 || (!hex && d > 9))
                    break;
                cp = cp * (hex ? 16 : 10) + (uint32_t)d;
            }
            if (j == n)
                return (size_t)-1;
            if (digits == 0 || b[j] != ';' || cp > 0x10FFFF)
                return 0;
            *nout = utf8_put(cp, out);
            return j + 1 - i;
        }
        return 0;
    }
    return 0;
}

/* Bytes that may start an escape. */
static int starts_escape(unsigned char c)
{
    return c == '%' || c == '\\' || c == '&';
}

/* The view of in with one level of escapes undone, into out; 0 (and
 * out untouched) when that changes nothing. An escape cut by the text's
 * end is left out of the view. */
static int unescape(const struct view *in, struct view *out)
{
    const unsigned char *b = in->b;
    size_t n = in->n, i = 0;
    while (i < n && !starts_escape(b[i]))
        i++;
    if (i == n)
        return 0;
    struct view v = {.b = corral_xmalloc(n + 1), .parent = in};
    v.cps = corral_xmalloc((n / CHECKPOINT + 1) * sizeof(*v.cps));
    v.cps[0] = (struct checkpoint){0, 0};
    v.ncps = 1;
    memcpy(v.b, b, i);
    size_t o = i;
    int changed = 0;
    while (i < n) {
        if (o >= v.ncps * CHECKPOINT)
            v.cps[v.ncps++] = (struct checkpoint){o, i};
        if (!starts_escape(b[i])) {
            v.b[o++] = b[i++];
            continue;
        }
        unsigned char buf[4];
        size_t nb = 0;
        size_t used = unescape_one(b, i, n, buf, &nb);
        if (used == (size_t)-1) {
            changed = 1;
            break;
        }
        if (used == 0) {
            v.b[o++] = b[i++];
            continue;
        }
        changed = 1;
        for (size_t k = 0; k < nb; k++)
            v.b[o++] = lower(buf[k]);
        i += used;
    }
    if (!changed) {
        free(v.b);
        free(v.cps);
        return 0;
    }
    v.n = o;
    *out = v;
    return 1;
}

/* --- marking and replacing -------------------------------------------- */

static void add_span(struct spans *sp, size_t from, size_t to)
{
    if (to <= from)
        return;
    if (sp->n == sp->cap) {
        sp->cap = sp->cap ? 2 * sp->cap : 8;
        sp->v = corral_xrealloc(sp->v, sp->cap * sizeof(*sp->v));
    }
    sp->v[sp->n].from = from;
    sp->v[sp->n].to = to;
    sp->n++;
}

static void mark_secrets(const struct corral_redactor *r, const struct view *v, size_t len,
                         unsigned flags, struct spans *sp)
{
    for (size_t s = 0; s < r->n; s++) {
        const struct secret *sec = &r->v[s];
        for (size_t from = 0; from + sec->len <= v->n;) {
            const unsigned char *hit = memmem(v->b + from, v->n - from, sec->s, sec->len);
            if (hit == NULL)
                break;
            size_t i = (size_t)(hit - v->b);
            add_span(sp, pos(v, i), pos(v, i + sec->len));
            from = i + 1;
        }
        if (!(flags & CORRAL_REDACT_CUT))
            continue;
        /* The text ends with the secret's start: it was cut in the secret. */
        size_t k = sec->len - 1 < v->n ? sec->len - 1 : v->n;
        for (; k >= CORRAL_REDACT_MIN_TAIL; k--) {
            if (memcmp(v->b + v->n - k, sec->s, k) == 0) {
                add_span(sp, pos(v, v->n - k), len);
                break;
            }
        }
    }
}

/* The password of each scheme://user:password@ in text. */
static void mark_userinfo(const char *text, size_t len, struct spans *sp)
{
    for (const char *p = text; (p = memmem(p, len - (size_t)(p - text), "://", 3)) != NULL;
         p += 3) {
        size_t j = (size_t)(p - text) + 3, colon = 0;
        while (j < len && strchr("/?#@ \t\r\n\"'<>", text[j]) == NULL && text[j] != '\0') {
            if (text[j] == ':' && colon == 0)
                colon = j;
            j++;
        }
        if (j < len && text[j] == '@' && colon != 0)
            add_span(sp, colon + 1, j);
    }
}

static int by_start(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    return x->from < y->from ? -1 : x->from > y->from;
}

char *corral_redact(const struct corral_redactor *r, const char *text, size_t len, unsigned flags,
                    size_t *out_len)
{
    int any_secret = r != NULL && r->n > 0;
    if (len == 0 || (!any_secret && !(flags & CORRAL_REDACT_URLS)))
        return NULL;
    struct spans sp = {0};
    if (any_secret) {
        struct view views[VIEWS];
        size_t nviews = 1;
        views[0] = (struct view){.b = corral_xmalloc(len + 1), .n = len};
        for (size_t i = 0; i < len; i++)
            views[0].b[i] = lower((unsigned char)text[i]);
        while (nviews < VIEWS && unescape(&views[nviews - 1], &views[nviews]))
            nviews++;
        for (size_t k = 0; k < nviews; k++)
            mark_secrets(r, &views[k], len, flags, &sp);
        for (size_t k = 0; k < nviews; k++) {
            free(views[k].b);
            free(views[k].cps);
        }
    }
    if (flags & CORRAL_REDACT_URLS)
        mark_userinfo(text, len, &sp);
    if (sp.n == 0)
        return NULL;
    /* Overlapping and touching runs become one. */
    qsort(sp.v, sp.n, sizeof(*sp.v), by_start);
    size_t runs = 0;
    for (size_t i = 0; i < sp.n; i++) {
        if (runs > 0 && sp.v[i].from <= sp.v[runs - 1].to) {
            if (sp.v[i].to > sp.v[runs - 1].to)
                sp.v[runs - 1].to = sp.v[i].to;
        } else {
            sp.v[runs++] = sp.v[i];
        }
    }
    size_t cut = 0;
    for (size_t i = 0; i < runs; i++)
        cut += sp.v[i].to - sp.v[i].from;
    size_t rl = strlen(CORRAL_REDACTED);
    char *out = corral_xmalloc(len - cut + runs * rl + 1);
    size_t o = 0, at = 0;
    for (size_t i = 0; i < runs; i++) {
        memcpy(out + o, text + at, sp.v[i].from - at);
        o += sp.v[i].from - at;
        memcpy(out + o, CORRAL_REDACTED, rl);
        o += rl;
        at = sp.v[i].to;
    }
    memcpy(out + o, text + at, len - at);
    o += len - at;
    out[o] = '\0';
    free(sp.v);
    if (out_len != NULL)
        *out_len = o;
    return out;
}

int corral_redact_buf(const struct corral_redactor *r, char *buf, size_t cap, unsigned flags)
{
    if (cap == 0)
        return 0;
    int changed = 0;
    /* A cut made here may end the text in a secret's start: once more with
     * CORRAL_REDACT_CUT then (the second pass only shortens). */
    for (int pass = 0; pass < 2; pass++) {
        size_t ol;
        char *out = corral_redact(r, buf, strnlen(buf, cap - 1), flags, &ol);
        if (out == NULL)
            break;
        changed = 1;
        int cut = ol > cap - 1;
        if (cut)
            ol = cap - 1;
        memcpy(buf, out, ol);
        buf[ol] = '\0';
        free(out);
        if (!cut)
            break;
        flags |= CORRAL_REDACT_CUT;
    }
    return changed;
}

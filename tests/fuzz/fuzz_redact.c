/* libFuzzer target for the redactor (common/redact.c): no secret survives
 * any text. Input: a flags byte (bit 0 CUT, bit 1 URLS, bit 2 the secret is
 * also given as a credential header's value), a length byte L (mod 64),
 * L bytes of secret, then the text. Checked on the output: the secret does
 * not appear in it in any letter case, nor once a reference decoder (a
 * subset of what redact.c undoes, written apart from it: percent-escapes,
 * JSON's simple and \u00XX escapes, HTML's five named and ASCII numeric
 * entities) has read it; with CUT it does not end with the secret's first
 * CORRAL_REDACT_MIN_TAIL or more bytes; a NULL answer means the text held
 * no secret as written; the output is NUL-terminated at its length. A
 * secret with a bracket, or inside "redacted", is only run, not checked:
 * the replacement itself would match it; one with an escape's first
 * character (\ % &) is not checked through the reference decoder. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/redact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned char low(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static int hexv(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The reference decoder: lower-cases, then undoes one level of escapes. */
static size_t decode(const unsigned char *in, size_t n, unsigned char *out)
{
    unsigned char *t = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        t[i] = low(in[i]);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (t[i] == '%' && i + 2 < n && hexv(t[i + 1]) >= 0 && hexv(t[i + 2]) >= 0) {
            out[o++] = (unsigned char)(hexv(t[i + 1]) * 16 + hexv(t[i + 2]));
            i += 3;
        } else if (t[i] == '\\' && i + 1 < n && strchr("\"\\/", t[i + 1]) && t[i + 1]) {
            out[o++] = t[i + 1];
            i += 2;
        } else if (t[i] == '\\' && i + 5 < n && t[i + 1] == 'u' && t[i + 2] == '0' &&
                   t[i + 3] == '0' && hexv(t[i + 4]) >= 0 && hexv(t[i + 4]) < 8 &&
                   hexv(t[i + 5]) >= 0) {
            out[o++] = (unsigned char)(hexv(t[i + 4]) * 16 + hexv(t[i + 5]));
            i += 6;
        } else if (t[i] == '&' && i + 5 < n && memcmp(t + i, "&quot;", 6) == 0) {
            out[o++] = '"';
            i += 6;
        } else if (t[i] == '&' && i + 4 < n && memcmp(t + i, "&amp;", 5) == 0) {
            out[o++] = '&';
            i += 5;
        } else if (t[i] == '&' && i + 3 < n && memcmp(t + i, "&lt;", 4) == 0) {
            out[o++] = '<';
            i += 4;
        } else if (t[i] == '&' && i + 3 < n && memcmp(t + i, "&gt;", 4) == 0) {
            out[o++] = '>';
            i += 4;
        } else if (t[i] == '&' && i + 4 < n && t[i + 1] == '#' && t[i + 2] >= '0' &&
                   t[i + 2] <= '9' && t[i + 3] >= '0' && t[i + 3] <= '9' && t[i + 4] == ';' &&
                   (t[i + 2] - '0') * 10 + (t[i + 3] - '0') > 0) {
            out[o++] = (unsigned char)((t[i + 2] - '0') * 10 + (t[i + 3] - '0'));
            i += 5;
        } else {
            out[o++] = t[i++];
        }
    }
    free(t);
    return o;
}

static int contains(const unsigned char *h, size_t hn, const unsigned char *s, size_t sn)
{
    return sn > 0 && memmem(h, hn, s, sn) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned flags = data[0] & 3;
    int as_header = data[0] & 4;
    size_t sl = data[1] % 64;
    if (size < 2 + sl)
        return 0;
    const unsigned char *secret = data + 2;
    const char *text = (const char *)data + 2 + sl;
    size_t tl = size - 2 - sl;

    struct corral_redactor *r = corral_redactor_new();
    int added = corral_redactor_add(r, (const char *)secret, sl);
    if (as_header && memchr(secret, '\0', sl) == NULL) {
        char line[96];
        snprintf(line, sizeof(line), "X-Api-Key: %.*s", (int)sl, (const char *)secret);
        corral_redactor_add_header(r, line);
    }
    size_t ol = 0;
    char *out = corral_redact(r, text, tl, flags, &ol);

    unsigned char sec[64] = {0};
    for (size_t i = 0; i < sl; i++)
        sec[i] = low(secret[i]);
    int checked = added && memchr(sec, '[', sl) == NULL && memchr(sec, ']', sl) == NULL &&
                  !contains((const unsigned char *)"redacted", 8, sec, sl);
    if (out != NULL && (strlen(out) > ol || out[ol] != '\0'))
        abort(); /* NULs inside are the text's own; the end must be one */
    /* A secret written with escapes itself ("a\\u0041") reads differently
     * through the reference decoder, which undoes fewer than redact.c. */
    int escapes = memchr(sec, '\\', sl) || memchr(sec, '%', sl) || memchr(sec, '&', sl);
    const unsigned char *res =
        out != NULL ? (const unsigned char *)out : (const unsigned char *)text;
    size_t rl = out != NULL ? ol : tl;
    if (checked) {
        unsigned char *lowered = malloc(rl + 1);
        for (size_t i = 0; i < rl; i++)
            lowered[i] = low(res[i]);
        if (contains(lowered, rl, sec, sl)) {
            fprintf(stderr, "the secret survives as written\n");
            abort();
        }
        unsigned char *dec = malloc(rl + 1);
        size_t dl = decode(res, rl, dec);
        if (!escapes && contains(dec, dl, sec, sl)) {
            fprintf(stderr, "the secret survives escaped\n");
            abort();
        }
        if (flags & CORRAL_REDACT_CUT) {
            for (size_t k = CORRAL_REDACT_MIN_TAIL; k < sl && k <= rl; k++) {
                if (memcmp(lowered + rl - k, sec, k) == 0) {
                    fprintf(stderr, "the secret's first %zu bytes end the text\n", k);
                    abort();
                }
            }
        }
        free(dec);
        free(lowered);
    }
    free(out);
    corral_redactor_free(r);
    return 0;
}

/* libFuzzer target for what the worker reads from an AI service's answer:
 * the input is a raw HTTP/1.1 response (status line, headers, blank line,
 * body). Each header line goes through the rate-limit hint parser
 * (Retry-After, retry-after-ms, x-ratelimit-reset-*), the status and body
 * through the classifier and the error text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A fixed clock, so HTTP-date Retry-After values replay the same. */
#define NOW_S 1763900000

static long status_of(const char *line, size_t len)
{
    /* "HTTP/1.1 429 ..." or "HTTP/2 200": the three digits after a blank. */
    const char *sp = memchr(line, ' ', len);
    if (sp == NULL || (size_t)(line + len - sp) < 4)
        return 0;
    long st = 0;
    for (int i = 1; i <= 3; i++) {
        if (sp[i] < '0' || sp[i] > '9')
            return 0;
        st = st * 10 + (sp[i] - '0');
    }
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    /* An exact-size copy, so reading past a header line shows up. */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    const char *p = buf, *end = buf + size;
    long status = 0;
    struct corral_retry_hints h;
    corral_retry_hints_init(&h);
    int first = 1;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
        char *line = malloc(len ? len : 1);
        memcpy(line, p, len);
        p += len;
        if (first) {
            status = status_of(line, len);
            first = 0;
        } else if (len <= 2 && (len == 0 || line[0] == '\r' || line[0] == '\n')) {
            free(line);
            break; /* the blank line: the body follows */
        } else {
            corral_retry_hints_header(&h, line, len, NOW_S);
            int64_t r = corral_parse_reset_ms(line, len);
            if (r < -1 || r > 1000000000000LL)
                abort();
        }
        free(line);
    }
    if (h.retry_after_ms < -1 || h.reset_requests_ms < -1 || h.reset_tokens_ms < -1)
        abort();
    int64_t d = corral_retry_hints_delay(&h, 1000, 300000);
    if (d < 0 || d > 300000)
        abort();
    size_t blen = (size_t)(end - p);
    enum corral_verdict v = corral_classify(status, p, blen);
    if ((unsigned)v > CORRAL_V_PERMANENT)
        abort();
    char small[16], big[512];
    corral_describe_http(status, p, blen, small, sizeof(small));
    corral_describe_http(status, p, blen, big, sizeof(big));
    if (strlen(small) >= sizeof(small) || strlen(big) >= sizeof(big))
        abort();
    for (const char *c = big; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            abort(); /* control characters are replaced: the text goes into logs */
    free(buf);
    return 0;
}

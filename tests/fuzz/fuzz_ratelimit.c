/* libFuzzer target for the rate-limit side of an answer: the input is a
 * raw HTTP/1.1 response (status line, headers, blank line, body). Each
 * header line goes through the token and request windows of OpenAI and
 * Anthropic (durations, RFC 3339 times, Retry-After), the body through the
 * token/request 429 test. Windows are -1 or in range, the delay within its
 * cap, the service's token view one of its windows. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A fixed clock, so times replay the same: 2025-11-23T12:53:20Z. */
#define NOW_MS 1763902400000LL

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "check failed: %s\n", #c);                                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_window(const struct corral_rl_window *w)
{
    CHECK(w->limit >= -1 && w->limit <= 1000000000000LL);
    CHECK(w->remaining >= -1 && w->remaining <= 1000000000000LL);
    CHECK(w->reset_ms >= -1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    const char *p = buf, *end = buf + size;
    struct corral_ratelimit rl;
    corral_ratelimit_init(&rl);
    int first = 1;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
        /* An exact-size copy, so a read past the line shows. */
        char *line = malloc(len ? len : 1);
        memcpy(line, p, len);
        p += len;
        if (first) {
            first = 0;
        } else if (len <= 2 && (line[0] == '\r' || line[0] == '\n')) {
            free(line);
            break;
        } else {
            corral_ratelimit_header(&rl, line, len, NOW_MS);
            const char *colon = memchr(line, ':', len);
            if (colon != NULL) {
                const char *v = colon + 1;
                size_t vl = (size_t)(line + len - v);
                while (vl > 0 && (*v == ' ' || *v == '\t')) {
                    v++;
                    vl--;
                }
                while (vl > 0 && (v[vl - 1] == '\n' || v[vl - 1] == '\r'))
                    vl--;
                int64_t t = corral_parse_rfc3339_ms(v, vl);
                CHECK(t >= -1);
            }
        }
        free(line);
    }
    check_window(&rl.requests);
    check_window(&rl.tokens);
    check_window(&rl.input_tokens);
    check_window(&rl.output_tokens);
    size_t blen = (size_t)(end - p);
    enum corral_limit_kind k = corral_ratelimit_kind(&rl, p, blen);
    CHECK(k <= CORRAL_LIMIT_TOKENS);
    for (int kind = CORRAL_LIMIT_UNKNOWN; kind <= CORRAL_LIMIT_TOKENS; kind++) {
        int64_t d = corral_ratelimit_delay(&rl, (enum corral_limit_kind)kind, 1000, 300000);
        CHECK(d >= 0 && d <= 300000);
    }
    struct corral_rl_window w;
    if (corral_ratelimit_tokens_view(&rl, &w)) {
        CHECK(w.remaining >= 0);
        CHECK(w.remaining == rl.tokens.remaining || w.remaining == rl.input_tokens.remaining ||
              w.remaining == rl.output_tokens.remaining);
        CHECK(rl.tokens.remaining < 0 || w.remaining <= rl.tokens.remaining);
    } else {
        CHECK(rl.tokens.remaining < 0 && rl.input_tokens.remaining < 0 &&
              rl.output_tokens.remaining < 0);
    }
    free(buf);
    return 0;
}

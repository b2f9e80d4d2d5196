/* How an AI service's HTTP answer maps to a job outcome, and when a 429
 * says to try again. Pure functions: unit-tested without a network. */
#ifndef CORRAL_CLASSIFY_H
#define CORRAL_CLASSIFY_H

#include <stddef.h>
#include <stdint.h>

enum corral_verdict {
    CORRAL_V_DONE,      /* 2xx: the body is the result */
    CORRAL_V_RETRY,     /* timeouts, connection errors, 408, 5xx */
    CORRAL_V_THROTTLED, /* 429: defer without spending an attempt */
    CORRAL_V_QUOTA,     /* 429 with a billing error: waiting seconds will not help */
    CORRAL_V_PERMANENT, /* other 4xx, oversized answers */
};

/* Rate-limit hints from response headers, in ms; -1 when absent. */
struct corral_retry_hints {
    int64_t retry_after_ms;
    int64_t reset_requests_ms;
    int64_t reset_tokens_ms;
};

void corral_retry_hints_init(struct corral_retry_hints *h);
/* When a raw header line ("Name: value\r\n") is the header name (any
 * case): 1 with its value, blanks around it taken off, in *value and
 * *vlen; else 0. */
int corral_header_value(const char *line, size_t len, const char *name, const char **value,
                        size_t *vlen);
/* Feeds one raw header line ("Name: value\r\n"); now_s is the wall clock
 * for Retry-After given as an HTTP date. */
void corral_retry_hints_header(struct corral_retry_hints *h, const char *line, size_t len,
                               int64_t now_s);
/* How long to defer after a 429: the longest hint, default_ms when none,
 * capped at cap_ms. */
int64_t corral_retry_hints_delay(const struct corral_retry_hints *h, int64_t default_ms,
                                 int64_t cap_ms);

/* Parses durations as rate-limit headers write them: "1s", "6m0s", "20ms",
 * "1h2m3.5s", or a bare number of seconds ("2", "0.5"). -1 when unreadable. */
int64_t corral_parse_reset_ms(const char *s, size_t len);

/* The verdict for an HTTP status (0 = no response: transport error or
 * timeout) and its body. */
enum corral_verdict corral_classify(long status, const char *body, size_t len);

/* "HTTP 503: <first bytes of the body, control characters replaced>"
 * into buf. The body is the service's answer, never our request. */
void corral_describe_http(long status, const char *body, size_t len, char *buf, size_t buflen);

#endif

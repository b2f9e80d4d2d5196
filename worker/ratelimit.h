/* What an AI service's answer says of its rate limits: the token and
 * request windows of OpenAI's x-ratelimit-* and Anthropic's
 * anthropic-ratelimit-* headers, Retry-After, and whether a 429 is about
 * tokens or requests (docs/tokens.md, "The provider's view"). Builds on
 * classify.h's retry hints. Pure: no I/O. */
#ifndef CORRAL_RATELIMIT_H
#define CORRAL_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "classify.h"

/* One window as the service reports it; -1 for what it did not say (or
 * said in a form that does not parse). reset_ms is from the answer's time. */
struct corral_rl_window {
    int64_t limit;
    int64_t remaining;
    int64_t reset_ms;
};

struct corral_ratelimit {
    struct corral_retry_hints hints; /* Retry-After, retry-after-ms, x-ratelimit-reset-* */
    struct corral_rl_window requests;
    struct corral_rl_window tokens;        /* OpenAI's, or Anthropic's combined window */
    struct corral_rl_window input_tokens;  /* Anthropic */
    struct corral_rl_window output_tokens; /* Anthropic */
};

enum corral_limit_kind {
    CORRAL_LIMIT_UNKNOWN,  /* nothing in the answer says which limit */
    CORRAL_LIMIT_REQUESTS, /* requests per period */
    CORRAL_LIMIT_TOKENS,   /* tokens per period (input, output or both) */
};

void corral_ratelimit_init(struct corral_ratelimit *rl);

/* Feeds one raw header line ("Name: value\r\n"). now_ms is the wall clock,
 * for resets written as a time (RFC 3339, Anthropic) or an HTTP date
 * (Retry-After). Counts are integers from 0 to 10^12; resets are Go-style
 * durations ("6m0s", "1.5s", "20ms"), seconds, or a time. Anything else is
 * ignored, leaving -1. */
void corral_ratelimit_header(struct corral_ratelimit *rl, const char *line, size_t len,
                             int64_t now_ms);

/* What a 429 is about. In order: the error body's own type (OpenAI's
 * "tokens" or "requests"); then the headers (a token window at 0 remaining
 * while requests are left, or the other way round; both at 0 is tokens);
 * then the error message's words ("tokens per min (TPM)", "input tokens
 * per minute", "requests per min (RPM)"); else UNKNOWN. */
enum corral_limit_kind corral_ratelimit_kind(const struct corral_ratelimit *rl, const char *body,
                                             size_t len);

/* How long to defer after a 429 of that kind: Retry-After when given;
 * else, for TOKENS, the latest reset of the token windows at 0 (of any
 * token window when none says 0); for REQUESTS, the requests window's
 * reset; for UNKNOWN, the later of the two. default_ms when nothing says,
 * capped at cap_ms. */
int64_t corral_ratelimit_delay(const struct corral_ratelimit *rl, enum corral_limit_kind kind,
                               int64_t default_ms, int64_t cap_ms);

/* The service's own view of its token budget: the fewest tokens remaining
 * in any token window it reported, with that window's limit and reset (-1
 * when not said). Returns 1 when some token window gave a remaining count,
 * else 0 and leaves out untouched. */
int corral_ratelimit_tokens_view(const struct corral_ratelimit *rl, struct corral_rl_window *out);

/* An RFC 3339 time ("2024-05-01T12:00:30Z", "...30.25+02:00") as Unix ms,
 * or -1 when it is not one. */
int64_t corral_parse_rfc3339_ms(const char *s, size_t len);

#endif

/* Rate-limit headers and 429 bodies of OpenAI and Anthropic, read for the
 * token budget (docs/tokens.md): how many tokens the service says are left
 * and when its window resets, and whether a 429 is about tokens or
 * requests, so a token 429 defers by the token window's reset. */
#include "ratelimit.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#define COUNT_MAX 1000000000000LL

static void window_init(struct corral_rl_window *w)
{
    w->limit = w->remaining = w->reset_ms = -1;
}

void corral_ratelimit_init(struct corral_ratelimit *rl)
{
    corral_retry_hints_init(&rl->hints);
    window_init(&rl->requests);
    window_init(&rl->tokens);
    window_init(&rl->input_tokens);
    window_init(&rl->output_tokens);
}

/* Reads d digits as a number; -1 when they are not all digits. */
static int digits(const char *s, int d)
{
    int v = 0;
    for (int i = 0; i < d; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int64_t corral_parse_rfc3339_ms(const char *s, size_t len)
{
    /* YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM) */
    if (len < 20 || len > 64)
        return -1;
    int Y = digits(s, 4), M = digits(s + 5, 2), D = digits(s + 8, 2);
    int h = digits(s + 11, 2), m = digits(s + 14, 2), sec = digits(s + 17, 2);
    if (Y < 1970 || M < 1 || M > 12 || D < 1 || D > 31 || h < 0 || h > 23 || m < 0 || m > 59 ||
        sec < 0 || sec > 60 || s[4] != '-' || s[7] != '-' || s[13] != ':' || s[16] != ':' ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' '))
        return -1;
    size_t i = 19;
    int64_t frac_ms = 0;
    if (i < len && s[i] == '.') {
        size_t start = ++i;
        int64_t scale = 100;
        for (; i < len && isdigit((unsigned char)s[i]); i++) {
            frac_ms += (s[i] - '0') * scale;
            scale /= 10;
        }
        if (i == start)
            return -1;
    }
    int64_t offset_s = 0;
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return -1;
        offset_s = (s[i] == '-' ? -1 : 1) * (oh * 3600 + om * 60);
        i += 6;
    } else {
        return -1;
    }
    if (i != len)
        return -1;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || tm.tm_mday != D) /* 31 February rolls over: not a date */
        return -1;
    return ((int64_t)t - offset_s) * 1000 + frac_ms;
}

/* A count header: an integer from 0 to COUNT_MAX, else -1. */
static int64_t parse_count(const char *v, size_t n)
{
    if (n == 0 || n > 13)
        return -1;
    int64_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)v[i]))
            return -1;
        c = c * 10 + (v[i] - '0');
    }
    return c <= COUNT_MAX ? c : -1;
}

/* A reset: a duration from now, or a time (relative to now_ms, at least 0). */
static int64_t parse_reset(const char *v, size_t n, int64_t now_ms)
{
    int64_t d = corral_parse_reset_ms(v, n);
    if (d >= 0)
        return d;
    int64_t at = corral_parse_rfc3339_ms(v, n);
    if (at < 0)
        return -1;
    return at > now_ms ? at - now_ms : 0;
}

/* "<prefix>limit", "<prefix>remaining", "<prefix>reset" into w. */
static int window_header(struct corral_rl_window *w, const char *line, size_t len,
                         const char *const names[3], int64_t now_ms)
{
    const char *v;
    size_t vl;
    if (corral_header_value(line, len, names[0], &v, &vl))
        w->limit = parse_count(v, vl);
    else if (corral_header_value(line, len, names[1], &v, &vl))
        w->remaining = parse_count(v, vl);
    else if (corral_header_value(line, len, names[2], &v, &vl))
        w->reset_ms = parse_reset(v, vl, now_ms);
    else
        return 0;
    return 1;
}

void corral_ratelimit_header(struct corral_ratelimit *rl, const char *line, size_t len,
                             int64_t now_ms)
{
    static const char *const oa_req[] = {"x-ratelimit-limit-requests",
                                         "x-ratelimit-remaining-requests",
                                         "x-ratelimit-reset-requests"};
    static const char *const oa_tok[] = {"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
                                         "x-ratelimit-reset-tokens"};
    static const char *const an_req[] = {"anthropic-ratelimit-requests-limit",
                                         "anthropic-ratelimit-requests-remaining",
                                         "anthropic-ratelimit-requests-reset"};
    static const char *const an_tok[] = {"anthropic-ratelimit-tokens-limit",
                                         "anthropic-ratelimit-tokens-remaining",
                                         "anthropic-ratelimit-tokens-reset"};
    static const char *const an_in[] = {"anthropic-ratelimit-input-tokens-limit",
                                        "anthropic-ratelimit-input-tokens-remaining",
                                        "anthropic-ratelimit-input-tokens-reset"};
    static const char *const an_out[] = {"anthropic-ratelimit-output-tokens-limit",
                                         "anthropic-ratelimit-output-tokens-remaining",
                                         "anthropic-ratelimit-output-tokens-reset"};
    corral_retry_hints_header(&rl->hints, line, len, now_ms / 1000);
    if (len < 12 || (strncasecmp(line, "x-ratelimit-", 12) != 0 &&
                     (len < 20 || strncasecmp(line, "anthropic-ratelimit-", 20) != 0)))
        return;
    if (window_header(&rl->requests, line, len, oa_req, now_ms) ||
        window_header(&rl->tokens, line, len, oa_tok, now_ms) ||
        window_header(&rl->requests, line, len, an_req, now_ms) ||
        window_header(&rl->tokens, line, len, an_tok, now_ms) ||
        window_header(&rl->input_tokens, line, len, an_in, now_ms))
        return;
    window_header(&rl->output_tokens, line, len, an_out, now_ms);
}

static const struct corral_rl_window *token_window(const struct corral_ratelimit *rl, int i)
{
    return i == 0 ? &rl->tokens : i == 1 ? &rl->input_tokens : &rl->output_tokens;
}

/* Case-insensitive search in the first bytes of a message. */
static int says(const char *msg, const char *words)
{
    size_t n = strlen(words), len = strnlen(msg, 2048);
    for (size_t i = 0; i + n <= len; i++)
        if (strncasecmp(msg + i, words, n) == 0)
            return 1;
    return 0;
}

static enum corral_limit_kind kind_from_words(const char *msg)
{
    static const char *const tok[] = {"tokens per min", "tokens per day", "(TPM)", "(TPD)",
                                      "tokens per minute"};
    static const char *const req[] = {"requests per min", "requests per day", "(RPM)", "(RPD)"};
    for (size_t i = 0; i < sizeof(tok) / sizeof(tok[0]); i++)
        if (says(msg, tok[i]))
            return CORRAL_LIMIT_TOKENS;
    for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++)
        if (says(msg, req[i]))
            return CORRAL_LIMIT_REQUESTS;
    return CORRAL_LIMIT_UNKNOWN;
}

enum corral_limit_kind corral_ratelimit_kind(const struct corral_ratelimit *rl, const char *body,
                                             size_t len)
{
    json_t *root = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    const json_t *e = json_object_get(root, "error");
    const char *type = json_string_value(json_object_get(e, "type"));
    enum corral_limit_kind kind = CORRAL_LIMIT_UNKNOWN;
    /* 1. OpenAI names the limit in the error's type. */
    if (type != NULL && (strcmp(type, "tokens") == 0 || strcmp(type, "tokens_usage_based") == 0))
        kind = CORRAL_LIMIT_TOKENS;
    else if (type != NULL && strcmp(type, "requests") == 0)
        kind = CORRAL_LIMIT_REQUESTS;
    /* 2. The window the headers show exhausted. */
    if (kind == CORRAL_LIMIT_UNKNOWN) {
        int tokens_out = 0;
        for (int i = 0; i < 3; i++)
            tokens_out |= token_window(rl, i)->remaining == 0;
        if (tokens_out)
            kind = CORRAL_LIMIT_TOKENS;
        else if (rl->requests.remaining == 0)
            kind = CORRAL_LIMIT_REQUESTS;
    }
    /* 3. The words of the error's message. */
    if (kind == CORRAL_LIMIT_UNKNOWN) {
        const char *msg = json_string_value(json_object_get(e, "message"));
        if (msg != NULL)
            kind = kind_from_words(msg);
    }
    json_decref(root);
    return kind;
}

int64_t corral_ratelimit_delay(const struct corral_ratelimit *rl, enum corral_limit_kind kind,
                               int64_t default_ms, int64_t cap_ms)
{
    int64_t d = rl->hints.retry_after_ms;
    int64_t tok_out = -1, tok_any = -1;
    for (int i = 0; i < 3; i++) {
        const struct corral_rl_window *w = token_window(rl, i);
        if (w->reset_ms > tok_any)
            tok_any = w->reset_ms;
        if (w->remaining == 0 && w->reset_ms > tok_out)
            tok_out = w->reset_ms;
    }
    int64_t tok = tok_out >= 0 ? tok_out : tok_any;
    if (d < 0) {
        if (kind == CORRAL_LIMIT_TOKENS)
            d = tok;
        else if (kind == CORRAL_LIMIT_REQUESTS)
            d = rl->requests.reset_ms;
        else
            d = tok > rl->requests.reset_ms ? tok : rl->requests.reset_ms;
    }
    if (d < 0)
        d = default_ms;
    return d > cap_ms ? cap_ms : d;
}

int corral_ratelimit_tokens_view(const struct corral_ratelimit *rl, struct corral_rl_window *out)
{
    const struct corral_rl_window *best = NULL;
    for (int i = 0; i < 3; i++) {
        const struct corral_rl_window *w = token_window(rl, i);
        if (w->remaining >= 0 && (best == NULL || w->remaining < best->remaining))
            best = w;
    }
    if (best == NULL)
        return 0;
    *out = *best;
    return 1;
}

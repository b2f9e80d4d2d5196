/* A job's token estimate, before the call: the enqueue option `tokens` when
 * given, else the payload's output cap plus its size over bytes_per_token
 * (docs/tokens.md, "The estimate"). Pure: no I/O. The Function library
 * computes the same estimate at enqueue; this is the rule it follows and
 * what the worker and `corrald --check` use. */
#ifndef CORRAL_TOKENS_H
#define CORRAL_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "corral/cost.h"
#include "corral/err.h"

#define CORRAL_BYTES_PER_TOKEN 4 /* the default of [service] bytes_per_token */

/* The code word of an enqueue refused for its `tokens` option: a refusal
 * of its own, apart from BADOPTION (docs/tokens.md). */
#define CORRAL_TOKENS_WORD "BADTOKENS"

enum corral_estimate_source {
    CORRAL_ESTIMATE_PAYLOAD, /* from the payload's size and output cap */
    CORRAL_ESTIMATE_OPTION,  /* the enqueue option `tokens` */
};

struct corral_estimate {
    int64_t input_tokens;  /* payload: ceil(size / bytes_per_token); option: tokens */
    int64_t output_tokens; /* payload: the output cap, 0 without one; option: 0 */
    enum corral_estimate_source source;
    char model[CORRAL_MODEL_MAX + 1]; /* the payload's "model", "" when it names none */
};

/* Estimates the tokens of a call with this payload (any bytes: a payload
 * that is not a JSON object has no output cap) at bytes_per_token (below 1
 * counts as 1). option_tokens > 0 (the enqueue option) overrides the
 * payload. Never fails; each part is at most CORRAL_TOKENS_MAX. */
void corral_tokens_estimate(const char *payload, size_t len, int bytes_per_token,
                            int64_t option_tokens, struct corral_estimate *out);

/* input + output: what the budget must have room for. */
int64_t corral_estimate_total(const struct corral_estimate *e);

/* The payload's output cap: the largest of its top-level max_tokens,
 * max_completion_tokens and max_output_tokens that is a number with an
 * integral value from 1 to CORRAL_TOKENS_MAX (100.0 counts as 100, as in
 * Lua; others are ignored); 0 when none is. */
int64_t corral_tokens_output_cap(const char *payload, size_t len);

struct corral_service_conf;

/* Whether a job with estimate e can never be granted by service sv's
 * budgets: its estimated tokens above `tokens` (the whole budget of a
 * window), or its estimated cost (at the price for e->model) above
 * `budget`. Such a job is ended dead rather than left waiting forever.
 * Returns 1 with why ("the estimate of 9000 tokens is above the budget of
 * 8000 tokens per 1m") filled in, else 0. */
int corral_tokens_never_fits(const struct corral_service_conf *sv, const struct corral_estimate *e,
                             char *why, size_t why_len);

/* Checks the `tokens` enqueue option as the C API holds it (0 = not
 * given): -1 with err (CORRAL_ERR_INVALID) naming the queue when it is
 * negative or above CORRAL_TOKENS_MAX. */
int corral_tokens_option_check(const char *queue, int64_t tokens, struct corral_err *err);

/* Checks the `tokens` option as it arrives in the options JSON: json is the
 * value's text ("1200", "1.5", "\"9\"", "null"). A JSON number with an
 * integral value from 1 to CORRAL_TOKENS_MAX is accepted (12.0 as 12, since
 * Lua does not tell them apart); anything else is -1 with err naming the
 * queue and the value. The message is the reply after CORRAL_TOKENS_WORD. */
int corral_tokens_option_parse(const char *queue, const char *json, size_t len, int64_t *tokens,
                               struct corral_err *err);

struct json_t;

/* Adds service sv's budgets to the settings object of corral_declare_service
 * (docs/protocol.md): tokens, tokens_period_ms, bytes_per_token,
 * price_input_nano, price_output_nano, budget_nano, budget_period_ms. */
void corral_tokens_declare_fields(struct json_t *settings, const struct corral_service_conf *sv);

#endif

/* Token usage from an AI service's answer, and a job's usage as recorded:
 * the answer's counts where it gave sane ones, the estimate where it did
 * not (then flagged estimated), and the cost at the model's price
 * (docs/tokens.md, "Settlement"). Pure: no I/O. */
#ifndef CORRAL_USAGE_H
#define CORRAL_USAGE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "corral/config.h"
#include "corral/cost.h"
#include "corral/tokens.h"

/* What an answer said. A count is -1 until the answer gives it as an
 * integer from 0 to CORRAL_TOKENS_MAX; each report replaces the one before
 * (providers report running totals), so nothing is counted twice. */
struct corral_usage {
    int64_t input_tokens;
    int64_t output_tokens;
    char model[CORRAL_MODEL_MAX + 1]; /* "" until the answer names one */
    int bad; /* a usage field was there but not a sane count (negative, not an
              * integer, over CORRAL_TOKENS_MAX, not a number) */
};

void corral_usage_init(struct corral_usage *u);

/* Reads a whole JSON answer: `usage` with prompt_tokens/completion_tokens
 * (OpenAI chat) or input_tokens/output_tokens (OpenAI Responses,
 * Anthropic; Anthropic's cache_creation_input_tokens and
 * cache_read_input_tokens are input too), and `model`. A body that is not
 * JSON, or has no usage, leaves u as it was. */
void corral_usage_from_body(struct corral_usage *u, const char *body, size_t len);

/* Reads one streamed event's data (a JSON object): the usage and model at
 * the top (OpenAI chat's last chunk, Anthropic's message_delta), under
 * `message` (Anthropic's message_start: its input count only; its output
 * count is a placeholder) or under `response` (OpenAI Responses'
 * response.completed). NULL or a non-object is ignored. */
void corral_usage_from_event(struct corral_usage *u, const json_t *data);

/* A job's usage as its record keeps it. */
struct corral_job_usage {
    int64_t input_tokens;
    int64_t output_tokens;
    char model[CORRAL_MODEL_MAX + 1]; /* the answer's, else the payload's, else "" */
    int estimated; /* 1 when any count is the estimate's (the answer gave none, or nonsense) */
    int64_t cost_nano;
};

/* Settles a call: each count from u when it has one, else from est
 * (flagged estimated); the model from u, else est's; the cost at the price
 * sv has for that model (0 when unpriced). sv may be NULL: no cost. */
void corral_usage_settle(const struct corral_usage *u, const struct corral_estimate *est,
                         const struct corral_service_conf *sv, struct corral_job_usage *out);

/* The record's JSON: {"input_tokens":N,"output_tokens":N,"model":"m" or
 * null,"estimated":false,"cost":0.006,"cost_nano":6000000}; cost is the
 * exact decimal of cost_nano. Caller frees. */
char *corral_job_usage_json(const struct corral_job_usage *ju);

#endif

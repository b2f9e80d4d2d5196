/* Money for token prices, spend budgets and the cost of a call. Amounts are
 * whole nano-units of the currency (10^-9), as int64_t, so sums in the
 * ledger are exact (docs/tokens.md, "Cost"). Prices are per million tokens.
 * Pure functions: no I/O, no allocation. */
#ifndef CORRAL_COST_H
#define CORRAL_COST_H

#include <stddef.h>
#include <stdint.h>

#include "corral/err.h"

#define CORRAL_NANO 1000000000LL /* nano-units in one unit of the currency */
/* The largest price per million tokens (1,000,000 units) and the largest
 * spend budget (1,000,000,000 units), in nano-units: with usage capped at
 * CORRAL_TOKENS_MAX a call's cost stays far inside int64_t. */
#define CORRAL_PRICE_MAX_NANO  (1000000LL * CORRAL_NANO)
#define CORRAL_BUDGET_MAX_NANO (1000000000LL * CORRAL_NANO)
/* Token counts above this are not believed (usage, the tokens option). */
#define CORRAL_TOKENS_MAX 1000000000LL
/* A model name kept from an answer or a price line: at most this many bytes. */
#define CORRAL_MODEL_MAX 128

/* Reads a decimal amount ("2.5", "0.0375", "15"): no sign, no exponent, at
 * most 9 decimals, at most max_nano. Returns 0 with *nano set, or -1 with err
 * naming the value (ends with (got "VALUE")). */
int corral_money_parse(const char *s, int64_t max_nano, int64_t *nano, struct corral_err *err);

/* Writes nano as a decimal with no trailing zeros ("2.5", "0.0375", "15")
 * that corral_money_parse reads back to the same value. */
void corral_money_format(int64_t nano, char *buf, size_t len);

/* "AMOUNT/PERIOD" (a spend budget: "20/d", "0.5/h", "100/30d"): the amount
 * as corral_money_parse reads it (above 0, at most CORRAL_BUDGET_MAX_NANO),
 * the period as a rate's ("m", "5s", "1d"). */
int corral_money_rate_parse(const char *s, int64_t *nano, int64_t *period_ms,
                            struct corral_err *err);

/* "MODEL INPUT OUTPUT" (a price line): the model name (1..CORRAL_MODEL_MAX
 * bytes of printable ASCII without blanks) copied into model, and the two
 * prices per million tokens in nano-units. */
int corral_price_line_parse(const char *s, char *model, size_t model_len, int64_t *input_nano,
                            int64_t *output_nano, struct corral_err *err);

/* The cost of a call in nano-units: input_tokens at price_input_nano and
 * output_tokens at price_output_nano (per million tokens), rounded once, half
 * up. Exact integer arithmetic: the same call always costs the same, and a
 * ledger of such costs sums exactly. Token counts are clamped to
 * 0..CORRAL_TOKENS_MAX and prices to 0..CORRAL_PRICE_MAX_NANO. */
int64_t corral_cost_nano(int64_t input_tokens, int64_t output_tokens, int64_t price_input_nano,
                         int64_t price_output_nano);

/* Whether a model named in an answer is the one a price line names: the
 * same name, or the name with a release date appended as providers write
 * it ("gpt-4o" prices "gpt-4o-2024-08-06", "claude-3-5-haiku" prices
 * "claude-3-5-haiku-20241022"). A prefix alone is not enough: "gpt-4o"
 * does not price "gpt-4o-mini". */
int corral_model_matches(const char *line_model, const char *answer_model);

struct corral_service_conf;

/* The prices for a call to service sv that the answer says model served
 * (NULL or "" when it did not say): the first `price` line whose model is
 * the same name, else the first whose model matches with a date, else the
 * service's price_input and price_output. Returns 1 when a price line
 * matched, 0 when the service's prices stand. */
int corral_price_for(const struct corral_service_conf *sv, const char *model, int64_t *input_nano,
                     int64_t *output_nano);

#endif

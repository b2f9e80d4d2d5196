/* The token side of one HTTP call (docs/tokens.md): its estimate, the
 * rate-limit headers of the answer, the usage of the answer (whole or
 * streamed) and, when the call ends, the settlement that goes to Redis
 * (corral_settle, sent just before the run's outcome) with the usage, the
 * cost and the provider's view of its token window. The http handler
 * feeds it; the outcome FIFO sends what it made. */
#ifndef CORRAL_SETTLE_H
#define CORRAL_SETTLE_H

#include <stddef.h>
#include <stdint.h>

#include "corral/config.h"
#include "corral/cost.h"
#include "corral/queue.h"

/* A run's settlement, as corral_settle takes it. */
struct corral_settle {
    int64_t input_tokens; /* -1: the call has no usage (the service did not count it) */
    int64_t output_tokens;
    char model[CORRAL_MODEL_MAX + 1];
    int estimated; /* a count is the estimate's: the answer gave none, or nonsense */
    int64_t cost_nano;
    int64_t remaining; /* the provider's fewest tokens remaining; -1: not said */
    int64_t reset_ms;  /* until its reset, from now; -1: not said */
};

struct corral_tally;

/* A tally for one call of service sv (borrowed: outlives it) with this
 * payload. Free with corral_tally_free (NULL-safe). */
struct corral_tally *corral_tally_new(const struct corral_service_conf *sv, const char *payload,
                                      size_t len);
void corral_tally_free(struct corral_tally *t);
/* One raw header line of the answer. */
void corral_tally_header(struct corral_tally *t, const char *line, size_t len);
/* After a 429: 1 with *delay_ms (the token window's reset, or Retry-After)
 * when the answer says it is about tokens, else 0. */
int corral_tally_token_429(const struct corral_tally *t, const char *body, size_t len,
                           int64_t default_ms, int64_t cap_ms, int64_t *delay_ms);
/* The settlement of the call: with answered set, the usage read from
 * body (a JSON answer or, for text/event-stream, its events), the estimate
 * standing for what it lacks; else no usage (-1). The provider's view from
 * the headers either way. A new struct the caller frees (the run's settle). */
struct corral_settle *corral_tally_settle(const struct corral_tally *t, int answered,
                                          const char *body, size_t len);

/* The settlement of a call whose answer was read as it came (a streamed
 * answer, stream.h): u is the usage its events gave (NULL: none). */
struct corral_usage;
struct corral_settle *corral_tally_settle_usage(const struct corral_tally *t,
                                                const struct corral_usage *u);
/* Appends the corral_settle arguments of one run (id, run, s) to cmd,
 * begun with corral_settle_cmd. */
void corral_settle_cmd(struct corral_cmd *cmd, const char *prefix, const char *queue,
                       const char *worker);
void corral_settle_add(struct corral_cmd *cmd, const char *id, const char *run,
                       const struct corral_settle *s);

#endif

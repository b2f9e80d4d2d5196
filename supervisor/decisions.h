/* The scaler's recent decisions of this host, kept in Redis for the
 * dashboard (docs/web.md, "The scaler's decisions"): a capped list
 * <prefix>:decisions:<host> of one-line JSON objects, newest first. A
 * decision is kept when it changes the desired count or the kind of
 * decision (grow, shrink, hold, steady); the steady ticks between are not. */
#ifndef CORRAL_DECISIONS_H
#define CORRAL_DECISIONS_H

#include <stdint.h>

#include <hiredis/hiredis.h>

#include "corral/err.h"
#include "link.h"
#include "scaler.h"

#define CORRAL_DECISIONS_KEEP    50       /* entries the list holds */
#define CORRAL_DECISIONS_TTL_MS  86400000 /* the list goes a day after its last push */
#define CORRAL_DECISIONS_PENDING 16       /* entries held while Redis is away */

/* What is remembered between ticks and what waits to be written. Zeroed
 * (= {0}) is a valid empty state; corral_decisions_clear frees it. */
struct corral_decisions {
    int have_last;
    int last_desired;
    enum corral_scale_action last_action;
    char *pending[CORRAL_DECISIONS_PENDING]; /* oldest first, owned */
    int npending;
};

/* Notes one tick's decision (from: the workers it started from). Returns 1
 * when it is kept (queued for corral_decisions_flush), 0 when it repeats
 * the last one kept. When more than CORRAL_DECISIONS_PENDING wait, the
 * oldest is dropped. */
int corral_decisions_note(struct corral_decisions *ds, int64_t t_ms, int from,
                          const struct corral_scale_decision *dec);

/* Writes the waiting entries in one pipeline (LPUSH, LTRIM, PEXPIRE) and
 * forgets them; with none, sends nothing. On an error, -1 with err saying
 * why: a broken connection (l->lost) keeps them to be written on the next
 * one, an error reply (NOPERM) drops them. */
int corral_decisions_flush(struct corral_decisions *ds, struct corrald_link *l, const char *prefix,
                           const char *host, struct corral_err *err);

/* Frees what waits; ds is empty afterwards. */
void corral_decisions_clear(struct corral_decisions *ds);

#endif

/* Private to corral's programs, which link the static libcorral.a: not
 * installed, not exported by libcorral.so (the public API is include/corral/). */
/* The line protocol a worker speaks to corrald on fd 3 (a socketpair).
 * One message per line, words separated by single spaces:
 *   ready <slots>                          started, connected, taking jobs
 *   busy <busy> <slots>                    slot use changed
 *   done <queue> <ms> <ok|retry|dead|defer> one job ended (processing time)
 *   heartbeat <busy> <slots> <jobs> <rss_kb> unwritten=<n>
 *                                          every second, even when idle
 *   stopping                               draining after SIGTERM
 * Lines are at most CORRAL_WMSG_MAX bytes; unknown verbs are errors so a
 * version mismatch shows up in corrald's log instead of being ignored.
 * A heartbeat's positional words are fixed; named fields (name=value, name
 * of a-z and _) follow them: a missing one reads as 0 (a worker from before
 * it) and an unknown one is skipped (a worker from after), so corrald and
 * its workers may differ by a version during an upgrade.
 *   unwritten  outcomes the worker holds that Redis has not acknowledged;
 *              above its slots it takes no new jobs (back-pressure) */
#ifndef CORRAL_WMSG_H
#define CORRAL_WMSG_H

#include <stddef.h>
#include <stdint.h>

#include "corral/err.h"

#define CORRAL_WMSG_MAX 256

enum corral_wmsg_type {
    CORRAL_WMSG_READY,
    CORRAL_WMSG_BUSY,
    CORRAL_WMSG_DONE,
    CORRAL_WMSG_HEARTBEAT,
    CORRAL_WMSG_STOPPING,
};

enum corral_wmsg_outcome {
    CORRAL_OUTCOME_OK,
    CORRAL_OUTCOME_RETRY,
    CORRAL_OUTCOME_DEAD,
    CORRAL_OUTCOME_DEFER,
};

struct corral_wmsg {
    enum corral_wmsg_type type;
    int busy;
    int slots;
    int64_t jobs;
    int64_t rss_kb;
    int64_t unwritten; /* heartbeat */
    int64_t ms;
    enum corral_wmsg_outcome outcome;
    char queue[65];
};

/* Parses one line (without its '\n'). Returns 0, or -1 with err naming the
 * problem and quoting (a bounded part of) the line. */
int corral_wmsg_parse(const char *line, struct corral_wmsg *out, struct corral_err *err);

/* Formats m as a line ending in '\n' into buf; returns its length, or -1
 * when it does not fit. */
int corral_wmsg_format(const struct corral_wmsg *m, char *buf, size_t len);

const char *corral_wmsg_outcome_name(enum corral_wmsg_outcome o);

#endif

/* Errors as values: library functions return 0 or -1 and fill a
 * caller-supplied struct corral_err with a code and a message that names the
 * thing that went wrong. Only the programs print errors and decide to exit. */
#ifndef CORRAL_ERR_H
#define CORRAL_ERR_H

#include <stddef.h>

/* libcorral's public API: what follows is exported by libcorral.so, which
 * is built with everything else hidden (include/corral/ only; the Makefile). */
#pragma GCC visibility push(default)

enum corral_err_code {
    CORRAL_OK = 0,
    CORRAL_ERR_INVALID,  /* bad input: config, options, payload, names */
    CORRAL_ERR_NOTFOUND, /* unknown queue, job or service */
    CORRAL_ERR_REDIS,    /* Redis unreachable or answered an error we did not expect */
    CORRAL_ERR_IO,       /* files, sockets, processes */
    CORRAL_ERR_STALE,    /* a write for a run that is no longer the job's current run */
    CORRAL_ERR_TIMEOUT,  /* a wait ran out */
    CORRAL_ERR_NOMEM,
};

#define CORRAL_ERR_MSG_MAX 512

struct corral_err {
    enum corral_err_code code;
    char msg[CORRAL_ERR_MSG_MAX];
};

/* Sets err (when not NULL) and returns -1, so callers can write
 * `return corral_err_set(err, CORRAL_ERR_INVALID, "...")`. */
int corral_err_set(struct corral_err *err, enum corral_err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "<prefix>: " to an error already set, for context on the way up. */
void corral_err_prefix(struct corral_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void corral_err_clear(struct corral_err *err);

#pragma GCC visibility pop

#endif

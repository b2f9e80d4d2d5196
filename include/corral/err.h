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

/* The code word an error reply from Redis began with, when the error came
 * from one (docs/protocol.md, "Error replies"): corral's Function library
 * answers its own words, Redis its own. queue/codes.c maps words to these
 * values in one table; callers switch on the value, never on the text. */
enum corral_err_word {
    CORRAL_WORD_NONE = 0, /* not an error reply */
    /* the corral Function library */
    CORRAL_WORD_BADARG,      /* a call's arguments are malformed */
    CORRAL_WORD_BADNAME,     /* the key names no valid queue or service */
    CORRAL_WORD_NOQUEUE,     /* the queue was never declared */
    CORRAL_WORD_NOSERVICE,   /* the service was never declared */
    CORRAL_WORD_BADPAYLOAD,  /* the payload is missing or not JSON */
    CORRAL_WORD_TOOBIG,      /* the payload is over max_payload */
    CORRAL_WORD_BADOPTION,   /* an enqueue option is unknown or invalid */
    CORRAL_WORD_BADSETTING,  /* a queue's or service's settings are invalid */
    CORRAL_WORD_NOJOB,       /* no such job in the queue */
    CORRAL_WORD_RUNNING,     /* the job is running: it cannot be cancelled */
    CORRAL_WORD_FINISHED,    /* the job already ended */
    CORRAL_WORD_NOTDEAD,     /* dead_retry of a job that is not dead */
    CORRAL_WORD_BADDEADLINE, /* the enqueue option deadline_ms is not a positive integer */
    CORRAL_WORD_BADTENANT,   /* the tenant option is not a tenant name */
    CORRAL_WORD_BADTOKENS,   /* the enqueue option tokens is not a whole number 1-10^9 */
    /* Redis */
    CORRAL_WORD_NOFUNCTION, /* the function (library) is not loaded */
    CORRAL_WORD_NOSCRIPT,
    CORRAL_WORD_NOCOMMAND, /* an unknown command: Redis older than 7 */
    CORRAL_WORD_NOPERM,    /* the ACL user may not run the command */
    CORRAL_WORD_NOAUTH,
    CORRAL_WORD_WRONGPASS,
    CORRAL_WORD_READONLY, /* a replica */
    CORRAL_WORD_OOM,      /* maxmemory reached */
    CORRAL_WORD_MISCONF,  /* writes refused after a failed save */
    CORRAL_WORD_LOADING,
    CORRAL_WORD_MASTERDOWN,
    CORRAL_WORD_BUSY,
    CORRAL_WORD_WRONGTYPE,
    CORRAL_WORD_UNBLOCKED, /* a blocked call ended: the node became a replica */
    /* Redis Cluster (docs/design.md, "Redis Cluster slots"): the call did
     * not run; find the node of its slot again */
    CORRAL_WORD_MOVED,       /* the slot is served by another node */
    CORRAL_WORD_ASK,         /* the slot is migrating */
    CORRAL_WORD_CLUSTERDOWN, /* no node serves the slot now */
    CORRAL_WORD_TRYAGAIN,    /* a multi-key call during a migration */
    CORRAL_WORD_ERR,         /* Redis's generic ERR */
    CORRAL_WORD_OTHER,       /* a word none of the above */
};

#define CORRAL_ERR_MSG_MAX 512

struct corral_err {
    enum corral_err_code code;
    enum corral_err_word word; /* set from an error reply, else NONE */
    char msg[CORRAL_ERR_MSG_MAX];
};

/* Sets err (when not NULL; word NONE) and returns -1, so callers can write
 * `return corral_err_set(err, CORRAL_ERR_INVALID, "...")`. */
int corral_err_set(struct corral_err *err, enum corral_err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "<prefix>: " to an error already set, for context on the way up. */
void corral_err_prefix(struct corral_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void corral_err_clear(struct corral_err *err);

#pragma GCC visibility pop

#endif

/* What every corral program does on a fresh Redis connection before any
 * work: load the corral Function library when Redis has none or an older
 * one, then declare queues (corral_declare) and services
 * (corral_declare_service) from the config. One definition for corrald,
 * corral-worker and corralctl, and for an application that enqueues from
 * C: the builder gives the commands (so an async client sends the same
 * ones), corral_bootstrap_run sends them over a blocking connection.
 *
 * Async use (corral-worker): send corral_bootstrap_cmd_version, pass its
 * reply to corral_bootstrap_reply_version, then corral_bootstrap_build and
 * send each step's cmd; each step's what and name outlive the bootstrap
 * (a static string and a string of the config), so they can be the
 * callbacks' privdata. */
#ifndef CORRAL_BOOTSTRAP_H
#define CORRAL_BOOTSTRAP_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "corral/config.h"
#include "corral/err.h"
#include "corral/queue.h"

/* libcorral's public API: what follows is exported by libcorral.so, which
 * is built with everything else hidden (include/corral/ only; the Makefile). */
#pragma GCC visibility push(default)

/* Which declarations follow the library load. */
enum corral_bootstrap_scope {
    CORRAL_BOOTSTRAP_LIBRARY, /* the library only (corralctl before a command) */
    CORRAL_BOOTSTRAP_QUEUES,  /* the named queues and the services they call (a worker) */
    CORRAL_BOOTSTRAP_ALL,     /* every [queue] and [service] of the config (corrald) */
};

struct corral_bootstrap_step {
    struct corral_cmd cmd;
    const char *what; /* "FUNCTION LOAD", "declare queue" or "declare service" (static) */
    const char *name; /* the queue or service (the config's string); NULL for the load */
};

/* The steps, in the order they must run: the load first. Free with
 * corral_bootstrap_free (NULL-safe). */
struct corral_bootstrap {
    struct corral_bootstrap_step *steps;
    size_t n;
};

/* The question that starts it: FCALL_RO corral_version 0. */
void corral_bootstrap_cmd_version(struct corral_cmd *cmd);

/* The library version Redis has, from the reply to that command: -1 when
 * it has no corral library (any error reply but the ones below). Returns
 * -1 with err when the reply is NULL (connection lost), says Redis cannot
 * run Functions at all (before 7.0), or is NOPERM (the version is unknown:
 * loading ours might replace a newer one). */
int corral_bootstrap_reply_version(redisContext *c, const redisReply *r, long long *have,
                                   struct corral_err *err);

/* Fills b with the steps for scope: FUNCTION LOAD REPLACE when have is
 * below this build's version (corral_functions_version), then the
 * declarations. With CORRAL_BOOTSTRAP_QUEUES, queues[0..n) are names of
 * cfg's [queue] sections (a name without one is skipped); each service
 * is declared once. queues is ignored for the other scopes, and cfg may
 * be NULL with CORRAL_BOOTSTRAP_LIBRARY. */
void corral_bootstrap_build(struct corral_bootstrap *b, const struct corral_config *cfg,
                            long long have, enum corral_bootstrap_scope scope,
                            const char *const *queues, size_t n);
void corral_bootstrap_free(struct corral_bootstrap *b);

/* The whole of it on a blocking connection, pipelined: asks the version,
 * then sends every step and reads every reply. Returns 0, or -1 with err
 * naming the first step that failed ("declare queue prompts: ...").
 * *loaded (may be NULL) tells whether the library was loaded. */
int corral_bootstrap_run(redisContext *c, const struct corral_config *cfg,
                         enum corral_bootstrap_scope scope, const char *const *queues, size_t n,
                         int *loaded, struct corral_err *err);

#pragma GCC visibility pop

#endif

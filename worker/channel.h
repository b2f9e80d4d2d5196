/* fd 3, the worker's line to corrald (the protocol is corral/wmsg.h):
 * non-blocking, buffered writes that never stall the loop, and the watch
 * on corrald itself (PR_SET_PDEATHSIG, and the parent pid). */
#ifndef CORRAL_CHANNEL_H
#define CORRAL_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "corral/wmsg.h"
#include "handler.h"

struct corral_channel;

/* fd is the socket to corrald, or -1 when the worker runs alone (then
 * every call is a no-op). */
struct corral_channel *corral_channel_new(struct ev_loop *loop, int fd);
void corral_channel_free(struct corral_channel *ch); /* NULL-safe; closes nothing */

/* The messages. Up to 64 KiB wait while corrald does not read; past that
 * they are dropped (heartbeats resume the story). */
void corral_channel_ready(struct corral_channel *ch, int slots);
/* Sent only when busy changed since the last call. */
void corral_channel_busy(struct corral_channel *ch, int busy, int slots);
void corral_channel_done(struct corral_channel *ch, const char *queue, int64_t ms,
                         enum corral_run_end end);
/* Adds the worker's resident memory. */
void corral_channel_heartbeat(struct corral_channel *ch, int busy, int slots, int64_t jobs,
                              size_t unwritten);
void corral_channel_stopping(struct corral_channel *ch);
/* Asks the kernel to SIGTERM us when corrald dies. -1 when it is already
 * gone. */
int corral_channel_watch_parent(struct corral_channel *ch);
/* 1 when corrald has gone (we were reparented). */
int corral_channel_parent_gone(const struct corral_channel *ch);
/* Stops the write watcher, for the loop to end. */
void corral_channel_stop(struct corral_channel *ch);

#endif

/* The worker's control channel: a third Redis connection, subscribed to
 * <prefix>:ctl:<worker id>, on which corral_cancel tells the worker that a
 * job it runs was cancelled (docs/worker.md, "Cancel"). The engine is told
 * through the callback it hands over; it stops the run. A message lost
 * while the connection is down costs only time: the next lease renewal
 * answers STALE for the cancelled run and the engine stops it then. */
#ifndef CORRAL_CONTROL_H
#define CORRAL_CONTROL_H

#include <stddef.h>

#include <ev.h>

#include "corral/config.h"
#include "corral/err.h"

struct corral_control;

/* A run was cancelled: queue, id and run name it (valid during the call). */
typedef void corral_control_cancel_fn(void *priv, const char *queue, const char *id,
                                      const char *run);

/* conf must outlive the result; password may be NULL (copied); worker_id
 * is copied. NULL with err when the url is bad. Nothing connects before
 * corral_control_start. */
struct corral_control *corral_control_new(struct ev_loop *loop,
                                          const struct corral_redis_conf *conf,
                                          const char *password, const char *worker_id,
                                          corral_control_cancel_fn *fn, void *priv,
                                          struct corral_err *err);
/* Connects (the first call only: later ones do nothing). The engine calls
 * it once its commands connection is ready, so a Redis that refuses the
 * worker altogether is logged once, by that connection. */
void corral_control_start(struct corral_control *c);
/* Closes the connection at once; no reconnect follows. NULL-safe. */
void corral_control_close(struct corral_control *c);
void corral_control_free(struct corral_control *c);

#endif

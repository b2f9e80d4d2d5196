/* The queues a worker serves: each with its handler and the handler's
 * state, its wake list, and what reserve last said of its service (the
 * gate); and their set-up in Redis (the function library, the queues' and
 * services' declarations). */
#ifndef CORRAL_WQUEUE_H
#define CORRAL_WQUEUE_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "connection.h"
#include "corral/config.h"
#include "corral/queue.h"
#include "handler.h"

struct corral_svcgate;

struct corral_wqueue {
    const struct corral_queue_conf *conf;
    const struct corral_service_conf *svc; /* http: its service, else NULL */
    const struct corral_handler_ops *ops;
    void *state;                 /* the handler's, from queue_init */
    char *wake_key;              /* the queue's wake list */
    char *svc_wake_key;          /* the service's wake list for this host, or NULL */
    int64_t gated_until_ms;      /* reserve said: the service takes no calls until then */
    char gate_why[256];          /* and why, to log each new gate once */
    int lost_reserve;            /* a reserve's reply was lost: jobs may be leased to us unseen */
    struct corral_svcgate *gate; /* [redis] cluster: its service's gate (gate.h), else NULL */
};

struct corral_wqueues {
    const struct corral_config *cfg;
    const char *worker_id;
    struct corral_wqueue *q;
    const char **names; /* q[i].conf->name */
    size_t n;
    int64_t lease_ms;         /* the shortest lease of them */
    struct corral_conn *conn; /* the one corral_wqueues_setup runs on */
};

/* Builds the queues named (each must have a [queue] section) with their
 * handlers' state on loop. -1 with err when one cannot be served; qs is
 * then freed. cfg and worker_id are borrowed. */
int corral_wqueues_init(struct corral_wqueues *qs, struct ev_loop *loop,
                        const struct corral_config *cfg, const char *worker_id,
                        const char *const *names, size_t n, struct corral_err *err);
/* No run of any queue may be left. */
void corral_wqueues_free(struct corral_wqueues *qs);

/* The first queue from i on whose service takes calls now, or qs->n. */
size_t corral_wqueues_open(const struct corral_wqueues *qs, size_t i);
/* Keeps what reserve said of q's service (g); logs each new gate once. */
void corral_wqueue_gate(const struct corral_wqueues *qs, struct corral_wqueue *q,
                        const struct corral_gate *g);
/* The BLPOP that waits for work: on each queue's wake list, or on its
 * service's while the service takes no calls (enqueues would wake us for
 * nothing). */
void corral_wqueues_cmd_wait(const struct corral_wqueues *qs, int timeout_s,
                             struct corral_cmd *cmd);
/* BLPOP answered with key: a service that changed state (closed, reset, a
 * call slot freed) may be asked again at once. */
void corral_wqueues_woken(struct corral_wqueues *qs, const char *key);

/* The commands connection's set-up (a corral_conn_hooks.setup, priv = qs):
 * loads the function library when it is missing or older, and declares the
 * queues and their services (the settings corrald would declare), so that
 * a worker started by hand works alone. */
void corral_wqueues_setup(struct corral_conn *c, void *qs);

#include "gate.h" /* a queue's service gate on a Redis Cluster */

#endif

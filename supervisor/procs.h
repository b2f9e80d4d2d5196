/* corrald's process table: fork+exec of worker processes with a socketpair
 * on their fd 3, line reading from it, and reaping through libev. Policy
 * (how many, which to stop, back-off) lives in the caller; this module only
 * does process hygiene and bookkeeping. */
#ifndef CORRAL_PROCS_H
#define CORRAL_PROCS_H

#include <stdint.h>
#include <sys/types.h>

#include <ev.h>

#include "corral/err.h"

enum corral_wstate {
    CORRAL_W_STARTING, /* forked, has not said "ready" yet */
    CORRAL_W_IDLE,
    CORRAL_W_BUSY,
    CORRAL_W_DRAINING, /* told to stop (SIGTERM); finishing its jobs */
};

struct corral_procs;

/* One worker process. Owned by the table; valid until its exit callback
 * returns. */
struct corral_wproc {
    pid_t pid;
    char id[96]; /* "<host>:<pid>", the worker id it uses in Redis */
    enum corral_wstate state;
    int busy;
    int slots;
    int64_t jobs_done;
    int worked;           /* has taken a job: it got past starting */
    int64_t started_ms;   /* monotonic */
    int64_t last_seen_ms; /* monotonic: last line on fd 3 */
    int64_t rss_bytes;
    int64_t unwritten;    /* outcomes not yet written to Redis, by its last heartbeat */
    int64_t term_sent_ms; /* monotonic, 0 until SIGTERM was sent */
    char queue[65];       /* on a Redis Cluster, the one queue it serves (--queue) */
    void *data;           /* the caller's */
    /* private */
    struct corral_procs *owner;
    int fd;
    ev_io io;
    ev_child child;
    char buf[1024];
    size_t len;
    struct corral_wproc *next;
};

struct corral_procs_cb {
    /* A complete line (without '\n') from the worker's fd 3. */
    void (*on_line)(struct corral_procs *t, struct corral_wproc *w, const char *line);
    /* The process is gone; status as from waitpid. w is freed after. */
    void (*on_exit)(struct corral_procs *t, struct corral_wproc *w, int status);
    void *data;
};

/* The table lives on loop, which must be libev's default loop (ev_child
 * only works there). host goes into worker ids. Free with corral_procs_free. */
struct corral_procs *corral_procs_new(struct ev_loop *loop, const char *host,
                                      const struct corral_procs_cb *cb);
/* Kills (SIGKILL) nothing: the caller drains first. Frees every entry. */
void corral_procs_free(struct corral_procs *t);

/* Forks and execs argv[0] (a path) with argv, a socketpair end on fd 3,
 * CORRAL_WORKER_ID in the environment, signals reset to default, every
 * other fd closed. Returns the new entry, or NULL with err set. */
struct corral_wproc *corral_procs_spawn(struct corral_procs *t, char *const argv[],
                                        struct corral_err *err);

/* Reads, without blocking, what the worker wrote on fd 3 that the loop has
 * not read yet (on_line runs for each complete line, last_seen_ms moves).
 * For callers about to judge last_seen_ms: a loop that was itself blocked
 * (a slow Redis call) has simply not read the worker's lines yet. */
void corral_procs_read(struct corral_wproc *w);

/* Sends sig (SIGTERM marks the worker draining). */
void corral_procs_kill(struct corral_wproc *w, int sig);

/* Iteration: for (w = corral_procs_first(t); w; w = w->next). */
struct corral_wproc *corral_procs_first(struct corral_procs *t);
int corral_procs_count(const struct corral_procs *t);
void *corral_procs_data(const struct corral_procs *t);
const char *corral_procs_host(const struct corral_procs *t);

#endif

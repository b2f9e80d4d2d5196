/* corral-web's one shared snapshot of the fleet. Every reader (dashboard
 * polls, /api/status, /metrics, /healthz) gets the same view; Redis is read
 * at most once a second however many there are, by one refresher thread,
 * and every 10 s while nobody asks (so the charts' samples go on). A view
 * up to 1.5 s old is served at once (a new one is asked for past 1 s); a
 * reader that finds it older waits for the new one, so a browser polling
 * every 2 s always sees what Redis held when it asked. A refresh is
 * corralctl's status (ctl_snapshot: two round trips) plus one pipeline for
 * the statistics buckets and the hosts' decision lists. docs/web.md. */
#ifndef CORRAL_WEB_SNAPSHOT_H
#define CORRAL_WEB_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "corral/config.h"
#include "corral/err.h"

#define WEB_SNAP_MAX_AGE_MS                                                                        \
    1000                          /* past this age a new view is asked for; never two reads closer \
                                   */
#define WEB_SNAP_STALE_OK_MS 1500 /* a view this young is served without waiting */
#define WEB_SNAP_IDLE_MS     10000 /* refresh when nobody asked for this long */
#define WEB_SNAP_QUIET_MS    1000  /* free the refreshes' garbage when nobody asked for this long */
#define WEB_REDIS_TIMEOUT_MS 2000

/* An immutable view, shared by reference. */
struct web_view {
    int ok;                         /* the refresh read Redis */
    char error[CORRAL_ERR_MSG_MAX]; /* when !ok */
    int64_t wall_ms;                /* when it was taken */
    int64_t mono_ms;
    char *status; /* corralctl status --json, compact; NULL when !ok */
    size_t status_len;
    char *history; /* the charts (history.h), NULL unless asked for lately; kept from
                    * the last good view when !ok */
    size_t history_len;
    char *metrics; /* the Prometheus text, NULL unless asked for lately */
    size_t metrics_len;
    int refs; /* guarded by the snapshot's lock */
    struct web_snap *owner;
};

struct web_snap;

/* The parts of a view; history and metrics text are built only while
 * someone asks for them (the status always). */
enum web_part { WEB_PART_STATUS, WEB_PART_HISTORY, WEB_PART_METRICS, WEB_NPARTS };

/* Starts the refresher thread (block the signals it must not take first).
 * cfg is borrowed and must outlive the snapshot. No I/O until the first
 * get. */
struct web_snap *web_snap_new(const struct corral_config *cfg);
void web_snap_free(struct web_snap *s);

/* The current view with part (see above: it may wait for a refresh). Never
 * NULL. Give it back with web_snap_put. Thread-safe. */
struct web_view *web_snap_get(struct web_snap *s, enum web_part part);
void web_snap_put(struct web_snap *s, struct web_view *v);
/* The same as web_snap_put(v->owner, v), in the shape of libmicrohttpd's
 * free callback: a response may send a view's text without a copy. */
void web_view_release(void *v);

/* Makes the next get read Redis whatever the view's age: after an action,
 * so that the operator sees what it changed (at most one extra read per
 * action). */
void web_snap_invalidate(struct web_snap *s);

/* Asks for a refresh when the view is WEB_SNAP_IDLE_MS old (the main
 * loop's timer), and for the refreshes' garbage to be given back to the
 * system (malloc_trim) once nobody asked for WEB_SNAP_QUIET_MS; does not
 * wait for either. */
void web_snap_idle(struct web_snap *s);

/* Refreshes done so far (each is one read of Redis). */
uint64_t web_snap_refreshes(struct web_snap *s);

#endif

/* Times as people read them: `corralctl job` shows each of a job's Unix
 * millisecond times as local ISO 8601 time with its age, beside the raw
 * number (docs/design.md, "Job states and corralctl job --json"). */
#ifndef CORRAL_CTL_WHEN_H
#define CORRAL_CTL_WHEN_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

/* "2026-12-06T18:25:10.523+01:00, 12.4 s ago" (or "in 3 s" for a time to
 * come) for ms, in the local time zone, its age taken from now_ms. */
void ctl_when(int64_t ms, int64_t now_ms, char *buf, size_t n);

/* Redis's clock in ms (the one job times come from), or this host's when
 * TIME cannot be read. */
int64_t ctl_redis_now_ms(redisContext *c);

#endif

/* Private to corral's programs, which link the static libcorral.a: not
 * installed, not exported by libcorral.so (the public API is include/corral/). */
/* Small helpers shared by libcorral and the programs: allocation that never
 * returns NULL (it aborts with a message: corral's processes are supervised
 * and a failed malloc leaves nothing sensible to do), clocks and strings. */
#ifndef CORRAL_UTIL_H
#define CORRAL_UTIL_H

#include <stddef.h>
#include <stdint.h>

void *corral_xmalloc(size_t n);
void *corral_xcalloc(size_t n, size_t size);
void *corral_xrealloc(void *p, size_t n);
char *corral_xstrdup(const char *s);
char *corral_xstrndup(const char *s, size_t n);
/* printf into a fresh string; caller frees. */
char *corral_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* CLOCK_MONOTONIC in milliseconds: for durations and deadlines. */
int64_t corral_now_ms(void);
/* CLOCK_REALTIME in milliseconds: only for timestamps shown to people. */
int64_t corral_wall_ms(void);

/* Formats a duration for people: "250ms", "1.5s", "2m", "1h30m". */
void corral_format_duration(int64_t ms, char *buf, size_t len);

#endif

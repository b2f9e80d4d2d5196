/* Private to corral's programs, which link the static libcorral.a: not
 * installed, not exported by libcorral.so (the public API is include/corral/). */
/* Logging for the programs (never called from libcorral's queue code).
 * One line per event: a message then key=value fields. Under systemd
 * (JOURNAL_STREAM set) each line starts with a <N> priority prefix and no
 * timestamp, since journald adds its own; otherwise an ISO-8601 UTC timestamp
 * and the level name. Written to stderr with a single write(2) per line. */
#ifndef CORRAL_LOG_H
#define CORRAL_LOG_H

#include <stdint.h>

enum corral_log_level {
    CORRAL_LOG_ERR = 3,
    CORRAL_LOG_WARN = 4,
    CORRAL_LOG_NOTICE = 5,
    CORRAL_LOG_INFO = 6,
    CORRAL_LOG_DEBUG = 7,
};

/* Reads JOURNAL_STREAM and CORRAL_LOG_LEVEL (err|warn|notice|info|debug).
 * ident names the program in each line when not under journald. */
void corral_log_init(const char *ident);
void corral_log_set_level(enum corral_log_level level);
/* Parses a level name; returns -1 when unknown. */
int corral_log_level_parse(const char *name, enum corral_log_level *out);

/* fmt formats the key=value fields; msg is the human part. */
void corral_log(enum corral_log_level level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A message that a retry loop would write on every try is written once, then
 * counted: corral_logr writes msg when it differs from the last one it
 * wrote through r, or when window_ms has passed since (the repeats held
 * back in between are written first as "<msg> repeated=N over_ms=T"). Call
 * corral_log_repeat_end when the trouble is over, to write the count of what
 * was held back. The human part (msg) is what is compared; the fields may
 * differ from try to try. */
struct corral_log_repeat {
    char msg[160];
    enum corral_log_level level;
    int64_t window_ms;
    int64_t written_ms;    /* CLOCK_MONOTONIC of the last line written */
    int64_t held_since_ms; /* first repeat held back */
    unsigned long held;    /* repeats held back since written_ms */
};
void corral_log_repeat_init(struct corral_log_repeat *r, int64_t window_ms);
void corral_logr(struct corral_log_repeat *r, enum corral_log_level level, const char *msg,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void corral_log_repeat_end(struct corral_log_repeat *r);

#define corral_log_err(msg, ...)    corral_log(CORRAL_LOG_ERR, msg, __VA_ARGS__)
#define corral_log_warn(msg, ...)   corral_log(CORRAL_LOG_WARN, msg, __VA_ARGS__)
#define corral_log_notice(msg, ...) corral_log(CORRAL_LOG_NOTICE, msg, __VA_ARGS__)
#define corral_log_info(msg, ...)   corral_log(CORRAL_LOG_INFO, msg, __VA_ARGS__)
#define corral_log_debug(msg, ...)  corral_log(CORRAL_LOG_DEBUG, msg, __VA_ARGS__)

#endif

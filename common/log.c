/* Line-oriented logging to stderr, journald-aware. One write(2) per line so
 * lines from a supervisor and its workers sharing stderr never interleave. */
#include "corral/log.h"

#include "corral/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum corral_log_level max_level = CORRAL_LOG_INFO;
static int journal;
static char ident[32] = "corral";

static const char *const level_names[] = {
    [CORRAL_LOG_ERR] = "err",   [CORRAL_LOG_WARN] = "warn",   [CORRAL_LOG_NOTICE] = "notice",
    [CORRAL_LOG_INFO] = "info", [CORRAL_LOG_DEBUG] = "debug",
};

int corral_log_level_parse(const char *name, enum corral_log_level *out)
{
    for (int l = CORRAL_LOG_ERR; l <= CORRAL_LOG_DEBUG; l++) {
        if (strcmp(name, level_names[l]) == 0) {
            *out = (enum corral_log_level)l;
            return 0;
        }
    }
    return -1;
}

void corral_log_init(const char *name)
{
    snprintf(ident, sizeof(ident), "%s", name);
    const char *js = getenv("JOURNAL_STREAM");
    journal = js != NULL && js[0] != '\0';
    const char *lvl = getenv("CORRAL_LOG_LEVEL");
    enum corral_log_level l;
    if (lvl != NULL && corral_log_level_parse(lvl, &l) == 0)
        max_level = l;
    else if (lvl != NULL && lvl[0] != '\0') /* a typo must not pass silently */
        corral_log(CORRAL_LOG_WARN, "CORRAL_LOG_LEVEL is not a level; using info",
                   "got=\"%.32s\" known=\"err, warn, notice, info, debug\"", lvl);
}

void corral_log_set_level(enum corral_log_level level)
{
    max_level = level;
}

static void log_v(enum corral_log_level level, const char *msg, const char *fmt, va_list ap)
{
    if (level > max_level)
        return;
    char line[2048];
    size_t n;
    if (journal) {
        n = (size_t)snprintf(line, sizeof(line), "<%d>%s", (int)level, msg);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        n = (size_t)snprintf(line, sizeof(line),
                             "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %s %s", tm.tm_year + 1900,
                             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                             ts.tv_nsec / 1000000, ident, (int)getpid(), level_names[level], msg);
    }
    if (n < sizeof(line) - 2 && fmt != NULL && fmt[0] != '\0') {
        line[n++] = ' ';
        int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        if (m > 0)
            n += (size_t)m;
    }
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

void corral_log(enum corral_log_level level, const char *msg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_v(level, msg, fmt, ap);
    va_end(ap);
}

void corral_log_repeat_init(struct corral_log_repeat *r, int64_t window_ms)
{
    memset(r, 0, sizeof(*r));
    r->window_ms = window_ms > 0 ? window_ms : 60000;
}

/* Writes the count of what was held back, then forgets it. */
static void repeat_flush(struct corral_log_repeat *r, int64_t now)
{
    if (r->held > 0)
        corral_log(r->level, r->msg, "repeated=%lu over_ms=%lld", r->held,
                   (long long)(now - r->held_since_ms));
    r->held = 0;
}

void corral_logr(struct corral_log_repeat *r, enum corral_log_level level, const char *msg,
                 const char *fmt, ...)
{
    int64_t now = corral_now_ms();
    if (r->msg[0] != '\0' && strncmp(r->msg, msg, sizeof(r->msg) - 1) == 0 &&
        now - r->written_ms < r->window_ms) {
        if (r->held++ == 0)
            r->held_since_ms = now;
        return;
    }
    repeat_flush(r, now);
    snprintf(r->msg, sizeof(r->msg), "%s", msg);
    r->level = level;
    r->written_ms = now;
    va_list ap;
    va_start(ap, fmt);
    log_v(level, msg, fmt, ap);
    va_end(ap);
}

void corral_log_repeat_end(struct corral_log_repeat *r)
{
    repeat_flush(r, corral_now_ms());
    r->msg[0] = '\0';
}

/* Allocation wrappers that abort on OOM, clocks and formatting helpers. */
#include "corral/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void oom(size_t n)
{
    char msg[96];
    int len = snprintf(msg, sizeof(msg), "corral: out of memory allocating %zu bytes\n", n);
    ssize_t w = write(STDERR_FILENO, msg, (size_t)len);
    (void)w;
    abort();
}

void *corral_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *corral_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *corral_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *corral_xstrdup(const char *s)
{
    return corral_xstrndup(s, strlen(s));
}

char *corral_xstrndup(const char *s, size_t n)
{
    char *p = corral_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *corral_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom(0);
    char *p = corral_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t corral_now_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

int64_t corral_wall_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

void corral_format_duration(int64_t ms, char *buf, size_t len)
{
    if (ms < 1000)
        snprintf(buf, len, "%lldms", (long long)ms);
    else if (ms < 60000)
        snprintf(buf, len, "%.1fs", (double)ms / 1000.0);
    else if (ms < 3600000)
        snprintf(buf, len, "%lldm%llds", (long long)(ms / 60000), (long long)(ms % 60000 / 1000));
    else
        snprintf(buf, len, "%lldh%lldm", (long long)(ms / 3600000),
                 (long long)(ms % 3600000 / 60000));
}

/* Local ISO 8601 times with their age, for corralctl job. */
#include "when.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "corral/util.h"

/* "850 ms", "12.4 s", "3 min 05 s", "2 h 10 min", "4 d 03 h": cut, never
 * rounded up (59.99 s is not "60.0 s") */
static void span(int64_t ms, char *buf, size_t n)
{
    long long s = (long long)(ms / 1000);
    if (ms < 1000)
        snprintf(buf, n, "%lld ms", (long long)ms);
    else if (ms < 60000)
        snprintf(buf, n, "%lld.%lld s", (long long)(ms / 1000), (long long)(ms % 1000 / 100));
    else if (s < 3600)
        snprintf(buf, n, "%lld min %02lld s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, n, "%lld h %02lld min", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, n, "%lld d %02lld h", s / 86400, s % 86400 / 3600);
}

void ctl_when(int64_t ms, int64_t now_ms, char *buf, size_t n)
{
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int msec = (int)(ms - (int64_t)t * 1000);
    struct tm tm;
    char date[32] = "?", zone[8] = "";
    if (localtime_r(&t, &tm) != NULL) {
        strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
        long off = tm.tm_gmtoff / 60; /* ISO 8601 wants +01:00, strftime's %z gives +0100 */
        snprintf(zone, sizeof(zone), "%c%02ld:%02ld", off < 0 ? '-' : '+', labs(off) / 60,
                 labs(off) % 60);
    }
    char age[32];
    int64_t d = now_ms - ms;
    span(d >= 0 ? d : -d, age, sizeof(age));
    snprintf(buf, n, "%s.%03d%s, %s%s%s", date, msec, zone, d >= 0 ? "" : "in ", age,
             d >= 0 ? " ago" : "");
}

int64_t ctl_redis_now_ms(redisContext *c)
{
    redisReply *r = c != NULL ? redisCommand(c, "TIME") : NULL;
    int64_t now = corral_wall_ms();
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING)
        now = strtoll(r->element[0]->str, NULL, 10) * 1000 +
              strtoll(r->element[1]->str, NULL, 10) / 1000;
    freeReplyObject(r);
    return now;
}

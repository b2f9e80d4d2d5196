/* corral-web's history: per-minute buckets kept for the charts,
 * and per-slot samples of the snapshots (see history.h). */
#include "history.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "corral/util.h"

/* Upper bounds (ms) of the processing-time buckets h0..h18 of
 * queue/corral.lua's HIST; h19 is the open one above the last. The two
 * lists must agree: tests/integration/test_web.py compares them. */
static const double hist_le_ms[WEB_NHIST - 1] = {1,     2,     5,      10,     20,    50,    100,
                                                 200,   500,   1000,   2000,   5000,  10000, 20000,
                                                 30000, 60000, 120000, 300000, 600000};

/* The counters of a bucket, by the field names corral.lua writes. */
enum { F_ENQ, F_DONE, F_FAIL, F_DEAD, F_RETRY, F_DEFER, F_LOST, F_PS, F_PN, NF };
static const char *const fnames[NF] = {"enq",   "done", "fail", "dead", "retry",
                                       "defer", "lost", "ps",   "pn"};

/* One minute's bucket; 32 bits hold a minute's counts (and ps, the sum
 * of ms, up to 49 days of processing a minute). */
struct minute {
    int64_t m; /* minute number; 0: no data */
    uint32_t f[NF];
    uint32_t h[WEB_NHIST];
};

/* What the charts keep of a final minute: its counts and quantiles. */
struct chart_minute {
    int64_t m; /* minute number; 0: no data */
    uint32_t enq, done, fail, dead;
    uint32_t p50_ms, p95_ms, pn;
};

struct queue {
    char *name;
    char *service;      /* "" for handlers without one */
    int64_t final_upto; /* minutes up to this one are final and read; 0: none yet */
    int64_t cur;        /* the live minute, as of the last plan */
    struct chart_minute ring[WEB_MINUTES + 1];
    struct minute live;
    float depth[WEB_SLOTS];
    int64_t seen_ms;
};

struct host {
    char *name;
    float workers[WEB_SLOTS], busy[WEB_SLOTS], desired[WEB_SLOTS], min[WEB_SLOTS], max[WEB_SLOTS];
    char *decisions[WEB_DECISIONS]; /* from Redis, newest first, compact JSON */
    size_t ndecisions;
    /* Without a decisions list in Redis: the heartbeat's last_decision
     * each time it changed, newest first. */
    char *seen[WEB_DECISIONS];
    int64_t seen_at[WEB_DECISIONS];
    size_t nseen;
    int64_t seen_ms;
};

struct change {
    int64_t t_ms;
    char from[16], to[16];
    char *reason;
};

struct breaker {
    char *name;
    float state[WEB_SLOTS];
    char last[16];
    struct change changes[WEB_CHANGES]; /* newest first */
    size_t nchanges;
    int64_t seen_ms;
};

struct web_history {
    int64_t slot_no[WEB_SLOTS]; /* the slot number held at each ring position; 0: none */
    struct queue **q;
    size_t nq;
    struct host **h;
    size_t nh;
    struct breaker **b;
    size_t nb;
};

struct web_history *web_history_new(void)
{
    return corral_xcalloc(1, sizeof(struct web_history));
}

static void host_free(struct host *x)
{
    for (size_t i = 0; i < x->ndecisions; i++)
        free(x->decisions[i]);
    for (size_t i = 0; i < x->nseen; i++)
        free(x->seen[i]);
    free(x->name);
    free(x);
}

static void breaker_free(struct breaker *x)
{
    for (size_t i = 0; i < x->nchanges; i++)
        free(x->changes[i].reason);
    free(x->name);
    free(x);
}

static void queue_free(struct queue *x)
{
    free(x->name);
    free(x->service);
    free(x);
}

void web_history_free(struct web_history *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->nq; i++)
        queue_free(h->q[i]);
    for (size_t i = 0; i < h->nh; i++)
        host_free(h->h[i]);
    for (size_t i = 0; i < h->nb; i++)
        breaker_free(h->b[i]);
    free(h->q);
    free(h->h);
    free(h->b);
    free(h);
}

static void fill_nan(float *a)
{
    for (size_t i = 0; i < WEB_SLOTS; i++)
        a[i] = NAN;
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* Finds (or adds, up to WEB_MAX_ENTITIES) the queue called name. */
static struct queue *queue_of(struct web_history *h, const char *name, int add)
{
    for (size_t i = 0; i < h->nq; i++)
        if (strcmp(h->q[i]->name, name) == 0)
            return h->q[i];
    if (!add || h->nq >= WEB_MAX_ENTITIES)
        return NULL;
    struct queue *q = corral_xcalloc(1, sizeof(*q));
    q->name = corral_xstrdup(name);
    q->service = corral_xstrdup("");
    fill_nan(q->depth);
    h->q = corral_xrealloc(h->q, sizeof(struct queue *) * (h->nq + 1));
    h->q[h->nq++] = q;
    return q;
}

static struct host *host_of(struct web_history *h, const char *name, int add)
{
    for (size_t i = 0; i < h->nh; i++)
        if (strcmp(h->h[i]->name, name) == 0)
            return h->h[i];
    if (!add || h->nh >= WEB_MAX_ENTITIES)
        return NULL;
    struct host *x = corral_xcalloc(1, sizeof(*x));
    x->name = corral_xstrdup(name);
    fill_nan(x->workers);
    fill_nan(x->busy);
    fill_nan(x->desired);
    fill_nan(x->min);
    fill_nan(x->max);
    h->h = corral_xrealloc(h->h, sizeof(struct host *) * (h->nh + 1));
    h->h[h->nh++] = x;
    return x;
}

static struct breaker *breaker_of(struct web_history *h, const char *name, int add)
{
    for (size_t i = 0; i < h->nb; i++)
        if (strcmp(h->b[i]->name, name) == 0)
            return h->b[i];
    if (!add || h->nb >= WEB_MAX_ENTITIES)
        return NULL;
    struct breaker *x = corral_xcalloc(1, sizeof(*x));
    x->name = corral_xstrdup(name);
    fill_nan(x->state);
    h->b = corral_xrealloc(h->b, sizeof(struct breaker *) * (h->nb + 1));
    h->b[h->nb++] = x;
    return x;
}

size_t web_history_plan(struct web_history *h, json_t *status, struct web_bucket_req **out)
{
    size_t n = 0, cap = 0;
    *out = NULL;
    size_t i;
    json_t *jq;
    json_array_foreach(json_object_get(status, "queues"), i, jq)
    {
        struct queue *q = queue_of(h, jstr(jq, "name"), 1);
        json_int_t t = json_integer_value(json_object_get(jq, "time_ms"));
        if (q == NULL || t <= 0)
            continue;
        int64_t cur = (int64_t)t / 60000;
        int64_t from = q->final_upto ? q->final_upto + 1 : cur - WEB_FIRST_READ + 1;
        if (from < cur - WEB_FIRST_READ + 1)
            from = cur - WEB_FIRST_READ + 1; /* older buckets have expired */
        if (from > cur)
            from = cur; /* the clock went back: read the live minute alone */
        q->cur = cur;
        free(q->service);
        q->service = corral_xstrdup(jstr(jq, "service"));
        for (int64_t m = from; m <= cur; m++) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                *out = corral_xrealloc(*out, sizeof(**out) * cap);
            }
            (*out)[n].queue = q->name;
            (*out)[n].minute = m;
            n++;
        }
    }
    return n;
}

static double quantile(const uint32_t *hist, double p);

/* The chart's view of a minute. */
static struct chart_minute chart_of(const struct minute *b)
{
    struct chart_minute c = {.m = b->m,
                             .enq = b->f[F_ENQ],
                             .done = b->f[F_DONE],
                             .fail = b->f[F_FAIL],
                             .dead = b->f[F_DEAD]};
    /* The runs timed: the histogram's sum (library version 7 writes no "pn"). */
    for (int i = 0; i < WEB_NHIST; i++)
        c.pn += b->h[i];
    c.p50_ms = (uint32_t)quantile(b->h, 0.50);
    c.p95_ms = (uint32_t)quantile(b->h, 0.95);
    return c;
}

static void parse_bucket(struct minute *b, int64_t m, const char *const *fv, size_t n)
{
    memset(b, 0, sizeof(*b));
    b->m = m;
    for (size_t k = 0; k + 1 < n; k += 2) {
        const char *f = fv[k];
        if (f == NULL || fv[k + 1] == NULL)
            continue;
        long long v = atoll(fv[k + 1]);
        if (v < 0)
            continue;
        if (v > UINT32_MAX)
            v = UINT32_MAX;
        if (f[0] == 'h' && f[1] >= '0' && f[1] <= '9') {
            int idx = atoi(f + 1);
            if (idx >= 0 && idx < WEB_NHIST)
                b->h[idx] = (uint32_t)v;
            continue;
        }
        for (int i = 0; i < NF; i++)
            if (strcmp(f, fnames[i]) == 0)
                b->f[i] = (uint32_t)v;
    }
}

void web_history_bucket(struct web_history *h, const struct web_bucket_req *req,
                        const char *const *fv, size_t n)
{
    struct queue *q = queue_of(h, req->queue, 0);
    if (q == NULL)
        return;
    struct minute b;
    parse_bucket(&b, req->minute, fv, n);
    if (req->minute >= q->cur) {
        q->live = b;
        return;
    }
    if (req->minute <= q->final_upto)
        return; /* folded already */
    q->final_upto = req->minute;
    if (q->live.m <= req->minute)
        memset(&q->live, 0, sizeof(q->live)); /* now final: never shown twice */
    if (req->minute > q->cur - WEB_MINUTES - 1)
        q->ring[req->minute % (WEB_MINUTES + 1)] = chart_of(&b);
}

void web_history_decisions(struct web_history *h, const char *host, const char *const *lines,
                           size_t n)
{
    struct host *x = host_of(h, host, 1);
    if (x == NULL)
        return;
    for (size_t i = 0; i < x->ndecisions; i++)
        free(x->decisions[i]);
    x->ndecisions = 0;
    for (size_t i = 0; i < n && x->ndecisions < WEB_DECISIONS; i++) {
        if (lines[i] == NULL)
            continue;
        json_t *d = json_loads(lines[i], 0, NULL);
        if (json_is_object(d))
            x->decisions[x->ndecisions++] = json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(d);
    }
}

static float num(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? (float)json_number_value(v) : NAN;
}

/* 0 closed, 1 half-open, 2 open, 3 throttled (a 429 pauses the service). */
static const char *breaker_state(json_t *b, int64_t now_ms, float *code)
{
    const char *st = jstr(b, "state");
    json_int_t thr = json_integer_value(json_object_get(b, "throttled_until_ms"));
    if (thr > now_ms) {
        *code = 3;
        return "throttled";
    }
    *code = strcmp(st, "open") == 0 ? 2 : strcmp(st, "half_open") == 0 ? 1 : 0;
    return *code == 2 ? "open" : *code == 1 ? "half_open" : "closed";
}

void web_history_sample(struct web_history *h, json_t *status, int64_t wall_ms)
{
    int64_t sn = wall_ms / WEB_SLOT_MS;
    size_t idx = (size_t)(sn % WEB_SLOTS);
    if (h->slot_no[idx] != sn) {
        /* A new slot: what the ring held there is an hour old. */
        h->slot_no[idx] = sn;
        for (size_t i = 0; i < h->nq; i++)
            h->q[i]->depth[idx] = NAN;
        for (size_t i = 0; i < h->nh; i++) {
            struct host *x = h->h[i];
            x->workers[idx] = x->busy[idx] = x->desired[idx] = x->min[idx] = x->max[idx] = NAN;
        }
        for (size_t i = 0; i < h->nb; i++)
            h->b[i]->state[idx] = NAN;
    }
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(status, "queues"), i, o)
    {
        struct queue *q = queue_of(h, jstr(o, "name"), 1);
        if (q != NULL) {
            q->depth[idx] = num(o, "depth");
            q->seen_ms = wall_ms;
        }
    }
    json_array_foreach(json_object_get(status, "hosts"), i, o)
    {
        struct host *x = host_of(h, jstr(o, "host"), 1);
        if (x == NULL)
            continue;
        x->workers[idx] = num(o, "workers");
        x->busy[idx] = num(o, "busy");
        x->desired[idx] = num(o, "desired");
        x->min[idx] = num(o, "min");
        x->max[idx] = num(o, "max");
        x->seen_ms = wall_ms;
        const char *d = jstr(o, "last_decision");
        if (d[0] != '\0' && (x->nseen == 0 || strcmp(x->seen[0], d) != 0)) {
            if (x->nseen == WEB_DECISIONS)
                free(x->seen[--x->nseen]);
            memmove(x->seen + 1, x->seen, sizeof(x->seen[0]) * x->nseen);
            memmove(x->seen_at + 1, x->seen_at, sizeof(x->seen_at[0]) * x->nseen);
            x->seen[0] = corral_xstrdup(d);
            x->seen_at[0] = wall_ms;
            x->nseen++;
        }
    }
    json_array_foreach(json_object_get(status, "breakers"), i, o)
    {
        struct breaker *x = breaker_of(h, jstr(o, "service"), 1);
        if (x == NULL)
            continue;
        float code;
        const char *st = breaker_state(o, wall_ms, &code);
        x->state[idx] = code;
        x->seen_ms = wall_ms;
        if (x->last[0] != '\0' && strcmp(x->last, st) != 0) {
            if (x->nchanges == WEB_CHANGES)
                free(x->changes[--x->nchanges].reason);
            memmove(x->changes + 1, x->changes, sizeof(x->changes[0]) * x->nchanges);
            struct change *c = &x->changes[0];
            c->t_ms = wall_ms;
            snprintf(c->from, sizeof(c->from), "%s", x->last);
            snprintf(c->to, sizeof(c->to), "%s", st);
            c->reason = corral_xstrdup(code == 3 ? jstr(o, "throttle_reason") : jstr(o, "reason"));
            x->nchanges++;
        }
        snprintf(x->last, sizeof(x->last), "%s", st);
    }
    /* Forget what has been gone for an hour. */
    int64_t gone = wall_ms - (int64_t)WEB_SLOTS * WEB_SLOT_MS;
    size_t k = 0;
    for (size_t j = 0; j < h->nq; j++)
        if (h->q[j]->seen_ms < gone)
            queue_free(h->q[j]);
        else
            h->q[k++] = h->q[j];
    h->nq = k;
    k = 0;
    for (size_t j = 0; j < h->nh; j++)
        if (h->h[j]->seen_ms < gone)
            host_free(h->h[j]);
        else
            h->h[k++] = h->h[j];
    h->nh = k;
    k = 0;
    for (size_t j = 0; j < h->nb; j++)
        if (h->b[j]->seen_ms < gone)
            breaker_free(h->b[j]);
        else
            h->b[k++] = h->b[j];
    h->nb = k;
}

void web_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* Interpolated quantile of a histogram, as corral_stats computes it. */
static double quantile(const uint32_t *hist, double p)
{
    uint64_t total = 0;
    for (int b = 0; b < WEB_NHIST; b++)
        total += hist[b];
    if (total == 0)
        return 0;
    double want = p * (double)total, acc = 0;
    for (int b = 0; b < WEB_NHIST; b++) {
        double cnt = (double)hist[b];
        if (cnt > 0 && acc + cnt >= want) {
            double lo = b == 0 ? 0 : hist_le_ms[b - 1];
            double hi = b < WEB_NHIST - 1 ? hist_le_ms[b] : lo;
            return floor(lo + (hi - lo) * (want - acc) / cnt + 0.5);
        }
        acc += cnt;
    }
    return hist_le_ms[WEB_NHIST - 2];
}

static void put_series(FILE *out, const char *key, const float *a, const int *order, size_t n)
{
    fprintf(out, "\"%s\":[", key);
    for (size_t i = 0; i < n; i++) {
        float v = a[order[i]];
        if (i)
            fputc(',', out);
        if (isnan(v))
            fputs("null", out);
        else
            fprintf(out, "%.10g", (double)v);
    }
    fputc(']', out);
}

/* The minute of q at m: the live one, a kept final one, or none (zeros). */
static struct chart_minute minute_at(const struct queue *q, int64_t m)
{
    static const struct chart_minute none;
    if (m == q->cur)
        return q->live.m == m ? chart_of(&q->live) : none;
    const struct chart_minute *b = &q->ring[m % (WEB_MINUTES + 1)];
    return b->m == m ? *b : none;
}

char *web_history_json(struct web_history *h, int64_t wall_ms, size_t *len)
{
    char *buf = NULL;
    FILE *out = open_memstream(&buf, len);
    if (out == NULL)
        abort();
    /* Samples in time order: the ring positions holding the last hour. */
    int order[WEB_SLOTS];
    size_t ns = 0;
    int64_t sn = wall_ms / WEB_SLOT_MS;
    for (int64_t s = sn - WEB_SLOTS + 1; s <= sn; s++) {
        size_t idx = (size_t)(s % WEB_SLOTS);
        if (s > 0 && h->slot_no[idx] == s)
            order[ns++] = (int)idx;
    }
    fprintf(out, "{\"time_ms\":%lld,\"slot_ms\":%d,\"minute_ms\":[", (long long)wall_ms,
            WEB_SLOT_MS);
    int64_t cur = wall_ms / 60000;
    for (int64_t m = cur - WEB_MINUTES; m <= cur; m++)
        fprintf(out, "%s%lld", m > cur - WEB_MINUTES ? "," : "", (long long)m * 60000);
    fputs("],\"sample_ms\":[", out);
    for (size_t i = 0; i < ns; i++)
        fprintf(out, "%s%lld", i ? "," : "", (long long)h->slot_no[order[i]] * WEB_SLOT_MS);
    fputs("],\"queues\":{", out);
    for (size_t i = 0; i < h->nq; i++) {
        const struct queue *q = h->q[i];
        web_json_string(out, q->name);
        fputs(":{", out);
        /* The minute axis is the queue's own (Redis's clock). */
        int64_t qc = q->cur ? q->cur : cur;
        static const char *const series[] = {"enqueued", "done",   "failed",
                                             "dead",     "p50_ms", "p95_ms"};
        for (size_t s = 0; s < sizeof(series) / sizeof(series[0]); s++) {
            fprintf(out, "%s\"%s\":[", s ? "," : "", series[s]);
            for (int64_t m = qc - WEB_MINUTES; m <= qc; m++) {
                struct chart_minute b = minute_at(q, m);
                const uint32_t v[] = {b.enq, b.done, b.fail, b.dead, b.p50_ms, b.p95_ms};
                fputs(m > qc - WEB_MINUTES ? "," : "", out);
                if (s >= 4 && b.pn == 0)
                    fputs("null", out); /* no processing time without runs */
                else
                    fprintf(out, "%u", v[s]);
            }
            fputc(']', out);
        }
        fputc(',', out);
        put_series(out, "depth", q->depth, order, ns);
        fprintf(out, "}%s", i + 1 < h->nq ? "," : "");
    }
    fputs("},\"hosts\":{", out);
    for (size_t i = 0; i < h->nh; i++) {
        const struct host *x = h->h[i];
        web_json_string(out, x->name);
        fputs(":{", out);
        put_series(out, "workers", x->workers, order, ns);
        fputc(',', out);
        put_series(out, "busy", x->busy, order, ns);
        fputc(',', out);
        put_series(out, "desired", x->desired, order, ns);
        fputc(',', out);
        put_series(out, "min", x->min, order, ns);
        fputc(',', out);
        put_series(out, "max", x->max, order, ns);
        /* Decisions from Redis when corrald keeps them; else the heartbeat's
         * last_decision each time corral-web saw it change. */
        fprintf(out, ",\"decisions_source\":\"%s\",\"decisions\":[",
                x->ndecisions ? "redis" : "heartbeat");
        if (x->ndecisions)
            for (size_t d = 0; d < x->ndecisions; d++)
                fprintf(out, "%s%s", d ? "," : "", x->decisions[d]);
        else
            for (size_t d = 0; d < x->nseen; d++) {
                fprintf(out, "%s{\"t_ms\":%lld,\"reason\":", d ? "," : "",
                        (long long)x->seen_at[d]);
                web_json_string(out, x->seen[d]);
                fputc('}', out);
            }
        fprintf(out, "]}%s", i + 1 < h->nh ? "," : "");
    }
    fputs("},\"breakers\":{", out);
    for (size_t i = 0; i < h->nb; i++) {
        const struct breaker *x = h->b[i];
        web_json_string(out, x->name);
        fputs(":{", out);
        put_series(out, "state", x->state, order, ns);
        fputs(",\"changes\":[", out);
        for (size_t c = 0; c < x->nchanges; c++) {
            const struct change *ch = &x->changes[c];
            fprintf(out, "%s{\"t_ms\":%lld,\"from\":\"%s\",\"to\":\"%s\",\"reason\":", c ? "," : "",
                    (long long)ch->t_ms, ch->from, ch->to);
            web_json_string(out, ch->reason);
            fputc('}', out);
        }
        fprintf(out, "]}%s", i + 1 < h->nb ? "," : "");
    }
    fputs("}}", out);
    if (fclose(out) != 0)
        abort();
    return buf;
}

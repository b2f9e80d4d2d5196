/* The scaling simulator: corral's scaler (supervisor/scaler.c, the code
 * corrald runs) against a KEDA/HPA-style policy on synthetic one-hour load
 * traces, as a discrete-event simulation with no real processes: Poisson
 * arrivals, log-normal service times, workers with `concurrency` slots that
 * are ready some time after they are forked, work spread over the pool as
 * BLPOP wakes idle workers, and the statistics a real corrald reads
 * (corral_stats' per-minute buckets). Each trace runs REPS times with
 * fixed seeds, the same jobs for every policy. docs/scaling.md has the
 * model, the figures and how to read them.
 *
 * usage: sim_scaler [-q] [-g] [-u UTIL_PCT] [-s SEED] [-v TRACE] [-c CSV_OUT]
 *   -q  only the table            -g  exit 1 when the goal is not met
 *   -u  corral's target_utilization in percent (default 80, the shipped default)
 *   -s  first seed of the replications (default 1)
 *   -v  print corral's decisions on trace 0..4 (first replication)
 *   -c  write the step-burst trace (both policies, once a second) as CSV
 *       for bench/sim_plot.gp */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../supervisor/scaler.h"

/* --- the modelled system (the same for both policies) ----------------- */
#define DURATION_S 3600.0
#define SLOTS      4               /* [pool] concurrency (of the one-hour traces) */
#define MIN_W      2               /* [pool] min */
#define MAX_W      60              /* [pool] max */
#define NW         (2 * MAX_W + 8) /* process table: room for draining ones too */
/* The bench-peers row 7 trace (bench/peers/run.py row_burst): 300 ms jobs
 * (exec /bin/sleep 0.3) paced 3/s for 5 s, 30/s for 5 s, 3/s for 5 s; 2..20
 * workers of one slot; compared with fixed pools of 2 and 20. */
#define ROW7_BASE   3.0
#define ROW7_SECS   5.0
#define ROW7_MS     0.300 /* the sleep ... */
#define ROW7_OVER   0.020 /* ... and up to this much fork, exec and ack on top */
#define ROW7_MIN    2
#define ROW7_MAX    20
#define ROW7_END_S  60.0 /* simulated time: the jobs are done long before */
#define START_S     0.3  /* fork + exec + "ready" */
#define TARGET_MS   5000 /* [scale] target_wait: judged on the p95 wait */
#define PROC_MEDIAN 2.0  /* service time: log-normal, median 2 s ... */
#define PROC_SIGMA  0.6  /* ... sigma 0.6 (mean 2.39 s, p95 5.4 s) */
#define TICK_S      1.0  /* corrald's [scale] tick */
#define HPA_SYNC_S  15.0 /* HPA's sync period */
#define HPA_STAB_S  300.0
#define HPA_TARGETS 32 /* targets per worker searched: 1..32 */
#define OUTAGE_FROM 900.0
#define OUTAGE_TO   1200.0
#define OPEN_S      30.0 /* breaker: deferred jobs come back when an open period ends */
#define MAX_JOBS    200000
#define REPS        10 /* replications per trace and policy, each with its own seed */
#define NMIN        62 /* minutes of DURATION_S, and one spare */
#define NHIST       40 /* processing-time histogram: buckets growing by 1.25x from 10 ms */

enum trace { STEP, SINE, SPIKY, OUTAGE, ROW7, NTRACES };
static const char *const trace_names[] = {"step burst", "diurnal sine", "spiky", "AI outage",
                                          "row 7 burst"};
static const double trace_peak[] = {20.0, 15.0, 30.0, 6.0, 30.0};

/* Per-trace pool: the one-hour traces share one; row 7 has its own. */
static int trace_slots(enum trace tr)
{
    return tr == ROW7 ? 1 : SLOTS;
}
static int trace_min(enum trace tr)
{
    return tr == ROW7 ? ROW7_MIN : MIN_W;
}
static int trace_max(enum trace tr)
{
    return tr == ROW7 ? ROW7_MAX : MAX_W;
}
static double trace_end(enum trace tr)
{
    return tr == ROW7 ? ROW7_END_S : DURATION_S;
}

/* Arrivals per second at time t. */
static double rate(enum trace tr, double t)
{
    switch (tr) {
    case STEP: /* 2/s, then 20/s for 15 minutes */
        return t >= 600 && t < 1500 ? 20.0 : 2.0;
    case SINE: /* a day compressed into 30 minutes, twice: 1/s to 15/s */
        return 8.0 - 7.0 * cos(2 * M_PI * t / 1800.0);
    case SPIKY: /* 3/s, with 30 s spikes of 30/s every 5 minutes */
        return fmod(t, 300.0) >= 150.0 && fmod(t, 300.0) < 180.0 ? 30.0 : 3.0;
    case OUTAGE: /* 6/s; the AI service is down from 900 s to 1200 s */
        return 6.0;
    case ROW7: /* paced, not Poisson: see jobset() */
        return t < ROW7_SECS || t >= 2 * ROW7_SECS ? ROW7_BASE : 10 * ROW7_BASE;
    default:
        return 0;
    }
}

static int down(enum trace tr, double t)
{
    return tr == OUTAGE && t >= OUTAGE_FROM && t < OUTAGE_TO;
}

/* --- deterministic randomness ------------------------------------------ */
static unsigned long long rng;
static double uniform(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static double normal(void)
{
    return sqrt(-2.0 * log(uniform())) * cos(2 * M_PI * uniform());
}

/* --- events -------------------------------------------------------------- */
enum evtype { EV_ARRIVE, EV_DONE, EV_READY, EV_PROMOTE, EV_OUTAGE, EV_TICK, EV_SAMPLE };
struct event {
    double t;
    long seq; /* ties broken by insertion order: deterministic */
    int type, a, b;
};
static struct event *heap;
static size_t nheap, capheap;
static long evseq;

static int ev_before(const struct event *x, const struct event *y)
{
    return x->t < y->t || (x->t == y->t && x->seq < y->seq);
}
static void push(double t, int type, int a, int b)
{
    if (nheap == capheap) {
        capheap = capheap ? capheap * 2 : 4096;
        heap = realloc(heap, capheap * sizeof(*heap));
        if (heap == NULL)
            abort();
    }
    size_t i = nheap++;
    heap[i] = (struct event){.t = t, .seq = evseq++, .type = type, .a = a, .b = b};
    while (i > 0 && ev_before(&heap[i], &heap[(i - 1) / 2])) {
        struct event tmp = heap[i];
        heap[i] = heap[(i - 1) / 2];
        heap[(i - 1) / 2] = tmp;
        i = (i - 1) / 2;
    }
}
static struct event pop(void)
{
    struct event top = heap[0];
    heap[0] = heap[--nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < nheap && ev_before(&heap[l], &heap[m]))
            m = l;
        if (r < nheap && ev_before(&heap[r], &heap[m]))
            m = r;
        if (m == i)
            break;
        struct event tmp = heap[i];
        heap[i] = heap[m];
        heap[m] = tmp;
        i = m;
    }
    return top;
}

/* --- the pool -------------------------------------------------------------- */
struct job {
    double arrive, service, start;
    int run;      /* incremented on every start, so a stale EV_DONE is recognised */
    int affected; /* held up by the outage: not judged against the wait target */
};
enum wstate { W_NONE, W_STARTING, W_READY, W_DRAINING };
struct worker {
    enum wstate state;
    int busy;
    int running[SLOTS];
    int gen; /* bumped on every fork into this entry: stale EV_READY is ignored */
    double started, blocked_since;
};

enum policy { CORRAL, HPA, FIXED };

/* The traced run's queue depth and workers, once a second, per policy. */
#define NSEC 3600
static int sampled[3][NSEC][2];

static int verbose = -1; /* -v TRACE: print corral's decisions on that trace */
static unsigned long long base_seed = 1;

struct sim {
    enum trace tr;
    enum policy pol;
    int hpa_target; /* jobs per worker; FIXED: the pool's size */
    int slots, min_w, max_w;
    double tick_phase; /* corrald's ticks fall at tick_phase + k x TICK_S */
    int first;         /* the first replication: -v prints its decisions */
    int util_pm;
    struct job *jobs;
    int njobs;
    int *ready; /* FIFO ring of job indices */
    int rhead, rlen;
    struct worker w[NW];
    int inflight;
    /* what corral_stats reports: per-minute counters */
    long enq[NMIN], done[NMIN], pn[NMIN];
    double ps[NMIN];
    long hist[NMIN][NHIST];
    /* the policies */
    struct corral_scaler_state st;
    int desired;
    double hpa_t[512];
    int hpa_w[512];
    int hpa_n;
    /* results */
    int nproc; /* processes that cost: starting, ready or draining */
    double worker_s, last_t;
    int events, peak;
    double cleared_at;
    long ndone;           /* jobs finished */
    double last_done;     /* when the last one finished */
    double done_worker_s; /* worker_s then */
};

/* Workers that count for the scaler (starting or ready, not draining),
 * and how many of them run a job. */
static int live(const struct sim *s, int *busy_workers)
{
    int n = 0, bw = 0;
    for (int i = 0; i < NW; i++)
        if (s->w[i].state == W_STARTING || s->w[i].state == W_READY) {
            n++;
            bw += s->w[i].busy > 0;
        }
    if (busy_workers)
        *busy_workers = bw;
    return n;
}

static void account(struct sim *s, double t)
{
    s->worker_s += s->nproc * (t - s->last_t);
    s->last_t = t;
}

static void enqueue_ready(struct sim *s, int j)
{
    s->ready[(s->rhead + s->rlen) % MAX_JOBS] = j;
    s->rlen++;
}

static void defer(struct sim *s, double t, int j)
{
    /* The breaker is open: the job goes back to the scheduled set, without
     * spending an attempt, until the current open period ends. */
    s->jobs[j].affected = 1;
    double back = OUTAGE_FROM + OPEN_S * (floor((t - OUTAGE_FROM) / OPEN_S) + 1);
    push(back, EV_PROMOTE, j, 0);
}

static void start_job(struct sim *s, double t, int wi, int j)
{
    struct worker *w = &s->w[wi];
    struct job *jb = &s->jobs[j];
    if (down(s->tr, t)) {
        defer(s, t, j);
        return;
    }
    jb->start = t;
    jb->run++;
    w->running[w->busy++] = j;
    s->inflight++;
    push(t + jb->service, EV_DONE, j, jb->run * 1024 + wi);
}

/* Hands ready jobs to workers with free slots. Idle workers wait in BLPOP
 * in the order they blocked, and an enqueue wakes the longest waiting one,
 * so work spreads across the pool the way it does in corral. */
static void dispatch(struct sim *s, double t)
{
    while (s->rlen > 0) {
        int best = -1;
        for (int i = 0; i < NW; i++) {
            struct worker *w = &s->w[i];
            if (w->state == W_READY && w->busy < s->slots &&
                (best < 0 || w->blocked_since < s->w[best].blocked_since))
                best = i;
        }
        if (best < 0)
            return;
        int j = s->ready[s->rhead];
        s->rhead = (s->rhead + 1) % MAX_JOBS;
        s->rlen--;
        start_job(s, t, best, j);
        s->w[best].blocked_since = t;
    }
}

static void spawn(struct sim *s, double t)
{
    for (int i = 0; i < NW; i++)
        if (s->w[i].state == W_NONE) {
            int gen = s->w[i].gen + 1;
            s->w[i] =
                (struct worker){.state = W_STARTING, .gen = gen, .started = t, .blocked_since = t};
            s->nproc++;
            push(t + START_S, EV_READY, i, gen);
            return;
        }
}

static int minute(double t)
{
    int m = (int)(t / 60.0);
    return m < NMIN ? m : NMIN - 1;
}

/* Bucket b holds (0.010 x 1.25^(b-1), 0.010 x 1.25^b] seconds. */
static int hist_bucket(double sec)
{
    if (sec <= 0.010)
        return 0;
    int b = (int)ceil(log(sec / 0.010) / log(1.25) - 1e-9);
    return b < NHIST - 1 ? b : NHIST - 1;
}

/* corral_stats over its default window: the previous whole minute and the
 * current one so far. */
static void stats(const struct sim *s, double t, struct corral_scale_queue *q)
{
    int m = minute(t);
    int from = m > 0 ? m - 1 : 0;
    double span = t - from * 60.0;
    long enq = 0, done = 0, pn = 0, h[NHIST] = {0};
    double ps = 0;
    for (int k = from; k <= m; k++) {
        enq += s->enq[k];
        done += s->done[k];
        pn += s->pn[k];
        ps += s->ps[k];
        for (int b = 0; b < NHIST; b++)
            h[b] += s->hist[k][b];
    }
    q->arrival_per_s = span > 0 ? (double)enq / span : 0;
    q->completion_per_s = span > 0 ? (double)done / span : 0;
    q->proc_ms_mean = pn > 0 ? (int64_t)(ps / (double)pn * 1000.0 + 0.5) : 0;
    q->proc_ms_p95 = 0;
    if (pn > 0) {
        /* interpolated within the bucket, as corral_stats does */
        double want = 0.95 * (double)pn, acc = 0, lo = 0, hi = 0.010;
        for (int b = 0; b < NHIST; b++, lo = hi, hi *= 1.25) {
            if (h[b] > 0 && acc + (double)h[b] >= want) {
                q->proc_ms_p95 = (int64_t)((lo + (hi - lo) * (want - acc) / (double)h[b]) * 1000);
                break;
            }
            acc += (double)h[b];
        }
    }
}

static void corral_tick(struct sim *s, double t)
{
    struct corral_scale_queue q = {.name = "prompts", .hosts = 1};
    stats(s, t, &q);
    q.depth = s->rlen;
    q.inflight = s->inflight;
    q.oldest_wait_ms = s->rlen ? (int64_t)((t - s->jobs[s->ready[s->rhead]].arrive) * 1000) : 0;
    if (down(s->tr, t)) {
        q.held = 1;
        q.hold_reason = "breaker open for service ai";
    }
    int bw;
    int n = live(s, &bw);
    /* The settings of [scale] in docs/configuration.md; max_step_out as corrald sets
     * it (grow by doubling, at least 8 a step). */
    struct corral_scale_policy p = {
        .min = s->min_w,
        .max = s->max_w,
        .slots_per_worker = s->slots,
        .tick_ms = (int64_t)(TICK_S * 1000),
        .target_wait_ms = TARGET_MS,
        .target_utilization_pm = s->util_pm,
        .scale_out_cooldown_ms = 5000,
        .scale_in_window_ms = 120000,
        .cpu_ceiling_pm = 850,
        .mem_ceiling_pm = 850,
        .max_step_out = n > 8 ? n : 8,
    };
    struct corral_scale_input in = {.now_ms = (int64_t)(t * 1000),
                                    .queues = &q,
                                    .nqueues = 1,
                                    .workers = n,
                                    .busy_workers = bw,
                                    .cpu_pm = 300,
                                    .mem_pm = 300};
    struct corral_scale_decision d;
    corral_scale_decide(&p, &in, &s->st, &d);
    if (d.desired != n) {
        s->events++;
        if (verbose == (int)s->tr && s->first)
            printf("  %7.1f  %s\n", t, d.reason);
    }
    s->desired = d.desired;
    /* corrald's reconcile: fork the missing workers; stop one idle one. */
    for (int i = n; i < d.desired; i++)
        spawn(s, t);
    if (n > d.desired) {
        struct corral_scale_worker tab[NW];
        for (int i = 0; i < NW; i++)
            tab[i] =
                (struct corral_scale_worker){.idle = s->w[i].state == W_READY && s->w[i].busy == 0,
                                             .started_ms = (int64_t)(s->w[i].started * 1000)};
        int pick = corral_scale_pick_idle(tab, NW);
        if (pick >= 0) {
            s->w[pick].state = W_NONE;
            s->nproc--;
        }
    }
}

static void hpa_tick(struct sim *s, double t)
{
    int rec = (int)ceil((double)s->rlen / s->hpa_target);
    rec = rec < s->min_w ? s->min_w : rec > s->max_w ? s->max_w : rec;
    s->hpa_t[s->hpa_n % 512] = t;
    s->hpa_w[s->hpa_n % 512] = rec;
    s->hpa_n++;
    /* scale-down stabilisation: the highest recommendation of 300 s */
    int stab = rec;
    for (int k = 0; k < s->hpa_n && k < 512; k++)
        if (s->hpa_t[k] > t - HPA_STAB_S && s->hpa_w[k] > stab)
            stab = s->hpa_w[k];
    int n = live(s, NULL);
    int want = rec > n ? rec : stab < n ? stab : n;
    if (want != n)
        s->events++;
    s->desired = want;
    for (int i = n; i < want; i++)
        spawn(s, t);
    /* Kubernetes-style scale-in: the pods removed get SIGTERM, take no new
     * work and exit when their jobs are done. Generously, the least busy
     * ones are chosen. */
    for (int k = n; k > want; k--) {
        int best = -1;
        for (int i = 0; i < NW; i++)
            if ((s->w[i].state == W_READY || s->w[i].state == W_STARTING) &&
                (best < 0 || s->w[i].busy < s->w[best].busy))
                best = i;
        if (best < 0)
            break;
        s->w[best].state = s->w[best].busy ? W_DRAINING : W_NONE;
        s->nproc -= s->w[best].state == W_NONE;
    }
}

struct result {
    double p95_wait, worker_s, cleared_s;
    int met, events, peak;
};

static struct sim *S;

/* Arrivals by thinning a Poisson process at the trace's peak rate, with
 * their service times; one set per trace and replication, shared by every
 * policy and HPA target. */
struct jobset {
    int n;
    double *arrive, *service;
};
static struct jobset jobsets[NTRACES][REPS];
static unsigned long long jobset_seed[NTRACES][REPS];

static const struct jobset *jobset(enum trace tr, unsigned long long seed)
{
    struct jobset *js = &jobsets[tr][seed % REPS];
    if (js->arrive != NULL && jobset_seed[tr][seed % REPS] == seed)
        return js;
    if (js->arrive == NULL) {
        js->arrive = malloc(sizeof(double) * MAX_JOBS);
        js->service = malloc(sizeof(double) * MAX_JOBS);
        if (js->arrive == NULL || js->service == NULL)
            abort();
    }
    jobset_seed[tr][seed % REPS] = seed;
    rng = seed * 0x9e3779b97f4a7c15ULL + (unsigned)tr;
    double t = 0;
    js->n = 0;
    if (tr == ROW7) {
        /* bench/peers/run.py's feeder: job k of a phase at phase start +
         * k / rate; the jobs are the same each replication up to the
         * overhead on top of the sleep (the replications differ in where
         * corrald's tick falls). */
        for (int ph = 0; ph < 3; ph++) {
            double r = rate(tr, ph * ROW7_SECS);
            for (int k = 0; k < (int)(r * ROW7_SECS); k++) {
                js->arrive[js->n] = ph * ROW7_SECS + k / r;
                js->service[js->n] = ROW7_MS + ROW7_OVER * uniform();
                js->n++;
            }
        }
        return js;
    }
    while (js->n < MAX_JOBS) {
        t += -log(uniform()) / trace_peak[tr];
        if (t >= trace_end(tr))
            break;
        double accept = uniform();
        double service = PROC_MEDIAN * exp(PROC_SIGMA * normal());
        if (accept * trace_peak[tr] <= rate(tr, t)) {
            js->arrive[js->n] = t;
            js->service[js->n] = service;
            js->n++;
        }
    }
    return js;
}

/* The k-th smallest of v[0..n) (v is reordered): Hoare's selection. */
static double select_kth(double *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        double pivot = v[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                double tmp = v[i];
                v[i] = v[j];
                v[j] = tmp;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    return v[k];
}

/* Waits pooled over the replications of one (trace, policy) run. */
static double *pool;
static size_t npool;

/* One replication: appends the judged waits to pool. */
static struct result simulate(enum trace tr, enum policy pol, int hpa_target, int util_pm,
                              unsigned long long seed, int trace_out)
{
    struct sim *s = S;
    struct job *jobs = s->jobs;
    int *ready = s->ready;
    memset(s, 0, sizeof(*s));
    s->jobs = jobs;
    s->ready = ready;
    s->tr = tr;
    s->first = seed == base_seed;
    s->pol = pol;
    s->hpa_target = hpa_target;
    s->util_pm = util_pm;
    s->cleared_at = -1;
    s->slots = trace_slots(tr);
    s->min_w = trace_min(tr);
    s->max_w = trace_max(tr);
    /* Row 7's feeder starts at an arbitrary point of corrald's tick; the
     * replications spread it evenly over one tick. */
    s->tick_phase = tr == ROW7 ? TICK_S * ((double)(seed - base_seed) + 0.5) / REPS : 0;
    nheap = 0;
    evseq = 0;

    /* The same jobs for every policy: generated once per (trace, seed). */
    const struct jobset *js = jobset(tr, seed);
    s->njobs = js->n;
    for (int k = 0; k < js->n; k++)
        s->jobs[k] = (struct job){.arrive = js->arrive[k], .service = js->service[k], .start = -1};
    if (s->njobs > 0)
        push(s->jobs[0].arrive, EV_ARRIVE, 0, 0);
    int initial = pol == FIXED ? hpa_target : s->min_w;
    for (int i = 0; i < initial; i++) {
        s->w[i] = (struct worker){.state = W_READY, .started = -1, .blocked_since = -1};
        s->nproc++;
    }
    s->desired = initial;
    if (tr == OUTAGE) {
        push(OUTAGE_FROM, EV_OUTAGE, 0, 0);
        push(OUTAGE_TO, EV_OUTAGE, 1, 0);
    }
    if (pol != FIXED)
        push(pol == CORRAL ? s->tick_phase + TICK_S : HPA_SYNC_S, EV_TICK, 0, 0);
    push(0, EV_SAMPLE, 0, 0);

    while (nheap > 0) {
        struct event e = pop();
        if (e.t >= trace_end(tr))
            break;
        account(s, e.t);
        switch (e.type) {
        case EV_ARRIVE:
            s->enq[minute(e.t)]++;
            enqueue_ready(s, e.a);
            if (e.a + 1 < s->njobs)
                push(s->jobs[e.a + 1].arrive, EV_ARRIVE, e.a + 1, 0);
            dispatch(s, e.t);
            break;
        case EV_DONE: {
            int j = e.a, wi = e.b % 1024;
            if (e.b / 1024 != s->jobs[j].run || s->jobs[j].start < 0)
                break; /* failed by the outage, already deferred */
            struct worker *w = &s->w[wi];
            for (int k = 0; k < w->busy; k++)
                if (w->running[k] == j) {
                    w->running[k] = w->running[--w->busy];
                    break;
                }
            s->inflight--;
            s->ndone++;
            s->last_done = e.t;
            s->done_worker_s = s->worker_s;
            if (tr == ROW7 && s->cleared_at < 0 &&
                s->ndone >= (long)(ROW7_BASE * ROW7_SECS + 10 * ROW7_BASE * ROW7_SECS))
                s->cleared_at = e.t; /* run.py: done >= the jobs enqueued by the burst's end */
            int m = minute(e.t);
            s->done[m]++;
            s->pn[m]++;
            s->ps[m] += s->jobs[j].service;
            s->hist[m][hist_bucket(s->jobs[j].service)]++;
            if (w->state == W_DRAINING && w->busy == 0) {
                w->state = W_NONE;
                s->nproc--;
            } else if (w->state == W_READY && s->rlen > 0) {
                /* a worker with a free slot reserves again at once */
                int nj = s->ready[s->rhead];
                s->rhead = (s->rhead + 1) % MAX_JOBS;
                s->rlen--;
                start_job(s, e.t, wi, nj);
            } else {
                w->blocked_since = e.t; /* reserved nothing: blocks in BLPOP */
            }
            break;
        }
        case EV_READY:
            if (s->w[e.a].state == W_STARTING && s->w[e.a].gen == e.b) {
                s->w[e.a].state = W_READY;
                s->w[e.a].blocked_since = e.t;
                dispatch(s, e.t);
            }
            break;
        case EV_PROMOTE:
            enqueue_ready(s, e.a);
            dispatch(s, e.t);
            break;
        case EV_OUTAGE:
            if (e.a == 0) {
                /* the calls running when the service goes down fail */
                for (int i = 0; i < NW; i++) {
                    struct worker *w = &s->w[i];
                    for (int k = 0; k < w->busy; k++) {
                        s->jobs[w->running[k]].start = -1;
                        defer(s, e.t, w->running[k]);
                        s->inflight--;
                    }
                    w->busy = 0;
                    if (w->state == W_DRAINING) {
                        w->state = W_NONE;
                        s->nproc--;
                    }
                }
            } else {
                dispatch(s, e.t);
            }
            break;
        case EV_TICK:
            if (pol == CORRAL)
                corral_tick(s, e.t);
            else
                hpa_tick(s, e.t);
            dispatch(s, e.t);
            push(e.t + (pol == CORRAL ? TICK_S : HPA_SYNC_S), EV_TICK, 0, 0);
            break;
        case EV_SAMPLE: {
            int n = s->nproc;
            if (n > s->peak)
                s->peak = n;
            if (tr == OUTAGE && e.t >= OUTAGE_TO && s->cleared_at < 0 && s->rlen == 0)
                s->cleared_at = e.t;
            int sec = (int)(e.t + 0.5);
            if (trace_out && sec < NSEC) {
                sampled[pol][sec][0] = s->rlen;
                sampled[pol][sec][1] = n;
            }
            push(e.t + 1.0, EV_SAMPLE, 0, 0);
            break;
        }
        }
    }
    account(s, trace_end(tr));
    if (tr == ROW7) /* run.py sums slot-seconds until the last job is done */
        s->worker_s = s->done_worker_s;

    /* The wait of every job that started, from its arrival to its start.
     * In the outage trace no policy can start jobs while the service is
     * down: the jobs it held up (deferred, or arrived before the backlog it
     * left was gone) are not judged; how long the backlog took to clear is
     * reported instead. */
    for (int k = 0; k < s->njobs; k++) {
        struct job *j = &s->jobs[k];
        if (j->start < 0)
            continue;
        if (tr == OUTAGE && (j->affected || (j->arrive >= OUTAGE_FROM &&
                                             (s->cleared_at < 0 || j->arrive < s->cleared_at))))
            continue;
        pool[npool++] = j->start - j->arrive;
    }
    struct result r = {
        .worker_s = s->worker_s,
        .cleared_s = s->cleared_at < 0 ? -1
                     : tr == ROW7      ? s->cleared_at - ROW7_SECS
                                       : s->cleared_at - OUTAGE_TO,
        .events = s->events,
        .peak = s->peak,
    };
    return r;
}

/* REPS replications with different seeds (the same seeds for every
 * policy): worker-seconds, events and recovery averaged, the p95 over all
 * their waits together. */
static struct result run(enum trace tr, enum policy pol, int hpa_target, int util_pm, int trace_out)
{
    struct result sum = {0};
    npool = 0;
    for (int k = 0; k < REPS; k++) {
        struct result r =
            simulate(tr, pol, hpa_target, util_pm, base_seed + (unsigned)k, k == 0 && trace_out);
        sum.worker_s += r.worker_s / REPS;
        sum.cleared_s += r.cleared_s / REPS;
        sum.events += r.events;
        if (r.peak > sum.peak)
            sum.peak = r.peak;
    }
    sum.events = (sum.events + REPS / 2) / REPS;
    sum.p95_wait = npool ? select_kth(pool, npool, (size_t)ceil(0.95 * (double)npool) - 1) : 0;
    sum.met = sum.p95_wait <= TARGET_MS / 1000.0;
    return sum;
}

static void print_row(enum trace tr, const char *trace, const char *policy, const struct result *r)
{
    printf("%-13s %-21s %8.1f s %4s %10.*f %7d %5d", trace, policy, r->p95_wait,
           r->met ? "yes" : "NO", tr == ROW7 ? 1 : 0, r->worker_s, r->events, r->peak);
    if (r->cleared_s >= 0)
        printf("   backlog gone %.2f s after %s", r->cleared_s,
               tr == ROW7 ? "the burst's start" : "recovery");
    printf("\n");
}

int main(int argc, char **argv)
{
    int quiet = 0, check_goal = 0, util_pct = 80;
    const char *csv_path = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "qgu:c:v:s:")) != -1) {
        switch (opt) {
        case 'v':
            verbose = atoi(optarg);
            break;
        case 's':
            base_seed = strtoull(optarg, NULL, 10);
            break;
        case 'q':
            quiet = 1;
            break;
        case 'g':
            check_goal = 1;
            break;
        case 'u':
            util_pct = atoi(optarg);
            break;
        case 'c':
            csv_path = optarg;
            break;
        default:
            fprintf(stderr, "usage: sim_scaler [-q] [-g] [-u UTIL_PCT] [-s SEED] [-v TRACE] "
                            "[-c CSV_OUT]\n");
            return 2;
        }
    }
    if (util_pct < 10 || util_pct > 100) {
        fprintf(stderr, "sim_scaler: -u %d: target utilisation must be 10..100\n", util_pct);
        return 2;
    }
    S = calloc(1, sizeof(*S));
    S->jobs = malloc(sizeof(*S->jobs) * MAX_JOBS);
    S->ready = malloc(sizeof(*S->ready) * MAX_JOBS);
    pool = malloc(sizeof(*pool) * MAX_JOBS * REPS);
    if (S->jobs == NULL || S->ready == NULL || pool == NULL)
        abort();
    FILE *csv = NULL;
    if (csv_path != NULL) {
        csv = fopen(csv_path, "w");
        if (csv == NULL) {
            perror(csv_path);
            return 1;
        }
    }

    if (!quiet)
        printf("corral scaling simulator: 1 h per trace, discrete events; service log-normal "
               "(median %.0f s, sigma %.1f);\n%d slots per worker, %d..%d workers, ready %.0f ms "
               "after fork; wait target %d s (p95 wait);\ncorral: tick %.0f s, "
               "target_utilization %d%%, scale_out_cooldown 5 s, scale_in_window 120 s;\n"
               "HPA-style: ceil(depth / target), %.0f s sync, %.0f s scale-down "
               "stabilisation, target tuned per trace;\nrow 7 burst (bench-peers): %.0f ms jobs "
               "paced %.0f/s, %.0f/s, %.0f/s for %.0f s each, %d..%d workers of 1 slot, "
               "corrald's tick phase spread over the replications\n\n",
               PROC_MEDIAN, PROC_SIGMA, SLOTS, MIN_W, MAX_W, START_S * 1000, TARGET_MS / 1000,
               TICK_S, util_pct, HPA_SYNC_S, HPA_STAB_S, ROW7_MS * 1000, ROW7_BASE, 10 * ROW7_BASE,
               ROW7_BASE, ROW7_SECS, ROW7_MIN, ROW7_MAX);
    printf("%-13s %-21s %10s %4s %10s %7s %5s\n", "trace", "policy", "p95 wait", "met", "worker-s",
           "events", "peak");
    int all_met = 1, all_cheaper = 1, row7_met = 0;
    double ratios[NTRACES], row7_time = 0, row7_slots = 0;
    for (int t = 0; t < NTRACES; t++) {
        struct result c = run((enum trace)t, CORRAL, 0, util_pct * 10, t == STEP && csv != NULL);
        print_row((enum trace)t, trace_names[t], "corral", &c);
        if (t == ROW7) {
            /* bench-peers row 7's references: fixed pools of 2 and 20 */
            struct result f2 = run(ROW7, FIXED, ROW7_MIN, 0, 0);
            struct result f20 = run(ROW7, FIXED, ROW7_MAX, 0, 0);
            print_row(ROW7, "", "fixed 2", &f2);
            print_row(ROW7, "", "fixed 20", &f20);
            row7_time = c.cleared_s / f20.cleared_s;
            row7_slots = c.worker_s / f20.worker_s;
            row7_met = row7_time <= 1.2 && row7_slots <= 0.35;
            continue;
        }
        /* HPA tuned: of the targets per worker that meet the wait target,
         * the one that spends the fewest worker-seconds; if none does, the
         * one with the lowest p95 wait. */
        struct result best = {0};
        int best_target = 0;
        for (int target = 1; target <= HPA_TARGETS; target++) {
            struct result h = run((enum trace)t, HPA, target, 0, 0);
            int better = best_target == 0 || (h.met && !best.met) ||
                         (h.met && best.met && h.worker_s < best.worker_s) ||
                         (!h.met && !best.met && h.p95_wait < best.p95_wait);
            if (better) {
                best = h;
                best_target = target;
            }
        }
        if (t == STEP && csv != NULL) {
            run((enum trace)t, HPA, best_target, 0, 1);
            fprintf(csv, "t,rate,corral_depth,corral_workers,hpa_depth,hpa_workers\n");
            for (int sec = 0; sec < NSEC; sec++)
                fprintf(csv, "%d,%.1f,%d,%d,%d,%d\n", sec, rate(STEP, sec), sampled[CORRAL][sec][0],
                        sampled[CORRAL][sec][1], sampled[HPA][sec][0], sampled[HPA][sec][1]);
        }
        char label[48];
        snprintf(label, sizeof(label), "HPA-style, %d/worker", best_target);
        print_row((enum trace)t, "", label, &best);
        ratios[t] = c.worker_s / best.worker_s;
        all_met &= c.met;
        all_cheaper &= c.worker_s < best.worker_s || !best.met;
    }
    printf("\ncorral / tuned HPA-style worker-seconds:");
    for (int t = 0; t < ROW7; t++)
        printf("  %s %.2f", trace_names[t], ratios[t]);
    printf("\ngoal: corral meets the wait target on every trace: %s; with fewer worker-seconds "
           "than the HPA-style policy tuned to meet it: %s\n",
           all_met ? "yes" : "NO", all_cheaper ? "yes" : "NO");
    printf("row 7 burst: backlog gone in %.2fx the fixed 20's time (goal <= 1.2), %.0f%% of its "
           "slot-seconds (goal <= 35%%): %s\n",
           row7_time, row7_slots * 100, row7_met ? "yes" : "NO");
    if (csv != NULL)
        fclose(csv);
    free(S->jobs);
    free(S->ready);
    free(pool);
    free(S);
    free(heap);
    for (int t = 0; t < NTRACES; t++)
        for (int k = 0; k < REPS; k++) {
            free(jobsets[t][k].arrive);
            free(jobsets[t][k].service);
        }
    return check_goal && !(all_met && all_cheaper && row7_met) ? 1 : 0;
}

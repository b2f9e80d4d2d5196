/* The token side of one HTTP call (see settle.h): the estimate made from
 * the payload, the answer's rate-limit headers (ratelimit.c), its usage
 * (usage.c; sse.c for a streamed answer's events) and the settlement. */
#include "settle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "corral/tokens.h"
#include "corral/util.h"
#include "ratelimit.h"
#include "sse.h"
#include "usage.h"

struct corral_tally {
    const struct corral_service_conf *sv;
    struct corral_estimate est;
    struct corral_ratelimit rl;
    int64_t answer_ms; /* when the headers came: the provider's resets count from then */
    int event_stream;  /* Content-Type: text/event-stream */
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct corral_tally *corral_tally_new(const struct corral_service_conf *sv, const char *payload,
                                      size_t len)
{
    struct corral_tally *t = corral_xcalloc(1, sizeof(*t));
    t->sv = sv;
    corral_tokens_estimate(payload, len, sv->bytes_per_token, 0, &t->est);
    corral_ratelimit_init(&t->rl);
    return t;
}

void corral_tally_free(struct corral_tally *t)
{
    free(t);
}

void corral_tally_header(struct corral_tally *t, const char *line, size_t len)
{
    static const char ct[] = "content-type:";
    t->answer_ms = wall_ms();
    corral_ratelimit_header(&t->rl, line, len, t->answer_ms);
    if (len > sizeof(ct) && strncasecmp(line, ct, sizeof(ct) - 1) == 0) {
        const char *v = line + sizeof(ct) - 1;
        size_t n = len - (sizeof(ct) - 1);
        while (n > 0 && (*v == ' ' || *v == '\t'))
            v++, n--;
        t->event_stream = n >= 17 && strncasecmp(v, "text/event-stream", 17) == 0;
    }
}

int corral_tally_token_429(const struct corral_tally *t, const char *body, size_t len,
                           int64_t default_ms, int64_t cap_ms, int64_t *delay_ms)
{
    if (corral_ratelimit_kind(&t->rl, body, len) != CORRAL_LIMIT_TOKENS)
        return 0;
    *delay_ms = corral_ratelimit_delay(&t->rl, CORRAL_LIMIT_TOKENS, default_ms, cap_ms);
    return 1;
}

/* Each event's usage into u (the last report wins: running totals). */
static int on_event(const struct corral_sse_event *ev, void *priv)
{
    struct corral_sse_piece piece;
    corral_sse_decode(ev, priv, &piece);
    corral_sse_piece_free(&piece);
    return 0;
}

/* The settlement from the usage u the answer gave (NULL: the call has no
 * usage), and the provider's view from the headers either way. */
static struct corral_settle *settle_with(const struct corral_tally *t,
                                         const struct corral_usage *u)
{
    struct corral_settle *s = corral_xcalloc(1, sizeof(*s));
    s->input_tokens = s->output_tokens = -1;
    s->remaining = s->reset_ms = -1;
    if (u != NULL) {
        struct corral_job_usage ju;
        corral_usage_settle(u, &t->est, t->sv, &ju);
        s->input_tokens = ju.input_tokens;
        s->output_tokens = ju.output_tokens;
        s->estimated = ju.estimated;
        s->cost_nano = ju.cost_nano;
        snprintf(s->model, sizeof(s->model), "%s", ju.model);
    }
    struct corral_rl_window w;
    if (corral_ratelimit_tokens_view(&t->rl, &w) && w.reset_ms > 0) {
        s->remaining = w.remaining;
        /* From the answer's time to now: what is left of the reset. */
        int64_t left = w.reset_ms - (wall_ms() - t->answer_ms);
        s->reset_ms = left > 0 ? left : -1;
        if (s->reset_ms < 0)
            s->remaining = -1;
    }
    return s;
}

struct corral_settle *corral_tally_settle(const struct corral_tally *t, int answered,
                                          const char *body, size_t len)
{
    if (!answered)
        return settle_with(t, NULL);
    struct corral_usage u;
    corral_usage_init(&u);
    if (t->event_stream) {
        struct corral_err err;
        struct corral_sse *p = corral_sse_new(0, 0, on_event, &u);
        /* A cut stream settles with what its events said. */
        if (corral_sse_feed(p, body, len, &err) == 0)
            corral_sse_finish(p, &err);
        corral_sse_free(p);
    } else {
        corral_usage_from_body(&u, body, len);
    }
    return settle_with(t, &u);
}

struct corral_settle *corral_tally_settle_usage(const struct corral_tally *t,
                                                const struct corral_usage *u)
{
    return settle_with(t, u);
}

void corral_settle_cmd(struct corral_cmd *cmd, const char *prefix, const char *queue,
                       const char *worker)
{
    corral_cmd_init(cmd, "corral_settle", prefix, queue);
    corral_cmd_addstr(cmd, worker);
}

void corral_settle_add(struct corral_cmd *cmd, const char *id, const char *run,
                       const struct corral_settle *s)
{
    corral_cmd_addstr(cmd, id);
    corral_cmd_addstr(cmd, run);
    corral_cmd_addint(cmd, s->input_tokens);
    corral_cmd_addint(cmd, s->input_tokens < 0 ? -1 : s->output_tokens);
    corral_cmd_addstr(cmd, s->model);
    corral_cmd_addstr(cmd, s->estimated ? "1" : "0");
    corral_cmd_addint(cmd, s->cost_nano);
    corral_cmd_addint(cmd, s->remaining);
    corral_cmd_addint(cmd, s->reset_ms);
}

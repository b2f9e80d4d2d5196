/* The token side of corralctl status and metrics (docs/tokens.md): per
 * service and per queue, tokens per minute and cost per hour, the token
 * window used against its limit and the spend against its budget; the
 * counters of tokens by direction and of cost. Read from the snapshot
 * (corral_stats per queue, corral_breaker per service). */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "corral/cost.h"
#include "corral/util.h"
#include "ctl.h"
#include "table.h"

static long long ival(json_t *o, const char *k)
{
    return (long long)json_number_value(json_object_get(o, k));
}

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* Whether status has anything to say of tokens: a budget or some usage. */
static int has_tokens(json_t *breakers, json_t *queues)
{
    size_t i;
    json_t *o;
    json_array_foreach(breakers, i, o)
    {
        if (ival(o, "tokens_limit") > 0 || ival(o, "budget_nano") > 0 ||
            ival(json_object_get(o, "usage"), "calls") > 0)
            return 1;
    }
    json_array_foreach(queues, i, o)
    {
        if (ival(json_object_get(o, "usage_total"), "calls") > 0)
            return 1;
    }
    return 0;
}

static const struct ctl_col token_cols[] = {
    {"TOKENS", 0}, {"TOKENS/MIN", 1}, {"COST/HOUR", 1}, {"WINDOW", 1},
    {"SPENT", 1},  {"TOTAL IN", 1},   {"TOTAL OUT", 1}, {"WAITING", 0},
};

static void money(long long nano, char *buf, size_t n)
{
    corral_money_format((int64_t)nano, buf, n);
}

void ctl_print_tokens(json_t *snapshot, FILE *out, int color)
{
    json_t *bs = json_object_get(snapshot, "breakers"), *qs = json_object_get(snapshot, "queues");
    if (!has_tokens(bs, qs))
        return;
    const char *bold = color ? "\033[1m" : "", *off = color ? "\033[0m" : "";
    struct ctl_table *t = ctl_table_new(token_cols, sizeof(token_cols) / sizeof(token_cols[0]));
    size_t i;
    json_t *o;
    json_array_foreach(bs, i, o)
    {
        char win[48] = "-", spent[96] = "-", cost[48], a[48], b[48];
        if (ival(o, "tokens_limit") > 0)
            snprintf(win, sizeof(win), "%lld/%lld", ival(o, "tokens_used"),
                     ival(o, "tokens_limit"));
        if (ival(o, "budget_nano") > 0) {
            money(ival(o, "spent_nano"), a, sizeof(a));
            money(ival(o, "budget_nano"), b, sizeof(b));
            snprintf(spent, sizeof(spent), "%s/%s", a, b);
        }
        json_t *u = json_object_get(o, "usage");
        money((long long)(json_number_value(json_object_get(o, "cost_per_hour")) * 1e9 + 0.5), cost,
              sizeof(cost));
        ctl_table_cell(t, NULL, "service %s", str(o, "service"));
        ctl_table_cell(t, NULL, "%lld", ival(o, "tokens_per_min"));
        ctl_table_cell(t, NULL, "%s", cost);
        ctl_table_cell(t, NULL, "%s", win);
        ctl_table_cell(t, NULL, "%s", spent);
        ctl_table_cell(t, NULL, "%lld", ival(u, "input_tokens"));
        ctl_table_cell(t, NULL, "%lld", ival(u, "output_tokens"));
        ctl_table_cell(t, NULL, "%s", str(o, "tokens_wait_reason"));
    }
    json_array_foreach(qs, i, o)
    {
        char cost[48];
        json_t *u = json_object_get(o, "usage_total");
        money((long long)(json_number_value(json_object_get(o, "cost_per_hour")) * 1e9 + 0.5), cost,
              sizeof(cost));
        ctl_table_cell(t, NULL, "queue %s", str(o, "name"));
        ctl_table_cell(t, NULL, "%lld", ival(o, "tokens_per_min"));
        ctl_table_cell(t, NULL, "%s", cost);
        ctl_table_cell(t, NULL, "%s", "");
        ctl_table_cell(t, NULL, "%s", "");
        ctl_table_cell(t, NULL, "%lld", ival(u, "input_tokens"));
        ctl_table_cell(t, NULL, "%lld", ival(u, "output_tokens"));
        ctl_table_cell(t, NULL, "%s", "");
    }
    fputc('\n', out);
    ctl_table_print(t, out, bold, off, NULL);
    ctl_table_free(t);
}

static void family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_label(FILE *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fprintf(out, "\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", out);
        else
            fputc(*v, out);
    }
}

/* One sample per object of items (label label = the object's key
 * label_key): the value of key (in the sub-object sub when not NULL), times
 * scale; with dir, a second label direction = dir. */
static void samples(FILE *out, json_t *items, const char *name, const char *label,
                    const char *label_key, const char *sub, const char *key, double scale,
                    const char *dir)
{
    size_t i;
    json_t *o;
    json_array_foreach(items, i, o)
    {
        json_t *from = sub ? json_object_get(o, sub) : o;
        json_t *v = json_object_get(from, key);
        if (!json_is_number(v))
            continue;
        fprintf(out, "%s{%s=\"", name, label);
        put_label(out, str(o, label_key));
        if (dir != NULL)
            fprintf(out, "\",direction=\"%s", dir);
        fprintf(out, "\"} %.17g\n", json_number_value(v) * scale);
    }
}

void ctl_tokens_metrics(json_t *snapshot, FILE *out)
{
    json_t *bs = json_object_get(snapshot, "breakers"), *qs = json_object_get(snapshot, "queues");
    family(out, "corral_queue_tokens_total", "counter",
           "Tokens the queue's calls used, by direction (input, output), from the answers' usage.");
    samples(out, qs, "corral_queue_tokens_total", "queue", "name", "usage_total", "input_tokens", 1,
            "input");
    samples(out, qs, "corral_queue_tokens_total", "queue", "name", "usage_total", "output_tokens",
            1, "output");
    family(out, "corral_queue_cost_total", "counter",
           "What the queue's calls cost, in currency units, at the service's prices.");
    samples(out, qs, "corral_queue_cost_total", "queue", "name", "usage_total", "cost_nano", 1e-9,
            NULL);
    family(out, "corral_service_tokens_total", "counter",
           "Tokens the service's calls used, by direction (input, output), fleet-wide.");
    samples(out, bs, "corral_service_tokens_total", "service", "service", "usage", "input_tokens",
            1, "input");
    samples(out, bs, "corral_service_tokens_total", "service", "service", "usage", "output_tokens",
            1, "output");
    family(out, "corral_service_cost_total", "counter",
           "What the service's calls cost, in currency units, fleet-wide.");
    samples(out, bs, "corral_service_cost_total", "service", "service", "usage", "cost_nano", 1e-9,
            NULL);
    family(out, "corral_service_tokens_used", "gauge",
           "Tokens granted in the service's current token window (tokens = N/period).");
    samples(out, bs, "corral_service_tokens_used", "service", "service", NULL, "tokens_used", 1,
            NULL);
    family(out, "corral_service_tokens_limit", "gauge",
           "The service's token budget per window (0 = none).");
    samples(out, bs, "corral_service_tokens_limit", "service", "service", NULL, "tokens_limit", 1,
            NULL);
    family(out, "corral_service_spent", "gauge",
           "What the service spent in the current budget period, in currency units.");
    samples(out, bs, "corral_service_spent", "service", "service", NULL, "spent_nano", 1e-9, NULL);
    family(out, "corral_service_budget", "gauge",
           "The service's spend budget per period, in currency units (absent: none).");
    samples(out, bs, "corral_service_budget", "service", "service", NULL, "budget_nano", 1e-9,
            NULL);
}

/* corralctl breaker, and the breakers part of status: each service's
 * breaker, throttle and limits as the function library keeps them
 * (corral_breaker). Every service the fleet declared appears, and every
 * service of the local config, closed ones included. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "corral/queue.h"
#include "corral/redis.h"
#include "corral/util.h"
#include "ctl.h"
#include "table.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* An undeclared service of the local config: no corrald or worker has
 * used it yet, so it has no state but its default, closed. */
static json_t *undeclared(const char *name, int64_t now)
{
    return json_pack("{s:s s:s s:f s:i s:i s:I s:I s:s s:b s:I}", "service", name, "state",
                     "closed", "failure_rate", 0.0, "calls", 0, "failures", 0, "open_until_ms",
                     (json_int_t)0, "throttled_until_ms", (json_int_t)0, "reason", "", "declared",
                     0, "time_ms", (json_int_t)now);
}

void ctl_breaker_names(struct ctl *ctl, const redisReply *declared, struct corral_strlist *out)
{
    out->items = NULL;
    out->n = 0;
    for (size_t i = 0;
         declared != NULL && declared->type == REDIS_REPLY_ARRAY && i < declared->elements; i++)
        if (declared->element[i]->type == REDIS_REPLY_STRING)
            corral_strlist_push(out, declared->element[i]->str);
    for (size_t i = 0; i < ctl->cfg->nservices; i++) {
        const char *name = ctl->cfg->services[i].name;
        int seen = 0;
        for (size_t k = 0; k < out->n; k++)
            seen |= strcmp(out->items[k], name) == 0;
        if (!seen)
            corral_strlist_push(out, name);
    }
    if (out->n > 1)
        qsort(out->items, out->n, sizeof(char *), cmp_str);
}

json_t *ctl_breaker_json(const char *name, const redisReply *r, int64_t now, struct corral_err *err)
{
    char *json = NULL;
    if (corral_reply_json(r, "breaker", &json, err) < 0)
        return err->word == CORRAL_WORD_NOSERVICE ? undeclared(name, now) : NULL;
    json_t *b = json_loads(json, 0, NULL);
    free(json);
    if (b == NULL) {
        corral_err_set(err, CORRAL_ERR_REDIS, "breaker %s: the reply is not JSON", name);
        return NULL;
    }
    json_object_set_new(b, "declared", json_true());
    return b;
}

json_t *ctl_read_breakers(struct ctl *ctl, int64_t now, struct corral_err *err)
{
    redisReply *declared = redisCommand(ctl->redis, "SMEMBERS %s:services", ctl->cfg->redis.prefix);
    if (corral_redis_check(ctl->redis, declared, "SMEMBERS", err) < 0) {
        freeReplyObject(declared);
        return NULL;
    }
    struct corral_strlist names;
    ctl_breaker_names(ctl, declared, &names);
    freeReplyObject(declared);
    for (size_t i = 0; i < names.n; i++) {
        struct corral_cmd cmd;
        corral_cmd_breaker(&cmd, ctl->cfg->redis.prefix, names.items[i]);
        redisAppendCommandArgv(ctl->redis, cmd.argc, (const char **)cmd.argv, cmd.argvlen);
        corral_cmd_free(&cmd);
    }
    json_t *out = json_array();
    for (size_t i = 0; i < names.n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(ctl->redis, (void **)&r) != REDIS_OK) {
            corral_redis_check(ctl->redis, NULL, "breaker", err);
            json_decref(out);
            out = NULL;
            break;
        }
        json_t *b = out ? ctl_breaker_json(names.items[i], r, now, err) : NULL;
        freeReplyObject(r);
        if (b == NULL) {
            json_decref(out);
            out = NULL; /* the remaining replies are still read */
            continue;
        }
        json_array_append_new(out, b);
    }
    corral_strlist_free(&names);
    return out;
}

static long long ival(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static const struct ctl_col breaker_cols[CTL_BREAKER_COLS] = {
    {"SERVICE", 0},  {"STATE", 0},     {"FAIL%", 1},    {"CALLS", 1},
    {"INFLIGHT", 1}, {"RATE USED", 1}, {"OPEN FOR", 1}, {"REASON", 0},
};

void ctl_print_breakers(json_t *breakers, FILE *out, int color, size_t *sticky)
{
    const char *bold = color ? "\033[1m" : "", *red = color ? "\033[31m" : "",
               *yellow = color ? "\033[33m" : "", *off = color ? "\033[0m" : "";
    struct ctl_table *t =
        ctl_table_new(breaker_cols, sizeof(breaker_cols) / sizeof(breaker_cols[0]));
    size_t i;
    json_t *b;
    json_array_foreach(breakers, i, b)
    {
        const char *state = json_string_value(json_object_get(b, "state"));
        long long now = ival(b, "time_ms");
        long long until = ival(b, "open_until_ms");
        long long thr = ival(b, "throttled_until_ms");
        const char *reason = json_string_value(json_object_get(b, "reason"));
        char left[32] = "-", rate[32] = "-";
        if (thr > now) {
            corral_format_duration(thr - now, left, sizeof(left));
            state = "throttled";
            reason = json_string_value(json_object_get(b, "throttle_reason"));
        } else if (until > now) {
            corral_format_duration(until - now, left, sizeof(left));
        }
        if (state == NULL)
            state = "?";
        if (ival(b, "rate_limit") > 0)
            snprintf(rate, sizeof(rate), "%lld/%lld", ival(b, "rate_used"), ival(b, "rate_limit"));
        const char *shade = strcmp(state, "closed") == 0 ? NULL
                            : strcmp(state, "open") == 0 ? red
                                                         : yellow;
        ctl_table_cell(t, NULL, "%s", json_string_value(json_object_get(b, "service")));
        ctl_table_cell(t, shade, "%s", state);
        ctl_table_cell(t, NULL, "%.1f",
                       json_number_value(json_object_get(b, "failure_rate")) * 100.0);
        ctl_table_cell(t, NULL, "%lld", ival(b, "calls"));
        ctl_table_cell(t, NULL, "%lld", ival(b, "inflight"));
        ctl_table_cell(t, NULL, "%s", rate);
        ctl_table_cell(t, NULL, "%s", left);
        ctl_table_cell(t, NULL, "%s", reason ? reason : "");
    }
    ctl_table_print(t, out, bold, off, sticky);
    ctl_table_free(t);
}

static int fail(const struct corral_err *err)
{
    fprintf(stderr, "corralctl: %s\n", err->msg);
    return 1;
}

int ctl_breaker(struct ctl *ctl, int argc, char **argv)
{
    const char *service = NULL;
    int reset = 0, as_json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            as_json = 1;
        else if (strcmp(argv[i], "reset") == 0 && service != NULL && !reset)
            reset = 1;
        else if (argv[i][0] != '-' && service == NULL)
            service = argv[i];
        else
            return ctl_usage_error("breaker: unexpected argument %s", argv[i]);
    }
    struct corral_err err;
    const char *prefix = ctl->cfg->redis.prefix;
    if (reset) { /* on a Cluster, on the service's node (ctl/cluster.c) */
        if ((ctl->cluster ? ctl_cluster_breaker_reset(ctl, service, &err)
                          : corral_service_reset(ctl->redis, prefix, service, &err)) < 0)
            return fail(&err);
        printf("breaker %s reset: closed, throttle ended, waiting workers woken\n", service);
        return 0;
    }
    json_t *list;
    if (ctl->cluster != NULL) {
        if ((list = ctl_cluster_breakers(ctl, service, corral_wall_ms(), &err)) == NULL)
            return fail(&err);
    } else if (service != NULL) {
        char *json = NULL;
        if (corral_service_breaker(ctl->redis, prefix, service, &json, &err) < 0)
            return fail(&err);
        json_t *b = json_loads(json, 0, NULL);
        free(json);
        list = json_array();
        json_array_append_new(list, b);
    } else {
        list = ctl_read_breakers(ctl, corral_wall_ms(), &err);
        if (list == NULL)
            return fail(&err);
    }
    if (as_json) {
        char *text = json_dumps(service ? json_array_get(list, 0) : list,
                                JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(text);
        free(text);
    } else {
        ctl_print_breakers(list, stdout, 0, NULL);
    }
    json_decref(list);
    return 0;
}

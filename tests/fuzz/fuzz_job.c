/* libFuzzer target for jobs on the C side, both ways:
 *  - input starting with a RESP type byte (* $ + - :) is a Redis reply, read
 *    with hiredis's reader and given to every reply parser: the reserved
 *    jobs with their payloads and gate, enqueue ids, ack/fail/renew
 *    statuses, JSON replies;
 *  - any other input is corralctl enqueue options, one "name=value" line
 *    each (priority, delay, timeout, max-attempts, service, unique), then a
 *    blank line and the payload bytes: the options go through corralctl's
 *    parsers into corral_cmd_enqueue, whose FCALL must carry the payload
 *    byte for byte and options JSON that reads back to what was given;
 *  - the same replies go to the Redis Cluster parsers (queue/cluster.c): a
 *    CLUSTER SLOTS map names only real nodes and serves some slot, a MOVED
 *    or ASK is a slot in range and a host:port. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "corral/cluster.h"
#include "corral/config.h"
#include "corral/queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* hiredis allocates a multi-bulk's element array up front: cap it, or
 * "*2000000000" is an out-of-memory report about hiredis, not corral. */
static redisReplyObjectFunctions *default_fn;
static redisReplyObjectFunctions capped_fn;

static void *capped_array(const redisReadTask *task, int elements)
{
    return elements > 4096 ? NULL : default_fn->createArray(task, elements);
}

static void parse_replies(const redisReply *r)
{
    struct corral_err err;
    struct corral_job *jobs = NULL;
    size_t n = 0;
    struct corral_gate gate;
    if (corral_reply_reserve(r, &jobs, &n, &gate, &err) == 0) {
        for (size_t i = 0; i < n; i++) {
            const struct corral_job *j = &jobs[i];
            if (j->id == NULL || j->run == NULL || j->priority == NULL || j->service == NULL ||
                j->payload == NULL || j->payload[j->payload_len] != '\0')
                abort();
        }
        if (gate.wait_ms < 0 || memchr(gate.why, '\0', sizeof(gate.why)) == NULL)
            abort();
    } else if (jobs != NULL || n != 0 || err.msg[0] == '\0') {
        abort();
    }
    corral_jobs_free(jobs, n);

    char *id = NULL;
    if (corral_reply_enqueue(r, &id, &err) == 0 && id == NULL)
        abort();
    free(id);

    size_t k = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    enum corral_run_status *st = calloc(k + 1, sizeof(*st));
    if (corral_reply_runs(r, st, k, &err) == 0)
        for (size_t i = 0; i < k; i++)
            if (strcmp(corral_run_status_name(st[i]), r->element[i]->str) != 0)
                abort(); /* a status is only ever the word it was read from */
    free(st);

    char *json = NULL;
    if (corral_reply_json(r, "stats", &json, &err) == 0 && json == NULL)
        abort();
    free(json);

    /* Redis Cluster: the slot map and the redirections (queue/cluster.c). */
    static struct corral_cluster_map map; /* 32 KiB: parsed only for arrays */
    if (r->type != REDIS_REPLY_ARRAY) {
        /* not a map: refused without looking further */
    } else if (corral_cluster_map_parse(r, "asked", &map, &err) == 0) {
        size_t served = 0;
        for (unsigned s = 0; s < CORRAL_CLUSTER_SLOTS; s++) {
            if (map.owner[s] > map.n_nodes)
                abort();
            const struct corral_cluster_node *n = corral_cluster_owner(&map, s);
            if (n != NULL && (n->host[0] == '\0' || n->port < 1 || n->port > 65535))
                abort();
            served += n != NULL;
        }
        if (served == 0)
            abort();
    } else if (err.msg[0] == '\0') {
        abort();
    }
    corral_cluster_map_free(&map);
    struct corral_cluster_redirect rd;
    int red = corral_cluster_redirect_parse(r, &rd, &err);
    if (red == 1 && (rd.slot >= CORRAL_CLUSTER_SLOTS || rd.port < 1 || rd.port > 65535 ||
                     memchr(rd.host, '\0', sizeof(rd.host)) == NULL || strchr(rd.host, ' ')))
        abort();
    if (red == -1 && err.msg[0] == '\0')
        abort();
    if (red == 1 && r->type != REDIS_REPLY_ERROR)
        abort();
}

static void fuzz_reply(const uint8_t *data, size_t size)
{
    redisReader *rd = redisReaderCreate();
    if (default_fn == NULL) {
        default_fn = rd->fn;
        capped_fn = *rd->fn;
        capped_fn.createArray = capped_array;
    }
    rd->fn = &capped_fn;
    if (redisReaderFeed(rd, (const char *)data, size) == REDIS_OK) {
        void *reply = NULL;
        while (redisReaderGetReply(rd, &reply) == REDIS_OK && reply != NULL) {
            parse_replies(reply);
            freeReplyObject(reply);
            reply = NULL;
        }
    }
    redisReaderFree(rd);
}

/* What corralctl enqueue does with its flags (ctl/main.c, cmd_enqueue). */
static int set_option(struct corral_enqueue_opts *o, const char *name, const char *v)
{
    struct corral_err err;
    int64_t n;
    if (strcmp(name, "priority") == 0)
        o->priority = v;
    else if (strcmp(name, "delay") == 0)
        return corral_parse_duration_ms(v, &o->delay_ms, &err);
    else if (strcmp(name, "timeout") == 0)
        return corral_parse_duration_ms(v, &o->timeout_ms, &err);
    else if (strcmp(name, "max-attempts") == 0) {
        if (corral_parse_int(v, 1, 1000, &n, &err) < 0)
            return -1;
        o->max_attempts = (int)n;
    } else if (strcmp(name, "service") == 0)
        o->service = v;
    else if (strcmp(name, "unique") == 0)
        o->unique_key = v;
    else
        return -1;
    return 0;
}

/* The options JSON must hold exactly what was given. */
static void check_opts(const struct corral_cmd *cmd, const struct corral_enqueue_opts *o)
{
    if (cmd->argc == 5) {
        /* no options argument: nothing may have been set */
        if (o->priority || o->service || o->unique_key || o->delay_ms > 0 || o->timeout_ms > 0 ||
            o->max_attempts != 0)
            abort();
        return;
    }
    if (cmd->argc != 6)
        abort();
    json_error_t jerr;
    json_t *j = json_loadb(cmd->argv[5], cmd->argvlen[5], 0, &jerr);
    if (!json_is_object(j))
        abort();
    if (o->service != NULL &&
        strcmp(json_string_value(json_object_get(j, "service")) ?: "\x01", o->service) != 0)
        abort();
    if (o->unique_key != NULL &&
        strcmp(json_string_value(json_object_get(j, "unique_key")) ?: "\x01", o->unique_key) != 0)
        abort();
    if (o->delay_ms > 0 && json_integer_value(json_object_get(j, "delay_ms")) != o->delay_ms)
        abort();
    if (o->timeout_ms > 0 && json_integer_value(json_object_get(j, "timeout_ms")) != o->timeout_ms)
        abort();
    if (o->priority != NULL && json_object_get(j, "priority") == NULL)
        abort();
    if (o->max_attempts != 0 &&
        json_integer_value(json_object_get(j, "max_attempts")) != o->max_attempts)
        abort();
    json_decref(j);
}

static int utf8(const char *s)
{
    json_t *j = s ? json_string(s) : NULL;
    json_decref(j);
    return s == NULL || j != NULL;
}

static void fuzz_enqueue(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    struct corral_enqueue_opts o = {0};
    char *p = text, *end = text + size;
    /* Option lines up to the first blank line; the rest is the payload. */
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            break;
        *nl = '\0';
        char *line = p;
        p = nl + 1;
        if (line[0] == '\0')
            break;
        char *eq = strchr(line, '=');
        if (eq == NULL || memchr(line, '\0', (size_t)(nl - line)) != NULL)
            goto out; /* corralctl's argv cannot hold a NUL either */
        *eq = '\0';
        if (set_option(&o, line, eq + 1) < 0)
            goto out; /* corralctl stops with a usage error */
    }
    /* Strings in the options JSON must be UTF-8: what is not is refused
     * (corral_queue_enqueue checks before building), never left out. */
    struct corral_err err;
    int valid = utf8(o.priority) && utf8(o.service) && utf8(o.unique_key);
    if ((corral_enqueue_opts_check("fuzz", &o, &err) == 0) != valid)
        abort();
    if (!valid)
        goto out;
    size_t plen = (size_t)(end - p);
    struct corral_cmd cmd;
    corral_cmd_enqueue(&cmd, "corral", "fuzz", p, plen, &o);
    if (cmd.argc < 5 || cmd.argvlen[4] != plen || memcmp(cmd.argv[4], p, plen) != 0)
        abort(); /* the payload goes to Redis byte for byte, NULs included */
    check_opts(&cmd, &o);
    corral_cmd_free(&cmd);
out:
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256 * 1024)
        return 0;
    if (size > 0 && strchr("*$+-:", data[0]) != NULL)
        fuzz_reply(data, size);
    else
        fuzz_enqueue(data, size);
    return 0;
}

/* corralctl's control of a job in flight: cancel, and wait --follow, which
 * prints a streamed answer as it comes (docs/protocol.md, "Cancel" and
 * "Streamed answers"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "corral/queue.h"
#include "corral/util.h"
#include "ctl.h"
#include "tenants.h"

/* How long one XREAD blocks before the job's state is looked at again (a
 * job whose answer was not streamed has no stream to wake us). */
#define FOLLOW_POLL_MS 250
/* After an end entry, until the job's final state shows (or a retry streams). */
#define FOLLOW_END_POLL_MS 20

int ctl_cancel(struct ctl *ctl, int argc, char **argv)
{
    if (argc != 2 && !(argc == 3 && strcmp(argv[1], "--tenant") == 0))
        return ctl_usage_error("%s", "cancel: QUEUE and ID, or QUEUE --tenant T, are required");
    struct corral_err err;
    if (argc == 3) { /* every job of a tenant, on the queue's node on a Cluster (cluster.c) */
        if (ctl_route(ctl, argv[0], &err) < 0) {
            fprintf(stderr, "corralctl: %s\n", err.msg);
            return 1;
        }
        return ctl_cancel_tenant(ctl, argv[0], argv[2]);
    }
    int rc =
        ctl_route(ctl, argv[0], &err) < 0 ? -1 : 0; /* a Cluster: the queue's node (cluster.c) */
    if (rc == 0)
        rc = corral_queue_cancel(ctl->redis, ctl->cfg->redis.prefix, argv[0], argv[1], &err);
    for (int k = 0; rc < 0 && k < 20 && ctl_rerouted(ctl, &err); k++)
        rc = corral_queue_cancel(ctl->redis, ctl->cfg->redis.prefix, argv[0], argv[1], &err);
    if (rc < 0) {
        fprintf(stderr, "corralctl: %s\n", err.msg);
        return 1;
    }
    printf("cancelled\n");
    return 0;
}

/* The job's record (NULL with err when there is none or Redis failed). */
static json_t *job_record(struct ctl *ctl, const char *queue, const char *id,
                          struct corral_err *err)
{
    char *text = NULL;
    if (corral_queue_job(ctl->redis, ctl->cfg->redis.prefix, queue, id, &text, err) < 0)
        return NULL;
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    if (j == NULL)
        corral_err_set(err, CORRAL_ERR_REDIS, "job %s: its record is not valid JSON", id);
    return j;
}

static int is_final(const char *state)
{
    return state != NULL && (strcmp(state, "done") == 0 || strcmp(state, "dead") == 0 ||
                             strcmp(state, "cancelled") == 0);
}

/* Prints the text entries of one XREAD reply, moving *last on; sets *ended
 * when an entry marks the stream's end. */
static void print_entries(const redisReply *r, char *last, size_t last_cap, int *printed,
                          int *ended)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1)
        return;
    const redisReply *s = r->element[0];
    if (s->type != REDIS_REPLY_ARRAY || s->elements != 2)
        return;
    const redisReply *entries = s->element[1];
    for (size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
            continue;
        snprintf(last, last_cap, "%s", e->element[0]->str);
        const redisReply *f = e->element[1];
        for (size_t k = 0; f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2) {
            if (strcmp(f->element[k]->str, "text") == 0) {
                fwrite(f->element[k + 1]->str, 1, f->element[k + 1]->len, stdout);
                *printed = 1;
            } else if (strcmp(f->element[k]->str, "end") == 0) {
                *ended = 1;
            }
        }
    }
    fflush(stdout);
}

int ctl_follow(struct ctl *ctl, const char *queue, const char *id, int64_t timeout_ms)
{
    int64_t deadline = timeout_ms > 0 ? corral_now_ms() + timeout_ms : 0;
    char *K = corral_queue_key(ctl->cfg->redis.prefix, queue);
    char *sk = corral_xasprintf("%s:stream:%s", K, id);
    free(K);
    char last[64] = "0";
    int printed = 0, ended = 0, rc = 1;
    struct corral_err err;
    json_t *j = NULL;
    for (;;) {
        json_decref(j);
        j = job_record(ctl, queue, id, &err);
        if (j == NULL) {
            fprintf(stderr, "corralctl: %s\n", err.msg);
            break;
        }
        const char *state = json_string_value(json_object_get(j, "state"));
        int final = is_final(state);
        int64_t left = deadline ? deadline - corral_now_ms() : FOLLOW_POLL_MS;
        if (!final && left <= 0) {
            fprintf(stderr, "corralctl: queue \"%s\": job %s did not end within %lld ms\n", queue,
                    id, (long long)timeout_ms);
            rc = 124;
            break;
        }
        /* Once the job has ended, what is left of its stream is read at
         * once; before, the read waits for the next piece. After an end
         * entry the job's final state comes soon (or a retry streams
         * again): the wait is short then, but still a wait, not a spin. */
        int64_t wait = ended ? FOLLOW_END_POLL_MS : FOLLOW_POLL_MS;
        redisReply *r = final
                            ? redisCommand(ctl->redis, "XREAD COUNT 1000 STREAMS %s %s", sk, last)
                            : redisCommand(ctl->redis, "XREAD COUNT 1000 BLOCK %lld STREAMS %s %s",
                                           (long long)(left < wait ? left : wait), sk, last);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "corralctl: reading the stream of job %s: %s\n", id,
                    r ? r->str : ctl->redis->errstr);
            freeReplyObject(r);
            break;
        }
        print_entries(r, last, sizeof(last), &printed, &ended);
        int more = r->type == REDIS_REPLY_ARRAY;
        freeReplyObject(r);
        if (!final || more)
            continue;
        const char *result = json_string_value(json_object_get(j, "result"));
        const char *error = json_string_value(json_object_get(j, "error"));
        if (strcmp(state, "done") == 0) {
            /* the text was the answer; an answer that was not streamed is
             * printed whole, as wait prints it */
            printf("%s\n", printed ? "" : result ? result : "");
            rc = 0;
        } else {
            if (printed)
                printf("\n");
            fprintf(stderr, "corralctl: job %s %s%s%s\n", id, state, error ? ": " : "",
                    error ? error : "");
        }
        break;
    }
    json_decref(j);
    free(sk);
    return rc;
}

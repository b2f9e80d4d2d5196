/* corralctl: the operator's and scripts' tool. Reads the same config as
 * corrald for the Redis address, talks only to Redis. Exit codes: 0 success,
 * 1 failure (message on stderr), 2 bad usage, 3 an enqueue not confirmed
 * (min_replicas), 4 a write refused by a full Redis (OOM); waits that run
 * out exit 124. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "corral/backoff.h"
#include "corral/bootstrap.h"
#include "corral/cluster_client.h"
#include "corral/config.h"
#include "corral/jsontext.h"
#include "corral/log.h"
#include "corral/queue.h"
#include "corral/redis.h"
#include "corral/util.h"
#include "corral/tls.h"
#include "ctl.h"
#include "tenants.h"
#include "when.h"

#define EXIT_USAGE   CTL_EXIT_USAGE
#define EXIT_TIMEOUT 124
/* A wait whose connection is lost connects again after a jittered wait
 * doubling from 250 ms to 5 s, until the job ends or the wait's time is up. */
#define RETRY_MIN_MS 250
#define RETRY_MAX_MS 5000

static void usage(FILE *out)
{
    fprintf(out,
            "usage: corralctl [-c FILE] [--redis URL] COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
            "  enqueue QUEUE [PAYLOAD|-] [--priority P] [--delay DUR] [--max-attempts N]\n"
            "          [--timeout DUR] [--service NAME] [--unique KEY] [--tenant T]\n"
            "          [--deadline DUR] [--wait [DUR]]\n"
            "  enqueue QUEUE --many [OPTIONS]   (one JSON payload per line on stdin)\n"
            "  job QUEUE ID [--json]\n"
            "  wait QUEUE ID [--timeout DUR] [--follow]\n"
            "  status [--json] [--watch [SECONDS]] | status --tenants QUEUE [--json]\n"
            "  dead QUEUE [list | retry ID... | retry --all | purge] [--tenant T]\n"
            "  tenant QUEUE NAME --weight W\n"
            "  pause QUEUE | resume QUEUE\n"
            "  cancel QUEUE ID | cancel QUEUE --tenant T\n"
            "  breaker [SERVICE] [reset] [--json]\n"
            "  metrics\n"
            "\n"
            "The config is FILE, else $CORRAL_CONFIG, else %s when it exists.\n"
            "--redis overrides its [redis] url (put passwords in password_file, never in "
            "URLs).\n",
            CORRAL_DEFAULT_CONFIG);
}

static int fail_err(const struct corral_err *err)
{
    fprintf(stderr, "corralctl: %s\n", err->msg);
    if (err->word == CORRAL_WORD_OOM)
        return CTL_EXIT_FULL;
    return err->code == CORRAL_ERR_TIMEOUT ? EXIT_TIMEOUT : 1;
}

/* Reads all of stdin (bounded) for a "-" payload. Caller frees. */
static char *read_stdin(size_t limit, size_t *len_out)
{
    size_t cap = 4096, len = 0;
    char *buf = corral_xmalloc(cap);
    for (;;) {
        if (len == cap) {
            if (cap >= limit) {
                free(buf);
                return NULL;
            }
            cap *= 2;
            buf = corral_xrealloc(buf, cap);
        }
        ssize_t n = read(STDIN_FILENO, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    *len_out = len;
    return buf;
}

/* Makes sure the queue is declared: when an operation reports an unknown
 * queue and this config defines it, declare it (and its service) from the
 * config. Returns 1 when it declared, 0 when it could not help. */
static int declare_from_config(struct ctl *ctl, const char *queue, struct corral_err *err)
{
    if (corral_config_queue(ctl->cfg, queue) == NULL)
        return 0;
    struct corral_err derr;
    int rc = ctl->cluster != NULL /* a Cluster: each declaration on its key's node */
                 ? corral_cluster_bootstrap(ctl->cluster, ctl->cfg, CORRAL_BOOTSTRAP_QUEUES, &queue,
                                            1, &derr)
                 : corral_bootstrap_run(ctl->redis, ctl->cfg, CORRAL_BOOTSTRAP_QUEUES, &queue, 1,
                                        NULL, &derr);
    if (rc < 0) {
        *err = derr;
        return 0;
    }
    return 1;
}

static int print_outcome(struct ctl *ctl, const char *queue, const char *id, const char *state)
{
    char *json = NULL;
    struct corral_err err;
    if (corral_queue_job(ctl->redis, ctl->cfg->redis.prefix, queue, id, &json, &err) < 0)
        return fail_err(&err);
    json_t *j = json_loads(json, 0, NULL);
    free(json);
    if (j == NULL) {
        /* Never an empty "result" and exit 0: the outcome would be lost. */
        fprintf(stderr, "corralctl: job %s %s, but its record is not valid JSON (invalid UTF-8?)\n",
                id, state);
        return 1;
    }
    const char *result = json_string_value(json_object_get(j, "result"));
    const char *error = json_string_value(json_object_get(j, "error"));
    int rc;
    if (strcmp(state, "done") == 0) {
        printf("%s\n", result ? result : "");
        rc = 0;
    } else {
        fprintf(stderr, "corralctl: job %s %s%s%s\n", id, state, error ? ": " : "",
                error ? error : "");
        rc = 1;
    }
    json_decref(j);
    return rc;
}

/* Waits for the job to end and prints its outcome. A lost connection (Redis
 * restarted, a failover) is not the job's end: connect again, with
 * back-off, and wait on until timeout_ms (0: no limit) is up. */
static int wait_and_print(struct ctl *ctl, const char *queue, const char *id, int64_t timeout_ms)
{
    int64_t deadline = timeout_ms > 0 ? corral_now_ms() + timeout_ms : 0;
    struct corral_backoff retry;
    corral_backoff_init(&retry, RETRY_MIN_MS, RETRY_MAX_MS);
    struct corral_log_repeat rep;
    corral_log_repeat_init(&rep, 60000);
    struct corral_err err;
    int reroutes = 0;
    for (;;) {
        int64_t left = deadline ? deadline - corral_now_ms() : 0;
        if (deadline && left <= 0) {
            struct corral_err late;
            corral_err_set(&late, CORRAL_ERR_TIMEOUT,
                           "queue \"%s\": job %s did not end within %lld ms (redis: %s)", queue, id,
                           (long long)timeout_ms, err.msg);
            return fail_err(&late);
        }
        char *state = NULL;
        if (ctl->redis != NULL && corral_queue_wait(ctl->redis, ctl->cfg->redis.prefix, queue, id,
                                                    left, &state, &err) == 0) {
            corral_log_repeat_end(&rep);
            int rc = print_outcome(ctl, queue, id, state);
            free(state);
            return rc;
        }
        if (ctl->redis != NULL && !ctl_lost(ctl) && reroutes++ < 20 && ctl_rerouted(ctl, &err))
            continue; /* a Cluster moved the queue's slot (cluster.c) */
        if (!ctl_lost(ctl))
            return fail_err(&err); /* an answer: no such job, ran out, refused */
        int64_t wait = corral_backoff_next(&retry);
        if (deadline && wait > deadline - corral_now_ms())
            wait = deadline - corral_now_ms();
        corral_logr(&rep, CORRAL_LOG_WARN, "redis connection lost; waiting on",
                    "queue=%s job=%s error=\"%s\" retry_ms=%lld", queue, id, err.msg,
                    (long long)wait);
        if (wait > 0)
            usleep((useconds_t)(wait * 1000));
        struct corral_err cerr;
        if (ctl_reconnect(ctl, &cerr) < 0)
            err = cerr;
        else
            corral_backoff_reset(&retry);
    }
}

static int parse_dur_arg(const char *flag, const char *v, int64_t *out)
{
    struct corral_err err;
    if (v == NULL)
        return ctl_usage_error("%s needs a duration (e.g. 500ms, 5s, 2m)", flag);
    if (corral_parse_duration_ms(v, out, &err) < 0) {
        fprintf(stderr, "corralctl: %s: %s\n", flag, err.msg);
        return EXIT_USAGE;
    }
    return 0;
}

/* Sends one batch of enqueue --many (declaring the queue from the config
 * when Redis does not know it) and prints its ids, one per line, in order.
 * first_line: the stdin line of p[0], for the refusal. With [redis]
 * min_replicas the batch is confirmed with one WAIT (docs/protocol.md,
 * "Durable enqueue"): its ids are printed either way, and a batch the
 * replicas did not confirm in time returns CTL_EXIT_UNCONFIRMED after
 * naming its lines; the caller goes on with the next batch. */
static int enqueue_batch(struct ctl *ctl, const char *queue, const struct corral_payload *p,
                         size_t n, const struct corral_enqueue_opts *o, unsigned long first_line)
{
    char *ids[CORRAL_ENQUEUE_MANY_MAX];
    struct corral_err err;
    const char *prefix = ctl->cfg->redis.prefix;
    int rc = ctl_route(ctl, queue, &err) < 0 ? -1 : 0; /* a Cluster: the queue's node (cluster.c) */
    if (rc == 0)
        rc = corral_queue_enqueue_many(ctl->redis, prefix, queue, p, n, o, ids, &err);
    for (int k = 0; rc < 0 && k < 20 && ctl_rerouted(ctl, &err); k++)
        rc = corral_queue_enqueue_many(ctl->redis, prefix, queue, p, n, o, ids, &err);
    if (rc < 0 && err.word == CORRAL_WORD_NOQUEUE && declare_from_config(ctl, queue, &err))
        rc = corral_queue_enqueue_many(ctl->redis, prefix, queue, p, n, o, ids, &err);
    if (rc < 0) {
        /* The library names a payload by its place in the call ("payload 3
         * of 1000"); the batch's lines say which line that is. */
        corral_err_prefix(&err, "stdin lines %lu-%lu not enqueued (payload k is line %lu+k)",
                          first_line, first_line + n - 1, first_line - 1);
        return fail_err(&err);
    }
    for (size_t i = 0; i < n; i++)
        printf("%s\n", ids[i]);
    fflush(stdout);
    int confirmed = corral_queue_confirm(ctl->redis, ctl->cfg->redis.min_replicas,
                                         CORRAL_CONFIRM_TIMEOUT_MS, &err);
    if (confirmed != 0)
        fprintf(stderr, "corralctl: stdin lines %lu-%lu (jobs %s to %s): %s\n", first_line,
                (unsigned long)(first_line + n - 1), ids[0], ids[n - 1], err.msg);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    if (confirmed != 0)
        return confirmed > 0 ? CTL_EXIT_UNCONFIRMED : 1;
    return 0;
}

/* enqueue --many: one JSON payload per line of stdin, sent in batches of
 * CORRAL_ENQUEUE_MANY_MAX with corral_enqueue_many (docs/protocol.md), each
 * all or nothing. A line that is empty or not JSON text stops the run
 * before its batch is sent; the batches before it stay enqueued (their ids
 * are printed). Exit 3 when a batch was not confirmed (min_replicas). */
static int enqueue_many_stdin(struct ctl *ctl, const char *queue,
                              const struct corral_enqueue_opts *o)
{
    struct corral_payload batch[CORRAL_ENQUEUE_MANY_MAX];
    size_t n = 0;
    unsigned long line_no = 0, first = 1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0, unconfirmed = 0;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        line_no++;
        if (len > 0 && line[len - 1] == '\n')
            len--;
        char why[96];
        if (len == 0) {
            fprintf(stderr,
                    "corralctl: stdin line %lu is empty: give one JSON payload per line; "
                    "lines %lu-%lu not enqueued\n",
                    line_no, first, line_no);
            rc = 1;
            break;
        }
        if (corral_json_text_check(line, (size_t)len, why, sizeof(why)) < 0) {
            fprintf(stderr,
                    "corralctl: stdin line %lu: queue \"%s\": payload is not valid JSON (%s); "
                    "lines %lu-%lu not enqueued\n",
                    line_no, queue, why, first, line_no);
            rc = 1;
            break;
        }
        batch[n].data = corral_xstrndup(line, (size_t)len);
        batch[n].len = (size_t)len;
        if (++n == CORRAL_ENQUEUE_MANY_MAX) {
            rc = enqueue_batch(ctl, queue, batch, n, o, first);
            for (size_t i = 0; i < n; i++)
                free((char *)batch[i].data);
            n = 0;
            first = line_no + 1;
            /* An unconfirmed batch is enqueued: the run goes on, and
             * exits 3 at the end unless something worse happens. */
            if (rc == CTL_EXIT_UNCONFIRMED) {
                unconfirmed = 1;
                rc = 0;
            }
            if (rc != 0)
                break;
        }
    }
    free(line);
    if (rc == 0 && ferror(stdin)) {
        fprintf(stderr, "corralctl: reading stdin: %s\n", strerror(errno));
        rc = 1;
    }
    if (rc == 0 && n > 0)
        rc = enqueue_batch(ctl, queue, batch, n, o, first);
    for (size_t i = 0; i < n; i++)
        free((char *)batch[i].data);
    return rc == 0 && unconfirmed ? CTL_EXIT_UNCONFIRMED : rc;
}

static int cmd_enqueue(struct ctl *ctl, int argc, char **argv)
{
    const char *queue = NULL, *payload_arg = NULL;
    struct corral_enqueue_opts o = {0};
    int wait = 0, many = 0;
    int64_t wait_ms = 0;
    for (int i = 0; i < argc && argv[i] != NULL; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc;
        if (strcmp(a, "--priority") == 0) {
            if (v == NULL)
                return ctl_usage_error("%s needs a value", a);
            o.priority = v;
            i++;
        } else if (strcmp(a, "--delay") == 0) {
            if ((rc = parse_dur_arg(a, v, &o.delay_ms)) != 0)
                return rc;
            i++;
        } else if (strcmp(a, "--deadline") == 0) {
            if ((rc = parse_dur_arg(a, v, &o.deadline_ms)) != 0)
                return rc;
            if (o.deadline_ms == 0)
                return ctl_usage_error("--deadline must be at least 1ms, got %s", v);
            i++;
        } else if (strcmp(a, "--timeout") == 0) {
            if ((rc = parse_dur_arg(a, v, &o.timeout_ms)) != 0)
                return rc;
            if (o.timeout_ms == 0) /* 0 would mean "the queue's timeout" below */
                return ctl_usage_error("--timeout must be at least 1ms, got %s", v);
            i++;
        } else if (strcmp(a, "--max-attempts") == 0) {
            int64_t n;
            struct corral_err err;
            if (v == NULL || corral_parse_int(v, 1, 1000, &n, &err) < 0)
                return ctl_usage_error("--max-attempts needs a number from 1 to 1000, got %s",
                                       v ? v : "nothing");
            o.max_attempts = (int)n;
            i++;
        } else if (strcmp(a, "--unique") == 0 || strcmp(a, "--service") == 0 ||
                   strcmp(a, "--tenant") == 0) {
            if (v == NULL)
                return ctl_usage_error("%s needs a value", a);
            if (a[2] == 'u')
                o.unique_key = v;
            else if (a[2] == 't')
                o.tenant = v; /* checked by Redis: BADTENANT */
            else
                o.service = v;
            i++;
        } else if (strcmp(a, "--many") == 0) {
            many = 1;
        } else if (strcmp(a, "--wait") == 0) {
            wait = 1;
            struct corral_err err;
            if (v != NULL && v[0] != '-' && corral_parse_duration_ms(v, &wait_ms, &err) == 0)
                i++;
        } else if (a[0] == '-' && a[1] != '\0') {
            return ctl_usage_error("enqueue: unknown option %s", a);
        } else if (queue == NULL) {
            queue = a;
        } else if (payload_arg == NULL) {
            payload_arg = a;
        } else {
            return ctl_usage_error("enqueue: unexpected argument %s", a);
        }
    }
    if (queue == NULL)
        return ctl_usage_error("%s", "enqueue: QUEUE is required");
    if (many) {
        if (wait)
            return ctl_usage_error("%s", "enqueue: --many and --wait do not go together");
        if (payload_arg != NULL && strcmp(payload_arg, "-") != 0)
            return ctl_usage_error("%s", "enqueue --many reads its payloads from stdin, one per "
                                         "line: give no PAYLOAD");
        return enqueue_many_stdin(ctl, queue, &o);
    }
    char *buf = NULL;
    const char *payload;
    size_t len;
    if (payload_arg == NULL || strcmp(payload_arg, "-") == 0) {
        if (payload_arg == NULL && isatty(STDIN_FILENO))
            return ctl_usage_error("%s", "enqueue: give a PAYLOAD, or - to read it from stdin");
        buf = read_stdin(512u << 20, &len);
        if (buf == NULL) {
            fprintf(stderr, "corralctl: payload on stdin is larger than 512M\n");
            return 1;
        }
        payload = buf;
    } else {
        payload = payload_arg;
        len = strlen(payload_arg);
    }
    char *id = NULL;
    struct corral_err err;
    int rc = ctl_route(ctl, queue, &err) < 0 ? -1 : 0; /* a Cluster: the queue's node (cluster.c) */
    if (rc == 0)
        rc = corral_queue_enqueue(ctl->redis, ctl->cfg->redis.prefix, queue, payload, len, &o, &id,
                                  &err);
    for (int k = 0; rc < 0 && k < 20 && ctl_rerouted(ctl, &err); k++)
        rc = corral_queue_enqueue(ctl->redis, ctl->cfg->redis.prefix, queue, payload, len, &o, &id,
                                  &err);
    if (rc < 0 && err.word == CORRAL_WORD_NOQUEUE && declare_from_config(ctl, queue, &err))
        rc = corral_queue_enqueue(ctl->redis, ctl->cfg->redis.prefix, queue, payload, len, &o, &id,
                                  &err);
    free(buf);
    if (rc < 0)
        return fail_err(&err);
    /* [redis] min_replicas: the id is printed either way (the job exists on
     * the master); exit 3 says it was not confirmed (docs/protocol.md). */
    int confirmed = corral_queue_confirm(ctl->redis, ctl->cfg->redis.min_replicas,
                                         CORRAL_CONFIRM_TIMEOUT_MS, &err);
    if (confirmed != 0) {
        printf("%s\n", id);
        fprintf(stderr, "corralctl: job %s: %s\n", id, err.msg);
        free(id);
        return confirmed > 0 ? CTL_EXIT_UNCONFIRMED : 1;
    }
    if (!wait) {
        printf("%s\n", id);
        free(id);
        return 0;
    }
    fprintf(stderr, "%s\n", id);
    rc = wait_and_print(ctl, queue, id, wait_ms);
    free(id);
    return rc;
}

/* Every key of a job docs/protocol.md promises, present even when unset (null). */
static const char *const job_keys[] = {"id",          "queue",        "state",      "priority",
                                       "attempts",    "max_attempts", "created_ms", "started_ms",
                                       "finished_ms", "worker",       NULL};

static int cmd_job(struct ctl *ctl, int argc, char **argv)
{
    const char *queue = NULL, *id = NULL;
    int as_json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            as_json = 1;
        else if (argv[i][0] == '-')
            return ctl_usage_error("job: unknown option %s", argv[i]);
        else if (queue == NULL)
            queue = argv[i];
        else if (id == NULL)
            id = argv[i];
        else
            return ctl_usage_error("job: unexpected argument %s", argv[i]);
    }
    if (id == NULL)
        return ctl_usage_error("%s", "job: QUEUE and ID are required");
    char *json = NULL;
    struct corral_err err;
    int rc = ctl_route(ctl, queue, &err) < 0 ? -1 : 0; /* a Cluster: the queue's node (cluster.c) */
    if (rc == 0)
        rc = corral_queue_job(ctl->redis, ctl->cfg->redis.prefix, queue, id, &json, &err);
    for (int k = 0; rc < 0 && k < 20 && ctl_rerouted(ctl, &err); k++)
        rc = corral_queue_job(ctl->redis, ctl->cfg->redis.prefix, queue, id, &json, &err);
    if (rc < 0)
        return fail_err(&err);
    json_t *j = json_loads(json, 0, NULL);
    free(json);
    if (j == NULL) {
        fprintf(stderr, "corralctl: job %s: unreadable record\n", id);
        return 1;
    }
    for (const char *const *k = job_keys; *k; k++)
        if (json_object_get(j, *k) == NULL)
            json_object_set_new(j, *k, json_null());
    if (json_object_get(j, "result") == NULL && json_object_get(j, "error") == NULL)
        json_object_set_new(j, "result", json_null());
    if (as_json) {
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", s);
        free(s);
    } else {
        const char *order[] = {
            "id",         "queue",     "state",      "priority",   "attempts",    "max_attempts",
            "service",    "worker",    "created_ms", "started_ms", "finished_ms", "run_at_ms",
            "timeout_ms", "deferrals", "error",      "result",     "payload",     NULL};
        int64_t now = ctl_redis_now_ms(ctl->redis);
        for (const char **k = order; *k; k++) {
            json_t *v = json_object_get(j, *k);
            if (v == NULL || json_is_null(v))
                continue;
            char when[96];
            if (json_is_string(v)) {
                printf("%-13s %s\n", *k, json_string_value(v));
            } else if (strcmp(*k, "timeout_ms") != 0 && strstr(*k, "_ms") != NULL &&
                       json_integer_value(v) > 0) { /* a time (docs/design.md) */
                ctl_when(json_integer_value(v), now, when, sizeof(when));
                printf("%-13s %lld  %s\n", *k, (long long)json_integer_value(v), when);
            } else {
                printf("%-13s %lld\n", *k, (long long)json_integer_value(v));
            }
        }
    }
    json_decref(j);
    return 0;
}

static int cmd_wait(struct ctl *ctl, int argc, char **argv)
{
    const char *queue = NULL, *id = NULL;
    int64_t timeout_ms = 0;
    int follow = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--follow") == 0) {
            follow = 1;
        } else if (strcmp(argv[i], "--timeout") == 0) {
            int rc = parse_dur_arg(argv[i], i + 1 < argc ? argv[i + 1] : NULL, &timeout_ms);
            if (rc != 0)
                return rc;
            i++;
        } else if (argv[i][0] == '-') {
            return ctl_usage_error("wait: unknown option %s", argv[i]);
        } else if (queue == NULL) {
            queue = argv[i];
        } else if (id == NULL) {
            id = argv[i];
        } else {
            return ctl_usage_error("wait: unexpected argument %s", argv[i]);
        }
    }
    if (id == NULL)
        return ctl_usage_error("%s", "wait: QUEUE and ID are required");
    struct corral_err err;
    if (ctl_route(ctl, queue, &err) < 0) /* a Cluster: the queue's node (cluster.c) */
        return fail_err(&err);
    if (follow)
        return ctl_follow(ctl, queue, id, timeout_ms);
    return wait_and_print(ctl, queue, id, timeout_ms);
}

static int cmd_pause(struct ctl *ctl, int argc, char **argv)
{
    return ctl_pause(ctl, argc, argv, 1);
}

static int cmd_resume(struct ctl *ctl, int argc, char **argv)
{
    return ctl_pause(ctl, argc, argv, 0);
}

static struct corral_config *load_config(const char *path, int explicit_path)
{
    if (!explicit_path && access(path, F_OK) != 0)
        return corral_config_defaults();
    struct corral_config_errors errs = {0};
    struct corral_config *cfg = corral_config_load(path, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "corralctl: %s\n", errs.lines[i]);
    corral_config_errors_free(&errs);
    return cfg;
}

/* The commands, one row each (man/corralctl.1). */
static const struct {
    const char *name;
    int (*fn)(struct ctl *, int, char **);
} commands[] = {
    {"enqueue", cmd_enqueue}, {"job", cmd_job},       {"wait", cmd_wait},
    {"status", ctl_status},   {"dead", ctl_dead},     {"pause", cmd_pause},
    {"resume", cmd_resume},   {"cancel", ctl_cancel}, {"breaker", ctl_breaker},
    {"metrics", ctl_metrics}, {"tenant", ctl_tenant},
};

int main(int argc, char **argv)
{
    corral_log_init("corralctl");
    /* A Redis that goes away must be an error to handle (the waits ride it
     * out), not a signal that kills; stdout closed early is checked where
     * output goes on (status --watch). */
    signal(SIGPIPE, SIG_IGN);
    const char *path = NULL, *url = NULL;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("corralctl %s\n", CORRAL_VERSION);
            return 0;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc)
                return ctl_usage_error("%s needs a file", a);
            path = argv[++i];
        } else if (strcmp(a, "--redis") == 0) {
            if (i + 1 >= argc)
                return ctl_usage_error("%s needs a URL", a);
            url = argv[++i];
        } else if (a[0] == '-') {
            return ctl_usage_error("unknown option %s", a);
        } else {
            break;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[i++];
    int (*fn)(struct ctl *, int, char **) = NULL;
    for (size_t k = 0; k < sizeof commands / sizeof commands[0] && !fn; k++)
        if (strcmp(cmd, commands[k].name) == 0)
            fn = commands[k].fn;
    if (!fn)
        return ctl_usage_error("unknown command \"%s\"", cmd);

    struct ctl ctl = {0};
    /* A file named by -c or $CORRAL_CONFIG must exist; only the default
     * path may be absent. */
    const char *env = getenv("CORRAL_CONFIG");
    ctl.cfg = load_config(path ? path : corral_config_default_path(),
                          path != NULL || (env != NULL && env[0] != '\0'));
    if (ctl.cfg == NULL)
        return 1;
    struct corral_err err;
    if (url != NULL && corral_config_set_redis_url(ctl.cfg, url, &err) < 0) {
        corral_config_free(ctl.cfg);
        return fail_err(&err);
    }
    int rc;
    if (ctl_reconnect(&ctl, &err) < 0)
        rc = fn == ctl_metrics ? ctl_metrics_down(&err) : fail_err(&err);
    else
        rc = fn(&ctl, argc - i, argv + i);
    ctl_close(&ctl);
    corral_tls_proxy_free(ctl.tls);
    corral_config_free(ctl.cfg);
    return rc;
}

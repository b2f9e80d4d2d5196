/* Unit tests for the parts of the queue API that need no Redis: the FCALL
 * builders, the reply parsers fed with hand-made replies, and Redis URL
 * parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "corral/queue.h"
#include "corral/redis.h"

static void assert_argv(const struct corral_cmd *cmd, const char *const *want)
{
    int n = 0;
    while (want[n] != NULL)
        n++;
    assert_int_equal(cmd->argc, n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(cmd->argvlen[i], strlen(want[i]));
        assert_memory_equal(cmd->argv[i], want[i], cmd->argvlen[i]);
    }
}

static void enqueue_builds_fcall_with_hash_tagged_key(void **state)
{
    struct corral_cmd cmd;
    corral_cmd_enqueue(&cmd, "corral", "prompts", "{\"a\":1}", 7, NULL);
    const char *want[] = {"FCALL", "corral_enqueue", "1", "corral:{prompts}", "{\"a\":1}", NULL};
    assert_argv(&cmd, want);
    corral_cmd_free(&cmd);
}

static void enqueue_options_become_one_json_object(void **state)
{
    struct corral_cmd cmd;
    struct corral_enqueue_opts o = {
        .priority = "high", .delay_ms = 1500, .max_attempts = 3, .unique_key = "k1"};
    corral_cmd_enqueue(&cmd, "app", "q", "{}", 2, &o);
    assert_int_equal(cmd.argc, 6);
    assert_string_equal(cmd.argv[3], "app:{q}");
    const char *opts = cmd.argv[5];
    assert_non_null(strstr(opts, "\"priority\":\"high\""));
    assert_non_null(strstr(opts, "\"delay_ms\":1500"));
    assert_non_null(strstr(opts, "\"max_attempts\":3"));
    assert_non_null(strstr(opts, "\"unique_key\":\"k1\""));
    assert_null(strstr(opts, "timeout_ms"));
    corral_cmd_free(&cmd);
}

static void numeric_priority_is_sent_as_a_level_index(void **state)
{
    struct corral_cmd cmd;
    struct corral_enqueue_opts o = {.priority = "2"};
    corral_cmd_enqueue(&cmd, "corral", "q", "{}", 2, &o);
    assert_string_equal(cmd.argv[5], "{\"priority\":2}");
    corral_cmd_free(&cmd);
}

static void payload_may_hold_nul_bytes_and_binary(void **state)
{
    struct corral_cmd cmd;
    const char payload[] = {'"', 'a', '\0', 'b', '"'};
    corral_cmd_enqueue(&cmd, "corral", "q", payload, sizeof(payload), NULL);
    assert_int_equal(cmd.argvlen[4], sizeof(payload));
    assert_memory_equal(cmd.argv[4], payload, sizeof(payload));
    corral_cmd_free(&cmd);
}

static void enqueue_many_sends_the_options_first_then_every_payload(void **state)
{
    struct corral_payload p[3] = {{"{\"n\":1}", 7}, {"2", 1}, {"\"a\0b\"", 5}};
    struct corral_cmd cmd;
    corral_cmd_enqueue_many(&cmd, "corral", "bulk", p, 3, NULL);
    const char *want[] = {"FCALL", "corral_enqueue_many", "1", "corral:{bulk}",
                          "",      "{\"n\":1}",           "2", NULL};
    assert_int_equal(cmd.argc, 8);
    for (int i = 0; i < 7; i++) {
        assert_int_equal(cmd.argvlen[i], strlen(want[i]));
        assert_memory_equal(cmd.argv[i], want[i], cmd.argvlen[i]);
    }
    assert_int_equal(cmd.argvlen[7], 5); /* payloads go as bytes, NUL and all */
    assert_memory_equal(cmd.argv[7], "\"a\0b\"", 5);
    corral_cmd_free(&cmd);

    /* the same options object as corral_enqueue's */
    struct corral_enqueue_opts o = {.priority = "1", .max_attempts = 2};
    corral_cmd_enqueue_many(&cmd, "app", "q", p, 1, &o);
    struct corral_cmd one;
    corral_cmd_enqueue(&one, "app", "q", p[0].data, p[0].len, &o);
    assert_int_equal(cmd.argc, 6);
    assert_string_equal(cmd.argv[3], "app:{q}");
    assert_string_equal(cmd.argv[4], one.argv[5]);
    assert_string_equal(cmd.argv[4], "{\"priority\":1,\"max_attempts\":2}");
    corral_cmd_free(&one);
    corral_cmd_free(&cmd);

    /* options that ask for nothing are "" too */
    struct corral_enqueue_opts none = {0};
    corral_cmd_enqueue_many(&cmd, "corral", "q", p, 1, &none);
    assert_int_equal(cmd.argvlen[4], 0);
    corral_cmd_free(&cmd);
}

static void ack_batches_triples_after_the_worker(void **state)
{
    struct corral_outcome o[2] = {{.id = "1", .run = "3", .data = "r1", .len = 2},
                                  {.id = "2", .run = "1", .data = "r2", .len = 2}};
    struct corral_cmd cmd;
    corral_cmd_ack(&cmd, "corral", "q", "h:1", o, 2);
    const char *want[] = {"FCALL", "corral_ack", "1", "corral:{q}", "h:1", "1",
                          "3",     "r1",         "2", "1",          "r2",  NULL};
    assert_argv(&cmd, want);
    corral_cmd_free(&cmd);
}

static void fail_names_the_kind(void **state)
{
    struct corral_outcome o[2] = {{.id = "1", .run = "1", .data = "boom", .len = 4},
                                  {.id = "2", .run = "1", .data = "bad", .len = 3, .permanent = 1}};
    struct corral_cmd cmd;
    corral_cmd_fail(&cmd, "corral", "q", "w", o, 2);
    const char *want[] = {"FCALL", "corral_fail", "1", "corral:{q}", "w",         "1",   "1",
                          "retry", "boom",        "2", "1",          "permanent", "bad", NULL};
    assert_argv(&cmd, want);
    corral_cmd_free(&cmd);
}

static void queue_names_are_checked(void **state)
{
    assert_true(corral_queue_name_valid("prompts"));
    assert_true(corral_queue_name_valid("a.b:c-d_e9"));
    assert_false(corral_queue_name_valid(""));
    assert_false(corral_queue_name_valid("a{b}"));
    assert_false(corral_queue_name_valid("a b"));
    char long_name[66];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    assert_false(corral_queue_name_valid(long_name));
    long_name[64] = '\0';
    assert_true(corral_queue_name_valid(long_name));
}

/* Hand-made replies. */
static redisReply *str_reply(const char *s)
{
    redisReply *r = calloc(1, sizeof(*r));
    r->type = REDIS_REPLY_STRING;
    r->str = strdup(s);
    r->len = strlen(s);
    return r;
}

static redisReply *int_reply(long long v)
{
    redisReply *r = calloc(1, sizeof(*r));
    r->type = REDIS_REPLY_INTEGER;
    r->integer = v;
    return r;
}

static redisReply *arr_reply(size_t n)
{
    redisReply *r = calloc(1, sizeof(*r));
    r->type = REDIS_REPLY_ARRAY;
    r->elements = n;
    r->element = calloc(n ? n : 1, sizeof(redisReply *));
    return r;
}

static void free_reply(redisReply *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->elements; i++)
        free_reply(r->element[i]);
    free(r->element);
    free(r->str);
    free(r);
}

static void reserve_reply_becomes_jobs(void **state)
{
    redisReply *r = arr_reply(1);
    redisReply *j = arr_reply(8);
    j->element[0] = str_reply("17");
    j->element[1] = str_reply("2");
    j->element[2] = int_reply(2);
    j->element[3] = int_reply(5);
    j->element[4] = int_reply(60000);
    j->element[5] = str_reply("high");
    j->element[6] = str_reply("openai");
    j->element[7] = str_reply("{\"x\":1}");
    r->element[0] = j;
    struct corral_job *jobs;
    size_t n;
    struct corral_err err;
    assert_int_equal(corral_reply_reserve(r, &jobs, &n, NULL, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(jobs[0].id, "17");
    assert_string_equal(jobs[0].run, "2");
    assert_int_equal(jobs[0].attempts, 2);
    assert_int_equal(jobs[0].max_attempts, 5);
    assert_int_equal(jobs[0].timeout_ms, 60000);
    assert_string_equal(jobs[0].priority, "high");
    assert_string_equal(jobs[0].service, "openai");
    assert_int_equal(jobs[0].payload_len, 7);
    corral_jobs_free(jobs, n);
    free_reply(r);
}

static redisReply *err_reply(const char *s)
{
    redisReply *r = str_reply(s);
    r->type = REDIS_REPLY_ERROR;
    return r;
}

static void error_replies_become_errors_naming_the_problem(void **state)
{
    redisReply *r =
        err_reply("NOQUEUE unknown queue \"x\": no corrald or corralctl has declared it");
    char *id = NULL;
    struct corral_err err;
    assert_int_equal(corral_reply_enqueue(r, &id, &err), -1);
    assert_int_equal(err.code, CORRAL_ERR_NOTFOUND);
    assert_int_equal(err.word, CORRAL_WORD_NOQUEUE);
    assert_string_equal(err.msg, "unknown queue \"x\": no corrald or corralctl has declared it");
    assert_null(id);
    free_reply(r);
}

static void enqueue_many_reply_gives_the_ids_in_order(void **state)
{
    redisReply *r = arr_reply(3);
    r->element[0] = str_reply("7");
    r->element[1] = str_reply("8");
    r->element[2] = str_reply("3"); /* a unique_key's existing job */
    char *ids[3] = {NULL, NULL, NULL};
    struct corral_err err;
    assert_int_equal(corral_reply_enqueue_many(r, ids, 3, &err), 0);
    assert_string_equal(ids[0], "7");
    assert_string_equal(ids[1], "8");
    assert_string_equal(ids[2], "3");
    for (int i = 0; i < 3; i++)
        free(ids[i]);
    free_reply(r);
}

static void enqueue_many_reply_of_another_shape_or_an_error_sets_nothing(void **state)
{
    char *ids[3] = {NULL, NULL, NULL};
    struct corral_err err;
    redisReply *r = arr_reply(2); /* fewer ids than payloads */
    r->element[0] = str_reply("1");
    r->element[1] = str_reply("2");
    assert_int_equal(corral_reply_enqueue_many(r, ids, 3, &err), -1);
    assert_int_equal(err.code, CORRAL_ERR_REDIS);
    assert_non_null(strstr(err.msg, "enqueue_many: unexpected reply shape"));
    free_reply(r);
    r = arr_reply(3); /* an id that is not a string: nothing is kept */
    r->element[0] = str_reply("1");
    r->element[1] = str_reply("2");
    r->element[2] = int_reply(3);
    assert_int_equal(corral_reply_enqueue_many(r, ids, 3, &err), -1);
    free_reply(r);
    r = err_reply("TOOBIG queue \"bulk\": payload 2 of 3 is 101 bytes, limit is 100 (max_payload)");
    assert_int_equal(corral_reply_enqueue_many(r, ids, 3, &err), -1);
    assert_int_equal(err.code, CORRAL_ERR_INVALID);
    assert_int_equal(err.word, CORRAL_WORD_TOOBIG);
    assert_string_equal(err.msg,
                        "queue \"bulk\": payload 2 of 3 is 101 bytes, limit is 100 (max_payload)");
    free_reply(r);
    for (int i = 0; i < 3; i++)
        assert_null(ids[i]);
}

/* One row per kind: the reply, the value callers switch on, the broad
 * code, and the message people read. */
static void error_reply_words_map_to_their_value_code_and_message(void **state)
{
    static const struct {
        const char *reply;
        enum corral_err_word word;
        enum corral_err_code code;
        const char *msg;
    } cases[] = {
        {"BADARG expected one key", CORRAL_WORD_BADARG, CORRAL_ERR_INVALID, "expected one key"},
        {"BADNAME bad queue name", CORRAL_WORD_BADNAME, CORRAL_ERR_INVALID, "bad queue name"},
        {"NOQUEUE unknown queue", CORRAL_WORD_NOQUEUE, CORRAL_ERR_NOTFOUND, "unknown queue"},
        {"NOSERVICE unknown", CORRAL_WORD_NOSERVICE, CORRAL_ERR_NOTFOUND, "unknown"},
        {"BADPAYLOAD not JSON", CORRAL_WORD_BADPAYLOAD, CORRAL_ERR_INVALID, "not JSON"},
        {"TOOBIG 2 bytes", CORRAL_WORD_TOOBIG, CORRAL_ERR_INVALID, "2 bytes"},
        {"BADOPTION prio", CORRAL_WORD_BADOPTION, CORRAL_ERR_INVALID, "prio"},
        {"BADSETTING order", CORRAL_WORD_BADSETTING, CORRAL_ERR_INVALID, "order"},
        {"NOJOB no job 4", CORRAL_WORD_NOJOB, CORRAL_ERR_NOTFOUND, "no job 4"},
        {"RUNNING job 4", CORRAL_WORD_RUNNING, CORRAL_ERR_INVALID, "job 4"},
        {"FINISHED job 4", CORRAL_WORD_FINISHED, CORRAL_ERR_INVALID, "job 4"},
        {"NOTDEAD job 4", CORRAL_WORD_NOTDEAD, CORRAL_ERR_INVALID, "job 4"},
        {"ERR Function not found", CORRAL_WORD_NOFUNCTION, CORRAL_ERR_REDIS, "Function not found"},
        {"ERR unknown command `FCALL_RO`, with args beginning with: ", CORRAL_WORD_NOCOMMAND,
         CORRAL_ERR_REDIS, "unknown command `FCALL_RO`, with args beginning with: "},
        {"NOSCRIPT No matching script.", CORRAL_WORD_NOSCRIPT, CORRAL_ERR_REDIS,
         "NOSCRIPT No matching script."},
        {"NOPERM this user has no permissions", CORRAL_WORD_NOPERM, CORRAL_ERR_REDIS,
         "NOPERM this user has no permissions"},
        {"NOAUTH Authentication required.", CORRAL_WORD_NOAUTH, CORRAL_ERR_REDIS,
         "NOAUTH Authentication required."},
        {"WRONGPASS invalid username-password pair", CORRAL_WORD_WRONGPASS, CORRAL_ERR_REDIS,
         "WRONGPASS invalid username-password pair"},
        {"READONLY You can't write against a read only replica.", CORRAL_WORD_READONLY,
         CORRAL_ERR_REDIS, "READONLY You can't write against a read only replica."},
        {"OOM command not allowed", CORRAL_WORD_OOM, CORRAL_ERR_REDIS, "OOM command not allowed"},
        {"MISCONF no save", CORRAL_WORD_MISCONF, CORRAL_ERR_REDIS, "MISCONF no save"},
        {"LOADING Redis is loading", CORRAL_WORD_LOADING, CORRAL_ERR_REDIS,
         "LOADING Redis is loading"},
        {"MASTERDOWN Link down", CORRAL_WORD_MASTERDOWN, CORRAL_ERR_REDIS, "MASTERDOWN Link down"},
        {"BUSY Redis is busy", CORRAL_WORD_BUSY, CORRAL_ERR_REDIS, "BUSY Redis is busy"},
        {"WRONGTYPE Operation", CORRAL_WORD_WRONGTYPE, CORRAL_ERR_REDIS, "WRONGTYPE Operation"},
        {"UNBLOCKED force unblock from blocking operation, instance state changed (master -> "
         "replica?)",
         CORRAL_WORD_UNBLOCKED, CORRAL_ERR_REDIS,
         "UNBLOCKED force unblock from blocking operation, instance state changed (master -> "
         "replica?)"},
        {"MOVED 866 127.0.0.1:7001", CORRAL_WORD_MOVED, CORRAL_ERR_REDIS,
         "MOVED 866 127.0.0.1:7001"},
        {"ASK 866 127.0.0.1:7001", CORRAL_WORD_ASK, CORRAL_ERR_REDIS, "ASK 866 127.0.0.1:7001"},
        {"ERR wrong number of arguments", CORRAL_WORD_ERR, CORRAL_ERR_REDIS,
         "wrong number of arguments"},
        /* prose is never matched: a word must be the whole first word */
        {"ERR unknown queue \"x\"", CORRAL_WORD_ERR, CORRAL_ERR_REDIS, "unknown queue \"x\""},
        {"NOQUEUES x", CORRAL_WORD_OTHER, CORRAL_ERR_REDIS, "NOQUEUES x"},
        {"ERR Function not found here", CORRAL_WORD_ERR, CORRAL_ERR_REDIS,
         "Function not found here"},
        {"noqueue x", CORRAL_WORD_OTHER, CORRAL_ERR_REDIS, "noqueue x"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        redisReply *r = err_reply(cases[i].reply);
        struct corral_err err;
        assert_int_equal(corral_redis_check(NULL, r, "x", &err), -1);
        assert_int_equal(err.word, cases[i].word);
        assert_int_equal(err.code, cases[i].code);
        assert_string_equal(err.msg, cases[i].msg);
        assert_int_equal(corral_reply_word(r->str, r->len), cases[i].word);
        /* the words that send a program to find the master again */
        int moved = cases[i].word == CORRAL_WORD_READONLY || cases[i].word == CORRAL_WORD_LOADING ||
                    cases[i].word == CORRAL_WORD_MASTERDOWN ||
                    cases[i].word == CORRAL_WORD_UNBLOCKED || cases[i].word == CORRAL_WORD_MOVED ||
                    cases[i].word == CORRAL_WORD_ASK || cases[i].word == CORRAL_WORD_CLUSTERDOWN ||
                    cases[i].word == CORRAL_WORD_TRYAGAIN;
        assert_int_equal(corral_err_word_moved(cases[i].word), moved);
        free_reply(r);
    }
}

static void every_word_has_its_name_and_the_name_maps_back(void **state)
{
    for (int w = CORRAL_WORD_BADARG; w < CORRAL_WORD_OTHER; w++) {
        const char *name = corral_err_word_name((enum corral_err_word)w);
        assert_true(strlen(name) >= 3);
        char reply[64];
        snprintf(reply, sizeof(reply), "%s some text", name);
        if (w != CORRAL_WORD_NOFUNCTION && w != CORRAL_WORD_NOCOMMAND) /* Redis says ERR */
            assert_int_equal(corral_reply_word(reply, strlen(reply)), w);
    }
    assert_string_equal(corral_err_word_name(CORRAL_WORD_NONE), "");
    assert_string_equal(corral_err_word_name(CORRAL_WORD_OTHER), "OTHER");
    struct corral_err err;
    corral_err_set(&err, CORRAL_ERR_INVALID, "not from a reply");
    assert_int_equal(err.word, CORRAL_WORD_NONE);
}

static void malformed_reserve_reply_is_an_error_not_a_crash(void **state)
{
    redisReply *r = arr_reply(1);
    r->element[0] = str_reply("oops");
    struct corral_job *jobs;
    size_t n;
    struct corral_err err;
    assert_int_equal(corral_reply_reserve(r, &jobs, &n, NULL, &err), -1);
    assert_int_equal(n, 0);
    assert_null(jobs);
    assert_non_null(strstr(err.msg, "unexpected reply"));
    free_reply(r);
}

static void reserve_reply_gate_says_until_when_and_why(void **state)
{
    redisReply *r = arr_reply(1);
    r->element[0] = str_reply("gate 29500 breaker open: failure rate 100%");
    struct corral_job *jobs;
    size_t n;
    struct corral_gate gate;
    struct corral_err err;
    assert_int_equal(corral_reply_reserve(r, &jobs, &n, &gate, &err), 0);
    assert_int_equal(n, 0);
    assert_null(jobs);
    assert_int_equal(gate.wait_ms, 29500);
    assert_string_equal(gate.why, "breaker open: failure rate 100%");
    free_reply(r);

    r = arr_reply(1);
    r->element[0] = str_reply("gate soon");
    assert_int_equal(corral_reply_reserve(r, &jobs, &n, &gate, &err), -1);
    free_reply(r);
}

static void defer_carries_kind_and_reason(void **state)
{
    struct corral_outcome o[2] = {
        {.id = "1",
         .run = "3",
         .delay_ms = 2000,
         .defer_kind = CORRAL_DEFER_THROTTLE,
         .data = "HTTP 429",
         .len = 8},
        {.id = "2", .run = "1", .delay_ms = 0},
    };
    struct corral_cmd cmd;
    corral_cmd_defer(&cmd, "corral", "q", "h:1", o, 2);
    assert_int_equal(cmd.argc, 5 + 10);
    assert_string_equal(cmd.argv[7], "2000");
    assert_string_equal(cmd.argv[8], "throttle");
    assert_string_equal(cmd.argv[9], "HTTP 429");
    assert_string_equal(cmd.argv[13], "");
    assert_string_equal(cmd.argv[14], "");
    corral_cmd_free(&cmd);
}

static void outcome_reply_maps_each_word_to_its_status(void **state)
{
    const char *words[] = {"done", "dead", "scheduled", "queued", "active", "STALE", "RECLAIMED"};
    enum corral_run_status want[] = {
        CORRAL_STATUS_DONE,   CORRAL_STATUS_DEAD,  CORRAL_STATUS_SCHEDULED, CORRAL_STATUS_QUEUED,
        CORRAL_STATUS_ACTIVE, CORRAL_STATUS_STALE, CORRAL_STATUS_RECLAIMED};
    redisReply *r = arr_reply(7);
    for (size_t i = 0; i < 7; i++)
        r->element[i] = str_reply(words[i]);
    enum corral_run_status st[7];
    struct corral_err err;
    assert_int_equal(corral_reply_runs(r, st, 7, &err), 0);
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(st[i], want[i]);
        assert_string_equal(corral_run_status_name(st[i]), words[i]);
    }
    /* one entry per job, or the reply is not understood */
    assert_int_equal(corral_reply_runs(r, st, 6, &err), -1);
    free_reply(r);
}

static void outcome_reply_with_an_unknown_word_or_an_int_is_refused(void **state)
{
    /* "stale" and 1 were version 3's words: a status is never guessed */
    const char *bad[] = {"stale", "Done", "reclaimed", "", "done "};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        redisReply *r = arr_reply(2);
        r->element[0] = str_reply("done");
        r->element[1] = str_reply(bad[k]);
        enum corral_run_status st[2];
        struct corral_err err;
        assert_int_equal(corral_reply_runs(r, st, 2, &err), -1);
        assert_int_equal(err.code, CORRAL_ERR_REDIS);
        free_reply(r);
    }
    redisReply *r = arr_reply(1);
    r->element[0] = int_reply(1);
    enum corral_run_status st[1];
    struct corral_err err;
    assert_int_equal(corral_reply_runs(r, st, 1, &err), -1);
    free_reply(r);
}

static void ack_reserve_sends_the_reserve_then_the_triples(void **state)
{
    struct corral_outcome o[1] = {{.id = "7", .run = "2", .data = "r", .len = 1}};
    struct corral_cmd cmd;
    corral_cmd_ack_reserve(&cmd, "corral", "q", "h:1", o, 1, 4, -3);
    const char *want[] = {
        "FCALL", "corral_ack_reserve", "1", "corral:{q}", "h:1", "4", "0", "7", "2", "r", NULL};
    assert_argv(&cmd, want);
    corral_cmd_free(&cmd);
}

static void ack_reserve_reply_is_the_statuses_then_the_jobs_and_gate(void **state)
{
    redisReply *r = arr_reply(2);
    r->element[0] = arr_reply(2);
    r->element[0]->element[0] = str_reply("done");
    r->element[0]->element[1] = str_reply("RECLAIMED");
    redisReply *jobs_r = arr_reply(2);
    r->element[1] = jobs_r;
    jobs_r->element[0] = arr_reply(8);
    const char *f[] = {"9", "1", NULL, NULL, NULL, "normal", "", "{}"};
    for (int i = 0; i < 8; i++)
        jobs_r->element[0]->element[i] = f[i] ? str_reply(f[i]) : int_reply(i == 4 ? 60000 : 1);
    jobs_r->element[1] = str_reply("gate 1000 max_inflight 1 reached on host h");
    enum corral_run_status st[2];
    struct corral_job *jobs;
    size_t n;
    struct corral_gate gate;
    struct corral_err err;
    assert_int_equal(corral_reply_ack_reserve(r, st, 2, &jobs, &n, &gate, &err), 0);
    assert_int_equal(st[0], CORRAL_STATUS_DONE);
    assert_int_equal(st[1], CORRAL_STATUS_RECLAIMED);
    assert_int_equal(n, 1);
    assert_string_equal(jobs[0].id, "9");
    assert_string_equal(jobs[0].payload, "{}");
    assert_int_equal(jobs[0].timeout_ms, 60000);
    assert_int_equal(gate.wait_ms, 1000);
    corral_jobs_free(jobs, n);
    /* a status count that does not match the outcomes sent is refused,
     * and nothing is left to free */
    assert_int_equal(corral_reply_ack_reserve(r, st, 1, &jobs, &n, &gate, &err), -1);
    assert_null(jobs);
    assert_int_equal(n, 0);
    free_reply(r);

    r = arr_reply(1);
    r->element[0] = arr_reply(0);
    assert_int_equal(corral_reply_ack_reserve(r, st, 0, &jobs, &n, &gate, &err), -1);
    assert_non_null(strstr(err.msg, "unexpected reply"));
    free_reply(r);
}

static void redis_urls_parse(void **state)
{
    struct corral_redis_addr a;
    struct corral_err err;
    assert_int_equal(corral_redis_parse_url("redis://127.0.0.1:6380/2", &a, &err), 0);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 6380);
    assert_int_equal(a.db, 2);
    assert_null(a.user);
    corral_redis_addr_free(&a);

    assert_int_equal(corral_redis_parse_url("redis://corral@redis.internal", &a, &err), 0);
    assert_string_equal(a.user, "corral");
    assert_string_equal(a.host, "redis.internal");
    assert_int_equal(a.port, 6379);
    corral_redis_addr_free(&a);

    assert_int_equal(corral_redis_parse_url("unix:///run/redis/redis.sock?db=3", &a, &err), 0);
    assert_string_equal(a.path, "/run/redis/redis.sock");
    assert_int_equal(a.db, 3);
    corral_redis_addr_free(&a);
}

static void redis_url_with_password_is_refused_without_echoing_it(void **state)
{
    struct corral_redis_addr a;
    struct corral_err err;
    assert_int_equal(corral_redis_parse_url("redis://u:s3cret@h:1/0", &a, &err), -1);
    assert_non_null(strstr(err.msg, "password_file"));
    assert_null(strstr(err.msg, "s3cret"));
}

static void bad_redis_urls_are_refused(void **state)
{
    const char *bad[] = {"http://h",        "redis://",        "redis://h:0",
                         "redis://h:70000", "redis://h:x",     "redis://h/x",
                         "unix://relative", "unix:///s?foo=1", NULL};
    for (const char **u = bad; *u; u++) {
        struct corral_redis_addr a;
        struct corral_err err;
        assert_int_equal(corral_redis_parse_url(*u, &a, &err), -1);
        assert_non_null(strstr(err.msg, "redis url"));
    }
}

static void embedded_function_library_has_a_version(void **state)
{
    assert_true(corral_functions_version() >= 1);
    assert_non_null(strstr(corral_functions_source(), "#!lua name=corral"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(enqueue_builds_fcall_with_hash_tagged_key),
        cmocka_unit_test(enqueue_options_become_one_json_object),
        cmocka_unit_test(numeric_priority_is_sent_as_a_level_index),
        cmocka_unit_test(payload_may_hold_nul_bytes_and_binary),
        cmocka_unit_test(enqueue_many_sends_the_options_first_then_every_payload),
        cmocka_unit_test(enqueue_many_reply_gives_the_ids_in_order),
        cmocka_unit_test(enqueue_many_reply_of_another_shape_or_an_error_sets_nothing),
        cmocka_unit_test(ack_batches_triples_after_the_worker),
        cmocka_unit_test(fail_names_the_kind),
        cmocka_unit_test(queue_names_are_checked),
        cmocka_unit_test(reserve_reply_becomes_jobs),
        cmocka_unit_test(error_replies_become_errors_naming_the_problem),
        cmocka_unit_test(malformed_reserve_reply_is_an_error_not_a_crash),
        cmocka_unit_test(reserve_reply_gate_says_until_when_and_why),
        cmocka_unit_test(defer_carries_kind_and_reason),
        cmocka_unit_test(outcome_reply_maps_each_word_to_its_status),
        cmocka_unit_test(outcome_reply_with_an_unknown_word_or_an_int_is_refused),
        cmocka_unit_test(ack_reserve_sends_the_reserve_then_the_triples),
        cmocka_unit_test(ack_reserve_reply_is_the_statuses_then_the_jobs_and_gate),
        cmocka_unit_test(error_reply_words_map_to_their_value_code_and_message),
        cmocka_unit_test(every_word_has_its_name_and_the_name_maps_back),
        cmocka_unit_test(redis_urls_parse),
        cmocka_unit_test(redis_url_with_password_is_refused_without_echoing_it),
        cmocka_unit_test(bad_redis_urls_are_refused),
        cmocka_unit_test(embedded_function_library_has_a_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

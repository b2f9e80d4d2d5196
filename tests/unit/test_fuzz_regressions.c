/* Regression tests for what the libFuzzer targets of tests/fuzz found (see
 * docs/fuzzing.md). Each replays the smallest input that showed the bug,
 * through the same entry point the fuzzer used. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "config_harness.h"
#include "corral/config.h"
#include "corral/queue.h"

/* corrald --check's dump of cfg, loaded back; it must load. */
static struct corral_config *dump_and_reload(const struct corral_config *cfg, char **text)
{
    size_t len = 0;
    FILE *f = open_memstream(text, &len);
    assert_non_null(f);
    corral_config_dump(cfg, f);
    fclose(f);
    return load_ok(*text);
}

/* One reply read from RESP text with hiredis's reader, as Redis sends it. */
static redisReply *resp(const char *text, size_t len)
{
    redisReader *rd = redisReaderCreate();
    assert_int_equal(redisReaderFeed(rd, text, len), REDIS_OK);
    void *reply = NULL;
    assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(rd);
    return reply;
}

static void reserved_payload_length_matches_a_status_or_integer_payload(void **state)
{
    /* fuzz_job: the payload of a job whose payload element was a status or
     * an integer reply was its text with payload_len 0, so handlers sent
     * nothing. */
    static const char text[] = "*2\r\n"
                               "*8\r\n+1-a\r\n+r\r\n:1\r\n:5\r\n:60000\r\n+high\r\n+svc\r\n+ok\r\n"
                               "*8\r\n+1-b\r\n+r\r\n:1\r\n:5\r\n:60000\r\n+high\r\n+svc\r\n:42\r\n";
    redisReply *r = resp(text, sizeof(text) - 1);
    struct corral_job *jobs = NULL;
    size_t n = 0;
    struct corral_err err;
    assert_int_equal(corral_reply_reserve(r, &jobs, &n, NULL, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(jobs[0].payload, "ok");
    assert_int_equal(jobs[0].payload_len, 2);
    assert_string_equal(jobs[1].payload, "42");
    assert_int_equal(jobs[1].payload_len, 2);
    corral_jobs_free(jobs, n);
    freeReplyObject(r);
}

static void reserved_bulk_payload_keeps_its_nul_bytes(void **state)
{
    static const char text[] =
        "*1\r\n*8\r\n$3\r\n1-a\r\n$1\r\nr\r\n:1\r\n:5\r\n:60000\r\n$4\r\nhigh\r\n$3\r\nsvc\r\n"
        "$3\r\na\0b\r\n";
    redisReply *r = resp(text, sizeof(text) - 1);
    struct corral_job *jobs = NULL;
    size_t n = 0;
    struct corral_err err;
    assert_int_equal(corral_reply_reserve(r, &jobs, &n, NULL, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(jobs[0].payload_len, 3);
    assert_memory_equal(jobs[0].payload, "a\0b", 3);
    corral_jobs_free(jobs, n);
    freeReplyObject(r);
}

static void an_error_reply_without_text_still_names_the_command(void **state)
{
    /* fuzz_job: "-ERR \r\n" left an empty error message, so corralctl
     * printed "corralctl: " and nothing else; later "-\0\r\n", whose
     * message began with a NUL, did the same. */
    static const struct {
        const char *text;
        size_t len;
    } replies[] = {{"-ERR \r\n", 7}, {"-\r\n", 3}, {"-\0\r\n", 4}, {"-ERR \0x\r\n", 9}};
    for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
        redisReply *r = resp(replies[i].text, replies[i].len);
        char *id = NULL;
        struct corral_err err;
        assert_int_equal(corral_reply_enqueue(r, &id, &err), -1);
        assert_null(id);
        assert_non_null(strstr(err.msg, "enqueue"));
        freeReplyObject(r);
    }
}

static void dump_of_many_long_queue_names_loads_back(void **state)
{
    /* fuzz_config: with [pool] queues unset, the dump listed every [queue]
     * on one line, longer than the loader reads, so the dump of a valid
     * config was refused. */
    char text[2048] = "";
    for (int i = 0; i < 5; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text),
                 "[queue q%d_%.58s]\nhandler = echo\n", i,
                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    struct corral_config *a = load_ok(text);
    char *dump = NULL;
    struct corral_config *b = dump_and_reload(a, &dump);
    assert_int_equal(b->pool.queues.n, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(b->pool.queues.items[i], a->pool.queues.items[i]);
    free(dump);
    corral_config_free(a);
    corral_config_free(b);
}

static void dump_of_values_at_the_line_limit_loads_back(void **state)
{
    /* fuzz_config: "key=value" at the longest line the loader reads (198
     * bytes) came back as "key = value", or a list as "a, b", too long. */
    char text[4096] = "[pool]\nqueues=";
    char names[64][3];
    for (int i = 0; i < 64; i++) {
        snprintf(names[i], sizeof(names[i]), "%c%c", 'a' + i / 26, 'a' + i % 26);
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s%s", i ? "," : "", names[i]);
    }
    /* "queues=" and 63 names of 2 with 62 commas: 196 bytes */
    char *nl = text + strlen("[pool]\nqueues=") + 63 * 3 - 1;
    *nl = '\0';
    strcat(text, "\n[queue x]\nhandler = exec\ncommand=/");
    size_t cmd_at = strlen(text) - 1;
    memset(text + strlen(text), 'c', 189); /* "command=" + 190 = 198 */
    strcat(text, "\n");
    for (int i = 0; i < 63; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "[queue %s]\nhandler = echo\n",
                 names[i]);
    struct corral_config *a = load_ok(text);
    char *dump = NULL;
    struct corral_config *b = dump_and_reload(a, &dump);
    assert_int_equal(b->pool.queues.n, 63);
    assert_string_equal(b->pool.queues.items[62], names[62]);
    assert_int_equal(strlen(corral_config_queue(b, "x")->command), 190);
    assert_memory_equal(corral_config_queue(b, "x")->command, text + cmd_at, 190);
    free(dump);
    corral_config_free(a);
    corral_config_free(b);
}

static void dump_of_a_path_made_too_long_by_credentials_directory_loads_back(void **state)
{
    /* fuzz_config: ${CREDENTIALS_DIRECTORY} expanded a path past the line
     * limit; the dump now says so in a comment instead of a refused line. */
    char dir[200];
    memset(dir, 'd', sizeof(dir));
    dir[0] = '/';
    dir[sizeof(dir) - 1] = '\0';
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    struct corral_config *a =
        load_ok("[redis]\npassword_file = ${CREDENTIALS_DIRECTORY}/redis\n[queue q]\nhandler = "
                "echo\n");
    char *dump = NULL;
    struct corral_config *b = dump_and_reload(a, &dump);
    assert_non_null(strstr(dump, "; password_file: not shown"));
    assert_null(b->redis.password_file);
    free(dump);
    corral_config_free(a);
    corral_config_free(b);
    unsetenv("CREDENTIALS_DIRECTORY");
}

static void enqueue_options_that_are_not_utf8_are_refused_not_dropped(void **state)
{
    /* Writing fuzz_job: corral_cmd_enqueue left a --unique, --service or
     * --priority that is not UTF-8 out of the FCALL without a word (jansson
     * refuses the string), so the job went in without its unique key. */
    struct corral_err err;
    struct corral_enqueue_opts o = {.unique_key = "order-\xff"};
    assert_int_equal(corral_enqueue_opts_check("q", &o, &err), -1);
    assert_int_equal(err.code, CORRAL_ERR_INVALID);
    assert_string_equal(err.msg, "queue \"q\": unique_key is not valid UTF-8");
    o = (struct corral_enqueue_opts){.service = "\xc3"};
    assert_int_equal(corral_enqueue_opts_check("q", &o, &err), -1);
    assert_non_null(strstr(err.msg, "service"));
    o = (struct corral_enqueue_opts){.priority = "h\xed\xa0\x80"}; /* an encoded surrogate */
    assert_int_equal(corral_enqueue_opts_check("q", &o, &err), -1);
    assert_non_null(strstr(err.msg, "priority"));
    o = (struct corral_enqueue_opts){.priority = "h\xc3\xa9", .service = "s", .unique_key = "k"};
    assert_int_equal(corral_enqueue_opts_check("q", &o, &err), 0);
    assert_int_equal(corral_enqueue_opts_check("q", NULL, &err), 0);
}

static void dump_of_a_value_starting_with_a_semicolon_loads_back(void **state)
{
    /* fuzz_config: "command =;x" sets the command ";x", which the dump wrote
     * as "command = ;x", an empty value and a comment when read back. */
    struct corral_config *a = load_ok("[queue q]\nhandler = exec\ncommand =;x --y\n");
    assert_string_equal(corral_config_queue(a, "q")->command, ";x --y");
    char *dump = NULL;
    struct corral_config *b = dump_and_reload(a, &dump);
    assert_string_equal(corral_config_queue(b, "q")->command, ";x --y");
    free(dump);
    corral_config_free(a);
    corral_config_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reserved_payload_length_matches_a_status_or_integer_payload),
        cmocka_unit_test(reserved_bulk_payload_keeps_its_nul_bytes),
        cmocka_unit_test(an_error_reply_without_text_still_names_the_command),
        cmocka_unit_test(enqueue_options_that_are_not_utf8_are_refused_not_dropped),
        cmocka_unit_test(dump_of_many_long_queue_names_loads_back),
        cmocka_unit_test(dump_of_a_value_starting_with_a_semicolon_loads_back),
        cmocka_unit_test(dump_of_values_at_the_line_limit_loads_back),
        cmocka_unit_test(dump_of_a_path_made_too_long_by_credentials_directory_loads_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

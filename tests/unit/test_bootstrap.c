/* Unit tests for the shared set-up of a Redis connection (corral/bootstrap.h):
 * which commands each program's scope builds, in which order, and when the
 * library is loaded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "corral/bootstrap.h"
#include "corral/config.h"
#include "corral/redis.h"

static const char *conf_text = "[redis]\nprefix = p\n"
                               "[queue a]\nhandler = http\nservice = ai\n"
                               "[queue b]\nhandler = http\nservice = ai\n"
                               "[queue c]\nhandler = echo\n"
                               "[service ai]\nurl = http://127.0.0.1:9/v1\n"
                               "[service spare]\nurl = http://127.0.0.1:9/v2\n";

static struct corral_config *load(void)
{
    struct corral_config_errors errs;
    struct corral_config *cfg = corral_config_load_string(conf_text, "t.conf", &errs);
    assert_non_null(cfg);
    corral_config_errors_free(&errs);
    return cfg;
}

/* "what name" of each step, joined by commas. */
static void steps_text(const struct corral_bootstrap *b, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < b->n && used < len; i++)
        used +=
            (size_t)snprintf(buf + used, len - used, "%s%s%s%s", i ? "," : "", b->steps[i].what,
                             b->steps[i].name ? " " : "", b->steps[i].name ? b->steps[i].name : "");
}

static void an_empty_redis_gets_the_library_then_every_queue_and_service(void **state)
{
    struct corral_config *cfg = load();
    struct corral_bootstrap b;
    corral_bootstrap_build(&b, cfg, -1, CORRAL_BOOTSTRAP_ALL, NULL, 0);
    char text[512];
    steps_text(&b, text, sizeof(text));
    assert_string_equal(text, "FUNCTION LOAD,declare queue a,declare queue b,declare queue c,"
                              "declare service ai,declare service spare");
    const struct corral_cmd *load_cmd = &b.steps[0].cmd;
    assert_int_equal(load_cmd->argc, 4);
    assert_string_equal(load_cmd->argv[0], "FUNCTION");
    assert_string_equal(load_cmd->argv[2], "REPLACE");
    assert_string_equal(load_cmd->argv[3], corral_functions_source());
    /* the declares are the library's own commands, on the config's prefix */
    assert_string_equal(b.steps[1].cmd.argv[1], "corral_declare");
    assert_string_equal(b.steps[1].cmd.argv[3], "p:{a}");
    assert_string_equal(b.steps[4].cmd.argv[1], "corral_declare_service");
    corral_bootstrap_free(&b);
    corral_config_free(cfg);
}

static void a_current_or_newer_library_is_left_alone(void **state)
{
    struct corral_config *cfg = load();
    struct corral_bootstrap b;
    corral_bootstrap_build(&b, cfg, corral_functions_version(), CORRAL_BOOTSTRAP_LIBRARY, NULL, 0);
    assert_int_equal(b.n, 0);
    corral_bootstrap_free(&b);
    corral_bootstrap_build(&b, cfg, corral_functions_version() + 1, CORRAL_BOOTSTRAP_ALL, NULL, 0);
    assert_int_equal(b.n, 5);
    assert_string_equal(b.steps[0].what, "declare queue");
    corral_bootstrap_free(&b);
    corral_bootstrap_build(&b, NULL, corral_functions_version() - 1, CORRAL_BOOTSTRAP_LIBRARY, NULL,
                           0);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.steps[0].what, "FUNCTION LOAD");
    corral_bootstrap_free(&b);
    corral_config_free(cfg);
}

static void a_worker_declares_its_queues_and_each_of_their_services_once(void **state)
{
    struct corral_config *cfg = load();
    const char *mine[] = {"b", "nosuch", "a"};
    struct corral_bootstrap b;
    corral_bootstrap_build(&b, cfg, corral_functions_version(), CORRAL_BOOTSTRAP_QUEUES, mine, 3);
    char text[512];
    steps_text(&b, text, sizeof(text));
    assert_string_equal(text, "declare queue b,declare queue a,declare service ai");
    corral_bootstrap_free(&b);
    const char *echo_only[] = {"c"};
    corral_bootstrap_build(&b, cfg, corral_functions_version(), CORRAL_BOOTSTRAP_QUEUES, echo_only,
                           1);
    steps_text(&b, text, sizeof(text));
    assert_string_equal(text, "declare queue c");
    corral_bootstrap_free(&b);
    corral_bootstrap_free(NULL);
    corral_config_free(cfg);
}

static void the_version_reply_tells_no_library_from_no_functions_or_no_permission(void **state)
{
    long long have = 0;
    struct corral_err err;
    redisReply seven = {.type = REDIS_REPLY_INTEGER, .integer = 7};
    assert_int_equal(corral_bootstrap_reply_version(NULL, &seven, &have, &err), 0);
    assert_int_equal(have, 7);
    char nofn[] = "ERR Function not found";
    redisReply missing = {.type = REDIS_REPLY_ERROR, .str = nofn, .len = strlen(nofn)};
    assert_int_equal(corral_bootstrap_reply_version(NULL, &missing, &have, &err), 0);
    assert_int_equal(have, -1);
    char old[] = "ERR unknown command 'FCALL_RO'";
    redisReply too_old = {.type = REDIS_REPLY_ERROR, .str = old, .len = strlen(old)};
    assert_int_equal(corral_bootstrap_reply_version(NULL, &too_old, &have, &err), -1);
    assert_non_null(strstr(err.msg, "redis-server 7"));
    char noperm[] = "NOPERM User corral has no permissions to run the 'fcall_ro' command";
    redisReply refused = {.type = REDIS_REPLY_ERROR, .str = noperm, .len = strlen(noperm)};
    assert_int_equal(corral_bootstrap_reply_version(NULL, &refused, &have, &err), -1);
    assert_non_null(strstr(err.msg, "+fcall_ro"));
    assert_int_equal(corral_bootstrap_reply_version(NULL, NULL, &have, &err), -1);
    assert_int_equal(err.code, CORRAL_ERR_REDIS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(an_empty_redis_gets_the_library_then_every_queue_and_service),
        cmocka_unit_test(a_current_or_newer_library_is_left_alone),
        cmocka_unit_test(a_worker_declares_its_queues_and_each_of_their_services_once),
        cmocka_unit_test(the_version_reply_tells_no_library_from_no_functions_or_no_permission),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

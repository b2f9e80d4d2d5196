/* Unit tests for queue/sentinel.c's pure parts: sentinel addresses, the
 * builders, and the parsers of get-master-addr-by-name, REPLICAS, ROLE and the
 * +switch-master event, fed with hand-made replies shaped like Redis 7's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "corral/sentinel.h"

static redisReply *str_reply(const char *s)
{
    redisReply *r = calloc(1, sizeof(*r));
    r->type = REDIS_REPLY_STRING;
    r->str = strdup(s);
    r->len = strlen(s);
    return r;
}

static redisReply *typed(int type, const char *s)
{
    redisReply *r = str_reply(s);
    r->type = type;
    return r;
}

static redisReply *int_reply(long long v)
{
    redisReply *r = calloc(1, sizeof(*r));
    r->type = REDIS_REPLY_INTEGER;
    r->integer = v;
    return r;
}

static redisReply *nil_reply(void)
{
    redisReply *r = calloc(1, sizeof(*r));
    r->type = REDIS_REPLY_NIL;
    return r;
}

/* The end of arr's list (a typed null: the arguments are variadic). */
#define END ((redisReply *)0)

/* An array of the replies given, up to END. */
static redisReply *arr(redisReply *first, ...)
{
    redisReply *r = calloc(1, sizeof(*r));
    r->type = REDIS_REPLY_ARRAY;
    r->element = calloc(8, sizeof(redisReply *));
    va_list ap;
    va_start(ap, first);
    for (redisReply *e = first; e != NULL; e = va_arg(ap, redisReply *))
        r->element[r->elements++] = e;
    va_end(ap);
    return r;
}

static void assert_argv(const struct corral_cmd *cmd, const char *const *want)
{
    int n = 0;
    while (want[n] != NULL)
        n++;
    assert_int_equal(cmd->argc, n);
    for (int i = 0; i < n; i++)
        assert_string_equal(cmd->argv[i], want[i]);
}

static void sentinel_addresses_parse_with_default_port(void **state)
{
    struct corral_hostport hp;
    struct corral_err err;
    assert_int_equal(corral_hostport_parse("10.0.0.1:26380", 26379, &hp, &err), 0);
    assert_string_equal(hp.host, "10.0.0.1");
    assert_int_equal(hp.port, 26380);
    corral_hostport_free(&hp);
    assert_int_equal(corral_hostport_parse("sentinel-a.internal", 26379, &hp, &err), 0);
    assert_string_equal(hp.host, "sentinel-a.internal");
    assert_int_equal(hp.port, 26379);
    corral_hostport_free(&hp);
    assert_int_equal(corral_hostport_parse("[fd00::1]:1", 26379, &hp, &err), 0);
    assert_string_equal(hp.host, "fd00::1");
    assert_int_equal(hp.port, 1);
    corral_hostport_free(&hp);
    assert_int_equal(corral_hostport_parse("[::1]", 26379, &hp, &err), 0);
    assert_string_equal(hp.host, "::1");
    assert_int_equal(hp.port, 26379);
    corral_hostport_free(&hp);
    assert_null(hp.host); /* free leaves it zeroed */
}

static void bad_sentinel_addresses_are_refused_with_a_reason(void **state)
{
    struct {
        const char *in, *want;
    } bad[] = {
        {"h:0", "bad port \"0\""},
        {"h:65536", "bad port \"65536\""},
        {"h:", "bad port \"\""},
        {"h:12a", "bad port \"12a\""},
        {":1", "missing host"},
        {"a b:1", "a host is 1-253"},
        {"h\n:1", "a host is 1-253"},
        {"fd00::1:26379", "an IPv6 address goes in []"},
        {"[fd00::1:26379", "expected [IPv6-address]:port"},
        {"[]:1", "expected [IPv6-address]:port"},
        {"[1.2.3.4]:1", "expected [IPv6-address]:port"},
        {"[::1]x", "expected host:port"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct corral_hostport hp;
        struct corral_err err;
        assert_int_equal(corral_hostport_parse(bad[i].in, 26379, &hp, &err), -1);
        assert_null(hp.host);
        if (strstr(err.msg, bad[i].want) == NULL)
            fail_msg("%s: got \"%s\", wanted \"%s\"", bad[i].in, err.msg, bad[i].want);
    }
}

static void builders_make_the_commands(void **state)
{
    struct corral_cmd cmd;
    corral_cmd_sentinel_master(&cmd, "corral-main");
    const char *want1[] = {"SENTINEL", "GET-MASTER-ADDR-BY-NAME", "corral-main", NULL};
    assert_argv(&cmd, want1);
    corral_cmd_free(&cmd);
    corral_cmd_role(&cmd);
    const char *want2[] = {"ROLE", NULL};
    assert_argv(&cmd, want2);
    corral_cmd_free(&cmd);
    corral_cmd_sentinel_subscribe(&cmd);
    const char *want3[] = {"SUBSCRIBE", "+switch-master", NULL};
    assert_argv(&cmd, want3);
    corral_cmd_free(&cmd);
    corral_cmd_sentinel_replicas(&cmd, "corral-main");
    const char *want4[] = {"SENTINEL", "REPLICAS", "corral-main", NULL};
    assert_argv(&cmd, want4);
    corral_cmd_free(&cmd);
}

static void master_address_reply_is_parsed(void **state)
{
    redisReply *r = arr(str_reply("10.0.0.7"), str_reply("6380"), END);
    struct corral_hostport hp;
    struct corral_err err;
    assert_int_equal(corral_reply_sentinel_master(r, "m", &hp, &err), 0);
    assert_string_equal(hp.host, "10.0.0.7");
    assert_int_equal(hp.port, 6380);
    corral_hostport_free(&hp);
    freeReplyObject(r);
}

static redisReply *replica_entry(const char *ip, const char *port)
{
    return arr(str_reply("name"), str_reply("r"), str_reply("ip"), str_reply(ip), str_reply("port"),
               str_reply(port), str_reply("flags"), str_reply("slave"), END);
}

static void replicas_reply_gives_each_replicas_address(void **state)
{
    (void)state;
    redisReply *r = arr(replica_entry("10.0.0.5", "6379"),
                        arr(str_reply("ip"), str_reply("10.0.0.6"), END), /* no port */
                        replica_entry("bad host!", "6379"), replica_entry("10.0.0.8", "99999"),
                        int_reply(1), replica_entry("10.0.0.9", "6380"), END);
    struct corral_hostport *hps;
    assert_int_equal(corral_reply_sentinel_replicas(r, &hps), 2);
    assert_string_equal(hps[0].host, "10.0.0.5");
    assert_int_equal(hps[0].port, 6379);
    assert_string_equal(hps[1].host, "10.0.0.9");
    assert_int_equal(hps[1].port, 6380);
    corral_hostport_free(&hps[0]);
    corral_hostport_free(&hps[1]);
    free(hps);
    freeReplyObject(r);

    redisReply *none[] = {arr(END), typed(REDIS_REPLY_ERROR, "ERR No such master"), nil_reply(),
                          arr(arr(str_reply("ip"), END), END)};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        assert_int_equal(corral_reply_sentinel_replicas(none[i], &hps), 0);
        assert_null(hps);
        freeReplyObject(none[i]);
    }
    assert_int_equal(corral_reply_sentinel_replicas(NULL, &hps), 0);
}

static void unknown_master_name_is_an_error_naming_it(void **state)
{
    redisReply *r = nil_reply();
    struct corral_hostport hp;
    struct corral_err err;
    assert_int_equal(corral_reply_sentinel_master(r, "corral-main", &hp, &err), -1);
    assert_int_equal(err.code, CORRAL_ERR_NOTFOUND);
    assert_string_equal(err.msg, "it monitors no master named \"corral-main\"");
    freeReplyObject(r);
}

static void malformed_master_replies_are_refused(void **state)
{
    redisReply *bad[] = {
        arr(str_reply("10.0.0.7"), END),
        arr(str_reply("10.0.0.7"), str_reply("0"), END),
        arr(str_reply("10.0.0.7"), str_reply("70000"), END),
        arr(str_reply("10.0.0.7"), str_reply("63x"), END),
        arr(str_reply(""), str_reply("6379"), END),
        /* a host that would go into the TLS proxy's config file */
        arr(str_reply("1.2.3.4\nexec = /bin/sh"), str_reply("6379"), END),
        arr(str_reply("-oops"), str_reply("6379"), END),
        arr(int_reply(1), str_reply("6379"), END),
        str_reply("10.0.0.7:6379"),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct corral_hostport hp;
        struct corral_err err;
        assert_int_equal(corral_reply_sentinel_master(bad[i], "m", &hp, &err), -1);
        assert_null(hp.host);
        assert_non_null(strstr(err.msg, "is not [host, port]"));
        freeReplyObject(bad[i]);
    }
    struct corral_hostport hp;
    struct corral_err err;
    redisReply *e = typed(REDIS_REPLY_ERROR, "NOAUTH Authentication required.");
    assert_int_equal(corral_reply_sentinel_master(e, "m", &hp, &err), -1);
    assert_string_equal(err.msg,
                        "SENTINEL GET-MASTER-ADDR-BY-NAME: NOAUTH Authentication required.");
    freeReplyObject(e);
    assert_int_equal(corral_reply_sentinel_master(NULL, "m", &hp, &err), -1);
    assert_string_equal(err.msg, "SENTINEL GET-MASTER-ADDR-BY-NAME: connection lost");
}

static void role_replies_are_parsed(void **state)
{
    enum corral_role role;
    struct corral_hostport up;
    struct corral_err err;
    redisReply *m = arr(
        str_reply("master"), int_reply(3129659),
        arr(arr(str_reply("127.0.0.1"), str_reply("9001"), str_reply("3129242"), END), END), END);
    assert_int_equal(corral_reply_role(m, &role, &up, &err), 0);
    assert_int_equal(role, CORRAL_ROLE_MASTER);
    assert_null(up.host);
    freeReplyObject(m);
    redisReply *s = arr(str_reply("slave"), str_reply("10.0.0.1"), int_reply(6379),
                        str_reply("connected"), int_reply(3167038), END);
    assert_int_equal(corral_reply_role(s, &role, &up, &err), 0);
    assert_int_equal(role, CORRAL_ROLE_REPLICA);
    assert_string_equal(up.host, "10.0.0.1");
    assert_int_equal(up.port, 6379);
    corral_hostport_free(&up);
    freeReplyObject(s);
    redisReply *t = arr(str_reply("sentinel"), arr(str_reply("corral-main"), END), END);
    assert_int_equal(corral_reply_role(t, &role, NULL, &err), 0);
    assert_int_equal(role, CORRAL_ROLE_SENTINEL);
    freeReplyObject(t);
}

static void bad_role_replies_are_refused(void **state)
{
    enum corral_role role;
    struct corral_err err;
    redisReply *e =
        typed(REDIS_REPLY_ERROR, "NOPERM User corral has no permissions to run the 'role' command");
    assert_int_equal(corral_reply_role(e, &role, NULL, &err), -1);
    assert_string_equal(err.msg,
                        "ROLE: NOPERM User corral has no permissions to run the 'role' command");
    freeReplyObject(e);
    redisReply *odd = arr(str_reply("primary"), END);
    assert_int_equal(corral_reply_role(odd, &role, NULL, &err), -1);
    assert_string_equal(err.msg, "ROLE: unknown role \"primary\"");
    freeReplyObject(odd);
    redisReply *empty = arr(END);
    assert_int_equal(corral_reply_role(empty, &role, NULL, &err), -1);
    assert_string_equal(err.msg, "ROLE: the reply is not [role, ...]");
    freeReplyObject(empty);
}

static void switch_master_payload_is_parsed(void **state)
{
    const char *p = "corral-main 127.0.0.1 6379 10.0.0.2 6380";
    struct corral_switch sw;
    struct corral_err err;
    assert_int_equal(corral_sentinel_parse_switch(p, strlen(p), &sw, &err), 0);
    assert_string_equal(sw.name, "corral-main");
    assert_string_equal(sw.from.host, "127.0.0.1");
    assert_int_equal(sw.from.port, 6379);
    assert_string_equal(sw.to.host, "10.0.0.2");
    assert_int_equal(sw.to.port, 6380);
    corral_switch_free(&sw);
    assert_null(sw.name);
}

static void malformed_switch_payloads_are_refused(void **state)
{
    const char *bad[] = {
        "",
        "m 1.1.1.1 6379 2.2.2.2",
        "m 1.1.1.1 6379 2.2.2.2 6380 extra",
        "m 1.1.1.1 6379 2.2.2.2 0",
        "m 1.1.1.1 x 2.2.2.2 6380",
        "m  1.1.1.1 6379 2.2.2.2 6380",
        "m 1.1.1.1 6379 2.2.2.2 6380 ",
        "m 1.1.1.1 6379 2.2.2.2;x 6380",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct corral_switch sw;
        struct corral_err err;
        assert_int_equal(corral_sentinel_parse_switch(bad[i], strlen(bad[i]), &sw, &err), -1);
        assert_null(sw.name);
        assert_non_null(strstr(err.msg, "+switch-master: expected"));
    }
    /* an embedded NUL is not text */
    struct corral_switch sw;
    struct corral_err err;
    assert_int_equal(corral_sentinel_parse_switch("m 1.1.1.1 6379 2.2.2.2 6380\0", 28, &sw, &err),
                     -1);
}

static void switch_events_are_told_from_other_frames(void **state)
{
    struct corral_switch sw;
    struct corral_err err;
    redisReply *sub = arr(str_reply("subscribe"), str_reply("+switch-master"), int_reply(1), END);
    assert_int_equal(corral_reply_sentinel_event(sub, "m", &sw, &err), 0);
    freeReplyObject(sub);
    redisReply *other = arr(str_reply("message"), str_reply("+switch-master"),
                            str_reply("other 1.1.1.1 1 2.2.2.2 2"), END);
    assert_int_equal(corral_reply_sentinel_event(other, "m", &sw, &err), 0);
    assert_null(sw.name);
    freeReplyObject(other);
    redisReply *mine = arr(str_reply("message"), str_reply("+switch-master"),
                           str_reply("m 1.1.1.1 1 2.2.2.2 2"), END);
    assert_int_equal(corral_reply_sentinel_event(mine, "m", &sw, &err), 1);
    assert_string_equal(sw.to.host, "2.2.2.2");
    assert_int_equal(sw.to.port, 2);
    corral_switch_free(&sw);
    freeReplyObject(mine);
    redisReply *junk =
        arr(str_reply("message"), str_reply("+switch-master"), str_reply("m 1.1.1.1"), END);
    assert_int_equal(corral_reply_sentinel_event(junk, "m", &sw, &err), -1);
    freeReplyObject(junk);
    redisReply *notarr = str_reply("message");
    assert_int_equal(corral_reply_sentinel_event(notarr, "m", &sw, &err), -1);
    freeReplyObject(notarr);
    redisReply *e = typed(REDIS_REPLY_ERROR, "NOAUTH Authentication required.");
    assert_int_equal(corral_reply_sentinel_event(e, "m", &sw, &err), -1);
    assert_string_equal(err.msg, "SUBSCRIBE +switch-master: NOAUTH Authentication required.");
    freeReplyObject(e);
}

static void sentinel_connect_without_sentinels_says_what_is_missing(void **state)
{
    struct corral_redis_conf conf = {.url = "redis://h/0"};
    struct corral_err err;
    assert_null(corral_sentinel_connect(&conf, NULL, 100, NULL, &err));
    assert_string_equal(err.msg,
                        "[redis] sentinels and sentinel_master are needed to ask Sentinel");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sentinel_addresses_parse_with_default_port),
        cmocka_unit_test(bad_sentinel_addresses_are_refused_with_a_reason),
        cmocka_unit_test(builders_make_the_commands),
        cmocka_unit_test(master_address_reply_is_parsed),
        cmocka_unit_test(replicas_reply_gives_each_replicas_address),
        cmocka_unit_test(unknown_master_name_is_an_error_naming_it),
        cmocka_unit_test(malformed_master_replies_are_refused),
        cmocka_unit_test(role_replies_are_parsed),
        cmocka_unit_test(bad_role_replies_are_refused),
        cmocka_unit_test(switch_master_payload_is_parsed),
        cmocka_unit_test(malformed_switch_payloads_are_refused),
        cmocka_unit_test(switch_events_are_told_from_other_frames),
        cmocka_unit_test(sentinel_connect_without_sentinels_says_what_is_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

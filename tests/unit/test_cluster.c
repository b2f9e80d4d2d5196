/* Unit tests for queue/cluster.c's pure parts: key slots (the Cluster
 * specification's examples), the slot map read from CLUSTER SLOTS replies
 * shaped like Redis 7's, and MOVED / ASK redirections. The router itself is
 * tested against a real cluster (tests/integration/test_cluster_routing.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "corral/cluster.h"

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
#define RESP(s) resp(s, sizeof(s) - 1)

static unsigned slot_of(const char *key)
{
    return corral_cluster_keyslot(key, strlen(key));
}

static void key_slots_follow_the_specification(void **state)
{
    /* CRC16/XMODEM's check value: "123456789" -> 0x31C3. */
    assert_int_equal(slot_of("123456789"), 0x31C3 & 16383);
    /* Hash tags: the part between the first { and the next }, when not empty. */
    assert_int_equal(slot_of("{user1000}.following"), slot_of("user1000"));
    assert_int_equal(slot_of("{user1000}.followers"), slot_of("user1000"));
    assert_int_equal(slot_of("foo{}{bar}"), corral_cluster_keyslot("foo{}{bar}", 10));
    assert_int_not_equal(slot_of("foo{}{bar}"), slot_of("bar"));
    assert_int_equal(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));
    /* corral's queue keys: every key of a queue in its name's slot. */
    assert_int_equal(slot_of("corral:{prompts}:high"), slot_of("prompts"));
    assert_int_equal(slot_of("myapp:{prompts}"), slot_of("prompts"));
    /* A key with a NUL is hashed on all its bytes. */
    assert_int_not_equal(corral_cluster_keyslot("a\0b", 3), corral_cluster_keyslot("a", 1));
}

static void slot_map_reads_primaries_and_skips_replicas(void **state)
{
    redisReply *r = RESP("*2\r\n"
                         "*4\r\n:0\r\n:8191\r\n"
                         "*4\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n*0\r\n"
                         "*4\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nir\r\n*0\r\n"
                         "*3\r\n:8192\r\n:16383\r\n"
                         "*3\r\n$0\r\n\r\n:7001\r\n$2\r\nid\r\n");
    struct corral_cluster_map map;
    struct corral_err err;
    assert_int_equal(corral_cluster_map_parse(r, "seed.example", &map, &err), 0);
    assert_int_equal(map.n_nodes, 2);
    const struct corral_cluster_node *a = corral_cluster_owner(&map, 0);
    const struct corral_cluster_node *b = corral_cluster_owner(&map, 16383);
    assert_string_equal(a->host, "127.0.0.1");
    assert_int_equal(a->port, 7000);
    assert_ptr_equal(corral_cluster_owner(&map, 8191), a);
    /* An empty address is the node that was asked. */
    assert_string_equal(b->host, "seed.example");
    assert_int_equal(b->port, 7001);
    assert_null(corral_cluster_owner(&map, 16384));
    corral_cluster_map_free(&map);
    freeReplyObject(r);
}

static void slot_map_leaves_unserved_slots_unowned(void **state)
{
    redisReply *r = RESP("*1\r\n*3\r\n:100\r\n:200\r\n*2\r\n$1\r\nh\r\n:1\r\n");
    struct corral_cluster_map map;
    struct corral_err err;
    assert_int_equal(corral_cluster_map_parse(r, NULL, &map, &err), 0);
    assert_null(corral_cluster_owner(&map, 99));
    assert_non_null(corral_cluster_owner(&map, 100));
    assert_non_null(corral_cluster_owner(&map, 200));
    assert_null(corral_cluster_owner(&map, 201));
    corral_cluster_map_free(&map);
    freeReplyObject(r);
}

static void slot_map_refuses_malformed_ranges(void **state)
{
#define ROW(s)                                                                                     \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }
    static const struct {
        const char *text;
        size_t len;
    } bad[] = {
        ROW("+OK\r\n"),                                             /* not an array */
        ROW("*0\r\n"),                                              /* serves nothing */
        ROW("*1\r\n*3\r\n:5\r\n:4\r\n*2\r\n$1\r\nh\r\n:1\r\n"),     /* reversed */
        ROW("*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n"), /* past the end */
        ROW("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:0\r\n"),     /* port 0 */
        ROW("*1\r\n*3\r\n:0\r\n:1\r\n*1\r\n$1\r\nh\r\n"),           /* no port */
        ROW("*1\r\n*2\r\n:0\r\n:1\r\n"),                            /* no node */
        ROW("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$0\r\n\r\n:1\r\n"),      /* no address, none asked */
        ROW("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$3\r\na\0b\r\n:1\r\n"),  /* a NUL in the host */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply *r = resp(bad[i].text, bad[i].len);
        struct corral_cluster_map map;
        struct corral_err err = {0};
        assert_int_equal(corral_cluster_map_parse(r, NULL, &map, &err), -1);
        assert_non_null(strstr(err.msg, "CLUSTER SLOTS"));
        corral_cluster_map_free(&map);
        freeReplyObject(r);
    }
}

static void redirections_are_read(void **state)
{
    struct corral_cluster_redirect rd;
    struct corral_err err;
    redisReply *r = RESP("-MOVED 3999 127.0.0.1:6381\r\n");
    assert_int_equal(corral_cluster_redirect_parse(r, &rd, &err), 1);
    assert_int_equal(rd.ask, 0);
    assert_int_equal(rd.slot, 3999);
    assert_string_equal(rd.host, "127.0.0.1");
    assert_int_equal(rd.port, 6381);
    freeReplyObject(r);

    r = RESP("-ASK 16383 ::1:7002\r\n");
    assert_int_equal(corral_cluster_redirect_parse(r, &rd, &err), 1);
    assert_int_equal(rd.ask, 1);
    assert_int_equal(rd.slot, 16383);
    assert_string_equal(rd.host, "::1");
    assert_int_equal(rd.port, 7002);
    freeReplyObject(r);

    /* Redis 7 with an unknown endpoint: the host is empty. */
    r = RESP("-MOVED 1 :7000\r\n");
    assert_int_equal(corral_cluster_redirect_parse(r, &rd, &err), 1);
    assert_string_equal(rd.host, "");
    freeReplyObject(r);

    /* Other replies are not redirections. */
    r = RESP("-ERR MOVED elsewhere\r\n");
    assert_int_equal(corral_cluster_redirect_parse(r, &rd, &err), 0);
    freeReplyObject(r);
    r = RESP("+MOVED 1 h:1\r\n");
    assert_int_equal(corral_cluster_redirect_parse(r, &rd, &err), 0);
    freeReplyObject(r);
}

static void malformed_redirections_are_errors(void **state)
{
    static const char *const bad[] = {
        "-MOVED \r\n",       "-MOVED 16384 h:1\r\n", "-MOVED 1 h\r\n",
        "-MOVED 1 h:0\r\n",  "-MOVED 1 h:70000\r\n", "-ASK x h:1\r\n",
        "-MOVED 1 h:1x\r\n", "-MOVED 1 a b:1\r\n",   "-MOVED 1h:1\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply *r = resp(bad[i], strlen(bad[i]));
        struct corral_cluster_redirect rd;
        struct corral_err err = {0};
        assert_int_equal(corral_cluster_redirect_parse(r, &rd, &err), -1);
        assert_non_null(strstr(err.msg, "redirection"));
        freeReplyObject(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_slots_follow_the_specification),
        cmocka_unit_test(slot_map_reads_primaries_and_skips_replicas),
        cmocka_unit_test(slot_map_leaves_unserved_slots_unowned),
        cmocka_unit_test(slot_map_refuses_malformed_ranges),
        cmocka_unit_test(redirections_are_read),
        cmocka_unit_test(malformed_redirections_are_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

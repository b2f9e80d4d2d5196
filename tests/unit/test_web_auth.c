/* Unit tests for corral-web's checks on who may act (web/auth.c) and its
 * listen address (web/listen.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"
#include "listen.h"

static void the_token_must_match_whole(void **state)
{
    const char *s = "0123456789abcdef0123";
    size_t n = strlen(s);
    assert_true(web_token_equal(s, n, s, n));
    assert_false(web_token_equal("0123456789abcdef012", n - 1, s, n));   /* a prefix */
    assert_false(web_token_equal("0123456789abcdef01234", n + 1, s, n)); /* one more */
    assert_false(web_token_equal("0123456789abcdef0124", n, s, n));
    assert_false(web_token_equal("", 0, s, n));
    assert_false(web_token_equal("", 0, "", 0)); /* no secret never matches */
    /* A NUL inside what was given does not end the comparison early. */
    assert_false(web_token_equal("0123456789abcdef0123\0x", n + 2, s, n));
}

static void the_bearer_scheme_is_read_without_regard_to_case(void **state)
{
    assert_string_equal(web_bearer("Bearer abc"), "abc");
    assert_string_equal(web_bearer("bearer   abc"), "abc");
    assert_string_equal(web_bearer("BEARER\tabc"), "abc");
    assert_null(web_bearer("Bearerabc"));
    assert_null(web_bearer("Basic YWJj"));
    assert_null(web_bearer("Bearer "));
    assert_null(web_bearer(NULL));
}

static void cross_site_requests_are_told_apart(void **state)
{
    const char *host = "127.0.0.1:8470";
    assert_true(web_origin_ok(host, NULL, NULL, NULL)); /* curl, scripts: the token decides */
    assert_true(web_origin_ok(host, NULL, "http://127.0.0.1:8470", "same-origin"));
    assert_true(web_origin_ok(host, NULL, "https://127.0.0.1:8470", NULL));
    assert_true(web_origin_ok(host, NULL, NULL, "none")); /* typed into the address bar */
    /* Behind a proxy the browser's origin is the proxy's: Sec-Fetch-Site
     * says same-origin, or the proxy names it in X-Forwarded-Host. */
    assert_true(web_origin_ok(host, NULL, "https://corral.example", "same-origin"));
    assert_true(web_origin_ok(host, "corral.example", "https://corral.example", NULL));
    assert_false(web_origin_ok(host, NULL, "http://evil.example", NULL));
    assert_false(web_origin_ok(host, "corral.example", "http://evil.example", NULL));
    assert_false(web_origin_ok(host, NULL, "http://127.0.0.1:8471", NULL));
    assert_false(web_origin_ok(host, NULL, "http://127.0.0.1:8470.evil.example", NULL));
    assert_false(web_origin_ok(host, NULL, "null", NULL));
    assert_false(web_origin_ok(host, NULL, NULL, "cross-site"));
    assert_false(web_origin_ok(host, NULL, NULL, "same-site"));
    assert_false(web_origin_ok(host, NULL, "http://127.0.0.1:8470", "cross-site"));
    assert_false(web_origin_ok(NULL, NULL, "http://127.0.0.1:8470", NULL));
}

static void only_loopback_names_pass_the_host_check(void **state)
{
    static const char *const ok[] = {"localhost", "localhost:8470", "LOCALHOST:1",
                                     "127.0.0.1", "127.0.0.1:8470", "127.1.2.3:80",
                                     "[::1]",     "[::1]:8470"};
    static const char *const bad[] = {NULL,
                                      "",
                                      "evil.example",
                                      "evil.example:8470",
                                      "127.0.0.1.evil.example",
                                      "127.0.0.256",
                                      "128.0.0.1",
                                      "[::2]:80",
                                      "[::1]x",
                                      "localhost:",
                                      "localhost:8x",
                                      "127.0.0.1:80:80",
                                      "0x7f.0.0.1",
                                      "[::1]:"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_true(web_host_is_loopback(ok[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(web_host_is_loopback(bad[i]));
}

static void form_values_are_decoded(void **state)
{
    char out[32];
    const char *body = "a=1&token=ab%2Bc+d%25&z=";
    assert_int_equal(web_form_value(body, strlen(body), "token", out, sizeof(out)), 7);
    assert_string_equal(out, "ab+c d%");
    assert_int_equal(web_form_value(body, strlen(body), "z", out, sizeof(out)), 0);
    assert_int_equal(web_form_value(body, strlen(body), "tok", out, sizeof(out)), -1);
    assert_int_equal(web_form_value("token=%4", 8, "token", out, sizeof(out)), -1);
    assert_int_equal(web_form_value("token=%zz", 9, "token", out, sizeof(out)), -1);
    assert_int_equal(web_form_value("token=abcdef", 12, "token", out, 4), -1); /* too long */
}

static void sessions_live_until_they_expire_or_are_dropped(void **state)
{
    struct web_sessions *s = web_sessions_new();
    char a[WEB_SESSION_ID_LEN + 1], b[WEB_SESSION_ID_LEN + 1];
    assert_int_equal(web_sessions_create(s, 1000, a), 0);
    assert_int_equal(web_sessions_create(s, 1000, b), 0);
    assert_int_equal(strlen(a), WEB_SESSION_ID_LEN);
    assert_string_not_equal(a, b);
    assert_true(web_sessions_check(s, a, 2000));
    assert_false(web_sessions_check(s, a, 1000 + WEB_SESSION_TTL_MS));
    char wrong[WEB_SESSION_ID_LEN + 1];
    memcpy(wrong, a, sizeof(wrong));
    wrong[5] = wrong[5] == '0' ? '1' : '0';
    assert_false(web_sessions_check(s, wrong, 2000));
    assert_false(web_sessions_check(s, "", 2000));
    assert_false(web_sessions_check(s, NULL, 2000));
    web_sessions_drop(s, a);
    assert_false(web_sessions_check(s, a, 2000));
    assert_true(web_sessions_check(s, b, 2000));
    web_sessions_free(s);
}

static void a_full_table_forgets_the_session_that_expires_first(void **state)
{
    struct web_sessions *s = web_sessions_new();
    char first[WEB_SESSION_ID_LEN + 1], id[WEB_SESSION_ID_LEN + 1];
    web_sessions_create(s, 1, first);
    for (int i = 0; i < WEB_SESSIONS_MAX; i++)
        web_sessions_create(s, 2 + i, id);
    assert_false(web_sessions_check(s, first, 100));
    assert_true(web_sessions_check(s, id, 100));
    web_sessions_free(s);
}

static void listen_addresses_are_numeric(void **state)
{
    struct web_listen l;
    struct corral_err err;
    assert_int_equal(web_listen_parse("127.0.0.1:8470", &l, &err), 0);
    assert_true(l.loopback);
    assert_int_equal(web_listen_parse("localhost:1", &l, &err), 0);
    assert_true(l.loopback);
    assert_int_equal(web_listen_parse("[::1]:8470", &l, &err), 0);
    assert_true(l.loopback);
    assert_int_equal(web_listen_parse("0.0.0.0:80", &l, &err), 0);
    assert_false(l.loopback);
    assert_int_equal(web_listen_parse("[::]:80", &l, &err), 0);
    assert_false(l.loopback);
    static const char *const bad[] = {
        "8470",     ":8470",   "127.0.0.1", "127.0.0.1:0",  "127.0.0.1:65536", "host:80",
        "127.1:80", "[::1:80", "::1:80",    "127.0.0.1:8x", "[zz]:80",         ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(web_listen_parse(bad[i], &l, &err), -1);
        assert_non_null(strstr(err.msg, "ADDR:PORT"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_token_must_match_whole),
        cmocka_unit_test(the_bearer_scheme_is_read_without_regard_to_case),
        cmocka_unit_test(cross_site_requests_are_told_apart),
        cmocka_unit_test(only_loopback_names_pass_the_host_check),
        cmocka_unit_test(form_values_are_decoded),
        cmocka_unit_test(sessions_live_until_they_expire_or_are_dropped),
        cmocka_unit_test(a_full_table_forgets_the_session_that_expires_first),
        cmocka_unit_test(listen_addresses_are_numeric),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

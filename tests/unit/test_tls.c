/* Unit tests for common/tls.c's pure parts: rediss urls, the routes' socket
 * names, stunnel's configuration, and the reading of stunnel's log. The log
 * lines are those stunnel 5.68 (OpenSSL 3.0) wrote in runs against the test
 * redis-server of tests/integration/hafixtures.py, except three in the same
 * form with reasons those runs did not provoke ("not yet valid", "wrong
 * version number", "unsupported certificate purpose"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "corral/tls.h"

static void rediss_urls_are_told_and_read_as_redis(void **state)
{
    assert_true(corral_tls_url("rediss://h:6380/1"));
    assert_false(corral_tls_url("redis://h"));
    assert_false(corral_tls_url("unix:///r.sock"));
    assert_false(corral_tls_url(NULL));
    char *p = corral_tls_url_plain("rediss://corral@h:6380/1");
    assert_string_equal(p, "redis://corral@h:6380/1");
    free(p);
    p = corral_tls_url_plain("unix:///r.sock");
    assert_string_equal(p, "unix:///r.sock");
    free(p);

    struct corral_redis_addr a;
    struct corral_err err;
    int tls = -1;
    assert_int_equal(corral_tls_parse_url("rediss://corral@h:6380/2", &a, &tls, 0, &err), 0);
    assert_int_equal(tls, 1);
    assert_string_equal(a.host, "h");
    assert_int_equal(a.port, 6380);
    assert_int_equal(a.db, 2);
    assert_string_equal(a.user, "corral");
    corral_redis_addr_free(&a);
    assert_int_equal(corral_tls_parse_url("redis://h", &a, &tls, 0, &err), 0);
    assert_int_equal(tls, 0);
    corral_redis_addr_free(&a);
    /* errors name the url as written */
    assert_int_equal(corral_tls_parse_url("rediss://h:99999", &a, &tls, 0, &err), -1);
    assert_string_equal(err.msg, "redis url \"rediss://h:99999\": bad port");
    /* with sentinels the url may leave the host out */
    assert_int_equal(corral_tls_parse_url("rediss://corral@/4", &a, &tls, 1, &err), 0);
    assert_null(a.host);
    assert_string_equal(a.user, "corral");
    assert_int_equal(a.db, 4);
    assert_int_equal(tls, 1);
    corral_redis_addr_free(&a);
    assert_int_equal(corral_tls_parse_url("redis:///1", &a, &tls, 1, &err), 0);
    assert_null(a.host);
    assert_int_equal(a.db, 1);
    assert_int_equal(tls, 0);
    corral_redis_addr_free(&a);
    assert_int_equal(corral_tls_parse_url("redis:///1", &a, &tls, 0, &err), -1);
    assert_string_equal(err.msg, "redis url \"redis:///1\": missing host");
    assert_int_equal(corral_tls_parse_url("rediss:///x", &a, &tls, 1, &err), -1);
    assert_string_equal(err.msg, "redis url \"rediss:///x\": bad db number \"x\"");
}

static void local_paths_name_the_route_and_fit_a_socket_address(void **state)
{
    char *p = corral_tls_local_path("/run/corral/tls", "10.0.0.1", 6380);
    assert_string_equal(p, "/run/corral/tls/10.0.0.1_6380.sock");
    free(p);
    char host[254];
    memset(host, 'a', 253);
    host[253] = '\0';
    p = corral_tls_local_path("/run/corral/tls", host, 6379);
    assert_true(strlen(p) < 108);
    assert_non_null(strstr(p, "/run/corral/tls/h"));
    char *q = corral_tls_local_path("/run/corral/tls", host, 6379);
    assert_string_equal(p, q); /* the same route, the same name, in every process */
    free(q);
    host[0] = 'b';
    q = corral_tls_local_path("/run/corral/tls", host, 6379);
    assert_string_not_equal(p, q);
    free(q);
    free(p);
}

static void local_address_follows_the_url(void **state)
{
    struct corral_redis_conf conf = {.url = "rediss://corral@redis.example.com/2"};
    struct corral_err err;
    char *path;
    assert_int_equal(corral_tls_local_address(&conf, "/run/corral/tls", &path, &err), 0);
    assert_string_equal(path, "/run/corral/tls/redis.example.com_6379.sock");
    free(path);
    conf.url = "redis://h:6380/0";
    assert_int_equal(corral_tls_local_address(&conf, "/run/corral/tls", &path, &err), 0);
    assert_null(path); /* plain: connect as the url says */
    char *one[] = {"s:26379"};
    conf.url = "rediss:///0";
    conf.sentinels.items = one;
    conf.sentinels.n = 1;
    assert_int_equal(corral_tls_local_address(&conf, "/run/corral/tls", &path, &err), 0);
    assert_null(path); /* with sentinels the routes follow discovery */
    conf.sentinels.n = 0;
    assert_int_equal(corral_tls_local_address(&conf, "/run/corral/tls", &path, &err), -1);
    assert_string_equal(err.msg, "redis url \"rediss:///0\": missing host");
}

static void default_dir_follows_the_environment(void **state)
{
    unsetenv("CORRAL_TLS_DIR");
    unsetenv("RUNTIME_DIRECTORY");
    char *d = corral_tls_default_dir();
    assert_string_equal(d, "/run/corral/tls");
    free(d);
    setenv("RUNTIME_DIRECTORY", "/run/corral-a:/run/other", 1);
    d = corral_tls_default_dir();
    assert_string_equal(d, "/run/corral-a/tls");
    free(d);
    setenv("CORRAL_TLS_DIR", "/tmp/x", 1);
    d = corral_tls_default_dir();
    assert_string_equal(d, "/tmp/x");
    free(d);
    unsetenv("CORRAL_TLS_DIR");
    unsetenv("RUNTIME_DIRECTORY");
}

static void stunnel_conf_verifies_by_name_or_address(void **state)
{
    struct corral_redis_conf conf = {.url = "rediss://h",
                                     .tls_ca_file = "/etc/corral/ca.crt",
                                     .tls_cert_file = "/etc/corral/c.crt",
                                     .tls_key_file = "/etc/corral/c.key"};
    struct corral_hostport routes[] = {{"redis.internal", 6380}, {"10.0.0.2", 6379}};
    char *text = corral_tls_stunnel_conf(&conf, "/run/t", routes, 2, 6);
    const char *want[] = {
        "foreground = yes\n",
        "debug = 6\n",
        "[redis.internal_6380]\nclient = yes\naccept = /run/t/redis.internal_6380.sock\n"
        "connect = redis.internal:6380\ndelay = yes\nsslVersionMin = TLSv1.2\n"
        "verifyChain = yes\nCAfile = /etc/corral/ca.crt\ncheckHost = redis.internal\n"
        "sni = redis.internal\ncert = /etc/corral/c.crt\nkey = /etc/corral/c.key\n",
        "[10.0.0.2_6379]\nclient = yes\naccept = /run/t/10.0.0.2_6379.sock\n"
        "connect = 10.0.0.2:6379\n",
        "checkIP = 10.0.0.2\nsni =\n",
        NULL,
    };
    for (const char **w = want; *w; w++)
        if (strstr(text, *w) == NULL)
            fail_msg("missing:\n%s\nin:\n%s", *w, text);
    free(text);
    /* tls_server_name names the certificate for every route; no
     * tls_ca_file means the system's CAs, never no verification */
    struct corral_redis_conf named = {.url = "rediss://h", .tls_server_name = "redis.example"};
    text = corral_tls_stunnel_conf(&named, "/run/t", routes + 1, 1, 5);
    assert_non_null(strstr(text, "checkHost = redis.example\nsni = redis.example\n"));
    assert_non_null(
        strstr(text, "verifyChain = yes\nCAfile = /etc/ssl/certs/ca-certificates.crt\n"));
    assert_null(strstr(text, "checkIP"));
    assert_null(strstr(text, "cert ="));
    free(text);
}

static void log_lines_are_split_into_level_connection_and_text(void **state)
{
    struct corral_tls_logline l;
    assert_int_equal(corral_tls_log_parse("2026.12.06 14:37:28 LOG4[12]: CERT: Subject checks "
                                          "failed",
                                          &l),
                     0);
    assert_int_equal(l.level, 4);
    assert_int_equal(l.conn, 12);
    assert_string_equal(l.text, "CERT: Subject checks failed");
    assert_int_equal(
        corral_tls_log_parse("2026.12.06 14:37:28 LOG5[ui]: Configuration successful", &l), 0);
    assert_int_equal(l.conn, -1);
    assert_int_equal(l.level, 5);
    assert_int_equal(corral_tls_log_parse("[!] Configuration failed", &l), 0);
    assert_int_equal(l.level, 3);
    assert_int_equal(l.conn, -1);
    assert_string_equal(l.text, "Configuration failed");
    assert_int_equal(corral_tls_log_parse("[.] Reading configuration from file /x", &l), 0);
    assert_int_equal(l.level, 5);
    assert_int_equal(corral_tls_log_parse("", &l), -1);
    assert_int_equal(corral_tls_log_parse("hello", &l), -1);
    assert_int_equal(corral_tls_log_parse("2026.12.06 14:37:28 LOG9[1]: x", &l), -1);
    assert_int_equal(corral_tls_log_parse("2026.12.06 14:37:28 LOG5[1: x", &l), -1);
}

struct case_ {
    const char *text;
    enum corral_tls_fault fault;
    const char *detail;
};

static void each_refusal_is_told_apart(void **state)
{
    const struct case_ cases[] = {
        {"CERT: Pre-verification error: unable to get local issuer certificate",
         CORRAL_TLS_FAULT_UNTRUSTED, "unable to get local issuer certificate"},
        {"CERT: Pre-verification error: self-signed certificate in certificate chain",
         CORRAL_TLS_FAULT_UNTRUSTED, "self-signed certificate in certificate chain"},
        {"CERT: Pre-verification error: certificate has expired", CORRAL_TLS_FAULT_EXPIRED,
         "certificate has expired"},
        {"CERT: Pre-verification error: certificate is not yet valid", CORRAL_TLS_FAULT_EXPIRED,
         "certificate is not yet valid"},
        {"CERT: Subject checks failed", CORRAL_TLS_FAULT_NAME, "CERT: Subject checks failed"},
        {"SSL_read: ../ssl/record/rec_layer_s3.c:1601: error:0A00045C:SSL routines::tlsv13 alert "
         "certificate required",
         CORRAL_TLS_FAULT_CLIENT_CERT, "tlsv13 alert certificate required"},
        {"SSL_read: ../ssl/record/rec_layer_s3.c:1601: error:0A000418:SSL routines::tlsv1 alert "
         "unknown ca",
         CORRAL_TLS_FAULT_CLIENT_CERT, "tlsv1 alert unknown ca"},
        {"ssl_start: s_poll_wait: TIMEOUTbusy exceeded: sending reset", CORRAL_TLS_FAULT_NOT_TLS,
         "no answer to the TLS handshake in 10 s"},
        {"SSL_connect: ../ssl/record/ssl3_record.c:354: error:0A00010B:SSL routines::wrong "
         "version number",
         CORRAL_TLS_FAULT_NOT_TLS, "wrong version number"},
        {"s_connect: connect 127.0.0.1:1: Connection refused (111)", CORRAL_TLS_FAULT_CONNECT,
         "Connection refused (111)"},
        {"Error resolving \"no-such-host.invalid\": Neither nodename nor servname known "
         "(EAI_NONAME)",
         CORRAL_TLS_FAULT_CONNECT,
         "Error resolving \"no-such-host.invalid\": Neither nodename nor servname known "
         "(EAI_NONAME)"},
        {"SSL_CTX_use_certificate_chain_file: ../crypto/bio/bss_file.c:297: "
         "error:80000002:system library::No such file or directory",
         CORRAL_TLS_FAULT_SETUP, "No such file or directory"},
        {"SSL_connect: ../ssl/statem/statem_clnt.c:1889: error:0A000086:SSL "
         "routines::certificate verify failed",
         CORRAL_TLS_FAULT_HANDSHAKE, "certificate verify failed"},
        {"CERT: Pre-verification error: unsupported certificate purpose",
         CORRAL_TLS_FAULT_HANDSHAKE, "unsupported certificate purpose"},
        /* lines that say nothing of a fault */
        {"s_connect: connected 127.0.0.1:50389", CORRAL_TLS_FAULT_NONE, ""},
        {"Rejected by CERT at depth=0: CN=localhost", CORRAL_TLS_FAULT_NONE, ""},
        {"Connection closed: 6 byte(s) sent to TLS, 7 byte(s) sent to socket",
         CORRAL_TLS_FAULT_NONE, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char detail[256];
        unsigned flags = 99;
        enum corral_tls_fault f =
            corral_tls_classify(cases[i].text, &flags, detail, sizeof(detail));
        if (f != cases[i].fault || strcmp(detail, cases[i].detail) != 0)
            fail_msg("%s\n  got %s \"%s\", wanted %s \"%s\"", cases[i].text,
                     corral_tls_fault_name(f), detail, corral_tls_fault_name(cases[i].fault),
                     cases[i].detail);
        assert_int_equal(flags, 0);
    }
}

static void handshake_success_and_weak_faults_are_flagged(void **state)
{
    unsigned flags;
    char detail[64];
    assert_int_equal(corral_tls_classify("TLS connected: new session negotiated", &flags, detail,
                                         sizeof(detail)),
                     CORRAL_TLS_FAULT_NONE);
    assert_int_equal(flags, CORRAL_TLS_LINE_OK);
    assert_int_equal(corral_tls_classify("TLS socket closed (SSL_write) with 6 unsent byte(s)",
                                         &flags, detail, sizeof(detail)),
                     CORRAL_TLS_FAULT_CLIENT_CERT);
    assert_int_equal(flags, CORRAL_TLS_LINE_WEAK);
    /* detail is cut to fit, never overrun */
    char small[8];
    corral_tls_classify("CERT: Pre-verification error: certificate has expired", NULL, small,
                        sizeof(small));
    assert_string_equal(small, "certifi");
}

static void fault_sentences_name_the_key_to_fix(void **state)
{
    struct corral_redis_conf conf = {.url = "rediss://h", .tls_ca_file = "/etc/corral/ca.crt"};
    struct corral_err err;
    struct {
        enum corral_tls_fault f;
        const char *detail, *want;
    } cases[] = {
        {CORRAL_TLS_FAULT_UNTRUSTED, "unable to get local issuer certificate",
         "TLS to h:6380 refused: the server's certificate is not signed by a CA in [redis] "
         "tls_ca_file = /etc/corral/ca.crt: unable to get local issuer certificate"},
        {CORRAL_TLS_FAULT_EXPIRED, "certificate has expired",
         "TLS to h:6380 refused: the server's certificate is out of date: certificate has "
         "expired (check the server's certificate and this host's clock)"},
        {CORRAL_TLS_FAULT_NAME, "CERT: Subject checks failed",
         "TLS to h:6380 refused: the server's certificate is not for h (set [redis] "
         "tls_server_name to a name it carries)"},
        {CORRAL_TLS_FAULT_CLIENT_CERT, "tlsv13 alert certificate required",
         "TLS to h:6380 refused by the server: it requires a client certificate (set [redis] "
         "tls_cert_file and tls_key_file): tlsv13 alert certificate required"},
        {CORRAL_TLS_FAULT_NOT_TLS, "wrong version number",
         "TLS to h:6380 failed: the server does not answer in TLS (a plaintext port? its url "
         "would be redis://): wrong version number"},
        {CORRAL_TLS_FAULT_CONNECT, "Connection refused (111)",
         "cannot reach h:6380: Connection refused (111)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(
            corral_tls_fault_error(cases[i].f, cases[i].detail, &conf, "h", 6380, &err), -1);
        assert_int_equal(err.code, CORRAL_ERR_REDIS);
        assert_string_equal(err.msg, cases[i].want);
    }
    /* with a client certificate set, the refusal names it */
    conf.tls_cert_file = "/etc/corral/c.crt";
    conf.tls_server_name = "redis.example";
    corral_tls_fault_error(CORRAL_TLS_FAULT_CLIENT_CERT, "tlsv1 alert unknown ca", &conf, "h", 1,
                           &err);
    assert_string_equal(err.msg, "TLS to h:1 refused by the server: it does not accept the client "
                                 "certificate in [redis] tls_cert_file = /etc/corral/c.crt: tlsv1 "
                                 "alert unknown ca");
    corral_tls_fault_error(CORRAL_TLS_FAULT_NAME, "", &conf, "h", 1, &err);
    assert_string_equal(err.msg, "TLS to h:1 refused: the server's certificate is not for "
                                 "redis.example ([redis] tls_server_name) (set [redis] "
                                 "tls_server_name to a name it carries)");
    assert_int_equal(corral_tls_fault_error(CORRAL_TLS_FAULT_NONE, "", &conf, "h", 1, &err), 0);
    assert_string_equal(corral_tls_fault_name(CORRAL_TLS_FAULT_NAME), "name-mismatch");
}

static void proxy_refuses_unreadable_certificate_files_by_key(void **state)
{
    struct corral_redis_conf conf = {.url = "rediss://h", .tls_ca_file = "/nonexistent/ca.crt"};
    struct corral_err err;
    assert_null(corral_tls_proxy_new(&conf, "/tmp", &err));
    assert_string_equal(err.msg, "[redis] tls_ca_file = /nonexistent/ca.crt: cannot read it: No "
                                 "such file or directory");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rediss_urls_are_told_and_read_as_redis),
        cmocka_unit_test(local_paths_name_the_route_and_fit_a_socket_address),
        cmocka_unit_test(local_address_follows_the_url),
        cmocka_unit_test(default_dir_follows_the_environment),
        cmocka_unit_test(stunnel_conf_verifies_by_name_or_address),
        cmocka_unit_test(log_lines_are_split_into_level_connection_and_text),
        cmocka_unit_test(each_refusal_is_told_apart),
        cmocka_unit_test(handshake_success_and_weak_faults_are_flagged),
        cmocka_unit_test(fault_sentences_name_the_key_to_fix),
        cmocka_unit_test(proxy_refuses_unreadable_certificate_files_by_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

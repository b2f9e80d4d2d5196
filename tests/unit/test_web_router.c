/* Unit tests for corral-web's router (web/router.c): every route, the
 * refusals (bad paths, traversal, wrong methods, bad names), and that the
 * canonical path of a route maps back to it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "router.h"

static struct web_route route(const char *method, const char *path)
{
    struct web_route r;
    web_route(method, path, &r);
    return r;
}

static void every_route_is_found_with_its_names(void **state)
{
    static const struct {
        const char *method, *path;
        enum web_page page;
        int action;
    } cases[] = {
        {"GET", "/", WEB_INDEX, 0},
        {"GET", "/assets/app.js", WEB_ASSET, 0},
        {"GET", "/api/status", WEB_STATUS, 0},
        {"HEAD", "/api/status", WEB_STATUS, 0},
        {"GET", "/api/history", WEB_HISTORY, 0},
        {"GET", "/api/session", WEB_SESSION, 0},
        {"GET", "/api/jobs/prompts/42", WEB_JOB, 0},
        {"GET", "/api/queues/prompts/dead", WEB_DEAD_LIST, 0},
        {"GET", "/metrics", WEB_METRICS, 0},
        {"GET", "/healthz", WEB_HEALTHZ, 0},
        {"POST", "/login", WEB_LOGIN, 0},
        {"POST", "/logout", WEB_LOGOUT, 0},
        {"POST", "/api/queues/prompts/pause", WEB_PAUSE, 1},
        {"POST", "/api/queues/prompts/resume", WEB_RESUME, 1},
        {"POST", "/api/queues/prompts/dead/retry", WEB_DEAD_RETRY, 1},
        {"POST", "/api/queues/prompts/dead/purge", WEB_DEAD_PURGE, 1},
        {"POST", "/api/breakers/openai/reset", WEB_BREAKER_RESET, 1},
        {"POST", "/api/jobs/prompts/42/cancel", WEB_JOB_CANCEL, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct web_route r = route(cases[i].method, cases[i].path);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.page, cases[i].page);
        assert_int_equal(r.action, cases[i].action);
        char back[WEB_PATH_MAX + 1];
        assert_true(web_route_path(&r, back, sizeof(back)) > 0);
        assert_string_equal(back, cases[i].path);
    }
    struct web_route r = route("POST", "/api/jobs/q.1:a-b_c/7/cancel");
    assert_string_equal(r.queue, "q.1:a-b_c");
    assert_string_equal(r.id, "7");
    r = route("POST", "/api/breakers/open.ai/reset");
    assert_string_equal(r.service, "open.ai");
    r = route("GET", "/assets/uPlot.min.css");
    assert_string_equal(r.asset, "uPlot.min.css");
}

static void paths_are_normalised_before_they_are_matched(void **state)
{
    assert_int_equal(route("GET", "/api/status/").page, WEB_STATUS);
    assert_int_equal(route("GET", "//api///status").page, WEB_STATUS);
    assert_int_equal(route("GET", "/api/./status").page, WEB_STATUS);
    assert_int_equal(route("GET", "/assets/../api/status").page, WEB_STATUS);
    assert_int_equal(route("GET", "/api/%73tatus").page, WEB_STATUS);
    assert_int_equal(route("GET", "/api/%2e%2e/metrics").page, WEB_METRICS);
    struct web_route r = route("GET", "/api/jobs/a%3Ab/1");
    assert_int_equal(r.page, WEB_JOB);
    assert_string_equal(r.queue, "a:b");
}

static void traversal_and_smuggled_bytes_are_refused(void **state)
{
    static const char *const bad[] = {
        "/..",
        "/../etc/passwd",
        "/api/../../x",
        "/%2e%2e/x",
        "/api/jobs/a%2Fb/1",
        "/api/jobs/a%00/1",
        "/a%zz",
        "/a%2",
        "/api/jobs/a%5Cb/1",
        "relative",
        "",
        "/api/jobs/q/1%0d%0aX: y",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct web_route r = route("GET", bad[i]);
        assert_int_equal(r.page, WEB_NONE);
        assert_int_equal(r.status, 400);
        assert_non_null(r.why);
    }
}

static void unknown_paths_are_404(void **state)
{
    static const char *const unknown[] = {
        "/api",        "/api/statuses",        "/etc/passwd", "/api/queues/q", "/assets/.hidden",
        "/assets/a/b", "/a/b/c/d/e/f/g/h/i/j", "/API/status"};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
        assert_int_equal(route("GET", unknown[i]).status, 404);
}

static void wrong_methods_are_405_with_the_allowed_ones(void **state)
{
    struct web_route r = route("GET", "/api/queues/q/pause");
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "POST");
    r = route("POST", "/api/status");
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "GET, HEAD");
    assert_int_equal(route("PUT", "/api/queues/q/pause").status, 405);
    assert_int_equal(route("DELETE", "/").status, 405);
    assert_int_equal(route("get", "/").status, 405); /* methods are case-sensitive */
}

static void bad_names_are_400_naming_what_is_wrong(void **state)
{
    char long_name[80];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    char path[200];
    snprintf(path, sizeof(path), "/api/queues/%s/pause", long_name);
    struct web_route r = route("POST", path);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.why, "queue name"));
    r = route("POST", "/api/queues/a%7Bb%7D/pause");
    assert_int_equal(r.status, 400);
    r = route("POST", "/api/breakers/a%20b/reset");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.why, "service name"));
    r = route("GET", "/api/jobs/q/%C3%A9");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.why, "job id"));
}

static void long_paths_are_414(void **state)
{
    char path[WEB_PATH_MAX + 10];
    memset(path, 'a', sizeof(path) - 1);
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    assert_int_equal(route("GET", path).status, 414);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_route_is_found_with_its_names),
        cmocka_unit_test(paths_are_normalised_before_they_are_matched),
        cmocka_unit_test(traversal_and_smuggled_bytes_are_refused),
        cmocka_unit_test(unknown_paths_are_404),
        cmocka_unit_test(wrong_methods_are_405_with_the_allowed_ones),
        cmocka_unit_test(bad_names_are_400_naming_what_is_wrong),
        cmocka_unit_test(long_paths_are_414),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

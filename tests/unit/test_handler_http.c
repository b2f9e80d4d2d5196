/* The http handler alone, through handler.h, on its own libev loop,
 * against a real HTTP server: a forked child listening on loopback that
 * reports what it saw on a pipe. No engine, no Redis, no mocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "corral/util.h"
#include "handler.h"
#include "handler_harness.h"

#define API_KEY "sk-unit-5d1e"

/* How the server answers the one request it takes. */
enum mode {
    ANSWER_200, /* 200 with a JSON body, if the request carried the key */
    ANSWER_503, /* 503 with an error body */
    HOLD,       /* never answers; reports when the client closes */
};

struct server {
    pid_t pid;
    int port;
    int events; /* read end: 'R' request read, 'C' client closed, 'A' bearer seen */
};

static void serve(int lfd, int ev, enum mode mode)
{
    int c = accept(lfd, NULL, NULL);
    if (c < 0)
        _exit(1);
    char req[8192];
    size_t got = 0;
    /* Headers, then the body by its Content-Length. */
    for (;;) {
        ssize_t n = read(c, req + got, sizeof(req) - 1 - got);
        if (n <= 0)
            _exit(1);
        got += (size_t)n;
        req[got] = '\0';
        char *end = strstr(req, "\r\n\r\n");
        const char *cl = strcasestr(req, "Content-Length:");
        if (end != NULL && (cl == NULL || got >= (size_t)(end + 4 - req) + strtoul(cl + 15, 0, 10)))
            break;
    }
    if (strstr(req, "Authorization: Bearer " API_KEY "\r\n") != NULL && write(ev, "A", 1) != 1)
        _exit(1);
    if (write(ev, "R", 1) != 1)
        _exit(1);
    const char *answer = NULL;
    if (mode == ANSWER_200)
        answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
                 "Connection: close\r\n\r\n{\"ok\":true}";
    else if (mode == ANSWER_503)
        answer = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12\r\n"
                 "Connection: close\r\n\r\n{\"err\":\"up\"}";
    if (answer != NULL) {
        if (write(c, answer, strlen(answer)) < 0)
            _exit(1);
        _exit(0);
    }
    /* HOLD: wait for the client to close its end. */
    char b;
    while (read(c, &b, 1) > 0)
        ;
    if (write(ev, "C", 1) != 1)
        _exit(1);
    _exit(0);
}

static void server_start(struct server *s, enum mode mode)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
    int p[2];
    assert_int_equal(pipe(p), 0);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        close(p[0]);
        serve(lfd, p[1], mode);
    }
    close(p[1]);
    close(lfd);
    s->events = p[0];
}

/* The next event byte from the server within timeout_ms, or 0. */
static char server_event(struct server *s, int timeout_ms)
{
    struct pollfd pfd = {.fd = s->events, .events = POLLIN};
    char b = 0;
    if (poll(&pfd, 1, timeout_ms) == 1 && read(s->events, &b, 1) != 1)
        b = 0;
    return b;
}

static void server_stop(struct server *s)
{
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    close(s->events);
}

struct fixture {
    struct ev_loop *loop;
    char dir[32];
    char keyfile[64];
    struct corral_config *cfg;
    void *qstate;
    struct corral_run run;
};

/* An http queue whose service is the server on port, with an API key. */
static void setup_run(struct fixture *f, int port)
{
    memset(&ended, 0, sizeof(ended));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    snprintf(f->dir, sizeof(f->dir), "/tmp/corral-http-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->keyfile, sizeof(f->keyfile), "%s/key", f->dir);
    FILE *k = fopen(f->keyfile, "w");
    assert_non_null(k);
    fputs(API_KEY "\n", k);
    fclose(k);
    char *text = corral_xasprintf("[service ai]\nurl = http://127.0.0.1:%d/v1\n"
                                  "api_key_file = %s\n[queue q]\nhandler = http\nservice = ai\n",
                                  port, f->keyfile);
    struct corral_config_errors errs = {0};
    f->cfg = corral_config_load_string(text, "t.conf", &errs);
    free(text);
    assert_non_null(f->cfg);
    const struct corral_queue_conf *q = corral_config_queue(f->cfg, "q");
    assert_ptr_equal(corral_handler_ops_for(q->handler), &corral_http_handler);
    struct corral_err err;
    assert_int_equal(corral_http_handler.queue_init(f->loop, f->cfg, q, &f->qstate, &err), 0);
    f->run = (struct corral_run){.loop = f->loop,
                                 .conf = q,
                                 .queue_state = f->qstate,
                                 .job = {.id = "1",
                                         .run = "1",
                                         .timeout_ms = 5000,
                                         .payload = "{\"prompt\":\"hi\"}",
                                         .payload_len = 15},
                                 .finish = on_finish};
}

static void teardown_run(struct fixture *f)
{
    corral_http_handler.queue_free(f->qstate);
    corral_config_free(f->cfg);
    ev_loop_destroy(f->loop);
    unlink(f->keyfile);
    rmdir(f->dir);
}

static void a_2xx_answer_finishes_the_run_with_the_body_as_result(void **state)
{
    struct server s;
    server_start(&s, ANSWER_200);
    struct fixture f;
    setup_run(&f, s.port);
    corral_http_handler.start(&f.run);
    assert_int_equal(run_loop(f.loop, 10.0), 0);
    assert_int_equal(ended.calls, 1);
    assert_int_equal(ended.end, CORRAL_END_DONE);
    assert_string_equal(ended.data, "{\"ok\":true}");
    assert_int_equal(server_event(&s, 1000), 'A'); /* the key was sent */
    teardown_run(&f);
    server_stop(&s);
}

static void a_5xx_answer_finishes_the_run_retryable(void **state)
{
    struct server s;
    server_start(&s, ANSWER_503);
    struct fixture f;
    setup_run(&f, s.port);
    corral_http_handler.start(&f.run);
    assert_int_equal(run_loop(f.loop, 10.0), 0);
    assert_int_equal(ended.calls, 1);
    assert_int_equal(ended.end, CORRAL_END_RETRY);
    assert_non_null(strstr(ended.data, "HTTP 503"));
    teardown_run(&f);
    server_stop(&s);
}

static void on_server_event(struct ev_loop *loop, ev_io *io, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

static void abort_closes_the_connection_at_once_and_never_finishes(void **state)
{
    struct server s;
    server_start(&s, HOLD);
    struct fixture f;
    setup_run(&f, s.port);
    corral_http_handler.start(&f.run);
    /* Until the server has the whole request (and holds it). */
    ev_io ev;
    ev_io_init(&ev, on_server_event, s.events, EV_READ);
    ev_io_start(f.loop, &ev);
    assert_int_equal(run_loop(f.loop, 10.0), 0);
    ev_io_stop(f.loop, &ev);
    assert_int_equal(server_event(&s, 2000), 'A');
    assert_int_equal(server_event(&s, 2000), 'R');

    corral_http_handler.abort(&f.run);
    /* The server sees the connection closed without running the loop. */
    assert_int_equal(server_event(&s, 2000), 'C');
    assert_int_equal(run_loop(f.loop, 0.3), 1);
    assert_int_equal(ended.calls, 0);
    teardown_run(&f);
    server_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_2xx_answer_finishes_the_run_with_the_body_as_result),
        cmocka_unit_test(a_5xx_answer_finishes_the_run_retryable),
        cmocka_unit_test(abort_closes_the_connection_at_once_and_never_finishes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

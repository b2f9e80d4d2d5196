/* libFuzzer target for corral-web's request router (web/router.c): the
 * input is "METHOD PATH" (the first blank splits them). Whatever the bytes,
 * web_route answers one of its statuses; a matched route's names are valid
 * queue, service or job names, an action is a POST, and the canonical path
 * of a match routes back to the same route. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "check failed: %s\n", #c);                                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int same(const struct web_route *a, const struct web_route *b)
{
    return a->page == b->page && a->action == b->action && strcmp(a->queue, b->queue) == 0 &&
           strcmp(a->id, b->id) == 0 && strcmp(a->service, b->service) == 0 &&
           strcmp(a->asset, b->asset) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4 * WEB_PATH_MAX)
        return 0;
    char *in = malloc(size + 1);
    memcpy(in, data, size);
    in[size] = '\0'; /* libmicrohttpd hands over C strings: a NUL ends them */
    char *path = strchr(in, ' ');
    const char *method = "GET";
    if (path != NULL) {
        *path++ = '\0';
        method = in;
    } else {
        path = in;
    }
    struct web_route r;
    int st = web_route(method, path, &r);
    CHECK(st == r.status);
    CHECK(st == 200 || st == 400 || st == 404 || st == 405 || st == 414);
    if (st == 400)
        CHECK(r.why != NULL && r.why[0] != '\0');
    if (st == 405)
        CHECK(r.allow != NULL);
    if (st == 200) {
        CHECK(r.page != WEB_NONE);
        CHECK(strcmp(method, r.action ? "POST" : method) == 0);
        CHECK(r.queue[0] == '\0' || web_name_valid(r.queue));
        CHECK(r.id[0] == '\0' || web_name_valid(r.id));
        CHECK(r.service[0] == '\0' || web_name_valid(r.service));
        CHECK(strchr(r.asset, '/') == NULL && strstr(r.asset, "..") == NULL);
        char canon[WEB_PATH_MAX + 1];
        CHECK(web_route_path(&r, canon, sizeof(canon)) > 0);
        struct web_route back;
        CHECK(web_route(method, canon, &back) == 200);
        CHECK(same(&r, &back));
    } else {
        CHECK(r.page == WEB_NONE);
    }
    free(in);
    return 0;
}

/* cluster_probe: drives queue/cluster.c's router against a real cluster
 * for tests/integration/test_cluster_routing.py.
 *
 *   cluster_probe SEEDS map      the slot map: one "LO-HI HOST:PORT" line
 *                                per run of slots served by one primary
 *   cluster_probe SEEDS run      reads commands from stdin, one per line,
 *                                words split on spaces, the first word the
 *                                key to route by ("KEY CMD ARG..."), and
 *                                prints each reply on one line ("=" string,
 *                                ":" integer, "-" error, "*N" array, "nil"),
 *                                then "refreshes N"; flushes after each line
 *
 * SEEDS is "host:port,host:port". Exit status 0, or 1 with the error on
 * stderr (the router gave up). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/cluster.h"
#include "corral/config.h"

static void print_reply(const redisReply *r)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        printf("=%.*s\n", (int)r->len, r->str);
        break;
    case REDIS_REPLY_ERROR:
        printf("-%.*s\n", (int)r->len, r->str);
        break;
    case REDIS_REPLY_INTEGER:
        printf(":%lld\n", r->integer);
        break;
    case REDIS_REPLY_ARRAY:
        printf("*%zu\n", r->elements);
        break;
    default:
        printf("nil\n");
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: cluster_probe SEEDS map|run\n");
        return 2;
    }
    const char *seeds[16];
    size_t n = 0;
    char *list = strdup(argv[1]);
    for (char *s = strtok(list, ","); s && n < 16; s = strtok(NULL, ","))
        seeds[n++] = s;
    struct corral_redis_conf conf = {.url = "redis://cluster"};
    struct corral_err err;
    struct corral_cluster *cc = corral_cluster_connect(&conf, seeds, n, 2000, &err);
    if (cc == NULL) {
        fprintf(stderr, "%s\n", err.msg);
        free(list);
        return 1;
    }
    int rc = 0;
    if (strcmp(argv[2], "map") == 0) {
        const struct corral_cluster_map *m = corral_cluster_current(cc);
        unsigned lo = 0;
        for (unsigned s = 1; s <= CORRAL_CLUSTER_SLOTS; s++)
            if (s == CORRAL_CLUSTER_SLOTS || m->owner[s] != m->owner[lo]) {
                const struct corral_cluster_node *nd = corral_cluster_owner(m, lo);
                if (nd != NULL)
                    printf("%u-%u %s:%d\n", lo, s - 1, nd->host, nd->port);
                lo = s;
            }
    } else {
        char line[4096];
        while (fgets(line, sizeof(line), stdin) != NULL) {
            line[strcspn(line, "\n")] = '\0';
            const char *words[64];
            size_t lens[64];
            int w = 0;
            for (char *t = strtok(line, " "); t && w < 64; t = strtok(NULL, " ")) {
                words[w] = t;
                lens[w++] = strlen(t);
            }
            if (w < 2)
                continue;
            redisReply *r =
                corral_cluster_command(cc, words[0], lens[0], w - 1, words + 1, lens + 1, &err);
            if (r == NULL) {
                fprintf(stderr, "%s\n", err.msg);
                printf("!%s\n", err.msg);
                rc = 1;
            } else {
                print_reply(r);
                freeReplyObject(r);
            }
            printf("refreshes %u\n", corral_cluster_refreshes(cc));
            fflush(stdout);
        }
    }
    corral_cluster_free(cc);
    free(list);
    return rc;
}

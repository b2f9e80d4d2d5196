/* Loading the Function library and declaring queues and services: the
 * commands built once here, sent by every program (see
 * corral/bootstrap.h). */
#include "corral/bootstrap.h"

#include <stdlib.h>
#include <string.h>

#include "corral/redis.h"
#include "corral/util.h"

void corral_bootstrap_cmd_version(struct corral_cmd *cmd)
{
    memset(cmd, 0, sizeof(*cmd));
    corral_cmd_addstr(cmd, "FCALL_RO");
    corral_cmd_addstr(cmd, "corral_version");
    corral_cmd_addstr(cmd, "0");
}

int corral_bootstrap_reply_version(redisContext *c, const redisReply *r, long long *have,
                                   struct corral_err *err)
{
    *have = -1;
    if (r == NULL)
        return corral_redis_check(c, r, "FCALL corral_version", err);
    if (r->type == REDIS_REPLY_INTEGER) {
        *have = r->integer;
    } else if (r->type == REDIS_REPLY_ERROR &&
               corral_reply_word(r->str, r->len) == CORRAL_WORD_NOCOMMAND) {
        return corral_err_set(err, CORRAL_ERR_REDIS,
                              "redis does not support Functions (FCALL): corral needs "
                              "redis-server 7 or newer");
    } else if (r->type == REDIS_REPLY_ERROR &&
               corral_reply_word(r->str, r->len) == CORRAL_WORD_NOPERM) {
        /* Not knowing the version is not having none: loading ours could
         * replace a newer library the rest of the fleet runs. */
        return corral_err_set(err, CORRAL_ERR_REDIS,
                              "cannot read the corral library's version: %s (the ACL user "
                              "needs +fcall_ro, see docs/operations.md)",
                              r->str);
    }
    return 0;
}

static struct corral_bootstrap_step *add_step(struct corral_bootstrap *b, const char *what,
                                              const char *name)
{
    b->steps = corral_xrealloc(b->steps, sizeof(*b->steps) * (b->n + 1));
    struct corral_bootstrap_step *s = &b->steps[b->n++];
    memset(s, 0, sizeof(*s));
    s->what = what;
    s->name = name;
    return s;
}

static void add_queue(struct corral_bootstrap *b, const struct corral_config *cfg,
                      const struct corral_queue_conf *q)
{
    corral_cmd_declare(&add_step(b, "declare queue", q->name)->cmd, cfg->redis.prefix, q);
}

static void add_service(struct corral_bootstrap *b, const struct corral_config *cfg,
                        const struct corral_service_conf *s)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->steps[i].name != NULL && strcmp(b->steps[i].what, "declare service") == 0 &&
            strcmp(b->steps[i].name, s->name) == 0)
            return;
    struct corral_cmd *cmd = &add_step(b, "declare service", s->name)->cmd;
    corral_cmd_declare_service(cmd, cfg->redis.prefix, s);
    if (cfg->redis.cluster.n > 0) /* its keys under their own hash tag (queue/lua/gate.lua) */
        corral_cmd_service_tag(cmd, cfg->redis.prefix, s->name);
}

void corral_bootstrap_build(struct corral_bootstrap *b, const struct corral_config *cfg,
                            long long have, enum corral_bootstrap_scope scope,
                            const char *const *queues, size_t n)
{
    b->steps = NULL;
    b->n = 0;
    if (have < corral_functions_version()) {
        struct corral_cmd *cmd = &add_step(b, "FUNCTION LOAD", NULL)->cmd;
        corral_cmd_addstr(cmd, "FUNCTION");
        corral_cmd_addstr(cmd, "LOAD");
        corral_cmd_addstr(cmd, "REPLACE");
        corral_cmd_addstr(cmd, corral_functions_source());
    }
    if (scope == CORRAL_BOOTSTRAP_ALL) {
        for (size_t i = 0; i < cfg->nqueues; i++)
            add_queue(b, cfg, &cfg->queues[i]);
        for (size_t i = 0; i < cfg->nservices; i++)
            add_service(b, cfg, &cfg->services[i]);
    } else if (scope == CORRAL_BOOTSTRAP_QUEUES) {
        for (size_t i = 0; i < n; i++) {
            const struct corral_queue_conf *q = corral_config_queue(cfg, queues[i]);
            if (q != NULL)
                add_queue(b, cfg, q);
        }
        /* Services after the queues, as with ALL: a queue's declare does
         * not need its service's record. */
        for (size_t i = 0; i < n; i++) {
            const struct corral_queue_conf *q = corral_config_queue(cfg, queues[i]);
            const struct corral_service_conf *s =
                q && q->service ? corral_config_service(cfg, q->service) : NULL;
            if (s != NULL)
                add_service(b, cfg, s);
            /* and the rest of a fallback list (docs/breakers.md, "Fallback") */
            for (size_t k = 1; q != NULL && k < q->services.n; k++) {
                s = corral_config_service(cfg, q->services.items[k]);
                if (s != NULL)
                    add_service(b, cfg, s);
            }
        }
    }
}

void corral_bootstrap_free(struct corral_bootstrap *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++)
        corral_cmd_free(&b->steps[i].cmd);
    free(b->steps);
    b->steps = NULL;
    b->n = 0;
}

int corral_bootstrap_run(redisContext *c, const struct corral_config *cfg,
                         enum corral_bootstrap_scope scope, const char *const *queues, size_t n,
                         int *loaded, struct corral_err *err)
{
    if (loaded != NULL)
        *loaded = 0;
    struct corral_cmd ask;
    corral_bootstrap_cmd_version(&ask);
    redisReply *r = corral_cmd_run(c, &ask);
    corral_cmd_free(&ask);
    long long have;
    int rc = corral_bootstrap_reply_version(c, r, &have, err);
    freeReplyObject(r);
    if (rc < 0)
        return -1;
    struct corral_bootstrap b;
    corral_bootstrap_build(&b, cfg, have, scope, queues, n);
    for (size_t i = 0; i < b.n; i++)
        redisAppendCommandArgv(c, b.steps[i].cmd.argc, (const char **)b.steps[i].cmd.argv,
                               b.steps[i].cmd.argvlen);
    /* Every reply is read, even after an error, so the connection stays in
     * step; the first error is the one reported. */
    for (size_t i = 0; i < b.n; i++) {
        r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            r = NULL;
        if (rc == 0 && corral_redis_check(c, r, b.steps[i].what, err) < 0) {
            if (r != NULL && b.steps[i].name != NULL) /* a lost connection says what already */
                corral_err_prefix(err, "%s %s", b.steps[i].what, b.steps[i].name);
            else if (r != NULL)
                corral_err_prefix(err, "%s", b.steps[i].what);
            rc = -1;
        } else if (rc == 0 && b.steps[i].name == NULL && loaded != NULL) {
            *loaded = 1;
        }
        freeReplyObject(r);
        if (r == NULL)
            break;
    }
    corral_bootstrap_free(&b);
    return rc;
}

/* Redis's own health as corral sees it (corral/health.h). */
#include "corral/health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/queue.h"
#include "corral/redis.h"
#include "corral/util.h"

/* The value of "field:" in INFO text, copied into out ("" when absent). */
static const char *info_field(const char *info, const char *field, char *out, size_t n)
{
    size_t fl = strlen(field);
    out[0] = '\0';
    for (const char *p = info; p != NULL && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, field, fl) == 0 && p[fl] == ':') {
            const char *v = p + fl + 1;
            size_t len = strcspn(v, "\r\n");
            snprintf(out, n, "%.*s", (int)(len < n ? len : n - 1), v);
            return out;
        }
    }
    return out;
}

static long long info_ll(const char *info, const char *field)
{
    char v[64];
    return atoll(info_field(info, field, v, sizeof(v)));
}

/* slaveN:ip=...,port=...,state=online,offset=...,lag=0 */
static json_t *replicas_of(const char *info)
{
    json_t *a = json_array();
    for (int i = 0; i < 64; i++) {
        char name[16], v[256];
        snprintf(name, sizeof(name), "slave%d", i);
        if (info_field(info, name, v, sizeof(v))[0] == '\0')
            break;
        char ip[128] = "", state[32] = "";
        long long port = 0, lag = -1, offset = 0;
        for (char *tok = strtok(v, ","); tok != NULL; tok = strtok(NULL, ",")) {
            if (strncmp(tok, "ip=", 3) == 0)
                snprintf(ip, sizeof(ip), "%s", tok + 3);
            else if (strncmp(tok, "port=", 5) == 0)
                port = atoll(tok + 5);
            else if (strncmp(tok, "state=", 6) == 0)
                snprintf(state, sizeof(state), "%s", tok + 6);
            else if (strncmp(tok, "offset=", 7) == 0)
                offset = atoll(tok + 7);
            else if (strncmp(tok, "lag=", 4) == 0)
                lag = atoll(tok + 4);
        }
        json_array_append_new(a, json_pack("{s:s s:I s:s s:I s:I}", "ip", ip, "port",
                                           (json_int_t)port, "state", state, "offset",
                                           (json_int_t)offset, "lag_s", (json_int_t)lag));
    }
    return a;
}

json_t *corral_health_from_info(const char *info, const char *save, const char *addr)
{
    char role[16], policy[64], mhost[128], aof[8];
    info_field(info, "role", role, sizeof(role));
    info_field(info, "maxmemory_policy", policy, sizeof(policy));
    info_field(info, "aof_enabled", aof, sizeof(aof));
    long long used = info_ll(info, "used_memory"), max = info_ll(info, "maxmemory");
    json_t *o = json_object();
    json_object_set_new(o, "role", json_string(strcmp(role, "slave") == 0 ? "replica" : role));
    if (strcmp(role, "slave") == 0) {
        info_field(info, "master_host", mhost, sizeof(mhost));
        char *m = corral_xasprintf("%s:%lld", mhost, info_ll(info, "master_port"));
        json_object_set_new(o, "master", json_string(m));
        free(m);
    } else {
        json_object_set_new(o, "master", addr ? json_string(addr) : json_null());
    }
    json_object_set_new(o, "replicas", replicas_of(info));
    json_object_set_new(o, "used_memory", json_integer(used));
    json_object_set_new(o, "maxmemory", json_integer(max));
    json_object_set_new(o, "maxmemory_policy", json_string(policy));
    json_t *p = json_object();
    json_object_set_new(p, "aof", json_boolean(strcmp(aof, "1") == 0));
    json_object_set_new(p, "rdb", save == NULL ? json_null() : json_boolean(save[0] != '\0'));
    json_object_set_new(o, "persistence", p);
    json_t *w = json_array();
    if (policy[0] != '\0' && strcmp(policy, "noeviction") != 0) {
        char *s = corral_xasprintf("maxmemory-policy is %s: Redis may evict corral's jobs and "
                                   "heartbeats when full; set noeviction",
                                   policy);
        json_array_append_new(w, json_string(s));
        free(s);
    }
    if (max > 0 && used * 100 >= max * CORRAL_HEALTH_MEMORY_PCT) {
        char *s = corral_xasprintf("memory is %lld%% of maxmemory (%lld of %lld bytes): enqueues "
                                   "will be refused (OOM) when it is full",
                                   used * 100 / max, used, max);
        json_array_append_new(w, json_string(s));
        free(s);
    }
    if (strcmp(aof, "1") != 0 && save != NULL && save[0] == '\0')
        json_array_append_new(w, json_string("neither AOF nor RDB is on: a restart of Redis loses "
                                             "every job; set appendonly yes"));
    json_object_set_new(o, "warnings", w);
    return o;
}

json_t *corral_redis_health(redisContext *c, const struct corral_redis_conf *conf)
{
    redisReply *r = redisCommand(c, "INFO replication memory persistence");
    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        struct corral_err err;
        if (corral_redis_check(c, r, "INFO", &err) == 0)
            corral_err_set(&err, CORRAL_ERR_REDIS, "redis INFO: an answer that is not text");
        freeReplyObject(r);
        return json_pack("{s:s s:[]}", "error", err.msg, "warnings");
    }
    /* CONFIG is often refused (managed services, the ACL user): then
     * whether RDB is on is unknown, and not warned about. */
    redisReply *s = redisCommand(c, "CONFIG GET save");
    const char *save = NULL;
    if (s != NULL && s->type == REDIS_REPLY_ARRAY && s->elements == 2 &&
        s->element[1]->type == REDIS_REPLY_STRING)
        save = s->element[1]->str;
    const char *addr = NULL;
    char buf[300];
    if (conf->addr.host != NULL) {
        snprintf(buf, sizeof(buf), "%s:%d", conf->addr.host, conf->addr.port);
        addr = buf;
    } else if (c->connection_type == REDIS_CONN_TCP && c->tcp.host != NULL) {
        snprintf(buf, sizeof(buf), "%s:%d", c->tcp.host, c->tcp.port);
        addr = buf;
    } else if (conf->addr.path != NULL) {
        addr = conf->addr.path;
    }
    json_t *o = corral_health_from_info(r->str, save, addr);
    freeReplyObject(s);
    freeReplyObject(r);
    return o;
}

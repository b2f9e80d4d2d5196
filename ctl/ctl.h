/* corralctl's commands share this: the loaded config and one blocking
 * Redis connection. Each command returns the process exit code (0 success,
 * 1 failure with a message on stderr, 2 bad usage). */
#ifndef CORRAL_CTL_H
#define CORRAL_CTL_H

#include <stdint.h>
#include <stdio.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "corral/config.h"

struct ctl {
    struct corral_config *cfg;
    redisContext *redis;
};

#define CTL_EXIT_USAGE 2

int ctl_usage_error(const char *fmt, const char *arg);

/* status [--json] [--watch [SECONDS]] */
int ctl_status(struct ctl *ctl, int argc, char **argv);
/* dead QUEUE [list | retry [ID... | --all] | purge] */
int ctl_dead(struct ctl *ctl, int argc, char **argv);
/* pause QUEUE / resume QUEUE */
int ctl_pause(struct ctl *ctl, int argc, char **argv, int pause);
/* breaker [SERVICE] [reset] [--json] */
int ctl_breaker(struct ctl *ctl, int argc, char **argv);

/* Every breaker (declared in Redis or named by the config), sorted by
 * service, as a JSON array the caller owns; NULL with err on failure. */
json_t *ctl_read_breakers(struct ctl *ctl, int64_t now, struct corral_err *err);
/* The breakers table of status and breaker. */
void ctl_print_breakers(json_t *breakers, FILE *out, int color);

#endif

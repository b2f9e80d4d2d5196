/* corral-web's requests that read or change one thing in Redis on demand:
 * a job, a queue's dead jobs, and the operator's actions. They share one
 * blocking connection behind a lock (they are rare: people click them);
 * the fleet-wide view comes from the snapshot instead. Each call returns an
 * HTTP status and a JSON body the caller frees. docs/web.md. */
#ifndef CORRAL_WEB_API_H
#define CORRAL_WEB_API_H

#include <stddef.h>

#include "corral/config.h"
#include "router.h"

#define WEB_DEAD_SHOWN 50   /* dead jobs listed per queue */
#define WEB_RETRY_IDS  1000 /* ids one retry may name */

struct web_api;

/* cfg is borrowed and must outlive the api. */
struct web_api *web_api_new(const struct corral_config *cfg);
void web_api_free(struct web_api *a);

/* GET /api/jobs/Q/ID and GET /api/queues/Q/dead. */
int web_api_job(struct web_api *a, const char *queue, const char *id, char **body);
int web_api_dead(struct web_api *a, const char *queue, char **body);

/* One of the POST actions of the router (r->action set); body is the
 * request body (dead/retry: {"ids": [...]} or {"all": true}). */
int web_api_action(struct web_api *a, const struct web_route *r, const char *body, size_t len,
                   char **out);

/* {"error": msg}; caller frees. */
char *web_error_json(const char *msg);

#endif

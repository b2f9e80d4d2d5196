/* corralctl status: the share each service of a queue's fallback list
 * served in the last minute (docs/breakers.md, "Fallback"). */
#ifndef CTL_FALLBACK_H
#define CTL_FALLBACK_H

#include <stdio.h>

#include <jansson.h>

/* One line per queue with a fallback list (its stats' "services" and
 * "served"): each service with its share and count, in list order. */
void ctl_fallback_print(json_t *queues, FILE *out, int color);

#endif

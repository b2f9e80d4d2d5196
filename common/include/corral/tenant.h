/* Tenant names and weights (docs/protocol.md, "Tenants"): the rules the
 * Function library's tenants.lua applies, for corralctl's checks before a
 * call and for `corrald --check`. Pure: no I/O. */
#ifndef CORRAL_TENANT_H
#define CORRAL_TENANT_H

#include <stddef.h>

#include "corral/config.h"
#include "corral/err.h"

#define CORRAL_TENANT_MAX  64
#define CORRAL_TENANT_RULE "1-64 bytes of A-Z a-z 0-9 _ . : @ -"

/* Whether name is a tenant name: 1-64 bytes of [A-Za-z0-9_.:@-]. */
int corral_tenant_valid(const char *name);

/* Parses a tenant_weights line, "NAME:W, NAME:W, ..." (a name may hold
 * ':': the weight follows the last one), each weight from min to max and
 * each name once, into out as "NAME:W" items. Returns 0, or -1 with err
 * naming the item (a weight of 0, a bad name, a missing weight); out holds
 * nothing then. The caller frees out with corral_strlist_free. */
int corral_tenant_weights_parse(const char *value, int min, int max, struct corral_strlist *out,
                                struct corral_err *err);

/* Splits a checked "NAME:W" item: the name's length, and the weight. */
size_t corral_tenant_weight_split(const char *item, int *weight);

#endif

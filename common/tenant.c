/* Tenant names and the tenant_weights line (docs/protocol.md, "Tenants"),
 * checked the way the Function library's tenants.lua checks them, so that
 * corralctl and `corrald --check` refuse what Redis would. */
#include "corral/tenant.h"

#include <stdlib.h>
#include <string.h>

#include "corral/util.h"

#define TENANT_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:@-"

int corral_tenant_valid(const char *name)
{
    size_t n = strlen(name);
    return n >= 1 && n <= CORRAL_TENANT_MAX && strspn(name, TENANT_CHARS) == n;
}

size_t corral_tenant_weight_split(const char *item, int *weight)
{
    const char *colon = strrchr(item, ':');
    if (colon == NULL) {
        *weight = 1;
        return strlen(item);
    }
    *weight = atoi(colon + 1);
    return (size_t)(colon - item);
}

int corral_tenant_weights_parse(const char *value, int min, int max, struct corral_strlist *out,
                                struct corral_err *err)
{
    struct corral_strlist l;
    if (corral_parse_list(value, &l, err) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        const char *item = l.items[i];
        const char *colon = strrchr(item, ':');
        if (colon == NULL) {
            rc = corral_err_set(err, CORRAL_ERR_INVALID,
                                "item %zu, \"%s\": expected TENANT:WEIGHT (got \"%s\")", i + 1,
                                item, value);
            break;
        }
        char *name = corral_xstrndup(item, (size_t)(colon - item));
        int64_t w;
        if (!corral_tenant_valid(name)) {
            rc = corral_err_set(err, CORRAL_ERR_INVALID,
                                "item %zu: bad tenant name \"%s\": use " CORRAL_TENANT_RULE
                                " (got \"%s\")",
                                i + 1, name, value);
        } else if (corral_parse_int(colon + 1, min, max, &w, err) < 0) {
            corral_err_prefix(err, "item %zu, tenant %s: weight", i + 1, name);
            rc = -1;
        }
        for (size_t j = 0; rc == 0 && j < i; j++) {
            int wj;
            size_t nj = corral_tenant_weight_split(l.items[j], &wj);
            if (nj == strlen(name) && memcmp(l.items[j], name, nj) == 0)
                rc = corral_err_set(err, CORRAL_ERR_INVALID,
                                    "tenant %s has a weight twice (got \"%s\")", name, value);
        }
        free(name);
    }
    if (rc < 0) {
        corral_strlist_free(&l);
        return -1;
    }
    *out = l;
    return 0;
}

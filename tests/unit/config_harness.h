/* What the config unit tests share: loading a config text that must load,
 * printing the errors of one that did not. Include after cmocka.h. */
#ifndef CORRAL_TEST_CONFIG_HARNESS_H
#define CORRAL_TEST_CONFIG_HARNESS_H

#include <stdio.h>

#include "corral/config.h"

static void print_errors(const struct corral_config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "  got: %s\n", errs->lines[i]);
}

/* Loads text that must load without an error line. */
static struct corral_config *load_ok(const char *text)
{
    struct corral_config_errors errs;
    struct corral_config *cfg = corral_config_load_string(text, "t.conf", &errs);
    if (errs.n > 0)
        print_errors(&errs);
    assert_int_equal(errs.n, 0);
    assert_non_null(cfg);
    corral_config_errors_free(&errs);
    return cfg;
}

#endif

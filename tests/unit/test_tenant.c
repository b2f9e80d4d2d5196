/* Unit tests for tenant names and the tenant_weights line (common/tenant.c):
 * the alphabet and length of a name, weights from 1 to 1000, a name that
 * holds ':', and each refusal naming the item. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "corral/config.h"
#include "corral/err.h"
#include "corral/tenant.h"

static void names_are_1_to_64_bytes_of_the_alphabet(void **state)
{
    assert_true(corral_tenant_valid("acme"));
    assert_true(corral_tenant_valid("org:team-1@eu.west_2"));
    char long_name[66];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    assert_false(corral_tenant_valid(long_name));
    long_name[64] = '\0';
    assert_true(corral_tenant_valid(long_name));
    assert_false(corral_tenant_valid(""));
    assert_false(corral_tenant_valid("a b"));
    assert_false(corral_tenant_valid("a/b"));
    assert_false(corral_tenant_valid("caf\xc3\xa9"));
}

static void weights_parse_with_the_weight_after_the_last_colon(void **state)
{
    struct corral_strlist l;
    struct corral_err err;
    assert_int_equal(corral_tenant_weights_parse("gold:3, org:team:2", 1, 1000, &l, &err), 0);
    assert_int_equal(l.n, 2);
    int w;
    assert_int_equal(corral_tenant_weight_split(l.items[0], &w), 4);
    assert_int_equal(w, 3);
    assert_int_equal(corral_tenant_weight_split(l.items[1], &w), 8);
    assert_int_equal(w, 2);
    corral_strlist_free(&l);
}

static void a_weight_of_0_a_missing_weight_or_a_tenant_twice_is_named(void **state)
{
    struct corral_strlist l = {0};
    struct corral_err err;
    assert_int_equal(corral_tenant_weights_parse("a:2, gold:0", 1, 1000, &l, &err), -1);
    assert_non_null(strstr(err.msg, "item 2, tenant gold: weight"));
    assert_non_null(strstr(err.msg, "from 1 to 1000"));
    assert_int_equal(l.n, 0);
    assert_int_equal(corral_tenant_weights_parse("gold", 1, 1000, &l, &err), -1);
    assert_non_null(strstr(err.msg, "expected TENANT:WEIGHT"));
    assert_int_equal(corral_tenant_weights_parse("a:1, a:2", 1, 1000, &l, &err), -1);
    assert_non_null(strstr(err.msg, "tenant a has a weight twice"));
    assert_int_equal(corral_tenant_weights_parse("a b:2", 1, 1000, &l, &err), -1);
    assert_non_null(strstr(err.msg, "bad tenant name \"a b\""));
    assert_int_equal(corral_tenant_weights_parse("a:1001", 1, 1000, &l, &err), -1);
    assert_int_equal(corral_tenant_weights_parse("a:2,,b:3", 1, 1000, &l, &err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_are_1_to_64_bytes_of_the_alphabet),
        cmocka_unit_test(weights_parse_with_the_weight_after_the_last_colon),
        cmocka_unit_test(a_weight_of_0_a_missing_weight_or_a_tenant_twice_is_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

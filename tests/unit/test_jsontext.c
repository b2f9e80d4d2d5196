/* Unit tests for the character-level checks of JSON text (jsontext.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "corral/jsontext.h"

static int check(const char *s, size_t n, char *why)
{
    return corral_json_text_check(s, n, why, 96);
}

#define OK(lit) assert_int_equal(check(lit, sizeof(lit) - 1, why), 0)
#define BAD(lit, msg)                                                                              \
    do {                                                                                           \
        assert_int_equal(check(lit, sizeof(lit) - 1, why), -1);                                    \
        assert_string_equal(why, msg);                                                             \
    } while (0)

static void json_text_passes(void **state)
{
    char why[96];
    OK("{}");
    OK("{\n\t\"a\": [1, 2],\r\n \"b\": \"x\"\n}"); /* whitespace between tokens */
    OK("\"caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80\"");
    OK("\"\xed\x9f\xbf \xee\x80\x80 \xf4\x8f\xbf\xbf\""); /* U+D7FF U+E000 U+10FFFF */
    OK("\"a \\\" \\\\ \\n b\"");                          /* escapes, an escaped quote */
    OK("");
}

static void invalid_utf8_is_found_with_its_offset(void **state)
{
    char why[96];
    BAD("\"\xff\"", "invalid UTF-8 at byte 1");
    BAD("{\"a\": \"\xc3\x28\"}", "invalid UTF-8 at byte 7"); /* a bad continuation */
    BAD("\"\xc0\xaf\"", "invalid UTF-8 at byte 1");          /* an overlong '/' */
    BAD("\"\xe0\x80\xaf\"", "invalid UTF-8 at byte 1");      /* overlong, 3 bytes */
    BAD("\"\xed\xa0\x80\"", "invalid UTF-8 at byte 1");      /* a surrogate */
    BAD("\"\xf4\x90\x80\x80\"", "invalid UTF-8 at byte 1");  /* above U+10FFFF */
    BAD("\"ok\xe4\xbd\"", "invalid UTF-8 at byte 3");        /* cut short */
    BAD("\"\xe4\xbd", "invalid UTF-8 at byte 1");            /* cut at the end */
    BAD("\"\x80\"", "invalid UTF-8 at byte 1");              /* a lone continuation */
    BAD("\"\\\xc3\x28\"", "invalid UTF-8 at byte 2");        /* escaped: still checked */
}

static void control_characters_and_nul_are_found(void **state)
{
    char why[96];
    BAD("\"a\nb\"", "a raw control character (0x0a) inside a string at byte 2");
    BAD("{\"a\": \"\tb\"}", "a raw control character (0x09) inside a string at byte 7");
    BAD("{\x01}", "a raw control character (0x01) at byte 1");
    BAD("{\"a\": 1}\0junk", "a NUL byte at byte 8");
    BAD("\"\\\n\"", "a raw control character (0x0a) inside a string at byte 2");
    /* after an escaped quote the string goes on */
    BAD("\"\\\"\n\"", "a raw control character (0x0a) inside a string at byte 3");
}

static void utf8_alone_is_checked_apart(void **state)
{
    assert_true(corral_utf8_valid("caf\xc3\xa9\n\0x", 8)); /* control bytes and NUL pass */
    assert_true(corral_utf8_valid("", 0));
    assert_false(corral_utf8_valid("\xff", 1));
    assert_false(corral_utf8_valid("\xed\xa0\x80", 3)); /* a surrogate */
    assert_false(corral_utf8_valid("\xe4\xbd", 2));     /* cut short */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_text_passes),
        cmocka_unit_test(invalid_utf8_is_found_with_its_offset),
        cmocka_unit_test(control_characters_and_nul_are_found),
        cmocka_unit_test(utf8_alone_is_checked_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

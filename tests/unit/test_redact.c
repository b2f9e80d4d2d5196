/* Unit tests for the redactor (common/redact.c): every form in which a
 * service may echo a credential it was sent is taken out of a text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "corral/redact.h"

#define KEY "sk-corraltest-k3y/A+b=Z9qL"

static struct corral_redactor *with_key(void)
{
    struct corral_redactor *r = corral_redactor_new();
    assert_int_equal(corral_redactor_add(r, KEY, strlen(KEY)), 1);
    return r;
}

/* The text redacted with flags; "" when nothing was taken out. Static. */
static const char *red(const struct corral_redactor *r, const char *text, unsigned flags)
{
    static char buf[4096];
    size_t n = 0;
    char *out = corral_redact(r, text, strlen(text), flags, &n);
    if (out == NULL)
        return "";
    assert_int_equal(n, strlen(out));
    snprintf(buf, sizeof(buf), "%s", out);
    free(out);
    return buf;
}

static void the_raw_key_is_replaced_wherever_it_appears(void **state)
{
    struct corral_redactor *r = with_key();
    assert_string_equal(red(r, "bad key " KEY "!", 0), "bad key [REDACTED]!");
    assert_string_equal(red(r, KEY, 0), "[REDACTED]");
    assert_string_equal(red(r, KEY KEY " and " KEY, 0), "[REDACTED] and [REDACTED]");
    corral_redactor_free(r);
}

static void a_text_without_a_secret_is_left_as_it_is(void **state)
{
    struct corral_redactor *r = with_key();
    size_t n = 99;
    assert_null(corral_redact(r, "HTTP 401: nope", 14, CORRAL_REDACT_CUT, &n));
    assert_null(corral_redact(r, "", 0, CORRAL_REDACT_CUT, &n));
    assert_null(corral_redact(NULL, KEY, strlen(KEY), 0, &n));
    assert_int_equal(n, 99);
    corral_redactor_free(r);
}

static void the_key_in_another_letter_case_is_replaced(void **state)
{
    struct corral_redactor *r = with_key();
    assert_string_equal(red(r, "x SK-CORRALTEST-K3Y/A+B=Z9QL y", 0), "x [REDACTED] y");
    assert_string_equal(red(r, "sk-corraltest-k3y/a+b=z9ql", 0), "[REDACTED]");
    corral_redactor_free(r);
}

static void escaped_forms_of_the_key_are_replaced_whole(void **state)
{
    struct corral_redactor *r = with_key();
    /* percent-encoding, upper and lower hex; mixed with raw characters */
    assert_string_equal(red(r, "?k=sk-corraltest-k3y%2FA%2Bb%3DZ9qL&x=1", 0), "?k=[REDACTED]&x=1");
    assert_string_equal(red(r, "sk%2dcorraltest-k3y%2fA+b%3dZ9qL", 0), "[REDACTED]");
    /* JSON: "\/" and \u escapes */
    assert_string_equal(red(r, "{\"k\": \"sk-corraltest-k3y\\/A+b=Z9qL\"}", 0),
                        "{\"k\": \"[REDACTED]\"}");
    assert_string_equal(red(r, "sk\\u002dcorraltest-k3y\\u002FA\\u002bb=Z9qL", 0), "[REDACTED]");
    /* HTML entities, named and numeric */
    assert_string_equal(red(r, "<p>sk&#45;corraltest&#x2d;k3y&#47;A&plus;b&equals;Z9qL</p>", 0),
                        "<p>[REDACTED]</p>");
    assert_string_equal(red(r, "sk-corraltest-k3y&sol;A+b=Z9qL", 0), "[REDACTED]");
    /* twice escaped: a percent-encoded key inside a JSON string, JSON inside a URL */
    assert_string_equal(red(r, "sk-corraltest-k3y%252FA%252Bb%253DZ9qL", 0), "[REDACTED]");
    assert_string_equal(red(r, "sk-corraltest-k3y%5C%2FA+b=Z9qL", 0), "[REDACTED]");
    corral_redactor_free(r);
}

static void a_key_cut_by_the_end_of_a_truncated_text_goes_too(void **state)
{
    struct corral_redactor *r = with_key();
    assert_string_equal(red(r, "HTTP 401: Bearer sk-corraltest-k3", CORRAL_REDACT_CUT),
                        "HTTP 401: Bearer [REDACTED]");
    assert_string_equal(red(r, "Bearer sk-c", CORRAL_REDACT_CUT), "Bearer [REDACTED]");
    /* fewer than CORRAL_REDACT_MIN_TAIL characters are not taken for the key */
    assert_string_equal(red(r, "Bearer sk-", CORRAL_REDACT_CUT), "");
    /* cut inside an escape: "%2" of "%2F" */
    assert_string_equal(red(r, "k=sk-corraltest-k3y%2", CORRAL_REDACT_CUT), "k=[REDACTED]");
    assert_string_equal(red(r, "k=sk-corraltest-k3y\\u00", CORRAL_REDACT_CUT), "k=[REDACTED]");
    assert_string_equal(red(r, "k=sk-corraltest-k3y&#4", CORRAL_REDACT_CUT), "k=[REDACTED]");
    /* without the flag the end of a text is only the end */
    assert_string_equal(red(r, "Bearer sk-corraltest-k3", 0), "");
    corral_redactor_free(r);
}

static void overlapping_secrets_are_replaced_as_one_run(void **state)
{
    struct corral_redactor *r = corral_redactor_new();
    corral_redactor_add(r, "abcdefgh", 8);
    corral_redactor_add(r, "efghijkl", 8);
    assert_string_equal(red(r, "<abcdefghijkl>", 0), "<[REDACTED]>");
    corral_redactor_free(r);
    r = corral_redactor_new();
    corral_redactor_add(r, "abab", 4);
    assert_string_equal(red(r, "xababababx", 0), "x[REDACTED]x");
    corral_redactor_free(r);
}

static void short_and_repeated_secrets_are_not_added(void **state)
{
    struct corral_redactor *r = corral_redactor_new();
    assert_int_equal(corral_redactor_add(r, "abc", 3), 0);
    assert_int_equal(corral_redactor_add(r, "abcd", 4), 1);
    assert_int_equal(corral_redactor_add(r, "ABCD", 4), 0);
    assert_int_equal(corral_redactor_count(r), 1);
    assert_int_equal(corral_redactor_add(NULL, "abcd", 4), 0);
    corral_redactor_free(r);
    corral_redactor_free(NULL);
}

static void credential_headers_are_known_by_name(void **state)
{
    assert_true(corral_header_is_secret("Authorization: Bearer x"));
    assert_true(corral_header_is_secret("X-Api-Key: x"));
    assert_true(corral_header_is_secret("x-goog-api-KEY: x"));
    assert_true(corral_header_is_secret("Cookie: a=b"));
    assert_true(corral_header_is_secret("X-Session-Id: x"));
    assert_true(corral_header_is_secret("X-Amz-Signature: x"));
    assert_true(corral_header_is_secret("X-Password: x"));
    assert_true(corral_header_is_secret("X-Client-Secret: x"));
    assert_true(corral_header_is_secret("X-Access-Token: x"));
    assert_false(corral_header_is_secret("X-Team: secret-sauce"));
    assert_false(corral_header_is_secret("OpenAI-Organization: org-1"));
}

static void a_credential_headers_value_and_its_parts_are_secrets(void **state)
{
    struct corral_redactor *r = corral_redactor_new();
    assert_int_equal(corral_redactor_add_header(r, "X-Team: corral-tests"), 0);
    assert_true(corral_redactor_add_header(r, "Authorization: Bearer tok-12345678") > 0);
    assert_string_equal(red(r, "got tok-12345678", 0), "got [REDACTED]");
    /* the whole value is a secret too: one run */
    assert_string_equal(red(r, "got Bearer tok-12345678", 0), "got [REDACTED]");
    /* the scheme word alone is not a secret */
    assert_string_equal(red(r, "expected a Bearer token", 0), "");
    assert_true(corral_redactor_add_header(r, "Cookie: theme=dark; session=s3cr3t-c00kie") > 0);
    assert_string_equal(red(r, "sid s3cr3t-c00kie", 0), "sid [REDACTED]");
    assert_string_equal(red(r, "dark mode", 0), "");
    corral_redactor_free(r);
}

static void basic_credentials_are_secret_decoded_too(void **state)
{
    struct corral_redactor *r = corral_redactor_new();
    /* base64 of "alice:wonderland-42" */
    corral_redactor_add_header(r, "Authorization: Basic YWxpY2U6d29uZGVybGFuZC00Mg==");
    assert_string_equal(red(r, "who? alice:wonderland-42", 0), "who? [REDACTED]");
    assert_string_equal(red(r, "password wonderland-42 wrong", 0), "password [REDACTED] wrong");
    assert_string_equal(red(r, "YWxpY2U6d29uZGVybGFuZC00Mg==", 0), "[REDACTED]");
    corral_redactor_free(r);
}

static void a_url_password_is_hidden_on_request(void **state)
{
    assert_string_equal(red(NULL, "see https://bob:hunter2@host/x", CORRAL_REDACT_URLS),
                        "see https://bob:[REDACTED]@host/x");
    assert_string_equal(red(NULL, "https://bob@host/x http://h:80/", CORRAL_REDACT_URLS), "");
    assert_string_equal(red(NULL, "see https://bob:hunter2@host/x", 0), "");
}

static void a_buffer_is_redacted_in_place_and_cut_to_fit(void **state)
{
    struct corral_redactor *r = corral_redactor_new();
    corral_redactor_add(r, "abcd", 4);
    char buf[12] = "x abcd y";
    assert_int_equal(corral_redact_buf(r, buf, sizeof(buf), 0), 1);
    assert_string_equal(buf, "x [REDACTED");
    char clean[16] = "nothing here";
    assert_int_equal(corral_redact_buf(r, clean, sizeof(clean), 0), 0);
    assert_string_equal(clean, "nothing here");
    corral_redactor_free(r);
    /* the cut made to fit ends in a secret's start: that goes too */
    r = corral_redactor_new();
    corral_redactor_add(r, "abcdefgh", 8);
    char b2[18] = "abcdefgh abcdefZZ";
    assert_int_equal(corral_redact_buf(r, b2, sizeof(b2), 0), 1);
    assert_string_equal(b2, "[REDACTED] [REDAC");
    corral_redactor_free(r);
}

static void binary_bytes_and_nul_do_not_stop_the_search(void **state)
{
    struct corral_redactor *r = with_key();
    char text[64];
    memcpy(text, "\0\xff\x01", 3);
    memcpy(text + 3, KEY, strlen(KEY));
    size_t n = 0;
    char *out = corral_redact(r, text, 3 + strlen(KEY), 0, &n);
    assert_non_null(out);
    assert_int_equal(n, 3 + strlen(CORRAL_REDACTED));
    assert_memory_equal(out + 3, CORRAL_REDACTED, strlen(CORRAL_REDACTED));
    free(out);
    corral_redactor_free(r);
}

static void a_secret_far_into_an_escaped_text_is_found_where_it_is(void **state)
{
    /* Past several of redact.c's checkpoints, with escapes all the way:
     * the run replaced is exactly the encoded key. */
    struct corral_redactor *r = with_key();
    const char *filler = "a\\nb%20c&amp;\\u00e9 ";
    const char *enc = "sk-corraltest-k3y%2FA%2Bb%3DZ9qL";
    size_t reps = 3000, fl = strlen(filler), el = strlen(enc);
    char *text = malloc(2 * reps * fl + el + 1);
    char *want = malloc(2 * reps * fl + strlen(CORRAL_REDACTED) + 1);
    size_t n = 0, w = 0;
    for (size_t i = 0; i < reps; i++, n += fl, w += fl) {
        memcpy(text + n, filler, fl);
        memcpy(want + w, filler, fl);
    }
    memcpy(text + n, enc, el);
    n += el;
    memcpy(want + w, CORRAL_REDACTED, strlen(CORRAL_REDACTED));
    w += strlen(CORRAL_REDACTED);
    for (size_t i = 0; i < reps; i++, n += fl, w += fl) {
        memcpy(text + n, filler, fl);
        memcpy(want + w, filler, fl);
    }
    size_t ol = 0;
    char *out = corral_redact(r, text, n, 0, &ol);
    assert_non_null(out);
    assert_int_equal(ol, w);
    assert_memory_equal(out, want, w);
    free(out);
    free(text);
    free(want);
    corral_redactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_raw_key_is_replaced_wherever_it_appears),
        cmocka_unit_test(a_text_without_a_secret_is_left_as_it_is),
        cmocka_unit_test(the_key_in_another_letter_case_is_replaced),
        cmocka_unit_test(escaped_forms_of_the_key_are_replaced_whole),
        cmocka_unit_test(a_key_cut_by_the_end_of_a_truncated_text_goes_too),
        cmocka_unit_test(overlapping_secrets_are_replaced_as_one_run),
        cmocka_unit_test(short_and_repeated_secrets_are_not_added),
        cmocka_unit_test(credential_headers_are_known_by_name),
        cmocka_unit_test(a_credential_headers_value_and_its_parts_are_secrets),
        cmocka_unit_test(basic_credentials_are_secret_decoded_too),
        cmocka_unit_test(a_url_password_is_hidden_on_request),
        cmocka_unit_test(a_buffer_is_redacted_in_place_and_cut_to_fit),
        cmocka_unit_test(binary_bytes_and_nul_do_not_stop_the_search),
        cmocka_unit_test(a_secret_far_into_an_escaped_text_is_found_where_it_is),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The character-level checks of JSON text; see jsontext.h. One pass, no
 * allocation: a worker runs it on every payload before any call. */
#include "corral/jsontext.h"

#include <stdio.h>

/* Length of the UTF-8 sequence at s[i..n), or 0 when it is not valid. */
static size_t utf8_seq(const unsigned char *s, size_t i, size_t n)
{
    unsigned c = s[i];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else
        return 0;
    if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if (s[i + k] < 0x80 || s[i + k] > 0xBF)
            return 0;
    return len;
}

int corral_utf8_valid(const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        size_t len = s[i] < 0x80 ? 1 : utf8_seq(s, i, n);
        if (len == 0)
            return 0;
        i += len;
    }
    return 1;
}

int corral_json_text_check(const char *text, size_t n, char *why, size_t whylen)
{
    const unsigned char *s = (const unsigned char *)text;
    int in_string = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c >= 0x80) {
            size_t len = utf8_seq(s, i, n);
            if (len == 0) {
                snprintf(why, whylen, "invalid UTF-8 at byte %zu", i);
                return -1;
            }
            i += len;
            continue;
        }
        if (c == 0) {
            snprintf(why, whylen, "a NUL byte at byte %zu", i);
            return -1;
        }
        if (c < 0x20 && (in_string || (c != '\t' && c != '\n' && c != '\r'))) {
            snprintf(why, whylen, "a raw control character (0x%02x) %sat byte %zu", c,
                     in_string ? "inside a string " : "", i);
            return -1;
        }
        if (c == '"')
            in_string = !in_string;
        else if (c == '\\' && in_string && i + 1 < n && s[i + 1] >= 0x20 && s[i + 1] < 0x80)
            i++; /* the escaped character cannot end the string */
        i++;
    }
    return 0;
}

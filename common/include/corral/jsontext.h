/* Private to corral's programs, which link the static libcorral.a: not
 * installed, not exported by libcorral.so (the public API is include/corral/). */
/* Whether bytes are JSON text as far as RFC 8259 asks of the characters:
 * valid UTF-8 (shortest forms, no surrogates, at most U+10FFFF), no NUL,
 * and no raw control characters except tab, newline and carriage return
 * between tokens. The grammar is not checked here: Redis's cjson does that
 * at enqueue, but it checks none of the above, and Lua is too slow to. */
#ifndef CORRAL_JSONTEXT_H
#define CORRAL_JSONTEXT_H

#include <stddef.h>

/* 0 when s[0..n) passes; -1 otherwise, with what and where (a byte offset)
 * written to why, e.g. "invalid UTF-8 at byte 12". */
int corral_json_text_check(const char *s, size_t n, char *why, size_t whylen);

/* Whether s[0..n) is valid UTF-8 (the same rules as above, and nothing
 * else: NUL and control characters pass). */
int corral_utf8_valid(const char *s, size_t n);

#endif

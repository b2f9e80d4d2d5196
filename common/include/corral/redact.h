/* Taking secrets out of text before it is stored, logged or published: a
 * service may echo the API key or a credential header it was sent, in its
 * error page, a 429's reason or even a result (docs/worker.md, "Secrets").
 * A redactor holds the secrets a process sends; corral_redact replaces each
 * place one appears in a text with CORRAL_REDACTED, whether the text shows
 * it raw, percent-encoded, JSON- or HTML-escaped (nested up to twice), in
 * any letter case, or cut short at the text's end. */
#ifndef CORRAL_REDACT_H
#define CORRAL_REDACT_H

#include <stddef.h>

#define CORRAL_REDACTED "[REDACTED]"
/* Shorter values are not taken as secrets: they would mask common words
 * and cannot be kept secret anyway. */
#define CORRAL_REDACT_MIN_SECRET 4
/* With CORRAL_REDACT_CUT, a text that ends with this many or more of a
 * secret's first characters loses them. */
#define CORRAL_REDACT_MIN_TAIL 4

enum corral_redact_flags {
    CORRAL_REDACT_CUT = 1,  /* the text may be cut short (an excerpt, a kept prefix) */
    CORRAL_REDACT_URLS = 2, /* also hide the password of any scheme://user:password@ */
};

struct corral_redactor;

/* An empty redactor. Free with corral_redactor_free. */
struct corral_redactor *corral_redactor_new(void);

/* Clears every copy of a secret it holds, then frees. NULL is fine. */
void corral_redactor_free(struct corral_redactor *r);

/* Adds a secret (copied). 1 when added, 0 when shorter than
 * CORRAL_REDACT_MIN_SECRET or already held. */
int corral_redactor_add(struct corral_redactor *r, const char *secret, size_t len);

/* Adds what a configured header line "Name: value" sends as a credential,
 * when corral_header_is_secret says it carries one: the whole value, each
 * word of it and each name=value's value (a scheme word such as "Bearer"
 * or "Basic" excepted), and for Basic the decoded user:password and
 * password. Returns how many secrets were added. */
int corral_redactor_add_header(struct corral_redactor *r, const char *line);

/* Whether a header line's name (before the ':') looks like a credential:
 * it contains auth, cookie, key, token, secret, passw, session or
 * signature, in any case. */
int corral_header_is_secret(const char *line);

/* How many secrets r holds. */
size_t corral_redactor_count(const struct corral_redactor *r);

/* text[0..len) with each secret (flags: enum corral_redact_flags) replaced
 * by CORRAL_REDACTED. Returns a new NUL-terminated string the caller
 * frees, its length in *out_len; or NULL when there was nothing to take
 * out (the text may be used as it is). r may be NULL (no secrets). */
char *corral_redact(const struct corral_redactor *r, const char *text, size_t len, unsigned flags,
                    size_t *out_len);

/* The same in place, for a NUL-terminated string in a buffer of cap bytes:
 * what no longer fits is cut. Returns 1 when something was taken out. */
int corral_redact_buf(const struct corral_redactor *r, char *buf, size_t cap, unsigned flags);

#endif

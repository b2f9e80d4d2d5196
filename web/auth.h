/* corral-web's checks on who may act: the token (constant-time compare),
 * session cookies set by the login form, and the same-origin and Host
 * checks that keep other sites (and DNS rebinding) out. Everything but the
 * session table is a pure function; the table is thread-safe. docs/web.md
 * describes the rules. */
#ifndef CORRAL_WEB_AUTH_H
#define CORRAL_WEB_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define WEB_COOKIE          "corral_session"
#define WEB_SESSION_ID_LEN  64 /* hex of 32 random bytes */
#define WEB_SESSIONS_MAX    64
#define WEB_SESSION_TTL_MS  (12LL * 3600 * 1000)
#define WEB_TOKEN_MIN_BYTES 16

/* 1 when given equals secret. The time taken depends on secret_len only,
 * never on where the first difference is or on given's length. */
int web_token_equal(const char *given, size_t given_len, const char *secret, size_t secret_len);

/* The token of an "Authorization: Bearer TOKEN" value (scheme matched
 * without regard to case, blanks after it skipped), or NULL. */
const char *web_bearer(const char *authorization);

/* 1 when a browser request may act. Sec-Fetch-Site, which browsers set
 * and pages cannot, decides when sent: same-origin or none. Without it (an
 * older browser), Origin when sent must be http:// or https:// plus host,
 * or plus fwd_host (X-Forwarded-Host, from a proxy in front; a page cannot
 * add it to a cross-site request without a preflight, which is never
 * answered). Requests with neither header (curl, scripts) pass: they still
 * need the token. NULL means the header is absent. */
int web_origin_ok(const char *host, const char *fwd_host, const char *origin,
                  const char *fetch_site);

/* 1 when host (the Host header, NULL when absent) names the loopback:
 * localhost, 127.0.0.0/8 or [::1], with or without a port. A server bound
 * to the loopback answers only to these names, so a page whose DNS name
 * was rebound to 127.0.0.1 cannot read it. */
int web_host_is_loopback(const char *host);

/* Finds key in an application/x-www-form-urlencoded body and writes its
 * decoded value (+ is a blank, %XX a byte) into out. Returns the value's
 * length, or -1 when the key is absent, malformed or does not fit. */
long web_form_value(const char *body, size_t len, const char *key, char *out, size_t outlen);

/* Sessions: random ids, each valid for WEB_SESSION_TTL_MS; at most
 * WEB_SESSIONS_MAX (a new one replaces the oldest). */
struct web_sessions;
struct web_sessions *web_sessions_new(void);
void web_sessions_free(struct web_sessions *s);
/* Writes a new session id (WEB_SESSION_ID_LEN hex characters and a NUL)
 * into id. Returns 0, or -1 when no random bytes could be had. */
int web_sessions_create(struct web_sessions *s, int64_t now_ms, char *id);
/* 1 when id is a live session (compared in constant time). */
int web_sessions_check(struct web_sessions *s, const char *id, int64_t now_ms);
void web_sessions_drop(struct web_sessions *s, const char *id);

#endif

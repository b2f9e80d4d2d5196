/* corral-web's listen address: "ADDR:PORT" with a numeric IPv4 address, a
 * bracketed IPv6 one ("[::1]:8470") or "localhost". Pure; unit-tested. */
#ifndef CORRAL_WEB_LISTEN_H
#define CORRAL_WEB_LISTEN_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "corral/err.h"

#define WEB_DEFAULT_LISTEN "127.0.0.1:8470"

struct web_listen {
    struct sockaddr_storage addr;
    socklen_t len;
    int loopback; /* 127.0.0.0/8 or ::1 */
};

/* Parses s; 0, or -1 with err quoting s and saying what is expected. */
int web_listen_parse(const char *s, struct web_listen *out, struct corral_err *err);

#endif

/* corral-web: parses the listen address (see listen.h). Numeric addresses
 * only (and "localhost"), so nothing is looked up in DNS at start. */
#include "listen.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "corral/config.h"

static int bad(const char *s, struct corral_err *err)
{
    return corral_err_set(err, CORRAL_ERR_INVALID,
                          "expected ADDR:PORT with a numeric IPv4 address, [IPv6] or localhost "
                          "and a port from 1 to 65535 (got \"%.80s\")",
                          s);
}

int web_listen_parse(const char *s, struct web_listen *out, struct corral_err *err)
{
    memset(out, 0, sizeof(*out));
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s)
        return bad(s, err);
    int64_t port;
    struct corral_err perr;
    if (corral_parse_int(colon + 1, 1, 65535, &port, &perr) < 0)
        return bad(s, err);
    char host[64];
    size_t n = (size_t)(colon - s);
    if (n >= sizeof(host))
        return bad(s, err);
    memcpy(host, s, n);
    host[n] = '\0';
    if (host[0] == '[') {
        if (n < 3 || host[n - 1] != ']')
            return bad(s, err);
        host[n - 1] = '\0';
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->addr;
        if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1)
            return bad(s, err);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*a6);
        out->loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
        return 0;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)&out->addr;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    /* inet_pton takes dotted quads only (no "127.1", no octal). */
    if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
        return bad(s, err);
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    out->len = sizeof(*a4);
    out->loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
    return 0;
}

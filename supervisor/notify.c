/* sd_notify over a unix datagram socket, as systemd documents the protocol:
 * the socket is connectionless, so each message is one sendto(). */
#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int fd = -1;
static struct sockaddr_un addr;
static socklen_t addr_len;
static int64_t watchdog_ms;

void corral_notify_init(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    const char *wd = getenv("WATCHDOG_USEC");
    const char *wd_pid = getenv("WATCHDOG_PID");
    watchdog_ms = 0;
    if (wd != NULL && (wd_pid == NULL || atol(wd_pid) == (long)getpid()))
        watchdog_ms = atoll(wd) / 1000;
    if (path == NULL || path[0] == '\0' || strlen(path) >= sizeof(addr.sun_path))
        return;
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    size_t n = strlen(path);
    memcpy(addr.sun_path, path, n);
    if (path[0] == '@')
        addr.sun_path[0] = '\0';
    addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
}

int corral_notify_enabled(void)
{
    return fd >= 0;
}

int64_t corral_notify_watchdog_ms(void)
{
    return watchdog_ms;
}

int corral_notify(const char *fmt, ...)
{
    if (fd < 0)
        return 0;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n >= sizeof(msg))
        n = sizeof(msg) - 1;
    ssize_t w;
    do
        w = sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&addr, addr_len);
    while (w < 0 && errno == EINTR);
    return w == n ? 0 : -1;
}

void corral_notify_close(void)
{
    if (fd >= 0)
        close(fd);
    fd = -1;
}

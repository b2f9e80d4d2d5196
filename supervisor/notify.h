/* sd_notify(3) without libsystemd: one datagram per message to
 * $NOTIFY_SOCKET (a path, or an abstract name starting with '@'). All calls
 * are no-ops when corrald does not run under systemd with Type=notify. */
#ifndef CORRAL_NOTIFY_H
#define CORRAL_NOTIFY_H

#include <stdint.h>

/* Reads NOTIFY_SOCKET and WATCHDOG_USEC (honouring WATCHDOG_PID). */
void corral_notify_init(void);
/* 1 when NOTIFY_SOCKET is set. */
int corral_notify_enabled(void);
/* Sends one message, e.g. "READY=1\nSTATUS=4 workers". Returns 0, or -1
 * when sending failed (never fatal for the caller). */
int corral_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The watchdog interval systemd expects pings within, in ms; 0 when off. */
int64_t corral_notify_watchdog_ms(void);
void corral_notify_close(void);

#endif

/* The messages of the worker's control channel (control.h, docs/worker.md
 * "Cancel"): what corral_cancel publishes, read apart from the connection
 * so that the parser can be fuzzed alone (tests/fuzz/fuzz_wmsg.c). */
#ifndef CORRAL_CTLMSG_H
#define CORRAL_CTLMSG_H

#include <stddef.h>

/* Parses a control message "cancel <queue> <id> <run>" into the three
 * words, each copied into its buffer of size cap. 0, or -1 when the
 * message is of another kind or malformed (a word over cap - 1 bytes). */
int corral_control_parse_cancel(const char *msg, size_t len, char *queue, char *id, char *run,
                                size_t cap);

#endif

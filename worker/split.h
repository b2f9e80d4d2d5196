/* Command lines for the exec handler, split without a shell. */
#ifndef CORRAL_SPLIT_H
#define CORRAL_SPLIT_H

#include "corral/err.h"

/* Splits a command line on blanks, honouring '...' and "..." quotes and
 * backslash escapes, without a shell. Returns a NULL-terminated argv
 * (free with corral_argv_free), or NULL with err set. */
char **corral_split_command(const char *cmd, struct corral_err *err);
void corral_argv_free(char **argv);

#endif

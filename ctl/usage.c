/* The one way corralctl reports bad usage: a message and a hint, exit 2. */
#include <stdio.h>

#include "ctl.h"

int ctl_usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "corralctl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see corralctl --help)\n");
    return CTL_EXIT_USAGE;
}

/* struct corral_err helpers: bounded formatting, never allocating, so they
 * can be used on out-of-memory paths. */
#include "corral/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int corral_err_set(struct corral_err *err, enum corral_err_code code, const char *fmt, ...)
{
    if (err == NULL)
        return -1;
    err->code = code;
    err->word = CORRAL_WORD_NONE;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}

void corral_err_prefix(struct corral_err *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    char head[CORRAL_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof(head), fmt, ap);
    va_end(ap);
    char old[CORRAL_ERR_MSG_MAX];
    memcpy(old, err->msg, sizeof(old));
    snprintf(err->msg, sizeof(err->msg), "%s: %s", head, old);
}

void corral_err_clear(struct corral_err *err)
{
    if (err == NULL)
        return;
    err->code = CORRAL_OK;
    err->word = CORRAL_WORD_NONE;
    err->msg[0] = '\0';
}

/* The one table of error-reply code words (private to libcorral): each
 * word corral's Function library or Redis begins an error reply with, the
 * value callers switch on, and the broad code it counts as. */
#ifndef CORRAL_QUEUE_CODES_H
#define CORRAL_QUEUE_CODES_H

#include <stddef.h>

#include "corral/err.h"

/* Looks up the word an error reply's text begins with. *code_out gets the
 * broad code (INVALID, NOTFOUND or REDIS) and *skip_out how many bytes of
 * text to leave out of a message for people: corral's own word, or Redis's
 * generic "ERR ", with the space after it (0 for Redis's other words, which
 * say something to people too). */
enum corral_err_word corral_codes_lookup(const char *text, size_t len,
                                         enum corral_err_code *code_out, size_t *skip_out);

#endif

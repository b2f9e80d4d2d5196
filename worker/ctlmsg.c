/* Control-channel messages (ctlmsg.h). */
#include "ctlmsg.h"

#include <string.h>

/* The next space-separated word of [*p, end) into out (cap bytes). */
static int next_word(const char **p, const char *end, char *out, size_t cap)
{
    const char *s = *p;
    while (s < end && *s == ' ')
        s++;
    const char *e = s;
    while (e < end && *e != ' ')
        e++;
    /* A NUL would cut the word short where it is used as a C string: the
     * cancel would name another queue or job (found by fuzz_wmsg). */
    if (e == s || (size_t)(e - s) >= cap || memchr(s, '\0', (size_t)(e - s)) != NULL)
        return -1;
    memcpy(out, s, (size_t)(e - s));
    out[e - s] = '\0';
    *p = e;
    return 0;
}

int corral_control_parse_cancel(const char *msg, size_t len, char *queue, char *id, char *run,
                                size_t cap)
{
    const char *p = msg, *end = msg + len;
    char verb[8];
    if (next_word(&p, end, verb, sizeof(verb)) < 0 || strcmp(verb, "cancel") != 0)
        return -1;
    if (next_word(&p, end, queue, cap) < 0 || next_word(&p, end, id, cap) < 0 ||
        next_word(&p, end, run, cap) < 0)
        return -1;
    while (p < end && *p == ' ')
        p++;
    return p == end ? 0 : -1;
}

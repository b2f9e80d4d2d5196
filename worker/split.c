/* Command lines for the exec handler, split without a shell: blanks
 * separate words; '...' is literal, "..." allows \" and \\, a backslash
 * outside quotes escapes the next character. No expansion of any kind. */
#include <stdlib.h>
#include <string.h>

#include "corral/util.h"
#include "split.h"

void corral_argv_free(char **argv)
{
    if (argv == NULL)
        return;
    for (char **a = argv; *a; a++)
        free(*a);
    free(argv);
}

char **corral_split_command(const char *cmd, struct corral_err *err)
{
    size_t cap = 8, n = 0;
    char **argv = corral_xcalloc(cap, sizeof(char *));
    size_t len = strlen(cmd);
    char *word = corral_xmalloc(len + 1);
    const char *p = cmd;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        size_t wl = 0;
        while (*p != '\0' && *p != ' ' && *p != '\t') {
            if (*p == '\'') {
                const char *end = strchr(p + 1, '\'');
                if (end == NULL)
                    goto unterminated;
                memcpy(word + wl, p + 1, (size_t)(end - p - 1));
                wl += (size_t)(end - p - 1);
                p = end + 1;
            } else if (*p == '"') {
                p++;
                while (*p != '"') {
                    if (*p == '\0')
                        goto unterminated;
                    if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
                        p++;
                    word[wl++] = *p++;
                }
                p++;
            } else if (*p == '\\' && p[1] != '\0') {
                word[wl++] = p[1];
                p += 2;
            } else {
                word[wl++] = *p++;
            }
        }
        if (n + 2 > cap) {
            cap *= 2;
            argv = corral_xrealloc(argv, cap * sizeof(char *));
        }
        argv[n++] = corral_xstrndup(word, wl);
        argv[n] = NULL;
    }
    free(word);
    if (n == 0) {
        corral_argv_free(argv);
        corral_err_set(err, CORRAL_ERR_INVALID, "empty command");
        return NULL;
    }
    return argv;
unterminated:
    free(word);
    corral_argv_free(argv);
    corral_err_set(err, CORRAL_ERR_INVALID, "unterminated quote in \"%s\"", cmd);
    return NULL;
}

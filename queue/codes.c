/* Error replies as values: the code word that begins each error reply of
 * the corral Function library (queue/lua, docs/protocol.md "Error
 * replies") or of Redis, mapped in one table. Nothing else in corral looks
 * at the text of an error reply. */
#include "codes.h"

#include <string.h>

#include "corral/queue.h"

struct code_row {
    const char *word; /* as documented, and as the reply begins */
    const char *text; /* NULL: the reply's first word is the word; else the
                       * whole text (prefix set: its beginning) */
    int prefix;
    enum corral_err_word value;
    enum corral_err_code code;
    int ours; /* the first word is left out of messages: corral's, and ERR */
};

/* Redis answers a few errors that matter with its generic ERR and fixed
 * text instead of a word of their own: those rows name a word of ours
 * (NOFUNCTION, NOCOMMAND) and match that text, and come before ERR's. */
static const struct code_row rows[] = {
    {"BADARG", NULL, 0, CORRAL_WORD_BADARG, CORRAL_ERR_INVALID, 1},
    {"BADNAME", NULL, 0, CORRAL_WORD_BADNAME, CORRAL_ERR_INVALID, 1},
    {"NOQUEUE", NULL, 0, CORRAL_WORD_NOQUEUE, CORRAL_ERR_NOTFOUND, 1},
    {"NOSERVICE", NULL, 0, CORRAL_WORD_NOSERVICE, CORRAL_ERR_NOTFOUND, 1},
    {"BADPAYLOAD", NULL, 0, CORRAL_WORD_BADPAYLOAD, CORRAL_ERR_INVALID, 1},
    {"TOOBIG", NULL, 0, CORRAL_WORD_TOOBIG, CORRAL_ERR_INVALID, 1},
    {"BADOPTION", NULL, 0, CORRAL_WORD_BADOPTION, CORRAL_ERR_INVALID, 1},
    {"BADSETTING", NULL, 0, CORRAL_WORD_BADSETTING, CORRAL_ERR_INVALID, 1},
    {"NOJOB", NULL, 0, CORRAL_WORD_NOJOB, CORRAL_ERR_NOTFOUND, 1},
    {"RUNNING", NULL, 0, CORRAL_WORD_RUNNING, CORRAL_ERR_INVALID, 1},
    {"FINISHED", NULL, 0, CORRAL_WORD_FINISHED, CORRAL_ERR_INVALID, 1},
    {"NOTDEAD", NULL, 0, CORRAL_WORD_NOTDEAD, CORRAL_ERR_INVALID, 1},
    {"BADTENANT", NULL, 0, CORRAL_WORD_BADTENANT, CORRAL_ERR_INVALID, 1},
    {"BADTOKENS", NULL, 0, CORRAL_WORD_BADTOKENS, CORRAL_ERR_INVALID, 1},
    {"BADDEADLINE", NULL, 0, CORRAL_WORD_BADDEADLINE, CORRAL_ERR_INVALID, 1},
    {"NOFUNCTION", "ERR Function not found", 0, CORRAL_WORD_NOFUNCTION, CORRAL_ERR_REDIS, 1},
    {"NOCOMMAND", "ERR unknown command ", 1, CORRAL_WORD_NOCOMMAND, CORRAL_ERR_REDIS, 1},
    {"NOSCRIPT", NULL, 0, CORRAL_WORD_NOSCRIPT, CORRAL_ERR_REDIS, 0},
    {"NOPERM", NULL, 0, CORRAL_WORD_NOPERM, CORRAL_ERR_REDIS, 0},
    {"NOAUTH", NULL, 0, CORRAL_WORD_NOAUTH, CORRAL_ERR_REDIS, 0},
    {"WRONGPASS", NULL, 0, CORRAL_WORD_WRONGPASS, CORRAL_ERR_REDIS, 0},
    {"READONLY", NULL, 0, CORRAL_WORD_READONLY, CORRAL_ERR_REDIS, 0},
    {"OOM", NULL, 0, CORRAL_WORD_OOM, CORRAL_ERR_REDIS, 0},
    {"MISCONF", NULL, 0, CORRAL_WORD_MISCONF, CORRAL_ERR_REDIS, 0},
    {"LOADING", NULL, 0, CORRAL_WORD_LOADING, CORRAL_ERR_REDIS, 0},
    {"MASTERDOWN", NULL, 0, CORRAL_WORD_MASTERDOWN, CORRAL_ERR_REDIS, 0},
    {"BUSY", NULL, 0, CORRAL_WORD_BUSY, CORRAL_ERR_REDIS, 0},
    {"WRONGTYPE", NULL, 0, CORRAL_WORD_WRONGTYPE, CORRAL_ERR_REDIS, 0},
    {"UNBLOCKED", NULL, 0, CORRAL_WORD_UNBLOCKED, CORRAL_ERR_REDIS, 0},
    {"MOVED", NULL, 0, CORRAL_WORD_MOVED, CORRAL_ERR_REDIS, 0},
    {"ASK", NULL, 0, CORRAL_WORD_ASK, CORRAL_ERR_REDIS, 0},
    {"CLUSTERDOWN", NULL, 0, CORRAL_WORD_CLUSTERDOWN, CORRAL_ERR_REDIS, 0},
    {"TRYAGAIN", NULL, 0, CORRAL_WORD_TRYAGAIN, CORRAL_ERR_REDIS, 0},
    {"ERR", NULL, 0, CORRAL_WORD_ERR, CORRAL_ERR_REDIS, 1},
};
#define N_ROWS (sizeof(rows) / sizeof(rows[0]))

enum corral_err_word corral_codes_lookup(const char *text, size_t len,
                                         enum corral_err_code *code_out, size_t *skip_out)
{
    size_t first = 0;
    while (first < len && text[first] != ' ')
        first++;
    for (size_t i = 0; i < N_ROWS; i++) {
        const struct code_row *row = &rows[i];
        const char *want = row->text ? row->text : row->word;
        size_t n = strlen(want);
        int hit = row->text == NULL ? first == n : row->prefix ? len >= n : len == n;
        if (hit && memcmp(text, want, n) == 0) {
            *code_out = row->code;
            *skip_out = row->ours ? (first < len ? first + 1 : first) : 0;
            return row->value;
        }
    }
    *code_out = CORRAL_ERR_REDIS;
    *skip_out = 0;
    return CORRAL_WORD_OTHER;
}

enum corral_err_word corral_reply_word(const char *text, size_t len)
{
    enum corral_err_code code;
    size_t skip;
    return corral_codes_lookup(text, len, &code, &skip);
}

const char *corral_err_word_name(enum corral_err_word word)
{
    for (size_t i = 0; i < N_ROWS; i++)
        if (rows[i].value == word)
            return rows[i].word;
    return word == CORRAL_WORD_NONE ? "" : "OTHER";
}

int corral_err_word_moved(enum corral_err_word word)
{
    switch (word) {
    case CORRAL_WORD_READONLY:
    case CORRAL_WORD_LOADING:
    case CORRAL_WORD_MASTERDOWN:
    case CORRAL_WORD_UNBLOCKED:
    case CORRAL_WORD_MOVED:
    case CORRAL_WORD_ASK:
    case CORRAL_WORD_CLUSTERDOWN:
    case CORRAL_WORD_TRYAGAIN:
        return 1;
    default:
        return 0;
    }
}

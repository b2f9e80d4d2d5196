/* The tables of corralctl status and breaker: every cell is collected
 * first, then each column is printed as wide as its widest cell (or its
 * title), so long queue names and many priority levels never push the
 * columns out of line (docs/status-watch.md). */
#include "table.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/util.h"

struct cell {
    char *text;
    const char *color; /* an escape sequence, or "" */
};

struct ctl_table {
    const struct ctl_col *cols;
    size_t ncols;
    struct cell *cells; /* row after row, ncols each */
    size_t ncells;
};

struct ctl_table *ctl_table_new(const struct ctl_col *cols, size_t ncols)
{
    struct ctl_table *t = corral_xcalloc(1, sizeof(*t));
    t->cols = cols;
    t->ncols = ncols;
    return t;
}

void ctl_table_cell(struct ctl_table *t, const char *color, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        abort(); /* only on OOM, as corral_xasprintf */
    va_end(ap);
    t->cells = corral_xrealloc(t->cells, sizeof(*t->cells) * (t->ncells + 1));
    t->cells[t->ncells].text = text;
    t->cells[t->ncells].color = color ? color : "";
    t->ncells++;
}

/* Characters on screen: UTF-8 continuation bytes take no column. */
static size_t width_of(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

/* Prints the blanks owed before text, so no line ends in blanks. */
static void flush_blanks(FILE *out, size_t *owed)
{
    for (; *owed > 0; (*owed)--)
        fputc(' ', out);
}

void ctl_table_print(const struct ctl_table *t, FILE *out, const char *bold, const char *off,
                     size_t *sticky)
{
    if (t->ncols == 0)
        return;
    size_t *w = corral_xcalloc(t->ncols, sizeof(size_t));
    for (size_t c = 0; c < t->ncols; c++)
        w[c] = width_of(t->cols[c].title);
    for (size_t i = 0; i < t->ncells; i++) {
        size_t c = i % t->ncols, n = width_of(t->cells[i].text);
        if (n > w[c])
            w[c] = n;
    }
    for (size_t c = 0; sticky != NULL && c < t->ncols; c++) {
        if (sticky[c] > w[c])
            w[c] = sticky[c];
        sticky[c] = w[c];
    }
    size_t rows = (t->ncells + t->ncols - 1) / t->ncols;
    for (size_t r = 0; r <= rows; r++) {
        size_t owed = 0;
        for (size_t c = 0; c < t->ncols; c++) {
            size_t i = (r - 1) * t->ncols + c;
            const char *text = r == 0 ? t->cols[c].title : i < t->ncells ? t->cells[i].text : "";
            const char *color = r == 0 ? bold : i < t->ncells ? t->cells[i].color : "";
            size_t n = width_of(text);
            if (c > 0)
                owed += 2;
            if (t->cols[c].right)
                owed += w[c] - n;
            if (n > 0) {
                flush_blanks(out, &owed);
                fprintf(out, "%s%s%s", color, text, color[0] ? off : "");
            }
            if (!t->cols[c].right)
                owed += w[c] - n;
        }
        fputc('\n', out);
    }
    free(w);
}

void ctl_table_free(struct ctl_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->ncells; i++)
        free(t->cells[i].text);
    free(t->cells);
    free(t);
}

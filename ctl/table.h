/* A text table sized to its content: cells are collected row by row, then
 * each column is printed as wide as its widest cell, two blanks apart;
 * right-aligned columns for numbers. Used by status and breaker. */
#ifndef CORRAL_CTL_TABLE_H
#define CORRAL_CTL_TABLE_H

#include <stddef.h>
#include <stdio.h>

struct ctl_col {
    const char *title;
    int right; /* 1: right-aligned (numbers) */
};

struct ctl_table;

/* cols must outlive the table. Free with ctl_table_free (NULL-safe). */
struct ctl_table *ctl_table_new(const struct ctl_col *cols, size_t ncols);
/* Appends the next cell, left to right, row after row; color is an escape
 * sequence for the cell's text, or NULL/"" for none. */
void ctl_table_cell(struct ctl_table *t, const char *color, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The title row (in bold, off ends it; "" for none), then every row.
 * sticky (NULL, or one entry per column, zeroed before the first print)
 * keeps the widest each column has been: status --watch passes it, so a
 * column does not narrow and widen as its numbers change. */
void ctl_table_print(const struct ctl_table *t, FILE *out, const char *bold, const char *off,
                     size_t *sticky);
void ctl_table_free(struct ctl_table *t);

#endif

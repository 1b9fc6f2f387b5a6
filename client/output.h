/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Output for people (aligned tables) and for programs (JSON). */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "util.h"

/* A table of strings, printed by libsmartcols: two spaces between
 * columns, the last column not padded, the header row (the legend) only
 * when asked. On a terminal the table fits its width: columns marked with
 * table_set_ellipsize() are shortened, with "…" where they are cut, never
 * wrapped; piped, nothing is cut. A table can be a tree (table_set_tree):
 * rows then have a parent row. */
typedef struct Table Table;
typedef struct libscols_line TableRow;

Table *table_new(const char *const *headers, size_t n_columns);
Table *table_free(Table *t);
static inline void table_freep(Table **t) {
        table_free(*t);
}
#define _cleanup_table_ _cleanup_(table_freep)

/* Column c may be shortened to fit the terminal. */
int table_set_ellipsize(Table *t, size_t c);
/* On a terminal, the cells of column c that do not fit are folded at
 * spaces into several lines (ellipsized when too little room is left).
 * For one column of a table that is not a tree. */
int table_set_wrap(Table *t, size_t c);
/* Column c draws the tree; rows added after table_set_parent(t, row) are
 * children of row (NULL: top level). */
int table_set_tree(Table *t, size_t c);
void table_set_parent(Table *t, TableRow *parent);
/* The row the last cell went into. */
TableRow *table_last_row(Table *t);

/* Adds the next cell, row by row; NULL and "" are shown as "-". */
int table_add_cell(Table *t, const char *s);
int table_add_cellf(Table *t, const char *fmt, ...) _printf_(2, 3);
/* Adds a cell left blank (not "-"): rows that only label a tree level. */
int table_add_blank(Table *t);
/* Colours the last cell added (a colour name: "red", "green", "yellow",
 * "bold"...) when colours are on. */
void table_color_last(Table *t, const char *color);
/* Adds a whole row of n_columns cells. */
int table_add_row(Table *t, ...);
size_t table_rows(const Table *t);
int table_print(Table *t, FILE *f, bool legend);

/* Colours: on when stdout is a terminal, unless NO_COLOR is set;
 * SYSTEMD_COLORS (a boolean, or 16/256/24bit) decides first when set. */
bool colors_enabled(void);
/* ANSI sequences, "" when colours are off. */
const char *ansi_red(void);
const char *ansi_green(void);
const char *ansi_yellow(void);
const char *ansi_bold(void);
const char *ansi_normal(void);

/* The width of the terminal on stdout (or fd), or 0 when it is not one. */
size_t terminal_columns(void);
size_t terminal_columns_of(int fd);
/* Whether stdout is a terminal, and its width and colours, remembered
 * before a pager takes stdout over (pager.h). */
void terminal_remember(void);
bool stdout_is_terminal(void);

/* Prints text folded to the terminal's width at spaces (never inside a
 * word), the cursor being at column `indent`, continuation lines indented
 * as much. Piped: as is. */
void print_folded(const char *text, size_t indent);
void fprint_folded(FILE *f, const char *text, size_t indent);

/* Prints a JSON value on stdout as --json says: pretty (indented),
 * short (one line), or plain --json: indented on a terminal, one line when
 * piped. Always one line with `line`. Slashes are not escaped. */
int json_print(json_object *o, bool line);

/* JSON helpers for values the daemon reports with sentinels: "" (no driver,
 * no cdev, nobody holds it), "/" (no context) and -1 (no IOMMU group)
 * become null. The returned object is new (NULL only on ENOMEM, which the
 * json-c adders then treat as null). */
json_object *json_string_or_null(const char *s);
json_object *json_path_or_null(const char *path);
json_object *json_group_or_null(int64_t group);

/* The same sentinels for people: "-". */
const char *display_string(const char *s);
const char *display_path(const char *path);

/* "/org/hotresetd/Broker1/context/3" -> "context/3"; anything else as is. */
const char *context_short_name(const char *path);
/* "/org/hotresetd/Broker1/context/3" -> "3"; anything else as is. */
const char *context_id(const char *path);

/* The current wall-clock time as "2024-05-01 12:34:56.123456" and in µs. */
int format_timestamp_now(char *buf, size_t size, uint64_t *ret_usec);

/* Adds a key to an object; returns -ENOMEM on failure (the value is freed). */
int json_add(json_object *obj, const char *key, json_object *value);

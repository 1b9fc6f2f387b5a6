/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "output.h"

struct Table {
        char **headers;
        size_t n_columns;
        char **cells; /* row-major */
        size_t n_cells;
};

Table *table_new(const char *const *headers, size_t n_columns) {
        Table *t = calloc(1, sizeof(Table));
        if (!t)
                return NULL;
        t->n_columns = n_columns;
        t->headers = calloc(n_columns + 1, sizeof(char *));
        if (!t->headers)
                return table_free(t);
        for (size_t i = 0; i < n_columns; i++) {
                t->headers[i] = strdup(headers[i]);
                if (!t->headers[i])
                        return table_free(t);
        }
        return t;
}

Table *table_free(Table *t) {
        if (!t)
                return NULL;
        strv_free(t->headers);
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t);
        return NULL;
}

static int table_take_cell(Table *t, char *s) {
        if (!s)
                return -ENOMEM;
        char **n = realloc(t->cells, (t->n_cells + 1) * sizeof(char *));
        if (!n) {
                free(s);
                return -ENOMEM;
        }
        t->cells = n;
        t->cells[t->n_cells++] = s;
        return 0;
}

int table_add_cell(Table *t, const char *s) {
        return table_take_cell(t, strdup(s && *s ? s : "-"));
}

int table_add_cellf(Table *t, const char *fmt, ...) {
        char *s = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        return table_take_cell(t, s);
}

int table_add_row(Table *t, ...) {
        va_list ap;
        int r = 0;

        va_start(ap, t);
        for (size_t i = 0; r >= 0 && i < t->n_columns; i++)
                r = table_add_cell(t, va_arg(ap, const char *));
        va_end(ap);
        return r;
}

size_t table_rows(const Table *t) {
        return t->n_columns ? t->n_cells / t->n_columns : 0;
}

/* Display width: UTF-8 code points (continuation bytes don't count). */
static size_t text_width(const char *s) {
        size_t w = 0;
        for (; *s; s++)
                if (((unsigned char) *s & 0xc0) != 0x80)
                        w++;
        return w;
}

static void print_row(FILE *f, char *const *cells, size_t n, const size_t *widths) {
        for (size_t i = 0; i < n; i++) {
                fputs(cells[i], f);
                if (i + 1 < n)
                        fprintf(f, "%*s", (int) (widths[i] - text_width(cells[i]) + 2), "");
        }
        fputc('\n', f);
}

int table_print(const Table *t, FILE *f, bool legend) {
        size_t rows = table_rows(t);
        _cleanup_free_ size_t *widths = calloc(t->n_columns ? t->n_columns : 1, sizeof(size_t));

        if (!widths)
                return -ENOMEM;
        for (size_t c = 0; c < t->n_columns; c++) {
                widths[c] = legend ? text_width(t->headers[c]) : 0;
                for (size_t r = 0; r < rows; r++) {
                        size_t w = text_width(t->cells[r * t->n_columns + c]);
                        if (w > widths[c])
                                widths[c] = w;
                }
        }
        if (legend)
                print_row(f, t->headers, t->n_columns, widths);
        for (size_t r = 0; r < rows; r++)
                print_row(f, t->cells + r * t->n_columns, t->n_columns, widths);
        return fflush(f) == 0 ? 0 : -errno;
}

int json_print(json_object *o, bool line) {
        int flags = JSON_C_TO_STRING_NOSLASHESCAPE;

        flags |= !line && isatty(STDOUT_FILENO) ? JSON_C_TO_STRING_PRETTY : JSON_C_TO_STRING_PLAIN;
        const char *s = json_object_to_json_string_ext(o, flags);
        if (!s)
                return -ENOMEM;
        puts(s);
        return fflush(stdout) == 0 ? 0 : -errno;
}

json_object *json_string_or_null(const char *s) {
        return s && *s ? json_object_new_string(s) : NULL;
}

json_object *json_path_or_null(const char *path) {
        return path && *path && !streq(path, "/") ? json_object_new_string(path) : NULL;
}

json_object *json_group_or_null(int64_t group) {
        return group >= 0 ? json_object_new_int64(group) : NULL;
}

const char *display_string(const char *s) {
        return s && *s ? s : "-";
}

const char *display_path(const char *path) {
        return path && *path && !streq(path, "/") ? context_short_name(path) : "-";
}

const char *context_short_name(const char *path) {
        if (path && strncmp(path, ROOT_PATH "/", strlen(ROOT_PATH "/")) == 0)
                return path + strlen(ROOT_PATH "/");
        return path;
}

const char *context_id(const char *path) {
        if (path && strncmp(path, CONTEXT_PATH_PREFIX, strlen(CONTEXT_PATH_PREFIX)) == 0)
                return path + strlen(CONTEXT_PATH_PREFIX);
        return path;
}

int format_timestamp_now(char *buf, size_t size, uint64_t *ret_usec) {
        struct timespec ts;
        struct tm tm;

        if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
                return -errno;
        if (!localtime_r(&ts.tv_sec, &tm))
                return -EINVAL;
        size_t n = strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
        if (n == 0)
                return -ENOBUFS;
        snprintf(buf + n, size - n, ".%06ld", ts.tv_nsec / 1000);
        if (ret_usec)
                *ret_usec = (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
        return 0;
}

int json_add(json_object *obj, const char *key, json_object *value) {
        if (json_object_object_add(obj, key, value) < 0) {
                json_object_put(value);
                return -ENOMEM;
        }
        return 0;
}

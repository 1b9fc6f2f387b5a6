/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <langinfo.h>
#include <libsmartcols.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "bus.h"
#include "hotresetctl.h"
#include "output.h"

struct Table {
        struct libscols_table *tb;
        size_t n_columns;
        size_t n_rows;
        size_t next;           /* column of the next cell */
        struct libscols_line *line;   /* the row being filled */
        struct libscols_line *parent; /* parent of new rows (trees) */
        bool *ellipsize;
        ssize_t wrap; /* the column folded into lines at spaces, or -1 */
};

Table *table_new(const char *const *headers, size_t n_columns) {
        Table *t = calloc(1, sizeof(Table));
        if (!t)
                return NULL;
        t->n_columns = n_columns;
        t->wrap = -1;
        t->ellipsize = calloc(n_columns ? n_columns : 1, sizeof(bool));
        t->tb = scols_new_table();
        if (!t->ellipsize || !t->tb)
                return table_free(t);
        if (scols_table_set_column_separator(t->tb, "  ") < 0)
                return table_free(t);
        for (size_t i = 0; i < n_columns; i++) {
                struct libscols_column *cl = scols_table_new_column(t->tb, headers[i], 0, 0);
                if (!cl)
                        return table_free(t);
        }
        return t;
}

Table *table_free(Table *t) {
        if (!t)
                return NULL;
        scols_unref_table(t->tb);
        free(t->ellipsize);
        free(t);
        return NULL;
}

int table_set_ellipsize(Table *t, size_t c) {
        struct libscols_column *cl = scols_table_get_column(t->tb, c);
        if (!cl)
                return -EINVAL;
        t->ellipsize[c] = true;
        /* TRUNC: this column gives way when the table is too wide; the
         * cut is marked with "…" in table_print. No WRAP: never a second
         * line, so never a word split across lines. */
        return scols_column_set_flags(cl, scols_column_get_flags(cl) | SCOLS_FL_TRUNC);
}

int table_set_wrap(Table *t, size_t c) {
        if (c >= t->n_columns)
                return -EINVAL;
        t->wrap = (ssize_t) c;
        return 0;
}

int table_set_tree(Table *t, size_t c) {
        struct libscols_column *cl = scols_table_get_column(t->tb, c);
        if (!cl)
                return -EINVAL;
        return scols_column_set_flags(cl, scols_column_get_flags(cl) | SCOLS_FL_TREE);
}

void table_set_parent(Table *t, TableRow *parent) {
        t->parent = parent;
}

TableRow *table_last_row(Table *t) {
        return t->line;
}

static int table_set_next(Table *t, const char *s) {
        if (t->next == 0) {
                t->line = scols_table_new_line(t->tb, t->parent);
                if (!t->line)
                        return -ENOMEM;
                t->n_rows++;
        }
        int r = scols_line_set_data(t->line, t->next, s && *s ? s : "-");
        if (r < 0)
                return r;
        t->next = (t->next + 1) % t->n_columns;
        return 0;
}

int table_add_cell(Table *t, const char *s) {
        return table_set_next(t, s);
}

int table_add_blank(Table *t) {
        return table_set_next(t, " ");
}

int table_add_cellf(Table *t, const char *fmt, ...) {
        _cleanup_free_ char *s = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        return table_set_next(t, s);
}

void table_color_last(Table *t, const char *color) {
        size_t c = (t->next + t->n_columns - 1) % t->n_columns;
        if (t->line && colors_enabled())
                (void) scols_cell_set_color(scols_line_get_cell(t->line, c), color);
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
        return t->n_rows;
}

static bool utf8_locale(void) {
        const char *cs = nl_langinfo(CODESET);
        return cs && (strcasecmp(cs, "UTF-8") == 0 || strcasecmp(cs, "utf8") == 0);
}

/* s cut to at most `width` terminal columns, ending in an ellipsis. */
static char *ellipsize(const char *s, size_t width) {
        const char *dots = utf8_locale() ? "…" : "...";
        size_t dots_width = utf8_locale() ? 1 : 3, used = 0, len = strlen(s);
        const char *p = s, *end = s;
        mbstate_t st = {};

        if (width <= dots_width)
                return strndup(dots, width); /* "." or "" would do: ASCII part of "..." */
        while (*p) {
                wchar_t wc;
                size_t n = mbrtowc(&wc, p, len - (size_t) (p - s), &st);
                if (n == 0 || n == (size_t) -1 || n == (size_t) -2)
                        n = 1, wc = '?';
                int w = wcwidth(wc);
                if (w < 0)
                        w = 1;
                if (used + (size_t) w > width - dots_width)
                        break;
                used += (size_t) w;
                p += n;
                end = p;
        }
        char *r;
        if (asprintf(&r, "%.*s%s", (int) (end - s), s, dots) < 0)
                return NULL;
        return r;
}

static size_t display_width(const char *s) {
        size_t w = 0, len = strlen(s);
        const char *p = s;
        mbstate_t st = {};

        while (*p) {
                wchar_t wc;
                if (*p == '\x1b') { /* a colour: ESC [ ... m takes no room */
                        const char *m = strchr(p, 'm');
                        p = m ? m + 1 : p + strlen(p);
                        continue;
                }
                size_t n = mbrtowc(&wc, p, len - (size_t) (p - s), &st);
                if (n == 0 || n == (size_t) -1 || n == (size_t) -2)
                        n = 1, wc = '?';
                int cw = wcwidth(wc);
                w += cw < 0 ? 1 : (size_t) cw;
                p += n;
        }
        return w;
}

/* libsmartcols cuts a truncatable cell without a mark: lay the table out
 * once, then end every cell longer than its column's final width with "…"
 * (the layout does not change: such a cell now fits its column). */
static int mark_cuts(Table *t) {
        _cleanup_free_ char *dummy = NULL;
        struct libscols_iter *itr;
        struct libscols_line *ln;
        int r;

        r = scols_print_table_to_string(t->tb, &dummy);
        if (r < 0)
                return r;
        itr = scols_new_iter(SCOLS_ITER_FORWARD);
        if (!itr)
                return -ENOMEM;
        while (scols_table_next_line(t->tb, itr, &ln) == 0)
                for (size_t c = 0; c < t->n_columns; c++) {
                        if (!t->ellipsize[c])
                                continue;
                        size_t width = scols_column_get_width(scols_table_get_column(t->tb, c));
                        const char *data = scols_cell_get_data(scols_line_get_cell(ln, c));
                        if (!data || display_width(data) <= width)
                                continue;
                        char *cut = ellipsize(data, width);
                        if (!cut || scols_line_refer_data(ln, c, cut) < 0) {
                                free(cut);
                                scols_free_iter(itr);
                                return -ENOMEM;
                        }
                }
        scols_free_iter(itr);
        return 0;
}

/* text folded at spaces into lines of at most `width` columns joined by
 * newlines (a word longer than that is cut). */
static char *fold_lines(const char *text, size_t width) {
        char *buf = NULL;
        size_t size = 0, col = 0;
        FILE *m = open_memstream(&buf, &size);
        const char *p = text;

        if (!m)
                return NULL;
        while (*p) {
                size_t n = strcspn(p, " ");
                _cleanup_free_ char *word = strndup(p, n);
                if (!word) {
                        fclose(m);
                        free(buf);
                        return NULL;
                }
                size_t w = display_width(word);
                if (col > 0 && col + 1 + w > width) {
                        fputc('\n', m);
                        col = 0;
                } else if (col > 0) {
                        fputc(' ', m);
                        col++;
                }
                while (w > width) { /* a word wider than the column */
                        _cleanup_free_ char *head = ellipsize(word, width);
                        size_t cut = head ? strlen(head) - (utf8_locale() ? strlen("…") : 3) : 0;
                        if (cut == 0)
                                break;
                        fprintf(m, "%.*s\n", (int) cut, word);
                        memmove(word, word + cut, strlen(word + cut) + 1);
                        w = display_width(word);
                }
                fputs(word, m);
                col += w;
                p += n;
                while (*p == ' ')
                        p++;
        }
        if (fclose(m) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

/* The wrap column gets what the other columns leave of the terminal; its
 * cells are folded at spaces to that and shown as several lines. Returns
 * false when too little is left (then it is ellipsized instead). */
static int fold_wrap_column(Table *t, size_t cols, bool legend) {
        struct libscols_iter *itr;
        struct libscols_line *ln;
        size_t c = (size_t) t->wrap, used = 0;
        /* (calloc(0) may be NULL: that is no allocation failure.) */
        _cleanup_free_ size_t *widths = calloc(t->n_columns ?: 1, sizeof(size_t));

        if (!widths)
                return -ENOMEM;
        for (size_t k = 0; k < t->n_columns; k++)
                if (legend)
                        widths[k] = display_width(scols_cell_get_data(
                                scols_column_get_header(scols_table_get_column(t->tb, k))) ?: "");
        itr = scols_new_iter(SCOLS_ITER_FORWARD);
        if (!itr)
                return -ENOMEM;
        while (scols_table_next_line(t->tb, itr, &ln) == 0)
                for (size_t k = 0; k < t->n_columns; k++) {
                        size_t w = display_width(scols_cell_get_data(scols_line_get_cell(ln, k)) ?: "");
                        if (w > widths[k])
                                widths[k] = w;
                }
        for (size_t k = 0; k < t->n_columns; k++)
                if (k != c)
                        used += widths[k] + 2;
        if (used + 16 > cols || widths[c] + used <= cols) {
                scols_free_iter(itr);
                return widths[c] + used <= cols ? 1 : 0;
        }

        size_t avail = cols - used;
        scols_reset_iter(itr, SCOLS_ITER_FORWARD);
        while (scols_table_next_line(t->tb, itr, &ln) == 0) {
                const char *data = scols_cell_get_data(scols_line_get_cell(ln, c));
                if (!data || display_width(data) <= avail)
                        continue;
                char *folded = fold_lines(data, avail);
                if (!folded || scols_line_refer_data(ln, c, folded) < 0) {
                        free(folded);
                        scols_free_iter(itr);
                        return -ENOMEM;
                }
        }
        scols_free_iter(itr);
        struct libscols_column *cl = scols_table_get_column(t->tb, c);
        (void) scols_column_set_safechars(cl, "\n"); /* the line breaks, not \x0a */
        (void) scols_column_set_wrapfunc(cl, scols_wrapnl_chunksize, scols_wrapnl_nextchunk, NULL);
        (void) scols_column_set_flags(cl, scols_column_get_flags(cl) | SCOLS_FL_WRAP);
        return 1;
}

int table_print(Table *t, FILE *f, bool legend) {
        size_t cols = terminal_columns();
        int r;

        (void) scols_table_enable_noheadings(t->tb, !legend);
        /* Without the legend the columns are as wide as their cells
         * (libsmartcols would still make room for the hidden headers). */
        if (!legend)
                for (size_t c = 0; c < t->n_columns; c++)
                        (void) scols_cell_set_data(scols_column_get_header(scols_table_get_column(t->tb, c)), "");
        /* An empty table: libsmartcols prints nothing, people want the
         * header to see that there is nothing. */
        if (t->n_rows == 0) {
                if (!legend)
                        return 0;
                for (size_t c = 0; c < t->n_columns; c++)
                        fprintf(f, "%s%s%s%s", c ? "  " : "", ansi_bold(),
                                scols_cell_get_data(scols_column_get_header(scols_table_get_column(t->tb, c))),
                                ansi_normal());
                fputc('\n', f);
                return fflush(f) == 0 ? 0 : -errno;
        }
        (void) scols_table_enable_colors(t->tb, colors_enabled());
        if (colors_enabled())
                for (size_t c = 0; c < t->n_columns; c++)
                        (void) scols_cell_set_color(scols_column_get_header(scols_table_get_column(t->tb, c)),
                                                    "bold");
        /* Fit a terminal; piped, never cut anything. */
        if (cols > 0 && f == stdout) {
                (void) scols_table_set_termforce(t->tb, SCOLS_TERMFORCE_ALWAYS);
                (void) scols_table_set_termwidth(t->tb, cols);
                if (t->wrap >= 0) {
                        r = fold_wrap_column(t, cols, legend);
                        if (r < 0)
                                return r;
                        if (r == 0 && (r = table_set_ellipsize(t, (size_t) t->wrap)) < 0)
                                return r;
                }
                r = mark_cuts(t);
                if (r < 0)
                        return r;
        } else
                (void) scols_table_set_termforce(t->tb, SCOLS_TERMFORCE_NEVER);
        (void) scols_table_set_stream(t->tb, f);
        r = scols_print_table(t->tb);
        if (r < 0)
                return r;
        return fflush(f) == 0 ? 0 : -errno;
}

/* Remembered before a pager takes stdout (terminal_remember). */
static bool stdout_remembered = false;
static bool stdout_tty = false;
static size_t stdout_columns = 0;

void terminal_remember(void) {
        (void) colors_enabled();
        stdout_tty = isatty(STDOUT_FILENO);
        stdout_columns = terminal_columns_of(STDOUT_FILENO);
        stdout_remembered = true;
}

bool stdout_is_terminal(void) {
        return stdout_remembered ? stdout_tty : isatty(STDOUT_FILENO);
}

size_t terminal_columns(void) {
        return stdout_remembered ? stdout_columns : terminal_columns_of(STDOUT_FILENO);
}

size_t terminal_columns_of(int fd) {
        struct winsize ws = {};

        if (!isatty(fd))
                return 0;
        /* COLUMNS wins, as in systemd's tools (and tmux tests). */
        const char *e = getenv("COLUMNS");
        if (e) {
                unsigned long n = strtoul(e, NULL, 10);
                if (n > 0 && n < 10000)
                        return n;
        }
        if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
                return ws.ws_col;
        return 80;
}

void print_folded(const char *text, size_t indent) {
        fprint_folded(stdout, text, indent);
}

void fprint_folded(FILE *f, const char *text, size_t indent) {
        size_t cols = f == stdout ? terminal_columns() : terminal_columns_of(fileno(f)), col = indent;
        const char *p = text;
        bool first = true;

        if (cols == 0 || cols <= indent + 10) {
                fputs(text, f);
                fputc('\n', f);
                return;
        }
        /* The cursor is at column `indent` (after a bullet, say). */
        while (*p) {
                size_t n = strcspn(p, " ");
                _cleanup_free_ char *word = strndup(p, n);
                size_t w = word ? display_width(word) : n;
                if (!first && col + 1 + w > cols) {
                        fprintf(f, "\n%*s", (int) indent, "");
                        col = indent;
                } else if (!first) {
                        fputc(' ', f);
                        col++;
                }
                fprintf(f, "%.*s", (int) n, p);
                col += w;
                first = false;
                p += n;
                while (*p == ' ')
                        p++;
        }
        fputc('\n', f);
}

static int colors_cached = -1;

static bool word_in(const char *s, const char *const *words) {
        for (; *words; words++)
                if (strcasecmp(s, *words) == 0)
                        return true;
        return false;
}

bool colors_enabled(void) {
        if (colors_cached >= 0)
                return colors_cached;

        const char *e = getenv("SYSTEMD_COLORS");
        if (e && *e) {
                if (word_in(e, (const char *const[]) { "0", "no", "false", "off", "n", "f", NULL }))
                        return (colors_cached = 0);
                if (word_in(e, (const char *const[]) { "1", "yes", "true", "on", "y", "t", "16", "256", "24bit", NULL }))
                        return (colors_cached = 1);
        }
        if (getenv("NO_COLOR"))
                return (colors_cached = 0);
        e = getenv("TERM");
        if (e && streq(e, "dumb"))
                return (colors_cached = 0);
        return (colors_cached = stdout_is_terminal());
}

const char *ansi_red(void) {
        return colors_enabled() ? "\x1b[0;1;31m" : "";
}
const char *ansi_green(void) {
        return colors_enabled() ? "\x1b[0;1;32m" : "";
}
const char *ansi_yellow(void) {
        return colors_enabled() ? "\x1b[0;1;33m" : "";
}
const char *ansi_bold(void) {
        return colors_enabled() ? "\x1b[0;1;39m" : "";
}
const char *ansi_normal(void) {
        return colors_enabled() ? "\x1b[0m" : "";
}

int json_print(json_object *o, bool line) {
        int flags = JSON_C_TO_STRING_NOSLASHESCAPE;

        bool pretty = arg_json == JSON_PRETTY || (arg_json == JSON_AUTO && stdout_is_terminal());
        flags |= !line && pretty ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED : JSON_C_TO_STRING_PLAIN;
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

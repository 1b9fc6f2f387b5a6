/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "util.h"

size_t strv_length(char *const *l) {
        size_t n = 0;
        for (; l && l[n]; n++)
                ;
        return n;
}

char **strv_free(char **l) {
        for (size_t i = 0; l && l[i]; i++)
                free(l[i]);
        free(l);
        return NULL;
}

char **strv_copy(char *const *l) {
        size_t n = strv_length(l);
        char **c = calloc(n + 1, sizeof(char *));
        if (!c)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                c[i] = strdup(l[i]);
                if (!c[i])
                        return strv_free(c);
        }
        return c;
}

bool strv_equal(char *const *a, char *const *b) {
        size_t na = strv_length(a), nb = strv_length(b);
        if (na != nb)
                return false;
        for (size_t i = 0; i < na; i++)
                if (!streq(a[i], b[i]))
                        return false;
        return true;
}

bool strv_contains(char *const *l, const char *s) {
        for (size_t i = 0; l && l[i]; i++)
                if (streq(l[i], s))
                        return true;
        return false;
}

int strv_extend(char ***l, const char *s) {
        size_t n = strv_length(*l);
        _cleanup_free_ char *c = strdup(s);
        if (!c)
                return -ENOMEM;
        char **nl = realloc(*l, (n + 2) * sizeof(char *));
        if (!nl)
                /* cppcheck-suppress memleak ; freed by _cleanup_free_ (cppcheck does not know cleanup attributes) */
                return -ENOMEM;
        nl[n] = TAKE_PTR(c);
        nl[n + 1] = NULL;
        *l = nl;
        return 0;
}

char *strv_join(char *const *l, const char *sep) {
        size_t n = strv_length(l), len = 1, k = strlen(sep);
        for (size_t i = 0; i < n; i++)
                len += strlen(l[i]) + (i > 0 ? k : 0);
        char *r = malloc(len), *p = r;
        if (!r)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        p = stpcpy(p, sep);
                p = stpcpy(p, l[i]);
        }
        *p = 0;
        return r;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers shared by the daemon, the client and the tests:
 * scope-bound cleanup of owned resources and string-vector utilities. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* Hand ownership on: return the value and clear the variable so its
 * cleanup handler does nothing. */
#define TAKE_PTR(p)                      \
        ({                               \
                __typeof__(p) _p_ = (p); \
                (p) = NULL;              \
                _p_;                     \
        })
#define TAKE_FD(fd)                  \
        ({                           \
                int _fd_ = (fd);     \
                (fd) = -1;           \
                _fd_;                \
        })

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -1;
}
static inline void closep(int *fd) {
        safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}

static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}
#define streq(a, b) (strcmp((a), (b)) == 0)

/* The rest of s after prefix, NULL when s does not start with it. */
static inline const char *startswith(const char *s, const char *prefix) {
        size_t n = strlen(prefix);
        return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

static inline const char *strempty(const char *s) {
        return s ? s : "";
}

/* NULL-terminated string vectors. A NULL vector is the empty vector. */
size_t strv_length(char *const *l);
char **strv_free(char **l);
char **strv_copy(char *const *l);
bool strv_equal(char *const *a, char *const *b);
bool strv_contains(char *const *l, const char *s);
/* Append a copy of s; returns -ENOMEM on failure, leaving *l intact. */
int strv_extend(char ***l, const char *s);
/* Removes (and frees) the first s from l, if there. */
void strv_remove(char **l, const char *s);
/* Join with a separator into a newly allocated string. */
char *strv_join(char *const *l, const char *sep);
static inline void strv_freep(char ***l) {
        strv_free(*l);
}
#define _cleanup_strv_free_ _cleanup_(strv_freep)

/* The whole of path (not a directory), NUL-terminated; -EFBIG past max
 * bytes. */
int read_file_full(const char *path, size_t max, char **ret, size_t *ret_size);
/* Writes text to path through a temporary file in the same directory
 * renamed over it, with the given mode: readers (the emulated kernel's
 * inotify, a restarted daemon) see the old content or the new, never a
 * part, also after a crash. */
int write_file_atomic(const char *path, const char *text, unsigned mode);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Minimal assertions for the unit tests: print where and what, exit 1. */
#pragma once

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT_TRUE(expr)                                                                     \
        do {                                                                                  \
                if (!(expr)) {                                                                \
                        fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #expr); \
                        exit(1);                                                              \
                }                                                                             \
        } while (0)

#define ASSERT_INT_EQ(a, b)                                                                   \
        do {                                                                                  \
                long long _a = (long long) (a), _b = (long long) (b);                         \
                if (_a != _b) {                                                               \
                        fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, _a, _b); \
                        exit(1);                                                              \
                }                                                                             \
        } while (0)

#define ASSERT_STR_EQ(a, b)                                                                   \
        do {                                                                                  \
                const char *_a = (a), *_b = (b);                                              \
                if (!_a || !_b || strcmp(_a, _b) != 0) {                                      \
                        fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a, #b, \
                                _a ? _a : "(null)", _b ? _b : "(null)");                      \
                        exit(1);                                                              \
                }                                                                             \
        } while (0)

/* Substring match, for error messages. */
#define ASSERT_CONTAINS(hay, needle)                                                          \
        do {                                                                                  \
                const char *_h = (hay), *_n = (needle);                                       \
                if (!_h || !strstr(_h, _n)) {                                                 \
                        fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, \
                                _h ? _h : "(null)", _n);                                      \
                        exit(1);                                                              \
                }                                                                             \
        } while (0)

#define TEST(name) static void name(void)
#define RUN(name)                                           \
        do {                                                \
                fprintf(stderr, "== %s\n", #name);          \
                name();                                     \
        } while (0)

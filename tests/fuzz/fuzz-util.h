/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers shared by the libFuzzer targets. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util.h"

/* The parsers take C strings: an exact heap copy with the NUL right after
 * the data, so AddressSanitizer catches a read one byte past the end. NULL
 * when out of memory (the target then does nothing with this input). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);
        if (!s)
                return NULL;
        memcpy(s, data, size);
        s[size] = 0;
        return s;
}

/* The machine file and the policy file are read by path: the fuzzers hand
 * them a memfd holding the input, as /proc/self/fd/N, so the daemon's own
 * reading code (short reads, the NUL check, the line reader) is fuzzed too
 * and no file is written to disk. Returns the fd (its path in path), or
 * -1; the caller closes it. */
static inline int fuzz_memfd(const uint8_t *data, size_t size, char path[static 64]) {
        int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
        if (fd < 0)
                return -1;
        for (size_t done = 0; done < size;) {
                ssize_t k = write(fd, data + done, size - done);
                if (k <= 0) {
                        close(fd);
                        return -1;
                }
                done += (size_t) k;
        }
        snprintf(path, 64, "/proc/self/fd/%d", fd);
        return fd;
}

/* After a loader's return r: true when the input loaded; false when it was
 * refused or memory ran out (nothing more to check), and an abort when a
 * refusal comes without a message: every rejected file is explained. */
static inline bool fuzz_loaded(int r, const char *error) {
        if (r >= 0)
                return true;
        if (r != -ENOMEM && (!error || !*error))
                abort();
        return false;
}

/* The daemon's parsers log nothing themselves, but the code around them
 * does; a fuzzer's output is only its own statistics. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

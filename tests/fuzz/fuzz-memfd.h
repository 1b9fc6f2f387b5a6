/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The machine file and the policy file are read by path: the fuzzers hand
 * them a memfd holding the input, as /proc/self/fd/N, so the daemon's own
 * reading code (short reads, the NUL check, the line reader) is fuzzed too
 * and no file is written to disk. */
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util.h"

/* Returns the fd (path in path), or -1. The caller closes it. */
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

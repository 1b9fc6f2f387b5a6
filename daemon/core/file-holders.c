/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "file-holders.h"
#include "util.h"

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

static void read_comm(pid_t pid, char comm[static FILE_HOLDER_COMM_MAX]) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/comm", (int) pid);
        _cleanup_(fclosep) FILE *f = fopen(path, "re");
        comm[0] = 0;
        if (f && fgets(comm, FILE_HOLDER_COMM_MAX, f))
                comm[strcspn(comm, "\n")] = 0;
        /* cppcheck-suppress resourceLeak ; freed by _cleanup_(fclosep) (cppcheck does not know cleanup attributes) */
}

/* Whether one of pid's files is the same open file as our fd. Only files
 * whose link names the same thing are compared, so kcmp() runs rarely. */
static int pid_holds(pid_t self, pid_t pid, int fd, const char *target) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/fd", (int) pid);
        int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                /* Gone meanwhile: holds nothing. Not ours to look at: we
                 * cannot tell, and must not answer "nobody". */
                return errno == ENOENT || errno == ESRCH ? 0 : -errno;
        _cleanup_(closedirp) DIR *d = fdopendir(dfd);
        if (!d) {
                close(dfd);
                return 0;
        }
        for (struct dirent *de; (de = readdir(d));) {
                char link[PATH_MAX];
                char *end;
                long n = strtol(de->d_name, &end, 10);
                if (de->d_name[0] == '.' || *end || n < 0)
                        continue;
                ssize_t k = readlinkat(dirfd(d), de->d_name, link, sizeof link - 1);
                if (k < 0)
                        continue;
                link[k] = 0;
                if (!streq(link, target))
                        continue;
                long same = syscall(SYS_kcmp, self, pid, KCMP_FILE, fd, n);
                if (same == 0)
                        return 1;
                if (same < 0 && errno != ESRCH && errno != EBADF)
                        return -errno; /* EPERM: cannot compare, cannot tell */
        }
        return 0;
}

int file_find_other_holder(int fd, pid_t *ret_pid, char ret_comm[static FILE_HOLDER_COMM_MAX]) {
        char path[64], target[PATH_MAX];
        pid_t self = getpid();

        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t k = readlink(path, target, sizeof target - 1);
        if (k < 0)
                return -errno;
        target[k] = 0;

        _cleanup_(closedirp) DIR *proc = opendir("/proc");
        if (!proc)
                return -errno;
        for (struct dirent *de; (de = readdir(proc));) {
                char *end;
                long pid = strtol(de->d_name, &end, 10);
                if (*end || pid <= 0 || pid == self)
                        continue;
                int r = pid_holds(self, (pid_t) pid, fd, target);
                if (r != 0) {
                        *ret_pid = (pid_t) pid;
                        read_comm((pid_t) pid, ret_comm);
                        return r; /* 1: it holds a copy; < 0: cannot tell for this process */
                }
        }
        return 0;
}

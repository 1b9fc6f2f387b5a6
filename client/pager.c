/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hotresetctl.h"
#include "output.h"
#include "pager.h"
#include "util.h"

static pid_t pager_pid = 0;

void pager_close(void) {
        if (pager_pid <= 0)
                return;
        /* EOF to the pager: it shows the rest, and quits when told. */
        (void) fflush(stdout);
        (void) close(STDOUT_FILENO);
        while (waitpid(pager_pid, NULL, 0) < 0 && errno == EINTR)
                ;
        pager_pid = 0;
}

static const char *pager_command(void) {
        const char *p = getenv("SYSTEMD_PAGER");
        if (!p)
                p = getenv("PAGER");
        return p;
}

void pager_open(void) {
        int fds[2];

        if (!arg_pager || pager_pid > 0 || !isatty(STDOUT_FILENO))
                return;
        const char *cmd = pager_command();
        if (cmd && (!*cmd || streq(cmd, "cat")))
                return;

        /* What the output is for: the terminal, not the pipe. */
        terminal_remember();

        if (pipe2(fds, O_CLOEXEC) < 0)
                return;
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0) {
                close(fds[0]);
                close(fds[1]);
                return;
        }
        if (pid == 0) {
                (void) prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (getppid() != parent)
                        _exit(EXIT_FAILURE);
                if (dup2(fds[0], STDIN_FILENO) < 0)
                        _exit(EXIT_FAILURE);
                /* Keep colours (R), quit when it fits (F), do not clear
                 * the screen (X): systemd's defaults. */
                if (getenv("SYSTEMD_LESS"))
                        (void) setenv("LESS", getenv("SYSTEMD_LESS"), 1);
                else
                        (void) setenv("LESS", "FRSXMK", 0);
                if (cmd) {
                        execl("/bin/sh", "sh", "-c", cmd, (char *) NULL);
                        _exit(EXIT_FAILURE);
                }
                execlp("less", "less", (char *) NULL);
                execlp("more", "more", (char *) NULL);
                /* No pager at all: pass the output through. */
                execlp("cat", "cat", (char *) NULL);
                _exit(EXIT_FAILURE);
        }
        close(fds[0]);
        if (dup2(fds[1], STDOUT_FILENO) < 0) {
                close(fds[1]);
                (void) kill(pid, SIGTERM);
                (void) waitpid(pid, NULL, 0);
                return;
        }
        close(fds[1]);
        pager_pid = pid;
        atexit(pager_close);
}

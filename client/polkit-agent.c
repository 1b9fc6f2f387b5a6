/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-login.h>

#include "util.h"

#include "polkit-agent.h"

#ifndef POLKIT_AGENT_BINARY_PATH
#define POLKIT_AGENT_BINARY_PATH "/usr/bin/pkttyagent"
#endif

#define AGENT_REGISTER_TIMEOUT_MSEC 10000

static pid_t agent_pid = 0;

void polkit_agent_close(void) {
        if (agent_pid <= 0)
                return;
        (void) kill(agent_pid, SIGTERM);
        (void) kill(agent_pid, SIGCONT);
        while (waitpid(agent_pid, NULL, 0) < 0 && errno == EINTR)
                ;
        agent_pid = 0;
}

int polkit_agent_open(void) {
        int pipe_fd[2];
        char notify[16], process[32];

        if (agent_pid > 0)
                return 1;
        if (!isatty(STDIN_FILENO) || geteuid() == 0)
                return 0;
        const char *binary = getenv("HOTRESETCTL_POLKIT_AGENT") ?: POLKIT_AGENT_BINARY_PATH;
        if (access(binary, X_OK) < 0)
                return 0;
        if (pipe2(pipe_fd, O_CLOEXEC) < 0)
                return 0;

        /* The agent is registered for this process (--process): polkit
         * looks for an agent of the process behind the caller's bus name
         * first. In a logind session it is only a fallback, as systemctl's
         * is, so that the session's own (graphical) agent still answers.
         * Outside a session it must not be one: polkit (122) only turns
         * to a fallback agent after finding the caller's session. */
        _cleanup_free_ char *session = NULL;
        bool in_session = sd_pid_get_session(0, &session) >= 0;
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0) {
                close(pipe_fd[0]);
                close(pipe_fd[1]);
                return 0;
        }
        if (pid == 0) {
                /* The agent: its notify fd kept open across exec, dying
                 * with hotresetctl. */
                (void) prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (getppid() != parent)
                        _exit(EXIT_FAILURE);
                close(pipe_fd[0]);
                int fd = fcntl(pipe_fd[1], F_DUPFD, 3);
                if (fd < 0)
                        _exit(EXIT_FAILURE);
                snprintf(notify, sizeof notify, "%d", fd);
                snprintf(process, sizeof process, "%d", (int) parent);
                execl(binary, binary, "--notify-fd", notify, "--process", process,
                      in_session ? "--fallback" : NULL, (char *) NULL);
                _exit(EXIT_FAILURE);
        }
        close(pipe_fd[1]);
        agent_pid = pid;
        atexit(polkit_agent_close);

        /* pkttyagent closes the fd once it has registered with polkit (or
         * exits when it cannot): either way, go on then. A polkitd that
         * does not answer is not waited for longer than the daemon would
         * wait for it: the call then fails with the daemon's message. */
        struct pollfd p = { .fd = pipe_fd[0], .events = POLLIN };
        int r;
        while ((r = poll(&p, 1, AGENT_REGISTER_TIMEOUT_MSEC)) < 0 && errno == EINTR)
                ;
        close(pipe_fd[0]);
        return 1;
}

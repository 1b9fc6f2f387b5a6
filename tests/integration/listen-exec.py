#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""listen-exec.py NAME=FD... -- COMMAND...: runs COMMAND with the files FD
at 3, 4, ... and LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID set, as systemd
passes a service its file descriptor store (sd_listen_fds(3)). The tests'
stand-in for systemd restarting hotresetd."""
import fcntl
import os
import sys

sep = sys.argv.index('--')
pairs = [a.split('=', 1) for a in sys.argv[1:sep]]
command = sys.argv[sep + 1:]
names = [name for name, _ in pairs]
# Out of the way first, so that no source is overwritten by a target.
high = [fcntl.fcntl(int(fd), fcntl.F_DUPFD_CLOEXEC, 3 + len(pairs)) for _, fd in pairs]
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i, inheritable=True)
keep = set(range(3, 3 + len(pairs)))
for fd in set(int(fd) for _, fd in pairs) | set(high):
    if fd not in keep:
        os.close(fd)
env = dict(os.environ)
env['LISTEN_FDS'] = str(len(pairs))
env['LISTEN_FDNAMES'] = ':'.join(names)
env['LISTEN_PID'] = str(os.getpid())
os.execve(command[0], command, env)

#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon at its limits, on tests/integration/data/leases.json:

- the system bus goes away (dbus-daemon killed or stopped): the daemon
  exits with a failure status and says why, so that the service's
  Restart=on-failure starts it again (SIGTERM and SIGINT exit 0:
  test_lifecycle.py, and every test's teardown);
- at start it raises its soft RLIMIT_NOFILE to the hard limit, and logs it;
- the built-in ContextsPerUser=64 for users other than root (real polkitd;
  needs root, skipped otherwise), and ContextsPerUser=0 lifting it.
"""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from contexts_util import (BUS_NAME, CONTEXT_IFACE, ERR_PREFIX, MANAGER_IFACE, ROOT_PATH,  # noqa: E402
                           LeaseTestCase, fd_listing, load_machine)

ERR_LIMITS_EXCEEDED = 'org.freedesktop.DBus.Error.LimitsExceeded'
ERR_RATE_LIMITED = ERR_PREFIX + 'RateLimited'
PEER_IFACE = 'org.freedesktop.DBus.Peer'

LONE = '0000:0a:00.0'    # vfio-pci, alone in IOMMU group 100
NVME = '0000:09:00.0'    # vfio-pci, alone in IOMMU group 90

# The daemon's open file limit in the out-of-files tests: low enough to
# reach with a few dozen leases, high enough for the daemon's own files
# (the standard streams, the event loop, the bus, the machine file watch).
NOFILE = 64

LOST_BUS_LOG = 'Lost the connection to the system bus'
REFUSED_LOG = 'Refused for lack of files: '


class PrlimitDaemon(harness.Daemon):
    """The daemon under `prlimit --nofile=SOFT:HARD`, which sets the limits
    and execs it: the process is the daemon itself."""

    def __init__(self, env, machine_path, nofile, **kwargs):
        super().__init__(env, machine_path, **kwargs)
        self.nofile = nofile

    def command(self):
        soft, hard = self.nofile
        return ['prlimit', f'--nofile={soft}:{hard}', '--'] + super().command()


def start_limited_daemon(env, machine, nofile):
    """Env.start_daemon, with the daemon under prlimit."""
    env.write_machine(machine)
    d = PrlimitDaemon(env, env.machine_path, nofile)
    env.daemons.append(d)
    env.daemon = d
    d.start()
    d.wait_ready()
    with open(f'/proc/{d.proc.pid}/comm') as f:
        assert f.read().strip() == 'hotresetd', 'prlimit did not exec the daemon'
    return d


def nofile_limits(pid):
    """(soft, hard) RLIMIT_NOFILE of a process, from /proc/PID/limits."""
    with open(f'/proc/{pid}/limits') as f:
        for line in f:
            if line.startswith('Max open files'):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError(f'no "Max open files" in /proc/{pid}/limits')


# ---------------------------------------------------------------------------
# The bus goes away


class BusLossTest(LeaseTestCase):
    MACHINE = load_machine('leases.json')

    def _bus_goes(self, end):
        # A lease in place, so that the way out frees leases too (sanitizer
        # builds: no leak, no report).
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, LONE)
        self.assertDaemonRunning()
        end(self.env.bus.proc)
        self.env.bus.proc.wait(harness.STOP_TIMEOUT)
        rc = self.daemon.wait_exit(harness.STOP_TIMEOUT)
        self.assertIsNotNone(rc, f'hotresetd is still running {harness.STOP_TIMEOUT} s after the bus went away:\n'
                                 f'{self.daemon.log()}')
        self.assertEqual(rc, 1, f'exit status after losing the bus:\n{self.daemon.log()}')
        text = self.daemon.log()
        self.assertEqual(text.count(LOST_BUS_LOG), 1, text)
        self.assertNotIn('hotresetd stopped.', text)
        self.assertEqual(self.daemon.sanitizer_reports(), [], text)

    def test_bus_killed(self):
        self._bus_goes(lambda p: p.kill())

    def test_bus_stopped(self):
        self._bus_goes(lambda p: p.send_signal(signal.SIGTERM))


# ---------------------------------------------------------------------------
# RLIMIT_NOFILE at start


class NofileStartTest(harness.HotresetdTestCase):
    MACHINE = None

    def test_soft_limit_raised_to_hard(self):
        d = start_limited_daemon(self.env, load_machine('leases.json'), (100, 300))
        self.assertEqual(nofile_limits(d.proc.pid), (300, 300))
        self.assertIn('Raised the open file limit (RLIMIT_NOFILE) from 100 to the hard limit, 300.', d.log())

    def test_soft_limit_at_hard(self):
        d = start_limited_daemon(self.env, load_machine('leases.json'), (200, 200))
        self.assertEqual(nofile_limits(d.proc.pid), (200, 200))
        self.assertIn('Open file limit (RLIMIT_NOFILE): 200.', d.log())


# ---------------------------------------------------------------------------
# The built-in ContextsPerUser=


LIMIT_RULES = r'''
polkit.addRule(function(action, subject) {
    if (action.id.indexOf("org.hotresetd.") == 0 && subject.user == "hrd-yes")
        return polkit.Result.YES;
    return polkit.Result.NOT_HANDLED;
});
'''

DEFAULT_CONTEXTS_PER_USER = 64


class DefaultContextLimitTests:
    MACHINE = load_machine('leases.json')
    POLKIT_RULES = {'10-hotresetd-limits.rules': LIMIT_RULES}

    def setUp(self):
        why = harness.polkit_missing()
        if why:
            self.skipTest(why)
        super().setUp()
        self.env.allow_other_users()
        self.user = harness.ensure_user('hrd-yes')

    def user_client(self):
        return self.client(f'hrd-yes-{len(self.clients) + 1}', user=self.user)


class DefaultContextLimitTest(DefaultContextLimitTests, LeaseTestCase):

    def test_built_in_limit(self):
        self.assertEqual(self.env.manager_property('Limits')['ContextsPerUser'], DEFAULT_CONTEXTS_PER_USER)
        c = self.user_client()
        paths = [c.create_context() for _ in range(DEFAULT_CONTEXTS_PER_USER)]
        err = c.error(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', {})
        self.assertEqual(err.name, ERR_RATE_LIMITED, err.message)
        for s in (f'holds {DEFAULT_CONTEXTS_PER_USER} contexts',
                  f'ContextsPerUser={DEFAULT_CONTEXTS_PER_USER} (built-in default)', 'Context.Release'):
            self.assertIn(s, err.message)
        self.daemon.wait_log(f'refused a new context to uid {self.user[0]}')
        self.assertEqual(len(self.context_paths()), DEFAULT_CONTEXTS_PER_USER)
        # Another connection of the same user counts too.
        d = self.user_client()
        self.assertEqual(d.error(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', {}).name, ERR_RATE_LIMITED)
        # Root is exempt.
        root = self.client('root')
        root.create_context()
        # A release makes room for one.
        c.call(paths[0], CONTEXT_IFACE, 'Release')
        d.create_context()
        self.assertEqual(c.error(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', {}).name, ERR_RATE_LIMITED)


class NoContextLimitTest(DefaultContextLimitTests, LeaseTestCase):
    CONFIG = '''\
        [Limits]
        ContextsPerUser=0
        '''

    def test_limit_lifted(self):
        self.assertEqual(self.env.manager_property('Limits')['ContextsPerUser'], 0)
        c = self.user_client()
        for _ in range(DEFAULT_CONTEXTS_PER_USER + 6):
            c.create_context()
        self.assertEqual(len(self.context_paths()), DEFAULT_CONTEXTS_PER_USER + 6)

if __name__ == '__main__':
    harness.main()

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon at its limits, on tests/integration/data/leases.json:

- the system bus goes away (dbus-daemon killed or stopped): the daemon
  exits with a failure status and says why, so that the service's
  Restart=on-failure starts it again (SIGTERM and SIGINT exit 0:
  test_lifecycle.py, and every test's teardown);
- at start it raises its soft RLIMIT_NOFILE to the hard limit, and logs it;
- out of open files (the daemon started under `prlimit --nofile=64:64`),
  in the cdev and in the legacy group model: CreateContext, AttachDevice
  and Manager.HotReset are refused with
  org.freedesktop.DBus.Error.LimitsExceeded, the message names
  RLIMIT_NOFILE and its value and what to do, a warning is logged per
  refusal; after a release the same calls work again, and once every lease
  is gone the daemon has exactly the files it had before. OpenDevice,
  OpenIommufd and Context.HotReset must answer the same way (expected
  failures until bus/context-dbus.c maps the duplicates' EMFILE);
- the built-in ContextsPerUser=64 for users other than root (real polkitd;
  needs root, skipped otherwise), and ContextsPerUser=0 lifting it;
- 600 leases on one bus connection, on a bus with dbus-daemon's default
  limits (512 match rules per connection, no <limit> in its configuration):
  the daemon keeps its bus connection, answers Ping and a new CreateContext,
  and Release and the connection's end release all 600.
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
# Out of open files


class OutOfFilesTests:
    """The daemon under prlimit --nofile=64:64; one root client leases until
    the daemon has no file left."""

    MACHINE = None

    def setUp(self):
        super().setUp()
        start_limited_daemon(self.env, load_machine('leases.json', cdev=self.CDEV), (NOFILE, NOFILE))
        self.assertEqual(nofile_limits(self.daemon.proc.pid), (NOFILE, NOFILE))
        self.baseline = self.fd_count()

    def assertOutOfFiles(self, err, what):
        self.assertEqual(err.name, ERR_LIMITS_EXCEEDED, f'{what}: {err.name}: {err.message}')
        for s in (f'RLIMIT_NOFILE={NOFILE}', 'LimitNOFILE=', 'Context.Release'):
            self.assertIn(s, err.message, f'{what}: the message does not name {s!r}')

    def refusals_logged(self):
        return [line for line in self.daemon.log().splitlines() if REFUSED_LOG in line]

    def fill(self, c):
        """Contexts until CreateContext is refused; returns (paths, error)."""
        paths = []
        for _ in range(NOFILE):
            try:
                paths.append(c.create_context())
            except harness.DBusError as e:
                return paths, e
        self.fail(f'{NOFILE} contexts made with RLIMIT_NOFILE={NOFILE}: the limit is not in force\n'
                  f'{fd_listing(self.daemon.proc.pid)}')

    def test_create_context(self):
        c = self.client()
        paths, err = self.fill(c)
        # Every context costs one file (the iommufd or the container): all
        # the files the daemon did not have at start went to leases.
        self.assertEqual(len(paths), NOFILE - self.baseline, fd_listing(self.daemon.proc.pid))
        self.assertOutOfFiles(err, 'CreateContext')
        self.assertIn('/dev/iommu' if self.CDEV else '/dev/vfio/vfio', err.message)
        self.assertEqual(self.context_paths(), sorted(paths))
        logged = self.refusals_logged()
        self.assertEqual(len(logged), 1, self.daemon.log())
        self.assertIn(f'RLIMIT_NOFILE={NOFILE}', logged[0])
        # Refused again, and logged again: nothing was left half made.
        self.assertOutOfFiles(c.error(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', {}), 'again')
        self.assertEqual(len(self.refusals_logged()), 2, self.daemon.log())
        # An unleased hot reset makes a private context: refused the same way.
        self.assertOutOfFiles(c.error(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', NVME, {}), 'Manager.HotReset')
        self.assertEqual(len(self.refusals_logged()), 3, self.daemon.log())
        self.assertEqual(self.context_paths(), sorted(paths))
        self.assertFdCount(NOFILE, 'when refused')

        # One lease released: one more can be made, and then no more.
        c.call(paths.pop(), CONTEXT_IFACE, 'Release')
        paths.append(c.create_context())
        self.assertOutOfFiles(c.error(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', {}), 'full again')

        # The daemon serves everything else meanwhile.
        self.assertEqual(c.call(ROOT_PATH, PEER_IFACE, 'Ping'), [])
        self.assertEqual(len(self.env.list_devices()), len(load_machine('leases.json')['devices']))
        self.assertDaemonRunning()

        # Every lease gone (half released, half with the connection):
        # exactly the files of the start.
        for p in paths[:len(paths) // 2]:
            c.call(p, CONTEXT_IFACE, 'Release')
        c.exit()
        self.assertFdCount(self.baseline, 'after every lease is gone')
        self.assertNoContexts()
        # And leasing works as before.
        d = self.client('after')
        ctx = d.create_context()
        d.attach(ctx, LONE)

    def test_attach_device(self):
        c = self.client()
        paths, err = self.fill(c)
        self.assertOutOfFiles(err, 'CreateContext')
        # A file for one context, which takes it: full, with an empty lease.
        c.call(paths.pop(), CONTEXT_IFACE, 'Release')
        ctx = c.create_context()
        err = c.error(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', LONE, {})
        self.assertOutOfFiles(err, 'AttachDevice')
        self.assertIn(LONE if self.CDEV else '/dev/vfio/100', err.message)
        self.assertEqual(self.ctx_devices(ctx), [])
        self.assertEqual(self.holder(LONE), '/')
        self.assertEqual(len(self.refusals_logged()), 2, self.daemon.log())
        # Room for the device's file (the cdev; the group's and the device's
        # in the legacy model): it attaches.
        for p in paths[-2:]:
            c.call(p, CONTEXT_IFACE, 'Release')
        c.attach(ctx, LONE)
        self.assertEqual(self.ctx_devices(ctx), [LONE])
        self.assertEqual(self.holder(LONE), ctx)
        c.exit()
        self.assertFdCount(self.baseline, 'after every lease is gone')
        self.assertEqual(self.holder(LONE), '/')


    # Expected to fail until bus/context-dbus.c handles it: OpenDevice and
    # OpenIommufd reply with sd_bus_reply_method_return(msg, "h", fd), and
    # sd-bus duplicates the file (F_DUPFD_CLOEXEC) while building the reply;
    # out of files, that must be the daemon's precise error, not sd-bus's
    # System.Error.EMFILE.
    def test_open_files(self):
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, LONE)
        paths, err = self.fill(c)
        self.assertOutOfFiles(err, 'CreateContext')
        self.assertOutOfFiles(c.error(ctx, CONTEXT_IFACE, 'OpenDevice', 's', LONE), 'OpenDevice')
        if self.CDEV:
            self.assertOutOfFiles(c.error(ctx, CONTEXT_IFACE, 'OpenIommufd'), 'OpenIommufd')
        self.assertEqual(len(self.refusals_logged()), 3 if self.CDEV else 2, self.daemon.log())
        # The daemon's duplicate is gone with the reply: one free file is
        # enough for any number of them.
        c.call(paths.pop(), CONTEXT_IFACE, 'Release')
        for _ in range(3):
            (dev,) = c.call(ctx, CONTEXT_IFACE, 'OpenDevice', 's', LONE)
            self.assertIn('hotresetd-emulated', dev['unix_fd']['link'])
        self.assertFdCount(NOFILE - 1, 'after sending files')

    # reset_job_submit() duplicates the files the reset uses: out of files,
    # the caller hears the limit, not a bare EMFILE.
    def test_hot_reset(self):
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, LONE)
        paths, err = self.fill(c)
        self.assertOutOfFiles(err, 'CreateContext')
        self.assertOutOfFiles(c.error(ctx, CONTEXT_IFACE, 'HotReset', 's', LONE), 'HotReset')
        self.assertEqual(len(self.refusals_logged()), 2, self.daemon.log())
        for p in paths[-3:]:
            c.call(p, CONTEXT_IFACE, 'Release')
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'HotReset', 's', LONE), [[LONE]])


class CdevOutOfFilesTest(OutOfFilesTests, LeaseTestCase):
    CDEV = True


class GroupOutOfFilesTest(OutOfFilesTests, LeaseTestCase):
    CDEV = False


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


# ---------------------------------------------------------------------------
# Many leases on one connection


class ManyLeasesTest(LeaseTestCase):
    """One connection, 600 leases, on a system-like bus whose configuration
    sets no <limit>: dbus-daemon's built-in limits apply, among them 512
    match rules per connection (the daemon's) and 128 pending replies."""

    MACHINE = load_machine('leases.json')
    SYSTEM_BUS = True
    N = 600

    def test_600_leases_on_one_connection(self):
        with open(self.env.bus.config_path) as f:
            self.assertNotIn('<limit', f.read(), "the bus must run with dbus-daemon's default limits")
        baseline = self.fd_count()
        c = self.client('vmm')
        paths = []
        for i in range(self.N):
            try:
                paths.append(c.create_context(Description=f'lease {i + 1}'))
            except (harness.DBusError, AssertionError) as e:
                rc = self.daemon.wait_exit(5 * harness.TIMEOUT_SCALE)
                lines = [line for line in self.daemon.log().splitlines()
                         if not line.startswith(('Releasing ', 'Failed to announce the removal'))]
                self.fail(f'CreateContext number {i + 1} on one connection failed: {e}\n'
                          f'hotresetd {"is running" if rc is None else f"exited with status {rc}"}; '
                          f'its log ends with:\n' + '\n'.join(lines[-6:]) + '\n'
                          f'dbus-daemon said:\n{self.env.bus.log().strip()}')
        self.assertEqual(len(set(paths)), self.N)
        self.assertDaemonRunning()

        # Still on the bus and answering: Ping from that connection and
        # from another, and a new lease on each.
        self.assertEqual(c.call(ROOT_PATH, PEER_IFACE, 'Ping'), [])
        self.env.busctl('call', BUS_NAME, ROOT_PATH, PEER_IFACE, 'Ping')
        other = self.client('other')
        other_ctx = other.create_context()
        paths.append(c.create_context(Description='one more'))
        listed = self.context_paths()
        self.assertEqual(len(listed), self.N + 2)
        self.assertEqual(set(listed), set(paths) | {other_ctx})
        self.assertFdCount(baseline + self.N + 2, 'with every lease')
        self.assertEqual(c.call(paths[-1], harness.PROPS_IFACE, 'Get', 'ss', CONTEXT_IFACE, 'Owner'),
                         [c.unique_name])

        # A hundred released one by one, the rest with the connection.
        for p in paths[:100]:
            c.call(p, CONTEXT_IFACE, 'Release')
        self.assertEqual(len(self.context_paths()), self.N + 2 - 100)
        c.exit()
        deadline = time.monotonic() + harness.SIGNAL_TIMEOUT
        while self.context_paths() != [other_ctx] and time.monotonic() < deadline:
            time.sleep(0.1)
        remaining = self.context_paths()
        self.assertEqual(remaining, [other_ctx], f'{len(remaining)} leases left after the connection ended')
        self.assertFdCount(baseline + 1, "after the connection's end")
        self.assertEqual(other.call(ROOT_PATH, PEER_IFACE, 'Ping'), [])
        other.exit()
        self.assertNoContexts()
        self.assertFdCount(baseline, 'after every lease is gone')
        self.assertDaemonRunning()


if __name__ == '__main__':
    harness.main()

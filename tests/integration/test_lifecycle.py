#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Start-up and shutdown: --version, READY=1 over NOTIFY_SOCKET, the bus
name, exit status 0 on SIGTERM and SIGINT (and the name released), the
emulation labelled in the log."""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import BUS_NAME  # noqa: E402


class VersionTest(harness.HotresetdTestCase):
    MACHINE = None

    def test_version(self):
        p = subprocess.run([harness.daemon_binary(), '--version'], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=harness.START_TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(harness.expected_version(), p.stdout.decode())
        self.assertEqual(p.stdout.decode().strip(), f'hotresetd {harness.expected_version()}')


class LifecycleTest(harness.HotresetdTestCase):
    MACHINE = 'workstation.json'

    def test_ready_notification(self):
        d = self.daemon
        deadline = time.monotonic() + harness.START_TIMEOUT
        while not d.ready_seen() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertIn('READY=1', d.notifications)

    def test_owns_name(self):
        owner = self.env.name_owner(BUS_NAME)
        self.assertIsNotNone(owner)
        self.assertTrue(owner.startswith(':'), owner)
        self.assertEqual(owner, self.daemon.unique_name)

    def test_sigterm(self):
        self.assertEqual(self.daemon.stop(signal.SIGTERM), 0, self.daemon.log())
        self.assertIsNone(self.env.name_owner(BUS_NAME))

    def test_sigint(self):
        self.assertEqual(self.daemon.stop(signal.SIGINT), 0, self.daemon.log())
        self.assertIsNone(self.env.name_owner(BUS_NAME))

    def test_sigterm_while_monitored_and_after_calls(self):
        rec, _ = self.record()
        self.env.list_devices()
        self.env.check_hot_reset('0000:01:00.0')
        self.env.managed_objects()
        self.assertEqual(self.daemon.stop(signal.SIGTERM), 0, self.daemon.log())

    def test_emulation_labelled_in_log(self):
        self.assertRegex(self.daemon.log(), r'(?i)emulat')

    def test_second_instance_does_not_steal_the_name(self):
        first = self.daemon.unique_name
        second = harness.Daemon(self.env, self.env.machine_path, name='second')
        self.env.daemons.append(second)
        second.start()
        rc = second.wait_exit(timeout=5 * harness.TIMEOUT_SCALE)
        # Either it gives up (non-zero) or it waits in the queue; the name
        # stays with the first daemon in both cases.
        self.assertEqual(self.env.name_owner(BUS_NAME), first)
        if rc is not None:
            self.assertNotEqual(rc, 0, second.log())
        self.assertDaemonRunning()
        self.assertEqual(self.env.manager_property('DeviceCount'), 16)


class LogControlTest(harness.HotresetdTestCase):
    """org.freedesktop.LogControl1, what `systemctl service-log-level` and
    `service-log-target` call."""
    MACHINE = 'workstation.json'
    SYSTEM_BUS = True  # the project's bus policy: the interface must be allowed

    PATH = '/org/freedesktop/LogControl1'
    IFACE = 'org.freedesktop.LogControl1'

    def get(self, name, user=None):
        p = self.env.busctl_as(user, 'get-property', BUS_NAME, self.PATH, self.IFACE, name)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)['data']

    def set(self, name, value, user=None):
        return self.env.busctl_as(user, 'set-property', BUS_NAME, self.PATH, self.IFACE, name, 's', value)

    def test_level(self):
        self.assertEqual(self.get('LogLevel'), 'debug')  # the tests run it with --log-level=debug
        self.assertEqual(self.get('SyslogIdentifier'), 'hotresetd')
        self.assertEqual(self.get('LogTarget'), 'auto')
        p = self.set('LogLevel', 'err')
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.get('LogLevel'), 'err')
        # Info lines stop: a lease created now leaves no "Created" line.
        before = self.daemon.log()
        self.env.busctl('call', BUS_NAME, harness.ROOT_PATH, harness.MANAGER_IFACE, 'CreateContext', 'a{sv}',
                        1, 'Persistent', 'b', 'true')
        self.assertNotIn('Created /org/hotresetd/Broker1/context/1', self.daemon.log()[len(before):])
        p = self.set('LogLevel', 'info')
        self.assertEqual(p.returncode, 0, p.stderr)
        self.env.busctl('call', BUS_NAME, harness.ROOT_PATH, harness.MANAGER_IFACE, 'CreateContext', 'a{sv}',
                        1, 'Persistent', 'b', 'true')
        self.daemon.wait_log('Created /org/hotresetd/Broker1/context/2')

    def test_bad_values_refused(self):
        p = self.set('LogLevel', 'loud')
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Unknown log level 'loud'", p.stderr.decode())
        p = self.set('LogTarget', 'kmsg')
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Unsupported log target 'kmsg'", p.stderr.decode())
        self.assertEqual(self.get('LogLevel'), 'debug')
        self.assertEqual(self.get('LogTarget'), 'auto')

    def test_target_null_and_back(self):
        self.assertEqual(self.set('LogTarget', 'null').returncode, 0)
        before = len(self.daemon.log())
        self.env.list_devices()
        self.env.busctl('call', BUS_NAME, harness.ROOT_PATH, harness.MANAGER_IFACE, 'CreateContext', 'a{sv}',
                        1, 'Persistent', 'b', 'true')
        self.assertEqual(self.daemon.log()[before:], '')
        self.assertEqual(self.set('LogTarget', 'console').returncode, 0)
        self.assertEqual(self.get('LogTarget'), 'console')
        self.daemon.wait_log('Log target set to console')

    def test_unprivileged_may_read_not_set(self):
        user = harness.ensure_user('hotresetd-test-log')
        self.env.allow_other_users()
        self.assertEqual(self.get('LogLevel', user=user), 'debug')
        p = self.set('LogLevel', 'err', user=user)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('Access denied', p.stderr.decode())
        self.assertEqual(self.get('LogLevel'), 'debug')


if __name__ == '__main__':
    harness.main()

#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Start-up and shutdown: --version, READY=1 over NOTIFY_SOCKET, the bus
name, exit status 0 on SIGTERM and SIGINT (and the name released), the
emulation labelled in the log."""

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


if __name__ == '__main__':
    harness.main()

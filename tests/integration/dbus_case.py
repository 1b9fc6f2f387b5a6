# SPDX-License-Identifier: LGPL-2.1-or-later
"""What the tests that hold bus connections through python3-dbus share
(test_vmm.py, test_restart.py): connections closed at teardown, proxies of
the manager and of contexts, the D-Bus error a call must fail with, and
waiting for a condition."""
import time

import dbus

import harness
from harness import BUS_NAME, MANAGER_IFACE, ROOT_PATH

CONTEXT_IFACE = 'org.hotresetd.Broker1.Context'
PROPS_IFACE = 'org.freedesktop.DBus.Properties'


def wait_until(predicate, what, timeout=10):
    deadline = time.monotonic() + timeout * harness.TIMEOUT_SCALE
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f'timed out waiting for {what}')


class DBusTestCase(harness.HotresetdTestCase):
    def setUp(self):
        super().setUp()
        self.conns = []

    def tearDown(self):
        for c in self.conns:
            c.close()
        super().tearDown()

    def connect(self):
        """A new connection to the test's bus, closed at teardown."""
        c = dbus.bus.BusConnection(self.env.bus.address)
        self.conns.append(c)
        return c

    def manager(self, conn=None):
        return dbus.Interface((conn or self.connect()).get_object(BUS_NAME, ROOT_PATH), MANAGER_IFACE)

    def context(self, path, conn=None):
        return dbus.Interface((conn or self.connect()).get_object(BUS_NAME, path), CONTEXT_IFACE)

    def contexts(self):
        """ListContexts, as (path, owner, description, uid, pid, lifetime) tuples."""
        return [tuple(x) for x in self.manager().ListContexts()]

    def holder(self, address):
        return str(self.env.device_property(address, 'Context'))

    def assertDBusError(self, name, fn, *args, contains=()):
        with self.assertRaises(dbus.DBusException) as cm:
            fn(*args)
        self.assertEqual(cm.exception.get_dbus_name(), name, cm.exception.get_dbus_message())
        for s in contains:
            self.assertIn(s, cm.exception.get_dbus_message())
        return cm.exception

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Leases across restarts (systemd's file descriptor store), in both
models, through python3-dbus: the test stands in for systemd (a
NOTIFY_SOCKET that keeps FDSTORE=1 files and honours FDSTOREREMOVE=1, then
LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID for the next start, $FDSTORE and
$RUNTIME_DIRECTORY as the unit sets them). After SIGTERM and after SIGKILL
the lease is back at the same path with its devices, held, and resettable
through the restored files; the emulated kernel's state comes back from
the memfds. Records that do not hold up (corrupt, another backend, a file
missing, a device gone meanwhile) are dropped with their files, and
connection- and process-tied leases whose owner went meanwhile are
released."""
import json
import os
import signal
import subprocess
import time

import dbus

import harness
from harness import BUS_NAME, MANAGER_IFACE, ROOT_PATH

CONTEXT_IFACE = 'org.hotresetd.Broker1.Context'
PROPS_IFACE = 'org.freedesktop.DBus.Properties'
ERR = 'org.hotresetd.Broker1.Error.'


def wait_until(predicate, what, timeout=10):
    deadline = time.monotonic() + timeout * harness.TIMEOUT_SCALE
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f'timed out waiting for {what}')


def store_name(address):
    return 'd' + address.replace(':', '_', 2)


class RestartBase(harness.HotresetdTestCase):
    DEVICE = None  # a device bound to vfio-pci, alone in its group
    OTHER = None   # another one, in another group

    def setUp(self):
        self.DAEMON_ENV = None
        self.conns = []
        # The environment needs the test's temporary directory: start the
        # daemon ourselves.
        machine, self.MACHINE = self.MACHINE, None
        super().setUp()
        self.MACHINE = machine
        self.env.start_daemon(machine, extra_env=self.env.fd_store_env())
        self.runtime = self.env.fd_store_env()['RUNTIME_DIRECTORY']

    def tearDown(self):
        for c in self.conns:
            c.close()
        super().tearDown()

    # --- helpers

    def connect(self):
        c = dbus.bus.BusConnection(self.env.bus.address)
        self.conns.append(c)
        return c

    def manager(self, conn=None):
        return dbus.Interface((conn or self.connect()).get_object(BUS_NAME, ROOT_PATH), MANAGER_IFACE)

    def context(self, path, conn=None):
        return dbus.Interface((conn or self.connect()).get_object(BUS_NAME, path), CONTEXT_IFACE)

    def context_prop(self, path, name):
        obj = self.connect().get_object(BUS_NAME, path)
        return obj.Get(CONTEXT_IFACE, name, dbus_interface=PROPS_IFACE)

    def contexts(self):
        return sorted(str(x[0]) for x in self.manager().ListContexts())

    def holder(self, address):
        return str(self.env.device_property(address, 'Context'))

    def lease(self, address, conn=None, **options):
        opts = dbus.Dictionary({'Description': 'restart test'}, signature='sv')
        opts.update(options)
        path = str(self.manager(conn).CreateContext(opts))
        self.context(path, conn).AttachDevice(address, dbus.Dictionary({}, signature='sv'))
        return path

    def stored(self):
        return self.env.daemon.stored_names()

    def records(self):
        d = os.path.join(self.runtime, 'leases')
        return sorted(f for f in os.listdir(d) if f != 'last-id') if os.path.isdir(d) else []

    def record_path(self, ctx):
        return os.path.join(self.runtime, 'leases', ctx.rsplit('/', 1)[1] + '.json')

    def restart(self, sig=signal.SIGTERM):
        rc, d = self.env.restart_daemon(sig)
        if sig == signal.SIGTERM:
            self.assertEqual(rc, 0, self.env.daemons[-2].log())
        return d

    def assertDBusError(self, name, fn, *args):
        with self.assertRaises(dbus.DBusException) as cm:
            fn(*args)
        self.assertEqual(cm.exception.get_dbus_name(), name, cm.exception.get_dbus_message())
        return cm.exception

    def assert_free(self, address):
        """Nobody holds address: a new lease can take it (and reset it,
        for DEVICE; OTHER's slot has a device on a host driver)."""
        self.assertEqual(self.holder(address), '/')
        ctx = self.lease(address, Persistent=True)
        if address == self.DEVICE:
            self.context(ctx).HotReset(address)
        self.context(ctx).Release()

    # --- the tests, for both models

    def check_lease_survives(self, sig):
        ctx = self.lease(self.DEVICE, Persistent=True)
        prefix = ctx.rsplit('/', 1)[1]
        self.context(ctx).HotReset(self.DEVICE)
        names = self.stored()
        self.assertIn(f'c{prefix}-{store_name(self.DEVICE)}', names)
        self.assertIn(f'c{prefix}-' + ('iommufd' if self.CDEV else 'container'), names)
        self.assertEqual(self.records(), [prefix + '.json'])

        d = self.restart(sig)
        self.assertIn(f'Restored {ctx}', d.log())
        self.assertEqual(self.contexts(), [ctx])
        self.assertEqual([str(x) for x in self.context_prop(ctx, 'Devices')], [self.DEVICE])
        self.assertEqual(self.holder(self.DEVICE), ctx)
        self.assertEqual(str(self.context_prop(ctx, 'Description')), 'restart test')
        self.assertTrue(bool(self.context_prop(ctx, 'Persistent')))
        # The restored files work: the kernel still has the device bound.
        affected = self.context(ctx).HotReset(self.DEVICE)
        self.assertIn(self.DEVICE, [str(a) for a in affected])
        # Others cannot take it.
        other = str(self.manager().CreateContext(dbus.Dictionary({}, signature='sv')))
        self.assertDBusError(ERR + 'InUse', self.context(other).AttachDevice, self.DEVICE,
                             dbus.Dictionary({}, signature='sv'))
        self.context(other).Release()
        # A new lease gets a new id.
        new = self.lease(self.OTHER, Persistent=True)
        self.assertNotEqual(new, ctx)
        self.context(new).Release()
        # Released leases' paths are not given out again after a restart.
        self.restart(signal.SIGKILL)
        newer = self.lease(self.OTHER, Persistent=True)
        self.assertGreater(int(newer.rsplit('/', 1)[1]), int(new.rsplit('/', 1)[1]))
        self.context(newer).Release()

        # Released: its files and its record leave the store.
        self.context(ctx).Release()
        wait_until(lambda: not any(n.startswith(f'c{prefix}-') for n in self.stored()), 'the store emptied')
        self.assertEqual(self.records(), [])
        self.assert_free(self.DEVICE)

    def test_sigterm_keeps_lease(self):
        self.check_lease_survives(signal.SIGTERM)

    def test_sigkill_keeps_lease(self):
        self.check_lease_survives(signal.SIGKILL)

    def test_two_restarts_and_detach(self):
        ctx = self.lease(self.DEVICE, Persistent=True)
        self.context(ctx).AttachDevice(self.OTHER, dbus.Dictionary({}, signature='sv'))
        self.restart(signal.SIGKILL)
        self.context(ctx).DetachDevice(self.OTHER)
        self.assertNotIn(f'c{ctx.rsplit("/", 1)[1]}-{store_name(self.OTHER)}', self.stored())
        self.restart(signal.SIGTERM)
        self.assertEqual([str(x) for x in self.context_prop(ctx, 'Devices')], [self.DEVICE])
        self.assertEqual(self.holder(self.OTHER), '/')
        self.assert_free(self.OTHER)
        self.context(ctx).HotReset(self.DEVICE)
        self.context(ctx).Release()
        self.assert_free(self.DEVICE)

    def test_connection_lease_kept_while_owner_stays(self):
        conn = self.connect()
        ctx = self.lease(self.DEVICE, conn=conn)
        self.restart(signal.SIGTERM)
        self.assertEqual(self.contexts(), [ctx])
        self.assertEqual(str(self.context_prop(ctx, 'Owner')), conn.get_unique_name())
        # The owner leaving now ends it, as before the restart.
        conn.close()
        wait_until(lambda: self.contexts() == [], 'the lease to end with its owner')
        self.assert_free(self.DEVICE)

    def test_connection_lease_whose_owner_left_meanwhile(self):
        conn = self.connect()
        ctx = self.lease(self.DEVICE, conn=conn)
        self.env.daemon.stop(signal.SIGTERM)
        conn.close()
        d = self.restart(signal.SIGTERM)
        wait_until(lambda: self.contexts() == [], 'the lease of a gone owner to be released')
        self.assertIn(ctx, d.log())
        self.assert_free(self.DEVICE)

    def test_process_lease(self):
        sleeper = subprocess.Popen(['sleep', '600'])
        try:
            pidfd = os.pidfd_open(sleeper.pid)
            ctx = self.lease(self.DEVICE, Pid=dbus.types.UnixFd(pidfd))
            os.close(pidfd)
            self.assertIn(f'c{ctx.rsplit("/", 1)[1]}-pidfd', self.stored())
            self.restart(signal.SIGKILL)
            self.assertEqual(self.contexts(), [ctx])
            self.assertEqual(int(self.context_prop(ctx, 'Pid')), sleeper.pid)
            # Its process exits while the daemon is away: released at start.
            self.env.daemon.stop(signal.SIGTERM)
            sleeper.kill()
            sleeper.wait()
            d = self.restart(signal.SIGTERM)
            wait_until(lambda: self.contexts() == [], 'the lease of an exited process to be released')
            self.assertIn(f'its process {sleeper.pid} exited', d.log())
            self.assert_free(self.DEVICE)
        finally:
            sleeper.kill()
            sleeper.wait()

    def test_corrupt_record_dropped(self):
        ctx = self.lease(self.DEVICE, Persistent=True)
        self.env.daemon.stop(signal.SIGTERM)
        with open(self.record_path(ctx), 'w') as f:
            f.write('{"version": 1, "backend": ')
        d = self.restart(signal.SIGTERM)
        self.assertIn('Dropping the lease record', d.log())
        self.assertEqual(self.contexts(), [])
        self.assertEqual(self.records(), [])
        # Its files were closed and left the store: the device is free.
        wait_until(lambda: self.stored() == [], 'the store emptied')
        self.assert_free(self.DEVICE)

    def test_record_of_another_backend_dropped(self):
        ctx = self.lease(self.DEVICE, Persistent=True)
        self.env.daemon.stop(signal.SIGTERM)
        with open(self.record_path(ctx)) as f:
            record = json.load(f)
        record['backend'] = 'iommufd'
        with open(self.record_path(ctx), 'w') as f:
            json.dump(record, f)
        d = self.restart(signal.SIGTERM)
        self.assertIn('it was made on another backend', d.log())
        self.assertEqual(self.contexts(), [])
        self.assert_free(self.DEVICE)

    def test_missing_device_file_drops_device(self):
        ctx = self.lease(self.DEVICE, Persistent=True)
        self.context(ctx).AttachDevice(self.OTHER, dbus.Dictionary({}, signature='sv'))
        old = self.env.daemon
        old.stop(signal.SIGTERM)
        name = f'c{ctx.rsplit("/", 1)[1]}-{store_name(self.OTHER)}'
        old.poll_notify()
        for item in [i for i in old.fd_store if i[0] == name]:
            os.close(item[1])
            old.fd_store.remove(item)
        d = self.restart(signal.SIGTERM)
        self.assertIn(f'dropping {self.OTHER} from the lease: its file is not in the file descriptor store', d.log())
        self.assertEqual([str(x) for x in self.context_prop(ctx, 'Devices')], [self.DEVICE])
        self.assert_free(self.OTHER)
        self.context(ctx).HotReset(self.DEVICE)

    def test_device_unbound_meanwhile(self):
        ctx = self.lease(self.DEVICE, Persistent=True)
        self.env.daemon.stop(signal.SIGTERM)
        machine = json.load(open(self.env.machine_path))
        for dev in machine['devices']:
            if dev['address'] == self.DEVICE:
                dev['driver'] = 'nvme'
        self.env.write_machine(machine)
        d = self.restart(signal.SIGTERM)
        self.assertIn(f'dropping {self.DEVICE} from the lease: it left its vfio driver', d.log())
        self.assertEqual(self.contexts(), [ctx])
        self.assertEqual(list(self.context_prop(ctx, 'Devices')), [])
        self.assertEqual(self.holder(self.DEVICE), '/')

    def test_stale_files_without_record_closed(self):
        ctx = self.lease(self.DEVICE, Persistent=True)
        self.env.daemon.stop(signal.SIGTERM)
        os.unlink(self.record_path(ctx))
        d = self.restart(signal.SIGTERM)
        self.assertIn('no lease record names it', d.log())
        self.assertEqual(self.contexts(), [])
        wait_until(lambda: self.stored() == [], 'the store emptied')
        self.assert_free(self.DEVICE)


class RestartIommufdTest(RestartBase):
    MACHINE = 'workstation.json'
    CDEV = True
    DEVICE = '0000:02:00.0'
    OTHER = '0000:03:10.2'


def _group_machine():
    """The workstation on the legacy group/container model only."""
    machine = harness.load_example('workstation.json')
    machine['cdev'] = False
    return machine


class RestartGroupTest(RestartBase):
    MACHINE = _group_machine()
    CDEV = False
    DEVICE = '0000:02:00.0'
    OTHER = '0000:03:10.2'


# Only the two models run.
del RestartBase

if __name__ == '__main__':
    harness.main()

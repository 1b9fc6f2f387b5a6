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

import dbus

import harness
from dbus_case import CONTEXT_IFACE, PROPS_IFACE, DBusTestCase, wait_until
from harness import BUS_NAME

ERR = 'org.hotresetd.Broker1.Error.'


def store_name(address):
    return 'd' + address.replace(':', '_', 2)


class RestartBase(DBusTestCase):
    DEVICE = None  # a device bound to vfio-pci, alone in its group
    OTHER = None   # another one, in another group
    FD_STORE = True

    def setUp(self):
        super().setUp()
        self.runtime = self.env.fd_store_env()['RUNTIME_DIRECTORY']

    # --- helpers

    def context_prop(self, path, name):
        obj = self.connect().get_object(BUS_NAME, path)
        return obj.Get(CONTEXT_IFACE, name, dbus_interface=PROPS_IFACE)

    def contexts(self):
        return sorted(str(x[0]) for x in super().contexts())


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

    def drop_from_store(self, old, name):
        old.poll_notify()
        for item in [i for i in old.fd_store if i[0] == name]:
            os.close(item[1])
            old.fd_store.remove(item)

    def test_restart_without_store_lets_go_of_the_files(self):
        ctx = self.lease(self.DEVICE, Persistent=True)
        old = self.env.daemon
        old.stop(signal.SIGTERM)
        old.stop_notify()
        store = old.take_fd_store()
        self.assertTrue(store)
        env = dict(old.extra_env, FDSTORE='0')
        d = harness.Daemon(self.env, old.machine_path, args=old.args, name='hotresetd-nostore', extra_env=env,
                           fd_store=store)
        self.env.daemons.append(d)
        self.env.daemon = d
        d.start()
        d.wait_ready()
        # Closed, and systemd asked to let go of them too; the records go.
        self.assertEqual(d.stored_names(), [])
        self.assertEqual(self.records(), [])
        self.assertIn('Removed 1 lease record', d.log())
        self.assertEqual(self.contexts(), [])
        self.assert_free(self.DEVICE)
        del ctx

    def test_bus_restart_ends_connection_leases(self):
        conn = self.connect()
        owner = conn.get_unique_name()
        ctx = self.lease(self.DEVICE, conn=conn)
        persistent = self.lease(self.OTHER, Persistent=True)
        self.env.daemon.stop(signal.SIGTERM)
        self.env.bus.stop()
        self.env.bus.start()
        self.conns = []
        # A stranger gets the old owner's unique name on the new bus.
        stranger = None
        for _ in range(50):
            c = dbus.bus.BusConnection(self.env.bus.address)
            self.conns.append(c)
            if c.get_unique_name() == owner:
                stranger = c
                break
        self.assertIsNotNone(stranger, f'no connection got {owner} again')
        d = self.restart(signal.SIGTERM)
        wait_until(lambda: self.contexts() == [persistent], 'the connection lease to be released')
        self.assertIn(f'Releasing {ctx}', d.log())
        self.assertIn('the system bus it was made on was restarted', d.log())
        self.assertEqual(self.holder(self.DEVICE), '/')
        self.context(persistent).Release()

    def test_same_pidfd_for_two_leases(self):
        sleeper = subprocess.Popen(['sleep', '600'])
        try:
            pidfd = os.pidfd_open(sleeper.pid)
            a = self.lease(self.DEVICE, Pid=dbus.types.UnixFd(pidfd))
            b = self.lease(self.OTHER, Pid=dbus.types.UnixFd(pidfd))
            os.close(pidfd)
            # Each lease has a pidfd of its own in the store (the stand-in
            # keeps one open file once, as systemd does).
            names = self.stored()
            for ctx in (a, b):
                self.assertIn(f'c{ctx.rsplit("/", 1)[1]}-pidfd', names)
            self.restart(signal.SIGKILL)
            self.assertEqual(self.contexts(), sorted([a, b]))
            sleeper.kill()
            sleeper.wait()
            wait_until(lambda: self.contexts() == [], 'both leases to end with their process')
        finally:
            sleeper.kill()
            sleeper.wait()

    def test_missing_pidfd_drops_lease(self):
        sleeper = subprocess.Popen(['sleep', '600'])
        try:
            pidfd = os.pidfd_open(sleeper.pid)
            ctx = self.lease(self.DEVICE, Pid=dbus.types.UnixFd(pidfd))
            os.close(pidfd)
            old = self.env.daemon
            old.stop(signal.SIGTERM)
            self.drop_from_store(old, f'c{ctx.rsplit("/", 1)[1]}-pidfd')
            d = self.restart(signal.SIGTERM)
            self.assertIn('the pidfd of its process is not in the file descriptor store', d.log())
            self.assertEqual(self.contexts(), [])
            self.assertEqual(self.records(), [])
            wait_until(lambda: self.stored() == [], 'the store emptied')
            self.assert_free(self.DEVICE)
        finally:
            sleeper.kill()
            sleeper.wait()

    def test_missing_iommufd_or_container_drops_lease(self):
        ctx = self.lease(self.DEVICE, Persistent=True)
        self.context(ctx).AttachDevice(self.OTHER, dbus.Dictionary({}, signature='sv'))
        old = self.env.daemon
        old.stop(signal.SIGTERM)
        self.drop_from_store(old, f'c{ctx.rsplit("/", 1)[1]}-' + ('iommufd' if self.CDEV else 'container'))
        self.restart(signal.SIGTERM)
        self.assertEqual(self.contexts(), [])
        wait_until(lambda: self.stored() == [], 'the store emptied')
        self.assert_free(self.DEVICE)
        self.assert_free(self.OTHER)

    def test_stale_files_without_record_closed(self):
        ctx = self.lease(self.DEVICE, Persistent=True)
        self.env.daemon.stop(signal.SIGTERM)
        os.unlink(self.record_path(ctx))
        # What a crash in the middle of writing a record leaves: removed.
        leftover = self.record_path(ctx) + '.Ab12Cd'
        with open(leftover, 'w') as f:
            f.write('{"version": 1, "bac')
        d = self.restart(signal.SIGTERM)
        self.assertIn('no lease record names it', d.log())
        self.assertFalse(os.path.exists(leftover))
        self.assertNotIn('Ignoring', d.log())
        self.assertEqual(self.contexts(), [])
        wait_until(lambda: self.stored() == [], 'the store emptied')
        self.assert_free(self.DEVICE)


class RestartIommufdTest(RestartBase):
    MACHINE = 'workstation.json'
    CDEV = True
    DEVICE = '0000:02:00.0'
    OTHER = '0000:03:10.2'

    def test_reopen_with_the_store(self):
        """The store's copy of a device file is the daemon's own: it does
        not keep ReopenDevice from handing out a fresh file."""
        ctx = self.lease(self.DEVICE, Persistent=True)
        fd = self.context(ctx).ReopenDevice(self.DEVICE).take()
        os.close(fd)
        name = f'c{ctx.rsplit("/", 1)[1]}-{store_name(self.DEVICE)}'
        self.assertIn(name, self.stored())
        with open(self.record_path(ctx)) as f:
            self.assertFalse(json.load(f)['devices'][0]['bound'])
        self.restart(signal.SIGKILL)
        self.assertEqual([str(x) for x in self.context_prop(ctx, 'Devices')], [self.DEVICE])
        self.assertEqual(self.holder(self.DEVICE), ctx)
        # Still a fresh file: it can be reopened again (nobody else has it).
        os.close(self.context(ctx).ReopenDevice(self.DEVICE).take())
        self.context(ctx).Release()
        self.assert_free(self.DEVICE)

    def test_forged_state_in_a_clients_copy(self):
        """A client's copy of its device file is the emulated kernel's
        memfd: what it writes there must not reach another lease."""
        third = '0000:03:10.0'  # IOMMU group 17; OTHER is in 18
        ctx = self.lease(self.OTHER, Persistent=True)
        fd = self.context(ctx).OpenDevice(self.OTHER).take()
        state = os.pread(fd, 4096, 0).decode()
        self.assertIn('iommu_group=18', state)
        forged = state.replace('iommu_group=18', 'iommu_group=17').encode()
        os.pwrite(fd, forged, 0)
        os.ftruncate(fd, len(forged))
        os.close(fd)
        self.restart(signal.SIGTERM)
        other = self.lease(third, Persistent=True)
        self.context(other).Release()
        self.context(ctx).Release()


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

    def test_missing_group_file_drops_its_devices(self):
        ctx = self.lease(self.DEVICE, Persistent=True)
        self.context(ctx).AttachDevice(self.OTHER, dbus.Dictionary({}, signature='sv'))
        group = self.env.device_property(self.DEVICE, 'IommuGroup')
        old = self.env.daemon
        old.stop(signal.SIGTERM)
        self.drop_from_store(old, f'c{ctx.rsplit("/", 1)[1]}-g{group}')
        d = self.restart(signal.SIGTERM)
        self.assertIn(f'dropping IOMMU group {group}', d.log())
        self.assertEqual([str(x) for x in self.context_prop(ctx, 'Devices')], [self.OTHER])
        self.context(ctx).Release()
        self.assert_free(self.DEVICE)
        self.assert_free(self.OTHER)


# Only the two models run.
del RestartBase

if __name__ == '__main__':
    harness.main()

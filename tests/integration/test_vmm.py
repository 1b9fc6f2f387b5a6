#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A VM manager's view, on the emulated kernel, through python3-dbus:
leases tied to a process (CreateContext's Pid), adoption after a manager
restart, ReopenDevice for a VMM started again, `hotresetctl run` (the
environment and the files COMMAND inherits, its exit status), and the
example client examples/vmm-client.py. A real QEMU on the real kernel is the
VM tier's (tests/vm, vm-vmm)."""
import json
import os
import signal
import subprocess
import sys

import dbus

import harness
from dbus_case import CONTEXT_IFACE, DBusTestCase, wait_until

NVME, VF0, VF2 = '0000:02:00.0', '0000:03:10.0', '0000:03:10.2'
SOURCE_ROOT = os.environ.get('HOTRESETD_SOURCE_ROOT', os.path.join(os.path.dirname(__file__), '..', '..'))


def hotresetctl():
    path = os.environ.get('HOTRESETCTL_BIN')
    if not path:
        raise RuntimeError('HOTRESETCTL_BIN is not set (run the tests with `meson test`)')
    return path


class VmmTestCase(DBusTestCase):
    MACHINE = 'workstation.json'


class ProcessLeaseTest(VmmTestCase):
    def test_lease_follows_the_process_not_its_creator(self):
        vmm = subprocess.Popen(['sleep', '600'])
        self.addCleanup(lambda: vmm.poll() is None and vmm.kill())
        creator = self.connect()
        pidfd = os.pidfd_open(vmm.pid)
        path = self.manager(creator).CreateContext({'Pid': dbus.types.UnixFd(pidfd), 'Description': 'vm-1'})
        os.close(pidfd)
        ctx = self.context(path, creator)
        ctx.AttachDevice(NVME, {'Bind': False})
        props = self.env.get_all(path, CONTEXT_IFACE)
        self.assertEqual((props['Lifetime'], props['Pid'], props['Persistent'], props['Owner']),
                         ('process', vmm.pid, False, 'uid:0'))
        self.assertIn((path, 'process', creator.get_unique_name(), 0, vmm.pid, 'vm-1'), self.contexts())
        self.assertIn(f'for as long as process {vmm.pid} lives', self.env.daemon.log())

        # The creator goes (a launcher exits, a manager restarts): kept.
        creator.close()
        self.conns.remove(creator)
        self.env.call_manager('ListDevices')  # the daemon has seen the disconnect by now
        self.assertEqual(self.holder(NVME), path)
        self.assertEqual([c[0] for c in self.contexts()], [path])

        # The VMM goes: so does the lease, and the device is free.
        vmm.kill()
        vmm.wait()
        wait_until(lambda: self.contexts() == [], 'the lease to end with its process')
        self.assertEqual(self.holder(NVME), '/')
        self.assertIn(f'its process {vmm.pid} exited', self.env.daemon.log())
        self.assertDaemonRunning()

    def test_pid_must_be_a_live_pidfd(self):
        m = self.manager(self.connect())
        with open('/dev/null') as f:
            self.assertDBusError('org.freedesktop.DBus.Error.InvalidArgs', m.CreateContext,
                                 {'Pid': dbus.types.UnixFd(f.fileno())}, contains=('pidfd',))
        gone = subprocess.Popen(['true'])
        pidfd = os.pidfd_open(gone.pid)
        gone.wait()
        self.assertDBusError('org.freedesktop.DBus.Error.InvalidArgs', m.CreateContext,
                             {'Pid': dbus.types.UnixFd(pidfd)}, contains=('exited',))
        self.assertDBusError('org.freedesktop.DBus.Error.InvalidArgs', m.CreateContext,
                             {'Pid': dbus.types.UnixFd(pidfd), 'Persistent': True}, contains=('exclude',))
        os.close(pidfd)
        self.assertDBusError('org.freedesktop.DBus.Error.InvalidArgs', m.CreateContext,
                             {'Pid': dbus.UInt32(5)}, contains=("'Pid' must be of type 'h'",))
        self.assertEqual(self.contexts(), [])

    def test_adopt(self):
        old = self.connect()
        path = self.manager(old).CreateContext({'Description': 'connection lease'})
        self.context(path, old).AttachDevice(NVME, {})
        new = self.connect()
        self.context(path, new).Adopt()
        self.assertEqual(self.env.get_property(path, CONTEXT_IFACE, 'Owner'), new.get_unique_name())
        self.assertIn(f'adopted by {new.get_unique_name()}', self.env.daemon.log())
        # The old connection may go now; the lease follows the new one.
        old.close()
        self.conns.remove(old)
        self.env.call_manager('ListDevices')
        self.assertEqual(self.holder(NVME), path)
        new.close()
        self.conns.remove(new)
        wait_until(lambda: self.contexts() == [], 'the lease to end with its adopter')

    def test_adopt_refused_to_another_uid(self):
        path = self.manager(self.connect()).CreateContext({'Persistent': True})
        other = harness.ensure_user('hrd-other')
        code = ('import dbus, sys\n'
                'b = dbus.bus.BusConnection(sys.argv[1])\n'
                'c = dbus.Interface(b.get_object("org.hotresetd.Broker1", sys.argv[2]), "org.hotresetd.Broker1.Context")\n'
                'try:\n    c.Adopt()\n    print("adopted")\n'
                'except dbus.DBusException as e:\n    print(e.get_dbus_name(), e.get_dbus_message())\n')
        self.env.allow_other_users()
        out = subprocess.run(harness.as_user(other, [sys.executable, '-c', code, self.env.bus.address, path]),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                             timeout=60).stdout
        self.assertTrue(out.startswith('org.freedesktop.DBus.Error.AccessDenied'), out)
        self.assertIn('only its uid may adopt it', out)
        self.assertEqual(self.env.get_property(path, CONTEXT_IFACE, 'Owner'), 'uid:0')


class ReopenTest(VmmTestCase):
    def test_reopen_waits_for_the_old_copies(self):
        conn = self.connect()
        path = self.manager(conn).CreateContext({'Persistent': True})
        ctx = self.context(path, conn)
        ctx.AttachDevice(NVME, {'Bind': False})
        old = ctx.OpenDevice(NVME).take()
        old_ino = os.fstat(old).st_ino
        self.assertIn('vfio-dev:0000:02:00.0', os.readlink(f'/proc/self/fd/{old}'))
        # A process (this one: the "old VMM") holds a copy: refused, named.
        err = self.assertDBusError('org.hotresetd.Broker1.Error.InUse', ctx.ReopenDevice, NVME,
                                   contains=(f'process {os.getpid()}', 'still holds a copy'))
        self.assertIn(NVME, err.get_dbus_message())
        os.close(old)
        new = ctx.ReopenDevice(NVME).take()
        self.assertIn('vfio-dev:0000:02:00.0', os.readlink(f'/proc/self/fd/{new}'))
        self.assertNotEqual(os.fstat(new).st_ino, old_ino)
        os.close(new)
        self.assertIn('reopened 0000:02:00.0: a fresh, unbound file', self.env.daemon.log())
        # Still the same lease, the same device.
        self.assertEqual(self.holder(NVME), path)
        self.assertDBusError('org.hotresetd.Broker1.Error.NotAttached', ctx.ReopenDevice, VF0)


class GroupModelTest(VmmTestCase):
    MACHINE = 'legacy-group.json'

    def test_reopen_and_run_refused(self):
        gpu = '0000:01:00.0'
        conn = self.connect()
        path = self.manager(conn).CreateContext({})
        ctx = self.context(path, conn)
        ctx.AttachDevice(gpu, {})
        self.assertDBusError('org.hotresetd.Broker1.Error.Unsupported', ctx.ReopenDevice, gpu,
                             contains=('IOMMU group',))
        p = subprocess.run([hotresetctl(), 'run', '--device', gpu, '--', 'true'], env=self.env.child_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn('iommufd model', p.stderr)
        self.assertEqual([c[0] for c in self.contexts()], [path])


INSPECT = r'''
import json, os, sys
fds = {}
for n in os.listdir('/proc/self/fd'):
    try:
        fds[n] = os.readlink('/proc/self/fd/' + n)
    except OSError:
        pass
env = {k: v for k, v in os.environ.items() if k.startswith('HOTRESETD_')}
print(json.dumps({'pid': os.getpid(), 'fds': fds, 'env': env, 'argv': sys.argv[1:]}), flush=True)
if os.environ.get('INSPECT_KILL_SELF'):
    os.kill(os.getpid(), 15)
sys.exit(int(os.environ.get('INSPECT_EXIT', '0')))
'''


class RunTest(VmmTestCase):
    def run_child(self, *devices, exit_status=0, kill_self=False, extra=()):
        env = self.env.child_env()
        env['INSPECT_EXIT'] = str(exit_status)
        if kill_self:
            env['INSPECT_KILL_SELF'] = '1'
        cmd = [hotresetctl(), 'run'] + [f'--device={d}' for d in devices] + list(extra) + \
            ['--', sys.executable, '-c', INSPECT, 'fd=$HOTRESETD_IOMMUFD']
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                           timeout=60)
        return p, (json.loads(p.stdout) if p.stdout.strip() else None)

    def test_files_and_environment(self):
        p, seen = self.run_child(NVME, VF0, exit_status=5)
        self.assertEqual(p.returncode, 5, p.stderr)
        env, fds = seen['env'], seen['fds']
        iommufd, nvme, vf0 = env['HOTRESETD_IOMMUFD'], env['HOTRESETD_DEVICE_0000_02_00_0'], \
            env['HOTRESETD_DEVICE_0000_03_10_0']
        self.assertEqual(env['HOTRESETD_DEVICES'], f'{NVME}={nvme} {VF0}={vf0}')
        self.assertTrue(env['HOTRESETD_CONTEXT'].startswith('/org/hotresetd/Broker1/context/'))
        # The files the numbers name are the context's iommufd and the devices'.
        self.assertIn('hotresetd-emulated:iommufd', fds[iommufd])
        self.assertIn('vfio-dev:0000:02:00.0', fds[nvme])
        self.assertIn('vfio-dev:0000:03:10.0', fds[vf0])
        # Nothing else of hotresetctl's leaked: not its bus connection, not
        # its pidfd, no other file of the daemon's.
        others = {n: link for n, link in fds.items() if n not in ('0', '1', '2', iommufd, nvme, vf0)}
        self.assertFalse([link for link in others.values()
                          if link.startswith('socket:') or 'pidfd' in link or 'memfd:' in link], fds)
        # It was the lease's process, and the lease ended with it.
        log = self.env.daemon.log()
        self.assertIn(f'for as long as process {seen["pid"]} lives', log)
        self.assertIn(f'attached {NVME} unbound', log)
        wait_until(lambda: self.contexts() == [], 'the lease to end with COMMAND')
        self.assertEqual(self.holder(NVME), '/')

    def test_signal_is_forwarded(self):
        p, seen = self.run_child(NVME, kill_self=True)
        self.assertEqual(p.returncode, -signal.SIGTERM, p.stderr)
        wait_until(lambda: self.contexts() == [], 'the lease to end with COMMAND')

    def test_failures_leave_nothing(self):
        # A device that cannot be leased: no COMMAND, no lease.
        # (--verbose: hotresetctl names the D-Bus error only then.)
        p, seen = self.run_child(NVME, '0000:01:00.0', extra=('--verbose',))  # its group has a host driver
        self.assertEqual(p.returncode, 1)
        self.assertIsNone(seen)
        self.assertIn('GroupNotViable', p.stderr)
        self.assertEqual(self.contexts(), [])
        p = subprocess.run([hotresetctl(), 'run', '--device', NVME, '--', '/nonexistent/vmm'],
                           env=self.env.child_env(), stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        self.assertEqual(p.returncode, 127, p.stderr)
        wait_until(lambda: self.contexts() == [], 'the lease to end')
        p = subprocess.run([hotresetctl(), 'run', '--', 'true'], env=self.env.child_env(),
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        self.assertEqual(p.returncode, 2)
        self.assertIn('no --device', p.stderr)
        # A malformed address: a usage error naming it, before any lease.
        p = subprocess.run([hotresetctl(), 'run', '--device', '01:00', '--', 'true'], env=self.env.child_env(),
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("'01:00'", p.stderr)
        self.assertEqual(self.contexts(), [])


class ExampleClientTest(VmmTestCase):
    def example(self, *args, timeout=60):
        return subprocess.run([sys.executable, os.path.join(SOURCE_ROOT, 'examples', 'vmm-client.py')] + list(args),
                              env=self.env.child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=timeout)

    def test_start_restart_adopt(self):
        # A "VMM" that shows what it got and exits 3.
        vmm = [sys.executable, '-c', INSPECT, 'fd={iommufd}', 'fd={device:0000:02:00.0}']
        env_exit = os.environ.get('INSPECT_EXIT')
        os.environ['INSPECT_EXIT'] = '3'
        try:
            p = self.example('start', '--device', NVME, '--', *vmm)
        finally:
            if env_exit is None:
                os.environ.pop('INSPECT_EXIT')
        self.assertEqual(p.returncode, 3, p.stderr)
        lines = p.stdout.splitlines()
        path, pid = lines[0].split()
        seen = json.loads(lines[1])
        self.assertEqual(int(pid), seen['pid'])
        iommufd, dev = (a.split('=')[1] for a in seen['argv'])
        self.assertIn('hotresetd-emulated:iommufd', seen['fds'][iommufd])
        self.assertIn('vfio-dev:0000:02:00.0', seen['fds'][dev])
        wait_until(lambda: self.contexts() == [], 'the VMM-tied lease to end with the VMM')

        # A persistent lease, a VMM started on it, then started again.
        p = self.example('start', '--persistent', '--device', NVME, '--', *vmm)
        self.assertEqual(p.returncode, 0, p.stderr)
        path = p.stdout.split()[0]
        p = self.example('restart', path, '--', *vmm)
        self.assertEqual(p.returncode, 0, p.stderr)
        seen = json.loads(p.stdout.splitlines()[1])
        self.assertIn('vfio-dev:0000:02:00.0', seen['fds'][seen['argv'][1].split('=')[1]])
        self.assertIn('reopened 0000:02:00.0', self.env.daemon.log())

        # The manager "restarted": it takes its leases back.
        p = self.example('adopt')
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.split()[:2], [path, 'persistent'])
        self.assertIn('adopted by', self.env.daemon.log())


if __name__ == '__main__':
    harness.main()

# SPDX-License-Identifier: LGPL-2.1-or-later
"""The VM tier's topology `vmm`: a real VMM, QEMU 10 nested in the guest
(TCG inside TCG), realizing a vfio-pci device from the broker's files.

The machine is vm-multifunction's: a two-function e1000e behind a PCIe root
port without hotplug, both functions on vfio-pci. For each scenario the
guest starts the daemon (`hotresetd --uapi=iommufd`, or `group` for the
group model), talks to it with python3-dbus (files arrive as
dbus.types.UnixFd and are taken with .take()), and starts QEMU 10 with

  qemu-system-x86_64 -S -nodefaults -no-user-config -machine q35 -accel tcg
    -display none -m 64M -qmp unix:SOCK,server=on,wait=off
    -object iommufd,id=i0,fd=N -device vfio-pci,id=h0,iommufd=i0,fd=M,bus=pcie.0,addr=0x5.0

with N and M the broker's files, inherited. A device is realized only when
QMP `query-pci` lists h0 at 00:05.0 with the function's vendor and device
ids (QEMU greets on QMP before it creates devices; a device that fails to
realize shows as exit status 1).

Guest side: guest_main() runs the scenarios and writes results/NAME.json
(every check with what was expected and what came, the first failure,
the daemon's log and exit status, QEMU's logs). Host side: report() prints
one TAP line per scenario (meson runs this test with protocol 'tap').

A scenario of a feature that is not in the daemon yet carries a Pending
marker (hrvm.VmmScenario.pending): when it fails exactly the way a missing
feature fails (the marker lists those errors), it is reported
`not ok ... # TODO <reason>` (meson: EXPECTEDFAIL); when it fails any other
way, `not ok` (FAIL); when it passes, `ok ... # TODO` (meson:
UNEXPECTEDPASS, a failure: the marker must go).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import traceback

import hrvm

F0, F1 = '0000:01:00.0', '0000:01:00.1'
HERE = os.path.dirname(os.path.abspath(__file__))
ERR = hrvm.ERR
UNKNOWN_METHOD = 'org.freedesktop.DBus.Error.UnknownMethod'
INVALID_ARGS = 'org.freedesktop.DBus.Error.InvalidArgs'
# A generous bound for one QEMU to realize its device: ~2 s measured, up to
# 7 s under load, nested TCG on 2 shared cores; times HOTRESETD_TEST_TIMEOUT.
REALIZE_TIMEOUT = 120
LEASE_END_TIMEOUT = 60


def timeout(s):
    return s * hrvm.TIMEOUT_SCALE


# ---------------------------------------------------------------------------
# Recording checks


class Failed(Exception):
    """A check failed; the scenario stops there."""


class Record:
    def __init__(self):
        self.checks = []
        self.failure = None

    def check(self, what, ok, expected=None, got=None, error=None):
        c = {'what': what, 'ok': bool(ok)}
        if expected is not None:
            c['expected'] = expected
        if got is not None:
            c['got'] = got
        if error:
            c['error'] = error
        self.checks.append(c)
        if not ok:
            self.failure = c
            raise Failed(what)
        return got

    def equal(self, what, got, want):
        return self.check(what, got == want, expected=want, got=got)

    def call(self, what, fn, *args, **kw):
        """A D-Bus call that must succeed; a D-Bus error fails the check
        with its name (which is what a Pending marker matches)."""
        try:
            return fn(*args, **kw)
        except hrvm.DBusError as e:
            self.check(what, False, expected='success', got=f'{e.name}: {e.message}', error=e.name)

    def refused(self, what, fn, want, *args, **kw):
        """A D-Bus call that must be refused with the error `want`."""
        try:
            r = fn(*args, **kw)
        except hrvm.DBusError as e:
            return self.check(what, e.name == want, expected=want, got=f'{e.name}: {e.message}',
                              error=None if e.name == want else e.name)
        self.check(what, False, expected=want, got=f'success: {r!r}')


# ---------------------------------------------------------------------------
# The daemon over python3-dbus (guest)


class Broker:
    """One bus connection to hotresetd (python3-dbus)."""

    def __init__(self, address):
        import dbus  # guest only
        self.dbus = dbus
        self.conn = dbus.bus.BusConnection(address)

    def close(self):
        self.conn.close()

    def _call(self, path, iface, method, *args, timeout=120):
        obj = self.conn.get_object(hrvm.BUS_NAME, path, introspect=False)
        try:
            return obj.get_dbus_method(method, iface)(*args, timeout=timeout * hrvm.TIMEOUT_SCALE)
        except self.dbus.exceptions.DBusException as e:
            raise hrvm.DBusError(e.get_dbus_name() or 'dbus-python', e.get_dbus_message() or str(e))

    def opts(self, d):
        return self.dbus.Dictionary(d, signature='sv')

    def create_context(self, **options):
        o = {}
        for k, v in options.items():
            if isinstance(v, bool):
                o[k] = self.dbus.Boolean(v)
            elif isinstance(v, str):
                o[k] = self.dbus.String(v)
            elif isinstance(v, self.dbus.types.UnixFd):
                o[k] = v
            else:
                raise TypeError(k)
        return str(self._call(hrvm.ROOT_PATH, hrvm.MANAGER_IFACE, 'CreateContext', self.opts(o)))

    def attach(self, ctx, address, bind=True):
        o = {} if bind else {'Bind': self.dbus.Boolean(False)}
        return int(self._call(ctx, hrvm.CONTEXT_IFACE, 'AttachDevice', address, self.opts(o)))

    def fd(self, ctx, method, *args):
        """A file from the broker, ours to close (UnixFd.take())."""
        return self._call(ctx, hrvm.CONTEXT_IFACE, method, *args).take()

    def context_call(self, ctx, method, *args):
        return self._call(ctx, hrvm.CONTEXT_IFACE, method, *args)

    def release(self, ctx):
        self._call(ctx, hrvm.CONTEXT_IFACE, 'Release')

    def prop(self, path, iface, name):
        v = self._call(path, hrvm.PROPS_IFACE, 'Get', iface, name)
        return plain(v)

    def device_context(self, address):
        return self.prop(hrvm.device_path(address), hrvm.DEVICE_IFACE, 'Context')

    def contexts(self):
        objs = self._call(hrvm.ROOT_PATH, 'org.freedesktop.DBus.ObjectManager', 'GetManagedObjects')
        return sorted(str(p) for p, ifaces in objs.items() if hrvm.CONTEXT_IFACE in ifaces)

    def name_has_owner(self, name):
        return bool(self.conn.get_object('org.freedesktop.DBus', '/org/freedesktop/DBus', introspect=False)
                    .get_dbus_method('NameHasOwner', 'org.freedesktop.DBus')(name))


def plain(v):
    """dbus-python values as JSON-able Python values."""
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, str):
        return str(v)
    return v


def fd_target(fd):
    try:
        return os.readlink(f'/proc/self/fd/{fd}')
    except OSError as e:
        return f'({e})'


# ---------------------------------------------------------------------------
# QEMU 10 and QMP (guest)


class QmpError(Exception):
    pass


class Qemu:
    """One nested QEMU 10: argv, process, QMP."""

    def __init__(self, guest, name):
        self.guest = guest
        self.name = name
        d = guest.workdir
        self.sock = os.path.join(d, name + '.qmp')
        self.pidfile = os.path.join(d, name + '.pid')
        self.log_path = os.path.join(d, name + '.log')
        for p in (self.sock, self.pidfile):
            if os.path.exists(p):
                os.unlink(p)
        self.proc = None
        self.qmp = None
        self.qmp_file = None
        self.events = []

    def argv(self, iommufd, device):
        q = self.guest.qemu_dir
        return [os.path.join(q, 'usr/bin/qemu-system-x86_64'), '-L', os.path.join(q, 'usr/share/qemu'),
                '-S', '-nodefaults', '-no-user-config', '-machine', 'q35', '-accel', 'tcg', '-display', 'none',
                '-m', '64M', '-qmp', f'unix:{self.sock},server=on,wait=off', '-pidfile', self.pidfile,
                '-trace', 'vfio_pci_hot_reset*', '-trace', 'iommufd_cdev_pci_hot_reset_dep_devices',
                '-object', f'iommufd,id=i0,fd={iommufd}',
                '-device', f'vfio-pci,id=h0,iommufd=i0,fd={device},bus=pcie.0,addr=0x5.0']

    def env(self):
        env = self.guest.bus.env()
        env['QEMU_MODULE_DIR'] = os.path.join(self.guest.qemu_dir, 'usr/lib/x86_64-linux-gnu/qemu')
        return env

    def start(self, argv, pass_fds=(), env=None):
        self.guest.qemu_runs.append(self)
        self.argv_used = argv
        logf = open(self.log_path, 'w')
        logf.write('$ ' + ' '.join(argv) + '\n')
        logf.flush()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     pass_fds=tuple(pass_fds), env=env or self.env())
        logf.close()
        return self.proc

    def log(self):
        return hrvm._read(self.log_path, '') or ''

    def output(self):
        """What the program wrote (the log without the command line)."""
        return self.log().split('\n', 1)[1] if '\n' in self.log() else ''

    def resets(self):
        """QEMU's hot reset results (trace vfio_pci_hot_reset_result)."""
        return [l.split('hot reset: ', 1)[1] for l in self.output().splitlines()
                if l.startswith('vfio_pci_hot_reset_result') and 'hot reset: ' in l]

    def pid(self):
        """QEMU's pid from its -pidfile (it may run under a parent)."""
        deadline = time.monotonic() + timeout(REALIZE_TIMEOUT)
        while time.monotonic() < deadline:
            t = hrvm._read(self.pidfile)
            if t and t.strip().isdigit():
                return int(t)
            if self.proc.poll() is not None:
                return None
            time.sleep(0.1)
        return None

    def connect(self):
        deadline = time.monotonic() + timeout(REALIZE_TIMEOUT)
        while True:
            if self.proc.poll() is not None:
                raise QmpError(f'QEMU exited with status {self.proc.returncode} before QMP answered')
            if time.monotonic() > deadline:
                raise QmpError('QMP did not answer within the timeout')
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.sock)
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                time.sleep(0.1)
                continue
            break
        s.settimeout(timeout(REALIZE_TIMEOUT))
        self.qmp = s
        self.qmp_file = s.makefile('r')
        greeting = self._read()
        if 'QMP' not in greeting:
            raise QmpError(f'no QMP greeting: {greeting}')
        self.version = greeting['QMP']['version']['qemu']
        self.execute('qmp_capabilities')

    def _read(self):
        while True:
            try:
                line = self.qmp_file.readline()
            except (OSError, socket.timeout) as e:
                raise QmpError(f'QMP: {e}')
            if not line:
                raise QmpError('QMP connection closed (QEMU exited?)')
            obj = json.loads(line)
            if 'event' in obj:
                self.events.append(obj)
                continue
            return obj

    def execute(self, command, arguments=None):
        msg = {'execute': command}
        if arguments:
            msg['arguments'] = arguments
        try:
            self.qmp.sendall((json.dumps(msg) + '\n').encode())
        except OSError as e:
            raise QmpError(f'QMP: {e}')
        r = self._read()
        if 'error' in r:
            raise QmpError(f'{command}: {r["error"]}')
        return r.get('return')

    def find_h0(self):
        for bus in self.execute('query-pci'):
            for dev in bus['devices']:
                if dev.get('qdev_id') == 'h0':
                    return dev
        return None

    def realized(self, rec, address, what='QEMU realizes the device (QMP query-pci lists h0)'):
        """Connects to QMP and polls query-pci until h0 is there. Records the
        check: h0 at bus 0, slot 5, function 0 with the function's ids."""
        deadline = time.monotonic() + timeout(REALIZE_TIMEOUT)
        t0 = time.monotonic()
        dev, err = None, None
        try:
            if self.qmp is None:
                self.connect()
            while dev is None and time.monotonic() < deadline:
                dev = self.find_h0()
                if dev is None:
                    time.sleep(0.2)
        except QmpError as e:
            err = str(e)
        if dev is None:
            self.wait_exit(10)
            rc = self.proc.returncode
            rec.check(what, False, expected='h0 in query-pci',
                      got=f'{err or "not listed within the timeout"}; exit status {rc}; QEMU log: '
                          f'{self.log()[-1500:]}')
        facts = self.guest.facts['devices'][address]
        got = {'bus': dev['bus'], 'slot': dev['slot'], 'function': dev['function'],
               'vendor': dev['id']['vendor'], 'device': dev['id']['device']}
        want = {'bus': 0, 'slot': 5, 'function': 0, 'vendor': facts['vendor'], 'device': facts['device']}
        rec.check(what, got == want, expected=want, got=got)
        self.guest.timing('realize', time.monotonic() - t0)
        return dev

    def running(self, rec, what):
        """QEMU is still there and still has the device."""
        alive = self.proc.poll() is None
        dev = None
        if alive:
            try:
                dev = self.find_h0()
            except QmpError as e:
                dev = str(e)
        rec.check(what, alive and isinstance(dev, dict),
                  expected='QEMU running, h0 in query-pci',
                  got=f'exit status {self.proc.returncode}' if not alive else f'query-pci h0: {dev}')

    def quit(self, rec):
        """QMP quit; QEMU must exit 0."""
        try:
            self.execute('quit')
        except QmpError:
            pass  # QEMU may close the socket before the answer
        rc = self.wait_exit(timeout(60))
        rec.equal('QMP quit: QEMU exits 0', rc, 0)

    def kill(self, pid=None):
        """SIGKILL to QEMU (by pid when it runs under another process)."""
        os.kill(pid or self.proc.pid, signal.SIGKILL)

    def wait_exit(self, t):
        try:
            return self.proc.wait(t)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.qmp:
            try:
                self.qmp_file.close()
                self.qmp.close()
            except OSError:
                pass
            self.qmp = None
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------
# Scenarios (guest). Each takes the Guest and a Record; a failed check
# raises Failed and ends the scenario (Guest.run_scenario cleans up).


def sc_today(g, rec):
    """(a) Today's API: CreateContext, AttachDevice(Bind=false), OpenIommufd,
    OpenDevice; QEMU realizes the device and resets it (system_reset); a
    second QEMU on copies of the same, now bound, file cannot bind it."""
    b = g.broker
    ctx = rec.call('CreateContext({})', b.create_context, Description='VM tier vmm-today')
    rec.equal('AttachDevice(f0, {Bind: false}) returns devid 0', rec.call('AttachDevice', b.attach, ctx, F0, False), 0)
    cdev = b.prop(hrvm.device_path(F0), hrvm.DEVICE_IFACE, 'CdevPath')
    ifd = rec.call('OpenIommufd()', b.fd, ctx, 'OpenIommufd')
    dfd = rec.call('OpenDevice(f0)', b.fd, ctx, 'OpenDevice', F0)
    rec.equal('OpenIommufd gives /dev/iommu', fd_target(ifd), '/dev/iommu')
    rec.equal('OpenDevice gives the function\'s cdev (Device.CdevPath)', fd_target(dfd), cdev)
    rec.equal('Device.Context of f0 is the context', b.device_context(F0), ctx)
    rec.equal('Device.Context of f1 is "/"', b.device_context(F1), '/')
    q = Qemu(g, 'today')
    q.start(q.argv(ifd, dfd), pass_fds=(ifd, dfd))
    os.close(ifd)
    os.close(dfd)
    q.realized(rec, F0)
    # QEMU resets the machine once as it starts; system_reset resets it
    # again: a hot reset of the bus through QEMU's own iommufd (the trace
    # event vfio_pci_hot_reset_result), f1 owned through its group (devid 0).
    before = q.resets()
    try:
        r = q.execute('system_reset')
        ok, got = r == {}, r
    except QmpError as e:
        ok, got = False, str(e)
    rec.check('QMP system_reset returns {}', ok, expected={}, got=got)
    q.running(rec, 'QEMU keeps running with h0 after system_reset')
    deadline = time.monotonic() + timeout(30)
    while len(q.resets()) <= len(before) and time.monotonic() < deadline:
        time.sleep(0.2)
    rec.equal('system_reset: QEMU\'s trace shows one more "hot reset: Success"', q.resets(), before + ['Success'])
    deps = sorted(set(re.findall(r'^iommufd_cdev_pci_hot_reset_dep_devices\s+(\S+) devid (\d+)$', q.output(), re.M)))
    rec.equal('QEMU\'s hot reset: f0 bound to its iommufd (devid > 0), f1 owned through the group (devid 0)',
              [[a, 'devid 0' if d == '0' else 'devid > 0'] for a, d in deps], [[F0, 'devid > 0'], [F1, 'devid 0']])
    q.quit(rec)
    rec.equal('Device.Context of f0 is still the context after QEMU quit', b.device_context(F0), ctx)

    # The bind lasts as long as the open file: copies of it cannot be bound again.
    ifd = rec.call('OpenIommufd() again', b.fd, ctx, 'OpenIommufd')
    dfd = rec.call('OpenDevice(f0) again (the same file, bound by the first QEMU)', b.fd, ctx, 'OpenDevice', F0)
    q2 = Qemu(g, 'today-again')
    q2.start(q2.argv(ifd, dfd), pass_fds=(ifd, dfd))
    os.close(ifd)
    os.close(dfd)
    rc = q2.wait_exit(timeout(REALIZE_TIMEOUT))
    rec.equal('a second QEMU on the same (bound) file exits 1', rc, 1)
    bind_err = [l for l in q2.log().splitlines() if 'error bind device' in l]
    rec.check('... saying it cannot bind the device', bool(bind_err) and 'Invalid argument' in bind_err[0],
              expected='error bind device fd=... to iommufd=...: Invalid argument', got=q2.output()[-600:])
    rec.call('Release()', b.release, ctx)
    rec.equal('Device.Context of f0 is "/" after Release', b.device_context(F0), '/')


def start_on_new_lease(g, rec, name, description):
    """CreateContext on the scenario's connection, attach f0 unbound,
    QEMU on its files (which this process then closes); realized."""
    b = g.broker
    ctx = rec.call('CreateContext({})', b.create_context, Description=description)
    rec.equal('AttachDevice(f0, {Bind: false}) returns devid 0', rec.call('AttachDevice', b.attach, ctx, F0, False), 0)
    ifd = rec.call('OpenIommufd()', b.fd, ctx, 'OpenIommufd')
    dfd = rec.call('OpenDevice(f0)', b.fd, ctx, 'OpenDevice', F0)
    q = Qemu(g, name)
    q.start(q.argv(ifd, dfd), pass_fds=(ifd, dfd))
    os.close(ifd)
    os.close(dfd)
    q.realized(rec, F0)
    return ctx, q


def sc_hot_reset_while_held(g, rec):
    """(b) Context.HotReset through the broker while QEMU holds the device:
    the daemon's copy of the file is the file QEMU bound (one open file),
    so the kernel answers through it once QEMU has bound it, not before."""
    b = g.broker
    ctx = rec.call('CreateContext({})', b.create_context, Description='VM tier vmm-hot-reset-while-held')
    rec.equal('AttachDevice(f0, {Bind: false}) returns devid 0', rec.call('AttachDevice', b.attach, ctx, F0, False), 0)
    rec.refused('Context.HotReset(f0) before any VMM bound the file', b.context_call, ERR + 'Unsupported',
                ctx, 'HotReset', F0)
    ifd = rec.call('OpenIommufd()', b.fd, ctx, 'OpenIommufd')
    dfd = rec.call('OpenDevice(f0)', b.fd, ctx, 'OpenDevice', F0)
    q = Qemu(g, 'held')
    q.start(q.argv(ifd, dfd), pass_fds=(ifd, dfd))
    os.close(ifd)
    os.close(dfd)
    q.realized(rec, F0)
    flags, devs = plain(rec.call('Context.GetHotResetInfo(f0) while QEMU holds f0', b.context_call, ctx,
                                 'GetHotResetInfo', F0))
    rec.equal('GetHotResetInfo: flags DEV_ID|DEV_ID_OWNED, f0 bound to QEMU\'s iommufd, f1 owned through the group',
              [flags, [[a, 'devid 0' if d == 0 else 'devid > 0' if d != 0xffffffff else 'not owned']
                       for a, d in devs]],
              [3, [[F0, 'devid > 0'], [F1, 'devid 0']]])
    before = q.resets()
    affected = rec.call('Context.HotReset(f0) while QEMU holds f0', b.context_call, ctx, 'HotReset', F0)
    rec.equal('HotReset resets both functions', sorted(plain(affected)), [F0, F1])
    q.running(rec, 'QEMU keeps running with h0 after the broker\'s hot reset')
    rec.equal('... and did no reset of its own meanwhile', q.resets(), before)
    q.quit(rec)
    rec.call('Release()', b.release, ctx)


def start_pid_lease(g, rec, name):
    """vmm-exec.py: a lease tied to its own pid ("Pid": a pidfd of itself),
    f0 attached unbound, then exec QEMU on the files. Returns (status, Qemu)."""
    r, w = os.pipe()
    q = Qemu(g, name)
    argv = [sys.executable, os.path.join(HERE, 'vmm-exec.py'), '--bus', g.bus.address, '--status-fd', str(w),
            '--pid-lease', '--description', f'VM tier {name}', '--device', F0, '--'] + q.argv('{iommufd}',
                                                                                          '{device:%s}' % F0)
    q.start(argv, pass_fds=(w,))
    os.close(w)
    with os.fdopen(r) as f:
        line = f.readline()
    try:
        st = json.loads(line)
    except ValueError:
        q.wait_exit(30)
        rec.check('vmm-exec.py reports its lease', False, got=f'exit {q.proc.returncode}: {q.output()[-1500:]}')
    if 'error' in st:
        rec.check(f'vmm-exec.py: {st["step"]} with "Pid" (a pidfd of the VMM)', False, expected='success',
                  got=f'{st["error"]}: {st["message"]}', error=st['error'])
    rec.check('vmm-exec.py took a pid-tied lease and exec\'d QEMU (same pid)', st['pid'] == q.proc.pid,
              expected=q.proc.pid, got=st)
    return st, q


def tied_to(g, rec, ctx, pid, who):
    """The lease is a process lease tied to pid (Context.Lifetime, Pid)."""
    b = g.broker
    rec.equal('Context.Lifetime is "process"', b.prop(ctx, hrvm.CONTEXT_IFACE, 'Lifetime'), 'process')
    rec.equal(f'Context.Pid is {who}', b.prop(ctx, hrvm.CONTEXT_IFACE, 'Pid'), pid)


def wait_lease_end(g, rec, ctx, what):
    b = g.broker
    deadline = time.monotonic() + timeout(LEASE_END_TIMEOUT)
    t0 = time.monotonic()
    while b.device_context(F0) != '/' and time.monotonic() < deadline:
        time.sleep(0.2)
    rec.equal(what, b.device_context(F0), '/')
    g.timing('lease end', time.monotonic() - t0)
    rec.check('the context object is gone', ctx not in b.contexts(), got=b.contexts())


def sc_pid_lease_ends(g, rec):
    """(c) QEMU killed -> the lease tied to its pid ends, the device is free."""
    b = g.broker
    st, q = start_pid_lease(g, rec, 'pid-killed')
    ctx = st['context']
    q.realized(rec, F0)
    rec.equal('Device.Context of f0 is the pid-tied context', b.device_context(F0), ctx)
    tied_to(g, rec, ctx, q.proc.pid, 'QEMU\'s pid')
    q.kill()
    rec.equal('QEMU killed (SIGKILL)', q.wait_exit(timeout(60)), -signal.SIGKILL)
    wait_lease_end(g, rec, ctx, 'Device.Context of f0 becomes "/" when QEMU is gone')
    ctx2 = rec.call('CreateContext({}) afterwards', b.create_context, Description='VM tier: f0 is free')
    devid = rec.call('AttachDevice(f0) in a new context', b.attach, ctx2, F0, True)
    rec.check('the device is free: a new context binds it (devid > 0)', devid > 0, got=devid)
    rec.call('Release()', b.release, ctx2)


def sc_pid_lease_outlives_creator(g, rec):
    """(e) The pid-tied lease survives its creator's bus connection
    (vmm-exec.py closes it before the exec): lease and QEMU stay."""
    b = g.broker
    st, q = start_pid_lease(g, rec, 'pid-creator-gone')
    ctx = st['context']
    deadline = time.monotonic() + timeout(60)
    while b.name_has_owner(st['unique_name']) and time.monotonic() < deadline:
        time.sleep(0.1)
    rec.check(f'the creator\'s connection {st["unique_name"]} is gone from the bus',
              not b.name_has_owner(st['unique_name']))
    q.realized(rec, F0)
    # The daemon got NameOwnerChanged before any later call of ours.
    rec.check('the context is still there', ctx in b.contexts(), expected=ctx, got=b.contexts())
    rec.equal('Device.Context of f0 is still the context', b.device_context(F0), ctx)
    rec.equal('Context.Devices', b.prop(ctx, hrvm.CONTEXT_IFACE, 'Devices'), [F0])
    tied_to(g, rec, ctx, q.proc.pid, 'QEMU\'s pid')
    q.running(rec, 'QEMU keeps running with h0')
    q.quit(rec)
    wait_lease_end(g, rec, ctx, 'Device.Context of f0 becomes "/" when QEMU has quit')


def sc_reopen(g, rec):
    """(d) ReopenDevice: refused with InUse while QEMU holds a copy of the
    old file; after QEMU is gone, a fresh unbound file on which a second
    QEMU, on the same lease, realizes the device."""
    b = g.broker
    ctx, q = start_on_new_lease(g, rec, 'reopen-first', 'VM tier vmm-reopen-device')
    rec.refused('ReopenDevice(f0) while QEMU holds the old file', b.context_call, ERR + 'InUse',
                ctx, 'ReopenDevice', F0)
    q.kill()
    rec.equal('the first QEMU killed (SIGKILL)', q.wait_exit(timeout(60)), -signal.SIGKILL)
    rec.equal('Device.Context of f0 is still the context', b.device_context(F0), ctx)
    dfd = rec.call('ReopenDevice(f0) once QEMU is gone', b.fd, ctx, 'ReopenDevice', F0)
    cdev = b.prop(hrvm.device_path(F0), hrvm.DEVICE_IFACE, 'CdevPath')
    rec.equal('ReopenDevice gives the function\'s cdev', fd_target(dfd), cdev)
    ifd = rec.call('OpenIommufd()', b.fd, ctx, 'OpenIommufd')
    q2 = Qemu(g, 'reopen-second')
    q2.start(q2.argv(ifd, dfd), pass_fds=(ifd, dfd))
    os.close(ifd)
    os.close(dfd)
    q2.realized(rec, F0, 'a second QEMU on the reopened file realizes the device')
    rec.equal('Device.Context of f0 is the same context', b.device_context(F0), ctx)
    q2.quit(rec)
    rec.call('Release()', b.release, ctx)


def hotresetctl_run(g, name, env_file):
    if os.path.exists(env_file):
        os.unlink(env_file)
    q = Qemu(g, name)
    qemu = q.argv('$HOTRESETD_IOMMUFD', '$HOTRESETD_DEVICE_0000_01_00_0')
    # Double quotes: sh expands the $HOTRESETD_... variables, nothing else
    # (no argument holds '"', '\\', '`' or another '$').
    script = 'env | grep ^HOTRESETD_ >' + env_file + '; exec ' + ' '.join(f'"{a}"' for a in qemu)
    argv = [g.cfg['hotresetctl'], 'run', '--device', F0, '--', 'sh', '-c', script]
    q.start(argv)
    return q


def run_refused_as_missing(rec, q, what):
    """hotresetctl without a run verb: the expected failure of the pending marker."""
    rc = q.wait_exit(1) if q.proc.poll() is None else q.proc.returncode
    if rc is not None and "unknown command 'run'" in q.output():
        rec.check(what, False, got=q.output()[-400:], error='hotresetctl: unknown command run')


def sc_hotresetctl_run(g, rec):
    """(f) hotresetctl run --device f0 -- sh -c 'exec qemu ... fd=$HOTRESETD_…':
    realized; exit status forwarded: QMP quit -> 0; SIGKILL -> 137 or the signal."""
    b = g.broker
    env_file = os.path.join(g.workdir, 'run-env')
    q = hotresetctl_run(g, 'run-quit', env_file)
    pid = q.pid()
    if pid is None:
        run_refused_as_missing(rec, q, 'hotresetctl run starts QEMU')
        rec.check('hotresetctl run starts QEMU (its -pidfile)', False,
                  got=f'exit status {q.proc.returncode}: {q.output()[-1500:]}')
    q.realized(rec, F0)
    ctx = b.device_context(F0)
    rec.check('Device.Context of f0 is a context while QEMU runs', ctx.startswith(hrvm.ROOT_PATH + '/context/'),
              got=ctx)
    tied_to(g, rec, ctx, pid, 'QEMU\'s pid (its -pidfile)')
    env = dict(l.split('=', 1) for l in (hrvm._read(env_file, '') or '').splitlines() if '=' in l)
    rec.check('HOTRESETD_IOMMUFD and HOTRESETD_DEVICE_0000_01_00_0 are file numbers',
              env.get('HOTRESETD_IOMMUFD', '').isdigit() and env.get('HOTRESETD_DEVICE_0000_01_00_0', '').isdigit(),
              got=env)
    rec.equal('HOTRESETD_DEVICES lists f0 and its file', env.get('HOTRESETD_DEVICES'),
              f'{F0}={env.get("HOTRESETD_DEVICE_0000_01_00_0")}')
    rec.equal('HOTRESETD_CONTEXT is the lease (Device.Context of f0)', env.get('HOTRESETD_CONTEXT'), ctx)
    q.quit(rec)   # QEMU exits 0, and so must hotresetctl run
    wait_lease_end(g, rec, ctx, 'Device.Context of f0 becomes "/" when hotresetctl run has ended')

    q = hotresetctl_run(g, 'run-kill', env_file)
    pid = q.pid()
    rec.check('hotresetctl run starts QEMU again', pid is not None, got=q.output()[-1500:])
    q.realized(rec, F0)
    ctx = b.device_context(F0)
    q.kill(pid)
    rc = q.wait_exit(timeout(60))
    rec.check('QEMU killed (SIGKILL): hotresetctl run says so (137, or killed by SIGKILL)',
              rc in (128 + signal.SIGKILL, -signal.SIGKILL), expected=[137, -9], got=rc)
    wait_lease_end(g, rec, ctx, 'Device.Context of f0 becomes "/" after the kill')


def sc_group(g, rec):
    """(g) The group model: QEMU's vfio-pci takes fd= only for a vfio cdev
    (with an iommufd); a group-opened device file is of no use to it. The
    daemon refuses what would hand one out for a VMM: Bind=false and
    OpenIommufd answer Unsupported."""
    b = g.broker
    ctx = rec.call('CreateContext({})', b.create_context, Description='VM tier vmm-group')
    rec.refused('AttachDevice(f0, {Bind: false}) in the group model', b.attach, ERR + 'Unsupported', ctx, F0, False)
    rec.equal('AttachDevice(f0) (through the group) returns 0', rec.call('AttachDevice', b.attach, ctx, F0, True), 0)
    rec.refused('OpenIommufd() in the group model', b.fd, ERR + 'Unsupported', ctx, 'OpenIommufd')
    # What QEMU makes of the file the group model has: a device opened
    # through its group (VFIO_GROUP_GET_DEVICE_FD), no iommufd.
    dfd = rec.call('OpenDevice(f0) (a group-opened device file)', b.fd, ctx, 'OpenDevice', F0)
    q = Qemu(g, 'group-fd')
    argv = [a for a in q.argv(0, dfd) if not a.startswith('iommufd,id=i0')]
    argv.remove('-object')
    argv[-1] = f'vfio-pci,id=h0,fd={dfd},bus=pcie.0,addr=0x5.0'
    q.start(argv, pass_fds=(dfd,))
    os.close(dfd)
    rc = q.wait_exit(timeout(REALIZE_TIMEOUT))
    rec.equal('QEMU given the group-opened file (vfio-pci,fd=, no iommufd) exits 1', rc, 1)
    rec.check('... saying "Use FD passing only with iommufd backend"',
              'Use FD passing only with iommufd backend' in q.output(), got=q.output()[-600:])
    rec.call('Release()', b.release, ctx)


def sc_group_run(g, rec):
    """(g) hotresetctl run in the group model: refused before any lease is
    taken (hotresetctl reads Manager.Backend and says why), no QEMU
    started, nothing held. (The daemon itself refuses Bind=false there with
    Unsupported: vmm-group.)"""
    env_file = os.path.join(g.workdir, 'run-env')
    q = hotresetctl_run(g, 'run-group', env_file)
    rc = q.wait_exit(timeout(120))
    run_refused_as_missing(rec, q, 'hotresetctl run in the group model')
    rec.equal('hotresetctl run exits 1', rc, 1)
    rec.check('... saying the daemon uses the group backend', 'uses the group backend' in q.output(),
              expected='... the daemon uses the group backend ...', got=q.output()[-800:])
    rec.check('... without starting QEMU', not os.path.exists(q.pidfile) and not os.path.exists(env_file))
    rec.equal('no lease was taken', g.broker.contexts(), [])
    rec.equal('Device.Context of f0 is "/"', g.broker.device_context(F0), '/')


SCENARIOS = {
    'vmm-today': sc_today,
    'vmm-hot-reset-while-held': sc_hot_reset_while_held,
    'vmm-pid-lease-ends': sc_pid_lease_ends,
    'vmm-reopen-device': sc_reopen,
    'vmm-pid-lease-outlives-creator': sc_pid_lease_outlives_creator,
    'vmm-hotresetctl-run': sc_hotresetctl_run,
    'vmm-group': sc_group,
    'vmm-group-run': sc_group_run,
}


# ---------------------------------------------------------------------------
# Guest driver


class Guest:
    def __init__(self, cfg, topo, bus, share):
        self.cfg = cfg
        self.topo = topo
        self.bus = bus
        self.share = share
        self.qemu_dir = cfg['qemu10']
        self.workdir = '/tmp/vmm'
        os.makedirs(self.workdir, exist_ok=True)
        self.broker = None
        self.facts = None
        self.qemu_runs = []
        self.timings = {}

    def timing(self, what, seconds):
        self.timings.setdefault(what, []).append(round(seconds, 2))

    def run_scenario(self, sc):
        res = {'scenario': sc.to_json()}
        rec = Record()
        self.qemu_runs = []
        self.timings = {}
        t0 = time.monotonic()
        for addr, drv in sc.drivers.items():
            hrvm.set_driver(addr, drv, self.topo.devices[addr])
        self.facts = hrvm.sysfs_facts()
        res['facts'] = self.facts
        cmd = [self.cfg['hotresetd'], f'--uapi={sc.model}', '--log-level=debug']
        daemon = hrvm.DaemonWorld(self.bus, cmd, f'/tmp/hotresetd-{sc.name}.log')
        try:
            daemon.start()
            self.broker = Broker(self.bus.address)
            SCENARIOS[sc.name](self, rec)
        except Failed:
            pass
        except Exception:
            res['guest_error'] = traceback.format_exc()
        finally:
            for q in self.qemu_runs:
                q.stop()
            if self.broker:
                self.broker.close()
                self.broker = None
            res['daemon'] = {'command': cmd, 'exit_status': daemon.stop(), 'log': daemon.log()}
        res['checks'] = rec.checks
        res['failure'] = rec.failure
        res['qemu'] = [{'name': q.name, 'log': q.log()[-6000:], 'exit_status': q.proc.returncode if q.proc else None}
                       for q in self.qemu_runs]
        res['timings'] = dict(self.timings, total=round(time.monotonic() - t0, 2))
        return res


def guest_main(cfg, topo, bus, share, only):
    g = Guest(cfg, topo, bus, share)
    names = []
    for sc in topo.scenarios:
        if only and sc.name not in only:
            continue
        print(f'guest: scenario {sc.name}', flush=True)
        try:
            res = g.run_scenario(sc)
        except Exception:
            res = {'scenario': sc.to_json(), 'guest_error': traceback.format_exc()}
            print(res['guest_error'], flush=True)
        with open(os.path.join(share, 'results', sc.name + '.json'), 'w') as f:
            json.dump(res, f, indent=1)
        names.append(sc.name)
        print(f'guest: scenario {sc.name} done {res.get("timings")}', flush=True)
    return names


# ---------------------------------------------------------------------------
# Host: TAP report


def verdict(sc, res):
    """(ok, problems) for one scenario's results."""
    if res is None:
        return False, ['no results (the guest did not run it)']
    problems = []
    if 'guest_error' in res:
        problems.append('guest error: ' + res['guest_error'])
    if res.get('failure') and res['failure'] not in res.get('checks', []):
        f = res['failure']
        problems.append(f'{f["what"]}: expected {json.dumps(f.get("expected"))}, got {json.dumps(f.get("got"))}')
    d = res.get('daemon', {})
    if d and d.get('exit_status') != 0:
        problems.append(f'hotresetd did not exit 0 on SIGTERM ({d.get("exit_status")})')
    san = hrvm.sanitizer_reports(d.get('log', ''))
    if san:
        problems.append('sanitizer reports in the daemon log: ' + ', '.join(san))
    return not problems and not res.get('failure'), problems


def expected_failure(sc, res):
    """The scenario failed exactly the way its pending feature's absence makes it fail."""
    p = sc.pending
    if not p or not res or 'guest_error' in res or not res.get('failure'):
        return False
    d = res.get('daemon', {})
    if d.get('exit_status') != 0 or hrvm.sanitizer_reports(d.get('log', '')):
        return False
    return res['failure'].get('error') in p.errors


def report(topo, share, out, only=None):
    """TAP lines for every scenario; details as comments. Returns the number
    of real failures (not ok without TODO, or ok with TODO)."""
    scenarios = [sc for sc in topo.scenarios if not only or sc.name in only]
    failures = 0
    for n, sc in enumerate(scenarios, 1):
        path = os.path.join(share, 'results', sc.name + '.json')
        res = None
        if os.path.exists(path):
            with open(path) as f:
                res = json.load(f)
        ok, problems = verdict(sc, res)
        t = (res or {}).get('timings', {})
        desc = f'{sc.name} [{sc.model}] {sc.title}'
        if sc.pending and ok:
            out(f'ok {n} - {desc} # TODO {sc.pending.reason} -- it passes now: remove the Pending marker '
                f'(tests/vm/hrvm.py)')
            failures += 1
        elif ok:
            out(f'ok {n} - {desc}')
        elif expected_failure(sc, res):
            out(f'not ok {n} - {desc} # TODO {sc.pending.reason}')
        else:
            out(f'not ok {n} - {desc}')
            failures += 1
        comment = lambda s: out('# ' + s.replace('\n', '\n#   '))  # noqa: E731
        comment(f'  timings: {json.dumps(t)}')
        for c in (res or {}).get('checks', []):
            mark = 'ok  ' if c['ok'] else 'FAIL'
            if not c['ok']:
                extra = f': expected {json.dumps(c.get("expected"))}, got {json.dumps(c.get("got"))}'
            else:
                got = json.dumps(c.get('got'))
                extra = f': {got}' if 'got' in c and len(got) <= 160 else ''
            comment(f'  {mark} {c["what"]}{extra}')
        for p in problems:
            comment('  ' + p)
        if not ok and res and not expected_failure(sc, res):
            comment(f'  ----- hotresetd log ({" ".join(res.get("daemon", {}).get("command", []))}) -----')
            comment((res.get('daemon', {}).get('log') or '(none)').rstrip()[-12000:])
            for q in res.get('qemu', []):
                comment(f'  ----- QEMU {q["name"]} (exit status {q["exit_status"]}) -----')
                comment(q['log'].rstrip())
    return failures

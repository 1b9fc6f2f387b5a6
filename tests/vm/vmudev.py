# SPDX-License-Identifier: LGPL-2.1-or-later
"""The VM tier's topology `udev`: devices leave while leased, on the real
kernel, with Debian's systemd-udevd running in the guest.

The machine is vm-multifunction's (a two-function e1000e behind a PCIe root
port without hotplug, one IOMMU group). The guest starts
`/lib/systemd/systemd-udevd --daemon`, binds both functions to vfio-pci and
starts ONE `hotresetd --uapi=iommufd`, which runs through every scenario in
order (each starts from the state the previous one left): the daemon has to
follow the changes from udev's events, not from a fresh start.

The guest talks to the daemon with python3-dbus on a GLib main loop
(python3-gi), recording every signal it sends (PropertiesChanged,
DeviceRemoved, InterfacesAdded/Removed). A sysfs write that the kernel may
block (`unbind` and `remove` of a device whose vfio file is open) runs in a
child process with a bound, while the main loop keeps receiving.

Output: one results/NAME.json per scenario; the host prints TAP with
vmm.report (checks as comments).
"""

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

import hrvm
import vmm

F0, F1 = '0000:01:00.0', '0000:01:00.1'
DOMAIN = hrvm.ROOT_PATH + '/domain/pci_0000_01'
DOMAIN_IFACE = 'org.hotresetd.Broker1.ResetDomain'
OM_IFACE = 'org.freedesktop.DBus.ObjectManager'
UDEVD = '/lib/systemd/systemd-udevd'
LEFT = 'the device left its vfio driver'
REMOVED = 'the device was removed'
# Generous bounds (TCG; the kernel waits for open files on unbind/remove):
# measured 0.2 s for an unbind, < 0.1 s for a remove.
WRITE_TIMEOUT = 60
SIGNAL_TIMEOUT = 30


def timeout(s):
    return s * hrvm.TIMEOUT_SCALE


class Broker(vmm.Broker):
    """vmm.Broker on a GLib main loop, recording every signal."""

    def __init__(self, address):
        import dbus  # guest only
        from dbus.mainloop.glib import DBusGMainLoop
        from gi.repository import GLib
        self.dbus = dbus
        self.glib = GLib
        self.conn = dbus.bus.BusConnection(address, mainloop=DBusGMainLoop())
        self.t0 = time.monotonic()
        self.signals = []
        self.conn.add_signal_receiver(self._signal, path_keyword='path', member_keyword='member',
                                      interface_keyword='iface')

    def _signal(self, *args, path=None, member=None, iface=None):
        self.signals.append({'t': round(time.monotonic() - self.t0, 3), 'path': str(path),
                             'iface': str(iface), 'member': str(member), 'args': vmm.plain(list(args))})

    def pump(self, seconds=0.0):
        ctx = self.glib.MainContext.default()
        end = time.monotonic() + seconds
        while True:
            while ctx.pending():
                ctx.iteration(False)
            if time.monotonic() >= end:
                return
            time.sleep(0.02)

    def mark(self):
        self.pump()
        return len(self.signals)

    def since(self, mark, member=None, path=None):
        return [s for s in self.signals[mark:]
                if (member is None or s['member'] == member) and (path is None or s['path'] == path)]

    def wait(self, what, pred, seconds=SIGNAL_TIMEOUT):
        """Pumps until pred() is true (returns its value) or the bound passes (None)."""
        end = time.monotonic() + timeout(seconds)
        while True:
            self.pump()
            v = pred()
            if v:
                return v
            if time.monotonic() >= end:
                return None
            self.pump(0.05)

    def dev(self, address, name):
        return self.prop(hrvm.device_path(address), hrvm.DEVICE_IFACE, name)


def changed(sig, prop):
    """A PropertiesChanged signal naming prop (changed or invalidated)."""
    if sig['member'] != 'PropertiesChanged' or len(sig['args']) < 3:
        return False
    return prop in sig['args'][1] or prop in sig['args'][2]


def sysfs_write(g, rec, path, value, what):
    """Writes value to path in a child process (the kernel may block the
    write), pumping the bus meanwhile. Records how long it took."""
    t0 = time.monotonic()
    p = subprocess.Popen(['/bin/sh', '-c', f'echo {value} > {path}'], stderr=subprocess.PIPE)
    end = t0 + timeout(WRITE_TIMEOUT)
    while p.poll() is None and time.monotonic() < end:
        g.broker.pump(0.02)
    dt = time.monotonic() - t0
    g.timing(what, dt)
    if p.poll() is None:
        rec.check(f'{what}: the write to {path} returns', False,
                  expected=f'within {timeout(WRITE_TIMEOUT):.0f} s', got=f'still blocked after {dt:.1f} s')
    err = p.stderr.read().decode(errors='replace').strip()
    p.stderr.close()
    rec.check(f'{what}: echo {value} > {path}', p.returncode == 0, expected='exit 0',
              got=f'exit {p.returncode} after {dt:.2f} s' + (f': {err}' if err else ''))


def settle():
    subprocess.run(['udevadm', 'settle', f'--timeout={int(timeout(60))}'], check=False)


def driver(address):
    try:
        return os.path.basename(os.readlink(f'/sys/bus/pci/devices/{address}/driver'))
    except OSError:
        return ''


def wait_driver(g, rec, address, want, what):
    g.broker.wait(what, lambda: g.broker.dev(address, 'Driver') == want)
    return rec.equal(what, g.broker.dev(address, 'Driver'), want)


# ---------------------------------------------------------------------------
# The daemon, under a stand-in for systemd's file descriptor store


# What systemd does when it starts a service with a file descriptor store:
# the files at 3, 4, ... with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID (the
# pid stays the same across the exec). As tests/integration/listen-exec.py.
LISTEN_EXEC = r'''
import fcntl, os, sys
sep = sys.argv.index('--')
pairs = [a.split('=', 1) for a in sys.argv[1:sep]]
cmd = sys.argv[sep + 1:]
high = [fcntl.fcntl(int(fd), fcntl.F_DUPFD_CLOEXEC, 3 + len(pairs)) for _, fd in pairs]
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i, inheritable=True)
keep = set(range(3, 3 + len(pairs)))
for fd in set(int(f) for _, f in pairs) | set(high):
    if fd not in keep:
        os.close(fd)
env = dict(os.environ, LISTEN_FDS=str(len(pairs)), LISTEN_FDNAMES=':'.join(n for n, _ in pairs),
           LISTEN_PID=str(os.getpid()))
os.execve(cmd[0], cmd, env)
'''


class StoreDaemon:
    """hotresetd with $FDSTORE and $RUNTIME_DIRECTORY, its NOTIFY_SOCKET
    read all the time (sd_notify blocks when the queue is full) keeping the
    FDSTORE=1 files as systemd does, and restart() passing them back."""

    def __init__(self, bus, command, log_path, runtime):
        self.bus = bus
        self.command = command
        self.log_path = log_path
        self.runtime = runtime
        self.store = []  # [name, fd]
        self.proc = None
        self.sock = None
        self.notes = []
        self.lock = threading.Lock()
        self.returncode = None
        self.starts = 0

    def _read(self):
        while True:
            try:
                r, _, _ = select.select([self.sock], [], [], 0.1)
            except (OSError, ValueError):
                return
            if self.sock is None or self.sock.fileno() < 0:
                return
            if not r:
                if self.proc is not None and self.proc.poll() is not None:
                    return
                continue
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, 4096, 64)
            except OSError:
                return
            lines = data.decode(errors='replace').splitlines()
            fields = dict(x.split('=', 1) for x in lines if '=' in x)
            with self.lock:
                self.notes.extend(lines)
                if fields.get('FDSTORE') == '1':
                    self.store += [[fields.get('FDNAME', 'stored'), fd] for fd in fds]
                    fds = []
                if fields.get('FDSTOREREMOVE') == '1':
                    for item in [i for i in self.store if i[0] == fields.get('FDNAME')]:
                        os.close(item[1])
                        self.store.remove(item)
            for fd in fds:
                os.close(fd)

    def stored_names(self):
        time.sleep(0.2)  # the reader runs every 0.1 s at most
        with self.lock:
            return sorted(n for n, _ in self.store)

    def start(self, timeout=120):
        self.starts += 1
        notify_path = f'{self.log_path}.notify{self.starts}'
        if os.path.exists(notify_path):
            os.unlink(notify_path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(notify_path)
        self.notes = []
        env = self.bus.env()
        env.update(NOTIFY_SOCKET=notify_path, FDSTORE='4096', RUNTIME_DIRECTORY=self.runtime)
        cmd, pass_fds = list(self.command), []
        if self.store:
            pass_fds = [fd for _, fd in self.store]
            cmd = [sys.executable, '-c', LISTEN_EXEC] + [f'{n}={fd}' for n, fd in self.store] + ['--'] + cmd
        logf = open(self.log_path, 'w' if self.starts == 1 else 'a')
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, env=env,
                                     pass_fds=pass_fds)
        logf.close()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + timeout * hrvm.TIMEOUT_SCALE
        while True:
            with self.lock:
                if 'READY=1' in self.notes:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f'hotresetd exited with status {self.proc.returncode} before READY=1')
            if time.monotonic() > deadline:
                raise RuntimeError('hotresetd did not send READY=1 within the timeout')
            time.sleep(0.05)

    def _end(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60 * hrvm.TIMEOUT_SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.returncode = 'killed'
                return self.returncode
        self.reader.join()
        self.sock.close()
        self.returncode = self.proc.returncode
        return self.returncode

    def restart(self, sig):
        """Ends the daemon with sig (SIGKILL: a crash) and starts it again
        with the stored files; returns the old one's exit status."""
        status = self._end(sig)
        self.start()
        return status

    def stop(self):
        if self.proc is None:
            return None
        return self._end(signal.SIGTERM)

    def log(self):
        return hrvm._read(self.log_path, '') or ''


# ---------------------------------------------------------------------------
# Scenarios (in order, one daemon)


def sc_sibling_unbind(g, rec):
    b = g.broker
    g.ctx = rec.call('CreateContext({})', b.create_context)
    devid = rec.call(f'AttachDevice({F0})', b.attach, g.ctx, F0)
    rec.check('devid of f0 > 0', devid > 0, got=devid)
    rec.equal('f0 HotResetPossible before', b.dev(F0, 'HotResetPossible'), True)
    rec.equal('domain Blockers before', b.prop(DOMAIN, DOMAIN_IFACE, 'Blockers'), [])
    m = b.mark()
    sysfs_write(g, rec, f'/sys/bus/pci/devices/{F1}/driver/unbind', F1, 'unbind f1')
    rec.equal('f1 driver in sysfs', driver(F1), '')
    got = b.wait('f0 HotResetPossible changed', lambda: [s for s in b.since(m, path=hrvm.device_path(F0))
                                                          if changed(s, 'HotResetPossible')])
    rec.check('PropertiesChanged(HotResetPossible) on f0', got, got=got)
    rec.equal('f0 HotResetPossible after', b.dev(F0, 'HotResetPossible'), False)
    got = b.wait('domain Blockers changed', lambda: [s for s in b.since(m, path=DOMAIN) if changed(s, 'Blockers')])
    rec.check('PropertiesChanged(Blockers) on the domain', got, got=got)
    blockers = b.prop(DOMAIN, DOMAIN_IFACE, 'Blockers')
    rec.check('domain Blockers name f1', any(x[0] == F1 for x in blockers), expected=f'({F1}, …)', got=blockers)
    rec.equal('f0 Device.Context', b.device_context(F0), g.ctx)
    rec.equal('Context.Devices', b.prop(g.ctx, hrvm.CONTEXT_IFACE, 'Devices'), [F0])
    rec.equal('no DeviceRemoved', b.since(m, member='DeviceRemoved'), [])
    # f1 back on vfio-pci (driver_override still says vfio-pci).
    sysfs_write(g, rec, '/sys/bus/pci/drivers_probe', F1, 'rebind f1')
    wait_driver(g, rec, F1, 'vfio-pci', 'daemon: f1 Driver back to vfio-pci')
    got = b.wait('f0 HotResetPossible back', lambda: b.dev(F0, 'HotResetPossible'))
    rec.equal('f0 HotResetPossible with f1 back', bool(got), True)
    rec.equal('domain Blockers with f1 back', b.prop(DOMAIN, DOMAIN_IFACE, 'Blockers'), [])


def sc_unbind_leased(g, rec):
    b = g.broker
    rec.equal('f0 held by the lease', b.device_context(F0), g.ctx)
    m = b.mark()
    sysfs_write(g, rec, f'/sys/bus/pci/devices/{F0}/driver/unbind', F0, 'unbind f0 (leased)')
    rec.equal('f0 driver in sysfs', driver(F0), '')
    got = b.wait('DeviceRemoved', lambda: b.since(m, member='DeviceRemoved', path=g.ctx))
    rec.equal('DeviceRemoved on the lease', [s['args'] for s in (got or [])], [[F0, LEFT]])
    got = b.wait('Devices changed', lambda: [s for s in b.since(m, path=g.ctx) if changed(s, 'Devices')])
    rec.check('PropertiesChanged(Devices) on the lease', got, got=got)
    rec.equal('Context.Devices', b.prop(g.ctx, hrvm.CONTEXT_IFACE, 'Devices'), [])
    rec.equal('f0 Device.Context', b.device_context(F0), '/')
    wait_driver(g, rec, F0, '', 'daemon: f0 Driver ""')
    order = [s['member'] for s in b.since(m, path=g.ctx)]
    rec.check('DeviceRemoved before the Devices change', order and order[0] == 'DeviceRemoved', got=order)
    # Back on vfio-pci and into the lease, for the next scenario.
    sysfs_write(g, rec, '/sys/bus/pci/drivers_probe', F0, 'rebind f0')
    wait_driver(g, rec, F0, 'vfio-pci', 'daemon: f0 Driver back to vfio-pci')
    cdev = b.wait('f0 CdevPath', lambda: b.dev(F0, 'CdevPath'))
    rec.check('f0 CdevPath', cdev, got=cdev)
    devid = rec.call(f'AttachDevice({F0}) again', b.attach, g.ctx, F0)
    rec.check('devid of f0 > 0', devid > 0, got=devid)


def sc_remove_rescan(g, rec):
    b = g.broker
    path = hrvm.device_path(F0)
    rec.equal('f0 held by the lease', b.device_context(F0), g.ctx)
    m = b.mark()
    sysfs_write(g, rec, f'/sys/bus/pci/devices/{F0}/remove', 1, 'remove f0 (leased)')
    rec.equal('f0 gone from sysfs', os.path.exists(f'/sys/bus/pci/devices/{F0}'), False)
    got = b.wait('DeviceRemoved', lambda: b.since(m, member='DeviceRemoved', path=g.ctx))
    reasons = [s['args'] for s in (got or [])]
    rec.check('DeviceRemoved(f0, …) on the lease', reasons and all(a[0] == F0 for a in reasons)
              and reasons[0][1] in (LEFT, REMOVED), expected=f'[[{F0}, {LEFT!r} or {REMOVED!r}], …]', got=reasons)
    got = b.wait('InterfacesRemoved', lambda: [s for s in b.since(m, member='InterfacesRemoved')
                                               if s['args'] and s['args'][0] == path])
    rec.check(f'InterfacesRemoved({path})', got, got=got)
    rec.equal('Context.Devices', b.prop(g.ctx, hrvm.CONTEXT_IFACE, 'Devices'), [])
    listed = [x[0] for x in vmm.plain(b._call(hrvm.ROOT_PATH, hrvm.MANAGER_IFACE, 'ListDevices'))]
    rec.equal('f0 in ListDevices', F0 in listed, False)
    # All DeviceRemoved of the remove, after a moment (a second one may follow).
    b.pump(0.5)
    rec.check('DeviceRemoved signals of the remove', True,
              got=[s['args'] for s in b.since(m, member='DeviceRemoved')])
    m = b.mark()
    sysfs_write(g, rec, '/sys/bus/pci/rescan', 1, 'rescan')
    rec.equal('f0 back in sysfs', os.path.exists(f'/sys/bus/pci/devices/{F0}'), True)
    got = b.wait('InterfacesAdded', lambda: [s for s in b.since(m, member='InterfacesAdded')
                                             if s['args'] and s['args'][0] == path])
    rec.check(f'InterfacesAdded({path})', got, got=[s['t'] for s in got or []])
    settle()
    rec.check('f0 driver in sysfs after the rescan', True, got=driver(F0))
    b.wait('daemon agrees on the driver', lambda: b.dev(F0, 'Driver') == driver(F0))
    rec.equal('daemon: f0 Driver after the rescan', b.dev(F0, 'Driver'), driver(F0))
    rec.equal('f0 Device.Context after the rescan', b.device_context(F0), '/')


def sc_override_bind(g, rec):
    b = g.broker
    d = f'/sys/bus/pci/devices/{F0}'
    sysfs_write(g, rec, f'{d}/driver_override', 'vfio-pci', 'driver_override f0')
    if driver(F0):
        sysfs_write(g, rec, f'{d}/driver/unbind', F0, f'unbind f0 from {driver(F0)}')
    sysfs_write(g, rec, '/sys/bus/pci/drivers_probe', F0, 'drivers_probe f0')
    rec.equal('f0 driver in sysfs', driver(F0), 'vfio-pci')
    wait_driver(g, rec, F0, 'vfio-pci', 'daemon: f0 Driver')
    cdev = b.wait('f0 CdevPath', lambda: b.dev(F0, 'CdevPath'))
    rec.check('daemon: f0 CdevPath', cdev and cdev.startswith('/dev/vfio/devices/vfio'), got=cdev)
    real = sorted(os.listdir(f'{d}/vfio-dev')) if os.path.isdir(f'{d}/vfio-dev') else []
    rec.equal('CdevPath = sysfs vfio-dev', cdev, '/dev/vfio/devices/' + real[0] if real else '(none)')
    devid = rec.call(f'AttachDevice({F0})', b.attach, g.ctx, F0)
    rec.check('devid of f0 > 0', devid > 0, got=devid)
    rec.equal('Context.Devices', b.prop(g.ctx, hrvm.CONTEXT_IFACE, 'Devices'), [F0])


def sc_restart(g, rec):
    """The lease survives restarts of the daemon on the real kernel: its
    files come back from the (stand-in) store, still bound."""
    b = g.broker
    rec.equal('f0 held by the lease', b.device_context(F0), g.ctx)
    rec.call('HotReset(f0) through the lease', b.context_call, g.ctx, 'HotReset', F0)
    names = g.daemon.stored_names()
    rec.check('the lease\'s iommufd and f0\'s file are in the store',
              any(n.endswith('-iommufd') for n in names) and any(n.endswith('-d0000_01_00.0') for n in names),
              got=names)
    for sig, name in ((signal.SIGTERM, 'SIGTERM'), (signal.SIGKILL, 'SIGKILL')):
        status = g.daemon.restart(sig)
        if sig == signal.SIGTERM:
            rec.equal(f'{name}: the old daemon exits 0', status, 0)
        rec.check(f'after {name}: the log says the lease was restored', f'Restored {g.ctx}' in g.daemon.log(),
                  got=[x for x in g.daemon.log().splitlines() if 'estor' in x][-3:])
        rec.equal(f'after {name}: the lease is listed', g.ctx in b.contexts(), True)
        rec.equal(f'after {name}: Context.Devices', b.prop(g.ctx, hrvm.CONTEXT_IFACE, 'Devices'), [F0])
        rec.equal(f'after {name}: f0 Device.Context', b.device_context(F0), g.ctx)
        affected = rec.call(f'after {name}: HotReset(f0) through the restored files', b.context_call, g.ctx,
                            'HotReset', F0)
        rec.check(f'after {name}: the reset hit f0 and f1', sorted(vmm.plain(affected)) == [F0, F1],
                  got=vmm.plain(affected))
    rec.call('Release the lease', b.release, g.ctx)
    names = g.daemon.stored_names()
    rec.equal('the store is empty after the release', names, [])
    # The kernel let go of the old files: a new lease binds f0.
    ctx = rec.call('CreateContext({})', b.create_context)
    devid = rec.call(f'AttachDevice({F0}) in a new lease', b.attach, ctx, F0)
    rec.check('devid of f0 > 0', devid > 0, got=devid)
    rec.call('HotReset(f0) in the new lease', b.context_call, ctx, 'HotReset', F0)
    rec.call('Release the new lease', b.release, ctx)


SCENARIOS = {
    'udev-sibling-unbind': sc_sibling_unbind,
    'udev-unbind-leased': sc_unbind_leased,
    'udev-remove-rescan': sc_remove_rescan,
    'udev-override-bind': sc_override_bind,
    'udev-restart': sc_restart,
}


# ---------------------------------------------------------------------------
# Guest driver


class Guest:
    def __init__(self, cfg, topo, bus):
        self.cfg = cfg
        self.topo = topo
        self.bus = bus
        self.broker = None
        self.ctx = None
        self.timings = {}

    def timing(self, what, seconds):
        self.timings.setdefault(what, []).append(round(seconds, 2))


def start_udevd():
    subprocess.run([UDEVD, '--daemon'], check=True)
    settle()


def stop_udevd():
    subprocess.run(['udevadm', 'control', '--exit'], check=False, timeout=60)


def guest_main(cfg, topo, bus, share, only):
    g = Guest(cfg, topo, bus)
    scenarios = [sc for sc in topo.scenarios if not only or sc.name in only]
    results = {sc.name: {'scenario': sc.to_json()} for sc in scenarios}
    cmd = [cfg['hotresetd'], '--uapi=iommufd', '--log-level=debug']
    daemon = StoreDaemon(bus, cmd, '/tmp/hotresetd-udev.log', '/tmp/hotresetd-udev-run')
    shutil.rmtree('/tmp/hotresetd-udev-run', ignore_errors=True)
    os.makedirs('/tmp/hotresetd-udev-run', mode=0o700)
    g.daemon = daemon
    setup_error = None
    try:
        start_udevd()
        for addr, drv in topo.scenarios[0].drivers.items():
            hrvm.set_driver(addr, drv, topo.devices[addr])
        settle()
        daemon.start()
        g.broker = Broker(bus.address)
    except Exception:
        setup_error = traceback.format_exc()
        print(setup_error, flush=True)
    for sc in scenarios:
        res = results[sc.name]
        if setup_error:
            res['guest_error'] = 'setup: ' + setup_error
            continue
        print(f'guest: scenario {sc.name}', flush=True)
        rec = vmm.Record()
        g.timings = {}
        m = g.broker.mark()
        t0 = time.monotonic()
        try:
            SCENARIOS[sc.name](g, rec)
        except vmm.Failed:
            pass
        except Exception:
            res['guest_error'] = traceback.format_exc()
        res['checks'] = rec.checks
        res['failure'] = rec.failure
        res['timings'] = dict(g.timings, total=round(time.monotonic() - t0, 2))
        res['signals'] = g.broker.signals[m:]
        print(f'guest: scenario {sc.name} done {res["timings"]}', flush=True)
        if rec.failure or 'guest_error' in res:
            break  # the next scenario starts from this one's end state
    if g.broker:
        g.broker.close()
    status = daemon.stop()
    try:
        stop_udevd()
    except Exception:
        pass
    for sc in scenarios:
        res = results[sc.name]
        if 'checks' not in res and 'guest_error' not in res:
            res['guest_error'] = 'not run: an earlier scenario failed (one daemon runs through all of them)'
        res['daemon'] = {'command': cmd, 'exit_status': status, 'log': daemon.log()[-40000:]}
        with open(os.path.join(share, 'results', sc.name + '.json'), 'w') as f:
            json.dump(res, f, indent=1)
    return [sc.name for sc in scenarios]

# SPDX-License-Identifier: LGPL-2.1-or-later
"""The VM tier's shared code: topologies, scenarios, the two ways of running
a scenario's steps (the kernel's own answers through vfio-probe, and the
daemon's answers over D-Bus through busctl), and the comparisons.

Used by the guest (guest.py: the real kernel, the real daemon on the Linux
backend) and by the host (run-vm.py: QEMU, then the daemon on the emulated
kernel replaying the machine file the guest dumped). Only the Python
standard library; Python 3.7 or later.

A scenario is a set of drivers for the topology's test devices and a list of
steps. Each step means the same thing in both worlds:

  ('ctx', C)            a context named C: daemon Manager.CreateContext
                        (Persistent, so it outlives the busctl call); probe
                        a new iommufd + IOAS (iommufd model) or container
  ('attach', C, A)      daemon Context.AttachDevice; probe cdev open + BIND +
                        ATTACH_PT, or group + SET_CONTAINER + GET_DEVICE_FD
  ('attach-unbound', C, A)  iommufd model: daemon AttachDevice with
                        Bind=false; probe opens the cdev without binding it
  ('info', C, A)        daemon Context.GetHotResetInfo; probe
                        VFIO_DEVICE_GET_PCI_HOT_RESET_INFO through C's file
  ('reset', C, A)       daemon Context.HotReset; probe VFIO_DEVICE_PCI_HOT_RESET
                        through C's file (a real reset when it succeeds)
  ('check', A)          daemon Device.Affected, ResetScope, CheckHotReset;
                        probe: INFO and a real reset through the context
                        holding A (directly or through its IOMMU group), or,
                        when none does, through a fresh context holding the
                        whole scope
  ('hotreset', A)       daemon Manager.HotReset; probe: a fresh context
                        opens the scope and resets
  ('release', C)        daemon Context.Release; probe closes C's files

The kernel runs first (all steps), then the daemon (all steps) on the same
bindings, so each sees the same starting state.
"""

import errno
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

BUS_NAME = 'org.hotresetd.Broker1'
ROOT_PATH = '/org/hotresetd/Broker1'
MANAGER_IFACE = 'org.hotresetd.Broker1.Manager'
DEVICE_IFACE = 'org.hotresetd.Broker1.Device'
CONTEXT_IFACE = 'org.hotresetd.Broker1.Context'
PROPS_IFACE = 'org.freedesktop.DBus.Properties'
ERR = 'org.hotresetd.Broker1.Error.'

DEVID_NOT_OWNED = 0xffffffff

TIMEOUT_SCALE = float(os.environ.get('HOTRESETD_TEST_TIMEOUT', '1') or '1')

# Markers of sanitizer reports in a daemon log (an ASan build runs in the
# guest too): any of them fails the scenario.
SANITIZER_MARKERS = ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer',
                     'runtime error:', 'ERROR: UndefinedBehaviorSanitizer')


def log(*args):
    print(*args, flush=True)


def device_path(address):
    return ROOT_PATH + '/device/pci_' + address.replace(':', '_').replace('.', '_')


def is_vfio(driver):
    """driver_is_vfio(): vfio-pci or a vendor variant (…vfio…pci)."""
    return bool(driver) and 'vfio' in driver


def keeps_group_viable(driver):
    return driver in (None, 'pci-stub', 'pcieport') or is_vfio(driver)


# ---------------------------------------------------------------------------
# Topologies and scenarios


class Scenario:
    def __init__(self, name, model, drivers, steps, external=(), replay=True, why_no_replay=''):
        self.name = name
        self.model = model              # 'iommufd' or 'group': hotresetd --uapi=, the probe's model
        self.drivers = dict(drivers)    # address -> 'vfio-pci' | 'pci-stub' | 'native' | None (unbound)
        self.steps = [tuple(s) for s in steps]
        self.external = list(external)  # [('cdev' | 'group', address)]: a process outside both worlds holds it
        self.replay = replay            # the emulated kernel can replay it (no external opener)
        self.why_no_replay = why_no_replay

    def to_json(self):
        return {'name': self.name, 'model': self.model, 'drivers': self.drivers,
                'steps': [list(s) for s in self.steps], 'external': [list(e) for e in self.external],
                'replay': self.replay}


class Topology:
    """One QEMU machine (one boot) and the scenarios run on it."""

    def __init__(self, name, description, qemu_args, devices, scenarios, kind='compare'):
        self.name = name
        self.description = description
        self.qemu_args = qemu_args
        self.devices = devices  # address -> native driver, for every device a scenario may rebind
        self.scenarios = scenarios
        # 'compare': Scenario steps, kernel == daemon == emulated (run-vm.py);
        # 'vmm': VmmScenario, a nested QEMU 10 on the broker's files (vmm.py)
        # 'udev': VmmScenario, systemd-udevd and one daemon across sysfs changes (vmudev.py)
        self.kind = kind


class Pending:
    """A VmmScenario's feature that is not in the daemon (or hotresetctl)
    yet: the scenario is reported as an expected failure (TAP TODO) while
    it fails with one of `errors` (the D-Bus error name of the failing
    check, or the failure vmm.py names for a missing hotresetctl verb), as
    a failure when it fails otherwise, and as an unexpected pass (a failure
    too: remove the marker) when it passes."""

    def __init__(self, feature, reason, errors):
        self.feature = feature
        self.reason = reason
        self.errors = tuple(errors)


class VmmScenario:
    """A scenario of the vmm topology: a function of vmm.py (SCENARIOS, by
    name) run in the guest against the daemon in `model`."""

    def __init__(self, name, model, drivers, title, pending=None):
        self.name = name
        self.model = model
        self.drivers = dict(drivers)
        self.title = title
        self.pending = pending
        self.steps = []
        self.replay = False

    def to_json(self):
        return {'name': self.name, 'model': self.model, 'drivers': self.drivers, 'title': self.title,
                'pending': self.pending.reason if self.pending else None}


# pcie-root-port needs x-speed=2_5,x-width=1 with QEMU 7.2: without them the
# kernel waits for Data Link Layer Link Active after a secondary bus reset
# and every hot reset fails with ENOTTY (tests/vm/README.md).
def root_port(id_, addr, chassis, hotplug):
    opts = f'pcie-root-port,id={id_},bus=pcie.0,addr={addr},chassis={chassis},slot={chassis},x-speed=2_5,x-width=1'
    if not hotplug:
        opts += ',hotplug=off'
    return ['-device', opts]


MODELS = ('iommufd', 'group')


def multifunction_topology():
    f0, f1 = '0000:01:00.0', '0000:01:00.1'
    both = {f0: 'vfio-pci', f1: 'vfio-pci'}
    sc = []
    for m in MODELS:
        sc.append(Scenario(f'mf-full-{m}', m, both, [
            ('check', f0), ('check', f1),
            ('ctx', 'A'), ('attach', 'A', f0), ('attach', 'A', f1),
            ('info', 'A', f0), ('info', 'A', f1),
            ('check', f0), ('check', f1),
            ('reset', 'A', f0), ('reset', 'A', f1),
            ('hotreset', f0),             # held by A: an unleased reset is refused
            ('release', 'A'),
            ('hotreset', f1),             # nobody holds it: a real reset
        ]))
        sc.append(Scenario(f'mf-partial-{m}', m, both, [
            ('ctx', 'A'), ('attach', 'A', f0),
            ('info', 'A', f0),            # fn1 unopened in the same group: devid 0 (iommufd)
            ('check', f0), ('check', f1),
            ('reset', 'A', f0),           # succeeds: A owns fn1's group
            ('info', 'A', f1),            # not attached
            ('hotreset', f1),             # held through its group by A
            ('release', 'A'),
        ]))
        for what, drv in (('stub', 'pci-stub'), ('unbound', None)):
            sc.append(Scenario(f'mf-{what}-{m}', m, {f0: 'vfio-pci', f1: drv}, [
                ('check', f0),
                ('ctx', 'A'), ('attach', 'A', f0), ('attach', 'A', f1),
                ('info', 'A', f0),        # fn1 not owned
                ('reset', 'A', f0),       # the kernel refuses: fn1 not in the dev_set
                ('release', 'A'),
                ('hotreset', f0),
            ]))
        sc.append(Scenario(f'mf-native-{m}', m, {f0: 'vfio-pci', f1: 'native'}, [
            ('check', f0),
            ('ctx', 'A'), ('attach', 'A', f0),   # the group is not viable
            ('release', 'A'),
            ('hotreset', f0),
        ]))
        sc.append(Scenario(f'mf-two-contexts-{m}', m, both, [
            ('ctx', 'A'), ('ctx', 'B'),
            ('attach', 'A', f0),
            ('attach', 'B', f1),          # same group, owned by A
            ('check', f0), ('check', f1),
            ('info', 'A', f0),
            ('reset', 'A', f0),
            ('reset', 'B', f1),           # not attached to B
            ('release', 'A'),
            ('attach', 'B', f1),          # now free
            ('info', 'B', f1),
            ('reset', 'B', f1),
            ('release', 'B'),
        ]))
    # A cdev attached unbound (for a VMM to bind): the kernel answers no
    # ioctl before BIND (EINVAL), the daemon says Unsupported.
    sc.append(Scenario('mf-attach-unbound-iommufd', 'iommufd', both, [
        ('ctx', 'A'), ('attach-unbound', 'A', f0),
        ('info', 'A', f0), ('reset', 'A', f0),
        ('attach', 'A', f1),              # bound into A: fn0 stays unbound
        ('info', 'A', f1),                # fn0 is not bound to A's iommufd
        ('release', 'A'),
    ]))
    # The legacy group and a cdev of it exclude each other (EBUSY). The
    # other side is a process outside both worlds, which the emulated
    # kernel cannot have, so these are not replayed.
    sc.append(Scenario('mf-group-while-cdev-bound', 'group', both, [
        ('ctx', 'A'), ('attach', 'A', f0), ('attach', 'A', f1), ('release', 'A'),
    ], external=[('cdev', f0)], replay=False,
        why_no_replay='another process holds a bound cdev of the group'))
    sc.append(Scenario('mf-cdev-while-group-open', 'iommufd', both, [
        ('ctx', 'A'), ('attach', 'A', f0), ('release', 'A'),
    ], external=[('group', f0)], replay=False,
        why_no_replay='another process has the group open'))
    return Topology(
        'multifunction',
        'a two-function e1000e behind a PCIe root port without hotplug (bus reset; one IOMMU group)',
        root_port('rp1', '0x2', 1, hotplug=False) + [
            '-device', 'e1000e,bus=rp1,addr=0.0,multifunction=on',
            '-device', 'e1000e,bus=rp1,addr=0.1',
        ],
        {f0: 'e1000e', f1: 'e1000e'},
        sc)


def bridge_topology():
    b1, b2, root = '0000:01:01.0', '0000:01:02.0', '0000:00:04.0'
    sc = []
    for m in MODELS:
        sc.append(Scenario(f'bridge-{m}', m, {b1: 'vfio-pci', b2: 'vfio-pci', root: 'native'}, [
            ('check', b1), ('check', b2),
            ('ctx', 'A'), ('attach', 'A', b1),
            ('info', 'A', b1),            # the whole bus behind the bridge; one group with the bridge
            ('reset', 'A', b1),
            ('attach', 'A', b2), ('info', 'A', b2),
            ('release', 'A'),
            ('hotreset', b2),
        ]))
        sc.append(Scenario(f'bridge-native-{m}', m, {b1: 'vfio-pci', b2: 'native', root: 'native'}, [
            ('check', b1),
            ('ctx', 'A'), ('attach', 'A', b1),
            ('release', 'A'),
            ('hotreset', b1),
        ]))
        sc.append(Scenario(f'root-bus-{m}', m, {b1: 'native', b2: 'native', root: 'vfio-pci'}, [
            ('check', root),
            ('ctx', 'A'), ('attach', 'A', root),
            ('info', 'A', root),          # ENODEV
            ('reset', 'A', root),
            ('release', 'A'),
            ('hotreset', root),
        ]))
    return Topology(
        'bridge',
        'two e1000 behind a conventional pci-bridge (one IOMMU group with the bridge), one e1000 on the root bus',
        ['-device', 'pci-bridge,id=br1,bus=pcie.0,addr=0x3,chassis_nr=3',
         '-device', 'e1000,bus=br1,addr=1.0',
         '-device', 'e1000,bus=br1,addr=2.0',
         '-device', 'e1000,bus=pcie.0,addr=0x4'],
        {b1: 'e1000', b2: 'e1000', root: 'e1000'},
        sc)


def slot_topology():
    s0, s1, bus = '0000:01:00.0', '0000:01:00.1', '0000:02:00.0'
    sc = []
    for m in MODELS:
        sc.append(Scenario(f'slot-vs-bus-{m}', m, {s0: 'vfio-pci', s1: 'vfio-pci', bus: 'vfio-pci'}, [
            ('check', s0), ('check', bus),
            ('ctx', 'A'), ('attach', 'A', s0),
            ('info', 'A', s0),
            ('reset', 'A', s0),           # a slot reset (pciehp)
            ('attach', 'A', bus), ('info', 'A', bus),
            ('reset', 'A', bus),          # a secondary bus reset
            ('release', 'A'),
            ('hotreset', s1), ('hotreset', bus),
        ]))
        sc.append(Scenario(f'slot-stub-{m}', m, {s0: 'vfio-pci', s1: 'pci-stub', bus: 'native'}, [
            ('check', s0), ('check', bus),
            ('ctx', 'A'), ('attach', 'A', s0), ('reset', 'A', s0),
            ('release', 'A'),
        ]))
    # Without ACPI hotplug on the bridges, a root port with hotplug gets a
    # pciehp slot and its devices are reset by slot; hotplug=off keeps a
    # secondary bus reset.
    return Topology(
        'slot',
        'a two-function e1000e in a pciehp hotplug slot (slot reset) and an e1000e behind a root port '
        'without hotplug (bus reset)',
        ['-global', 'ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off']
        + root_port('rp1', '0x2', 1, hotplug=True) + root_port('rp2', '0x3', 2, hotplug=False) + [
            '-device', 'e1000e,bus=rp1,addr=0.0,multifunction=on',
            '-device', 'e1000e,bus=rp1,addr=0.1',
            '-device', 'e1000e,bus=rp2,addr=0.0',
        ],
        {s0: 'e1000e', s1: 'e1000e', bus: 'e1000e'},
        sc)


def vmm_topology():
    """A real VMM on the broker's files: QEMU 10, nested in the guest, on
    vm-multifunction's machine (tests/vm/vmm.py has the scenarios' code)."""
    f0, f1 = '0000:01:00.0', '0000:01:00.1'
    both = {f0: 'vfio-pci', f1: 'vfio-pci'}
    # A scenario of a feature still to come gets pending=Pending(...) (see
    # Pending and tests/vm/README.md); every one of these runs for real.
    sc = [
        VmmScenario('vmm-today', 'iommufd', both,
                    'CreateContext, AttachDevice(Bind=false), OpenIommufd, OpenDevice: QEMU 10 realizes f0, '
                    'system_reset hot-resets it; a second QEMU on the same bound file cannot bind it'),
        VmmScenario('vmm-hot-reset-while-held', 'iommufd', both,
                    'Context.HotReset(f0) through the broker while QEMU holds f0; QEMU keeps running'),
        VmmScenario('vmm-pid-lease-ends', 'iommufd', both,
                    'a lease tied to QEMU\'s pid ends when QEMU is killed; f0 is free'),
        VmmScenario('vmm-reopen-device', 'iommufd', both,
                    'ReopenDevice: InUse while QEMU holds the old file; then a fresh file on which a second '
                    'QEMU on the same lease realizes f0'),
        VmmScenario('vmm-pid-lease-outlives-creator', 'iommufd', both,
                    'a pid-tied lease survives its creator\'s bus connection; QEMU keeps f0'),
        VmmScenario('vmm-hotresetctl-run', 'iommufd', both,
                    'hotresetctl run --device f0 -- sh -c \'exec qemu ... fd=$HOTRESETD_...\': realized; '
                    'exit status forwarded (quit: 0, SIGKILL: 137 or the signal)'),
        VmmScenario('vmm-group', 'group', both,
                    'group model: AttachDevice(Bind=false) and OpenIommufd are refused (Unsupported)'),
        VmmScenario('vmm-group-run', 'group', both,
                    'group model: hotresetctl run is refused (the group backend), no lease, no QEMU'),
    ]
    return Topology(
        'vmm',
        'QEMU 10 nested in the guest on the broker\'s files: a two-function e1000e behind a PCIe root port '
        'without hotplug (as vm-multifunction)',
        root_port('rp1', '0x2', 1, hotplug=False) + [
            '-device', 'e1000e,bus=rp1,addr=0.0,multifunction=on',
            '-device', 'e1000e,bus=rp1,addr=0.1',
        ],
        {f0: 'e1000e', f1: 'e1000e'},
        sc, kind='vmm')


def udev_topology():
    """Devices leave while leased, with systemd-udevd in the guest and one
    daemon across the scenarios (tests/vm/vmudev.py), on vm-multifunction's
    machine. The scenarios run in order, each from the previous one's end."""
    f0, f1 = '0000:01:00.0', '0000:01:00.1'
    both = {f0: 'vfio-pci', f1: 'vfio-pci'}
    sc = [
        VmmScenario('udev-sibling-unbind', 'iommufd', both,
                    'f0 leased, f1 unbound from vfio-pci: f0 HotResetPossible and the domain\'s Blockers '
                    'change on the bus, the lease keeps f0; f1 rebound'),
        VmmScenario('udev-unbind-leased', 'iommufd', both,
                    'f0 leased, unbound: the write returns, DeviceRemoved(f0, "the device left its vfio '
                    'driver"), Devices no longer lists f0; rebound and attached again'),
        VmmScenario('udev-remove-rescan', 'iommufd', both,
                    'f0 leased, removed through sysfs: DeviceRemoved, InterfacesRemoved; '
                    '/sys/bus/pci/rescan: InterfacesAdded'),
        VmmScenario('udev-override-bind', 'iommufd', both,
                    'f0 bound through driver_override and drivers_probe: Driver vfio-pci, a CdevPath, '
                    'attachable'),
        VmmScenario('udev-restart', 'iommufd', both,
                    'the daemon restarted with SIGTERM, then SIGKILL, its files kept by a stand-in for '
                    'systemd\'s file descriptor store: the lease is back with f0, held, and resets through '
                    'the restored files; after Release a new lease binds f0'),
    ]
    return Topology(
        'udev',
        'systemd-udevd in the guest, one hotresetd --uapi=iommufd across unbind, remove, rescan and bind: '
        'a two-function e1000e behind a PCIe root port without hotplug (as vm-multifunction)',
        root_port('rp1', '0x2', 1, hotplug=False) + [
            '-device', 'e1000e,bus=rp1,addr=0.0,multifunction=on',
            '-device', 'e1000e,bus=rp1,addr=0.1',
        ],
        {f0: 'e1000e', f1: 'e1000e'},
        sc, kind='udev')


TOPOLOGIES = {t.name: t for t in (multifunction_topology(), bridge_topology(), slot_topology(), vmm_topology(),
                                  udev_topology())}


# ---------------------------------------------------------------------------
# sysfs (guest)


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _link_base(path):
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def sysfs_facts():
    """What sysfs says about every PCI function, and the hotplug slots."""
    devices = {}
    base = '/sys/bus/pci/devices'
    for addr in sorted(os.listdir(base)):
        d = os.path.join(base, addr)
        group = _link_base(os.path.join(d, 'iommu_group'))
        cdev = None
        vd = os.path.join(d, 'vfio-dev')
        if os.path.isdir(vd):
            for n in sorted(os.listdir(vd)):
                if os.path.exists(os.path.join(vd, n, 'dev')):
                    cdev = '/dev/vfio/devices/' + n
        cls = int(_read(os.path.join(d, 'class'), '0'), 16)
        devices[addr] = {
            'vendor': int(_read(os.path.join(d, 'vendor'), '0'), 16),
            'device': int(_read(os.path.join(d, 'device'), '0'), 16),
            'class': cls,
            'bridge': (cls >> 8) == 0x0604,
            'driver': _link_base(os.path.join(d, 'driver')),
            'group': int(group) if group is not None else -1,
            'reset_methods': (_read(os.path.join(d, 'reset_method'), '') or '').split(),
            'cdev': cdev,
        }
    slots = {}
    sbase = '/sys/bus/pci/slots'
    if os.path.isdir(sbase):
        for s in sorted(os.listdir(sbase)):
            a = _read(os.path.join(sbase, s, 'address'))
            if a:
                slots[a] = s
    return {'devices': devices, 'slots': slots}


def set_driver(address, want, native):
    """Binds address to want ('vfio-pci', 'pci-stub', 'native' = its own
    driver, None = no driver) the way the README says: driver_override,
    unbind, drivers_probe. Returns the driver bound afterwards."""
    d = '/sys/bus/pci/devices/' + address
    target = native if want == 'native' else want
    override = {None: 'none'}.get(want, '\n' if want == 'native' else want)
    with open(d + '/driver_override', 'w') as f:
        f.write(override)
    cur = _link_base(d + '/driver')
    if cur and cur != target:
        with open(d + '/driver/unbind', 'w') as f:
            f.write(address)
    if target and _link_base(d + '/driver') != target:
        with open('/sys/bus/pci/drivers_probe', 'w') as f:
            f.write(address)
    now = _link_base(d + '/driver')
    if now != target:
        raise RuntimeError(f'{address}: wanted driver {target or "(none)"}, got {now or "(none)"}')
    return now


# ---------------------------------------------------------------------------
# The kernel's answers (guest): vfio-probe in interactive mode


class KernelWorld:
    def __init__(self, probe, model, facts):
        self.pm = 'cdev' if model == 'iommufd' else 'group'
        self.facts = facts['devices']
        self.opened = {}      # context -> [addresses opened in it]
        self.unbound = set()  # (context, address) opened without BIND
        self.n_tmp = 0
        self.transcript = []
        self.proc = subprocess.Popen([probe, '-'], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, universal_newlines=True, bufsize=1)

    def op(self, text):
        self.proc.stdin.write(text + '\n')
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f'vfio-probe exited on {text!r}: {self.proc.stderr.read()}')
        obj = json.loads(line)
        self.transcript.append([text, obj])
        return obj

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(30)

    def group_of(self, a):
        return self.facts.get(a, {}).get('group', -1)

    def holder(self, a):
        """(context, an address it opened in a's scope of ownership): the
        context that opened a, else one that opened a device of a's group."""
        for c, addrs in self.opened.items():
            if a in addrs:
                return c, a
        g = self.group_of(a)
        if g >= 0:
            for c, addrs in self.opened.items():
                for x in addrs:
                    if self.group_of(x) == g:
                        return c, x
        return None

    def held_snapshot(self):
        return {c: list(v) for c, v in self.opened.items()}

    def use(self, c):
        self.op(f'ctx:{c}:{self.pm}')

    def unleased(self, a):
        """A fresh context takes the whole scope and resets, as
        Manager.HotReset does."""
        self.n_tmp += 1
        t = f'u{self.n_tmp}'
        self.use(t)
        res = {'open': self.op(f'open:{a}')}
        if res['open']['errno'] == 0:
            res['info'] = self.op(f'info:{a}')
            res['others'] = []
            if res['info']['errno'] == 0:
                for addr, _ in res['info']['devices']:
                    if addr != a:
                        res['others'].append(self.op(f'open:{addr}'))
            res['reset'] = self.op(f'reset:{a}')
        self.op(f'ctx-close:{t}')
        return res

    def step(self, st):
        kind = st[0]
        ans = {'held': self.held_snapshot()}
        if kind == 'ctx':
            self.use(st[1])
            self.opened.setdefault(st[1], [])
        elif kind in ('attach', 'attach-unbound'):
            c, a = st[1], st[2]
            self.use(c)
            ans['open'] = self.op(f'{"open" if kind == "attach" else "open-unbound"}:{a}')
            if ans['open']['errno'] == 0:
                self.opened.setdefault(c, []).append(a)
                if kind == 'attach-unbound':
                    self.unbound.add((c, a))
        elif kind in ('info', 'reset'):
            c, a = st[1], st[2]
            if a not in self.opened.get(c, []):
                ans['not_attached'] = True
            else:
                ans['unbound'] = (c, a) in self.unbound
                self.use(c)
                ans['info'] = self.op(f'info:{a}')
                if kind == 'reset':
                    ans['reset'] = self.op(f'reset:{a}')
        elif kind == 'check':
            a = st[1]
            h = self.holder(a)
            if h:
                c, x = h
                self.use(c)
                ans['via'] = c
                ans['info'] = self.op(f'info:{x}')
                ans['reset'] = self.op(f'reset:{x}')
            else:
                ans['via'] = None
                ans.update(self.unleased(a))
        elif kind == 'hotreset':
            ans.update(self.unleased(st[1]))
        elif kind == 'release':
            ans['close'] = self.op(f'ctx-close:{st[1]}')
            self.opened.pop(st[1], None)
            self.unbound = {x for x in self.unbound if x[0] != st[1]}
        else:
            raise ValueError(f'unknown step {st!r}')
        return ans


# ---------------------------------------------------------------------------
# A private system bus and the daemon (guest and host)


BUS_CONFIG = '''<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
'''


class Bus:
    """A private dbus-daemon with a system-type configuration."""

    def __init__(self, tmpdir):
        self.tmpdir = tmpdir
        self.proc = None
        self.address = None
        self.log_path = os.path.join(tmpdir, 'dbus-daemon.log')

    def start(self, timeout=60):
        conf = os.path.join(self.tmpdir, 'system-bus.conf')
        with open(conf, 'w') as f:
            f.write(BUS_CONFIG.format(socket=os.path.join(self.tmpdir, 'system_bus_socket')))
        logf = open(self.log_path, 'w')
        self.proc = subprocess.Popen(['dbus-daemon', '--config-file=' + conf, '--nofork', '--print-address'],
                                     stdout=subprocess.PIPE, stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()
        deadline = time.monotonic() + timeout * TIMEOUT_SCALE
        line = b''
        while not line.endswith(b'\n'):
            r, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                raise RuntimeError('dbus-daemon did not print its address: ' + _read(self.log_path, ''))
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError('dbus-daemon exited: ' + _read(self.log_path, ''))
            line += chunk
        self.address = line.decode().strip().splitlines()[0]

    def env(self):
        env = dict(os.environ)
        env['DBUS_SYSTEM_BUS_ADDRESS'] = self.address
        env.pop('DBUS_SESSION_BUS_ADDRESS', None)
        env.pop('NOTIFY_SOCKET', None)
        env['SYSTEMD_COLORS'] = '0'
        env['SYSTEMD_PAGER'] = ''
        return env

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()


class DBusError(Exception):
    def __init__(self, name, message):
        super().__init__(f'{name}: {message}')
        self.name = name
        self.message = message


ERROR_LINE = re.compile(r'^Got message type=error .*? error-name=(\S+) error-message=(.*)$', re.M)


def busctl(bus, *args, timeout=120):
    """busctl --system --json=short call/get-property …; returns the parsed
    reply ({"type", "data"}) or raises DBusError with the error *name*
    (busctl prints only the message; sd-bus's debug log of the received
    error message has the name)."""
    env = bus.env()
    env['SYSTEMD_LOG_LEVEL'] = 'debug'
    t = int(timeout * TIMEOUT_SCALE)
    cmd = ['busctl', '--system', '--json=short', f'--timeout={t}', '--'] + [str(a) for a in args]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, stdin=subprocess.DEVNULL,
                       timeout=t + 30, universal_newlines=True)
    if p.returncode == 0:
        return json.loads(p.stdout) if p.stdout.strip() else {'type': '', 'data': []}
    m = None
    for m in ERROR_LINE.finditer(p.stderr):
        pass
    if m:
        raise DBusError(m.group(1), m.group(2))
    tail = [l for l in p.stderr.splitlines() if not l.startswith(('Bus ', 'sd-bus', 'Sent message', 'Got message'))]
    raise DBusError('busctl-failed', ' '.join(tail)[-500:] or f'exit status {p.returncode}')


def reason_key(reason):
    """The documented start of a CheckHotReset reason (the rest names
    drivers and contexts, which the comparison covers separately)."""
    for k in ('no reset mechanism', 'bridge in reset scope', 'not bound to a vfio driver', 'held by'):
        if reason.startswith(k):
            return k
    return reason


class DaemonWorld:
    """hotresetd on a bus, driven step by step with busctl."""

    def __init__(self, bus, command, log_path):
        self.bus = bus
        self.command = command
        self.log_path = log_path
        self.proc = None
        self.contexts = {}   # name -> object path
        self.names = {}      # object path -> name
        self.returncode = None

    def start(self, timeout=120):
        notify_path = self.log_path + '.notify'
        if os.path.exists(notify_path):
            os.unlink(notify_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(notify_path)
        env = self.bus.env()
        env['NOTIFY_SOCKET'] = notify_path
        logf = open(self.log_path, 'w')
        self.proc = subprocess.Popen(self.command, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, env=env)
        logf.close()
        deadline = time.monotonic() + timeout * TIMEOUT_SCALE
        got = ''
        try:
            while 'READY=1' not in got:
                if self.proc.poll() is not None:
                    raise RuntimeError(f'hotresetd exited with status {self.proc.returncode} before READY=1')
                r, _, _ = select.select([sock], [], [], 0.2)
                if r:
                    got += sock.recv(4096).decode(errors='replace') + '\n'
                if time.monotonic() > deadline:
                    raise RuntimeError('hotresetd did not send READY=1 within the timeout')
        finally:
            sock.close()
            os.unlink(notify_path)

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60 * TIMEOUT_SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.returncode = 'killed'
                return self.returncode
        self.returncode = self.proc.returncode
        return self.returncode

    def log(self):
        return _read(self.log_path, '') or ''

    def call(self, path, iface, method, *sig_args):
        return busctl(self.bus, 'call', BUS_NAME, path, iface, method, *sig_args)['data']

    def snapshot(self, addresses):
        """Manager.Backend, ListDevices and the test devices' properties."""
        snap = {'backend': busctl(self.bus, 'get-property', BUS_NAME, ROOT_PATH, MANAGER_IFACE, 'Backend')['data']}
        snap['devices'] = [list(x) for x in self.call(ROOT_PATH, MANAGER_IFACE, 'ListDevices')[0]]
        props = {}
        for a in addresses:
            try:
                allp = self.call(device_path(a), PROPS_IFACE, 'GetAll', 's', DEVICE_IFACE)[0]
                props[a] = {k: v['data'] for k, v in allp.items()}
                # Explicit (not in GetAll, see the D-Bus API): read on its own.
                props[a]['Affected'] = self.call(device_path(a), PROPS_IFACE, 'Get', 'ss', DEVICE_IFACE,
                                                 'Affected')[0]['data']
            except DBusError as e:
                props[a] = {'error': e.name}
        snap['properties'] = props
        return snap

    def ctx_name(self, path):
        if not path or path == '/':
            return ''
        return self.names.get(path, '?private')

    def step(self, st):
        kind = st[0]
        try:
            if kind == 'ctx':
                path = self.call(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', 2, 'Persistent', 'b', 'true',
                                 'Description', 's', f'VM tier context {st[1]}')[0]
                self.contexts[st[1]] = path
                self.names[path] = st[1]
                return {'ok': True}
            if kind in ('attach', 'attach-unbound', 'info', 'reset', 'release'):
                path = self.contexts.get(st[1])
                if path is None:
                    return {'error': 'no-context'}
                if kind == 'attach':
                    return {'devid': self.call(path, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', st[2], 0)[0]}
                if kind == 'attach-unbound':
                    return {'devid': self.call(path, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', st[2], 1,
                                               'Bind', 'b', 'false')[0]}
                if kind == 'info':
                    flags, devs = self.call(path, CONTEXT_IFACE, 'GetHotResetInfo', 's', st[2])
                    return {'flags': flags, 'devices': [list(x) for x in devs]}
                if kind == 'reset':
                    return {'affected': sorted(self.call(path, CONTEXT_IFACE, 'HotReset', 's', st[2])[0])}
                self.call(path, CONTEXT_IFACE, 'Release')
                return {'ok': True}
            if kind == 'hotreset':
                return {'affected': sorted(self.call(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', st[1], 0)[0])}
            if kind == 'check':
                a = st[1]
                allp = self.call(device_path(a), PROPS_IFACE, 'GetAll', 's', DEVICE_IFACE)[0]
                affected = self.call(device_path(a), PROPS_IFACE, 'Get', 'ss', DEVICE_IFACE, 'Affected')[0]
                possible, devs = self.call(device_path(a), DEVICE_IFACE, 'CheckHotReset')
                return {'scope': allp['ResetScope']['data'],
                        'affected': affected['data'],
                        'possible': possible,
                        'devices': [[d[0], d[1], d[2], self.ctx_name(d[3]), reason_key(d[4])] for d in devs]}
        except DBusError as e:
            return {'error': e.name, 'message': e.message}
        raise ValueError(f'unknown step {st!r}')


def sanitizer_reports(text):
    return [m for m in SANITIZER_MARKERS if m in text]


def run_daemon_steps(bus, command, log_path, scenario, addresses):
    """Starts the daemon, runs every step, stops it. Returns a dict with
    the answers, the snapshot, the exit status and the log."""
    res = {'command': command}
    d = DaemonWorld(bus, command, log_path)
    t0 = time.monotonic()
    try:
        d.start()
    except Exception as e:
        d.stop()
        res.update(start_error=str(e), log=d.log())
        return res
    try:
        res['snapshot'] = d.snapshot(addresses)
        res['answers'] = [d.step(st) for st in scenario.steps]
    except Exception as e:  # busctl timing out, a daemon crash: a failure, with the log
        res['run_error'] = f'{type(e).__name__}: {e}'
    res['exit_status'] = d.stop()
    res['log'] = d.log()
    res['seconds'] = round(time.monotonic() - t0, 2)
    return res


# ---------------------------------------------------------------------------
# Comparisons (host)


def _errset(*names):
    return {ERR + n if '.' not in n else n for n in names}


def _short(e):
    return e[len(ERR):] if isinstance(e, str) and e.startswith(ERR) else e


class Comparison:
    def __init__(self, facts):
        self.facts = facts['devices']
        self.slots = facts['slots']
        self.problems = []

    def fail(self, where, what, kernel, daemon):
        self.problems.append({'where': where, 'what': what, 'kernel': kernel, 'daemon': daemon})

    def driver(self, a):
        return self.facts.get(a, {}).get('driver')

    def group(self, a):
        return self.facts.get(a, {}).get('group', -1)

    def group_members(self, a):
        g = self.group(a)
        return [x for x, f in self.facts.items() if g >= 0 and f['group'] == g and x != a]

    def blocks_dev_set(self, a):
        f = self.facts.get(a, {})
        return f.get('bridge') or not is_vfio(f.get('driver'))

    def held_by_other(self, held, a, me=None):
        g = self.group(a)
        for c, addrs in held.items():
            if c == me:
                continue
            if a in addrs or any(self.group(x) == g for x in addrs):
                return c
        return None

    def expect_error(self, where, kernel, daemon, names):
        got = daemon.get('error')
        if got not in _errset(*names):
            self.fail(where, f'expected the daemon to refuse with {" or ".join(sorted(names))}', kernel, daemon)

    def slot_scope(self, a):
        """'slot' when sysfs has a hotplug slot for a's bus and device."""
        return 'slot' if a.rsplit('.', 1)[0] in self.slots else 'bus'

    # -- the steps

    def compare_step(self, i, st, k, d, model, external):
        where = f'step {i + 1} {st}'
        kind = st[0]
        cdev = model == 'iommufd'
        if kind in ('ctx', 'release'):
            if 'ok' not in d:
                self.fail(where, 'the daemon refused', k, d)
            return
        if kind in ('attach', 'attach-unbound'):
            c, a = st[1], st[2]
            o = k['open']
            if o['errno'] == 0:
                want = o.get('devid', 0) if cdev else 0
                if d.get('devid') != want:
                    self.fail(where, f'attach: the kernel bound it (devid {want})', k, d)
                return
            names = set()
            if not is_vfio(self.driver(a)):
                names.add('NotInDevSet')
            elif any(not keeps_group_viable(self.driver(x)) for x in self.group_members(a)
                     if not self.facts[x]['bridge']):
                names.add('GroupNotViable')
            elif self.held_by_other(k['held'], a, me=c):
                names.add('InUse')
            elif o['errno'] == errno.EBUSY:
                names.add('Busy')
            elif o['errno'] == errno.EPERM:
                names.add('GroupNotViable')
            else:
                names.add(f'(kernel {o["error"]} at {o.get("step")})')
            self.expect_error(where, k, d, names)
            return
        if kind == 'info':
            if k.get('not_attached'):
                self.expect_error(where, k, d, {'NotAttached'})
                return
            info = k['info']
            if k.get('unbound') and info['errno'] == errno.EINVAL:
                self.expect_error(where, k, d, {'Unsupported'})
            elif info['errno'] == 0:
                want = {'flags': info['flags'], 'devices': info['devices']}
                got = {'flags': d.get('flags'), 'devices': d.get('devices')}
                if got != want:
                    self.fail(where, 'GetHotResetInfo differs from VFIO_DEVICE_GET_PCI_HOT_RESET_INFO', k, d)
            elif info['errno'] == errno.ENODEV:
                self.expect_error(where, k, d, {'NoResetMechanism'})
            else:
                self.expect_error(where, k, d, {f'(kernel {info["error"]})'})
            return
        if kind == 'reset':
            if k.get('not_attached'):
                self.expect_error(where, k, d, {'NotAttached'})
                return
            if k.get('unbound') and k['reset']['errno'] == errno.EINVAL:
                self.expect_error(where, k, d, {'Unsupported'})
                return
            self.compare_reset_result(where, k, d, k['info'], k['reset'], k['held'], st[1], st[2], external)
            return
        if kind == 'hotreset':
            self.compare_unleased(where, k, d, st[1], external)
            return
        if kind == 'check':
            self.compare_check(where, k, d, st[1], external)
            return
        raise ValueError(kind)

    def info_addresses(self, info):
        return sorted(x[0] for x in info['devices'])

    def compare_reset_result(self, where, k, d, info, reset, held, c, a, external):
        if reset['errno'] == 0:
            want = self.info_addresses(info)
            if d.get('affected') != want:
                self.fail(where, f'the kernel reset {want}', k, d)
            return
        e = reset['errno']
        if e == errno.ENODEV or e == errno.ENOTTY:
            names = {'NoResetMechanism'}
        elif e == errno.EINVAL:
            affected = self.info_addresses(info) if info['errno'] == 0 else [a]
            names = {'NotInDevSet'} if any(self.blocks_dev_set(x) for x in affected) else {'NotOwned'}
        elif e in (errno.EBUSY, errno.EAGAIN):
            names = {'Busy'}
        else:
            names = {f'(kernel {reset["error"]})'}
        self.expect_error(where, k, d, names)

    def compare_unleased(self, where, k, d, a, external):
        """Manager.HotReset against the kernel taking the whole scope into a
        fresh context and resetting."""
        reset = k.get('reset')
        if reset and reset['errno'] == 0:
            want = self.info_addresses(k['info'])
            if d.get('affected') != want:
                self.fail(where, f'the kernel reset {want}', k, d)
            return
        info = k.get('info')
        if info and info['errno'] == errno.ENODEV:
            self.expect_error(where, k, d, {'NoResetMechanism'})
            return
        known = self.info_addresses(info) if info and info['errno'] == 0 else sorted([a] + self.group_members(a))
        names = set()
        if any(self.blocks_dev_set(x) for x in known):
            names.add('NotInDevSet')
        if any(self.held_by_other(k['held'], x) for x in known):
            names.add('InUse')
        if k['open']['errno'] == errno.EBUSY and external:
            names.add('Busy')
        if not names:
            names.add('NotOwned')
        self.expect_error(where, k, d, names)

    def compare_check(self, where, k, d, a, external):
        if 'error' in d:
            self.fail(where, 'CheckHotReset / the properties failed', k, d)
            return
        info = k.get('info')
        reset = k.get('reset')
        possible = bool(reset and reset['errno'] == 0)
        if info and info['errno'] == errno.ENODEV:
            if d['scope'] != 'none' or d['possible'] or d['affected'] != [a]:
                self.fail(where, 'the kernel has no hot reset for it (ENODEV): expected ResetScope "none", '
                          f'Affected [{a}], possible false', k, d)
            return
        if info and info['errno'] == 0:
            want = self.info_addresses(info)
            if d['affected'] != want or [x[0] for x in d['devices']] != want:
                self.fail(where, f'Affected / CheckHotReset devices differ from the kernel\'s scope {want}', k, d)
            scope = self.slot_scope(a)
            if d['scope'] != scope:
                self.fail(where, f'ResetScope: sysfs says {scope} ({self.slots})', k, d)
        if d['possible'] != possible:
            self.fail(where, f'possible: the kernel\'s reset {"succeeded" if possible else "was refused"}', k, d)
        for x in d['devices']:
            addr, driver, group = x[0], x[1], x[2]
            f = self.facts.get(addr)
            if f and ((f['driver'] or '') != driver or f['group'] != group):
                self.fail(where, f'{addr}: sysfs says driver {f["driver"]!r}, group {f["group"]}', f, x)

    def compare_snapshot(self, snap, model):
        for a, p in snap['properties'].items():
            f = self.facts.get(a)
            if f is None or 'error' in p:
                self.fail(f'properties of {a}', 'device missing', f, p)
                continue
            want = {'Driver': f['driver'] or '', 'IommuGroup': f['group'], 'ResetMethods': f['reset_methods'],
                    'VendorId': f['vendor'], 'DeviceId': f['device'], 'Class': f['class'],
                    'IsBridge': f['bridge'],
                    # The group model does not use cdevs and shows none
                    # (as the emulated kernel with "cdev": false does).
                    'CdevPath': (f['cdev'] or '') if model == 'iommufd' else ''}
            got = {k: p.get(k) for k in want}
            if got != want:
                self.fail(f'properties of {a}', 'the daemon\'s Device properties differ from sysfs', want, got)
        listed = sorted(x[0] for x in snap['devices'])
        if listed != sorted(self.facts):
            self.fail('ListDevices', 'the daemon\'s devices differ from /sys/bus/pci/devices',
                      sorted(self.facts), listed)


def normalize(answer):
    """An answer without the parts that may differ between two equal
    daemons (error messages name bus names and the backend)."""
    return {k: v for k, v in answer.items() if k != 'message'}


def normalize_snapshot(snap, cdev):
    props = {}
    for a, p in snap['properties'].items():
        q = dict(p)
        if 'CdevPath' in q:
            q['CdevPath'] = bool(q['CdevPath'])  # vfioN numbering is the kernel's
        if 'Context' in q:
            q['Context'] = q['Context'] != '/'
        props[a] = q
    backend = snap['backend']
    if backend.startswith('emulated-'):
        backend = backend[len('emulated-'):]
    return {'backend': backend, 'devices': snap['devices'], 'properties': props}


def compare_replay(scenario, real, emu):
    """The daemon on the real kernel against the daemon on the emulated
    kernel (the dumped machine): every answer equal."""
    problems = []
    a = normalize_snapshot(real['snapshot'], scenario.model == 'iommufd')
    b = normalize_snapshot(emu['snapshot'], scenario.model == 'iommufd')
    for key in ('backend', 'devices'):
        if a[key] != b[key]:
            problems.append({'where': key, 'what': 'differs on the emulated kernel', 'real': a[key], 'emulated': b[key]})
    for addr in a['properties']:
        pa, pb = a['properties'][addr], b['properties'].get(addr)
        if pa != pb:
            diff = {k: (pa.get(k), (pb or {}).get(k)) for k in sorted(set(pa) | set(pb or {}))
                    if pa.get(k) != (pb or {}).get(k)}
            problems.append({'where': f'properties of {addr}', 'what': 'differ on the emulated kernel',
                             'real': {k: v[0] for k, v in diff.items()}, 'emulated': {k: v[1] for k, v in diff.items()}})
    for i, st in enumerate(scenario.steps):
        ra = normalize(real['answers'][i])
        ea = normalize(emu['answers'][i]) if i < len(emu.get('answers', [])) else None
        if ra != ea:
            problems.append({'where': f'step {i + 1} {st}', 'what': 'differs on the emulated kernel',
                             'real': real['answers'][i], 'emulated': emu['answers'][i] if ea is not None else None})
    return problems


def dump_machine(hotresetd, model, path, env, timeout=120):
    """hotresetd --uapi=MODEL --dump-machine=PATH. Returns (ok, message)."""
    cmd = [hotresetd, f'--uapi={model}', f'--dump-machine={path}']
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
                           timeout=timeout * TIMEOUT_SCALE, universal_newlines=True)
    except subprocess.TimeoutExpired:
        return False, f'{" ".join(cmd)} did not exit within {timeout * TIMEOUT_SCALE:.0f} s'
    if p.returncode != 0:
        return False, f'{" ".join(cmd)} failed ({p.returncode}): {p.stdout[-2000:]}'
    try:
        with open(path) as f:
            json.load(f)
    except (OSError, ValueError) as e:
        return False, f'{" ".join(cmd)} wrote no machine file: {e}; output: {p.stdout[-1000:]}'
    return True, p.stdout[-2000:]


def daemon_options(hotresetd):
    """The long options hotresetd --help lists."""
    try:
        p = subprocess.run([hotresetd, '--help'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(re.findall(r'(--[a-z][a-z-]*)', p.stdout))


def tempdir(prefix):
    return tempfile.mkdtemp(prefix=prefix)


def rmtree(path):
    shutil.rmtree(path, ignore_errors=True)

#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Generates an emulated machine file (README, "The emulated machine file")
of exactly N PCI functions, shaped like a large server, for the daemon's
benchmarks (tests/bench/run-bench.py).

    gen-machine.py --functions N [--seed S] -o MACHINE.json
                   [--burst BURST.json] [--targets TARGETS.json]

The machine has PCI segments 0000, 0001, 0002 (more when N needs more than
three segments' buses), each with a host bridge on its root bus and root
ports (pcieport, no slot reset) leading to:

  - NVMe drives alone under their root port (nvme or vfio-pci);
  - GPUs with their HDMI audio function in one IOMMU group (GPU on
    vfio-pci, audio on vfio-pci or snd_hda_intel);
  - quad-port NICs (4 functions of one device, one IOMMU group);
  - PCIe switches: an upstream port and downstream ports to hotplug slots
    (slot_reset true) holding NVMe drives or GPUs, some slots empty;
  - SR-IOV NICs with 32-256 functions on ONE bus: the PF (on its host
    driver or vfio-pci) at 00.0 and VFs on vfio-pci at 00.1 .. 1f.7, each
    VF in its own IOMMU group;
  - eight SR-IOV NICs with no VFs enabled yet (sriov_numvfs=0): the burst
    file enables 128 VFs on each of them (1024 new functions);
  - on segment 0000's root bus, chipset functions (no hot reset) that make
    the count exact.

Bus numbers are allocated upwards per segment (a bridge's secondary bus is
always greater than its own bus, and unique); a new segment is opened when
the others have no bus or root-bus slot left.

The addresses the load generator needs are written to --targets (JSON) and
printed on stderr:

  single       a vfio-pci NVMe drive alone behind a root port: a
               one-function reset scope whose reset is possible
  large_scope  a VF on the biggest SR-IOV bus (256 functions from 1024
               functions up; smaller machines cannot hold one, and get the
               biggest that fits), with large_scope_size
  lease        another vfio-pci NVMe drive alone behind a root port, for
               lease cycles (a context attaches and releases it)
  burst_pfs    the eight PFs that get VFs in the burst file, burst_vfs the
               number of VFs added (1024)

With --burst FILE, FILE is the same machine plus those 1024 VFs: rename it
over the machine file the daemon watches to hotplug them, and rename a
copy of the machine back to remove them.

Only the Python standard library is used; the same N and seed always give
the same files.
"""

import argparse
import json
import os
import random
import sys

MIN_FUNCTIONS = 64
MAX_FUNCTIONS = 65536
BURST_PFS = 8
BURST_VFS_PER_PF = 128

# Real IDs, so the generated machine reads like a real one.
ROOT_PORT = ('0x8086', '0x347a', '0x060400')      # Ice Lake-SP PCIe root port
HOST_BRIDGE = ('0x8086', '0x09a2', '0x060000')    # Ice Lake-SP host bridge
SWITCH_PORT = ('0x10b5', '0x8747', '0x060400')    # Broadcom PEX 8747
NVME = ('0x144d', '0xa80a', '0x010802')           # Samsung PM9A3
GPU = ('0x10de', '0x2204', '0x030000')            # NVIDIA RTX 3090
GPU_AUDIO = ('0x10de', '0x1aef', '0x040300')      # its HDMI audio
QUAD_NIC = ('0x8086', '0x1521', '0x020000')       # Intel I350 quad port
SRIOV_NICS = [
    # (PF vendor, PF device, class, host driver, VF device)
    ('0x8086', '0x1593', '0x020000', 'ice', '0x1889'),          # Intel E810
    ('0x15b3', '0x101d', '0x020000', 'mlx5_core', '0x101e'),    # ConnectX-6 Dx
]
CHIPSET = [
    ('0x8086', '0xa1c1', '0x060100', None),          # LPC/eSPI
    ('0x8086', '0xa1a3', '0x0c0500', 'i801_smbus'),  # SMBus
    ('0x8086', '0xa1d2', '0x010601', 'ahci'),        # SATA
    ('0x8086', '0xa1af', '0x0c0330', 'xhci_hcd'),    # USB 3
]


def fmt_address(domain, bus, dev, fn):
    return f'{domain:04x}:{bus:02x}:{dev:02x}.{fn:x}'


def devfn_address(domain, bus, devfn):
    return fmt_address(domain, bus, devfn >> 3, devfn & 7)


class Domain:
    """One PCI segment: its root bus's free device/function slots (00.0 is
    the host bridge) and its next free bus number."""

    def __init__(self, number):
        self.number = number
        self.next_bus = 1
        self.next_root_devfn = 8     # 00:01.0 upwards; 00:00.x is the chipset's
        self.next_chipset_devfn = 1  # 00:00.1 .. 00:00.7

    def buses_left(self):
        return 256 - self.next_bus

    def root_slots_left(self):
        return 256 - self.next_root_devfn

    def take_bus(self):
        assert self.next_bus <= 255
        bus = self.next_bus
        self.next_bus += 1
        return bus

    def take_root_slot(self):
        assert self.next_root_devfn <= 255
        devfn = self.next_root_devfn
        self.next_root_devfn += 1
        return devfn


class Builder:
    def __init__(self, total, seed):
        self.total = total
        self.rng = random.Random(seed)
        self.devices = []
        self.domains = []
        self.rotation = 0
        self.next_group = 1
        self.targets = {}
        self.burst_pfs = []   # (domain, bus, vf device id)
        for _ in range(3):
            self.open_domain()

    # --- bookkeeping

    def remaining(self):
        return self.total - len(self.devices)

    def group(self):
        g = self.next_group
        self.next_group += 1
        return g

    def add(self, address, ids, driver, group, reset_methods, description=None, bridge=None):
        vendor, device, cls = ids
        d = {'address': address, 'vendor': vendor, 'device': device, 'class': cls,
             'driver': driver, 'iommu_group': group, 'reset_methods': list(reset_methods)}
        if bridge is not None:
            d['bridge'] = bridge
        if description:
            d['description'] = description
        self.devices.append(d)
        return address

    def open_domain(self):
        dom = Domain(len(self.domains))
        self.domains.append(dom)
        self.add(fmt_address(dom.number, 0, 0, 0), HOST_BRIDGE, None, self.group(), [],
                 description='host bridge' if dom.number else 'host bridge, segment 0000')
        return dom

    def domain_for(self, buses, root_slots=1):
        """A segment with that many free buses and root-bus slots; the first
        three in turn (so every machine uses 0000, 0001 and 0002), then the
        newest, then a new one."""
        candidates = self.domains[:3] if len(self.domains) <= 3 else self.domains[-1:]
        for i in range(len(candidates)):
            dom = candidates[(self.rotation + i) % len(candidates)]
            if dom.buses_left() >= buses and dom.root_slots_left() >= root_slots:
                self.rotation += 1
                return dom
        if self.remaining() < 1 + buses:
            return None
        return self.open_domain()

    def root_port(self, dom, slot_reset=False, description=None):
        """A root port on dom's root bus leading to a new bus; returns the bus."""
        devfn = dom.take_root_slot()
        bus = dom.take_bus()
        self.add(devfn_address(dom.number, 0, devfn), ROOT_PORT, 'pcieport', self.group(), [],
                 description=description, bridge={'secondary_bus': bus, 'slot_reset': slot_reset})
        return bus

    # --- components (each returns a false value when it does not fit)

    def nvme_alone(self, driver=None, description=None):
        if self.remaining() < 2:
            return None
        dom = self.domain_for(1)
        if dom is None:
            return None
        bus = self.root_port(dom)
        driver = driver or self.rng.choice(['nvme', 'vfio-pci'])
        return self.add(fmt_address(dom.number, bus, 0, 0), NVME, driver, self.group(), ['flr', 'bus'],
                        description=description)

    def gpu_functions(self, dom, bus):
        group = self.group()
        self.add(fmt_address(dom.number, bus, 0, 0), GPU, 'vfio-pci', group, ['bus'])
        audio = self.rng.choice(['vfio-pci', 'snd_hda_intel'])
        self.add(fmt_address(dom.number, bus, 0, 1), GPU_AUDIO, audio, group, ['pm', 'bus'])

    def gpu(self):
        if self.remaining() < 3:
            return False
        dom = self.domain_for(1)
        if dom is None:
            return False
        self.gpu_functions(dom, self.root_port(dom))
        return True

    def quad_nic(self):
        if self.remaining() < 5:
            return False
        dom = self.domain_for(1)
        if dom is None:
            return False
        bus = self.root_port(dom)
        group = self.group()
        for fn in range(4):
            driver = self.rng.choice(['igb', 'igb', 'vfio-pci'])
            self.add(fmt_address(dom.number, bus, 0, fn), QUAD_NIC, driver, group, ['flr', 'bus'])
        return True

    def switch(self):
        """Root port, upstream port, 4-8 downstream ports to hotplug slots,
        each with a GPU (2 functions), an NVMe drive (1) or nothing."""
        ports = self.rng.randint(4, 8)
        if self.remaining() < 3 + ports:
            return False
        dom = self.domain_for(2 + ports)
        if dom is None:
            return False
        up_bus = self.root_port(dom, description='root port to a PCIe switch')
        down_bus = dom.take_bus()
        self.add(fmt_address(dom.number, up_bus, 0, 0), SWITCH_PORT, 'pcieport', self.group(), [],
                 bridge={'secondary_bus': down_bus, 'slot_reset': False})
        slots = []
        for dev in range(ports):
            slot_bus = dom.take_bus()
            self.add(fmt_address(dom.number, down_bus, dev, 0), SWITCH_PORT, 'pcieport', self.group(), [],
                     bridge={'secondary_bus': slot_bus, 'slot_reset': True})
            slots.append(slot_bus)
        for slot_bus in slots:
            kind = self.rng.choice(['gpu', 'nvme', 'nvme', 'empty'])
            if kind == 'gpu' and self.remaining() >= 2:
                self.gpu_functions(dom, slot_bus)
            elif kind != 'empty' and self.remaining() >= 1:
                self.add(fmt_address(dom.number, slot_bus, 0, 0), NVME,
                         self.rng.choice(['nvme', 'vfio-pci']), self.group(), ['flr', 'bus'])
        return True

    def sriov_nic(self, functions, pf_driver=None):
        """Root port plus `functions` functions on one bus: the PF at 00.0
        and functions-1 VFs (none when functions is 1: SR-IOV not enabled
        yet). Returns (PF address, last VF address or None, domain, bus, VF
        device id), or None when it does not fit."""
        if self.remaining() < 1 + functions:
            return None
        dom = self.domain_for(1)
        if dom is None:
            return None
        bus = self.root_port(dom)
        vendor, device, cls, host_driver, vf_device = self.rng.choice(SRIOV_NICS)
        driver = pf_driver or self.rng.choice([host_driver, host_driver, 'vfio-pci'])
        pf = self.add(fmt_address(dom.number, bus, 0, 0), (vendor, device, cls), driver, self.group(),
                      ['flr', 'bus'])
        vf = None
        for devfn in range(1, functions):
            vf = self.add(devfn_address(dom.number, bus, devfn), (vendor, vf_device, cls), 'vfio-pci',
                          self.group(), ['flr'])
        return pf, vf, dom, bus, vf_device

    def chipset(self, count):
        """Integrated functions on segment 0000's root bus (00:00.1..7, then
        root-bus slots): no hot reset. Used to make the count exact."""
        dom = self.domains[0]
        group = self.group()
        for i in range(count):
            if dom.next_chipset_devfn <= 7:
                devfn = dom.next_chipset_devfn
                dom.next_chipset_devfn += 1
            else:
                # Opening a segment would add its host bridge: use any
                # segment's root bus that has room.
                if dom.root_slots_left() < 1:
                    dom = next((d for d in self.domains if d.root_slots_left() >= 1), None)
                    if dom is None:
                        raise SystemExit('gen-machine: no root-bus slot left for padding')
                devfn = dom.take_root_slot()
            vendor, device, cls, driver = CHIPSET[i % len(CHIPSET)]
            self.add(devfn_address(dom.number, 0, devfn), (vendor, device, cls), driver, group, [])

    # --- the machine

    def build(self):
        n = self.total
        self.targets['single'] = self.nvme_alone(
            'vfio-pci', 'benchmark target: one-function reset scope, reset possible')
        self.targets['lease'] = self.nvme_alone('vfio-pci', 'benchmark target: lease cycles')
        large = 256 if n >= 1024 else 32
        pf, vf, _, _, _ = self.sriov_nic(large, pf_driver='vfio-pci')
        self.targets['large_scope'] = vf
        self.targets['large_scope_size'] = large
        for _ in range(BURST_PFS):
            pf, _, dom, bus, vf_device = self.sriov_nic(1, pf_driver='vfio-pci')
            self.burst_pfs.append((dom.number, bus, pf, vf_device))
        self.targets['burst_pfs'] = [pf for _, _, pf, _ in self.burst_pfs]
        self.targets['burst_vfs'] = BURST_PFS * BURST_VFS_PER_PF
        if not self.gpu() or not self.quad_nic():
            raise SystemExit(f'gen-machine: {n} functions are too few')

        # Weights chosen so SR-IOV functions dominate large machines, as on
        # real virtualisation hosts, while there are many small scopes too.
        kinds = ['sriov'] * 5 + ['switch'] * 4 + ['nvme'] * 5 + ['quad'] * 3 + ['gpu'] * 3
        failures = 0
        while self.remaining() > 8 and failures < 50:
            kind = self.rng.choice(kinds)
            if kind == 'sriov':
                ok = self.remaining() >= 34 and self.sriov_nic(
                    min(self.rng.randint(32, 256), self.remaining() - 1)) is not None
            elif kind == 'switch':
                ok = self.switch()
            elif kind == 'nvme':
                ok = self.nvme_alone() is not None
            elif kind == 'quad':
                ok = self.quad_nic()
            else:
                ok = self.gpu()
            failures = 0 if ok else failures + 1
        self.chipset(self.remaining())
        assert len(self.devices) == n, (len(self.devices), n)
        self.targets['functions'] = n
        self.targets['domains'] = len(self.domains)

    def burst_devices(self):
        """The VFs the burst file adds: 128 per burst PF, on its bus."""
        extra = []
        for domain, bus, pf, vf_device in self.burst_pfs:
            pf_dev = next(d for d in self.devices if d['address'] == pf)
            for devfn in range(1, 1 + BURST_VFS_PER_PF):
                extra.append({'address': devfn_address(domain, bus, devfn), 'vendor': pf_dev['vendor'],
                              'device': vf_device, 'class': pf_dev['class'], 'driver': 'vfio-pci',
                              'iommu_group': self.group(), 'reset_methods': ['flr']})
        return extra


def write_machine(path, description, devices):
    """Writes the file next to its final place and renames it over, so a
    daemon watching path never sees half a file."""
    doc = {'cdev': True, 'description': description, 'devices': devices}
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), '.' + os.path.basename(path) + '.tmp')
    with open(tmp, 'w') as f:
        # One device per line: readable, and far smaller than indent=2.
        f.write('{"cdev": true,\n "description": ' + json.dumps(description) + ',\n "devices": [\n')
        f.write(',\n'.join('  ' + json.dumps(d) for d in doc['devices']))
        f.write('\n]}\n')
    os.rename(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--functions', '-n', type=int, required=True,
                    help=f'number of PCI functions ({MIN_FUNCTIONS}..{MAX_FUNCTIONS})')
    ap.add_argument('--seed', type=int, default=1, help='random seed (default 1)')
    ap.add_argument('-o', '--output', required=True, help='the machine file to write')
    ap.add_argument('--burst', '--burst-bus', metavar='FILE',
                    help=f'also write FILE: the same machine plus {BURST_PFS * BURST_VFS_PER_PF} VFs')
    ap.add_argument('--targets', metavar='FILE', help='write the target addresses as JSON to FILE')
    ap.add_argument('--quiet', action='store_true', help='do not print the targets on stderr')
    args = ap.parse_args(argv)
    if not MIN_FUNCTIONS <= args.functions <= MAX_FUNCTIONS:
        ap.error(f'--functions must be {MIN_FUNCTIONS}..{MAX_FUNCTIONS}')

    b = Builder(args.functions, args.seed)
    b.build()
    base_desc = f'generated by tests/bench/gen-machine.py --functions {args.functions} --seed {args.seed}'
    write_machine(args.output, base_desc, b.devices)
    if args.burst:
        write_machine(args.burst, base_desc + f', plus {BURST_PFS * BURST_VFS_PER_PF} VFs (burst)',
                      b.devices + b.burst_devices())
    text = json.dumps(b.targets, indent=2)
    if args.targets:
        with open(args.targets, 'w') as f:
            f.write(text + '\n')
    if not args.quiet:
        print(text, file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())

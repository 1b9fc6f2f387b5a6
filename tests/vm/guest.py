# SPDX-License-Identifier: LGPL-2.1-or-later
"""The guest side of the VM tier, started by guest-init.sh as
`python3 guest.py SHARE` (SHARE: the writable 9p share of this boot).

Reads SHARE/config.json (written by run-vm.py: the topology, the daemon
binary, the probe), starts a private system bus, and for every scenario:
binds the test devices as the scenario says, records sysfs, runs the steps
through vfio-probe (the kernel's answers), dumps the machine with
`hotresetd --dump-machine`, runs the same steps against `hotresetd --uapi=`
over the bus (the daemon's answers), and writes SHARE/results/NAME.json.
The host compares; nothing is judged here.

The vmm topology instead runs vmm.py's scenarios: the daemon and QEMU 10
nested here as the VMM on the broker's files (results/NAME.json holds every
check; the host reports them as TAP); the udev topology vmudev.py's:
systemd-udevd and one daemon across unbind, remove, rescan and bind.
"""

import json
import os
import subprocess
import sys
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hrvm  # noqa: E402


def start_external(probe, model, address):
    """A process outside both worlds holding address's group open
    (model 'group') or a bound cdev of it (model 'cdev')."""
    ops = ['ctx:ext:cdev', f'open:{address}'] if model == 'cdev' else \
        [f'group-open:{group_of(address)}']
    p = subprocess.Popen([probe] + ops + ['hold'], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         universal_newlines=True)
    lines = []
    while True:
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f'external holder exited: {lines}')
        obj = json.loads(line)
        lines.append(obj)
        if obj['op'] == 'hold':
            break
    return p, lines


def group_of(address):
    return int(os.path.basename(os.readlink(f'/sys/bus/pci/devices/{address}/iommu_group')))


def stop_external(p):
    p.stdin.close()
    p.wait(60)


def run_scenario(sc, topo, cfg, bus, share):
    res = {'scenario': sc.to_json(), 'timings': {}}
    t0 = time.monotonic()
    for addr, drv in sc.drivers.items():
        hrvm.set_driver(addr, drv, topo.devices[addr])
    facts = hrvm.sysfs_facts()
    res['facts'] = facts
    res['timings']['bind'] = round(time.monotonic() - t0, 2)

    # The machine as the daemon sees it, for the emulated replay.
    if cfg['dump_machine']:
        t = time.monotonic()
        path = os.path.join(share, 'results', sc.name + '.machine.json')
        ok, msg = hrvm.dump_machine(cfg['hotresetd'], sc.model, path, bus.env())
        res['dump'] = {'ok': ok, 'message': msg, 'file': os.path.basename(path) if ok else None}
        res['timings']['dump'] = round(time.monotonic() - t, 2)
    else:
        res['dump'] = {'ok': False, 'message': 'hotresetd has no --dump-machine option', 'file': None}

    externals = []
    try:
        for model, addr in sc.external:
            p, lines = start_external(cfg['probe'], model, addr)
            externals.append(p)
            res.setdefault('external', []).append(lines)

        t = time.monotonic()
        k = hrvm.KernelWorld(cfg['probe'], sc.model, facts)
        try:
            res['kernel'] = [k.step(st) for st in sc.steps]
        finally:
            k.close()
            res['probe_transcript'] = k.transcript
        res['timings']['kernel'] = round(time.monotonic() - t, 2)

        t = time.monotonic()
        cmd = [cfg['hotresetd'], f'--uapi={sc.model}', '--log-level=debug']
        res['daemon'] = hrvm.run_daemon_steps(bus, cmd, f'/tmp/hotresetd-{sc.name}.log', sc, list(topo.devices))
        res['timings']['daemon'] = round(time.monotonic() - t, 2)
    finally:
        for p in externals:
            stop_external(p)
    res['timings']['total'] = round(time.monotonic() - t0, 2)
    return res


def main():
    share = sys.argv[1]
    with open(os.path.join(share, 'config.json')) as f:
        cfg = json.load(f)
    topo = hrvm.TOPOLOGIES[cfg['topology']]
    os.environ.update(cfg.get('env', {}))
    os.makedirs(os.path.join(share, 'results'), exist_ok=True)
    hrvm.TIMEOUT_SCALE = float(cfg.get('timeout_scale', 1))

    # A kernel without what the tier needs says so here, not as a hundred
    # differences.
    missing = [p for p in ('/dev/iommu', '/dev/vfio/vfio', '/sys/bus/pci/drivers/vfio-pci',
                           '/sys/bus/pci/drivers/pci-stub') if not os.path.exists(p)]
    if missing:
        print(f'guest: FATAL: this kernel lacks {", ".join(missing)} (IOMMUFD, VFIO_GROUP/CONTAINER, '
              f'VFIO_PCI, PCI_STUB; see tests/vm/kernel.fragment)', flush=True)
        return 3
    if not os.listdir('/sys/kernel/iommu_groups'):
        print('guest: FATAL: no IOMMU groups (intel_iommu=on and -device intel-iommu?)', flush=True)
        return 3

    opts = hrvm.daemon_options(cfg['hotresetd'])
    cfg['dump_machine'] = '--dump-machine' in opts
    info = {'kernel': os.uname().release, 'daemon_options': sorted(opts), 'scenarios': []}
    print(f'guest: kernel {info["kernel"]}, topology {topo.name}, hotresetd options {sorted(opts)}', flush=True)

    bus = hrvm.Bus('/tmp')
    bus.start()
    if topo.kind in ('vmm', 'udev'):
        # A nested QEMU 10 on the broker's files (vmm.py), or udevd and one
        # daemon across sysfs changes (vmudev.py): not a comparison.
        mod = __import__({'vmm': 'vmm', 'udev': 'vmudev'}[topo.kind])
        try:
            info['scenarios'] = mod.guest_main(cfg, topo, bus, share, cfg.get('only'))
        finally:
            bus.stop()
        with open(os.path.join(share, 'results', 'index.json'), 'w') as f:
            json.dump(info, f, indent=1)
        return 0
    try:
        for sc in topo.scenarios:
            if cfg.get('only') and sc.name not in cfg['only']:
                continue
            print(f'guest: scenario {sc.name}', flush=True)
            try:
                res = run_scenario(sc, topo, cfg, bus, share)
            except Exception:
                res = {'scenario': sc.to_json(), 'guest_error': traceback.format_exc()}
                print(res['guest_error'], flush=True)
            with open(os.path.join(share, 'results', sc.name + '.json'), 'w') as f:
                json.dump(res, f, indent=1)
            info['scenarios'].append(sc.name)
            print(f'guest: scenario {sc.name} done {res.get("timings")}', flush=True)
    finally:
        bus.stop()
    with open(os.path.join(share, 'results', 'index.json'), 'w') as f:
        json.dump(info, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())

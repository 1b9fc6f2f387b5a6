#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""One test of the VM tier: boots one QEMU topology and holds the daemon
against the real kernel there.

  run-vm.py TOPOLOGY [--only SCENARIO,...] [--list]

1. Finds QEMU and a kernel (HOTRESETD_VM_KERNEL, else tools/vm-kernel.sh
   builds or reuses the project's own). Exits 77 (meson: SKIP) only when
   qemu-system-x86_64 is missing or no kernel is available and none can be
   built, saying why.
2. Boots the kernel under QEMU (TCG, q35, intel-iommu) with the host's root
   as the guest's read-only root (virtio-9p) and a writable share; the guest
   (guest-init.sh, guest.py) runs every scenario of the topology and writes
   the kernel's answers (vfio-probe), the real daemon's answers (busctl) and
   the machine the daemon dumps (--dump-machine).
3. Compares, for every scenario: (1) the daemon on the real kernel against
   the kernel's own answers, and (2) the daemon on the emulated kernel,
   replaying the dumped machine here on the host (--emulate=), against the
   daemon on the real kernel. A difference fails the test and prints both
   sides, the daemon's log, the guest's log and the kernel console.

Environment: HOTRESETD_BIN (the daemon), HOTRESETD_VFIO_PROBE (vfio-probe),
HOTRESETD_SOURCE_ROOT, HOTRESETD_VM_KERNEL (a bzImage), HOTRESETD_TEST_TIMEOUT
(multiplies timeouts), HOTRESETD_VM_KEEP=1 (keep the temporary directory),
HOTRESETD_VM_QEMU (the QEMU binary, default qemu-system-x86_64).
"""

import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import hrvm  # noqa: E402

SKIP = 77
SOURCE_ROOT = os.environ.get('HOTRESETD_SOURCE_ROOT') or os.path.dirname(os.path.dirname(HERE))
GUEST_PYTHON = '/usr/bin/python3'
BOOT_TIMEOUT = 900  # seconds for one boot and all its scenarios (TCG), times HOTRESETD_TEST_TIMEOUT


# The vmm and udev topologies' output is TAP (one line per scenario; meson runs it
# with protocol 'tap'): everything else is a comment then, a skip is a plan
# of 0 with SKIP (exit 0) and an early failure a "Bail out!".
TAP = False


def say(*args):
    text = ' '.join(str(a) for a in args)
    if TAP:
        text = '\n'.join('# ' + line for line in text.split('\n'))
    print(text, flush=True)


def skip(why):
    if TAP:
        print(f'1..0 # SKIP {why}', flush=True)
        sys.exit(0)
    say(f'SKIP: {why}')
    sys.exit(SKIP)


def fail(why):
    if TAP:
        print(f'Bail out! {why}', flush=True)
        sys.exit(1)
    say(f'FAIL: {why}')
    sys.exit(1)


def find_kernel():
    k = os.environ.get('HOTRESETD_VM_KERNEL')
    if k:
        if not os.path.isfile(k):
            fail(f'HOTRESETD_VM_KERNEL={k} is not a file')
        return k, f'HOTRESETD_VM_KERNEL={k}'
    script = os.path.join(SOURCE_ROOT, 'tools', 'vm-kernel.sh')
    say(f'No HOTRESETD_VM_KERNEL: {script} builds the test kernel (or reuses its cached build).')
    p = subprocess.run(['bash', script], stdout=subprocess.PIPE, universal_newlines=True, stdin=subprocess.DEVNULL)
    if p.returncode == SKIP:
        skip('no test kernel: HOTRESETD_VM_KERNEL is not set and tools/vm-kernel.sh cannot build one here '
             '(its message is above)')
    if p.returncode != 0:
        fail(f'tools/vm-kernel.sh failed (exit status {p.returncode}); its output is above')
    path = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ''
    if not os.path.isfile(path):
        fail(f'tools/vm-kernel.sh printed {path!r}, which is not a file')
    return path, f'{path} (tools/vm-kernel.sh)'


def find_qemu10():
    """QEMU 10 for the vmm topology: tools/qemu10.sh fetches Debian's
    bookworm-backports build with a private apt configuration and unpacks it
    into a cache (or finds it there). Fails the test when it cannot, unless
    QEMU 10 truly cannot be had on this machine (exit 77: not amd64, not a
    Debian system), which skips it; either way it says why."""
    script = os.path.join(SOURCE_ROOT, 'tools', 'qemu10.sh')
    t0 = time.monotonic()
    p = subprocess.run(['bash', script], stdout=subprocess.PIPE, universal_newlines=True, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - t0
    if p.returncode == SKIP:
        skip('QEMU 10 cannot be had on this machine (tools/qemu10.sh says why on stderr)')
    if p.returncode != 0:
        fail(f'tools/qemu10.sh could not fetch QEMU 10 (exit status {p.returncode}); its output (stderr) says why')
    path = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ''
    if not os.path.isfile(os.path.join(path, 'usr/bin/qemu-system-x86_64')):
        fail(f'tools/qemu10.sh printed {path!r}, which holds no usr/bin/qemu-system-x86_64')
    return path, seconds


QEMU10 = None  # the vmm topology's QEMU 10 tree (find_qemu10)
DEB = None  # the systemd topology's hotresetd .deb (find_deb)


def find_deb():
    """The Debian package vm-systemd installs in the guest:
    $HOTRESETD_DEB when set (tools/run-tests.sh builds it first, the one CI
    checks with lintian), else tools/build-deb.sh builds it from this tree
    into BUILD/vm-deb (about 20 s). Fails the test when it cannot."""
    deb = os.environ.get('HOTRESETD_DEB')
    if deb:
        if not os.path.isfile(deb):
            fail(f'HOTRESETD_DEB={deb} is not a file')
        return os.path.realpath(deb), 0.0
    out = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(os.environ['HOTRESETD_BIN']))), 'vm-deb')
    t0 = time.monotonic()
    p = subprocess.run(['bash', os.path.join(SOURCE_ROOT, 'tools', 'build-deb.sh'), out], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        say(p.stdout[-6000:])
        fail(f'tools/build-deb.sh failed (exit status {p.returncode}); its output is above')
    debs = [line.split(': ', 1)[1] for line in p.stdout.splitlines() if line.startswith('build-deb: /')]
    if not debs or not os.path.isfile(debs[-1]):
        fail(f'tools/build-deb.sh named no package: {p.stdout[-2000:]}')
    return debs[-1], time.monotonic() - t0


def kept_paths():
    """The tree under test and the build directory, where they sit below
    /tmp: the guest mounts its own /tmp and binds these back (guest-init.sh)."""
    paths = {os.path.realpath(SOURCE_ROOT), os.path.realpath(HERE)}
    for var in ('HOTRESETD_BIN', 'HOTRESETD_VFIO_PROBE', 'HOTRESETCTL_BIN'):
        if os.environ.get(var):
            paths.add(os.path.dirname(os.path.realpath(os.environ[var])))
    if QEMU10:
        paths.add(os.path.realpath(QEMU10))
    return sorted(p for p in paths if p.startswith('/tmp/'))


def qemu_command(qemu, kernel, topo, share, console):
    if topo.kind == 'systemd':
        # sd-init.sh: an overlay (tmpfs upper) on the 9p root, then
        # systemd as PID 1 booting hrvm.target, whose test service runs
        # sdguest.py. /tmp in the overlay is the host's: nothing to keep.
        init = os.path.join(HERE, 'sd-init.sh')
        # no_timer_check: once, under load, the kernel panicked early with
        # "timer doesn't work through Interrupt-remapped IO-APIC" (TCG
        # too slow for the check), a boot lost before systemd.
        extra = ['systemd.unit=hrvm.target', f'hrvm.script={os.path.join(HERE, "sdguest.py")}', 'no_timer_check']
        memory = '1536M'
    else:
        init = os.path.join(HERE, 'guest-init.sh')
        extra = [f'hrvm.keep={",".join(kept_paths())}'] if kept_paths() else []
        memory = '1G'
    append = ' '.join([
        'console=ttyS0', 'intel_iommu=on', 'panic=-1', 'root=hostroot', 'rootfstype=9p',
        'rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose', 'ro', f'init={init}',
        'hrvm.tag=hrvm', f'hrvm.python={GUEST_PYTHON}',
    ] + extra)
    return [
        qemu, '-machine', 'q35', '-accel', 'tcg', '-cpu', 'max', '-m', memory, '-smp', '2',
        '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none',
        '-serial', f'file:{console}', '-no-reboot',
        '-kernel', kernel, '-append', append,
        '-device', 'intel-iommu',
        '-fsdev', 'local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap',
        '-device', 'virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot,bus=pcie.0,addr=0x10',
        '-fsdev', f'local,id=hrvm,path={share},security_model=none,multidevs=remap',
        '-device', 'virtio-9p-pci,fsdev=hrvm,mount_tag=hrvm,bus=pcie.0,addr=0x11',
    ] + topo.qemu_args + ['-net', 'none']


def read(path):
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except OSError:
        return ''


def boot(qemu, kernel, topo, tmp, only):
    share = os.path.join(tmp, 'share')
    os.makedirs(share)
    os.chmod(tmp, 0o755)
    console = os.path.join(tmp, 'console.log')
    cfg = {
        'topology': topo.name,
        'hotresetd': os.path.abspath(os.environ['HOTRESETD_BIN']),
        'probe': os.path.abspath(os.environ['HOTRESETD_VFIO_PROBE']),
        'timeout_scale': hrvm.TIMEOUT_SCALE,
        'only': only,
        # The sanitizers' settings of this run, for an ASan build in the guest.
        'env': {k: v for k, v in os.environ.items() if k in ('ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS')},
    }
    if topo.kind == 'systemd':
        cfg['deb'] = DEB
    if topo.kind == 'vmm':
        cfg['qemu10'] = QEMU10
        cfg['hotresetctl'] = os.path.abspath(os.environ['HOTRESETCTL_BIN'])
    with open(os.path.join(share, 'config.json'), 'w') as f:
        json.dump(cfg, f, indent=1)
    cmd = qemu_command(qemu, kernel, topo, share, console)
    say('$ ' + ' '.join(cmd))
    qlog = open(os.path.join(tmp, 'qemu.log'), 'w')
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qlog, stderr=qlog)
    qlog.close()
    timeout = BOOT_TIMEOUT * hrvm.TIMEOUT_SCALE
    try:
        p.wait(timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        timed_out = True
    seconds = time.monotonic() - t0
    return share, console, seconds, timed_out, p.returncode


def print_problem(pr):
    say(f'  - {pr["where"]}: {pr["what"]}')
    for side in ('kernel', 'daemon', 'real', 'emulated'):
        if side in pr:
            text = json.dumps(pr[side], sort_keys=True)
            if len(text) > 3000:
                text = text[:3000] + '…'
            say(f'      {side:8}: {text}')


def replay(sc, res, share, tmp, bus):
    """The daemon on the emulated kernel, on the machine the guest dumped
    (as it is: the dump of --uapi=group says "cdev": false, which makes the
    emulated kernel offer only the legacy group API)."""
    path = os.path.join(share, 'results', res['dump']['file'])
    cmd = [os.environ['HOTRESETD_BIN'], f'--emulate={path}', '--log-level=debug']
    return hrvm.run_daemon_steps(bus, cmd, os.path.join(tmp, sc.name + '.emulated.log'), sc,
                                 [a for a in res['scenario']['drivers']])


def judge(topo, share, tmp):
    """Returns (list of (scenario, problems, notes)) for every scenario."""
    out = []
    bus = None
    try:
        for sc in topo.scenarios:
            rpath = os.path.join(share, 'results', sc.name + '.json')
            if not os.path.exists(rpath):
                out.append((sc, [{'where': 'guest', 'what': 'no results (the guest did not run it)'}], [], None))
                continue
            with open(rpath) as f:
                res = json.load(f)
            problems, notes = [], []
            if 'guest_error' in res:
                problems.append({'where': 'guest', 'what': res['guest_error']})
                out.append((sc, problems, notes, res))
                continue
            d = res['daemon']
            if 'start_error' in d or 'run_error' in d:
                problems.append({'where': 'daemon on the real kernel',
                                 'what': d.get('start_error') or d.get('run_error')})
            else:
                if d.get('exit_status') != 0:
                    problems.append({'where': 'daemon on the real kernel',
                                     'what': f'did not exit 0 on SIGTERM ({d.get("exit_status")})'})
                c = hrvm.Comparison(res['facts'])
                c.compare_snapshot(d['snapshot'], sc.model)
                for i, st in enumerate(sc.steps):
                    c.compare_step(i, st, res['kernel'][i], d['answers'][i], sc.model, sc.external)
                problems += c.problems
            san = hrvm.sanitizer_reports(d.get('log', ''))
            if san:
                problems.append({'where': 'daemon log (guest)', 'what': 'sanitizer reports: ' + ', '.join(san)})

            if not sc.replay:
                notes.append(f'not replayed on the emulated kernel: {sc.why_no_replay}')
            elif not res['dump']['ok']:
                problems.append({'where': 'hotresetd --dump-machine', 'what': res['dump']['message']})
            elif 'answers' in d:
                if bus is None:
                    bus = hrvm.Bus(tmp)
                    bus.start()
                emu = replay(sc, res, share, tmp, bus)
                res['emulated'] = emu
                if 'start_error' in emu or 'run_error' in emu:
                    problems.append({'where': 'daemon on the emulated kernel',
                                     'what': emu.get('start_error') or emu.get('run_error')})
                else:
                    problems += hrvm.compare_replay(sc, d, emu)
                    if emu.get('exit_status') != 0:
                        problems.append({'where': 'daemon on the emulated kernel',
                                         'what': f'did not exit 0 on SIGTERM ({emu.get("exit_status")})'})
                san = hrvm.sanitizer_reports(emu.get('log', ''))
                if san:
                    problems.append({'where': 'daemon log (emulated)', 'what': 'sanitizer reports: ' + ', '.join(san)})
            out.append((sc, problems, notes, res))
    finally:
        if bus:
            bus.stop()
    return out


def main(argv):
    if len(argv) < 2 or argv[1] in ('-h', '--help'):
        say(__doc__)
        say('Topologies: ' + ', '.join(hrvm.TOPOLOGIES))
        return 0 if len(argv) >= 2 else 2
    name = argv[1]
    if name not in hrvm.TOPOLOGIES:
        fail(f'unknown topology {name!r} (known: {", ".join(hrvm.TOPOLOGIES)})')
    topo = hrvm.TOPOLOGIES[name]
    only = None
    if '--list' in argv:
        for sc in topo.scenarios:
            if topo.kind in ('vmm', 'udev', 'systemd'):
                pending = f' [pending: {sc.pending.reason}]' if sc.pending else ''
                say(f'{sc.name}: {sc.model}, {sc.title}{pending}')
            else:
                say(f'{sc.name}: {sc.model}, drivers {sc.drivers}, {len(sc.steps)} steps')
        return 0
    if '--only' in argv:
        only = argv[argv.index('--only') + 1].split(',')
    if topo.kind in ('vmm', 'udev', 'systemd'):
        global TAP
        TAP = True

    say(f'VM tier, topology {topo.name}: {topo.description}')
    if os.geteuid() != 0:
        skip('the VM tier runs as root (the guest runs the host\'s binaries as root, and the emulated '
             'replay calls root-only methods); CI runs as root')
    qemu = os.environ.get('HOTRESETD_VM_QEMU') or shutil.which('qemu-system-x86_64')
    if not qemu:
        skip('qemu-system-x86_64 is not installed (Debian: apt-get install qemu-system-x86)')
    for tool in ('dbus-daemon', 'busctl'):
        if not shutil.which(tool):
            fail(f'{tool} is not installed')
    if not os.access(GUEST_PYTHON, os.X_OK):
        fail(f'{GUEST_PYTHON} is missing: the guest runs the host\'s Debian python3')
    if topo.kind == 'udev':
        # The guest runs the host's udevd and python3-gi (tools/deps.sh).
        if not os.access('/lib/systemd/systemd-udevd', os.X_OK) or not shutil.which('udevadm'):
            fail('/lib/systemd/systemd-udevd or udevadm is missing (Debian: apt-get install udev)')
        if subprocess.run([GUEST_PYTHON, '-c', 'import gi.repository.GLib, dbus.mainloop.glib'],
                          capture_output=True).returncode != 0:
            fail(f'{GUEST_PYTHON} cannot import gi and dbus.mainloop.glib (Debian: python3-gi, python3-dbus)')
    for var in ('HOTRESETD_BIN', 'HOTRESETD_VFIO_PROBE') + (('HOTRESETCTL_BIN',) if topo.kind == 'vmm' else ()):
        if not os.environ.get(var):
            fail(f'{var} is not set (run the tests with `meson test --suite vm`)')
    if not os.access(os.path.join(HERE, 'guest-init.sh'), os.X_OK):
        fail(f'{HERE}/guest-init.sh is not executable: the guest kernel runs it as init')
    # The guest sees the host's root, but with its own tmpfs on /tmp and /run.
    for what, path in (('HOTRESETD_BIN', os.environ['HOTRESETD_BIN']),
                       ('HOTRESETD_VFIO_PROBE', os.environ['HOTRESETD_VFIO_PROBE']), ('the source tree', HERE)):
        real = os.path.realpath(path)
        # /tmp is bound back into the guest (kept_paths); the others are not.
        if real.split('/')[1] in ('run', 'proc', 'sys', 'dev'):
            fail(f'{what} is {real}: the guest mounts its own /{real.split("/")[1]}, so it cannot see it; '
                 f'use a build directory elsewhere')
    opts = hrvm.daemon_options(os.environ['HOTRESETD_BIN'])
    for opt in ('--uapi', '--dump-machine', '--emulate'):
        if opt not in opts:
            fail(f'{os.environ["HOTRESETD_BIN"]} --help lists no {opt}: the tier needs the Linux backend '
                 f'(--uapi), --dump-machine and the emulated kernel (--emulate)')
    kernel, kernel_desc = find_kernel()
    say(f'kernel: {kernel_desc}')
    say(f'qemu: {qemu}; accelerator: TCG (no KVM)')
    if topo.kind == 'systemd':
        # The guest is the host's root with systemd as PID 1: the host must
        # have what it runs (tools/deps.sh installs them).
        for path, pkg in (('/lib/systemd/systemd', 'systemd'), ('/lib/systemd/systemd-machined', 'systemd-container'),
                          ('/usr/lib/polkit-1/polkitd', 'polkitd'), ('/usr/bin/pkcheck', 'polkitd'),
                          ('/usr/bin/setpriv', 'util-linux'), ('/usr/sbin/switch_root', 'util-linux'),
                          ('/usr/sbin/useradd', 'passwd'), ('/lib/systemd/systemd-udevd', 'udev')):
            if not os.access(path, os.X_OK):
                fail(f'{path} is missing (Debian: apt-get install {pkg}; tools/deps.sh)')
        global DEB
        DEB, deb_s = find_deb()
        say(f'package: {DEB} ({deb_s:.1f} s)')
    if topo.kind == 'vmm':
        global QEMU10
        QEMU10, fetch_s = find_qemu10()
        say(f'nested VMM: {QEMU10}/usr/bin/qemu-system-x86_64 (tools/qemu10.sh, {fetch_s:.1f} s)')

    tmp = hrvm.tempdir(f'hrvm-{topo.name}-')
    share, console, seconds, timed_out, rc = boot(qemu, kernel, topo, tmp, only)
    status = read(os.path.join(share, 'status')).strip()
    # QEMU 7.2's TCG has been seen to die by SIGSEGV on the host in the
    # middle of a run that was going fine (the guest's console just stops).
    # That is the emulator's crash, not an answer of the kernel or the
    # daemon: boot once more, from scratch, and say so. A second crash, or
    # any guest failure, fails the test as usual.
    if rc is not None and rc < 0 and not timed_out and not status:
        say(f'boot: QEMU itself died by signal {-rc} after {seconds:.1f} s before the guest finished; '
            f'kernel console up to then:')
        say(read(console)[-4000:])
        say('boot: booting once more')
        if not os.environ.get('HOTRESETD_VM_KEEP'):
            hrvm.rmtree(tmp)
        tmp = hrvm.tempdir(f'hrvm-{topo.name}-retry-')
        share, console, seconds, timed_out, rc = boot(qemu, kernel, topo, tmp, only)
        status = read(os.path.join(share, 'status')).strip()
    guest_log = read(os.path.join(share, 'guest.log'))
    say(f'boot: QEMU exited {rc} after {seconds:.1f} s; guest status {status or "(none)"}')

    if topo.kind in ('vmm', 'udev', 'systemd'):
        return report_vmm(topo, share, tmp, console, guest_log, seconds, timed_out, status, rc, only)

    failed = False
    if timed_out:
        say(f'FAIL: the guest did not power off within {BOOT_TIMEOUT * hrvm.TIMEOUT_SCALE:.0f} s')
        failed = True
    elif status != '0':
        say(f'FAIL: the guest did not finish its run (status {status or "missing"})')
        failed = True

    results = judge(topo, share, tmp)
    if only:
        results = [r for r in results if r[0].name in only]
    n_ok = 0
    say('')
    for sc, problems, notes, res in results:
        t = (res or {}).get('timings', {})
        emu_s = (res or {}).get('emulated', {}).get('seconds')
        timing = ', '.join(f'{k} {v:.1f}s' for k, v in t.items()) + (f', emulated replay {emu_s:.1f}s' if emu_s else '')
        verdict = 'ok' if not problems else 'DIFFERS'
        if not problems:
            n_ok += 1
        checked = 'kernel == daemon' + ('' if not sc.replay else ' == emulated(dump)')
        say(f'{verdict:7} {sc.name} [{sc.model}] {len(sc.steps)} steps, {checked} ({timing})')
        for n in notes:
            say(f'        note: {n}')
        for pr in problems:
            print_problem(pr)
        if problems and res:
            d = res.get('daemon', {})
            say(f'  ----- hotresetd log in the guest ({" ".join(d.get("command", []))}) -----')
            say((d.get('log') or '(none)').rstrip()[-20000:])
            if res.get('emulated'):
                say(f'  ----- hotresetd log on the emulated kernel -----')
                say((res['emulated'].get('log') or '(none)').rstrip()[-20000:])
            say('  ----- vfio-probe transcript -----')
            for op, line in res.get('probe_transcript', []):
                say(f'    {op:28} {json.dumps(line)}')
            if res.get('dump', {}).get('file'):
                say('  ----- dumped machine -----')
                say(read(os.path.join(share, 'results', res['dump']['file'])).rstrip())
        failed = failed or bool(problems)
    say('')
    say(f'topology {topo.name}: {n_ok} of {len(results)} scenarios agree; boot and run {seconds:.1f} s; '
        f'hotresetd options: {" ".join(sorted(o for o in opts if o in ("--uapi", "--dump-machine", "--emulate")))}')

    if failed:
        say('----- guest log -----')
        say(guest_log.rstrip())
        say('----- kernel console -----')
        say(read(console).rstrip())
        say('----- qemu -----')
        say(read(os.path.join(tmp, 'qemu.log')).rstrip())
    if os.environ.get('HOTRESETD_VM_KEEP'):
        say(f'keeping {tmp}')
    else:
        hrvm.rmtree(tmp)
    return 1 if failed else 0


def report_vmm(topo, share, tmp, console, guest_log, seconds, timed_out, status, rc, only):
    """TAP: the plan, one line per scenario (vmm.report), the logs on a failure."""
    import vmm
    n = len([sc for sc in topo.scenarios if not only or sc.name in only])
    print(f'1..{n}', flush=True)
    failed = False
    if timed_out:
        say(f'FAIL: the guest did not power off within {BOOT_TIMEOUT * hrvm.TIMEOUT_SCALE:.0f} s')
        failed = True
    elif status != '0':
        say(f'FAIL: the guest did not finish its run (status {status or "missing"})')
        failed = True
    boot_txt = read(os.path.join(share, 'boot.txt')).strip()
    if boot_txt:
        say(f'guest boot (systemd-analyze time): {boot_txt}')
    failures = vmm.report(topo, share, lambda line: print(line, flush=True), only)
    say(f'topology {topo.name}: boot and run {seconds:.1f} s; {failures} failures')
    if failed or failures:
        say('----- guest log -----')
        say(guest_log.rstrip())
        say('----- kernel console -----')
        say(read(console).rstrip()[-20000:])
        say('----- qemu -----')
        say(read(os.path.join(tmp, 'qemu.log')).rstrip())
    if os.environ.get('HOTRESETD_VM_KEEP'):
        say(f'keeping {tmp}')
    else:
        hrvm.rmtree(tmp)
    return 1 if failed or failures else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))

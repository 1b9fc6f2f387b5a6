#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Benchmarks of the running daemon, written to BENCHMARKS.md.

For each machine size (64, 1024, 4096 and 16384 PCI functions; --quick: 64
and 1024 with fewer iterations) it generates a server-like machine
(gen-machine.py), starts a private system bus (a system-type dbus-daemon
configuration, deny by default, with the project's bus policy
dbus/org.hotresetd.Broker1.conf and the default limits) and
`hotresetd --emulate=MACHINE`, and measures with hotresetd-load:

  - start-up: from the daemon's process start to its bus name appearing;
  - RSS (/proc/PID/status VmRSS) after start-up and after the calls below;
  - latency, p50 and p99, of Ping, CheckHotReset (a one-function scope and
    a 256-function scope), Get of Affected, GetDevice, GetHotResetInfo,
    ListDevices and GetManagedObjects (and its reply size), each call
    interleaved with a Ping: figures are ratios to the Ping p50 of the same
    run, so they mean the same on a fast and on a noisy machine;
  - throughput of CheckHotReset with 1, 8 and 64 connections, pipelined,
    against Ping throughput measured the same way;
  - lease cycles (CreateContext, AttachDevice, Release) while another
    connection pings every 1-2 ms: cost per cycle, longest Ping wait;
  - at 1024 and 16384 (--quick: 1024), a burst: 1024 VFs hotplugged by
    renaming a new machine file over the watched one, then removed: time to
    the last InterfacesAdded/InterfacesRemoved, longest Ping gap, RSS;
  - at 64, 20,000 lease cycles (--quick: 2,000): RSS and open fds before and
    after;
  - at 64, 1024 and 16384 (--quick: 1024 only; never a size left out by
    --sizes), under callgrind, the daemon's instructions per call of each
    kind (counters zeroed before a batch of calls, dumped after, divided by
    the number of calls); the lease cycle's at 16384 against 64 is the
    load-independent reading of the lease-cycle target. Callgrind runs the
    daemon some 50 times slower, so ListDevices and GetManagedObjects,
    whose replies are the whole machine, are left out above 4096.

It never fails because of a figure (these are benchmarks: a missed target
is reported as such); calls that take too long are cut short by time
budgets and reported as "failed: <reason>". It exits 1 when the daemon
crashes or a call returns an error, after writing the report.

Usage (as root: the private bus, /proc of the daemon, callgrind_control):

    meson test -C build --benchmark --suite bench bench-daemon [--test-args=--quick]
    HOTRESETD_BIN=build/daemon/hotresetd HOTRESETD_LOAD=build/tests/bench/hotresetd-load \
        tests/bench/run-bench.py [--quick] [--sizes=64,1024] [--output=FILE] [--no-callgrind] [--keep]

Environment: HOTRESETD_BIN (the daemon), HOTRESETD_LOAD (hotresetd-load),
HOTRESETD_SOURCE_ROOT (the source tree; default: two levels up), both
binaries defaulting to build/ in the source tree. Python 3 standard library
only.
"""

import argparse
import datetime
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get('HOTRESETD_SOURCE_ROOT') or os.path.dirname(os.path.dirname(HERE))
BUS_NAME = 'org.hotresetd.Broker1'

SIZES_FULL = [64, 1024, 4096, 16384]
SIZES_QUICK = [64, 1024]


def log(*args):
    print('run-bench:', *args, file=sys.stderr, flush=True)


def binary(env_name, default):
    path = os.environ.get(env_name) or os.path.join(SOURCE_ROOT, default)
    if not os.access(path, os.X_OK):
        sys.exit(f'run-bench: {path} is not an executable (set {env_name}, or build with meson compile -C build)')
    return path


class Params:
    """How much to do, full or --quick."""

    def __init__(self, quick):
        self.quick = quick
        self.sizes = SIZES_QUICK if quick else SIZES_FULL
        self.latency_count = 300 if quick else 2000
        self.managed_objects_count = 5 if quick else 20
        self.latency_seconds = 30 if quick else 90      # per kind: stop early, keep what was measured
        self.throughput_count = 3000 if quick else 20000
        self.throughput_rounds = 3
        self.lease_cycles = 200 if quick else 1000
        self.lease_seconds = 20 if quick else 90
        self.burst_sizes = [1024] if quick else [1024, 16384]
        self.burst_seconds = 60 if quick else 120       # per phase
        self.leak_size = 64
        self.leak_cycles = 2000 if quick else 20000
        self.leak_seconds = 300 if quick else 1500      # whole step: the process is killed after
        self.callgrind_sizes = [1024] if quick else [64, 1024, 16384]
        self.callgrind_count = 30 if quick else 200
        self.split_count = 4000 if quick else 20000       # CPU split: calls per kind,
        self.split_rounds = 4 if quick else 5             # in rounds alternating the kinds
        # GetManagedObjects costs 10^8 instructions at 1024 functions: a few
        # are enough. A lease cycle costs some 3.5 * 10^5, but varies by a
        # tenth from cycle to cycle (deferred work lands in one or the next).
        self.callgrind_heavy_count = 2 if quick else 5
        self.callgrind_lease_count = 10 if quick else 50
        self.call_timeout = 30                          # one D-Bus call
        self.start_timeout = 300                        # the daemon owning its name


class StepFailed(Exception):
    """A measurement that did not complete. fatal: the daemon crashed or a
    call returned an error (the run then exits 1); otherwise it was too
    slow, which is a result."""

    def __init__(self, reason, fatal=False, detail=None):
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal
        self.detail = detail    # shown under Failures only (a log tail)


# ---------------------------------------------------------------------------
# The private bus and the daemon

# The integration tests' private system bus: deny by default, like Debian's
# /usr/share/dbus-1/system.conf, with the project's own bus policy.
sys.path.insert(0, os.path.join(SOURCE_ROOT, 'tests', 'integration'))
import harness  # noqa: E402


class Bus(harness.TestBus):
    def __init__(self, tmpdir):
        super().__init__(tmpdir, **harness.system_bus_kwargs())

    def start(self):
        try:
            return super().start()
        except RuntimeError as e:
            raise StepFailed(str(e), fatal=True)


def stop_process(proc, sig=signal.SIGTERM, timeout=20):
    """Stops proc (one we started); returns its exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def read_text(path, tail=None):
    try:
        with open(path, errors='replace') as f:
            text = f.read()
    except OSError:
        return ''
    if tail:
        text = '\n'.join(text.splitlines()[-tail:])
    return text


def describe_exit(rc):
    if rc is None:
        return 'still running'
    if rc < 0:
        try:
            return f'killed by {signal.Signals(-rc).name}'
        except ValueError:
            return f'killed by signal {-rc}'
    return f'exit status {rc}'


class Session:
    """One bus and one daemon on one machine file (optionally under
    callgrind), and hotresetd-load against them."""

    def __init__(self, runner, tmpdir, machine_path, callgrind=False):
        self.runner = runner
        self.tmpdir = tmpdir
        self.machine_path = machine_path
        self.callgrind = callgrind
        self.bus = Bus(tmpdir)
        self.proc = None
        self.log_path = os.path.join(tmpdir, 'hotresetd.log')
        self.config_path = os.path.join(tmpdir, 'hotresetd.conf')
        self.callgrind_out = os.path.join(tmpdir, 'callgrind.out')
        self.crashed = None
        self.crash_detail = None

    def env(self):
        env = dict(os.environ)
        env['DBUS_SYSTEM_BUS_ADDRESS'] = self.bus.address
        for k in ('DBUS_SESSION_BUS_ADDRESS', 'NOTIFY_SOCKET'):
            env.pop(k, None)
        return env

    def start(self):
        """Starts the bus and the daemon; returns the start-up time in
        seconds (process start to the name on the bus)."""
        self.bus.start()
        # An empty policy file: the machine's /etc/hotresetd stays out.
        open(self.config_path, 'w').close()
        cmd = [self.runner.daemon_bin, '--emulate=' + self.machine_path, '--config=' + self.config_path]
        if self.callgrind:
            cmd = ['valgrind', '--tool=callgrind', '--callgrind-out-file=' + self.callgrind_out,
                   '--dump-instr=no', '--dump-line=' + os.environ.get('HOTRESETD_BENCH_DUMP_LINE', 'no')] + cmd
        # The watcher subscribes to NameOwnerChanged before the daemon starts.
        watcher = subprocess.Popen([self.runner.load_bin, 'wait-name', f'--max-seconds={self.runner.p.start_timeout}'],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                   env=self.env())
        try:
            first = json.loads(read_line(watcher.stdout, 30) or '{}')
            if first.get('state') != 'listening':
                raise StepFailed('hotresetd-load wait-name did not start: '
                                 + watcher.stderr.read().decode(errors='replace'), fatal=True)
            with open(self.log_path, 'w') as logf:
                t0 = time.monotonic_ns()    # CLOCK_MONOTONIC, as hotresetd-load's clock
                self.proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                             env=self.env())
            line = read_line(watcher.stdout, self.runner.p.start_timeout + 5, self.proc)
            if not line:
                self.check_alive('start-up')
                raise StepFailed(f'the daemon did not own {BUS_NAME} within {self.runner.p.start_timeout} s')
            msg = json.loads(line)
            if msg.get('state') != 'appeared':
                self.check_alive('start-up')
                raise StepFailed('start-up: ' + msg.get('error', line))
            return (msg['monotonic_ns'] - t0) / 1e9
        finally:
            stop_process(watcher)
            watcher.stdout.close()
            watcher.stderr.close()

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self, step):
        if self.proc is not None and self.proc.poll() is not None:
            self.crashed = f'the daemon exited during {step} ({describe_exit(self.proc.returncode)})'
            self.crash_detail = read_text(self.log_path, tail=5)
            raise StepFailed(self.crashed, fatal=True, detail=self.crash_detail)

    def cpu_ticks(self):
        return proc_cpu_ticks(self.pid)

    def quiesce(self, window=0.1, max_wait=120):
        """Until the daemon used no CPU (at most one clock tick) for a
        window: work deferred by the last step (signals, publishing) must
        not be counted in the next one."""
        deadline = time.monotonic() + max_wait
        try:
            last = self.cpu_ticks()
            while time.monotonic() < deadline:
                time.sleep(window)
                now = self.cpu_ticks()
                if now - last <= 1:
                    return
                last = now
        except (OSError, IndexError, ValueError):
            pass    # gone: the next step finds out

    def rss_kib(self):
        try:
            with open(f'/proc/{self.pid}/status') as f:
                for line in f:
                    if line.startswith('VmRSS:'):
                        return int(line.split()[1])
        except OSError:
            pass    # gone: the next step finds out
        return None

    def load(self, step, args, timeout):
        """Runs hotresetd-load ARGS; returns its JSON lines (a list)."""
        cmd = [self.runner.load_bin] + [str(a) for a in args] + [f'--timeout={self.runner.p.call_timeout}']
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               env=self.env(), timeout=timeout)
        except subprocess.TimeoutExpired:
            self.check_alive(step)
            raise StepFailed(f'no result within {timeout:.0f} s')
        lines = []
        for raw in p.stdout.decode(errors='replace').splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                pass
        if p.returncode == 0 and lines:
            return lines
        err = next((m for m in lines if 'error' in m), None)
        if err and err.get('error_kind') == 'no-reply':
            # The bus says the daemon went away: give it the time to exit,
            # so a crash is reported as one.
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.check_alive(step)
        if err is None:
            raise StepFailed(f'hotresetd-load exited with {describe_exit(p.returncode)}: '
                             + p.stderr.decode(errors='replace').strip()[-500:], fatal=True)
        kind = err.get('error_kind')
        # An error answer, or a broken load generator, is fatal; an answer
        # that did not come in time is a (bad) result, and so is the
        # daemon's documented refusal of a reply too large to send
        # (LimitsExceeded, GetManagedObjects on huge machines).
        refused = 'LimitsExceeded' in err['error']
        raise StepFailed(f'{"refused" if refused else kind}: {err["error"]}',
                         fatal=kind not in ('timeout', 'no-reply') and not refused)

    def stop(self):
        rc = None
        if self.proc is not None:
            was_running = self.proc.poll() is None
            rc = stop_process(self.proc, timeout=60 if self.callgrind else 20)
            if self.crashed:
                pass
            elif not was_running:
                # It only exits when told to (or when the bus drops it).
                self.crashed = f'the daemon exited by itself ({describe_exit(rc)})'
                self.crash_detail = read_text(self.log_path, tail=5)
            elif rc != 0:
                self.crashed = f'the daemon did not exit cleanly on SIGTERM ({describe_exit(rc)})'
        self.bus.stop()
        return rc


def proc_cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])


def read_line(pipe, timeout, proc=None):
    """One line from pipe within timeout (b'' when none); stops early when
    proc exits."""
    deadline = time.monotonic() + timeout
    buf = b''
    fd = pipe.fileno()
    while not buf.endswith(b'\n'):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        r, _, _ = select.select([fd], [], [], min(remaining, 0.5))
        if r:
            chunk = os.read(fd, 1)
            if not chunk:
                break
            buf += chunk
        elif proc is not None and proc.poll() is not None:
            break
    return buf.decode(errors='replace').strip()


# ---------------------------------------------------------------------------
# The measurements


LATENCY_KINDS = [
    # (label, kind, target key)
    ('Ping', 'ping', None),
    ('CheckHotReset, one-function scope', 'check', 'single'),
    ('CheckHotReset, large scope', 'check', 'large_scope'),
    ('GetDevice', 'get-device', 'single'),
    ('Get Affected, one-function scope', 'get-affected', 'single'),
    ('Get Affected, large scope', 'get-affected', 'large_scope'),
    ('Get ResetDomain.Blockers, large scope', 'get-blockers', 'large_scope'),
    ('GetHotResetInfo', 'hot-reset-info', 'lease'),
    ('ListDevices', 'list-devices', None),
    ('lease cycle (3 calls)', 'lease-cycle', 'lease'),
]

CALLGRIND_KINDS = [k for k in LATENCY_KINDS if k[1] != 'lease-cycle'] + [
    ('GetManagedObjects', 'managed-objects', None), ('lease cycle (3 calls)', 'lease-cycle', 'lease')]
CALLGRIND_HEAVY = ('managed-objects',)
# Whole-machine replies: under callgrind they take minutes on the largest
# machines, and their cost is the size of the machine by nature.
CALLGRIND_WHOLE_MACHINE = ('managed-objects', 'list-devices')
CALLGRIND_WHOLE_MACHINE_MAX = 4096


class Runner:
    def __init__(self, args):
        self.args = args
        self.p = Params(args.quick)
        if args.sizes:
            self.p.sizes = args.sizes
        self.daemon_bin = binary('HOTRESETD_BIN', 'build/daemon/hotresetd')
        self.load_bin = binary('HOTRESETD_LOAD', 'build/tests/bench/hotresetd-load')
        self.gen = os.path.join(HERE, 'gen-machine.py')
        self.results = {}       # size -> {name: value}
        self.failures = []      # (size, step, reason, fatal, detail)
        self.callgrind = {}     # size -> {label: Ir per call}
        self.notes = []
        self.fatal = False
        self.tmp = tempfile.mkdtemp(prefix='hotresetd-bench-')

    def fail(self, size, step, e):
        log(f'{size} functions, {step}: failed: {e.reason}')
        self.failures.append((size, step, e.reason, e.fatal, e.detail))
        if e.fatal:
            self.fatal = True

    def step(self, size, name, fn, session=None):
        """Runs one measurement; a failure is recorded and the run goes on.
        Returns fn's result, or None when it failed."""
        log(f'{size} functions: {name}')
        try:
            if session is not None and session.alive():
                session.quiesce()
            result = fn()
            if session is not None:
                session.check_alive(name)
            return result
        except StepFailed as e:
            self.fail(size, name, e)
            return None

    def generate(self, size, workdir):
        machine = os.path.join(workdir, 'machine.json')
        burst = os.path.join(workdir, 'burst.json')
        targets = os.path.join(workdir, 'targets.json')
        subprocess.run([sys.executable, self.gen, '--functions', str(size), '--seed', str(self.args.seed),
                        '-o', machine, '--burst', burst, '--targets', targets, '--quiet'], check=True)
        with open(targets) as f:
            return machine, burst, json.load(f)

    # --- one size

    def run_size(self, size):
        p = self.p
        workdir = os.path.join(self.tmp, str(size))
        os.makedirs(workdir)
        machine, burst, targets = self.generate(size, workdir)
        res = self.results.setdefault(size, {})
        res['targets'] = targets
        s = Session(self, workdir, machine)
        try:
            res['startup_s'] = self.step(size, 'start-up', s.start, s)
            if res['startup_s'] is None:
                return
            time.sleep(0.5)
            res['rss_start_kib'] = s.rss_kib()

            lat = res.setdefault('latency', {})
            for label, kind, key in LATENCY_KINDS:
                args = ['latency', kind, f'--count={p.latency_count}', f'--max-seconds={p.latency_seconds}']
                if key:
                    args.append('--address=' + targets[key])
                r = self.step(size, f'latency {label}',
                              lambda: s.load(f'latency {label}', args, p.latency_seconds * 2 + 120)[-1], s)
                lat[label] = r if r is not None else 'failed'
                if not s.alive():
                    return

            r = self.step(size, 'CPU split', lambda: self.cpu_split(s, targets['large_scope']), s)
            res['cpu_split'] = r if r is not None else 'failed'
            if not s.alive():
                return

            tp = res.setdefault('throughput', {})
            for conns in (1, 8, 64):
                args = ['throughput', 'check', '--address=' + targets['single'], f'--connections={conns}',
                        f'--count={p.throughput_count}', f'--rounds={p.throughput_rounds}']
                r = self.step(size, f'throughput {conns} connections',
                              lambda: s.load('throughput', args, 600)[-1], s)
                tp[conns] = r if r is not None else 'failed'
                if not s.alive():
                    return

            r = self.step(size, 'lease cycles', lambda: s.load(
                'lease cycles', ['lease', '--address=' + targets['lease'], f'--cycles={p.lease_cycles}',
                                 f'--max-seconds={p.lease_seconds}'], p.lease_seconds + 2 * p.call_timeout + 60)[-1], s)
            res['lease'] = r if r is not None else 'failed'
            if not s.alive():
                return
            res['rss_steady_kib'] = s.rss_kib()

            if size in p.burst_sizes:
                res['burst'] = self.burst(size, s, machine, burst) or 'failed'
                if not s.alive():
                    return

            if size == p.leak_size:
                r = self.step(size, 'lease cycles for leaks', lambda: s.load(
                    'leak', ['leak', '--address=' + targets['lease'], f'--pid={s.pid}',
                             f'--cycles={p.leak_cycles}'], p.leak_seconds)[-1], s)
                res['leak'] = r if r is not None else 'failed'
                if not s.alive():
                    return

            # Last: at large sizes the reply can exceed the bus's message
            # size limit, and the bus then disconnects the daemon.
            args = ['latency', 'managed-objects', f'--count={p.managed_objects_count}', '--warmup=1',
                    f'--max-seconds={p.latency_seconds}']
            r = self.step(size, 'latency GetManagedObjects',
                          lambda: s.load('GetManagedObjects', args, p.latency_seconds * 2 + 300)[-1], s)
            lat['GetManagedObjects'] = r if r is not None else 'failed'
            if s.alive():
                res['rss_after_managed_objects_kib'] = s.rss_kib()
        finally:
            s.stop()
            self.record_crash(size, s)

    CPU_SPLIT_KINDS = [('Ping', 'ping', False), ('CheckHotReset, large scope', 'check', True)]

    def cpu_split(self, s, large_scope):
        """Where the time of a call goes: batches of Pings and of
        CheckHotReset on the large scope, alternately (the machine's speed
        drifts), and the CPU time (user + system, from /proc/PID/stat) the
        daemon, the dbus-daemon and the client spent per call, and the wall
        time per call. Tells what the daemon can still change about a
        call's latency and what belongs to the bus."""
        totals = {label: {'wall_us': 0.0, 'daemon': 0, 'bus': 0, 'client': 0, 'count': 0}
                  for label, _, _ in self.CPU_SPLIT_KINDS}
        n = self.p.split_count // self.p.split_rounds
        tick_us = 1e6 / os.sysconf('SC_CLK_TCK')
        for _ in range(self.p.split_rounds):
            for label, kind, needs_address in self.CPU_SPLIT_KINDS:
                t = totals[label]
                wall, ticks = self.cpu_batch(s, kind, large_scope if needs_address else None, n)
                t['wall_us'] += wall * 1e6
                t['count'] += n
                for k, v in ticks.items():
                    t[k] += v
        return {label: {'wall_us': t['wall_us'] / t['count'], 'count': t['count'],
                        **{k: t[k] * tick_us / t['count'] for k in ('daemon', 'bus', 'client')}}
                for label, t in totals.items()}

    def cpu_batch(self, s, kind, address, n):
        """One batch of n calls: (wall seconds, {process: CPU ticks})."""
        def pids(proc):
            return {'daemon': s.pid, 'bus': s.bus.proc.pid, 'client': proc.pid}

        def ticks(proc):
            return {k: proc_cpu_ticks(pid) for k, pid in pids(proc).items()}

        wall, before, after = self.run_batch(s, kind, address, n, ticks, ticks, timeout=120)
        return wall, {k: after[k] - before[k] for k in before}

    def burst(self, size, s, machine, burst_file):
        """1024 VFs added and removed; RSS before and after."""
        d = os.path.dirname(machine)
        add = os.path.join(d, '.burst-add.json')
        remove = os.path.join(d, '.burst-remove.json')
        shutil.copy(burst_file, add)
        shutil.copy(machine, remove)
        rss_before = s.rss_kib()
        expect = self.results[size]['targets']['burst_vfs']
        r = self.step(size, 'burst', lambda: s.load(
            'burst', ['burst', '--machine=' + machine, '--add-file=' + add, '--remove-file=' + remove,
                      f'--expect={expect}', f'--max-seconds={self.p.burst_seconds}'],
            2 * self.p.burst_seconds + 120)[-1], s)
        if r is None:
            return None
        time.sleep(1)   # let the daemon settle (and free) after the removal
        r['rss_before_kib'] = rss_before
        r['rss_after_kib'] = s.rss_kib()
        return r

    # --- callgrind

    def record_crash(self, size, s):
        """A crash found when stopping the daemon, unless a step reported it."""
        if s.crashed and not any(f[0] == size and f[2] == s.crashed for f in self.failures):
            self.fail(size, 'shutdown', StepFailed(s.crashed, fatal=True, detail=s.crash_detail))

    def guarded(self, size, what, fn):
        """A bug of this script, or a tool missing, at one size: recorded
        (fatal), and the other sizes still run and the report is written."""
        try:
            fn(size)
        except Exception as e:
            self.fail(size, what, StepFailed(f'internal error: {type(e).__name__}: {e}', fatal=True))

    def run_callgrind(self, size):
        if not shutil.which('valgrind') or not shutil.which('callgrind_control'):
            self.notes.append('callgrind: valgrind is not installed; no instruction counts')
            return
        workdir = os.path.join(self.tmp, f'callgrind-{size}')
        os.makedirs(workdir)
        machine, _, targets = self.generate(size, workdir)
        s = Session(self, workdir, machine, callgrind=True)
        out = self.callgrind.setdefault(size, {})
        try:
            if self.step(size, 'callgrind start-up', s.start, s) is None:
                return
            for label, kind, key in CALLGRIND_KINDS:
                if kind in CALLGRIND_WHOLE_MACHINE and size > CALLGRIND_WHOLE_MACHINE_MAX:
                    continue
                count = (self.p.callgrind_heavy_count if kind in CALLGRIND_HEAVY else
                         self.p.callgrind_lease_count if kind == 'lease-cycle' else self.p.callgrind_count)
                r = self.step(size, f'callgrind {label}',
                              lambda: self.callgrind_batch(s, kind, targets.get(key) if key else None, count), s)
                out[label] = r if r is not None else 'failed'
                if not s.alive():
                    return
        finally:
            s.stop()
            self.record_crash(size, s)

    def callgrind_batch(self, s, kind, address, count):
        """Zero the daemon's counters, make `count` calls, dump: the
        instructions the daemon executed per call. The daemon is idle
        before the zeroing and before the dump: what the set-up left to do
        stays out, what the calls left to do (deferred signals) is
        counted."""
        def zero(proc):
            listed = set(os.listdir(s.tmpdir))
            self.callgrind_control('-z', s.pid)
            return listed

        def dump(proc):
            s.quiesce(0.3, 600)
            self.callgrind_control('-d', s.pid)

        _, listed, _ = self.run_batch(s, kind, address, count, zero, dump)
        return self.dump_summary(s, listed) / count

    def run_batch(self, s, kind, address, count, before, after, timeout=600):
        """hotresetd-load batch KIND: its set-up (a context, for
        GetHotResetInfo), then, once the daemon is idle, before(proc), the
        calls, after(proc), and its tear-down: set-up and tear-down stay
        outside the window. Returns (wall seconds of the calls, what
        before returned, what after returned)."""
        cmd = [self.load_bin, 'batch', kind, f'--count={count}', f'--timeout={self.p.call_timeout * 20}']
        if address:
            cmd.append('--address=' + address)
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=s.env())
        result = None
        try:
            if self.batch_state(proc, timeout) == 'ready':
                s.quiesce(0.3, timeout)
                b = before(proc)
                t0 = time.monotonic()
                proc.stdin.write(b'go\n')
                proc.stdin.flush()
                if self.batch_state(proc, 6 * timeout) == 'done':
                    wall = time.monotonic() - t0
                    result = (wall, b, after(proc))
        finally:
            try:
                proc.stdin.close()      # lets the batch tear down and exit
            except OSError:
                pass
            try:
                rc = proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            err = proc.stdout.read().decode(errors='replace') + proc.stderr.read().decode(errors='replace')
            proc.stdout.close()
            proc.stderr.close()
        if rc != 0 or result is None:
            s.check_alive(f'batch {kind}')
            timed_out = '"error_kind":"timeout"' in err
            raise StepFailed(f'hotresetd-load batch {kind} ({describe_exit(rc)}): {err.strip()[-400:]}',
                             fatal=not timed_out)
        return result

    @staticmethod
    def batch_state(proc, timeout):
        line = read_line(proc.stdout, timeout, proc)
        try:
            return json.loads(line).get('state')
        except ValueError:
            return None

    @staticmethod
    def dump_summary(s, before):
        dumps = [f for f in set(os.listdir(s.tmpdir)) - before if f.startswith('callgrind.out')]
        if len(dumps) != 1:
            raise StepFailed(f'callgrind dump not found ({dumps})')
        with open(os.path.join(s.tmpdir, dumps[0])) as f:
            for line in f:
                # "summary:" is what this dump counted since the zeroing.
                if line.startswith('summary:'):
                    return int(line.split()[1])
        raise StepFailed(f'no summary in {dumps[0]}')

    def callgrind_control(self, what, pid):
        p = subprocess.run(['callgrind_control', what, str(pid)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=300)
        if p.returncode != 0:
            raise StepFailed(f'callgrind_control {what}: {p.stdout.decode(errors="replace").strip()}')

    # --- all

    def run(self):
        t0 = time.monotonic()
        try:
            for size in self.p.sizes:
                self.guarded(size, 'measurements', self.run_size)
            if not self.args.no_callgrind:
                for size in self.p.callgrind_sizes:
                    if size in self.p.sizes:
                        self.guarded(size, 'callgrind', self.run_callgrind)
        finally:
            self.elapsed = time.monotonic() - t0
            if self.args.keep:
                log(f'keeping {self.tmp}')
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
        text = Report(self).render()
        with open(self.args.output, 'w') as f:
            f.write(text)
        log(f'wrote {self.args.output} ({self.elapsed:.0f} s)')
        if self.fatal:
            log('the daemon crashed or a call returned an error: see "Failures" in the report')
            return 1
        return 0


# ---------------------------------------------------------------------------
# The report


def ok(value):
    return value is not None and not isinstance(value, str)


def fmt_us(us):
    if us >= 100000:
        return f'{us / 1e6:.2f} s'
    if us >= 1000:
        return f'{us / 1000:.1f} ms'
    return f'{us:.0f} µs'


def fmt_kib(kib):
    return f'{kib / 1024:.1f} MiB' if kib >= 1024 else f'{kib} KiB'


def machine_description():
    model, cores = 'unknown CPU', os.cpu_count()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ''
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemTotal:'):
                    mem = f'{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM'
    except OSError:
        pass
    return f'{model}, {cores} logical CPUs, {mem}, Linux {platform.release()}'


def source_revision():
    try:
        p = subprocess.run(['git', '-C', SOURCE_ROOT, 'describe', '--always', '--dirty'], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, timeout=10)
        return p.stdout.decode().strip() or 'unknown'
    except (OSError, subprocess.TimeoutExpired):
        return 'unknown'


class Report:
    def __init__(self, runner):
        self.r = runner
        self.sizes = [s for s in runner.p.sizes if s in runner.results]

    def failure(self, size, step_prefix):
        for s, step, reason, _, _ in self.r.failures:
            if s == size and step.startswith(step_prefix):
                return f'failed: {reason[:200]}'
        return 'failed'

    def lat(self, size, label):
        return self.r.results.get(size, {}).get('latency', {}).get(label)

    def lat_cell(self, size, label):
        v = self.lat(size, label)
        if v is None:
            return '—'
        if not ok(v):
            return self.failure(size, f'latency {label}')
        cut = f' ({v["count"]} of {v["requested_count"]} calls)' if v['count'] < v['requested_count'] else ''
        return (f'{v["ratio_p50"]:.2f} ({fmt_us(v["call_p50_us"])}); p99 {v["ratio_p99"]:.2f} '
                f'({fmt_us(v["call_p99_us"])}){cut}')

    # --- targets: (description, size, measured text, verdict)

    def targets(self):
        rows = []
        R = self.r.results
        for size in self.sizes:
            v = self.lat(size, 'CheckHotReset, one-function scope')
            rows.append(self.ratio_target('CheckHotReset p50, one-function scope ≤ 1.05 × Ping p50', size, v, 1.05,
                                          'latency CheckHotReset, one-function scope'))
        for size in self.sizes:
            v = self.lat(size, 'CheckHotReset, large scope')
            scope = R[size]['targets'].get('large_scope_size')
            if scope != 256:
                rows.append(('CheckHotReset p50, 256-function scope ≤ 1.5 × Ping p50', size,
                             f'the machine has no 256-function scope (largest: {scope})', 'n/a'))
                continue
            rows.append(self.ratio_target('CheckHotReset p50, 256-function scope ≤ 1.5 × Ping p50', size, v, 1.5,
                                          'latency CheckHotReset, large scope'))
        for size in self.sizes:
            rows.append(self.ratio_target('GetDevice p50 ≤ 1.05 × Ping p50', size, self.lat(size, 'GetDevice'), 1.05,
                                          'latency GetDevice'))
        rows.extend(self.lease_targets())
        rows.extend(self.burst_targets())
        rows.extend(self.managed_objects_targets())
        rows.extend(self.rss_targets())
        rows.extend(self.leak_targets())
        return rows

    def cpu_split_section(self):
        L = ['## Where the time of a call goes\n',
             f'{self.r.p.split_count} calls of each kind on one connection, one after the other, in '
             f'{self.r.p.split_rounds} batches per kind taken alternately; the CPU time (user + system, from '
             '/proc/PID/stat, so a few µs either way) that the daemon, the dbus-daemon and the client spent per '
             'call, and the wall time per call (back-to-back calls: the latency table\'s interleaved figures '
             'are the ones to compare with the targets). For one call the three work one after the other, so '
             'what the bus spends on a reply beyond what it spends on a Ping\'s is latency no daemon can '
             'remove without a smaller reply.\n']
        rows, notes = [], []
        for size in self.sizes:
            v = self.r.results.get(size, {}).get('cpu_split')
            if v is None:
                continue
            if not ok(v):
                rows.append([str(size), self.failure(size, 'CPU split')] + ['—'] * 4)
                continue
            ping, check = v['Ping'], v['CheckHotReset, large scope']
            for label, x in (('Ping', ping), ('CheckHotReset, large scope', check)):
                rows.append([str(size), label, fmt_us(x['wall_us']), fmt_us(x['daemon']), fmt_us(x['bus']),
                             fmt_us(x['client'])])
            # The Pings interleaved with the large-scope calls: the unit of
            # that target.
            lat_check = self.lat(size, 'CheckHotReset, large scope')
            if ok(lat_check):
                unit = lat_check['ping_p50_us']
                d_extra, b_extra = check['daemon'] - ping['daemon'], check['bus'] - ping['bus']
                notes.append(f'- {size} functions: on CheckHotReset of the large scope the daemon spends '
                             f'{fmt_us(d_extra)} more than on a Ping ({d_extra / unit:.2f} × the p50 of the Pings '
                             f'interleaved with these calls in the latency table, {fmt_us(unit)}), the dbus-daemon {fmt_us(b_extra)} more '
                             f'({b_extra / unit:.2f} ×). A 1.5 × target leaves 0.50 × for both.')
        if not rows:
            return []
        L.append(self.table(['functions', 'call', 'wall per call', 'daemon CPU', 'dbus-daemon CPU', 'client CPU'],
                            rows))
        L.append('')
        L.extend(notes)
        if notes:
            L.append('')
        return L

    def ratio_target(self, desc, size, v, limit, step):
        if v is None:
            return (desc, size, 'not measured', 'n/a')
        if not ok(v):
            return (desc, size, self.failure(size, step), 'failed')
        return (desc, size, f'{v["ratio_p50"]:.2f} × ({fmt_us(v["call_p50_us"])} vs {fmt_us(v["ping_p50_us"])})',
                'met' if v['ratio_p50'] <= limit else 'NOT met')

    def lease_targets(self):
        rows = []
        R = self.r.results
        leases = {s: R[s].get('lease') for s in self.sizes}
        small = min(self.sizes) if self.sizes else None
        big = max(self.sizes) if self.sizes else None
        # Each cycle right after a Ping, as every latency: the cycle's p50
        # over the Ping p50 of the same moments, at each size. (A Ping p50
        # taken at another moment moves by a third between sizes of one
        # run on this kind of machine: too unsteady a unit.)
        label = 'lease cycle (3 calls)'
        desc = f'lease cycle p50 at {big} functions ≤ 1.2 × at {small} (each in units of the Ping p50 of the same run)'
        a, b = self.lat(small, label), self.lat(big, label)
        if big == small or a is None or b is None:
            rows.append((desc, big, 'not measured', 'n/a'))
        elif not ok(a) or not ok(b):
            rows.append((desc, big, self.failure(big if not ok(b) else small, f'latency {label}'), 'failed'))
        else:
            ratio = b['ratio_p50'] / a['ratio_p50']
            rows.append((desc, big, f'{ratio:.2f} × ({b["ratio_p50"]:.2f} × Ping vs {a["ratio_p50"]:.2f} × Ping; '
                         f'{fmt_us(b["call_p50_us"])} vs {fmt_us(a["call_p50_us"])})',
                         'met' if ratio <= 1.2 else 'NOT met'))
        # The same target in what does not depend on the machine's load:
        # the daemon's own instructions per cycle.
        cg = self.r.callgrind
        label = 'lease cycle (3 calls)'
        cg_sizes = sorted(s for s in cg if label in cg[s])
        if len(cg_sizes) >= 2:
            lo, hi = cg_sizes[0], cg_sizes[-1]
            a, b = cg[lo][label], cg[hi][label]
            desc = f'lease cycle at {hi} functions ≤ 1.2 × at {lo}: the daemon\'s instructions (callgrind)'
            if not ok(a) or not ok(b):
                rows.append((desc, hi, self.failure(hi if not ok(b) else lo, f'callgrind {label}'), 'failed'))
            else:
                rows.append((desc, hi, f'{b / a:.2f} × ({b:,.0f} vs {a:,.0f} instructions)',
                             'met' if b / a <= 1.2 else 'NOT met'))
        for size in self.sizes:
            v = leases.get(size)
            desc = 'no Ping waits > 5 ms during lease cycles'
            if v is None:
                continue
            if not ok(v):
                rows.append((desc, size, self.failure(size, 'lease cycles'), 'failed'))
                continue
            wait = v['during_ping_max_wait_us']
            rows.append((desc, size, f'longest wait {fmt_us(wait)} over {v["during_pings"]} pings',
                         'met' if wait <= 5000 and 'during_ping_failed' not in v else 'NOT met'))
        return rows

    def burst_targets(self):
        rows = []
        for size in self.sizes:
            v = self.r.results[size].get('burst')
            if v is None:
                continue
            for phase, signal_name in (('add', 'InterfacesAdded'), ('remove', 'InterfacesRemoved')):
                desc1 = f'1024 VFs {"added" if phase == "add" else "removed"}: last {signal_name} ≤ 200 ms after the change'
                desc2 = f'1024 VFs {"added" if phase == "add" else "removed"}: no Ping gap > 50 ms'
                if not ok(v):
                    rows.append((desc1, size, self.failure(size, 'burst'), 'failed'))
                    continue
                n = v[f'{phase}_signals']
                last = v[f'{phase}_last_signal_ms']
                if not v[f'{phase}_complete']:
                    rows.append((desc1, size, f'only {n} of {v["expect"]} signals within '
                                 f'{self.r.p.burst_seconds} s', 'NOT met'))
                else:
                    rows.append((desc1, size, f'{last:.1f} ms ({n} signals)', 'met' if last <= 200 else 'NOT met'))
                gap = v[f'{phase}_ping_max_gap_us']
                rows.append((desc2, size, f'longest gap {fmt_us(gap)}',
                             'met' if gap <= 50000 and f'{phase}_ping_failed' not in v else 'NOT met'))
        return rows

    def managed_objects_targets(self):
        rows = []
        big = max(self.sizes) if self.sizes else None
        for size in self.sizes:
            if size != big:
                continue
            g, l = self.lat(size, 'GetManagedObjects'), self.lat(size, 'ListDevices')
            desc = 'GetManagedObjects p50 ≤ 20 × ListDevices p50'
            if g is None or l is None:
                rows.append((desc, size, 'not measured', 'n/a'))
            elif not ok(g) or not ok(l):
                rows.append((desc, size, self.failure(size, 'latency GetManagedObjects' if not ok(g) else
                                                      'latency ListDevices'), 'failed'))
            else:
                ratio = g['call_p50_us'] / l['call_p50_us']
                rows.append((desc, size, f'{ratio:.1f} × ({fmt_us(g["call_p50_us"])} vs {fmt_us(l["call_p50_us"])})',
                             'met' if ratio <= 20 else 'NOT met'))
        # Judged from 1024 functions up: smaller machines cannot hold the
        # same mix (no 256-function bus), so their bytes per function differ
        # for reasons that have nothing to do with linearity.
        judged = [s for s in self.sizes if s >= 1024]
        bpf = {}
        for size in judged:
            g = self.lat(size, 'GetManagedObjects')
            if ok(g) and g.get('reply_body_bytes'):
                bpf[size] = g['reply_body_bytes'] / size
        desc = ('GetManagedObjects reply size linear in N (bytes per function within 1.5 × '
                'across the sizes from 1024 up)')
        measured = ', '.join(f'{bpf[s]:.0f} B at {s}' for s in sorted(bpf)) or 'not measured'
        missing = [s for s in judged if s not in bpf]
        if len(bpf) < 2:
            why = f'; failed at {", ".join(map(str, missing))}' if missing else '; needs two sizes from 1024 up'
            rows.append((desc, big, measured + why, 'failed' if missing else 'n/a'))
        else:
            spread = max(bpf.values()) / min(bpf.values())
            verdict = 'met' if spread <= 1.5 else 'NOT met'
            if missing:
                measured += f'; failed at {", ".join(map(str, missing))}'
                verdict = 'failed' if verdict == 'met' else verdict
            rows.append((desc, big, measured + f' (spread {spread:.2f} ×)', verdict))
        return rows

    def rss_targets(self):
        rows = []
        for size in self.sizes:
            res = self.r.results[size]
            rss = res.get('rss_steady_kib') or res.get('rss_start_kib')
            budget = 4096 + size
            desc = 'RSS ≤ 4 MiB + 1 KiB per function'
            if rss is None:
                rows.append((desc, size, 'not measured (the daemon did not start)', 'failed'))
            else:
                rows.append((desc, size, f'{fmt_kib(rss)} (budget {fmt_kib(budget)})',
                             'met' if rss <= budget else 'NOT met'))
        for size in self.sizes:
            v = self.r.results[size].get('burst')
            if v is None:
                continue
            # The issue's wording: "RSS ≤ 4 MiB + 1 KiB per function at every
            # size, and within 10% of that again after a burst is added and
            # removed"; the growth over the RSS before the burst is shown
            # too, as a stricter reading.
            desc = 'RSS after 1024 VFs added and removed ≤ 1.1 × (4 MiB + 1 KiB per function)'
            strict = 'RSS after 1024 VFs added and removed within 10 % of before (stricter reading)'
            if not ok(v):
                rows.append((desc, size, self.failure(size, 'burst'), 'failed'))
                continue
            a, b = v['rss_before_kib'], v['rss_after_kib']
            budget = 1.1 * (4096 + size)
            rows.append((desc, size, f'{fmt_kib(b)} (budget {fmt_kib(budget)})', 'met' if b <= budget else 'NOT met'))
            rows.append((strict, size, f'{fmt_kib(a)} → {fmt_kib(b)} ({(b - a) / a * 100:+.1f} %)',
                         'met' if abs(b - a) <= 0.1 * a else 'NOT met'))
        return rows

    def leak_targets(self):
        rows = []
        for size in self.sizes:
            v = self.r.results[size].get('leak')
            if v is None:
                continue
            desc = f'{self.r.p.leak_cycles} lease cycles: no growth of RSS or open fds'
            if not ok(v):
                rows.append((desc, size, self.failure(size, 'lease cycles for leaks'), 'failed'))
                continue
            grow_rss = v['rss_after_kib'] - v['rss_before_kib']
            grow_fds = v['fds_after'] - v['fds_before']
            # RSS moves by pages; a leak of 16 bytes per cycle would be 300+ KiB.
            rows.append((desc, size, f'RSS {fmt_kib(v["rss_before_kib"])} → {fmt_kib(v["rss_after_kib"])}, '
                         f'fds {v["fds_before"]} → {v["fds_after"]}',
                         'met' if grow_rss <= 64 and grow_fds <= 0 else 'NOT met'))
        return rows

    # --- tables

    def table(self, header, rows):
        out = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
        out += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
        return '\n'.join(out)

    def render(self):
        r = self.r
        R = r.results
        p = r.p
        now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
        L = []
        L.append('# hotresetd benchmarks\n')
        L.append(f'Written by `tests/bench/run-bench.py`{" --quick" if p.quick else ""} '
                 '(`meson test -C build --benchmark --suite bench`); do not edit by hand.\n')
        L.append(f'- date: {now}')
        L.append(f'- machine: {machine_description()}')
        L.append(f'- source: {source_revision()}; daemon `{r.daemon_bin}`')
        L.append(f'- run: {"quick" if p.quick else "full"}, sizes {", ".join(map(str, p.sizes))} functions, '
                 f'{r.elapsed / 60:.1f} minutes')
        L.append('')
        L.append('Each machine is generated by `tests/bench/gen-machine.py --functions N --seed '
                 f'{r.args.seed}` (several PCI segments, root ports, PCIe switches with hotplug slots, '
                 'GPUs with their audio function, quad-port NICs, SR-IOV NICs with 32-256 functions on one bus, '
                 'NVMe drives) and served on a private system bus (deny by default, the project\'s bus policy, '
                 'the default limits). Latencies are **ratios to the p50 of `Peer.Ping` measured in the same '
                 'run**, each call right after a Ping, absolute values in parentheses; the ratio is what to '
                 'compare between machines. A ratio near 1 means the call costs the daemon about as much as '
                 'the bus round trip itself.\n')

        if r.failures:
            L.append('## Failures\n')
            for size, step, reason, fatal, detail in r.failures:
                L.append(f'- {size} functions, {step}: {"**" if fatal else ""}failed: {reason}'
                         f'{"** (fatal: the run exits 1)" if fatal else ""}')
                if detail:
                    L.append('')
                    L.append('  daemon log tail:\n')
                    L.extend('      ' + line for line in detail.splitlines())
                    L.append('')
            L.append('')

        L.append('## Targets\n')
        L.append(self.table(['target', 'functions', 'measured', 'verdict'],
                            [(d, s, m, f'**{v}**' if v != 'met' else v) for d, s, m, v in self.targets()]))
        L.append('')

        L.append('## Start-up and memory\n')
        rows = []
        for size in self.sizes:
            res = R[size]
            t = res.get('targets', {})
            st = res.get('startup_s')
            rows.append((size, t.get('domains', '—'),
                         f'{st * 1000:.0f} ms' if ok(st) else self.failure(size, 'start-up'),
                         fmt_kib(res['rss_start_kib']) if res.get('rss_start_kib') else '—',
                         fmt_kib(res['rss_steady_kib']) if res.get('rss_steady_kib') else '—',
                         fmt_kib(res['rss_after_managed_objects_kib']) if res.get('rss_after_managed_objects_kib')
                         else '—',
                         fmt_kib(4096 + size)))
        L.append(self.table(['functions', 'PCI segments', 'start-up (process start to bus name)', 'RSS after start',
                             'RSS after the calls and lease cycles', 'RSS after GetManagedObjects',
                             'budget 4 MiB + 1 KiB/function'], rows))
        L.append('')

        L.append('## Latency\n')
        L.append('p50 of the call / p50 of Ping in the same run (absolute p50); p99 of the call / the same Ping '
                 'p50 (absolute p99). The large '
                 'scope is a VF on the biggest SR-IOV bus: ' + ', '.join(
                     f'{R[s]["targets"].get("large_scope_size")} functions at {s}' for s in self.sizes) + '.\n')
        labels = [l for l, _, _ in LATENCY_KINDS] + ['GetManagedObjects']
        rows = [[label] + [self.lat_cell(s, label) for s in self.sizes] for label in labels]
        rows.append(['Ping p50 (absolute)'] + [
            fmt_us(self.lat(s, 'Ping')['ping_p50_us']) if ok(self.lat(s, 'Ping')) else '—' for s in self.sizes])
        L.append(self.table(['call'] + [f'{s} functions' for s in self.sizes], rows))
        L.append('')
        rows = []
        for s in self.sizes:
            g, l = self.lat(s, 'GetManagedObjects'), self.lat(s, 'ListDevices')
            if ok(g):
                rows.append((s, f'{g["reply_body_bytes"]:,} B', f'{g["reply_body_bytes"] / s:.0f} B',
                             f'{l["reply_body_bytes"]:,} B' if ok(l) else '—',
                             f'{g["call_p50_us"] / l["call_p50_us"]:.1f} ×' if ok(l) else '—'))
            else:
                rows.append((s, self.failure(s, 'latency GetManagedObjects'), '—', '—', '—'))
        L.append('Reply sizes (message bodies, as marshalled on the wire):\n')
        L.append(self.table(['functions', 'GetManagedObjects', 'per function', 'ListDevices',
                             'GetManagedObjects p50 / ListDevices p50'], rows))
        L.append('')

        L.extend(self.cpu_split_section())

        L.append('## Throughput\n')
        L.append('CheckHotReset on the one-function scope, pipelined (up to 16 calls in flight per connection), '
                 'against Ping measured the same way, median of '
                 f'{p.throughput_rounds} alternating rounds of {p.throughput_count} calls each.\n')
        rows = []
        for conns in (1, 8, 64):
            row = [conns]
            for s in self.sizes:
                v = R[s].get('throughput', {}).get(conns)
                if v is None:
                    row.append('—')
                elif not ok(v):
                    row.append(self.failure(s, f'throughput {conns} '))
                else:
                    row.append(f'{v["calls_per_s"]:,.0f}/s ({v["ratio"]:.2f} × Ping\'s {v["ping_calls_per_s"]:,.0f}/s)')
            rows.append(row)
        L.append(self.table(['connections'] + [f'{s} functions' for s in self.sizes], rows))
        L.append('')

        L.append('## Lease cycles\n')
        L.append('CreateContext, AttachDevice, Release on a vfio-pci NVMe drive alone behind its root port, while '
                 'a second connection pings every 1-2 ms: absolute times (the latency table has the cycle in units of '
                 'Ping), and how long the pings waited.\n')
        rows = []
        for s in self.sizes:
            v = R[s].get('lease')
            if v is None:
                continue
            if not ok(v):
                rows.append((s, self.failure(s, 'lease cycles'), '', '', '', '', ''))
                continue
            cut = f' of {v["requested_cycles"]} (time budget)' if v['cycles'] < v['requested_cycles'] else ''
            rows.append((s, f'{v["cycles"]}{cut}',
                         fmt_us(v['cycle_mean_us']),
                         fmt_us(v['cycle_p50_us']),
                         fmt_us(v['cycle_p99_us']),
                         f'{fmt_us(v["during_ping_max_wait_us"])} / {fmt_us(v["during_ping_max_gap_us"])}',
                         fmt_us(v['during_ping_p50_us'])))
        L.append(self.table(['functions', 'cycles', 'cycle mean', 'cycle p50', 'cycle p99', 'longest Ping wait / gap',
                             'Ping p50 meanwhile'], rows))
        L.append('')

        bursts = [(s, R[s]['burst']) for s in self.sizes if 'burst' in R[s]]
        if bursts:
            L.append('## Burst: 1024 VFs hotplugged and removed\n')
            L.append('Eight SR-IOV PFs get 128 VFs each: a new machine file is renamed over the watched one, '
                     'then the old one back. Time from the rename to the last InterfacesAdded / InterfacesRemoved '
                     'of a device object; Ping every 1-2 ms meanwhile.\n')
            rows = []
            for s, v in bursts:
                if not ok(v):
                    rows.append((s, self.failure(s, 'burst'), '', '', '', ''))
                    continue
                rows.append((s,
                             f'{v["add_last_signal_ms"]:.1f} ms ({v["add_signals"]} signals)',
                             f'{fmt_us(v["add_ping_max_gap_us"])}',
                             f'{v["remove_last_signal_ms"]:.1f} ms ({v["remove_signals"]} signals)',
                             f'{fmt_us(v["remove_ping_max_gap_us"])}',
                             f'{fmt_kib(v["rss_before_kib"])} → {fmt_kib(v["rss_after_kib"])}'))
            L.append(self.table(['functions', 'added: last signal', 'longest Ping gap', 'removed: last signal',
                                 'longest Ping gap', 'RSS before → after'], rows))
            L.append('')

        leaks = [(s, R[s]['leak']) for s in self.sizes if 'leak' in R[s]]
        if leaks:
            L.append('## Many lease cycles\n')
            L.append('After 200 warm-up cycles; samples every tenth of the run are (cycles, RSS KiB, fds).\n')
            rows = []
            for s, v in leaks:
                if not ok(v):
                    rows.append((s, self.failure(s, 'lease cycles for leaks'), '', '', ''))
                    continue
                rows.append((s, v['cycles'], f'{fmt_kib(v["rss_before_kib"])} → {fmt_kib(v["rss_after_kib"])}',
                             f'{v["fds_before"]} → {v["fds_after"]}', fmt_us(v['cycle_mean_us']),
                             ' '.join(f'({c}, {k}, {n})' for c, k, n in v['samples'])))
            L.append(self.table(['functions', 'cycles', 'RSS', 'open fds', 'mean cycle', 'samples'], rows))
            L.append('')

        L.append('## Instructions per call (callgrind)\n')
        if r.args.no_callgrind:
            L.append('Not run (--no-callgrind).\n')
        else:
            cg_sizes = [s for s in p.callgrind_sizes if s in r.callgrind]
            shown = ', '.join(map(str, cg_sizes)) or 'no size'
            L.append('The daemon under `valgrind --tool=callgrind`; counters zeroed (`callgrind_control -z`) '
                     f'before a batch of {p.callgrind_count} calls of one kind ({p.callgrind_heavy_count} '
                     f'for GetManagedObjects, {p.callgrind_lease_count} lease cycles) and dumped (`-d`) after, each once the daemon is idle '
                     '(so work the calls deferred, such as signals, is counted): the daemon\'s instructions, event '
                     'loop and sd-bus included, divided by the number of calls. Only at '
                     f'{shown} functions (callgrind runs the daemon some 50 times '
                     'slower), and ListDevices and GetManagedObjects only up to '
                     f'{CALLGRIND_WHOLE_MACHINE_MAX} (their replies are the whole machine).\n')
            rows = []
            for label, _, _ in CALLGRIND_KINDS:
                row = [label]
                for s in cg_sizes:
                    v = r.callgrind[s].get(label)
                    ping = r.callgrind[s].get('Ping')
                    if v is None:
                        row.append('—')
                    elif not ok(v):
                        row.append(self.failure(s, f'callgrind {label}'))
                    else:
                        rel = f' ({v / ping:.1f} × Ping)' if ok(ping) and label != 'Ping' else ''
                        row.append(f'{v:,.0f}{rel}')
                rows.append(row)
            L.append(self.table(['call'] + [f'{s} functions' for s in cg_sizes], rows))
            L.append('')
        for n in r.notes:
            L.append(f'- {n}')
        return '\n'.join(L).rstrip() + '\n'


def main():
    ap = argparse.ArgumentParser(description='Benchmarks of hotresetd; writes BENCHMARKS.md.')
    ap.add_argument('--quick', action='store_true', help='sizes 64 and 1024 only, fewer iterations')
    ap.add_argument('--sizes', type=lambda s: [int(x) for x in s.split(',')],
                    help='comma-separated machine sizes (default 64,1024,4096,16384)')
    ap.add_argument('--output', '-o', default=os.path.join(SOURCE_ROOT, 'BENCHMARKS.md'),
                    help='the report (default BENCHMARKS.md at the top of the source tree)')
    ap.add_argument('--seed', type=int, default=1, help='gen-machine.py seed')
    ap.add_argument('--no-callgrind', action='store_true', help='skip the callgrind instruction counts')
    ap.add_argument('--keep', action='store_true', help='keep the temporary directory (logs, machines)')
    args = ap.parse_args()
    return Runner(args).run()


if __name__ == '__main__':
    sys.exit(main())

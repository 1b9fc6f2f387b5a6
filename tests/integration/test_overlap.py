#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Overlapping resets (issue 13), in the cdev and the legacy group model, on
tests/integration/data/leases.json with 200 ms emulated resets: 64 clients,
each on a connection of its own, send 256 hot resets at once: through
three persistent leases whose scopes they share (Context.HotReset: the
resets of one scope run one after the other, and all succeed), and of
scopes nobody holds or that a lease holds (Manager.HotReset: success, or
InUse naming who holds the scope). Every call is answered, and precisely;
a Ping client is served all along (its worst latency is printed, not
asserted: no timed tests); every HotResetDone signal stands for a reset the
emulated kernel really did (it logs each one), and every successful call
for exactly one of them. Afterwards the daemon is back to its baseline."""

import os
import sys
import threading
import time

import dbus
import dbus.lowlevel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import BUS_NAME, ROOT_PATH  # noqa: E402
from contexts_util import (CONTEXT_IFACE, CONTEXT_PATH_PREFIX, ERR_BUSY, ERR_IN_USE, MANAGER_IFACE, LeaseTestCase,  # noqa: E402
                           load_machine)

CLIENTS = 64
CALLS_PER_CLIENT = 4
DELAY_MS = 200
PING_INTERVAL = 0.02

FN0, FN1 = '0000:01:00.0', '0000:01:00.1'
PORT0, PORT1 = '0000:02:00.0', '0000:02:00.1'
BUSONLY, BUSONLY_AUDIO = '0000:06:00.0', '0000:06:00.1'
NVME = '0000:09:00.0'
LONE = '0000:0a:00.0'

# Persistent leases, each holding a whole scope; Context.HotReset through
# them of one of the scope's devices.
LEASED = [[FN0, FN1], [PORT0, PORT1], [BUSONLY, BUSONLY_AUDIO]]
# Manager.HotReset targets: two scopes nobody holds, and leased ones.
UNLEASED_TARGETS = [NVME, LONE, NVME, LONE, FN1, PORT0]

KERNEL_RESET_LOG = 'Emulated kernel: hot reset through'


class OverlapTests:
    """CDEV and MACHINE come from the subclass."""

    def plan(self, leases):
        """[(client, [(kind, path, target)] * CALLS_PER_CLIENT)]: one call in
        five a Context.HotReset (about 17 per leased scope: 3.4 s of resets
        one after the other), the rest Manager.HotReset."""
        plans = []
        n = 0
        for i in range(CLIENTS):
            calls = []
            for _ in range(CALLS_PER_CLIENT):
                if n % 5 == 0:
                    k = (n // 5) % len(LEASED)
                    scope = LEASED[k]
                    calls.append(('context', leases[k], scope[(n // 15) % len(scope)]))
                else:
                    calls.append(('manager', ROOT_PATH, UNLEASED_TARGETS[n % len(UNLEASED_TARGETS)]))
                n += 1
            plans.append(calls)
        return plans

    def run_client(self, conn, calls, barrier, answers):
        barrier.wait()
        for kind, path, target in calls:
            if kind == 'context':
                msg = dbus.lowlevel.MethodCallMessage(destination=BUS_NAME, path=path, interface=CONTEXT_IFACE,
                                                      method='HotReset')
                msg.append(target, signature='s')
            else:
                msg = dbus.lowlevel.MethodCallMessage(destination=BUS_NAME, path=path, interface=MANAGER_IFACE,
                                                      method='HotReset')
                msg.append(target, dbus.Dictionary({}, signature='sv'), signature='sa{sv}')
            try:
                reply = conn.send_message_with_reply_and_block(msg, 120 * harness.TIMEOUT_SCALE)
                answers.append((kind, path, target, None, [str(a) for a in reply.get_args_list()[0]]))
            except dbus.exceptions.DBusException as e:
                answers.append((kind, path, target, e.get_dbus_name(), e.get_dbus_message() or ''))

    def pinger(self, conn, stop, latencies, errors):
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                conn.call_blocking(BUS_NAME, ROOT_PATH, 'org.freedesktop.DBus.Peer', 'Ping', '', [],
                                   timeout=60 * harness.TIMEOUT_SCALE)
                latencies.append((t0, time.monotonic() - t0))
            except dbus.exceptions.DBusException as e:
                errors.append(str(e))
            stop.wait(PING_INTERVAL)

    def test_overlapping_resets(self):
        fds = self.fd_count()
        holders = {a: self.holder(a) for a, _, _, _ in self.env.list_devices()}
        leases = []
        for scope in LEASED:
            ctx = self.persistent_context('overlap')
            for a in scope:
                self.busctl_call(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', a, 0)
            leases.append(ctx)
        affected = {a: self.env.device_property(a, 'Affected') for a in sorted(set(UNLEASED_TARGETS + sum(LEASED, [])))}
        holder_of = {a: leases[k] for k, scope in enumerate(LEASED) for a in scope}
        plans = self.plan(leases)
        total = sum(len(p) for p in plans)

        rec, _ = self.record()
        rec.sync()
        mark = rec.mark()
        log_mark = len(self.daemon.log())
        conns = [dbus.bus.BusConnection(self.env.bus.address) for _ in range(CLIENTS + 1)]
        answers = []
        latencies, ping_errors = [], []
        stop = threading.Event()
        barrier = threading.Barrier(CLIENTS + 1)
        threads = [threading.Thread(target=self.run_client, args=(conns[i], plans[i], barrier, answers))
                   for i in range(CLIENTS)]
        ping = threading.Thread(target=self.pinger, args=(conns[CLIENTS], stop, latencies, ping_errors))
        try:
            ping.start()
            for t in threads:
                t.start()
            barrier.wait()
            t0 = time.monotonic()
            for t in threads:
                t.join(300 * harness.TIMEOUT_SCALE)
            t1 = time.monotonic()
            elapsed = t1 - t0
        finally:
            stop.set()
            ping.join(60)
            for c in conns:
                c.close()
        self.assertFalse(any(t.is_alive() for t in threads), 'clients still waiting for an answer')

        # Every call answered, and precisely.
        self.assertEqual(len(answers), total)
        problems = []
        successes = {'context': 0, 'manager': 0}
        refusals = 0
        for kind, path, target, error, result in answers:
            what = f'{kind} HotReset of {target}' + (f' through {path}' if kind == 'context' else '')
            if error is None:
                successes[kind] += 1
                if result != affected[target]:
                    problems.append(f'{what}: reset {result}, expected {affected[target]}')
            elif kind == 'context':
                problems.append(f'{what}: {error}: {result}')  # its lease owns the scope: no refusal
            elif error == ERR_IN_USE and target in holder_of:
                refusals += 1
                if target not in result or holder_of[target] not in result:
                    problems.append(f'{what}: the InUse message does not name the device and its holder '
                                    f'{holder_of[target]}: {result}')
            elif error == ERR_IN_USE:
                refusals += 1  # the scope held by another unleased reset's private context
                if target not in result or CONTEXT_PATH_PREFIX not in result:
                    problems.append(f'{what}: the InUse message does not name the device and its holder: {result}')
            elif error == ERR_BUSY:
                refusals += 1
                if target not in result:
                    problems.append(f'{what}: the Busy message does not name the device: {result}')
            else:
                problems.append(f'{what}: {error}: {result}')
        self.assertEqual(problems, [])
        self.assertEqual(successes['context'], sum(1 for p in plans for k, _, _ in p if k == 'context'))
        self.assertGreater(successes['manager'], 0)

        # Ping was served while the resets ran.
        self.assertEqual(ping_errors, [])
        during = [dt for start, dt in latencies if start >= t0 and start + dt <= t1]
        self.assertGreater(len(during), 0, 'no Ping was answered while the resets ran')
        harness.log(f'{self.backend()}: {total} hot resets from {CLIENTS} clients answered in {elapsed:.1f} s: '
                    f'{successes["context"]} through leases, {successes["manager"]} unleased, {refusals} refused '
                    f'precisely; Ping answered {len(during)} times meanwhile, at worst in '
                    f'{max(during) * 1000:.1f} ms (median {sorted(during)[len(during) // 2] * 1000:.1f} ms)')

        # HotResetDone: one per reset the kernel did, each a success, as
        # many as the calls that succeeded.
        rec.sync()
        done = [m['payload']['data'] for m in rec.signals(mark, member='HotResetDone')]
        kernel = self.daemon.log()[log_mark:].count(KERNEL_RESET_LOG)
        self.assertEqual(len(done), kernel, f'{len(done)} HotResetDone signals, {kernel} resets in the kernel')
        self.assertEqual({d[3] for d in done}, {'success'})
        self.assertEqual(kernel, successes['context'] + successes['manager'])

        # Back to the baseline.
        self.assertDaemonRunning()
        self.assertEqual(sorted(c[0] for c in self.env.call_manager('ListContexts')[1][0]), sorted(leases))
        for ctx in leases:
            self.busctl_call(ctx, CONTEXT_IFACE, 'Release')
        self.assertNoContexts()
        self.assertEqual({a: self.holder(a) for a in holders}, holders)
        self.assertFdCount(fds, 'after the overlapping resets')


class CdevOverlapTest(OverlapTests, LeaseTestCase):
    CDEV = True
    MACHINE = load_machine('leases.json', cdev=True, reset_delay_ms=DELAY_MS)


class GroupOverlapTest(OverlapTests, LeaseTestCase):
    CDEV = False
    MACHINE = load_machine('leases.json', cdev=False, reset_delay_ms=DELAY_MS)


if __name__ == '__main__':
    harness.main()

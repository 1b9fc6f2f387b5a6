#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Churn (issue 13): 1,000 clients killed with SIGKILL, in the cdev and the
legacy group model, on tests/integration/data/leases.json with slow
emulated resets (reset_delay_ms), 16 alive at a time. Each client is a
child forked from this process with a bus connection of its own; it
leases devices (a context tied to its connection or to its own process),
opens their files, asks for hot resets of its scope and of scopes nobody
holds, function resets, detaches and releases, in a random order, over and
over, until it is killed. Three in four die at a random point 0-50 ms
after they were forked; every fourth dies right after it sent a hot
reset, while the reset runs. Afterwards: no context left, every device
held by nobody, the daemon's open files back to their baseline, and every
device attachable and resettable again. The errors the clients got while
they lived must be ones a client racing others can get (InUse, Busy,
NotOwned, ...), nothing else."""

import mmap
import os
import random
import signal
import sys
import time

import dbus
import dbus.lowlevel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import BUS_NAME, ROOT_PATH  # noqa: E402
from contexts_util import (CONTEXT_IFACE, ERR_BUSY, ERR_IN_USE, ERR_NO_RESET, ERR_NOT_OWNED,  # noqa: E402
                           ERR_UNSUPPORTED, MANAGER_IFACE, LeaseTestCase, load_machine)

CLIENTS = 1000
CONCURRENCY = 16
KILL_WITHIN = 0.050      # seconds after the fork
TARGETED_EVERY = 4       # every 4th client dies right after sending a hot reset
RESET_DELAY_MS = 30

FN0, FN1 = '0000:01:00.0', '0000:01:00.1'
PORT0, PORT1 = '0000:02:00.0', '0000:02:00.1'
BUSONLY, BUSONLY_AUDIO = '0000:06:00.0', '0000:06:00.1'
NVME = '0000:09:00.0'
LONE = '0000:0a:00.0'
ROOTBUS = '0000:00:1d.0'

# What a client leases (the first is what it resets), and the reset it
# asks for: 'hot' (Context.HotReset of the first) or 'function'.
SCOPES = [([FN0, FN1], 'hot'), ([PORT0, PORT1], 'hot'), ([PORT0], 'hot'), ([PORT1], 'hot'),
          ([BUSONLY, BUSONLY_AUDIO], 'hot'), ([NVME], 'hot'), ([LONE], 'hot'), ([ROOTBUS], 'function')]
DEVICES = sorted({a for s, _ in SCOPES for a in s})

# Errors a client racing 15 others for the same devices can get.
RACE_ERRORS = {ERR_IN_USE, ERR_BUSY, ERR_NOT_OWNED, ERR_NO_RESET, ERR_UNSUPPORTED}

# Stages a client writes (one byte, shared memory) before each step.
STAGES = ['forked', 'connecting', 'creating', 'attaching', 'opening', 'hot-reset', 'manager-hot-reset',
          'function-reset', 'info', 'detaching', 'releasing', 'exited']
S = {name: i for i, name in enumerate(STAGES)}
MID_RESET = (S['hot-reset'], S['manager-hot-reset'])


def child(address, slot, stages, seed, cdev, errlog):
    """One client, until it is killed."""
    rnd = random.Random(seed)

    def stage(name):
        stages[slot] = S[name]

    def call(path, iface, method, sig='', *args, mark=None):
        msg = dbus.lowlevel.MethodCallMessage(destination=BUS_NAME, path=path, interface=iface, method=method)
        if sig:
            msg.append(*args, signature=sig)
        box = []
        pending = conn.send_message_with_reply(msg, box.append, 120, require_main_loop=False)
        conn.flush()
        if mark:
            stage(mark)  # sent: the killer may strike now
        pending.block()
        reply = box[0]
        if reply.get_type() == dbus.lowlevel.MESSAGE_TYPE_ERROR:
            name = reply.get_error_name()
            if name not in RACE_ERRORS:
                text = reply.get_args_list()
                line = f'client {slot}: {iface}.{method}{args!r}: {name}: {text[0] if text else ""}\n'
                os.write(errlog, line.encode()[:4000])
            return None
        return reply.get_args_list()

    stage('connecting')
    conn = dbus.bus.BusConnection(address)
    kept = []
    while True:
        stage('creating')
        options = rnd.choice([{}, {'Description': f'churn {slot}'}, 'pid'])
        if options == 'pid':
            pidfd = os.pidfd_open(os.getpid())
            options = {'Pid': dbus.types.UnixFd(pidfd)}
            os.close(pidfd)
        r = call(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', dbus.Dictionary(options, signature='sv'))
        ctx = str(r[0])
        scope, kind = rnd.choice(SCOPES)
        stage('attaching')
        attached = [a for a in scope if call(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', a, {}) is not None]
        for _ in range(rnd.randint(1, 4)):
            step = rnd.choice(['open', 'iommufd', 'info', 'reset', 'reset', 'manager', 'detach'])
            if not attached and step not in ('manager',):
                step = 'manager'
            if step == 'open':
                stage('opening')
                r = call(ctx, CONTEXT_IFACE, 'OpenDevice', 's', attached[0])
                if r:
                    kept.append(r[0].take())
            elif step == 'iommufd' and cdev:
                stage('opening')
                r = call(ctx, CONTEXT_IFACE, 'OpenIommufd')
                if r:
                    kept.append(r[0].take())
            elif step == 'info':
                stage('info')
                call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', attached[0])
            elif step == 'reset' and kind == 'hot':
                call(ctx, CONTEXT_IFACE, 'HotReset', 's', attached[0], mark='hot-reset')
            elif step == 'reset':
                stage('function-reset')
                call(ctx, CONTEXT_IFACE, 'ResetDevice', 's', attached[0])
            elif step == 'manager':
                target = rnd.choice([s for s, k in SCOPES if k == 'hot'])[0]
                call(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', target, {}, mark='manager-hot-reset')
            elif step == 'detach' and attached:
                stage('detaching')
                call(ctx, CONTEXT_IFACE, 'DetachDevice', 's', attached.pop())
        if rnd.random() < 0.5:
            stage('releasing')
            call(ctx, CONTEXT_IFACE, 'Release')
        while len(kept) > 8:
            os.close(kept.pop(0))


class ChurnTests:
    """CDEV and MACHINE come from the subclass."""

    def holders(self):
        return {a: self.holder(a) for a, _, _, _ in self.env.list_devices()}

    def churn(self, seed):
        stages = mmap.mmap(-1, CLIENTS)
        errpath = os.path.join(self.env.tmpdir, 'client-errors.log')
        errlog = os.open(errpath, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        rnd = random.Random(seed)
        address = self.env.bus.address
        running = {}   # pid -> (slot, deadline, targeted)
        killed_at = [0] * len(STAGES)
        targeted_mid_reset = 0
        exited = []
        next_slot = 0
        try:
            while next_slot < CLIENTS or running:
                while len(running) < CONCURRENCY and next_slot < CLIENTS:
                    slot = next_slot
                    next_slot += 1
                    targeted = slot % TARGETED_EVERY == TARGETED_EVERY - 1
                    pid = os.fork()
                    if pid == 0:
                        code = 0
                        try:
                            child(address, slot, stages, seed * 100003 + slot, self.CDEV, errlog)
                        except BaseException as e:  # noqa: BLE001
                            os.write(errlog, f'client {slot} died of {e!r}\n'.encode()[:4000])
                            code = 1
                        finally:
                            stages[slot] = S['exited']
                            os._exit(code)
                    # A targeted client that never gets to reset (its
                    # scope held by others) is killed after a while.
                    wait = 3 * harness.TIMEOUT_SCALE if targeted else rnd.uniform(0, KILL_WITHIN)
                    running[pid] = (slot, time.monotonic() + wait, targeted)
                now = time.monotonic()
                for pid, (slot, deadline, targeted) in list(running.items()):
                    st = stages[slot]
                    if now < deadline and not (targeted and st in MID_RESET):
                        continue
                    os.kill(pid, signal.SIGKILL)
                    _, status = os.waitpid(pid, 0)
                    if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
                        exited.append((slot, status))
                    killed_at[stages[slot]] += 1
                    targeted_mid_reset += targeted and stages[slot] in MID_RESET
                    del running[pid]
                time.sleep(0.0005)
        finally:
            for pid in running:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            os.close(errlog)
        with open(errpath) as f:
            errors = f.read()
        return killed_at, targeted_mid_reset, exited, errors

    def wait_for(self, what, predicate, timeout=30):
        deadline = time.monotonic() + timeout * harness.TIMEOUT_SCALE
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                self.fail(f'timed out waiting for {what}')
            time.sleep(0.1)

    def test_clients_killed_at_random(self):
        fds = self.fd_count()
        holders = self.holders()
        self.assertEqual(set(holders.values()), {'/'})
        self.assertEqual(self.env.call_manager('ListContexts')[1], [[]])
        seed = int(os.environ.get('HOTRESETD_CHURN_SEED') or random.randrange(1 << 30))

        t0 = time.monotonic()
        killed_at, targeted_mid_reset, exited, errors = self.churn(seed)
        elapsed = time.monotonic() - t0
        histogram = ', '.join(f'{name} {n}' for name, n in zip(STAGES, killed_at) if n)
        harness.log(f'{self.backend()}: {CLIENTS} clients (seed {seed}) killed in {elapsed:.1f} s, '
                    f'{CONCURRENCY} at a time; the stage each was in: {histogram}; '
                    f'killed right after sending a hot reset: {targeted_mid_reset}')
        self.assertEqual(errors, '', 'clients got errors no race explains')
        self.assertEqual(exited, [], 'clients that were not killed')
        self.assertEqual(sum(killed_at), CLIENTS)
        # The kills reached the stages that matter: every fourth client was
        # waiting for a hot reset when it died (bar the few whose scope
        # others held all along), and the others died all over the place.
        self.assertGreater(targeted_mid_reset, CLIENTS // TARGETED_EVERY // 2, histogram)
        for name in ('attaching', 'creating'):
            self.assertGreater(killed_at[S[name]], 0, histogram)

        # Everything the dead clients had goes (their resets finish first).
        self.assertDaemonRunning()
        self.wait_for('every lease of the killed clients to go',
                      lambda: self.env.call_manager('ListContexts')[1] == [[]])
        self.assertEqual(self.holders(), holders)
        self.assertFdCount(fds, 'after the churn')
        self.assertNoContexts()

        # Every device can be leased and reset again.
        ctx = self.persistent_context('after the churn')
        for a in DEVICES:
            self.busctl_call(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', a, 0)
        for scope, kind in SCOPES:
            if kind == 'hot':
                self.assertEqual(self.busctl_call(ctx, CONTEXT_IFACE, 'HotReset', 's', scope[0])[0],
                                 self.env.device_property(scope[0], 'Affected'))
            else:
                self.busctl_call(ctx, CONTEXT_IFACE, 'ResetDevice', 's', scope[0])
        self.busctl_call(ctx, CONTEXT_IFACE, 'Release')
        self.assertEqual(self.holders(), holders)
        self.assertFdCount(fds, 'after leasing and resetting every device again')
        self.assertNoContexts()


class CdevChurnTest(ChurnTests, LeaseTestCase):
    CDEV = True
    MACHINE = load_machine('leases.json', cdev=True, reset_delay_ms=RESET_DELAY_MS)


class GroupChurnTest(ChurnTests, LeaseTestCase):
    CDEV = False
    MACHINE = load_machine('leases.json', cdev=False, reset_delay_ms=RESET_DELAY_MS)


if __name__ == '__main__':
    harness.main()

#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The audit log: the daemon under a journal (JOURNAL_STREAM set, as under
systemd) sends one structured entry per decision to the journal's native
socket. Here the socket is the test's own, bind-mounted over
/run/systemd/journal in the daemon's private mount namespace, so every
field the daemon sends is seen: MESSAGE_ID per kind, the device, the
context, the caller, the result."""
import os
import socket
import struct
import subprocess
import tempfile
import threading

import harness
from harness import BUS_NAME, MANAGER_IFACE, ROOT_PATH

CONTEXT_IFACE = 'org.hotresetd.Broker1.Context'
IDS = {
    'lease-created': '78d8c9b1a22d4f2898acc19b93cae2d9',
    'lease-released': '582fce96f19541958a05455481badedd',
    'device-attached': 'a3412200f9f649de939f2af05297a122',
    'reset-done': '0969e552773a4531aac40911a23aada5',
    'reset-refused': '1798fcd48eda4627bf5799886d9106e0',
    'auth-refused': 'd86ce3bfb1c14c2686991d9604a78a62',
    'policy-reloaded': 'e30dde24ef8f4e908843e8bd0ec2e5d4',
    'call-done': '88119ecdbac0471aa6ea6cfb7fc08ca7',
    'call-refused': '6e9239e9e606410f9c1a223202b56999',
    'not-logged': 'd85b6bbac8e94e13be78dbeb6997fe28',
}
NVME, GPU = '0000:02:00.0', '0000:01:00.0'


def parse_native(data):
    """journald's native protocol: KEY=value lines, or KEY\\n<le64 size><value>\\n."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b'\n', i)
        line = data[i:nl]
        if b'=' in line:
            k, v = line.split(b'=', 1)
            fields[k.decode()] = v.decode(errors='replace')
            i = nl + 1
        else:
            (size,) = struct.unpack_from('<Q', data, nl + 1)
            start = nl + 9
            fields[line.decode()] = data[start:start + size].decode(errors='replace')
            i = start + size + 1
    return fields


class Journal:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='hrd-journal-')
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.path.join(self.dir, 'socket'))
        os.chmod(os.path.join(self.dir, 'socket'), 0o666)
        self.entries = []
        self.lock = threading.Lock()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                return
            with self.lock:
                self.entries.append(parse_native(data))

    def find(self, kind, **fields):
        with self.lock:
            return [e for e in self.entries if e.get('MESSAGE_ID') == IDS[kind]
                    and all(e.get(k) == v for k, v in fields.items())]


class JournaledDaemon(harness.Daemon):
    def __init__(self, env, machine_path, journal):
        super().__init__(env, machine_path, extra_env={'JOURNAL_STREAM': '8:1'})
        self.journal = journal

    def command(self):
        return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
                'mount --bind "$0" /run/systemd/journal && exec "$@"', self.journal.dir] + super().command()


class AuditTest(harness.HotresetdTestCase):
    MACHINE = None

    def setUp(self):
        super().setUp()
        os.makedirs('/run/systemd/journal', exist_ok=True)
        self.journal = Journal()
        self.env.write_machine(harness.load_example('workstation.json'))
        d = JournaledDaemon(self.env, self.env.machine_path, self.journal)
        self.env.daemons.append(d)
        self.env.daemon = d
        d.start()
        d.wait_ready()

    def wait_entry(self, kind, **fields):
        import time
        deadline = time.monotonic() + 10 * harness.TIMEOUT_SCALE
        while time.monotonic() < deadline:
            found = self.journal.find(kind, **fields)
            if found:
                return found[0]
            time.sleep(0.02)
        raise AssertionError(f'no {kind} entry with {fields}; got {self.journal.entries[-8:]}')

    def busctl(self, *args, user=None, check=True):
        cmd = ['busctl', '--system', '--json=short', 'call', BUS_NAME] + [str(a) for a in args]
        if user:
            cmd = harness.as_user(user, cmd)
        return subprocess.run(cmd, env=self.env.child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=60, check=check)

    def test_decisions_are_structured_entries(self):
        out = self.busctl(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', 2, 'Persistent', 'b', 'true',
                          'Description', 's', 'audited')
        ctx = __import__('json').loads(out.stdout)['data'][0]
        e = self.wait_entry('lease-created', HOTRESETD_CONTEXT=ctx)
        self.assertEqual(e['HOTRESETD_METHOD'], 'org.hotresetd.Broker1.Manager.CreateContext')
        self.assertEqual(e['HOTRESETD_RESULT'], 'success')
        self.assertEqual(e['HOTRESETD_CALLER_UID'], '0')
        self.assertEqual(e['HOTRESETD_CALLER_COMM'], 'busctl')
        self.assertTrue(e['HOTRESETD_CALLER'].startswith(':1.'))
        self.assertEqual(e['PRIORITY'], '6')

        self.busctl(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', NVME, 0)
        e = self.wait_entry('device-attached', HOTRESETD_DEVICE=NVME, HOTRESETD_CONTEXT=ctx)
        self.assertEqual(e['HOTRESETD_RESULT'], 'success')

        self.busctl(ctx, CONTEXT_IFACE, 'HotReset', 's', NVME)
        e = self.wait_entry('reset-done', HOTRESETD_DEVICE=NVME, HOTRESETD_CONTEXT=ctx)
        self.assertEqual((e['HOTRESETD_RESULT'], e['HOTRESETD_AFFECTED']), ('success', NVME))

        # A refused reset: its own kind, with the error's name.
        p = self.busctl(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', GPU, 0, check=False)
        self.assertNotEqual(p.returncode, 0)
        e = self.wait_entry('reset-refused', HOTRESETD_DEVICE=GPU)
        self.assertTrue(e['HOTRESETD_RESULT'].startswith('org.hotresetd.Broker1.Error.'), e)
        self.assertEqual(e['PRIORITY'], '5')

        self.busctl(ROOT_PATH, MANAGER_IFACE, 'Reload')
        self.wait_entry('policy-reloaded', HOTRESETD_RESULT='success')

        # An authorization refusal: polkit is not running here.
        user = harness.ensure_user('hrd-audit')
        self.env.allow_other_users()
        p = self.busctl(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', 0, user=user, check=False)
        self.assertNotEqual(p.returncode, 0)
        e = self.wait_entry('auth-refused', HOTRESETD_CALLER_UID=str(user[0]))
        self.assertEqual(e['HOTRESETD_RESULT'], 'org.freedesktop.DBus.Error.AccessDenied')

        # The lease's end: once, whatever ended it.
        self.busctl(ctx, CONTEXT_IFACE, 'Release')
        e = self.wait_entry('lease-released', HOTRESETD_CONTEXT=ctx)
        self.assertEqual(e['HOTRESETD_REASON'], 'released by its owner')
        self.assertEqual(len(self.journal.find('lease-released', HOTRESETD_CONTEXT=ctx)), 1)
        self.wait_entry('call-done', HOTRESETD_METHOD='org.hotresetd.Broker1.Context.Release')

    def test_refusals_of_one_user_are_limited_and_counted(self):
        """A user who makes many refused calls gets LoggedRefusalsPerUserPerMinute=
        lines into the journal: the first ones one by one, then counts of
        those that were not logged (from the same budget, so the flood
        costs the journal the budget and no more). Nothing is lost: the
        lines and the counts add up to the calls."""
        import time
        rate = 20
        self.env.write_config(f'[Limits]\nLoggedRefusalsPerUserPerMinute={rate}\n[Manager]\nUnleasedHotReset=no\n')
        self.busctl(ROOT_PATH, MANAGER_IFACE, 'Reload')
        user = harness.ensure_user('hrd-audit-flood')
        uid = str(user[0])
        self.env.allow_other_users()

        def flood(calls):
            """Manager.HotReset, refused by the policy before polkit."""
            script = ' '.join(f'busctl --system call {BUS_NAME} {ROOT_PATH} {MANAGER_IFACE} HotReset sa{{sv}} {GPU} 0 '
                              '2>/dev/null;' for _ in range(calls))
            subprocess.run(harness.as_user(user, ['sh', '-c', script]), env=self.env.child_env(), timeout=120,
                           stdout=subprocess.DEVNULL)

        def logged():
            return len(self.journal.find('reset-refused', HOTRESETD_CALLER_UID=uid))

        def counts():
            return [int(e['HOTRESETD_NOT_LOGGED']) for e in self.journal.find('not-logged', HOTRESETD_CALLER_UID=uid)]

        def wait_total(total):
            deadline = time.monotonic() + 30 * harness.TIMEOUT_SCALE
            while logged() + sum(counts()) < total and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertEqual(logged() + sum(counts()), total)

        with self.journal.lock:
            mark = len(self.journal.entries)
        flood(45)
        wait_total(45)
        # The burst one by one, at most a few more as tokens came back.
        self.assertGreaterEqual(logged(), rate)
        self.assertLess(logged(), 45)
        self.assertGreaterEqual(len(counts()), 1)
        e = self.journal.find('not-logged', HOTRESETD_CALLER_UID=uid)[0]
        self.assertIn(f'refused calls by uid {uid} were not logged one by one (over '
                      f'LoggedRefusalsPerUserPerMinute={rate})', e['MESSAGE'])
        self.assertEqual(e['PRIORITY'], '5')
        # No other notice per refused call: what reached the journal at
        # notice level or above is the entries and the counts.
        with self.journal.lock:
            loud = [x for x in self.journal.entries[mark:] if int(x.get('PRIORITY', '7')) <= 5]
        self.assertEqual(len(loud), logged() + len(counts()), loud[-3:])

        # Later refusals are counted again, and reported again.
        reports = len(counts())
        flood(10)
        wait_total(55)
        self.assertGreater(len(counts()), reports)

        # The limit lifted while refusals are counted: the count is still
        # reported (under the rate it was counted under), and from then on
        # every refusal is logged.
        flood(25)
        self.env.write_config('[Limits]\nLoggedRefusalsPerUserPerMinute=0\n[Manager]\nUnleasedHotReset=no\n')
        self.busctl(ROOT_PATH, MANAGER_IFACE, 'Reload')
        flood(3)
        wait_total(83)
        self.assertTrue(all(f'LoggedRefusalsPerUserPerMinute={rate})' in e['MESSAGE']
                            for e in self.journal.find('not-logged', HOTRESETD_CALLER_UID=uid)))

        # Root is not limited: its refusals are all logged.
        before = len(self.journal.find('reset-refused', HOTRESETD_CALLER_UID='0'))
        for _ in range(rate + 5):
            self.busctl(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', GPU, 0, check=False)
        deadline = time.monotonic() + 10 * harness.TIMEOUT_SCALE
        while len(self.journal.find('reset-refused', HOTRESETD_CALLER_UID='0')) < before + rate + 5 and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(len(self.journal.find('reset-refused', HOTRESETD_CALLER_UID='0')), before + rate + 5)
        self.assertEqual(self.journal.find('not-logged', HOTRESETD_CALLER_UID='0'), [])

if __name__ == '__main__':
    harness.main()

#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""hotresetctl's verbs for people against the real daemon on the emulated
workstation: status, scope (alias explain), reload, detach, reset-device,
contexts with each lease's kind and process; --json=pretty|short|off (the
JSON parsed and compared with what the daemon says on the bus),
--no-legend, --no-pager, --verbose; the friendly errors; every exit status
(0 ok, 1 failure, 2 usage, 3 reset refused or not possible); vendor and
device names from a hwdb the test compiles, shown in a mount namespace that
has only it, and absent in one that has none. The terminal (colour, width,
the polkit agent) is test_cli_terminal.py's."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DOMAIN_IFACE, MANAGER_IFACE, ROOT_PATH, device_path, domain_path, find_device  # noqa: E402
import cli_util  # noqa: E402

GPU, AUDIO, NVME, IGPU = '0000:01:00.0', '0000:01:00.1', '0000:02:00.0', '0000:00:02.0'
NIC_PF, VF0, VF2 = '0000:03:00.0', '0000:03:10.0', '0000:03:10.2'
PCI_BRIDGE, CMI, RTL = '0000:04:00.0', '0000:05:00.0', '0000:05:01.0'
CONTEXT_IFACE = 'org.hotresetd.Broker1.Context'
CONTEXT_PREFIX = ROOT_PATH + '/context/'
EMULATED_NOTE = 'Emulated machine: no real device was touched.'
NOT_RUNNING = 'hotresetd is not running: nothing owns org.hotresetd.Broker1 on the system bus'


class CliTestCase(harness.HotresetdTestCase):
    MACHINE = 'workstation.json'

    def setUp(self):
        super().setUp()
        self.machine = harness.load_example('workstation.json')
        self.children = []

    def tearDown(self):
        for p in self.children:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(harness.STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        super().tearDown()

    def ctl(self, *args, rc=0, env=None):
        """hotresetctl --no-names ARGS (exact output whatever hwdb this
        machine has); checks the exit status; returns (stdout, stderr)."""
        cmd = [cli_util.ctl_binary(), '--no-names'] + list(args)
        e = self.env.child_env()
        e['LC_ALL'] = 'C.UTF-8'
        e.update(env or {})
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                           env=e, text=True, timeout=harness.CALL_TIMEOUT + 10)
        if rc is not None and p.returncode != rc:
            self.fail(f'{" ".join(cmd)} exited with {p.returncode}, expected {rc}\n'
                      f'stdout:\n{p.stdout}\nstderr:\n{p.stderr}')
        return p.stdout, p.stderr

    def ctl_json(self, *args, rc=0, mode='short'):
        out, _ = self.ctl(f'--json={mode}', *args, rc=rc)
        return json.loads(out)

    def acquire(self, *addresses, extra=()):
        result = self.ctl_json('acquire', *extra, *addresses)
        path = result['context']
        self.assertTrue(path.startswith(CONTEXT_PREFIX), path)
        return path, path[len(CONTEXT_PREFIX):]

    def rewrite(self, **drivers):
        """Rebinds devices in the machine file ({address: driver}) and waits
        until the daemon reports it."""
        for address, driver in drivers.items():
            find_device(self.machine, address)['driver'] = driver
        self.env.rewrite_machine(self.machine)
        deadline = time.monotonic() + harness.SIGNAL_TIMEOUT
        for address, driver in drivers.items():
            while self.env.device_property(address, 'Driver') != (driver or ''):
                if time.monotonic() > deadline:
                    self.fail(f'the daemon never saw {address} bound to {driver}')
                time.sleep(0.05)


class StatusTest(CliTestCase):
    def status_fields(self, out):
        fields = {}
        key = None
        for line in out.splitlines():
            m = re.match(r'^\s*([A-Za-z ]+): (.*)$', line)
            if m:
                key = m.group(1).strip()
                fields[key] = m.group(2)
            else:
                fields[key] += '\n' + line.strip()
        return fields

    def test_status_text(self):
        out, err = self.ctl('status')
        self.assertEqual(err, '')
        f = self.status_fields(out)
        manager = self.env.get_all(ROOT_PATH, MANAGER_IFACE)
        self.assertEqual(f['Version'], manager['Version'])
        self.assertEqual(f['Version'], harness.expected_version())
        self.assertTrue(f['Backend'].startswith(manager['Backend'] + ' ('), f['Backend'])
        self.assertIn('iommufd', f['Backend'])
        self.assertIs(manager['Emulated'], True)
        self.assertEqual(f['Machine'], 'emulated: no real device is touched')
        n_domains = len(set(harness.expected_reset_domains(self.machine).values()) - {'/'})
        self.assertEqual(f['Devices'], f'{len(self.machine["devices"])} PCI functions, {n_domains} reset domains')
        self.assertEqual(f['Leases'], '0 contexts')
        self.assertEqual(f['Unleased reset'], 'enabled')
        self.assertTrue(f['Policy file'].startswith(manager['PolicyFile']), f['Policy file'])
        self.assertEqual(manager['PolicyFile'], self.env.config_path)
        for key, value in manager['Limits'].items():
            self.assertIn(f'{key}={value if value else "none"}', f['Limits'])

    def test_status_json_modes(self):
        short, _ = self.ctl('--json=short', 'status')
        self.assertEqual(short.count('\n'), 1)
        pretty, _ = self.ctl('status', '--json=pretty')
        self.assertGreater(pretty.count('\n'), 5)
        self.assertEqual(json.loads(short), json.loads(pretty))
        # Plain --json still works: one line when piped.
        plain, _ = self.ctl('--json', 'status')
        self.assertEqual(json.loads(plain), json.loads(short))
        self.assertEqual(plain.count('\n'), 1)
        # off: text again.
        off, _ = self.ctl('--json=off', 'status')
        self.assertTrue(off.lstrip().startswith('Version:'), off)

        s = json.loads(short)
        manager = self.env.get_all(ROOT_PATH, MANAGER_IFACE)
        objects = self.env.managed_objects()
        self.assertEqual(s['version'], manager['Version'])
        self.assertEqual(s['backend'], manager['Backend'])
        self.assertEqual(s['model'], manager['Backend'].replace('emulated-', ''))
        self.assertIs(s['emulated'], True)
        self.assertEqual(s['devices'], manager['DeviceCount'])
        self.assertEqual(s['reset_domains'], len(harness.domain_objects(objects)))
        self.assertEqual(s['contexts'], 0)
        self.assertIs(s['unleased_hot_reset'], manager['UnleasedHotReset'])
        self.assertEqual(s['policy_file'], manager['PolicyFile'])
        self.assertEqual(s['limits'], manager['Limits'])

        self.acquire(NVME)
        self.assertEqual(self.ctl_json('status')['contexts'], 1)

    def test_json_mode_errors(self):
        _, err = self.ctl('--json=yaml', 'status', rc=2)
        self.assertIn("unknown --json mode 'yaml'", err)
        _, err = self.ctl('status', '--json=', rc=2)
        self.assertIn('--json mode', err)
        # --no-pager is accepted, before or after the verb.
        out1, _ = self.ctl('--no-pager', 'status')
        out2, _ = self.ctl('status', '--no-pager')
        self.assertEqual(out1, out2)


class ScopeTest(CliTestCase):
    def scope_json(self, address, rc):
        return self.ctl_json('scope', address, rc=rc)

    def check_against_domain(self, result, address):
        """The JSON of scope against the device's ResetDomain object."""
        dev = self.env.device_properties(address)
        self.assertEqual(result['address'], address)
        self.assertEqual(result['path'], device_path(address))
        self.assertEqual(result['reset_scope'], dev['ResetScope'])
        self.assertEqual(result['possible'], dev['HotResetPossible'])
        self.assertIs(result['emulated'], True)
        if dev['ResetDomain'] == '/':
            self.assertIsNone(result['domain'])
            return None
        domain = self.env.get_all(dev['ResetDomain'], DOMAIN_IFACE)
        self.assertEqual(result['domain'], dev['ResetDomain'])
        self.assertEqual(result['bridge']['address'],
                         self.env.get_all(domain['Bridge'], harness.DEVICE_IFACE)['Address'])
        members = [d['address'] for b in result['buses'] for d in b['devices']]
        self.assertEqual(members, domain['Members'])
        for b in result['buses']:
            for d in b['devices']:
                self.assertEqual(d['address'][:7], b['bus'])
                props = self.env.device_properties(d['address'])
                self.assertEqual(d['driver'], props['Driver'] or None)
                self.assertEqual(d['iommu_group'], props['IommuGroup'] if props['IommuGroup'] >= 0 else None)
                self.assertIsNone(d['vendor_name'])  # --no-names
        blockers = [(b['address'], b['reason']) for b in result['blockers']]
        _, entries = self.env.check_hot_reset(address)
        self.assertEqual(blockers, [(a, r) for a, _, _, _, r in entries if r])
        return domain

    def test_scope_blocked_by_audio_function(self):
        out, err = self.ctl('scope', '01:00.0', rc=3)
        self.assertEqual(err, '')
        lines = out.splitlines()
        self.assertEqual(lines[0], 'Hot reset of 0000:01:00.0: not possible (bus reset by bridge 0000:00:01.0; '
                                   'affects 2 devices, 1 blocking).')
        self.assertEqual(re.split(r'\s{2,}', lines[1]), ['DEVICE', 'DRIVER', 'GROUP', 'HOLDER', 'NAME'])
        tree = [line.rstrip() for line in lines[2:6]]
        self.assertTrue(tree[0].startswith('0000:00:01.0 '), tree)
        self.assertEqual(tree[1], '└─bus 0000:01')
        self.assertTrue(re.match(r'^  ├─0000:01:00\.0\s+vfio-pci\s+14\s+-\s+-$', tree[2]), tree[2])
        self.assertTrue(re.match(r'^  └─0000:01:00\.1\s+snd_hda_intel\s+14\s+-\s+-$', tree[3]), tree[3])
        self.assertEqual(lines[6], '')
        self.assertEqual(lines[7:], ['• 0000:01:00.1 is bound to snd_hda_intel: bind it to vfio-pci (for example '
                                     '`driverctl set-override 0000:01:00.1 vfio-pci`).'])
        result = self.scope_json(GPU, rc=3)
        domain = self.check_against_domain(result, GPU)
        self.assertEqual(domain['Blockers'][0][0], AUDIO)
        self.assertIn('driverctl set-override 0000:01:00.1 vfio-pci', result['blockers'][0]['hint'])

        # explain is scope; --no-legend: the tree alone.
        self.assertEqual(self.ctl('explain', GPU, rc=3)[0], out)
        bare, _ = self.ctl('--no-legend', 'scope', GPU, rc=3)
        self.assertEqual([line.rstrip() for line in bare.splitlines()][1], '└─bus 0000:01')
        self.assertEqual(len(bare.splitlines()), 4)
        self.assertNotIn('Hot reset', bare)
        self.assertNotIn('•', bare)

    def test_scope_possible_and_fixed(self):
        out, _ = self.ctl('scope', NVME, rc=0)
        self.assertTrue(out.startswith('Hot reset of 0000:02:00.0: possible (bus reset by bridge 0000:00:06.0; '
                                       'affects 1 device).\n'), out)
        self.assertNotIn('•', out)
        self.check_against_domain(self.scope_json(NVME, rc=0), NVME)
        # Bind the audio function: the GPU's scope becomes possible.
        self.rewrite(**{AUDIO: 'vfio-pci'})
        result = self.scope_json(GPU, rc=0)
        self.assertIs(result['possible'], True)
        self.assertEqual(result['blockers'], [])

    def test_scope_root_bus(self):
        out, _ = self.ctl('scope', IGPU, rc=3)
        lines = out.splitlines()
        self.assertEqual(lines[0], 'Hot reset of 0000:00:02.0: not possible (on a root bus: no slot or bus reset).')
        self.assertTrue(re.match(r'^0000:00:02\.0\s+i915\s+2\s+-\s+-$', lines[2]), lines[2])
        self.assertIn('is on a root bus', lines[-1])
        self.assertIn(f'hotresetctl reset-device --context=N {IGPU}', lines[-1])
        result = self.scope_json(IGPU, rc=3)
        self.check_against_domain(result, IGPU)
        self.assertIsNone(result['bridge'])

    def test_scope_subordinate_bus(self):
        out, _ = self.ctl('scope', PCI_BRIDGE, rc=3)
        tree = [line.rstrip() for line in out.splitlines()]
        self.assertIn('├─bus 0000:04', tree)
        self.assertIn('└─bus 0000:05 (behind a bridge above)', tree)
        hints = [line for line in tree if line.startswith('• ')]
        self.assertEqual(len(hints), 2)
        self.assertIn(f'{PCI_BRIDGE} is a bridge inside the reset scope', hints[0])
        self.assertIn(f'{RTL} is bound to r8169', hints[1])
        result = self.scope_json(PCI_BRIDGE, rc=3)
        self.check_against_domain(result, PCI_BRIDGE)
        self.assertEqual([b['bus'] for b in result['buses']], ['0000:04', '0000:05'])
        self.assertIs(result['buses'][0]['devices'][0]['is_bridge'], True)

    def test_scope_held_by_two_contexts(self):
        self.rewrite(**{NIC_PF: 'vfio-pci'})
        path_a, a = self.acquire(VF0)
        path_b, b = self.acquire(VF2)
        out, _ = self.ctl('scope', VF0, rc=3)
        self.assertRegex(out, rf'(?m)^  ├─{VF0}\s+vfio-pci\s+17\s+context/{a}\s+-\s*$')
        self.assertRegex(out, rf'(?m)^  └─{VF2}\s+vfio-pci\s+18\s+context/{b}\s+-\s*$')
        self.assertIn(f'• {VF2} is held by context/{b}: reset through it (`hotresetctl reset --context={b} {VF2}`)'
                      f' or release it (`hotresetctl release {b}`).', out)
        result = self.scope_json(VF0, rc=3)
        self.check_against_domain(result, VF0)
        held = {d['address']: d['context'] for bus in result['buses'] for d in bus['devices']}
        self.assertEqual(held[VF0], path_a)
        self.assertEqual(held[VF2], path_b)

    def test_scope_errors(self):
        out, err = self.ctl('scope', '0a:00.0', rc=1)
        self.assertEqual(out, '')
        self.assertIn('0000:0a:00.0', err)
        self.assertNotIn('org.hotresetd.Broker1.Error', err)
        _, err = self.ctl('--verbose', 'scope', '0a:00.0', rc=1)
        self.assertIn('(org.hotresetd.Broker1.Error.NoSuchDevice)', err)
        _, err = self.ctl('scope', 'zz', rc=2)
        self.assertIn("invalid PCI address 'zz'", err)
        self.ctl('scope', rc=2)


class LeaseVerbsTest(CliTestCase):
    def test_detach(self):
        path, n = self.acquire(NVME, VF0)
        out, err = self.ctl('detach', NVME)
        self.assertEqual(out, f'Detached {NVME} from context/{n}.\n{EMULATED_NOTE}\n')
        self.assertEqual(self.env.get_all(path, CONTEXT_IFACE)['Devices'], [VF0])
        # Not held any more: no context to find, a failure.
        _, err = self.ctl('detach', NVME, rc=1)
        self.assertIn(f'{NVME} is not held by any context', err)
        # Named, the daemon answers NotAttached.
        _, err = self.ctl('--verbose', 'detach', f'--context={n}', NVME, rc=1)
        self.assertIn('NotAttached', err)
        # --no-legend: quiet; --json: what was detached from where.
        out, _ = self.ctl('--no-legend', 'detach', VF0)
        self.assertEqual(out, '')
        self.assertEqual(self.env.get_all(path, CONTEXT_IFACE)['Devices'], [])
        self.env.call(path, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', VF0, '0')
        self.env.call(path, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', NVME, '0')
        result = self.ctl_json('detach', VF0, NVME, mode='pretty')
        self.assertEqual(result, {'detached': [{'address': VF0, 'context': path}, {'address': NVME, 'context': path}],
                                  'emulated': True})
        self.assertEqual(self.env.get_all(path, CONTEXT_IFACE)['Devices'], [])
        # The context stays.
        self.assertEqual([c['path'] for c in self.ctl_json('contexts')], [path])
        _, err = self.ctl('detach', '--context=99', NVME, rc=1)
        self.assertIn('no context 99 (`hotresetctl contexts` lists them)', err)
        self.ctl('detach', '--context=x', NVME, rc=2)
        self.ctl('detach', 'zz', rc=2)

    def test_reset_device(self):
        path, n = self.acquire(NVME)
        out, _ = self.ctl('reset-device', '02:00.0')
        self.assertEqual(out, f'Function-level reset of {NVME} through context/{n} done.\n{EMULATED_NOTE}\n')
        result = self.ctl_json('reset-device', f'--context={path}', NVME, mode='pretty')
        self.assertEqual(result, {'address': NVME, 'context': path, 'emulated': True})
        # The GPU has only a bus reset: refused, exit status 3.
        self.rewrite(**{AUDIO: 'vfio-pci'})
        _, m = self.acquire(GPU)
        _, err = self.ctl('--verbose', 'reset-device', GPU, rc=3)
        self.assertIn('NoResetMechanism', err)
        # Not held: nothing to reset through.
        _, err = self.ctl('reset-device', VF0, rc=1)
        self.assertIn(f'{VF0} is not held by any context: acquire it first', err)
        _, err = self.ctl('reset-device', '--context=77', NVME, rc=1)
        self.assertIn('no context 77', err)
        self.ctl('reset-device', rc=2)

    def test_run_says_emulated(self):
        # run's stdout is COMMAND's: the note goes to stderr.
        out, err = self.ctl('run', '--device', NVME, '--', 'sh', '-c', 'echo vmm ran')
        self.assertEqual(out, 'vmm ran\n')
        self.assertIn('emulated machine', err)
        _, err = self.ctl('--no-legend', 'run', '--device', NVME, '--', 'true')
        self.assertEqual(err, '')

    def test_reload(self):
        self.env.write_config('[Limits]\nContextsPerUser=7\n')
        out, err = self.ctl('reload')
        self.assertEqual((out, err), ('', ''))
        self.assertEqual(self.ctl_json('status')['limits']['ContextsPerUser'], 7)
        self.env.write_config('[Limits]\nContextsPerUser=many\n')
        _, err = self.ctl('reload', rc=1)
        self.assertIn(self.env.config_path, err)
        self.assertIn('ContextsPerUser', err)
        # The policy in force stays.
        self.assertEqual(self.ctl_json('status')['limits']['ContextsPerUser'], 7)
        self.ctl('reload', 'now', rc=2)

    def test_acquire_help_tells_the_default(self):
        out, _ = self.ctl('acquire', '--help')
        self.assertRegex(out, r'--persistent\s+The default')
        path, _ = self.acquire(NVME)
        self.assertIs(self.env.get_all(path, CONTEXT_IFACE)['Persistent'], True)

    def wait_contexts(self, count):
        deadline = time.monotonic() + harness.SIGNAL_TIMEOUT
        while True:
            ctxs = self.ctl_json('contexts')
            if len(ctxs) >= count:
                return ctxs
            if time.monotonic() > deadline:
                self.fail(f'expected {count} contexts, have {ctxs}')
            time.sleep(0.05)

    def test_contexts_kinds_and_processes(self):
        persistent, _ = self.acquire(NVME, extra=('--description=kept',))
        e = self.env.child_env()
        transient = subprocess.Popen([cli_util.ctl_binary(), 'acquire', '--transient', VF0],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, env=e)
        self.children.append(transient)
        self.rewrite(**{NIC_PF: 'vfio-pci'})
        vmm = subprocess.Popen([cli_util.ctl_binary(), 'run', '--device', VF2, '--', 'sleep', '300'],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                               env=e)
        self.children.append(vmm)
        # run leases first, then becomes the VMM: wait for the exec too.
        deadline = time.monotonic() + harness.SIGNAL_TIMEOUT
        while True:
            ctxs = self.wait_contexts(3)
            by_kind = {c['kind']: c for c in ctxs}
            if by_kind.get('pid-tied', {}).get('command') == 'sleep' or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(set(by_kind), {'persistent', 'connection', 'pid-tied'})

        p = by_kind['persistent']
        self.assertEqual(p['path'], persistent)
        self.assertEqual((p['pid'], p['command'], p['unit'], p['machine']), (None, None, None, None))
        self.assertEqual(p['description'], 'kept')

        c = by_kind['connection']
        self.assertEqual(c['pid'], transient.pid)
        self.assertEqual(c['command'], 'hotresetctl')
        self.assertEqual(c['devices'], [VF0])
        self.assertTrue(c['owner'].startswith(':'), c['owner'])

        t = by_kind['pid-tied']
        self.assertEqual(t['pid'], vmm.pid)
        self.assertEqual(t['command'], 'sleep')  # run became the VMM
        self.assertEqual(t['devices'], [VF2])
        self.assertEqual(self.env.get_all(t['path'], CONTEXT_IFACE)['Lifetime'], 'process')

        out, _ = self.ctl('contexts')
        lines = out.splitlines()
        headers = ['CONTEXT', 'KIND', 'OWNER', 'UID', 'PID', 'COMMAND', 'UNIT', 'DEVICES', 'DESCRIPTION']
        self.assertEqual(re.split(r'\s{2,}', lines[0]), headers)
        rows = {}
        for line in lines[1:]:
            cells = re.split(r'\s{2,}', line.rstrip())
            rows[cells[1]] = cells
        self.assertEqual(rows['connection'][4:6], [str(transient.pid), 'hotresetctl'])
        self.assertEqual(rows['pid-tied'][4:6], [str(vmm.pid), 'sleep'])
        self.assertEqual(rows['persistent'][4:6], ['-', '-'])
        self.assertEqual(rows['persistent'][-1], 'kept')
        # Scripts: the first column, nothing else.
        bare, _ = self.ctl('--no-legend', 'contexts')
        self.assertEqual(sorted(line.split()[0] for line in bare.splitlines()),
                         sorted('context/' + c['path'][len(CONTEXT_PREFIX):] for c in ctxs))

        vmm.send_signal(signal.SIGTERM)
        vmm.wait(harness.STOP_TIMEOUT)
        transient.send_signal(signal.SIGINT)
        self.assertEqual(transient.wait(harness.STOP_TIMEOUT), 0)
        deadline = time.monotonic() + harness.SIGNAL_TIMEOUT
        while len(self.ctl_json('contexts')) != 1:
            self.assertLess(time.monotonic(), deadline, 'the leases of the processes did not end')
            time.sleep(0.05)


class ErrorsTest(CliTestCase):
    def test_not_running(self):
        self.env.stop_daemon()
        for verb in (['status'], ['list'], ['scope', GPU], ['reload'], ['contexts']):
            with self.subTest(verb=verb):
                out, err = self.ctl(*verb, rc=1)
                self.assertEqual(out, '')
                self.assertEqual(err, NOT_RUNNING + '\n')
        _, err = self.ctl('--verbose', 'status', rc=1)
        self.assertEqual(err, NOT_RUNNING + ' (org.freedesktop.DBus.Error.ServiceUnknown)\n')

    def test_unknown_context(self):
        for args in (['release', '9'], ['release', 'context/9'], ['hot-reset-info', '--context=9', NVME],
                     ['reset', '--context=9', NVME], ['detach', '--context=9', NVME],
                     ['reset-device', '--context=9', NVME]):
            with self.subTest(args=args):
                _, err = self.ctl(*args, rc=1)
                self.assertEqual(err, 'no context 9 (`hotresetctl contexts` lists them)\n')
        _, err = self.ctl('--verbose', 'release', '9', rc=1)
        self.assertEqual(err, 'no context 9 (`hotresetctl contexts` lists them) '
                              '(org.freedesktop.DBus.Error.UnknownObject)\n')

    def test_verbose_adds_the_error_name(self):
        _, err = self.ctl('reset', GPU, rc=3)
        self.assertIn(AUDIO, err)
        self.assertNotIn('(org.hotresetd.Broker1.Error.NotInDevSet)', err)
        _, err = self.ctl('reset', GPU, '--verbose', rc=3)
        self.assertTrue(err.rstrip().endswith('(org.hotresetd.Broker1.Error.NotInDevSet)'), err)

    def test_exit_statuses(self):
        # 0, 1, 2 and 3 for the verbs that can refuse; the rest 0/1/2.
        self.ctl('check', NVME, rc=0)
        self.ctl('check', GPU, rc=3)
        self.ctl('scope', NVME, rc=0)
        self.ctl('scope', GPU, rc=3)
        self.ctl('reset', IGPU, rc=3)
        self.ctl('reset', '0a:00.0', rc=1)
        self.ctl('status', 'extra', rc=2)
        self.ctl('--frobnicate', 'status', rc=2)
        self.ctl('list', '--json=xml', rc=2)


@unittest.skipIf(cli_util.namespace_missing(), cli_util.namespace_missing() or '')
class NamesTest(CliTestCase):
    """Names come from the hwdb; the test compiles its own (made-up names)
    and shows it, or no hwdb at all, in a private mount namespace."""

    def setUp(self):
        super().setUp()
        self.hwdb = cli_util.make_test_hwdb(self.env.tmpdir)

    def run_ns(self, hwdb, *args, rc=0):
        p = cli_util.run_in_hwdb_namespace(self.env, hwdb, args)
        if p.returncode != rc:
            self.fail(f'hotresetctl {" ".join(args)} exited with {p.returncode}, expected {rc}:\n'
                      f'{p.stdout}\n{p.stderr}')
        return p.stdout, p.stderr

    def test_list_with_and_without_names(self):
        out, err = self.run_ns(self.hwdb, 'list')
        self.assertEqual(err, '')
        lines = out.splitlines()
        self.assertEqual(re.split(r'\s{2,}', lines[0]), ['ADDRESS', 'DRIVER', 'SCOPE', 'GROUP', 'HOLDER', 'NAME'])
        rows = {line.split()[0]: re.split(r'\s{2,}', line.rstrip()) for line in lines[1:]}
        self.assertEqual(rows[GPU][-1], 'Test Vendor NV Test GPU 2204')
        self.assertEqual(rows[AUDIO][-1], 'Test Vendor NV Test Audio 1aef')
        self.assertEqual(rows[NVME][-1], 'Test Vendor SM Test NVMe a80a')
        self.assertEqual(rows[IGPU][-1], '-')  # not in this hwdb
        devices = json.loads(self.run_ns(self.hwdb, '--json=short', 'list')[0])
        by = {d['address']: d for d in devices}
        self.assertEqual((by[GPU]['vendor_name'], by[GPU]['device_name']), ('Test Vendor NV', 'Test GPU 2204'))
        self.assertEqual((by[IGPU]['vendor_name'], by[IGPU]['device_name']), (None, None))

        # No hwdb: the table as it always was, silently.
        out, err = self.run_ns(None, 'list')
        self.assertEqual(err, '')
        self.assertEqual(re.split(r'\s{2,}', out.splitlines()[0]), ['ADDRESS', 'DRIVER', 'SCOPE', 'GROUP', 'HOLDER'])
        self.assertEqual(out, self.ctl('list')[0])
        for d in json.loads(self.run_ns(None, '--json', 'list')[0]):
            self.assertEqual((d['vendor_name'], d['device_name']), (None, None))
        # --no-names with a hwdb: the same.
        self.assertEqual(self.run_ns(self.hwdb, '--no-names', 'list')[0], out)

    def test_info_and_scope_names(self):
        out, _ = self.run_ns(self.hwdb, 'info', GPU)
        self.assertIn('       Vendor: 0x10de (Test Vendor NV)\n       Device: 0x2204 (Test GPU 2204)\n', out)
        info = json.loads(self.run_ns(self.hwdb, '--json=short', 'info', GPU)[0])
        self.assertEqual((info['vendor_name'], info['device_name']), ('Test Vendor NV', 'Test GPU 2204'))
        out, _ = self.run_ns(None, 'info', GPU)
        self.assertIn('       Vendor: 0x10de\n       Device: 0x2204\n', out)
        self.assertIsNone(json.loads(self.run_ns(None, '--json', 'info', GPU)[0])['vendor_name'])

        out, _ = self.run_ns(self.hwdb, 'scope', GPU, rc=3)
        self.assertRegex(out, rf'(?m)^  ├─{GPU}\s+vfio-pci\s+14\s+-\s+Test Vendor NV Test GPU 2204$')
        self.assertRegex(out, rf'(?m)^  └─{AUDIO}\s+snd_hda_intel\s+14\s+-\s+Test Vendor NV Test Audio 1aef$')
        result = json.loads(self.run_ns(self.hwdb, '--json=short', 'scope', GPU, rc=3)[0])
        self.assertEqual(result['buses'][0]['devices'][1]['device_name'], 'Test Audio 1aef')
        out, _ = self.run_ns(None, 'scope', GPU, rc=3)
        self.assertNotIn('Test', out)
        self.assertRegex(out, rf'(?m)^  ├─{GPU}\s+vfio-pci\s+14\s+-\s+-$')


if __name__ == '__main__':
    harness.main()

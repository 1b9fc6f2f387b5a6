#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""hotresetctl against the real daemon on the emulated workstation: exact
table output of list, info and check, --json parsed and compared with what
busctl reads from the daemon, exit statuses (0 ok, 1 error, 2 usage, 3 reset
refused or not possible), monitor catching udev-like events, and — when the
daemon can make contexts — acquire, contexts, hot-reset-info, reset and
release."""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (ADDRESS_FORM, CDEV_RE, DEVICE_IFACE, ROOT_PATH, device_path, find_device)  # noqa: E402

GPU, AUDIO, NVME, IGPU = '0000:01:00.0', '0000:01:00.1', '0000:02:00.0', '0000:00:02.0'
PCI_BRIDGE, CMI, RTL, NEW = '0000:04:00.0', '0000:05:00.0', '0000:05:01.0', '0000:05:02.0'
VF0 = '0000:03:10.0'

CONTEXT_IFACE = 'org.hotresetd.Broker1.Context'
CONTEXT_PREFIX = ROOT_PATH + '/context/'
ERR_NO_SUCH_DEVICE = harness.ERR_NO_SUCH_DEVICE
ERR_NOT_IN_DEV_SET = 'org.hotresetd.Broker1.Error.NotInDevSet'
ERR_NO_RESET_MECHANISM = 'org.hotresetd.Broker1.Error.NoResetMechanism'

TIMESTAMP_RE = r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}'

# `hotresetctl list` on examples/workstation.json, byte for byte.
WORKSTATION_LIST = '''\
ADDRESS       DRIVER         SCOPE  GROUP  HOLDER
0000:00:00.0  -              none   0      -
0000:00:01.0  pcieport       none   1      -
0000:00:02.0  i915           none   2      -
0000:00:06.0  pcieport       none   3      -
0000:00:14.0  xhci_hcd       none   4      -
0000:00:1c.0  pcieport       none   5      -
0000:00:1c.4  pcieport       none   6      -
0000:01:00.0  vfio-pci       bus    14     -
0000:01:00.1  snd_hda_intel  bus    14     -
0000:02:00.0  vfio-pci       bus    15     -
0000:03:00.0  ixgbe          bus    16     -
0000:03:10.0  vfio-pci       bus    17     -
0000:03:10.2  vfio-pci       bus    18     -
0000:04:00.0  -              bus    19     -
0000:05:00.0  vfio-pci       bus    19     -
0000:05:01.0  r8169          bus    19     -
'''

SB_LIVE = {'address': NEW, 'vendor': '0x1102', 'device': '0x0002', 'class': '0x040100',
           'driver': 'snd_emu10k1', 'iommu_group': 19, 'reset_methods': ['pm'],
           'description': 'Creative SB Live! (EMU10K1), plugged into the PCI bus'}


def ctl_binary():
    path = os.environ.get('HOTRESETCTL_BIN')
    if path:
        return path
    p = os.path.join(harness.SOURCE_ROOT, 'build', 'client', 'hotresetctl')
    if os.access(p, os.X_OK):
        return p
    raise RuntimeError('HOTRESETCTL_BIN is not set (run the tests with `meson test`)')


def parse_table(text, headers):
    """Rows of an aligned table as lists of cells, checking the layout: the
    header line is exactly the headers, every cell starts at its header's
    column, with at least two spaces before it."""
    lines = text.splitlines()
    header = lines[0]
    starts = []
    pos = 0
    for h in headers:
        i = header.index(h, pos)
        starts.append(i)
        pos = i + len(h)
    assert re.split(r'\s{2,}', header) == list(headers), header
    rows = []
    for line in lines[1:]:
        cells = []
        for k, s in enumerate(starts):
            end = starts[k + 1] if k + 1 < len(starts) else len(line)
            if k > 0:
                assert line[s - 2:s] == '  ', f'column {headers[k]} misaligned in {line!r}'
                assert line[s] != ' ', f'column {headers[k]} misaligned in {line!r}'
            cells.append(line[s:end].rstrip())
        rows.append(cells)
    return rows


def probe_contexts():
    """Can the daemon make contexts yet? (CreateContext answers 'Operation
    not supported' until the emulated vfio backend is wired in.)"""
    env = harness.Env('hotresetctl-probe')
    try:
        env.start_bus()
        env.start_daemon('workstation.json')
        p = env.busctl('call', harness.BUS_NAME, ROOT_PATH, harness.MANAGER_IFACE, 'CreateContext',
                       'a{sv}', '0', check=False)
        if p.returncode != 0:
            harness.log('CreateContext is not supported yet: ' + p.stderr.decode(errors='replace').strip())
        return p.returncode == 0
    except Exception as e:  # the other tests report a broken daemon
        harness.log(f'probing CreateContext failed: {e}')
        return False
    finally:
        env.close()


CONTEXTS = probe_contexts()
NEEDS_CONTEXTS = unittest.skipUnless(CONTEXTS, 'the daemon cannot create contexts yet (CreateContext fails)')


class Monitor:
    """`hotresetctl [--json] monitor` in the background, its lines collected
    by threads."""

    def __init__(self, env, json_mode):
        args = [ctl_binary()] + (['--json'] if json_mode else []) + ['monitor']
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env.child_env(), text=True)
        self.lines = []
        self.stderr = queue.Queue()
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._read_stdout, daemon=True),
                        threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self.threads:
            t.start()

    def _read_stdout(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip('\n'))
                self.cond.notify_all()

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr.put(line)

    def wait_ready(self):
        """The monitor prints its banner on stderr once its matches are on
        the bus: from then on no event is missed."""
        line = self.stderr.get(timeout=harness.START_TIMEOUT)
        assert line.startswith('Monitoring hotresetd events'), line
        return line

    def wait_line(self, predicate, what):
        deadline = time.monotonic() + harness.SIGNAL_TIMEOUT
        with self.cond:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(remaining)
        raise AssertionError(f'monitor printed no {what}; it printed:\n' + '\n'.join(self.lines))

    def wait_event(self, predicate, what):
        """--json mode: the first object matching predicate."""
        def match(line):
            try:
                return predicate(json.loads(line))
            except ValueError:
                raise AssertionError(f'monitor printed a line that is not JSON: {line!r}')
        return json.loads(self.wait_line(match, what))

    def stop(self, sig=signal.SIGINT):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(harness.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        for t in self.threads:
            t.join(5)
        return rc


class HotresetctlTest(harness.HotresetdTestCase):
    MACHINE = 'workstation.json'

    def setUp(self):
        super().setUp()
        self.machine = harness.load_example('workstation.json')
        self.monitors = []

    def tearDown(self):
        for m in self.monitors:
            m.stop(signal.SIGKILL)
        super().tearDown()

    def ctl(self, *args, rc=0, timeout=None, names=False, verbose=True):
        """Runs hotresetctl; checks its exit status; returns (stdout, stderr).
        By default with --no-names (exact tables whether or not this machine
        has a hwdb) and --verbose (the D-Bus error names the tests check)."""
        cmd = [ctl_binary()] + ([] if names else ['--no-names']) + (['--verbose'] if verbose else []) + list(args)
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                           env=self.env.child_env(), timeout=timeout or harness.CALL_TIMEOUT + 10, text=True)
        if rc is not None and p.returncode != rc:
            self.fail(f'{" ".join(cmd)} exited with {p.returncode}, expected {rc}\n'
                      f'stdout:\n{p.stdout}\nstderr:\n{p.stderr}')
        return p.stdout, p.stderr

    def ctl_json(self, *args, rc=0):
        out, _ = self.ctl('--json', *args, rc=rc)
        return json.loads(out)

    def wait_for_json(self, predicate, *args):
        """Polls `hotresetctl --json ARGS` until predicate(result). Used instead
        of the harness' signal recorder in tests that call list or contexts:
        the recorder's busctl monitor can be killed at teardown with the tail of
        the large GetManagedObjects reply still in its output buffer, and the
        harness then reports 'bus monitor output not understood'."""
        deadline = time.monotonic() + harness.SIGNAL_TIMEOUT
        while True:
            result = self.ctl_json(*args)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                self.fail(f'hotresetctl {" ".join(args)} never matched; last: {result}')
            time.sleep(0.05)

    def monitor(self, json_mode=True):
        m = Monitor(self.env, json_mode)
        self.monitors.append(m)
        m.wait_ready()
        return m

    # --- global options and usage

    def test_version_and_help(self):
        out, _ = self.ctl('--version')
        self.assertEqual(out, f'hotresetctl {harness.expected_version()}\n')
        out, _ = self.ctl('--help')
        for verb in ('list', 'info', 'check', 'acquire', 'release', 'contexts', 'reset', 'hot-reset-info',
                     'monitor'):
            self.assertRegex(out, rf'(?m)^  {verb}\b')
        out, _ = self.ctl('check', '--help')
        self.assertTrue(out.startswith('hotresetctl check ADDRESS\n'), out)

    def test_usage_errors(self):
        _, err = self.ctl(rc=2)
        self.assertIn('no command', err)
        _, err = self.ctl('frobnicate', rc=2)
        self.assertIn("unknown command 'frobnicate'", err)
        _, err = self.ctl('check', rc=2)
        self.assertIn('missing argument', err)
        _, err = self.ctl('check', GPU, NVME, rc=2)
        self.assertIn('too many arguments', err)
        _, err = self.ctl('list', '--frobnicate', rc=2)
        self.assertIn('--frobnicate', err)
        _, err = self.ctl('hot-reset-info', GPU, rc=2)
        self.assertIn('--context', err)
        _, err = self.ctl('release', 'x', rc=2)
        self.assertIn("invalid context 'x'", err)
        self.ctl('reset', '--context=/org/hotresetd/Broker1/device/pci_0000_01_00_0', GPU, rc=2)

    def test_malformed_address(self):
        for verb in ('info', 'check', 'reset', 'acquire'):
            for bad in ('zz', '01:00', '0000:01:00.8', '0000:01:20.0', '1:00.0', '0000:01:00.0x', ''):
                with self.subTest(verb=verb, address=bad):
                    out, err = self.ctl(verb, bad, rc=2)
                    self.assertEqual(out, '')
                    self.assertIn(f"invalid PCI address '{bad}'", err)
                    self.assertIn(ADDRESS_FORM, err)
                    self.assertIn('01:00.0', err)
        self.assertDaemonRunning()

    def test_no_daemon(self):
        self.env.stop_daemon()
        _, err = self.ctl('list', rc=1, verbose=False)
        self.assertEqual(err, 'hotresetd is not running: nothing owns org.hotresetd.Broker1 on the system bus\n')
        _, err = self.ctl('list', rc=1)
        self.assertIn('hotresetd is not running', err)
        self.assertIn('org.freedesktop.DBus.Error.ServiceUnknown', err)

    # --- list

    def test_list_table(self):
        out, err = self.ctl('list')
        self.assertEqual(out, WORKSTATION_LIST)
        self.assertEqual(err, '')

    def test_list_no_legend(self):
        # Without the header the columns are as wide as their cells.
        out, _ = self.ctl('--no-legend', 'list')
        self.assertEqual(out.splitlines()[0], '0000:00:00.0  -              none  0   -')
        self.assertEqual(out.splitlines()[8], '0000:01:00.1  snd_hda_intel  bus   14  -')
        self.assertEqual([re.split(r'\s{2,}', line) for line in out.splitlines()],
                         [re.split(r'\s{2,}', line) for line in WORKSTATION_LIST.splitlines()[1:]])
        # Global options also work after the verb.
        out2, _ = self.ctl('list', '--no-legend')
        self.assertEqual(out2, out)

    def test_list_json(self):
        devices = self.ctl_json('list')
        self.assertIsInstance(devices, list)
        listed = self.env.list_devices()
        self.assertEqual([d['address'] for d in devices], [a for a, _, _, _ in listed])
        for d, (address, driver, scope, path) in zip(devices, listed):
            with self.subTest(address=address):
                m = find_device(self.machine, address)
                self.assertEqual(set(d), {'address', 'driver', 'reset_scope', 'iommu_group', 'context', 'path',
                                          'vendor_name', 'device_name'})
                self.assertIsNone(d['vendor_name'])  # --no-names
                self.assertIsNone(d['device_name'])
                self.assertEqual(d['driver'], driver or None)
                self.assertEqual(d['driver'], m['driver'])
                self.assertEqual(d['reset_scope'], scope)
                self.assertEqual(d['path'], path)
                self.assertEqual(d['path'], device_path(address))
                self.assertEqual(d['iommu_group'], m['iommu_group'])
                self.assertIsNone(d['context'])
        # Also with --json after the verb.
        self.assertEqual(json.loads(self.ctl('list', '--json')[0]), devices)

    def test_list_follows_the_machine(self):
        find_device(self.machine, AUDIO)['driver'] = 'vfio-pci'
        find_device(self.machine, RTL)['driver'] = None
        find_device(self.machine, RTL)['iommu_group'] = None
        self.env.rewrite_machine(self.machine)
        # (No signal recorder here: see wait_for_json.)
        self.wait_for_json(lambda info: info['driver'] is None and info['iommu_group'] is None, 'info', RTL)
        self.wait_for_json(lambda info: info['driver'] == 'vfio-pci', 'info', AUDIO)
        out, _ = self.ctl('--no-legend', 'list')
        rows = {line.split()[0]: line.split() for line in out.splitlines()}
        self.assertEqual(rows[AUDIO], [AUDIO, 'vfio-pci', 'bus', '14', '-'])
        self.assertEqual(rows[RTL], [RTL, '-', 'bus', '-', '-'])

    # --- info

    def test_info(self):
        cdev = self.env.device_property(GPU, 'CdevPath')
        self.assertRegex(cdev, CDEV_RE)
        expected = f'''\
         Path: {device_path(GPU)}
      Address: 0000:01:00.0
       Vendor: 0x10de
       Device: 0x2204
        Class: 0x030000
       Bridge: no
       Driver: vfio-pci
  IOMMU group: 14
         Cdev: {cdev}
Reset methods: bus
  Reset scope: bus
     Affected: 0000:01:00.0 0000:01:00.1
      Context: -
    Hot reset: not possible (see: hotresetctl scope)
'''
        for address in (GPU, '01:00.0', '0000:01:00.0'.upper()):
            with self.subTest(address=address):
                out, _ = self.ctl('info', address)
                self.assertEqual(out, expected)

    def test_info_bridge_and_unbound(self):
        out, _ = self.ctl('info', PCI_BRIDGE)
        self.assertIn('       Bridge: yes\n', out)
        self.assertIn('       Driver: -\n', out)
        self.assertIn('         Cdev: -\n', out)
        self.assertIn('Reset methods: -\n', out)
        self.assertIn('     Affected: 0000:04:00.0 0000:05:00.0 0000:05:01.0\n', out)

    def test_info_json(self):
        for address in (GPU, NVME, PCI_BRIDGE, IGPU):
            with self.subTest(address=address):
                info = self.ctl_json('info', address)
                props = self.env.device_properties(address)
                # Affected is explicit: not in GetAll, read with Get.
                self.assertNotIn('Affected', props)
                props['Affected'] = self.env.device_property(address, 'Affected')
                self.assertEqual(info, {
                    'path': device_path(address),
                    'address': props['Address'],
                    'vendor_id': props['VendorId'],
                    'device_id': props['DeviceId'],
                    'class': props['Class'],
                    'is_bridge': props['IsBridge'],
                    'driver': props['Driver'] or None,
                    'iommu_group': props['IommuGroup'] if props['IommuGroup'] >= 0 else None,
                    'cdev_path': props['CdevPath'] or None,
                    'reset_methods': props['ResetMethods'],
                    'reset_scope': props['ResetScope'],
                    'affected': props['Affected'],
                    'context': None if props['Context'] == '/' else props['Context'],
                    'hot_reset_possible': props['HotResetPossible'],
                    'vendor_name': None,  # --no-names
                    'device_name': None,
                })
                m = find_device(self.machine, address)
                self.assertEqual(info['vendor_id'], int(m['vendor'], 16))
                self.assertEqual(info['class'], int(m['class'], 16))

    def test_info_unknown_device(self):
        out, err = self.ctl('info', '0a:00.0', rc=1)
        self.assertEqual(out, '')
        self.assertIn('0000:0a:00.0', err)
        self.assertIn(ERR_NO_SUCH_DEVICE, err)

    # --- check

    CHECK_HEADERS = ('ADDRESS', 'DRIVER', 'GROUP', 'HOLDER', 'REASON')

    def expected_check_rows(self, address):
        possible, entries = self.env.check_hot_reset(address)
        rows = [[a, driver or '-', str(group) if group >= 0 else '-',
                 holder[len(ROOT_PATH) + 1:] if holder else '-', reason or '-']
                for a, driver, group, holder, reason in entries]
        return possible, rows

    def test_check_blocked_by_audio_function(self):
        out, err = self.ctl('check', '01:00.0', rc=3)
        self.assertEqual(err, '')
        verdict, table = out.split('\n', 1)
        self.assertEqual(verdict, 'Hot reset of 0000:01:00.0: not possible (bus reset; affects 2 devices, '
                                  '1 blocking).')
        rows = parse_table(table, self.CHECK_HEADERS)
        possible, expected = self.expected_check_rows(GPU)
        self.assertIs(possible, False)
        self.assertEqual(rows, expected)
        self.assertEqual(rows[0][:4], [GPU, 'vfio-pci', '14', '-'])
        self.assertEqual(rows[0][4], '-')
        self.assertEqual(rows[1][:4], [AUDIO, 'snd_hda_intel', '14', '-'])
        self.assertIn('snd_hda_intel', rows[1][4])
        self.assertTrue(rows[1][4].startswith('not bound to a vfio driver'), rows[1][4])

    def test_check_possible_exact(self):
        expected = '''\
Hot reset of 0000:02:00.0: possible (bus reset; affects 1 device).
ADDRESS       DRIVER    GROUP  HOLDER  REASON
0000:02:00.0  vfio-pci  15     -       -
'''
        out, _ = self.ctl('check', '02:00.0')
        self.assertEqual(out, expected)
        # The long form.
        out, _ = self.ctl('check', NVME)
        self.assertEqual(out, expected)
        # --no-legend: no header and no verdict either.
        out, _ = self.ctl('--no-legend', 'check', NVME)
        self.assertEqual(out, '0000:02:00.0  vfio-pci  15  -  -\n')

    def test_check_root_bus_and_bridge(self):
        out, _ = self.ctl('check', IGPU, rc=3)
        verdict, table = out.split('\n', 1)
        self.assertEqual(verdict, 'Hot reset of 0000:00:02.0: not possible (no slot or bus reset on a root bus).')
        rows = parse_table(table, self.CHECK_HEADERS)
        self.assertEqual(rows, self.expected_check_rows(IGPU)[1])
        self.assertTrue(rows[0][4].startswith('no reset mechanism'), rows[0][4])

        out, _ = self.ctl('check', CMI, rc=3)
        verdict, table = out.split('\n', 1)
        self.assertEqual(verdict, 'Hot reset of 0000:05:00.0: not possible (bus reset; affects 2 devices, '
                                  '1 blocking).')
        self.assertEqual(parse_table(table, self.CHECK_HEADERS), self.expected_check_rows(CMI)[1])

        out, _ = self.ctl('check', PCI_BRIDGE, rc=3)
        rows = parse_table(out.split('\n', 1)[1], self.CHECK_HEADERS)
        self.assertEqual(rows, self.expected_check_rows(PCI_BRIDGE)[1])
        self.assertTrue(rows[0][4].startswith('bridge in reset scope'), rows[0][4])

    def test_check_json(self):
        result = self.ctl_json('check', GPU, rc=3)
        possible, entries = self.env.check_hot_reset(GPU)
        self.assertEqual(result, {
            'address': GPU,
            'path': device_path(GPU),
            'possible': False,
            'reset_scope': 'bus',
            'devices': [{'address': a, 'driver': d or None, 'iommu_group': g if g >= 0 else None,
                         'context': h or None, 'reason': r or None} for a, d, g, h, r in entries],
        })
        self.assertIn('snd_hda_intel', result['devices'][1]['reason'])
        result = self.ctl_json('check', NVME, rc=0)
        self.assertIs(result['possible'], True)

    def test_check_after_binding_the_audio_function(self):
        find_device(self.machine, AUDIO)['driver'] = 'vfio-pci'
        rec, mark = self.record()
        self.env.rewrite_machine(self.machine)
        rec.wait_properties(device_path(GPU), DEVICE_IFACE, {'HotResetPossible': True}, mark)
        out, _ = self.ctl('check', GPU, rc=0)
        self.assertEqual(out, '''\
Hot reset of 0000:01:00.0: possible (bus reset; affects 2 devices).
ADDRESS       DRIVER    GROUP  HOLDER  REASON
0000:01:00.0  vfio-pci  14     -       -
0000:01:00.1  vfio-pci  14     -       -
''')

    def test_check_unknown_device(self):
        for address, canonical in (('0a:00.0', '0000:0a:00.0'), ('0001:01:00.0', '0001:01:00.0')):
            with self.subTest(address=address):
                out, err = self.ctl('check', address, rc=1)
                self.assertEqual(out, '')
                self.assertIn(canonical, err)
                self.assertIn(ERR_NO_SUCH_DEVICE, err)
        self.assertDaemonRunning()

    # --- reset refusals (no context needed: refused before one is made)

    def test_reset_refused(self):
        out, err = self.ctl('reset', GPU, rc=3)
        self.assertEqual(out, '')
        self.assertIn(ERR_NOT_IN_DEV_SET, err)
        self.assertIn(AUDIO, err)
        self.assertIn('snd_hda_intel', err)

        _, err = self.ctl('reset', IGPU, rc=3)
        self.assertIn(ERR_NO_RESET_MECHANISM, err)
        self.assertIn(IGPU, err)

        _, err = self.ctl('reset', '0a:00.0', rc=1)
        self.assertIn(ERR_NO_SUCH_DEVICE, err)
        self.assertIn('0000:0a:00.0', err)

    # --- contexts without any

    def test_contexts_none(self):
        out, _ = self.ctl('contexts')
        self.assertEqual(out, 'CONTEXT  KIND  OWNER  UID  PID  COMMAND  UNIT  DEVICES  DESCRIPTION\n')
        self.assertEqual(self.ctl_json('contexts'), [])
        out, err = self.ctl('release', '99', rc=1)
        self.assertEqual(out, '')
        self.assertIn('no context 99 (`hotresetctl contexts` lists them)', err)
        _, err = self.ctl('hot-reset-info', NVME, '--context=99', rc=1)
        self.assertIn('no context 99 (`hotresetctl contexts` lists them)', err)

    # --- monitor

    def test_monitor_json_bind(self):
        mon = self.monitor(json_mode=True)
        find_device(self.machine, AUDIO)['driver'] = 'vfio-pci'
        self.env.rewrite_machine(self.machine)
        ev = mon.wait_event(lambda e: e.get('event') == 'device-changed' and e.get('address') == AUDIO
                            and 'Driver' in e.get('properties', {}), 'bind event of the audio function')
        self.assertEqual(ev['properties']['Driver'], 'vfio-pci')
        self.assertRegex(ev['properties']['CdevPath'], CDEV_RE)
        self.assertEqual(ev['object'], device_path(AUDIO))
        self.assertEqual(ev['interface'], DEVICE_IFACE)
        self.assertRegex(ev['timestamp'], '^' + TIMESTAMP_RE + '$')
        self.assertIsInstance(ev['timestamp_usec'], int)
        self.assertLess(abs(ev['timestamp_usec'] / 1e6 - time.time()), 60)
        # The GPU's verdict changes with it.
        ev = mon.wait_event(lambda e: e.get('event') == 'device-changed' and e.get('address') == GPU,
                            'change of the GPU')
        self.assertIs(ev['properties']['HotResetPossible'], True)

        # Unbinding is an event too.
        find_device(self.machine, AUDIO)['driver'] = None
        self.env.rewrite_machine(self.machine)
        ev = mon.wait_event(lambda e: e.get('event') == 'device-changed' and e.get('address') == AUDIO
                            and e['properties'].get('Driver') == '', 'unbind event of the audio function')
        self.assertEqual(ev['properties']['CdevPath'], '')
        self.assertEqual(mon.stop(signal.SIGINT), 0)

    def test_monitor_text_hotplug(self):
        mon = self.monitor(json_mode=False)
        self.machine['devices'].append(SB_LIVE)
        self.env.rewrite_machine(self.machine)
        mon.wait_line(lambda l: re.fullmatch(
            TIMESTAMP_RE + r' device-added 0000:05:02\.0 Driver=snd_emu10k1 IommuGroup=19 ResetScope=bus '
            r'HotResetPossible=no', l), 'device-added line')
        mon.wait_line(lambda l: re.fullmatch(
            TIMESTAMP_RE + r' device-changed 0000:05:00\.0 Affected=0000:05:00\.0,0000:05:01\.0,0000:05:02\.0', l),
            'device-changed line for the sibling')
        mon.wait_line(lambda l: re.fullmatch(TIMESTAMP_RE + r' manager-changed manager DeviceCount=17', l),
                      'DeviceCount change')
        self.machine['devices'].pop()
        self.env.rewrite_machine(self.machine)
        mon.wait_line(lambda l: re.fullmatch(TIMESTAMP_RE + r' device-removed 0000:05:02\.0', l),
                      'device-removed line')
        self.assertEqual(mon.stop(signal.SIGTERM), 0)

    def test_monitor_daemon_stops(self):
        mon = self.monitor(json_mode=True)
        owner = self.daemon.unique_name
        self.assertEqual(self.env.stop_daemon(), 0)
        ev = mon.wait_event(lambda e: e.get('event') == 'daemon-stopped', 'daemon-stopped event')
        self.assertEqual(ev['owner'], owner)
        self.assertEqual(mon.stop(), 0)

    # --- contexts (skipped while the daemon cannot make them)

    def acquire(self, *args):
        out, err = self.ctl(*args)
        # The emulated kernel is said on the last line.
        self.assertTrue(out.endswith('\nEmulated machine: no real device was touched.\n'), out)
        out = out[:out.rindex('Emulated machine:')]
        first, table = out.split('\n', 1)
        self.assertTrue(first.startswith('Context: ' + CONTEXT_PREFIX), out)
        path = first[len('Context: '):]
        number = path[len(CONTEXT_PREFIX):]
        if '--transient' not in args:
            self.assertIn(f'hotresetctl release {number}', err)  # how to let go, for people
        return path, number, parse_table(table, ('ADDRESS', 'DEVID'))

    @NEEDS_CONTEXTS
    def test_acquire_contexts_release(self):
        path, n, rows = self.acquire('acquire', '--description=test lease', '02:00.0')
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0][0], NVME)
        self.assertGreater(int(rows[0][1]), 0)
        # Persistent by default: it outlived hotresetctl.
        props = self.env.get_all(path, CONTEXT_IFACE)
        self.assertIs(props['Persistent'], True)
        self.assertEqual(props['Devices'], [NVME])
        self.assertEqual(props['Description'], 'test lease')

        out, _ = self.ctl('contexts')
        rows = parse_table(out, ('CONTEXT', 'KIND', 'OWNER', 'UID', 'PID', 'COMMAND', 'UNIT', 'DEVICES',
                                 'DESCRIPTION'))
        # Persistent: no process behind it any more.
        self.assertEqual(rows, [[f'context/{n}', 'persistent', props['Owner'], '0', '-', '-', '-', NVME,
                                 'test lease']])
        ctxs = self.ctl_json('contexts')
        self.assertEqual(ctxs, [{'path': path, 'id': int(n), 'owner': props['Owner'], 'owner_uid': 0,
                                 'persistent': True, 'backend': props['Backend'], 'description': 'test lease',
                                 'devices': [NVME], 'kind': 'persistent', 'pid': None, 'command': None,
                                 'unit': None, 'machine': None}])

        # The holder shows in list and check.
        out, _ = self.ctl('list')
        self.assertIn(f'{NVME}  vfio-pci       bus    15     context/{n}\n', out)
        self.assertEqual(self.ctl_json('list')[9]['context'], path)
        out, _ = self.ctl('check', NVME)
        self.assertEqual(out, f'''\
Hot reset of {NVME}: possible through context/{n} (bus reset; affects 1 device).
ADDRESS       DRIVER    GROUP  HOLDER     REASON
{NVME}  vfio-pci  15     context/{n}  -
''')
        self.assertEqual(self.ctl_json('info', NVME)['context'], path)

        # A reset nobody holds is refused now.
        _, err = self.ctl('reset', NVME, rc=3)
        self.assertIn(NVME, err)

        self.ctl('release', n)
        self.assertEqual(self.ctl_json('contexts'), [])
        self.assertEqual(self.ctl_json('info', NVME)['context'], None)
        _, err = self.ctl('release', path, rc=1)
        self.assertIn(f'no context {n} (`hotresetctl contexts` lists them)', err)

    @NEEDS_CONTEXTS
    def test_acquire_json_and_release_forms(self):
        for form in ('{n}', 'context/{n}', '{path}'):
            with self.subTest(form=form):
                result = self.ctl_json('acquire', VF0)
                path = result['context']
                self.assertTrue(path.startswith(CONTEXT_PREFIX), path)
                n = path[len(CONTEXT_PREFIX):]
                self.assertIs(result['persistent'], True)
                self.assertEqual([d['address'] for d in result['devices']], [VF0])
                self.assertGreater(result['devices'][0]['devid'], 0)
                self.ctl('release', form.format(n=n, path=path))
                self.assertEqual(self.ctl_json('contexts'), [])

    @NEEDS_CONTEXTS
    def test_acquire_all_or_nothing(self):
        out, err = self.ctl('acquire', NVME, AUDIO, rc=1)
        self.assertIn(AUDIO, err)
        self.assertIn(ERR_NOT_IN_DEV_SET, err)
        self.assertEqual(self.ctl_json('contexts'), [])
        self.assertIsNone(self.ctl_json('info', NVME)['context'])

    @NEEDS_CONTEXTS
    def test_acquire_no_bind(self):
        result = self.ctl_json('acquire', '--no-bind', NVME)
        self.assertEqual(result['devices'], [{'address': NVME, 'devid': 0}])
        _, err = self.ctl('hot-reset-info', NVME, '--context=' + result['context'], rc=1)
        self.assertIn('org.hotresetd.Broker1.Error.Unsupported', err)
        self.ctl('release', result['context'])

    @NEEDS_CONTEXTS
    def test_acquire_transient(self):
        args = [ctl_binary(), 'acquire', '--transient', '--description=held', NVME]
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             env=self.env.child_env(), text=True)
        try:
            first = p.stdout.readline()
            self.assertTrue(first.startswith('Context: ' + CONTEXT_PREFIX), first)
            path = first.strip()[len('Context: '):]
            ctxs = self.ctl_json('contexts')
            self.assertEqual([c['path'] for c in ctxs], [path])
            self.assertIs(ctxs[0]['persistent'], False)
            self.assertEqual(ctxs[0]['description'], 'held')
            p.send_signal(signal.SIGINT)
            self.assertEqual(p.wait(harness.STOP_TIMEOUT), 0)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
            p.stderr.close()
        deadline = time.monotonic() + harness.SIGNAL_TIMEOUT
        while self.ctl_json('contexts') and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.ctl_json('contexts'), [])

    @NEEDS_CONTEXTS
    def test_hot_reset_info_owned_through_group(self):
        find_device(self.machine, AUDIO)['driver'] = 'vfio-pci'
        rec, mark = self.record()
        self.env.rewrite_machine(self.machine)
        rec.wait_properties(device_path(GPU), DEVICE_IFACE, {'HotResetPossible': True}, mark)
        path, n, rows = self.acquire('acquire', GPU)
        devid = rows[0][1]
        out, _ = self.ctl('hot-reset-info', '01:00.0', f'--context={n}')
        self.assertEqual(out, f'''\
Flags: 0x3 (DEV_ID, DEV_ID_OWNED)
ADDRESS       DEVID
0000:01:00.0  {devid}
0000:01:00.1  owned (group)
''')
        info = self.ctl_json('hot-reset-info', GPU, f'--context={n}')
        self.assertEqual(info, {'address': GPU, 'context': path, 'flags': 3, 'dev_id': True, 'dev_id_owned': True,
                                'devices': [{'address': GPU, 'devid': int(devid), 'owned': 'bound'},
                                            {'address': AUDIO, 'devid': 0, 'owned': 'group'}]})
        # Through the context, the reset is possible.
        out, _ = self.ctl('reset', GPU, f'--context={n}')
        self.assertEqual(out, f'Hot reset of {GPU} done; 2 devices affected:\n{GPU}\n{AUDIO}\n'
                              'Emulated machine: no real device was touched.\n')
        self.ctl('release', n)

    @NEEDS_CONTEXTS
    def test_hot_reset_info_not_owned(self):
        # The audio function on vfio-pci but in an IOMMU group of its own.
        find_device(self.machine, AUDIO)['driver'] = 'vfio-pci'
        find_device(self.machine, AUDIO)['iommu_group'] = 20
        rec, mark = self.record()
        self.env.rewrite_machine(self.machine)
        rec.wait_properties(device_path(AUDIO), DEVICE_IFACE, {'Driver': 'vfio-pci'}, mark)
        path, n, _ = self.acquire('acquire', GPU)
        out, _ = self.ctl('--no-legend', 'hot-reset-info', GPU, f'--context={n}')
        lines = out.splitlines()
        self.assertEqual(lines[0], 'Flags: 0x1 (DEV_ID)')
        self.assertEqual(lines[2], f'{AUDIO}  NOT OWNED')
        _, err = self.ctl('reset', GPU, f'--context={n}', rc=3)
        self.assertIn(AUDIO, err)
        self.assertIn('org.hotresetd.Broker1.Error.NotOwned', err)
        self.ctl('release', n)

    @NEEDS_CONTEXTS
    def test_reset_unheld_and_monitor(self):
        mon = self.monitor(json_mode=True)
        out, _ = self.ctl('reset', '02:00.0')
        self.assertEqual(out, f'Hot reset of {NVME} done; 1 device affected:\n{NVME}\n'
                              'Emulated machine: no real device was touched.\n')
        ev = mon.wait_event(lambda e: e.get('event') == 'hot-reset-done', 'hot-reset-done event')
        self.assertEqual(ev['address'], NVME)
        self.assertEqual(ev['affected'], [NVME])
        self.assertEqual(ev['result'], 'success')
        self.assertIsInstance(ev['duration_usec'], int)
        result = self.ctl_json('reset', NVME)
        self.assertEqual(result, {'address': NVME, 'context': None, 'affected': [NVME], 'emulated': True})
        out, _ = self.ctl('--no-legend', 'reset', NVME)
        self.assertEqual(out, f'{NVME}\n')
        # The private context the daemon made for it is gone again.
        self.assertEqual(self.ctl_json('contexts'), [])


if __name__ == '__main__':
    harness.main()

#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Invalid machine files. At start: the daemon exits non-zero and its
message names the file, the place (line:column, or devices[i] (address):
key "name") and the problem. As an update: the daemon keeps running on the
last good machine, logs why ("keeping the last good machine"), sends no
signals, and takes the next good update."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DEVICE_IFACE, MANAGER_IFACE, ROOT_PATH, device_path, find_device  # noqa: E402

KEEPING = 'keeping the last good machine'

GPU = {'address': '0000:01:00.0', 'vendor': '0x10de', 'device': '0x2204', 'class': '0x030000',
       'driver': 'vfio-pci', 'iommu_group': 14, 'reset_methods': ['bus']}
AUDIO = {'address': '0000:01:00.1', 'vendor': '0x10de', 'device': '0x1aef', 'class': '0x040300',
         'driver': 'snd_hda_intel', 'iommu_group': 14, 'reset_methods': ['pm']}
PORT = {'address': '0000:00:01.0', 'vendor': '0x8086', 'device': '0x460d', 'class': '0x060400',
        'driver': 'pcieport', 'iommu_group': 1, 'reset_methods': [],
        'bridge': {'secondary_bus': 1, 'slot_reset': False}}


def machine(*devices, **top):
    m = {'cdev': True, 'devices': [dict(d) for d in devices]}
    m.update(top)
    return m


def with_key(device, **changes):
    d = json.loads(json.dumps(device))
    for k, v in changes.items():
        if v is DELETE:
            d.pop(k, None)
        else:
            d[k] = v
    return d


DELETE = object()


def json_lines(m):
    """One key per line: errors can be located by line."""
    return json.dumps(m, indent=2) + '\n'


# (name, file text, [substrings the message must contain], regex or None)
# devices[i] refers to the order in the file.
BAD_FILES = [
    ('syntax_error',
     '{\n  "cdev": true,\n  "devices": [\n    {"address": "0000:01:00.0",, "vendor": "0x10de"}\n  ]\n}\n',
     [], r'machine\.json:4:[0-9]+'),
    ('unterminated',
     '{\n  "devices": [\n    {"address": "0000:01:00.0"\n',
     [], r'machine\.json:[0-9]+:[0-9]+'),
    ('empty', '', [], None),
    ('not_an_object', '[]\n', [], None),
    ('trailing_garbage', json.dumps(machine(PORT, GPU)) + '\n}\n', [], None),
    ('unknown_top_level_key', json_lines(machine(PORT, GPU, cdevs=True)), ['"cdevs"'], None),
    ('devices_not_an_array', json.dumps({'devices': {'address': '0000:01:00.0'}}), ['devices'], None),
    ('cdev_not_boolean', json_lines(machine(PORT, GPU, cdev='yes')), ['cdev'], None),
    ('unknown_device_key', json_lines(machine(PORT, with_key(GPU, irq=16))),
     ['devices[1] (0000:01:00.0)', '"irq"'], None),
    ('iommu_group_string', json_lines(machine(PORT, GPU, with_key(AUDIO, iommu_group='14'))),
     ['devices[2] (0000:01:00.1): key "iommu_group"'], None),
    ('iommu_group_negative', json_lines(machine(PORT, GPU, with_key(AUDIO, iommu_group=-5))),
     ['devices[2] (0000:01:00.1): key "iommu_group"'], None),
    ('bad_address', json_lines(machine(PORT, with_key(GPU, address='0000:01:00.8'))),
     ['devices[1]', 'address', '0000:01:00.8'], None),
    ('missing_address', json_lines(machine(PORT, with_key(GPU, address=DELETE))),
     ['devices[1]', 'address'], None),
    ('duplicate_address', json_lines(machine(PORT, GPU, with_key(AUDIO, address='0000:01:00.0'))),
     ['0000:01:00.0', 'devices[2]'], None),
    ('vendor_not_hex', json_lines(machine(PORT, with_key(GPU, vendor='0xZZZZ'))),
     ['devices[1] (0000:01:00.0): key "vendor"'], None),
    ('vendor_too_large', json_lines(machine(PORT, with_key(GPU, vendor='0x10000'))),
     ['devices[1] (0000:01:00.0): key "vendor"'], None),
    ('class_not_hex', json_lines(machine(PORT, with_key(GPU, **{'class': 'display'}))),
     ['devices[1] (0000:01:00.0): key "class"'], None),
    ('driver_number', json_lines(machine(PORT, with_key(GPU, driver=7))),
     ['devices[1] (0000:01:00.0): key "driver"'], None),
    ('reset_methods_not_array', json_lines(machine(PORT, with_key(GPU, reset_methods='bus'))),
     ['devices[1] (0000:01:00.0): key "reset_methods"'], None),
    ('bridge_on_vfio', json_lines(machine(with_key(PORT, driver='vfio-pci'), GPU)),
     ['devices[0] (0000:00:01.0)', 'vfio'], None),
    ('secondary_bus_not_below', json_lines(machine(
        PORT, with_key(PORT, address='0000:01:00.0', iommu_group=2, bridge={'secondary_bus': 1, 'slot_reset': False}))),
     ['devices[1] (0000:01:00.0)', 'secondary_bus'], None),
    ('secondary_bus_above', json_lines(machine(
        with_key(PORT, address='0000:05:00.0', bridge={'secondary_bus': 2, 'slot_reset': False}), GPU)),
     ['devices[0] (0000:05:00.0)', 'secondary_bus'], None),
    ('secondary_bus_out_of_range', json_lines(machine(
        with_key(PORT, bridge={'secondary_bus': 256, 'slot_reset': False}), GPU)),
     ['devices[0] (0000:00:01.0)', 'secondary_bus'], None),
    ('missing_devices', json.dumps({'cdev': True}), ['devices'], None),
    ('device_not_an_object', json_lines(machine(PORT, GPU)).replace('"devices": [', '"devices": [\n    7,', 1),
     ['devices[0]'], None),
    ('duplicate_secondary_bus', json_lines(machine(
        PORT, with_key(PORT, address='0000:00:02.0', iommu_group=2), GPU)),
     ['devices[1] (0000:00:02.0)', 'secondary_bus'], None),
    ('unknown_bridge_key', json_lines(machine(
        with_key(PORT, bridge={'secondary_bus': 1, 'slot_reset': False, 'hotplug': True}), GPU)),
     ['devices[0] (0000:00:01.0)', '"hotplug"'], None),
]


class BadAtStartTest(harness.HotresetdTestCase):
    MACHINE = None

    def check_rejected(self, name, text, substrings, regex):
        self.env.write_machine(text)
        d = harness.Daemon(self.env, self.env.machine_path, name='bad-' + name)
        self.env.daemons.append(d)
        d.start()
        rc = d.wait_exit()
        self.assertIsNotNone(rc, f'{name}: hotresetd accepted the file and kept running:\n{d.log()}')
        self.assertNotEqual(rc, 0, f'{name}: exit status 0:\n{d.log()}')
        self.assertFalse(d.ready_seen(), f'{name}: READY=1 sent for a bad machine file')
        log = d.log()
        self.assertIn('machine.json', log, f'{name}: the message does not name the file')
        for s in substrings:
            self.assertIn(s, log, f'{name}: the message does not contain {s!r}')
        if regex:
            self.assertRegex(log, regex, f'{name}: the message does not locate the error')
        self.assertNotIn('Segmentation fault', log)
        self.assertEqual(d.sanitizer_reports(), [], log)

    def test_bad_files(self):
        for name, text, substrings, regex in BAD_FILES:
            with self.subTest(case=name):
                self.check_rejected(name, text, substrings, regex)

    def test_missing_file(self):
        d = harness.Daemon(self.env, os.path.join(self.env.tmpdir, 'no-such-machine.json'), name='missing')
        self.env.daemons.append(d)
        d.start()
        rc = d.wait_exit()
        self.assertIsNotNone(rc, d.log())
        self.assertNotEqual(rc, 0)
        self.assertIn('no-such-machine.json', d.log())

    def test_name_not_owned_after_failure(self):
        self.check_rejected('syntax', '{', [], None)
        self.assertIsNone(self.env.name_owner(harness.BUS_NAME))

    def test_good_file_accepted(self):
        # The same builders make a valid file: the cases above fail for the
        # one reason they were made for.
        self.env.start_daemon(json_lines(machine(PORT, GPU, AUDIO)))
        self.assertEqual(self.env.manager_property('DeviceCount'), 3)
        self.assertEqual(self.env.device_property('0000:01:00.0', 'Affected'), ['0000:01:00.0', '0000:01:00.1'])

    def test_design_example(self):
        # The machine file of DESIGN.md, as written there: a bridge given by
        # its address and "bridge" only.
        self.env.start_daemon('''{
  "cdev": true,
  "devices": [
    {"address": "0000:00:1c.0", "bridge": {"secondary_bus": 1, "slot_reset": false}},
    {"address": "0000:01:00.0", "vendor": "0x10de", "device": "0x2204",
     "class": "0x030000", "driver": "vfio-pci", "iommu_group": 14,
     "reset_methods": ["bus"]},
    {"address": "0000:01:00.1", "vendor": "0x10de", "device": "0x1aef",
     "class": "0x040300", "driver": "snd_hda_intel", "iommu_group": 14}
  ]
}
''')
        self.assertEqual([x[:3] for x in self.env.list_devices()],
                         [('0000:00:1c.0', '', 'none'), ('0000:01:00.0', 'vfio-pci', 'bus'),
                          ('0000:01:00.1', 'snd_hda_intel', 'bus')])
        bridge = self.env.device_properties('0000:00:1c.0')
        self.assertIs(bridge['IsBridge'], True)
        self.assertEqual(bridge['IommuGroup'], -1)
        self.assertEqual(bridge['ResetMethods'], [])
        audio = self.env.device_properties('0000:01:00.1')
        self.assertEqual(audio['ResetMethods'], [])
        possible, entries = self.env.check_hot_reset('0000:01:00.0')
        self.assertIs(possible, False)
        self.assertEqual([e[:4] for e in entries], [('0000:01:00.0', 'vfio-pci', 14, ''),
                                                    ('0000:01:00.1', 'snd_hda_intel', 14, '')])
        self.assertTrue(entries[1][4].startswith('not bound to a vfio driver: bound to snd_hda_intel'), entries[1])

    def test_defaults(self):
        # "cdev" defaults to true; short addresses mean domain 0; a bus no
        # bridge leads to is a root bus.
        text = json.dumps({'devices': [
            {'address': '00:01.0', 'vendor': '0x8086', 'device': '0x460d', 'class': '0x060400',
             'driver': 'pcieport', 'iommu_group': 1, 'reset_methods': [],
             'bridge': {'secondary_bus': 1, 'slot_reset': True}},
            {'address': '01:00.0', 'vendor': '0x10de', 'device': '0x2204', 'class': '0x030000',
             'driver': 'vfio-pci', 'iommu_group': None, 'reset_methods': ['bus']},
            {'address': '07:00.0', 'vendor': '0x8086', 'device': '0x10fb', 'class': '0x020000',
             'driver': None, 'iommu_group': 3, 'reset_methods': []},
        ]})
        self.env.start_daemon(text)
        self.assertEqual(self.env.manager_property('Backend'), 'emulated-iommufd')
        self.assertEqual([x[:3] for x in self.env.list_devices()],
                         [('0000:00:01.0', 'pcieport', 'none'), ('0000:01:00.0', 'vfio-pci', 'slot'),
                          ('0000:07:00.0', '', 'none')])
        self.assertEqual(self.env.device_property('0000:01:00.0', 'IommuGroup'), -1)
        self.assertRegex(self.env.device_property('0000:01:00.0', 'CdevPath'), harness.CDEV_RE)
        possible, entries = self.env.check_hot_reset('0000:07:00.0')
        self.assertIs(possible, False)
        self.assertEqual(entries[0][:4], ('0000:07:00.0', '', 3, ''))
        self.assertTrue(entries[0][4].startswith('no reset mechanism'), entries[0][4])


class BadUpdateTest(harness.HotresetdTestCase):
    MACHINE = 'workstation.json'

    def setUp(self):
        super().setUp()
        self.rec, _ = self.record()
        self.good = harness.load_example('workstation.json')
        self.before = self.env.list_devices()

    def assertUnchanged(self, since):
        self.assertDaemonRunning()
        self.assertEqual(self.env.list_devices(), self.before)
        self.assertEqual(self.env.manager_property('DeviceCount'), 16)
        self.assertEqual(self.env.device_property('0000:01:00.1', 'Driver'), 'snd_hda_intel')
        self.assertIs(self.env.device_property('0000:01:00.0', 'HotResetPossible'), False)
        self.rec.sync()
        self.assertEqual(self.rec.signals(since), [], 'signals after a bad update:\n' + self.rec.describe(since))

    def bad_update(self, text, substrings=()):
        start = len(self.env.daemon.log())
        mark = self.rec.mark()
        self.env.rewrite_machine(text)
        # Wait for this update's message (the log may hold earlier ones).
        deadline = time.monotonic() + harness.SIGNAL_TIMEOUT
        while KEEPING not in self.env.daemon.log()[start:]:
            self.assertLess(time.monotonic(), deadline, 'no "keeping the last good machine" for this update:\n'
                            + self.env.daemon.log())
            time.sleep(0.05)
        new_log = self.env.daemon.log()[start:]
        self.assertIn('machine.json', new_log)
        for s in substrings:
            self.assertIn(s, new_log)
        self.assertUnchanged(mark)
        return new_log

    def test_syntax_error_update(self):
        # Truncated halfway: if it were taken, half the devices would go.
        text = json.dumps(self.good, indent=2)
        self.bad_update(text[:len(text) // 2])

    def test_invalid_update(self):
        bad = harness.load_example('workstation.json')
        find_device(bad, '0000:01:00.1')['iommu_group'] = 'fourteen'
        find_device(bad, '0000:01:00.1')['driver'] = 'vfio-pci'
        self.bad_update(json.dumps(bad, indent=2), ['0000:01:00.1', 'iommu_group'])

    def test_unknown_key_update(self):
        bad = harness.load_example('workstation.json')
        bad['devices'] = bad['devices'][:3]
        bad['devices'][1]['hotplug'] = True
        self.bad_update(json.dumps(bad, indent=2), ['"hotplug"'])

    def test_empty_update(self):
        self.bad_update('')

    def test_good_update_after_bad(self):
        self.bad_update('{"devices": [')
        self.bad_update(json.dumps({'devices': [], 'bogus': 1}))
        # The next good update is taken, and diffed against the last good
        # machine: only the real difference is signalled.
        find_device(self.good, '0000:01:00.1')['driver'] = 'vfio-pci'
        mark = self.rec.mark()
        self.env.rewrite_machine(self.good)
        self.rec.wait_properties(device_path('0000:01:00.1'), DEVICE_IFACE,
                                 {'Driver': 'vfio-pci', 'CdevPath': lambda v: bool(harness.CDEV_RE.match(v))}, mark)
        self.rec.wait_properties(device_path('0000:01:00.0'), DEVICE_IFACE, {'HotResetPossible': True}, mark)
        self.assertEqual(self.rec.signals(mark, member='InterfacesRemoved'), [])
        self.assertEqual(self.rec.signals(mark, member='InterfacesAdded'), [])
        self.assertEqual(self.env.manager_property('DeviceCount'), 16)
        possible, entries = self.env.check_hot_reset('0000:01:00.0')
        self.assertIs(possible, True)
        self.assertDaemonRunning()

    def test_restoring_last_good_is_silent(self):
        self.bad_update(json.dumps({'devices': []})[:-3])
        mark = self.rec.mark()
        self.env.rewrite_machine(self.good)        # identical to the last good machine
        marker = harness.load_example('workstation.json')
        find_device(marker, '0000:02:00.0')['driver'] = 'nvme'
        self.env.rewrite_machine(marker)            # a change that proves the one before was read
        self.rec.wait_properties(device_path('0000:02:00.0'), DEVICE_IFACE, {'Driver': 'nvme'}, mark)
        self.rec.sync()
        # The NVMe and its reset domain (bus 02), nothing else.
        self.assertEqual({m['path'] for m in self.rec.signals(mark)},
                         {device_path('0000:02:00.0'), harness.domain_path('0000:02')},
                         self.rec.describe(mark))

    def test_model_change_update(self):
        # The kernel's uAPI (cdev or legacy groups) cannot change under a
        # running daemon: such an update is refused like an invalid one.
        bad = harness.load_example('workstation.json')
        bad['cdev'] = False
        self.bad_update(json.dumps(bad, indent=2))
        self.assertEqual(self.env.manager_property('Backend'), 'emulated-iommufd')

    def test_bad_update_then_sigterm(self):
        self.bad_update('not json')
        self.assertEqual(self.env.daemon.stop(), 0, self.env.daemon.log())


if __name__ == '__main__':
    harness.main()

#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The legacy group model (examples/legacy-group.json, "cdev": false): the
backend says so, no device has a cdev (not even on vfio-pci, not after a
bind), and reset checks work the same."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DEVICE_IFACE, MANAGER_IFACE, ROOT_PATH, device_path, domain_path, find_device  # noqa: E402

GPU, AUDIO, NIC = '0000:01:00.0', '0000:01:00.1', '0000:02:00.0'


class GroupModelTest(harness.HotresetdTestCase):
    MACHINE = 'legacy-group.json'

    def test_manager(self):
        props = self.env.get_all_typed(ROOT_PATH, MANAGER_IFACE)
        self.assertEqual(props['Backend'], ('s', 'emulated-group'))
        self.assertEqual(props['Emulated'], ('b', True))
        self.assertEqual(props['DeviceCount'], ('u', 7))
        self.assertEqual(props['Version'], ('s', harness.expected_version()))

    def test_list_devices(self):
        self.assertEqual(self.env.list_devices(), [
            ('0000:00:00.0', '', 'none', device_path('0000:00:00.0')),
            ('0000:00:01.1', 'pcieport', 'none', device_path('0000:00:01.1')),
            ('0000:00:02.1', 'pcieport', 'none', device_path('0000:00:02.1')),
            ('0000:00:14.0', 'piix4_smbus', 'none', device_path('0000:00:14.0')),
            (GPU, 'vfio-pci', 'bus', device_path(GPU)),
            (AUDIO, 'vfio-pci', 'bus', device_path(AUDIO)),
            (NIC, '', 'bus', device_path(NIC)),
        ])

    def test_no_cdev_paths(self):
        for address, _, _, path in self.env.list_devices():
            with self.subTest(address=address):
                self.assertEqual(self.env.get_property(path, DEVICE_IFACE, 'CdevPath'), '')

    def test_gpu_properties(self):
        expected = {
            'Address': GPU, 'VendorId': 0x1002, 'DeviceId': 0x73bf, 'Class': 0x030000, 'IsBridge': False,
            'Driver': 'vfio-pci', 'IommuGroup': 12, 'CdevPath': '', 'ResetMethods': ['bus'],
            'ResetScope': 'bus', 'ResetDomain': domain_path('0000:01'), 'Affected': [GPU, AUDIO], 'Context': '/',
            'HotResetPossible': True,
        }
        got = self.env.device_properties(GPU)
        # Affected is explicit: not in GetAll, read with Get.
        self.assertNotIn('Affected', got)
        got['Affected'] = self.env.device_property(GPU, 'Affected')
        self.assertEqual({k: got.get(k) for k in expected}, expected)

    def test_check_hot_reset(self):
        self.assertEqual(self.env.check_hot_reset(GPU),
                         (True, [(GPU, 'vfio-pci', 12, '', ''), (AUDIO, 'vfio-pci', 12, '', '')]))
        possible, entries = self.env.check_hot_reset(NIC)
        self.assertIs(possible, False)
        self.assertEqual(entries[0][:4], (NIC, '', 13, ''))
        self.assertTrue(entries[0][4].startswith('not bound to a vfio driver: no driver'), entries[0][4])

    def test_bind_gives_no_cdev(self):
        rec, mark = self.record()
        machine = harness.load_example('legacy-group.json')
        find_device(machine, NIC)['driver'] = 'vfio-pci'
        self.env.rewrite_machine(machine)
        changed = rec.wait_properties(device_path(NIC), DEVICE_IFACE,
                                      {'Driver': 'vfio-pci', 'HotResetPossible': True}, mark)
        self.assertIn(changed.get('CdevPath', ''), ('',))
        self.assertEqual(self.env.device_property(NIC, 'CdevPath'), '')
        self.assertEqual(self.env.check_hot_reset(NIC), (True, [(NIC, 'vfio-pci', 13, '', '')]))


if __name__ == '__main__':
    harness.main()

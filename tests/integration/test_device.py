#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Device objects on examples/workstation.json: every property with its
D-Bus type and exact value, and CheckHotReset with exact verdicts and
reasons (driver, no driver, bridge in scope, root bus, possible)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import CDEV_RE, DEVICE_IFACE, device_path, domain_path  # noqa: E402

GPU, AUDIO = '0000:01:00.0', '0000:01:00.1'
NVME = '0000:02:00.0'
PF, VF0, VF1 = '0000:03:00.0', '0000:03:10.0', '0000:03:10.2'
PCI_BRIDGE, CMI, RTL = '0000:04:00.0', '0000:05:00.0', '0000:05:01.0'
IGPU, HOST, RP_GPU = '0000:00:02.0', '0000:00:00.0', '0000:00:01.0'

CDEV = object()  # a /dev/vfio/devices/vfioN path

# Every property, with its signature, for a selection of devices.
EXPECTED = {
    GPU: {
        'Address': ('s', GPU), 'VendorId': ('q', 0x10de), 'DeviceId': ('q', 0x2204),
        'Class': ('u', 0x030000), 'IsBridge': ('b', False), 'Driver': ('s', 'vfio-pci'),
        'IommuGroup': ('i', 14), 'CdevPath': ('s', CDEV), 'ResetMethods': ('as', ['bus']),
        'ResetScope': ('s', 'bus'), 'ResetDomain': ('o', domain_path('0000:01')),
        'Affected': ('as', [GPU, AUDIO]), 'Context': ('o', '/'),
        'HotResetPossible': ('b', False),
    },
    AUDIO: {
        'Address': ('s', AUDIO), 'VendorId': ('q', 0x10de), 'DeviceId': ('q', 0x1aef),
        'Class': ('u', 0x040300), 'IsBridge': ('b', False), 'Driver': ('s', 'snd_hda_intel'),
        'IommuGroup': ('i', 14), 'CdevPath': ('s', ''), 'ResetMethods': ('as', ['pm']),
        'ResetScope': ('s', 'bus'), 'ResetDomain': ('o', domain_path('0000:01')),
        'Affected': ('as', [GPU, AUDIO]), 'Context': ('o', '/'),
        'HotResetPossible': ('b', False),
    },
    NVME: {
        'Address': ('s', NVME), 'VendorId': ('q', 0x144d), 'DeviceId': ('q', 0xa80a),
        'Class': ('u', 0x010802), 'IsBridge': ('b', False), 'Driver': ('s', 'vfio-pci'),
        'IommuGroup': ('i', 15), 'CdevPath': ('s', CDEV), 'ResetMethods': ('as', ['flr', 'bus']),
        'ResetScope': ('s', 'bus'), 'ResetDomain': ('o', domain_path('0000:02')),
        'Affected': ('as', [NVME]), 'Context': ('o', '/'),
        'HotResetPossible': ('b', True),
    },
    PF: {
        'Address': ('s', PF), 'VendorId': ('q', 0x8086), 'DeviceId': ('q', 0x10fb),
        'Class': ('u', 0x020000), 'IsBridge': ('b', False), 'Driver': ('s', 'ixgbe'),
        'IommuGroup': ('i', 16), 'CdevPath': ('s', ''), 'ResetMethods': ('as', ['flr']),
        'ResetScope': ('s', 'bus'), 'ResetDomain': ('o', domain_path('0000:03')),
        'Affected': ('as', [PF, VF0, VF1]), 'Context': ('o', '/'),
        'HotResetPossible': ('b', False),
    },
    VF1: {
        'Address': ('s', VF1), 'VendorId': ('q', 0x8086), 'DeviceId': ('q', 0x10ed),
        'Class': ('u', 0x020000), 'IsBridge': ('b', False), 'Driver': ('s', 'vfio-pci'),
        'IommuGroup': ('i', 18), 'CdevPath': ('s', CDEV), 'ResetMethods': ('as', ['flr']),
        'ResetScope': ('s', 'bus'), 'ResetDomain': ('o', domain_path('0000:03')),
        'Affected': ('as', [PF, VF0, VF1]), 'Context': ('o', '/'),
        'HotResetPossible': ('b', False),
    },
    PCI_BRIDGE: {
        'Address': ('s', PCI_BRIDGE), 'VendorId': ('q', 0x1b21), 'DeviceId': ('q', 0x1080),
        'Class': ('u', 0x060401), 'IsBridge': ('b', True), 'Driver': ('s', ''),
        'IommuGroup': ('i', 19), 'CdevPath': ('s', ''), 'ResetMethods': ('as', []),
        'ResetScope': ('s', 'bus'), 'ResetDomain': ('o', domain_path('0000:04')),
        'Affected': ('as', [PCI_BRIDGE, CMI, RTL]), 'Context': ('o', '/'),
        'HotResetPossible': ('b', False),
    },
    CMI: {
        'Address': ('s', CMI), 'VendorId': ('q', 0x13f6), 'DeviceId': ('q', 0x0111),
        'Class': ('u', 0x040100), 'IsBridge': ('b', False), 'Driver': ('s', 'vfio-pci'),
        'IommuGroup': ('i', 19), 'CdevPath': ('s', CDEV), 'ResetMethods': ('as', ['pm']),
        'ResetScope': ('s', 'bus'), 'ResetDomain': ('o', domain_path('0000:05')),
        'Affected': ('as', [CMI, RTL]), 'Context': ('o', '/'),
        'HotResetPossible': ('b', False),
    },
    IGPU: {
        'Address': ('s', IGPU), 'VendorId': ('q', 0x8086), 'DeviceId': ('q', 0x4680),
        'Class': ('u', 0x030000), 'IsBridge': ('b', False), 'Driver': ('s', 'i915'),
        'IommuGroup': ('i', 2), 'CdevPath': ('s', ''), 'ResetMethods': ('as', ['flr']),
        'ResetScope': ('s', 'none'), 'ResetDomain': ('o', '/'),
        'Affected': ('as', [IGPU]), 'Context': ('o', '/'),
        'HotResetPossible': ('b', False),
    },
    HOST: {
        'Address': ('s', HOST), 'VendorId': ('q', 0x8086), 'DeviceId': ('q', 0x4660),
        'Class': ('u', 0x060000), 'IsBridge': ('b', False), 'Driver': ('s', ''),
        'IommuGroup': ('i', 0), 'CdevPath': ('s', ''), 'ResetMethods': ('as', []),
        'ResetScope': ('s', 'none'), 'ResetDomain': ('o', '/'),
        'Affected': ('as', [HOST]), 'Context': ('o', '/'),
        'HotResetPossible': ('b', False),
    },
    RP_GPU: {
        'Address': ('s', RP_GPU), 'VendorId': ('q', 0x8086), 'DeviceId': ('q', 0x460d),
        'Class': ('u', 0x060400), 'IsBridge': ('b', True), 'Driver': ('s', 'pcieport'),
        'IommuGroup': ('i', 1), 'CdevPath': ('s', ''), 'ResetMethods': ('as', []),
        'ResetScope': ('s', 'none'), 'ResetDomain': ('o', '/'),
        'Affected': ('as', [RP_GPU]), 'Context': ('o', '/'),
        'HotResetPossible': ('b', False),
    },
}

# HotResetPossible and Affected of every device of the workstation.
POSSIBLE = {
    '0000:00:00.0': False, '0000:00:01.0': False, '0000:00:02.0': False, '0000:00:06.0': False,
    '0000:00:14.0': False, '0000:00:1c.0': False, '0000:00:1c.4': False,
    GPU: False, AUDIO: False, NVME: True, PF: False, VF0: False, VF1: False,
    PCI_BRIDGE: False, CMI: False, RTL: False,
}
AFFECTED = {
    GPU: [GPU, AUDIO], AUDIO: [GPU, AUDIO], NVME: [NVME],
    PF: [PF, VF0, VF1], VF0: [PF, VF0, VF1], VF1: [PF, VF0, VF1],
    PCI_BRIDGE: [PCI_BRIDGE, CMI, RTL], CMI: [CMI, RTL], RTL: [CMI, RTL],
}

NOT_VFIO = 'not bound to a vfio driver'


def not_vfio(driver):
    return f'{NOT_VFIO}: bound to {driver}'


NO_DRIVER = f'{NOT_VFIO}: no driver'


class DeviceTest(harness.HotresetdTestCase):
    MACHINE = 'workstation.json'

    def assertReasonStartsWith(self, entry, prefix):
        self.assertTrue(entry[4].startswith(prefix), f'{entry[0]}: reason {entry[4]!r} does not start with {prefix!r}')

    def test_properties_exact(self):
        cdevs = {}
        for address, expected in EXPECTED.items():
            got = self.env.get_all_typed(device_path(address), DEVICE_IFACE)
            # Affected is explicit: not in GetAll, read with Get.
            self.assertNotIn('Affected', got)
            got['Affected'] = self.env.get_property_typed(device_path(address), DEVICE_IFACE, 'Affected')
            for name, (sig, value) in expected.items():
                with self.subTest(address=address, property=name):
                    self.assertIn(name, got)
                    self.assertEqual(got[name][0], sig)
                    if value is CDEV:
                        self.assertRegex(got[name][1], CDEV_RE)
                        cdevs[address] = got[name][1]
                    else:
                        self.assertEqual(got[name][1], value)
        # Every bound device has its own cdev.
        self.assertEqual(len(set(cdevs.values())), len(cdevs), cdevs)

    def test_properties_one_by_one(self):
        # Properties.Get agrees with GetAll.
        for name, (sig, value) in EXPECTED[GPU].items():
            with self.subTest(property=name):
                got = self.env.get_property_typed(device_path(GPU), DEVICE_IFACE, name)
                self.assertEqual(got[0], sig)
                if value is CDEV:
                    self.assertRegex(got[1], CDEV_RE)
                else:
                    self.assertEqual(got[1], value)

    def test_cdev_paths_only_for_vfio_bound(self):
        cdevs = []
        for address, driver, _, path in self.env.list_devices():
            cdev = self.env.get_property(path, DEVICE_IFACE, 'CdevPath')
            with self.subTest(address=address):
                if driver == 'vfio-pci':
                    self.assertRegex(cdev, CDEV_RE)
                    cdevs.append(cdev)
                else:
                    self.assertEqual(cdev, '')
        self.assertEqual(len(cdevs), 5)
        self.assertEqual(len(set(cdevs)), 5)

    def test_hot_reset_possible_everywhere(self):
        for address, possible in POSSIBLE.items():
            with self.subTest(address=address):
                self.assertIs(self.env.device_property(address, 'HotResetPossible'), possible)

    def test_affected_everywhere(self):
        for address, _, scope, _ in self.env.list_devices():
            with self.subTest(address=address):
                # On the root bus only the device itself.
                expected = AFFECTED.get(address, [address])
                if scope == 'none':
                    self.assertEqual(expected, [address])
                self.assertEqual(self.env.device_property(address, 'Affected'), expected)

    def test_check_hot_reset_blocked_by_sibling_driver(self):
        possible, entries = self.env.check_hot_reset(GPU)
        self.assertIs(possible, False)
        self.assertEqual([e[:4] for e in entries],
                         [(GPU, 'vfio-pci', 14, ''), (AUDIO, 'snd_hda_intel', 14, '')])
        self.assertEqual(entries[0][4], '')
        self.assertReasonStartsWith(entries[1], not_vfio('snd_hda_intel'))
        # The same verdict asked from the other function.
        possible, entries2 = self.env.check_hot_reset(AUDIO)
        self.assertIs(possible, False)
        self.assertEqual(entries2, entries)

    def test_check_hot_reset_possible(self):
        possible, entries = self.env.check_hot_reset(NVME)
        self.assertIs(possible, True)
        self.assertEqual(entries, [(NVME, 'vfio-pci', 15, '', '')])

    def test_check_hot_reset_root_bus(self):
        possible, entries = self.env.check_hot_reset(IGPU)
        self.assertIs(possible, False)
        self.assertEqual(len(entries), 1)
        self.assertEqual(entries[0][:4], (IGPU, 'i915', 2, ''))
        self.assertReasonStartsWith(entries[0], 'no reset mechanism')
        possible, entries = self.env.check_hot_reset(HOST)
        self.assertIs(possible, False)
        self.assertEqual(entries[0][:4], (HOST, '', 0, ''))
        self.assertReasonStartsWith(entries[0], 'no reset mechanism')

    def test_check_hot_reset_root_port(self):
        # A root port itself sits on the root bus.
        possible, entries = self.env.check_hot_reset(RP_GPU)
        self.assertIs(possible, False)
        self.assertEqual(len(entries), 1)
        self.assertEqual(entries[0][:4], (RP_GPU, 'pcieport', 1, ''))
        self.assertReasonStartsWith(entries[0], 'no reset mechanism')

    def test_check_hot_reset_bridge_in_scope(self):
        possible, entries = self.env.check_hot_reset(PCI_BRIDGE)
        self.assertIs(possible, False)
        self.assertEqual([e[:4] for e in entries],
                         [(PCI_BRIDGE, '', 19, ''), (CMI, 'vfio-pci', 19, ''), (RTL, 'r8169', 19, '')])
        self.assertReasonStartsWith(entries[0], 'bridge in reset scope')
        self.assertEqual(entries[1][4], '')
        self.assertReasonStartsWith(entries[2], not_vfio('r8169'))

    def test_check_hot_reset_behind_pci_bridge(self):
        possible, entries = self.env.check_hot_reset(CMI)
        self.assertIs(possible, False)
        self.assertEqual([e[:4] for e in entries], [(CMI, 'vfio-pci', 19, ''), (RTL, 'r8169', 19, '')])
        self.assertEqual(entries[0][4], '')
        self.assertReasonStartsWith(entries[1], not_vfio('r8169'))

    def test_check_hot_reset_sr_iov(self):
        # A VF's bus reset hits the PF (on ixgbe) and the other VF.
        possible, entries = self.env.check_hot_reset(VF0)
        self.assertIs(possible, False)
        self.assertEqual([e[:4] for e in entries],
                         [(PF, 'ixgbe', 16, ''), (VF0, 'vfio-pci', 17, ''), (VF1, 'vfio-pci', 18, '')])
        self.assertReasonStartsWith(entries[0], not_vfio('ixgbe'))
        self.assertEqual(entries[1][4], '')
        self.assertEqual(entries[2][4], '')

    def test_check_hot_reset_matches_properties(self):
        # CheckHotReset's verdict and device list agree with HotResetPossible
        # and Affected, for every device.
        for address, _, _, path in self.env.list_devices():
            with self.subTest(address=address):
                possible, entries = self.env.check_hot_reset(address)
                self.assertIs(possible, self.env.get_property(path, DEVICE_IFACE, 'HotResetPossible'))
                self.assertEqual([e[0] for e in entries], self.env.get_property(path, DEVICE_IFACE, 'Affected'))
                self.assertIs(possible, all(e[4] == '' for e in entries))
                for e in entries:
                    self.assertEqual(e[3], '')  # no contexts exist

    def test_const_properties_annotated(self):
        # Address, VendorId, DeviceId, Class and IsBridge never change; the
        # others are announced with their new values.
        import xml.etree.ElementTree as ET
        root = ET.fromstring(self.env.introspect(device_path(GPU)))
        iface = [i for i in root.findall('interface') if i.get('name') == DEVICE_IFACE]
        self.assertEqual(len(iface), 1)
        emits = {}
        for p in iface[0].findall('property'):
            a = [x.get('value') for x in p.findall('annotation')
                 if x.get('name') == 'org.freedesktop.DBus.Property.EmitsChangedSignal']
            emits[p.get('name')] = a[0] if a else 'true'
            self.assertEqual(p.get('access'), 'read', p.get('name'))
        for name in ('Address', 'VendorId', 'DeviceId', 'Class', 'IsBridge'):
            self.assertEqual(emits.get(name), 'const', name)
        for name in ('Driver', 'IommuGroup', 'CdevPath', 'ResetMethods', 'ResetScope', 'ResetDomain', 'Context',
                     'HotResetPossible'):
            self.assertEqual(emits.get(name), 'true', name)
        # Affected's changes are announced by invalidation, without the value.
        self.assertEqual(emits.get('Affected'), 'invalidates')


if __name__ == '__main__':
    harness.main()

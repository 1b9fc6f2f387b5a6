#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The Manager object on examples/workstation.json: ListDevices, GetDevice,
the Manager properties, and ObjectManager.GetManagedObjects."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DEVICE_IFACE, MANAGER_IFACE, ROOT_PATH, device_path, domain_path  # noqa: E402

# examples/workstation.json as ListDevices must report it: sorted by address,
# bridges included, "" for unbound, scope none on the root bus.
WORKSTATION_LIST = [
    ('0000:00:00.0', '', 'none'),
    ('0000:00:01.0', 'pcieport', 'none'),
    ('0000:00:02.0', 'i915', 'none'),
    ('0000:00:06.0', 'pcieport', 'none'),
    ('0000:00:14.0', 'xhci_hcd', 'none'),
    ('0000:00:1c.0', 'pcieport', 'none'),
    ('0000:00:1c.4', 'pcieport', 'none'),
    ('0000:01:00.0', 'vfio-pci', 'bus'),
    ('0000:01:00.1', 'snd_hda_intel', 'bus'),
    ('0000:02:00.0', 'vfio-pci', 'bus'),
    ('0000:03:00.0', 'ixgbe', 'bus'),
    ('0000:03:10.0', 'vfio-pci', 'bus'),
    ('0000:03:10.2', 'vfio-pci', 'bus'),
    ('0000:04:00.0', '', 'bus'),
    ('0000:05:00.0', 'vfio-pci', 'bus'),
    ('0000:05:01.0', 'r8169', 'bus'),
]

# What GetAll and GetManagedObjects carry for a device. Affected is not
# among them (an explicit property: read it with Get, or the domain's
# Members).
DEVICE_PROPERTIES = {'Address', 'VendorId', 'DeviceId', 'Class', 'IsBridge', 'Driver', 'IommuGroup',
                     'CdevPath', 'ResetMethods', 'ResetScope', 'ResetDomain', 'Context', 'HotResetPossible'}

# The reset domains of the workstation: one per bus below a bridge.
WORKSTATION_DOMAINS = {'0000:01', '0000:02', '0000:03', '0000:04', '0000:05'}


class ManagerTest(harness.HotresetdTestCase):
    MACHINE = 'workstation.json'

    def test_list_devices(self):
        got = self.env.list_devices()
        expected = [(a, drv, scope, device_path(a)) for a, drv, scope in WORKSTATION_LIST]
        self.assertEqual(got, expected)

    def test_list_devices_matches_machine_file(self):
        machine = harness.load_example('workstation.json')
        got = self.env.list_devices()
        self.assertEqual([d[0] for d in got], sorted(d['address'] for d in machine['devices']))
        for address, driver, _, _ in got:
            self.assertEqual(driver, harness.find_device(machine, address)['driver'] or '')

    def test_get_device(self):
        for address, _, _ in WORKSTATION_LIST:
            self.assertEqual(self.env.get_device(address), device_path(address))
        self.assertEqual(self.env.get_device('0000:01:00.1'),
                         '/org/hotresetd/Broker1/device/pci_0000_01_00_1')

    def test_get_device_short_form(self):
        self.assertEqual(self.env.get_device('01:00.0'), '/org/hotresetd/Broker1/device/pci_0000_01_00_0')
        self.assertEqual(self.env.get_device('00:1c.4'), '/org/hotresetd/Broker1/device/pci_0000_00_1c_4')
        self.assertEqual(self.env.get_device('05:01.0'), device_path('0000:05:01.0'))

    def test_get_device_upper_case_hex(self):
        # pci-address.h: hex digits in either case; the path is canonical.
        self.assertEqual(self.env.get_device('0000:00:1C.4'), device_path('0000:00:1c.4'))
        self.assertEqual(self.env.get_device('00:1C.0'), device_path('0000:00:1c.0'))

    def test_get_device_returns_live_object(self):
        path = self.env.get_device('01:00.1')
        self.assertEqual(self.env.get_property(path, DEVICE_IFACE, 'Address'), '0000:01:00.1')

    def test_manager_properties(self):
        props = self.env.get_all_typed(ROOT_PATH, MANAGER_IFACE)
        self.assertEqual(props['Version'], ('s', harness.expected_version()))
        self.assertEqual(props['Backend'], ('s', 'emulated-iommufd'))
        self.assertEqual(props['Emulated'], ('b', True))
        self.assertEqual(props['DeviceCount'], ('u', 16))

    def test_manager_properties_one_by_one(self):
        self.assertEqual(self.env.get_property_typed(ROOT_PATH, MANAGER_IFACE, 'Version'),
                         ('s', harness.expected_version()))
        self.assertEqual(self.env.get_property_typed(ROOT_PATH, MANAGER_IFACE, 'Backend'), ('s', 'emulated-iommufd'))
        self.assertEqual(self.env.get_property_typed(ROOT_PATH, MANAGER_IFACE, 'Emulated'), ('b', True))
        self.assertEqual(self.env.get_property_typed(ROOT_PATH, MANAGER_IFACE, 'DeviceCount'), ('u', 16))

    def test_get_managed_objects(self):
        objects = self.env.managed_objects()
        self.assertEqual(set(harness.device_objects(objects)), {device_path(a) for a, _, _ in WORKSTATION_LIST})
        # The reset domains are managed objects too; nothing else is.
        self.assertEqual(set(harness.domain_objects(objects)), {domain_path(b) for b in WORKSTATION_DOMAINS})
        self.assertEqual(set(objects), set(harness.device_objects(objects)) | set(harness.domain_objects(objects)))
        for address, driver, scope in WORKSTATION_LIST:
            ifaces = objects[device_path(address)]
            self.assertIn(DEVICE_IFACE, ifaces)
            props = ifaces[DEVICE_IFACE]
            self.assertTrue(DEVICE_PROPERTIES <= set(props), f'{address}: {sorted(props)}')
            self.assertNotIn('Affected', props)
            self.assertEqual(props['Address'], address)
            self.assertEqual(props['Driver'], driver)
            self.assertEqual(props['ResetScope'], scope)
            # The same values as Properties.GetAll on the object itself.
            self.assertEqual(props, self.env.device_properties(address))

    def test_root_object_interfaces(self):
        xml = self.env.introspect(ROOT_PATH)
        self.assertIn(f'<interface name="{MANAGER_IFACE}">', xml)
        self.assertIn('<interface name="org.freedesktop.DBus.ObjectManager">', xml)


if __name__ == '__main__':
    harness.main()

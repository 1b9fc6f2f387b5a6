#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Every machine file in examples/ loads and is served exactly as written;
examples/server.json: two PCI segments, a PCIe switch (subordinate buses,
bridges in scope), hotplug slots (slot reset), multifunction devices."""

import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import CDEV_RE, DEVICE_IFACE, ROOT_PATH, MANAGER_IFACE, device_path  # noqa: E402


def example_names():
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(harness.EXAMPLES_DIR, '*.json')))


class ExamplesAsWrittenTest(harness.HotresetdTestCase):
    MACHINE = None

    def test_examples_exist(self):
        self.assertTrue({'workstation.json', 'server.json', 'legacy-group.json'} <= set(example_names()),
                        example_names())

    def test_every_example_served_as_written(self):
        for name in example_names():
            with self.subTest(example=name):
                self.check_example(name)

    def check_example(self, name):
        machine = harness.load_example(name)
        cdev = machine.get('cdev', True)
        d = self.env.start_daemon(name, name=name.replace('.json', ''))
        try:
            devices = machine['devices']
            self.assertEqual(self.env.manager_property('DeviceCount'), len(devices))
            self.assertEqual(self.env.manager_property('Backend'), 'emulated-iommufd' if cdev else 'emulated-group')
            listed = self.env.list_devices()
            self.assertEqual([x[0] for x in listed], sorted(x['address'] for x in devices))
            objects = self.env.managed_objects()
            self.assertEqual(set(harness.device_objects(objects)), {device_path(x['address']) for x in devices})
            # One reset domain object for each slot or bus some device's own
            # hot reset resets, and no other object.
            domains = harness.expected_reset_domains(machine)
            self.assertEqual(set(harness.domain_objects(objects)), set(domains.values()) - {'/'})
            self.assertEqual(len(objects), len(devices) + len(set(domains.values()) - {'/'}))
            for dev in devices:
                props = objects[device_path(dev['address'])][DEVICE_IFACE]
                with self.subTest(example=name, address=dev['address']):
                    self.assertEqual(props['Address'], dev['address'])
                    self.assertEqual(props['VendorId'], int(dev['vendor'], 16))
                    self.assertEqual(props['DeviceId'], int(dev['device'], 16))
                    self.assertEqual(props['Class'], int(dev['class'], 16))
                    self.assertEqual(props['Driver'], dev['driver'] or '')
                    self.assertEqual(props['IommuGroup'], -1 if dev['iommu_group'] is None else dev['iommu_group'])
                    self.assertEqual(props['ResetMethods'], dev['reset_methods'])
                    self.assertEqual(props['IsBridge'], 'bridge' in dev)
                    self.assertEqual(props['Context'], '/')
                    self.assertEqual(props['ResetDomain'], domains[dev['address']])
                    # Affected is explicit: not in GetManagedObjects, read with Get.
                    self.assertNotIn('Affected', props)
                    affected = self.env.device_property(dev['address'], 'Affected')
                    self.assertIn(dev['address'], affected)
                    self.assertEqual(affected, sorted(affected))
                    if cdev and dev['driver'] == 'vfio-pci':
                        self.assertRegex(props['CdevPath'], CDEV_RE)
                    else:
                        self.assertEqual(props['CdevPath'], '')
        finally:
            self.assertEqual(d.stop(), 0, d.log())


SWITCH_SCOPE = ['0000:31:00.0', '0000:32:08.0', '0000:32:09.0', '0000:32:10.0', '0000:32:11.0',
                '0000:33:00.0', '0000:34:00.0', '0000:35:00.0', '0000:36:00.0', '0000:36:00.1']


class ServerTest(harness.HotresetdTestCase):
    MACHINE = 'server.json'

    def test_manager(self):
        self.assertEqual(self.env.get_all(ROOT_PATH, MANAGER_IFACE)['DeviceCount'], 24)

    def test_scopes(self):
        scopes = {a: s for a, _, s, _ in self.env.list_devices()}
        expected = {
            '0000:00:00.0': 'none', '0000:00:1c.0': 'none', '0000:00:1f.0': 'none', '0000:00:1f.4': 'none',
            '0000:00:1f.5': 'none', '0000:01:00.0': 'bus', '0000:02:00.0': 'bus', '0000:16:02.0': 'none',
            '0000:17:00.0': 'bus', '0000:17:00.1': 'bus', '0000:30:02.0': 'none', '0000:31:00.0': 'bus',
            '0000:32:08.0': 'bus', '0000:32:09.0': 'bus', '0000:32:10.0': 'bus', '0000:32:11.0': 'bus',
            '0000:33:00.0': 'slot', '0000:34:00.0': 'slot', '0000:35:00.0': 'slot', '0000:36:00.0': 'bus',
            '0000:36:00.1': 'bus', '0001:00:02.0': 'none', '0001:00:03.0': 'none', '0001:01:00.0': 'slot',
        }
        self.assertEqual(scopes, expected)

    def test_multifunction_on_root_bus(self):
        for a in ('0000:00:1f.0', '0000:00:1f.4', '0000:00:1f.5'):
            with self.subTest(address=a):
                self.assertEqual(self.env.device_property(a, 'Affected'), [a])
                possible, entries = self.env.check_hot_reset(a)
                self.assertIs(possible, False)
                self.assertEqual(len(entries), 1)
                self.assertEqual(entries[0][0], a)
                self.assertTrue(entries[0][4].startswith('no reset mechanism'), entries[0][4])

    def test_switch_upstream_port_scope(self):
        # The reset of the upstream port's bus hits everything below it,
        # subordinate buses included; the downstream ports are bridges.
        self.assertEqual(self.env.device_property('0000:31:00.0', 'Affected'), SWITCH_SCOPE)
        possible, entries = self.env.check_hot_reset('0000:31:00.0')
        self.assertIs(possible, False)
        self.assertEqual([e[0] for e in entries], SWITCH_SCOPE)
        reasons = {e[0]: e[4] for e in entries}
        for a in SWITCH_SCOPE[:5]:
            self.assertTrue(reasons[a].startswith('bridge in reset scope'), f'{a}: {reasons[a]!r}')
        self.assertTrue(reasons['0000:33:00.0'].startswith('not bound to a vfio driver: bound to nvme'),
                        reasons['0000:33:00.0'])
        for a in SWITCH_SCOPE[6:]:
            self.assertEqual(reasons[a], '', a)
        drivers = {e[0]: e[1] for e in entries}
        self.assertEqual(drivers['0000:32:08.0'], 'pcieport')
        self.assertEqual(drivers['0000:35:00.0'], 'vfio-pci')

    def test_downstream_port_scope(self):
        # A downstream port sits on the switch's internal bus 0x32 behind the
        # upstream port (no slot reset): its reset is a bus reset of bus 0x32.
        self.assertEqual(self.env.device_property('0000:32:08.0', 'Affected'), SWITCH_SCOPE[1:])
        self.assertIs(self.env.device_property('0000:32:08.0', 'HotResetPossible'), False)

    def test_hotplug_slots(self):
        for a, group in (('0000:34:00.0', 47), ('0000:35:00.0', 48)):
            with self.subTest(address=a):
                self.assertEqual(self.env.device_property(a, 'ResetScope'), 'slot')
                self.assertEqual(self.env.device_property(a, 'Affected'), [a])
                possible, entries = self.env.check_hot_reset(a)
                self.assertIs(possible, True)
                self.assertEqual(entries, [(a, 'vfio-pci', group, '', '')])
        possible, entries = self.env.check_hot_reset('0000:33:00.0')
        self.assertIs(possible, False)
        self.assertEqual([e[:4] for e in entries], [('0000:33:00.0', 'nvme', 46, '')])
        self.assertTrue(entries[0][4].startswith('not bound to a vfio driver: bound to nvme'), entries[0][4])

    def test_multifunction_bus_reset_possible(self):
        for a in ('0000:36:00.0', '0000:36:00.1'):
            possible, entries = self.env.check_hot_reset(a)
            self.assertIs(possible, True)
            self.assertEqual(entries, [('0000:36:00.0', 'vfio-pci', 49, '', ''),
                                       ('0000:36:00.1', 'vfio-pci', 49, '', '')])

    def test_nic_port_blocked_by_other_port(self):
        possible, entries = self.env.check_hot_reset('0000:17:00.1')
        self.assertIs(possible, False)
        self.assertEqual([e[:4] for e in entries], [('0000:17:00.0', 'i40e', 31, ''), ('0000:17:00.1', 'vfio-pci', 32, '')])
        self.assertTrue(entries[0][4].startswith('not bound to a vfio driver: bound to i40e'), entries[0][4])
        self.assertEqual(entries[1][4], '')

    def test_domains_are_separate(self):
        # Bus 01 exists in both segments; only the same segment's bridge leads to it.
        self.assertEqual(self.env.device_property('0000:01:00.0', 'Affected'), ['0000:01:00.0', '0000:02:00.0'])
        self.assertEqual(self.env.device_property('0001:01:00.0', 'Affected'), ['0001:01:00.0'])
        possible, entries = self.env.check_hot_reset('0001:01:00.0')
        self.assertIs(possible, True)
        self.assertEqual(entries, [('0001:01:00.0', 'vfio-pci', 62, '', '')])
        self.assertEqual(self.env.get_device('0001:01:00.0'), '/org/hotresetd/Broker1/device/pci_0001_01_00_0')
        self.env.expect_error(ROOT_PATH, MANAGER_IFACE, 'GetDevice', 's', ['0001:02:00.0'],
                              harness.ERR_NO_SUCH_DEVICE, '0001:02:00.0')

    def test_bmc_bridge(self):
        possible, entries = self.env.check_hot_reset('0000:01:00.0')
        self.assertIs(possible, False)
        self.assertEqual([e[:4] for e in entries], [('0000:01:00.0', '', 24, ''), ('0000:02:00.0', 'ast', 24, '')])
        self.assertTrue(entries[0][4].startswith('bridge in reset scope'), entries[0][4])
        self.assertTrue(entries[1][4].startswith('not bound to a vfio driver: bound to ast'), entries[1][4])


if __name__ == '__main__':
    harness.main()

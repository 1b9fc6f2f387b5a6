#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""dbus/org.hotresetd.Broker1.xml is the API contract: what the running
daemon serves on the Manager, Device, ResetDomain and Context objects must
match it exactly
(members, argument names, types and directions, property types, access
and change-signal annotations)."""

import os
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DEVICE_IFACE, DOMAIN_IFACE, MANAGER_IFACE, ROOT_PATH, device_path, domain_path  # noqa: E402

CONTRACT = os.path.join(harness.SOURCE_ROOT, 'dbus', 'org.hotresetd.Broker1.xml')
EMITS = 'org.freedesktop.DBus.Property.EmitsChangedSignal'


def describe(iface):
    """A comparable description of an <interface> element."""
    out = {}
    for m in iface.findall('method'):
        out['method ' + m.get('name')] = [(a.get('name'), a.get('type'), a.get('direction', 'in'))
                                          for a in m.findall('arg')]
    for s in iface.findall('signal'):
        out['signal ' + s.get('name')] = [(a.get('name'), a.get('type')) for a in s.findall('arg')]
    for p in iface.findall('property'):
        emits = [a.get('value') for a in p.findall('annotation') if a.get('name') == EMITS]
        out['property ' + p.get('name')] = (p.get('type'), p.get('access'), emits[0] if emits else 'true')
    return out


def interfaces(xml_text):
    root = ET.fromstring(xml_text)
    return {i.get('name'): describe(i) for i in root.findall('interface')}


class ContractTestCase(harness.HotresetdTestCase):
    def setUp(self):
        super().setUp()
        with open(CONTRACT) as f:
            self.contract = interfaces(f.read())

    def assertServes(self, path, iface_name):
        served = interfaces(self.env.introspect(path))
        self.assertIn(iface_name, served, f'{path} does not serve {iface_name}')
        self.assertIn(iface_name, self.contract, f'{CONTRACT} does not describe {iface_name}')
        self.assertEqual(served[iface_name], self.contract[iface_name],
                         f'{iface_name} on {path} differs from {CONTRACT}')
        # Nothing of ours is served that the contract does not describe.
        ours = {n for n in served if n.startswith('org.hotresetd.')}
        self.assertLessEqual(ours, set(self.contract), f'{path} serves undocumented interfaces')


class IntrospectionTest(ContractTestCase):
    MACHINE = 'workstation.json'

    def test_manager_matches_contract(self):
        self.assertServes(ROOT_PATH, MANAGER_IFACE)

    def test_device_matches_contract(self):
        for address in ('0000:01:00.0', '0000:00:01.0', '0000:04:00.0'):
            with self.subTest(address=address):
                self.assertServes(device_path(address), DEVICE_IFACE)

    def test_domain_matches_contract(self):
        # A bus reset domain and a slot reset domain serve the same interface.
        for path in (domain_path('0000:01'), domain_path('0000:05')):
            with self.subTest(path=path):
                self.assertServes(path, DOMAIN_IFACE)

    def test_affected_is_explicit_and_invalidates(self):
        # Not in GetAll, announced by invalidation: the contract says so, the
        # daemon serves it so.
        served = interfaces(self.env.introspect(device_path('0000:01:00.0')))[DEVICE_IFACE]
        self.assertEqual(served['property Affected'], ('as', 'read', 'invalidates'))
        self.assertEqual(self.contract[DEVICE_IFACE]['property Affected'], ('as', 'read', 'invalidates'))

    def test_context_matches_contract(self):
        # A persistent context outlives busctl's one-shot connection.
        _, (path,) = self.env.call(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', 1, 'Persistent', 'b', 'true')
        self.assertTrue(path.startswith(ROOT_PATH + '/context/'), path)
        self.assertServes(path, 'org.hotresetd.Broker1.Context')
        self.env.call(path, 'org.hotresetd.Broker1.Context', 'Release')

    def test_object_manager_served(self):
        root = ET.fromstring(self.env.introspect(ROOT_PATH))
        self.assertIn('org.freedesktop.DBus.ObjectManager', [i.get('name') for i in root.findall('interface')])

    def test_tree_nodes(self):
        # The device objects are children of .../device, one per device.
        root = ET.fromstring(self.env.introspect(ROOT_PATH + '/device'))
        nodes = sorted(n.get('name') for n in root.findall('node'))
        expected = sorted(device_path(a).rsplit('/', 1)[1] for a, _, _, _ in self.env.list_devices())
        self.assertEqual(nodes, expected)

    def test_domain_tree_nodes(self):
        # The reset domain objects are children of .../domain, one per domain
        # some device's ResetDomain names.
        root = ET.fromstring(self.env.introspect(ROOT_PATH + '/domain'))
        nodes = sorted(n.get('name') for n in root.findall('node'))
        named = {self.env.device_property(a, 'ResetDomain') for a, _, _, _ in self.env.list_devices()} - {'/'}
        self.assertEqual(nodes, sorted(p.rsplit('/', 1)[1] for p in named))
        self.assertEqual(nodes, ['pci_0000_01', 'pci_0000_02', 'pci_0000_03', 'pci_0000_04', 'pci_0000_05'])

    def test_contract_is_well_formed(self):
        self.assertIn(MANAGER_IFACE, self.contract)
        self.assertIn(DEVICE_IFACE, self.contract)
        self.assertIn(DOMAIN_IFACE, self.contract)
        self.assertIn('org.hotresetd.Broker1.Context', self.contract)
        for name, members in self.contract.items():
            self.assertTrue(name.startswith('org.hotresetd.Broker1.'), name)
            self.assertTrue(members, name)


class ServerIntrospectionTest(ContractTestCase):
    """examples/server.json: slot reset domains, and a domain on a second
    PCI segment."""
    MACHINE = 'server.json'

    def test_domain_matches_contract(self):
        for path in (domain_path('0000:33', 0), domain_path('0000:31'), domain_path('0001:01', 0)):
            with self.subTest(path=path):
                self.assertServes(path, DOMAIN_IFACE)

    def test_domain_tree_nodes(self):
        root = ET.fromstring(self.env.introspect(ROOT_PATH + '/domain'))
        nodes = sorted(n.get('name') for n in root.findall('node'))
        self.assertEqual(nodes, ['pci_0000_01', 'pci_0000_02', 'pci_0000_17', 'pci_0000_31', 'pci_0000_32',
                                 'pci_0000_33_00', 'pci_0000_34_00', 'pci_0000_35_00', 'pci_0000_36',
                                 'pci_0001_01_00'])


if __name__ == '__main__':
    harness.main()

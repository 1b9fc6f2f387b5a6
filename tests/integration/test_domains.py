#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Reset domain objects (org.hotresetd.Broker1.ResetDomain at
/org/hotresetd/Broker1/domain/pci_SSSS_BB[_DD]): exactly one per slot or
bus some device's own hot reset resets, with exact Scope, Bridge, Members,
Possible, Blockers (with their reasons) and Holders on
examples/workstation.json and examples/server.json; every device's
ResetDomain naming its domain ("/" on a root bus) and its Affected (an
explicit property: read with Get, not in GetAll) equal to the domain's
Members. Signals: rebinding a sibling (Possible, Blockers, HotResetPossible),
leases (Holders, Context; several holders block), a hotplug burst of 64
functions on one bus (one Members change, InterfacesAdded for each,
Affected invalidated on the devices that were there), a bus emptied (the
domain's InterfacesRemoved). And GetManagedObjects on a machine of 20,000+
functions: it answers, its size grows linearly with the number of
functions, and the daemon keeps running."""

import ctypes
import ctypes.util
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contexts_util  # noqa: E402
import harness  # noqa: E402
from harness import (DEVICE_IFACE, DOMAIN_IFACE, ERR_UNKNOWN_OBJECT, MANAGER_IFACE, OM_IFACE,  # noqa: E402
                     PROPS_IFACE, ROOT_PATH, Invalidated, device_path, domain_path, find_device)

GPU, AUDIO, NVME = '0000:01:00.0', '0000:01:00.1', '0000:02:00.0'
PF, VF0, VF1 = '0000:03:00.0', '0000:03:10.0', '0000:03:10.2'
PCI_BRIDGE, CMI, RTL = '0000:04:00.0', '0000:05:00.0', '0000:05:01.0'

DBUS_MESSAGE_TYPE_METHOD_RETURN, DBUS_MESSAGE_TYPE_ERROR = 2, 3


def not_vfio(address, driver):
    return f'not bound to a vfio driver: bound to {driver} (rebind {address} to vfio-pci)'


def bridge_in_scope(address):
    return f'bridge in reset scope: {address} is a bridge, and bridges cannot be bound to vfio-pci'


# examples/workstation.json: every domain object and its properties, as
# GetManagedObjects and GetAll must show them.
WORKSTATION_DOMAINS = {
    domain_path('0000:01'): {
        'Scope': 'bus', 'Bridge': device_path('0000:00:01.0'), 'Members': [GPU, AUDIO], 'Possible': False,
        'Blockers': [[AUDIO, not_vfio(AUDIO, 'snd_hda_intel')]], 'Holders': [],
    },
    domain_path('0000:02'): {
        'Scope': 'bus', 'Bridge': device_path('0000:00:06.0'), 'Members': [NVME], 'Possible': True,
        'Blockers': [], 'Holders': [],
    },
    domain_path('0000:03'): {
        'Scope': 'bus', 'Bridge': device_path('0000:00:1c.0'), 'Members': [PF, VF0, VF1], 'Possible': False,
        'Blockers': [[PF, not_vfio(PF, 'ixgbe')]], 'Holders': [],
    },
    domain_path('0000:04'): {
        'Scope': 'bus', 'Bridge': device_path('0000:00:1c.4'), 'Members': [PCI_BRIDGE, CMI, RTL], 'Possible': False,
        'Blockers': [[PCI_BRIDGE, bridge_in_scope(PCI_BRIDGE)], [RTL, not_vfio(RTL, 'r8169')]], 'Holders': [],
    },
    domain_path('0000:05'): {
        'Scope': 'bus', 'Bridge': device_path(PCI_BRIDGE), 'Members': [CMI, RTL], 'Possible': False,
        'Blockers': [[RTL, not_vfio(RTL, 'r8169')]], 'Holders': [],
    },
}

# Each device's ResetDomain: the domain of its own hot reset.
WORKSTATION_RESET_DOMAIN = {
    '0000:00:00.0': '/', '0000:00:01.0': '/', '0000:00:02.0': '/', '0000:00:06.0': '/', '0000:00:14.0': '/',
    '0000:00:1c.0': '/', '0000:00:1c.4': '/',
    GPU: domain_path('0000:01'), AUDIO: domain_path('0000:01'), NVME: domain_path('0000:02'),
    PF: domain_path('0000:03'), VF0: domain_path('0000:03'), VF1: domain_path('0000:03'),
    PCI_BRIDGE: domain_path('0000:04'), CMI: domain_path('0000:05'), RTL: domain_path('0000:05'),
}

SWITCH = ['0000:31:00.0', '0000:32:08.0', '0000:32:09.0', '0000:32:10.0', '0000:32:11.0',
          '0000:33:00.0', '0000:34:00.0', '0000:35:00.0', '0000:36:00.0', '0000:36:00.1']
SWITCH_BLOCKERS = [[a, bridge_in_scope(a)] for a in SWITCH[:5]] + [['0000:33:00.0', not_vfio('0000:33:00.0', 'nvme')]]

# examples/server.json: two segments, a PCIe switch, hotplug slots (slot
# domains), an empty hotplug bay (no domain).
SERVER_DOMAINS = {
    domain_path('0000:01'): {
        'Scope': 'bus', 'Bridge': device_path('0000:00:1c.0'), 'Members': ['0000:01:00.0', '0000:02:00.0'],
        'Possible': False,
        'Blockers': [['0000:01:00.0', bridge_in_scope('0000:01:00.0')],
                     ['0000:02:00.0', not_vfio('0000:02:00.0', 'ast')]],
        'Holders': [],
    },
    domain_path('0000:02'): {
        'Scope': 'bus', 'Bridge': device_path('0000:01:00.0'), 'Members': ['0000:02:00.0'], 'Possible': False,
        'Blockers': [['0000:02:00.0', not_vfio('0000:02:00.0', 'ast')]], 'Holders': [],
    },
    domain_path('0000:17'): {
        'Scope': 'bus', 'Bridge': device_path('0000:16:02.0'), 'Members': ['0000:17:00.0', '0000:17:00.1'],
        'Possible': False, 'Blockers': [['0000:17:00.0', not_vfio('0000:17:00.0', 'i40e')]], 'Holders': [],
    },
    domain_path('0000:31'): {
        'Scope': 'bus', 'Bridge': device_path('0000:30:02.0'), 'Members': SWITCH, 'Possible': False,
        'Blockers': SWITCH_BLOCKERS, 'Holders': [],
    },
    domain_path('0000:32'): {
        'Scope': 'bus', 'Bridge': device_path('0000:31:00.0'), 'Members': SWITCH[1:], 'Possible': False,
        'Blockers': SWITCH_BLOCKERS[1:], 'Holders': [],
    },
    domain_path('0000:33', 0): {
        'Scope': 'slot', 'Bridge': device_path('0000:32:08.0'), 'Members': ['0000:33:00.0'], 'Possible': False,
        'Blockers': [['0000:33:00.0', not_vfio('0000:33:00.0', 'nvme')]], 'Holders': [],
    },
    domain_path('0000:34', 0): {
        'Scope': 'slot', 'Bridge': device_path('0000:32:09.0'), 'Members': ['0000:34:00.0'], 'Possible': True,
        'Blockers': [], 'Holders': [],
    },
    domain_path('0000:35', 0): {
        'Scope': 'slot', 'Bridge': device_path('0000:32:10.0'), 'Members': ['0000:35:00.0'], 'Possible': True,
        'Blockers': [], 'Holders': [],
    },
    domain_path('0000:36'): {
        'Scope': 'bus', 'Bridge': device_path('0000:32:11.0'), 'Members': ['0000:36:00.0', '0000:36:00.1'],
        'Possible': True, 'Blockers': [], 'Holders': [],
    },
    domain_path('0001:01', 0): {
        'Scope': 'slot', 'Bridge': device_path('0001:00:02.0'), 'Members': ['0001:01:00.0'], 'Possible': True,
        'Blockers': [], 'Holders': [],
    },
}


class DomainObjectsMixin:
    """Exact checks of the domain objects of the machine the test runs on.
    DOMAINS: {path: properties}."""

    DOMAINS = {}

    def test_domain_objects_exact(self):
        objects = self.env.managed_objects()
        domains = harness.domain_objects(objects)
        self.assertEqual(set(domains), set(self.DOMAINS))
        for path, expected in self.DOMAINS.items():
            with self.subTest(path=path):
                self.assertIn(DOMAIN_IFACE, domains[path])
                self.assertEqual(domains[path][DOMAIN_IFACE], expected)
                # GetAll on the object says the same, with the types of the contract.
                typed = self.env.get_all_typed(path, DOMAIN_IFACE)
                self.assertEqual({k: t for k, (t, _) in typed.items()},
                                 {'Scope': 's', 'Bridge': 'o', 'Members': 'as', 'Possible': 'b',
                                  'Blockers': 'a(ss)', 'Holders': 'ao'})
                self.assertEqual({k: v for k, (_, v) in typed.items()}, expected)
                # And Get, one by one.
                for name, value in expected.items():
                    self.assertEqual(self.env.get_property(path, DOMAIN_IFACE, name), value, name)

    def test_every_device_names_its_domain(self):
        machine = harness.load_example(self.MACHINE)
        expected = harness.expected_reset_domains(machine)
        objects = self.env.managed_objects()
        for address, _, scope, path in self.env.list_devices():
            with self.subTest(address=address):
                props = objects[path][DEVICE_IFACE]
                self.assertEqual(props['ResetDomain'], expected[address])
                self.assertEqual(self.env.device_property(address, 'ResetDomain'), expected[address])
                if scope == 'none':
                    # Root bus: no hot reset, no domain.
                    self.assertEqual(props['ResetDomain'], '/')
                else:
                    self.assertIn(props['ResetDomain'], self.DOMAINS)
                    dom = self.DOMAINS[props['ResetDomain']]
                    self.assertEqual(dom['Scope'], scope)
                    self.assertIn(address, dom['Members'])

    def test_affected_is_the_domains_members(self):
        for address, _, _, path in self.env.list_devices():
            with self.subTest(address=address):
                props = self.env.get_all(path, DEVICE_IFACE)
                self.assertNotIn('Affected', props)  # explicit: Get only
                affected = self.env.get_property(path, DEVICE_IFACE, 'Affected')
                if props['ResetDomain'] == '/':
                    self.assertEqual(affected, [address])
                else:
                    self.assertEqual(affected, self.env.get_property(props['ResetDomain'], DOMAIN_IFACE, 'Members'))

    def test_domain_agrees_with_check_hot_reset(self):
        # Nobody holds anything: a domain's Blockers are the devices
        # CheckHotReset names with a reason, for every device whose own
        # reset it is, and Possible is their HotResetPossible.
        owners = {}
        for address, _, _, path in self.env.list_devices():
            owners.setdefault(self.env.device_property(address, 'ResetDomain'), []).append(address)
        for path, expected in self.DOMAINS.items():
            for address in owners[path]:
                with self.subTest(path=path, address=address):
                    possible, entries = self.env.check_hot_reset(address)
                    self.assertEqual([e[0] for e in entries], expected['Members'])
                    self.assertEqual([[e[0], e[4]] for e in entries if e[4]], expected['Blockers'])
                    self.assertIs(possible, expected['Possible'])
                    self.assertIs(self.env.device_property(address, 'HotResetPossible'), expected['Possible'])


class WorkstationDomainsTest(DomainObjectsMixin, harness.HotresetdTestCase):
    MACHINE = 'workstation.json'
    DOMAINS = WORKSTATION_DOMAINS

    def setUp(self):
        super().setUp()
        self.machine = harness.load_example('workstation.json')

    def test_reset_domain_table(self):
        for address, path in WORKSTATION_RESET_DOMAIN.items():
            with self.subTest(address=address):
                self.assertEqual(self.env.get_property_typed(device_path(address), DEVICE_IFACE, 'ResetDomain'),
                                 ('o', path))
        self.assertEqual(len(WORKSTATION_RESET_DOMAIN), len(self.env.list_devices()))

    def test_unknown_domain_objects(self):
        for path in (domain_path('0000:06'),              # no such bus
                     domain_path('0000:00'),              # the root bus: no domain
                     domain_path('0000:01', 0),           # bus 01 is reset as a bus, not by slot
                     domain_path('0000:02', 0),
                     domain_path('0001:01'),              # no such segment
                     harness.DOMAIN_PATH_PREFIX + 'pci_0000_1',     # not canonical
                     harness.DOMAIN_PATH_PREFIX + 'pci_00000_01',
                     harness.DOMAIN_PATH_PREFIX + 'pci_0000_01_00_0',
                     harness.DOMAIN_PATH_PREFIX + 'pci_0000_01_20',
                     harness.DOMAIN_PATH_PREFIX + 'x' * 2000):
            with self.subTest(path=path[:80]):
                self.env.expect_error(path, PROPS_IFACE, 'Get', 'ss', [DOMAIN_IFACE, 'Members'], ERR_UNKNOWN_OBJECT)
                self.env.expect_error(path, PROPS_IFACE, 'GetAll', 's', [DOMAIN_IFACE], ERR_UNKNOWN_OBJECT)
        # A domain object is no device, a device object no domain.
        self.env.expect_error(domain_path('0000:01'), PROPS_IFACE, 'Get', 'ss', [DEVICE_IFACE, 'Address'],
                              ('org.freedesktop.DBus.Error.UnknownProperty', ERR_UNKNOWN_OBJECT))
        self.env.expect_error(device_path(GPU), PROPS_IFACE, 'Get', 'ss', [DOMAIN_IFACE, 'Members'],
                              ('org.freedesktop.DBus.Error.UnknownProperty', ERR_UNKNOWN_OBJECT))
        self.assertDaemonRunning()

    # --- signals

    def rewrite(self, rec):
        mark = rec.mark()
        self.env.rewrite_machine(self.machine)
        return mark

    def test_rebinding_a_sibling(self):
        rec, _ = self.record()
        dom = domain_path('0000:01')
        find_device(self.machine, AUDIO)['driver'] = 'vfio-pci'
        mark = self.rewrite(rec)
        rec.wait_properties(dom, DOMAIN_IFACE, {'Possible': True, 'Blockers': []}, mark)
        rec.wait_properties(device_path(GPU), DEVICE_IFACE, {'HotResetPossible': True}, mark)
        rec.wait_properties(device_path(AUDIO), DEVICE_IFACE, {'Driver': 'vfio-pci', 'HotResetPossible': True}, mark)
        rec.sync()
        # The members did not change, and nothing else was told anything.
        changed = rec.changed_properties(dom, DOMAIN_IFACE, mark)
        self.assertNotIn('Members', changed)
        self.assertNotIn('Bridge', changed)
        self.assertEqual({m['path'] for m in rec.signals(mark)}, {dom, device_path(GPU), device_path(AUDIO)},
                         rec.describe(mark))
        self.assertNotIn('Affected', rec.changed_properties(device_path(GPU), DEVICE_IFACE, mark))
        self.assertEqual(self.env.domain_properties(dom),
                         dict(WORKSTATION_DOMAINS[dom], Possible=True, Blockers=[]))

        # And back to a host driver: blocked again, the reason names it.
        find_device(self.machine, AUDIO)['driver'] = 'snd_hda_codec_hdmi'
        mark = self.rewrite(rec)
        rec.wait_properties(dom, DOMAIN_IFACE, {
            'Possible': False, 'Blockers': [[AUDIO, not_vfio(AUDIO, 'snd_hda_codec_hdmi')]]}, mark)
        rec.wait_properties(device_path(GPU), DEVICE_IFACE, {'HotResetPossible': False}, mark)
        rec.wait_properties(device_path(AUDIO), DEVICE_IFACE, {'HotResetPossible': False}, mark)

    def test_host_driver_replaced_by_another(self):
        # The count of blockers stays, the reason changes: signalled.
        rec, _ = self.record()
        dom = domain_path('0000:03')
        find_device(self.machine, PF)['driver'] = 'ixgbevf'
        mark = self.rewrite(rec)
        rec.wait_properties(dom, DOMAIN_IFACE, {'Blockers': [[PF, not_vfio(PF, 'ixgbevf')]]}, mark)
        self.assertIs(self.env.get_property(dom, DOMAIN_IFACE, 'Possible'), False)

    def test_unchanged_blockers_are_not_signalled(self):
        # A change that leaves what a domain says as it was (a blocked
        # domain's member gains a reset method; the same policy reloaded)
        # signals the device, not the domain.
        rec, _ = self.record()
        legacy = '0000:05:01.0'
        find_device(self.machine, legacy)['reset_methods'] = ['pm', 'bus']
        mark = self.rewrite(rec)
        rec.wait_properties(device_path(legacy), DEVICE_IFACE, {'ResetMethods': ['pm', 'bus']}, mark)
        self.env.call_manager('Reload')
        rec.sync()
        self.assertEqual({m['path'] for m in rec.signals(mark)}, {device_path(legacy), ROOT_PATH},
                         rec.describe(mark))

    def test_no_iommu_group_blocks(self):
        rec, _ = self.record()
        dom = domain_path('0000:02')
        find_device(self.machine, NVME)['iommu_group'] = None
        mark = self.rewrite(rec)
        changed = rec.wait_properties(dom, DOMAIN_IFACE, {'Possible': False, 'Blockers': lambda b: len(b) == 1}, mark)
        (address, reason), = changed['Blockers']
        self.assertEqual(address, NVME)
        self.assertTrue(reason.startswith(f'no IOMMU group: {NVME} is on vfio-pci but in no IOMMU group'), reason)
        rec.wait_properties(device_path(NVME), DEVICE_IFACE, {'IommuGroup': -1, 'HotResetPossible': False}, mark)
        # The same reason as CheckHotReset's.
        self.assertEqual(self.env.check_hot_reset(NVME)[1][0][4], reason)

    def test_policy_exclusion_blocks(self):
        rec, _ = self.record()
        dom = domain_path('0000:02')
        self.env.write_config('''
            [Devices]
            DenyAddress=0000:02:00.0
        ''')
        mark = rec.mark()
        self.env.call_manager('Reload')
        changed = rec.wait_properties(dom, DOMAIN_IFACE, {'Possible': False, 'Blockers': lambda b: len(b) == 1},
                                      mark)
        (address, reason), = changed['Blockers']
        self.assertEqual(address, NVME)
        self.assertTrue(reason.startswith(f'excluded by policy: {NVME} matches'), reason)
        rec.wait_properties(device_path(NVME), DEVICE_IFACE, {'HotResetPossible': False}, mark)
        self.assertEqual(self.env.check_hot_reset(NVME)[1][0][4], reason)
        # Lifted again.
        self.env.write_config('')
        mark = rec.mark()
        self.env.call_manager('Reload')
        rec.wait_properties(dom, DOMAIN_IFACE, {'Possible': True, 'Blockers': []}, mark)
        rec.wait_properties(device_path(NVME), DEVICE_IFACE, {'HotResetPossible': True}, mark)

    def test_hotplug_burst(self):
        # 64 functions (slots 02-09, 8 functions each) appear on bus 05
        # behind the PCI bridge in one rewrite.
        rec, _ = self.record()
        new = []
        for slot in range(2, 10):
            for fn in range(8):
                address = f'0000:05:{slot:02x}.{fn}'
                new.append(address)
                self.machine['devices'].append({
                    'address': address, 'vendor': '0x1af4', 'device': '0x1041', 'class': '0x020000',
                    'driver': 'vfio-pci', 'iommu_group': 100 + len(new), 'reset_methods': ['flr']})
        bus5, bus4 = domain_path('0000:05'), domain_path('0000:04')
        members5 = sorted([CMI, RTL] + new)
        mark = self.rewrite(rec)
        rec.wait_properties(ROOT_PATH, MANAGER_IFACE, {'DeviceCount': 16 + 64}, mark)
        for address in new:
            props = rec.wait_interfaces_added(device_path(address), mark)[DEVICE_IFACE]
            self.assertEqual(props['ResetDomain'], bus5, address)
            self.assertNotIn('Affected', props)
        rec.wait_properties(bus5, DOMAIN_IFACE, {'Members': members5}, mark)
        rec.wait_properties(bus4, DOMAIN_IFACE, {'Members': [PCI_BRIDGE] + members5}, mark)
        for address in (CMI, RTL, PCI_BRIDGE):
            rec.wait_properties(device_path(address), DEVICE_IFACE, {'Affected': Invalidated}, mark)
        rec.sync()

        def members_changes(path):
            return [m for m in rec.signals(mark, member='PropertiesChanged', path=path)
                    if 'Members' in m['payload']['data'][1]]
        # One Members change per domain the burst reaches, whatever the
        # size of the burst.
        self.assertEqual(len(members_changes(bus5)), 1, rec.describe(mark))
        self.assertEqual(len(members_changes(bus4)), 1, rec.describe(mark))
        # One InterfacesAdded per new device; none for a domain (both existed).
        added = [m['payload']['data'][0] for m in rec.signals(mark, member='InterfacesAdded')]
        self.assertEqual(sorted(added), sorted(device_path(a) for a in new))
        # The devices that were there: Affected invalidated once, without a value.
        for address in (CMI, RTL, PCI_BRIDGE):
            sigs = [m['payload']['data'] for m in rec.signals(mark, member='PropertiesChanged',
                                                                path=device_path(address))]
            self.assertEqual([s for s in sigs if 'Affected' in s[2]], [[DEVICE_IFACE, {}, ['Affected']]],
                             rec.describe(mark))
            self.assertFalse(any('Affected' in s[1] for s in sigs))
        # Nobody outside the PCI bridge's domain hears of it.
        paths = {m['path'] for m in rec.signals(mark, member='PropertiesChanged')}
        self.assertEqual(paths - {device_path(a) for a in new},
                         {ROOT_PATH, bus5, bus4, device_path(CMI), device_path(RTL), device_path(PCI_BRIDGE)},
                         rec.describe(mark))
        # The state agrees.
        self.assertEqual(self.env.device_property(CMI, 'Affected'), members5)
        self.assertEqual(self.env.device_property(new[-1], 'Affected'), members5)
        self.assertEqual(self.env.device_property(PCI_BRIDGE, 'Affected'), [PCI_BRIDGE] + members5)
        self.assertEqual(self.env.get_property(bus5, DOMAIN_IFACE, 'Members'), members5)

    def test_bus_emptied_removes_domain(self):
        rec, _ = self.record()
        bus5, bus4 = domain_path('0000:05'), domain_path('0000:04')
        self.machine['devices'] = [d for d in self.machine['devices'] if d['address'] not in (CMI, RTL)]
        mark = self.rewrite(rec)
        removed = rec.wait_interfaces_removed(bus5, mark)
        self.assertIn(DOMAIN_IFACE, removed)
        rec.wait_interfaces_removed(device_path(CMI), mark)
        rec.wait_interfaces_removed(device_path(RTL), mark)
        # The bridge's own domain stays, with the bridge alone in it.
        rec.wait_properties(bus4, DOMAIN_IFACE, {'Members': [PCI_BRIDGE],
                                                 'Blockers': [[PCI_BRIDGE, bridge_in_scope(PCI_BRIDGE)]]}, mark)
        rec.wait_properties(device_path(PCI_BRIDGE), DEVICE_IFACE, {'Affected': Invalidated}, mark)
        self.assertEqual(self.env.device_property(PCI_BRIDGE, 'Affected'), [PCI_BRIDGE])
        self.assertEqual(self.env.device_property(PCI_BRIDGE, 'ResetDomain'), bus4)
        objects = self.env.managed_objects()
        self.assertNotIn(bus5, objects)
        self.assertEqual(set(harness.domain_objects(objects)), set(WORKSTATION_DOMAINS) - {bus5})
        self.env.expect_error(bus5, PROPS_IFACE, 'GetAll', 's', [DOMAIN_IFACE], ERR_UNKNOWN_OBJECT)
        rec.sync()
        self.assertEqual([m['payload']['data'][0] for m in rec.signals(mark, member='InterfacesRemoved')
                          if m['payload']['data'][0].startswith(harness.DOMAIN_PATH_PREFIX)], [bus5])

        # Plugged back: the domain comes back, announced with its state.
        self.machine = harness.load_example('workstation.json')
        mark = self.rewrite(rec)
        props = rec.wait_interfaces_added(bus5, mark)[DOMAIN_IFACE]
        self.assertEqual(props, WORKSTATION_DOMAINS[bus5])
        rec.wait_properties(bus4, DOMAIN_IFACE, {'Members': [PCI_BRIDGE, CMI, RTL]}, mark)
        self.assertEqual(self.env.device_property(CMI, 'ResetDomain'), bus5)


class ServerDomainsTest(DomainObjectsMixin, harness.HotresetdTestCase):
    MACHINE = 'server.json'
    DOMAINS = SERVER_DOMAINS

    def test_empty_hotplug_bay_has_no_domain(self):
        # 0001:00:03.0 leads to bus 02 of segment 1, where nothing is plugged.
        self.assertNotIn(domain_path('0001:02', 0), self.env.managed_objects())
        self.env.expect_error(domain_path('0001:02', 0), PROPS_IFACE, 'GetAll', 's', [DOMAIN_IFACE],
                              ERR_UNKNOWN_OBJECT)

    def test_slot_domains_are_per_slot(self):
        for a in ('0000:33:00.0', '0000:34:00.0', '0000:35:00.0', '0001:01:00.0'):
            with self.subTest(address=a):
                seg, bus, _ = a.split(':')
                self.assertEqual(self.env.device_property(a, 'ResetDomain'), domain_path(f'{seg}:{bus}', 0))
                self.assertEqual(self.env.device_property(a, 'ResetScope'), 'slot')


# ---------------------------------------------------------------------------
# Leases


class LeaseDomainsTest(contexts_util.LeaseTestCase):
    MACHINE = 'workstation.json'

    def test_lease_changes_holders_and_context(self):
        rec, _ = self.record()
        dom = domain_path('0000:02')
        c = self.client()
        ctx = c.create_context(Description='domain test')
        mark = rec.mark()
        c.attach(ctx, NVME)
        rec.wait_properties(dom, DOMAIN_IFACE, {'Holders': [ctx]}, mark)
        rec.wait_properties(device_path(NVME), DEVICE_IFACE, {'Context': ctx}, mark)
        self.assertEqual(self.env.domain_properties(dom), dict(WORKSTATION_DOMAINS[dom], Holders=[ctx]))
        # One holder: still possible, for it.
        self.assertIs(self.env.device_property(NVME, 'HotResetPossible'), True)
        rec.sync()
        self.assertNotIn('Possible', rec.changed_properties(dom, DOMAIN_IFACE, mark))

        # The holder leaves: nobody holds anything again.
        mark = rec.mark()
        c.exit()
        rec.wait_interfaces_removed(ctx, mark)
        rec.wait_properties(dom, DOMAIN_IFACE, {'Holders': []}, mark)
        rec.wait_properties(device_path(NVME), DEVICE_IFACE, {'Context': '/'}, mark)
        self.assertEqual(self.env.domain_properties(dom), WORKSTATION_DOMAINS[dom])

    def test_detach_changes_holders(self):
        rec, _ = self.record()
        dom = domain_path('0000:03')
        ctx = self.persistent_context()
        mark = rec.mark()
        self.busctl_call(ctx, contexts_util.CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', VF0, 0)
        rec.wait_properties(dom, DOMAIN_IFACE, {'Holders': [ctx]}, mark)
        rec.wait_properties(device_path(VF0), DEVICE_IFACE, {'Context': ctx}, mark)
        # The PF is blocked by its driver, whoever holds the VF.
        self.assertEqual(self.env.get_property(dom, DOMAIN_IFACE, 'Blockers'),
                         WORKSTATION_DOMAINS[dom]['Blockers'])
        self.assertIs(self.env.get_property(dom, DOMAIN_IFACE, 'Possible'), False)
        mark = rec.mark()
        self.busctl_call(ctx, contexts_util.CONTEXT_IFACE, 'DetachDevice', 's', VF0)
        rec.wait_properties(dom, DOMAIN_IFACE, {'Holders': []}, mark)
        rec.wait_properties(device_path(VF0), DEVICE_IFACE, {'Context': '/'}, mark)
        self.assertEqual(self.env.domain_properties(dom), WORKSTATION_DOMAINS[dom])
        self.busctl_call(ctx, contexts_util.CONTEXT_IFACE, 'Release')

    def test_two_holders_block_the_domain(self):
        # With the PF on vfio-pci nothing blocks bus 03; then two contexts
        # each take one VF (they are in IOMMU groups of their own).
        machine = harness.load_example('workstation.json')
        find_device(machine, PF)['driver'] = 'vfio-pci'
        rec, _ = self.record()
        dom = domain_path('0000:03')
        mark = rec.mark()
        self.env.rewrite_machine(machine)
        rec.wait_properties(dom, DOMAIN_IFACE, {'Possible': True, 'Blockers': []}, mark)

        a, b = self.client('a'), self.client('b')
        ctx_a, ctx_b = a.create_context(), b.create_context()
        mark = rec.mark()
        a.attach(ctx_a, VF0)
        rec.wait_properties(dom, DOMAIN_IFACE, {'Holders': [ctx_a]}, mark)
        # One holder: the domain can be reset (by it), the others can't.
        rec.wait_properties(device_path(PF), DEVICE_IFACE, {'HotResetPossible': False}, mark)
        rec.wait_properties(device_path(VF1), DEVICE_IFACE, {'HotResetPossible': False}, mark)
        self.assertIs(self.env.get_property(dom, DOMAIN_IFACE, 'Possible'), True)
        self.assertIs(self.env.device_property(VF0, 'HotResetPossible'), True)

        mark = rec.mark()
        b.attach(ctx_b, VF1)
        changed = rec.wait_properties(dom, DOMAIN_IFACE, {'Possible': False, 'Holders': [ctx_a, ctx_b]}, mark)
        rec.wait_properties(device_path(VF0), DEVICE_IFACE, {'HotResetPossible': False}, mark)
        rec.wait_properties(device_path(VF1), DEVICE_IFACE, {'Context': ctx_b}, mark)
        blockers = changed['Blockers']
        self.assertEqual([x[0] for x in blockers], [VF0, VF1])
        self.assertTrue(blockers[0][1].startswith(f'held by context {ctx_a} '), blockers[0][1])
        self.assertTrue(blockers[1][1].startswith(f'held by context {ctx_b} '), blockers[1][1])
        self.assertEqual(self.env.get_property(dom, DOMAIN_IFACE, 'Blockers'), blockers)

        # One lets go: a single holder again, nothing blocks.
        mark = rec.mark()
        b.call(ctx_b, contexts_util.CONTEXT_IFACE, 'Release')
        rec.wait_properties(dom, DOMAIN_IFACE, {'Possible': True, 'Blockers': [], 'Holders': [ctx_a]}, mark)
        rec.wait_properties(device_path(VF0), DEVICE_IFACE, {'HotResetPossible': True}, mark)


# ---------------------------------------------------------------------------
# A large machine


def generated_machine(segments, ports):
    """segments PCI segments; on each, `ports` root ports on bus 00
    (8 functions a slot), each leading to a bus of 256 functions (32 slots
    of 8) on vfio-pci, every function in an IOMMU group of its own."""
    devices = []
    group = 0
    for seg in range(segments):
        for port in range(ports):
            slot, fn = divmod(port, 8)
            bus = port + 1
            devices.append({'address': f'{seg:04x}:00:{slot:02x}.{fn}', 'vendor': '0x8086', 'device': '0x7ab8',
                            'class': '0x060400', 'driver': 'pcieport', 'iommu_group': group, 'reset_methods': [],
                            'bridge': {'secondary_bus': bus, 'slot_reset': False}})
            group += 1
            for s in range(32):
                for f in range(8):
                    devices.append({'address': f'{seg:04x}:{bus:02x}:{s:02x}.{f}', 'vendor': '0x15b3',
                                    'device': '0x101e', 'class': '0x020000', 'driver': 'vfio-pci',
                                    'iommu_group': group, 'reset_methods': ['flr']})
                    group += 1
    return {'description': f'generated: {segments} segments x {ports} root ports x 256 functions',
            'devices': devices}


class _DBusError(ctypes.Structure):
    # libdbus's DBusError: name, message, five bit fields, a pointer.
    _fields_ = [('name', ctypes.c_char_p), ('message', ctypes.c_char_p), ('bits', ctypes.c_uint),
                ('padding', ctypes.c_void_p)]


def _libdbus():
    lib = ctypes.CDLL(ctypes.util.find_library('dbus-1') or 'libdbus-1.so.3')
    for name in ('dbus_connection_open_private', 'dbus_message_new_method_call',
                 'dbus_connection_send_with_reply_and_block'):
        getattr(lib, name).restype = ctypes.c_void_p
    lib.dbus_bus_register.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.dbus_connection_send_with_reply_and_block.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                                              ctypes.c_void_p]
    lib.dbus_message_marshal.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                                         ctypes.POINTER(ctypes.c_int)]
    for name in ('dbus_message_get_type', 'dbus_message_unref', 'dbus_connection_close',
                 'dbus_connection_unref'):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.dbus_free.argtypes = [ctypes.c_void_p]
    return lib


def wire_call(address, path, interface, method, timeout):
    """A method call without arguments on a connection of its own, through
    libdbus (what python3-dbus wraps; it does not say how big a message
    is): returns (message type, the reply's size in bytes as marshalled on
    the wire, the error name or None), without parsing the body."""
    lib = _libdbus()
    err = _DBusError()
    lib.dbus_error_init(ctypes.byref(err))
    conn = lib.dbus_connection_open_private(address.encode(), ctypes.byref(err))
    if not conn or not lib.dbus_bus_register(conn, ctypes.byref(err)):
        raise AssertionError(f'cannot connect to {address}: {err.message}')
    try:
        msg = lib.dbus_message_new_method_call(harness.BUS_NAME.encode(), path.encode(), interface.encode(),
                                               method.encode())
        reply = lib.dbus_connection_send_with_reply_and_block(conn, msg, int(timeout * 1000), ctypes.byref(err))
        lib.dbus_message_unref(msg)
        if not reply:
            name = err.name.decode()
            lib.dbus_error_free(ctypes.byref(err))
            return DBUS_MESSAGE_TYPE_ERROR, 0, name
        buf, size = ctypes.c_void_p(), ctypes.c_int()
        ok = lib.dbus_message_marshal(reply, ctypes.byref(buf), ctypes.byref(size))
        mtype = lib.dbus_message_get_type(reply)
        lib.dbus_message_unref(reply)
        if not ok:
            raise AssertionError('dbus_message_marshal failed')
        lib.dbus_free(buf)
        return mtype, size.value, None
    finally:
        lib.dbus_connection_close(conn)
        lib.dbus_connection_unref(conn)


class LargeMachineTest(harness.HotresetdTestCase):
    MACHINE = None

    def measure(self, segments, ports):
        machine = generated_machine(segments, ports)
        n = len(machine['devices'])
        t0 = time.monotonic()
        d = self.env.start_daemon(machine, name=f'hotresetd-{n}', wait=False)
        d.wait_ready(timeout=max(harness.START_TIMEOUT, 120 * harness.TIMEOUT_SCALE))
        started = time.monotonic() - t0
        t1 = time.monotonic()
        mtype, size, error = wire_call(self.env.bus.address, ROOT_PATH, OM_IFACE, 'GetManagedObjects',
                                       300 * harness.TIMEOUT_SCALE)
        answered = time.monotonic() - t1
        self.assertEqual(mtype, DBUS_MESSAGE_TYPE_METHOD_RETURN, f'GetManagedObjects failed: {error}')
        harness.log(f'{n} functions: the daemon owned its name {started:.2f} s after it was started; '
                    f'GetManagedObjects: {size} bytes ({size / n:.1f} per function) in {answered:.2f} s')
        return d, n, size

    def test_get_managed_objects_on_20000_functions(self):
        d, n, size = self.measure(3, 27)
        self.assertGreaterEqual(n, 20000)
        # It still answers, and it is still the same daemon.
        self.assertDaemonRunning()
        self.assertEqual(self.env.manager_property('DeviceCount'), n)
        self.assertEqual(self.env.device_property('0002:1b:1f.7', 'ResetDomain'), domain_path('0002:1b'))
        self.assertEqual(len(self.env.get_property(domain_path('0002:1b'), DOMAIN_IFACE, 'Members')), 256)
        self.assertEqual(len(self.env.device_property('0000:01:00.0', 'Affected')), 256)
        self.assertEqual(self.env.stop_daemon(d), 0, d.log()[-4000:])

        # The same on about 2,000 functions: the bytes per function agree,
        # so the answer grows with the functions, not with the scopes.
        d, n_small, small = self.measure(1, 8)
        self.assertLess(n_small, n / 5)
        per_function, per_function_small = size / n, small / n_small
        self.assertLess(max(per_function, per_function_small) / min(per_function, per_function_small), 1.5,
                        f'{per_function:.1f} bytes per function at {n}, {per_function_small:.1f} at {n_small}')
        self.assertDaemonRunning()

    def test_no_reply_over_the_bus_limit_at_65536_functions(self):
        # Everything at this size is more than a D-Bus message may hold
        # (32 MiB): GetManagedObjects is refused, precisely, instead of
        # being sent and costing the daemon its connection (and every lease).
        machine = generated_machine(3, 86)
        n = len(machine['devices'])
        self.assertGreaterEqual(n, 65536)
        d = self.env.start_daemon(machine, name=f'hotresetd-{n}', wait=False)
        d.wait_ready(timeout=max(harness.START_TIMEOUT, 120 * harness.TIMEOUT_SCALE))
        self.env.expect_error(ROOT_PATH, OM_IFACE, 'GetManagedObjects', '', [],
                              'org.freedesktop.DBus.Error.LimitsExceeded',
                              (f'for {n} devices', 'ListDevices', 'GetAll'))
        self.assertIn('Refused GetManagedObjects', d.log())
        # The daemon is still there, and the replies that can be sent are.
        self.assertDaemonRunning()
        self.assertEqual(len(self.env.list_devices()), n)
        self.assertEqual(self.env.manager_property('DeviceCount'), n)
        self.assertEqual(len(self.env.device_property('0002:56:00.0', 'Affected')), 256)
        self.assertEqual(self.env.stop_daemon(d), 0, d.log()[-4000:])


if __name__ == '__main__':
    harness.main()

#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Machine file rewrites (write a temporary file, rename it over) are udev
events: hotplug add/remove (InterfacesAdded/Removed, DeviceCount), bind and
unbind (Driver and CdevPath on the device; HotResetPossible, CheckHotReset
and Affected on its siblings, with PropertiesChanged for them — Affected by
invalidation — and for their reset domain), changes of group, reset methods
and slot reset, replaced hardware, bridges with children."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (CDEV_RE, DEVICE_IFACE, DOMAIN_IFACE, ERR_NO_SUCH_DEVICE, MANAGER_IFACE,  # noqa: E402
                     ROOT_PATH, Invalidated, device_path, domain_path, find_device)

GPU, AUDIO, NVME = '0000:01:00.0', '0000:01:00.1', '0000:02:00.0'
PCI_BRIDGE, CMI, RTL, NEW = '0000:04:00.0', '0000:05:00.0', '0000:05:01.0', '0000:05:02.0'
# The reset domains: the GPU's bus, the PCI bridge's bus (its reset hits bus
# 05 too), bus 05 behind the PCI bridge.
GPU_DOMAIN, BRIDGE_DOMAIN, BUS5_DOMAIN = domain_path('0000:01'), domain_path('0000:04'), domain_path('0000:05')

SB_LIVE = {'address': NEW, 'vendor': '0x1102', 'device': '0x0002', 'class': '0x040100',
           'driver': 'snd_emu10k1', 'iommu_group': 19, 'reset_methods': ['pm'],
           'description': 'Creative SB Live! (EMU10K1), plugged into the PCI bus'}


def is_cdev(v):
    return isinstance(v, str) and CDEV_RE.match(v) is not None


class EventsTest(harness.HotresetdTestCase):
    MACHINE = 'workstation.json'

    def setUp(self):
        super().setUp()
        self.machine = harness.load_example('workstation.json')
        self.rec, _ = self.record()

    def rewrite(self):
        mark = self.rec.mark()
        self.env.rewrite_machine(self.machine)
        return mark

    def dev(self, address):
        return find_device(self.machine, address)

    def assertNoSignalsFor(self, path, since, member=None):
        got = [m for m in self.rec.signals(since, member=member) if m.get('path') == path
               or (m.get('member') in ('InterfacesAdded', 'InterfacesRemoved') and m['payload']['data'][0] == path)]
        self.assertEqual(got, [], f'unexpected signals for {path}:\n' + self.rec.describe(since))

    # --- hotplug

    def test_hotplug_add_and_remove(self):
        self.machine['devices'].append(SB_LIVE)
        mark = self.rewrite()
        added = self.rec.wait_interfaces_added(device_path(NEW), mark)
        self.assertIn(DEVICE_IFACE, added)
        props = added[DEVICE_IFACE]
        self.assertEqual(props['Address'], NEW)
        self.assertEqual(props['VendorId'], 0x1102)
        self.assertEqual(props['DeviceId'], 0x0002)
        self.assertEqual(props['Class'], 0x040100)
        self.assertEqual(props['Driver'], 'snd_emu10k1')
        self.assertEqual(props['IommuGroup'], 19)
        self.assertEqual(props['CdevPath'], '')
        self.assertEqual(props['ResetScope'], 'bus')
        self.assertEqual(props['ResetDomain'], BUS5_DOMAIN)
        # Affected is explicit: not announced with the object, read with Get.
        self.assertNotIn('Affected', props)
        self.assertEqual(self.env.device_property(NEW, 'Affected'), [CMI, RTL, NEW])
        self.assertIs(props['HotResetPossible'], False)
        self.rec.wait_properties(ROOT_PATH, MANAGER_IFACE, {'DeviceCount': 17}, mark)
        # The devices already on the bus now hit the new one too (Affected
        # is invalidated, then read with Get) ...
        self.rec.wait_properties(device_path(CMI), DEVICE_IFACE, {'Affected': Invalidated}, mark)
        self.rec.wait_properties(device_path(RTL), DEVICE_IFACE, {'Affected': Invalidated}, mark)
        self.rec.wait_properties(device_path(PCI_BRIDGE), DEVICE_IFACE, {'Affected': Invalidated}, mark)
        self.assertEqual(self.env.device_property(CMI, 'Affected'), [CMI, RTL, NEW])
        self.assertEqual(self.env.device_property(RTL, 'Affected'), [CMI, RTL, NEW])
        self.assertEqual(self.env.device_property(PCI_BRIDGE, 'Affected'), [PCI_BRIDGE, CMI, RTL, NEW])
        # ... and so do the domains whose reset hits it, with the new value.
        self.rec.wait_properties(BUS5_DOMAIN, DOMAIN_IFACE, {'Members': [CMI, RTL, NEW]}, mark)
        self.rec.wait_properties(BRIDGE_DOMAIN, DOMAIN_IFACE, {'Members': [PCI_BRIDGE, CMI, RTL, NEW]}, mark)
        # ... and the state agrees.
        self.assertEqual(self.env.manager_property('DeviceCount'), 17)
        self.assertEqual(self.env.get_device(NEW), device_path(NEW))
        self.assertIn((NEW, 'snd_emu10k1', 'bus', device_path(NEW)), self.env.list_devices())
        possible, entries = self.env.check_hot_reset(CMI)
        self.assertIs(possible, False)
        self.assertEqual([e[0] for e in entries], [CMI, RTL, NEW])
        self.assertTrue(entries[2][4].startswith('not bound to a vfio driver: bound to snd_emu10k1'), entries[2])
        # Devices elsewhere are not disturbed.
        self.assertNoSignalsFor(device_path(GPU), mark)
        self.assertNoSignalsFor(GPU_DOMAIN, mark)

        # Unplug it again.
        self.machine['devices'].remove(SB_LIVE)
        mark = self.rewrite()
        ifaces = self.rec.wait_interfaces_removed(device_path(NEW), mark)
        self.assertIn(DEVICE_IFACE, ifaces)
        self.rec.wait_properties(ROOT_PATH, MANAGER_IFACE, {'DeviceCount': 16}, mark)
        self.rec.wait_properties(device_path(CMI), DEVICE_IFACE, {'Affected': Invalidated}, mark)
        self.rec.wait_properties(device_path(PCI_BRIDGE), DEVICE_IFACE, {'Affected': Invalidated}, mark)
        self.assertEqual(self.env.device_property(PCI_BRIDGE, 'Affected'), [PCI_BRIDGE, CMI, RTL])
        self.rec.wait_properties(BUS5_DOMAIN, DOMAIN_IFACE, {'Members': [CMI, RTL]}, mark)
        self.rec.wait_properties(BRIDGE_DOMAIN, DOMAIN_IFACE, {'Members': [PCI_BRIDGE, CMI, RTL]}, mark)
        self.assertEqual(self.env.manager_property('DeviceCount'), 16)
        self.env.expect_error(ROOT_PATH, MANAGER_IFACE, 'GetDevice', 's', [NEW], ERR_NO_SUCH_DEVICE, NEW)
        self.assertNotIn(device_path(NEW), self.env.managed_objects())
        self.assertEqual(self.env.device_property(CMI, 'Affected'), [CMI, RTL])

    def test_whole_machine_replaced(self):
        # A rewrite to a different machine: every difference is delivered,
        # and the result is exactly the new machine.
        server = harness.load_example('server.json')
        mark = self.rec.mark()
        self.env.rewrite_machine(server)
        self.rec.wait_properties(ROOT_PATH, MANAGER_IFACE, {'DeviceCount': 24}, mark)
        self.rec.wait_interfaces_added(device_path('0001:01:00.0'), mark)
        self.rec.wait_interfaces_removed(device_path('0000:05:01.0'), mark)
        listed = self.env.list_devices()
        self.assertEqual([(a, d) for a, d, _, _ in listed],
                         sorted((d['address'], d['driver'] or '') for d in server['devices']))
        objects = self.env.managed_objects()
        self.assertEqual(set(harness.device_objects(objects)), {device_path(d['address']) for d in server['devices']})
        self.assertEqual(set(harness.domain_objects(objects)),
                         set(harness.expected_reset_domains(server).values()) - {'/'})
        # 0000:01:00.0 was the GPU and is now the BMC's bridge.
        self.assertIs(self.env.device_property(GPU, 'IsBridge'), True)
        self.assertEqual(self.env.device_property(GPU, 'VendorId'), 0x1a03)
        self.assertEqual(self.env.device_property(GPU, 'Affected'), [GPU, '0000:02:00.0'])
        self.assertEqual(self.env.device_property('0000:33:00.0', 'ResetScope'), 'slot')

    def test_bridge_removed_with_children(self):
        gone = ['0000:00:1c.4', PCI_BRIDGE, CMI, RTL]
        self.machine['devices'] = [d for d in self.machine['devices'] if d['address'] not in gone]
        mark = self.rewrite()
        for a in gone:
            self.rec.wait_interfaces_removed(device_path(a), mark)
        self.rec.wait_properties(ROOT_PATH, MANAGER_IFACE, {'DeviceCount': 12}, mark)
        self.assertEqual(len(self.env.list_devices()), 12)
        self.assertEqual(set(self.env.managed_objects()) & {device_path(a) for a in gone}, set())
        # Nothing is left on buses 04 and 05: their reset domains went too.
        self.rec.wait_interfaces_removed(BRIDGE_DOMAIN, mark)
        self.rec.wait_interfaces_removed(BUS5_DOMAIN, mark)
        self.assertEqual(set(self.env.managed_objects()) & {BRIDGE_DOMAIN, BUS5_DOMAIN}, set())
        # Children go before their bridge, as udev delivers them.
        order = [m['payload']['data'][0] for m in self.rec.signals(mark, member='InterfacesRemoved')]
        self.assertLess(order.index(device_path(CMI)), order.index(device_path(PCI_BRIDGE)))
        self.assertLess(order.index(device_path(PCI_BRIDGE)), order.index(device_path('0000:00:1c.4')))

        # Plug it all back.
        self.machine = harness.load_example('workstation.json')
        mark = self.rewrite()
        for a in gone:
            props = self.rec.wait_interfaces_added(device_path(a), mark)[DEVICE_IFACE]
            self.assertEqual(props['Address'], a)
        self.assertEqual(self.rec.wait_interfaces_added(BRIDGE_DOMAIN, mark)[DOMAIN_IFACE]['Members'],
                         [PCI_BRIDGE, CMI, RTL])
        self.assertEqual(self.rec.wait_interfaces_added(BUS5_DOMAIN, mark)[DOMAIN_IFACE]['Members'], [CMI, RTL])
        self.rec.wait_properties(ROOT_PATH, MANAGER_IFACE, {'DeviceCount': 16}, mark)
        self.assertEqual(self.env.device_property(CMI, 'Affected'), [CMI, RTL])
        self.assertEqual(self.env.device_property(PCI_BRIDGE, 'Affected'), [PCI_BRIDGE, CMI, RTL])
        order = [m['payload']['data'][0] for m in self.rec.signals(mark, member='InterfacesAdded')]
        self.assertLess(order.index(device_path('0000:00:1c.4')), order.index(device_path(PCI_BRIDGE)))
        self.assertLess(order.index(device_path(PCI_BRIDGE)), order.index(device_path(CMI)))

    def test_replaced_hardware(self):
        # Same address, different device: udev sends remove + add.
        nvme = self.dev(NVME)
        nvme['vendor'], nvme['device'] = '0x15b7', '0x5011'   # WD SN850
        mark = self.rewrite()
        self.rec.wait_interfaces_removed(device_path(NVME), mark)
        props = self.rec.wait_interfaces_added(device_path(NVME), mark)[DEVICE_IFACE]
        self.assertEqual((props['VendorId'], props['DeviceId']), (0x15b7, 0x5011))
        self.assertEqual(self.env.device_property(NVME, 'VendorId'), 0x15b7)
        self.assertEqual(self.env.device_property(NVME, 'DeviceId'), 0x5011)
        self.assertEqual(self.env.manager_property('DeviceCount'), 16)

    # --- bind / unbind

    def test_bind_sibling_makes_reset_possible(self):
        self.assertIs(self.env.device_property(GPU, 'HotResetPossible'), False)
        self.dev(AUDIO)['driver'] = 'vfio-pci'
        mark = self.rewrite()
        # The device itself: new driver and a cdev.
        self.rec.wait_properties(device_path(AUDIO), DEVICE_IFACE,
                                 {'Driver': 'vfio-pci', 'CdevPath': is_cdev, 'HotResetPossible': True}, mark)
        # The sibling: its verdict flips, and that is signalled.
        self.rec.wait_properties(device_path(GPU), DEVICE_IFACE, {'HotResetPossible': True}, mark)
        self.assertEqual(self.env.device_property(AUDIO, 'Driver'), 'vfio-pci')
        self.assertRegex(self.env.device_property(AUDIO, 'CdevPath'), CDEV_RE)
        self.assertNotEqual(self.env.device_property(AUDIO, 'CdevPath'), self.env.device_property(GPU, 'CdevPath'))
        self.assertIs(self.env.device_property(GPU, 'HotResetPossible'), True)
        possible, entries = self.env.check_hot_reset(GPU)
        self.assertIs(possible, True)
        self.assertEqual(entries, [(GPU, 'vfio-pci', 14, '', ''), (AUDIO, 'vfio-pci', 14, '', '')])
        self.assertEqual(self.env.check_hot_reset(AUDIO), (possible, entries))
        self.assertIn((AUDIO, 'vfio-pci', 'bus', device_path(AUDIO)), self.env.list_devices())
        # Unrelated devices are not disturbed.
        self.assertNoSignalsFor(device_path(NVME), mark)
        self.assertNoSignalsFor(ROOT_PATH, mark, member='PropertiesChanged')

    def test_unbind(self):
        cdev = self.env.device_property(GPU, 'CdevPath')
        self.assertRegex(cdev, CDEV_RE)
        self.dev(AUDIO)['driver'] = 'vfio-pci'
        mark = self.rewrite()
        self.rec.wait_properties(device_path(AUDIO), DEVICE_IFACE, {'HotResetPossible': True}, mark)
        self.rec.wait_properties(device_path(GPU), DEVICE_IFACE, {'HotResetPossible': True}, mark)

        # Unbind the GPU: no driver, no cdev, and the audio function's verdict flips.
        self.dev(GPU)['driver'] = None
        mark = self.rewrite()
        self.rec.wait_properties(device_path(GPU), DEVICE_IFACE,
                                 {'Driver': '', 'CdevPath': '', 'HotResetPossible': False}, mark)
        self.rec.wait_properties(device_path(AUDIO), DEVICE_IFACE, {'HotResetPossible': False}, mark)
        self.assertEqual(self.env.device_property(GPU, 'Driver'), '')
        self.assertEqual(self.env.device_property(GPU, 'CdevPath'), '')
        possible, entries = self.env.check_hot_reset(AUDIO)
        self.assertIs(possible, False)
        self.assertEqual([e[:4] for e in entries], [(GPU, '', 14, ''), (AUDIO, 'vfio-pci', 14, '')])
        self.assertTrue(entries[0][4].startswith('not bound to a vfio driver: no driver'), entries[0][4])
        self.assertEqual(entries[1][4], '')
        self.assertIn((GPU, '', 'bus', device_path(GPU)), self.env.list_devices())

        # Bind it back.
        self.dev(GPU)['driver'] = 'vfio-pci'
        mark = self.rewrite()
        self.rec.wait_properties(device_path(GPU), DEVICE_IFACE,
                                 {'Driver': 'vfio-pci', 'CdevPath': is_cdev, 'HotResetPossible': True}, mark)
        self.rec.wait_properties(device_path(AUDIO), DEVICE_IFACE, {'HotResetPossible': True}, mark)

    def test_rebind_to_host_driver(self):
        # vfio-pci -> nvme: the device leaves the dev_set (unbind, then bind).
        self.dev(NVME)['driver'] = 'nvme'
        mark = self.rewrite()
        self.rec.wait_properties(device_path(NVME), DEVICE_IFACE,
                                 {'Driver': 'nvme', 'CdevPath': '', 'HotResetPossible': False}, mark)
        possible, entries = self.env.check_hot_reset(NVME)
        self.assertIs(possible, False)
        self.assertEqual(entries[0][:4], (NVME, 'nvme', 15, ''))
        self.assertTrue(entries[0][4].startswith('not bound to a vfio driver: bound to nvme'), entries[0][4])

    def test_vfio_variant_driver(self):
        # A vendor variant driver joins the dev_set like vfio-pci does.
        self.dev(AUDIO)['driver'] = 'nvgrace-gpu-vfio-pci'
        mark = self.rewrite()
        self.rec.wait_properties(device_path(GPU), DEVICE_IFACE, {'HotResetPossible': True}, mark)
        self.rec.wait_properties(device_path(AUDIO), DEVICE_IFACE,
                                 {'Driver': 'nvgrace-gpu-vfio-pci', 'CdevPath': is_cdev}, mark)
        possible, entries = self.env.check_hot_reset(GPU)
        self.assertIs(possible, True)

    # --- other changes

    def test_iommu_group_and_reset_methods_change(self):
        nvme = self.dev(NVME)
        nvme['iommu_group'] = None
        nvme['reset_methods'] = ['bus']
        mark = self.rewrite()
        self.rec.wait_properties(device_path(NVME), DEVICE_IFACE, {'IommuGroup': -1, 'ResetMethods': ['bus']}, mark)
        self.assertEqual(self.env.device_property(NVME, 'IommuGroup'), -1)
        self.assertEqual(self.env.device_property(NVME, 'ResetMethods'), ['bus'])
        self.assertEqual(self.env.check_hot_reset(NVME)[1][0][2], -1)
        # Not a remove + add.
        self.assertEqual(self.rec.signals(mark, member='InterfacesRemoved'), [])

    def test_slot_reset_change(self):
        # The NVMe root port gains a resettable slot: the scope becomes "slot".
        find_device(self.machine, '0000:00:06.0')['bridge']['slot_reset'] = True
        mark = self.rewrite()
        # Another reset, another domain: the bus's goes, the slot's comes.
        slot = domain_path('0000:02', 0)
        self.rec.wait_properties(device_path(NVME), DEVICE_IFACE,
                                 {'ResetScope': 'slot', 'ResetDomain': slot, 'Affected': Invalidated}, mark)
        self.rec.wait_interfaces_removed(domain_path('0000:02'), mark)
        added = self.rec.wait_interfaces_added(slot, mark)[DOMAIN_IFACE]
        self.assertEqual((added['Scope'], added['Members'], added['Possible']), ('slot', [NVME], True))
        self.assertEqual(self.env.device_property(NVME, 'ResetScope'), 'slot')
        self.assertEqual(self.env.device_property(NVME, 'Affected'), [NVME])
        self.assertIn((NVME, 'vfio-pci', 'slot', device_path(NVME)), self.env.list_devices())

    def test_identical_rewrite_is_silent(self):
        mark = self.rewrite()   # the same machine again
        # A later change proves the identical rewrite has been processed.
        self.dev(AUDIO)['driver'] = 'vfio-pci'
        self.rewrite()
        self.rec.wait_properties(device_path(GPU), DEVICE_IFACE, {'HotResetPossible': True}, mark)
        self.rec.sync()
        paths = {m['path'] for m in self.rec.signals(mark)}
        # The two functions and the reset domain they share.
        self.assertEqual(paths, {device_path(GPU), device_path(AUDIO), GPU_DOMAIN}, self.rec.describe(mark))
        self.assertEqual(self.rec.signals(mark, member='InterfacesAdded'), [])
        self.assertEqual(self.rec.signals(mark, member='InterfacesRemoved'), [])

    def test_unrelated_file_in_directory_is_ignored(self):
        mark = self.rec.mark()
        other = os.path.join(os.path.dirname(self.env.machine_path), 'other.json')
        self.env.rewrite_machine({'devices': []}, path=other)
        self.dev(AUDIO)['driver'] = 'vfio-pci'
        self.rewrite()
        self.rec.wait_properties(device_path(GPU), DEVICE_IFACE, {'HotResetPossible': True}, mark)
        self.assertEqual(self.rec.signals(mark, member='InterfacesRemoved'), [])
        self.assertEqual(self.env.manager_property('DeviceCount'), 16)


class ServerEventsTest(harness.HotresetdTestCase):
    MACHINE = 'server.json'

    def test_hotplug_into_empty_slot(self):
        # examples/server.json has an empty hotplug bay behind 0001:00:03.0.
        rec, mark = self.record()
        machine = harness.load_example('server.json')
        new = {'address': '0001:02:00.0', 'vendor': '0x144d', 'device': '0xa824', 'class': '0x010802',
               'driver': 'nvme', 'iommu_group': 63, 'reset_methods': ['flr', 'bus']}
        machine['devices'].append(new)
        self.env.rewrite_machine(machine)
        props = rec.wait_interfaces_added(device_path('0001:02:00.0'), mark)[DEVICE_IFACE]
        self.assertEqual(props['ResetScope'], 'slot')
        self.assertNotIn('Affected', props)  # explicit: read with Get
        self.assertEqual(self.env.device_property('0001:02:00.0', 'Affected'), ['0001:02:00.0'])
        # The slot's reset domain comes with it.
        slot = domain_path('0001:02', 0)
        self.assertEqual(props['ResetDomain'], slot)
        self.assertEqual(rec.wait_interfaces_added(slot, mark)[DOMAIN_IFACE]['Members'], ['0001:02:00.0'])
        self.assertEqual(props['Driver'], 'nvme')
        self.assertEqual(props['IommuGroup'], 63)
        self.assertIs(props['HotResetPossible'], False)
        rec.wait_properties(ROOT_PATH, MANAGER_IFACE, {'DeviceCount': 25}, mark)
        # Nothing else shares the slot: no other device is told anything.
        self.assertEqual({m['path'] for m in rec.signals(mark, member='PropertiesChanged')}, {ROOT_PATH},
                         rec.describe(mark))
        # Bind it to vfio-pci: the slot can then be reset.
        new['driver'] = 'vfio-pci'
        mark = rec.mark()
        self.env.rewrite_machine(machine)
        rec.wait_properties(device_path('0001:02:00.0'), DEVICE_IFACE,
                            {'Driver': 'vfio-pci', 'CdevPath': is_cdev, 'HotResetPossible': True}, mark)
        rec.wait_properties(slot, DOMAIN_IFACE, {'Possible': True, 'Blockers': []}, mark)
        self.assertEqual(self.env.check_hot_reset('0001:02:00.0'),
                         (True, [('0001:02:00.0', 'vfio-pci', 63, '', '')]))
        # Surprise removal of a bound device: unbind, then remove.
        machine['devices'].remove(new)
        mark = rec.mark()
        self.env.rewrite_machine(machine)
        rec.wait_interfaces_removed(device_path('0001:02:00.0'), mark)
        rec.wait_interfaces_removed(slot, mark)
        rec.wait_properties(ROOT_PATH, MANAGER_IFACE, {'DeviceCount': 24}, mark)
        self.env.expect_error(ROOT_PATH, MANAGER_IFACE, 'GetDevice', 's', ['0001:02:00.0'],
                              ERR_NO_SUCH_DEVICE, '0001:02:00.0')

    def test_switch_slot_rebind(self):
        # Binding the NVMe in slot 1 to vfio-pci changes its own verdict, and
        # the verdict of the switch ports whose bus reset covers it is still
        # refused (bridges in scope).
        rec, mark = self.record()
        machine = harness.load_example('server.json')
        find_device(machine, '0000:33:00.0')['driver'] = 'vfio-pci'
        self.env.rewrite_machine(machine)
        rec.wait_properties(device_path('0000:33:00.0'), DEVICE_IFACE,
                            {'Driver': 'vfio-pci', 'CdevPath': is_cdev, 'HotResetPossible': True}, mark)
        self.assertIs(self.env.device_property('0000:31:00.0', 'HotResetPossible'), False)
        possible, entries = self.env.check_hot_reset('0000:31:00.0')
        self.assertIs(possible, False)
        self.assertEqual({e[0]: e[4] for e in entries}['0000:33:00.0'], '')


if __name__ == '__main__':
    harness.main()

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Contexts (leases) on tests/integration/data/leases.json, in the cdev
model and the legacy group model: CreateContext and its options, the
Context properties and their signals, Release, AttachDevice (devids and
every refusal, with error names and what the messages name), Bind=false,
DetachDevice, Device.Context, OpenDevice / OpenIommufd (files received
over SCM_RIGHTS), GetHotResetInfo exactly as the kernel answers it
(vm/README.md), and refusals of every state-changing method to callers
that are not root."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ADDRESS_FORM, ROOT_PATH, device_path  # noqa: E402
from contexts_util import (CONTEXT_IFACE, DEVICE_IFACE, DEVID_NOT_OWNED, DEVID_OWNED,  # noqa: E402
                           ERR_ACCESS_DENIED, ERR_GROUP_NOT_VIABLE, ERR_IN_USE, ERR_INVALID_ARGS, ERR_NO_RESET,
                           ERR_NO_SUCH_DEVICE, ERR_NOT_ATTACHED, ERR_NOT_IN_DEV_SET, ERR_UNKNOWN_METHOD,
                           ERR_UNKNOWN_OBJECT, ERR_UNSUPPORTED, MANAGER_IFACE, NOBODY_GID, NOBODY_UID,
                           LeaseTestCase, allow_other_users, busctl_as_nobody, context_path_ok, load_machine,
                           variant_dict)

# Until polkit: AccessDenied for every caller that is not root. With
# polkit (not running on this private bus) a refusal may also ask for
# interactive authorization. Either way: refused, and nothing changes.
AUTH_REFUSALS = (ERR_ACCESS_DENIED, 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired')

FN0, FN1 = '0000:01:00.0', '0000:01:00.1'          # one group (10), both vfio-pci
PORT0, PORT1 = '0000:02:00.0', '0000:02:00.1'      # one bus, groups 20 and 21
STUB0, STUB1 = '0000:03:00.0', '0000:03:00.1'      # fn1 on pci-stub, group 30
GPU, HDA = '0000:04:00.0', '0000:04:00.1'          # HDA on snd_hda_intel, group 40
NIC0, NIC1 = '0000:05:00.0', '0000:05:00.1'        # fn1 on e1000e, group 51
BUSONLY = '0000:06:00.0'
EP, BRIDGE, BEHIND = '0000:07:00.0', '0000:07:01.0', '0000:08:00.0'
NVME = '0000:09:00.0'
ROOTBUS = '0000:00:1d.0'
ABSENT = '0000:0f:00.0'


class ContextTests:
    """Model-independent tests; the concrete classes below say the model."""

    # --- CreateContext and the context object

    def test_create_context_properties(self):
        rec, mark = self.record()
        c = self.client()
        ctx = c.create_context(Description='vm-1: test guest')
        self.assertTrue(context_path_ok(ctx), ctx)
        added = rec.wait_interfaces_added(ctx, mark)
        expected = {'Owner': c.unique_name, 'OwnerUid': 0, 'Persistent': False, 'Lifetime': 'connection', 'Pid': 0,
                    'Backend': self.backend(), 'Description': 'vm-1: test guest', 'Devices': []}
        self.assertEqual(added.get(CONTEXT_IFACE), expected)
        typed = self.env.get_all_typed(ctx, CONTEXT_IFACE)
        self.assertEqual(typed, {'Owner': ('s', c.unique_name), 'OwnerUid': ('u', 0), 'Persistent': ('b', False),
                                 'Lifetime': ('s', 'connection'), 'Pid': ('u', 0),
                                 'Backend': ('s', self.backend()), 'Description': ('s', 'vm-1: test guest'),
                                 'Devices': ('as', [])})
        self.assertEqual(self.env.manager_property('Backend'), self.backend())
        # Listed by the ObjectManager and in the tree.
        objects = self.env.managed_objects()
        self.assertEqual(objects[ctx][CONTEXT_IFACE], expected)
        self.assertEqual(self.introspected_contexts(), [ctx.rsplit('/', 1)[1]])
        # Each call makes a new context.
        ctx2 = c.create_context()
        self.assertNotEqual(ctx2, ctx)
        self.assertEqual(self.ctx_props(ctx2)['Description'], '')
        self.assertEqual(self.context_paths(), sorted([ctx, ctx2]))

    def test_description_cannot_forge_log_lines(self):
        # What a caller sends is logged with its control characters escaped.
        c = self.client()
        c.create_context(Description='vm-1\n<2>forged: the daemon crashed\x1b[31m')
        log = self.env.daemon.log()
        self.assertIn('vm-1\\x0a<2>forged: the daemon crashed\\x1b[31m', log)
        self.assertFalse([line for line in log.splitlines() if line.startswith('<2>forged')], log)

    def test_persistent_context_from_busctl(self):
        rec, mark = self.record()
        ctx = self.persistent_context('kept for a shell session')
        self.assertTrue(context_path_ok(ctx), ctx)
        added = rec.wait_interfaces_added(ctx, mark)[CONTEXT_IFACE]
        expected = {'Owner': 'uid:0', 'OwnerUid': 0, 'Persistent': True, 'Lifetime': 'persistent', 'Pid': 0,
                    'Backend': self.backend(), 'Description': 'kept for a shell session', 'Devices': []}
        self.assertEqual(added, expected)
        # busctl's connection is gone: the context is still there.
        self.assertEqual(self.ctx_props(ctx), expected)
        self.assertEqual(self.context_paths(), [ctx])
        (devid,) = self.busctl_call(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', FN0, 0)
        if self.CDEV:
            self.assertGreater(devid, 0)
            self.assertEqual(self.busctl_call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', FN0),
                             [3, [[FN0, devid], [FN1, DEVID_OWNED]]])
        else:
            self.assertEqual(devid, 0)
        self.assertEqual(self.ctx_devices(ctx), [FN0])
        mark = rec.mark()
        self.busctl_call(ctx, CONTEXT_IFACE, 'Release')
        rec.wait_interfaces_removed(ctx, mark)
        self.assertNoContexts()
        self.assertEqual(self.holder(FN0), '/')

    def test_create_context_bad_options(self):
        c = self.client()
        call = lambda opts: c.error(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', opts)  # noqa: E731
        self.assertError(call(variant_dict({'Persistant': True})), ERR_INVALID_ARGS, 'Persistant')
        self.assertError(call(variant_dict({'Persistent': 'yes'})), ERR_INVALID_ARGS, 'Persistent')
        self.assertError(call(variant_dict({'Persistent': ('i', 1)})), ERR_INVALID_ARGS, 'Persistent')
        self.assertError(call(variant_dict({'Description': ('u', 7)})), ERR_INVALID_ARGS, 'Description')
        self.assertError(call(variant_dict({'Description': 'x' * 257})), ERR_INVALID_ARGS, 'Description')
        # busctl shows the message too.
        self.assertIn('Bogus', self.busctl_error(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', 1,
                                                 'Bogus', 'b', 'true'))
        self.assertIn('Persistent', self.busctl_error(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', 1,
                                                      'Persistent', 's', 'true'))
        # Nothing was created by any of them.
        self.assertNoContexts()
        # 256 bytes is fine.
        ctx = c.create_context(Description='d' * 256)
        self.assertEqual(self.ctx_props(ctx)['Description'], 'd' * 256)

    def test_release_by_owner(self):
        rec, _ = self.record()
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, FN0)
        c.attach(ctx, NVME)
        self.assertEqual(self.holder(FN0), ctx)
        mark = rec.mark()
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'Release'), [])
        ifaces = rec.wait_interfaces_removed(ctx, mark)
        self.assertIn(CONTEXT_IFACE, ifaces)
        rec.wait_properties(device_path(FN0), DEVICE_IFACE, {'Context': '/'}, mark)
        rec.wait_properties(device_path(NVME), DEVICE_IFACE, {'Context': '/'}, mark)
        self.assertNoContexts()
        for a in (FN0, FN1, NVME):
            self.assertEqual(self.holder(a), '/')
        # The object is gone ...
        self.assertError(c.error(ctx, CONTEXT_IFACE, 'Release'), (ERR_UNKNOWN_OBJECT, ERR_UNKNOWN_METHOD))
        # ... and the devices are free for anyone.
        other = self.client()
        ctx2 = other.create_context()
        other.attach(ctx2, FN0)
        other.attach(ctx2, NVME)
        self.assertEqual(self.ctx_devices(ctx2), [FN0, NVME])

    def test_release_of_another_clients_context_by_root(self):
        # Root may release any context (manage).
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, NVME)
        rec, mark = self.record()
        self.busctl_call(ctx, CONTEXT_IFACE, 'Release')
        rec.wait_interfaces_removed(ctx, mark)
        self.assertNoContexts()
        self.assertEqual(self.holder(NVME), '/')

    # --- AttachDevice / DetachDevice

    def test_attach_devids(self):
        rec, _ = self.record()
        c = self.client()
        ctx = c.create_context()
        devids = {}
        for a in (NVME, FN1, PORT0, FN0, PORT1):
            mark = rec.mark()
            devids[a] = c.attach(ctx, a)
            rec.wait_properties(ctx, CONTEXT_IFACE, {'Devices': lambda v, a=a: a in v}, mark)
        if self.CDEV:
            for a, devid in devids.items():
                self.assertGreater(devid, 0, a)
            self.assertEqual(len(set(devids.values())), len(devids), devids)
        else:
            self.assertEqual(set(devids.values()), {0})
        # Sorted, whatever the order of attaching.
        self.assertEqual(self.ctx_devices(ctx), sorted(devids))
        self.assertEqual(rec.changed_properties(ctx, CONTEXT_IFACE)['Devices'], sorted(devids))
        # The short address form works too, and answers for the same device.
        ctx2 = c.create_context()
        c.attach(ctx2, '06:00.0')
        self.assertEqual(self.ctx_devices(ctx2), [BUSONLY])

    def test_attach_refusals(self):
        a, b = self.client('a'), self.client('b')
        ctx_a, ctx_b = a.create_context(), b.create_context()
        a.attach(ctx_a, FN0)
        attach = lambda addr, **o: b.error(ctx_b, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', addr,  # noqa: E731
                                           variant_dict(o))
        self.assertError(attach(ABSENT), ERR_NO_SUCH_DEVICE, ABSENT)
        self.assertError(attach('not-an-address'), ERR_INVALID_ARGS, 'not-an-address', ADDRESS_FORM)
        self.assertError(attach('0000:01:00.8'), ERR_INVALID_ARGS, ADDRESS_FORM)
        self.assertError(attach(NIC1), ERR_NOT_IN_DEV_SET, NIC1, 'e1000e')
        self.assertError(attach(HDA), ERR_NOT_IN_DEV_SET, HDA, 'snd_hda_intel')
        self.assertError(attach(STUB1), ERR_NOT_IN_DEV_SET, STUB1, 'pci-stub')
        self.assertError(attach(BRIDGE), ERR_NOT_IN_DEV_SET, BRIDGE)
        # Held by another context: directly, and through its IOMMU group.
        self.assertError(attach(FN0), ERR_IN_USE, FN0, ctx_a, a.unique_name, 'uid 0')
        self.assertError(attach(FN1), ERR_IN_USE, FN1, ctx_a, a.unique_name)
        # A group with a device on a host driver.
        self.assertError(attach(GPU), ERR_GROUP_NOT_VIABLE, GPU, HDA, 'snd_hda_intel')
        # Already attached here.
        self.assertError(a.error(ctx_a, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', FN0, {}), ERR_INVALID_ARGS, FN0)
        # Options.
        self.assertError(attach(NVME, Bnid=False), ERR_INVALID_ARGS, 'Bnid')
        self.assertError(attach(NVME, Bind='no'), ERR_INVALID_ARGS, 'Bind')
        # busctl callers see the same messages.
        self.assertIn(ABSENT, self.busctl_error(ctx_b, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', ABSENT, 0))
        self.assertIn('snd_hda_intel', self.busctl_error(ctx_b, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', GPU, 0))
        self.assertIn(ctx_a, self.busctl_error(ctx_b, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', FN0, 0))
        # None of it changed anything.
        self.assertEqual(self.ctx_devices(ctx_b), [])
        self.assertEqual(self.ctx_devices(ctx_a), [FN0])
        self.assertEqual(self.context_paths(), sorted([ctx_a, ctx_b]))
        for addr in (NVME, NIC1, HDA, STUB1, GPU, BRIDGE):
            self.assertEqual(self.holder(addr), '/', addr)
        # And b can still attach what is free.
        b.attach(ctx_b, NVME)
        self.assertEqual(self.ctx_devices(ctx_b), [NVME])

    def test_detach(self):
        rec, start = self.record()
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, NVME)
        c.attach(ctx, FN0)
        # Changes are published once per batch: an attach and a detach in
        # one batch may signal nothing. Let the attach be published first.
        rec.wait_properties(device_path(NVME), DEVICE_IFACE, {'Context': ctx}, start)
        mark = rec.mark()
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'DetachDevice', 's', NVME), [])
        rec.wait_properties(ctx, CONTEXT_IFACE, {'Devices': [FN0]}, mark)
        rec.wait_properties(device_path(NVME), DEVICE_IFACE, {'Context': '/'}, mark)
        self.assertEqual(self.ctx_devices(ctx), [FN0])
        self.assertEqual(self.holder(NVME), '/')
        detach = lambda addr: c.error(ctx, CONTEXT_IFACE, 'DetachDevice', 's', addr)  # noqa: E731
        self.assertError(detach(NVME), ERR_NOT_ATTACHED, NVME)
        self.assertError(detach(PORT0), ERR_NOT_ATTACHED, PORT0)
        # An address that names no device: the contract allows either answer
        # (NoSuchDevice for unknown addresses, NotAttached from DetachDevice).
        self.assertError(detach(ABSENT), (ERR_NO_SUCH_DEVICE, ERR_NOT_ATTACHED), ABSENT)
        self.assertError(detach('01:00'), ERR_INVALID_ARGS, ADDRESS_FORM)
        self.assertIn(NVME, self.busctl_error(ctx, CONTEXT_IFACE, 'DetachDevice', 's', NVME))
        # Detached means free: another context takes it.
        other = self.client()
        ctx2 = other.create_context()
        other.attach(ctx2, NVME)
        self.assertEqual(self.holder(NVME), ctx2)
        # Detach and attach again in the same context.
        c.call(ctx, CONTEXT_IFACE, 'DetachDevice', 's', FN0)
        self.assertEqual(self.ctx_devices(ctx), [])
        c.attach(ctx, FN0)
        self.assertEqual(self.ctx_devices(ctx), [FN0])

    def test_device_context_property(self):
        rec, _ = self.record()
        c = self.client()
        ctx = c.create_context()
        self.assertEqual(self.holder(FN0), '/')
        mark = rec.mark()
        c.attach(ctx, FN0)
        rec.wait_properties(ctx, CONTEXT_IFACE, {'Devices': [FN0]}, mark)
        rec.wait_properties(device_path(FN0), DEVICE_IFACE, {'Context': ctx}, mark)
        # The other function is held through the shared IOMMU group.
        rec.wait_properties(device_path(FN1), DEVICE_IFACE, {'Context': ctx}, mark)
        self.assertEqual(self.holder(FN0), ctx)
        self.assertEqual(self.holder(FN1), ctx)
        self.assertEqual(self.env.get_property_typed(device_path(FN0), DEVICE_IFACE, 'Context'), ('o', ctx))
        # Devices elsewhere are not touched.
        self.assertEqual(self.holder(NVME), '/')
        self.assertEqual(rec.changed_properties(device_path(NVME), DEVICE_IFACE, mark), {})
        # CheckHotReset names the holder.
        possible, entries = self.env.check_hot_reset(FN0)
        self.assertEqual([(e[0], e[3]) for e in entries], [(FN0, ctx), (FN1, ctx)])

        mark = rec.mark()
        c.call(ctx, CONTEXT_IFACE, 'DetachDevice', 's', FN0)
        rec.wait_properties(ctx, CONTEXT_IFACE, {'Devices': []}, mark)
        rec.wait_properties(device_path(FN0), DEVICE_IFACE, {'Context': '/'}, mark)
        rec.wait_properties(device_path(FN1), DEVICE_IFACE, {'Context': '/'}, mark)

        mark = rec.mark()
        c.attach(ctx, FN1)
        rec.wait_properties(device_path(FN1), DEVICE_IFACE, {'Context': ctx}, mark)
        rec.wait_properties(device_path(FN0), DEVICE_IFACE, {'Context': ctx}, mark)
        mark = rec.mark()
        c.call(ctx, CONTEXT_IFACE, 'Release')
        rec.wait_interfaces_removed(ctx, mark)
        rec.wait_properties(device_path(FN1), DEVICE_IFACE, {'Context': '/'}, mark)
        rec.wait_properties(device_path(FN0), DEVICE_IFACE, {'Context': '/'}, mark)

    # --- files

    def test_open_device(self):
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, FN0)
        (first,) = c.call(ctx, CONTEXT_IFACE, 'OpenDevice', 's', FN0)
        (second,) = c.call(ctx, CONTEXT_IFACE, 'OpenDevice', 's', FN0)
        first, second = first['unix_fd'], second['unix_fd']
        for f in (first, second):
            self.assertTrue(f['regular'], f)
            self.assertIn('hotresetd-emulated', f['link'])
            self.assertIn(FN0, f['link'])
        # Two duplicates of the daemon's one open file.
        self.assertNotEqual(first['fd'], second['fd'])
        self.assertEqual((first['dev'], first['ino']), (second['dev'], second['ino']))
        # The received fd stays open in the client.
        self.assertEqual(c.fdinfo(first['fd'])['ino'], first['ino'])
        # Another device, another file.
        c.attach(ctx, NVME)
        (third,) = c.call(ctx, CONTEXT_IFACE, 'OpenDevice', 's', NVME)
        self.assertNotEqual(third['unix_fd']['ino'], first['ino'])
        self.assertIn(NVME, third['unix_fd']['link'])
        # Refusals.
        self.expect(c, ctx, CONTEXT_IFACE, 'OpenDevice', 's', [FN1], ERR_NOT_ATTACHED, FN1)
        self.expect(c, ctx, CONTEXT_IFACE, 'OpenDevice', 's', [ABSENT], ERR_NO_SUCH_DEVICE, ABSENT)
        self.expect(c, ctx, CONTEXT_IFACE, 'OpenDevice', 's', ['junk'], ERR_INVALID_ARGS, ADDRESS_FORM)
        # The daemon keeps its own file when the client closes its copies.
        c.close_fds()
        self.assertIsNone(c.fdinfo(first['fd']))
        c.call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', FN0)
        (again,) = c.call(ctx, CONTEXT_IFACE, 'OpenDevice', 's', FN0)
        self.assertEqual(again['unix_fd']['ino'], first['ino'])

    # --- GetHotResetInfo: shared cases

    def test_hot_reset_info_root_bus_and_refusals(self):
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, ROOTBUS)
        self.expect(c, ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', [ROOTBUS], ERR_NO_RESET, ROOTBUS)
        self.expect(c, ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', [NVME], ERR_NOT_ATTACHED, NVME)
        self.expect(c, ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', [ABSENT], ERR_NO_SUCH_DEVICE, ABSENT)
        self.expect(c, ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', ['0000:01:20.0'], ERR_INVALID_ARGS,
                    ADDRESS_FORM)
        self.assertIn(ROOTBUS, self.busctl_error(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', ROOTBUS))

    # --- callers that are not root

    def test_non_root_refused(self):
        allow_other_users(self.env)
        rec, _ = self.record()
        ctx = self.persistent_context()
        self.busctl_call(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', FN0, 0)
        before_objects = self.env.managed_objects()
        mark = rec.mark()
        nobody = self.client('nobody', user=(NOBODY_UID, NOBODY_GID))
        self.assertEqual(nobody.hello['uid'], NOBODY_UID)

        refusals = [
            (ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', [{}]),
            (ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', [variant_dict({'Persistent': True})]),
            (ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', [NVME, {}]),
            (ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', [NVME, {}]),
            (ctx, CONTEXT_IFACE, 'DetachDevice', 's', [FN0]),
            (ctx, CONTEXT_IFACE, 'OpenDevice', 's', [FN0]),
            (ctx, CONTEXT_IFACE, 'HotReset', 's', [FN0]),
            (ctx, CONTEXT_IFACE, 'ResetDevice', 's', [FN0]),
            (ctx, CONTEXT_IFACE, 'Release', '', []),
        ]
        if self.CDEV:
            refusals.append((ctx, CONTEXT_IFACE, 'OpenIommufd', '', []))
        for path, iface, method, sig, args in refusals:
            with self.subTest(method=method, args=args):
                err = nobody.error(path, iface, method, sig, *args)
                self.assertIn(err.name, AUTH_REFUSALS, err.message)
        # busctl as nobody: refused too.
        for args in (('call', harness.BUS_NAME, ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', 1,
                      'Persistent', 'b', 'true'),
                     ('call', harness.BUS_NAME, ctx, CONTEXT_IFACE, 'Release'),
                     ('call', harness.BUS_NAME, ctx, CONTEXT_IFACE, 'HotReset', 's', FN0),
                     ('call', harness.BUS_NAME, ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', NVME, 0)):
            with self.subTest(busctl=args[4]):
                p = busctl_as_nobody(self.env, *args)
                self.assertNotEqual(p.returncode, 0, p.stdout)

        # Nothing changed.
        rec.sync()
        self.assertEqual(self.env.managed_objects(), before_objects)
        self.assertEqual(self.context_paths(), [ctx])
        self.assertEqual(self.ctx_devices(ctx), [FN0])
        self.assertEqual(self.holder(NVME), '/')
        self.assertEqual(rec.signals(mark, member='HotResetDone'), [])
        self.assertEqual(rec.signals(mark, member='PrepareForHotReset'), [])
        self.assertEqual(rec.signals(mark, member='InterfacesAdded'), [])
        self.assertEqual(rec.signals(mark, member='InterfacesRemoved'), [])

        # Reads stay open.
        props = nobody.call(ctx, harness.PROPS_IFACE, 'GetAll', 's', CONTEXT_IFACE)[0]
        self.assertEqual(props['Devices'], [FN0])
        self.assertEqual(props['Owner'], 'uid:0')
        self.assertEqual(len(nobody.call(ROOT_PATH, MANAGER_IFACE, 'ListDevices')[0]), len(self.MACHINE['devices']))
        # GetHotResetInfo changes nothing; whether it needs an authorization
        # (polkit, which this bus does not run) is up to the daemon: either
        # the right answer or an authorization refusal.
        try:
            info = nobody.call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', FN0)
            self.assertEqual([e[0] for e in info[1]], [FN0, FN1])
        except harness.DBusError as e:
            self.assertIn(e.name, AUTH_REFUSALS, e.message)
        self.assertEqual(nobody.call(device_path(FN0), harness.PROPS_IFACE, 'Get', 'ss', DEVICE_IFACE,
                                     'Context'), [ctx])


class CdevContextTest(ContextTests, LeaseTestCase):
    CDEV = True
    MACHINE = load_machine('leases.json', cdev=True)

    def test_bind_false(self):
        rec, _ = self.record()
        c = self.client()
        ctx = c.create_context()
        mark = rec.mark()
        self.assertEqual(c.attach(ctx, BUSONLY, Bind=False), 0)
        rec.wait_properties(ctx, CONTEXT_IFACE, {'Devices': [BUSONLY]}, mark)
        rec.wait_properties(device_path(BUSONLY), DEVICE_IFACE, {'Context': ctx}, mark)
        self.assertEqual(self.holder(BUSONLY), ctx)
        # The file can be handed out for the VMM to bind ...
        (f,) = c.call(ctx, CONTEXT_IFACE, 'OpenDevice', 's', BUSONLY)
        self.assertTrue(f['unix_fd']['regular'])
        self.assertIn('hotresetd-emulated', f['unix_fd']['link'])
        # ... but the daemon's file answers no ioctl before a bind.
        for method in ('GetHotResetInfo', 'HotReset', 'ResetDevice'):
            with self.subTest(method=method):
                self.expect(c, ctx, CONTEXT_IFACE, method, 's', [BUSONLY], ERR_UNSUPPORTED, BUSONLY)
        # Another context cannot take it meanwhile.
        other = self.client()
        ctx2 = other.create_context()
        self.expect(other, ctx2, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', [BUSONLY, {}], ERR_IN_USE, ctx)
        # Bind=true explicitly is the default behaviour.
        self.assertGreater(c.attach(ctx, NVME, Bind=True), 0)
        c.call(ctx, CONTEXT_IFACE, 'DetachDevice', 's', BUSONLY)
        self.assertEqual(self.ctx_devices(ctx), [NVME])
        self.assertGreater(other.attach(ctx2, BUSONLY), 0)

    def test_open_iommufd(self):
        c = self.client()
        ctx = c.create_context()
        (a,) = c.call(ctx, CONTEXT_IFACE, 'OpenIommufd')
        (b,) = c.call(ctx, CONTEXT_IFACE, 'OpenIommufd')
        a, b = a['unix_fd'], b['unix_fd']
        self.assertTrue(a['regular'])
        self.assertIn('hotresetd-emulated', a['link'])
        self.assertIn('iommufd', a['link'])
        self.assertEqual(a['ino'], b['ino'])
        # One iommufd per context.
        ctx2 = c.create_context()
        (other,) = c.call(ctx2, CONTEXT_IFACE, 'OpenIommufd')
        self.assertNotEqual(other['unix_fd']['ino'], a['ino'])

    def test_hot_reset_info_multifunction(self):
        c = self.client()
        ctx = c.create_context()
        d0 = c.attach(ctx, FN0)
        # Only fn0 bound: fn1 (vfio-pci, same group, unopened) is OWNED (0).
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', FN0),
                         [3, [[FN0, d0], [FN1, DEVID_OWNED]]])
        d1 = c.attach(ctx, FN1)
        self.assertGreater(d0, 0)
        self.assertGreater(d1, 0)
        self.assertNotEqual(d0, d1)
        expected = [3, [[FN0, d0], [FN1, d1]]]
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', FN0), expected)
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', FN1), expected)
        # busctl: the same answer with its D-Bus types.
        self.assertEqual(self.env.call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', FN0),
                         ('ua(su)', expected))

    def test_hot_reset_info_pci_stub_sibling(self):
        c = self.client()
        ctx = c.create_context()
        d = c.attach(ctx, STUB0)
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', STUB0),
                         [1, [[STUB0, d], [STUB1, DEVID_NOT_OWNED]]])

    def test_hot_reset_info_two_contexts(self):
        a, b = self.client('a'), self.client('b')
        ctx_a, ctx_b = a.create_context(), b.create_context()
        da = a.attach(ctx_a, PORT0)
        # Nobody holds port 1 yet: NOT_OWNED all the same (another group).
        self.assertEqual(a.call(ctx_a, CONTEXT_IFACE, 'GetHotResetInfo', 's', PORT0),
                         [1, [[PORT0, da], [PORT1, DEVID_NOT_OWNED]]])
        db = b.attach(ctx_b, PORT1)
        self.assertEqual(a.call(ctx_a, CONTEXT_IFACE, 'GetHotResetInfo', 's', PORT0),
                         [1, [[PORT0, da], [PORT1, DEVID_NOT_OWNED]]])
        self.assertEqual(b.call(ctx_b, CONTEXT_IFACE, 'GetHotResetInfo', 's', PORT1),
                         [1, [[PORT0, DEVID_NOT_OWNED], [PORT1, db]]])

    def test_hot_reset_info_bridge_in_scope(self):
        c = self.client()
        ctx = c.create_context()
        d = c.attach(ctx, EP)
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', EP),
                         [1, [[EP, d], [BRIDGE, DEVID_NOT_OWNED], [BEHIND, DEVID_NOT_OWNED]]])


class GroupContextTest(ContextTests, LeaseTestCase):
    CDEV = False
    MACHINE = load_machine('leases.json', cdev=False)

    def test_bind_false_unsupported(self):
        c = self.client()
        ctx = c.create_context()
        self.expect(c, ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', [NVME, variant_dict({'Bind': False})],
                    ERR_UNSUPPORTED, 'Bind')
        self.assertEqual(self.ctx_devices(ctx), [])
        self.assertEqual(self.holder(NVME), '/')
        self.assertEqual(c.attach(ctx, NVME, Bind=True), 0)

    def test_open_iommufd_unsupported(self):
        c = self.client()
        ctx = c.create_context()
        self.expect(c, ctx, CONTEXT_IFACE, 'OpenIommufd', '', [], ERR_UNSUPPORTED, ctx)

    def test_hot_reset_info_multifunction(self):
        c = self.client()
        ctx = c.create_context()
        self.assertEqual(c.attach(ctx, FN0), 0)
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', FN0), [0, [[FN0, 10], [FN1, 10]]])
        self.assertEqual(c.attach(ctx, FN1), 0)
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', FN1), [0, [[FN0, 10], [FN1, 10]]])
        self.assertEqual(self.env.call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', FN0),
                         ('ua(su)', [0, [[FN0, 10], [FN1, 10]]]))

    def test_hot_reset_info_pci_stub_sibling(self):
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, STUB0)
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', STUB0), [0, [[STUB0, 30], [STUB1, 30]]])

    def test_hot_reset_info_two_contexts(self):
        a, b = self.client('a'), self.client('b')
        ctx_a, ctx_b = a.create_context(), b.create_context()
        a.attach(ctx_a, PORT0)
        b.attach(ctx_b, PORT1)
        self.assertEqual(a.call(ctx_a, CONTEXT_IFACE, 'GetHotResetInfo', 's', PORT0),
                         [0, [[PORT0, 20], [PORT1, 21]]])
        self.assertEqual(b.call(ctx_b, CONTEXT_IFACE, 'GetHotResetInfo', 's', PORT1),
                         [0, [[PORT0, 20], [PORT1, 21]]])

    def test_hot_reset_info_bridge_in_scope(self):
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, EP)
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', EP),
                         [0, [[EP, 70], [BRIDGE, 71], [BEHIND, 71]]])


if __name__ == '__main__':
    harness.main()

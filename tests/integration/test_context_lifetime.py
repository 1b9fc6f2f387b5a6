#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The lifetime of contexts on tests/integration/data/leases.json, in the
cdev model and the legacy group model: a non-persistent context ends with
its owner's connection (a normal exit and kill -9: InterfacesRemoved, the
devices free again, the daemon's open files back to what they were), a
persistent one outlives its creator until root releases it, held devices
that are removed or unbound (machine file rewrites) leave the lease with
signals and without a crash, and owners that die or release in the middle
of a slow reset (reset_delay_ms)."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import device_path  # noqa: E402
from contexts_util import (CONTEXT_IFACE, DEVICE_IFACE, DEVID_OWNED, ERR_NOT_ATTACHED, ERR_PREFIX,  # noqa: E402
                           MANAGER_IFACE, ROOT_PATH, LeaseTestCase, load_machine, machine_copy)

FN0, FN1 = '0000:01:00.0', '0000:01:00.1'
PORT0 = '0000:02:00.0'
NVME = '0000:09:00.0'
LONE = '0000:0a:00.0'

# Every emulated hot reset of the slow classes takes this long: long enough
# that a machine file rewrite made when PrepareForHotReset arrives lands in
# the middle of the reset even on a loaded machine under sanitizers.
DELAY_MS = 3000


def without(machine, *addresses):
    m = machine_copy(machine)
    m['devices'] = [d for d in m['devices'] if d['address'] not in addresses]
    return m


def with_driver(machine, address, driver):
    m = machine_copy(machine)
    harness.find_device(m, address)['driver'] = driver
    return m


class LifetimeTests:

    def _lease_then(self, end):
        """A client leases FN0, FN1 and NVME, takes files, and ends with
        end(client): the lease must be gone without a trace."""
        rec, _ = self.record()
        baseline = self.fd_count()
        c = self.client()
        ctx = c.create_context(Description='a VM')
        for a in (FN0, FN1, NVME):
            c.attach(ctx, a)
        (dev,) = c.call(ctx, CONTEXT_IFACE, 'OpenDevice', 's', FN0)
        self.assertIn('hotresetd-emulated', dev['unix_fd']['link'])
        if self.CDEV:
            c.call(ctx, CONTEXT_IFACE, 'OpenIommufd')
        for a in (FN0, FN1, NVME):
            self.assertEqual(self.holder(a), ctx)
        self.assertGreater(self.fd_count(), baseline)
        mark = rec.mark()
        end(c)
        ifaces = rec.wait_interfaces_removed(ctx, mark)
        self.assertIn(CONTEXT_IFACE, ifaces)
        for a in (FN0, FN1, NVME):
            rec.wait_properties(device_path(a), DEVICE_IFACE, {'Context': '/'}, mark)
            self.assertEqual(self.holder(a), '/')
        self.assertNoContexts()
        self.assertFdCount(baseline, 'after the owner went away')
        # The devices are free for the next client.
        d = self.client('next')
        ctx2 = d.create_context()
        for a in (FN0, FN1, NVME):
            d.attach(ctx2, a)
        self.assertEqual(self.ctx_devices(ctx2), [FN0, FN1, NVME])
        self.assertDaemonRunning()

    def test_owner_disconnects(self):
        self._lease_then(lambda c: c.exit())

    def test_owner_killed(self):
        self._lease_then(lambda c: c.kill())

    def test_persistent_context_outlives_its_creator(self):
        rec, _ = self.record()
        baseline = self.fd_count()
        c = self.client()
        ctx = c.create_context(Persistent=True, Description='kept')
        c.attach(ctx, FN0)
        c.call(ctx, CONTEXT_IFACE, 'OpenDevice', 's', FN0)
        self.assertEqual(self.env.get_property(ctx, CONTEXT_IFACE, 'Owner'), 'uid:0')
        mark = rec.mark()
        c.kill()
        # Still there, with its device, after the creator is gone.
        rec.sync()
        self.assertEqual(rec.signals(mark, member='InterfacesRemoved'), [])
        self.assertEqual(self.context_paths(), [ctx])
        self.assertEqual(self.ctx_props(ctx), {'Owner': 'uid:0', 'OwnerUid': 0, 'Persistent': True,
                                               'Lifetime': 'persistent', 'Pid': 0,
                                               'Backend': self.backend(), 'Description': 'kept',
                                               'Devices': [FN0]})
        self.assertEqual(self.holder(FN0), ctx)
        # Usable by root from new connections.
        self.assertEqual(self.busctl_call(ctx, CONTEXT_IFACE, 'HotReset', 's', FN0), [[FN0, FN1]])
        other = self.client('other')
        octx = other.create_context()
        self.expect(other, octx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', [FN0, {}],
                    ERR_PREFIX + 'InUse', ctx, 'uid 0')
        other.exit()
        self.clients.remove(other)
        # Released by root.
        mark = rec.mark()
        self.busctl_call(ctx, CONTEXT_IFACE, 'Release')
        rec.wait_interfaces_removed(ctx, mark)
        rec.wait_properties(device_path(FN0), DEVICE_IFACE, {'Context': '/'}, mark)
        self.assertNoContexts()
        self.assertFdCount(baseline, 'after Release')

    def test_device_removed_while_held(self):
        rec, _ = self.record()
        c = self.client()
        ctx = c.create_context()
        d0 = c.attach(ctx, FN0)
        with_fn0 = self.fd_count()
        c.attach(ctx, FN1)
        mark = rec.mark()
        self.env.rewrite_machine(without(self.MACHINE, FN1))
        rec.wait_interfaces_removed(device_path(FN1), mark)
        rec.wait_properties(ctx, CONTEXT_IFACE, {'Devices': [FN0]}, mark)
        self.assertDaemonRunning()
        self.assertEqual(self.ctx_devices(ctx), [FN0])
        self.assertEqual(len(self.env.list_devices()), len(self.MACHINE['devices']) - 1)
        self.assertFdCount(with_fn0, 'after the held device was removed')
        self.expect(c, ctx, CONTEXT_IFACE, 'OpenDevice', 's', [FN1], ERR_PREFIX + 'NoSuchDevice', FN1)
        # The kernel's answer no longer lists it, and the reset works.
        info = c.call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', FN0)
        self.assertEqual(info, [3, [[FN0, d0]]] if self.CDEV else [0, [[FN0, 10]]])
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'HotReset', 's', FN0), [[FN0]])
        # Plugged back: not in the lease, but in the group the lease owns.
        mark = rec.mark()
        self.env.rewrite_machine(self.MACHINE)
        rec.wait_interfaces_added(device_path(FN1), mark)
        self.assertEqual(self.ctx_devices(ctx), [FN0])
        info = c.call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', FN0)
        self.assertEqual(info, [3, [[FN0, d0], [FN1, DEVID_OWNED]]] if self.CDEV else [0, [[FN0, 10], [FN1, 10]]])
        c.attach(ctx, FN1)
        self.assertEqual(self.ctx_devices(ctx), [FN0, FN1])

    def test_device_unbound_while_held(self):
        rec, _ = self.record()
        c = self.client()
        ctx = c.create_context()
        before = self.fd_count()
        c.attach(ctx, NVME)
        self.assertEqual(self.holder(NVME), ctx)
        mark = rec.mark()
        self.env.rewrite_machine(with_driver(self.MACHINE, NVME, 'nvme'))
        rec.wait_properties(ctx, CONTEXT_IFACE, {'Devices': []}, mark)
        rec.wait_properties(device_path(NVME), DEVICE_IFACE, {'Driver': 'nvme', 'Context': '/'}, mark)
        self.assertDaemonRunning()
        self.assertEqual(self.ctx_devices(ctx), [])
        self.assertEqual(self.holder(NVME), '/')
        self.assertFdCount(before, 'after the held device was unbound')
        self.expect(c, ctx, CONTEXT_IFACE, 'HotReset', 's', [NVME], ERR_NOT_ATTACHED, NVME)
        self.expect(c, ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', [NVME, {}], ERR_PREFIX + 'NotInDevSet',
                    'nvme')
        # Back on vfio-pci: it can be leased again, by the same context.
        mark = rec.mark()
        self.env.rewrite_machine(self.MACHINE)
        rec.wait_properties(device_path(NVME), DEVICE_IFACE, {'Driver': 'vfio-pci'}, mark)
        c.attach(ctx, NVME)
        self.assertEqual(self.ctx_devices(ctx), [NVME])
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'HotReset', 's', NVME), [[NVME]])

    def test_device_removed_then_owner_killed(self):
        rec, _ = self.record()
        baseline = self.fd_count()
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, NVME)
        c.attach(ctx, PORT0)
        c.call(ctx, CONTEXT_IFACE, 'OpenDevice', 's', NVME)
        mark = rec.mark()
        self.env.rewrite_machine(without(self.MACHINE, NVME, '0000:00:08.0'))
        rec.wait_properties(ctx, CONTEXT_IFACE, {'Devices': [PORT0]}, mark)
        mark = rec.mark()
        c.kill()
        rec.wait_interfaces_removed(ctx, mark)
        self.assertNoContexts()
        self.assertFdCount(baseline, 'after the owner was killed')
        self.assertEqual(self.holder(PORT0), '/')
        self.assertDaemonRunning()

    def test_machine_emptied_while_held(self):
        rec, _ = self.record()
        c = self.client()
        ctx = c.create_context()
        before = self.fd_count()
        for a in (FN0, PORT0, NVME):
            c.attach(ctx, a)
        mark = rec.mark()
        self.env.rewrite_machine({'cdev': self.CDEV, 'devices': []})
        rec.wait_properties(ROOT_PATH, MANAGER_IFACE, {'DeviceCount': 0}, mark)
        rec.wait_properties(ctx, CONTEXT_IFACE, {'Devices': []}, mark)
        self.assertEqual(self.ctx_devices(ctx), [])
        self.assertFdCount(before, 'after every device went away')
        self.assertEqual(self.env.list_devices(), [])
        # Everything back: the context is still usable.
        mark = rec.mark()
        self.env.rewrite_machine(self.MACHINE)
        rec.wait_properties(ROOT_PATH, MANAGER_IFACE, {'DeviceCount': len(self.MACHINE['devices'])}, mark)
        c.attach(ctx, NVME)
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'HotReset', 's', NVME), [[NVME]])
        c.call(ctx, CONTEXT_IFACE, 'Release')
        self.assertNoContexts()


class CdevLifetimeTest(LifetimeTests, LeaseTestCase):
    CDEV = True
    MACHINE = load_machine('leases.json', cdev=True)


class GroupLifetimeTest(LifetimeTests, LeaseTestCase):
    CDEV = False
    MACHINE = load_machine('leases.json', cdev=False)


class SlowLifetimeTests:
    """Owners that go away while their reset is in flight."""

    def _prepare(self, rec, since, ctx, address):
        return rec.wait_for(lambda m: m.get('member') == 'PrepareForHotReset' and m.get('path') == ctx
                            and m['payload']['data'][0] == address, since,
                            what=f'PrepareForHotReset on {ctx}')

    def _done(self, rec, since, address):
        return rec.wait_for(lambda m: m.get('member') == 'HotResetDone' and m['payload']['data'][0] == address,
                            since, what=f'HotResetDone for {address}')['payload']['data']

    def test_owner_killed_mid_reset(self):
        rec, _ = self.record()
        baseline = self.fd_count()
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, LONE)
        mark = rec.mark()
        c.start(ctx, CONTEXT_IFACE, 'HotReset', 's', LONE)
        self._prepare(rec, mark, ctx, LONE)
        c.kill()
        rec.wait_interfaces_removed(ctx, mark)
        done = self._done(rec, mark, LONE)
        self.assertEqual(done[1], [LONE])
        self.assertDaemonRunning()
        self.assertNoContexts()
        self.assertEqual(self.holder(LONE), '/')
        self.assertFdCount(baseline, 'after the owner was killed mid-reset')
        d = self.client('next')
        ctx2 = d.create_context()
        d.attach(ctx2, LONE)
        self.assertEqual(self.ctx_devices(ctx2), [LONE])

    def test_manager_hot_reset_caller_killed(self):
        # The private context of Manager.HotReset goes whatever happens to
        # the caller.
        rec, _ = self.record()
        baseline = self.fd_count()
        c = self.client()
        mark = rec.mark()
        c.start(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', FN0, {})
        private = rec.wait_for(lambda m: m.get('member') == 'InterfacesAdded', mark,
                               what='the private context')['payload']['data'][0]
        c.kill()
        rec.wait_interfaces_removed(private, mark)
        self._done(rec, mark, FN0)
        self.assertNoContexts()
        self.assertEqual(self.holder(FN0), '/')
        self.assertFdCount(baseline, 'after the Manager.HotReset caller was killed')
        d = self.client('next')
        ctx2 = d.create_context()
        d.attach(ctx2, FN0)
        self.assertEqual(self.ctx_devices(ctx2), [FN0])

    def test_release_mid_reset(self):
        rec, _ = self.record()
        baseline = self.fd_count()
        ctx = self.persistent_context()
        self.busctl_call(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', LONE, 0)
        c = self.client()
        mark = rec.mark()
        rid = c.start(ctx, CONTEXT_IFACE, 'HotReset', 's', LONE)
        self._prepare(rec, mark, ctx, LONE)
        self.busctl_call(ctx, CONTEXT_IFACE, 'Release')
        rec.wait_interfaces_removed(ctx, mark)
        # The caller gets an answer (whichever) and HotResetDone tells it.
        reply = c.wait(rid)
        done = self._done(rec, mark, LONE)
        self.assertEqual(done[3], 'success' if reply['ok'] else reply['error'])
        self.assertNoContexts()
        self.assertEqual(self.holder(LONE), '/')
        c.close()
        self.clients.remove(c)
        self.assertFdCount(baseline, 'after a release during a reset')
        self.assertDaemonRunning()

    def test_device_removed_mid_reset(self):
        rec, _ = self.record()
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, FN0)
        c.attach(ctx, FN1)
        mark = rec.mark()
        rid = c.start(ctx, CONTEXT_IFACE, 'HotReset', 's', FN0)
        self._prepare(rec, mark, ctx, FN0)
        self.env.rewrite_machine(without(self.MACHINE, FN1))
        reply = c.wait(rid)
        self.assertFalse(reply['ok'], reply)
        self.assertTrue(reply['error'].startswith(ERR_PREFIX), reply)
        done = self._done(rec, mark, FN0)
        self.assertEqual(done[3], reply['error'])
        rec.wait_properties(ctx, CONTEXT_IFACE, {'Devices': [FN0]}, mark)
        self.assertDaemonRunning()
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'HotReset', 's', FN0), [[FN0]])


    def test_queued_reset_of_a_device_removed_meanwhile(self):
        # A second reset waits behind the first; the device goes away while
        # it waits and another lease opens a file, which may get the fd
        # number the dropped device had. The queued reset must fail on its
        # own device, not act on whatever file now has that number.
        rec, _ = self.record()
        baseline = self.fd_count()
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, FN0)
        c.attach(ctx, FN1)
        mark = rec.mark()
        first = c.start(ctx, CONTEXT_IFACE, 'HotReset', 's', FN0)
        self._prepare(rec, mark, ctx, FN0)
        # A client handles one call at a time: the second reset comes from
        # another connection (root may use the persistent context).
        c2 = self.client()
        second = c2.start(ctx, CONTEXT_IFACE, 'HotReset', 's', FN0)
        time.sleep(1.0 * harness.TIMEOUT_SCALE if harness.TIMEOUT_SCALE < 2 else 1.5)  # queued, well within the reset
        self.assertFalse(c2.done(second), 'the second reset did not wait for the first')
        self.env.rewrite_machine(without(self.MACHINE, FN0, FN1))
        rec.wait_properties(ctx, CONTEXT_IFACE, {'Devices': []}, mark)
        other = self.client()
        octx = other.create_context()
        other.attach(octx, NVME)
        for client, rid in ((c, first), (c2, second)):
            reply = client.wait(rid)
            self.assertFalse(reply['ok'], reply)
            self.assertEqual(reply['error'].split(':')[0], ERR_PREFIX + 'NoSuchDevice', reply)
        # The other lease's device was never reset through the stale file.
        rec.wait_for(lambda m: len(rec.signals(mark, member='HotResetDone')) >= 2, mark,
                     what='HotResetDone for both resets')
        dones = [m['payload']['data'] for m in rec.signals(mark, member='HotResetDone')]
        self.assertEqual([d[0] for d in dones], [FN0, FN0], dones)
        self.assertEqual(other.call(octx, CONTEXT_IFACE, 'HotReset', 's', NVME), [[NVME]])
        other.close()
        c2.close()
        c.close()
        self.assertFdCount(baseline, 'after the queued reset of a removed device')
        self.assertDaemonRunning()


class CdevSlowLifetimeTest(SlowLifetimeTests, LeaseTestCase):
    CDEV = True
    MACHINE = load_machine('leases.json', cdev=True, reset_delay_ms=DELAY_MS)


class GroupSlowLifetimeTest(SlowLifetimeTests, LeaseTestCase):
    CDEV = False
    MACHINE = load_machine('leases.json', cdev=False, reset_delay_ms=DELAY_MS)


if __name__ == '__main__':
    harness.main()

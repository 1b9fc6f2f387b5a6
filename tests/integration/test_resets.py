#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Resets on tests/integration/data/leases.json, in the cdev model and the
legacy group model: Context.HotReset (a whole multifunction device,
implicit ownership through a shared IOMMU group, two clients on one reset
domain, a sibling on a host driver, the root bus, a bridge in the scope),
PrepareForHotReset and HotResetDone (after success and after a failure),
ResetDevice, Manager.HotReset (success and every refusal, nothing left
behind), and concurrency with slow emulated resets (reset_delay_ms):
overlapping scopes are serialized, disjoint ones run together, and the
daemon answers other calls while a reset is in flight."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ADDRESS_FORM, ROOT_PATH  # noqa: E402
from contexts_util import (CONTEXT_IFACE, DEVID_NOT_OWNED, ERR_BUSY, ERR_IN_USE, ERR_INVALID_ARGS,  # noqa: E402
                           ERR_NO_RESET, ERR_NO_SUCH_DEVICE, ERR_NOT_ATTACHED, ERR_NOT_IN_DEV_SET, ERR_NOT_OWNED,
                           ERR_PREFIX, MANAGER_IFACE, LeaseTestCase, load_machine, machine_copy, variant_dict)

FN0, FN1 = '0000:01:00.0', '0000:01:00.1'
PORT0, PORT1 = '0000:02:00.0', '0000:02:00.1'
STUB0, STUB1 = '0000:03:00.0', '0000:03:00.1'
GPU, HDA = '0000:04:00.0', '0000:04:00.1'
NIC0, NIC1 = '0000:05:00.0', '0000:05:00.1'
BUSONLY, BUSONLY_AUDIO = '0000:06:00.0', '0000:06:00.1'   # only 'bus', not alone on bus 6
LONE = '0000:0a:00.0'                                 # only 'bus', alone on bus 10
EP, BRIDGE, BEHIND = '0000:07:00.0', '0000:07:01.0', '0000:08:00.0'
NVME = '0000:09:00.0'
ROOTBUS = '0000:00:1d.0'
ABSENT = '0000:0f:00.0'

# Every emulated hot reset of the slow classes takes this long: long enough
# that a machine file rewrite made when PrepareForHotReset arrives lands in
# the middle of the reset even on a loaded machine under sanitizers.
DELAY_MS = 3000
DELAY = DELAY_MS / 1000


def find(machine, address):
    return harness.find_device(machine, address)


class ResetTestCase(LeaseTestCase):

    def payload(self, m):
        return m['payload']['data']

    def done_signals(self, rec, since, address=None):
        return [self.payload(m) for m in rec.signals(since, member='HotResetDone')
                if address is None or self.payload(m)[0] == address]

    def wait_done(self, rec, since, address, result=None):
        m = rec.wait_for(lambda m: m.get('member') == 'HotResetDone' and m.get('interface') == MANAGER_IFACE
                         and m.get('path') == ROOT_PATH and self.payload(m)[0] == address
                         and (result is None or self.payload(m)[3] == result),
                         since, what=f'HotResetDone for {address}')
        return self.payload(m)

    def wait_prepare(self, rec, since, ctx, address):
        m = rec.wait_for(lambda m: m.get('member') == 'PrepareForHotReset' and m.get('path') == ctx
                         and m.get('interface') == CONTEXT_IFACE and self.payload(m)[0] == address,
                         since, what=f'PrepareForHotReset on {ctx} for {address}')
        return self.payload(m)

    def index_of(self, rec, since, member, path=None, address=None):
        for i, m in enumerate(rec.signals(since)):
            if m.get('member') == member and (path is None or m.get('path') == path) \
                    and (address is None or self.payload(m)[0] == address):
                return i
        self.fail(f'no {member} for {path} {address}:\n{rec.describe(since)}')

    def hot_reset(self, client, ctx, address):
        return client.call(ctx, CONTEXT_IFACE, 'HotReset', 's', address)[0]

    def manager_hot_reset(self, client, address):
        return client.call(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', address, {})[0]


class ResetTests:
    """Model-independent reset tests (no reset delay)."""

    # --- Context.HotReset

    def test_whole_multifunction_device(self):
        rec, _ = self.record()
        a, b = self.client('a'), self.client('b')
        ctx, other = a.create_context(), b.create_context()
        a.attach(ctx, FN0)
        a.attach(ctx, FN1)
        b.attach(other, NVME)
        mark = rec.mark()
        self.assertEqual(self.hot_reset(a, ctx, FN0), [FN0, FN1])
        done = self.wait_done(rec, mark, FN0)
        self.assertEqual(done[:2], [FN0, [FN0, FN1]])
        self.assertGreater(done[2], 0)
        self.assertEqual(done[3], 'success')
        prepare = self.wait_prepare(rec, mark, ctx, FN0)
        self.assertEqual(prepare, [FN0, [FN0, FN1]])
        # Before the reset, not after; only to the context that holds an
        # affected device.
        self.assertLess(self.index_of(rec, mark, 'PrepareForHotReset', ctx),
                        self.index_of(rec, mark, 'HotResetDone'))
        rec.sync()
        self.assertEqual(len(rec.signals(mark, member='PrepareForHotReset')), 1, rec.describe(mark))
        self.assertEqual(len(rec.signals(mark, member='HotResetDone')), 1, rec.describe(mark))
        # Through the other function: the same scope.
        mark = rec.mark()
        self.assertEqual(self.hot_reset(a, ctx, FN1), [FN0, FN1])
        self.assertEqual(self.wait_done(rec, mark, FN1)[3], 'success')
        self.assertEqual(self.wait_prepare(rec, mark, ctx, FN1), [FN1, [FN0, FN1]])
        # The lease is unchanged by a reset.
        self.assertEqual(self.ctx_devices(ctx), [FN0, FN1])
        # busctl (root) through a context it does not own, and a lone device.
        b.attach(other, LONE)
        mark = rec.mark()
        self.assertEqual(self.busctl_call(other, CONTEXT_IFACE, 'HotReset', 's', LONE), [[LONE]])
        self.assertEqual(self.wait_done(rec, mark, LONE)[1:4:2], [[LONE], 'success'])
        self.assertEqual(self.wait_prepare(rec, mark, other, LONE), [LONE, [LONE]])

    def test_implicit_ownership_through_group(self):
        # Only fn0 attached; fn1 (vfio-pci, same group, unopened) counts as
        # owned (cdev devid 0; group model: the group fd covers it).
        rec, _ = self.record()
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, FN0)
        mark = rec.mark()
        self.assertEqual(self.hot_reset(c, ctx, FN0), [FN0, FN1])
        done = self.wait_done(rec, mark, FN0)
        self.assertEqual((done[0], done[1], done[3]), (FN0, [FN0, FN1], 'success'))
        self.assertEqual(self.wait_prepare(rec, mark, ctx, FN0), [FN0, [FN0, FN1]])
        self.assertEqual(self.ctx_devices(ctx), [FN0])

    def test_two_clients_one_reset_domain(self):
        rec, _ = self.record()
        a, b = self.client('a'), self.client('b')
        ctx_a, ctx_b = a.create_context(), b.create_context()
        a.attach(ctx_a, PORT0)
        b.attach(ctx_b, PORT1)
        flags, entries = a.call(ctx_a, CONTEXT_IFACE, 'GetHotResetInfo', 's', PORT0)
        if self.CDEV:
            self.assertEqual(flags, 1)
            self.assertEqual(entries[1], [PORT1, DEVID_NOT_OWNED])
        mark = rec.mark()
        self.expect(a, ctx_a, CONTEXT_IFACE, 'HotReset', 's', [PORT0], ERR_NOT_OWNED,
                    PORT1, ctx_b, b.unique_name, 'uid 0')
        self.expect(b, ctx_b, CONTEXT_IFACE, 'HotReset', 's', [PORT1], ERR_NOT_OWNED,
                    PORT0, ctx_a, a.unique_name, 'uid 0')
        msg = self.busctl_error(ctx_a, CONTEXT_IFACE, 'HotReset', 's', PORT0)
        self.assertIn(ctx_b, msg)
        # CheckHotReset says the same, from the device.
        possible, checked = self.env.check_hot_reset(PORT0)
        self.assertIs(possible, False)
        self.assertEqual([(e[0], e[3]) for e in checked], [(PORT0, ctx_a), (PORT1, ctx_b)])
        self.assertTrue(checked[1][4].startswith('held by context'), checked[1])
        for s in (ctx_b, b.unique_name, 'uid 0'):
            self.assertIn(s, checked[1][4])
        # Nobody was told to prepare; nothing was reset.
        rec.sync()
        self.assertEqual(rec.signals(mark, member='PrepareForHotReset'), [], rec.describe(mark))
        self.assertNotIn('success', [d[3] for d in self.done_signals(rec, mark)])
        self.assertEqual(self.ctx_devices(ctx_a), [PORT0])
        self.assertEqual(self.ctx_devices(ctx_b), [PORT1])
        # When b lets go, a still does not own port 1 until it attaches it.
        b.call(ctx_b, CONTEXT_IFACE, 'Release')
        self.expect(a, ctx_a, CONTEXT_IFACE, 'HotReset', 's', [PORT0], ERR_NOT_OWNED, PORT1)
        a.attach(ctx_a, PORT1)
        self.assertEqual(self.hot_reset(a, ctx_a, PORT0), [PORT0, PORT1])

    def test_sibling_on_host_driver(self):
        rec, _ = self.record()
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, STUB0)
        c.attach(ctx, NIC0)
        mark = rec.mark()
        self.expect(c, ctx, CONTEXT_IFACE, 'HotReset', 's', [STUB0], ERR_NOT_IN_DEV_SET, STUB1, 'pci-stub')
        self.expect(c, ctx, CONTEXT_IFACE, 'HotReset', 's', [NIC0], ERR_NOT_IN_DEV_SET, NIC1, 'e1000e')
        self.assertIn('e1000e', self.busctl_error(ctx, CONTEXT_IFACE, 'HotReset', 's', NIC0))
        rec.sync()
        self.assertEqual(rec.signals(mark, member='PrepareForHotReset'), [])

    def test_root_bus(self):
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, ROOTBUS)
        self.expect(c, ctx, CONTEXT_IFACE, 'HotReset', 's', [ROOTBUS], ERR_NO_RESET, ROOTBUS)

    def test_bridge_in_scope(self):
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, EP)
        c.attach(ctx, BEHIND)
        self.expect(c, ctx, CONTEXT_IFACE, 'HotReset', 's', [EP], ERR_NOT_IN_DEV_SET, BRIDGE, 'bridge')

    def test_hot_reset_argument_errors(self):
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, FN0)
        self.expect(c, ctx, CONTEXT_IFACE, 'HotReset', 's', [NVME], ERR_NOT_ATTACHED, NVME)
        self.expect(c, ctx, CONTEXT_IFACE, 'HotReset', 's', [ABSENT], ERR_NO_SUCH_DEVICE, ABSENT)
        self.expect(c, ctx, CONTEXT_IFACE, 'HotReset', 's', ['0000:01:00'], ERR_INVALID_ARGS, ADDRESS_FORM)

    # --- ResetDevice

    def test_reset_device(self):
        rec, _ = self.record()
        c = self.client()
        ctx = c.create_context()
        for a in (PORT0, FN1, BUSONLY, BUSONLY_AUDIO, LONE, ROOTBUS):
            c.attach(ctx, a)
        mark = rec.mark()
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'ResetDevice', 's', PORT0), [])    # flr
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'ResetDevice', 's', FN1), [])      # pm
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'ResetDevice', 's', ROOTBUS), [])  # flr, root bus
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'ResetDevice', 's', BUSONLY_AUDIO), [])  # pm
        # Only "bus", but alone on its bus: the kernel's function reset is a
        # secondary bus reset (pci_parent_bus_reset()).
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'ResetDevice', 's', LONE), [])
        self.assertEqual(self.busctl_call(ctx, CONTEXT_IFACE, 'ResetDevice', 's', PORT0), [])
        self.expect(c, ctx, CONTEXT_IFACE, 'ResetDevice', 's', [BUSONLY], ERR_NO_RESET, BUSONLY)
        self.expect(c, ctx, CONTEXT_IFACE, 'ResetDevice', 's', [NVME], ERR_NOT_ATTACHED, NVME)
        self.expect(c, ctx, CONTEXT_IFACE, 'ResetDevice', 's', [ABSENT], ERR_NO_SUCH_DEVICE, ABSENT)
        # A function reset is not a hot reset.
        rec.sync()
        self.assertEqual(rec.signals(mark, member='HotResetDone'), [])

    # --- Manager.HotReset

    def assertNothingLeftBehind(self, baseline_fds, contexts=()):
        self.assertEqual(self.context_paths(), sorted(contexts))
        if not contexts:
            self.assertNoContexts()
        self.assertFdCount(baseline_fds, 'after Manager.HotReset')

    def test_manager_hot_reset(self):
        rec, _ = self.record()
        baseline = self.fd_count()
        c = self.client()
        mark = rec.mark()
        self.assertEqual(self.manager_hot_reset(c, NVME), [NVME])
        done = self.wait_done(rec, mark, NVME)
        self.assertEqual((done[0], done[1], done[3]), (NVME, [NVME], 'success'))
        # The private context came and went.
        added = [self.payload(m) for m in rec.signals(mark, member='InterfacesAdded')]
        self.assertEqual(len(added), 1, rec.describe(mark))
        self.assertIn(CONTEXT_IFACE, added[0][1])
        rec.wait_interfaces_removed(added[0][0], mark)
        self.assertNoContexts()
        self.assertEqual(self.holder(NVME), '/')
        c.close()
        self.clients.remove(c)
        self.assertFdCount(baseline, 'after Manager.HotReset')
        # A multifunction device, by busctl.
        mark = rec.mark()
        self.assertEqual(self.busctl_call(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', FN1, 0), [[FN0, FN1]])
        self.assertEqual(self.wait_done(rec, mark, FN1)[3], 'success')
        self.assertNoContexts()
        self.assertEqual(self.holder(FN0), '/')
        self.assertEqual(self.holder(FN1), '/')
        self.assertFdCount(baseline, 'after Manager.HotReset')

    def test_manager_hot_reset_refusals(self):
        rec, _ = self.record()
        holder = self.client('holder')
        ctx = holder.create_context()
        holder.attach(ctx, FN1)
        holder.attach(ctx, PORT0)
        baseline = self.fd_count()
        c = self.client()
        mark = rec.mark()
        refuse = lambda addr, names, *subs, opts=None: self.expect(  # noqa: E731
            c, ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', [addr, opts or {}], names, *subs)
        # Held by a client: directly, or the target itself.
        refuse(FN0, ERR_IN_USE, ctx, holder.unique_name, 'uid 0')    # held through its group
        refuse(FN1, ERR_IN_USE, FN1, ctx)
        refuse(PORT1, ERR_IN_USE, PORT0, ctx, holder.unique_name, 'uid 0')
        # Not in the vfio dev_set.
        refuse(STUB0, ERR_NOT_IN_DEV_SET, STUB1, 'pci-stub')
        refuse(NIC0, ERR_NOT_IN_DEV_SET, NIC1, 'e1000e')
        refuse(GPU, ERR_NOT_IN_DEV_SET, HDA, 'snd_hda_intel')
        refuse(HDA, ERR_NOT_IN_DEV_SET, HDA, 'snd_hda_intel')
        refuse(EP, ERR_NOT_IN_DEV_SET, BRIDGE, 'bridge')
        refuse(ROOTBUS, ERR_NO_RESET, ROOTBUS)
        refuse(ABSENT, ERR_NO_SUCH_DEVICE, ABSENT)
        refuse('zz:00.0', ERR_INVALID_ARGS, ADDRESS_FORM)
        refuse(NVME, ERR_INVALID_ARGS, 'Force', opts=variant_dict({'Force': True}))
        self.assertIn(ctx, self.busctl_error(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', FN0, 0))
        self.assertIn('snd_hda_intel', self.busctl_error(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', GPU, 0))
        # Nothing left behind: the holder's context is the only one, as it was.
        rec.sync()
        self.assertEqual(rec.signals(mark, member='PrepareForHotReset'), [])
        self.assertNotIn('success', [d[3] for d in self.done_signals(rec, mark)])
        self.assertEqual(self.context_paths(), [ctx])
        self.assertEqual(self.ctx_devices(ctx), [FN1, PORT0])
        for a in (NVME, STUB0, NIC0, GPU, EP, BEHIND, ROOTBUS, PORT1):
            self.assertEqual(self.holder(a), '/', a)
        self.assertFdCount(baseline + 0, 'after refused Manager.HotReset calls')
        # And the refusals did not break anything.
        self.assertEqual(self.manager_hot_reset(c, NVME), [NVME])
        self.assertEqual(self.context_paths(), [ctx])


class CdevResetTest(ResetTests, ResetTestCase):
    CDEV = True
    MACHINE = load_machine('leases.json', cdev=True)


class GroupResetTest(ResetTests, ResetTestCase):
    CDEV = False
    MACHINE = load_machine('leases.json', cdev=False)


class SlowResetTests:
    """With reset_delay_ms: every emulated hot reset takes DELAY."""

    def test_failure_signalled(self):
        # The sibling leaves vfio-pci while the reset is in flight: the
        # kernel fails the reset, the caller gets an error, and HotResetDone
        # carries that error's name.
        rec, _ = self.record()
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, FN0)
        c.attach(ctx, FN1)
        mark = rec.mark()
        rid = c.start(ctx, CONTEXT_IFACE, 'HotReset', 's', FN0)
        self.wait_prepare(rec, mark, ctx, FN0)
        machine = machine_copy(self.MACHINE)
        find(machine, FN1)['driver'] = None
        self.env.rewrite_machine(machine)
        reply = c.wait(rid)
        self.assertFalse(reply['ok'], reply)
        # The error names the sibling and what happened to it, not the
        # kernel's ENODEV.
        self.assertEqual(reply['error'], ERR_NOT_IN_DEV_SET, reply)
        self.assertIn(f'Hot reset of {FN0} failed: {FN1}, in its reset scope, left vfio during the reset',
                      reply['message'])
        done = self.wait_done(rec, mark, FN0)
        self.assertEqual(done[:2], [FN0, [FN0, FN1]])
        self.assertEqual(done[3], reply['error'])
        # The lease lost the unbound device and says so.
        rec.wait_properties(ctx, CONTEXT_IFACE, {'Devices': [FN0]}, mark)
        self.assertEqual(self.ctx_devices(ctx), [FN0])
        self.assertDaemonRunning()
        self.assertEqual(len(self.env.list_devices()), len(self.MACHINE['devices']))

    def test_release_during_a_reset_keeps_the_devices_held(self):
        # Released while its reset runs: the files stay open until the reset
        # is done, and so the devices stay held; another lease hears why.
        rec, _ = self.record()
        a, b = self.client('a'), self.client('b')
        ctx = a.create_context()
        a.attach(ctx, FN0)
        a.attach(ctx, FN1)
        mark = rec.mark()
        rid = a.start(ctx, CONTEXT_IFACE, 'HotReset', 's', FN0)
        self.wait_prepare(rec, mark, ctx, FN0)
        # (a waits for its reset: root releases the lease from elsewhere.)
        self.env.busctl('call', harness.BUS_NAME, ctx, CONTEXT_IFACE, 'Release')
        other = b.create_context()
        err = b.error(other, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', FN0, {})
        self.assertEqual(err.name, ERR_IN_USE, err)
        self.assertIn('released, waiting for its hot reset to finish', err.message)
        self.assertTrue(a.wait(rid)['ok'])
        self.wait_done(rec, mark, FN0, 'success')
        # Done: the files are closed and the devices free.
        self.assertEqual(b.attach(other, FN0) >= 0, True)
        self.assertEqual(self.holder(FN0), other)

    def test_reopen_refused_while_a_reset_uses_the_file(self):
        rec, _ = self.record()
        a, b = self.client('a'), self.client('b')
        ctx = a.create_context(Persistent=True)
        a.attach(ctx, FN0)
        a.attach(ctx, FN1)
        mark = rec.mark()
        rid = a.start(ctx, CONTEXT_IFACE, 'HotReset', 's', FN0)
        self.wait_prepare(rec, mark, ctx, FN0)
        err = b.error(ctx, CONTEXT_IFACE, 'ReopenDevice', 's', FN1)
        if self.MACHINE.get('cdev', True):
            self.assertEqual(err.name, ERR_BUSY, err)
            self.assertIn(f'a hot reset using {ctx} is in progress', err.message)
        else:
            self.assertEqual(err.name, ERR_PREFIX + 'Unsupported', err)
        self.assertTrue(a.wait(rid)['ok'])
        # Nothing changed: the lease still holds both, through its old files.
        self.assertEqual(self.ctx_devices(ctx), [FN0, FN1])

    def test_only_resets_the_kernel_ran_are_announced(self):
        # Two resets of one scope: the second waits its turn; its lease is
        # released meanwhile, so it never reaches the kernel: its caller
        # hears why, and no HotResetDone is sent for it.
        rec, _ = self.record()
        a, b = self.client('a'), self.client('b')
        ctx_a = a.create_context()
        a.attach(ctx_a, FN0)
        a.attach(ctx_a, FN1)
        mark = rec.mark()
        r1 = a.start(ctx_a, CONTEXT_IFACE, 'HotReset', 's', FN0)
        self.wait_prepare(rec, mark, ctx_a, FN0)
        r2 = b.start(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', LONE, {})  # another scope: runs
        self.assertTrue(a.wait(r1)['ok'])
        self.assertTrue(b.wait(r2)['ok'])
        self.wait_done(rec, mark, FN0, 'success')
        self.wait_done(rec, mark, LONE, 'success')
        rec.sync()
        self.assertEqual(len(self.done_signals(rec, mark)), 2)

        mark = rec.mark()
        c, d = self.client('c'), self.client('d')
        ctx_c = c.create_context(Persistent=True)
        c.attach(ctx_c, NVME)
        r3 = c.start(ctx_c, CONTEXT_IFACE, 'HotReset', 's', NVME)
        self.wait_prepare(rec, mark, ctx_c, NVME)
        r4 = d.start(ctx_c, CONTEXT_IFACE, 'HotReset', 's', NVME)   # queued behind r3 (same uid)
        self.env.daemon.wait_log(f'Hot reset of {NVME} through {ctx_c} submitted.')
        self.env.busctl('call', harness.BUS_NAME, ctx_c, CONTEXT_IFACE, 'Release')  # released meanwhile
        self.assertTrue(c.wait(r3)['ok'])
        queued = d.wait(r4)
        self.assertFalse(queued['ok'], queued)
        self.assertEqual(queued['error'], ERR_NOT_OWNED, queued)
        self.assertIn('was released while the reset waited for its turn', queued['message'])
        self.wait_done(rec, mark, NVME, 'success')
        rec.sync()
        self.assertEqual([d[0] for d in self.done_signals(rec, mark)], [NVME])

    def test_sigterm_finishes_the_running_reset_and_answers_the_queued(self):
        rec, _ = self.record()
        c, d = self.client('c'), self.client('d')
        ctx = c.create_context(Persistent=True)
        c.attach(ctx, FN0)
        c.attach(ctx, FN1)
        mark = rec.mark()
        r1 = c.start(ctx, CONTEXT_IFACE, 'HotReset', 's', FN0)
        self.wait_prepare(rec, mark, ctx, FN0)
        r2 = d.start(ctx, CONTEXT_IFACE, 'HotReset', 's', FN1)
        self.env.daemon.wait_log(f'Hot reset of {FN1} through {ctx} submitted.')
        self.assertEqual(self.env.stop_daemon(), 0, self.env.daemon.log()[-3000:])
        done = c.wait(r1)
        self.assertTrue(done['ok'], done)
        queued = d.wait(r2)
        self.assertEqual(queued['error'], ERR_BUSY, queued)
        self.assertIn('the daemon is stopping', queued['message'])
        log = self.env.daemon.log()
        self.assertIn(f'Stopping: waiting for the hot reset of {FN0}', log)
        self.assertNotIn('Transport endpoint is not connected', log)
        # The lease was announced gone before the daemon left the bus.
        rec.wait_interfaces_removed(ctx, mark)
        self.assertEqual([d[0] for d in self.done_signals(rec, mark)], [FN0])

    def test_device_removed_tells_the_holder(self):
        rec, _ = self.record()
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, FN0)
        c.attach(ctx, FN1)
        rec.wait_properties(ctx, CONTEXT_IFACE, {'Devices': [FN0, FN1]})
        rec.sync()
        mark = rec.mark()
        machine = machine_copy(self.MACHINE)
        find(machine, FN1)['driver'] = None
        self.env.rewrite_machine(machine)
        m = rec.wait_for(lambda m: m.get('member') == 'DeviceRemoved' and m.get('path') == ctx, mark,
                         what='DeviceRemoved')
        self.assertEqual(self.payload(m), [FN1, 'the device left its vfio driver'])
        rec.wait_properties(ctx, CONTEXT_IFACE, {'Devices': [FN0]}, mark)
        # The signal comes before the lease lets go of the device.
        self.assertLess(self.index_of(rec, mark, 'DeviceRemoved', path=ctx),
                        self.index_of(rec, mark, 'PropertiesChanged', path=ctx))
        mark = rec.mark()
        machine['devices'] = [d for d in machine['devices'] if d['address'] != FN0]
        self.env.rewrite_machine(machine)
        m = rec.wait_for(lambda m: m.get('member') == 'DeviceRemoved' and m.get('path') == ctx, mark,
                         what='DeviceRemoved')
        # As in the kernel, the driver lets go before the device goes: the
        # holder hears of the unbind; the device object then goes.
        self.assertEqual(self.payload(m), [FN0, 'the device left its vfio driver'])
        rec.wait_interfaces_removed(harness.device_path(FN0), mark)
        rec.wait_properties(ctx, CONTEXT_IFACE, {'Devices': []}, mark)

    def test_manager_hot_reset_kernel_failure(self):
        # Manager.HotReset failing in the kernel leaves nothing behind either.
        rec, _ = self.record()
        baseline = self.fd_count()
        c = self.client()
        mark = rec.mark()
        rid = c.start(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', FN0, {})
        private = self.payload(rec.wait_for(lambda m: m.get('member') == 'PrepareForHotReset', mark,
                                            what='PrepareForHotReset'))
        self.assertEqual(private, [FN0, [FN0, FN1]])
        machine = machine_copy(self.MACHINE)
        find(machine, FN1)['driver'] = None
        self.env.rewrite_machine(machine)
        reply = c.wait(rid)
        self.assertFalse(reply['ok'], reply)
        self.assertTrue(reply['error'].startswith(ERR_PREFIX), reply)
        self.assertEqual(self.wait_done(rec, mark, FN0)[3], reply['error'])
        self.assertNoContexts()
        self.assertEqual(self.holder(FN0), '/')
        c.close()
        self.clients.remove(c)
        self.assertFdCount(baseline, 'after a failed Manager.HotReset')

    def test_overlapping_scopes_serialized(self):
        # Two clients reset the same scope through one persistent context
        # (root may use any context): one after the other, both succeed.
        rec, _ = self.record()
        ctx = self.persistent_context()
        self.busctl_call(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', FN0, 0)
        self.busctl_call(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', FN1, 0)
        x, y = self.client('x'), self.client('y')
        mark = rec.mark()
        rx = x.start(ctx, CONTEXT_IFACE, 'HotReset', 's', FN0)
        ry = y.start(ctx, CONTEXT_IFACE, 'HotReset', 's', FN1)
        px, py = x.wait(rx), y.wait(ry)
        self.assertTrue(px['ok'], px)
        self.assertTrue(py['ok'], py)
        self.assertEqual(px['result'], [[FN0, FN1]])
        self.assertEqual(py['result'], [[FN0, FN1]])
        first, second = sorted((px, py), key=lambda p: p['t1'])
        self.assertGreaterEqual(second['t1'] - first['t1'], 0.9 * DELAY,
                                f'the second reset ended {second["t1"] - first["t1"]:.3f} s after the first')
        self.assertGreaterEqual(second['t1'] - min(px['t0'], py['t0']), 1.9 * DELAY)
        d0 = self.wait_done(rec, mark, FN0, 'success')
        d1 = self.wait_done(rec, mark, FN1, 'success')
        for d in (d0, d1):
            self.assertGreaterEqual(d[2], 0.9 * DELAY_MS * 1000)
        # In signals: prepare, done, prepare, done.
        members = [m['member'] for m in rec.signals(mark) if m['member'] in ('PrepareForHotReset', 'HotResetDone')]
        self.assertEqual(members, ['PrepareForHotReset', 'HotResetDone'] * 2, rec.describe(mark))

    def test_disjoint_scopes_concurrent(self):
        rec, _ = self.record()
        a, b = self.client('a'), self.client('b')
        ctx_a, ctx_b = a.create_context(), b.create_context()
        a.attach(ctx_a, LONE)
        b.attach(ctx_b, NVME)
        mark = rec.mark()
        ra = a.start(ctx_a, CONTEXT_IFACE, 'HotReset', 's', LONE)
        rb = b.start(ctx_b, CONTEXT_IFACE, 'HotReset', 's', NVME)
        pa, pb = a.wait(ra), b.wait(rb)
        self.assertTrue(pa['ok'], pa)
        self.assertTrue(pb['ok'], pb)
        self.assertEqual(pa['result'], [[LONE]])
        self.assertEqual(pb['result'], [[NVME]])
        span = max(pa['t1'], pb['t1']) - min(pa['t0'], pb['t0'])
        self.assertLess(span, 1.8 * DELAY, f'two disjoint resets took {span:.3f} s together')
        self.wait_done(rec, mark, LONE, 'success')
        self.wait_done(rec, mark, NVME, 'success')
        # Both started before either ended.
        members = [m['member'] for m in rec.signals(mark) if m['member'] in ('PrepareForHotReset', 'HotResetDone')]
        self.assertEqual(members, ['PrepareForHotReset'] * 2 + ['HotResetDone'] * 2, rec.describe(mark))

    def test_manager_hot_reset_disjoint_concurrent(self):
        rec, _ = self.record()
        baseline = self.fd_count()
        a, b = self.client('a'), self.client('b')
        mark = rec.mark()
        ra = a.start(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', LONE, {})
        rb = b.start(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', FN0, {})
        pa, pb = a.wait(ra), b.wait(rb)
        self.assertTrue(pa['ok'], pa)
        self.assertTrue(pb['ok'], pb)
        self.assertEqual(pb['result'], [[FN0, FN1]])
        span = max(pa['t1'], pb['t1']) - min(pa['t0'], pb['t0'])
        self.assertLess(span, 1.8 * DELAY, f'two disjoint resets took {span:.3f} s together')
        self.wait_done(rec, mark, LONE, 'success')
        self.wait_done(rec, mark, FN0, 'success')
        self.assertNoContexts()
        for c in (a, b):
            c.close()
        self.clients.clear()
        self.assertFdCount(baseline)

    def test_manager_hot_reset_overlapping(self):
        # The second unleased reset of a scope finds it held by the first's
        # private context.
        rec, _ = self.record()
        baseline = self.fd_count()
        a, b = self.client('a'), self.client('b')
        mark = rec.mark()
        ra = a.start(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', FN0, {})
        private = self.payload(rec.wait_for(lambda m: m.get('member') == 'InterfacesAdded', mark,
                                            what='the private context'))[0]
        rb = b.start(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', FN1, {})
        pa, pb = a.wait(ra), b.wait(rb)
        self.assertTrue(pa['ok'], pa)
        self.assertFalse(pb['ok'], pb)
        self.assertEqual(pb['error'], ERR_IN_USE, pb)
        for name in (private, a.unique_name, 'uid 0'):
            self.assertIn(name, pb['message'])
        self.assertLess(pb['t1'], pa['t1'])
        self.wait_done(rec, mark, FN0, 'success')
        self.assertNoContexts()
        for c in (a, b):
            c.close()
        self.clients.clear()
        self.assertFdCount(baseline)

    def test_daemon_answers_during_reset(self):
        rec, _ = self.record()
        c = self.client()
        ctx = c.create_context()
        c.attach(ctx, NVME)
        mark = rec.mark()
        rid = c.start(ctx, CONTEXT_IFACE, 'HotReset', 's', NVME)
        self.wait_prepare(rec, mark, ctx, NVME)
        t0 = time.monotonic()
        devices = self.env.list_devices()
        props = self.env.device_properties(NVME)
        other = self.client('other')
        octx = other.create_context()
        other.attach(octx, FN0)
        info = other.call(octx, CONTEXT_IFACE, 'GetHotResetInfo', 's', FN0)
        elapsed = time.monotonic() - t0
        # All answered while the reset was still running.
        self.assertFalse(c.done(rid), f'the reset was over before the other calls were answered ({elapsed:.3f} s)')
        self.assertEqual(self.done_signals(rec, mark), [])
        self.assertEqual(len(devices), len(self.MACHINE['devices']))
        self.assertEqual(props['Context'], ctx)
        self.assertEqual([e[0] for e in info[1]], [FN0, FN1])
        self.assertTrue(c.wait(rid)['ok'])
        self.wait_done(rec, mark, NVME, 'success')


class CdevSlowResetTest(SlowResetTests, ResetTestCase):
    CDEV = True
    MACHINE = load_machine('leases.json', cdev=True, reset_delay_ms=DELAY_MS)


class GroupSlowResetTest(SlowResetTests, ResetTestCase):
    CDEV = False
    MACHINE = load_machine('leases.json', cdev=False, reset_delay_ms=DELAY_MS)


if __name__ == '__main__':
    harness.main()

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Authorization, with the real polkitd and real JavaScript rules.

The bus runs a deny-by-default system policy with the project's
dbus/org.hotresetd.Broker1.conf; polkitd runs on it in a private mount
namespace with the project's actions and the test's rules; callers run as
other users (setpriv). Covered:

- the matrix: every method that changes state x {root, a user a rule
  allows, a user a rule refuses, a user for whom the rule answers
  AUTH_ADMIN while the call does not allow interactive authorization} ->
  success / AccessDenied / InteractiveAuthorizationRequired, and a refused
  call changes nothing (no context, no fd, no reset, no signal);
- the details the daemon gives polkit, checked by a rule;
- the shipped example rules (group membership, a restriction by vendor);
- polkitd not running (a clear error at once), stopped with SIGSTOP (other
  callers and udev events are served; the pending call fails after the
  bound), killed while asked (an error at once);
- the daemon's policy file: rate limits, count limits, deny and allow
  lists, UnleasedHotReset=no, reload (Manager.Reload, SIGHUP) with a broken
  file or drop-in (the old policy stays, the error names file, line and
  key), a broken file at start-up;
- the D-Bus policy: only root owns the name, only the listed interfaces
  reach the daemon.

Needs root (CI runs the tests as root); skipped otherwise. Test users
hrd-yes, hrd-no-N, hrd-admin-N, hrd-details and hrd-vfio-member, and the
group hrd-vfio, are created if missing (system users, no home, no shell).
"""

import os
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ROOT_PATH, device_path  # noqa: E402
from contexts_util import (CONTEXT_IFACE, DEVICE_IFACE, ERR_ACCESS_DENIED, ERR_PREFIX, MANAGER_IFACE,  # noqa: E402
                           LeaseTestCase, variant_dict)

ERR_INTERACTIVE = 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired'
ERR_POLICY_DENIED = ERR_PREFIX + 'PolicyDenied'
ERR_RATE_LIMITED = ERR_PREFIX + 'RateLimited'
ERR_INVALID_FILE = 'org.freedesktop.DBus.Error.InvalidFileContent'

ACQUIRE = 'org.hotresetd.acquire'
RESET = 'org.hotresetd.reset'
RESET_UNLEASED = 'org.hotresetd.reset-unleased'
MANAGE = 'org.hotresetd.manage'

GPU, AUDIO = '0000:01:00.0', '0000:01:00.1'   # bus 1, both vfio-pci, group 14
NVME = '0000:02:00.0'                          # alone on bus 2, flr + bus
NIC = '0000:03:00.0'                           # alone on bus 3, Intel
IGPU = '0000:00:02.0'                          # root bus, i915

MACHINE = {
    'cdev': True,
    'description': 'test_authorization.py: three reset domains behind root ports without slot reset.',
    'devices': [
        {'address': '0000:00:00.0', 'vendor': '0x8086', 'device': '0x4660', 'class': '0x060000', 'driver': None,
         'iommu_group': 0, 'reset_methods': []},
        {'address': '0000:00:01.0', 'vendor': '0x8086', 'device': '0x460d', 'class': '0x060400',
         'driver': 'pcieport', 'iommu_group': 1, 'reset_methods': [],
         'bridge': {'secondary_bus': 1, 'slot_reset': False}},
        {'address': IGPU, 'vendor': '0x8086', 'device': '0x4680', 'class': '0x030000', 'driver': 'i915',
         'iommu_group': 2, 'reset_methods': ['flr']},
        {'address': '0000:00:06.0', 'vendor': '0x8086', 'device': '0x464d', 'class': '0x060400',
         'driver': 'pcieport', 'iommu_group': 3, 'reset_methods': [],
         'bridge': {'secondary_bus': 2, 'slot_reset': False}},
        {'address': '0000:00:1c.0', 'vendor': '0x8086', 'device': '0x7ab8', 'class': '0x060400',
         'driver': 'pcieport', 'iommu_group': 5, 'reset_methods': [],
         'bridge': {'secondary_bus': 3, 'slot_reset': False}},
        {'address': GPU, 'vendor': '0x10de', 'device': '0x2204', 'class': '0x030000', 'driver': 'vfio-pci',
         'iommu_group': 14, 'reset_methods': ['bus']},
        {'address': AUDIO, 'vendor': '0x10de', 'device': '0x1aef', 'class': '0x040300', 'driver': 'vfio-pci',
         'iommu_group': 14, 'reset_methods': ['pm']},
        {'address': NVME, 'vendor': '0x144d', 'device': '0xa80a', 'class': '0x010802', 'driver': 'vfio-pci',
         'iommu_group': 15, 'reset_methods': ['flr', 'bus']},
        {'address': NIC, 'vendor': '0x8086', 'device': '0x10fb', 'class': '0x020000', 'driver': 'vfio-pci',
         'iommu_group': 16, 'reset_methods': ['flr', 'bus']},
    ],
}

# hrd-yes: everything. hrd-no-N / hrd-admin-N: the first N setup steps
# (create a context, attach a device) and NO / AUTH_ADMIN for the rest.
# hrd-details: YES only when the details are what the daemon must send.
TEST_RULES = r'''
var SETUP = ["create-context", "attach"];
var CONTEXT = /^\/org\/hotresetd\/Broker1\/context\/[0-9]+$/;
var DEVICES = {
    "0000:01:00.0": {vendor: "0x10de", device: "0x2204", driver: "vfio-pci", iommu_group: "14",
                     affected: "0000:01:00.0,0000:01:00.1"},
    "0000:02:00.0": {vendor: "0x144d", device: "0xa80a", driver: "vfio-pci", iommu_group: "15",
                     affected: "0000:02:00.0"}
};

function detailsRight(action) {
    var verb = action.lookup("verb");
    var address = action.lookup("address");
    var context = action.lookup("context");
    if (action.lookup("machine") !== undefined)
        return false; /* the callers run on the host */
    if (verb == "create-context" || verb == "reload")
        return address === undefined && context === undefined;
    if (verb == "open-iommufd" || verb == "release" || verb == "get-hot-reset-info")
        return address === undefined && CONTEXT.test(context);
    var want = DEVICES[address];
    if (!want)
        return false;
    for (var k in want)
        if (action.lookup(k) !== want[k])
            return false;
    if (verb == "unleased-hot-reset")
        return context === undefined;
    return ["attach", "open", "hot-reset", "reset-device"].indexOf(verb) >= 0 && CONTEXT.test(context);
}

polkit.addRule(function(action, subject) {
    if (action.id.indexOf("org.hotresetd.") != 0)
        return polkit.Result.NOT_HANDLED;
    polkit.log("hotresetd-test: " + subject.user + " asks " + action.id + " verb=" + action.lookup("verb") +
               " address=" + action.lookup("address") + " affected=" + action.lookup("affected") +
               " context=" + action.lookup("context"));
    if (subject.user == "hrd-yes")
        return polkit.Result.YES;
    if (subject.user == "hrd-details")
        return detailsRight(action) ? polkit.Result.YES : polkit.Result.NO;
    var m = /^hrd-(no|admin)-([0-2])$/.exec(subject.user);
    if (!m)
        return polkit.Result.NOT_HANDLED;
    if (SETUP.slice(0, parseInt(m[2], 10)).indexOf(action.lookup("verb")) >= 0)
        return polkit.Result.YES;
    return m[1] == "no" ? polkit.Result.NO : polkit.Result.AUTH_ADMIN;
});
'''

SKIP = harness.polkit_missing()


def user(name, groups=()):
    return harness.ensure_user(name, groups)


class AuthTestCase(LeaseTestCase):
    MACHINE = MACHINE
    POLKIT_RULES = {'10-hotresetd-test.rules': TEST_RULES}

    def setUp(self):
        if SKIP:
            self.skipTest(SKIP)
        super().setUp()
        self.env.allow_other_users()

    # --- callers

    def client_as(self, name):
        """A long-lived client (its calls never allow interactive
        authorization) as the test user name, or as root for None."""
        return self.client(f'{name or "root"}-{len(self.clients) + 1}', user=None if name is None else user(name))

    def manager_error(self, who, method, sig='', *args):
        return who.error(ROOT_PATH, MANAGER_IFACE, method, sig, *args)

    # --- state

    def snapshot(self):
        """What a refused call must leave as it was."""
        return {'objects': self.env.managed_objects(), 'fds': self.fd_count()}

    def assertUnchanged(self, before, rec, mark, what=''):
        rec.sync()
        self.assertEqual(self.env.managed_objects(), before['objects'], what)
        self.assertFdCount(before['fds'], what)
        for member in ('HotResetDone', 'PrepareForHotReset', 'InterfacesAdded', 'InterfacesRemoved'):
            self.assertEqual(rec.signals(mark, member=member), [], f'{what}: {member} was emitted')

    def assertRefused(self, err, name, *substrings):
        self.assertEqual(err.name, name, err.message)
        for s in substrings:
            self.assertIn(s, err.message)


# ---------------------------------------------------------------------------
# The matrix


class Method:
    """A method that changes state: what a caller needs before calling it
    (level: 0 nothing, 1 a context of its own, 2 and NVME attached to it;
    other: a context of root's), the polkit action, how to call it and how
    to see that it worked."""

    def __init__(self, name, action, level, call, check=None, other=False, substrings=()):
        self.name = name
        self.action = action
        self.level = level
        self.call = call
        self.check = check
        self.other = other
        self.substrings = substrings


def _create(t, c, st):
    return c.call(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', {})


def _attach(t, c, st):
    return c.call(st['ctx'], CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', NVME, {})


def _open_device(t, c, st):
    return c.call(st['ctx'], CONTEXT_IFACE, 'OpenDevice', 's', NVME)


def _open_iommufd(t, c, st):
    return c.call(st['ctx'], CONTEXT_IFACE, 'OpenIommufd')


def _hot_reset(t, c, st):
    return c.call(st['ctx'], CONTEXT_IFACE, 'HotReset', 's', NVME)


def _reset_device(t, c, st):
    return c.call(st['ctx'], CONTEXT_IFACE, 'ResetDevice', 's', NVME)


def _unleased(t, c, st):
    return c.call(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', GPU, {})


def _release_other(t, c, st):
    return c.call(st['ctx'], CONTEXT_IFACE, 'Release')


def _info_other(t, c, st):
    return c.call(st['ctx'], CONTEXT_IFACE, 'GetHotResetInfo', 's', NVME)


def _reload(t, c, st):
    return c.call(ROOT_PATH, MANAGER_IFACE, 'Reload')


def _check_created(t, c, st, result):
    t.assertRegex(result[0], r'^/org/hotresetd/Broker1/context/[0-9]+$')
    t.assertIn(result[0], t.context_paths())


def _check_attached(t, c, st, result):
    t.assertGreater(result[0], 0)
    t.assertEqual(t.ctx_devices(st['ctx']), [NVME])


def _check_fd(t, c, st, result):
    got = result[0]['unix_fd']
    t.assertEqual(c.fdinfo(got['fd'])['ino'], got['ino'], 'the client holds no such file')


def _check_reset(t, c, st, result):
    t.assertEqual(result[0], [NVME])


def _check_flr(t, c, st, result):
    t.assertIn(f'function-level reset of {NVME} done', t.daemon.log()[st['log_mark']:])


def _check_unleased(t, c, st, result):
    t.assertEqual(result[0], [GPU, AUDIO])


def _check_released(t, c, st, result):
    t.assertNotIn(st['ctx'], t.context_paths())


def _check_info(t, c, st, result):
    t.assertEqual([e[0] for e in result[1]], [NVME])


def _check_reloaded(t, c, st, result):
    t.daemon.wait_log('Reloaded the policy')


METHODS = [
    Method('Manager.CreateContext', ACQUIRE, 0, _create, _check_created, substrings=('create-context',)),
    Method('Context.AttachDevice', ACQUIRE, 1, _attach, _check_attached, substrings=(NVME,)),
    Method('Context.OpenDevice', ACQUIRE, 2, _open_device, _check_fd, substrings=(NVME,)),
    Method('Context.OpenIommufd', ACQUIRE, 1, _open_iommufd, _check_fd, substrings=('open-iommufd',)),
    Method('Context.HotReset', RESET, 2, _hot_reset, _check_reset, substrings=(NVME,)),
    Method('Context.ResetDevice', RESET, 2, _reset_device, _check_flr, substrings=(NVME,)),
    Method('Manager.HotReset', RESET_UNLEASED, 0, _unleased, _check_unleased, substrings=(GPU,)),
    Method('Context.Release (not the owner)', MANAGE, 0, _release_other, _check_released, other=True,
           substrings=('release',)),
    Method('Context.GetHotResetInfo (not the owner)', MANAGE, 0, _info_other, _check_info, other=True,
           substrings=('get-hot-reset-info',)),
    Method('Manager.Reload', MANAGE, 0, _reload, _check_reloaded, substrings=('reload',)),
]

# The callers of the matrix and what they get.
ROOT, ALLOWED, REFUSED, INTERACTIVE = 'root', 'allowed by a rule', 'refused by a rule', 'AUTH_ADMIN, not interactive'


class MatrixTest(AuthTestCase):
    """Every method that changes state x every kind of caller. Each cell
    gets its own client (and so its own bus name)."""

    def prepare(self, method, caller_name):
        """The state the caller needs (made with its own rights: hrd-no-N
        and hrd-admin-N may do exactly the setup steps) -> (client, state)."""
        c = self.client_as(caller_name)
        st = {}
        if method.other:
            root = self.client_as(None)
            st['ctx'] = root.call(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}',
                                  variant_dict({'Persistent': True}))[0]
            root.call(st['ctx'], CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', NVME, {})
        if method.level >= 1:
            st['ctx'] = c.create_context()
        if method.level >= 2:
            c.attach(st['ctx'], NVME)
        return c, st

    def cleanup(self):
        """Every context goes (the clients' with their connections, root's
        persistent ones by Release), so each cell starts from nothing."""
        for c in self.clients:
            c.close()
        self.clients = []
        deadline = time.monotonic() + 15 * harness.TIMEOUT_SCALE
        while self.context_paths() and time.monotonic() < deadline:
            for path in self.context_paths():
                p = self.env.busctl('call', harness.BUS_NAME, path, CONTEXT_IFACE, 'Release', check=False)
                if p.returncode != 0:
                    time.sleep(0.05)
        self.assertNoContexts()

    def run_cell(self, method, kind):
        caller = {ROOT: None, ALLOWED: 'hrd-yes', REFUSED: f'hrd-no-{method.level}',
                  INTERACTIVE: f'hrd-admin-{method.level}'}[kind]
        rec, _ = self.record()
        c, st = self.prepare(method, caller)
        before = self.snapshot()
        rec.sync()
        mark = rec.mark()
        st['log_mark'] = len(self.daemon.log())
        if kind in (ROOT, ALLOWED):
            result = method.call(self, c, st)
            method.check(self, c, st, result)
        else:
            try:
                result = method.call(self, c, st)
            except harness.DBusError as e:
                expected = ERR_ACCESS_DENIED if kind == REFUSED else ERR_INTERACTIVE
                self.assertRefused(e, expected, method.action, *method.substrings)
            else:
                self.fail(f'{method.name} by {caller} succeeded: {result!r}')
            self.assertUnchanged(before, rec, mark, f'{method.name} by {caller}')
            if method.name == 'Context.ResetDevice':
                self.assertNotIn(f'function-level reset of {NVME} done', self.daemon.log())
        self.cleanup()

    def run_method(self, index):
        method = METHODS[index]
        for kind in (REFUSED, INTERACTIVE, ROOT, ALLOWED):
            with self.subTest(method=method.name, caller=kind):
                self.run_cell(method, kind)


for _i, _m in enumerate(METHODS):
    _name = 'test_' + re.sub(r'[^a-z]+', '_', _m.name.lower()).strip('_')
    setattr(MatrixTest, _name, lambda self, i=_i: self.run_method(i))


class InteractiveFlagTest(AuthTestCase):
    """With ALLOW_INTERACTIVE_AUTHORIZATION set (busctl's default) polkit
    may authenticate: with no agent on this bus it cannot, and the answer
    is a plain refusal, not InteractiveAuthorizationRequired."""

    def test_interactive_flag(self):
        rec, _ = self.record()
        admin = user('hrd-admin-0')
        before = self.snapshot()
        mark = rec.mark()
        calls = [('CreateContext', 'a{sv}', 0), ('HotReset', 'sa{sv}', GPU, 0), ('Reload',)]
        for call in calls:
            with self.subTest(method=call[0]):
                p = self.env.busctl_as(admin, 'call', harness.BUS_NAME, ROOT_PATH, MANAGER_IFACE, *call,
                                       interactive=True)
                self.assertNotEqual(p.returncode, 0, p.stdout)
                # busctl shows every AccessDenied as "Access denied".
                self.assertIn('Access denied', p.stderr.decode())
                p = self.env.busctl_as(admin, 'call', harness.BUS_NAME, ROOT_PATH, MANAGER_IFACE, *call,
                                       interactive=False)
                self.assertIn('Authentication is required', p.stderr.decode())
        self.assertUnchanged(before, rec, mark)
        self.daemon.wait_log('polkit does not authorize org.hotresetd.reset-unleased')


class OwnerTest(AuthTestCase):
    """The owner of a context needs no polkit for what only concerns its
    lease: reading its hot-reset info, detaching, releasing."""

    def test_owner_without_polkit(self):
        c = self.client_as('hrd-no-2')
        ctx = c.create_context()
        c.attach(ctx, NVME)
        c.attach(ctx, GPU)
        info = c.call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', NVME)
        self.assertEqual([e[0] for e in info[1]], [NVME])
        c.call(ctx, CONTEXT_IFACE, 'DetachDevice', 's', GPU)
        self.assertEqual(self.ctx_devices(ctx), [NVME])
        c.call(ctx, CONTEXT_IFACE, 'Release')
        self.assertNoContexts()
        self.assertNotIn('hrd-no-2 asks org.hotresetd.manage', self.env.polkitd.log())

    def test_other_user_cannot_use_a_context(self):
        owner = self.client_as('hrd-yes')
        ctx = owner.create_context()
        owner.attach(ctx, NVME)
        rec, _ = self.record()
        before = self.snapshot()
        mark = rec.mark()
        other = self.client_as('hrd-no-0')
        for method, sig, args in (('AttachDevice', 'sa{sv}', (GPU, {})), ('DetachDevice', 's', (NVME,)),
                                  ('OpenDevice', 's', (NVME,)), ('OpenIommufd', '', ()),
                                  ('HotReset', 's', (NVME,)), ('ResetDevice', 's', (NVME,))):
            with self.subTest(method=method):
                err = other.error(ctx, CONTEXT_IFACE, method, sig, *args)
                self.assertRefused(err, ERR_ACCESS_DENIED, ctx, 'not to you')
        # manage decides for Release and GetHotResetInfo: refused here.
        self.assertRefused(other.error(ctx, CONTEXT_IFACE, 'Release'), ERR_ACCESS_DENIED, MANAGE)
        self.assertRefused(other.error(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', NVME), ERR_ACCESS_DENIED,
                           MANAGE)
        self.assertUnchanged(before, rec, mark)
        # Reads stay open to everyone.
        self.assertEqual(other.call(ctx, harness.PROPS_IFACE, 'Get', 'ss', CONTEXT_IFACE, 'Devices'), [[NVME]])
        self.assertEqual(other.call(device_path(NVME), DEVICE_IFACE, 'CheckHotReset')[1][0][3], ctx)


class DetailsTest(AuthTestCase):
    """polkit gets address, vendor, device, driver, iommu_group, affected,
    verb and the context: a rule that grants only when all of them are
    right lets every call through, and refuses another device."""

    def test_details(self):
        c = self.client_as('hrd-details')
        ctx = c.create_context()
        self.assertGreater(c.attach(ctx, NVME), 0)
        c.call(ctx, CONTEXT_IFACE, 'OpenDevice', 's', NVME)
        c.call(ctx, CONTEXT_IFACE, 'OpenIommufd')
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'HotReset', 's', NVME), [[NVME]])
        c.call(ctx, CONTEXT_IFACE, 'ResetDevice', 's', NVME)
        self.assertEqual(c.call(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', GPU, {}), [[GPU, AUDIO]])
        c.call(ROOT_PATH, MANAGER_IFACE, 'Reload')
        # Another device: details the rule does not expect.
        self.assertRefused(c.error(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', NIC, {}), ERR_ACCESS_DENIED,
                           ACQUIRE, NIC)
        log = self.env.polkitd.log()
        self.assertIn('hrd-details asks org.hotresetd.reset verb=hot-reset address=0000:02:00.0 '
                      'affected=0000:02:00.0 context=' + ctx, log)
        self.assertIn('hrd-details asks org.hotresetd.reset-unleased verb=unleased-hot-reset address=0000:01:00.0 '
                      'affected=0000:01:00.0,0000:01:00.1 context=undefined', log)


# ---------------------------------------------------------------------------
# The shipped example rules


def example_rules(uncomment=None):
    """policy/50-hotresetd-vfio-group.rules.example for the group hrd-vfio
    (this machine's vfio group is none of the test's business), with the
    example block after the comment line `uncomment` made live."""
    with open(os.path.join(harness.SOURCE_ROOT, 'policy', '50-hotresetd-vfio-group.rules.example')) as f:
        lines = f.read().replace('isInGroup("vfio")', 'isInGroup("hrd-vfio")').split('\n')
    if uncomment:
        i = next(i for i, line in enumerate(lines) if uncomment in line)
        while lines[i].strip() != '//':  # the rest of the explanation
            i += 1
        while lines[i].strip() == '//':
            i += 1
        while lines[i].strip().startswith('//') and lines[i].strip() != '//':
            lines[i] = lines[i].replace('// ', '', 1)
            i += 1
    return '\n'.join(lines)


class ExampleRulesTest(AuthTestCase):
    POLKIT_RULES = {'50-hotresetd-vfio-group.rules': example_rules()}

    def test_group_members(self):
        member = self.client_as_member()
        ctx = member.create_context()
        member.attach(ctx, NVME)
        member.call(ctx, CONTEXT_IFACE, 'OpenDevice', 's', NVME)
        self.assertEqual(member.call(ctx, CONTEXT_IFACE, 'HotReset', 's', NVME), [[NVME]])
        member.call(ctx, CONTEXT_IFACE, 'ResetDevice', 's', NVME)
        # Not granted by the example: the defaults apply (no session: no).
        self.assertRefused(member.error(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', GPU, {}),
                           ERR_ACCESS_DENIED, RESET_UNLEASED)
        self.assertRefused(member.error(ROOT_PATH, MANAGER_IFACE, 'Reload'), ERR_ACCESS_DENIED, MANAGE)

    def test_not_a_member(self):
        outsider = self.client_as('hrd-no-0')
        self.assertRefused(self.manager_error(outsider, 'CreateContext', 'a{sv}', {}), ERR_ACCESS_DENIED, ACQUIRE)

    def client_as_member(self):
        return self.client('member', user=user('hrd-vfio-member', groups=('hrd-vfio',)))


class ExampleVendorRuleTest(ExampleRulesTest):
    """The documented restriction by vendor, uncommented, in polkit's
    JavaScript engine: NVIDIA only (creating a context names no device)."""
    POLKIT_RULES = {'50-hotresetd-vfio-group.rules': example_rules('Example: only NVIDIA')}

    def test_group_members(self):
        member = self.client_as_member()
        ctx = member.create_context()
        member.attach(ctx, GPU)
        self.assertRefused(member.error(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', NVME, {}),
                           ERR_ACCESS_DENIED, ACQUIRE, NVME)
        self.assertEqual(self.ctx_devices(ctx), [GPU])


class ExampleAddressRuleTest(ExampleRulesTest):
    """The documented restriction to bus 01, uncommented."""
    POLKIT_RULES = {'50-hotresetd-vfio-group.rules': example_rules('Example: only the devices of bus 01')}

    def test_group_members(self):
        member = self.client_as_member()
        ctx = member.create_context()
        member.attach(ctx, GPU)
        self.assertRefused(member.error(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', NVME, {}),
                           ERR_ACCESS_DENIED, ACQUIRE, NVME)


# ---------------------------------------------------------------------------
# polkitd not running, stopped, killed


class PolkitNotRunningTest(AuthTestCase):
    POLKIT_RULES = None
    SYSTEM_BUS = True

    def test_clear_error_at_once(self):
        rec, _ = self.record()
        before = self.snapshot()
        mark = rec.mark()
        c = self.client_as('hrd-yes')
        for method, sig, args in (('CreateContext', 'a{sv}', ({},)), ('HotReset', 'sa{sv}', (GPU, {})),
                                  ('Reload', '', ())):
            with self.subTest(method=method):
                t0 = time.monotonic()
                err = self.manager_error(c, method, sig, *args)
                self.assertLess(time.monotonic() - t0, 5 * harness.TIMEOUT_SCALE)
                self.assertRefused(err, ERR_ACCESS_DENIED, 'authorization service is unavailable',
                                   'polkit is not running')
        self.assertUnchanged(before, rec, mark)
        # Root needs no polkit; reads need none.
        root = self.client_as(None)
        ctx = root.create_context()
        root.attach(ctx, NVME)
        self.assertEqual(root.call(ctx, CONTEXT_IFACE, 'HotReset', 's', NVME), [[NVME]])
        self.assertEqual(len(c.call(ROOT_PATH, MANAGER_IFACE, 'ListDevices')[0]), len(MACHINE['devices']))


class PolkitStoppedTest(AuthTestCase):
    DAEMON_ENV = {'HOTRESETD_POLKIT_TIMEOUT_SEC': '3'}

    def test_sigstop(self):
        rec, _ = self.record()
        waiting = self.client_as('hrd-yes')
        other = self.client_as('hrd-no-0')
        root = self.client_as(None)
        mark = rec.mark()
        self.env.polkitd.pause()
        try:
            t0 = time.monotonic()
            rid = waiting.start(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', {})
            time.sleep(0.3)
            self.assertFalse(waiting.done(rid))

            # Everyone else is answered meanwhile, at once.
            for what, call in (
                    ('ListDevices', lambda: other.call(ROOT_PATH, MANAGER_IFACE, 'ListDevices')),
                    ('CheckHotReset', lambda: other.call(device_path(GPU), DEVICE_IFACE, 'CheckHotReset')),
                    ('GetManagedObjects', lambda: other.call(ROOT_PATH, harness.OM_IFACE, 'GetManagedObjects'))):
                t = time.monotonic()
                call()
                self.assertLess(time.monotonic() - t, 1.5 * harness.TIMEOUT_SCALE, what)
            ctx = root.create_context()
            root.call(ctx, CONTEXT_IFACE, 'Release')

            # And udev events are processed: unbind the NIC.
            machine = harness.machine_copy(MACHINE)
            harness.find_device(machine, NIC)['driver'] = None
            self.env.rewrite_machine(machine)
            rec.wait_properties(device_path(NIC), DEVICE_IFACE, {'Driver': ''}, since=mark)
            self.assertFalse(waiting.done(rid))

            r = waiting.wait(rid, timeout=30 * harness.TIMEOUT_SCALE)
            elapsed = time.monotonic() - t0
        finally:
            self.env.polkitd.resume()
        self.assertFalse(r['ok'], r)
        self.assertEqual(r['error'], ERR_ACCESS_DENIED)
        self.assertIn('polkit did not answer within 3 s', r['message'])
        self.assertGreater(elapsed, 2.5)
        self.assertLess(elapsed, 15 * harness.TIMEOUT_SCALE)
        # Nothing of the waiting caller's.
        rec.sync()
        self.assertEqual(self.context_paths(), [])
        # polkitd answers again: so does the daemon.
        self.assertRegex(waiting.create_context(), r'/context/[0-9]+$')

    def test_daemon_stops_while_asking(self):
        """SIGTERM with a check pending: the daemon exits 0 at once (the
        teardown also looks for sanitizer reports: nothing leaks)."""
        waiting = self.client_as('hrd-yes')
        self.env.polkitd.pause()
        rid = waiting.start(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', {})
        self.daemon.wait_log('Asked polkit whether')
        t0 = time.monotonic()
        self.assertEqual(self.daemon.stop(), 0, self.daemon.log())
        self.assertLess(time.monotonic() - t0, 5 * harness.TIMEOUT_SCALE)
        r = waiting.wait(rid, timeout=30)
        self.assertFalse(r['ok'], r)

    def test_killed_while_asked(self):
        waiting = self.client_as('hrd-yes')
        self.env.polkitd.pause()
        rid = waiting.start(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', {})
        time.sleep(0.3)
        t0 = time.monotonic()
        self.env.polkitd.proc.send_signal(signal.SIGKILL)
        self.env.polkitd.proc.wait(10)
        r = waiting.wait(rid, timeout=30)
        self.assertLess(time.monotonic() - t0, 2.5 * harness.TIMEOUT_SCALE)
        self.assertFalse(r['ok'], r)
        self.assertEqual(r['error'], ERR_ACCESS_DENIED)
        self.assertIn('polkit', r['message'])
        self.assertNoContexts()
        # Gone for good: the next caller is told at once.
        err = self.manager_error(waiting, 'CreateContext', 'a{sv}', {})
        self.assertRefused(err, ERR_ACCESS_DENIED, 'authorization service is unavailable')


# ---------------------------------------------------------------------------
# The daemon's policy file: limits


class RateLimitTest(AuthTestCase):
    CONFIG = '''\
        [Limits]
        ResetsPerDevicePerMinute=2
        '''

    def test_resets_per_device(self):
        rec, _ = self.record()
        c = self.client_as('hrd-yes')
        ctx = c.create_context()
        c.attach(ctx, NVME)
        for _ in range(2):
            self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'HotReset', 's', NVME), [[NVME]])
        rec.sync()
        mark = rec.mark()
        err = c.error(ctx, CONTEXT_IFACE, 'HotReset', 's', NVME)
        self.assertRefused(err, ERR_RATE_LIMITED, f'{NVME} was reset too often',
                           f'ResetsPerDevicePerMinute=2 in {self.env.config_path}:2', 'retry in')
        retry = float(re.search(r'retry in ([0-9.]+) s', err.message).group(1))
        self.assertGreater(retry, 0)
        self.assertLessEqual(retry, 30.1)
        self.daemon.wait_log(f'Rate limit: refused hot-reset of {NVME}')
        # A function reset counts on the same device; root is limited too.
        self.assertRefused(c.error(ctx, CONTEXT_IFACE, 'ResetDevice', 's', NVME), ERR_RATE_LIMITED)
        root = self.client_as(None)
        self.assertRefused(root.error(ctx, CONTEXT_IFACE, 'ResetDevice', 's', NVME), ERR_RATE_LIMITED)
        rec.sync()
        self.assertEqual(rec.signals(mark, member='HotResetDone'), [])
        self.assertNotIn(f'function-level reset of {NVME} done', self.daemon.log())
        # Other devices have their own budget; a hot reset of the GPU
        # counts for both functions.
        c.attach(ctx, GPU)
        c.attach(ctx, AUDIO)
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'HotReset', 's', GPU), [[GPU, AUDIO]])
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'HotReset', 's', AUDIO), [[GPU, AUDIO]])
        self.assertRefused(c.error(ctx, CONTEXT_IFACE, 'ResetDevice', 's', AUDIO), ERR_RATE_LIMITED, AUDIO)

    def test_refused_before_polkit(self):
        """A refused reset does not count: a user polkit refuses uses up
        nothing of anyone's budget."""
        owner = self.client_as('hrd-no-2')
        ctx = owner.create_context()
        owner.attach(ctx, NVME)
        for _ in range(3):
            self.assertRefused(owner.error(ctx, CONTEXT_IFACE, 'HotReset', 's', NVME), ERR_ACCESS_DENIED, RESET)
        root = self.client_as(None)
        self.assertEqual(root.call(ctx, CONTEXT_IFACE, 'HotReset', 's', NVME), [[NVME]])
        self.assertEqual(root.call(ctx, CONTEXT_IFACE, 'HotReset', 's', NVME), [[NVME]])


class UserRateLimitTest(AuthTestCase):
    CONFIG = '''\
        [Limits]
        ResetsPerUserPerMinute=1
        ResetBurstPerUser=2
        '''

    def test_resets_per_user(self):
        c = self.client_as('hrd-yes')
        ctx = c.create_context()
        c.attach(ctx, NVME)
        c.attach(ctx, GPU)
        self.assertEqual(c.call(ctx, CONTEXT_IFACE, 'HotReset', 's', NVME), [[NVME]])
        c.call(ctx, CONTEXT_IFACE, 'ResetDevice', 's', NVME)
        err = c.error(ctx, CONTEXT_IFACE, 'HotReset', 's', GPU)
        uid = user('hrd-yes')[0]
        self.assertRefused(err, ERR_RATE_LIMITED, f'uid {uid} reset too often', 'ResetsPerUserPerMinute=1',
                           'ResetBurstPerUser=2', 'retry in')
        retry = float(re.search(r'retry in ([0-9.]+) s', err.message).group(1))
        self.assertLessEqual(retry, 60.1)
        self.daemon.wait_log(f'Rate limit: refused hot-reset of {GPU} to uid {uid}')
        # Root is exempt from the per-user limits.
        root = self.client_as(None)
        for _ in range(3):
            self.assertEqual(root.call(ctx, CONTEXT_IFACE, 'HotReset', 's', GPU), [[GPU, AUDIO]])


class CountLimitTest(AuthTestCase):
    CONFIG = '''\
        [Limits]
        ContextsPerUser=1
        DevicesPerContext=1
        '''

    def test_contexts_per_user(self):
        c = self.client_as('hrd-yes')
        first = c.create_context()
        err = self.manager_error(c, 'CreateContext', 'a{sv}', {})
        self.assertRefused(err, ERR_RATE_LIMITED, 'holds 1 contexts', 'ContextsPerUser=1', 'Context.Release')
        self.assertEqual(self.context_paths(), [first])
        c.call(first, CONTEXT_IFACE, 'Release')
        c.create_context()
        # Root is exempt.
        root = self.client_as(None)
        root.create_context()
        root.create_context()

    def test_devices_per_context(self):
        for who in ('hrd-yes', None):
            with self.subTest(caller=who or 'root'):
                c = self.client_as(who)
                ctx = c.create_context()
                c.attach(ctx, NVME)
                err = c.error(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', NIC, {})
                self.assertRefused(err, ERR_RATE_LIMITED, 'holds 1 devices', 'DevicesPerContext=1',
                                   'DetachDevice')
                self.assertEqual(self.ctx_devices(ctx), [NVME])
                c.call(ctx, CONTEXT_IFACE, 'DetachDevice', 's', NVME)
                c.attach(ctx, NIC)
                c.call(ctx, CONTEXT_IFACE, 'Release')


# ---------------------------------------------------------------------------
# The daemon's policy file: devices


class DenyListTest(AuthTestCase):
    CONFIG = '''\
        # test_authorization.py
        [Devices]
        DenyVendor=8086:10fb
        DenyAddress=0000:01:00.1
        '''

    def test_listed_never_attached_or_reset(self):
        rec, _ = self.record()
        self.assertIn(NIC, [d[0] for d in self.env.list_devices()])
        self.assertEqual(self.env.device_property(NIC, 'Driver'), 'vfio-pci')
        possible, devices = self.env.check_hot_reset(NIC)
        self.assertFalse(possible)
        self.assertEqual(devices[0][4],
                         f'excluded by policy: {NIC} matches DenyVendor=8086:10fb in {self.env.config_path}:3')
        self.assertFalse(self.env.device_property(NIC, 'HotResetPossible'))

        root = self.client_as(None)
        ctx = root.create_context()
        before = self.snapshot()
        rec.sync()
        mark = rec.mark()
        err = root.error(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', NIC, {})
        self.assertRefused(err, ERR_POLICY_DENIED, NIC, 'excluded by policy', 'DenyVendor=8086:10fb')
        err = self.manager_error(root, 'HotReset', 'sa{sv}', NIC, {})
        self.assertRefused(err, ERR_POLICY_DENIED, NIC, 'excluded by policy')
        self.assertUnchanged(before, rec, mark)
        self.assertEqual(self.ctx_devices(ctx), [])
        self.daemon.wait_log(f'Refused attach of {NIC}: excluded by policy')

    def test_scope_with_an_excluded_device(self):
        possible, devices = self.env.check_hot_reset(GPU)
        self.assertFalse(possible)
        self.assertEqual([(d[0], d[4].split(':')[0]) for d in devices],
                         [(GPU, ''), (AUDIO, 'excluded by policy')])
        root = self.client_as(None)
        ctx = root.create_context()
        root.attach(ctx, GPU)  # the GPU itself is allowed
        err = root.error(ctx, CONTEXT_IFACE, 'HotReset', 's', GPU)
        self.assertRefused(err, ERR_POLICY_DENIED, f'hot-reset of {GPU}', f'{AUDIO} matches DenyAddress',
                           'it is in the reset scope')
        self.assertRefused(self.manager_error(root, 'HotReset', 'sa{sv}', GPU, {}), ERR_POLICY_DENIED, AUDIO)
        # Unaffected devices work as ever.
        root.attach(ctx, NVME)
        self.assertEqual(root.call(ctx, CONTEXT_IFACE, 'HotReset', 's', NVME), [[NVME]])


class AllowListTest(AuthTestCase):
    CONFIG = '''\
        [Devices]
        AllowAddress=02:00.*
        AllowClass=0300
        '''

    def test_allow_set(self):
        root = self.client_as(None)
        ctx = root.create_context()
        root.attach(ctx, NVME)
        root.attach(ctx, GPU)
        err = root.error(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', NIC, {})
        self.assertRefused(err, ERR_POLICY_DENIED, 'matches none of the allowed devices', 'AllowAddress=02:00.*')
        # The GPU's audio function is outside the set: no hot reset of bus 1.
        self.assertRefused(root.error(ctx, CONTEXT_IFACE, 'HotReset', 's', GPU), ERR_POLICY_DENIED, AUDIO)


class UnleasedOffTest(AuthTestCase):
    CONFIG = '''\
        [Manager]
        UnleasedHotReset=no
        '''

    def test_unleased_refused_to_everyone(self):
        rec, _ = self.record()
        mark = rec.mark()
        for who in (None, 'hrd-yes'):
            with self.subTest(caller=who or 'root'):
                c = self.client_as(who)
                err = self.manager_error(c, 'HotReset', 'sa{sv}', NVME, {})
                self.assertRefused(err, ERR_POLICY_DENIED, 'Unleased hot resets are disabled by policy',
                                   f'UnleasedHotReset=no in {self.env.config_path}:2', 'Context.HotReset')
        rec.sync()
        self.assertEqual(rec.signals(mark, member='HotResetDone'), [])
        self.assertNoContexts()


# ---------------------------------------------------------------------------
# The daemon's policy file: reload


class ReloadTest(AuthTestCase):
    CONFIG = '''\
        [Devices]
        DenyAddress=0000:03:00.0
        '''

    def nic_allowed(self):
        root = self.client_as(None)
        ctx = root.create_context()
        try:
            root.attach(ctx, NIC)
            return True
        except harness.DBusError as e:
            self.assertEqual(e.name, ERR_POLICY_DENIED, e.message)
            return False
        finally:
            root.call(ctx, CONTEXT_IFACE, 'Release')

    def test_broken_file_keeps_the_policy(self):
        self.assertFalse(self.nic_allowed())
        path = self.env.write_config('''\
            [Devices]
            AllowVendor=10de
            [Limits]
            ResetsPerDevicePerMinte=3
            ''')
        root = self.client_as(None)
        err = self.manager_error(root, 'Reload')
        self.assertRefused(err, ERR_INVALID_FILE, 'the one in force is kept', f'{path}:4',
                           '[Limits] ResetsPerDevicePerMinte: unknown key')
        # The old policy is in force: the NIC stays excluded, the GPU is
        # not restricted by the broken file's AllowVendor=.
        self.assertFalse(self.nic_allowed())
        self.assertEqual(self.env.check_hot_reset(NIC)[1][0][4].split(':')[0], 'excluded by policy')
        # SIGHUP says the same in the log.
        self.daemon.reload()
        self.daemon.wait_log(f'Failed to reload the policy, keeping the one in force: {path}:4: [Limits] '
                             'ResetsPerDevicePerMinte: unknown key')

        # Fixed: applied, and what CheckHotReset reports changes with it.
        rec, mark = self.record()
        self.env.write_config('[Devices]\nDenyAddress=\n')
        root.call(ROOT_PATH, MANAGER_IFACE, 'Reload')
        self.assertTrue(self.nic_allowed())
        self.assertEqual(self.env.check_hot_reset(NIC), (True, [(NIC, 'vfio-pci', 16, '', '')]))
        rec.wait_properties(device_path(NIC), DEVICE_IFACE, {'HotResetPossible': True}, since=mark)

    def test_sighup(self):
        self.env.write_config('')
        mark = len(self.daemon.log())
        self.daemon.reload()
        deadline = time.monotonic() + 10
        while 'Reloaded the policy' not in self.daemon.log()[mark:] and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn('Reloaded the policy', self.daemon.log()[mark:])
        self.assertTrue(self.nic_allowed())

    def test_broken_dropin(self):
        dropin = self.env.write_config('[Limits]\n\nContextsPerUser=many\n', name='50-broken.conf')
        err = self.manager_error(self.client_as(None), 'Reload')
        self.assertRefused(err, ERR_INVALID_FILE, f'{dropin}:3', '[Limits] ContextsPerUser', "'many'")
        self.assertFalse(self.nic_allowed())
        os.unlink(dropin)
        self.env.write_config('[Limits]\nContextsPerUser=1\n', name='50-fixed.conf')
        self.client_as(None).call(ROOT_PATH, MANAGER_IFACE, 'Reload')
        c = self.client_as('hrd-yes')
        c.create_context()
        self.assertRefused(self.manager_error(c, 'CreateContext', 'a{sv}', {}), ERR_RATE_LIMITED,
                           '50-fixed.conf:2')

    def test_limits_property_follows_reloads(self):
        limits = self.env.get_property(ROOT_PATH, MANAGER_IFACE, 'Limits')
        self.assertEqual(limits, {'ResetsPerDevicePerMinute': 0, 'ResetsPerUserPerMinute': 0,
                                  'ResetBurstPerUser': 0, 'ContextsPerUser': 64, 'DevicesPerContext': 0,
                                  'LoggedRefusalsPerUserPerMinute': 60})
        self.assertIs(self.env.get_property(ROOT_PATH, MANAGER_IFACE, 'UnleasedHotReset'), True)
        rec, mark = self.record()
        self.env.write_config('[Limits]\nContextsPerUser=2\nResetsPerDevicePerMinute=5\n'
                              '[Manager]\nUnleasedHotReset=no\n')
        self.client_as(None).call(ROOT_PATH, MANAGER_IFACE, 'Reload')
        rec.wait_properties(ROOT_PATH, MANAGER_IFACE,
                            {'Limits': lambda v: v.get('ContextsPerUser') == 2 and
                             v.get('ResetsPerDevicePerMinute') == 5,
                             'UnleasedHotReset': False}, since=mark)
        self.assertEqual(self.env.get_property(ROOT_PATH, MANAGER_IFACE, 'Limits')['ContextsPerUser'], 2)
        self.assertIs(self.env.get_property(ROOT_PATH, MANAGER_IFACE, 'UnleasedHotReset'), False)


class StartupConfigTest(AuthTestCase):
    MACHINE = None
    POLKIT_RULES = None

    def test_broken_file_at_startup(self):
        path = self.env.write_config('[Manager]\nUnleasedHotReset=perhaps\n')
        d = self.env.start_daemon(MACHINE, wait=False)
        rc = d.wait_exit()
        self.assertIsNotNone(rc, d.log())
        self.assertNotEqual(rc, 0)
        self.assertIn(f"{path}:2: [Manager] UnleasedHotReset: 'perhaps' is not a boolean", d.log())

    def test_missing_explicit_file(self):
        missing = os.path.join(self.env.tmpdir, 'nonexistent.conf')
        d = self.env.start_daemon(MACHINE, args=['--config=' + missing], wait=False)
        rc = d.wait_exit()
        self.assertIsNotNone(rc, d.log())
        self.assertNotEqual(rc, 0)
        self.assertIn(f'{missing}: cannot be read', d.log())


# ---------------------------------------------------------------------------
# The D-Bus policy


class BusPolicyTest(AuthTestCase):
    POLKIT_RULES = None
    SYSTEM_BUS = True

    def dbus_send(self, who, dest, path, member, *args):
        cmd = ['dbus-send', '--system', '--print-reply', '--dest=' + dest, path, member] + list(args)
        if who is not None:
            cmd = harness.as_user(who, cmd)
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env.child_env(),
                              timeout=harness.CALL_TIMEOUT, stdin=subprocess.DEVNULL)

    def test_only_root_owns_the_name(self):
        someone = user('hrd-yes')
        p = self.dbus_send(someone, 'org.freedesktop.DBus', '/org/freedesktop/DBus',
                           'org.freedesktop.DBus.RequestName', 'string:' + harness.BUS_NAME, 'uint32:0')
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('org.freedesktop.DBus.Error.AccessDenied', p.stderr.decode())
        self.assertEqual(self.env.name_owner(harness.BUS_NAME), self.daemon.unique_name)

    def test_interfaces(self):
        someone = user('hrd-yes')
        for who in (someone, None):
            for member, args in (('org.freedesktop.DBus.Peer.Ping', ()),
                                 ('org.freedesktop.DBus.Introspectable.Introspect', ()),
                                 ('org.freedesktop.DBus.Properties.Get',
                                  ('string:' + MANAGER_IFACE, 'string:Version')),
                                 ('org.freedesktop.DBus.ObjectManager.GetManagedObjects', ()),
                                 (MANAGER_IFACE + '.ListDevices', ())):
                with self.subTest(caller=who, member=member):
                    p = self.dbus_send(who, harness.BUS_NAME, ROOT_PATH, member, *args)
                    self.assertEqual(p.returncode, 0, p.stderr.decode())
            p = self.dbus_send(who, harness.BUS_NAME, device_path(NVME), DEVICE_IFACE + '.CheckHotReset')
            self.assertEqual(p.returncode, 0, p.stderr.decode())
            # Anything else is stopped by the bus, for root too.
            p = self.dbus_send(who, harness.BUS_NAME, ROOT_PATH, 'org.hotresetd.Broker1.Other.Method')
            self.assertIn('org.freedesktop.DBus.Error.AccessDenied', p.stderr.decode())
            self.assertIn('Rejected send message', p.stderr.decode())


if __name__ == '__main__':
    harness.main()

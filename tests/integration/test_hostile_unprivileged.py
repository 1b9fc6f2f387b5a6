#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Hostile clients (issue 13) as an UNPRIVILEGED caller: test_hostile.py's
attack (every method of every interface of the manager, a device, a reset
domain and a context, enumerated from introspection: wrong signatures,
empty and 1 MiB strings, malformed and absent addresses, options of wrong
types, unknown and released context paths), made by a user who is not root
(setpriv: its own uid and gid, no supplementary groups, no capabilities)
through the project's system bus policy (dbus/org.hotresetd.Broker1.conf on
a deny-by-default bus) and the real polkitd with real rules, then a storm
of a few hundred pipelined calls from that user. Two polkit setups:

- refused: no rule at all, so the project's action defaults (allow_any=no)
  refuse this caller, who is in no session. It attacks root's context:
  every call that root would get through must be refused with the precise
  authorization error (the context's ownership, naming its path and what
  was refused; or polkit's, naming the action and the verb with the
  device or context), every other answer is root's. Calls with valid
  arguments reach polkit for every state-changing method and are refused.
- granted: a rule grants the hotresetd actions to the caller, who attacks
  a context of its own (made and attached through polkit): every answer
  must be exactly the one root gets (the hostile arguments reach the
  argument checks).

After each: the daemon's contexts, the devices' holders and its open files
are back to their baseline and Ping is answered. Answers are checked here
with test_hostile.py's Case.problem(); python3-dbus in this process runs
as root, so the calls are made by hostile_caller.py in a child process.

Needs root (real polkitd, test users); skipped otherwise. Creates the
system user hrd-hostile if missing."""

import collections
import json
import os
import subprocess
import sys
import time

import dbus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import hostile_caller  # noqa: E402
import test_hostile as th  # noqa: E402
from harness import ROOT_PATH, device_path  # noqa: E402
from contexts_util import (CONTEXT_IFACE, ERR_ACCESS_DENIED, ERR_IN_USE, ERR_UNSUPPORTED, MANAGER_IFACE,  # noqa: E402
                           LeaseTestCase, load_machine)

USER = 'hrd-hostile'
CALLER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'hostile_caller.py')

ACQUIRE = 'org.hotresetd.acquire'
RESET_UNLEASED = 'org.hotresetd.reset-unleased'
MANAGE = 'org.hotresetd.manage'
LOG_CONTROL_PATH = '/org/freedesktop/LogControl1'
LOG_CONTROL_IFACE = 'org.freedesktop.LogControl1'

# The storm: a few hundred calls, under the bus's pending replies per
# connection and beyond the daemon's 16 pending polkit checks per user.
STORM_CONNECTIONS = 4
STORM_PER_CONNECTION = 75

GRANT_RULES = '''
polkit.addRule(function(action, subject) {
    if (action.id.indexOf("org.hotresetd.") == 0 && subject.user == "%s")
        return polkit.Result.YES;
    return polkit.Result.NOT_HANDLED;
});
''' % USER

# Context methods that check the caller's ownership of the context before
# anything else but the arguments' types: what the refusal says was refused.
OWNER_ONLY = {'AttachDevice': 'attach devices', 'DetachDevice': 'detach devices',
              'OpenDevice': 'open device files', 'ReopenDevice': 'reopen device files',
              'HotReset': 'reset devices', 'ResetDevice': 'reset devices', 'OpenIommufd': 'open the iommufd'}
# Context methods the owner may call without polkit; anyone else needs
# manage: the verb polkit is asked about.
OWNER_OR_MANAGE = {'GetHotResetInfo': 'get-hot-reset-info', 'Release': 'release'}

SKIP = harness.polkit_missing()


class UCase(th.Case):
    """A Case as the unprivileged caller must be answered. polkit: the
    answer comes from polkit, so in a storm the daemon's bound on pending
    polkit checks per user may answer first (LimitsExceeded, precise too)."""

    def __init__(self, *args, polkit=False, **kw):
        super().__init__(*args, **kw)
        self.polkit = polkit

    @classmethod
    def like(cls, c, names=None, substrings=None, polkit=False):
        return cls(c.what, c.path, c.iface, c.method, c.sig, c.args, c.names if names is None else names,
                   c.substrings if substrings is None else substrings, check_ok=c.check_ok, costly=c.costly,
                   polkit=polkit)

    def problem(self, reply=None, error=None, storm=False):
        if storm and self.polkit and error is not None and error.get_dbus_name() == th.ERR_LIMITS_EXCEEDED \
                and 'authorization checks are pending' in (error.get_dbus_message() or ''):
            return None
        return super().problem(reply=reply, error=error, storm=storm)

    def ok(self, check, polkit=False):
        """Must succeed, with a reply check() accepts."""
        self.names, self.check_ok, self.polkit = (), check, polkit
        return self

    def request(self):
        types = hostile_caller.types_of(self.sig) if self.sig else []
        return {'path': self.path, 'iface': self.iface, 'method': self.method, 'sig': self.sig,
                'args': [hostile_caller.encode(a, t) for a, t in zip(self.args, types)]}


def polkit_refusal(c, action, verb, obj=None):
    """polkit's no: the message names the action and what was asked
    ("attach of 0000:09:00.0", "release of /org/...", "reload")."""
    return UCase.like(c, ERR_ACCESS_DENIED,
                      ('Not authorized', f'polkit action {action}', verb if obj is None else f'{verb} of {obj}'),
                      polkit=True)


def owner_refusal(c, ctx, what):
    return UCase.like(c, ERR_ACCESS_DENIED, (ctx, 'not to you', f'you may not {what} there'))


def refused_expectation(c, ctx):
    """What the caller that polkit refuses and that does not own ctx gets
    for root's case c."""
    if c.path != ctx or c.iface != CONTEXT_IFACE or c.what.startswith('signature '):
        # Signatures are checked by sd-bus before any handler; the other
        # objects' calls fail on their arguments before any authorization.
        return UCase.like(c)
    if c.method == 'AttachDevice' and c.what.startswith('option '):
        return UCase.like(c)  # options are read (and refused) first
    if c.method in OWNER_ONLY:
        return owner_refusal(c, ctx, OWNER_ONLY[c.method])
    if c.method in OWNER_OR_MANAGE:
        return polkit_refusal(c, MANAGE, OWNER_OR_MANAGE[c.method], ctx)
    if c.method == 'Adopt':
        return UCase.like(c, ERR_ACCESS_DENIED, (ctx, 'only its uid may adopt it'))
    raise AssertionError(f'no expectation for {c.iface}.{c.method} by an unprivileged caller '
                         f'({c.what}): add one to test_hostile_unprivileged.py')


def valid_call(path, iface, method, sig='', *args):
    """A case with well-formed arguments (its expectation comes after)."""
    return UCase('valid arguments', path, iface, method, sig, list(args), ())


def log_control_cases(conn):
    """org.freedesktop.LogControl1, which test_hostile.py's objects do not
    include: wrong signatures on all it serves, and hostile values for its
    writable properties. Writing them needs CAP_SYS_ADMIN, which no polkit
    rule gives: refused with the property named, whatever the string (a
    value of another type is refused first, by sd-bus, naming both)."""
    cases = []
    for iface, methods in th.introspect(conn, LOG_CONTROL_PATH).items():
        for method, in_args in methods.items():
            cases += [UCase.like(c) for c in th.wrong_signature_cases(LOG_CONTROL_PATH, iface, method, in_args)]
    for prop in ('LogLevel', 'LogTarget'):
        for value in th.BAD_STRINGS + ['debug', 'console']:
            cases.append(UCase.like(valid_call(LOG_CONTROL_PATH, th.PROPS_IFACE, 'Set', 'ssv', LOG_CONTROL_IFACE,
                                               prop, dbus.String(value, variant_level=1)),
                                    ERR_ACCESS_DENIED, (prop,)))
        for value in (dbus.UInt32(7, variant_level=1), dbus.Array(['debug'], signature='s', variant_level=1)):
            cases.append(UCase.like(valid_call(LOG_CONTROL_PATH, th.PROPS_IFACE, 'Set', 'ssv', LOG_CONTROL_IFACE,
                                               prop, value), th.ERR_INVALID_ARGS, (f"'{prop}'", "expected 's'")))
    cases.append(UCase.like(valid_call(LOG_CONTROL_PATH, th.PROPS_IFACE, 'Set', 'ssv', LOG_CONTROL_IFACE,
                                       'SyslogIdentifier', dbus.String('x', variant_level=1)),
                            th.ERR_PROPERTY_READ_ONLY, ('SyslogIdentifier',)))
    return cases


def dict_sv(d):
    return dbus.Dictionary(d, signature='sv')


class UnprivilegedHostileTests:
    """Model-independent: CDEV and MACHINE come from the subclass."""
    DAEMON_ENV = th.HostileTests.DAEMON_ENV

    # Borrowed from test_hostile.py: the same objects, cases and state.
    call = th.HostileTests.call
    contexts = th.HostileTests.contexts
    holders = th.HostileTests.holders
    cases = th.HostileTests.cases

    def setUp(self):
        if SKIP:
            self.skipTest(SKIP)
        super().setUp()
        self.env.allow_other_users()
        self.user = harness.ensure_user(USER)
        self.conn = dbus.bus.BusConnection(self.env.bus.address)
        self.log_control0 = self.log_control()

    def tearDown(self):
        self.conn.close()
        super().tearDown()

    def as_caller(self, cases, storm=False):
        """cases made by the unprivileged caller -> [(case, answer)]."""
        uid, gid = self.user
        req = {'mode': 'storm' if storm else 'sequential', 'connections': STORM_CONNECTIONS,
               'per_connection': STORM_PER_CONNECTION, 'timeout': 60 * harness.TIMEOUT_SCALE,
               'cases': [c.request() for c in cases]}
        cmd = ['setpriv', f'--reuid={uid}', f'--regid={gid}', '--clear-groups', '--inh-caps=-all',
               '--ambient-caps=-all', '/usr/bin/python3', CALLER]
        p = subprocess.run(cmd, input=json.dumps(req).encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=self.env.child_env(), timeout=600 * harness.TIMEOUT_SCALE)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors='replace')[-3000:])
        out = json.loads(p.stdout)
        # The caller is who it must be: the user, nothing of root's.
        self.assertEqual((out['uid'], out['ruid'], out['gid'], out['groups']), (uid, uid, gid, []))
        self.assertEqual(out['caps'], {'CapEff': 0, 'CapPrm': 0, 'CapInh': 0, 'CapAmb': 0})
        return [(cases[a['case']], a) for a in out['answers']]

    def problems(self, answers, storm=False):
        problems = []
        for c, a in answers:
            if a.get('none'):
                p = f'no answer to {c.what}: {c.iface}.{c.method}'
            elif a['ok']:
                p = c.problem(reply=a['result'], storm=storm)
            else:
                p = c.problem(error=dbus.exceptions.DBusException(a['message'], name=a['error']), storm=storm)
            if p:
                problems.append(('storm: ' if storm else '') + p)
        return problems

    def attack(self, cases, what):
        """The cases one by one, then a storm of the small ones; every
        answer checked."""
        t0 = time.monotonic()
        problems = self.problems(self.as_caller(cases))
        self.assertEqual(problems, [], f'{what}: {len(problems)} wrong answers')
        t1 = time.monotonic()
        # The storm cycles through its cases: every call with valid
        # arguments and every one answered with a refusal, and a sample of
        # the rest (not the 1 MiB ones), so that it reaches polkit and
        # every check, not only the first few hundred cases.
        small = [c for c in cases if len(json.dumps(c.request())) < 10000]
        key = [c for c in small if c.what == 'valid arguments' or ERR_ACCESS_DENIED in c.names]
        rest = [c for c in small if c not in key]
        pool = key + rest[::max(1, -(-len(rest) // max(1, STORM_CONNECTIONS * STORM_PER_CONNECTION - len(key))))]
        answers = self.as_caller(pool, storm=True)
        self.assertEqual(len(answers), STORM_CONNECTIONS * STORM_PER_CONNECTION)
        problems = self.problems(answers, storm=True)
        self.assertEqual(problems, [], f'{what}: {len(problems)} wrong answers in the storm')
        names = collections.Counter(a.get('error', 'success').rsplit('.', 1)[-1] for _, a in answers)
        harness.log(f'{self.backend()}, {what}: {len(cases)} hostile calls as uid {self.user[0]} in '
                    f'{t1 - t0:.1f} s, a storm of {len(answers)} in {time.monotonic() - t1:.1f} s '
                    f'({", ".join(f"{k} {v}" for k, v in names.most_common())})')
        return len(cases) + len(answers)

    def log_control(self):
        return {p: str(self.call(LOG_CONTROL_PATH, th.PROPS_IFACE, 'Get', 'ss', LOG_CONTROL_IFACE, p))
                for p in ('LogLevel', 'LogTarget')}

    def assertBaseline(self, contexts, holders, fds, what):
        self.assertEqual(self.log_control(), self.log_control0, what)
        self.assertEqual(self.contexts(), contexts, what)
        self.assertEqual(self.holders(), holders, what)
        self.assertFdCount(fds, what)
        self.assertEqual(self.call(ROOT_PATH, th.PEER_IFACE, 'Ping'), None)
        self.assertDaemonRunning()


class RefusedHostileTests(UnprivilegedHostileTests):
    """No polkit rule: the caller owns nothing and may change nothing."""
    POLKIT_RULES = {}

    def test_hostile_calls_refused(self):
        fds0, contexts0, holders0 = self.fd_count(), self.contexts(), self.holders()
        ctx = str(self.call(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', {'Description': 'root'}))
        self.call(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', th.NVME, {})
        released = str(self.call(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', {}))
        self.call(released, CONTEXT_IFACE, 'Release')
        fds1, contexts1, holders1 = self.fd_count(), self.contexts(), self.holders()

        root_cases, covered = self.cases(ctx, released)
        cases = [refused_expectation(c, ctx) for c in root_cases]
        # Every state-changing method with valid arguments: refused by
        # polkit (naming the action, the verb, the device or context) or
        # by the context's ownership.
        nvme = th.NVME
        cases += [
            polkit_refusal(valid_call(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', dict_sv({})),
                           ACQUIRE, 'create-context'),
            polkit_refusal(valid_call(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}',
                                      dict_sv({'Persistent': True, 'Description': 'mine'})),
                           ACQUIRE, 'create-context'),
            polkit_refusal(valid_call(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', th.LONE, dict_sv({})),
                           RESET_UNLEASED, 'unleased-hot-reset', th.LONE),
            polkit_refusal(valid_call(ROOT_PATH, MANAGER_IFACE, 'Reload'), MANAGE, 'reload'),
            owner_refusal(valid_call(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', th.LONE, dict_sv({})), ctx,
                          'attach devices'),
            owner_refusal(valid_call(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', th.LONE,
                                     dict_sv({'Bind': False})), ctx, 'attach devices'),
            polkit_refusal(valid_call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', nvme), MANAGE,
                           'get-hot-reset-info', ctx),
            polkit_refusal(valid_call(ctx, CONTEXT_IFACE, 'Release'), MANAGE, 'release', ctx),
            UCase.like(valid_call(ctx, CONTEXT_IFACE, 'Adopt'), ERR_ACCESS_DENIED, (ctx, 'only its uid may adopt')),
            owner_refusal(valid_call(ctx, CONTEXT_IFACE, 'OpenIommufd'), ctx, 'open the iommufd'),
        ]
        for method in ('DetachDevice', 'OpenDevice', 'ReopenDevice', 'HotReset', 'ResetDevice'):
            cases.append(owner_refusal(valid_call(ctx, CONTEXT_IFACE, method, 's', nvme), ctx, OWNER_ONLY[method]))
        # Reading stays open to everyone (org.hotresetd.query is yes).
        cases += [
            valid_call(device_path(nvme), harness.DEVICE_IFACE, 'CheckHotReset').ok(
                lambda r: len(r) == 2 and isinstance(r[0], bool) and nvme in [e[0] for e in r[1]]),
            valid_call(ROOT_PATH, MANAGER_IFACE, 'ListContexts').ok(
                lambda r: sorted(c[0] for c in r[0]) == contexts1),
        ]
        cases += log_control_cases(self.conn)
        n = self.attack(cases, 'no polkit rule')
        self.assertBaseline(contexts1, holders1, fds1, 'after the refused hostile calls')
        self.assertNotIn('authorizes', self.daemon.log())

        self.call(ctx, CONTEXT_IFACE, 'Release')
        self.assertBaseline(contexts0, holders0, fds0, 'after the release of root\'s context')
        harness.log(f'{self.backend()}: {n} hostile calls by an unprivileged caller answered precisely '
                    f'({len(covered)} methods)')


class GrantedHostileTests(UnprivilegedHostileTests):
    """A rule grants the caller every hotresetd action: it attacks a
    context of its own, and gets what root gets."""
    POLKIT_RULES = {'10-hotresetd-hostile.rules': GRANT_RULES}

    def test_hostile_calls_granted(self):
        fds0, contexts0, holders0 = self.fd_count(), self.contexts(), self.holders()
        nvme = th.NVME
        # The caller's own persistent context (it outlives the caller's
        # connections: each as_caller() is a new process), with NVME
        # attached through polkit; and one it released.
        setup = [valid_call(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}',
                            dict_sv({'Persistent': True, 'Description': 'hostile'})),
                 valid_call(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', dict_sv({'Persistent': True}))]
        answers = self.as_caller(setup)
        self.assertTrue(all(a['ok'] for _, a in answers), answers)
        ctx, released = (a['result'][0] for _, a in answers)
        answers = self.as_caller([valid_call(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', nvme, dict_sv({})),
                                  valid_call(released, CONTEXT_IFACE, 'Release')])
        self.assertTrue(all(a['ok'] for _, a in answers), answers)
        self.assertEqual(self.holders()[nvme], ctx)
        fds1, contexts1, holders1 = self.fd_count(), self.contexts(), self.holders()
        self.assertEqual(contexts1, sorted(contexts0 + [ctx]))

        root_cases, covered = self.cases(ctx, released)
        cases = [UCase.like(c) for c in root_cases]   # exactly root's answers
        cases += [
            # The state checks (before polkit here): the device is the caller's.
            UCase.like(valid_call(ROOT_PATH, MANAGER_IFACE, 'HotReset', 'sa{sv}', nvme, dict_sv({})), ERR_IN_USE,
                       (nvme, ctx)),
            valid_call(ctx, CONTEXT_IFACE, 'GetHotResetInfo', 's', nvme).ok(lambda r: [e[0] for e in r[1]] == [nvme]),
            # polkit says yes to these (so in the storm the bound on
            # pending checks may answer first).
            valid_call(ctx, CONTEXT_IFACE, 'OpenIommufd').ok(lambda r: r == [{'unix_fd': True}], polkit=True)
            if self.CDEV else
            UCase.like(valid_call(ctx, CONTEXT_IFACE, 'OpenIommufd'), ERR_UNSUPPORTED, (ctx, 'no iommufd'),
                       polkit=True),
            valid_call(ROOT_PATH, MANAGER_IFACE, 'Reload').ok(lambda r: r == [], polkit=True),
        ]
        cases += log_control_cases(self.conn)
        n = self.attack(cases, 'a rule granting every action')
        self.assertBaseline(contexts1, holders1, fds1, 'after the granted hostile calls')

        answers = self.as_caller([valid_call(ctx, CONTEXT_IFACE, 'Release')])
        self.assertTrue(answers[0][1]['ok'], answers)
        self.assertBaseline(contexts0, holders0, fds0, 'after the caller released its context')
        harness.log(f'{self.backend()}: {n} hostile calls by a caller polkit allows answered as root\'s '
                    f'({len(covered)} methods)')


class CdevRefusedTest(RefusedHostileTests, LeaseTestCase):
    CDEV = True
    MACHINE = load_machine('leases.json', cdev=True)


class GroupRefusedTest(RefusedHostileTests, LeaseTestCase):
    CDEV = False
    MACHINE = load_machine('leases.json', cdev=False)


class CdevGrantedTest(GrantedHostileTests, LeaseTestCase):
    CDEV = True
    MACHINE = load_machine('leases.json', cdev=True)


class GroupGrantedTest(GrantedHostileTests, LeaseTestCase):
    CDEV = False
    MACHINE = load_machine('leases.json', cdev=False)


if __name__ == '__main__':
    harness.main()

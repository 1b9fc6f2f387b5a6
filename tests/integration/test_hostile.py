#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Hostile clients (issue 13), in the cdev and the legacy group model, on
tests/integration/data/leases.json: every method of every interface of
every kind of object the daemon serves (the manager, a device, a reset
domain, a context), enumerated from what the daemon introspects so that a
new method is attacked without editing this file, called with wrong
signatures, empty and 1 MiB strings, malformed and absent addresses,
options of wrong types and unknown options, on unknown and on released
context paths, and then all of it again as a storm of 2,000 pipelined
calls from 20 connections. Every answer must be the right error with a
message naming the problem (the address, the option, the path, the
signature). After it: the daemon's open files, its contexts and the
devices' holders are back to their baseline, its resident memory does not
grow from one round to the next, and Ping is still answered.

The calls are made in this process through python3-dbus (thousands of
busctl processes would take minutes)."""

import os
import re
import sys
import time
import xml.etree.ElementTree as ET

import dbus
import dbus.lowlevel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ADDRESS_FORM, BUS_NAME, ROOT_PATH, device_path  # noqa: E402
from contexts_util import (CONTEXT_IFACE, CONTEXT_PATH_PREFIX, ERR_INVALID_ARGS, ERR_NO_SUCH_DEVICE,  # noqa: E402
                           ERR_UNKNOWN_OBJECT, MANAGER_IFACE, LeaseTestCase, load_machine)

NVME = '0000:09:00.0'   # attached to the test's own context
LONE = '0000:0a:00.0'   # free: a call that wrongly succeeded would lease or reset it
ABSENT = 'ffff:ff:1f.7'  # well-formed, no such device

PEER_IFACE = 'org.freedesktop.DBus.Peer'
PROPS_IFACE = 'org.freedesktop.DBus.Properties'
INTROSPECT_IFACE = 'org.freedesktop.DBus.Introspectable'
OM_IFACE = 'org.freedesktop.DBus.ObjectManager'
STANDARD_IFACES = (PEER_IFACE, PROPS_IFACE, INTROSPECT_IFACE, OM_IFACE)

ERR_UNKNOWN_PROPERTY = 'org.freedesktop.DBus.Error.UnknownProperty'
ERR_UNKNOWN_INTERFACE = 'org.freedesktop.DBus.Error.UnknownInterface'
ERR_PROPERTY_READ_ONLY = 'org.freedesktop.DBus.Error.PropertyReadOnly'
ERR_LIMITS_EXCEEDED = 'org.freedesktop.DBus.Error.LimitsExceeded'

MIB = 1 << 20

# Strings for every string argument. Addresses: malformed ones must be
# InvalidArgs naming the expected form, ABSENT NoSuchDevice naming it.
BAD_STRINGS = [
    '',
    'x' * MIB,
    '0' * MIB,
    '0000:01:00.0\n',
    ABSENT,
    '-1:00.0',
    '01:00.0 ',
    ' 0000:01:00.0',
    '0000:01:00.8',
    '0000:01:20.0',
    '00000:01:00.0',
    '0000:01:00.0/../../x',
    '%s%s%n%n',
    '\u0660\u0660:\u0660\u0661.\u0660',
    '\U0001f642',
]

# The options the daemon defines and their types; every a{sv} argument
# gets each of them with a value of another type, and unknown ones.
OPTION_TYPES = {'Persistent': 'b', 'Pid': 'h', 'Description': 's', 'Bind': 'b'}
WRONG_VALUES = {
    'b': [dbus.String('yes'), dbus.UInt32(1), dbus.Array([True], signature='b')],
    'h': [dbus.String('12'), dbus.Int32(0), dbus.UInt32(4294967295)],
    's': [dbus.UInt32(5), dbus.Boolean(True), dbus.Array(['x'], signature='s'), dbus.ObjectPath('/x')],
}

# Context paths that name no context.
UNKNOWN_CONTEXTS = [CONTEXT_PATH_PREFIX + '0', CONTEXT_PATH_PREFIX + '4294967295',
                    CONTEXT_PATH_PREFIX + '18446744073709551616', CONTEXT_PATH_PREFIX + 'x',
                    CONTEXT_PATH_PREFIX + '1/2', CONTEXT_PATH_PREFIX + '0' * 4000]

STORM_CONNECTIONS = 20
STORM_PER_CONNECTION = 100   # under the bus's 128 pending replies per connection


def printable_prefix(s, n=40):
    """What an error message naming s must show of it: its first printable
    ASCII characters (the daemon shows the rest escaped or cut)."""
    m = re.match(r'[\x20-\x7e]*', s[:n])
    return m.group(0)


def introspect(conn, path):
    """{interface: {method: [(arg name, type)] of its in arguments}} as
    the daemon introspects path."""
    xml = conn.call_blocking(BUS_NAME, path, INTROSPECT_IFACE, 'Introspect', '', [], timeout=60)
    out = {}
    for iface in ET.fromstring(str(xml)).findall('interface'):
        methods = {}
        for m in iface.findall('method'):
            methods[m.get('name')] = [(a.get('name'), a.get('type')) for a in m.findall('arg')
                                      if a.get('direction', 'in') == 'in']
        out[iface.get('name')] = methods
    return out


def default_value(t):
    """A harmless value of type t for the arguments a case does not attack."""
    return {'s': dbus.String(LONE), 'u': dbus.UInt32(7), 'b': dbus.Boolean(False), 'i': dbus.Int32(-1),
            'v': dbus.String('x', variant_level=1), 'ay': dbus.ByteArray(b'\0\1'),
            'a{sv}': dbus.Dictionary({}, signature='sv'), 'as': dbus.Array([], signature='s'),
            'a{ss}': dbus.Dictionary({'Persistent': 'true'}, signature='ss')}[t]


class Case:
    """One hostile call and what it must be answered with: one of names
    (None: it may succeed, the check says with what), a message containing
    every substring."""

    def __init__(self, what, path, iface, method, sig, args, names, substrings=(), check_ok=None, costly=False):
        self.what = what
        self.path, self.iface, self.method, self.sig, self.args = path, iface, method, sig, args
        self.names = names if isinstance(names, tuple) else (names,)
        self.substrings = substrings
        self.check_ok = check_ok
        self.costly = costly

    def message(self):
        m = dbus.lowlevel.MethodCallMessage(destination=BUS_NAME, path=self.path, interface=self.iface,
                                            method=self.method)
        if self.sig:
            m.append(*self.args, signature=self.sig)
        return m

    def problem(self, reply=None, error=None, storm=False):
        """None if the answer is right, else what is wrong with it."""
        shown = f'{self.what}: {self.iface}.{self.method}({self.sig}) on {self.path[:80]}'
        if error is None:
            if self.check_ok and self.check_ok(reply):
                return None
            return f'{shown} succeeded ({repr(reply)[:200]}); expected {" or ".join(self.names)}'
        name, message = error.get_dbus_name(), error.get_dbus_message() or ''
        if storm and self.costly and name == ERR_LIMITS_EXCEEDED and 'at most' in message:
            return None  # the fair read queue refusing a flood: precise too
        if name not in self.names:
            return f'{shown}: got {name} ({message[:300]!r}), expected {" or ".join(self.names)}'
        if not message.strip():
            return f'{shown}: {name} without a message'
        for s in self.substrings:
            if s not in message:
                return f'{shown}: the {name} message {message[:300]!r} does not name {s[:60]!r}'
        return None


def wrong_signature_cases(path, iface, method, in_args):
    expected = ''.join(t for _, t in in_args)
    costly = (iface, method) in ((OM_IFACE, 'GetManagedObjects'), (MANAGER_IFACE, 'ListDevices'))
    for sig in ('', 'u', expected + 's', 'ay', 'a{sv}', 'a{ss}', 'v'):
        if sig == expected:
            continue
        args = [default_value(t) for t in [str(t) for t in dbus.Signature(sig)]]
        what = f'signature {sig!r} instead of {expected!r}'
        if iface == PEER_IFACE:
            # sd-bus answers Peer itself and ignores the arguments: an
            # answer, and the right one, is all that can be asked.
            ok = (lambda r: r == []) if method == 'Ping' else \
                (lambda r: len(r) == 1 and re.fullmatch('[0-9a-f]{32}', str(r[0])) is not None)
            yield Case(what, path, iface, method, sig, args, ERR_INVALID_ARGS, check_ok=ok)
        elif iface == PROPS_IFACE and sig == expected + 's':
            # sd-bus reads the arguments Properties needs and ignores any
            # after them: the answer is the one to the first ones (here an
            # interface named LONE, which there is not).
            yield Case(what, path, iface, method, sig, args, (ERR_UNKNOWN_INTERFACE, ERR_UNKNOWN_PROPERTY), (LONE,))
        elif iface in STANDARD_IFACES:
            # sd-bus's own words ("Expected no parameters", "Expected
            # interface and member parameters").
            yield Case(what, path, iface, method, sig, args, ERR_INVALID_ARGS, ('Expected',), costly=costly)
        else:
            yield Case(what, path, iface, method, sig, args, ERR_INVALID_ARGS,
                       (f'{iface}.{method}()', f"expecting '{expected}'"), costly=costly)


def string_cases(path, iface, method, in_args, interfaces):
    for i, (name, t) in enumerate(in_args):
        if t != 's':
            continue
        for bad in BAD_STRINGS:
            args = [default_value(tt) for _, tt in in_args]
            sig = ''.join(tt for _, tt in in_args)
            if iface == PROPS_IFACE:
                # Valid neighbours: a real interface of the object, and a
                # real property for Set.
                real_iface = next(x for x in interfaces if x not in STANDARD_IFACES)
                args[0] = dbus.String(real_iface)
                if method in ('Get', 'Set'):
                    args[1] = dbus.String('Version' if real_iface == MANAGER_IFACE else 'Devices'
                                          if real_iface == CONTEXT_IFACE else 'Members'
                                          if real_iface.endswith('ResetDomain') else 'Driver')
            args[i] = dbus.String(bad)
            what = f'argument {name} = {bad[:30]!r}' + (f' ({len(bad)} chars)' if len(bad) > 30 else '')
            if name == 'address':
                if bad == ABSENT:
                    yield Case(what, path, iface, method, sig, args, ERR_NO_SUCH_DEVICE, (ABSENT,))
                else:
                    shown = printable_prefix(bad)
                    yield Case(what, path, iface, method, sig, args, ERR_INVALID_ARGS,
                               (ADDRESS_FORM, f"'{shown}"))
            elif iface == PROPS_IFACE and method == 'GetAll' and bad == '':
                # The empty interface name asks for every interface (the
                # D-Bus specification).
                yield Case(what, path, iface, method, sig, args, (),
                           check_ok=lambda r: len(r) == 1 and len(r[0]) > 0)
            elif iface == PROPS_IFACE and name == 'interface_name':
                yield Case(what, path, iface, method, sig, args, (ERR_UNKNOWN_INTERFACE, ERR_UNKNOWN_PROPERTY),
                           (bad[:40],))
            elif iface == PROPS_IFACE and name == 'property_name':
                yield Case(what, path, iface, method, sig, args, ERR_UNKNOWN_PROPERTY, (bad[:40],))
            else:
                raise AssertionError(f'no expectation for string argument {name} of {iface}.{method}: '
                                     'add one to test_hostile.py')


def option_cases(path, iface, method, in_args, defined):
    """Wrong types for the options the method defines (defined: their
    names), unknown options for the rest."""
    for i, (name, t) in enumerate(in_args):
        if t != 'a{sv}':
            continue
        sig = ''.join(tt for _, tt in in_args)
        options = []
        for key, kt in OPTION_TYPES.items():
            if key in defined:
                options += [(key, v, ERR_INVALID_ARGS) for v in WRONG_VALUES[kt]]
            else:
                options.append((key, dbus.Boolean(True), ERR_INVALID_ARGS))  # unknown here
        options += [('Nope', dbus.Boolean(True), ERR_INVALID_ARGS), ('', dbus.String(''), ERR_INVALID_ARGS),
                    ('persistent', dbus.Boolean(True), ERR_INVALID_ARGS)]
        if 'Description' in defined:
            options.append(('Description', dbus.String('d' * MIB), ERR_INVALID_ARGS))
        for key, value, err in options:
            args = [default_value(tt) for _, tt in in_args]
            args[i] = dbus.Dictionary({key: value}, signature='sv')
            what = f'option {key!r} = {type(value).__name__}'
            # The message names the option: 'Key' (the 1 MiB Description:
            # "Description is N bytes long").
            named = 'Description' if isinstance(value, dbus.String) and len(value) == MIB else f"'{key}'"
            yield Case(what, path, iface, method, sig, args, err, (named,))


def missing_object_cases(path, interfaces, what):
    """Every method of a context's interfaces on a path where there is none."""
    for iface, methods in interfaces.items():
        if iface in (PEER_IFACE, INTROSPECT_IFACE):
            continue  # sd-bus answers these for any path
        for method, in_args in methods.items():
            sig = ''.join(t for _, t in in_args)
            args = [default_value(t) for _, t in in_args]
            if iface == PROPS_IFACE:
                args[0] = dbus.String(CONTEXT_IFACE)
                if method in ('Get', 'Set'):
                    args[1] = dbus.String('Devices')
            yield Case(what, path, iface, method, sig, args, ERR_UNKNOWN_OBJECT, (f"'{path}'",))


# Which options each method with an a{sv} argument defines (the API's
# contract, dbus/org.hotresetd.Broker1.xml); a method missing here fails
# the test until it is added.
DEFINED_OPTIONS = {
    (MANAGER_IFACE, 'CreateContext'): ('Persistent', 'Pid', 'Description'),
    (MANAGER_IFACE, 'HotReset'): (),
    (CONTEXT_IFACE, 'AttachDevice'): ('Bind',),
}


class HostileTests:
    """Model-independent: CDEV and MACHINE come from the subclass."""

    DAEMON_ENV = {
        # In the ASan build, freed 1 MiB arguments would sit in ASan's
        # quarantine (256 MiB by default) and look like growth; keep it
        # small so that resident memory says what the daemon keeps.
        'ASAN_OPTIONS': (os.environ.get('ASAN_OPTIONS', '') + ':quarantine_size_mb=8').lstrip(':'),
    }

    def setUp(self):
        super().setUp()
        self.conn = dbus.bus.BusConnection(self.env.bus.address)

    def tearDown(self):
        self.conn.close()
        super().tearDown()

    def call(self, path, iface, method, sig='', *args):
        return self.conn.call_blocking(BUS_NAME, path, iface, method, sig, list(args), timeout=60 * harness.TIMEOUT_SCALE)

    def rss_kib(self):
        with open(f'/proc/{self.daemon.proc.pid}/status') as f:
            return int(re.search(r'^VmRSS:\s+(\d+) kB', f.read(), re.M).group(1))

    def contexts(self):
        return sorted(str(c[0]) for c in self.call(ROOT_PATH, MANAGER_IFACE, 'ListContexts'))

    def holders(self):
        return {str(a): str(self.call(str(p), PROPS_IFACE, 'Get', 'ss', harness.DEVICE_IFACE, 'Context'))
                for a, _, _, p in self.call(ROOT_PATH, MANAGER_IFACE, 'ListDevices')}

    def cases(self, ctx, released):
        """Every hostile call of one round."""
        domain = str(self.call(device_path(NVME), PROPS_IFACE, 'Get', 'ss', harness.DEVICE_IFACE, 'ResetDomain'))
        objects = {'manager': ROOT_PATH, 'device': device_path(NVME), 'domain': domain, 'context': ctx}
        covered = set()
        cases = []
        for kind, path in objects.items():
            interfaces = introspect(self.conn, path)
            self.assertIn(PEER_IFACE, interfaces, f'{kind} {path}')
            for iface, methods in interfaces.items():
                for method, in_args in methods.items():
                    covered.add((kind, iface, method))
                    cases += wrong_signature_cases(path, iface, method, in_args)
                    cases += string_cases(path, iface, method, in_args, interfaces)
                    if any(t == 'a{sv}' for _, t in in_args):
                        self.assertIn((iface, method), DEFINED_OPTIONS,
                                      f'{iface}.{method} takes options: say in DEFINED_OPTIONS which it defines')
                        cases += option_cases(path, iface, method, in_args, DEFINED_OPTIONS[(iface, method)])
            if kind == 'context':
                for p in UNKNOWN_CONTEXTS:
                    cases += missing_object_cases(p, interfaces, 'unknown context')
                cases += missing_object_cases(released, interfaces, 'released context')
        # Every method of the API file is among them: introspection did
        # not hide one.
        with open(os.path.join(harness.SOURCE_ROOT, 'dbus', 'org.hotresetd.Broker1.xml')) as f:
            api = ET.fromstring(f.read())
        for iface in api.findall('interface'):
            for m in iface.findall('method'):
                self.assertTrue(any(i == iface.get('name') and n == m.get('name') for _, i, n in covered),
                                f'{iface.get("name")}.{m.get("name")} was not attacked')
        return cases, covered

    def run_round(self, cases):
        problems = []
        for c in cases:
            try:
                reply = self.conn.send_message_with_reply_and_block(c.message(), 60 * harness.TIMEOUT_SCALE)
                p = c.problem(reply=reply.get_args_list())
            except dbus.exceptions.DBusException as e:
                p = c.problem(error=e)
            if p:
                problems.append(p)
        return problems

    def storm(self, cases):
        """2,000 calls at once: STORM_CONNECTIONS connections, each with
        STORM_PER_CONNECTION calls in flight, answers collected after
        everything is sent. The 1 MiB cases are left out (2 GiB through
        the bus would test the bus)."""
        small = [c for c in cases if len(str(c.args)) < 10000]
        conns = [dbus.bus.BusConnection(self.env.bus.address) for _ in range(STORM_CONNECTIONS)]
        answers = []
        t0 = time.monotonic()
        try:
            pending = []
            k = 0
            for conn in conns:
                for _ in range(STORM_PER_CONNECTION):
                    c = small[k % len(small)]
                    k += 1
                    slot = [c, None]
                    answers.append(slot)
                    pending.append(conn.send_message_with_reply(
                        c.message(), (lambda s: lambda m: s.__setitem__(1, m))(slot),
                        60 * harness.TIMEOUT_SCALE, require_main_loop=False))
            for p in pending:
                p.block()
        finally:
            for conn in conns:
                conn.close()
        elapsed = time.monotonic() - t0
        problems = []
        for c, m in answers:
            if m is None:
                problems.append(f'storm: no answer to {c.what}: {c.iface}.{c.method}')
            elif m.get_type() == dbus.lowlevel.MESSAGE_TYPE_ERROR:
                args = m.get_args_list()
                p = c.problem(error=dbus.exceptions.DBusException(str(args[0]) if args else '',
                                                                   name=m.get_error_name()), storm=True)
                if p:
                    problems.append('storm: ' + p)
            else:
                p = c.problem(reply=m.get_args_list(), storm=True)
                if p:
                    problems.append('storm: ' + p)
        return len(answers), elapsed, problems

    def test_hostile_calls(self):
        fds0 = self.fd_count()
        contexts0 = self.contexts()
        holders0 = self.holders()
        rss0 = self.rss_kib()

        ctx = str(self.call(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', {'Description': 'hostile'}))
        self.call(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', NVME, {})
        released = str(self.call(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', {}))
        self.call(released, CONTEXT_IFACE, 'Release')
        fds1 = self.fd_count()
        holders1 = self.holders()
        contexts1 = self.contexts()
        self.assertEqual(contexts1, sorted(contexts0 + [ctx]))

        cases, covered = self.cases(ctx, released)
        rss = []
        total = 0
        for round_ in range(3):
            t0 = time.monotonic()
            problems = self.run_round(cases)
            self.assertEqual(problems, [], f'round {round_ + 1}: {len(problems)} wrong answers')
            n, storm_time, problems = self.storm(cases)
            self.assertEqual(problems, [], f'round {round_ + 1}: {len(problems)} wrong answers in the storm')
            self.assertEqual(n, STORM_CONNECTIONS * STORM_PER_CONNECTION)
            total += len(cases) + n
            # Nothing was leased, released, opened or reset by any of it.
            self.assertEqual(self.contexts(), contexts1)
            self.assertEqual(self.holders(), holders1)
            self.assertFdCount(fds1, f'after round {round_ + 1}')
            self.assertEqual(self.call(ROOT_PATH, PEER_IFACE, 'Ping'), None)
            rss.append(self.rss_kib())
            harness.log(f'{self.backend()}: round {round_ + 1}: {len(cases)} hostile calls over '
                        f'{len(covered)} methods in {time.monotonic() - t0 - storm_time:.1f} s, '
                        f'a storm of {n} in {storm_time:.1f} s; daemon RSS {rss[-1]} KiB '
                        f'(at the start {rss0} KiB)')
        # The first round grows the heap to what such calls need; the
        # rounds after it must not (each passes the daemon about 60 1 MiB
        # arguments: keeping any of them would show many times over).
        big = sum(1 for c in cases for a in c.args if len(str(a)) >= MIB or
                  any(len(str(v)) >= MIB for v in getattr(a, 'values', lambda: ())()))
        self.assertGreater(big, 8)
        self.assertLess(rss[2] - rss[0], 8 * 1024, f'resident memory over the rounds, KiB: {rss0} -> {rss} '
                        f'({big} arguments of 1 MiB a round)')
        self.assertDaemonRunning()

        self.call(ctx, CONTEXT_IFACE, 'Release')
        self.assertEqual(self.contexts(), contexts0)
        self.assertEqual(self.holders(), holders0)
        self.assertFdCount(fds0, 'after the hostile calls and the release of the context')
        self.assertEqual(self.call(ROOT_PATH, PEER_IFACE, 'Ping'), None)
        harness.log(f'{self.backend()}: {total} hostile calls answered precisely')


class CdevHostileTest(HostileTests, LeaseTestCase):
    CDEV = True
    MACHINE = load_machine('leases.json', cdev=True)


class GroupHostileTest(HostileTests, LeaseTestCase):
    CDEV = False
    MACHINE = load_machine('leases.json', cdev=False)


if __name__ == '__main__':
    harness.main()

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The unprivileged side of test_hostile_unprivileged.py: a caller that the
test runs as another user (setpriv, no capabilities) because python3-dbus
in the test process runs as root. It reads one JSON request on stdin,

    {"mode": "sequential" | "storm", "connections": N, "per_connection": M,
     "cases": [{"path", "iface", "method", "sig", "args": [encoded]}]}

makes the calls on the bus in $DBUS_SYSTEM_BUS_ADDRESS (sequential: one
after the other on one connection; storm: N connections with M calls each
in flight, cycling through the cases, answers collected after everything
is sent) and writes one JSON answer on stdout:

    {"uid", "gid", "groups", "caps": {CapEff, CapPrm, CapInh, CapAmb},
     "answers": [{"case": i, "ok": true, "result": ...} |
                 {"case": i, "ok": false, "error": name, "message": text} |
                 {"case": i, "none": true}]}

The arguments travel typed (encode()/decode(), shared with the test), so
that a variant holding an array of booleans arrives as exactly that."""

import json
import os
import sys

import dbus
import dbus.lowlevel

BUS_NAME = 'org.hotresetd.Broker1'

_BASIC = {'y': dbus.Byte, 'b': dbus.Boolean, 'n': dbus.Int16, 'q': dbus.UInt16, 'i': dbus.Int32,
          'u': dbus.UInt32, 'x': dbus.Int64, 't': dbus.UInt64, 'd': dbus.Double, 's': dbus.String,
          'o': dbus.ObjectPath, 'g': dbus.Signature}


def types_of(sig):
    return [str(t) for t in dbus.Signature(sig)]


def signature_of(v):
    """The D-Bus type a python3-dbus value is sent as in a variant."""
    # Boolean before the integers (it is one of them to Python).
    for t, cls in (('b', dbus.Boolean), ('y', dbus.Byte), ('n', dbus.Int16), ('q', dbus.UInt16),
                   ('i', dbus.Int32), ('u', dbus.UInt32), ('x', dbus.Int64), ('t', dbus.UInt64),
                   ('d', dbus.Double), ('o', dbus.ObjectPath), ('g', dbus.Signature), ('s', dbus.String)):
        if isinstance(v, cls):
            return t
    if isinstance(v, dbus.ByteArray):
        return 'ay'
    if isinstance(v, dbus.Dictionary):
        return 'a{' + v.signature + '}'
    if isinstance(v, dbus.Array):
        return 'a' + v.signature
    if isinstance(v, dbus.Struct):
        return '(' + v.signature + ')'
    if isinstance(v, bool):
        return 'b'
    if isinstance(v, int):
        return 'i'
    if isinstance(v, str):
        return 's'
    raise TypeError(f'no D-Bus type for {type(v).__name__}')


def encode(v, t):
    """v (a python3-dbus value of type t) as JSON."""
    if t == 'v':
        inner = signature_of(v)
        return {'t': inner, 'v': encode(v, inner)}
    if t == 'ay':
        return list(bytes(v))
    if t.startswith('a{'):
        kt, vt = types_of(t[2:-1])
        return [[encode(k, kt), encode(x, vt)] for k, x in v.items()]
    if t.startswith('a'):
        return [encode(x, t[1:]) for x in v]
    if t.startswith('('):
        return [encode(x, xt) for x, xt in zip(v, types_of(t[1:-1]))]
    if t == 'b':
        return bool(v)
    if t in 'ynqiuxt':
        return int(v)
    if t == 'd':
        return float(v)
    return str(v)


def decode(j, t, variant_level=0):
    """encode()'s inverse: the python3-dbus value to send."""
    if t == 'v':
        return decode(j['v'], j['t'], variant_level=1)
    if t == 'ay':
        return dbus.ByteArray(bytes(j))
    if t.startswith('a{'):
        kt, vt = types_of(t[2:-1])
        return dbus.Dictionary({decode(k, kt): decode(x, vt) for k, x in j}, signature=t[2:-1],
                               variant_level=variant_level)
    if t.startswith('a'):
        return dbus.Array([decode(x, t[1:]) for x in j], signature=t[1:], variant_level=variant_level)
    if t.startswith('('):
        return dbus.Struct([decode(x, xt) for x, xt in zip(j, types_of(t[1:-1]))], signature=t[1:-1],
                           variant_level=variant_level)
    return _BASIC[t](j, variant_level=variant_level)


def plain(v):
    """A reply's value as JSON (files are closed: the test only needs to
    see that one came)."""
    if isinstance(v, dbus.types.UnixFd):
        os.close(v.take())
        return {'unix_fd': True}
    if isinstance(v, (dbus.ByteArray, bytes)):
        return list(bytes(v))
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dbus.Boolean):
        return bool(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    return str(v)


def message(case):
    m = dbus.lowlevel.MethodCallMessage(destination=BUS_NAME, path=case['path'], interface=case['iface'],
                                        method=case['method'])
    if case['sig']:
        m.append(*[decode(a, t) for a, t in zip(case['args'], types_of(case['sig']))], signature=case['sig'])
    return m


def answer(i, reply=None, error=None):
    if error is not None:
        return {'case': i, 'ok': False, 'error': error.get_dbus_name() or '', 'message': error.get_dbus_message() or ''}
    if reply.get_type() == dbus.lowlevel.MESSAGE_TYPE_ERROR:
        args = reply.get_args_list()
        return {'case': i, 'ok': False, 'error': reply.get_error_name() or '', 'message': str(args[0]) if args else ''}
    return {'case': i, 'ok': True, 'result': plain(reply.get_args_list())}


def sequential(address, cases, timeout):
    conn = dbus.bus.BusConnection(address)
    out = []
    try:
        for i, c in enumerate(cases):
            try:
                out.append(answer(i, reply=conn.send_message_with_reply_and_block(message(c), timeout)))
            except dbus.exceptions.DBusException as e:
                out.append(answer(i, error=e))
    finally:
        conn.close()
    return out


def storm(address, cases, timeout, connections, per_connection):
    conns = [dbus.bus.BusConnection(address) for _ in range(connections)]
    slots = []
    try:
        pending = []
        k = 0
        for conn in conns:
            for _ in range(per_connection):
                slot = [k % len(cases), None]
                k += 1
                slots.append(slot)
                pending.append(conn.send_message_with_reply(
                    message(cases[slot[0]]), (lambda s: lambda m: s.__setitem__(1, m))(slot), timeout,
                    require_main_loop=False))
        for p in pending:
            p.block()
    finally:
        for conn in conns:
            conn.close()
    return [{'case': i, 'none': True} if m is None else answer(i, reply=m) for i, m in slots]


def capabilities():
    caps = {}
    with open('/proc/self/status') as f:
        for line in f:
            key, _, value = line.partition(':')
            if key in ('CapEff', 'CapPrm', 'CapInh', 'CapAmb'):
                caps[key] = int(value.strip(), 16)
    return caps


def main():
    req = json.load(sys.stdin)
    address = os.environ['DBUS_SYSTEM_BUS_ADDRESS']
    timeout = float(req.get('timeout', 60))
    if req['mode'] == 'storm':
        answers = storm(address, req['cases'], timeout, req['connections'], req['per_connection'])
    else:
        answers = sequential(address, req['cases'], timeout)
    json.dump({'uid': os.geteuid(), 'ruid': os.getuid(), 'gid': os.getegid(), 'groups': os.getgroups(),
               'caps': capabilities(), 'answers': answers}, sys.stdout)
    return 0


if __name__ == '__main__':
    sys.exit(main())

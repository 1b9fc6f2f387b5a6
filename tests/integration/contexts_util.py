#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helpers for the lease and reset integration tests (test_contexts.py,
test_resets.py, test_context_lifetime.py), on top of harness.py.

Callers that must keep a bus connection (a non-persistent context lives as
long as its creator's connection; file descriptors come over SCM_RIGHTS)
are `Client`s: a child process running this file as
`python3 contexts_util.py client BUS_ADDRESS`, which speaks D-Bus itself
(a small wire-protocol implementation below: EXTERNAL authentication,
unix fd passing, the marshalling of every basic and container type) and
takes JSON requests on stdin. It can be killed with SIGKILL to play a
crashed VM manager, run as another user through setpriv, and it checks the
files it receives (fstat, /proc/self/fd). Only the Python standard library
is used, like harness.py.
"""

import copy
import json
import os
import re
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

BUS_NAME = 'org.hotresetd.Broker1'
ROOT_PATH = '/org/hotresetd/Broker1'
CONTEXT_PATH_PREFIX = ROOT_PATH + '/context/'
CONTEXT_PARENT = ROOT_PATH + '/context'
MANAGER_IFACE = 'org.hotresetd.Broker1.Manager'
DEVICE_IFACE = 'org.hotresetd.Broker1.Device'
CONTEXT_IFACE = 'org.hotresetd.Broker1.Context'
OM_IFACE = 'org.freedesktop.DBus.ObjectManager'
PROPS_IFACE = 'org.freedesktop.DBus.Properties'

ERR_PREFIX = 'org.hotresetd.Broker1.Error.'
ERR_NO_SUCH_DEVICE = ERR_PREFIX + 'NoSuchDevice'
ERR_NOT_OWNED = ERR_PREFIX + 'NotOwned'
ERR_NOT_IN_DEV_SET = ERR_PREFIX + 'NotInDevSet'
ERR_NO_RESET = ERR_PREFIX + 'NoResetMechanism'
ERR_BUSY = ERR_PREFIX + 'Busy'
ERR_UNSUPPORTED = ERR_PREFIX + 'Unsupported'
ERR_IN_USE = ERR_PREFIX + 'InUse'
ERR_GROUP_NOT_VIABLE = ERR_PREFIX + 'GroupNotViable'
ERR_NOT_ATTACHED = ERR_PREFIX + 'NotAttached'
ERR_INVALID_ARGS = 'org.freedesktop.DBus.Error.InvalidArgs'
ERR_ACCESS_DENIED = 'org.freedesktop.DBus.Error.AccessDenied'
ERR_UNKNOWN_OBJECT = 'org.freedesktop.DBus.Error.UnknownObject'
ERR_UNKNOWN_METHOD = 'org.freedesktop.DBus.Error.UnknownMethod'

DEVID_OWNED = 0
DEVID_NOT_OWNED = 0xffffffff
FLAG_DEV_ID = 1
FLAG_DEV_ID_OWNED = 2

NOBODY_UID = 65534
NOBODY_GID = 65534

DATA_DIR = os.path.join(HERE, 'data')

# ---------------------------------------------------------------------------
# The D-Bus wire protocol (client side), enough for the tests


class WireError(Exception):
    pass


_FIXED = {'y': ('B', 1), 'b': ('I', 4), 'n': ('h', 2), 'q': ('H', 2), 'i': ('i', 4), 'u': ('I', 4),
          'x': ('q', 8), 't': ('Q', 8), 'd': ('d', 8), 'h': ('I', 4)}
_ALIGN = {'y': 1, 'b': 4, 'n': 2, 'q': 2, 'i': 4, 'u': 4, 'x': 8, 't': 8, 'd': 8, 'h': 4,
          's': 4, 'o': 4, 'g': 1, 'a': 4, '(': 8, '{': 8, 'v': 1}


def type_end(sig, i):
    """The index just past the single complete type starting at sig[i]."""
    c = sig[i]
    if c == 'a':
        return type_end(sig, i + 1)
    if c in '({':
        close = ')' if c == '(' else '}'
        i += 1
        while sig[i] != close:
            i = type_end(sig, i)
        return i + 1
    if c in _ALIGN:
        return i + 1
    raise WireError(f'bad signature {sig!r} at {i}')


def split_types(sig):
    out, i = [], 0
    while i < len(sig):
        j = type_end(sig, i)
        out.append(sig[i:j])
        i = j
    return out


class Writer:
    """Marshals little-endian values. Variants are given as (signature, value);
    a{..} as dicts or lists of pairs; unix fds ('h') as indexes into the
    message's fd list."""

    def __init__(self, offset=0):
        self.buf = bytearray()
        self.offset = offset

    def align(self, n):
        while (len(self.buf) + self.offset) % n:
            self.buf.append(0)

    def put(self, t, v):
        c = t[0]
        if c in _FIXED:
            fmt, size = _FIXED[c]
            self.align(size)
            if c == 'b':
                v = 1 if v else 0
            self.buf += struct.pack('<' + fmt, v)
        elif c in 'so':
            b = v.encode()
            self.align(4)
            self.buf += struct.pack('<I', len(b)) + b + b'\0'
        elif c == 'g':
            b = v.encode()
            self.buf += struct.pack('<B', len(b)) + b + b'\0'
        elif c == 'v':
            sig, value = v
            self.put('g', sig)
            self.put(sig, value)
        elif c == 'a':
            elem = t[1:]
            self.align(4)
            at = len(self.buf)
            self.buf += b'\0\0\0\0'
            self.align(_ALIGN[elem[0]])
            start = len(self.buf)
            items = v.items() if isinstance(v, dict) else v
            for item in items:
                self.put(elem, item)
            struct.pack_into('<I', self.buf, at, len(self.buf) - start)
        elif c in '({':
            self.align(8)
            for sub, value in zip(split_types(t[1:-1]), v):
                self.put(sub, value)
        else:
            raise WireError(f'cannot marshal {t!r}')

    def put_all(self, sig, values):
        types = split_types(sig)
        if len(types) != len(values):
            raise WireError(f'signature {sig!r} needs {len(types)} values, got {len(values)}')
        for t, v in zip(types, values):
            self.put(t, v)


class Reader:
    def __init__(self, data, endian='<', offset=0):
        self.data = data
        self.pos = offset
        self.e = endian

    def align(self, n):
        self.pos = (self.pos + n - 1) // n * n

    def get(self, t):
        c = t[0]
        if c in _FIXED:
            fmt, size = _FIXED[c]
            self.align(size)
            (v,) = struct.unpack_from(self.e + fmt, self.data, self.pos)
            self.pos += size
            if c == 'b':
                return bool(v)
            if c == 'h':
                return UnixFdIndex(v)
            return v
        if c in 'so':
            self.align(4)
            (n,) = struct.unpack_from(self.e + 'I', self.data, self.pos)
            self.pos += 4
            s = bytes(self.data[self.pos:self.pos + n]).decode()
            self.pos += n + 1
            return s
        if c == 'g':
            n = self.data[self.pos]
            s = bytes(self.data[self.pos + 1:self.pos + 1 + n]).decode()
            self.pos += n + 2
            return s
        if c == 'v':
            sig = self.get('g')
            return Variant(sig, self.get(sig))
        if c == 'a':
            elem = t[1:]
            self.align(4)
            (n,) = struct.unpack_from(self.e + 'I', self.data, self.pos)
            self.pos += 4
            self.align(_ALIGN[elem[0]])
            end = self.pos + n
            items = []
            while self.pos < end:
                items.append(self.get(elem))
            if elem[0] == '{':
                return dict(items)
            return items
        if c == '(':
            self.align(8)
            return tuple(self.get(sub) for sub in split_types(t[1:-1]))
        if c == '{':
            self.align(8)
            k, v = split_types(t[1:-1])
            return (self.get(k), self.get(v))
        raise WireError(f'cannot unmarshal {t!r}')

    def get_all(self, sig):
        return [self.get(t) for t in split_types(sig)]


class UnixFdIndex(int):
    pass


class Variant:
    def __init__(self, sig, value):
        self.sig = sig
        self.value = value

    def __repr__(self):
        return f'Variant({self.sig!r}, {self.value!r})'


METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
F_PATH, F_INTERFACE, F_MEMBER, F_ERROR_NAME, F_REPLY_SERIAL, F_DESTINATION, F_SENDER, F_SIGNATURE, F_UNIX_FDS = \
    range(1, 10)


class Message:
    def __init__(self, mtype, serial, fields, body_sig, body, fds):
        self.type = mtype
        self.serial = serial
        self.fields = fields
        self.signature = body_sig
        self.body = body
        self.fds = fds


def _socket_path(address):
    for part in address.split(';'):
        if not part.startswith('unix:'):
            continue
        kv = dict(x.split('=', 1) for x in part[5:].split(',') if '=' in x)
        unescape = lambda s: re.sub(r'%([0-9a-fA-F]{2})', lambda m: chr(int(m.group(1), 16)), s)  # noqa: E731
        if 'path' in kv:
            return unescape(kv['path'])
        if 'abstract' in kv:
            return '\0' + unescape(kv['abstract'])
    raise WireError(f'no unix address in {address!r}')


class Connection:
    """One bus connection: authenticates with EXTERNAL, negotiates unix fd
    passing, says Hello. call() blocks for the reply; signals are dropped."""

    def __init__(self, address, timeout=60):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(_socket_path(address))
        self.serial = 0
        self.inbuf = bytearray()
        self.infds = []
        self._auth()
        self.unique_name = self.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                                     'Hello')[0]

    def _line(self):
        while b'\r\n' not in self.inbuf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise WireError('the bus closed the connection during authentication')
            self.inbuf += chunk
        i = self.inbuf.index(b'\r\n')
        line = bytes(self.inbuf[:i]).decode()
        del self.inbuf[:i + 2]
        return line

    def _auth(self):
        uid = str(os.geteuid()).encode().hex()
        self.sock.sendall(b'\0AUTH EXTERNAL ' + uid.encode() + b'\r\n')
        line = self._line()
        if not line.startswith('OK '):
            raise WireError(f'authentication refused: {line}')
        self.sock.sendall(b'NEGOTIATE_UNIX_FD\r\n')
        line = self._line()
        if line != 'AGREE_UNIX_FD':
            raise WireError(f'unix fd passing refused: {line}')
        self.sock.sendall(b'BEGIN\r\n')

    def send(self, mtype, fields, sig='', args=(), fds=(), flags=0):
        self.serial += 1
        body = Writer()
        if sig:
            body.put_all(sig, list(args))
        hfields = [(k, v) for k, v in fields]
        if sig:
            hfields.append((F_SIGNATURE, ('g', sig)))
        if fds:
            hfields.append((F_UNIX_FDS, ('u', len(fds))))
        head = Writer()
        head.put('y', ord('l'))
        head.put('y', mtype)
        head.put('y', flags)
        head.put('y', 1)
        head.put('u', len(body.buf))
        head.put('u', self.serial)
        head.put('a(yv)', hfields)
        head.align(8)
        data = bytes(head.buf + body.buf)
        if fds:
            self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f'{len(fds)}i', *fds))])
        else:
            self.sock.sendall(data)
        return self.serial

    def _fill(self):
        fdsize = struct.calcsize('i')
        data, anc, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(253 * fdsize))
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                n = len(payload) // fdsize
                self.infds.extend(struct.unpack(f'{n}i', payload[:n * fdsize]))
        if not data:
            raise WireError('the bus closed the connection')
        self.inbuf += data

    def read_message(self):
        while True:
            if len(self.inbuf) >= 16:
                endian = '<' if self.inbuf[0] == ord('l') else '>'
                body_len, _, fields_len = struct.unpack_from(endian + 'III', self.inbuf, 4)
                header_len = (16 + fields_len + 7) // 8 * 8
                total = header_len + body_len
                if len(self.inbuf) >= total:
                    data = bytes(self.inbuf[:total])
                    del self.inbuf[:total]
                    return self._parse(data, endian, header_len)
            self._fill()

    def _parse(self, data, endian, header_len):
        mtype = data[1]
        (serial,) = struct.unpack_from(endian + 'I', data, 8)
        r = Reader(data, endian, 12)
        fields = {k: v.value for k, v in r.get('a(yv)')}
        sig = fields.get(F_SIGNATURE, '')
        nfds = fields.get(F_UNIX_FDS, 0)
        fds, self.infds = self.infds[:nfds], self.infds[nfds:]
        # header_len is a multiple of 8: absolute alignment is body alignment.
        body = Reader(data, endian, header_len).get_all(sig) if sig else []
        return Message(mtype, serial, fields, sig, body, fds)

    def call(self, dest, path, iface, method, sig='', args=(), fds=()):
        """Returns the reply's body; raises RemoteError. Received fds are
        returned in self.last_fds (the body holds UnixFdIndex values)."""
        fields = [(F_PATH, ('o', path)), (F_MEMBER, ('s', method)), (F_DESTINATION, ('s', dest))]
        if iface:
            fields.append((F_INTERFACE, ('s', iface)))
        serial = self.send(METHOD_CALL, fields, sig, args, fds)
        while True:
            m = self.read_message()
            if m.fields.get(F_REPLY_SERIAL) != serial:
                for fd in m.fds:
                    os.close(fd)
                continue
            self.last_fds = m.fds
            if m.type == ERROR:
                msg = m.body[0] if m.body and isinstance(m.body[0], str) else ''
                raise RemoteError(m.fields.get(F_ERROR_NAME, ''), msg)
            return m.body

    def close(self):
        self.sock.close()


class RemoteError(Exception):
    def __init__(self, name, message):
        super().__init__(f'{name}: {message}')
        self.name = name
        self.message = message


# ---------------------------------------------------------------------------
# The client process (python3 contexts_util.py client ADDRESS)


def _from_json(t, v):
    """JSON request values to what Writer takes: a variant is [sig, value]."""
    c = t[0]
    if c == 'v':
        sig, value = v
        return (sig, _from_json(sig, value))
    if c == 'a':
        elem = t[1:]
        if elem[0] == '{':
            k, vt = split_types(elem[1:-1])
            return [(_from_json(k, kk), _from_json(vt, vv)) for kk, vv in v.items()]
        return [_from_json(elem, x) for x in v]
    if c in '({':
        return tuple(_from_json(s, x) for s, x in zip(split_types(t[1:-1]), v))
    return v


def _fd_info(fd):
    st = os.fstat(fd)
    return {'fd': fd, 'link': os.readlink(f'/proc/self/fd/{fd}'), 'mode': st.st_mode,
            'regular': stat.S_ISREG(st.st_mode), 'ino': st.st_ino, 'dev': st.st_dev}


def _to_json(v, fds):
    if isinstance(v, UnixFdIndex):
        return {'unix_fd': _fd_info(fds[v])}
    if isinstance(v, Variant):
        return _to_json(v.value, fds)
    if isinstance(v, dict):
        return {k: _to_json(x, fds) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_to_json(x, fds) for x in v]
    return v


def client_main(address):
    out = sys.stdout
    held = []

    def reply(obj):
        out.write(json.dumps(obj) + '\n')
        out.flush()

    try:
        conn = Connection(address)
    except Exception as e:  # noqa: BLE001
        reply({'hello': None, 'error': repr(e)})
        return 1
    reply({'hello': conn.unique_name, 'pid': os.getpid(), 'uid': os.geteuid()})
    for line in sys.stdin:
        req = json.loads(line)
        rid = req.get('id')
        op = req['op']
        if op == 'call':
            sig = req.get('sig', '')
            args = [_from_json(t, a) for t, a in zip(split_types(sig), req.get('args', []))]
            t0 = time.monotonic()
            try:
                body = conn.call(req.get('dest', BUS_NAME), req['path'], req.get('iface'), req['method'], sig, args)
                t1 = time.monotonic()
                held.extend(conn.last_fds)
                reply({'id': rid, 'ok': True, 'result': _to_json(body, conn.last_fds), 't0': t0, 't1': t1})
            except RemoteError as e:
                reply({'id': rid, 'ok': False, 'error': e.name, 'message': e.message, 't0': t0,
                       't1': time.monotonic()})
        elif op == 'fdinfo':
            try:
                reply({'id': rid, 'ok': True, 'result': _fd_info(req['fd'])})
            except OSError as e:
                reply({'id': rid, 'ok': False, 'error': 'OSError', 'message': str(e)})
        elif op == 'close_fds':
            for fd in held:
                os.close(fd)
            held.clear()
            reply({'id': rid, 'ok': True})
        elif op == 'exit':
            conn.close()
            reply({'id': rid, 'ok': True})
            return 0
        else:
            reply({'id': rid, 'ok': False, 'error': 'BadRequest', 'message': op})
    conn.close()
    return 0


# ---------------------------------------------------------------------------
# The test side


class Client:
    """A long-lived bus client in a child process. call() raises
    harness-style DBusError (name, message) for D-Bus errors. start() sends
    a call without waiting; result() collects it (a client handles its
    requests in order, one at a time)."""

    def __init__(self, env, name='client', user=None):
        self.env = env
        self.name = name
        self.log_path = os.path.join(env.tmpdir, f'{name}.log')
        python = sys.executable
        if user is not None and os.access('/usr/bin/python3', os.X_OK):
            python = '/usr/bin/python3'  # sys.executable may sit in root's home (pyenv)
        cmd = [python, os.path.abspath(__file__), 'client', env.bus.address]
        if user is not None:
            uid, gid = user
            cmd = ['setpriv', f'--reuid={uid}', f'--regid={gid}', '--clear-groups'] + cmd
        logf = open(self.log_path, 'w')
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logf,
                                     env=env.child_env(), text=True, bufsize=1)
        logf.close()
        self._next_id = 0
        self.replies = {}
        self.cond = threading.Condition()
        self.closed = False
        self.hello = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        with self.cond:
            if not self.cond.wait_for(lambda: self.hello is not None or self.closed, timeout=30 * _scale()):
                raise AssertionError(f'{name} did not connect:\n{self.log()}')
        if not self.hello or not self.hello.get('hello'):
            raise AssertionError(f'{name} could not connect: {self.hello}\n{self.log()}')
        self.unique_name = self.hello['hello']
        self.pid = self.hello['pid']

    def _read(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self.cond:
                if 'hello' in msg:
                    self.hello = msg
                else:
                    self.replies[msg['id']] = msg
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ''

    def _send(self, op, **kw):
        self._next_id += 1
        rid = self._next_id
        self.proc.stdin.write(json.dumps(dict(kw, op=op, id=rid)) + '\n')
        self.proc.stdin.flush()
        return rid

    def wait(self, rid, timeout=None):
        timeout = timeout or 60 * _scale()
        with self.cond:
            if not self.cond.wait_for(lambda: rid in self.replies or self.closed, timeout):
                raise AssertionError(f'{self.name}: no answer to request {rid} within {timeout} s')
            if rid not in self.replies:
                raise AssertionError(f'{self.name} exited before answering request {rid}:\n{self.log()}')
            return self.replies.pop(rid)

    def done(self, rid):
        with self.cond:
            return rid in self.replies

    def start(self, path, iface, method, sig='', *args, dest=BUS_NAME):
        return self._send('call', dest=dest, path=path, iface=iface, method=method, sig=sig, args=list(args))

    def result(self, rid, timeout=None):
        """The out arguments of a started call; raises DBusError."""
        r = self.wait(rid, timeout)
        if not r['ok']:
            raise harness.DBusError(r['error'], r['message'])
        return r['result']

    def call(self, path, iface, method, sig='', *args, dest=BUS_NAME, timeout=None):
        return self.result(self.start(path, iface, method, sig, *args, dest=dest), timeout)

    def call_timed(self, path, iface, method, sig='', *args):
        """The raw reply: ok, result or error/message, and the client's
        CLOCK_MONOTONIC before sending (t0) and at the reply (t1)."""
        return self.wait(self.start(path, iface, method, sig, *args))

    def error(self, path, iface, method, sig='', *args):
        """The D-Bus error a call fails with; AssertionError if it succeeds."""
        try:
            result = self.call(path, iface, method, sig, *args)
        except harness.DBusError as e:
            return e
        raise AssertionError(f'{method}{tuple(args)!r} on {path} succeeded ({result!r}); expected an error')

    def fdinfo(self, fd):
        r = self.wait(self._send('fdinfo', fd=fd))
        return r['result'] if r['ok'] else None

    def close_fds(self):
        self.wait(self._send('close_fds'))

    def exit(self):
        """Closes the connection the ordinary way and exits."""
        self.wait(self._send('exit'))
        self.proc.stdin.close()
        self.proc.wait(30 * _scale())

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        self.proc.wait(30 * _scale())

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.thread.join(5)
        if self.proc.stdout:
            self.proc.stdout.close()

    # --- context shortcuts (the client as the caller)

    def create_context(self, **options):
        """CreateContext; options as name=value (bool -> b, str -> s)."""
        return self.call(ROOT_PATH, MANAGER_IFACE, 'CreateContext', 'a{sv}', variant_dict(options))[0]

    def attach(self, ctx, address, **options):
        return self.call(ctx, CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', address, variant_dict(options))[0]


def _scale():
    return float(os.environ.get('HOTRESETD_TEST_TIMEOUT', '1') or '1')


def variant_dict(options):
    """{name: value} -> a{sv} as the client takes it; a value may be given as
    (signature, value) to force its type."""
    out = {}
    for k, v in options.items():
        if isinstance(v, tuple):
            out[k] = list(v)
        elif isinstance(v, bool):
            out[k] = ['b', v]
        elif isinstance(v, int):
            out[k] = ['u', v]
        else:
            out[k] = ['s', v]
    return out


def load_machine(name, cdev=None, reset_delay_ms=None):
    """tests/integration/data/NAME as a dict; cdev / reset_delay_ms override."""
    with open(os.path.join(DATA_DIR, name)) as f:
        machine = json.load(f)
    if cdev is not None:
        machine['cdev'] = cdev
    if reset_delay_ms is not None:
        machine['reset_delay_ms'] = reset_delay_ms
    return machine


def machine_copy(machine):
    return copy.deepcopy(machine)


def daemon_fd_count(pid):
    return len(os.listdir(f'/proc/{pid}/fd'))


def wait_fd_count(pid, expected, timeout=None):
    """Until the daemon has exactly `expected` open files; returns the count
    (which the caller asserts)."""
    deadline = time.monotonic() + (timeout or 15 * _scale())
    n = daemon_fd_count(pid)
    while n != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        n = daemon_fd_count(pid)
    return n


def fd_listing(pid):
    out = []
    for fd in sorted(os.listdir(f'/proc/{pid}/fd'), key=int):
        try:
            out.append(f'{fd} -> {os.readlink(f"/proc/{pid}/fd/{fd}")}')
        except OSError:
            pass
    return '\n'.join(out)


def allow_other_users(env):
    """Lets another uid reach the private bus socket (the test's temporary
    directory is 0700)."""
    os.chmod(env.tmpdir, 0o755)


def as_nobody(*args):
    return ['setpriv', f'--reuid={NOBODY_UID}', f'--regid={NOBODY_GID}', '--clear-groups'] + list(args)


def busctl_as_nobody(env, *args):
    cmd = as_nobody('busctl', '--system', '--json=short', f'--timeout={int(harness.CALL_TIMEOUT)}', '--',
                    *[str(a) for a in args])
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env.child_env(),
                          timeout=harness.CALL_TIMEOUT + 10, stdin=subprocess.DEVNULL)



# ---------------------------------------------------------------------------
# The test case base


def context_path_ok(path):
    return re.fullmatch(re.escape(CONTEXT_PATH_PREFIX) + r'[0-9]+', path) is not None


class LeaseTestCase(harness.HotresetdTestCase):
    """HotresetdTestCase with long-lived clients (closed before the bus
    stops) and helpers for contexts. CDEV says which model MACHINE is in."""

    CDEV = True
    MACHINE = None

    def setUp(self):
        self.clients = []
        super().setUp()

    def tearDown(self):
        for c in self.clients:
            try:
                c.close()
            except Exception as e:  # noqa: BLE001
                harness.log(f'closing {c.name}: {e!r}')
        super().tearDown()

    # --- callers

    def client(self, name=None, user=None):
        c = Client(self.env, name or f'client{len(self.clients) + 1}', user=user)
        self.clients.append(c)
        return c

    def busctl_call(self, path, iface, method, sig='', *args):
        return self.env.call(path, iface, method, sig, *args)[1]

    def busctl_error(self, path, iface, method, sig='', *args):
        """The message busctl prints for a call that must fail."""
        cmd = ['call', BUS_NAME, path, iface, method]
        if sig:
            cmd += [sig] + [str(a) for a in args]
        p = self.env.busctl(*cmd, check=False)
        self.assertNotEqual(p.returncode, 0, f'busctl {method} {args} succeeded: {p.stdout!r}')
        return p.stderr.decode(errors='replace')

    def persistent_context(self, description=None):
        """A persistent context made with busctl (a connection that is gone
        right after)."""
        if description is None:
            _, data = self.env.call_manager('CreateContext', 'a{sv}', 1, 'Persistent', 'b', 'true')
        else:
            _, data = self.env.call_manager('CreateContext', 'a{sv}', 2, 'Persistent', 'b', 'true',
                                            'Description', 's', description)
        return data[0]

    def assertError(self, err, names, *substrings):
        if isinstance(names, str):
            names = (names,)
        self.assertIn(err.name, names, f'{err.name}: {err.message}')
        for s in substrings:
            self.assertIn(s, err.message, f'{err.name}: the message does not name {s!r}')
        return err

    def expect(self, client, path, iface, method, sig, args, names, *substrings):
        """The call (by client) fails with one of names and a message naming
        every substring."""
        return self.assertError(client.error(path, iface, method, sig, *args), names, *substrings)

    # --- state

    def context_paths(self):
        """Contexts as GetManagedObjects lists them."""
        return sorted(p for p in self.env.managed_objects() if p.startswith(CONTEXT_PATH_PREFIX))

    def introspected_contexts(self):
        p = self.env.busctl('call', BUS_NAME, CONTEXT_PARENT, harness.INTROSPECT_IFACE, 'Introspect', check=False)
        if p.returncode != 0:
            return []
        xml = json.loads(p.stdout)['data'][0]
        return sorted(re.findall(r'<node name="([^"]+)"', xml))

    def assertNoContexts(self):
        self.assertEqual(self.context_paths(), [])
        self.assertEqual(self.introspected_contexts(), [])

    def ctx_props(self, path):
        return self.env.get_all(path, CONTEXT_IFACE)

    def ctx_devices(self, path):
        return self.env.get_property(path, CONTEXT_IFACE, 'Devices')

    def holder(self, address):
        return self.env.device_property(address, 'Context')

    def assertFdCount(self, expected, what=''):
        pid = self.daemon.proc.pid
        n = wait_fd_count(pid, expected)
        self.assertEqual(n, expected, f'daemon open files {what}:\n{fd_listing(pid)}')

    def fd_count(self):
        """The daemon's open files once it is idle: a baseline read while
        it briefly holds a file (a /proc read for a caller, say) would make
        a later, equal count look like a leak."""
        pid = self.daemon.proc.pid
        n = daemon_fd_count(pid)
        deadline = time.monotonic() + 2 * _scale()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            m = daemon_fd_count(pid)
            if m == n:
                return n
            n = m
        return n

    def backend(self):
        return 'emulated-iommufd' if self.CDEV else 'emulated-group'

if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == 'client':
        sys.exit(client_main(sys.argv[2]))
    print('usage: contexts_util.py client BUS_ADDRESS', file=sys.stderr)
    sys.exit(2)

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helpers for the lease and reset integration tests (test_contexts.py,
test_resets.py, test_context_lifetime.py, test_limits.py, test_domains.py,
test_authorization.py), on top of harness.py.

Callers that must keep a bus connection (a non-persistent context lives as
long as its creator's connection; file descriptors come over SCM_RIGHTS)
are `Client`s: a child process running this file as
`python3 contexts_util.py client BUS_ADDRESS`, which talks D-Bus through
python3-dbus (Debian's, for the system's /usr/bin/python3: the tests that
import this module are registered with it in meson.build) and takes JSON
requests on stdin. It can be killed with SIGKILL to play a crashed VM
manager, run as another user through setpriv, and it checks the files it
receives (fstat, /proc/self/fd).
"""

import copy
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time

import dbus
import dbus.lowlevel

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
# JSON requests to python3-dbus values and back


_BASIC = {'y': dbus.Byte, 'b': dbus.Boolean, 'n': dbus.Int16, 'q': dbus.UInt16, 'i': dbus.Int32,
          'u': dbus.UInt32, 'x': dbus.Int64, 't': dbus.UInt64, 'd': dbus.Double, 's': dbus.String,
          'o': dbus.ObjectPath, 'g': dbus.Signature, 'h': dbus.types.UnixFd}


def split_types(sig):
    """The complete types of a signature ('sa{sv}' -> ['s', 'a{sv}'])."""
    return [str(t) for t in dbus.Signature(sig)]


def to_dbus(t, v, variant_level=0):
    """A JSON request value as the python3-dbus value of type t, so that it
    is sent as exactly that type: a variant is [signature, value]."""
    kw = {'variant_level': variant_level} if variant_level else {}
    c = t[0]
    if c == 'v':
        sig, value = v
        return to_dbus(sig, value, variant_level + 1)
    if c == 'a':
        elem = t[1:]
        if elem[0] == '{':
            k, vt = split_types(elem[1:-1])
            return dbus.Dictionary({to_dbus(k, kk): to_dbus(vt, vv) for kk, vv in v.items()},
                                   signature=elem[1:-1], **kw)
        return dbus.Array([to_dbus(elem, x) for x in v], signature=elem, **kw)
    if c == '(':
        inner = t[1:-1]
        return dbus.Struct(tuple(to_dbus(s, x) for s, x in zip(split_types(inner), v)), signature=inner, **kw)
    return _BASIC[c](v, **kw)


def _fd_info(fd):
    st = os.fstat(fd)
    return {'fd': fd, 'link': os.readlink(f'/proc/self/fd/{fd}'), 'mode': st.st_mode,
            'regular': stat.S_ISREG(st.st_mode), 'ino': st.st_ino, 'dev': st.st_dev}


def from_dbus(v, fds):
    """A python3-dbus value as JSON; a received file is taken (kept open,
    appended to fds) and described."""
    if isinstance(v, dbus.types.UnixFd):
        fd = v.take()
        fds.append(fd)
        return {'unix_fd': _fd_info(fd)}
    if isinstance(v, dbus.Boolean):
        return bool(v)
    if isinstance(v, dict):
        return {from_dbus(k, fds): from_dbus(x, fds) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [from_dbus(x, fds) for x in v]
    if isinstance(v, str):
        return str(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, int):
        return int(v)
    return v


# ---------------------------------------------------------------------------
# The client process (python3 contexts_util.py client ADDRESS)


def client_main(address):
    out = sys.stdout
    held = []

    def reply(obj):
        out.write(json.dumps(obj) + '\n')
        out.flush()

    try:
        conn = dbus.bus.BusConnection(address)
    except Exception as e:  # noqa: BLE001
        reply({'hello': None, 'error': repr(e)})
        return 1
    reply({'hello': conn.get_unique_name(), 'pid': os.getpid(), 'uid': os.geteuid()})
    timeout = 120 * _scale()
    for line in sys.stdin:
        req = json.loads(line)
        rid = req.get('id')
        op = req['op']
        if op == 'call':
            sig = req.get('sig', '')
            t0 = time.monotonic()
            try:
                args = [to_dbus(t, a) for t, a in zip(split_types(sig), req.get('args', []))]
                msg = dbus.lowlevel.MethodCallMessage(destination=req.get('dest', BUS_NAME), path=req['path'],
                                                      interface=req.get('iface'), method=req['method'])
                if sig:
                    msg.append(*args, signature=sig)
                body = conn.send_message_with_reply_and_block(msg, timeout).get_args_list()
                t1 = time.monotonic()
                fds = []
                result = from_dbus(body, fds)
                held.extend(fds)
                reply({'id': rid, 'ok': True, 'result': result, 't0': t0, 't1': t1})
            except dbus.exceptions.DBusException as e:
                reply({'id': rid, 'ok': False, 'error': e.get_dbus_name() or '', 'message': e.get_dbus_message() or '',
                       't0': t0, 't1': time.monotonic()})
            except (TypeError, ValueError, OverflowError) as e:
                # A request this side cannot send (a value not of its type).
                reply({'id': rid, 'ok': False, 'error': 'ClientError', 'message': repr(e), 't0': t0,
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
        # python3-dbus is the system python's (sys.executable may be a
        # pyenv python in root's home, which other users cannot run either).
        python = '/usr/bin/python3' if os.access('/usr/bin/python3', os.X_OK) else sys.executable
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

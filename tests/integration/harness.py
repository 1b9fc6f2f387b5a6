# SPDX-License-Identifier: LGPL-2.1-or-later
"""Integration test harness for hotresetd.

Every integration test goes through this module: it makes a temporary
directory, writes a system-type dbus-daemon configuration and starts a
private bus, starts the real daemon (HOTRESETD_BIN) on an emulated machine
file with DBUS_SYSTEM_BUS_ADDRESS pointing at that bus, and talks to it the
way people do, with busctl (and dbus-send where the D-Bus error *name* is
needed: busctl prints only the message). A signal recorder runs
`busctl --json=short monitor` on the private bus.

Only the Python standard library is used.

Environment:
  HOTRESETD_BIN          the daemon binary (set by tests/integration/meson.build)
  HOTRESETD_VERSION      the expected version string (meson project version)
  HOTRESETD_SOURCE_ROOT  the source tree (examples/, dbus/)
  HOTRESETD_TEST_TIMEOUT multiplies every timeout (slow machines, sanitizers)
  HOTRESETD_TEST_KEEP    keep the temporary directory (prints its path)

Authorization (test_authorization.py): the bus can run a system-like
deny-by-default policy with the project's dbus/org.hotresetd.Broker1.conf
and polkit's own bus policy (SystemBusPolicy), the real polkitd can run on
it (Polkitd: inside `unshare --mount`, with a directory holding the
project's actions and the test's rules bind-mounted over polkit's), the
daemon reads a policy file written by the test (Env.write_config; every
daemon gets --config= of the test's own file, empty unless written, so the
machine's /etc/hotresetd never leaks in), and callers run as other users
(ensure_user + setpriv). Those need root, as CI runs the tests.
"""

import copy
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from xml.sax.saxutils import escape as xml_escape

BUS_NAME = 'org.hotresetd.Broker1'
ROOT_PATH = '/org/hotresetd/Broker1'
DEVICE_PATH_PREFIX = ROOT_PATH + '/device/'
DOMAIN_PATH_PREFIX = ROOT_PATH + '/domain/'
MANAGER_IFACE = 'org.hotresetd.Broker1.Manager'
DEVICE_IFACE = 'org.hotresetd.Broker1.Device'
DOMAIN_IFACE = 'org.hotresetd.Broker1.ResetDomain'
OM_IFACE = 'org.freedesktop.DBus.ObjectManager'
PROPS_IFACE = 'org.freedesktop.DBus.Properties'
INTROSPECT_IFACE = 'org.freedesktop.DBus.Introspectable'

ERR_NO_SUCH_DEVICE = 'org.hotresetd.Broker1.Error.NoSuchDevice'
ERR_INVALID_ARGS = 'org.freedesktop.DBus.Error.InvalidArgs'
ERR_UNKNOWN_OBJECT = 'org.freedesktop.DBus.Error.UnknownObject'

# The expected address form every InvalidArgs message must show.
ADDRESS_FORM = '0000:01:00.0'

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get('HOTRESETD_SOURCE_ROOT') or os.path.dirname(os.path.dirname(HERE))
EXAMPLES_DIR = os.path.join(SOURCE_ROOT, 'examples')
DATA_DIR = os.path.join(HERE, 'data')

TIMEOUT_SCALE = float(os.environ.get('HOTRESETD_TEST_TIMEOUT', '1') or '1')
START_TIMEOUT = 30 * TIMEOUT_SCALE
SIGNAL_TIMEOUT = 15 * TIMEOUT_SCALE
STOP_TIMEOUT = 20 * TIMEOUT_SCALE
CALL_TIMEOUT = 30 * TIMEOUT_SCALE

CDEV_RE = re.compile(r'^/dev/vfio/devices/vfio[0-9]+$')

# Markers of sanitizer reports in the daemon's log: any of them fails a test.
SANITIZER_MARKERS = ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer',
                     'runtime error:', 'ERROR: UndefinedBehaviorSanitizer',
                     'WARNING: ThreadSanitizer')


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def device_path(address):
    """Object path of a device, from its canonical address."""
    return DEVICE_PATH_PREFIX + 'pci_' + address.replace(':', '_').replace('.', '_')


def domain_path(bus, slot=None):
    """Object path of a reset domain: bus 'SSSS:BB' (a bus reset of it), with
    slot (an int) a reset of that slot of the bus."""
    path = DOMAIN_PATH_PREFIX + 'pci_' + bus.lower().replace(':', '_')
    return path if slot is None else path + f'_{slot:02x}'


def device_objects(objects):
    """The device objects of a GetManagedObjects answer (a dict by path)."""
    return {p: v for p, v in objects.items() if p.startswith(DEVICE_PATH_PREFIX)}


def domain_objects(objects):
    """The reset domain objects of a GetManagedObjects answer."""
    return {p: v for p, v in objects.items() if p.startswith(DOMAIN_PATH_PREFIX)}


def expected_reset_domains(machine):
    """{address: the object path its ResetDomain must name} for a machine
    (a dict as in a machine file), worked out from the file the way the
    README describes it: a device's parent is the bridge of its PCI segment
    whose secondary_bus is the device's bus; with none (a root bus) "/",
    else the slot's domain when that bridge resets slots, the bus's
    otherwise."""
    def split(address):
        if address.count(':') == 1:
            address = '0000:' + address
        seg, bus, rest = address.split(':')
        return seg.lower(), bus.lower(), int(rest.split('.')[0], 16)
    bridges = {}
    for d in machine['devices']:
        if 'bridge' in d:
            seg, _, _ = split(d['address'])
            bridges[(seg, d['bridge']['secondary_bus'])] = d['bridge']
    out = {}
    for d in machine['devices']:
        seg, bus, slot = split(d['address'])
        address = f'{seg}:{bus}:{d["address"].split(":")[-1].lower()}'
        parent = bridges.get((seg, int(bus, 16)))
        if parent is None:
            out[address] = '/'
        else:
            out[address] = domain_path(f'{seg}:{bus}', slot if parent.get('slot_reset') else None)
    return out


def daemon_binary():
    path = os.environ.get('HOTRESETD_BIN')
    if not path:
        for candidate in ('build/daemon/hotresetd',):
            p = os.path.join(SOURCE_ROOT, candidate)
            if os.access(p, os.X_OK):
                return p
        raise RuntimeError('HOTRESETD_BIN is not set (run the tests with `meson test`)')
    return path


def expected_version():
    v = os.environ.get('HOTRESETD_VERSION')
    if v:
        return v
    with open(os.path.join(SOURCE_ROOT, 'meson.build')) as f:
        m = re.search(r"version\s*:\s*'([^']+)'", f.read())
    return m.group(1)


def load_example(name):
    """The parsed JSON of examples/NAME (a fresh copy)."""
    with open(os.path.join(EXAMPLES_DIR, name)) as f:
        return json.load(f)


def find_device(machine, address):
    for d in machine['devices']:
        if d['address'] == address:
            return d
    raise KeyError(address)


def unwrap(value):
    """busctl JSON variant {"type": t, "data": d} -> d (recursively for a{sv})."""
    if isinstance(value, dict) and set(value.keys()) == {'type', 'data'}:
        return value['data']
    return value


def unwrap_dict(d):
    return {k: unwrap(v) for k, v in d.items()}


class CallError(AssertionError):
    pass


class DBusError(Exception):
    def __init__(self, name, message):
        super().__init__(f'{name}: {message}')
        self.name = name
        self.message = message


# ---------------------------------------------------------------------------
# The private system bus


PERMISSIVE_POLICY = '''
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
'''


# Deny by default, as Debian's /usr/share/dbus-1/system.conf: what may be
# sent to a service is what its own bus policy file allows (root may
# monitor, for the signal recorder).
SYSTEM_POLICY = '''
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.systemd1.Activator"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
'''

# polkit's own bus policy (it owns org.freedesktop.PolicyKit1 as the user
# polkitd, to which polkitd drops when started as root).
POLKIT_BUS_POLICY = '/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf'


def project_bus_policy():
    return os.path.join(SOURCE_ROOT, 'dbus', 'org.hotresetd.Broker1.conf')


def system_bus_kwargs():
    """TestBus arguments for the system-like bus: deny by default, the
    project's bus policy, polkit's."""
    includes = [project_bus_policy()]
    if os.path.exists(POLKIT_BUS_POLICY):
        includes.append(POLKIT_BUS_POLICY)
    return {'policy': SYSTEM_POLICY, 'includes': includes}


class TestBus:
    """A private dbus-daemon with a system-type configuration.

    policy: the <policy> XML; the default lets anyone own and call anything.
    A later tier passes the project's real policy instead (with `includes`,
    config files added through <include>) and a deny-by-default policy like
    Debian's system.conf.
    """

    def __init__(self, tmpdir, policy=PERMISSIVE_POLICY, includes=(), extra_config=''):
        self.tmpdir = tmpdir
        self.socket_path = os.path.join(tmpdir, 'system_bus_socket')
        self.config_path = os.path.join(tmpdir, 'system-bus.conf')
        self.log_path = os.path.join(tmpdir, 'dbus-daemon.log')
        self.policy = policy
        self.includes = list(includes)
        self.extra_config = extra_config
        self.proc = None
        self.address = None

    def write_config(self):
        includes = ''.join(f'  <include>{xml_escape(p)}</include>\n' for p in self.includes)
        text = f'''<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={xml_escape(self.socket_path)}</listen>
  <auth>EXTERNAL</auth>
{self.policy}
{includes}{self.extra_config}
</busconfig>
'''
        with open(self.config_path, 'w') as f:
            f.write(text)

    def start(self):
        self.write_config()
        logf = open(self.log_path, 'w')
        self.proc = subprocess.Popen(
            ['dbus-daemon', '--config-file=' + self.config_path, '--nofork', '--print-address'],
            stdout=subprocess.PIPE, stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()
        deadline = time.monotonic() + START_TIMEOUT
        line = b''
        while not line.endswith(b'\n'):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError('dbus-daemon did not print its address:\n' + self.log())
            r, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    raise RuntimeError('dbus-daemon exited:\n' + self.log())
                line += chunk
        self.address = line.decode().strip().splitlines()[0]
        return self.address

    def log(self):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()


# ---------------------------------------------------------------------------
# The daemon


def same_open_file(a, b):
    """Whether fds a and b are the same open file (kcmp KCMP_FILE, as
    systemd's same_fd() asks)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    pid = os.getpid()
    return libc.syscall(312, pid, pid, 0, a, b) == 0  # SYS_kcmp on x86-64, KCMP_FILE


class Daemon:
    """hotresetd --emulate=MACHINE, stdout and stderr in a log file, with a
    NOTIFY_SOCKET of our own to see READY=1."""

    def __init__(self, env, machine_path, args=(), name='hotresetd', extra_env=None, fd_store=None):
        self.env = env
        self.machine_path = machine_path
        self.args = list(args)
        self.extra_env = dict(extra_env or {})
        # As systemd's file descriptor store keeps them: [name, fd] in the
        # order they came (FDSTORE=1 with FDNAME=), passed to the next start
        # as LISTEN_FDS/LISTEN_FDNAMES (Env.restart_daemon).
        self.fd_store = list(fd_store or [])
        self.passed_fds = list(self.fd_store)
        self.log_path = os.path.join(env.tmpdir, name + '.log')
        self.notify_path = os.path.join(env.tmpdir, name + '.notify')
        self.proc = None
        self.notify_sock = None
        self.notifications = []
        self.returncode = None
        self.unique_name = None

    def command(self):
        cmd = [daemon_binary(), '--emulate=' + self.machine_path, '--log-level=debug']
        if not any(a.startswith('--config=') for a in self.args):
            cmd.append('--config=' + self.env.ensure_config())
        # HOTRESETD_TEST_WRAPPER runs the daemon under a tool, such as
        # "valgrind --error-exitcode=99 ..." (tools/run-tests.sh): the tool
        # execs the daemon in place (same pid, same signals), and the exit
        # status the teardown checks is the tool's, so its findings fail
        # the test.
        wrapper = shlex.split(os.environ.get('HOTRESETD_TEST_WRAPPER', ''))
        return wrapper + cmd + self.args

    def start(self):
        self.notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify_sock.bind(self.notify_path)
        self.notify_sock.setblocking(False)
        # Read all the time, as systemd does: sd_notify() blocks once the
        # socket's queue (net.unix.max_dgram_qlen, 10 datagrams) is full.
        self.notify_lock = threading.Lock()
        self.notify_stop = threading.Event()
        self.notify_thread = threading.Thread(target=self._notify_reader, daemon=True)
        self.notify_thread.start()
        env = self.env.child_env()
        env['NOTIFY_SOCKET'] = self.notify_path
        env.update(self.extra_env)
        logf = open(self.log_path, 'w')
        cmd = self.command()
        pass_fds = ()
        if self.passed_fds:
            # The files go to fds 3... in a wrapper that then execs the
            # daemon with the same pid, as systemd does (LISTEN_PID).
            pass_fds = [fd for _, fd in self.passed_fds]
            cmd = [sys.executable, os.path.join(HERE, 'listen-exec.py')] + \
                  [f'{name}={fd}' for name, fd in self.passed_fds] + ['--'] + cmd
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, env=env,
                                     pass_fds=pass_fds)
        logf.close()

    def _notify_reader(self):
        sock = self.notify_sock
        while not self.notify_stop.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], 0.1)
            except (OSError, ValueError):
                return
            if ready:
                self.poll_notify()

    def poll_notify(self):
        """Reads sd_notify messages, keeping FDSTORE=1 files as systemd's
        store would (FDSTOREREMOVE=1 closes every file of that name)."""
        if not self.notify_sock:
            return
        with self.notify_lock:
            self._poll_notify_locked()

    def _poll_notify_locked(self):
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.notify_sock, 4096, 64)
            except (BlockingIOError, OSError):
                return
            lines = data.decode(errors='replace').splitlines()
            self.notifications.extend(lines)
            fields = dict(line.split('=', 1) for line in lines if '=' in line)
            if fields.get('FDSTORE') == '1':
                for fd in fds:
                    # systemd keeps one open file once ("Suppressing
                    # duplicate fd"): so does the stand-in.
                    if any(same_open_file(fd, kept) for _, kept in self.fd_store):
                        os.close(fd)
                        continue
                    self.fd_store.append([fields.get('FDNAME', 'stored'), fd])
                fds = []
            if fields.get('FDSTOREREMOVE') == '1':
                for item in [i for i in self.fd_store if i[0] == fields.get('FDNAME')]:
                    os.close(item[1])
                    self.fd_store.remove(item)
            for fd in fds:
                os.close(fd)

    def stop_notify(self):
        """Reads what is left and stops listening (the socket is closed)."""
        if not self.notify_sock:
            return
        self.notify_stop.set()
        self.notify_thread.join()
        self.poll_notify()
        with self.notify_lock:
            self.notify_sock.close()
            self.notify_sock = None

    def stored_names(self):
        """The names in the file descriptor store now."""
        self.poll_notify()
        return sorted(name for name, _ in self.fd_store)

    def take_fd_store(self):
        self.poll_notify()
        with self.notify_lock:
            store, self.fd_store = self.fd_store, []
        return store

    def close_fd_store(self):
        for _, fd in self.fd_store:
            os.close(fd)
        self.fd_store = []

    def ready_seen(self):
        self.poll_notify()
        return 'READY=1' in self.notifications

    def wait_ready(self, timeout=None):
        """Until the daemon owns the bus name (and, if it does not exit,
        remember its unique name). Raises with the log if it exits first."""
        deadline = time.monotonic() + (timeout or START_TIMEOUT)
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f'hotresetd exited with {self.proc.returncode} before owning '
                                     f'{BUS_NAME}:\n{self.log()}')
            self.poll_notify()
            owner = self.env.name_owner(BUS_NAME)
            if owner:
                self.unique_name = owner
                return owner
            if time.monotonic() > deadline:
                raise AssertionError(f'hotresetd did not own {BUS_NAME} within the timeout:\n{self.log()}')
            time.sleep(0.02)

    def wait_exit(self, timeout=None):
        try:
            self.returncode = self.proc.wait(timeout or STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM):
        """Sends sig and waits; returns the exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            rc = self.wait_exit()
            if rc is None:
                self.proc.kill()
                self.proc.wait()
                self.returncode = None
                return None
        self.returncode = self.proc.returncode
        return self.returncode

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stop_notify()
        # The files passed at start are the store's (systemd keeps them
        # too): closed with it, by whoever has the store now.
        self.close_fd_store()
        self.passed_fds = []

    def log(self):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def wait_log(self, substring, timeout=None):
        """Until the log contains substring; returns the log."""
        deadline = time.monotonic() + (timeout or SIGNAL_TIMEOUT)
        while True:
            text = self.log()
            if substring in text:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f'daemon log does not contain {substring!r} within the timeout:\n{text}')
            time.sleep(0.05)

    def reload(self):
        """SIGHUP: the daemon reads its policy file again."""
        self.proc.send_signal(signal.SIGHUP)

    def sanitizer_reports(self):
        text = self.log()
        return [m for m in SANITIZER_MARKERS if m in text]


# ---------------------------------------------------------------------------
# polkit


POLKITD = '/usr/lib/polkit-1/polkitd'
POLKIT_NAME = 'org.freedesktop.PolicyKit1'
POLKIT_ACTIONS_DIR = '/usr/share/polkit-1/actions'
POLKIT_RULES_DIRS = ('/etc/polkit-1/rules.d', '/usr/share/polkit-1/rules.d')


def project_polkit_actions():
    return os.path.join(SOURCE_ROOT, 'policy', 'org.hotresetd.policy')


def polkit_missing():
    """Why the real polkitd cannot run here, or None."""
    if os.geteuid() != 0:
        return 'needs root (unshare --mount, bind mounts, setpriv, test users)'
    for tool in ('unshare', 'setpriv', 'mount'):
        if not shutil.which(tool):
            return f'{tool} is not installed (util-linux)'
    if not os.access(POLKITD, os.X_OK):
        return f'{POLKITD} is not installed (package polkitd)'
    for d in (POLKIT_ACTIONS_DIR,) + POLKIT_RULES_DIRS:
        if not os.path.isdir(d):
            return f'{d} does not exist'
    return None


class Polkitd:
    """The real polkitd on the test's bus, in a private mount namespace
    where a directory of the test (the project's actions, and only them)
    is bind-mounted over /usr/share/polkit-1/actions, and the test's rules
    over /etc/polkit-1/rules.d (an empty directory over
    /usr/share/polkit-1/rules.d, so the distribution's rules stay out).
    polkitd drops to its own user; the directories are world-readable.

    rules: {file name: JavaScript}; actions: extra {file name: XML}."""

    def __init__(self, env, rules=None, actions=None):
        self.env = env
        self.root = os.path.join(env.tmpdir, 'polkit')
        self.actions_dir = os.path.join(self.root, 'actions')
        self.rules_dir = os.path.join(self.root, 'rules.d')
        self.empty_dir = os.path.join(self.root, 'empty')
        self.log_path = os.path.join(env.tmpdir, 'polkitd.log')
        self.rules = dict(rules or {})
        self.actions = dict(actions or {})
        self.proc = None
        self.paused = False

    def _write(self, path, text):
        with open(path, 'w') as f:
            f.write(textwrap.dedent(text))
        os.chmod(path, 0o644)

    def start(self):
        for d in (self.root, self.actions_dir, self.rules_dir, self.empty_dir):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        shutil.copy(project_polkit_actions(), self.actions_dir)
        os.chmod(os.path.join(self.actions_dir, os.path.basename(project_polkit_actions())), 0o644)
        for name, text in self.actions.items():
            self._write(os.path.join(self.actions_dir, name), text)
        for name, text in self.rules.items():
            self._write(os.path.join(self.rules_dir, name), text)
        script = ('set -e; mount --make-rprivate /; '
                  f'mount --bind "$1" {POLKIT_ACTIONS_DIR}; '
                  f'mount --bind "$2" {POLKIT_RULES_DIRS[0]}; '
                  f'mount --bind "$3" {POLKIT_RULES_DIRS[1]}; '
                  f'exec {POLKITD}')
        logf = open(self.log_path, 'w')
        # unshare without --fork and sh's exec: the process is polkitd, so
        # its pid is the one to stop, continue and kill.
        self.proc = subprocess.Popen(['unshare', '--mount', '--', 'sh', '-c', script, 'polkitd',
                                      self.actions_dir, self.rules_dir, self.empty_dir],
                                     stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                     env=self.env.child_env())
        logf.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.env.name_owner(POLKIT_NAME):
            if self.proc.poll() is not None:
                raise AssertionError(f'polkitd exited with {self.proc.returncode}:\n{self.log()}')
            if time.monotonic() > deadline:
                raise AssertionError(f'polkitd did not own {POLKIT_NAME} in time:\n{self.log()}')
            time.sleep(0.05)

    def pause(self):
        """SIGSTOP: polkitd keeps its name but answers nothing."""
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if self.paused:
                self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.env.bus and self.env.bus.proc.poll() is None and self.env.name_owner(POLKIT_NAME) \
                and time.monotonic() < deadline:
            time.sleep(0.05)

    def log(self):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''


# ---------------------------------------------------------------------------
# Users: callers that are not root


def _run_quiet(cmd):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          timeout=60)


def ensure_group(name):
    """The gid of a system group, created if missing (idempotent)."""
    import grp
    for attempt in range(20):
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            pass
        p = _run_quiet(['groupadd', '--system', name])
        if p.returncode not in (0, 9):  # 9: exists (another test made it)
            time.sleep(0.2)  # /etc/group locked by a concurrent useradd
    raise AssertionError(f'cannot create group {name}')


def ensure_user(name, groups=()):
    """(uid, gid) of a system user without a home and a login shell,
    created if missing, and a member of groups (supplementary, in
    /etc/group: what polkit's subject.isInGroup() reads). Idempotent."""
    import grp
    import pwd
    for g in groups:
        ensure_group(g)
    for attempt in range(20):
        try:
            pw = pwd.getpwnam(name)
            break
        except KeyError:
            pass
        p = _run_quiet(['useradd', '--system', '--no-create-home', '--home-dir', '/nonexistent',
                        '--shell', '/usr/sbin/nologin', '--user-group', name])
        if p.returncode not in (0, 9):
            time.sleep(0.2)
    else:
        raise AssertionError(f'cannot create user {name}')
    for g in groups:
        if name not in grp.getgrnam(g).gr_mem:
            p = _run_quiet(['usermod', '--append', '--groups', g, name])
            if p.returncode != 0:
                raise AssertionError(f'cannot add {name} to {g}: {p.stderr.decode(errors="replace")}')
    return pw.pw_uid, pw.pw_gid


def as_user(user, cmd):
    """cmd run as user ((uid, gid)) with no supplementary groups."""
    uid, gid = user
    return ['setpriv', f'--reuid={uid}', f'--regid={gid}', '--clear-groups'] + list(cmd)


# ---------------------------------------------------------------------------
# The signal recorder


class Recorder:
    """`busctl --json=short monitor` on the private bus, parsed by a thread.

    Keeps every signal the daemon (its unique name) sends. mark() returns a
    position; wait_for(predicate, since=mark) returns the first matching
    signal after it."""

    def __init__(self, env):
        self.env = env
        self.messages = []   # signals from the daemon
        self.all_count = 0
        self.sync_seen = set()
        self.cond = threading.Condition()
        self.proc = None
        self.thread = None
        self.sender = None
        self.errors = []
        self._sync_counter = 0

    def start(self, sender):
        self.sender = sender
        self.proc = subprocess.Popen(
            ['busctl', '--system', '--json=short', 'monitor'],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            env=self.env.child_env())
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        self.sync()

    def _read(self):
        for raw in self.proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError as e:
                # busctl writes in 4 KiB pieces: terminated at stop() in
                # the middle of a long message (a GetManagedObjects reply),
                # it leaves a last line without its newline. Only whole
                # lines must parse.
                if raw.endswith(b'\n'):
                    self.errors.append(f'{e}: {raw!r}')
                continue
            with self.cond:
                self.all_count += 1
                if msg.get('type') == 'method_call' and msg.get('member') == 'NameHasOwner':
                    data = msg.get('payload', {}).get('data') or []
                    if data and isinstance(data[0], str) and data[0].startswith('org.hotresetd.Test.Sync'):
                        self.sync_seen.add(data[0])
                if msg.get('type') == 'signal' and msg.get('sender') == self.sender:
                    self.messages.append(msg)
                self.cond.notify_all()

    def sync(self, timeout=None):
        """Returns once the monitor has seen a call made now: everything sent
        before it has been recorded."""
        self._sync_counter += 1
        marker = f'org.hotresetd.Test.Sync{os.getpid()}x{self._sync_counter}'
        deadline = time.monotonic() + (timeout or START_TIMEOUT)
        while True:
            self.env.busctl('call', 'org.freedesktop.DBus', '/org/freedesktop/DBus',
                            'org.freedesktop.DBus', 'NameHasOwner', 's', marker)
            with self.cond:
                if self.cond.wait_for(lambda: marker in self.sync_seen, 0.5):
                    return
            if time.monotonic() > deadline:
                raise AssertionError('the bus monitor did not start')

    def mark(self):
        with self.cond:
            return len(self.messages)

    def signals(self, since=0, member=None, path=None):
        with self.cond:
            msgs = list(self.messages[since:])
        return [m for m in msgs
                if (member is None or m.get('member') == member) and (path is None or m.get('path') == path)]

    def wait_for(self, predicate, since=0, timeout=None, what='a matching signal'):
        deadline = time.monotonic() + (timeout or SIGNAL_TIMEOUT)
        with self.cond:
            while True:
                for m in self.messages[since:]:
                    if predicate(m):
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(remaining)
        raise AssertionError(f'timed out waiting for {what}; signals recorded since the mark:\n'
                             + self.describe(since))

    def describe(self, since=0):
        lines = []
        for m in self.signals(since):
            lines.append(f"  {m.get('path')} {m.get('interface')}.{m.get('member')} "
                         f"{json.dumps(m.get('payload', {}).get('data'))}")
        return '\n'.join(lines) or '  (none)'

    # --- helpers on top of wait_for

    def changed_properties(self, path, interface, since=0):
        """Properties announced by PropertiesChanged on path since the mark,
        last value wins."""
        result = {}
        for m in self.signals(since, member='PropertiesChanged', path=path):
            iface, changed, invalidated = m['payload']['data']
            if iface != interface:
                continue
            result.update(unwrap_dict(changed))
            for name in invalidated:
                result[name] = Invalidated
        return result

    def wait_properties(self, path, interface, expected, since=0, timeout=None):
        """Until PropertiesChanged signals on path since the mark announce
        every expected value (a value, or a callable returning True)."""
        deadline = time.monotonic() + (timeout or SIGNAL_TIMEOUT)

        def matches():
            got = self.changed_properties(path, interface, since)
            for k, v in expected.items():
                if k not in got:
                    return False
                if callable(v) and not isinstance(v, type):
                    if not v(got[k]):
                        return False
                elif got[k] != v:
                    return False
            return True

        with self.cond:  # an RLock: matches() may take it again
            while True:
                if matches():
                    return self.changed_properties(path, interface, since)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(min(remaining, 0.5))
        raise AssertionError(f'timed out waiting for PropertiesChanged on {path} ({interface}) with '
                             f'{expected}; got {self.changed_properties(path, interface, since)}; '
                             f'signals since the mark:\n' + self.describe(since))

    def wait_interfaces_added(self, path, since=0, timeout=None):
        m = self.wait_for(lambda m: m.get('member') == 'InterfacesAdded' and m.get('path') == ROOT_PATH
                          and m['payload']['data'][0] == path,
                          since, timeout, what=f'InterfacesAdded for {path}')
        return {iface: unwrap_dict(props) for iface, props in m['payload']['data'][1].items()}

    def wait_interfaces_removed(self, path, since=0, timeout=None):
        m = self.wait_for(lambda m: m.get('member') == 'InterfacesRemoved' and m.get('path') == ROOT_PATH
                          and m['payload']['data'][0] == path,
                          since, timeout, what=f'InterfacesRemoved for {path}')
        return m['payload']['data'][1]

    def stop(self):
        if self.proc:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc.stdout.close()
        if self.thread:
            self.thread.join(5)


class _Invalidated:
    def __repr__(self):
        return '<invalidated>'


Invalidated = _Invalidated()


# ---------------------------------------------------------------------------
# The environment: temp dir, bus, daemon, callers


def _dbus_send_arg(sig, value):
    kinds = {'s': 'string', 'o': 'objpath', 'u': 'uint32', 'i': 'int32', 'b': 'boolean',
             'q': 'uint16', 't': 'uint64', 'x': 'int64', 'y': 'byte', 'd': 'double'}
    if sig not in kinds:
        raise ValueError(f'dbus-send cannot pass {sig!r}')
    if sig == 'b':
        value = 'true' if value else 'false'
    return f'{kinds[sig]}:{value}'


def split_signature(sig):
    """Top-level complete types of a signature of basic types."""
    return list(sig)


class Env:
    """One test's world: a temporary directory, a private system bus, the
    daemon and the recorder. Use start() / close()."""

    def __init__(self, test_name='test'):
        self.tmpdir = tempfile.mkdtemp(prefix='hrd-' + re.sub(r'[^A-Za-z0-9_.-]', '_', test_name.rsplit('.', 1)[-1])[:24] + '-')
        self.bus = None
        self.daemon = None
        self.daemons = []
        self.recorder = None
        self.machine_path = os.path.join(self.tmpdir, 'machine', 'machine.json')
        os.makedirs(os.path.dirname(self.machine_path))
        self.config_path = os.path.join(self.tmpdir, 'config', 'hotresetd.conf')
        self.polkitd = None

    # --- setup

    def child_env(self):
        env = dict(os.environ)
        if self.bus and self.bus.address:
            env['DBUS_SYSTEM_BUS_ADDRESS'] = self.bus.address
        env.pop('DBUS_SESSION_BUS_ADDRESS', None)
        env.pop('NOTIFY_SOCKET', None)
        env['SYSTEMD_COLORS'] = '0'
        env['SYSTEMD_PAGER'] = ''
        env['SYSTEMD_LOG_LEVEL'] = env.get('SYSTEMD_LOG_LEVEL', 'info')
        return env

    def start_bus(self, **kwargs):
        self.bus = TestBus(self.tmpdir, **kwargs)
        self.bus.start()
        return self.bus

    def write_machine(self, machine, path=None):
        """Writes the machine (a dict, or text) directly (no rename)."""
        path = path or self.machine_path
        text = machine if isinstance(machine, str) else json.dumps(machine, indent=2) + '\n'
        with open(path, 'w') as f:
            f.write(text)
        return path

    def rewrite_machine(self, machine, path=None):
        """An update as an editor or a tool does it: write a temporary file in
        the same directory, then rename it over the machine file."""
        path = path or self.machine_path
        tmp = os.path.join(os.path.dirname(path), '.' + os.path.basename(path) + '.tmp')
        text = machine if isinstance(machine, str) else json.dumps(machine, indent=2) + '\n'
        with open(tmp, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)

    def ensure_config(self):
        """The daemon's policy file (empty unless a test wrote one)."""
        if not os.path.exists(self.config_path):
            self.write_config('')
        return self.config_path

    def write_config(self, text, name=None):
        """Writes the daemon's policy file, or with name a drop-in
        (hotresetd.conf.d/NAME). Returns the path. Reload with
        daemon.reload() or Manager.Reload()."""
        path = self.config_path if name is None else os.path.join(self.config_path + '.d', name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            f.write(textwrap.dedent(text))
        os.rename(tmp, path)
        return path

    def allow_other_users(self):
        """Lets other uids reach the bus socket and polkitd read its
        directories (mkdtemp makes the temporary directory 0700)."""
        os.chmod(self.tmpdir, 0o755)

    def start_polkitd(self, rules=None, actions=None):
        """The real polkitd on this bus; see Polkitd."""
        self.allow_other_users()
        self.polkitd = Polkitd(self, rules=rules, actions=actions)
        self.polkitd.start()
        return self.polkitd

    def fd_store_env(self):
        """The environment of a daemon under systemd with a file descriptor
        store (FileDescriptorStoreMax=, RuntimeDirectory=)."""
        runtime = os.path.join(self.tmpdir, 'run-hotresetd')
        os.makedirs(runtime, mode=0o700, exist_ok=True)
        return {'FDSTORE': '4096', 'RUNTIME_DIRECTORY': runtime}

    def restart_daemon(self, sig=signal.SIGTERM, wait=True):
        """Stops the daemon with sig (SIGKILL: a crash) and starts it again
        with the files its store kept, as systemd restarts a service.
        Returns (the old exit status, the new Daemon)."""
        old = self.daemon
        rc = old.stop(sig)
        old.stop_notify()
        store = old.take_fd_store()
        self.restarts = getattr(self, 'restarts', 0) + 1
        d = Daemon(self, old.machine_path, args=old.args, name=f'hotresetd-restart{self.restarts}',
                   extra_env=old.extra_env, fd_store=store)
        self.daemons.append(d)
        self.daemon = d
        d.start()
        if wait:
            d.wait_ready()
        return rc, d

    def start_daemon(self, machine, args=(), wait=True, name='hotresetd', extra_env=None):
        """machine: an example file name ('workstation.json'), a dict or JSON
        text. The machine is written to the temp dir (so tests can rewrite it)
        and the daemon started on it."""
        if isinstance(machine, str) and machine.endswith('.json') and '\n' not in machine \
                and not machine.lstrip().startswith('{'):
            machine = load_example(machine)
        self.write_machine(machine)
        d = Daemon(self, self.machine_path, args=args, name=name, extra_env=extra_env)
        self.daemons.append(d)
        self.daemon = d
        d.start()
        if wait:
            d.wait_ready()
        return d

    def start_recorder(self):
        self.recorder = Recorder(self)
        self.recorder.start(self.daemon.unique_name or self.name_owner(BUS_NAME))
        return self.recorder

    # --- callers

    def busctl(self, *args, check=True, timeout=None):
        """Runs busctl --system --json=short -- ARGS; returns the CompletedProcess."""
        cmd = ['busctl', '--system', '--json=short', f'--timeout={int(CALL_TIMEOUT)}', '--'] + [str(a) for a in args]
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.child_env(),
                               timeout=timeout or CALL_TIMEOUT + 10, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise CallError(f'busctl timed out: {cmd[:12]}')
        if check and p.returncode != 0:
            raise CallError(f'{" ".join(cmd[:12])} failed ({p.returncode}): {p.stderr.decode(errors="replace")}')
        return p

    def busctl_as(self, user, *args, interactive=False, timeout=None):
        """busctl --system ARGS as user ((uid, gid), or None for root), with
        ALLOW_INTERACTIVE_AUTHORIZATION on or off (busctl's default is on);
        returns the CompletedProcess."""
        cmd = ['busctl', '--system', '--json=short', f'--timeout={int(CALL_TIMEOUT)}',
               f'--allow-interactive-authorization={"yes" if interactive else "no"}', '--'] + [str(a) for a in args]
        if user is not None:
            cmd = as_user(user, cmd)
        try:
            return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.child_env(),
                                  timeout=timeout or CALL_TIMEOUT + 10, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise CallError(f'busctl timed out: {cmd[:16]}')

    def name_owner(self, name):
        p = self.busctl('call', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                        'NameHasOwner', 's', name, check=False)
        if p.returncode != 0 or json.loads(p.stdout)['data'] != [True]:
            return None
        p = self.busctl('call', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                        'GetNameOwner', 's', name, check=False)
        if p.returncode != 0:
            return None
        return json.loads(p.stdout)['data'][0]

    def call(self, path, interface, method, signature='', *args):
        """Calls a method of the daemon; returns (type signature, list of out arguments)."""
        cmd = ['call', BUS_NAME, path, interface, method]
        if signature:
            cmd += [signature] + [str(a) for a in args]
        p = self.busctl(*cmd)
        if not p.stdout.strip():
            return '', []
        reply = json.loads(p.stdout)
        return reply['type'], reply['data']

    def call_manager(self, method, signature='', *args):
        return self.call(ROOT_PATH, MANAGER_IFACE, method, signature, *args)

    def get_property(self, path, interface, name):
        p = self.busctl('get-property', BUS_NAME, path, interface, name)
        return json.loads(p.stdout)['data']

    def get_property_typed(self, path, interface, name):
        p = self.busctl('get-property', BUS_NAME, path, interface, name)
        reply = json.loads(p.stdout)
        return reply['type'], reply['data']

    def get_all(self, path, interface):
        """Properties.GetAll: {name: value}."""
        _, data = self.call(path, PROPS_IFACE, 'GetAll', 's', interface)
        return unwrap_dict(data[0])

    def get_all_typed(self, path, interface):
        """Properties.GetAll: {name: (signature, value)}."""
        _, data = self.call(path, PROPS_IFACE, 'GetAll', 's', interface)
        return {k: (v['type'], v['data']) for k, v in data[0].items()}

    def manager_property(self, name):
        return self.get_property(ROOT_PATH, MANAGER_IFACE, name)

    def device_property(self, address, name):
        return self.get_property(device_path(address), DEVICE_IFACE, name)

    def device_properties(self, address):
        """Properties.GetAll of a device (Affected is not part of it: see
        device_property(address, 'Affected'))."""
        return self.get_all(device_path(address), DEVICE_IFACE)

    def domain_properties(self, path):
        """Properties.GetAll of a reset domain object."""
        return self.get_all(path, DOMAIN_IFACE)

    def list_devices(self):
        t, data = self.call_manager('ListDevices')
        assert t == 'a(ssso)', t
        return [tuple(x) for x in data[0]]

    def get_device(self, address):
        t, data = self.call_manager('GetDevice', 's', address)
        assert t == 'o', t
        return data[0]

    def check_hot_reset(self, address):
        """CheckHotReset on the device object: (possible, [(address, driver, group, holder, reason)])."""
        t, data = self.call(device_path(address), DEVICE_IFACE, 'CheckHotReset')
        assert t == 'ba(ssiss)', t
        return data[0], [tuple(x) for x in data[1]]

    def managed_objects(self):
        t, data = self.call(ROOT_PATH, OM_IFACE, 'GetManagedObjects')
        assert t == 'a{oa{sa{sv}}}', t
        return {path: {iface: unwrap_dict(props) for iface, props in ifaces.items()}
                for path, ifaces in data[0].items()}

    def introspect(self, path):
        _, data = self.call(path, INTROSPECT_IFACE, 'Introspect')
        return data[0]

    def dbus_send_error(self, path, interface, method, signature='', *args, user=None):
        """Calls with dbus-send, which prints the error name (and never sets
        ALLOW_INTERACTIVE_AUTHORIZATION); returns DBusError, or None when
        the call succeeded. user: (uid, gid) to call as, None for root."""
        cmd = ['dbus-send', '--system', '--print-reply', f'--reply-timeout={int(CALL_TIMEOUT * 1000)}',
               '--dest=' + BUS_NAME, path, f'{interface}.{method}']
        cmd += [_dbus_send_arg(s, a) for s, a in zip(split_signature(signature), args)]
        if user is not None:
            cmd = as_user(user, cmd)
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.child_env(),
                           timeout=CALL_TIMEOUT + 10, stdin=subprocess.DEVNULL)
        if p.returncode == 0:
            return None
        err = p.stderr.decode(errors='replace').strip()
        m = re.match(r'^Error ([A-Za-z0-9_.]+): (.*)$', err, re.S)
        if not m:
            raise CallError(f'unexpected dbus-send failure: {err}')
        return DBusError(m.group(1), m.group(2))

    def expect_error(self, path, interface, method, signature, args, error_names, substrings=()):
        """The call must fail with one of error_names (a name or a tuple) and a
        message containing every substring, both as dbus-send sees it (name and
        message) and as busctl reports it (message). Returns the DBusError."""
        if isinstance(error_names, str):
            error_names = (error_names,)
        if isinstance(substrings, str):
            substrings = (substrings,)
        err = self.dbus_send_error(path, interface, method, signature, *args)
        shown = repr(args)[:120]
        if err is None:
            raise AssertionError(f'{interface}.{method}{shown} on {path} succeeded; expected {error_names}')
        if err.name not in error_names:
            raise AssertionError(f'{interface}.{method}{shown}: got {err.name} ({err.message[:300]}), '
                                 f'expected {" or ".join(error_names)}')
        for s in substrings:
            if s not in err.message:
                raise AssertionError(f'{interface}.{method}{shown}: the {err.name} message {err.message[:300]!r} '
                                     f'does not contain {s!r}')
        cmd = ['call', BUS_NAME, path, interface, method]
        if signature:
            cmd += [signature] + [str(a) for a in args]
        p = self.busctl(*cmd, check=False)
        if p.returncode == 0:
            raise AssertionError(f'busctl call {method}{shown} succeeded; expected {err.name}')
        stderr = p.stderr.decode(errors='replace')
        for s in substrings:
            if s not in stderr:
                raise AssertionError(f'busctl call {method}{shown}: {stderr[:300]!r} does not contain {s!r}')
        return err

    # --- teardown

    def stop_daemon(self, daemon=None, sig=signal.SIGTERM):
        daemon = daemon or self.daemon
        return daemon.stop(sig)

    def close(self, failed=False):
        """Stops everything. Returns a list of problems found at teardown
        (daemon exit status, sanitizer reports); prints the logs when failed
        or when there are problems."""
        problems = []
        if self.recorder:
            self.recorder.stop()
            if self.recorder.errors:
                problems.append('bus monitor output not understood: ' + '; '.join(self.recorder.errors[:3]))
        for d in self.daemons:
            if d.proc is None:
                continue
            was_running = d.running()
            rc = d.stop(signal.SIGTERM)
            if was_running and rc != 0:
                problems.append(f'hotresetd did not exit 0 on SIGTERM (exit status {rc})')
            reports = d.sanitizer_reports()
            if reports:
                problems.append(f'sanitizer reports in the daemon log: {", ".join(reports)}')
            d.close()
        if self.polkitd:
            self.polkitd.stop()
        if self.bus:
            self.bus.stop()
        if failed or problems:
            for d in self.daemons:
                log(f'----- {os.path.basename(d.log_path)} ({" ".join(d.command())}) -----')
                log(d.log().rstrip())
            if self.polkitd:
                log('----- polkitd log -----')
                log(self.polkitd.log().rstrip())
            if self.bus:
                log('----- dbus-daemon log -----')
                log(self.bus.log().rstrip())
            log('-----')
        if os.environ.get('HOTRESETD_TEST_KEEP'):
            log(f'keeping {self.tmpdir}')
        else:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        return problems


# ---------------------------------------------------------------------------
# unittest glue


class HotresetdTestCase(unittest.TestCase):
    """Base class: every test gets its own bus and temp dir; the daemon is
    started on MACHINE unless MACHINE is None. Teardown stops the daemon with
    SIGTERM and fails the test unless it exits 0 with a clean sanitizer log."""

    MACHINE = 'workstation.json'
    DAEMON_ARGS = ()
    DAEMON_ENV = {}
    # The daemon's policy file (hotresetd.conf), None for an empty one.
    CONFIG = None
    # The system-like bus policy (system_bus_kwargs) instead of the
    # permissive one; implied by POLKIT.
    SYSTEM_BUS = False
    # Start the real polkitd with these rules ({name: JavaScript}); None:
    # no polkitd (callers other than root then get "authorization service
    # unavailable").
    POLKIT_RULES = None
    # Run the daemon as under systemd with a file descriptor store
    # ($FDSTORE, $RUNTIME_DIRECTORY; the harness keeps the stored files):
    # leases survive env.restart_daemon().
    FD_STORE = False
    maxDiff = None

    def setUp(self):
        self.env = Env(self.id().split('.', 1)[-1])
        try:
            if self.POLKIT_RULES is not None or self.SYSTEM_BUS:
                self.env.start_bus(**system_bus_kwargs())
            else:
                self.env.start_bus()
            if self.POLKIT_RULES is not None:
                self.env.start_polkitd(rules=self.POLKIT_RULES)
            if self.CONFIG is not None:
                self.env.write_config(self.CONFIG)
            if self.MACHINE is not None:
                extra_env = dict(self.DAEMON_ENV or {})
                if self.FD_STORE:
                    extra_env.update(self.env.fd_store_env())
                self.env.start_daemon(self.MACHINE, args=self.DAEMON_ARGS, extra_env=extra_env)
        except BaseException:
            self.env.close(failed=True)
            raise

    def _failed(self):
        """Whether this test has failed so far (the test method, a subtest or
        setUp). unittest resets outcome.success for tearDown, so look at the
        result too."""
        outcome = getattr(self, '_outcome', None)
        if outcome is None:
            return False
        if not getattr(outcome, 'success', True):
            return True
        errors = getattr(outcome, 'errors', None)  # Python < 3.11
        if errors and any(exc for _, exc in errors):
            return True
        result = getattr(outcome, 'result', None)
        for test, _ in list(getattr(result, 'failures', [])) + list(getattr(result, 'errors', [])):
            if test is self or getattr(test, 'test_case', None) is self:
                return True
        return False

    def tearDown(self):
        problems = self.env.close(failed=self._failed())
        if problems:
            self.fail('; '.join(problems))

    # shortcuts
    @property
    def daemon(self):
        return self.env.daemon

    def record(self):
        """Starts the signal recorder (if needed) and returns (recorder, mark)."""
        if not self.env.recorder:
            self.env.start_recorder()
        return self.env.recorder, self.env.recorder.mark()

    def assertDaemonRunning(self):
        self.assertTrue(self.env.daemon.running(),
                        f'hotresetd exited ({self.env.daemon.proc.returncode}):\n{self.env.daemon.log()}')


def main():
    unittest.main(verbosity=2, buffer=False)


def machine_copy(machine):
    return copy.deepcopy(machine)

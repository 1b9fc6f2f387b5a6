# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helpers for the hotresetctl tests (test_cli_*.py): running the client
against the test's daemon, in a mount namespace with a hwdb of the test's
own (or none), and on a real terminal (tmux)."""

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time

import harness

# The hwdb entries the name tests expect, for the workstation's devices:
# made up, so that they cannot come from the machine's own hwdb.
TEST_HWDB = '''\
pci:v000010DE*
 ID_VENDOR_FROM_DATABASE=Test Vendor NV

pci:v000010DEd00002204*
 ID_MODEL_FROM_DATABASE=Test GPU 2204

pci:v000010DEd00001AEF*
 ID_MODEL_FROM_DATABASE=Test Audio 1aef

pci:v0000144D*
 ID_VENDOR_FROM_DATABASE=Test Vendor SM

pci:v0000144Dd0000A80A*
 ID_MODEL_FROM_DATABASE=Test NVMe a80a

pci:v000010EC*
 ID_VENDOR_FROM_DATABASE=Test Vendor RT

pci:v000010ECd00008169*
 ID_MODEL_FROM_DATABASE=Test Ethernet with a model name much too long for the last column of eighty
'''

# Where sd_hwdb_new() looks for hwdb.bin (systemd's hwdb-util.c): a
# namespace that shows none of them has no hwdb.
HWDB_DIRS = ('/etc/systemd/hwdb', '/etc/udev', '/usr/lib/systemd/hwdb', '/lib/systemd/hwdb', '/usr/lib/udev',
             '/lib/udev')


def ctl_binary():
    path = os.environ.get('HOTRESETCTL_BIN')
    if path:
        return path
    p = os.path.join(harness.SOURCE_ROOT, 'build', 'client', 'hotresetctl')
    if os.access(p, os.X_OK):
        return p
    raise RuntimeError('HOTRESETCTL_BIN is not set (run the tests with `meson test`)')


def namespace_missing():
    """Why hwdb namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return 'needs root (unshare --mount)'
    for tool in ('unshare', 'mount', 'systemd-hwdb'):
        if not shutil.which(tool):
            return f'{tool} is not installed'
    return None


def make_test_hwdb(tmpdir):
    """Compiles TEST_HWDB with systemd-hwdb; returns the hwdb.bin path."""
    root = os.path.join(tmpdir, 'hwdb-root')
    src = os.path.join(root, 'etc', 'udev', 'hwdb.d')
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(src, '60-hotresetd-test.hwdb'), 'w') as f:
        f.write(TEST_HWDB)
    subprocess.run(['systemd-hwdb', '--root', root, 'update'], check=True, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, timeout=120)
    path = os.path.join(root, 'etc', 'udev', 'hwdb.bin')
    assert os.path.exists(path), 'systemd-hwdb wrote no hwdb.bin'
    return path


def hwdb_namespace_script(hwdb_bin):
    """sh commands that, in a private mount namespace, hide every hwdb.bin
    and, when hwdb_bin is given, show that one as /etc/udev/hwdb.bin."""
    lines = ['set -e', 'mount --make-rprivate /']
    for d in HWDB_DIRS:
        if os.path.isdir(d) and not os.path.islink(d):
            lines.append(f'mount -t tmpfs tmpfs {shlex.quote(d)}')
    if hwdb_bin:
        lines.append(f'cp {shlex.quote(hwdb_bin)} /etc/udev/hwdb.bin')
    return '; '.join(lines)


def hwdb_namespace_argv(hwdb_bin, args):
    """argv running hotresetctl ARGS in a mount namespace whose only hwdb is
    hwdb_bin (None: no hwdb at all)."""
    script = hwdb_namespace_script(hwdb_bin) + '; exec "$@"'
    return ['unshare', '--mount', '--', 'sh', '-c', script, 'sh', ctl_binary()] + list(args)


def run_in_hwdb_namespace(env, hwdb_bin, args, timeout=60):
    """hotresetctl ARGS in a mount namespace whose only hwdb is hwdb_bin
    (None: no hwdb at all). Returns the CompletedProcess (text)."""
    script = hwdb_namespace_script(hwdb_bin) + '; exec "$@"'
    cmd = ['unshare', '--mount', '--', 'sh', '-c', script, 'sh', ctl_binary()] + list(args)
    e = env.child_env()
    e['LC_ALL'] = 'C.UTF-8'  # the tree in UTF-8, as the tests expect it
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          env=e, text=True, timeout=timeout)


class Tmux:
    """A private tmux server (its own socket) with one window of a given
    size running one command; the screen is read with capture-pane."""

    def __init__(self, width=80, height=50):
        self.dir = tempfile.mkdtemp(prefix='hrd-tmux-')
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, 'tmux.sock')
        self.width, self.height = width, height
        self.started = False

    def tmux(self, *args, check=True):
        return subprocess.run(['tmux', '-S', self.socket, '-f', '/dev/null'] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=30, check=check,
                              stdin=subprocess.DEVNULL)

    def run(self, argv, env):
        """Starts argv in the window; env: the whole environment (TERM and
        the locale are set here). The shell prints a marker with the exit
        status when the command ends, and stays so the screen can be read."""
        env = dict(env)
        env.setdefault('TERM', 'xterm-256color')
        env.setdefault('LC_ALL', 'C.UTF-8')
        env.pop('COLUMNS', None)
        env.pop('LINES', None)
        cmd = ' '.join(shlex.quote(a) for a in argv)
        shell = f'{cmd}; echo "__EXIT__ $?"; exec sleep 600'
        envs = ' '.join(shlex.quote(f'{k}={v}') for k, v in env.items())
        self.tmux('-u', 'new-session', '-d', '-x', str(self.width), '-y', str(self.height),
                  f'exec env -i {envs} sh -c {shlex.quote(shell)}')
        self.started = True
        self.tmux('set-option', '-g', 'history-limit', '5000', check=False)

    def screen(self, escapes=False, join=False):
        """The pane's text: with escapes, its colours as escape sequences;
        with join, lines the terminal wrapped joined again."""
        args = ['capture-pane', '-p', '-S', '-']
        if escapes:
            args.append('-e')
        if join:
            args.append('-J')
        return self.tmux(*args).stdout

    def wait_for(self, needle, timeout=None):
        deadline = time.monotonic() + (timeout or harness.START_TIMEOUT * 2)
        while True:
            text = self.screen()
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f'{needle!r} never appeared on the terminal; it shows:\n{text}')
            time.sleep(0.05)

    def wait_exit(self, timeout=None):
        """The command's exit status (from the marker)."""
        text = self.wait_for('__EXIT__ ', timeout)
        line = [l for l in text.splitlines() if l.startswith('__EXIT__ ')][-1]
        return int(line.split()[1])

    def output(self, escapes=False):
        """What the command printed: the screen up to the marker."""
        text = self.screen(escapes=escapes)
        return text[:text.index('__EXIT__')].rstrip('\n') + '\n'

    def send(self, *keys):
        self.tmux('send-keys', *keys)

    def close(self):
        if self.started:
            self.tmux('kill-server', check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def parse_json(text):
    return json.loads(text)

#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""hotresetctl on a real terminal: tmux runs it in a window of a known
size and the test reads the screen.

- colour on a terminal, not when piped; NO_COLOR and SYSTEMD_COLORS;
- the pager ($SYSTEMD_PAGER, $PAGER; --no-pager), fed output made for the
  terminal behind it;
- 80 columns: tables fit (long cells end in "…"), the verdict and the hints
  are folded at spaces, and the terminal never wraps a line;
- the polkit agent: with the real polkitd and a rule that answers
  AUTH_SELF for a test user, hotresetctl (as that user, on the terminal)
  starts pkttyagent, which prompts; the right password makes the call
  succeed, a wrong one fails it; --no-ask-password and a caller without a
  terminal get no prompt and the daemon's "authentication is required".

The agent's setuid helper (polkit-agent-helper-1) ignores
DBUS_SYSTEM_BUS_ADDRESS and answers polkitd on /run/dbus/system_bus_socket:
the caller runs in a mount namespace where the test's bus socket is
bind-mounted there. Needs root (namespaces, test users, chpasswd), tmux and
polkitd; skipped otherwise."""

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import cli_util  # noqa: E402

GPU, AUDIO, NVME = '0000:01:00.0', '0000:01:00.1', '0000:02:00.0'
RTL = '0000:05:01.0'
ESC = '\x1b['


def tmux_missing():
    if not shutil.which('tmux'):
        return 'tmux is not installed'
    return None


def words(text):
    return text.split()


@unittest.skipIf(tmux_missing(), tmux_missing() or '')
class TerminalTest(harness.HotresetdTestCase):
    MACHINE = 'workstation.json'

    def setUp(self):
        super().setUp()
        self.terminals = []

    def tearDown(self):
        for t in self.terminals:
            t.close()
        super().tearDown()

    def term_env(self, **extra):
        """The environment on the terminal: the test's bus, colours left to
        the terminal (the harness' SYSTEMD_COLORS=0 removed)."""
        env = self.env.child_env()
        env.pop('SYSTEMD_COLORS', None)
        env.pop('NO_COLOR', None)
        env.update(extra)
        return env

    def on_terminal(self, argv, width=80, env=None):
        """Runs argv on a fresh terminal; returns (tmux, exit status)."""
        t = cli_util.Tmux(width=width)
        self.terminals.append(t)
        t.run(argv, env if env is not None else self.term_env())
        return t, t.wait_exit()

    def piped(self, *args, rc=0, **extra):
        e = self.env.child_env()
        e.pop('SYSTEMD_COLORS', None)
        e['LC_ALL'] = 'C.UTF-8'
        e.update(extra)
        p = subprocess.run([cli_util.ctl_binary()] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, env=e, text=True, timeout=harness.CALL_TIMEOUT + 10)
        self.assertEqual(p.returncode, rc, p.stderr)
        return p.stdout

    def assert_fits(self, t, width):
        """No line wider than the terminal, and none the terminal wrapped:
        the screen has as many lines with wrapped ones joined as without."""
        plain = t.output()
        joined = t.screen(join=True)
        joined = joined[:joined.index('__EXIT__')].rstrip('\n') + '\n'
        # (-J keeps the trailing blanks of a line, the plain capture not.)
        self.assertEqual([line.rstrip() for line in joined.splitlines()],
                         [line.rstrip() for line in plain.splitlines()], 'the terminal wrapped a line')
        for line in plain.splitlines():
            self.assertLessEqual(len(line.rstrip()), width, line)

    # --- colour

    def test_colour_on_a_terminal_only(self):
        ctl = cli_util.ctl_binary()
        t, rc = self.on_terminal([ctl, '--no-names', 'scope', GPU])
        self.assertEqual(rc, 3)
        coloured = t.output(escapes=True)
        self.assertIn(ESC, coloured)
        # The verdict's "not possible" and the blocking member are red
        # (tmux renders red as colour 1: ESC[...31m or ESC[...91m).
        verdict = coloured.splitlines()[0]
        self.assertRegex(verdict, r'\x1b\[[0-9;]*3?1m.*not possible')
        self.assertRegex(coloured, r'\x1b\[[0-9;]*31m[^\n]*0000:01:00\.1')
        # Same text without the escapes as piped (no colour when piped).
        self.assertEqual(re.sub(r'\x1b\[[0-9;]*m', '', coloured).rstrip('\n'), t.output().rstrip('\n'))
        self.assertNotIn(ESC, self.piped('--no-names', 'scope', GPU, rc=3))

        for env in ({'NO_COLOR': '1'}, {'SYSTEMD_COLORS': '0'}, {'SYSTEMD_COLORS': 'no'}, {'TERM': 'dumb'}):
            with self.subTest(env=env):
                t, rc = self.on_terminal([ctl, '--no-names', 'scope', GPU], env=self.term_env(**env))
                self.assertEqual(rc, 3)
                self.assertNotIn(ESC, t.output(escapes=True))
        # SYSTEMD_COLORS=1 turns it on even when piped (and wins over NO_COLOR).
        self.assertIn(ESC, self.piped('--no-names', 'scope', GPU, rc=3, SYSTEMD_COLORS='1', NO_COLOR='1'))

    # --- width

    def test_contexts_fit_80_columns(self):
        description = ('a lease for the storage tests of the nightly run, described at some length so that '
                       'it cannot fit the column')
        self.piped('acquire', f'--description={description}', NVME)
        ctl = cli_util.ctl_binary()
        t, rc = self.on_terminal([ctl, 'contexts'])
        self.assertEqual(rc, 0)
        self.assert_fits(t, 80)
        row = t.output().splitlines()[1].rstrip()
        self.assertTrue(row.endswith('…'), row)
        shown = re.split(r'\s{2,}', row)[-1][:-1]
        self.assertTrue(description.startswith(shown), (shown, description))
        self.assertGreater(len(shown), 0)
        # Piped, nothing is cut.
        self.assertIn(description, self.piped('contexts'))
        # Wider, it fits whole.
        t, rc = self.on_terminal([ctl, 'contexts'], width=200)
        self.assertIn(description, t.output())

    def test_scope_folds_at_spaces(self):
        ctl = cli_util.ctl_binary()
        t, rc = self.on_terminal([ctl, '--no-names', 'scope', GPU])
        self.assertEqual(rc, 3)
        self.assert_fits(t, 80)
        screen = t.output()
        full = self.piped('--no-names', 'scope', GPU, rc=3)
        # The verdict and the hint are longer than 80 columns piped...
        self.assertGreater(max(len(line) for line in full.splitlines()), 80)
        # ...and on the terminal the same words, none of them split.
        self.assertEqual(words(screen), words(full))
        self.assertIn('`driverctl', screen)

    def test_pager(self):
        ctl = cli_util.ctl_binary()
        description = 'described at such length that the column cannot hold it on eighty columns at all'
        self.piped('acquire', f'--description={description}', NVME)

        def tee(name):
            """A pager that passes the output on and keeps a copy."""
            path = os.path.join(self.env.tmpdir, name)
            return path, f'tee {shlex.quote(path)}'

        path, pager = tee('paged')
        t, rc = self.on_terminal([ctl, 'contexts'], env=self.term_env(SYSTEMD_PAGER=pager))
        self.assertEqual(rc, 0)
        with open(path) as f:
            paged = f.read()
        # Made for the terminal behind the pager: coloured, fitted to it.
        self.assertIn(ESC, paged)
        plain = re.sub(r'\x1b\[[0-9;]*m', '', paged)
        self.assertEqual([line.rstrip() for line in plain.splitlines()],
                         [line.rstrip() for line in t.output().splitlines()])
        self.assertTrue(plain.splitlines()[1].rstrip().endswith('…'), plain)
        self.assert_fits(t, 80)

        # --no-pager, SYSTEMD_PAGER=cat or empty: no pager.
        for i, (args, env) in enumerate(((['--no-pager'], None), ([], 'cat'), ([], ''))):
            with self.subTest(args=args, env=env):
                p, cmd = tee(f'not-paged-{i}')
                t, rc = self.on_terminal([ctl] + args + ['contexts'],
                                         env=self.term_env(SYSTEMD_PAGER=cmd if env is None else env))
                self.assertEqual(rc, 0)
                self.assertTrue(t.output().startswith('CONTEXT'), t.output())
                self.assertFalse(os.path.exists(p))
        # PAGER when SYSTEMD_PAGER is not set.
        p, cmd = tee('pager')
        e = self.term_env(PAGER=cmd)
        e.pop('SYSTEMD_PAGER', None)
        t, rc = self.on_terminal([ctl, 'status'], env=e)
        self.assertEqual(rc, 0)
        with open(p) as f:
            self.assertIn('Version', f.read())
        # Piped: never a pager.
        p, cmd = tee('piped')
        self.piped('contexts', SYSTEMD_PAGER=cmd)
        self.assertFalse(os.path.exists(p))
        # A verb that may ask for a password is not paged.
        p, cmd = tee('reset')
        t, rc = self.on_terminal([ctl, 'reset', '--context=1', NVME], env=self.term_env(SYSTEMD_PAGER=cmd))
        self.assertEqual(rc, 0, t.output())
        self.assertFalse(os.path.exists(p))

    def test_check_reason_wraps_at_spaces(self):
        ctl = cli_util.ctl_binary()
        t, rc = self.on_terminal([ctl, 'check', GPU])
        self.assertEqual(rc, 3)
        self.assert_fits(t, 80)
        screen = t.output()
        piped = self.piped('check', GPU, rc=3)
        self.assertGreater(max(len(line) for line in piped.splitlines()), 80)
        # Every word there, none split; the reason continues in its column.
        self.assertEqual(sorted(words(screen)), sorted(words(piped)))
        lines = screen.splitlines()
        reason_at = lines[2].index('REASON')
        continued = [line for line in lines[4:] if not line.startswith('0000:')]
        self.assertTrue(continued, screen)
        for line in continued:
            self.assertEqual(len(line) - len(line.lstrip(' ')), reason_at, line)

    def test_errors_fold_at_spaces(self):
        ctl = cli_util.ctl_binary()
        t, rc = self.on_terminal([ctl, '--verbose', 'reset', GPU])
        self.assertEqual(rc, 3)
        self.assert_fits(t, 80)
        e = self.env.child_env()
        p = subprocess.run([ctl, '--verbose', 'reset', GPU], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, env=e, text=True, timeout=harness.CALL_TIMEOUT + 10)
        self.assertEqual(p.returncode, 3)
        self.assertEqual(p.stderr.count('\n'), 1)  # piped: one line
        self.assertGreater(len(p.stderr), 80)
        self.assertEqual(words(t.output()), words(p.stderr))

    @unittest.skipIf(cli_util.namespace_missing(), cli_util.namespace_missing() or '')
    def test_list_names_ellipsized(self):
        hwdb = cli_util.make_test_hwdb(self.env.tmpdir)
        t, rc = self.on_terminal(cli_util.hwdb_namespace_argv(hwdb, ['list']))
        self.assertEqual(rc, 0)
        self.assert_fits(t, 80)
        rows = {line.split()[0]: line.rstrip() for line in t.output().splitlines()[1:]}
        self.assertTrue(rows[RTL].endswith('…'), rows[RTL])
        self.assertIn('Test Vendor RT Test Ethernet', rows[RTL])
        self.assertTrue(rows[GPU].endswith('Test Vendor NV Test GPU 2204'), rows[GPU])


AGENT_USER = 'hrd-cli-ask'
AGENT_RULES = {'50-hotresetd-cli-test.rules': f'''
polkit.addRule(function(action, subject) {{
    if (action.id.indexOf("org.hotresetd.") == 0 && subject.user == "{AGENT_USER}")
        return polkit.Result.AUTH_SELF;
    return polkit.Result.NOT_HANDLED;
}});
'''}


def agent_missing():
    why = tmux_missing() or harness.polkit_missing()
    if why:
        return why
    for tool in ('pkttyagent', 'chpasswd'):
        if not shutil.which(tool):
            return f'{tool} is not installed'
    return None


@unittest.skipIf(agent_missing(), agent_missing() or '')
class PolkitAgentTest(harness.HotresetdTestCase):
    """A user whom a rule sends to AUTH_SELF, on a terminal."""
    MACHINE = 'workstation.json'
    POLKIT_RULES = AGENT_RULES

    def setUp(self):
        super().setUp()
        self.terminals = []
        self.user = harness.ensure_user(AGENT_USER)
        self.password = 'pw-' + secrets.token_hex(8)
        p = subprocess.run(['chpasswd'], input=f'{AGENT_USER}:{self.password}\n', text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if p.returncode != 0:
            self.fail(f'chpasswd: {p.stderr}')

    def tearDown(self):
        for t in self.terminals:
            t.close()
        super().tearDown()

    def caller_argv(self, *args):
        """hotresetctl ARGS as the test user, in a mount namespace where the
        test's bus is also /run/dbus/system_bus_socket (for polkit's setuid
        helper, see above)."""
        sock = self.env.bus.address.split('unix:path=', 1)[1].split(',', 1)[0]
        script = ('set -e; mount --make-rprivate /; '
                  'if [ -d /run/dbus ]; then mount -t tmpfs tmpfs /run/dbus; '
                  'else mount -t tmpfs tmpfs /run; mkdir /run/dbus; fi; '
                  'touch /run/dbus/system_bus_socket; '
                  f'mount --bind {shlex.quote(sock)} /run/dbus/system_bus_socket; '
                  'exec "$@"')
        return (['unshare', '--mount', '--', 'sh', '-c', script, 'sh'] +
                harness.as_user(self.user, [cli_util.ctl_binary()] + list(args)))

    def caller_env(self):
        env = self.env.child_env()
        env['DBUS_SYSTEM_BUS_ADDRESS'] = 'unix:path=/run/dbus/system_bus_socket'
        return env

    def start(self, *args):
        t = cli_util.Tmux(width=100)
        self.terminals.append(t)
        t.run(self.caller_argv(*args), self.caller_env())
        return t

    def test_agent_prompts_and_the_password_authorizes(self):
        self.env.write_config('[Limits]\nContextsPerUser=5\n')
        t = self.start('reload')
        screen = t.wait_for('Password:')
        self.assertIn('AUTHENTICATING FOR org.hotresetd.manage', screen)
        self.assertIn(f'Authenticating as: {AGENT_USER}', screen)
        t.send(self.password, 'Enter')
        self.assertEqual(t.wait_exit(), 0, t.screen())
        self.assertIn('AUTHENTICATION COMPLETE', t.screen())
        # The reload happened: the new limit is in force.
        self.assertEqual(self.env.get_all(harness.ROOT_PATH, harness.MANAGER_IFACE)['Limits']['ContextsPerUser'], 5)

    def test_wrong_password_refuses(self):
        t = self.start('acquire', NVME)
        t.wait_for('Password:')
        t.send('not-' + self.password, 'Enter')
        self.assertEqual(t.wait_exit(), 1, t.screen())
        screen = t.screen(join=True)
        self.assertIn('AUTHENTICATION FAILED', screen)
        self.assertIn('Failed to create a context: Not authorized', screen)
        self.assertEqual(self.env.device_property(NVME, 'Context'), '/')

    def test_no_ask_password(self):
        t = self.start('--no-ask-password', 'reload')
        self.assertEqual(t.wait_exit(), 1, t.screen())
        screen = t.screen(join=True)
        self.assertNotIn('Password:', screen)
        self.assertNotIn('AUTHENTICATING', screen)
        self.assertIn('Authentication is required for reload', screen)

    def test_no_terminal_no_agent(self):
        p = subprocess.run(self.caller_argv('--verbose', 'reload'), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, env=self.caller_env(), text=True,
                           timeout=harness.CALL_TIMEOUT + 10)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn('Authentication is required for reload', p.stderr)
        self.assertIn('(org.freedesktop.DBus.Error.InteractiveAuthorizationRequired)', p.stderr)


if __name__ == '__main__':
    harness.main()

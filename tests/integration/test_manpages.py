#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The man pages say what the code does: each page is compared with what it
documents, so that changing one without the other fails (suite 'unit').

- org.hotresetd.Broker1(5) (dbus/org.hotresetd.Broker1.5.scd) against the
  contract dbus/org.hotresetd.Broker1.xml, both ways: every interface,
  method, signal and property of the XML has its line in the page, under
  its interface and kind, with the same argument types and names, property
  type, access and change signal; every such line of the page is in the
  XML. Every error name of the XML and of daemon/core/errors.h is listed
  under ERRORS, and every error listed there exists.
- hotresetctl(1) (client/hotresetctl.1.scd) against the client: every verb
  of "hotresetctl --help" has its entry under COMMANDS and no other entry
  is there; every option any "--help" shows is in the page, and every
  option the page shows exists.
- hotresetd(8) (daemon/hotresetd.8.scd) against "hotresetd --help" (options,
  both ways) and the HOTRESETD_* variables the daemon's sources read.
- hotresetd.conf(5) (policy/hotresetd.conf.5.scd) against the sections and
  keys daemon/auth/policy.c accepts, both ways.

The scdoc sources are read, so this runs without scdoc. Environment:
HOTRESETD_SOURCE_ROOT, HOTRESETD_BIN, HOTRESETCTL_BIN (meson sets them; the
parts that need a binary are skipped without it)."""

import glob
import os
import re
import subprocess
import sys
import unittest
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get('HOTRESETD_SOURCE_ROOT') or os.path.dirname(os.path.dirname(HERE))
EMITS = 'org.freedesktop.DBus.Property.EmitsChangedSignal'
CHANGE = {'const': 'constant', 'true': 'changes signalled', 'invalidates': 'changes invalidated',
          'false': 'no change signal'}
ACCESS = {'read': 'read-only', 'write': 'write-only', 'readwrite': 'read-write'}


def read(*path):
    with open(os.path.join(ROOT, *path), encoding='utf-8') as f:
        return f.read()


def scd_lines(text):
    """The page's lines without scdoc comments (';' at the start)."""
    return [line for line in text.split('\n') if not line.startswith(';')]


def item_lines(lines):
    """(section, subsection, line) of every entry of a definition list: a
    line that starts with *Name* at the left margin and is followed by its
    description, indented with a tab."""
    section = subsection = None
    for i, line in enumerate(lines):
        if line.startswith('# '):
            section, subsection = line[2:].strip(), None
        elif line.startswith('## '):
            subsection = line[3:].strip()
        elif re.match(r'\*[^*\s][^*]*\*', line) and i + 1 < len(lines) and lines[i + 1].startswith('\t'):
            yield section, subsection, line.rstrip()


def args(arglist):
    return ', '.join(f'{a.get("type")} _{a.get("name")}_' for a in arglist)


def expected_api_lines(xml_text):
    """{(interface, kind, name): the page's line} from the contract."""
    out = {}
    for iface in ET.fromstring(xml_text).findall('interface'):
        name = iface.get('name')
        for m in iface.findall('method'):
            ins = [a for a in m.findall('arg') if a.get('direction', 'in') == 'in']
            outs = [a for a in m.findall('arg') if a.get('direction') == 'out']
            line = f'*{m.get("name")}*({args(ins)})'
            if outs:
                line += f' → ({args(outs)})'
            out[(name, 'Methods', m.get('name'))] = line
        for s in iface.findall('signal'):
            out[(name, 'Signals', s.get('name'))] = f'*{s.get("name")}*({args(s.findall("arg"))})'
        for p in iface.findall('property'):
            emits = [a.get('value') for a in p.findall('annotation') if a.get('name') == EMITS]
            out[(name, 'Properties', p.get('name'))] = (
                f'*{p.get("name")}* {p.get("type")} ({ACCESS[p.get("access")]}, {CHANGE[emits[0] if emits else "true"]})')
    return out


def options_in(text):
    return set(re.findall(r'(?<![\w-])--[a-z][a-z0-9-]*', text))


def run_help(binary, *argv):
    r = subprocess.run([binary, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError(f'{binary} {" ".join(argv)} exited with {r.returncode}:\n{r.stdout}')
    return r.stdout


class ApiPage(unittest.TestCase):
    """org.hotresetd.Broker1(5) against dbus/org.hotresetd.Broker1.xml."""

    def setUp(self):
        self.xml = read('dbus', 'org.hotresetd.Broker1.xml')
        self.page = read('dbus', 'org.hotresetd.Broker1.5.scd')

    def test_members_both_ways(self):
        expected = expected_api_lines(self.xml)
        found = {}
        problems = []
        for section, subsection, line in item_lines(scd_lines(self.page)):
            if not section or not section.startswith('INTERFACE '):
                continue
            iface = section[len('INTERFACE '):]
            name = re.match(r'\*([^*]+)\*', line).group(1)
            key = (iface, subsection, name)
            if key in found:
                problems.append(f'{iface} {subsection} {name}: documented twice')
            found[key] = line
        for key, line in sorted(expected.items(), key=lambda kv: tuple(map(str, kv[0]))):
            iface, kind, name = key
            if key not in found:
                problems.append(f'{iface} {kind} {name}: in the XML, not in the man page; expected the line\n    {line}')
            elif found[key] != line:
                problems.append(f'{iface} {kind} {name}: the man page says\n    {found[key]}\n  the XML says\n    {line}')
        for key, line in sorted(found.items(), key=lambda kv: tuple(map(str, kv[0]))):
            if key not in expected:
                problems.append(f'{key[0]} {key[1]} {key[2]}: in the man page, not in the XML:\n    {line}')
        self.assertFalse(problems, 'org.hotresetd.Broker1.5.scd and org.hotresetd.Broker1.xml differ:\n  '
                         + '\n  '.join(problems))

    def test_interfaces_both_ways(self):
        xml_ifaces = {i.get('name') for i in ET.fromstring(self.xml).findall('interface')}
        page_ifaces = {line[len('# INTERFACE '):].strip() for line in scd_lines(self.page)
                       if line.startswith('# INTERFACE ')}
        self.assertEqual(page_ifaces, xml_ifaces)

    def test_errors_both_ways(self):
        prefix = 'org.hotresetd.Broker1.Error.'
        known = set(re.findall(re.escape(prefix) + r'\w+', self.xml))
        known |= set(re.findall(r'#define\s+BUS_ERROR_\w+\s+"(' + re.escape(prefix) + r'\w+)"',
                                read('daemon', 'core', 'errors.h')))
        listed = {line.strip('*') for section, _, line in item_lines(scd_lines(self.page))
                  if section == 'ERRORS' and line.startswith('*' + prefix)}
        self.assertFalse(known - listed, 'errors of the XML or errors.h missing under ERRORS')
        self.assertFalse(listed - known, 'errors under ERRORS that neither the XML nor errors.h has')
        # The standard errors the contract names are explained too.
        for name in set(re.findall(r'org\.freedesktop\.DBus\.Error\.\w+', self.xml)):
            self.assertIn(name, self.page)

    def test_polkit_actions(self):
        actions = set(re.findall(r'<action id="([^"]+)"', read('policy', 'org.hotresetd.policy')))
        # org.hotresetd.query is declared for rules, and asked for by nothing.
        for action in actions - {'org.hotresetd.query'}:
            self.assertIn(action, self.page)


class HotresetctlPage(unittest.TestCase):
    """hotresetctl(1) against the client's own help."""

    def setUp(self):
        self.bin = os.environ.get('HOTRESETCTL_BIN')
        if not self.bin:
            self.skipTest('HOTRESETCTL_BIN is not set')
        self.page = read('client', 'hotresetctl.1.scd')
        self.main_help = run_help(self.bin, '--help')
        commands = self.main_help.split('Commands:\n', 1)[1].split('\nOptions:', 1)[0]
        self.verbs = re.findall(r'^  ([a-z][a-z-]*)', commands, re.M)

    def test_verbs_both_ways(self):
        self.assertTrue(self.verbs, self.main_help)
        documented = [re.match(r'\*([^*]+)\*', line).group(1)
                      for section, _, line in item_lines(scd_lines(self.page)) if section == 'COMMANDS']
        self.assertEqual(sorted(documented), sorted(self.verbs),
                         'the entries under COMMANDS are not the verbs of hotresetctl --help')

    def test_options_both_ways(self):
        helps = self.main_help + ''.join(run_help(self.bin, v, '--help') for v in self.verbs)
        in_help = options_in(helps)
        in_page = options_in('\n'.join(scd_lines(self.page)))
        self.assertFalse(in_help - in_page, 'options of hotresetctl missing from hotresetctl.1.scd')
        self.assertFalse(in_page - in_help, 'options in hotresetctl.1.scd that hotresetctl does not have')

    def test_aliases(self):
        for verb in self.verbs:
            alias = re.search(r'Alias: ([a-z-]+)', run_help(self.bin, verb, '--help'))
            if alias:
                self.assertIn(f'*{alias.group(1)}*', self.page, f'the alias of {verb}')


class HotresetdPage(unittest.TestCase):
    """hotresetd(8) against the daemon's help and sources."""

    def setUp(self):
        self.page = read('daemon', 'hotresetd.8.scd')

    def test_options_both_ways(self):
        binary = os.environ.get('HOTRESETD_BIN')
        if not binary:
            self.skipTest('HOTRESETD_BIN is not set')
        in_help = options_in(run_help(binary, '--help'))
        in_page = options_in('\n'.join(scd_lines(self.page)))
        self.assertFalse(in_help - in_page, 'options of hotresetd missing from hotresetd.8.scd')
        self.assertFalse(in_page - in_help, 'options in hotresetd.8.scd that hotresetd does not have')

    def test_environment(self):
        read_vars = set()
        for path in glob.glob(os.path.join(ROOT, 'daemon', '**', '*.c'), recursive=True):
            with open(path, encoding='utf-8') as f:
                read_vars |= set(re.findall(r'getenv\("(HOTRESETD_\w+)"\)', f.read()))
        self.assertTrue(read_vars)
        for var in read_vars:
            self.assertIn(f'*{var}*', self.page, f'{var} (read by the daemon) is not under ENVIRONMENT')
        for var in set(re.findall(r'\*(HOTRESETD_\w+)\*', self.page)):
            self.assertIn(var, read_vars, f'{var} is documented but the daemon does not read it')


class ConfPage(unittest.TestCase):
    """hotresetd.conf(5) against daemon/auth/policy.c."""

    def test_sections_and_keys_both_ways(self):
        src = read('daemon', 'auth', 'policy.c')
        sections = set(re.findall(r'streq\(section, "(\w+)"\)', src))
        keys = set(re.findall(r'\[POLICY_LIMIT_\w+\]\s*=\s*"(\w+)"', src))
        keys |= set(re.findall(r'streq\(key, "(\w+)"\)', src))
        for block in re.findall(r'keys\[\]\s*=\s*\{([^}]*)\}', src):
            keys |= set(re.findall(r'"(\w+)"', block))
        self.assertEqual(sections, {'Devices', 'Limits', 'Manager'}, 'policy.c changed: update this test')
        self.assertGreaterEqual(len(keys), 12)

        page = scd_lines(read('policy', 'hotresetd.conf.5.scd'))
        page_sections = {m.group(1) for line in page for m in [re.match(r'## \[(\w+)\]', line)] if m}
        page_keys = {k for _, _, line in item_lines(page) for k in re.findall(r'\*(\w+)=\*', line)}
        self.assertEqual(page_sections, sections)
        self.assertFalse(keys - page_keys, 'keys of policy.c missing from hotresetd.conf.5.scd')
        self.assertFalse(page_keys - keys, 'keys in hotresetd.conf.5.scd that policy.c does not accept')


if __name__ == '__main__':
    unittest.main(verbosity=2)

# SPDX-License-Identifier: LGPL-2.1-or-later
"""vm-systemd's guest side: the installed package under systemd as PID 1.

Run by hrvm-test.service (written by sd-init.sh) as
`python3 sdguest.py SHARE` once the guest booted with systemd; SHARE is
the writable 9p share (config.json in, results/ and guest.log out). Only
the standard library: callers are `busctl` (the error *name* comes from
sd-bus's debug log, hrvm.busctl's way), `systemctl`, `journalctl -o json`,
`setpriv` for the unprivileged user.

The scenarios run in order on one boot, each from the state the previous
one left (the topology's docstring in hrvm.systemd_topology and
tests/vm/README.md say what each asserts). Every check is recorded
(vmm.Record); the host prints TAP with vmm.report. The last thing the
script does is power the guest off (hrvm-test.service's SuccessAction=).
"""

import json
import os
import pwd
import re
import subprocess
import sys
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hrvm  # noqa: E402
import vmm  # noqa: E402

F0, F1, LATE = '0000:01:00.0', '0000:01:00.1', '0000:02:00.0'
USER = 'hrtest'
UNIT = 'hotresetd.service'
RULES = '/etc/polkit-1/rules.d'
USER_RULE = RULES + '/50-hrvm-user.rules'
MACHINE_RULE = RULES + '/50-hrvm-machine.rules'
DROPIN = '/etc/systemd/system/hotresetd.service.d/hrvm-group.conf'
GRANTED_MACHINE, OTHER_MACHINE = 'hrvm-granted', 'hrvm-other'
MSG = {
    'LEASE_CREATED': '78d8c9b1a22d4f2898acc19b93cae2d9',
    'DEVICE_ATTACHED': 'a3412200f9f649de939f2af05297a122',
    'RESET_DONE': '0969e552773a4531aac40911a23aada5',
    'AUTH_REFUSED': 'd86ce3bfb1c14c2686991d9604a78a62',
    'LEASE_RELEASED': '582fce96f19541958a05455481badedd',
}
ACCESS_DENIED = 'org.freedesktop.DBus.Error.AccessDenied'


def t(seconds):
    return seconds * hrvm.TIMEOUT_SCALE


def sh(*cmd, check=False, timeout=120, input=None):
    p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=t(timeout), input=input,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise RuntimeError(f'{" ".join(map(str, cmd))}: exit status {p.returncode}: {p.stderr.strip()}')
    return p


def as_user(user=USER):
    """setpriv (util-linux 2.38 takes numeric ids only) to the user, with
    its groups."""
    pw = pwd.getpwnam(user)
    return ['setpriv', f'--reuid={pw.pw_uid}', f'--regid={pw.pw_gid}', '--init-groups', '--']


def bus(*args, user=None, prefix=(), timeout=120):
    """busctl on the system bus, as root or (user=) as an unprivileged
    user; returns the JSON reply's data or raises hrvm.DBusError with the
    error name."""
    cmd = list(prefix) + (as_user(user) if user else []) + [
        'env', 'SYSTEMD_LOG_LEVEL=debug', 'busctl', '--system', '--json=short', f'--timeout={int(t(timeout))}',
        '--'] + [str(a) for a in args]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       stdin=subprocess.DEVNULL, timeout=t(timeout) + 30)
    if p.returncode == 0:
        return (json.loads(p.stdout) if p.stdout.strip() else {'data': []})['data']
    m = None
    for m in hrvm.ERROR_LINE.finditer(p.stderr):
        pass
    if m:
        raise hrvm.DBusError(m.group(1), m.group(2))
    raise hrvm.DBusError('busctl-failed', p.stderr.strip()[-500:])


def call(path, iface, method, *sig_args, user=None, prefix=()):
    return bus('call', hrvm.BUS_NAME, path, iface, method, *sig_args, user=user, prefix=prefix)


def prop(path, iface, name, user=None):
    return bus('get-property', hrvm.BUS_NAME, path, iface, name, user=user)


def dev(address, name):
    return prop(hrvm.device_path(address), hrvm.DEVICE_IFACE, name)


def unit_show(*props):
    p = sh('systemctl', 'show', UNIT, '-p', ','.join(props))
    return dict(line.split('=', 1) for line in p.stdout.splitlines() if '=' in line)


def journal(since_cursor=None):
    """The daemon's journal entries (hotresetd.service), parsed."""
    cmd = ['journalctl', '-o', 'json', '--no-pager', f'_SYSTEMD_UNIT={UNIT}']
    if since_cursor:
        cmd += ['--after-cursor', since_cursor]
    out = []
    for line in sh(*cmd).stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def journal_text():
    return sh('journalctl', '--no-pager', '-o', 'short-monotonic', '-u', UNIT, '-u', 'polkit.service',
              '-u', 'dbus.service', '-u', 'systemd-machined.service').stdout


def cursor():
    p = sh('journalctl', '-n', '1', '-o', 'json', '--no-pager')
    try:
        return json.loads(p.stdout.splitlines()[-1])['__CURSOR']
    except (ValueError, IndexError, KeyError):
        return None


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def user_rule():
    """Grants the test user every hotresetd action, as an administrator's
    rule would (the installed 50-…example grants by group)."""
    write(USER_RULE, f'''polkit.addRule(function(action, subject) {{
    if (action.id.indexOf("org.hotresetd.") == 0 && subject.user == "{USER}")
        return polkit.Result.YES;
    return polkit.Result.NOT_HANDLED;
}});
''')


def machine_rule():
    """Grants by the machine the caller runs in (the daemon's `machine`
    detail, from sd_pid_get_machine_name), whoever the user."""
    write(MACHINE_RULE, f'''polkit.addRule(function(action, subject) {{
    if (action.id.indexOf("org.hotresetd.") == 0 && action.lookup("machine") == "{GRANTED_MACHINE}")
        return polkit.Result.YES;
    return polkit.Result.NOT_HANDLED;
}});
''')


def polkit_says(want):
    """Waits until polkitd (which reloads rules.d on inotify) answers
    org.hotresetd.acquire for the test user as `want` (True: authorized).
    pkcheck asks about its own process, as the user."""
    end = time.monotonic() + t(30)
    while True:
        p = sh(*as_user(), 'sh', '-c', 'exec pkcheck --action-id org.hotresetd.acquire --process $$')
        if (p.returncode == 0) == want:
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.3)


def bind(address, driver):
    hrvm.set_driver(address, driver, 'e1000e')


class Guest:
    def __init__(self, cfg, topo, share):
        self.cfg = cfg
        self.topo = topo
        self.share = share
        self.uid = None
        self.ctx = None        # the lease of sd-activate, kept across the restart
        self.timings = {}
        self.security = None

    # -- scenarios -------------------------------------------------------

    def sc_install(self, rec):
        sh('useradd', '--create-home', USER, check=True)
        self.uid = pwd.getpwnam(USER).pw_uid
        rec.check(f'an unprivileged user {USER}', self.uid != 0, got=self.uid)
        # man-db's trigger rebuilds the whole manual page index after any
        # package with man pages (minutes over 9p under TCG); the
        # package's own scripts are what this tests. man-db skips the
        # trigger when this file is absent (its documented switch,
        # debconf man-db/auto-update).
        if os.path.exists('/var/lib/man-db/auto-update'):
            os.unlink('/var/lib/man-db/auto-update')
        t0 = time.monotonic()
        p = sh('dpkg', '-i', self.cfg['deb'], timeout=600)
        print(p.stdout + p.stderr, flush=True)
        self.timings['dpkg -i'] = round(time.monotonic() - t0, 2)
        rec.check('dpkg -i hotresetd.deb succeeds', p.returncode == 0, expected=0,
                  got=p.returncode if p.returncode == 0 else (p.stdout + p.stderr)[-2000:])
        rec.equal('the postinst enabled the unit (systemctl is-enabled)',
                  sh('systemctl', 'is-enabled', UNIT).stdout.strip(), 'enabled')
        rec.equal('the postinst started the unit (systemctl is-active)',
                  sh('systemctl', 'is-active', UNIT).stdout.strip(), 'active')
        rec.equal('the daemon chose the iommufd model (Manager.Backend)',
                  prop(hrvm.ROOT_PATH, hrvm.MANAGER_IFACE, 'Backend'), 'iommufd')
        sh('systemctl', 'stop', UNIT, check=True)
        rec.equal('stopped for the activation test (systemctl is-active)',
                  sh('systemctl', 'is-active', UNIT).stdout.strip(), 'inactive')

    def sc_activate(self, rec):
        user_rule()
        rec.check('polkit authorizes org.hotresetd.acquire for the user once the rule is in rules.d',
                  polkit_says(True), expected='pkcheck exit status 0')
        self.cur = cursor()
        rec.equal('the daemon is not running before the call', sh('systemctl', 'is-active', UNIT).stdout.strip(),
                  'inactive')
        t0 = time.monotonic()
        ctx = rec.call('busctl call CreateContext {Persistent: true} as the user (activates the daemon)', call,
                       hrvm.ROOT_PATH, hrvm.MANAGER_IFACE, 'CreateContext', 'a{sv}', 1, 'Persistent', 'b', 'true',
                       user=USER)[0]
        self.timings['activation + CreateContext'] = round(time.monotonic() - t0, 2)
        rec.check('CreateContext returns a context path', ctx.startswith(hrvm.ROOT_PATH + '/context/'), got=ctx)
        st = unit_show('ActiveState', 'MainPID')
        rec.equal('D-Bus activation started hotresetd.service', st['ActiveState'], 'active')
        self.ctx = ctx
        for a in (F0, F1):
            rec.call(f'AttachDevice({a}) as the user', call, ctx, hrvm.CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', a, 0,
                     user=USER)
        affected = rec.call(f'Context.HotReset({F0}) as the user: a real hot reset', call, ctx, hrvm.CONTEXT_IFACE,
                            'HotReset', 's', F0, user=USER)[0]
        rec.equal('the reset hit both functions', sorted(affected), [F0, F1])
        rec.equal(f'{F0} is held by the lease (Device.Context)', dev(F0, 'Context'), ctx)
        rec.equal('the lease is the user\'s (Context.OwnerUid)', prop(ctx, hrvm.CONTEXT_IFACE, 'OwnerUid'), self.uid)

    def sc_restart(self, rec):
        ctx = self.ctx
        rec.check('a lease from sd-activate', bool(ctx), got=ctx)
        before = unit_show('MainPID')['MainPID']
        sh('systemctl', 'restart', UNIT, check=True, timeout=120)
        st = unit_show('MainPID', 'ActiveState', 'NRestarts')
        rec.equal('active after systemctl restart', st['ActiveState'], 'active')
        rec.check('a new process (MainPID)', st['MainPID'] not in ('0', before), expected=f'not {before}',
                  got=st['MainPID'])
        contexts = [c[0] for c in rec.call('ListContexts', call, hrvm.ROOT_PATH, hrvm.MANAGER_IFACE,
                                           'ListContexts')[0]]
        rec.check('the lease is still there, same object path (ListContexts)', ctx in contexts, expected=ctx,
                  got=contexts, error='lease-lost' if ctx not in contexts else None)
        rec.equal(f'{F0} still held by it (Device.Context)', dev(F0, 'Context'), ctx)
        rec.equal(f'{F1} still held by it (Device.Context)', dev(F1, 'Context'), ctx)
        affected = rec.call('Context.HotReset through the kept lease (its files came back from the fd store)',
                            call, ctx, hrvm.CONTEXT_IFACE, 'HotReset', 's', F0, user=USER)[0]
        rec.equal('the reset hit both functions', sorted(affected), [F0, F1])

    def sc_refused(self, rec):
        os.unlink(USER_RULE)
        rec.check('polkit no longer authorizes the user once the rule is gone', polkit_says(False),
                  expected='pkcheck exit status 1')
        self.cur_refused = cursor()
        before = self.state()
        rec.refused('CreateContext as the user without the rule', lambda: call(
            hrvm.ROOT_PATH, hrvm.MANAGER_IFACE, 'CreateContext', 'a{sv}', 0, user=USER), ACCESS_DENIED)
        if self.ctx:
            rec.refused(f'HotReset({F0}) through the user\'s own lease without the rule', lambda: call(
                self.ctx, hrvm.CONTEXT_IFACE, 'HotReset', 's', F0, user=USER), ACCESS_DENIED)
        # An unleased reset of a device nobody holds (the daemon answers
        # InUse for a held one before it asks polkit): the late device, on
        # vfio-pci for this call only.
        bind(LATE, 'vfio-pci')
        end = time.monotonic() + t(30)
        while dev(LATE, 'Driver') != 'vfio-pci' and time.monotonic() < end:
            time.sleep(0.2)
        try:
            rec.refused(f'Manager.HotReset({LATE}) (unleased, free) as the user without the rule', lambda: call(
                hrvm.ROOT_PATH, hrvm.MANAGER_IFACE, 'HotReset', 'sa{sv}', LATE, 0, user=USER), ACCESS_DENIED)
        finally:
            bind(LATE, 'native')
        rec.equal('nothing changed: contexts and holders as before', self.state(), before)
        p = subprocess.run(as_user() + ['busctl', '--system', 'call', hrvm.BUS_NAME, hrvm.ROOT_PATH,
                                        hrvm.MANAGER_IFACE, 'CreateContext', 'a{sv}', '0'],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        # busctl prints the errno text of AccessDenied ("Access denied"),
        # not the daemon's message; the journal has the reason.
        rec.check('plain busctl fails with "Access denied"', p.returncode != 0 and 'Access denied' in p.stdout,
                  got=p.stdout.strip())

    def state(self):
        ctxs = sorted((c[0], c[3]) for c in call(hrvm.ROOT_PATH, hrvm.MANAGER_IFACE, 'ListContexts')[0])
        return {'contexts': ctxs, 'holders': {a: dev(a, 'Context') for a in (F0, F1, LATE)}}

    def sc_journal(self, rec):
        entries = journal()
        self.timings['journal entries'] = len(entries)
        uid = str(self.uid)

        def find(kind, **fields):
            return [e for e in entries if e.get('MESSAGE_ID') == MSG[kind]
                    and all(e.get(k) == v for k, v in fields.items())]

        def one(what, kind, **fields):
            hits = find(kind, **fields)
            rec.check(what, bool(hits), expected={'MESSAGE_ID': MSG[kind], **fields},
                      got=[{k: v for k, v in e.items() if k.startswith('HOTRESETD_') or k == 'MESSAGE_ID'}
                           for e in entries if e.get('MESSAGE_ID') == MSG[kind]][-4:])
            return hits[0]

        e = one('lease created: context, caller uid, comm busctl', 'LEASE_CREATED', HOTRESETD_CONTEXT=self.ctx,
                HOTRESETD_CALLER_UID=uid, HOTRESETD_CALLER_COMM='busctl',
                HOTRESETD_RESULT='success', HOTRESETD_METHOD=hrvm.MANAGER_IFACE + '.CreateContext')
        rec.check('the caller\'s pid and unit are named', e.get('HOTRESETD_CALLER_PID', '').isdigit()
                  and e.get('HOTRESETD_CALLER_UNIT') == 'hrvm-test.service',
                  expected={'HOTRESETD_CALLER_PID': 'a pid', 'HOTRESETD_CALLER_UNIT': 'hrvm-test.service'},
                  got={k: e.get(k) for k in ('HOTRESETD_CALLER_PID', 'HOTRESETD_CALLER_UNIT')})
        rec.equal('... logged by the unit, at info', (e.get('_SYSTEMD_UNIT'), e.get('PRIORITY')), (UNIT, '6'))
        for a in (F0, F1):
            one(f'device attached: {a}', 'DEVICE_ATTACHED', HOTRESETD_DEVICE=a, HOTRESETD_CONTEXT=self.ctx,
                HOTRESETD_CALLER_UID=uid, HOTRESETD_RESULT='success')
        one(f'reset done: {F0} through the lease', 'RESET_DONE', HOTRESETD_DEVICE=F0, HOTRESETD_CONTEXT=self.ctx)
        one('authorization refused: CreateContext', 'AUTH_REFUSED', HOTRESETD_CALLER_UID=uid,
            HOTRESETD_RESULT=ACCESS_DENIED, HOTRESETD_METHOD=hrvm.MANAGER_IFACE + '.CreateContext')
        one(f'authorization refused: Manager.HotReset({LATE})', 'AUTH_REFUSED', HOTRESETD_CALLER_UID=uid,
            HOTRESETD_DEVICE=LATE, HOTRESETD_RESULT=ACCESS_DENIED,
            HOTRESETD_METHOD=hrvm.MANAGER_IFACE + '.HotReset')
        if self.ctx:
            one(f'authorization refused: HotReset({F0}) on the lease', 'AUTH_REFUSED', HOTRESETD_CALLER_UID=uid,
                HOTRESETD_DEVICE=F0, HOTRESETD_CONTEXT=self.ctx, HOTRESETD_RESULT=ACCESS_DENIED,
                HOTRESETD_METHOD=hrvm.CONTEXT_IFACE + '.HotReset')
        refused = [e for e in entries if e.get('MESSAGE_ID') == MSG['AUTH_REFUSED']]
        rec.check('authorization refusals are logged at notice', refused and all(e.get('PRIORITY') == '5'
                                                                               for e in refused),
                  got=[e.get('PRIORITY') for e in refused])

    def release_all(self, rec):
        for c in call(hrvm.ROOT_PATH, hrvm.MANAGER_IFACE, 'ListContexts')[0]:
            rec.call(f'Release {c[0]} (root)', call, c[0], hrvm.CONTEXT_IFACE, 'Release')

    def restart_model(self, rec, model):
        if model == 'group':
            write(DROPIN, '[Service]\nExecStart=\nExecStart=/usr/libexec/hotresetd --uapi=group\n')
        elif os.path.exists(DROPIN):
            os.unlink(DROPIN)
        sh('systemctl', 'daemon-reload', check=True)
        sh('systemctl', 'restart', UNIT, check=True)
        backend = prop(hrvm.ROOT_PATH, hrvm.MANAGER_IFACE, 'Backend')
        rec.equal(f'the installed unit runs the {model} model (Manager.Backend)', backend, model)

    def lease_and_reset(self, rec, addresses, expect):
        ctx = rec.call('CreateContext as the user', call, hrvm.ROOT_PATH, hrvm.MANAGER_IFACE, 'CreateContext',
                       'a{sv}', 1, 'Persistent', 'b', 'true', user=USER)[0]
        for a in addresses:
            rec.call(f'AttachDevice({a}) under the sandbox', call, ctx, hrvm.CONTEXT_IFACE, 'AttachDevice',
                     'sa{sv}', a, 0, user=USER)
        affected = rec.call(f'HotReset({addresses[0]}): a real reset under the sandbox', call, ctx,
                            hrvm.CONTEXT_IFACE, 'HotReset', 's', addresses[0], user=USER)[0]
        rec.equal('the devices the reset hit', sorted(affected), sorted(expect))
        rec.call('Release', call, ctx, hrvm.CONTEXT_IFACE, 'Release', user=USER)

    def late_bind(self, rec):
        rec.equal(f'{LATE} is on its native driver while the daemon starts', dev(LATE, 'Driver'), 'e1000e')
        bind(LATE, 'vfio-pci')
        end = time.monotonic() + t(30)
        while dev(LATE, 'Driver') != 'vfio-pci' and time.monotonic() < end:
            time.sleep(0.2)
        rec.equal(f'the daemon saw {LATE} bound to vfio-pci after its start (udev)', dev(LATE, 'Driver'),
                  'vfio-pci')
        self.lease_and_reset(rec, [LATE], [LATE])
        bind(LATE, 'native')

    def sc_models(self, rec, model):
        user_rule()
        rec.check('polkit authorizes the user again', polkit_says(True))
        self.release_all(rec)
        self.restart_model(rec, model)
        sh('systemctl', 'start', 'systemd-udevd.service')
        nodes = sorted(os.listdir('/dev/vfio')) + (['devices/' + n for n in sorted(os.listdir('/dev/vfio/devices'))]
                                                   if os.path.isdir('/dev/vfio/devices') else [])
        rec.check('the nodes of both models exist (/dev/iommu, /dev/vfio/vfio, /dev/vfio/N, '
                  '/dev/vfio/devices/vfioN)', os.path.exists('/dev/iommu') and 'vfio' in nodes, got=nodes)
        self.lease_and_reset(rec, [F0, F1], [F0, F1])
        if model == 'group':
            self.restart_keeps_group_lease(rec)
        self.late_bind(rec)

    def restart_keeps_group_lease(self, rec):
        """The legacy model's files across systemctl restart: the container,
        the group file and the device files GET_DEVICE_FD gave (anonymous
        inodes the daemon can only check by kind) come back from the store."""
        ctx = rec.call('CreateContext as the user (group model)', call, hrvm.ROOT_PATH, hrvm.MANAGER_IFACE,
                       'CreateContext', 'a{sv}', 1, 'Persistent', 'b', 'true', user=USER)[0]
        for a in (F0, F1):
            rec.call(f'AttachDevice({a})', call, ctx, hrvm.CONTEXT_IFACE, 'AttachDevice', 'sa{sv}', a, 0, user=USER)
        before = unit_show('MainPID')['MainPID']
        sh('systemctl', 'restart', UNIT, check=True, timeout=120)
        rec.check('a new process after systemctl restart (group model)', unit_show('MainPID')['MainPID'] != before)
        contexts = [c[0] for c in call(hrvm.ROOT_PATH, hrvm.MANAGER_IFACE, 'ListContexts')[0]]
        rec.check('the group-model lease is still there, same path', ctx in contexts, expected=ctx, got=contexts)
        rec.equal(f'{F0} still held by it', dev(F0, 'Context'), ctx)
        rec.equal(f'{F1} still held by it', dev(F1, 'Context'), ctx)
        affected = rec.call('HotReset through the restored container, group and device files', call, ctx,
                            hrvm.CONTEXT_IFACE, 'HotReset', 's', F0, user=USER)[0]
        rec.equal('the reset hit both functions (group model, after the restart)', sorted(affected), [F0, F1])
        rec.call('Release the group-model lease', call, ctx, hrvm.CONTEXT_IFACE, 'Release', user=USER)
        # The group is free again for the kernel: a new lease opens it.
        self.lease_and_reset(rec, [F0, F1], [F0, F1])

    def sc_machine(self, rec):
        for f in (USER_RULE,):
            if os.path.exists(f):
                os.unlink(f)
        machine_rule()
        rec.check('the user alone is not authorized (no user rule)', polkit_says(False))
        self.release_all(rec)
        seen = len(journal())
        for name, granted in ((GRANTED_MACHINE, True), (OTHER_MACHINE, False)):
            r = self.in_machine(rec, name)
            if granted:
                rec.check(f'CreateContext from inside machine {name}: granted by the rule on the machine detail',
                          r.get('ok'), expected='a context', got=r)
                rec.check('the lease is the user\'s', r.get('uid') == self.uid, got=r)
            else:
                rec.check(f'CreateContext from inside machine {name}: refused', r.get('error') == ACCESS_DENIED,
                          expected=ACCESS_DENIED, got=r)
        # The audit entries name the machine each call came from.
        calls = [e for e in journal()[seen:] if e.get('HOTRESETD_METHOD', '').endswith('.CreateContext')]
        for name, result in ((GRANTED_MACHINE, 'success'), (OTHER_MACHINE, ACCESS_DENIED)):
            rec.check(f'the journal entry of the call from {name} has HOTRESETD_CALLER_MACHINE={name}',
                      any(e.get('HOTRESETD_CALLER_MACHINE') == name and e.get('HOTRESETD_RESULT') == result
                          for e in calls),
                      got=[{k: e.get(k) for k in ('HOTRESETD_CALLER_MACHINE', 'HOTRESETD_RESULT')} for e in calls])
        self.release_all(rec)
        os.unlink(MACHINE_RULE)

    def in_machine(self, rec, name):
        """A process in its own scope, registered with systemd-machined as
        machine `name` (RegisterMachine, the process as its leader), that
        then becomes busctl as the test user, same pid."""
        d = f'/run/hrvm-machine-{name}'
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        script = (f'echo $$ > {d}/pid; while [ ! -e {d}/go ]; do sleep 0.1; done; '
                  f'exec {" ".join(as_user())} env SYSTEMD_LOG_LEVEL=debug busctl --system --json=short '
                  f'call {hrvm.BUS_NAME} {hrvm.ROOT_PATH} {hrvm.MANAGER_IFACE} CreateContext a{{sv}} 1 '
                  f'Persistent b true')
        p = subprocess.Popen(['systemd-run', '--scope', '--quiet', f'--unit={name}', '--',
                              'sh', '-c', script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True)
        end = time.monotonic() + t(30)
        while not os.path.exists(f'{d}/pid') and time.monotonic() < end:
            time.sleep(0.1)
        pid = int(open(f'{d}/pid').read())
        rec.call(f'RegisterMachine {name} (leader: pid {pid}, scope {name}.scope)', bus, 'call',
                 'org.freedesktop.machine1', '/org/freedesktop/machine1', 'org.freedesktop.machine1.Manager',
                 'RegisterMachine', 'sayssus', name, 0, 'hotresetd-vm-test', 'container', pid, '/')
        got = sh('machinectl', 'show', name, '-p', 'Unit', '-p', 'Leader').stdout.split()
        rec.check(f'machined knows {name} by its scope and leader', f'Unit={name}.scope' in got
                  and f'Leader={pid}' in got, got=got)
        open(f'{d}/go', 'w').close()
        out, err = p.communicate(timeout=t(120))
        sh('machinectl', 'terminate', name)
        if p.returncode == 0:
            ctx = json.loads(out)['data'][0]
            return {'ok': True, 'context': ctx, 'uid': prop(ctx, hrvm.CONTEXT_IFACE, 'OwnerUid')}
        m = None
        for m in hrvm.ERROR_LINE.finditer(err):
            pass
        return {'ok': False, 'error': m.group(1) if m else None, 'message': m.group(2) if m else err[-500:]}

    def sc_security(self, rec):
        p = sh('systemd-analyze', 'security', '--no-pager', UNIT)
        m = re.search(r'Overall exposure level for \S+: ([0-9.]+)', p.stdout)
        rec.check('systemd-analyze security answers', m is not None, got=p.stdout[-400:] + p.stderr[-400:])
        self.security = float(m.group(1))
        self.timings['exposure'] = self.security
        self.security_text = p.stdout
        rec.check('exposure level <= 2.0 (systemd-analyze security, on the running unit)', self.security <= 2.0,
                  expected='<= 2.0', got=self.security)
        # Whatever the sandbox broke shows as the daemon's own warnings or
        # errors (a refused open, a filtered system call's EPERM): none in
        # the whole run.
        bad = [(e.get('PRIORITY'), e.get('MESSAGE')) for e in journal() if int(e.get('PRIORITY', '6')) <= 4]
        rec.check('no warning or error from the daemon in the whole run (journal, PRIORITY <= 4)', not bad,
                  expected=[], got=bad[-10:])

    # -- driver ------------------------------------------------------------

    def run(self, sc):
        rec = vmm.Record()
        t0 = time.monotonic()
        self.timings = {}
        res = {'scenario': sc.to_json()}
        try:
            fn = {'sd-install': self.sc_install, 'sd-activate': self.sc_activate, 'sd-restart': self.sc_restart,
                  'sd-refused': self.sc_refused, 'sd-journal': self.sc_journal,
                  'sd-sandbox-iommufd': lambda r: self.sc_models(r, 'iommufd'),
                  'sd-sandbox-group': lambda r: self.sc_models(r, 'group'),
                  'sd-machine': self.sc_machine, 'sd-security': self.sc_security}[sc.name]
            fn(rec)
        except vmm.Failed:
            pass
        except Exception:
            res['guest_error'] = traceback.format_exc()
        res['checks'] = rec.checks
        res['failure'] = rec.failure
        st = unit_show('Result', 'NRestarts', 'ActiveState')
        res['daemon'] = {'command': [f'systemctl ({UNIT}: {st})'],
                         'exit_status': 0 if st.get('Result') == 'success' else st.get('Result'),
                         'log': journal_text()[-12000:]}
        if self.security is not None and sc.name == 'sd-security':
            res['daemon']['log'] = self.security_text
        res['timings'] = dict(self.timings, total=round(time.monotonic() - t0, 2))
        return res


def main(share):
    with open(os.path.join(share, 'config.json')) as f:
        cfg = json.load(f)
    hrvm.TIMEOUT_SCALE = cfg.get('timeout_scale', 1)
    topo = hrvm.TOPOLOGIES[cfg['topology']]
    os.makedirs(os.path.join(share, 'results'), exist_ok=True)
    p = sh('systemctl', 'is-system-running', '--wait', timeout=300)
    boot = sh('systemd-analyze', 'time').stdout.strip()
    print(f'guest: system {p.stdout.strip()}; {boot}', flush=True)
    print(sh('systemctl', '--failed', '--no-pager').stdout, flush=True)
    with open(os.path.join(share, 'boot.txt'), 'w') as f:
        f.write(boot + '\n')
    for a in (F0, F1):
        bind(a, 'vfio-pci')
    g = Guest(cfg, topo, share)
    for sc in topo.scenarios:
        if cfg.get('only') and sc.name not in cfg['only']:
            continue
        print(f'guest: scenario {sc.name}', flush=True)
        try:
            res = g.run(sc)
        except Exception:
            res = {'scenario': sc.to_json(), 'guest_error': traceback.format_exc()}
        with open(os.path.join(share, 'results', sc.name + '.json'), 'w') as f:
            json.dump(res, f, indent=1)
        print(f'guest: scenario {sc.name} done {res.get("timings")}', flush=True)
    with open(os.path.join(share, 'status'), 'w') as f:
        f.write('0\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))

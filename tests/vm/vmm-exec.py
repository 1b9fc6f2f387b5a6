#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Takes a lease from hotresetd and becomes the VMM: the VM tier's stand-in
for a VM manager that starts QEMU on the broker's files (what `hotresetctl
run` does, written against the D-Bus API with python3-dbus).

  vmm-exec.py --bus ADDRESS --status-fd N [--pid-lease] [--description TEXT]
              --device ADDR [--device ADDR ...] -- PROGRAM ARG...

1. Manager.CreateContext: with --pid-lease, {"Pid": <a pidfd of this
   process>}, so the lease lasts as long as this process — which, after the
   exec below, is the VMM; else a lease tied to this bus connection (which
   ends at the exec: the tier uses that only to show that it does).
2. Context.AttachDevice(ADDR, {"Bind": false}) for each device (the VMM
   binds the cdev to its own iommufd), Context.OpenIommufd(),
   Context.OpenDevice(ADDR): the files, received over SCM_RIGHTS
   (dbus.types.UnixFd.take()) and made inheritable.
3. Writes one JSON line to fd N and closes it: {"context": PATH,
   "unique_name": NAME, "pid": PID, "iommufd": FD, "devices": {ADDR: FD}};
   on a refusal {"error": D-Bus error name, "message": ..., "step": METHOD}
   and exits 3.
4. Closes its bus connection (the lease's creator is gone from the bus from
   here on) and execs PROGRAM with {iommufd} and {device:ADDR} in its
   arguments replaced by the file numbers. The pid stays the same.
"""

import json
import os
import sys

import dbus

BUS_NAME = 'org.hotresetd.Broker1'
ROOT_PATH = '/org/hotresetd/Broker1'
MANAGER_IFACE = 'org.hotresetd.Broker1.Manager'
CONTEXT_IFACE = 'org.hotresetd.Broker1.Context'


def main(argv):
    if '--' not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    opts, program = argv[1:argv.index('--')], argv[argv.index('--') + 1:]
    bus_address, status_fd, pid_lease, description, devices = None, None, False, 'VM tier VMM', []
    i = 0
    while i < len(opts):
        o = opts[i]
        if o == '--pid-lease':
            pid_lease = True
            i += 1
            continue
        if i + 1 >= len(opts):
            print(f'vmm-exec: {o} needs a value', file=sys.stderr)
            return 2
        v = opts[i + 1]
        if o == '--bus':
            bus_address = v
        elif o == '--status-fd':
            status_fd = int(v)
        elif o == '--description':
            description = v
        elif o == '--device':
            devices.append(v)
        else:
            print(f'vmm-exec: unknown option {o}', file=sys.stderr)
            return 2
        i += 2
    if not bus_address or status_fd is None or not devices or not program:
        print(__doc__, file=sys.stderr)
        return 2
    status = os.fdopen(status_fd, 'w')

    def report(obj):
        status.write(json.dumps(obj) + '\n')
        status.flush()

    conn = dbus.bus.BusConnection(bus_address)
    step = 'CreateContext'
    try:
        manager = dbus.Interface(conn.get_object(BUS_NAME, ROOT_PATH, introspect=False), MANAGER_IFACE)
        options = {'Description': dbus.String(description)}
        if pid_lease:
            pidfd = os.pidfd_open(os.getpid())
            options['Pid'] = dbus.types.UnixFd(pidfd)  # sent as a duplicate
        path = manager.CreateContext(dbus.Dictionary(options, signature='sv'), timeout=120)
        if pid_lease:
            os.close(pidfd)
        ctx = dbus.Interface(conn.get_object(BUS_NAME, path, introspect=False), CONTEXT_IFACE)
        files = {}
        for a in devices:
            step = f'AttachDevice {a}'
            ctx.AttachDevice(a, dbus.Dictionary({'Bind': dbus.Boolean(False)}, signature='sv'), timeout=120)
        step = 'OpenIommufd'
        iommufd = ctx.OpenIommufd(timeout=120).take()
        for a in devices:
            step = f'OpenDevice {a}'
            files[a] = ctx.OpenDevice(a, timeout=120).take()
    except dbus.exceptions.DBusException as e:
        report({'error': e.get_dbus_name(), 'message': e.get_dbus_message(), 'step': step})
        return 3
    for fd in [iommufd] + list(files.values()):
        os.set_inheritable(fd, True)
    report({'context': str(path), 'unique_name': str(conn.get_unique_name()), 'pid': os.getpid(),
            'iommufd': iommufd, 'devices': files})
    status.close()
    conn.close()
    args = []
    for arg in program:
        arg = arg.replace('{iommufd}', str(iommufd))
        for a, fd in files.items():
            arg = arg.replace('{device:%s}' % a, str(fd))
        args.append(arg)
    os.execvp(args[0], args)


if __name__ == '__main__':
    sys.exit(main(sys.argv))

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A VM manager on hotresetd, in python3-dbus: lease PCI devices for a VMM,
start the VMM on the broker's files, start it again on the same lease, and
take leases back after the manager itself restarted. The sequence is the
one the README's "For VM managers" describes.

  vmm-client.py start [--persistent] [--detach] --device ADDRESS... -- VMM [ARGS...]
      Starts VMM with the context's iommufd and the devices' files
      inherited; {iommufd} and {device:ADDRESS} in ARGS become their
      numbers, e.g. (QEMU):
        -object iommufd,id=i0,fd={iommufd}
        -device vfio-pci,iommufd=i0,fd={device:0000:01:00.0}
      By default the lease is tied to the VMM's process (it ends when the
      VMM exits, whether or not this manager still runs); --persistent
      keeps it until released, for restarting the VMM on it. Prints
      "CONTEXT PID"; waits for the VMM and exits with its status unless
      --detach.

  vmm-client.py restart CONTEXT -- VMM [ARGS...]
      A new VMM on an existing (persistent) lease: fresh, unbound files
      (Context.ReopenDevice, refused while the old VMM still holds copies).

  vmm-client.py adopt
      After the manager restarted: take over this uid's leases
      (Manager.ListContexts, Context.Adopt). Prints their paths.
"""
import argparse
import json
import os
import re
import socket
import sys

import dbus

BUS_NAME = 'org.hotresetd.Broker1'
ROOT = '/org/hotresetd/Broker1'
MANAGER = 'org.hotresetd.Broker1.Manager'
CONTEXT = 'org.hotresetd.Broker1.Context'
PROPERTIES = 'org.freedesktop.DBus.Properties'


def fork_vmm(command):
    """Forks the VMM's process, waiting for its files before it executes
    command: the lease can be tied to its pid before it runs, and it gets
    the files over a socket (SCM_RIGHTS), so nothing else inherits them."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        parent.close()
        try:
            msg, fds, _, _ = socket.recv_fds(child, 65536, 256)
            if not msg:
                os._exit(1)  # the manager gave up: no files, no VMM
            names = json.loads(msg)
            for fd in fds:
                os.set_inheritable(fd, True)
            numbers = dict(zip(names, fds))
            args = [re.sub(r'\{(iommufd|device:[^}]+)\}', lambda m: str(numbers[m.group(1)]), a) for a in command]
            child.close()
            os.execvp(args[0], args)
        except BaseException as e:  # noqa: BLE001 - report anything, then leave
            print(f'vmm-client: cannot start {command[0]}: {e}', file=sys.stderr)
        os._exit(127)
    child.close()
    return pid, parent


def hand_files(sock, ctx_obj, addresses, reopen):
    """Opens the context's iommufd and the devices' files and passes them to
    the waiting VMM process."""
    c = dbus.Interface(ctx_obj, CONTEXT)
    names, fds = ['iommufd'], [c.OpenIommufd().take()]
    for a in addresses:
        f = c.ReopenDevice(a) if reopen else c.OpenDevice(a)
        names.append(f'device:{a}')
        fds.append(f.take())
    socket.send_fds(sock, [json.dumps(names).encode()], fds)
    for fd in fds:
        os.close(fd)  # the VMM has its copies; the daemon keeps its own
    sock.close()


def wait(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def start(b, args):
    manager = dbus.Interface(b.get_object(BUS_NAME, ROOT), MANAGER)
    pid, sock = fork_vmm(args.command)
    try:
        options = {'Description': f'vmm-client: {os.path.basename(args.command[0])}'}
        if args.persistent:
            options['Persistent'] = True
        else:
            pidfd = os.pidfd_open(pid)
            options['Pid'] = dbus.types.UnixFd(pidfd)
            os.close(pidfd)
        path = manager.CreateContext(options)
        ctx = b.get_object(BUS_NAME, path)
        for a in args.device:
            # Unbound: the VMM binds the file itself; a bound one it cannot use.
            dbus.Interface(ctx, CONTEXT).AttachDevice(a, {'Bind': False})
        hand_files(sock, ctx, args.device, reopen=False)
    except BaseException:
        sock.close()  # the waiting process exits without files
        wait(pid)
        raise
    print(path, pid, flush=True)
    return 0 if args.detach else wait(pid)


def restart(b, args):
    ctx = b.get_object(BUS_NAME, args.context)
    devices = [str(a) for a in ctx.Get(CONTEXT, 'Devices', dbus_interface=PROPERTIES)]
    pid, sock = fork_vmm(args.command)
    try:
        hand_files(sock, ctx, devices, reopen=True)
    except BaseException:
        sock.close()
        wait(pid)
        raise
    print(args.context, pid, flush=True)
    return wait(pid)


def adopt(b, args):
    manager = dbus.Interface(b.get_object(BUS_NAME, ROOT), MANAGER)
    for path, lifetime, owner, uid, pid, description in manager.ListContexts():
        if uid == os.getuid() and lifetime in ('process', 'persistent'):
            dbus.Interface(b.get_object(BUS_NAME, path), CONTEXT).Adopt()
            print(path, lifetime, pid, description, flush=True)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='verb', required=True)
    s = sub.add_parser('start')
    s.add_argument('--device', action='append', required=True)
    s.add_argument('--persistent', action='store_true')
    s.add_argument('--detach', action='store_true')
    s.add_argument('command', nargs='+')
    r = sub.add_parser('restart')
    r.add_argument('context')
    r.add_argument('command', nargs='+')
    sub.add_parser('adopt')
    args = p.parse_args()
    b = dbus.SystemBus()
    try:
        return {'start': start, 'restart': restart, 'adopt': adopt}[args.verb](b, args)
    except dbus.DBusException as e:
        print(f'vmm-client: {e.get_dbus_name()}: {e.get_dbus_message()}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())

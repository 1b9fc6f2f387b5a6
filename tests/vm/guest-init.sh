#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# PID 1 of the VM tier's guest (init=/…/tests/vm/guest-init.sh).
#
# The guest's root is the host's root, read-only over virtio-9p, so the
# build tree, python3, dbus-daemon and busctl are the host's. This script
# makes the rest of a minimal system (proc, sysfs, devtmpfs, tmpfs on /run
# and /tmp), mounts the writable results share (9p tag "hrvm", the host's
# temporary directory for this boot), runs the scenarios (guest.py, which
# binds devices, runs vfio-probe and the daemon and writes the results into
# the share), and powers off. Everything on the console between the
# "HOTRESETD-VM:" markers is for the host to read.
#
# Kernel command line parameters read here:
#   hrvm.tag=TAG      9p mount tag of the results share (default hrvm)
#   hrvm.python=PATH  the Python interpreter (default /usr/bin/python3)
#   hrvm.keep=P,...   host paths below /tmp to keep visible (the tree under test)

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HOME=/tmp
LANG=C.UTF-8
export PATH HOME LANG

say() {
    echo "HOTRESETD-VM: $*" >/dev/console 2>/dev/null || echo "HOTRESETD-VM: $*"
}

poweroff_now() {
    sync
    umount /tmp/hrvm 2>/dev/null
    echo o >/proc/sysrq-trigger
    # sysrq is asynchronous; never return (PID 1 exiting panics the kernel,
    # which with panic=-1 and -no-reboot also ends QEMU, but less cleanly).
    while :; do sleep 1; done
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null # CONFIG_DEVTMPFS_MOUNT may have done it
mount -t tmpfs -o mode=0755,size=64m tmpfs /run
# The tree under test may live below the host's /tmp (a CI checkout): keep
# the host's /tmp reachable before the guest's own tmpfs hides it, and bind
# the paths named by hrvm.keep= back into place.
mkdir -p /run/hrvm-host-tmp
mount --bind /tmp /run/hrvm-host-tmp
mount -t tmpfs -o mode=1777,size=256m tmpfs /tmp
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        hrvm.keep=*)
            for p in $(echo "${arg#hrvm.keep=}" | tr ',' ' '); do
                case "$p" in
                    /tmp/*)
                        mkdir -p "$p"
                        mount --bind "/run/hrvm-host-tmp/${p#/tmp/}" "$p" ||
                            echo "HOTRESETD-VM: cannot bind $p back" >/dev/console
                        ;;
                esac
            done
            ;;
    esac
done
mkdir -p /dev/shm /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
echo 1 >/proc/sys/kernel/sysrq 2>/dev/null

tag=hrvm
python=/usr/bin/python3
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        hrvm.tag=*) tag=${arg#hrvm.tag=} ;;
        hrvm.python=*) python=${arg#hrvm.python=} ;;
    esac
done

mkdir -p /tmp/hrvm
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 "$tag" /tmp/hrvm; then
    say "FATAL: cannot mount the results share (9p tag $tag)"
    poweroff_now
fi

here=$(dirname "$0")
say "BEGIN $(uname -r)"
status=0
if [ ! -x "$python" ]; then
    say "FATAL: no Python interpreter at $python"
    status=127
else
    "$python" -u "$here/guest.py" /tmp/hrvm >/tmp/hrvm/guest.log 2>&1
    status=$?
fi
# The host reads "status" to tell a finished run from a crashed guest.
echo "$status" >/tmp/hrvm/status
say "END status=$status"
poweroff_now

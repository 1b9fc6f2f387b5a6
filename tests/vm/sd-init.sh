#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# vm-systemd's first init (init=/…/tests/vm/sd-init.sh): makes the guest's
# root writable and hands over to systemd as PID 1.
#
# The kernel mounted the host's root read-only over virtio-9p. This script
# puts an overlay on it (lower: that 9p root; upper: a tmpfs, so every
# write of the run, dpkg's included, is thrown away at power off), adds the
# few files that make the host's systemd boot the test and nothing else,
# and execs switch_root into the overlay with /lib/systemd/systemd.
#
#   /etc/fstab                  empty: the host's entries (disks the guest
#                               does not have) would hold the boot up
#   no /.dockerenv, /run/.containerenv, /usr/sbin/policy-rc.d; an
#   /etc/tmpfiles.d/tmp.conf that keeps /tmp (the reasons are below)
#   /etc/systemd/system/hrvm.target, hrvm-test.service
#                               the boot target (systemd.unit=hrvm.target on
#                               the command line): basic.target, the system
#                               bus, udev, and the test service, instead of
#                               whatever the host enables (multi-user's
#                               database servers, gettys, timers)
#
# Kernel command line parameters read here:
#   hrvm.tag=TAG       9p tag of the results share (default hrvm)
#   hrvm.script=PATH   the guest's test script (sdguest.py)
#   hrvm.python=PATH   its interpreter (default /usr/bin/python3)
# /tmp in the overlay is the host's /tmp (kept, not emptied: below), so a
# tree under test there needs nothing more.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

fatal() {
    echo "HOTRESETD-VM: FATAL: $*" >/dev/console
    echo o >/proc/sysrq-trigger
    while :; do sleep 1; done
}

mount -t proc proc /proc || fatal "cannot mount /proc"
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo 1 >/proc/sys/kernel/sysrq

tag=hrvm
script=
python=/usr/bin/python3
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        hrvm.tag=*) tag=${arg#hrvm.tag=} ;;
        hrvm.script=*) script=${arg#hrvm.script=} ;;
        hrvm.python=*) python=${arg#hrvm.python=} ;;
    esac
done
[ -n "$script" ] || fatal "no hrvm.script= on the kernel command line"

# /mnt is in every Debian root; the tmpfs hides what the host has there.
mount -t tmpfs -o mode=0755,size=768m tmpfs /mnt || fatal "cannot mount the tmpfs for the overlay"
mkdir -p /mnt/upper /mnt/work /mnt/root
mount -t overlay overlay -o lowerdir=/,upperdir=/mnt/upper,workdir=/mnt/work /mnt/root ||
    fatal "cannot mount the overlay root"
new=/mnt/root

: >"$new/etc/fstab"
# A host that is itself a container (a CI runner) has /.dockerenv or
# /run/.containerenv: systemd would take the guest for a container and
# ignore the kernel command line (and skip the units that are conditioned
# on a real machine).
rm -f "$new/.dockerenv" "$new/run/.containerenv"
# Docker images also carry /usr/sbin/policy-rc.d ("exit 101"), which makes
# deb-systemd-invoke skip every start: the package's postinst would enable
# hotresetd.service but never start it. A real machine has none.
rm -f "$new/usr/sbin/policy-rc.d"
# Debian's tmpfiles.d/tmp.conf ("D /tmp") empties /tmp at boot: in the
# overlay that is a whiteout for every file of the host's /tmp (15 s of a
# 27 s boot, measured with systemd-analyze blame), and a tree under test
# checked out below /tmp would vanish before the test service runs. Same
# name in /etc overrides it: create /tmp, remove nothing.
mkdir -p "$new/etc/tmpfiles.d"
echo 'd /tmp 1777 root root -' >"$new/etc/tmpfiles.d/tmp.conf"
mkdir -p "$new/etc/systemd/system"
cat >"$new/etc/systemd/system/hrvm.target" <<EOF
[Unit]
Description=hotresetd VM test
Requires=basic.target
After=basic.target
Wants=dbus.service systemd-udevd.service hrvm-test.service
AllowIsolate=yes
EOF
# Type=exec, not oneshot: the boot is done (is-system-running) once the
# script started, and the script waits for that itself before it measures.
cat >"$new/etc/systemd/system/hrvm-test.service" <<EOF
[Unit]
Description=hotresetd VM test: the scenarios
After=basic.target dbus.service systemd-udevd.service
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=exec
Environment=PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LANG=C.UTF-8
ExecStartPre=/bin/mkdir -p /run/hrvm
ExecStartPre=/bin/mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 $tag /run/hrvm
ExecStart=/bin/sh -c 'exec $python -u $script /run/hrvm >/run/hrvm/guest.log 2>&1'
StandardOutput=journal+console
TimeoutStartSec=infinity
EOF
ln -sf hrvm.target "$new/etc/systemd/system/default.target"

exec switch_root "$new" /lib/systemd/systemd

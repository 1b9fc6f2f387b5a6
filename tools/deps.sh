#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs what hotresetd needs to build, run and test, on Debian bookworm.
# Idempotent: when everything is installed already, apt-get is not run at all.
set -euo pipefail

PACKAGES=(
    # build
    meson ninja-build gcc libc6-dev pkg-config
    libsystemd-dev libudev-dev libjson-c-dev libinih-dev
    # hotresetctl's tables and trees (util-linux's libsmartcols)
    libsmartcols-dev
    # the man pages (scdoc sources); bash-completion: its completionsdir
    # (pkg-config) and the completion test's bash_completion
    scdoc bash-completion
    # the Debian package (tools/build-deb.sh, run by tools/run-tests.sh)
    debhelper lintian build-essential
    # run and test: a private system bus, busctl/dbus-send callers, polkit,
    # setpriv/unshare for unprivileged callers and private mounts
    dbus dbus-daemon dbus-bin systemd polkitd python3 python3-dbus util-linux
    # udev tests: a fake sysfs with uevents (umockdev)
    umockdev libumockdev-dev
    # the VM tier: a real kernel under QEMU (TCG); vm-vmm fetches QEMU 10
    # from bookworm-backports into a cache with a private apt configuration
    # (tools/qemu10.sh), which checks it against Debian's archive keyring
    qemu-system-x86 debian-archive-keyring
    # vm-udev: the guest (the host's root) runs systemd-udevd, and python3-dbus
    # on a GLib main loop for the daemon's signals
    udev python3-gi
    # vm-systemd: the guest boots the host's systemd as PID 1 and registers
    # callers as machines with systemd-machined (machinectl)
    systemd-container
    # hotresetctl on a terminal (test_cli_terminal.py): tmux; the polkit
    # agent (pkttyagent) comes with polkitd, systemd-hwdb with udev
    tmux
    # the libFuzzer targets (tests/fuzz, built with clang: libFuzzer and
    # clang's sanitizer runtimes are in libclang-rt-14-dev)
    clang libclang-rt-14-dev
    # the valgrind memcheck pass, and static analysis
    # (tools/static-analysis.sh: cppcheck, clang-tidy with run-clang-tidy)
    valgrind cppcheck clang-tidy
)

missing=()
for p in "${PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all ${#PACKAGES[@]} packages are installed."
    exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then
        SUDO=(sudo)
    else
        echo "deps: run as root to install: ${missing[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"

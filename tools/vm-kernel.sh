#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds the VM tier's test kernel (a bzImage with IOMMUFD, vfio cdevs and
# the legacy vfio group API) from Debian's linux-source package and the
# project's config fragment (tests/vm/kernel.fragment), caches it outside the
# source tree, and prints its path on stdout (the only thing printed there;
# progress goes to stderr).
#
#   tools/vm-kernel.sh            build if needed, print the path
#   tools/vm-kernel.sh --path     print where the cached kernel is/would be
#                                 (exit 1 if it is not built yet)
#
# Cache: ${HOTRESETD_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hotresetd}/
#   bzImage-<sha256 of fragment + source package version + recipe>[:16]
# A lock in the cache directory makes concurrent callers wait for one build.
#
# Debian's own kernels (6.12 and later included) are built without
# CONFIG_IOMMUFD, hence a kernel of our own. Installs what it needs with
# apt-get (as root): linux-source-6.12 and the build tools. On bookworm the
# package is in bookworm-security/bookworm-updates; only if no configured
# suite offers it is bookworm-backports added.
#
# Exit status: 0 built (or cached); 77 a kernel cannot be built on this
# machine (not root and packages missing, no package source, apt-get
# failed), with the reason on stderr; 1 the build itself failed (a bug).
# Takes about 11 minutes on 2 cores.
set -euo pipefail

SKIP=77
KSERIES=6.12
SRC_PKG=linux-source-$KSERIES
BUILD_PKGS=(make gcc libc6-dev flex bison bc libelf-dev libssl-dev xz-utils perl)
# Bump when the recipe below changes in a way that changes the kernel.
RECIPE=1

here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
fragment=$here/../tests/vm/kernel.fragment
cache=${HOTRESETD_VM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/hotresetd}

log() { echo "vm-kernel: $*" >&2; }
skip() { log "cannot build a test kernel here: $*"; exit $SKIP; }
die() { log "ERROR: $*"; exit 1; }

[ -f "$fragment" ] || die "missing $fragment"

pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# The cache key needs the source version, so the source comes first.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 126
    fi
}

apt_updated=false
apt_update() {
    $apt_updated && return 0
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update >&2 || return 1
    apt_updated=true
}

candidate() {
    apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }'
}

# Adds bookworm-backports (same mirror as the configured bookworm suite) when
# no configured suite has the package.
add_backports() {
    local codename uri list=/etc/apt/sources.list.d/hotresetd-backports.sources
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ "$codename" = bookworm ] || return 1
    uri=$(grep -rhoE 'https?://[^ ]*/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
          | grep -v security | head -n1 | tr -d ' ')
    uri=${uri:-http://deb.debian.org/debian}
    log "$SRC_PKG is in no configured suite: adding bookworm-backports ($uri)"
    as_root tee "$list" >/dev/null <<EOF || return 1
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt_updated=false
    apt_update
}

install_packages() {
    local missing=() p
    for p in "$SRC_PKG" "${BUILD_PKGS[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || skip "no apt-get to install ${missing[*]}"
    if [ "$(id -u)" -ne 0 ] && ! { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; then
        skip "not root (and no password-less sudo) to install ${missing[*]}"
    fi
    apt_update || skip "apt-get update failed (no network or package mirror?)"
    if ! pkg_installed "$SRC_PKG"; then
        local c
        c=$(candidate "$SRC_PKG")
        if [ -z "$c" ] || [ "$c" = "(none)" ]; then
            add_backports || skip "no suite offers $SRC_PKG (and bookworm-backports could not be added)"
            c=$(candidate "$SRC_PKG")
            [ -n "$c" ] && [ "$c" != "(none)" ] || skip "no suite offers $SRC_PKG, not even bookworm-backports"
        fi
    fi
    log "apt-get install ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
        || skip "apt-get install ${missing[*]} failed"
}

key_for() {
    local version=$1
    { cat "$fragment"; echo "source=$SRC_PKG $version"; echo "recipe=$RECIPE"; } | sha256sum | cut -c1-16
}

if [ "${1:-}" = --path ]; then
    pkg_installed "$SRC_PKG" || { log "$SRC_PKG is not installed"; exit 1; }
    out=$cache/bzImage-$(key_for "$(dpkg-query -W -f='${Version}' "$SRC_PKG")")
    echo "$out"
    [ -f "$out" ]
    exit
fi

# A cached kernel for the installed source needs nothing else; only install
# (or upgrade) when there is none.
if pkg_installed "$SRC_PKG"; then
    out=$cache/bzImage-$(key_for "$(dpkg-query -W -f='${Version}' "$SRC_PKG")")
    if [ -f "$out" ]; then
        log "cached: $out"
        echo "$out"
        exit 0
    fi
fi

install_packages
version=$(dpkg-query -W -f='${Version}' "$SRC_PKG")
key=$(key_for "$version")
out=$cache/bzImage-$key
mkdir -p "$cache"

exec 9>"$cache/.lock"
log "waiting for the build lock ($cache/.lock)"
flock 9
if [ -f "$out" ]; then
    log "built meanwhile by another caller: $out"
    echo "$out"
    exit 0
fi

tarball=$(ls /usr/src/"$SRC_PKG".tar.* 2>/dev/null | head -n1 || true)
[ -n "$tarball" ] || die "$SRC_PKG is installed but /usr/src/$SRC_PKG.tar.* is missing"

work=$cache/build-$key
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
log "unpacking $tarball ($SRC_PKG $version)"
tar -xf "$tarball" -C "$work"
src=$work/$SRC_PKG
[ -d "$src" ] || src=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n1)

cd "$src"
jobs=$(nproc 2>/dev/null || echo 2)
log "configuring: tinyconfig + $(basename "$fragment") + olddefconfig"
make -s tinyconfig >&2
scripts/kconfig/merge_config.sh -m .config "$fragment" >&2
make -s olddefconfig >&2

# Every option of the fragment must have survived (a missing dependency or
# a renamed symbol silently drops it otherwise).
bad=()
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=n) opt=${line%%=*}
            grep -qx "$opt=y" .config && bad+=("$line (got y)") ;;
        CONFIG_*=*) grep -qx "$line" .config || bad+=("$line (got: $(grep -E "^(# )?${line%%=*}[= ]" .config || echo unset))") ;;
    esac
done < <(grep -E '^CONFIG_' "$fragment")
[ ${#bad[@]} -eq 0 ] || die "options of the fragment not in the final .config: ${bad[*]}"

log "building bzImage with $jobs jobs (about 11 minutes on 2 cores)"
start=$(date +%s)
if ! make -j"$jobs" bzImage >"$work/build.log" 2>&1; then
    tail -n 60 "$work/build.log" >&2
    die "make bzImage failed"
fi
log "built in $(( $(date +%s) - start )) s"

cp arch/x86/boot/bzImage "$out.tmp"
cp .config "$out.config"
mv "$out.tmp" "$out"
log "cached: $out"
echo "$out"

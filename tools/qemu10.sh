#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Fetches QEMU 10 (Debian's bookworm-backports build) for the VM tier's
# nested VMM (tests/vm, topology vmm) WITHOUT installing it: the host's apt
# state and its QEMU 7.2 stay untouched. Prints the unpacked tree's path on
# stdout (the only thing printed there; progress goes to stderr).
#
#   tools/qemu10.sh           fetch and unpack if needed, print DIR
#   tools/qemu10.sh --path    print where DIR is/would be (exit 1 if not there)
#
# Run the result as
#   QEMU_MODULE_DIR=DIR/usr/lib/x86_64-linux-gnu/qemu \
#     DIR/usr/bin/qemu-system-x86_64 -L DIR/usr/share/qemu ...
#
# How: a private apt configuration (its own sources list holding only
#   deb [signed-by=debian-archive-keyring] http://deb.debian.org/debian bookworm-backports main
# and its own state, lists and cache directories), `apt-get update` against
# it, `apt-get download` of qemu-system-x86, qemu-system-data and
# qemu-system-common at $VERSION (apt checks them against the signed
# Release file), `dpkg-deb -x` into DIR. About 13 MB downloaded, 85 MB
# unpacked. The host's /etc/apt/apt.conf.d is still read (proxies,
# Check-Valid-Until and the like are the machine's business); its hooks
# (Post-Invoke) are cleared for these calls.
#
# Cache: ${HOTRESETD_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hotresetd}/
#   qemu10-<version>/     the unpacked tree (DIR) and .complete, written last
#   qemu10-apt/           the private apt configuration, lists and archives
# Best not below /tmp: the VM tier's guest covers /tmp with its own tmpfs
# (run-vm.py binds the directory back there) and /tmp may not last. Never
# below /run, /proc, /sys or /dev, which the guest mounts anew. A
# present and complete DIR (.complete names the version and the packages,
# and the binary answers --version) is used as it is, without network.
# A lock in the cache directory serializes concurrent callers.
#
# Environment: HOTRESETD_QEMU10_VERSION overrides the version,
# HOTRESETD_QEMU10_MIRROR the archive (default http://deb.debian.org/debian).
#
# Exit status: 0 DIR printed; 77 QEMU 10 truly cannot be had on this
# machine (not amd64, no apt-get or dpkg-deb, not root to install the
# archive keyring), reason on stderr; 1 anything else (the archive
# unreachable, the version not offered, a download or unpack failure, a
# binary that does not run), with the reason on stderr.
set -euo pipefail

SKIP=77
VERSION=${HOTRESETD_QEMU10_VERSION:-1:10.0.2+ds-2+deb13u1~bpo12+1}
MIRROR=${HOTRESETD_QEMU10_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm-backports
PACKAGES=(qemu-system-x86 qemu-system-data qemu-system-common)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

cache=${HOTRESETD_VM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/hotresetd}
# "1:10.0.2+ds-2+deb13u1~bpo12+1" -> "10.0.2+ds-2+deb13u1_bpo12+1" (a path
# without ':' or '~')
tag=${VERSION#*:}
tag=${tag//\~/_}
dir=$cache/qemu10-$tag
aptdir=$cache/qemu10-apt

log() { echo "qemu10: $*" >&2; }
skip() { log "QEMU 10 cannot be had on this machine: $*"; exit $SKIP; }
die() { log "ERROR: $*"; exit 1; }

complete() {
    [ -f "$dir/.complete" ] && [ -x "$dir/usr/bin/qemu-system-x86_64" ] || return 1
    [ "$(sed -n 's/^version=//p' "$dir/.complete")" = "$VERSION" ] || return 1
    [ "$(sed -n 's/^packages=//p' "$dir/.complete")" = "${PACKAGES[*]}" ] || return 1
    runs
}

# The binary runs (its libraries are those of the host's QEMU 7.2, all
# present on bookworm) and is version 10.
runs() {
    local out
    out=$(QEMU_MODULE_DIR=$dir/usr/lib/x86_64-linux-gnu/qemu "$dir/usr/bin/qemu-system-x86_64" \
          -L "$dir/usr/share/qemu" --version 2>&1) || { log "$dir/usr/bin/qemu-system-x86_64 --version: $out"; return 1; }
    case "$out" in
        "QEMU emulator version 10."*) return 0 ;;
        *) log "$dir/usr/bin/qemu-system-x86_64 --version says: ${out%%$'\n'*}"; return 1 ;;
    esac
}

if [ "${1:-}" = --path ]; then
    echo "$dir"
    complete
    exit
fi

case "$dir" in
    /run/*|/proc/*|/sys/*|/dev/*) die "the cache $dir is below ${dir:0:5}, which the VM tier's guest mounts anew; set HOTRESETD_VM_CACHE" ;;
esac

if complete; then
    log "cached: $dir"
    echo "$dir"
    exit 0
fi

[ "$(uname -m)" = x86_64 ] || skip "this is $(uname -m), the packages are amd64"
command -v apt-get >/dev/null || skip "no apt-get (not a Debian system)"
command -v dpkg-deb >/dev/null || skip "no dpkg-deb (not a Debian system)"
arch=$(dpkg --print-architecture)
[ "$arch" = amd64 ] || skip "dpkg's architecture is $arch, the packages are amd64"
if [ ! -f "$KEYRING" ]; then
    [ "$(id -u)" -eq 0 ] || skip "$KEYRING is missing and only root can install debian-archive-keyring"
    log "installing debian-archive-keyring (for $KEYRING)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debian-archive-keyring >&2 \
        || die "apt-get install debian-archive-keyring failed"
fi

mkdir -p "$cache"
exec 9>"$cache/.qemu10.lock"
log "waiting for the lock ($cache/.qemu10.lock)"
flock 9
if complete; then
    log "unpacked meanwhile by another caller: $dir"
    echo "$dir"
    exit 0
fi

t0=$(date +%s.%N)
# The private apt configuration. -c is read after the host's configuration,
# so what is set here wins; the lists, state and archives are all ours.
mkdir -p "$aptdir/etc/preferences.d" "$aptdir/etc/sources.list.d" "$aptdir/lists/partial" \
         "$aptdir/cache/archives/partial" "$aptdir/state"
: >"$aptdir/state/status"
: >"$aptdir/etc/preferences"
echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" >"$aptdir/etc/sources.list"
cat >"$aptdir/apt.conf" <<EOF
Dir::Etc::SourceList "$aptdir/etc/sources.list";
Dir::Etc::SourceParts "$aptdir/etc/sources.list.d";
Dir::Etc::Preferences "$aptdir/etc/preferences";
Dir::Etc::PreferencesParts "$aptdir/etc/preferences.d";
Dir::State "$aptdir/state";
Dir::State::Lists "$aptdir/lists";
Dir::State::status "$aptdir/state/status";
Dir::Cache "$aptdir/cache";
Dir::Cache::Archives "$aptdir/cache/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
APT::Sandbox::User "root";
Acquire::Languages "none";
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
#clear DPkg::Post-Invoke;
#clear DPkg::Pre-Invoke;
EOF
apt_private() {
    apt-get -c "$aptdir/apt.conf" -q "$@"
}

log "apt-get update (private configuration $aptdir: $MIRROR $SUITE main only)"
apt_private update >&2 || die "apt-get update of $MIRROR $SUITE failed (no route to the archive?)"

# The exact version must be offered; say what is when it is not.
for p in "${PACKAGES[@]}"; do
    offered=$(apt-cache -c "$aptdir/apt.conf" madison "$p" 2>/dev/null | awk -F'|' '{ gsub(/ /, "", $2); print $2 }')
    if ! grep -qxF -- "$VERSION" <<<"$offered"; then
        die "$MIRROR $SUITE does not offer $p=$VERSION (offered: $(echo ${offered:-nothing})); set HOTRESETD_QEMU10_VERSION to one of them"
    fi
done

debs=$aptdir/download
rm -rf "$debs"
mkdir -p "$debs"
log "apt-get download ${PACKAGES[*]/%/=$VERSION}"
(cd "$debs" && apt_private download "${PACKAGES[@]/%/=$VERSION}") >&2 || die "apt-get download failed"
t1=$(date +%s.%N)

# Unpack into a fresh directory next to DIR, then move it into place: a
# killed run never leaves a DIR that looks complete.
new=$dir.new.$$
rm -rf "$new"
mkdir -p "$new"
trap 'rm -rf "$new"' EXIT
sums=()
for f in "$debs"/*.deb; do
    log "dpkg-deb -x $(basename "$f")"
    dpkg-deb -x "$f" "$new" || die "dpkg-deb -x $f failed"
    sums+=("$(sha256sum "$f" | cut -d' ' -f1) $(basename "$f")")
done
[ ${#sums[@]} -eq ${#PACKAGES[@]} ] || die "expected ${#PACKAGES[@]} packages in $debs, got ${#sums[@]}"
rm -rf "$dir"
mv "$new" "$dir"
trap - EXIT
runs || { rm -rf "$dir"; die "the unpacked QEMU does not run (see above)"; }
{
    echo "version=$VERSION"
    echo "packages=${PACKAGES[*]}"
    echo "suite=$MIRROR $SUITE main"
    printf 'deb=%s\n' "${sums[@]}"
} >"$dir/.complete"
rm -rf "$debs"
t2=$(date +%s.%N)
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
log "$(du -sh "$dir" | cut -f1) in $dir; update+download $(secs "$t0" "$t1") s, unpack $(secs "$t1" "$t2") s"
echo "$dir"

#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds the Debian package (debian/) the way a Debian builder does,
# "dpkg-buildpackage -us -uc -b", in a copy of the tree (so the work tree
# gets no build products and nobody's build/ is touched), then runs lintian
# on it and checks what it contains and what its maintainer scripts do.
#
#   tools/build-deb.sh [OUTDIR]     default OUTDIR: build-deb/
#
# Leaves OUTDIR/hotresetd_VERSION_ARCH.deb, .buildinfo, .changes and
# lintian.txt. Exits non-zero when the build fails, lintian reports an
# error, or a check fails. Installs its build dependencies with apt-get
# (tools/deps.sh). Nothing is installed from the package: see the README
# ("Install") for installing it.
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")/.."
SRC=$PWD
OUT=$(mkdir -p "${1:-build-deb}" && cd "${1:-build-deb}" && pwd)

tools/deps.sh

VERSION=$(dpkg-parsechangelog -l debian/changelog -S Version)
ARCH=$(dpkg-architecture -qDEB_HOST_ARCH)
WORK=$(mktemp -d /tmp/hotresetd-deb.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# The files git knows of, committed or not, and new ones not ignored.
mkdir "$WORK/hotresetd-$VERSION"
git ls-files -z --cached --others --exclude-standard |
    xargs -0 -I{} sh -c 'test -e "$1" && printf "%s\0" "$1"' _ {} |
    tar --null -T - -cf - | tar -xf - -C "$WORK/hotresetd-$VERSION"

start=$(date +%s)
(cd "$WORK/hotresetd-$VERSION" && dpkg-buildpackage -us -uc -b) > "$WORK/build.log" 2>&1 || {
    cat "$WORK/build.log"
    echo "build-deb: dpkg-buildpackage failed" >&2
    exit 1
}
echo "build-deb: built in $(($(date +%s) - start)) s"

# The package, its debug symbols (hotresetd-dbgsym) and the .changes that
# lists them.
cp "$WORK"/*.deb "$WORK"/*.buildinfo "$WORK"/*.changes "$OUT"/
DEB=$OUT/hotresetd_${VERSION}_${ARCH}.deb

# lintian: no error (E:); warnings are listed, and each one kept is
# explained in the README ("Install").
lintian --info --display-info --pedantic "$OUT/hotresetd_${VERSION}_${ARCH}.changes" > "$OUT/lintian.txt" 2>&1 || true
cat "$OUT/lintian.txt"
if grep -q '^E: ' "$OUT/lintian.txt"; then
    echo "build-deb: lintian reports errors" >&2
    exit 1
fi

# What the package must contain.
failed=0
contents=$(dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's|^\./|/|')
for f in /usr/libexec/hotresetd /usr/bin/hotresetctl \
         /lib/systemd/system/hotresetd.service \
         /usr/share/dbus-1/system.d/org.hotresetd.Broker1.conf \
         /usr/share/dbus-1/system-services/org.hotresetd.Broker1.service \
         /usr/share/dbus-1/interfaces/org.hotresetd.Broker1.xml \
         /usr/share/polkit-1/actions/org.hotresetd.policy \
         /usr/share/bash-completion/completions/hotresetctl \
         /usr/share/man/man8/hotresetd.8.gz /usr/share/man/man1/hotresetctl.1.gz \
         /usr/share/man/man5/hotresetd.conf.5.gz /usr/share/man/man5/org.hotresetd.Broker1.5.gz \
         /usr/share/doc/hotresetd/examples/hotresetd.conf.example \
         /usr/share/doc/hotresetd/examples/50-hotresetd-vfio-group.rules.example \
         /usr/share/doc/hotresetd/copyright; do
    if ! grep -qx "$f" <<<"$contents"; then
        echo "build-deb: $f is not in the package" >&2
        failed=1
    fi
done
# No configuration file: the policy file is optional and its example is
# documentation.
if dpkg-deb -c "$DEB" | awk '{print $6}' | grep -q '^\./etc/'; then
    echo "build-deb: the package ships files in /etc" >&2
    failed=1
fi
# The unit runs the installed daemon; activation names the real unit.
mkdir "$WORK/deb"
dpkg-deb -x "$DEB" "$WORK/deb"
dpkg-deb -e "$DEB" "$WORK/deb/DEBIAN"
grep -qx 'ExecStart=/usr/libexec/hotresetd' "$WORK/deb/lib/systemd/system/hotresetd.service" ||
    { echo "build-deb: ExecStart= is not /usr/libexec/hotresetd" >&2; failed=1; }
grep -qx 'SystemdService=hotresetd.service' "$WORK/deb/usr/share/dbus-1/system-services/org.hotresetd.Broker1.service" ||
    { echo "build-deb: SystemdService= is not hotresetd.service" >&2; failed=1; }
# The maintainer scripts enable the unit (and start it on a machine
# running systemd), stop it on removal, and neither stop nor restart it
# on upgrade.
grep -q "deb-systemd-helper enable 'hotresetd.service'" "$WORK/deb/DEBIAN/postinst" ||
    { echo "build-deb: the postinst does not enable hotresetd.service" >&2; failed=1; }
grep -q "deb-systemd-invoke \$_dh_action 'hotresetd.service'\|deb-systemd-invoke start 'hotresetd.service'" \
    "$WORK/deb/DEBIAN/postinst" ||
    { echo "build-deb: the postinst does not start hotresetd.service" >&2; failed=1; }
if grep -q "deb-systemd-invoke restart" "$WORK/deb/DEBIAN/postinst"; then
    echo "build-deb: the postinst restarts hotresetd.service on upgrade" >&2
    failed=1
fi
grep -q "deb-systemd-invoke stop 'hotresetd.service'" "$WORK/deb/DEBIAN/prerm" ||
    { echo "build-deb: the prerm does not stop hotresetd.service on removal" >&2; failed=1; }
grep -B3 "deb-systemd-invoke stop" "$WORK/deb/DEBIAN/prerm" | grep -q '"$1" = remove' ||
    { echo "build-deb: the prerm stops hotresetd.service on upgrade" >&2; failed=1; }

[ "$failed" -eq 0 ] || exit 1
echo "build-deb: $DEB"

#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The generated hotresetd.service: "systemd-analyze verify" has nothing to
# say about it, and "systemd-analyze security --offline=yes" rates its
# exposure at 2.0 or better (the figure and every remaining exposure are
# explained in the unit's comments and the README). Offline: no systemd as
# PID 1 is needed.
#
#   test-unit.sh UNIT DAEMON    (meson passes the generated unit and the
#                                built daemon, which ExecStart= must name
#                                for verify to find an executable)
set -uo pipefail

UNIT=$1 DAEMON=$2
command -v systemd-analyze >/dev/null || { echo "SKIP: no systemd-analyze"; exit 77; }

WORK=$(mktemp -d /tmp/hotresetd-unit.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
sed "s|^ExecStart=.*|ExecStart=$DAEMON|" "$UNIT" > "$WORK/hotresetd.service"

failed=0
# verify exits 0 on warnings too (an unknown key, a bad value): any output
# is a failure. The man pages of Documentation= are checked on an installed
# system, not here (--man=no).
out=$(systemd-analyze verify --man=no "$WORK/hotresetd.service" 2>&1)
rc=$?
if [ $rc -ne 0 ] || [ -n "$out" ]; then
    echo "FAIL: systemd-analyze verify (exit status $rc):"
    echo "$out"
    failed=1
else
    echo "ok: systemd-analyze verify is clean"
fi

out=$(systemd-analyze security --offline=yes --threshold=20 "$WORK/hotresetd.service" 2>&1)
rc=$?
echo "$out" | grep -E '✗|Overall'
if [ $rc -ne 0 ]; then
    echo "FAIL: the exposure is above 2.0"
    failed=1
else
    echo "ok: exposure at most 2.0"
fi

# The device sandbox names nodes and classes, never a directory (systemd
# ignores "DeviceAllow=/dev/vfio", a directory, with a warning at start).
while read -r spec _; do
    case $spec in
        char-* | block-*) ;;
        /dev/*)
            if [ -d "$spec" ]; then
                echo "FAIL: DeviceAllow=$spec is a directory"
                failed=1
            fi
            ;;
        *) echo "FAIL: DeviceAllow=$spec"; failed=1 ;;
    esac
done < <(sed -n 's/^DeviceAllow=//p' "$WORK/hotresetd.service")

exit $failed

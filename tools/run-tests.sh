#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The whole test suite: the Debian package (tools/build-deb.sh), then every
# meson test suite (unit, integration and the VM tier, whose vm-systemd
# installs that package) in a normal build (build/) and again in an
# AddressSanitizer + UndefinedBehaviorSanitizer build (build-asan/).
# Installs its dependencies first. Exits non-zero if anything fails.
set -uo pipefail

cd "$(dirname "$(readlink -f "$0")")/.."

tools/deps.sh || exit 1

# Sanitizers stop at the first report and say where (meson test keeps these
# when they are already set).
export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}"

failed=()

heading() {
    printf '\n==== %s ====\n\n' "$*"
}

# build_and_test DIR TIMEOUT_MULTIPLIER [meson options...]
# The options are applied to a new and to an existing build directory
# alike: "meson setup --reconfigure" (not "meson configure") reads
# meson_options.txt again, so a directory set up before an option existed
# still takes it. A directory left half set up is wiped and set up again.
build_and_test() {
    local dir=$1 mult=$2
    shift 2
    heading "Build $dir $*"
    if [ -f "$dir/build.ninja" ]; then
        meson setup --reconfigure "$dir" "$@" || { failed+=("$dir: meson setup --reconfigure"); return; }
    elif [ -f "$dir/meson-private/coredata.dat" ]; then
        meson setup --wipe "$dir" "$@" || { failed+=("$dir: meson setup --wipe"); return; }
    else
        meson setup "$dir" "$@" || { failed+=("$dir: meson setup"); return; }
    fi
    meson compile -C "$dir" || { failed+=("$dir: build"); return; }

    heading "Test $dir (all suites)"
    if ! HOTRESETD_TEST_TIMEOUT=$mult meson test -C "$dir" --print-errorlogs --timeout-multiplier "$mult"; then
        failed+=("$dir: tests")
        heading "$dir/meson-logs/testlog.txt"
        cat "$dir/meson-logs/testlog.txt"
    fi
}

# Warnings are errors in the project's own builds only (a distribution's
# newer compiler must not fail a package build over a new warning). The
# man pages are built (scdoc is in tools/deps.sh), and the VM tier is
# defined: a plain "meson test" in a developer's build does not run it.
common=(-Dwerror=true -Dtests=true -Dvm-tests=true -Dman=enabled)

# The Debian package, as dpkg-buildpackage builds it, checked by lintian
# and for its contents and maintainer scripts (under a minute). First: the
# VM tier's vm-systemd installs this very package in a guest booted with
# systemd ($HOTRESETD_DEB; without it the test builds its own).
heading "Debian package (tools/build-deb.sh build-deb)"
if tools/build-deb.sh build-deb; then
    deb=$(ls build-deb/hotresetd_*.deb 2>/dev/null | grep -v dbgsym | head -n1)
    [ -n "$deb" ] && export HOTRESETD_DEB="$PWD/$deb"
else
    failed+=("Debian package: tools/build-deb.sh")
fi

build_and_test build 1 "${common[@]}" -Db_sanitize=none -Db_lundef=true
build_and_test build-asan 3 "${common[@]}" -Db_sanitize=address,undefined -Db_lundef=false

echo
if [ ${#failed[@]} -ne 0 ]; then
    echo "FAILED:"
    printf '  %s\n' "${failed[@]}"
    exit 1
fi
echo "All tests passed (build/, build-asan/ and the Debian package)."

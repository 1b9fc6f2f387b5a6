#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The whole test suite: every meson test suite (unit, integration, and the
# VM tier once it exists) in a normal build (build/) and again in an
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
build_and_test() {
    local dir=$1 mult=$2
    shift 2
    heading "Build $dir $*"
    if [ -f "$dir/build.ninja" ]; then
        if [ $# -gt 0 ]; then
            meson configure "$dir" "$@" || { failed+=("$dir: meson configure"); return; }
        fi
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

build_and_test build 1
build_and_test build-asan 3 -Db_sanitize=address,undefined -Db_lundef=false

echo
if [ ${#failed[@]} -ne 0 ]; then
    echo "FAILED:"
    printf '  %s\n' "${failed[@]}"
    exit 1
fi
echo "All tests passed (build/ and build-asan/)."

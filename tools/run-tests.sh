#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The whole test suite: the Debian package (tools/build-deb.sh), then every
# meson test suite (unit, integration and the VM tier, whose vm-systemd
# installs that package) in a normal build (build/) and again in an
# AddressSanitizer + UndefinedBehaviorSanitizer build (build-asan/); then
# valgrind memcheck over a named part of the integration suite (build/), a
# ThreadSanitizer build (build-tsan/), the libFuzzer targets for a bounded
# time (build-fuzz/, clang) and static analysis (tools/static-analysis.sh).
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

# section_timed NAME: prints how long the section since section_start took
# (the figures README's testing section quotes come from here).
section_start() {
    section_t0=$SECONDS
}
section_took() {
    printf '\n(%s took %d s)\n' "$1" $((SECONDS - section_t0))
}

# Valgrind memcheck over a named subset of the integration suite, on the
# plain build: the tests that lease, reset and release (every lease's files,
# every reset job, the contexts dropped when a client goes). Each daemon the
# harness starts runs under valgrind (HOTRESETD_TEST_WRAPPER, see
# tests/integration/harness.py); a memory error or a definite leak makes it
# exit 99 on SIGTERM, which fails the test. (Not test_context_lifetime.py:
# its open-file baseline, read while the daemon is idle, catches
# valgrind's own files coming and going.) About 2.5 minutes here.
VALGRIND_TESTS=(integration-resets integration-contexts integration-lifecycle integration-group-model)
heading "Valgrind memcheck (build/: ${VALGRIND_TESTS[*]})"
section_start
if ! HOTRESETD_TEST_WRAPPER="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite --track-origins=yes --vgdb=no --quiet" \
        HOTRESETD_TEST_TIMEOUT=5 timeout 1200 meson test -C build --no-rebuild --print-errorlogs \
        --timeout-multiplier 5 "${VALGRIND_TESTS[@]}"; then
    failed+=("valgrind: memcheck over ${VALGRIND_TESTS[*]} (build/meson-logs/testlog.txt)")
fi
section_took "valgrind"

# ThreadSanitizer: the reset worker thread (core/reset-job.c), the
# emulated backend's reset and parse threads (kernel/backend-emulated.c,
# machine_load() in kernel/machine-file.c), in their own build (TSan cannot
# share one with ASan): the unit tests, and the integration tests that reset
# (resets, with overlapping and delayed resets) and rebuild reset domains
# from machine file updates (domains). A race stops the daemon or the test
# with a report. About 2 minutes here.
TSAN_TESTS=(integration-resets integration-domains)
section_start
build_tsan() {
    local dir=build-tsan
    heading "Build $dir (ThreadSanitizer)"
    local opts=(-Dwerror=true -Dtests=true -Dman=disabled -Db_sanitize=thread -Db_lundef=false)
    if [ -f "$dir/build.ninja" ]; then
        meson setup --reconfigure "$dir" "${opts[@]}" >/dev/null || { failed+=("tsan: meson setup"); return; }
    else
        rm -rf "$dir"
        meson setup "$dir" "${opts[@]}" >/dev/null || { failed+=("tsan: meson setup"); return; }
    fi
    meson compile -C "$dir" || { failed+=("tsan: build"); return; }
    heading "ThreadSanitizer ($dir: unit suite, ${TSAN_TESTS[*]})"
    export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"
    timeout 300 meson test -C "$dir" --no-rebuild --print-errorlogs --suite unit ||
        failed+=("tsan: unit suite (build-tsan/meson-logs/testlog.txt)")
    HOTRESETD_TEST_TIMEOUT=3 timeout 900 meson test -C "$dir" --no-rebuild --print-errorlogs \
        --timeout-multiplier 3 "${TSAN_TESTS[@]}" ||
        failed+=("tsan: ${TSAN_TESTS[*]} (build-tsan/meson-logs/testlog.txt)")
}
build_tsan
section_took "ThreadSanitizer"

# libFuzzer (clang): every target of tests/fuzz for a bounded time, from
# the seed corpus in the tree (read only; what the fuzzer finds goes to
# build-fuzz/corpus/, a crash to build-fuzz/artifacts/). fuzz-dbus runs on
# both models. -len_control=0: long inputs (a whole client session) from
# the start, not after minutes. README ("Fuzzing") says how to run them for longer. About
# 5 minutes here.
FUZZ_SECONDS=${HOTRESETD_FUZZ_SECONDS:-45}
section_start
run_fuzzers() {
    local dir=build-fuzz
    heading "Build $dir (libFuzzer, clang, ASan+UBSan)"
    local opts=(-Dfuzz=true -Dtests=false -Dman=disabled -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false)
    if [ -f "$dir/build.ninja" ]; then
        meson setup --reconfigure "$dir" "${opts[@]}" >/dev/null || { failed+=("fuzz: meson setup"); return; }
    else
        rm -rf "$dir"
        CC=clang meson setup "$dir" "${opts[@]}" >/dev/null || { failed+=("fuzz: meson setup"); return; }
    fi
    meson compile -C "$dir" || { failed+=("fuzz: build"); return; }
    mkdir -p "$dir/artifacts"
    local t model corpus
    for t in pci-address sysfs-pci machine-file policy dbus:iommufd dbus:group; do
        model=
        if [[ $t == *:* ]]; then
            model=${t#*:}
            t=${t%%:*}
        fi
        corpus="$dir/corpus/$t"
        mkdir -p "$corpus"
        heading "Fuzz fuzz-$t${model:+ ($model)} for ${FUZZ_SECONDS} s"
        if ! HOTRESETD_FUZZ_MODEL=$model ASAN_OPTIONS="$ASAN_OPTIONS" timeout $((FUZZ_SECONDS + 120)) \
                "$dir/tests/fuzz/fuzz-$t" -max_total_time="$FUZZ_SECONDS" -timeout=30 -max_len=4096 -len_control=0 \
                -print_final_stats=1 -artifact_prefix="$dir/artifacts/fuzz-$t-" \
                "$corpus" "tests/fuzz/corpus/$t"; then
            failed+=("fuzz: fuzz-$t${model:+ ($model)} (input in $dir/artifacts/)")
        fi
    done
}
run_fuzzers
section_took "libFuzzer"

# Static analysis: cppcheck, clang-tidy (.clang-tidy) and gcc -fanalyzer,
# each from a clean baseline (tools/static-analysis.sh). About 1.5 minutes
# here.
heading "Static analysis (tools/static-analysis.sh)"
section_start
tools/static-analysis.sh || failed+=("static analysis: tools/static-analysis.sh (the tool's findings above)")
section_took "static analysis"

echo
if [ ${#failed[@]} -ne 0 ]; then
    echo "FAILED:"
    printf '  %s\n' "${failed[@]}"
    exit 1
fi
echo "All tests passed (the Debian package, build/, build-asan/, valgrind, build-tsan/, the fuzzers and static analysis)."

#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The bash completion of hotresetctl (hotresetctl.bash-completion) against
# the real daemon: a private system bus, hotresetd on the emulated
# workstation (examples/workstation.json), a persistent context, then
# completions of verbs, options, addresses (long and short form, and after
# "--device="), context numbers, and the command after "run ... --".
# Bash's word splitting is reproduced (COMP_WORDBREAKS: ':' and '=' are
# words of their own), as readline hands them to the function.
#
# Environment: HOTRESETD_BIN, HOTRESETCTL_BIN, HOTRESETD_SOURCE_ROOT (meson
# sets them). Exit 77 (skipped) without bash-completion or dbus-daemon.
set -uo pipefail

ROOT=${HOTRESETD_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
BASH_COMPLETION=/usr/share/bash-completion/bash_completion
[ -f "$BASH_COMPLETION" ] || { echo "SKIP: bash-completion is not installed"; exit 77; }
command -v dbus-daemon >/dev/null || { echo "SKIP: dbus-daemon is not installed"; exit 77; }

WORK=$(mktemp -d /tmp/hotresetd-completion.XXXXXX)
BUS_PID='' DAEMON_PID=''
cleanup() {
    for pid in $DAEMON_PID $BUS_PID; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$WORK/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
CONF
dbus-daemon --config-file="$WORK/bus.conf" --nofork 2>"$WORK/bus.log" &
BUS_PID=$!
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$WORK/bus
cp "$ROOT/examples/workstation.json" "$WORK/machine.json"
for _ in $(seq 100); do [ -S "$WORK/bus" ] && break; sleep 0.1; done
"$HOTRESETD_BIN" --emulate="$WORK/machine.json" >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
# The completion runs "hotresetctl" as typed: the one under test.
mkdir "$WORK/bin"
ln -s "$(readlink -f "$HOTRESETCTL_BIN")" "$WORK/bin/hotresetctl"
export PATH=$WORK/bin:$PATH
for _ in $(seq 100); do hotresetctl list >/dev/null 2>&1 && break; sleep 0.1; done
hotresetctl list >/dev/null || { echo "FAIL: the daemon did not start"; cat "$WORK/daemon.log"; exit 1; }
hotresetctl acquire --description "completion test" 02:00.0 >/dev/null 2>&1 ||
    { echo "FAIL: acquire"; cat "$WORK/daemon.log"; exit 1; }

# shellcheck disable=SC1090
source "$BASH_COMPLETION"
# shellcheck disable=SC1091
source "$ROOT/client/hotresetctl.bash-completion"

# complete LINE: COMPREPLY for LINE with the cursor at its end, sorted, on
# one line.
complete_line() {
    local line=$1 w='' c i
    COMP_LINE=$line
    COMP_POINT=${#line}
    COMP_WORDS=()
    for ((i = 0; i < ${#line}; i++)); do
        c=${line:i:1}
        if [[ $c == ' ' ]]; then
            [[ -n $w ]] && COMP_WORDS+=("$w")
            w=''
        elif [[ $c == ':' || $c == '=' ]]; then
            [[ -n $w ]] && COMP_WORDS+=("$w")
            COMP_WORDS+=("$c")
            w=''
        else
            w+=$c
        fi
    done
    COMP_WORDS+=("$w")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    _hotresetctl hotresetctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}" 2>/dev/null
    printf '%s\n' "${COMPREPLY[@]}" | sort -u | tr '\n' ' ' | sed 's/ $//'
}

passed=0 failed=0
check() {
    local line=$1 want=$2 got
    got=$(complete_line "$line")
    if [[ $got == "$want" ]]; then
        passed=$((passed + 1))
        echo "ok: [$line] -> $got"
    else
        failed=$((failed + 1))
        echo "FAIL: [$line]"
        echo "   want: $want"
        echo "    got: $got"
    fi
}
# contains LINE WORD: WORD is among the completions.
contains() {
    local line=$1 want=$2 got
    got=" $(complete_line "$line") "
    if [[ $got == *" $want "* ]]; then
        passed=$((passed + 1))
        echo "ok: [$line] offers $want"
    else
        failed=$((failed + 1))
        echo "FAIL: [$line] does not offer $want; got:$got"
    fi
}

check 'hotresetctl ' 'acquire check contexts detach explain hot-reset-info info list monitor release reload reset reset-device run scope status'
check 'hotresetctl re' 'release reload reset reset-device'
check 'hotresetctl --' '--help --json --json= --no-ask-password --no-legend --no-names --no-pager --verbose --version'
check 'hotresetctl --json ch' 'check'
check 'hotresetctl --json=' 'off pretty short'
check 'hotresetctl --json=p' 'pretty'
check 'hotresetctl list --json=s' 'short'
check 'hotresetctl acquire --' '--description= --help --json --json= --no-ask-password --no-bind --no-legend --no-names --no-pager --persistent --transient --verbose'
check 'hotresetctl reset --c' '--context='
check 'hotresetctl reset-device --c' '--context='
check 'hotresetctl detach --c' '--context='
check 'hotresetctl run --' '-- --description= --device= --help --json --json= --no-ask-password --no-legend --no-names --no-pager --verbose'
check 'hotresetctl scope 0000:01:00.' '00.0 00.1'
contains 'hotresetctl detach 0000:02:00.0 0000:0' '05:00.0'
check 'hotresetctl reset-device --context=' '1'
# Addresses: after the colon, readline completes the part after it.
check 'hotresetctl check 0000:01:00.' '00.0 00.1'
check 'hotresetctl info 0000:03:1' '10.0 10.2'
check 'hotresetctl check 01:00.' '00.0 00.1'
check 'hotresetctl check 01:00.0 ' ''
contains 'hotresetctl check ' '0000:05:01.0'
contains 'hotresetctl acquire 0000:01:00.0 0000:0' '05:00.0'
check 'hotresetctl run --device=0000:02:' '00.0'
check 'hotresetctl run --device 02:' '00.0'
check 'hotresetctl hot-reset-info --context=1 0000:02:' '00.0'
# Context numbers.
check 'hotresetctl release ' '1'
check 'hotresetctl release 1 ' ''
check 'hotresetctl reset --context=' '1'
check 'hotresetctl hot-reset-info --context ' '1'
check 'hotresetctl acquire --description ' ''
# The command after run's "--".
contains 'hotresetctl run --device 02:00.0 -- bas' 'bash'
contains 'hotresetctl run --device=0000:02:00.0 -- sh -' '-c'

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The hotresetd demo: installs what it needs, builds, starts a private
# system bus and the daemon on the emulated workstation of
# examples/workstation.json, asks it with busctl which devices a hot reset
# of the GPU hits and why it is refused, rebinds the GPU's audio function
# to vfio-pci (by rewriting the machine file, as udev would report it) and
# asks again. Nothing on this machine's real PCI devices is touched.
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")/.."
SRC=$PWD

BUS_NAME=org.hotresetd.Broker1
ROOT=/org/hotresetd/Broker1
GPU=0000:01:00.0
GPU_PATH=$ROOT/device/pci_0000_01_00_0
AUDIO=0000:01:00.1

bold=$'\e[1m' dim=$'\e[2m' reset=$'\e[0m'
if [ ! -t 1 ]; then bold='' dim='' reset=''; fi

heading() {
    printf '\n%s==== %s ====%s\n\n' "$bold" "$*" "$reset"
}

# Shows a command, then runs it.
run() {
    printf '%s$ %s%s\n' "$dim" "$*" "$reset"
    "$@"
}

heading "Dependencies"
tools/deps.sh

heading "Build"
if [ ! -f build/build.ninja ]; then
    meson setup build
fi
meson compile -C build
HOTRESETD=$SRC/build/daemon/hotresetd
"$HOTRESETD" --version

WORK=$(mktemp -d /tmp/hotresetd-demo.XXXXXX)
BUS_PID='' DAEMON_PID='' MONITOR_PID=''
cleanup() {
    for pid in $MONITOR_PID $DAEMON_PID $BUS_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

heading "A private system bus"
cat > "$WORK/system-bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$WORK/system_bus_socket</listen>
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
dbus-daemon --config-file="$WORK/system-bus.conf" --nofork --print-address > "$WORK/bus-address" 2> "$WORK/dbus-daemon.log" &
BUS_PID=$!
for _ in $(seq 100); do
    [ -s "$WORK/bus-address" ] && break
    sleep 0.1
done
export DBUS_SYSTEM_BUS_ADDRESS
DBUS_SYSTEM_BUS_ADDRESS=$(head -n1 "$WORK/bus-address")
[ -n "$DBUS_SYSTEM_BUS_ADDRESS" ] || { echo "dbus-daemon did not start:"; cat "$WORK/dbus-daemon.log"; exit 1; }
echo "DBUS_SYSTEM_BUS_ADDRESS=$DBUS_SYSTEM_BUS_ADDRESS"
echo "(every busctl --system below talks to this bus, not the machine's)"

heading "hotresetd on the emulated workstation (examples/workstation.json)"
cp examples/workstation.json "$WORK/machine.json"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["description"])' "$WORK/machine.json" | fold -s -w 78
echo
"$HOTRESETD" --emulate="$WORK/machine.json" > "$WORK/hotresetd.log" 2>&1 &
DAEMON_PID=$!
owned=false
for _ in $(seq 100); do
    if busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
        NameHasOwner s "$BUS_NAME" 2>/dev/null | grep -q true; then
        owned=true
        break
    fi
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
done
if ! $owned; then
    echo "hotresetd did not start:"
    cat "$WORK/hotresetd.log"
    exit 1
fi
cat "$WORK/hotresetd.log"

heading "The daemon (Manager properties)"
run busctl --system introspect "$BUS_NAME" "$ROOT" org.hotresetd.Broker1.Manager

heading "Every PCI device: address, driver, reset scope (Manager.ListDevices)"
run busctl --system call "$BUS_NAME" "$ROOT" org.hotresetd.Broker1.Manager ListDevices
echo
busctl --system --json=short call "$BUS_NAME" "$ROOT" org.hotresetd.Broker1.Manager ListDevices \
    | python3 -c "$(cat <<'PY'
import json, sys
print("%-14s%-15s%-7s%s" % ("ADDRESS", "DRIVER", "SCOPE", "OBJECT"))
for address, driver, scope, path in json.load(sys.stdin)["data"][0]:
    print("%-14s%-15s%-7s%s" % (address, driver or "-", scope, path))
PY
)"

heading "The object tree"
run busctl --system tree "$BUS_NAME"

heading "The GPU $GPU"
run busctl --system call "$BUS_NAME" "$ROOT" org.hotresetd.Broker1.Manager GetDevice s 01:00.0
run busctl --system introspect "$BUS_NAME" "$GPU_PATH" org.hotresetd.Broker1.Device

show_check() {
    run busctl --system call "$BUS_NAME" "$GPU_PATH" org.hotresetd.Broker1.Device CheckHotReset
    echo
    busctl --system --json=short call "$BUS_NAME" "$GPU_PATH" org.hotresetd.Broker1.Device CheckHotReset \
        | python3 -c "$(cat <<'PY'
import json, sys
possible, devices = json.load(sys.stdin)["data"]
print("hot reset of %s: %s" % (sys.argv[1], "POSSIBLE" if possible else "REFUSED"))
for address, driver, group, holder, reason in devices:
    print("  %s  driver %-14s group %-4s holder %-4s %s" % (address, driver or "-", group, holder or "-", reason or "ok"))
PY
)" "$GPU"
}

heading "Can the GPU be hot-reset? (Device.CheckHotReset)"
show_check

heading "Errors name the problem"
run busctl --system call "$BUS_NAME" "$ROOT" org.hotresetd.Broker1.Manager GetDevice s 0000:09:00.0 || true
run busctl --system call "$BUS_NAME" "$ROOT" org.hotresetd.Broker1.Manager GetDevice s gpu0 || true

heading "Bind the audio function $AUDIO to vfio-pci"
echo "The emulated kernel watches its machine file: a new file renamed over it is"
echo "delivered as the udev events a real rebind would cause (unbind, bind)."
echo
busctl --system --json=short monitor "$BUS_NAME" > "$WORK/signals.json" 2>/dev/null &
MONITOR_PID=$!
sleep 0.5
python3 - "$WORK/machine.json" "$AUDIO" <<'PY'
import json, os, sys
path, address = sys.argv[1], sys.argv[2]
machine = json.load(open(path))
for d in machine["devices"]:
    if d["address"] == address:
        print(f'{address}: "driver": "{d["driver"]}" -> "vfio-pci"')
        d["driver"] = "vfio-pci"
with open(path + ".new", "w") as f:
    json.dump(machine, f, indent=2)
os.rename(path + ".new", path)
PY
for _ in $(seq 100); do
    if busctl --system get-property "$BUS_NAME" "$GPU_PATH" org.hotresetd.Broker1.Device HotResetPossible \
        | grep -q true; then
        break
    fi
    sleep 0.1
done
sleep 0.5
kill "$MONITOR_PID" 2>/dev/null || true
wait "$MONITOR_PID" 2>/dev/null || true
MONITOR_PID=''
echo
echo "Signals the daemon sent:"
python3 - "$WORK/signals.json" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("type") != "signal" or not m.get("path", "").startswith("/org/hotresetd/"):
        continue
    data = m["payload"]["data"]
    if m["member"] == "PropertiesChanged":
        changed = ", ".join(f"{k}={json.dumps(v['data'])}" for k, v in data[1].items())
        print(f"  PropertiesChanged {m['path']}: {changed}")
    else:
        print(f"  {m['member']} {json.dumps(data)[:100]}")
PY

heading "Can the GPU be hot-reset now?"
show_check

CTL=build/client/hotresetctl
heading "Lease the GPU and reset it (hotresetctl acquire / hot-reset-info / reset)"
echo "A lease is a context holding an iommufd with the devices bound to it; a"
echo "persistent one outlives hotresetctl's connection (release it by number)."
run "$CTL" acquire --description="demo lease" 01:00.0 01:00.1
CONTEXT=$(busctl --system --json=short call "$BUS_NAME" "$ROOT" org.freedesktop.DBus.ObjectManager \
    GetManagedObjects | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"][0]; print(sorted(p for p in d if "/context/" in p)[-1].rsplit("/",1)[1])')
run "$CTL" hot-reset-info --context="$CONTEXT" 01:00.0
run "$CTL" check 01:00.0
run "$CTL" reset --context="$CONTEXT" 01:00.0
run "$CTL" release "$CONTEXT"

heading "Reset a device nobody holds (Manager.HotReset)"
run "$CTL" reset 02:00.0
echo "The NIC's virtual function shares its bus with the physical function on ixgbe:"
run "$CTL" reset 03:10.0 || true

heading "Stop"
kill -TERM "$DAEMON_PID"
status=0
wait "$DAEMON_PID" || status=$?
DAEMON_PID=''
echo "hotresetd exited with status $status on SIGTERM."
echo
echo "Daemon log:"
sed 's/^/  /' "$WORK/hotresetd.log"
exit "$status"

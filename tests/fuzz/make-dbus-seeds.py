#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writes the seed inputs of fuzz-dbus (corpus/dbus/): whole lease
sessions in the byte encoding fuzz-dbus.c decodes, so the fuzzer starts
from calls that succeed and mutates from there. Run from anywhere; the
files are committed, this says how they were made."""
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'dbus')
WAIT = 0x11  # "how": the right signature, the client waits for the answer

# Indices in fuzz-dbus.c's methods[].
GET_DEVICE, CREATE, HOT_RESET_M, CHECK = 1, 2, 5, 7
ATTACH, DETACH, OPEN, REOPEN, IOMMUFD, INFO, HOT_RESET_C, RESET_DEVICE, ADOPT, RELEASE = \
    8, 10, 11, 12, 13, 14, 15, 16, 17, 18
GET, GET_ALL, MANAGED = 19, 20, 23


def s(dev):          # a string: the machine's device number dev
    return [0, dev]


def ctx():           # the first context the input created
    return [1, 0]


def session(dev, options=(0,)):
    b = [CREATE, 0, WAIT, *options]
    b += [ATTACH, *ctx(), WAIT, *s(dev), 0]
    b += [OPEN, *ctx(), WAIT, *s(dev)]
    b += [IOMMUFD, *ctx(), WAIT]
    b += [INFO, *ctx(), WAIT, *s(dev)]
    b += [HOT_RESET_C, *ctx(), WAIT, *s(dev)]
    b += [RESET_DEVICE, *ctx(), WAIT, *s(dev)]
    b += [REOPEN, *ctx(), WAIT, *s(dev)]
    b += [DETACH, *ctx(), WAIT, *s(dev)]
    b += [RELEASE, *ctx(), WAIT]
    return bytes(b)


os.makedirs(OUT, exist_ok=True)
seeds = {}
for dev in range(16):
    seeds[f'session-{dev:02}'] = session(dev)
# Persistent (key 0, type "b", true) and Pid (key 2, type "h", the pidfd).
seeds['session-persistent'] = session(7, (1, 0, 0, 1))
seeds['session-pid'] = session(9, (1, 2, 2, 1))
# A reset on the manager (no lease), a check on a device, the properties.
seeds['manager'] = bytes([HOT_RESET_M, 0, WAIT, *s(7), 0, CHECK, 0, 7, WAIT, GET_DEVICE, 0, WAIT, *s(9),
                          MANAGED, 0, WAIT, GET_ALL, 1, WAIT, 0, GET, 2, 3, WAIT, 1, 3])
# The client leaves while its reset runs (not waiting: "how" 0x01).
seeds['leave-mid-reset'] = bytes([CREATE, 0, WAIT, 0, ATTACH, *ctx(), WAIT, *s(7), 0,
                                  HOT_RESET_C, *ctx(), 0x01, *s(7)])
for name, data in seeds.items():
    with open(os.path.join(OUT, name), 'wb') as f:
        f.write(data)

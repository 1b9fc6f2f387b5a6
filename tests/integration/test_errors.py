#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Errors: NoSuchDevice for well-formed addresses of absent devices,
InvalidArgs (naming the expected form) for malformed ones, including
hostile strings, and unknown device object paths. The daemon must survive
all of it and keep answering."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (ADDRESS_FORM, DEVICE_IFACE, ERR_INVALID_ARGS, ERR_NO_SUCH_DEVICE,  # noqa: E402
                     ERR_UNKNOWN_OBJECT, MANAGER_IFACE, PROPS_IFACE, ROOT_PATH, device_path)

MALFORMED = [
    '',
    ' ',
    '0',
    'x',
    '0000:01:00',           # no function
    '0000:01:00.',          # empty function
    '0000:01:00.8',         # function > 7
    '0000:01:20.0',         # device > 0x1f
    '0000:01:ff.0',
    '0000:100:00.0',        # bus > 0xff
    '00000:01:00.0',        # five-digit domain
    '0000:01:00.0 ',        # trailing space
    ' 0000:01:00.0',        # leading space
    '0000:01:00.0\n',       # trailing newline
    '0000:01:00.00',        # trailing garbage
    '0000:01:00.0x',
    '0000:01:00:0',
    '0000.01.00.0',
    '0000:1:0.0',           # not zero-padded
    '0000:0x1:00.0',
    '+000:01:00.0',         # what strtoul would accept
    '-000:01:00.0',
    '0000:-1:00.0',
    '0000:01:00.-0',
    '0000:g1:00.0',
    'pci_0000_01_00_0',     # the object path form
    '0000_01_00_0',
    '/org/hotresetd/Broker1/device/pci_0000_01_00_0',
    '../../../../etc/passwd',
    '0000:01:00.0/../../x',
    '0000:01:00.0/',
    '/dev/vfio/devices/vfio0',
    '%s%s%s%n%n',           # format string
    '0000:01:00.0%n',
    '\u0660\u0660\u0660\u0660:\u0660\u0661:\u0660\u0660.\u0660',  # Arabic-Indic digits
    '\uff10\uff10\uff10\uff10:\uff10\uff11:\uff10\uff10.\uff10',  # full-width digits
    '0000:01:00.0\u200b',   # zero-width space
    '0000\u037e01:00.0',    # Greek question mark instead of ':'
    '\U0001f642',
    '0000:01:00.0' * 3,
    '0' * 4096,
    'A' * 65536,            # very long
    '0000:01:00.0' + ' ' * 10000,
]


class ErrorsTest(harness.HotresetdTestCase):
    MACHINE = 'workstation.json'

    def assertStillServing(self):
        self.assertDaemonRunning()
        self.assertEqual(self.env.get_device('0000:01:00.0'), device_path('0000:01:00.0'))
        self.assertEqual(self.env.manager_property('DeviceCount'), 16)

    def test_no_such_device(self):
        for address in ('0000:09:00.0', '0000:01:00.2', '0001:01:00.0', 'ffff:ff:1f.7', '0000:00:1f.0'):
            with self.subTest(address=address):
                self.env.expect_error(ROOT_PATH, MANAGER_IFACE, 'GetDevice', 's', [address],
                                      ERR_NO_SUCH_DEVICE, address)
        self.assertStillServing()

    def test_no_such_device_short_form(self):
        # The short form is a well-formed address of domain 0: the error is
        # NoSuchDevice (not InvalidArgs), naming the address.
        for address in ('09:00.0', '01:00.7', '1f:1f.7'):
            with self.subTest(address=address):
                self.env.expect_error(ROOT_PATH, MANAGER_IFACE, 'GetDevice', 's', [address],
                                      ERR_NO_SUCH_DEVICE, address)

    def test_no_such_device_upper_case(self):
        err = self.env.expect_error(ROOT_PATH, MANAGER_IFACE, 'GetDevice', 's', ['0000:0A:00.0'],
                                    ERR_NO_SUCH_DEVICE)
        self.assertTrue('0000:0a:00.0' in err.message or '0000:0A:00.0' in err.message, err.message)

    def test_invalid_args(self):
        for address in MALFORMED:
            with self.subTest(address=address[:40]):
                self.env.expect_error(ROOT_PATH, MANAGER_IFACE, 'GetDevice', 's', [address],
                                      ERR_INVALID_ARGS, ADDRESS_FORM)
        self.assertStillServing()

    def test_invalid_args_message_is_bounded(self):
        # A hostile 64 KiB argument must not be echoed back whole.
        err = self.env.expect_error(ROOT_PATH, MANAGER_IFACE, 'GetDevice', 's', ['B' * 65536],
                                    ERR_INVALID_ARGS, ADDRESS_FORM)
        self.assertLess(len(err.message), 4096, 'the error message echoes the whole argument')

    def test_unknown_device_object(self):
        for path in (device_path('0000:09:00.0'), device_path('0000:01:00.2'),
                     harness.DEVICE_PATH_PREFIX + 'pci_zzzz_01_00_0',
                     harness.DEVICE_PATH_PREFIX + 'pci_0000_01_00_0_0',
                     harness.DEVICE_PATH_PREFIX + 'x' * 2000):
            with self.subTest(path=path[:80]):
                self.env.expect_error(path, PROPS_IFACE, 'Get', 'ss', [DEVICE_IFACE, 'Address'],
                                      (ERR_NO_SUCH_DEVICE, ERR_UNKNOWN_OBJECT))
                self.env.expect_error(path, DEVICE_IFACE, 'CheckHotReset', '', [],
                                      (ERR_NO_SUCH_DEVICE, ERR_UNKNOWN_OBJECT))
                self.env.expect_error(path, PROPS_IFACE, 'GetAll', 's', [DEVICE_IFACE],
                                      (ERR_NO_SUCH_DEVICE, ERR_UNKNOWN_OBJECT))
        self.assertStillServing()

    def test_unknown_device_not_listed_in_tree(self):
        objects = self.env.managed_objects()
        self.assertNotIn(device_path('0000:09:00.0'), objects)
        self.assertEqual(len(harness.device_objects(objects)), 16)
        # Besides the devices, the workstation's five reset domains.
        self.assertEqual(len(harness.domain_objects(objects)), 5)
        self.assertEqual(len(objects), 16 + 5)

    def test_wrong_signature(self):
        self.env.expect_error(ROOT_PATH, MANAGER_IFACE, 'GetDevice', 'u', [1], ERR_INVALID_ARGS)
        self.env.expect_error(ROOT_PATH, MANAGER_IFACE, 'GetDevice', '', [], ERR_INVALID_ARGS)
        self.assertStillServing()


if __name__ == '__main__':
    harness.main()

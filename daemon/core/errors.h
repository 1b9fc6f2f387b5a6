/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's error vocabulary: the D-Bus error names of the contract
 * (dbus/org.hotresetd.Broker1.xml) and the helpers that fill an sd_bus_error
 * with a message naming the device and the fix. The core reports failures
 * this way; sd_bus_error is only the carrier, nothing here touches a bus. */
#pragma once

#include <systemd/sd-bus.h>

#include "pci-device.h"

#define BUS_ERROR_NO_SUCH_DEVICE "org.hotresetd.Broker1.Error.NoSuchDevice"
#define BUS_ERROR_NOT_OWNED "org.hotresetd.Broker1.Error.NotOwned"
#define BUS_ERROR_NOT_IN_DEV_SET "org.hotresetd.Broker1.Error.NotInDevSet"
#define BUS_ERROR_NO_RESET_MECHANISM "org.hotresetd.Broker1.Error.NoResetMechanism"
#define BUS_ERROR_BUSY "org.hotresetd.Broker1.Error.Busy"
#define BUS_ERROR_RATE_LIMITED "org.hotresetd.Broker1.Error.RateLimited"
#define BUS_ERROR_POLICY_DENIED "org.hotresetd.Broker1.Error.PolicyDenied"
#define BUS_ERROR_UNSUPPORTED "org.hotresetd.Broker1.Error.Unsupported"
#define BUS_ERROR_IN_USE "org.hotresetd.Broker1.Error.InUse"
#define BUS_ERROR_GROUP_NOT_VIABLE "org.hotresetd.Broker1.Error.GroupNotViable"
#define BUS_ERROR_NOT_ATTACHED "org.hotresetd.Broker1.Error.NotAttached"

/* NotInDevSet naming why d keeps target out of a hot reset (a bridge in the
 * scope, no driver, a host driver), GroupNotViable when it has no IOMMU
 * group; 0 when d is in the vfio dev_set and can be owned. */
int bus_error_not_in_dev_set(sd_bus_error *error, const PciDeviceInfo *d, const char *target);

/* A kernel call failed for a reason the daemon has no better name for.
 * sd_bus_error_set_errnof() would turn EINVAL into InvalidArgs and EPERM
 * into AccessDenied, blaming the caller for the kernel's answer; this says
 * org.freedesktop.DBus.Error.Failed (NoMemory for ENOMEM). Running out of
 * files is not the caller's fault either, but the caller can act on it:
 * EMFILE and ENFILE are LimitsExceeded, the message (fmt, then the limit:
 * the daemon's RLIMIT_NOFILE or the system's fs.file-max, and what to do)
 * is also logged as a warning, rate-limited. Returns -err. Thread-safe
 * (reset jobs call it from their worker). */
int bus_error_kernel(sd_bus_error *error, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Reads the system-wide file limit (/proc/sys/fs/file-max) for the ENFILE
 * message. Called once at start: when files run out, it cannot be opened. */
void bus_error_read_file_limits(void);

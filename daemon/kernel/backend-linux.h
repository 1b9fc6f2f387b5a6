/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internals of the Linux backend that its tests look at. The daemon itself
 * only uses what backend.h declares. */
#pragma once

#include "backend.h"

/* What the running kernel offers, as the backend probes it at start-up. */
typedef struct LinuxUapiFacts {
        bool dev_iommu;        /* /dev/iommu: IOMMUFD is there */
        bool cdev_major;       /* "vfio-dev" among the character devices in /proc/devices */
        bool dev_vfio_devices; /* /dev/vfio/devices exists (a cdev was registered) */
        bool sysfs_cdev;       /* some /sys/class/vfio-dev/vfioN has a "dev" file */
        bool vfio_container;   /* /dev/vfio/vfio: the legacy container */
} LinuxUapiFacts;

void backend_linux_probe_uapi(LinuxUapiFacts *ret);

/* The decision, with a sentence for the log saying which model and why.
 * -EOPNOTSUPP (with the reason) when want is IOMMUFD and the kernel lacks
 * it; -ENOMEM. */
int backend_linux_choose_uapi(BackendUapi want, const LinuxUapiFacts *f, bool *ret_cdev, char **ret_reason);

const char *backend_uapi_to_string(BackendUapi u);
/* "auto", "iommufd", "group"; -EINVAL for anything else. */
int backend_uapi_from_string(const char *s, BackendUapi *ret);

/* The last state the backend delivered for a device (what it will send
 * with REMOVE); NULL when it delivered none. b must come from
 * backend_linux_new(). */
const PciDeviceInfo *backend_linux_get_device(Backend *b, const PciAddress *a);
size_t backend_linux_get_n_devices(Backend *b);

/* Reads every device again and delivers the differences, removals
 * included: what the backend does when uevents were lost (the monitor's
 * receive buffer overflowed). */
int backend_linux_rescan(Backend *b);

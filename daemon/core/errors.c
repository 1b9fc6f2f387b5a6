/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "errors.h"
#include "util.h"

int bus_error_not_in_dev_set(sd_bus_error *error, const PciDeviceInfo *d, const char *target) {
        char addr[PCI_ADDRESS_STRING_MAX];

        pci_address_format(&d->address, addr);
        if (d->is_bridge)
                return sd_bus_error_setf(error, BUS_ERROR_NOT_IN_DEV_SET,
                                         "%s blocks a hot reset of %s: it is a bridge inside the reset scope, and "
                                         "bridges cannot be bound to vfio-pci.",
                                         addr, target);
        if (!driver_is_vfio(d->driver))
                return sd_bus_error_setf(error, BUS_ERROR_NOT_IN_DEV_SET,
                                         "%s blocks a hot reset of %s: it is %s%s, not a vfio driver; bind it to "
                                         "vfio-pci.",
                                         addr, target, d->driver ? "bound to " : "", d->driver ?: "unbound");
        if (d->iommu_group < 0)
                return sd_bus_error_setf(error, BUS_ERROR_GROUP_NOT_VIABLE,
                                         "%s blocks a hot reset of %s: it is in no IOMMU group, so no context can own "
                                         "it; enable the IOMMU (intel_iommu=on / amd_iommu=on).",
                                         addr, target);
        return 0;
}

int bus_error_kernel(sd_bus_error *error, int err, const char *fmt, ...) {
        _cleanup_free_ char *message = NULL;
        va_list ap;

        err = abs(err);
        va_start(ap, fmt);
        if (vasprintf(&message, fmt, ap) < 0)
                message = NULL;
        va_end(ap);
        (void) sd_bus_error_set(error, err == ENOMEM ? SD_BUS_ERROR_NO_MEMORY : SD_BUS_ERROR_FAILED,
                                message ?: "A kernel call failed.");
        return -err;
}

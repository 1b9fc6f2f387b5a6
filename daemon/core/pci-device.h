/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the kernel (sysfs/udev, or the emulated machine) says about one PCI
 * function. Backends produce these; the topology model keeps copies. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pci-address.h"

typedef struct PciDeviceInfo {
        PciAddress address;
        uint16_t vendor_id;
        uint16_t device_id;
        uint32_t class_code;  /* 24 bits: base class, subclass, prog-if */
        char *driver;         /* NULL when unbound */
        int iommu_group;      /* -1 when the device has no IOMMU group */
        char **reset_methods; /* as in sysfs reset_method; NULL = none */
        char *cdev_path;      /* /dev/vfio/devices/vfioN, NULL if none */

        /* Bridges (header type 1). A bridge leads to its secondary bus; the
         * buses below it are found through the bridges on that bus. */
        bool is_bridge;
        uint8_t secondary_bus;
        bool slot_reset; /* the slots on the secondary bus can be reset */
} PciDeviceInfo;

#define PCI_DEVICE_INFO_NULL ((PciDeviceInfo) { .iommu_group = -1 })

int pci_device_info_copy(PciDeviceInfo *dst, const PciDeviceInfo *src);
void pci_device_info_done(PciDeviceInfo *i);

/* What UNBIND and REMOVE events carry: d without its driver and cdev. A
 * shallow copy that borrows d's strings: valid only while d is. */
static inline PciDeviceInfo pci_device_info_unbound(const PciDeviceInfo *d) {
        PciDeviceInfo u = *d;
        u.driver = NULL;
        u.cdev_path = NULL;
        return u;
}

/* Same hardware: what udev would report as a remove + add when it differs. */
bool pci_device_info_same_hardware(const PciDeviceInfo *a, const PciDeviceInfo *b);
/* Every field equal. */
bool pci_device_info_equal(const PciDeviceInfo *a, const PciDeviceInfo *b);

/* vfio-pci itself or a vendor variant driver (mlx5_vfio_pci, hisi-acc-vfio-pci,
 * nvgrace-gpu-vfio-pci, ...): drivers whose devices join the vfio dev_set. */
bool driver_is_vfio(const char *driver);

/* Drivers that leave an IOMMU group viable for vfio: none, a vfio driver,
 * pci-stub (measured: a group with a pci-stub sibling is viable) and
 * pcieport (bridges manage no DMA). Any other driver makes the group
 * unusable for vfio (the kernel answers EPERM to a cdev bind). */
bool driver_keeps_group_viable(const char *driver);

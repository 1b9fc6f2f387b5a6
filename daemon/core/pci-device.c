/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fnmatch.h>

#include "pci-device.h"
#include "util.h"

void pci_device_info_done(PciDeviceInfo *i) {
        free(i->driver);
        free(i->cdev_path);
        strv_free(i->reset_methods);
        *i = PCI_DEVICE_INFO_NULL;
}

int pci_device_info_copy(PciDeviceInfo *dst, const PciDeviceInfo *src) {
        PciDeviceInfo c = *src;
        c.driver = NULL;
        c.cdev_path = NULL;
        c.reset_methods = NULL;

        if ((src->driver && !(c.driver = strdup(src->driver))) ||
            (src->cdev_path && !(c.cdev_path = strdup(src->cdev_path))) ||
            (src->reset_methods && !(c.reset_methods = strv_copy(src->reset_methods)))) {
                pci_device_info_done(&c);
                return -ENOMEM;
        }
        *dst = c;
        return 0;
}

bool pci_device_info_same_hardware(const PciDeviceInfo *a, const PciDeviceInfo *b) {
        return pci_address_equal(&a->address, &b->address) &&
               a->vendor_id == b->vendor_id &&
               a->device_id == b->device_id &&
               a->class_code == b->class_code &&
               a->is_bridge == b->is_bridge &&
               (!a->is_bridge || a->secondary_bus == b->secondary_bus);
}

bool pci_device_info_equal(const PciDeviceInfo *a, const PciDeviceInfo *b) {
        return pci_device_info_same_hardware(a, b) &&
               streq_ptr(a->driver, b->driver) &&
               a->iommu_group == b->iommu_group &&
               strv_equal(a->reset_methods, b->reset_methods) &&
               streq_ptr(a->cdev_path, b->cdev_path) &&
               a->slot_reset == b->slot_reset;
}

bool driver_is_vfio(const char *driver) {
        if (!driver)
                return false;
        /* Variant drivers register through vfio_pci_core and are named
         * after it; pci-stub and others are not in the dev_set. */
        return streq(driver, "vfio-pci") ||
               fnmatch("*vfio_pci*", driver, 0) == 0 ||
               fnmatch("*-vfio-pci", driver, 0) == 0;
}

bool driver_keeps_group_viable(const char *driver) {
        return !driver || driver_is_vfio(driver) || streq(driver, "pci-stub") || streq(driver, "pcieport");
}

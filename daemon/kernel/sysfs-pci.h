/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Pure parsers for what the kernel writes in sysfs (and /proc/devices)
 * about PCI devices, so the Linux backend's reading of the real machine is
 * unit-testable without a kernel. No I/O here: the backend reads, these
 * functions decide. Every parser accepts the trailing newline the kernel
 * writes and rejects anything else that is not the documented form. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pci-address.h"

/* A hex attribute as in vendor ("0x8086\n"), device, class ("0x020000\n"):
 * optional "0x"/"0X", 1 to 8 hex digits, optional trailing whitespace.
 * -EINVAL on anything else, -ERANGE when the value is above max. */
int sysfs_parse_hex(const char *s, uint32_t max, uint32_t *ret);

/* A decimal attribute as in secondary_bus_number ("2\n"). -EINVAL, -ERANGE
 * as above. */
int sysfs_parse_uint(const char *s, uint32_t max, uint32_t *ret);

/* reset_method: method names separated by spaces ("pm bus\n"). An empty or
 * blank value means no method: *ret = NULL. Names are [A-Za-z0-9_-]+;
 * anything else is -EINVAL. -ENOMEM when out of memory. */
int sysfs_parse_reset_methods(const char *s, char ***ret);

/* The target of a device's iommu_group link
 * ("../../../kernel/iommu_groups/14") → 14. The last component must be a
 * decimal number (no sign, at most INT_MAX) and the one before it
 * "iommu_groups". -EINVAL otherwise. */
int sysfs_parse_iommu_group_link(const char *target, int *ret);

/* A slot's address file ("0000:02:00\n": domain:bus:device, or "0000:02"
 * for a slot without a device number) and the name of a pci_bus directory
 * ("0000:02"). *ret_device is -1 when there is no device part. Device
 * numbers above 0x1f are -EINVAL. ret_device may be NULL, then a device
 * part is -EINVAL (a bus name has none). */
int sysfs_parse_bus_address(const char *s, uint16_t *ret_domain, uint8_t *ret_bus, int *ret_device);

/* "vfio12" → 12: the name of a vfio-dev device (/sys/class/vfio-dev/vfioN,
 * /dev/vfio/devices/vfioN). */
int sysfs_parse_vfio_dev_name(const char *name, unsigned *ret);

/* The PCI device a vfio-dev device belongs to, from the vfio-dev device's
 * sysfs path ".../0000:01:00.0/vfio-dev/vfio0"): the address and the
 * length of the parent's path (the prefix up to, not including,
 * "/vfio-dev/"). Works on the path alone, so also for a "remove" event whose
 * directory is gone. -EINVAL when the path has no such shape. */
int sysfs_vfio_dev_parent(const char *syspath, PciAddress *ret, size_t *ret_parent_len);

/* PCIe port services (drivers/pci/pcie/portdrv.h): the bits in the names
 * of the port service devices below a port ("0000:00:1c.0:pcie004"). */
#define PCIE_PORT_SERVICE_PME 0x01u
#define PCIE_PORT_SERVICE_AER 0x02u
#define PCIE_PORT_SERVICE_HP 0x04u
#define PCIE_PORT_SERVICE_DPC 0x08u

/* name is a port service device of the port named port ("0000:00:1c.0"):
 * "<port>:pcieXXX" (today's kernels: port type - 4 in the hundreds, the
 * service bit below) or "<port>:pcieXX" (old kernels, one hex digit each).
 * Returns the service bit, or -EINVAL when name is not such a device. */
int sysfs_parse_port_service(const char *name, const char *port);

/* Class codes (24 bits) of bridges that lead to a bus the kernel numbers:
 * PCI-to-PCI (0x0604xx), semi-transparent PCI-to-PCI (0x0609xx) and
 * CardBus (0x0607xx). Host bridges (0x0600xx), ISA bridges (0x0601xx) and
 * the like lead to no PCI bus. */
bool pci_class_is_bridge(uint32_t class_code);

/* What sysfs says about a hotplug slot on a bridge's secondary bus, and
 * the decision whether vfio will reset that slot instead of the bus.
 *
 * The kernel resets a slot only through the slot's hotplug driver's
 * reset_slot operation, and of the hotplug drivers x86 systems use only
 * pciehp has one (pci_reset_hotplug_slot(): no operation → -ENOTTY → vfio
 * falls back to a bus reset). Slots created by acpiphp (ACPI hotplug, the
 * default on QEMU q35 root ports), shpchp or the ACPI pci_slot driver
 * (physical slot numbers only) are not reset. So:
 *   - the slot's "module" link, when there is one, names the hotplug
 *     driver: a slot reset iff it is "pciehp";
 *   - without it (pciehp built in without module parameters, as on the
 *     project's VM kernel), the bridge's port service devices tell: a
 *     pciehp service device ("<bridge>:pcie004") means pciehp drives the
 *     port's slot;
 *   - "power"/"attention" files alone do not count: acpiphp and shpchp
 *     slots have them too, and they reset the bus. */
typedef struct SysfsSlotFacts {
        const char *module;          /* basename of the slot's "module" link, NULL without one */
        bool bridge_has_pciehp;      /* a port service device with PCIE_PORT_SERVICE_HP */
        bool has_power, has_attention; /* informational only, see above */
} SysfsSlotFacts;

bool sysfs_slot_can_reset(const SysfsSlotFacts *f);

/* /proc/devices lists name among the "Character devices:". The vfio
 * device cdev major ("vfio-dev") is registered only by kernels built with
 * CONFIG_VFIO_DEVICE_CDEV, while /sys/class/vfio-dev exists without it. */
bool proc_devices_has_char(const char *text, const char *name);

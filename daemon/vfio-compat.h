/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The parts of the vfio/iommufd uAPI the daemon uses, under the daemon's own
 * names, so one build works against old and new <linux/vfio.h>.
 *
 * Debian bookworm's linux-libc-dev (6.1) predates the vfio cdev interface
 * (Linux 6.6): no VFIO_DEVICE_BIND_IOMMUFD, no <linux/iommufd.h>, and its
 * hot-reset dependent-device record calls its first field group_id only.
 * Everything below is written from the ABI (layouts and ioctl numbers are
 * fixed by the kernel); where the system header has a definition it must
 * agree, which the static asserts check. */
#pragma once

#include <stdint.h>
#include <sys/ioctl.h>
#include <linux/vfio.h>

/* ioctl numbers: vfio and iommufd share the ';' type byte and pass sizes in
 * argsz/size fields instead of the ioctl number. */
#define HR_VFIO_IO(nr) _IO(VFIO_TYPE, VFIO_BASE + (nr))
#define HR_IOMMUFD_IO(nr) _IO(';', 0x80 + (nr))

#define HR_VFIO_GET_API_VERSION HR_VFIO_IO(0)
#define HR_VFIO_CHECK_EXTENSION HR_VFIO_IO(1)
#define HR_VFIO_SET_IOMMU HR_VFIO_IO(2)
#define HR_VFIO_GROUP_GET_STATUS HR_VFIO_IO(3)
#define HR_VFIO_GROUP_SET_CONTAINER HR_VFIO_IO(4)
#define HR_VFIO_GROUP_UNSET_CONTAINER HR_VFIO_IO(5)
#define HR_VFIO_GROUP_GET_DEVICE_FD HR_VFIO_IO(6)
#define HR_VFIO_DEVICE_GET_INFO HR_VFIO_IO(7)
#define HR_VFIO_DEVICE_RESET HR_VFIO_IO(11)
#define HR_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO HR_VFIO_IO(12)
#define HR_VFIO_DEVICE_PCI_HOT_RESET HR_VFIO_IO(13)
#define HR_VFIO_DEVICE_BIND_IOMMUFD HR_VFIO_IO(18)
#define HR_VFIO_DEVICE_ATTACH_IOMMUFD_PT HR_VFIO_IO(19)
#define HR_VFIO_DEVICE_DETACH_IOMMUFD_PT HR_VFIO_IO(20)

#define HR_IOMMU_DESTROY HR_IOMMUFD_IO(0)
#define HR_IOMMU_IOAS_ALLOC HR_IOMMUFD_IO(1)

#define HR_VFIO_API_VERSION 0
#define HR_VFIO_TYPE1v2_IOMMU 3

#define HR_VFIO_GROUP_FLAGS_VIABLE (1u << 0)
#define HR_VFIO_GROUP_FLAGS_CONTAINER_SET (1u << 1)

#define HR_VFIO_DEVICE_FLAGS_RESET (1u << 0)
#define HR_VFIO_DEVICE_FLAGS_PCI (1u << 1)

/* Hot-reset info: in cdev mode the id is an iommufd devid, with two
 * reserved values; with legacy groups it is the IOMMU group number. */
#define HR_VFIO_PCI_HOT_RESET_FLAG_DEV_ID (1u << 0)
#define HR_VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED (1u << 1)
#define HR_VFIO_PCI_DEVID_OWNED UINT32_C(0)
#define HR_VFIO_PCI_DEVID_NOT_OWNED UINT32_C(0xffffffff)

struct hr_vfio_group_status {
        uint32_t argsz;
        uint32_t flags;
};

struct hr_vfio_device_info {
        uint32_t argsz;
        uint32_t flags;
        uint32_t num_regions;
        uint32_t num_irqs;
        uint32_t cap_offset;
        uint32_t pad;
};

struct hr_vfio_pci_dependent_device {
        uint32_t id; /* devid (cdev) or group id (legacy) */
        uint16_t segment;
        uint8_t bus;
        uint8_t devfn; /* slot << 3 | function */
};

struct hr_vfio_pci_hot_reset_info {
        uint32_t argsz;
        uint32_t flags;
        uint32_t count;
        struct hr_vfio_pci_dependent_device devices[];
};

struct hr_vfio_pci_hot_reset {
        uint32_t argsz;
        uint32_t flags;
        uint32_t count;
        int32_t group_fds[];
};

struct hr_vfio_device_bind_iommufd {
        uint32_t argsz;
        uint32_t flags;
        int32_t iommufd;
        uint32_t out_devid;
};

struct hr_vfio_device_attach_iommufd_pt {
        uint32_t argsz;
        uint32_t flags;
        uint32_t pt_id;
};

struct hr_iommu_ioas_alloc {
        uint32_t size;
        uint32_t flags;
        uint32_t out_ioas_id;
};

struct hr_iommu_destroy {
        uint32_t size;
        uint32_t id;
};

/* Where the system header already has a definition, it must be the same
 * ABI; a mismatch here means this file is wrong, not the kernel. */
_Static_assert(sizeof(struct hr_vfio_pci_dependent_device) == 8, "dependent device record is 8 bytes");
_Static_assert(sizeof(struct hr_vfio_pci_hot_reset_info) == 12, "hot reset info header is 12 bytes");
_Static_assert(sizeof(struct hr_vfio_pci_hot_reset) == 12, "hot reset header is 12 bytes");
_Static_assert(sizeof(struct hr_vfio_device_bind_iommufd) == 16, "bind_iommufd is 16 bytes");
_Static_assert(HR_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO == VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, "ioctl number");
_Static_assert(HR_VFIO_DEVICE_PCI_HOT_RESET == VFIO_DEVICE_PCI_HOT_RESET, "ioctl number");
_Static_assert(HR_VFIO_GROUP_GET_DEVICE_FD == VFIO_GROUP_GET_DEVICE_FD, "ioctl number");
_Static_assert(HR_VFIO_DEVICE_RESET == VFIO_DEVICE_RESET, "ioctl number");
_Static_assert(sizeof(struct hr_vfio_pci_dependent_device) == sizeof(struct vfio_pci_dependent_device),
               "system dependent device record");
#ifdef VFIO_DEVICE_BIND_IOMMUFD
_Static_assert(HR_VFIO_DEVICE_BIND_IOMMUFD == VFIO_DEVICE_BIND_IOMMUFD, "ioctl number");
_Static_assert(sizeof(struct hr_vfio_device_bind_iommufd) == sizeof(struct vfio_device_bind_iommufd),
               "system bind_iommufd");
#endif
#ifdef VFIO_PCI_HOT_RESET_FLAG_DEV_ID
_Static_assert(HR_VFIO_PCI_HOT_RESET_FLAG_DEV_ID == VFIO_PCI_HOT_RESET_FLAG_DEV_ID, "flag value");
#endif

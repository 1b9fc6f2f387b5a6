/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The parts of the vfio/iommufd uAPI the daemon uses, under the daemon's own
 * names, so one build works against old and new <linux/vfio.h>.
 *
 * Debian bookworm's linux-libc-dev (6.1) predates the vfio cdev interface
 * (Linux 6.6): no VFIO_DEVICE_BIND_IOMMUFD, no <linux/iommufd.h>, and its
 * hot-reset dependent-device record calls its first field group_id only.
 * The system's definitions are used where it has them; what it lacks is
 * written here from the ABI (layouts and ioctl numbers are fixed by the
 * kernel), and the static asserts check the two agree. */
#pragma once

#include <stdint.h>
#include <sys/ioctl.h>
#include <linux/vfio.h>

/* ioctl numbers: vfio and iommufd share the ';' type byte and pass sizes in
 * argsz/size fields instead of the ioctl number. */
#define HR_VFIO_IO(nr) _IO(VFIO_TYPE, VFIO_BASE + (nr))
#define HR_IOMMUFD_IO(nr) _IO(';', 0x80 + (nr))

/* ---- Legacy group/container API: in every <linux/vfio.h> we build
 * against, so the system's definitions are used. ---- */
#define HR_VFIO_GET_API_VERSION VFIO_GET_API_VERSION
#define HR_VFIO_CHECK_EXTENSION VFIO_CHECK_EXTENSION
#define HR_VFIO_SET_IOMMU VFIO_SET_IOMMU
#define HR_VFIO_GROUP_GET_STATUS VFIO_GROUP_GET_STATUS
#define HR_VFIO_GROUP_SET_CONTAINER VFIO_GROUP_SET_CONTAINER
#define HR_VFIO_GROUP_UNSET_CONTAINER VFIO_GROUP_UNSET_CONTAINER
#define HR_VFIO_GROUP_GET_DEVICE_FD VFIO_GROUP_GET_DEVICE_FD
#define HR_VFIO_DEVICE_GET_INFO VFIO_DEVICE_GET_INFO
#define HR_VFIO_DEVICE_RESET VFIO_DEVICE_RESET
#define HR_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO VFIO_DEVICE_GET_PCI_HOT_RESET_INFO
#define HR_VFIO_DEVICE_PCI_HOT_RESET VFIO_DEVICE_PCI_HOT_RESET

#define HR_VFIO_API_VERSION VFIO_API_VERSION
#define HR_VFIO_TYPE1v2_IOMMU VFIO_TYPE1v2_IOMMU
#define HR_VFIO_GROUP_FLAGS_VIABLE VFIO_GROUP_FLAGS_VIABLE
#define HR_VFIO_GROUP_FLAGS_CONTAINER_SET VFIO_GROUP_FLAGS_CONTAINER_SET
#define HR_VFIO_DEVICE_FLAGS_RESET VFIO_DEVICE_FLAGS_RESET
#define HR_VFIO_DEVICE_FLAGS_PCI VFIO_DEVICE_FLAGS_PCI

/* Struct tags: "struct hr_x" is the system's "struct x". */
#define hr_vfio_group_status vfio_group_status
#define hr_vfio_pci_hot_reset vfio_pci_hot_reset

/* The device info's last field (pad, Linux 6.4) is newer than bookworm's
 * header; the kernel takes either size. */
struct hr_vfio_device_info {
        uint32_t argsz;
        uint32_t flags;
        uint32_t num_regions;
        uint32_t num_irqs;
        uint32_t cap_offset;
        uint32_t pad;
};

/* ---- Hot-reset info: in cdev mode the id is an iommufd devid, with two
 * reserved values; with legacy groups it is the IOMMU group number. Before
 * Linux 6.6 the system's record names the field group_id only, after it a
 * union; the daemon reads it in both modes, so it has its own record (the
 * ABI is the same: checked below). ---- */
#ifdef VFIO_PCI_HOT_RESET_FLAG_DEV_ID
#define HR_VFIO_PCI_HOT_RESET_FLAG_DEV_ID VFIO_PCI_HOT_RESET_FLAG_DEV_ID
#define HR_VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED
#else
#define HR_VFIO_PCI_HOT_RESET_FLAG_DEV_ID (1u << 0)
#define HR_VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED (1u << 1)
#endif
#define HR_VFIO_PCI_DEVID_OWNED UINT32_C(0)
#define HR_VFIO_PCI_DEVID_NOT_OWNED UINT32_C(0xffffffff)

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

/* ---- vfio device cdevs (Linux 6.6): the system's definitions when it has
 * them, else ours, written from the ABI. ---- */
#ifdef VFIO_DEVICE_BIND_IOMMUFD
#define HR_VFIO_DEVICE_BIND_IOMMUFD VFIO_DEVICE_BIND_IOMMUFD
#define HR_VFIO_DEVICE_ATTACH_IOMMUFD_PT VFIO_DEVICE_ATTACH_IOMMUFD_PT
#define HR_VFIO_DEVICE_DETACH_IOMMUFD_PT VFIO_DEVICE_DETACH_IOMMUFD_PT
#define hr_vfio_device_bind_iommufd vfio_device_bind_iommufd
#define hr_vfio_device_attach_iommufd_pt vfio_device_attach_iommufd_pt
#else
#define HR_VFIO_DEVICE_BIND_IOMMUFD HR_VFIO_IO(18)
#define HR_VFIO_DEVICE_ATTACH_IOMMUFD_PT HR_VFIO_IO(19)
#define HR_VFIO_DEVICE_DETACH_IOMMUFD_PT HR_VFIO_IO(20)

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
#endif

/* ---- iommufd (Linux 6.2): <linux/iommufd.h> when the system has it. ---- */
#if __has_include(<linux/iommufd.h>)
#include <linux/iommufd.h>
#define HR_IOMMU_DESTROY IOMMU_DESTROY
#define HR_IOMMU_IOAS_ALLOC IOMMU_IOAS_ALLOC
#define hr_iommu_destroy iommu_destroy
#define hr_iommu_ioas_alloc iommu_ioas_alloc
#else
#define HR_IOMMU_DESTROY HR_IOMMUFD_IO(0)
#define HR_IOMMU_IOAS_ALLOC HR_IOMMUFD_IO(1)

struct hr_iommu_ioas_alloc {
        uint32_t size;
        uint32_t flags;
        uint32_t out_ioas_id;
};

struct hr_iommu_destroy {
        uint32_t size;
        uint32_t id;
};
#endif

/* Our definitions must be the kernel's ABI; where the system header has
 * the same thing, they must agree. */
_Static_assert(sizeof(struct hr_vfio_pci_dependent_device) == 8, "dependent device record is 8 bytes");
_Static_assert(sizeof(struct hr_vfio_pci_dependent_device) == sizeof(struct vfio_pci_dependent_device),
               "system dependent device record");
_Static_assert(sizeof(struct hr_vfio_pci_hot_reset_info) == 12, "hot reset info header is 12 bytes");
_Static_assert(sizeof(struct hr_vfio_pci_hot_reset_info) == sizeof(struct vfio_pci_hot_reset_info),
               "system hot reset info header");
_Static_assert(sizeof(struct hr_vfio_pci_hot_reset) == 12, "hot reset header is 12 bytes");
_Static_assert(sizeof(struct hr_vfio_device_bind_iommufd) == 16, "bind_iommufd is 16 bytes");
_Static_assert(sizeof(struct hr_iommu_ioas_alloc) == 12, "ioas_alloc is 12 bytes");
_Static_assert(HR_VFIO_DEVICE_BIND_IOMMUFD == _IO(';', 100 + 18), "ioctl number");
_Static_assert(HR_VFIO_DEVICE_ATTACH_IOMMUFD_PT == _IO(';', 100 + 19), "ioctl number");
_Static_assert(HR_IOMMU_IOAS_ALLOC == _IO(';', 0x81), "ioctl number");

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The emulated kernel's vfio/iommufd uAPI: open(), ioctl() and close() on
 * /dev/iommu, /dev/vfio/vfio, /dev/vfio/N and /dev/vfio/devices/vfioN, with
 * the kernel's semantics and error returns (DESIGN.md "Kernel facts",
 * vm/README.md for what a real 6.12 kernel answered), over a device table
 * the caller owns.
 *
 * The files handed out are placeholder files (memfd_create(), MFD_CLOEXEC,
 * named "hotresetd-emulated:iommufd", "hotresetd-emulated:vfio-dev:ADDR",
 * ...). An open file is identified by the inode behind the descriptor
 * (fstat: st_dev, st_ino), not by the descriptor number, so a dup() — in
 * this process or, after SCM_RIGHTS, the same file elsewhere — is the same
 * open file, as on the real kernel.
 *
 * Lifetimes follow the kernel's references: a bound device file holds its
 * iommufd, a device file opened through a group holds the group file, a
 * group with a container set holds the container. Closing a descriptor
 * through emulated_vfio_close() ends the caller's reference; the file is
 * released (binding ended, group released, ...) when nothing holds it any
 * more. The emulation cannot see dups held by other processes: the
 * descriptor emulated_vfio_open() (or GET_DEVICE_FD) returned stands for
 * all of them.
 *
 * Every entry point is thread-safe (one mutex). */
#pragma once

#include <stdbool.h>

#include "pci-address.h"
#include "topology.h"

typedef struct EmulatedVfio EmulatedVfio;

/* machine: the emulated kernel's device table, owned by the caller and kept
 * current by it (cdev_path of a device bound to a vfio driver is
 * "/dev/vfio/devices/vfioN" in the cdev model). If other threads may call
 * into the emulation while the caller changes the table, the caller changes
 * it between emulated_vfio_lock() and emulated_vfio_unlock().
 * cdev: the kernel has the cdev/iommufd uAPI as well as the legacy
 * group/container one (else only the legacy one). NULL on OOM. */
EmulatedVfio *emulated_vfio_new(Topology *machine, bool cdev);
/* Closes every descriptor it handed out that is still open. No call may be
 * in progress on another thread. */
EmulatedVfio *emulated_vfio_free(EmulatedVfio *v);
static inline void emulated_vfio_freep(EmulatedVfio **v) {
        emulated_vfio_free(*v);
}

/* Returns an fd or -errno (ENOENT for a node the kernel would not have,
 * EBUSY for a group node that is open or whose group a cdev holds). flags
 * are accepted and ignored: every file is close-on-exec. */
int emulated_vfio_open(EmulatedVfio *v, const char *path, int flags);
/* Returns >= 0 (a new fd for VFIO_GROUP_GET_DEVICE_FD, 1/0 for
 * VFIO_CHECK_EXTENSION) or -errno; -EBADF when fd is not an emulated file.
 * Integer arguments (VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU) are passed as
 * the pointer value, as with ioctl(2). May be called from any thread;
 * VFIO_DEVICE_PCI_HOT_RESET sleeps for the reset delay without holding the
 * lock, so do not call it with emulated_vfio_lock() held. */
int emulated_vfio_ioctl(EmulatedVfio *v, int fd, unsigned long request, void *arg);
/* Closes fd (like close(2): -EBADF if it is not open). If fd is the
 * descriptor the emulation handed out for an open file, the caller's
 * reference to that file ends with it. */
int emulated_vfio_close(EmulatedVfio *v, int fd);

/* A restarted daemon's files back from systemd's file descriptor store:
 * each emulated file among fds is known again with the state it had (kept
 * in the memfd itself), and owned by the caller like a descriptor open()
 * returned. Others are left alone. Returns how many were adopted, or the
 * first error (the others are adopted still). */
int emulated_vfio_adopt(EmulatedVfio *v, const int *fds, size_t n);
/* Whether fd is an open file of path as open() would have opened it
 * ("/dev/iommu", "/dev/vfio/vfio", "/dev/vfio/N", a live device's cdev), or,
 * for a device opened through its group, "vfio-device:ADDRESS". */
bool emulated_vfio_is_file(EmulatedVfio *v, int fd, const char *path);

/* The caller changed the machine: a device was unbound from its driver or
 * removed. Open files of it die: every later ioctl on them returns
 * -ENODEV; a binding to an iommufd ends (it no longer counts for
 * ownership, nor blocks its group's legacy node). */
void emulated_vfio_device_gone(EmulatedVfio *v, const PciAddress *a);

/* Serialize changes of the machine with the emulation's readers. The lock
 * is recursive: emulated_vfio_device_gone() may be called while holding it. */
void emulated_vfio_lock(EmulatedVfio *v);
void emulated_vfio_unlock(EmulatedVfio *v);

/* Successful VFIO_DEVICE_PCI_HOT_RESETs that hit the device (every affected
 * device counts, not only the one the ioctl was called on), and successful
 * VFIO_DEVICE_RESETs of it. Kept across device_gone. */
unsigned emulated_vfio_reset_count(EmulatedVfio *v, const PciAddress *a);
unsigned emulated_vfio_function_reset_count(EmulatedVfio *v, const PciAddress *a);

/* Make every hot reset take msec milliseconds (0: instant). The sleep
 * happens after the checks, without holding the lock; hot resets whose
 * scopes overlap are serialized as the kernel's dev_set lock does, others
 * run concurrently. */
void emulated_vfio_set_reset_delay(EmulatedVfio *v, unsigned msec);

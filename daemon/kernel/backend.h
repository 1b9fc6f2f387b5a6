/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The kernel boundary. A backend enumerates PCI devices, reports changes as
 * the udev actions the kernel would send, and (later) performs the vfio and
 * iommufd operations. The emulated backend stands in for all of it from a
 * machine file; the Linux backend talks to sysfs, udev and /dev/vfio. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "pci-device.h"

typedef enum BackendAction {
        BACKEND_ADD,    /* a device appeared (info: the whole device) */
        BACKEND_REMOVE, /* a device went away (info: its last state) */
        BACKEND_BIND,   /* a driver bound (info.driver set) */
        BACKEND_UNBIND, /* the driver unbound (info.driver NULL) */
        BACKEND_CHANGE, /* anything else changed (group, reset methods, slot) */
} BackendAction;

const char *backend_action_to_string(BackendAction a);

typedef struct Backend Backend;

/* Called for every event, in the order udev would deliver them: for a device
 * that goes away with a driver bound, UNBIND then REMOVE; for a new device
 * with a driver, ADD then BIND; children are removed before their bridge and
 * added after it. info is only valid during the call. */
typedef void (*BackendEventHandler)(Backend *b, BackendAction action, const PciDeviceInfo *info, void *userdata);

typedef struct BackendOps {
        /* Deliver the devices present now (ADD, then BIND where bound) and
         * start watching for changes. */
        int (*start)(Backend *b);
        void (*free)(Backend *b);

        /* The vfio/iommufd uAPI at the level of open(), ioctl() and close(),
         * so contexts run the same code on the real and the emulated kernel.
         * open: "/dev/iommu", "/dev/vfio/vfio", "/dev/vfio/N",
         * "/dev/vfio/devices/vfioN"; returns an fd or -errno. ioctl returns
         * >= 0 (a new fd for VFIO_GROUP_GET_DEVICE_FD) or -errno; it may be
         * called from a worker thread (a hot reset can take seconds). */
        int (*open)(Backend *b, const char *path, int flags);
        int (*ioctl)(Backend *b, int fd, unsigned long request, void *arg);
        void (*close)(Backend *b, int fd);

        /* A restarted daemon's files, back from systemd's file descriptor
         * store. adopt: the kernel side knows them again (the emulated
         * kernel reads each file's state back; the real one never forgot);
         * returns how many it took up, or -errno. is_file: whether fd is an
         * open file of path as open() opens it ("/dev/iommu",
         * "/dev/vfio/vfio", "/dev/vfio/N", a device's cdev path), or, for a
         * device opened through its group, "vfio-device:ADDRESS". */
        int (*adopt)(Backend *b, const int *fds, size_t n);
        bool (*is_file)(Backend *b, int fd, const char *path);
} BackendOps;

struct Backend {
        const BackendOps *ops;
        char *name;    /* "emulated-iommufd", "emulated-group", "iommufd", "group" */
        bool emulated;
        bool cdev;     /* the iommufd/cdev uAPI is in use (else legacy groups) */
        sd_event *event;
        BackendEventHandler handler;
        void *userdata;
};

Backend *backend_free(Backend *b);

/* Hands one event to the handler (and the debug log): what every backend
 * calls, in the order documented at BackendEventHandler. */
void backend_emit(Backend *b, BackendAction action, const PciDeviceInfo *info);
static inline void backend_freep(Backend **b) {
        backend_free(*b);
}
static inline int backend_start(Backend *b) {
        return b->ops->start(b);
}
static inline int backend_open(Backend *b, const char *path, int flags) {
        return b->ops->open ? b->ops->open(b, path, flags) : -EOPNOTSUPP;
}
static inline int backend_ioctl(Backend *b, int fd, unsigned long request, void *arg) {
        return b->ops->ioctl ? b->ops->ioctl(b, fd, request, arg) : -EOPNOTSUPP;
}
static inline int backend_adopt(Backend *b, const int *fds, size_t n) {
        return b->ops->adopt ? b->ops->adopt(b, fds, n) : 0;
}
static inline bool backend_is_file(Backend *b, int fd, const char *path) {
        return b->ops->is_file && b->ops->is_file(b, fd, path);
}
static inline void backend_close(Backend *b, int fd) {
        if (fd < 0)
                return;
        if (b->ops->close)
                b->ops->close(b, fd);
}

/* The emulated kernel: reads MACHINE.json (see DESIGN.md and
 * docs in the README), watches it, and turns every rewrite into events.
 * Fails with a logged message naming the key/line when the file is bad. */
int backend_emulated_new(sd_event *e, const char *machine_path, BackendEventHandler handler, void *userdata,
                         Backend **ret);

/* Which vfio uAPI the Linux backend uses. AUTO picks the iommufd/cdev model
 * when the kernel offers it (/dev/iommu and vfio device cdevs), else the
 * legacy group/container model. */
typedef enum BackendUapi {
        BACKEND_UAPI_AUTO,
        BACKEND_UAPI_IOMMUFD,
        BACKEND_UAPI_GROUP,
} BackendUapi;

/* The real kernel: libudev (enumeration and the "udev" netlink monitor),
 * sysfs, and the vfio/iommufd syscalls. Logs the model it chose and why;
 * fails with -EOPNOTSUPP (logged) when IOMMUFD is forced but the kernel
 * does not offer it. */
int backend_linux_new(sd_event *e, BackendUapi uapi, BackendEventHandler handler, void *userdata, Backend **ret);

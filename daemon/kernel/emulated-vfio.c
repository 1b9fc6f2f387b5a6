/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The emulated kernel's vfio/iommufd uAPI. Each rule names where it comes
 * from: "measured" = /work/shared/vm/README.md (Linux 6.12 under QEMU),
 * otherwise the kernel source it mirrors (drivers/vfio/group.c,
 * drivers/vfio/container.c, drivers/vfio/device_cdev.c,
 * drivers/vfio/pci/vfio_pci_core.c, drivers/iommu/iommufd/). */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "emulated-vfio.h"
#include "log.h"
#include "util.h"
#include "vfio-compat.h"

#define MEMFD_PREFIX "hotresetd-emulated:"

/* What vfio-pci reports in VFIO_DEVICE_GET_INFO (VFIO_PCI_NUM_REGIONS and
 * VFIO_PCI_NUM_IRQS of the uAPI: BARs 0-5, ROM, config, VGA; INTx, MSI,
 * MSI-X, ERR, REQ). */
#define EMULATED_NUM_REGIONS 9u
#define EMULATED_NUM_IRQS 5u

/* VFIO_TYPE1_IOMMU; TYPE1v2 is in vfio-compat.h. */
#define EMULATED_TYPE1_IOMMU 1u

/* strndup_user(arg, PAGE_SIZE) in VFIO_GROUP_GET_DEVICE_FD. */
#define DEVICE_NAME_MAX 4096

typedef enum FileKind {
        FILE_IOMMUFD,
        FILE_CONTAINER,
        FILE_GROUP,
        FILE_DEVICE,
} FileKind;

/* iommufd objects share one id space per iommufd (an xarray allocating the
 * lowest free id from 1): IOASes, the hardware page tables attaching a
 * device to an IOAS creates, and bound devices. */
typedef enum ObjectKind {
        OBJECT_IOAS,
        OBJECT_HWPT,
        OBJECT_DEVICE,
} ObjectKind;

typedef struct IommufdObject {
        uint32_t id;
        ObjectKind kind;
        uint32_t ioas_id; /* OBJECT_HWPT: the IOAS it maps */
} IommufdObject;

typedef struct VfioFile VfioFile;
struct VfioFile {
        FileKind kind;
        unsigned n_ref;
        int fd; /* the descriptor handed out; -1 once closed through emulated_vfio_close() */
        dev_t dev;
        ino_t ino;

        /* FILE_IOMMUFD */
        IommufdObject *objects;
        size_t n_objects;

        /* FILE_CONTAINER */
        bool iommu_set;

        /* FILE_GROUP */
        int group;
        VfioFile *container; /* holds a reference */

        /* FILE_DEVICE */
        PciAddress address;
        VfioFile *group_file; /* opened through this group (holds a reference); NULL: a cdev */
        bool dead;            /* the device was unbound or removed */
        VfioFile *iommufd;    /* a cdev bound to this iommufd (holds a reference) */
        int iommu_group;      /* of a bound cdev, at bind time */
        uint32_t devid;
        uint32_t hwpt_id; /* attached through this hardware page table, 0: detached */

        /* While adopting (emulated_vfio_adopt()): the inodes of the files
         * this one referred to before the restart. */
        ino_t pending_group_file, pending_container, pending_iommufd;
};

typedef struct ResetCounter {
        PciAddress address;
        unsigned hot;
        unsigned function;
} ResetCounter;

/* A hot reset sleeping its delay; lives on the resetting thread's stack. */
typedef struct InFlight {
        const PciAddress *addresses;
        size_t n;
        struct InFlight *next;
} InFlight;

typedef struct CdevSeen {
        PciAddress address;
        bool known;
} CdevSeen;

struct EmulatedVfio {
        pthread_mutex_t lock;
        pthread_cond_t reset_done;

        Topology *machine;
        bool cdev;

        VfioFile **files; /* every file something still holds */
        size_t n_files;

        ResetCounter *counters;
        size_t n_counters;

        InFlight *in_flight;
        unsigned reset_delay_msec;

        /* Which device /dev/vfio/devices/vfioN was last seen on, by N: an
         * open() of a cdev costs the same on any size of machine. Checked
         * against the machine on every use (a bind may have moved it). */
        CdevSeen *cdevs;
        size_t n_cdevs;
};

/* ---- files -------------------------------------------------------------- */

static void file_unref(EmulatedVfio *v, VfioFile *f);

static VfioFile *file_ref(VfioFile *f) {
        f->n_ref++;
        return f;
}

static int file_new(EmulatedVfio *v, FileKind kind, const char *name, VfioFile **ret) {
        char full[256];
        struct stat st;

        VfioFile **n = realloc(v->files, (v->n_files + 1) * sizeof(VfioFile *));
        if (!n)
                return -ENOMEM;
        v->files = n;

        _cleanup_free_ VfioFile *f = calloc(1, sizeof(VfioFile));
        if (!f)
                return -ENOMEM;

        snprintf(full, sizeof full, MEMFD_PREFIX "%s", name);
        _cleanup_close_ int fd = memfd_create(full, MFD_CLOEXEC);
        if (fd < 0)
                /* cppcheck-suppress memleak ; freed by _cleanup_free_ (cppcheck does not know cleanup attributes) */
                return -errno;
        if (fstat(fd, &st) < 0)
                /* cppcheck-suppress memleak ; freed by _cleanup_free_ (cppcheck does not know cleanup attributes) */
                return -errno;

        f->kind = kind;
        f->n_ref = 1; /* the descriptor's */
        f->dev = st.st_dev;
        f->ino = st.st_ino;
        f->group = -1;
        f->iommu_group = -1;
        f->fd = TAKE_FD(fd);

        v->files[v->n_files++] = f;
        *ret = TAKE_PTR(f);
        return 0;
}

static void file_forget(EmulatedVfio *v, VfioFile *f) {
        for (size_t i = 0; i < v->n_files; i++)
                if (v->files[i] == f) {
                        memmove(v->files + i, v->files + i + 1, (v->n_files - i - 1) * sizeof(VfioFile *));
                        v->n_files--;
                        return;
                }
}

/* -EBADF if fd is not open; 0 with *ret NULL if it is not an emulated file. */
static int file_lookup(EmulatedVfio *v, int fd, VfioFile **ret) {
        struct stat st;

        *ret = NULL;
        if (fd < 0 || fstat(fd, &st) < 0)
                return -EBADF;
        /* The inode, not the number: a dup() is the same open file
         * (measured: "A dup() of the bound fd performs HOT_RESET fine").
         * A file something still holds may have no descriptor left; memfd
         * inode numbers only count up, so none is mistaken for it. */
        for (size_t i = 0; i < v->n_files; i++)
                if (v->files[i]->dev == st.st_dev && v->files[i]->ino == st.st_ino) {
                        *ret = v->files[i];
                        return 1;
                }
        return 0;
}

static bool fd_is_file(int fd, const VfioFile *f) {
        struct stat st;
        return fd >= 0 && fstat(fd, &st) >= 0 && st.st_dev == f->dev && st.st_ino == f->ino;
}

/* ---- iommufd objects ---------------------------------------------------- */

static IommufdObject *object_find(VfioFile *ictx, uint32_t id) {
        for (size_t i = 0; i < ictx->n_objects; i++)
                if (ictx->objects[i].id == id)
                        return &ictx->objects[i];
        return NULL;
}

/* The lowest free id from 1 (the kernel's xa_alloc() on an ALLOC1 xarray):
 * ids are unique per iommufd and > 0, and a freed id is given out again. */
static int object_add(VfioFile *ictx, ObjectKind kind, uint32_t ioas_id, uint32_t *ret_id) {
        uint32_t id = 1;

        while (object_find(ictx, id))
                id++;

        IommufdObject *n = realloc(ictx->objects, (ictx->n_objects + 1) * sizeof(IommufdObject));
        if (!n)
                return -ENOMEM;
        ictx->objects = n;
        ictx->objects[ictx->n_objects++] = (IommufdObject) { .id = id, .kind = kind, .ioas_id = ioas_id };
        *ret_id = id;
        return 0;
}

static void object_remove(VfioFile *ictx, uint32_t id) {
        IommufdObject *o = object_find(ictx, id);
        if (!o)
                return;
        *o = ictx->objects[--ictx->n_objects];
}

static bool hwpt_in_use(EmulatedVfio *v, VfioFile *ictx, uint32_t hwpt_id) {
        for (size_t i = 0; i < v->n_files; i++) {
                VfioFile *f = v->files[i];
                if (f->kind == FILE_DEVICE && f->iommufd == ictx && f->hwpt_id == hwpt_id)
                        return true;
        }
        return false;
}

/* ---- device state -------------------------------------------------------- */

/* Detaching the last device from an automatically created hardware page
 * table destroys it (iommufd_hw_pagetable_put() of an auto domain). */
static void device_detach(EmulatedVfio *v, VfioFile *f) {
        uint32_t hwpt = f->hwpt_id;

        if (!hwpt)
                return;
        f->hwpt_id = 0;
        if (!hwpt_in_use(v, f->iommufd, hwpt))
                object_remove(f->iommufd, hwpt);
}

static void device_unbind(EmulatedVfio *v, VfioFile *f) {
        if (!f->iommufd)
                return;
        device_detach(v, f);
        object_remove(f->iommufd, f->devid);
        f->devid = 0;
        f->iommu_group = -1;
        file_unref(v, TAKE_PTR(f->iommufd));
}

static unsigned container_n_groups(EmulatedVfio *v, const VfioFile *c) {
        unsigned n = 0;
        for (size_t i = 0; i < v->n_files; i++)
                n += v->files[i]->kind == FILE_GROUP && v->files[i]->container == c;
        return n;
}

/* The last group leaving a container releases its IOMMU driver
 * (__vfio_group_unset_container()). */
static void group_unset_container(EmulatedVfio *v, VfioFile *g) {
        VfioFile *c = TAKE_PTR(g->container);

        if (!c)
                return;
        if (container_n_groups(v, c) == 0)
                c->iommu_set = false;
        file_unref(v, c);
}

static void file_release(EmulatedVfio *v, VfioFile *f) {
        file_forget(v, f);
        switch (f->kind) {
        case FILE_DEVICE:
                /* Closing a device file ends its binding and lets go of
                 * its group file. */
                device_unbind(v, f);
                if (f->group_file)
                        file_unref(v, TAKE_PTR(f->group_file));
                break;
        case FILE_GROUP:
                /* vfio_group_fops_release(): runs only when no device file
                 * holds the group; it leaves the container. */
                group_unset_container(v, f);
                break;
        case FILE_IOMMUFD:
                free(f->objects);
                break;
        case FILE_CONTAINER:
                break;
        }
        if (f->fd >= 0 && fd_is_file(f->fd, f))
                (void) close(f->fd);
        free(f);
}

static void file_unref(EmulatedVfio *v, VfioFile *f) {
        if (!f)
                return;
        if (--f->n_ref == 0)
                file_release(v, f);
}

/* ---- the machine ---------------------------------------------------------- */

static PciDevice *machine_device(EmulatedVfio *v, const PciAddress *a) {
        return topology_get(v->machine, a);
}

/* /dev/vfio/N exists while a device of IOMMU group N is bound to a vfio
 * driver: the vfio group is created when the first one registers and
 * removed with the last (vfio_group_find_or_alloc() /
 * vfio_device_remove_group()). */
static bool group_exists(EmulatedVfio *v, int group) {
        for (PciDevice *d = topology_group_first(v->machine, group); d; d = d->group_next)
                if (driver_is_vfio(d->info.driver))
                        return true;
        return false;
}

/* Viable: no device of the group is bound to a driver that does DMA on its
 * own (measured: a pci-stub sibling leaves the group viable, an e1000e one
 * makes BIND_IOMMUFD fail with EPERM). */
static bool group_viable(EmulatedVfio *v, int group) {
        for (PciDevice *d = topology_group_first(v->machine, group); d; d = d->group_next)
                if (!driver_keeps_group_viable(d->info.driver))
                        return false;
        return true;
}

/* The group's legacy node is open (vfio_group->opened_file). A group file
 * stays open while a device file holds it, even after its descriptor is
 * closed. */
static VfioFile *group_legacy_file(EmulatedVfio *v, int group) {
        for (size_t i = 0; i < v->n_files; i++)
                if (v->files[i]->kind == FILE_GROUP && v->files[i]->group == group)
                        return v->files[i];
        return NULL;
}

/* The iommufd that owns a group through a bound cdev of one of its devices
 * (iommufd_ctx_has_group()); NULL if none does. */
static VfioFile *group_owner(EmulatedVfio *v, int group) {
        if (group < 0)
                return NULL;
        for (size_t i = 0; i < v->n_files; i++) {
                VfioFile *f = v->files[i];
                if (f->kind == FILE_DEVICE && !f->dead && f->iommufd && f->iommu_group == group)
                        return f->iommufd;
        }
        return NULL;
}

static VfioFile *device_bound_file(EmulatedVfio *v, const PciAddress *a) {
        for (size_t i = 0; i < v->n_files; i++) {
                VfioFile *f = v->files[i];
                if (f->kind == FILE_DEVICE && !f->dead && f->iommufd && pci_address_equal(&f->address, a))
                        return f;
        }
        return NULL;
}

/* The kernel's device->open_count: bound cdevs and files opened through
 * the group. */
static unsigned device_open_count(EmulatedVfio *v, const PciAddress *a) {
        unsigned n = 0;
        for (size_t i = 0; i < v->n_files; i++) {
                VfioFile *f = v->files[i];
                if (f->kind == FILE_DEVICE && !f->dead && (f->iommufd || f->group_file) &&
                    pci_address_equal(&f->address, a))
                        n++;
        }
        return n;
}

static bool device_alone_on_bus(EmulatedVfio *v, const PciDevice *d) {
        return topology_bus_size(v->machine, d->info.address.domain, d->info.address.bus) == 1;
}

/* vfio-pci's reset_works: a function reset the kernel can do now. "bus"
 * only counts for a device alone on its bus (pci_parent_bus_reset()); the
 * kernel lists it for fn0 of a multifunction device because fn1 was not
 * enumerated yet when it probed (measured: fn0 "pm bus", fn1 "pm"), and it
 * no longer applies once fn1 is there. */
static bool device_reset_works(EmulatedVfio *v, const PciDevice *d) {
        for (char **m = d->info.reset_methods; m && *m; m++) {
                if (!streq(*m, "bus"))
                        return true;
                if (!d->info.is_bridge && topology_parent_bridge(v->machine, d) && device_alone_on_bus(v, d))
                        return true;
        }
        return false;
}

static ResetCounter *counter_get(EmulatedVfio *v, const PciAddress *a, bool create) {
        for (size_t i = 0; i < v->n_counters; i++)
                if (pci_address_equal(&v->counters[i].address, a))
                        return &v->counters[i];
        if (!create)
                return NULL;
        ResetCounter *n = realloc(v->counters, (v->n_counters + 1) * sizeof(ResetCounter));
        if (!n)
                return NULL;
        v->counters = n;
        v->counters[v->n_counters] = (ResetCounter) { .address = *a };
        return &v->counters[v->n_counters++];
}

/* ---- open ------------------------------------------------------------------ */

static int open_device_file(EmulatedVfio *v, const PciAddress *a, VfioFile *group_file) {
        char name[64], addr[PCI_ADDRESS_STRING_MAX];
        VfioFile *f;
        int r;

        snprintf(name, sizeof name, "%s:%s", group_file ? "vfio-device" : "vfio-dev", pci_address_format(a, addr));
        r = file_new(v, FILE_DEVICE, name, &f);
        if (r < 0)
                return r;
        f->address = *a;
        if (group_file)
                f->group_file = file_ref(group_file);
        return f->fd;
}

/* N of /dev/vfio/devices/vfioN, or -1 for another path. */
static ssize_t cdev_number(const char *path) {
        const char *s = startswith(path, "/dev/vfio/devices/vfio");
        unsigned long n;
        char *end;

        if (!s || *s < '0' || *s > '9')
                return -1;
        errno = 0;
        n = strtoul(s, &end, 10);
        if (errno != 0 || *end || n > INT_MAX)
                return -1;
        return (ssize_t) n;
}

/* Numbers the cache keeps (the largest machine is 65,536 functions): a
 * machine file's vfio-dev number of a billion costs a scan, not memory. */
#define CDEV_CACHE_MAX (1 << 17)

static void cdev_remember(EmulatedVfio *v, const char *path, const PciAddress *a) {
        ssize_t n = cdev_number(path);
        if (n < 0 || n >= CDEV_CACHE_MAX)
                return;
        if ((size_t) n >= v->n_cdevs) {
                size_t want = (size_t) n + 1 > 2 * v->n_cdevs ? (size_t) n + 1 : 2 * v->n_cdevs;
                if (want > CDEV_CACHE_MAX)
                        want = CDEV_CACHE_MAX;
                CdevSeen *nc = reallocarray(v->cdevs, want, sizeof(CdevSeen));
                if (!nc)
                        return; /* only a cache: the next open() scans again */
                memset(nc + v->n_cdevs, 0, (want - v->n_cdevs) * sizeof(CdevSeen));
                v->cdevs = nc;
                v->n_cdevs = want;
        }
        v->cdevs[n] = (CdevSeen) { .address = *a, .known = true };
}

static PciDevice *cdev_device(EmulatedVfio *v, const char *path) {
        ssize_t n = cdev_number(path);
        if (n >= 0 && (size_t) n < v->n_cdevs && v->cdevs[n].known) {
                PciDevice *d = machine_device(v, &v->cdevs[n].address);
                if (d && streq_ptr(d->info.cdev_path, path) && driver_is_vfio(d->info.driver))
                        return d;
        }
        /* Not seen yet, or moved by a bind since: learn every device's
         * number from the machine, once until the next such change. */
        PciDevice *found = NULL;
        for (size_t i = 0; i < topology_size(v->machine); i++) {
                PciDevice *d = topology_at(v->machine, i);
                if (!d->info.cdev_path || !driver_is_vfio(d->info.driver))
                        continue;
                cdev_remember(v, d->info.cdev_path, &d->info.address);
                if (!found && streq(d->info.cdev_path, path))
                        found = d;
        }
        return found;
}

static int open_cdev(EmulatedVfio *v, const char *path) {
        if (!v->cdev)
                return -ENOENT;
        /* A second open() of a cdev, bound or not, is a new open file
         * (measured: it opens; BIND on it is EINVAL). */
        PciDevice *d = cdev_device(v, path);
        if (!d)
                return -ENOENT;
        return open_device_file(v, &d->info.address, NULL);
}

static int parse_group_number(const char *s, int *ret) {
        char *end;
        long n;

        if (*s < '0' || *s > '9')
                return -ENOENT;
        errno = 0;
        n = strtol(s, &end, 10);
        if (errno != 0 || *end != '\0' || n > INT32_MAX)
                return -ENOENT;
        *ret = (int) n;
        return 0;
}

static int open_group(EmulatedVfio *v, const char *number) {
        char name[64];
        VfioFile *f;
        int group, r;

        r = parse_group_number(number, &group);
        if (r < 0)
                return r;
        if (!group_exists(v, group))
                return -ENOENT;
        /* Measured: opening the group node while a cdev of that group is
         * bound: EBUSY (it opens again once the cdev is closed). */
        if (group_owner(v, group))
                return -EBUSY;
        /* Legacy groups are single-open (vfio_group_fops_open()). */
        if (group_legacy_file(v, group))
                return -EBUSY;

        snprintf(name, sizeof name, "vfio-group:%d", group);
        r = file_new(v, FILE_GROUP, name, &f);
        if (r < 0)
                return r;
        f->group = group;
        return f->fd;
}

static int open_locked(EmulatedVfio *v, const char *path) {
        VfioFile *f;
        int r;

        if (streq(path, "/dev/iommu")) {
                if (!v->cdev)
                        return -ENOENT;
                r = file_new(v, FILE_IOMMUFD, "iommufd", &f);
                return r < 0 ? r : f->fd;
        }
        if (streq(path, "/dev/vfio/vfio")) {
                r = file_new(v, FILE_CONTAINER, "vfio-container", &f);
                return r < 0 ? r : f->fd;
        }
        if (strncmp(path, "/dev/vfio/devices/", 18) == 0)
                return open_cdev(v, path);
        if (strncmp(path, "/dev/vfio/", 10) == 0)
                return open_group(v, path + 10);
        return -ENOENT;
}

/* ---- iommufd ioctls -------------------------------------------------------- */

static int iommufd_ioctl(EmulatedVfio *v, VfioFile *ictx, unsigned long request, void *arg) {
        switch (request) {
        case HR_IOMMU_IOAS_ALLOC: {
                struct hr_iommu_ioas_alloc *a = arg;
                uint32_t id;
                int r;

                if (!a)
                        return -EFAULT;
                if (a->size < sizeof *a)
                        return -EINVAL;
                if (a->flags)
                        return -EOPNOTSUPP;
                r = object_add(ictx, OBJECT_IOAS, 0, &id);
                if (r < 0)
                        return r;
                a->out_ioas_id = id;
                return 0;
        }
        case HR_IOMMU_DESTROY: {
                struct hr_iommu_destroy *d = arg;

                if (!d)
                        return -EFAULT;
                if (d->size < sizeof *d)
                        return -EINVAL;
                IommufdObject *o = object_find(ictx, d->id);
                if (!o)
                        return -ENOENT;
                /* Objects something still uses cannot go: an IOAS a page
                 * table maps, a page table devices are attached to, a
                 * device a vfio file has bound. */
                if (o->kind != OBJECT_IOAS)
                        return -EBUSY;
                for (size_t i = 0; i < ictx->n_objects; i++)
                        if (ictx->objects[i].kind == OBJECT_HWPT && ictx->objects[i].ioas_id == d->id)
                                return -EBUSY;
                object_remove(ictx, d->id);
                return 0;
        }
        default:
                return -ENOTTY;
        }
}

/* ---- container ioctls ------------------------------------------------------- */

static int container_ioctl(EmulatedVfio *v, VfioFile *c, unsigned long request, void *arg) {
        uintptr_t value = (uintptr_t) arg;

        switch (request) {
        case HR_VFIO_GET_API_VERSION:
                return HR_VFIO_API_VERSION;
        case HR_VFIO_CHECK_EXTENSION:
                /* The type1 IOMMU driver answers for both of its types. */
                return value == EMULATED_TYPE1_IOMMU || value == HR_VFIO_TYPE1v2_IOMMU;
        case HR_VFIO_SET_IOMMU:
                /* vfio_ioctl_set_iommu(): needs a group and no driver yet;
                 * a type no driver supports is ENODEV. */
                if (container_n_groups(v, c) == 0 || c->iommu_set)
                        return -EINVAL;
                if (value != EMULATED_TYPE1_IOMMU && value != HR_VFIO_TYPE1v2_IOMMU)
                        return -ENODEV;
                c->iommu_set = true;
                return 0;
        default:
                return -ENOTTY;
        }
}

/* ---- group ioctls ----------------------------------------------------------- */

static int group_set_container(EmulatedVfio *v, VfioFile *g, const int *arg) {
        VfioFile *c;
        int r;

        if (!arg)
                return -EFAULT;
        r = file_lookup(v, *arg, &c);
        if (r < 0)
                return r;
        /* vfio_group_ioctl_set_container(): a group already in a
         * container is EINVAL; a group whose devices all went away is
         * ENODEV; a file that is not a container is EBADFD (using an
         * iommufd as the container, the iommufd compat mode, is not
         * emulated). */
        if (g->container)
                return -EINVAL;
        if (!group_exists(v, g->group))
                return -ENODEV;
        if (!c || c->kind != FILE_CONTAINER)
                return -EBADFD;
        /* iommu_group_claim_dma_owner() fails with EPERM while a driver
         * that does DMA has a device of the group. */
        if (!group_viable(v, g->group))
                return -EPERM;
        g->container = file_ref(c);
        return 0;
}

static int group_unset_container_ioctl(EmulatedVfio *v, VfioFile *g) {
        if (!g->container)
                return -EINVAL;
        /* Open device files use the container (container_users). */
        for (size_t i = 0; i < v->n_files; i++)
                if (v->files[i]->kind == FILE_DEVICE && v->files[i]->group_file == g)
                        return -EBUSY;
        group_unset_container(v, g);
        return 0;
}

static int group_get_device_fd(EmulatedVfio *v, VfioFile *g, const char *name) {
        char canonical[PCI_ADDRESS_STRING_MAX];
        PciAddress a;

        if (!name)
                return -EFAULT;
        if (strnlen(name, DEVICE_NAME_MAX) >= DEVICE_NAME_MAX)
                return -EINVAL;

        /* vfio_device_get_from_name(): the device's exact name among the
         * group's vfio devices, else ENODEV. */
        if (pci_address_parse(name, &a) < 0 || !streq(pci_address_format(&a, canonical), name))
                return -ENODEV;
        PciDevice *d = machine_device(v, &a);
        if (!d || d->info.iommu_group != g->group || !driver_is_vfio(d->info.driver))
                return -ENODEV;

        /* vfio_df_group_open(): the group needs a container, and
         * vfio_group_use_container() a container with an IOMMU set. */
        if (!g->container || !g->container->iommu_set)
                return -EINVAL;

        return open_device_file(v, &a, g);
}

static int group_ioctl(EmulatedVfio *v, VfioFile *g, unsigned long request, void *arg) {
        switch (request) {
        case HR_VFIO_GROUP_GET_STATUS: {
                struct hr_vfio_group_status *s = arg;

                if (!s)
                        return -EFAULT;
                if (s->argsz < sizeof *s)
                        return -EINVAL;
                if (!group_exists(v, g->group))
                        return -ENODEV;
                /* Measured: with a pci-stub sibling the group is viable. */
                if (g->container)
                        s->flags = HR_VFIO_GROUP_FLAGS_CONTAINER_SET | HR_VFIO_GROUP_FLAGS_VIABLE;
                else
                        s->flags = group_viable(v, g->group) ? HR_VFIO_GROUP_FLAGS_VIABLE : 0;
                return 0;
        }
        case HR_VFIO_GROUP_SET_CONTAINER:
                return group_set_container(v, g, arg);
        case HR_VFIO_GROUP_UNSET_CONTAINER:
                return group_unset_container_ioctl(v, g);
        case HR_VFIO_GROUP_GET_DEVICE_FD:
                return group_get_device_fd(v, g, arg);
        default:
                return -ENOTTY;
        }
}

/* ---- device ioctls ------------------------------------------------------------ */

static int device_bind(EmulatedVfio *v, VfioFile *f, PciDevice *d, struct hr_vfio_device_bind_iommufd *b) {
        VfioFile *ictx;
        uint32_t devid;
        int group = d->info.iommu_group, r;

        /* The order is vfio_df_ioctl_bind_iommufd()'s. */
        if (!b)
                return -EFAULT;
        if (b->argsz < sizeof *b || b->flags != 0 || b->iommufd < 0)
                return -EINVAL;
        /* Only cdev files bind. */
        if (f->group_file)
                return -EINVAL;
        /* vfio_device_block_group(): the legacy node is open. */
        if (group >= 0 && group_legacy_file(v, group))
                return -EBUSY;
        /* Measured: a second BIND of the same fd: EINVAL. */
        if (f->iommufd)
                return -EINVAL;
        /* iommufd_ctx_from_fd(): EBADF, or EBADFD for another file. */
        r = file_lookup(v, b->iommufd, &ictx);
        if (r < 0)
                return r;
        if (!ictx || ictx->kind != FILE_IOMMUFD)
                return -EBADFD;
        /* Measured: a second open() of a bound cdev succeeds, but BIND on
         * it: EINVAL (vfio_df_open(): the cdev path opens a device once). */
        if (device_open_count(v, &f->address) > 0)
                return -EINVAL;
        if (group < 0)
                return -ENODEV;
        /* Measured: fn1 on its native e1000e driver: BIND_IOMMUFD of fn0
         * fails with EPERM; binding the sibling into a second iommufd:
         * EPERM (iommu_device_claim_dma_owner() with another owner). */
        if (!group_viable(v, group))
                return -EPERM;
        VfioFile *owner = group_owner(v, group);
        if (owner && owner != ictx)
                return -EPERM;

        r = object_add(ictx, OBJECT_DEVICE, 0, &devid);
        if (r < 0)
                return r;
        f->iommufd = file_ref(ictx);
        f->iommu_group = group;
        f->devid = devid;
        b->out_devid = devid;
        return 0;
}

static int device_attach(EmulatedVfio *v, VfioFile *f, struct hr_vfio_device_attach_iommufd_pt *at) {
        VfioFile *ictx = f->iommufd;
        uint32_t hwpt = 0;
        int r;

        if (!at)
                return -EFAULT;
        if (at->argsz < sizeof *at || at->flags)
                return -EINVAL;

        IommufdObject *o = object_find(ictx, at->pt_id);
        if (!o)
                return -ENOENT;
        switch (o->kind) {
        case OBJECT_HWPT:
                hwpt = o->id;
                break;
        case OBJECT_IOAS:
                /* Attaching to an IOAS goes through a hardware page table
                 * for it, made on first use and shared by later devices
                 * (iommufd_device_auto_get_domain()): it takes an id, which
                 * is why the measured devids were 2 and 4. */
                for (size_t i = 0; i < ictx->n_objects && !hwpt; i++)
                        if (ictx->objects[i].kind == OBJECT_HWPT && ictx->objects[i].ioas_id == o->id)
                                hwpt = ictx->objects[i].id;
                if (!hwpt) {
                        uint32_t ioas = o->id;
                        r = object_add(ictx, OBJECT_HWPT, ioas, &hwpt);
                        if (r < 0)
                                return r;
                }
                break;
        default:
                return -EINVAL;
        }

        if (f->hwpt_id != hwpt) {
                device_detach(v, f); /* attaching again replaces */
                f->hwpt_id = hwpt;
        }
        at->pt_id = hwpt; /* the kernel returns the page table's id */
        return 0;
}

static int device_detach_ioctl(EmulatedVfio *v, VfioFile *f, struct hr_vfio_device_attach_iommufd_pt *dt) {
        /* struct vfio_device_detach_iommufd_pt is argsz and flags. */
        if (!dt)
                return -EFAULT;
        if (dt->argsz < 2 * sizeof(uint32_t) || dt->flags)
                return -EINVAL;
        device_detach(v, f);
        return 0;
}

static int device_get_info(EmulatedVfio *v, PciDevice *d, struct hr_vfio_device_info *info) {
        if (!info)
                return -EFAULT;
        if (info->argsz < offsetof(struct hr_vfio_device_info, cap_offset))
                return -EINVAL;
        /* Measured: GET_INFO flags 0x3 (RESET, PCI). */
        info->flags = HR_VFIO_DEVICE_FLAGS_PCI | (device_reset_works(v, d) ? HR_VFIO_DEVICE_FLAGS_RESET : 0);
        info->num_regions = EMULATED_NUM_REGIONS;
        info->num_irqs = EMULATED_NUM_IRQS;
        if (info->argsz >= sizeof *info) {
                info->cap_offset = 0;
                info->pad = 0;
        }
        return 0;
}

static int device_function_reset(EmulatedVfio *v, PciDevice *d) {
        /* vfio_pci_ioctl_reset(): EINVAL when !reset_works. Measured:
         * VFIO_DEVICE_RESET succeeds (reset_method "pm"). */
        if (!device_reset_works(v, d))
                return -EINVAL;
        ResetCounter *c = counter_get(v, &d->info.address, true);
        if (!c)
                return -ENOMEM;
        c->function++;
        return 0;
}

/* The id GET_PCI_HOT_RESET_INFO reports for an affected device to a cdev
 * bound to ictx (vfio_pci_fill_devs(), vfio_iommufd_get_dev_id()). */
static uint32_t devid_for(EmulatedVfio *v, VfioFile *ictx, const PciDevice *e) {
        /* Not in the vfio dev_set (measured: fn1 on pci-stub reports
         * 0xffffffff). */
        if (!driver_is_vfio(e->info.driver))
                return HR_VFIO_PCI_DEVID_NOT_OWNED;
        VfioFile *b = device_bound_file(v, &e->info.address);
        if (b && b->iommufd == ictx)
                return b->devid;
        /* Measured: fn0 bound, fn1 on vfio-pci unopened in the same group:
         * devid 0. A device bound elsewhere has its group owned elsewhere. */
        if (e->info.iommu_group >= 0 && group_owner(v, e->info.iommu_group) == ictx)
                return HR_VFIO_PCI_DEVID_OWNED;
        return HR_VFIO_PCI_DEVID_NOT_OWNED;
}

static int device_hot_reset_info(EmulatedVfio *v, VfioFile *f, PciDevice *d,
                                 struct hr_vfio_pci_hot_reset_info *info) {
        _cleanup_free_ PciDevice **affected = NULL;
        size_t n;
        int r;

        if (!info)
                return -EFAULT;
        if (info->argsz < sizeof *info)
                return -EINVAL;
        /* Measured: a device on the root bus: INFO fails with ENODEV. */
        if (topology_reset_scope(v->machine, d) == RESET_SCOPE_NONE)
                return -ENODEV;
        r = topology_affected(v->machine, d, &affected, &n);
        if (r < 0)
                return r;

        /* Measured: INFO with argsz = the 12-byte header: ENOSPC,
         * count = 2, flags = 0. No entry is written. */
        if (n > (info->argsz - sizeof *info) / sizeof(struct hr_vfio_pci_dependent_device)) {
                info->count = (uint32_t) n;
                info->flags = 0;
                return -ENOSPC;
        }

        bool cdev = !f->group_file;
        uint32_t flags = cdev ? HR_VFIO_PCI_HOT_RESET_FLAG_DEV_ID | HR_VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED : 0;
        for (size_t i = 0; i < n; i++) {
                const PciDevice *e = affected[i];
                uint32_t id;

                if (cdev) {
                        id = devid_for(v, f->iommufd, e);
                        /* Measured: fn1 on pci-stub: flags 0x1. */
                        if (id == HR_VFIO_PCI_DEVID_NOT_OWNED)
                                flags &= ~HR_VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED;
                } else {
                        /* Group ids; a device without a group fails the
                         * whole call with EPERM. */
                        if (e->info.iommu_group < 0)
                                return -EPERM;
                        id = (uint32_t) e->info.iommu_group;
                }
                info->devices[i] = (struct hr_vfio_pci_dependent_device) {
                        .id = id,
                        .segment = e->info.address.domain,
                        .bus = e->info.address.bus,
                        .devfn = (uint8_t) (e->info.address.slot << 3 | e->info.address.function),
                };
        }
        info->count = (uint32_t) n;
        info->flags = flags;
        return 0;
}

static bool in_flight_overlaps(EmulatedVfio *v, const PciAddress *a, size_t n) {
        for (InFlight *x = v->in_flight; x; x = x->next)
                for (size_t i = 0; i < x->n; i++)
                        for (size_t j = 0; j < n; j++)
                                if (pci_address_equal(&x->addresses[i], &a[j]))
                                        return true;
        return false;
}

static void in_flight_remove(EmulatedVfio *v, InFlight *me) {
        for (InFlight **p = &v->in_flight; *p; p = &(*p)->next)
                if (*p == me) {
                        *p = me->next;
                        return;
                }
}

static void sleep_msec(unsigned msec) {
        struct timespec ts = { .tv_sec = msec / 1000, .tv_nsec = (long) (msec % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* The devices a hot reset through f would hit, after the checks that come
 * before the kernel takes the dev_set lock; for the group model, the group
 * numbers of the fds passed. */
static int hot_reset_scope(EmulatedVfio *v, VfioFile *f, const struct hr_vfio_pci_hot_reset *hr, int *groups,
                           PciAddress **ret, size_t *ret_n) {
        _cleanup_free_ PciDevice **affected = NULL;
        size_t n;
        int r;

        PciDevice *d = machine_device(v, &f->address);
        if (f->dead || !d || !driver_is_vfio(d->info.driver))
                return -ENODEV;
        /* Measured: a device on the root bus: HOT_RESET fails with ENODEV. */
        if (topology_reset_scope(v->machine, d) == RESET_SCOPE_NONE)
                return -ENODEV;
        r = topology_affected(v->machine, d, &affected, &n);
        if (r < 0)
                return r;

        if (hr->count > 0) {
                /* vfio_pci_ioctl_pci_hot_reset_groups(): more fds than
                 * affected devices is EINVAL; each must be open (EBADF)
                 * and a vfio group (EINVAL). */
                if (hr->count > n)
                        return -EINVAL;
                for (uint32_t i = 0; i < hr->count; i++) {
                        VfioFile *g;
                        r = file_lookup(v, hr->group_fds[i], &g);
                        if (r < 0)
                                return r;
                        if (!g || g->kind != FILE_GROUP)
                                return -EINVAL;
                        groups[i] = g->group;
                }
        }

        PciAddress *a = calloc(n, sizeof(PciAddress));
        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                a[i] = affected[i]->info.address;
        *ret = a;
        *ret_n = n;
        return 0;
}

/* The checks under the dev_set lock (vfio_pci_dev_set_hot_reset()). */
static int hot_reset_allowed(EmulatedVfio *v, VfioFile *f, uint32_t count, const int *groups,
                             const PciAddress *addresses, size_t n) {
        for (size_t i = 0; i < n; i++) {
                const PciDevice *e = machine_device(v, &addresses[i]);

                /* vfio_pci_dev_set_resettable(): every affected device must
                 * be in the dev_set, bridges included (measured: fn1 on
                 * pci-stub: HOT_RESET: EINVAL, in both models). */
                if (!e || !driver_is_vfio(e->info.driver))
                        return -EINVAL;

                if (count == 0) {
                        /* cdev: ownership through the calling file's
                         * iommufd, by the rules of INFO. */
                        if (devid_for(v, f->iommufd, e) == HR_VFIO_PCI_DEVID_NOT_OWNED)
                                return -EINVAL;
                } else {
                        /* group: the device's group must be among the fds. */
                        bool found = false;
                        for (uint32_t j = 0; j < count && !found; j++)
                                found = e->info.iommu_group >= 0 && groups[j] == e->info.iommu_group;
                        if (!found)
                                return -EINVAL;
                }
        }
        return 0;
}

/* Sleeps the reset delay without the lock, then checks that nothing the
 * reset hit went away meanwhile. */
static int hot_reset_sleep(EmulatedVfio *v, VfioFile *f, const PciAddress *addresses, size_t n) {
        InFlight me = { .addresses = addresses, .n = n, .next = v->in_flight };
        unsigned msec = v->reset_delay_msec;

        if (msec == 0)
                return 0;

        /* cppcheck-suppress autoVariables ; unlinked again (in_flight_remove) before we return */
        v->in_flight = &me;
        pthread_mutex_unlock(&v->lock);
        sleep_msec(msec);
        pthread_mutex_lock(&v->lock);
        in_flight_remove(v, &me);
        pthread_cond_broadcast(&v->reset_done);

        if (f->dead)
                return -ENODEV;
        for (size_t i = 0; i < n; i++) {
                const PciDevice *e = machine_device(v, &addresses[i]);
                if (!e || !driver_is_vfio(e->info.driver))
                        return -ENODEV;
        }
        return 0;
}

/* Called with the lock held (once) and a reference on f. */
static int device_hot_reset(EmulatedVfio *v, VfioFile *f, struct hr_vfio_pci_hot_reset *hr) {
        _cleanup_free_ PciAddress *addresses = NULL;
        _cleanup_free_ int *groups = NULL;
        size_t n = 0;
        int r;

        /* The order is vfio_pci_ioctl_pci_hot_reset()'s. */
        if (!hr)
                return -EFAULT;
        if (hr->argsz < sizeof *hr || hr->flags)
                return -EINVAL;
        /* The kernel reads count fds past the header whatever argsz says;
         * the emulation cannot fault, so it refuses a short argsz. */
        if ((uint64_t) hr->argsz < sizeof *hr + (uint64_t) hr->count * sizeof(int32_t))
                return -EINVAL;
        /* Measured: HOT_RESET on a cdev with count 1: EINVAL; count 0 on a
         * group-opened device: EINVAL. */
        if (!!hr->count == !f->group_file)
                return -EINVAL;
        if (hr->count > 0) {
                groups = calloc(hr->count, sizeof(int));
                if (!groups)
                        return -ENOMEM;
        }

        /* The kernel holds the dev_set lock for the whole reset: resets of
         * overlapping scopes wait for each other. The machine may change
         * while waiting, so look again after. */
        for (;;) {
                r = hot_reset_scope(v, f, hr, groups, &addresses, &n);
                if (r < 0)
                        return r;
                if (!in_flight_overlaps(v, addresses, n))
                        break;
                free(TAKE_PTR(addresses));
                pthread_cond_wait(&v->reset_done, &v->lock);
        }

        r = hot_reset_allowed(v, f, hr->count, groups, addresses, n);
        if (r < 0)
                return r;
        r = hot_reset_sleep(v, f, addresses, n);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n; i++) {
                ResetCounter *c = counter_get(v, &addresses[i], true);
                if (!c)
                        return -ENOMEM;
                c->hot++;
        }

        char buf[PCI_ADDRESS_STRING_MAX];
        log_debug("Emulated kernel: hot reset through %s hit %zu device(s).", pci_address_format(&f->address, buf),
                  n);
        return 0;
}

static int device_ioctl(EmulatedVfio *v, VfioFile *f, unsigned long request, void *arg) {
        if (f->dead)
                return -ENODEV;
        PciDevice *d = machine_device(v, &f->address);
        if (!d || !driver_is_vfio(d->info.driver))
                return -ENODEV; /* gone, and nobody told us yet */

        if (request == HR_VFIO_DEVICE_BIND_IOMMUFD)
                return device_bind(v, f, d, arg);

        if (!f->group_file) {
                /* Measured: INFO before BIND: EINVAL (every ioctl is, until
                 * access is granted). */
                if (!f->iommufd)
                        return -EINVAL;
                switch (request) {
                case HR_VFIO_DEVICE_ATTACH_IOMMUFD_PT:
                        return device_attach(v, f, arg);
                case HR_VFIO_DEVICE_DETACH_IOMMUFD_PT:
                        return device_detach_ioctl(v, f, arg);
                }
        }

        switch (request) {
        case HR_VFIO_DEVICE_GET_INFO:
                return device_get_info(v, d, arg);
        case HR_VFIO_DEVICE_RESET:
                return device_function_reset(v, d);
        case HR_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO:
                return device_hot_reset_info(v, f, d, arg);
        case HR_VFIO_DEVICE_PCI_HOT_RESET: {
                file_ref(f); /* the reset may sleep without the lock */
                int r = device_hot_reset(v, f, arg);
                file_unref(v, f);
                return r;
        }
        default:
                return -ENOTTY;
        }
}

/* ---- state kept in the files themselves ------------------------------------ */

/* The kernel keeps an open file's state with the file, not with the
 * process that opened it: a daemon restarted with its files from systemd's
 * file descriptor store finds its bindings where it left them. The
 * emulation does the same: each file's state is written into its own
 * memfd, and emulated_vfio_adopt() reads it back. Its kind, device and
 * group come from the memfd's name, which nobody can change; the rest is
 * checked against the machine and the other files when read back. A file
 * with no descriptor of the daemon's left (closed, but still held by
 * another file) cannot be written; it is written again when that changes,
 * or goes with the reference. */
#define STATE_MAGIC "hotresetd-emulated-file 1\n"
#define STATE_MAX 4096
#define STATE_OBJECTS_MAX 128

static const char *file_kind_to_string(FileKind k) {
        switch (k) {
        case FILE_IOMMUFD:
                return "iommufd";
        case FILE_CONTAINER:
                return "vfio-container";
        case FILE_GROUP:
                return "vfio-group";
        case FILE_DEVICE:
        default:
                return "vfio-device";
        }
}

static bool file_known(EmulatedVfio *v, const VfioFile *f) {
        for (size_t i = 0; i < v->n_files; i++)
                if (v->files[i] == f)
                        return true;
        return false;
}

/* Appends to buf (size STATE_MAX) at *n; false when it would not fit. */
static bool state_append(char *buf, size_t *n, const char *format, ...) _printf_(3, 4);
static bool state_append(char *buf, size_t *n, const char *format, ...) {
        va_list ap;
        va_start(ap, format);
        int k = vsnprintf(buf + *n, STATE_MAX - *n, format, ap);
        va_end(ap);
        if (k < 0 || (size_t) k >= STATE_MAX - *n)
                return false;
        *n += (size_t) k;
        return true;
}

static void file_save(EmulatedVfio *v, VfioFile *f) {
        char buf[STATE_MAX];
        size_t n = 0;
        bool ok;

        if (!f || !file_known(v, f) || f->fd < 0 || !fd_is_file(f->fd, f))
                return;
        ok = state_append(buf, &n, STATE_MAGIC "kind=%s\n", file_kind_to_string(f->kind));
        switch (f->kind) {
        case FILE_IOMMUFD:
                for (size_t i = 0; ok && i < f->n_objects && i < STATE_OBJECTS_MAX; i++)
                        ok = state_append(buf, &n, "object=%" PRIu32 " %d %" PRIu32 "\n", f->objects[i].id,
                                          (int) f->objects[i].kind, f->objects[i].ioas_id);
                break;
        case FILE_CONTAINER:
                ok = ok && state_append(buf, &n, "iommu_set=%d\n", f->iommu_set);
                break;
        case FILE_GROUP:
                ok = ok && state_append(buf, &n, "container=%ju\n",
                                        (uintmax_t) (f->container ? f->container->ino : 0));
                break;
        case FILE_DEVICE:
                ok = ok && state_append(buf, &n,
                                        "group_file=%ju\ndead=%d\niommufd=%ju\niommu_group=%d\ndevid=%" PRIu32
                                        "\nhwpt=%" PRIu32 "\n",
                                        (uintmax_t) (f->group_file ? f->group_file->ino : 0), f->dead,
                                        (uintmax_t) (f->iommufd ? f->iommufd->ino : 0), f->iommu_group, f->devid,
                                        f->hwpt_id);
                break;
        }
        /* Best effort: a full tmpfs only costs the state after a restart. */
        if (ok && pwrite(f->fd, buf, n, 0) == (ssize_t) n)
                (void) ftruncate(f->fd, (off_t) n);
}

/* f and the files it refers to: no change of the uAPI touches more. */
static void file_save_with_refs(EmulatedVfio *v, VfioFile *f) {
        if (!f)
                return;
        file_save(v, f);
        file_save(v, f->group_file);
        file_save(v, f->container);
        file_save(v, f->iommufd);
}

static VfioFile *file_by_ino(EmulatedVfio *v, ino_t ino) {
        for (size_t i = 0; ino != 0 && i < v->n_files; i++)
                if (v->files[i]->ino == ino)
                        return v->files[i];
        return NULL;
}

/* "/memfd:hotresetd-emulated:vfio-dev:0000:01:00.0 (deleted)": the kind,
 * and the device or group. 0 if fd is no file of the emulation. */
static int memfd_identify(int fd, FileKind *ret_kind, PciAddress *ret_address, int *ret_group) {
        static const char prefix[] = "/memfd:" MEMFD_PREFIX;
        char link[64], target[PATH_MAX];
        ssize_t k;

        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        k = readlink(link, target, sizeof target - 1);
        if (k < 0)
                return -errno;
        target[k] = '\0';
        if (strncmp(target, prefix, strlen(prefix)) != 0)
                return 0;
        char *suffix = strstr(target, " (deleted)");
        if (suffix)
                *suffix = '\0';
        const char *name = target + strlen(prefix);

        if (streq(name, "iommufd"))
                *ret_kind = FILE_IOMMUFD;
        else if (streq(name, "vfio-container"))
                *ret_kind = FILE_CONTAINER;
        else if (strncmp(name, "vfio-group:", 11) == 0) {
                *ret_kind = FILE_GROUP;
                if (parse_group_number(name + 11, ret_group) < 0)
                        return 0;
        } else if (strncmp(name, "vfio-dev:", 9) == 0 || strncmp(name, "vfio-device:", 12) == 0) {
                *ret_kind = FILE_DEVICE;
                if (pci_address_parse(strchr(name, ':') + 1, ret_address) < 0)
                        return 0;
        } else
                return 0;
        return 1;
}

static void file_parse_state(VfioFile *f, char *text) {
        char *save = NULL;

        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                uintmax_t u;
                unsigned a, b, c;
                int i;

                if (f->kind == FILE_CONTAINER && sscanf(line, "iommu_set=%d", &i) == 1)
                        f->iommu_set = i != 0;
                else if (f->kind == FILE_GROUP && sscanf(line, "container=%ju", &u) == 1)
                        f->pending_container = (ino_t) u;
                else if (f->kind != FILE_DEVICE)
                        ;
                else if (sscanf(line, "group_file=%ju", &u) == 1)
                        f->pending_group_file = (ino_t) u;
                else if (sscanf(line, "iommufd=%ju", &u) == 1)
                        f->pending_iommufd = (ino_t) u;
                else if (sscanf(line, "dead=%d", &i) == 1)
                        f->dead = i != 0;
                else if (sscanf(line, "iommu_group=%d", &i) == 1)
                        f->iommu_group = i;
                else if (sscanf(line, "devid=%u", &a) == 1)
                        f->devid = a;
                else if (sscanf(line, "hwpt=%u", &a) == 1)
                        f->hwpt_id = a;
                if (f->kind == FILE_IOMMUFD && sscanf(line, "object=%u %u %u", &a, &b, &c) == 3 && a > 0 &&
                    b <= OBJECT_DEVICE && !object_find(f, a) && f->n_objects < STATE_OBJECTS_MAX) {
                        IommufdObject *o = realloc(f->objects, (f->n_objects + 1) * sizeof(IommufdObject));
                        if (!o)
                                return; /* what was read so far stays; the rest is as if unbound */
                        f->objects = o;
                        f->objects[f->n_objects++] = (IommufdObject) { .id = a, .kind = (ObjectKind) b, .ioas_id = c };
                }
        }
}

/* One file back from its memfd, its references left pending (inodes) until
 * every file is in. Returns 1 if adopted, 0 if fd is none of ours or known. */
static int file_adopt_one(EmulatedVfio *v, int fd) {
        char buf[STATE_MAX];
        FileKind kind = FILE_DEVICE;
        PciAddress address = {};
        int group = -1, r;
        struct stat st;
        ssize_t k;

        r = memfd_identify(fd, &kind, &address, &group);
        if (r <= 0)
                return r;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (file_by_ino(v, st.st_ino))
                return 0; /* two descriptors of one file */
        k = pread(fd, buf, sizeof buf - 1, 0);
        if (k < 0)
                return -errno;
        buf[k] = '\0';
        if (strncmp(buf, STATE_MAGIC, strlen(STATE_MAGIC)) != 0)
                return -EBADMSG;

        VfioFile **n = realloc(v->files, (v->n_files + 1) * sizeof(VfioFile *));
        if (!n)
                return -ENOMEM;
        v->files = n;
        VfioFile *f = calloc(1, sizeof(VfioFile));
        if (!f)
                return -ENOMEM;
        *f = (VfioFile) { .kind = kind, .n_ref = 1, .fd = fd, .dev = st.st_dev, .ino = st.st_ino,
                          .group = group, .iommu_group = -1, .address = address };
        file_parse_state(f, buf + strlen(STATE_MAGIC));
        v->files[v->n_files++] = f;
        return 1;
}

/* Links the adopted files, keeping only what the kernel could have: a
 * reference of the right kind, a binding whose devid and page table its
 * iommufd has, a device still bound to its vfio driver. */
static void files_link_adopted(EmulatedVfio *v) {
        for (size_t i = 0; i < v->n_files; i++) {
                VfioFile *f = v->files[i], *t;

                if (f->pending_container && (t = file_by_ino(v, f->pending_container)) && t->kind == FILE_CONTAINER)
                        f->container = file_ref(t);
                if (f->pending_group_file && (t = file_by_ino(v, f->pending_group_file)) && t->kind == FILE_GROUP &&
                    t->group >= 0)
                        f->group_file = file_ref(t);
                if (f->pending_iommufd && (t = file_by_ino(v, f->pending_iommufd)) && t->kind == FILE_IOMMUFD) {
                        IommufdObject *o = object_find(t, f->devid);
                        if (o && o->kind == OBJECT_DEVICE) {
                                f->iommufd = file_ref(t);
                                IommufdObject *h = f->hwpt_id ? object_find(t, f->hwpt_id) : NULL;
                                if (!h || h->kind != OBJECT_HWPT)
                                        f->hwpt_id = 0;
                        }
                }
                if (f->kind == FILE_DEVICE && !f->iommufd) {
                        f->devid = f->hwpt_id = 0;
                        f->iommu_group = -1;
                }
                f->pending_container = f->pending_group_file = f->pending_iommufd = 0;
        }
        /* What a copy's holder could have written must not reach other
         * leases: a binding counts for the group the machine says the
         * device is in, a device file belongs to its own group's file, and
         * one devid of an iommufd is one device file's. */
        for (size_t i = 0; i < v->n_files; i++) {
                VfioFile *f = v->files[i];
                if (f->kind != FILE_DEVICE)
                        continue;
                PciDevice *d = machine_device(v, &f->address);
                if (f->group_file && (!d || f->group_file->group != d->info.iommu_group))
                        file_unref(v, TAKE_PTR(f->group_file));
                if (f->iommufd) {
                        bool taken = false;
                        for (size_t k = 0; k < i; k++)
                                taken = taken || (v->files[k]->kind == FILE_DEVICE && v->files[k]->iommufd == f->iommufd &&
                                                  v->files[k]->devid == f->devid);
                        if (taken || !d) {
                                f->devid = f->hwpt_id = 0;
                                f->iommu_group = -1;
                                file_unref(v, TAKE_PTR(f->iommufd));
                        } else
                                f->iommu_group = d->info.iommu_group;
                }
        }
        /* A device that left vfio while the daemon was away is dead. */
        for (size_t i = 0; i < v->n_files; i++) {
                VfioFile *f = v->files[i];
                if (f->kind != FILE_DEVICE || f->dead)
                        continue;
                PciDevice *d = machine_device(v, &f->address);
                if (!d || !driver_is_vfio(d->info.driver)) {
                        f->dead = true;
                        device_unbind(v, f);
                }
        }
        for (size_t i = 0; i < v->n_files; i++)
                file_save(v, v->files[i]);
}

/* ---- public ----------------------------------------------------------------- */

EmulatedVfio *emulated_vfio_new(Topology *machine, bool cdev) {
        pthread_mutexattr_t attr;
        EmulatedVfio *v = calloc(1, sizeof(EmulatedVfio));

        if (!v)
                return NULL;
        v->machine = machine;
        v->cdev = cdev;

        if (pthread_mutexattr_init(&attr) != 0) {
                free(v);
                return NULL;
        }
        (void) pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
        if (pthread_mutex_init(&v->lock, &attr) != 0) {
                pthread_mutexattr_destroy(&attr);
                free(v);
                return NULL;
        }
        pthread_mutexattr_destroy(&attr);
        if (pthread_cond_init(&v->reset_done, NULL) != 0) {
                pthread_mutex_destroy(&v->lock);
                free(v);
                return NULL;
        }
        return v;
}

EmulatedVfio *emulated_vfio_free(EmulatedVfio *v) {
        if (!v)
                return NULL;
        for (size_t i = 0; i < v->n_files; i++) {
                VfioFile *f = v->files[i];
                /* Only if the number still is our file: the caller may
                 * have closed it behind our back and reused the number. */
                if (f->fd >= 0 && fd_is_file(f->fd, f))
                        (void) close(f->fd);
                free(f->objects);
                free(f);
        }
        free(v->files);
        free(v->counters);
        free(v->cdevs);
        pthread_cond_destroy(&v->reset_done);
        pthread_mutex_destroy(&v->lock);
        free(v);
        return NULL;
}

int emulated_vfio_open(EmulatedVfio *v, const char *path, int flags) {
        int r;

        if (!path)
                return -EFAULT;
        pthread_mutex_lock(&v->lock);
        r = open_locked(v, path);
        if (r >= 0) {
                VfioFile *f;
                if (file_lookup(v, r, &f) > 0)
                        file_save(v, f);
        }
        pthread_mutex_unlock(&v->lock);
        return r;
}

int emulated_vfio_ioctl(EmulatedVfio *v, int fd, unsigned long request, void *arg) {
        VfioFile *f;
        int r;

        pthread_mutex_lock(&v->lock);
        r = file_lookup(v, fd, &f);
        if (r >= 0 && !f)
                r = -EBADF;
        if (r >= 0)
                switch (f->kind) {
                case FILE_IOMMUFD:
                        r = iommufd_ioctl(v, f, request, arg);
                        break;
                case FILE_CONTAINER:
                        r = container_ioctl(v, f, request, arg);
                        break;
                case FILE_GROUP:
                        r = group_ioctl(v, f, request, arg);
                        break;
                case FILE_DEVICE:
                        r = device_ioctl(v, f, request, arg);
                        break;
                }
        if (r >= 0 && request != HR_VFIO_DEVICE_PCI_HOT_RESET && request != HR_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO &&
            request != HR_VFIO_DEVICE_GET_INFO) {
                /* f is still ours: every file of a call is held across it. */
                file_save_with_refs(v, f);
                VfioFile *nf;
                if (request == HR_VFIO_GROUP_GET_DEVICE_FD && file_lookup(v, r, &nf) > 0)
                        file_save_with_refs(v, nf);
        }
        pthread_mutex_unlock(&v->lock);
        return r;
}

int emulated_vfio_close(EmulatedVfio *v, int fd) {
        VfioFile *f;
        int r;

        pthread_mutex_lock(&v->lock);
        r = file_lookup(v, fd, &f);
        if (r >= 0) {
                if (f && f->fd == fd) {
                        /* What it referred to changes with it (a binding
                         * ends, a group leaves its container). */
                        ino_t refs[3] = { f->group_file ? f->group_file->ino : 0,
                                          f->container ? f->container->ino : 0,
                                          f->iommufd ? f->iommufd->ino : 0 };
                        f->fd = -1;
                        (void) close(fd);
                        file_unref(v, f);
                        for (size_t i = 0; i < ELEMENTSOF(refs); i++)
                                file_save(v, file_by_ino(v, refs[i]));
                } else
                        (void) close(fd);
                r = 0;
        }
        pthread_mutex_unlock(&v->lock);
        return r;
}

void emulated_vfio_device_gone(EmulatedVfio *v, const PciAddress *a) {
        pthread_mutex_lock(&v->lock);
        /* Unbinding may free files and reshuffle the table: start over
         * after each change. */
        for (bool changed = true; changed;) {
                changed = false;
                for (size_t i = 0; i < v->n_files; i++) {
                        VfioFile *f = v->files[i];
                        if (f->kind != FILE_DEVICE || f->dead || !pci_address_equal(&f->address, a))
                                continue;
                        VfioFile *ictx = f->iommufd;
                        if (ictx)
                                file_ref(ictx);
                        f->dead = true;
                        device_unbind(v, f);
                        file_save(v, f);
                        file_save(v, ictx);
                        file_unref(v, ictx);
                        changed = true;
                        break;
                }
        }
        pthread_mutex_unlock(&v->lock);
}

int emulated_vfio_adopt(EmulatedVfio *v, const int *fds, size_t n) {
        int r = 0, adopted = 0;

        pthread_mutex_lock(&v->lock);
        for (size_t i = 0; i < n; i++) {
                int k = file_adopt_one(v, fds[i]);
                if (k < 0 && r == 0)
                        r = k;
                adopted += k > 0;
        }
        files_link_adopted(v);
        pthread_mutex_unlock(&v->lock);
        return r < 0 ? r : adopted;
}

bool emulated_vfio_is_file(EmulatedVfio *v, int fd, const char *path) {
        VfioFile *f;
        bool ok = false;

        pthread_mutex_lock(&v->lock);
        if (file_lookup(v, fd, &f) > 0)
                switch (f->kind) {
                case FILE_IOMMUFD:
                        ok = streq(path, "/dev/iommu");
                        break;
                case FILE_CONTAINER:
                        ok = streq(path, "/dev/vfio/vfio");
                        break;
                case FILE_GROUP: {
                        char p[64];
                        snprintf(p, sizeof p, "/dev/vfio/%d", f->group);
                        ok = streq(path, p);
                        break;
                }
                case FILE_DEVICE: {
                        char addr[PCI_ADDRESS_STRING_MAX], p[64];
                        snprintf(p, sizeof p, "vfio-device:%s", pci_address_format(&f->address, addr));
                        if (f->group_file)
                                ok = streq(path, p);
                        else {
                                PciDevice *d = machine_device(v, &f->address);
                                ok = !f->dead && d && streq_ptr(d->info.cdev_path, path);
                        }
                        break;
                }
                }
        pthread_mutex_unlock(&v->lock);
        return ok;
}

void emulated_vfio_lock(EmulatedVfio *v) {
        pthread_mutex_lock(&v->lock);
}

void emulated_vfio_unlock(EmulatedVfio *v) {
        pthread_mutex_unlock(&v->lock);
}

unsigned emulated_vfio_reset_count(EmulatedVfio *v, const PciAddress *a) {
        pthread_mutex_lock(&v->lock);
        ResetCounter *c = counter_get(v, a, false);
        unsigned n = c ? c->hot : 0;
        pthread_mutex_unlock(&v->lock);
        return n;
}

unsigned emulated_vfio_function_reset_count(EmulatedVfio *v, const PciAddress *a) {
        pthread_mutex_lock(&v->lock);
        ResetCounter *c = counter_get(v, a, false);
        unsigned n = c ? c->function : 0;
        pthread_mutex_unlock(&v->lock);
        return n;
}

void emulated_vfio_set_reset_delay(EmulatedVfio *v, unsigned msec) {
        pthread_mutex_lock(&v->lock);
        v->reset_delay_msec = msec;
        pthread_mutex_unlock(&v->lock);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Context state and its kernel side: opening the iommufd or container,
 * attaching devices in either uAPI model, querying hot-reset info. The bus
 * side is in context-dbus.c. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errors.h"
#include "file-holders.h"
#include "context.h"
#include "lease-store.h"
#include "log.h"
#include "manager.h"
#include "util.h"
#include "vfio-compat.h"

const char *context_lifetime_to_string(ContextLifetime l) {
        switch (l) {
        case CONTEXT_PERSISTENT:
                return "persistent";
        case CONTEXT_PROCESS:
                return "process";
        case CONTEXT_CONNECTION:
        default:
                return "connection";
        }
}

/* The pid a pidfd refers to, from its fdinfo: -ESRCH when the process has
 * exited, -EBADF when fd is no pidfd. */
static int pidfd_get_pid(int fd, pid_t *ret) {
        char path[64], line[256];
        _cleanup_(fclosep) FILE *f = NULL;

        snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof line, f)) {
                int pid;
                if (sscanf(line, "Pid: %d", &pid) == 1) {
                        if (pid <= 0)
                                return -ESRCH;
                        *ret = pid;
                        return 0;
                }
        }
        return -EBADF;
}

static int on_process_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Context *c = userdata;
        char why[64];

        snprintf(why, sizeof why, "its process %d exited", (int) c->pid);
        context_release(c, why);
        return 0;
}

/* A lease for as long as a process lives: the pidfd becomes readable when
 * it exits (whoever its parent is), so the lease does not depend on who
 * created it staying connected. */
static int context_tie_to_process(Context *c, int pidfd, sd_bus_error *error) {
        int r;

        r = pidfd_get_pid(pidfd, &c->pid);
        if (r == -ESRCH)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "The process of the pidfd passed as Pid has exited already.");
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Pid must be a pidfd (pidfd_open(2)), the process the lease lasts as long "
                                         "as: %s.", strerror(-r));
        /* An open file of our own, not a duplicate of the caller's: two
         * leases given one pidfd would otherwise share one open file, and
         * systemd's file descriptor store keeps a file only once. The
         * caller's pidfd still alive afterwards proves the pid was not
         * reused in between. */
        int own = (int) syscall(SYS_pidfd_open, c->pid, 0);
        if (own < 0)
                return bus_error_kernel(error, errno, "Failed to open a pidfd of process %d: %s", (int) c->pid,
                                        strerror(errno));
        pid_t again = 0;
        if (pidfd_get_pid(pidfd, &again) < 0 || again != c->pid) {
                safe_close(own);
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "The process of the pidfd passed as Pid has exited already.");
        }
        return context_watch_process(c, own, c->pid);
}

int context_watch_process(Context *c, int pidfd, pid_t recorded_pid) {
        int r;

        c->pidfd = pidfd;
        if (pidfd_get_pid(pidfd, &c->pid) < 0)
                c->pid = recorded_pid; /* exited: the io source fires at once */
        r = sd_event_add_io(c->manager->event, &c->pid_source, c->pidfd, EPOLLIN, on_process_exit, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(c->pid_source, "context-process");
        return 0;
}

/* The fields every context starts with; no files yet. */
static int context_alloc(Manager *m, uint64_t id, const char *owner, uid_t uid, ContextLifetime lifetime,
                         const char *description, Context **ret) {
        Context *c = calloc(1, sizeof(Context));
        if (!c)
                return -ENOMEM;
        c->manager = m;
        c->iommufd = c->container = c->pidfd = -1;
        c->owner_uid = uid;
        c->lifetime = lifetime;
        c->id = id;
        if (asprintf(&c->path, CONTEXT_PATH_PREFIX "/%" PRIu64, c->id) < 0)
                c->path = NULL;
        c->owner = strdup(owner);
        c->description = strdup(strempty(description));
        if (!c->path || !c->owner || !c->description) {
                free(c->path);
                free(c->owner);
                free(c->description);
                free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

int context_new_restored(Manager *m, uint64_t id, const char *owner, uid_t uid, ContextLifetime lifetime,
                         const char *description, Context **ret) {
        int r = context_alloc(m, id, owner, uid, lifetime, description, ret);
        if (r >= 0 && id > m->next_context_id)
                m->next_context_id = id;
        return r;
}

/* The memory and the pid watch; the caller dealt with the files. */
static void context_free(Context *c) {
        sd_event_source_disable_unref(c->pid_source);
        safe_close(c->pidfd);
        strv_free(c->stored_names);
        free(c->devices);
        free(c->groups);
        free(c->path);
        free(c->owner);
        free(c->description);
        free(c);
}

void context_abandon(Context *c) {
        for (size_t i = 0; i < c->n_devices; i++)
                safe_close(c->devices[i].fd);
        for (size_t i = 0; i < c->n_groups; i++)
                safe_close(c->groups[i].fd);
        safe_close(c->iommufd);
        safe_close(c->container);
        context_free(c);
}

int context_new(Manager *m, const char *owner, uid_t uid, ContextLifetime lifetime, int pidfd,
                const char *description, Context **ret, sd_bus_error *error) {
        Backend *b = m->backend;
        Context *c;
        int r;

        r = context_alloc(m, m->next_context_id + 1, owner, uid, lifetime, description, &c);
        if (r < 0)
                return r;
        m->next_context_id++;
        if (m->bus)
                (void) sd_bus_get_bus_id(m->bus, &c->bus_id);

        if (lifetime == CONTEXT_PROCESS) {
                r = context_tie_to_process(c, pidfd, error);
                if (r < 0)
                        goto fail;
        }

        if (b->cdev) {
                c->iommufd = backend_open(b, "/dev/iommu", O_RDWR | O_CLOEXEC);
                if (c->iommufd < 0) {
                        r = bus_error_kernel(error, -c->iommufd, "Failed to open /dev/iommu: %s",
                                                    strerror(-c->iommufd));
                        c->iommufd = -1;
                        goto fail;
                }
                struct hr_iommu_ioas_alloc alloc = { .size = sizeof alloc };
                r = backend_ioctl(b, c->iommufd, HR_IOMMU_IOAS_ALLOC, &alloc);
                if (r < 0) {
                        r = bus_error_kernel(error, -r, "Failed to allocate an IOAS: %s", strerror(-r));
                        goto fail;
                }
                c->ioas_id = alloc.out_ioas_id;
        } else {
                c->container = backend_open(b, "/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
                if (c->container < 0) {
                        r = bus_error_kernel(error, -c->container, "Failed to open /dev/vfio/vfio: %s",
                                                    strerror(-c->container));
                        c->container = -1;
                        goto fail;
                }
                r = backend_ioctl(b, c->container, HR_VFIO_GET_API_VERSION, NULL);
                if (r != HR_VFIO_API_VERSION) {
                        r = sd_bus_error_setf(error, BUS_ERROR_UNSUPPORTED,
                                              "The kernel's vfio container API version is %d, not %d.", r,
                                              HR_VFIO_API_VERSION);
                        goto fail;
                }
        }

        *ret = c;
        return 0;

fail:
        c->released = true;
        context_unref_busy(c);
        return r;
}

static void context_device_forget(Context *c, ContextDevice *cd);

static void context_close_files(Context *c) {
        Backend *b = c->manager->backend;

        for (size_t i = 0; i < c->n_devices; i++)
                backend_close(b, c->devices[i].fd);
        c->n_devices = 0;
        for (size_t i = 0; i < c->n_groups; i++)
                backend_close(b, c->groups[i].fd);
        c->n_groups = 0;
        backend_close(b, c->iommufd);
        backend_close(b, c->container);
        c->iommufd = c->container = -1;
}

void context_unref_busy(Context *c) {
        if (!c || c->n_busy > 0 || !c->released)
                return;
        /* Its devices are nobody's from now on, not before: while a reset
         * still used its files, they were held (an attach elsewhere would
         * have failed on the kernel's side). */
        for (size_t i = 0; i < c->n_devices; i++)
                context_device_forget(c, &c->devices[i]);
        for (size_t i = 0; i < c->n_groups; i++)
                manager_group_owner_unref(c->manager, c->groups[i].group, c);
        context_close_files(c);
        context_free(c);
}

void context_release(Context *c, const char *why) {
        Manager *m = c->manager;

        if (c->released)
                return;

        {
                char fc[160], fo[160], fu[48], fr[200];
                snprintf(fc, sizeof fc, "HOTRESETD_CONTEXT=%s", c->path);
                snprintf(fo, sizeof fo, "HOTRESETD_OWNER=%s", c->owner);
                snprintf(fu, sizeof fu, "HOTRESETD_OWNER_UID=%u", (unsigned) c->owner_uid);
                snprintf(fr, sizeof fr, "HOTRESETD_REASON=%s", why);
                const char *fields[] = { fc, fo, fu, fr, NULL };
                log_struct(LOG_INFO, LOG_MESSAGE_ID_LEASE_RELEASED, fields,
                           "Releasing %s (owner %s, uid %u, %zu devices): %s.", c->path, c->owner,
                           (unsigned) c->owner_uid, c->n_devices, why);
        }

        /* Announce while the object still resolves, then forget it. */
        if (m->hooks.context_removed)
                m->hooks.context_removed(m, c);
        lease_store_forget(m, c);
        manager_remove_context(m, c);
        c->released = true;
        c->pid_source = sd_event_source_disable_unref(c->pid_source);

        /* Resets in flight keep the files open, and the devices held,
         * until they are done. */
        if (c->n_busy > 0)
                log_info("%s: its devices stay held until the hot reset using them is done.", c->path);
        context_unref_busy(c);
}

ContextDevice *context_find_device(Context *c, const PciAddress *a) {
        for (size_t i = 0; i < c->n_devices; i++)
                if (pci_address_equal(&c->devices[i].address, a))
                        return &c->devices[i];
        return NULL;
}

ContextGroup *context_find_group(Context *c, int group) {
        for (size_t i = 0; i < c->n_groups; i++)
                if (c->groups[i].group == group)
                        return &c->groups[i];
        return NULL;
}

bool context_owns_group(Context *c, int group) {
        /* Legacy: an open group; cdev: a group is owned once one of its
         * devices is bound (see manager_group_owner_ref()). */
        return group >= 0 && manager_group_owner(c->manager, group) == c;
}

/* The holder bookkeeping of an attached device (the file stays open). */
static void context_device_forget(Context *c, ContextDevice *cd) {
        Manager *m = c->manager;
        PciDevice *d = topology_get(m->topology, &cd->address);

        if (cd->bound)
                manager_group_owner_unref(m, cd->iommu_group, c);
        if (d && d->holder == c) {
                d->holder = NULL;
                manager_device_holder_changed(m, d);
        }
}

char *context_describe(Context *c) {
        char *s;
        char tie[40] = "";
        if (c->lifetime == CONTEXT_PERSISTENT)
                strcpy(tie, ", persistent");
        else if (c->lifetime == CONTEXT_PROCESS)
                snprintf(tie, sizeof tie, ", for process %d", (int) c->pid);
        if (asprintf(&s, "context %s (owner %s%s, uid %u%s)", c->path, c->owner, tie, (unsigned) c->owner_uid,
                     c->released ? "; released, waiting for its hot reset to finish" : "") < 0)
                return NULL;
        return s;
}

/* The first device of d's IOMMU group bound to a driver that makes the
 * group unusable for vfio, or NULL. */
static PciDevice *group_blocker(Manager *m, const PciDevice *d) {
        PciDevice *first = NULL;

        /* The lowest address, as a walk of the table would find it. */
        for (PciDevice *x = topology_group_first(m->topology, d->info.iommu_group); x; x = x->group_next)
                if (!driver_keeps_group_viable(x->info.driver) &&
                    (!first || pci_address_compare(&x->info.address, &first->info.address) < 0))
                        first = x;
        return first;
}

/* Refusals that need no kernel call, each naming the device and the fix. */
static int attach_preflight(Context *c, PciDevice *d, sd_bus_error *error) {
        Manager *m = c->manager;
        char addr[PCI_ADDRESS_STRING_MAX], oaddr[PCI_ADDRESS_STRING_MAX];

        pci_address_format(&d->info.address, addr);

        if (context_find_device(c, &d->info.address))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "%s is already attached to %s.", addr,
                                         c->path);
        if (!driver_is_vfio(d->info.driver))
                return sd_bus_error_setf(error, BUS_ERROR_NOT_IN_DEV_SET,
                                         "%s is not bound to a vfio driver (%s%s): bind it to vfio-pci first.", addr,
                                         d->info.driver ? "bound to " : "", d->info.driver ?: "no driver");
        if (d->info.iommu_group < 0)
                return sd_bus_error_setf(error, BUS_ERROR_GROUP_NOT_VIABLE,
                                         "%s has no IOMMU group: enable the IOMMU (intel_iommu=on / amd_iommu=on).",
                                         addr);

        Context *holder = manager_holder_of(m, d);
        if (holder && holder != c) {
                _cleanup_free_ char *who = context_describe(holder);
                bool implicit = !context_find_device(holder, &d->info.address);
                return sd_bus_error_setf(error, BUS_ERROR_IN_USE, "%s is held by %s%s.", addr, strempty(who),
                                         implicit ? " through its IOMMU group" : "");
        }

        PciDevice *blocker = group_blocker(m, d);
        if (blocker)
                return sd_bus_error_setf(error, BUS_ERROR_GROUP_NOT_VIABLE,
                                         "IOMMU group %d of %s is not viable: %s in the same group is bound to %s; "
                                         "bind it to vfio-pci or pci-stub, or unbind it.",
                                         d->info.iommu_group, addr,
                                         pci_address_format(&blocker->info.address, oaddr), blocker->info.driver);
        if (c->manager->backend->cdev && !d->info.cdev_path)
                return sd_bus_error_setf(error, BUS_ERROR_UNSUPPORTED, "%s has no vfio cdev.", addr);
        return 0;
}

static int kernel_error(sd_bus_error *error, int r, const char *addr, const char *op) {
        switch (-r) {
        case EBUSY:
                return sd_bus_error_setf(error, BUS_ERROR_BUSY,
                                         "%s: %s failed: device or group busy (is its IOMMU group open through "
                                         "the legacy /dev/vfio interface elsewhere?).",
                                         addr, op);
        case EPERM:
                return sd_bus_error_setf(error, BUS_ERROR_GROUP_NOT_VIABLE,
                                         "%s: %s failed: the kernel refused (EPERM): its IOMMU group is not viable "
                                         "or is owned by another iommufd.",
                                         addr, op);
        case ENODEV:
        case ENOENT:
                return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_DEVICE, "%s: %s failed: the device went away.",
                                         addr, op);
        default:
                return bus_error_kernel(error, -r, "%s: %s failed: %s", addr, op, strerror(-r));
        }
}

static int context_add_device(Context *c, ContextDevice *nd) {
        ContextDevice *n = realloc(c->devices, (c->n_devices + 1) * sizeof(ContextDevice));
        if (!n)
                return -ENOMEM;
        c->devices = n;
        c->devices[c->n_devices++] = *nd;
        return 0;
}

static int attach_cdev(Context *c, PciDevice *d, bool bind, ContextDevice *ret, sd_bus_error *error) {
        Backend *b = c->manager->backend;
        char addr[PCI_ADDRESS_STRING_MAX];
        _cleanup_close_ int fd = -1;
        int r;

        pci_address_format(&d->info.address, addr);

        fd = backend_open(b, d->info.cdev_path, O_RDWR | O_CLOEXEC);
        /* open() itself refused: not the group (that is the bind's EPERM)
         * but the daemon's own confinement. */
        if (fd == -EPERM || fd == -EACCES)
                return bus_error_kernel(error, -fd,
                                        "%s: opening %s was refused (%s): the daemon's device sandbox "
                                        "(DeviceAllow= in hotresetd.service) or a security module does not let it "
                                        "open vfio cdevs.",
                                        addr, d->info.cdev_path, strerror(-fd));
        if (fd < 0)
                return kernel_error(error, fd, addr, "opening its vfio cdev");

        ContextDevice cd = { .address = d->info.address, .iommu_group = d->info.iommu_group, .fd = -1 };
        if (bind) {
                struct hr_vfio_device_bind_iommufd bi = { .argsz = sizeof bi, .iommufd = c->iommufd };
                r = backend_ioctl(b, fd, HR_VFIO_DEVICE_BIND_IOMMUFD, &bi);
                if (r < 0) {
                        backend_close(b, TAKE_FD(fd));
                        return kernel_error(error, r, addr, "binding to the context's iommufd");
                }
                struct hr_vfio_device_attach_iommufd_pt at = { .argsz = sizeof at, .pt_id = c->ioas_id };
                r = backend_ioctl(b, fd, HR_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at);
                if (r < 0) {
                        backend_close(b, TAKE_FD(fd));
                        return kernel_error(error, r, addr, "attaching to the context's IOAS");
                }
                cd.devid = bi.out_devid;
                cd.bound = true;
        }
        cd.fd = TAKE_FD(fd);
        *ret = cd;
        return 0;
}

static int context_open_group(Context *c, int group, sd_bus_error *error) {
        Backend *b = c->manager->backend;
        char path[64];
        int r;

        if (context_find_group(c, group))
                return 0;

        snprintf(path, sizeof path, "/dev/vfio/%d", group);
        int fd = backend_open(b, path, O_RDWR | O_CLOEXEC);
        /* A legacy group opens once, and not while a cdev of it is bound:
         * someone outside the daemon holds it. */
        if (fd == -EBUSY)
                return sd_bus_error_setf(error, BUS_ERROR_BUSY,
                                         "IOMMU group %d is busy (%s: EBUSY): another process has it open, or one of "
                                         "its devices is bound to an iommufd through its vfio cdev.",
                                         group, path);
        if (fd < 0)
                return bus_error_kernel(error, -fd, "Failed to open %s: %s", path, strerror(-fd));

        struct hr_vfio_group_status st = { .argsz = sizeof st };
        r = backend_ioctl(b, fd, HR_VFIO_GROUP_GET_STATUS, &st);
        if (r >= 0 && !(st.flags & HR_VFIO_GROUP_FLAGS_VIABLE))
                r = sd_bus_error_setf(error, BUS_ERROR_GROUP_NOT_VIABLE,
                                      "IOMMU group %d is not viable: a device in it is bound to a host driver.",
                                      group);
        else if (r < 0)
                r = bus_error_kernel(error, -r, "Failed to query IOMMU group %d: %s", group, strerror(-r));
        else {
                int container = c->container;
                r = backend_ioctl(b, fd, HR_VFIO_GROUP_SET_CONTAINER, &container);
                if (r < 0)
                        r = bus_error_kernel(error, -r, "Failed to add IOMMU group %d to the container: %s",
                                                    group, strerror(-r));
        }
        if (r >= 0 && !c->iommu_set) {
                r = backend_ioctl(b, c->container, HR_VFIO_SET_IOMMU, (void *) (uintptr_t) HR_VFIO_TYPE1v2_IOMMU);
                if (r < 0)
                        r = bus_error_kernel(error, -r, "Failed to set the container's IOMMU type: %s",
                                                    strerror(-r));
                else
                        c->iommu_set = true;
        }
        if (r < 0) {
                backend_close(b, fd);
                return r;
        }

        ContextGroup *n = realloc(c->groups, (c->n_groups + 1) * sizeof(ContextGroup));
        if (!n) {
                backend_close(b, fd);
                return -ENOMEM;
        }
        c->groups = n;
        r = manager_group_owner_ref(c->manager, group, c);
        if (r < 0) {
                backend_close(b, fd);
                return r;
        }
        c->groups[c->n_groups++] = (ContextGroup) { .group = group, .fd = fd };
        return 0;
}

/* Closes a group no attached device needs any more. */
static void context_maybe_close_group(Context *c, int group) {
        for (size_t i = 0; i < c->n_devices; i++)
                if (c->devices[i].iommu_group == group)
                        return;
        for (size_t i = 0; i < c->n_groups; i++)
                if (c->groups[i].group == group) {
                        manager_group_owner_unref(c->manager, group, c);
                        backend_close(c->manager->backend, c->groups[i].fd);
                        c->groups[i] = c->groups[--c->n_groups];
                        /* The kernel drops the container's IOMMU with its
                         * last group: the next group must set it again. */
                        if (c->n_groups == 0)
                                c->iommu_set = false;
                        return;
                }
}

static int attach_group(Context *c, PciDevice *d, ContextDevice *ret, sd_bus_error *error) {
        Backend *b = c->manager->backend;
        char addr[PCI_ADDRESS_STRING_MAX];
        int r;

        pci_address_format(&d->info.address, addr);
        r = context_open_group(c, d->info.iommu_group, error);
        if (r < 0)
                return r;

        ContextGroup *g = context_find_group(c, d->info.iommu_group);
        if (!g)
                return -ENOENT; /* context_open_group() just added it */
        int fd = backend_ioctl(b, g->fd, HR_VFIO_GROUP_GET_DEVICE_FD, addr);
        if (fd < 0) {
                context_maybe_close_group(c, d->info.iommu_group);
                return kernel_error(error, fd, addr, "opening the device through its group");
        }
        *ret = (ContextDevice) { .address = d->info.address, .iommu_group = d->info.iommu_group, .fd = fd };
        return 0;
}

int context_attach(Context *c, PciDevice *d, bool bind, uint32_t *ret_devid, sd_bus_error *error) {
        Manager *m = c->manager;
        ContextDevice cd;
        int r;

        r = attach_preflight(c, d, error);
        if (r < 0)
                return r;

        if (m->backend->cdev)
                r = attach_cdev(c, d, bind, &cd, error);
        else
                r = attach_group(c, d, &cd, error);
        if (r < 0)
                return r;

        if (cd.bound)
                r = manager_group_owner_ref(m, cd.iommu_group, c);
        if (r >= 0)
                r = context_add_device(c, &cd);
        if (r < 0) {
                if (cd.bound)
                        manager_group_owner_unref(m, cd.iommu_group, c);
                backend_close(m->backend, cd.fd);
                if (!m->backend->cdev)
                        context_maybe_close_group(c, cd.iommu_group);
                return r;
        }
        d->holder = c;
        manager_device_holder_changed(m, d);

        log_info("%s: attached %s%s (devid %u).", c->path, d->address,
                 m->backend->cdev && !cd.bound ? " unbound" : "", cd.devid);
        lease_store_save(m, c);
        manager_queue_context(m, c);
        *ret_devid = cd.devid;
        return 0;
}

static void context_remove_device(Context *c, ContextDevice *cd) {
        Manager *m = c->manager;
        int group = cd->iommu_group;

        context_device_forget(c, cd);
        backend_close(m->backend, cd->fd);
        *cd = c->devices[--c->n_devices];
        if (!m->backend->cdev)
                context_maybe_close_group(c, group);
        lease_store_save(m, c);
        manager_queue_context(m, c);
}

int context_detach(Context *c, const PciAddress *a, sd_bus_error *error) {
        char addr[PCI_ADDRESS_STRING_MAX];
        ContextDevice *cd = context_find_device(c, a);

        pci_address_format(a, addr);
        if (!cd)
                return sd_bus_error_setf(error, BUS_ERROR_NOT_ATTACHED, "%s is not attached to %s.", addr, c->path);
        if (c->n_busy > 0)
                return sd_bus_error_setf(error, BUS_ERROR_BUSY, "%s: a hot reset using %s is in progress.", addr,
                                         c->path);
        context_remove_device(c, cd);
        log_info("%s: detached %s.", c->path, addr);
        return 0;
}

bool context_device_is_bound(Context *c, ContextDevice *cd) {
        Manager *m = c->manager;

        if (!m->backend->cdev || cd->bound)
                return true;
        struct hr_vfio_device_info info = { .argsz = sizeof info };
        if (backend_ioctl(m->backend, cd->fd, HR_VFIO_DEVICE_GET_INFO, &info) < 0)
                return false;
        /* Bound through a client's copy: by the VMM, into the iommufd it was
         * given (the context's, from OpenIommufd) or its own. Counted as the
         * context's claim on the group either way; the kernel has the last
         * word on a reset. */
        cd->bound = cd->bound_by_client = true;
        if (manager_group_owner_ref(m, cd->iommu_group, c) < 0)
                log_oom();
        lease_store_save(m, c);
        char addr[PCI_ADDRESS_STRING_MAX];
        log_info("%s: %s was bound by a client (a VMM) through its copy of the file.", c->path,
                 pci_address_format(&cd->address, addr));
        return true;
}

int context_reopen_device(Context *c, ContextDevice *cd, sd_bus_error *error) {
        Manager *m = c->manager;
        char addr[PCI_ADDRESS_STRING_MAX], comm[FILE_HOLDER_COMM_MAX];
        pid_t pid;
        int r;

        pci_address_format(&cd->address, addr);
        if (!m->backend->cdev)
                return sd_bus_error_setf(error, BUS_ERROR_UNSUPPORTED,
                                         "%s: the %s backend opens devices through their IOMMU group, and a group "
                                         "file cannot be reopened for one device; detach and attach it again.",
                                         addr, m->backend->name);
        if (c->n_busy > 0)
                return sd_bus_error_setf(error, BUS_ERROR_BUSY, "%s: a hot reset using %s is in progress.", addr,
                                         c->path);
        PciDevice *d = topology_get(m->topology, &cd->address);
        if (!d || !d->info.cdev_path)
                return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_DEVICE, "%s has no vfio cdev any more.", addr);

        /* The old file stays bound while any copy of it is open: a new VMM
         * could not bind the fresh one (EINVAL). The service manager's copy
         * in its file descriptor store is the daemon's own: it leaves the
         * store first (and comes back if the reopen is refused). */
        lease_store_unstore_device(m, c, cd);
        pid = 0;
        r = file_find_other_holder(cd->fd, &pid, comm);
        if (r != 0)
                lease_store_save(m, c);
        if (r < 0 && pid > 0)
                return sd_bus_error_setf(error, BUS_ERROR_IN_USE,
                                         "%s: cannot tell whether process %d (%s) still holds a copy of its file (%s: "
                                         "the daemon may not look into it); refusing to reopen rather than hand out "
                                         "a file no VMM could bind.",
                                         addr, (int) pid, comm, strerror(-r));
        if (r < 0)
                return bus_error_kernel(error, r, "%s: cannot tell who else holds its file: %s", addr, strerror(-r));
        if (r > 0)
                return sd_bus_error_setf(error, BUS_ERROR_IN_USE,
                                         "%s: process %d (%s) still holds a copy of its file, which keeps it bound; "
                                         "a new file could not be bound until that copy is closed (stop the old "
                                         "VMM first).",
                                         addr, (int) pid, comm);

        int fd = backend_open(m->backend, d->info.cdev_path, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                lease_store_save(m, c); /* the old file back in the store */
                return kernel_error(error, fd, addr, "opening its vfio cdev again");
        }
        if (cd->bound)
                manager_group_owner_unref(m, cd->iommu_group, c);
        backend_close(m->backend, cd->fd);
        cd->fd = fd;
        cd->bound = cd->bound_by_client = cd->stored = false;
        cd->devid = 0;
        lease_store_save(m, c);
        log_info("%s: reopened %s: a fresh, unbound file.", c->path, addr);
        return 0;
}

void context_drop_device(Context *c, const PciAddress *a, const char *why) {
        char addr[PCI_ADDRESS_STRING_MAX];
        ContextDevice *cd = context_find_device(c, a);

        if (!cd)
                return;
        pci_address_format(a, addr);
        log_warning("%s: dropping %s from the lease: %s.", c->path, addr, why);
        /* The holder hears which device and why before the files go. */
        if (c->manager->hooks.context_device_removed)
                c->manager->hooks.context_device_removed(c->manager, c, addr, why);
        context_remove_device(c, cd);
}

int context_hot_reset_info(Context *c, ContextDevice *d, uint32_t *ret_flags, HotResetEntry **ret_entries,
                           size_t *ret_n) {
        Backend *b = c->manager->backend;
        uint32_t capacity = 0;

        /* The documented protocol: ask with room for nothing, learn the
         * count from ENOSPC, ask again; EAGAIN means the topology changed
         * in between, so start over. Bounded: a bus that keeps changing is
         * an error, not a loop. */
        for (unsigned attempt = 0; attempt < 8; attempt++) {
                size_t size = sizeof(struct hr_vfio_pci_hot_reset_info) +
                              (size_t) capacity * sizeof(struct hr_vfio_pci_dependent_device);
                _cleanup_free_ struct hr_vfio_pci_hot_reset_info *info = calloc(1, size);
                if (!info)
                        return -ENOMEM;
                info->argsz = (uint32_t) size;

                int r = backend_ioctl(b, d->fd, HR_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, info);
                if (r == -ENOSPC && info->count > capacity) {
                        capacity = info->count;
                        continue;
                }
                if (r == -EAGAIN || r == -ENOSPC)
                        continue;
                if (r < 0)
                        return r;

                HotResetEntry *e = calloc(info->count ? info->count : 1, sizeof(HotResetEntry));
                if (!e)
                        return -ENOMEM;
                for (uint32_t i = 0; i < info->count && i < capacity; i++)
                        e[i] = (HotResetEntry) {
                                .address = { .domain = info->devices[i].segment,
                                             .bus = info->devices[i].bus,
                                             .slot = info->devices[i].devfn >> 3,
                                             .function = info->devices[i].devfn & 7 },
                                .id = info->devices[i].id,
                        };
                *ret_flags = info->flags;
                *ret_entries = e;
                *ret_n = info->count < capacity ? info->count : capacity;
                return 0;
        }
        return -EAGAIN;
}

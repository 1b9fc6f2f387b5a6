/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.hotresetd.Broker1.Context: one object per lease, served through a
 * fallback vtable. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "access.h"
#include "audit.h"
#include "bus-util.h"
#include "context-dbus.h"
#include "context.h"
#include "lease-store.h"
#include "log.h"
#include "manager.h"
#include "reset-job.h"
#include "util.h"
#include "vfio-compat.h"

/* Only the owner (or, for a persistent or process-tied context, its uid) and root may
 * change a context or take files from it; what they may do is then up to
 * the policy and polkit (access.h). */
static int check_caller(Context *c, sd_bus_message *msg, const char *what, sd_bus_error *error) {
        const char *sender = sd_bus_message_get_sender(msg);
        uid_t euid;

        if (sender && streq(sender, c->owner))
                return 0;
        /* Only what the bus vouches for; an unknown uid is nobody's. */
        if (access_caller_uid(msg, &euid) >= 0 &&
            (euid == 0 || (context_outlives_owner(c) && euid == c->owner_uid)))
                return 0;
        /* Such a context outlives its creator's bus name: name the uid. */
        if (context_outlives_owner(c))
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "%s belongs to uid %u (%s), not to you: you may not %s there.", c->path,
                                         (unsigned) c->owner_uid, context_lifetime_to_string(c->lifetime), what);
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "%s belongs to %s (uid %u), not to you: you may "
                                 "not %s there.", c->path, c->owner, (unsigned) c->owner_uid, what);
}

static int find_attached(Context *c, const char *address, ContextDevice **ret, sd_bus_error *error) {
        PciAddress a;
        char addr[PCI_ADDRESS_STRING_MAX];
        int r;

        r = bus_parse_address(address, &a, error);
        if (r < 0)
                return r;
        ContextDevice *d = context_find_device(c, &a);
        if (!d) {
                if (!topology_get(c->manager->topology, &a))
                        return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_DEVICE, "No PCI device %s on this machine.",
                                                 pci_address_format(&a, addr));
                return sd_bus_error_setf(error, BUS_ERROR_NOT_ATTACHED,
                                         "%s is not attached to %s: call AttachDevice first.",
                                         pci_address_format(&a, addr), c->path);
        }
        *ret = d;
        return 0;
}

static int method_attach_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        const char *address;
        bool bind = true;
        uint32_t devid = 0;
        PciDevice *d;
        PciAddress a;
        int r;

        r = sd_bus_message_read(msg, "s", &address);
        if (r < 0)
                return r;
        const OptionSpec specs[] = { { "Bind", 'b', &bind } };
        r = bus_read_options(msg, specs, ELEMENTSOF(specs), error);
        if (r < 0)
                return r;
        r = check_caller(c, msg, "attach devices", error);
        if (r < 0)
                return r;
        if (!bind && !c->manager->backend->cdev)
                return sd_bus_error_setf(error, BUS_ERROR_UNSUPPORTED,
                                         "Bind=false is for vfio cdevs; the %s backend opens devices through groups.",
                                         c->manager->backend->name);
        r = bus_parse_address(address, &a, error);
        if (r < 0)
                return r;
        r = access_authorize_device(c, msg, ACTION_ACQUIRE, "attach", &a, ACCESS_DEVICE_LIMIT, error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: polkit is asked; this call comes back */

        /* Looked up again: the device may have gone while polkit was asked. */
        r = manager_find_device(c->manager, &a, &d, error);
        if (r < 0)
                return r;
        r = context_attach(c, d, bind, &devid, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, "u", devid);
}

static int method_detach_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        const char *address;
        ContextDevice *d;
        PciAddress a;
        int r;

        r = sd_bus_message_read(msg, "s", &address);
        if (r < 0)
                return r;
        r = check_caller(c, msg, "detach devices", error);
        if (r < 0)
                return r;
        /* NoSuchDevice / NotAttached, as every other Context method. */
        r = find_attached(c, address, &d, error);
        if (r < 0)
                return r;
        a = d->address;
        r = context_detach(c, &a, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

/* sd-bus sends a duplicate of fd, made while the reply is built: out of
 * files, that is the daemon's limit, not the caller's fault. */
static int reply_with_fd(sd_bus_message *msg, int fd, const char *what, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "h", fd);
        if (r == -EMFILE || r == -ENFILE)
                return bus_error_kernel(error, r, "Failed to duplicate %s for the caller: %s", what, strerror(-r));
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* How every method on one attached device starts: the address, the
 * caller's ownership of the context (`what` names the call in a refusal),
 * the device, then the policy and polkit's action. 1: go on; 0: polkit is
 * asked (the handler returns 1, and this call comes back); < 0: refused. */
static int begin_device_call(Context *c, sd_bus_message *msg, const char *what, const char *action,
                             const char *verb, AccessFlags flags, const char **ret_address, ContextDevice **ret,
                             sd_bus_error *error) {
        int r;

        r = sd_bus_message_read(msg, "s", ret_address);
        if (r < 0)
                return r;
        r = check_caller(c, msg, what, error);
        if (r < 0)
                return r;
        r = find_attached(c, *ret_address, ret, error);
        if (r < 0)
                return r;
        return access_authorize_device(c, msg, action, verb, &(*ret)->address, flags, error);
}

static int method_open_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        const char *address;
        ContextDevice *d;
        int r;

        r = begin_device_call(c, msg, "open device files", ACTION_ACQUIRE, "open", 0, &address, &d, error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: polkit is asked; this call comes back */
        if (c->manager->backend->cdev && d->bound && !d->bound_by_client)
                log_notice("%s: handing out %s's file, which the daemon bound (Bind=true): a VMM cannot bind it "
                           "again (QEMU fails with \"error bind device ... Invalid argument\"); attach with "
                           "Bind=false for a VMM.",
                           c->path, address);
        /* sd-bus sends a duplicate; the daemon keeps its own file. */
        return reply_with_fd(msg, d->fd, address, error);
}

static int method_reopen_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        const char *address;
        ContextDevice *d;
        int r;

        r = begin_device_call(c, msg, "reopen device files", ACTION_ACQUIRE, "reopen", 0, &address, &d, error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: polkit is asked; this call comes back */
        r = context_reopen_device(c, d, error);
        if (r < 0)
                return r;
        return reply_with_fd(msg, d->fd, address, error);
}

/* Another connection of the owner's uid (a VM manager that restarted)
 * takes the lease over: calls that need the owner's bus name now need
 * its; a connection-bound lease now ends with the new connection. */
static int method_adopt(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        const char *sender = sd_bus_message_get_sender(msg);
        uid_t uid;
        int r;

        r = access_caller_uid(msg, &uid);
        if (r < 0)
                return r;
        if (uid != 0 && uid != c->owner_uid)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "%s belongs to uid %u, not to you (uid %u): only its uid may adopt it.",
                                         c->path, (unsigned) c->owner_uid, (unsigned) uid);
        r = access_verify(c->manager, msg, ACTION_ACQUIRE, "adopt", NULL, c->path, error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: polkit is asked; this call comes back */
        if (!sender)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Adopt needs a caller on the bus.");
        char *owner = strdup(sender);
        if (!owner)
                return -ENOMEM;
        log_info("%s: adopted by %s (uid %u), was %s's.", c->path, owner, (unsigned) uid, c->owner);
        free(c->owner);
        c->owner = owner;
        lease_store_save(c->manager, c);
        (void) sd_bus_emit_properties_changed(sd_bus_message_get_bus(msg), c->path, CONTEXT_INTERFACE, "Owner",
                                              NULL);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_open_iommufd(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        int r;

        r = check_caller(c, msg, "open the iommufd", error);
        if (r < 0)
                return r;
        r = access_verify(c->manager, msg, ACTION_ACQUIRE, "open-iommufd", NULL, c->path, error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: polkit is asked; this call comes back */
        if (c->iommufd < 0)
                return sd_bus_error_setf(error, BUS_ERROR_UNSUPPORTED,
                                         "%s has no iommufd: the %s backend uses a legacy vfio container.", c->path,
                                         c->manager->backend->name);
        return reply_with_fd(msg, c->iommufd, "the iommufd", error);
}

static int method_get_hot_reset_info(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ HotResetEntry *entries = NULL;
        const char *address;
        ContextDevice *d;
        uint32_t flags;
        size_t n;
        int r;

        r = sd_bus_message_read(msg, "s", &address);
        if (r < 0)
                return r;
        /* Read-only: the owner needs no polkit, anyone else manage. */
        r = access_verify_owner_or_manage(c, msg, "get-hot-reset-info", error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: polkit is asked; this call comes back */
        r = find_attached(c, address, &d, error);
        if (r < 0)
                return r;
        r = context_hot_reset_info(c, d, &flags, &entries, &n);
        if (r == -ENODEV)
                return sd_bus_error_setf(error, BUS_ERROR_NO_RESET_MECHANISM,
                                         "%s has no hot reset: it is on a root bus (the kernel answered ENODEV).",
                                         address);
        if (r == -EINVAL && d->devid == 0 && c->manager->backend->cdev)
                return sd_bus_error_setf(error, BUS_ERROR_UNSUPPORTED,
                                         "%s is attached unbound (Bind=false): the kernel answers nothing before "
                                         "VFIO_DEVICE_BIND_IOMMUFD.",
                                         address);
        if (r < 0)
                return bus_error_kernel(error, -r, "Failed to get the hot reset info of %s: %s", address,
                                               strerror(-r));

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "u", flags);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(su)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                char addr[PCI_ADDRESS_STRING_MAX];
                r = sd_bus_message_append(reply, "(su)", pci_address_format(&entries[i].address, addr), entries[i].id);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* Why an entry of the kernel's answer blocks a reset through c, as an
 * error naming the device and what holds or drives it; 0 if it doesn't. */
static int entry_blocks(Context *c, const HotResetEntry *e, bool cdev, sd_bus_error *error, const char *target) {
        Manager *m = c->manager;
        char addr[PCI_ADDRESS_STRING_MAX];
        PciDevice *d = topology_get(m->topology, &e->address);

        pci_address_format(&e->address, addr);
        if (!d)
                return sd_bus_error_setf(error, BUS_ERROR_NOT_IN_DEV_SET,
                                         "%s blocks a hot reset of %s: the daemon does not know it (it may have just "
                                         "appeared); retry.",
                                         addr, target);
        int r = bus_error_not_in_dev_set(error, &d->info, target);
        if (r < 0)
                return r;

        bool owned = cdev ? e->id != HR_VFIO_PCI_DEVID_NOT_OWNED : context_owns_group(c, (int) e->id);
        if (owned)
                return 0;

        Context *holder = manager_holder_of(m, d);
        if (holder && holder != c) {
                _cleanup_free_ char *who = context_describe(holder);
                return sd_bus_error_setf(error, BUS_ERROR_NOT_OWNED, "%s blocks a hot reset of %s: it is held by %s.",
                                         addr, target, strempty(who));
        }
        return sd_bus_error_setf(error, BUS_ERROR_NOT_OWNED,
                                 "%s blocks a hot reset of %s: it is not attached to %s; attach it (or, with "
                                 "iommufd, a device of its IOMMU group).",
                                 addr, target, c->path);
}

/* Pre-flight with the kernel's own answer, then queue the reset. Shared by
 * Context.HotReset and Manager.HotReset (private context). */
int context_submit_hot_reset(Context *c, sd_bus_message *msg, ContextDevice *d, bool release_after,
                             sd_bus_error *error) {
        Manager *m = c->manager;
        bool cdev = m->backend->cdev;
        _cleanup_free_ HotResetEntry *entries = NULL;
        _cleanup_strv_free_ char **affected = NULL;
        _cleanup_free_ int *group_fds = NULL;
        size_t n = 0, n_group_fds = 0;
        char target[PCI_ADDRESS_STRING_MAX];
        uint32_t flags;
        int r;

        pci_address_format(&d->address, target);
        if (!context_device_is_bound(c, d))
                return sd_bus_error_setf(error, BUS_ERROR_UNSUPPORTED,
                                         "%s is attached unbound (Bind=false) and no VMM has bound its file yet: the "
                                         "kernel resets a vfio cdev only once it is bound to an iommufd.",
                                         target);

        r = context_hot_reset_info(c, d, &flags, &entries, &n);
        if (r == -ENODEV)
                return sd_bus_error_setf(error, BUS_ERROR_NO_RESET_MECHANISM,
                                         "%s has no hot reset: it sits on a root bus, with no bridge above it to "
                                         "reset its slot or bus.",
                                         target);
        if (r < 0)
                return bus_error_kernel(error, -r, "Failed to get the hot reset info of %s: %s", target,
                                               strerror(-r));

        group_fds = calloc(n ? n : 1, sizeof(int));
        affected = calloc(n + 1, sizeof(char *));
        if (!group_fds || !affected)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                r = entry_blocks(c, &entries[i], cdev, error, target);
                if (r < 0)
                        return r;
                affected[i] = malloc(PCI_ADDRESS_STRING_MAX);
                if (!affected[i])
                        return -ENOMEM;
                pci_address_format(&entries[i].address, affected[i]);
                if (!cdev) {
                        ContextGroup *g = context_find_group(c, (int) entries[i].id);
                        int fd = g ? g->fd : -1;
                        bool seen = false;
                        for (size_t k = 0; k < n_group_fds; k++)
                                seen = seen || group_fds[k] == fd;
                        if (fd >= 0 && !seen)
                                group_fds[n_group_fds++] = fd;
                }
        }

        r = reset_job_submit(m, c, msg, d, affected, group_fds, n_group_fds, release_after);
        if (r == -EMFILE || r == -ENFILE)
                return bus_error_kernel(error, r, "Failed to start the hot reset of %s: %s", target, strerror(-r));
        return r;
}

static int method_hot_reset(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        const char *address;
        ContextDevice *d;
        int r;

        r = begin_device_call(c, msg, "reset devices", ACTION_RESET, "hot-reset",
                              ACCESS_WHOLE_SCOPE | ACCESS_RESET_LIMITS, &address, &d, error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: polkit is asked; this call comes back */
        r = context_submit_hot_reset(c, msg, d, false, error);
        if (r < 0)
                return r;
        access_count_reset(c, msg, &d->address, true);
        return 1; /* answered when the reset is done */
}

static int method_reset_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        Backend *b = c->manager->backend;
        const char *address;
        ContextDevice *d;
        int r;

        r = sd_bus_message_read(msg, "s", &address);
        if (r < 0)
                return r;
        r = check_caller(c, msg, "reset devices", error);
        if (r < 0)
                return r;
        r = find_attached(c, address, &d, error);
        if (r < 0)
                return r;
        if (!context_device_is_bound(c, d))
                return sd_bus_error_setf(error, BUS_ERROR_UNSUPPORTED,
                                         "%s is attached unbound (Bind=false) and no VMM has bound its file yet: the "
                                         "kernel resets a vfio cdev only once it is bound to an iommufd.",
                                         address);
        r = access_authorize_device(c, msg, ACTION_RESET, "reset-device", &d->address, ACCESS_RESET_LIMITS, error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: polkit is asked; this call comes back */

        struct hr_vfio_device_info info = { .argsz = sizeof info };
        r = backend_ioctl(b, d->fd, HR_VFIO_DEVICE_GET_INFO, &info);
        if (r < 0)
                return bus_error_kernel(error, -r, "Failed to query %s: %s", address, strerror(-r));
        if (!(info.flags & HR_VFIO_DEVICE_FLAGS_RESET))
                return sd_bus_error_setf(error, BUS_ERROR_NO_RESET_MECHANISM,
                                         "%s has no function-level reset (no flr, pm or device-specific reset method); "
                                         "use HotReset.",
                                         address);
        access_count_reset(c, msg, &d->address, false);
        r = backend_ioctl(b, d->fd, HR_VFIO_DEVICE_RESET, NULL);
        /* vfio-pci answers EINVAL when the device has no reset after all. */
        if (r == -ENOTTY || r == -EINVAL)
                return sd_bus_error_setf(error, BUS_ERROR_NO_RESET_MECHANISM, "%s: the kernel has no reset for it.",
                                         address);
        if (r < 0)
                return bus_error_kernel(error, -r, "Function reset of %s failed: %s", address, strerror(-r));
        log_info("%s: function-level reset of %s done.", c->path, address);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_release(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        int r;

        /* The owner needs no polkit (it gives up what it holds); releasing
         * someone else's context needs manage. */
        r = access_verify_owner_or_manage(c, msg, "release", error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: polkit is asked; this call comes back */
        /* Released (its record and files gone from the store, its devices
         * free unless a reset still uses them) before the caller hears so:
         * whatever it does next sees the lease gone. */
        context_release(c, "released by its owner");
        return sd_bus_reply_method_return(msg, NULL);
}

static int property_get_owner(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        if (context_outlives_owner(c)) {
                char buf[32];
                snprintf(buf, sizeof buf, "uid:%u", (unsigned) c->owner_uid);
                return sd_bus_message_append(reply, "s", buf);
        }
        return sd_bus_message_append(reply, "s", c->owner);
}

static int property_get_backend(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        return sd_bus_message_append(reply, "s", c->manager->backend->name);
}

static int property_get_lifetime(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        return sd_bus_message_append(reply, "s", context_lifetime_to_string(c->lifetime));
}

static int property_get_pid(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        return sd_bus_message_append(reply, "u", (uint32_t) (c->lifetime == CONTEXT_PROCESS ? c->pid : 0));
}

static int property_get_persistent(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        return sd_bus_message_append(reply, "b", c->lifetime == CONTEXT_PERSISTENT);
}

static int property_get_devices(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        PciAddress *sorted = calloc(c->n_devices ? c->n_devices : 1, sizeof(PciAddress));
        int r;

        if (!sorted)
                return -ENOMEM;
        /* Insertion sort: a lease holds a handful of devices. */
        for (size_t i = 0; i < c->n_devices; i++) {
                size_t k = i;
                while (k > 0 && pci_address_compare(&sorted[k - 1], &c->devices[i].address) > 0) {
                        sorted[k] = sorted[k - 1];
                        k--;
                }
                sorted[k] = c->devices[i].address;
        }
        r = sd_bus_message_open_container(reply, 'a', "s");
        for (size_t i = 0; r >= 0 && i < c->n_devices; i++) {
                char addr[PCI_ADDRESS_STRING_MAX];
                r = sd_bus_message_append(reply, "s", pci_address_format(&sorted[i], addr));
        }
        free(sorted);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

/* Every call that changes a lease is audited (audit.h). */
AUDITED_CONTEXT_METHOD(method_attach_device)
AUDITED_CONTEXT_METHOD(method_detach_device)
AUDITED_CONTEXT_METHOD(method_open_device)
AUDITED_CONTEXT_METHOD(method_reopen_device)
AUDITED_CONTEXT_METHOD(method_open_iommufd)
AUDITED_CONTEXT_METHOD(method_hot_reset)
AUDITED_CONTEXT_METHOD(method_reset_device)
AUDITED_CONTEXT_METHOD(method_adopt)
AUDITED_CONTEXT_METHOD(method_release)

static const sd_bus_vtable context_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Owner", "s", property_get_owner, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("OwnerUid", "u", NULL, offsetof(Context, owner_uid), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Persistent", "b", property_get_persistent, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Lifetime", "s", property_get_lifetime, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Pid", "u", property_get_pid, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Backend", "s", property_get_backend, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Description", "s", NULL, offsetof(Context, description), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Devices", "as", property_get_devices, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("AttachDevice",
                                SD_BUS_ARGS("s", address, "a{sv}", options),
                                SD_BUS_RESULT("u", devid),
                                method_attach_device_audited,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("DetachDevice",
                                SD_BUS_ARGS("s", address),
                                SD_BUS_NO_RESULT,
                                method_detach_device_audited,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("OpenDevice",
                                SD_BUS_ARGS("s", address),
                                SD_BUS_RESULT("h", fd),
                                method_open_device_audited,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ReopenDevice",
                                SD_BUS_ARGS("s", address),
                                SD_BUS_RESULT("h", fd),
                                method_reopen_device_audited,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("OpenIommufd",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("h", fd),
                                method_open_iommufd_audited,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetHotResetInfo",
                                SD_BUS_ARGS("s", address),
                                SD_BUS_RESULT("u", flags, "a(su)", devices),
                                method_get_hot_reset_info,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("HotReset",
                                SD_BUS_ARGS("s", address),
                                SD_BUS_RESULT("as", affected),
                                method_hot_reset_audited,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ResetDevice",
                                SD_BUS_ARGS("s", address),
                                SD_BUS_NO_RESULT,
                                method_reset_device_audited,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Adopt",
                                SD_BUS_NO_ARGS,
                                SD_BUS_NO_RESULT,
                                method_adopt_audited,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Release",
                                SD_BUS_NO_ARGS,
                                SD_BUS_NO_RESULT,
                                method_release_audited,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("DeviceRemoved",
                                SD_BUS_ARGS("s", address, "s", reason),
                                0),
        SD_BUS_SIGNAL_WITH_ARGS("PrepareForHotReset",
                                SD_BUS_ARGS("s", address, "as", affected),
                                0),
        SD_BUS_VTABLE_END,
};

static int context_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                               sd_bus_error *error) {
        Manager *m = userdata;
        Context *c = manager_find_context(m, path);
        if (!c)
                return 0;
        *found = c;
        return 1;
}

static int context_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                                   sd_bus_error *error) {
        Manager *m = userdata;
        char **l = calloc(m->n_contexts + 1, sizeof(char *));

        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_contexts; i++) {
                l[i] = strdup(m->contexts[i]->path);
                if (!l[i]) {
                        strv_free(l);
                        return -ENOMEM;
                }
        }
        *nodes = l;
        return 1;
}

int context_register_bus(Manager *m) {
        return bus_add_object_tree(m->bus, CONTEXT_PATH_PREFIX, CONTEXT_INTERFACE, context_vtable, context_object_find,
                                   context_node_enumerator, m, "context");
}

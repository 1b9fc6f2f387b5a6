/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.hotresetd.Broker1.Manager, the ObjectManager, and the publish pass
 * that turns what the core queued into signals: one pass per batch of
 * changes, over the queued objects only, with a budget per pass so a burst
 * of thousands of changes never keeps other callers waiting long. */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>

#include "access.h"
#include "audit.h"
#include "bus-util.h"
#include "config.h"
#include "context-dbus.h"
#include "context.h"
#include "device-dbus.h"
#include "domain-dbus.h"
#include "log-control.h"
#include "log.h"
#include "manager-dbus.h"
#include "policy.h"
#include "read-queue.h"
#include "refusal-log.h"
#include "util.h"

/* Objects published per pass of the event loop; between passes the bus is
 * served. A pass of this many costs a few milliseconds. */
#define PUBLISH_BUDGET 256

typedef struct BusState {
        sd_event_source *publish_source;
        ReadQueue *reads;
        size_t published; /* objects published or removed since the heap was last trimmed */
} BusState;

/* After a burst this large, the heap has room it will not need again. */
#define TRIM_AFTER_OBJECTS 1024

/* ---- publishing ---------------------------------------------------------- */

static size_t publish(Manager *m, bool silent, size_t budget) {
        size_t start = budget;
        PciDevice *d;
        ResetDomain *dom;
        Context *c;
        int r;

        (void) manager_settle(m);

        /* Domains first: a device's ResetDomain names its domain. */
        while (budget > 0 && (dom = manager_pop_domain(m))) {
                r = domain_object_publish(m, dom, silent);
                if (r < 0)
                        log_warning_errno(r, "Failed to publish the reset domain of %04x:%02x: %m", dom->pci_domain,
                                          dom->bus);
                budget--;
        }
        while (budget > 0 && (d = manager_pop_device(m))) {
                r = device_object_publish(m, d, silent);
                if (r < 0)
                        log_warning_errno(r, "Failed to publish the state of %s: %m", d->address);
                budget--;
        }
        while ((c = manager_pop_context(m)))
                if (!silent)
                        (void) sd_bus_emit_properties_changed(m->bus, c->path, CONTEXT_INTERFACE, "Devices", NULL);

        unsigned changes = m->changes;
        m->changes = 0;
        if (!silent && (changes & MANAGER_CHANGED_DEVICE_COUNT)) {
                r = sd_bus_emit_properties_changed(m->bus, BROKER_PATH, MANAGER_INTERFACE, "DeviceCount", NULL);
                if (r < 0)
                        log_warning_errno(r, "Failed to signal the device count: %m");
        }
        if (!silent && (changes & MANAGER_CHANGED_POLICY))
                (void) sd_bus_emit_properties_changed(m->bus, BROKER_PATH, MANAGER_INTERFACE, "Limits",
                                                      "UnleasedHotReset", NULL);
        return start - budget;
}

static BusState *bus_state(Manager *m) {
        return m->hooks_userdata;
}

static int on_publish(sd_event_source *s, void *userdata) {
        Manager *m = userdata;
        BusState *b = bus_state(m);

        b->published += publish(m, false, PUBLISH_BUDGET);
        /* What did not fit waits for the next pass, after the bus. */
        if (manager_has_queued(m)) {
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                return 0;
        }
        /* A burst (a thousand functions hotplugged and gone) leaves free
         * memory in the middle of the heap; give it back, as systemd's
         * sd_event_trim_memory() does. Not after small changes: it costs a
         * walk of the heap. */
        if (b->published >= TRIM_AFTER_OBJECTS) {
                (void) malloc_trim(0);
                b->published = 0;
        }
        return 0;
}

static void hook_queued(Manager *m) {
        BusState *b = bus_state(m);
        if (!b->publish_source)
                return;
        int r = sd_event_source_set_enabled(b->publish_source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to schedule publishing changes: %m");
}

static void hook_device_removed(Manager *m, PciDevice *d) {
        device_object_removed(m, d);
        bus_state(m)->published++; /* counts toward trimming the heap */
}

static void hook_domain_removed(Manager *m, ResetDomain *dom) {
        domain_object_removed(m, dom);
}

static void hook_context_removed(Manager *m, Context *c) {
        /* The bus is gone (the daemon stops because of that): nobody to tell. */
        if (sd_bus_is_open(m->bus) <= 0)
                return;
        int r = sd_bus_emit_object_removed(m->bus, c->path);
        if (r < 0)
                log_warning_errno(r, "Failed to announce the removal of %s: %m", c->path);
}

static void hook_context_device_removed(Manager *m, Context *c, const char *address, const char *reason) {
        int r = sd_bus_emit_signal(m->bus, c->path, CONTEXT_INTERFACE, "DeviceRemoved", "ss", address, reason);
        if (r < 0)
                log_warning_errno(r, "Failed to tell %s that %s went: %m", c->path, address);
}

/* sd_bus_emit_signal() takes "as" as a count and strings, not a strv. */
static void emit_with_strv(sd_bus *bus, const char *path, const char *interface, const char *member,
                           const char *address, char **affected, const uint64_t *duration, const char *result) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        int r;

        r = sd_bus_message_new_signal(bus, &msg, path, interface, member);
        if (r >= 0)
                r = sd_bus_message_append(msg, "s", address);
        if (r >= 0)
                r = sd_bus_message_append_strv(msg, affected);
        if (r >= 0 && duration)
                r = sd_bus_message_append(msg, "ts", *duration, result);
        if (r >= 0)
                r = sd_bus_send(bus, msg, NULL);
        if (r < 0)
                log_warning_errno(r, "Failed to send %s for %s: %m", member, address);
}

static void hook_prepare_for_hot_reset(Manager *m, Context *c, const char *target, char **affected) {
        emit_with_strv(m->bus, c->path, CONTEXT_INTERFACE, "PrepareForHotReset", target, affected, NULL, NULL);
}

static void hook_hot_reset_done(Manager *m, const char *target, char **affected, uint64_t duration_usec,
                                const char *result) {
        emit_with_strv(m->bus, BROKER_PATH, MANAGER_INTERFACE, "HotResetDone", target, affected, &duration_usec,
                       result);
}

/* ---- lease owners -------------------------------------------------------- */

/* One match for every lease: the bus says when any name loses its owner
 * (arg2, the new owner, is empty), and the leases of that name go. A match
 * per lease would hit dbus-daemon's limit on match rules per connection
 * (512 by default), and a refused match costs the daemon its connection. */
static int on_name_owner_changed(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(msg, "sss", &name, &old_owner, &new_owner) < 0 || (new_owner && *new_owner))
                return 0;
        access_forget_caller(name);
        manager_owner_gone(m, name);
        return 0;
}

/* A lease created after its owner already left (polkit answered after
 * the owner's NameOwnerChanged went by) would never be released: ask the
 * bus once whether the owner is still there. */
typedef struct OwnerCheck {
        Manager *manager;
        char name[];
} OwnerCheck;

static int on_name_has_owner(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        OwnerCheck *oc = userdata;
        int has = 1;

        if (!sd_bus_message_is_method_error(reply, NULL) && sd_bus_message_read(reply, "b", &has) >= 0 && !has)
                manager_owner_gone(oc->manager, oc->name);
        return 0;
}

static void owner_watch_check(Manager *m, Context *c) {
        sd_bus_slot *slot = NULL;
        size_t len = strlen(c->owner) + 1;
        OwnerCheck *oc = malloc(sizeof(OwnerCheck) + len);
        int r;

        if (!oc) {
                log_oom();
                return;
        }
        oc->manager = m;
        memcpy(oc->name, c->owner, len);
        r = sd_bus_call_method_async(m->bus, &slot, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "NameHasOwner", on_name_has_owner, oc, "s", c->owner);
        if (r < 0) {
                free(oc);
                log_warning_errno(r, "Failed to ask whether %s is still connected: %m", c->owner);
                return;
        }
        /* The bus owns the pending call and frees oc with it. */
        (void) sd_bus_slot_set_destroy_callback(slot, free);
        (void) sd_bus_slot_set_floating(slot, 1);
        sd_bus_slot_unref(slot);
}

/* A new context for the caller of msg, registered and announced. */
static int manager_create_context(Manager *m, sd_bus_message *msg, uid_t uid, ContextLifetime lifetime, int pidfd,
                                  const char *description, Context **ret, sd_bus_error *error) {
        Context *c;
        int r;

        r = context_new(m, sd_bus_message_get_sender(msg), uid, lifetime, pidfd, description, &c, error);
        if (r < 0)
                return r;
        r = manager_add_context(m, c);
        if (r < 0) {
                c->released = true;
                context_unref_busy(c);
                return r;
        }
        char tie[48] = "";
        if (lifetime == CONTEXT_PERSISTENT)
                strcpy(tie, ", persistent");
        else if (lifetime == CONTEXT_PROCESS)
                snprintf(tie, sizeof tie, ", for as long as process %d lives", (int) c->pid);
        log_info("Created %s for %s (uid %u)%s%s%s.", c->path, c->owner, (unsigned) uid, tie,
                 *c->description ? ": " : "", c->description);
        (void) sd_bus_emit_object_added(m->bus, c->path);
        if (lifetime == CONTEXT_CONNECTION)
                owner_watch_check(m, c);
        *ret = c;
        return 0;
}

static int method_create_context(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *description = NULL;
        bool persistent = false;
        int pidfd = -1;
        Context *c;
        uid_t uid;
        int r;

        const OptionSpec specs[] = {
                { "Persistent", 'b', &persistent },
                { "Description", 's', &description },
                { "Pid", 'h', &pidfd },
        };
        r = bus_read_options(msg, specs, ELEMENTSOF(specs), error);
        if (r < 0)
                return r;
        if (persistent && pidfd >= 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Persistent and Pid exclude each other: a lease lasts until released, or "
                                         "as long as a process lives.");
        ContextLifetime lifetime = pidfd >= 0 ? CONTEXT_PROCESS : persistent ? CONTEXT_PERSISTENT : CONTEXT_CONNECTION;
        if (description && strlen(description) > 256)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Description is %zu bytes long; at most 256 are allowed.", strlen(description));

        r = access_caller_uid(msg, &uid);
        if (r < 0)
                return r;
        r = access_check_context_limit(m, uid, error);
        if (r < 0)
                return r;
        r = access_verify(m, msg, ACTION_ACQUIRE, "create-context", NULL, NULL, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* polkit is asked; this call comes back */

        r = manager_create_context(m, msg, uid, lifetime, pidfd, description, &c, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, "o", c->path);
}

/* Why a scope nobody may hold can't be reset, as the error to answer. */
static int unleased_refusal(Manager *m, const PciDevice *target, const ResetCheck *check, sd_bus_error *error) {
        char taddr[PCI_ADDRESS_STRING_MAX], addr[PCI_ADDRESS_STRING_MAX];

        pci_address_format(&target->info.address, taddr);
        if (check->scope == RESET_SCOPE_NONE)
                return sd_bus_error_setf(error, BUS_ERROR_NO_RESET_MECHANISM,
                                         "%s has no hot reset: it sits on a root bus, with no bridge above it to "
                                         "reset its slot or bus.",
                                         taddr);
        for (size_t i = 0; i < check->n_entries; i++) {
                const ResetCheckEntry *e = &check->entries[i];
                const PciDevice *d = e->device;
                pci_address_format(&d->info.address, addr);
                int r = bus_error_not_in_dev_set(error, &d->info, taddr);
                if (r < 0)
                        return r;
                /* Unleased means nobody's: even the target's own holder
                 * must reset through its context. */
                if (e->holder) {
                        _cleanup_free_ char *who = context_describe((Context *) e->holder);
                        return sd_bus_error_setf(error, BUS_ERROR_IN_USE,
                                                 "%s blocks an unleased hot reset of %s: it is held by %s; reset "
                                                 "through that context (Context.HotReset) instead.",
                                                 addr, taddr, strempty(who));
                }
        }
        return 0;
}

static int method_hot_reset(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_free_ char *description = NULL;
        const char *address;
        char taddr[PCI_ADDRESS_STRING_MAX];
        PciAddress a;
        ResetCheck check;
        PciDevice *target;
        Context *c;
        uid_t uid;
        int r;

        r = sd_bus_message_read(msg, "s", &address);
        if (r < 0)
                return r;
        r = bus_read_options(msg, NULL, 0, error);
        if (r < 0)
                return r;
        r = access_check_unleased(m, error);
        if (r < 0)
                return r;
        r = bus_parse_address(address, &a, error);
        if (r < 0)
                return r;
        r = manager_find_device(m, &a, &target, error);
        if (r < 0)
                return r;
        pci_address_format(&target->info.address, taddr);
        r = access_check_devices(m, target, true, "unleased-hot-reset", error);
        if (r < 0)
                return r;

        r = access_reset_check(m, target, &check);
        if (r < 0)
                return r;
        r = unleased_refusal(m, target, &check, error);
        if (r < 0 || !check.possible) {
                reset_check_done(&check);
                return r < 0 ? r : sd_bus_error_setf(error, BUS_ERROR_NOT_OWNED, "A hot reset of %s is not possible.",
                                                     taddr);
        }
        r = access_caller_uid(msg, &uid);
        if (r >= 0)
                r = access_check_reset_limits(m, uid, target, true, "unleased-hot-reset", error);
        if (r >= 0)
                r = access_verify(m, msg, ACTION_RESET_UNLEASED, "unleased-hot-reset", target, NULL, error);
        if (r <= 0) {
                reset_check_done(&check);
                return r < 0 ? r : 1; /* 0: polkit is asked; this call comes back */
        }

        if (asprintf(&description, "private context of Manager.HotReset(%s)", taddr) < 0) {
                description = NULL; /* undefined after a failed asprintf() */
                r = -ENOMEM;
        } else
                r = manager_create_context(m, msg, uid, CONTEXT_CONNECTION, -1, description, &c, error);
        if (r < 0) {
                reset_check_done(&check);
                return r;
        }

        /* Take the whole scope, then reset through the target's file. */
        for (size_t i = 0; r >= 0 && i < check.n_entries; i++) {
                uint32_t devid;
                r = context_attach(c, check.entries[i].device, true, &devid, error);
        }
        reset_check_done(&check);
        if (r >= 0)
                r = context_submit_hot_reset(c, msg, context_find_device(c, &target->info.address), true, error);
        if (r < 0) {
                context_release(c, "its hot reset was refused");
                return r;
        }
        access_take_reset_limits(m, uid, target, true);
        return 1; /* answered when the reset is done */
}

static int method_list_devices(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(ssso)");
        if (r < 0)
                return r;
        (void) manager_settle(m);
        for (size_t i = 0; i < topology_size(m->topology); i++) {
                PciDevice *d = topology_at(m->topology, i);
                char path[DEVICE_PATH_MAX];
                r = sd_bus_message_append(reply, "(ssso)", d->address, strempty(d->info.driver),
                                          reset_scope_to_string(d->domain ? d->domain->scope : RESET_SCOPE_NONE),
                                          device_object_path(&d->info.address, path));
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* Every lease, for a VM manager that restarted and looks for its own (the
 * same as the contexts' properties, which everyone may read). */
static int method_list_contexts(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(ossuus)");
        for (size_t i = 0; r >= 0 && i < m->n_contexts; i++) {
                Context *c = m->contexts[i];
                r = sd_bus_message_append(reply, "(ossuus)", c->path, context_lifetime_to_string(c->lifetime),
                                          c->owner, (uint32_t) c->owner_uid,
                                          (uint32_t) (c->lifetime == CONTEXT_PROCESS ? c->pid : 0), c->description);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_get_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *address;
        PciDevice *d;
        PciAddress a;
        char path[DEVICE_PATH_MAX];
        int r;

        r = sd_bus_message_read(msg, "s", &address);
        if (r < 0)
                return r;
        r = bus_parse_address(address, &a, error);
        if (r < 0)
                return r;
        r = manager_find_device(m, &a, &d, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, "o", device_object_path(&d->info.address, path));
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", HOTRESETD_VERSION);
}

static int property_get_backend(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "s", m->backend->name);
}

static int property_get_emulated(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "b", m->backend->emulated);
}

static int property_get_device_count(sd_bus *bus, const char *path, const char *interface, const char *property,
                                     sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "u", (uint32_t) topology_size(m->topology));
}

/* The policy's limits by their policy file keys; 0 = no limit. */
static int property_get_limits(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "{su}");
        for (PolicyLimit l = 0; r >= 0 && l < _POLICY_LIMIT_MAX; l++)
                r = sd_bus_message_append(reply, "{su}", policy_limit_to_string(l),
                                          m->policy ? m->policy->limits[l] : 0u);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

static int property_get_unleased_hot_reset(sd_bus *bus, const char *path, const char *interface,
                                           const char *property, sd_bus_message *reply, void *userdata,
                                           sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "b", m->policy ? m->policy->unleased_hot_reset : true);
}

/* The policy file the daemon reads (it may not exist: then the defaults
 * apply). For people: `hotresetctl status` shows it. */
static int property_get_policy_file(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "s", m->policy_path ?: "");
}

/* Every call that changes state is audited (audit.h). */
AUDITED_MANAGER_METHOD(method_create_context)
AUDITED_MANAGER_METHOD(method_hot_reset)
AUDITED_MANAGER_METHOD(access_method_reload)

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Backend", "s", property_get_backend, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Emulated", "b", property_get_emulated, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("DeviceCount", "u", property_get_device_count, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Limits", "a{su}", property_get_limits, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("UnleasedHotReset", "b", property_get_unleased_hot_reset, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("PolicyFile", "s", property_get_policy_file, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("ListDevices",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("a(ssso)", devices),
                                method_list_devices,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetDevice",
                                SD_BUS_ARGS("s", address),
                                SD_BUS_RESULT("o", device),
                                method_get_device,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListContexts",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("a(ossuus)", contexts),
                                method_list_contexts,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("CreateContext",
                                SD_BUS_ARGS("a{sv}", options),
                                SD_BUS_RESULT("o", context),
                                method_create_context_audited,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("HotReset",
                                SD_BUS_ARGS("s", address, "a{sv}", options),
                                SD_BUS_RESULT("as", affected),
                                method_hot_reset_audited,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Reload",
                                SD_BUS_NO_ARGS,
                                SD_BUS_NO_RESULT,
                                access_method_reload_audited,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("HotResetDone",
                                SD_BUS_ARGS("s", address, "as", affected, "t", duration_usec, "s", result),
                                0),
        SD_BUS_VTABLE_END,
};


/* ---- replies that must stay under the bus's message limit ----------------- */

/* dbus-daemon's default max_message_size (32 MiB, also on Debian's system
 * bus); a larger message makes the bus drop the sender's connection, which
 * would end every lease. Kept below it for the header. */
#define REPLY_SIZE_MAX (31u * 1024u * 1024u)

/* An upper bound of what GetManagedObjects answers, from what each object
 * serializes to (fixed parts measured with sd-bus's marshalling, rounded
 * up; strings by their lengths). Cheap: one pass, no allocation. */
static uint64_t managed_objects_size_bound(Manager *m) {
        uint64_t size = 4096; /* the root object's interfaces and the header */
        size_t n = topology_size(m->topology), cursor = 0;
        ResetDomain *dom;

        for (size_t i = 0; i < n; i++) {
                const PciDevice *d = topology_at(m->topology, i);
                /* path, the standard interfaces, 13 properties: 690 bytes
                 * with empty strings; then what varies. */
                size += 720 + strlen(strempty(d->info.driver)) + strlen(strempty(d->info.cdev_path));
                for (size_t k = 0; d->info.reset_methods && d->info.reset_methods[k]; k++)
                        size += 8 + strlen(d->info.reset_methods[k]);
        }
        while ((dom = reset_domains_next(m->domains, &cursor)))
                /* A member is a 12-character address (24 bytes with its
                 * length and padding); a blocker adds its reason. */
                size += 600 + 24 * dom->n_members + 320 * dom->n_blocked;
        for (size_t i = 0; i < m->n_contexts; i++)
                size += 1024 + strlen(m->contexts[i]->description) + 24 * m->contexts[i]->n_devices;
        return size;
}

/* sd-bus answers GetManagedObjects itself; this filter sees the call first
 * and refuses it when the answer could not cross the bus. */
static int filter_managed_objects(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        if (!sd_bus_message_is_method_call(msg, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects") ||
            !streq_ptr(sd_bus_message_get_path(msg), BROKER_PATH))
                return 0;
        (void) manager_settle(m);
        uint64_t size = managed_objects_size_bound(m);
        if (size <= REPLY_SIZE_MAX)
                return 0;

        uid_t uid = (uid_t) -1;
        (void) access_caller_uid(msg, &uid);
        log_full(refusal_log_allowed(m, uid) ? LOG_NOTICE : LOG_DEBUG,
                 "Refused GetManagedObjects to %s: the answer would be up to %" PRIu64 " MiB, over the %u MiB a "
                 "message may have on the bus.",
                 strempty(sd_bus_message_get_sender(msg)), size >> 20, REPLY_SIZE_MAX >> 20);
        (void) sd_bus_reply_method_errorf(msg, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                          "GetManagedObjects would answer up to %" PRIu64 " MiB for %zu devices, "
                                          "over the %u MiB a D-Bus message may have. List the devices with "
                                          "Manager.ListDevices and read the objects you need with "
                                          "Properties.GetAll; watch InterfacesAdded/InterfacesRemoved for changes.",
                                          size >> 20, topology_size(m->topology), REPLY_SIZE_MAX >> 20);
        return 1;
}

/* ---- connecting ---------------------------------------------------------- */

static void bus_teardown(Manager *m) {
        BusState *b = bus_state(m);

        /* The leases were released and announced; nothing more is said. */
        device_objects_free(m);
        domain_objects_free(m);
        m->hooks = (ManagerHooks) {};
        m->hooks_userdata = NULL;
        if (b) {
                sd_event_source_disable_unref(b->publish_source);
                read_queue_free(b->reads);
                free(b);
        }
        m->bus = sd_bus_flush_close_unref(m->bus);
}

int manager_connect_bus(Manager *m) {
        BusState *b;
        int r;

        /* Replies of many megabytes (GetManagedObjects of a large machine)
         * are built in one buffer: with a fixed threshold such buffers are
         * mapped and unmapped, not kept on the heap after they are sent
         * (glibc would otherwise raise the threshold to their size). */
        (void) mallopt(M_MMAP_THRESHOLD, 256 * 1024);

        b = calloc(1, sizeof(BusState));
        if (!b)
                return log_oom();
        m->hooks_userdata = b;
        m->hooks = (ManagerHooks) {
                .queued = hook_queued,
                .device_removed = hook_device_removed,
                .domain_removed = hook_domain_removed,
                .context_removed = hook_context_removed,
                .context_device_removed = hook_context_device_removed,
                .prepare_for_hot_reset = hook_prepare_for_hot_reset,
                .hot_reset_done = hook_hot_reset_done,
                .teardown = bus_teardown,
        };

        /* What the backend delivered so far is the initial state, not a
         * change: settle it before anyone can listen. */
        publish(m, true, SIZE_MAX);

        r = sd_event_add_defer(m->event, &b->publish_source, on_publish, m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up publishing: %m");
        (void) sd_event_source_set_enabled(b->publish_source, SD_EVENT_OFF);
        /* After the backend's own sources, so a whole batch lands first. */
        (void) sd_event_source_set_priority(b->publish_source, SD_EVENT_PRIORITY_IDLE);

        r = sd_bus_open_system(&m->bus);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the system bus: %m");
        r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Failed to attach the bus to the event loop: %m");
        /* sd-bus would close the connection as soon as the loop ends; on
         * SIGTERM the daemon still has to answer the resets in flight and
         * announce the leases it releases: it closes the bus itself, last
         * (bus_teardown). */
        r = sd_bus_set_close_on_exit(m->bus, false);
        if (r < 0)
                return log_error_errno(r, "Failed to keep the bus open until the daemon is done: %m");

        r = sd_bus_add_match(m->bus, NULL,
                             "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                             "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg2=''",
                             on_name_owner_changed, m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch for clients leaving the bus: %m");

        /* Filters run newest first: the size guard refuses before a call
         * waits its turn for nothing. */
        r = read_queue_new(m, &b->reads);
        if (r < 0)
                return log_error_errno(r, "Failed to set up fair dispatch of costly reads: %m");
        r = sd_bus_add_filter(m->bus, NULL, filter_managed_objects, m);
        if (r < 0)
                return log_error_errno(r, "Failed to install the reply size guard: %m");

        r = sd_bus_add_object_vtable(m->bus, NULL, BROKER_PATH, MANAGER_INTERFACE, manager_vtable, m);
        if (r < 0)
                return log_error_errno(r, "Failed to register the manager object: %m");
        r = sd_bus_add_object_manager(m->bus, NULL, BROKER_PATH);
        if (r < 0)
                return log_error_errno(r, "Failed to register the object manager: %m");
        r = device_register_bus(m);
        if (r < 0)
                return r;
        r = domain_register_bus(m);
        if (r < 0)
                return r;
        r = context_register_bus(m);
        if (r < 0)
                return r;
        r = log_control_register_bus(m->bus);
        if (r < 0)
                return r;

        /* Objects first, name last: whoever sees the name finds the objects. */
        r = sd_bus_request_name(m->bus, BROKER_BUS_NAME, 0);
        if (r < 0)
                return log_error_errno(r, "Failed to acquire the bus name %s: %m", BROKER_BUS_NAME);

        /* Leases restored from the file descriptor store whose owner's
         * connection is their lifetime: the owner may have left while the
         * daemon was away (the match above sees only what comes now). A
         * restarted bus gives the same unique names to others: a lease
         * recorded on another bus (or on none recorded) has lost its
         * owner for sure. */
        sd_id128_t bus_id = SD_ID128_NULL;
        (void) sd_bus_get_bus_id(m->bus, &bus_id);
        for (size_t i = m->n_contexts; i > 0; i--) {
                Context *c = m->contexts[i - 1];
                if (c->lifetime != CONTEXT_CONNECTION)
                        continue;
                if (sd_id128_is_null(c->bus_id) || !sd_id128_equal(c->bus_id, bus_id))
                        context_release(c, "the system bus it was made on was restarted while the daemon was "
                                           "not running: its owner's connection is gone");
                else
                        owner_watch_check(m, c);
        }
        return 0;
}

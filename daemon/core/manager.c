/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.hotresetd.Broker1.Manager and the glue between backend events and
 * the bus: the topology is updated as events arrive, and what changed is
 * published once the batch is through. */
#include <errno.h>

#include "access.h"
#include "bus-util.h"
#include "config.h"
#include "context.h"
#include "log.h"
#include "manager.h"
#include "policy.h"
#include "reset-job.h"
#include "util.h"

static int publish_all(sd_event_source *s, void *userdata) {
        Manager *m = userdata;
        size_t n = topology_size(m->topology);

        for (size_t i = 0; i < n; i++) {
                PciDevice *d = topology_at(m->topology, i);
                int r = device_object_publish(m, d);
                if (r < 0) {
                        char buf[PCI_ADDRESS_STRING_MAX];
                        log_warning_errno(r, "Failed to publish the state of %s: %m",
                                          pci_address_format(&d->info.address, buf));
                }
        }

        if (m->published_device_count != n) {
                m->published_device_count = (uint32_t) n;
                if (m->bus) {
                        int r = sd_bus_emit_properties_changed(m->bus, BROKER_PATH, MANAGER_INTERFACE, "DeviceCount",
                                                               NULL);
                        if (r < 0)
                                log_warning_errno(r, "Failed to signal the device count: %m");
                }
        }
        return 0;
}

void manager_schedule_publish(Manager *m) {
        if (!m->publish_source) /* shutting down */
                return;
        int r = sd_event_source_set_enabled(m->publish_source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to schedule publishing changes: %m");
}

void manager_on_backend_event(Backend *b, BackendAction action, const PciDeviceInfo *info, void *userdata) {
        Manager *m = userdata;
        char addr[PCI_ADDRESS_STRING_MAX];
        PciDevice *d;
        int r;

        pci_address_format(&info->address, addr);
        log_debug("%s %s%s%s", backend_action_to_string(action), addr, info->driver ? " driver=" : "",
                  strempty(info->driver));

        d = topology_get(m->topology, &info->address);

        /* A held device that leaves vfio (unbound, removed) is gone from
         * its lease: the files the context holds of it are dead. */
        if (d && (action == BACKEND_REMOVE || !driver_is_vfio(info->driver) ||
                  !streq_ptr(info->cdev_path, d->info.cdev_path)))
                for (size_t i = 0; i < m->n_contexts; i++)
                        context_drop_device(m->contexts[i], &info->address,
                                            action == BACKEND_REMOVE ? "the device was removed"
                                                                     : "the device left its vfio driver");

        switch (action) {
        case BACKEND_REMOVE:
                if (!d) {
                        log_debug("Ignoring removal of unknown device %s.", addr);
                        return;
                }
                /* The object must still resolve while its removal is
                 * announced: the signal lists its interfaces. */
                device_object_retract(m, d);
                (void) topology_remove(m->topology, &info->address);
                break;

        case BACKEND_ADD:
        case BACKEND_BIND:
        case BACKEND_UNBIND:
        case BACKEND_CHANGE:
        default: {
                bool is_new = !d;
                r = topology_put(m->topology, info, &d);
                if (r < 0) {
                        log_error_errno(r, "Failed to record %s of %s: %m", backend_action_to_string(action), addr);
                        return;
                }
                if (is_new) {
                        r = device_object_new(m, d);
                        if (r < 0) {
                                log_error_errno(r, "Failed to create the object of %s: %m", addr);
                                (void) topology_remove(m->topology, &info->address);
                                return;
                        }
                        /* Announced when the batch is through, with its
                         * settled state (see publish_all). */
                }
                break;
        }
        }

        manager_schedule_publish(m);
}

Context *manager_find_context(Manager *m, const char *path) {
        for (size_t i = 0; i < m->n_contexts; i++)
                if (streq(m->contexts[i]->path, path))
                        return m->contexts[i];
        return NULL;
}

int manager_add_context(Manager *m, Context *c) {
        Context **n = realloc(m->contexts, (m->n_contexts + 1) * sizeof(Context *));
        if (!n)
                return -ENOMEM;
        m->contexts = n;
        m->contexts[m->n_contexts++] = c;
        return 0;
}

void manager_remove_context(Manager *m, Context *c) {
        for (size_t i = 0; i < m->n_contexts; i++)
                if (m->contexts[i] == c) {
                        memmove(m->contexts + i, m->contexts + i + 1, (m->n_contexts - i - 1) * sizeof(Context *));
                        m->n_contexts--;
                        return;
                }
}

Context *manager_holder_of(Manager *m, const PciDevice *d) {
        for (size_t i = 0; i < m->n_contexts; i++)
                if (context_find_device(m->contexts[i], &d->info.address))
                        return m->contexts[i];
        for (size_t i = 0; i < m->n_contexts; i++)
                if (context_owns_group(m->contexts[i], d->info.iommu_group))
                        return m->contexts[i];
        return NULL;
}

/* A new context for the caller of msg, registered and announced. */
static int manager_create_context(Manager *m, sd_bus_message *msg, uid_t uid, bool persistent,
                                  const char *description, Context **ret, sd_bus_error *error) {
        Context *c;
        int r;

        r = context_new(m, sd_bus_message_get_sender(msg), uid, persistent, description, &c, error);
        if (r < 0)
                return r;
        r = manager_add_context(m, c);
        if (r < 0) {
                c->released = true;
                context_unref_busy(c);
                return r;
        }
        log_info("Created %s for %s (uid %u)%s%s%s.", c->path, c->owner, (unsigned) uid,
                 persistent ? ", persistent" : "", *c->description ? ": " : "", c->description);
        (void) sd_bus_emit_object_added(m->bus, c->path);
        *ret = c;
        return 0;
}

static int method_create_context(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *description = NULL;
        bool persistent = false;
        Context *c;
        uid_t uid;
        int r;

        const OptionSpec specs[] = {
                { "Persistent", 'b', &persistent },
                { "Description", 's', &description },
        };
        r = bus_read_options(msg, specs, ELEMENTSOF(specs), error);
        if (r < 0)
                return r;
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

        r = manager_create_context(m, msg, uid, persistent, description, &c, error);
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
        r = manager_find_device(m, address, &target, error);
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
                r = manager_create_context(m, msg, uid, false, description, &c, error);
        if (r < 0) {
                reset_check_done(&check);
                return r;
        }

        /* Take the whole scope, then reset through the target's file. */
        for (size_t i = 0; r >= 0 && i < check.n_entries; i++) {
                char addr[PCI_ADDRESS_STRING_MAX];
                uint32_t devid;
                r = context_attach(c, pci_address_format(&check.entries[i].device->info.address, addr), true, &devid,
                                   error);
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
        for (size_t i = 0; i < topology_size(m->topology); i++) {
                PciDevice *d = topology_at(m->topology, i);
                char addr[PCI_ADDRESS_STRING_MAX], path[DEVICE_PATH_MAX];
                r = sd_bus_message_append(reply, "(ssso)", pci_address_format(&d->info.address, addr),
                                          strempty(d->info.driver),
                                          reset_scope_to_string(topology_reset_scope(m->topology, d)),
                                          device_object_path(&d->info.address, path));
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_get_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *address;
        PciDevice *d;
        char path[DEVICE_PATH_MAX];
        int r;

        r = sd_bus_message_read(msg, "s", &address);
        if (r < 0)
                return r;
        r = manager_find_device(m, address, &d, error);
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

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Backend", "s", property_get_backend, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Emulated", "b", property_get_emulated, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("DeviceCount", "u", property_get_device_count, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Limits", "a{su}", property_get_limits, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("UnleasedHotReset", "b", property_get_unleased_hot_reset, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
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
        SD_BUS_METHOD_WITH_ARGS("CreateContext",
                                SD_BUS_ARGS("a{sv}", options),
                                SD_BUS_RESULT("o", context),
                                method_create_context,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("HotReset",
                                SD_BUS_ARGS("s", address, "a{sv}", options),
                                SD_BUS_RESULT("as", affected),
                                method_hot_reset,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Reload",
                                SD_BUS_NO_ARGS,
                                SD_BUS_NO_RESULT,
                                access_method_reload,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("HotResetDone",
                                SD_BUS_ARGS("s", address, "as", affected, "t", duration_usec, "s", result),
                                0),
        SD_BUS_VTABLE_END,
};

int manager_new(sd_event *e, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = calloc(1, sizeof(Manager));
        int r;

        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(e);
        m->topology = topology_new(device_object_free);
        if (!m->topology)
                return -ENOMEM;

        r = sd_event_add_defer(e, &m->publish_source, publish_all, m);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(m->publish_source, SD_EVENT_OFF);
        if (r < 0)
                return r;
        /* After the backend's own sources, so a whole batch lands first. */
        (void) sd_event_source_set_priority(m->publish_source, SD_EVENT_PRIORITY_IDLE);

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        m->publish_source = sd_event_source_disable_unref(m->publish_source);
        /* Resets in flight finish first; then every lease goes. */
        reset_jobs_free(m);
        while (m->n_contexts > 0)
                context_release(m->contexts[m->n_contexts - 1], "the daemon is stopping");
        free(m->contexts);
        /* Pending polkit checks hold callers' messages of the bus. */
        access_done(m);
        /* The bus first: nothing may call into the objects while they go. */
        sd_bus_flush_close_unref(m->bus);
        backend_free(m->backend);
        topology_free(m->topology);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

int manager_connect_bus(Manager *m) {
        int r;

        /* What the backend delivered so far is the initial state, not a
         * change: settle it before anyone can listen. */
        (void) publish_all(m->publish_source, m);
        (void) sd_event_source_set_enabled(m->publish_source, SD_EVENT_OFF);

        r = sd_bus_open_system(&m->bus);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the system bus: %m");
        r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Failed to attach the bus to the event loop: %m");

        r = sd_bus_add_object_vtable(m->bus, NULL, BROKER_PATH, MANAGER_INTERFACE, manager_vtable, m);
        if (r < 0)
                return log_error_errno(r, "Failed to register the manager object: %m");
        r = sd_bus_add_object_manager(m->bus, NULL, BROKER_PATH);
        if (r < 0)
                return log_error_errno(r, "Failed to register the object manager: %m");
        r = device_register_bus(m);
        if (r < 0)
                return r;
        r = context_register_bus(m);
        if (r < 0)
                return r;

        /* Objects first, name last: whoever sees the name finds the objects. */
        r = sd_bus_request_name(m->bus, BROKER_BUS_NAME, 0);
        if (r < 0)
                return log_error_errno(r, "Failed to acquire the bus name %s: %m", BROKER_BUS_NAME);

        m->published_device_count = (uint32_t) topology_size(m->topology);
        return 0;
}

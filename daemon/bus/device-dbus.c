/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.hotresetd.Broker1.Device: one object per PCI function, served through
 * a fallback vtable (no registration per device), with change signals
 * computed by comparing against what was last published. */
#include <errno.h>
#include <stdio.h>

#include "access.h"
#include "bus-util.h"
#include "log.h"
#include "manager.h"
#include "util.h"

/* What a device last told the bus, to signal exactly what changed. */
typedef struct DeviceObject {
        Manager *manager;
        bool announced; /* InterfacesAdded sent */
        bool published;
        char *driver;
        int iommu_group;
        char *cdev_path;
        char **reset_methods;
        ResetScope scope;
        char **affected;
        bool possible;
        char *context;
} DeviceObject;

static void device_object_clear_snapshot(DeviceObject *o) {
        free(o->driver);
        free(o->cdev_path);
        strv_free(o->reset_methods);
        strv_free(o->affected);
        free(o->context);
        o->context = NULL;
        o->driver = o->cdev_path = NULL;
        o->reset_methods = o->affected = NULL;
}

void device_object_free(void *userdata) {
        DeviceObject *o = userdata;
        if (!o)
                return;
        device_object_clear_snapshot(o);
        free(o);
}

int device_object_new(Manager *m, PciDevice *d) {
        if (d->userdata)
                return 0;
        DeviceObject *o = calloc(1, sizeof(DeviceObject));
        if (!o)
                return -ENOMEM;
        o->manager = m;
        d->userdata = o;
        return 0;
}

char *device_object_path(const PciAddress *a, char buf[static DEVICE_PATH_MAX]) {
        snprintf(buf, DEVICE_PATH_MAX, DEVICE_PATH_PREFIX "/pci_%04x_%02x_%02x_%x", a->domain, a->bus, a->slot & 0x1fu,
                 a->function & 7u);
        return buf;
}

/* Only the canonical form maps to an object, so one device has one path. */
static int device_path_parse(const char *path, PciAddress *ret) {
        unsigned domain, bus, slot, function;
        int n = 0;

        if (sscanf(path, DEVICE_PATH_PREFIX "/pci_%4x_%2x_%2x_%1x%n", &domain, &bus, &slot, &function, &n) != 4 ||
            path[n] != 0 || slot > 0x1f || function > 7)
                return -EINVAL;

        PciAddress a = { .domain = (uint16_t) domain, .bus = (uint8_t) bus, .slot = (uint8_t) slot, .function = (uint8_t) function };
        char canonical[DEVICE_PATH_MAX];
        if (!streq(device_object_path(&a, canonical), path))
                return -EINVAL;
        *ret = a;
        return 0;
}

int manager_find_device(Manager *m, const char *address, PciDevice **ret, sd_bus_error *error) {
        PciAddress a;
        char buf[PCI_ADDRESS_STRING_MAX];
        int r;

        r = bus_parse_address(address, &a, error);
        if (r < 0)
                return r;
        PciDevice *d = topology_get(m->topology, &a);
        if (!d)
                return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_DEVICE,
                                         "No PCI device %s on this machine (ListDevices shows the devices there are).",
                                         pci_address_format(&a, buf));
        *ret = d;
        return 0;
}

static int affected_strv(Manager *m, const PciDevice *d, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        PciDevice **affected = NULL;
        size_t n = 0;
        int r;

        r = topology_affected(m->topology, d, &affected, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                char buf[PCI_ADDRESS_STRING_MAX];
                r = strv_extend(&l, pci_address_format(&affected[i]->info.address, buf));
                if (r < 0) {
                        free(affected);
                        return r;
                }
        }
        free(affected);
        if (!l) {
                l = calloc(1, sizeof(char *));
                if (!l)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

static const char *holder_path(Manager *m, const PciDevice *d) {
        Context *c = manager_holder_of(m, d);
        return c ? c->path : "/";
}

static int hot_reset_possible(Manager *m, const PciDevice *d, bool *ret) {
        ResetCheck c;
        int r = access_reset_check(m, d, &c);
        if (r < 0)
                return r;
        *ret = c.possible;
        reset_check_done(&c);
        return 0;
}

/* Why an affected device blocks, in words a person can act on. */
static char *block_reason_text(Manager *m, const PciDevice *target, const ResetCheckEntry *e) {
        char addr[PCI_ADDRESS_STRING_MAX];
        const PciAddress *a = &e->device->info.address;
        char *s = NULL;
        int r = 0;

        pci_address_format(a, addr);

        switch (e->reason) {
        case BLOCK_NONE:
                return strdup("");
        case BLOCK_NO_RESET_MECHANISM:
                r = asprintf(&s, "no reset mechanism: %s is on root bus %04x:%02x, which no bridge can reset", addr,
                             a->domain, a->bus);
                break;
        case BLOCK_BRIDGE_IN_SCOPE:
                r = asprintf(&s, "bridge in reset scope: %s is a bridge, and bridges cannot be bound to vfio-pci", addr);
                break;
        case BLOCK_NO_DRIVER:
                r = asprintf(&s, "not bound to a vfio driver: no driver (bind %s to vfio-pci)", addr);
                break;
        case BLOCK_NOT_VFIO:
                r = asprintf(&s, "not bound to a vfio driver: bound to %s (rebind %s to vfio-pci)",
                             e->device->info.driver, addr);
                break;
        case BLOCK_NO_IOMMU_GROUP:
                r = asprintf(&s, "no IOMMU group: %s is on %s but in no IOMMU group, so no context can own it "
                             "(enable the IOMMU: intel_iommu=on / amd_iommu=on)",
                             addr, e->device->info.driver);
                break;
        case BLOCK_HELD_ELSEWHERE: {
                _cleanup_free_ char *who = context_describe((Context *) e->holder);
                r = asprintf(&s, "held by %s", strempty(who));
                break;
        }
        case BLOCK_POLICY: {
                _cleanup_free_ char *why = NULL;
                r = access_device_excluded(m, e->device, &why);
                if (r >= 0)
                        r = asprintf(&s, "%s", why ?: "excluded by policy");
                break;
        }
        }
        return r < 0 ? NULL : s;
}

static int method_check_hot_reset(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        PciDevice *d = userdata;
        DeviceObject *o = d->userdata;
        Manager *m = o->manager;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        ResetCheck c;
        int r;

        r = access_reset_check(m, d, &c);
        if (r < 0)
                return r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                goto finish;
        r = sd_bus_message_append(reply, "b", c.possible);
        if (r < 0)
                goto finish;
        r = sd_bus_message_open_container(reply, 'a', "(ssiss)");
        if (r < 0)
                goto finish;
        for (size_t i = 0; i < c.n_entries; i++) {
                const ResetCheckEntry *e = &c.entries[i];
                char addr[PCI_ADDRESS_STRING_MAX];
                _cleanup_free_ char *reason = block_reason_text(m, d, e);
                if (!reason) {
                        r = -ENOMEM;
                        goto finish;
                }
                r = sd_bus_message_append(reply, "(ssiss)", pci_address_format(&e->device->info.address, addr),
                                          strempty(e->device->info.driver), e->device->info.iommu_group,
                                          e->holder ? ((Context *) e->holder)->path : "", reason);
                if (r < 0)
                        goto finish;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                goto finish;
        r = sd_bus_send(NULL, reply, NULL);
finish:
        reset_check_done(&c);
        return r;
}

static int property_get_address(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        PciDevice *d = userdata;
        char buf[PCI_ADDRESS_STRING_MAX];
        return sd_bus_message_append(reply, "s", pci_address_format(&d->info.address, buf));
}

/* sd-bus reads a "b" field as int, so a C bool needs its own getter. */
static int property_get_is_bridge(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        PciDevice *d = userdata;
        return sd_bus_message_append(reply, "b", d->info.is_bridge);
}

static int property_get_driver(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        PciDevice *d = userdata;
        return sd_bus_message_append(reply, "s", strempty(d->info.driver));
}

static int property_get_cdev_path(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        PciDevice *d = userdata;
        return sd_bus_message_append(reply, "s", strempty(d->info.cdev_path));
}

static int property_get_reset_methods(sd_bus *bus, const char *path, const char *interface, const char *property,
                                      sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        PciDevice *d = userdata;
        return sd_bus_message_append_strv(reply, d->info.reset_methods);
}

static int property_get_reset_scope(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        PciDevice *d = userdata;
        DeviceObject *o = d->userdata;
        return sd_bus_message_append(reply, "s", reset_scope_to_string(topology_reset_scope(o->manager->topology, d)));
}

static int property_get_affected(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        PciDevice *d = userdata;
        DeviceObject *o = d->userdata;
        _cleanup_strv_free_ char **l = NULL;
        int r = affected_strv(o->manager, d, &l);
        if (r < 0)
                return r;
        return sd_bus_message_append_strv(reply, l);
}

static int property_get_context(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        PciDevice *d = userdata;
        DeviceObject *o = d->userdata;
        return sd_bus_message_append(reply, "o", holder_path(o->manager, d));
}

static int property_get_hot_reset_possible(sd_bus *bus, const char *path, const char *interface, const char *property,
                                           sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        PciDevice *d = userdata;
        DeviceObject *o = d->userdata;
        bool possible;
        int r = hot_reset_possible(o->manager, d, &possible);
        if (r < 0)
                return r;
        return sd_bus_message_append(reply, "b", possible);
}

static const sd_bus_vtable device_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Address", "s", property_get_address, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("VendorId", "q", NULL, offsetof(PciDevice, info.vendor_id), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("DeviceId", "q", NULL, offsetof(PciDevice, info.device_id), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Class", "u", NULL, offsetof(PciDevice, info.class_code), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("IsBridge", "b", property_get_is_bridge, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Driver", "s", property_get_driver, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("IommuGroup", "i", NULL, offsetof(PciDevice, info.iommu_group),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("CdevPath", "s", property_get_cdev_path, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ResetMethods", "as", property_get_reset_methods, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ResetScope", "s", property_get_reset_scope, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Affected", "as", property_get_affected, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Context", "o", property_get_context, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("HotResetPossible", "b", property_get_hot_reset_possible, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("CheckHotReset",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("b", possible, "a(ssiss)", devices),
                                method_check_hot_reset,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

static int device_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                              sd_bus_error *error) {
        Manager *m = userdata;
        PciAddress a;

        if (device_path_parse(path, &a) < 0)
                return 0;
        PciDevice *d = topology_get(m->topology, &a);
        if (!d || !d->userdata)
                return 0;
        *found = d;
        return 1;
}

static int device_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        Manager *m = userdata;
        size_t n = topology_size(m->topology);
        char **l = calloc(n + 1, sizeof(char *));

        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char buf[DEVICE_PATH_MAX];
                l[i] = strdup(device_object_path(&topology_at(m->topology, i)->info.address, buf));
                if (!l[i]) {
                        strv_free(l);
                        return -ENOMEM;
                }
        }
        *nodes = l;
        return 1;
}

int device_register_bus(Manager *m) {
        int r;

        r = sd_bus_add_fallback_vtable(m->bus, NULL, DEVICE_PATH_PREFIX, DEVICE_INTERFACE, device_vtable,
                                       device_object_find, m);
        if (r < 0)
                return log_error_errno(r, "Failed to register the device objects: %m");
        r = sd_bus_add_node_enumerator(m->bus, NULL, DEVICE_PATH_PREFIX, device_node_enumerator, m);
        if (r < 0)
                return log_error_errno(r, "Failed to register the device enumerator: %m");
        return 0;
}

void device_object_announce(Manager *m, PciDevice *d) {
        DeviceObject *o = d->userdata;
        char path[DEVICE_PATH_MAX];
        int r;

        if (!o || o->announced)
                return;
        o->announced = true;
        if (!m->bus)
                return;
        r = sd_bus_emit_object_added(m->bus, device_object_path(&d->info.address, path));
        if (r < 0)
                log_warning_errno(r, "Failed to announce %s: %m", path);
}

void device_object_retract(Manager *m, PciDevice *d) {
        DeviceObject *o = d->userdata;
        char path[DEVICE_PATH_MAX];
        int r;

        /* Never announced (added and removed in one batch): nobody knows it. */
        if (!o || !o->announced || !m->bus)
                return;
        r = sd_bus_emit_object_removed(m->bus, device_object_path(&d->info.address, path));
        if (r < 0)
                log_warning_errno(r, "Failed to announce the removal of %s: %m", path);
}

int device_object_publish(Manager *m, PciDevice *d) {
        DeviceObject *o = d->userdata;
        _cleanup_strv_free_ char **affected = NULL, **changed = NULL;
        bool possible;
        int r;

        if (!o)
                return 0;

        /* A new device is announced with its settled state (udev's add,
         * bind and change of one batch land together), not signalled as
         * changes. */
        if (!o->announced) {
                device_object_announce(m, d);
                o->published = false;
        }

        r = affected_strv(m, d, &affected);
        if (r < 0)
                return r;
        r = hot_reset_possible(m, d, &possible);
        if (r < 0)
                return r;
        ResetScope scope = topology_reset_scope(m->topology, d);
        const char *context = holder_path(m, d);

        if (o->published) {
#define CHANGED(cond, name)                                    \
        do {                                                   \
                if ((cond) && (r = strv_extend(&changed, name)) < 0) \
                        return r;                              \
        } while (0)
                CHANGED(!streq_ptr(o->driver, d->info.driver), "Driver");
                CHANGED(o->iommu_group != d->info.iommu_group, "IommuGroup");
                CHANGED(!streq_ptr(o->cdev_path, d->info.cdev_path), "CdevPath");
                CHANGED(!strv_equal(o->reset_methods, d->info.reset_methods), "ResetMethods");
                CHANGED(o->scope != scope, "ResetScope");
                CHANGED(!strv_equal(o->affected, affected), "Affected");
                CHANGED(o->possible != possible, "HotResetPossible");
                CHANGED(!streq_ptr(o->context, context), "Context");
#undef CHANGED
        }

        /* Take the new snapshot before emitting, so a failure to emit does
         * not make the next batch signal the same change twice. */
        device_object_clear_snapshot(o);
        if ((d->info.driver && !(o->driver = strdup(d->info.driver))) ||
            (d->info.cdev_path && !(o->cdev_path = strdup(d->info.cdev_path))) ||
            (d->info.reset_methods && !(o->reset_methods = strv_copy(d->info.reset_methods))) ||
            !(o->context = strdup(context))) {
                o->published = false;
                return -ENOMEM;
        }
        o->iommu_group = d->info.iommu_group;
        o->scope = scope;
        o->affected = TAKE_PTR(affected);
        o->possible = possible;
        o->published = true;

        if (changed && m->bus) {
                char path[DEVICE_PATH_MAX];
                r = sd_bus_emit_properties_changed_strv(m->bus, device_object_path(&d->info.address, path),
                                                        DEVICE_INTERFACE, changed);
                if (r < 0)
                        log_warning_errno(r, "Failed to signal changes of %s: %m", path);
        }
        return 0;
}

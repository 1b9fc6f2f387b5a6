/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.hotresetd.Broker1.Device: one object per PCI function, served through
 * a fallback vtable (no registration per device). The reset answers come
 * from the device's reset domain (core/reset-domain.h); change signals are
 * computed by comparing with a small snapshot of what was last published. */
#include <errno.h>
#include <stdio.h>

#include "access.h"
#include "bus-util.h"
#include "device-dbus.h"
#include "domain-dbus.h"
#include "log.h"
#include "util.h"

/* What a device last told the bus, to signal exactly what changed. One per
 * device, so small: the strings are kept as 64-bit hashes, not copies. */
typedef struct DeviceObject {
        Manager *manager;
        bool announced; /* InterfacesAdded sent */
        bool possible;
        uint8_t scope;  /* ResetScope */
        int iommu_group;
        uint32_t domain_key; /* DOMAIN_NONE: no hot reset */
        uint64_t driver_hash, cdev_path_hash, reset_methods_hash;
        uint64_t domain_generation;
        uint64_t holder_id; /* 0: nobody */
} DeviceObject;

#define DOMAIN_NONE UINT32_MAX

static void device_object_free(DeviceObject *o) {
        free(o);
}

/* FNV-1a; NULL and "" hash differently. */
static uint64_t hash_string(uint64_t h, const char *s) {
        if (!s)
                return h ^ UINT64_C(0x9e3779b97f4a7c15);
        for (; *s; s++)
                h = (h ^ (uint8_t) *s) * UINT64_C(0x100000001b3);
        return (h ^ 0xff) * UINT64_C(0x100000001b3); /* the end of the string */
}

#define HASH_SEED UINT64_C(0xcbf29ce484222325)

static uint64_t hash_strv(char **l) {
        uint64_t h = HASH_SEED;
        for (size_t i = 0; l && l[i]; i++)
                h = hash_string(h, l[i]);
        return l ? h : 0;
}

char *device_object_path(const PciAddress *a, char buf[static DEVICE_PATH_MAX]) {
        char *p = stpcpy(buf, DEVICE_PATH_PREFIX "/pci_");
        p = pci_hex(p, a->domain, 4);
        *p++ = '_';
        p = pci_hex(p, a->bus, 2);
        *p++ = '_';
        p = pci_hex(p, a->slot & 0x1fu, 2);
        *p++ = '_';
        p = pci_hex(p, a->function & 7u, 1);
        *p = 0;
        return buf;
}

/* n lower-case hex digits (the canonical form only), advancing *p. */
static int read_lower_hex(const char **p, unsigned n, unsigned *ret) {
        unsigned v = 0;
        for (unsigned i = 0; i < n; i++) {
                char c = (*p)[i];
                if (c >= '0' && c <= '9')
                        v = v << 4 | (unsigned) (c - '0');
                else if (c >= 'a' && c <= 'f')
                        v = v << 4 | (unsigned) (c - 'a' + 10);
                else
                        return -EINVAL;
        }
        *p += n;
        *ret = v;
        return 0;
}

/* Only the canonical form maps to an object, so one device has one path.
 * Every call on a device object starts here: no sscanf(). */
static int device_path_parse(const char *path, PciAddress *ret) {
        static const char prefix[] = DEVICE_PATH_PREFIX "/pci_";
        unsigned domain, bus, slot, function;
        const char *p = path;

        if (strncmp(p, prefix, sizeof prefix - 1) != 0)
                return -EINVAL;
        p += sizeof prefix - 1;
        if (read_lower_hex(&p, 4, &domain) < 0 || *p++ != '_' || read_lower_hex(&p, 2, &bus) < 0 || *p++ != '_' ||
            read_lower_hex(&p, 2, &slot) < 0 || *p++ != '_' || read_lower_hex(&p, 1, &function) < 0 || *p != 0 ||
            slot > 0x1f || function > 7)
                return -EINVAL;
        *ret = (PciAddress) { .domain = (uint16_t) domain, .bus = (uint8_t) bus, .slot = (uint8_t) slot, .function = (uint8_t) function };
        return 0;
}

static Manager *manager_of(PciDevice *d) {
        return ((DeviceObject *) d->userdata)->manager;
}

const char *device_block_reason_text(Manager *m, const PciDevice *d, BlockReason reason, const void *holder,
                                     char **allocated) {
        const PciAddress *a = &d->info.address;
        int r = 0;

        *allocated = NULL;
        switch (reason) {
        case BLOCK_NONE:
                return "";
        case BLOCK_NO_RESET_MECHANISM:
                r = asprintf(allocated, "no reset mechanism: %s is on root bus %04x:%02x, which no bridge can reset",
                             d->address, a->domain, a->bus);
                break;
        case BLOCK_BRIDGE_IN_SCOPE:
                r = asprintf(allocated,
                             "bridge in reset scope: %s is a bridge, and bridges cannot be bound to vfio-pci",
                             d->address);
                break;
        case BLOCK_NO_DRIVER:
                r = asprintf(allocated, "not bound to a vfio driver: no driver (bind %s to vfio-pci)", d->address);
                break;
        case BLOCK_NOT_VFIO:
                r = asprintf(allocated, "not bound to a vfio driver: bound to %s (rebind %s to vfio-pci)",
                             d->info.driver, d->address);
                break;
        case BLOCK_NO_IOMMU_GROUP:
                r = asprintf(allocated,
                             "no IOMMU group: %s is on %s but in no IOMMU group, so no context can own it "
                             "(enable the IOMMU: intel_iommu=on / amd_iommu=on)",
                             d->address, d->info.driver);
                break;
        case BLOCK_HELD_ELSEWHERE: {
                _cleanup_free_ char *who = context_describe((Context *) holder);
                r = asprintf(allocated, "held by %s", strempty(who));
                break;
        }
        case BLOCK_POLICY: {
                _cleanup_free_ char *why = NULL;
                r = access_device_excluded(m, d, &why);
                if (r >= 0)
                        r = asprintf(allocated, "%s", why ?: "excluded by policy");
                break;
        }
        }
        if (r < 0) {
                *allocated = NULL;
                return NULL;
        }
        return *allocated;
}

static int method_check_hot_reset(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        PciDevice *d = userdata;
        Manager *m = manager_of(d);
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
                _cleanup_free_ char *allocated = NULL;
                const char *reason = device_block_reason_text(m, e->device, e->reason, e->holder, &allocated);
                if (!reason) {
                        r = -ENOMEM;
                        goto finish;
                }
                /* Field by field: the format string's parse per entry was
                 * most of the cost of a 256-function scope. */
                int32_t group = e->device->info.iommu_group;
                r = sd_bus_message_open_container(reply, 'r', "ssiss");
                if (r >= 0)
                        r = sd_bus_message_append_basic(reply, 's', e->device->address);
                if (r >= 0)
                        r = sd_bus_message_append_basic(reply, 's', strempty(e->device->info.driver));
                if (r >= 0)
                        r = sd_bus_message_append_basic(reply, 'i', &group);
                if (r >= 0)
                        r = sd_bus_message_append_basic(reply, 's', e->holder ? ((Context *) e->holder)->path : "");
                if (r >= 0)
                        r = sd_bus_message_append_basic(reply, 's', reason);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
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
        return sd_bus_message_append(reply, "s", d->address);
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

/* The reset answers are read from the settled domains. */
static ResetDomain *settled_domain(PciDevice *d) {
        (void) manager_settle(manager_of(d));
        return d->domain;
}

static int property_get_reset_scope(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        ResetDomain *dom = settled_domain(userdata);
        return sd_bus_message_append(reply, "s", reset_scope_to_string(dom ? dom->scope : RESET_SCOPE_NONE));
}

static int property_get_reset_domain(sd_bus *bus, const char *path, const char *interface, const char *property,
                                     sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        ResetDomain *dom = settled_domain(userdata);
        char buf[DOMAIN_PATH_MAX];
        return sd_bus_message_append(reply, "o", dom ? domain_object_path(dom, buf) : "/");
}

static int property_get_affected(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        PciDevice *d = userdata;
        ResetDomain *dom = settled_domain(d);
        if (!dom)
                return sd_bus_message_append(reply, "as", 1, d->address);
        return domain_append_members(reply, dom);
}

static int property_get_context(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        PciDevice *d = userdata;
        Context *c = manager_holder_of(manager_of(d), d);
        return sd_bus_message_append(reply, "o", c ? c->path : "/");
}

static bool device_possible(PciDevice *d) {
        Manager *m = manager_of(d);
        (void) manager_settle(m);
        return reset_domain_possible(d, manager_holder_of(m, d));
}

static int property_get_hot_reset_possible(sd_bus *bus, const char *path, const char *interface, const char *property,
                                           sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "b", device_possible(userdata));
}

/* Affected is the member list of the device's reset domain: up to hundreds
 * of addresses, the same for every device of the domain. It stays out of
 * GetAll and GetManagedObjects (read it with Get, or the domain's Members
 * once for all its devices), so their size grows with the number of
 * functions, not with the sum of the scopes; a change is signalled by
 * invalidation. */
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
        SD_BUS_PROPERTY("ResetDomain", "o", property_get_reset_domain, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Affected", "as", property_get_affected, 0,
                        SD_BUS_VTABLE_PROPERTY_EXPLICIT | SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION),
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
        /* Only what was announced: a device appears with its settled state. */
        if (!d || !d->userdata || !((DeviceObject *) d->userdata)->announced)
                return 0;
        *found = d;
        return 1;
}

static int device_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        Manager *m = userdata;
        size_t n = topology_size(m->topology), k = 0;
        char **l = calloc(n + 1, sizeof(char *));

        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                PciDevice *d = topology_at(m->topology, i);
                char buf[DEVICE_PATH_MAX];
                if (!d->userdata || !((DeviceObject *) d->userdata)->announced)
                        continue;
                l[k] = strdup(device_object_path(&d->info.address, buf));
                if (!l[k++]) {
                        strv_free(l);
                        return -ENOMEM;
                }
        }
        *nodes = l;
        return 1;
}

int device_register_bus(Manager *m) {
        return bus_add_object_tree(m->bus, DEVICE_PATH_PREFIX, DEVICE_INTERFACE, device_vtable, device_object_find,
                                   device_node_enumerator, m, "device");
}

void device_object_removed(Manager *m, PciDevice *d) {
        DeviceObject *o = d->userdata;
        char path[DEVICE_PATH_MAX];

        if (!o)
                return;
        /* Never announced (added and removed in one batch): nobody knows it. */
        if (o->announced && m->bus) {
                int r = sd_bus_emit_object_removed(m->bus, device_object_path(&d->info.address, path));
                if (r < 0)
                        log_warning_errno(r, "Failed to announce the removal of %s: %m", path);
        }
        device_object_free(o);
        d->userdata = NULL;
}

void device_objects_free(Manager *m) {
        size_t n = topology_size(m->topology);
        for (size_t i = 0; i < n; i++) {
                PciDevice *d = topology_at(m->topology, i);
                device_object_free(d->userdata);
                d->userdata = NULL;
        }
}

int device_object_publish(Manager *m, PciDevice *d, bool silent) {
        DeviceObject *o = d->userdata;
        const char *changed[16];
        size_t n = 0;

        if (!o) {
                o = calloc(1, sizeof(DeviceObject));
                if (!o)
                        return -ENOMEM;
                o->manager = m;
                d->userdata = o;
        }

        ResetDomain *dom = d->domain;
        ResetScope scope = dom ? dom->scope : RESET_SCOPE_NONE;
        uint32_t domain_key = dom ? dom->key : DOMAIN_NONE;
        uint64_t generation = dom ? dom->generation : 0;
        Context *holder = manager_holder_of(m, d);
        uint64_t holder_id = holder ? holder->id : 0;
        bool possible = reset_domain_possible(d, holder);
        uint64_t driver_hash = hash_string(HASH_SEED, d->info.driver);
        uint64_t cdev_path_hash = hash_string(HASH_SEED, d->info.cdev_path);
        uint64_t reset_methods_hash = hash_strv(d->info.reset_methods);

        if (o->announced) {
#define CHANGED(cond, name)                \
        do {                               \
                if (cond)                  \
                        changed[n++] = name; \
        } while (0)
                CHANGED(o->driver_hash != driver_hash, "Driver");
                CHANGED(o->iommu_group != d->info.iommu_group, "IommuGroup");
                CHANGED(o->cdev_path_hash != cdev_path_hash, "CdevPath");
                CHANGED(o->reset_methods_hash != reset_methods_hash, "ResetMethods");
                CHANGED(o->scope != scope, "ResetScope");
                CHANGED(o->domain_key != domain_key, "ResetDomain");
                CHANGED(o->domain_key != domain_key || o->domain_generation != generation, "Affected");
                CHANGED(o->possible != possible, "HotResetPossible");
                CHANGED(o->holder_id != holder_id, "Context");
#undef CHANGED
        }

        /* Take the new snapshot before emitting, so a failure to emit does
         * not make the next pass signal the same change twice. */
        o->driver_hash = driver_hash;
        o->cdev_path_hash = cdev_path_hash;
        o->reset_methods_hash = reset_methods_hash;
        o->iommu_group = d->info.iommu_group;
        o->scope = (uint8_t) scope;
        o->domain_key = domain_key;
        o->domain_generation = generation;
        o->possible = possible;
        o->holder_id = holder_id;

        /* A new device is announced with its settled state (udev's add,
         * bind and change of one batch land together). */
        char path[DEVICE_PATH_MAX];
        return bus_publish_object(m->bus, device_object_path(&d->info.address, path), DEVICE_INTERFACE, &o->announced,
                                  changed, n, silent);
}

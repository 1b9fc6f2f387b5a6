/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>

#include "intmap.h"
#include "topology.h"
#include "util.h"

struct Topology {
        PciDevice **devices; /* sorted by address */
        size_t n_devices, n_allocated;
        void (*free_userdata)(void *userdata);

        /* Bridges sorted by (domain, secondary bus); rebuilt on demand
         * after the table changed. */
        PciDevice **bridges;
        size_t n_bridges;
        bool bridges_dirty;

        IntMap groups; /* group number -> the first PciDevice of the group (linked by group_next) */
};

const char *reset_scope_to_string(ResetScope s) {
        switch (s) {
        case RESET_SCOPE_SLOT:
                return "slot";
        case RESET_SCOPE_BUS:
                return "bus";
        case RESET_SCOPE_NONE:
        default:
                return "none";
        }
}

Topology *topology_new(void (*free_userdata)(void *userdata)) {
        Topology *t = calloc(1, sizeof(Topology));
        if (!t)
                return NULL;
        t->free_userdata = free_userdata;
        return t;
}

static void device_free(Topology *t, PciDevice *d) {
        if (!d)
                return;
        if (d->userdata && t->free_userdata)
                t->free_userdata(d->userdata);
        free(d->info_strings);
        free(d);
}

/* A copy of info whose strings (driver, cdev path, reset methods) all live
 * in one allocation, *ret_block: a table of tens of thousands of devices
 * pays one allocation per device for them, not five. */
static int info_pack(const PciDeviceInfo *src, PciDeviceInfo *dst, char **ret_block) {
        size_t n_methods = strv_length(src->reset_methods);
        size_t size = (src->reset_methods ? (n_methods + 1) * sizeof(char *) : 0) +
                      (src->driver ? strlen(src->driver) + 1 : 0) + (src->cdev_path ? strlen(src->cdev_path) + 1 : 0);
        for (size_t i = 0; i < n_methods; i++)
                size += strlen(src->reset_methods[i]) + 1;

        char *block = size ? malloc(size) : NULL;
        if (size && !block)
                return -ENOMEM;

        PciDeviceInfo c = *src;
        char *p = block;
        if (src->reset_methods) {
                /* The pointer table first: it needs the block's alignment. */
                c.reset_methods = (char **) (void *) p;
                p += (n_methods + 1) * sizeof(char *);
                for (size_t i = 0; i < n_methods; i++) {
                        c.reset_methods[i] = p;
                        p = stpcpy(p, src->reset_methods[i]) + 1;
                }
                c.reset_methods[n_methods] = NULL;
        }
        if (src->driver) {
                c.driver = p;
                p = stpcpy(p, src->driver) + 1;
        }
        if (src->cdev_path) {
                c.cdev_path = p;
                p = stpcpy(p, src->cdev_path) + 1;
        }
        *dst = c;
        *ret_block = block;
        return 0;
}

/* The devices of a group are a list through the devices themselves: no
 * allocation per device, and a group of one (every SR-IOV VF) costs one
 * map entry. */
static int group_add(Topology *t, PciDevice *d) {
        int group = d->info.iommu_group;
        if (group < 0)
                return 0;
        PciDevice *first = intmap_get(&t->groups, (uint64_t) group);
        d->group_next = first;
        if (intmap_put(&t->groups, (uint64_t) group, d) < 0) {
                d->group_next = NULL;
                return -ENOMEM;
        }
        return 0;
}

static void group_remove(Topology *t, PciDevice *d, int group) {
        PciDevice *first = group >= 0 ? intmap_get(&t->groups, (uint64_t) group) : NULL;
        if (first == d) {
                if (d->group_next)
                        (void) intmap_put(&t->groups, (uint64_t) group, d->group_next); /* replaces: no allocation */
                else
                        intmap_remove(&t->groups, (uint64_t) group);
        } else
                for (PciDevice *x = first; x; x = x->group_next)
                        if (x->group_next == d) {
                                x->group_next = d->group_next;
                                break;
                        }
        d->group_next = NULL;
}

PciDevice *topology_group_first(Topology *t, int group) {
        return group >= 0 ? intmap_get(&t->groups, (uint64_t) group) : NULL;
}

Topology *topology_free(Topology *t) {
        if (!t)
                return NULL;
        intmap_done(&t->groups);
        for (size_t i = 0; i < t->n_devices; i++)
                device_free(t, t->devices[i]);
        free(t->devices);
        free(t->bridges);
        free(t);
        return NULL;
}

/* Index of the first device whose key is >= key. */
static size_t lower_bound(const Topology *t, uint32_t key) {
        size_t lo = 0, hi = t->n_devices;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (pci_address_key(&t->devices[mid]->info.address) < key)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

PciDevice *topology_get(Topology *t, const PciAddress *a) {
        uint32_t key = pci_address_key(a);
        size_t i = lower_bound(t, key);
        if (i < t->n_devices && pci_address_key(&t->devices[i]->info.address) == key)
                return t->devices[i];
        return NULL;
}

size_t topology_size(const Topology *t) {
        return t->n_devices;
}

PciDevice *topology_at(Topology *t, size_t i) {
        return i < t->n_devices ? t->devices[i] : NULL;
}

size_t topology_bus_size(Topology *t, uint16_t domain, uint8_t bus) {
        /* The table is in key order, and a bus's keys are a run of 256. */
        uint32_t first = (uint32_t) domain << 16 | (uint32_t) bus << 8;
        size_t lo = lower_bound(t, first);
        size_t hi = first > UINT32_MAX - 256 ? t->n_devices : lower_bound(t, first + 256);
        return hi - lo;
}

int topology_put(Topology *t, const PciDeviceInfo *info, PciDevice **ret) {
        PciDeviceInfo copy;
        _cleanup_free_ char *block = NULL;
        uint32_t key = pci_address_key(&info->address);
        size_t i = lower_bound(t, key);
        int r;

        r = info_pack(info, &copy, &block);
        if (r < 0)
                return r;

        if (i < t->n_devices && pci_address_key(&t->devices[i]->info.address) == key) {
                PciDevice *d = t->devices[i];
                /* A rebind is the common change; only bridge changes move
                 * the bridge index. */
                if (d->info.is_bridge != copy.is_bridge || d->info.secondary_bus != copy.secondary_bus)
                        t->bridges_dirty = true;
                int old_group = d->info.iommu_group;
                if (old_group != copy.iommu_group) {
                        group_remove(t, d, old_group);
                        /* Before the swap: on failure d keeps its old info. */
                        d->info.iommu_group = copy.iommu_group;
                        r = group_add(t, d);
                        if (r < 0) {
                                d->info.iommu_group = old_group;
                                (void) group_add(t, d);
                                return r;
                        }
                }
                free(d->info_strings);
                d->info_strings = TAKE_PTR(block);
                d->info = copy;
                if (ret)
                        *ret = d;
                return 0;
        }

        if (t->n_devices == t->n_allocated) {
                size_t n = t->n_allocated ? t->n_allocated * 2 : 64;
                PciDevice **nd = realloc(t->devices, n * sizeof(PciDevice *));
                if (!nd)
                        return -ENOMEM;
                t->devices = nd;
                t->n_allocated = n;
        }

        PciDevice *d = calloc(1, sizeof(PciDevice));
        if (!d)
                return -ENOMEM;
        d->info = copy;
        pci_address_format(&d->info.address, d->address);
        d->excluded = -1;
        r = group_add(t, d);
        if (r < 0) {
                free(d);
                return r;
        }
        d->info_strings = TAKE_PTR(block);

        /* Machines are mostly enumerated in address order, so this is
         * usually an append. */
        memmove(t->devices + i + 1, t->devices + i, (t->n_devices - i) * sizeof(PciDevice *));
        t->devices[i] = d;
        t->n_devices++;
        if (d->info.is_bridge)
                t->bridges_dirty = true;
        if (ret)
                *ret = d;
        return 1;
}

int topology_remove(Topology *t, const PciAddress *a) {
        uint32_t key = pci_address_key(a);
        size_t i = lower_bound(t, key);

        if (i >= t->n_devices || pci_address_key(&t->devices[i]->info.address) != key)
                return -ENOENT;

        PciDevice *d = t->devices[i];
        if (d->info.is_bridge)
                t->bridges_dirty = true;
        group_remove(t, d, d->info.iommu_group);
        device_free(t, d);
        memmove(t->devices + i, t->devices + i + 1, (t->n_devices - i - 1) * sizeof(PciDevice *));
        t->n_devices--;
        return 0;
}

static uint32_t bridge_key(const PciDevice *b) {
        return (uint32_t) b->info.address.domain << 8 | b->info.secondary_bus;
}

/* Ties (two bridges claiming one bus: a broken machine) are broken by
 * address, so the answer does not depend on the sort implementation. */
static int bridge_compare(const void *a, const void *b) {
        const PciDevice *p = *(PciDevice *const *) a, *q = *(PciDevice *const *) b;
        uint32_t x = bridge_key(p), y = bridge_key(q);
        if (x != y)
                return x < y ? -1 : 1;
        return pci_address_compare(&p->info.address, &q->info.address);
}

static int ensure_bridge_index(Topology *t) {
        if (!t->bridges_dirty && (t->bridges || t->n_devices == 0))
                return 0;

        size_t n = 0;
        for (size_t i = 0; i < t->n_devices; i++)
                n += t->devices[i]->info.is_bridge;

        PciDevice **b = malloc((n ? n : 1) * sizeof(PciDevice *));
        if (!b)
                return -ENOMEM;
        n = 0;
        for (size_t i = 0; i < t->n_devices; i++)
                if (t->devices[i]->info.is_bridge)
                        b[n++] = t->devices[i];
        qsort(b, n, sizeof(PciDevice *), bridge_compare);

        free(t->bridges);
        t->bridges = b;
        t->n_bridges = n;
        t->bridges_dirty = false;
        return 0;
}

PciDevice *topology_parent_bridge(Topology *t, const PciDevice *d) {
        if (ensure_bridge_index(t) < 0)
                return NULL;

        uint32_t key = (uint32_t) d->info.address.domain << 8 | d->info.address.bus;
        size_t lo = 0, hi = t->n_bridges;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (bridge_key(t->bridges[mid]) < key)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        /* Two bridges claiming one secondary bus is a broken machine; the
         * parsers reject it, the model takes the lowest address that is not
         * the device itself. */
        for (; lo < t->n_bridges && bridge_key(t->bridges[lo]) == key; lo++)
                if (t->bridges[lo] != d)
                        return t->bridges[lo];
        return NULL;
}

ResetScope topology_reset_scope(Topology *t, const PciDevice *d) {
        PciDevice *parent = topology_parent_bridge(t, d);
        if (!parent)
                return RESET_SCOPE_NONE;
        return parent->info.slot_reset ? RESET_SCOPE_SLOT : RESET_SCOPE_BUS;
}

typedef struct Collect {
        PciDevice **items;
        size_t n, allocated;
        uint64_t seen_bus[4]; /* buses of this domain already walked */
} Collect;

static int collect_push(Collect *c, PciDevice *d) {
        if (c->n == c->allocated) {
                size_t n = c->allocated ? c->allocated * 2 : 16;
                PciDevice **ni = realloc(c->items, n * sizeof(PciDevice *));
                if (!ni)
                        return -ENOMEM;
                c->items = ni;
                c->allocated = n;
        }
        c->items[c->n++] = d;
        return 0;
}

/* Walks one bus (optionally one slot of it) and, through the bridges found
 * there, every bus below. Each bus is walked once, so a machine whose
 * bridges loop cannot make this recurse forever. */
static int collect_bus(Topology *t, Collect *c, uint16_t domain, uint8_t bus, int slot) {
        if (c->seen_bus[bus / 64] & (UINT64_C(1) << (bus % 64)))
                return 0;
        c->seen_bus[bus / 64] |= UINT64_C(1) << (bus % 64);

        PciAddress first = { .domain = domain, .bus = bus };
        for (size_t i = lower_bound(t, pci_address_key(&first)); i < t->n_devices; i++) {
                PciDevice *d = t->devices[i];
                if (d->info.address.domain != domain || d->info.address.bus != bus)
                        break;
                if (slot >= 0 && d->info.address.slot != slot)
                        continue;
                int r = collect_push(c, d);
                if (r < 0)
                        return r;
                if (d->info.is_bridge) {
                        r = collect_bus(t, c, domain, d->info.secondary_bus, -1);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int device_ptr_compare(const void *a, const void *b) {
        return pci_address_compare(&(*(PciDevice *const *) a)->info.address,
                                   &(*(PciDevice *const *) b)->info.address);
}

int topology_scope_members(Topology *t, uint16_t domain, uint8_t bus, int slot, PciDevice ***ret, size_t *ret_n) {
        Collect c = {};
        int r = collect_bus(t, &c, domain, bus, slot);
        if (r < 0) {
                free(c.items);
                return r;
        }
        /* The walk puts each bridge's subtree right after the bridge.
         * (An empty bus has no items array: qsort() must not see NULL.) */
        if (c.n > 1)
                qsort(c.items, c.n, sizeof(PciDevice *), device_ptr_compare);
        /* Kept for as long as the domain lives: no slack. */
        if (c.n > 0 && c.n < c.allocated) {
                PciDevice **fit = realloc(c.items, c.n * sizeof(PciDevice *));
                if (fit)
                        c.items = fit;
        }
        *ret = c.items;
        *ret_n = c.n;
        return 0;
}

int topology_affected(Topology *t, const PciDevice *d, PciDevice ***ret, size_t *ret_n) {
        switch (topology_reset_scope(t, d)) {
        case RESET_SCOPE_NONE: {
                PciDevice **l = malloc(sizeof(PciDevice *));
                if (!l)
                        return -ENOMEM;
                l[0] = (PciDevice *) d;
                *ret = l;
                *ret_n = 1;
                return 0;
        }
        case RESET_SCOPE_SLOT:
                return topology_scope_members(t, d->info.address.domain, d->info.address.bus, d->info.address.slot,
                                              ret, ret_n);
        case RESET_SCOPE_BUS:
        default:
                return topology_scope_members(t, d->info.address.domain, d->info.address.bus, -1, ret, ret_n);
        }
}

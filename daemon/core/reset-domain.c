/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "intmap.h"
#include "reset-domain.h"

struct ResetDomains {
        Topology *topology;
        ResetDomainHooks hooks;
        IntMap domains; /* key -> ResetDomain */

        ResetDomain **queue; /* marked since the last settle */
        size_t n_queue, allocated_queue;
        bool rebuild; /* the structure changed: recompute every device's domain */
        uint64_t generation; /* the last member list's number, unique over all domains */
        bool settling; /* hooks run inside a settle may read, not settle again */
};

ResetDomains *reset_domains_new(Topology *t, const ResetDomainHooks *hooks) {
        ResetDomains *rd = calloc(1, sizeof(ResetDomains));
        if (!rd)
                return NULL;
        rd->topology = t;
        rd->hooks = *hooks;
        return rd;
}

static void domain_free(ResetDomain *dom) {
        if (!dom)
                return;
        free(dom->members);
        free(dom);
}

ResetDomains *reset_domains_free(ResetDomains *rd) {
        if (!rd)
                return NULL;
        for (size_t i = 0; i < rd->domains.capacity; i++)
                domain_free(rd->domains.values[i]);
        intmap_done(&rd->domains);
        free(rd->queue);
        free(rd);
        return NULL;
}

ResetDomain *reset_domains_get(ResetDomains *rd, uint32_t key) {
        return intmap_get(&rd->domains, key);
}

size_t reset_domains_count(const ResetDomains *rd) {
        return rd->domains.n;
}

ResetDomain *reset_domains_next(ResetDomains *rd, size_t *cursor) {
        for (; *cursor < rd->domains.capacity; (*cursor)++)
                if (rd->domains.values[*cursor])
                        return rd->domains.values[(*cursor)++];
        return NULL;
}

bool reset_domains_dirty(const ResetDomains *rd) {
        return rd->rebuild || rd->n_queue > 0;
}

static void enqueue(ResetDomains *rd, ResetDomain *dom) {
        if (dom->queued)
                return;
        if (rd->n_queue == rd->allocated_queue) {
                size_t n = rd->allocated_queue ? rd->allocated_queue * 2 : 16;
                ResetDomain **q = realloc(rd->queue, n * sizeof(ResetDomain *));
                if (!q) {
                        /* Cannot remember just this one: look at everything. */
                        rd->rebuild = true;
                        return;
                }
                rd->queue = q;
                rd->allocated_queue = n;
        }
        rd->queue[rd->n_queue++] = dom;
        dom->queued = (uint32_t) rd->n_queue;
}

/* The key of d's own hot reset, given its parent bridge. */
static uint32_t own_key(const PciDevice *d, const PciDevice *parent) {
        const PciAddress *a = &d->info.address;
        return reset_domain_key(a->domain, a->bus, parent->info.slot_reset ? a->slot : -1);
}

static ResetDomain *domain_ensure(ResetDomains *rd, const PciDevice *d, PciDevice *parent) {
        uint32_t key = own_key(d, parent);
        ResetDomain *dom = intmap_get(&rd->domains, key);
        if (dom) {
                dom->bridge = parent;
                return dom;
        }
        dom = calloc(1, sizeof(ResetDomain));
        if (!dom)
                return NULL;
        dom->key = key;
        dom->scope = parent->info.slot_reset ? RESET_SCOPE_SLOT : RESET_SCOPE_BUS;
        dom->pci_domain = d->info.address.domain;
        dom->bus = d->info.address.bus;
        dom->slot = parent->info.slot_reset ? (int8_t) d->info.address.slot : -1;
        dom->bridge = parent;
        dom->members_dirty = true;
        if (intmap_put(&rd->domains, key, dom) < 0) {
                free(dom);
                return NULL;
        }
        return dom;
}

/* Calls f for every domain whose reset hits d: d's own, then those of the
 * bridges above it. Looked up through the topology, not through the
 * domains, so it holds while the domains are out of date. */
static void for_each_containing(ResetDomains *rd, PciDevice *d, void (*f)(ResetDomains *, ResetDomain *, PciDevice *)) {
        PciDevice *x = d;
        /* A PCI hierarchy is at most 256 buses deep; a broken machine whose
         * bridges loop must not make this spin. */
        for (unsigned depth = 0; x && depth < 256; depth++) {
                PciDevice *parent = topology_parent_bridge(rd->topology, x);
                if (!parent)
                        return;
                ResetDomain *dom = intmap_get(&rd->domains, own_key(x, parent));
                if (dom)
                        f(rd, dom, d);
                x = parent;
        }
}

static void mark_members(ResetDomains *rd, ResetDomain *dom, PciDevice *d) {
        dom->members_dirty = true;
        enqueue(rd, dom);
}

static void mark_state(ResetDomains *rd, ResetDomain *dom, PciDevice *d) {
        dom->state_dirty = true;
        enqueue(rd, dom);
}

static void drop_member(ResetDomains *rd, ResetDomain *dom, PciDevice *d) {
        for (size_t i = 0; i < dom->n_members; i++)
                if (dom->members[i] == d) {
                        memmove(dom->members + i, dom->members + i + 1, (dom->n_members - i - 1) * sizeof(PciDevice *));
                        dom->n_members--;
                        dom->members_changed = true;
                        break;
                }
        dom->state_dirty = true;
        enqueue(rd, dom);
}

void reset_domains_device_added(ResetDomains *rd, PciDevice *d) {
        if (d->info.is_bridge)
                rd->rebuild = true;
        if (rd->rebuild)
                return; /* the rebuild looks at every device anyway */

        PciDevice *parent = topology_parent_bridge(rd->topology, d);
        if (!parent) {
                d->domain = NULL;
                rd->hooks.device_changed(d, rd->hooks.userdata);
                return;
        }
        ResetDomain *dom = domain_ensure(rd, d, parent);
        if (!dom) {
                rd->rebuild = true;
                return;
        }
        d->domain = dom;
        dom->n_own++;
        for_each_containing(rd, d, mark_members);
}

void reset_domains_device_removing(ResetDomains *rd, PciDevice *d) {
        /* No domain may keep a pointer to d once it is freed. */
        for_each_containing(rd, d, drop_member);
        if (d->domain) {
                d->domain->n_own--;
                enqueue(rd, d->domain);
                d->domain = NULL;
        }
        if (d->info.is_bridge) {
                /* The domains it reset lose their bridge until the rebuild
                 * finds them another or lets them go. */
                for (size_t i = 0; i < rd->domains.capacity; i++) {
                        ResetDomain *dom = rd->domains.values[i];
                        if (dom && dom->bridge == d)
                                dom->bridge = NULL;
                }
                rd->rebuild = true;
        }
}

void reset_domains_device_state_changed(ResetDomains *rd, PciDevice *d) {
        if (rd->rebuild)
                return;
        for_each_containing(rd, d, mark_state);
        /* A device with no hot reset publishes its own state only. */
        if (!d->domain)
                rd->hooks.device_changed(d, rd->hooks.userdata);
}

void reset_domains_invalidate(ResetDomains *rd, bool structure) {
        if (structure) {
                rd->rebuild = true;
                return;
        }
        for (size_t i = 0; i < rd->domains.capacity; i++) {
                ResetDomain *dom = rd->domains.values[i];
                if (dom) {
                        dom->state_dirty = true;
                        enqueue(rd, dom);
                }
        }
}

/* Every device's own domain again, from the topology: after a bridge came,
 * went or changed. */
static int rebuild(ResetDomains *rd) {
        Topology *t = rd->topology;
        size_t n = topology_size(t);

        for (size_t i = 0; i < rd->domains.capacity; i++) {
                ResetDomain *dom = rd->domains.values[i];
                if (dom) {
                        dom->n_own = 0;
                        dom->bridge = NULL;
                        dom->members_dirty = true;
                        enqueue(rd, dom);
                }
        }
        for (size_t i = 0; i < n; i++) {
                PciDevice *d = topology_at(t, i);
                PciDevice *parent = topology_parent_bridge(t, d);
                ResetDomain *dom = NULL;
                if (parent) {
                        dom = domain_ensure(rd, d, parent);
                        if (!dom)
                                return -ENOMEM;
                        dom->n_own++;
                        enqueue(rd, dom);
                }
                if (d->domain != dom || !dom)
                        rd->hooks.device_changed(d, rd->hooks.userdata);
                d->domain = dom;
        }
        rd->rebuild = false;
        return 0;
}

BlockReason reset_domain_static_reason(const PciDevice *x) {
        if (x->info.is_bridge)
                return BLOCK_BRIDGE_IN_SCOPE;
        if (!x->info.driver)
                return BLOCK_NO_DRIVER;
        if (!driver_is_vfio(x->info.driver))
                return BLOCK_NOT_VFIO;
        if (x->info.iommu_group < 0)
                return BLOCK_NO_IOMMU_GROUP;
        return BLOCK_NONE;
}

static int settle_one(ResetDomains *rd, ResetDomain *dom) {
        const ResetDomainHooks *h = &rd->hooks;

        if (dom->n_own == 0) {
                h->domain_removed(dom, h->userdata);
                intmap_remove(&rd->domains, dom->key);
                domain_free(dom);
                return 0;
        }

        if (dom->members_dirty) {
                PciDevice **members = NULL;
                size_t n = 0;
                int r = topology_scope_members(rd->topology, dom->pci_domain, dom->bus, dom->slot, &members, &n);
                if (r < 0)
                        return r;
                bool same = n == dom->n_members && memcmp(members, dom->members, n * sizeof(PciDevice *)) == 0;
                free(dom->members);
                dom->members = members;
                dom->n_members = dom->allocated = n;
                dom->members_changed = dom->members_changed || !same;
                dom->members_dirty = false;
        }
        bool is_new = dom->generation == 0;
        if (dom->members_changed || is_new)
                dom->generation = ++rd->generation;

        size_t blocked = 0;
        const void *holder = NULL;
        bool several = false;
        for (size_t i = 0; i < dom->n_members; i++) {
                PciDevice *x = dom->members[i];
                if (reset_domain_static_reason(x) != BLOCK_NONE || h->excluded(x, h->userdata))
                        blocked++;
                const void *hx = h->holder_of(x, h->userdata);
                if (hx && !holder)
                        holder = hx;
                else if (hx && hx != holder)
                        several = true;
        }
        dom->n_blocked = blocked;
        dom->holder = holder;
        dom->several_holders = several;
        dom->members_changed = dom->state_dirty = false;

        /* The devices whose own reset this is publish its answers; a
         * holder's change reaches them even when the summary stays (whether
         * their own holder matches it). */
        for (size_t i = 0; i < dom->n_members; i++)
                if (dom->members[i]->domain == dom)
                        h->device_changed(dom->members[i], h->userdata);
        /* Its own answers (the blockers' reasons, the holders) may have
         * changed even when the counts did not. */
        h->domain_changed(dom, h->userdata);
        return 0;
}

static int settle(ResetDomains *rd) {
        int r;

        if (rd->rebuild) {
                r = rebuild(rd);
                if (r < 0)
                        return r;
        }
        /* Settling a domain can free it, never queue another. */
        for (size_t i = 0; i < rd->n_queue; i++) {
                ResetDomain *dom = rd->queue[i];
                if (!dom)
                        continue;
                dom->queued = 0;
                rd->queue[i] = NULL;
                r = settle_one(rd, dom);
                if (r < 0) {
                        /* Keep the rest queued for the next try. */
                        dom->members_dirty = true;
                        enqueue(rd, dom);
                        return r;
                }
        }
        rd->n_queue = 0;
        return 0;
}

int reset_domains_settle(ResetDomains *rd) {
        if (rd->settling || !reset_domains_dirty(rd))
                return 0;
        rd->settling = true;
        int r = settle(rd);
        rd->settling = false;
        return r;
}

bool reset_domain_possible(const PciDevice *d, const void *holder) {
        const ResetDomain *dom = d->domain;
        if (!dom || dom->n_blocked > 0 || dom->several_holders)
                return false;
        return !dom->holder || dom->holder == holder;
}

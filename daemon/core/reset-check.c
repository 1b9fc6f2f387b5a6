/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>

#include "reset-check.h"
#include "reset-domain.h"
#include "util.h"

const char *block_reason_to_string(BlockReason r) {
        switch (r) {
        case BLOCK_NONE:
                return "";
        case BLOCK_NO_RESET_MECHANISM:
                return "no reset mechanism: on a root bus";
        case BLOCK_BRIDGE_IN_SCOPE:
                return "bridge in reset scope: bridges cannot be bound to vfio-pci";
        case BLOCK_NO_DRIVER:
                return "not bound to a vfio driver: no driver";
        case BLOCK_NOT_VFIO:
                return "not bound to a vfio driver";
        case BLOCK_NO_IOMMU_GROUP:
                return "no IOMMU group";
        case BLOCK_HELD_ELSEWHERE:
                return "held by another context";
        case BLOCK_POLICY:
                return "excluded by policy";
        }
        return "unknown";
}

static BlockReason entry_reason(const PciDevice *d, const void *holder, const void *target_holder) {
        BlockReason r = reset_domain_static_reason(d);
        if (r != BLOCK_NONE)
                return r;
        if (holder && holder != target_holder)
                return BLOCK_HELD_ELSEWHERE;
        return BLOCK_NONE;
}

static int check_members(ResetScope scope, const PciDevice *target, PciDevice *const *members, size_t n,
                         HolderOf holder_of, void *userdata, ResetCheck *ret) {
        ResetCheckEntry *entries = calloc(n ? n : 1, sizeof(ResetCheckEntry));
        if (!entries)
                return -ENOMEM;

        const void *target_holder = holder_of ? holder_of(target, userdata) : NULL;
        bool possible = scope != RESET_SCOPE_NONE;

        for (size_t i = 0; i < n; i++) {
                const void *holder = holder_of ? holder_of(members[i], userdata) : NULL;
                BlockReason reason = scope == RESET_SCOPE_NONE ? BLOCK_NO_RESET_MECHANISM
                                                               : entry_reason(members[i], holder, target_holder);
                entries[i] = (ResetCheckEntry) {
                        .device = members[i],
                        .reason = reason,
                        .holder = holder,
                };
                if (reason != BLOCK_NONE)
                        possible = false;
        }

        *ret = (ResetCheck) {
                .scope = scope,
                .possible = possible,
                .entries = entries,
                .n_entries = n,
        };
        return 0;
}

int reset_check(Topology *t, const PciDevice *target, HolderOf holder_of, void *userdata, ResetCheck *ret) {
        _cleanup_free_ PciDevice **affected = NULL;
        size_t n = 0;
        int r;

        r = topology_affected(t, target, &affected, &n);
        if (r < 0)
                return r;
        return check_members(topology_reset_scope(t, target), target, affected, n, holder_of, userdata, ret);
}

int reset_check_in_domain(const PciDevice *target, HolderOf holder_of, void *userdata, ResetCheck *ret) {
        const ResetDomain *dom = target->domain;
        PciDevice *self = (PciDevice *) target;

        if (!dom)
                return check_members(RESET_SCOPE_NONE, target, &self, 1, holder_of, userdata, ret);
        return check_members(dom->scope, target, dom->members, dom->n_members, holder_of, userdata, ret);
}

void reset_check_done(ResetCheck *c) {
        free(c->entries);
        *c = (ResetCheck) {};
}

int reset_check_apply_exclusions(ResetCheck *c, DeviceExcluded excluded, void *userdata) {
        for (size_t i = 0; i < c->n_entries; i++) {
                ResetCheckEntry *e = &c->entries[i];
                if (e->reason == BLOCK_NO_RESET_MECHANISM)
                        continue;
                int r = excluded(e->device, userdata);
                if (r < 0)
                        return r;
                if (r > 0) {
                        e->reason = BLOCK_POLICY;
                        c->possible = false;
                }
        }
        return 0;
}

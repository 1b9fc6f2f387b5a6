/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>

#include "reset-check.h"

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
        if (d->info.is_bridge)
                return BLOCK_BRIDGE_IN_SCOPE;
        if (!d->info.driver)
                return BLOCK_NO_DRIVER;
        if (!driver_is_vfio(d->info.driver))
                return BLOCK_NOT_VFIO;
        /* The kernel lists such a device as NOT_OWNED (cdev) or fails the
         * query (groups): nobody can open it, so nobody can own the scope. */
        if (d->info.iommu_group < 0)
                return BLOCK_NO_IOMMU_GROUP;
        if (holder && holder != target_holder)
                return BLOCK_HELD_ELSEWHERE;
        return BLOCK_NONE;
}

int reset_check(Topology *t, const PciDevice *target, HolderOf holder_of, void *userdata, ResetCheck *ret) {
        PciDevice **affected = NULL;
        size_t n = 0;
        int r;

        r = topology_affected(t, target, &affected, &n);
        if (r < 0)
                return r;

        ResetCheckEntry *entries = calloc(n ? n : 1, sizeof(ResetCheckEntry));
        if (!entries) {
                free(affected);
                return -ENOMEM;
        }

        ResetScope scope = topology_reset_scope(t, target);
        const void *target_holder = holder_of ? holder_of(target, userdata) : NULL;
        bool possible = scope != RESET_SCOPE_NONE;

        for (size_t i = 0; i < n; i++) {
                const void *holder = holder_of ? holder_of(affected[i], userdata) : NULL;
                BlockReason reason = scope == RESET_SCOPE_NONE
                                             ? BLOCK_NO_RESET_MECHANISM
                                             : entry_reason(affected[i], holder, target_holder);
                entries[i] = (ResetCheckEntry) {
                        .device = affected[i],
                        .reason = reason,
                        .holder = holder,
                };
                if (reason != BLOCK_NONE)
                        possible = false;
        }
        free(affected);

        *ret = (ResetCheck) {
                .scope = scope,
                .possible = possible,
                .entries = entries,
                .n_entries = n,
        };
        return 0;
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

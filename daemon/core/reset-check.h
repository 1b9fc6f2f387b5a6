/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Would a hot reset of a device be refused, and because of which device?
 * Pure logic over the topology; who holds a device is asked through a
 * callback so the model knows nothing of contexts. */
#pragma once

#include "topology.h"

typedef enum BlockReason {
        BLOCK_NONE,
        BLOCK_NO_RESET_MECHANISM, /* the device sits on a root bus */
        BLOCK_BRIDGE_IN_SCOPE,    /* bridges cannot join the vfio dev_set */
        BLOCK_NO_DRIVER,          /* unbound: not in the dev_set */
        BLOCK_NOT_VFIO,           /* bound to a host driver */
        BLOCK_NO_IOMMU_GROUP,     /* on a vfio driver but in no IOMMU group: no owner can prove it */
        BLOCK_HELD_ELSEWHERE,     /* held by a context other than the target's holder */
        BLOCK_POLICY,             /* the daemon's policy file excludes it */
} BlockReason;

typedef struct ResetCheckEntry {
        PciDevice *device;
        BlockReason reason;
        const void *holder; /* NULL: nobody holds it */
} ResetCheckEntry;

typedef struct ResetCheck {
        ResetScope scope;
        bool possible;
        ResetCheckEntry *entries; /* one per affected device, in address order */
        size_t n_entries;
} ResetCheck;

/* Returns the holder of a device (an opaque pointer), NULL if none. */
typedef const void *(*HolderOf)(const PciDevice *d, void *userdata);

/* A device held by a holder different from the target's holder blocks; when
 * nobody holds the target, any held device blocks (the daemon would have to
 * take the whole scope). holder_of may be NULL: nothing is held. */
int reset_check(Topology *t, const PciDevice *target, HolderOf holder_of, void *userdata, ResetCheck *ret);
/* The same, from the target's settled reset domain (reset-domain.h)
 * instead of a walk of the topology. */
int reset_check_in_domain(const PciDevice *target, HolderOf holder_of, void *userdata, ResetCheck *ret);
void reset_check_done(ResetCheck *c);

/* Marks the entries whose device excluded() says the policy excludes as
 * BLOCK_POLICY (ahead of every reason but BLOCK_NO_RESET_MECHANISM: no
 * rebinding fixes it) and the reset as impossible. Returns < 0 if excluded()
 * does. */
typedef int (*DeviceExcluded)(const PciDevice *d, void *userdata);
int reset_check_apply_exclusions(ResetCheck *c, DeviceExcluded excluded, void *userdata);

/* The reason in words, without the holder (the caller names it). */
const char *block_reason_to_string(BlockReason r);

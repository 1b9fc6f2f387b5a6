/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reset domains: the set of functions one hot reset hits (a slot, or the
 * bus below a bridge with every bus beneath it), computed once and shared
 * by the devices whose own hot reset it is. The domains are kept up to date
 * incrementally: a change marks the domains it reaches (the device's own
 * and those of the bridges above it), and reset_domains_settle() brings
 * only those up to date, so a change costs what it changes, not the size
 * of the machine. Pure logic over the topology: who holds a device and
 * what the policy excludes are asked through hooks. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "reset-check.h"
#include "topology.h"

typedef struct ResetDomains ResetDomains;

typedef struct ResetDomain {
        uint32_t key;       /* see reset_domain_key() */
        ResetScope scope;   /* RESET_SCOPE_SLOT or RESET_SCOPE_BUS */
        uint16_t pci_domain;
        uint8_t bus;        /* the bus the reset is done on */
        int8_t slot;        /* the slot (scope slot), -1 for the whole bus */
        PciDevice *bridge;  /* the bridge that performs the reset */

        PciDevice **members; /* every function the reset hits, in address order */
        size_t n_members, allocated;
        size_t n_own;        /* members whose own hot reset this is */
        uint64_t generation; /* changes whenever the members do; never reused, across domains */

        /* What the members say about a reset, whoever asks: */
        size_t n_blocked;      /* members that block any reset: a bridge, not on vfio, no group, policy */
        const void *holder;    /* the holder of the held members when there is exactly one */
        bool several_holders;  /* members are held by more than one holder */

        /* Bookkeeping of reset_domains_settle(). */
        bool members_dirty;   /* the member list must be collected again */
        bool members_changed; /* the member list changed in place */
        bool state_dirty;     /* a member's state changed */
        uint32_t queued;      /* 1 + index in the settle queue, 0: not queued */
        uint32_t publish_queued; /* the same for the manager's publish queue */

        void *userdata; /* the bus object (bus/domain-dbus.c) */
} ResetDomain;

typedef struct ResetDomainHooks {
        /* Who holds d (an opaque pointer), NULL if nobody. */
        const void *(*holder_of)(const PciDevice *d, void *userdata);
        /* Whether the policy excludes d. */
        bool (*excluded)(PciDevice *d, void *userdata);
        /* What d publishes may have changed: its domain, its Affected list,
         * whether its hot reset is possible. */
        void (*device_changed)(PciDevice *d, void *userdata);
        /* dom is new, or its members or their state changed. */
        void (*domain_changed)(ResetDomain *dom, void *userdata);
        /* dom is going away: nobody's own reset is it any more. Called
         * while it can still be looked up; freed right after. */
        void (*domain_removed)(ResetDomain *dom, void *userdata);
        void *userdata;
} ResetDomainHooks;

/* The key of the domain of a reset of the slot (slot >= 0) or the bus. */
static inline uint32_t reset_domain_key(uint16_t pci_domain, uint8_t bus, int slot) {
        return (uint32_t) pci_domain << 16 | (uint32_t) bus << 8 | (uint32_t) (slot >= 0 ? slot + 1 : 0);
}

ResetDomains *reset_domains_new(Topology *t, const ResetDomainHooks *hooks);
/* Frees every domain without calling hooks (shutdown). */
ResetDomains *reset_domains_free(ResetDomains *rd);

/* After d was added to the table. A new bridge rebuilds everything at the
 * next settle (bridges are rare; they change the structure). */
void reset_domains_device_added(ResetDomains *rd, PciDevice *d);
/* Before d leaves the table: no domain refers to it afterwards. */
void reset_domains_device_removing(ResetDomains *rd, PciDevice *d);
/* d's driver, IOMMU group, holder or exclusion changed. */
void reset_domains_device_state_changed(ResetDomains *rd, PciDevice *d);
/* A bridge changed what it leads to or whether it resets slots
 * (structure), or everything's state must be looked at again (the policy
 * was reloaded). */
void reset_domains_invalidate(ResetDomains *rd, bool structure);

/* Brings every marked domain up to date and calls the hooks. Cheap when
 * nothing is marked. */
int reset_domains_settle(ResetDomains *rd);
bool reset_domains_dirty(const ResetDomains *rd);

ResetDomain *reset_domains_get(ResetDomains *rd, uint32_t key);
size_t reset_domains_count(const ResetDomains *rd);
/* Every domain, in no particular order; *cursor starts at 0. NULL at the end. */
ResetDomain *reset_domains_next(ResetDomains *rd, size_t *cursor);

/* Whether a hot reset of d is possible, from its domain's summary (settled):
 * the same answer as reset_check(). holder is d's holder. */
bool reset_domain_possible(const PciDevice *d, const void *holder);
/* Why member x blocks any reset of its domain (BLOCK_NONE if it does not),
 * leaving out holders and the policy. */
BlockReason reset_domain_static_reason(const PciDevice *x);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The topology model: a table of PCI functions and the rules that decide
 * what a hot reset of one of them touches. Pure logic over the table, no
 * kernel, no bus, so it can be unit tested on any machine. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "pci-device.h"

typedef struct Topology Topology;

struct ResetDomain;

typedef struct PciDevice {
        PciDeviceInfo info; /* its strings live in info_strings: never free or replace them */
        char *info_strings;
        char address[PCI_ADDRESS_STRING_MAX]; /* info.address, formatted once */

        /* Kept by the layers above; the table only carries them. */
        struct ResetDomain *domain; /* the reset this device triggers (reset-domain.h); NULL: none */
        const void *holder;         /* the context it is attached to (context.c); NULL: none */
        int8_t excluded;            /* the policy excludes it: 1, 0, or -1 not known yet (manager.c) */
        uint32_t queued;            /* 1 + its index in the publish queue; 0: not queued (manager.c) */
        void *userdata;             /* the bus object (bus/device-dbus.c) */

        struct PciDevice *group_next; /* the next device of its IOMMU group (topology.c) */
} PciDevice;

typedef enum ResetScope {
        RESET_SCOPE_NONE, /* on a root bus: no hot reset mechanism */
        RESET_SCOPE_SLOT, /* the parent bridge can reset the slot */
        RESET_SCOPE_BUS,  /* secondary bus reset of the parent bridge */
} ResetScope;

const char *reset_scope_to_string(ResetScope s);

/* free_userdata is called for a device's userdata when it leaves the table. */
Topology *topology_new(void (*free_userdata)(void *userdata));
Topology *topology_free(Topology *t);
static inline void topology_freep(Topology **t) {
        topology_free(*t);
}

/* Copies info in, replacing a device at the same address (the device keeps
 * its identity and what the layers above keep in it). Returns 1 for a new
 * device, 0 for a replaced one. */
int topology_put(Topology *t, const PciDeviceInfo *info, PciDevice **ret);
/* -ENOENT when there is no such device. */
int topology_remove(Topology *t, const PciAddress *a);

PciDevice *topology_get(Topology *t, const PciAddress *a);
/* The first device of an IOMMU group (NULL for none or group < 0); the
 * others follow through group_next, in no particular order. */
PciDevice *topology_group_first(Topology *t, int group);
size_t topology_size(const Topology *t);
/* Devices in address order, 0 <= i < topology_size(). */
PciDevice *topology_at(Topology *t, size_t i);
/* The number of devices on one bus (O(log n)). */
size_t topology_bus_size(Topology *t, uint16_t domain, uint8_t bus);

/* The bridge whose secondary bus is d's bus; NULL on a root bus. */
PciDevice *topology_parent_bridge(Topology *t, const PciDevice *d);
ResetScope topology_reset_scope(Topology *t, const PciDevice *d);

/* The devices a hot reset of d hits, d included, in address order: the
 * slot's or the bus's devices and everything on the buses below them
 * (bridges too). For RESET_SCOPE_NONE only d itself. The array is
 * allocated; the devices stay owned by the table. */
int topology_affected(Topology *t, const PciDevice *d, PciDevice ***ret, size_t *ret_n);

/* The devices of one bus (slot >= 0: of one slot of it) and of every bus
 * below them, in address order: what one hot reset hits. */
int topology_scope_members(Topology *t, uint16_t domain, uint8_t bus, int slot, PciDevice ***ret, size_t *ret_n);

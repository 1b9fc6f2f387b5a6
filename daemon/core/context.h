/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Contexts: one per client lease. A context owns one iommufd with one IOAS
 * (cdev model) or one legacy container (group model), and the daemon's own
 * open files of the devices attached to it. Clients get duplicates of those
 * files; the daemon keeps its own so it can still query and reset after the
 * client's VMM has taken the device over. */
#pragma once

#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

#include "pci-address.h"

typedef struct Manager Manager;
struct PciDevice;

#define CONTEXT_INTERFACE "org.hotresetd.Broker1.Context"
#define CONTEXT_PATH_PREFIX "/org/hotresetd/Broker1/context"

typedef struct ContextDevice {
        PciAddress address;
        int iommu_group;
        int fd;         /* the daemon's open file of the device */
        uint32_t devid; /* cdev model: the kernel's devid; 0 when unbound, legacy, or bound by a VMM */
        bool bound;     /* cdev model: bound to an iommufd (by the daemon, or by a VMM through a copy) */
        bool bound_by_client; /* a client's copy was bound (a VMM), not the daemon's Bind */
        bool stored;          /* fd is in systemd's file descriptor store (lease-store.c) */
} ContextDevice;

typedef struct ContextGroup {
        int group;
        int fd;
        bool stored;
} ContextGroup;

/* How long a lease lasts. */
typedef enum ContextLifetime {
        CONTEXT_CONNECTION, /* until its owner's bus connection goes */
        CONTEXT_PERSISTENT, /* until released (owned by the uid) */
        CONTEXT_PROCESS,    /* until the process it is tied to exits (the VMM) */
} ContextLifetime;

typedef struct Context {
        Manager *manager;
        uint64_t id;
        char *path;
        char *owner; /* unique bus name of the creator */
        uid_t owner_uid;
        ContextLifetime lifetime;
        int pidfd; /* CONTEXT_PROCESS: the process the lease lasts as long as */
        pid_t pid;
        sd_event_source *pid_source;
        char *description;

        int iommufd; /* cdev model */
        uint32_t ioas_id;
        int container; /* group model */
        bool iommu_set;
        ContextGroup *groups;
        size_t n_groups;

        ContextDevice *devices;
        size_t n_devices;

        /* Hot resets in flight use this context's files; the files are
         * closed only when the last one is done. */
        unsigned n_busy;
        bool released;
        uint32_t publish_queued; /* in the manager's publish queue (Devices changed) */

        /* lease-store.c: the names of this context's files in systemd's
         * file descriptor store, and whether the iommufd/container/pidfd
         * are there. */
        char **stored_names;
        bool stored_main;
} Context;

/* Opens the iommufd + IOAS or the container. On failure sets a D-Bus error.
 * For CONTEXT_PROCESS, pidfd (borrowed; duplicated) is the process. */
int context_new(Manager *m, const char *owner, uid_t uid, ContextLifetime lifetime, int pidfd,
                const char *description, Context **ret, sd_bus_error *error);
/* A lease back from the file descriptor store (lease-store.c): an empty
 * context with that id, owner and lifetime; the caller puts its files in. */
int context_new_restored(Manager *m, uint64_t id, const char *owner, uid_t uid, ContextLifetime lifetime,
                         const char *description, Context **ret);
/* CONTEXT_PROCESS: watch pidfd (taken) for the process's exit; an exit
 * that happened while the daemon was away releases the lease on the
 * first turn of the loop. */
int context_watch_process(Context *c, int pidfd, pid_t recorded_pid);
/* The daemon stops and the store keeps the lease: close its descriptors
 * (plain close(): the store holds the files, and the kernel side must not
 * see a release) and free it, telling no one. */
void context_abandon(Context *c);
/* Persistent and process-tied leases outlive their creator's connection:
 * its uid, not its bus name, owns them. */
static inline bool context_outlives_owner(const Context *c) {
        return c->lifetime != CONTEXT_CONNECTION;
}
const char *context_lifetime_to_string(ContextLifetime l);
/* Detaches everything, closes every file, leaves the bus; the memory goes
 * when no reset uses it any more. Safe to call twice. */
void context_release(Context *c, const char *why);
/* Frees a released context whose resets are done. */
void context_unref_busy(Context *c);

ContextDevice *context_find_device(Context *c, const PciAddress *a);
ContextGroup *context_find_group(Context *c, int group); /* legacy groups opened here */
bool context_owns_group(Context *c, int group);

/* bind=false leaves a cdev unbound for a VMM to bind itself. */
int context_attach(Context *c, struct PciDevice *d, bool bind, uint32_t *ret_devid, sd_bus_error *error);
int context_detach(Context *c, const PciAddress *a, sd_bus_error *error);

/* Whether the device's file is bound to an iommufd now, as the kernel says:
 * a VMM given the daemon's unbound file (OpenDevice) binds that same open
 * file, so the daemon's copy is bound too and can query and reset. The
 * kernel answers VFIO_DEVICE_GET_INFO only on a bound cdev. Always true in
 * the group model. */
bool context_device_is_bound(Context *c, ContextDevice *cd);

/* A fresh, unbound file of the device for a VMM started again on the same
 * lease (a bind lasts as long as the open file). Refused with InUse while
 * another process still holds a copy of the old file, and with Busy while a
 * reset uses it. */
int context_reopen_device(Context *c, ContextDevice *cd, sd_bus_error *error);
/* The device went away or left its vfio driver: drop it from the lease. */
void context_drop_device(Context *c, const PciAddress *a, const char *why);

/* The kernel's hot-reset info through the context's file of the device,
 * sized by the ENOSPC loop and retried on EAGAIN. *ret_entries is malloc'ed. */
typedef struct HotResetEntry {
        PciAddress address;
        uint32_t id; /* devid or group id */
} HotResetEntry;
int context_hot_reset_info(Context *c, ContextDevice *d, uint32_t *ret_flags, HotResetEntry **ret_entries,
                           size_t *ret_n);

/* "context /org/.../context/3 (owner :1.42, uid 1000)" for messages. */
char *context_describe(Context *c);

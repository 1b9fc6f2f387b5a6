/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's state: the backend, the topology model it feeds, the reset
 * domains over it, the leases and the resets. The core marks what changed
 * (the publish queues below); the bus layer (bus/) publishes it from the
 * event loop and installs hooks for what must be announced at once. The
 * core never calls into bus/. */
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "backend.h"
#include "context.h"
#include "intmap.h"
#include "reset-check.h"
#include "reset-domain.h"
#include "topology.h"

typedef struct Manager Manager;

/* What the bus layer is told at once, not through the publish queues: an
 * object that goes must be announced while it still resolves. Any may be
 * NULL (no bus: unit tests, --dump-machine). */
typedef struct ManagerHooks {
        /* Something was queued for publishing: schedule a pass. */
        void (*queued)(Manager *m);
        /* d leaves the table right after this. */
        void (*device_removed)(Manager *m, PciDevice *d);
        /* dom is freed right after this. */
        void (*domain_removed)(Manager *m, ResetDomain *dom);
        /* c is released: it leaves the list right after this. */
        void (*context_removed)(Manager *m, Context *c);
        /* A device c holds went away or left its vfio driver: c lets go of
         * it right after this (reason in words). */
        void (*context_device_removed)(Manager *m, Context *c, const char *address, const char *reason);
        /* A hot reset of target through c is about to start (c holds one
         * of the affected devices), and one the kernel was asked to do is
         * over (result: "success" or the error name). */
        void (*prepare_for_hot_reset)(Manager *m, Context *c, const char *target, char **affected);
        void (*hot_reset_done)(Manager *m, const char *target, char **affected, uint64_t duration_usec,
                               const char *result);
        /* The daemon stops: every lease was released; let the bus go. */
        void (*teardown)(Manager *m);
} ManagerHooks;

/* The publish queues: objects whose published state may have changed. */
typedef struct PublishQueue {
        void **items; /* NULL where an item left the queue early */
        size_t head, n, allocated;
} PublishQueue;

typedef enum ManagerChange {
        MANAGER_CHANGED_DEVICE_COUNT = 1 << 0,
        MANAGER_CHANGED_POLICY = 1 << 1, /* Limits, UnleasedHotReset */
} ManagerChange;

struct Manager {
        sd_event *event;
        sd_bus *bus; /* set by the bus layer; the core uses it only to ask polkit */
        Backend *backend;
        Topology *topology;
        ResetDomains *domains;

        ManagerHooks hooks;
        void *hooks_userdata;
        PublishQueue devices_queue;  /* PciDevice (their queued field) */
        PublishQueue domains_queue;  /* ResetDomain, by their bus object */
        PublishQueue contexts_queue; /* Context whose Devices changed */
        unsigned changes;            /* ManagerChange */

        Context **contexts;
        size_t n_contexts;
        uint64_t next_context_id;
        IntMap group_owners; /* IOMMU group -> GroupOwner (context.c) */

        /* Hot resets: running ones and those waiting for an overlapping
         * one to finish (see reset-job.c). */
        struct ResetJob *jobs;
        bool stopping; /* no new reset starts */

        /* Authorization: polkit checks in flight (auth.c), the policy file
         * and the rate limits (access.c). */
        struct AuthQuery *auth_queries;
        uint64_t polkit_timeout_usec;
        struct Policy *policy;
        char *policy_path;
        bool policy_missing_ok;
        struct RateLimiter *limiter;
        sd_event_source *sighup_source;

        /* The refusals logged per user, and when the counts of those that
         * were not are reported (refusal-log.c). */
        struct RateLimiter *refusal_limiter;
        sd_event_source *refusal_report_source;

        /* Leases across restarts (lease-store.c); NULL: they end with the
         * daemon. */
        struct LeaseStore *store;
};

int manager_new(sd_event *e, Manager **ret);
/* Releases every lease (announced through the hooks while they are still
 * installed), then frees everything. */
Manager *manager_free(Manager *m);
static inline void manager_freep(Manager **m) {
        manager_free(*m);
}

/* The backend event handler (see backend.h). */
void manager_on_backend_event(Backend *b, BackendAction action, const PciDeviceInfo *info, void *userdata);

/* Brings the reset domains up to date with every change so far. Every
 * answer about scopes and resets is read after this. */
int manager_settle(Manager *m);

/* The device at a, or NoSuchDevice naming it. */
int manager_find_device(Manager *m, const PciAddress *a, PciDevice **ret, sd_bus_error *error);

/* The context holding a device: the one it is attached to, else the one
 * owning its IOMMU group (the kernel counts such a device as owned). */
Context *manager_holder_of(Manager *m, const PciDevice *d);
/* The context owning an IOMMU group, NULL if none. */
Context *manager_group_owner(Manager *m, int group);
/* Counts c's claims on a group (a bound cdev, an open legacy group). */
int manager_group_owner_ref(Manager *m, int group, Context *c);
void manager_group_owner_unref(Manager *m, int group, Context *c);
/* d was attached to or detached from a context. */
void manager_device_holder_changed(Manager *m, PciDevice *d);

Context *manager_find_context(Manager *m, const char *path);
int manager_add_context(Manager *m, Context *c);
void manager_remove_context(Manager *m, Context *c);
/* Releases the connection-owned leases of a bus name that went away. */
void manager_owner_gone(Manager *m, const char *name);

/* Whether the policy excludes d: kept with d until d or the policy
 * changes, so the reset domains and every reset check read one answer. */
bool manager_device_excluded(Manager *m, PciDevice *d);

/* The policy changed: every exclusion is looked at again. */
void manager_policy_changed(Manager *m);

/* Queueing for the publish pass, in the order things happened. */
void manager_queue_device(Manager *m, PciDevice *d);
void manager_queue_domain(Manager *m, ResetDomain *dom);
void manager_queue_context(Manager *m, Context *c);
void manager_queue_change(Manager *m, ManagerChange change);
/* The bus layer drains the queues: the next item, NULL when empty. */
PciDevice *manager_pop_device(Manager *m);
ResetDomain *manager_pop_domain(Manager *m);
Context *manager_pop_context(Manager *m);
bool manager_has_queued(const Manager *m);

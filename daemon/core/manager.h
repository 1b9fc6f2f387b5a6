/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's state: the backend, the topology model it feeds, and the
 * bus objects that publish it. */
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "backend.h"
#include "context.h"
#include "reset-check.h"
#include "topology.h"

#define BROKER_BUS_NAME "org.hotresetd.Broker1"
#define BROKER_PATH "/org/hotresetd/Broker1"
#define MANAGER_INTERFACE "org.hotresetd.Broker1.Manager"
#define DEVICE_INTERFACE "org.hotresetd.Broker1.Device"
#define DEVICE_PATH_PREFIX BROKER_PATH "/device"

typedef struct Manager {
        sd_event *event;
        sd_bus *bus;
        Backend *backend;
        Topology *topology;

        /* Change signals are computed once per batch of backend events
         * (a rewrite of the machine file, a burst of uevents). */
        sd_event_source *publish_source;
        uint32_t published_device_count;

        Context **contexts;
        size_t n_contexts;
        uint64_t next_context_id;

        /* Hot resets: running ones and those waiting for an overlapping
         * one to finish (see reset-job.c). */
        struct ResetJob *jobs;

        /* Authorization: polkit checks in flight (auth.c), the policy file
         * and the rate limits (access.c). */
        struct AuthQuery *auth_queries;
        uint64_t polkit_timeout_usec;
        struct Policy *policy;
        char *policy_path;
        bool policy_missing_ok;
        struct RateLimiter *limiter;
        sd_event_source *sighup_source;
} Manager;

int manager_new(sd_event *e, Manager **ret);
Manager *manager_free(Manager *m);
static inline void manager_freep(Manager **m) {
        manager_free(*m);
}

/* The backend event handler (see backend.h). */
void manager_on_backend_event(Backend *b, BackendAction action, const PciDeviceInfo *info, void *userdata);

/* Registers the objects and takes the bus name. */
int manager_connect_bus(Manager *m);

/* Schedules publishing device state changes (after attach/detach too). */
void manager_schedule_publish(Manager *m);

/* The context holding a device: the one it is attached to, else the one
 * owning its IOMMU group (the kernel counts such a device as owned). */
Context *manager_holder_of(Manager *m, const PciDevice *d);
Context *manager_find_context(Manager *m, const char *path);
int manager_add_context(Manager *m, Context *c);
void manager_remove_context(Manager *m, Context *c);

/* device-dbus.c */
#define DEVICE_PATH_MAX (sizeof(DEVICE_PATH_PREFIX "/pci_0000_00_00_0"))
char *device_object_path(const PciAddress *a, char buf[static DEVICE_PATH_MAX]);
int device_object_new(Manager *m, PciDevice *d);
void device_object_free(void *userdata);
/* Emits InterfacesAdded/Removed for a device (no-op without a bus). */
void device_object_announce(Manager *m, PciDevice *d);
void device_object_retract(Manager *m, PciDevice *d);
/* Recomputes what the device publishes; emits PropertiesChanged for what
 * differs from the last publication. */
int device_object_publish(Manager *m, PciDevice *d);
/* Looks a caller's address up, setting NoSuchDevice/InvalidArgs. */
int manager_find_device(Manager *m, const char *address, PciDevice **ret, sd_bus_error *error);
int device_register_bus(Manager *m);

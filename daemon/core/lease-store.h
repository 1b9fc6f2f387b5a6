/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Leases across restarts. Under systemd, with FileDescriptorStoreMax= set,
 * the daemon hands every file a lease holds (its iommufd or container, its
 * groups and devices, the pidfd it lasts as long as) to systemd's file
 * descriptor store as it opens them, and writes what they are to
 * $RUNTIME_DIRECTORY/leases/ID.json. A restarted daemon (an upgrade, a
 * crash, even SIGKILL) gets the files back (LISTEN_FDS, LISTEN_FDNAMES),
 * checks each record against the files and the machine as it is now, and
 * serves the leases again at the same object paths; the kernel never saw
 * the files close, so devices stay bound and VMMs keep running.
 *
 * The store is used when $FDSTORE is set to a number above 0 (systemd sets
 * it from FileDescriptorStoreMax= since v254; the unit sets it for older
 * ones) and $RUNTIME_DIRECTORY is set. Without it, leases end with the
 * daemon, as before. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "context.h"

typedef struct Manager Manager;

/* Enables the store when the environment offers it (logs which). */
int lease_store_setup(Manager *m);
void lease_store_free(Manager *m);
bool lease_store_enabled(const Manager *m);

/* c was created or changed (a device attached, detached, reopened, bound by
 * a client; its owner changed): its new files go to the store, files it
 * closed leave it, its record is rewritten. Failures are logged: the lease
 * goes on, it just would not survive a restart. */
void lease_store_save(Manager *m, Context *c);
/* c was released: its files and record leave the store. */
void lease_store_forget(Manager *m, Context *c);

/* At start, after the backend delivered the machine and before the bus:
 * the leases of the previous run, back from the store. Every record is
 * checked (its backend, its files, its devices as the machine is now); a
 * record that does not hold up is logged and dropped with its files, a
 * device gone in the meantime is dropped from its lease. Leases whose
 * process exited meanwhile are released. Returns how many were restored. */
int lease_store_restore(Manager *m);

/* ---- the record (exposed for the unit tests) ---- */

typedef struct LeaseRecordDevice {
        PciAddress address;
        int iommu_group;
        uint32_t devid;
        bool bound, bound_by_client;
} LeaseRecordDevice;

typedef struct LeaseRecord {
        char *backend;
        uint64_t id;
        char *owner;
        uid_t uid;
        ContextLifetime lifetime;
        pid_t pid;
        char *description;
        uint32_t ioas_id;
        bool iommu_set;
        int *groups;
        size_t n_groups;
        LeaseRecordDevice *devices;
        size_t n_devices;
} LeaseRecord;

void lease_record_done(LeaseRecord *r);
/* Parses and checks a record; on failure *ret_error says what is wrong. */
int lease_record_parse(const char *json, LeaseRecord *ret, char **ret_error);
/* The record of a context, as JSON text (malloc'ed), NULL on OOM. */
char *lease_record_format(const Context *c, const char *backend);
/* The name its files have in the store: "c3-iommufd", "c3-container",
 * "c3-pidfd", "c3-g12", "c3-d0000_01_00.0" (systemd refuses ':'). */
void lease_file_name(char *buf, size_t size, uint64_t id, const char *what);
void lease_device_file_name(char *buf, size_t size, uint64_t id, const PciAddress *a);

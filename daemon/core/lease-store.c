/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Leases across restarts: systemd's file descriptor store holds the files,
 * $RUNTIME_DIRECTORY/leases/ID.json says what they are (lease-store.h).
 *
 * Order of writes, so that a crash at any point leaves nothing a restart
 * would misread: a file goes to the store before the record names it, and
 * a record stops naming a file before the file leaves the store. A file in
 * the store that no record names is closed at the next start. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-login.h>
#include <unistd.h>

#include "lease-store.h"
#include "log.h"
#include "manager.h"
#include "util.h"

#define RECORD_VERSION 1
#define RECORD_SIZE_MAX (1024 * 1024)
#define FDNAME_MAX 64
/* The highest lease id given out: a released lease's path is not given to
 * another one after a restart either. */
#define LAST_ID_FILE "last-id"

typedef struct LeaseStore {
        char *dir;    /* $RUNTIME_DIRECTORY/leases */
        unsigned max; /* $FDSTORE: how many files systemd keeps */
        unsigned n;   /* how many we gave it */
        bool warned_full;
        uint64_t last_id; /* the highest context id written to LAST_ID_FILE */
} LeaseStore;

bool lease_store_enabled(const Manager *m) {
        return m->store != NULL;
}

/* ---- names ----------------------------------------------------------------- */

void lease_file_name(char *buf, size_t size, uint64_t id, const char *what) {
        snprintf(buf, size, "c%" PRIu64 "-%s", id, what);
}

void lease_device_file_name(char *buf, size_t size, uint64_t id, const PciAddress *a) {
        snprintf(buf, size, "c%" PRIu64 "-d%04x_%02x_%02x.%x", id, a->domain, a->bus, a->slot, a->function);
}

static void group_file_name(char *buf, size_t size, uint64_t id, int group) {
        char what[24];
        snprintf(what, sizeof what, "g%d", group);
        lease_file_name(buf, size, id, what);
}

/* ---- the record -------------------------------------------------------------- */

void lease_record_done(LeaseRecord *r) {
        free(r->backend);
        free(r->owner);
        free(r->description);
        free(r->groups);
        free(r->devices);
        *r = (LeaseRecord) {};
}

static const char *lifetime_name(ContextLifetime l) {
        return context_lifetime_to_string(l);
}

char *lease_record_format(const Context *c, const char *backend) {
        json_object *o = json_object_new_object(), *groups = json_object_new_array(),
                    *devices = json_object_new_array();
        char *text = NULL;
        char addr[PCI_ADDRESS_STRING_MAX];

        if (!o || !groups || !devices)
                goto out;
        json_object_object_add(o, "version", json_object_new_int(RECORD_VERSION));
        json_object_object_add(o, "backend", json_object_new_string(backend));
        json_object_object_add(o, "id", json_object_new_uint64(c->id));
        json_object_object_add(o, "owner", json_object_new_string(c->owner));
        char bus[SD_ID128_STRING_MAX];
        json_object_object_add(o, "bus", json_object_new_string(sd_id128_is_null(c->bus_id) ? ""
                                                                 : sd_id128_to_string(c->bus_id, bus)));
        json_object_object_add(o, "uid", json_object_new_uint64(c->owner_uid));
        json_object_object_add(o, "lifetime", json_object_new_string(lifetime_name(c->lifetime)));
        json_object_object_add(o, "pid", json_object_new_int(c->pid));
        json_object_object_add(o, "description", json_object_new_string(c->description));
        json_object_object_add(o, "ioas", json_object_new_uint64(c->ioas_id));
        json_object_object_add(o, "iommu_set", json_object_new_boolean(c->iommu_set));
        for (size_t i = 0; i < c->n_groups; i++)
                json_object_array_add(groups, json_object_new_int(c->groups[i].group));
        for (size_t i = 0; i < c->n_devices; i++) {
                const ContextDevice *cd = &c->devices[i];
                json_object *d = json_object_new_object();
                if (!d)
                        goto out;
                json_object_object_add(d, "address", json_object_new_string(pci_address_format(&cd->address, addr)));
                json_object_object_add(d, "group", json_object_new_int(cd->iommu_group));
                json_object_object_add(d, "devid", json_object_new_uint64(cd->devid));
                json_object_object_add(d, "bound", json_object_new_boolean(cd->bound));
                json_object_object_add(d, "bound_by_client", json_object_new_boolean(cd->bound_by_client));
                json_object_array_add(devices, d);
        }
        json_object_object_add(o, "groups", TAKE_PTR(groups));
        json_object_object_add(o, "devices", TAKE_PTR(devices));
        text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
out:
        json_object_put(groups);
        json_object_put(devices);
        json_object_put(o);
        return text;
}

static int record_error(char **ret_error, const char *what) {
        *ret_error = strdup(what);
        return -EBADMSG;
}

static json_object *field(json_object *o, const char *key, json_type type) {
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, type))
                return NULL;
        return v;
}

int lease_record_parse(const char *json, LeaseRecord *ret, char **ret_error) {
        _cleanup_(lease_record_done) LeaseRecord r = {};
        json_object *o, *v, *groups, *devices;
        int err = 0;

        *ret_error = NULL;
        o = json_tokener_parse(json);
        if (!o || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return record_error(ret_error, "not a JSON object");
        }

#define FAIL(what)                                                  \
        do {                                                        \
                err = record_error(ret_error, what);                \
                goto out;                                           \
        } while (0)

        if (!(v = field(o, "version", json_type_int)) || json_object_get_int(v) != RECORD_VERSION)
                FAIL("unknown \"version\" (this daemon writes 1)");
        if (!(v = field(o, "backend", json_type_string)) || !(r.backend = strdup(json_object_get_string(v))))
                FAIL("no \"backend\"");
        if (!(v = field(o, "id", json_type_int)) || json_object_get_int64(v) <= 0)
                FAIL("no \"id\" above 0");
        r.id = (uint64_t) json_object_get_int64(v);
        if (!(v = field(o, "owner", json_type_string)) || json_object_get_string_len(v) == 0 ||
            !(r.owner = strdup(json_object_get_string(v))))
                FAIL("no \"owner\"");
        /* Optional: without it a connection's lease cannot be told from
         * one of a restarted bus, which reuses unique names. */
        if ((v = field(o, "bus", json_type_string)) && json_object_get_string_len(v) > 0 &&
            sd_id128_from_string(json_object_get_string(v), &r.bus_id) < 0)
                FAIL("no valid \"bus\" id");
        if (!(v = field(o, "uid", json_type_int)) || json_object_get_int64(v) < 0 ||
            json_object_get_int64(v) >= (int64_t) UINT32_MAX)
                FAIL("no valid \"uid\"");
        r.uid = (uid_t) json_object_get_int64(v);
        if (!(v = field(o, "lifetime", json_type_string)))
                FAIL("no \"lifetime\"");
        if (streq(json_object_get_string(v), "connection"))
                r.lifetime = CONTEXT_CONNECTION;
        else if (streq(json_object_get_string(v), "persistent"))
                r.lifetime = CONTEXT_PERSISTENT;
        else if (streq(json_object_get_string(v), "process"))
                r.lifetime = CONTEXT_PROCESS;
        else
                FAIL("unknown \"lifetime\" (connection, persistent or process)");
        if (!(v = field(o, "pid", json_type_int)) || json_object_get_int64(v) < 0 || json_object_get_int64(v) > INT32_MAX)
                FAIL("no valid \"pid\"");
        r.pid = (pid_t) json_object_get_int64(v);
        if (r.lifetime == CONTEXT_PROCESS && r.pid <= 0)
                FAIL("a process-tied lease without a \"pid\"");
        if (!(v = field(o, "description", json_type_string)) || !(r.description = strdup(json_object_get_string(v))))
                FAIL("no \"description\"");
        if (!(v = field(o, "ioas", json_type_int)) || json_object_get_int64(v) < 0 ||
            json_object_get_int64(v) > UINT32_MAX)
                FAIL("no valid \"ioas\"");
        r.ioas_id = (uint32_t) json_object_get_int64(v);
        if (!(v = field(o, "iommu_set", json_type_boolean)))
                FAIL("no \"iommu_set\"");
        r.iommu_set = json_object_get_boolean(v);

        if (!(groups = field(o, "groups", json_type_array)) || !(devices = field(o, "devices", json_type_array)))
                FAIL("no \"groups\" or \"devices\" list");
        size_t ng = json_object_array_length(groups), nd = json_object_array_length(devices);
        r.groups = calloc(ng ? ng : 1, sizeof(int));
        r.devices = calloc(nd ? nd : 1, sizeof(LeaseRecordDevice));
        if (!r.groups || !r.devices) {
                err = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < ng; i++) {
                v = json_object_array_get_idx(groups, i);
                if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
                    json_object_get_int64(v) > INT32_MAX)
                        FAIL("a group that is no number");
                int g = (int) json_object_get_int64(v);
                for (size_t k = 0; k < r.n_groups; k++)
                        if (r.groups[k] == g)
                                FAIL("a group listed twice");
                r.groups[r.n_groups++] = g;
        }
        for (size_t i = 0; i < nd; i++) {
                json_object *d = json_object_array_get_idx(devices, i);
                LeaseRecordDevice *rd = &r.devices[r.n_devices];
                if (!json_object_is_type(d, json_type_object))
                        FAIL("a device that is no object");
                if (!(v = field(d, "address", json_type_string)) ||
                    pci_address_parse(json_object_get_string(v), &rd->address) < 0)
                        FAIL("a device without a valid \"address\"");
                for (size_t k = 0; k < r.n_devices; k++)
                        if (pci_address_equal(&r.devices[k].address, &rd->address))
                                FAIL("a device listed twice");
                if (!(v = field(d, "group", json_type_int)) || json_object_get_int64(v) < -1 ||
                    json_object_get_int64(v) > INT32_MAX)
                        FAIL("a device without a valid \"group\"");
                rd->iommu_group = (int) json_object_get_int64(v);
                if (!(v = field(d, "devid", json_type_int)) || json_object_get_int64(v) < 0 ||
                    json_object_get_int64(v) > UINT32_MAX)
                        FAIL("a device without a valid \"devid\"");
                rd->devid = (uint32_t) json_object_get_int64(v);
                if (!(v = field(d, "bound", json_type_boolean)))
                        FAIL("a device without \"bound\"");
                rd->bound = json_object_get_boolean(v);
                if (!(v = field(d, "bound_by_client", json_type_boolean)))
                        FAIL("a device without \"bound_by_client\"");
                rd->bound_by_client = json_object_get_boolean(v);
                r.n_devices++;
        }
#undef FAIL
        *ret = r;
        r = (LeaseRecord) {};
out:
        json_object_put(o);
        return err;
}

/* ---- the store ------------------------------------------------------------------ */

static int mkdir_p(const char *path, mode_t mode) {
        if (mkdir(path, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* systemd < 254 does not say $FDSTORE: ask it what FileDescriptorStoreMax=
 * the unit we run in has (0 when that cannot be told: not under systemd, no
 * unit, no answer). */
static unsigned fdstore_max_from_systemd(void) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *unit = NULL, *path = NULL;
        sd_bus *bus = NULL;
        uint32_t max = 0;
        int r;

        if (!getenv("NOTIFY_SOCKET") || sd_pid_get_unit(0, &unit) < 0 || !strstr(unit, ".service"))
                return 0;
        if (sd_bus_open_system(&bus) < 0)
                return 0;
        r = sd_bus_path_encode("/org/freedesktop/systemd1/unit", unit, &path);
        if (r >= 0)
                r = sd_bus_get_property_trivial(bus, "org.freedesktop.systemd1", path, "org.freedesktop.systemd1.Service",
                                                "FileDescriptorStoreMax", &error, 'u', &max);
        if (r < 0)
                log_debug("Could not ask systemd for %s's FileDescriptorStoreMax=: %s", unit,
                          error.message ?: strerror(-r));
        sd_bus_flush_close_unref(bus);
        return r < 0 ? 0 : max;
}

int lease_store_setup(Manager *m) {
        const char *fdstore = getenv("FDSTORE"), *runtime = getenv("RUNTIME_DIRECTORY");
        unsigned max = 0;
        int r;

        if (fdstore) {
                if (sscanf(fdstore, "%u", &max) != 1)
                        max = 0;
        } else
                max = fdstore_max_from_systemd();
        if (max == 0) {
                log_debug("No file descriptor store ($FDSTORE unset or 0): leases end when the daemon stops.");
                return 0;
        }
        if (!runtime || !*runtime) {
                log_warning("$FDSTORE=%u but no $RUNTIME_DIRECTORY to keep the lease records in: leases end when "
                            "the daemon stops (set RuntimeDirectory= in the unit).",
                            max);
                return 0;
        }
        /* RuntimeDirectory= may list several; the first is ours. */
        _cleanup_free_ char *first = strndup(runtime, strcspn(runtime, ":"));
        if (!first)
                return log_oom();

        LeaseStore *s = calloc(1, sizeof(LeaseStore));
        if (!s)
                return log_oom();
        s->max = max;
        if (asprintf(&s->dir, "%s/leases", first) < 0) {
                free(s);
                return log_oom();
        }
        r = mkdir_p(s->dir, 0700);
        if (r < 0) {
                log_error_errno(r, "Cannot make %s for the lease records: %m; leases end when the daemon stops.",
                                s->dir);
                free(s->dir);
                free(s);
                return 0;
        }
        m->store = s;
        log_info("Leases survive restarts: their files go to systemd's file descriptor store (up to %u), their "
                 "records to %s.",
                 max, s->dir);
        return 0;
}

void lease_store_free(Manager *m) {
        if (!m->store)
                return;
        free(m->store->dir);
        free(m->store);
        m->store = NULL;
}

static int store_push(LeaseStore *s, const char *name, int fd) {
        char msg[FDNAME_MAX + 64];
        int r;

        if (s->n >= s->max && !s->warned_full) {
                log_warning("The file descriptor store is full (%u files, FileDescriptorStoreMax=): leases made "
                            "from now on will not survive a restart.",
                            s->max);
                s->warned_full = true;
        }
        /* FDPOLL=0: systemd must not drop a file because poll() says
         * something (a pidfd turns readable when its process exits). */
        snprintf(msg, sizeof msg, "FDSTORE=1\nFDNAME=%s\nFDPOLL=0", name);
        r = sd_pid_notify_with_fds(0, false, msg, &fd, 1);
        if (r < 0)
                return log_warning_errno(r, "Failed to hand %s to the file descriptor store: %m", name);
        if (r == 0)
                return -ENOTCONN;
        s->n++;
        return 0;
}

/* Also without a store of our own: the service manager may keep files a
 * run with a store gave it (the store was turned off since). */
static int notify_remove(const char *name) {
        char msg[FDNAME_MAX + 32];
        snprintf(msg, sizeof msg, "FDSTOREREMOVE=1\nFDNAME=%s", name);
        return sd_pid_notify(0, false, msg);
}

static void store_remove(LeaseStore *s, const char *name) {
        if (notify_remove(name) > 0 && s && s->n > 0)
                s->n--;
}

/* The service manager handles notifications when it gets to them: until
 * it has, it still holds the files FDSTOREREMOVE named, and a device whose
 * lease was released would still be bound (cdev) or its group open
 * (legacy). Wait for it (sd_notify_barrier: it closes a pipe it was sent
 * once everything before is done), bounded: a manager that does not
 * answer costs a warning, not the daemon. */
#define BARRIER_TIMEOUT_USEC (2 * 1000 * 1000)
static void store_barrier(void) {
        int r = sd_notify_barrier(0, BARRIER_TIMEOUT_USEC);
        if (r < 0)
                log_warning_errno(r, "The service manager did not confirm within 2 s that it let go of files "
                                     "removed from its file descriptor store: %m");
}

static int write_record(LeaseStore *s, const Context *c, const char *backend) {
        _cleanup_free_ char *text = lease_record_format(c, backend);
        char path[PATH_MAX];

        if (!text)
                return -ENOMEM;
        snprintf(path, sizeof path, "%s/%" PRIu64 ".json", s->dir, c->id);
        return write_file_atomic(path, text, 0600);
}

static void remove_record(LeaseStore *s, uint64_t id) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%" PRIu64 ".json", s->dir, id);
        if (unlink(path) < 0 && errno != ENOENT)
                log_warning_errno(errno, "Failed to remove the lease record %s: %m", path);
}

/* Hands f to the store under name unless it is there already; a name
 * whose file changed (a device reopened) is removed first. */
static int store_file(LeaseStore *s, Context *c, const char *name, int fd, bool *stored) {
        if (*stored && strv_contains(c->stored_names, name))
                return 0;
        if (strv_contains(c->stored_names, name))
                store_remove(s, name);
        else if (strv_extend(&c->stored_names, name) < 0)
                return -ENOMEM;
        int r = store_push(s, name, fd);
        *stored = r >= 0;
        return r;
}

void lease_store_save(Manager *m, Context *c) {
        LeaseStore *s = m->store;
        char name[FDNAME_MAX];
        _cleanup_strv_free_ char **now = NULL;
        int r = 0;

        if (!s || c->released)
                return;

        /* 0. A file that replaces another under the same name (a device
         * reopened): the record says what the new one is before the old
         * one goes, so that a crash in between restores nothing the files
         * contradict (an unbound record is checked against the kernel). */
        for (size_t i = 0; i < c->n_devices; i++) {
                lease_device_file_name(name, sizeof name, c->id, &c->devices[i].address);
                if (!c->devices[i].stored && strv_contains(c->stored_names, name)) {
                        (void) write_record(s, c, m->backend->name);
                        break;
                }
        }

        /* 1. New files to the store. */
        bool main_stored = c->stored_main;
        if (c->iommufd >= 0) {
                lease_file_name(name, sizeof name, c->id, "iommufd");
                r = store_file(s, c, name, c->iommufd, &main_stored) < 0 ? -1 : r;
                (void) strv_extend(&now, name);
        }
        if (c->container >= 0) {
                lease_file_name(name, sizeof name, c->id, "container");
                r = store_file(s, c, name, c->container, &main_stored) < 0 ? -1 : r;
                (void) strv_extend(&now, name);
        }
        if (c->pidfd >= 0) {
                lease_file_name(name, sizeof name, c->id, "pidfd");
                r = store_file(s, c, name, c->pidfd, &main_stored) < 0 ? -1 : r;
                (void) strv_extend(&now, name);
        }
        c->stored_main = main_stored;
        for (size_t i = 0; i < c->n_groups; i++) {
                group_file_name(name, sizeof name, c->id, c->groups[i].group);
                r = store_file(s, c, name, c->groups[i].fd, &c->groups[i].stored) < 0 ? -1 : r;
                (void) strv_extend(&now, name);
        }
        for (size_t i = 0; i < c->n_devices; i++) {
                lease_device_file_name(name, sizeof name, c->id, &c->devices[i].address);
                r = store_file(s, c, name, c->devices[i].fd, &c->devices[i].stored) < 0 ? -1 : r;
                (void) strv_extend(&now, name);
        }

        if (c->id > s->last_id) {
                char text[32], path[PATH_MAX];
                snprintf(text, sizeof text, "%" PRIu64 "\n", c->id);
                snprintf(path, sizeof path, "%s/" LAST_ID_FILE, s->dir);
                if (write_file_atomic(path, text, 0600) >= 0)
                        s->last_id = c->id;
        }

        /* 2. The record, naming only files the store has. */
        int k = write_record(s, c, m->backend->name);
        if (k < 0)
                log_warning_errno(k, "%s: failed to write its lease record to %s: %m; it will not survive a restart.",
                                  c->path, s->dir);
        else if (r < 0)
                log_warning("%s: not every file of it is in the file descriptor store; it may not survive a restart.",
                            c->path);

        /* 3. Files it no longer has leave the store. */
        bool removed = false;
        for (size_t i = 0; c->stored_names && c->stored_names[i];) {
                if (strv_contains(now, c->stored_names[i])) {
                        i++;
                        continue;
                }
                store_remove(s, c->stored_names[i]);
                removed = true;
                strv_remove(c->stored_names, c->stored_names[i]);
        }
        if (removed)
                store_barrier();
}

void lease_store_unstore_device(Manager *m, Context *c, ContextDevice *cd) {
        char name[FDNAME_MAX];

        if (!m->store || !cd->stored)
                return;
        lease_device_file_name(name, sizeof name, c->id, &cd->address);
        store_remove(m->store, name);
        store_barrier();
        /* Still named: lease_store_save() replaces it (or puts it back). */
        cd->stored = false;
}

void lease_store_forget(Manager *m, Context *c) {
        LeaseStore *s = m->store;

        if (!s)
                return;
        remove_record(s, c->id);
        for (char **n = c->stored_names; n && *n; n++)
                store_remove(s, *n);
        if (c->stored_names)
                store_barrier();
        c->stored_names = strv_free(c->stored_names);
}

static void closedirp(DIR **d) {
        if (*d)
                (void) closedir(*d);
}

/* ---- restore ----------------------------------------------------------------- */

typedef struct StoredFd {
        char *name;
        int fd;
        bool claimed;
} StoredFd;

typedef struct StoredFds {
        StoredFd *items;
        size_t n;
} StoredFds;

static int take_fd(StoredFds *t, const char *name) {
        for (size_t i = 0; i < t->n; i++)
                if (!t->items[i].claimed && streq(t->items[i].name, name)) {
                        t->items[i].claimed = true;
                        return t->items[i].fd;
                }
        return -ENOENT;
}

/* Checks one device of a record against the machine and its file. NULL if
 * it holds up, else why not (a static string). */
static const char *check_device(Manager *m, Context *c, const LeaseRecordDevice *rd, int fd, PciDevice **ret) {
        char addr[PCI_ADDRESS_STRING_MAX], path[64];
        PciDevice *d = topology_get(m->topology, &rd->address);

        if (fd < 0)
                return "its file is not in the file descriptor store";
        if (!d)
                return "it went away while the daemon was not running";
        if (!driver_is_vfio(d->info.driver))
                return "it left its vfio driver while the daemon was not running";
        if (d->holder)
                return "another restored lease holds it";
        if (m->backend->cdev) {
                if (!d->info.cdev_path || !backend_is_file(m->backend, fd, d->info.cdev_path))
                        return "the stored file is not its vfio cdev";
        } else {
                snprintf(path, sizeof path, "vfio-device:%s", pci_address_format(&rd->address, addr));
                if (!backend_is_file(m->backend, fd, path) || !context_find_group(c, d->info.iommu_group))
                        return "the stored file is not a vfio device file of a group the lease holds";
        }
        *ret = d;
        return NULL;
}

/* One record: the context with its files, or a reason it does not hold up. */
static int restore_one(Manager *m, const LeaseRecord *rec, StoredFds *t, Context **ret, const char **why) {
        Backend *b = m->backend;
        char name[FDNAME_MAX];
        Context *c;
        int r, fd;

        if (!streq(rec->backend, b->name)) {
                *why = "it was made on another backend";
                return -EBADMSG;
        }
        char path[64];
        snprintf(path, sizeof path, CONTEXT_PATH_PREFIX "/%" PRIu64, rec->id);
        if (manager_find_context(m, path)) {
                *why = "another record has its id";
                return -EEXIST;
        }

        r = context_new_restored(m, rec->id, rec->owner, rec->uid, rec->lifetime, rec->description, &c);
        if (r < 0)
                return r;
        c->ioas_id = rec->ioas_id;
        c->iommu_set = rec->iommu_set;
        c->bus_id = rec->bus_id;

        /* Until it is added, a failure frees it with context_abandon(): its
         * files are the store's to close (the caller does, unclaimed). */
        lease_file_name(name, sizeof name, c->id, b->cdev ? "iommufd" : "container");
        fd = take_fd(t, name);
        if (fd < 0 || !backend_is_file(b, fd, b->cdev ? "/dev/iommu" : "/dev/vfio/vfio")) {
                *why = b->cdev ? "its iommufd is not in the file descriptor store"
                               : "its vfio container is not in the file descriptor store";
                if (fd >= 0) {
                        store_remove(m->store, name);
                        backend_close(b, fd);
                }
                goto fail_unclaim;
        }
        if (b->cdev)
                c->iommufd = fd;
        else
                c->container = fd;
        if (strv_extend(&c->stored_names, name) < 0)
                goto oom;

        if (rec->lifetime == CONTEXT_PROCESS) {
                lease_file_name(name, sizeof name, c->id, "pidfd");
                fd = take_fd(t, name);
                if (fd < 0) {
                        *why = "the pidfd of its process is not in the file descriptor store";
                        goto fail_unclaim;
                }
                if (strv_extend(&c->stored_names, name) < 0) {
                        store_remove(m->store, name);
                        safe_close(fd);
                        goto oom;
                }
                r = context_watch_process(c, fd, rec->pid);
                if (r < 0) {
                        *why = "its process cannot be watched";
                        goto fail_unclaim;
                }
        }
        c->stored_main = true;

        for (size_t i = 0; i < rec->n_groups; i++) {
                char gpath[32];
                group_file_name(name, sizeof name, c->id, rec->groups[i]);
                snprintf(gpath, sizeof gpath, "/dev/vfio/%d", rec->groups[i]);
                fd = take_fd(t, name);
                if (fd < 0 || b->cdev || !backend_is_file(b, fd, gpath) || manager_group_owner(m, rec->groups[i])) {
                        /* Its devices fail their check below. */
                        log_warning("Restoring %s: dropping IOMMU group %d: %s.", c->path, rec->groups[i],
                                    fd < 0 ? "its file is not in the file descriptor store"
                                           : "the stored file is not that group, or another lease holds it");
                        if (fd >= 0) {
                                store_remove(m->store, name);
                                backend_close(b, fd);
                        }
                        continue;
                }
                ContextGroup *n = realloc(c->groups, (c->n_groups + 1) * sizeof(ContextGroup));
                if (!n || manager_group_owner_ref(m, rec->groups[i], c) < 0) {
                        if (n)
                                c->groups = n;
                        store_remove(m->store, name);
                        backend_close(b, fd);
                        goto oom;
                }
                c->groups = n;
                c->groups[c->n_groups++] = (ContextGroup) { .group = rec->groups[i], .fd = fd, .stored = true };
                if (strv_extend(&c->stored_names, name) < 0)
                        goto oom;
        }

        c->devices = calloc(rec->n_devices ? rec->n_devices : 1, sizeof(ContextDevice));
        if (!c->devices)
                goto oom;
        for (size_t i = 0; i < rec->n_devices; i++) {
                const LeaseRecordDevice *rd = &rec->devices[i];
                char addr[PCI_ADDRESS_STRING_MAX];
                PciDevice *d = NULL;

                lease_device_file_name(name, sizeof name, c->id, &rd->address);
                fd = take_fd(t, name);
                const char *bad = check_device(m, c, rd, fd, &d);
                if (bad) {
                        log_warning("Restoring %s: dropping %s from the lease: %s.", c->path,
                                    pci_address_format(&rd->address, addr), bad);
                        if (fd >= 0) {
                                store_remove(m->store, name);
                                backend_close(b, fd);
                        }
                        continue;
                }
                /* Named first: from here a failure takes it out of the
                 * store with the rest (lease_store_forget()). */
                if (strv_extend(&c->stored_names, name) < 0) {
                        store_remove(m->store, name);
                        backend_close(b, fd);
                        goto oom;
                }
                ContextDevice *cd = &c->devices[c->n_devices++];
                *cd = (ContextDevice) { .address = rd->address, .iommu_group = d->info.iommu_group, .fd = fd,
                                        .devid = rd->devid, .bound = rd->bound && b->cdev,
                                        .bound_by_client = rd->bound_by_client && b->cdev, .stored = true };
                d->holder = c;
                manager_device_holder_changed(m, d);
                if (cd->bound && manager_group_owner_ref(m, cd->iommu_group, c) < 0) {
                        cd->bound = false;
                        goto oom;
                }
        }
        /* A group none of its restored devices needs is let go, as when
         * its last device is detached; the kernel drops the container's
         * IOMMU with its last group. */
        for (size_t i = 0; i < c->n_groups;) {
                bool needed = false;
                for (size_t k = 0; k < c->n_devices; k++)
                        needed = needed || c->devices[k].iommu_group == c->groups[i].group;
                if (needed) {
                        i++;
                        continue;
                }
                group_file_name(name, sizeof name, c->id, c->groups[i].group);
                store_remove(m->store, name);
                strv_remove(c->stored_names, name);
                manager_group_owner_unref(m, c->groups[i].group, c);
                backend_close(b, c->groups[i].fd);
                c->groups[i] = c->groups[--c->n_groups];
        }
        if (c->n_groups == 0)
                c->iommu_set = false;

        *ret = c;
        return 0;

oom:
        *why = "out of memory";
        r = -ENOMEM;
        goto fail;
fail_unclaim:
        r = -EBADMSG;
fail:
        /* Undo the holder and group bookkeeping, close what it took, and
         * take it out of the store. */
        lease_store_forget(m, c);
        c->released = true;
        context_unref_busy(c);
        return r;
}

/* The files systemd passed, with their names. */
static int stored_fds_get(StoredFds *t) {
        char **names = NULL;
        int n = sd_listen_fds_with_names(true, &names);

        if (n <= 0) {
                strv_free(names);
                return n;
        }
        t->items = calloc((size_t) n, sizeof(StoredFd));
        if (!t->items) {
                strv_free(names);
                return -ENOMEM;
        }
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
                t->items[i] = (StoredFd) { .name = names && names[i] ? TAKE_PTR(names[i]) : strdup("unknown"), .fd = fd };
        }
        t->n = (size_t) n;
        strv_free(names);
        return n;
}

static void stored_fds_done(Manager *m, StoredFds *t) {
        for (size_t i = 0; i < t->n; i++) {
                if (!t->items[i].claimed) {
                        log_notice("Closing stored file %s: no lease record names it.", t->items[i].name ? t->items[i].name : "(unnamed)");
                        if (t->items[i].name)
                                store_remove(m->store, t->items[i].name);
                        backend_close(m->backend, t->items[i].fd);
                }
                free(t->items[i].name);
        }
        free(t->items);
        *t = (StoredFds) {};
}

/* A start that fails for a passing reason (out of memory or files, an I/O
 * error) must not cost the leases: the files are closed here but left in
 * the store, for the next start (the service restarts on failure). */
static void stored_fds_abandon(StoredFds *t) {
        for (size_t i = 0; i < t->n; i++) {
                if (!t->items[i].claimed)
                        safe_close(t->items[i].fd);
                free(t->items[i].name);
        }
        free(t->items);
        *t = (StoredFds) {};
}

static bool error_is_transient(int r) {
        return r == -ENOMEM || r == -EMFILE || r == -ENFILE || r == -EIO || r == -EAGAIN || r == -EINTR;
}

/* Without a store, records of an earlier run with one are stale. */
static void remove_stale_records(void) {
        const char *runtime = getenv("RUNTIME_DIRECTORY");
        char dirpath[PATH_MAX];
        unsigned n = 0;

        if (!runtime || !*runtime)
                return;
        snprintf(dirpath, sizeof dirpath, "%.*s/leases", (int) strcspn(runtime, ":"), runtime);
        _cleanup_(closedirp) DIR *dir = opendir(dirpath);
        if (!dir)
                return;
        for (struct dirent *de; (de = readdir(dir));) {
                if (de->d_name[0] == '.')
                        continue;
                if (unlinkat(dirfd(dir), de->d_name, 0) >= 0 && !streq(de->d_name, LAST_ID_FILE))
                        n++;
        }
        if (n > 0)
                log_notice("Removed %u lease record%s of an earlier run from %s: there is no file descriptor "
                           "store now.",
                           n, n == 1 ? "" : "s", dirpath);
}

int lease_store_restore(Manager *m) {
        LeaseStore *s = m->store;
        StoredFds t = {};
        int r, restored = 0, dropped = 0;

        r = stored_fds_get(&t);
        if (r < 0)
                return log_error_errno(r, "Failed to read the files passed by systemd (LISTEN_FDS): %m");
        if (!s) {
                if (t.n > 0)
                        log_warning("Got %zu files from systemd but no file descriptor store is configured "
                                    "($FDSTORE): closing them, and asking systemd to let go of them too.",
                                    t.n);
                stored_fds_done(m, &t);
                if (t.n > 0)
                        store_barrier();
                remove_stale_records();
                return 0;
        }

        if (t.n > 0) {
                int fds_n = 0;
                _cleanup_free_ int *fds = calloc(t.n, sizeof(int));
                if (!fds) {
                        stored_fds_done(m, &t);
                        return log_oom();
                }
                for (size_t i = 0; i < t.n; i++)
                        fds[fds_n++] = t.items[i].fd;
                r = backend_adopt(m->backend, fds, (size_t) fds_n);
                if (r < 0)
                        log_warning_errno(r, "The %s backend could not take up every stored file: %m",
                                          m->backend->name);
                s->n = (unsigned) t.n;
        }

        /* First the ids given out so far: restoring a lease rewrites its
         * record, and must not take the count back to its own id. */
        {
                _cleanup_free_ char *last_text = NULL;
                char p[PATH_MAX];
                unsigned long long last;
                snprintf(p, sizeof p, "%s/" LAST_ID_FILE, s->dir);
                if (read_file_full(p, RECORD_SIZE_MAX, &last_text, NULL) >= 0 && sscanf(last_text, "%llu", &last) == 1 &&
                    last > m->next_context_id) {
                        m->next_context_id = last;
                        s->last_id = last;
                }
        }

        _cleanup_(closedirp) DIR *dir = opendir(s->dir);
        if (!dir) {
                r = -errno;
                stored_fds_abandon(&t);
                return log_error_errno(r, "Failed to read the lease records in %s: %m; exiting so that a new "
                                          "start tries again (the stored files stay with systemd).",
                                       s->dir);
        }
        for (struct dirent *de; (de = readdir(dir));) {
                char path[PATH_MAX], *end;
                _cleanup_free_ char *text = NULL, *error = NULL;
                _cleanup_(lease_record_done) LeaseRecord rec = {};
                const char *why = NULL;
                Context *c = NULL;

                if (de->d_name[0] == '.')
                        continue;
                if (streq(de->d_name, LAST_ID_FILE))
                        continue;
                /* A temporary file a crash left (write_file_atomic()). */
                if (strstr(de->d_name, ".json.") || strncmp(de->d_name, LAST_ID_FILE ".", strlen(LAST_ID_FILE ".")) == 0) {
                        (void) unlinkat(dirfd(dir), de->d_name, 0);
                        continue;
                }
                snprintf(path, sizeof path, "%s/%s", s->dir, de->d_name);
                errno = 0;
                unsigned long long id = strtoull(de->d_name, &end, 10);
                if (errno != 0 || id == 0 || !streq(end, ".json")) {
                        log_warning("Ignoring %s: not a lease record (ID.json).", path);
                        continue;
                }
                r = read_file_full(path, RECORD_SIZE_MAX, &text, NULL);
                if (error_is_transient(r)) {
                        stored_fds_abandon(&t);
                        return log_error_errno(r, "Failed to read the lease record %s: %m; exiting so that a new "
                                                  "start tries again (the stored files stay with systemd).",
                                               path);
                }
                if (r >= 0)
                        r = lease_record_parse(text, &rec, &error);
                if (r >= 0 && rec.id != id) {
                        r = -EBADMSG;
                        error = strdup("its \"id\" is not its file name");
                }
                if (r < 0) {
                        log_warning("Dropping the lease record %s: %s.", path,
                                    error ? error : strerror(-r));
                        (void) unlink(path);
                        dropped++;
                        continue;
                }
                r = restore_one(m, &rec, &t, &c, &why);
                if (r < 0) {
                        log_warning("Not restoring the lease %s/%" PRIu64 " of uid %u: %s; its files are closed.",
                                    CONTEXT_PATH_PREFIX, rec.id, (unsigned) rec.uid, why ? why : strerror(-r));
                        (void) unlink(path);
                        dropped++;
                        continue;
                }
                r = manager_add_context(m, c);
                if (r < 0) {
                        /* Closed, not released: the store keeps the lease
                         * for the next start. */
                        context_abandon(c);
                        stored_fds_abandon(&t);
                        return log_oom();
                }
                log_info("Restored %s (owner %s, uid %u, %s, %zu device%s) from the file descriptor store.", c->path,
                         c->owner, (unsigned) c->owner_uid, context_lifetime_to_string(c->lifetime), c->n_devices,
                         c->n_devices == 1 ? "" : "s");
                restored++;
        }
        /* Whatever no record claimed is closed, and leaves the store. */
        stored_fds_done(m, &t);
        if (restored > 0 || dropped > 0)
                log_info("Restored %d lease%s from the previous run%s.", restored, restored == 1 ? "" : "s",
                         dropped > 0 ? "; dropped some that did not hold up (see above)" : "");
        return restored;
}

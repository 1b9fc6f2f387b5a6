/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The emulated kernel, device side: a machine file stands in for sysfs and
 * udev. The file is watched; every rewrite is diffed against the last good
 * machine and delivered as the uevents the kernel would have sent. */
#include <errno.h>
#include <stdio.h>
#include <sys/inotify.h>

#include "backend-emulated.h"
#include "emulated-vfio.h"
#include "log.h"
#include "topology.h"
#include "util.h"

#define VFIO_CDEV_PREFIX "/dev/vfio/devices/vfio"

typedef struct EmulatedBackend {
        Backend base; /* first: Backend * and EmulatedBackend * convert */

        char *path;     /* absolute, so a later chdir() does not matter */
        char *dir;      /* what is watched: updates are renames over the file */
        char *filename; /* the name in dir that matters */
        sd_event_source *inotify_source;

        Machine *initial; /* loaded by backend_emulated_new(), until start() */

        /* The state of the emulated kernel: the machine as delivered so
         * far, cdev paths included. NULL before start(). */
        Machine *machine;
        /* vfio-dev minor numbers in use: index N is /dev/vfio/devices/vfioN.
         * The kernel hands out the lowest free one (an IDA). */
        bool *cdev_used;
        size_t n_cdev_used;

        unsigned n_updates;

        /* The kernel's side of the vfio/iommufd uAPI, over a device table
         * that follows every delivered event (the daemon keeps its own). */
        Topology *kernel;
        EmulatedVfio *vfio;
} EmulatedBackend;

static const BackendOps emulated_ops;

static EmulatedBackend *emulated(Backend *b) {
        return b && b->ops == &emulated_ops ? (EmulatedBackend *) b : NULL;
}

static const char *model_name(bool cdev) {
        return cdev ? "cdev" : "group";
}

static const char *plural_s(size_t n) {
        return n == 1 ? "" : "s";
}

/* ---- vfio-dev numbering ---- */

static int cdev_allocate(EmulatedBackend *s, char **ret) {
        size_t i;

        for (i = 0; i < s->n_cdev_used && s->cdev_used[i]; i++)
                ;
        if (i == s->n_cdev_used) {
                size_t n = s->n_cdev_used ? s->n_cdev_used * 2 : 16;
                bool *u = realloc(s->cdev_used, n * sizeof(bool));
                if (!u)
                        return -ENOMEM;
                memset(u + s->n_cdev_used, 0, (n - s->n_cdev_used) * sizeof(bool));
                s->cdev_used = u;
                s->n_cdev_used = n;
        }

        if (asprintf(ret, VFIO_CDEV_PREFIX "%zu", i) < 0)
                return -ENOMEM;
        s->cdev_used[i] = true;
        return 0;
}

static void cdev_release(EmulatedBackend *s, const char *path) {
        const char *p;
        char *end;
        unsigned long i;

        if (!path || strncmp(path, VFIO_CDEV_PREFIX, strlen(VFIO_CDEV_PREFIX)) != 0)
                return;
        p = path + strlen(VFIO_CDEV_PREFIX);
        errno = 0;
        i = strtoul(p, &end, 10);
        if (errno == 0 && end != p && *end == 0 && i < s->n_cdev_used)
                s->cdev_used[i] = false;
}

/* ---- Delivering events ---- */

/* The emulated kernel's own table changes first, as in the kernel: by the
 * time udev reports an unbind, the device's open files are dead. Under the
 * emulation's lock, because hot resets run on worker threads. */
static void kernel_apply(EmulatedBackend *s, BackendAction action, const PciDeviceInfo *info) {
        char buf[PCI_ADDRESS_STRING_MAX];
        int r = 0;

        if (!s->vfio)
                return;
        emulated_vfio_lock(s->vfio);
        if (action == BACKEND_REMOVE || action == BACKEND_UNBIND)
                emulated_vfio_device_gone(s->vfio, &info->address);
        if (action == BACKEND_REMOVE)
                (void) topology_remove(s->kernel, &info->address);
        else
                r = topology_put(s->kernel, info, NULL);
        emulated_vfio_unlock(s->vfio);
        if (r < 0)
                log_error_errno(r, "Emulated kernel: failed to record %s of %s: %m", backend_action_to_string(action),
                                pci_address_format(&info->address, buf));
}

static void emit(EmulatedBackend *s, BackendAction action, const PciDeviceInfo *info) {
        kernel_apply(s, action, info);
        backend_emit(&s->base, action, info);
}

static void device_unbind(EmulatedBackend *s, const PciDeviceInfo *o) {
        PciDeviceInfo u = pci_device_info_unbound(o);

        cdev_release(s, o->cdev_path);
        emit(s, BACKEND_UNBIND, &u);
}

/* d gets its cdev path here. as is what the device looks like while the
 * driver binds: the new driver on the old state, when a CHANGE follows. */
static int device_bind(EmulatedBackend *s, PciDeviceInfo *d, const PciDeviceInfo *as) {
        PciDeviceInfo b = *as;
        int r;

        if (s->base.cdev && driver_is_vfio(d->driver)) {
                r = cdev_allocate(s, &d->cdev_path);
                if (r < 0)
                        return r;
        }
        b.driver = d->driver;
        b.cdev_path = d->cdev_path;
        emit(s, BACKEND_BIND, &b);
        return 0;
}

static void device_remove(EmulatedBackend *s, const PciDeviceInfo *o) {
        PciDeviceInfo u = pci_device_info_unbound(o);

        /* The driver's remove() runs before the device goes. */
        if (o->driver)
                device_unbind(s, o);
        emit(s, BACKEND_REMOVE, &u);
}

static int device_add(EmulatedBackend *s, PciDeviceInfo *d) {
        PciDeviceInfo u = pci_device_info_unbound(d);

        /* udev sees "add" before a driver probes the device. */
        emit(s, BACKEND_ADD, &u);
        return d->driver ? device_bind(s, d, d) : 0;
}

/* Same hardware at the same address: driver and properties may change. */
static int device_update(EmulatedBackend *s, const PciDeviceInfo *o, PciDeviceInfo *d) {
        int r;

        if (!streq_ptr(o->driver, d->driver)) {
                if (o->driver)
                        device_unbind(s, o);
                if (d->driver) {
                        r = device_bind(s, d, o);
                        if (r < 0)
                                return r;
                }
        } else if (o->cdev_path) {
                /* Still bound: the device keeps its vfio-dev node. */
                d->cdev_path = strdup(o->cdev_path);
                if (!d->cdev_path)
                        return -ENOMEM;
        }

        if (o->iommu_group != d->iommu_group || !strv_equal(o->reset_methods, d->reset_methods) ||
            o->slot_reset != d->slot_reset)
                emit(s, BACKEND_CHANGE, d);
        return 0;
}

/* Delivers what differs between the current machine (none before start)
 * and next, in udev's order, and makes next current. Children sit on buses
 * numbered after their bridge (the parser enforces it), so reverse address
 * order removes children first and address order adds bridges first. */
static int emulated_apply(EmulatedBackend *s, Machine *next) {
        const Machine *old = s->machine;
        size_t n_old = old ? old->n_devices : 0;
        int r = 0, k;

        for (size_t i = n_old; i-- > 0;)
                if (!machine_find(next, &old->devices[i].address))
                        device_remove(s, &old->devices[i]);

        for (size_t i = 0; i < next->n_devices; i++) {
                PciDeviceInfo *d = &next->devices[i];
                const PciDeviceInfo *o = machine_find(old, &d->address);

                if (!o)
                        continue;
                if (pci_device_info_same_hardware(o, d))
                        k = device_update(s, o, d);
                else {
                        /* Another card in the slot: udev sees it go and come. */
                        device_remove(s, o);
                        k = device_add(s, d);
                }
                if (k < 0 && r == 0)
                        r = k;
        }

        for (size_t i = 0; i < next->n_devices; i++)
                if (!machine_find(old, &next->devices[i].address)) {
                        k = device_add(s, &next->devices[i]);
                        if (k < 0 && r == 0)
                                r = k;
                }

        /* Even after a failure: what was delivered is what next says. */
        machine_free(s->machine);
        s->machine = next;
        return r;
}

/* ---- Watching the file ---- */

static void emulated_update(EmulatedBackend *s) {
        _cleanup_(machine_freep) Machine *next = NULL;
        _cleanup_free_ char *error = NULL;
        size_t n = s->machine ? s->machine->n_devices : 0;
        int r;

        s->n_updates++;

        r = machine_load(s->path, &next, &error);
        if (r == -ENOMEM) {
                log_oom();
                return;
        }
        /* A half-edited file must not make devices vanish: keep going with
         * what we have until the file is good again. */
        if (r < 0) {
                log_warning("Emulated kernel: ignoring an invalid update: %s; keeping the last good machine (%zu device%s).",
                            strempty(error), n, plural_s(n));
                return;
        }
        if (next->cdev != s->base.cdev) {
                log_warning("Emulated kernel: ignoring the update of %s: \"cdev\" changed from %s to %s, but the uAPI "
                            "model cannot change at runtime (restart the daemon); keeping the last good machine (%zu "
                            "device%s).",
                            s->path, s->base.cdev ? "true" : "false", next->cdev ? "true" : "false", n, plural_s(n));
                return;
        }

        log_info("Emulated kernel: reloaded %s (%zu device%s, %s model)", s->path, next->n_devices,
                 plural_s(next->n_devices), model_name(next->cdev));
        emulated_vfio_set_reset_delay(s->vfio, next->reset_delay_ms);
        r = emulated_apply(s, TAKE_PTR(next));
        if (r < 0)
                log_error_errno(r, "Emulated kernel: failed to apply the update of %s: %m", s->path);
}

static int on_inotify(sd_event_source *source, const struct inotify_event *ev, void *userdata) {
        EmulatedBackend *s = userdata;

        /* After an overflow nobody knows what happened: look again. */
        if (!(ev->mask & IN_Q_OVERFLOW) && (ev->len == 0 || !streq(ev->name, s->filename)))
                return 0;

        emulated_update(s);
        return 0;
}

static int emulated_start(Backend *b) {
        EmulatedBackend *s = emulated(b);
        int r;

        if (!s->initial)
                return -EBUSY;

        /* Watched before the devices are delivered, so that a rewrite in
         * between is not missed. A rename over the file is the normal
         * update (IN_MOVED_TO); an editor writing in place gives
         * IN_CLOSE_WRITE. */
        r = sd_event_add_inotify(b->event, &s->inotify_source, s->dir, IN_CLOSE_WRITE | IN_MOVED_TO, on_inotify, s);
        if (r < 0)
                return log_error_errno(r, "Emulated kernel: cannot watch %s: %m", s->dir);
        (void) sd_event_source_set_description(s->inotify_source, "emulated-machine-file");

        emulated_vfio_set_reset_delay(s->vfio, s->initial->reset_delay_ms);
        r = emulated_apply(s, TAKE_PTR(s->initial));
        if (r < 0)
                return log_error_errno(r, "Emulated kernel: failed to deliver the machine: %m");
        return 0;
}

static void emulated_free(Backend *b) {
        EmulatedBackend *s = emulated(b);

        sd_event_source_disable_unref(s->inotify_source);
        emulated_vfio_free(s->vfio);
        topology_free(s->kernel);
        machine_free(s->initial);
        machine_free(s->machine);
        free(s->cdev_used);
        free(s->path);
        free(s->dir);
        free(s->filename);
        free(s);
}

static int emulated_open(Backend *b, const char *path, int flags) {
        return emulated_vfio_open(emulated(b)->vfio, path, flags);
}

static int emulated_ioctl(Backend *b, int fd, unsigned long request, void *arg) {
        return emulated_vfio_ioctl(emulated(b)->vfio, fd, request, arg);
}

static void emulated_close(Backend *b, int fd) {
        (void) emulated_vfio_close(emulated(b)->vfio, fd);
}

static const BackendOps emulated_ops = {
        .start = emulated_start,
        .free = emulated_free,
        .open = emulated_open,
        .ioctl = emulated_ioctl,
        .close = emulated_close,
};

/* Absolute, without resolving symlinks: the watched name is the one given. */
static int split_path(const char *path, char **ret_path, char **ret_dir, char **ret_filename) {
        _cleanup_free_ char *abs = NULL, *cwd = NULL;
        const char *slash;

        if (path[0] == '/')
                abs = strdup(path);
        else {
                cwd = get_current_dir_name();
                if (!cwd)
                        return -errno;
                if (asprintf(&abs, "%s/%s", cwd, path) < 0)
                        abs = NULL;
        }
        if (!abs)
                return -ENOMEM;

        slash = strrchr(abs, '/');
        if (!slash[1])
                return -EISDIR;
        *ret_dir = slash == abs ? strdup("/") : strndup(abs, (size_t) (slash - abs));
        *ret_filename = strdup(slash + 1);
        if (!*ret_dir || !*ret_filename)
                return -ENOMEM;
        *ret_path = TAKE_PTR(abs);
        return 0;
}

int backend_emulated_new(sd_event *e, const char *machine_path, BackendEventHandler handler, void *userdata,
                         Backend **ret) {
        _cleanup_(backend_freep) Backend *b = NULL;
        _cleanup_free_ char *error = NULL;
        EmulatedBackend *s;
        int r;

        s = calloc(1, sizeof(EmulatedBackend));
        if (!s)
                return log_oom();
        b = &s->base;
        b->ops = &emulated_ops;
        b->emulated = true;
        b->event = sd_event_ref(e);
        b->handler = handler;
        b->userdata = userdata;

        r = machine_load(machine_path, &s->initial, &error);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0) {
                log_error("Emulated kernel: %s", strempty(error));
                return -EINVAL;
        }

        r = split_path(machine_path, &s->path, &s->dir, &s->filename);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "Emulated kernel: cannot use %s as the machine file: %m", machine_path);

        b->cdev = s->initial->cdev;
        s->kernel = topology_new(NULL);
        if (!s->kernel)
                return log_oom();
        s->vfio = emulated_vfio_new(s->kernel, b->cdev);
        if (!s->vfio)
                return log_oom();
        b->name = strdup(b->cdev ? "emulated-iommufd" : "emulated-group");
        if (!b->name)
                return log_oom();

        log_info("Emulated kernel: loaded %s (%zu device%s, %s model)", machine_path, s->initial->n_devices,
                 plural_s(s->initial->n_devices), model_name(b->cdev));

        *ret = TAKE_PTR(b);
        return 0;
}

const Machine *backend_emulated_get_machine(Backend *b) {
        EmulatedBackend *s = emulated(b);

        return s ? s->machine : NULL;
}

unsigned backend_emulated_get_n_updates(Backend *b) {
        EmulatedBackend *s = emulated(b);

        return s ? s->n_updates : 0;
}

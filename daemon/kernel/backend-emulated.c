/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The emulated kernel, device side: a machine file stands in for sysfs and
 * udev. The file is watched; every rewrite is diffed against the last good
 * machine and delivered as the uevents the kernel would have sent. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

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

        /* A changed file is parsed on a worker thread (a large machine takes
         * tens of milliseconds), so the daemon goes on answering meanwhile;
         * the loop hears of the result through the eventfd. */
        pthread_t load_thread;
        bool loading, load_again;
        int load_eventfd;
        sd_event_source *load_source;
        Machine *loaded;
        char *load_error;
        int load_result;

        /* The events of an update wait here and are delivered a batch per
         * turn of the event loop, as uevents arrive: a thousand hotplugged
         * functions never keep the daemon from answering for long. The
         * initial machine is delivered at once. */
        struct PendingEvent *pending;
        size_t n_pending, pending_head, allocated_pending;
        sd_event_source *deliver_source;
        bool queue_events;
        size_t cdev_hint; /* no free vfio-dev number below this one */

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

        /* The lowest free number, as the kernel's IDA hands out, without
         * looking at every number below it each time. */
        for (i = s->cdev_hint; i < s->n_cdev_used && s->cdev_used[i]; i++)
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
        s->cdev_hint = i + 1;
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
        if (errno == 0 && end != p && *end == 0 && i < s->n_cdev_used) {
                s->cdev_used[i] = false;
                if (i < s->cdev_hint)
                        s->cdev_hint = i;
        }
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

typedef struct PendingEvent {
        BackendAction action;
        PciDeviceInfo info;
} PendingEvent;

#define DELIVER_BATCH 128

static void deliver(EmulatedBackend *s, BackendAction action, const PciDeviceInfo *info) {
        kernel_apply(s, action, info);
        backend_emit(&s->base, action, info);
}

static void emit(EmulatedBackend *s, BackendAction action, const PciDeviceInfo *info) {
        if (!s->queue_events) {
                deliver(s, action, info);
                return;
        }
        if (s->n_pending == s->allocated_pending) {
                size_t n = s->allocated_pending ? s->allocated_pending * 2 : 64;
                PendingEvent *p = realloc(s->pending, n * sizeof(PendingEvent));
                if (!p)
                        goto fallback;
                s->pending = p;
                s->allocated_pending = n;
        }
        PendingEvent *e = &s->pending[s->n_pending];
        if (pci_device_info_copy(&e->info, info) < 0)
                goto fallback;
        e->action = action;
        s->n_pending++;
        (void) sd_event_source_set_enabled(s->deliver_source, SD_EVENT_ON);
        return;

fallback:
        /* Out of memory: late is better than lost, and order is kept only
         * if nothing is waiting. */
        log_oom();
        if (s->pending_head == s->n_pending)
                deliver(s, action, info);
}

static void pending_clear(EmulatedBackend *s) {
        for (size_t i = s->pending_head; i < s->n_pending; i++)
                pci_device_info_done(&s->pending[i].info);
        s->n_pending = s->pending_head = 0;
}

static int on_deliver(sd_event_source *source, void *userdata) {
        EmulatedBackend *s = userdata;
        for (unsigned k = 0; k < DELIVER_BATCH && s->pending_head < s->n_pending; k++) {
                PendingEvent *e = &s->pending[s->pending_head++];
                deliver(s, e->action, &e->info);
                pci_device_info_done(&e->info);
        }
        if (s->pending_head < s->n_pending)
                return 0; /* more on the next turn, after the bus */
        s->n_pending = s->pending_head = 0;
        /* A burst's queue is not kept for the next one. */
        free(s->pending);
        s->pending = NULL;
        s->allocated_pending = 0;
        (void) sd_event_source_set_enabled(source, SD_EVENT_OFF);
        /* The update is through once its last event is. */
        s->n_updates++;
        return 0;
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

static void *load_thread(void *userdata) {
        EmulatedBackend *s = userdata;
        uint64_t one = 1;

        s->load_result = machine_load_direct(s->path, &s->loaded, &s->load_error);
        if (write(s->load_eventfd, &one, sizeof one) < 0)
                abort(); /* an eventfd write cannot fail here */
        return NULL;
}

static void emulated_load(EmulatedBackend *s) {
        if (s->loading) {
                /* Changed again while being read: read it once more after. */
                s->load_again = true;
                return;
        }
        s->load_again = false;
        int r = pthread_create(&s->load_thread, NULL, load_thread, s);
        if (r != 0) {
                log_error_errno(r, "Emulated kernel: cannot start reading %s: %m", s->path);
                s->n_updates++;
                return;
        }
        s->loading = true;
}

/* The parse is done: apply it (its events are queued) or say why not. */
static void emulated_update(EmulatedBackend *s, Machine *parsed, int r, const char *error) {
        _cleanup_(machine_freep) Machine *next = NULL;
        size_t n = s->machine ? s->machine->n_devices : 0;
        bool queued = false;

        if (r >= 0) {
                next = parsed;
                /* The parse tree was allocated before the machine, on the
                 * worker's arena, and is freed: its pages go back. */
                (void) malloc_trim(0);
        } else
                machine_free(parsed);
        if (r == -ENOMEM)
                log_oom();
        /* A half-edited file must not make devices vanish: keep going with
         * what we have until the file is good again. */
        else if (r < 0)
                log_warning("Emulated kernel: ignoring an invalid update: %s; keeping the last good machine (%zu device%s).",
                            strempty(error), n, plural_s(n));
        else if (next->cdev != s->base.cdev)
                log_warning("Emulated kernel: ignoring the update of %s: \"cdev\" changed from %s to %s, but the uAPI "
                            "model cannot change at runtime (restart the daemon); keeping the last good machine (%zu "
                            "device%s).",
                            s->path, s->base.cdev ? "true" : "false", next->cdev ? "true" : "false", n, plural_s(n));
        else {
                log_info("Emulated kernel: reloaded %s (%zu device%s, %s model)", s->path, next->n_devices,
                         plural_s(next->n_devices), model_name(next->cdev));
                emulated_vfio_set_reset_delay(s->vfio, next->reset_delay_ms);
                r = emulated_apply(s, TAKE_PTR(next));
                if (r < 0)
                        log_error_errno(r, "Emulated kernel: failed to apply the update of %s: %m", s->path);
                queued = s->pending_head < s->n_pending;
        }
        /* Counted when its last event is delivered, or now if it has none. */
        if (!queued)
                s->n_updates++;
}

static int on_loaded(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        EmulatedBackend *s = userdata;
        _cleanup_free_ char *error = NULL;
        uint64_t value;

        if (read(fd, &value, sizeof value) < 0 && errno != EAGAIN)
                return log_error_errno(errno, "Emulated kernel: cannot read the load notification: %m");
        if (!s->loading)
                return 0;
        (void) pthread_join(s->load_thread, NULL);
        s->loading = false;
        error = TAKE_PTR(s->load_error);
        Machine *parsed = TAKE_PTR(s->loaded);
        emulated_update(s, parsed, s->load_result, error);
        if (s->load_again)
                emulated_load(s);
        return 0;
}

static int on_inotify(sd_event_source *source, const struct inotify_event *ev, void *userdata) {
        EmulatedBackend *s = userdata;

        /* After an overflow nobody knows what happened: look again. */
        if (!(ev->mask & IN_Q_OVERFLOW) && (ev->len == 0 || !streq(ev->name, s->filename)))
                return 0;

        emulated_load(s);
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

        s->load_eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->load_eventfd < 0)
                return log_error_errno(errno, "Emulated kernel: cannot make an eventfd: %m");
        r = sd_event_add_io(b->event, &s->load_source, s->load_eventfd, EPOLLIN, on_loaded, s);
        if (r < 0)
                return log_error_errno(r, "Emulated kernel: cannot watch the machine file reader: %m");
        r = sd_event_add_defer(b->event, &s->deliver_source, on_deliver, s);
        if (r < 0)
                return log_error_errno(r, "Emulated kernel: cannot set up event delivery: %m");
        (void) sd_event_source_set_enabled(s->deliver_source, SD_EVENT_OFF);

        /* The machine as it is at start is delivered at once: it is the
         * state the daemon starts from, not a change. */
        emulated_vfio_set_reset_delay(s->vfio, s->initial->reset_delay_ms);
        r = emulated_apply(s, TAKE_PTR(s->initial));
        if (r < 0)
                return log_error_errno(r, "Emulated kernel: failed to deliver the machine: %m");
        s->queue_events = true;
        return 0;
}

static void emulated_free(Backend *b) {
        EmulatedBackend *s = emulated(b);

        sd_event_source_disable_unref(s->inotify_source);
        if (s->loading)
                (void) pthread_join(s->load_thread, NULL);
        machine_free(s->loaded);
        free(s->load_error);
        sd_event_source_disable_unref(s->load_source);
        safe_close(s->load_eventfd);
        sd_event_source_disable_unref(s->deliver_source);
        pending_clear(s);
        free(s->pending);
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

static int emulated_adopt(Backend *b, const int *fds, size_t n) {
        return emulated_vfio_adopt(emulated(b)->vfio, fds, n);
}

static bool emulated_is_file(Backend *b, int fd, const char *path) {
        return emulated_vfio_is_file(emulated(b)->vfio, fd, path);
}

static const BackendOps emulated_ops = {
        .start = emulated_start,
        .free = emulated_free,
        .open = emulated_open,
        .ioctl = emulated_ioctl,
        .close = emulated_close,
        .adopt = emulated_adopt,
        .is_file = emulated_is_file,
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
        s->load_eventfd = -1;

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

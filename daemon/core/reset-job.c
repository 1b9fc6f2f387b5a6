/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>

#include "errors.h"
#include "log.h"
#include "manager.h"
#include "reset-job.h"
#include "util.h"
#include "vfio-compat.h"

/* EBUSY: a concurrent access held the device's memory lock; EAGAIN: the
 * topology changed. Both are worth a few more tries, not a client error. */
#define RESET_ATTEMPTS 4
#define RESET_RETRY_DELAY_MS 100

typedef struct ResetJob {
        struct ResetJob *next;
        Manager *manager;
        Context *context;
        sd_bus_message *request;
        bool release_after;

        PciAddress target;
        char **affected;
        int fd;                 /* the context's file of the target */
        bool cdev;
        struct hr_vfio_pci_hot_reset *arg;

        bool running;
        uint64_t started_usec;
        int result;
        unsigned attempts;
        pthread_t thread;
        int eventfd;
        sd_event_source *done_source;
} ResetJob;

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static bool jobs_overlap(const ResetJob *a, const ResetJob *b) {
        for (size_t i = 0; a->affected && a->affected[i]; i++)
                if (strv_contains(b->affected, a->affected[i]))
                        return true;
        return false;
}

static void *reset_thread(void *userdata) {
        ResetJob *j = userdata;
        Backend *b = j->manager->backend;
        uint64_t one = 1;
        int r = 0;

        for (j->attempts = 1; j->attempts <= RESET_ATTEMPTS; j->attempts++) {
                r = backend_ioctl(b, j->fd, HR_VFIO_DEVICE_PCI_HOT_RESET, j->arg);
                if (r != -EBUSY && r != -EAGAIN)
                        break;
                struct timespec ts = { .tv_nsec = RESET_RETRY_DELAY_MS * 1000000L };
                nanosleep(&ts, NULL);
        }
        j->result = r < 0 ? r : 0;
        /* The loop learns we are done through the eventfd. */
        if (write(j->eventfd, &one, sizeof one) < 0)
                abort();
        return NULL;
}

static void job_free(ResetJob *j) {
        if (!j)
                return;
        Backend *b = j->manager->backend;
        backend_close(b, j->fd);
        for (uint32_t i = 0; j->arg && i < j->arg->count; i++)
                backend_close(b, j->arg->group_fds[i]);
        sd_event_source_disable_unref(j->done_source);
        safe_close(j->eventfd);
        sd_bus_message_unref(j->request);
        strv_free(j->affected);
        free(j->arg);
        free(j);
}

static void job_unlink(Manager *m, ResetJob *j) {
        for (ResetJob **p = &m->jobs; *p; p = &(*p)->next)
                if (*p == j) {
                        *p = j->next;
                        return;
                }
}

/* The kernel's errno in words, as a D-Bus error on the request. */
static void job_reply_error(ResetJob *j, const char *addr, sd_bus_error *error) {
        int r = -j->result;
        switch (r) {
        case ENODEV:
                sd_bus_error_setf(error, BUS_ERROR_NO_RESET_MECHANISM,
                                  "Hot reset of %s failed: the kernel has no reset for its slot or bus (ENODEV), "
                                  "or the device went away.",
                                  addr);
                break;
        case EINVAL:
                sd_bus_error_setf(error, BUS_ERROR_NOT_OWNED,
                                  "Hot reset of %s refused by the kernel (EINVAL): a device in the scope is not owned "
                                  "by the context or not bound to a vfio driver; CheckHotReset names it.",
                                  addr);
                break;
        case EBUSY:
        case EAGAIN:
                sd_bus_error_setf(error, BUS_ERROR_BUSY,
                                  "Hot reset of %s: the kernel stayed busy (%s) for %u attempts; retry later.", addr,
                                  strerror(r), RESET_ATTEMPTS);
                break;
        case ENOTTY:
                sd_bus_error_setf(error, BUS_ERROR_NO_RESET_MECHANISM,
                                  "Hot reset of %s failed (ENOTTY): the bus reset did not complete (the link did not "
                                  "come back).",
                                  addr);
                break;
        default:
                bus_error_kernel(error, r, "Hot reset of %s failed: %s", addr, strerror(r));
        }
}

static void jobs_start_ready(Manager *m);

/* Answers the request, signals HotResetDone and lets the job go, with its
 * files and its hold on the context. error NULL: success. The caller starts
 * whatever was waiting. */
static void job_finish(ResetJob *j, const sd_bus_error *error, uint64_t duration) {
        Manager *m = j->manager;
        char addr[PCI_ADDRESS_STRING_MAX];

        pci_address_format(&j->target, addr);
        _cleanup_free_ char *list = strv_join(j->affected, ", ");
        char fd[48], fc[160], fa[2048], fr[200], fs[160];
        snprintf(fd, sizeof fd, "HOTRESETD_DEVICE=%s", addr);
        snprintf(fc, sizeof fc, "HOTRESETD_CONTEXT=%s", j->context->path);
        snprintf(fa, sizeof fa, "HOTRESETD_AFFECTED=%s", strempty(list));
        snprintf(fr, sizeof fr, "HOTRESETD_RESULT=%s", error ? error->name : "success");
        snprintf(fs, sizeof fs, "HOTRESETD_CALLER=%s", j->request ? strempty(sd_bus_message_get_sender(j->request)) : "");
        const char *fields[] = { fd, fc, fa, fr, fs, NULL };
        if (error) {
                log_struct(LOG_WARNING, j->running ? LOG_MESSAGE_ID_RESET_DONE : LOG_MESSAGE_ID_RESET_REFUSED, fields,
                           "Hot reset of %s through %s failed: %s", addr, j->context->path, error->message);
                if (j->request)
                        (void) sd_bus_reply_method_error(j->request, error);
        } else {
                log_struct(LOG_INFO, LOG_MESSAGE_ID_RESET_DONE, fields,
                           "Hot reset of %s through %s done in %" PRIu64 " us: reset %s.", addr, j->context->path,
                           duration, strempty(list));
                if (j->request) {
                        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                        if (sd_bus_message_new_method_return(j->request, &reply) >= 0 &&
                            sd_bus_message_append_strv(reply, j->affected) >= 0)
                                (void) sd_bus_send(NULL, reply, NULL);
                }
        }

        /* Only for resets the kernel was asked to do (the contract): a
         * queued one that never started is answered, not announced. */
        if (j->running && m->hooks.hot_reset_done)
                m->hooks.hot_reset_done(m, addr, j->affected, duration, error ? error->name : "success");

        Context *c = j->context;
        bool release = j->release_after;
        job_unlink(m, j);
        job_free(j);

        /* A private context (Manager.HotReset) goes after the reply, so
         * whatever happened, nothing of it is left behind. */
        c->n_busy--;
        if (c->released) /* its owner went away meanwhile */
                context_unref_busy(c);
        else if (release)
                context_release(c, "the hot reset it was made for is over");
}

static int on_job_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ResetJob *j = userdata;
        Manager *m = j->manager;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        char addr[PCI_ADDRESS_STRING_MAX];

        (void) pthread_join(j->thread, NULL);
        uint64_t duration = now_usec() - j->started_usec;
        pci_address_format(&j->target, addr);

        PciDevice *left = NULL;
        if (j->result < 0)
                /* A device of the scope that left its vfio driver (or the
                 * machine) while the reset ran explains the failure better
                 * than the kernel's errno (ENODEV, EINVAL). */
                for (size_t i = 0; j->affected && j->affected[i] && !left; i++) {
                        PciAddress a;
                        PciDevice *d;
                        if (pci_address_parse(j->affected[i], &a) < 0 || pci_address_equal(&a, &j->target))
                                continue;
                        d = topology_get(m->topology, &a);
                        if (d && !driver_is_vfio(d->info.driver))
                                left = d;
                }
        if (j->result < 0 && left)
                sd_bus_error_setf(&error, BUS_ERROR_NOT_IN_DEV_SET,
                                  "Hot reset of %s failed: %s, in its reset scope, left vfio during the reset "
                                  "(it is %s%s now); bind it to vfio-pci again and retry.",
                                  addr, left->address, left->info.driver ? "bound to " : "",
                                  left->info.driver ?: "unbound");
        else if (j->result < 0) {
                /* Gone from the machine or from its lease meanwhile: say
                 * that, not what the kernel made of a dead file. */
                if (!topology_get(m->topology, &j->target) || !context_find_device(j->context, &j->target))
                        sd_bus_error_setf(&error, BUS_ERROR_NO_SUCH_DEVICE,
                                          "Hot reset of %s failed: the device was removed or left its vfio driver "
                                          "during the reset.",
                                          addr);
                else
                        job_reply_error(j, addr, &error);
        }
        job_finish(j, j->result < 0 ? &error : NULL, duration);
        jobs_start_ready(m);
        return 0;
}

static int job_start(ResetJob *j) {
        Manager *m = j->manager;
        Context *c = j->context;
        int r;

        /* Tell every lease holding an affected device first: its VMM may
         * want to quiesce the device. */
        for (size_t i = 0; m->hooks.prepare_for_hot_reset && i < m->n_contexts; i++) {
                Context *o = m->contexts[i];
                for (size_t k = 0; k < o->n_devices; k++) {
                        char a[PCI_ADDRESS_STRING_MAX], t[PCI_ADDRESS_STRING_MAX];
                        if (strv_contains(j->affected, pci_address_format(&o->devices[k].address, a))) {
                                m->hooks.prepare_for_hot_reset(m, o, pci_address_format(&j->target, t),
                                                               j->affected);
                                break;
                        }
                }
        }

        j->eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (j->eventfd < 0)
                return -errno;
        r = sd_event_add_io(m->event, &j->done_source, j->eventfd, EPOLLIN, on_job_done, j);
        if (r < 0)
                return r;

        j->started_usec = now_usec();
        r = pthread_create(&j->thread, NULL, reset_thread, j);
        if (r != 0)
                return -r;
        j->running = true;
        char t[PCI_ADDRESS_STRING_MAX];
        log_debug("Hot reset of %s through %s started.", pci_address_format(&j->target, t), c->path);
        return 0;
}

/* A queued job that cannot run: answered with error, signalled like any
 * other failed reset. */
static void job_fail_now(ResetJob *j, const sd_bus_error *error) {
        job_finish(j, error, 0);
}

static void jobs_start_ready(Manager *m) {
        if (m->stopping)
                return; /* reset_jobs_free() answers what waits */
        for (ResetJob *j = m->jobs, *next; j; j = next) {
                next = j->next;
                if (j->running)
                        continue;
                bool blocked = false;
                for (ResetJob *o = m->jobs; o; o = o->next)
                        if (o != j && o->running && jobs_overlap(j, o)) {
                                blocked = true;
                                break;
                        }
                /* Queued jobs earlier in the list go first on a shared scope. */
                for (ResetJob *o = m->jobs; !blocked && o != j; o = o->next)
                        if (!o->running && jobs_overlap(j, o))
                                blocked = true;
                if (blocked)
                        continue;

                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                char addr[PCI_ADDRESS_STRING_MAX];
                pci_address_format(&j->target, addr);
                /* Its lease ended while it waited: nothing may act on it any more. */
                if (j->context->released) {
                        sd_bus_error_setf(&error, BUS_ERROR_NOT_OWNED,
                                          "Hot reset of %s not done: %s was released while the reset waited for its "
                                          "turn.",
                                          addr, j->context->path);
                        job_fail_now(j, &error);
                        continue;
                }
                int r = job_start(j);
                if (r < 0) {
                        bus_error_kernel(&error, r, "Failed to start the hot reset of %s: %s", addr, strerror(-r));
                        job_fail_now(j, &error);
                }
        }
}

int reset_job_submit(Manager *m, Context *c, sd_bus_message *request, const ContextDevice *d, char **affected,
                     const int *group_fds, size_t n_group_fds, bool release_after) {
        ResetJob *j = calloc(1, sizeof(ResetJob));
        if (!j)
                return -ENOMEM;
        j->manager = m;
        j->context = c;
        j->request = sd_bus_message_ref(request);
        j->release_after = release_after;
        j->target = d->address;
        j->eventfd = -1;
        /* The job's own duplicates: the lease may drop the device (unplug,
         * unbind) while the job waits or runs, and its fd numbers would be
         * reused by the next file anyone opens. */
        j->fd = fcntl(d->fd, F_DUPFD_CLOEXEC, 3);
        j->cdev = m->backend->cdev;
        j->affected = strv_copy(affected);

        /* cdev: ownership comes from the device's iommufd, count 0.
         * Legacy: a group fd for every affected group. */
        size_t size = sizeof(struct hr_vfio_pci_hot_reset) + n_group_fds * sizeof(int32_t);
        j->arg = calloc(1, size);
        if (j->fd < 0 || !j->affected || !j->arg) {
                int r = j->fd < 0 ? -errno : -ENOMEM;
                job_free(j);
                return r;
        }
        j->arg->argsz = (uint32_t) size;
        for (size_t i = 0; i < n_group_fds; i++) {
                int fd = fcntl(group_fds[i], F_DUPFD_CLOEXEC, 3);
                if (fd < 0) {
                        int r = -errno;
                        job_free(j);
                        return r;
                }
                j->arg->group_fds[j->arg->count++] = fd;
        }

        c->n_busy++;
        {
                char addr[PCI_ADDRESS_STRING_MAX];
                log_debug("Hot reset of %s through %s submitted.", pci_address_format(&j->target, addr), c->path);
        }
        /* Append: first come, first served on a shared scope. */
        ResetJob **p = &m->jobs;
        while (*p)
                p = &(*p)->next;
        *p = j;

        jobs_start_ready(m);
        return 0;
}

bool reset_job_pending(Manager *m, sd_bus_message *request) {
        for (ResetJob *j = m->jobs; j; j = j->next)
                if (j->request == request)
                        return true;
        return false;
}

void reset_jobs_free(Manager *m) {
        m->stopping = true;
        /* Running resets first: a kernel reset cannot be interrupted, so
         * wait for it and answer its caller as usual; then the queued ones,
         * which never reached the kernel, are answered with an error. */
        for (ResetJob *j = m->jobs, *next; j; j = next) {
                next = j->next;
                if (!j->running)
                        continue;
                char addr[PCI_ADDRESS_STRING_MAX];
                log_notice("Stopping: waiting for the hot reset of %s through %s to finish (a reset the kernel "
                           "runs cannot be interrupted).",
                           pci_address_format(&j->target, addr), j->context->path);
                (void) on_job_done(NULL, -1, 0, j);
                next = m->jobs; /* the list changed; start over (finished jobs are gone) */
        }
        while (m->jobs) {
                ResetJob *j = m->jobs;
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                char addr[PCI_ADDRESS_STRING_MAX];
                sd_bus_error_setf(&error, BUS_ERROR_BUSY,
                                  "Hot reset of %s not done: the daemon is stopping, and the reset was still waiting "
                                  "for its turn.",
                                  pci_address_format(&j->target, addr));
                job_finish(j, &error, 0);
        }
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <time.h>

#include "access.h"
#include "device-dbus.h"
#include "domain-dbus.h"
#include "log.h"
#include "manager-dbus.h"
#include "read-queue.h"
#include "refusal-log.h"
#include "util.h"

#define RETRY_USEC 1000

typedef struct Parked {
        sd_bus_message *msg;
        struct Parked *next;
} Parked;

/* A sender with reads waiting, in the round-robin ring. */
typedef struct Sender {
        char *name;
        Parked *head, *tail;
        size_t n;
        struct Sender *next;
} Sender;

struct ReadQueue {
        Manager *manager;
        sd_bus *bus;
        sd_bus_slot *filter;
        sd_event_source *release_source;
        sd_event_source *retry_source; /* waits for the bus to take what was written */
        sd_event_source *trim_source;  /* gives the heap back after a costly read */
        Sender *senders;        /* the next to take its turn first */
        sd_bus_message *released; /* let through, not yet seen again */
};

/* Reads whose answer grows with the machine. */
static bool is_costly(sd_bus_message *m) {
        const char *path = sd_bus_message_get_path(m);
        uint8_t type = 0;

        if (sd_bus_message_get_type(m, &type) < 0 || type != SD_BUS_MESSAGE_METHOD_CALL || !path)
                return false;
        if (sd_bus_message_is_method_call(m, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects") ||
            sd_bus_message_is_method_call(m, MANAGER_INTERFACE, "ListDevices"))
                return true;
        /* The nodes with a child per device or per domain. */
        return sd_bus_message_is_method_call(m, "org.freedesktop.DBus.Introspectable", "Introspect") &&
               (streq(path, DEVICE_PATH_PREFIX) || streq(path, DOMAIN_PATH_PREFIX));
}

static Sender *sender_find(ReadQueue *q, const char *name) {
        for (Sender *s = q->senders; s; s = s->next)
                if (streq(s->name, name))
                        return s;
        return NULL;
}

static void sender_unlink(ReadQueue *q, Sender *s) {
        for (Sender **p = &q->senders; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        return;
                }
}

static void sender_append(ReadQueue *q, Sender *s) {
        Sender **p = &q->senders;
        while (*p)
                p = &(*p)->next;
        s->next = NULL;
        *p = s;
}

static void sender_free(Sender *s) {
        while (s->head) {
                Parked *p = s->head;
                s->head = p->next;
                sd_bus_message_unref(p->msg);
                free(p);
        }
        free(s->name);
        free(s);
}

/* One read of the sender whose turn it is goes back to sd-bus; that sender
 * moves to the end of the ring. */
static int on_release(sd_event_source *source, void *userdata) {
        ReadQueue *q = userdata;
        Sender *s = q->senders;

        if (q->released || !s) {
                (void) sd_event_source_set_enabled(source, SD_EVENT_OFF);
                return 0;
        }
        /* Replies leave through the same socket as every other answer: while
         * the bus has not taken the last big one, the next would only queue
         * up in front of other callers' answers. Look again shortly. */
        uint64_t queued = 0;
        if (sd_bus_get_n_queued_write(q->bus, &queued) >= 0 && queued > 0) {
                (void) sd_event_source_set_enabled(source, SD_EVENT_OFF);
                (void) sd_event_source_set_time_relative(q->retry_source, RETRY_USEC);
                (void) sd_event_source_set_enabled(q->retry_source, SD_EVENT_ONESHOT);
                return 0;
        }
        Parked *p = s->head;
        s->head = p->next;
        if (!s->head)
                s->tail = NULL;
        s->n--;
        sender_unlink(q, s);
        if (s->n > 0)
                sender_append(q, s);
        else
                sender_free(s);

        int r = sd_bus_enqueue_for_read(q->bus, p->msg);
        if (r < 0) {
                log_warning_errno(r, "Failed to dispatch a queued read: %m");
                (void) sd_bus_reply_method_errno(p->msg, r, NULL);
        } else
                q->released = sd_bus_message_ref(p->msg);
        sd_bus_message_unref(p->msg);
        free(p);
        /* The next one goes once this one was seen through. */
        (void) sd_event_source_set_enabled(source, SD_EVENT_OFF);
        return 0;
}

/* Building the answer to GetManagedObjects of a large machine allocates
 * and frees megabytes in small pieces: once things are quiet, give the
 * free pages back instead of keeping the peak resident. */
static int on_trim(sd_event_source *source, void *userdata) {
        (void) malloc_trim(0);
        return 0;
}

static int on_retry(sd_event_source *source, uint64_t usec, void *userdata) {
        ReadQueue *q = userdata;
        if (q->senders && !q->released)
                (void) sd_event_source_set_enabled(q->release_source, SD_EVENT_ONESHOT);
        return 0;
}

static int filter(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        ReadQueue *q = userdata;

        if (m == q->released) {
                /* Its turn: let sd-bus answer it, then release the next. */
                q->released = sd_bus_message_unref(q->released);
                (void) sd_event_source_set_enabled(q->trim_source, SD_EVENT_ONESHOT);
                if (q->senders)
                        (void) sd_event_source_set_enabled(q->release_source, SD_EVENT_ONESHOT);
                return 0;
        }
        if (!is_costly(m))
                return 0;

        const char *name = sd_bus_message_get_sender(m);
        if (!name)
                return 0; /* not from the bus: nothing to be fair between */
        Sender *s = sender_find(q, name);
        if (s && s->n >= READ_QUEUE_PER_SENDER_MAX) {
                uid_t uid = (uid_t) -1;
                (void) access_caller_uid(m, &uid);
                log_full(refusal_log_allowed(q->manager, uid) ? LOG_NOTICE : LOG_DEBUG,
                         "Refused %s from %s: %zu of its reads are waiting already.", sd_bus_message_get_member(m),
                         name, s->n);
                (void) sd_bus_reply_method_errorf(m, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                                  "%zu of your calls of this kind (GetManagedObjects, ListDevices, "
                                                  "Introspect) are waiting already; at most %u may wait. Wait for "
                                                  "their answers before sending more.",
                                                  s->n, READ_QUEUE_PER_SENDER_MAX);
                return 1;
        }

        Parked *p = calloc(1, sizeof(Parked));
        if (!p)
                return 0; /* out of memory: answer it now rather than not at all */
        if (!s) {
                s = calloc(1, sizeof(Sender));
                if (!s || !(s->name = strdup(name))) {
                        free(s);
                        free(p);
                        return 0;
                }
                sender_append(q, s);
        }
        p->msg = sd_bus_message_ref(m);
        if (s->tail)
                s->tail->next = p;
        else
                s->head = p;
        s->tail = p;
        s->n++;
        if (!q->released)
                (void) sd_event_source_set_enabled(q->release_source, SD_EVENT_ONESHOT);
        return 1; /* answered when its turn comes */
}

int read_queue_new(Manager *manager, ReadQueue **ret) {
        ReadQueue *q = calloc(1, sizeof(ReadQueue));
        sd_event *event = manager->event;
        int r;

        if (!q)
                return -ENOMEM;
        q->manager = manager;
        q->bus = manager->bus;
        r = sd_event_add_defer(event, &q->release_source, on_release, q);
        if (r >= 0)
                r = sd_event_source_set_enabled(q->release_source, SD_EVENT_OFF);
        /* Below the bus: everything already sent to the daemon is read (and
         * the costly calls parked) before the next costly one runs, so a
         * cheap call behind a flood waits for one costly read, not for
         * each of those ahead of it. */
        if (r >= 0)
                r = sd_event_source_set_priority(q->release_source, SD_EVENT_PRIORITY_NORMAL + 1);
        if (r >= 0)
                r = sd_event_add_time_relative(event, &q->retry_source, CLOCK_MONOTONIC, RETRY_USEC, 0, on_retry, q);
        if (r >= 0)
                r = sd_event_source_set_enabled(q->retry_source, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_defer(event, &q->trim_source, on_trim, q);
        if (r >= 0)
                r = sd_event_source_set_enabled(q->trim_source, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_source_set_priority(q->trim_source, SD_EVENT_PRIORITY_IDLE);
        if (r >= 0)
                r = sd_bus_add_filter(q->bus, &q->filter, filter, q);
        if (r < 0) {
                read_queue_free(q);
                return r;
        }
        *ret = q;
        return 0;
}

ReadQueue *read_queue_free(ReadQueue *q) {
        if (!q)
                return NULL;
        q->filter = sd_bus_slot_unref(q->filter);
        q->release_source = sd_event_source_disable_unref(q->release_source);
        q->retry_source = sd_event_source_disable_unref(q->retry_source);
        q->trim_source = sd_event_source_disable_unref(q->trim_source);
        while (q->senders) {
                Sender *s = q->senders;
                q->senders = s->next;
                sender_free(s);
        }
        sd_bus_message_unref(q->released);
        free(q);
        return NULL;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's state and how backend events change it: the topology is
 * updated as events arrive, the reset domains a change reaches are marked,
 * and what may look different on the bus is queued for the bus layer's
 * publish pass. */
#include <errno.h>

#include "access.h"
#include "context.h"
#include "errors.h"
#include "log.h"
#include "lease-store.h"
#include "manager.h"
#include "policy.h"
#include "reset-job.h"
#include "util.h"

/* ---- publish queues ------------------------------------------------------ */

/* A FIFO of pointers; each item carries a flag saying it is queued, so it
 * is queued once however often it changes before the next pass. */
static int queue_push(PublishQueue *q, void *item) {
        if (q->n == q->allocated && q->head > 0) {
                memmove(q->items, q->items + q->head, (q->n - q->head) * sizeof(void *));
                q->n -= q->head;
                q->head = 0;
        }
        if (q->n == q->allocated) {
                size_t n = q->allocated ? q->allocated * 2 : 64;
                void **items = realloc(q->items, n * sizeof(void *));
                if (!items)
                        return -ENOMEM;
                q->items = items;
                q->allocated = n;
        }
        q->items[q->n++] = item;
        return 0;
}

static void *queue_pop(PublishQueue *q) {
        while (q->head < q->n) {
                void *item = q->items[q->head++];
                if (item)
                        return item;
        }
        q->head = q->n = 0;
        return NULL;
}

/* An item that goes away while queued. */
static void queue_forget(PublishQueue *q, void *item) {
        for (size_t i = q->head; i < q->n; i++)
                if (q->items[i] == item) {
                        q->items[i] = NULL;
                        return;
                }
}

static void queue_done(PublishQueue *q) {
        free(q->items);
        *q = (PublishQueue) {};
}

static void notify_queued(Manager *m) {
        if (m->hooks.queued)
                m->hooks.queued(m);
}

void manager_queue_device(Manager *m, PciDevice *d) {
        if (d->queued)
                return;
        if (queue_push(&m->devices_queue, d) < 0) {
                log_oom();
                return;
        }
        d->queued = 1;
        notify_queued(m);
}

void manager_queue_domain(Manager *m, ResetDomain *dom) {
        if (dom->publish_queued)
                return;
        if (queue_push(&m->domains_queue, dom) < 0) {
                log_oom();
                return;
        }
        dom->publish_queued = 1;
        notify_queued(m);
}

void manager_queue_context(Manager *m, Context *c) {
        if (c->publish_queued || c->released)
                return;
        if (queue_push(&m->contexts_queue, c) < 0) {
                log_oom();
                return;
        }
        c->publish_queued = 1;
        notify_queued(m);
}

void manager_queue_change(Manager *m, ManagerChange change) {
        m->changes |= change;
        notify_queued(m);
}

PciDevice *manager_pop_device(Manager *m) {
        PciDevice *d = queue_pop(&m->devices_queue);
        if (d)
                d->queued = 0;
        return d;
}

ResetDomain *manager_pop_domain(Manager *m) {
        ResetDomain *dom = queue_pop(&m->domains_queue);
        if (dom)
                dom->publish_queued = 0;
        return dom;
}

Context *manager_pop_context(Manager *m) {
        Context *c = queue_pop(&m->contexts_queue);
        if (c)
                c->publish_queued = 0;
        return c;
}

bool manager_has_queued(const Manager *m) {
        return m->devices_queue.head < m->devices_queue.n || m->domains_queue.head < m->domains_queue.n ||
               m->contexts_queue.head < m->contexts_queue.n || m->changes != 0 || reset_domains_dirty(m->domains);
}

/* ---- reset domains ------------------------------------------------------- */

static const void *domains_holder_of(const PciDevice *d, void *userdata) {
        return manager_holder_of(userdata, d);
}

bool manager_device_excluded(Manager *m, PciDevice *d) {
        if (d->excluded < 0) {
                int r = m->policy ? policy_device_allowed(m->policy, &d->info, NULL) : 1;
                if (r < 0)
                        return true; /* out of memory: refuse rather than allow; not cached */
                d->excluded = r == 0;
        }
        return d->excluded > 0;
}

static bool domains_excluded(PciDevice *d, void *userdata) {
        return manager_device_excluded(userdata, d);
}

static void domains_device_changed(PciDevice *d, void *userdata) {
        manager_queue_device(userdata, d);
}

static void domains_domain_changed(ResetDomain *dom, void *userdata) {
        manager_queue_domain(userdata, dom);
}

static void domains_domain_removed(ResetDomain *dom, void *userdata) {
        Manager *m = userdata;
        if (dom->publish_queued) {
                queue_forget(&m->domains_queue, dom);
                dom->publish_queued = 0;
        }
        /* Devices whose domain this was get another, or none. */
        if (m->hooks.domain_removed)
                m->hooks.domain_removed(m, dom);
}

int manager_settle(Manager *m) {
        int r = reset_domains_settle(m->domains);
        if (r < 0)
                log_warning_errno(r, "Failed to bring the reset domains up to date: %m");
        return r;
}

/* ---- backend events ------------------------------------------------------ */

static void device_leaves(Manager *m, PciDevice *d) {
        reset_domains_device_removing(m->domains, d);
        if (d->queued) {
                queue_forget(&m->devices_queue, d);
                d->queued = 0;
        }
        if (m->hooks.device_removed)
                m->hooks.device_removed(m, d);
}

void manager_on_backend_event(Backend *b, BackendAction action, const PciDeviceInfo *info, void *userdata) {
        Manager *m = userdata;
        char addr[PCI_ADDRESS_STRING_MAX];
        PciDevice *d;
        int r;

        pci_address_format(&info->address, addr);
        log_debug("%s %s%s%s", backend_action_to_string(action), addr, info->driver ? " driver=" : "",
                  strempty(info->driver));

        d = topology_get(m->topology, &info->address);

        /* A held device that leaves vfio (unbound, removed) is gone from
         * its lease: the files the context holds of it are dead. */
        if (d && (action == BACKEND_REMOVE || !driver_is_vfio(info->driver) ||
                  !streq_ptr(info->cdev_path, d->info.cdev_path)))
                for (size_t i = m->n_contexts; i > 0; i--)
                        context_drop_device(m->contexts[i - 1], &info->address,
                                            action == BACKEND_REMOVE ? "the device was removed"
                                                                     : "the device left its vfio driver");

        if (action == BACKEND_REMOVE) {
                if (!d) {
                        log_debug("Ignoring removal of unknown device %s.", addr);
                        return;
                }
                device_leaves(m, d);
                (void) topology_remove(m->topology, &info->address);
                manager_queue_change(m, MANAGER_CHANGED_DEVICE_COUNT);
                return;
        }

        /* ADD, BIND, UNBIND, CHANGE: the device as it is now. */
        bool was_bridge = d && d->info.is_bridge, old_slot_reset = d && d->info.slot_reset;
        uint8_t old_secondary = d ? d->info.secondary_bus : 0;
        r = topology_put(m->topology, info, &d);
        if (r < 0) {
                log_error_errno(r, "Failed to record %s of %s: %m", backend_action_to_string(action), addr);
                return;
        }
        d->excluded = -1; /* the policy may match on what changed */
        if (r > 0) {
                reset_domains_device_added(m->domains, d);
                manager_queue_change(m, MANAGER_CHANGED_DEVICE_COUNT);
        } else if (was_bridge != d->info.is_bridge || old_slot_reset != d->info.slot_reset ||
                   old_secondary != d->info.secondary_bus)
                reset_domains_invalidate(m->domains, true);
        else
                reset_domains_device_state_changed(m->domains, d);
        /* Announced, or its changes signalled, when the batch is through. */
        manager_queue_device(m, d);
}

/* ---- lookups ------------------------------------------------------------- */

int manager_find_device(Manager *m, const PciAddress *a, PciDevice **ret, sd_bus_error *error) {
        PciDevice *d = topology_get(m->topology, a);
        if (!d) {
                char buf[PCI_ADDRESS_STRING_MAX];
                return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_DEVICE,
                                         "No PCI device %s on this machine (ListDevices shows the devices there are).",
                                         pci_address_format(a, buf));
        }
        *ret = d;
        return 0;
}

/* ---- holders ------------------------------------------------------------- */

typedef struct GroupOwner {
        Context *owner;
        unsigned refs;
} GroupOwner;

Context *manager_group_owner(Manager *m, int group) {
        GroupOwner *g = group >= 0 ? intmap_get(&m->group_owners, (uint64_t) group) : NULL;
        return g ? g->owner : NULL;
}

Context *manager_holder_of(Manager *m, const PciDevice *d) {
        if (d->holder)
                return (Context *) d->holder;
        return manager_group_owner(m, d->info.iommu_group);
}

/* Every device of the group may now have another holder. */
static void group_holder_changed(Manager *m, int group) {
        for (PciDevice *x = topology_group_first(m->topology, group); x; x = x->group_next)
                manager_device_holder_changed(m, x);
}

int manager_group_owner_ref(Manager *m, int group, Context *c) {
        GroupOwner *g;

        if (group < 0)
                return 0;
        g = intmap_get(&m->group_owners, (uint64_t) group);
        if (g) {
                /* The kernel lets one iommufd or container own a group; a
                 * second claim cannot succeed there, so it is not counted. */
                if (g->owner == c)
                        g->refs++;
                return 0;
        }
        g = calloc(1, sizeof(GroupOwner));
        if (!g)
                return -ENOMEM;
        *g = (GroupOwner) { .owner = c, .refs = 1 };
        if (intmap_put(&m->group_owners, (uint64_t) group, g) < 0) {
                free(g);
                return -ENOMEM;
        }
        group_holder_changed(m, group);
        return 0;
}

void manager_group_owner_unref(Manager *m, int group, Context *c) {
        GroupOwner *g = group >= 0 ? intmap_get(&m->group_owners, (uint64_t) group) : NULL;
        if (!g || g->owner != c)
                return;
        if (--g->refs > 0)
                return;
        free(intmap_remove(&m->group_owners, (uint64_t) group));
        group_holder_changed(m, group);
}

void manager_device_holder_changed(Manager *m, PciDevice *d) {
        reset_domains_device_state_changed(m->domains, d);
        manager_queue_device(m, d);
}

/* ---- contexts ------------------------------------------------------------ */

Context *manager_find_context(Manager *m, const char *path) {
        for (size_t i = 0; i < m->n_contexts; i++)
                if (streq(m->contexts[i]->path, path))
                        return m->contexts[i];
        return NULL;
}

int manager_add_context(Manager *m, Context *c) {
        Context **n = realloc(m->contexts, (m->n_contexts + 1) * sizeof(Context *));
        if (!n)
                return -ENOMEM;
        m->contexts = n;
        m->contexts[m->n_contexts++] = c;
        lease_store_save(m, c);
        return 0;
}

void manager_remove_context(Manager *m, Context *c) {
        if (c->publish_queued) {
                queue_forget(&m->contexts_queue, c);
                c->publish_queued = 0;
        }
        for (size_t i = 0; i < m->n_contexts; i++)
                if (m->contexts[i] == c) {
                        memmove(m->contexts + i, m->contexts + i + 1, (m->n_contexts - i - 1) * sizeof(Context *));
                        m->n_contexts--;
                        return;
                }
}

void manager_owner_gone(Manager *m, const char *name) {
        /* Backwards: releasing removes the context from the list. */
        for (size_t i = m->n_contexts; i > 0; i--) {
                if (i > m->n_contexts)
                        continue;
                Context *c = m->contexts[i - 1];
                if (c->lifetime == CONTEXT_CONNECTION && streq(c->owner, name))
                        context_release(c, "its owner disconnected");
        }
}

void manager_policy_changed(Manager *m) {
        size_t n = topology_size(m->topology);
        for (size_t i = 0; i < n; i++)
                topology_at(m->topology, i)->excluded = -1;
        reset_domains_invalidate(m->domains, false);
        manager_queue_change(m, MANAGER_CHANGED_POLICY);
        notify_queued(m);
}

/* ---- life ---------------------------------------------------------------- */

int manager_new(sd_event *e, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = calloc(1, sizeof(Manager));

        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(e);
        m->topology = topology_new(NULL);
        if (!m->topology)
                /* cppcheck-suppress memleak ; freed by _cleanup_(manager_freep) (cppcheck does not know cleanup attributes) */
                return -ENOMEM;
        m->domains = reset_domains_new(m->topology, &(ResetDomainHooks) {
                .holder_of = domains_holder_of,
                .excluded = domains_excluded,
                .device_changed = domains_device_changed,
                .domain_changed = domains_domain_changed,
                .domain_removed = domains_domain_removed,
                .userdata = m,
        });
        if (!m->domains)
                /* cppcheck-suppress memleak ; freed by _cleanup_(manager_freep) (cppcheck does not know cleanup attributes) */
                return -ENOMEM;

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        /* Resets in flight finish first; then every lease goes, or, with a
         * file descriptor store, stays there for the next start: its files
         * are only closed here, so neither the kernel nor the clients see
         * it end. */
        reset_jobs_free(m);
        if (lease_store_enabled(m) && m->n_contexts > 0)
                log_info("Keeping %zu lease%s in systemd's file descriptor store for the next start.", m->n_contexts,
                         m->n_contexts == 1 ? "" : "s");
        while (m->n_contexts > 0) {
                Context *c = m->contexts[m->n_contexts - 1];
                if (lease_store_enabled(m) && c->n_busy == 0) {
                        m->n_contexts--;
                        context_abandon(c);
                } else
                        context_release(c, "the daemon is stopping");
        }
        free(m->contexts);
        lease_store_free(m);
        /* Pending polkit checks hold callers' messages of the bus. */
        access_done(m);
        if (m->hooks.teardown)
                m->hooks.teardown(m);
        for (size_t i = 0; i < m->group_owners.capacity; i++)
                free(m->group_owners.values[i]);
        intmap_done(&m->group_owners);
        queue_done(&m->devices_queue);
        queue_done(&m->domains_queue);
        queue_done(&m->contexts_queue);
        backend_free(m->backend);
        reset_domains_free(m->domains);
        topology_free(m->topology);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

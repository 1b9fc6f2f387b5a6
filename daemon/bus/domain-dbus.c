/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.hotresetd.Broker1.ResetDomain objects, served through a fallback
 * vtable over the core's reset domains (core/reset-domain.h). */
#include <errno.h>
#include <stdio.h>

#include "bus-util.h"
#include "device-dbus.h"
#include "domain-dbus.h"
#include "log.h"
#include "util.h"

typedef struct DomainObject {
        Manager *manager;
        bool announced;
        uint64_t generation;
        uint32_t bridge_key; /* UINT32_MAX: none */
        bool possible;
        uint64_t blockers_hash; /* what Blockers and Holders said, hashed */
        uint64_t holders_hash;
} DomainObject;

/* FNV-1a over 64-bit words. */
static uint64_t hash_word(uint64_t h, uint64_t w) {
        for (unsigned i = 0; i < 8; i++, w >>= 8)
                h = (h ^ (w & 0xff)) * UINT64_C(0x100000001b3);
        return h;
}

static uint64_t hash_text(uint64_t h, const char *s) {
        for (; s && *s; s++)
                h = (h ^ (uint8_t) *s) * UINT64_C(0x100000001b3);
        return hash_word(h, s ? 1 : 0);
}

#define HASH_SEED UINT64_C(0xcbf29ce484222325)

char *domain_object_path(const ResetDomain *dom, char buf[static DOMAIN_PATH_MAX]) {
        if (dom->slot >= 0)
                snprintf(buf, DOMAIN_PATH_MAX, DOMAIN_PATH_PREFIX "/pci_%04x_%02x_%02x", dom->pci_domain, dom->bus,
                         (unsigned) dom->slot);
        else
                snprintf(buf, DOMAIN_PATH_MAX, DOMAIN_PATH_PREFIX "/pci_%04x_%02x", dom->pci_domain, dom->bus);
        return buf;
}

/* The key of a path in canonical form; -EINVAL for anything else. */
static int domain_path_parse(const char *path, uint32_t *ret) {
        unsigned domain, bus, slot;
        int n = 0;
        char canonical[DOMAIN_PATH_MAX];

        if (sscanf(path, DOMAIN_PATH_PREFIX "/pci_%4x_%2x_%2x%n", &domain, &bus, &slot, &n) == 3 && path[n] == 0 &&
            slot <= 0x1f) {
                snprintf(canonical, sizeof canonical, DOMAIN_PATH_PREFIX "/pci_%04x_%02x_%02x", domain, bus, slot);
                if (!streq(canonical, path))
                        return -EINVAL;
                *ret = reset_domain_key((uint16_t) domain, (uint8_t) bus, (int) slot);
                return 0;
        }
        n = 0;
        if (sscanf(path, DOMAIN_PATH_PREFIX "/pci_%4x_%2x%n", &domain, &bus, &n) == 2 && path[n] == 0) {
                snprintf(canonical, sizeof canonical, DOMAIN_PATH_PREFIX "/pci_%04x_%02x", domain, bus);
                if (!streq(canonical, path))
                        return -EINVAL;
                *ret = reset_domain_key((uint16_t) domain, (uint8_t) bus, -1);
                return 0;
        }
        return -EINVAL;
}

static Manager *manager_of(ResetDomain *dom) {
        return ((DomainObject *) dom->userdata)->manager;
}

int domain_append_members(sd_bus_message *reply, const ResetDomain *dom) {
        int r = sd_bus_message_open_container(reply, 'a', "s");
        for (size_t i = 0; r >= 0 && i < dom->n_members; i++)
                r = sd_bus_message_append_basic(reply, 's', dom->members[i]->address);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

static bool domain_possible(const ResetDomain *dom) {
        return dom->n_blocked == 0 && !dom->several_holders;
}

static int property_get_scope(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        ResetDomain *dom = userdata;
        return sd_bus_message_append(reply, "s", reset_scope_to_string(dom->scope));
}

static int property_get_bridge(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        ResetDomain *dom = userdata;
        char buf[DEVICE_PATH_MAX];
        return sd_bus_message_append(reply, "o", dom->bridge ? device_object_path(&dom->bridge->info.address, buf) : "/");
}

static int property_get_members(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return domain_append_members(reply, userdata);
}

static int property_get_possible(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "b", domain_possible(userdata));
}

/* The members that stop a reset of the domain whoever asks (a bridge, a
 * host driver, no IOMMU group, the policy), and, when the members are held
 * by more than one context, the held ones: no single context can own the
 * scope. */
static int property_get_blockers(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        ResetDomain *dom = userdata;
        Manager *m = manager_of(dom);
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(ss)");
        for (size_t i = 0; r >= 0 && i < dom->n_members && (dom->n_blocked > 0 || dom->several_holders); i++) {
                PciDevice *x = dom->members[i];
                BlockReason reason = reset_domain_static_reason(x);
                Context *holder = manager_holder_of(m, x);
                if (reason == BLOCK_NONE && x->excluded > 0)
                        reason = BLOCK_POLICY;
                if (reason == BLOCK_NONE && dom->several_holders && holder)
                        reason = BLOCK_HELD_ELSEWHERE;
                if (reason == BLOCK_NONE)
                        continue;
                _cleanup_free_ char *allocated = NULL;
                const char *text = device_block_reason_text(m, x, reason, holder, &allocated);
                if (!text)
                        return -ENOMEM;
                r = sd_bus_message_append(reply, "(ss)", x->address, text);
        }
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

static int property_get_holders(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        ResetDomain *dom = userdata;
        Manager *m = manager_of(dom);
        int r;

        r = sd_bus_message_open_container(reply, 'a', "o");
        if (dom->holder && !dom->several_holders)
                r = r < 0 ? r : sd_bus_message_append(reply, "o", ((Context *) dom->holder)->path);
        else if (dom->several_holders)
                /* Contexts are few; list each once, in their order. */
                for (size_t k = 0; r >= 0 && k < m->n_contexts; k++)
                        for (size_t i = 0; i < dom->n_members; i++)
                                if (manager_holder_of(m, dom->members[i]) == m->contexts[k]) {
                                        r = sd_bus_message_append(reply, "o", m->contexts[k]->path);
                                        break;
                                }
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

static const sd_bus_vtable domain_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Scope", "s", property_get_scope, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Bridge", "o", property_get_bridge, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Members", "as", property_get_members, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Possible", "b", property_get_possible, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Blockers", "a(ss)", property_get_blockers, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Holders", "ao", property_get_holders, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END,
};

static int domain_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                              sd_bus_error *error) {
        Manager *m = userdata;
        uint32_t key;

        if (domain_path_parse(path, &key) < 0)
                return 0;
        (void) manager_settle(m);
        ResetDomain *dom = reset_domains_get(m->domains, key);
        if (!dom || !dom->userdata || !((DomainObject *) dom->userdata)->announced)
                return 0;
        *found = dom;
        return 1;
}

static int domain_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        Manager *m = userdata;
        size_t cursor = 0, k = 0;
        char **l = calloc(reset_domains_count(m->domains) + 1, sizeof(char *));
        ResetDomain *dom;

        if (!l)
                return -ENOMEM;
        while ((dom = reset_domains_next(m->domains, &cursor))) {
                char buf[DOMAIN_PATH_MAX];
                if (!dom->userdata || !((DomainObject *) dom->userdata)->announced)
                        continue;
                l[k] = strdup(domain_object_path(dom, buf));
                if (!l[k++]) {
                        strv_free(l);
                        return -ENOMEM;
                }
        }
        *nodes = l;
        return 1;
}

int domain_register_bus(Manager *m) {
        return bus_add_object_tree(m->bus, DOMAIN_PATH_PREFIX, DOMAIN_INTERFACE, domain_vtable, domain_object_find,
                                   domain_node_enumerator, m, "reset domain");
}

int domain_object_publish(Manager *m, ResetDomain *dom, bool silent) {
        DomainObject *o = dom->userdata;
        const char *changed[8];
        size_t n = 0;

        if (!o) {
                o = calloc(1, sizeof(DomainObject));
                if (!o)
                        return -ENOMEM;
                o->manager = m;
                dom->userdata = o;
        }

        uint32_t bridge_key = dom->bridge ? pci_address_key(&dom->bridge->info.address) : UINT32_MAX;
        bool possible = domain_possible(dom);
        /* What Blockers and Holders would say, without formatting it: the
         * blocking members with their reasons (and what the reasons name),
         * the holders. Signalled only when that changed. */
        uint64_t blockers_hash = HASH_SEED, holders_hash = HASH_SEED;
        for (size_t i = 0; i < dom->n_members && (dom->n_blocked > 0 || dom->holder); i++) {
                PciDevice *x = dom->members[i];
                Context *holder = manager_holder_of(m, x);
                BlockReason reason = reset_domain_static_reason(x);
                if (reason == BLOCK_NONE && x->excluded > 0)
                        reason = BLOCK_POLICY;
                if (holder)
                        holders_hash = hash_word(holders_hash, holder->id);
                if (reason == BLOCK_NONE && !(dom->several_holders && holder))
                        continue;
                blockers_hash = hash_word(blockers_hash, pci_address_key(&x->info.address) | (uint64_t) reason << 32);
                blockers_hash = hash_text(blockers_hash, x->info.driver);
                if (reason == BLOCK_POLICY) /* the reason names the rule: another policy, maybe another text */
                        blockers_hash = hash_word(blockers_hash, (uint64_t) (uintptr_t) m->policy);
                blockers_hash = hash_word(blockers_hash, holder ? holder->id : 0);
        }

        if (o->announced) {
                if (o->bridge_key != bridge_key)
                        changed[n++] = "Bridge";
                if (o->generation != dom->generation)
                        changed[n++] = "Members";
                if (o->possible != possible)
                        changed[n++] = "Possible";
                if (o->blockers_hash != blockers_hash)
                        changed[n++] = "Blockers";
                if (o->holders_hash != holders_hash)
                        changed[n++] = "Holders";
        }
        o->bridge_key = bridge_key;
        o->generation = dom->generation;
        o->possible = possible;
        o->blockers_hash = blockers_hash;
        o->holders_hash = holders_hash;

        char path[DOMAIN_PATH_MAX];
        return bus_publish_object(m->bus, domain_object_path(dom, path), DOMAIN_INTERFACE, &o->announced, changed, n,
                                  silent);
}

void domain_object_removed(Manager *m, ResetDomain *dom) {
        DomainObject *o = dom->userdata;
        char path[DOMAIN_PATH_MAX];

        if (!o)
                return;
        if (o->announced && m->bus) {
                int r = sd_bus_emit_object_removed(m->bus, domain_object_path(dom, path));
                if (r < 0)
                        log_warning_errno(r, "Failed to announce the removal of %s: %m", path);
        }
        free(o);
        dom->userdata = NULL;
}

void domain_objects_free(Manager *m) {
        size_t cursor = 0;
        ResetDomain *dom;
        while ((dom = reset_domains_next(m->domains, &cursor))) {
                free(dom->userdata);
                dom->userdata = NULL;
        }
}

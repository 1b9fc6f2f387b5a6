/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The reset domain model (core/reset-domain.c): the domains of known
 * machines, and a property test that applies random change sequences to
 * random machines and checks after each batch that the incrementally kept
 * domains equal a from-scratch computation (topology_affected() and
 * reset_check()), and that every device whose answers changed was told. */
#include <stdio.h>
#include <stdlib.h>

#include "reset-check.h"
#include "reset-domain.h"
#include "test-util.h"
#include "util.h"

/* ---- the hooks, as the manager installs them ------------------------------ */

typedef struct Observed {
        size_t device_changed, domain_changed, domain_removed;
        /* Addresses (keys) of devices told since the last check. */
        uint32_t *told;
        size_t n_told, allocated_told;
} Observed;

static Observed obs;

static const void *hook_holder_of(const PciDevice *d, void *userdata) {
        return d->holder;
}

static bool hook_excluded(PciDevice *d, void *userdata) {
        return d->excluded > 0;
}

static void hook_device_changed(PciDevice *d, void *userdata) {
        obs.device_changed++;
        if (obs.n_told == obs.allocated_told) {
                obs.allocated_told = obs.allocated_told ? obs.allocated_told * 2 : 64;
                obs.told = realloc(obs.told, obs.allocated_told * sizeof(uint32_t));
                ASSERT_TRUE(obs.told);
        }
        obs.told[obs.n_told++] = pci_address_key(&d->info.address);
}

static void hook_domain_changed(ResetDomain *dom, void *userdata) {
        obs.domain_changed++;
}

static void hook_domain_removed(ResetDomain *dom, void *userdata) {
        obs.domain_removed++;
}

static const ResetDomainHooks hooks = {
        .holder_of = hook_holder_of,
        .excluded = hook_excluded,
        .device_changed = hook_device_changed,
        .domain_changed = hook_domain_changed,
        .domain_removed = hook_domain_removed,
};

static bool was_told(const PciAddress *a) {
        uint32_t key = pci_address_key(a);
        for (size_t i = 0; i < obs.n_told; i++)
                if (obs.told[i] == key)
                        return true;
        return false;
}

/* ---- changes, made the way the manager makes them -------------------------- */

static PciAddress addr(const char *s) {
        PciAddress a;
        ASSERT_INT_EQ(pci_address_parse(s, &a), 0);
        return a;
}

static void put(Topology *t, ResetDomains *rd, const PciDeviceInfo *info) {
        PciDevice *d = topology_get(t, &info->address);
        bool was_bridge = d && d->info.is_bridge, old_slot_reset = d && d->info.slot_reset;
        uint8_t old_secondary = d ? d->info.secondary_bus : 0;
        int r = topology_put(t, info, &d);
        ASSERT_TRUE(r >= 0);
        if (r > 0) {
                d->excluded = 0;
                reset_domains_device_added(rd, d);
        } else if (was_bridge != d->info.is_bridge || old_slot_reset != d->info.slot_reset ||
                   old_secondary != d->info.secondary_bus)
                reset_domains_invalidate(rd, true);
        else
                reset_domains_device_state_changed(rd, d);
}

static void put_endpoint(Topology *t, ResetDomains *rd, const char *address, const char *driver, int group) {
        PciDeviceInfo i = PCI_DEVICE_INFO_NULL;
        i.address = addr(address);
        i.driver = (char *) driver;
        i.iommu_group = group;
        put(t, rd, &i);
}

static void put_bridge(Topology *t, ResetDomains *rd, const char *address, unsigned secondary, bool slot_reset) {
        PciDeviceInfo i = PCI_DEVICE_INFO_NULL;
        i.address = addr(address);
        i.driver = (char *) "pcieport";
        i.is_bridge = true;
        i.secondary_bus = (uint8_t) secondary;
        i.slot_reset = slot_reset;
        put(t, rd, &i);
}

static void remove_device(Topology *t, ResetDomains *rd, const PciAddress *a) {
        PciDevice *d = topology_get(t, a);
        ASSERT_TRUE(d);
        reset_domains_device_removing(rd, d);
        ASSERT_INT_EQ(topology_remove(t, a), 0);
}

static PciDevice *get(Topology *t, const char *address) {
        PciAddress a = addr(address);
        PciDevice *d = topology_get(t, &a);
        ASSERT_TRUE(d);
        return d;
}

static char *members_string(const ResetDomain *dom) {
        static char buf[4096];
        size_t k = 0;
        buf[0] = 0;
        for (size_t i = 0; dom && i < dom->n_members; i++)
                k += (size_t) snprintf(buf + k, sizeof buf - k, "%s%s", i ? " " : "", dom->members[i]->address);
        return buf;
}

/* ---- the from-scratch comparison ------------------------------------------ */

typedef struct Snapshot {
        uint32_t key;
        uint32_t domain_key; /* UINT32_MAX: none */
        uint64_t generation;
        bool possible;
} Snapshot;

static int compare_excluded(const PciDevice *d, void *userdata) {
        return d->excluded > 0;
}

static const void *holder_of_field(const PciDevice *d, void *userdata) {
        return d->holder;
}

/* Checks every device against a computation from scratch; returns the
 * snapshots of what each device would publish. */
static Snapshot *check_against_scratch(Topology *t, ResetDomains *rd, size_t *ret_n) {
        size_t n = topology_size(t), owners = 0;
        Snapshot *snaps = calloc(n ? n : 1, sizeof(Snapshot));
        ASSERT_TRUE(snaps);

        for (size_t i = 0; i < n; i++) {
                PciDevice *d = topology_at(t, i);
                ResetScope scope = topology_reset_scope(t, d);
                PciDevice **affected = NULL;
                size_t n_affected = 0;

                if (scope == RESET_SCOPE_NONE)
                        ASSERT_TRUE(d->domain == NULL);
                else {
                        ASSERT_TRUE(d->domain != NULL);
                        ASSERT_INT_EQ(d->domain->scope, scope);
                        ASSERT_TRUE(d->domain->bridge == topology_parent_bridge(t, d));
                        ASSERT_TRUE(reset_domains_get(rd, d->domain->key) == d->domain);
                        ASSERT_INT_EQ(topology_affected(t, d, &affected, &n_affected), 0);
                        if (n_affected != d->domain->n_members) {
                                fprintf(stderr, "%s: domain has %s\n", d->address, members_string(d->domain));
                                ASSERT_INT_EQ(n_affected, d->domain->n_members);
                        }
                        for (size_t k = 0; k < n_affected; k++)
                                ASSERT_TRUE(affected[k] == d->domain->members[k]);
                        free(affected);
                        owners++;
                }

                ResetCheck c;
                ASSERT_INT_EQ(reset_check(t, d, holder_of_field, NULL, &c), 0);
                ASSERT_INT_EQ(reset_check_apply_exclusions(&c, compare_excluded, NULL), 0);
                if (c.possible != reset_domain_possible(d, d->holder)) {
                        fprintf(stderr, "%s: possible from scratch %d, from its domain %d\n", d->address,
                                c.possible, !c.possible);
                        ASSERT_TRUE(false);
                }
                reset_check_done(&c);

                snaps[i] = (Snapshot) {
                        .key = pci_address_key(&d->info.address),
                        .domain_key = d->domain ? d->domain->key : UINT32_MAX,
                        .generation = d->domain ? d->domain->generation : 0,
                        .possible = reset_domain_possible(d, d->holder),
                };
        }

        /* Every domain is some device's own, and counts them right. */
        size_t cursor = 0, counted = 0;
        ResetDomain *dom;
        while ((dom = reset_domains_next(rd, &cursor))) {
                size_t own = 0;
                for (size_t i = 0; i < n; i++)
                        own += topology_at(t, i)->domain == dom;
                ASSERT_INT_EQ(dom->n_own, own);
                ASSERT_TRUE(own > 0);
                counted += own;
        }
        ASSERT_INT_EQ(counted, owners);
        *ret_n = n;
        return snaps;
}

/* A device whose published answers differ from the last check must have
 * been told (or be new). */
static void check_told(Snapshot *before, size_t n_before, Snapshot *after, size_t n_after) {
        for (size_t i = 0; i < n_after; i++) {
                const Snapshot *a = &after[i], *b = NULL;
                for (size_t k = 0; k < n_before; k++)
                        if (before[k].key == a->key) {
                                b = &before[k];
                                break;
                        }
                PciAddress pa = { .domain = a->key >> 16, .bus = (a->key >> 8) & 0xff, .slot = (a->key >> 3) & 0x1f,
                                  .function = a->key & 7 };
                if (!b || b->domain_key != a->domain_key || b->generation != a->generation ||
                    b->possible != a->possible) {
                        if (!was_told(&pa)) {
                                char s[PCI_ADDRESS_STRING_MAX];
                                fprintf(stderr, "%s changed but was not told\n", pci_address_format(&pa, s));
                                ASSERT_TRUE(false);
                        }
                }
        }
        obs.n_told = 0;
}

/* ---- known machines ---------------------------------------------------------- */

TEST(test_workstation_domains) {
        Topology *t = topology_new(NULL);
        ResetDomains *rd = reset_domains_new(t, &hooks);
        size_t n;

        put_bridge(t, rd, "00:01.0", 1, false);
        put_endpoint(t, rd, "01:00.0", "vfio-pci", 14);
        put_endpoint(t, rd, "01:00.1", "snd_hda_intel", 14);
        put_endpoint(t, rd, "00:02.0", "i915", 1); /* root bus: no hot reset */
        ASSERT_INT_EQ(reset_domains_settle(rd), 0);

        PciDevice *gpu = get(t, "01:00.0"), *audio = get(t, "01:00.1");
        ASSERT_TRUE(gpu->domain && gpu->domain == audio->domain);
        ASSERT_TRUE(get(t, "00:02.0")->domain == NULL);
        ASSERT_STR_EQ(members_string(gpu->domain), "0000:01:00.0 0000:01:00.1");
        ASSERT_INT_EQ(gpu->domain->scope, RESET_SCOPE_BUS);
        ASSERT_TRUE(gpu->domain->bridge == get(t, "00:01.0"));
        ASSERT_INT_EQ(gpu->domain->n_blocked, 1);
        ASSERT_TRUE(!reset_domain_possible(gpu, NULL));
        ASSERT_INT_EQ(reset_domains_count(rd), 1);

        /* The audio function joins vfio: one domain looked at, both told. */
        obs = (Observed) { .told = obs.told };
        put_endpoint(t, rd, "01:00.1", "vfio-pci", 14);
        ASSERT_TRUE(reset_domains_dirty(rd));
        ASSERT_INT_EQ(reset_domains_settle(rd), 0);
        ASSERT_INT_EQ(obs.device_changed, 2);
        ASSERT_INT_EQ(obs.domain_changed, 1);
        ASSERT_TRUE(reset_domain_possible(gpu, NULL));

        /* Held by one context: possible for it, not for anyone else. */
        static const char A[] = "A", B[] = "B";
        gpu->holder = A;
        reset_domains_device_state_changed(rd, gpu);
        ASSERT_INT_EQ(reset_domains_settle(rd), 0);
        ASSERT_TRUE(reset_domain_possible(gpu, A));
        ASSERT_TRUE(!reset_domain_possible(audio, NULL));
        audio->holder = B;
        reset_domains_device_state_changed(rd, audio);
        ASSERT_INT_EQ(reset_domains_settle(rd), 0);
        ASSERT_TRUE(gpu->domain->several_holders);
        ASSERT_TRUE(!reset_domain_possible(gpu, A));

        /* Nothing marked: settling costs nothing and tells nobody. */
        obs.device_changed = 0;
        ASSERT_TRUE(!reset_domains_dirty(rd));
        ASSERT_INT_EQ(reset_domains_settle(rd), 0);
        ASSERT_INT_EQ(obs.device_changed, 0);

        /* The last function of the bus goes: so does the domain. */
        obs.domain_removed = 0;
        PciAddress a = addr("01:00.0"), b = addr("01:00.1");
        remove_device(t, rd, &a);
        ASSERT_INT_EQ(audio->domain->n_members, 1);
        remove_device(t, rd, &b);
        ASSERT_INT_EQ(reset_domains_settle(rd), 0);
        ASSERT_INT_EQ(obs.domain_removed, 1);
        ASSERT_INT_EQ(reset_domains_count(rd), 0);
        free(check_against_scratch(t, rd, &n));

        reset_domains_free(rd);
        topology_free(t);
}

TEST(test_switch_domains_nest) {
        Topology *t = topology_new(NULL);
        ResetDomains *rd = reset_domains_new(t, &hooks);
        size_t n;

        put_bridge(t, rd, "00:02.0", 2, false);  /* root port */
        put_bridge(t, rd, "02:00.0", 3, false);  /* switch upstream port */
        put_bridge(t, rd, "03:00.0", 4, true);   /* downstream port, hotplug slot */
        put_bridge(t, rd, "03:01.0", 5, true);
        put_endpoint(t, rd, "04:00.0", "vfio-pci", 20);
        put_endpoint(t, rd, "05:00.0", "vfio-pci", 21);
        put_endpoint(t, rd, "05:00.1", "vfio-pci", 21);
        ASSERT_INT_EQ(reset_domains_settle(rd), 0);

        ResetDomain *slot4 = get(t, "04:00.0")->domain;
        ASSERT_INT_EQ(slot4->scope, RESET_SCOPE_SLOT);
        ASSERT_INT_EQ(slot4->key, reset_domain_key(0, 4, 0));
        ASSERT_STR_EQ(members_string(slot4), "0000:04:00.0");
        ASSERT_STR_EQ(members_string(get(t, "03:00.0")->domain),
                      "0000:03:00.0 0000:03:01.0 0000:04:00.0 0000:05:00.0 0000:05:00.1");
        ASSERT_TRUE(get(t, "03:00.0")->domain == get(t, "03:01.0")->domain);
        ASSERT_INT_EQ(get(t, "03:00.0")->domain->n_blocked, 2); /* two bridges in scope */
        ASSERT_TRUE(reset_domain_possible(get(t, "05:00.1"), NULL));
        free(check_against_scratch(t, rd, &n));

        /* A hotplug below the switch reaches the slot's domain and the two
         * above it, nothing else. */
        obs = (Observed) { .told = obs.told };
        put_endpoint(t, rd, "05:00.2", "vfio-pci", 21);
        ASSERT_INT_EQ(reset_domains_settle(rd), 0);
        ASSERT_INT_EQ(obs.domain_changed, 3);
        free(check_against_scratch(t, rd, &n));

        /* The slot loses its reset: its devices move to the bus domain. */
        put_bridge(t, rd, "03:01.0", 5, false);
        ASSERT_INT_EQ(reset_domains_settle(rd), 0);
        ASSERT_INT_EQ(get(t, "05:00.0")->domain->scope, RESET_SCOPE_BUS);
        free(check_against_scratch(t, rd, &n));

        /* The upstream port goes: everything below sits on an orphan bus. */
        PciAddress up = addr("02:00.0");
        remove_device(t, rd, &up);
        ASSERT_INT_EQ(reset_domains_settle(rd), 0);
        ASSERT_TRUE(get(t, "03:00.0")->domain == NULL);
        free(check_against_scratch(t, rd, &n));

        reset_domains_free(rd);
        topology_free(t);
}

/* ---- random machines, random changes -------------------------------------------- */

static const char *const drivers[] = { "vfio-pci", "vfio-pci", "vfio-pci", NULL, "ixgbe", "pci-stub" };
static const char HOLDERS[3][2] = { "A", "B", "C" };

static unsigned rnd(unsigned n) {
        return (unsigned) random() % n;
}

static void random_endpoint(Topology *t, ResetDomains *rd, uint16_t domain, uint8_t bus) {
        PciDeviceInfo i = PCI_DEVICE_INFO_NULL;
        i.address = (PciAddress) { .domain = domain, .bus = bus, .slot = (uint8_t) rnd(4), .function = (uint8_t) rnd(8) };
        if (topology_get(t, &i.address))
                return;
        i.driver = (char *) drivers[rnd(ELEMENTSOF(drivers))];
        i.iommu_group = rnd(8) == 0 ? -1 : (int) rnd(40);
        put(t, rd, &i);
}

static void random_machine(Topology *t, ResetDomains *rd) {
        unsigned next_bus[2] = { 1, 1 };
        for (uint16_t domain = 0; domain < 2; domain++) {
                unsigned ports = 1 + rnd(4);
                for (unsigned p = 0; p < ports && next_bus[domain] < 250; p++) {
                        PciDeviceInfo b = PCI_DEVICE_INFO_NULL;
                        b.address = (PciAddress) { .domain = domain, .bus = 0, .slot = (uint8_t) (1 + p) };
                        b.driver = (char *) "pcieport";
                        b.is_bridge = true;
                        b.secondary_bus = (uint8_t) next_bus[domain]++;
                        b.slot_reset = rnd(3) == 0;
                        put(t, rd, &b);
                        unsigned n = rnd(6);
                        for (unsigned k = 0; k < n; k++)
                                random_endpoint(t, rd, domain, b.secondary_bus);
                        if (rnd(2)) { /* a switch below */
                                PciDeviceInfo s = PCI_DEVICE_INFO_NULL;
                                s.address = (PciAddress) { .domain = domain, .bus = b.secondary_bus, .slot = 8 };
                                s.driver = (char *) "pcieport";
                                s.is_bridge = true;
                                s.secondary_bus = (uint8_t) next_bus[domain]++;
                                s.slot_reset = rnd(2);
                                put(t, rd, &s);
                                for (unsigned k = rnd(6); k > 0; k--)
                                        random_endpoint(t, rd, domain, s.secondary_bus);
                        }
                }
                for (unsigned k = rnd(3); k > 0; k--)
                        random_endpoint(t, rd, domain, 0);
        }
}

static void random_change(Topology *t, ResetDomains *rd) {
        size_t n = topology_size(t);
        PciDevice *d = n ? topology_at(t, rnd((unsigned) n)) : NULL;

        switch (rnd(9)) {
        case 0: /* hotplug somewhere below an existing bridge */
                if (d && d->info.is_bridge)
                        random_endpoint(t, rd, d->info.address.domain, d->info.secondary_bus);
                else if (d)
                        random_endpoint(t, rd, d->info.address.domain, d->info.address.bus);
                break;
        case 1: /* unplug (bridges too, rarely) */
                if (d && (!d->info.is_bridge || rnd(4) == 0)) {
                        PciAddress a = d->info.address;
                        remove_device(t, rd, &a);
                }
                break;
        case 2:
        case 3: /* rebind */
                if (d && !d->info.is_bridge) {
                        PciDeviceInfo i = d->info;
                        i.driver = (char *) drivers[rnd(ELEMENTSOF(drivers))];
                        put(t, rd, &i);
                }
                break;
        case 4: /* another IOMMU group */
                if (d) {
                        PciDeviceInfo i = d->info;
                        i.iommu_group = rnd(6) == 0 ? -1 : (int) rnd(40);
                        put(t, rd, &i);
                }
                break;
        case 5:
        case 6: /* leased, released, or taken by another */
                if (d) {
                        d->holder = rnd(3) == 0 ? NULL : HOLDERS[rnd(3)];
                        reset_domains_device_state_changed(rd, d);
                }
                break;
        case 7: /* the policy excludes it, or no longer */
                if (d) {
                        d->excluded = (int8_t) (rnd(5) == 0);
                        reset_domains_device_state_changed(rd, d);
                }
                break;
        case 8: /* a bridge gains or loses slot reset */
                if (d && d->info.is_bridge) {
                        PciDeviceInfo i = d->info;
                        i.slot_reset = !i.slot_reset;
                        put(t, rd, &i);
                }
                break;
        }
}

TEST(test_random_changes_match_scratch) {
        unsigned seed = getenv("HOTRESETD_TEST_SEED") ? (unsigned) atoi(getenv("HOTRESETD_TEST_SEED")) : 1;
        unsigned machines = 300, checks = 0;

        for (unsigned m = 0; m < machines; m++) {
                srandom(seed + m);
                Topology *t = topology_new(NULL);
                ResetDomains *rd = reset_domains_new(t, &hooks);
                Snapshot *before;
                size_t n_before;

                random_machine(t, rd);
                ASSERT_INT_EQ(reset_domains_settle(rd), 0);
                obs.n_told = 0;
                before = check_against_scratch(t, rd, &n_before);

                for (unsigned batch = 0; batch < 40; batch++) {
                        for (unsigned k = 1 + rnd(4); k > 0; k--)
                                random_change(t, rd);
                        ASSERT_INT_EQ(reset_domains_settle(rd), 0);
                        size_t n_after;
                        Snapshot *after = check_against_scratch(t, rd, &n_after);
                        check_told(before, n_before, after, n_after);
                        free(before);
                        before = after;
                        n_before = n_after;
                        checks++;
                }
                free(before);
                reset_domains_free(rd);
                topology_free(t);
        }
        fprintf(stderr, "%u machines, %u batches checked against scratch (seed %u)\n", machines, checks, seed);
}

int main(void) {
        RUN(test_workstation_domains);
        RUN(test_switch_domains_nest);
        RUN(test_random_changes_match_scratch);
        free(obs.told);
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How fast the topology model answers on a big machine: building the table
 * (as enumeration and as hotplug would), lookups, the affected list and a
 * reset check for every device, and the cost of a query right after a udev
 * change (which invalidates the bridge index). It measures and prints; it
 * never judges the numbers. It fails only if the model returns an error.
 *
 *   bench-topology [DOMAINS]    (1..256; default 8 domains = 10688 devices) */
#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "reset-check.h"
#include "topology.h"
#include "util.h"

/* The machine: per domain 16 root ports, each with a PCIe switch (an
 * upstream port, 9 downstream ports, an 8-function endpoint behind each
 * downstream port), plus 8 integrated functions on the root bus. Even
 * downstream ports reset their slot. Same shape as test-topology's. */
#define ROOT_PORTS 16
#define DOWNSTREAM 9
#define FUNCTIONS 8
#define ROOT_BUS_DEVICES 8
#define PER_DOMAIN (ROOT_PORTS * (2 + DOWNSTREAM + DOWNSTREAM * FUNCTIONS) + ROOT_BUS_DEVICES)
#define ROUNDS 5

#define MIN(a, b) ((a) < (b) ? (a) : (b))

static void check(int r, const char *what) {
        if (r < 0) {
                fprintf(stderr, "%s failed: %s\n", what, strerror(-r));
                exit(1);
        }
}

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000000) + (uint64_t) ts.tv_nsec;
}

static PciDeviceInfo info_at(uint16_t domain, unsigned bus, unsigned slot, unsigned fn) {
        PciDeviceInfo i = PCI_DEVICE_INFO_NULL;
        i.address = (PciAddress) { domain, (uint8_t) bus, (uint8_t) slot, (uint8_t) fn };
        return i;
}

/* Fills infos in address order; returns the count. */
static size_t machine_infos(PciDeviceInfo *infos, unsigned n_domains) {
        size_t n = 0;

        for (unsigned d = 0; d < n_domains; d++) {
                uint16_t dom = (uint16_t) d;

                for (unsigned rp = 0; rp < ROOT_PORTS; rp++) {
                        PciDeviceInfo i = info_at(dom, 0, 1 + rp / 8, rp % 8);
                        i.is_bridge = true;
                        i.secondary_bus = (uint8_t) (1 + rp * (2 + DOWNSTREAM));
                        infos[n++] = i;
                }
                for (unsigned f = 0; f < ROOT_BUS_DEVICES; f++) {
                        PciDeviceInfo i = info_at(dom, 0, 0x1f, f);
                        i.driver = (char *) "vfio-pci";
                        infos[n++] = i;
                }

                for (unsigned rp = 0; rp < ROOT_PORTS; rp++) {
                        unsigned base = 1 + rp * (2 + DOWNSTREAM);

                        PciDeviceInfo i = info_at(dom, base, 0, 0);
                        i.is_bridge = true;
                        i.secondary_bus = (uint8_t) (base + 1);
                        infos[n++] = i;

                        for (unsigned ds = 0; ds < DOWNSTREAM; ds++) {
                                i = info_at(dom, base + 1, ds, 0);
                                i.is_bridge = true;
                                i.secondary_bus = (uint8_t) (base + 2 + ds);
                                i.slot_reset = ds % 2 == 0;
                                infos[n++] = i;
                        }
                        for (unsigned ds = 0; ds < DOWNSTREAM; ds++)
                                for (unsigned fn = 0; fn < FUNCTIONS; fn++) {
                                        i = info_at(dom, base + 2 + ds, 0, fn);
                                        i.driver = (char *) (fn == 1 && ds == 3 ? "snd_hda_intel" : "vfio-pci");
                                        i.iommu_group = (int) (rp * DOWNSTREAM + ds);
                                        infos[n++] = i;
                                }
                }
        }
        return n;
}

static uint32_t rng_state = 2463534242u;

static uint32_t rng(void) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 17;
        rng_state ^= rng_state << 5;
        return rng_state;
}

static void shuffle(PciDeviceInfo *a, size_t n) {
        for (size_t i = n; i > 1; i--) {
                size_t j = rng() % i;
                PciDeviceInfo tmp = a[i - 1];
                a[i - 1] = a[j];
                a[j] = tmp;
        }
}

static Topology *build(const PciDeviceInfo *infos, size_t n) {
        Topology *t = topology_new(NULL);
        if (!t)
                check(-ENOMEM, "topology_new");
        for (size_t i = 0; i < n; i++)
                check(topology_put(t, &infos[i], NULL), "topology_put");
        return t;
}

/* Every tenth device is held by one of two holders, so the check does the
 * holder comparison, not only the driver test. */
static const char HOLDER_A[] = "A", HOLDER_B[] = "B";

static const void *holder_of(const PciDevice *d, void *userdata) {
        uint32_t k = pci_address_key(&d->info.address);
        if (k % 10 != 0)
                return NULL;
        return k % 20 == 0 ? HOLDER_A : HOLDER_B;
}

static void report(const char *what, uint64_t best_ns, size_t ops) {
        printf("%-44s %8zu ops %10.1f ns/op %9.3f ms\n", what, ops, (double) best_ns / (double) ops,
               (double) best_ns / 1e6);
}

int main(int argc, char *argv[]) {
        unsigned n_domains = 8;
        volatile size_t sink = 0;

        if (argc > 1) {
                n_domains = (unsigned) strtoul(argv[1], NULL, 10);
                if (n_domains < 1 || n_domains > 256) {
                        fprintf(stderr, "DOMAINS must be 1..256\n");
                        return 2;
                }
        }

        size_t n_max = (size_t) n_domains * PER_DOMAIN;
        _cleanup_free_ PciDeviceInfo *ordered = calloc(n_max, sizeof(PciDeviceInfo));
        _cleanup_free_ PciDeviceInfo *shuffled = calloc(n_max, sizeof(PciDeviceInfo));
        if (!ordered || !shuffled)
                check(-ENOMEM, "calloc");
        size_t n = machine_infos(ordered, n_domains);
        memcpy(shuffled, ordered, n * sizeof(PciDeviceInfo));
        shuffle(shuffled, n);

        printf("machine: %u domains, %zu devices; best of %d rounds\n", n_domains, n, ROUNDS);

        /* Building: enumeration order appends, hotplug order inserts in
         * the middle (memmove of the pointer array). */
        uint64_t best_ordered = UINT64_MAX, best_shuffled = UINT64_MAX, best_free = UINT64_MAX;
        for (int r = 0; r < ROUNDS; r++) {
                uint64_t t0 = now_ns();
                Topology *t = build(ordered, n);
                uint64_t t1 = now_ns();
                topology_free(t);
                uint64_t t2 = now_ns();
                t = build(shuffled, n);
                uint64_t t3 = now_ns();
                topology_free(t);

                best_ordered = MIN(best_ordered, t1 - t0);
                best_free = MIN(best_free, t2 - t1);
                best_shuffled = MIN(best_shuffled, t3 - t2);
        }
        report("put, address order", best_ordered, n);
        report("put, random order", best_shuffled, n);
        report("free", best_free, n);

        _cleanup_(topology_freep) Topology *t = build(ordered, n);

        /* The first query after a change rebuilds the bridge index. */
        uint64_t best_index = UINT64_MAX;
        for (int r = 0; r < ROUNDS; r++) {
                check(topology_put(t, &ordered[0], NULL), "topology_put");
                uint64_t t0 = now_ns();
                sink += topology_parent_bridge(t, topology_at(t, n - 1)) != NULL;
                best_index = MIN(best_index, now_ns() - t0);
        }
        report("bridge index rebuild (first query)", best_index, 1);

        uint64_t best_get = UINT64_MAX, best_parent = UINT64_MAX, best_affected = UINT64_MAX,
                 best_check = UINT64_MAX;
        size_t total_affected = 0, n_possible = 0;
        for (int r = 0; r < ROUNDS; r++) {
                uint64_t t0 = now_ns();
                for (size_t i = 0; i < n; i++)
                        sink += topology_get(t, &shuffled[i].address) != NULL;
                uint64_t t1 = now_ns();
                for (size_t i = 0; i < n; i++)
                        sink += topology_parent_bridge(t, topology_at(t, i)) != NULL;
                uint64_t t2 = now_ns();

                total_affected = 0;
                for (size_t i = 0; i < n; i++) {
                        PciDevice **affected = NULL;
                        size_t k = 0;
                        check(topology_affected(t, topology_at(t, i), &affected, &k), "topology_affected");
                        total_affected += k;
                        free(affected);
                }
                uint64_t t3 = now_ns();

                n_possible = 0;
                for (size_t i = 0; i < n; i++) {
                        ResetCheck c = {};
                        check(reset_check(t, topology_at(t, i), holder_of, NULL, &c), "reset_check");
                        n_possible += c.possible;
                        reset_check_done(&c);
                }
                uint64_t t4 = now_ns();

                best_get = MIN(best_get, t1 - t0);
                best_parent = MIN(best_parent, t2 - t1);
                best_affected = MIN(best_affected, t3 - t2);
                best_check = MIN(best_check, t4 - t3);
        }
        report("get (random order)", best_get, n);
        report("parent bridge", best_parent, n);
        report("affected, every device", best_affected, n);
        report("reset_check, every device", best_check, n);
        printf("  %zu affected entries in all (%.1f per device), %zu devices resettable\n", total_affected,
               (double) total_affected / (double) n, n_possible);

        /* A udev event between two queries: each query pays for the index
         * rebuild. A rebind changes the driver of one function. */
        const size_t churn = MIN(n, (size_t) 2000);
        uint64_t best_churn = UINT64_MAX;
        for (int r = 0; r < ROUNDS; r++) {
                uint64_t t0 = now_ns();
                for (size_t i = 0; i < churn; i++) {
                        size_t k = (i * 7919) % n;
                        ResetCheck c = {};
                        check(topology_put(t, &ordered[k], NULL), "topology_put");
                        check(reset_check(t, topology_at(t, k), holder_of, NULL, &c), "reset_check");
                        sink += c.possible;
                        reset_check_done(&c);
                }
                best_churn = MIN(best_churn, now_ns() - t0);
        }
        report("replace one device + reset_check", best_churn, churn);

        (void) sink;
        return 0;
}

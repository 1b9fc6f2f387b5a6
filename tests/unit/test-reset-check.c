/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* reset_check(): would the kernel refuse a hot reset, and which device is
 * to blame. The cases follow what vm/README.md observed: a sibling on
 * pci-stub or on its native driver makes the reset fail (EINVAL/EPERM), a
 * root-bus device has no reset (ENODEV), a pci-bridge cannot join the
 * dev_set, and ownership must sit with one holder. */
#include <errno.h>
#include <stdio.h>

#include "reset-check.h"
#include "test-util.h"
#include "topology.h"
#include "util.h"

/* ---- helpers ------------------------------------------------------------ */

/* Holders are opaque pointers to the model; arrays, not literals, so that
 * each is a distinct object. X1 and X2 have the same name on purpose. */
static const char HOLDER_A[] = "A", HOLDER_B[] = "B", HOLDER_X1[] = "X", HOLDER_X2[] = "X";

typedef struct Holding {
        const char *address;
        const char *holder;
} Holding;

static PciAddress addr(const char *s) {
        PciAddress a;
        if (pci_address_parse(s, &a) < 0) {
                fprintf(stderr, "bad address in test: %s\n", s);
                exit(1);
        }
        return a;
}

static PciDevice *put_endpoint(Topology *t, const char *address, const char *driver, int group) {
        PciDeviceInfo i = PCI_DEVICE_INFO_NULL;
        PciDevice *d = NULL;

        i.address = addr(address);
        i.vendor_id = 0x8086;
        i.device_id = 0x10d3;
        i.class_code = 0x020000;
        i.driver = (char *) driver;
        i.iommu_group = group;
        ASSERT_TRUE(topology_put(t, &i, &d) >= 0);
        return d;
}

static PciDevice *put_bridge(Topology *t, const char *address, unsigned secondary, bool slot_reset) {
        PciDeviceInfo i = PCI_DEVICE_INFO_NULL;
        PciDevice *d = NULL;

        i.address = addr(address);
        i.class_code = 0x060400;
        i.is_bridge = true;
        i.secondary_bus = (uint8_t) secondary;
        i.slot_reset = slot_reset;
        ASSERT_TRUE(topology_put(t, &i, &d) >= 0);
        return d;
}

static PciDevice *get(Topology *t, const char *address) {
        PciAddress a = addr(address);
        PciDevice *d = topology_get(t, &a);
        if (!d) {
                fprintf(stderr, "no device %s in the topology\n", address);
                exit(1);
        }
        return d;
}

static void remove_device(Topology *t, const char *address) {
        PciAddress a = addr(address);
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
}

/* userdata: a Holding array ending with a NULL address. */
static const void *holder_of_table(const PciDevice *d, void *userdata) {
        char buf[PCI_ADDRESS_STRING_MAX];

        pci_address_format(&d->info.address, buf);
        for (const Holding *h = userdata; h && h->address; h++)
                if (streq(h->address, buf))
                        return h->holder;
        return NULL;
}

static const char *reason_name(BlockReason r) {
        switch (r) {
        case BLOCK_NONE:
                return "ok";
        case BLOCK_NO_RESET_MECHANISM:
                return "no-mechanism";
        case BLOCK_BRIDGE_IN_SCOPE:
                return "bridge";
        case BLOCK_NO_DRIVER:
                return "no-driver";
        case BLOCK_NOT_VFIO:
                return "not-vfio";
        case BLOCK_NO_IOMMU_GROUP:
                return "no-group";
        case BLOCK_HELD_ELSEWHERE:
                return "held";
        case BLOCK_POLICY:
                return "policy";
        }
        return "?";
}

/* The whole verdict as one line, "bus blocked: ADDR=REASON[HOLDER] ...", so
 * that one comparison checks scope, verdict, membership, order, reasons and
 * holders, and a failure prints all of it. Also checks what a line cannot
 * show: entries point into the table and match the affected list. */
static char *check_string(Topology *t, const char *target, const Holding *holdings, bool use_callback) {
        _cleanup_free_ PciDevice **affected = NULL;
        _cleanup_strv_free_ char **l = NULL;
        ResetCheck c = {};
        size_t n = 0;
        char buf[PCI_ADDRESS_STRING_MAX], *s;
        PciDevice *d = get(t, target);

        ASSERT_INT_EQ(reset_check(t, d, use_callback ? holder_of_table : NULL, (void *) holdings, &c), 0);
        ASSERT_INT_EQ(topology_affected(t, d, &affected, &n), 0);
        ASSERT_INT_EQ(c.n_entries, n);
        ASSERT_INT_EQ(c.scope, topology_reset_scope(t, d));

        bool any_blocked = false;
        for (size_t i = 0; i < c.n_entries; i++) {
                const ResetCheckEntry *e = &c.entries[i];
                ASSERT_TRUE(e->device == affected[i]);
                ASSERT_TRUE(e->device == topology_get(t, &e->device->info.address));
                any_blocked = any_blocked || e->reason != BLOCK_NONE;

                ASSERT_TRUE(asprintf(&s, "%s=%s%s%s%s", pci_address_format(&e->device->info.address, buf),
                                     reason_name(e->reason), e->holder ? "[" : "",
                                     e->holder ? (const char *) e->holder : "", e->holder ? "]" : "") >= 0);
                ASSERT_INT_EQ(strv_extend(&l, s), 0);
                free(s);
        }
        /* possible is exactly "nothing blocks" (and NONE always blocks). */
        ASSERT_INT_EQ(c.possible, !any_blocked && c.n_entries > 0);

        _cleanup_free_ char *joined = strv_join(l, " ");
        ASSERT_TRUE(joined);
        ASSERT_TRUE(asprintf(&s, "%s %s: %s", reset_scope_to_string(c.scope), c.possible ? "possible" : "blocked",
                             joined) >= 0);

        reset_check_done(&c);
        ASSERT_TRUE(!c.entries);
        ASSERT_INT_EQ(c.n_entries, 0);
        ASSERT_TRUE(!c.possible);
        return s;
}

#define ASSERT_CHECK_HELD(t, target, holdings, expected)                                     \
        do {                                                                                 \
                _cleanup_free_ char *_check = check_string((t), (target), (holdings), true); \
                ASSERT_STR_EQ(_check, (expected));                                           \
        } while (0)

/* Without a HolderOf callback: nothing is held. */
#define ASSERT_CHECK(t, target, expected)                                               \
        do {                                                                            \
                _cleanup_free_ char *_check = check_string((t), (target), NULL, false); \
                ASSERT_STR_EQ(_check, (expected));                                      \
        } while (0)

/* vm/README.md: a two-function e1000e behind a root port with hotplug=off,
 * both functions in IOMMU group 14. */
static Topology *new_multifunction(const char *fn0_driver, const char *fn1_driver) {
        Topology *t = topology_new(NULL);
        ASSERT_TRUE(t);
        put_bridge(t, "0000:00:02.0", 1, false);
        put_endpoint(t, "0000:01:00.0", fn0_driver, 14);
        put_endpoint(t, "0000:01:00.1", fn1_driver, 14);
        return t;
}

/* ---- drivers and strings ------------------------------------------------ */

TEST(test_driver_is_vfio) {
        ASSERT_TRUE(driver_is_vfio("vfio-pci"));
        /* Variant drivers, as the kernel names them. */
        ASSERT_TRUE(driver_is_vfio("mlx5_vfio_pci"));
        ASSERT_TRUE(driver_is_vfio("hisi-acc-vfio-pci"));
        ASSERT_TRUE(driver_is_vfio("nvgrace-gpu-vfio-pci"));
        ASSERT_TRUE(driver_is_vfio("pds_vfio_pci"));
        ASSERT_TRUE(driver_is_vfio("virtio_vfio_pci"));
        ASSERT_TRUE(driver_is_vfio("qat_vfio_pci"));

        /* pci-stub holds a device for VFIO, but is not in the dev_set. */
        ASSERT_TRUE(!driver_is_vfio("pci-stub"));
        ASSERT_TRUE(!driver_is_vfio(NULL));
        ASSERT_TRUE(!driver_is_vfio(""));
        ASSERT_TRUE(!driver_is_vfio("e1000e"));
        ASSERT_TRUE(!driver_is_vfio("snd_hda_intel"));
        ASSERT_TRUE(!driver_is_vfio("nvidia"));
        ASSERT_TRUE(!driver_is_vfio("pcieport"));
        ASSERT_TRUE(!driver_is_vfio("virtio-pci"));
        ASSERT_TRUE(!driver_is_vfio("vfio"));
        ASSERT_TRUE(!driver_is_vfio("vfio-platform"));
        ASSERT_TRUE(!driver_is_vfio("vfio-pci "));
        ASSERT_TRUE(!driver_is_vfio("xvfio-pci"));
}

TEST(test_reason_strings) {
        static const BlockReason blocking[] = {
                BLOCK_NO_RESET_MECHANISM, BLOCK_BRIDGE_IN_SCOPE, BLOCK_NO_DRIVER, BLOCK_NOT_VFIO, BLOCK_HELD_ELSEWHERE,
                BLOCK_POLICY, BLOCK_NO_IOMMU_GROUP,
        };

        ASSERT_STR_EQ(block_reason_to_string(BLOCK_NONE), "");
        /* Every blocking reason has its own words. */
        for (size_t i = 0; i < ELEMENTSOF(blocking); i++) {
                ASSERT_TRUE(strlen(block_reason_to_string(blocking[i])) > 0);
                for (size_t j = 0; j < i; j++)
                        ASSERT_TRUE(!streq(block_reason_to_string(blocking[i]), block_reason_to_string(blocking[j])));
        }
        ASSERT_CONTAINS(block_reason_to_string(BLOCK_NO_RESET_MECHANISM), "root bus");
        ASSERT_CONTAINS(block_reason_to_string(BLOCK_BRIDGE_IN_SCOPE), "bridge");
        ASSERT_CONTAINS(block_reason_to_string(BLOCK_NO_DRIVER), "no driver");
        ASSERT_CONTAINS(block_reason_to_string(BLOCK_NOT_VFIO), "vfio");
        ASSERT_CONTAINS(block_reason_to_string(BLOCK_HELD_ELSEWHERE), "held");
}

/* ---- drivers in scope --------------------------------------------------- */

TEST(test_multifunction_all_vfio) {
        _cleanup_(topology_freep) Topology *t = new_multifunction("vfio-pci", "vfio-pci");

        ASSERT_CHECK(t, "0000:01:00.0", "bus possible: 0000:01:00.0=ok 0000:01:00.1=ok");
        ASSERT_CHECK(t, "0000:01:00.1", "bus possible: 0000:01:00.0=ok 0000:01:00.1=ok");
        /* A callback that reports nobody is the same as no callback. */
        ASSERT_CHECK_HELD(t, "0000:01:00.0", NULL, "bus possible: 0000:01:00.0=ok 0000:01:00.1=ok");
}

TEST(test_sibling_on_host_driver) {
        /* The audio function of a GPU left on its host driver. */
        _cleanup_(topology_freep) Topology *t = new_multifunction("vfio-pci", "snd_hda_intel");
        ASSERT_CHECK(t, "0000:01:00.0", "bus blocked: 0000:01:00.0=ok 0000:01:00.1=not-vfio");
        /* Asking about the blocking device itself names it too. */
        ASSERT_CHECK(t, "0000:01:00.1", "bus blocked: 0000:01:00.0=ok 0000:01:00.1=not-vfio");
}

TEST(test_sibling_on_pci_stub) {
        /* vm/README.md: fn1 on pci-stub, HOT_RESET fails with EINVAL in
         * both the cdev and the group model. */
        _cleanup_(topology_freep) Topology *t = new_multifunction("vfio-pci", "pci-stub");
        ASSERT_CHECK(t, "0000:01:00.0", "bus blocked: 0000:01:00.0=ok 0000:01:00.1=not-vfio");
}

TEST(test_sibling_without_group) {
        /* vfio-pci bound but in no IOMMU group: nothing can own it, so the
         * scope cannot be reset (the kernel reports it NOT_OWNED). */
        _cleanup_(topology_freep) Topology *t = new_multifunction("vfio-pci", "vfio-pci");
        put_endpoint(t, "0000:01:00.1", "vfio-pci", -1);
        ASSERT_CHECK(t, "0000:01:00.0", "bus blocked: 0000:01:00.0=ok 0000:01:00.1=no-group");
        ASSERT_CONTAINS(block_reason_to_string(BLOCK_NO_IOMMU_GROUP), "IOMMU group");
}

TEST(test_sibling_unbound) {
        _cleanup_(topology_freep) Topology *t = new_multifunction("vfio-pci", NULL);
        ASSERT_CHECK(t, "0000:01:00.0", "bus blocked: 0000:01:00.0=ok 0000:01:00.1=no-driver");

        /* Both wrong: each is named with its own reason. */
        put_endpoint(t, "0000:01:00.0", "e1000e", 14);
        ASSERT_CHECK(t, "0000:01:00.0", "bus blocked: 0000:01:00.0=not-vfio 0000:01:00.1=no-driver");

        /* Rebinding both to vfio-pci makes it possible. */
        put_endpoint(t, "0000:01:00.0", "vfio-pci", 14);
        put_endpoint(t, "0000:01:00.1", "vfio-pci", 14);
        ASSERT_CHECK(t, "0000:01:00.0", "bus possible: 0000:01:00.0=ok 0000:01:00.1=ok");
}

TEST(test_variant_drivers) {
        _cleanup_(topology_freep) Topology *t = new_multifunction("mlx5_vfio_pci", "hisi-acc-vfio-pci");
        put_endpoint(t, "0000:01:00.2", "nvgrace-gpu-vfio-pci", 14);
        put_endpoint(t, "0000:01:00.3", "vfio-pci", 14);

        ASSERT_CHECK(t, "0000:01:00.0",
                     "bus possible: 0000:01:00.0=ok 0000:01:00.1=ok 0000:01:00.2=ok 0000:01:00.3=ok");
        ASSERT_CHECK(t, "0000:01:00.3",
                     "bus possible: 0000:01:00.0=ok 0000:01:00.1=ok 0000:01:00.2=ok 0000:01:00.3=ok");
}

/* ---- bridges and root buses --------------------------------------------- */

TEST(test_pci_bridge) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);

        /* vm/README.md: a pci-bridge behind a root port, two devices
         * behind it, one IOMMU group. The devices are reset through the
         * bridge's secondary bus; the bridge itself only through the root
         * port's bus, with the bridge in scope. */
        put_bridge(t, "0000:00:03.0", 2, false);
        put_bridge(t, "0000:02:00.0", 3, false);
        put_endpoint(t, "0000:03:01.0", "vfio-pci", 12);
        put_endpoint(t, "0000:03:02.0", "vfio-pci", 12);

        ASSERT_CHECK(t, "0000:03:01.0", "bus possible: 0000:03:01.0=ok 0000:03:02.0=ok");
        ASSERT_CHECK(t, "0000:02:00.0", "bus blocked: 0000:02:00.0=bridge 0000:03:01.0=ok 0000:03:02.0=ok");
        /* The root port itself is on the root bus: no mechanism beats
         * "bridge". */
        ASSERT_CHECK(t, "0000:00:03.0", "none blocked: 0000:00:03.0=no-mechanism");
}

TEST(test_bridge_beside_target) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);

        /* A bus that holds an endpoint and a bridge to a further bus: the
         * bus reset takes the bridge and what is behind it. */
        put_bridge(t, "0000:00:1e.0", 1, false);
        put_endpoint(t, "0000:01:00.0", "vfio-pci", 5);
        put_bridge(t, "0000:01:01.0", 2, false);
        put_endpoint(t, "0000:02:00.0", "vfio-pci", 6);

        ASSERT_CHECK(t, "0000:01:00.0", "bus blocked: 0000:01:00.0=ok 0000:01:01.0=bridge 0000:02:00.0=ok");
        ASSERT_CHECK(t, "0000:02:00.0", "bus possible: 0000:02:00.0=ok");

        /* With slot reset the bridge's slot is not in the endpoint's
         * scope, so the endpoint can be reset alone. */
        put_bridge(t, "0000:00:1e.0", 1, true);
        ASSERT_CHECK(t, "0000:01:00.0", "slot possible: 0000:01:00.0=ok");
        ASSERT_CHECK(t, "0000:01:01.0", "slot blocked: 0000:01:01.0=bridge 0000:02:00.0=ok");
}

TEST(test_pcie_switch) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);

        put_bridge(t, "0000:00:01.0", 1, false);
        put_bridge(t, "0000:01:00.0", 2, false);
        put_bridge(t, "0000:02:00.0", 3, false);
        put_bridge(t, "0000:02:01.0", 4, true);
        put_endpoint(t, "0000:03:00.0", "vfio-pci", 40);
        put_endpoint(t, "0000:03:00.1", "vfio-pci", 40);
        put_endpoint(t, "0000:04:00.0", "mlx5_core", 41);

        /* Endpoints behind downstream ports: only their own port's bus or
         * slot, the other port's host-driver device is irrelevant. */
        ASSERT_CHECK(t, "0000:03:00.1", "bus possible: 0000:03:00.0=ok 0000:03:00.1=ok");
        ASSERT_CHECK(t, "0000:04:00.0", "slot blocked: 0000:04:00.0=not-vfio");
        /* A downstream port: every port is a bridge in scope. */
        ASSERT_CHECK(t, "0000:02:00.0",
                     "bus blocked: 0000:02:00.0=bridge 0000:02:01.0=bridge 0000:03:00.0=ok 0000:03:00.1=ok "
                     "0000:04:00.0=not-vfio");
}

TEST(test_root_bus) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);
        static const Holding held[] = {
                { "0000:00:04.0", HOLDER_A },
                {},
        };

        /* vm/README.md: an e1000e on pcie.0: INFO and HOT_RESET fail with
         * ENODEV, whatever the driver. */
        put_endpoint(t, "0000:00:04.0", "vfio-pci", 3);
        put_endpoint(t, "0000:00:04.1", "snd_hda_intel", 3);
        put_endpoint(t, "0000:00:05.0", NULL, -1);

        ASSERT_CHECK(t, "0000:00:04.0", "none blocked: 0000:00:04.0=no-mechanism");
        ASSERT_CHECK(t, "0000:00:04.1", "none blocked: 0000:00:04.1=no-mechanism");
        ASSERT_CHECK(t, "0000:00:05.0", "none blocked: 0000:00:05.0=no-mechanism");
        /* Held by the asking context: still no mechanism, holder shown. */
        ASSERT_CHECK_HELD(t, "0000:00:04.0", held, "none blocked: 0000:00:04.0=no-mechanism[A]");
}

/* ---- holders ------------------------------------------------------------ */

TEST(test_holders) {
        _cleanup_(topology_freep) Topology *t = new_multifunction("vfio-pci", "vfio-pci");
        put_endpoint(t, "0000:01:00.2", "vfio-pci", 14);

        /* Target held by A, sibling held by B: two iommufds cannot prove
         * ownership, the kernel says NOT_OWNED. */
        static const Holding a_b[] = {
                { "0000:01:00.0", HOLDER_A },
                { "0000:01:00.1", HOLDER_B },
                {},
        };
        ASSERT_CHECK_HELD(t, "0000:01:00.0", a_b,
                          "bus blocked: 0000:01:00.0=ok[A] 0000:01:00.1=held[B] 0000:01:00.2=ok");
        /* From B's side it is A that blocks. */
        ASSERT_CHECK_HELD(t, "0000:01:00.1", a_b,
                          "bus blocked: 0000:01:00.0=held[A] 0000:01:00.1=ok[B] 0000:01:00.2=ok");
        /* Asking about the unheld function: both holders block. */
        ASSERT_CHECK_HELD(t, "0000:01:00.2", a_b,
                          "bus blocked: 0000:01:00.0=held[A] 0000:01:00.1=held[B] 0000:01:00.2=ok");

        /* Everything with A: fine. */
        static const Holding a_a[] = {
                { "0000:01:00.0", HOLDER_A },
                { "0000:01:00.1", HOLDER_A },
                { "0000:01:00.2", HOLDER_A },
                {},
        };
        ASSERT_CHECK_HELD(t, "0000:01:00.1", a_a,
                          "bus possible: 0000:01:00.0=ok[A] 0000:01:00.1=ok[A] 0000:01:00.2=ok[A]");

        /* Target held by A, the rest unheld: the daemon can take them into
         * A's context. */
        static const Holding a_only[] = {
                { "0000:01:00.0", HOLDER_A },
                {},
        };
        ASSERT_CHECK_HELD(t, "0000:01:00.0", a_only, "bus possible: 0000:01:00.0=ok[A] 0000:01:00.1=ok 0000:01:00.2=ok");

        /* Target unheld, a sibling held: the daemon would have to take the
         * whole scope, including A's device. */
        ASSERT_CHECK_HELD(t, "0000:01:00.1", a_only,
                          "bus blocked: 0000:01:00.0=held[A] 0000:01:00.1=ok 0000:01:00.2=ok");

        /* A, A and B: only B's device blocks. */
        static const Holding a_a_b[] = {
                { "0000:01:00.0", HOLDER_A },
                { "0000:01:00.1", HOLDER_A },
                { "0000:01:00.2", HOLDER_B },
                {},
        };
        ASSERT_CHECK_HELD(t, "0000:01:00.0", a_a_b,
                          "bus blocked: 0000:01:00.0=ok[A] 0000:01:00.1=ok[A] 0000:01:00.2=held[B]");

        /* Holders are compared by identity, not by what they point to. */
        static const Holding x1_x2[] = {
                { "0000:01:00.0", HOLDER_X1 },
                { "0000:01:00.1", HOLDER_X2 },
                {},
        };
        ASSERT_CHECK_HELD(t, "0000:01:00.0", x1_x2,
                          "bus blocked: 0000:01:00.0=ok[X] 0000:01:00.1=held[X] 0000:01:00.2=ok");

        /* A lone device held by anyone: it is the target's own holder. */
        _cleanup_(topology_freep) Topology *lone = topology_new(NULL);
        put_bridge(lone, "0000:00:1c.0", 5, false);
        put_endpoint(lone, "0000:05:00.0", "vfio-pci", 9);
        static const Holding b_lone[] = {
                { "0000:05:00.0", HOLDER_B },
                {},
        };
        ASSERT_CHECK_HELD(lone, "0000:05:00.0", b_lone, "bus possible: 0000:05:00.0=ok[B]");
}

TEST(test_reason_precedence) {
        _cleanup_(topology_freep) Topology *t = new_multifunction("vfio-pci", "snd_hda_intel");
        put_endpoint(t, "0000:01:00.2", NULL, 14);
        put_bridge(t, "0000:01:01.0", 7, false);

        /* One reason per device, the one a person must fix first: a
         * bridge can never join; an unbound or host-bound device must be
         * rebound before who holds it matters. */
        static const Holding held[] = {
                { "0000:01:00.0", HOLDER_A },
                { "0000:01:00.1", HOLDER_B },
                { "0000:01:00.2", HOLDER_B },
                { "0000:01:01.0", HOLDER_B },
                {},
        };
        ASSERT_CHECK_HELD(t, "0000:01:00.0", held,
                          "bus blocked: 0000:01:00.0=ok[A] 0000:01:00.1=not-vfio[B] 0000:01:00.2=no-driver[B] "
                          "0000:01:01.0=bridge[B]");
}

/* ---- changes ------------------------------------------------------------ */

TEST(test_removed_sibling) {
        _cleanup_(topology_freep) Topology *t = new_multifunction("vfio-pci", "snd_hda_intel");

        ASSERT_CHECK(t, "0000:01:00.0", "bus blocked: 0000:01:00.0=ok 0000:01:00.1=not-vfio");
        /* Hot-unplug (or remove via sysfs) of the blocking function. */
        remove_device(t, "0000:01:00.1");
        ASSERT_CHECK(t, "0000:01:00.0", "bus possible: 0000:01:00.0=ok");
        /* It comes back on vfio-pci. */
        put_endpoint(t, "0000:01:00.1", "vfio-pci", 14);
        ASSERT_CHECK(t, "0000:01:00.0", "bus possible: 0000:01:00.0=ok 0000:01:00.1=ok");
        /* The root port goes away: the function is on a bus nothing leads
         * to. */
        remove_device(t, "0000:00:02.0");
        ASSERT_CHECK(t, "0000:01:00.0", "none blocked: 0000:01:00.0=no-mechanism");
}

TEST(test_slot_scope) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);

        /* A slot-resettable bus: a host-bound device in another slot does
         * not matter; with a bus reset it does. */
        put_bridge(t, "0000:00:1e.0", 6, true);
        put_endpoint(t, "0000:06:00.0", "vfio-pci", 20);
        put_endpoint(t, "0000:06:00.1", "vfio-pci", 20);
        put_endpoint(t, "0000:06:01.0", "ahci", 21);

        ASSERT_CHECK(t, "0000:06:00.1", "slot possible: 0000:06:00.0=ok 0000:06:00.1=ok");
        ASSERT_CHECK(t, "0000:06:01.0", "slot blocked: 0000:06:01.0=not-vfio");

        put_bridge(t, "0000:00:1e.0", 6, false);
        ASSERT_CHECK(t, "0000:06:00.1", "bus blocked: 0000:06:00.0=ok 0000:06:00.1=ok 0000:06:01.0=not-vfio");
}

typedef struct Calls {
        Topology *topology;
        unsigned n;
} Calls;

static const void *holder_counting(const PciDevice *d, void *userdata) {
        Calls *calls = userdata;

        /* userdata is passed through, and devices are the table's own. */
        ASSERT_TRUE(topology_get(calls->topology, &d->info.address) == d);
        calls->n++;
        return NULL;
}

TEST(test_holder_callback) {
        _cleanup_(topology_freep) Topology *t = new_multifunction("vfio-pci", "vfio-pci");
        Calls calls = { .topology = t };
        ResetCheck c = {};

        put_endpoint(t, "0000:01:00.2", "vfio-pci", 14);
        ASSERT_INT_EQ(reset_check(t, get(t, "0000:01:00.1"), holder_counting, &calls, &c), 0);
        ASSERT_TRUE(c.possible);
        ASSERT_INT_EQ(c.n_entries, 3);
        /* Asked at least once per affected device (and for the target). */
        ASSERT_TRUE(calls.n >= 3);
        for (size_t i = 0; i < c.n_entries; i++)
                ASSERT_TRUE(!c.entries[i].holder);
        reset_check_done(&c);

        /* reset_check_done() is safe on a zeroed result. */
        reset_check_done(&c);
}

/* The policy's exclusions: ahead of every reason but no reset mechanism. */
static int exclude_function_1(const PciDevice *d, void *userdata) {
        unsigned *calls = userdata;
        (*calls)++;
        return d->info.address.function == 1;
}

static int exclude_fails(const PciDevice *d, void *userdata) {
        return -ENOMEM;
}

TEST(test_exclusions) {
        _cleanup_(topology_freep) Topology *t = new_multifunction("vfio-pci", "snd_hda_intel");
        ResetCheck c = {};
        unsigned calls = 0;

        put_endpoint(t, "0000:00:1f.1", "vfio-pci", 3); /* on the root bus */

        ASSERT_INT_EQ(reset_check(t, get(t, "0000:01:00.0"), NULL, NULL, &c), 0);
        ASSERT_INT_EQ(c.entries[1].reason, BLOCK_NOT_VFIO);
        ASSERT_INT_EQ(reset_check_apply_exclusions(&c, exclude_function_1, &calls), 0);
        ASSERT_INT_EQ(calls, 2);
        ASSERT_TRUE(!c.possible);
        ASSERT_INT_EQ(c.entries[0].reason, BLOCK_NONE);
        ASSERT_INT_EQ(c.entries[1].reason, BLOCK_POLICY); /* not "bound to snd_hda_intel" */
        ASSERT_STR_EQ(block_reason_to_string(BLOCK_POLICY), "excluded by policy");
        reset_check_done(&c);

        /* Nothing excluded: the verdict stands. */
        _cleanup_(topology_freep) Topology *ok = new_multifunction("vfio-pci", "vfio-pci");
        ASSERT_INT_EQ(reset_check(ok, get(ok, "0000:01:00.1"), NULL, NULL, &c), 0);
        ASSERT_TRUE(c.possible);
        calls = 0;
        put_endpoint(ok, "0000:01:00.2", "vfio-pci", 14);
        reset_check_done(&c);
        ASSERT_INT_EQ(reset_check(ok, get(ok, "0000:01:00.0"), NULL, NULL, &c), 0);
        ASSERT_INT_EQ(reset_check_apply_exclusions(&c, exclude_function_1, &calls), 0);
        ASSERT_INT_EQ(calls, 3);
        ASSERT_TRUE(!c.possible);
        ASSERT_INT_EQ(c.entries[1].reason, BLOCK_POLICY);
        ASSERT_INT_EQ(c.entries[2].reason, BLOCK_NONE);
        reset_check_done(&c);

        /* No reset mechanism stays what it is. */
        ASSERT_INT_EQ(reset_check(t, get(t, "0000:00:1f.1"), NULL, NULL, &c), 0);
        calls = 0;
        ASSERT_INT_EQ(reset_check_apply_exclusions(&c, exclude_function_1, &calls), 0);
        ASSERT_INT_EQ(calls, 0);
        ASSERT_INT_EQ(c.entries[0].reason, BLOCK_NO_RESET_MECHANISM);
        reset_check_done(&c);

        /* Errors are passed on. */
        ASSERT_INT_EQ(reset_check(t, get(t, "0000:01:00.0"), NULL, NULL, &c), 0);
        ASSERT_INT_EQ(reset_check_apply_exclusions(&c, exclude_fails, NULL), -ENOMEM);
        reset_check_done(&c);
}

int main(void) {
        RUN(test_driver_is_vfio);
        RUN(test_reason_strings);
        RUN(test_multifunction_all_vfio);
        RUN(test_sibling_on_host_driver);
        RUN(test_sibling_on_pci_stub);
        RUN(test_sibling_without_group);
        RUN(test_sibling_unbound);
        RUN(test_variant_drivers);
        RUN(test_pci_bridge);
        RUN(test_bridge_beside_target);
        RUN(test_pcie_switch);
        RUN(test_root_bus);
        RUN(test_holders);
        RUN(test_reason_precedence);
        RUN(test_removed_sibling);
        RUN(test_slot_scope);
        RUN(test_holder_callback);
        RUN(test_exclusions);
        return 0;
}

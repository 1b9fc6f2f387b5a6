/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The topology model: the table (put, replace, remove, order, userdata) and
 * the scope rules that decide which devices a hot reset hits. The machines
 * here mirror what the kernel showed in the VM tier (vm/README.md) plus
 * shapes no test machine has: PCIe switches, several domains, slot resets
 * of conventional slots, broken bridges that loop, and 10k devices. */
#include <errno.h>
#include <stdio.h>

#include "reset-check.h"
#include "test-util.h"
#include "topology.h"
#include "util.h"

/* ---- helpers ------------------------------------------------------------ */

static PciAddress addr(const char *s) {
        PciAddress a;
        if (pci_address_parse(s, &a) < 0) {
                fprintf(stderr, "bad address in test: %s\n", s);
                exit(1);
        }
        return a;
}

static PciDevice *put_info(Topology *t, const PciDeviceInfo *info) {
        PciDevice *d = NULL;
        ASSERT_TRUE(topology_put(t, info, &d) >= 0);
        ASSERT_TRUE(d);
        return d;
}

static PciDevice *put_endpoint(Topology *t, const char *address, const char *driver, int group) {
        PciDeviceInfo i = PCI_DEVICE_INFO_NULL;
        i.address = addr(address);
        i.vendor_id = 0x8086;
        i.device_id = 0x10d3;
        i.class_code = 0x020000;
        i.driver = (char *) driver;
        i.iommu_group = group;
        return put_info(t, &i);
}

static PciDevice *put_bridge(Topology *t, const char *address, unsigned secondary, bool slot_reset) {
        PciDeviceInfo i = PCI_DEVICE_INFO_NULL;
        i.address = addr(address);
        i.vendor_id = 0x1b36;
        i.device_id = 0x000c;
        i.class_code = 0x060400;
        i.is_bridge = true;
        i.secondary_bus = (uint8_t) secondary;
        i.slot_reset = slot_reset;
        return put_info(t, &i);
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

/* The affected list as "addr addr ...", so that one string comparison
 * checks members, count and order, and a failure shows the whole list. */
static char *affected_string(Topology *t, const char *target) {
        _cleanup_free_ PciDevice **affected = NULL;
        _cleanup_strv_free_ char **l = NULL;
        size_t n = 0;
        char buf[PCI_ADDRESS_STRING_MAX];

        ASSERT_INT_EQ(topology_affected(t, get(t, target), &affected, &n), 0);
        for (size_t i = 0; i < n; i++)
                ASSERT_INT_EQ(strv_extend(&l, pci_address_format(&affected[i]->info.address, buf)), 0);

        char *s = strv_join(l, " ");
        ASSERT_TRUE(s);
        return s;
}

static const char *parent_string(Topology *t, const char *address, char buf[static PCI_ADDRESS_STRING_MAX]) {
        PciDevice *p = topology_parent_bridge(t, get(t, address));
        return p ? pci_address_format(&p->info.address, buf) : "none";
}

#define ASSERT_AFFECTED(t, target, expected)                                     \
        do {                                                                     \
                _cleanup_free_ char *_affected = affected_string((t), (target)); \
                ASSERT_STR_EQ(_affected, (expected));                            \
        } while (0)

#define ASSERT_SCOPE(t, target, expected) \
        ASSERT_STR_EQ(reset_scope_to_string(topology_reset_scope((t), get((t), (target)))), (expected))

#define ASSERT_PARENT(t, address, expected)                                            \
        do {                                                                           \
                char _parent_buf[PCI_ADDRESS_STRING_MAX];                              \
                ASSERT_STR_EQ(parent_string((t), (address), _parent_buf), (expected)); \
        } while (0)

/* Userdata in these tests is a heap string; freeing it through the callback
 * lets AddressSanitizer prove that every one is freed exactly once. */
static unsigned n_userdata_freed;

static void free_userdata(void *p) {
        n_userdata_freed++;
        free(p);
}

static void attach_userdata(Topology *t, const char *address) {
        PciDevice *d = get(t, address);
        ASSERT_TRUE(!d->userdata);
        d->userdata = strdup(address);
        ASSERT_TRUE(d->userdata);
}

/* ---- the table ---------------------------------------------------------- */

TEST(test_empty) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);
        PciAddress a = addr("0000:01:00.0");

        ASSERT_TRUE(t);
        ASSERT_INT_EQ(topology_size(t), 0);
        ASSERT_TRUE(!topology_at(t, 0));
        ASSERT_TRUE(!topology_get(t, &a));
        ASSERT_INT_EQ(topology_remove(t, &a), -ENOENT);
        ASSERT_TRUE(!topology_free(NULL));
}

TEST(test_put_copies) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);
        char driver[] = "vfio-pci", cdev[] = "/dev/vfio/devices/vfio3", m0[] = "pm", m1[] = "bus";
        char *methods[] = { m0, m1, NULL };
        PciDeviceInfo i = PCI_DEVICE_INFO_NULL;
        PciDevice *d = NULL;

        i.address = addr("0000:01:00.0");
        i.vendor_id = 0x10de;
        i.device_id = 0x2204;
        i.class_code = 0x030000;
        i.driver = driver;
        i.iommu_group = 14;
        i.reset_methods = methods;
        i.cdev_path = cdev;

        /* 1: a new device. */
        ASSERT_INT_EQ(topology_put(t, &i, &d), 1);
        ASSERT_TRUE(d);
        ASSERT_INT_EQ(topology_size(t), 1);
        ASSERT_TRUE(topology_get(t, &i.address) == d);
        ASSERT_TRUE(topology_at(t, 0) == d);
        ASSERT_TRUE(!topology_at(t, 1));
        ASSERT_TRUE(pci_device_info_equal(&d->info, &i));
        ASSERT_TRUE(!d->userdata);

        /* The table holds deep copies: the caller's strings may go away. */
        ASSERT_TRUE(d->info.driver != driver);
        ASSERT_TRUE(d->info.cdev_path != cdev);
        ASSERT_TRUE(d->info.reset_methods != methods);
        ASSERT_TRUE(d->info.reset_methods[0] != m0);
        driver[0] = 'X';
        cdev[0] = 'X';
        m1[0] = 'X';
        ASSERT_STR_EQ(d->info.driver, "vfio-pci");
        ASSERT_STR_EQ(d->info.cdev_path, "/dev/vfio/devices/vfio3");
        ASSERT_STR_EQ(d->info.reset_methods[1], "bus");
        ASSERT_INT_EQ(strv_length(d->info.reset_methods), 2);
        ASSERT_INT_EQ(d->info.iommu_group, 14);
        ASSERT_INT_EQ(d->info.class_code, 0x030000);

        /* ret may be NULL. */
        PciDeviceInfo j = PCI_DEVICE_INFO_NULL;
        j.address = addr("0000:01:00.1");
        ASSERT_INT_EQ(topology_put(t, &j, NULL), 1);
        ASSERT_INT_EQ(topology_put(t, &j, NULL), 0);
        ASSERT_INT_EQ(topology_size(t), 2);
        PciDevice *e = get(t, "0000:01:00.1");
        ASSERT_TRUE(!e->info.driver);
        ASSERT_TRUE(!e->info.reset_methods);
        ASSERT_TRUE(!e->info.cdev_path);
        ASSERT_INT_EQ(e->info.iommu_group, -1);
}

TEST(test_replace_keeps_userdata) {
        _cleanup_(topology_freep) Topology *t = topology_new(free_userdata);
        PciDevice *d = put_endpoint(t, "0000:01:00.0", "e1000e", 7), *e = NULL;
        PciDeviceInfo i = PCI_DEVICE_INFO_NULL;

        n_userdata_freed = 0;
        attach_userdata(t, "0000:01:00.0");
        void *u = d->userdata;

        /* A rebind to vfio-pci arrives as a new record for the same
         * address: same object, new info, the layer above keeps its state. */
        i.address = addr("01:00.0");
        i.driver = (char *) "vfio-pci";
        i.iommu_group = 7;
        ASSERT_INT_EQ(topology_put(t, &i, &e), 0);
        ASSERT_TRUE(e == d);
        ASSERT_TRUE(d->userdata == u);
        ASSERT_INT_EQ(n_userdata_freed, 0);
        ASSERT_INT_EQ(topology_size(t), 1);
        ASSERT_STR_EQ(d->info.driver, "vfio-pci");
        ASSERT_INT_EQ(d->info.vendor_id, 0);

        /* And an unbind replaces the driver with nothing. */
        i.driver = NULL;
        ASSERT_INT_EQ(topology_put(t, &i, NULL), 0);
        ASSERT_TRUE(!d->info.driver);
        ASSERT_TRUE(d->userdata == u);
        ASSERT_INT_EQ(n_userdata_freed, 0);
}

TEST(test_remove_frees_userdata) {
        Topology *t = topology_new(free_userdata);

        n_userdata_freed = 0;
        put_endpoint(t, "0000:01:00.0", "vfio-pci", 1);
        put_endpoint(t, "0000:01:00.1", "vfio-pci", 1);
        put_endpoint(t, "0000:02:00.0", "vfio-pci", 2);
        put_endpoint(t, "0000:03:00.0", "vfio-pci", 3);
        attach_userdata(t, "0000:01:00.0");
        attach_userdata(t, "0000:01:00.1");
        attach_userdata(t, "0000:02:00.0");
        /* 03:00.0 has no userdata: the callback must not see NULL. */

        PciAddress a = addr("0000:01:00.1");
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
        ASSERT_INT_EQ(n_userdata_freed, 1);
        ASSERT_INT_EQ(topology_size(t), 3);
        ASSERT_TRUE(!topology_get(t, &a));
        ASSERT_INT_EQ(topology_remove(t, &a), -ENOENT);
        ASSERT_INT_EQ(n_userdata_freed, 1);

        a = addr("0000:03:00.0");
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
        ASSERT_INT_EQ(n_userdata_freed, 1);

        /* The remaining ones stay in order and reachable. */
        ASSERT_INT_EQ(topology_size(t), 2);
        ASSERT_STR_EQ(topology_at(t, 0)->userdata, "0000:01:00.0");
        ASSERT_STR_EQ(topology_at(t, 1)->userdata, "0000:02:00.0");

        /* Freeing the table frees the rest. */
        ASSERT_TRUE(!topology_free(t));
        ASSERT_INT_EQ(n_userdata_freed, 3);

        /* Without a callback nothing is called (userdata stays NULL here,
         * so nothing leaks either). */
        t = topology_new(NULL);
        put_endpoint(t, "0000:01:00.0", NULL, -1);
        a = addr("0000:01:00.0");
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
        put_endpoint(t, "0000:01:00.0", NULL, -1);
        topology_free(t);
        ASSERT_INT_EQ(n_userdata_freed, 3);
}

/* A deterministic shuffle (xorshift), so a failure reproduces. */
static uint32_t rng_state = 2463534242u;

static uint32_t rng(void) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 17;
        rng_state ^= rng_state << 5;
        return rng_state;
}

static void shuffle(void *base, size_t n, size_t size) {
        char tmp[128], *b = base;
        ASSERT_TRUE(size <= sizeof(tmp));
        for (size_t i = n; i > 1; i--) {
                size_t j = rng() % i;
                memcpy(tmp, b + (i - 1) * size, size);
                memcpy(b + (i - 1) * size, b + j * size, size);
                memcpy(b + j * size, tmp, size);
        }
}

TEST(test_order) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);
        /* Sorted; inserted shuffled. Domain before bus before device
         * before function, numerically (not as strings: 0000:0a < 0000:10). */
        static const char *const sorted[] = {
                "0000:00:00.0", "0000:00:00.7", "0000:00:01.0", "0000:00:1f.7", "0000:01:00.0",
                "0000:0a:00.0", "0000:10:00.0", "0000:ff:00.0", "0000:ff:1f.7", "0001:00:00.0",
                "0001:00:00.1", "000a:00:00.0", "0010:00:00.0", "8000:80:10.3", "ffff:00:00.0",
                "ffff:ff:1f.7",
        };
        const char *order[ELEMENTSOF(sorted)];
        char buf[PCI_ADDRESS_STRING_MAX];

        memcpy(order, sorted, sizeof(sorted));
        for (unsigned round = 0; round < 20; round++) {
                shuffle(order, ELEMENTSOF(order), sizeof(order[0]));
                for (size_t i = 0; i < ELEMENTSOF(order); i++) {
                        /* Second rounds replace: no duplicates appear. */
                        PciDeviceInfo info = PCI_DEVICE_INFO_NULL;
                        info.address = addr(order[i]);
                        ASSERT_INT_EQ(topology_put(t, &info, NULL), round == 0);
                }
                ASSERT_INT_EQ(topology_size(t), ELEMENTSOF(sorted));
                for (size_t i = 0; i < ELEMENTSOF(sorted); i++) {
                        ASSERT_STR_EQ(pci_address_format(&topology_at(t, i)->info.address, buf), sorted[i]);
                        ASSERT_TRUE(get(t, sorted[i]) == topology_at(t, i));
                }
                ASSERT_TRUE(!topology_at(t, ELEMENTSOF(sorted)));
        }

        /* Removing from the middle, the front and the back keeps the order. */
        PciAddress a = addr("0000:ff:00.0");
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
        a = addr("0000:00:00.0");
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
        a = addr("ffff:ff:1f.7");
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
        ASSERT_INT_EQ(topology_size(t), ELEMENTSOF(sorted) - 3);
        ASSERT_STR_EQ(pci_address_format(&topology_at(t, 0)->info.address, buf), "0000:00:00.7");
        ASSERT_STR_EQ(pci_address_format(&topology_at(t, 6)->info.address, buf), "0000:ff:1f.7");
        ASSERT_STR_EQ(pci_address_format(&topology_at(t, 12)->info.address, buf), "ffff:00:00.0");
        ASSERT_TRUE(!topology_at(t, 13));
        for (size_t i = 1; i < topology_size(t); i++)
                ASSERT_INT_EQ(pci_address_compare(&topology_at(t, i - 1)->info.address, &topology_at(t, i)->info.address), -1);

        /* Lookups of absent neighbours do not find the next device. */
        a = addr("0000:00:00.1");
        ASSERT_TRUE(!topology_get(t, &a));
        a = addr("0000:00:00.0");
        ASSERT_TRUE(!topology_get(t, &a));
        a = addr("ffff:ff:1f.7");
        ASSERT_TRUE(!topology_get(t, &a));
}

/* How many devices share a bus: neighbours in the table, found by
 * search, at the edges of the key space too. */
TEST(test_bus_size) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);
        static const char *const devices[] = {
                "0000:00:00.0", "0000:00:1f.7", "0000:01:00.0", "0000:01:00.1", "0000:01:1f.0",
                "0000:ff:00.0", "0001:00:00.0", "ffff:ff:00.0", "ffff:ff:1f.7",
        };
        for (size_t i = 0; i < ELEMENTSOF(devices); i++)
                put_endpoint(t, devices[i], NULL, -1);
        ASSERT_INT_EQ(topology_bus_size(t, 0, 0), 2);
        ASSERT_INT_EQ(topology_bus_size(t, 0, 1), 3);
        ASSERT_INT_EQ(topology_bus_size(t, 0, 2), 0);
        ASSERT_INT_EQ(topology_bus_size(t, 0, 0xff), 1);
        ASSERT_INT_EQ(topology_bus_size(t, 1, 0), 1);
        ASSERT_INT_EQ(topology_bus_size(t, 0xffff, 0xff), 2);
        ASSERT_INT_EQ(topology_bus_size(t, 0xffff, 0xfe), 0);
        PciAddress a = addr("0000:01:00.1");
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
        ASSERT_INT_EQ(topology_bus_size(t, 0, 1), 2);
}

TEST(test_scope_strings) {
        ASSERT_STR_EQ(reset_scope_to_string(RESET_SCOPE_NONE), "none");
        ASSERT_STR_EQ(reset_scope_to_string(RESET_SCOPE_SLOT), "slot");
        ASSERT_STR_EQ(reset_scope_to_string(RESET_SCOPE_BUS), "bus");
}

/* ---- scopes ------------------------------------------------------------- */

TEST(test_root_bus) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);

        /* q35: an e1000e on pcie.0, a root port beside it, and a second
         * host bridge's root bus 0x80 that no bridge leads to. */
        put_endpoint(t, "0000:00:04.0", "vfio-pci", 3);
        put_endpoint(t, "0000:00:04.1", "vfio-pci", 3);
        put_bridge(t, "0000:00:1c.0", 1, false);
        put_endpoint(t, "0000:01:00.0", "vfio-pci", 4);
        put_endpoint(t, "0000:80:00.0", "vfio-pci", 9);

        ASSERT_PARENT(t, "0000:00:04.0", "none");
        ASSERT_SCOPE(t, "0000:00:04.0", "none");
        /* Only the device itself, not its root-bus neighbours. */
        ASSERT_AFFECTED(t, "0000:00:04.0", "0000:00:04.0");
        ASSERT_AFFECTED(t, "0000:00:04.1", "0000:00:04.1");

        /* A root port sits on the root bus too. */
        ASSERT_PARENT(t, "0000:00:1c.0", "none");
        ASSERT_SCOPE(t, "0000:00:1c.0", "none");
        ASSERT_AFFECTED(t, "0000:00:1c.0", "0000:00:1c.0");

        ASSERT_PARENT(t, "0000:80:00.0", "none");
        ASSERT_SCOPE(t, "0000:80:00.0", "none");
        ASSERT_AFFECTED(t, "0000:80:00.0", "0000:80:00.0");

        ASSERT_PARENT(t, "0000:01:00.0", "0000:00:1c.0");
        ASSERT_SCOPE(t, "0000:01:00.0", "bus");
}

TEST(test_multifunction_bus_scope) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);

        /* vm/README.md: pcie-root-port hotplug=off, a two-function e1000e
         * behind it: a bus reset, both functions hit. */
        put_bridge(t, "0000:00:02.0", 1, false);
        put_endpoint(t, "0000:01:00.0", "vfio-pci", 14);
        put_endpoint(t, "0000:01:00.1", "vfio-pci", 14);
        put_bridge(t, "0000:00:03.0", 2, false);
        put_endpoint(t, "0000:02:00.0", "vfio-pci", 15);

        ASSERT_PARENT(t, "0000:01:00.0", "0000:00:02.0");
        ASSERT_PARENT(t, "0000:01:00.1", "0000:00:02.0");
        ASSERT_SCOPE(t, "0000:01:00.0", "bus");
        ASSERT_SCOPE(t, "0000:01:00.1", "bus");
        ASSERT_AFFECTED(t, "0000:01:00.0", "0000:01:00.0 0000:01:00.1");
        ASSERT_AFFECTED(t, "0000:01:00.1", "0000:01:00.0 0000:01:00.1");
        /* The other root port's bus is not touched, and vice versa. */
        ASSERT_AFFECTED(t, "0000:02:00.0", "0000:02:00.0");
}

TEST(test_slot_vs_bus) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);

        /* A conventional bus with several slots behind a bridge that can
         * reset single slots (a hotplug controller). */
        put_bridge(t, "0000:00:1e.0", 6, true);
        put_endpoint(t, "0000:06:00.0", "vfio-pci", 20);
        put_endpoint(t, "0000:06:00.1", "vfio-pci", 20);
        put_endpoint(t, "0000:06:01.0", "vfio-pci", 21);
        put_endpoint(t, "0000:06:02.0", "vfio-pci", 22);
        put_endpoint(t, "0000:06:02.3", "vfio-pci", 22);
        /* Same slot number on another bus: not in the slot. */
        put_bridge(t, "0000:00:1f.0", 7, true);
        put_endpoint(t, "0000:07:00.0", "vfio-pci", 23);

        ASSERT_SCOPE(t, "0000:06:00.0", "slot");
        ASSERT_AFFECTED(t, "0000:06:00.0", "0000:06:00.0 0000:06:00.1");
        ASSERT_AFFECTED(t, "0000:06:00.1", "0000:06:00.0 0000:06:00.1");
        ASSERT_AFFECTED(t, "0000:06:01.0", "0000:06:01.0");
        ASSERT_AFFECTED(t, "0000:06:02.3", "0000:06:02.0 0000:06:02.3");
        ASSERT_AFFECTED(t, "0000:07:00.0", "0000:07:00.0");

        /* The same bridge without slot reset: the whole bus. */
        put_bridge(t, "0000:00:1e.0", 6, false);
        ASSERT_SCOPE(t, "0000:06:00.0", "bus");
        ASSERT_AFFECTED(t, "0000:06:00.0", "0000:06:00.0 0000:06:00.1 0000:06:01.0 0000:06:02.0 0000:06:02.3");
        ASSERT_AFFECTED(t, "0000:06:02.3", "0000:06:00.0 0000:06:00.1 0000:06:01.0 0000:06:02.0 0000:06:02.3");
        /* The other bridge still resets slots. */
        ASSERT_SCOPE(t, "0000:07:00.0", "slot");
}

TEST(test_slot_scope_with_subordinate_bus) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);

        /* Slot 3 holds a bridge function and an endpoint function; a slot
         * reset takes the bridge's subordinate bus with it, slot 4's
         * subordinate bus stays out. */
        put_bridge(t, "0000:00:1e.0", 6, true);
        put_bridge(t, "0000:06:03.0", 8, false);
        put_endpoint(t, "0000:06:03.1", "vfio-pci", 30);
        put_endpoint(t, "0000:08:00.0", "vfio-pci", 31);
        put_endpoint(t, "0000:08:05.0", "vfio-pci", 32);
        put_bridge(t, "0000:06:04.0", 9, false);
        put_endpoint(t, "0000:09:00.0", "vfio-pci", 33);

        ASSERT_SCOPE(t, "0000:06:03.1", "slot");
        ASSERT_AFFECTED(t, "0000:06:03.1", "0000:06:03.0 0000:06:03.1 0000:08:00.0 0000:08:05.0");
        ASSERT_AFFECTED(t, "0000:06:03.0", "0000:06:03.0 0000:06:03.1 0000:08:00.0 0000:08:05.0");
        ASSERT_AFFECTED(t, "0000:06:04.0", "0000:06:04.0 0000:09:00.0");
        /* Below the inner bridges: bus resets of their own buses. */
        ASSERT_SCOPE(t, "0000:08:00.0", "bus");
        ASSERT_AFFECTED(t, "0000:08:00.0", "0000:08:00.0 0000:08:05.0");
        ASSERT_AFFECTED(t, "0000:09:00.0", "0000:09:00.0");
}

TEST(test_pcie_switch) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);

        /* root port 00:01.0 → bus 1: switch upstream port 01:00.0 → bus 2:
         * downstream ports 02:00.0, 02:01.0 (slot reset), 02:02.0 → buses
         * 3, 4, 5: a two-function endpoint, a single endpoint, an empty
         * slot. Inserted bottom-up, as a hotplug could deliver them. */
        put_endpoint(t, "0000:03:00.1", "vfio-pci", 40);
        put_endpoint(t, "0000:03:00.0", "vfio-pci", 40);
        put_endpoint(t, "0000:04:00.0", "vfio-pci", 41);
        put_bridge(t, "0000:02:02.0", 5, false);
        put_bridge(t, "0000:02:01.0", 4, true);
        put_bridge(t, "0000:02:00.0", 3, false);
        put_bridge(t, "0000:01:00.0", 2, false);
        put_bridge(t, "0000:00:01.0", 1, false);

        ASSERT_PARENT(t, "0000:03:00.0", "0000:02:00.0");
        ASSERT_PARENT(t, "0000:04:00.0", "0000:02:01.0");
        ASSERT_PARENT(t, "0000:02:01.0", "0000:01:00.0");
        ASSERT_PARENT(t, "0000:01:00.0", "0000:00:01.0");
        ASSERT_PARENT(t, "0000:00:01.0", "none");

        ASSERT_SCOPE(t, "0000:03:00.0", "bus");
        ASSERT_AFFECTED(t, "0000:03:00.0", "0000:03:00.0 0000:03:00.1");
        ASSERT_SCOPE(t, "0000:04:00.0", "slot");
        ASSERT_AFFECTED(t, "0000:04:00.0", "0000:04:00.0");

        /* A downstream port: the switch's internal bus and everything
         * below every downstream port. */
        ASSERT_SCOPE(t, "0000:02:01.0", "bus");
        ASSERT_AFFECTED(t, "0000:02:01.0",
                        "0000:02:00.0 0000:02:01.0 0000:02:02.0 0000:03:00.0 0000:03:00.1 0000:04:00.0");
        /* The upstream port: the whole switch. */
        ASSERT_SCOPE(t, "0000:01:00.0", "bus");
        ASSERT_AFFECTED(t, "0000:01:00.0",
                        "0000:01:00.0 0000:02:00.0 0000:02:01.0 0000:02:02.0 0000:03:00.0 0000:03:00.1 0000:04:00.0");
        ASSERT_AFFECTED(t, "0000:00:01.0", "0000:00:01.0");
}

TEST(test_pci_bridge_behind_root_port) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);

        /* vm/README.md: a conventional pci-bridge behind a root port, two
         * devices behind the bridge, all in one IOMMU group (the bridge
         * too). */
        put_bridge(t, "0000:00:03.0", 2, false);
        put_bridge(t, "0000:02:00.0", 3, false);
        put_endpoint(t, "0000:03:01.0", "vfio-pci", 12);
        put_endpoint(t, "0000:03:02.0", "vfio-pci", 12);

        ASSERT_PARENT(t, "0000:03:01.0", "0000:02:00.0");
        ASSERT_SCOPE(t, "0000:03:01.0", "bus");
        ASSERT_AFFECTED(t, "0000:03:01.0", "0000:03:01.0 0000:03:02.0");
        ASSERT_AFFECTED(t, "0000:03:02.0", "0000:03:01.0 0000:03:02.0");
        /* The bridge itself: the root port's bus, the bridge included. */
        ASSERT_PARENT(t, "0000:02:00.0", "0000:00:03.0");
        ASSERT_SCOPE(t, "0000:02:00.0", "bus");
        ASSERT_AFFECTED(t, "0000:02:00.0", "0000:02:00.0 0000:03:01.0 0000:03:02.0");
}

TEST(test_domains) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);

        /* The same bus numbers in two domains; a bridge only parents buses
         * of its own domain. Domain 0002 has a bus 1 without a bridge. */
        put_bridge(t, "0000:00:01.0", 1, false);
        put_endpoint(t, "0000:01:00.0", "vfio-pci", 1);
        put_endpoint(t, "0000:01:00.1", "vfio-pci", 1);
        put_bridge(t, "0001:00:01.0", 1, true);
        put_endpoint(t, "0001:01:00.0", "vfio-pci", 2);
        put_endpoint(t, "0001:01:01.0", "vfio-pci", 3);
        put_endpoint(t, "0002:01:00.0", "vfio-pci", 4);

        ASSERT_PARENT(t, "0000:01:00.0", "0000:00:01.0");
        ASSERT_PARENT(t, "0001:01:00.0", "0001:00:01.0");
        ASSERT_PARENT(t, "0002:01:00.0", "none");
        ASSERT_SCOPE(t, "0000:01:00.0", "bus");
        ASSERT_SCOPE(t, "0001:01:00.0", "slot");
        ASSERT_SCOPE(t, "0002:01:00.0", "none");
        ASSERT_AFFECTED(t, "0000:01:00.1", "0000:01:00.0 0000:01:00.1");
        ASSERT_AFFECTED(t, "0001:01:00.0", "0001:01:00.0");
        ASSERT_AFFECTED(t, "0001:01:01.0", "0001:01:01.0");
        ASSERT_AFFECTED(t, "0002:01:00.0", "0002:01:00.0");

        /* Removing domain 0's root port leaves domain 1 alone. */
        PciAddress a = addr("0000:00:01.0");
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
        ASSERT_SCOPE(t, "0000:01:00.0", "none");
        ASSERT_SCOPE(t, "0001:01:00.0", "slot");
}

/* ---- changes ------------------------------------------------------------ */

TEST(test_bridge_index_follows_changes) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);

        put_bridge(t, "0000:00:1c.0", 1, false);
        put_endpoint(t, "0000:01:00.0", "vfio-pci", 1);
        put_endpoint(t, "0000:02:00.0", "vfio-pci", 2);
        /* Query first, so any cached index exists before each change. */
        ASSERT_PARENT(t, "0000:01:00.0", "0000:00:1c.0");
        ASSERT_SCOPE(t, "0000:01:00.0", "bus");
        ASSERT_PARENT(t, "0000:02:00.0", "none");

        /* Hot-unplug of the root port. */
        PciAddress a = addr("0000:00:1c.0");
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
        ASSERT_PARENT(t, "0000:01:00.0", "none");
        ASSERT_SCOPE(t, "0000:01:00.0", "none");
        ASSERT_AFFECTED(t, "0000:01:00.0", "0000:01:00.0");

        /* Back, now with a hotplug slot. */
        put_bridge(t, "0000:00:1c.0", 1, true);
        ASSERT_PARENT(t, "0000:01:00.0", "0000:00:1c.0");
        ASSERT_SCOPE(t, "0000:01:00.0", "slot");

        /* Replaced in place: slot reset gone. */
        put_bridge(t, "0000:00:1c.0", 1, false);
        ASSERT_SCOPE(t, "0000:01:00.0", "bus");

        /* Replaced in place: renumbered to lead to bus 2. */
        put_bridge(t, "0000:00:1c.0", 2, false);
        ASSERT_PARENT(t, "0000:01:00.0", "none");
        ASSERT_PARENT(t, "0000:02:00.0", "0000:00:1c.0");
        ASSERT_AFFECTED(t, "0000:02:00.0", "0000:02:00.0");

        /* Replaced in place by something that is no bridge at all (its
         * secondary bus now reads 0): it parents neither its old bus nor
         * the root bus. */
        put_endpoint(t, "0000:00:1f.0", NULL, -1);
        ASSERT_PARENT(t, "0000:00:1f.0", "none");
        put_endpoint(t, "0000:00:1c.0", NULL, -1);
        ASSERT_PARENT(t, "0000:02:00.0", "none");
        ASSERT_SCOPE(t, "0000:02:00.0", "none");
        ASSERT_PARENT(t, "0000:00:1f.0", "none");
        ASSERT_SCOPE(t, "0000:00:1f.0", "none");
        a = addr("0000:00:1f.0");
        ASSERT_INT_EQ(topology_remove(t, &a), 0);

        /* A new bridge added after the index was built. */
        put_bridge(t, "0000:00:1d.0", 1, false);
        ASSERT_PARENT(t, "0000:01:00.0", "0000:00:1d.0");
        /* A device added below an indexed bridge. */
        put_endpoint(t, "0000:01:00.1", "vfio-pci", 1);
        ASSERT_AFFECTED(t, "0000:01:00.0", "0000:01:00.0 0000:01:00.1");

        /* Renumbering one of several bridges reorders the index: buses
         * 3, 5, 7 behind 00:1a.0, 00:1b.0, 00:1d.0, then 00:1d.0 moves
         * from bus 1 to bus 9, past the others. */
        put_bridge(t, "0000:00:1a.0", 3, false);
        put_bridge(t, "0000:00:1b.0", 5, false);
        put_bridge(t, "0000:00:19.0", 7, false);
        put_endpoint(t, "0000:03:00.0", "vfio-pci", 3);
        put_endpoint(t, "0000:05:00.0", "vfio-pci", 5);
        put_endpoint(t, "0000:07:00.0", "vfio-pci", 7);
        put_endpoint(t, "0000:09:00.0", "vfio-pci", 9);
        ASSERT_PARENT(t, "0000:03:00.0", "0000:00:1a.0");
        ASSERT_PARENT(t, "0000:09:00.0", "none");
        put_bridge(t, "0000:00:1d.0", 9, false);
        ASSERT_PARENT(t, "0000:01:00.0", "none");
        ASSERT_PARENT(t, "0000:03:00.0", "0000:00:1a.0");
        ASSERT_PARENT(t, "0000:05:00.0", "0000:00:1b.0");
        ASSERT_PARENT(t, "0000:07:00.0", "0000:00:19.0");
        ASSERT_PARENT(t, "0000:09:00.0", "0000:00:1d.0");
        /* And back below the others. */
        put_bridge(t, "0000:00:1d.0", 1, false);
        ASSERT_PARENT(t, "0000:01:00.0", "0000:00:1d.0");
        ASSERT_PARENT(t, "0000:03:00.0", "0000:00:1a.0");
        ASSERT_PARENT(t, "0000:07:00.0", "0000:00:19.0");
        ASSERT_PARENT(t, "0000:09:00.0", "none");
        a = addr("0000:00:1a.0");
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
        a = addr("0000:00:1b.0");
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
        a = addr("0000:00:19.0");
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
        ASSERT_PARENT(t, "0000:03:00.0", "none");
        ASSERT_PARENT(t, "0000:07:00.0", "none");
        ASSERT_PARENT(t, "0000:01:00.0", "0000:00:1d.0");

        /* Removing every bridge, then the table empties completely. */
        a = addr("0000:00:1d.0");
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
        ASSERT_PARENT(t, "0000:01:00.1", "none");
        while (topology_size(t) > 0) {
                a = topology_at(t, 0)->info.address;
                ASSERT_INT_EQ(topology_remove(t, &a), 0);
        }
        put_endpoint(t, "0000:01:00.0", "vfio-pci", 1);
        ASSERT_PARENT(t, "0000:01:00.0", "none");
}

TEST(test_removed_device_leaves_affected) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);

        put_bridge(t, "0000:00:02.0", 1, false);
        put_endpoint(t, "0000:01:00.0", "vfio-pci", 14);
        put_endpoint(t, "0000:01:00.1", "snd_hda_intel", 14);
        put_endpoint(t, "0000:01:00.2", "vfio-pci", 14);
        ASSERT_AFFECTED(t, "0000:01:00.0", "0000:01:00.0 0000:01:00.1 0000:01:00.2");

        PciAddress a = addr("0000:01:00.1");
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
        ASSERT_AFFECTED(t, "0000:01:00.0", "0000:01:00.0 0000:01:00.2");
        ASSERT_AFFECTED(t, "0000:01:00.2", "0000:01:00.0 0000:01:00.2");

        a = addr("0000:01:00.2");
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
        ASSERT_AFFECTED(t, "0000:01:00.0", "0000:01:00.0");
        ASSERT_SCOPE(t, "0000:01:00.0", "bus");
}

/* ---- broken machines ---------------------------------------------------- */

TEST(test_loop_to_upper_bus) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);

        /* 00:1c.0 → bus 1: 01:00.0 → bus 2: 02:00.0 → bus 1 again. Two
         * bridges claim bus 1; whichever the model picks, bus 1's scope is
         * a bus reset and the walk must stop at buses it has seen. */
        put_bridge(t, "0000:00:1c.0", 1, false);
        put_bridge(t, "0000:01:00.0", 2, false);
        put_bridge(t, "0000:02:00.0", 1, false);
        put_endpoint(t, "0000:02:01.0", "vfio-pci", 1);

        ASSERT_PARENT(t, "0000:02:01.0", "0000:01:00.0");
        ASSERT_AFFECTED(t, "0000:02:01.0", "0000:01:00.0 0000:02:00.0 0000:02:01.0");
        ASSERT_AFFECTED(t, "0000:02:00.0", "0000:01:00.0 0000:02:00.0 0000:02:01.0");
        ASSERT_SCOPE(t, "0000:01:00.0", "bus");
        ASSERT_AFFECTED(t, "0000:01:00.0", "0000:01:00.0 0000:02:00.0 0000:02:01.0");
        ASSERT_AFFECTED(t, "0000:00:1c.0", "0000:00:1c.0");
}

TEST(test_loop_to_root_bus) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);

        /* The bottom bridge claims bus 0: the root bus gets a parent, and
         * a reset anywhere on it walks the whole loop once. */
        put_bridge(t, "0000:00:1c.0", 1, false);
        put_endpoint(t, "0000:00:1f.0", "vfio-pci", 1);
        put_bridge(t, "0000:01:00.0", 2, false);
        put_bridge(t, "0000:02:00.0", 0, false);
        put_endpoint(t, "0000:02:01.0", "vfio-pci", 2);

        ASSERT_PARENT(t, "0000:00:1f.0", "0000:02:00.0");
        ASSERT_AFFECTED(t, "0000:00:1f.0",
                        "0000:00:1c.0 0000:00:1f.0 0000:01:00.0 0000:02:00.0 0000:02:01.0");
        ASSERT_AFFECTED(t, "0000:02:01.0",
                        "0000:00:1c.0 0000:00:1f.0 0000:01:00.0 0000:02:00.0 0000:02:01.0");
}

TEST(test_loop_unreachable_and_slot) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);
        _cleanup_free_ PciDevice **affected = NULL;
        size_t n = 0;

        /* Two bridges leading to each other, no root above them. */
        put_bridge(t, "0000:05:00.0", 6, false);
        put_bridge(t, "0000:06:00.0", 5, false);
        put_endpoint(t, "0000:06:01.0", "vfio-pci", 1);
        ASSERT_PARENT(t, "0000:05:00.0", "0000:06:00.0");
        ASSERT_PARENT(t, "0000:06:00.0", "0000:05:00.0");
        ASSERT_AFFECTED(t, "0000:06:01.0", "0000:05:00.0 0000:06:00.0 0000:06:01.0");
        ASSERT_AFFECTED(t, "0000:05:00.0", "0000:05:00.0 0000:06:00.0 0000:06:01.0");

        /* The same with slot resets: still terminates. */
        put_bridge(t, "0000:05:00.0", 6, true);
        put_bridge(t, "0000:06:00.0", 5, true);
        ASSERT_SCOPE(t, "0000:06:01.0", "slot");
        ASSERT_AFFECTED(t, "0000:06:01.0", "0000:06:01.0");
        ASSERT_INT_EQ(topology_affected(t, get(t, "0000:06:00.0"), &affected, &n), 0);
        ASSERT_TRUE(n >= 2);

        /* A bridge that leads to its own bus, beside a root port that also
         * claims it: terminates, and the other devices there keep the root
         * port's bus scope. */
        put_bridge(t, "0000:00:1c.0", 1, false);
        put_bridge(t, "0000:01:00.0", 1, false);
        put_endpoint(t, "0000:01:01.0", "vfio-pci", 2);
        ASSERT_SCOPE(t, "0000:01:01.0", "bus");
        ASSERT_AFFECTED(t, "0000:01:01.0", "0000:01:00.0 0000:01:01.0");
        free(affected);
        affected = NULL;
        ASSERT_INT_EQ(topology_affected(t, get(t, "0000:01:00.0"), &affected, &n), 0);
        ASSERT_TRUE(n >= 1);
        ASSERT_TRUE(topology_parent_bridge(t, get(t, "0000:01:00.0")) != get(t, "0000:01:00.0"));

        /* A bridge that alone leads to its own bus is not its own parent. */
        put_bridge(t, "0000:0a:00.0", 0x0a, false);
        put_endpoint(t, "0000:0a:01.0", "vfio-pci", 3);
        ASSERT_PARENT(t, "0000:0a:00.0", "none");
        ASSERT_SCOPE(t, "0000:0a:00.0", "none");
        ASSERT_AFFECTED(t, "0000:0a:00.0", "0000:0a:00.0");
        ASSERT_PARENT(t, "0000:0a:01.0", "0000:0a:00.0");
        ASSERT_AFFECTED(t, "0000:0a:01.0", "0000:0a:00.0 0000:0a:01.0");
}

/* ---- a big machine ------------------------------------------------------ */

/* 8 domains × 16 root ports, each with a PCIe switch: an upstream port,
 * 9 downstream ports, an 8-function endpoint behind each downstream port;
 * plus 8 integrated functions on each root bus. Even downstream ports can
 * reset their slot. Function 1 behind downstream port 3 is unbound. */
#define BIG_DOMAINS 8
#define BIG_ROOT_PORTS 16
#define BIG_DOWNSTREAM 9
#define BIG_FUNCTIONS 8
#define BIG_ROOT_BUS_DEVICES 8
#define BIG_PER_ROOT_PORT (2 + BIG_DOWNSTREAM + BIG_DOWNSTREAM * BIG_FUNCTIONS)
#define BIG_N (BIG_DOMAINS * (BIG_ROOT_PORTS * BIG_PER_ROOT_PORT + BIG_ROOT_BUS_DEVICES))

static const uint16_t big_domains[BIG_DOMAINS] = { 0x0000, 0x0001, 0x0002, 0x0010, 0x0100, 0x1000, 0x8000, 0xffff };

/* Each root port owns 2 + BIG_DOWNSTREAM consecutive bus numbers. */
static unsigned big_bus(unsigned rp) {
        return 1 + rp * (2 + BIG_DOWNSTREAM);
}

static PciDeviceInfo big_info(uint16_t domain, unsigned bus, unsigned slot, unsigned fn) {
        PciDeviceInfo i = PCI_DEVICE_INFO_NULL;
        i.address = (PciAddress) { domain, (uint8_t) bus, (uint8_t) slot, (uint8_t) fn };
        return i;
}

static size_t big_machine_infos(PciDeviceInfo *infos) {
        size_t n = 0;

        for (unsigned d = 0; d < BIG_DOMAINS; d++) {
                uint16_t dom = big_domains[d];

                for (unsigned f = 0; f < BIG_ROOT_BUS_DEVICES; f++) {
                        PciDeviceInfo i = big_info(dom, 0, 0x1f, f);
                        i.driver = (char *) "vfio-pci";
                        i.iommu_group = 1;
                        infos[n++] = i;
                }

                for (unsigned rp = 0; rp < BIG_ROOT_PORTS; rp++) {
                        unsigned base = big_bus(rp);

                        PciDeviceInfo i = big_info(dom, 0, 1 + rp / 8, rp % 8);
                        i.is_bridge = true;
                        i.secondary_bus = (uint8_t) base;
                        infos[n++] = i;

                        i = big_info(dom, base, 0, 0);
                        i.is_bridge = true;
                        i.secondary_bus = (uint8_t) (base + 1);
                        infos[n++] = i;

                        for (unsigned ds = 0; ds < BIG_DOWNSTREAM; ds++) {
                                i = big_info(dom, base + 1, ds, 0);
                                i.is_bridge = true;
                                i.secondary_bus = (uint8_t) (base + 2 + ds);
                                i.slot_reset = ds % 2 == 0;
                                infos[n++] = i;

                                for (unsigned fn = 0; fn < BIG_FUNCTIONS; fn++) {
                                        i = big_info(dom, base + 2 + ds, 0, fn);
                                        i.driver = ds == 3 && fn == 1 ? NULL : (char *) "vfio-pci";
                                        i.iommu_group = (int) (100 + rp * BIG_DOWNSTREAM + ds);
                                        infos[n++] = i;
                                }
                        }
                }
        }
        return n;
}

static void assert_big_affected(Topology *t, uint16_t domain, unsigned bus, unsigned slot, unsigned fn,
                                ResetScope scope, size_t n_expected, const char *first, const char *last) {
        PciAddress a = { domain, (uint8_t) bus, (uint8_t) slot, (uint8_t) fn };
        PciDevice *d = topology_get(t, &a);
        _cleanup_free_ PciDevice **affected = NULL;
        size_t n = 0;
        char buf[PCI_ADDRESS_STRING_MAX];

        ASSERT_TRUE(d);
        ASSERT_INT_EQ(topology_reset_scope(t, d), scope);
        ASSERT_INT_EQ(topology_affected(t, d, &affected, &n), 0);
        ASSERT_INT_EQ(n, n_expected);
        ASSERT_STR_EQ(pci_address_format(&affected[0]->info.address, buf), first);
        ASSERT_STR_EQ(pci_address_format(&affected[n - 1]->info.address, buf), last);
}

TEST(test_big_machine) {
        _cleanup_(topology_freep) Topology *t = topology_new(NULL);
        _cleanup_free_ PciDeviceInfo *infos = calloc(BIG_N, sizeof(PciDeviceInfo));
        size_t n_scope[3] = {}, n_affected_total = 0, n_possible = 0, n_bridges = 0;

        ASSERT_TRUE(infos);
        ASSERT_INT_EQ(big_machine_infos(infos), BIG_N);
        ASSERT_INT_EQ(BIG_N, 10688);

        /* Hotplug order, not enumeration order: every insert lands
         * somewhere in the middle. */
        shuffle(infos, BIG_N, sizeof(PciDeviceInfo));
        PciDevice *first = NULL;
        ASSERT_INT_EQ(topology_put(t, &infos[0], &first), 1);
        for (size_t i = 1; i < BIG_N; i++)
                ASSERT_INT_EQ(topology_put(t, &infos[i], NULL), 1);
        ASSERT_INT_EQ(topology_size(t), 10688);
        /* Devices do not move when the table grows: the layer above keeps
         * pointers to them (and their userdata). */
        ASSERT_TRUE(topology_get(t, &infos[0].address) == first);

        for (size_t i = 0; i < BIG_N; i++) {
                PciDevice *d = topology_get(t, &infos[i].address);
                ASSERT_TRUE(d);
                ASSERT_TRUE(pci_device_info_equal(&d->info, &infos[i]));
        }
        ASSERT_TRUE(!topology_at(t, BIG_N));

        for (size_t i = 0; i < BIG_N; i++) {
                PciDevice *d = topology_at(t, i);
                _cleanup_free_ PciDevice **affected = NULL;
                size_t n = 0;
                bool self = false;

                if (i > 0)
                        ASSERT_INT_EQ(pci_address_compare(&topology_at(t, i - 1)->info.address, &d->info.address), -1);
                n_bridges += d->info.is_bridge;

                ResetScope s = topology_reset_scope(t, d);
                ASSERT_TRUE(s <= RESET_SCOPE_BUS);
                n_scope[s]++;

                ASSERT_INT_EQ(topology_affected(t, d, &affected, &n), 0);
                n_affected_total += n;
                for (size_t j = 0; j < n; j++) {
                        self = self || affected[j] == d;
                        ASSERT_INT_EQ(affected[j]->info.address.domain, d->info.address.domain);
                        if (j > 0)
                                ASSERT_INT_EQ(pci_address_compare(&affected[j - 1]->info.address,
                                                                  &affected[j]->info.address), -1);
                }
                ASSERT_TRUE(self);

                ResetCheck c = {};
                ASSERT_INT_EQ(reset_check(t, d, NULL, NULL, &c), 0);
                ASSERT_INT_EQ(c.scope, s);
                ASSERT_INT_EQ(c.n_entries, n);
                n_possible += c.possible;
                reset_check_done(&c);
        }

        /* Per domain: 16 root ports + 8 root-bus functions have no reset;
         * 16 × (upstream + 9 downstream + 4 odd downstream ports' 8
         * functions) are bus resets; 16 × 5 even ports' 8 functions are
         * slot resets. */
        ASSERT_INT_EQ(n_scope[RESET_SCOPE_NONE], 8 * 24);
        ASSERT_INT_EQ(n_scope[RESET_SCOPE_BUS], 8 * 672);
        ASSERT_INT_EQ(n_scope[RESET_SCOPE_SLOT], 8 * 640);
        ASSERT_INT_EQ(n_bridges, 8 * 16 * 11);
        /* Per domain: 24 × 1 + 16 upstream × 82 + 144 downstream × 81 +
         * 1152 endpoint functions × 8. */
        ASSERT_INT_EQ(n_affected_total, 8 * (24 + 16 * 82 + 144 * 81 + 1152 * 8));
        /* Only endpoint functions can be reset, and not the 8 functions
         * that share downstream port 3 with an unbound function. */
        ASSERT_INT_EQ(n_possible, 8 * 16 * 8 * 8);

        /* A few scopes in full. Domain ffff, root port 15: buses a6..b0. */
        ASSERT_INT_EQ(big_bus(15), 0xa6);
        assert_big_affected(t, 0xffff, 0xb0, 0, 3, RESET_SCOPE_SLOT, 8, "ffff:b0:00.0", "ffff:b0:00.7");
        assert_big_affected(t, 0xffff, 0xaf, 0, 5, RESET_SCOPE_BUS, 8, "ffff:af:00.0", "ffff:af:00.7");
        assert_big_affected(t, 0xffff, 0xa7, 4, 0, RESET_SCOPE_BUS, 81, "ffff:a7:00.0", "ffff:b0:00.7");
        assert_big_affected(t, 0xffff, 0xa6, 0, 0, RESET_SCOPE_BUS, 82, "ffff:a6:00.0", "ffff:b0:00.7");
        assert_big_affected(t, 0xffff, 0x00, 2, 7, RESET_SCOPE_NONE, 1, "ffff:00:02.7", "ffff:00:02.7");
        assert_big_affected(t, 0xffff, 0x00, 0x1f, 0, RESET_SCOPE_NONE, 1, "ffff:00:1f.0", "ffff:00:1f.0");
        /* Domain 0, root port 0: buses 01..0b. */
        assert_big_affected(t, 0x0000, 0x01, 0, 0, RESET_SCOPE_BUS, 82, "0000:01:00.0", "0000:0b:00.7");
        assert_big_affected(t, 0x0000, 0x03, 0, 7, RESET_SCOPE_SLOT, 8, "0000:03:00.0", "0000:03:00.7");

        char buf[PCI_ADDRESS_STRING_MAX];
        PciAddress a = { 0x1000, 0x58, 0, 2 }; /* root port 7 (buses 4e..58), downstream port 8 */
        PciDevice *d = topology_get(t, &a);
        ASSERT_TRUE(d);
        d = topology_parent_bridge(t, d);
        ASSERT_STR_EQ(pci_address_format(&d->info.address, buf), "1000:4f:08.0");
        d = topology_parent_bridge(t, d);
        ASSERT_STR_EQ(pci_address_format(&d->info.address, buf), "1000:4e:00.0");
        d = topology_parent_bridge(t, d);
        ASSERT_STR_EQ(pci_address_format(&d->info.address, buf), "1000:00:01.7");
        ASSERT_TRUE(!topology_parent_bridge(t, d));

        /* Unplug one switch's upstream port: its downstream ports are left
         * on a bus nothing leads to, its endpoints keep their ports, the
         * neighbouring switch is untouched. */
        a = (PciAddress) { 0x1000, 0x4e, 0, 0 };
        ASSERT_INT_EQ(topology_remove(t, &a), 0);
        ASSERT_INT_EQ(topology_size(t), BIG_N - 1);
        assert_big_affected(t, 0x1000, 0x4f, 0, 0, RESET_SCOPE_NONE, 1, "1000:4f:00.0", "1000:4f:00.0");
        assert_big_affected(t, 0x1000, 0x58, 0, 2, RESET_SCOPE_SLOT, 8, "1000:58:00.0", "1000:58:00.7");
        assert_big_affected(t, 0x1000, 0x43, 0, 0, RESET_SCOPE_BUS, 82, "1000:43:00.0", "1000:4d:00.7");
        assert_big_affected(t, 0x1000, 0x00, 1, 7, RESET_SCOPE_NONE, 1, "1000:00:01.7", "1000:00:01.7");
}

int main(void) {
        RUN(test_empty);
        RUN(test_put_copies);
        RUN(test_replace_keeps_userdata);
        RUN(test_remove_frees_userdata);
        RUN(test_order);
        RUN(test_bus_size);
        RUN(test_scope_strings);
        RUN(test_root_bus);
        RUN(test_multifunction_bus_scope);
        RUN(test_slot_vs_bus);
        RUN(test_slot_scope_with_subordinate_bus);
        RUN(test_pcie_switch);
        RUN(test_pci_bridge_behind_root_port);
        RUN(test_domains);
        RUN(test_bridge_index_follows_changes);
        RUN(test_removed_device_leaves_affected);
        RUN(test_loop_to_upper_bus);
        RUN(test_loop_to_root_bus);
        RUN(test_loop_unreachable_and_slot);
        RUN(test_big_machine);
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The core without the bus: the manager fed by the emulated kernel, leases
 * taken and given back, and what that does to the reset domains and the
 * publish queues. Linked against the core library only, so a core file
 * that called into bus/ would make this test fail to link: the layers
 * hold. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "context.h"
#include "manager.h"
#include "test-util.h"
#include "util.h"

static size_t contexts_removed;

static void hook_context_removed(Manager *m, Context *c) {
        contexts_removed++;
}

static PciDevice *device(Manager *m, const char *address) {
        PciAddress a;
        PciDevice *d = NULL;
        ASSERT_INT_EQ(pci_address_parse(address, &a), 0);
        ASSERT_INT_EQ(manager_find_device(m, &a, &d, NULL), 0);
        return d;
}

/* Drains the device queue; returns how many were queued. */
static size_t drain_devices(Manager *m) {
        size_t n = 0;
        ASSERT_INT_EQ(manager_settle(m), 0);
        while (manager_pop_device(m))
                n++;
        while (manager_pop_domain(m))
                ;
        while (manager_pop_context(m))
                ;
        m->changes = 0;
        return n;
}

TEST(test_leases_move_holders) {
        sd_event *e = NULL;
        Manager *m = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;

        ASSERT_INT_EQ(sd_event_new(&e), 0);
        ASSERT_INT_EQ(manager_new(e, &m), 0);
        m->hooks.context_removed = hook_context_removed;
        ASSERT_INT_EQ(backend_emulated_new(e, EXAMPLES_DIR "/workstation.json", manager_on_backend_event, m,
                                           &m->backend),
                      0);
        ASSERT_INT_EQ(backend_start(m->backend), 0);
        ASSERT_TRUE(drain_devices(m) >= 16);

        /* The SR-IOV NIC's bus: the PF on ixgbe blocks every VF's reset. */
        PciDevice *vf = device(m, "0000:03:10.0"), *pf = device(m, "0000:03:00.0");
        ASSERT_TRUE(vf->domain && vf->domain == pf->domain);
        ASSERT_TRUE(!reset_domain_possible(vf, NULL));

        /* A lease of the GPU: it and its domain change hands, nothing else. */
        PciDevice *gpu = device(m, "0000:01:00.0");
        ASSERT_TRUE(!reset_domain_possible(gpu, NULL)); /* its audio function is on a host driver */
        Context *c = NULL;
        ASSERT_INT_EQ(context_new(m, ":1.42", 1000, CONTEXT_CONNECTION, -1, "test", &c, &error), 0);
        ASSERT_INT_EQ(manager_add_context(m, c), 0);
        PciDevice *nvme = device(m, "0000:02:00.0");
        uint32_t devid = 0;
        ASSERT_INT_EQ(context_attach(c, nvme, true, &devid, &error), 0);
        ASSERT_TRUE(devid > 0);
        ASSERT_TRUE(manager_holder_of(m, nvme) == c);
        ASSERT_TRUE(manager_group_owner(m, nvme->info.iommu_group) == c);
        /* Only the NVMe drive (alone on its root port) is told. */
        ASSERT_INT_EQ(drain_devices(m), 1);
        ASSERT_TRUE(reset_domain_possible(nvme, c));
        ASSERT_TRUE(!reset_domain_possible(nvme, NULL));

        /* A second lease cannot take it. */
        Context *other = NULL;
        ASSERT_INT_EQ(context_new(m, ":1.43", 1001, CONTEXT_CONNECTION, -1, "", &other, &error), 0);
        ASSERT_INT_EQ(manager_add_context(m, other), 0);
        ASSERT_TRUE(context_attach(other, nvme, true, &devid, &error) < 0);
        ASSERT_STR_EQ(error.name, "org.hotresetd.Broker1.Error.InUse");
        sd_bus_error_free(&error);

        /* The owner leaves: its lease goes, announced, and the device is free. */
        manager_owner_gone(m, ":1.42");
        ASSERT_INT_EQ(contexts_removed, 1);
        ASSERT_TRUE(manager_holder_of(m, nvme) == NULL);
        ASSERT_TRUE(manager_group_owner(m, nvme->info.iommu_group) == NULL);
        ASSERT_INT_EQ(drain_devices(m), 1);
        ASSERT_TRUE(reset_domain_possible(nvme, NULL));
        ASSERT_INT_EQ(m->n_contexts, 1);

        manager_free(m);
        ASSERT_INT_EQ(contexts_removed, 2); /* the other lease, on the way out */
        sd_event_unref(e);
}

int main(void) {
        RUN(test_leases_move_holders);
        return 0;
}

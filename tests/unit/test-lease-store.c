/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The lease record a restarted daemon reads back (lease-store.c): what it
 * writes reads back the same, and every way a record can be wrong is
 * refused with words that say which. The restore itself (files from the
 * store, devices as the machine is now) is tested against the running
 * daemon: tests/integration/test_restart.py. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "lease-store.h"
#include "test-util.h"
#include "util.h"

TEST(test_round_trip) {
        ContextDevice devices[2] = {
                { .iommu_group = 14, .fd = 7, .devid = 3, .bound = true },
                { .iommu_group = 15, .fd = 8, .devid = 0, .bound = true, .bound_by_client = true },
        };
        ContextGroup groups[1] = { { .group = 14, .fd = 9 } };
        ASSERT_INT_EQ(pci_address_parse("0000:01:00.0", &devices[0].address), 0);
        ASSERT_INT_EQ(pci_address_parse("0001:02:1f.7", &devices[1].address), 0);
        Context c = {
                .id = 42,
                .owner = (char *) ":1.99",
                .owner_uid = 1000,
                .lifetime = CONTEXT_PROCESS,
                .pid = 1234,
                .description = (char *) "vm \"one\"\nwith a newline",
                .ioas_id = 2,
                .iommu_set = true,
                .groups = groups,
                .n_groups = 1,
                .devices = devices,
                .n_devices = 2,
        };
        _cleanup_free_ char *text = lease_record_format(&c, "emulated-iommufd");
        _cleanup_free_ char *error = NULL;
        _cleanup_(lease_record_done) LeaseRecord r = {};

        ASSERT_TRUE(text);
        ASSERT_INT_EQ(lease_record_parse(text, &r, &error), 0);
        ASSERT_TRUE(!error);
        ASSERT_STR_EQ(r.backend, "emulated-iommufd");
        ASSERT_INT_EQ(r.id, 42);
        ASSERT_STR_EQ(r.owner, ":1.99");
        ASSERT_INT_EQ(r.uid, 1000);
        ASSERT_INT_EQ(r.lifetime, CONTEXT_PROCESS);
        ASSERT_INT_EQ(r.pid, 1234);
        ASSERT_STR_EQ(r.description, "vm \"one\"\nwith a newline");
        ASSERT_INT_EQ(r.ioas_id, 2);
        ASSERT_TRUE(r.iommu_set);
        ASSERT_INT_EQ(r.n_groups, 1);
        ASSERT_INT_EQ(r.groups[0], 14);
        ASSERT_INT_EQ(r.n_devices, 2);
        ASSERT_TRUE(pci_address_equal(&r.devices[0].address, &devices[0].address));
        ASSERT_TRUE(pci_address_equal(&r.devices[1].address, &devices[1].address));
        ASSERT_INT_EQ(r.devices[0].devid, 3);
        ASSERT_INT_EQ(r.devices[0].iommu_group, 14);
        ASSERT_TRUE(r.devices[0].bound && !r.devices[0].bound_by_client);
        ASSERT_TRUE(r.devices[1].bound && r.devices[1].bound_by_client);
}

TEST(test_file_names) {
        char name[64];
        PciAddress a;

        ASSERT_INT_EQ(pci_address_parse("0000:01:00.1", &a), 0);
        lease_device_file_name(name, sizeof name, 7, &a);
        /* systemd refuses ':' in FDNAME=. */
        ASSERT_STR_EQ(name, "c7-d0000_01_00.1");
        ASSERT_TRUE(!strchr(name, ':'));
        lease_file_name(name, sizeof name, 7, "iommufd");
        ASSERT_STR_EQ(name, "c7-iommufd");
}

#define GOOD_HEAD "\"version\": 1, \"backend\": \"emulated-iommufd\", \"id\": 3, \"owner\": \":1.5\", \"uid\": 0, "
#define GOOD_TAIL "\"pid\": 0, \"description\": \"\", \"ioas\": 1, \"iommu_set\": false, "

TEST(test_mismatched_records) {
        static const struct {
                const char *json;
                const char *error;
        } cases[] = {
                { "", "not a JSON object" },
                { "[1, 2]", "not a JSON object" },
                { "{\"version\": 2}", "unknown \"version\"" },
                { "{\"version\": 1, \"id\": 3}", "no \"backend\"" },
                { "{\"version\": 1, \"backend\": \"x\", \"id\": 0}", "no \"id\" above 0" },
                { "{\"version\": 1, \"backend\": \"x\", \"id\": \"3\"}", "no \"id\" above 0" },
                { "{\"version\": 1, \"backend\": \"x\", \"id\": 3, \"owner\": \"\"}", "no \"owner\"" },
                { "{\"version\": 1, \"backend\": \"x\", \"id\": 3, \"owner\": \":1.5\", \"uid\": -1}", "no valid \"uid\"" },
                { "{" GOOD_HEAD "\"lifetime\": \"forever\"}", "unknown \"lifetime\"" },
                { "{" GOOD_HEAD "\"lifetime\": \"process\", " GOOD_TAIL "\"groups\": [], \"devices\": []}",
                  "a process-tied lease without a \"pid\"" },
                { "{" GOOD_HEAD "\"lifetime\": \"connection\", " GOOD_TAIL "\"groups\": {}, \"devices\": []}",
                  "no \"groups\" or \"devices\" list" },
                { "{" GOOD_HEAD "\"lifetime\": \"connection\", " GOOD_TAIL "\"groups\": [5, 5], \"devices\": []}",
                  "a group listed twice" },
                { "{" GOOD_HEAD "\"lifetime\": \"connection\", " GOOD_TAIL "\"groups\": [\"5\"], \"devices\": []}",
                  "a group that is no number" },
                { "{" GOOD_HEAD "\"lifetime\": \"connection\", " GOOD_TAIL
                  "\"groups\": [], \"devices\": [{\"address\": \"01:00.0\\n\"}]}",
                  "a device without a valid \"address\"" },
                { "{" GOOD_HEAD "\"lifetime\": \"connection\", " GOOD_TAIL
                  "\"groups\": [], \"devices\": [{\"address\": \"0000:01:00.0\", \"group\": 1, \"devid\": 4294967296}]}",
                  "a device without a valid \"devid\"" },
                { "{" GOOD_HEAD "\"lifetime\": \"connection\", " GOOD_TAIL
                  "\"groups\": [], \"devices\": [{\"address\": \"0000:01:00.0\", \"group\": 1, \"devid\": 1, "
                  "\"bound\": true, \"bound_by_client\": false}, {\"address\": \"01:00.0\", \"group\": 1, "
                  "\"devid\": 1, \"bound\": true, \"bound_by_client\": false}]}",
                  "a device listed twice" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *error = NULL;
                LeaseRecord r = {};
                int k = lease_record_parse(cases[i].json, &r, &error);
                if (k >= 0 || !error || !strstr(error, cases[i].error)) {
                        fprintf(stderr, "case %zu: %s\n  got %d, \"%s\", expected \"%s\"\n", i, cases[i].json, k,
                                strempty(error), cases[i].error);
                        exit(1);
                }
                ASSERT_INT_EQ(k, -EBADMSG);
        }

        /* And the good one those are made from. */
        _cleanup_free_ char *error = NULL;
        _cleanup_(lease_record_done) LeaseRecord r = {};
        ASSERT_INT_EQ(lease_record_parse("{" GOOD_HEAD "\"lifetime\": \"persistent\", " GOOD_TAIL
                                         "\"groups\": [], \"devices\": []}",
                                         &r, &error),
                      0);
        ASSERT_INT_EQ(r.lifetime, CONTEXT_PERSISTENT);
}

int main(void) {
        RUN(test_round_trip);
        RUN(test_file_names);
        RUN(test_mismatched_records);
        return 0;
}

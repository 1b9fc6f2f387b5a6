/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>

#include "machine-file.h"
#include "test-util.h"
#include "util.h"

static Machine *parse_ok(const char *text) {
        _cleanup_free_ char *error = NULL;
        Machine *m = NULL;
        int r = machine_parse(text, "machine.json", &m, &error);

        if (r < 0)
                fprintf(stderr, "unexpected error: %s\n", strempty(error));
        ASSERT_INT_EQ(r, 0);
        ASSERT_TRUE(m);
        ASSERT_TRUE(!error);
        return m;
}

/* Parses text that must fail and checks the whole message. */
static void parse_fails(const char *text, const char *expected) {
        _cleanup_free_ char *error = NULL;
        Machine *m = NULL;
        int r = machine_parse(text, "machine.json", &m, &error);

        ASSERT_INT_EQ(r, -EINVAL);
        ASSERT_TRUE(!m);
        ASSERT_STR_EQ(error, expected);
}

static const char *addr(const PciDeviceInfo *d, char buf[static PCI_ADDRESS_STRING_MAX]) {
        return pci_address_format(&d->address, buf);
}

TEST(test_valid_file) {
        _cleanup_(machine_freep) Machine *m = NULL;
        _cleanup_free_ char *error = NULL;
        char buf[PCI_ADDRESS_STRING_MAX];
        const PciDeviceInfo *d;

        ASSERT_INT_EQ(machine_load(TEST_DATA_DIR "/machine-valid.json", &m, &error), 0);
        ASSERT_TRUE(!error);
        ASSERT_TRUE(m->cdev);
        ASSERT_STR_EQ(m->description, "A workstation: a GPU with its audio function behind a root port, a NIC with "
                                      "a vendor vfio driver, an unbound device without IOMMU group.");
        ASSERT_INT_EQ(m->n_devices, 6);

        /* Sorted by address, whatever the order in the file. */
        ASSERT_STR_EQ(addr(&m->devices[0], buf), "0000:00:1c.0");
        ASSERT_STR_EQ(addr(&m->devices[1], buf), "0000:00:1d.0");
        ASSERT_STR_EQ(addr(&m->devices[2], buf), "0000:00:1f.3");
        ASSERT_STR_EQ(addr(&m->devices[3], buf), "0000:01:00.0");
        ASSERT_STR_EQ(addr(&m->devices[4], buf), "0000:01:00.1");
        ASSERT_STR_EQ(addr(&m->devices[5], buf), "0000:02:00.0");

        d = &m->devices[0]; /* bridge with an explicit driver, default class */
        ASSERT_INT_EQ(d->vendor_id, 0x8086);
        ASSERT_INT_EQ(d->device_id, 0xa110);
        ASSERT_INT_EQ(d->class_code, 0x060400);
        ASSERT_STR_EQ(d->driver, "pcieport");
        ASSERT_INT_EQ(d->iommu_group, 7);
        ASSERT_TRUE(d->is_bridge);
        ASSERT_INT_EQ(d->secondary_bus, 1);
        ASSERT_TRUE(d->slot_reset);
        ASSERT_TRUE(!d->reset_methods);
        ASSERT_TRUE(!d->cdev_path);

        d = &m->devices[1]; /* bridge with every default */
        ASSERT_INT_EQ(d->vendor_id, 0);
        ASSERT_INT_EQ(d->device_id, 0);
        ASSERT_INT_EQ(d->class_code, 0x060400);
        ASSERT_TRUE(!d->driver);
        ASSERT_INT_EQ(d->iommu_group, -1);
        ASSERT_TRUE(d->is_bridge);
        ASSERT_INT_EQ(d->secondary_bus, 2);
        ASSERT_TRUE(!d->slot_reset);

        d = &m->devices[2]; /* explicit nulls */
        ASSERT_INT_EQ(d->class_code, 0x040380);
        ASSERT_TRUE(!d->driver);
        ASSERT_INT_EQ(d->iommu_group, -1);
        ASSERT_TRUE(!d->is_bridge);

        d = &m->devices[3]; /* short address, integer IDs */
        ASSERT_INT_EQ(d->vendor_id, 0x10de);
        ASSERT_INT_EQ(d->device_id, 0x2204);
        ASSERT_INT_EQ(d->class_code, 0x030000);
        ASSERT_STR_EQ(d->driver, "vfio-pci");
        ASSERT_INT_EQ(d->iommu_group, 14);
        ASSERT_INT_EQ(strv_length(d->reset_methods), 1);
        ASSERT_STR_EQ(d->reset_methods[0], "bus");
        ASSERT_TRUE(!d->is_bridge);
        ASSERT_TRUE(!d->cdev_path); /* the backend assigns it */

        d = &m->devices[4];
        ASSERT_INT_EQ(d->vendor_id, 0x10de);
        ASSERT_INT_EQ(d->device_id, 0x1aef);
        ASSERT_INT_EQ(d->class_code, 0x040300);
        ASSERT_STR_EQ(d->driver, "snd_hda_intel");

        d = &m->devices[5]; /* upper-case hex digits */
        ASSERT_INT_EQ(d->vendor_id, 0x15b3);
        ASSERT_STR_EQ(d->driver, "mlx5_vfio_pci");
        ASSERT_INT_EQ(strv_length(d->reset_methods), 2);
        ASSERT_STR_EQ(d->reset_methods[0], "flr");
        ASSERT_STR_EQ(d->reset_methods[1], "bus");
}

TEST(test_defaults) {
        _cleanup_(machine_freep) Machine *m = parse_ok("{\"devices\": [{\"address\": \"3a:1f.7\"}]}");
        char buf[PCI_ADDRESS_STRING_MAX];
        const PciDeviceInfo *d;

        ASSERT_TRUE(m->cdev);
        ASSERT_TRUE(!m->description);
        ASSERT_INT_EQ(m->n_devices, 1);
        d = &m->devices[0];
        ASSERT_STR_EQ(addr(d, buf), "0000:3a:1f.7");
        ASSERT_INT_EQ(d->vendor_id, 0);
        ASSERT_INT_EQ(d->device_id, 0);
        ASSERT_INT_EQ(d->class_code, 0);
        ASSERT_TRUE(!d->driver);
        ASSERT_INT_EQ(d->iommu_group, -1);
        ASSERT_TRUE(!d->reset_methods);
        ASSERT_TRUE(!d->cdev_path);
        ASSERT_TRUE(!d->is_bridge);
        ASSERT_INT_EQ(d->secondary_bus, 0);
        ASSERT_TRUE(!d->slot_reset);
}

TEST(test_forms) {
        _cleanup_(machine_freep) Machine *m = parse_ok(
                "{\"cdev\": false, \"devices\": [\n"
                " {\"address\": \"0001:00:00.0\", \"vendor\": \"0X10DE\", \"device\": 65535, \"class\": 16777215,\n"
                "  \"iommu_group\": 0, \"reset_methods\": [], \"driver\": \"vfio-pci\"},\n"
                " {\"address\": \"0001:00:01.0\", \"vendor\": 0, \"device\": \"0xffff\", \"class\": \"0x0\",\n"
                "  \"bridge\": {\"secondary_bus\": \"0x3b\", \"slot_reset\": false}, \"class\": \"0x060401\"},\n"
                " {\"address\": \"0000:FF:1F.7\", \"bridge\": null, \"reset_methods\": null}\n"
                "]}");
        char buf[PCI_ADDRESS_STRING_MAX];

        ASSERT_TRUE(!m->cdev);
        ASSERT_INT_EQ(m->n_devices, 3);

        /* Domain 0 sorts before domain 1. */
        ASSERT_STR_EQ(addr(&m->devices[0], buf), "0000:ff:1f.7");
        ASSERT_TRUE(!m->devices[0].is_bridge);
        ASSERT_TRUE(!m->devices[0].reset_methods);

        ASSERT_STR_EQ(addr(&m->devices[1], buf), "0001:00:00.0");
        ASSERT_INT_EQ(m->devices[1].vendor_id, 0x10de);
        ASSERT_INT_EQ(m->devices[1].device_id, 0xffff);
        ASSERT_INT_EQ(m->devices[1].class_code, 0xffffff);
        ASSERT_INT_EQ(m->devices[1].iommu_group, 0);
        ASSERT_TRUE(!m->devices[1].reset_methods); /* [] is "none" */

        /* The last of a repeated key wins, as in json-c; an explicit class
         * overrides the bridge default. */
        ASSERT_INT_EQ(m->devices[2].vendor_id, 0);
        ASSERT_INT_EQ(m->devices[2].device_id, 0xffff);
        ASSERT_INT_EQ(m->devices[2].class_code, 0x060401);
        ASSERT_TRUE(m->devices[2].is_bridge);
        ASSERT_INT_EQ(m->devices[2].secondary_bus, 0x3b);
        ASSERT_TRUE(!m->devices[2].slot_reset);
}

TEST(test_empty_machine) {
        _cleanup_(machine_freep) Machine *m = parse_ok("{\"devices\": []}");
        PciAddress a = { .bus = 1 };

        ASSERT_INT_EQ(m->n_devices, 0);
        ASSERT_TRUE(!machine_find(m, &a));
}

TEST(test_find) {
        _cleanup_(machine_freep) Machine *m = NULL;
        PciAddress a;
        char buf[PCI_ADDRESS_STRING_MAX];

        ASSERT_INT_EQ(machine_load(TEST_DATA_DIR "/machine-valid.json", &m, NULL), 0);
        for (size_t i = 0; i < m->n_devices; i++)
                ASSERT_TRUE(machine_find(m, &m->devices[i].address) == &m->devices[i]);

        ASSERT_INT_EQ(pci_address_parse("01:00.1", &a), 0);
        ASSERT_STR_EQ(addr(machine_find(m, &a), buf), "0000:01:00.1");
        ASSERT_INT_EQ(pci_address_parse("01:00.2", &a), 0);
        ASSERT_TRUE(!machine_find(m, &a));
        ASSERT_INT_EQ(pci_address_parse("0001:01:00.0", &a), 0);
        ASSERT_TRUE(!machine_find(m, &a));
        ASSERT_INT_EQ(pci_address_parse("00:00.0", &a), 0);
        ASSERT_TRUE(!machine_find(m, &a));
}

TEST(test_syntax_errors) {
        parse_fails("{\n  \"devices\": [\n    {\"address\": \"01:00.0\",}\n  ]\n}\n",
                    "machine.json:3:27: syntax error: unexpected character");
        parse_fails("{\"devices\": [}", "machine.json:1:14: syntax error: unexpected character");
        parse_fails("", "machine.json:1:1: syntax error: unexpected end of data");
        parse_fails("{\n  \"devices\": [\n", "machine.json:3:1: syntax error: unexpected end of data");
        /* Nothing may follow the object. */
        parse_fails("{\"devices\": []}\n{}\n", "machine.json:2:1: syntax error: unexpected character");
        /* No comments: the format has "description" for that. */
        parse_fails("// a machine\n{\"devices\": []}", "machine.json:1:1: syntax error: unexpected character");
        parse_fails("{\"devices\": [], \"cdev\": tru}", "machine.json:1:28: syntax error: boolean expected");
        parse_fails("{\"devices\": [\"\xff\"]}", "machine.json:1:15: syntax error: invalid utf-8 string");
}

TEST(test_syntax_error_file) {
        _cleanup_free_ char *error = NULL;
        Machine *m = NULL;

        ASSERT_INT_EQ(machine_load(TEST_DATA_DIR "/machine-syntax-error.json", &m, &error), -EINVAL);
        ASSERT_TRUE(!m);
        ASSERT_STR_EQ(error, TEST_DATA_DIR "/machine-syntax-error.json:3:32: syntax error: object value "
                                           "separator ',' expected");
}

TEST(test_io_errors) {
        _cleanup_free_ char *error = NULL;
        Machine *m = NULL;

        ASSERT_INT_EQ(machine_load(TEST_DATA_DIR "/does-not-exist.json", &m, &error), -ENOENT);
        ASSERT_TRUE(!m);
        ASSERT_STR_EQ(error, TEST_DATA_DIR "/does-not-exist.json: cannot read the machine file: No such file or "
                                           "directory");
        free(error);
        error = NULL;

        ASSERT_INT_EQ(machine_load(TEST_DATA_DIR, &m, &error), -EISDIR);
        ASSERT_CONTAINS(error, "cannot read the machine file: Is a directory");

        /* A message is optional. */
        ASSERT_INT_EQ(machine_load(TEST_DATA_DIR "/does-not-exist.json", &m, NULL), -ENOENT);
        ASSERT_INT_EQ(machine_parse("{", "x", &m, NULL), -EINVAL);
}

TEST(test_top_level_errors) {
        parse_fails("[]", "machine.json:1:1: expected a JSON object at the top level, got []");
        parse_fails("  null", "machine.json:1:3: expected a JSON object at the top level, got null");
        parse_fails("{}", "machine.json:1:1: missing required key \"devices\"");
        parse_fails("{\"cdev\": true}", "machine.json:1:1: missing required key \"devices\"");
        parse_fails("{\"devices\": [],\n \"cdve\": false}",
                    "machine.json:2:2: unknown key \"cdve\" (known keys: cdev, devices, description, reset_delay_ms)");
        parse_fails("{\"devices\": [], \"cdev\": 1}", "machine.json:1:25: key \"cdev\": expected true or false, got 1");
        parse_fails("{\"devices\": [], \"cdev\": \"yes\"}",
                    "machine.json:1:25: key \"cdev\": expected true or false, got \"yes\"");
        parse_fails("{\"devices\": {}}", "machine.json:1:13: key \"devices\": expected an array of device objects, got {}");
        parse_fails("{\"devices\": null}", "machine.json:1:13: key \"devices\": expected an array of device objects, got null");
        parse_fails("{\"description\": 5, \"devices\": []}", "machine.json:1:17: key \"description\": expected a string, got 5");
}

TEST(test_reset_delay) {
        _cleanup_(machine_freep) Machine *m = parse_ok("{\"reset_delay_ms\": 250, \"devices\": []}");
        ASSERT_INT_EQ(m->reset_delay_ms, 250);
        _cleanup_(machine_freep) Machine *d = parse_ok("{\"devices\": []}");
        ASSERT_INT_EQ(d->reset_delay_ms, 0);
        _cleanup_free_ char *json = machine_to_json(m);
        ASSERT_CONTAINS(json, "\"reset_delay_ms\": 250");
        _cleanup_(machine_freep) Machine *again = parse_ok(json);
        ASSERT_INT_EQ(again->reset_delay_ms, 250);
        parse_fails("{\"reset_delay_ms\": -1, \"devices\": []}",
                    "machine.json:1:20: key \"reset_delay_ms\": expected an integer from 0 to 600000, got -1");
        parse_fails("{\"reset_delay_ms\": \"5\", \"devices\": []}",
                    "machine.json:1:20: key \"reset_delay_ms\": expected an integer from 0 to 600000, got \"5\"");
}

TEST(test_device_errors) {
        /* The example from the brief, located at the value. */
        parse_fails("{\"devices\": [\n"
                    "  {\"address\": \"0000:01:00.0\"},\n"
                    "  {\"address\": \"0000:01:00.2\"},\n"
                    "  {\"address\": \"0000:01:00.3\"},\n"
                    "  {\"address\": \"0000:01:00.1\",\n"
                    "   \"iommu_group\": \"x\"}\n"
                    "]}\n",
                    "machine.json:6:19: devices[3] (0000:01:00.1): key \"iommu_group\": expected an integer >= 0 or "
                    "null, got \"x\"");

        /* Typos are caught, at the key. */
        parse_fails("{\"devices\": [\n  {\"address\": \"01:00.0\", \"iommu_grup\": 3}\n]}",
                    "machine.json:2:26: devices[0] (0000:01:00.0): unknown key \"iommu_grup\" (known keys: address, "
                    "vendor, device, class, driver, iommu_group, reset_methods, bridge, description)");
        parse_fails("{\"devices\": [{\"address\": \"00:1c.0\", \"bridge\": {\"secondary_bus\": 1, \"slot_rest\": true}}]}",
                    "machine.json:1:68: devices[0] (0000:00:1c.0): unknown key \"slot_rest\" in \"bridge\" (known "
                    "keys: secondary_bus, slot_reset)");

        parse_fails("{\"devices\": [5]}", "machine.json:1:14: devices[0]: expected an object, got 5");
        parse_fails("{\"devices\": [{}, {\"vendor\": 1}]}", "machine.json:1:14: devices[0]: missing required key \"address\"");
        parse_fails("{\"devices\": [{\"address\": \"01:00\"}]}",
                    "machine.json:1:26: devices[0]: key \"address\": " PCI_ADDRESS_FORM_HINT ", got \"01:00\"");
        parse_fails("{\"devices\": [{\"address\": \"0000:01:20.0\"}]}",
                    "machine.json:1:26: devices[0]: key \"address\": " PCI_ADDRESS_FORM_HINT ", got \"0000:01:20.0\"");
        parse_fails("{\"devices\": [{\"address\": 256}]}",
                    "machine.json:1:26: devices[0]: key \"address\": " PCI_ADDRESS_FORM_HINT ", got 256");

        parse_fails("{\"devices\": [{\"address\": \"01:00.0\", \"vendor\": 65536}]}",
                    "machine.json:1:47: devices[0] (0000:01:00.0): key \"vendor\": expected a hex string like "
                    "\"0x10de\" or an integer 0..0xffff, got 65536");
        parse_fails("{\"devices\": [{\"address\": \"01:00.0\", \"device\": \"10de\"}]}",
                    "machine.json:1:47: devices[0] (0000:01:00.0): key \"device\": expected a hex string like "
                    "\"0x10de\" or an integer 0..0xffff, got \"10de\"");
        parse_fails("{\"devices\": [{\"address\": \"01:00.0\", \"vendor\": \"0x10000\"}]}",
                    "machine.json:1:47: devices[0] (0000:01:00.0): key \"vendor\": expected a hex string like "
                    "\"0x10de\" or an integer 0..0xffff, got \"0x10000\"");
        parse_fails("{\"devices\": [{\"address\": \"01:00.0\", \"vendor\": \"0x\"}]}",
                    "machine.json:1:47: devices[0] (0000:01:00.0): key \"vendor\": expected a hex string like "
                    "\"0x10de\" or an integer 0..0xffff, got \"0x\"");
        parse_fails("{\"devices\": [{\"address\": \"01:00.0\", \"vendor\": -1}]}",
                    "machine.json:1:47: devices[0] (0000:01:00.0): key \"vendor\": expected a hex string like "
                    "\"0x10de\" or an integer 0..0xffff, got -1");
        parse_fails("{\"devices\": [{\"address\": \"01:00.0\", \"class\": 1.5}]}",
                    "machine.json:1:46: devices[0] (0000:01:00.0): key \"class\": expected a hex string like "
                    "\"0x030000\" or an integer 0..0xffffff, got 1.5");
        parse_fails("{\"devices\": [{\"address\": \"01:00.0\", \"class\": \"0x1000000\"}]}",
                    "machine.json:1:46: devices[0] (0000:01:00.0): key \"class\": expected a hex string like "
                    "\"0x030000\" or an integer 0..0xffffff, got \"0x1000000\"");
        parse_fails("{\"devices\": [{\"address\": \"01:00.0\", \"driver\": \"\"}]}",
                    "machine.json:1:47: devices[0] (0000:01:00.0): key \"driver\": expected a non-empty string or "
                    "null, got \"\"");
        parse_fails("{\"devices\": [{\"address\": \"01:00.0\", \"driver\": false}]}",
                    "machine.json:1:47: devices[0] (0000:01:00.0): key \"driver\": expected a non-empty string or "
                    "null, got false");
        parse_fails("{\"devices\": [{\"address\": \"01:00.0\", \"iommu_group\": -1}]}",
                    "machine.json:1:52: devices[0] (0000:01:00.0): key \"iommu_group\": expected an integer >= 0 or "
                    "null, got -1");
        parse_fails("{\"devices\": [{\"address\": \"01:00.0\", \"iommu_group\": 2147483648}]}",
                    "machine.json:1:52: devices[0] (0000:01:00.0): key \"iommu_group\": expected an integer >= 0 or "
                    "null, got 2147483648");
        parse_fails("{\"devices\": [{\"address\": \"01:00.0\", \"reset_methods\": \"bus\"}]}",
                    "machine.json:1:54: devices[0] (0000:01:00.0): key \"reset_methods\": expected an array of "
                    "reset method names, got \"bus\"");
        parse_fails("{\"devices\": [{\"address\": \"01:00.0\", \"reset_methods\": [\"flr\", \"bus pm\"]}]}",
                    "machine.json:1:54: devices[0] (0000:01:00.0): key \"reset_methods\": element 1: expected a "
                    "non-empty string without whitespace, got \"bus pm\"");
        parse_fails("{\"devices\": [{\"address\": \"01:00.0\", \"reset_methods\": [\"\"]}]}",
                    "machine.json:1:54: devices[0] (0000:01:00.0): key \"reset_methods\": element 0: expected a "
                    "non-empty string without whitespace, got \"\"");
        parse_fails("{\"devices\": [{\"address\": \"01:00.0\", \"reset_methods\": [1]}]}",
                    "machine.json:1:54: devices[0] (0000:01:00.0): key \"reset_methods\": element 0: expected a "
                    "non-empty string without whitespace, got 1");
        parse_fails("{\"devices\": [{\"address\": \"01:00.0\", \"description\": [\"x\"]}]}",
                    "machine.json:1:52: devices[0] (0000:01:00.0): key \"description\": expected a string, got "
                    "[\"x\"]");
}

TEST(test_bridge_errors) {
        parse_fails("{\"devices\": [{\"address\": \"00:1c.0\", \"bridge\": true}]}",
                    "machine.json:1:47: devices[0] (0000:00:1c.0): key \"bridge\": expected an object with "
                    "\"secondary_bus\" and optional \"slot_reset\", got true");
        parse_fails("{\"devices\": [{\"address\": \"00:1c.0\", \"bridge\": {}}]}",
                    "machine.json:1:47: devices[0] (0000:00:1c.0): key \"bridge\": missing required key "
                    "\"secondary_bus\"");
        parse_fails("{\"devices\": [{\"address\": \"00:1c.0\", \"bridge\": {\"secondary_bus\": 256}}]}",
                    "machine.json:1:65: devices[0] (0000:00:1c.0): key \"bridge.secondary_bus\": expected an integer "
                    "0..255 (or a hex string like \"0x3b\"), got 256");
        parse_fails("{\"devices\": [{\"address\": \"00:1c.0\", \"bridge\": {\"secondary_bus\": 1, \"slot_reset\": 0}}]}",
                    "machine.json:1:82: devices[0] (0000:00:1c.0): key \"bridge.slot_reset\": expected true or "
                    "false, got 0");

        /* Buses below a bridge are numbered after the bridge's own. */
        parse_fails("{\"devices\": [\n"
                    "  {\"address\": \"00:1c.0\", \"bridge\": {\"secondary_bus\": 1}},\n"
                    "  {\"address\": \"01:00.0\", \"bridge\": {\"secondary_bus\": 1}}\n"
                    "]}",
                    "machine.json:3:54: devices[1] (0000:01:00.0): key \"bridge.secondary_bus\": secondary bus 1 "
                    "(0x01) must be greater than the bridge's own bus 0x01");
        parse_fails("{\"devices\": [{\"address\": \"05:00.0\", \"bridge\": {\"secondary_bus\": 4}}]}",
                    "machine.json:1:65: devices[0] (0000:05:00.0): key \"bridge.secondary_bus\": secondary bus 4 "
                    "(0x04) must be greater than the bridge's own bus 0x05");

        /* Two bridges leading to the same bus, reported at the later one in
         * the file, naming the other. */
        parse_fails("{\"devices\": [\n"
                    "  {\"address\": \"00:1d.0\", \"bridge\": {\"secondary_bus\": 2}},\n"
                    "  {\"address\": \"00:1c.0\", \"bridge\": {\"secondary_bus\": 1}},\n"
                    "  {\"address\": \"00:1e.0\", \"bridge\": {\"secondary_bus\": \"0x02\"}}\n"
                    "]}",
                    "machine.json:4:54: devices[2] (0000:00:1e.0): key \"bridge.secondary_bus\": bus 0x02 is "
                    "already the secondary bus of devices[0] (0000:00:1d.0)");
        parse_fails("{\"devices\": [\n"
                    "  {\"address\": \"00:1e.0\", \"bridge\": {\"secondary_bus\": 2}},\n"
                    "  {\"address\": \"00:1d.0\", \"bridge\": {\"secondary_bus\": 2}}\n"
                    "]}",
                    "machine.json:3:54: devices[1] (0000:00:1d.0): key \"bridge.secondary_bus\": bus 0x02 is "
                    "already the secondary bus of devices[0] (0000:00:1e.0)");

        /* Vfio drivers, the variants included, do not bind bridges. */
        parse_fails("{\"devices\": [{\"address\": \"00:1c.0\", \"driver\": \"vfio-pci\", \"bridge\": {\"secondary_bus\": 1}}]}",
                    "machine.json:1:47: devices[0] (0000:00:1c.0): key \"driver\": a bridge cannot be bound to the "
                    "vfio driver \"vfio-pci\" (vfio-pci does not bind bridges)");
        parse_fails("{\"devices\": [{\"address\": \"00:1c.0\", \"bridge\": {\"secondary_bus\": 1}, \"driver\": \"mlx5_vfio_pci\"}]}",
                    "machine.json:1:79: devices[0] (0000:00:1c.0): key \"driver\": a bridge cannot be bound to the "
                    "vfio driver \"mlx5_vfio_pci\" (vfio-pci does not bind bridges)");
}

TEST(test_bridge_ok) {
        /* The same secondary bus in two domains is fine, and so is a
         * bridge bound to a driver that is not vfio. */
        _cleanup_(machine_freep) Machine *m = parse_ok(
                "{\"devices\": [\n"
                "  {\"address\": \"0000:00:1c.0\", \"driver\": \"pcieport\", \"bridge\": {\"secondary_bus\": 1}},\n"
                "  {\"address\": \"0001:00:1c.0\", \"driver\": \"pci-stub\", \"bridge\": {\"secondary_bus\": 1}},\n"
                "  {\"address\": \"0000:01:00.0\", \"bridge\": {\"secondary_bus\": 255, \"slot_reset\": true}}\n"
                "]}");

        ASSERT_INT_EQ(m->n_devices, 3);
        ASSERT_INT_EQ(m->devices[1].secondary_bus, 255);
        ASSERT_TRUE(m->devices[1].slot_reset);
}

TEST(test_duplicate_address) {
        parse_fails("{\"devices\": [\n"
                    "  {\"address\": \"0000:01:00.0\"},\n"
                    "  {\"address\": \"0000:01:00.1\"},\n"
                    "  {\"address\": \"01:00.0\", \"driver\": \"vfio-pci\"}\n"
                    "]}",
                    "machine.json:4:15: devices[2] (0000:01:00.0): key \"address\": duplicate address, devices[0] "
                    "has it too");
}

static void assert_machines_equal(const Machine *a, const Machine *b) {
        ASSERT_INT_EQ(a->cdev, b->cdev);
        ASSERT_TRUE(streq_ptr(a->description, b->description));
        ASSERT_INT_EQ(a->n_devices, b->n_devices);
        for (size_t i = 0; i < a->n_devices; i++)
                ASSERT_TRUE(pci_device_info_equal(&a->devices[i], &b->devices[i]));
}

TEST(test_round_trip) {
        _cleanup_(machine_freep) Machine *m = NULL, *m2 = NULL;
        _cleanup_free_ char *json = NULL, *json2 = NULL;

        ASSERT_INT_EQ(machine_load(TEST_DATA_DIR "/machine-valid.json", &m, NULL), 0);
        json = machine_to_json(m);
        ASSERT_TRUE(json);
        m2 = parse_ok(json);
        assert_machines_equal(m, m2);
        json2 = machine_to_json(m2);
        ASSERT_STR_EQ(json2, json);

        machine_free(m2);
        m2 = NULL;
        m->cdev = false;
        free(json);
        json = machine_to_json(m);
        m2 = parse_ok(json);
        assert_machines_equal(m, m2);
}

TEST(test_to_json_format) {
        _cleanup_(machine_freep) Machine *m = parse_ok(
                "{\"cdev\": false, \"description\": \"a \\\"quoted\\\" /path\", \"devices\": [\n"
                "  {\"address\": \"00:1c.0\", \"bridge\": {\"secondary_bus\": 1, \"slot_reset\": true}},\n"
                "  {\"address\": \"01:00.0\", \"vendor\": \"0x10de\", \"device\": \"0x2204\", \"class\": \"0x030000\",\n"
                "   \"driver\": \"vfio-pci\", \"iommu_group\": 14, \"reset_methods\": [\"bus\", \"flr\"],\n"
                "   \"description\": \"dropped\"}\n"
                "]}");
        _cleanup_(machine_freep) Machine *empty = parse_ok("{\"devices\": []}");
        _cleanup_free_ char *json = machine_to_json(m), *json_empty = machine_to_json(empty);

        ASSERT_STR_EQ(json,
                      "{\n"
                      "  \"cdev\": false,\n"
                      "  \"description\": \"a \\\"quoted\\\" /path\",\n"
                      "  \"devices\": [\n"
                      "    { \"address\": \"0000:00:1c.0\", \"vendor\": \"0x0000\", \"device\": \"0x0000\", \"class\": "
                      "\"0x060400\", \"bridge\": { \"secondary_bus\": 1, \"slot_reset\": true } },\n"
                      "    { \"address\": \"0000:01:00.0\", \"vendor\": \"0x10de\", \"device\": \"0x2204\", \"class\": "
                      "\"0x030000\", \"driver\": \"vfio-pci\", \"iommu_group\": 14, \"reset_methods\": [ \"bus\", "
                      "\"flr\" ] }\n"
                      "  ]\n"
                      "}\n");
        ASSERT_STR_EQ(json_empty, "{\n  \"cdev\": true,\n  \"devices\": []\n}\n");
}

int main(void) {
        RUN(test_valid_file);
        RUN(test_defaults);
        RUN(test_forms);
        RUN(test_empty_machine);
        RUN(test_find);
        RUN(test_syntax_errors);
        RUN(test_syntax_error_file);
        RUN(test_io_errors);
        RUN(test_top_level_errors);
        RUN(test_reset_delay);
        RUN(test_device_errors);
        RUN(test_bridge_errors);
        RUN(test_bridge_ok);
        RUN(test_duplicate_address);
        RUN(test_round_trip);
        RUN(test_to_json_format);
        return 0;
}

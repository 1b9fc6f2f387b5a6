/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The sysfs parsers of the Linux backend: the forms the kernel writes
 * (values measured on the project's VM kernel, see shared/vm/README.md)
 * and everything malformed around them. Inputs are exact heap copies so
 * AddressSanitizer catches a read past the NUL. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>

#include "sysfs-pci.h"
#include "test-util.h"
#include "util.h"

static char *dup_exact(const char *s) {
        char *c = strdup(s);
        ASSERT_TRUE(c);
        return c;
}

static int hex(const char *s, uint32_t max, uint32_t *ret) {
        _cleanup_free_ char *c = dup_exact(s);
        return sysfs_parse_hex(c, max, ret);
}

TEST(test_hex) {
        uint32_t v = 0;

        ASSERT_INT_EQ(hex("0x8086\n", 0xffff, &v), 0);
        ASSERT_INT_EQ(v, 0x8086);
        ASSERT_INT_EQ(hex("0x020000\n", 0xffffff, &v), 0);
        ASSERT_INT_EQ(v, 0x020000);
        ASSERT_INT_EQ(hex("0X10De", 0xffff, &v), 0);
        ASSERT_INT_EQ(v, 0x10de);
        ASSERT_INT_EQ(hex("10d3", 0xffff, &v), 0);
        ASSERT_INT_EQ(v, 0x10d3);
        ASSERT_INT_EQ(hex("0x0", 0xffff, &v), 0);
        ASSERT_INT_EQ(v, 0);
        ASSERT_INT_EQ(hex("0xffffffff", UINT32_MAX, &v), 0);
        ASSERT_INT_EQ(v, UINT32_MAX);

        v = 42;
        ASSERT_INT_EQ(hex("", 0xffff, &v), -EINVAL);
        ASSERT_INT_EQ(hex("\n", 0xffff, &v), -EINVAL);
        ASSERT_INT_EQ(hex("0x", 0xffff, &v), -EINVAL);
        ASSERT_INT_EQ(hex("0x\n", 0xffff, &v), -EINVAL);
        ASSERT_INT_EQ(hex(" 0x8086", 0xffff, &v), -EINVAL);
        ASSERT_INT_EQ(hex("0x80 86", 0xffff, &v), -EINVAL);
        ASSERT_INT_EQ(hex("0x8086x", 0xffff, &v), -EINVAL);
        ASSERT_INT_EQ(hex("-0x1", 0xffff, &v), -EINVAL);
        ASSERT_INT_EQ(hex("0xg", 0xffff, &v), -EINVAL);
        ASSERT_INT_EQ(hex("0x10000", 0xffff, &v), -ERANGE);
        ASSERT_INT_EQ(hex("0x1000000", 0xffffff, &v), -ERANGE);
        ASSERT_INT_EQ(hex("0x100000000", UINT32_MAX, &v), -ERANGE);
        ASSERT_INT_EQ(hex("0x0000000000000001", UINT32_MAX, &v), -ERANGE);
        ASSERT_INT_EQ(v, 42);
        ASSERT_INT_EQ(sysfs_parse_hex(NULL, 0xffff, &v), -EINVAL);
}

static int uint_(const char *s, uint32_t max, uint32_t *ret) {
        _cleanup_free_ char *c = dup_exact(s);
        return sysfs_parse_uint(c, max, ret);
}

TEST(test_uint) {
        uint32_t v = 0;

        ASSERT_INT_EQ(uint_("2\n", 255, &v), 0);
        ASSERT_INT_EQ(v, 2);
        ASSERT_INT_EQ(uint_("255", 255, &v), 0);
        ASSERT_INT_EQ(v, 255);
        ASSERT_INT_EQ(uint_("256\n", 255, &v), -ERANGE);
        ASSERT_INT_EQ(uint_("99999999999", UINT32_MAX, &v), -ERANGE);
        ASSERT_INT_EQ(uint_("", 255, &v), -EINVAL);
        ASSERT_INT_EQ(uint_("-1", 255, &v), -EINVAL);
        ASSERT_INT_EQ(uint_("+1", 255, &v), -EINVAL);
        ASSERT_INT_EQ(uint_("0x2", 255, &v), -EINVAL);
        ASSERT_INT_EQ(uint_("2 3", 255, &v), -EINVAL);
}

static char **methods(const char *s, int expect_r) {
        _cleanup_free_ char *c = dup_exact(s);
        char **l = (char **) 0x1;
        int r = sysfs_parse_reset_methods(c, &l);
        if (r != expect_r) {
                fprintf(stderr, "reset_method \"%s\": expected %d, got %d\n", s, expect_r, r);
                exit(1);
        }
        return r < 0 ? NULL : l;
}

TEST(test_reset_methods) {
        char **l;

        /* As the kernel writes them (VM README). */
        l = methods("pm bus\n", 0);
        ASSERT_INT_EQ(strv_length(l), 2);
        ASSERT_STR_EQ(l[0], "pm");
        ASSERT_STR_EQ(l[1], "bus");
        strv_free(l);

        l = methods("pm\n", 0);
        ASSERT_INT_EQ(strv_length(l), 1);
        ASSERT_STR_EQ(l[0], "pm");
        strv_free(l);

        l = methods("device_specific acpi flr af pm bus cxl_bus", 0);
        ASSERT_INT_EQ(strv_length(l), 7);
        ASSERT_STR_EQ(l[6], "cxl_bus");
        strv_free(l);

        /* Extra blanks are tolerated. */
        l = methods("  flr\t bus  \n", 0);
        ASSERT_INT_EQ(strv_length(l), 2);
        ASSERT_STR_EQ(l[0], "flr");
        ASSERT_STR_EQ(l[1], "bus");
        strv_free(l);

        /* No method: NULL, as the model wants it. */
        ASSERT_TRUE(methods("", 0) == NULL);
        ASSERT_TRUE(methods("\n", 0) == NULL);
        ASSERT_TRUE(methods("   ", 0) == NULL);

        methods("pm,bus", -EINVAL);
        methods("pm bus;", -EINVAL);
        methods("pm \x01", -EINVAL);
        methods("p\xc3\xa9", -EINVAL);

        char **out = NULL;
        ASSERT_INT_EQ(sysfs_parse_reset_methods(NULL, &out), -EINVAL);
}

static int group(const char *s, int *ret) {
        _cleanup_free_ char *c = dup_exact(s);
        return sysfs_parse_iommu_group_link(c, ret);
}

TEST(test_iommu_group_link) {
        int g = -1;

        /* Observed depths differ by position in the tree. */
        ASSERT_INT_EQ(group("../../../kernel/iommu_groups/14", &g), 0);
        ASSERT_INT_EQ(g, 14);
        ASSERT_INT_EQ(group("../../../../kernel/iommu_groups/7", &g), 0);
        ASSERT_INT_EQ(g, 7);
        ASSERT_INT_EQ(group("/sys/kernel/iommu_groups/0", &g), 0);
        ASSERT_INT_EQ(g, 0);
        ASSERT_INT_EQ(group("iommu_groups/2147483647", &g), 0);
        ASSERT_INT_EQ(g, INT_MAX);

        g = 99;
        ASSERT_INT_EQ(group("", &g), -EINVAL);
        ASSERT_INT_EQ(group("14", &g), -EINVAL);
        ASSERT_INT_EQ(group("../../../kernel/iommu_groups/", &g), -EINVAL);
        ASSERT_INT_EQ(group("../../../kernel/iommu_groups", &g), -EINVAL);
        ASSERT_INT_EQ(group("../../../kernel/iommu_group/14", &g), -EINVAL);
        ASSERT_INT_EQ(group("../../../kernel/xiommu_groups/14", &g), -EINVAL);
        ASSERT_INT_EQ(group("../../../kernel/iommu_groups/14a", &g), -EINVAL);
        ASSERT_INT_EQ(group("../../../kernel/iommu_groups/-1", &g), -EINVAL);
        ASSERT_INT_EQ(group("../../../kernel/iommu_groups/+1", &g), -EINVAL);
        ASSERT_INT_EQ(group("../../../kernel/iommu_groups/1\n", &g), -EINVAL);
        ASSERT_INT_EQ(group("../../../kernel/iommu_groups/2147483648", &g), -EINVAL);
        ASSERT_INT_EQ(group("../../../kernel/iommu_groups/99999999999999999999", &g), -EINVAL);
        ASSERT_INT_EQ(g, 99);
        ASSERT_INT_EQ(sysfs_parse_iommu_group_link(NULL, &g), -EINVAL);
}

static int busaddr(const char *s, uint16_t *d, uint8_t *b, int *dev) {
        _cleanup_free_ char *c = dup_exact(s);
        return sysfs_parse_bus_address(c, d, b, dev);
}

TEST(test_bus_address) {
        uint16_t d = 0;
        uint8_t b = 0;
        int dev = 0;

        /* A pciehp slot's address (VM README: slot 2, "0000:02:00"). */
        ASSERT_INT_EQ(busaddr("0000:02:00\n", &d, &b, &dev), 0);
        ASSERT_INT_EQ(d, 0);
        ASSERT_INT_EQ(b, 2);
        ASSERT_INT_EQ(dev, 0);
        ASSERT_INT_EQ(busaddr("10000:ff:1f", &d, &b, &dev), -EINVAL);
        ASSERT_INT_EQ(busaddr("abcd:Fe:1f", &d, &b, &dev), 0);
        ASSERT_INT_EQ(d, 0xabcd);
        ASSERT_INT_EQ(b, 0xfe);
        ASSERT_INT_EQ(dev, 0x1f);
        /* No device part: a placeholder slot, or a pci_bus directory. */
        ASSERT_INT_EQ(busaddr("0000:03\n", &d, &b, &dev), 0);
        ASSERT_INT_EQ(b, 3);
        ASSERT_INT_EQ(dev, -1);
        ASSERT_INT_EQ(busaddr("0001:80", &d, &b, NULL), 0);
        ASSERT_INT_EQ(d, 1);
        ASSERT_INT_EQ(b, 0x80);

        ASSERT_INT_EQ(busaddr("0000:02:00", &d, &b, NULL), -EINVAL); /* a bus name has no device */
        ASSERT_INT_EQ(busaddr("0000:02:20", &d, &b, &dev), -EINVAL); /* device > 0x1f */
        ASSERT_INT_EQ(busaddr("0000:02:00.0", &d, &b, &dev), -EINVAL);
        ASSERT_INT_EQ(busaddr("00:02:00", &d, &b, &dev), -EINVAL);
        ASSERT_INT_EQ(busaddr("0000:2:00", &d, &b, &dev), -EINVAL);
        ASSERT_INT_EQ(busaddr("0000:02:0", &d, &b, &dev), -EINVAL);
        ASSERT_INT_EQ(busaddr("0000:02:", &d, &b, &dev), -EINVAL);
        ASSERT_INT_EQ(busaddr("0000:02x", &d, &b, &dev), -EINVAL);
        ASSERT_INT_EQ(busaddr("0000-02", &d, &b, &dev), -EINVAL);
        ASSERT_INT_EQ(busaddr("000g:02", &d, &b, &dev), -EINVAL);
        ASSERT_INT_EQ(busaddr("", &d, &b, &dev), -EINVAL);
        ASSERT_INT_EQ(busaddr("0000", &d, &b, &dev), -EINVAL);
        ASSERT_INT_EQ(busaddr("0000:02:00 x", &d, &b, &dev), -EINVAL);
        ASSERT_INT_EQ(sysfs_parse_bus_address(NULL, &d, &b, &dev), -EINVAL);
}

static int vfio_name(const char *s, unsigned *ret) {
        _cleanup_free_ char *c = dup_exact(s);
        return sysfs_parse_vfio_dev_name(c, ret);
}

TEST(test_vfio_dev_name) {
        unsigned n = 0;

        ASSERT_INT_EQ(vfio_name("vfio0", &n), 0);
        ASSERT_INT_EQ(n, 0);
        ASSERT_INT_EQ(vfio_name("vfio12", &n), 0);
        ASSERT_INT_EQ(n, 12);
        ASSERT_INT_EQ(vfio_name("vfio", &n), -EINVAL);
        ASSERT_INT_EQ(vfio_name("vfio01", &n), -EINVAL);
        ASSERT_INT_EQ(vfio_name("vfio-1", &n), -EINVAL);
        ASSERT_INT_EQ(vfio_name("vfio1a", &n), -EINVAL);
        ASSERT_INT_EQ(vfio_name("vfio 1", &n), -EINVAL);
        ASSERT_INT_EQ(vfio_name("vfi1", &n), -EINVAL);
        ASSERT_INT_EQ(vfio_name("14", &n), -EINVAL);
        ASSERT_INT_EQ(vfio_name("vfio99999999999", &n), -EINVAL);
        ASSERT_INT_EQ(vfio_name(".", &n), -EINVAL);
}

static int vparent(const char *s, PciAddress *a, size_t *len) {
        _cleanup_free_ char *c = dup_exact(s);
        return sysfs_vfio_dev_parent(c, a, len);
}

TEST(test_vfio_dev_parent) {
        PciAddress a;
        size_t len = 0;
        char buf[PCI_ADDRESS_STRING_MAX];
        const char *p = "/sys/devices/pci0000:00/0000:00:03.0/0000:01:00.0/vfio-dev/vfio0";

        ASSERT_INT_EQ(vparent(p, &a, &len), 0);
        ASSERT_STR_EQ(pci_address_format(&a, buf), "0000:01:00.0");
        ASSERT_INT_EQ(len, strlen("/sys/devices/pci0000:00/0000:00:03.0/0000:01:00.0"));

        ASSERT_INT_EQ(vparent("/sys/devices/pci0001:40/0001:40:01.0/0001:41:00.7/vfio-dev/vfio123", &a, NULL), 0);
        ASSERT_STR_EQ(pci_address_format(&a, buf), "0001:41:00.7");

        ASSERT_INT_EQ(vparent("/sys/devices/pci0000:00/0000:01:00.0/vfio-dev", &a, &len), -EINVAL);
        ASSERT_INT_EQ(vparent("/sys/devices/pci0000:00/0000:01:00.0/vfio-dev/", &a, &len), -EINVAL);
        ASSERT_INT_EQ(vparent("/sys/devices/pci0000:00/0000:01:00.0/vfio-dev/vfio0/dev", &a, &len), -EINVAL);
        ASSERT_INT_EQ(vparent("/sys/devices/pci0000:00/0000:01:00.0/vfio-dev/foo0", &a, &len), -EINVAL);
        ASSERT_INT_EQ(vparent("/sys/devices/platform/foo/vfio-dev/vfio0", &a, &len), -EINVAL);
        ASSERT_INT_EQ(vparent("/sys/devices/pci0000:00/01:00.0/vfio-dev/vfio0", &a, &len), -EINVAL);
        ASSERT_INT_EQ(vparent("/sys/devices/pci0000:00/0000:01:00.9/vfio-dev/vfio0", &a, &len), -EINVAL);
        ASSERT_INT_EQ(vparent("/vfio-dev/vfio0", &a, &len), -EINVAL);
        ASSERT_INT_EQ(vparent("vfio-dev/vfio0", &a, &len), -EINVAL);
        ASSERT_INT_EQ(vparent("", &a, &len), -EINVAL);
        ASSERT_INT_EQ(sysfs_vfio_dev_parent(NULL, &a, &len), -EINVAL);
}

static int service(const char *name, const char *port) {
        _cleanup_free_ char *c = dup_exact(name);
        return sysfs_parse_port_service(c, port);
}

TEST(test_port_service) {
        /* Measured on the VM kernel: a root port with hotplug has pcie001
         * (PME) and pcie004 (pciehp); with hotplug=off only pcie001. */
        ASSERT_INT_EQ(service("0000:00:03.0:pcie004", "0000:00:03.0"), PCIE_PORT_SERVICE_HP);
        ASSERT_INT_EQ(service("0000:00:03.0:pcie001", "0000:00:03.0"), PCIE_PORT_SERVICE_PME);
        ASSERT_INT_EQ(service("0000:00:03.0:pcie002", "0000:00:03.0"), PCIE_PORT_SERVICE_AER);
        ASSERT_INT_EQ(service("0000:00:03.0:pcie010", "0000:00:03.0"), 0x10);
        /* A downstream port (type 6): (6 - 4) << 8 | service. */
        ASSERT_INT_EQ(service("0000:05:01.0:pcie204", "0000:05:01.0"), PCIE_PORT_SERVICE_HP);
        /* Old kernels: two digits. */
        ASSERT_INT_EQ(service("0000:00:1c.0:pcie04", "0000:00:1c.0"), PCIE_PORT_SERVICE_HP);
        ASSERT_INT_EQ(service("0000:05:01.0:pcie24", "0000:05:01.0"), PCIE_PORT_SERVICE_HP);

        ASSERT_INT_EQ(service("0000:00:03.0:pcie004", "0000:00:04.0"), -EINVAL); /* another port's */
        ASSERT_INT_EQ(service("0000:00:03.0", "0000:00:03.0"), -EINVAL);
        ASSERT_INT_EQ(service("0000:00:03.0:pcie", "0000:00:03.0"), -EINVAL);
        ASSERT_INT_EQ(service("0000:00:03.0:pcie4", "0000:00:03.0"), -EINVAL);
        ASSERT_INT_EQ(service("0000:00:03.0:pcie0004", "0000:00:03.0"), -EINVAL);
        ASSERT_INT_EQ(service("0000:00:03.0:pcie00g", "0000:00:03.0"), -EINVAL);
        ASSERT_INT_EQ(service("0000:00:03.0:pcie000", "0000:00:03.0"), -EINVAL);
        ASSERT_INT_EQ(service("0000:00:03.0:pcie006", "0000:00:03.0"), -EINVAL); /* two services */
        ASSERT_INT_EQ(service("0000:00:03.0:xcie004", "0000:00:03.0"), -EINVAL);
        ASSERT_INT_EQ(service("0000:01:00.0", "0000:00:03.0"), -EINVAL);
        ASSERT_INT_EQ(service("pci_bus", "0000:00:03.0"), -EINVAL);
        ASSERT_INT_EQ(sysfs_parse_port_service(NULL, "0000:00:03.0"), -EINVAL);
        ASSERT_INT_EQ(sysfs_parse_port_service("0000:00:03.0:pcie004", ""), -EINVAL);
}

TEST(test_class_is_bridge) {
        ASSERT_TRUE(pci_class_is_bridge(0x060400));
        ASSERT_TRUE(pci_class_is_bridge(0x060401)); /* subtractive decode */
        ASSERT_TRUE(pci_class_is_bridge(0x060940));
        ASSERT_TRUE(pci_class_is_bridge(0x060700));
        ASSERT_TRUE(!pci_class_is_bridge(0x060000)); /* host bridge */
        ASSERT_TRUE(!pci_class_is_bridge(0x060100)); /* ISA bridge */
        ASSERT_TRUE(!pci_class_is_bridge(0x068000)); /* other bridge */
        ASSERT_TRUE(!pci_class_is_bridge(0x020000));
        ASSERT_TRUE(!pci_class_is_bridge(0x000604));
}

TEST(test_slot_can_reset) {
        /* VM kernel: pciehp built in, no module link, pcie004 on the port. */
        SysfsSlotFacts vm = { .module = NULL, .bridge_has_pciehp = true, .has_power = true, .has_attention = true };
        ASSERT_TRUE(sysfs_slot_can_reset(&vm));

        SysfsSlotFacts pciehp_module = { .module = "pciehp", .bridge_has_pciehp = true, .has_power = true };
        ASSERT_TRUE(sysfs_slot_can_reset(&pciehp_module));

        /* The link decides when there is one. */
        SysfsSlotFacts pciehp_link_only = { .module = "pciehp" };
        ASSERT_TRUE(sysfs_slot_can_reset(&pciehp_link_only));

        /* acpiphp (QEMU q35 root ports by default, on a kernel with ACPI
         * hotplug): power and attention files, no reset_slot operation. */
        SysfsSlotFacts acpiphp = { .module = "acpiphp", .has_power = true, .has_attention = true };
        ASSERT_TRUE(!sysfs_slot_can_reset(&acpiphp));
        SysfsSlotFacts shpchp = { .module = "shpchp", .has_power = true, .has_attention = true };
        ASSERT_TRUE(!sysfs_slot_can_reset(&shpchp));

        /* The ACPI pci_slot driver: an address, nothing else. */
        SysfsSlotFacts physical = {};
        ASSERT_TRUE(!sysfs_slot_can_reset(&physical));

        /* power/attention alone are not enough. */
        SysfsSlotFacts files_only = { .has_power = true, .has_attention = true };
        ASSERT_TRUE(!sysfs_slot_can_reset(&files_only));
}

static bool has_char(const char *text, const char *name) {
        _cleanup_free_ char *c = dup_exact(text);
        return proc_devices_has_char(c, name);
}

TEST(test_proc_devices) {
        /* The VM kernel's /proc/devices, abridged. */
        const char *vm = "Character devices:\n"
                         "  1 mem\n"
                         " 10 misc\n"
                         "251 vfio-dev\n"
                         "252 vfio\n"
                         "254 rtc\n"
                         "\n"
                         "Block devices:\n"
                         "254 virtblk\n"
                         "259 blkext\n";
        ASSERT_TRUE(has_char(vm, "vfio-dev"));
        ASSERT_TRUE(has_char(vm, "vfio"));
        ASSERT_TRUE(has_char(vm, "mem"));
        ASSERT_TRUE(!has_char(vm, "virtblk")); /* a block device */
        ASSERT_TRUE(!has_char(vm, "vfio-de"));
        ASSERT_TRUE(!has_char(vm, "fio-dev"));

        /* A kernel without CONFIG_VFIO_DEVICE_CDEV. */
        const char *nocdev = "Character devices:\n 10 misc\n245 vfio\n\nBlock devices:\n259 vfio-dev\n";
        ASSERT_TRUE(!has_char(nocdev, "vfio-dev"));
        ASSERT_TRUE(has_char(nocdev, "vfio"));

        /* Malformed: no header, no number, no trailing newline. */
        ASSERT_TRUE(!has_char("251 vfio-dev\n", "vfio-dev"));
        ASSERT_TRUE(!has_char("Character devices:\nvfio-dev\n", "vfio-dev"));
        ASSERT_TRUE(!has_char("Character devices:\n251vfio-dev\n", "vfio-dev"));
        ASSERT_TRUE(has_char("Character devices:\n251 vfio-dev", "vfio-dev"));
        ASSERT_TRUE(!has_char("", "vfio-dev"));
        ASSERT_TRUE(!proc_devices_has_char(NULL, "vfio-dev"));
        ASSERT_TRUE(!proc_devices_has_char(vm, ""));
}

int main(void) {
        RUN(test_hex);
        RUN(test_uint);
        RUN(test_reset_methods);
        RUN(test_iommu_group_link);
        RUN(test_bus_address);
        RUN(test_vfio_dev_name);
        RUN(test_vfio_dev_parent);
        RUN(test_port_service);
        RUN(test_class_is_bridge);
        RUN(test_slot_can_reset);
        RUN(test_proc_devices);
        return 0;
}

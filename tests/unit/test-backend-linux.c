/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Linux backend against a umockdev testbed: a fake sysfs shaped like
 * the project's VM topologies (shared/vm/README.md) and uevents sent the
 * way the kernel sends them. Runs under umockdev-wrapper (LD_PRELOAD
 * redirects /sys and, for files the testbed has, /dev).
 *
 * umockdev_testbed_add_device() sends an "add" uevent itself, so the test's
 * own "add" of a new device is a second one, which must find nothing new.
 *
 * What umockdev cannot express: the real kernel's ordering of sysfs
 * changes against uevent delivery. The test sends each uevent and then
 * changes sysfs to the state the daemon would find when it reads it,
 * which is the situation the backend has to cope with. /proc/devices is
 * not redirected, so the uAPI choice is tested through the pure decision
 * (backend_linux_choose_uapi) plus one probe that only relies on /dev. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <sys/stat.h>
#include <umockdev.h>
#include <unistd.h>

#include "backend-linux.h"
#include "log.h"
#include "sysfs-pci.h"
#include "test-util.h"
#include "util.h"
#include "vfio-compat.h"

/* ---- Collecting events ---- */

typedef struct Event {
        BackendAction action;
        PciDeviceInfo info;
} Event;

static Event events[512];
static size_t n_events;

static void on_event(Backend *b, BackendAction action, const PciDeviceInfo *info, void *userdata) {
        ASSERT_TRUE(n_events < ELEMENTSOF(events));
        events[n_events].action = action;
        ASSERT_INT_EQ(pci_device_info_copy(&events[n_events].info, info), 0);
        n_events++;
}

static void events_clear(void) {
        for (size_t i = 0; i < n_events; i++)
                pci_device_info_done(&events[i].info);
        n_events = 0;
}

static void events_dump(void) {
        char buf[PCI_ADDRESS_STRING_MAX];
        for (size_t i = 0; i < n_events; i++)
                fprintf(stderr, "  event %zu: %s %s driver=%s cdev=%s\n", i, backend_action_to_string(events[i].action),
                        pci_address_format(&events[i].info.address, buf), strempty(events[i].info.driver),
                        strempty(events[i].info.cdev_path));
}

/* Runs the loop until it has been idle for a while. */
static void pump(sd_event *e) {
        for (unsigned i = 0; i < 100; i++) {
                int r = sd_event_run(e, 100 * 1000);
                ASSERT_TRUE(r >= 0);
                if (r == 0)
                        return;
        }
        fprintf(stderr, "event loop never went idle\n");
        exit(1);
}

#define EXPECT_N(n)                                                        \
        do {                                                               \
                if (n_events != (size_t) (n)) {                            \
                        fprintf(stderr, "%s:%d: expected %zu events, got %zu\n", __FILE__, __LINE__, (size_t) (n), \
                                n_events);                                 \
                        events_dump();                                     \
                        exit(1);                                           \
                }                                                          \
        } while (0)

/* Event i is action on address, with that driver and cdev (NULL = none). */
static const PciDeviceInfo *expect_event(size_t i, BackendAction action, const char *address, const char *driver,
                                         const char *cdev) {
        char buf[PCI_ADDRESS_STRING_MAX];
        const Event *ev;

        if (i >= n_events) {
                fprintf(stderr, "expected an event %zu (%s %s), have %zu\n", i, backend_action_to_string(action),
                        address, n_events);
                events_dump();
                exit(1);
        }
        ev = &events[i];
        if (ev->action != action || !streq(pci_address_format(&ev->info.address, buf), address) ||
            !streq_ptr(ev->info.driver, driver) || !streq_ptr(ev->info.cdev_path, cdev)) {
                fprintf(stderr, "event %zu: expected %s %s driver=%s cdev=%s\n", i, backend_action_to_string(action),
                        address, strempty(driver), strempty(cdev));
                events_dump();
                exit(1);
        }
        return &ev->info;
}

/* ---- Building the testbed ---- */

static UMockdevTestbed *tb;
static char *sys_dir;  /* the testbed's /sys */
static char *root_dir; /* the testbed's / */

/* The testbed file behind a /sys/... path. */
static char *tb_path(const char *syspath, const char *rel) {
        ASSERT_TRUE(g_str_has_prefix(syspath, "/sys/"));
        return g_build_filename(sys_dir, syspath + strlen("/sys/"), rel, NULL);
}

static void tb_mkdir(const char *syspath, const char *rel) {
        g_autofree char *p = tb_path(syspath, rel);
        ASSERT_INT_EQ(g_mkdir_with_parents(p, 0755), 0);
}

static void tb_rmtree(const char *syspath, const char *rel) {
        g_autofree char *p = tb_path(syspath, rel);
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", p);
        ASSERT_INT_EQ(system(cmd), 0);
}

static void set_driver(const char *syspath, const char *driver) {
        g_autofree char *p = tb_path(syspath, "driver");
        (void) unlink(p);
        if (driver) {
                g_autofree char *target = g_strdup_printf("../../../bus/pci/drivers/%s", driver);
                umockdev_testbed_set_attribute_link(tb, syspath, "driver", target);
        }
}

static char *add_pci(const char *parent, const char *address, const char *vendor, const char *device,
                     const char *class, const char *driver, int group, const char *reset_method) {
        char *p = umockdev_testbed_add_device(tb, "pci", address, parent, "vendor", vendor, "device", device, "class",
                                              class, NULL, "PCI_SLOT_NAME", address, NULL);
        ASSERT_TRUE(p);
        if (reset_method)
                umockdev_testbed_set_attribute(tb, p, "reset_method", reset_method);
        if (group >= 0) {
                g_autofree char *target = g_strdup_printf("../../../kernel/iommu_groups/%d", group);
                umockdev_testbed_set_attribute_link(tb, p, "iommu_group", target);
        }
        set_driver(p, driver);
        return p;
}

/* A vfio-dev child; with_dev: the kernel has device cdevs (a "dev" file). */
static char *add_vfio_dev(const char *pci, unsigned n, bool with_dev) {
        g_autofree char *name = g_strdup_printf("vfio-dev/vfio%u", n);
        g_autofree char *devnum = g_strdup_printf("511:%u", n);
        char *p;

        if (with_dev)
                p = umockdev_testbed_add_device(tb, "vfio-dev", name, pci, "dev", devnum, NULL, "MAJOR", "511",
                                                "MINOR", devnum + 4, NULL);
        else
                p = umockdev_testbed_add_device(tb, "vfio-dev", name, pci, NULL, NULL);
        ASSERT_TRUE(p);
        return p;
}

static void add_slot(const char *name, const char *address, const char *module, bool hotplug_files) {
        g_autofree char *dir = g_build_filename(sys_dir, "bus/pci/slots", name, NULL);
        g_autofree char *addr = g_build_filename(dir, "address", NULL);
        g_autofree char *text = g_strdup_printf("%s\n", address);

        ASSERT_INT_EQ(g_mkdir_with_parents(dir, 0755), 0);
        ASSERT_TRUE(g_file_set_contents(addr, text, -1, NULL));
        if (hotplug_files) {
                g_autofree char *power = g_build_filename(dir, "power", NULL);
                g_autofree char *attention = g_build_filename(dir, "attention", NULL);
                ASSERT_TRUE(g_file_set_contents(power, "1\n", -1, NULL));
                ASSERT_TRUE(g_file_set_contents(attention, "0\n", -1, NULL));
        }
        if (module) {
                g_autofree char *link = g_build_filename(dir, "module", NULL);
                g_autofree char *target = g_strdup_printf("../../../../module/%s", module);
                ASSERT_INT_EQ(symlink(target, link), 0);
        }
}

/* The devices, by role. */
static char *host, *rp_bus, *fn0, *fn1, *rp_slot, *lone, *lone_vfio, *rp_acpi, *pcibridge, *behind, *rootdev,
        *oddbridge, *deadbridge, *isa, *fn1_vfio;

/* VM README topologies in one machine:
 *   00:02.0 root port, hotplug=off (bus reset), e1000e pair 01:00.0/.1 in group 7
 *   00:03.0 root port with a pciehp slot "2" at 0000:02:00 (slot reset), 02:00.0
 *   00:04.0 root port whose slot belongs to acpiphp (bus reset), bus 4 empty;
 *           its bus number only in secondary_bus_number
 *   00:05.0 pci-bridge (driverless, in its devices' group 6), 05:01.0 behind it
 *   00:06.0 a device on the root bus
 *   00:07.0 a bridge with an unusual class code (found by its pci_bus child)
 *   00:08.0 a bridge class without any bus below it
 *   00:1f.0 ISA bridge (not a PCI-to-PCI bridge), no IOMMU group */
static void build_machine(void) {
        char *pci_root = umockdev_testbed_add_device(tb, "platform", "pci0000:00", NULL, NULL, NULL);
        ASSERT_TRUE(pci_root);

        host = add_pci(pci_root, "0000:00:00.0", "0x8086", "0x29c0", "0x060000", NULL, 0, NULL);

        rp_bus = add_pci(pci_root, "0000:00:02.0", "0x1b36", "0x000c", "0x060400", "pcieport", 3, NULL);
        tb_mkdir(rp_bus, "pci_bus/0000:01");
        tb_mkdir(rp_bus, "0000:00:02.0:pcie001");
        fn0 = add_pci(rp_bus, "0000:01:00.0", "0x8086", "0x10d3", "0x020000", "e1000e", 7, "pm bus\n");
        fn1 = add_pci(rp_bus, "0000:01:00.1", "0x8086", "0x10d3", "0x020000", "vfio-pci", 7, "pm\n");
        fn1_vfio = add_vfio_dev(fn1, 0, true);

        rp_slot = add_pci(pci_root, "0000:00:03.0", "0x1b36", "0x000c", "0x060400", "pcieport", 4, NULL);
        tb_mkdir(rp_slot, "pci_bus/0000:02");
        tb_mkdir(rp_slot, "0000:00:03.0:pcie001");
        tb_mkdir(rp_slot, "0000:00:03.0:pcie004");
        add_slot("2", "0000:02:00", NULL, true);
        lone = add_pci(rp_slot, "0000:02:00.0", "0x8086", "0x10d3", "0x020000", "vfio-pci", 8, "pm bus\n");
        /* A vfio-dev directory without a dev file: not a cdev. */
        lone_vfio = add_vfio_dev(lone, 1, false);

        rp_acpi = add_pci(pci_root, "0000:00:04.0", "0x1b36", "0x000c", "0x060400", "pcieport", 5, NULL);
        umockdev_testbed_set_attribute(tb, rp_acpi, "secondary_bus_number", "4\n");
        add_slot("4", "0000:04:00", "acpiphp", true);

        pcibridge = add_pci(pci_root, "0000:00:05.0", "0x1b36", "0x0001", "0x060400", NULL, 6, NULL);
        tb_mkdir(pcibridge, "pci_bus/0000:05");
        behind = add_pci(pcibridge, "0000:05:01.0", "0x8086", "0x100e", "0x020000", "e1000", 6, "bus\n");

        rootdev = add_pci(pci_root, "0000:00:06.0", "0x8086", "0x10d3", "0x020000", NULL, 9, "pm\n");

        oddbridge = add_pci(pci_root, "0000:00:07.0", "0x1234", "0x5678", "0x0b4000", NULL, 10, NULL);
        tb_mkdir(oddbridge, "pci_bus/0000:06");

        deadbridge = add_pci(pci_root, "0000:00:08.0", "0x1234", "0x0604", "0x060400", NULL, 11, NULL);

        isa = add_pci(pci_root, "0000:00:1f.0", "0x8086", "0x2918", "0x060100", NULL, -1, NULL);

        g_free(pci_root);
}

static void free_machine(void) {
        char **all[] = { &host, &rp_bus, &fn0, &fn1, &rp_slot, &lone, &lone_vfio, &rp_acpi, &pcibridge,
                         &behind, &rootdev, &oddbridge, &deadbridge, &isa, &fn1_vfio };
        for (size_t i = 0; i < ELEMENTSOF(all); i++) {
                g_free(*all[i]);
                *all[i] = NULL;
        }
}

/* ---- Tests ---- */

TEST(test_choose_uapi) {
        LinuxUapiFacts none = {}, vm = { .dev_iommu = true, .cdev_major = true, .vfio_container = true },
                       debian = { .vfio_container = true },
                       iommu_no_cdev = { .dev_iommu = true, .vfio_container = true },
                       bound = { .dev_iommu = true, .dev_vfio_devices = true },
                       sysfs = { .dev_iommu = true, .sysfs_cdev = true };
        bool cdev;
        char *reason = NULL;

        ASSERT_INT_EQ(backend_linux_choose_uapi(BACKEND_UAPI_AUTO, &vm, &cdev, &reason), 0);
        ASSERT_TRUE(cdev);
        ASSERT_CONTAINS(reason, "iommufd model");
        ASSERT_CONTAINS(reason, "/proc/devices");
        free(reason);

        ASSERT_INT_EQ(backend_linux_choose_uapi(BACKEND_UAPI_AUTO, &bound, &cdev, &reason), 0);
        ASSERT_TRUE(cdev);
        ASSERT_CONTAINS(reason, "/dev/vfio/devices");
        free(reason);

        ASSERT_INT_EQ(backend_linux_choose_uapi(BACKEND_UAPI_AUTO, &sysfs, &cdev, &reason), 0);
        ASSERT_TRUE(cdev);
        free(reason);

        ASSERT_INT_EQ(backend_linux_choose_uapi(BACKEND_UAPI_AUTO, &debian, &cdev, &reason), 0);
        ASSERT_TRUE(!cdev);
        ASSERT_CONTAINS(reason, "group model");
        ASSERT_CONTAINS(reason, "no /dev/iommu");
        free(reason);

        ASSERT_INT_EQ(backend_linux_choose_uapi(BACKEND_UAPI_AUTO, &iommu_no_cdev, &cdev, &reason), 0);
        ASSERT_TRUE(!cdev);
        ASSERT_CONTAINS(reason, "no vfio device cdevs");
        free(reason);

        ASSERT_INT_EQ(backend_linux_choose_uapi(BACKEND_UAPI_AUTO, &none, &cdev, &reason), 0);
        ASSERT_TRUE(!cdev);
        ASSERT_CONTAINS(reason, "/dev/vfio/vfio is missing");
        free(reason);

        ASSERT_INT_EQ(backend_linux_choose_uapi(BACKEND_UAPI_GROUP, &vm, &cdev, &reason), 0);
        ASSERT_TRUE(!cdev);
        ASSERT_CONTAINS(reason, "--uapi=group");
        free(reason);

        ASSERT_INT_EQ(backend_linux_choose_uapi(BACKEND_UAPI_IOMMUFD, &vm, &cdev, &reason), 0);
        ASSERT_TRUE(cdev);
        free(reason);

        reason = NULL;
        ASSERT_INT_EQ(backend_linux_choose_uapi(BACKEND_UAPI_IOMMUFD, &debian, &cdev, &reason), -EOPNOTSUPP);
        ASSERT_CONTAINS(reason, "there is no /dev/iommu");
        free(reason);
        reason = NULL;
        ASSERT_INT_EQ(backend_linux_choose_uapi(BACKEND_UAPI_IOMMUFD, &iommu_no_cdev, &cdev, &reason), -EOPNOTSUPP);
        ASSERT_CONTAINS(reason, "no vfio device cdevs");
        free(reason);

        BackendUapi u;
        ASSERT_INT_EQ(backend_uapi_from_string("auto", &u), 0);
        ASSERT_INT_EQ(u, BACKEND_UAPI_AUTO);
        ASSERT_INT_EQ(backend_uapi_from_string("iommufd", &u), 0);
        ASSERT_INT_EQ(u, BACKEND_UAPI_IOMMUFD);
        ASSERT_INT_EQ(backend_uapi_from_string("group", &u), 0);
        ASSERT_INT_EQ(u, BACKEND_UAPI_GROUP);
        ASSERT_INT_EQ(backend_uapi_from_string("cdev", &u), -EINVAL);
        ASSERT_INT_EQ(backend_uapi_from_string("", &u), -EINVAL);
}

/* The probe through umockdev's /dev: a testbed with /dev/iommu and
 * /dev/vfio/devices is a cdev kernel whatever the host is. */
TEST(test_probe_uapi) {
        g_autofree char *dev_iommu = g_build_filename(root_dir, "dev/iommu", NULL);
        g_autofree char *dev_devices = g_build_filename(root_dir, "dev/vfio/devices", NULL);
        _cleanup_(backend_freep) Backend *b = NULL;
        sd_event *e = NULL;
        LinuxUapiFacts f;

        ASSERT_INT_EQ(g_mkdir_with_parents(dev_devices, 0755), 0);
        ASSERT_TRUE(g_file_set_contents(dev_iommu, "", 0, NULL));

        backend_linux_probe_uapi(&f);
        ASSERT_TRUE(f.dev_iommu);
        ASSERT_TRUE(f.dev_vfio_devices);

        ASSERT_INT_EQ(sd_event_new(&e), 0);
        ASSERT_INT_EQ(backend_linux_new(e, BACKEND_UAPI_AUTO, on_event, NULL, &b), 0);
        ASSERT_TRUE(b->cdev);
        ASSERT_STR_EQ(b->name, "iommufd");
        ASSERT_TRUE(!b->emulated);
        b = backend_free(b);

        ASSERT_INT_EQ(backend_linux_new(e, BACKEND_UAPI_GROUP, on_event, NULL, &b), 0);
        ASSERT_TRUE(!b->cdev);
        ASSERT_STR_EQ(b->name, "group");
        b = backend_free(b);
        sd_event_unref(e);
}

TEST(test_syscalls) {
        _cleanup_(backend_freep) Backend *b = NULL;
        sd_event *e = NULL;
        int fd, api = 0;

        ASSERT_INT_EQ(sd_event_new(&e), 0);
        ASSERT_INT_EQ(backend_linux_new(e, BACKEND_UAPI_GROUP, on_event, NULL, &b), 0);
        sd_event_unref(e);

        ASSERT_INT_EQ(backend_open(b, "/nonexistent/vfio/devices/vfio0", O_RDWR), -ENOENT);
        fd = backend_open(b, "/dev/null", O_RDWR);
        ASSERT_TRUE(fd >= 0);
        ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        /* Not a vfio file: the kernel's answer, as -errno. */
        ASSERT_INT_EQ(backend_ioctl(b, fd, HR_VFIO_GET_API_VERSION, &api), -ENOTTY);
        backend_close(b, fd);
        ASSERT_TRUE(fcntl(fd, F_GETFD) < 0 && errno == EBADF);
        ASSERT_INT_EQ(backend_ioctl(b, fd, HR_VFIO_GET_API_VERSION, &api), -EBADF);
}

static void check_initial(Backend *b) {
        const PciDeviceInfo *i;
        size_t k = 0;

        i = expect_event(k++, BACKEND_ADD, "0000:00:00.0", NULL, NULL);
        ASSERT_TRUE(!i->is_bridge); /* a host bridge leads to no PCI bus */
        ASSERT_INT_EQ(i->iommu_group, 0);
        ASSERT_INT_EQ(i->vendor_id, 0x8086);
        ASSERT_INT_EQ(i->device_id, 0x29c0);
        ASSERT_INT_EQ(i->class_code, 0x060000);

        i = expect_event(k++, BACKEND_ADD, "0000:00:02.0", NULL, NULL);
        ASSERT_TRUE(i->is_bridge);
        ASSERT_INT_EQ(i->secondary_bus, 1);
        ASSERT_TRUE(!i->slot_reset); /* hotplug=off: no pciehp slot */
        ASSERT_TRUE(i->reset_methods == NULL);
        i = expect_event(k++, BACKEND_BIND, "0000:00:02.0", "pcieport", NULL);
        ASSERT_TRUE(i->is_bridge);

        i = expect_event(k++, BACKEND_ADD, "0000:00:03.0", NULL, NULL);
        ASSERT_TRUE(i->is_bridge);
        ASSERT_INT_EQ(i->secondary_bus, 2);
        ASSERT_TRUE(i->slot_reset); /* pciehp slot at 0000:02:00 */
        expect_event(k++, BACKEND_BIND, "0000:00:03.0", "pcieport", NULL);

        i = expect_event(k++, BACKEND_ADD, "0000:00:04.0", NULL, NULL);
        ASSERT_TRUE(i->is_bridge);
        ASSERT_INT_EQ(i->secondary_bus, 4); /* from secondary_bus_number */
        ASSERT_TRUE(!i->slot_reset);        /* an acpiphp slot resets the bus */
        expect_event(k++, BACKEND_BIND, "0000:00:04.0", "pcieport", NULL);

        i = expect_event(k++, BACKEND_ADD, "0000:00:05.0", NULL, NULL);
        ASSERT_TRUE(i->is_bridge);
        ASSERT_INT_EQ(i->secondary_bus, 5);
        ASSERT_INT_EQ(i->iommu_group, 6);

        i = expect_event(k++, BACKEND_ADD, "0000:00:06.0", NULL, NULL);
        ASSERT_TRUE(!i->is_bridge);
        ASSERT_INT_EQ(i->iommu_group, 9);

        i = expect_event(k++, BACKEND_ADD, "0000:00:07.0", NULL, NULL);
        ASSERT_TRUE(i->is_bridge); /* by its child bus, whatever the class */
        ASSERT_INT_EQ(i->secondary_bus, 6);

        i = expect_event(k++, BACKEND_ADD, "0000:00:08.0", NULL, NULL);
        ASSERT_TRUE(!i->is_bridge); /* leads nowhere */

        i = expect_event(k++, BACKEND_ADD, "0000:00:1f.0", NULL, NULL);
        ASSERT_TRUE(!i->is_bridge);
        ASSERT_INT_EQ(i->iommu_group, -1);
        ASSERT_TRUE(i->reset_methods == NULL);

        i = expect_event(k++, BACKEND_ADD, "0000:01:00.0", NULL, NULL);
        ASSERT_INT_EQ(i->iommu_group, 7);
        ASSERT_INT_EQ(strv_length(i->reset_methods), 2);
        ASSERT_STR_EQ(i->reset_methods[0], "pm");
        ASSERT_STR_EQ(i->reset_methods[1], "bus");
        i = expect_event(k++, BACKEND_BIND, "0000:01:00.0", "e1000e", NULL);
        ASSERT_INT_EQ(i->iommu_group, 7);

        i = expect_event(k++, BACKEND_ADD, "0000:01:00.1", NULL, NULL);
        ASSERT_INT_EQ(i->iommu_group, 7);
        ASSERT_INT_EQ(strv_length(i->reset_methods), 1);
        ASSERT_STR_EQ(i->reset_methods[0], "pm");
        expect_event(k++, BACKEND_BIND, "0000:01:00.1", "vfio-pci", "/dev/vfio/devices/vfio0");

        expect_event(k++, BACKEND_ADD, "0000:02:00.0", NULL, NULL);
        /* vfio-dev/vfio1 without a dev file is no cdev. */
        expect_event(k++, BACKEND_BIND, "0000:02:00.0", "vfio-pci", NULL);

        i = expect_event(k++, BACKEND_ADD, "0000:05:01.0", NULL, NULL);
        ASSERT_INT_EQ(i->iommu_group, 6);
        ASSERT_INT_EQ(i->vendor_id, 0x8086);
        ASSERT_INT_EQ(i->device_id, 0x100e);
        expect_event(k++, BACKEND_BIND, "0000:05:01.0", "e1000", NULL);

        EXPECT_N(k);
        ASSERT_INT_EQ(backend_linux_get_n_devices(b), 13);
}

TEST(test_events) {
        _cleanup_(backend_freep) Backend *b = NULL;
        sd_event *e = NULL;
        const PciDeviceInfo *i;
        PciAddress a;

        build_machine();

        ASSERT_INT_EQ(sd_event_new(&e), 0);
        ASSERT_INT_EQ(backend_linux_new(e, BACKEND_UAPI_IOMMUFD, on_event, NULL, &b), 0);
        ASSERT_TRUE(b->cdev);
        ASSERT_INT_EQ(backend_start(b), 0);
        check_initial(b);
        events_clear();

        /* Nothing happened: nothing is delivered. */
        pump(e);
        EXPECT_N(0);

        /* fn1 leaves vfio-pci: the kernel removes vfio-dev/vfio0, then
         * the driver link, then sends "unbind". Read late, the vfio-dev
         * event already shows the unbound device: one UNBIND. */
        umockdev_testbed_uevent(tb, fn1_vfio, "remove");
        umockdev_testbed_remove_device(tb, fn1_vfio);
        g_free(fn1_vfio);
        fn1_vfio = NULL;
        set_driver(fn1, NULL);
        umockdev_testbed_uevent(tb, fn1, "unbind");
        pump(e);
        i = expect_event(0, BACKEND_UNBIND, "0000:01:00.1", NULL, NULL);
        ASSERT_INT_EQ(i->iommu_group, 7);
        EXPECT_N(1);
        events_clear();

        /* ... and binds again: vfio-dev "add" before the PCI "bind", one
         * BIND carrying the cdev. */
        set_driver(fn1, "vfio-pci");
        fn1_vfio = add_vfio_dev(fn1, 0, true);
        umockdev_testbed_uevent(tb, fn1_vfio, "add");
        umockdev_testbed_uevent(tb, fn1, "bind");
        pump(e);
        expect_event(0, BACKEND_BIND, "0000:01:00.1", "vfio-pci", "/dev/vfio/devices/vfio0");
        EXPECT_N(1);
        events_clear();

        /* fn0 from e1000e to vfio-pci, one step at a time. */
        set_driver(fn0, NULL);
        umockdev_testbed_uevent(tb, fn0, "unbind");
        pump(e);
        expect_event(0, BACKEND_UNBIND, "0000:01:00.0", NULL, NULL);
        EXPECT_N(1);
        events_clear();

        g_autofree char *fn0_vfio = NULL;
        set_driver(fn0, "vfio-pci");
        fn0_vfio = add_vfio_dev(fn0, 2, true);
        umockdev_testbed_uevent(tb, fn0_vfio, "add");
        umockdev_testbed_uevent(tb, fn0, "bind");
        pump(e);
        expect_event(0, BACKEND_BIND, "0000:01:00.0", "vfio-pci", "/dev/vfio/devices/vfio2");
        EXPECT_N(1);
        events_clear();

        /* A quick unbind and rebind to the same driver, read when it is all
         * over (same driver, same cdev number): the kernel said "unbind",
         * so holders hear UNBIND and BIND. */
        umockdev_testbed_uevent(tb, fn0_vfio, "remove");
        umockdev_testbed_uevent(tb, fn0, "unbind");
        umockdev_testbed_uevent(tb, fn0_vfio, "add");
        umockdev_testbed_uevent(tb, fn0, "bind");
        pump(e);
        expect_event(0, BACKEND_UNBIND, "0000:01:00.0", NULL, NULL);
        expect_event(1, BACKEND_BIND, "0000:01:00.0", "vfio-pci", "/dev/vfio/devices/vfio2");
        EXPECT_N(2);
        events_clear();

        /* "change" with a new reset_method: CHANGE with the whole device. */
        umockdev_testbed_set_attribute(tb, fn0, "reset_method", "bus\n");
        umockdev_testbed_uevent(tb, fn0, "change");
        pump(e);
        i = expect_event(0, BACKEND_CHANGE, "0000:01:00.0", "vfio-pci", "/dev/vfio/devices/vfio2");
        ASSERT_INT_EQ(strv_length(i->reset_methods), 1);
        ASSERT_STR_EQ(i->reset_methods[0], "bus");
        EXPECT_N(1);
        events_clear();

        /* A "change" that changes nothing, a repeated "bind": nothing. */
        umockdev_testbed_uevent(tb, fn0, "change");
        umockdev_testbed_uevent(tb, fn0, "bind");
        pump(e);
        EXPECT_N(0);

        /* The cdev appears under the same driver (02:00.0's vfio1 gets its
         * dev file): CHANGE with the cdev. */
        umockdev_testbed_set_attribute(tb, lone_vfio, "dev", "511:1");
        umockdev_testbed_uevent(tb, lone_vfio, "add");
        pump(e);
        expect_event(0, BACKEND_CHANGE, "0000:02:00.0", "vfio-pci", "/dev/vfio/devices/vfio1");
        EXPECT_N(1);
        events_clear();

        /* The hotplug slot goes (pciehp service gone): the port changes. */
        tb_rmtree(rp_slot, "0000:00:03.0:pcie004");
        umockdev_testbed_uevent(tb, rp_slot, "change");
        pump(e);
        i = expect_event(0, BACKEND_CHANGE, "0000:00:03.0", "pcieport", NULL);
        ASSERT_TRUE(i->is_bridge);
        ASSERT_TRUE(!i->slot_reset);
        EXPECT_N(1);
        events_clear();

        /* Unplug the device behind the pci-bridge (bound to e1000):
         * UNBIND, then REMOVE with its last state. */
        umockdev_testbed_uevent(tb, behind, "remove");
        umockdev_testbed_remove_device(tb, behind);
        pump(e);
        expect_event(0, BACKEND_UNBIND, "0000:05:01.0", NULL, NULL);
        i = expect_event(1, BACKEND_REMOVE, "0000:05:01.0", NULL, NULL);
        ASSERT_INT_EQ(i->vendor_id, 0x8086);
        ASSERT_INT_EQ(i->device_id, 0x100e);
        ASSERT_INT_EQ(i->iommu_group, 6);
        EXPECT_N(2);
        events_clear();
        ASSERT_INT_EQ(pci_address_parse("0000:05:01.0", &a), 0);
        ASSERT_TRUE(!backend_linux_get_device(b, &a));

        /* A device that comes and goes before we look (its "add" finds it
         * gone) and whose "remove" names something never delivered:
         * nothing. */
        g_free(behind);
        behind = add_pci(pcibridge, "0000:05:01.0", "0x8086", "0x100e", "0x020000", "e1000", 6, "bus\n");
        umockdev_testbed_uevent(tb, behind, "remove");
        umockdev_testbed_remove_device(tb, behind);
        pump(e);
        EXPECT_N(0);

        /* Plug it back in, bound by the time we look: ADD, BIND. */
        g_free(behind);
        behind = add_pci(pcibridge, "0000:05:01.0", "0x8086", "0x100e", "0x020000", "e1000", 6, "bus\n");
        umockdev_testbed_uevent(tb, behind, "add");
        pump(e);
        i = expect_event(0, BACKEND_ADD, "0000:05:01.0", NULL, NULL);
        ASSERT_INT_EQ(i->iommu_group, 6);
        expect_event(1, BACKEND_BIND, "0000:05:01.0", "e1000", NULL);
        EXPECT_N(2);
        events_clear();
        ASSERT_TRUE(backend_linux_get_device(b, &a));

        /* Plugged in and bound before we look: ADD and BIND at its "add",
         * nothing more at its "bind". */
        g_autofree char *late = add_pci(pcibridge, "0000:05:02.0", "0x8086", "0x100e", "0x020000", "e1000", 6, NULL);
        umockdev_testbed_uevent(tb, late, "bind");
        pump(e);
        expect_event(0, BACKEND_ADD, "0000:05:02.0", NULL, NULL);
        expect_event(1, BACKEND_BIND, "0000:05:02.0", "e1000", NULL);
        EXPECT_N(2);
        events_clear();

        /* Another card at the root-bus address (new device id): gone and
         * come. */
        umockdev_testbed_set_attribute(tb, rootdev, "device", "0x10d4");
        umockdev_testbed_uevent(tb, rootdev, "add");
        pump(e);
        i = expect_event(0, BACKEND_REMOVE, "0000:00:06.0", NULL, NULL);
        ASSERT_INT_EQ(i->device_id, 0x10d3);
        i = expect_event(1, BACKEND_ADD, "0000:00:06.0", NULL, NULL);
        ASSERT_INT_EQ(i->device_id, 0x10d4);
        EXPECT_N(2);
        events_clear();

        /* A driver binds while the reset methods change: BIND on the
         * state delivered so far, then CHANGE with the new one (the
         * emulated kernel's order). */
        set_driver(rootdev, "e1000e");
        umockdev_testbed_set_attribute(tb, rootdev, "reset_method", "pm bus\n");
        umockdev_testbed_uevent(tb, rootdev, "bind");
        pump(e);
        i = expect_event(0, BACKEND_BIND, "0000:00:06.0", "e1000e", NULL);
        ASSERT_INT_EQ(strv_length(i->reset_methods), 1);
        i = expect_event(1, BACKEND_CHANGE, "0000:00:06.0", "e1000e", NULL);
        ASSERT_INT_EQ(strv_length(i->reset_methods), 2);
        EXPECT_N(2);
        events_clear();

        /* A vfio group node comes: nothing a device reports changes. */
        g_autofree char *group = umockdev_testbed_add_device(tb, "vfio", "7", NULL, "dev", "252:0", NULL, NULL);
        ASSERT_TRUE(group);
        umockdev_testbed_uevent(tb, group, "add");
        pump(e);
        EXPECT_N(0);

        /* Hot-unplug of a vfio-bound device: vfio-dev remove, unbind,
         * remove, read when all is gone: UNBIND, REMOVE. */
        umockdev_testbed_uevent(tb, fn1_vfio, "remove");
        umockdev_testbed_uevent(tb, fn1, "unbind");
        umockdev_testbed_uevent(tb, fn1, "remove");
        umockdev_testbed_remove_device(tb, fn1);
        pump(e);
        expect_event(0, BACKEND_UNBIND, "0000:01:00.1", NULL, NULL);
        i = expect_event(1, BACKEND_REMOVE, "0000:01:00.1", NULL, NULL);
        ASSERT_INT_EQ(i->iommu_group, 7);
        EXPECT_N(2);
        events_clear();

        /* Lost uevents: a device went and another changed without a word;
         * the rescan delivers it all, removals first. */
        umockdev_testbed_remove_device(tb, late);
        umockdev_testbed_set_attribute(tb, fn0, "reset_method", "pm bus\n");
        pump(e);
        EXPECT_N(0);
        ASSERT_INT_EQ(backend_linux_rescan(b), 0);
        expect_event(0, BACKEND_UNBIND, "0000:05:02.0", NULL, NULL);
        expect_event(1, BACKEND_REMOVE, "0000:05:02.0", NULL, NULL);
        i = expect_event(2, BACKEND_CHANGE, "0000:01:00.0", "vfio-pci", "/dev/vfio/devices/vfio2");
        ASSERT_INT_EQ(strv_length(i->reset_methods), 2);
        EXPECT_N(3);
        events_clear();
        ASSERT_INT_EQ(backend_linux_rescan(b), 0);
        EXPECT_N(0);

        b = backend_free(b);
        sd_event_unref(e);
        free_machine();
}

/* The group model reads no cdevs, even where the dev file exists. */
TEST(test_group_model) {
        _cleanup_(backend_freep) Backend *b = NULL;
        sd_event *e = NULL;
        char *p, *v;

        p = add_pci(NULL, "0000:00:09.0", "0x8086", "0x10d3", "0x020000", "vfio-pci", 12, "pm\n");
        v = add_vfio_dev(p, 3, true);

        ASSERT_INT_EQ(sd_event_new(&e), 0);
        ASSERT_INT_EQ(backend_linux_new(e, BACKEND_UAPI_GROUP, on_event, NULL, &b), 0);
        ASSERT_INT_EQ(backend_start(b), 0);

        size_t k;
        for (k = 0; k < n_events; k++)
                if (events[k].action == BACKEND_BIND && events[k].info.address.slot == 9)
                        break;
        ASSERT_TRUE(k < n_events);
        ASSERT_STR_EQ(events[k].info.driver, "vfio-pci");
        ASSERT_TRUE(events[k].info.cdev_path == NULL);
        events_clear();

        /* vfio-dev events change nothing in this model. */
        umockdev_testbed_uevent(tb, v, "add");
        pump(e);
        EXPECT_N(0);

        b = backend_free(b);
        sd_event_unref(e);
        g_free(p);
        g_free(v);
}

int main(void) {
        const char *preload = getenv("LD_PRELOAD");
        if (!preload || !strstr(preload, "umockdev-preload")) {
                fprintf(stderr, "Needs umockdev's preload library: run under umockdev-wrapper.\n");
                return 1;
        }
        if (getenv("HOTRESETD_TEST_DEBUG"))
                log_set_max_level(LOG_DEBUG);

        tb = umockdev_testbed_new();
        sys_dir = umockdev_testbed_get_sys_dir(tb);
        root_dir = umockdev_testbed_get_root_dir(tb);

        RUN(test_choose_uapi);
        RUN(test_probe_uapi);
        RUN(test_syscalls);
        RUN(test_events);
        RUN(test_group_model);

        events_clear();
        g_free(sys_dir);
        g_free(root_dir);
        g_object_unref(tb);
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The emulated kernel's vfio/iommufd uAPI, rule by rule, with the exact
 * values and errnos a real 6.12 kernel gave (vm/README.md) and the kernel
 * source's answers where nothing was measured. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "emulated-vfio.h"
#include "test-util.h"
#include "topology.h"
#include "util.h"
#include "vfio-compat.h"

/* ---- the machine ---------------------------------------------------------

   00:02.0  vfio-pci, group 3, on the root bus (no hot reset), "flr"
   00:1a.0  root port -> bus 5: 05:00.0 (vfio-pci, group 17) and a driverless
            pci-bridge 05:01.0 (group 18) -> bus 6: 06:00.0 (vfio-pci, group 18)
   00:1b.0  root port -> bus 4: 04:00.0 (vfio-pci, group 16), "bus" only, alone
   00:1c.0  root port (hotplug=off) -> bus 1: 01:00.0 "pm bus" and 01:00.1
            "pm", multifunction, group 14 (the VM README's topology)
   00:1d.0  root port -> bus 3: 03:00.0 (vfio-pci, group 15), "pm bus"
   00:1e.0  driverless pci-bridge, group 20 -> bus 2: 02:01.0 "bus" (listed
            at probe time only) and 02:02.0 (no method), both group 20
   00:19.0  root port -> bus 7: 07:00.0 (group 21) and 07:00.1 (group 22),
            ACS-isolated functions: one reset domain, two groups
   00:18.0  root port -> bus 8: 08:00.0 (vfio-pci, group 23) and 08:00.1
            (vfio-pci, no IOMMU group)

   Every vfio-pci device has a cdev /dev/vfio/devices/vfioN. */

typedef struct Endpoint {
        const char *address;
        const char *driver;
        int group;
        const char *reset; /* space-separated reset methods */
} Endpoint;

typedef struct Bridge {
        const char *address;
        const char *driver;
        int group;
        unsigned secondary;
} Bridge;

static const Bridge BRIDGES[] = {
        { "0000:00:1a.0", "pcieport", 10, 5 },
        { "0000:00:1b.0", "pcieport", 11, 4 },
        { "0000:00:1c.0", "pcieport", 12, 1 },
        { "0000:00:1d.0", "pcieport", 13, 3 },
        { "0000:00:1e.0", NULL, 20, 2 },
        { "0000:00:19.0", "pcieport", 24, 7 },
        { "0000:00:18.0", "pcieport", 25, 8 },
        { "0000:05:01.0", NULL, 18, 6 },
};

static const Endpoint ENDPOINTS[] = {
        { "0000:00:02.0", "vfio-pci", 3, "flr" },
        { "0000:01:00.0", "vfio-pci", 14, "pm bus" },
        { "0000:01:00.1", "vfio-pci", 14, "pm" },
        { "0000:02:01.0", "vfio-pci", 20, "bus" },
        { "0000:02:02.0", "vfio-pci", 20, NULL },
        { "0000:03:00.0", "vfio-pci", 15, "pm bus" },
        { "0000:04:00.0", "vfio-pci", 16, "bus" },
        { "0000:05:00.0", "vfio-pci", 17, "pm" },
        { "0000:06:00.0", "vfio-pci", 18, "pm" },
        { "0000:07:00.0", "vfio-pci", 21, "pm" },
        { "0000:07:00.1", "vfio-pci", 22, "pm" },
        { "0000:08:00.0", "vfio-pci", 23, "pm" },
        { "0000:08:00.1", "vfio-pci", -1, "pm" },
};

static PciAddress addr(const char *s) {
        PciAddress a;
        if (pci_address_parse(s, &a) < 0) {
                fprintf(stderr, "bad address in test: %s\n", s);
                exit(1);
        }
        return a;
}

static char *cdev_of(const char *address, char buf[static 64]) {
        PciAddress a = addr(address);
        /* A stable number per device; what matters is that it is unique. */
        snprintf(buf, 64, "/dev/vfio/devices/vfio%" PRIu32, pci_address_key(&a));
        return buf;
}

/* Rebinds address to driver in the machine, as udev would report it:
 * the cdev exists while a vfio driver is bound. */
static void set_driver(Topology *t, const char *address, const char *driver) {
        PciAddress a = addr(address);
        PciDevice *d = topology_get(t, &a);
        PciDeviceInfo i;
        char cdev[64];

        ASSERT_TRUE(d);
        ASSERT_INT_EQ(pci_device_info_copy(&i, &d->info), 0);
        free(i.driver);
        free(i.cdev_path);
        i.driver = driver ? strdup(driver) : NULL;
        i.cdev_path = driver_is_vfio(driver) ? strdup(cdev_of(address, cdev)) : NULL;
        ASSERT_TRUE(topology_put(t, &i, NULL) >= 0);
        pci_device_info_done(&i);
}

static Topology *machine_new(void) {
        Topology *t = topology_new(NULL);
        ASSERT_TRUE(t);

        for (size_t k = 0; k < ELEMENTSOF(BRIDGES); k++) {
                PciDeviceInfo i = PCI_DEVICE_INFO_NULL;
                i.address = addr(BRIDGES[k].address);
                i.class_code = 0x060400;
                i.is_bridge = true;
                i.secondary_bus = (uint8_t) BRIDGES[k].secondary;
                i.driver = (char *) BRIDGES[k].driver;
                i.iommu_group = BRIDGES[k].group;
                ASSERT_TRUE(topology_put(t, &i, NULL) >= 0);
        }
        for (size_t k = 0; k < ELEMENTSOF(ENDPOINTS); k++) {
                PciDeviceInfo i = PCI_DEVICE_INFO_NULL;
                _cleanup_strv_free_ char **methods = NULL;
                char cdev[64];

                if (ENDPOINTS[k].reset) {
                        _cleanup_free_ char *copy = strdup(ENDPOINTS[k].reset);
                        char *save = NULL;
                        for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
                                ASSERT_INT_EQ(strv_extend(&methods, w), 0);
                }
                i.address = addr(ENDPOINTS[k].address);
                i.vendor_id = 0x8086;
                i.device_id = 0x10d3;
                i.class_code = 0x020000;
                i.driver = (char *) ENDPOINTS[k].driver;
                i.iommu_group = ENDPOINTS[k].group;
                i.reset_methods = methods;
                i.cdev_path = driver_is_vfio(i.driver) ? cdev_of(ENDPOINTS[k].address, cdev) : NULL;
                ASSERT_TRUE(topology_put(t, &i, NULL) >= 0);
        }
        return t;
}

/* ---- uAPI helpers ------------------------------------------------------------ */

typedef struct Fixture {
        Topology *t;
        EmulatedVfio *v;
} Fixture;

static Fixture fixture(bool cdev) {
        Fixture f = { .t = machine_new() };
        f.v = emulated_vfio_new(f.t, cdev);
        ASSERT_TRUE(f.v);
        return f;
}

static void fixture_done(Fixture *f) {
        f->v = emulated_vfio_free(f->v);
        f->t = topology_free(f->t);
}

static int open_cdev(Fixture *f, const char *address) {
        char cdev[64];
        return emulated_vfio_open(f->v, cdev_of(address, cdev), O_RDWR | O_CLOEXEC);
}

static int open_group(Fixture *f, int group) {
        char path[64];
        snprintf(path, sizeof path, "/dev/vfio/%d", group);
        return emulated_vfio_open(f->v, path, O_RDWR | O_CLOEXEC);
}

static int open_iommufd(Fixture *f, uint32_t *ret_ioas) {
        int fd = emulated_vfio_open(f->v, "/dev/iommu", O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        if (ret_ioas) {
                struct hr_iommu_ioas_alloc a = { .size = sizeof a };
                ASSERT_INT_EQ(emulated_vfio_ioctl(f->v, fd, HR_IOMMU_IOAS_ALLOC, &a), 0);
                *ret_ioas = a.out_ioas_id;
        }
        return fd;
}

static int bind(Fixture *f, int devfd, int iommufd, uint32_t *ret_devid) {
        struct hr_vfio_device_bind_iommufd b = { .argsz = sizeof b, .iommufd = iommufd, .out_devid = 0xdeadbeef };
        int r = emulated_vfio_ioctl(f->v, devfd, HR_VFIO_DEVICE_BIND_IOMMUFD, &b);
        if (ret_devid)
                *ret_devid = b.out_devid;
        return r;
}

static int attach(Fixture *f, int devfd, uint32_t pt_id, uint32_t *ret_pt) {
        struct hr_vfio_device_attach_iommufd_pt at = { .argsz = sizeof at, .pt_id = pt_id };
        int r = emulated_vfio_ioctl(f->v, devfd, HR_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at);
        if (ret_pt)
                *ret_pt = at.pt_id;
        return r;
}

/* Opens, binds and attaches a cdev; returns the fd. */
static int lease(Fixture *f, const char *address, int iommufd, uint32_t ioas, uint32_t *ret_devid) {
        int fd = open_cdev(f, address);
        ASSERT_TRUE(fd >= 0);
        ASSERT_INT_EQ(bind(f, fd, iommufd, ret_devid), 0);
        ASSERT_INT_EQ(attach(f, fd, ioas, NULL), 0);
        return fd;
}

typedef struct Info {
        uint32_t flags, count;
        struct hr_vfio_pci_dependent_device devices[8];
} Info;

static int hot_reset_info(Fixture *f, int devfd, Info *ret) {
        union {
                struct hr_vfio_pci_hot_reset_info h;
                uint8_t raw[sizeof(struct hr_vfio_pci_hot_reset_info) + 8 * sizeof(struct hr_vfio_pci_dependent_device)];
        } u;
        memset(&u, 0xaa, sizeof u);
        u.h.argsz = sizeof u;
        int r = emulated_vfio_ioctl(f->v, devfd, HR_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &u.h);
        if (r >= 0) {
                ASSERT_TRUE(u.h.count <= 8);
                ret->flags = u.h.flags;
                ret->count = u.h.count;
                memcpy(ret->devices, u.h.devices, u.h.count * sizeof(struct hr_vfio_pci_dependent_device));
        }
        return r;
}

static int hot_reset(Fixture *f, int devfd, const int *group_fds, unsigned n) {
        union {
                struct hr_vfio_pci_hot_reset h;
                uint8_t raw[sizeof(struct hr_vfio_pci_hot_reset) + 8 * sizeof(int32_t)];
        } u = {};
        ASSERT_TRUE(n <= 8);
        u.h.argsz = (uint32_t) (sizeof u.h + n * sizeof(int32_t));
        u.h.count = n;
        for (unsigned i = 0; i < n; i++)
                u.h.group_fds[i] = group_fds[i];
        return emulated_vfio_ioctl(f->v, devfd, HR_VFIO_DEVICE_PCI_HOT_RESET, &u.h);
}

static int get_info_flags(Fixture *f, int devfd, uint32_t *ret_flags) {
        struct hr_vfio_device_info info = { .argsz = sizeof info };
        int r = emulated_vfio_ioctl(f->v, devfd, HR_VFIO_DEVICE_GET_INFO, &info);
        if (r >= 0)
                *ret_flags = info.flags;
        return r;
}

static unsigned resets(Fixture *f, const char *address) {
        PciAddress a = addr(address);
        return emulated_vfio_reset_count(f->v, &a);
}

static void assert_entry(const Info *info, size_t i, const char *address, uint32_t id) {
        PciAddress a = addr(address);
        ASSERT_TRUE(i < info->count);
        ASSERT_INT_EQ(info->devices[i].segment, a.domain);
        ASSERT_INT_EQ(info->devices[i].bus, a.bus);
        ASSERT_INT_EQ(info->devices[i].devfn, a.slot << 3 | a.function);
        ASSERT_INT_EQ(info->devices[i].id, id);
}

static void device_gone(Fixture *f, const char *address) {
        PciAddress a = addr(address);
        emulated_vfio_device_gone(f->v, &a);
}

static void xclose(Fixture *f, int fd) {
        ASSERT_INT_EQ(emulated_vfio_close(f->v, fd), 0);
}

static unsigned count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        unsigned n = 0;
        ASSERT_TRUE(d);
        for (struct dirent *e; (e = readdir(d));)
                n += e->d_name[0] != '.';
        closedir(d);
        return n;
}

static double now_msec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* ---- open ----------------------------------------------------------------------- */

TEST(test_open_cdev_model) {
        Fixture f = fixture(true);
        char link[64], target[256];

        int iommufd = emulated_vfio_open(f.v, "/dev/iommu", O_RDWR);
        ASSERT_TRUE(iommufd >= 0);
        /* Placeholder files, named for what they stand for, close-on-exec. */
        snprintf(link, sizeof link, "/proc/self/fd/%d", iommufd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        ASSERT_TRUE(n > 0);
        target[n] = 0;
        ASSERT_CONTAINS(target, "hotresetd-emulated:iommufd");
        ASSERT_TRUE(fcntl(iommufd, F_GETFD) & FD_CLOEXEC);

        int container = emulated_vfio_open(f.v, "/dev/vfio/vfio", O_RDWR);
        ASSERT_TRUE(container >= 0);

        int dev = open_cdev(&f, "0000:01:00.0");
        ASSERT_TRUE(dev >= 0);
        snprintf(link, sizeof link, "/proc/self/fd/%d", dev);
        n = readlink(link, target, sizeof target - 1);
        ASSERT_TRUE(n > 0);
        target[n] = 0;
        ASSERT_CONTAINS(target, "hotresetd-emulated:vfio-dev:0000:01:00.0");

        /* A second open() of the same cdev is a new open file. */
        int dev2 = open_cdev(&f, "0000:01:00.0");
        ASSERT_TRUE(dev2 >= 0 && dev2 != dev);

        ASSERT_INT_EQ(emulated_vfio_open(f.v, "/dev/vfio/devices/vfio999", O_RDWR), -ENOENT);
        ASSERT_INT_EQ(emulated_vfio_open(f.v, "/dev/vfio/devices/", O_RDWR), -ENOENT);

        int group = open_group(&f, 14);
        ASSERT_TRUE(group >= 0);
        snprintf(link, sizeof link, "/proc/self/fd/%d", group);
        n = readlink(link, target, sizeof target - 1);
        ASSERT_TRUE(n > 0);
        target[n] = 0;
        ASSERT_CONTAINS(target, "hotresetd-emulated:vfio-group:14");
        /* Legacy groups are single-open. */
        ASSERT_INT_EQ(open_group(&f, 14), -EBUSY);
        /* No device has group 99; group 12 has only the root port on
         * pcieport, so vfio never created its node. */
        ASSERT_INT_EQ(open_group(&f, 99), -ENOENT);
        ASSERT_INT_EQ(open_group(&f, 12), -ENOENT);
        ASSERT_INT_EQ(emulated_vfio_open(f.v, "/dev/vfio/14x", O_RDWR), -ENOENT);
        ASSERT_INT_EQ(emulated_vfio_open(f.v, "/dev/vfio/", O_RDWR), -ENOENT);
        ASSERT_INT_EQ(emulated_vfio_open(f.v, "/dev/vfio/-1", O_RDWR), -ENOENT);
        ASSERT_INT_EQ(emulated_vfio_open(f.v, "/dev/null", O_RDWR), -ENOENT);
        ASSERT_INT_EQ(emulated_vfio_open(f.v, "/dev/iommufd", O_RDWR), -ENOENT);

        /* A device not on a vfio driver has no cdev. */
        set_driver(f.t, "0000:03:00.0", "e1000e");
        ASSERT_INT_EQ(open_cdev(&f, "0000:03:00.0"), -ENOENT);

        /* Unknown descriptors. */
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, 9999, HR_VFIO_GET_API_VERSION, NULL), -EBADF);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, -1, HR_VFIO_GET_API_VERSION, NULL), -EBADF);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, STDERR_FILENO, HR_VFIO_GET_API_VERSION, NULL), -EBADF);
        ASSERT_INT_EQ(emulated_vfio_close(f.v, 9999), -EBADF);

        /* close() of a descriptor that is not emulated still closes it. */
        int p[2];
        ASSERT_INT_EQ(pipe2(p, O_CLOEXEC), 0);
        ASSERT_INT_EQ(emulated_vfio_close(f.v, p[0]), 0);
        ASSERT_TRUE(fcntl(p[0], F_GETFD) < 0);
        close(p[1]);

        fixture_done(&f);
}

/* Gives address the cdev path `path` (NULL: none), as a bind or an
 * unbind would. */
static void set_cdev(Topology *t, const char *address, const char *path) {
        PciAddress a = addr(address);
        PciDevice *d = topology_get(t, &a);
        PciDeviceInfo i;

        ASSERT_TRUE(d);
        ASSERT_INT_EQ(pci_device_info_copy(&i, &d->info), 0);
        free(i.cdev_path);
        i.cdev_path = path ? strdup(path) : NULL;
        ASSERT_TRUE(topology_put(t, &i, NULL) >= 0);
        pci_device_info_done(&i);
}

static void assert_opens(Fixture *f, const char *path, const char *address) {
        char link[64], target[256], want[128];
        int fd = emulated_vfio_open(f->v, path, O_RDWR);
        ASSERT_TRUE(fd >= 0);
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        ASSERT_TRUE(n > 0);
        target[n] = 0;
        snprintf(want, sizeof want, "vfio-dev:%s", address);
        ASSERT_CONTAINS(target, want);
        ASSERT_INT_EQ(emulated_vfio_close(f->v, fd), 0);
}

/* The kernel hands a freed vfio-dev number to the next device bound: an
 * open() of the path opens the device that has it now, whatever an
 * earlier open() of it found (the daemon remembers where each number was,
 * and checks it on every open). */
TEST(test_cdev_number_reused) {
        Fixture f = fixture(true);

        set_cdev(f.t, "0000:03:00.0", "/dev/vfio/devices/vfio7");
        set_cdev(f.t, "0000:04:00.0", "/dev/vfio/devices/vfio8");
        assert_opens(&f, "/dev/vfio/devices/vfio7", "0000:03:00.0");
        assert_opens(&f, "/dev/vfio/devices/vfio8", "0000:04:00.0");
        /* 03:00.0 unbound: its number is free ... */
        set_driver(f.t, "0000:03:00.0", NULL);
        ASSERT_INT_EQ(emulated_vfio_open(f.v, "/dev/vfio/devices/vfio7", O_RDWR), -ENOENT);
        /* ... and 05:00.0 gets it. */
        set_cdev(f.t, "0000:05:00.0", "/dev/vfio/devices/vfio7");
        assert_opens(&f, "/dev/vfio/devices/vfio7", "0000:05:00.0");
        /* Numbers far apart, and the same path opened again. */
        set_cdev(f.t, "0000:06:00.0", "/dev/vfio/devices/vfio4000");
        assert_opens(&f, "/dev/vfio/devices/vfio4000", "0000:06:00.0");
        assert_opens(&f, "/dev/vfio/devices/vfio7", "0000:05:00.0");
        /* The device remembered for a number, still on vfio-pci, under
         * another number now: the old one opens nothing. */
        set_cdev(f.t, "0000:05:00.0", "/dev/vfio/devices/vfio12");
        ASSERT_INT_EQ(emulated_vfio_open(f.v, "/dev/vfio/devices/vfio7", O_RDWR), -ENOENT);
        assert_opens(&f, "/dev/vfio/devices/vfio12", "0000:05:00.0");
        set_cdev(f.t, "0000:05:00.0", "/dev/vfio/devices/vfio7");
        /* A number beyond the cache: found all the same. */
        set_cdev(f.t, "0000:07:00.1", "/dev/vfio/devices/vfio2000000000");
        assert_opens(&f, "/dev/vfio/devices/vfio2000000000", "0000:07:00.1");
        assert_opens(&f, "/dev/vfio/devices/vfio2000000000", "0000:07:00.1");
        /* Not a number, or not bound to vfio: nothing. */
        ASSERT_INT_EQ(emulated_vfio_open(f.v, "/dev/vfio/devices/vfio7x", O_RDWR), -ENOENT);
        ASSERT_INT_EQ(emulated_vfio_open(f.v, "/dev/vfio/devices/vfio-1", O_RDWR), -ENOENT);
        set_cdev(f.t, "0000:07:00.0", "/dev/vfio/devices/vfio9");
        set_driver(f.t, "0000:08:00.0", "e1000e");
        set_cdev(f.t, "0000:08:00.0", "/dev/vfio/devices/vfio10");
        ASSERT_INT_EQ(emulated_vfio_open(f.v, "/dev/vfio/devices/vfio10", O_RDWR), -ENOENT);
        fixture_done(&f);
}

TEST(test_open_legacy_model) {
        Fixture f = fixture(false);

        ASSERT_INT_EQ(emulated_vfio_open(f.v, "/dev/iommu", O_RDWR), -ENOENT);
        ASSERT_INT_EQ(open_cdev(&f, "0000:01:00.0"), -ENOENT);
        int c = emulated_vfio_open(f.v, "/dev/vfio/vfio", O_RDWR);
        ASSERT_TRUE(c >= 0);
        int g = open_group(&f, 14);
        ASSERT_TRUE(g >= 0);
        ASSERT_INT_EQ(open_group(&f, 14), -EBUSY);

        fixture_done(&f);
}

/* ---- iommufd ------------------------------------------------------------------- */

TEST(test_iommufd_objects) {
        Fixture f = fixture(true);
        int fd = open_iommufd(&f, NULL);

        struct hr_iommu_ioas_alloc a = { .size = sizeof a - 1 };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fd, HR_IOMMU_IOAS_ALLOC, &a), -EINVAL);
        a = (struct hr_iommu_ioas_alloc) { .size = sizeof a, .flags = 1 };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fd, HR_IOMMU_IOAS_ALLOC, &a), -EOPNOTSUPP);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fd, HR_IOMMU_IOAS_ALLOC, NULL), -EFAULT);

        a = (struct hr_iommu_ioas_alloc) { .size = sizeof a };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fd, HR_IOMMU_IOAS_ALLOC, &a), 0);
        ASSERT_INT_EQ(a.out_ioas_id, 1);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fd, HR_IOMMU_IOAS_ALLOC, &a), 0);
        ASSERT_INT_EQ(a.out_ioas_id, 2);

        /* Ids are per iommufd. */
        int other = open_iommufd(&f, NULL);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, other, HR_IOMMU_IOAS_ALLOC, &a), 0);
        ASSERT_INT_EQ(a.out_ioas_id, 1);

        struct hr_iommu_destroy d = { .size = sizeof d - 1, .id = 2 };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fd, HR_IOMMU_DESTROY, &d), -EINVAL);
        d.size = sizeof d;
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fd, HR_IOMMU_DESTROY, &d), 0);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fd, HR_IOMMU_DESTROY, &d), -ENOENT);
        d.id = 0;
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fd, HR_IOMMU_DESTROY, &d), -ENOENT);

        /* The freed id is given out again, like the kernel's xarray. */
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fd, HR_IOMMU_IOAS_ALLOC, &a), 0);
        ASSERT_INT_EQ(a.out_ioas_id, 2);

        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fd, HR_VFIO_GET_API_VERSION, NULL), -ENOTTY);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fd, HR_VFIO_DEVICE_GET_INFO, &a), -ENOTTY);

        fixture_done(&f);
}

/* ---- cdev: bind, attach, devids ------------------------------------------------ */

TEST(test_cdev_before_bind) {
        Fixture f = fixture(true);
        int dev = open_cdev(&f, "0000:01:00.0");
        uint32_t flags;
        Info info;

        /* Measured: INFO before BIND: EINVAL; so is every other ioctl. */
        ASSERT_INT_EQ(hot_reset_info(&f, dev, &info), -EINVAL);
        ASSERT_INT_EQ(get_info_flags(&f, dev, &flags), -EINVAL);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, dev, HR_VFIO_DEVICE_RESET, NULL), -EINVAL);
        ASSERT_INT_EQ(hot_reset(&f, dev, NULL, 0), -EINVAL);
        ASSERT_INT_EQ(attach(&f, dev, 1, NULL), -EINVAL);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, dev, HR_VFIO_GET_API_VERSION, NULL), -EINVAL);

        fixture_done(&f);
}

TEST(test_bind_arguments) {
        Fixture f = fixture(true);
        int iommufd = open_iommufd(&f, NULL);
        int container = emulated_vfio_open(f.v, "/dev/vfio/vfio", O_RDWR);
        int dev = open_cdev(&f, "0000:01:00.0");
        int p[2];

        struct hr_vfio_device_bind_iommufd b = { .argsz = sizeof b - 1, .iommufd = iommufd };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, dev, HR_VFIO_DEVICE_BIND_IOMMUFD, &b), -EINVAL);
        b = (struct hr_vfio_device_bind_iommufd) { .argsz = sizeof b, .flags = 1, .iommufd = iommufd };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, dev, HR_VFIO_DEVICE_BIND_IOMMUFD, &b), -EINVAL);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, dev, HR_VFIO_DEVICE_BIND_IOMMUFD, NULL), -EFAULT);
        ASSERT_INT_EQ(bind(&f, dev, -1, NULL), -EINVAL);
        /* iommufd_ctx_from_fd(): not open: EBADF; not an iommufd: EBADFD. */
        ASSERT_INT_EQ(bind(&f, dev, 9999, NULL), -EBADF);
        ASSERT_INT_EQ(bind(&f, dev, container, NULL), -EBADFD);
        ASSERT_INT_EQ(pipe2(p, O_CLOEXEC), 0);
        ASSERT_INT_EQ(bind(&f, dev, p[0], NULL), -EBADFD);
        close(p[0]);
        close(p[1]);

        /* None of that bound it. */
        uint32_t devid;
        ASSERT_INT_EQ(bind(&f, dev, iommufd, &devid), 0);
        ASSERT_INT_EQ(devid, 1);

        /* A device without an IOMMU group cannot bind. */
        int nogroup = open_cdev(&f, "0000:08:00.1");
        ASSERT_TRUE(nogroup >= 0);
        ASSERT_INT_EQ(bind(&f, nogroup, iommufd, NULL), -ENODEV);

        fixture_done(&f);
}

TEST(test_devids_and_attach) {
        Fixture f = fixture(true);
        uint32_t ioas, devid0, devid1, pt;
        int iommufd = open_iommufd(&f, &ioas);
        ASSERT_INT_EQ(ioas, 1);

        int fn0 = open_cdev(&f, "0000:01:00.0");
        int fn1 = open_cdev(&f, "0000:01:00.1");
        ASSERT_INT_EQ(bind(&f, fn0, iommufd, &devid0), 0);
        ASSERT_INT_EQ(devid0, 2);

        /* ATTACH: the argument checks, then the id must name an IOAS (or a
         * page table) of the bound iommufd. */
        struct hr_vfio_device_attach_iommufd_pt at = { .argsz = sizeof at - 1, .pt_id = ioas };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), -EINVAL);
        at = (struct hr_vfio_device_attach_iommufd_pt) { .argsz = sizeof at, .flags = 1, .pt_id = ioas };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), -EINVAL);
        ASSERT_INT_EQ(attach(&f, fn0, 99, NULL), -ENOENT);
        ASSERT_INT_EQ(attach(&f, fn0, devid0, NULL), -EINVAL);
        int other = open_iommufd(&f, NULL);
        struct hr_iommu_ioas_alloc a = { .size = sizeof a };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, other, HR_IOMMU_IOAS_ALLOC, &a), 0);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, other, HR_IOMMU_IOAS_ALLOC, &a), 0);
        ASSERT_INT_EQ(a.out_ioas_id, 2);
        ASSERT_INT_EQ(attach(&f, fn0, 3, NULL), -ENOENT); /* only the other iommufd has 3 */

        /* The attach makes a page table for the IOAS, id 3, so the
         * sibling's devid is 4. Measured: "Both bound: devids 2 and 4". */
        ASSERT_INT_EQ(attach(&f, fn0, ioas, &pt), 0);
        ASSERT_INT_EQ(pt, 3);
        ASSERT_INT_EQ(bind(&f, fn1, iommufd, &devid1), 0);
        ASSERT_INT_EQ(devid1, 4);
        ASSERT_INT_EQ(attach(&f, fn1, ioas, &pt), 0);
        ASSERT_INT_EQ(pt, 3); /* shared */
        /* Attaching again, or to the page table itself, is fine. */
        ASSERT_INT_EQ(attach(&f, fn1, 3, &pt), 0);
        ASSERT_INT_EQ(pt, 3);

        /* Objects in use cannot be destroyed. */
        struct hr_iommu_destroy d = { .size = sizeof d, .id = ioas };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, iommufd, HR_IOMMU_DESTROY, &d), -EBUSY);
        d.id = 3;
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, iommufd, HR_IOMMU_DESTROY, &d), -EBUSY);
        d.id = devid0;
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, iommufd, HR_IOMMU_DESTROY, &d), -EBUSY);

        /* DETACH: argument checks; the page table goes with the last
         * device, then the IOAS can be destroyed. */
        struct hr_vfio_device_attach_iommufd_pt dt = { .argsz = 4 };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt), -EINVAL);
        dt = (struct hr_vfio_device_attach_iommufd_pt) { .argsz = 8, .flags = 1 };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt), -EINVAL);
        dt.flags = 0;
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt), 0);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt), 0);
        d.id = ioas;
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, iommufd, HR_IOMMU_DESTROY, &d), -EBUSY);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn1, HR_VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt), 0);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, iommufd, HR_IOMMU_DESTROY, &d), 0);

        /* Unknown device ioctls, once bound. */
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_GET_API_VERSION, NULL), -ENOTTY);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_IOMMU_IOAS_ALLOC, &a), -ENOTTY);

        fixture_done(&f);
}

TEST(test_bind_twice) {
        Fixture f = fixture(true);
        uint32_t ioas, devid;
        int iommufd = open_iommufd(&f, &ioas);
        int fn0 = lease(&f, "0000:01:00.0", iommufd, ioas, &devid);

        /* Measured: a second BIND of the same fd: EINVAL. It is checked
         * before the iommufd argument is looked at. */
        ASSERT_INT_EQ(bind(&f, fn0, iommufd, NULL), -EINVAL);
        ASSERT_INT_EQ(bind(&f, fn0, 9999, NULL), -EINVAL);
        int other = open_iommufd(&f, NULL);
        ASSERT_INT_EQ(bind(&f, fn0, other, NULL), -EINVAL);

        /* Measured: a second open() of a bound cdev succeeds, but BIND on
         * it: EINVAL; the new file stays unbound (GET_INFO EINVAL). */
        int again = open_cdev(&f, "0000:01:00.0");
        ASSERT_TRUE(again >= 0);
        ASSERT_INT_EQ(bind(&f, again, iommufd, NULL), -EINVAL);
        ASSERT_INT_EQ(bind(&f, again, other, NULL), -EINVAL);
        uint32_t flags;
        ASSERT_INT_EQ(get_info_flags(&f, again, &flags), -EINVAL);

        /* Once the bound file is closed, the other one can bind. */
        xclose(&f, fn0);
        ASSERT_INT_EQ(bind(&f, again, iommufd, &devid), 0);
        ASSERT_INT_EQ(devid, 2); /* the freed id again */

        fixture_done(&f);
}

/* ---- INFO and HOT_RESET, cdev model --------------------------------------------- */

TEST(test_info_sizing) {
        Fixture f = fixture(true);
        uint32_t ioas;
        int iommufd = open_iommufd(&f, &ioas);
        int fn0 = lease(&f, "0000:01:00.0", iommufd, ioas, NULL);

        union {
                struct hr_vfio_pci_hot_reset_info h;
                uint8_t raw[sizeof(struct hr_vfio_pci_hot_reset_info) + sizeof(struct hr_vfio_pci_dependent_device)];
        } u;

        /* Measured: INFO with argsz = the 12-byte header: ENOSPC,
         * count = 2, flags = 0. */
        memset(&u, 0xaa, sizeof u);
        u.h.argsz = 12;
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &u.h), -ENOSPC);
        ASSERT_INT_EQ(u.h.count, 2);
        ASSERT_INT_EQ(u.h.flags, 0);
        ASSERT_INT_EQ(u.h.argsz, 12);

        /* Room for one of two: still ENOSPC, nothing written. */
        memset(&u, 0xaa, sizeof u);
        u.h.argsz = sizeof u;
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &u.h), -ENOSPC);
        ASSERT_INT_EQ(u.h.count, 2);
        ASSERT_INT_EQ(u.h.flags, 0);
        ASSERT_INT_EQ(u.h.devices[0].id, 0xaaaaaaaa);

        /* Shorter than the header: EINVAL, nothing written. */
        memset(&u, 0xaa, sizeof u);
        u.h.argsz = 11;
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &u.h), -EINVAL);
        ASSERT_INT_EQ(u.h.count, 0xaaaaaaaa);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, NULL), -EFAULT);

        fixture_done(&f);
}

TEST(test_info_owned_and_reset) {
        Fixture f = fixture(true);
        uint32_t ioas, devid0, devid1;
        int iommufd = open_iommufd(&f, &ioas);
        int fn0 = lease(&f, "0000:01:00.0", iommufd, ioas, &devid0);
        Info info;

        /* Measured: both functions on vfio-pci, only fn0 bound: INFO
         * flags 0x3, fn0 devid 2, fn1 devid 0. */
        ASSERT_INT_EQ(hot_reset_info(&f, fn0, &info), 0);
        ASSERT_INT_EQ(info.flags, HR_VFIO_PCI_HOT_RESET_FLAG_DEV_ID | HR_VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED);
        ASSERT_INT_EQ(info.flags, 0x3);
        ASSERT_INT_EQ(info.count, 2);
        assert_entry(&info, 0, "0000:01:00.0", 2);
        assert_entry(&info, 1, "0000:01:00.1", HR_VFIO_PCI_DEVID_OWNED);

        /* Implicit ownership through the group is enough to reset. */
        ASSERT_INT_EQ(hot_reset(&f, fn0, NULL, 0), 0);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.0"), 1);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.1"), 1);
        ASSERT_INT_EQ(resets(&f, "0000:00:1c.0"), 0);

        /* Measured: both bound: devids 2 and 4; HOT_RESET with count 0
         * succeeds. */
        int fn1 = lease(&f, "0000:01:00.1", iommufd, ioas, &devid1);
        ASSERT_INT_EQ(hot_reset_info(&f, fn1, &info), 0);
        ASSERT_INT_EQ(info.flags, 0x3);
        assert_entry(&info, 0, "0000:01:00.0", 2);
        assert_entry(&info, 1, "0000:01:00.1", 4);
        ASSERT_INT_EQ(hot_reset(&f, fn1, NULL, 0), 0);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.0"), 2);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.1"), 2);

        /* Measured: HOT_RESET on a cdev with count 1: EINVAL (whatever the
         * fd). */
        int group_fd = fn1;
        ASSERT_INT_EQ(hot_reset(&f, fn0, &group_fd, 1), -EINVAL);

        /* Header checks. */
        struct hr_vfio_pci_hot_reset hr = { .argsz = sizeof hr - 1 };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_DEVICE_PCI_HOT_RESET, &hr), -EINVAL);
        hr = (struct hr_vfio_pci_hot_reset) { .argsz = sizeof hr, .flags = 1 };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_DEVICE_PCI_HOT_RESET, &hr), -EINVAL);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_DEVICE_PCI_HOT_RESET, NULL), -EFAULT);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.0"), 2);

        fixture_done(&f);
}

TEST(test_sibling_on_pci_stub) {
        Fixture f = fixture(true);
        uint32_t ioas;
        Info info;

        set_driver(f.t, "0000:01:00.1", "pci-stub");
        int iommufd = open_iommufd(&f, &ioas);
        /* pci-stub keeps the group viable: fn0 binds. */
        int fn0 = lease(&f, "0000:01:00.0", iommufd, ioas, NULL);

        /* Measured: fn1 on pci-stub: INFO flags 0x1, fn1 devid 0xffffffff;
         * HOT_RESET: EINVAL. */
        ASSERT_INT_EQ(hot_reset_info(&f, fn0, &info), 0);
        ASSERT_INT_EQ(info.flags, HR_VFIO_PCI_HOT_RESET_FLAG_DEV_ID);
        assert_entry(&info, 0, "0000:01:00.0", 2);
        assert_entry(&info, 1, "0000:01:00.1", HR_VFIO_PCI_DEVID_NOT_OWNED);
        ASSERT_INT_EQ(hot_reset(&f, fn0, NULL, 0), -EINVAL);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.0"), 0);

        /* An unbound sibling is outside the dev_set too. */
        set_driver(f.t, "0000:01:00.1", NULL);
        ASSERT_INT_EQ(hot_reset_info(&f, fn0, &info), 0);
        ASSERT_INT_EQ(info.flags, 0x1);
        assert_entry(&info, 1, "0000:01:00.1", HR_VFIO_PCI_DEVID_NOT_OWNED);
        ASSERT_INT_EQ(hot_reset(&f, fn0, NULL, 0), -EINVAL);

        fixture_done(&f);
}

TEST(test_sibling_on_native_driver) {
        Fixture f = fixture(true);
        uint32_t ioas;

        /* Measured: fn1 on its native e1000e driver: BIND_IOMMUFD of fn0
         * fails with EPERM (not EBUSY). */
        set_driver(f.t, "0000:01:00.1", "e1000e");
        int iommufd = open_iommufd(&f, &ioas);
        int fn0 = open_cdev(&f, "0000:01:00.0");
        ASSERT_INT_EQ(bind(&f, fn0, iommufd, NULL), -EPERM);

        /* The driverless bridge in group 20 does not make it unviable. */
        int d = open_cdev(&f, "0000:02:01.0");
        ASSERT_INT_EQ(bind(&f, d, iommufd, NULL), 0);

        fixture_done(&f);
}

TEST(test_root_bus) {
        Fixture f = fixture(true);
        uint32_t ioas, flags;
        int iommufd = open_iommufd(&f, &ioas);
        int d = lease(&f, "0000:00:02.0", iommufd, ioas, NULL);
        Info info;

        /* Measured: a device on pcie.0: INFO and HOT_RESET both fail with
         * ENODEV. */
        ASSERT_INT_EQ(hot_reset_info(&f, d, &info), -ENODEV);
        ASSERT_INT_EQ(hot_reset(&f, d, NULL, 0), -ENODEV);
        ASSERT_INT_EQ(resets(&f, "0000:00:02.0"), 0);

        /* It still has its function reset. */
        ASSERT_INT_EQ(get_info_flags(&f, d, &flags), 0);
        ASSERT_INT_EQ(flags, 0x3);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, d, HR_VFIO_DEVICE_RESET, NULL), 0);
        PciAddress a = addr("0000:00:02.0");
        ASSERT_INT_EQ(emulated_vfio_function_reset_count(f.v, &a), 1);

        fixture_done(&f);
}

TEST(test_bridge_in_scope) {
        Fixture f = fixture(true);
        uint32_t ioas, devid;
        int iommufd = open_iommufd(&f, &ioas);
        int d = lease(&f, "0000:05:00.0", iommufd, ioas, &devid);
        Info info;

        /* The bus below 00:1a.0 holds a pci-bridge and what is behind it:
         * the bridge cannot join the dev_set. */
        ASSERT_INT_EQ(hot_reset_info(&f, d, &info), 0);
        ASSERT_INT_EQ(info.count, 3);
        ASSERT_INT_EQ(info.flags, 0x1);
        assert_entry(&info, 0, "0000:05:00.0", devid);
        assert_entry(&info, 1, "0000:05:01.0", HR_VFIO_PCI_DEVID_NOT_OWNED);
        assert_entry(&info, 2, "0000:06:00.0", HR_VFIO_PCI_DEVID_NOT_OWNED);
        ASSERT_INT_EQ(hot_reset(&f, d, NULL, 0), -EINVAL);

        /* Even with everything else bound, the bridge blocks. */
        uint32_t below_devid;
        int below = lease(&f, "0000:06:00.0", iommufd, ioas, &below_devid);
        ASSERT_INT_EQ(hot_reset_info(&f, d, &info), 0);
        ASSERT_INT_EQ(info.flags, 0x1);
        assert_entry(&info, 1, "0000:05:01.0", HR_VFIO_PCI_DEVID_NOT_OWNED);
        assert_entry(&info, 2, "0000:06:00.0", below_devid);
        ASSERT_INT_EQ(hot_reset(&f, d, NULL, 0), -EINVAL);
        ASSERT_INT_EQ(resets(&f, "0000:05:00.0"), 0);

        /* The device behind the bridge is reset by the bridge's secondary
         * bus reset, which hits only bus 6. */
        ASSERT_INT_EQ(hot_reset_info(&f, below, &info), 0);
        ASSERT_INT_EQ(info.flags, 0x3);
        ASSERT_INT_EQ(info.count, 1);
        assert_entry(&info, 0, "0000:06:00.0", below_devid);
        ASSERT_INT_EQ(hot_reset(&f, below, NULL, 0), 0);
        ASSERT_INT_EQ(resets(&f, "0000:06:00.0"), 1);
        ASSERT_INT_EQ(resets(&f, "0000:05:01.0"), 0);

        fixture_done(&f);
}

TEST(test_two_iommufds) {
        Fixture f = fixture(true);
        uint32_t ioas_a, ioas_b, devid_a, devid_b;
        int a = open_iommufd(&f, &ioas_a), b = open_iommufd(&f, &ioas_b);
        Info info;

        /* Measured: binding the sibling (same group) into a second
         * iommufd: EPERM. */
        int fn0 = lease(&f, "0000:01:00.0", a, ioas_a, NULL);
        int fn1 = open_cdev(&f, "0000:01:00.1");
        ASSERT_INT_EQ(bind(&f, fn1, b, NULL), -EPERM);
        ASSERT_INT_EQ(bind(&f, fn1, a, NULL), 0);
        (void) fn0;

        /* One reset domain, two groups (07:00.0 in 21, 07:00.1 in 22),
         * one per iommufd: neither can prove it owns the other. */
        int x = lease(&f, "0000:07:00.0", a, ioas_a, &devid_a);
        /* An unopened device of another group is not OWNED. */
        ASSERT_INT_EQ(hot_reset_info(&f, x, &info), 0);
        ASSERT_INT_EQ(info.flags, 0x1);
        assert_entry(&info, 1, "0000:07:00.1", HR_VFIO_PCI_DEVID_NOT_OWNED);

        int y = lease(&f, "0000:07:00.1", b, ioas_b, &devid_b);
        ASSERT_INT_EQ(devid_b, 2);
        ASSERT_INT_EQ(hot_reset_info(&f, x, &info), 0);
        ASSERT_INT_EQ(info.flags, 0x1);
        assert_entry(&info, 0, "0000:07:00.0", devid_a);
        assert_entry(&info, 1, "0000:07:00.1", HR_VFIO_PCI_DEVID_NOT_OWNED);
        ASSERT_INT_EQ(hot_reset_info(&f, y, &info), 0);
        ASSERT_INT_EQ(info.flags, 0x1);
        assert_entry(&info, 0, "0000:07:00.0", HR_VFIO_PCI_DEVID_NOT_OWNED);
        assert_entry(&info, 1, "0000:07:00.1", devid_b);
        ASSERT_INT_EQ(hot_reset(&f, x, NULL, 0), -EINVAL);
        ASSERT_INT_EQ(hot_reset(&f, y, NULL, 0), -EINVAL);
        ASSERT_INT_EQ(resets(&f, "0000:07:00.0"), 0);

        /* Move 07:00.1 into the first iommufd: the reset works. */
        xclose(&f, y);
        y = lease(&f, "0000:07:00.1", a, ioas_a, &devid_b);
        ASSERT_INT_EQ(hot_reset_info(&f, x, &info), 0);
        ASSERT_INT_EQ(info.flags, 0x3);
        assert_entry(&info, 1, "0000:07:00.1", devid_b);
        ASSERT_INT_EQ(hot_reset(&f, x, NULL, 0), 0);
        ASSERT_INT_EQ(resets(&f, "0000:07:00.0"), 1);
        ASSERT_INT_EQ(resets(&f, "0000:07:00.1"), 1);

        fixture_done(&f);
}

TEST(test_group_cdev_exclusion) {
        Fixture f = fixture(true);
        uint32_t ioas;
        int iommufd = open_iommufd(&f, &ioas);

        /* An open but unbound cdev does not hold the group. */
        int fn0 = open_cdev(&f, "0000:01:00.0");
        int g = open_group(&f, 14);
        ASSERT_TRUE(g >= 0);
        /* The group is open through the legacy interface: BIND is EBUSY. */
        ASSERT_INT_EQ(bind(&f, fn0, iommufd, NULL), -EBUSY);
        xclose(&f, g);
        ASSERT_INT_EQ(bind(&f, fn0, iommufd, NULL), 0);

        /* Measured: opening the group node while a cdev of that group is
         * bound: EBUSY (it opens again once the cdev is closed). */
        ASSERT_INT_EQ(open_group(&f, 14), -EBUSY);
        ASSERT_TRUE(open_group(&f, 20) >= 0); /* another group is fine */
        xclose(&f, fn0);
        g = open_group(&f, 14);
        ASSERT_TRUE(g >= 0);

        fixture_done(&f);
}

TEST(test_dup) {
        Fixture f = fixture(true);
        uint32_t ioas, flags;
        int iommufd = open_iommufd(&f, &ioas);
        int fn0 = lease(&f, "0000:01:00.0", iommufd, ioas, NULL);
        Info info;

        /* Measured: a dup() of the bound fd performs HOT_RESET fine. */
        int copy = fcntl(fn0, F_DUPFD_CLOEXEC, 0);
        ASSERT_TRUE(copy >= 0);
        ASSERT_INT_EQ(hot_reset(&f, copy, NULL, 0), 0);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.0"), 1);
        ASSERT_INT_EQ(hot_reset_info(&f, copy, &info), 0);
        assert_entry(&info, 0, "0000:01:00.0", 2);
        /* It is the same open file: bound already. */
        ASSERT_INT_EQ(bind(&f, copy, iommufd, NULL), -EINVAL);

        /* A dup of the iommufd works as the iommufd. */
        int icopy = fcntl(iommufd, F_DUPFD_CLOEXEC, 0);
        int fn1 = open_cdev(&f, "0000:01:00.1");
        uint32_t devid;
        ASSERT_INT_EQ(bind(&f, fn1, icopy, &devid), 0);
        ASSERT_INT_EQ(devid, 4);

        /* Closing a dup closes only that descriptor. */
        xclose(&f, copy);
        ASSERT_TRUE(fcntl(copy, F_GETFD) < 0);
        ASSERT_INT_EQ(get_info_flags(&f, fn0, &flags), 0);
        xclose(&f, icopy);
        ASSERT_INT_EQ(hot_reset(&f, fn0, NULL, 0), 0);

        /* Closing the descriptor the emulation handed out ends the file;
         * a dup left behind in this process no longer names anything. */
        copy = fcntl(fn0, F_DUPFD_CLOEXEC, 0);
        xclose(&f, fn0);
        ASSERT_INT_EQ(get_info_flags(&f, copy, &flags), -EBADF);
        close(copy);

        fixture_done(&f);
}

TEST(test_close_iommufd_keeps_binding) {
        Fixture f = fixture(true);
        uint32_t ioas;
        int iommufd = open_iommufd(&f, &ioas);
        int fn0 = lease(&f, "0000:01:00.0", iommufd, ioas, NULL);
        int fn1 = lease(&f, "0000:01:00.1", iommufd, ioas, NULL);
        Info info;

        /* The device files hold the iommufd: closing its descriptor does
         * not unbind anything. */
        xclose(&f, iommufd);
        ASSERT_INT_EQ(hot_reset_info(&f, fn0, &info), 0);
        ASSERT_INT_EQ(info.flags, 0x3);
        assert_entry(&info, 0, "0000:01:00.0", 2);
        assert_entry(&info, 1, "0000:01:00.1", 4);
        ASSERT_INT_EQ(hot_reset(&f, fn0, NULL, 0), 0);
        ASSERT_INT_EQ(open_group(&f, 14), -EBUSY);

        /* Closing a device file ends its binding: fn1 is OWNED now. */
        xclose(&f, fn1);
        ASSERT_INT_EQ(hot_reset_info(&f, fn0, &info), 0);
        assert_entry(&info, 1, "0000:01:00.1", HR_VFIO_PCI_DEVID_OWNED);
        xclose(&f, fn0);
        int g = open_group(&f, 14);
        ASSERT_TRUE(g >= 0);

        fixture_done(&f);
}

TEST(test_device_gone) {
        Fixture f = fixture(true);
        uint32_t ioas, flags, devid;
        int iommufd = open_iommufd(&f, &ioas);
        int fn0 = lease(&f, "0000:01:00.0", iommufd, ioas, NULL);
        int fn1 = lease(&f, "0000:01:00.1", iommufd, ioas, NULL);
        Info info;

        /* fn1 is unbound from vfio-pci. */
        set_driver(f.t, "0000:01:00.1", NULL);
        device_gone(&f, "0000:01:00.1");
        ASSERT_INT_EQ(get_info_flags(&f, fn1, &flags), -ENODEV);
        ASSERT_INT_EQ(hot_reset_info(&f, fn1, &info), -ENODEV);
        ASSERT_INT_EQ(hot_reset(&f, fn1, NULL, 0), -ENODEV);
        ASSERT_INT_EQ(bind(&f, fn1, iommufd, NULL), -ENODEV);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn1, HR_VFIO_DEVICE_RESET, NULL), -ENODEV);
        ASSERT_INT_EQ(hot_reset_info(&f, fn0, &info), 0);
        ASSERT_INT_EQ(info.flags, 0x1);
        assert_entry(&info, 1, "0000:01:00.1", HR_VFIO_PCI_DEVID_NOT_OWNED);

        /* Back on vfio-pci: OWNED through fn0's group; a new open binds,
         * and gets the freed devid. */
        set_driver(f.t, "0000:01:00.1", "vfio-pci");
        ASSERT_INT_EQ(hot_reset_info(&f, fn0, &info), 0);
        ASSERT_INT_EQ(info.flags, 0x3);
        assert_entry(&info, 1, "0000:01:00.1", HR_VFIO_PCI_DEVID_OWNED);
        int again = open_cdev(&f, "0000:01:00.1");
        ASSERT_INT_EQ(bind(&f, again, iommufd, &devid), 0);
        ASSERT_INT_EQ(devid, 4);
        ASSERT_INT_EQ(get_info_flags(&f, fn1, &flags), -ENODEV); /* dead stays dead */

        /* A bound device that is removed: its binding no longer holds the
         * group. */
        xclose(&f, again);
        PciAddress a = addr("0000:01:00.0");
        ASSERT_INT_EQ(topology_remove(f.t, &a), 0);
        device_gone(&f, "0000:01:00.0");
        ASSERT_INT_EQ(hot_reset(&f, fn0, NULL, 0), -ENODEV);
        int g = open_group(&f, 14);
        ASSERT_TRUE(g >= 0);

        /* A machine change nobody reported yet: ENODEV as well. */
        int d = lease(&f, "0000:03:00.0", iommufd, ioas, NULL);
        set_driver(f.t, "0000:03:00.0", "e1000e");
        ASSERT_INT_EQ(get_info_flags(&f, d, &flags), -ENODEV);

        fixture_done(&f);
}

TEST(test_get_info_and_function_reset) {
        Fixture f = fixture(true);
        uint32_t ioas, flags;
        int iommufd = open_iommufd(&f, &ioas);

        struct {
                const char *address;
                uint32_t flags;
        } cases[] = {
                /* Measured: GET_INFO flags 0x3 (RESET, PCI) with "pm". */
                { "0000:01:00.0", 0x3 },
                { "0000:01:00.1", 0x3 },
                /* "bus" with a sibling on the bus is no function reset... */
                { "0000:02:01.0", 0x2 },
                { "0000:02:02.0", 0x2 },
                /* ...but is for a device alone behind its bridge. */
                { "0000:04:00.0", 0x3 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                PciAddress a = addr(cases[i].address);
                int d = lease(&f, cases[i].address, iommufd, ioas, NULL);
                ASSERT_INT_EQ(get_info_flags(&f, d, &flags), 0);
                ASSERT_INT_EQ(flags, cases[i].flags);
                /* vfio_pci_ioctl_reset(): EINVAL without reset_works.
                 * Measured: VFIO_DEVICE_RESET succeeds with "pm". */
                ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, d, HR_VFIO_DEVICE_RESET, NULL),
                              cases[i].flags & HR_VFIO_DEVICE_FLAGS_RESET ? 0 : -EINVAL);
                ASSERT_INT_EQ(emulated_vfio_function_reset_count(f.v, &a),
                              cases[i].flags & HR_VFIO_DEVICE_FLAGS_RESET ? 1 : 0);
        }

        int d = open_cdev(&f, "0000:03:00.0");
        ASSERT_INT_EQ(bind(&f, d, iommufd, NULL), 0);
        struct hr_vfio_device_info info = { .argsz = 15 };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, d, HR_VFIO_DEVICE_GET_INFO, &info), -EINVAL);
        info = (struct hr_vfio_device_info) { .argsz = 16, .cap_offset = 77 };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, d, HR_VFIO_DEVICE_GET_INFO, &info), 0);
        ASSERT_INT_EQ(info.flags, 0x3);
        ASSERT_INT_EQ(info.num_regions, 9);
        ASSERT_INT_EQ(info.num_irqs, 5);
        ASSERT_INT_EQ(info.cap_offset, 77); /* beyond argsz: untouched */
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, d, HR_VFIO_DEVICE_GET_INFO, NULL), -EFAULT);

        fixture_done(&f);
}

/* ---- legacy group/container model ------------------------------------------------- */

static int get_device_fd(Fixture *f, int group, const char *name) {
        return emulated_vfio_ioctl(f->v, group, HR_VFIO_GROUP_GET_DEVICE_FD, (void *) name);
}

static int group_status(Fixture *f, int group, uint32_t *ret_flags) {
        struct hr_vfio_group_status s = { .argsz = sizeof s, .flags = 0xff };
        int r = emulated_vfio_ioctl(f->v, group, HR_VFIO_GROUP_GET_STATUS, &s);
        if (r >= 0)
                *ret_flags = s.flags;
        return r;
}

static int set_container(Fixture *f, int group, int container) {
        return emulated_vfio_ioctl(f->v, group, HR_VFIO_GROUP_SET_CONTAINER, &container);
}

static int check_extension(Fixture *f, int container, unsigned long ext) {
        return emulated_vfio_ioctl(f->v, container, HR_VFIO_CHECK_EXTENSION, (void *) (uintptr_t) ext);
}

static int set_iommu(Fixture *f, int container, unsigned long type) {
        return emulated_vfio_ioctl(f->v, container, HR_VFIO_SET_IOMMU, (void *) (uintptr_t) type);
}

TEST(test_legacy_flow) {
        Fixture f = fixture(false);
        uint32_t flags;
        Info info;
        int p[2];

        int c = emulated_vfio_open(f.v, "/dev/vfio/vfio", O_RDWR);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, c, HR_VFIO_GET_API_VERSION, NULL), 0);
        ASSERT_INT_EQ(check_extension(&f, c, HR_VFIO_TYPE1v2_IOMMU), 1);
        ASSERT_INT_EQ(check_extension(&f, c, 1), 1); /* VFIO_TYPE1_IOMMU */
        ASSERT_INT_EQ(check_extension(&f, c, 8), 0); /* VFIO_NOIOMMU_IOMMU */
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, c, HR_VFIO_DEVICE_GET_INFO, NULL), -ENOTTY);
        /* SET_IOMMU needs a group in the container. */
        ASSERT_INT_EQ(set_iommu(&f, c, HR_VFIO_TYPE1v2_IOMMU), -EINVAL);

        int g = open_group(&f, 14);
        struct hr_vfio_group_status s = { .argsz = 7 };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, g, HR_VFIO_GROUP_GET_STATUS, &s), -EINVAL);
        ASSERT_INT_EQ(group_status(&f, g, &flags), 0);
        ASSERT_INT_EQ(flags, HR_VFIO_GROUP_FLAGS_VIABLE);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, g, HR_VFIO_GET_API_VERSION, NULL), -ENOTTY);

        /* GET_DEVICE_FD needs a container... */
        ASSERT_INT_EQ(get_device_fd(&f, g, "0000:01:00.0"), -EINVAL);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, g, HR_VFIO_GROUP_UNSET_CONTAINER, NULL), -EINVAL);

        /* SET_CONTAINER: not open: EBADF; not a container: EBADFD. */
        ASSERT_INT_EQ(set_container(&f, g, 9999), -EBADF);
        ASSERT_INT_EQ(pipe2(p, O_CLOEXEC), 0);
        ASSERT_INT_EQ(set_container(&f, g, p[0]), -EBADFD);
        ASSERT_INT_EQ(set_container(&f, g, g), -EBADFD);
        close(p[0]);
        close(p[1]);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, g, HR_VFIO_GROUP_SET_CONTAINER, NULL), -EFAULT);
        ASSERT_INT_EQ(set_container(&f, g, c), 0);
        ASSERT_INT_EQ(set_container(&f, g, c), -EINVAL); /* already set */
        ASSERT_INT_EQ(group_status(&f, g, &flags), 0);
        ASSERT_INT_EQ(flags, HR_VFIO_GROUP_FLAGS_VIABLE | HR_VFIO_GROUP_FLAGS_CONTAINER_SET);

        /* ...with an IOMMU set. */
        ASSERT_INT_EQ(get_device_fd(&f, g, "0000:01:00.0"), -EINVAL);
        ASSERT_INT_EQ(set_iommu(&f, c, 99), -ENODEV);
        ASSERT_INT_EQ(set_iommu(&f, c, HR_VFIO_TYPE1v2_IOMMU), 0);
        ASSERT_INT_EQ(set_iommu(&f, c, HR_VFIO_TYPE1v2_IOMMU), -EINVAL);

        /* The exact name of a vfio device of this group. */
        ASSERT_INT_EQ(get_device_fd(&f, g, "01:00.0"), -ENODEV);
        ASSERT_INT_EQ(get_device_fd(&f, g, "0000:02:01.0"), -ENODEV);
        ASSERT_INT_EQ(get_device_fd(&f, g, "garbage"), -ENODEV);
        ASSERT_INT_EQ(get_device_fd(&f, g, NULL), -EFAULT);
        int fn0 = get_device_fd(&f, g, "0000:01:00.0");
        ASSERT_TRUE(fn0 >= 0);
        int fn1 = get_device_fd(&f, g, "0000:01:00.1");
        ASSERT_TRUE(fn1 >= 0);
        /* The group path may open a device more than once. */
        int fn0b = get_device_fd(&f, g, "0000:01:00.0");
        ASSERT_TRUE(fn0b >= 0);
        xclose(&f, fn0b);

        /* The device works without a BIND, and cannot bind. */
        ASSERT_INT_EQ(get_info_flags(&f, fn0, &flags), 0);
        ASSERT_INT_EQ(flags, 0x3);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_DEVICE_RESET, NULL), 0);
        ASSERT_INT_EQ(bind(&f, fn0, c, NULL), -EINVAL);
        ASSERT_INT_EQ(attach(&f, fn0, 1, NULL), -ENOTTY);

        /* INFO: group ids, flags 0. */
        ASSERT_INT_EQ(hot_reset_info(&f, fn0, &info), 0);
        ASSERT_INT_EQ(info.flags, 0);
        ASSERT_INT_EQ(info.count, 2);
        assert_entry(&info, 0, "0000:01:00.0", 14);
        assert_entry(&info, 1, "0000:01:00.1", 14);

        /* Measured: HOT_RESET with count 0 on a group-opened device:
         * EINVAL; with the group fd: succeeds. */
        ASSERT_INT_EQ(hot_reset(&f, fn0, NULL, 0), -EINVAL);
        ASSERT_INT_EQ(hot_reset(&f, fn0, &g, 1), 0);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.0"), 1);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.1"), 1);

        /* Group fds: not open: EBADF; not a group: EINVAL; more fds than
         * affected devices: EINVAL; a short argsz: EINVAL. */
        int bad = 9999;
        ASSERT_INT_EQ(hot_reset(&f, fn0, &bad, 1), -EBADF);
        ASSERT_INT_EQ(hot_reset(&f, fn0, &c, 1), -EINVAL);
        ASSERT_INT_EQ(hot_reset(&f, fn0, &fn1, 1), -EINVAL);
        int three[] = { g, g, g };
        ASSERT_INT_EQ(hot_reset(&f, fn0, three, 3), -EINVAL);
        ASSERT_INT_EQ(hot_reset(&f, fn0, three, 2), 0);
        union {
                struct hr_vfio_pci_hot_reset h;
                uint8_t raw[sizeof(struct hr_vfio_pci_hot_reset) + sizeof(int32_t)];
        } u = {};
        u.h = (struct hr_vfio_pci_hot_reset) { .argsz = sizeof u.h, .count = 1 };
        u.h.group_fds[0] = g;
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_DEVICE_PCI_HOT_RESET, &u.h), -EINVAL);
        u.h.argsz = sizeof u;
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, fn0, HR_VFIO_DEVICE_PCI_HOT_RESET, &u.h), 0);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.0"), 3);

        /* UNSET_CONTAINER: busy while device files are open. */
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, g, HR_VFIO_GROUP_UNSET_CONTAINER, NULL), -EBUSY);
        xclose(&f, fn0);
        xclose(&f, fn1);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, g, HR_VFIO_GROUP_UNSET_CONTAINER, NULL), 0);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, g, HR_VFIO_GROUP_UNSET_CONTAINER, NULL), -EINVAL);
        ASSERT_INT_EQ(group_status(&f, g, &flags), 0);
        ASSERT_INT_EQ(flags, HR_VFIO_GROUP_FLAGS_VIABLE);
        /* The last group leaving took the IOMMU with it. */
        ASSERT_INT_EQ(set_container(&f, g, c), 0);
        ASSERT_INT_EQ(get_device_fd(&f, g, "0000:01:00.0"), -EINVAL);
        ASSERT_INT_EQ(set_iommu(&f, c, HR_VFIO_TYPE1v2_IOMMU), 0);
        ASSERT_TRUE(get_device_fd(&f, g, "0000:01:00.0") >= 0);

        fixture_done(&f);
}

TEST(test_legacy_missing_group) {
        Fixture f = fixture(false);
        int c = emulated_vfio_open(f.v, "/dev/vfio/vfio", O_RDWR);
        int g21 = open_group(&f, 21), g22 = open_group(&f, 22);
        Info info;

        ASSERT_INT_EQ(set_container(&f, g21, c), 0);
        ASSERT_INT_EQ(set_iommu(&f, c, HR_VFIO_TYPE1v2_IOMMU), 0);
        /* A second group joins a container whose IOMMU is set. */
        ASSERT_INT_EQ(set_container(&f, g22, c), 0);
        int x = get_device_fd(&f, g21, "0000:07:00.0");
        ASSERT_TRUE(x >= 0);

        ASSERT_INT_EQ(hot_reset_info(&f, x, &info), 0);
        ASSERT_INT_EQ(info.flags, 0);
        assert_entry(&info, 0, "0000:07:00.0", 21);
        assert_entry(&info, 1, "0000:07:00.1", 22);

        /* Every affected group must be among the fds. */
        ASSERT_INT_EQ(hot_reset(&f, x, &g21, 1), -EINVAL);
        ASSERT_INT_EQ(hot_reset(&f, x, &g22, 1), -EINVAL);
        ASSERT_INT_EQ(resets(&f, "0000:07:00.0"), 0);
        int both[] = { g22, g21 };
        ASSERT_INT_EQ(hot_reset(&f, x, both, 2), 0);
        ASSERT_INT_EQ(resets(&f, "0000:07:00.0"), 1);
        ASSERT_INT_EQ(resets(&f, "0000:07:00.1"), 1);

        /* A device without a group in scope: INFO fails with EPERM. */
        int g23 = open_group(&f, 23);
        ASSERT_INT_EQ(set_container(&f, g23, c), 0);
        int y = get_device_fd(&f, g23, "0000:08:00.0");
        ASSERT_TRUE(y >= 0);
        ASSERT_INT_EQ(hot_reset_info(&f, y, &info), -EPERM);
        ASSERT_INT_EQ(hot_reset(&f, y, &g23, 1), -EINVAL);

        fixture_done(&f);
}

TEST(test_legacy_viability) {
        Fixture f = fixture(false);
        uint32_t flags;
        Info info;

        /* Measured: group model, fn1 on pci-stub: the group is viable;
         * INFO flags 0x0, both with the group id; HOT_RESET with the group
         * fd: EINVAL (fn1 not in the dev_set). */
        set_driver(f.t, "0000:01:00.1", "pci-stub");
        int c = emulated_vfio_open(f.v, "/dev/vfio/vfio", O_RDWR);
        int g = open_group(&f, 14);
        ASSERT_INT_EQ(group_status(&f, g, &flags), 0);
        ASSERT_INT_EQ(flags, HR_VFIO_GROUP_FLAGS_VIABLE);
        ASSERT_INT_EQ(set_container(&f, g, c), 0);
        ASSERT_INT_EQ(set_iommu(&f, c, HR_VFIO_TYPE1v2_IOMMU), 0);
        ASSERT_INT_EQ(get_device_fd(&f, g, "0000:01:00.1"), -ENODEV); /* not a vfio device */
        int fn0 = get_device_fd(&f, g, "0000:01:00.0");
        ASSERT_INT_EQ(hot_reset_info(&f, fn0, &info), 0);
        ASSERT_INT_EQ(info.flags, 0);
        assert_entry(&info, 0, "0000:01:00.0", 14);
        assert_entry(&info, 1, "0000:01:00.1", 14);
        ASSERT_INT_EQ(hot_reset(&f, fn0, &g, 1), -EINVAL);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.0"), 0);
        xclose(&f, fn0);
        xclose(&f, g);

        /* A native driver: not viable, and the container refuses it. */
        set_driver(f.t, "0000:01:00.1", "e1000e");
        g = open_group(&f, 14);
        ASSERT_INT_EQ(group_status(&f, g, &flags), 0);
        ASSERT_INT_EQ(flags, 0);
        ASSERT_INT_EQ(set_container(&f, g, c), -EPERM);
        xclose(&f, g);

        /* No vfio device left in the group: the node is gone; an open
         * group whose devices all left answers ENODEV. */
        g = open_group(&f, 14);
        set_driver(f.t, "0000:01:00.0", NULL);
        device_gone(&f, "0000:01:00.0");
        ASSERT_INT_EQ(group_status(&f, g, &flags), -ENODEV);
        ASSERT_INT_EQ(set_container(&f, g, c), -ENODEV);
        xclose(&f, g);
        ASSERT_INT_EQ(open_group(&f, 14), -ENOENT);

        fixture_done(&f);
}

TEST(test_legacy_close_order) {
        Fixture f = fixture(false);
        uint32_t flags;

        int c = emulated_vfio_open(f.v, "/dev/vfio/vfio", O_RDWR);
        int g = open_group(&f, 14);
        ASSERT_INT_EQ(set_container(&f, g, c), 0);
        ASSERT_INT_EQ(set_iommu(&f, c, HR_VFIO_TYPE1v2_IOMMU), 0);
        int fn0 = get_device_fd(&f, g, "0000:01:00.0");

        /* The device file holds the group file, the group the container:
         * closing the descriptors of both leaves the device working, and
         * the group still open. */
        xclose(&f, g);
        xclose(&f, c);
        ASSERT_INT_EQ(get_info_flags(&f, fn0, &flags), 0);
        ASSERT_INT_EQ(open_group(&f, 14), -EBUSY);

        /* The last device file lets go of the group, the group of the
         * container. */
        xclose(&f, fn0);
        g = open_group(&f, 14);
        ASSERT_TRUE(g >= 0);
        ASSERT_INT_EQ(group_status(&f, g, &flags), 0);
        ASSERT_INT_EQ(flags, HR_VFIO_GROUP_FLAGS_VIABLE); /* container membership released */

        fixture_done(&f);
}

TEST(test_both_apis_in_cdev_model) {
        Fixture f = fixture(true);
        uint32_t ioas;
        int iommufd = open_iommufd(&f, &ioas);

        /* The test kernel has both: a group-opened device holds its group
         * node, which blocks a cdev BIND of a sibling. */
        int c = emulated_vfio_open(f.v, "/dev/vfio/vfio", O_RDWR);
        int g = open_group(&f, 14);
        ASSERT_INT_EQ(set_container(&f, g, c), 0);
        ASSERT_INT_EQ(set_iommu(&f, c, HR_VFIO_TYPE1v2_IOMMU), 0);
        int fn0 = get_device_fd(&f, g, "0000:01:00.0");
        ASSERT_TRUE(fn0 >= 0);
        xclose(&f, g);
        int fn1 = open_cdev(&f, "0000:01:00.1");
        ASSERT_INT_EQ(bind(&f, fn1, iommufd, NULL), -EBUSY);
        /* A cdev of the group-opened device itself: EBUSY too. */
        int fn0c = open_cdev(&f, "0000:01:00.0");
        ASSERT_INT_EQ(bind(&f, fn0c, iommufd, NULL), -EBUSY);
        xclose(&f, fn0);
        ASSERT_INT_EQ(bind(&f, fn1, iommufd, NULL), 0);

        fixture_done(&f);
}

/* ---- concurrency ------------------------------------------------------------------ */

typedef struct ResetThread {
        Fixture *f;
        int fd;
        int r;
        double done_msec;
} ResetThread;

static void *reset_thread(void *userdata) {
        ResetThread *t = userdata;
        t->r = hot_reset(t->f, t->fd, NULL, 0);
        t->done_msec = now_msec();
        return NULL;
}

TEST(test_reset_delay_concurrent) {
        Fixture f = fixture(true);
        uint32_t ioas, flags;
        int iommufd = open_iommufd(&f, &ioas);
        int fn0 = lease(&f, "0000:01:00.0", iommufd, ioas, NULL);
        int fn1 = lease(&f, "0000:01:00.1", iommufd, ioas, NULL);
        int lone = lease(&f, "0000:03:00.0", iommufd, ioas, NULL);
        const unsigned delay = 300;

        emulated_vfio_set_reset_delay(f.v, delay);

        /* Disjoint scopes: the second reset does not wait for the first's
         * sleep, and other calls answer meanwhile. */
        ResetThread a = { .f = &f, .fd = fn0 }, b = { .f = &f, .fd = lone };
        pthread_t ta, tb;
        double start = now_msec();
        ASSERT_INT_EQ(pthread_create(&ta, NULL, reset_thread, &a), 0);
        ASSERT_INT_EQ(pthread_create(&tb, NULL, reset_thread, &b), 0);
        usleep(50 * 1000);
        double before = now_msec();
        ASSERT_INT_EQ(get_info_flags(&f, fn1, &flags), 0);
        Info info;
        ASSERT_INT_EQ(hot_reset_info(&f, fn0, &info), 0);
        ASSERT_TRUE(now_msec() - before < 100);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.0"), 0); /* not done yet */
        ASSERT_INT_EQ(pthread_join(ta, NULL), 0);
        ASSERT_INT_EQ(pthread_join(tb, NULL), 0);
        ASSERT_INT_EQ(a.r, 0);
        ASSERT_INT_EQ(b.r, 0);
        ASSERT_TRUE(a.done_msec - start >= delay);
        ASSERT_TRUE(b.done_msec - start >= delay);
        ASSERT_TRUE(a.done_msec - start < 2 * delay - 50);
        ASSERT_TRUE(b.done_msec - start < 2 * delay - 50);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.0"), 1);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.1"), 1);
        ASSERT_INT_EQ(resets(&f, "0000:03:00.0"), 1);

        /* Overlapping scopes (fn0 and fn1): serialized like the kernel's
         * dev_set lock; both succeed. */
        a = (ResetThread) { .f = &f, .fd = fn0 };
        b = (ResetThread) { .f = &f, .fd = fn1 };
        start = now_msec();
        ASSERT_INT_EQ(pthread_create(&ta, NULL, reset_thread, &a), 0);
        ASSERT_INT_EQ(pthread_create(&tb, NULL, reset_thread, &b), 0);
        ASSERT_INT_EQ(pthread_join(ta, NULL), 0);
        ASSERT_INT_EQ(pthread_join(tb, NULL), 0);
        ASSERT_INT_EQ(a.r, 0);
        ASSERT_INT_EQ(b.r, 0);
        double last = a.done_msec > b.done_msec ? a.done_msec : b.done_msec;
        ASSERT_TRUE(last - start >= 2 * delay);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.0"), 3);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.1"), 3);

        fixture_done(&f);
}

TEST(test_reset_delay_device_gone) {
        Fixture f = fixture(true);
        uint32_t ioas;
        int iommufd = open_iommufd(&f, &ioas);
        int fn0 = lease(&f, "0000:01:00.0", iommufd, ioas, NULL);
        int fn1 = lease(&f, "0000:01:00.1", iommufd, ioas, NULL);

        emulated_vfio_set_reset_delay(f.v, 300);

        /* A sibling goes away during the reset: ENODEV, nothing counted. */
        ResetThread a = { .f = &f, .fd = fn0 };
        pthread_t ta;
        ASSERT_INT_EQ(pthread_create(&ta, NULL, reset_thread, &a), 0);
        usleep(100 * 1000);
        emulated_vfio_lock(f.v);
        set_driver(f.t, "0000:01:00.1", NULL);
        device_gone(&f, "0000:01:00.1");
        emulated_vfio_unlock(f.v);
        ASSERT_INT_EQ(pthread_join(ta, NULL), 0);
        ASSERT_INT_EQ(a.r, -ENODEV);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.0"), 0);

        /* The calling device itself is unbound and bound again (the
         * machine looks the same after), and its descriptor is closed
         * meanwhile: the file died, ENODEV, no crash. */
        set_driver(f.t, "0000:01:00.1", "vfio-pci");
        xclose(&f, fn1);
        fn1 = lease(&f, "0000:01:00.1", iommufd, ioas, NULL);
        a = (ResetThread) { .f = &f, .fd = fn1 };
        ASSERT_INT_EQ(pthread_create(&ta, NULL, reset_thread, &a), 0);
        usleep(100 * 1000);
        emulated_vfio_lock(f.v);
        set_driver(f.t, "0000:01:00.1", NULL);
        device_gone(&f, "0000:01:00.1");
        set_driver(f.t, "0000:01:00.1", "vfio-pci");
        emulated_vfio_unlock(f.v);
        xclose(&f, fn1);
        ASSERT_INT_EQ(pthread_join(ta, NULL), 0);
        ASSERT_INT_EQ(a.r, -ENODEV);
        ASSERT_INT_EQ(resets(&f, "0000:01:00.1"), 0);

        fixture_done(&f);
}

/* ---- free ------------------------------------------------------------------------ */

TEST(test_free_closes_everything) {
        unsigned before = count_fds();

        Fixture f = fixture(true);
        uint32_t ioas;
        int iommufd = open_iommufd(&f, &ioas);
        (void) lease(&f, "0000:01:00.0", iommufd, ioas, NULL);
        (void) open_cdev(&f, "0000:01:00.1");
        int c = emulated_vfio_open(f.v, "/dev/vfio/vfio", O_RDWR);
        int g = open_group(&f, 20);
        ASSERT_INT_EQ(set_container(&f, g, c), 0);
        ASSERT_INT_EQ(set_iommu(&f, c, HR_VFIO_TYPE1v2_IOMMU), 0);
        (void) get_device_fd(&f, g, "0000:02:01.0");
        /* Descriptors closed already, files still held by others. */
        xclose(&f, iommufd);
        xclose(&f, g);
        ASSERT_TRUE(count_fds() > before);

        fixture_done(&f);
        ASSERT_INT_EQ(count_fds(), before);

        /* The legacy model too. */
        f = fixture(false);
        c = emulated_vfio_open(f.v, "/dev/vfio/vfio", O_RDWR);
        g = open_group(&f, 14);
        ASSERT_INT_EQ(set_container(&f, g, c), 0);
        fixture_done(&f);
        ASSERT_INT_EQ(count_fds(), before);
}

/* ---- a restart: the state comes back from the memfds --------------------- */

/* What the daemon's exit and systemd's store do: the store keeps duplicates
 * of the files, the emulation (the daemon's memory) goes. */
static int keep(int fd) {
        int k = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        ASSERT_TRUE(k >= 0);
        return k;
}

TEST(test_adopt_cdev_model) {
        Fixture f = fixture(true);
        uint32_t ioas, devid, devid2;
        Info info;

        int ictx = open_iommufd(&f, &ioas);
        int dev = lease(&f, "0000:03:00.0", ictx, ioas, &devid);
        int unbound = open_cdev(&f, "0000:04:00.0");
        int kept[] = { keep(ictx), keep(dev), keep(unbound) };
        f.v = emulated_vfio_free(f.v);

        f.v = emulated_vfio_new(f.t, true);
        ASSERT_TRUE(f.v);
        ASSERT_INT_EQ(emulated_vfio_adopt(f.v, kept, ELEMENTSOF(kept)), 3);
        /* Adopting again changes nothing. */
        ASSERT_INT_EQ(emulated_vfio_adopt(f.v, kept, ELEMENTSOF(kept)), 0);
        char cdev[64];
        ASSERT_TRUE(emulated_vfio_is_file(f.v, kept[0], "/dev/iommu"));
        ASSERT_TRUE(emulated_vfio_is_file(f.v, kept[1], cdev_of("0000:03:00.0", cdev)));
        ASSERT_TRUE(!emulated_vfio_is_file(f.v, kept[1], cdev_of("0000:04:00.0", cdev)));
        ASSERT_TRUE(!emulated_vfio_is_file(f.v, kept[0], "/dev/vfio/vfio"));

        /* Still bound, with its devid, in its iommufd: the info answers
         * and a second bind of it is refused as before. */
        ASSERT_INT_EQ(hot_reset_info(&f, kept[1], &info), 0);
        ASSERT_TRUE(info.flags & HR_VFIO_PCI_HOT_RESET_FLAG_DEV_ID);
        ASSERT_INT_EQ(info.count, 1);
        ASSERT_INT_EQ(info.devices[0].id, devid);
        ASSERT_INT_EQ(bind(&f, kept[1], kept[0], NULL), -EINVAL);
        ASSERT_INT_EQ(hot_reset(&f, kept[1], NULL, 0), 0);
        /* The group is owned: its legacy node stays closed. */
        ASSERT_INT_EQ(open_group(&f, 15), -EBUSY);
        /* The unbound file binds now, with the next free id. */
        ASSERT_INT_EQ(bind(&f, kept[2], kept[0], &devid2), 0);
        ASSERT_TRUE(devid2 != devid && devid2 != ioas);

        /* Closing the files ends it all, as before the restart. */
        ASSERT_INT_EQ(emulated_vfio_close(f.v, kept[1]), 0);
        int g = open_group(&f, 15);
        ASSERT_TRUE(g >= 0);
        ASSERT_INT_EQ(emulated_vfio_close(f.v, g), 0);
        ASSERT_INT_EQ(emulated_vfio_close(f.v, kept[2]), 0);
        ASSERT_INT_EQ(emulated_vfio_close(f.v, kept[0]), 0);
        fixture_done(&f);
}

TEST(test_adopt_legacy_model) {
        Fixture f = fixture(false);

        int c = emulated_vfio_open(f.v, "/dev/vfio/vfio", O_RDWR);
        int g = open_group(&f, 15);
        ASSERT_INT_EQ(set_container(&f, g, c), 0);
        ASSERT_INT_EQ(set_iommu(&f, c, HR_VFIO_TYPE1v2_IOMMU), 0);
        int dev = get_device_fd(&f, g, "0000:03:00.0");
        ASSERT_TRUE(dev >= 0);
        int kept[] = { keep(dev), keep(g), keep(c) }; /* in any order */
        f.v = emulated_vfio_free(f.v);

        f.v = emulated_vfio_new(f.t, false);
        ASSERT_INT_EQ(emulated_vfio_adopt(f.v, kept, ELEMENTSOF(kept)), 3);
        ASSERT_TRUE(emulated_vfio_is_file(f.v, kept[0], "vfio-device:0000:03:00.0"));
        ASSERT_TRUE(emulated_vfio_is_file(f.v, kept[1], "/dev/vfio/15"));
        ASSERT_TRUE(emulated_vfio_is_file(f.v, kept[2], "/dev/vfio/vfio"));
        /* The group is open (single-open) and in its container. */
        ASSERT_INT_EQ(open_group(&f, 15), -EBUSY);
        uint32_t flags;
        ASSERT_INT_EQ(group_status(&f, kept[1], &flags), 0);
        ASSERT_INT_EQ(flags, HR_VFIO_GROUP_FLAGS_VIABLE | HR_VFIO_GROUP_FLAGS_CONTAINER_SET);
        ASSERT_INT_EQ(hot_reset(&f, kept[0], &kept[1], 1), 0);
        for (size_t i = 0; i < ELEMENTSOF(kept); i++)
                ASSERT_INT_EQ(emulated_vfio_close(f.v, kept[i]), 0);
        g = open_group(&f, 15);
        ASSERT_TRUE(g >= 0);
        ASSERT_INT_EQ(emulated_vfio_close(f.v, g), 0);
        fixture_done(&f);
}

TEST(test_adopt_distrusts_content) {
        Fixture f = fixture(true);
        uint32_t ioas, devid;

        int ictx = open_iommufd(&f, &ioas);
        int dev = lease(&f, "0000:03:00.0", ictx, ioas, &devid);
        int other = lease(&f, "0000:04:00.0", ictx, ioas, NULL);
        int kept[] = { keep(ictx), keep(dev), keep(other) };
        int pipefd[2];
        ASSERT_INT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
        f.v = emulated_vfio_free(f.v);

        /* Someone holding a copy scribbles over one device's state, and
         * claims a binding to an iommufd that is not there for another. */
        static const char junk[] = "hotresetd-emulated-file 1\nkind=iommufd\nobject=1 2 0\ndevid=99\niommufd=1\n";
        ASSERT_INT_EQ(pwrite(kept[1], junk, sizeof junk - 1, 0), (ssize_t) sizeof junk - 1);
        ASSERT_INT_EQ(ftruncate(kept[1], sizeof junk - 1), 0);
        /* A device gone meanwhile is dead once adopted. */
        set_driver(f.t, "0000:04:00.0", "igb");

        f.v = emulated_vfio_new(f.t, true);
        int all[] = { kept[0], kept[1], kept[2], pipefd[0] };
        ASSERT_INT_EQ(emulated_vfio_adopt(f.v, all, ELEMENTSOF(all)), 3);
        ASSERT_TRUE(!emulated_vfio_is_file(f.v, pipefd[0], "/dev/iommu"));
        /* Kind and device come from the name: still a device file of
         * 03:00.0, but not bound (devid 99 is no device of that iommufd). */
        char cdev[64];
        ASSERT_TRUE(emulated_vfio_is_file(f.v, kept[1], cdev_of("0000:03:00.0", cdev)));
        struct hr_vfio_device_info di = { .argsz = sizeof di };
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, kept[1], HR_VFIO_DEVICE_GET_INFO, &di), -EINVAL);
        ASSERT_INT_EQ(emulated_vfio_ioctl(f.v, kept[2], HR_VFIO_DEVICE_GET_INFO, &di), -ENODEV);
        ASSERT_TRUE(!emulated_vfio_is_file(f.v, kept[2], cdev_of("0000:04:00.0", cdev)));
        set_driver(f.t, "0000:04:00.0", "vfio-pci");
        for (size_t i = 0; i < ELEMENTSOF(kept); i++)
                ASSERT_INT_EQ(emulated_vfio_close(f.v, kept[i]), 0);
        close(pipefd[0]);
        close(pipefd[1]);
        fixture_done(&f);
}

int main(void) {
        RUN(test_open_cdev_model);
        RUN(test_cdev_number_reused);
        RUN(test_open_legacy_model);
        RUN(test_iommufd_objects);
        RUN(test_cdev_before_bind);
        RUN(test_bind_arguments);
        RUN(test_devids_and_attach);
        RUN(test_bind_twice);
        RUN(test_info_sizing);
        RUN(test_info_owned_and_reset);
        RUN(test_sibling_on_pci_stub);
        RUN(test_sibling_on_native_driver);
        RUN(test_root_bus);
        RUN(test_bridge_in_scope);
        RUN(test_two_iommufds);
        RUN(test_group_cdev_exclusion);
        RUN(test_dup);
        RUN(test_close_iommufd_keeps_binding);
        RUN(test_device_gone);
        RUN(test_get_info_and_function_reset);
        RUN(test_legacy_flow);
        RUN(test_legacy_missing_group);
        RUN(test_legacy_viability);
        RUN(test_legacy_close_order);
        RUN(test_both_apis_in_cdev_model);
        RUN(test_reset_delay_concurrent);
        RUN(test_reset_delay_device_gone);
        RUN(test_free_closes_everything);
        RUN(test_adopt_cdev_model);
        RUN(test_adopt_legacy_model);
        RUN(test_adopt_distrusts_content);
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The real kernel: PCI devices from libudev and sysfs, changes from the
 * udev netlink monitor, and the vfio/iommufd uAPI through plain syscalls.
 *
 * The events delivered have the emulated backend's order and shape (see
 * backend-emulated.c), whatever order the uevents come in and however late
 * we read them: every uevent is turned into "re-read the device and
 * deliver what differs from what was delivered last" (a table of the last
 * delivered state per address), with two exceptions that keep what the
 * kernel said happened even when sysfs already shows a later state: a
 * "remove" delivers UNBIND (if bound) and REMOVE with the last state, and
 * an "unbind" delivers UNBIND even when the device is bound again by the
 * time we look (a rebind gives the driver new files; holders must hear of
 * it).
 *
 * Binding vfio-pci in the cdev model: the kernel adds vfio-dev/vfioN
 * during the driver's probe, so its "add" uevent comes before the PCI
 * device's "bind". Re-reading at the vfio-dev event already shows the
 * driver, so BIND is delivered there with the cdev path, and the later
 * "bind" finds nothing new: one BIND carrying the cdev, as the emulated
 * kernel sends. A vfio-dev node that comes or goes while the driver stays
 * gives a CHANGE. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libudev.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include "backend-linux.h"
#include "log.h"
#include "sysfs-pci.h"
#include "util.h"

#define SYSFS_PCI_SLOTS "/sys/bus/pci/slots"
#define VFIO_CDEV_PREFIX "/dev/vfio/devices/"

typedef struct LinuxBackend {
        Backend base; /* first: Backend * and LinuxBackend * convert */

        struct udev *udev;
        struct udev_monitor *monitor;
        sd_event_source *monitor_source;

        /* What was delivered last, per address, sorted by address. */
        PciDeviceInfo *devices;
        size_t n_devices;
        size_t n_allocated;

        bool started;
} LinuxBackend;

static const BackendOps linux_ops;

static LinuxBackend *linux_backend(Backend *b) {
        return b && b->ops == &linux_ops ? (LinuxBackend *) b : NULL;
}

static void udev_device_unrefp(struct udev_device **d) {
        if (*d)
                udev_device_unref(*d);
}

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

static void pci_device_info_donep(PciDeviceInfo *i) {
        pci_device_info_done(i);
}

/* A formatted string (a path); NULL when out of memory. Unlike a bare
 * asprintf(), never leaves an undefined pointer for a cleanup to free. */
_printf_(1, 2) static char *strdupf(const char *fmt, ...) {
        va_list ap;
        char *s;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        return r < 0 ? NULL : s;
}

static const char *plural_s(size_t n) {
        return n == 1 ? "" : "s";
}

/* ---- uAPI model ---- */

const char *backend_uapi_to_string(BackendUapi u) {
        switch (u) {
        case BACKEND_UAPI_AUTO:
                return "auto";
        case BACKEND_UAPI_IOMMUFD:
                return "iommufd";
        case BACKEND_UAPI_GROUP:
                return "group";
        }
        return "unknown";
}

int backend_uapi_from_string(const char *s, BackendUapi *ret) {
        static const BackendUapi all[] = { BACKEND_UAPI_AUTO, BACKEND_UAPI_IOMMUFD, BACKEND_UAPI_GROUP };

        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(all); i++)
                if (streq(s, backend_uapi_to_string(all[i]))) {
                        *ret = all[i];
                        return 0;
                }
        return -EINVAL;
}

static bool path_exists(const char *p) {
        return access(p, F_OK) == 0;
}

static bool sysfs_class_has_cdev(void) {
        _cleanup_(closedirp) DIR *d = opendir("/sys/class/vfio-dev");
        struct dirent *de;

        if (!d)
                return false;
        while ((de = readdir(d))) {
                _cleanup_free_ char *p = NULL;
                unsigned n;

                if (sysfs_parse_vfio_dev_name(de->d_name, &n) < 0)
                        continue;
                if (!(p = strdupf("/sys/class/vfio-dev/%s/dev", de->d_name)))
                        return false;
                if (path_exists(p))
                        return true;
        }
        return false;
}

void backend_linux_probe_uapi(LinuxUapiFacts *ret) {
        _cleanup_free_ char *devices = NULL;

        *ret = (LinuxUapiFacts) {
                .dev_iommu = path_exists("/dev/iommu"),
                .dev_vfio_devices = path_exists("/dev/vfio/devices"),
                .vfio_container = path_exists("/dev/vfio/vfio"),
                .sysfs_cdev = sysfs_class_has_cdev(),
        };
        /* /proc/devices is a few hundred bytes. */
        if (read_file_full("/proc/devices", 64 * 1024, &devices, NULL) >= 0)
                ret->cdev_major = proc_devices_has_char(devices, "vfio-dev");
}

int backend_linux_choose_uapi(BackendUapi want, const LinuxUapiFacts *f, bool *ret_cdev, char **ret_reason) {
        /* /sys/class/vfio-dev alone proves nothing: vfio creates the class
         * with or without CONFIG_VFIO_DEVICE_CDEV. The "vfio-dev" char major
         * is registered only with it; /dev/vfio/devices and the dev files
         * only appear once a device is bound to vfio-pci. */
        const char *cdev_evidence = f->cdev_major          ? "\"vfio-dev\" in /proc/devices"
                                    : f->dev_vfio_devices  ? "/dev/vfio/devices exists"
                                    : f->sysfs_cdev        ? "a /sys/class/vfio-dev/vfioN/dev file exists"
                                                           : NULL;
        bool iommufd_ok = f->dev_iommu && cdev_evidence;
        const char *no_container =
                f->vfio_container ? ""
                                  : "; note: /dev/vfio/vfio is missing (vfio not loaded, e.g. run \"modprobe vfio-pci\", "
                                    "or a kernel without VFIO): devices are listed but none can be opened";
        char *reason = NULL;
        int r;
        bool cdev;

        switch (want) {
        case BACKEND_UAPI_IOMMUFD:
                if (!iommufd_ok) {
                        r = asprintf(&reason,
                                     "the iommufd model was requested (--uapi=iommufd) but this kernel does not offer "
                                     "it: %s (needs CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV, Linux >= 6.6; Debian's "
                                     "stock kernels have neither); use --uapi=group or --uapi=auto",
                                     !f->dev_iommu ? "there is no /dev/iommu"
                                                   : "/dev/iommu exists but there are no vfio device cdevs (no "
                                                     "\"vfio-dev\" in /proc/devices, no /dev/vfio/devices)");
                        if (r < 0)
                                return -ENOMEM;
                        *ret_reason = reason;
                        return -EOPNOTSUPP;
                }
                cdev = true;
                r = asprintf(&reason, "iommufd model (requested with --uapi=iommufd; /dev/iommu exists, %s)",
                             cdev_evidence);
                break;

        case BACKEND_UAPI_GROUP:
                cdev = false;
                r = asprintf(&reason, "legacy group model (requested with --uapi=group%s)%s",
                             iommufd_ok ? "; the kernel also offers iommufd" : "", no_container);
                break;

        case BACKEND_UAPI_AUTO:
        default:
                cdev = iommufd_ok;
                if (iommufd_ok)
                        r = asprintf(&reason, "iommufd model: /dev/iommu exists and the kernel has vfio device cdevs (%s)",
                                     cdev_evidence);
                else if (!f->dev_iommu)
                        r = asprintf(&reason,
                                     "legacy group model: there is no /dev/iommu (a kernel without CONFIG_IOMMUFD, as "
                                     "Debian's stock kernels, or the iommufd module is not loaded)%s",
                                     no_container);
                else
                        r = asprintf(&reason,
                                     "legacy group model: /dev/iommu exists but the kernel has no vfio device cdevs "
                                     "(no \"vfio-dev\" in /proc/devices: CONFIG_VFIO_DEVICE_CDEV is not set, or vfio "
                                     "is not loaded yet)%s",
                                     no_container);
                break;
        }
        if (r < 0)
                return -ENOMEM;
        *ret_cdev = cdev;
        *ret_reason = reason;
        return 0;
}

/* ---- The table of delivered state ---- */

static size_t table_lower_bound(LinuxBackend *s, const PciAddress *a) {
        size_t lo = 0, hi = s->n_devices;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (pci_address_compare(&s->devices[mid].address, a) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static PciDeviceInfo *table_find(LinuxBackend *s, const PciAddress *a) {
        size_t i = table_lower_bound(s, a);

        return i < s->n_devices && pci_address_equal(&s->devices[i].address, a) ? &s->devices[i] : NULL;
}

/* Takes over *info (left PCI_DEVICE_INFO_NULL). */
static int table_put(LinuxBackend *s, PciDeviceInfo *info) {
        size_t i = table_lower_bound(s, &info->address);

        if (i < s->n_devices && pci_address_equal(&s->devices[i].address, &info->address)) {
                pci_device_info_done(&s->devices[i]);
                s->devices[i] = *info;
                *info = PCI_DEVICE_INFO_NULL;
                return 0;
        }

        if (s->n_devices == s->n_allocated) {
                size_t n = s->n_allocated ? s->n_allocated * 2 : 64;
                PciDeviceInfo *d = realloc(s->devices, n * sizeof(PciDeviceInfo));
                if (!d)
                        return -ENOMEM;
                s->devices = d;
                s->n_allocated = n;
        }
        memmove(s->devices + i + 1, s->devices + i, (s->n_devices - i) * sizeof(PciDeviceInfo));
        s->devices[i] = *info;
        s->n_devices++;
        *info = PCI_DEVICE_INFO_NULL;
        return 0;
}

static void table_remove(LinuxBackend *s, const PciAddress *a) {
        size_t i = table_lower_bound(s, a);

        if (i >= s->n_devices || !pci_address_equal(&s->devices[i].address, a))
                return;
        pci_device_info_done(&s->devices[i]);
        memmove(s->devices + i, s->devices + i + 1, (s->n_devices - i - 1) * sizeof(PciDeviceInfo));
        s->n_devices--;
}

/* ---- Reading a device ---- */

static int read_link_basename(const char *path, char **ret) {
        char buf[PATH_MAX];
        ssize_t n = readlink(path, buf, sizeof buf - 1);
        const char *slash;

        if (n < 0)
                return -errno;
        buf[n] = 0;
        slash = strrchr(buf, '/');
        *ret = strdup(slash ? slash + 1 : buf);
        return *ret ? 0 : -ENOMEM;
}

static int read_iommu_group(const char *syspath, const char *name) {
        _cleanup_free_ char *p = NULL;
        char buf[PATH_MAX];
        ssize_t n;
        int group;

        if (!(p = strdupf("%s/iommu_group", syspath)))
                return -1;
        n = readlink(p, buf, sizeof buf - 1);
        if (n < 0) {
                if (errno != ENOENT)
                        log_warning_errno(errno, "Linux backend: %s: cannot read the iommu_group link: %m", name);
                return -1;
        }
        buf[n] = 0;
        if (sysfs_parse_iommu_group_link(buf, &group) < 0) {
                log_warning("Linux backend: %s: unexpected iommu_group link \"%s\"; treating the device as having no "
                            "IOMMU group.",
                            name, buf);
                return -1;
        }
        return group;
}

/* The bus below a bridge: the kernel's child bus (<syspath>/pci_bus/SSSS:BB)
 * first, which costs no config space access; else secondary_bus_number.
 * Config space itself is not read: reading a runtime-suspended device's
 * config file wakes it up. Returns 1 with *ret set, 0 when unknown. */
static int read_secondary_bus(struct udev_device *d, const char *syspath, const PciAddress *a, uint8_t *ret) {
        _cleanup_free_ char *p = NULL;
        _cleanup_(closedirp) DIR *dir = NULL;
        struct dirent *de;
        const char *v;
        uint32_t bus;

        if (!(p = strdupf("%s/pci_bus", syspath)))
                return -ENOMEM;
        dir = opendir(p);
        if (dir)
                while ((de = readdir(dir))) {
                        uint16_t domain;
                        uint8_t b;

                        if (sysfs_parse_bus_address(de->d_name, &domain, &b, NULL) < 0 || domain != a->domain)
                                continue;
                        *ret = b;
                        return 1;
                }

        v = udev_device_get_sysattr_value(d, "secondary_bus_number");
        if (v && sysfs_parse_uint(v, 0xff, &bus) >= 0) {
                *ret = (uint8_t) bus;
                return 1;
        }
        return 0;
}

/* Whether the bridge leads to a bus (a pci_bus child directory), for
 * bridges with a class code that does not say so. */
static bool has_child_bus(const char *syspath) {
        _cleanup_free_ char *p = NULL;
        _cleanup_(closedirp) DIR *dir = NULL;
        struct dirent *de;

        if (!(p = strdupf("%s/pci_bus", syspath)))
                return false;
        dir = opendir(p);
        if (!dir)
                return false;
        while ((de = readdir(dir))) {
                uint16_t domain;
                uint8_t b;

                if (sysfs_parse_bus_address(de->d_name, &domain, &b, NULL) >= 0)
                        return true;
        }
        return false;
}

static bool bridge_has_pciehp_service(const char *syspath, const char *name) {
        _cleanup_(closedirp) DIR *dir = opendir(syspath);
        struct dirent *de;

        if (!dir)
                return false;
        while ((de = readdir(dir)))
                if (sysfs_parse_port_service(de->d_name, name) == (int) PCIE_PORT_SERVICE_HP)
                        return true;
        return false;
}

/* See SysfsSlotFacts in sysfs-pci.h for the heuristic and why. */
static bool read_slot_reset(const char *syspath, const char *name, uint16_t domain, uint8_t secondary_bus) {
        _cleanup_(closedirp) DIR *dir = opendir(SYSFS_PCI_SLOTS);
        struct dirent *de;
        int pciehp = -1; /* not looked at yet */

        if (!dir)
                return false;
        while ((de = readdir(dir))) {
                _cleanup_free_ char *p = NULL, *text = NULL, *module = NULL;
                SysfsSlotFacts f = {};
                uint16_t dom;
                uint8_t bus;
                int dev;

                if (de->d_name[0] == '.')
                        continue;
                if (!(p = strdupf(SYSFS_PCI_SLOTS "/%s/address", de->d_name)))
                        return false;
                if (read_file_full(p, 64, &text, NULL) < 0 || sysfs_parse_bus_address(text, &dom, &bus, &dev) < 0)
                        continue;
                if (dom != domain || bus != secondary_bus)
                        continue;

                free(p);
                if (!(p = strdupf(SYSFS_PCI_SLOTS "/%s/module", de->d_name)))
                        return false;
                if (read_link_basename(p, &module) >= 0)
                        f.module = module;
                if (pciehp < 0)
                        pciehp = bridge_has_pciehp_service(syspath, name);
                f.bridge_has_pciehp = pciehp;

                free(p);
                if (!(p = strdupf(SYSFS_PCI_SLOTS "/%s/power", de->d_name)))
                        return false;
                f.has_power = path_exists(p);
                free(p);
                if (!(p = strdupf(SYSFS_PCI_SLOTS "/%s/attention", de->d_name)))
                        return false;
                f.has_attention = path_exists(p);

                bool can = sysfs_slot_can_reset(&f);
                log_debug("Linux backend: %s: hotplug slot %s on bus %04x:%02x (module %s, pciehp service %s, "
                          "power %s, attention %s): %s reset",
                          name, de->d_name, domain, secondary_bus, f.module ? f.module : "none",
                          f.bridge_has_pciehp ? "yes" : "no", f.has_power ? "yes" : "no",
                          f.has_attention ? "yes" : "no", can ? "slot" : "bus");
                if (can)
                        return true;
        }
        return false;
}

static int read_cdev(const char *syspath, char **ret) {
        _cleanup_free_ char *p = NULL;
        _cleanup_(closedirp) DIR *dir = NULL;
        struct dirent *de;

        *ret = NULL;
        if (!(p = strdupf("%s/vfio-dev", syspath)))
                return -ENOMEM;
        dir = opendir(p);
        if (!dir)
                return 0;
        while ((de = readdir(dir))) {
                _cleanup_free_ char *dev = NULL;
                unsigned n;

                if (sysfs_parse_vfio_dev_name(de->d_name, &n) < 0)
                        continue;
                /* The directory exists without CONFIG_VFIO_DEVICE_CDEV too;
                 * only the dev file says there is a device node. */
                if (!(dev = strdupf("%s/%s/dev", p, de->d_name)))
                        return -ENOMEM;
                if (!path_exists(dev))
                        continue;
                *ret = strdupf(VFIO_CDEV_PREFIX "vfio%u", n);
                return *ret ? 0 : -ENOMEM;
        }
        return 0;
}

static int read_hex_attr(struct udev_device *d, const char *name, const char *attr, uint32_t max, uint32_t *ret) {
        const char *v = udev_device_get_sysattr_value(d, attr);
        int r;

        if (!v)
                return -ENOENT;
        r = sysfs_parse_hex(v, max, ret);
        if (r < 0)
                return log_warning_errno(r, "Linux backend: %s: unexpected %s \"%s\": %m", name, attr, v);
        return 0;
}

/* Reads everything delivered about a device. -ENOENT/-ENODEV when the
 * device is gone (or going). */
static int read_device(LinuxBackend *s, const char *syspath, PciDeviceInfo *ret) {
        _cleanup_(udev_device_unrefp) struct udev_device *d = NULL;
        _cleanup_(pci_device_info_donep) PciDeviceInfo info = PCI_DEVICE_INFO_NULL;
        const char *name, *subsystem, *v;
        uint32_t x;
        int r;

        d = udev_device_new_from_syspath(s->udev, syspath);
        if (!d)
                return errno > 0 ? -errno : -ENODEV;
        name = udev_device_get_sysname(d);
        subsystem = udev_device_get_subsystem(d);
        if (!name || !subsystem || !streq(subsystem, "pci"))
                return -ENODEV;
        if (pci_address_parse(name, &info.address) < 0)
                return log_warning_errno(EINVAL, "Linux backend: ignoring PCI device with unexpected name \"%s\".", name);

        r = read_hex_attr(d, name, "vendor", 0xffff, &x);
        if (r < 0)
                return r == -ENOENT ? -ENODEV : r;
        info.vendor_id = (uint16_t) x;
        r = read_hex_attr(d, name, "device", 0xffff, &x);
        if (r < 0)
                return r == -ENOENT ? -ENODEV : r;
        info.device_id = (uint16_t) x;
        r = read_hex_attr(d, name, "class", 0xffffff, &x);
        if (r < 0)
                return r == -ENOENT ? -ENODEV : r;
        info.class_code = x;

        v = udev_device_get_driver(d);
        if (v && !(info.driver = strdup(v)))
                return -ENOMEM;

        info.iommu_group = read_iommu_group(syspath, name);

        /* Missing: the device has no reset method (the kernel hides the
         * attribute then). */
        v = udev_device_get_sysattr_value(d, "reset_method");
        if (v) {
                r = sysfs_parse_reset_methods(v, &info.reset_methods);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        log_warning("Linux backend: %s: unexpected reset_method \"%s\"; ignoring it.", name, v);
        }

        if (pci_class_is_bridge(info.class_code) || has_child_bus(syspath)) {
                uint8_t bus;

                r = read_secondary_bus(d, syspath, &info.address, &bus);
                if (r < 0)
                        return r;
                if (r == 0 || bus <= info.address.bus)
                        /* A bridge that leads nowhere has nothing below it
                         * to reset; the model needs a bus number. */
                        log_warning("Linux backend: %s: bridge without a usable secondary bus (%s); not treating it "
                                    "as a bridge.",
                                    name, r == 0 ? "no pci_bus directory, no secondary_bus_number" : "bus number not above its own");
                else {
                        info.is_bridge = true;
                        info.secondary_bus = bus;
                        info.slot_reset = read_slot_reset(syspath, name, info.address.domain, bus);
                }
        }

        if (s->base.cdev) {
                r = read_cdev(syspath, &info.cdev_path);
                if (r < 0)
                        return r;
        }

        *ret = info;
        info = PCI_DEVICE_INFO_NULL;
        return 0;
}

/* ---- Delivering events ---- */

static void emit(LinuxBackend *s, BackendAction action, const PciDeviceInfo *info) {
        backend_emit(&s->base, action, info);
}

static void deliver_remove(LinuxBackend *s, const PciAddress *a) {
        PciDeviceInfo *o = table_find(s, a);
        PciDeviceInfo u;

        if (!o)
                return;
        u = pci_device_info_unbound(o);
        /* The driver's remove() runs before the device goes. */
        if (o->driver)
                emit(s, BACKEND_UNBIND, &u);
        emit(s, BACKEND_REMOVE, &u);
        table_remove(s, a);
}

/* Takes over *n. */
static int deliver_add(LinuxBackend *s, PciDeviceInfo *n) {
        PciDeviceInfo u = pci_device_info_unbound(n);

        /* udev sees "add" before a driver probes the device. */
        emit(s, BACKEND_ADD, &u);
        if (n->driver)
                emit(s, BACKEND_BIND, n);
        return table_put(s, n);
}

/* The device as read now against what was delivered last; takes over *n. */
static int deliver_update(LinuxBackend *s, PciDeviceInfo *n) {
        PciDeviceInfo *o = table_find(s, &n->address);
        bool changed;

        if (!o)
                return deliver_add(s, n);

        if (!pci_device_info_same_hardware(o, n)) {
                /* Another card at the address: gone and come. */
                deliver_remove(s, &n->address);
                return deliver_add(s, n);
        }

        changed = o->iommu_group != n->iommu_group || !strv_equal(o->reset_methods, n->reset_methods) ||
                  o->slot_reset != n->slot_reset;

        if (!streq_ptr(o->driver, n->driver)) {
                if (o->driver) {
                        PciDeviceInfo u = pci_device_info_unbound(o);
                        emit(s, BACKEND_UNBIND, &u);
                }
                if (n->driver) {
                        /* The new driver on the state delivered so far; a
                         * CHANGE brings the rest, as in the emulated kernel. */
                        PciDeviceInfo b = *o;
                        b.driver = n->driver;
                        b.cdev_path = n->cdev_path;
                        emit(s, BACKEND_BIND, &b);
                }
        } else if (!streq_ptr(o->cdev_path, n->cdev_path))
                /* The vfio-dev node came or went under the same driver. */
                changed = true;

        if (changed)
                emit(s, BACKEND_CHANGE, n);
        return table_put(s, n);
}

/* Re-reads the device at syspath and delivers what differs. */
static void sync_device(LinuxBackend *s, const PciAddress *a, const char *syspath) {
        _cleanup_(pci_device_info_donep) PciDeviceInfo n = PCI_DEVICE_INFO_NULL;
        char buf[PCI_ADDRESS_STRING_MAX];
        int r;

        r = read_device(s, syspath, &n);
        if (r == -ENOENT || r == -ENODEV) {
                /* Gone already: its "remove" uevent is on the way. */
                log_debug("Linux backend: %s is gone, waiting for its removal.", pci_address_format(a, buf));
                return;
        }
        if (r < 0) {
                log_warning_errno(r, "Linux backend: cannot read %s: %m", syspath);
                return;
        }
        if (!pci_address_equal(a, &n.address))
                return;
        r = deliver_update(s, &n);
        if (r < 0)
                log_error_errno(r, "Linux backend: failed to record the state of %s: %m", pci_address_format(a, buf));
}

static void handle_pci_uevent(LinuxBackend *s, const char *action, const char *sysname, const char *syspath) {
        PciAddress a;
        PciDeviceInfo *o;

        if (pci_address_parse(sysname, &a) < 0) {
                log_debug("Linux backend: ignoring uevent of PCI device with unexpected name \"%s\".", sysname);
                return;
        }

        if (streq(action, "remove")) {
                deliver_remove(s, &a);
                return;
        }

        if (streq(action, "unbind")) {
                o = table_find(s, &a);
                if (o && o->driver) {
                        /* The kernel says the driver went, even if the
                         * device is bound again by now. */
                        PciDeviceInfo u = pci_device_info_unbound(o);
                        emit(s, BACKEND_UNBIND, &u);
                        o = table_find(s, &a);
                        free(o->driver);
                        o->driver = NULL;
                        free(o->cdev_path);
                        o->cdev_path = NULL;
                }
        }

        /* add, bind, unbind, change, and anything else: look again. */
        sync_device(s, &a, syspath);
}

static void handle_vfio_dev_uevent(LinuxBackend *s, const char *action, const char *syspath) {
        _cleanup_free_ char *parent = NULL;
        PciAddress a;
        size_t len;

        if (sysfs_vfio_dev_parent(syspath, &a, &len) < 0) {
                log_debug("Linux backend: ignoring %s of vfio-dev device %s (not below a PCI device).", action, syspath);
                return;
        }
        /* Unknown parent: its own "add" will bring everything. */
        if (!table_find(s, &a))
                return;
        parent = strndup(syspath, len);
        if (!parent) {
                log_oom();
                return;
        }
        sync_device(s, &a, parent);
}

static void handle_uevent(LinuxBackend *s, struct udev_device *d) {
        const char *action = udev_device_get_action(d);
        const char *subsystem = udev_device_get_subsystem(d);
        const char *sysname = udev_device_get_sysname(d);
        const char *syspath = udev_device_get_syspath(d);

        if (!action || !subsystem || !sysname || !syspath)
                return;
        log_debug("Linux backend: uevent %s %s %s", action, subsystem, syspath);

        if (streq(subsystem, "pci"))
                handle_pci_uevent(s, action, sysname, syspath);
        else if (streq(subsystem, "vfio-dev"))
                handle_vfio_dev_uevent(s, action, syspath);
        /* "vfio": group nodes (/dev/vfio/N) come and go with the first
         * and last vfio device of a group; nothing a device reports
         * changes with them. */
}

static int scan(LinuxBackend *s, bool remove_missing);

static int on_monitor(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        LinuxBackend *s = userdata;

        /* The monitor socket is non-blocking: drain what is there, a
         * bounded number per wake-up so other sources get their turn. */
        for (unsigned i = 0; i < 256; i++) {
                _cleanup_(udev_device_unrefp) struct udev_device *d = NULL;

                errno = 0;
                d = udev_monitor_receive_device(s->monitor);
                if (!d) {
                        /* The socket overflowed (a burst, a stalled loop):
                         * events were lost, so look at everything again. */
                        if (errno == ENOBUFS) {
                                log_warning("Linux backend: uevents were lost (receive buffer overflow); rescanning "
                                            "the PCI devices.");
                                int r = scan(s, true);
                                if (r < 0)
                                        log_error_errno(r, "Linux backend: rescanning failed: %m");
                        }
                        break;
                }
                handle_uevent(s, d);
        }
        return 0;
}

/* ---- Start-up ---- */

typedef struct Found {
        PciAddress address;
        char *syspath;
} Found;

static int found_compare(const void *x, const void *y) {
        const Found *a = x, *b = y;
        return pci_address_compare(&a->address, &b->address);
}

/* Reads every PCI device and delivers what differs from what was
 * delivered; with remove_missing, devices no longer there are removed
 * (children first: reverse address order). */
static int scan(LinuxBackend *s, bool remove_missing) {
        struct udev_enumerate *en = NULL;
        struct udev_list_entry *e;
        Found *found = NULL;
        size_t n = 0, allocated = 0;
        int r;

        en = udev_enumerate_new(s->udev);
        if (!en)
                return -ENOMEM;
        r = udev_enumerate_add_match_subsystem(en, "pci");
        if (r >= 0)
                r = udev_enumerate_scan_devices(en);
        if (r < 0)
                goto finish;

        udev_list_entry_foreach(e, udev_enumerate_get_list_entry(en)) {
                const char *syspath = udev_list_entry_get_name(e);
                const char *name = strrchr(syspath, '/');
                PciAddress a;

                if (!name || pci_address_parse(name + 1, &a) < 0)
                        continue;
                if (n == allocated) {
                        size_t k = allocated ? allocated * 2 : 64;
                        Found *f = realloc(found, k * sizeof(Found));
                        if (!f) {
                                r = -ENOMEM;
                                goto finish;
                        }
                        found = f;
                        allocated = k;
                }
                found[n].address = a;
                found[n].syspath = strdup(syspath);
                if (!found[n].syspath) {
                        r = -ENOMEM;
                        goto finish;
                }
                n++;
        }

        /* Address order: bridges come before the buses they lead to. */
        if (n > 0)
                qsort(found, n, sizeof(Found), found_compare);

        if (remove_missing)
                for (size_t i = s->n_devices; i-- > 0;) {
                        PciAddress a = s->devices[i].address;
                        /* (found is NULL when sysfs lists no device: bsearch() must not see it.) */
                        if (n == 0 || !bsearch(&(Found) { .address = a }, found, n, sizeof(Found), found_compare))
                                deliver_remove(s, &a);
                }

        for (size_t i = 0; i < n; i++)
                sync_device(s, &found[i].address, found[i].syspath);
        r = 0;

finish:
        for (size_t i = 0; i < n; i++)
                free(found[i].syspath);
        free(found);
        udev_enumerate_unref(en);
        return r;
}

static int linux_start(Backend *b) {
        LinuxBackend *s = linux_backend(b);
        int r;

        if (s->started)
                return -EBUSY;
        s->started = true;

        /* Listening before enumerating, so nothing in between is missed;
         * uevents about devices already delivered find nothing new.
         *
         * Normally the events udevd passes on, once it has processed them.
         * Without udevd (a container, a minimal VM: no /run/udev/control)
         * nothing would ever come, so then the kernel's own uevents: the
         * backend re-reads sysfs at every event and needs nothing udevd
         * adds. */
        const char *source = access("/run/udev/control", F_OK) >= 0 ? "udev" : "kernel";
        if (streq(source, "kernel"))
                log_notice("Linux backend: udevd is not running (no /run/udev/control); listening to the kernel's "
                           "uevents directly.");
        s->monitor = udev_monitor_new_from_netlink(s->udev, source);
        if (!s->monitor)
                return log_error_errno(errno > 0 ? errno : ENOMEM, "Linux backend: cannot create the udev monitor: %m");
        r = udev_monitor_filter_add_match_subsystem_devtype(s->monitor, "pci", NULL);
        if (r >= 0)
                r = udev_monitor_filter_add_match_subsystem_devtype(s->monitor, "vfio-dev", NULL);
        if (r >= 0)
                r = udev_monitor_filter_add_match_subsystem_devtype(s->monitor, "vfio", NULL);
        if (r < 0)
                return log_error_errno(r, "Linux backend: cannot set the udev monitor's filter: %m");
        /* A burst (a bus rescan) must not overflow the socket; without
         * privilege this may fail, which only matters under load. */
        (void) udev_monitor_set_receive_buffer_size(s->monitor, 4 * 1024 * 1024);
        r = udev_monitor_enable_receiving(s->monitor);
        if (r < 0)
                return log_error_errno(r, "Linux backend: cannot listen to udev events: %m");

        r = sd_event_add_io(b->event, &s->monitor_source, udev_monitor_get_fd(s->monitor), EPOLLIN, on_monitor, s);
        if (r < 0)
                return log_error_errno(r, "Linux backend: cannot watch the udev monitor: %m");
        (void) sd_event_source_set_description(s->monitor_source, "udev-monitor");

        r = scan(s, false);
        if (r < 0)
                return log_error_errno(r, "Linux backend: cannot enumerate PCI devices: %m");

        log_info("Linux backend: %zu PCI device%s, %s model.", s->n_devices, plural_s(s->n_devices),
                 b->cdev ? "iommufd" : "group");
        return 0;
}

static void linux_free(Backend *b) {
        LinuxBackend *s = linux_backend(b);

        sd_event_source_disable_unref(s->monitor_source);
        if (s->monitor)
                udev_monitor_unref(s->monitor);
        if (s->udev)
                udev_unref(s->udev);
        for (size_t i = 0; i < s->n_devices; i++)
                pci_device_info_done(&s->devices[i]);
        free(s->devices);
        free(s);
}

/* ---- The vfio/iommufd uAPI: the real syscalls ---- */

static int linux_open(Backend *b, const char *path, int flags) {
        int fd = open(path, flags | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

static int linux_ioctl(Backend *b, int fd, unsigned long request, void *arg) {
        int r = ioctl(fd, request, arg);
        return r < 0 ? -errno : r;
}

static void linux_close(Backend *b, int fd) {
        safe_close(fd);
}

/* The same character device as path, or for a device opened through its
 * group (an anonymous inode), a vfio device file: the kernel tells no more
 * about which device it is, so the lease's record is trusted for that. */
static bool linux_is_file(Backend *b, int fd, const char *path) {
        struct stat a, p;

        if (strncmp(path, "vfio-device:", 12) == 0) {
                char link[64], target[64];
                snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
                ssize_t k = readlink(link, target, sizeof target - 1);
                if (k < 0)
                        return false;
                target[k] = '\0';
                return streq(target, "anon_inode:[vfio-device]");
        }
        return fstat(fd, &a) >= 0 && stat(path, &p) >= 0 && S_ISCHR(a.st_mode) && S_ISCHR(p.st_mode) &&
               a.st_rdev == p.st_rdev;
}

static const BackendOps linux_ops = {
        .start = linux_start,
        .free = linux_free,
        .open = linux_open,
        .ioctl = linux_ioctl,
        .close = linux_close,
        .is_file = linux_is_file,
};

int backend_linux_new(sd_event *e, BackendUapi uapi, BackendEventHandler handler, void *userdata, Backend **ret) {
        _cleanup_(backend_freep) Backend *b = NULL;
        _cleanup_free_ char *reason = NULL;
        LinuxUapiFacts facts;
        LinuxBackend *s;
        struct utsname u;
        bool cdev = false;
        int r;

        s = calloc(1, sizeof(LinuxBackend));
        if (!s)
                return log_oom();
        b = &s->base;
        b->ops = &linux_ops;
        b->emulated = false;
        b->event = sd_event_ref(e);
        b->handler = handler;
        b->userdata = userdata;

        backend_linux_probe_uapi(&facts);
        r = backend_linux_choose_uapi(uapi, &facts, &cdev, &reason);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0) {
                log_error("Linux backend: %s.", strempty(reason));
                return r;
        }
        b->cdev = cdev;
        b->name = strdup(cdev ? "iommufd" : "group");
        if (!b->name)
                return log_oom();

        s->udev = udev_new();
        if (!s->udev)
                return log_error_errno(errno > 0 ? errno : ENOMEM, "Linux backend: cannot create the udev context: %m");

        if (uname(&u) < 0)
                strcpy(u.release, "?");
        log_info("Linux backend (Linux %s): %s.", u.release, reason);

        *ret = TAKE_PTR(b);
        return 0;
}

const PciDeviceInfo *backend_linux_get_device(Backend *b, const PciAddress *a) {
        LinuxBackend *s = linux_backend(b);

        return s ? table_find(s, a) : NULL;
}

size_t backend_linux_get_n_devices(Backend *b) {
        LinuxBackend *s = linux_backend(b);

        return s ? s->n_devices : 0;
}

int backend_linux_rescan(Backend *b) {
        LinuxBackend *s = linux_backend(b);

        if (!s || !s->started)
                return -ESTALE;
        return scan(s, true);
}

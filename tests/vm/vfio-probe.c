/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vfio-probe: the kernel's own answers, for the VM tier to hold the daemon
 * against. It opens devices the raw way, with no daemon code in between:
 *
 *   cdev model:  /dev/vfio/devices/vfioN + /dev/iommu, VFIO_DEVICE_BIND_IOMMUFD,
 *                IOMMU_IOAS_ALLOC, VFIO_DEVICE_ATTACH_IOMMUFD_PT
 *   group model: /dev/vfio/vfio + /dev/vfio/N, VFIO_GROUP_SET_CONTAINER,
 *                VFIO_SET_IOMMU, VFIO_GROUP_GET_DEVICE_FD
 *
 * and asks VFIO_DEVICE_GET_PCI_HOT_RESET_INFO and VFIO_DEVICE_PCI_HOT_RESET.
 * Operations are given as arguments, or with "-" one a line on stdin, and
 * run in order in one process (so files stay open from one to the next);
 * each prints one JSON line on stdout:
 *
 *   ctx:NAME:cdev|group  select context NAME (an iommufd + IOAS, or a
 *                        container), made on first use
 *   ctx-close:NAME       close every file of context NAME and forget it
 *   open:ADDR            open ADDR into the current context ("step" names
 *                        the call that failed, "devid" is the bound devid)
 *   open-unbound:ADDR    cdev model: open the cdev without binding it
 *   info:ADDR            GET_PCI_HOT_RESET_INFO (sized with the ENOSPC call)
 *   info-header:ADDR     GET_PCI_HOT_RESET_INFO with argsz = the header only
 *   reset:ADDR           PCI_HOT_RESET (cdev: count 0; group: the fds of the
 *                        context's groups named in the INFO answer)
 *   reset-count0:ADDR    PCI_HOT_RESET with count 0 whatever the model
 *   device-reset:ADDR    VFIO_DEVICE_RESET
 *   group-open:N         open("/dev/vfio/N") and keep it open
 *   close:ADDR           close the context's file of ADDR
 *   hold                 print, then wait until stdin is closed (keeps every
 *                        file open while another process acts)
 *
 * Errors are reported as "errno" (a number, 0 = success) and "error" (its
 * symbolic name). The exit status is 0 unless the arguments are bad. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vfio-compat.h"

#define MAX_CTX 16
#define MAX_DEV 64
#define MAX_GROUPS 16

typedef struct Dev {
        char address[32];
        int fd;
        int group;
        struct Ctx *ctx;
} Dev;

typedef struct Ctx {
        char name[32];
        bool cdev;
        int iommufd;
        uint32_t ioas_id;
        int container;
        bool iommu_set;
        int groups[MAX_GROUPS];
        int group_fds[MAX_GROUPS];
        int n_groups;
        bool closed;
} Ctx;

static Ctx ctxs[MAX_CTX];
static int n_ctxs;
static Ctx *cur;
static Dev devs[MAX_DEV];
static int n_devs;
static int raw_group_fds[MAX_GROUPS];
static int n_raw_groups;

static const char *errname(int e) {
        switch (e) {
        case 0: return "";
        case EPERM: return "EPERM";
        case ENOENT: return "ENOENT";
        case EIO: return "EIO";
        case EBADF: return "EBADF";
        case EAGAIN: return "EAGAIN";
        case ENOMEM: return "ENOMEM";
        case EACCES: return "EACCES";
        case EBUSY: return "EBUSY";
        case EEXIST: return "EEXIST";
        case ENODEV: return "ENODEV";
        case EINVAL: return "EINVAL";
        case ENOTTY: return "ENOTTY";
        case ENOSPC: return "ENOSPC";
        case EOPNOTSUPP: return "EOPNOTSUPP";
        case ETIMEDOUT: return "ETIMEDOUT";
        default: return "E?";
        }
}

/* One JSON line: the common head, then extra members already formatted. */
static void emit(const char *op, const char *arg, int err, const char *step, const char *extra) {
        printf("{\"op\":\"%s\",\"arg\":\"%s\",\"ctx\":\"%s\",\"errno\":%d,\"error\":\"%s\"", op, arg ? arg : "",
               cur ? cur->name : "", err, errname(err));
        if (step && err)
                printf(",\"step\":\"%s\"", step);
        if (extra && *extra)
                printf(",%s", extra);
        printf("}\n");
        fflush(stdout);
}

static int read_group(const char *address) {
        char path[PATH_MAX], target[PATH_MAX];
        snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", address);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        if (n < 0)
                return -errno;
        target[n] = 0;
        const char *slash = strrchr(target, '/');
        return atoi(slash ? slash + 1 : target);
}

/* /dev/vfio/devices/vfioN from sysfs (the "dev" file, not the directory). */
static int find_cdev(const char *address, char *ret, size_t size) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev", address);
        DIR *d = opendir(path);
        if (!d)
                return -ENOENT;
        struct dirent *de;
        int r = -ENOENT;
        while ((de = readdir(d))) {
                if (strncmp(de->d_name, "vfio", 4) != 0)
                        continue;
                char dev[PATH_MAX + 300];
                snprintf(dev, sizeof(dev), "%s/%s/dev", path, de->d_name);
                if (access(dev, F_OK) < 0)
                        continue;
                snprintf(ret, size, "/dev/vfio/devices/%.200s", de->d_name);
                r = 0;
                break;
        }
        closedir(d);
        return r;
}

static Dev *find_dev(const char *address) {
        for (int i = 0; i < n_devs; i++)
                if (devs[i].ctx == cur && devs[i].fd >= 0 && strcmp(devs[i].address, address) == 0)
                        return &devs[i];
        return NULL;
}

static int xioctl(int fd, unsigned long req, void *arg) {
        return ioctl(fd, req, arg) < 0 ? errno : 0;
}

static int ctx_setup(Ctx *c, const char **step) {
        if (c->cdev) {
                if (c->iommufd >= 0)
                        return 0;
                *step = "open /dev/iommu";
                c->iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
                if (c->iommufd < 0)
                        return errno;
                struct hr_iommu_ioas_alloc a = { .size = sizeof(a) };
                *step = "IOMMU_IOAS_ALLOC";
                int e = xioctl(c->iommufd, HR_IOMMU_IOAS_ALLOC, &a);
                if (e) {
                        close(c->iommufd);
                        c->iommufd = -1;
                        return e;
                }
                c->ioas_id = a.out_ioas_id;
                return 0;
        }
        if (c->container >= 0)
                return 0;
        *step = "open /dev/vfio/vfio";
        c->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
        if (c->container < 0)
                return errno;
        *step = "VFIO_GET_API_VERSION";
        if (ioctl(c->container, HR_VFIO_GET_API_VERSION) != HR_VFIO_API_VERSION)
                return EINVAL;
        *step = "VFIO_CHECK_EXTENSION";
        if (ioctl(c->container, HR_VFIO_CHECK_EXTENSION, HR_VFIO_TYPE1v2_IOMMU) <= 0)
                return EOPNOTSUPP;
        return 0;
}

static Dev *new_dev(const char *address, int fd, int group) {
        Dev *d = NULL;
        for (int i = 0; i < n_devs && !d; i++)
                if (devs[i].fd < 0)
                        d = &devs[i];
        if (!d) {
                if (n_devs >= MAX_DEV) {
                        close(fd);
                        return NULL;
                }
                d = &devs[n_devs++];
        }
        snprintf(d->address, sizeof(d->address), "%s", address);
        d->fd = fd;
        d->group = group;
        d->ctx = cur;
        return d;
}

static void op_open(const char *address, bool bind) {
        const char *step = "iommu_group";
        char extra[128] = "";
        int group = read_group(address);
        int e = 0;

        if (group < 0) {
                emit("open", address, -group, step, NULL);
                return;
        }
        snprintf(extra, sizeof(extra), "\"group\":%d", group);
        e = ctx_setup(cur, &step);
        if (e) {
                emit("open", address, e, step, extra);
                return;
        }

        if (cur->cdev) {
                char cdev[PATH_MAX];
                step = "find cdev";
                int r = find_cdev(address, cdev, sizeof(cdev));
                if (r < 0) {
                        emit("open", address, -r, step, extra);
                        return;
                }
                step = "open cdev";
                int fd = open(cdev, O_RDWR | O_CLOEXEC);
                if (fd < 0) {
                        emit("open", address, errno, step, extra);
                        return;
                }
                if (!bind) {
                        new_dev(address, fd, group);
                        emit("open-unbound", address, 0, NULL, extra);
                        return;
                }
                struct hr_vfio_device_bind_iommufd b = { .argsz = sizeof(b), .iommufd = cur->iommufd };
                step = "VFIO_DEVICE_BIND_IOMMUFD";
                e = xioctl(fd, HR_VFIO_DEVICE_BIND_IOMMUFD, &b);
                if (!e) {
                        struct hr_vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at), .pt_id = cur->ioas_id };
                        step = "VFIO_DEVICE_ATTACH_IOMMUFD_PT";
                        e = xioctl(fd, HR_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at);
                }
                if (e) {
                        close(fd);
                        emit("open", address, e, step, extra);
                        return;
                }
                new_dev(address, fd, group);
                snprintf(extra, sizeof(extra), "\"group\":%d,\"devid\":%u", group, b.out_devid);
                emit("open", address, 0, NULL, extra);
                return;
        }

        /* Group model: the group once per context. */
        int gfd = -1;
        for (int i = 0; i < cur->n_groups; i++)
                if (cur->groups[i] == group)
                        gfd = cur->group_fds[i];
        if (gfd < 0) {
                char path[64];
                snprintf(path, sizeof(path), "/dev/vfio/%d", group);
                step = "open group";
                gfd = open(path, O_RDWR | O_CLOEXEC);
                if (gfd < 0) {
                        emit("open", address, errno, step, extra);
                        return;
                }
                struct hr_vfio_group_status st = { .argsz = sizeof(st) };
                step = "VFIO_GROUP_GET_STATUS";
                e = xioctl(gfd, HR_VFIO_GROUP_GET_STATUS, &st);
                if (!e && !(st.flags & HR_VFIO_GROUP_FLAGS_VIABLE)) {
                        step = "group not viable";
                        e = EPERM;
                }
                if (!e) {
                        step = "VFIO_GROUP_SET_CONTAINER";
                        e = xioctl(gfd, HR_VFIO_GROUP_SET_CONTAINER, &cur->container);
                }
                if (!e && !cur->iommu_set) {
                        step = "VFIO_SET_IOMMU";
                        if (ioctl(cur->container, HR_VFIO_SET_IOMMU, HR_VFIO_TYPE1v2_IOMMU) < 0)
                                e = errno;
                        else
                                cur->iommu_set = true;
                }
                if (e) {
                        close(gfd);
                        emit("open", address, e, step, extra);
                        return;
                }
                if (cur->n_groups < MAX_GROUPS) {
                        cur->groups[cur->n_groups] = group;
                        cur->group_fds[cur->n_groups++] = gfd;
                }
        }
        step = "VFIO_GROUP_GET_DEVICE_FD";
        int fd = ioctl(gfd, HR_VFIO_GROUP_GET_DEVICE_FD, address);
        if (fd < 0) {
                emit("open", address, errno, step, extra);
                return;
        }
        new_dev(address, fd, group);
        emit("open", address, 0, NULL, extra);
}

static int hot_reset_info(Dev *d, uint32_t *flags, struct hr_vfio_pci_hot_reset_info **ret) {
        uint32_t count = 4;
        for (int attempt = 0; attempt < 10; attempt++) {
                size_t size = sizeof(struct hr_vfio_pci_hot_reset_info) +
                              count * sizeof(struct hr_vfio_pci_dependent_device);
                struct hr_vfio_pci_hot_reset_info *info = calloc(1, size);
                if (!info)
                        return ENOMEM;
                info->argsz = (uint32_t) size;
                int e = xioctl(d->fd, HR_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, info);
                if (e == ENOSPC && info->count > count) {
                        count = info->count;
                        free(info);
                        continue;
                }
                if (e == EAGAIN) {
                        free(info);
                        continue;
                }
                if (e) {
                        free(info);
                        return e;
                }
                *flags = info->flags;
                *ret = info;
                return 0;
        }
        return EAGAIN;
}

static void format_entries(const struct hr_vfio_pci_hot_reset_info *info, char *buf, size_t size) {
        size_t o = 0;
        o += (size_t) snprintf(buf + o, size - o, "\"flags\":%u,\"devices\":[", info->flags);
        for (uint32_t i = 0; i < info->count && o < size; i++) {
                const struct hr_vfio_pci_dependent_device *dd = &info->devices[i];
                o += (size_t) snprintf(buf + o, size - o, "%s[\"%04x:%02x:%02x.%x\",%u]", i ? "," : "", dd->segment,
                                       dd->bus, dd->devfn >> 3, dd->devfn & 7, dd->id);
        }
        if (o < size)
                snprintf(buf + o, size - o, "]");
}

static Dev *need_dev(const char *op, const char *address) {
        Dev *d = find_dev(address);
        if (!d)
                emit(op, address, EBADF, "not opened in this context", NULL);
        return d;
}

static void op_info(const char *address) {
        Dev *d = need_dev("info", address);
        if (!d)
                return;
        uint32_t flags = 0;
        struct hr_vfio_pci_hot_reset_info *info = NULL;
        int e = hot_reset_info(d, &flags, &info);
        if (e) {
                emit("info", address, e, "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", NULL);
                return;
        }
        char buf[4096];
        format_entries(info, buf, sizeof(buf));
        emit("info", address, 0, NULL, buf);
        free(info);
}

static void op_info_header(const char *address) {
        Dev *d = need_dev("info-header", address);
        if (!d)
                return;
        struct hr_vfio_pci_hot_reset_info h = { .argsz = sizeof(h) };
        int e = xioctl(d->fd, HR_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &h);
        char buf[96];
        snprintf(buf, sizeof(buf), "\"flags\":%u,\"count\":%u", h.flags, h.count);
        emit("info-header", address, e, "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", buf);
}

static void op_reset(const char *address, bool force_count0) {
        const char *op = force_count0 ? "reset-count0" : "reset";
        Dev *d = need_dev(op, address);
        if (!d)
                return;
        int fds[MAX_GROUPS];
        uint32_t n = 0;
        if (!cur->cdev && !force_count0) {
                /* The groups the kernel names, as far as this context has them. */
                uint32_t flags;
                struct hr_vfio_pci_hot_reset_info *info = NULL;
                int e = hot_reset_info(d, &flags, &info);
                if (e) {
                        emit(op, address, e, "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", NULL);
                        return;
                }
                for (uint32_t i = 0; i < info->count; i++)
                        for (int k = 0; k < cur->n_groups; k++) {
                                if (cur->groups[k] != (int) info->devices[i].id)
                                        continue;
                                bool seen = false;
                                for (uint32_t j = 0; j < n; j++)
                                        seen = seen || fds[j] == cur->group_fds[k];
                                if (!seen && n < MAX_GROUPS)
                                        fds[n++] = cur->group_fds[k];
                        }
                free(info);
        }
        size_t size = sizeof(struct hr_vfio_pci_hot_reset) + n * sizeof(int32_t);
        struct hr_vfio_pci_hot_reset *r = calloc(1, size);
        if (!r) {
                emit(op, address, ENOMEM, "calloc", NULL);
                return;
        }
        r->argsz = (uint32_t) size;
        r->count = n;
        for (uint32_t i = 0; i < n; i++)
                r->group_fds[i] = fds[i];
        int e = xioctl(d->fd, HR_VFIO_DEVICE_PCI_HOT_RESET, r);
        free(r);
        char buf[32];
        snprintf(buf, sizeof(buf), "\"count\":%u", n);
        emit(op, address, e, "VFIO_DEVICE_PCI_HOT_RESET", buf);
}

static void op_device_reset(const char *address) {
        Dev *d = need_dev("device-reset", address);
        if (!d)
                return;
        emit("device-reset", address, xioctl(d->fd, HR_VFIO_DEVICE_RESET, NULL), "VFIO_DEVICE_RESET", NULL);
}

static void op_close(const char *address) {
        Dev *d = need_dev("close", address);
        if (!d)
                return;
        close(d->fd);
        d->fd = -1;
        emit("close", address, 0, NULL, NULL);
}

static void op_group_open(const char *arg) {
        char path[64];
        snprintf(path, sizeof(path), "/dev/vfio/%d", atoi(arg));
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                emit("group-open", arg, errno, "open group", NULL);
                return;
        }
        if (n_raw_groups < MAX_GROUPS)
                raw_group_fds[n_raw_groups++] = fd;
        emit("group-open", arg, 0, NULL, NULL);
}

static int op_ctx(const char *arg) {
        char name[32];
        const char *colon = strchr(arg, ':');
        if (!colon || (size_t) (colon - arg) >= sizeof(name))
                return -EINVAL;
        memcpy(name, arg, (size_t) (colon - arg));
        name[colon - arg] = 0;
        bool cdev;
        if (strcmp(colon + 1, "cdev") == 0)
                cdev = true;
        else if (strcmp(colon + 1, "group") == 0)
                cdev = false;
        else
                return -EINVAL;
        for (int i = 0; i < n_ctxs; i++)
                if (!ctxs[i].closed && strcmp(ctxs[i].name, name) == 0) {
                        if (ctxs[i].cdev != cdev)
                                return -EINVAL;
                        cur = &ctxs[i];
                        return 0;
                }
        cur = NULL;
        for (int i = 0; i < n_ctxs && !cur; i++)
                if (ctxs[i].closed)
                        cur = &ctxs[i];
        if (!cur) {
                if (n_ctxs >= MAX_CTX)
                        return -ENOSPC;
                cur = &ctxs[n_ctxs++];
        }
        *cur = (Ctx) { .cdev = cdev, .iommufd = -1, .container = -1 };
        snprintf(cur->name, sizeof(cur->name), "%s", name);
        return 0;
}

static void op_ctx_close(const char *name) {
        Ctx *c = NULL;
        for (int i = 0; i < n_ctxs; i++)
                if (!ctxs[i].closed && strcmp(ctxs[i].name, name) == 0)
                        c = &ctxs[i];
        if (!c) {
                emit("ctx-close", name, ENOENT, "no such context", NULL);
                return;
        }
        for (int i = 0; i < n_devs; i++)
                if (devs[i].ctx == c && devs[i].fd >= 0) {
                        close(devs[i].fd);
                        devs[i].fd = -1;
                }
        for (int i = 0; i < c->n_groups; i++)
                close(c->group_fds[i]);
        c->n_groups = 0;
        if (c->iommufd >= 0)
                close(c->iommufd);
        if (c->container >= 0)
                close(c->container);
        c->iommufd = c->container = -1;
        c->closed = true;
        if (cur == c)
                cur = NULL;
        emit("ctx-close", name, 0, NULL, NULL);
}

/* Runs one operation; returns < 0 on a usage error. */
static int run_op(const char *a, bool interactive) {
        const char *colon = strchr(a, ':');
        const char *arg = colon ? colon + 1 : "";
        size_t len = colon ? (size_t) (colon - a) : strlen(a);
#define IS(s) (len == strlen(s) && strncmp(a, s, len) == 0)
        if (IS("ctx")) {
                if (op_ctx(arg) < 0) {
                        fprintf(stderr, "vfio-probe: bad context '%s' (NAME:cdev or NAME:group)\n", arg);
                        return -EINVAL;
                }
                emit("ctx", arg, 0, NULL, cur->cdev ? "\"model\":\"cdev\"" : "\"model\":\"group\"");
                return 0;
        }
        if (IS("ctx-close")) {
                op_ctx_close(arg);
                return 0;
        }
        if (IS("hold")) {
                emit("hold", "", 0, NULL, NULL);
                if (!interactive) {
                        char buf[64];
                        while (read(STDIN_FILENO, buf, sizeof(buf)) > 0)
                                ;
                }
                return 0;
        }
        if (IS("group-open")) {
                op_group_open(arg);
                return 0;
        }
        if (!cur) {
                fprintf(stderr, "vfio-probe: '%s' before any ctx:NAME:MODEL\n", a);
                return -EINVAL;
        }
        if (IS("open"))
                op_open(arg, true);
        else if (IS("open-unbound"))
                op_open(arg, false);
        else if (IS("info"))
                op_info(arg);
        else if (IS("info-header"))
                op_info_header(arg);
        else if (IS("reset"))
                op_reset(arg, false);
        else if (IS("reset-count0"))
                op_reset(arg, true);
        else if (IS("device-reset"))
                op_device_reset(arg);
        else if (IS("close"))
                op_close(arg);
        else {
                fprintf(stderr, "vfio-probe: unknown operation '%s'\n", a);
                return -EINVAL;
        }
#undef IS
        return 0;
}

int main(int argc, char *argv[]) {
        if (argc < 2 || strcmp(argv[1], "--help") == 0) {
                fprintf(stderr, "Usage: vfio-probe OP...  or  vfio-probe - (operations on stdin, one a line)\n"
                                "(see the comment at the top of vfio-probe.c)\n");
                return argc < 2 ? 2 : 0;
        }
        if (strcmp(argv[1], "-") == 0) {
                /* Interactive: one operation a line, one JSON line back each
                 * (a usage error answers with errno EINVAL and step "usage"). */
                char line[512];
                while (fgets(line, sizeof(line), stdin)) {
                        line[strcspn(line, "\r\n")] = 0;
                        if (!*line)
                                continue;
                        if (run_op(line, true) < 0)
                                emit("usage", line, EINVAL, "usage", NULL);
                }
                return 0;
        }
        for (int i = 1; i < argc; i++)
                if (run_op(argv[i], false) < 0)
                        return 2;
        return 0;
}

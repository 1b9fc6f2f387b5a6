/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <limits.h>

#include "sysfs-pci.h"
#include "util.h"

static bool is_blank(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *skip_blank(const char *p) {
        while (is_blank(*p))
                p++;
        return p;
}

static int hex_digit(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* n hex digits exactly at p. */
static int parse_hex_n(const char *p, size_t n, uint32_t *ret) {
        uint32_t v = 0;

        for (size_t i = 0; i < n; i++) {
                int d = hex_digit(p[i]);
                if (d < 0)
                        return -EINVAL;
                v = v << 4 | (uint32_t) d;
        }
        *ret = v;
        return 0;
}

int sysfs_parse_hex(const char *s, uint32_t max, uint32_t *ret) {
        const char *p = s;
        uint64_t v = 0;
        size_t n = 0;

        if (!s)
                return -EINVAL;
        if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
                p += 2;
        for (; hex_digit(*p) >= 0; p++, n++) {
                if (n >= 8)
                        return -ERANGE;
                v = v << 4 | (uint64_t) hex_digit(*p);
        }
        if (n == 0 || *skip_blank(p) != 0)
                return -EINVAL;
        if (v > max)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}

int sysfs_parse_uint(const char *s, uint32_t max, uint32_t *ret) {
        const char *p = s;
        uint64_t v = 0;

        if (!s || !(*p >= '0' && *p <= '9'))
                return -EINVAL;
        for (; *p >= '0' && *p <= '9'; p++) {
                v = v * 10 + (uint64_t) (*p - '0');
                if (v > UINT32_MAX)
                        return -ERANGE;
        }
        if (*skip_blank(p) != 0)
                return -EINVAL;
        if (v > max)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}

static bool is_method_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

int sysfs_parse_reset_methods(const char *s, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        const char *p;

        if (!s)
                return -EINVAL;

        for (p = skip_blank(s); *p; p = skip_blank(p)) {
                const char *start = p;
                _cleanup_free_ char *w = NULL;

                while (is_method_char(*p))
                        p++;
                if (p == start || (*p && !is_blank(*p)))
                        return -EINVAL;
                w = strndup(start, (size_t) (p - start));
                if (!w)
                        return -ENOMEM;
                if (strv_extend(&l, w) < 0)
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(l);
        return 0;
}

int sysfs_parse_iommu_group_link(const char *target, int *ret) {
        const char *last, *prev_end, *prev;
        uint32_t v;
        size_t len;

        if (!target)
                return -EINVAL;
        len = strlen(target);
        if (len == 0 || target[len - 1] == '/')
                return -EINVAL;

        last = strrchr(target, '/');
        if (!last)
                return -EINVAL;
        prev_end = last;
        prev = prev_end;
        while (prev > target && prev[-1] != '/')
                prev--;
        if ((size_t) (prev_end - prev) != strlen("iommu_groups") || strncmp(prev, "iommu_groups", 12) != 0)
                return -EINVAL;

        last++;
        /* Only digits: no sign, no blanks (a link target has no newline). */
        for (const char *p = last; *p; p++)
                if (!(*p >= '0' && *p <= '9'))
                        return -EINVAL;
        if (sysfs_parse_uint(last, INT_MAX, &v) < 0)
                return -EINVAL;
        *ret = (int) v;
        return 0;
}

int sysfs_parse_bus_address(const char *s, uint16_t *ret_domain, uint8_t *ret_bus, int *ret_device) {
        uint32_t domain, bus, device;
        const char *rest;

        if (!s)
                return -EINVAL;
        /* Always 4 + 2 (+ 2) hex digits: the kernel writes %04x:%02x(:%02x). */
        if (parse_hex_n(s, 4, &domain) < 0 || s[4] != ':' || parse_hex_n(s + 5, 2, &bus) < 0)
                return -EINVAL;
        rest = s + 7;
        if (*rest == ':') {
                if (!ret_device || parse_hex_n(rest + 1, 2, &device) < 0 || device > 0x1f)
                        return -EINVAL;
                rest += 3;
        } else
                device = UINT32_MAX;
        if (*skip_blank(rest) != 0)
                return -EINVAL;

        *ret_domain = (uint16_t) domain;
        *ret_bus = (uint8_t) bus;
        if (ret_device)
                *ret_device = device == UINT32_MAX ? -1 : (int) device;
        return 0;
}

int sysfs_parse_vfio_dev_name(const char *name, unsigned *ret) {
        uint32_t v;

        if (!name || strncmp(name, "vfio", 4) != 0)
                return -EINVAL;
        name += 4;
        /* No blanks, no sign, no leading zeros ("vfio01" is not a name the
         * kernel gives). */
        if (!(*name >= '0' && *name <= '9') || (name[0] == '0' && name[1]))
                return -EINVAL;
        for (const char *p = name; *p; p++)
                if (!(*p >= '0' && *p <= '9'))
                        return -EINVAL;
        if (sysfs_parse_uint(name, INT_MAX, &v) < 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

int sysfs_vfio_dev_parent(const char *syspath, PciAddress *ret, size_t *ret_parent_len) {
        const char *marker, *name, *start;
        unsigned n;
        char buf[PCI_ADDRESS_STRING_MAX];

        if (!syspath)
                return -EINVAL;
        /* The last "/vfio-dev/" in the path, followed by exactly "vfioN". */
        marker = NULL;
        for (const char *p = strstr(syspath, "/vfio-dev/"); p; p = strstr(p + 1, "/vfio-dev/"))
                marker = p;
        if (!marker || marker == syspath)
                return -EINVAL;
        name = marker + strlen("/vfio-dev/");
        if (strchr(name, '/') || sysfs_parse_vfio_dev_name(name, &n) < 0)
                return -EINVAL;

        start = marker;
        while (start > syspath && start[-1] != '/')
                start--;
        if ((size_t) (marker - start) != PCI_ADDRESS_STRING_MAX - 1)
                return -EINVAL;
        memcpy(buf, start, PCI_ADDRESS_STRING_MAX - 1);
        buf[PCI_ADDRESS_STRING_MAX - 1] = 0;
        /* Only the long form names a device directory. */
        if (buf[4] != ':' || pci_address_parse(buf, ret) < 0)
                return -EINVAL;
        if (ret_parent_len)
                *ret_parent_len = (size_t) (marker - syspath);
        return 0;
}

int sysfs_parse_port_service(const char *name, const char *port) {
        size_t n, digits;
        uint32_t v;
        const char *p;

        if (!name || !port)
                return -EINVAL;
        n = strlen(port);
        if (n == 0 || strncmp(name, port, n) != 0 || strncmp(name + n, ":pcie", 5) != 0)
                return -EINVAL;
        p = name + n + 5;
        digits = strlen(p);
        if ((digits != 2 && digits != 3) || parse_hex_n(p, digits, &v) < 0)
                return -EINVAL;

        /* "%03x" of (type - 4) << 8 | service; before that "%02x" of
         * (type - 4) << 4 | service. */
        v &= digits == 3 ? 0xffu : 0x0fu;
        /* Exactly one service per device. */
        if (v == 0 || (v & (v - 1)) != 0)
                return -EINVAL;
        return (int) v;
}

bool pci_class_is_bridge(uint32_t class_code) {
        uint32_t base_sub = class_code >> 8;

        return base_sub == 0x0604 || base_sub == 0x0609 || base_sub == 0x0607;
}

bool sysfs_slot_can_reset(const SysfsSlotFacts *f) {
        if (f->module)
                return streq(f->module, "pciehp");
        return f->bridge_has_pciehp;
}

bool proc_devices_has_char(const char *text, const char *name) {
        bool in_char = false;
        size_t name_len;

        if (!text || !name || !*name)
                return false;
        name_len = strlen(name);

        for (const char *line = text; *line;) {
                const char *end = strchr(line, '\n');
                size_t len = end ? (size_t) (end - line) : strlen(line);

                if (len == 18 && strncmp(line, "Character devices:", 18) == 0)
                        in_char = true;
                else if (len == 14 && strncmp(line, "Block devices:", 14) == 0)
                        in_char = false;
                else if (in_char) {
                        /* "%3d %s": blanks, a major number, one blank, the name. */
                        const char *p = line, *e = line + len;
                        while (p < e && *p == ' ')
                                p++;
                        const char *digits = p;
                        while (p < e && *p >= '0' && *p <= '9')
                                p++;
                        if (p > digits && p < e && *p == ' ') {
                                p++;
                                if ((size_t) (e - p) == name_len && strncmp(p, name, name_len) == 0)
                                        return true;
                        }
                }

                if (!end)
                        break;
                line = end + 1;
        }
        return false;
}

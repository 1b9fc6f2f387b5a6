/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The sysfs attribute parsers of the Linux backend (sysfs-pci.h). The
 * first byte picks the parser, the rest is the attribute's contents (or a
 * path, a link target, a device name). Results are checked against what
 * the header promises, so a parser that accepts out-of-range values fails
 * as surely as one that reads out of bounds. */
#include <errno.h>
#include <limits.h>

#include "fuzz-util.h"
#include "sysfs-pci.h"
#include "util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

static void check(bool ok) {
        if (!ok)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = NULL;
        uint32_t u = 0;
        int r;

        if (size < 1)
                return 0;
        s = fuzz_strndup(data + 1, size - 1);
        if (!s)
                return 0;

        switch (data[0] % 9) {
        case 0:
                r = sysfs_parse_hex(s, 0xffff, &u);
                check(r == 0 ? u <= 0xffff : r == -EINVAL || r == -ERANGE);
                break;
        case 1:
                r = sysfs_parse_uint(s, 255, &u);
                check(r == 0 ? u <= 255 : r == -EINVAL || r == -ERANGE);
                break;
        case 2: {
                char **methods = NULL;
                r = sysfs_parse_reset_methods(s, &methods);
                check(r == 0 || r == -EINVAL || r == -ENOMEM);
                for (char **m = methods; r == 0 && m && *m; m++)
                        check(**m != 0 && strspn(*m, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") ==
                                                  strlen(*m));
                strv_free(methods);
                break;
        }
        case 3: {
                int g = -1;
                r = sysfs_parse_iommu_group_link(s, &g);
                check(r == 0 ? g >= 0 : r == -EINVAL);
                break;
        }
        case 4: {
                uint16_t domain;
                uint8_t bus;
                int device = 0;
                r = sysfs_parse_bus_address(s, &domain, &bus, &device);
                check(r == 0 ? device >= -1 && device <= 0x1f : r == -EINVAL);
                r = sysfs_parse_bus_address(s, &domain, &bus, NULL);
                check(r == 0 || r == -EINVAL);
                break;
        }
        case 5: {
                unsigned n;
                r = sysfs_parse_vfio_dev_name(s, &n);
                check(r == 0 || r == -EINVAL);
                break;
        }
        case 6: {
                PciAddress a;
                size_t len = SIZE_MAX;
                r = sysfs_vfio_dev_parent(s, &a, &len);
                check(r == 0 ? len < strlen(s) && a.slot <= 0x1f && a.function <= 7 : r == -EINVAL);
                break;
        }
        case 7: {
                /* "<port>\n<name>": the port a service device belongs to. */
                char *nl = strchr(s, '\n');
                if (!nl)
                        break;
                *nl = 0;
                r = sysfs_parse_port_service(nl + 1, s);
                check(r == -EINVAL || (r > 0 && (r & (r - 1)) == 0));
                break;
        }
        case 8:
                (void) proc_devices_has_char(s, "vfio-dev");
                break;
        }
        return 0;
}

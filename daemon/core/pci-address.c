/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "pci-address.h"

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Reads exactly n hex digits. */
static int read_hex(const char **p, unsigned n, unsigned *ret) {
        unsigned v = 0;
        for (unsigned i = 0; i < n; i++) {
                int d = hexval((*p)[i]);
                if (d < 0)
                        return -EINVAL;
                v = v << 4 | (unsigned) d;
        }
        *p += n;
        *ret = v;
        return 0;
}

int pci_address_parse(const char *s, PciAddress *ret) {
        unsigned domain = 0, bus, slot, function;
        const char *p = s;

        if (!s)
                return -EINVAL;

        /* The long form has two colons. */
        const char *c1 = strchr(s, ':');
        if (c1 && strchr(c1 + 1, ':')) {
                if (read_hex(&p, 4, &domain) < 0 || *p++ != ':')
                        return -EINVAL;
        }
        if (read_hex(&p, 2, &bus) < 0 || *p++ != ':')
                return -EINVAL;
        if (read_hex(&p, 2, &slot) < 0 || *p++ != '.')
                return -EINVAL;
        if (read_hex(&p, 1, &function) < 0 || *p != 0)
                return -EINVAL;
        if (slot > 0x1f || function > 7)
                return -EINVAL;

        *ret = (PciAddress) {
                .domain = (uint16_t) domain,
                .bus = (uint8_t) bus,
                .slot = (uint8_t) slot,
                .function = (uint8_t) function,
        };
        return 0;
}

char *pci_hex(char *p, unsigned value, unsigned digits) {
        static const char hex[] = "0123456789abcdef";
        for (unsigned i = digits; i > 0; i--) {
                p[i - 1] = hex[value & 0xf];
                value >>= 4;
        }
        return p + digits;
}

/* By hand: snprintf() was most of the cost of the calls that name devices. */
char *pci_address_format(const PciAddress *a, char buf[static PCI_ADDRESS_STRING_MAX]) {
        char *p = buf;
        p = pci_hex(p, a->domain, 4);
        *p++ = ':';
        p = pci_hex(p, a->bus, 2);
        *p++ = ':';
        p = pci_hex(p, a->slot & 0x1fu, 2);
        *p++ = '.';
        p = pci_hex(p, a->function & 7u, 1);
        *p = 0;
        return buf;
}

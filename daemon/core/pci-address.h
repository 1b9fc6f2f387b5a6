/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* PCI addresses (segment:bus:device.function) as the kernel writes them. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct PciAddress {
        uint16_t domain;
        uint8_t bus;
        uint8_t slot;     /* device number, 0..31 */
        uint8_t function; /* 0..7 */
} PciAddress;

/* "0000:01:00.0" plus the terminating NUL. */
#define PCI_ADDRESS_STRING_MAX 13

/* Accepts "SSSS:BB:DD.F" and the short form "BB:DD.F" (domain 0), hex digits
 * in either case. Returns -EINVAL for anything else, including trailing
 * garbage and out-of-range device (> 0x1f) or function (> 7) numbers. */
int pci_address_parse(const char *s, PciAddress *ret);

/* Writes value as exactly digits lower-case hex digits (no NUL); returns
 * the end. */
char *pci_hex(char *p, unsigned value, unsigned digits);

/* Canonical lower-case long form. Returns buf. */
char *pci_address_format(const PciAddress *a, char buf[static PCI_ADDRESS_STRING_MAX]);

/* A total order: domain, bus, device, function. */
static inline uint32_t pci_address_key(const PciAddress *a) {
        return (uint32_t) a->domain << 16 | (uint32_t) a->bus << 8 | (uint32_t) a->slot << 3 | a->function;
}
static inline int pci_address_compare(const PciAddress *a, const PciAddress *b) {
        uint32_t x = pci_address_key(a), y = pci_address_key(b);
        return x < y ? -1 : x > y;
}
static inline bool pci_address_equal(const PciAddress *a, const PciAddress *b) {
        return pci_address_key(a) == pci_address_key(b);
}

/* The expected form, for error messages. */
#define PCI_ADDRESS_FORM_HINT "expected a PCI address of the form 0000:01:00.0 (domain:bus:device.function, hex) or 01:00.0"

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* pci_address_parse(): every address a client sends over the bus goes
 * through it. What it accepts must format back to a canonical address that
 * parses to the same value. */
#include <stdio.h>

#include "fuzz-util.h"
#include "pci-address.h"
#include "util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = fuzz_strndup(data, size);
        char buf[PCI_ADDRESS_STRING_MAX];
        PciAddress a, b;

        if (!s || pci_address_parse(s, &a) < 0)
                return 0;
        if (a.slot > 0x1f || a.function > 7)
                abort();
        pci_address_format(&a, buf);
        if (strlen(buf) != PCI_ADDRESS_STRING_MAX - 1 || pci_address_parse(buf, &b) < 0 || !pci_address_equal(&a, &b))
                abort();
        return 0;
}

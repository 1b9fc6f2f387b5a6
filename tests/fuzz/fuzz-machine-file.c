/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The emulated kernel's machine file (machine_load_direct(): the reading,
 * the NUL check and the strict JSON parser). A machine that parses must
 * write out (machine_to_json()) to a file that parses to the same machine,
 * as --dump-machine relies on; an error must come with a message. */
#include <errno.h>

#include "fuzz-util.h"
#include "machine-file.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(machine_freep) Machine *m = NULL, *again = NULL;
        _cleanup_free_ char *error = NULL, *json = NULL, *json_again = NULL;
        _cleanup_close_ int fd = -1;
        char path[64];
        int r;

        fd = fuzz_memfd(data, size, path);
        if (fd < 0)
                return 0;
        r = machine_load_direct(path, &m, &error);
        if (!fuzz_loaded(r, error))
                return 0;

        for (size_t i = 0; i < m->n_devices; i++) {
                if (machine_find(m, &m->devices[i].address) != &m->devices[i])
                        abort();
                if (i > 0 && pci_address_compare(&m->devices[i - 1].address, &m->devices[i].address) >= 0)
                        abort(); /* sorted, no duplicates */
        }

        json = machine_to_json(m);
        if (!json)
                return 0;
        free(error);
        error = NULL;
        r = machine_parse(json, "dump", &again, &error);
        if (r == -ENOMEM)
                return 0;
        if (r < 0) {
                fprintf(stderr, "machine_to_json() wrote a file that does not parse: %s\n%s\n", error, json);
                abort();
        }
        json_again = machine_to_json(again);
        if (json_again && strcmp(json, json_again) != 0) {
                fprintf(stderr, "machine_to_json() is not stable:\n%s\n---\n%s\n", json, json_again);
                abort();
        }
        return 0;
}

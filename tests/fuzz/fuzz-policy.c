/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The policy file (policy_load(): inih with the daemon's line reader and
 * handler) and the device matching it sets up, over a few devices. An
 * error must come with a message; a loaded policy must answer for every
 * device, with a reason when it refuses. */
#include <errno.h>

#include "fuzz-util.h"
#include "policy.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

static const PciDeviceInfo devices[] = {
        { .address = { 0, 0x01, 0x00, 0 }, .vendor_id = 0x10de, .device_id = 0x2204, .class_code = 0x030000 },
        { .address = { 0, 0x01, 0x00, 1 }, .vendor_id = 0x10de, .device_id = 0x1aef, .class_code = 0x040300 },
        { .address = { 0x10, 0xab, 0x1f, 7 }, .vendor_id = 0x8086, .device_id = 0x10d3, .class_code = 0x020000 },
        { .address = { 0xffff, 0xff, 0x1f, 7 }, .vendor_id = 0xffff, .device_id = 0xffff, .class_code = 0xffffff },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(policy_freep) Policy *p = NULL;
        _cleanup_free_ char *error = NULL;
        _cleanup_close_ int fd = -1;
        char path[64];
        int r;

        fd = fuzz_memfd(data, size, path);
        if (fd < 0)
                return 0;
        r = policy_load(path, false, &p, &error);
        if (!fuzz_loaded(r, error))
                return 0;

        for (size_t i = 0; i < ELEMENTSOF(devices); i++) {
                _cleanup_free_ char *reason = NULL;
                r = policy_device_allowed(p, &devices[i], &reason);
                if (r < 0 && r != -ENOMEM)
                        abort();
                if (r == 0 && !reason)
                        abort();
        }
        for (PolicyLimit l = 0; l < _POLICY_LIMIT_MAX; l++) {
                _cleanup_free_ char *d = policy_describe_limit(p, l);
                (void) d;
        }
        (void) policy_user_reset_burst(p);
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-hwdb.h>

#include "hotresetctl.h"
#include "hwdb.h"

static sd_hwdb *hwdb = NULL;
static int hwdb_state = 0; /* 0 not tried, 1 open, -1 none */

static sd_hwdb *hwdb_get(void) {
        if (!arg_names)
                return NULL;
        if (hwdb_state == 0)
                /* sd_hwdb_new looks in /etc/systemd/hwdb, /etc/udev and
                 * /usr/lib/udev for hwdb.bin; none there is not an error. */
                hwdb_state = sd_hwdb_new(&hwdb) >= 0 ? 1 : -1;
        return hwdb_state > 0 ? hwdb : NULL;
}

bool hwdb_available(void) {
        return hwdb_get() != NULL;
}

static const char *lookup(uint16_t vendor, uint16_t device, bool with_device, const char *key) {
        char modalias[64];
        const char *value = NULL;
        sd_hwdb *h = hwdb_get();

        if (!h)
                return NULL;
        /* The kernel's modalias is pci:vVVVVVVVVdDDDDDDDDsv…; the pci
         * entries of the hwdb match its vendor and device prefix. */
        if (with_device)
                snprintf(modalias, sizeof modalias, "pci:v%08Xd%08X", vendor, device);
        else
                snprintf(modalias, sizeof modalias, "pci:v%08X", vendor);
        if (sd_hwdb_get(h, modalias, key, &value) < 0)
                return NULL;
        return value && *value ? value : NULL;
}

const char *hwdb_vendor_name(uint16_t vendor) {
        return lookup(vendor, 0, false, "ID_VENDOR_FROM_DATABASE");
}

const char *hwdb_model_name(uint16_t vendor, uint16_t device) {
        return lookup(vendor, device, true, "ID_MODEL_FROM_DATABASE");
}

char *hwdb_device_name(uint16_t vendor, uint16_t device) {
        const char *v = hwdb_vendor_name(vendor), *m = hwdb_model_name(vendor, device);
        char *s = NULL;

        if (!v && !m)
                return NULL;
        if (asprintf(&s, "%s%s%s", v ?: "", v && m ? " " : "", m ?: "") < 0)
                return NULL;
        return s;
}

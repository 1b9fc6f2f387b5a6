/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Vendor and device names from the udev hardware database (sd_hwdb):
 * ID_VENDOR_FROM_DATABASE and ID_MODEL_FROM_DATABASE of the PCI modalias.
 * Quiet: without a hwdb (or with --no-names) there are no names, and the
 * numbers are shown alone. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Whether names can be looked up (a hwdb exists and --no-names is not
 * given). */
bool hwdb_available(void);

/* The names of vendor:device, NULL where the hwdb has none. The strings
 * live as long as the program. */
const char *hwdb_vendor_name(uint16_t vendor);
const char *hwdb_model_name(uint16_t vendor, uint16_t device);

/* "Vendor Model", or whichever is known, or NULL. Allocated. */
char *hwdb_device_name(uint16_t vendor, uint16_t device);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The emulated kernel's machine file: a JSON description of the PCI
 * functions of a machine (see DESIGN.md, "The emulated kernel"). Parsing is
 * strict (unknown keys are errors) so that a typo does not silently give a
 * different machine, and every error names the file, the line and column,
 * the device and the key. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "pci-device.h"

typedef struct Machine {
        bool cdev;             /* iommufd/cdev uAPI (true) or legacy groups only */
        char *description;     /* optional free text, kept for machine_to_json() */
        uint32_t reset_delay_ms; /* emulation only: how long a hot reset takes */
        PciDeviceInfo *devices; /* sorted by address; cdev_path is NULL after parsing */
        size_t n_devices;
} Machine;

/* Parses text (NUL-terminated). filename is only used in error messages.
 * Returns -EINVAL and, if ret_error is not NULL, a message such as
 * "machine.json:12:7: devices[3] (0000:01:00.1): key "iommu_group": ..."
 * on bad input; -ENOMEM (without a message) when out of memory. */
int machine_parse(const char *text, const char *filename, Machine **ret, char **ret_error);

/* Reads the file and parses it. I/O errors return -errno with a message
 * naming the file. */
int machine_load(const char *path, Machine **ret, char **ret_error);
/* The same, on the calling thread (machine_load() parses on a thread of its
 * own, to keep the parse's allocations apart from the daemon's state; a
 * caller that does that itself calls this). */
int machine_load_direct(const char *path, Machine **ret, char **ret_error);

Machine *machine_free(Machine *m);
static inline void machine_freep(Machine **m) {
        machine_free(*m);
}

/* Pretty JSON in the machine file format (one device per line), which
 * machine_parse() reads back to an equal machine. cdev_path is not part of
 * the format and is not written. NULL when out of memory. */
char *machine_to_json(const Machine *m);

/* Binary search by address; NULL when there is no such device. */
const PciDeviceInfo *machine_find(const Machine *m, const PciAddress *a);

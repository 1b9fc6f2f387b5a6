/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.hotresetd.Broker1.Device: one object per PCI function. */
#pragma once

#include "manager.h"

#define DEVICE_INTERFACE "org.hotresetd.Broker1.Device"
#define DEVICE_PATH_PREFIX "/org/hotresetd/Broker1/device"
#define DEVICE_PATH_MAX (sizeof(DEVICE_PATH_PREFIX "/pci_0000_00_00_0"))

char *device_object_path(const PciAddress *a, char buf[static DEVICE_PATH_MAX]);
int device_register_bus(Manager *m);

/* Announces a new device with its settled state, or signals what changed
 * since it was last published; silent: only takes the snapshot (the state
 * before anyone could listen). */
int device_object_publish(Manager *m, PciDevice *d, bool silent);
/* Announces d's removal (if it was announced) and frees its bus state. */
void device_object_removed(Manager *m, PciDevice *d);
/* Frees every device's bus state (shutdown; nothing is announced). */
void device_objects_free(Manager *m);

/* Why a device blocks a hot reset, in words a person can act on. Returns a
 * static string or *allocated (free it); NULL on allocation failure. */
const char *device_block_reason_text(Manager *m, const PciDevice *d, BlockReason reason, const void *holder,
                                     char **allocated);

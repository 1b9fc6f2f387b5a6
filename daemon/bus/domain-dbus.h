/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.hotresetd.Broker1.ResetDomain: one object per reset domain (the set
 * of functions one hot reset hits), so a client learns a 256-function
 * scope once, not once per function. */
#pragma once

#include "manager.h"

#define DOMAIN_INTERFACE "org.hotresetd.Broker1.ResetDomain"
#define DOMAIN_PATH_PREFIX "/org/hotresetd/Broker1/domain"
#define DOMAIN_PATH_MAX (sizeof(DOMAIN_PATH_PREFIX "/pci_0000_00_00"))

/* .../domain/pci_0000_01 (a bus reset of bus 01 of segment 0000) or
 * .../domain/pci_0000_05_03 (a reset of slot 03 of bus 05). */
char *domain_object_path(const ResetDomain *dom, char buf[static DOMAIN_PATH_MAX]);
int domain_register_bus(Manager *m);

/* Announces a new domain, or signals what changed; silent: snapshot only. */
int domain_object_publish(Manager *m, ResetDomain *dom, bool silent);
/* Announces dom's removal (if it was announced) and frees its bus state. */
void domain_object_removed(Manager *m, ResetDomain *dom);
void domain_objects_free(Manager *m);

/* The members' addresses as "as". */
int domain_append_members(sd_bus_message *reply, const ResetDomain *dom);

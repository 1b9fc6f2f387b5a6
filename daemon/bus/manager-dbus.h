/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon on the bus: org.hotresetd.Broker1.Manager at the root object,
 * the ObjectManager, the device, reset domain and context objects below it,
 * and the publish pass. */
#pragma once

#include "manager.h"

#define BROKER_BUS_NAME "org.hotresetd.Broker1"
#define BROKER_PATH "/org/hotresetd/Broker1"
#define MANAGER_INTERFACE "org.hotresetd.Broker1.Manager"

/* Publishes the state the backend delivered so far (silently: it is the
 * initial state), registers the objects and takes the bus name. The bus
 * goes with manager_free(), after the leases were released and announced. */
int manager_connect_bus(Manager *m);

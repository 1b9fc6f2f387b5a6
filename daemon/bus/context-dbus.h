/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.hotresetd.Broker1.Context: one object per lease. */
#pragma once

#include "manager.h"

int context_register_bus(Manager *m);

/* Pre-flight with the kernel's own answer (GetHotResetInfo through c's
 * file), refusing with an error that names the blocking device, then queue
 * the reset; msg is answered when it is done. With release_after, c is a
 * private context released after the reset. Shared by Context.HotReset and
 * Manager.HotReset. */
int context_submit_hot_reset(Context *c, sd_bus_message *msg, ContextDevice *d, bool release_after,
                             sd_bus_error *error);

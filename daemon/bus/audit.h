/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The audit log of the bus methods that change state: every call's
 * outcome, once, refusals included, as a structured journal entry naming
 * the method, the device, the context, the caller (bus name, uid and pid as
 * the bus vouches for them; command and unit from /proc) and the result.
 * A call that waits for polkit is logged when it comes back with the
 * answer; a hot reset is logged by its job when the kernel is done.
 * Refusals of one user beyond LoggedRefusalsPerUserPerMinute= are counted
 * instead (refusal-log.h). */
#pragma once

#include <systemd/sd-bus.h>

#include "manager.h"

int audit_call(sd_bus_message *msg, Manager *m, Context *c, sd_bus_message_handler_t handler, void *userdata,
               sd_bus_error *error);

/* A handler of the Manager's vtable (userdata: the Manager), audited. */
#define AUDITED_MANAGER_METHOD(handler)                                                            \
        static int handler##_audited(sd_bus_message *msg, void *userdata, sd_bus_error *error) { \
                return audit_call(msg, userdata, NULL, handler, userdata, error);                  \
        }
/* A handler of the Context vtable (userdata: the Context), audited. */
#define AUDITED_CONTEXT_METHOD(handler)                                                            \
        static int handler##_audited(sd_bus_message *msg, void *userdata, sd_bus_error *error) { \
                Context *_c = userdata;                                                            \
                return audit_call(msg, _c->manager, _c, handler, userdata, error);                 \
        }

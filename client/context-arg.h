/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The context a device verb acts through: --context=N, or the context
 * that holds the device. */
#pragma once

#include <systemd/sd-bus.h>

/* context_arg (from --context, or NULL) parsed; when NULL, the Context
 * property of the device. Prints why on failure: -EINVAL a usage error
 * (exit 2), other negative errnos a failure (exit 1). */
int resolve_context(sd_bus *bus, const char *context_arg, const char *address, const char *device_path,
                    char **ret_path);

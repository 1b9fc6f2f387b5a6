/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>

#include "bus.h"
#include "context-arg.h"
#include "hotresetctl.h"

int resolve_context(sd_bus *bus, const char *context_arg, const char *address, const char *device_path,
                    char **ret_path) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *holder = NULL;
        int r;

        if (context_arg)
                return parse_context_arg(context_arg, ret_path);

        r = sd_bus_get_property_string(bus, BUS_NAME, device_path, DEVICE_IFACE, "Context", &error, &holder);
        if (r < 0)
                return bus_log_error(&error, r, "find the context holding %s", address);
        if (streq(holder, "/") || !*holder) {
                fprintf(stderr, "%s is not held by any context: acquire it first (`%s acquire %s`) or name one "
                        "with --context.\n", address, program_invocation_short_name, address);
                return -ENOENT;
        }
        *ret_path = TAKE_PTR(holder);
        return 0;
}

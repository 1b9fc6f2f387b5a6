/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>

#include "bus.h"
#include "context-arg.h"
#include "hotresetctl.h"

int resolve_context(sd_bus *bus, const char *context_arg, const char *address, const char *device_path,
                    char **ret_path) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *holder;
        int r;

        if (context_arg)
                return parse_context_arg(context_arg, ret_path);

        r = sd_bus_get_property(bus, BUS_NAME, device_path, DEVICE_IFACE, "Context", &error, &reply, "o");
        if (r < 0)
                return bus_log_error(&error, r, "find the context holding %s", address);
        r = sd_bus_message_read(reply, "o", &holder); /* positioned in the variant */
        if (r < 0)
                return bus_log_error(NULL, r, "parse the Context of %s", address);
        if (streq(holder, "/") || !*holder) {
                fprintf(stderr, "%s is not held by any context: acquire it first (`%s acquire %s`) or name one "
                        "with --context.\n", address, program_invocation_short_name, address);
                return -ENOENT;
        }
        *ret_path = strdup(holder);
        return *ret_path ? 0 : -ENOMEM;
}

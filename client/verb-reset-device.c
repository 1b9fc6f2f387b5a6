/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl reset-device [--context=N] ADDRESS: a function-level reset of
 * one device through the context holding it (Context.ResetDevice,
 * VFIO_DEVICE_RESET): nothing else on the slot or bus is touched. */
#include <stdio.h>

#include "bus.h"
#include "context-arg.h"
#include "hotresetctl.h"
#include "output.h"

static const char *arg_context = NULL;

static const struct option options[] = {
        { "context", required_argument, NULL, ARG_CONTEXT },
        {},
};

static int parse_option(int c, const char *arg) {
        if (c == ARG_CONTEXT) {
                arg_context = arg;
                return 0;
        }
        return usage_error("unhandled option");
}

static int run(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_json_ json_object *out = NULL;
        _cleanup_free_ char *path = NULL, *context = NULL, *check = NULL;
        char address[PCI_ADDRESS_STRING_MAX];
        int r;

        if (parse_address_arg(argv[0], address) < 0)
                return EXIT_USAGE;
        if (arg_context && parse_context_arg(arg_context, &check) < 0)
                return EXIT_USAGE;
        if (bus_open(&bus) < 0 || bus_get_device_path(bus, address, &path) < 0 ||
            resolve_context(bus, arg_context, address, path, &context) < 0)
                return EXIT_ERROR;

        r = sd_bus_call_method(bus, BUS_NAME, context, CONTEXT_IFACE, "ResetDevice", &error, NULL, "s", address);
        if (r < 0) {
                bus_log_error(&error, r, "reset %s", address);
                return bus_error_is_refusal(&error) ? EXIT_REFUSED : EXIT_ERROR;
        }

        if (arg_json) {
                _cleanup_json_ json_object *manager = NULL;
                if (bus_get_manager(bus, &manager) < 0)
                        return EXIT_ERROR;
                out = json_object_new_object();
                if (!out || json_add(out, "address", json_object_new_string(address)) < 0 ||
                    json_add(out, "context", json_object_new_string(context)) < 0 ||
                    json_add(out, "emulated", json_object_new_boolean(json_get_bool(manager, "Emulated"))) < 0) {
                        fputs("Out of memory.\n", stderr);
                        return EXIT_ERROR;
                }
                return json_print(out, false) < 0 ? EXIT_ERROR : EXIT_OK;
        }
        if (arg_legend)
                printf("Function-level reset of %s through %s done.\n", address, context_short_name(context));
        print_emulated_note(bus);
        return EXIT_OK;
}

const Verb verb_reset_device = {
        .name = "reset-device",
        .synopsis = "[--context=CONTEXT] ADDRESS",
        .summary = "Reset one function (function-level reset) through the context holding it",
        .help = "VFIO_DEVICE_RESET of the device alone: FLR, PM or whatever reset method the\n"
                "kernel has for it; nothing else on its slot or bus is reset. Without\n"
                "--context, the context holding the device is used. Exits with 3 when the\n"
                "daemon refuses (no function reset: NoResetMechanism).\n\n"
                "  --context=CONTEXT   Reset through this context (N, context/N or its path)\n\n"
                "--json: {address, context, emulated}.\n",
        .min_args = 1,
        .max_args = 1,
        .options = options,
        .parse_option = parse_option,
        .run = run,
        .interactive = true,
};

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl detach [--context=N] ADDRESS...: a context lets go of
 * devices (Context.DetachDevice); the context stays. */
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
        _cleanup_json_ json_object *out = NULL;
        _cleanup_free_ char *check = NULL;
        int r;

        for (int i = 0; i < argc; i++) {
                char address[PCI_ADDRESS_STRING_MAX];
                if (parse_address_arg(argv[i], address) < 0)
                        return EXIT_USAGE;
        }
        if (arg_context && parse_context_arg(arg_context, &check) < 0)
                return EXIT_USAGE;
        if (bus_open(&bus) < 0)
                return EXIT_ERROR;
        out = json_object_new_array();
        if (!out)
                return EXIT_ERROR;

        for (int i = 0; i < argc; i++) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                _cleanup_free_ char *path = NULL, *context = NULL;
                char address[PCI_ADDRESS_STRING_MAX];

                (void) parse_address_arg(argv[i], address);
                if (bus_get_device_path(bus, address, &path) < 0)
                        return EXIT_ERROR;
                r = resolve_context(bus, arg_context, address, path, &context);
                if (r < 0)
                        return EXIT_ERROR;
                r = sd_bus_call_method(bus, BUS_NAME, context, CONTEXT_IFACE, "DetachDevice", &error, NULL, "s",
                                       address);
                if (r < 0) {
                        bus_log_error(&error, r, "detach %s from %s", address, context_short_name(context));
                        return EXIT_ERROR;
                }
                if (!arg_json && arg_legend)
                        printf("Detached %s from %s.\n", address, context_short_name(context));
                json_object *o = json_object_new_object();
                if (!o || json_object_array_add(out, o) < 0 ||
                    json_add(o, "address", json_object_new_string(address)) < 0 ||
                    json_add(o, "context", json_object_new_string(context)) < 0) {
                        json_object_put(o);
                        return EXIT_ERROR;
                }
        }
        if (arg_json) {
                _cleanup_json_ json_object *result = json_object_new_object();
                if (!result || json_add(result, "detached", json_object_get(out)) < 0 ||
                    json_add(result, "emulated", json_object_new_boolean(bus_is_emulated(bus))) < 0)
                        return EXIT_ERROR;
                return json_print(result, false) < 0 ? EXIT_ERROR : EXIT_OK;
        }
        print_emulated_note(bus);
        return EXIT_OK;
}

const Verb verb_detach = {
        .name = "detach",
        .synopsis = "[--context=CONTEXT] ADDRESS...",
        .summary = "Detach devices from their context (the context stays)",
        .help = "The daemon closes its file of each device; the context keeps the others.\n"
                "Without --context, each device is detached from the context holding it.\n\n"
                "  --context=CONTEXT   Detach from this context (N, context/N or its path)\n\n"
                "Prints one line per device (none with --no-legend).\n"
                "--json: {detached: [{address, context}], emulated}.\n",
        .min_args = 1,
        .max_args = UINT32_MAX,
        .options = options,
        .parse_option = parse_option,
        .run = run,
        .interactive = true,
};

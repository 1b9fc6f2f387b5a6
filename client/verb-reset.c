/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl reset ADDRESS [--context=N]: a hot reset of the device's slot
 * or bus, by the daemon on its own (Manager.HotReset: nobody may hold the
 * scope) or through a context holding it (Context.HotReset). */
#include <errno.h>
#include <stdio.h>

#include "bus.h"
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

static int hot_reset(sd_bus *bus, const char *context, const char *address, sd_bus_error *error,
                     sd_bus_message **reply) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (context)
                r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, context, CONTEXT_IFACE, "HotReset");
        else
                r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, ROOT_PATH, MANAGER_IFACE, "HotReset");
        if (r < 0)
                return r;
        r = context ? sd_bus_message_append(m, "s", address) : sd_bus_message_append(m, "sa{sv}", address, 0);
        if (r < 0)
                return r;
        /* Resets queue behind overlapping ones and retry EBUSY: be patient. */
        return sd_bus_call(bus, m, RESET_CALL_TIMEOUT_USEC, error, reply);
}

static int print_affected(sd_bus *bus, const char *address, const char *context, sd_bus_message *reply) {
        _cleanup_strv_free_ char **affected = NULL;
        _cleanup_json_ json_object *out = NULL, *list = NULL;
        int r;

        r = sd_bus_message_read_strv(reply, &affected);
        if (r < 0)
                return bus_log_error(NULL, r, "parse the reply of HotReset");

        size_t n = strv_length(affected);
        if (!arg_json) {
                if (arg_legend)
                        printf("Hot reset of %s done; %zu device%s affected:\n", address, n, n == 1 ? "" : "s");
                for (size_t i = 0; i < n; i++)
                        printf("%s\n", affected[i]);
                return fflush(stdout) == 0 ? 0 : -errno;
        }

        out = json_object_new_object();
        list = json_object_new_array();
        for (size_t i = 0; list && i < n; i++)
                if (json_object_array_add(list, json_object_new_string(affected[i])) < 0)
                        return -ENOMEM;
        if (!out || !list || json_add(out, "address", json_object_new_string(address)) < 0 ||
            json_add(out, "context", json_path_or_null(context)) < 0 ||
            json_add(out, "affected", json_object_get(list)) < 0 ||
            json_add(out, "emulated", json_object_new_boolean(bus_is_emulated(bus))) < 0)
                return -ENOMEM;
        return json_print(out, false);
}

static int run(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *context = NULL;
        char address[PCI_ADDRESS_STRING_MAX];
        int r;

        if (parse_address_arg(argv[0], address) < 0)
                return EXIT_USAGE;
        if (arg_context && parse_context_arg(arg_context, &context) < 0)
                return EXIT_USAGE;
        if (bus_open(&bus) < 0)
                return EXIT_ERROR;

        r = hot_reset(bus, context, address, &error, &reply);
        if (r < 0) {
                bus_log_error(&error, r, "reset %s", address);
                return bus_error_is_refusal(&error) ? EXIT_REFUSED : EXIT_ERROR;
        }
        if (print_affected(bus, address, context, reply) < 0)
                return EXIT_ERROR;
        print_emulated_note(bus);
        return EXIT_OK;
}

const Verb verb_reset = {
        .name = "reset",
        .synopsis = "[--context=CONTEXT] ADDRESS",
        .summary = "Hot reset a device's slot or bus, and every device on it",
        .help = "Without --context the daemon takes the whole reset scope into a private\n"
                "context, resets and lets go: every affected device must be bound to a vfio\n"
                "driver and held by nobody. With --context=N the reset goes through that\n"
                "context, which must hold (or own the IOMMU groups of) the whole scope.\n"
                "Prints the affected devices. Exits with 3 when the daemon refuses the reset\n"
                "(its message says which device blocks it and why).\n\n"
                "  --context=CONTEXT   Reset through this context (N, context/N or its path)\n\n"
                "On the emulated kernel a last line says so.\n"
                "--json: {address, context, affected, emulated}.\n",
        .min_args = 1,
        .max_args = 1,
        .options = options,
        .parse_option = parse_option,
        .run = run,
        .interactive = true,
};

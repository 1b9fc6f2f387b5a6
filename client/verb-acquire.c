/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl acquire ADDRESS...: create a context and attach devices.
 *
 * A context that is not persistent dies with the connection that created
 * it, that is when hotresetctl exits; so from a shell the useful default is
 * a persistent context (released with `hotresetctl release`). --transient
 * makes an ordinary lease instead and holds it until interrupted. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "bus.h"
#include "hotresetctl.h"
#include "output.h"

static bool arg_persistent = true;
static bool arg_bind = true;
static const char *arg_description = NULL;

static const struct option options[] = {
        { "persistent", no_argument, NULL, ARG_PERSISTENT },
        { "transient", no_argument, NULL, ARG_TRANSIENT },
        { "description", required_argument, NULL, ARG_DESCRIPTION },
        { "no-bind", no_argument, NULL, ARG_NO_BIND },
        {},
};

static int parse_option(int c, const char *arg) {
        switch (c) {
        case ARG_PERSISTENT:
                arg_persistent = true;
                return 0;
        case ARG_TRANSIENT:
                arg_persistent = false;
                return 0;
        case ARG_DESCRIPTION:
                arg_description = arg;
                return 0;
        case ARG_NO_BIND:
                arg_bind = false;
                return 0;
        }
        return usage_error("unhandled option");
}

static int create_context(sd_bus *bus, char **ret_path) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const char *path;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, ROOT_PATH, MANAGER_IFACE, "CreateContext");
        if (r < 0)
                return bus_log_error(NULL, r, "create a context");
        if (arg_description)
                r = sd_bus_message_append(m, "a{sv}", 2, "Persistent", "b", arg_persistent, "Description", "s",
                                          arg_description);
        else
                r = sd_bus_message_append(m, "a{sv}", 1, "Persistent", "b", arg_persistent);
        if (r < 0)
                return bus_log_error(NULL, r, "create a context");
        r = sd_bus_call(bus, m, 0, &error, &reply);
        if (r < 0)
                return bus_log_error(&error, r, "create a context");
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return bus_log_error(NULL, r, "parse the reply of CreateContext");
        *ret_path = strdup(path);
        return *ret_path ? 0 : -ENOMEM;
}

static int attach_device(sd_bus *bus, const char *context, const char *address, uint32_t *ret_devid) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        if (arg_bind)
                r = sd_bus_call_method(bus, BUS_NAME, context, CONTEXT_IFACE, "AttachDevice", &error, &reply,
                                       "sa{sv}", address, 0);
        else
                r = sd_bus_call_method(bus, BUS_NAME, context, CONTEXT_IFACE, "AttachDevice", &error, &reply,
                                       "sa{sv}", address, 1, "Bind", "b", 0);
        if (r < 0)
                return bus_log_error(&error, r, "attach %s to %s", address, context_short_name(context));
        r = sd_bus_message_read(reply, "u", ret_devid);
        if (r < 0)
                return bus_log_error(NULL, r, "parse the reply of AttachDevice");
        return 0;
}

static void release_context(sd_bus *bus, const char *context) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sd_bus_call_method(bus, BUS_NAME, context, CONTEXT_IFACE, "Release", &error, NULL, NULL);
        if (r < 0)
                bus_log_error(&error, r, "release %s", context);
}

static int print_result(sd_bus *bus, const char *context, char **addresses, const uint32_t *devids, size_t n) {
        static const char *const headers[] = { "ADDRESS", "DEVID" };
        _cleanup_json_ json_object *out = NULL, *devices = NULL;
        _cleanup_table_ Table *table = NULL;
        int r;

        if (!arg_json) {
                table = table_new(headers, ELEMENTSOF(headers));
                if (!table)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++)
                        if ((r = table_add_cell(table, addresses[i])) < 0 ||
                            (r = table_add_cellf(table, "%" PRIu32, devids[i])) < 0)
                                return r;
                printf("Context: %s\n", context);
                return table_print(table, stdout, arg_legend);
        }

        out = json_object_new_object();
        devices = json_object_new_array();
        if (!out || !devices)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *o = json_object_new_object();
                if (!o || json_object_array_add(devices, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
                if ((r = json_add(o, "address", json_object_new_string(addresses[i]))) < 0 ||
                    (r = json_add(o, "devid", json_object_new_int64(devids[i]))) < 0)
                        return r;
        }
        if ((r = json_add(out, "context", json_object_new_string(context))) < 0 ||
            (r = json_add(out, "persistent", json_object_new_boolean(arg_persistent))) < 0 ||
            (r = json_add(out, "devices", json_object_get(devices))) < 0 ||
            (r = json_add(out, "emulated", json_object_new_boolean(bus_is_emulated(bus)))) < 0)
                return r;
        return json_print(out, false);
}

static int run(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_strv_free_ char **addresses = NULL;
        _cleanup_free_ uint32_t *devids = calloc(argc, sizeof(uint32_t));
        _cleanup_free_ char *context = NULL;
        int r;

        if (!devids)
                goto oom;
        for (int i = 0; i < argc; i++) {
                char address[PCI_ADDRESS_STRING_MAX];
                if (parse_address_arg(argv[i], address) < 0)
                        return EXIT_USAGE;
                if (strv_contains(addresses, address))
                        continue; /* 01:00.0 and 0000:01:00.0 are one device */
                if (strv_extend(&addresses, address) < 0)
                        goto oom;
        }

        if (bus_open(&bus) < 0 || create_context(bus, &context) < 0)
                return EXIT_ERROR;

        size_t n = strv_length(addresses);
        for (size_t i = 0; i < n; i++)
                if (attach_device(bus, context, addresses[i], &devids[i]) < 0) {
                        /* All or nothing: no half-built lease is left behind. */
                        release_context(bus, context);
                        return EXIT_ERROR;
                }

        r = print_result(bus, context, addresses, devids, n);
        if (r < 0) {
                release_context(bus, context);
                return EXIT_ERROR;
        }
        print_emulated_note(bus);

        if (arg_persistent) {
                if (!arg_json)
                        fprintf(stderr, "The context stays until released: %s release %s\n",
                                program_invocation_short_name, context_id(context));
                return EXIT_OK;
        }

        if (!arg_json)
                fprintf(stderr, "Holding %s until interrupted (Ctrl-C).\n", context_short_name(context));
        r = bus_loop_until_signal(bus);
        if (r == -ECONNRESET)
                return EXIT_ERROR;
        release_context(bus, context);
        return r < 0 ? EXIT_ERROR : EXIT_OK;

oom:
        fputs("Out of memory.\n", stderr);
        return EXIT_ERROR;
}

const Verb verb_acquire = {
        .name = "acquire",
        .synopsis = "[--persistent|--transient] [--description=TEXT] [--no-bind] ADDRESS...",
        .summary = "Create a context and attach devices to it",
        .help = "Prints the context's path and, per device, the devid the kernel gave it\n"
                "(0 with --no-bind and in the legacy group model). If a device cannot be\n"
                "attached, the context is released again and nothing is held.\n\n"
                "  --persistent        The default: the context outlives hotresetctl and stays\n"
                "                      until 'hotresetctl release N' (the daemon's own default,\n"
                "                      a lease ending with its D-Bus connection, would end as\n"
                "                      soon as hotresetctl exits)\n"
                "  --transient         A lease of this connection: hotresetctl holds it until\n"
                "                      SIGINT/SIGTERM, then it ends\n"
                "  --description=TEXT  Describe the context (at most 256 bytes)\n"
                "  --no-bind           Leave vfio cdevs unbound, for a VMM to bind (cdev model)\n\n"
                "On the emulated kernel a last line says so.\n"
                "--json: {context, persistent, devices: [{address, devid}], emulated}.\n",
        .min_args = 1,
        .max_args = UINT32_MAX,
        .options = options,
        .parse_option = parse_option,
        .run = run,
        .interactive = true,
};

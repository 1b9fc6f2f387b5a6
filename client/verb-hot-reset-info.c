/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl hot-reset-info ADDRESS --context=N: the kernel's own answer
 * to VFIO_DEVICE_GET_PCI_HOT_RESET_INFO through a context's file of the
 * device, flags decoded. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "bus.h"
#include "hotresetctl.h"
#include "output.h"

/* include/uapi/linux/vfio.h */
#define FLAG_DEV_ID UINT32_C(1)
#define FLAG_DEV_ID_OWNED UINT32_C(2)
#define DEVID_OWNED UINT32_C(0)
#define DEVID_NOT_OWNED UINT32_C(0xffffffff)

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

static void print_flags(uint32_t flags) {
        uint32_t unknown = flags & ~(FLAG_DEV_ID | FLAG_DEV_ID_OWNED);

        printf("Flags: 0x%" PRIx32 " (", flags);
        if (flags == 0)
                printf("none: IOMMU group ids");
        if (flags & FLAG_DEV_ID)
                printf("DEV_ID");
        if (flags & FLAG_DEV_ID_OWNED)
                printf("%sDEV_ID_OWNED", flags & FLAG_DEV_ID ? ", " : "");
        if (unknown)
                printf("%s0x%" PRIx32, flags & (FLAG_DEV_ID | FLAG_DEV_ID_OWNED) ? ", " : "", unknown);
        puts(")");
}

static int add_row(Table *t, bool cdev, const char *address, uint32_t id) {
        int r = table_add_cell(t, address);
        if (r < 0)
                return r;
        if (cdev && id == DEVID_OWNED)
                return table_add_cell(t, "owned (group)");
        if (cdev && id == DEVID_NOT_OWNED)
                return table_add_cell(t, "NOT OWNED");
        return table_add_cellf(t, "%" PRIu32, id);
}

static int add_json(json_object *array, bool cdev, const char *address, uint32_t id) {
        json_object *o = json_object_new_object();
        int r;

        if (!o || json_object_array_add(array, o) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        if ((r = json_add(o, "address", json_object_new_string(address))) < 0 ||
            (r = json_add(o, cdev ? "devid" : "group", json_object_new_int64(id))) < 0)
                return r;
        if (cdev)
                return json_add(o, "owned",
                                json_object_new_string(id == DEVID_NOT_OWNED ? "no" : id == DEVID_OWNED ? "group" : "bound"));
        return 0;
}

static int run(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_json_ json_object *out = NULL, *array = NULL;
        _cleanup_table_ Table *table = NULL;
        _cleanup_free_ char *context = NULL;
        char address[PCI_ADDRESS_STRING_MAX];
        const char *entry_address;
        uint32_t flags, id;
        int r;

        if (parse_address_arg(argv[0], address) < 0)
                return EXIT_USAGE;
        if (!arg_context) {
                usage_error("hot-reset-info needs --context=CONTEXT: the kernel answers through a context's file");
                return EXIT_USAGE;
        }
        if (parse_context_arg(arg_context, &context) < 0)
                return EXIT_USAGE;
        if (bus_open(&bus) < 0)
                return EXIT_ERROR;

        r = sd_bus_call_method(bus, BUS_NAME, context, CONTEXT_IFACE, "GetHotResetInfo", &error, &reply, "s",
                               address);
        if (r < 0) {
                bus_log_error(&error, r, "get the hot reset info of %s through %s", address,
                              context_short_name(context));
                return EXIT_ERROR;
        }
        r = sd_bus_message_read(reply, "u", &flags);
        if (r < 0)
                goto bad_reply;
        bool cdev = flags & FLAG_DEV_ID;

        const char *headers[] = { "ADDRESS", cdev ? "DEVID" : "GROUP" };
        table = table_new(headers, ELEMENTSOF(headers));
        array = json_object_new_array();
        if (!table || !array)
                goto oom;

        r = sd_bus_message_enter_container(reply, 'a', "(su)");
        if (r < 0)
                goto bad_reply;
        while ((r = sd_bus_message_read(reply, "(su)", &entry_address, &id)) > 0)
                if ((arg_json ? add_json(array, cdev, entry_address, id) : add_row(table, cdev, entry_address, id)) < 0)
                        goto oom;
        if (r < 0)
                goto bad_reply;

        if (!arg_json) {
                print_flags(flags);
                return table_print(table, stdout, arg_legend) < 0 ? EXIT_ERROR : EXIT_OK;
        }
        out = json_object_new_object();
        if (!out || json_add(out, "address", json_object_new_string(address)) < 0 ||
            json_add(out, "context", json_object_new_string(context)) < 0 ||
            json_add(out, "flags", json_object_new_int64(flags)) < 0 ||
            json_add(out, "dev_id", json_object_new_boolean(cdev)) < 0 ||
            json_add(out, "dev_id_owned", json_object_new_boolean(flags & FLAG_DEV_ID_OWNED)) < 0 ||
            json_add(out, "devices", json_object_get(array)) < 0)
                goto oom;
        return json_print(out, false) < 0 ? EXIT_ERROR : EXIT_OK;

bad_reply:
        bus_log_error(NULL, r, "parse the reply of GetHotResetInfo");
        return EXIT_ERROR;
oom:
        fputs("Out of memory.\n", stderr);
        return EXIT_ERROR;
}

const Verb verb_hot_reset_info = {
        .name = "hot-reset-info",
        .synopsis = "--context=CONTEXT ADDRESS",
        .summary = "Show the kernel's raw hot reset info through a context (flags, devids or groups)",
        .help = "The device must be attached to the context. Flags: DEV_ID (1) means the ids\n"
                "are devids (vfio cdev, iommufd), else IOMMU group numbers (legacy groups);\n"
                "DEV_ID_OWNED (2) means the context owns every affected device. A devid > 0 is\n"
                "bound to the context's iommufd, 0 is shown as 'owned (group)' (an IOMMU group\n"
                "the context owns), 4294967295 as 'NOT OWNED'.\n\n"
                "  --context=CONTEXT   The context (N, context/N or its path); required\n\n"
                "--json: {address, context, flags, dev_id, dev_id_owned, devices: [{address,\n"
                "devid, owned: bound|group|no} or {address, group}]}.\n",
        .min_args = 1,
        .max_args = 1,
        .options = options,
        .parse_option = parse_option,
        .run = run,
        .interactive = true,
};

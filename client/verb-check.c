/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl check ADDRESS: would a hot reset of the
 * device be refused, and because of which device? */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "bus.h"
#include "hotresetctl.h"
#include "output.h"

static bool isempty(const char *s) {
        return !s || !*s;
}

typedef struct Entry {
        const char *address, *driver, *holder, *reason;
        int32_t group;
} Entry;

static int get_scope(sd_bus *bus, const char *path, const char *address, char **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_get_property_string(bus, BUS_NAME, path, DEVICE_IFACE, "ResetScope", &error, ret);
        if (r < 0)
                return bus_log_error(&error, r, "get the reset scope of %s", address);
        return 0;
}

/* holder: the context holding the target ("" if none): the verdict is for
 * a reset through it. */
static void print_verdict(const char *address, const char *holder, const char *scope, bool possible, size_t n,
                          size_t n_blocking) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);

        if (!f)
                return;
        fprintf(f, "Hot reset of %s: %s%s%s", address, possible ? ansi_green() : ansi_red(),
                possible ? "possible" : "not possible", ansi_normal());
        if (!isempty(holder))
                fprintf(f, " through %s", context_short_name(holder));
        fputs(" (", f);
        if (streq(scope, "none"))
                fprintf(f, "no slot or bus reset on a root bus");
        else
                fprintf(f, "%s reset; affects %zu device%s", scope, n, n == 1 ? "" : "s");
        if (!possible && n_blocking > 0 && !streq(scope, "none"))
                fprintf(f, ", %zu blocking", n_blocking);
        fputs(").", f);
        if (fclose(f) == 0 && text)
                print_folded(text, 0); /* on a terminal, folded at spaces */
}

static int add_json_entry(json_object *array, const Entry *e) {
        json_object *o = json_object_new_object();
        int r;

        if (!o)
                return -ENOMEM;
        if (json_object_array_add(array, o) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        if ((r = json_add(o, "address", json_object_new_string(e->address))) < 0 ||
            (r = json_add(o, "driver", json_string_or_null(e->driver))) < 0 ||
            (r = json_add(o, "iommu_group", json_group_or_null(e->group))) < 0 ||
            (r = json_add(o, "context", json_path_or_null(e->holder))) < 0 ||
            (r = json_add(o, "reason", json_string_or_null(e->reason))) < 0)
                return r;
        return 0;
}

static int add_table_entry(Table *t, const Entry *e) {
        int r;

        if ((r = table_add_cell(t, e->address)) < 0 || (r = table_add_cell(t, e->driver)) < 0)
                return r;
        r = e->group >= 0 ? table_add_cellf(t, "%" PRId32, e->group) : table_add_cell(t, NULL);
        if (r < 0)
                return r;
        if ((r = table_add_cell(t, display_path(e->holder))) < 0)
                return r;
        return table_add_cell(t, e->reason);
}

static int run(int argc, char *argv[]) {
        static const char *const headers[] = { "ADDRESS", "DRIVER", "GROUP", "HOLDER", "REASON" };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_json_ json_object *out = NULL, *array = NULL;
        _cleanup_table_ Table *table = NULL;
        _cleanup_free_ char *path = NULL, *scope = NULL, *holder = NULL;
        char address[PCI_ADDRESS_STRING_MAX];
        size_t n = 0, n_blocking = 0;
        Entry e;
        int possible, r;

        if (parse_address_arg(argv[0], address) < 0)
                return EXIT_USAGE;
        if (bus_open(&bus) < 0 || bus_get_device_path(bus, address, &path) < 0)
                return EXIT_ERROR;

        r = sd_bus_call_method(bus, BUS_NAME, path, DEVICE_IFACE, "CheckHotReset", &error, &reply, NULL);
        if (r < 0) {
                bus_log_error(&error, r, "check a hot reset of %s", address);
                return EXIT_ERROR;
        }
        if (get_scope(bus, path, address, &scope) < 0)
                return EXIT_ERROR;

        table = table_new(headers, ELEMENTSOF(headers));
        array = json_object_new_array();
        if (!table || !array || table_set_wrap(table, 4) < 0)
                goto oom;

        r = sd_bus_message_read(reply, "b", &possible);
        if (r < 0)
                goto bad_reply;
        r = sd_bus_message_enter_container(reply, 'a', "(ssiss)");
        if (r < 0)
                goto bad_reply;
        while ((r = sd_bus_message_read(reply, "(ssiss)", &e.address, &e.driver, &e.group, &e.holder, &e.reason)) >
               0) {
                n++;
                if (!isempty(e.reason))
                        n_blocking++;
                if (streq(e.address, address) && !holder && !(holder = strdup(e.holder)))
                        goto oom;
                r = arg_json ? add_json_entry(array, &e) : add_table_entry(table, &e);
                if (r < 0)
                        goto oom;
        }
        if (r < 0)
                goto bad_reply;

        if (arg_json) {
                out = json_object_new_object();
                if (!out || json_add(out, "address", json_object_new_string(address)) < 0 ||
                    json_add(out, "path", json_object_new_string(path)) < 0 ||
                    json_add(out, "possible", json_object_new_boolean(possible)) < 0 ||
                    json_add(out, "reset_scope", json_object_new_string(scope)) < 0 ||
                    json_add(out, "devices", json_object_get(array)) < 0)
                        goto oom;
                r = json_print(out, false);
        } else {
                if (arg_legend)
                        print_verdict(address, holder, scope, possible, n, n_blocking);
                r = table_print(table, stdout, arg_legend);
        }
        if (r < 0)
                return EXIT_ERROR;
        return possible ? EXIT_OK : EXIT_REFUSED;

bad_reply:
        bus_log_error(NULL, r, "parse the answer of CheckHotReset");
        return EXIT_ERROR;
oom:
        fputs("Out of memory.\n", stderr);
        return EXIT_ERROR;
}

const Verb verb_check = {
        .name = "check",
        .synopsis = "ADDRESS",
        .summary = "Tell whether a hot reset of a device is possible, and which device blocks it",
        .help = "Prints a verdict line, then every device the reset hits: ADDRESS, DRIVER, GROUP\n"
                "(IOMMU group), HOLDER (context holding it) and REASON (why it blocks, - when\n"
                "it does not; on a terminal folded at spaces within its column). Exits with 3\n"
                "when the reset is not possible. See also: scope.\n"
                "--json: {address, path, possible, reset_scope, devices: [{address, driver,\n"
                "iommu_group, context, reason}]}, null for none.\n",
        .min_args = 1,
        .max_args = 1,
        .run = run,
        .pager = true,
};

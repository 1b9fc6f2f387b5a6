/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl list: every PCI function the daemon knows, with its driver,
 * reset scope, IOMMU group and the context holding it. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "bus.h"
#include "hotresetctl.h"
#include "hwdb.h"
#include "output.h"

/* The Device properties of path in GetManagedObjects' answer, or NULL. */
static json_object *device_properties(json_object *objects, const char *path) {
        json_object *ifaces, *props;
        if (!json_object_object_get_ex(objects, path, &ifaces) ||
            !json_object_object_get_ex(ifaces, DEVICE_IFACE, &props))
                return NULL;
        return props;
}

static int add_device(json_object *objects, const char *address, const char *driver, const char *scope,
                      const char *path, Table *table, json_object *array) {
        /* A device that went away between the two calls shows no group or
         * holder rather than failing the listing. */
        json_object *props = device_properties(objects, path);
        int64_t group = json_get_int(props, "IommuGroup", -1);
        const char *context = json_get_string(props, "Context");
        uint16_t vendor = (uint16_t) json_get_int(props, "VendorId", 0);
        uint16_t device = (uint16_t) json_get_int(props, "DeviceId", 0);
        int r;

        if (array) {
                json_object *o = json_object_new_object();
                if (!o)
                        return -ENOMEM;
                if (json_object_array_add(array, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
                if ((r = json_add(o, "address", json_object_new_string(address))) < 0 ||
                    (r = json_add(o, "driver", json_string_or_null(driver))) < 0 ||
                    (r = json_add(o, "reset_scope", json_object_new_string(scope))) < 0 ||
                    (r = json_add(o, "iommu_group", json_group_or_null(group))) < 0 ||
                    (r = json_add(o, "context", json_path_or_null(context))) < 0 ||
                    (r = json_add(o, "path", json_object_new_string(path))) < 0 ||
                    (r = json_add(o, "vendor_name", json_string_or_null(props ? hwdb_vendor_name(vendor) : NULL))) < 0 ||
                    (r = json_add(o, "device_name",
                                  json_string_or_null(props ? hwdb_model_name(vendor, device) : NULL))) < 0)
                        return r;
                return 0;
        }

        if ((r = table_add_cell(table, address)) < 0 || (r = table_add_cell(table, driver)) < 0 ||
            (r = table_add_cell(table, scope)) < 0)
                return r;
        r = group >= 0 ? table_add_cellf(table, "%" PRId64, group) : table_add_cell(table, NULL);
        if (r < 0)
                return r;
        r = table_add_cell(table, display_path(context));
        if (r < 0 || !hwdb_available())
                return r;
        _cleanup_free_ char *name = props ? hwdb_device_name(vendor, device) : NULL;
        return table_add_cell(table, name);
}

static int run(int argc, char *argv[]) {
        static const char *const headers[] = { "ADDRESS", "DRIVER", "SCOPE", "GROUP", "HOLDER", "NAME" };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_json_ json_object *objects = NULL, *array = NULL;
        _cleanup_table_ Table *table = NULL;
        const char *address, *driver, *scope, *path;
        int r;

        if (bus_open(&bus) < 0)
                return EXIT_ERROR;
        r = sd_bus_call_method(bus, BUS_NAME, ROOT_PATH, MANAGER_IFACE, "ListDevices", &error, &reply, NULL);
        if (r < 0) {
                bus_log_error(&error, r, "list devices");
                return EXIT_ERROR;
        }
        if (bus_get_managed_objects(bus, &objects) < 0)
                return EXIT_ERROR;

        if (arg_json)
                array = json_object_new_array();
        else {
                /* NAME only when there are names: without a hwdb (or with
                 * --no-names) the table is as it always was. */
                bool names = hwdb_available();
                table = table_new(headers, ELEMENTSOF(headers) - !names);
                if (table && names && table_set_ellipsize(table, ELEMENTSOF(headers) - 1) < 0)
                        goto oom;
        }
        if (!array && !table)
                goto oom;

        r = sd_bus_message_enter_container(reply, 'a', "(ssso)");
        if (r < 0)
                goto bad_reply;
        while ((r = sd_bus_message_read(reply, "(ssso)", &address, &driver, &scope, &path)) > 0) {
                r = add_device(objects, address, driver, scope, path, table, array);
                if (r < 0)
                        goto oom;
        }
        if (r < 0)
                goto bad_reply;

        r = arg_json ? json_print(array, false) : table_print(table, stdout, arg_legend);
        return r < 0 ? EXIT_ERROR : EXIT_OK;

bad_reply:
        bus_log_error(NULL, r, "parse the device list");
        return EXIT_ERROR;
oom:
        fputs("Out of memory.\n", stderr);
        return EXIT_ERROR;
}

const Verb verb_list = {
        .name = "list",
        .synopsis = "",
        .summary = "List the PCI devices: driver, reset scope, IOMMU group, holding context",
        .help = "Columns: ADDRESS, DRIVER (- when unbound), SCOPE (slot, bus or none: what a hot\n"
                "reset of the device resets), GROUP (IOMMU group, - when none), HOLDER (the\n"
                "context holding the device, - when none), NAME (vendor and device from the\n"
                "hwdb; no such column with --no-names or without a hwdb).\n"
                "--json: an array of {address, driver, reset_scope, iommu_group, context, path,\n"
                "vendor_name, device_name}; null for no driver, group, context or name.\n",
        .min_args = 0,
        .max_args = 0,
        .run = run,
        .pager = true,
};

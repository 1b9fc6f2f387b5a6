/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl info ADDRESS: every property of a device. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "bus.h"
#include "hotresetctl.h"
#include "hwdb.h"
#include "output.h"

typedef enum Kind {
        KIND_STRING, /* "" is none */
        KIND_HEX4,
        KIND_HEX6,
        KIND_BOOL,
        KIND_GROUP,  /* -1 is none */
        KIND_STRV,
        KIND_CONTEXT, /* "/" is none */
        KIND_POSSIBLE,
} Kind;

typedef struct Field {
        const char *property;
        const char *label;
        const char *key;
        Kind kind;
} Field;

/* In the order of the contract. */
static const Field fields[] = {
        { "Address", "Address", "address", KIND_STRING },
        { "VendorId", "Vendor", "vendor_id", KIND_HEX4 },
        { "DeviceId", "Device", "device_id", KIND_HEX4 },
        { "Class", "Class", "class", KIND_HEX6 },
        { "IsBridge", "Bridge", "is_bridge", KIND_BOOL },
        { "Driver", "Driver", "driver", KIND_STRING },
        { "IommuGroup", "IOMMU group", "iommu_group", KIND_GROUP },
        { "CdevPath", "Cdev", "cdev_path", KIND_STRING },
        { "ResetMethods", "Reset methods", "reset_methods", KIND_STRV },
        { "ResetScope", "Reset scope", "reset_scope", KIND_STRING },
        { "Affected", "Affected", "affected", KIND_STRV },
        { "Context", "Context", "context", KIND_CONTEXT },
        { "HotResetPossible", "Hot reset", "hot_reset_possible", KIND_POSSIBLE },
};

#define LABEL_WIDTH 13

static json_object *field_json(const Field *f, json_object *value) {
        switch (f->kind) {
        case KIND_STRING:
                return json_string_or_null(json_object_get_string(value));
        case KIND_GROUP:
                return json_group_or_null(json_object_get_int64(value));
        case KIND_CONTEXT:
                return json_path_or_null(json_object_get_string(value));
        default:
                return json_object_get(value);
        }
}

static uint16_t vendor_id, device_id;

static void print_field(const Field *f, json_object *value) {
        printf("%*s: ", LABEL_WIDTH, f->label);
        switch (f->kind) {
        case KIND_STRING:
                puts(display_string(json_object_get_string(value)));
                break;
        case KIND_HEX4: {
                const char *name = streq(f->property, "VendorId") ? hwdb_vendor_name(vendor_id)
                                                                   : hwdb_model_name(vendor_id, device_id);
                printf("0x%04" PRIx64, (uint64_t) json_object_get_int64(value));
                if (name)
                        printf(" (%s)", name);
                putchar('\n');
                break;
        }
        case KIND_HEX6:
                printf("0x%06" PRIx64 "\n", (uint64_t) json_object_get_int64(value));
                break;
        case KIND_BOOL:
                puts(json_object_get_boolean(value) ? "yes" : "no");
                break;
        case KIND_POSSIBLE:
                puts(json_object_get_boolean(value) ? "possible" : "not possible (see: hotresetctl scope)");
                break;
        case KIND_GROUP: {
                int64_t g = json_object_get_int64(value);
                if (g >= 0)
                        printf("%" PRId64 "\n", g);
                else
                        puts("-");
                break;
        }
        case KIND_STRV: {
                /* Folded at spaces on a terminal: a bus can hold many. */
                size_t n = json_object_array_length(value);
                _cleanup_strv_free_ char **l = NULL;
                for (size_t i = 0; i < n; i++)
                        if (strv_extend(&l, json_object_get_string(json_object_array_get_idx(value, i))) < 0)
                                return;
                _cleanup_free_ char *joined = n ? strv_join(l, " ") : NULL;
                print_folded(joined ?: "-", LABEL_WIDTH + 2);
                break;
        }
        case KIND_CONTEXT:
                puts(display_path(json_object_get_string(value)));
                break;
        }
}

/* Affected is an explicit property: GetAll leaves it out, so it is read on
 * its own and added to props. */
static int get_affected(sd_bus *bus, const char *path, const char *address, json_object *props) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        json_object *affected = NULL;
        int r;

        r = bus_get_property_json(bus, path, DEVICE_IFACE, "Affected", &error, &affected);
        if (r < 0)
                return bus_log_error(&error, r, "get the devices a hot reset of %s affects", address);
        if (json_object_object_add(props, "Affected", affected) < 0) {
                json_object_put(affected);
                fputs("Out of memory.\n", stderr);
                return -ENOMEM;
        }
        return 0;
}

static int run(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_json_ json_object *props = NULL, *out = NULL;
        _cleanup_free_ char *path = NULL;
        char address[PCI_ADDRESS_STRING_MAX];

        if (parse_address_arg(argv[0], address) < 0)
                return EXIT_USAGE;
        if (bus_open(&bus) < 0 || bus_get_device_path(bus, address, &path) < 0 ||
            bus_get_all_properties(bus, path, DEVICE_IFACE, address, &props) < 0 ||
            get_affected(bus, path, address, props) < 0)
                return EXIT_ERROR;

        vendor_id = (uint16_t) json_get_int(props, "VendorId", 0);
        device_id = (uint16_t) json_get_int(props, "DeviceId", 0);
        if (!arg_json) {
                printf("%*s: %s\n", LABEL_WIDTH, "Path", path);
                for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                        json_object *value;
                        if (json_object_object_get_ex(props, fields[i].property, &value))
                                print_field(&fields[i], value);
                }
                return fflush(stdout) == 0 ? EXIT_OK : EXIT_ERROR;
        }

        out = json_object_new_object();
        if (!out || json_add(out, "path", json_object_new_string(path)) < 0)
                goto oom;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                json_object *value;
                if (json_object_object_get_ex(props, fields[i].property, &value) &&
                    json_add(out, fields[i].key, field_json(&fields[i], value)) < 0)
                        goto oom;
        }
        if (json_add(out, "vendor_name", json_string_or_null(hwdb_vendor_name(vendor_id))) < 0 ||
            json_add(out, "device_name", json_string_or_null(hwdb_model_name(vendor_id, device_id))) < 0)
                goto oom;
        return json_print(out, false) < 0 ? EXIT_ERROR : EXIT_OK;
oom:
        fputs("Out of memory.\n", stderr);
        return EXIT_ERROR;
}

const Verb verb_info = {
        .name = "info",
        .synopsis = "ADDRESS",
        .summary = "Show every property of a device",
        .help = "--json: an object with path, address, vendor_id, device_id, class (numbers),\n"
                "is_bridge, driver, iommu_group, cdev_path, reset_methods, reset_scope,\n"
                "affected, context, hot_reset_possible, vendor_name, device_name (hwdb); null\n"
                "for no driver, group, cdev, context or name.\n",
        .min_args = 1,
        .max_args = 1,
        .run = run,
        .pager = true,
};

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl scope ADDRESS (alias explain): what a hot reset of the device
 * resets, as a tree built on its ResetDomain object: the bridge that
 * performs the reset, the slot or bus, the buses below it, each function
 * with its name, driver, IOMMU group and holder; then, for each device
 * that blocks the reset, one sentence saying what to do about it. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "bus.h"
#include "hotresetctl.h"
#include "hwdb.h"
#include "output.h"

typedef struct Member {
        const char *address;
        json_object *props; /* Device properties, NULL if it went away */
        const char *reason; /* from CheckHotReset, NULL when it does not block */
        const char *holder; /* from CheckHotReset, NULL/"" when none */
} Member;

/* "0000:01:00.0" -> device object path. */
static void device_path_of(const char *address, char *buf, size_t size) {
        char a[PCI_ADDRESS_STRING_MAX];
        size_t i;
        for (i = 0; i < sizeof a - 1 && address[i]; i++)
                a[i] = (char) (address[i] == ':' || address[i] == '.' ? '_' : tolower((unsigned char) address[i]));
        a[i] = 0;
        snprintf(buf, size, DEVICE_PATH_PREFIX "pci_%s", a);
}

static json_object *object_iface(json_object *objects, const char *path, const char *iface) {
        json_object *ifaces, *props;
        if (!objects || !json_object_object_get_ex(objects, path, &ifaces) ||
            !json_object_object_get_ex(ifaces, iface, &props))
                return NULL;
        return props;
}

static json_object *device_props(json_object *objects, const char *address) {
        char path[256];
        device_path_of(address, path, sizeof path);
        return object_iface(objects, path, DEVICE_IFACE);
}

/* "0000:05:01.0" -> "0000:05". */
static void bus_of(const char *address, char buf[static 16]) {
        snprintf(buf, 16, "%.7s", address);
}

static char *device_name(json_object *props) {
        if (!props)
                return NULL;
        return hwdb_device_name((uint16_t) json_get_int(props, "VendorId", 0),
                                (uint16_t) json_get_int(props, "DeviceId", 0));
}

/* One sentence a person can act on, for a blocking member. */
static char *blocker_hint(const Member *m, const char *policy_file) {
        const char *driver = json_get_string(m->props, "Driver");
        const char *r = m->reason;
        const char *ctl = program_invocation_short_name;
        char *s = NULL;
        int k;

        if (strncmp(r, "not bound to a vfio driver", 26) == 0) {
                if (driver && *driver)
                        k = asprintf(&s, "%s is bound to %s: bind it to vfio-pci (for example `driverctl "
                                     "set-override %s vfio-pci`).", m->address, driver, m->address);
                else
                        k = asprintf(&s, "%s has no driver: bind it to vfio-pci (for example `driverctl "
                                     "set-override %s vfio-pci`).", m->address, m->address);
        } else if (strncmp(r, "bridge in reset scope", 21) == 0)
                k = asprintf(&s, "%s is a bridge inside the reset scope and cannot be bound to vfio-pci: "
                             "this slot or bus cannot be hot reset; reset single functions instead "
                             "(`%s reset-device`).", m->address, ctl);
        else if (strncmp(r, "no IOMMU group", 14) == 0)
                k = asprintf(&s, "%s has no IOMMU group: turn the IOMMU on (intel_iommu=on or amd_iommu=on "
                             "on the kernel command line).", m->address);
        else if (strncmp(r, "excluded by policy", 18) == 0)
                k = asprintf(&s, "%s is excluded by the policy file %s: remove the rule, then `%s reload`.",
                             m->address, policy_file && *policy_file ? policy_file : "(hotresetd.conf)", ctl);
        else if (strncmp(r, "held by", 7) == 0 && m->holder && *m->holder && !streq(m->holder, "/"))
                k = asprintf(&s, "%s is held by %s: reset through it (`%s reset --context=%s %s`) or release it "
                             "(`%s release %s`).", m->address, context_short_name(m->holder), ctl,
                             context_id(m->holder), m->address, ctl, context_id(m->holder));
        else if (strncmp(r, "no reset mechanism", 18) == 0)
                k = asprintf(&s, "%s is on a root bus: there is no slot or bus to reset; a function-level "
                             "reset may do (`%s reset-device --context=N %s`).", m->address, ctl, m->address);
        else
                k = asprintf(&s, "%s: %s.", m->address, r);
        return k < 0 ? NULL : s;
}

static int add_member_row(Table *t, const Member *m, const char *label) {
        _cleanup_free_ char *name = device_name(m->props);
        int64_t group = json_get_int(m->props, "IommuGroup", -1);
        int r;

        if ((r = table_add_cell(t, label ?: m->address)) < 0)
                return r;
        if (m->reason && *m->reason)
                table_color_last(t, "red");
        if ((r = table_add_cell(t, json_get_string(m->props, "Driver"))) < 0)
                return r;
        r = group >= 0 ? table_add_cellf(t, "%" PRId64, group) : table_add_cell(t, NULL);
        if (r < 0)
                return r;
        if ((r = table_add_cell(t, display_path(m->holder ?: json_get_string(m->props, "Context")))) < 0)
                return r;
        return table_add_cell(t, name);
}

static json_object *member_json(const Member *m) {
        json_object *o = json_object_new_object();
        uint16_t vendor = (uint16_t) json_get_int(m->props, "VendorId", 0);
        uint16_t device = (uint16_t) json_get_int(m->props, "DeviceId", 0);

        if (!o)
                return NULL;
        if (json_add(o, "address", json_object_new_string(m->address)) < 0 ||
            json_add(o, "driver", json_string_or_null(json_get_string(m->props, "Driver"))) < 0 ||
            json_add(o, "iommu_group", json_group_or_null(json_get_int(m->props, "IommuGroup", -1))) < 0 ||
            json_add(o, "context", json_path_or_null(m->holder ?: json_get_string(m->props, "Context"))) < 0 ||
            json_add(o, "is_bridge", json_object_new_boolean(json_get_bool(m->props, "IsBridge"))) < 0 ||
            json_add(o, "vendor_name", json_string_or_null(m->props ? hwdb_vendor_name(vendor) : NULL)) < 0 ||
            json_add(o, "device_name", json_string_or_null(m->props ? hwdb_model_name(vendor, device) : NULL)) < 0 ||
            json_add(o, "reason", json_string_or_null(m->reason)) < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static int read_check(sd_bus *bus, const char *path, const char *address, Member *members, size_t n,
                      int *ret_possible) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *a, *driver, *holder, *reason;
        int32_t group;
        int r;

        r = sd_bus_call_method(bus, BUS_NAME, path, DEVICE_IFACE, "CheckHotReset", &error, &reply, NULL);
        if (r < 0)
                return bus_log_error(&error, r, "check a hot reset of %s", address);
        r = sd_bus_message_read(reply, "b", ret_possible);
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'a', "(ssiss)");
        while (r >= 0 && (r = sd_bus_message_read(reply, "(ssiss)", &a, &driver, &group, &holder, &reason)) > 0)
                for (size_t i = 0; i < n; i++)
                        if (streq(members[i].address, a)) {
                                members[i].reason = *reason ? strdup(reason) : NULL;
                                members[i].holder = *holder ? strdup(holder) : NULL;
                        }
        if (r < 0)
                return bus_log_error(NULL, r, "parse the answer of CheckHotReset");
        return 0;
}

static void free_members(Member *members, size_t n) {
        for (size_t i = 0; members && i < n; i++) {
                free((char *) members[i].reason);
                free((char *) members[i].holder);
        }
        free(members);
}

static int run(int argc, char *argv[]) {
        static const char *const headers[] = { "DEVICE", "DRIVER", "GROUP", "HOLDER", "NAME" };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_json_ json_object *objects = NULL, *manager = NULL, *out = NULL, *buses = NULL, *blockers = NULL;
        _cleanup_table_ Table *table = NULL;
        _cleanup_free_ char *path = NULL;
        _cleanup_strv_free_ char **hints = NULL;
        char address[PCI_ADDRESS_STRING_MAX];
        Member *members = NULL;
        size_t n = 0;
        int possible = 0, r;

        if (parse_address_arg(argv[0], address) < 0)
                return EXIT_USAGE;
        if (bus_open(&bus) < 0 || bus_get_device_path(bus, address, &path) < 0 ||
            bus_get_managed_objects(bus, &objects) < 0 || bus_get_manager(bus, &manager) < 0)
                return EXIT_ERROR;

        json_object *dev = object_iface(objects, path, DEVICE_IFACE);
        const char *domain_path = json_get_string(dev, "ResetDomain");
        json_object *domain = domain_path ? object_iface(objects, domain_path, DOMAIN_IFACE) : NULL;
        json_object *member_list = NULL;
        const char *scope = json_get_string(dev, "ResetScope") ?: "none";
        const char *bridge_path = json_get_string(domain, "Bridge");
        json_object *bridge = bridge_path ? object_iface(objects, bridge_path, DEVICE_IFACE) : NULL;
        const char *bridge_address = json_get_string(bridge, "Address");

        if (domain)
                (void) json_object_object_get_ex(domain, "Members", &member_list);
        n = member_list ? json_object_array_length(member_list) : 1;
        members = calloc(n, sizeof(Member));
        if (!members)
                goto oom;
        if (member_list)
                for (size_t i = 0; i < n; i++) {
                        members[i].address = json_object_get_string(json_object_array_get_idx(member_list, i));
                        members[i].props = device_props(objects, members[i].address);
                }
        else
                members[0] = (Member) { .address = address, .props = dev };

        r = read_check(bus, path, address, members, n, &possible);
        if (r < 0) {
                free_members(members, n);
                return EXIT_ERROR;
        }

        const char *policy_file = json_get_string(manager, "PolicyFile");
        size_t n_blocking = 0;
        for (size_t i = 0; i < n; i++)
                if (members[i].reason) {
                        n_blocking++;
                        _cleanup_free_ char *h = blocker_hint(&members[i], policy_file);
                        if (!h || strv_extend(&hints, h) < 0)
                                goto oom;
                }

        if (arg_json) {
                out = json_object_new_object();
                buses = json_object_new_array();
                blockers = json_object_new_array();
                if (!out || !buses || !blockers)
                        goto oom;
                json_object *bus_obj = NULL, *bus_devices = NULL;
                char last_bus[16] = "";
                for (size_t i = 0; i < n; i++) {
                        char b[16];
                        bus_of(members[i].address, b);
                        if (!streq(b, last_bus)) {
                                bus_obj = json_object_new_object();
                                bus_devices = json_object_new_array();
                                if (!bus_obj || !bus_devices || json_object_array_add(buses, bus_obj) < 0 ||
                                    json_add(bus_obj, "bus", json_object_new_string(b)) < 0 ||
                                    json_add(bus_obj, "devices", bus_devices) < 0)
                                        goto oom;
                                strcpy(last_bus, b);
                        }
                        json_object *m = member_json(&members[i]);
                        if (!m || json_object_array_add(bus_devices, m) < 0)
                                goto oom;
                }
                size_t k = 0;
                for (size_t i = 0; i < n; i++) {
                        if (!members[i].reason)
                                continue;
                        json_object *o = json_object_new_object();
                        if (!o || json_object_array_add(blockers, o) < 0 ||
                            json_add(o, "address", json_object_new_string(members[i].address)) < 0 ||
                            json_add(o, "reason", json_object_new_string(members[i].reason)) < 0 ||
                            json_add(o, "hint", json_object_new_string(hints[k++])) < 0)
                                goto oom;
                }
                json_object *bridge_obj = NULL;
                if (bridge) {
                        Member bm = { .address = bridge_address, .props = bridge };
                        bridge_obj = member_json(&bm);
                        if (!bridge_obj)
                                goto oom;
                }
                if (json_add(out, "address", json_object_new_string(address)) < 0 ||
                    json_add(out, "path", json_object_new_string(path)) < 0 ||
                    json_add(out, "possible", json_object_new_boolean(possible)) < 0 ||
                    json_add(out, "reset_scope", json_object_new_string(scope)) < 0 ||
                    json_add(out, "domain", json_path_or_null(domain_path)) < 0 ||
                    json_add(out, "bridge", bridge_obj) < 0 ||
                    json_add(out, "emulated", json_object_new_boolean(json_get_bool(manager, "Emulated"))) < 0 ||
                    json_add(out, "buses", json_object_get(buses)) < 0 ||
                    json_add(out, "blockers", json_object_get(blockers)) < 0)
                        goto oom;
                free_members(members, n);
                return json_print(out, false) < 0 ? EXIT_ERROR : possible ? EXIT_OK : EXIT_REFUSED;
        }

        /* The verdict. */
        if (arg_legend) {
                _cleanup_free_ char *verdict = NULL, *blocking = NULL;
                if (n_blocking > 0 && asprintf(&blocking, ", %zu blocking", n_blocking) < 0)
                        goto oom;
                if (streq(scope, "none"))
                        r = asprintf(&verdict, "Hot reset of %s: %s%s%s (on a root bus: no slot or bus reset).",
                                     address, ansi_red(), "not possible", ansi_normal());
                else
                        r = asprintf(&verdict, "Hot reset of %s: %s%s%s (%s reset by bridge %s; affects %zu device%s%s).",
                                     address, possible ? ansi_green() : ansi_red(),
                                     possible ? "possible" : "not possible", ansi_normal(), scope,
                                     display_string(bridge_address), n, n == 1 ? "" : "s", strempty(blocking));
                if (r < 0)
                        goto oom;
                print_folded(verdict, 0);
        }

        /* The tree: bridge, then the slot or bus, then each bus below. */
        table = table_new(headers, ELEMENTSOF(headers));
        if (!table || table_set_tree(table, 0) < 0 || table_set_ellipsize(table, 4) < 0)
                goto oom;
        TableRow *top = NULL;
        if (bridge) {
                Member bm = { .address = bridge_address, .props = bridge };
                if (add_member_row(table, &bm, NULL) < 0)
                        goto oom;
                top = table_last_row(table);
        }
        char last_bus[16] = "";
        for (size_t i = 0; i < n && domain; i++) {
                char b[16];
                bus_of(members[i].address, b);
                if (!streq(b, last_bus)) {
                        _cleanup_free_ char *label = NULL;
                        bool first = !*last_bus;
                        if (first && streq(scope, "slot"))
                                r = asprintf(&label, "slot %.10s", members[i].address);
                        else
                                r = asprintf(&label, "bus %s%s", b, first ? "" : " (behind a bridge above)");
                        if (r < 0)
                                goto oom;
                        table_set_parent(table, top);
                        if (table_add_cell(table, label) < 0)
                                goto oom;
                        for (size_t c = 1; c < ELEMENTSOF(headers); c++)
                                if (table_add_blank(table) < 0)
                                        goto oom;
                        table_set_parent(table, table_last_row(table));
                        strcpy(last_bus, b);
                }
                if (add_member_row(table, &members[i], NULL) < 0)
                        goto oom;
        }
        if (!domain && add_member_row(table, &members[0], NULL) < 0)
                goto oom;
        if (table_print(table, stdout, arg_legend) < 0) {
                free_members(members, n);
                return EXIT_ERROR;
        }

        /* The hints are for people: none with --no-legend. */
        if (hints && arg_legend)
                putchar('\n');
        for (char **h = hints; arg_legend && h && *h; h++) {
                printf("%s•%s ", ansi_red(), ansi_normal());
                print_folded(*h, 2);
        }
        free_members(members, n);
        return possible ? EXIT_OK : EXIT_REFUSED;

oom:
        free_members(members, n);
        fputs("Out of memory.\n", stderr);
        return EXIT_ERROR;
}

const Verb verb_scope = {
        .name = "scope",
        .alias = "explain",
        .synopsis = "ADDRESS",
        .summary = "Show what a hot reset of a device resets, as a tree, and what blocks it",
        .help = "Prints a verdict line, then a tree: the bridge that performs the reset, the\n"
                "slot or bus, the buses below it, and each function with its DRIVER, GROUP\n"
                "(IOMMU group), HOLDER (context) and NAME (vendor and device, from the hwdb);\n"
                "blocking devices in red; then one sentence per blocking device saying what\n"
                "to do. Exit status 0 when the reset is possible, 3 when it is not.\n"
                "Alias: explain.\n"
                "--json: {address, path, possible, reset_scope, domain, bridge, emulated,\n"
                "buses: [{bus, devices: [{address, driver, iommu_group, context, is_bridge,\n"
                "vendor_name, device_name, reason}]}], blockers: [{address, reason, hint}]}.\n",
        .min_args = 1,
        .max_args = 1,
        .run = run,
        .pager = true,
};

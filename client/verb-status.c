/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl status: the daemon at a glance: version, backend and model,
 * emulated or real, how many devices, reset domains and leases, its limits
 * and policy file. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "bus.h"
#include "hotresetctl.h"
#include "output.h"

#define LABEL_WIDTH 15

/* "iommufd" / "emulated-iommufd" -> "iommufd", "group" -> "group". */
static const char *backend_model(const char *backend) {
        if (!backend)
                return NULL;
        if (strncmp(backend, "emulated-", strlen("emulated-")) == 0)
                backend += strlen("emulated-");
        return backend;
}

static const char *model_description(const char *model) {
        if (streq_ptr(model, "iommufd"))
                return "vfio cdevs bound to an iommufd per lease";
        if (streq_ptr(model, "group"))
                return "legacy vfio groups in a container per lease";
        return NULL;
}

static void count_objects(json_object *objects, size_t *ret_domains, size_t *ret_contexts) {
        *ret_domains = *ret_contexts = 0;
        json_object_object_foreach(objects, path, ifaces) {
                (void) ifaces;
                if (strncmp(path, DOMAIN_PATH_PREFIX, strlen(DOMAIN_PATH_PREFIX)) == 0)
                        (*ret_domains)++;
                else if (strncmp(path, CONTEXT_PATH_PREFIX, strlen(CONTEXT_PATH_PREFIX)) == 0)
                        (*ret_contexts)++;
        }
}

static void print_label(const char *label) {
        printf("%s%*s:%s ", ansi_bold(), LABEL_WIDTH, label, ansi_normal());
}

static void print_limits(json_object *limits) {
        bool first = true;

        print_label("Limits");
        json_object_object_foreach(limits, key, value) {
                int64_t n = json_object_get_int64(value);
                if (!first)
                        printf("\n%*s  ", LABEL_WIDTH, "");
                first = false;
                if (n > 0)
                        printf("%s=%" PRId64, key, n);
                else
                        printf("%s=none", key);
        }
        puts(first ? "-" : "");
}

static int run(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_json_ json_object *manager = NULL, *objects = NULL, *out = NULL;
        json_object *limits = NULL;
        size_t n_domains, n_contexts;

        if (bus_open(&bus) < 0 || bus_get_manager(bus, &manager) < 0 || bus_get_managed_objects(bus, &objects) < 0)
                return EXIT_ERROR;
        count_objects(objects, &n_domains, &n_contexts);
        (void) json_object_object_get_ex(manager, "Limits", &limits);

        const char *backend = json_get_string(manager, "Backend");
        const char *model = backend_model(backend);
        const char *policy = json_get_string(manager, "PolicyFile");
        bool emulated = json_get_bool(manager, "Emulated");
        int64_t n_devices = json_get_int(manager, "DeviceCount", 0);

        if (arg_json) {
                out = json_object_new_object();
                if (!out || json_add(out, "version", json_string_or_null(json_get_string(manager, "Version"))) < 0 ||
                    json_add(out, "backend", json_string_or_null(backend)) < 0 ||
                    json_add(out, "model", json_string_or_null(model)) < 0 ||
                    json_add(out, "emulated", json_object_new_boolean(emulated)) < 0 ||
                    json_add(out, "devices", json_object_new_int64(n_devices)) < 0 ||
                    json_add(out, "reset_domains", json_object_new_int64((int64_t) n_domains)) < 0 ||
                    json_add(out, "contexts", json_object_new_int64((int64_t) n_contexts)) < 0 ||
                    json_add(out, "unleased_hot_reset",
                             json_object_new_boolean(json_get_bool(manager, "UnleasedHotReset"))) < 0 ||
                    json_add(out, "policy_file", json_string_or_null(policy)) < 0 ||
                    json_add(out, "limits", limits ? json_object_get(limits) : json_object_new_object()) < 0) {
                        fputs("Out of memory.\n", stderr);
                        return EXIT_ERROR;
                }
                return json_print(out, false) < 0 ? EXIT_ERROR : EXIT_OK;
        }

        print_label("Version");
        puts(display_string(json_get_string(manager, "Version")));
        print_label("Backend");
        printf("%s", display_string(backend));
        if (model_description(model))
                printf(" (%s)", model_description(model));
        putchar('\n');
        print_label("Machine");
        if (emulated)
                printf("%semulated%s: no real device is touched\n", ansi_yellow(), ansi_normal());
        else
                puts("real");
        print_label("Devices");
        printf("%" PRId64 " PCI functions, %zu reset domain%s\n", n_devices, n_domains, n_domains == 1 ? "" : "s");
        print_label("Leases");
        printf("%zu context%s\n", n_contexts, n_contexts == 1 ? "" : "s");
        print_label("Unleased reset");
        puts(json_get_bool(manager, "UnleasedHotReset") ? "enabled" : "disabled (UnleasedHotReset=no)");
        print_label("Policy file");
        printf("%s", display_string(policy));
        if (policy && *policy && access(policy, F_OK) < 0 && errno == ENOENT)
                printf(" (absent: the defaults apply)");
        putchar('\n');
        if (limits)
                print_limits(limits);
        return fflush(stdout) == 0 ? EXIT_OK : EXIT_ERROR;
}

const Verb verb_status = {
        .name = "status",
        .synopsis = "",
        .summary = "Show the daemon: version, backend, emulated or real, counts, limits, policy file",
        .help = "--json: {version, backend, model, emulated, devices, reset_domains, contexts,\n"
                "unleased_hot_reset, policy_file, limits: {key: number, 0 for none}}.\n",
        .min_args = 0,
        .max_args = 0,
        .run = run,
        .pager = true,
};

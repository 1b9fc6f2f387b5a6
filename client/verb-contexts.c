/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl contexts: the leases the daemon holds, from its object
 * manager. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <systemd/sd-login.h>

#include "bus.h"
#include "hotresetctl.h"
#include "output.h"

typedef struct ContextInfo {
        const char *path;
        unsigned long long id;
        json_object *props;
        /* Who holds the lease, where known: the process a pid-tied lease
         * follows, or the process behind the owner's bus connection; a
         * persistent lease has no process. */
        pid_t pid;
        char *command, *unit, *machine;
} ContextInfo;

/* "connection" / "persistent" / "process" -> what a person calls it. */
static const char *kind_of(json_object *props) {
        const char *lifetime = json_get_string(props, "Lifetime");
        if (streq_ptr(lifetime, "process"))
                return "pid-tied";
        if (lifetime)
                return lifetime;
        return json_get_bool(props, "Persistent") ? "persistent" : "connection";
}

static char *read_comm(pid_t pid) {
        char path[64], buf[64];
        bool ok;

        snprintf(path, sizeof path, "/proc/%d/comm", (int) pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return NULL;
        ok = fgets(buf, sizeof buf, f) != NULL;
        fclose(f);
        if (!ok)
                return NULL;
        buf[strcspn(buf, "\n")] = 0;
        return strdup(buf);
}

static void find_process(sd_bus *bus, ContextInfo *c) {
        const char *lifetime = json_get_string(c->props, "Lifetime");
        const char *owner = json_get_string(c->props, "Owner");

        if (streq_ptr(lifetime, "process"))
                c->pid = (pid_t) json_get_int(c->props, "Pid", 0);
        else if (owner && owner[0] == ':') {
                _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
                if (sd_bus_get_name_creds(bus, owner, SD_BUS_CREDS_PID, &creds) >= 0)
                        (void) sd_bus_creds_get_pid(creds, &c->pid);
        }
        if (c->pid <= 0)
                return;
        c->command = read_comm(c->pid);
        if (sd_pid_get_unit(c->pid, &c->unit) < 0)
                (void) sd_pid_get_user_unit(c->pid, &c->unit);
        (void) sd_pid_get_machine_name(c->pid, &c->machine);
}

static void free_processes(ContextInfo *contexts, size_t n) {
        for (size_t i = 0; contexts && i < n; i++) {
                free(contexts[i].command);
                free(contexts[i].unit);
                free(contexts[i].machine);
        }
}

static int compare_contexts(const void *a, const void *b) {
        const ContextInfo *x = a, *y = b;
        return x->id < y->id ? -1 : x->id > y->id;
}

static char *join_devices(json_object *devices) {
        size_t n = json_object_array_length(devices);
        _cleanup_strv_free_ char **l = NULL;

        for (size_t i = 0; i < n; i++)
                if (strv_extend(&l, json_object_get_string(json_object_array_get_idx(devices, i))) < 0)
                        return NULL;
        return strv_join(l, ",");
}

static int add_row(Table *t, const ContextInfo *c, bool with_machine) {
        json_object *devices = NULL;
        _cleanup_free_ char *joined = NULL;
        int r;

        (void) json_object_object_get_ex(c->props, "Devices", &devices);
        joined = devices ? join_devices(devices) : strdup("");
        if (!joined)
                return -ENOMEM;
        if ((r = table_add_cell(t, context_short_name(c->path))) < 0 ||
            (r = table_add_cell(t, kind_of(c->props))) < 0 ||
            (r = table_add_cell(t, json_get_string(c->props, "Owner"))) < 0 ||
            (r = table_add_cellf(t, "%" PRId64, json_get_int(c->props, "OwnerUid", -1))) < 0)
                return r;
        r = c->pid > 0 ? table_add_cellf(t, "%d", (int) c->pid) : table_add_cell(t, NULL);
        if (r < 0 || (r = table_add_cell(t, c->command)) < 0 || (r = table_add_cell(t, c->unit)) < 0)
                return r;
        if (with_machine && (r = table_add_cell(t, c->machine)) < 0)
                return r;
        if ((r = table_add_cell(t, joined)) < 0)
                return r;
        return table_add_cell(t, json_get_string(c->props, "Description"));
}

static int add_json(json_object *array, const ContextInfo *c) {
        json_object *o = json_object_new_object(), *devices = NULL;
        int r;

        if (!o || json_object_array_add(array, o) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        (void) json_object_object_get_ex(c->props, "Devices", &devices);
        if ((r = json_add(o, "path", json_object_new_string(c->path))) < 0 ||
            (r = json_add(o, "id", json_object_new_uint64(c->id))) < 0 ||
            (r = json_add(o, "owner", json_object_new_string(strempty(json_get_string(c->props, "Owner"))))) < 0 ||
            (r = json_add(o, "owner_uid", json_object_new_int64(json_get_int(c->props, "OwnerUid", -1)))) < 0 ||
            (r = json_add(o, "persistent", json_object_new_boolean(json_get_bool(c->props, "Persistent")))) < 0 ||
            (r = json_add(o, "backend", json_string_or_null(json_get_string(c->props, "Backend")))) < 0 ||
            (r = json_add(o, "description", json_string_or_null(json_get_string(c->props, "Description")))) < 0 ||
            (r = json_add(o, "devices", devices ? json_object_get(devices) : json_object_new_array())) < 0 ||
            (r = json_add(o, "kind", json_object_new_string(kind_of(c->props)))) < 0 ||
            (r = json_add(o, "pid", c->pid > 0 ? json_object_new_int64(c->pid) : NULL)) < 0 ||
            (r = json_add(o, "command", json_string_or_null(c->command))) < 0 ||
            (r = json_add(o, "unit", json_string_or_null(c->unit))) < 0 ||
            (r = json_add(o, "machine", json_string_or_null(c->machine))) < 0)
                return r;
        return 0;
}

static int run(int argc, char *argv[]) {
        static const char *const headers[] = { "CONTEXT", "KIND",    "OWNER",   "UID",        "PID",
                                               "COMMAND", "UNIT",    "MACHINE", "DEVICES",    "DESCRIPTION" };
        static const char *const headers_no_machine[] = { "CONTEXT", "KIND", "OWNER",   "UID",    "PID",
                                                          "COMMAND", "UNIT", "DEVICES", "DESCRIPTION" };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_json_ json_object *objects = NULL, *array = NULL;
        _cleanup_table_ Table *table = NULL;
        _cleanup_free_ ContextInfo *contexts = NULL;
        size_t n = 0;
        int r = 0;

        if (bus_open(&bus) < 0 || bus_get_managed_objects(bus, &objects) < 0)
                return EXIT_ERROR;

        contexts = calloc(json_object_object_length(objects) + 1, sizeof(ContextInfo));
        if (!contexts)
                goto oom;
        json_object_object_foreach(objects, path, ifaces) {
                json_object *props;
                if (strncmp(path, CONTEXT_PATH_PREFIX, strlen(CONTEXT_PATH_PREFIX)) != 0 ||
                    !json_object_object_get_ex(ifaces, CONTEXT_IFACE, &props))
                        continue;
                contexts[n++] = (ContextInfo) {
                        .path = path,
                        .id = strtoull(context_id(path), NULL, 10),
                        .props = props,
                };
        }
        qsort(contexts, n, sizeof(ContextInfo), compare_contexts);
        bool with_machine = false;
        for (size_t i = 0; i < n; i++) {
                find_process(bus, &contexts[i]);
                with_machine = with_machine || contexts[i].machine;
        }

        if (arg_json) {
                array = json_object_new_array();
                for (size_t i = 0; array && r >= 0 && i < n; i++)
                        r = add_json(array, &contexts[i]);
                if (!array || r < 0)
                        goto oom;
                r = json_print(array, false) < 0 ? EXIT_ERROR : EXIT_OK;
                free_processes(contexts, n);
                return r;
        }

        /* MACHINE only when a lease's process runs in a container or VM
         * registered with systemd-machined. */
        if (with_machine)
                table = table_new(headers, ELEMENTSOF(headers));
        else
                table = table_new(headers_no_machine, ELEMENTSOF(headers_no_machine));
        size_t last = (with_machine ? ELEMENTSOF(headers) : ELEMENTSOF(headers_no_machine)) - 1;
        if (!table || table_set_ellipsize(table, last) < 0 || table_set_ellipsize(table, last - 1) < 0 ||
            table_set_ellipsize(table, 6) < 0 || table_set_ellipsize(table, 2) < 0)
                goto oom;
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = add_row(table, &contexts[i], with_machine);
        if (r < 0)
                goto oom;
        r = table_print(table, stdout, arg_legend) < 0 ? EXIT_ERROR : EXIT_OK;
        free_processes(contexts, n);
        return r;

oom:
        free_processes(contexts, n);
        fputs("Out of memory.\n", stderr);
        return EXIT_ERROR;
}

const Verb verb_contexts = {
        .name = "contexts",
        .synopsis = "",
        .summary = "List the contexts (leases): kind, owner and its process, attached devices",
        .help = "Columns: CONTEXT (context/N), KIND (connection: ends with its owner's D-Bus\n"
                "connection; pid-tied: lasts as long as a process; persistent: until released),\n"
                "OWNER (bus name, or uid:N), UID, PID, COMMAND and UNIT of the owner's process\n"
                "(the process a pid-tied lease follows; - when not known, as for a persistent\n"
                "lease), MACHINE (only when a process runs in a registered container or VM),\n"
                "DEVICES (attached, comma-separated), DESCRIPTION.\n"
                "--json: an array of {path, id, kind, owner, owner_uid, persistent, backend,\n"
                "description, devices, pid, command, unit, machine}; null when not known.\n",
        .min_args = 0,
        .max_args = 0,
        .run = run,
        .pager = true,
};

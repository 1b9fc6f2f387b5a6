/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl contexts: the leases the daemon holds, from its object
 * manager. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "bus.h"
#include "hotresetctl.h"
#include "output.h"

typedef struct ContextInfo {
        const char *path;
        unsigned long long id;
        json_object *props;
} ContextInfo;

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

static int add_row(Table *t, const ContextInfo *c) {
        json_object *devices = NULL;
        _cleanup_free_ char *joined = NULL;
        int r;

        (void) json_object_object_get_ex(c->props, "Devices", &devices);
        joined = devices ? join_devices(devices) : strdup("");
        if (!joined)
                return -ENOMEM;
        if ((r = table_add_cell(t, context_short_name(c->path))) < 0 ||
            (r = table_add_cell(t, json_get_string(c->props, "Owner"))) < 0 ||
            (r = table_add_cellf(t, "%" PRId64, json_get_int(c->props, "OwnerUid", -1))) < 0 ||
            (r = table_add_cell(t, json_get_bool(c->props, "Persistent") ? "yes" : "no")) < 0 ||
            (r = table_add_cell(t, joined)) < 0)
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
            (r = json_add(o, "devices", devices ? json_object_get(devices) : json_object_new_array())) < 0)
                return r;
        return 0;
}

static int run(int argc, char *argv[]) {
        static const char *const headers[] = { "CONTEXT", "OWNER", "UID", "PERSISTENT", "DEVICES", "DESCRIPTION" };
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

        if (arg_json) {
                array = json_object_new_array();
                for (size_t i = 0; array && r >= 0 && i < n; i++)
                        r = add_json(array, &contexts[i]);
                if (!array || r < 0)
                        goto oom;
                return json_print(array, false) < 0 ? EXIT_ERROR : EXIT_OK;
        }

        table = table_new(headers, ELEMENTSOF(headers));
        for (size_t i = 0; table && r >= 0 && i < n; i++)
                r = add_row(table, &contexts[i]);
        if (!table || r < 0)
                goto oom;
        return table_print(table, stdout, arg_legend) < 0 ? EXIT_ERROR : EXIT_OK;

oom:
        fputs("Out of memory.\n", stderr);
        return EXIT_ERROR;
}

const Verb verb_contexts = {
        .name = "contexts",
        .synopsis = "",
        .summary = "List the contexts (leases): owner, persistence, attached devices",
        .help = "Columns: CONTEXT (context/N), OWNER (bus name, or uid:N when persistent), UID,\n"
                "PERSISTENT, DEVICES (attached, comma-separated), DESCRIPTION.\n"
                "--json: an array of {path, id, owner, owner_uid, persistent, backend,\n"
                "description, devices}.\n",
        .min_args = 0,
        .max_args = 0,
        .run = run,
};

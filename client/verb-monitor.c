/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl monitor: one line per event of the daemon — devices, reset
 * domains and contexts coming and going (ObjectManager), property changes,
 * hot resets announced (PrepareForHotReset) and done (HotResetDone), the
 * daemon starting and stopping — until SIGINT or SIGTERM. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "bus.h"
#include "hotresetctl.h"
#include "output.h"

/* Every signal the daemon sends from its objects. */
#define MATCH_DAEMON "type='signal',sender='" BUS_NAME "',path_namespace='" ROOT_PATH "'"
#define MATCH_OWNER                                                                                      \
        "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"                     \
        "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='" BUS_NAME "'"

/* "/org/hotresetd/Broker1/device/pci_0000_01_00_0" -> "0000:01:00.0". */
static bool device_address_from_path(const char *path, char buf[static PCI_ADDRESS_STRING_MAX]) {
        unsigned domain, bus, slot, function;
        int n = 0;

        if (sscanf(path, DEVICE_PATH_PREFIX "pci_%4x_%2x_%2x_%1x%n", &domain, &bus, &slot, &function, &n) != 4 ||
            path[n] != 0 || slot > 0x1f || function > 7)
                return false;
        PciAddress a = {
                .domain = (uint16_t) domain,
                .bus = (uint8_t) bus,
                .slot = (uint8_t) slot,
                .function = (uint8_t) function,
        };
        pci_address_format(&a, buf);
        return true;
}

static const char *object_kind(const char *path) {
        if (strncmp(path, DEVICE_PATH_PREFIX, strlen(DEVICE_PATH_PREFIX)) == 0)
                return "device";
        if (strncmp(path, DOMAIN_PATH_PREFIX, strlen(DOMAIN_PATH_PREFIX)) == 0)
                return "domain";
        if (strncmp(path, CONTEXT_PATH_PREFIX, strlen(CONTEXT_PATH_PREFIX)) == 0)
                return "context";
        if (streq(path, ROOT_PATH))
                return "manager";
        return "object";
}

/* The object as people name it: an address, context/N, domain/pci_…,
 * "manager". */
static const char *object_name(const char *path, char buf[static PCI_ADDRESS_STRING_MAX]) {
        if (device_address_from_path(path, buf))
                return buf;
        if (streq(path, ROOT_PATH))
                return "manager";
        return context_short_name(path);
}

/* A property value for people: sentinels as "-", lists comma-separated,
 * context paths short. */
static int append_value(FILE *f, json_object *v) {
        switch (json_object_get_type(v)) {
        case json_type_null:
                return fputs("-", f);
        case json_type_boolean:
                return fputs(json_object_get_boolean(v) ? "yes" : "no", f);
        case json_type_array: {
                size_t n = json_object_array_length(v);
                if (n == 0)
                        return fputs("-", f);
                for (size_t i = 0; i < n; i++) {
                        if (i)
                                fputc(',', f);
                        append_value(f, json_object_array_get_idx(v, i));
                }
                return 0;
        }
        case json_type_string: {
                const char *s = json_object_get_string(v);
                return fputs(*s && !streq(s, "/") ? context_short_name(s) : "-", f);
        }
        default:
                return fputs(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
                             f);
        }
}

static void append_properties(FILE *f, json_object *props, const char *const *only) {
        json_object_object_foreach(props, key, value) {
                bool wanted = !only;
                for (size_t i = 0; only && only[i]; i++)
                        wanted = wanted || streq(only[i], key);
                if (!wanted)
                        continue;
                fprintf(f, " %s=", key);
                append_value(f, value);
        }
}

/* InterfacesAdded (o, a{sa{sv}}) / InterfacesRemoved (o, as). */
static int describe_object_event(sd_bus_message *m, bool added, json_object *out, FILE *line, char *event,
                                 size_t event_size) {
        static const char *const device_summary[] = { "Driver", "IommuGroup", "ResetScope", "HotResetPossible", NULL };
        static const char *const context_summary[] = { "Owner", "Persistent", "Description", NULL };
        static const char *const domain_summary[] = { "Scope", "Possible", NULL };
        _cleanup_json_ json_object *what = NULL;
        char buf[PCI_ADDRESS_STRING_MAX];
        const char *path;
        int r;

        r = sd_bus_message_read(m, "o", &path);
        if (r < 0)
                return r;
        r = bus_message_read_json(m, &what);
        if (r < 0)
                return r;

        const char *kind = object_kind(path);
        snprintf(event, event_size, "%s-%s", kind, added ? "added" : "removed");
        fprintf(line, " %s", object_name(path, buf));
        if (json_add(out, "object", json_object_new_string(path)) < 0 ||
            (device_address_from_path(path, buf) && json_add(out, "address", json_object_new_string(buf)) < 0))
                return -ENOMEM;

        if (added) {
                json_object *props;
                if (json_object_object_get_ex(what, DEVICE_IFACE, &props))
                        append_properties(line, props, device_summary);
                else if (json_object_object_get_ex(what, CONTEXT_IFACE, &props))
                        append_properties(line, props, context_summary);
                else if (json_object_object_get_ex(what, DOMAIN_IFACE, &props))
                        append_properties(line, props, domain_summary);
        }
        return json_add(out, "interfaces", TAKE_PTR(what));
}

/* An invalidated property (the daemon sends the device's Affected that
 * way: without its value) read back with Get and added to changed; false
 * when that fails (the object went away meanwhile). The value is the one
 * of now, which may be newer than the signal. */
static bool fetch_invalidated(sd_bus *bus, const char *path, const char *interface, const char *property,
                              json_object *changed) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        json_object *value = NULL;

        if (bus_get_property_json(bus, path, interface, property, &error, &value) < 0)
                return false;
        if (json_object_object_add(changed, property, value) < 0) {
                json_object_put(value);
                return false;
        }
        return true;
}

/* PropertiesChanged (s, a{sv}, as). */
static int describe_properties_changed(sd_bus_message *m, json_object *out, FILE *line, char *event,
                                       size_t event_size) {
        _cleanup_json_ json_object *changed = NULL, *invalidated = NULL;
        const char *path = sd_bus_message_get_path(m), *interface;
        char buf[PCI_ADDRESS_STRING_MAX];
        size_t n_invalidated;
        int r;

        r = sd_bus_message_read(m, "s", &interface);
        if (r < 0)
                return r;
        if ((r = bus_message_read_json(m, &changed)) < 0 || (r = bus_message_read_json(m, &invalidated)) < 0)
                return r;

        /* Invalidated properties are shown with their value, read now;
         * "invalidated" keeps what the signal said. */
        n_invalidated = json_object_array_length(invalidated);
        bool *fetched = calloc(n_invalidated + 1, sizeof(bool));
        if (!fetched)
                return -ENOMEM;
        for (size_t i = 0; i < n_invalidated; i++)
                fetched[i] = fetch_invalidated(sd_bus_message_get_bus(m), path, interface,
                                               json_object_get_string(json_object_array_get_idx(invalidated, i)),
                                               changed);

        const char *kind = object_kind(path);
        snprintf(event, event_size, "%s-changed", kind);
        fprintf(line, " %s", object_name(path, buf));
        append_properties(line, changed, NULL);
        for (size_t i = 0; i < n_invalidated; i++)
                if (!fetched[i])
                        fprintf(line, " %s=(invalidated)",
                                json_object_get_string(json_object_array_get_idx(invalidated, i)));
        free(fetched);

        if (json_add(out, "object", json_object_new_string(path)) < 0 ||
            (device_address_from_path(path, buf) && json_add(out, "address", json_object_new_string(buf)) < 0) ||
            json_add(out, "interface", json_object_new_string(interface)) < 0 ||
            json_add(out, "properties", TAKE_PTR(changed)) < 0 ||
            json_add(out, "invalidated", TAKE_PTR(invalidated)) < 0)
                return -ENOMEM;
        return 0;
}

/* HotResetDone (s address, as affected, t duration_usec, s result). */
static int describe_hot_reset_done(sd_bus_message *m, json_object *out, FILE *line) {
        _cleanup_strv_free_ char **affected = NULL;
        _cleanup_free_ char *joined = NULL;
        const char *address, *result;
        uint64_t duration;
        int r;

        if ((r = sd_bus_message_read(m, "s", &address)) < 0 || (r = sd_bus_message_read_strv(m, &affected)) < 0 ||
            (r = sd_bus_message_read(m, "ts", &duration, &result)) < 0)
                return r;
        joined = strv_join(affected, ",");
        if (!joined)
                return -ENOMEM;
        fprintf(line, " %s result=%s duration=%" PRIu64 ".%03" PRIu64 "ms affected=%s", address, result,
                duration / 1000, duration % 1000, *joined ? joined : "-");

        json_object *list = json_object_new_array();
        if (json_add(out, "affected", list) < 0)
                return -ENOMEM;
        for (size_t i = 0; affected && affected[i]; i++)
                if (json_object_array_add(list, json_object_new_string(affected[i])) < 0)
                        return -ENOMEM;
        if (json_add(out, "address", json_object_new_string(address)) < 0 ||
            json_add(out, "duration_usec", json_object_new_uint64(duration)) < 0 ||
            json_add(out, "result", json_object_new_string(result)) < 0)
                return -ENOMEM;
        return 0;
}

/* PrepareForHotReset (s address, as affected), sent by a context. */
static int describe_prepare(sd_bus_message *m, json_object *out, FILE *line) {
        _cleanup_strv_free_ char **affected = NULL;
        _cleanup_free_ char *joined = NULL;
        const char *path = sd_bus_message_get_path(m), *address;
        int r;

        if ((r = sd_bus_message_read(m, "s", &address)) < 0 || (r = sd_bus_message_read_strv(m, &affected)) < 0)
                return r;
        joined = strv_join(affected, ",");
        if (!joined)
                return -ENOMEM;
        fprintf(line, " %s %s affected=%s", context_short_name(path), address, *joined ? joined : "-");

        json_object *list = json_object_new_array();
        if (json_add(out, "affected", list) < 0)
                return -ENOMEM;
        for (size_t i = 0; affected && affected[i]; i++)
                if (json_object_array_add(list, json_object_new_string(affected[i])) < 0)
                        return -ENOMEM;
        if (json_add(out, "object", json_object_new_string(path)) < 0 ||
            json_add(out, "context", json_object_new_string(path)) < 0 ||
            json_add(out, "address", json_object_new_string(address)) < 0)
                return -ENOMEM;
        return 0;
}

/* NameOwnerChanged (s name, s old, s new) for the daemon's name. */
static int describe_owner_changed(sd_bus_message *m, json_object *out, FILE *line, char *event, size_t event_size) {
        const char *name, *old_owner, *new_owner;
        int r;

        r = sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner);
        if (r < 0)
                return r;
        snprintf(event, event_size, "%s", *new_owner ? "daemon-started" : "daemon-stopped");
        fprintf(line, " %s", *new_owner ? new_owner : old_owner);
        if (json_add(out, "owner", json_object_new_string(*new_owner ? new_owner : old_owner)) < 0)
                return -ENOMEM;
        return 0;
}

static int describe(sd_bus_message *m, json_object *out, FILE *line, char *event, size_t event_size) {
        const char *path = sd_bus_message_get_path(m);

        if (sd_bus_message_is_signal(m, OBJECT_MANAGER_IFACE, "InterfacesAdded"))
                return describe_object_event(m, true, out, line, event, event_size);
        if (sd_bus_message_is_signal(m, OBJECT_MANAGER_IFACE, "InterfacesRemoved"))
                return describe_object_event(m, false, out, line, event, event_size);
        if (sd_bus_message_is_signal(m, PROPERTIES_IFACE, "PropertiesChanged"))
                return describe_properties_changed(m, out, line, event, event_size);
        if (sd_bus_message_is_signal(m, MANAGER_IFACE, "HotResetDone")) {
                snprintf(event, event_size, "hot-reset-done");
                return describe_hot_reset_done(m, out, line);
        }
        if (sd_bus_message_is_signal(m, CONTEXT_IFACE, "PrepareForHotReset")) {
                snprintf(event, event_size, "prepare-for-hot-reset");
                return describe_prepare(m, out, line);
        }
        if (sd_bus_message_is_signal(m, "org.freedesktop.DBus", "NameOwnerChanged"))
                return describe_owner_changed(m, out, line, event, event_size);

        /* Anything newer than this client: name it, keep the arguments. */
        _cleanup_json_ json_object *args = json_object_new_array();
        if (!args)
                return -ENOMEM;
        while (sd_bus_message_peek_type(m, NULL, NULL) > 0) {
                json_object *v = NULL;
                int r = bus_message_read_json(m, &v);
                if (r < 0)
                        return r;
                if (json_object_array_add(args, v) < 0) {
                        json_object_put(v);
                        return -ENOMEM;
                }
        }
        snprintf(event, event_size, "signal");
        fprintf(line, " %s %s.%s", strempty(path), strempty(sd_bus_message_get_interface(m)),
                strempty(sd_bus_message_get_member(m)));
        if (json_add(out, "object", json_object_new_string(strempty(path))) < 0 ||
            json_add(out, "interface", json_object_new_string(strempty(sd_bus_message_get_interface(m)))) < 0 ||
            json_add(out, "member", json_object_new_string(strempty(sd_bus_message_get_member(m)))) < 0 ||
            json_add(out, "arguments", TAKE_PTR(args)) < 0)
                return -ENOMEM;
        return 0;
}

static int on_signal_message(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        _cleanup_json_ json_object *out = json_object_new_object();
        _cleanup_free_ char *details = NULL;
        char timestamp[64], event[64] = "";
        size_t details_size = 0;
        uint64_t usec = 0;
        int r;

        FILE *line = open_memstream(&details, &details_size);
        if (!out || !line) {
                if (line)
                        fclose(line);
                fputs("Out of memory.\n", stderr);
                return 0;
        }
        (void) format_timestamp_now(timestamp, sizeof timestamp, &usec);
        r = describe(m, out, line, event, sizeof event);
        fclose(line);
        if (r < 0) {
                fprintf(stderr, "Failed to parse %s.%s from %s: %s\n", strempty(sd_bus_message_get_interface(m)),
                        strempty(sd_bus_message_get_member(m)), strempty(sd_bus_message_get_path(m)), strerror(-r));
                return 0; /* one odd message does not end the monitor */
        }

        if (arg_json) {
                /* The time and the event name first, the details after. */
                _cleanup_json_ json_object *o = json_object_new_object();
                if (!o || json_add(o, "timestamp", json_object_new_string(timestamp)) < 0 ||
                    json_add(o, "timestamp_usec", json_object_new_uint64(usec)) < 0 ||
                    json_add(o, "event", json_object_new_string(event)) < 0)
                        return 0;
                json_object_object_foreach(out, key, value)
                        if (json_add(o, key, json_object_get(value)) < 0)
                                return 0;
                (void) json_print(o, true);
        } else {
                printf("%s %s%s\n", timestamp, event, strempty(details));
                fflush(stdout);
        }
        return 0;
}

static int run(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        if (bus_open(&bus) < 0)
                return EXIT_ERROR;

        /* Synchronous AddMatch: once it returns, no event is missed. */
        r = sd_bus_add_match(bus, NULL, MATCH_DAEMON, on_signal_message, NULL);
        if (r >= 0)
                r = sd_bus_add_match(bus, NULL, MATCH_OWNER, on_signal_message, NULL);
        if (r < 0) {
                bus_log_error(NULL, r, "subscribe to the daemon's signals");
                return EXIT_ERROR;
        }
        fprintf(stderr, "Monitoring hotresetd events (Ctrl-C to stop).\n");

        r = bus_loop_until_signal(bus);
        return r < 0 ? EXIT_ERROR : EXIT_OK;
}

const Verb verb_monitor = {
        .name = "monitor",
        .synopsis = "",
        .summary = "Print the daemon's events as they happen, until interrupted",
        .help = "One line per event: TIMESTAMP EVENT OBJECT DETAILS. Events: device-added,\n"
                "device-removed, device-changed, domain-added, domain-removed,\n"
                "domain-changed (reset domains, named domain/pci_SSSS_BB[_DD]),\n"
                "context-added, context-removed, context-changed, manager-changed\n"
                "(PropertyName=value for what changed), prepare-for-hot-reset,\n"
                "hot-reset-done, daemon-started, daemon-stopped. A property the daemon only\n"
                "invalidates (a device's Affected) is read when the signal comes and shown\n"
                "with that value.\n"
                "--json: one object a line: {timestamp, timestamp_usec, event, object, ...}\n"
                "with the signal's data under D-Bus names (properties, invalidated,\n"
                "interfaces, affected, duration_usec, result); invalidated properties also\n"
                "appear in properties with the value read then. Runs until SIGINT or SIGTERM\n"
                "(exit status 0).\n",
        .min_args = 0,
        .max_args = 0,
        .run = run,
};

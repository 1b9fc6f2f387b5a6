/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl's side of the bus: connecting, calling the daemon, printing
 * its errors, and reading any D-Bus value as JSON. */
#pragma once

#include <json-c/json.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "util.h"

#define BUS_NAME "org.hotresetd.Broker1"
#define ROOT_PATH "/org/hotresetd/Broker1"
#define DEVICE_PATH_PREFIX ROOT_PATH "/device/"
#define DOMAIN_PATH_PREFIX ROOT_PATH "/domain/"
#define CONTEXT_PATH_PREFIX ROOT_PATH "/context/"
#define MANAGER_IFACE "org.hotresetd.Broker1.Manager"
#define DEVICE_IFACE "org.hotresetd.Broker1.Device"
#define DOMAIN_IFACE "org.hotresetd.Broker1.ResetDomain"
#define CONTEXT_IFACE "org.hotresetd.Broker1.Context"
#define PROPERTIES_IFACE "org.freedesktop.DBus.Properties"
#define OBJECT_MANAGER_IFACE "org.freedesktop.DBus.ObjectManager"

#define USEC_PER_SEC UINT64_C(1000000)
/* A hot reset waits for resets with overlapping scopes and retries EBUSY:
 * give it much longer than sd-bus's default of 25 s. */
#define RESET_CALL_TIMEOUT_USEC (300 * USEC_PER_SEC)

/* Connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS is honoured); prints
 * why on failure. */
int bus_open(sd_bus **ret);

/* Prints "Failed to <what>: <message>" for a failed call (or strerror(-r)
 * when there is no D-Bus error), " (<error name>)" with --verbose. The
 * daemon not running and an unknown context are said in words of their
 * own. Returns r. */
int bus_log_error(const sd_bus_error *error, int r, const char *what_fmt, ...) _printf_(3, 4);

/* UnknownObject for a context path: the context does not exist. */
bool bus_error_is_unknown_context(const sd_bus_error *error);

/* The Manager's properties (Version, Backend, Emulated, ...) as JSON. */
int bus_get_manager(sd_bus *bus, json_object **ret);

/* After a verb that acted on the machine: on the emulated kernel, says so
 * (text output only: JSON carries "emulated" itself). */
void print_emulated_note(sd_bus *bus);
/* Manager.Emulated (false when it cannot be read). */
bool bus_is_emulated(sd_bus *bus);

/* A D-Bus error that means "this hot reset is refused or not possible"
 * (exit status 3), as opposed to a failed call. */
bool bus_error_is_refusal(const sd_bus_error *error);

/* Manager.GetDevice: the object path of a (canonical) address. Prints the
 * error on failure. */
int bus_get_device_path(sd_bus *bus, const char *address, char **ret_path);

/* Properties.GetAll as a JSON object {name: value}. Prints the error on
 * failure, naming `what`. */
int bus_get_all_properties(sd_bus *bus, const char *path, const char *interface, const char *what,
                           json_object **ret);

/* Properties.Get of one property as JSON. Quiet: the caller decides
 * whether a failure is worth printing (error is filled in). Explicit
 * properties (the device's Affected) are only served this way: GetAll and
 * GetManagedObjects leave them out. */
int bus_get_property_json(sd_bus *bus, const char *path, const char *interface, const char *property,
                          sd_bus_error *error, json_object **ret);

/* ObjectManager.GetManagedObjects as {path: {interface: {name: value}}}:
 * devices, reset domains and contexts. */
int bus_get_managed_objects(sd_bus *bus, json_object **ret);

/* Reads the next complete value of m as JSON: arrays as arrays, dicts as
 * objects (keys stringified), structs as arrays, variants unwrapped, 64-bit
 * unsigned values exactly. */
int bus_message_read_json(sd_bus_message *m, json_object **ret);

static inline void json_object_putp(json_object **o) {
        if (*o)
                json_object_put(*o);
}
#define _cleanup_json_ _cleanup_(json_object_putp)

/* Shortcuts for JSON read back from the bus. NULL/default when missing or
 * of another type. */
const char *json_get_string(json_object *o, const char *key);
int64_t json_get_int(json_object *o, const char *key, int64_t def);
bool json_get_bool(json_object *o, const char *key);

/* Runs an event loop with the bus attached until SIGINT or SIGTERM (returns
 * 0) or until the bus goes away (prints so, returns -ECONNRESET). */
int bus_loop_until_signal(sd_bus *bus);

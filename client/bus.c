/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "bus.h"
#include "hotresetctl.h"
#include "output.h"
#include "polkit-agent.h"

int bus_open(sd_bus **ret) {
        int r;

        r = sd_bus_open_system(ret);
        if (r < 0) {
                fprintf(stderr, "Failed to connect to the system bus: %s\n", strerror(-r));
                return r;
        }
        /* A person at a terminal can answer a polkit prompt: the calls
         * then carry ALLOW_INTERACTIVE_AUTHORIZATION, and a verb that
         * changes state starts a text agent first (as systemctl does). */
        if (arg_ask_password && isatty(STDIN_FILENO)) {
                (void) sd_bus_set_allow_interactive_authorization(*ret, true);
                if (current_verb && current_verb->interactive)
                        (void) polkit_agent_open();
        }
        return 0;
}

/* "/org/hotresetd/Broker1/context/9" in an UnknownObject message -> "9". */
static char *unknown_context(const sd_bus_error *error) {
        const char *p = error->message ? strstr(error->message, CONTEXT_PATH_PREFIX) : NULL;
        if (!p)
                return NULL;
        p += strlen(CONTEXT_PATH_PREFIX);
        return strndup(p, strspn(p, "0123456789"));
}

int bus_log_error(const sd_bus_error *error, int r, const char *what_fmt, ...) {
        _cleanup_free_ char *context = NULL, *text = NULL;
        size_t size = 0;
        va_list ap;

        /* Written to a string first: on a terminal it is folded at spaces
         * rather than cut mid-word by the terminal. */
        FILE *f = open_memstream(&text, &size);
        if (!f)
                return r;

        /* The two a person meets most, in words instead of D-Bus's. */
        if (sd_bus_error_has_names(error, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
                fprintf(f, "hotresetd is not running: nothing owns " BUS_NAME " on the system bus");
        else if (sd_bus_error_has_names(error, SD_BUS_ERROR_UNKNOWN_OBJECT, SD_BUS_ERROR_UNKNOWN_INTERFACE) &&
                 (context = unknown_context(error)) && *context)
                fprintf(f, "no context %s (`%s contexts` lists them)", context, program_invocation_short_name);
        else {
                fputs("Failed to ", f);
                va_start(ap, what_fmt);
                vfprintf(f, what_fmt, ap);
                va_end(ap);
                if (sd_bus_error_is_set(error))
                        fprintf(f, ": %s", error->message ?: "no message");
                else
                        fprintf(f, ": %s", strerror(r < 0 ? -r : r));
        }
        if (arg_verbose && sd_bus_error_is_set(error))
                fprintf(f, " (%s)", error->name);
        if (fclose(f) != 0 || !text)
                return r;
        fprint_folded(stderr, text, 0);
        return r;
}

bool bus_error_is_unknown_context(const sd_bus_error *error) {
        _cleanup_free_ char *context = NULL;
        return sd_bus_error_has_names(error, SD_BUS_ERROR_UNKNOWN_OBJECT, SD_BUS_ERROR_UNKNOWN_INTERFACE) &&
               (context = unknown_context(error)) && *context;
}

int bus_get_manager(sd_bus *bus, json_object **ret) {
        return bus_get_all_properties(bus, ROOT_PATH, MANAGER_IFACE, "the daemon", ret);
}

bool bus_is_emulated(sd_bus *bus) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int emulated = 0;

        if (sd_bus_get_property_trivial(bus, BUS_NAME, ROOT_PATH, MANAGER_IFACE, "Emulated", &error, 'b',
                                        &emulated) < 0)
                return false;
        return emulated;
}

void print_emulated_note(sd_bus *bus) {
        if (arg_json || !arg_legend || !bus_is_emulated(bus))
                return;
        printf("%sEmulated machine:%s no real device was touched.\n", ansi_yellow(), ansi_normal());
}

bool bus_error_is_refusal(const sd_bus_error *error) {
        /* What the daemon answers when the reset itself cannot be done; a
         * missing device or context, bad arguments or a denied caller are
         * plain failures. */
        static const char *const refusals[] = {
                "org.hotresetd.Broker1.Error.NotOwned",
                "org.hotresetd.Broker1.Error.NotInDevSet",
                "org.hotresetd.Broker1.Error.NoResetMechanism",
                "org.hotresetd.Broker1.Error.InUse",
                "org.hotresetd.Broker1.Error.Busy",
                "org.hotresetd.Broker1.Error.RateLimited",
                "org.hotresetd.Broker1.Error.PolicyDenied",
                "org.hotresetd.Broker1.Error.Unsupported",
        };

        for (size_t i = 0; i < ELEMENTSOF(refusals); i++)
                if (sd_bus_error_has_name(error, refusals[i]))
                        return true;
        return false;
}

int bus_get_device_path(sd_bus *bus, const char *address, char **ret_path) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *path;
        int r;

        r = sd_bus_call_method(bus, BUS_NAME, ROOT_PATH, MANAGER_IFACE, "GetDevice", &error, &reply, "s", address);
        if (r < 0)
                return bus_log_error(&error, r, "look up %s", address);
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return bus_log_error(NULL, r, "parse the reply of GetDevice");
        *ret_path = strdup(path);
        return *ret_path ? 0 : -ENOMEM;
}

int bus_get_all_properties(sd_bus *bus, const char *path, const char *interface, const char *what,
                           json_object **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_call_method(bus, BUS_NAME, path, PROPERTIES_IFACE, "GetAll", &error, &reply, "s", interface);
        if (r < 0)
                return bus_log_error(&error, r, "get the properties of %s", what);
        r = bus_message_read_json(reply, ret);
        if (r < 0)
                return bus_log_error(NULL, r, "parse the properties of %s", what);
        return 0;
}

int bus_get_property_json(sd_bus *bus, const char *path, const char *interface, const char *property,
                          sd_bus_error *error, json_object **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_call_method(bus, BUS_NAME, path, PROPERTIES_IFACE, "Get", error, &reply, "ss", interface,
                               property);
        if (r < 0)
                return r;
        return bus_message_read_json(reply, ret);
}

int bus_get_managed_objects(sd_bus *bus, json_object **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_call_method(bus, BUS_NAME, ROOT_PATH, OBJECT_MANAGER_IFACE, "GetManagedObjects", &error, &reply,
                               NULL);
        if (r < 0)
                return bus_log_error(&error, r, "list the daemon's objects");
        r = bus_message_read_json(reply, ret);
        if (r < 0)
                return bus_log_error(NULL, r, "parse the daemon's objects");
        return 0;
}

static int read_basic_json(sd_bus_message *m, char type, json_object **ret) {
        union {
                uint8_t u8;
                int16_t s16;
                uint16_t u16;
                int32_t s32;
                uint32_t u32;
                int64_t s64;
                uint64_t u64;
                int b;
                double d;
                const char *s;
        } v;
        json_object *o;
        int r;

        r = sd_bus_message_read_basic(m, type, &v);
        if (r < 0)
                return r;
        switch (type) {
        case 'y':
                o = json_object_new_int(v.u8);
                break;
        case 'n':
                o = json_object_new_int(v.s16);
                break;
        case 'q':
                o = json_object_new_int(v.u16);
                break;
        case 'i':
        case 'h':
                o = json_object_new_int(v.s32);
                break;
        case 'u':
                o = json_object_new_int64(v.u32);
                break;
        case 'x':
                o = json_object_new_int64(v.s64);
                break;
        case 't':
                o = json_object_new_uint64(v.u64);
                break;
        case 'b':
                o = json_object_new_boolean(v.b);
                break;
        case 'd':
                o = json_object_new_double(v.d);
                break;
        case 's':
        case 'o':
        case 'g':
                o = json_object_new_string(v.s);
                break;
        default:
                return -EBADMSG;
        }
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

/* a{..}: entries "{kv}" become members, keys as strings. */
static int read_dict_json(sd_bus_message *m, const char *contents, json_object **ret) {
        _cleanup_json_ json_object *obj = json_object_new_object();
        _cleanup_free_ char *entry = strndup(contents + 1, strlen(contents) - 2);
        int r;

        if (!obj || !entry)
                return -ENOMEM;
        r = sd_bus_message_enter_container(m, 'a', contents);
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', entry)) > 0) {
                _cleanup_json_ json_object *key = NULL, *value = NULL;

                r = bus_message_read_json(m, &key);
                if (r < 0)
                        return r;
                r = bus_message_read_json(m, &value);
                if (r < 0)
                        return r;
                r = json_object_object_add(obj, json_object_get_string(key), TAKE_PTR(value));
                if (r < 0)
                        return -ENOMEM;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(obj);
        return 0;
}

/* Arrays and structs both become JSON arrays. */
static int read_sequence_json(sd_bus_message *m, char type, const char *contents, json_object **ret) {
        _cleanup_json_ json_object *arr = json_object_new_array();
        int r;

        if (!arr)
                return -ENOMEM;
        r = sd_bus_message_enter_container(m, type, contents);
        if (r < 0)
                return r;
        while ((r = sd_bus_message_at_end(m, false)) == 0) {
                json_object *item = NULL;
                r = bus_message_read_json(m, &item);
                if (r < 0)
                        return r;
                if (json_object_array_add(arr, item) < 0) {
                        json_object_put(item);
                        return -ENOMEM;
                }
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(arr);
        return 0;
}

int bus_message_read_json(sd_bus_message *m, json_object **ret) {
        const char *contents;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        if (r == 0)
                return -EBADMSG; /* nothing left to read */

        switch (type) {
        case 'a':
                if (contents[0] == '{')
                        return read_dict_json(m, contents, ret);
                return read_sequence_json(m, 'a', contents, ret);
        case 'r':
                return read_sequence_json(m, 'r', contents, ret);
        case 'v':
                r = sd_bus_message_enter_container(m, 'v', contents);
                if (r < 0)
                        return r;
                r = bus_message_read_json(m, ret);
                if (r < 0)
                        return r;
                return sd_bus_message_exit_container(m);
        default:
                return read_basic_json(m, type, ret);
        }
}

const char *json_get_string(json_object *o, const char *key) {
        json_object *v;
        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

int64_t json_get_int(json_object *o, const char *key, int64_t def) {
        json_object *v;
        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return def;
        return json_object_get_int64(v);
}

bool json_get_bool(json_object *o, const char *key) {
        json_object *v;
        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_boolean))
                return false;
        return json_object_get_boolean(v);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static int on_disconnect(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        fputs("The bus connection was closed.\n", stderr);
        return sd_event_exit(sd_bus_get_event(sd_bus_message_get_bus(m)), -ECONNRESET);
}

int bus_loop_until_signal(sd_bus *bus) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        sigset_t mask;
        int r;

        /* sd-event takes signals through a signalfd: block them first. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return bus_log_error(NULL, -errno, "block SIGINT and SIGTERM");

        r = sd_event_default(&event);
        if (r < 0)
                return bus_log_error(NULL, r, "allocate an event loop");
        if ((r = sd_event_add_signal(event, NULL, SIGINT, on_signal, NULL)) < 0 ||
            (r = sd_event_add_signal(event, NULL, SIGTERM, on_signal, NULL)) < 0)
                return bus_log_error(NULL, r, "watch SIGINT and SIGTERM");
        r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return bus_log_error(NULL, r, "attach the bus to the event loop");
        r = sd_bus_match_signal(bus, NULL, "org.freedesktop.DBus.Local", "/org/freedesktop/DBus/Local",
                                "org.freedesktop.DBus.Local", "Disconnected", on_disconnect, NULL);
        if (r < 0)
                return bus_log_error(NULL, r, "watch the bus connection");

        r = sd_event_loop(event);
        (void) sd_bus_detach_event(bus);
        if (r < 0 && r != -ECONNRESET)
                return bus_log_error(NULL, r, "run the event loop");
        return r;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "bus-util.h"
#include "log.h"
#include "util.h"


const char *sanitize_for_message(const char *s, char *buf, size_t size) {
        size_t i = 0, max = size - 4;

        for (; s && *s && i < max; s++)
                buf[i++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
        if (s && *s)
                buf[i++] = '.', buf[i++] = '.', buf[i++] = '.';
        buf[i] = 0;
        return buf;
}

int bus_parse_address(const char *s, PciAddress *ret, sd_bus_error *error) {
        char shown[68];

        if (pci_address_parse(s, ret) < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Invalid PCI address '%s': %s.",
                                         sanitize_for_message(s, shown, sizeof shown), PCI_ADDRESS_FORM_HINT);
        return 0;
}

int bus_read_options(sd_bus_message *msg, const OptionSpec *specs, size_t n_specs, sd_bus_error *error) {
        int r;

        r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        for (;;) {
                const char *key, *contents;
                const OptionSpec *spec = NULL;
                char shown[68];

                r = sd_bus_message_enter_container(msg, 'e', "sv");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                r = sd_bus_message_read(msg, "s", &key);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < n_specs; i++)
                        if (streq(specs[i].name, key))
                                spec = &specs[i];
                if (!spec)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown option '%s'.",
                                                 sanitize_for_message(key, shown, sizeof shown));
                r = sd_bus_message_peek_type(msg, NULL, &contents);
                if (r < 0)
                        return r;
                if (!contents || contents[0] != spec->type || contents[1] != 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option '%s' must be of type '%c'.",
                                                 spec->name, spec->type);
                if (spec->type == 'b') {
                        int b;
                        r = sd_bus_message_read(msg, "v", "b", &b);
                        if (r < 0)
                                return r;
                        *(bool *) spec->ret = b;
                } else if (spec->type == 'h') {
                        int fd;
                        r = sd_bus_message_read(msg, "v", "h", &fd);
                        if (r < 0)
                                return r;
                        *(int *) spec->ret = fd;
                } else {
                        const char *s;
                        r = sd_bus_message_read(msg, "v", "s", &s);
                        if (r < 0)
                                return r;
                        *(const char **) spec->ret = s;
                }
                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_exit_container(msg);
}

int bus_add_object_tree(sd_bus *bus, const char *prefix, const char *interface, const sd_bus_vtable *vtable,
                        sd_bus_object_find_t find, sd_bus_node_enumerator_t enumerator, void *userdata,
                        const char *what) {
        int r;

        r = sd_bus_add_fallback_vtable(bus, NULL, prefix, interface, vtable, find, userdata);
        if (r < 0)
                return log_error_errno(r, "Failed to register the %s objects: %m", what);
        r = sd_bus_add_node_enumerator(bus, NULL, prefix, enumerator, userdata);
        if (r < 0)
                return log_error_errno(r, "Failed to register the %s enumerator: %m", what);
        return 0;
}

int bus_publish_object(sd_bus *bus, const char *path, const char *interface, bool *announced, const char **changed,
                       size_t n_changed, bool silent) {
        int r;

        if (!*announced) {
                /* A new object is announced with its settled state, not
                 * signalled as changes. */
                *announced = true;
                if (silent || !bus)
                        return 0;
                r = sd_bus_emit_object_added(bus, path);
                if (r < 0)
                        log_warning_errno(r, "Failed to announce %s: %m", path);
                return 0;
        }
        if (n_changed == 0 || silent || !bus)
                return 0;
        changed[n_changed] = NULL;
        r = sd_bus_emit_properties_changed_strv(bus, path, interface, (char **) changed);
        if (r < 0)
                log_warning_errno(r, "Failed to signal changes of %s: %m", path);
        return 0;
}

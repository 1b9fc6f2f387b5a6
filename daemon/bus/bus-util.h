/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers of the bus edge that turn bad arguments into precise errors. */
#pragma once

#include <systemd/sd-bus.h>

#include "pci-address.h"
#include "pci-device.h"
#include "errors.h"

/* Parses a caller-supplied address. On failure sets InvalidArgs naming what
 * was given (sanitised: callers may send anything) and the expected form,
 * and returns -EINVAL. */
int bus_parse_address(const char *s, PciAddress *ret, sd_bus_error *error);

/* Copies at most max bytes of untrusted s into buf as printable ASCII, with
 * "..." when cut, so error messages stay readable and valid UTF-8. */
const char *sanitize_for_message(const char *s, char *buf, size_t size);

/* Reads an a{sv} of options, refusing unknown keys and wrong types, so a
 * typo is an error and not a silently ignored wish. */
typedef struct OptionSpec {
        const char *name;
        char type; /* 'b', 's' or 'h' */
        void *ret; /* bool *, const char ** or int * (the string and the fd valid while msg is) */
} OptionSpec;
int bus_read_options(sd_bus_message *msg, const OptionSpec *specs, size_t n_specs, sd_bus_error *error);

/* One object per item below prefix, served by a fallback vtable (no
 * registration per object) and listed by a node enumerator; what names the
 * objects in a failure's log line. */
int bus_add_object_tree(sd_bus *bus, const char *prefix, const char *interface, const sd_bus_vtable *vtable,
                        sd_bus_object_find_t find, sd_bus_node_enumerator_t enumerator, void *userdata,
                        const char *what);

/* The end of a publish pass for one object: InterfacesAdded the first time
 * (*announced is set), PropertiesChanged naming changed[0..n_changed)
 * after (changed must have room for a terminating NULL); nothing when
 * silent (the state before anyone listened) or without a bus. */
int bus_publish_object(sd_bus *bus, const char *path, const char *interface, bool *announced, const char **changed,
                       size_t n_changed, bool silent);

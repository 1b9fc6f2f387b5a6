/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "machine-file.h"
#include "util.h"

/* A machine file describes at most 65536 domains of 256 buses; anything this
 * big is a mistake (a log file passed by accident), not a machine. */
#define MACHINE_FILE_SIZE_MAX (64u * 1024u * 1024u)

/* PCI-to-PCI bridge, normal decode: what sysfs shows for the bridges a
 * machine file describes unless it says otherwise. */
#define PCI_CLASS_BRIDGE_PCI 0x060400u

static const char *const top_keys = "cdev, devices, description, reset_delay_ms";
static const char *const device_keys =
        "address, vendor, device, class, driver, iommu_group, reset_methods, bridge, description";
static const char *const bridge_keys = "secondary_bus, slot_reset";

/* ---- Finding places in the text ----
 *
 * json-c does not keep positions in the objects it builds, so errors found
 * after parsing are located by walking the (already validated) text again
 * along the path of the offending value. This only runs on the error path
 * and every step stops at the terminating NUL, so a surprise in the text
 * costs precision, never safety. */

static const char *scan_ws(const char *p) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
                p++;
        return p;
}

/* p is at the opening quote (json-c also accepts single quotes). */
static const char *scan_string(const char *p) {
        char quote = *p++;

        while (*p && *p != quote) {
                if (*p == '\\' && p[1])
                        p++;
                p++;
        }
        return *p ? p + 1 : p;
}

/* Skips one value starting at p; returns the position after it. */
static const char *scan_value(const char *p) {
        unsigned depth = 0;

        do {
                p = scan_ws(p);
                if (*p == '"' || *p == '\'')
                        p = scan_string(p);
                else if (*p == '{' || *p == '[') {
                        depth++;
                        p++;
                } else if (*p == '}' || *p == ']') {
                        if (depth == 0)
                                return p;
                        depth--;
                        p++;
                } else if (*p == ',' || *p == ':') {
                        if (depth == 0)
                                return p;
                        p++;
                } else if (*p == 0)
                        return p;
                else /* a number or a literal */
                        p += strcspn(p, " \t\r\n,:]}");
        } while (depth > 0);

        return p;
}

/* p is at '{'. Returns where the member's key (want_key) or value starts, or
 * NULL. json-c keeps the last of duplicate keys, so do we. */
static const char *scan_member(const char *p, const char *key, bool want_key) {
        const char *found = NULL;
        size_t klen = strlen(key);

        if (*p != '{')
                return NULL;
        p = scan_ws(p + 1);
        while (*p == '"' || *p == '\'') {
                const char *k = p, *end = scan_string(p);
                bool match = (size_t) (end - k) == klen + 2 && strncmp(k + 1, key, klen) == 0;

                p = scan_ws(end);
                if (*p != ':')
                        break;
                p = scan_ws(p + 1);
                if (match)
                        found = want_key ? k : p;
                p = scan_ws(scan_value(p));
                if (*p != ',')
                        break;
                p = scan_ws(p + 1);
        }
        return found;
}

/* p is at '['. */
static const char *scan_element(const char *p, size_t index) {
        if (*p != '[')
                return NULL;
        p = scan_ws(p + 1);
        for (size_t i = 0; *p && *p != ']'; i++) {
                if (i == index)
                        return p;
                p = scan_ws(scan_value(p));
                if (*p != ',')
                        return NULL;
                p = scan_ws(p + 1);
        }
        return NULL;
}

/* The position of devices[index] (or of the top level when index is
 * SIZE_MAX) and, within it, of the value (or key) at the dotted path. Falls
 * back to the innermost thing found. */
static const char *locate(const char *text, size_t index, const char *path, bool want_key) {
        const char *p = scan_ws(text), *q;

        if (index != SIZE_MAX) {
                q = scan_member(p, "devices", false);
                if (!q)
                        return p;
                p = q;
                q = scan_element(p, index);
                if (!q)
                        return p;
                p = q;
        }

        while (path && *path) {
                char seg[64];
                size_t n = strcspn(path, ".");

                if (n >= sizeof seg)
                        break;
                memcpy(seg, path, n);
                seg[n] = 0;
                path += n + (path[n] == '.');

                q = scan_member(p, seg, want_key && !*path);
                if (!q)
                        break;
                p = q;
        }
        return p;
}

/* ---- Errors ---- */

typedef struct Parser {
        const char *text;
        const char *filename;
        char *error; /* the first error */
} Parser;

/* What an error is about: the top level or one device. */
typedef struct Where {
        size_t index; /* SIZE_MAX for the top level */
        char label[sizeof("devices[18446744073709551615] (0000:00:00.0)")];
} Where;

static void where_init(Where *w, size_t index, const PciAddress *a) {
        w->index = index;
        if (index == SIZE_MAX)
                w->label[0] = 0;
        else if (!a)
                snprintf(w->label, sizeof w->label, "devices[%zu]", index);
        else {
                char buf[PCI_ADDRESS_STRING_MAX];
                snprintf(w->label, sizeof w->label, "devices[%zu] (%s)", index, pci_address_format(a, buf));
        }
}

static int parser_error(Parser *ps, const char *pos, const char *fmt, ...) _printf_(3, 4);
static int parser_error(Parser *ps, const char *pos, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        char *full = NULL;
        va_list ap;
        int r;

        if (ps->error)
                return -EINVAL;

        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0) {
                msg = NULL;
                return -ENOMEM;
        }

        if (pos) {
                unsigned line = 1, column = 1;
                for (const char *p = ps->text; p < pos && *p; p++) {
                        if (*p == '\n') {
                                line++;
                                column = 1;
                        } else
                                column++;
                }
                r = asprintf(&full, "%s:%u:%u: %s", ps->filename, line, column, msg);
        } else
                r = asprintf(&full, "%s: %s", ps->filename, msg);
        if (r < 0)
                return -ENOMEM;

        ps->error = full;
        return -EINVAL;
}

/* "devices[3] (0000:01:00.1): key "iommu_group": <message>", located at the
 * key's value; with at_key the message is about the key itself (unknown
 * keys), so it is located at the key and the label does not repeat it. */
static int where_error(Parser *ps, const Where *w, const char *key, bool at_key, const char *fmt, ...)
        _printf_(5, 6);
static int where_error(Parser *ps, const Where *w, const char *key, bool at_key, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL, *prefix = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0) {
                msg = NULL;
                return -ENOMEM;
        }

        if (key && !at_key)
                r = asprintf(&prefix, "%s%skey \"%s\": ", w->label, w->label[0] ? ": " : "", key);
        else
                r = asprintf(&prefix, "%s%s", w->label, w->label[0] ? ": " : "");
        if (r < 0) {
                prefix = NULL;
                return -ENOMEM;
        }

        return parser_error(ps, locate(ps->text, w->index, key, at_key), "%s%s", prefix, msg);
}

/* A short rendering of a JSON value for "got ..." in messages. */
static const char *describe(json_object *v, char buf[static 64]) {
        const char *s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

        if (!s)
                return "(unprintable)";
        if (strlen(s) < 64)
                return strcpy(buf, s);
        memcpy(buf, s, 56);
        strcpy(buf + 56, " [...]");
        return buf;
}

/* ---- Values ---- */

static int parse_bool(Parser *ps, const Where *w, const char *key, json_object *v, bool *ret) {
        char buf[64];

        if (!json_object_is_type(v, json_type_boolean))
                return where_error(ps, w, key, false, "expected true or false, got %s", describe(v, buf));
        *ret = json_object_get_boolean(v);
        return 0;
}

/* "0x" and 1 to 8 hex digits. */
static bool parse_hex_string(const char *s, uint32_t *ret) {
        uint32_t v = 0;
        size_t n;

        if (s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
                return false;
        s += 2;
        n = strspn(s, "0123456789abcdefABCDEF");
        if (n == 0 || n > 8 || s[n] != 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                v = v << 4 | (uint32_t) (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
        }
        *ret = v;
        return true;
}

/* An integer 0..max, or (hex_ok) a string "0x...": IDs are written in hex
 * everywhere else (lspci, sysfs), bus numbers and groups in decimal. */
static int parse_uint(Parser *ps, const Where *w, const char *key, json_object *v, uint32_t max, bool hex_ok,
                      const char *expected, uint32_t *ret) {
        char buf[64];

        if (json_object_is_type(v, json_type_int)) {
                int64_t i = json_object_get_int64(v);
                if (i >= 0 && (uint64_t) i <= max) {
                        *ret = (uint32_t) i;
                        return 0;
                }
        } else if (hex_ok && json_object_is_type(v, json_type_string)) {
                uint32_t x;
                if (parse_hex_string(json_object_get_string(v), &x) && x <= max) {
                        *ret = x;
                        return 0;
                }
        }
        return where_error(ps, w, key, false, "expected %s, got %s", expected, describe(v, buf));
}

static int parse_string(Parser *ps, const Where *w, const char *key, json_object *v, char **ret) {
        char buf[64];

        if (!json_object_is_type(v, json_type_string))
                return where_error(ps, w, key, false, "expected a string, got %s", describe(v, buf));
        if (ret) {
                char *s = strdup(json_object_get_string(v));
                if (!s)
                        return -ENOMEM;
                free(*ret);
                *ret = s;
        }
        return 0;
}

static int parse_driver(Parser *ps, const Where *w, const char *key, json_object *v, char **ret) {
        char buf[64];
        char *s;

        if (json_object_is_type(v, json_type_null)) {
                free(*ret);
                *ret = NULL;
                return 0;
        }
        if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0)
                return where_error(ps, w, key, false, "expected a non-empty string or null, got %s",
                                   describe(v, buf));
        s = strdup(json_object_get_string(v));
        if (!s)
                return -ENOMEM;
        free(*ret);
        *ret = s;
        return 0;
}

static int parse_iommu_group(Parser *ps, const Where *w, const char *key, json_object *v, int *ret) {
        uint32_t g;
        int r;

        if (json_object_is_type(v, json_type_null)) {
                *ret = -1;
                return 0;
        }
        r = parse_uint(ps, w, key, v, INT_MAX, false, "an integer >= 0 or null", &g);
        if (r < 0)
                return r;
        *ret = (int) g;
        return 0;
}

static bool is_reset_method_name(json_object *v) {
        const char *s;

        if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0)
                return false;
        s = json_object_get_string(v);
        /* sysfs reset_method is a space separated list. */
        return strlen(s) == (size_t) json_object_get_string_len(v) && !s[strcspn(s, " \t\r\n\f\v")];
}

static int parse_reset_methods(Parser *ps, const Where *w, const char *key, json_object *v, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        char buf[64];
        size_t n;

        if (json_object_is_type(v, json_type_null)) {
                *ret = strv_free(*ret);
                return 0;
        }
        if (!json_object_is_type(v, json_type_array))
                return where_error(ps, w, key, false, "expected an array of reset method names, got %s",
                                   describe(v, buf));

        n = json_object_array_length(v);
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(v, i);

                if (!is_reset_method_name(e))
                        return where_error(ps, w, key, false,
                                           "element %zu: expected a non-empty string without whitespace, got %s",
                                           i, describe(e, buf));
                if (strv_extend(&l, json_object_get_string(e)) < 0)
                        return -ENOMEM;
        }

        /* An empty list and no list both mean "no reset method" (NULL). */
        strv_free(*ret);
        *ret = TAKE_PTR(l);
        return 0;
}

static int parse_bridge(Parser *ps, const Where *w, json_object *v, PciDeviceInfo *info) {
        bool have_secondary = false;
        char buf[64];
        int r;

        if (json_object_is_type(v, json_type_null)) {
                info->is_bridge = false;
                return 0;
        }
        if (!json_object_is_type(v, json_type_object))
                return where_error(ps, w, "bridge", false,
                                   "expected an object with \"secondary_bus\" and optional \"slot_reset\", got %s",
                                   describe(v, buf));

        info->is_bridge = true;
        info->slot_reset = false;

        json_object_object_foreach(v, key, val) {
                if (streq(key, "secondary_bus")) {
                        uint32_t bus;
                        r = parse_uint(ps, w, "bridge.secondary_bus", val, 0xff, true,
                                       "an integer 0..255 (or a hex string like \"0x3b\")", &bus);
                        if (r < 0)
                                return r;
                        info->secondary_bus = (uint8_t) bus;
                        have_secondary = true;
                } else if (streq(key, "slot_reset")) {
                        r = parse_bool(ps, w, "bridge.slot_reset", val, &info->slot_reset);
                        if (r < 0)
                                return r;
                } else {
                        _cleanup_free_ char *path = NULL;
                        if (asprintf(&path, "bridge.%s", key) < 0)
                                return -ENOMEM;
                        return where_error(ps, w, path, true, "unknown key \"%s\" in \"bridge\" (known keys: %s)",
                                           key, bridge_keys);
                }
        }

        if (!have_secondary)
                return where_error(ps, w, "bridge", false, "missing required key \"secondary_bus\"");
        return 0;
}

/* ---- Devices ---- */

typedef struct Entry {
        PciDeviceInfo info;
        size_t index; /* in the file's "devices" array */
} Entry;

static int parse_device(Parser *ps, size_t index, json_object *obj, PciDeviceInfo *ret) {
        PciDeviceInfo info = PCI_DEVICE_INFO_NULL;
        bool have_class = false;
        json_object *a;
        char buf[64];
        Where w;
        int r;

        where_init(&w, index, NULL);
        if (!json_object_is_type(obj, json_type_object))
                return where_error(ps, &w, NULL, false, "expected an object, got %s", describe(obj, buf));

        /* The address first: every other message names it. */
        if (!json_object_object_get_ex(obj, "address", &a))
                return where_error(ps, &w, NULL, false, "missing required key \"address\"");
        if (!json_object_is_type(a, json_type_string) ||
            pci_address_parse(json_object_get_string(a), &info.address) < 0)
                return where_error(ps, &w, "address", false, PCI_ADDRESS_FORM_HINT ", got %s", describe(a, buf));
        where_init(&w, index, &info.address);

        json_object_object_foreach(obj, key, val) {
                uint32_t u;

                if (streq(key, "address"))
                        r = 0;
                else if (streq(key, "vendor") || streq(key, "device")) {
                        r = parse_uint(ps, &w, key, val, 0xffff, true,
                                       "a hex string like \"0x10de\" or an integer 0..0xffff", &u);
                        if (r >= 0)
                                *(key[0] == 'v' ? &info.vendor_id : &info.device_id) = (uint16_t) u;
                } else if (streq(key, "class")) {
                        r = parse_uint(ps, &w, key, val, 0xffffff, true,
                                       "a hex string like \"0x030000\" or an integer 0..0xffffff", &u);
                        if (r >= 0) {
                                info.class_code = u;
                                have_class = true;
                        }
                } else if (streq(key, "driver"))
                        r = parse_driver(ps, &w, key, val, &info.driver);
                else if (streq(key, "iommu_group"))
                        r = parse_iommu_group(ps, &w, key, val, &info.iommu_group);
                else if (streq(key, "reset_methods"))
                        r = parse_reset_methods(ps, &w, key, val, &info.reset_methods);
                else if (streq(key, "bridge"))
                        r = parse_bridge(ps, &w, val, &info);
                else if (streq(key, "description"))
                        r = parse_string(ps, &w, key, val, NULL);
                else
                        r = where_error(ps, &w, key, true, "unknown key \"%s\" (known keys: %s)", key, device_keys);
                if (r < 0) {
                        pci_device_info_done(&info);
                        return r;
                }
        }

        r = 0;
        if (info.is_bridge) {
                if (!have_class)
                        info.class_code = PCI_CLASS_BRIDGE_PCI;

                /* Real bus numbering: buses below a bridge are numbered
                 * after it, which also makes loops impossible. */
                if (info.secondary_bus <= info.address.bus)
                        r = where_error(ps, &w, "bridge.secondary_bus", false,
                                        "secondary bus %u (0x%02x) must be greater than the bridge's own bus 0x%02x",
                                        info.secondary_bus, info.secondary_bus, info.address.bus);
                /* vfio-pci refuses bridges (header type 1), and so do its
                 * variant drivers, which bind through vfio-pci-core. */
                else if (driver_is_vfio(info.driver))
                        r = where_error(ps, &w, "driver", false,
                                        "a bridge cannot be bound to the vfio driver \"%s\" (vfio-pci does not bind bridges)",
                                        info.driver);
                if (r < 0) {
                        pci_device_info_done(&info);
                        return r;
                }
        }

        *ret = info;
        return 0;
}

static int entry_compare(const void *x, const void *y) {
        const Entry *a = x, *b = y;
        int c = pci_address_compare(&a->info.address, &b->info.address);

        if (c != 0)
                return c;
        return a->index < b->index ? -1 : a->index > b->index;
}

static void entries_free(Entry *e, size_t n) {
        for (size_t i = 0; i < n; i++)
                pci_device_info_done(&e[i].info);
        free(e);
}

/* The checks between devices, on the entries sorted by address. */
static int check_devices(Parser *ps, const Entry *e, size_t n) {
        size_t owner[256]; /* the entry whose secondary bus this is, in the current domain */
        char buf[PCI_ADDRESS_STRING_MAX];
        Where w;

        for (size_t i = 1; i < n; i++)
                if (pci_address_equal(&e[i].info.address, &e[i - 1].info.address)) {
                        where_init(&w, e[i].index, &e[i].info.address);
                        return where_error(ps, &w, "address", false, "duplicate address, devices[%zu] has it too",
                                           e[i - 1].index);
                }

        for (size_t i = 0; i < n; i++) {
                const Entry *b = &e[i], *other, *later;

                if (i == 0 || e[i].info.address.domain != e[i - 1].info.address.domain)
                        for (size_t k = 0; k < ELEMENTSOF(owner); k++)
                                owner[k] = SIZE_MAX;
                if (!b->info.is_bridge)
                        continue;
                if (owner[b->info.secondary_bus] == SIZE_MAX) {
                        owner[b->info.secondary_bus] = i;
                        continue;
                }

                /* Report it at whichever comes later in the file. */
                other = &e[owner[b->info.secondary_bus]];
                if (other->index > b->index) {
                        later = other;
                        other = b;
                } else
                        later = b;
                where_init(&w, later->index, &later->info.address);
                return where_error(ps, &w, "bridge.secondary_bus", false,
                                   "bus 0x%02x is already the secondary bus of devices[%zu] (%s)",
                                   later->info.secondary_bus, other->index,
                                   pci_address_format(&other->info.address, buf));
        }
        return 0;
}

static int parse_devices(Parser *ps, json_object *v, Machine *m) {
        Where top;
        Entry *e = NULL;
        char buf[64];
        size_t n;
        int r;

        where_init(&top, SIZE_MAX, NULL);
        if (!json_object_is_type(v, json_type_array))
                return where_error(ps, &top, "devices", false, "expected an array of device objects, got %s",
                                   describe(v, buf));

        n = json_object_array_length(v);
        if (n > 0) {
                e = calloc(n, sizeof(Entry));
                if (!e)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                e[i].index = i;
                r = parse_device(ps, i, json_object_array_get_idx(v, i), &e[i].info);
                if (r < 0) {
                        entries_free(e, i);
                        return r;
                }
        }

        if (n > 1)
                qsort(e, n, sizeof(Entry), entry_compare);
        r = check_devices(ps, e, n);
        if (r < 0) {
                entries_free(e, n);
                return r;
        }

        /* Replace whatever an earlier "devices" key gave (json-c keeps the
         * last of duplicate keys anyway). */
        for (size_t i = 0; i < m->n_devices; i++)
                pci_device_info_done(&m->devices[i]);
        free(m->devices);
        m->devices = NULL;
        m->n_devices = 0;
        if (n > 0) {
                m->devices = malloc(n * sizeof(PciDeviceInfo));
                if (!m->devices) {
                        entries_free(e, n);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < n; i++)
                        m->devices[i] = e[i].info;
                m->n_devices = n;
        }
        free(e);
        return 0;
}

static int parse_root(Parser *ps, json_object *root, Machine *m) {
        bool have_devices = false;
        Where top;
        char buf[64];
        int r;

        where_init(&top, SIZE_MAX, NULL);
        if (!json_object_is_type(root, json_type_object))
                return parser_error(ps, scan_ws(ps->text), "expected a JSON object at the top level, got %s",
                                    describe(root, buf));

        json_object_object_foreach(root, key, val) {
                if (streq(key, "cdev"))
                        r = parse_bool(ps, &top, key, val, &m->cdev);
                else if (streq(key, "description"))
                        r = parse_string(ps, &top, key, val, &m->description);
                else if (streq(key, "reset_delay_ms"))
                        r = parse_uint(ps, &top, key, val, 600000, false, "an integer from 0 to 600000",
                                       &m->reset_delay_ms);
                else if (streq(key, "devices")) {
                        r = parse_devices(ps, val, m);
                        have_devices = true;
                } else
                        r = where_error(ps, &top, key, true, "unknown key \"%s\" (known keys: %s)", key, top_keys);
                if (r < 0)
                        return r;
        }

        if (!have_devices)
                return parser_error(ps, scan_ws(ps->text), "missing required key \"devices\"");
        return 0;
}

static void json_tokener_freep(struct json_tokener **t) {
        if (*t)
                json_tokener_free(*t);
}

static void json_object_putp(json_object **o) {
        json_object_put(*o);
}

int machine_parse(const char *text, const char *filename, Machine **ret, char **ret_error) {
        _cleanup_(json_tokener_freep) struct json_tokener *tok = NULL;
        _cleanup_(json_object_putp) json_object *root = NULL;
        _cleanup_(machine_freep) Machine *m = NULL;
        Parser ps = {
                .text = text,
                .filename = filename ?: "machine file",
        };
        enum json_tokener_error jerr;
        int r;

        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        /* Strict: no comments, no trailing commas, nothing after the
         * object. -1: the NUL ends the input, so a final number parses. */
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        root = json_tokener_parse_ex(tok, text, -1);
        jerr = json_tokener_get_error(tok);
        if (jerr != json_tokener_success) {
                r = parser_error(&ps, text + json_tokener_get_parse_end(tok), "syntax error: %s",
                                 json_tokener_error_desc(jerr));
                goto fail;
        }

        m = calloc(1, sizeof(Machine));
        if (!m)
                return -ENOMEM;
        m->cdev = true;

        r = parse_root(&ps, root, m);
        if (r < 0)
                goto fail;

        *ret = TAKE_PTR(m);
        return 0;

fail:
        if (ret_error)
                *ret_error = TAKE_PTR(ps.error);
        free(ps.error);
        return r;
}

int machine_load_direct(const char *path, Machine **ret, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        int r;

        r = read_file_full(path, MACHINE_FILE_SIZE_MAX, &text, &size);
        if (r < 0) {
                if (r != -ENOMEM && ret_error &&
                    asprintf(ret_error, "%s: cannot read the machine file: %s", path,
                             r == -EFBIG ? "larger than 64 MiB" : strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }

        /* The parser works on a C string; a NUL inside would silently cut
         * the file short. */
        if (strlen(text) != size) {
                Parser ps = { .text = text, .filename = path };
                r = parser_error(&ps, text + strlen(text), "syntax error: NUL byte in the file");
                if (ret_error)
                        *ret_error = TAKE_PTR(ps.error);
                free(ps.error);
                return r;
        }

        return machine_parse(text, path, ret, ret_error);
}

typedef struct LoadJob {
        const char *path;
        Machine *machine;
        char *error;
        int r;
} LoadJob;

static void *load_thread(void *userdata) {
        LoadJob *j = userdata;
        j->r = machine_load_direct(j->path, &j->machine, &j->error);
        return NULL;
}

int machine_load(const char *path, Machine **ret, char **ret_error) {
        LoadJob j = { .path = path };
        pthread_t thread;

        /* The parse tree of a large machine is hundreds of thousands of
         * small allocations that live for a moment. Parsed on a thread of
         * its own, they come from that thread's malloc arena, not from the
         * one the daemon's long-lived state grows in, and they go back to
         * the kernel as a whole: the daemon does not keep the peak of a
         * parse as resident memory. */
        if (pthread_create(&thread, NULL, load_thread, &j) != 0)
                return machine_load_direct(path, ret, ret_error);
        (void) pthread_join(thread, NULL);

        if (j.r < 0) {
                if (ret_error)
                        *ret_error = TAKE_PTR(j.error);
                free(j.error);
                return j.r;
        }
        /* The machine was allocated after the parse tree on the worker's
         * arena; the tree is freed, and its pages go back. */
        (void) malloc_trim(0);
        *ret = j.machine;
        return 0;
}

Machine *machine_free(Machine *m) {
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n_devices; i++)
                pci_device_info_done(&m->devices[i]);
        free(m->devices);
        free(m->description);
        free(m);
        return NULL;
}

/* IDs as lspci writes them: "0x10de", "0x030000". */
static int json_add_hex(json_object *o, const char *key, int digits, uint32_t v) {
        char buf[16];
        json_object *s;

        snprintf(buf, sizeof buf, "0x%0*x", digits, v);
        s = json_object_new_string(buf);
        if (!s || json_object_object_add(o, key, s) < 0) {
                json_object_put(s);
                return -ENOMEM;
        }
        return 0;
}

static int json_add(json_object *o, const char *key, json_object *v) {
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static json_object *device_to_json(const PciDeviceInfo *d) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        char buf[PCI_ADDRESS_STRING_MAX];

        if (!o)
                return NULL;
        if (json_add(o, "address", json_object_new_string(pci_address_format(&d->address, buf))) < 0 ||
            json_add_hex(o, "vendor", 4, d->vendor_id) < 0 ||
            json_add_hex(o, "device", 4, d->device_id) < 0 ||
            json_add_hex(o, "class", 6, d->class_code) < 0)
                return NULL;
        if (d->driver && json_add(o, "driver", json_object_new_string(d->driver)) < 0)
                return NULL;
        if (d->iommu_group >= 0 && json_add(o, "iommu_group", json_object_new_int(d->iommu_group)) < 0)
                return NULL;
        if (d->reset_methods && d->reset_methods[0]) {
                json_object *l = json_object_new_array();
                if (json_add(o, "reset_methods", l) < 0)
                        return NULL;
                for (size_t i = 0; d->reset_methods[i]; i++) {
                        json_object *s = json_object_new_string(d->reset_methods[i]);
                        if (!s || json_object_array_add(l, s) < 0) {
                                json_object_put(s);
                                return NULL;
                        }
                }
        }
        if (d->is_bridge) {
                json_object *b = json_object_new_object();
                if (json_add(o, "bridge", b) < 0 ||
                    json_add(b, "secondary_bus", json_object_new_int(d->secondary_bus)) < 0 ||
                    json_add(b, "slot_reset", json_object_new_boolean(d->slot_reset)) < 0)
                        return NULL;
        }
        return TAKE_PTR(o);
}

char *machine_to_json(const Machine *m) {
        const int flags = JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE;
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        char *result;

        {
                _cleanup_(fclosep) FILE *f = open_memstream(&buf, &size);
                if (!f)
                        return NULL;

                fprintf(f, "{\n  \"cdev\": %s,\n", m->cdev ? "true" : "false");
                if (m->reset_delay_ms > 0)
                        fprintf(f, "  \"reset_delay_ms\": %u,\n", (unsigned) m->reset_delay_ms);
                if (m->description) {
                        _cleanup_(json_object_putp) json_object *s = json_object_new_string(m->description);
                        if (!s)
                                return NULL;
                        fprintf(f, "  \"description\": %s,\n", json_object_to_json_string_ext(s, flags));
                }
                fputs("  \"devices\": [", f);
                /* One device per line: a machine reads like lspci. */
                for (size_t i = 0; i < m->n_devices; i++) {
                        _cleanup_(json_object_putp) json_object *o = device_to_json(&m->devices[i]);
                        if (!o)
                                return NULL;
                        fprintf(f, "%s\n    %s", i > 0 ? "," : "", json_object_to_json_string_ext(o, flags));
                }
                fputs(m->n_devices > 0 ? "\n  ]\n}\n" : "]\n}\n", f);

                if (fflush(f) != 0 || ferror(f))
                        return NULL;
        }

        /* open_memstream() updates buf at fclose(), which the block's
         * cleanup did. */
        result = TAKE_PTR(buf);
        (void) size;
        return result;
}

const PciDeviceInfo *machine_find(const Machine *m, const PciAddress *a) {
        size_t lo = 0, hi = m ? m->n_devices : 0;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = pci_address_compare(&m->devices[mid].address, a);

                if (c == 0)
                        return &m->devices[mid];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The D-Bus methods of the daemon, driven with fuzzed calls.
 *
 * The daemon's own code (manager, emulated kernel, policy, bus objects:
 * libcore plus daemon/bus) runs in this process, on its real sd-bus
 * connection to a private dbus-daemon this target starts; a second
 * connection of this process is the client. Both are attached to one
 * sd-event loop, so every call goes through the real bus (with real
 * sender names and credentials, as root: polkit is not asked) and every
 * input is deterministic. Each input is one client: a sequence of calls
 * decoded from the bytes (the method, the object, the signature — the
 * right one or a fuzzed one — and the values: addresses of the machine's
 * devices or fuzzed strings, option dictionaries with known and unknown
 * keys of every type, file descriptors, the context paths earlier calls of
 * the input returned), some answered, some abandoned by the client
 * disconnecting. After the input the client disconnects; its leases must
 * go and the daemon must come back to its idle state before the next one.
 *
 * A crash, a sanitizer report, a leak, or a call left without an answer
 * (HOTRESETD_FUZZ_CALL_TIMEOUT_SEC, default 10) is a finding.
 *
 * HOTRESETD_FUZZ_MODEL=group runs on the legacy group model
 * (examples/legacy-group.json); the default is the iommufd model
 * (examples/workstation.json). HOTRESETD_FUZZ_VERBOSE=1 logs the daemon's
 * messages and every call. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "access.h"
#include "context.h"
#include "fuzz-util.h"
#include "lease-store.h"
#include "log.h"
#include "machine-file.h"
#include "manager-dbus.h"
#include "manager.h"
#include "util.h"

#ifndef FUZZ_SOURCE_ROOT
#error "FUZZ_SOURCE_ROOT must be defined (tests/fuzz/meson.build)"
#endif

static sd_event *event;
static Manager *manager;
static Machine *machine;
static pid_t bus_pid = -1;
static char tmpdir[] = "/tmp/hotresetd-fuzz-dbus.XXXXXX";
static bool tmpdir_made;
static uint64_t call_timeout_usec = 10 * 1000000ULL;
static bool verbose;
static int fd_pool[5] = { -1, -1, -1, -1, -1 };

static inline const char *strna(const char *s) {
        return s ?: "n/a";
}

/* ---- the input ----------------------------------------------------------- */

typedef struct Input {
        const uint8_t *data;
        size_t size, pos;
} Input;

static bool input_done(const Input *in) {
        return in->pos >= in->size;
}

static uint8_t take_u8(Input *in) {
        return in->pos < in->size ? in->data[in->pos++] : 0;
}

static uint64_t take_u64(Input *in) {
        uint64_t v = 0;
        for (unsigned i = 0, n = take_u8(in) % 9; i < n; i++)
                v = v << 8 | take_u8(in);
        return v;
}

/* Up to 255 bytes of the input, NUL-terminated, into buf. */
static const char *take_bytes(Input *in, char buf[static 256]) {
        size_t n = take_u8(in);
        if (n > in->size - in->pos)
                n = in->size - in->pos;
        memcpy(buf, in->data + in->pos, n);
        buf[n] = 0;
        in->pos += n;
        return buf;
}

/* ---- what the values are made of ----------------------------------------- */

static const char *const odd_strings[] = {
        "", "0000:01:00.0\n", "ffff:ff:1f.7", "-1:00.0", "01:00.0 ", "0000:00:20.0", "0000:01:00.8",
        "00000:01:00.0", "0000:01:00", "g000:01:00.0", "0000:01:00.0\x7f", "\xc3\xa9", "*",
        "/org/hotresetd/Broker1/context/1", "/org/hotresetd/Broker1/context/18446744073709551615",
};
static const char *const option_keys[] = { "Persistent", "Description", "Pid", "Bind", "persistent", "" };
static const char *const interfaces[] = {
        "org.hotresetd.Broker1.Manager", "org.hotresetd.Broker1.Device", "org.hotresetd.Broker1.ResetDomain",
        "org.hotresetd.Broker1.Context", "org.freedesktop.DBus.Properties", "org.hotresetd.Broker1.Nope",
};
static const char *const properties[] = {
        "Version", "Backend", "Emulated", "Devices", "Address", "Driver", "IommuGroup", "ResetMethods",
        "Devices", "Owner", "Lifetime", "Description", "ResetDomain", "Nope",
};

typedef enum PathKind { PATH_MANAGER, PATH_DEVICE, PATH_DOMAIN, PATH_CONTEXT, PATH_ANY } PathKind;

typedef struct Method {
        PathKind path;
        const char *interface, *member, *signature;
} Method;

static const Method methods[] = {
        { PATH_MANAGER, "org.hotresetd.Broker1.Manager", "ListDevices", "" },
        { PATH_MANAGER, "org.hotresetd.Broker1.Manager", "GetDevice", "s" },
        { PATH_MANAGER, "org.hotresetd.Broker1.Manager", "CreateContext", "a{sv}" },
        { PATH_MANAGER, "org.hotresetd.Broker1.Manager", "CreateContext", "a{sv}" },
        { PATH_MANAGER, "org.hotresetd.Broker1.Manager", "ListContexts", "" },
        { PATH_MANAGER, "org.hotresetd.Broker1.Manager", "HotReset", "sa{sv}" },
        { PATH_MANAGER, "org.hotresetd.Broker1.Manager", "Reload", "" },
        { PATH_DEVICE, "org.hotresetd.Broker1.Device", "CheckHotReset", "" },
        { PATH_CONTEXT, "org.hotresetd.Broker1.Context", "AttachDevice", "sa{sv}" },
        { PATH_CONTEXT, "org.hotresetd.Broker1.Context", "AttachDevice", "sa{sv}" },
        { PATH_CONTEXT, "org.hotresetd.Broker1.Context", "DetachDevice", "s" },
        { PATH_CONTEXT, "org.hotresetd.Broker1.Context", "OpenDevice", "s" },
        { PATH_CONTEXT, "org.hotresetd.Broker1.Context", "ReopenDevice", "s" },
        { PATH_CONTEXT, "org.hotresetd.Broker1.Context", "OpenIommufd", "" },
        { PATH_CONTEXT, "org.hotresetd.Broker1.Context", "GetHotResetInfo", "s" },
        { PATH_CONTEXT, "org.hotresetd.Broker1.Context", "HotReset", "s" },
        { PATH_CONTEXT, "org.hotresetd.Broker1.Context", "ResetDevice", "s" },
        { PATH_CONTEXT, "org.hotresetd.Broker1.Context", "Adopt", "" },
        { PATH_CONTEXT, "org.hotresetd.Broker1.Context", "Release", "" },
        { PATH_ANY, "org.freedesktop.DBus.Properties", "Get", "ss" },
        { PATH_ANY, "org.freedesktop.DBus.Properties", "GetAll", "s" },
        { PATH_ANY, "org.freedesktop.DBus.Properties", "Set", "ssv" },
        { PATH_ANY, "org.freedesktop.DBus.Introspectable", "Introspect", "" },
        { PATH_MANAGER, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", "" },
        { PATH_ANY, "org.freedesktop.DBus.Peer", "Ping", "" },
};

/* The contexts this input's client created, by path. */
typedef struct Client {
        sd_bus *bus;
        char *contexts[8];
        size_t n_contexts;
} Client;

static const char *pick_address(Input *in, char buf[static 256]) {
        uint8_t b = take_u8(in);
        static char addr[PCI_ADDRESS_STRING_MAX];

        if (b < 200 && machine->n_devices > 0)
                return pci_address_format(&machine->devices[b % machine->n_devices].address, addr);
        if (b < 230)
                return odd_strings[b % ELEMENTSOF(odd_strings)];
        return take_bytes(in, buf);
}

static const char *pick_path(Input *in, Client *c, PathKind kind, char buf[static 256]) {
        uint8_t b = take_u8(in);

        if (kind == PATH_ANY)
                kind = b % 5;
        if (b >= 240)
                kind = PATH_ANY;
        switch (kind) {
        case PATH_MANAGER:
                return BROKER_PATH;
        case PATH_DEVICE:
        case PATH_DOMAIN:
                if (machine->n_devices > 0) {
                        const PciAddress *a = &machine->devices[take_u8(in) % machine->n_devices].address;
                        if (kind == PATH_DEVICE)
                                snprintf(buf, 256, BROKER_PATH "/device/pci_%04x_%02x_%02x_%x", a->domain, a->bus,
                                         a->slot, a->function);
                        else
                                snprintf(buf, 256, BROKER_PATH "/domain/pci_%04x_%02x", a->domain, a->bus);
                        return buf;
                }
                return BROKER_PATH;
        case PATH_CONTEXT:
                if (c->n_contexts > 0 && b % 8 != 0)
                        return c->contexts[take_u8(in) % c->n_contexts];
                snprintf(buf, 256, CONTEXT_PATH_PREFIX "/%u", take_u8(in));
                return buf;
        default:
                /* Any valid object path of up to a few fuzzed components. */
                snprintf(buf, 256, BROKER_PATH);
                for (unsigned i = 0, n = take_u8(in) % 3; i < n; i++) {
                        size_t l = strlen(buf);
                        snprintf(buf + l, 256 - l, "/%c%u", 'a' + take_u8(in) % 26, take_u8(in));
                }
                return buf;
        }
}

static int append_value(sd_bus_message *m, Input *in, Client *c, char type, unsigned depth);

/* A fuzzed signature of basic types and the containers the daemon reads. */
static const char *const fuzzed_types[] = { "s", "b", "u", "i", "t", "x", "y", "n", "q", "d", "o", "g", "h",
                                            "v", "as", "a{sv}", "a{ss}", "(ss)", "ay" };

static int append_options(sd_bus_message *m, Input *in, Client *c, unsigned depth) {
        char buf[256];
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        for (unsigned i = 0, n = take_u8(in) % 4; i < n && !input_done(in); i++) {
                uint8_t k = take_u8(in);
                const char *key = k < 224 ? option_keys[k % ELEMENTSOF(option_keys)] : take_bytes(in, buf);
                /* Mostly the type the key wants, sometimes another. */
                static const char *const variant_types[] = { "b", "s", "h", "u", "i", "as", "v" };
                const char *t = variant_types[take_u8(in) % ELEMENTSOF(variant_types)];

                r = sd_bus_message_open_container(m, 'e', "sv");
                if (r >= 0)
                        r = sd_bus_message_append_basic(m, 's', key);
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'v', t);
                if (r >= 0)
                        r = append_value(m, in, c, t[0], depth + 1);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(m);
}

static int append_value(sd_bus_message *m, Input *in, Client *c, char type, unsigned depth) {
        char buf[256];
        int r;

        if (depth > 4)
                return -E2BIG;
        switch (type) {
        case 's': {
                uint8_t b = take_u8(in);
                if (b == 255) {
                        /* A huge string: 1 MiB. */
                        _cleanup_free_ char *big = malloc(1 << 20);
                        if (!big)
                                return -ENOMEM;
                        memset(big, '0', (1 << 20) - 1);
                        big[(1 << 20) - 1] = 0;
                        return sd_bus_message_append_basic(m, 's', big);
                }
                if (b >= 128)
                        return sd_bus_message_append_basic(m, 's', take_bytes(in, buf));
                return sd_bus_message_append_basic(m, 's', pick_address(in, buf));
        }
        case 'o':
                return sd_bus_message_append_basic(m, 'o', pick_path(in, c, PATH_ANY, buf));
        case 'g':
                return sd_bus_message_append_basic(m, 'g', fuzzed_types[take_u8(in) % ELEMENTSOF(fuzzed_types)]);
        case 'b': {
                int v = take_u8(in) & 1;
                return sd_bus_message_append_basic(m, 'b', &v);
        }
        case 'y': case 'n': case 'q': case 'i': case 'u': case 'x': case 't': case 'd': {
                uint64_t v = take_u64(in);
                if (type == 'd') {
                        double d = (double) (int64_t) v;
                        return sd_bus_message_append_basic(m, 'd', &d);
                }
                return sd_bus_message_append_basic(m, type, &v); /* little-endian: the low bytes */
        }
        case 'h': {
                int fd = fd_pool[take_u8(in) % ELEMENTSOF(fd_pool)];
                return sd_bus_message_append_basic(m, 'h', &fd);
        }
        case 'v': {
                const char *t = take_u8(in) & 1 ? "s" : "u";
                r = sd_bus_message_open_container(m, 'v', t);
                if (r >= 0)
                        r = append_value(m, in, c, t[0], depth + 1);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                return r;
        }
        case 'a': /* "as" */
                r = sd_bus_message_open_container(m, 'a', "s");
                for (unsigned i = 0, n = take_u8(in) % 4; r >= 0 && i < n; i++)
                        r = append_value(m, in, c, 's', depth + 1);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                return r;
        case '{': /* a{sv} */
                return append_options(m, in, c, depth);
        case '(': /* a{ss} or (ss): two strings */
                r = append_value(m, in, c, 's', depth + 1);
                if (r >= 0)
                        r = append_value(m, in, c, 's', depth + 1);
                return r;
        default:
                return -EINVAL;
        }
}

/* Appends the values of a signature given as a list of fuzzed_types-like
 * strings: the right one of the method, or a fuzzed one. */
static int append_body(sd_bus_message *m, Input *in, Client *c, const char *signature) {
        int r;

        for (const char *p = signature; *p;) {
                if (startswith(p, "a{sv}")) {
                        r = append_options(m, in, c, 0);
                        p += 5;
                } else if (startswith(p, "a{ss}")) {
                        r = sd_bus_message_open_container(m, 'a', "{ss}");
                        for (unsigned i = 0, n = take_u8(in) % 3; r >= 0 && i < n; i++) {
                                r = sd_bus_message_open_container(m, 'e', "ss");
                                if (r >= 0)
                                        r = append_value(m, in, c, '(', 0);
                                if (r >= 0)
                                        r = sd_bus_message_close_container(m);
                        }
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                        p += 5;
                } else if (startswith(p, "(ss)")) {
                        r = sd_bus_message_open_container(m, 'r', "ss");
                        if (r >= 0)
                                r = append_value(m, in, c, '(', 0);
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                        p += 4;
                } else if (startswith(p, "as")) {
                        r = append_value(m, in, c, 'a', 0);
                        p += 2;
                } else if (startswith(p, "ay")) {
                        char buf[256];
                        const char *b = take_bytes(in, buf);
                        r = sd_bus_message_append_array(m, 'y', b, strlen(b));
                        p += 2;
                } else {
                        r = append_value(m, in, c, *p, 0);
                        p++;
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- one call ------------------------------------------------------------- */

typedef struct Reply {
        bool done;
        Client *client;
        bool create_context;
} Reply;

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Reply *r = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        r->done = true;
        if (e) {
                /* Every refusal has a name and says what is wrong. */
                if (!e->name || !*e->name || !e->message || !*e->message) {
                        fprintf(stderr, "fuzz-dbus: an error reply without a name or message: %s: %s\n",
                                strna(e->name), strna(e->message));
                        abort();
                }
                if (verbose)
                        fprintf(stderr, "fuzz-dbus:   -> %s: %s\n", e->name, e->message);
                return 0;
        }
        if (r->create_context && r->client->n_contexts < ELEMENTSOF(r->client->contexts)) {
                const char *path;
                if (sd_bus_message_read(reply, "o", &path) >= 0) {
                        char *p = strdup(path);
                        if (p)
                                r->client->contexts[r->client->n_contexts++] = p;
                }
        }
        if (verbose)
                fprintf(stderr, "fuzz-dbus:   -> %s\n", strna(sd_bus_message_get_signature(reply, true)));
        return 0;
}

/* Runs the loop until done or the timeout; false on the timeout. */
static bool run_until(bool *done, bool (*cond)(void)) {
        uint64_t start, now;

        (void) sd_event_now(event, CLOCK_MONOTONIC, &start);
        for (;;) {
                if (done ? *done : cond())
                        return true;
                if (sd_event_run(event, 100 * 1000) < 0)
                        abort();
                (void) sd_event_now(event, CLOCK_MONOTONIC, &now);
                if (now - start > call_timeout_usec)
                        return false;
        }
}

static void one_call(Input *in, Client *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        char pbuf[256], mbuf[256], sbuf[8];
        const Method *method = &methods[take_u8(in) % ELEMENTSOF(methods)];
        const char *path = pick_path(in, c, method->path, pbuf);
        const char *interface = method->interface, *member = method->member, *signature = method->signature;
        uint8_t how = take_u8(in);
        Reply reply = { .client = c, .create_context = streq(method->member, "CreateContext") };
        int r;

        /* how: bits 0-2 == 0: another signature; bit 3: another interface
         * (rarely); bits 4-5 == 0: the client does not wait for the answer
         * (it may be gone before it comes); bit 6: a fuzzed member name. */
        if ((how & 7) == 0) {
                size_t n = 0;
                sbuf[0] = 0;
                for (unsigned i = 0, k = take_u8(in) % 3; i < k; i++) {
                        const char *t = fuzzed_types[take_u8(in) % ELEMENTSOF(fuzzed_types)];
                        if (n + strlen(t) >= sizeof sbuf)
                                break;
                        strcpy(sbuf + n, t);
                        n += strlen(t);
                }
                signature = sbuf;
        }
        if ((how & 0x88) == 0x88)
                interface = interfaces[take_u8(in) % ELEMENTSOF(interfaces)];
        if (how & 0x40 && (how & 7) == 1) {
                snprintf(mbuf, sizeof mbuf, "%s%c", member, 'A' + take_u8(in) % 26);
                member = mbuf;
        }

        r = sd_bus_message_new_method_call(c->bus, &m, BROKER_BUS_NAME, path, interface, member);
        if (r < 0)
                return;
        if (streq(method->interface, "org.freedesktop.DBus.Properties") && (how & 7) != 0) {
                /* Get/GetAll/Set: an interface and a property name first. */
                const char *iface = interfaces[take_u8(in) % ELEMENTSOF(interfaces)];
                r = sd_bus_message_append_basic(m, 's', iface);
                if (r >= 0 && !streq(member, "GetAll"))
                        r = sd_bus_message_append_basic(m, 's', properties[take_u8(in) % ELEMENTSOF(properties)]);
                if (r >= 0 && streq(member, "Set"))
                        r = append_body(m, in, c, "v");
        } else
                r = append_body(m, in, c, signature);
        if (r < 0)
                return; /* not a message sd-bus sends (invalid UTF-8, ...) */

        if (verbose)
                fprintf(stderr, "fuzz-dbus: %s %s.%s(%s)%s\n", path, interface, member,
                        strna(sd_bus_message_get_signature(m, true)), (how & 0x30) == 0 ? " (not waiting)" : "");
        r = sd_bus_call_async(c->bus, &slot, m, on_reply, &reply, call_timeout_usec);
        if (r < 0)
                return;
        if ((how & 0x30) == 0) {
                /* Sent; gone before the answer if the input ends now. */
                (void) sd_bus_flush(c->bus);
                return;
        }
        if (!run_until(&reply.done, NULL)) {
                fprintf(stderr, "fuzz-dbus: no answer to %s %s.%s within %" PRIu64 " s\n", path, interface, member,
                        call_timeout_usec / 1000000);
                abort();
        }
}

/* ---- the daemon and its bus ----------------------------------------------- */

static bool daemon_idle(void) {
        /* The client's connection leases are gone (NameOwnerChanged seen),
         * no reset runs, no polkit check waits. */
        for (size_t i = 0; i < manager->n_contexts; i++)
                if (!context_outlives_owner(manager->contexts[i]))
                        return false;
        return !manager->jobs && !manager->auth_queries;
}

static void stop_bus(void) {
        static const char *const files[] = { "bus", "bus.conf", "hotresetd.conf" };

        if (bus_pid > 0) {
                (void) kill(bus_pid, SIGTERM);
                (void) waitpid(bus_pid, NULL, 0);
                bus_pid = -1;
        }
        if (!tmpdir_made)
                return;
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                char path[sizeof tmpdir + 32];
                snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
                (void) unlink(path);
        }
        (void) rmdir(tmpdir);
        tmpdir_made = false;
}

/* dbus-daemon on a socket in tmpdir, anyone may own and call anything
 * (the project's bus policy is the integration tests' business). */
static void start_bus(void) {
        char config[sizeof tmpdir + 32], socket_path[sizeof tmpdir + 32], address[sizeof tmpdir + 64];
        int pipefd[2];
        FILE *f;

        if (!mkdtemp(tmpdir))
                abort();
        tmpdir_made = true;
        snprintf(config, sizeof config, "%s/bus.conf", tmpdir);
        snprintf(socket_path, sizeof socket_path, "%s/bus", tmpdir);
        f = fopen(config, "we");
        if (!f)
                abort();
        fprintf(f,
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
                " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
                "<busconfig><type>system</type><listen>unix:path=%s</listen><auth>EXTERNAL</auth>\n"
                "<limit name=\"max_incoming_unix_fds\">1024</limit>\n"
                "<policy context=\"default\"><allow user=\"*\"/><allow own=\"*\"/>\n"
                "<allow send_type=\"method_call\"/><allow send_type=\"signal\"/>"
                "<allow send_type=\"method_return\"/><allow send_type=\"error\"/>\n"
                "<allow receive_type=\"method_call\"/><allow receive_type=\"signal\"/>"
                "<allow receive_type=\"method_return\"/><allow receive_type=\"error\"/></policy>\n"
                "</busconfig>\n",
                socket_path);
        if (fclose(f) != 0)
                abort();

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                abort();
        bus_pid = fork();
        if (bus_pid < 0)
                abort();
        if (bus_pid == 0) {
                char arg[sizeof config + 16];
                /* Gone with the fuzzer, however it ends (a crash, -fork). */
                (void) prctl(PR_SET_PDEATHSIG, SIGTERM);
                snprintf(arg, sizeof arg, "--config-file=%s", config);
                (void) dup2(pipefd[1], STDOUT_FILENO);
                execlp("dbus-daemon", "dbus-daemon", arg, "--nofork", "--print-address", (char *) NULL);
                _exit(127);
        }
        close(pipefd[1]);
        /* The address line means it listens. */
        char line[512];
        size_t n = 0;
        while (n == 0 || line[n - 1] != '\n') {
                ssize_t k = read(pipefd[0], line + n, sizeof line - 1 - n);
                if (k <= 0) {
                        fprintf(stderr, "fuzz-dbus: dbus-daemon did not start\n");
                        abort();
                }
                n += (size_t) k;
        }
        close(pipefd[0]);
        snprintf(address, sizeof address, "unix:path=%s", socket_path);
        setenv("DBUS_SYSTEM_BUS_ADDRESS", address, 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        const char *model = getenv("HOTRESETD_FUZZ_MODEL");
        const char *e = getenv("HOTRESETD_FUZZ_CALL_TIMEOUT_SEC");
        _cleanup_free_ char *error = NULL;
        char machine_path[4096], policy_path[sizeof tmpdir + 32];
        sigset_t mask;
        int r;

        verbose = getenv("HOTRESETD_FUZZ_VERBOSE") != NULL;
        if (!verbose)
                log_set_max_level(LOG_CRIT);
        if (e && atoi(e) > 0)
                call_timeout_usec = (uint64_t) atoi(e) * 1000000ULL;
        snprintf(machine_path, sizeof machine_path, "%s/examples/%s", FUZZ_SOURCE_ROOT,
                 model && streq(model, "group") ? "legacy-group.json" : "workstation.json");

        start_bus();
        atexit(stop_bus);

        /* An empty policy file of our own: the built-in defaults, never
         * the machine's /etc/hotresetd. */
        snprintf(policy_path, sizeof policy_path, "%s/hotresetd.conf", tmpdir);
        int fd = open(policy_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
                abort();
        close(fd);

        /* The values the fuzzer picks file descriptors from. */
        fd_pool[0] = open("/dev/null", O_RDWR | O_CLOEXEC);
        fd_pool[1] = (int) syscall(SYS_pidfd_open, getpid(), 0);
        fd_pool[2] = eventfd(0, EFD_CLOEXEC);
        fd_pool[3] = memfd_create("fuzz", MFD_CLOEXEC);
        fd_pool[4] = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        for (size_t i = 0; i < ELEMENTSOF(fd_pool); i++)
                if (fd_pool[i] < 0)
                        fd_pool[i] = fd_pool[0];

        r = machine_load(machine_path, &machine, &error);
        if (r < 0) {
                fprintf(stderr, "fuzz-dbus: %s\n", strna(error));
                abort();
        }

        /* As main.c sets the daemon up, minus the signals that would stop it. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGHUP);
        (void) sigprocmask(SIG_BLOCK, &mask, NULL);
        if (sd_event_new(&event) < 0 || manager_new(event, &manager) < 0)
                abort();
        r = backend_emulated_new(manager->event, machine_path, manager_on_backend_event, manager, &manager->backend);
        /* The lease store (systemd's fd store) stays off: the fuzzer sets
         * neither $FDSTORE nor $RUNTIME_DIRECTORY. */
        if (r < 0 || backend_start(manager->backend) < 0 || access_setup(manager, policy_path) < 0 ||
            lease_store_setup(manager) < 0 || lease_store_restore(manager) < 0 || manager_connect_bus(manager) < 0) {
                fprintf(stderr, "fuzz-dbus: the daemon did not start\n");
                abort();
        }
        /* The initial state settles, the bus name is ours. */
        for (unsigned i = 0; i < 50; i++)
                (void) sd_event_run(event, 10 * 1000);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Input in = { .data = data, .size = size };
        Client c = {};

        if (sd_bus_open_system(&c.bus) < 0 || sd_bus_attach_event(c.bus, event, SD_EVENT_PRIORITY_NORMAL) < 0)
                abort();
        (void) sd_bus_set_allow_interactive_authorization(c.bus, false);

        for (unsigned i = 0; i < 16 && !input_done(&in); i++)
                one_call(&in, &c);

        /* The client goes; so do its connection's leases, and every reset
         * it started finishes. */
        c.bus = sd_bus_flush_close_unref(c.bus);
        if (!run_until(NULL, daemon_idle)) {
                fprintf(stderr, "fuzz-dbus: the daemon did not come back to idle after the client left\n");
                abort();
        }
        /* Leases that outlive their owner (Persistent, Pid=) go as the
         * daemon lets them go when it stops. */
        while (manager->n_contexts > 0)
                context_release(manager->contexts[manager->n_contexts - 1], "the fuzz input is done");
        (void) run_until(NULL, daemon_idle);
        /* What was queued for publication goes out now, not in the next
         * input. */
        for (unsigned i = 0; i < 3; i++)
                (void) sd_event_run(event, 0);

        for (size_t i = 0; i < c.n_contexts; i++)
                free(c.contexts[i]);
        return 0;
}

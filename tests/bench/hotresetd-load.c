/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetd-load: the load generator of the daemon's benchmarks
 * (tests/bench/run-bench.py). It talks to a running hotresetd over the
 * system bus named by DBUS_SYSTEM_BUS_ADDRESS, with sd-bus only (it does
 * not link the daemon's code: it sees the daemon as any client does), and
 * prints one JSON object per line on stdout. It measures; it never judges.
 *
 *   hotresetd-load latency KIND [--address=A] [--count=N] [--warmup=W]
 *       N calls of KIND, each preceded by a Peer.Ping, so the ratio of
 *       KIND to Ping compares calls made at the same moments on a noisy
 *       machine: p50/p99 of both, and the call's p50 and p99 over the
 *       Ping p50
 *   hotresetd-load batch KIND [--address=A] [--count=N]
 *       N calls of KIND and nothing else, for callgrind: prints
 *       {"state":"ready"} after the set-up, waits for a line on stdin,
 *       makes the calls, prints {"state":"done"}, waits for stdin again
 *       (a line or EOF) and tears the set-up down
 *   hotresetd-load throughput KIND [--address=A] [--count=N]
 *       [--connections=C] [--depth=D] [--rounds=R]
 *       N pipelined calls over C connections (D in flight on each), then
 *       N Pings the same way, R rounds alternately: calls/s of both
 *   hotresetd-load lease --address=A [--cycles=K] [--max-seconds=S]
 *       K lease cycles (CreateContext, AttachDevice, Release) while a second
 *       connection pings every 1-2 ms: cost per cycle, longest Ping wait
 *       and longest gap between Ping replies
 *   hotresetd-load burst --machine=M --add-file=F1 --remove-file=F2
 *       [--expect=N] [--max-seconds=S]
 *       subscribes to InterfacesAdded/InterfacesRemoved, pings every 1-2 ms,
 *       renames F1 over M and waits for N InterfacesAdded of device objects,
 *       then renames F2 over M and waits for N InterfacesRemoved: time from
 *       each rename to the last signal, longest Ping gap meanwhile
 *   hotresetd-load leak --address=A --pid=PID [--cycles=K]
 *       K lease cycles; the daemon's VmRSS and open fds before and after
 *   hotresetd-load wait-name
 *       prints {"state":"listening"} once subscribed to NameOwnerChanged,
 *       then the CLOCK_MONOTONIC time at which org.hotresetd.Broker1 got an
 *       owner (for the runner's start-up time)
 *
 * KIND: ping, check (Device.CheckHotReset), get-affected (Properties.Get of
 * Device.Affected), get-blockers (Properties.Get of ResetDomain.Blockers, on
 * the device's domain), get-device (Manager.GetDevice), hot-reset-info
 * (Context.GetHotResetInfo, on a context holding the device),
 * list-devices (Manager.ListDevices), managed-objects
 * (ObjectManager.GetManagedObjects, whose reply body size is reported),
 * lease-cycle (CreateContext, AttachDevice, Release; latency and batch).
 *
 * Common options: --timeout=SECONDS per call (default 30).
 *
 * A failed call prints {"error":..., "error_kind":...} and exits 1;
 * error_kind is "timeout" (no answer in time), "no-reply" (the bus says the
 * daemon went away or did not answer), "no-daemon" (nobody owns the name),
 * "dbus-error" (the daemon answered with an error) or "system". Usage
 * errors exit 2. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#define BUS_NAME "org.hotresetd.Broker1"
#define ROOT_PATH "/org/hotresetd/Broker1"
#define MANAGER_IFACE "org.hotresetd.Broker1.Manager"
#define DEVICE_IFACE "org.hotresetd.Broker1.Device"
#define CONTEXT_IFACE "org.hotresetd.Broker1.Context"
#define DOMAIN_IFACE "org.hotresetd.Broker1.ResetDomain"
#define DEVICE_PATH_PREFIX ROOT_PATH "/device/"
#define OM_IFACE "org.freedesktop.DBus.ObjectManager"
#define PROPS_IFACE "org.freedesktop.DBus.Properties"
#define PEER_IFACE "org.freedesktop.DBus.Peer"

#define NSEC_PER_USEC UINT64_C(1000)
#define NSEC_PER_MSEC UINT64_C(1000000)
#define NSEC_PER_SEC UINT64_C(1000000000)
#define USEC_PER_SEC UINT64_C(1000000)

static uint64_t call_timeout_usec = 30 * USEC_PER_SEC;
static const char *mode_name = "?";

/* ------------------------------------------------------------------------
 * Output and failure */

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

static double ns_to_us(uint64_t ns) {
        return (double) ns / (double) NSEC_PER_USEC;
}

static void json_string(FILE *f, const char *s) {
        fputc('"', f);
        for (; s && *s; s++) {
                unsigned char c = (unsigned char) *s;
                if (c == '"' || c == '\\')
                        fprintf(f, "\\%c", c);
                else if (c < 0x20)
                        fprintf(f, "\\u%04x", c);
                else
                        fputc(c, f);
        }
        fputc('"', f);
}

static const char *error_kind(int r, const sd_bus_error *e) {
        const char *name = e && sd_bus_error_is_set(e) ? e->name : NULL;
        /* By name first: sd-bus maps NoReply (the bus's answer when the
         * daemon disconnected) to ETIMEDOUT too. */
        if (name && (strcmp(name, SD_BUS_ERROR_NO_REPLY) == 0 || strcmp(name, SD_BUS_ERROR_DISCONNECTED) == 0))
                return "no-reply";
        if (r == -ETIMEDOUT || (name && strcmp(name, SD_BUS_ERROR_TIMEOUT) == 0))
                return "timeout";
        if (name && (strcmp(name, SD_BUS_ERROR_SERVICE_UNKNOWN) == 0 ||
                     strcmp(name, SD_BUS_ERROR_NAME_HAS_NO_OWNER) == 0))
                return "no-daemon";
        if (r == -ECONNRESET || r == -ENOTCONN || r == -EPIPE)
                return "no-reply";
        return name ? "dbus-error" : "system";
}

/* Prints the failure as a JSON line (and on stderr) and exits 1. */
static _Noreturn void fail(const char *kind, const char *fmt, ...) {
        char buf[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        fflush(stdout);
        printf("{\"mode\":");
        json_string(stdout, mode_name);
        printf(",\"error_kind\":");
        json_string(stdout, kind);
        printf(",\"error\":");
        json_string(stdout, buf);
        printf("}\n");
        fflush(stdout);
        fprintf(stderr, "hotresetd-load %s: %s: %s\n", mode_name, kind, buf);
        exit(1);
}

static _Noreturn void fail_call(const char *what, int r, const sd_bus_error *e) {
        if (e && sd_bus_error_is_set(e))
                fail(error_kind(r, e), "%s: %s: %s", what, e->name, e->message ? e->message : "");
        fail(error_kind(r, e), "%s: %s", what, strerror(-r));
}

static _Noreturn void fail_errno(const char *what, int r) {
        fail("system", "%s: %s", what, strerror(r < 0 ? -r : r));
}

/* ------------------------------------------------------------------------
 * Statistics over durations (ns) */

struct stats {
        uint64_t n, p50, p99, min, max;
        double mean;
};

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

/* The p-th percentile by the nearest-rank method: the smallest value that
 * at least p of the samples do not exceed. Sorts v. */
static uint64_t percentile_sorted(const uint64_t *v, size_t n, double p) {
        size_t rank = (size_t) ceil(p * (double) n);
        if (rank < 1)
                rank = 1;
        if (rank > n)
                rank = n;
        return v[rank - 1];
}

static struct stats stats_of(uint64_t *v, size_t n) {
        struct stats s = { .n = n };
        if (n == 0)
                return s;
        qsort(v, n, sizeof *v, cmp_u64);
        double sum = 0;
        for (size_t i = 0; i < n; i++)
                sum += (double) v[i];
        s.p50 = percentile_sorted(v, n, 0.50);
        s.p99 = percentile_sorted(v, n, 0.99);
        s.min = v[0];
        s.max = v[n - 1];
        s.mean = sum / (double) n;
        return s;
}

static void print_stats(const char *prefix, const struct stats *s) {
        printf(",\"%s_p50_us\":%.3f,\"%s_p99_us\":%.3f,\"%s_mean_us\":%.3f,\"%s_min_us\":%.3f,\"%s_max_us\":%.3f",
               prefix, ns_to_us(s->p50), prefix, ns_to_us(s->p99), prefix, s->mean / (double) NSEC_PER_USEC,
               prefix, ns_to_us(s->min), prefix, ns_to_us(s->max));
}

static void *xcalloc(size_t n, size_t size) {
        void *p = calloc(n ? n : 1, size);
        if (!p)
                fail_errno("calloc", ENOMEM);
        return p;
}

/* ------------------------------------------------------------------------
 * Calls */

enum kind {
        KIND_PING,
        KIND_CHECK,
        KIND_GET_AFFECTED,
        KIND_GET_BLOCKERS,
        KIND_GET_DEVICE,
        KIND_HOT_RESET_INFO,
        KIND_LIST_DEVICES,
        KIND_MANAGED_OBJECTS,
        KIND_LEASE_CYCLE,       /* three calls: latency and batch only */
        _KIND_MAX,
};

static const char *const kind_names[_KIND_MAX] = {
        [KIND_PING] = "ping",
        [KIND_CHECK] = "check",
        [KIND_GET_AFFECTED] = "get-affected",
        [KIND_GET_BLOCKERS] = "get-blockers",
        [KIND_GET_DEVICE] = "get-device",
        [KIND_HOT_RESET_INFO] = "hot-reset-info",
        [KIND_LIST_DEVICES] = "list-devices",
        [KIND_MANAGED_OBJECTS] = "managed-objects",
        [KIND_LEASE_CYCLE] = "lease-cycle",
};

static enum kind parse_kind(const char *s) {
        for (int k = 0; k < _KIND_MAX; k++)
                if (strcmp(s, kind_names[k]) == 0)
                        return (enum kind) k;
        fprintf(stderr, "hotresetd-load: unknown call kind '%s'\n", s);
        exit(2);
}

static bool kind_needs_address(enum kind k) {
        return k == KIND_CHECK || k == KIND_GET_AFFECTED || k == KIND_GET_BLOCKERS || k == KIND_GET_DEVICE ||
                k == KIND_HOT_RESET_INFO || k == KIND_LEASE_CYCLE;
}

/* What the calls of one kind are made on. */
struct target {
        const char *address;
        char *device_path;      /* from GetDevice: the path is the daemon's to choose */
        char *domain_path;      /* get-blockers: the device's ResetDomain */
        char *context_path;     /* hot-reset-info: a context holding the device */
};

static sd_bus *connect_bus(void) {
        sd_bus *bus = NULL;
        /* sd_bus_open_system honours DBUS_SYSTEM_BUS_ADDRESS. */
        int r = sd_bus_open_system(&bus);
        if (r < 0)
                fail("no-daemon", "cannot connect to the system bus (%s): %s",
                     getenv("DBUS_SYSTEM_BUS_ADDRESS") ?: "default", strerror(-r));
        (void) sd_bus_set_method_call_timeout(bus, call_timeout_usec);
        return bus;
}

static int new_call(sd_bus *bus, enum kind k, const struct target *t, sd_bus_message **ret) {
        sd_bus_message *m = NULL;
        int r;
        switch (k) {
        case KIND_PING:
                r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, ROOT_PATH, PEER_IFACE, "Ping");
                break;
        case KIND_CHECK:
                r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, t->device_path, DEVICE_IFACE,
                                                   "CheckHotReset");
                break;
        case KIND_GET_AFFECTED:
                r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, t->device_path, PROPS_IFACE, "Get");
                if (r >= 0)
                        r = sd_bus_message_append(m, "ss", DEVICE_IFACE, "Affected");
                break;
        case KIND_GET_BLOCKERS:
                r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, t->domain_path, PROPS_IFACE, "Get");
                if (r >= 0)
                        r = sd_bus_message_append(m, "ss", DOMAIN_IFACE, "Blockers");
                break;
        case KIND_GET_DEVICE:
                r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, ROOT_PATH, MANAGER_IFACE, "GetDevice");
                if (r >= 0)
                        r = sd_bus_message_append(m, "s", t->address);
                break;
        case KIND_HOT_RESET_INFO:
                r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, t->context_path, CONTEXT_IFACE,
                                                   "GetHotResetInfo");
                if (r >= 0)
                        r = sd_bus_message_append(m, "s", t->address);
                break;
        case KIND_LIST_DEVICES:
                r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, ROOT_PATH, MANAGER_IFACE, "ListDevices");
                break;
        case KIND_MANAGED_OBJECTS:
                r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, ROOT_PATH, OM_IFACE, "GetManagedObjects");
                break;
        default:
                r = -EINVAL;
        }
        if (r < 0) {
                sd_bus_message_unref(m);
                return r;
        }
        *ret = m;
        return 0;
}

static void lease_cycle(sd_bus *bus, const char *address);

/* One synchronous call of kind k; fails the run on any error. The reply is
 * returned when ret is not NULL. */
static void call_kind(sd_bus *bus, enum kind k, const struct target *t, sd_bus_message **ret) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        if (k == KIND_LEASE_CYCLE) {
                lease_cycle(bus, t->address);
                if (ret)
                        *ret = NULL;
                return;
        }
        int r = new_call(bus, k, t, &m);
        if (r < 0)
                fail_errno("building a call", r);
        r = sd_bus_call(bus, m, call_timeout_usec, &error, &reply);
        sd_bus_message_unref(m);
        if (r < 0)
                fail_call(kind_names[k], r, &error);
        if (ret)
                *ret = reply;
        else
                sd_bus_message_unref(reply);
}

static char *get_device_path(sd_bus *bus, const char *address) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *path;
        int r = sd_bus_call_method(bus, BUS_NAME, ROOT_PATH, MANAGER_IFACE, "GetDevice", &error, &reply, "s",
                                   address);
        if (r < 0)
                fail_call("GetDevice", r, &error);
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                fail_errno("reading GetDevice's reply", r);
        char *p = strdup(path);
        sd_bus_message_unref(reply);
        if (!p)
                fail_errno("strdup", ENOMEM);
        return p;
}

static char *get_domain_path(sd_bus *bus, const char *device_path) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *path;
        int r = sd_bus_get_property(bus, BUS_NAME, device_path, DEVICE_IFACE, "ResetDomain", &error, &reply, "o");
        if (r < 0)
                fail_call("Get ResetDomain", r, &error);
        r = sd_bus_message_read(reply, "o", &path); /* sd_bus_get_property() entered the variant */
        if (r < 0)
                fail_errno("reading the ResetDomain property", r);
        if (strcmp(path, "/") == 0)
                fail("usage", "%s has no reset domain", device_path);
        char *p = strdup(path);
        sd_bus_message_unref(reply);
        if (!p)
                fail_errno("strdup", ENOMEM);
        return p;
}

static char *create_context(sd_bus *bus) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *path;
        int r = sd_bus_call_method(bus, BUS_NAME, ROOT_PATH, MANAGER_IFACE, "CreateContext", &error, &reply,
                                   "a{sv}", 0);
        if (r < 0)
                fail_call("CreateContext", r, &error);
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                fail_errno("reading CreateContext's reply", r);
        char *p = strdup(path);
        sd_bus_message_unref(reply);
        if (!p)
                fail_errno("strdup", ENOMEM);
        return p;
}

static void attach_device(sd_bus *bus, const char *context, const char *address) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sd_bus_call_method(bus, BUS_NAME, context, CONTEXT_IFACE, "AttachDevice", &error, NULL, "sa{sv}",
                                   address, 0);
        if (r < 0)
                fail_call("AttachDevice", r, &error);
}

static void release_context(sd_bus *bus, const char *context) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sd_bus_call_method(bus, BUS_NAME, context, CONTEXT_IFACE, "Release", &error, NULL, "");
        if (r < 0)
                fail_call("Release", r, &error);
}

/* One lease cycle: what a VMM does to take a device and give it back. */
static void lease_cycle(sd_bus *bus, const char *address) {
        char *context = create_context(bus);
        attach_device(bus, context, address);
        release_context(bus, context);
        free(context);
}

static void target_setup(sd_bus *bus, enum kind k, const char *address, struct target *t) {
        *t = (struct target) { .address = address };
        if (kind_needs_address(k) && !address)
                fail("usage", "%s needs --address", kind_names[k]);
        if (k == KIND_CHECK || k == KIND_GET_AFFECTED || k == KIND_GET_BLOCKERS)
                t->device_path = get_device_path(bus, address);
        if (k == KIND_GET_BLOCKERS)
                t->domain_path = get_domain_path(bus, t->device_path);
        if (k == KIND_HOT_RESET_INFO) {
                t->context_path = create_context(bus);
                attach_device(bus, t->context_path, address);
        }
}

static void target_teardown(sd_bus *bus, struct target *t) {
        if (t->context_path)
                release_context(bus, t->context_path);
        free(t->context_path);
        free(t->device_path);
        free(t->domain_path);
        *t = (struct target) { 0 };
}

/* ------------------------------------------------------------------------
 * The size of a message body on the wire. sd-bus has no public call for
 * it, so walk the message and add up the D-Bus marshalling: every value
 * aligned to its type's alignment, strings with a 32-bit length and a NUL,
 * signatures with an 8-bit length, arrays with a 32-bit length and their
 * elements aligned, structs and dict entries on 8 bytes. Offsets are
 * relative to the start of the body, which the header pads to 8 bytes, so
 * the alignment is the same as on the wire. */

static size_t type_alignment(char c) {
        switch (c) {
        case 'y': case 'g': case 'v':
                return 1;
        case 'n': case 'q':
                return 2;
        case 'x': case 't': case 'd': case '(': case '{': case 'r': case 'e':
                return 8;
        default:
                return 4;
        }
}

static void align(size_t *off, size_t a) {
        *off = (*off + a - 1) & ~(a - 1);
}

static int measure_container(sd_bus_message *m, size_t *off) {
        for (;;) {
                char type;
                const char *contents;
                int r = sd_bus_message_peek_type(m, &type, &contents);
                if (r < 0)
                        return r;
                if (r == 0)
                        return 0;
                if (type == SD_BUS_TYPE_ARRAY || type == SD_BUS_TYPE_STRUCT || type == SD_BUS_TYPE_DICT_ENTRY ||
                    type == SD_BUS_TYPE_VARIANT) {
                        if (type == SD_BUS_TYPE_ARRAY) {
                                align(off, 4);
                                *off += 4;
                                align(off, type_alignment(contents[0]));
                        } else if (type == SD_BUS_TYPE_VARIANT)
                                *off += 1 + strlen(contents) + 1;
                        else
                                align(off, 8);
                        r = sd_bus_message_enter_container(m, type, contents);
                        if (r < 0)
                                return r;
                        r = measure_container(m, off);
                        if (r < 0)
                                return r;
                        r = sd_bus_message_exit_container(m);
                        if (r < 0)
                                return r;
                        continue;
                }
                union {
                        uint8_t y;
                        int b;
                        int16_t n;
                        uint16_t q;
                        int32_t i;
                        uint32_t u;
                        int64_t x;
                        uint64_t t;
                        double d;
                        const char *s;
                        int h;
                } v;
                r = sd_bus_message_read_basic(m, type, &v);
                if (r < 0)
                        return r;
                switch (type) {
                case 's': case 'o':
                        align(off, 4);
                        *off += 4 + strlen(v.s) + 1;
                        break;
                case 'g':
                        *off += 1 + strlen(v.s) + 1;
                        break;
                default: {
                        size_t a = type_alignment(type);
                        align(off, a);
                        *off += a;
                }
                }
        }
}

static size_t body_size(sd_bus_message *m) {
        size_t off = 0;
        int r = measure_container(m, &off);
        if (r < 0)
                fail_errno("walking a reply", r);
        (void) sd_bus_message_rewind(m, true);
        return off;
}

/* ------------------------------------------------------------------------
 * The pinger: a second connection in its own thread, pinging the daemon
 * every 1-2 ms (1 ms after each reply), keeping every send and reply time,
 * so the main thread can ask afterwards how long the daemon kept a client
 * waiting in any window. A ping that times out ends the pinger (its wait
 * is then "at least the timeout"); the daemon being slow is a result, not
 * an error. */

struct ping_sample {
        uint64_t sent, replied;
};

struct pinger {
        pthread_t thread;
        sd_bus *bus;
        atomic_bool stop;
        struct ping_sample *samples;
        size_t n, cap;
        char error[512];
        const char *error_kind;
        uint64_t failed_at;     /* when the failing ping was sent */
};

static void *pinger_main(void *userdata) {
        struct pinger *p = userdata;
        while (!atomic_load(&p->stop)) {
                sd_bus_error error = SD_BUS_ERROR_NULL;
                uint64_t sent = now_ns();
                int r = sd_bus_call_method(p->bus, BUS_NAME, ROOT_PATH, PEER_IFACE, "Ping", &error, NULL, "");
                uint64_t replied = now_ns();
                if (r < 0) {
                        p->error_kind = error_kind(r, &error);
                        snprintf(p->error, sizeof p->error, "Ping: %s", sd_bus_error_is_set(&error) ?
                                 (error.message ?: error.name) : strerror(-r));
                        p->failed_at = sent;
                        sd_bus_error_free(&error);
                        return NULL;
                }
                if (p->n == p->cap) {
                        size_t cap = p->cap ? 2 * p->cap : 4096;
                        struct ping_sample *s = realloc(p->samples, cap * sizeof *s);
                        if (!s) {
                                p->error_kind = "system";
                                snprintf(p->error, sizeof p->error, "out of memory");
                                return NULL;
                        }
                        p->samples = s;
                        p->cap = cap;
                }
                p->samples[p->n++] = (struct ping_sample) { sent, replied };
                struct timespec ts = { 0, 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        return NULL;
}

static void pinger_start(struct pinger *p) {
        *p = (struct pinger) { 0 };
        p->bus = connect_bus();
        int r = pthread_create(&p->thread, NULL, pinger_main, p);
        if (r != 0)
                fail_errno("pthread_create", r);
}

static void pinger_stop(struct pinger *p) {
        atomic_store(&p->stop, true);
        pthread_join(p->thread, NULL);
        p->bus = sd_bus_flush_close_unref(p->bus);
}

/* Ping figures over [from, to]: the longest wait for a reply (of pings
 * sent in the window) and the longest time between two consecutive replies
 * (the window's first gap counts from the last reply before it; a ping
 * still unanswered or failed at the end counts up to `to`). */
struct ping_window {
        uint64_t pings, max_wait, max_gap, p50_wait;
        bool failed;
};

static struct ping_window ping_window(const struct pinger *p, uint64_t from, uint64_t to) {
        struct ping_window w = { 0 };
        uint64_t last_reply = from;
        uint64_t *waits = xcalloc(p->n, sizeof *waits);
        for (size_t i = 0; i < p->n; i++) {
                const struct ping_sample *s = &p->samples[i];
                if (s->replied < from) {
                        last_reply = s->replied;
                        continue;
                }
                if (s->sent > to)
                        break;
                if (s->sent >= from) {
                        waits[w.pings++] = s->replied - s->sent;
                        if (s->replied - s->sent > w.max_wait)
                                w.max_wait = s->replied - s->sent;
                }
                if (s->replied - last_reply > w.max_gap)
                        w.max_gap = s->replied - last_reply;
                last_reply = s->replied;
        }
        if (to > last_reply && to - last_reply > w.max_gap)
                w.max_gap = to - last_reply;
        if (p->error_kind && p->failed_at <= to) {
                w.failed = true;
                if (to > p->failed_at && to - p->failed_at > w.max_wait)
                        w.max_wait = to - p->failed_at;
        }
        struct stats s = stats_of(waits, w.pings);
        w.p50_wait = s.p50;
        free(waits);
        return w;
}

static void print_ping_window(const char *prefix, const struct pinger *p, const struct ping_window *w) {
        printf(",\"%s_pings\":%" PRIu64 ",\"%s_ping_p50_us\":%.3f,\"%s_ping_max_wait_us\":%.3f"
               ",\"%s_ping_max_gap_us\":%.3f",
               prefix, w->pings, prefix, ns_to_us(w->p50_wait), prefix, ns_to_us(w->max_wait), prefix,
               ns_to_us(w->max_gap));
        if (w->failed) {
                printf(",\"%s_ping_failed\":", prefix);
                json_string(stdout, p->error);
        }
}

/* The idle Ping round trip, for ratios: N sync pings, p50. */
static uint64_t idle_ping_p50(sd_bus *bus, unsigned n) {
        uint64_t *v = xcalloc(n, sizeof *v);
        for (unsigned i = 0; i < n; i++) {
                uint64_t t0 = now_ns();
                call_kind(bus, KIND_PING, NULL, NULL);
                v[i] = now_ns() - t0;
        }
        struct stats s = stats_of(v, n);
        free(v);
        return s.p50;
}

/* ------------------------------------------------------------------------
 * Modes */

struct options {
        const char *address;
        unsigned count, warmup, connections, depth, rounds, cycles, expect;
        double max_seconds;
        long pid;
        const char *machine, *add_file, *remove_file;
};

static int mode_latency(enum kind k, const struct options *o) {
        sd_bus *bus = connect_bus();
        struct target t;
        target_setup(bus, k, o->address, &t);

        size_t reply_bytes = 0;
        if (k == KIND_MANAGED_OBJECTS || k == KIND_LIST_DEVICES) {
                sd_bus_message *reply = NULL;
                call_kind(bus, k, &t, &reply);
                reply_bytes = body_size(reply);
                sd_bus_message_unref(reply);
        }
        for (unsigned i = 0; i < o->warmup; i++) {
                call_kind(bus, KIND_PING, NULL, NULL);
                call_kind(bus, k, &t, NULL);
        }
        unsigned count = o->count;
        uint64_t *pings = xcalloc(count, sizeof *pings), *calls = xcalloc(count, sizeof *calls);
        uint64_t start = now_ns();
        for (unsigned i = 0; i < count; i++) {
                /* Ping and the call alternate: both see the same machine. */
                uint64_t t0 = now_ns();
                call_kind(bus, KIND_PING, NULL, NULL);
                uint64_t t1 = now_ns();
                call_kind(bus, k, &t, NULL);
                uint64_t t2 = now_ns();
                pings[i] = t1 - t0;
                calls[i] = t2 - t1;
                if (o->max_seconds > 0 && (double) (t2 - start) / 1e9 > o->max_seconds && i + 1 >= 3) {
                        /* Too slow to do them all: what was measured stands. */
                        fprintf(stderr, "hotresetd-load: %s: stopping after %u calls (--max-seconds)\n",
                                kind_names[k], i + 1);
                        count = i + 1;
                }
        }
        struct stats sp = stats_of(pings, count), sc = stats_of(calls, count);
        printf("{\"mode\":\"latency\",\"kind\":\"%s\",\"count\":%u,\"requested_count\":%u", kind_names[k], count,
               o->count);
        if (kind_needs_address(k)) {
                printf(",\"address\":");
                json_string(stdout, o->address);
        }
        print_stats("call", &sc);
        print_stats("ping", &sp);
        /* Both ratios are to the Ping p50: the Ping p99 of a short run is
         * mostly the machine's noise, a poor unit. */
        printf(",\"ratio_p50\":%.4f,\"ratio_p99\":%.4f", sp.p50 ? (double) sc.p50 / (double) sp.p50 : 0.0,
               sp.p50 ? (double) sc.p99 / (double) sp.p50 : 0.0);
        if (reply_bytes)
                printf(",\"reply_body_bytes\":%zu", reply_bytes);
        printf("}\n");
        fflush(stdout);
        free(pings);
        free(calls);
        target_teardown(bus, &t);
        sd_bus_flush_close_unref(bus);
        return 0;
}

static void wait_stdin_line(void) {
        char buf[256];
        (void) !fgets(buf, sizeof buf, stdin);
}

static int mode_batch(enum kind k, const struct options *o) {
        sd_bus *bus = connect_bus();
        struct target t;
        target_setup(bus, k, o->address, &t);
        call_kind(bus, k, &t, NULL);    /* the first call's one-time costs stay out */
        printf("{\"mode\":\"batch\",\"state\":\"ready\"}\n");
        fflush(stdout);
        wait_stdin_line();
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < o->count; i++)
                call_kind(bus, k, &t, NULL);
        uint64_t elapsed = now_ns() - t0;
        printf("{\"mode\":\"batch\",\"state\":\"done\",\"kind\":\"%s\",\"count\":%u,\"elapsed_us\":%.3f}\n",
               kind_names[k], o->count, ns_to_us(elapsed));
        fflush(stdout);
        wait_stdin_line();
        target_teardown(bus, &t);
        sd_bus_flush_close_unref(bus);
        return 0;
}

/* --- throughput: C connections, D calls in flight on each, one thread
 * polling all of them. */

struct tp_run;

struct tp_conn {
        sd_bus *bus;
        unsigned in_flight;
        struct tp_run *run;
};

struct tp_run {
        enum kind kind;
        const struct target *t;
        unsigned depth;
        uint64_t to_send, sent, done;
        int r;
        sd_bus_error error;
};

static void tp_fill(struct tp_conn *c);

static int tp_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        struct tp_conn *c = userdata;
        struct tp_run *run = c->run;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        if (e && run->r == 0) {
                run->r = -sd_bus_message_get_errno(m) ?: -EIO;
                sd_bus_error_copy(&run->error, e);
        }
        c->in_flight--;
        run->done++;
        tp_fill(c);
        return 0;
}

static void tp_fill(struct tp_conn *c) {
        struct tp_run *run = c->run;
        while (run->r == 0 && c->in_flight < run->depth && run->sent < run->to_send) {
                sd_bus_message *m = NULL;
                int r = new_call(c->bus, run->kind, run->t, &m);
                if (r >= 0)
                        r = sd_bus_call_async(c->bus, NULL, m, tp_reply, c, call_timeout_usec);
                sd_bus_message_unref(m);
                if (r < 0) {
                        run->r = r;
                        return;
                }
                c->in_flight++;
                run->sent++;
        }
}

/* Makes `count` calls of kind over the connections; returns the elapsed
 * time. */
static uint64_t tp_round(struct tp_conn *conns, unsigned nconn, enum kind k, const struct target *t, unsigned depth,
                         uint64_t count) {
        struct tp_run run = { .kind = k, .t = t, .depth = depth, .to_send = count, .error = SD_BUS_ERROR_NULL };
        struct pollfd *pfd = xcalloc(nconn, sizeof *pfd);
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < nconn; i++) {
                conns[i].run = &run;
                conns[i].in_flight = 0;
                tp_fill(&conns[i]);
        }
        while (run.done < run.sent || run.sent < run.to_send) {
                if (run.r < 0)
                        break;
                uint64_t until = UINT64_MAX;
                for (unsigned i = 0; i < nconn; i++) {
                        int r;
                        do
                                r = sd_bus_process(conns[i].bus, NULL);
                        while (r > 0);
                        if (r < 0) {
                                run.r = r;
                                break;
                        }
                        uint64_t tmo;
                        pfd[i] = (struct pollfd) { .fd = sd_bus_get_fd(conns[i].bus),
                                                   .events = (short) sd_bus_get_events(conns[i].bus) };
                        if (sd_bus_get_timeout(conns[i].bus, &tmo) >= 0 && tmo < until)
                                until = tmo;
                }
                if (run.r < 0 || (run.done >= run.sent && run.sent >= run.to_send))
                        break;
                int ms = -1;
                if (until != UINT64_MAX) {
                        /* sd_bus_get_timeout is absolute, on CLOCK_MONOTONIC, in µs */
                        uint64_t now_us = now_ns() / NSEC_PER_USEC;
                        ms = until <= now_us ? 0 : (int) ((until - now_us + 999) / 1000);
                }
                if (poll(pfd, nconn, ms) < 0 && errno != EINTR)
                        fail_errno("poll", errno);
        }
        uint64_t elapsed = now_ns() - t0;
        free(pfd);
        if (run.r < 0)
                fail_call(kind_names[k], run.r, &run.error);
        return elapsed;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static int mode_throughput(enum kind k, const struct options *o) {
        if (k == KIND_LEASE_CYCLE)
                fail("usage", "throughput of lease cycles is not measured");
        unsigned n = o->connections;
        struct tp_conn *conns = xcalloc(n, sizeof *conns);
        for (unsigned i = 0; i < n; i++)
                conns[i].bus = connect_bus();
        struct target t;
        target_setup(conns[0].bus, k, o->address, &t);
        /* Warm up: every connection is set up at the bus and the daemon. */
        tp_round(conns, n, KIND_PING, NULL, o->depth, n * o->depth);
        tp_round(conns, n, k, &t, o->depth, n * o->depth);

        double *ping_rate = xcalloc(o->rounds, sizeof(double)), *call_rate = xcalloc(o->rounds, sizeof(double));
        for (unsigned r = 0; r < o->rounds; r++) {
                uint64_t tp = tp_round(conns, n, KIND_PING, NULL, o->depth, o->count);
                uint64_t tc = tp_round(conns, n, k, &t, o->depth, o->count);
                ping_rate[r] = (double) o->count * 1e9 / (double) tp;
                call_rate[r] = (double) o->count * 1e9 / (double) tc;
        }
        qsort(ping_rate, o->rounds, sizeof(double), cmp_double);
        qsort(call_rate, o->rounds, sizeof(double), cmp_double);
        double pr = ping_rate[o->rounds / 2], cr = call_rate[o->rounds / 2];
        printf("{\"mode\":\"throughput\",\"kind\":\"%s\",\"connections\":%u,\"depth\":%u,\"count\":%u,"
               "\"rounds\":%u,\"calls_per_s\":%.1f,\"ping_calls_per_s\":%.1f,\"ratio\":%.4f}\n",
               kind_names[k], n, o->depth, o->count, o->rounds, cr, pr, pr > 0 ? cr / pr : 0.0);
        fflush(stdout);
        free(ping_rate);
        free(call_rate);
        target_teardown(conns[0].bus, &t);
        for (unsigned i = 0; i < n; i++)
                sd_bus_flush_close_unref(conns[i].bus);
        free(conns);
        return 0;
}

static int mode_lease(const struct options *o) {
        if (!o->address)
                fail("usage", "lease needs --address");
        sd_bus *bus = connect_bus();
        uint64_t idle = idle_ping_p50(bus, 200);
        lease_cycle(bus, o->address);   /* warm-up */

        struct pinger p;
        pinger_start(&p);
        struct timespec ts = { 0, 50 * 1000 * 1000 };
        nanosleep(&ts, NULL);           /* the pinger is under way */

        uint64_t *cycles = xcalloc(o->cycles, sizeof *cycles);
        unsigned done = 0;
        uint64_t start = now_ns();
        for (; done < o->cycles; done++) {
                uint64_t t0 = now_ns();
                lease_cycle(bus, o->address);
                cycles[done] = now_ns() - t0;
                if (o->max_seconds > 0 && (double) (now_ns() - start) / 1e9 > o->max_seconds) {
                        done++;
                        break;
                }
        }
        uint64_t end = now_ns();
        pinger_stop(&p);

        struct ping_window w = ping_window(&p, start, end);
        struct stats s = stats_of(cycles, done);
        printf("{\"mode\":\"lease\",\"address\":");
        json_string(stdout, o->address);
        printf(",\"cycles\":%u,\"requested_cycles\":%u,\"elapsed_s\":%.3f", done, o->cycles,
               (double) (end - start) / 1e9);
        print_stats("cycle", &s);
        printf(",\"idle_ping_p50_us\":%.3f,\"cycle_ratio_p50\":%.4f", ns_to_us(idle),
               idle ? (double) s.p50 / (double) idle : 0.0);
        print_ping_window("during", &p, &w);
        printf("}\n");
        fflush(stdout);
        free(cycles);
        free(p.samples);
        sd_bus_flush_close_unref(bus);
        return 0;
}

/* --- burst */

struct burst_count {
        const char *member;
        uint64_t count, last;
};

static int on_object_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        struct burst_count *c = userdata;
        const char *path;
        if (!sd_bus_message_is_signal(m, OM_IFACE, c->member))
                return 0;
        if (sd_bus_message_read(m, "o", &path) < 0)
                return 0;
        /* Only device objects: the daemon may publish other objects too. */
        if (strncmp(path, DEVICE_PATH_PREFIX, strlen(DEVICE_PATH_PREFIX)) != 0)
                return 0;
        c->count++;
        c->last = now_ns();
        return 0;
}

/* Processes the bus until `c` has counted `expect` signals or the
 * deadline passes; then, for `settle` more, so the pinger's window also
 * covers what the daemon does right after. */
static void wait_signals(sd_bus *bus, struct burst_count *c, uint64_t expect, uint64_t deadline, uint64_t settle) {
        uint64_t until = deadline;
        bool reached = false;
        for (;;) {
                int r;
                do
                        r = sd_bus_process(bus, NULL);
                while (r > 0);
                if (r < 0)
                        fail_call("waiting for signals", r, NULL);
                uint64_t now = now_ns();
                if (!reached && c->count >= expect) {
                        reached = true;
                        until = now + settle < deadline ? now + settle : deadline;
                }
                if (now >= until)
                        return;
                r = sd_bus_wait(bus, (until - now) / NSEC_PER_USEC + 1);
                if (r < 0)
                        fail_call("waiting for signals", r, NULL);
        }
}

static void do_rename(const char *from, const char *to) {
        if (rename(from, to) < 0)
                fail("system", "rename %s -> %s: %s", from, to, strerror(errno));
}

static void burst_phase(sd_bus *bus, struct pinger *p, struct burst_count *c, const char *file, const char *machine,
                        uint64_t expect, double max_seconds, const char *name) {
        c->count = 0;
        c->last = 0;
        uint64_t t0 = now_ns();
        do_rename(file, machine);
        wait_signals(bus, c, expect, t0 + (uint64_t) (max_seconds * 1e9), 250 * NSEC_PER_MSEC);
        uint64_t end = now_ns();
        struct ping_window w = ping_window(p, t0, end);
        printf(",\"%s_signals\":%" PRIu64 ",\"%s_complete\":%s,\"%s_last_signal_ms\":%.3f", name, c->count, name,
               c->count >= expect ? "true" : "false", name,
               c->last ? (double) (c->last - t0) / (double) NSEC_PER_MSEC : -1.0);
        print_ping_window(name, p, &w);
}

static int mode_burst(const struct options *o) {
        if (!o->machine || !o->add_file || !o->remove_file)
                fail("usage", "burst needs --machine, --add-file and --remove-file");
        sd_bus *bus = connect_bus();
        struct burst_count added = { .member = "InterfacesAdded" }, removed = { .member = "InterfacesRemoved" };
        int r = sd_bus_match_signal(bus, NULL, BUS_NAME, ROOT_PATH, OM_IFACE, "InterfacesAdded", on_object_signal,
                                    &added);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, BUS_NAME, ROOT_PATH, OM_IFACE, "InterfacesRemoved",
                                        on_object_signal, &removed);
        if (r < 0)
                fail_call("AddMatch", r, NULL);
        uint64_t idle = idle_ping_p50(bus, 100);

        struct pinger p;
        pinger_start(&p);
        struct timespec ts = { 0, 100 * 1000 * 1000 };
        nanosleep(&ts, NULL);

        printf("{\"mode\":\"burst\",\"expect\":%u,\"idle_ping_p50_us\":%.3f", o->expect, ns_to_us(idle));
        burst_phase(bus, &p, &added, o->add_file, o->machine, o->expect, o->max_seconds, "add");
        /* Let the daemon finish whatever follows the signals before the
         * removal starts. */
        wait_signals(bus, &removed, UINT64_MAX, now_ns() + 500 * NSEC_PER_MSEC, 0);
        burst_phase(bus, &p, &removed, o->remove_file, o->machine, o->expect, o->max_seconds, "remove");
        pinger_stop(&p);
        printf("}\n");
        fflush(stdout);
        free(p.samples);
        sd_bus_flush_close_unref(bus);
        return 0;
}

/* --- leak */

static long read_rss_kib(long pid) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%ld/status", pid);
        FILE *f = fopen(path, "re");
        if (!f)
                fail("no-reply", "cannot read %s: %s (did the daemon exit?)", path, strerror(errno));
        long kib = -1;
        while (fgets(line, sizeof line, f))
                if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
                        break;
        fclose(f);
        return kib;
}

static void settle(void) {
        struct timespec ts = { 0, 500 * 1000 * 1000 };
        nanosleep(&ts, NULL);
}

static long count_fds(long pid) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/fd", pid);
        DIR *d = opendir(path);
        if (!d)
                fail("no-reply", "cannot read %s: %s (did the daemon exit?)", path, strerror(errno));
        long n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

static int mode_leak(const struct options *o) {
        if (!o->address || o->pid <= 0)
                fail("usage", "leak needs --address and --pid");
        sd_bus *bus = connect_bus();
        /* Warm up first: allocations made once (caches, pools, the
         * allocator's arenas) are not growth. */
        for (unsigned i = 0; i < 200; i++)
                lease_cycle(bus, o->address);
        /* A released context's files may be closed just after Release
         * answers: compare settled states. */
        settle();
        long rss0 = read_rss_kib(o->pid), fds0 = count_fds(o->pid);
        printf("{\"mode\":\"leak\",\"cycles\":%u,\"rss_before_kib\":%ld,\"fds_before\":%ld,\"samples\":[", o->cycles,
               rss0, fds0);
        unsigned step = o->cycles >= 10 ? o->cycles / 10 : 1;
        uint64_t t0 = now_ns();
        for (unsigned i = 1; i <= o->cycles; i++) {
                lease_cycle(bus, o->address);
                if (i % step == 0)
                        printf("%s[%u,%ld,%ld]", i == step ? "" : ",", i, read_rss_kib(o->pid), count_fds(o->pid));
        }
        uint64_t elapsed = now_ns() - t0;
        settle();
        long rss1 = read_rss_kib(o->pid), fds1 = count_fds(o->pid);
        printf("],\"rss_after_kib\":%ld,\"fds_after\":%ld,\"elapsed_s\":%.3f,\"cycle_mean_us\":%.3f}\n", rss1, fds1,
               (double) elapsed / 1e9, o->cycles ? ns_to_us(elapsed) / o->cycles : 0.0);
        fflush(stdout);
        sd_bus_flush_close_unref(bus);
        return 0;
}

/* --- wait-name */

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        uint64_t *appeared = userdata;
        const char *name, *old_owner, *new_owner;
        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) >= 0 && strcmp(name, BUS_NAME) == 0 &&
            new_owner[0] && !*appeared)
                *appeared = now_ns();
        return 0;
}

static int mode_wait_name(const struct options *o) {
        sd_bus *bus = connect_bus();
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t appeared = 0;
        int r = sd_bus_add_match(bus, NULL,
                                 "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
                                 "member='NameOwnerChanged',arg0='" BUS_NAME "'",
                                 on_name_owner_changed, &appeared);
        if (r < 0)
                fail_call("AddMatch", r, NULL);
        printf("{\"mode\":\"wait-name\",\"state\":\"listening\"}\n");
        fflush(stdout);
        /* Already there (started before us)? Then the time is now. */
        sd_bus_message *reply = NULL;
        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "NameHasOwner", &error, &reply, "s", BUS_NAME);
        if (r < 0)
                fail_call("NameHasOwner", r, &error);
        int has = 0;
        (void) sd_bus_message_read(reply, "b", &has);
        sd_bus_message_unref(reply);
        uint64_t deadline = now_ns() + (uint64_t) (o->max_seconds * 1e9);
        while (!appeared && !has) {
                do
                        r = sd_bus_process(bus, NULL);
                while (r > 0 && !appeared);
                if (r < 0)
                        fail_call("waiting for the name", r, NULL);
                if (appeared)
                        break;
                uint64_t now = now_ns();
                if (now >= deadline)
                        fail("timeout", "%s did not appear within %.0f s", BUS_NAME, o->max_seconds);
                r = sd_bus_wait(bus, (deadline - now) / NSEC_PER_USEC + 1);
                if (r < 0)
                        fail_call("waiting for the name", r, NULL);
        }
        if (!appeared)
                appeared = now_ns();
        printf("{\"mode\":\"wait-name\",\"state\":\"appeared\",\"monotonic_ns\":%" PRIu64 "}\n", appeared);
        fflush(stdout);
        sd_bus_flush_close_unref(bus);
        return 0;
}

/* ------------------------------------------------------------------------ */

static _Noreturn void usage(int status) {
        fprintf(status ? stderr : stdout,
                "usage: hotresetd-load latency|batch|throughput KIND [--address=A] [--count=N] [--warmup=W]\n"
                "                      [--connections=C] [--depth=D] [--rounds=R] [--max-seconds=S]\n"
                "       hotresetd-load lease --address=A [--cycles=K] [--max-seconds=S]\n"
                "       hotresetd-load burst --machine=M --add-file=F --remove-file=F [--expect=N] [--max-seconds=S]\n"
                "       hotresetd-load leak --address=A --pid=PID [--cycles=K]\n"
                "       hotresetd-load wait-name [--max-seconds=S]\n"
                "KIND: ping check get-affected get-blockers get-device hot-reset-info list-devices managed-objects\n"
                "      lease-cycle (latency and batch only)\n"
                "common: --timeout=SECONDS per call (default 30)\n");
        exit(status);
}

static unsigned parse_unsigned(const char *opt, const char *s, unsigned min) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || *end || end == s || v < min || v > 100000000UL) {
                fprintf(stderr, "hotresetd-load: --%s: expected an integer >= %u, got '%s'\n", opt, min, s);
                exit(2);
        }
        return (unsigned) v;
}

static double parse_seconds(const char *opt, const char *s) {
        char *end;
        double v = strtod(s, &end);
        if (*end || end == s || !(v > 0) || v > 1e6) {
                fprintf(stderr, "hotresetd-load: --%s: expected seconds > 0, got '%s'\n", opt, s);
                exit(2);
        }
        return v;
}

int main(int argc, char **argv) {
        static const struct option longopts[] = {
                { "address", required_argument, NULL, 'a' },
                { "count", required_argument, NULL, 'n' },
                { "warmup", required_argument, NULL, 'w' },
                { "connections", required_argument, NULL, 'c' },
                { "depth", required_argument, NULL, 'd' },
                { "rounds", required_argument, NULL, 'r' },
                { "cycles", required_argument, NULL, 'k' },
                { "expect", required_argument, NULL, 'e' },
                { "max-seconds", required_argument, NULL, 'S' },
                { "timeout", required_argument, NULL, 'T' },
                { "pid", required_argument, NULL, 'p' },
                { "machine", required_argument, NULL, 'm' },
                { "add-file", required_argument, NULL, 'A' },
                { "remove-file", required_argument, NULL, 'R' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        struct options o = {
                .count = 1000, .warmup = 20, .connections = 1, .depth = 16, .rounds = 3, .cycles = 100,
                .expect = 1024, .max_seconds = 120,
        };
        int c;
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) >= 0) {
                switch (c) {
                case 'a': o.address = optarg; break;
                case 'n': o.count = parse_unsigned("count", optarg, 1); break;
                case 'w': o.warmup = parse_unsigned("warmup", optarg, 0); break;
                case 'c': o.connections = parse_unsigned("connections", optarg, 1); break;
                case 'd': o.depth = parse_unsigned("depth", optarg, 1); break;
                case 'r': o.rounds = parse_unsigned("rounds", optarg, 1); break;
                case 'k': o.cycles = parse_unsigned("cycles", optarg, 1); break;
                case 'e': o.expect = parse_unsigned("expect", optarg, 1); break;
                case 'S': o.max_seconds = parse_seconds("max-seconds", optarg); break;
                case 'T': call_timeout_usec = (uint64_t) (parse_seconds("timeout", optarg) * 1e6); break;
                case 'p': o.pid = (long) parse_unsigned("pid", optarg, 1); break;
                case 'm': o.machine = optarg; break;
                case 'A': o.add_file = optarg; break;
                case 'R': o.remove_file = optarg; break;
                case 'h': usage(0);
                default: usage(2);
                }
        }
        if (optind >= argc)
                usage(2);
        mode_name = argv[optind++];
        const char *kind_arg = optind < argc ? argv[optind++] : NULL;
        if (optind < argc)
                usage(2);

        if (strcmp(mode_name, "latency") == 0 || strcmp(mode_name, "batch") == 0 ||
            strcmp(mode_name, "throughput") == 0) {
                if (!kind_arg)
                        usage(2);
                enum kind k = parse_kind(kind_arg);
                if (mode_name[0] == 'l')
                        return mode_latency(k, &o);
                if (mode_name[0] == 'b')
                        return mode_batch(k, &o);
                return mode_throughput(k, &o);
        }
        if (kind_arg)
                usage(2);
        if (strcmp(mode_name, "lease") == 0)
                return mode_lease(&o);
        if (strcmp(mode_name, "burst") == 0)
                return mode_burst(&o);
        if (strcmp(mode_name, "leak") == 0)
                return mode_leak(&o);
        if (strcmp(mode_name, "wait-name") == 0)
                return mode_wait_name(&o);
        usage(2);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetd: command line, event loop, start-up and shutdown. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <systemd/sd-daemon.h>

#include "access.h"
#include "backend-linux.h"
#include "config.h"
#include "errors.h"
#include "lease-store.h"
#include "log.h"
#include "machine-file.h"
#include "manager-dbus.h"
#include "manager.h"
#include "policy.h"
#include "util.h"

static const char *arg_emulate = NULL;
static BackendUapi arg_uapi = BACKEND_UAPI_AUTO;
static bool arg_uapi_set = false;
static bool arg_dump_machine = false;
static const char *arg_dump_machine_path = NULL; /* NULL: stdout */
static const char *arg_config = NULL;           /* NULL: the default policy file */

static void help(void) {
        printf("Usage: hotresetd [OPTIONS]\n\n"
               "Brokers VFIO PCI hot resets for unprivileged clients over D-Bus (%s).\n\n"
               "  --emulate=MACHINE.json  Run on the emulated kernel described by MACHINE.json\n"
               "                          (watched: rename a new file over it to hotplug/rebind)\n"
               "  --uapi=auto|iommufd|group\n"
               "                          vfio uAPI on the real kernel: iommufd + device cdevs, or\n"
               "                          legacy groups/containers (default auto: iommufd if offered)\n"
               "  --dump-machine[=FILE]   Write the machine as an emulated machine file (to FILE,\n"
               "                          default stdout) and exit, without connecting to the bus\n"
               "  --config=PATH           The policy file (default " POLICY_DEFAULT_PATH ",\n"
               "                          plus PATH.d/*.conf); reloaded on SIGHUP and Manager.Reload()\n"
               "  --log-level=LEVEL       debug, info, notice, warning or err (default info)\n"
               "  --version               Show the version\n"
               "  -h, --help              Show this help\n",
               BROKER_BUS_NAME);
}

static int parse_log_level(const char *s) {
        static const struct {
                const char *name;
                int level;
        } levels[] = {
                { "debug", LOG_DEBUG },     { "info", LOG_INFO },   { "notice", LOG_NOTICE },
                { "warning", LOG_WARNING }, { "err", LOG_ERR },     { "error", LOG_ERR },
        };
        for (size_t i = 0; i < ELEMENTSOF(levels); i++)
                if (streq(s, levels[i].name))
                        return levels[i].level;
        return -EINVAL;
}

/* Returns > 0 to go on, 0 to exit successfully, < 0 on error. */
static int parse_argv(int argc, char *argv[]) {
        enum { ARG_EMULATE = 0x100, ARG_UAPI, ARG_DUMP_MACHINE, ARG_CONFIG, ARG_LOG_LEVEL, ARG_VERSION };
        static const struct option options[] = {
                { "emulate", required_argument, NULL, ARG_EMULATE },
                { "uapi", required_argument, NULL, ARG_UAPI },
                { "dump-machine", optional_argument, NULL, ARG_DUMP_MACHINE },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "version", no_argument, NULL, ARG_VERSION },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_EMULATE:
                        if (!*optarg)
                                return log_error_errno(EINVAL, "--emulate= needs a machine file.");
                        arg_emulate = optarg;
                        break;
                case ARG_UAPI:
                        if (backend_uapi_from_string(optarg, &arg_uapi) < 0)
                                return log_error_errno(EINVAL, "Unknown --uapi= value '%s': expected auto, iommufd or group.",
                                                       optarg);
                        arg_uapi_set = true;
                        break;
                case ARG_DUMP_MACHINE:
                        if (optarg && !*optarg)
                                return log_error_errno(EINVAL, "--dump-machine= needs a file name (or no '=' for stdout).");
                        arg_dump_machine = true;
                        arg_dump_machine_path = optarg && !streq(optarg, "-") ? optarg : NULL;
                        break;
                case ARG_CONFIG:
                        if (!*optarg)
                                return log_error_errno(EINVAL, "--config= needs a policy file.");
                        arg_config = optarg;
                        break;
                case ARG_LOG_LEVEL: {
                        int l = parse_log_level(optarg);
                        if (l < 0)
                                return log_error_errno(EINVAL, "Unknown log level '%s'.", optarg);
                        log_set_max_level(l);
                        break;
                }
                case ARG_VERSION:
                        printf("hotresetd %s\n", HOTRESETD_VERSION);
                        return 0;
                case 'h':
                        help();
                        return 0;
                default:
                        return -EINVAL;
                }
        }
        if (optind < argc)
                return log_error_errno(EINVAL, "Unexpected argument '%s'; see --help.", argv[optind]);
        if (arg_emulate && arg_uapi_set)
                return log_error_errno(EINVAL, "--uapi= is for the real kernel; with --emulate the machine file's "
                                               "\"cdev\" key chooses the model.");
        return 1;
}

/* --dump-machine: the devices the backend delivered, as a machine file. */
static int dump_machine(Manager *m) {
        _cleanup_(machine_freep) Machine *machine = NULL;
        _cleanup_(machine_freep) Machine *check = NULL;
        _cleanup_free_ char *json = NULL, *error = NULL;
        size_t n = topology_size(m->topology);
        struct utsname u;
        int r;

        machine = calloc(1, sizeof(Machine));
        if (!machine)
                return log_oom();
        machine->cdev = m->backend->cdev;
        if (uname(&u) < 0)
                strcpy(u.release, "?");
        if ((m->backend->emulated ? asprintf(&machine->description,
                                             "Dumped by hotresetd %s from the %s backend (an emulated kernel)",
                                             HOTRESETD_VERSION, m->backend->name)
                                  : asprintf(&machine->description, "Dumped by hotresetd %s from the %s backend on Linux %s",
                                             HOTRESETD_VERSION, m->backend->name, u.release)) < 0) {
                machine->description = NULL;
                return log_oom();
        }
        machine->devices = calloc(n ? n : 1, sizeof(PciDeviceInfo));
        if (!machine->devices)
                return log_oom();
        for (size_t i = 0; i < n; i++) {
                r = pci_device_info_copy(&machine->devices[i], &topology_at(m->topology, i)->info);
                if (r < 0)
                        return log_oom();
                machine->n_devices++;
                /* Not part of the format: the emulated kernel numbers cdevs. */
                free(machine->devices[i].cdev_path);
                machine->devices[i].cdev_path = NULL;
        }

        json = machine_to_json(machine);
        if (!json)
                return log_oom();

        /* What we write must load with --emulate; say so if it does not
         * (a broken machine: two bridges claiming one bus, ...). */
        r = machine_parse(json, arg_dump_machine_path ? arg_dump_machine_path : "<stdout>", &check, &error);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                log_warning("The dumped machine will not load with --emulate as it is: %s", strempty(error));

        if (arg_dump_machine_path) {
                r = write_file_atomic(arg_dump_machine_path, json, 0644); /* a machine file is no secret */
                if (r < 0)
                        return log_error_errno(r, "Failed to write %s: %m", arg_dump_machine_path);
                log_info("Wrote %zu PCI device%s (%s model) to %s.", n, n == 1 ? "" : "s",
                         machine->cdev ? "iommufd" : "group", arg_dump_machine_path);
        } else if (fputs(json, stdout) < 0 || fflush(stdout) != 0)
                return log_error_errno(EIO, "Failed to write the machine to standard output: %m");
        return 0;
}

/* Every lease holds an iommufd (or a vfio container) and one file per
 * device, a legacy-model lease one per IOMMU group too, and a reset in
 * progress its own duplicates of them. The soft limit's usual 1024 exists
 * for programs that use select(); this one never does (sd-event is epoll,
 * sd-bus and libudev poll), so take all the hard limit allows, as systemd's
 * own services do. The service sets the hard limit (LimitNOFILE=). */
static void raise_nofile_limit(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
                log_warning_errno(errno, "Failed to read the open file limit (RLIMIT_NOFILE), leaving it: %m");
                return;
        }
        if (rl.rlim_cur >= rl.rlim_max) {
                log_info("Open file limit (RLIMIT_NOFILE): %ju.", (uintmax_t) rl.rlim_cur);
                return;
        }
        rlim_t soft = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
                log_warning_errno(errno, "Failed to raise the open file limit (RLIMIT_NOFILE) from %ju to %ju, "
                                         "keeping %ju: %m",
                                  (uintmax_t) soft, (uintmax_t) rl.rlim_max, (uintmax_t) soft);
                return;
        }
        log_info("Raised the open file limit (RLIMIT_NOFILE) from %ju to the hard limit, %ju.", (uintmax_t) soft,
                 (uintmax_t) rl.rlim_max);
}

/* sd-bus delivers org.freedesktop.DBus.Local.Disconnected when the
 * connection to the bus is gone (dbus-daemon stopped or restarted, or it
 * dropped us). The match is local: nothing is registered on the bus. It
 * returns 0 so that sd-bus goes on to end the loop (exit on disconnect). */
static int on_bus_disconnected(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        bool *lost = userdata;
        *lost = true;
        return 0;
}

static int run(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        sd_event *e = NULL;
        bool bus_lost = false;
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r;

        raise_nofile_limit();
        /* Read now: once the files run out, /proc/sys/fs/file-max can no
         * longer be opened to name it in the error. */
        bus_error_read_file_limits();

        r = sd_event_default(&e);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate the event loop: %m");
        /* Under WatchdogSec= the loop tells systemd it is alive on every
         * turn: a daemon stuck (not just busy) is restarted. A no-op
         * elsewhere. */
        r = sd_event_set_watchdog(e, true);
        if (r < 0) {
                sd_event_unref(e);
                return log_error_errno(r, "Failed to set up the watchdog: %m");
        }

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
                sd_event_unref(e);
                return log_error_errno(errno, "Failed to block signals: %m");
        }
        r = sd_event_add_signal(e, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(e, NULL, SIGINT, NULL, NULL);
        if (r < 0) {
                sd_event_unref(e);
                return log_error_errno(r, "Failed to watch SIGTERM/SIGINT: %m");
        }

        r = manager_new(e, &m);
        sd_event_unref(e); /* the manager holds its own reference */
        if (r < 0)
                return log_error_errno(r, "Failed to set up the daemon: %m");

        if (arg_emulate)
                r = backend_emulated_new(m->event, arg_emulate, manager_on_backend_event, m, &m->backend);
        else
                r = backend_linux_new(m->event, arg_uapi, manager_on_backend_event, m, &m->backend);
        if (r < 0)
                return r; /* the backend logged what is wrong (the file, the kernel) */
        r = backend_start(m->backend);
        if (r < 0)
                return log_error_errno(r, "Failed to start the %s backend: %m", m->backend->name);

        if (arg_dump_machine)
                return dump_machine(m);

        r = access_setup(m, arg_config);
        if (r < 0)
                return r; /* logged what is wrong with the policy file */

        /* Leases of the previous run, before the bus: whoever sees the
         * name finds them. */
        r = lease_store_setup(m);
        if (r < 0)
                return r;
        r = lease_store_restore(m);
        if (r < 0)
                return r;

        r = manager_connect_bus(m);
        if (r < 0)
                return r;
        /* Exit when the bus goes away, with a failure status: the service
         * has Restart=on-failure, and without a bus no client can reach the
         * daemon. sd-bus ends the loop with sd_event_exit(EXIT_FAILURE);
         * the match tells it apart from SIGTERM/SIGINT (exit code 0) by
         * itself, whatever code ended the loop. */
        r = sd_bus_match_signal(m->bus, NULL, NULL, "/org/freedesktop/DBus/Local", "org.freedesktop.DBus.Local",
                                "Disconnected", on_bus_disconnected, &bus_lost);
        if (r < 0)
                return log_error_errno(r, "Failed to watch the bus connection: %m");
        r = sd_bus_set_exit_on_disconnect(m->bus, true);
        if (r < 0)
                return log_error_errno(r, "Failed to make the bus connection's end stop the daemon: %m");

        log_info("hotresetd %s running on the %s backend%s, %zu PCI devices.", HOTRESETD_VERSION, m->backend->name,
                 m->backend->emulated ? " (EMULATED kernel: no real device is touched)" : "",
                 topology_size(m->topology));
        (void) sd_notifyf(false, "READY=1\nSTATUS=Serving %zu PCI devices (%s)", topology_size(m->topology),
                          m->backend->name);

        r = sd_event_loop(m->event);
        (void) sd_notify(false, "STOPPING=1");
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        if (bus_lost || r != 0)
                return log_error_errno(ECONNRESET, "Lost the connection to the system bus; exiting with failure "
                                                   "so that the service manager starts hotresetd again.");
        log_info("hotresetd stopped.");
        return 0;
}

int main(int argc, char *argv[]) {
        int r = run(argc, argv);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

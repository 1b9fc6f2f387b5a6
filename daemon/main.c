/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetd: command line, event loop, start-up and shutdown. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "config.h"
#include "log.h"
#include "manager.h"
#include "util.h"

static const char *arg_emulate = NULL;

static void help(void) {
        printf("Usage: hotresetd [OPTIONS]\n\n"
               "Brokers VFIO PCI hot resets for unprivileged clients over D-Bus (%s).\n\n"
               "  --emulate=MACHINE.json  Run on the emulated kernel described by MACHINE.json\n"
               "                          (watched: rename a new file over it to hotplug/rebind)\n"
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
        enum { ARG_EMULATE = 0x100, ARG_LOG_LEVEL, ARG_VERSION };
        static const struct option options[] = {
                { "emulate", required_argument, NULL, ARG_EMULATE },
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
        return 1;
}

static int run(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        sd_event *e = NULL;
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r;

        if (!arg_emulate)
                return log_error_errno(EOPNOTSUPP,
                                       "No kernel backend: the Linux backend is not available in this version; "
                                       "run with --emulate=MACHINE.json (see examples/).");

        r = sd_event_default(&e);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate the event loop: %m");

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

        r = backend_emulated_new(m->event, arg_emulate, manager_on_backend_event, m, &m->backend);
        if (r < 0)
                return r; /* the backend logged what is wrong with the file */
        r = backend_start(m->backend);
        if (r < 0)
                return log_error_errno(r, "Failed to start the %s backend: %m", m->backend->name);

        r = manager_connect_bus(m);
        if (r < 0)
                return r;
        /* Exit when the bus goes away; systemd restarts us. */
        (void) sd_bus_set_exit_on_disconnect(m->bus, true);

        log_info("hotresetd %s running on the %s backend%s, %zu PCI devices.", HOTRESETD_VERSION, m->backend->name,
                 m->backend->emulated ? " (EMULATED kernel: no real device is touched)" : "",
                 topology_size(m->topology));
        (void) sd_notifyf(false, "READY=1\nSTATUS=Serving %zu PCI devices (%s)", topology_size(m->topology),
                          m->backend->name);

        r = sd_event_loop(m->event);
        (void) sd_notify(false, "STOPPING=1");
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        log_info("hotresetd stopped.");
        return 0;
}

int main(int argc, char *argv[]) {
        int r = run(argc, argv);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

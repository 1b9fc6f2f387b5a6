/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl release CONTEXT: detach everything and remove the context. */
#include <stdio.h>

#include "bus.h"
#include "hotresetctl.h"
#include "output.h"

static int run(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        if (parse_context_arg(argv[0], &path) < 0)
                return EXIT_USAGE;
        if (bus_open(&bus) < 0)
                return EXIT_ERROR;

        r = sd_bus_call_method(bus, BUS_NAME, path, CONTEXT_IFACE, "Release", &error, NULL, NULL);
        if (r < 0) {
                /* An unknown context is said as "no context N (...)". */
                bus_log_error(&error, r, "release %s", context_short_name(path));
                return EXIT_ERROR;
        }
        return EXIT_OK;
}

const Verb verb_release = {
        .name = "release",
        .synopsis = "CONTEXT",
        .summary = "Release a context: detach its devices, close its files, remove it",
        .help = "CONTEXT is its number N, context/N or /org/hotresetd/Broker1/context/N.\n"
                "Prints nothing on success.\n",
        .min_args = 1,
        .max_args = 1,
        .run = run,
        .interactive = true,
};

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl reload: the daemon reads its policy file again
 * (Manager.Reload, as SIGHUP). */
#include <stdio.h>

#include "bus.h"
#include "hotresetctl.h"
#include "output.h"

static int run(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        if (bus_open(&bus) < 0)
                return EXIT_ERROR;
        r = sd_bus_call_method(bus, BUS_NAME, ROOT_PATH, MANAGER_IFACE, "Reload", &error, NULL, NULL);
        if (r < 0) {
                /* A broken file: the message names the file, line and key;
                 * the policy in force stays. */
                bus_log_error(&error, r, "reload the policy");
                return EXIT_ERROR;
        }
        return EXIT_OK;
}

const Verb verb_reload = {
        .name = "reload",
        .synopsis = "",
        .summary = "Make the daemon read its policy file again",
        .help = "As SIGHUP or `systemctl reload hotresetd`. A broken file keeps the policy in\n"
                "force; the error names the file, the line and the key. Prints nothing on\n"
                "success. Needs polkit's org.hotresetd.manage (or root).\n",
        .min_args = 0,
        .max_args = 0,
        .run = run,
        .interactive = true,
};

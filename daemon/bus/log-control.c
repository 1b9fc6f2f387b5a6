/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.freedesktop.LogControl1 at /org/freedesktop/LogControl1, as systemd's
 * own services have it: `systemctl service-log-level hotresetd debug` (and
 * service-log-target) change the daemon's logging while it runs. Setting a
 * property is for callers with CAP_SYS_ADMIN (sd-bus checks writable
 * properties that way); reading is for everyone. */
#include <errno.h>
#include <systemd/sd-bus.h>

#include "log-control.h"
#include "log.h"
#include "util.h"

#define LOG_CONTROL_PATH "/org/freedesktop/LogControl1"
#define LOG_CONTROL_INTERFACE "org.freedesktop.LogControl1"

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg",   [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",  [LOG_ERR] = "err",
        [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

static int property_get_level(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        int l = log_get_max_level();
        return sd_bus_message_append(reply, "s", l >= 0 && l <= LOG_DEBUG ? level_names[l] : "info");
}

static int property_set_level(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *value, void *userdata, sd_bus_error *error) {
        const char *s;
        int r;

        r = sd_bus_message_read(value, "s", &s);
        if (r < 0)
                return r;
        for (int l = 0; l <= LOG_DEBUG; l++)
                if (streq(s, level_names[l])) {
                        log_set_max_level(l);
                        log_info("Log level set to %s over D-Bus (LogControl1).", s);
                        return 1;
                }
        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                 "Unknown log level '%s': expected emerg, alert, crit, err, warning, notice, info "
                                 "or debug.",
                                 s);
}

static int property_get_target(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", log_target_to_string(log_get_target()));
}

static int property_set_target(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *value, void *userdata, sd_bus_error *error) {
        const char *s;
        LogTarget t;
        int r;

        r = sd_bus_message_read(value, "s", &s);
        if (r < 0)
                return r;
        if (log_target_from_string(s, &t) < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Unsupported log target '%s': hotresetd logs to console (stderr), "
                                         "journal, auto (the journal under systemd, else stderr) or null.",
                                         s);
        log_set_target(t);
        log_info("Log target set to %s over D-Bus (LogControl1).", s);
        return 1;
}

static int property_get_identifier(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", "hotresetd");
}

static const sd_bus_vtable log_control_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_WRITABLE_PROPERTY("LogLevel", "s", property_get_level, property_set_level, 0,
                                 SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_WRITABLE_PROPERTY("LogTarget", "s", property_get_target, property_set_target, 0,
                                 SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("SyslogIdentifier", "s", property_get_identifier, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_VTABLE_END,
};

int log_control_register_bus(sd_bus *bus) {
        int r = sd_bus_add_object_vtable(bus, NULL, LOG_CONTROL_PATH, LOG_CONTROL_INTERFACE, log_control_vtable,
                                         NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to register %s: %m", LOG_CONTROL_PATH);
        return 0;
}

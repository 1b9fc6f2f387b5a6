/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.freedesktop.LogControl1 (systemctl service-log-level/-target). */
#pragma once

#include <systemd/sd-bus.h>

int log_control_register_bus(sd_bus *bus);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Logging to stderr, with sd-daemon priority prefixes so the journal keeps
 * the level when the daemon runs as a service. */
#pragma once

#include <syslog.h>

#include "util.h"

void log_set_max_level(int level);
int log_get_max_level(void);

/* Where log lines go: AUTO is the journal under systemd ($JOURNAL_STREAM),
 * else stderr; CONSOLE is stderr; JOURNAL the journal's native protocol
 * (sd_journal_send); NULL nowhere. Changed at run time over
 * org.freedesktop.LogControl1. */
typedef enum LogTarget {
        LOG_TARGET_AUTO,
        LOG_TARGET_CONSOLE,
        LOG_TARGET_JOURNAL,
        LOG_TARGET_NULL,
} LogTarget;
void log_set_target(LogTarget t);
LogTarget log_get_target(void);
const char *log_target_to_string(LogTarget t);
int log_target_from_string(const char *s, LogTarget *ret);

/* Returns -abs(error) (or 0) so callers can write `return log_error_errno(r, ...)`.
 * errno is set to abs(error) for %m. */
int log_internal(int level, int error, const char *fmt, ...) _printf_(3, 4);

#define log_debug(...) log_internal(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_internal(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_internal(LOG_NOTICE, 0, __VA_ARGS__)
#define log_full(level, ...) log_internal((level), 0, __VA_ARGS__)
#define log_warning(...) log_internal(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_internal(LOG_ERR, 0, __VA_ARGS__)
#define log_debug_errno(e, ...) log_internal(LOG_DEBUG, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_internal(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_internal(LOG_ERR, (e), __VA_ARGS__)
#define log_oom() log_internal(LOG_ERR, ENOMEM, "Out of memory.")

/* The audit log: one structured entry per decision, with a MESSAGE_ID per
 * kind (the catalog of ids is in README, "The journal") and fields such as
 * "HOTRESETD_DEVICE=0000:01:00.0" (NULL-terminated). Under systemd (the
 * journal is stderr's reader: $JOURNAL_STREAM) it goes to the journal with
 * its fields; elsewhere the message alone goes to stderr. Control
 * characters are escaped in the message and every field. */
#define LOG_MESSAGE_ID_LEASE_CREATED "78d8c9b1a22d4f2898acc19b93cae2d9"
#define LOG_MESSAGE_ID_LEASE_RELEASED "582fce96f19541958a05455481badedd"
#define LOG_MESSAGE_ID_DEVICE_ATTACHED "a3412200f9f649de939f2af05297a122"
#define LOG_MESSAGE_ID_RESET_DONE "0969e552773a4531aac40911a23aada5"
#define LOG_MESSAGE_ID_RESET_REFUSED "1798fcd48eda4627bf5799886d9106e0"
#define LOG_MESSAGE_ID_AUTH_REFUSED "d86ce3bfb1c14c2686991d9604a78a62"
#define LOG_MESSAGE_ID_POLICY_RELOADED "e30dde24ef8f4e908843e8bd0ec2e5d4"
#define LOG_MESSAGE_ID_CALL_DONE "88119ecdbac0471aa6ea6cfb7fc08ca7"
#define LOG_MESSAGE_ID_CALL_REFUSED "6e9239e9e606410f9c1a223202b56999"
/* Refusals of one user over LoggedRefusalsPerUserPerMinute=, counted. */
#define LOG_MESSAGE_ID_REFUSALS_NOT_LOGGED "d85b6bbac8e94e13be78dbeb6997fe28"

void log_struct(int level, const char *message_id, const char *const *fields, const char *fmt, ...) _printf_(4, 5);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who may do what, for the bus methods: the daemon's policy file (which
 * devices may be brokered, the limits) and polkit (auth.c), applied in the
 * same order by every method that changes state:
 *
 *   1. ownership of the context (context-dbus.c),
 *   2. the policy: devices outside the allow set → Error.PolicyDenied,
 *      count limits (contexts per user, devices per context) and rate
 *      limits → Error.RateLimited (checked, not yet taken),
 *   3. polkit (may return "pending": the handler runs again later, from 1),
 *   4. the action; rate-limit tokens are taken once it is under way.
 *
 * Nothing changes before 4, so a refused call leaves no context, no fd and
 * no reset behind. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>

#include "context.h"
#include "reset-check.h"
#include "topology.h"

typedef struct Manager Manager;

/* The polkit actions (policy/org.hotresetd.policy). */
#define ACTION_QUERY "org.hotresetd.query"
#define ACTION_ACQUIRE "org.hotresetd.acquire"
#define ACTION_RESET "org.hotresetd.reset"
#define ACTION_RESET_UNLEASED "org.hotresetd.reset-unleased"
#define ACTION_MANAGE "org.hotresetd.manage"

/* Loads the policy (config_path NULL: the default path, which may be
 * missing; an explicit path must exist), reads the polkit timeout from the
 * environment, reloads on SIGHUP. Logs what is wrong. */
int access_setup(Manager *m, const char *config_path);
/* Frees the policy, the rate limiter and pending polkit queries. */
void access_done(Manager *m);

/* Reads the policy again; a broken file keeps the old policy and the error
 * (InvalidFileContent) names the file, the line and the key. */
int access_reload(Manager *m, sd_bus_error *error);

/* Manager.Reload() (action manage). */
int access_method_reload(sd_bus_message *msg, void *userdata, sd_bus_error *error);

/* The caller's euid as the bus reports it. */
int access_caller_uid(sd_bus_message *msg, uid_t *ret);
/* The same and its pid (may be NULL), both as the bus vouches for them;
 * cached per unique name. */
int access_caller_ids(sd_bus_message *msg, uid_t *ret_uid, pid_t *ret_pid);
/* The same with the caller's command and unit as /proc said when it was
 * first seen (for the log only; "" when unknown). -ENOENT: ids only. */
int access_caller_describe(sd_bus_message *msg, uid_t *ret_uid, pid_t *ret_pid, const char **ret_comm,
                           const char **ret_unit, const char **ret_machine);
/* A bus name went away: what was cached about it goes. */
void access_forget_caller(const char *name);

/* 1 if the policy excludes d (with the reason in *ret_reason when given),
 * 0 if not, < 0 on allocation failure. */
int access_device_excluded(Manager *m, const PciDevice *d, char **ret_reason);

/* reset_check() with the holders of the daemon's contexts and the
 * policy's exclusions (BLOCK_POLICY). */
int access_reset_check(Manager *m, const PciDevice *d, ResetCheck *ret);

/* PolicyDenied unless the policy allows d (whole_scope: and every device a
 * hot reset of d hits). verb names the refused call in the message. */
int access_check_devices(Manager *m, const PciDevice *d, bool whole_scope, const char *verb, sd_bus_error *error);

/* PolicyDenied unless [Manager] UnleasedHotReset= is on. */
int access_check_unleased(Manager *m, sd_bus_error *error);

/* RateLimited when uid holds ContextsPerUser= contexts already. */
int access_check_context_limit(Manager *m, uid_t uid, sd_bus_error *error);
/* RateLimited when c holds DevicesPerContext= devices already. */
int access_check_device_limit(Context *c, sd_bus_error *error);
/* RateLimited when a reset of d now (whole_scope: of every device a hot
 * reset of d hits) would exceed ResetsPerDevicePerMinute= or uid's
 * ResetsPerUserPerMinute=/ResetBurstPerUser=. The message says when to
 * retry; a log line says who was refused and why. */
int access_check_reset_limits(Manager *m, uid_t uid, const PciDevice *d, bool whole_scope, const char *verb,
                              sd_bus_error *error);
/* Counts the reset against the same buckets, once it is under way. */
void access_take_reset_limits(Manager *m, uid_t uid, const PciDevice *d, bool whole_scope);

/* polkit for action with the details of d (NULL for none) and the context
 * (path, NULL for none). 1 / 0 / < 0 as auth_verify_async(). */
int access_verify(Manager *m, sd_bus_message *msg, const char *action, const char *verb, const PciDevice *d,
                  const char *context, sd_bus_error *error);

/* For a method on a device of context c, everything but the ownership
 * check in the order above: the policy (the device at a, or its whole reset
 * scope), the limits asked for, then polkit's action with the device's
 * details. 1: go on; 0: polkit is asked (return 1, this call comes back);
 * < 0 with error set: refused. */
typedef enum AccessFlags {
        ACCESS_WHOLE_SCOPE = 1 << 0,  /* a hot reset: every device it hits */
        ACCESS_RESET_LIMITS = 1 << 1, /* the reset rate limits */
        ACCESS_DEVICE_LIMIT = 1 << 2, /* DevicesPerContext= */
} AccessFlags;
int access_authorize_device(Context *c, sd_bus_message *msg, const char *action, const char *verb,
                            const PciAddress *a, AccessFlags flags, sd_bus_error *error);
/* Counts a reset through c against the rate limits, once it is under way. */
void access_count_reset(Context *c, sd_bus_message *msg, const PciAddress *a, bool whole_scope);

/* Whether the caller owns c: same bus name, or, for a persistent or
 * process-tied context,
 * the same uid. */
int access_is_context_owner(Context *c, sd_bus_message *msg);

/* For calls the owner may make without polkit (read-only calls, Release):
 * 1 when the caller owns c, else polkit's manage (1 / 0 / < 0). */
int access_verify_owner_or_manage(Context *c, sd_bus_message *msg, const char *verb, sd_bus_error *error);

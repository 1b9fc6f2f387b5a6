/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Authorization of bus callers with polkit, asynchronously, from the event
 * loop (no GLib; the call is org.freedesktop.PolicyKit1.Authority.
 * CheckAuthorization over sd-bus). Shaped after systemd's bus-polkit.c. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

typedef struct Manager Manager;
typedef struct AuthQuery AuthQuery;

/* How long to wait for polkit before the caller gets an error. The tests
 * shorten it with HOTRESETD_POLKIT_TIMEOUT_SEC. */
#define AUTH_TIMEOUT_USEC_DEFAULT (25ULL * 1000000ULL)

/* At most this many polkit checks pending per user (uid, however many
 * connections it opens) and in all; beyond that callers get LimitsExceeded
 * instead of queueing more. */
#define AUTH_PENDING_PER_USER_MAX 16
#define AUTH_PENDING_MAX 256

/* Is the sender of msg allowed to do action? details: key, value, ...,
 * NULL (address, vendor, device, driver, iommu_group, affected, verb; the
 * caller's machine is added here when it runs in a container or VM
 * registered with systemd-machined).
 *
 * Returns 1: authorized, go on. Root (euid 0 as the bus, not /proc,
 * reports it) always is, without asking polkit.
 * Returns 0: polkit was asked; the handler must return 1 without replying
 * and without changing anything. When polkit answers, msg is dispatched
 * again, the handler runs again from the top and this time gets the verdict
 * (so every check before this call is repeated on fresh state).
 * Returns < 0 with error set: AccessDenied naming the action and the
 * device; InteractiveAuthorizationRequired when authentication would be
 * needed and msg does not allow interactive authorization; AccessDenied
 * when polkit is not running or does not answer in time.
 *
 * Call it before changing any state. */
int auth_verify_async(Manager *m, sd_bus_message *msg, const char *action, const char **details, sd_bus_error *error);

/* Forgets every query (the daemon is stopping). */
void auth_queries_free(Manager *m);

/* AUTH_TIMEOUT_USEC_DEFAULT, or HOTRESETD_POLKIT_TIMEOUT_SEC when set and valid. */
uint64_t auth_timeout_from_environment(void);

/* Whether polkit is still being asked about msg (its handler will run
 * again when the answer comes). */
bool auth_query_pending(Manager *m, sd_bus_message *msg);

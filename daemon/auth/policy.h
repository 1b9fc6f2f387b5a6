/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's own policy file: which devices may be brokered at all, the
 * limits on resets, contexts and devices, and whether unleased hot resets
 * are allowed. /etc/hotresetd/hotresetd.conf plus the drop-ins in
 * hotresetd.conf.d/NAME.conf (read in lexical order, later files override
 * earlier ones). Pure: parsing, matching and the token buckets know
 * nothing of the bus, so they are unit tested on their own. The file
 * format is documented in policy/hotresetd.conf.example. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "pci-device.h"

#define POLICY_DEFAULT_PATH "/etc/hotresetd/hotresetd.conf"

typedef enum DeviceMatchType {
        DEVICE_MATCH_ADDRESS, /* fnmatch() glob over the canonical address */
        DEVICE_MATCH_VENDOR,  /* vendor, or vendor:device */
        DEVICE_MATCH_CLASS,   /* base class, base class + subclass, or the full 24-bit class */
} DeviceMatchType;

typedef struct DeviceMatch {
        DeviceMatchType type;
        char *glob;         /* DEVICE_MATCH_ADDRESS: canonical long form */
        uint16_t vendor_id, device_id;
        bool any_device;
        uint32_t class_code, class_mask;
        char *origin;       /* "DenyVendor=10de in FILE:LINE", for reasons */
} DeviceMatch;

/* The limits. Resets are token buckets: a burst of resets, refilled at a
 * rate per minute (per device: the burst is the rate). Root is exempt from
 * the per-user limits (its callers are the administrator's own tools); the
 * per-device and per-context limits apply to everyone. */
typedef enum PolicyLimit {
        POLICY_LIMIT_RESETS_PER_DEVICE,    /* ResetsPerDevicePerMinute= */
        POLICY_LIMIT_RESETS_PER_USER,      /* ResetsPerUserPerMinute= */
        POLICY_LIMIT_RESET_BURST_PER_USER, /* ResetBurstPerUser= (0: the per-minute rate) */
        POLICY_LIMIT_CONTEXTS_PER_USER,    /* ContextsPerUser= */
        POLICY_LIMIT_DEVICES_PER_CONTEXT,  /* DevicesPerContext= */
        POLICY_LIMIT_LOGGED_REFUSALS_PER_USER, /* LoggedRefusalsPerUserPerMinute= */
        _POLICY_LIMIT_MAX,
} PolicyLimit;

typedef struct Policy {
        char **files; /* the files read, in order (none: built-in defaults) */

        DeviceMatch *allow; /* empty: every device is in the allow set */
        size_t n_allow;
        DeviceMatch *deny;
        size_t n_deny;

        /* 0 = no limit; see PolicyLimit. */
        unsigned limits[_POLICY_LIMIT_MAX];
        char *limit_origin[_POLICY_LIMIT_MAX]; /* where each was set; NULL: built-in default */

        bool unleased_hot_reset;
        char *unleased_origin;
} Policy;

/* The built-in ContextsPerUser=: what one user other than root may hold
 * when no policy file says otherwise (see policy_new_default()). */
#define POLICY_DEFAULT_CONTEXTS_PER_USER 64u

/* The built-in LoggedRefusalsPerUserPerMinute=: the refused calls of one
 * user other than root that reach the journal, a minute (a burst of as
 * many); the rest are counted, and the count is logged. */
#define POLICY_DEFAULT_LOGGED_REFUSALS_PER_USER 60u

/* The built-in defaults: every device, no limits but ContextsPerUser=
 * (POLICY_DEFAULT_CONTEXTS_PER_USER) and LoggedRefusalsPerUserPerMinute=
 * (POLICY_DEFAULT_LOGGED_REFUSALS_PER_USER), unleased resets on. */
Policy *policy_new_default(void);
Policy *policy_free(Policy *p);
static inline void policy_freep(Policy **p) {
        policy_free(*p);
}

/* Reads path and then path.d/NAME.conf in lexical order. A missing main file
 * is fine when missing_ok (the built-in defaults and the drop-ins apply).
 * On failure returns a negative errno and, in *ret_error, a message naming
 * the file, the line and the key ("FILE:LINE: [Limits] Foo=: unknown key"). */
int policy_load(const char *path, bool missing_ok, Policy **ret, char **ret_error);

/* Whether the policy lets the daemon broker a device. When it doesn't and
 * ret_reason is given, *ret_reason (malloc'ed) says why, starting with
 * "excluded by policy: ". Returns < 0 only on allocation failure. */
int policy_device_allowed(const Policy *p, const PciDeviceInfo *info, char **ret_reason);

/* The policy file key of a limit ("ResetsPerDevicePerMinute", ...). */
const char *policy_limit_to_string(PolicyLimit l);

/* The reset burst per user that applies (the per-minute rate when unset). */
unsigned policy_user_reset_burst(const Policy *p);

/* "ResetsPerUserPerMinute=10 in FILE:LINE", or "... (built-in default)",
 * for messages. Malloc'ed; NULL on allocation failure. */
char *policy_describe_limit(const Policy *p, PolicyLimit l);

/* Token buckets keyed by a string ("uid:1000", "device:0000:01:00.0"). A
 * bucket holds at most burst tokens and gains per_minute tokens a minute;
 * an action takes one. per_minute == 0 means no limit. Time is passed in
 * (CLOCK_MONOTONIC µs) so the tests can drive it. */
typedef struct RateLimiter RateLimiter;
RateLimiter *rate_limiter_new(void);
RateLimiter *rate_limiter_free(RateLimiter *l);
/* True if a token is there now; otherwise false and, in *ret_wait_usec,
 * how long until one is. Takes nothing. */
bool rate_limiter_check(RateLimiter *l, const char *key, unsigned burst, unsigned per_minute, uint64_t now_usec,
                        uint64_t *ret_wait_usec);
/* Takes a token (the bucket may go negative only if the caller did not
 * check first). Returns -ENOMEM on allocation failure. */
int rate_limiter_take(RateLimiter *l, const char *key, unsigned burst, unsigned per_minute, uint64_t now_usec);
/* For what is only logged. Takes a token when there is one and returns 1,
 * with *ret_skipped the actions skipped since the key last had one (the
 * count is zeroed); otherwise counts the action as skipped and returns 0,
 * with *ret_wait_usec how long until the key has a token again. -ENOMEM on
 * allocation failure. */
int rate_limiter_take_or_skip(RateLimiter *l, const char *key, unsigned burst, unsigned per_minute,
                              uint64_t now_usec, uint64_t *ret_skipped, uint64_t *ret_wait_usec);
/* Every key with skipped actions that has a token now (or every one, with
 * force) spends a token on handing its count to fn (with the per-minute
 * rate it was counted under), and the count is zeroed. Returns the keys
 * still holding a count, and in *ret_wait_usec (optional) how long until
 * the first of them has a token. */
typedef void (*RateLimiterSkippedFn)(const char *key, uint64_t skipped, unsigned per_minute, void *userdata);
size_t rate_limiter_flush_skipped(RateLimiter *l, uint64_t now_usec, bool force, RateLimiterSkippedFn fn,
                                  void *userdata, uint64_t *ret_wait_usec);
/* Number of buckets kept (full buckets with nothing skipped are dropped),
 * for the tests. */
size_t rate_limiter_size(RateLimiter *l);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "policy.h"
#include "refusal-log.h"

#define KEY_UNKNOWN "uid:unknown"

static unsigned refusal_rate(Manager *m) {
        return m->policy ? m->policy->limits[POLICY_LIMIT_LOGGED_REFUSALS_PER_USER] : 0;
}

static void log_count(const char *key, uint64_t n, unsigned per_minute, void *userdata) {
        char f[2][64];
        const char *fields[3] = { f[0], NULL, NULL };
        const char *uid = key + strlen("uid:"); /* the keys of refusal_log_allowed() */
        bool known = !streq(key, KEY_UNKNOWN);

        snprintf(f[0], sizeof f[0], "HOTRESETD_NOT_LOGGED=%" PRIu64, n);
        if (known) {
                snprintf(f[1], sizeof f[1], "HOTRESETD_CALLER_UID=%s", uid);
                fields[1] = f[1];
        }
        log_struct(LOG_NOTICE, LOG_MESSAGE_ID_REFUSALS_NOT_LOGGED, fields,
                   "%" PRIu64 " refused calls by %s%s were not logged one by one (over "
                   "LoggedRefusalsPerUserPerMinute=%u).",
                   n, known ? "uid " : "an unknown user", known ? uid : "", per_minute);
}

static void arm(Manager *m, uint64_t when);

static int on_report(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        uint64_t wait = 0;
        if (rate_limiter_flush_skipped(m->refusal_limiter, usec, false, log_count, m, &wait) > 0)
                arm(m, usec + wait);
        return 0;
}

static void arm(Manager *m, uint64_t when) {
        int r;

        if (m->refusal_report_source) {
                int enabled = SD_EVENT_OFF;
                (void) sd_event_source_get_enabled(m->refusal_report_source, &enabled);
                if (enabled != SD_EVENT_OFF)
                        return; /* a report is due already: it re-arms for the rest */
                r = sd_event_source_set_time(m->refusal_report_source, when);
                if (r >= 0)
                        r = sd_event_source_set_enabled(m->refusal_report_source, SD_EVENT_ONESHOT);
        } else
                r = sd_event_add_time(m->event, &m->refusal_report_source, CLOCK_MONOTONIC, when, 0, on_report, m);
        if (r < 0)
                log_warning_errno(r, "Failed to schedule the report of refusals not logged: %m");
}

bool refusal_log_allowed(Manager *m, uid_t uid) {
        unsigned rate = refusal_rate(m);
        uint64_t skipped = 0, wait = 0, now;
        char key[32];
        int r;

        if (uid == 0)
                return true;
        if (rate == 0) {
                /* No limit (a reload lifted it): what was counted is
                 * reported now, under the rate it was counted under. */
                if (m->refusal_limiter)
                        refusal_log_done(m);
                return true;
        }
        if (!m->refusal_limiter) {
                m->refusal_limiter = rate_limiter_new();
                if (!m->refusal_limiter)
                        return true;
        }
        if (uid == (uid_t) -1)
                snprintf(key, sizeof key, KEY_UNKNOWN);
        else
                snprintf(key, sizeof key, "uid:%u", (unsigned) uid);
        if (sd_event_now(m->event, CLOCK_MONOTONIC, &now) < 0)
                return true;
        r = rate_limiter_take_or_skip(m->refusal_limiter, key, rate, rate, now, &skipped, &wait);
        if (r < 0)
                return true; /* out of memory: rather logged */
        if (r > 0) {
                if (skipped == 0)
                        return true;
                /* Room again after refusals were counted: the count, this
                 * one included, takes this line. */
                log_count(key, skipped + 1, rate, m);
                return false;
        }
        arm(m, now + wait);
        return false;
}

void refusal_log_done(Manager *m) {
        if (m->refusal_limiter)
                (void) rate_limiter_flush_skipped(m->refusal_limiter, 0, true, log_count, m, NULL);
        m->refusal_report_source = sd_event_source_disable_unref(m->refusal_report_source);
        m->refusal_limiter = rate_limiter_free(m->refusal_limiter);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* polkit over D-Bus from the event loop. A handler that needs an
 * authorization calls auth_verify_async(); the first time, a
 * CheckAuthorization call goes out, the caller's message is kept (one
 * AuthQuery per message) and the handler returns without replying. When
 * polkit answers (or does not, within the timeout), the verdict is stored
 * in the query and the message is put back into the bus's read queue: the
 * handler runs again, finds the verdict and goes on or fails. The query is
 * freed from an idle event source once that second dispatch is done. Other
 * callers and udev events are served all along. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <systemd/sd-login.h>

#include "auth.h"
#include "log.h"
#include "manager.h"
#include "util.h"

#define POLKIT_NAME "org.freedesktop.PolicyKit1"
#define POLKIT_PATH "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_INTERFACE "org.freedesktop.PolicyKit1.Authority"
#define POLKIT_CHECK_ALLOW_USER_INTERACTION 1u

typedef enum AuthVerdict {
        AUTH_PENDING,
        AUTH_AUTHORIZED,
        AUTH_DENIED,
        AUTH_FAILED, /* error holds what to answer */
} AuthVerdict;

struct AuthQuery {
        Manager *manager;
        AuthQuery *next;
        sd_bus_message *request; /* the caller's message, dispatched again on the answer */
        char *action;
        char **details; /* as the handler passed them, to recognise the second dispatch */
        char *what;     /* "hot-reset of 0000:01:00.0", for messages */
        uid_t uid;
        bool interactive;
        uint64_t started_usec;
        sd_bus_slot *slot; /* the pending CheckAuthorization */
        sd_event_source *defer;
        AuthVerdict verdict;
        sd_bus_error error;
};

uint64_t auth_timeout_from_environment(void) {
        const char *e = getenv("HOTRESETD_POLKIT_TIMEOUT_SEC");
        char *end;
        unsigned long v;

        if (!e || !*e)
                return AUTH_TIMEOUT_USEC_DEFAULT;
        errno = 0;
        v = strtoul(e, &end, 10);
        if (errno != 0 || *end != 0 || v == 0 || v > 3600) {
                log_warning("Ignoring HOTRESETD_POLKIT_TIMEOUT_SEC=%s: not a number of seconds from 1 to 3600.", e);
                return AUTH_TIMEOUT_USEC_DEFAULT;
        }
        return (uint64_t) v * 1000000ULL;
}

static AuthQuery *auth_query_free(AuthQuery *q) {
        if (!q)
                return NULL;
        for (AuthQuery **p = &q->manager->auth_queries; *p; p = &(*p)->next)
                if (*p == q) {
                        *p = q->next;
                        break;
                }
        sd_bus_slot_unref(q->slot);
        sd_event_source_disable_unref(q->defer);
        sd_bus_message_unref(q->request);
        free(q->action);
        strv_free(q->details);
        free(q->what);
        sd_bus_error_free(&q->error);
        free(q);
        return NULL;
}

void auth_queries_free(Manager *m) {
        while (m->auth_queries)
                auth_query_free(m->auth_queries);
}

static AuthQuery *auth_query_find(Manager *m, sd_bus_message *msg) {
        for (AuthQuery *q = m->auth_queries; q; q = q->next)
                if (q->request == msg)
                        return q;
        return NULL;
}

static const char *details_get(const char **details, const char *key) {
        for (const char **d = details; d && d[0] && d[1]; d += 2)
                if (streq(d[0], key))
                        return d[1];
        return NULL;
}

static bool details_equal(char **a, const char **b) {
        size_t i = 0;
        for (; a && a[i] && b && b[i]; i++)
                if (!streq(a[i], b[i]))
                        return false;
        return !(a && a[i]) && !(b && b[i]);
}

/* "hot-reset of 0000:01:00.0", "release of /org/.../context/3", "reload". */
static char *describe(const char *action, const char **details) {
        const char *verb = details_get(details, "verb") ?: action;
        const char *object = details_get(details, "address") ?: details_get(details, "context");
        char *s;

        if (asprintf(&s, "%s%s%s", verb, object ? " of " : "", strempty(object)) < 0)
                return NULL;
        return s;
}

static bool error_is_unknown_service(const sd_bus_error *e) {
        return sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                      "org.freedesktop.systemd1.NoSuchUnit", "org.freedesktop.systemd1.LoadFailed") ||
               (e->name && strncmp(e->name, "org.freedesktop.DBus.Error.Spawn.", 33) == 0);
}

/* Turns polkit's answer (or the lack of one) into the query's verdict. */
static int read_answer(AuthQuery *q, sd_bus_message *reply) {
        int authorized, challenge, r;

        if (sd_bus_message_is_method_error(reply, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(reply);
                uint64_t timeout = q->manager->polkit_timeout_usec;
                uint64_t now = 0;

                (void) sd_event_now(q->manager->event, CLOCK_MONOTONIC, &now);
                q->verdict = AUTH_FAILED;
                if (error_is_unknown_service(e)) {
                        log_warning("Cannot authorize %s for uid %u: polkit is not running (%s).", q->what,
                                    (unsigned) q->uid, e->message ?: e->name);
                        (void) sd_bus_error_setf(&q->error, SD_BUS_ERROR_ACCESS_DENIED,
                                                 "Cannot authorize %s (polkit action %s): the authorization service "
                                                 "is unavailable (polkit is not running: %s). Root may still call; "
                                                 "start polkit (polkit.service) for everyone else.",
                                                 q->what, q->action, e->message ?: e->name);
                        return 0;
                }
                if (sd_bus_error_has_names(e, SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT) &&
                    now >= q->started_usec + timeout - timeout / 10) {
                        log_warning("Cannot authorize %s for uid %u: polkit did not answer within %" PRIu64 " s.",
                                    q->what, (unsigned) q->uid, timeout / 1000000);
                        (void) sd_bus_error_setf(&q->error, SD_BUS_ERROR_ACCESS_DENIED,
                                                 "Cannot authorize %s (polkit action %s): polkit did not answer "
                                                 "within %" PRIu64 " s; try again later.",
                                                 q->what, q->action, timeout / 1000000);
                        return 0;
                }
                log_warning("Cannot authorize %s for uid %u: polkit failed: %s: %s", q->what, (unsigned) q->uid,
                            e->name, strempty(e->message));
                (void) sd_bus_error_setf(&q->error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Cannot authorize %s (polkit action %s): polkit failed: %s: %s", q->what,
                                         q->action, e->name, strempty(e->message));
                return 0;
        }

        r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
        if (r >= 0)
                r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
        if (r < 0)
                return r;

        if (authorized) {
                log_debug("polkit authorizes %s (%s) for uid %u.", q->what, q->action, (unsigned) q->uid);
                q->verdict = AUTH_AUTHORIZED;
        } else if (challenge && !q->interactive) {
                log_debug("Refused %s to uid %u: polkit wants authentication for %s and the call does not allow "
                          "interactive authorization.",
                          q->what, (unsigned) q->uid, q->action);
                q->verdict = AUTH_FAILED;
                (void) sd_bus_error_setf(&q->error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                         "Authentication is required for %s (polkit action %s): call again allowing "
                                         "interactive authorization (busctl does by default) from a session with a "
                                         "polkit agent, or ask an administrator for a polkit rule.",
                                         q->what, q->action);
                return 0;
        } else {
                log_debug("Refused %s to uid %u: polkit does not authorize %s.", q->what, (unsigned) q->uid,
                          q->action);
                q->verdict = AUTH_DENIED;
        }
        return 0;
}

static int on_idle_free(sd_event_source *s, void *userdata) {
        /* The second dispatch of the message is done (it ran at normal
         * priority, before this idle source). */
        auth_query_free(userdata);
        return 0;
}

static int on_polkit_answer(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        AuthQuery *q = userdata;
        Manager *m = q->manager;
        int r;

        q->slot = sd_bus_slot_unref(q->slot);

        r = read_answer(q, reply);
        if (r >= 0)
                r = sd_event_add_defer(m->event, &q->defer, on_idle_free, q);
        if (r >= 0)
                r = sd_event_source_set_priority(q->defer, SD_EVENT_PRIORITY_IDLE);
        if (r >= 0)
                r = sd_bus_message_rewind(q->request, true);
        if (r >= 0)
                r = sd_bus_enqueue_for_read(sd_bus_message_get_bus(q->request), q->request);
        if (r < 0) {
                log_warning_errno(r, "Failed to process polkit's answer about %s: %m", q->what);
                (void) sd_bus_reply_method_errorf(q->request, SD_BUS_ERROR_ACCESS_DENIED,
                                                  "Cannot authorize %s: processing polkit's answer failed: %s",
                                                  q->what, strerror(-r));
                auth_query_free(q);
        }
        return 0;
}

static int append_details(sd_bus_message *call, const char **details, const char *machine) {
        int r;

        r = sd_bus_message_open_container(call, 'a', "{ss}");
        if (r < 0)
                return r;
        for (const char **d = details; d && d[0] && d[1]; d += 2) {
                r = sd_bus_message_append(call, "{ss}", d[0], d[1]);
                if (r < 0)
                        return r;
        }
        if (machine) {
                r = sd_bus_message_append(call, "{ss}", "machine", machine);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(call);
}

static int verdict_of(AuthQuery *q, sd_bus_error *error) {
        switch (q->verdict) {
        case AUTH_AUTHORIZED:
                return 1;
        case AUTH_DENIED:
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Not authorized: polkit does not allow %s to this caller (polkit action "
                                         "%s). An administrator can grant it with a polkit rule (see "
                                         "50-hotresetd-vfio-group.rules.example).",
                                         q->what, q->action);
        case AUTH_FAILED:
                if (!sd_bus_error_is_set(&q->error)) /* out of memory while recording it: still a no */
                        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "Cannot authorize %s.", q->what);
                return sd_bus_error_set(error, q->error.name, q->error.message);
        case AUTH_PENDING:
        default:
                return 0; /* cannot happen: the message is not dispatched while polkit thinks */
        }
}

bool auth_query_pending(Manager *m, sd_bus_message *msg) {
        AuthQuery *q = auth_query_find(m, msg);
        return q && q->verdict == AUTH_PENDING;
}

int auth_verify_async(Manager *m, sd_bus_message *msg, const char *action, const char **details, sd_bus_error *error) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        _cleanup_free_ char *machine = NULL;
        const char *sender = sd_bus_message_get_sender(msg);
        size_t pending_all = 0, pending_caller = 0;
        AuthQuery *q;
        uid_t uid = (uid_t) -1;
        pid_t pid;
        int r;

        /* The second dispatch: polkit has answered. */
        q = auth_query_find(m, msg);
        if (q) {
                if (streq(q->action, action) && details_equal(q->details, details))
                        return verdict_of(q, error);
                /* The handler asks something else this time (the device
                 * changed while polkit thought): ask again. */
                auth_query_free(q);
        }

        if (!sender)
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED,
                                        "Not authorized: the call has no sender to authorize.");

        r = sd_bus_query_sender_creds(msg, SD_BUS_CREDS_EUID | SD_BUS_CREDS_PID, &creds);
        if (r < 0)
                return r;
        /* Only what the bus vouches for: never /proc (augmented) data. */
        if ((sd_bus_creds_get_augmented_mask(creds) & SD_BUS_CREDS_EUID) == 0 &&
            sd_bus_creds_get_euid(creds, &uid) >= 0 && uid == 0)
                return 1;
        if ((sd_bus_creds_get_augmented_mask(creds) & SD_BUS_CREDS_PID) == 0 && sd_bus_creds_get_pid(creds, &pid) >= 0)
                (void) sd_pid_get_machine_name(pid, &machine);

        for (AuthQuery *i = m->auth_queries; i; i = i->next) {
                pending_all++;
                /* Per user, not per connection: one user can open many. */
                if (i->uid == uid)
                        pending_caller++;
        }
        if (pending_caller >= AUTH_PENDING_PER_USER_MAX || pending_all >= AUTH_PENDING_MAX)
                return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                         "Too many authorization checks are pending (%zu of yours, %zu in all); "
                                         "wait for the answers before asking more.",
                                         pending_caller, pending_all);

        q = calloc(1, sizeof(AuthQuery));
        if (!q)
                return -ENOMEM;
        q->manager = m;
        q->next = m->auth_queries;
        m->auth_queries = q;
        q->request = sd_bus_message_ref(msg);
        q->uid = uid;
        q->action = strdup(action);
        q->what = describe(action, details);
        for (const char **d = details; d && *d; d++)
                if (strv_extend(&q->details, *d) < 0)
                        goto oom;
        if (!q->action || !q->what)
                goto oom;
        r = sd_bus_message_get_allow_interactive_authorization(msg);
        q->interactive = r > 0;
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &q->started_usec);

        r = sd_bus_message_new_method_call(m->bus, &call, POLKIT_NAME, POLKIT_PATH, POLKIT_INTERFACE,
                                           "CheckAuthorization");
        if (r >= 0)
                r = sd_bus_message_append(call, "(sa{sv})s", "system-bus-name", 1, "name", "s", sender, action);
        if (r >= 0)
                r = append_details(call, details, machine);
        if (r >= 0)
                r = sd_bus_message_append(call, "us", q->interactive ? POLKIT_CHECK_ALLOW_USER_INTERACTION : 0u, "");
        if (r >= 0)
                r = sd_bus_call_async(m->bus, &q->slot, call, on_polkit_answer, q, m->polkit_timeout_usec);
        if (r < 0) {
                auth_query_free(q);
                return sd_bus_error_set_errnof(error, -r, "Cannot authorize %s: asking polkit failed: %s", action,
                                               strerror(-r));
        }
        log_debug("Asked polkit whether %s (uid %u%s%s) is authorized for %s (%s).", sender, (unsigned) uid,
                  machine ? ", machine " : "", strempty(machine), q->what, action);
        return 0;

oom:
        auth_query_free(q);
        return -ENOMEM;
}

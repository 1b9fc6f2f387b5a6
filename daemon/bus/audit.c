/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "access.h"
#include "audit.h"
#include "auth.h"
#include "log.h"
#include "refusal-log.h"
#include "reset-job.h"
#include "util.h"

#define FIELD_MAX 320

/* The first argument, when it is a PCI address: the device of the call. */
static bool call_device(sd_bus_message *msg, char ret[static PCI_ADDRESS_STRING_MAX]) {
        const char *s;
        PciAddress a;
        char type;

        if (sd_bus_message_rewind(msg, true) < 0 || sd_bus_message_peek_type(msg, &type, NULL) <= 0 || type != 's' ||
            sd_bus_message_read_basic(msg, 's', &s) < 0 || pci_address_parse(s, &a) < 0)
                return false;
        pci_address_format(&a, ret);
        return true;
}

static const char *kind_of(const char *member, bool refused, const sd_bus_error *error) {
        if (refused) {
                if (sd_bus_error_has_names(error, SD_BUS_ERROR_ACCESS_DENIED,
                                           SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED))
                        return LOG_MESSAGE_ID_AUTH_REFUSED;
                if (streq(member, "HotReset") || streq(member, "ResetDevice"))
                        return LOG_MESSAGE_ID_RESET_REFUSED;
                return LOG_MESSAGE_ID_CALL_REFUSED;
        }
        if (streq(member, "CreateContext"))
                return LOG_MESSAGE_ID_LEASE_CREATED;
        if (streq(member, "AttachDevice"))
                return LOG_MESSAGE_ID_DEVICE_ATTACHED;
        /* Release: the lease's end is logged once, by the core
         * (LEASE_RELEASED, whatever ended it); the call is a CALL_DONE. */
        if (streq(member, "Reload"))
                return LOG_MESSAGE_ID_POLICY_RELOADED;
        if (streq(member, "ResetDevice"))
                return LOG_MESSAGE_ID_RESET_DONE;
        return LOG_MESSAGE_ID_CALL_DONE;
}

typedef struct Caller {
        uid_t uid;
        pid_t pid;
        char comm[16], unit[64], machine[64]; /* "" when unknown */
} Caller;

/* Read before the call runs: a caller that has its answer may be gone
 * from /proc. uid and pid are the bus's word; the command and the unit
 * come from /proc, for the log only (all cached per bus name). */
static void caller_read(sd_bus_message *msg, Caller *ret) {
        const char *comm = NULL, *unit = NULL, *machine = NULL;

        *ret = (Caller) { .uid = (uid_t) -1 };
        int r = access_caller_describe(msg, &ret->uid, &ret->pid, &comm, &unit, &machine);
        if (r < 0 && r != -ENOENT) {
                *ret = (Caller) { .uid = (uid_t) -1 };
                return;
        }
        /* Copied: the cache may reuse its slot before the call is logged. */
        snprintf(ret->comm, sizeof ret->comm, "%s", strempty(comm));
        snprintf(ret->unit, sizeof ret->unit, "%s", strempty(unit));
        snprintf(ret->machine, sizeof ret->machine, "%s", strempty(machine));
}

static void audit_log(sd_bus_message *msg, Manager *m, const char *context, const Caller *who, int r,
                      const sd_bus_error *error) {
        const char *member = strempty(sd_bus_message_get_member(msg)), *sender = sd_bus_message_get_sender(msg);
        const char *comm = *who->comm ? who->comm : NULL;
        const char *unit = *who->unit ? who->unit : NULL;
        char device[PCI_ADDRESS_STRING_MAX], created[96];
        char f[11][FIELD_MAX];
        const char *fields[12];
        size_t n = 0;
        uid_t uid = who->uid;
        pid_t pid = who->pid;
        bool refused = r < 0 || sd_bus_error_is_set(error);
        if (refused && !refusal_log_allowed(m, uid))
                return; /* counted: refusal-log.c logs the count */
        bool has_device = call_device(msg, device);

        if (!refused && streq(member, "CreateContext")) {
                snprintf(created, sizeof created, CONTEXT_PATH_PREFIX "/%" PRIu64, m->next_context_id);
                context = created;
        }
        const char *result = refused ? (error && error->name ? error->name : "errno") : "success";

        snprintf(f[n], FIELD_MAX, "HOTRESETD_METHOD=%s.%s", strempty(sd_bus_message_get_interface(msg)), member);
        fields[n] = f[n], n++;
        snprintf(f[n], FIELD_MAX, "HOTRESETD_RESULT=%s", result);
        fields[n] = f[n], n++;
        if (has_device) {
                snprintf(f[n], FIELD_MAX, "HOTRESETD_DEVICE=%s", device);
                fields[n] = f[n], n++;
        }
        if (context && *context) {
                snprintf(f[n], FIELD_MAX, "HOTRESETD_CONTEXT=%s", context);
                fields[n] = f[n], n++;
        }
        snprintf(f[n], FIELD_MAX, "HOTRESETD_CALLER=%s", strempty(sender));
        fields[n] = f[n], n++;
        if (uid != (uid_t) -1) {
                snprintf(f[n], FIELD_MAX, "HOTRESETD_CALLER_UID=%u", (unsigned) uid);
                fields[n] = f[n], n++;
        }
        if (pid > 0) {
                snprintf(f[n], FIELD_MAX, "HOTRESETD_CALLER_PID=%d", (int) pid);
                fields[n] = f[n], n++;
        }
        if (comm) {
                snprintf(f[n], FIELD_MAX, "HOTRESETD_CALLER_COMM=%s", comm);
                fields[n] = f[n], n++;
        }
        if (unit) {
                snprintf(f[n], FIELD_MAX, "HOTRESETD_CALLER_UNIT=%s", unit);
                fields[n] = f[n], n++;
        }
        if (*who->machine) {
                snprintf(f[n], FIELD_MAX, "HOTRESETD_CALLER_MACHINE=%s", who->machine);
                fields[n] = f[n], n++;
        }
        fields[n] = NULL;

        char caller[160];
        snprintf(caller, sizeof caller, "%s (uid %d, pid %d%s%s)", strempty(sender), uid == (uid_t) -1 ? -1 : (int) uid,
                 (int) pid, comm ? ", " : "", strempty(comm));
        if (refused)
                log_struct(LOG_NOTICE, kind_of(member, true, error), fields, "%s%s%s%s%s by %s refused: %s", member,
                           has_device ? " of " : "", has_device ? device : "", context && *context ? " on " : "",
                           strempty(context), caller,
                           error && error->message ? error->message : strerror(r < 0 ? -r : EIO));
        else
                log_struct(LOG_INFO, kind_of(member, false, error), fields, "%s%s%s%s%s by %s: done.", member,
                           has_device ? " of " : "", has_device ? device : "", context && *context ? " on " : "",
                           strempty(context), caller);
}

int audit_call(sd_bus_message *msg, Manager *m, Context *c, sd_bus_message_handler_t handler, void *userdata,
               sd_bus_error *error) {
        char context[128] = "";
        Caller who;

        /* Read now: Release frees the context. */
        if (c)
                snprintf(context, sizeof context, "%s", c->path);
        caller_read(msg, &who);
        int r = handler(msg, userdata, error);
        bool refused = r < 0 || sd_bus_error_is_set(error);
        /* Decided later: polkit's answer brings the call back here; a hot
         * reset's job logs its end. */
        if (!refused && (auth_query_pending(m, msg) || reset_job_pending(m, msg)))
                return r;
        audit_log(msg, m, context, &who, r, error);
        return r;
}

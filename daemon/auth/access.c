/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The policy file and polkit, as the bus methods apply them (see access.h). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <systemd/sd-login.h>

#include "access.h"
#include "auth.h"
#include "errors.h"
#include "log.h"
#include "manager.h"
#include "refusal-log.h"
#include "policy.h"
#include "util.h"

/* dbus-daemon's name for a configuration file it cannot use. */
#define BUS_ERROR_INVALID_FILE_CONTENT "org.freedesktop.DBus.Error.InvalidFileContent"

/* ---- loading ------------------------------------------------------------- */

static void log_policy(Manager *m, const char *how) {
        Policy *p = m->policy;
        _cleanup_free_ char *files = strv_join(p->files, ", ");

        log_info("%s the policy from %s: %zu allow and %zu deny device matches; limits: %u resets per device "
                 "a minute, %u per user a minute (burst %u), %u contexts per user, %u devices per context, "
                 "%u refusals per user logged a minute (0 = none); unleased hot resets %s.",
                 how, p->files ? strempty(files) : "built-in defaults (no policy file)", p->n_allow, p->n_deny,
                 p->limits[POLICY_LIMIT_RESETS_PER_DEVICE], p->limits[POLICY_LIMIT_RESETS_PER_USER],
                 policy_user_reset_burst(p), p->limits[POLICY_LIMIT_CONTEXTS_PER_USER],
                 p->limits[POLICY_LIMIT_DEVICES_PER_CONTEXT], p->limits[POLICY_LIMIT_LOGGED_REFUSALS_PER_USER],
                 p->unleased_hot_reset ? "on" : "off");
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;
        log_info("SIGHUP: reloading the policy.");
        (void) access_reload(m, NULL);
        return 0;
}

int access_setup(Manager *m, const char *config_path) {
        _cleanup_free_ char *error = NULL;
        sigset_t mask;
        int r;

        m->polkit_timeout_usec = auth_timeout_from_environment();
        m->policy_path = strdup(config_path ?: POLICY_DEFAULT_PATH);
        m->policy_missing_ok = !config_path;
        m->limiter = rate_limiter_new();
        if (!m->policy_path || !m->limiter)
                return log_oom();

        r = policy_load(m->policy_path, m->policy_missing_ok, &m->policy, &error);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "Failed to load the policy: %s", strempty(error));
        log_policy(m, "Loaded");

        sigemptyset(&mask);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "Failed to block SIGHUP: %m");
        r = sd_event_add_signal(m->event, &m->sighup_source, SIGHUP, on_sighup, m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch SIGHUP: %m");
        return 0;
}

void access_done(Manager *m) {
        auth_queries_free(m);
        refusal_log_done(m);
        m->sighup_source = sd_event_source_disable_unref(m->sighup_source);
        m->policy = policy_free(m->policy);
        m->limiter = rate_limiter_free(m->limiter);
        free(m->policy_path);
        m->policy_path = NULL;
}

int access_reload(Manager *m, sd_bus_error *error) {
        _cleanup_free_ char *message = NULL;
        Policy *p = NULL;
        int r;

        r = policy_load(m->policy_path, m->policy_missing_ok, &p, &message);
        if (r < 0) {
                log_error("Failed to reload the policy, keeping the one in force: %s",
                          message ?: strerror(-r));
                if (r == -ENOMEM)
                        return r;
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_FILE_CONTENT,
                                         "The policy was not reloaded; the one in force is kept: %s",
                                         message ?: strerror(-r));
        }
        policy_free(m->policy);
        m->policy = p;
        log_policy(m, "Reloaded");
        /* Exclusions change what CheckHotReset and HotResetPossible say. */
        manager_policy_changed(m);
        return 0;
}

int access_method_reload(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = access_verify(m, msg, ACTION_MANAGE, "reload", NULL, NULL, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* polkit is asked; this call comes back */
        r = access_reload(m, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

/* ---- callers ------------------------------------------------------------- */

/* A unique bus name never changes hands: what the bus said of one stays
 * true while it exists. Every state-changing call asks who its caller is
 * (ownership, limits, the audit log); a caller making many calls costs one
 * question to the bus, not several per call. Forgotten when the name goes
 * (access_forget_caller()). */
#define CALLER_CACHE_SIZE 128
static struct {
        char name[64];
        uid_t uid;
        pid_t pid;
        char comm[16]; /* for the log only, read from /proc once */
        char unit[64];
        char machine[64]; /* the systemd-machined machine (container, VM) it runs in */
} caller_cache[CALLER_CACHE_SIZE];
static unsigned caller_cache_next;

void access_forget_caller(const char *name) {
        for (unsigned i = 0; i < CALLER_CACHE_SIZE; i++)
                if (streq(caller_cache[i].name, name))
                        caller_cache[i].name[0] = 0;
}

/* The command, unit and machine of pid, from /proc and machined: for the
 * log only. */
static void read_comm_unit(pid_t pid, char comm[static 16], char unit[static 64], char machine[static 64]) {
        char path[64];
        _cleanup_free_ char *u = NULL, *mn = NULL;

        comm[0] = unit[0] = machine[0] = 0;
        if (pid <= 0)
                return;
        snprintf(path, sizeof path, "/proc/%d/comm", (int) pid);
        _cleanup_(fclosep) FILE *f = fopen(path, "re");
        if (f && fgets(comm, 16, f))
                comm[strcspn(comm, "\n")] = 0;
        if (sd_pid_get_unit(pid, &u) >= 0)
                snprintf(unit, 64, "%s", u);
        if (sd_pid_get_machine_name(pid, &mn) >= 0)
                snprintf(machine, 64, "%s", mn);
        /* cppcheck-suppress resourceLeak ; freed by _cleanup_(fclosep) (cppcheck does not know cleanup attributes) */
}

int access_caller_describe(sd_bus_message *msg, uid_t *ret_uid, pid_t *ret_pid, const char **ret_comm,
                           const char **ret_unit, const char **ret_machine) {
        const char *name = sd_bus_message_get_sender(msg);
        int r = access_caller_ids(msg, ret_uid, ret_pid);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < CALLER_CACHE_SIZE; i++)
                if (streq(caller_cache[i].name, name)) {
                        *ret_comm = caller_cache[i].comm;
                        *ret_unit = caller_cache[i].unit;
                        *ret_machine = caller_cache[i].machine;
                        return 0;
                }
        return -ENOENT; /* not cached (a name too long): ids only */
}

int access_caller_ids(sd_bus_message *msg, uid_t *ret_uid, pid_t *ret_pid) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        const char *name = sd_bus_message_get_sender(msg);
        uid_t uid;
        pid_t pid = 0;
        int r;

        if (!name)
                return -ENXIO;
        for (unsigned i = 0; i < CALLER_CACHE_SIZE; i++)
                if (streq(caller_cache[i].name, name)) {
                        *ret_uid = caller_cache[i].uid;
                        if (ret_pid)
                                *ret_pid = caller_cache[i].pid;
                        return 0;
                }
        r = sd_bus_query_sender_creds(msg, SD_BUS_CREDS_EUID | SD_BUS_CREDS_PID, &creds);
        if (r < 0)
                return r;
        if (sd_bus_creds_get_augmented_mask(creds) & SD_BUS_CREDS_EUID)
                return -EPERM; /* not vouched for by the bus */
        r = sd_bus_creds_get_euid(creds, &uid);
        if (r < 0)
                return r;
        (void) sd_bus_creds_get_pid(creds, &pid);
        if (strlen(name) < sizeof caller_cache[0].name) {
                unsigned i = caller_cache_next++ % CALLER_CACHE_SIZE;
                snprintf(caller_cache[i].name, sizeof caller_cache[i].name, "%s", name);
                caller_cache[i].uid = uid;
                caller_cache[i].pid = pid;
                read_comm_unit(pid, caller_cache[i].comm, caller_cache[i].unit, caller_cache[i].machine);
        }
        *ret_uid = uid;
        if (ret_pid)
                *ret_pid = pid;
        return 0;
}

int access_caller_uid(sd_bus_message *msg, uid_t *ret) {
        return access_caller_ids(msg, ret, NULL);
}

int access_is_context_owner(Context *c, sd_bus_message *msg) {
        const char *sender = sd_bus_message_get_sender(msg);
        uid_t uid;
        int r;

        if (sender && streq(sender, c->owner))
                return 1;
        if (!context_outlives_owner(c))
                return 0;
        r = access_caller_uid(msg, &uid);
        if (r < 0)
                return r;
        return uid == c->owner_uid;
}

/* ---- devices ------------------------------------------------------------- */

int access_device_excluded(Manager *m, const PciDevice *d, char **ret_reason) {
        if (!m->policy)
                return 0;
        int r = policy_device_allowed(m->policy, &d->info, ret_reason);
        if (r < 0)
                return r;
        return !r;
}

static const void *holder_of(const PciDevice *d, void *userdata) {
        return manager_holder_of(userdata, d);
}

static int excluded(const PciDevice *d, void *userdata) {
        return manager_device_excluded(userdata, (PciDevice *) d);
}

int access_reset_check(Manager *m, const PciDevice *d, ResetCheck *ret) {
        ResetCheck c;
        int r;

        r = manager_settle(m);
        if (r < 0)
                return r;
        r = reset_check_in_domain(d, holder_of, m, &c);
        if (r < 0)
                return r;
        r = reset_check_apply_exclusions(&c, excluded, m);
        if (r < 0) {
                reset_check_done(&c);
                return r;
        }
        *ret = c;
        return 0;
}

/* The devices a call touches: d, or every device a hot reset of d hits
 * (its settled reset domain). The array is d's domain's or *self. */
static int scope_of(Manager *m, const PciDevice *d, bool whole_scope, PciDevice **self, PciDevice *const **ret,
                    size_t *ret_n) {
        *self = (PciDevice *) d;
        *ret = self;
        *ret_n = 1;
        if (!whole_scope)
                return 0;
        int r = manager_settle(m);
        if (r < 0)
                return r;
        if (d->domain) {
                *ret = d->domain->members;
                *ret_n = d->domain->n_members;
        }
        return 0;
}

int access_check_devices(Manager *m, const PciDevice *d, bool whole_scope, const char *verb, sd_bus_error *error) {
        PciDevice *self, *const *devices;
        char addr[PCI_ADDRESS_STRING_MAX];
        size_t n = 0;
        int r;

        /* Nothing to exclude: the common case costs nothing. */
        if (m->policy->n_allow == 0 && m->policy->n_deny == 0)
                return 0;
        r = scope_of(m, d, whole_scope, &self, &devices, &n);
        if (r < 0)
                return r;
        pci_address_format(&d->info.address, addr);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *reason = NULL;
                r = access_device_excluded(m, devices[i], &reason);
                if (r < 0)
                        return r;
                if (r == 0)
                        continue;
                log_debug("Refused %s of %s: %s.", verb, addr, reason);
                return sd_bus_error_setf(error, BUS_ERROR_POLICY_DENIED,
                                         "Refused %s of %s: %s%s. The daemon lists such a device but never attaches "
                                         "or resets it; an administrator can change that in the policy file.",
                                         verb, addr, reason,
                                         devices[i] == d ? "" : " (it is in the reset scope)");
        }
        return 0;
}

int access_check_unleased(Manager *m, sd_bus_error *error) {
        if (m->policy->unleased_hot_reset)
                return 0;
        log_debug("Refused an unleased hot reset: %s.", strempty(m->policy->unleased_origin));
        return sd_bus_error_setf(error, BUS_ERROR_POLICY_DENIED,
                                 "Unleased hot resets are disabled by policy (%s); attach the devices to a context "
                                 "(Manager.CreateContext, Context.AttachDevice) and use Context.HotReset.",
                                 strempty(m->policy->unleased_origin));
}

/* ---- limits -------------------------------------------------------------- */

static uint64_t now_usec(Manager *m) {
        uint64_t t = 0;
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &t);
        return t;
}

int access_check_context_limit(Manager *m, uid_t uid, sd_bus_error *error) {
        unsigned limit = m->policy->limits[POLICY_LIMIT_CONTEXTS_PER_USER];
        size_t n = 0;

        if (uid == 0 || limit == 0)
                return 0;
        for (size_t i = 0; i < m->n_contexts; i++)
                n += m->contexts[i]->owner_uid == uid;
        if (n < limit)
                return 0;
        _cleanup_free_ char *what = policy_describe_limit(m->policy, POLICY_LIMIT_CONTEXTS_PER_USER);
        log_debug("Rate limit: refused a new context to uid %u: it holds %zu (%s).", (unsigned) uid, n,
                  strempty(what));
        return sd_bus_error_setf(error, BUS_ERROR_RATE_LIMITED,
                                 "Refused create-context: uid %u holds %zu contexts, the most the policy allows "
                                 "(%s); retry once one of them is released (Context.Release).",
                                 (unsigned) uid, n, strempty(what));
}

int access_check_device_limit(Context *c, sd_bus_error *error) {
        Manager *m = c->manager;
        unsigned limit = m->policy->limits[POLICY_LIMIT_DEVICES_PER_CONTEXT];

        if (limit == 0 || c->n_devices < limit)
                return 0;
        _cleanup_free_ char *what = policy_describe_limit(m->policy, POLICY_LIMIT_DEVICES_PER_CONTEXT);
        log_debug("Rate limit: refused an attach to %s (uid %u): it holds %zu devices (%s).", c->path,
                  (unsigned) c->owner_uid, c->n_devices, strempty(what));
        return sd_bus_error_setf(error, BUS_ERROR_RATE_LIMITED,
                                 "Refused attach: %s holds %zu devices, the most the policy allows (%s); retry "
                                 "after detaching one (DetachDevice) or use another context.",
                                 c->path, c->n_devices, strempty(what));
}

static void user_key(uid_t uid, char buf[static 32]) {
        snprintf(buf, 32, "uid:%u", (unsigned) uid);
}

static void device_key(const PciDevice *d, char buf[static 32]) {
        snprintf(buf, 32, "device:%s", d->address);
}

int access_check_reset_limits(Manager *m, uid_t uid, const PciDevice *d, bool whole_scope, const char *verb,
                              sd_bus_error *error) {
        Policy *p = m->policy;
        unsigned device_rate = p->limits[POLICY_LIMIT_RESETS_PER_DEVICE];
        unsigned user_rate = p->limits[POLICY_LIMIT_RESETS_PER_USER];
        PciDevice *self, *const *devices;
        _cleanup_free_ char *limit = NULL;
        char addr[PCI_ADDRESS_STRING_MAX], key[32];
        uint64_t now = now_usec(m), wait = 0;
        size_t n = 0;
        int r;

        pci_address_format(&d->info.address, addr);
        if (uid != 0 && user_rate > 0) {
                user_key(uid, key);
                if (!rate_limiter_check(m->limiter, key, policy_user_reset_burst(p), user_rate, now, &wait)) {
                        _cleanup_free_ char *rate = policy_describe_limit(p, POLICY_LIMIT_RESETS_PER_USER);
                        _cleanup_free_ char *burst = policy_describe_limit(p, POLICY_LIMIT_RESET_BURST_PER_USER);
                        if (asprintf(&limit, "uid %u reset too often (%s, %s)", (unsigned) uid, strempty(rate),
                                     strempty(burst)) < 0)
                                return -ENOMEM;
                }
        }
        if (!limit && device_rate > 0) {
                r = scope_of(m, d, whole_scope, &self, &devices, &n);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < n && !limit; i++) {
                        char a[PCI_ADDRESS_STRING_MAX];
                        device_key(devices[i], key);
                        if (rate_limiter_check(m->limiter, key, device_rate, device_rate, now, &wait))
                                continue;
                        _cleanup_free_ char *rate = policy_describe_limit(p, POLICY_LIMIT_RESETS_PER_DEVICE);
                        if (asprintf(&limit, "%s was reset too often (%s)",
                                     pci_address_format(&devices[i]->info.address, a), strempty(rate)) < 0)
                                return -ENOMEM;
                }
        }
        if (!limit)
                return 0;

        /* Rounded up to a tenth of a second: retrying at the time given works. */
        uint64_t tenths = (wait + 99999) / 100000;
        log_debug("Rate limit: refused %s of %s to uid %u: %s; retry in %" PRIu64 ".%" PRIu64 " s.", verb, addr,
                  (unsigned) uid, limit, tenths / 10, tenths % 10);
        return sd_bus_error_setf(error, BUS_ERROR_RATE_LIMITED,
                                 "Refused %s of %s: %s; retry in %" PRIu64 ".%" PRIu64 " s.", verb, addr, limit,
                                 tenths / 10, tenths % 10);
}

void access_take_reset_limits(Manager *m, uid_t uid, const PciDevice *d, bool whole_scope) {
        Policy *p = m->policy;
        unsigned device_rate = p->limits[POLICY_LIMIT_RESETS_PER_DEVICE];
        unsigned user_rate = p->limits[POLICY_LIMIT_RESETS_PER_USER];
        PciDevice *self, *const *devices;
        uint64_t now = now_usec(m);
        char key[32];
        size_t n = 0;

        if (uid != 0 && user_rate > 0) {
                user_key(uid, key);
                if (rate_limiter_take(m->limiter, key, policy_user_reset_burst(p), user_rate, now) < 0)
                        log_oom();
        }
        if (device_rate == 0 || scope_of(m, d, whole_scope, &self, &devices, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++) {
                device_key(devices[i], key);
                if (rate_limiter_take(m->limiter, key, device_rate, device_rate, now) < 0)
                        log_oom();
        }
}

/* ---- polkit -------------------------------------------------------------- */

int access_verify(Manager *m, sd_bus_message *msg, const char *action, const char *verb, const PciDevice *d,
                  const char *context, sd_bus_error *error) {
        char vendor[8], device[8], group[16];
        _cleanup_free_ char *affected = NULL;
        PciDevice *self, *const *devices;
        const char *details[24];
        size_t k = 0, n = 0;
        int r;

        details[k++] = "verb";
        details[k++] = verb;
        if (context) {
                details[k++] = "context";
                details[k++] = context;
        }
        if (d) {
                r = scope_of(m, d, true, &self, &devices, &n);
                if (r < 0)
                        return r;
                /* "0000:01:00.0,0000:01:00.1": every address is as long. */
                affected = malloc(n * PCI_ADDRESS_STRING_MAX + 1);
                if (!affected)
                        return -ENOMEM;
                char *p = affected;
                for (size_t i = 0; i < n; i++) {
                        if (i > 0)
                                *p++ = ',';
                        p = stpcpy(p, devices[i]->address);
                }
                *p = 0;
                snprintf(vendor, sizeof vendor, "0x%04x", d->info.vendor_id);
                snprintf(device, sizeof device, "0x%04x", d->info.device_id);
                if (d->info.iommu_group >= 0)
                        snprintf(group, sizeof group, "%d", d->info.iommu_group);
                else
                        group[0] = 0;
                details[k++] = "address";
                details[k++] = d->address;
                details[k++] = "vendor";
                details[k++] = vendor;
                details[k++] = "device";
                details[k++] = device;
                details[k++] = "driver";
                details[k++] = strempty(d->info.driver);
                details[k++] = "iommu_group";
                details[k++] = group;
                details[k++] = "affected";
                details[k++] = affected;
        }
        details[k] = NULL;
        return auth_verify_async(m, msg, action, details, error);
}

int access_verify_owner_or_manage(Context *c, sd_bus_message *msg, const char *verb, sd_bus_error *error) {
        int r = access_is_context_owner(c, msg);
        if (r != 0)
                return r;
        return access_verify(c->manager, msg, ACTION_MANAGE, verb, NULL, c->path, error);
}

int access_authorize_device(Context *c, sd_bus_message *msg, const char *action, const char *verb,
                            const PciAddress *a, AccessFlags flags, sd_bus_error *error) {
        Manager *m = c->manager;
        char addr[PCI_ADDRESS_STRING_MAX];
        PciDevice *d = topology_get(m->topology, a);
        int r;

        if (!d)
                return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_DEVICE, "No PCI device %s on this machine.",
                                         pci_address_format(a, addr));
        r = access_check_devices(m, d, flags & ACCESS_WHOLE_SCOPE, verb, error);
        if (r < 0)
                return r;
        if (flags & ACCESS_DEVICE_LIMIT) {
                r = access_check_device_limit(c, error);
                if (r < 0)
                        return r;
        }
        if (flags & ACCESS_RESET_LIMITS) {
                uid_t uid;
                r = access_caller_uid(msg, &uid);
                if (r < 0)
                        return r;
                r = access_check_reset_limits(m, uid, d, flags & ACCESS_WHOLE_SCOPE, verb, error);
                if (r < 0)
                        return r;
        }
        return access_verify(m, msg, action, verb, d, c->path, error);
}

void access_count_reset(Context *c, sd_bus_message *msg, const PciAddress *a, bool whole_scope) {
        PciDevice *d = topology_get(c->manager->topology, a);
        uid_t uid;

        if (d && access_caller_uid(msg, &uid) >= 0)
                access_take_reset_limits(c->manager, uid, d, whole_scope);
}

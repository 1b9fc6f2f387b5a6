/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's policy file (see policy.h and policy/hotresetd.conf.example):
 * parsing with inih, device matching, and the token buckets of the limits. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>

#include "pci-address.h"
#include "policy.h"
#include "util.h"

static const char *const limit_keys[_POLICY_LIMIT_MAX] = {
        [POLICY_LIMIT_RESETS_PER_DEVICE] = "ResetsPerDevicePerMinute",
        [POLICY_LIMIT_RESETS_PER_USER] = "ResetsPerUserPerMinute",
        [POLICY_LIMIT_RESET_BURST_PER_USER] = "ResetBurstPerUser",
        [POLICY_LIMIT_CONTEXTS_PER_USER] = "ContextsPerUser",
        [POLICY_LIMIT_DEVICES_PER_CONTEXT] = "DevicesPerContext",
        [POLICY_LIMIT_LOGGED_REFUSALS_PER_USER] = "LoggedRefusalsPerUserPerMinute",
};

const char *policy_limit_to_string(PolicyLimit l) {
        return (unsigned) l < _POLICY_LIMIT_MAX ? limit_keys[l] : NULL;
}

/* Large enough for any sane limit, small enough that arithmetic on it
 * never overflows. */
#define LIMIT_MAX 1000000u

static void device_match_done(DeviceMatch *m) {
        free(m->glob);
        free(m->origin);
        *m = (DeviceMatch) {};
}

Policy *policy_new_default(void) {
        Policy *p = calloc(1, sizeof(Policy));
        if (!p)
                return NULL;
        p->unleased_hot_reset = true;
        /* A lease costs the daemon files (an iommufd or a container, one
         * per device), memory and, while it follows its owner's bus
         * connection, a match on the bus; and every unprivileged user who
         * polkit lets acquire could otherwise make it hold leases until it
         * runs out of them, refusing everyone else. One lease per VM is the
         * usual use, so 64 is far more than one user's VMs with passed
         * through devices need at once, yet 64 leases of a few users stay
         * far below the daemon's LimitNOFILE=. Root is exempt (its callers
         * are the administrator's tools); ContextsPerUser= sets another
         * value, 0 none. */
        p->limits[POLICY_LIMIT_CONTEXTS_PER_USER] = POLICY_DEFAULT_CONTEXTS_PER_USER;
        /* Every refused call is audited; a user who makes thousands a
         * second would otherwise fill the journal and trip journald's
         * rate limit for the whole service, losing everyone else's
         * entries. */
        p->limits[POLICY_LIMIT_LOGGED_REFUSALS_PER_USER] = POLICY_DEFAULT_LOGGED_REFUSALS_PER_USER;
        return p;
}

Policy *policy_free(Policy *p) {
        if (!p)
                return NULL;
        strv_free(p->files);
        for (size_t i = 0; i < p->n_allow; i++)
                device_match_done(&p->allow[i]);
        free(p->allow);
        for (size_t i = 0; i < p->n_deny; i++)
                device_match_done(&p->deny[i]);
        free(p->deny);
        for (size_t i = 0; i < _POLICY_LIMIT_MAX; i++)
                free(p->limit_origin[i]);
        free(p->unleased_origin);
        free(p);
        return NULL;
}

/* ---- values -------------------------------------------------------------- */

static int parse_hex(const char *s, size_t max_digits, uint32_t *ret, size_t *ret_digits) {
        size_t n = 0;
        uint32_t v = 0;

        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
                s += 2;
        for (; s[n]; n++) {
                if (!isxdigit((unsigned char) s[n]) || n >= max_digits)
                        return -EINVAL;
                v = v << 4 | (uint32_t) (isdigit((unsigned char) s[n]) ? s[n] - '0'
                                                                        : tolower((unsigned char) s[n]) - 'a' + 10);
        }
        if (n == 0)
                return -EINVAL;
        *ret = v;
        if (ret_digits)
                *ret_digits = n;
        return 0;
}

/* "10de" or "0x10de", optionally ":2204" / ":0x2204". */
static int parse_vendor(const char *s, DeviceMatch *m) {
        char buf[32];
        uint32_t v;
        const char *colon = strchr(s, ':');

        if (strlen(s) >= sizeof buf)
                return -EINVAL;
        strcpy(buf, s);
        if (colon)
                buf[colon - s] = 0;
        if (parse_hex(buf, 4, &v, NULL) < 0)
                return -EINVAL;
        m->vendor_id = (uint16_t) v;
        m->any_device = !colon;
        if (colon) {
                if (parse_hex(colon + 1, 4, &v, NULL) < 0)
                        return -EINVAL;
                m->device_id = (uint16_t) v;
        }
        m->type = DEVICE_MATCH_VENDOR;
        return 0;
}

/* 2, 4 or 6 hex digits: base class, + subclass, + programming interface. */
static int parse_class(const char *s, DeviceMatch *m) {
        uint32_t v;
        size_t digits;

        if (parse_hex(s, 6, &v, &digits) < 0 || digits % 2 != 0)
                return -EINVAL;
        m->class_code = v << (4 * (6 - digits));
        m->class_mask = 0xffffffu << (4 * (6 - digits)) & 0xffffffu;
        m->type = DEVICE_MATCH_CLASS;
        return 0;
}

/* How many characters a glob matches, a bracket expression counting as one. */
static size_t glob_width(const char *s, const char *end) {
        size_t n = 0;
        for (; s < end; s++, n++)
                if (*s == '[') {
                        const char *close = memchr(s + 1, ']', (size_t) (end - s - 1));
                        if (close)
                                s = close;
                }
        return n;
}

/* A glob over the canonical address "0000:01:00.0". With one colon, a
 * pattern in the short form (at most two characters before the colon, or a
 * '.' after it: "01:00.*", "0[34]:*") means domain 0000; "0001:*" is a
 * domain. Hex digits are matched in lower case. */
static int parse_address_glob(const char *s, DeviceMatch *m) {
        const char *colon = strchr(s, ':');
        size_t colons = 0;
        bool short_form;

        for (const char *p = s; *p; p++) {
                if (!isxdigit((unsigned char) *p) && !strchr(":.*?[]!-", *p))
                        return -EINVAL;
                colons += *p == ':';
        }
        if (colons > 2)
                return -EINVAL;
        short_form = colons == 1 && (glob_width(s, colon) <= 2 || strchr(colon, '.'));
        if (asprintf(&m->glob, "%s%s", short_form ? "0000:" : "", s) < 0) {
                m->glob = NULL;
                return -ENOMEM;
        }
        for (char *p = m->glob; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        m->type = DEVICE_MATCH_ADDRESS;
        return 0;
}

static int parse_limit(const char *s, unsigned *ret) {
        unsigned long v;
        char *end;

        if (!isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end != 0 || v > LIMIT_MAX)
                return -ERANGE;
        *ret = (unsigned) v;
        return 0;
}

static int parse_boolean(const char *s) {
        static const char *const yes[] = { "yes", "true", "on", "1" }, *const no[] = { "no", "false", "off", "0" };
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0)
                        return 1;
                if (strcasecmp(s, no[i]) == 0)
                        return 0;
        }
        return -EINVAL;
}

/* ---- parsing ------------------------------------------------------------- */

typedef struct ParseState {
        Policy *policy;
        const char *file;
        FILE *f;
        unsigned line;       /* lines read so far: the one being parsed */
        unsigned error_line; /* of the first error found by the handler */
        char *error;
        bool oom;
        int read_errno;
} ParseState;

static void shown_value(const char *s, char buf[static 64]) {
        size_t i = 0;
        for (; i < 56 && s[i]; i++)
                buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
        if (s[i])
                memcpy(buf + i, "...", 3), i += 3;
        buf[i] = 0;
}

_printf_(4, 5) static int parse_error(ParseState *s, const char *section, const char *key, const char *fmt, ...) {
        _cleanup_free_ char *what = NULL;
        va_list ap;

        if (s->error) /* the first error is the one to fix first */
                return 0;
        va_start(ap, fmt);
        if (vasprintf(&what, fmt, ap) < 0)
                what = NULL;
        va_end(ap);
        if (!what || asprintf(&s->error, "%s:%u: [%s] %s: %s", s->file, s->line, section, key, what) < 0) {
                s->error = NULL;
                s->oom = true;
        }
        s->error_line = s->line;
        return 0;
}

static char *make_origin(ParseState *s, const char *key, const char *value) {
        char *o;
        if (asprintf(&o, "%s=%s in %s:%u", key, value, s->file, s->line) < 0)
                return NULL;
        return o;
}

static void set_origin(char **slot, char *origin) {
        free(*slot);
        *slot = origin;
}

/* Every value in a whitespace-separated list; an empty value empties the
 * list of that key (so a drop-in can start over). */
static int apply_device_list(ParseState *s, const char *section, const char *key, const char *value) {
        bool allow = strncmp(key, "Allow", 5) == 0;
        const char *kind = key + (allow ? 5 : 4);
        DeviceMatchType type = streq(kind, "Address") ? DEVICE_MATCH_ADDRESS
                               : streq(kind, "Vendor") ? DEVICE_MATCH_VENDOR
                                                       : DEVICE_MATCH_CLASS;
        DeviceMatch **list = allow ? &s->policy->allow : &s->policy->deny;
        size_t *n = allow ? &s->policy->n_allow : &s->policy->n_deny;
        char shown[64];

        if (!*value) {
                size_t k = 0;
                for (size_t i = 0; i < *n; i++) {
                        if ((*list)[i].type == type)
                                device_match_done(&(*list)[i]);
                        else
                                (*list)[k++] = (*list)[i];
                }
                *n = k;
                return 1;
        }

        for (const char *p = value; *p;) {
                char word[64];
                size_t len = strcspn(p, " \t");
                DeviceMatch m = {};
                int r;

                if (len == 0) {
                        p++;
                        continue;
                }
                if (len >= sizeof word) {
                        shown_value(p, shown);
                        return parse_error(s, section, key, "'%s' is too long to be a device match", shown);
                }
                memcpy(word, p, len);
                word[len] = 0;
                p += len;

                r = type == DEVICE_MATCH_ADDRESS ? parse_address_glob(word, &m)
                    : type == DEVICE_MATCH_VENDOR ? parse_vendor(word, &m)
                                                  : parse_class(word, &m);
                if (r == -ENOMEM) {
                        s->oom = true;
                        return 0;
                }
                if (r < 0) {
                        shown_value(word, shown);
                        return parse_error(
                                s, section, key, "'%s' is not %s", shown,
                                type == DEVICE_MATCH_ADDRESS
                                        ? "an address glob (e.g. 0000:01:00.*, 01:00.0, 0[3-4]:*)"
                                : type == DEVICE_MATCH_VENDOR
                                        ? "a vendor or vendor:device in hex (e.g. 10de, 0x10de:0x2204)"
                                        : "a class in hex with 2, 4 or 6 digits (e.g. 03, 0x0300, 0x010802)");
                }
                m.origin = make_origin(s, key, word);
                DeviceMatch *nl = m.origin ? realloc(*list, (*n + 1) * sizeof(DeviceMatch)) : NULL;
                if (!nl) {
                        device_match_done(&m);
                        s->oom = true;
                        return 0;
                }
                *list = nl;
                (*list)[(*n)++] = m;
        }
        return 1;
}

static int handler(void *userdata, const char *section, const char *key, const char *value) {
        ParseState *s = userdata;
        Policy *p = s->policy;
        char shown[64];

        if (s->oom)
                return 0;
        shown_value(value, shown);

        if (!*section)
                return parse_error(s, "", key, "setting outside a section; put it under [Devices], [Limits] or "
                                               "[Manager]");

        if (streq(section, "Devices")) {
                static const char *const keys[] = { "AllowAddress", "AllowVendor", "AllowClass",
                                                    "DenyAddress",  "DenyVendor",  "DenyClass" };
                for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                        if (streq(key, keys[i]))
                                return apply_device_list(s, section, key, value);
                return parse_error(s, section, key,
                                   "unknown key; [Devices] knows AllowAddress=, AllowVendor=, AllowClass=, "
                                   "DenyAddress=, DenyVendor= and DenyClass=");
        }

        if (streq(section, "Limits")) {
                for (size_t i = 0; i < _POLICY_LIMIT_MAX; i++) {
                        if (!streq(key, limit_keys[i]))
                                continue;
                        unsigned v;
                        if (parse_limit(value, &v) < 0)
                                return parse_error(s, section, key,
                                                   "'%s' is not a number from 0 (no limit) to %u", shown, LIMIT_MAX);
                        char *o = make_origin(s, key, value);
                        if (!o) {
                                s->oom = true;
                                return 0;
                        }
                        p->limits[i] = v;
                        set_origin(&p->limit_origin[i], o);
                        return 1;
                }
                return parse_error(s, section, key,
                                   "unknown key; [Limits] knows ResetsPerDevicePerMinute=, ResetsPerUserPerMinute=, "
                                   "ResetBurstPerUser=, ContextsPerUser=, DevicesPerContext= and "
                                   "LoggedRefusalsPerUserPerMinute=");
        }

        if (streq(section, "Manager")) {
                if (!streq(key, "UnleasedHotReset"))
                        return parse_error(s, section, key, "unknown key; [Manager] knows UnleasedHotReset=");
                int b = parse_boolean(value);
                if (b < 0)
                        return parse_error(s, section, key, "'%s' is not a boolean (yes or no)", shown);
                char *o = make_origin(s, key, value);
                if (!o) {
                        s->oom = true;
                        return 0;
                }
                p->unleased_hot_reset = b;
                set_origin(&p->unleased_origin, o);
                return 1;
        }

        return parse_error(s, section, key, "unknown section [%s]; the sections are [Devices], [Limits] and [Manager]",
                           section);
}

/* fgets() for inih that counts lines, so the handler knows where it is,
 * and refuses lines longer than inih's buffer instead of splitting them. */
static char *reader(char *str, int num, void *stream) {
        ParseState *s = stream;
        char *r;
        size_t n;

        errno = 0;
        r = fgets(str, num, s->f);
        if (!r) {
                if (ferror(s->f))
                        s->read_errno = errno > 0 ? errno : EIO;
                return NULL;
        }
        s->line++;
        n = strlen(r);
        if (n > 0 && r[n - 1] != '\n' && !feof(s->f)) {
                int c;
                if (!s->error) {
                        if (asprintf(&s->error, "%s:%u: line too long (at most %d characters)", s->file, s->line,
                                     num - 3) < 0) {
                                s->error = NULL;
                                s->oom = true;
                        }
                        s->error_line = s->line;
                }
                while ((c = fgetc(s->f)) != EOF && c != '\n')
                        ;
                str[0] = 0;
        }
        return r;
}

static int parse_file(Policy *p, const char *file, bool missing_ok, char **ret_error) {
        ParseState s = { .policy = p, .file = file };
        int r;

        s.f = fopen(file, "re");
        if (!s.f) {
                r = -errno;
                if (r == -ENOENT && missing_ok)
                        return 0;
                if (asprintf(ret_error, "%s: cannot be read: %s", file, strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        r = ini_parse_stream(reader, &s, handler, &s);
        fclose(s.f);

        if (r == -2 || s.oom) {
                free(s.error);
                return -ENOMEM;
        }
        if (s.read_errno > 0) {
                free(s.error);
                if (asprintf(ret_error, "%s: cannot be read: %s", file, strerror(s.read_errno)) < 0)
                        *ret_error = NULL;
                return -s.read_errno;
        }
        /* inih reports the first line with an error; the handler's message
         * explains it unless a syntax error came first. */
        if (r > 0 && (!s.error || (unsigned) r < s.error_line)) {
                free(s.error);
                if (asprintf(ret_error, "%s:%d: syntax error: expected [Section], Key=Value or a comment", file, r) < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }
        if (s.error) {
                *ret_error = s.error;
                return -EINVAL;
        }
        if (r != 0) {
                if (asprintf(ret_error, "%s: cannot be parsed", file) < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }
        return strv_extend(&p->files, file);
}

static int compare_strings(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* path.d/NAME.conf, sorted; a missing directory is no drop-ins. */
static int list_dropins(const char *path, char ***ret, char **ret_error) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *dir = NULL;
        DIR *d;
        struct dirent *de;
        int r = 0;

        if (asprintf(&dir, "%s.d", path) < 0)
                return -ENOMEM;
        d = opendir(dir);
        if (!d) {
                if (errno == ENOENT || errno == ENOTDIR) {
                        *ret = NULL;
                        return 0;
                }
                r = -errno;
                if (asprintf(ret_error, "%s: cannot be read: %s", dir, strerror(-r)) < 0)
                        *ret_error = NULL;
                return r;
        }
        while ((de = readdir(d))) {
                size_t n = strlen(de->d_name);
                _cleanup_free_ char *full = NULL;
                if (de->d_name[0] == '.' || n < 6 || !streq(de->d_name + n - 5, ".conf"))
                        continue;
                if (asprintf(&full, "%s/%s", dir, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                r = strv_extend(&l, full);
                if (r < 0)
                        break;
        }
        closedir(d);
        if (r < 0)
                return r;
        if (l)
                qsort(l, strv_length(l), sizeof(char *), compare_strings);
        *ret = TAKE_PTR(l);
        return 0;
}

int policy_load(const char *path, bool missing_ok, Policy **ret, char **ret_error) {
        _cleanup_(policy_freep) Policy *p = policy_new_default();
        _cleanup_strv_free_ char **dropins = NULL;
        int r;

        *ret_error = NULL;
        if (!p)
                return -ENOMEM;
        r = parse_file(p, path, missing_ok, ret_error);
        if (r < 0)
                return r;
        r = list_dropins(path, &dropins, ret_error);
        if (r < 0)
                return r;
        for (char **f = dropins; f && *f; f++) {
                r = parse_file(p, *f, false, ret_error);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(p);
        return 0;
}

/* ---- matching ------------------------------------------------------------ */

static bool device_match(const DeviceMatch *m, const PciDeviceInfo *info, const char *address) {
        switch (m->type) {
        case DEVICE_MATCH_ADDRESS:
                return fnmatch(m->glob, address, 0) == 0;
        case DEVICE_MATCH_VENDOR:
                return info->vendor_id == m->vendor_id && (m->any_device || info->device_id == m->device_id);
        case DEVICE_MATCH_CLASS:
                return (info->class_code & m->class_mask) == m->class_code;
        }
        return false;
}

int policy_device_allowed(const Policy *p, const PciDeviceInfo *info, char **ret_reason) {
        char address[PCI_ADDRESS_STRING_MAX];
        bool in_allow_set = p->n_allow == 0;

        /* The common case, asked for every device of every reset scope:
         * no rule can match, so nothing needs formatting. */
        if (p->n_deny == 0 && p->n_allow == 0)
                return 1;
        pci_address_format(&info->address, address);

        for (size_t i = 0; i < p->n_deny; i++)
                if (device_match(&p->deny[i], info, address)) {
                        if (ret_reason && asprintf(ret_reason, "excluded by policy: %s matches %s", address,
                                                   p->deny[i].origin) < 0)
                                return -ENOMEM;
                        return 0;
                }
        for (size_t i = 0; !in_allow_set && i < p->n_allow; i++)
                in_allow_set = device_match(&p->allow[i], info, address);
        if (in_allow_set)
                return 1;

        if (ret_reason) {
                _cleanup_free_ char *list = NULL;
                size_t shown = p->n_allow < 3 ? p->n_allow : 3;
                for (size_t i = 0; i < shown; i++) {
                        char *n;
                        if (asprintf(&n, "%s%s%s", strempty(list), i > 0 ? ", " : "", p->allow[i].origin) < 0)
                                return -ENOMEM;
                        free(list);
                        list = n;
                }
                if (asprintf(ret_reason, "excluded by policy: %s matches none of the allowed devices (%s%s)", address,
                             list, p->n_allow > shown ? ", ..." : "") < 0)
                        return -ENOMEM;
        }
        return 0;
}

unsigned policy_user_reset_burst(const Policy *p) {
        unsigned b = p->limits[POLICY_LIMIT_RESET_BURST_PER_USER];
        return b > 0 ? b : p->limits[POLICY_LIMIT_RESETS_PER_USER];
}

char *policy_describe_limit(const Policy *p, PolicyLimit l) {
        char *s;
        if (p->limit_origin[l])
                return strdup(p->limit_origin[l]);
        if (asprintf(&s, "%s=%u (built-in default)", limit_keys[l], p->limits[l]) < 0)
                return NULL;
        return s;
}

/* ---- token buckets ------------------------------------------------------- */

typedef struct Bucket {
        char *key;
        double tokens;
        uint64_t stamp;
        unsigned burst, per_minute; /* as last used, to know when it is full */
        uint64_t skipped;           /* rate_limiter_take_or_skip(): not yet reported */
} Bucket;

struct RateLimiter {
        Bucket *buckets;
        size_t n;
};

RateLimiter *rate_limiter_new(void) {
        return calloc(1, sizeof(RateLimiter));
}

RateLimiter *rate_limiter_free(RateLimiter *l) {
        if (!l)
                return NULL;
        for (size_t i = 0; i < l->n; i++)
                free(l->buckets[i].key);
        free(l->buckets);
        free(l);
        return NULL;
}

size_t rate_limiter_size(RateLimiter *l) {
        return l->n;
}

static void bucket_refill(Bucket *b, unsigned burst, unsigned per_minute, uint64_t now) {
        if (now > b->stamp) {
                b->tokens += (double) (now - b->stamp) * per_minute / 60e6;
                b->stamp = now;
        }
        if (b->tokens > burst)
                b->tokens = burst;
        b->burst = burst;
        b->per_minute = per_minute;
}

/* How long until an empty bucket has a token again. */
static uint64_t until_token(const Bucket *b, unsigned per_minute) {
        return (uint64_t) ((1.0 - b->tokens) * 60e6 / per_minute) + 1;
}

static Bucket *bucket_find(RateLimiter *l, const char *key) {
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->buckets[i].key, key))
                        return &l->buckets[i];
        return NULL;
}

/* Full buckets say nothing a missing one doesn't: drop them (unless
 * they still have skipped actions to report). */
static void prune(RateLimiter *l, uint64_t now) {
        size_t k = 0;
        for (size_t i = 0; i < l->n; i++) {
                Bucket *b = &l->buckets[i];
                bucket_refill(b, b->burst, b->per_minute, now);
                if (b->tokens >= b->burst && b->skipped == 0)
                        free(b->key);
                else
                        l->buckets[k++] = *b;
        }
        l->n = k;
}

bool rate_limiter_check(RateLimiter *l, const char *key, unsigned burst, unsigned per_minute, uint64_t now_usec,
                        uint64_t *ret_wait_usec) {
        Bucket *b;

        if (per_minute == 0)
                return true;
        if (burst == 0)
                burst = 1;
        b = bucket_find(l, key);
        if (!b)
                return true;
        bucket_refill(b, burst, per_minute, now_usec);
        if (b->tokens >= 1.0)
                return true;
        if (ret_wait_usec)
                *ret_wait_usec = until_token(b, per_minute);
        return false;
}

/* The key's bucket, made full when there was none. NULL: out of memory. */
static Bucket *bucket_get(RateLimiter *l, const char *key, unsigned burst, unsigned per_minute, uint64_t now) {
        if (burst == 0)
                burst = 1;
        prune(l, now);
        Bucket *b = bucket_find(l, key);
        if (!b) {
                Bucket *n = realloc(l->buckets, (l->n + 1) * sizeof(Bucket));
                if (!n)
                        return NULL;
                l->buckets = n;
                b = &l->buckets[l->n];
                *b = (Bucket) { .key = strdup(key), .tokens = burst, .stamp = now };
                if (!b->key)
                        return NULL;
                l->n++;
        }
        bucket_refill(b, burst, per_minute, now);
        return b;
}

int rate_limiter_take(RateLimiter *l, const char *key, unsigned burst, unsigned per_minute, uint64_t now_usec) {
        if (per_minute == 0)
                return 0;
        Bucket *b = bucket_get(l, key, burst, per_minute, now_usec);
        if (!b)
                return -ENOMEM;
        b->tokens -= 1.0;
        return 0;
}

int rate_limiter_take_or_skip(RateLimiter *l, const char *key, unsigned burst, unsigned per_minute,
                              uint64_t now_usec, uint64_t *ret_skipped, uint64_t *ret_wait_usec) {
        if (ret_skipped)
                *ret_skipped = 0;
        if (ret_wait_usec)
                *ret_wait_usec = 0;
        if (per_minute == 0)
                return 1;
        Bucket *b = bucket_get(l, key, burst, per_minute, now_usec);
        if (!b)
                return -ENOMEM;
        if (b->tokens < 1.0) {
                b->skipped++;
                if (ret_wait_usec)
                        *ret_wait_usec = until_token(b, per_minute);
                return 0;
        }
        b->tokens -= 1.0;
        if (ret_skipped) {
                *ret_skipped = b->skipped;
                b->skipped = 0;
        }
        return 1;
}

size_t rate_limiter_flush_skipped(RateLimiter *l, uint64_t now_usec, bool force, RateLimiterSkippedFn fn,
                                  void *userdata, uint64_t *ret_wait_usec) {
        uint64_t wait = UINT64_MAX;
        size_t left = 0;

        for (size_t i = 0; i < l->n; i++) {
                Bucket *b = &l->buckets[i];
                if (b->skipped == 0)
                        continue;
                if (b->per_minute > 0)
                        bucket_refill(b, b->burst, b->per_minute, now_usec);
                if (!force && b->per_minute > 0 && b->tokens < 1.0) {
                        uint64_t w = until_token(b, b->per_minute);
                        wait = w < wait ? w : wait;
                        left++;
                        continue;
                }
                if (b->tokens >= 1.0)
                        b->tokens -= 1.0;
                uint64_t skipped = b->skipped;
                b->skipped = 0;
                fn(b->key, skipped, b->per_minute, userdata);
        }
        if (ret_wait_usec)
                *ret_wait_usec = left > 0 ? wait : 0;
        return left;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's policy file: parsing (main file and sorted drop-ins), error
 * messages that name the file, the line and the key, device matching, and
 * the token buckets of the rate limits. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#include "pci-address.h"
#include "policy.h"
#include "test-util.h"
#include "util.h"

static char tmpdir[] = "/tmp/test-policy-XXXXXX";

static char *path_in(const char *name) {
        char *p;
        ASSERT_TRUE(asprintf(&p, "%s/%s", tmpdir, name) >= 0);
        return p;
}

static char *write_file(const char *name, const char *text) {
        char *p = path_in(name);
        FILE *f = fopen(p, "we");
        ASSERT_TRUE(f);
        ASSERT_TRUE(fputs(text, f) >= 0);
        ASSERT_INT_EQ(fclose(f), 0);
        return p;
}

static void remove_file(const char *name) {
        _cleanup_free_ char *p = path_in(name);
        (void) unlink(p);
}

static PciDeviceInfo device(const char *address, uint16_t vendor, uint16_t dev, uint32_t class_code) {
        PciDeviceInfo i = PCI_DEVICE_INFO_NULL;
        ASSERT_INT_EQ(pci_address_parse(address, &i.address), 0);
        i.vendor_id = vendor;
        i.device_id = dev;
        i.class_code = class_code;
        return i;
}

/* Loads text as the main file (no drop-ins); returns the policy. */
static Policy *load_text(const char *text) {
        _cleanup_free_ char *p = write_file("main.conf", text), *error = NULL;
        Policy *policy = NULL;
        int r = policy_load(p, false, &policy, &error);
        if (r < 0) {
                fprintf(stderr, "unexpected error: %s\n", strempty(error));
                exit(1);
        }
        ASSERT_TRUE(!error);
        return policy;
}

/* Loads text as the main file, which must fail; returns the message. */
static char *load_error(const char *text) {
        _cleanup_free_ char *p = write_file("main.conf", text);
        char *error = NULL;
        Policy *policy = NULL;
        ASSERT_INT_EQ(policy_load(p, false, &policy, &error), -EINVAL);
        ASSERT_TRUE(!policy);
        ASSERT_TRUE(error);
        return error;
}

static bool allowed(const Policy *p, const PciDeviceInfo *i) {
        int r = policy_device_allowed(p, i, NULL);
        ASSERT_TRUE(r >= 0);
        return r;
}

TEST(test_defaults) {
        _cleanup_(policy_freep) Policy *p = NULL;
        _cleanup_free_ char *missing = path_in("does-not-exist.conf"), *error = NULL;
        PciDeviceInfo gpu = device("0000:01:00.0", 0x10de, 0x2204, 0x030000);

        /* The default path may be missing: the built-in defaults apply. */
        ASSERT_INT_EQ(policy_load(missing, true, &p, &error), 0);
        ASSERT_TRUE(!error);
        ASSERT_TRUE(!p->files);
        ASSERT_TRUE(allowed(p, &gpu));
        ASSERT_TRUE(p->unleased_hot_reset);
        /* Every limit is off by default but the number of contexts a user
         * may hold: one caller must not be able to take every file. */
        for (size_t i = 0; i < _POLICY_LIMIT_MAX; i++)
                ASSERT_INT_EQ(p->limits[i], i == POLICY_LIMIT_CONTEXTS_PER_USER          ? POLICY_DEFAULT_CONTEXTS_PER_USER
                                            : i == POLICY_LIMIT_LOGGED_REFUSALS_PER_USER ? POLICY_DEFAULT_LOGGED_REFUSALS_PER_USER
                                                                                         : 0);
        ASSERT_INT_EQ(POLICY_DEFAULT_CONTEXTS_PER_USER, 64);
        ASSERT_INT_EQ(POLICY_DEFAULT_LOGGED_REFUSALS_PER_USER, 60);
        _cleanup_free_ char *d = policy_describe_limit(p, POLICY_LIMIT_CONTEXTS_PER_USER);
        ASSERT_STR_EQ(d, "ContextsPerUser=64 (built-in default)");
        p = policy_free(p);

        /* A path given explicitly must be there. */
        ASSERT_INT_EQ(policy_load(missing, false, &p, &error), -ENOENT);
        ASSERT_TRUE(!p);
        ASSERT_CONTAINS(error, missing);
        ASSERT_CONTAINS(error, "No such file");
}

TEST(test_full_file) {
        _cleanup_(policy_freep) Policy *p = load_text(
                "# hotresetd policy\n"
                "[Devices]\n"
                "AllowVendor=10de 0x8086:0x10ED\n"
                "AllowAddress=0000:02:00.*\n"
                "AllowClass=0x0108\n"
                "DenyAddress=0000:01:00.1 ; the HDMI audio\n"
                "DenyClass=060400\n"
                "\n"
                "[Limits]\n"
                "ResetsPerDevicePerMinute=6\n"
                "ResetsPerUserPerMinute = 10\n"
                "ResetBurstPerUser=3\n"
                "ContextsPerUser=4\n"
                "DevicesPerContext=8\n"
                "[Manager]\n"
                "UnleasedHotReset=no\n");

        ASSERT_INT_EQ(p->n_allow, 4);
        ASSERT_INT_EQ(p->n_deny, 2);
        ASSERT_INT_EQ(p->limits[POLICY_LIMIT_RESETS_PER_DEVICE], 6);
        ASSERT_INT_EQ(p->limits[POLICY_LIMIT_RESETS_PER_USER], 10);
        ASSERT_INT_EQ(p->limits[POLICY_LIMIT_RESET_BURST_PER_USER], 3);
        ASSERT_INT_EQ(policy_user_reset_burst(p), 3);
        ASSERT_INT_EQ(p->limits[POLICY_LIMIT_CONTEXTS_PER_USER], 4);
        ASSERT_INT_EQ(p->limits[POLICY_LIMIT_DEVICES_PER_CONTEXT], 8);
        ASSERT_TRUE(!p->unleased_hot_reset);
        ASSERT_CONTAINS(p->unleased_origin, "UnleasedHotReset=no in ");
        ASSERT_CONTAINS(p->unleased_origin, "main.conf:16");
        ASSERT_INT_EQ(strv_length(p->files), 1);

        _cleanup_free_ char *limit = policy_describe_limit(p, POLICY_LIMIT_RESETS_PER_USER);
        ASSERT_CONTAINS(limit, "ResetsPerUserPerMinute=10 in ");
        ASSERT_CONTAINS(limit, "main.conf:11");

        /* Vendor, vendor:device, address glob, class prefix. */
        PciDeviceInfo gpu = device("0000:01:00.0", 0x10de, 0x2204, 0x030000);
        PciDeviceInfo audio = device("0000:01:00.1", 0x10de, 0x1aef, 0x040300);
        PciDeviceInfo vf = device("0000:03:10.0", 0x8086, 0x10ed, 0x020000);
        PciDeviceInfo pf = device("0000:03:00.0", 0x8086, 0x10fb, 0x020000);
        PciDeviceInfo nvme = device("0000:05:00.0", 0x144d, 0xa80a, 0x010802);
        PciDeviceInfo by_address = device("0000:02:00.3", 0x1234, 0x5678, 0x0c0330);
        PciDeviceInfo other = device("0001:02:00.0", 0x1234, 0x5678, 0x0c0330);
        PciDeviceInfo bridge = device("0000:00:1c.0", 0x10de, 0x0001, 0x060400);

        ASSERT_TRUE(allowed(p, &gpu));
        ASSERT_TRUE(!allowed(p, &audio)); /* deny beats allow */
        ASSERT_TRUE(allowed(p, &vf));
        ASSERT_TRUE(!allowed(p, &pf));
        ASSERT_TRUE(allowed(p, &nvme));
        ASSERT_TRUE(allowed(p, &by_address));
        ASSERT_TRUE(!allowed(p, &other));
        ASSERT_TRUE(!allowed(p, &bridge));

        /* Reasons name the match and where it was written. */
        _cleanup_free_ char *why = NULL, *why_not = NULL;
        ASSERT_INT_EQ(policy_device_allowed(p, &audio, &why), 0);
        ASSERT_CONTAINS(why, "excluded by policy: 0000:01:00.1 matches DenyAddress=0000:01:00.1 in ");
        ASSERT_CONTAINS(why, "main.conf:6");
        ASSERT_INT_EQ(policy_device_allowed(p, &pf, &why_not), 0);
        ASSERT_CONTAINS(why_not, "excluded by policy: 0000:03:00.0 matches none of the allowed devices (");
        ASSERT_CONTAINS(why_not, "AllowVendor=10de in ");
        ASSERT_CONTAINS(why_not, ", ...)"); /* four matches, three shown */
}

TEST(test_matching_forms) {
        _cleanup_(policy_freep) Policy *p = load_text(
                "[Devices]\n"
                "DenyAddress=01:00.* 0000:0[4-5]:*.? 0001:* 1[01]:*\n"
                "DenyVendor=0X1B21\n"
                "DenyClass=03 0x0c0330\n");
        ASSERT_TRUE(!allowed(p, &(PciDeviceInfo) { .address = { 0, 1, 0, 3 } }));
        ASSERT_TRUE(allowed(p, &(PciDeviceInfo) { .address = { 0, 2, 0, 0 } }));
        ASSERT_TRUE(!allowed(p, &(PciDeviceInfo) { .address = { 0, 4, 1, 0 } }));
        ASSERT_TRUE(!allowed(p, &(PciDeviceInfo) { .address = { 0, 5, 0x1f, 7 } }));
        ASSERT_TRUE(allowed(p, &(PciDeviceInfo) { .address = { 0, 6, 0, 0 } }));
        ASSERT_TRUE(!allowed(p, &(PciDeviceInfo) { .address = { 1, 0x20, 0, 0 } }));
        ASSERT_TRUE(!allowed(p, &(PciDeviceInfo) { .address = { 0, 0x11, 3, 0 } }));
        ASSERT_TRUE(allowed(p, &(PciDeviceInfo) { .address = { 0, 0x12, 3, 0 } }));
        ASSERT_TRUE(!allowed(p, &(PciDeviceInfo) { .address = { 0, 9, 0, 0 }, .vendor_id = 0x1b21 }));
        ASSERT_TRUE(!allowed(p, &(PciDeviceInfo) { .address = { 0, 9, 0, 0 }, .class_code = 0x030200 }));
        ASSERT_TRUE(!allowed(p, &(PciDeviceInfo) { .address = { 0, 9, 0, 0 }, .class_code = 0x0c0330 }));
        ASSERT_TRUE(allowed(p, &(PciDeviceInfo) { .address = { 0, 9, 0, 0 }, .class_code = 0x0c0320 }));
        /* An address glob is matched against the canonical lower-case form. */
        p = policy_free(p);
        p = load_text("[Devices]\nAllowAddress=0000:0A:00.0\n");
        ASSERT_TRUE(allowed(p, &(PciDeviceInfo) { .address = { 0, 0x0a, 0, 0 } }));
        ASSERT_TRUE(!allowed(p, &(PciDeviceInfo) { .address = { 0, 0x0b, 0, 0 } }));
}

TEST(test_dropins) {
        _cleanup_(policy_freep) Policy *p = NULL;
        _cleanup_free_ char *main_path = write_file("main.conf",
                                                    "[Devices]\nDenyVendor=10de\nAllowClass=03\n"
                                                    "[Limits]\nContextsPerUser=2\n"),
                            *dir = path_in("main.conf.d"), *error = NULL;
        PciDeviceInfo gpu = device("0000:01:00.0", 0x10de, 0x2204, 0x030000);
        PciDeviceInfo amd = device("0000:02:00.0", 0x1002, 0x73bf, 0x030000);

        ASSERT_INT_EQ(mkdir(dir, 0755), 0);
        /* Read in lexical order, whatever the directory order; only *.conf. */
        free(write_file("main.conf.d/20-late.conf", "[Limits]\nContextsPerUser=7\n"));
        free(write_file("main.conf.d/10-early.conf",
                        "[Limits]\nContextsPerUser=5\nDevicesPerContext=3\n"
                        "[Devices]\n"
                        "DenyVendor=\n" /* empties the list of that key only */
                        "DenyVendor=1002\n"));
        free(write_file("main.conf.d/30-ignored.conf.disabled", "[Limits]\nContextsPerUser=99\n"));
        free(write_file("main.conf.d/.hidden.conf", "[Limits]\nContextsPerUser=98\n"));

        ASSERT_INT_EQ(policy_load(main_path, false, &p, &error), 0);
        ASSERT_INT_EQ(strv_length(p->files), 3);
        ASSERT_CONTAINS(p->files[1], "10-early.conf");
        ASSERT_CONTAINS(p->files[2], "20-late.conf");
        ASSERT_INT_EQ(p->limits[POLICY_LIMIT_CONTEXTS_PER_USER], 7);
        ASSERT_INT_EQ(p->limits[POLICY_LIMIT_DEVICES_PER_CONTEXT], 3);
        ASSERT_CONTAINS(p->limit_origin[POLICY_LIMIT_CONTEXTS_PER_USER], "20-late.conf:2");
        ASSERT_TRUE(allowed(p, &gpu));
        ASSERT_TRUE(!allowed(p, &amd));
        ASSERT_INT_EQ(p->n_allow, 1); /* AllowClass= survived */
        p = policy_free(p);

        /* A broken drop-in fails the whole load and is named. */
        free(write_file("main.conf.d/15-broken.conf", "[Limits]\n\nDevicesPerContext=lots\n"));
        ASSERT_INT_EQ(policy_load(main_path, false, &p, &error), -EINVAL);
        ASSERT_TRUE(!p);
        ASSERT_CONTAINS(error, "15-broken.conf:3: [Limits] DevicesPerContext: 'lots' is not a number");
        free(error);
        error = NULL;

        /* The main file may be missing when it is the default path. */
        remove_file("main.conf.d/15-broken.conf");
        remove_file("main.conf");
        ASSERT_INT_EQ(policy_load(main_path, true, &p, &error), 0);
        ASSERT_INT_EQ(strv_length(p->files), 2);
        ASSERT_INT_EQ(p->limits[POLICY_LIMIT_CONTEXTS_PER_USER], 7);
        p = policy_free(p);

        remove_file("main.conf.d/10-early.conf");
        remove_file("main.conf.d/20-late.conf");
        remove_file("main.conf.d/30-ignored.conf.disabled");
        remove_file("main.conf.d/.hidden.conf");
        ASSERT_INT_EQ(rmdir(dir), 0);
}

TEST(test_errors) {
        static const struct {
                const char *text;
                const char *expected;
        } cases[] = {
                { "[Limits]\nResetsPerDevicePerMinut=3\n",
                  "main.conf:2: [Limits] ResetsPerDevicePerMinut: unknown key" },
                { "[Limits]\nContextsPerUser=-1\n", "main.conf:2: [Limits] ContextsPerUser: '-1' is not a number" },
                { "[Limits]\nContextsPerUser=1000001\n", "main.conf:2: [Limits] ContextsPerUser: '1000001'" },
                { "[Limits]\nContextsPerUser=3x\n", "main.conf:2: [Limits] ContextsPerUser: '3x'" },
                { "[Limits]\nContextsPerUser=\n", "main.conf:2: [Limits] ContextsPerUser: '' is not a number" },
                { "\n\n[Manager]\nUnleasedHotReset=maybe\n",
                  "main.conf:4: [Manager] UnleasedHotReset: 'maybe' is not a boolean" },
                { "[Manager]\nUnleased=yes\n", "main.conf:2: [Manager] Unleased: unknown key" },
                { "[Device]\nAllowVendor=10de\n", "main.conf:2: [Device] AllowVendor: unknown section [Device]" },
                { "AllowVendor=10de\n", "main.conf:1: [] AllowVendor: setting outside a section" },
                { "[Devices]\nAllowVendor=10de 10dex\n",
                  "main.conf:2: [Devices] AllowVendor: '10dex' is not a vendor" },
                { "[Devices]\nAllowVendor=10de:\n", "main.conf:2: [Devices] AllowVendor: '10de:'" },
                { "[Devices]\nAllowVendor=12345\n", "main.conf:2: [Devices] AllowVendor: '12345'" },
                { "[Devices]\nDenyClass=030\n", "main.conf:2: [Devices] DenyClass: '030' is not a class" },
                { "[Devices]\nDenyClass=0x03000000\n", "main.conf:2: [Devices] DenyClass: '0x03000000'" },
                { "[Devices]\nDenyAddress=01:00.0/\n",
                  "main.conf:2: [Devices] DenyAddress: '01:00.0/' is not an address glob" },
                { "[Devices]\nDenyAddress=0000:01:00.0:1\n", "main.conf:2: [Devices] DenyAddress: '0000:01:00.0:1'" },
                { "[Devices]\nAllowSerial=x\n", "main.conf:2: [Devices] AllowSerial: unknown key" },
                /* The first error is the one reported, syntax or key. */
                { "[Limits]\nthis is not a setting\nFoo=1\n", "main.conf:2: syntax error" },
                { "[Limits]\nFoo=1\nthis is not a setting\n", "main.conf:2: [Limits] Foo: unknown key" },
                { "[Limits\n", "main.conf:1: syntax error" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *e = load_error(cases[i].text);
                ASSERT_CONTAINS(e, cases[i].expected);
                ASSERT_CONTAINS(e, tmpdir); /* the full path of the file */
        }

        /* A line longer than the parser's buffer is an error, not two lines. */
        char long_line[400];
        memset(long_line, 'x', sizeof long_line);
        memcpy(long_line, "[Limits]\nContextsPerUser=1 ;", 28);
        long_line[sizeof long_line - 2] = '\n';
        long_line[sizeof long_line - 1] = 0;
        _cleanup_free_ char *e = load_error(long_line);
        ASSERT_CONTAINS(e, "main.conf:2: line too long");

        /* Values never break the message: control characters are shown as '?'. */
        _cleanup_free_ char *ctl = load_error("[Limits]\nContextsPerUser=1\x01\x7f\n");
        ASSERT_CONTAINS(ctl, "'1?" "?'");
}

TEST(test_unreadable) {
        _cleanup_(policy_freep) Policy *p = NULL;
        _cleanup_free_ char *error = NULL, *dir = path_in("a-directory.conf");

        ASSERT_INT_EQ(mkdir(dir, 0755), 0);
        /* fopen() of a directory works; reading it does not: no success. */
        int r = policy_load(dir, false, &p, &error);
        ASSERT_TRUE(r < 0);
        ASSERT_TRUE(!p);
        ASSERT_CONTAINS(error, dir);
        ASSERT_INT_EQ(rmdir(dir), 0);
}

TEST(test_rate_limiter) {
        RateLimiter *l = rate_limiter_new();
        const uint64_t s = 1000000;
        uint64_t wait = 0, t = 1000 * s;

        ASSERT_TRUE(l);
        /* No limit: always yes, and nothing is kept. */
        for (int i = 0; i < 100; i++) {
                ASSERT_TRUE(rate_limiter_check(l, "uid:1000", 0, 0, t, &wait));
                ASSERT_INT_EQ(rate_limiter_take(l, "uid:1000", 0, 0, t), 0);
        }
        ASSERT_INT_EQ(rate_limiter_size(l), 0);

        /* Burst 3, 6 a minute: three at once, then one every 10 s. */
        for (int i = 0; i < 3; i++) {
                ASSERT_TRUE(rate_limiter_check(l, "uid:1000", 3, 6, t, &wait));
                ASSERT_INT_EQ(rate_limiter_take(l, "uid:1000", 3, 6, t), 0);
        }
        ASSERT_TRUE(!rate_limiter_check(l, "uid:1000", 3, 6, t, &wait));
        ASSERT_TRUE(wait > 9 * s && wait <= 10 * s + 1);
        /* Another key has its own bucket. */
        ASSERT_TRUE(rate_limiter_check(l, "uid:1001", 3, 6, t, &wait));
        ASSERT_TRUE(!rate_limiter_check(l, "uid:1000", 3, 6, t + 9 * s, &wait));
        ASSERT_TRUE(wait > 0 && wait <= 1 * s + 1);
        ASSERT_TRUE(rate_limiter_check(l, "uid:1000", 3, 6, t + 10 * s, &wait));
        ASSERT_INT_EQ(rate_limiter_take(l, "uid:1000", 3, 6, t + 10 * s), 0);
        ASSERT_TRUE(!rate_limiter_check(l, "uid:1000", 3, 6, t + 10 * s, &wait));
        ASSERT_INT_EQ(rate_limiter_size(l), 1);

        /* Refilled to the burst, not beyond. */
        t += 3600 * s;
        for (int i = 0; i < 3; i++) {
                ASSERT_TRUE(rate_limiter_check(l, "uid:1000", 3, 6, t, &wait));
                ASSERT_INT_EQ(rate_limiter_take(l, "uid:1000", 3, 6, t), 0);
        }
        ASSERT_TRUE(!rate_limiter_check(l, "uid:1000", 3, 6, t, &wait));

        /* A smaller burst after a reload applies at once. */
        t += 3600 * s;
        ASSERT_INT_EQ(rate_limiter_take(l, "device:0000:01:00.0", 1, 60, t), 0);
        ASSERT_TRUE(!rate_limiter_check(l, "device:0000:01:00.0", 1, 60, t, &wait));
        ASSERT_TRUE(wait <= 1 * s + 1);
        /* Full buckets are dropped on the next take. */
        ASSERT_INT_EQ(rate_limiter_take(l, "device:0000:02:00.0", 2, 2, t + 120 * s), 0);
        ASSERT_INT_EQ(rate_limiter_size(l), 1);
        /* Time never runs backwards for a bucket. */
        ASSERT_TRUE(rate_limiter_check(l, "device:0000:02:00.0", 2, 2, t, &wait));

        rate_limiter_free(l);
        rate_limiter_free(NULL);
}

typedef struct Skipped {
        char keys[4][32];
        uint64_t counts[4];
        unsigned rates[4];
        size_t n;
} Skipped;

static void collect_skipped(const char *key, uint64_t skipped, unsigned per_minute, void *userdata) {
        Skipped *s = userdata;
        ASSERT_TRUE(s->n < 4);
        snprintf(s->keys[s->n], sizeof s->keys[s->n], "%s", key);
        s->rates[s->n] = per_minute;
        s->counts[s->n++] = skipped;
}

/* What the refusal log uses: take a token or count the action as skipped;
 * the count comes back with the next token, or from a flush that spends
 * one. */
TEST(test_rate_limiter_skip) {
        RateLimiter *l = rate_limiter_new();
        const uint64_t s = 1000000, t = 5 * s;
        uint64_t wait = 99, skipped = 99;
        Skipped got = {};

        ASSERT_TRUE(l);
        /* No limit: always taken, nothing kept. */
        ASSERT_INT_EQ(rate_limiter_take_or_skip(l, "uid:1000", 0, 0, t, &skipped, &wait), 1);
        ASSERT_INT_EQ(wait, 0);
        ASSERT_INT_EQ(skipped, 0);
        ASSERT_INT_EQ(rate_limiter_size(l), 0);
        /* 3 a minute: a burst of 3, then skipped and counted. */
        for (int i = 0; i < 3; i++)
                ASSERT_INT_EQ(rate_limiter_take_or_skip(l, "uid:1000", 3, 3, t, NULL, NULL), 1);
        for (int i = 0; i < 5; i++)
                ASSERT_INT_EQ(rate_limiter_take_or_skip(l, "uid:1000", 3, 3, t, NULL, &wait), 0);
        ASSERT_TRUE(wait > 19 * s && wait <= 20 * s + 1);
        /* Another key has its own budget. */
        ASSERT_INT_EQ(rate_limiter_take_or_skip(l, "uid:1001", 3, 3, t, &skipped, NULL), 1);
        ASSERT_INT_EQ(skipped, 0);
        /* Before the token is back, a flush reports nothing and says when. */
        ASSERT_INT_EQ(rate_limiter_flush_skipped(l, t + 10 * s, false, collect_skipped, &got, &wait), 1);
        ASSERT_INT_EQ(got.n, 0);
        ASSERT_TRUE(wait > 9 * s && wait <= 10 * s + 1);
        /* The next token brings the count back, and zeroes it. */
        ASSERT_INT_EQ(rate_limiter_take_or_skip(l, "uid:1000", 3, 3, t + 20 * s, &skipped, NULL), 1);
        ASSERT_INT_EQ(skipped, 5);
        ASSERT_INT_EQ(rate_limiter_take_or_skip(l, "uid:1000", 3, 3, t + 20 * s, NULL, NULL), 0);
        /* A flush spends a token on the count: none now, one 20 s later. */
        ASSERT_INT_EQ(rate_limiter_flush_skipped(l, t + 21 * s, false, collect_skipped, &got, NULL), 1);
        ASSERT_INT_EQ(got.n, 0);
        /* The count is kept through pruning, even once the bucket is full. */
        ASSERT_INT_EQ(rate_limiter_take(l, "uid:1002", 1, 1, t + 600 * s), 0);
        ASSERT_INT_EQ(rate_limiter_size(l), 2); /* uid:1000 (skipped) and uid:1002; uid:1001 pruned */
        ASSERT_INT_EQ(rate_limiter_flush_skipped(l, t + 600 * s, false, collect_skipped, &got, &wait), 0);
        ASSERT_INT_EQ(wait, 0);
        ASSERT_INT_EQ(got.n, 1);
        ASSERT_STR_EQ(got.keys[0], "uid:1000");
        ASSERT_INT_EQ(got.counts[0], 1);
        ASSERT_INT_EQ(got.rates[0], 3);
        /* Forced (at shutdown): every count, token or not. */
        for (int i = 0; i < 3; i++)
                ASSERT_INT_EQ(rate_limiter_take_or_skip(l, "uid:1003", 1, 1, t + 600 * s, NULL, NULL), i == 0);
        got = (Skipped) {};
        ASSERT_INT_EQ(rate_limiter_flush_skipped(l, t + 600 * s, false, collect_skipped, &got, NULL), 1);
        ASSERT_INT_EQ(got.n, 0);
        ASSERT_INT_EQ(rate_limiter_flush_skipped(l, t + 600 * s, true, collect_skipped, &got, NULL), 0);
        ASSERT_INT_EQ(got.n, 1);
        ASSERT_STR_EQ(got.keys[0], "uid:1003");
        ASSERT_INT_EQ(got.counts[0], 2);
        rate_limiter_free(l);
}

/* The shipped example parses, and so does every example it shows. */
TEST(test_example_file) {
        const char *example = TEST_DATA_DIR "/../../../policy/hotresetd.conf.example";
        _cleanup_(policy_freep) Policy *p = NULL;
        _cleanup_free_ char *error = NULL, *text = NULL, *uncommented = NULL;
        FILE *f;
        long size;

        ASSERT_INT_EQ(policy_load(example, false, &p, &error), 0);
        ASSERT_INT_EQ(p->n_allow + p->n_deny, 0);
        ASSERT_TRUE(p->unleased_hot_reset);
        p = policy_free(p);

        f = fopen(example, "re");
        ASSERT_TRUE(f);
        ASSERT_INT_EQ(fseek(f, 0, SEEK_END), 0);
        size = ftell(f);
        rewind(f);
        text = calloc(1, (size_t) size + 1);
        ASSERT_TRUE(text && fread(text, 1, (size_t) size, f) == (size_t) size);
        fclose(f);
        /* "#Key=" lines are the examples: make them settings. */
        uncommented = calloc(1, (size_t) size + 1);
        ASSERT_TRUE(uncommented);
        char *o = uncommented;
        for (const char *l = text; *l;) {
                const char *nl = strchrnul(l, '\n');
                if (l[0] == '#' && isupper((unsigned char) l[1]) && memchr(l, '=', (size_t) (nl - l)))
                        l++;
                memcpy(o, l, (size_t) (nl - l) + (*nl ? 1 : 0));
                o += (nl - l) + (*nl ? 1 : 0);
                l = *nl ? nl + 1 : nl;
        }
        p = load_text(uncommented);
        ASSERT_TRUE(p->n_allow > 0 && p->n_deny > 0);
        ASSERT_INT_EQ(p->limits[POLICY_LIMIT_RESETS_PER_DEVICE], 6);
        ASSERT_INT_EQ(p->limits[POLICY_LIMIT_DEVICES_PER_CONTEXT], 16);
}

int main(void) {
        ASSERT_TRUE(mkdtemp(tmpdir));
        RUN(test_defaults);
        RUN(test_full_file);
        RUN(test_matching_forms);
        RUN(test_dropins);
        RUN(test_errors);
        RUN(test_unreadable);
        RUN(test_rate_limiter);
        RUN(test_rate_limiter_skip);
        RUN(test_example_file);
        remove_file("main.conf");
        ASSERT_INT_EQ(rmdir(tmpdir), 0);
        return 0;
}

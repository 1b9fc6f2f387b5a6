/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* pci_address_parse() is fed by D-Bus callers, the command line, machine
 * files and sysfs, so it must take exactly the two forms the kernel and
 * lspci write and refuse everything else. */
#include <errno.h>
#include <stdio.h>

#include "pci-address.h"
#include "test-util.h"
#include "util.h"

/* Parses from an exactly sized heap copy, so that AddressSanitizer catches
 * any read past the terminating NUL. */
static int parse_exact(const char *s, PciAddress *ret) {
        _cleanup_free_ char *copy = strdup(s);
        ASSERT_TRUE(copy);
        return pci_address_parse(copy, ret);
}

static void assert_parses(const char *s, uint16_t domain, uint8_t bus, uint8_t slot, uint8_t function,
                          const char *canonical) {
        PciAddress a = { .domain = 0xdead, .bus = 0xee, .slot = 0xee, .function = 0xee };
        char buf[PCI_ADDRESS_STRING_MAX];

        if (parse_exact(s, &a) != 0) {
                fprintf(stderr, "expected \"%s\" to parse\n", s);
                exit(1);
        }
        ASSERT_INT_EQ(a.domain, domain);
        ASSERT_INT_EQ(a.bus, bus);
        ASSERT_INT_EQ(a.slot, slot);
        ASSERT_INT_EQ(a.function, function);
        ASSERT_STR_EQ(pci_address_format(&a, buf), canonical);
}

static void assert_rejected(const char *s) {
        PciAddress a;
        int r = parse_exact(s, &a);
        if (r != -EINVAL) {
                fprintf(stderr, "expected \"%s\" to be rejected with -EINVAL, got %d\n", s, r);
                exit(1);
        }
}

TEST(test_parse_long_form) {
        assert_parses("0000:01:00.0", 0, 1, 0, 0, "0000:01:00.0");
        assert_parses("0000:00:00.0", 0, 0, 0, 0, "0000:00:00.0");
        assert_parses("0000:00:1c.4", 0, 0, 0x1c, 4, "0000:00:1c.4");
        assert_parses("0001:02:03.1", 1, 2, 3, 1, "0001:02:03.1");
        assert_parses("ffff:ff:1f.7", 0xffff, 0xff, 0x1f, 7, "ffff:ff:1f.7");
        assert_parses("10de:a0:10.5", 0x10de, 0xa0, 0x10, 5, "10de:a0:10.5");
}

TEST(test_parse_short_form) {
        /* lspci's form: domain 0. */
        assert_parses("01:00.0", 0, 1, 0, 0, "0000:01:00.0");
        assert_parses("00:00.0", 0, 0, 0, 0, "0000:00:00.0");
        assert_parses("ff:1f.7", 0, 0xff, 0x1f, 7, "0000:ff:1f.7");
        assert_parses("FF:1F.7", 0, 0xff, 0x1f, 7, "0000:ff:1f.7");
}

TEST(test_parse_case) {
        /* Either case in, always lower case out. */
        assert_parses("ABCD:EF:1F.7", 0xabcd, 0xef, 0x1f, 7, "abcd:ef:1f.7");
        assert_parses("abcd:ef:1f.7", 0xabcd, 0xef, 0x1f, 7, "abcd:ef:1f.7");
        assert_parses("AbCd:eF:1f.7", 0xabcd, 0xef, 0x1f, 7, "abcd:ef:1f.7");
        assert_parses("0000:0A:0B.3", 0, 0x0a, 0x0b, 3, "0000:0a:0b.3");
        assert_parses("0a:0B.3", 0, 0x0a, 0x0b, 3, "0000:0a:0b.3");
}

TEST(test_parse_malformed) {
        static const char *const bad[] = {
                /* empty and missing parts */
                "", ":", "::", ".", ":.", "0", "0000", "0000:", "0000:01", "0000:01:", "0000:01:00",
                "0000:01:00.", "01", "01:", "01:00", "01:00.", ":01:00.0", "0000::00.0", "0000:01:.0",
                "0000:01:00.", ":00.0", "01:.0", "01:00.", "0000:01::00.0",
                /* wrong widths */
                "000:01:00.0", "00000:01:00.0", "0:01:00.0", "0000:1:00.0", "0000:001:00.0", "0000:01:0.0",
                "0000:01:000.0", "0000:01:00.00", "1:00.0", "001:00.0", "01:0.0", "01:000.0", "01:00.00",
                /* extra characters and wrong separators */
                "0000:01:00.0.", "0000:01:00.0:", "0000:01:00.0x", "0000:01:00.0/", "0000:01:00.0-",
                "0000-01-00.0", "0000:01.00.0", "0000:01:00:0", "0000.01:00.0", "0000:01:00,0",
                "01-00.0", "01:00:0", "01.00.0", "00:00:01:00.0", "0000:0000:01:00.0",
                "0000:01:00.0:0000:01:00.0", "pci:0000:01:00.0", "0000:01:00.0\n", "01:00.0 1",
                /* device > 0x1f, function > 7 */
                "0000:01:20.0", "0000:01:3f.0", "0000:01:ff.0", "0000:01:00.8", "0000:01:00.f",
                "0000:01:00.F", "01:20.0", "01:80.0", "01:00.8", "01:1f.9",
                /* not hex */
                "g000:01:00.0", "0000:0g:00.0", "0000:01:0g.0", "0000:01:00.g", "000z:01:00.0",
                "0x00:01:00.0", "0000:0x:00.0", "zz:00.0", "01:0z.0", "01:00.z", "-000:01:00.0",
                "+000:01:00.0", "0000:+1:00.0", "0000:01:-1.0", "0000:01:00.-", "0000:01:00.+",
                "\303\251000:01:00.0", /* é in UTF-8 */
                /* spaces inside, before or after */
                " 0000:01:00.0", "0000:01:00.0 ", "\t0000:01:00.0", "0000:01:00.0\t", "0000 :01:00.0",
                "0000: 01:00.0", "0000:01 :00.0", "0000:01:00 .0", "0000:01:00. 0", " 01:00.0",
                "01:00.0 ", "  01:00.0  ", "0000:01:00.0\r",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_rejected(bad[i]);

        PciAddress a;
        ASSERT_INT_EQ(pci_address_parse(NULL, &a), -EINVAL);
}

/* Every proper prefix, every one-character deletion, insertion and
 * replacement of a valid address is invalid: a valid address is exactly 12
 * (long) or 7 (short) characters, and each position has one kind of valid
 * character. This finds off-by-one reads past the end that a hand-written
 * list would miss. */
static void assert_mutations_rejected(const char *valid) {
        static const char inserts[] = "0aF:. x-";
        size_t len = strlen(valid);
        char buf[64];

        ASSERT_TRUE(len + 2 < sizeof(buf));

        for (size_t n = 0; n < len; n++) {
                memcpy(buf, valid, n);
                buf[n] = 0;
                assert_rejected(buf);
        }

        for (size_t pos = 0; pos < len; pos++) {
                /* deletion */
                memcpy(buf, valid, pos);
                strcpy(buf + pos, valid + pos + 1);
                assert_rejected(buf);
        }

        for (size_t pos = 0; pos <= len; pos++)
                for (const char *c = inserts; *c; c++) {
                        memcpy(buf, valid, pos);
                        buf[pos] = *c;
                        strcpy(buf + pos + 1, valid + pos);
                        assert_rejected(buf);
                }

        for (size_t pos = 0; pos < len; pos++) {
                /* Separators replaced by anything, hex digits by non-hex. */
                static const char separators_for_hex[] = "g:. x-";
                static const char any[] = "0aF:. x-g";
                bool is_sep = valid[pos] == ':' || valid[pos] == '.';
                for (const char *c = is_sep ? any : separators_for_hex; *c; c++) {
                        if (*c == valid[pos])
                                continue;
                        strcpy(buf, valid);
                        buf[pos] = *c;
                        assert_rejected(buf);
                }
        }
}

TEST(test_parse_mutations) {
        assert_mutations_rejected("0000:01:00.0");
        assert_mutations_rejected("abcd:ef:1f.7");
        assert_mutations_rejected("01:00.0");
        assert_mutations_rejected("FF:1F.7");
}

TEST(test_parse_range_exhaustive) {
        char s[32];
        PciAddress a;

        /* Every two-digit device number: 0x00..0x1f valid, the rest not. */
        for (unsigned slot = 0; slot <= 0xff; slot++) {
                snprintf(s, sizeof(s), "0000:00:%02x.0", slot);
                int r = parse_exact(s, &a);
                if (slot <= 0x1f) {
                        ASSERT_INT_EQ(r, 0);
                        ASSERT_INT_EQ(a.slot, slot);
                } else
                        ASSERT_INT_EQ(r, -EINVAL);

                snprintf(s, sizeof(s), "%02X:%02X.0", slot, slot);
                r = parse_exact(s, &a);
                ASSERT_INT_EQ(r, slot <= 0x1f ? 0 : -EINVAL);
        }

        /* Every one-digit function number: 0..7 valid. */
        for (unsigned fn = 0; fn <= 0xf; fn++) {
                snprintf(s, sizeof(s), "0000:00:00.%x", fn);
                ASSERT_INT_EQ(parse_exact(s, &a), fn <= 7 ? 0 : -EINVAL);
                snprintf(s, sizeof(s), "00:00.%X", fn);
                ASSERT_INT_EQ(parse_exact(s, &a), fn <= 7 ? 0 : -EINVAL);
        }

        /* Every bus is valid. */
        for (unsigned bus = 0; bus <= 0xff; bus++) {
                snprintf(s, sizeof(s), "0000:%02X:00.0", bus);
                ASSERT_INT_EQ(parse_exact(s, &a), 0);
                ASSERT_INT_EQ(a.bus, bus);
        }
}

TEST(test_format) {
        char buf[PCI_ADDRESS_STRING_MAX];

        ASSERT_STR_EQ(pci_address_format(&(PciAddress) {}, buf), "0000:00:00.0");
        ASSERT_STR_EQ(pci_address_format(&(PciAddress) { .domain = 0xffff, .bus = 0xff, .slot = 0x1f, .function = 7 }, buf),
                      "ffff:ff:1f.7");
        ASSERT_STR_EQ(pci_address_format(&(PciAddress) { .domain = 0x0a, .bus = 0x0b, .slot = 0x0c, .function = 1 }, buf),
                      "000a:0b:0c.1");
        /* The longest form fills the buffer exactly. */
        ASSERT_INT_EQ(strlen(buf), PCI_ADDRESS_STRING_MAX - 1);
        /* Returns the buffer it was given. */
        ASSERT_TRUE(pci_address_format(&(PciAddress) {}, buf) == buf);
}

TEST(test_roundtrip) {
        /* format() then parse() is the identity over every device/function
         * and a spread of domains and buses. */
        static const uint16_t domains[] = { 0, 1, 0x10, 0xabcd, 0xffff };
        static const uint8_t buses[] = { 0, 1, 0x7f, 0x80, 0xff };
        char buf[PCI_ADDRESS_STRING_MAX];

        for (size_t d = 0; d < ELEMENTSOF(domains); d++)
                for (size_t b = 0; b < ELEMENTSOF(buses); b++)
                        for (uint8_t slot = 0; slot <= 0x1f; slot++)
                                for (uint8_t fn = 0; fn <= 7; fn++) {
                                        PciAddress a = { domains[d], buses[b], slot, fn }, c;
                                        ASSERT_INT_EQ(pci_address_parse(pci_address_format(&a, buf), &c), 0);
                                        ASSERT_TRUE(pci_address_equal(&a, &c));
                                        ASSERT_INT_EQ(pci_address_key(&a), pci_address_key(&c));
                                }
}

TEST(test_compare) {
        PciAddress a, b;

        /* Domain dominates bus, bus dominates device, device dominates
         * function. */
        ASSERT_INT_EQ(pci_address_parse("0000:ff:1f.7", &a), 0);
        ASSERT_INT_EQ(pci_address_parse("0001:00:00.0", &b), 0);
        ASSERT_INT_EQ(pci_address_compare(&a, &b), -1);
        ASSERT_INT_EQ(pci_address_compare(&b, &a), 1);

        ASSERT_INT_EQ(pci_address_parse("0000:01:1f.7", &a), 0);
        ASSERT_INT_EQ(pci_address_parse("0000:02:00.0", &b), 0);
        ASSERT_INT_EQ(pci_address_compare(&a, &b), -1);

        ASSERT_INT_EQ(pci_address_parse("0000:01:00.7", &a), 0);
        ASSERT_INT_EQ(pci_address_parse("0000:01:01.0", &b), 0);
        ASSERT_INT_EQ(pci_address_compare(&a, &b), -1);

        ASSERT_INT_EQ(pci_address_parse("0000:01:00.0", &a), 0);
        ASSERT_INT_EQ(pci_address_parse("01:00.0", &b), 0);
        ASSERT_INT_EQ(pci_address_compare(&a, &b), 0);
        ASSERT_TRUE(pci_address_equal(&a, &b));

        ASSERT_INT_EQ(pci_address_parse("0000:01:00.1", &b), 0);
        ASSERT_TRUE(!pci_address_equal(&a, &b));
}

int main(void) {
        RUN(test_parse_long_form);
        RUN(test_parse_short_form);
        RUN(test_parse_case);
        RUN(test_parse_malformed);
        RUN(test_parse_mutations);
        RUN(test_parse_range_exhaustive);
        RUN(test_format);
        RUN(test_roundtrip);
        RUN(test_compare);
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "log.h"

static int max_level = LOG_INFO;
static LogTarget target = LOG_TARGET_AUTO;

void log_set_target(LogTarget t) {
        target = t;
}

LogTarget log_get_target(void) {
        return target;
}

const char *log_target_to_string(LogTarget t) {
        switch (t) {
        case LOG_TARGET_CONSOLE:
                return "console";
        case LOG_TARGET_JOURNAL:
                return "journal";
        case LOG_TARGET_NULL:
                return "null";
        case LOG_TARGET_AUTO:
        default:
                return "auto";
        }
}

int log_target_from_string(const char *s, LogTarget *ret) {
        for (LogTarget t = LOG_TARGET_AUTO; t <= LOG_TARGET_NULL; t++)
                if (streq(s, log_target_to_string(t))) {
                        *ret = t;
                        return 0;
                }
        return -EINVAL;
}

/* The journal's own protocol: AUTO under systemd, or JOURNAL asked for. */
static bool to_journal(void) {
        return target == LOG_TARGET_JOURNAL || (target == LOG_TARGET_AUTO && getenv("JOURNAL_STREAM"));
}

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

/* Control characters as \xNN: a message can carry what a caller sent (a
 * context's description, a bus name), and a newline there must not start
 * a line of its own (nor a "<2>" priority prefix after it). */
static void escape_controls(const char *in, char *out, size_t size) {
        size_t k = 0;
        for (; *in && k + 5 < size; in++) {
                unsigned char c = (unsigned char) *in;
                if (c < 0x20 || c == 0x7f)
                        k += (size_t) snprintf(out + k, size - k, "\\x%02x", c);
                else
                        out[k++] = (char) c;
        }
        out[k] = 0;
}

int log_internal(int level, int error, const char *fmt, ...) {
        int e = error < 0 ? -error : error;

        if (level <= max_level && target != LOG_TARGET_NULL) {
                char raw[2048], buf[4096];
                va_list ap;

                errno = e;
                va_start(ap, fmt);
                vsnprintf(raw, sizeof raw, fmt, ap);
                va_end(ap);
                escape_controls(raw, buf, sizeof buf);
                /* Under systemd stderr goes to the journal, which reads the
                 * level from the prefix; on a terminal keep it readable. */
                if (target == LOG_TARGET_JOURNAL &&
                    sd_journal_send("MESSAGE=%s", buf, "PRIORITY=%d", level, "SYSLOG_IDENTIFIER=hotresetd", NULL) >= 0)
                        ;
                else if (target == LOG_TARGET_AUTO && getenv("JOURNAL_STREAM"))
                        fprintf(stderr, "<%d>%s\n", level, buf);
                else
                        fprintf(stderr, "%s\n", buf);
        }
        errno = e;
        return -e;
}

void log_struct(int level, const char *message_id, const char *const *fields, const char *fmt, ...) {
        char raw[2048], message[4096];
        va_list ap;

        if (level > max_level || target == LOG_TARGET_NULL)
                return;
        va_start(ap, fmt);
        vsnprintf(raw, sizeof raw, fmt, ap);
        va_end(ap);
        escape_controls(raw, message, sizeof message);

        if (to_journal()) {
                size_t n = 0;
                for (size_t i = 0; fields && fields[i]; i++)
                        n++;
                struct iovec iov[n + 3];
                char msg_field[sizeof message + 8], prio[16], id[48], escaped[n ? n : 1][1024];
                snprintf(msg_field, sizeof msg_field, "MESSAGE=%s", message);
                snprintf(prio, sizeof prio, "PRIORITY=%d", level);
                snprintf(id, sizeof id, "MESSAGE_ID=%s", message_id);
                iov[0] = (struct iovec) { msg_field, strlen(msg_field) };
                iov[1] = (struct iovec) { prio, strlen(prio) };
                iov[2] = (struct iovec) { id, strlen(id) };
                for (size_t i = 0; i < n; i++) {
                        escape_controls(fields[i], escaped[i], sizeof escaped[i]);
                        iov[3 + i] = (struct iovec) { escaped[i], strlen(escaped[i]) };
                }
                if (sd_journal_sendv(iov, (int) (n + 3)) >= 0)
                        return;
        }
        if (target == LOG_TARGET_AUTO && getenv("JOURNAL_STREAM"))
                fprintf(stderr, "<%d>%s\n", level, message);
        else
                fprintf(stderr, "%s\n", message);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "errors.h"
#include "log.h"
#include "util.h"

/* fs.file-max, read at start; 0: unknown. Written before any thread runs. */
static unsigned long long system_file_max;

void bus_error_read_file_limits(void) {
        FILE *f = fopen("/proc/sys/fs/file-max", "re");
        if (!f) {
                log_debug_errno(errno, "Cannot read /proc/sys/fs/file-max, ENFILE errors will not show it: %m");
                return;
        }
        if (fscanf(f, "%llu", &system_file_max) != 1)
                system_file_max = 0;
        fclose(f);
}

/* What to tell the caller and the log after message when the daemon (EMFILE)
 * or the system (ENFILE) has no file left. NULL on allocation failure. */
static char *file_limit_message(int err, const char *message) {
        char *s = NULL;
        int r;

        if (err == EMFILE) {
                struct rlimit rl;
                char limit[32] = "?";

                if (getrlimit(RLIMIT_NOFILE, &rl) >= 0) {
                        if (rl.rlim_cur == RLIM_INFINITY)
                                strcpy(limit, "unlimited");
                        else
                                snprintf(limit, sizeof limit, "%ju", (uintmax_t) rl.rlim_cur);
                }
                r = asprintf(&s,
                             "%s. hotresetd has reached its limit of open files, RLIMIT_NOFILE=%s: each lease holds "
                             "an iommufd or a vfio container and a file per device. Release leases that are no "
                             "longer needed (Context.Release), or raise LimitNOFILE= in hotresetd.service.",
                             message, limit);
        } else if (system_file_max > 0)
                r = asprintf(&s,
                             "%s. The system has reached its limit of open files, fs.file-max=%llu. Close files "
                             "elsewhere or raise fs.file-max (sysctl).",
                             message, system_file_max);
        else
                r = asprintf(&s,
                             "%s. The system has reached its limit of open files (fs.file-max). Close files "
                             "elsewhere or raise fs.file-max (sysctl).",
                             message);
        return r < 0 ? NULL : s;
}

/* A client that retries in a loop must not flood the journal: at most
 * LOG_BURST warnings per LOG_INTERVAL, then one line says how many were
 * left out. */
#define LOG_INTERVAL_NSEC (10ull * 1000000000ull)
#define LOG_BURST 10u

static void log_file_limit(const char *message) {
        static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
        static uint64_t window_start;
        static unsigned in_window, suppressed;
        struct timespec ts;
        uint64_t now;
        unsigned missed = 0;
        bool show;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        now = (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;

        pthread_mutex_lock(&lock);
        if (window_start == 0 || now - window_start >= LOG_INTERVAL_NSEC) {
                window_start = now;
                in_window = 0;
        }
        show = in_window < LOG_BURST;
        if (show) {
                in_window++;
                missed = suppressed;
                suppressed = 0;
        } else
                suppressed++;
        pthread_mutex_unlock(&lock);

        if (!show)
                return;
        if (missed > 0)
                log_warning("Refused for lack of files: %s (%u more such refusals not logged)", message, missed);
        else
                log_warning("Refused for lack of files: %s", message);
}

int bus_error_not_in_dev_set(sd_bus_error *error, const PciDeviceInfo *d, const char *target) {
        char addr[PCI_ADDRESS_STRING_MAX];

        pci_address_format(&d->address, addr);
        if (d->is_bridge)
                return sd_bus_error_setf(error, BUS_ERROR_NOT_IN_DEV_SET,
                                         "%s blocks a hot reset of %s: it is a bridge inside the reset scope, and "
                                         "bridges cannot be bound to vfio-pci.",
                                         addr, target);
        if (!driver_is_vfio(d->driver))
                return sd_bus_error_setf(error, BUS_ERROR_NOT_IN_DEV_SET,
                                         "%s blocks a hot reset of %s: it is %s%s, not a vfio driver; bind it to "
                                         "vfio-pci.",
                                         addr, target, d->driver ? "bound to " : "", d->driver ?: "unbound");
        if (d->iommu_group < 0)
                return sd_bus_error_setf(error, BUS_ERROR_GROUP_NOT_VIABLE,
                                         "%s blocks a hot reset of %s: it is in no IOMMU group, so no context can own "
                                         "it; enable the IOMMU (intel_iommu=on / amd_iommu=on).",
                                         addr, target);
        return 0;
}

int bus_error_kernel(sd_bus_error *error, int err, const char *fmt, ...) {
        _cleanup_free_ char *message = NULL;
        va_list ap;

        err = abs(err);
        va_start(ap, fmt);
        if (vasprintf(&message, fmt, ap) < 0)
                message = NULL;
        va_end(ap);

        if (err == EMFILE || err == ENFILE) {
                _cleanup_free_ char *full = file_limit_message(err, message ?: strerror(err));
                log_file_limit(full ?: message ?: strerror(err));
                (void) sd_bus_error_set(error, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                        full ?: message ?: "hotresetd has run out of open files.");
                return -err;
        }
        (void) sd_bus_error_set(error, err == ENOMEM ? SD_BUS_ERROR_NO_MEMORY : SD_BUS_ERROR_FAILED,
                                message ?: "A kernel call failed.");
        return -err;
}

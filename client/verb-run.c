/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl run --device ADDRESS... -- COMMAND [ARGS...]: lease devices
 * for a VMM and become it.
 *
 * The lease is tied to this process (CreateContext's Pid, a pidfd of our
 * own pid), the devices are attached unbound (QEMU binds a vfio cdev
 * itself and cannot use one that is bound), and the context's iommufd and
 * the device files are left open without close-on-exec; then COMMAND is
 * executed in this same process. So the lease lasts exactly as long as
 * COMMAND runs, whoever else comes and goes, and COMMAND's exit status (or
 * the signal that ended it) is what the caller sees, because it is this
 * process's. The file numbers are in the environment:
 *
 *   HOTRESETD_IOMMUFD                 the context's iommufd
 *   HOTRESETD_DEVICE_0000_01_00_0     each device's file (: and . as _)
 *   HOTRESETD_DEVICES                 "0000:01:00.0=7 0000:01:00.1=8"
 *   HOTRESETD_CONTEXT                 the context's object path
 *
 * The group model has no such files for QEMU: its vfio-pci takes fd= only
 * for a cdev and opens /dev/vfio/N itself otherwise, which the daemon's
 * hold on the group would make fail (EBUSY). run refuses it, saying so. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bus.h"
#include "hotresetctl.h"
#include "output.h"

#define MAX_DEVICES 32

static char *arg_devices[MAX_DEVICES];
static size_t arg_n_devices;
static const char *arg_description;

static const struct option options[] = {
        { "device", required_argument, NULL, ARG_DEVICE },
        { "description", required_argument, NULL, ARG_DESCRIPTION },
        {},
};

static int parse_option(int c, const char *arg) {
        char address[PCI_ADDRESS_STRING_MAX];

        switch (c) {
        case ARG_DEVICE:
                if (parse_address_arg(arg, address) < 0)
                        return -EINVAL;
                for (size_t i = 0; i < arg_n_devices; i++)
                        if (streq(arg_devices[i], address))
                                return usage_error("run: %s is given twice", address);
                if (arg_n_devices == MAX_DEVICES)
                        return usage_error("run: at most %d devices", MAX_DEVICES);
                arg_devices[arg_n_devices] = strdup(address);
                if (!arg_devices[arg_n_devices])
                        return -ENOMEM;
                arg_n_devices++;
                return 0;
        case ARG_DESCRIPTION:
                arg_description = arg;
                return 0;
        }
        return usage_error("unhandled option");
}

/* A file the reply carries, as a descriptor of ours that COMMAND inherits. */
static int take_fd(sd_bus_message *reply, const char *what) {
        int fd, r;

        r = sd_bus_message_read(reply, "h", &fd);
        if (r < 0)
                return bus_log_error(NULL, r, "read the file of %s", what);
        /* Above stdin, stdout and stderr, without close-on-exec. */
        int copy = fcntl(fd, F_DUPFD, 3);
        if (copy < 0)
                return bus_log_error(NULL, -errno, "keep the file of %s", what);
        return copy;
}

static int setenv_fd(const char *name, int fd) {
        char value[16];
        snprintf(value, sizeof value, "%d", fd);
        return setenv(name, value, 1) < 0 ? -errno : 0;
}

static int run(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_free_ char *context = NULL, *backend = NULL, *description = NULL, *listing = NULL;
        _cleanup_close_ int pidfd = -1;
        const char *path;
        int r;

        if (arg_n_devices == 0)
                return usage_error("run: no --device given"), EXIT_USAGE;

        r = bus_open(&bus);
        if (r < 0)
                return EXIT_ERROR;

        r = sd_bus_get_property_string(bus, BUS_NAME, ROOT_PATH, MANAGER_IFACE, "Backend", &error, &backend);
        if (r < 0)
                return bus_log_error(&error, r, "read the daemon's backend"), EXIT_ERROR;
        if (!strstr(backend, "iommufd")) {
                fprintf(stderr,
                        "%s: the daemon uses the %s backend (legacy vfio groups): a VMM can take a vfio device "
                        "file only as a cdev (QEMU: -device vfio-pci,fd=N needs the iommufd model), and QEMU "
                        "opening /dev/vfio/N itself fails while the daemon holds the group. Use a kernel with "
                        "CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV.\n",
                        program_invocation_short_name, backend);
                return EXIT_ERROR;
        }

        /* Said on stderr: stdout is COMMAND's. */
        if (strncmp(backend, "emulated-", strlen("emulated-")) == 0 && arg_legend && !arg_json)
                fprintf(stderr, "%s: emulated machine: the device files COMMAND gets are placeholders, no real "
                        "device is touched.\n", program_invocation_short_name);

        /* The lease lasts as long as this process: COMMAND, once exec'ed. */
        pidfd = (int) syscall(SYS_pidfd_open, getpid(), 0);
        if (pidfd < 0)
                return bus_log_error(NULL, -errno, "open a pidfd of this process"), EXIT_ERROR;
        if (!arg_description && asprintf(&description, "hotresetctl run %s", argv[0]) < 0)
                return EXIT_ERROR;

        r = sd_bus_message_new_method_call(bus, &m, BUS_NAME, ROOT_PATH, MANAGER_IFACE, "CreateContext");
        if (r >= 0)
                r = sd_bus_message_append(m, "a{sv}", 2, "Pid", "h", pidfd, "Description", "s",
                                          arg_description ?: description);
        if (r < 0)
                return bus_log_error(NULL, r, "create a context"), EXIT_ERROR;
        r = sd_bus_call(bus, m, 0, &error, &reply);
        if (r < 0)
                return bus_log_error(&error, r, "create a context"), EXIT_ERROR;
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0 || !(context = strdup(path)))
                return bus_log_error(NULL, r < 0 ? r : -ENOMEM, "read the context"), EXIT_ERROR;
        reply = sd_bus_message_unref(reply);

        /* From here, a failure leaves nothing behind: the lease ends with
         * this process, and is released at once to say so sooner. */
        for (size_t i = 0; i < arg_n_devices; i++) {
                r = sd_bus_call_method(bus, BUS_NAME, context, CONTEXT_IFACE, "AttachDevice", &error, NULL,
                                       "sa{sv}", arg_devices[i], 1, "Bind", "b", 0);
                if (r < 0)
                        goto fail_call;
        }

        r = sd_bus_call_method(bus, BUS_NAME, context, CONTEXT_IFACE, "OpenIommufd", &error, &reply, NULL);
        if (r < 0)
                goto fail_call;
        int iommufd = take_fd(reply, "the iommufd");
        reply = sd_bus_message_unref(reply);
        if (iommufd < 0 || setenv_fd("HOTRESETD_IOMMUFD", iommufd) < 0)
                goto fail;

        for (size_t i = 0; i < arg_n_devices; i++) {
                char name[64];
                r = sd_bus_call_method(bus, BUS_NAME, context, CONTEXT_IFACE, "OpenDevice", &error, &reply, "s",
                                       arg_devices[i]);
                if (r < 0)
                        goto fail_call;
                int fd = take_fd(reply, arg_devices[i]);
                reply = sd_bus_message_unref(reply);
                if (fd < 0)
                        goto fail;
                snprintf(name, sizeof name, "HOTRESETD_DEVICE_%s", arg_devices[i]);
                for (char *p = name; *p; p++)
                        if (*p == ':' || *p == '.')
                                *p = '_';
                char *more = NULL;
                if (setenv_fd(name, fd) < 0 ||
                    asprintf(&more, "%s%s%s=%d", strempty(listing), listing ? " " : "", arg_devices[i], fd) < 0)
                        goto fail;
                free(listing);
                listing = more;
        }
        if (setenv("HOTRESETD_DEVICES", listing, 1) < 0 || setenv("HOTRESETD_CONTEXT", context, 1) < 0)
                goto fail;

        /* The connection goes with the exec; the lease does not. */
        bus = sd_bus_flush_close_unref(bus);
        pidfd = safe_close(pidfd);
        execvp(argv[0], argv);
        fprintf(stderr, "%s: cannot execute %s: %s\n", program_invocation_short_name, argv[0], strerror(errno));
        return errno == ENOENT ? 127 : 126;

fail_call:
        bus_log_error(&error, r, "prepare %s", context_short_name(context));
fail:
        if (bus)
                (void) sd_bus_call_method(bus, BUS_NAME, context, CONTEXT_IFACE, "Release", NULL, NULL, NULL);
        return EXIT_ERROR;
}

const Verb verb_run = {
        .name = "run",
        .synopsis = "--device=ADDRESS... [--description=TEXT] -- COMMAND [ARGS...]",
        .summary = "Lease devices for a VMM and run it on their files",
        .help = "Creates a lease tied to this process, attaches the devices unbound (a VMM binds\n"
                "them itself), opens the iommufd and the device files, and executes COMMAND\n"
                "in this same process with the files inherited. The lease ends when COMMAND\n"
                "exits; its exit status (or signal) is the caller's. The iommufd model only.\n\n"
                "  --device=ADDRESS    A device to lease (repeat for more)\n"
                "  --description=TEXT  Describe the context (default: hotresetctl run COMMAND)\n\n"
                "Environment of COMMAND: HOTRESETD_IOMMUFD=N, HOTRESETD_DEVICE_0000_01_00_0=M\n"
                "(each device, ':' and '.' as '_'), HOTRESETD_DEVICES=\"0000:01:00.0=M ...\",\n"
                "HOTRESETD_CONTEXT=the context's path. For example:\n\n"
                "  hotresetctl run --device=01:00.0 -- sh -c 'exec qemu-system-x86_64 ... \\\n"
                "      -object iommufd,id=i0,fd=$HOTRESETD_IOMMUFD \\\n"
                "      -device vfio-pci,iommufd=i0,fd=$HOTRESETD_DEVICE_0000_01_00_0'\n",
        .min_args = 1,
        .max_args = UINT_MAX,
        .options = options,
        .parse_option = parse_option,
        .run = run,
        .interactive = true,
};

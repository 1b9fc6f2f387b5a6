/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "backend-emulated.h"
#include "log.h"
#include "test-util.h"
#include "util.h"

/* Every event as one line "ACTION ADDRESS DRIVER CDEV GROUP", "-" for
 * none, CDEV shortened to the node name ("vfio0"), so a whole sequence is
 * asserted with one string compare. The infos are kept too, for the fields
 * the line leaves out. */
typedef struct Recorder {
        Backend *backend;
        char *log;
        size_t log_size;
        char *taken; /* what recorder_take() returned last */
        FILE *f;
        PciDeviceInfo infos[64];
        BackendAction actions[64];
        size_t n;
} Recorder;

static void recorder_clear_infos(Recorder *rec) {
        for (size_t i = 0; i < rec->n; i++)
                pci_device_info_done(&rec->infos[i]);
        rec->n = 0;
}

static void recorder_init(Recorder *rec) {
        *rec = (Recorder) {};
        rec->f = open_memstream(&rec->log, &rec->log_size);
        ASSERT_TRUE(rec->f);
}

static void recorder_done(Recorder *rec) {
        if (rec->f)
                fclose(rec->f);
        rec->f = NULL;
        free(rec->log);
        rec->log = NULL;
        free(rec->taken);
        rec->taken = NULL;
        recorder_clear_infos(rec);
}

static void on_event(Backend *b, BackendAction action, const PciDeviceInfo *info, void *userdata) {
        Recorder *rec = userdata;
        char buf[PCI_ADDRESS_STRING_MAX];
        const char *cdev = info->cdev_path ? strrchr(info->cdev_path, '/') + 1 : "-";

        /* The backend passes itself once it exists (not during _new()). */
        ASSERT_TRUE(!rec->backend || b == rec->backend);
        ASSERT_TRUE(rec->n < ELEMENTSOF(rec->infos));
        /* UNBIND and REMOVE describe the device without a driver. */
        if (action == BACKEND_UNBIND || action == BACKEND_REMOVE || action == BACKEND_ADD) {
                ASSERT_TRUE(!info->driver);
                ASSERT_TRUE(!info->cdev_path);
        }
        if (action == BACKEND_BIND)
                ASSERT_TRUE(info->driver);

        fprintf(rec->f, "%s %s %s %s %d\n", backend_action_to_string(action), pci_address_format(&info->address, buf),
                info->driver ?: "-", cdev, info->iommu_group);
        ASSERT_INT_EQ(pci_device_info_copy(&rec->infos[rec->n], info), 0);
        rec->actions[rec->n++] = action;
}

/* The events since the last call, as text. The infos stay until
 * recorder_clear_infos(). */
static const char *recorder_take(Recorder *rec) {
        ASSERT_INT_EQ(fflush(rec->f), 0);
        free(rec->taken);
        rec->taken = strdup(rec->log ?: "");
        ASSERT_TRUE(rec->taken);
        fclose(rec->f);
        free(rec->log);
        rec->log = NULL;
        rec->f = open_memstream(&rec->log, &rec->log_size);
        ASSERT_TRUE(rec->f);
        return rec->taken;
}

typedef struct Env {
        char dir[256];
        char path[300];
        sd_event *event;
        Backend *backend;
        Recorder rec;
} Env;

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");
        ASSERT_TRUE(f);
        ASSERT_INT_EQ(fputs(text, f) >= 0, 1);
        ASSERT_INT_EQ(fclose(f), 0);
}

/* The normal update: write a new file and rename it over the old one. */
static void replace_file(Env *env, const char *text) {
        char tmp[320];

        snprintf(tmp, sizeof tmp, "%s/.machine.json.tmp", env->dir);
        write_file(tmp, text);
        ASSERT_INT_EQ(rename(tmp, env->path), 0);
}

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

/* Runs the loop until the backend has looked at the file n more times (5s
 * at most), then a little longer to catch anything that should not come. */
static void run_until_updates(Env *env, unsigned n) {
        unsigned target = backend_emulated_get_n_updates(env->backend) + n;
        uint64_t deadline = now_usec() + 5 * 1000000u;

        while (backend_emulated_get_n_updates(env->backend) < target) {
                if (now_usec() > deadline) {
                        fprintf(stderr, "timed out waiting for the backend to see the update\n");
                        exit(1);
                }
                ASSERT_TRUE(sd_event_run(env->event, 100 * 1000) >= 0);
        }
        for (int i = 0; i < 5; i++)
                ASSERT_TRUE(sd_event_run(env->event, 2 * 1000) >= 0);
        ASSERT_INT_EQ(backend_emulated_get_n_updates(env->backend), target);
}

/* Rewrites the machine file and returns the events it caused. */
static const char *update(Env *env, const char *text) {
        recorder_clear_infos(&env->rec);
        replace_file(env, text);
        run_until_updates(env, 1);
        return recorder_take(&env->rec);
}

static void env_setup(Env *env, const char *text) {
        *env = (Env) {};
        snprintf(env->dir, sizeof env->dir, "%s/test-backend-emulated-XXXXXX", getenv("TMPDIR") ?: "/tmp");
        ASSERT_TRUE(mkdtemp(env->dir));
        snprintf(env->path, sizeof env->path, "%s/machine.json", env->dir);
        write_file(env->path, text);
        ASSERT_INT_EQ(sd_event_new(&env->event), 0);
        recorder_init(&env->rec);
}

static void env_start(Env *env) {
        ASSERT_INT_EQ(backend_emulated_new(env->event, env->path, on_event, &env->rec, &env->backend), 0);
        env->rec.backend = env->backend;
        /* Nothing is delivered before start(). */
        ASSERT_INT_EQ(env->rec.n, 0);
        ASSERT_TRUE(!backend_emulated_get_machine(env->backend));
        ASSERT_INT_EQ(backend_start(env->backend), 0);
}

static void env_done(Env *env) {
        char p[320];

        backend_free(env->backend);
        sd_event_unref(env->event);
        recorder_done(&env->rec);
        unlink(env->path);
        snprintf(p, sizeof p, "%s/.machine.json.tmp", env->dir);
        unlink(p);
        snprintf(p, sizeof p, "%s/other.json", env->dir);
        unlink(p);
        ASSERT_INT_EQ(rmdir(env->dir), 0);
}

static const char *cdev_of(const Backend *b, const char *address) {
        PciAddress a;
        const PciDeviceInfo *d;

        ASSERT_INT_EQ(pci_address_parse(address, &a), 0);
        d = machine_find(backend_emulated_get_machine((Backend *) b), &a);
        ASSERT_TRUE(d);
        return d->cdev_path;
}

/* The machine the scenarios start from, and pieces to vary it. */
#define BRIDGE "{\"address\": \"00:1c.0\", \"driver\": \"pcieport\", \"iommu_group\": 1, \"bridge\": {\"secondary_bus\": 1}}"
#define GPU(driver) "{\"address\": \"01:00.0\", \"vendor\": \"0x10de\", \"device\": \"0x2204\", \"driver\": " driver ", \"iommu_group\": 14, \"reset_methods\": [\"bus\"]}"
#define AUDIO(driver, group) "{\"address\": \"01:00.1\", \"vendor\": \"0x10de\", \"device\": \"0x1aef\", \"driver\": " driver ", \"iommu_group\": " group "}"
#define NIC(driver) "{\"address\": \"02:00.0\", \"driver\": " driver ", \"iommu_group\": 15}"
#define DISK(driver) "{\"address\": \"03:00.0\", \"vendor\": \"0x144d\", \"driver\": " driver ", \"iommu_group\": 16}"
/* {"devices": [DEV, DEV, ...]}, in a buffer that the next call reuses. */
static const char *machine_text(const char *dev, ...) __attribute__((sentinel));
static const char *machine_text(const char *dev, ...) {
        static char buf[4096];
        size_t n = 0;
        va_list ap;

        n += (size_t) snprintf(buf, sizeof buf, "{\"devices\": [%s", dev);
        va_start(ap, dev);
        for (const char *d = va_arg(ap, const char *); d; d = va_arg(ap, const char *))
                n += (size_t) snprintf(buf + n, sizeof buf - n, ",\n  %s", d);
        va_end(ap);
        n += (size_t) snprintf(buf + n, sizeof buf - n, "]}\n");
        ASSERT_TRUE(n < sizeof buf);
        return buf;
}
#define MACHINE(...) machine_text(__VA_ARGS__, NULL)

TEST(test_start) {
        Env env;
        const Machine *m;

        env_setup(&env, MACHINE(DISK("null"), NIC("\"vfio-pci\""), AUDIO("\"snd_hda_intel\"", "14"),
                                GPU("\"vfio-pci\""), BRIDGE));
        env_start(&env);

        ASSERT_STR_EQ(env.backend->name, "emulated-iommufd");
        ASSERT_TRUE(env.backend->emulated);
        ASSERT_TRUE(env.backend->cdev);

        /* Address order; each device added unbound, then bound; vfio-dev
         * numbers handed out in that order. */
        ASSERT_STR_EQ(recorder_take(&env.rec),
                      "add 0000:00:1c.0 - - 1\n"
                      "bind 0000:00:1c.0 pcieport - 1\n"
                      "add 0000:01:00.0 - - 14\n"
                      "bind 0000:01:00.0 vfio-pci vfio0 14\n"
                      "add 0000:01:00.1 - - 14\n"
                      "bind 0000:01:00.1 snd_hda_intel - 14\n"
                      "add 0000:02:00.0 - - 15\n"
                      "bind 0000:02:00.0 vfio-pci vfio1 15\n"
                      "add 0000:03:00.0 - - 16\n");

        m = backend_emulated_get_machine(env.backend);
        ASSERT_TRUE(m);
        ASSERT_INT_EQ(m->n_devices, 5);
        ASSERT_STR_EQ(cdev_of(env.backend, "01:00.0"), "/dev/vfio/devices/vfio0");
        ASSERT_STR_EQ(cdev_of(env.backend, "02:00.0"), "/dev/vfio/devices/vfio1");
        ASSERT_TRUE(!cdev_of(env.backend, "01:00.1"));
        ASSERT_TRUE(!cdev_of(env.backend, "03:00.0"));

        /* start() twice is a bug, not a second delivery. */
        ASSERT_INT_EQ(backend_start(env.backend), -EBUSY);
        ASSERT_STR_EQ(recorder_take(&env.rec), "");

        /* The same file again: nothing changed, nothing delivered. */
        ASSERT_STR_EQ(update(&env, MACHINE(BRIDGE, GPU("\"vfio-pci\""), AUDIO("\"snd_hda_intel\"", "14"),
                                           NIC("\"vfio-pci\""), DISK("null"))),
                      "");
        env_done(&env);
}

TEST(test_hotplug) {
        Env env;

        env_setup(&env, MACHINE(BRIDGE, GPU("\"vfio-pci\""), AUDIO("\"snd_hda_intel\"", "14")));
        env_start(&env);
        (void) recorder_take(&env.rec);

        /* A bound device appears. */
        ASSERT_STR_EQ(update(&env, MACHINE(BRIDGE, GPU("\"vfio-pci\""), AUDIO("\"snd_hda_intel\"", "14"),
                                           NIC("\"vfio-pci\""))),
                      "add 0000:02:00.0 - - 15\n"
                      "bind 0000:02:00.0 vfio-pci vfio1 15\n");

        /* A bound device goes: its driver unbinds first; vfio0 is free again. */
        ASSERT_STR_EQ(update(&env, MACHINE(BRIDGE, AUDIO("\"snd_hda_intel\"", "14"), NIC("\"vfio-pci\""))),
                      "unbind 0000:01:00.0 - - 14\n"
                      "remove 0000:01:00.0 - - 14\n");

        /* Two devices come, an unbound one and one that takes the lowest
         * free vfio-dev number. */
        ASSERT_STR_EQ(update(&env, MACHINE(BRIDGE, AUDIO("\"snd_hda_intel\"", "14"), NIC("\"vfio-pci\""),
                                           DISK("\"vfio-pci\""), "{\"address\": \"04:00.0\"}")),
                      "add 0000:03:00.0 - - 16\n"
                      "bind 0000:03:00.0 vfio-pci vfio0 16\n"
                      "add 0000:04:00.0 - - -1\n");

        /* The bridge goes with everything below it: children first, in
         * reverse address order; devices on other buses stay. */
        ASSERT_STR_EQ(update(&env, MACHINE(NIC("\"vfio-pci\""), DISK("\"vfio-pci\""), "{\"address\": \"04:00.0\"}")),
                      "unbind 0000:01:00.1 - - 14\n"
                      "remove 0000:01:00.1 - - 14\n"
                      "unbind 0000:00:1c.0 - - 1\n"
                      "remove 0000:00:1c.0 - - 1\n");

        /* Removals come before additions, whatever the addresses. */
        ASSERT_STR_EQ(update(&env, MACHINE(BRIDGE, NIC("\"vfio-pci\""), DISK("\"vfio-pci\""))),
                      "remove 0000:04:00.0 - - -1\n"
                      "add 0000:00:1c.0 - - 1\n"
                      "bind 0000:00:1c.0 pcieport - 1\n");

        ASSERT_INT_EQ(backend_emulated_get_machine(env.backend)->n_devices, 3);
        env_done(&env);
}

TEST(test_bind_unbind) {
        Env env;

        env_setup(&env, MACHINE(GPU("\"vfio-pci\""), AUDIO("\"snd_hda_intel\"", "14"), NIC("\"vfio-pci\""),
                                DISK("null")));
        env_start(&env);
        ASSERT_STR_EQ(recorder_take(&env.rec),
                      "add 0000:01:00.0 - - 14\n"
                      "bind 0000:01:00.0 vfio-pci vfio0 14\n"
                      "add 0000:01:00.1 - - 14\n"
                      "bind 0000:01:00.1 snd_hda_intel - 14\n"
                      "add 0000:02:00.0 - - 15\n"
                      "bind 0000:02:00.0 vfio-pci vfio1 15\n"
                      "add 0000:03:00.0 - - 16\n");

        /* Unbind frees vfio0 ... */
        ASSERT_STR_EQ(update(&env, MACHINE(GPU("null"), AUDIO("\"snd_hda_intel\"", "14"), NIC("\"vfio-pci\""),
                                           DISK("null"))),
                      "unbind 0000:01:00.0 - - 14\n");
        ASSERT_TRUE(!cdev_of(env.backend, "01:00.0"));
        ASSERT_STR_EQ(cdev_of(env.backend, "02:00.0"), "/dev/vfio/devices/vfio1");

        /* ... which the next vfio bind gets; a driver that is not vfio
         * gets no node. */
        ASSERT_STR_EQ(update(&env, MACHINE(GPU("\"nouveau\""), AUDIO("\"snd_hda_intel\"", "14"), NIC("\"vfio-pci\""),
                                           DISK("\"vfio-pci\""))),
                      "bind 0000:01:00.0 nouveau - 14\n"
                      "bind 0000:03:00.0 vfio-pci vfio0 16\n");

        /* Rebinding to another driver is an unbind and a bind; the audio
         * function takes the lowest free number, vfio2. */
        ASSERT_STR_EQ(update(&env, MACHINE(GPU("\"nouveau\""), AUDIO("\"vfio-pci\"", "14"), NIC("\"vfio-pci\""),
                                           DISK("\"vfio-pci\""))),
                      "unbind 0000:01:00.1 - - 14\n"
                      "bind 0000:01:00.1 vfio-pci vfio2 14\n");

        /* Between two vfio drivers the node is released and taken again:
         * the lowest free one, here the one just released. */
        ASSERT_STR_EQ(update(&env, MACHINE(GPU("\"nouveau\""), AUDIO("\"vfio-pci\"", "14"),
                                           NIC("\"mlx5_vfio_pci\""), DISK("\"vfio-pci\""))),
                      "unbind 0000:02:00.0 - - 15\n"
                      "bind 0000:02:00.0 mlx5_vfio_pci vfio1 15\n");

        /* Several changes in one update happen in address order: 01:00.0
         * binds first and takes vfio3, only then 01:00.1 releases vfio2. */
        ASSERT_STR_EQ(update(&env, MACHINE(GPU("\"vfio-pci\""), AUDIO("null", "14"), NIC("\"mlx5_vfio_pci\""),
                                           DISK("\"vfio-pci\""))),
                      "unbind 0000:01:00.0 - - 14\n"
                      "bind 0000:01:00.0 vfio-pci vfio3 14\n"
                      "unbind 0000:01:00.1 - - 14\n");
        ASSERT_STR_EQ(cdev_of(env.backend, "01:00.0"), "/dev/vfio/devices/vfio3");
        ASSERT_STR_EQ(cdev_of(env.backend, "02:00.0"), "/dev/vfio/devices/vfio1");
        ASSERT_STR_EQ(cdev_of(env.backend, "03:00.0"), "/dev/vfio/devices/vfio0");
        ASSERT_TRUE(!cdev_of(env.backend, "01:00.1"));

        /* Bound devices keep their node across unrelated updates. */
        ASSERT_STR_EQ(update(&env, MACHINE(GPU("\"vfio-pci\""), AUDIO("\"vfio-pci\"", "14"), NIC("\"mlx5_vfio_pci\""),
                                           DISK("\"vfio-pci\""))),
                      "bind 0000:01:00.1 vfio-pci vfio2 14\n");
        ASSERT_STR_EQ(cdev_of(env.backend, "01:00.0"), "/dev/vfio/devices/vfio3");
        env_done(&env);
}

TEST(test_change) {
        Env env;
        const PciDeviceInfo *i;

        env_setup(&env, MACHINE(BRIDGE, GPU("\"vfio-pci\""), AUDIO("\"snd_hda_intel\"", "14")));
        env_start(&env);
        (void) recorder_take(&env.rec);

        /* The group changes: one CHANGE with the whole device. */
        ASSERT_STR_EQ(update(&env, MACHINE(BRIDGE, GPU("\"vfio-pci\""), AUDIO("\"snd_hda_intel\"", "20"))),
                      "change 0000:01:00.1 snd_hda_intel - 20\n");
        /* Reset methods change; the CHANGE carries the cdev path. */
        ASSERT_STR_EQ(update(&env, MACHINE(BRIDGE,
                                           "{\"address\": \"01:00.0\", \"vendor\": \"0x10de\", \"device\": \"0x2204\", "
                                           "\"driver\": \"vfio-pci\", \"iommu_group\": 14, \"reset_methods\": [\"flr\", "
                                           "\"bus\"]}",
                                           AUDIO("\"snd_hda_intel\"", "20"))),
                      "change 0000:01:00.0 vfio-pci vfio0 14\n");
        i = &env.rec.infos[0];
        ASSERT_INT_EQ(env.rec.actions[0], BACKEND_CHANGE);
        ASSERT_INT_EQ(strv_length(i->reset_methods), 2);
        ASSERT_STR_EQ(i->reset_methods[0], "flr");
        ASSERT_STR_EQ(i->reset_methods[1], "bus");
        ASSERT_INT_EQ(i->vendor_id, 0x10de);
        ASSERT_INT_EQ(i->device_id, 0x2204);
        ASSERT_STR_EQ(i->cdev_path, "/dev/vfio/devices/vfio0");

        /* The bridge's slot reset changes (and the GPU's reset methods go
         * back to ["bus"]: two devices, two CHANGEs in address order). */
        ASSERT_STR_EQ(update(&env, MACHINE("{\"address\": \"00:1c.0\", \"driver\": \"pcieport\", \"iommu_group\": 1, "
                                           "\"bridge\": {\"secondary_bus\": 1, \"slot_reset\": true}}",
                                           GPU("\"vfio-pci\""), AUDIO("\"snd_hda_intel\"", "20"))),
                      "change 0000:00:1c.0 pcieport - 1\n"
                      "change 0000:01:00.0 vfio-pci vfio0 14\n");
        ASSERT_TRUE(env.rec.infos[0].is_bridge);
        ASSERT_TRUE(env.rec.infos[0].slot_reset);
        ASSERT_INT_EQ(env.rec.infos[0].secondary_bus, 1);
        ASSERT_INT_EQ(env.rec.infos[0].class_code, 0x060400);
        ASSERT_INT_EQ(strv_length(env.rec.infos[1].reset_methods), 1);
        ASSERT_STR_EQ(env.rec.infos[1].reset_methods[0], "bus");

        /* A driver change and a group change together: the BIND shows the
         * device as it was with the new driver, the CHANGE the rest. */
        ASSERT_STR_EQ(update(&env, MACHINE(BRIDGE, GPU("\"vfio-pci\""), AUDIO("\"vfio-pci\"", "null"))),
                      "change 0000:00:1c.0 pcieport - 1\n"
                      "unbind 0000:01:00.1 - - 20\n"
                      "bind 0000:01:00.1 vfio-pci vfio1 20\n"
                      "change 0000:01:00.1 vfio-pci vfio1 -1\n");
        ASSERT_TRUE(!env.rec.infos[0].slot_reset);
        ASSERT_STR_EQ(env.rec.infos[3].cdev_path, "/dev/vfio/devices/vfio1");
        env_done(&env);
}

TEST(test_hardware_change) {
        Env env;

        env_setup(&env, MACHINE(BRIDGE, GPU("\"vfio-pci\""), AUDIO("\"snd_hda_intel\"", "14"), NIC("\"vfio-pci\"")));
        env_start(&env);
        (void) recorder_take(&env.rec);

        /* Another card at 01:00.0: udev sees a remove and an add. The new
         * card binds after 02:00.0 kept vfio1, so it gets vfio0 back. */
        ASSERT_STR_EQ(update(&env, MACHINE(BRIDGE,
                                           "{\"address\": \"01:00.0\", \"vendor\": \"0x1002\", \"device\": \"0x73bf\", "
                                           "\"driver\": \"vfio-pci\", \"iommu_group\": 14}",
                                           AUDIO("\"snd_hda_intel\"", "14"), NIC("\"vfio-pci\""))),
                      "unbind 0000:01:00.0 - - 14\n"
                      "remove 0000:01:00.0 - - 14\n"
                      "add 0000:01:00.0 - - 14\n"
                      "bind 0000:01:00.0 vfio-pci vfio0 14\n");
        ASSERT_INT_EQ(env.rec.infos[1].vendor_id, 0x10de); /* the old card goes */
        ASSERT_INT_EQ(env.rec.infos[2].vendor_id, 0x1002); /* the new one comes */
        ASSERT_INT_EQ(env.rec.infos[2].device_id, 0x73bf);
        ASSERT_TRUE(!env.rec.infos[2].reset_methods);

        /* The class alone is enough; an unbound card has no unbind. */
        ASSERT_STR_EQ(update(&env, MACHINE(BRIDGE,
                                           "{\"address\": \"01:00.0\", \"vendor\": \"0x1002\", \"device\": \"0x73bf\", "
                                           "\"driver\": \"vfio-pci\", \"iommu_group\": 14}",
                                           "{\"address\": \"01:00.1\", \"vendor\": \"0x10de\", \"device\": \"0x1aef\", "
                                           "\"class\": \"0x040300\", \"iommu_group\": 14}",
                                           NIC("\"vfio-pci\""))),
                      "unbind 0000:01:00.1 - - 14\n"
                      "remove 0000:01:00.1 - - 14\n"
                      "add 0000:01:00.1 - - 14\n");
        ASSERT_INT_EQ(env.rec.infos[2].class_code, 0x040300);

        /* A device that becomes a bridge is new hardware too. */
        ASSERT_STR_EQ(update(&env, MACHINE(BRIDGE,
                                           "{\"address\": \"01:00.0\", \"vendor\": \"0x1002\", \"device\": \"0x73bf\", "
                                           "\"driver\": \"vfio-pci\", \"iommu_group\": 14}",
                                           "{\"address\": \"01:00.1\", \"vendor\": \"0x10de\", \"device\": \"0x1aef\", "
                                           "\"class\": \"0x040300\", \"iommu_group\": 14}",
                                           "{\"address\": \"02:00.0\", \"driver\": \"pcieport\", \"iommu_group\": 15, "
                                           "\"bridge\": {\"secondary_bus\": 3}}")),
                      "unbind 0000:02:00.0 - - 15\n"
                      "remove 0000:02:00.0 - - 15\n"
                      "add 0000:02:00.0 - - 15\n"
                      "bind 0000:02:00.0 pcieport - 15\n");
        ASSERT_TRUE(env.rec.infos[2].is_bridge);
        ASSERT_INT_EQ(env.rec.infos[2].secondary_bus, 3);
        env_done(&env);
}

TEST(test_bad_update) {
        char tmpdir[320];
        Env env;
        const Machine *m;

        env_setup(&env, MACHINE(GPU("\"vfio-pci\""), AUDIO("\"snd_hda_intel\"", "14")));
        env_start(&env);
        (void) recorder_take(&env.rec);

        /* A syntax error, then a semantic one: nothing is delivered and the
         * machine stays. */
        ASSERT_STR_EQ(update(&env, "{\"devices\": [" GPU("null") ",]}"), "");
        ASSERT_STR_EQ(update(&env, MACHINE(GPU("null"), "{\"address\": \"01:00.1\", \"iommu_grup\": 3}")), "");
        /* So is a file that cannot be read (a directory renamed over it):
         * it is not a machine without devices. */
        snprintf(tmpdir, sizeof tmpdir, "%s/.machine.json.tmp", env.dir);
        ASSERT_INT_EQ(unlink(env.path), 0);
        ASSERT_INT_EQ(mkdir(tmpdir, 0755), 0);
        ASSERT_INT_EQ(rename(tmpdir, env.path), 0);
        run_until_updates(&env, 1);
        ASSERT_STR_EQ(recorder_take(&env.rec), "");
        ASSERT_INT_EQ(rmdir(env.path), 0);

        m = backend_emulated_get_machine(env.backend);
        ASSERT_INT_EQ(m->n_devices, 2);
        ASSERT_STR_EQ(m->devices[0].driver, "vfio-pci");
        ASSERT_STR_EQ(m->devices[0].cdev_path, "/dev/vfio/devices/vfio0");
        ASSERT_STR_EQ(m->devices[1].driver, "snd_hda_intel");

        /* The next good file is compared with the last good one: the audio
         * function goes and the GPU unbinds (which the bad files said too,
         * without effect). */
        ASSERT_STR_EQ(update(&env, MACHINE(GPU("null"))),
                      "unbind 0000:01:00.1 - - 14\n"
                      "remove 0000:01:00.1 - - 14\n"
                      "unbind 0000:01:00.0 - - 14\n");
        ASSERT_INT_EQ(backend_emulated_get_machine(env.backend)->n_devices, 1);
        env_done(&env);
}

TEST(test_cdev_change_rejected) {
        Env env;

        env_setup(&env, MACHINE(GPU("\"vfio-pci\"")));
        env_start(&env);
        (void) recorder_take(&env.rec);

        /* The uAPI model is fixed at start: the file saying cdev false is
         * rejected as a whole (test_group_model has the other direction). */
        ASSERT_STR_EQ(update(&env, "{\"cdev\": false, \"devices\": [" GPU("null") "]}"), "");
        ASSERT_STR_EQ(backend_emulated_get_machine(env.backend)->devices[0].driver, "vfio-pci");
        ASSERT_TRUE(env.backend->cdev);
        ASSERT_STR_EQ(env.backend->name, "emulated-iommufd");

        /* Explicit true is the same model as the default. */
        ASSERT_STR_EQ(update(&env, "{\"cdev\": true, \"devices\": [" GPU("null") "]}"),
                      "unbind 0000:01:00.0 - - 14\n");
        env_done(&env);
}

TEST(test_group_model) {
        Env env;

        env_setup(&env, "{\"cdev\": false, \"devices\": [" GPU("\"vfio-pci\"") ", " NIC("\"vfio-pci\"") "]}");
        env_start(&env);
        ASSERT_STR_EQ(env.backend->name, "emulated-group");
        ASSERT_TRUE(env.backend->emulated);
        ASSERT_TRUE(!env.backend->cdev);

        /* No vfio-dev nodes without the cdev uAPI. */
        ASSERT_STR_EQ(recorder_take(&env.rec),
                      "add 0000:01:00.0 - - 14\n"
                      "bind 0000:01:00.0 vfio-pci - 14\n"
                      "add 0000:02:00.0 - - 15\n"
                      "bind 0000:02:00.0 vfio-pci - 15\n");

        /* No "cdev" key means true: rejected. */
        ASSERT_STR_EQ(update(&env, MACHINE(GPU("\"vfio-pci\""), NIC("\"vfio-pci\""))), "");
        ASSERT_STR_EQ(update(&env, "{\"cdev\": false, \"devices\": [" GPU("\"vfio-pci\"") "]}"),
                      "unbind 0000:02:00.0 - - 15\n"
                      "remove 0000:02:00.0 - - 15\n");
        env_done(&env);
}

TEST(test_watching) {
        Env env;
        char other[320];
        int fd;

        env_setup(&env, MACHINE(DISK("null")));
        env_start(&env);
        (void) recorder_take(&env.rec);
        recorder_clear_infos(&env.rec);

        /* Other files in the directory are not the machine. */
        snprintf(other, sizeof other, "%s/other.json", env.dir);
        write_file(other, MACHINE(NIC("null")));
        /* An editor writing in place gives one update at close. */
        fd = open(env.path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_INT_EQ(write(fd, MACHINE(DISK("\"nvme\"")), strlen(MACHINE(DISK("\"nvme\"")))),
                      (long) strlen(MACHINE(DISK("\"nvme\""))));
        ASSERT_INT_EQ(close(fd), 0);
        run_until_updates(&env, 1);
        ASSERT_STR_EQ(recorder_take(&env.rec), "bind 0000:03:00.0 nvme - 16\n");
        env_done(&env);
}

TEST(test_new_fails) {
        _cleanup_free_ char *missing = NULL;
        Backend *b = NULL;
        Env env;

        env_setup(&env, "{\"devices\": [{\"address\": \"01:00.0\", \"bridge\": {\"secondary_bus\": 1}}]}");
        ASSERT_INT_EQ(backend_emulated_new(env.event, env.path, on_event, &env.rec, &b), -EINVAL);
        ASSERT_TRUE(!b);
        ASSERT_TRUE(asprintf(&missing, "%s/missing.json", env.dir) > 0);
        ASSERT_INT_EQ(backend_emulated_new(env.event, missing, on_event, &env.rec, &b), -EINVAL);
        ASSERT_TRUE(!b);
        ASSERT_INT_EQ(backend_emulated_new(env.event, env.dir, on_event, &env.rec, &b), -EINVAL);
        ASSERT_TRUE(!b);
        ASSERT_INT_EQ(env.rec.n, 0);
        env_done(&env);

        /* Not an emulated backend: the accessors say nothing. */
        ASSERT_TRUE(!backend_emulated_get_machine(NULL));
        ASSERT_INT_EQ(backend_emulated_get_n_updates(NULL), 0);
}

int main(void) {
        /* The debug lines run too, so the sanitizers see their code. */
        log_set_max_level(LOG_DEBUG);

        RUN(test_start);
        RUN(test_hotplug);
        RUN(test_bind_unbind);
        RUN(test_change);
        RUN(test_hardware_change);
        RUN(test_bad_update);
        RUN(test_cdev_change_rejected);
        RUN(test_group_model);
        RUN(test_watching);
        RUN(test_new_fails);
        return 0;
}

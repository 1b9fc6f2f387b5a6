/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdlib.h>

#include "backend.h"
#include "log.h"
#include "util.h"

const char *backend_action_to_string(BackendAction a) {
        static const char *const names[] = {
                [BACKEND_ADD] = "add",       [BACKEND_REMOVE] = "remove", [BACKEND_BIND] = "bind",
                [BACKEND_UNBIND] = "unbind", [BACKEND_CHANGE] = "change",
        };
        return (unsigned) a < sizeof(names) / sizeof(names[0]) ? names[a] : "unknown";
}

Backend *backend_free(Backend *b) {
        if (!b)
                return NULL;
        sd_event_unref(b->event);
        free(b->name);
        /* The implementation frees its own state and the struct. */
        b->ops->free(b);
        return NULL;
}

void backend_emit(Backend *b, BackendAction action, const PciDeviceInfo *info) {
        char buf[PCI_ADDRESS_STRING_MAX];

        log_debug("%s backend: %s %s%s%s%s%s", b->name, backend_action_to_string(action),
                  pci_address_format(&info->address, buf), info->driver ? " driver=" : "", strempty(info->driver),
                  info->cdev_path ? " cdev=" : "", strempty(info->cdev_path));
        if (b->handler)
                b->handler(b, action, info, b->userdata);
}

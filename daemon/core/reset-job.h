/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Hot resets run off the event loop (the real ioctl can take seconds):
 * each in a worker thread, serialized with every other reset whose scope
 * overlaps, answered and signalled back on the loop. */
#pragma once

#include <systemd/sd-bus.h>

#include "context.h"

typedef struct Manager Manager;

/* Queues a hot reset of d through context c and answers request when done
 * (with the affected addresses, or an error). group_fds: the legacy group
 * files proving ownership (not taken over; they belong to c). If
 * release_after, c is released once the reset is over (Manager.HotReset's
 * private context). Takes a busy reference on c. */
int reset_job_submit(Manager *m, Context *c, sd_bus_message *request, const ContextDevice *d, char **affected,
                     const int *group_fds, size_t n_group_fds, bool release_after);

/* Whether a reset answers request later (queued or running). */
bool reset_job_pending(Manager *m, sd_bus_message *request);

/* Waits for resets in flight and drops queued ones (shutdown). */
void reset_jobs_free(Manager *m);

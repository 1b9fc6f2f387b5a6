/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fair dispatch of costly reads. Everything a connection sends reaches the
 * daemon through its single connection to the bus, in order: 200 pipelined
 * GetManagedObjects from one caller would keep every other caller waiting
 * until the last was answered. Costly reads are parked instead, per sender,
 * and let through one at a time, taking turns between senders, with the
 * rest of the bus served in between: another caller waits for at most one
 * costly read, whatever one connection sends. */
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "manager.h"

typedef struct ReadQueue ReadQueue;

/* How many costly reads one sender may have waiting; more are refused
 * with LimitsExceeded. */
#define READ_QUEUE_PER_SENDER_MAX 32

/* m: for the budget of refusals logged (refusal-log.h). */
int read_queue_new(Manager *m, ReadQueue **ret);
ReadQueue *read_queue_free(ReadQueue *q);

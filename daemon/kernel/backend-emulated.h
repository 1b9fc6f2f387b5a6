/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internals of the emulated backend that its tests (and later a
 * --dump-machine option) look at. The daemon itself only uses what
 * backend.h declares. */
#pragma once

#include "backend.h"
#include "machine-file.h"

/* The machine as delivered so far, with the cdev paths the emulated kernel
 * assigned; NULL before start(). b must come from backend_emulated_new(). */
const Machine *backend_emulated_get_machine(Backend *b);

/* How many times the machine file has been re-read since start(), whether
 * the update was applied or rejected. Lets tests wait for an update that
 * must deliver nothing. */
unsigned backend_emulated_get_n_updates(Backend *b);

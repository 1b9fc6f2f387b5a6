/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How many refusals reach the journal. Every refused call is worth a line
 * (the audit entry, or a notice for the reads that are not audited), but a
 * user who makes thousands of refused calls a second would fill the
 * journal and trip journald's rate limit for the whole service, which then
 * drops everyone else's entries. So a user (root excepted) gets
 * LoggedRefusalsPerUserPerMinute= lines a minute; the refusals beyond are
 * counted, and the count is logged in their place, out of the same budget:
 * when the user next has room (the next refusal that would be logged
 * becomes the report), or from a timer when the user is quiet. Nothing is
 * lost, and a flood of refusals costs the journal the budget, no more. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "manager.h"

/* Whether a refusal of a call by uid ((uid_t) -1: not known) is logged now,
 * one by one. When not, it is counted (and may have been logged as part of
 * a count). */
bool refusal_log_allowed(Manager *m, uid_t uid);

/* Logs the counts not yet reported, and frees the state. */
void refusal_log_done(Manager *m);

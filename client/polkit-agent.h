/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A text polkit agent for the duration of a call, as systemctl starts one:
 * pkttyagent --notify-fd N --process PID [--fallback], waited for until it
 * has registered (it closes N), stopped at exit. */
#pragma once

/* Starts pkttyagent when standard input is a terminal, the caller is not
 * root (the daemon does not ask polkit for root) and no agent runs yet.
 * Failing to start one is not an error: polkit then refuses what needs a
 * password, and the daemon says so. Returns 1 if an agent runs, 0 if not. */
int polkit_agent_open(void);

/* Stops the agent (also done at exit). */
void polkit_agent_close(void);

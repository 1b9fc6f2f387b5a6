/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Paging long output as systemd's tools do: on a terminal, stdout goes
 * through $SYSTEMD_PAGER, else $PAGER, else less (with LESS=FRSXMK unless
 * set: quit when it fits, keep colours, no screen clearing), else more.
 * An empty pager or "cat", --no-pager, or stdout not a terminal: none. */
#pragma once

/* Starts the pager (when one is wanted), after remembering the terminal's
 * width and whether it takes colours (output.h): the output still fits
 * and is coloured for the terminal behind the pager. */
void pager_open(void);

/* Sends EOF to the pager and waits for it (also done at exit). */
void pager_close(void);

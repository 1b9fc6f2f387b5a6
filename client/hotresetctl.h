/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl: what every verb shares — exit statuses, the global options,
 * the verb table entry and the argument helpers. */
#pragma once

#include <getopt.h>
#include <stdbool.h>

#include "pci-address.h"

/* Exit statuses (documented in --help). */
enum {
        EXIT_OK = 0,
        EXIT_ERROR = 1,   /* the call failed, the daemon is not there, ... */
        EXIT_USAGE = 2,   /* bad options or arguments */
        EXIT_REFUSED = 3, /* the hot reset is refused or not possible */
};

/* Global options, valid before or after the verb. */
typedef enum JsonMode {
        JSON_OFF = 0,   /* tables and text for people */
        JSON_AUTO,      /* plain --json: indented on a terminal, one line when piped */
        JSON_PRETTY,
        JSON_SHORT,
} JsonMode;
extern JsonMode arg_json;
extern bool arg_legend;
extern bool arg_names;        /* vendor and device names from the hwdb */
extern bool arg_ask_password; /* start a polkit agent on a terminal */
extern bool arg_verbose;      /* D-Bus error names after the messages */
extern bool arg_pager;        /* page long output on a terminal */

typedef struct Verb {
        const char *name;
        const char *alias;    /* or NULL */
        const char *synopsis; /* arguments and options, for usage lines */
        const char *summary;  /* one line for the verb list */
        const char *help;     /* more lines for `hotresetctl VERB --help`, or NULL */
        unsigned min_args, max_args;
        /* The verb's own options (terminated by a zero entry), or NULL. The
         * handler returns 0, or a negative errno after printing why. */
        const struct option *options;
        int (*parse_option)(int c, const char *arg);
        /* Runs with the positional arguments; returns an exit status. */
        int (*run)(int argc, char *argv[]);
        /* The verb changes state: polkit may want to ask the user, so a
         * polkit agent is started on a terminal (see polkit-agent.h). */
        bool interactive;
        /* The output can be long: page it on a terminal (pager.h). */
        bool pager;
} Verb;

extern const Verb verb_status, verb_list, verb_info, verb_check, verb_scope, verb_acquire, verb_release,
        verb_detach, verb_contexts, verb_reset, verb_reset_device, verb_reload, verb_hot_reset_info, verb_monitor,
        verb_run;

/* The verb being run (main sets it before calling run). */
extern const Verb *current_verb;

/* Option codes of the verbs, above every short option character. */
enum {
        ARG_JSON = 0x100,
        ARG_NO_LEGEND,
        ARG_VERSION,
        ARG_PERSISTENT,
        ARG_TRANSIENT,
        ARG_DESCRIPTION,
        ARG_NO_BIND,
        ARG_CONTEXT,
        ARG_DEVICE,
        ARG_NO_PAGER,
        ARG_NO_ASK_PASSWORD,
        ARG_NO_NAMES,
        ARG_VERBOSE,
};

/* Prints "hotresetctl: <message>" plus a hint to try --help, returns -EINVAL;
 * the caller exits with EXIT_USAGE. */
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A PCI address from the command line, long or short form, in canonical
 * form. On failure prints the expected form and returns -EINVAL. */
int parse_address_arg(const char *s, char buf[static PCI_ADDRESS_STRING_MAX]);

/* A context given as its number N, "context/N" or its object path; on
 * failure prints what is expected and returns -EINVAL. */
int parse_context_arg(const char *s, char **ret_path);

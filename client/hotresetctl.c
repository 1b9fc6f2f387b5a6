/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hotresetctl: ask hotresetd which devices a hot reset hits and why it
 * would be refused, hold devices, reset them, watch what happens. This
 * file: global options, the verb table, help, and argument helpers. */
#include <errno.h>
#include <stdarg.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "hotresetctl.h"
#include "pager.h"
#include "util.h"

JsonMode arg_json = JSON_OFF;
bool arg_legend = true;
bool arg_names = true;
bool arg_ask_password = true;
bool arg_verbose = false;
bool arg_pager = true;
const Verb *current_verb = NULL;

static const Verb *const verbs[] = {
        &verb_status,
        &verb_list,
        &verb_info,
        &verb_check,
        &verb_scope,
        &verb_acquire,
        &verb_release,
        &verb_detach,
        &verb_contexts,
        &verb_reset,
        &verb_reset_device,
        &verb_reload,
        &verb_hot_reset_info,
        &verb_monitor,
        &verb_run,
};

/* Options every verb takes, before or after the verb. */
#define GLOBAL_OPTIONS                                                    \
        { "json", optional_argument, NULL, ARG_JSON },                    \
        { "no-legend", no_argument, NULL, ARG_NO_LEGEND },                \
        { "no-pager", no_argument, NULL, ARG_NO_PAGER },                  \
        { "no-ask-password", no_argument, NULL, ARG_NO_ASK_PASSWORD },    \
        { "no-names", no_argument, NULL, ARG_NO_NAMES },                  \
        { "verbose", no_argument, NULL, ARG_VERBOSE },                    \
        { "help", no_argument, NULL, 'h' }

/* A global option: 1 when c was one (handled), 0 when it is not global,
 * -EINVAL after a usage error. */
static int parse_global_option(int c, const char *arg) {
        switch (c) {
        case ARG_JSON:
                if (!arg)
                        arg_json = JSON_AUTO;
                else if (streq(arg, "pretty"))
                        arg_json = JSON_PRETTY;
                else if (streq(arg, "short"))
                        arg_json = JSON_SHORT;
                else if (streq(arg, "off"))
                        arg_json = JSON_OFF;
                else if (streq(arg, "help")) {
                        puts("pretty\nshort\noff");
                        exit(EXIT_OK);
                } else
                        return usage_error("unknown --json mode '%s' (expected pretty, short or off)", arg);
                return 1;
        case ARG_NO_LEGEND:
                arg_legend = false;
                return 1;
        case ARG_NO_PAGER:
                arg_pager = false;
                return 1;
        case ARG_NO_ASK_PASSWORD:
                arg_ask_password = false;
                return 1;
        case ARG_NO_NAMES:
                arg_names = false;
                return 1;
        case ARG_VERBOSE:
                arg_verbose = true;
                return 1;
        }
        return 0;
}

static void print_help(void) {
        printf("%s [OPTIONS...] COMMAND ...\n\n"
               "Ask hotresetd which PCI devices a hot reset hits and why it would be\n"
               "refused; hold devices in a context, reset them, watch events.\n\n"
               "Commands:\n",
               program_invocation_short_name);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                _cleanup_free_ char *usage = NULL;
                if (asprintf(&usage, "%s%s%s", verbs[i]->name, *verbs[i]->synopsis ? " " : "",
                             verbs[i]->synopsis) < 0)
                        return;
                printf("  %s\n      %s\n", usage, verbs[i]->summary);
        }
        printf("\nOptions:\n"
               "  -h --help          Show this help (COMMAND --help: the command's help)\n"
               "     --version       Show the version\n"
               "     --json=MODE     Print JSON for programs: pretty, short or off; --json\n"
               "                     alone is pretty on a terminal, short otherwise\n"
               "                     (monitor: always one object a line)\n"
               "     --no-legend     Print no column headers, verdict or hint lines\n"
               "     --no-pager      Do not pipe the output into a pager (see below)\n"
               "     --no-ask-password  Do not start a polkit agent to ask for a password\n"
               "     --no-names      Do not look up vendor and device names in the hwdb\n"
               "     --verbose       Add the D-Bus error name to error messages\n\n"
               "Addresses are 0000:01:00.0 or, in PCI domain 0, 01:00.0. A CONTEXT is\n"
               "its number N (as in context/N) or its object path.\n\n"
               "Colour on a terminal only; NO_COLOR turns it off, SYSTEMD_COLORS=0|1\n"
               "turns it off or on. On a terminal, status, list, info, check, scope and\n"
               "contexts page their output through $SYSTEMD_PAGER, $PAGER or less\n"
               "(empty or cat: none).\n\n"
               "Exit status: 0 success, 1 failure, 2 usage error, 3 the hot reset is\n"
               "refused or not possible (check, scope, reset, reset-device).\n");
}

static void print_verb_help(const Verb *v) {
        printf("%s %s%s%s\n\n%s\n", program_invocation_short_name, v->name, *v->synopsis ? " " : "", v->synopsis,
               v->summary);
        if (v->help)
                printf("\n%s", v->help);
        printf("\nGlobal options: --json[=MODE], --no-legend, --no-pager, --no-ask-password,\n"
               "--no-names, --verbose, -h --help\n");
}

int usage_error(const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "%s: ", program_invocation_short_name);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry '%s --help' for more information.\n", program_invocation_short_name);
        return -EINVAL;
}

int parse_address_arg(const char *s, char buf[static PCI_ADDRESS_STRING_MAX]) {
        PciAddress a;

        if (pci_address_parse(s, &a) < 0) {
                fprintf(stderr, "%s: invalid PCI address '%s': %s.\n", program_invocation_short_name, s,
                        PCI_ADDRESS_FORM_HINT);
                return -EINVAL;
        }
        pci_address_format(&a, buf);
        return 0;
}

static bool all_digits(const char *s) {
        if (!*s || strlen(s) > 19)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

int parse_context_arg(const char *s, char **ret_path) {
        static const char root[] = "/org/hotresetd/Broker1/";
        const char *n = s;

        if (strncmp(n, root, strlen(root)) == 0)
                n += strlen(root);
        if (strncmp(n, "context/", strlen("context/")) == 0)
                n += strlen("context/");
        if (!all_digits(n)) {
                fprintf(stderr,
                        "%s: invalid context '%s': expected its number N, context/N or "
                        "/org/hotresetd/Broker1/context/N ('%s contexts' lists them).\n",
                        program_invocation_short_name, s, program_invocation_short_name);
                return -EINVAL;
        }
        /* The daemon's paths carry the number without leading zeros. */
        unsigned long long id = strtoull(n, NULL, 10);
        if (asprintf(ret_path, "%scontext/%llu", root, id) < 0)
                return -ENOMEM;
        return 0;
}

static const Verb *find_verb(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i]->name, name) || streq_ptr(verbs[i]->alias, name))
                        return verbs[i];
        return NULL;
}

/* The options before the verb. Returns 1 to go on, 0 to exit successfully
 * (help, version), or -EINVAL. */
static int parse_global_options(int argc, char *argv[]) {
        static const struct option options[] = {
                GLOBAL_OPTIONS,
                { "version", no_argument, NULL, ARG_VERSION },
                {},
        };
        int c, r;

        /* "+": stop at the verb; its own options follow it. */
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        print_help();
                        return 0;
                case ARG_VERSION:
                        printf("hotresetctl %s\n", HOTRESETD_VERSION);
                        return 0;
                case '?':
                        return -EINVAL;
                default:
                        r = parse_global_option(c, optarg);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                return usage_error("unhandled option");
                }
        return 1;
}

/* The verb's options and the global ones, anywhere after the verb (argv is
 * permuted: on success the positional arguments start at optind). Returns
 * 1 to go on, 0 after printing help, or -EINVAL. */
static int parse_verb_options(const Verb *v, int argc, char *argv[]) {
        static const struct option global[] = { GLOBAL_OPTIONS };
        size_t n_own = 0;
        int c, r;

        while (v->options && v->options[n_own].name)
                n_own++;
        _cleanup_free_ struct option *options = calloc(n_own + ELEMENTSOF(global) + 1, sizeof(struct option));
        if (!options)
                return -ENOMEM;
        memcpy(options, global, sizeof global);
        if (n_own > 0)
                memcpy(options + ELEMENTSOF(global), v->options, n_own * sizeof(struct option));

        optind = 0; /* re-initialise getopt for the second vector */
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        print_verb_help(v);
                        return 0;
                case '?':
                        return -EINVAL;
                default:
                        r = parse_global_option(c, optarg);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                break;
                        if (!v->parse_option)
                                return usage_error("unhandled option");
                        if (v->parse_option(c, optarg) < 0)
                                return -EINVAL;
                }
        return 1;
}

int main(int argc, char *argv[]) {
        int r;

        /* UTF-8 tree lines and ellipses on a UTF-8 terminal. */
        (void) setlocale(LC_ALL, "");

        r = parse_global_options(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : EXIT_OK;
        if (optind >= argc) {
                usage_error("no command given");
                return EXIT_USAGE;
        }

        const Verb *v = find_verb(argv[optind]);
        if (!v) {
                usage_error("unknown command '%s'", argv[optind]);
                return EXIT_USAGE;
        }

        /* The verb's vector: getopt names the program after its first
         * element in its own messages. */
        int vargc = argc - optind;
        _cleanup_free_ char **vargv = calloc(vargc + 1, sizeof(char *));
        _cleanup_free_ char *name = NULL;
        if (!vargv || asprintf(&name, "%s %s", program_invocation_short_name, v->name) < 0) {
                fputs("Out of memory.\n", stderr);
                return EXIT_ERROR;
        }
        memcpy(vargv, argv + optind, vargc * sizeof(char *));
        vargv[0] = name;

        r = parse_verb_options(v, vargc, vargv);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : EXIT_OK;

        unsigned n_args = (unsigned) (vargc - optind);
        if (n_args < v->min_args) {
                usage_error("%s: missing argument (usage: %s %s)", v->name, v->name, v->synopsis);
                return EXIT_USAGE;
        }
        if (n_args > v->max_args) {
                usage_error("%s: too many arguments (usage: %s %s)", v->name, v->name, v->synopsis);
                return EXIT_USAGE;
        }
        current_verb = v;
        if (v->pager)
                pager_open();
        return v->run((int) n_args, vargv + optind);
}

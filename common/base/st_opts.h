/*
 * st_opts — the daemons' command-line options, from one table per program.
 *
 * Each program lists its options once (st_opt_t: long name, argument name,
 * help text, where the value goes); st_opts_parse runs getopt_long over the
 * table, fills the targets, and prints the usage text built from the same
 * table. Every program gets the same built-in options and the same
 * messages for them:
 *   --log-level debug|info|warn|error   sets st_log's level
 *   --version                           prints "<prog> <version>", exit 0
 *   --help                              prints the usage on out, exit 0
 * Long options only (getopt_long with an empty short-option string, so
 * unambiguous abbreviations work and getopt reports unknown options).
 *
 * This is the one base module that writes text: usage and option errors
 * go to the streams named in the spec (stdout/stderr when NULL), since a
 * program's options are its command-line interface.
 */
#ifndef ST_OPTS_H
#define ST_OPTS_H

#include <stddef.h>
#include <stdio.h>

/* st_opts_parse's answer when the program should go on. */
#define ST_OPTS_RUN (-1)

typedef struct st_opt {
    const char *name; /* long name without "--" */
    const char *arg;  /* argument shown in the usage ("FILE"); NULL: a flag */
    const char *help; /* usage text ('\n' continues under it); NULL: not listed */
    const char **str; /* with arg: receives the argument (points into argv) */
    int *flag;        /* without arg: set to 1 when given */
    int required;     /* "--NAME is required" when absent */
} st_opt_t;

/* Table rows: an option with an argument (optional or required), a flag. */
#define ST_OPT_STR(name, arg, help, target)                                                        \
    {                                                                                              \
        (name), (arg), (help), (target), NULL, 0                                                   \
    }
#define ST_OPT_REQUIRED(name, arg, help, target)                                                   \
    {                                                                                              \
        (name), (arg), (help), (target), NULL, 1                                                   \
    }
#define ST_OPT_FLAG(name, help, target)                                                            \
    {                                                                                              \
        (name), NULL, (help), NULL, (target), 0                                                    \
    }

typedef struct st_opts_spec {
    const char *prog;     /* "strata-node": messages and --version */
    const char *version;  /* --version */
    const char *synopsis; /* usage line after "usage: <prog> " (the built-in
                           * [--log-level ...] follows on a line of its own) */
    int help_col;         /* column where the options' help text starts */
    const st_opt_t *opts;
    size_t nopts;
    FILE *out, *err; /* NULL: stdout, stderr */
} st_opts_spec_t;

/*
 * Parse argv against spec. Returns ST_OPTS_RUN when the program should go
 * on (targets filled), else the exit status the program should return:
 * 0 after --help or --version; 2 after an unknown option, a bad
 * --log-level, a missing required option or a positional argument, with
 * a message on err (followed by the usage, except after a bad level).
 * Resets getopt's state first, so it can be called more than once.
 */
int st_opts_parse(const st_opts_spec_t *spec, int argc, char **argv);

/* The usage text built from spec, on f. */
void st_opts_usage(const st_opts_spec_t *spec, FILE *f);

#endif

/*
 * cli_opts — one table per subcommand, one parser for all of them.
 *
 * A subcommand is a cli_cmd_t: its name, the lines of its help, its
 * positional arguments, a table of options (cli_opt_t) and a run function.
 * Each option says where its value goes (an offset into the command's own
 * options struct), how the value is checked (kind and bounds) and how it is
 * listed in --help. cli_opts_parse() builds getopt_long()'s tables from it,
 * fills the struct (defaults first), answers --help, and reports every
 * usage error the same way ("strata CMD: bad --NAME 'VALUE' (RANGE)" plus
 * "Try 'strata CMD --help'.", exit 2). cli_dispatch() is `strata` itself:
 * the command list, --help, --version, and the hand-off to one command.
 *
 * Every options struct starts with a cli_common_t: the --router, --config
 * and --timeout every command takes (CLI_OPT_ROUTER, CLI_OPT_CONFIG,
 * CLI_OPT_TIMEOUT()) and the time the options were parsed (relative times
 * count from it).
 */
#ifndef CLI_OPTS_H
#define CLI_OPTS_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CLI_DEFAULT_ROUTER "http://127.0.0.1:8086"
#define CLI_IO_TIMEOUT_S 60
#define CLI_STR_(x) #x
#define CLI_STR(x) CLI_STR_(x)

/* The options every command takes; first member of each command's options struct. */
typedef struct cli_common {
    const char *router; /* --router, NULL = --config's routers, $STRATA_ROUTER or the default */
    const char *config; /* --config cluster.ini, NULL = none */
    double timeout;     /* --timeout, seconds */
    double now;         /* unix time when the options were parsed */
    const char *cacert; /* --cacert PEM for https routers, NULL = $STRATA_CACERT or the system's */
} cli_common_t;

#define CLI_COMMON_DEFAULTS                                                                        \
    {                                                                                              \
        .router = NULL, .config = NULL, .timeout = CLI_IO_TIMEOUT_S, .now = 0, .cacert = NULL      \
    }

typedef enum {
    CLI_FLAG,     /* no value: bool = true */
    CLI_STR,      /* const char *, any text */
    CLI_CHOICE,   /* const char *, one of `choices` ("a|b|c") */
    CLI_U64,      /* uint64_t, decimal, min..max */
    CLI_NUM,      /* double, strtod() of the whole value, lo..hi */
    CLI_DURATION, /* double seconds, cli_parse_duration(), lo..hi */
    CLI_TIME,     /* double unix seconds, cli_parse_time() relative to `now` */
} cli_opt_kind_t;

typedef struct cli_opt {
    const char *name; /* long name without "--"; NULL ends a table */
    cli_opt_kind_t kind;
    size_t off;        /* offset of the value in the options struct */
    size_t given;      /* CLI_GIVEN(): where to note that it was given; 0 = nowhere */
    char short_name;   /* 0 = none */
    uint64_t min, max; /* CLI_U64 */
    double lo, hi;     /* CLI_NUM, CLI_DURATION: lo < v (lo_open) or lo <= v, and v <= hi */
    bool lo_open;
    const char *choices; /* CLI_CHOICE */
    const char *range;   /* appended to "bad --NAME 'VALUE'", e.g. " (1..256)" */
    const char *label;   /* --help: "--batch LINES"; NULL = not listed */
    const char *help;    /* --help text; each '\n' starts a line indented to the column */
} cli_opt_t;

/* For cli_opt_t.given: the offset of a bool member, + 1 so that 0 means none. */
#define CLI_GIVEN(type, member) (offsetof(type, member) + 1)

#define CLI_OPT_ROUTER                                                                             \
    {.name = "router",                                                                             \
     .kind = CLI_STR,                                                                              \
     .off = offsetof(cli_common_t, router),                                                        \
     .label = "--router URL",                                                                      \
     .help = "router address (default " CLI_DEFAULT_ROUTER ", env STRATA_ROUTER)"},                \
        CLI_OPT_CACERT
/* Comes with CLI_OPT_ROUTER: every command that talks to a router can speak
 * https. Not listed in --help (label NULL) so the help layout stays as it
 * is; docs/cli.md describes it. */
#define CLI_OPT_CACERT                                                                             \
    {                                                                                              \
        .name = "cacert", .kind = CLI_STR, .off = offsetof(cli_common_t, cacert), .label = NULL,   \
        .help = "CA certificates (PEM) to trust for an https:// router"                            \
    }
#define CLI_OPT_CONFIG                                                                             \
    {                                                                                              \
        .name = "config", .kind = CLI_STR, .off = offsetof(cli_common_t, config),                  \
        .label = "--config FILE",                                                                  \
        .help = "check cluster.ini; talk to its [router] listen\n"                                 \
                "(--router wins; docs/cli.md)"                                                     \
    }
#define CLI_OPT_TIMEOUT(text)                                                                      \
    {                                                                                              \
        .name = "timeout", .kind = CLI_DURATION, .off = offsetof(cli_common_t, timeout), .lo = 0,  \
        .lo_open = true, .hi = INFINITY, .label = "--timeout SECS",                                \
        .help = text " (default " CLI_STR(CLI_IO_TIMEOUT_S) ")"                                    \
    }
#define CLI_OPT_END                                                                                \
    {                                                                                              \
        .name = NULL                                                                               \
    }

/* Table rows for the common kinds; `type` is the command's options struct. */
#define CLI_OPT_FLAG(type, member, nm, text)                                                       \
    {                                                                                              \
        .name = nm, .kind = CLI_FLAG, .off = offsetof(type, member), .label = "--" nm,             \
        .help = text                                                                               \
    }
#define CLI_OPT_U64(type, member, nm, lo_, hi_, rng, lab, text)                                    \
    {                                                                                              \
        .name = nm, .kind = CLI_U64, .off = offsetof(type, member), .min = lo_, .max = hi_,        \
        .range = rng, .label = lab, .help = text                                                   \
    }
#define CLI_OPT_CHOICE(type, member, nm, list, rng, lab, text)                                     \
    {                                                                                              \
        .name = nm, .kind = CLI_CHOICE, .off = offsetof(type, member), .choices = list,            \
        .range = rng, .label = lab, .help = text                                                   \
    }
/* A duration over `lo` seconds (lo_open) or at least `lo` seconds. */
#define CLI_OPT_DURATION(type, member, nm, lo_, open, lab, text)                                   \
    {                                                                                              \
        .name = nm, .kind = CLI_DURATION, .off = offsetof(type, member), .lo = lo_,                \
        .lo_open = open, .hi = INFINITY, .label = lab, .help = text                                \
    }

typedef struct cli_cmd {
    const char *name;     /* "query" */
    const char *args;     /* positional arguments in the command list and "missing ARGS"; "" */
    const char *summary;  /* the command list's line */
    const char *synopsis; /* --help's first line, after "usage: strata " */
    const char *about;    /* --help's paragraph before the options */
    const char *footer;   /* --help's text after the options, or NULL */
    int help_col;         /* column where the options' help texts start */
    int min_args;         /* positional arguments at least ... */
    int max_args;         /* ... and at most (-1 = any number) */
    const char *too_many; /* the usage error when over max_args > 0 */
    const cli_opt_t *opts;
    size_t opts_size;     /* sizeof the options struct (a cli_common_t first) */
    const void *defaults; /* its initial value */
    /* Runs the command with the parsed options and the positional arguments. */
    int (*run)(void *opts, int argc, char **argv);
} cli_cmd_t;

/* cli_opts_parse() result when the command should run (every other value is an exit code). */
#define CLI_PARSED (-1)

/*
 * Parse argv (argv[0] = the command's name) into `opts` (cmd->opts_size
 * bytes). Returns CLI_PARSED with *first = the index of the first positional
 * argument, CLI_EXIT_OK after printing --help, or CLI_EXIT_USAGE after a
 * usage error on stderr.
 */
int cli_opts_parse(const cli_cmd_t *cmd, int argc, char **argv, void *opts, int *first /* OUT */);

/* The command's --help text. */
void cli_cmd_help(const cli_cmd_t *cmd, FILE *f);

/* Parse argv and run the command; returns its exit code. */
int cli_cmd_main(const cli_cmd_t *cmd, int argc, char **argv);

/* The `strata` usage text listing the commands. */
void cli_usage(FILE *f, const cli_cmd_t *const *cmds, size_t n);

/* `strata ARGS...`: --help, --version, or the named command. Returns the exit code. */
int cli_dispatch(const cli_cmd_t *const *cmds, size_t n, int argc, char **argv);

#endif

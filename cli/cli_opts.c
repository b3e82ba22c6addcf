/* cli_opts — the subcommand and option tables' parser and help. See cli_opts.h. */
#include "cli_opts.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cli_auth.h"
#include "st_err.h"

#ifndef STRATA_VERSION
#define STRATA_VERSION "dev"
#endif

#define MAX_OPTS 64
#define LONG_ONLY 256 /* getopt value of table entry i without a short name: LONG_ONLY + i */
#define OPT_TOKEN (LONG_ONLY + MAX_OPTS + 1) /* global --token (cli_auth.c) */
#define OPT_USER (LONG_ONLY + MAX_OPTS + 2)  /* global --user */

/* Is `v` one of the '|'-separated `choices`? */
static bool is_choice(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *c = choices; c && *c;) {
        size_t l = strcspn(c, "|");
        if (l == n && strncmp(c, v, n) == 0)
            return true;
        c += l + (c[l] == '|');
    }
    return false;
}

static bool in_bounds(const cli_opt_t *o, double v)
{
    return (o->lo_open ? v > o->lo : v >= o->lo) && v <= o->hi;
}

/* Check `arg` and store it for option `o`. Returns 0 or ST_EINVAL. */
static int set_value(const cli_opt_t *o, void *opts, const char *arg, double now)
{
    void *dst = (char *)opts + o->off;
    double d;
    switch (o->kind) {
    case CLI_FLAG:
        *(bool *)dst = true;
        return 0;
    case CLI_STR:
        *(const char **)dst = arg;
        return 0;
    case CLI_CHOICE:
        if (!is_choice(o->choices, arg))
            return ST_EINVAL;
        *(const char **)dst = arg;
        return 0;
    case CLI_U64:
        return cli_parse_u64(arg, o->min, o->max, (uint64_t *)dst);
    case CLI_NUM: {
        char *end;
        d = strtod(arg, &end);
        if (*end != '\0' || !in_bounds(o, d))
            return ST_EINVAL;
        break;
    }
    case CLI_DURATION:
        if (cli_parse_duration(arg, &d) < 0 || !in_bounds(o, d))
            return ST_EINVAL;
        break;
    case CLI_TIME:
        if (cli_parse_time(arg, now, &d) < 0)
            return ST_EINVAL;
        break;
    default:
        return ST_EINVAL;
    }
    *(double *)dst = d;
    return 0;
}

int cli_opts_parse(const cli_cmd_t *cmd, int argc, char **argv, void *opts, int *first)
{
    struct option lo[MAX_OPTS + 4];
    char shorts[2 * MAX_OPTS + 2] = "h";
    size_t n = 0, ns = 1;
    for (const cli_opt_t *o = cmd->opts; o->name && n < MAX_OPTS; o++, n++) {
        int has_arg = o->kind == CLI_FLAG ? no_argument : required_argument;
        lo[n] = (struct option){o->name, has_arg, NULL,
                                o->short_name ? o->short_name : LONG_ONLY + (int)n};
        if (o->short_name) {
            shorts[ns++] = o->short_name;
            if (has_arg == required_argument)
                shorts[ns++] = ':';
        }
    }
    shorts[ns] = '\0';
    lo[n] = (struct option){"help", no_argument, NULL, 'h'};
    lo[n + 1] = (struct option){"token", required_argument, NULL, OPT_TOKEN};
    lo[n + 2] = (struct option){"user", required_argument, NULL, OPT_USER};
    lo[n + 3] = (struct option){NULL, 0, NULL, 0};

    memcpy(opts, cmd->defaults, cmd->opts_size);
    cli_common_t *common = opts;
    common->now = (double)time(NULL);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
        if (c == 'h') {
            cli_cmd_help(cmd, stdout);
            return CLI_EXIT_OK;
        }
        if (c == OPT_TOKEN || c == OPT_USER) {
            cli_auth_option(c == OPT_TOKEN ? CLI_AUTH_TOKEN : CLI_AUTH_USER, optarg);
            continue;
        }
        const cli_opt_t *o = NULL;
        if (c >= LONG_ONLY && (size_t)(c - LONG_ONLY) < n)
            o = &cmd->opts[c - LONG_ONLY];
        for (size_t i = 0; o == NULL && i < n; i++)
            if (cmd->opts[i].short_name == c)
                o = &cmd->opts[i];
        if (o == NULL)
            return cli_usage_error(cmd->name, "bad option");
        if (set_value(o, opts, optarg, common->now) < 0)
            return cli_usage_error(cmd->name, "bad --%s '%s'%s", o->name, optarg,
                                   o->range ? o->range : "");
        if (o->given)
            *(bool *)((char *)opts + o->given - 1) = true;
    }
    int nargs = argc - optind;
    if (nargs < cmd->min_args)
        return cli_usage_error(cmd->name, "missing %s", cmd->args);
    if (cmd->max_args >= 0 && nargs > cmd->max_args) {
        if (cmd->max_args == 0)
            return cli_usage_error(cmd->name, "unexpected argument '%s'", argv[optind]);
        return cli_usage_error(cmd->name, "%s", cmd->too_many);
    }
    int arc = cli_auth_apply(cmd->name);
    if (arc)
        return arc;
    *first = optind;
    return CLI_PARSED;
}

void cli_cmd_help(const cli_cmd_t *cmd, FILE *f)
{
    fprintf(f, "usage: strata %s\n\n%s", cmd->synopsis, cmd->about);
    for (const cli_opt_t *o = cmd->opts; o->name; o++) {
        if (o->label == NULL)
            continue;
        fprintf(f, "  %-*s", cmd->help_col - 2, o->label);
        for (const char *h = o->help;;) {
            size_t l = strcspn(h, "\n");
            fprintf(f, "%.*s\n", (int)l, h);
            if (h[l] == '\0')
                break;
            h += l + 1;
            fprintf(f, "%*s", cmd->help_col, "");
        }
    }
    if (cmd->footer)
        fputs(cmd->footer, f);
}

int cli_cmd_main(const cli_cmd_t *cmd, int argc, char **argv)
{
    void *opts = calloc(1, cmd->opts_size);
    if (opts == NULL)
        return cli_fail(cmd->name, "out of memory");
    int first = 0;
    int rc = cli_opts_parse(cmd, argc, argv, opts, &first);
    if (rc == CLI_PARSED)
        rc = cmd->run(opts, argc - first, argv + first);
    free(opts);
    return rc;
}

void cli_usage(FILE *f, const cli_cmd_t *const *cmds, size_t n)
{
    fprintf(f, "usage: strata <command> [options]\n\nCommands:\n");
    for (size_t i = 0; i < n; i++) {
        char label[64];
        snprintf(label, sizeof(label), "%s%s%s", cmds[i]->name, *cmds[i]->args ? " " : "",
                 cmds[i]->args);
        fprintf(f, "  %-20s%s\n", label, cmds[i]->summary);
    }
    fprintf(f,
            "\nEvery command takes --router URL (default %s, env STRATA_ROUTER)\n"
            "and --help. Exit codes: 0 ok, 1 failure, 2 usage error.\n",
            CLI_DEFAULT_ROUTER);
}

int cli_dispatch(const cli_cmd_t *const *cmds, size_t n, int argc, char **argv)
{
    if (argc < 2) {
        cli_usage(stderr, cmds, n);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        cli_usage(stdout, cmds, n);
        return CLI_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("strata %s\n", STRATA_VERSION);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, cmds[i]->name) == 0)
            return cli_cmd_main(cmds[i], argc - 1, argv + 1);
    fprintf(stderr, "strata: unknown command '%s'\n", name);
    cli_usage(stderr, cmds, n);
    return CLI_EXIT_USAGE;
}

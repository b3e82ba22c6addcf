/*
 * strata — the command-line client and admin tool of a Strata cluster.
 *
 *   strata status | write FILE | export SELECTOR | query PROMQL | bench
 *
 * Every subcommand talks HTTP to a router (--router URL, $STRATA_ROUTER,
 * default http://127.0.0.1:8086). Exit codes: 0 ok, 1 failure with a one-line
 * reason on stderr, 2 usage error. See docs/cli.md.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

#ifndef STRATA_VERSION
#define STRATA_VERSION "dev"
#endif

static void usage(FILE *f)
{
    fprintf(f,
            "usage: strata <command> [options]\n"
            "\n"
            "Commands:\n"
            "  status              cluster, nodes, shard placement and readiness\n"
            "  write FILE          load a line-protocol file ('-' = stdin)\n"
            "  export SELECTOR     raw samples as JSON lines or CSV\n"
            "  query PROMQL        instant or range query, as a table or chart\n"
            "  bench               generate the devops workload and load it\n"
            "\n"
            "Every command takes --router URL (default %s, env STRATA_ROUTER)\n"
            "and --help. Exit codes: 0 ok, 1 failure, 2 usage error.\n",
            CLI_DEFAULT_ROUTER);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("strata %s\n", STRATA_VERSION);
        return CLI_EXIT_OK;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"status", cmd_status},
                {"write", cmd_write},
                {"export", cmd_export},
                {"query", cmd_query},
                {"bench", cmd_bench}};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strcmp(cmd, cmds[i].name) == 0)
            return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "strata: unknown command '%s'\n", cmd);
    usage(stderr);
    return CLI_EXIT_USAGE;
}

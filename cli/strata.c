/*
 * strata — the command-line client and admin tool of a Strata cluster.
 *
 *   strata status | write FILE | import FILE... | migrate | export SELECTOR | query PROMQL | bench
 *          | user add|list|remove|rotate
 *
 * Every subcommand talks HTTP to a router (--router URL, $STRATA_ROUTER,
 * default http://127.0.0.1:8086). Exit codes: 0 ok, 1 failure with a one-line
 * reason on stderr, 2 usage error. See docs/cli.md.
 *
 * The table below is the whole dispatcher: each entry (cmd_*.c) carries its
 * name, help, options table and run function; cli_dispatch() (cli_opts.c)
 * prints the command list, answers --help/--version and runs the one named.
 */
#include <signal.h>

#include "cli.h"

static const cli_cmd_t *const COMMANDS[] = {&cli_cmd_status,  &cli_cmd_write,  &cli_cmd_import,
                                            &cli_cmd_migrate, &cli_cmd_export, &cli_cmd_query,
                                            &cli_cmd_bench,   &cli_cmd_delete, &cli_cmd_user,
                                            &cli_cmd_rule,    &cli_cmd_repair};

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    return cli_dispatch(COMMANDS, sizeof(COMMANDS) / sizeof(COMMANDS[0]), argc, argv);
}

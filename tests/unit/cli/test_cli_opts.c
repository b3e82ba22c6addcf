/*
 * test_cli_opts — the subcommand/option table parser of the `strata` CLI
 * (cli/cli_opts.h): every option kind with its bounds and usage errors,
 * "given" flags, short options, defaults, positional argument counts,
 * --help laid out from the table (columns, continuation lines, unlisted
 * options), the command list, and the dispatcher.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"
#include "cli_opts.h"

typedef struct t_opts {
    cli_common_t common;
    bool flag, quiet, has_when, has_num;
    const char *str, *choice;
    uint64_t count;
    double num, dur, when;
} t_opts_t;

static const cli_opt_t T_OPTS[] = {
    CLI_OPT_ROUTER,
    CLI_OPT_FLAG(t_opts_t, flag, "flag", "a flag"),
    {.name = "quiet",
     .kind = CLI_FLAG,
     .off = offsetof(t_opts_t, quiet),
     .short_name = 'q',
     .label = "--quiet",
     .help = "short too"},
    {.name = "str", .kind = CLI_STR, .off = offsetof(t_opts_t, str)}, /* not listed */
    CLI_OPT_CHOICE(t_opts_t, choice, "choice", "a|bb|c", " (a|bb)", "--choice C",
                   "one of them\nsecond line\nthird line"),
    CLI_OPT_U64(t_opts_t, count, "count", 2, 10, " (2..10)", "--count N", "a count"),
    {.name = "num",
     .kind = CLI_NUM,
     .off = offsetof(t_opts_t, num),
     .given = CLI_GIVEN(t_opts_t, has_num),
     .lo = 0,
     .lo_open = true,
     .hi = 100,
     .label = "--a-very-long-label X",
     .help = "overflows the column"},
    CLI_OPT_DURATION(t_opts_t, dur, "dur", 0.5, false, "--dur S", "at least 0.5 s"),
    {.name = "when",
     .kind = CLI_TIME,
     .off = offsetof(t_opts_t, when),
     .given = CLI_GIVEN(t_opts_t, has_when),
     .label = "--when T",
     .help = "a time"},
    CLI_OPT_TIMEOUT("inactivity timeout"),
    CLI_OPT_END,
};

static const t_opts_t T_DEFAULTS = {.common = CLI_COMMON_DEFAULTS, .count = 5, .str = "dflt"};

static int ran, ran_argc;
static char **ran_argv;
static t_opts_t ran_opts;

static int t_run(void *opts, int argc, char **argv)
{
    ran++;
    ran_argc = argc;
    ran_argv = argv;
    ran_opts = *(t_opts_t *)opts;
    return 7;
}

static const cli_cmd_t T_CMD = {
    .name = "tcmd",
    .args = "THING",
    .summary = "test command",
    .synopsis = "tcmd THING... [options]",
    .about = "About it.\n",
    .footer = "\nThe end.\n",
    .help_col = 20,
    .min_args = 1,
    .max_args = 2,
    .too_many = "too many things",
    .opts = T_OPTS,
    .opts_size = sizeof(t_opts_t),
    .defaults = &T_DEFAULTS,
    .run = t_run,
};

/* Parse a NULL-terminated argument list into *o; returns cli_opts_parse()'s code. */
static int parse(t_opts_t *o, int *first, const char *arg0, ...)
{
    static char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, arg0);
    for (const char *a = arg0; a && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    return cli_opts_parse(&T_CMD, argc, argv, o, first);
}

static void test_kinds_and_defaults(void **state)
{
    (void)state;
    t_opts_t o;
    int first = 0;
    assert_int_equal(parse(&o, &first, "tcmd", "x", NULL), CLI_PARSED);
    assert_int_equal(first, 1);
    assert_int_equal(o.count, 5);
    assert_string_equal(o.str, "dflt");
    assert_null(o.common.router);
    assert_true(o.common.timeout == CLI_IO_TIMEOUT_S);
    assert_true(o.common.now > 1.6e9);
    assert_false(o.flag || o.quiet || o.has_when || o.has_num);

    assert_int_equal(parse(&o, &first, "tcmd", "--flag", "-q", "--str", "s", "--choice=bb",
                           "--count", "10", "--num", "2.5", "--dur", "1m30s", "--when",
                           "2016-01-01T00:00:00Z", "--router", "http://h:1", "--timeout", "500ms",
                           "a", "b", NULL),
                     CLI_PARSED);
    assert_true(o.flag && o.quiet && o.has_when && o.has_num);
    assert_string_equal(o.str, "s");
    assert_string_equal(o.choice, "bb");
    assert_int_equal(o.count, 10);
    assert_true(o.num == 2.5);
    assert_true(o.dur == 90);
    assert_true(o.when == 1451606400);
    assert_string_equal(o.common.router, "http://h:1");
    assert_true(o.common.timeout == 0.5);
    assert_int_equal(first, 18);
    /* relative times count from the parse time */
    assert_int_equal(parse(&o, &first, "tcmd", "--when", "now-1h", "x", NULL), CLI_PARSED);
    assert_true(o.when == o.common.now - 3600);
    /* options after positionals (GNU permutation) */
    assert_int_equal(parse(&o, &first, "tcmd", "x", "--count", "3", NULL), CLI_PARSED);
    assert_int_equal(o.count, 3);
    assert_int_equal(first, 3);
    /* bounds that are inclusive */
    assert_int_equal(
        parse(&o, &first, "tcmd", "--count", "2", "--dur", "0.5", "--num", "100", "x", NULL),
        CLI_PARSED);
}

/* Usage errors go to stderr: keep the test output clean. */
static FILE *quiet_stderr(void)
{
    FILE *saved = stderr;
    stderr = fopen("/dev/null", "w");
    return saved;
}

static void restore_stderr(FILE *saved)
{
    fclose(stderr);
    stderr = saved;
}

static void test_usage_errors(void **state)
{
    (void)state;
    t_opts_t o;
    int first;
    FILE *err = quiet_stderr();
    static const char *const bad[][2] = {
        {"--count", "1"},    {"--count", "11"},  {"--count", "x"},   {"--count", "-3"},
        {"--choice", "d"},   {"--choice", "b"},  {"--num", "0"},     {"--num", "100.5"},
        {"--num", "nan"},    {"--num", "1x"},    {"--dur", "0.4"},   {"--dur", "5x"},
        {"--when", "never"}, {"--timeout", "0"}, {"--timeout", "x"}, {"--bogus", "x"},
        {"-z", "x"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse(&o, &first, "tcmd", bad[i][0], bad[i][1], "x", NULL) != CLI_EXIT_USAGE)
            fail_msg("accepted %s %s", bad[i][0], bad[i][1]);
    assert_int_equal(parse(&o, &first, "tcmd", "x", "--count", NULL), CLI_EXIT_USAGE);
    /* positional counts */
    assert_int_equal(parse(&o, &first, "tcmd", NULL), CLI_EXIT_USAGE);
    assert_int_equal(parse(&o, &first, "tcmd", "a", "b", "c", NULL), CLI_EXIT_USAGE);
    /* --help answers before anything after it is looked at */
    FILE *saved = stdout;
    stdout = fopen("/dev/null", "w");
    int rc = parse(&o, &first, "tcmd", "--help", "--count", "99", NULL);
    fclose(stdout);
    stdout = saved;
    assert_int_equal(rc, CLI_EXIT_OK);
    restore_stderr(err);
}

static void test_help_layout(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cli_cmd_help(&T_CMD, f);
    fclose(f);
    assert_string_equal(text, "usage: strata tcmd THING... [options]\n"
                              "\n"
                              "About it.\n"
                              "  --router URL      router address (default " CLI_DEFAULT_ROUTER
                              ", env STRATA_ROUTER)\n"
                              "  --flag            a flag\n"
                              "  --quiet           short too\n"
                              "  --choice C        one of them\n"
                              "                    second line\n"
                              "                    third line\n"
                              "  --count N         a count\n"
                              "  --a-very-long-label Xoverflows the column\n"
                              "  --dur S           at least 0.5 s\n"
                              "  --when T          a time\n"
                              "  --timeout SECS    inactivity timeout (default 60)\n"
                              "\n"
                              "The end.\n");
    free(text);
}

static const cli_cmd_t T_CMD2 = {
    .name = "other",
    .args = "",
    .summary = "another one",
    .synopsis = "other",
    .about = "",
    .help_col = 10,
    .max_args = 0,
    .opts = T_OPTS,
    .opts_size = sizeof(t_opts_t),
    .defaults = &T_DEFAULTS,
    .run = t_run,
};

static void test_usage_and_dispatch(void **state)
{
    (void)state;
    const cli_cmd_t *cmds[] = {&T_CMD, &T_CMD2};
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cli_usage(f, cmds, 2);
    fclose(f);
    assert_string_equal(text, "usage: strata <command> [options]\n"
                              "\n"
                              "Commands:\n"
                              "  tcmd THING          test command\n"
                              "  other               another one\n"
                              "\n"
                              "Every command takes --router URL (default " CLI_DEFAULT_ROUTER
                              ", env STRATA_ROUTER)\n"
                              "and --help. Exit codes: 0 ok, 1 failure, 2 usage error.\n");
    free(text);

    char *argv[] = {"strata", "tcmd", "--count", "4", "one", "two", NULL};
    ran = 0;
    assert_int_equal(cli_dispatch(cmds, 2, 6, argv), 7);
    assert_int_equal(ran, 1);
    assert_int_equal(ran_argc, 2);
    assert_string_equal(ran_argv[0], "one");
    assert_string_equal(ran_argv[1], "two");
    assert_int_equal(ran_opts.count, 4);
    /* a usage error never runs the command */
    FILE *err = quiet_stderr();
    char *bad[] = {"strata", "other", "extra", NULL};
    assert_int_equal(cli_dispatch(cmds, 2, 3, bad), CLI_EXIT_USAGE);
    assert_int_equal(ran, 1);
    char *unknown[] = {"strata", "nope", NULL};
    assert_int_equal(cli_dispatch(cmds, 2, 2, unknown), CLI_EXIT_USAGE);
    assert_int_equal(cli_dispatch(cmds, 2, 1, unknown), CLI_EXIT_USAGE);
    restore_stderr(err);
    FILE *saved = stdout;
    stdout = fopen("/dev/null", "w");
    char *ver[] = {"strata", "--version", NULL};
    char *help[] = {"strata", "help", NULL};
    assert_int_equal(cli_dispatch(cmds, 2, 2, ver), CLI_EXIT_OK);
    assert_int_equal(cli_dispatch(cmds, 2, 2, help), CLI_EXIT_OK);
    fclose(stdout);
    stdout = saved;
    assert_int_equal(ran, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds_and_defaults),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_help_layout),
        cmocka_unit_test(test_usage_and_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

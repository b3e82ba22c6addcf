/*
 * Unit tests for st_opts: targets filled from the table, the built-in
 * --help/--version/--log-level, the exit statuses, and the usage text
 * (column alignment, continuation lines, unlisted options). Output is
 * captured with open_memstream.
 */
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "st_log.h"
#include "st_opts.h"

typedef struct cap {
    char *out, *err;
    size_t outlen, errlen;
    FILE *fo, *fe;
} cap_t;

typedef struct prog {
    const char *config, *dir;
    int check;
} prog_t;

static prog_t P;

static const st_opt_t OPTS[] = {
    ST_OPT_REQUIRED("config", "FILE", "the config", &P.config),
    ST_OPT_STR("dir", "DIR", "where data goes", &P.dir),
    ST_OPT_FLAG("check", "validate and exit\n(second line)", &P.check),
    ST_OPT_FLAG("secret", NULL, NULL), /* accepted, not listed */
};

/* Parse a NULL-terminated argv; output captured in c (free with cap_free). */
static int run(cap_t *c, const char **args)
{
    char *argv[16];
    int argc = 0;
    argv[argc++] = "prog";
    while (*args)
        argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    memset(c, 0, sizeof *c);
    memset(&P, 0, sizeof P);
    c->fo = open_memstream(&c->out, &c->outlen);
    c->fe = open_memstream(&c->err, &c->errlen);
    assert_non_null(c->fo);
    assert_non_null(c->fe);
    st_opts_spec_t spec = {"prog", "1.2.3", "--config FILE [--check]",
                           14,     OPTS,    sizeof OPTS / sizeof OPTS[0],
                           c->fo,  c->fe};
    opterr = 0; /* getopt's own message would go to the real stderr */
    int rc = st_opts_parse(&spec, argc, argv);
    fclose(c->fo);
    fclose(c->fe);
    return rc;
}

static void cap_free(cap_t *c)
{
    free(c->out);
    free(c->err);
}

static const char USAGE[] = "usage: prog --config FILE [--check]\n"
                            "            [--log-level debug|info|warn|error]\n"
                            "\n"
                            "  --config FILE  the config\n" /* wider than the column */
                            "  --dir DIR   where data goes\n"
                            "  --check     validate and exit\n"
                            "              (second line)\n"
                            "  --version, --help\n";

static void test_targets(void **state)
{
    cap_t c;
    const char *a[] = {"--config", "x.ini", "--check", "--dir=/d", NULL};
    assert_int_equal(run(&c, a), ST_OPTS_RUN);
    assert_string_equal(P.config, "x.ini");
    assert_string_equal(P.dir, "/d");
    assert_int_equal(P.check, 1);
    assert_int_equal(c.outlen + c.errlen, 0);
    cap_free(&c);
    const char *b[] = {"--conf=y.ini", NULL}; /* unambiguous abbreviation */
    assert_int_equal(run(&c, b), ST_OPTS_RUN);
    assert_string_equal(P.config, "y.ini");
    assert_null(P.dir);
    assert_int_equal(P.check, 0);
    cap_free(&c);
}

static void test_help_and_version(void **state)
{
    cap_t c;
    const char *h[] = {"--help", "--bogus", NULL};
    assert_int_equal(run(&c, h), 0);
    assert_string_equal(c.out, USAGE);
    assert_int_equal(c.errlen, 0);
    cap_free(&c);
    const char *v[] = {"--version", NULL};
    assert_int_equal(run(&c, v), 0);
    assert_string_equal(c.out, "prog 1.2.3\n");
    cap_free(&c);
}

static void test_errors(void **state)
{
    cap_t c;
    const char *missing[] = {"--check", NULL};
    assert_int_equal(run(&c, missing), 2);
    assert_int_equal(strncmp(c.err, "prog: --config is required\nusage: prog", 38), 0);
    cap_free(&c);
    /* a missing required option is reported before a stray argument */
    const char *both[] = {"stray", NULL};
    assert_int_equal(run(&c, both), 2);
    assert_int_equal(strncmp(c.err, "prog: --config is required\n", 27), 0);
    cap_free(&c);
    const char *stray[] = {"--config", "a", "stray", NULL};
    assert_int_equal(run(&c, stray), 2);
    assert_int_equal(strncmp(c.err, "prog: unexpected argument\nusage: prog", 37), 0);
    cap_free(&c);
    const char *unknown[] = {"--config", "a", "--bogus", NULL};
    assert_int_equal(run(&c, unknown), 2);
    assert_string_equal(c.err, USAGE);
    cap_free(&c);
    const char *noarg[] = {"--config", NULL};
    assert_int_equal(run(&c, noarg), 2);
    cap_free(&c);
    const char *ambiguous[] = {"--c", "x", NULL}; /* --config or --check */
    assert_int_equal(run(&c, ambiguous), 2);
    cap_free(&c);
}

static void test_log_level(void **state)
{
    cap_t c;
    int old = st_log_level;
    const char *ok[] = {"--log-level", "error", "--config", "a", NULL};
    assert_int_equal(run(&c, ok), ST_OPTS_RUN);
    assert_int_equal(st_log_level, ST_LOG_ERROR);
    cap_free(&c);
    const char *bad[] = {"--config", "a", "--log-level=loud", NULL};
    assert_int_equal(run(&c, bad), 2);
    assert_string_equal(c.err, "prog: unknown log level 'loud'\n");
    cap_free(&c);
    st_log_set_level(old);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_log_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for router/resp (RESP parser and reply writer) and
 * router/resp_cmd (TS.* argument parsing, the range pipeline, FILTER
 * matching, metadata labels), with expected values worked out by hand from
 * valkey-timeseries' documented semantics. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "resp.h"
#include "resp_cmd.h"
#include "st_err.h"

static resp_arg_t av[RESP_MAX_ARGS];

static int parse(const char *s, size_t *argc, size_t *used, const char **msg)
{
    return resp_parse(s, strlen(s), av, RESP_MAX_ARGS, argc, used, msg);
}

static void test_parse_multibulk(void **state)
{
    (void)state;
    size_t argc, used;
    const char *msg;
    const char *in = "*3\r\n$6\r\nTS.ADD\r\n$1\r\nk\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n";
    assert_int_equal(parse(in, &argc, &used, &msg), RESP_CMD);
    assert_int_equal(argc, 3);
    assert_int_equal(av[0].len, 6);
    assert_memory_equal(av[0].p, "TS.ADD", 6);
    assert_int_equal(av[2].len, 0);
    assert_int_equal(used, 29);
    assert_true(resp_arg_is(&av[0], "ts.add"));
    assert_int_equal(parse(in + used, &argc, &used, &msg), RESP_CMD);
    assert_int_equal(argc, 1);
    /* every proper prefix needs more */
    for (size_t n = 0; n < 29; n++)
        assert_int_equal(resp_parse(in, n, av, RESP_MAX_ARGS, &argc, &used, &msg), RESP_MORE);
    /* bulk payload with CR LF inside is kept */
    assert_int_equal(parse("*1\r\n$4\r\na\r\nb\r\n", &argc, &used, &msg), RESP_CMD);
    assert_memory_equal(av[0].p, "a\r\nb", 4);
}

static void test_parse_errors(void **state)
{
    (void)state;
    size_t argc, used;
    const char *msg;
    assert_int_equal(parse("*x\r\n", &argc, &used, &msg), RESP_ERROR);
    assert_string_equal(msg, "invalid multibulk length");
    assert_int_equal(parse("*200000\r\n", &argc, &used, &msg), RESP_ERROR);
    assert_int_equal(parse("*1\r\n+x\r\n", &argc, &used, &msg), RESP_ERROR);
    assert_string_equal(msg, "expected '$'");
    assert_int_equal(parse("*1\r\n$2000000\r\n", &argc, &used, &msg), RESP_ERROR);
    assert_string_equal(msg, "invalid bulk length");
    assert_int_equal(parse("*1\r\n$-1\r\n", &argc, &used, &msg), RESP_ERROR);
    assert_int_equal(parse("*1\r\n$1\r\nab\r\n", &argc, &used, &msg), RESP_ERROR);
    assert_int_equal(parse("*1\r\n$1\r\nabc", &argc, &used, &msg), RESP_ERROR);
    assert_int_equal(parse("*99999999999999\r\n", &argc, &used, &msg), RESP_ERROR);
    /* capacity given by the caller */
    assert_int_equal(resp_parse("*3\r\n", 4, av, 2, &argc, &used, &msg), RESP_ERROR);
    assert_string_equal(msg, "too many arguments in one command");
    /* an empty multibulk runs nothing */
    assert_int_equal(parse("*0\r\n", &argc, &used, &msg), RESP_CMD);
    assert_int_equal(argc, 0);
    assert_int_equal(used, 4);
}

static void test_parse_inline(void **state)
{
    (void)state;
    size_t argc, used;
    const char *msg;
    assert_int_equal(parse("PING\r\n", &argc, &used, &msg), RESP_CMD);
    assert_int_equal(argc, 1);
    assert_int_equal(used, 6);
    assert_int_equal(parse("  ECHO  \"a b\" 'c'\n", &argc, &used, &msg), RESP_CMD);
    assert_int_equal(argc, 3);
    assert_memory_equal(av[1].p, "a b", 3);
    assert_memory_equal(av[2].p, "c", 1);
    assert_int_equal(parse("\r\n", &argc, &used, &msg), RESP_CMD);
    assert_int_equal(argc, 0);
    assert_int_equal(parse("ECHO \"ab\n", &argc, &used, &msg), RESP_ERROR);
    assert_int_equal(parse("PING", &argc, &used, &msg), RESP_MORE);
    static char big[RESP_MAX_INLINE + 10];
    memset(big, 'a', sizeof big - 1);
    assert_int_equal(parse(big, &argc, &used, &msg), RESP_ERROR);
    assert_string_equal(msg, "too big inline request");
}

static void expect_out(st_buf_t *b, const char *want)
{
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(b->data, want, b->len);
    b->len = 0;
}

static void test_writer(void **state)
{
    (void)state;
    st_buf_t b;
    st_buf_init(&b);
    resp_simple(&b, "OK");
    expect_out(&b, "+OK\r\n");
    resp_error(&b, "ERR a\r\nb");
    expect_out(&b, "-ERR a  b\r\n");
    resp_int(&b, -42);
    expect_out(&b, ":-42\r\n");
    resp_bulk(&b, "hi", 2);
    expect_out(&b, "$2\r\nhi\r\n");
    resp_null(&b, 2);
    expect_out(&b, "$-1\r\n");
    resp_null(&b, 3);
    expect_out(&b, "_\r\n");
    resp_map(&b, 2, 3);
    expect_out(&b, "*6\r\n");
    resp_map(&b, 3, 3);
    expect_out(&b, "%3\r\n");
    resp_set(&b, 3, 2);
    expect_out(&b, "~2\r\n");
    /* values: shortest round trip, no exponent; RESP3 doubles */
    resp_double(&b, 2, 0.1);
    expect_out(&b, "+0.1\r\n");
    resp_double(&b, 2, 90);
    expect_out(&b, "+90\r\n");
    resp_double(&b, 2, 1e21);
    expect_out(&b, "+1000000000000000000000\r\n");
    resp_double(&b, 3, 0.30000000000000004);
    expect_out(&b, ",0.30000000000000004\r\n");
    resp_double(&b, 3, NAN);
    expect_out(&b, ",nan\r\n");
    resp_double(&b, 3, -INFINITY);
    expect_out(&b, ",-inf\r\n");
    resp_double(&b, 3, INFINITY);
    expect_out(&b, ",inf\r\n");
    resp_double_bulk(&b, 2.5);
    expect_out(&b, "$3\r\n2.5\r\n");
    st_buf_deinit(&b);
}

/* argv from a space-separated string (kept in a static buffer). */
static size_t words(const char *s)
{
    static char buf[4096];
    strncpy(buf, s, sizeof buf - 1);
    size_t n = 0;
    char *p = buf;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        char *w = p;
        while (*p && *p != ' ')
            p++;
        av[n].p = w;
        av[n].len = (size_t)(p - w);
        n++;
    }
    return n;
}

static void test_tsopts(void **state)
{
    (void)state;
    resp_tsopts_t o;
    char err[200];
    size_t n = words("RETENTION 60000 ENCODING UNCOMPRESSED CHUNK_SIZE 128 DUPLICATE_POLICY max "
                     "IGNORE 10 0.5 LABELS a 1 b 2");
    assert_int_equal(resp_tsopts_parse(av, n, RESP_OPTS_CREATE, &o, err, sizeof err), 0);
    assert_int_equal(o.retention_ms, 60000);
    assert_int_equal(o.compressed, 0);
    assert_int_equal(o.chunk_size, 128);
    assert_int_equal(o.dup, DUP_MAX);
    assert_int_equal(o.ignore_max_time, 10);
    assert_true(o.ignore_max_val == 0.5);
    assert_int_equal(o.nlabels, 2);
    n = words("ON_DUPLICATE sum");
    assert_int_equal(resp_tsopts_parse(av, n, RESP_OPTS_ADD, &o, err, sizeof err), 0);
    assert_int_equal(o.on_dup, DUP_SUM);
    assert_int_equal(resp_tsopts_parse(av, n, RESP_OPTS_CREATE, &o, err, sizeof err), -1);
    n = words("TIMESTAMP * UNCOMPRESSED");
    assert_int_equal(resp_tsopts_parse(av, n, RESP_OPTS_INCR, &o, err, sizeof err), 0);
    assert_true(o.ts_now);
    static const char *const bad[] = {"RETENTION -1",       "RETENTION", "CHUNK_SIZE 7",
                                      "DUPLICATE_POLICY x", "LABELS a",  "LABELS __ts_x y",
                                      "LABELS __name__ y",  "IGNORE 1",  "FOO"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = words(bad[i]);
        assert_int_equal(resp_tsopts_parse(av, n, RESP_OPTS_CREATE, &o, err, sizeof err), -1);
        assert_memory_equal(err, "TSDB: ", 6);
    }
}

static void test_filters(void **state)
{
    (void)state;
    st_matcher_t m[RESP_TS_MAX_FILTERS];
    size_t nm;
    char err[200];
    size_t n = words("a=1 b!=2 c= d!= e=(x,y.z) f!=(p,q)");
    assert_int_equal(resp_filter_parse(av, n, m, RESP_TS_MAX_FILTERS, &nm, err, sizeof err), 0);
    assert_int_equal(nm, 6);
    assert_int_equal(m[1].type, ST_MATCH_NE);
    assert_int_equal(m[4].type, ST_MATCH_RE);
    assert_string_equal(m[4].value, "x|y\\.z");
    const char *kv1[] = {"a", "1", "d", "v", "e", "y.z"};
    assert_true(resp_labels_match(m, nm, kv1, 3));
    const char *kv2[] = {"a", "1", "d", "v", "e", "yaz"}; /* '.' is literal */
    assert_false(resp_labels_match(m, nm, kv2, 3));
    const char *kv3[] = {"a", "1", "d", "v", "e", "x", "c", "set"}; /* c= : c absent */
    assert_false(resp_labels_match(m, nm, kv3, 4));
    const char *kv4[] = {"a", "1", "e", "x"}; /* d!= : d present */
    assert_false(resp_labels_match(m, nm, kv4, 2));
    const char *kv5[] = {"a", "1", "d", "v", "e", "x", "f", "p"};
    assert_false(resp_labels_match(m, nm, kv5, 4));
    resp_matchers_free(m, nm);
    n = words("a!=1 b=");
    assert_int_equal(resp_filter_parse(av, n, m, RESP_TS_MAX_FILTERS, &nm, err, sizeof err), -1);
    assert_string_equal(err, "TSDB: please provide at least one matcher");
    n = words("=1");
    assert_int_equal(resp_filter_parse(av, n, m, RESP_TS_MAX_FILTERS, &nm, err, sizeof err), -1);
    n = words("nonsense");
    assert_int_equal(resp_filter_parse(av, n, m, RESP_TS_MAX_FILTERS, &nm, err, sizeof err), -1);
    /* more filters than room: refused, and the ones parsed are freed (the
     * sanitizer build reports a leak otherwise; found by fuzz_resp_cmd) */
    n = words("a=1 b=2 c=3");
    assert_int_equal(resp_filter_parse(av, n, m, 2, &nm, err, sizeof err), -1);
    assert_string_equal(err, "TSDB: too many filters (at most 2)");
    assert_int_equal(nm, 0);
}

static resp_samples_t series(const int64_t *ts, const double *v, size_t n)
{
    resp_samples_t s = {0};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(resp_samples_push(&s, ts[i], v[i]), 0);
    return s;
}

static const int64_t TS[] = {0, 1000, 2000, 3000, 25000, 27000, 41000};
static const double VS[] = {1, 2, 3, 6, 10, 20, 5};

static void run(const char *opts, int64_t *ts_out, double *v_out, size_t *n)
{
    resp_range_t o;
    char err[200];
    size_t k = words(opts);
    assert_int_equal(resp_range_parse(av, k, RESP_RANGE_ONE, &o, err, sizeof err), 0);
    resp_samples_t s = series(TS, VS, 7);
    assert_int_equal(resp_range_apply(&o, &s), 0);
    *n = s.n;
    memcpy(ts_out, s.ts, s.n * sizeof *ts_out);
    memcpy(v_out, s.v, s.n * sizeof *v_out);
    resp_samples_free(&s);
    resp_range_free(&o);
}

static void test_range_pipeline(void **state)
{
    (void)state;
    int64_t t[64];
    double v[64];
    size_t n;
    run("- + AGGREGATION sum 10000", t, v, &n);
    assert_int_equal(n, 3);
    assert_int_equal(t[1], 20000);
    assert_true(v[0] == 12 && v[1] == 30 && v[2] == 5);
    run("- + AGGREGATION avg 10000 EMPTY", t, v, &n);
    assert_int_equal(n, 5);
    assert_true(isnan(v[1]) && v[2] == 15);
    run("- + AGGREGATION count 10000 EMPTY BUCKETTIMESTAMP end", t, v, &n);
    assert_int_equal(t[0], 10000);
    assert_true(v[1] == 0);
    run("1000 + ALIGN start AGGREGATION range 10000", t, v, &n);
    assert_int_equal(n, 3);
    assert_int_equal(t[0], 1000);
    assert_true(v[0] == 4 && v[1] == 10 && v[2] == 0);
    run("- + AGGREGATION std.s 10000 BUCKETTIMESTAMP mid", t, v, &n);
    assert_int_equal(t[0], 5000);
    assert_true(fabs(v[0] - sqrt(((1 - 3.0) * (1 - 3.0) + 1 + 0 + 9) / 3)) < 1e-12);
    assert_true(v[2] == 0);
    run("- + AGGREGATION twa 10000", t, v, &n);
    assert_true(fabs(v[0] - (1 + 2 + 3 + 6 * 7) / 10.0) < 1e-12);
    run("- + FILTER_BY_TS 3000 1000 41000 FILTER_BY_VALUE 2 5", t, v, &n);
    assert_int_equal(n, 2);
    assert_int_equal(t[0], 1000);
    assert_int_equal(t[1], 41000);
    run("2000 27000 COUNT 2", t, v, &n);
    assert_int_equal(n, 2);
    assert_int_equal(t[1], 3000);
    /* reverse order, COUNT from the newest */
    resp_range_t o;
    char err[200];
    size_t k = words("- + COUNT 2");
    assert_int_equal(resp_range_parse(av, k, RESP_RANGE_ONE, &o, err, sizeof err), 0);
    o.rev = 1;
    resp_samples_t s = series(TS, VS, 7);
    assert_int_equal(resp_range_apply(&o, &s), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.ts[0], 41000);
    assert_int_equal(s.ts[1], 27000);
    resp_samples_free(&s);
    resp_range_free(&o);
    /* EMPTY over too many buckets is refused, not allocated */
    k = words("- + AGGREGATION sum 1 EMPTY");
    assert_int_equal(resp_range_parse(av, k, RESP_RANGE_ONE, &o, err, sizeof err), 0);
    int64_t far[] = {0, (int64_t)RESP_TS_MAX_BUCKETS * 2};
    double fv[] = {1, 2};
    s = series(far, fv, 2);
    assert_int_equal(resp_range_apply(&o, &s), ST_ELIMIT);
    resp_samples_free(&s);
    resp_range_free(&o);
}

static void test_range_parse(void **state)
{
    (void)state;
    resp_range_t o;
    char err[200];
    size_t n = words("- + WITHLABELS COUNT 3 FILTER a=b c!=(d) GROUPBY a REDUCE max");
    assert_int_equal(resp_range_parse(av, n, RESP_RANGE_MULTI, &o, err, sizeof err), 0);
    assert_true(o.withlabels);
    assert_int_equal(o.nfilters, 2);
    assert_int_equal(o.reducer, AGG_MAX);
    assert_true(resp_arg_is(o.groupby, "a"));
    resp_range_free(&o);
    n = words("SELECTED_LABELS x y FILTER a=b");
    assert_int_equal(resp_range_parse(av, n, RESP_RANGE_MGET, &o, err, sizeof err), 0);
    assert_int_equal(o.nselected, 2);
    resp_range_free(&o);
    static const struct {
        int kind;
        const char *args, *err;
    } bad[] = {
        {RESP_RANGE_ONE, "x +", "TSDB: invalid fromTimestamp"},
        {RESP_RANGE_ONE, "- y", "TSDB: invalid toTimestamp"},
        {RESP_RANGE_ONE, "- + AGGREGATION median 10", "TSDB: unknown aggregation type"},
        {RESP_RANGE_ONE, "- + AGGREGATION sum 0", "TSDB: bucketDuration must be greater than zero"},
        {RESP_RANGE_ONE, "- + COUNT 0", "TSDB: Invalid COUNT value"},
        {RESP_RANGE_ONE, "- + EMPTY", "TSDB: ALIGN, BUCKETTIMESTAMP and EMPTY need AGGREGATION"},
        {RESP_RANGE_ONE, "- + FILTER a=b", "TSDB: unknown argument 'FILTER'"},
        {RESP_RANGE_MULTI, "- + COUNT 1", "TSDB: missing FILTER argument"},
        {RESP_RANGE_MULTI, "- + FILTER a=b GROUPBY a", "TSDB: missing REDUCE"},
        {RESP_RANGE_MULTI, "- + FILTER a=b GROUPBY a REDUCE twa", "TSDB: failed parsing reducer"},
        {RESP_RANGE_MGET, "WITHLABELS SELECTED_LABELS a FILTER a=b",
         "TSDB: cannot accept WITHLABELS and SELECT_LABELS together"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = words(bad[i].args);
        assert_int_equal(resp_range_parse(av, n, bad[i].kind, &o, err, sizeof err), -1);
        assert_string_equal(err, bad[i].err);
    }
}

static void test_meta_labels(void **state)
{
    (void)state;
    resp_meta_t m, back;
    resp_meta_default(&m);
    m.retention_ms = 5000;
    m.dup = DUP_FIRST;
    m.ignore_max_time = 10;
    m.ignore_max_val = 0.25;
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(resp_meta_to_json(&b, &m), 0);
    assert_int_equal(st_buf_put_u8(&b, 0), 0);
    const char *j = (const char *)b.data;
    assert_non_null(strstr(j, "\"__ts_retention__\":\"5000\""));
    assert_non_null(strstr(j, "\"__ts_dup__\":\"first\""));
    assert_non_null(strstr(j, "\"__ts_ignore__\":\"10,0.25\""));
    resp_meta_default(&back);
    assert_true(resp_meta_label(&back, "__ts_retention__", "5000"));
    assert_true(resp_meta_label(&back, "__ts_dup__", "first"));
    assert_true(resp_meta_label(&back, "__ts_ignore__", "10,0.25"));
    assert_false(resp_meta_label(&back, "room", "x"));
    assert_int_equal(back.retention_ms, 5000);
    assert_int_equal(back.dup, DUP_FIRST);
    assert_int_equal(back.ignore_max_time, 10);
    assert_true(back.ignore_max_val == 0.25);
    st_buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_multibulk), cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_inline),    cmocka_unit_test(test_writer),
        cmocka_unit_test(test_tsopts),          cmocka_unit_test(test_filters),
        cmocka_unit_test(test_range_pipeline),  cmocka_unit_test(test_range_parse),
        cmocka_unit_test(test_meta_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

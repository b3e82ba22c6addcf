/*
 * test_cli_json — the CLI's JSON layer over jansson (cli/cli_json.h) and the
 * extraction the commands do with it: the /cluster document status reads,
 * Prometheus query results (values as strings), export lines with the bare
 * NaN/Infinity literals the router writes, exact number text (integers,
 * shortest reals, big integers, -0), error positions, series and CSV
 * formatting.
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
#include "cli_json.h"
#include "st_buf.h"

static json_t *parse_ok(const char *s)
{
    char err[200] = "";
    json_t *v = cli_json_parse(s, strlen(s), err, sizeof(err));
    if (v == NULL)
        fail_msg("'%s': %s", s, err);
    return v;
}

/* cli_json_text() of v as a fresh comparison string. */
static const char *text(const json_t *v)
{
    static char nb[CLI_JSON_NUMBUF];
    return cli_json_text(v, nb, NULL);
}

static void test_json_cluster(void **state)
{
    (void)state;
    json_t *root = parse_ok(
        "{\"cluster\":\"demo\",\"fingerprint\":\"9f3c\",\"shards\":12,\"replication_factor\":3,"
        "\"nodes\":[{\"id\":\"n1\",\"rpc\":\"127.0.0.1:7401\",\"state\":\"up\"},"
        "{\"id\":\"n2\",\"state\":\"down\",\"lag\":-1.5e3,\"ok\":false,\"x\":null,"
        "\"hints_pending\":18446744073709551615}],"
        "\"placement\":[{\"shard\":0,\"replicas\":[\"n1\",\"n2\"]}],\"empty\":{},\"e2\":[]}");
    assert_true(json_is_object(root));
    assert_int_equal(json_object_size(root), 8);
    assert_string_equal(json_string_value(json_object_get(root, "cluster")), "demo");
    assert_true(cli_json_num(json_object_get(root, "shards"), 0) == 12);
    json_t *nodes = json_object_get(root, "nodes");
    assert_int_equal(json_array_size(nodes), 2);
    json_t *n2 = json_array_get(nodes, 1);
    assert_string_equal(json_string_value(json_object_get(n2, "id")), "n2");
    assert_true(cli_json_num(json_object_get(n2, "lag"), 0) == -1500.0);
    assert_string_equal(text(json_object_get(n2, "lag")), "-1500");
    assert_string_equal(text(json_object_get(n2, "ok")), "false");
    assert_string_equal(text(json_object_get(n2, "x")), "null");
    /* a counter past int64 keeps its digits */
    assert_string_equal(text(json_object_get(n2, "hints_pending")), "18446744073709551615");
    assert_null(json_array_get(nodes, 2));
    assert_null(json_object_get(root, "nope"));
    assert_null(json_string_value(json_object_get(root, "shards")));
    json_t *reps =
        json_object_get(json_array_get(json_object_get(root, "placement"), 0), "replicas");
    assert_string_equal(json_string_value(json_array_get(reps, 1)), "n2");
    assert_int_equal(json_object_size(json_object_get(root, "empty")), 0);
    assert_true(json_is_array(json_object_get(root, "e2")));
    /* members come in document order (status prints them that way) */
    static const char *const order[] = {"cluster", "fingerprint", "shards", "replication_factor",
                                        "nodes",   "placement",   "empty",  "e2"};
    const char *key;
    json_t *v;
    size_t i = 0;
    json_object_foreach(root, key, v) assert_string_equal(key, order[i++]);
    /* absent and wrong-typed values are NULL/"" all the way down */
    assert_string_equal(text(NULL), "");
    assert_string_equal(text(nodes), "");
    assert_null(json_object_get(json_array_get(NULL, 0), "x"));
    json_decref(root);
}

static void test_json_numbers(void **state)
{
    (void)state;
    json_t *a = parse_ok("[\"1.5\", NaN, -Inf, +Inf, 0, -0.25, 1E+2, \"NaN\", Infinity, -Infinity,"
                         " -0, 0.1, 1451606400000, 123456789012345678901234567890, 1e300, "
                         "9007199254740993, 2.5e-7, true, -NaN]");
    assert_true(cli_json_num(json_array_get(a, 0), 0) == 1.5); /* sample values are strings */
    assert_true(isnan(cli_json_num(json_array_get(a, 1), 0)));
    assert_string_equal(text(json_array_get(a, 1)), "NaN");
    assert_true(isinf(cli_json_num(json_array_get(a, 2), 0)) &&
                cli_json_num(json_array_get(a, 2), 0) < 0);
    assert_string_equal(text(json_array_get(a, 2)), "-Inf");
    assert_true(isinf(cli_json_num(json_array_get(a, 3), 0)) &&
                cli_json_num(json_array_get(a, 3), 0) > 0);
    assert_string_equal(text(json_array_get(a, 4)), "0");
    assert_true(cli_json_num(json_array_get(a, 5), 0) == -0.25);
    assert_string_equal(text(json_array_get(a, 5)), "-0.25");
    assert_true(cli_json_num(json_array_get(a, 6), 0) == 100);
    assert_string_equal(text(json_array_get(a, 6)), "100");
    assert_true(isnan(cli_json_num(json_array_get(a, 7), 0)));
    /* what export_json writes for infinities and -0 */
    assert_string_equal(text(json_array_get(a, 8)), "Infinity");
    assert_true(isinf(cli_json_num(json_array_get(a, 8), 0)));
    assert_string_equal(text(json_array_get(a, 9)), "-Infinity");
    assert_true(cli_json_num(json_array_get(a, 9), 0) < 0);
    assert_string_equal(text(json_array_get(a, 10)), "-0");
    assert_true(signbit(cli_json_num(json_array_get(a, 10), 1)));
    /* shortest text that reads back, exact integers, big integers verbatim */
    assert_string_equal(text(json_array_get(a, 11)), "0.1");
    assert_string_equal(text(json_array_get(a, 12)), "1451606400000");
    assert_string_equal(text(json_array_get(a, 13)), "123456789012345678901234567890");
    assert_true(cli_json_num(json_array_get(a, 13), 0) == 123456789012345678901234567890.0);
    assert_string_equal(text(json_array_get(a, 14)), "1e+300");
    assert_string_equal(text(json_array_get(a, 15)), "9007199254740993");
    assert_string_equal(text(json_array_get(a, 16)), "2.5e-07");
    assert_true(cli_json_num(json_array_get(a, 17), 0) == 1);
    assert_true(isnan(cli_json_num(json_array_get(a, 18), 0)));
    assert_true(cli_json_num(NULL, 7) == 7);
    assert_true(cli_json_num(json_array_get(a, 99), 7) == 7);
    json_decref(a);
    /* a lone scalar is a document too */
    a = parse_ok(" 42 ");
    assert_string_equal(text(a), "42");
    json_decref(a);
}

static void test_json_strings(void **state)
{
    (void)state;
    json_t *a = parse_ok("[\"a\\\"b\\\\c\\/\\n\\t\", \"\\u00e9\\u20ac\\ud83d\\ude00\","
                         " \"NaN inside, -0 and 12345678901234567890 too\", \"a\\u0000b\"]");
    assert_string_equal(json_string_value(json_array_get(a, 0)), "a\"b\\c/\n\t");
    assert_string_equal(json_string_value(json_array_get(a, 1)),
                        "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    /* literals inside strings are left alone */
    assert_string_equal(json_string_value(json_array_get(a, 2)),
                        "NaN inside, -0 and 12345678901234567890 too");
    /* an embedded NUL keeps its length */
    size_t len = 0;
    char nb[CLI_JSON_NUMBUF];
    const char *s = cli_json_text(json_array_get(a, 3), nb, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "a\0b", 3);
    json_decref(a);
}

static void test_json_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {"",        "{",         "[1,]", "{\"a\" 1}", "{\"a\":1,}",
                                      "[01]",    "[1.]",      "[.5]", "[1e]",      "\"abc",
                                      "\"\\x\"", "\"\\u12\"", "tru",  "nul",       "[1] 2",
                                      "{1:2}",   "\"a\nb\"",  "-",    "{\"a\":}",  "[NaN NaN]"};
    char err[200];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        json_t *v = cli_json_parse(bad[i], strlen(bad[i]), err, sizeof(err));
        if (v != NULL)
            fail_msg("accepted '%s'", bad[i]);
        if (strncmp(err, "line ", 5) != 0)
            fail_msg("'%s': error '%s'", bad[i], err);
    }
    /* the position is in the caller's bytes: line 3, the bad token's (last) byte */
    assert_null(cli_json_parse("[\n  1,\n  x]", 11, err, sizeof(err)));
    assert_string_equal(err, "line 3 col 3: invalid token near 'x'");
    /* ... also after literals that were quoted for jansson */
    assert_null(cli_json_parse("[NaN, -Inf, }", 13, err, sizeof(err)));
    assert_int_equal(strncmp(err, "line 1 col 13", 13), 0);
    /* deep nesting: jansson's limit (2048) */
    char deep[6000];
    memset(deep, '[', 3000);
    memset(deep + 3000, ']', 3000);
    assert_null(cli_json_parse(deep, sizeof(deep), err, sizeof(err)));
    json_t *v = cli_json_parse(deep + 2900, 200, err, sizeof(err)); /* 100 levels is fine */
    assert_non_null(v);
    json_decref(v);
    /* NULL err is allowed */
    assert_null(cli_json_parse("{", 1, NULL, 0));
}

static void test_fmt_series_csv(void **state)
{
    (void)state;
    json_t *d = parse_ok("[{\"__name__\":\"cpu_usage_user\",\"host\":\"h\\\"1\\n\"},"
                         "{\"__name__\":\"my.metric\",\"a.b\":\"c\",\"d\":\"e\"},{},{\"x\":\"y\"},"
                         "{\"__name__\":\"up\"},{\"n\":5}]");
    static const char *const want[] = {"cpu_usage_user{host=\"h\\\"1\\n\"}",
                                       "{\"my.metric\",\"a.b\"=\"c\",d=\"e\"}",
                                       "{}",
                                       "{x=\"y\"}",
                                       "up",
                                       "{n=\"5\"}"};
    st_buf_t b;
    st_buf_init(&b);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        st_buf_reset(&b);
        assert_int_equal(cli_fmt_series(&b, json_array_get(d, i)), 0);
        st_buf_put_u8(&b, 0);
        assert_string_equal((char *)b.data, want[i]);
    }
    st_buf_reset(&b);
    assert_int_equal(cli_fmt_series(&b, NULL), 0);
    st_buf_put_u8(&b, 0);
    assert_string_equal((char *)b.data, "{}");
    st_buf_reset(&b);
    cli_csv_field(&b, "plain", 5);
    st_buf_put_u8(&b, ',');
    cli_csv_field(&b, "a,\"b\"", 5);
    st_buf_put_u8(&b, 0);
    assert_string_equal((char *)b.data, "plain,\"a,\"\"b\"\"\"");
    st_buf_deinit(&b);
    json_decref(d);
}

/* The extraction `strata query` does: status, warnings, a matrix's pairs. */
static void test_query_result(void **state)
{
    (void)state;
    json_t *r = parse_ok(
        "{\"status\":\"success\",\"warnings\":[\"w1\"],\"data\":{\"resultType\":\"matrix\","
        "\"result\":[{\"metric\":{\"__name__\":\"m\"},\"values\":[[1451606400,\"1\"],"
        "[1451606400.5,\"NaN\"],[1451606401,\"+Inf\"]]}]}}");
    assert_string_equal(json_string_value(json_object_get(r, "status")), "success");
    json_t *data = json_object_get(r, "data");
    assert_string_equal(json_string_value(json_object_get(data, "resultType")), "matrix");
    json_t *vals = json_object_get(json_array_get(json_object_get(data, "result"), 0), "values");
    assert_int_equal(json_array_size(vals), 3);
    assert_true(cli_json_num(json_array_get(json_array_get(vals, 1), 0), 0) == 1451606400.5);
    assert_string_equal(text(json_array_get(json_array_get(vals, 1), 1)), "NaN");
    assert_true(isinf(cli_json_num(json_array_get(json_array_get(vals, 2), 1), 0)));
    assert_string_equal(text(json_array_get(json_object_get(r, "warnings"), 0)), "w1");
    json_decref(r);
    /* an error document */
    r = parse_ok("{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"parse error\"}");
    assert_string_equal(json_string_value(json_object_get(r, "errorType")), "bad_data");
    assert_null(json_object_get(r, "data"));
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_cluster),   cmocka_unit_test(test_json_numbers),
        cmocka_unit_test(test_json_strings),   cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_fmt_series_csv), cmocka_unit_test(test_query_result),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

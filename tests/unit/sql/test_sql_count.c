/*
 * test_sql_count — count(*) per tag set without a cluster: which
 * statements sql_push_plan answers from rows per tag set (no field named,
 * no time bucket, exact WHERE); fed one row per tag set (sql_count_feed)
 * the rewritten statement gives the same result, bigint type included, as
 * the rows built from samples; GROUP BY a field is detected
 * (sql_count_groups_field); sql_count_narrow selects a superset of the
 * given tag sets with their values escaped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sql.h"
#include "st_err.h"

static const int64_t T0 = 1767225600000; /* 2026-01-01T00:00:00Z */

static sql_stmt_t *plan(const char *q, sql_plan_t *p)
{
    char err[SQL_ERR_MAX];
    sql_stmt_t *s;
    assert_int_equal(sql_parse(q, strlen(q), &s, err, sizeof err), 0);
    assert_int_equal(
        sql_plan(s, T0 + 3600000, T0 - 86400000, T0 + 86400000, NULL, 0, p, err, sizeof err), 0);
    return s;
}

/* Does sql_push_plan answer q from rows per tag set? */
static int by_rows(const char *q)
{
    sql_plan_t p;
    sql_push_t push;
    sql_stmt_t *s = plan(q, &p);
    int rc = sql_push_plan(s, &p, &push);
    assert_true(rc >= 0);
    int rows = rc == 1 && push.rows != NULL;
    if (rows)
        assert_int_equal(push.nq, 0);
    sql_stmt_free(s);
    return rows;
}

static void test_which_statements(void **state)
{
    (void)state;
    assert_true(by_rows("SELECT count(*) FROM cpu"));
    assert_true(by_rows("SELECT count(*) AS n FROM cpu WHERE hostname IN ('a', 'b') AND "
                        "time >= '2026-01-01T00:00:00Z'"));
    assert_true(by_rows("SELECT hostname, count(*) FROM cpu GROUP BY hostname HAVING count(*) > "
                        "1 ORDER BY 2 DESC LIMIT 3"));
    assert_true(by_rows("SELECT hostname, count(*) FROM cpu GROUP BY 1"));
    assert_false(by_rows("SELECT count(*), max(usage_user) FROM cpu")); /* names a field */
    assert_false(by_rows("SELECT count(usage_user) FROM cpu"));
    assert_false(by_rows("SELECT time_bucket('1 minute', time) AS m, count(*) FROM cpu "
                         "GROUP BY m"));
    assert_false(by_rows("SELECT count(*) FROM cpu WHERE hostname LIKE 'a%'")); /* not exact */
    assert_false(by_rows("SELECT count(*) FROM cpu WHERE usage_user > 1"));
}

/* q over the samples of two tag sets (h1: both fields at the same times;
 * h2: usage_system at other times), or over their rows per tag set. */
static sql_result_t *run(const char *q, int per_tag_set)
{
    static int64_t ts[4] = {T0, T0 + 1000, T0 + 2000, T0 + 3000},
                   ts2[3] = {T0 + 500, T0 + 1000, T0 + 9000};
    static double v[4] = {1, 2, 3, 4};
    st_label_t a[2] = {{"__name__", "cpu_usage_user", 8, 14}, {"hostname", "h1", 8, 2}};
    st_label_t b[2] = {{"__name__", "cpu_usage_system", 8, 16}, {"hostname", "h1", 8, 2}};
    st_label_t c[2] = {{"__name__", "cpu_usage_user", 8, 14}, {"hostname", "h2", 8, 2}};
    st_label_t d[2] = {{"__name__", "cpu_usage_system", 8, 16}, {"hostname", "h2", 8, 2}};
    sql_plan_t p;
    sql_push_t push;
    sql_stmt_t *s = plan(q, &p);
    if (per_tag_set)
        assert_int_equal(sql_push_plan(s, &p, &push), 1);
    sql_exec_opts_t o = {.max_rows = 1000};
    sql_exec_t *x;
    assert_int_equal(sql_exec_create(s, &p, &o, &x), 0);
    st_label_t lab[2][2];
    double rows[2] = {4, 6}; /* h1: 4 timestamps; h2: 4 + 3 - 1 shared */
    int64_t at = p.start;
    char name[64];
    if (per_tag_set) {
        snprintf(name, sizeof name, "cpu_%s", push.rows);
        assert_int_equal(sql_count_feed(x, s, name, lab[0], &a[1], 1, &at, &rows[0]), 0);
        assert_int_equal(sql_count_feed(x, s, name, lab[1], &c[1], 1, &at, &rows[1]), 0);
    } else {
        sql_exec_series(x, a, 2, ts, v, 4);
        sql_exec_series(x, b, 2, ts, v, 4);
        sql_exec_series(x, c, 2, ts, v, 4);
        sql_exec_series(x, d, 2, ts2, v, 3);
    }
    sql_result_t *res;
    char err[SQL_ERR_MAX];
    assert_int_equal(sql_exec_finish(x, &res, err, sizeof err), 0);
    sql_exec_destroy(x);
    sql_stmt_free(s);
    return res;
}

static void assert_same(const char *q)
{
    sql_result_t *a = run(q, 0), *b = run(q, 1);
    st_buf_t ja, jb;
    st_buf_init(&ja);
    st_buf_init(&jb);
    assert_int_equal(sql_result_json(a, &ja), 0);
    assert_int_equal(sql_result_json(b, &jb), 0);
    st_buf_put_u8(&ja, 0);
    st_buf_put_u8(&jb, 0);
    assert_string_equal((char *)jb.data, (char *)ja.data);
    st_buf_deinit(&ja);
    st_buf_deinit(&jb);
    sql_result_free(a);
    sql_result_free(b);
}

static void test_rows_per_tag_set(void **state)
{
    (void)state;
    sql_result_t *r = run("SELECT count(*) FROM cpu", 1);
    assert_int_equal(sql_result_nrows(r), 1);
    assert_int_equal(sql_result_coltype(r, 0), SQL_INT);
    assert_string_equal(sql_result_colname(r, 0), "count");
    assert_int_equal(sql_result_cell(r, 0, 0)->u.i, 10);
    sql_result_free(r);
    assert_same("SELECT count(*) FROM cpu");
    assert_same("SELECT count(*) AS n, count(*) + 1 FROM cpu");
    assert_same("SELECT hostname, count(*) FROM cpu GROUP BY hostname ORDER BY 2 DESC");
    assert_same("SELECT hostname, count(*) AS n FROM cpu GROUP BY 1 HAVING count(*) > 4");
}

static void test_groups_field_and_narrow(void **state)
{
    (void)state;
    const char *metrics[] = {"cpu_usage_user", "cpu", "cpux_y"};
    sql_plan_t p;
    sql_stmt_t *s = plan("SELECT usage_user, count(*) FROM cpu GROUP BY 1", &p);
    assert_true(sql_count_groups_field(s, metrics, 3));
    sql_stmt_free(s);
    s = plan("SELECT value, count(*) FROM cpu GROUP BY value", &p);
    assert_true(sql_count_groups_field(s, metrics, 3));
    assert_false(sql_count_groups_field(s, metrics, 1));
    sql_stmt_free(s);
    s = plan("SELECT y, count(*) FROM cpu GROUP BY y", &p); /* cpux_y is another table */
    assert_false(sql_count_groups_field(s, metrics, 3));
    sql_stmt_free(s);

    s = plan("SELECT count(*) FROM cpu WHERE region = 'eu'", &p);
    st_label_t t1[2] = {{"host", "a.b|c", 4, 5}, {"region", "eu", 6, 2}};
    st_label_t t2[1] = {{"host", "d", 4, 1}};
    const st_label_t *sets[] = {t1, t2, t1};
    size_t nls[] = {2, 1, 2};
    size_t nm = p.nm;
    assert_int_equal(sql_count_narrow(s, &p, sets, nls, 3), 1);
    assert_int_equal(p.nm, nm + 2);
    assert_string_equal(p.m[nm].name, "host");
    assert_int_equal(p.m[nm].type, ST_MATCH_RE);
    assert_string_equal(p.m[nm].value, "a\\.b\\|c|d");
    assert_string_equal(p.m[nm + 1].name, "region");
    assert_string_equal(p.m[nm + 1].value, "|eu"); /* t2 has no region */
    sql_stmt_free(s);
    /* too long: left as it was */
    s = plan("SELECT count(*) FROM cpu", &p);
    static char big[SQL_COUNT_NARROW_MAX + 10];
    memset(big, 'x', sizeof big - 1);
    st_label_t t3[1] = {{"host", big, 4, (uint32_t)strlen(big)}};
    const st_label_t *bs[] = {t3};
    size_t bn[] = {1};
    nm = p.nm;
    assert_int_equal(sql_count_narrow(s, &p, bs, bn, 1), 0);
    assert_int_equal(p.nm, nm);
    sql_stmt_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_which_statements),
        cmocka_unit_test(test_rows_per_tag_set),
        cmocka_unit_test(test_groups_field_and_narrow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

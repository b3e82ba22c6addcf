/*
 * test_sql — the SQL library without a cluster: parse errors with their
 * positions, the plan (time range, matchers, fields) and execution over
 * hand-made series (rows, WHERE, GROUP BY time buckets, aggregates,
 * ORDER BY, LIMIT), results as JSON.
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
#include "sql_int.h"
#include "st_err.h"
#include "st_text.h"

static void test_parse_errors(void **state)
{
    (void)state;
    sql_stmt_t *s;
    char err[SQL_ERR_MAX];
    assert_int_equal(sql_parse("SELECT FROM", 11, &s, err, sizeof err), ST_EPARSE);
    assert_non_null(strstr(err, "position 8"));
    assert_int_equal(sql_parse("SELEC 1", 7, &s, err, sizeof err), ST_EPARSE);
    assert_non_null(strstr(err, "position 1"));
    const char *ok = "SELECT avg(usage_user) AS a, max(usage_system) FROM cpu WHERE hostname = "
                     "'host_1' AND time >= now() - interval '1 hour' GROUP BY time_bucket('1 "
                     "minute', time) ORDER BY 1 DESC LIMIT 10 OFFSET 2;";
    assert_int_equal(sql_parse(ok, strlen(ok), &s, err, sizeof err), 0);
    assert_int_equal(sql_stmt_kind(s), SQL_SELECT);
    assert_string_equal(sql_stmt_table(s), "cpu");
    sql_stmt_free(s);
    const char *d = "DELETE FROM cpu WHERE hostname = 'a'";
    assert_int_equal(sql_parse(d, strlen(d), &s, err, sizeof err), 0);
    assert_int_equal(sql_stmt_kind(s), SQL_DELETE);
    sql_stmt_free(s);
}

static const int64_t T0 = 1767225600000; /* 2026-01-01T00:00:00Z */

static int rows_groups; /* sql_exec_opts_t.rows_are_groups for run() */

static char *run(const char *q, sql_result_t **res)
{
    static char err[SQL_ERR_MAX];
    sql_stmt_t *s;
    if (sql_parse(q, strlen(q), &s, err, sizeof err))
        return err;
    sql_plan_t p;
    assert_int_equal(
        sql_plan(s, T0 + 3600000, T0 - 86400000, T0 + 86400000, NULL, 0, &p, err, sizeof err), 0);
    sql_exec_opts_t o = {.max_rows = 1000000, .rows_are_groups = rows_groups, .groups_hint = 12};
    sql_exec_t *x;
    assert_int_equal(sql_exec_create(s, &p, &o, &x), 0);
    static int64_t ts[6];
    static double v1[6], v2[6], v3[6], v4[6];
    for (int i = 0; i < 6; i++) {
        ts[i] = T0 + i * 30000;
        v1[i] = i;
        v2[i] = 10 * i;
        v3[i] = 100 + i;
        v4[i] = 1000 + i;
    }
    st_label_t a[2] = {{"__name__", "cpu_usage_user", 8, 14}, {"hostname", "h1", 8, 2}};
    st_label_t b[2] = {{"__name__", "cpu_usage_system", 8, 16}, {"hostname", "h1", 8, 2}};
    st_label_t c[2] = {{"__name__", "cpu_usage_user", 8, 14}, {"hostname", "h2", 8, 2}};
    st_label_t d[2] = {{"__name__", "cpu_usage_system", 8, 16}, {"hostname", "h2", 8, 2}};
    sql_exec_series(x, a, 2, ts, v1, 6);
    sql_exec_series(x, b, 2, ts, v2, 6);
    sql_exec_series(x, c, 2, ts, v3, 6);
    sql_exec_series(x, d, 2, ts, v4, 3);
    int rc = sql_exec_finish(x, res, err, sizeof err);
    sql_exec_destroy(x);
    sql_stmt_free(s);
    return rc ? err : NULL;
}

static char *json(const char *q)
{
    sql_result_t *r;
    char *e = run(q, &r);
    if (e)
        return strdup(e);
    st_buf_t b;
    st_buf_init(&b);
    sql_result_json(r, &b);
    sql_result_free(r);
    char *out = strndup((char *)b.data, b.len);
    st_buf_deinit(&b);
    return out;
}

#define EXPECT(q, want)                                                                            \
    do {                                                                                           \
        char *got = json(q);                                                                       \
        if (!strstr(got, want))                                                                    \
            fail_msg("%s\n got  %s\n want %s", q, got, want);                                      \
        free(got);                                                                                 \
    } while (0)

static void test_exec(void **state)
{
    (void)state;
    EXPECT("SELECT count(*) FROM cpu", "\"rows\":[[12]]");
    EXPECT("SELECT count(usage_system), sum(usage_user) FROM cpu", "\"rows\":[[9,630]]");
    EXPECT("SELECT hostname, max(usage_user) AS m FROM cpu GROUP BY hostname ORDER BY m DESC",
           "\"rows\":[[\"h2\",105],[\"h1\",5]]");
    EXPECT("SELECT avg(usage_user) FROM cpu WHERE hostname = 'h1' AND usage_user > 1",
           "\"rows\":[[3.5]]");
    EXPECT("SELECT time_bucket('1 minute', time) AS b, count(*) FROM cpu WHERE hostname='h1' "
           "GROUP BY b ORDER BY b",
           "\"rows\":[[\"2026-01-01T00:00:00Z\",2],[\"2026-01-01T00:01:00Z\",2],[\"2026-01-01T00:"
           "02:00Z\",2]]");
    EXPECT("SELECT time, usage_user FROM cpu WHERE hostname IN ('h2') ORDER BY time DESC LIMIT 2",
           "\"rows\":[[\"2026-01-01T00:02:30Z\",105],[\"2026-01-01T00:02:00Z\",104]]");
    EXPECT("SELECT usage_system FROM cpu WHERE hostname LIKE 'h%' AND usage_system IS NULL",
           "\"rows\":[[null],[null],[null]]");
    EXPECT("SELECT hostname, count(*) FROM cpu GROUP BY 1 HAVING count(*) > 100", "\"rows\":[]");
    EXPECT("SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY usage_user) FROM cpu WHERE "
           "hostname = 'h1'",
           "\"rows\":[[2.5]]");
    EXPECT("SELECT nope FROM cpu", "column \"nope\" does not exist");
    EXPECT("SELECT * FROM cpu LIMIT 1",
           "\"columns\":[{\"name\":\"time\",\"type\":\"timestamp with time zone\"},{\"name\":"
           "\"hostname\",\"type\":\"text\"},{\"name\":\"usage_system\"");
}

/* Rows that are each their own group (a tag set's samples 30 s apart,
 * buckets of 30 s) give the same answer straight (rows_are_groups) as
 * through the group table. */
static void test_rows_are_groups(void **state)
{
    (void)state;
    static const char *const qs[] = {
        "SELECT hostname, time_bucket('30 seconds', time) AS b, max(usage_user), "
        "sum(usage_system) AS s, avg(usage_user) + 1 FROM cpu GROUP BY hostname, b",
        "SELECT hostname, time_bucket('30 seconds', time) AS b, max(usage_user) AS m FROM cpu "
        "GROUP BY hostname, b HAVING max(usage_user) > 1 ORDER BY m DESC, b LIMIT 4 OFFSET 1",
        "SELECT time_bucket('30 seconds', time) AS b, hostname, count(usage_system) FROM cpu "
        "GROUP BY 1, 2 ORDER BY 3, b DESC",
    };
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        rows_groups = 0;
        char *want = json(qs[i]);
        rows_groups = 1;
        char *got = json(qs[i]);
        rows_groups = 0;
        if (strcmp(got, want))
            fail_msg("%s\n straight %s\n grouped  %s", qs[i], got, want);
        assert_null(strstr(want, "error"));
        free(got);
        free(want);
    }
}

/* Integral doubles print as the shortest round-trip formatters print
 * them; other values are left to those. */
static void test_fmt_integral(void **state)
{
    (void)state;
    static const double vs[] = {1,
                                -1,
                                7,
                                100,
                                -250,
                                1e14,
                                999999999999999.0,
                                1e15,
                                1e16,
                                0.5,
                                -0.0,
                                0,
                                4096,
                                -123456789012345.0,
                                1e21,
                                3e-5,
                                12.25,
                                1099511627776.0};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        char d[24];
        size_t n = sql_fmt_integral(d, vs[i]);
        int integral =
            vs[i] != 0 && vs[i] == (double)(long long)vs[i] && vs[i] < 1e15 && vs[i] > -1e15;
        assert_int_equal(n > 0, integral);
        if (!n)
            continue;
        st_buf_t a, g;
        st_buf_init(&a);
        st_buf_init(&g);
        assert_int_equal(st_fmt_double(&a, vs[i]), 0);
        assert_int_equal(st_fmt_double_g(&g, vs[i]), 0);
        assert_int_equal(a.len, n);
        assert_memory_equal(a.data, d, n);
        assert_int_equal(g.len, n);
        assert_memory_equal(g.data, d, n);
        st_buf_deinit(&a);
        st_buf_deinit(&g);
    }
    for (uint64_t k = 1; k < 3000; k++) { /* integers of every length */
        double v = (double)((k * 2654435761ull * k) % (1ull << (k % 49 + 1)));
        v = k & 1 ? -v : v;
        char d[24];
        size_t n = sql_fmt_integral(d, v);
        st_buf_t a;
        st_buf_init(&a);
        assert_int_equal(st_fmt_double(&a, v), 0);
        if (v != 0) {
            assert_int_equal(a.len, n);
            assert_memory_equal(a.data, d, n);
        }
        st_buf_deinit(&a);
    }
}

/* time_bucket_gapfill adds the empty buckets of [start, finish) per series
 * (aggregates NULL); locf carries the last value on, interpolate draws a
 * line between the values around a gap. */
static void test_gapfill(void **state)
{
    (void)state;
    EXPECT("SELECT time_bucket_gapfill('1 minute', time) AS b, hostname, avg(usage_user) AS a, "
           "locf(max(usage_user)) AS l, count(*) AS c FROM cpu WHERE time >= "
           "'2026-01-01T00:00:00Z' AND time < '2026-01-01T00:05:00Z' GROUP BY b, hostname "
           "ORDER BY hostname, b LIMIT 5",
           "\"rows\":[[\"2026-01-01T00:00:00Z\",\"h1\",0.5,1,2],[\"2026-01-01T00:01:00Z\",\"h1\","
           "2.5,3,2],[\"2026-01-01T00:02:00Z\",\"h1\",4.5,5,2],[\"2026-01-01T00:03:00Z\",\"h1\","
           "null,5,null],[\"2026-01-01T00:04:00Z\",\"h1\",null,5,null]]");
    EXPECT("SELECT time_bucket_gapfill('1 minute', time, '2026-01-01T00:00:00Z', "
           "'2026-01-01T00:04:00Z') AS b, interpolate(avg(usage_user)) FROM cpu WHERE hostname = "
           "'h1' AND (usage_user < 2 OR usage_user > 3) GROUP BY b",
           "\"rows\":[[\"2026-01-01T00:00:00Z\",0.5],[\"2026-01-01T00:01:00Z\",2.5],[\"2026-01-"
           "01T00:02:00Z\",4.5],[\"2026-01-01T00:03:00Z\",null]]");
    EXPECT("SELECT time_bucket_gapfill('1 second', time) AS b, count(*) FROM cpu GROUP BY b",
           "at most 100000 buckets");
}

static void test_plan(void **state)
{
    (void)state;
    const char *q = "SELECT avg(usage_user) FROM cpu WHERE hostname = 'h1' AND time >= "
                    "'2026-01-01T00:00:00Z' AND time < '2026-01-01T01:00:00Z'";
    sql_stmt_t *s;
    char err[SQL_ERR_MAX];
    assert_int_equal(sql_parse(q, strlen(q), &s, err, sizeof err), 0);
    sql_plan_t p;
    assert_int_equal(sql_plan(s, T0, 0, INT64_MAX, NULL, 0, &p, err, sizeof err), 0);
    assert_int_equal(p.start, T0);
    assert_int_equal(p.end, T0 + 3600000);
    st_buf_t b;
    st_buf_init(&b);
    sql_plan_selector(s, &p, &b);
    assert_int_equal(b.len, strlen("{__name__=~\"cpu_usage_user\",hostname=\"h1\"}"));
    assert_memory_equal(b.data, "{__name__=~\"cpu_usage_user\",hostname=\"h1\"}", b.len);
    st_buf_deinit(&b);
    sql_stmt_free(s);
}

/* ORDER BY ... LIMIT over many rows: the best rows survive the cuts. */
static void test_topk(void **state)
{
    (void)state;
    enum { N = 20000 };
    static int64_t ts[N];
    static double v[N];
    for (int i = 0; i < N; i++) {
        ts[i] = T0 + i;
        v[i] = (double)((i * 7919) % N); /* a permutation of 0..N-1 */
    }
    const char *q = "SELECT value FROM m ORDER BY value DESC LIMIT 3 OFFSET 2";
    sql_stmt_t *s;
    char err[SQL_ERR_MAX];
    assert_int_equal(sql_parse(q, strlen(q), &s, err, sizeof err), 0);
    sql_plan_t p;
    assert_int_equal(sql_plan(s, T0, T0 - 1, T0 + N, NULL, 0, &p, err, sizeof err), 0);
    sql_exec_opts_t o = {.max_rows = 1000000, .max_bytes = 256 << 10}; /* < N rows */
    sql_exec_t *x;
    assert_int_equal(sql_exec_create(s, &p, &o, &x), 0);
    st_label_t l[1] = {{"__name__", "m", 8, 1}};
    sql_exec_series(x, l, 1, ts, v, N);
    sql_result_t *r;
    assert_int_equal(sql_exec_finish(x, &r, err, sizeof err), 0);
    assert_int_equal(sql_result_nrows(r), 3);
    for (int i = 0; i < 3; i++)
        assert_true(sql_result_cell(r, (size_t)i, 0)->u.f == (double)(N - 3 - i));
    sql_result_free(r);
    sql_exec_destroy(x);
    sql_stmt_free(s);
}

/* The statement is not NUL-terminated (HTTP bodies, PostgreSQL messages):
 * a $n or a LIMIT count at the very end must not be read past its token
 * (ASan catches an overread in the exact-size copy). */
static void test_unterminated_numbers(void **state)
{
    (void)state;
    static const char *const texts[] = {"select\n$9", "SELECT $12", "SELECT 1 LIMIT 42",
                                        "SELECT 1 LIMIT 1 OFFSET 7"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        size_t n = strlen(texts[i]);
        char *exact = malloc(n);
        assert_non_null(exact);
        memcpy(exact, texts[i], n);
        sql_stmt_t *s = NULL;
        char err[SQL_ERR_MAX];
        if (sql_parse(exact, n, &s, err, sizeof err) == 0)
            sql_stmt_free(s);
        free(exact);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors), cmocka_unit_test(test_plan),
        cmocka_unit_test(test_exec),         cmocka_unit_test(test_gapfill),
        cmocka_unit_test(test_topk),         cmocka_unit_test(test_rows_are_groups),
        cmocka_unit_test(test_fmt_integral), cmocka_unit_test(test_unterminated_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

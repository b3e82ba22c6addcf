/*
 * test_sql_topn — the router's merge of the nodes' TOPN keys (sql_topn.c)
 * for ORDER BY time DESC|ASC LIMIT n: distinct (tag set, time) keys across
 * nodes and replicas, the n-th key's time as the window's edge; and the
 * ORDER BY tie rule (rows of equal time in tag-set order) with the
 * allocation-free time formatting of the JSON result.
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
#include "st_matcher.h"

/* Add keys whose tag sets are {host="<h[i]>"} ("" : no labels). */
static int add(sql_topn_t *t, const char *const *h, const int64_t *ts, size_t k)
{
    char buf[64][32];
    const uint8_t *lab[64];
    size_t len[64];
    for (size_t i = 0; i < k; i++) {
        len[i] = 0;
        if (h[i][0]) {
            memcpy(buf[i], "host", 5);
            size_t n = strlen(h[i]) + 1;
            memcpy(buf[i] + 5, h[i], n);
            len[i] = 5 + n;
        }
        lab[i] = (const uint8_t *)buf[i];
    }
    return sql_topn_add(t, ts, lab, len, k);
}

static void test_newest(void **state)
{
    (void)state;
    sql_topn_t *t;
    assert_int_equal(sql_topn_create(3, 0, &t), 0);
    /* node A: tag sets 1, 2 at 100; node B: tag set 3 at 90, 1 at 100 again
     * (a replica or another field of the same row), node C: 4 at 95 */
    const char *ha[] = {"1", "2"}, *hb[] = {"3", "1"}, *hc[] = {"4"};
    int64_t ta[] = {100, 100}, tb[] = {90, 100}, tc[] = {95};
    assert_int_equal(add(t, ha, ta, 2), 0);
    assert_int_equal(add(t, hb, tb, 2), 0);
    assert_int_equal(add(t, hc, tc, 1), 0);
    int64_t edge = 0;
    assert_int_equal(sql_topn_finish(t, &edge), 3); /* (1,100) (2,100) (4,95) */
    assert_int_equal(edge, 95);
    st_matcher_t m[4];
    size_t nm;
    char *mem;
    assert_int_equal(sql_topn_matchers(t, m, 4, &nm, &mem), 0);
    assert_int_equal(nm, 1);
    assert_string_equal(m[0].name, "host");
    assert_string_equal(m[0].value, "1|2|4");
    assert_int_equal(m[0].type, ST_MATCH_RE);
    free(mem);
    assert_int_equal(sql_topn_matchers(t, m, 0, &nm, &mem), ST_ELIMIT);
    sql_topn_destroy(t);
}

/* Ties on time are cut in tag-set order; a tag set without a label makes
 * the label's alternation take "" (absent). */
static void test_ties_and_absent(void **state)
{
    (void)state;
    sql_topn_t *t;
    assert_int_equal(sql_topn_create(2, 0, &t), 0);
    const char *h[] = {"", "a", "b.c"}; /* a node's order */
    int64_t ts[] = {7, 7, 7};
    assert_int_equal(add(t, h, ts, 3), 0);
    int64_t edge = 0;
    assert_int_equal(sql_topn_finish(t, &edge), 2); /* {} and {host="a"} */
    st_matcher_t m[4];
    size_t nm;
    char *mem;
    assert_int_equal(sql_topn_matchers(t, m, 4, &nm, &mem), 0);
    assert_int_equal(nm, 1);
    assert_string_equal(m[0].value, "|a");
    free(mem);
    sql_topn_destroy(t);
    assert_int_equal(sql_topn_create(3, 0, &t), 0);
    assert_int_equal(add(t, h, ts, 3), 0);
    assert_int_equal(sql_topn_finish(t, &edge), 3);
    assert_int_equal(sql_topn_matchers(t, m, 4, &nm, &mem), 0);
    assert_string_equal(m[0].value, "|a|b\\.c"); /* values escaped */
    free(mem);
    sql_topn_destroy(t);
}

static void test_oldest_and_short(void **state)
{
    (void)state;
    sql_topn_t *t;
    assert_int_equal(sql_topn_create(2, 1, &t), 0);
    const char *h[] = {"7", "8", "9"};
    int64_t ts[] = {50, 10, 30};
    assert_int_equal(add(t, h, ts, 3), 0);
    int64_t edge = 0;
    /* at most n keys of one node count: (7,50) (8,10) */
    assert_int_equal(sql_topn_finish(t, &edge), 2);
    assert_int_equal(edge, 50);
    sql_topn_destroy(t);
    /* fewer distinct keys than n: the count says so */
    assert_int_equal(sql_topn_create(5, 0, &t), 0);
    const char *h2[] = {"1", "1"};
    int64_t t2[] = {5, 5};
    assert_int_equal(add(t, h2, t2, 2), 0);
    assert_int_equal(sql_topn_finish(t, &edge), 1);
    assert_int_equal(edge, 5);
    sql_topn_destroy(t);
    assert_int_equal(sql_topn_create(5, 0, &t), 0);
    assert_int_equal(sql_topn_finish(t, &edge), 0);
    sql_topn_destroy(t);
    assert_int_equal(sql_topn_create(0, 0, &t), ST_EINVAL);
}

/* Random keys from several "nodes" against a brute-force answer. */
static void test_random(void **state)
{
    (void)state;
    static const char *const hn[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    srand(7);
    for (int round = 0; round < 50; round++) {
        size_t n = 1 + (size_t)(rand() % 20);
        int oldest = round & 1;
        int given[30][10];
        memset(given, 0, sizeof given);
        sql_topn_t *t;
        assert_int_equal(sql_topn_create(n, oldest, &t), 0);
        for (int node = 0; node < 4; node++) {
            const char *nh[64];
            int64_t nt[64];
            size_t k = (size_t)(rand() % 64);
            for (size_t i = 0; i < k; i++) {
                int hv = rand() % 10;
                nh[i] = hn[hv];
                nt[i] = rand() % 30;
                if (i < n) /* a node's keys past n are ignored */
                    given[nt[i]][hv] = 1;
            }
            assert_int_equal(add(t, nh, nt, k), 0);
        }
        size_t distinct = 0;
        int64_t want = 0;
        for (int64_t tv = oldest ? 0 : 29; oldest ? tv < 30 : tv >= 0; tv += oldest ? 1 : -1)
            for (int hv = 0; hv < 10; hv++)
                if (given[tv][hv] && distinct < n) {
                    distinct++;
                    want = tv;
                }
        int64_t edge = -1;
        assert_int_equal(sql_topn_finish(t, &edge), distinct);
        if (distinct)
            assert_int_equal(edge, want);
        sql_topn_destroy(t);
    }
}

static int run(const char *q, const char *const *names, const int64_t *const *ts, size_t nser,
               size_t npts, char *out, size_t cap)
{
    sql_stmt_t *s;
    char err[SQL_ERR_MAX];
    int rc = sql_parse(q, strlen(q), &s, err, sizeof err);
    if (rc)
        return rc;
    sql_plan_t p;
    rc = sql_plan(s, 0, 0, INT64_MAX / 2, NULL, 0, &p, err, sizeof err);
    sql_exec_t *x = NULL;
    sql_exec_opts_t o = {.max_rows = 1000000, .max_bytes = 1 << 26};
    if (!rc)
        rc = sql_exec_create(s, &p, &o, &x);
    double v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    st_label_t l[8][2]; /* the executor keeps them until finish */
    for (size_t i = 0; !rc && i < nser && i < 8; i++) {
        l[i][0] = (st_label_t){"__name__", "cpu_u", 8, 5};
        l[i][1] = (st_label_t){"host", names[i], 4, (uint32_t)strlen(names[i])};
        rc = sql_exec_series(x, l[i], 2, ts[i], v, npts);
    }
    sql_result_t *r = NULL;
    if (!rc)
        rc = sql_exec_finish(x, &r, err, sizeof err);
    st_buf_t b;
    st_buf_init(&b);
    if (!rc)
        rc = sql_result_json(r, &b);
    if (!rc)
        snprintf(out, cap, "%.*s", (int)b.len, (char *)b.data);
    st_buf_deinit(&b);
    sql_result_free(r);
    sql_exec_destroy(x);
    sql_stmt_free(s);
    return rc;
}

/* Ties on time: the rows come in tag-set order, whatever order the series
 * were fed in; times print as RFC 3339 with milliseconds when not whole. */
static void test_tie_order(void **state)
{
    (void)state;
    const int64_t t1[] = {1000, 2500}, t2[] = {1000, 2500}, t3[] = {1000, 2000};
    const int64_t *ts[] = {t3, t1, t2};
    const char *names[] = {"c", "a", "b"};
    char out[2048];
    assert_int_equal(run("SELECT time, host FROM cpu ORDER BY time DESC LIMIT 3", names, ts, 3, 2,
                         out, sizeof out),
                     0);
    assert_non_null(strstr(out, "\"rows\":[[\"1970-01-01T00:00:02.500Z\",\"a\"],"
                                "[\"1970-01-01T00:00:02.500Z\",\"b\"],"
                                "[\"1970-01-01T00:00:02Z\",\"c\"]]"));
    assert_int_equal(run("SELECT time, host FROM cpu ORDER BY time LIMIT 2 OFFSET 1", names, ts, 3,
                         2, out, sizeof out),
                     0);
    assert_non_null(strstr(out, "\"rows\":[[\"1970-01-01T00:00:01Z\",\"b\"],"
                                "[\"1970-01-01T00:00:01Z\",\"c\"]]"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_newest),           cmocka_unit_test(test_ties_and_absent),
        cmocka_unit_test(test_oldest_and_short), cmocka_unit_test(test_random),
        cmocka_unit_test(test_tie_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

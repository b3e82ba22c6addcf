/*
 * test_promql_counts — count_over_time from the storage's counts
 * (promql_eval_opts_t.counts): an instant count_over_time of a plain range
 * selector (offset, @, parentheses, inside aggregations) asks the counts
 * callback and equals the answer from the raw samples; range queries and
 * other rollups never ask it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "promql.h"
#include "promql_eval.h"
#include "st_err.h"

#define N 5000
#define M 60000LL

static int64_t ts[2][N];
static double v[2][N];
static int count_calls;
static const st_label_t labels[2][2] = {{{"__name__", "c", 8, 1}, {"job", "a", 3, 1}},
                                        {{"__name__", "c", 8, 1}, {"job", "b", 3, 1}}};

static void load(void)
{
    uint64_t r = 11;
    for (int s = 0; s < 2; s++) {
        int64_t t = 1000 * (s + 1);
        for (size_t i = 0; i < N; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            t += 5000 + (int64_t)((r >> 40) % 20000);
            ts[s][i] = t;
            v[s][i] = (double)((r >> 30) % 1000);
        }
    }
}

static void range_of(int s, int64_t mint, int64_t maxt, size_t *lo, size_t *hi)
{
    *lo = 0;
    *hi = N;
    while (*lo < *hi && ts[s][*lo] < mint)
        (*lo)++;
    while (*hi > *lo && ts[s][*hi - 1] > maxt)
        (*hi)--;
}

static int sel_raw(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                   promql_sink_t *sink)
{
    (void)arg, (void)m, (void)nm;
    for (int s = 0; s < 2; s++) {
        size_t lo, hi;
        range_of(s, mint, maxt, &lo, &hi);
        int rc = hi > lo ? promql_sink_add(sink, labels[s], 2, ts[s] + lo, v[s] + lo, hi - lo) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

static int sel_counts(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                      promql_sink_t *sink)
{
    (void)arg, (void)m, (void)nm;
    count_calls++;
    for (int s = 0; s < 2; s++) {
        size_t lo, hi;
        range_of(s, mint, maxt, &lo, &hi);
        double c = (double)(hi - lo);
        int rc = hi > lo ? promql_sink_add(sink, labels[s], 2, &maxt, &c, 1) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

static promql_result_t *eval(const char *q, int64_t start, int64_t end, int64_t step, int counts)
{
    promql_expr_t *e;
    char err[256];
    assert_int_equal(promql_parse(q, strlen(q), &e, err, sizeof err), 0);
    promql_eval_opts_t o = {0};
    if (counts)
        o.counts = sel_counts;
    promql_result_t *r;
    int rc = promql_eval(e, start, end, step, &o, sel_raw, NULL, &r, err, sizeof err);
    if (rc)
        fail_msg("%s: %s", q, err);
    promql_free(e);
    return r;
}

static void same(const promql_result_t *a, const promql_result_t *b, const char *q)
{
    if (a->nseries != b->nseries)
        fail_msg("%s: %zu series vs %zu", q, a->nseries, b->nseries);
    for (size_t i = 0; i < a->nseries; i++) {
        assert_int_equal(a->series[i].n, b->series[i].n);
        assert_int_equal(st_labels_cmp(a->series[i].labels, a->series[i].nlabels,
                                       b->series[i].labels, b->series[i].nlabels),
                         0);
        for (size_t k = 0; k < a->series[i].n; k++) {
            assert_int_equal(a->series[i].ts[k], b->series[i].ts[k]);
            if (a->series[i].v[k] != b->series[i].v[k])
                fail_msg("%s: %.17g vs %.17g", q, a->series[i].v[k], b->series[i].v[k]);
        }
    }
}

static void test_instant_counts(void **state)
{
    (void)state;
    load();
    static const char *const qs[] = {
        "count_over_time(c[2h])",
        "count_over_time(c[1h] offset 1h)",
        "count_over_time((c[30m]))",
        "sum(count_over_time(c[45m]))",
        "sum by (job) (count_over_time(c{job=~\"a|b\"}[10h]))",
        "count_over_time(c[1h] @ 7200)",
        "count_over_time(c[1h] @ 7200) > 100",
    };
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        for (int64_t t = 3 * M; t < 3000 * M; t += 997 * M) {
            count_calls = 0;
            promql_result_t *a = eval(qs[i], t, t, 1000, 0);
            assert_int_equal(count_calls, 0);
            promql_result_t *b = eval(qs[i], t, t, 1000, 1);
            if (count_calls == 0)
                fail_msg("%s: counts not asked", qs[i]);
            same(a, b, qs[i]);
            promql_result_free(a);
            promql_result_free(b);
        }
}

static void test_not_asked(void **state)
{
    (void)state;
    load();
    struct {
        const char *q;
        int64_t start, end;
    } qs[] = {
        {"count_over_time(c[1h])", 60 * M, 600 * M}, /* a range query */
        {"sum_over_time(c[1h])", 60 * M, 60 * M},
        {"count_over_time(c[1h:1m])", 60 * M, 60 * M}, /* a subquery */
        {"count(c)", 60 * M, 60 * M},
    };
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        count_calls = 0;
        promql_result_t *a = eval(qs[i].q, qs[i].start, qs[i].end, M, 0);
        promql_result_t *b = eval(qs[i].q, qs[i].start, qs[i].end, M, 1);
        assert_int_equal(count_calls, 0);
        same(a, b, qs[i].q);
        promql_result_free(a);
        promql_result_free(b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_instant_counts),
        cmocka_unit_test(test_not_asked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

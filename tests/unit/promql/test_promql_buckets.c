/*
 * test_promql_buckets — the evaluator on downsampled buckets
 * (promql_eval_opts_t.tier_res / buckets): for the rollups documented exact
 * on whole buckets, a range query answered from buckets equals the one
 * answered from the raw samples bit for bit (integer-valued data, at most
 * one counter reset per bucket), and the evaluator asks for buckets only
 * when the window and every evaluation time are multiples of a width.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "promql.h"
#include "promql_eval.h"
#include "st_err.h"

#define N 20000
#define M 60000LL
#define H 3600000LL

static int64_t ts[N];
static double v[N];
static size_t n;
static int bucket_calls, raw_calls;
static const st_label_t labels[] = {{"__name__", "c", 8, 1}, {"job", "x", 3, 1}};

/* Irregular 10-20 s samples of a counter with a reset every ~3 hours. */
static void load(void)
{
    uint64_t r = 7;
    int64_t t = 5000;
    double x = 100;
    n = 0;
    while (n < N) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        t += 10000 + (int64_t)((r >> 40) % 10001);
        if ((r >> 20) % 3 == 0 && n % 7 == 0)
            t += 5 * M; /* a gap */
        x += (double)((r >> 50) % 100);
        if (n % 900 == 899)
            x = (double)((r >> 33) % 10);
        ts[n] = t;
        v[n++] = x;
    }
}

static int sel_raw(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                   promql_sink_t *sink)
{
    (void)arg, (void)m, (void)nm;
    raw_calls++;
    size_t lo = 0, hi = n;
    while (lo < hi && ts[lo] < mint)
        lo++;
    while (hi > lo && ts[hi - 1] > maxt)
        hi--;
    return hi > lo ? promql_sink_add(sink, labels, 2, ts + lo, v + lo, hi - lo) : 0;
}

/* The test's own aggregation (what a storage's tiers hold). */
static int sel_buckets(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                       int64_t res, promql_sink_t *sink)
{
    (void)arg, (void)m, (void)nm;
    bucket_calls++;
    static promql_bucket_t b[N];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t end = (ts[i] + res - 1) / res * res;
        if (end < mint || end > maxt)
            continue;
        if (!k || b[k - 1].end != end) {
            b[k++] = (promql_bucket_t){end, ts[i], ts[i], 1, v[i], v[i], v[i], v[i], v[i], -0.0};
            continue;
        }
        promql_bucket_t *x = &b[k - 1];
        x->count++;
        x->sum += v[i];
        x->min = v[i] < x->min ? v[i] : x->min;
        x->max = v[i] > x->max ? v[i] : x->max;
        if (v[i] < x->last)
            x->rsum += x->last;
        x->last = v[i];
        x->last_ts = ts[i];
    }
    return k ? promql_sink_add_buckets(sink, labels, 2, b, k) : 0;
}

static promql_result_t *eval(const char *q, int64_t start, int64_t end, int64_t step, int tiers)
{
    static const int64_t widths[] = {M, H};
    promql_expr_t *e;
    char err[256];
    assert_int_equal(promql_parse(q, strlen(q), &e, err, sizeof err), 0);
    promql_eval_opts_t o = {0};
    if (tiers) {
        o.tier_res = widths;
        o.ntier_res = 2;
        o.buckets = sel_buckets;
    }
    promql_result_t *r;
    int rc = promql_eval(e, start, end, step, &o, sel_raw, NULL, &r, err, sizeof err);
    if (rc)
        fail_msg("%s: %s", q, err);
    promql_free(e);
    return r;
}

static void same(const promql_result_t *a, const promql_result_t *b, const char *q)
{
    assert_int_equal(a->nseries, b->nseries);
    for (size_t i = 0; i < a->nseries; i++) {
        assert_int_equal(a->series[i].n, b->series[i].n);
        for (size_t k = 0; k < a->series[i].n; k++) {
            assert_int_equal(a->series[i].ts[k], b->series[i].ts[k]);
            if (memcmp(&a->series[i].v[k], &b->series[i].v[k], sizeof(double)))
                fail_msg("%s: step %zu: raw %.17g, buckets %.17g", q, k, a->series[i].v[k],
                         b->series[i].v[k]);
        }
    }
}

static void test_exact(void **state)
{
    (void)state;
    load();
    static const char *const qs[] = {
        "sum_over_time(c[1h])",  "count_over_time(c[2h])", "min_over_time(c[1h])",
        "max_over_time(c[3h])",  "last_over_time(c[1h])",  "present_over_time(c[1h])",
        "rate(c[1h])",           "increase(c[2h])",        "delta(c[1h])",
        "rate(c[5m])",           "increase(c[1m])",        "sum_over_time(c[1h] offset 1h)",
        "sum(rate(c[10m])) * 2", "max_over_time(c[7m])",
    };
    static const int64_t steps[] = {M, 5 * M, H, 2 * H};
    for (size_t q = 0; q < sizeof qs / sizeof qs[0]; q++)
        for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
            int64_t start = 2 * H, end = start + 40 * H;
            if ((end - start) / steps[s] > 11000)
                continue;
            promql_result_t *raw = eval(qs[q], start, end, steps[s], 0);
            bucket_calls = 0;
            promql_result_t *bk = eval(qs[q], start, end, steps[s], 1);
            assert_int_equal(bucket_calls, 1);
            assert_true(raw->nseries == 1);
            same(raw, bk, qs[q]);
            promql_result_free(raw);
            promql_result_free(bk);
        }
}

static void test_not_eligible(void **state)
{
    (void)state;
    load();
    static const struct {
        const char *q;
        int64_t start, step;
    } cases[] = {
        {"avg_over_time(c[1h])", 2 * H, H}, /* not exact on buckets */
        {"stddev_over_time(c[1h])", 2 * H, H},
        {"sum_over_time(c[1h])", 2 * H + 1000, H}, /* times off the widths */
        {"sum_over_time(c[90s])", 2 * H, H},       /* window off the widths */
        {"c", 2 * H, H},                           /* an instant selector */
        {"sum_over_time(c[1h:1m])", 2 * H, H},     /* a subquery */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bucket_calls = raw_calls = 0;
        promql_result_t *r =
            eval(cases[i].q, cases[i].start, cases[i].start + 10 * H, cases[i].step, 1);
        assert_int_equal(bucket_calls, 0);
        assert_true(raw_calls > 0);
        promql_result_free(r);
    }
    assert_true(promql_bucket_exact("rate"));
    assert_true(promql_bucket_exact("sum_over_time"));
    assert_false(promql_bucket_exact("avg_over_time"));
    assert_false(promql_bucket_exact("irate"));
    assert_false(promql_bucket_exact("abs"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_not_eligible),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

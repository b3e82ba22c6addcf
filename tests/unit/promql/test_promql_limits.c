/*
 * test_promql_limits — the evaluator's bounds (issue 11): bytes an
 * evaluation materialises (max_bytes, and a budget shared by evaluations),
 * subquery steps counted against max_samples before they are allocated,
 * label_replace() regexes under PCRE2 match limits, cancellation, and the
 * topk/bottomk heap and sort/sort_desc merge sort giving exactly the answers
 * (ties and order included) of the selection and insertion sorts they
 * replaced.
 *
 * Data: n synthetic series cv_v{s="000i", p="aaa...a!"}, one sample each
 * (or a few with values drawn from a small set, for ties), served by a
 * select callback that ignores the matchers but the metric name.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <cmocka.h>

#include "promql.h"
#include "promql_eval.h"
#include "st_err.h"

#define T0 1000000000000ll /* sample time (ms) */

static size_t nser;
static double *vals; /* NULL: value = series number */

static int gen_select(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                      promql_sink_t *sink)
{
    (void)arg;
    (void)m;
    (void)nm;
    if (T0 < mint || T0 > maxt)
        return 0;
    char sv[32], pv[48];
    memset(pv, 'a', 40);
    pv[40] = '!';
    pv[41] = 0;
    for (size_t i = 0; i < nser; i++) {
        snprintf(sv, sizeof sv, "%06zu", i);
        st_label_t l[3] = {
            {"__name__", "cv_v", 8, 4}, {"s", sv, 1, (uint32_t)strlen(sv)}, {"p", pv, 1, 41}};
        int64_t ts = T0;
        double v = vals ? vals[i] : (double)i;
        int rc = promql_sink_add(sink, l, 3, &ts, &v, 1);
        if (rc)
            return rc;
    }
    return 0;
}

static int run(const char *q, int64_t t, const promql_eval_opts_t *o, promql_result_t **r,
               char *err, size_t errlen)
{
    promql_expr_t *e;
    assert_int_equal(promql_parse(q, strlen(q), &e, err, errlen), 0);
    int rc = promql_eval(e, t, t, 60000, o, gen_select, NULL, r, err, errlen);
    promql_free(e);
    return rc;
}

static long maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Subquery steps count against max_samples: 200 series x 3601 steps. */
static void test_subquery_steps(void **state)
{
    (void)state;
    nser = 200;
    vals = NULL;
    char err[256];
    promql_result_t *r = NULL;
    promql_limit_t lim = PROMQL_LIMIT_NONE;
    promql_eval_opts_t o = {.max_samples = 500000, .refused = &lim};
    assert_int_equal(run("max_over_time(cv_v[1h:1s])", T0, &o, &r, err, sizeof err), ST_ELIMIT);
    assert_non_null(strstr(err, "too many samples"));
    assert_int_equal(lim, PROMQL_LIMIT_SAMPLES);
    assert_string_equal(promql_limit_name(lim), "query_max_samples");
    /* within the limit: the same answers as ever */
    o.max_samples = 0;
    assert_int_equal(run("max_over_time(cv_v[1h:1s])", T0, &o, &r, err, sizeof err), 0);
    assert_int_equal(lim, PROMQL_LIMIT_NONE);
    assert_int_equal(r->nseries, 200);
    for (size_t i = 0; i < r->nseries; i++) {
        assert_int_equal(r->series[i].n, 1);
        assert_true(r->series[i].v[0] == (double)i);
    }
    promql_result_free(r);
}

/* Bytes: one level and three levels of 1d:1s over 2000 series are refused
 * by max_bytes before they are allocated (peak RSS stays far below what
 * they would take: 1.5 GB and far more). */
static void test_bytes(void **state)
{
    (void)state;
    nser = 2000;
    vals = NULL;
    char err[256];
    promql_result_t *r = NULL;
    promql_limit_t lim = PROMQL_LIMIT_NONE;
    long before = maxrss_kib();
    promql_eval_opts_t o = {.max_samples = UINT64_MAX / 2, .max_bytes = 64u << 20, .refused = &lim};
    assert_int_equal(run("max_over_time(cv_v[1d:1s])", T0, &o, &r, err, sizeof err), ST_ELIMIT);
    assert_string_equal(err, "query would materialise more than 64 MiB (query_max_mb)");
    assert_int_equal(lim, PROMQL_LIMIT_BYTES);
    const char *nested = "max_over_time(max_over_time(max_over_time(cv_v[1d:1s])[1d:1s])[1d:1s])";
    assert_int_equal(run(nested, T0, &o, &r, err, sizeof err), ST_ELIMIT);
    assert_non_null(strstr(err, "(query_max_mb)"));
    /* without a byte limit, max_samples refuses them (steps counted) before
     * the selected series are spread over the inner grid */
    o.max_bytes = 0;
    o.max_samples = 0;
    assert_int_equal(run(nested, T0, &o, &r, err, sizeof err), ST_ELIMIT);
    assert_non_null(strstr(err, "too many samples"));
    assert_int_equal(lim, PROMQL_LIMIT_SAMPLES);
    assert_int_equal(run("max_over_time(cv_v[1d:1s])", T0, &o, &r, err, sizeof err), ST_ELIMIT);
    assert_int_equal(lim, PROMQL_LIMIT_SAMPLES);
    long grew = maxrss_kib() - before;
    assert_true(grew < 256 * 1024);
}

/* A budget shared by evaluations: charged while a result lives, given back
 * when it is freed or the evaluation fails; refused past its maximum. */
static void test_shared_budget(void **state)
{
    (void)state;
    nser = 100;
    vals = NULL;
    char err[256];
    _Atomic uint64_t used = 0;
    promql_limit_t lim;
    promql_result_t *r1 = NULL, *r2 = NULL;
    promql_eval_opts_t o = {.shared_bytes = &used, .shared_max_bytes = 8u << 20, .refused = &lim};
    assert_int_equal(run("cv_v", T0, &o, &r1, err, sizeof err), 0);
    uint64_t one = used;
    assert_true(one > 0);
    assert_int_equal(run("cv_v * 2", T0, &o, &r2, err, sizeof err), 0);
    assert_true(used > one);
    promql_result_free(r2);
    assert_int_equal(used, one);
    /* with one result alive, a query needing more than what is left fails */
    o.shared_max_bytes = one + (1u << 20);
    nser = 2000;
    assert_int_equal(run("max_over_time(cv_v[1h:1s])", T0, &o, &r2, err, sizeof err), ST_ELIMIT);
    assert_non_null(strstr(err, "(query_total_max_mb)"));
    assert_int_equal(lim, PROMQL_LIMIT_TOTAL_BYTES);
    assert_int_equal(used, one);
    promql_result_free(r1);
    assert_int_equal(used, 0);
}

static void test_cancel(void **state)
{
    (void)state;
    nser = 100;
    vals = NULL;
    char err[256];
    atomic_int cancel = 1;
    promql_limit_t lim;
    promql_result_t *r = NULL;
    promql_eval_opts_t o = {.cancel = &cancel, .refused = &lim};
    assert_int_equal(run("max_over_time(cv_v[1h:1s])", T0, &o, &r, err, sizeof err), ST_ETIMEDOUT);
    assert_string_equal(err, "query cancelled");
    assert_int_equal(lim, PROMQL_LIMIT_TIMEOUT);
}

/* label_replace() with a nested quantifier over 40-character values: an
 * error naming the match limit, not minutes of backtracking. */
static void test_regex_limit(void **state)
{
    (void)state;
    nser = 20;
    vals = NULL;
    char err[256];
    promql_limit_t lim;
    promql_result_t *r = NULL;
    promql_eval_opts_t o = {.refused = &lim};
    int rc = run("label_replace(cv_v, \"x\", \"$1\", \"p\", \"((a+)+)+$\")", T0, &o, &r, err,
                 sizeof err);
    assert_int_equal(rc, ST_ELIMIT);
    assert_non_null(strstr(err, "exceeded its match limit"));
    assert_int_equal(lim, PROMQL_LIMIT_REGEX);
    /* a plain pattern still matches */
    assert_int_equal(
        run("label_replace(cv_v, \"x\", \"$1\", \"p\", \"(a+)!\")", T0, &o, &r, err, sizeof err),
        0);
    assert_int_equal(r->nseries, 20);
    promql_result_free(r);
}

/* ---- topk/bottomk and sort against the sorts they replaced ------------------ */

static int better(int top, double x, double y)
{
    return top ? (x > y || (isnan(y) && !isnan(x))) : (x < y || (isnan(y) && !isnan(x)));
}

/* The former topk: a selection sort of the first k over the input order. */
static size_t ref_topk(int top, const double *v, size_t n, size_t k, size_t *out)
{
    size_t *idx = malloc(n * sizeof *idx);
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    size_t want = k < n ? k : n;
    for (size_t a = 0; a < want; a++) {
        size_t best = a;
        for (size_t b = a + 1; b < n; b++)
            if (better(top, v[idx[b]], v[idx[best]]))
                best = b;
        size_t t = idx[a];
        idx[a] = idx[best];
        idx[best] = t;
        out[a] = idx[a];
    }
    free(idx);
    return want;
}

/* The former sort: a stable insertion sort. */
static void ref_sort(int desc, const double *v, size_t n, size_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = i;
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && better(desc, v[out[j]], v[out[j - 1]]); j--) {
            size_t t = out[j - 1];
            out[j - 1] = out[j];
            out[j] = t;
        }
}

static size_t series_no(const promql_series_t *s)
{
    for (size_t i = 0; i < s->nlabels; i++)
        if (s->labels[i].name_len == 1 && s->labels[i].name[0] == 's')
            return (size_t)strtoul(s->labels[i].value, NULL, 10);
    return SIZE_MAX;
}

static void test_topk_sort_same_answers(void **state)
{
    (void)state;
    static const double pool[] = {0, 1, 2, 2, 3, -1, NAN, INFINITY};
    char err[256], q[64];
    size_t *want = malloc(3000 * sizeof *want);
    srand(11);
    for (int round = 0; round < 40; round++) {
        nser = 1 + (size_t)(rand() % 3000);
        vals = malloc(nser * sizeof *vals);
        for (size_t i = 0; i < nser; i++)
            vals[i] = pool[rand() % (int)(sizeof pool / sizeof pool[0])];
        size_t k = 1 + (size_t)(rand() % (round % 2 ? 20 : (int)nser + 5));
        for (int top = 0; top < 2; top++) {
            snprintf(q, sizeof q, "%s(%zu, cv_v)", top ? "topk" : "bottomk", k);
            promql_result_t *r = NULL;
            assert_int_equal(run(q, T0, NULL, &r, err, sizeof err), 0);
            size_t nw = ref_topk(top, vals, nser, k, want);
            assert_int_equal(r->nseries, nw);
            for (size_t i = 0; i < nw; i++)
                assert_int_equal(series_no(&r->series[i]), want[i]);
            promql_result_free(r);
            snprintf(q, sizeof q, "%s(cv_v)", top ? "sort_desc" : "sort");
            assert_int_equal(run(q, T0, NULL, &r, err, sizeof err), 0);
            ref_sort(top, vals, nser, want);
            assert_int_equal(r->nseries, nser);
            for (size_t i = 0; i < nser; i++)
                assert_int_equal(series_no(&r->series[i]), want[i]);
            promql_result_free(r);
        }
        free(vals);
    }
    vals = NULL;
    free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subquery_steps), cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_shared_budget),  cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_regex_limit),    cmocka_unit_test(test_topk_sort_same_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for common/cluster/qreply: a node's pushed-down result encoded with
 * qreply_encode and fed back through qreply_decode into the evaluator gives
 * exactly the result evaluated directly (range with gaps, instant, NaN and
 * infinities, a series present at every step); off-grid points, the size
 * limit and malformed replies (wrong bitmap size, too many values, cut
 * anywhere) are errors, never crashes. A pushed avg evaluated once on the
 * node (avg_parts: sums, then counts) serves both of the router's parts
 * and gives the direct answer; a reply that is not an avg's is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "promql.h"
#include "promql_eval.h"
#include "promql_plan.h"
#include "qreply.h"
#include "st_err.h"
#include "wire.h"

#define NS 3
#define NPTS 40

static int64_t g_ts[NS][NPTS];
static double g_v[NS][NPTS];
static size_t g_n[NS];

static void build_data(void)
{
    for (int s = 0; s < NS; s++) {
        g_n[s] = 0;
        for (int i = 0; i < NPTS; i++) {
            if (s == 1 && i >= 10 && i < 30)
                continue; /* a gap longer than the lookback */
            g_ts[s][g_n[s]] = 1000000 + (int64_t)i * 30000 + s * 125;
            double v = s * 100.0 + i * 1.25;
            if (s == 2 && i == 5)
                v = NAN;
            if (s == 2 && i == 6)
                v = INFINITY;
            g_v[s][g_n[s]++] = v;
        }
    }
}

static int sel_all(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                   promql_sink_t *sink)
{
    (void)arg, (void)m, (void)nm, (void)mint, (void)maxt;
    for (int s = 0; s < NS; s++) {
        char val[8];
        val[0] = (char)('a' + s);
        val[1] = 0;
        st_label_t l[2] = {{"__name__", "x", 8, 1}, {"k", val, 1, 1}};
        int rc = promql_sink_add(sink, l, 2, g_ts[s], g_v[s], g_n[s]);
        if (rc)
            return rc;
    }
    return 0;
}

typedef struct {
    const uint8_t *p;
    size_t len;
    int calls;
} reply_t;

static int remote(void *arg, const promql_node_t *n, int part, int64_t start, int64_t step,
                  size_t nsteps, promql_vsink_t *sink)
{
    reply_t *r = arg;
    (void)n, (void)part, (void)start, (void)step;
    r->calls++;
    return qreply_decode(r->p, r->len, nsteps, sink);
}

/* The router's side of a pushed avg: both parts from one reply. */
static int remote_avg(void *arg, const promql_node_t *n, int part, int64_t start, int64_t step,
                      size_t nsteps, promql_vsink_t *sink)
{
    reply_t *r = arg;
    (void)n, (void)start, (void)step;
    r->calls++;
    return qreply_decode_avg(r->p, r->len, nsteps, part, sink);
}

static int no_select(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                     promql_sink_t *sink)
{
    (void)arg, (void)m, (void)nm, (void)mint, (void)maxt, (void)sink;
    fail_msg("a pushed query selected data on the router");
    return ST_EINVAL;
}

/* Equal values (NaN equals NaN); finite ones within tol relative. */
static void same_values(double a, double b, double tol)
{
    if (isnan(a) || isnan(b)) {
        assert_true(isnan(a) && isnan(b));
        return;
    }
    if (tol > 0 && isfinite(a) && isfinite(b))
        assert_true(fabs(a - b) <= tol * fmax(fabs(a), fabs(b)));
    else
        assert_true(a == b);
}

static void same_result(const promql_result_t *a, const promql_result_t *b, double tol)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->nseries, b->nseries);
    for (size_t i = 0; i < a->nseries; i++) {
        const promql_series_t *x = &a->series[i], *y = &b->series[i];
        assert_int_equal(st_labels_cmp(x->labels, x->nlabels, y->labels, y->nlabels), 0);
        assert_int_equal(x->n, y->n);
        for (size_t k = 0; k < x->n; k++) {
            assert_true(x->ts[k] == y->ts[k]);
            same_values(x->v[k], y->v[k], tol);
        }
    }
}

/* Evaluate q directly, encode, then evaluate q planned with the reply. */
static void round_trip(const char *q, int64_t start, int64_t end, int64_t step)
{
    char err[256];
    promql_expr_t *e;
    assert_int_equal(promql_parse(q, strlen(q), &e, err, sizeof err), 0);
    promql_result_t *a = NULL, *b = NULL;
    assert_int_equal(promql_eval(e, start, end, step, NULL, sel_all, NULL, &a, err, sizeof err), 0);
    st_buf_t buf;
    st_buf_init(&buf);
    uint64_t points = 0;
    uint32_t steps = (uint32_t)((end - start) / step + 1);
    assert_int_equal(qreply_encode(a, start, step, steps, 1u << 20, &buf, &points, err, sizeof err),
                     0);
    qreply_counts_t want = {.samples = 123, .points = points, .series = 7}, got;
    assert_int_equal(qreply_put_counts(&buf, &want), 0);
    qreply_counts(buf.data, buf.len, &got);
    assert_true(got.samples == 123 && got.points == points && got.series == 7);
    assert_true(promql_plan(e, 0) == 1);
    reply_t r = {buf.data, buf.len, 0};
    promql_eval_opts_t o = {.remote = remote};
    assert_int_equal(promql_eval(e, start, end, step, &o, no_select, &r, &b, err, sizeof err), 0);
    assert_int_equal(r.calls, 1);
    same_result(a, b, 0);
    promql_result_free(a);
    promql_result_free(b);
    st_buf_deinit(&buf);
    promql_free(e);
}

static void test_round_trip(void **state)
{
    (void)state;
    build_data();
    /* range: series b has a gap (steps without a value: a bitmap), NaN and +Inf in c */
    round_trip("x", 1000000, 2200000, 15000);
    round_trip("x * 2", 1000000, 2200000, 60000);
    round_trip("rate(x[2m])", 1060000, 2200000, 30000);
    /* every step present (no bitmap) and instant */
    round_trip("x", 1100000, 1200000, 10000);
    round_trip("x", 1500000, 1500000, 1000);
    round_trip("-x", 1500000, 1500000, 1000);
}

/* q (an avg) evaluated directly, and on a "node" with avg_parts whose one
 * reply serves the router's sum and count parts: the same answer. */
static void avg_round_trip(const char *q, int64_t start, int64_t end, int64_t step)
{
    char err[256];
    promql_expr_t *e;
    assert_int_equal(promql_parse(q, strlen(q), &e, err, sizeof err), 0);
    promql_result_t *a = NULL, *node = NULL, *b = NULL;
    assert_int_equal(promql_eval(e, start, end, step, NULL, sel_all, NULL, &a, err, sizeof err), 0);
    promql_eval_opts_t no = {.avg_parts = 1};
    assert_int_equal(promql_eval(e, start, end, step, &no, sel_all, NULL, &node, err, sizeof err),
                     0);
    assert_true(node->nseries == 2 * node->avg_sums);
    assert_true(node->avg_sums == a->nseries);
    st_buf_t buf;
    st_buf_init(&buf);
    uint64_t points = 0;
    uint32_t steps = (uint32_t)((end - start) / step + 1);
    assert_int_equal(
        qreply_encode(node, start, step, steps, 1u << 20, &buf, &points, err, sizeof err), 0);
    size_t bare = buf.len; /* without the counters: not an avg's reply */
    qreply_counts_t want = {1, points, 3, 0, 1, node->avg_sums}, got;
    assert_int_equal(qreply_put_counts(&buf, &want), 0);
    qreply_counts(buf.data, buf.len, &got);
    assert_true(got.avg == 1 && got.avg_sums == node->avg_sums);
    assert_true(promql_plan(e, 0) == 1);
    reply_t r = {buf.data, buf.len, 0};
    promql_eval_opts_t o = {.remote = remote_avg};
    assert_int_equal(promql_eval(e, start, end, step, &o, no_select, &r, &b, err, sizeof err), 0);
    assert_int_equal(r.calls, 2);
    same_result(a, b, 1e-12); /* sums / counts round unlike a running mean */
    promql_result_free(b);
    b = NULL;
    if (node->nseries) {
        r = (reply_t){buf.data, bare, 0};
        assert_int_equal(promql_eval(e, start, end, step, &o, no_select, &r, &b, err, sizeof err),
                         ST_ECORRUPT);
        /* counters that do not split the series in two halves */
        buf.len = bare;
        want.avg_sums = node->avg_sums + 1;
        assert_int_equal(qreply_put_counts(&buf, &want), 0);
        r = (reply_t){buf.data, buf.len, 0};
        assert_int_equal(promql_eval(e, start, end, step, &o, no_select, &r, &b, err, sizeof err),
                         ST_ECORRUPT);
    }
    promql_result_free(a);
    promql_result_free(node);
    st_buf_deinit(&buf);
    promql_free(e);
}

static void test_avg_parts(void **state)
{
    (void)state;
    build_data();
    avg_round_trip("avg(x)", 1000000, 2200000, 15000);
    avg_round_trip("avg by (k) (x)", 1000000, 2200000, 15000);
    avg_round_trip("avg without (k) (rate(x[2m]))", 1060000, 2200000, 30000);
    avg_round_trip("(avg by (k) (x))", 1500000, 1500000, 1000);
    avg_round_trip("avg(x{k=\"none\"})", 1000000, 2200000, 15000);
}

static void test_encode_errors(void **state)
{
    (void)state;
    build_data();
    char err[256];
    promql_expr_t *e;
    assert_int_equal(promql_parse("x", 1, &e, err, sizeof err), 0);
    promql_result_t *a = NULL;
    assert_int_equal(
        promql_eval(e, 1000000, 2200000, 15000, NULL, sel_all, NULL, &a, err, sizeof err), 0);
    st_buf_t buf;
    st_buf_init(&buf);
    uint64_t points;
    /* a grid that does not hold the points */
    assert_int_equal(qreply_encode(a, 1000000, 7000, 200, 1u << 20, &buf, &points, err, sizeof err),
                     ST_EINVAL);
    assert_int_equal(qreply_encode(a, 1000000, 15000, 10, 1u << 20, &buf, &points, err, sizeof err),
                     ST_EINVAL);
    /* the size limit */
    buf.len = 0;
    assert_int_equal(qreply_encode(a, 1000000, 15000, 81, 100, &buf, &points, err, sizeof err),
                     ST_ELIMIT);
    assert_non_null(strstr(err, "larger than"));
    promql_result_free(a);
    st_buf_deinit(&buf);
    promql_free(e);
}

static int decode_with(const uint8_t *p, size_t len, size_t nsteps)
{
    char err[256];
    promql_expr_t *e;
    assert_int_equal(promql_parse("x", 1, &e, err, sizeof err), 0);
    promql_plan(e, 0);
    reply_t r = {p, len, 0};
    promql_eval_opts_t o = {.remote = remote};
    promql_result_t *b = NULL;
    int64_t end = 1000000 + (int64_t)(nsteps - 1) * 1000;
    int rc = promql_eval(e, 1000000, end, 1000, &o, no_select, &r, &b, err, sizeof err);
    promql_result_free(b);
    promql_free(e);
    return rc;
}

static void test_decode_errors(void **state)
{
    (void)state;
    st_label_t l[1] = {{"k", "v", 1, 1}};
    double v[3] = {1, 2, 3};
    uint8_t bits[2] = {0x05, 0x01}; /* steps 0, 2, 8 of 10 */
    st_buf_t b;
    st_buf_init(&b);
    /* good: 3 values at the 3 bits */
    assert_int_equal(wire_put_step_series(&b, 1, l, 1, bits, 2, v, 3), 0);
    assert_int_equal(decode_with(b.data, b.len, 10), 0);
    /* a bitmap of the wrong size for the grid */
    assert_int_equal(decode_with(b.data, b.len, 20), ST_ECORRUPT);
    /* fewer values than bits */
    b.len = 0;
    assert_int_equal(wire_put_step_series(&b, 1, l, 1, bits, 2, v, 2), 0);
    assert_int_equal(decode_with(b.data, b.len, 10), ST_ECORRUPT);
    /* no bitmap: one value per step exactly */
    b.len = 0;
    assert_int_equal(wire_put_step_series(&b, 1, l, 1, NULL, 0, v, 3), 0);
    assert_int_equal(decode_with(b.data, b.len, 3), 0);
    assert_int_equal(decode_with(b.data, b.len, 4), ST_ECORRUPT);
    /* every cut of a good reply: an error or a shorter answer, never a crash */
    b.len = 0;
    assert_int_equal(wire_put_step_series(&b, 1, l, 1, bits, 2, v, 3), 0);
    assert_int_equal(wire_put_step_series(&b, 1, l, 1, bits, 2, v, 3), 0);
    for (size_t cut = 0; cut < b.len; cut++)
        (void)decode_with(b.data, cut, 10);
    st_buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_avg_parts),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_decode_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

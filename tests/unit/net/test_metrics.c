/* Unit tests for common/net/metrics: registration rules, exact text format, threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"
#include "st_buf.h"
#include "st_err.h"

static void expect_render(metrics_t *m, const char *want)
{
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(metrics_render(m, &b), 0);
    assert_int_equal(st_buf_put_u8(&b, 0), 0);
    assert_string_equal((const char *)b.data, want);
    st_buf_deinit(&b);
}

static double answer(void *arg)
{
    return *(double *)arg;
}

static int collect(void *arg, st_buf_t *out)
{
    (void)arg;
    const char *t = "# HELP strata_shard_series Series per shard.\n"
                    "# TYPE strata_shard_series gauge\n"
                    "strata_shard_series{shard=\"";
    int rc = st_buf_append(out, t, strlen(t));
    if (!rc)
        rc = metrics_write_label_value(out, "a\"b", 3);
    if (!rc)
        rc = st_buf_append(out, "\"} ", 3);
    if (!rc)
        rc = metrics_write_value(out, 42);
    if (!rc)
        rc = st_buf_put_u8(out, '\n');
    return rc;
}

static void test_render_format(void **state)
{
    (void)state;
    metrics_t *m;
    assert_int_equal(metrics_create(&m), 0);
    metric_counter_t *c2 =
        metrics_counter(m, "strata_http_responses_total", "Responses sent.", "code", "2xx", NULL);
    metric_counter_t *c4 =
        metrics_counter(m, "strata_http_responses_total", "ignored", "code", "4xx", NULL);
    metric_gauge_t *g = metrics_gauge(m, "strata_up", "Line one\nback\\slash.", NULL);
    metric_gauge_t *esc = metrics_gauge(m, "strata_label_escape", "Escapes.", "path",
                                        "C:\\dir\n\"q\"", "b", "", NULL);
    double v = 0.1;
    assert_int_equal(
        metrics_callback(m, "strata_engine_bytes", "Bytes.", METRIC_GAUGE, answer, &v, NULL), 0);
    static const double bounds[] = {0.1, 1, 2.5};
    metric_hist_t *h =
        metrics_histogram(m, "strata_latency_seconds", "Latency.", bounds, 3, "op", "q", NULL);
    assert_int_equal(metrics_collector(m, collect, NULL), 0);
    assert_non_null(c2);
    assert_non_null(c4);
    assert_non_null(g);
    assert_non_null(esc);
    assert_non_null(h);
    metric_counter_add(c2, 41);
    metric_counter_inc(c2);
    metric_gauge_set(g, 1);
    metric_gauge_add(esc, -2.5);
    metric_hist_observe(h, 0.05);
    metric_hist_observe(h, 0.1);
    metric_hist_observe(h, 2);
    metric_hist_observe(h, 100);
    expect_render(m, "# HELP strata_http_responses_total Responses sent.\n"
                     "# TYPE strata_http_responses_total counter\n"
                     "strata_http_responses_total{code=\"2xx\"} 42\n"
                     "strata_http_responses_total{code=\"4xx\"} 0\n"
                     "# HELP strata_up Line one\\nback\\\\slash.\n"
                     "# TYPE strata_up gauge\n"
                     "strata_up 1\n"
                     "# HELP strata_label_escape Escapes.\n"
                     "# TYPE strata_label_escape gauge\n"
                     "strata_label_escape{path=\"C:\\\\dir\\n\\\"q\\\"\",b=\"\"} -2.5\n"
                     "# HELP strata_engine_bytes Bytes.\n"
                     "# TYPE strata_engine_bytes gauge\n"
                     "strata_engine_bytes 0.1\n"
                     "# HELP strata_latency_seconds Latency.\n"
                     "# TYPE strata_latency_seconds histogram\n"
                     "strata_latency_seconds_bucket{op=\"q\",le=\"0.1\"} 2\n"
                     "strata_latency_seconds_bucket{op=\"q\",le=\"1\"} 2\n"
                     "strata_latency_seconds_bucket{op=\"q\",le=\"2.5\"} 3\n"
                     "strata_latency_seconds_bucket{op=\"q\",le=\"+Inf\"} 4\n"
                     "strata_latency_seconds_sum{op=\"q\"} 102.15\n"
                     "strata_latency_seconds_count{op=\"q\"} 4\n"
                     "# HELP strata_shard_series Series per shard.\n"
                     "# TYPE strata_shard_series gauge\n"
                     "strata_shard_series{shard=\"a\\\"b\"} 42\n");
    metrics_destroy(m);
}

static void test_registration_rules(void **state)
{
    (void)state;
    metrics_t *m;
    assert_int_equal(metrics_create(&m), 0);
    metric_counter_t *a = metrics_counter(m, "x_total", "X.", "k", "v", NULL);
    assert_non_null(a);
    /* Same name + labels: the same series. */
    assert_ptr_equal(metrics_counter(m, "x_total", "X.", "k", "v", NULL), a);
    /* Same name, another type. */
    assert_null(metrics_gauge(m, "x_total", "X.", "k", "w", NULL));
    /* Invalid names, missing value, reserved le. */
    assert_null(metrics_counter(m, "1bad", "h", NULL));
    assert_null(metrics_counter(m, "bad-name", "h", NULL));
    assert_null(metrics_counter(m, "ok", "h", "bad label", "v", NULL));
    assert_null(metrics_counter(m, "ok", "h", "k", NULL));
    assert_null(metrics_counter(m, "ok", "h", "le", "1", NULL));
    assert_non_null(metrics_counter(m, "ns:ok_total", "h", NULL));
    double v = 1;
    assert_int_equal(metrics_callback(m, "cb", "h", METRIC_GAUGE, answer, &v, NULL), 0);
    assert_int_equal(metrics_callback(m, "cb", "h", METRIC_GAUGE, answer, &v, NULL), ST_EEXIST);
    assert_int_equal(metrics_callback(m, "cb", "h", METRIC_HISTOGRAM, answer, &v, NULL), ST_EINVAL);
    static const double bad[] = {1, 1};
    assert_null(metrics_histogram(m, "hh", "h", bad, 2, NULL));
    /* NULL series are no-ops. */
    metric_counter_inc(NULL);
    metric_gauge_set(NULL, 1);
    metric_hist_observe(NULL, 1);
    assert_int_equal(metric_counter_get(NULL), 0);
    metrics_destroy(m);
}

static void test_values(void **state)
{
    (void)state;
    st_buf_t b;
    st_buf_init(&b);
    const double vals[] = {0, -0.0, 1.5, 1e21, 0.1 + 0.2, 123456789012, INFINITY, -INFINITY, NAN};
    const char *want = "0 -0 1.5 1e+21 0.30000000000000004 123456789012 +Inf -Inf NaN ";
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        assert_int_equal(metrics_write_value(&b, vals[i]), 0);
        assert_int_equal(st_buf_put_u8(&b, ' '), 0);
    }
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    st_buf_deinit(&b);
}

typedef struct {
    metric_counter_t *c;
    metric_gauge_t *g;
    metric_hist_t *h;
    metrics_t *m;
} thr_arg_t;

#define ITERS 100000

static void *worker(void *p)
{
    thr_arg_t *a = p;
    for (int i = 0; i < ITERS; i++) {
        metric_counter_inc(a->c);
        metric_gauge_add(a->g, 1);
        metric_hist_observe(a->h, (i % 10) * 0.01);
        if (i % 10000 == 0) {
            st_buf_t b;
            st_buf_init(&b);
            assert_int_equal(metrics_render(a->m, &b), 0);
            st_buf_deinit(&b);
            /* Concurrent registration of the same series. */
            assert_ptr_equal(metrics_counter(a->m, "c_total", "C.", NULL), a->c);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    metrics_t *m;
    assert_int_equal(metrics_create(&m), 0);
    thr_arg_t a = {
        .c = metrics_counter(m, "c_total", "C.", NULL),
        .g = metrics_gauge(m, "g", "G.", NULL),
        .h = metrics_histogram(m, "h_seconds", "H.", metrics_latency_buckets,
                               metrics_latency_nbuckets, NULL),
        .m = m,
    };
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, &a), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(metric_counter_get(a.c), 4 * ITERS);
    assert_true(metric_gauge_get(a.g) == 4.0 * ITERS);
    assert_int_equal(metric_hist_count(a.h), 4 * ITERS);
    assert_true(fabs(metric_hist_sum(a.h) - 4.0 * ITERS * 0.045) < 1e-6 * ITERS);
    metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_format),
        cmocka_unit_test(test_registration_rules),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

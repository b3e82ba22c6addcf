/*
 * engine_count tests: on random workloads (in-order and out-of-order
 * appends, rewrites of old timestamps, flushes, compactions, deletes) the
 * per-series counts over random ranges equal what engine_query returns, and
 * wholly covered flushed blocks are counted from their headers; so do the
 * timestamp fingerprints of engine_tstats (count, sum of engine_ts_mix,
 * first, last).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine.h"
#include "st_err.h"

#define NS 12
#define NHOSTS 16

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static char hosts[NS][16];
static st_label_t slabs[NS][2];

static void init(void)
{
    for (int i = 0; i < NS; i++) {
        snprintf(hosts[i], sizeof hosts[i], "h%02d", i);
        slabs[i][0] = (st_label_t){"__name__", "cpu", 8, 3};
        slabs[i][1] = (st_label_t){"host", hosts[i], 4, (uint32_t)strlen(hosts[i])};
    }
}

static int series_of(const st_label_t *l, size_t nl)
{
    for (size_t i = 0; i < nl; i++)
        if (!strcmp(l[i].name, "host"))
            return atoi(l[i].value + 1);
    return -1;
}

typedef struct counts {
    uint64_t n[NS];
    engine_tstats_t f[NS];
} counts_t;

static int on_tstats(void *arg, const st_label_t *l, size_t nl, const engine_tstats_t *t)
{
    counts_t *c = arg;
    int s = series_of(l, nl);
    assert_true(s >= 0 && s < NS);
    assert_int_equal(c->f[s].count, 0); /* once per series */
    assert_true(t->count > 0);
    c->f[s] = *t;
    return 0;
}

static int on_count(void *arg, const st_label_t *l, size_t nl, uint64_t n)
{
    counts_t *c = arg;
    int s = series_of(l, nl);
    assert_true(s >= 0 && s < NS);
    assert_int_equal(c->n[s], 0); /* once per series */
    c->n[s] = n;
    return 0;
}

static int is_stale(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u == 0x7ff0000000000002ULL;
}

static double stale(void)
{
    uint64_t u = 0x7ff0000000000002ULL;
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static engine_count_stats_t last_tst; /* of the last engine_tstats call */

static void check_flags(engine_t *e, int64_t mint, int64_t maxt, int flags,
                        engine_count_stats_t *st)
{
    st_matcher_t m = {ST_MATCH_EQ, "__name__", "cpu"};
    counts_t want, got;
    memset(&want, 0, sizeof want);
    memset(&got, 0, sizeof got);
    engine_iter_t *it;
    assert_int_equal(engine_query(e, &m, 1, mint, maxt, &it), 0);
    const st_label_t *l;
    size_t nl, n;
    const int64_t *ts;
    const double *v;
    while (engine_iter_next(it, &l, &nl, &ts, &v, &n) == 1) {
        uint64_t k = 0;
        engine_tstats_t f = {0, 0, INT64_MAX, INT64_MIN};
        for (size_t i = 0; i < n; i++) {
            if ((flags & ENGINE_COUNT_NO_STALE) && is_stale(v[i]))
                continue;
            k++;
            f.count++;
            f.hash += engine_ts_mix(ts[i]);
            f.mint = ts[i] < f.mint ? ts[i] : f.mint;
            f.maxt = ts[i] > f.maxt ? ts[i] : f.maxt;
        }
        want.n[series_of(l, nl)] = k;
        if (k)
            want.f[series_of(l, nl)] = f;
    }
    engine_iter_destroy(it);
    assert_int_equal(engine_count(e, &m, 1, mint, maxt, flags, on_count, &got, st), 0);
    for (int i = 0; i < NS; i++)
        assert_int_equal(got.n[i], want.n[i]);
    engine_count_stats_t tst;
    assert_int_equal(engine_tstats(e, &m, 1, mint, maxt, flags, on_tstats, &got, &tst), 0);
    last_tst = tst;
    for (int i = 0; i < NS; i++) {
        assert_int_equal(got.f[i].count, want.f[i].count);
        assert_true(got.f[i].hash == want.f[i].hash);
        if (want.f[i].count) {
            assert_true(got.f[i].mint == want.f[i].mint);
            assert_true(got.f[i].maxt == want.f[i].maxt);
        }
    }
    if (st) /* the same blocks are whole; fingerprinting decodes their timestamps only */
        assert_int_equal(tst.from_headers, st->from_headers);
}

static void check(engine_t *e, int64_t mint, int64_t maxt, engine_count_stats_t *st)
{
    check_flags(e, mint, maxt, ENGINE_COUNT_NO_STALE, NULL);
    check_flags(e, mint, maxt, 0, st);
}

static engine_t *open_engine(const char *dir)
{
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    o.partition_ms = 100000;
    engine_t *e;
    assert_int_equal(engine_open(dir, &o, &e), 0);
    return e;
}

static void write_one(engine_t *e, int s, int64_t t, double v)
{
    engine_series_batch_t b = {slabs[s], 2, &t, &v, 1};
    size_t bad;
    assert_int_equal(engine_write(e, &b, 1, &bad), 0);
}

static void test_counts_match_reads(void **state)
{
    (void)state;
    init();
    char dir[] = "/tmp/strata-test-count-XXXXXX";
    assert_non_null(mkdtemp(dir));
    engine_t *e = open_engine(dir);
    int64_t t = 1000;
    for (int round = 0; round < 12; round++) {
        for (int k = 0; k < 3000; k++) { /* mostly in order, some rewrites/ooo */
            int s = (int)(rnd() % NS);
            int64_t ts = rnd() % 10 ? t + (int64_t)(rnd() % 50) : (int64_t)(rnd() % (t + 1));
            int r = (int)(rnd() % 16);
            write_one(e, s, ts, r == 0 ? stale() : r < 8 ? (double)(k % 100) : (double)k / 7.0);
            t += 7;
        }
        int op = (int)(rnd() % 4);
        if (op == 0 || op == 1)
            assert_int_equal(engine_flush(e), 0);
        else if (op == 2)
            assert_int_equal(engine_compact(e), 0);
        if (rnd() % 3 == 0) { /* a delete of one host over a random range */
            char h[16];
            snprintf(h, sizeof h, "h%02d", (int)(rnd() % NS));
            st_matcher_t m[2] = {{ST_MATCH_EQ, "__name__", "cpu"}, {ST_MATCH_EQ, "host", h}};
            int64_t a = (int64_t)(rnd() % (uint64_t)t), len = (int64_t)(rnd() % 20000);
            engine_delete_result_t r;
            assert_int_equal(engine_delete(e, m, 2, a, a + len, 0, 0, &r), 0);
        }
        for (int q = 0; q < 8; q++) {
            int64_t a = (int64_t)(rnd() % (uint64_t)(t + 100)) - 50;
            int64_t b = q == 0 ? INT64_MAX / 2 : a + (int64_t)(rnd() % 60000);
            if (q == 0)
                a = INT64_MIN / 2;
            check(e, a, b, NULL);
        }
    }
    engine_close(e);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_whole_blocks_from_headers(void **state)
{
    (void)state;
    init();
    char dir[] = "/tmp/strata-test-count-XXXXXX";
    assert_non_null(mkdtemp(dir));
    engine_t *e = open_engine(dir);
    enum { N = 20000 }; /* 2 partitions of 10000: blocks of 4096, 4096, 1808 */
    static int64_t ts[N];
    static double v[N];
    for (int i = 0; i < N; i++)
        ts[i] = i * 10, v[i] = i;
    for (int s = 0; s < NS; s++) {
        engine_series_batch_t b = {slabs[s], 2, ts, v, N};
        size_t bad;
        assert_int_equal(engine_write(e, &b, 1, &bad), 0);
    }
    assert_int_equal(engine_flush(e), 0);
    engine_count_stats_t st;
    check(e, INT64_MIN / 2, INT64_MAX / 2, &st);
    assert_int_equal(st.samples, (uint64_t)NS * N);
    assert_int_equal(st.decoded, 0);
    assert_int_equal(st.from_headers, st.samples);
    /* fingerprinted before (check runs twice): every block's sum was kept */
    assert_int_equal(last_tst.ts_cached, st.samples);
    /* a range cutting blocks decodes only those */
    check(e, 12345, 145678, &st);
    assert_true(st.from_headers > 0);
    assert_true(st.decoded < st.samples);
    /* a delete over part of one host: still equal, that host's blocks decoded */
    st_matcher_t m[2] = {{ST_MATCH_EQ, "__name__", "cpu"}, {ST_MATCH_EQ, "host", "h03"}};
    engine_delete_result_t r;
    assert_int_equal(engine_delete(e, m, 2, 20000, 20990, 0, 0, &r), 0);
    assert_int_equal(r.samples, 100);
    check(e, INT64_MIN / 2, INT64_MAX / 2, &st);
    assert_int_equal(st.samples, (uint64_t)NS * N - 100);
    assert_true(st.decoded > 0 && st.decoded < st.samples);
    engine_close(e);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_match_reads),
        cmocka_unit_test(test_whole_blocks_from_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

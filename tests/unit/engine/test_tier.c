/* Unit tests for node/engine/engine_tier: bucket math, the tier series
 * encoding, and a pass over a real engine (move, watermark, raw dropped,
 * buckets read back equal to aggregating the raw samples). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "engine.h"
#include "engine_tier.h"
#include "st_err.h"

#define H 3600000LL
#define D (24 * H)

static void test_bucket_end(void **state)
{
    (void)state;
    assert_int_equal(tier_bucket_end(0, 60000), 0);
    assert_int_equal(tier_bucket_end(1, 60000), 60000);
    assert_int_equal(tier_bucket_end(60000, 60000), 60000);
    assert_int_equal(tier_bucket_end(60001, 60000), 120000);
    assert_int_equal(tier_bucket_end(-1, 60000), 0);
    assert_int_equal(tier_bucket_end(-60000, 60000), -60000);
    assert_int_equal(tier_bucket_end(-60001, 60000), -60000);
}

static void test_aggregate(void **state)
{
    (void)state;
    /* buckets (0, 10], (10, 20], (20, 30]; a reset inside the second */
    int64_t ts[] = {10, 11, 15, 19, 20, 25};
    double v[] = {5, 7, 9, 2, 4, NAN};
    tier_bucket_t b[6];
    size_t n = tier_aggregate(ts, v, 6, 10, b);
    assert_int_equal(n, 3);
    assert_int_equal(b[0].end, 10);
    assert_true(b[0].count == 1 && b[0].sum == 5 && b[0].first == 5 && b[0].last == 5);
    assert_true(signbit(b[0].rsum) && b[0].rsum == 0); /* -0.0: no reset */
    assert_int_equal(b[1].end, 20);
    assert_true(b[1].count == 4 && b[1].sum == 22 && b[1].min == 2 && b[1].max == 9);
    assert_int_equal(b[1].first_ts, 11);
    assert_int_equal(b[1].last_ts, 20);
    assert_true(b[1].first == 7 && b[1].last == 4 && b[1].rsum == 9);
    assert_true(b[2].count == 1 && isnan(b[2].sum));
    /* merging the first two is aggregating their samples at width 20 */
    tier_bucket_t m[6];
    size_t nm = tier_aggregate(ts, v, 5, 20, m);
    assert_int_equal(nm, 1);
    tier_bucket_t c = b[0];
    tier_merge(&c, &b[1]);
    c.end = 20;
    assert_memory_equal(&c, &m[0], sizeof c);
}

static void test_rebucket_and_codec(void **state)
{
    (void)state;
    enum { N = 5000 };
    int64_t *ts = malloc(N * sizeof *ts);
    double *v = malloc(N * sizeof *v);
    tier_bucket_t *fine = malloc(N * sizeof *fine), *coarse = malloc(N * sizeof *coarse);
    uint64_t r = 1;
    double x = 0;
    for (size_t i = 0; i < N; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        ts[i] = (int64_t)i * 10000 - 3 * H;
        x += (double)(r >> 60);
        if ((r >> 20) % 97 == 0)
            x = 0; /* a counter reset */
        v[i] = x;
    }
    size_t nf = tier_aggregate(ts, v, N, 60000, fine);
    size_t nc = tier_aggregate(ts, v, N, H, coarse);
    size_t nr = tier_rebucket(fine, nf, H);
    assert_int_equal(nr, nc);
    for (size_t i = 0; i < nc; i++) { /* integer values: exact in any order */
        assert_int_equal(fine[i].end, coarse[i].end);
        assert_true(fine[i].count == coarse[i].count && fine[i].sum == coarse[i].sum);
        assert_true(fine[i].min == coarse[i].min && fine[i].max == coarse[i].max);
        assert_true(fine[i].rsum == coarse[i].rsum && fine[i].last == coarse[i].last);
        assert_int_equal(fine[i].first_ts, coarse[i].first_ts);
        assert_int_equal(fine[i].last_ts, coarse[i].last_ts);
    }
    int64_t *ets = malloc(nc * TIER_FIELDS * sizeof *ets);
    double *ev = malloc(nc * TIER_FIELDS * sizeof *ev);
    tier_encode(coarse, nc, H, ets, ev);
    /* the fields open each bucket (never in the previous partition) */
    assert_int_equal(ets[0], coarse[0].end - H + 1);
    assert_int_equal(ets[TIER_FIELDS - 1], coarse[0].end - H + TIER_FIELDS);
    tier_bucket_t *back = malloc((nc + 1) * sizeof *back);
    size_t nb;
    assert_int_equal(
        tier_decode(ets, ev, nc * TIER_FIELDS, H, INT64_MIN / 2, INT64_MAX / 2, back, &nb), 0);
    assert_int_equal(nb, nc);
    assert_memory_equal(back, coarse, nc * sizeof *back);
    /* layout 1 (the fields closing each bucket, E-8 .. E) still reads */
    for (size_t i = 0; i < nc * TIER_FIELDS; i++)
        ets[i] = coarse[i / TIER_FIELDS].end - (TIER_FIELDS - 1) + (int64_t)(i % TIER_FIELDS);
    assert_int_equal(
        tier_decode(ets, ev, nc * TIER_FIELDS, H, INT64_MIN / 2, INT64_MAX / 2, back, &nb), 0);
    assert_int_equal(nb, nc);
    assert_memory_equal(back, coarse, nc * sizeof *back);
    /* a group mixing the layouts is corrupt */
    ets[1] = coarse[0].end - H + 2;
    assert_int_equal(
        tier_decode(ets, ev, nc * TIER_FIELDS, H, INT64_MIN / 2, INT64_MAX / 2, back, &nb),
        ST_ECORRUPT);
    tier_encode(coarse, nc, H, ets, ev);
    /* a cut range skips the cut groups; a broken group inside is corrupt */
    assert_int_equal(tier_decode(ets + 3, ev + 3, nc * TIER_FIELDS - 3, H, coarse[1].end,
                                 coarse[nc - 1].end, back, &nb),
                     0);
    assert_int_equal(nb, nc - 1);
    ev[TIER_FIELDS + 5] = -1; /* E - first_ts out of range */
    assert_int_equal(
        tier_decode(ets, ev, nc * TIER_FIELDS, H, INT64_MIN / 2, INT64_MAX / 2, back, &nb),
        ST_ECORRUPT);
    free(ts);
    free(v);
    free(fine);
    free(coarse);
    free(ets);
    free(ev);
    free(back);
}

/* ---- a pass over a real engine ---- */

typedef struct got {
    size_t series;
    double count, sum;
    int64_t first_end, last_end;
} got_t;

static int got_cb(void *arg, const st_label_t *l, size_t nl, const tier_bucket_t *b, size_t n)
{
    got_t *g = arg;
    for (size_t i = 0; i < nl; i++)
        assert_false(l[i].name_len == strlen(TIER_LABEL) && !memcmp(l[i].name, TIER_LABEL, 8));
    g->series++;
    for (size_t i = 0; i < n; i++) {
        g->count += b[i].count;
        g->sum += b[i].sum;
        assert_true(i == 0 || b[i].end > b[i - 1].end);
    }
    if (n && (!g->first_end || b[0].end < g->first_end))
        g->first_end = b[0].end;
    if (n && b[n - 1].end > g->last_end)
        g->last_end = b[n - 1].end;
    return 0;
}

static void test_pass(void **state)
{
    (void)state;
    char dir[] = "/tmp/strata-test-tier-XXXXXX";
    assert_non_null(mkdtemp(dir));
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    o.wal_durability = ENGINE_WAL_NONE;
    engine_t *e;
    assert_int_equal(engine_open(dir, &o, &e), 0);
    /* 3 days of 10 s samples for 2 series, from day 100 */
    enum { N = 3 * 8640 };
    int64_t *ts = malloc(N * sizeof *ts);
    double *v = malloc(N * sizeof *v);
    double tot = 0;
    for (size_t i = 0; i < N; i++) {
        ts[i] = 100 * D + (int64_t)i * 10000;
        v[i] = (double)(i % 50);
        tot += v[i];
    }
    st_label_t la[] = {{"__name__", "m", 8, 1}, {"host", "a", 4, 1}};
    st_label_t lb[] = {{"__name__", "m", 8, 1}, {"host", "b", 4, 1}};
    engine_series_batch_t b[] = {{la, 2, ts, v, N}, {lb, 2, ts, v, N}};
    assert_int_equal(engine_write(e, b, 2, NULL), 0);
    engine_tier_spec_t spec[] = {{7 * D, 60000}, {90 * D, H}};
    engine_tiers_t *t;
    assert_int_equal(engine_tiers_open(e, dir, spec, 2, &o, 0, &t), 0);
    st_matcher_t m = {ST_MATCH_EQ, "__name__", "m"};
    got_t g0 = {0};
    int64_t used = 0;
    uint64_t read = 0;
    /* before any move: on-the-fly buckets from raw data */
    assert_int_equal(engine_tiers_select(t, &m, 1, 0, 200 * D, H, got_cb, &g0, &used, &read), 0);
    assert_int_equal(g0.series, 2);
    assert_true(g0.count == 2.0 * N && g0.sum == 2 * tot);
    assert_int_equal(read, 2 * N);
    /* day 150: the 1m tier takes everything (ages: 7 d yes, 90 d no) */
    /* only flushed data is seen (the head is flushed by age or size) */
    assert_int_equal(engine_tiers_run(t, 150 * D, 64), 0);
    assert_int_equal(engine_flush(e), 0);
    int moved = engine_tiers_run(t, 150 * D, 64);
    assert_true(moved >= 3);
    assert_int_equal(engine_tiers_raw_after(t), 103 * D);
    engine_iter_t *it;
    assert_int_equal(engine_query(e, &m, 1, 0, 200 * D, &it), 0);
    const st_label_t *l;
    size_t nl, n;
    const int64_t *qt;
    const double *qv;
    /* the raw partitions are gone but the one holding the last sample at 103 d */
    while (engine_iter_next(it, &l, &nl, &qt, &qv, &n) == 1)
        assert_true(n == 0 || qt[0] >= 103 * D);
    engine_iter_destroy(it);
    got_t g1 = {0};
    read = 0;
    assert_int_equal(engine_tiers_select(t, &m, 1, 0, 200 * D, H, got_cb, &g1, &used, &read), 0);
    assert_true(g1.count == 2.0 * N && g1.sum == 2 * tot);
    assert_int_equal(used, H);
    assert_true(read < 2 * N / 6 + 100);
    /* day 200: on into the 1h tier; asked for 1m buckets, 1h ones answer */
    assert_true(engine_tiers_run(t, 200 * D, 64) > 0);
    got_t g2 = {0};
    read = 0;
    assert_int_equal(engine_tiers_select(t, &m, 1, 0, 200 * D, 60000, got_cb, &g2, &used, &read),
                     0);
    assert_true(g2.count == 2.0 * N && g2.sum == 2 * tot);
    assert_int_equal(used, H);
    assert_true(read <= 2 * (3 * 24 + 1));
    engine_tier_stats_t st[2];
    assert_int_equal(engine_tiers_stats(t, st, 2), 2);
    assert_true(st[0].buckets_written > 0 && st[1].buckets_written > 0);
    assert_true(st[1].watermark_ms >= 103 * D);
    /* reopen: the watermarks are durable */
    engine_tiers_close(t);
    assert_int_equal(engine_tiers_open(e, dir, spec, 2, &o, 0, &t), 0);
    assert_int_equal(engine_tiers_stats(t, st, 2), 2);
    assert_true(st[1].watermark_ms >= 103 * D);
    got_t g3 = {0};
    assert_int_equal(engine_tiers_select(t, &m, 1, 0, 200 * D, H, got_cb, &g3, &used, &read), 0);
    assert_true(g3.count == 2.0 * N && g3.sum == 2 * tot);
    engine_tiers_close(t);
    assert_int_equal(engine_close(e), 0);
    free(ts);
    free(v);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_end),
        cmocka_unit_test(test_aggregate),
        cmocka_unit_test(test_rebucket_and_codec),
        cmocka_unit_test(test_pass),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

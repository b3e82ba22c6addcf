/*
 * Versioned writes (engine.h, VERSIONS): of two samples of one (series,
 * timestamp) the higher version wins whatever the arrival order, in the
 * head, after a flush (block vmax), after compaction, after a WAL replay
 * (a process that exits without closing) and after a reopen; unversioned
 * writes keep last-write-wins and read as version 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../common/tmpdir.h"

#include "engine.h"
#include "engine_internal.h"
#include "st_err.h"

static char *make_dir(void)
{
    return make_dir_tagged("versions");
}

static const st_label_t lab[2] = {{"__name__", "m", 8, 1}, {"host", "a", 4, 1}};

static engine_t *open_engine(const char *dir)
{
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    o.wal_durability = ENGINE_WAL_OS_DEFAULT;
    engine_t *e;
    assert_int_equal(engine_open(dir, &o, &e), 0);
    return e;
}

static void put(engine_t *e, int64_t t, double v, uint64_t version)
{
    engine_series_batch_t b = {lab, 2, &t, &v, 1};
    engine_write_result_t r;
    engine_write_result_init(&r);
    assert_int_equal(engine_write_v(e, &b, 1, version, &r), 0);
    assert_int_equal(r.written, 1);
}

/* The value at t (asserts exactly one sample there) and its version. */
static double get(engine_t *e, int64_t t, uint64_t *version)
{
    st_matcher_t m = {ST_MATCH_EQ, "host", "a"};
    engine_iter_t *it;
    assert_int_equal(engine_query(e, &m, 1, t, t, &it), 0);
    const st_label_t *l;
    size_t nl, n;
    const int64_t *ts;
    const double *v;
    assert_int_equal(engine_iter_next(it, &l, &nl, &ts, &v, &n), 1);
    assert_int_equal(n, 1);
    assert_int_equal(ts[0], t);
    double x = v[0];
    if (version)
        *version = engine_iter_versions(it)[0];
    assert_int_equal(engine_iter_next(it, &l, &nl, &ts, &v, &n), 0);
    engine_iter_destroy(it);
    return x;
}

static void test_head_higher_version_wins(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_t *e = open_engine(dir);
    put(e, 1000, 1.0, 200);
    put(e, 1000, 2.0, 100); /* older version arrives later: hidden */
    uint64_t ver;
    assert_true(get(e, 1000, &ver) == 1.0);
    assert_int_equal(ver, 200);
    put(e, 1000, 3.0, 300); /* newer: wins */
    assert_true(get(e, 1000, &ver) == 3.0);
    assert_int_equal(ver, 300);
    put(e, 1000, 4.0, 300); /* equal version: the later arrival */
    assert_true(get(e, 1000, NULL) == 4.0);
    /* unversioned data: last write wins, version 0; any version beats it */
    put(e, 2000, 5.0, 0);
    put(e, 2000, 6.0, 0);
    assert_true(get(e, 2000, &ver) == 6.0);
    assert_int_equal(ver, 0);
    put(e, 2000, 7.0, 1);
    assert_true(get(e, 2000, NULL) == 7.0);
    put(e, 2000, 8.0, 0);
    assert_true(get(e, 2000, NULL) == 7.0);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

static void test_flushed_block_version(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_t *e = open_engine(dir);
    put(e, 1000, 1.0, 500);
    put(e, 1001, 1.5, 400);
    assert_int_equal(engine_flush(e), 0);
    uint64_t ver;
    assert_true(get(e, 1000, &ver) == 1.0);
    assert_int_equal(ver, 500); /* the block's vmax */
    put(e, 1000, 2.0, 450);     /* a late older write does not put its value back */
    put(e, 1001, 2.5, 450);     /* (the documented imprecision: 450 > 400 but < vmax) */
    assert_true(get(e, 1000, NULL) == 1.0);
    assert_true(get(e, 1001, NULL) == 1.5);
    put(e, 1000, 3.0, 600); /* newer than the block: wins */
    assert_true(get(e, 1000, &ver) == 3.0);
    assert_int_equal(ver, 600);
    /* both in segments now: the newer segment's block wins by version, and a
     * flushed older version loses against an older segment's newer block */
    assert_int_equal(engine_flush(e), 0);
    put(e, 1001, 9.0, 100);
    assert_int_equal(engine_flush(e), 0);
    assert_true(get(e, 1000, NULL) == 3.0);
    assert_true(get(e, 1001, NULL) == 1.5);
    /* compaction keeps the winners and their versions */
    assert_int_equal(engine_compact(e), 0);
    assert_true(get(e, 1000, &ver) == 3.0);
    assert_int_equal(ver, 600);
    assert_true(get(e, 1001, NULL) == 1.5);
    put(e, 1001, 10.0, 700);
    assert_true(get(e, 1001, NULL) == 10.0);
    assert_int_equal(engine_close(e), 0);
    /* reopen: segments (format 2) keep block versions */
    e = open_engine(dir);
    assert_true(get(e, 1000, &ver) == 3.0);
    assert_int_equal(ver, 600);
    put(e, 1000, 11.0, 550);
    assert_true(get(e, 1000, NULL) == 3.0);
    put(e, 1000, 12.0, 650);
    assert_true(get(e, 1000, NULL) == 12.0);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

/* A flush drops the frozen samples that a higher version already beats:
 * inside the last segment's time range by reading the files, outside it
 * by the active head (written while the frozen head waits to flush). */
static void test_frozen_resolve_window(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_t *e = open_engine(dir);
    put(e, 1000, 1.0, 500);
    put(e, 1001, 1.5, 500);
    assert_int_equal(engine_flush(e), 0); /* a segment over [1000, 1001] */
    put(e, 1001, 2.0, 100);               /* loses to the segment's 500 */
    put(e, 5000, 3.0, 300);               /* loses to the active head's 400 below */
    put(e, 6000, 4.0, 900);               /* the frozen block's vmax: 900 */
    assert_int_equal(engine_freeze_head(e, 0), 0);
    put(e, 5000, 5.0, 400);
    assert_int_equal(engine_flush_frozen(e, 0), 0);
    uint64_t ver;
    assert_true(get(e, 1001, &ver) == 1.5);
    assert_int_equal(ver, 500);
    assert_true(get(e, 5000, &ver) == 5.0);
    assert_int_equal(ver, 400);
    assert_true(get(e, 6000, &ver) == 4.0);
    assert_int_equal(ver, 900);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

static void test_wal_replay_keeps_versions(void **state)
{
    (void)state;
    char *dir = make_dir();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        engine_opts_t o;
        engine_opts_default(&o);
        o.background = 0;
        o.wal_durability = ENGINE_WAL_OS_DEFAULT;
        engine_t *e;
        if (engine_open(dir, &o, &e))
            _exit(2);
        int64_t t = 5000;
        double v1 = 1.0, v2 = 2.0, v3 = 3.0;
        engine_series_batch_t b1 = {lab, 2, &t, &v1, 1}, b2 = {lab, 2, &t, &v2, 1},
                              b3 = {lab, 2, &t, &v3, 1};
        engine_write_result_t r;
        engine_write_result_init(&r);
        if (engine_write_v(e, &b1, 1, 900, &r) || engine_write_v(e, &b2, 1, 800, &r) ||
            engine_write_ex(e, &b3, 1, &r))
            _exit(3);
        _exit(0); /* no close: the head exists only in the WAL */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    engine_t *e = open_engine(dir);
    uint64_t ver;
    assert_true(get(e, 5000, &ver) == 1.0);
    assert_int_equal(ver, 900);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

/* Many rewrites of the same timestamps in random version order, spread over
 * head and segments: the final value is always the highest version's. */
static void test_random_order_converges(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_t *e = open_engine(dir);
    enum { NT = 16, NW = 8 };
    uint64_t rng = 12345;
    uint64_t best[NT] = {0};
    double want[NT] = {0};
    /* versions of each timestamp, issued in time order, delivered shuffled;
     * a flush only between rounds of one version per timestamp, so no block
     * holds a later version of another timestamp before an earlier one of
     * this one arrives (the documented imprecision is not exercised here) */
    for (int w = 0; w < NW; w++) {
        for (int i = 0; i < NT; i++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            uint64_t version = 1000 + (rng % 1000);
            double v = (double)(rng % 100000);
            put(e, 10000 + i, v, version);
            if (version >= best[i]) {
                best[i] = version;
                want[i] = v;
            }
        }
    }
    for (int i = 0; i < NT; i++)
        assert_true(get(e, 10000 + i, NULL) == want[i]);
    assert_int_equal(engine_flush(e), 0);
    assert_int_equal(engine_compact(e), 0);
    for (int i = 0; i < NT; i++)
        assert_true(get(e, 10000 + i, NULL) == want[i]);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

/* Every sample's version of the series over [lo, hi] into out (count back). */
static size_t all_versions(engine_t *e, int64_t lo, int64_t hi, int64_t *ts_out, uint64_t *out,
                           size_t cap)
{
    st_matcher_t m = {ST_MATCH_EQ, "host", "a"};
    engine_iter_t *it;
    assert_int_equal(engine_query(e, &m, 1, lo, hi, &it), 0);
    const st_label_t *l;
    size_t nl, n = 0;
    const int64_t *ts;
    const double *v;
    if (engine_iter_next(it, &l, &nl, &ts, &v, &n) == 1) {
        assert_true(n <= cap);
        memcpy(ts_out, ts, n * sizeof *ts);
        memcpy(out, engine_iter_versions(it), n * sizeof *out);
    }
    engine_iter_destroy(it);
    return n;
}

/* The head keeps one version a sample (an index into its table of the
 * versions it saw): every sample reads back with its own version,
 * including 0 before the first versioned write and between versioned
 * ones; an out-of-order write in the middle keeps them all. */
static void test_head_version_runs_exact(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_t *e = open_engine(dir);
    enum { N = 120 };
    int64_t want_ts[N];
    uint64_t want[N];
    size_t n = 0;
    /* batches of 1..5 samples; versions: 0, repeats, rising, falling */
    static const uint64_t vers[] = {0, 0, 70, 70, 50, 0, 90, 90, 90, 200, 10, 0, 300};
    for (size_t b = 0; n < N; b++) {
        uint64_t version = vers[b % (sizeof vers / sizeof vers[0])] + (b / 13) * 1000;
        size_t k = 1 + b % 5;
        if (k > N - n)
            k = N - n;
        int64_t ts[5];
        double v[5];
        for (size_t i = 0; i < k; i++) {
            ts[i] = 100000 + (int64_t)(n + i) * 10;
            v[i] = (double)(n + i);
            want_ts[n + i] = ts[i];
            want[n + i] = version;
        }
        engine_series_batch_t bb = {lab, 2, ts, v, k};
        engine_write_result_t r;
        engine_write_result_init(&r);
        assert_int_equal(engine_write_v(e, &bb, 1, version, &r), 0);
        n += k;
    }
    int64_t got_ts[N + 1];
    uint64_t got[N + 1];
    assert_int_equal(all_versions(e, 0, 1000000, got_ts, got, N + 1), N);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(got_ts[i], want_ts[i]);
        assert_int_equal(got[i], want[i]);
    }
    /* out of order, between existing samples, and a rewrite with a higher version */
    put(e, 100005, -1.0, 7);
    put(e, 100000 + 60 * 10, -2.0, 99999);
    assert_int_equal(all_versions(e, 0, 1000000, got_ts, got, N + 1), N + 1);
    for (size_t i = 0, j = 0; i < N + 1; i++) {
        if (got_ts[i] == 100005) {
            assert_int_equal(got[i], 7);
            continue;
        }
        assert_int_equal(got_ts[i], want_ts[j]);
        assert_int_equal(got[i], j == 60 ? 99999 : want[j]);
        j++;
    }
    assert_true(get(e, 100000 + 60 * 10, NULL) == -2.0);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

/* Many distinct versions in one head (its table and hash grow several
 * times), arriving in no order and revisited: each sample keeps its own,
 * and of two writes of one timestamp the higher version wins whatever
 * came first -- in the head, after a sort (the series goes out of order),
 * and after a flush (values only: a segment keeps one version a block). */
static void test_head_many_versions(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_t *e = open_engine(dir);
    enum { N = 700 };
    uint64_t want[N];
    for (int i = 0; i < N; i++) {
        /* a permutation of 1..N (7919 is prime to N) spaced by 1000 */
        want[i] = (uint64_t)((i * 7919) % N + 1) * 1000;
        put(e, 100000 + (int64_t)i * 10, (double)i, want[i]);
    }
    /* every other timestamp again, backwards (out of order): a version
     * one above the first write's wins, one below loses */
    for (int i = N - 2; i >= 0; i -= 2) {
        uint64_t v = i % 4 == 0 ? want[i] + 1 : want[i] - 1;
        put(e, 100000 + (int64_t)i * 10, -(double)i, v);
        if (v > want[i])
            want[i] = v;
    }
    for (int round = 0; round < 2; round++) {
        int64_t got_ts[N + 1];
        uint64_t got[N + 1];
        assert_int_equal(all_versions(e, 0, 1000000, got_ts, got, N + 1), N);
        for (int i = 0; i < N; i++) {
            assert_int_equal(got_ts[i], 100000 + (int64_t)i * 10);
            if (round == 0) /* a flushed sample has its block's highest version */
                assert_int_equal(got[i], want[i]);
            double x = get(e, got_ts[i], NULL);
            assert_true(x == (i % 4 == 0 ? -(double)i : (double)i));
        }
        assert_int_equal(engine_flush(e), 0); /* and again from the segment */
    }
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_higher_version_wins),
        cmocka_unit_test(test_flushed_block_version),
        cmocka_unit_test(test_frozen_resolve_window),
        cmocka_unit_test(test_wal_replay_keeps_versions),
        cmocka_unit_test(test_random_order_converges),
        cmocka_unit_test(test_head_version_runs_exact),
        cmocka_unit_test(test_head_many_versions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

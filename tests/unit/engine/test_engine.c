/*
 * Engine tests: the engine against a simple in-memory reference model on
 * random workloads (appends, out-of-order, duplicates, flushes, compactions,
 * reopen, retention), plus recovery from a torn WAL tail, a corrupt
 * segment, the data-dir lock and label metadata; samples_sort_dedup (nearly
 * sorted series, disordered ones, a read
 * merging several sorted sources) against an insertion sort.
 */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../common/tmpdir.h"

#include "engine.h"
#include "engine_internal.h"
#include "st_err.h"
#include "st_varint.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static char *make_dir(void)
{
    return make_dir_tagged("engine");
}

static double scale(void)
{
    const char *s = getenv("STRATA_TEST_SCALE");
    double v = s ? atof(s) : 1.0;
    return v > 0 ? v : 1.0;
}

/* ---- reference model ---- */

#define NSERIES 24
#define MAXS 20000

typedef struct ref_series {
    int64_t ts[MAXS];
    double v[MAXS];
    size_t n;
} ref_series_t;

static ref_series_t *model;
static char names[NSERIES][32], hosts[NSERIES][32];

static st_label_t series_labels[NSERIES][3];

static void init_labels(void)
{
    for (int i = 0; i < NSERIES; i++) {
        snprintf(names[i], sizeof names[i], "metric_%d", i % 3);
        snprintf(hosts[i], sizeof hosts[i], "host_%d", i / 3);
        st_label_t *l = series_labels[i];
        l[0] = (st_label_t){"__name__", names[i], 8, (uint32_t)strlen(names[i])};
        l[1] = (st_label_t){"host", hosts[i], 4, (uint32_t)strlen(hosts[i])};
        l[2] = (st_label_t){"zone", (i % 2) ? "b" : "a", 4, 1};
    }
}

/* model insert: last write wins */
static void model_put(int s, int64_t t, double v)
{
    ref_series_t *r = &model[s];
    for (size_t i = 0; i < r->n; i++) {
        if (r->ts[i] == t) {
            r->v[i] = v;
            return;
        }
    }
    assert_true(r->n < MAXS);
    size_t i = r->n++;
    while (i > 0 && r->ts[i - 1] > t) {
        r->ts[i] = r->ts[i - 1];
        r->v[i] = r->v[i - 1];
        i--;
    }
    r->ts[i] = t;
    r->v[i] = v;
}

static double rand_value(void)
{
    switch (rnd() % 10) {
    case 0:
        return NAN;
    case 1:
        return -0.0;
    case 2:
        return INFINITY;
    case 3:
        return 5e-324;
    case 4:
        return (double)(rnd() % 100);
    case 5:
        return (double)(rnd() % 10000) / 100.0;
    default: {
        uint64_t u = rnd();
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    }
}

static void do_random_write(engine_t *e, int64_t *clock)
{
    engine_series_batch_t b[4];
    int64_t ts[4][16];
    double v[4][16];
    size_t nb = 1 + rnd() % 4;
    int used[NSERIES] = {0};
    for (size_t i = 0; i < nb; i++) {
        int s;
        do
            s = (int)(rnd() % NSERIES);
        while (used[s]);
        used[s] = 1;
        size_t n = 1 + rnd() % 16;
        for (size_t k = 0; k < n; k++) {
            int64_t t;
            uint64_t r = rnd() % 10;
            if (r < 6)
                t = (*clock)++;
            else if (r < 9)
                t = *clock - (int64_t)(rnd() % 5000); /* out of order / duplicate */
            else
                t = *clock + (int64_t)(rnd() % 5000); /* future */
            ts[i][k] = t;
            v[i][k] = rand_value();
        }
        b[i] = (engine_series_batch_t){series_labels[s], 3, ts[i], v[i], n};
        for (size_t k = 0; k < n; k++)
            model_put(s, ts[i][k], v[i][k]);
    }
    assert_int_equal(engine_write(e, b, nb, NULL), 0);
}

static int series_index(const st_label_t *l, size_t n)
{
    for (int s = 0; s < NSERIES; s++)
        if (st_labels_cmp(l, n, series_labels[s], 3) == 0)
            return s;
    return -1;
}

/* Query [mint, maxt] with a matcher and compare with the model. */
static void check_query(engine_t *e, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                        int (*want)(int s))
{
    engine_iter_t *it;
    assert_int_equal(engine_query(e, m, nm, mint, maxt, &it), 0);
    int seen[NSERIES] = {0};
    const st_label_t *l;
    size_t nl, n;
    const int64_t *ts;
    const double *v;
    int rc;
    while ((rc = engine_iter_next(it, &l, &nl, &ts, &v, &n)) == 1) {
        int s = series_index(l, nl);
        assert_true(s >= 0);
        assert_true(want(s));
        assert_false(seen[s]);
        seen[s] = 1;
        ref_series_t *r = &model[s];
        size_t k = 0;
        for (size_t i = 0; i < r->n; i++) {
            if (r->ts[i] < mint || r->ts[i] > maxt)
                continue;
            assert_true(k < n);
            if (ts[k] != r->ts[i])
                fail_msg("series %d: ts[%zu]=%lld want %lld", s, k, (long long)ts[k],
                         (long long)r->ts[i]);
            assert_memory_equal(&v[k], &r->v[i], 8);
            k++;
        }
        assert_int_equal(k, n);
    }
    assert_int_equal(rc, 0);
    engine_iter_destroy(it);
    for (int s = 0; s < NSERIES; s++) {
        if (seen[s] || !want(s))
            continue;
        for (size_t i = 0; i < model[s].n; i++)
            assert_false(model[s].ts[i] >= mint && model[s].ts[i] <= maxt);
    }
}

static int want_all(int s)
{
    return 1;
}
static int want_metric1(int s)
{
    return s % 3 == 1;
}
static int want_zone_b_not_host0(int s)
{
    return (s % 2) == 1 && s / 3 != 0;
}
static int want_host_re(int s)
{
    return s / 3 == 1 || s / 3 == 2;
}

static void check_all(engine_t *e)
{
    st_matcher_t all = {ST_MATCH_RE, "__name__", "metric_.*"};
    check_query(e, &all, 1, INT64_MIN, INT64_MAX, want_all);
    int64_t a = 990000 + (int64_t)(rnd() % 20000), b = a + (int64_t)(rnd() % 20000);
    check_query(e, &all, 1, a, b, want_all);
    st_matcher_t m1 = {ST_MATCH_EQ, "__name__", "metric_1"};
    check_query(e, &m1, 1, INT64_MIN, INT64_MAX, want_metric1);
    st_matcher_t m2[2] = {{ST_MATCH_EQ, "zone", "b"}, {ST_MATCH_NE, "host", "host_0"}};
    check_query(e, m2, 2, INT64_MIN, INT64_MAX, want_zone_b_not_host0);
    st_matcher_t m3 = {ST_MATCH_RE, "host", "host_[12]"};
    check_query(e, &m3, 1, a, b, want_host_re);
}

static engine_t *open_engine(const char *dir, engine_wal_mode_t mode, int64_t part_ms)
{
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    o.wal_durability = mode;
    o.partition_ms = part_ms;
    engine_t *e = NULL;
    int rc = engine_open(dir, &o, &e);
    if (rc)
        fail_msg("engine_open: %s: %s", st_strerror(rc), engine_last_error());
    return e;
}

static void run_model(engine_wal_mode_t mode)
{
    model = calloc(NSERIES, sizeof *model);
    init_labels();
    char *dir = make_dir();
    engine_t *e = open_engine(dir, mode, 3000);
    int64_t clock = 1000000;
    int steps = (int)(3000 * scale());
    for (int step = 0; step < steps; step++) {
        uint64_t r = rnd() % 1000;
        if (r < 940) {
            do_random_write(e, &clock);
        } else if (r < 965) {
            assert_int_equal(engine_flush(e), 0);
        } else if (r < 980) {
            assert_int_equal(engine_compact(e), 0);
        } else if (r < 990) {
            check_all(e);
        } else {
            /* reopen (close flushes; replay of an unflushed head is tested
             * with a child process below) */
            assert_int_equal(engine_close(e), 0);
            e = open_engine(dir, mode, 3000);
        }
    }
    check_all(e);
    assert_int_equal(engine_flush(e), 0);
    assert_int_equal(engine_compact(e), 0);
    check_all(e);
    engine_stats_t st;
    engine_get_stats(e, &st);
    assert_int_equal(st.series, NSERIES);
    assert_int_equal(st.head_samples, 0);
    assert_true(st.disk_bytes > 0);
    assert_int_equal(engine_close(e), 0);
    e = open_engine(dir, mode, 3000);
    check_all(e);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
    free(model);
}

static void test_model_os_default(void **state)
{
    run_model(ENGINE_WAL_OS_DEFAULT);
}

static void test_model_no_wal(void **state)
{
    run_model(ENGINE_WAL_NONE);
}

/* Child process writes without flushing and exits hard: replay must restore it all. */
static void test_wal_replay_after_exit(void **state)
{
    model = calloc(NSERIES, sizeof *model);
    init_labels();
    char *dir = make_dir();
    int64_t clock = 1000000;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        engine_opts_t o;
        engine_opts_default(&o);
        o.background = 0;
        o.wal_durability = ENGINE_WAL_OS_DEFAULT;
        o.partition_ms = 3000;
        engine_t *e;
        if (engine_open(dir, &o, &e))
            _exit(2);
        for (int i = 0; i < 500; i++) {
            do_random_write(e, &clock);
            if (i == 250 && engine_flush(e))
                _exit(3);
        }
        _exit(0); /* no close: the head exists only in the WAL */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    engine_t *e = open_engine(dir, ENGINE_WAL_OS_DEFAULT, 3000);
    /* The child forked with this process' PRNG state: draw the same sequence
     * again, mirroring do_random_write's model updates without writing. */
    for (int i = 0; i < 500; i++) {
        size_t nb = 1 + rnd() % 4;
        int used[NSERIES] = {0};
        for (size_t bi = 0; bi < nb; bi++) {
            int s;
            do
                s = (int)(rnd() % NSERIES);
            while (used[s]);
            used[s] = 1;
            size_t n = 1 + rnd() % 16;
            for (size_t k = 0; k < n; k++) {
                int64_t t;
                uint64_t r = rnd() % 10;
                if (r < 6)
                    t = clock++;
                else if (r < 9)
                    t = clock - (int64_t)(rnd() % 5000);
                else
                    t = clock + (int64_t)(rnd() % 5000);
                model_put(s, t, rand_value());
            }
        }
    }
    check_all(e);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
    free(model);
}

static engine_t *simple_write(const char *dir, int64_t t0, int n)
{
    engine_t *e = open_engine(dir, ENGINE_WAL_OS_DEFAULT, 1000);
    st_label_t l[2] = {{"__name__", "m", 8, 1}, {"k", "v", 1, 1}};
    for (int i = 0; i < n; i++) {
        int64_t t = t0 + i * 100;
        double v = i;
        engine_series_batch_t b = {l, 2, &t, &v, 1};
        assert_int_equal(engine_write(e, &b, 1, NULL), 0);
    }
    return e;
}

static size_t count_metric(engine_t *e, const char *metric)
{
    st_matcher_t m = {ST_MATCH_EQ, "__name__", metric};
    engine_iter_t *it;
    assert_int_equal(engine_query(e, &m, 1, INT64_MIN, INT64_MAX, &it), 0);
    const st_label_t *l;
    size_t nl, n, total = 0;
    const int64_t *ts;
    const double *v;
    while (engine_iter_next(it, &l, &nl, &ts, &v, &n) == 1)
        total += n;
    engine_iter_destroy(it);
    return total;
}

static size_t count_samples(engine_t *e)
{
    return count_metric(e, "m");
}

/* A SAMPLES payload as WAL files before CHAIN records hold it: series 0
 * twice, samples (t0, 1.5) and (t0 + 100, 2.5), then (t0 + 50, 3.5) -- its
 * timestamp from 0, not from the entry before. */
static size_t legacy_samples(uint8_t *rec, int64_t t0)
{
    uint8_t *p = rec;
    p += st_uvarint_put(p, 2);
    p += st_uvarint_put(p, 0);
    p += st_uvarint_put(p, 2);
    p += st_uvarint_put(p, st_zigzag(t0));
    p += st_uvarint_put(p, st_zigzag(100));
    st_store_u64le(p, st_f64_bits(1.5));
    st_store_u64le(p + 8, st_f64_bits(2.5));
    p += 16;
    p += st_uvarint_put(p, 0);
    p += st_uvarint_put(p, 1);
    p += st_uvarint_put(p, st_zigzag(t0 + 50));
    st_store_u64le(p, st_f64_bits(3.5));
    return (size_t)(p + 8 - rec);
}

/* WAL files written before CHAIN records (types 2 and 4, each series'
 * timestamps from 0) still replay, next to the CHAIN records writes log. */
static void test_wal_replays_legacy_samples(void **state)
{
    (void)state;
    char *dir = make_dir();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        engine_t *e = simple_write(dir, 1000, 2); /* series 0: SERIES + CHAIN records */
        uint8_t rec[64], vrec[80];
        size_t len = legacy_samples(rec, 5000); /* SAMPLES */
        uint64_t lsn;
        if (wal_append(e->wal, WAL_REC_SAMPLES, rec, len, &lsn))
            _exit(2);
        size_t vl = st_uvarint_put(vrec, 7); /* SAMPLES_V: version 7, then the same at 6000 */
        vl += legacy_samples(vrec + vl, 6000);
        if (wal_append(e->wal, WAL_REC_SAMPLES_V, vrec, vl, &lsn))
            _exit(3);
        if (wal_sync(e->wal, lsn))
            _exit(4);
        _exit(0); /* no close: the head exists only in the WAL */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    engine_t *e = open_engine(dir, ENGINE_WAL_OS_DEFAULT, 1000);
    st_matcher_t m = {ST_MATCH_EQ, "__name__", "m"};
    engine_iter_t *it;
    assert_int_equal(engine_query(e, &m, 1, INT64_MIN, INT64_MAX, &it), 0);
    const st_label_t *l;
    size_t nl, n;
    const int64_t *ts;
    const double *v;
    assert_int_equal(engine_iter_next(it, &l, &nl, &ts, &v, &n), 1);
    int64_t wts[] = {1000, 1100, 5000, 5050, 5100, 6000, 6050, 6100};
    double wv[] = {0, 1, 1.5, 3.5, 2.5, 1.5, 3.5, 2.5};
    assert_int_equal(n, 8);
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(ts[i], wts[i]);
        assert_true(v[i] == wv[i]);
    }
    engine_iter_destroy(it);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

static void test_retention_drops_partitions(void **state)
{
    char *dir = make_dir();
    engine_t *e = simple_write(dir, 0, 100); /* 10 partitions of 1 s */
    assert_int_equal(engine_flush(e), 0);
    engine_close(e);
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    o.partition_ms = 1000;
    o.retention_ms = 5000;
    assert_int_equal(engine_open(dir, &o, &e), 0);
    assert_int_equal(count_samples(e), 100);
    assert_int_equal(engine_apply_retention(e, 9500), 0); /* cutoff 4500: drops [0,4000) */
    assert_int_equal(count_samples(e), 60);
    engine_stats_t st;
    engine_get_stats(e, &st);
    assert_int_equal(st.partitions, 6);
    engine_close(e);
    assert_int_equal(engine_open(dir, &o, &e), 0);
    assert_int_equal(count_samples(e), 60);
    engine_close(e);
    rm_rf(dir);
    free(dir);
}

/* An engine keeping 5 s in 1 s partitions, no background thread. */
static engine_t *open_retention_5s(const char *dir, engine_opts_t *o)
{
    engine_opts_default(o);
    o->background = 0;
    o->partition_ms = 1000;
    o->retention_ms = 5000;
    engine_t *e;
    assert_int_equal(engine_open(dir, o, &e), 0);
    return e;
}

/* Wall-clock now, whole seconds, in ms. */
static int64_t now_s_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000;
}

/* A per-metric retention of 5 s (1 s partitions): reads hide the short
 * metric's old samples at once; the retention pass drops the partition
 * only it has and rewrites the one it shares, so an engine opened without
 * the rule finds them gone and the other metric's samples kept. */
static void test_metric_retention(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_metric_retention_t rule = {"short", 5000};
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    o.partition_ms = 1000;
    o.metric_retention = &rule;
    o.n_metric_retention = 1;
    engine_t *e;
    assert_int_equal(engine_open(dir, &o, &e), 0);
    int64_t now = now_s_ms();
    st_label_t ls[2] = {{"__name__", "short", 8, 5}, {"host", "a", 4, 1}};
    st_label_t ll[2] = {{"__name__", "long", 8, 4}, {"host", "a", 4, 1}};
    int64_t ts_s[4] = {now - 9000, now - 8500, now - 7000, now};
    int64_t ts_l[2] = {now - 9000, now};
    double v[4] = {1, 2, 3, 4};
    engine_series_batch_t b[2] = {{ls, 2, ts_s, v, 4}, {ll, 2, ts_l, v, 2}};
    assert_int_equal(engine_write(e, b, 2, NULL), 0);
    assert_int_equal(count_metric(e, "short"), 1);
    assert_int_equal(count_metric(e, "long"), 2);
    assert_int_equal(engine_flush(e), 0);
    engine_stats_t st;
    engine_get_stats(e, &st);
    assert_int_equal(st.partitions, 3);
    assert_int_equal(engine_apply_retention(e, now), 0);
    engine_get_stats(e, &st);
    assert_int_equal(st.partitions, 2); /* [now-7 s, now-6 s) had only "short" */
    assert_int_equal(st.metric_retention_drops, 1);
    assert_int_equal(st.metric_retention_rewrites, 1);
    /* nothing new: left alone */
    assert_int_equal(engine_apply_retention(e, now), 0);
    engine_get_stats(e, &st);
    assert_int_equal(st.metric_retention_rewrites, 1);
    engine_close(e);
    o.metric_retention = NULL;
    o.n_metric_retention = 0;
    assert_int_equal(engine_open(dir, &o, &e), 0);
    assert_int_equal(count_metric(e, "short"), 1);
    assert_int_equal(count_metric(e, "long"), 2);
    engine_close(e);
    rm_rf(dir);
    free(dir);
}

/* Dynamic per-metric retentions (engine_set_metric_retention): reads hide
 * at once, the shorter of a static and a dynamic one wins, the retention
 * pass drops what they cover, and clearing them shows the rest again. */
static void test_metric_retention_dynamic(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_metric_retention_t stat = {"both", 60000};
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    o.partition_ms = 1000;
    o.metric_retention = &stat;
    o.n_metric_retention = 1;
    engine_t *e;
    assert_int_equal(engine_open(dir, &o, &e), 0);
    int64_t now = now_s_ms();
    st_label_t lk[1] = {{"__name__", "kret", 8, 4}};
    st_label_t lb[1] = {{"__name__", "both", 8, 4}};
    st_label_t lo[1] = {{"__name__", "other", 8, 5}};
    int64_t ts[3] = {now - 30000, now - 9000, now};
    double v[3] = {1, 2, 3};
    engine_series_batch_t b[3] = {{lk, 1, ts, v, 3}, {lb, 1, ts, v, 3}, {lo, 1, ts, v, 3}};
    assert_int_equal(engine_write(e, b, 3, NULL), 0);
    assert_int_equal(count_metric(e, "kret"), 3);
    assert_int_equal(count_metric(e, "both"), 3);
    engine_metric_retention_t dyn[3] = {{"kret", 20000}, {"both", 5000}, {"gone", 0}};
    assert_int_equal(engine_set_metric_retention(e, dyn, 3), 0);
    assert_int_equal(count_metric(e, "kret"), 2);  /* now - 30 s hidden */
    assert_int_equal(count_metric(e, "both"), 1);  /* the dynamic 5 s beats the static 60 s */
    assert_int_equal(count_metric(e, "other"), 3); /* untouched */
    /* cleared before any pass: everything shows again; then set again */
    assert_int_equal(engine_set_metric_retention(e, NULL, 0), 0);
    assert_int_equal(count_metric(e, "kret"), 3);
    assert_int_equal(count_metric(e, "both"), 3);
    assert_int_equal(engine_set_metric_retention(e, dyn, 3), 0);
    assert_int_equal(engine_flush(e), 0);
    assert_int_equal(engine_apply_retention(e, now), 0);
    engine_stats_t st;
    engine_get_stats(e, &st);
    assert_true(st.metric_retention_drops + st.metric_retention_rewrites >= 1);
    assert_int_equal(count_metric(e, "other"), 3);
    /* cleared after the pass: the dropped samples stay gone */
    assert_int_equal(engine_set_metric_retention(e, NULL, 0), 0);
    assert_int_equal(count_metric(e, "kret"), 2);
    assert_int_equal(count_metric(e, "both"), 1);
    engine_close(e);
    rm_rf(dir);
    free(dir);
}

static void test_too_old_samples_dropped_and_counted(void **state)
{
    char *dir = make_dir();
    engine_opts_t o;
    engine_t *e = open_retention_5s(dir, &o);
    int64_t t_now = now_s_ms();
    st_label_t l[2] = {{"__name__", "m", 8, 1}, {"k", "v", 1, 1}};
    int64_t ts[3] = {t_now - 60000, t_now - 1000, t_now};
    double v[3] = {1, 2, 3};
    engine_series_batch_t b = {l, 2, ts, v, 3};
    assert_int_equal(engine_write(e, &b, 1, NULL), 0);
    engine_stats_t st;
    engine_get_stats(e, &st);
    assert_int_equal(st.samples_too_old, 1);
    assert_int_equal(st.samples_written, 2);
    assert_int_equal(count_samples(e), 2);
    engine_close(e);
    rm_rf(dir);
    free(dir);
}

static char *find_file(const char *dir, const char *suffix)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "find '%s' -name '*%s' | sort | tail -1", dir, suffix);
    FILE *p = popen(cmd, "r");
    static char line[4096];
    line[0] = 0;
    if (fgets(line, sizeof line, p))
        line[strcspn(line, "\n")] = 0;
    pclose(p);
    return line[0] ? line : NULL;
}

static void test_torn_wal_tail(void **state)
{
    char *dir = make_dir();
    pid_t pid = fork();
    if (pid == 0) {
        engine_t *e = simple_write(dir, 0, 50);
        (void)e;
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char *wal = find_file(dir, ".wal");
    assert_non_null(wal);
    struct stat sb;
    assert_int_equal(stat(wal, &sb), 0);
    assert_int_equal(truncate(wal, sb.st_size - 5), 0); /* tear the last record */
    engine_t *e = open_engine(dir, ENGINE_WAL_OS_DEFAULT, 1000);
    assert_non_null(strstr(engine_last_error(), "torn"));
    assert_int_equal(count_samples(e), 49);
    engine_close(e);
    rm_rf(dir);
    free(dir);
}

static void test_corrupt_segment_is_reported(void **state)
{
    char *dir = make_dir();
    engine_t *e = simple_write(dir, 0, 10);
    engine_close(e);
    char *seg = find_file(dir, ".seg");
    assert_non_null(seg);
    int fd = open(seg, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "XXXX", 4, 2), 4); /* smash the header */
    close(fd);
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    o.partition_ms = 1000;
    assert_int_not_equal(engine_open(dir, &o, &e), 0);
    assert_non_null(strstr(engine_last_error(), ".seg"));
    rm_rf(dir);
    free(dir);
}

static void test_lock_excludes_second_open(void **state)
{
    char *dir = make_dir();
    engine_t *e = simple_write(dir, 0, 1);
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    engine_t *e2 = NULL;
    pid_t pid = fork();
    if (pid == 0)
        _exit(engine_open(dir, &o, &e2) == ST_EBUSY ? 0 : 1);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    engine_close(e);
    rm_rf(dir);
    free(dir);
}

static int collect(void *arg, const char *s, size_t len)
{
    char *out = arg;
    strncat(out, s, len);
    strcat(out, ",");
    return 0;
}

static void test_label_metadata_and_validation(void **state)
{
    char *dir = make_dir();
    engine_t *e = open_engine(dir, ENGINE_WAL_OS_DEFAULT, 86400000);
    st_label_t a[2] = {{"__name__", "up", 8, 2}, {"job", "api", 3, 3}};
    st_label_t b[2] = {{"__name__", "up", 8, 2}, {"job", "db", 3, 2}};
    st_label_t bad[2] = {{"__name__", "up", 8, 2}, {"job", "\xff", 3, 1}};
    int64_t t = 5;
    double v = 1;
    engine_series_batch_t batch[3] = {{a, 2, &t, &v, 1}, {b, 2, &t, &v, 1}, {bad, 2, &t, &v, 1}};
    size_t badi = 99;
    assert_int_equal(engine_write(e, batch, 3, &badi), ST_EINVAL);
    assert_int_equal(badi, 2);
    assert_non_null(strstr(engine_last_error(), "UTF-8"));
    assert_int_equal(engine_write(e, batch, 2, NULL), 0);
    char out[256] = "";
    assert_int_equal(engine_label_names(e, NULL, 0, collect, out), 0);
    assert_string_equal(out, "__name__,job,");
    out[0] = 0;
    assert_int_equal(engine_label_values(e, "job", NULL, 0, collect, out), 0);
    assert_string_equal(out, "api,db,");
    out[0] = 0;
    st_matcher_t m = {ST_MATCH_EQ, "job", "db"};
    assert_int_equal(engine_label_values(e, "job", &m, 1, collect, out), 0);
    assert_string_equal(out, "db,");
    st_matcher_t empty = {ST_MATCH_EQ, "job", ""};
    engine_iter_t *it;
    assert_int_equal(engine_query(e, &empty, 1, 0, 10, &it), ST_EINVAL);
    engine_close(e);
    rm_rf(dir);
    free(dir);
}

/* A series whose samples are all too old is not indexed: its labels are not
 * listed (they were before: the label endpoints named series with no data). */
static void test_too_old_series_not_indexed(void **state)
{
    char *dir = make_dir();
    engine_opts_t o;
    engine_t *e = open_retention_5s(dir, &o);
    int64_t t_now = now_s_ms();
    st_label_t old[2] = {{"__name__", "old", 8, 3}, {"gone", "x", 4, 1}};
    int64_t ts[2] = {t_now - 60000, t_now - 50000};
    double v[2] = {1, 2};
    engine_series_batch_t b = {old, 2, ts, v, 2};
    assert_int_equal(engine_write(e, &b, 1, NULL), 0);
    char out[256] = "";
    assert_int_equal(engine_label_names(e, NULL, 0, collect, out), 0);
    assert_string_equal(out, "");
    assert_int_equal(engine_label_values(e, "gone", NULL, 0, collect, out), 0);
    assert_string_equal(out, "");
    engine_stats_t st;
    engine_get_stats(e, &st);
    assert_int_equal(st.samples_too_old, 2);
    assert_int_equal(st.series, 0);
    /* mixed with a kept series: only that one is indexed; a bad series
     * among the dropped ones still fails the write with its own index */
    st_label_t kept[2] = {{"__name__", "m", 8, 1}, {"k", "v", 1, 1}};
    st_label_t bad[2] = {{"__name__", "old", 8, 3}, {"k", "\xff", 1, 1}};
    int64_t tk = t_now;
    double vk = 3;
    engine_series_batch_t mix[3] = {{old, 2, ts, v, 2}, {bad, 2, ts, v, 2}, {kept, 2, &tk, &vk, 1}};
    size_t badi = 99;
    assert_int_equal(engine_write(e, mix, 3, &badi), ST_EINVAL);
    assert_int_equal(badi, 1);
    mix[1] = mix[2];
    assert_int_equal(engine_write(e, mix, 2, NULL), 0);
    out[0] = 0;
    assert_int_equal(engine_label_names(e, NULL, 0, collect, out), 0);
    assert_string_equal(out, "__name__,k,");
    out[0] = 0;
    assert_int_equal(engine_label_values(e, "__name__", NULL, 0, collect, out), 0);
    assert_string_equal(out, "m,");
    assert_int_equal(count_samples(e), 1);
    /* reopened: the WAL holds no SERIES record of the dropped series */
    engine_close(e);
    assert_int_equal(engine_open(dir, &o, &e), 0);
    out[0] = 0;
    assert_int_equal(engine_label_values(e, "__name__", NULL, 0, collect, out), 0);
    assert_string_equal(out, "m,");
    engine_close(e);
    rm_rf(dir);
    free(dir);
}

/* The head's series arrays (engine_head.c: a buddy allocator over slabs):
 * 3000 series grown in lockstep, one sample a round, every third round a
 * new version (so each series' block changes shape once, taking a version
 * index array), and one series grown past the slab's largest block (then
 * malloc'ed); every sample reads back, and the slabs hold at most 1.5x
 * what the arrays take: outgrown blocks merge with their buddies and are
 * reused (without the merging they hold ~2x). A head of a few short
 * series takes one 64 KiB slab. */
static void test_head_blocks(void **state)
{
    (void)state;
    head_t *h = head_create();
    assert_non_null(h);
    enum { NS = 3000, ROUNDS = 300, BIG = 40000 };
    uint64_t ooo = 0;
    for (uint32_t r = 0; r < ROUNDS; r++) {
        for (uint32_t id = 0; id < NS; id++) {
            int64_t t = 1000 * (int64_t)r;
            double v = (double)id * 1000 + r;
            assert_int_equal(head_append(h, id, &t, &v, 1, r < 150 ? 0 : 7 + r / 3, &ooo), 0);
        }
    }
    static int64_t bts[BIG];
    static double bv[BIG];
    for (uint32_t i = 0; i < BIG; i++) {
        bts[i] = (int64_t)i;
        bv[i] = -(double)i;
    }
    assert_int_equal(head_append(h, NS, bts, bv, BIG, 0, &ooo), 0);
    assert_int_equal(ooo, 0);
    for (uint32_t id = 0; id < NS; id++) {
        head_series_t *s = head_series_at(h, id);
        assert_non_null(s);
        assert_int_equal(s->n, ROUNDS);
        for (uint32_t r = 0; r < ROUNDS; r++) {
            assert_int_equal(s->ts[r], 1000 * (int64_t)r);
            assert_true(s->v[r] == (double)id * 1000 + r);
            assert_int_equal(head_version(h, s, r), r < 150 ? 0 : 7 + r / 3);
        }
    }
    head_series_t *big = head_series_at(h, NS);
    assert_non_null(big);
    assert_int_equal(big->n, BIG);
    for (uint32_t i = 0; i < BIG; i++)
        assert_true(big->ts[i] == (int64_t)i && big->v[i] == -(double)i);
    uint64_t arrays = 0;
    for (uint32_t id = 0; id < NS; id++) {
        head_series_t *s = head_series_at(h, id);
        arrays += (uint64_t)s->cap * (16 + (s->vi ? 4 : 0));
    }
    uint64_t slabs = h->slab_bytes;
    print_message("head blocks: arrays %llu bytes, slabs %llu bytes\n", (unsigned long long)arrays,
                  (unsigned long long)slabs);
    assert_true(slabs <= arrays + arrays / 2 + ((uint64_t)2 << HEAD_SLAB_LOG));
    head_destroy(h);
    /* a head of a few short series takes one small slab */
    h = head_create();
    assert_non_null(h);
    for (uint32_t id = 0; id < 10; id++)
        assert_int_equal(head_append(h, id, bts, bv, 3, 0, &ooo), 0);
    assert_int_equal(h->slab_bytes, (uint64_t)1 << HEAD_SLAB_FIRST_LOG);
    head_destroy(h);
}

/* samples_sort_dedup on a few sorted runs (what a read of segments + head
 * gives), duplicates across and within runs: sorted by time, the last
 * sample of equal times kept, as a stable insertion sort + dedup does. */
static void test_sort_dedup_runs(void **state)
{
    (void)state;
    enum { N = 600 };
    static int64_t ts[N], rts[N];
    static double v[N], rv[N];
    uint64_t seed = 99;
    for (int trial = 0; trial < 400; trial++) {
        size_t n = 1 + (size_t)trial * 7 % N, runs = 1 + (size_t)trial % 6, at = 0;
        for (size_t r = 0; r < runs; r++) {
            size_t len = r + 1 == runs ? n - at : (n - at) / 2;
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            int64_t t = (int64_t)(seed >> 40) % 300;
            for (size_t i = 0; i < len; i++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                t += (int64_t)(seed >> 62); /* steps of 0..3: equal times too */
                ts[at] = t;
                v[at] = (double)(trial * N + (int)at);
                at++;
            }
        }
        memcpy(rts, ts, n * sizeof *ts);
        memcpy(rv, v, n * sizeof *v);
        for (size_t i = 1; i < n; i++)
            for (size_t j = i; j > 0 && rts[j - 1] > rts[j]; j--) {
                int64_t t = rts[j];
                rts[j] = rts[j - 1];
                rts[j - 1] = t;
                double x = rv[j];
                rv[j] = rv[j - 1];
                rv[j - 1] = x;
            }
        size_t w = 0;
        for (size_t i = 0; i < n; i++)
            if (i + 1 == n || rts[i + 1] != rts[i]) {
                rts[w] = rts[i];
                rv[w++] = rv[i];
            }
        assert_int_equal(samples_sort_dedup(ts, v, NULL, n), w);
        assert_memory_equal(ts, rts, w * sizeof *ts);
        assert_memory_equal(v, rv, w * sizeof *v);
    }
}

/* The same on nearly sorted series (what a few connections writing one
 * series give: a sample or a short batch late here and there; insertion
 * sort) and on ones so disordered that the insertion sort gives up half
 * way and a merge sort finishes (reversed blocks): the same result as a
 * stable insertion sort + dedup, with the versions kept along. */
static void test_sort_dedup_nearly(void **state)
{
    (void)state;
    enum { N = 700 };
    static int64_t ts[N], rts[N];
    static double v[N], rv[N];
    static uint64_t ver[N], rver[N];
    uint64_t seed = 7;
    for (int trial = 0; trial < 300; trial++) {
        size_t n = 2 + (size_t)trial * 13 % (N - 2);
        int64_t t = 1000;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            t += (int64_t)(seed >> 62); /* equal times too */
            ts[i] = t;
            v[i] = (double)(trial * N + (int)i);
            ver[i] = seed >> 60;
        }
        /* late batches: a block moved some places on (trial % 3 == 2: reversed blocks) */
        for (int k = 0; k < 1 + trial % 5; k++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            size_t a = (size_t)(seed >> 33) % n, len = 1 + (size_t)(seed >> 20) % 4;
            size_t b = a + len + (size_t)(seed >> 50) % 6;
            if (b + len > n)
                continue;
            for (size_t i = 0; i < len; i++) { /* swap blocks [a, a+len) and [b, b+len) */
                int64_t x = ts[a + i];
                ts[a + i] = ts[b + i];
                ts[b + i] = x;
                double y = v[a + i];
                v[a + i] = v[b + i];
                v[b + i] = y;
                uint64_t z = ver[a + i];
                ver[a + i] = ver[b + i];
                ver[b + i] = z;
            }
        }
        if (trial % 3 == 2)
            for (size_t lo = 0; lo + 40 <= n; lo += 40)
                for (size_t i = 0; i < 20; i++) {
                    int64_t x = ts[lo + i];
                    ts[lo + i] = ts[lo + 39 - i];
                    ts[lo + 39 - i] = x;
                }
        memcpy(rts, ts, n * sizeof *ts);
        memcpy(rv, v, n * sizeof *v);
        memcpy(rver, ver, n * sizeof *ver);
        for (size_t i = 1; i < n; i++)
            for (size_t j = i; j > 0 && rts[j - 1] > rts[j]; j--) {
                int64_t x = rts[j];
                rts[j] = rts[j - 1];
                rts[j - 1] = x;
                double y = rv[j];
                rv[j] = rv[j - 1];
                rv[j - 1] = y;
                uint64_t z = rver[j];
                rver[j] = rver[j - 1];
                rver[j - 1] = z;
            }
        size_t w = 0;
        for (size_t i = 0; i < n;) { /* highest version of equal times, the last of those */
            size_t best = i, j = i + 1;
            for (; j < n && rts[j] == rts[i]; j++)
                if (rver[j] >= rver[best])
                    best = j;
            rts[w] = rts[best];
            rv[w] = rv[best];
            rver[w++] = rver[best];
            i = j;
        }
        assert_int_equal(samples_sort_dedup(ts, v, ver, n), w);
        assert_memory_equal(ts, rts, w * sizeof *ts);
        assert_memory_equal(v, rv, w * sizeof *v);
        assert_memory_equal(ver, rver, w * sizeof *ver);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_blocks),
        cmocka_unit_test(test_sort_dedup_runs),
        cmocka_unit_test(test_sort_dedup_nearly),
        cmocka_unit_test(test_model_os_default),
        cmocka_unit_test(test_model_no_wal),
        cmocka_unit_test(test_wal_replay_after_exit),
        cmocka_unit_test(test_wal_replays_legacy_samples),
        cmocka_unit_test(test_retention_drops_partitions),
        cmocka_unit_test(test_too_old_samples_dropped_and_counted),
        cmocka_unit_test(test_metric_retention),
        cmocka_unit_test(test_metric_retention_dynamic),
        cmocka_unit_test(test_torn_wal_tail),
        cmocka_unit_test(test_corrupt_segment_is_reported),
        cmocka_unit_test(test_lock_excludes_second_open),
        cmocka_unit_test(test_label_metadata_and_validation),
        cmocka_unit_test(test_too_old_series_not_indexed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

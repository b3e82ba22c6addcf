/*
 * Engine limit and recovery tests (issue 11): the accepted-time window and
 * timestamps at the int64 edges; a head spanning thousands of partitions
 * flushed with descriptors bounded (LRU of open segments); the node budget
 * for head bytes (ST_EBUSY, nothing written, accepted again after a flush)
 * shared by two engines; the cardinality limits (ST_ELIMIT naming the
 * limit, existing series still written, a result shared by several calls);
 * a full disk (a small tmpfs, root only: skipped otherwise) from which
 * writes and flushes resume without reopening; a bounded engine_close that
 * leaves the head in the WAL.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../common/tmpdir.h"

#include "engine.h"
#include "st_err.h"

#define DAY 86400000LL

static char *make_dir(void)
{
    return make_dir_tagged("limits");
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Series "lim{s="<i>"}" (labels point into a static table). */
static st_label_t lab[4096][2];
static char val[4096][8];

static void one_series(engine_series_batch_t *b, int i, const int64_t *ts, const double *v,
                       size_t n)
{
    snprintf(val[i], sizeof val[i], "%d", i);
    lab[i][0] = (st_label_t){"__name__", "lim", 8, 3};
    lab[i][1] = (st_label_t){"s", val[i], 1, (uint32_t)strlen(val[i])};
    *b = (engine_series_batch_t){lab[i], 2, ts, v, n};
}

static int write1(engine_t *e, int series, int64_t ts, double v, engine_write_result_t *r)
{
    engine_series_batch_t b;
    one_series(&b, series, &ts, &v, 1);
    return engine_write_ex(e, &b, 1, r);
}

/* Samples of series `i` in [mint, maxt]. */
static size_t count_samples(engine_t *e, int i, int64_t mint, int64_t maxt)
{
    snprintf(val[i], sizeof val[i], "%d", i);
    st_matcher_t m[2] = {{.name = "__name__", .value = "lim", .type = ST_MATCH_EQ},
                         {.name = "s", .value = val[i], .type = ST_MATCH_EQ}};
    engine_iter_t *it;
    assert_int_equal(engine_query(e, m, 2, mint, maxt, &it), 0);
    const st_label_t *l;
    size_t nl, n, total = 0;
    const int64_t *ts;
    const double *v;
    while (engine_iter_next(it, &l, &nl, &ts, &v, &n) == 1)
        total += n;
    engine_iter_destroy(it);
    return total;
}

static engine_t *open_eng(const char *dir, engine_opts_t *o)
{
    engine_t *e = NULL;
    assert_int_equal(engine_open(dir, o, &e), 0);
    return e;
}

/* An engine (no background thread) whose node budget keeps at most
 * max_open segment files open; *o is kept to reopen it. */
static engine_t *open_with_files(const char *dir, uint64_t max_open, engine_budget_t **bud,
                                 engine_opts_t *o)
{
    engine_budget_opts_t bo;
    engine_budget_opts_default(&bo);
    bo.max_open_files = max_open;
    assert_int_equal(engine_budget_create(&bo, bud), 0);
    engine_opts_default(o);
    o->background = 0;
    o->budget = *bud;
    return open_eng(dir, o);
}

/* ---- accepted-time window ---- */

static void test_future_window_and_int64_edges(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    o.max_future_ms = DAY;
    engine_t *e = open_eng(dir, &o);
    int64_t now = now_ms();
    int64_t ts[4] = {now - 1000, now + DAY / 2, now + 2 * DAY, INT64_MAX};
    double v[4] = {1, 2, 3, 4};
    engine_series_batch_t b;
    one_series(&b, 0, ts, v, 4);
    engine_write_result_t r;
    engine_write_result_init(&r);
    assert_int_equal(engine_write_ex(e, &b, 1, &r), 0);
    assert_int_equal(r.written, 2);
    assert_int_equal(r.too_far_future, 2);
    /* a series whose only sample is too far ahead is not indexed */
    assert_int_equal(write1(e, 1, now + 3 * DAY, 1, &r), 0);
    engine_stats_t st;
    engine_get_stats(e, &st);
    assert_int_equal(st.samples_too_far_future, 3);
    assert_int_equal(st.series, 1);
    engine_close(e);

    /* no window: the int64 edges are still refused, never overflow a partition */
    o.max_future_ms = 0;
    e = open_eng(dir, &o);
    int64_t edge[4] = {INT64_MIN, INT64_MIN + 1, INT64_MAX - 1, INT64_MAX};
    one_series(&b, 2, edge, v, 4);
    engine_write_result_init(&r);
    assert_int_equal(engine_write_ex(e, &b, 1, &r), 0);
    assert_int_equal(r.written, 0);
    assert_int_equal(r.too_old + r.too_far_future, 4);
    assert_int_equal(engine_flush(e), 0);
    assert_int_equal(count_samples(e, 0, INT64_MIN, INT64_MAX), 2);
    engine_close(e);
    rm_rf(dir);
    free(dir);
}

/* ---- partitions and descriptors ---- */

#define WIDE_SERIES 24
#define WIDE_DAYS 3000

static void test_wide_head_flushes_with_bounded_files(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_budget_t *bud;
    engine_opts_t o;
    engine_t *e = open_with_files(dir, 16, &bud, &o);
    int fds0 = count_fds();
    int64_t *ts = malloc(WIDE_DAYS * sizeof *ts);
    double *v = malloc(WIDE_DAYS * sizeof *v);
    assert_non_null(ts);
    assert_non_null(v);
    for (int d = 0; d < WIDE_DAYS; d++) {
        ts[d] = (int64_t)d * DAY + 5000;
        v[d] = d;
    }
    engine_series_batch_t b[WIDE_SERIES];
    for (int s = 0; s < WIDE_SERIES; s++)
        one_series(&b[s], s, ts, v, WIDE_DAYS);
    assert_int_equal(engine_write(e, b, WIDE_SERIES, NULL), 0);
    engine_stats_t st;
    engine_get_stats(e, &st);
    assert_int_equal(st.head_partitions, WIDE_DAYS);
    assert_int_equal(engine_flush(e), 0);
    engine_get_stats(e, &st);
    assert_int_equal(st.partitions, WIDE_DAYS);
    assert_int_equal(st.head_samples, 0);
    assert_int_equal(st.flush_errors, 0);
    assert_true(st.open_files <= 16);
    assert_true(count_fds() <= fds0 + 2);
    /* every sample reads back; files are opened lazily and kept <= 16 */
    for (int s = 0; s < WIDE_SERIES; s++)
        assert_int_equal(count_samples(e, s, INT64_MIN, INT64_MAX), WIDE_DAYS);
    engine_budget_stats_t bs;
    engine_budget_get_stats(bud, &bs);
    assert_true(bs.open_files <= 16);
    assert_true(bs.files_closed > 0);
    engine_close(e);
    /* reopen: segments load with the same bound */
    e = open_eng(dir, &o);
    engine_budget_get_stats(bud, &bs);
    assert_true(bs.open_files <= 16);
    assert_int_equal(count_samples(e, 3, INT64_MIN, INT64_MAX), WIDE_DAYS);
    engine_close(e);
    engine_budget_destroy(bud);
    free(ts);
    free(v);
    rm_rf(dir);
    free(dir);
}

/* Waits for the engine's stats to pass ok(), polling (up to 20 s on a loaded machine). */
static int wait_stats(engine_t *e, engine_stats_t *st, int (*ok)(const engine_stats_t *))
{
    for (int i = 0; i < 400; i++) {
        engine_get_stats(e, st);
        if (ok(st))
            return 1;
        sleep_ms(50);
    }
    return 0;
}

static int settled(const engine_stats_t *st)
{
    return st->head_samples == 0 && st->compactions >= 1 && st->segments == 1;
}

static int flushed(const engine_stats_t *st)
{
    return st->head_samples == 0 && st->flushes >= 1;
}

static int flushed_full(const engine_stats_t *st)
{
    return st->flushes >= 1;
}

static void test_head_max_partitions_flushes_early(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_opts_t o;
    engine_opts_default(&o);
    o.head_max_partitions = 8;
    o.memtable_max_age_ms = 3600000; /* only the partition bound can trigger */
    engine_t *e = open_eng(dir, &o);
    int64_t ts[20];
    double v[20];
    for (int d = 0; d < 20; d++) {
        ts[d] = (int64_t)d * DAY;
        v[d] = d;
    }
    engine_series_batch_t b;
    one_series(&b, 0, ts, v, 20);
    assert_int_equal(engine_write(e, &b, 1, NULL), 0);
    engine_stats_t st;
    assert_true(wait_stats(e, &st, flushed));
    assert_true(st.early_flushes >= 1);
    engine_close(e);
    rm_rf(dir);
    free(dir);
}

/* A burst (heads flushed because they were full) that stops: what is left
 * in the head is written out once writes have stopped for the idle time,
 * not at memtable_max_age (an hour here), and the partition's segments are
 * compacted into one, not 2 x memtable_max_age later; every sample reads
 * back. */
static void test_burst_settles_into_one_segment(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_opts_t o;
    engine_opts_default(&o);
    o.memtable_max_bytes = 64 << 10;
    o.memtable_max_age_ms = 3600000; /* idle time: 10 s; the age never comes */
    engine_t *e = open_eng(dir, &o);
    enum { N = 20000, BATCH = 500 };
    int64_t ts[BATCH];
    double v[BATCH];
    engine_stats_t st;
    for (int k = 0; k < N / BATCH; k++) {
        for (int j = 0; j < BATCH; j++) {
            ts[j] = (int64_t)(k * BATCH + j) * 1000;
            v[j] = k * BATCH + j;
        }
        engine_series_batch_t b;
        one_series(&b, 0, ts, v, BATCH);
        assert_int_equal(engine_write(e, &b, 1, NULL), 0);
        if (k == N / BATCH / 2 - 1) /* each half is a full head: two segments at least */
            assert_true(wait_stats(e, &st, flushed_full));
    }
    assert_true(wait_stats(e, &st, settled));
    assert_int_equal(count_samples(e, 0, INT64_MIN, INT64_MAX), N);
    engine_close(e);
    rm_rf(dir);
    free(dir);
}

/* A trickle (a small head, never a full one) is not flushed for being
 * idle: it waits for memtable_max_age, as before. */
static void test_trickle_waits_for_age(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_opts_t o;
    engine_opts_default(&o);
    o.memtable_max_age_ms = 1000; /* idle time 500 ms, age 1 s */
    engine_t *e = open_eng(dir, &o);
    int64_t ts[3] = {1000, 2000, 3000};
    double v[3] = {1, 2, 3};
    engine_series_batch_t b;
    one_series(&b, 0, ts, v, 3);
    assert_int_equal(engine_write(e, &b, 1, NULL), 0);
    engine_stats_t st;
    assert_true(wait_stats(e, &st, flushed));
    assert_int_equal(st.idle_flushes, 0);
    engine_close(e);
    rm_rf(dir);
    free(dir);
}

/* ---- head memory budget ---- */

static void test_head_budget_refuses_then_recovers(void **state)
{
    (void)state;
    char *d1 = make_dir(), *d2 = make_dir();
    engine_budget_opts_t bo;
    engine_budget_opts_default(&bo);
    bo.head_max_bytes = 256 << 10;
    engine_budget_t *bud;
    assert_int_equal(engine_budget_create(&bo, &bud), 0);
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    o.budget = bud;
    engine_t *a = open_eng(d1, &o), *b = open_eng(d2, &o);
    /* fill through engine a until the node's budget refuses */
    static int64_t ts[1024];
    static double v[1024];
    int64_t t0 = now_ms() - 3600000;
    int rc = 0, i;
    engine_write_result_t r;
    for (i = 0; i < 10000 && rc == 0; i++) {
        for (int k = 0; k < 1024; k++) {
            ts[k] = t0 + (int64_t)i * 1024 + k;
            v[k] = k;
        }
        engine_series_batch_t sb;
        one_series(&sb, i % 64, ts, v, 1024);
        engine_write_result_init(&r);
        rc = engine_write_ex(a, &sb, 1, &r);
    }
    assert_int_equal(rc, ST_EBUSY);
    assert_int_equal(r.code, ST_EBUSY);
    assert_string_equal(r.limit, "head_max_bytes");
    assert_int_equal(r.limit_value, 256 << 10);
    assert_int_equal(r.written, 0);
    assert_int_equal(r.samples_refused, 1024);
    assert_true(r.retry_after_s >= 1);
    assert_non_null(strstr(r.reason, "head_max_bytes limit 262144"));
    /* the other engine of the node is refused too, and writes nothing */
    engine_stats_t st;
    engine_get_stats(b, &st);
    engine_write_result_init(&r);
    assert_int_equal(write1(b, 1, t0, 1, &r), ST_EBUSY);
    engine_stats_t st2;
    engine_get_stats(b, &st2);
    assert_int_equal(st2.samples_written, st.samples_written);
    assert_int_equal(st2.series, st.series);
    assert_int_equal(st2.writes_refused_busy, 1);
    /* a flush frees the budget: writes are accepted again */
    assert_int_equal(engine_flush(a), 0);
    engine_write_result_init(&r);
    assert_int_equal(write1(b, 1, t0, 1, &r), 0);
    assert_int_equal(r.written, 1);
    engine_close(a);
    engine_close(b);
    engine_budget_stats_t bs;
    engine_budget_get_stats(bud, &bs);
    assert_int_equal(bs.head_bytes, 0);
    engine_budget_destroy(bud);
    rm_rf(d1);
    rm_rf(d2);
    free(d1);
    free(d2);
}

/* ---- cardinality ---- */

static void test_cardinality_limits(void **state)
{
    (void)state;
    char *d1 = make_dir(), *d2 = make_dir();
    engine_budget_opts_t bo;
    engine_budget_opts_default(&bo);
    bo.max_series = 10;
    bo.max_new_series_per_write = 4;
    engine_budget_t *bud;
    assert_int_equal(engine_budget_create(&bo, &bud), 0);
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    o.budget = bud;
    engine_t *a = open_eng(d1, &o), *b = open_eng(d2, &o);
    int64_t t = now_ms();
    int64_t ts[1] = {t};
    double v[1] = {1};
    engine_series_batch_t sb[8];

    /* per write: one result over two calls (two shards) counts 4 new series */
    for (int i = 0; i < 3; i++)
        one_series(&sb[i], i, ts, v, 1);
    engine_write_result_t r;
    engine_write_result_init(&r);
    assert_int_equal(engine_write_ex(a, sb, 3, &r), 0);
    for (int i = 0; i < 3; i++)
        one_series(&sb[i], 100 + i, ts, v, 1);
    assert_int_equal(engine_write_ex(b, sb, 3, &r), ST_ELIMIT);
    assert_int_equal(r.new_series, 4);
    assert_int_equal(r.series_refused, 2);
    assert_int_equal(r.written, 4);
    assert_string_equal(r.limit, "max_new_series_per_write");
    assert_string_equal(r.reason, "max_new_series_per_write limit 4 reached on this node");

    /* max_series over the node (a: 3, b: 1 so far): 6 more fit, then refused;
     * existing series keep being written in the same batch */
    int created = 0;
    for (int w = 0; w < 3; w++) {
        for (int i = 0; i < 4; i++)
            one_series(&sb[i], 200 + w * 4 + i, ts, v, 1);
        one_series(&sb[4], 0, ts, v, 1); /* exists on a */
        engine_write_result_init(&r);
        int rc = engine_write_ex(a, sb, 5, &r);
        created += (int)r.new_series;
        if (w < 1) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, ST_ELIMIT);
            assert_string_equal(r.limit, "max_series");
            assert_int_equal(r.limit_value, 10);
            assert_string_equal(r.reason, "max_series limit 10 reached on this node");
        }
        assert_int_equal(r.written, r.new_series + 1);
    }
    assert_int_equal(created, 6);
    assert_string_equal(engine_last_error(), "max_series limit 10 reached on this node");
    engine_stats_t sa, sbs;
    engine_get_stats(a, &sa);
    engine_get_stats(b, &sbs);
    assert_int_equal(sa.series + sbs.series, 10);
    assert_int_equal(sa.series_refused, 6);
    assert_int_equal(count_samples(a, 0, INT64_MIN, INT64_MAX), 1);
    /* plain engine_write reports the same code */
    one_series(&sb[0], 999, ts, v, 1);
    assert_int_equal(engine_write(b, sb, 1, NULL), ST_ELIMIT);
    engine_close(a);
    engine_close(b);

    /* per hour: a fresh budget with 3 per hour */
    engine_budget_destroy(bud);
    engine_budget_opts_default(&bo);
    bo.max_new_series_per_hour = 3;
    assert_int_equal(engine_budget_create(&bo, &bud), 0);
    o.budget = bud;
    rm_rf(d1);
    a = open_eng(d1, &o);
    for (int i = 0; i < 5; i++)
        one_series(&sb[i], 300 + i, ts, v, 1);
    engine_write_result_init(&r);
    assert_int_equal(engine_write_ex(a, sb, 5, &r), ST_ELIMIT);
    assert_int_equal(r.new_series, 3);
    assert_string_equal(r.limit, "max_new_series_per_hour");
    engine_budget_stats_t bs;
    engine_budget_get_stats(bud, &bs);
    assert_int_equal(bs.new_series_hour, 3);
    assert_int_equal(bs.series, 3);
    engine_close(a);
    engine_budget_destroy(bud);
    rm_rf(d1);
    rm_rf(d2);
    free(d1);
    free(d2);
}

/* ---- full disk ---- */

/* Fill the file system of `dir` with a file; returns its path (malloc'd). */
static char *fill_disk(const char *dir)
{
    char *path = malloc(strlen(dir) + 16);
    assert_non_null(path);
    sprintf(path, "%s/filler", dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    assert_true(fd >= 0);
    static char buf[65536];
    memset(buf, 'x', sizeof buf);
    for (int i = 0; i < 100000; i++) {
        ssize_t w = write(fd, buf, sizeof buf);
        if (w <= 0)
            break;
    }
    close(fd);
    return path;
}

static void test_disk_full_recovers_without_reopen(void **state)
{
    (void)state;
    char *mnt = make_dir();
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=8m") != 0) {
        fprintf(stdout, "SKIP disk-full test: cannot mount a tmpfs (%s); needs root\n",
                strerror(errno));
        rmdir(mnt);
        free(mnt);
        skip();
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/eng", mnt);
    engine_opts_t o;
    engine_opts_default(&o);
    o.wal_durability = ENGINE_WAL_EVERY_WRITE;
    o.memtable_max_age_ms = 200;
    engine_t *e = open_eng(dir, &o);
    int64_t t0 = now_ms() - 60000;
    engine_write_result_t r;
    engine_write_result_init(&r);
    assert_int_equal(write1(e, 0, t0, 1, &r), 0);
    char *filler = fill_disk(mnt);
    /* writes fail while the disk is full (WAL append, sync or flush) */
    int rc = 0, acked = 1, i;
    for (i = 1; i < 2000 && rc == 0; i++) {
        static int64_t ts[512];
        static double v[512];
        for (int k = 0; k < 512; k++) {
            ts[k] = t0 + i * 512 + k;
            v[k] = k;
        }
        engine_series_batch_t b;
        one_series(&b, i % 8, ts, v, 512);
        rc = engine_write(e, &b, 1, NULL);
        acked += rc == 0;
    }
    assert_true(rc != 0);
    char why[256];
    int degraded = 0;
    for (int k = 0; k < 200 && !degraded; k++) { /* bounded: the flusher may be the one failing */
        degraded = engine_health(e, why, sizeof why);
        if (!degraded)
            sleep_ms(50);
    }
    assert_int_equal(degraded, 1);
    assert_non_null(strstr(why, "No space left on device"));
    engine_stats_t st;
    engine_get_stats(e, &st);
    assert_true(st.wal_errors + st.flush_errors > 0);
    assert_int_equal(st.degraded, 1);
    /* space returns: writes and flushes resume, same engine, no reopen */
    assert_int_equal(unlink(filler), 0);
    int ok = 0;
    for (int k = 0; k < 600 && !ok; k++) { /* up to 30 s (back-off <= 30 s) */
        engine_write_result_init(&r);
        ok = write1(e, 9, t0 + k, 2, &r) == 0;
        if (!ok)
            sleep_ms(50);
    }
    assert_true(ok);
    ok = 0;
    for (int k = 0; k < 800 && !ok; k++) {
        ok = engine_health(e, why, sizeof why) == 0;
        engine_get_stats(e, &st);
        ok = ok && st.head_samples == 0;
        if (!ok)
            sleep_ms(50);
    }
    assert_true(ok);
    assert_int_equal(engine_flush(e), 0);
    assert_int_equal(engine_close(e), 0);
    /* every acknowledged write is there after a reopen (WAL restarted cleanly) */
    e = open_eng(dir, &o);
    assert_int_equal(count_samples(e, 0, t0, t0), 1);
    assert_true(count_samples(e, 9, INT64_MIN, INT64_MAX) >= 1);
    size_t got = 0;
    for (int s = 0; s < 8; s++)
        got += count_samples(e, s, t0 + 1, INT64_MAX);
    assert_true(got >= (size_t)(acked - 1) * 512);
    engine_close(e);
    free(filler);
    umount(mnt);
    rmdir(mnt);
    free(mnt);
}

/* ---- bounded close ---- */

static void test_close_is_bounded_and_head_stays_in_wal(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    o.close_max_ms = 1; /* the first batch passes the deadline */
    engine_t *e = open_eng(dir, &o);
    int64_t *ts = malloc(2000 * sizeof *ts);
    double *v = malloc(2000 * sizeof *v);
    for (int d = 0; d < 2000; d++) {
        ts[d] = (int64_t)d * DAY;
        v[d] = d;
    }
    engine_series_batch_t b;
    one_series(&b, 0, ts, v, 2000);
    assert_int_equal(engine_write(e, &b, 1, NULL), 0);
    sleep_ms(5);
    assert_int_equal(engine_close(e), 0);
    o.close_max_ms = 0;
    e = open_eng(dir, &o);
    assert_int_equal(count_samples(e, 0, INT64_MIN, INT64_MAX), 2000);
    assert_int_equal(engine_close(e), 0);
    free(ts);
    free(v);
    rm_rf(dir);
    free(dir);
}

/* ---- segment selection: a read opens only the segments that can hold it ---- */

#define SKIP_DAYS 40

/* Segment files opened (mapped) by the engine so far. */
static uint64_t seg_opens(engine_t *e)
{
    engine_stats_t st;
    engine_get_stats(e, &st);
    return st.segment_opens;
}

static void test_read_opens_only_segments_that_hold_the_series(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_budget_t *bud;
    engine_opts_t o;
    /* files are closed again: a reopen would be counted */
    engine_t *e = open_with_files(dir, 4, &bud, &o);
    /* series 0 in days 0..9; series 1 in days 0..29 (one flush); series 1 in
     * days 30..39 and series 2 in days 5..6 (a second flush): 42 segments,
     * 10 of them hold series 0, 2 hold series 2 */
    int64_t ts[SKIP_DAYS];
    double v[SKIP_DAYS];
    for (int d = 0; d < SKIP_DAYS; d++) {
        ts[d] = (int64_t)d * DAY + 5000;
        v[d] = d;
    }
    engine_series_batch_t b[2];
    one_series(&b[0], 0, ts, v, 10);
    one_series(&b[1], 1, ts, v, 30);
    assert_int_equal(engine_write(e, b, 2, NULL), 0);
    assert_int_equal(engine_flush(e), 0);
    one_series(&b[0], 1, ts + 30, v + 30, 10);
    one_series(&b[1], 2, ts + 5, v + 5, 2);
    assert_int_equal(engine_write(e, b, 2, NULL), 0);
    assert_int_equal(engine_flush(e), 0);
    engine_stats_t st;
    engine_get_stats(e, &st);
    assert_int_equal(st.segments, 42);
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0: summaries from the writers; pass 1: rebuilt at reopen */
        uint64_t o0 = seg_opens(e);
        assert_int_equal(count_samples(e, 0, INT64_MIN, INT64_MAX), 10);
        assert_true(seg_opens(e) - o0 <= 10);
        o0 = seg_opens(e);
        assert_int_equal(count_samples(e, 2, INT64_MIN, INT64_MAX), 2);
        assert_true(seg_opens(e) - o0 <= 2);
        /* a time range: only the segments of those days */
        o0 = seg_opens(e);
        assert_int_equal(count_samples(e, 1, 20 * DAY, 22 * DAY), 2);
        assert_true(seg_opens(e) - o0 <= 2);
        o0 = seg_opens(e);
        assert_int_equal(count_samples(e, 1, INT64_MIN, INT64_MAX), 40);
        assert_true(seg_opens(e) - o0 <= 40);
        engine_get_stats(e, &st);
        /* pruned: 20 + 12 segments for series 0, 40 for series 2, 1 + 2 for series 1 */
        assert_int_equal(st.segment_reads_skipped, 32 + 40 + 1 + 2);
        engine_close(e);
        e = open_eng(dir, &o);
    }
    engine_close(e);
    engine_budget_destroy(bud);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_future_window_and_int64_edges),
        cmocka_unit_test(test_wide_head_flushes_with_bounded_files),
        cmocka_unit_test(test_head_max_partitions_flushes_early),
        cmocka_unit_test(test_burst_settles_into_one_segment),
        cmocka_unit_test(test_trickle_waits_for_age),
        cmocka_unit_test(test_head_budget_refuses_then_recovers),
        cmocka_unit_test(test_cardinality_limits),
        cmocka_unit_test(test_disk_full_recovers_without_reopen),
        cmocka_unit_test(test_close_is_bounded_and_head_stays_in_wal),
        cmocka_unit_test(test_read_opens_only_segments_that_hold_the_series),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

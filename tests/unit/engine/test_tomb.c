/*
 * Tombstones: the record and file codecs (round trip, every truncation
 * refused, CRC), masking, and deletion through the engine — reads hide
 * deleted samples from segments and heads, later writes are kept, a dry run
 * only counts, a repeated id is ignored, deletes survive a crash (WAL) and
 * a reopen (file), emptied series leave the label answers, and a purge
 * frees the bytes without bringing anything back.
 *
 * Versioned deletes (engine_delete_v): the record format 2, label-set
 * matching, and the rule in every arrival order -- delete then older write
 * (hidden), delete then newer write (kept), newer write then older delete
 * (kept) -- in the head, across a flush, a compaction, a purge, a reopen
 * and a crash (WAL replay); the one imprecision (a newer write flushed
 * before the delete arrived) and how a versioned rewrite heals it; the
 * repair helpers (drop_masked by version, tombstone list and summary).
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
#include "st_err.h"
#include "tomb.h"

static const st_matcher_t M2[] = {{ST_MATCH_EQ, "__name__", "cpu"}, {ST_MATCH_RE, "host", "a|b"}};

static void test_codec_roundtrip(void **state)
{
    (void)state;
    tomb_t *t;
    assert_int_equal(tomb_new(M2, 2, -5, 100, 77, 9, 1234, &t), 0);
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(tomb_encode(&b, t), 0);
    tomb_t *u;
    assert_int_equal(tomb_decode(b.data, b.len, &u), 0);
    assert_int_equal(u->id, 77);
    assert_int_equal(u->seq, 9);
    assert_int_equal(u->start, -5);
    assert_int_equal(u->end, 100);
    assert_int_equal(u->nm, 2);
    assert_string_equal(u->m[1].name, "host");
    assert_string_equal(u->m[1].value, "a|b");
    assert_int_equal(u->m[1].type, ST_MATCH_RE);
    for (size_t cut = 0; cut < b.len; cut++) { /* every truncation is refused */
        tomb_t *x = NULL;
        assert_int_equal(tomb_decode(b.data, cut, &x), ST_ECORRUPT);
    }
    /* file: two tombstones, dead ids */
    st_buf_t f;
    st_buf_init(&f);
    tomb_t *two[2] = {t, u};
    uint32_t dead[3] = {1, 5, 900};
    assert_int_equal(tomb_file_encode(&f, two, 2, dead, 3), 0);
    tomb_t **got;
    size_t n, nd;
    uint32_t *gd;
    assert_int_equal(tomb_file_decode(f.data, f.len, &got, &n, &gd, &nd), 0);
    assert_int_equal(n, 2);
    assert_int_equal(nd, 3);
    assert_int_equal(gd[2], 900);
    for (size_t i = 0; i < n; i++)
        tomb_free(got[i]);
    free(got);
    free(gd);
    f.data[f.len - 1] ^= 1; /* CRC */
    assert_int_equal(tomb_file_decode(f.data, f.len, &got, &n, &gd, &nd), ST_ECORRUPT);
    tomb_free(t);
    tomb_free(u);
    st_buf_deinit(&b);
    st_buf_deinit(&f);
}

static void test_mask(void **state)
{
    (void)state;
    tomb_t *t;
    assert_int_equal(tomb_new(M2, 1, 10, 20, 0, 5, 0, &t), 0);
    uint32_t ids[2] = {3, 8};
    t->ids = malloc(sizeof ids);
    memcpy(t->ids, ids, sizeof ids);
    t->nids = 2;
    int64_t ts[5] = {5, 10, 15, 20, 25};
    double v[5] = {1, 2, 3, 4, 5};
    assert_int_equal(tomb_mask(&t, 1, 4, 0, ts, v, 5), 5); /* other series */
    assert_int_equal(tomb_mask(&t, 1, 3, 5, ts, v, 5), 5); /* source not older */
    assert_int_equal(tomb_mask(&t, 1, 8, 4, ts, v, 5), 2);
    assert_int_equal(ts[0], 5);
    assert_int_equal(ts[1], 25);
    assert_true(v[1] == 5);
    tomb_free(t);
}

/* ---- through the engine ---- */

static char *make_dir(void)
{
    return make_dir_tagged("tomb");
}

static engine_t *open_e(const char *dir)
{
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    o.partition_ms = 1000;
    engine_t *e;
    assert_int_equal(engine_open(dir, &o, &e), 0);
    return e;
}

/* Series host=h<i> of metric cpu, samples at t0 .. t0 + n - 1 (step 100 ms). */
static void put(engine_t *e, int host, int64_t t0, size_t n, double val)
{
    char hv[16];
    snprintf(hv, sizeof hv, "h%d", host);
    st_label_t l[2] = {{"__name__", "cpu", 8, 3}, {"host", hv, 4, (uint32_t)strlen(hv)}};
    int64_t ts[256];
    double v[256];
    for (size_t i = 0; i < n; i++) {
        ts[i] = t0 + (int64_t)i * 100;
        v[i] = val;
    }
    engine_series_batch_t b = {l, 2, ts, v, n};
    assert_int_equal(engine_write(e, &b, 1, NULL), 0);
}

/* Samples of host h<i> in [mint, maxt]; *sum their values. */
static size_t count(engine_t *e, int host, int64_t mint, int64_t maxt, double *sum)
{
    char hv[16];
    snprintf(hv, sizeof hv, "h%d", host);
    st_matcher_t m = {ST_MATCH_EQ, "host", hv};
    engine_iter_t *it;
    assert_int_equal(engine_query(e, &m, 1, mint, maxt, &it), 0);
    const st_label_t *l;
    size_t nl, n, total = 0;
    const int64_t *ts;
    const double *v;
    double s = 0;
    while (engine_iter_next(it, &l, &nl, &ts, &v, &n) == 1) {
        total += n;
        for (size_t i = 0; i < n; i++)
            s += v[i];
    }
    engine_iter_destroy(it);
    if (sum)
        *sum = s;
    return total;
}

static int collect_cb(void *arg, const char *s, size_t len)
{
    char *out = arg;
    strncat(out, s, len);
    strcat(out, ",");
    return 0;
}

static void test_engine_delete(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_t *e = open_e(dir);
    put(e, 1, 0, 50, 1.0); /* 0 .. 4900: partitions 0..4 */
    put(e, 2, 0, 50, 1.0);
    assert_int_equal(engine_flush(e), 0);
    put(e, 1, 5000, 10, 1.0); /* in the head */
    st_matcher_t m1 = {ST_MATCH_EQ, "host", "h1"};
    engine_delete_result_t r;
    /* dry run: counts, changes nothing */
    assert_int_equal(engine_delete(e, &m1, 1, 1000, 5400, 0, 1, &r), 0);
    assert_int_equal(r.series, 1);
    assert_int_equal(r.samples, 45);
    assert_int_equal(count(e, 1, 0, 100000, NULL), 60);
    assert_int_equal(engine_delete(e, &m1, 1, 1000, 5400, 42, 0, &r), 0);
    assert_int_equal(r.samples, 45);
    assert_int_equal(count(e, 1, 0, 100000, NULL), 15);
    assert_int_equal(count(e, 2, 0, 100000, NULL), 50); /* others untouched */
    /* same id again: ignored (a re-delivered delete must not hit later writes) */
    put(e, 1, 2000, 5, 7.0);
    assert_int_equal(engine_delete(e, &m1, 1, 1000, 5400, 42, 0, &r), 0);
    assert_true(r.duplicate);
    double sum;
    assert_int_equal(count(e, 1, 0, 100000, &sum), 20); /* the write after the delete is kept */
    assert_true(sum == 15 + 35.0);
    engine_stats_t st;
    engine_get_stats(e, &st);
    assert_int_equal(st.tombstones, 1);
    assert_int_equal(st.tombstones_pending, 1);
    assert_true(st.purge_eta_ms > 0);
    /* reopen: the tombstone is durable, the later write kept */
    assert_int_equal(engine_close(e), 0);
    e = open_e(dir);
    assert_int_equal(count(e, 1, 0, 100000, &sum), 20);
    assert_true(sum == 50.0);
    /* purge: bytes go, nothing comes back */
    engine_get_stats(e, &st);
    uint64_t before = st.disk_bytes, freed = 0;
    assert_int_equal(engine_purge(e, &freed), 0);
    engine_get_stats(e, &st);
    assert_true(freed > 0);
    assert_int_equal(st.tombstones_pending, 0);
    assert_true(st.disk_bytes < before);
    assert_int_equal(count(e, 1, 0, 100000, NULL), 20);
    assert_int_equal(count(e, 2, 0, 100000, NULL), 50);
    assert_int_equal(engine_close(e), 0);
    e = open_e(dir);
    assert_int_equal(count(e, 1, 0, 100000, NULL), 20);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

static void test_engine_delete_labels_and_crash(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_t *e = open_e(dir);
    put(e, 1, 0, 10, 1.0);
    put(e, 2, 0, 10, 1.0);
    assert_int_equal(engine_flush(e), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* a crash right after the delete: only the WAL knows of it */
        engine_t *c = NULL;
        (void)c;
        st_matcher_t m = {ST_MATCH_EQ, "host", "h2"};
        engine_delete_result_t r;
        put(e, 2, 50000, 3, 1.0); /* head, before the delete: must go too */
        if (engine_delete(e, &m, 1, INT64_MIN, INT64_MAX, 0, 0, &r) != 0)
            _exit(2);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(WEXITSTATUS(status), 0);
    /* the parent's engine never saw it: close it without flushing anything new */
    assert_int_equal(engine_close(e), 0);
    e = open_e(dir);
    assert_int_equal(count(e, 2, INT64_MIN / 4, INT64_MAX / 4, NULL), 0);
    assert_int_equal(count(e, 1, 0, 100000, NULL), 10);
    char vals[256] = "";
    assert_int_equal(engine_label_values(e, "host", NULL, 0, collect_cb, vals), 0);
    assert_string_equal(vals, "h1,");
    /* written again: listed again */
    put(e, 2, 90000, 1, 1.0);
    vals[0] = '\0';
    assert_int_equal(engine_label_values(e, "host", NULL, 0, collect_cb, vals), 0);
    assert_string_equal(vals, "h1,h2,");
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

/* A partition whose every sample is deleted: the purge writes an empty
 * segment, and a reopen is fine with it. */
static void test_purge_empties_partition(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_t *e = open_e(dir);
    put(e, 1, 10000, 5, 1.0); /* partition 10000 only */
    put(e, 2, 0, 5, 1.0);     /* partition 0 */
    assert_int_equal(engine_flush(e), 0);
    st_matcher_t m = {ST_MATCH_EQ, "host", "h1"};
    engine_delete_result_t r;
    assert_int_equal(engine_delete(e, &m, 1, INT64_MIN, INT64_MAX, 0, 0, &r), 0);
    assert_int_equal(r.samples, 5);
    uint64_t freed = 0;
    assert_int_equal(engine_purge(e, &freed), 0);
    assert_true(freed > 0);
    assert_int_equal(count(e, 1, INT64_MIN / 4, INT64_MAX / 4, NULL), 0);
    assert_int_equal(engine_close(e), 0);
    e = open_e(dir);
    assert_int_equal(count(e, 1, INT64_MIN / 4, INT64_MAX / 4, NULL), 0);
    assert_int_equal(count(e, 2, INT64_MIN / 4, INT64_MAX / 4, NULL), 5);
    engine_stats_t st;
    engine_get_stats(e, &st);
    assert_int_equal(st.tombstones_pending, 0);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

/* ---- versioned deletes ---- */

static void test_codec_versioned(void **state)
{
    (void)state;
    tomb_t *t;
    assert_int_equal(tomb_new(M2, 2, -5, 100, 77, 9, 1234, &t), 0);
    st_buf_t v1, v2;
    st_buf_init(&v1);
    st_buf_init(&v2);
    assert_int_equal(tomb_encode(&v1, t), 0);
    assert_int_equal(v1.data[0], 1); /* unversioned: the old format, byte for byte */
    t->version = (UINT64_C(1764892800000) << 16) | 3; /* an HLC version */
    assert_int_equal(tomb_encode(&v2, t), 0);
    assert_int_equal(v2.data[0], 2);
    print_message("bytes per tombstone (2 matchers): unversioned %zu, versioned %zu\n", v1.len,
                  v2.len);
    tomb_t *u;
    assert_int_equal(tomb_decode(v2.data, v2.len, &u), 0);
    assert_true(u->version == t->version);
    assert_int_equal(u->seq, 9);
    assert_string_equal(u->m[1].value, "a|b");
    tomb_free(u);
    for (size_t cut = 0; cut < v2.len; cut++) {
        tomb_t *x = NULL;
        assert_int_equal(tomb_decode(v2.data, cut, &x), ST_ECORRUPT);
    }
    /* format 2 with version 0 is not canonical: refused */
    st_buf_t z;
    st_buf_init(&z);
    assert_int_equal(st_buf_put_u8(&z, 2), 0);
    assert_int_equal(st_buf_append(&z, v1.data + 1, 2), 0); /* id 77, seq 9: one byte each */
    assert_int_equal(st_buf_put_u8(&z, 0), 0);
    assert_int_equal(st_buf_append(&z, v1.data + 3, v1.len - 3), 0);
    assert_int_equal(tomb_decode(z.data, z.len, &u), ST_ECORRUPT);
    z.data[3] = 1; /* version 1: fine */
    assert_int_equal(tomb_decode(z.data, z.len, &u), 0);
    assert_true(u->version == 1);
    tomb_free(u);
    /* a file mixing both */
    st_buf_t f;
    st_buf_init(&f);
    tomb_t *w;
    assert_int_equal(tomb_decode(v1.data, v1.len, &w), 0);
    tomb_t *two[2] = {t, w};
    assert_int_equal(tomb_file_encode(&f, two, 2, NULL, 0), 0);
    tomb_t **got;
    size_t n, nd;
    uint32_t *gd;
    assert_int_equal(tomb_file_decode(f.data, f.len, &got, &n, &gd, &nd), 0);
    assert_int_equal(n, 2);
    assert_true(got[0]->version == t->version);
    assert_true(got[1]->version == 0);
    for (size_t i = 0; i < n; i++)
        tomb_free(got[i]);
    free(got);
    free(gd);
    tomb_free(t);
    tomb_free(w);
    st_buf_deinit(&v1);
    st_buf_deinit(&v2);
    st_buf_deinit(&z);
    st_buf_deinit(&f);
}

static void test_match_labels(void **state)
{
    (void)state;
    static const st_matcher_t M[] = {{ST_MATCH_EQ, "__name__", "cpu"},
                                     {ST_MATCH_RE, "host", "a|b.*"},
                                     {ST_MATCH_NE, "dc", "x"},
                                     {ST_MATCH_NRE, "env", "prod|stage"}};
    tomb_t *t;
    assert_int_equal(tomb_new(M, 4, 0, 10, 1, 1, 0, &t), 0);
    st_label_t a[] = {{"__name__", "cpu", 8, 3}, {"host", "a", 4, 1}};
    st_label_t b[] = {{"__name__", "cpu", 8, 3}, {"dc", "y", 2, 1}, {"host", "bee", 4, 3}};
    st_label_t c[] = {{"__name__", "cpu", 8, 3}, {"host", "ab", 4, 2}}; /* anchored */
    st_label_t d[] = {{"__name__", "cpu", 8, 3}, {"dc", "x", 2, 1}, {"host", "a", 4, 1}};
    st_label_t f[] = {{"__name__", "cpu", 8, 3}, {"env", "prod", 3, 4}, {"host", "a", 4, 1}};
    st_label_t g[] = {{"__name__", "mem", 8, 3}, {"host", "a", 4, 1}};
    st_label_t h[] = {{"host", "a", 4, 1}}; /* no name: "" != "cpu" */
    assert_int_equal(tomb_match(t, a, 2), 1);
    assert_int_equal(tomb_match(t, b, 3), 1);
    assert_int_equal(tomb_match(t, c, 2), 0);
    assert_int_equal(tomb_match(t, d, 3), 0);
    assert_int_equal(tomb_match(t, f, 3), 0);
    assert_int_equal(tomb_match(t, g, 2), 0);
    assert_int_equal(tomb_match(t, h, 1), 0);
    tomb_free(t);
}

/* Series host=h<i> of cpu written at `version`: n samples from t0, step 100. */
static void putv(engine_t *e, int host, int64_t t0, size_t n, double val, uint64_t version)
{
    char hv[16];
    snprintf(hv, sizeof hv, "h%d", host);
    st_label_t l[2] = {{"__name__", "cpu", 8, 3}, {"host", hv, 4, (uint32_t)strlen(hv)}};
    int64_t ts[256];
    double v[256];
    for (size_t i = 0; i < n; i++) {
        ts[i] = t0 + (int64_t)i * 100;
        v[i] = val;
    }
    engine_series_batch_t b = {l, 2, ts, v, n};
    engine_write_result_t r;
    engine_write_result_init(&r);
    assert_int_equal(engine_write_v(e, &b, 1, version, &r), 0);
}

static void delv(engine_t *e, int host, int64_t start, int64_t end, uint64_t id, uint64_t version)
{
    char hv[16];
    snprintf(hv, sizeof hv, "h%d", host);
    st_matcher_t m = {ST_MATCH_EQ, "host", hv};
    engine_delete_result_t r;
    assert_int_equal(engine_delete_v(e, &m, 1, start, end, id, version, 0, &r), 0);
}

/*
 * The arrival orders, hosts 1..6 (versions: old writes 10, deletes 20,
 * newer writes 30; ranges [0, 900] deleted of samples 0 .. 900):
 *   h1 delete then older write (the series existed): hidden
 *   h2 delete then newer write: kept
 *   h3 delete selecting nothing yet, then an older write creates the
 *      series (hidden), then a newer one (kept)
 *   h4 old data, newer rewrite of half of it, then the older delete:
 *      the rewrite stays, the rest goes
 *   h5 old data, then an unversioned delete, then an older versioned write:
 *      the arrival rule (kept)
 *   h6 versioned delete, then an unversioned write: kept (arrives after)
 */
static void arrivals(engine_t *e)
{
    putv(e, 1, 0, 10, 1.0, 10);
    delv(e, 1, 0, 900, 101, 20);
    putv(e, 1, 0, 10, 2.0, 15); /* late older write (hint, repair) */

    putv(e, 2, 0, 10, 1.0, 10);
    delv(e, 2, 0, 900, 102, 20);
    putv(e, 2, 0, 10, 3.0, 30);

    delv(e, 3, 0, 900, 103, 20);
    putv(e, 3, 0, 10, 1.0, 10);
    putv(e, 3, 500, 5, 3.0, 30);

    putv(e, 4, 0, 10, 1.0, 10);
    putv(e, 4, 0, 5, 3.0, 30);
    delv(e, 4, 0, 900, 104, 20);

    putv(e, 5, 0, 10, 1.0, 10);
    delv(e, 5, 0, 900, 105, 0);
    putv(e, 5, 0, 10, 1.0, 5);

    delv(e, 6, 0, 900, 106, 20);
    putv(e, 6, 0, 10, 1.0, 0);
}

static void check_arrivals(engine_t *e, const char *when)
{
    double sum;
    print_message("versioned arrivals: %s\n", when);
    assert_int_equal(count(e, 1, 0, 100000, NULL), 0);
    assert_int_equal(count(e, 2, 0, 100000, &sum), 10);
    assert_true(sum == 30.0);
    assert_int_equal(count(e, 3, 0, 100000, &sum), 5);
    assert_true(sum == 15.0);
    assert_int_equal(count(e, 4, 0, 100000, &sum), 5);
    assert_true(sum == 15.0);
    assert_int_equal(count(e, 5, 0, 100000, NULL), 10);
    assert_int_equal(count(e, 6, 0, 100000, NULL), 10);
}

static void test_versioned_arrivals(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_t *e = open_e(dir);
    arrivals(e);
    check_arrivals(e, "head");
    engine_stats_t st;
    engine_get_stats(e, &st);
    assert_int_equal(st.samples_hidden_late, 20); /* the older writes of h1 and h3 */
    assert_int_equal(st.tombstones, 6);
    assert_int_equal(engine_flush(e), 0);
    check_arrivals(e, "flushed");
    /* more late arrivals onto the flushed state, then compaction and purge */
    putv(e, 1, 0, 10, 4.0, 19);
    putv(e, 3, 0, 5, 4.0, 11);
    check_arrivals(e, "late writes after the flush");
    assert_int_equal(engine_flush(e), 0);
    assert_int_equal(engine_compact(e), 0);
    check_arrivals(e, "compacted");
    uint64_t freed = 0;
    assert_int_equal(engine_purge(e, &freed), 0);
    check_arrivals(e, "purged");
    assert_int_equal(engine_close(e), 0);
    e = open_e(dir);
    check_arrivals(e, "reopened");
    putv(e, 1, 0, 10, 4.0, 19); /* still hidden after a reopen (tombstones file) */
    putv(e, 3, 0, 5, 4.0, 11);
    check_arrivals(e, "late writes after the reopen");
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

/* The same orders, then a crash: the WAL replays writes and deletes. */
static void test_versioned_wal_replay(void **state)
{
    (void)state;
    char *dir = make_dir();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        engine_t *c = open_e(dir);
        arrivals(c);
        _exit(0); /* no close: only the WAL (and the tombstones file) know */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(WEXITSTATUS(status), 0);
    engine_t *e = open_e(dir);
    check_arrivals(e, "WAL replay");
    assert_int_equal(engine_close(e), 0);
    e = open_e(dir);
    check_arrivals(e, "reopened after the replay");
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

/* A versioned delete that selects nothing is written to the tombstones
 * file lazily: before the WAL file holding it goes (a flush), so a crash
 * after the flush still keeps it. */
static void test_versioned_empty_after_flush_crash(void **state)
{
    (void)state;
    char *dir = make_dir();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        engine_t *c = open_e(dir);
        putv(c, 9, 0, 10, 1.0, 10);
        delv(c, 3, 0, 900, 33, 20); /* selects nothing */
        if (engine_flush(c) != 0)   /* the WAL files holding it go */
            _exit(2);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(WEXITSTATUS(status), 0);
    engine_t *e = open_e(dir);
    engine_stats_t st;
    engine_get_stats(e, &st);
    assert_int_equal(st.tombstones, 1);
    putv(e, 3, 0, 10, 1.0, 10);
    assert_int_equal(count(e, 3, 0, 100000, NULL), 0);
    assert_int_equal(count(e, 9, 0, 100000, NULL), 10);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

/* The one imprecision: a newer write flushed before the older delete
 * arrives is hidden with its block; a versioned rewrite (repair) heals it. */
static void test_versioned_flushed_before(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_t *e = open_e(dir);
    putv(e, 1, 0, 10, 1.0, 10);
    putv(e, 1, 0, 5, 3.0, 30);
    assert_int_equal(engine_flush(e), 0);
    delv(e, 1, 0, 900, 7, 20);
    assert_int_equal(count(e, 1, 0, 100000, NULL), 0); /* never resurrect: all of it */
    /* what repair sends back: the peer's newer samples, version 30 */
    putv(e, 1, 0, 5, 3.0, 30);
    double sum;
    assert_int_equal(count(e, 1, 0, 100000, &sum), 5);
    assert_true(sum == 15.0);
    /* repair's drop_masked keeps versions >= the delete's, drops lower ones */
    st_label_t l[2] = {{"__name__", "cpu", 8, 3}, {"host", "h1", 4, 2}};
    int64_t ts[4] = {0, 100, 200, 5000};
    double v[4] = {1, 2, 3, 4};
    uint64_t ver[4] = {19, 20, 0, 5};
    assert_int_equal(engine_tomb_drop_masked(e, l, 2, ts, v, ver, 4), 2);
    assert_int_equal(ts[0], 100);
    assert_int_equal(ts[1], 5000);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

static int list_cb(void *arg, const engine_tomb_info_t *t)
{
    engine_t *to = arg;
    engine_delete_result_t r;
    return engine_delete_v(to, t->m, t->nm, t->start, t->end, t->id, t->version, 0, &r);
}

/* Repair's helpers: the versioned tombstones with an id travel; applying
 * them elsewhere gives the same summary, and again is a no-op. */
static void test_versioned_list(void **state)
{
    (void)state;
    char *da = make_dir(), *db = make_dir();
    engine_t *a = open_e(da), *b = open_e(db);
    arrivals(a); /* 6 deletes: 5 versioned with an id */
    uint64_t ca, ha, cb, hb;
    engine_tomb_summary(a, &ca, &ha);
    engine_tomb_summary(b, &cb, &hb);
    assert_int_equal(ca, 5);
    assert_int_equal(cb, 0);
    size_t next = 0;
    assert_int_equal(engine_tomb_list(a, 0, list_cb, b, &next), 0);
    assert_int_equal(next, 6);
    engine_tomb_summary(b, &cb, &hb);
    assert_int_equal(cb, ca);
    assert_true(hb == ha);
    assert_int_equal(engine_tomb_list(a, 0, list_cb, b, NULL), 0); /* again: duplicates */
    engine_tomb_summary(b, &cb, &hb);
    assert_int_equal(cb, ca);
    /* b got the deletes before the data: the older writes stay hidden there */
    putv(b, 1, 0, 10, 1.0, 10);
    putv(b, 2, 0, 10, 3.0, 30);
    assert_int_equal(count(b, 1, 0, 100000, NULL), 0);
    assert_int_equal(count(b, 2, 0, 100000, NULL), 10);
    assert_int_equal(engine_close(a), 0);
    assert_int_equal(engine_close(b), 0);
    rm_rf(da);
    rm_rf(db);
    free(da);
    free(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_roundtrip),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_engine_delete),
        cmocka_unit_test(test_engine_delete_labels_and_crash),
        cmocka_unit_test(test_purge_empties_partition),
        cmocka_unit_test(test_codec_versioned),
        cmocka_unit_test(test_match_labels),
        cmocka_unit_test(test_versioned_arrivals),
        cmocka_unit_test(test_versioned_wal_replay),
        cmocka_unit_test(test_versioned_empty_after_flush_crash),
        cmocka_unit_test(test_versioned_flushed_before),
        cmocka_unit_test(test_versioned_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

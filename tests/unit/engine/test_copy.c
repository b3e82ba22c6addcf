/*
 * Copying sealed segment files between engines (engine_copy.c), two real
 * engines in temporary directories, no sockets: the listed files carry the
 * CRC of their bytes; a partition copied into an engine whose series ids
 * differ reads back exactly as on the sender; a damaged file, a partition
 * the receiver holds data of, or a partition with a pending delete is not
 * installed; and the token rule that lets anti-entropy skip a sealed
 * partition: a flush, a late write (unsealed) or a delete (unlisted)
 * changes what it sees, and only sealed partitions whose two tokens are
 * those recorded are skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine.h"
#include "st_crc32c.h"
#include "st_err.h"

#define PART 60000
#define P0 (PART * 100)
#define P1 (PART * 101)
#define P2 (PART * 102)

static const st_label_t X[] = {{"__name__", "cpu", 8, 3}, {"host", "x", 4, 1}};
static const st_label_t Y[] = {{"__name__", "cpu", 8, 3}, {"host", "y", 4, 1}};
static const st_label_t Z[] = {{"__name__", "mem", 8, 3}, {"host", "z", 4, 1}};

typedef struct eng {
    char dir[64];
    engine_t *e;
} eng_t;

static void eng_open(eng_t *g)
{
    snprintf(g->dir, sizeof g->dir, "/tmp/strata_copy_XXXXXX");
    assert_non_null(mkdtemp(g->dir));
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    o.partition_ms = PART;
    o.max_future_ms = 0;
    assert_int_equal(engine_open(g->dir, &o, &g->e), 0);
}

static void eng_close(eng_t *g)
{
    assert_int_equal(engine_close(g->e), 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g->dir);
    assert_int_equal(system(cmd), 0);
}

static void put(engine_t *e, const st_label_t *l, int64_t t0, int n, double base)
{
    int64_t ts[64];
    double v[64];
    for (int i = 0; i < n; i++) {
        ts[i] = t0 + i * 1000;
        v[i] = base + i;
    }
    engine_series_batch_t b = {l, 2, ts, v, (size_t)n};
    assert_int_equal(engine_write(e, &b, 1, NULL), 0);
}

/* Samples of series l in [mint, maxt]: count and sum of values. */
static size_t read_sum(engine_t *e, const st_label_t *l, int64_t mint, int64_t maxt, double *sum)
{
    st_matcher_t m[2] = {{ST_MATCH_EQ, "__name__", l[0].value}, {ST_MATCH_EQ, "host", l[1].value}};
    engine_iter_t *it;
    assert_int_equal(engine_query(e, m, 2, mint, maxt, &it), 0);
    const st_label_t *ll;
    size_t nl, n, total = 0;
    const int64_t *ts;
    const double *v;
    *sum = 0;
    while (engine_iter_next(it, &ll, &nl, &ts, &v, &n) == 1)
        for (size_t i = 0; i < n; i++, total++)
            *sum += v[i] * 1000 + (double)(ts[i] % 100000);
    engine_iter_destroy(it);
    return total;
}

/* Copy file f of `from` (or series.log below limit) into path. */
static void fetch(engine_t *from, const engine_seg_file_t *f, uint64_t limit, const char *path)
{
    FILE *o = fopen(path, "wb");
    assert_non_null(o);
    uint8_t buf[4096];
    uint64_t off = 0;
    uint32_t crc = 0;
    for (;;) {
        size_t got;
        assert_int_equal(engine_copy_read(from, f, limit, off, buf, sizeof buf, &got), 0);
        if (!got)
            break;
        assert_int_equal(fwrite(buf, 1, got, o), got);
        crc = st_crc32c(crc, buf, got);
        off += got;
    }
    fclose(o);
    if (f) {
        assert_int_equal(off, f->size);
        assert_int_equal(crc, f->crc);
    } else {
        assert_int_equal(off, limit);
    }
}

/* Receive the files of partition start from `from` into c (damage: flip a
 * byte in the middle of the first file). */
static int copy_part(engine_t *from, engine_copy_t *c, int64_t start, int damage, uint64_t *samples)
{
    engine_seg_file_t *f;
    size_t n;
    uint64_t slog;
    assert_int_equal(engine_copy_list(from, &start, 1, 1, &f, &n, &slog), 0);
    assert_true(n >= 1);
    char paths[8][512];
    const char *pp[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "%zu.seg", i);
        pp[i] = engine_copy_path(c, name, paths[i], sizeof paths[i]);
        fetch(from, &f[i], 0, paths[i]);
    }
    if (damage) {
        FILE *h = fopen(paths[0], "r+b");
        assert_non_null(h);
        fseek(h, (long)(f[0].size / 3), SEEK_SET);
        int ch = fgetc(h);
        fseek(h, (long)(f[0].size / 3), SEEK_SET);
        fputc(ch ^ 0x5a, h);
        fclose(h);
    }
    free(f);
    return engine_copy_install(c, start, pp, n, samples);
}

static void test_copy_roundtrip(void **state)
{
    (void)state;
    eng_t a, b;
    eng_open(&a);
    eng_open(&b);
    /* the sender: three series in P0 and P1, two flushes into P0 */
    put(a.e, X, P0, 10, 1);
    put(a.e, Y, P0, 10, 100);
    assert_int_equal(engine_flush(a.e), 0);
    put(a.e, Z, P0 + 30000, 5, 500);
    put(a.e, X, P1, 20, 7);
    put(a.e, Z, P1, 20, 70);
    assert_int_equal(engine_flush(a.e), 0);
    /* the receiver knows only Z (its id 0, the sender's 2), in P2 */
    put(b.e, Z, P2, 3, 9);
    assert_int_equal(engine_flush(b.e), 0);

    engine_seg_file_t *f;
    size_t n;
    uint64_t slog;
    assert_int_equal(engine_copy_list(a.e, NULL, 0, 1, &f, &n, &slog), 0);
    assert_int_equal(n, 3); /* P0: two segments, P1: one */
    assert_true(slog > 0);
    for (size_t i = 0; i < n; i++) {
        assert_true(f[i].sealed);
        assert_true(f[i].crc != 0);
    }
    assert_true(f[0].part_start == P0 && f[1].part_start == P0 && f[2].part_start == P1);
    free(f);

    assert_int_equal(engine_copy_part_empty(b.e, P0), 1);
    assert_int_equal(engine_copy_part_empty(b.e, P2), 0);
    engine_copy_t *c;
    assert_int_equal(engine_copy_begin(b.e, &c), 0);
    char slp[512];
    fetch(a.e, NULL, slog, engine_copy_path(c, "series.log", slp, sizeof slp));
    assert_int_equal(engine_copy_load_series(c), 0);
    uint64_t samples;
    assert_int_equal(copy_part(a.e, c, P0, 0, &samples), 0);
    assert_int_equal(samples, 25);
    /* a damaged file is refused and leaves the partition empty */
    assert_int_equal(copy_part(a.e, c, P1, 1, &samples), ST_ECORRUPT);
    assert_int_equal(engine_copy_part_empty(b.e, P1), 1);
    assert_int_equal(copy_part(a.e, c, P1, 0, &samples), 0);
    assert_int_equal(samples, 40);
    /* a partition that has data now is not installed into again */
    assert_int_equal(copy_part(a.e, c, P0, 0, &samples), ST_EEXIST);
    engine_copy_end(c);

    engine_stats_t st;
    engine_get_stats(b.e, &st);
    assert_int_equal(st.segments_installed, 3);
    assert_int_equal(st.series, 3);
    const st_label_t *all[] = {X, Y, Z};
    for (int i = 0; i < 3; i++) {
        double sa, sb;
        size_t na = read_sum(a.e, all[i], P0, P2 - 1, &sa);
        size_t nb = read_sum(b.e, all[i], P0, P2 - 1, &sb);
        assert_int_equal(na, nb);
        assert_true(sa == sb);
    }
    /* what the receiver had stays, and it survives a reopen */
    double s;
    assert_int_equal(read_sum(b.e, Z, P2, P2 + PART - 1, &s), 3);
    assert_int_equal(engine_close(b.e), 0);
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    o.partition_ms = PART;
    o.max_future_ms = 0;
    assert_int_equal(engine_open(b.dir, &o, &b.e), 0);
    double sa, sb;
    assert_int_equal(read_sum(b.e, X, P0, P2 - 1, &sb), read_sum(a.e, X, P0, P2 - 1, &sa));
    assert_true(sa == sb);
    eng_close(&a);
    eng_close(&b);
}

static const engine_part_token_t *token_of(engine_t *e, int64_t start, engine_part_token_t **v,
                                           size_t *n)
{
    engine_seg_file_t *f;
    size_t nf;
    uint64_t slog;
    free(*v);
    assert_int_equal(engine_copy_list(e, NULL, 0, 0, &f, &nf, &slog), 0);
    assert_int_equal(engine_copy_parts(f, nf, v, n), 0);
    free(f);
    return engine_copy_part_find(*v, *n, start);
}

static void test_tokens_and_skip(void **state)
{
    (void)state;
    eng_t a;
    eng_open(&a);
    put(a.e, X, P0, 10, 1);
    put(a.e, X, P1, 10, 1);
    assert_int_equal(engine_flush(a.e), 0);
    engine_part_token_t *v = NULL;
    size_t n;
    const engine_part_token_t *t = token_of(a.e, P0, &v, &n);
    assert_non_null(t);
    assert_true(t->sealed);
    uint64_t t0 = t->token;
    /* unchanged: the same token */
    t = token_of(a.e, P0, &v, &n);
    assert_true(t->sealed && t->token == t0);
    /* a late write: unsealed until flushed, then another token */
    put(a.e, X, P0 + 500, 1, 3);
    t = token_of(a.e, P0, &v, &n);
    assert_false(t->sealed);
    assert_int_equal(engine_flush(a.e), 0);
    t = token_of(a.e, P0, &v, &n);
    assert_true(t->sealed);
    assert_true(t->token != t0);
    uint64_t t1 = t->token;
    /* compaction rewrites the files: another token again */
    assert_int_equal(engine_compact(a.e), 0);
    t = token_of(a.e, P0, &v, &n);
    assert_true(t->sealed && t->token != t1);

    /* the skip rule, on hand-made lists */
    engine_part_token_t mine[3] = {{P0, 11, 1}, {P1, 12, 1}, {P2, 13, 0}};
    engine_part_token_t theirs[3] = {{P0, 21, 1}, {P1, 22, 1}, {P2, 23, 1}};
    engine_part_equal_t eq[3] = {{P0, 11, 21}, {P1, 12, 99}, {P2, 13, 23}};
    int64_t skip[3];
    assert_int_equal(engine_copy_skip(mine, 3, theirs, 3, eq, 3, skip), 1);
    assert_int_equal(skip[0], P0); /* P1: their token moved; P2: not sealed here */
    theirs[0].sealed = 0;
    assert_int_equal(engine_copy_skip(mine, 3, theirs, 3, eq, 3, skip), 0);
    theirs[0].sealed = 1;
    assert_int_equal(engine_copy_skip(mine, 3, theirs, 2, eq, 3, skip), 1);
    assert_int_equal(engine_copy_skip(mine, 3, theirs, 3, NULL, 0, skip), 0);

    /* a pending delete: the partition is not listed (nor copied) */
    st_matcher_t m[1] = {{ST_MATCH_EQ, "host", "x"}};
    engine_delete_result_t dr;
    memset(&dr, 0, sizeof dr);
    assert_int_equal(engine_delete(a.e, m, 1, P1, P1 + 5000, 42, 0, &dr), 0);
    assert_null(token_of(a.e, P1, &v, &n));
    assert_non_null(engine_copy_part_find(v, n, P0));
    free(v);
    eng_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_roundtrip),
        cmocka_unit_test(test_tokens_and_skip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

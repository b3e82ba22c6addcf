/*
 * Digests (engine_digest.c), socket-free: equal sample sets give equal
 * digests whatever the order they were added in; a missing sample, a
 * different value or an extra series shows as exactly the differing cell
 * (window, bucket); the codec round-trips and refuses every truncation and
 * bad shape; and an engine's digest matches one built by hand from what
 * was written, before and after a flush.
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
#include "st_err.h"

#define NB 16
#define WIN 1000

static const st_label_t A[] = {{"__name__", "cpu", 8, 3}, {"host", "a", 4, 1}};
static const st_label_t B[] = {{"__name__", "cpu", 8, 3}, {"host", "b", 4, 1}};

static const int64_t TS[] = {10, 20, 1500, 2500, 2600};
static const double V[] = {1, 2, 3, 4, 5};

typedef struct seen {
    int n;
    int64_t start[8];
    uint32_t bucket[8];
} seen_t;

static int note(void *arg, int64_t start, uint32_t bucket, uint64_t ca, uint64_t cb)
{
    (void)ca;
    (void)cb;
    seen_t *s = arg;
    if (s->n < 8) {
        s->start[s->n] = start;
        s->bucket[s->n] = bucket;
    }
    s->n++;
    return 0;
}

static engine_digest_t *make(int variant)
{
    engine_digest_t *d;
    assert_int_equal(engine_digest_create(NB, WIN, &d), 0);
    if (variant == 1) { /* the same samples, other order and split */
        assert_int_equal(engine_digest_add(d, B, 2, TS + 2, V + 2, 3), 0);
        assert_int_equal(engine_digest_add(d, A, 2, TS + 3, V + 3, 2), 0);
        assert_int_equal(engine_digest_add(d, B, 2, TS, V, 2), 0);
        assert_int_equal(engine_digest_add(d, A, 2, TS, V, 3), 0);
        return d;
    }
    assert_int_equal(engine_digest_add(d, A, 2, TS, V, 5), 0);
    if (variant == 2) { /* B lacks ts 1500 */
        static const int64_t ts[] = {10, 20, 2500, 2600};
        static const double v[] = {1, 2, 4, 5};
        assert_int_equal(engine_digest_add(d, B, 2, ts, v, 4), 0);
    } else if (variant == 3) { /* B has another value at 2600 */
        static const double v[] = {1, 2, 3, 4, 5.5};
        assert_int_equal(engine_digest_add(d, B, 2, TS, v, 5), 0);
    } else {
        assert_int_equal(engine_digest_add(d, B, 2, TS, V, 5), 0);
    }
    return d;
}

static void test_order_free(void **state)
{
    (void)state;
    engine_digest_t *a = make(0), *b = make(1);
    assert_int_equal(a->n, 3); /* windows 0, 1000, 2000 */
    assert_int_equal(engine_digest_diff(a, b, NULL, NULL), 0);
    engine_digest_destroy(a);
    engine_digest_destroy(b);
}

static void test_diff_cells(void **state)
{
    (void)state;
    uint32_t bb = engine_digest_bucket(B, 2, NB);
    engine_digest_t *a = make(0), *m = make(2), *v = make(3);
    seen_t s = {0};
    assert_int_equal(engine_digest_diff(a, m, note, &s), 1);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.start[0], 1000);
    assert_int_equal(s.bucket[0], bb);
    memset(&s, 0, sizeof s);
    assert_int_equal(engine_digest_diff(a, v, note, &s), 1);
    assert_int_equal(s.start[0], 2000);
    assert_int_equal(s.bucket[0], bb);
    /* a window only one side has */
    engine_digest_t *e;
    assert_int_equal(engine_digest_create(NB, WIN, &e), 0);
    memset(&s, 0, sizeof s);
    int64_t cells = engine_digest_diff(e, a, note, &s);
    assert_true(cells >= 3 && cells <= 6);
    assert_int_equal(s.start[0], 0);
    /* shapes must agree */
    engine_digest_t *o;
    assert_int_equal(engine_digest_create(NB * 2, WIN, &o), 0);
    assert_int_equal(engine_digest_diff(a, o, NULL, NULL), ST_EINVAL);
    engine_digest_destroy(o);
    engine_digest_destroy(e);
    engine_digest_destroy(a);
    engine_digest_destroy(m);
    engine_digest_destroy(v);
}

static void test_codec(void **state)
{
    (void)state;
    engine_digest_t *a = make(0), *b;
    uint8_t *p;
    size_t len;
    assert_int_equal(engine_digest_encode(a, &p, &len), 0);
    assert_int_equal(engine_digest_decode(p, len, &b), 0);
    assert_int_equal(b->n, a->n);
    assert_int_equal(b->nbuckets, NB);
    assert_int_equal(b->window_ms, WIN);
    assert_int_equal(engine_digest_diff(a, b, NULL, NULL), 0);
    engine_digest_destroy(b);
    for (size_t cut = 0; cut < len; cut++) {
        engine_digest_t *x = NULL;
        assert_int_equal(engine_digest_decode(p, cut, &x), ST_ECORRUPT);
    }
    p[4] = 0; /* nbuckets 0 */
    assert_int_equal(engine_digest_decode(p, len, &b), ST_ECORRUPT);
    free(p);
    /* an empty digest is a few bytes */
    engine_digest_t *e;
    assert_int_equal(engine_digest_create(NB, WIN, &e), 0);
    assert_int_equal(engine_digest_encode(e, &p, &len), 0);
    assert_true(len < 16);
    assert_int_equal(engine_digest_decode(p, len, &b), 0);
    engine_digest_destroy(b);
    free(p);
    engine_digest_destroy(e);
    engine_digest_destroy(a);
}

static void test_engine_digest(void **state)
{
    (void)state;
    char dir[] = "/tmp/strata_digest_XXXXXX";
    assert_non_null(mkdtemp(dir));
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    o.partition_ms = WIN * 60; /* at least a minute */
    o.max_future_ms = 0;
    engine_t *e;
    assert_int_equal(engine_open(dir, &o, &e), 0);
    engine_series_batch_t b[2] = {{A, 2, TS, V, 5}, {B, 2, TS, V, 5}};
    assert_int_equal(engine_write(e, b, 2, NULL), 0);
    assert_int_equal(engine_partition_ms(e), WIN * 60);
    engine_digest_t *want, *got;
    assert_int_equal(engine_digest_create(NB, WIN, &want), 0);
    assert_int_equal(engine_digest_add(want, A, 2, TS, V, 5), 0);
    assert_int_equal(engine_digest_add(want, B, 2, TS, V, 5), 0);
    assert_int_equal(engine_digest(e, NB, WIN, &got), 0);
    assert_int_equal(engine_digest_diff(want, got, NULL, NULL), 0);
    engine_digest_destroy(got);
    /* two ranges read apart and merged: the same digest */
    engine_digest_t *lo, *hi;
    assert_int_equal(engine_digest_create(NB, WIN, &lo), 0);
    assert_int_equal(engine_digest_create(NB, WIN, &hi), 0);
    assert_int_equal(engine_digest_range(e, lo, INT64_MIN, 1499), 0);
    assert_int_equal(engine_digest_range(e, hi, 1500, INT64_MAX), 0);
    assert_true(engine_digest_diff(want, lo, NULL, NULL) > 0); /* windows 1000, 2000 missing */
    assert_int_equal(engine_digest_merge(lo, hi), 0);
    assert_int_equal(engine_digest_diff(want, lo, NULL, NULL), 0);
    engine_digest_destroy(lo);
    engine_digest_destroy(hi);
    assert_int_equal(engine_flush(e), 0);
    /* a rewrite of the same value changes nothing; another value does */
    assert_int_equal(engine_write(e, b, 1, NULL), 0);
    assert_int_equal(engine_digest(e, NB, WIN, &got), 0);
    assert_int_equal(engine_digest_diff(want, got, NULL, NULL), 0);
    engine_digest_destroy(got);
    static const double v2[] = {9};
    engine_series_batch_t c = {A, 2, TS, v2, 1};
    assert_int_equal(engine_write(e, &c, 1, NULL), 0);
    assert_int_equal(engine_digest(e, NB, WIN, &got), 0);
    assert_int_equal(engine_digest_diff(want, got, NULL, NULL), 1);
    engine_digest_destroy(got);
    engine_digest_destroy(want);
    assert_int_equal(engine_close(e), 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_free),
        cmocka_unit_test(test_diff_cells),
        cmocka_unit_test(test_codec),
        cmocka_unit_test(test_engine_digest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Series keys (engine_keys_resolve, engine_write_keyed): a key learnt from
 * a write by labels gives the series' id back; a write by id and key (no
 * labels) lands in that series; a second encoding of the same labels is
 * another key of the same id; an id the engine never gave, or labels left
 * out without opts.key_labels, are refused; a newer delete still hides an
 * older write that comes by key (its labels decoded from the key to match
 * the tombstone); keys are not kept across a reopen (ids are, and
 * writes by labels learn them again). References
 * (engine_keys_resolve_refs): learnt with a key, even one known before;
 * they give the key and id back, a write by them lands in that series
 * (a newer delete hides it too); an unknown one gives {0}; many
 * references (a writer restarting with new ones) are forgotten all at
 * once, the keys stay.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../common/tmpdir.h"

#include "engine.h"
#include "st_err.h"

static const st_label_t lab_a[2] = {{"__name__", "m", 8, 1}, {"host", "a", 4, 1}};
static const st_label_t lab_b[2] = {{"__name__", "m", 8, 1}, {"host", "b", 4, 1}};

/* The toy key encoding of these tests: "A" or "a" (two encodings of
 * lab_a), "B" (lab_b). */
static int toy_labels(const uint8_t *key, size_t len, st_label_t *out, size_t cap, size_t *n)
{
    if (len != 1 || cap < 2)
        return ST_ECORRUPT;
    const st_label_t *l = key[0] == 'B' ? lab_b : lab_a;
    memcpy(out, l, 2 * sizeof *l);
    *n = 2;
    return 0;
}

static char *make_dir(void)
{
    return make_dir_tagged("keys");
}

static engine_t *open_engine(const char *dir, int with_decoder)
{
    engine_opts_t o;
    engine_opts_default(&o);
    o.background = 0;
    if (with_decoder)
        o.key_labels = toy_labels;
    engine_t *e;
    assert_int_equal(engine_open(dir, &o, &e), 0);
    return e;
}

static uint32_t resolve(engine_t *e, const char *key)
{
    engine_series_key_t k = {(const uint8_t *)key, (uint32_t)strlen(key), 0, NULL};
    uint32_t id;
    engine_keys_resolve(e, &k, 1, &id);
    return id;
}

/* Write (t, v) by labels l (NULL: by key and id only) with key `key`. */
static int put(engine_t *e, const st_label_t *l, const char *key, uint32_t id1, int64_t t, double v,
               uint64_t version, engine_write_result_t *r)
{
    engine_series_batch_t b = {l, l ? 2 : 0, &t, &v, 1};
    engine_series_key_t k = {(const uint8_t *)key, (uint32_t)strlen(key), id1, NULL};
    engine_write_result_init(r);
    return engine_write_keyed(e, &b, &k, 1, version, r);
}

/* The samples of host=h: their count, the value of the last in *last. */
static size_t count(engine_t *e, const char *h, double *last)
{
    st_matcher_t m = {ST_MATCH_EQ, "host", h};
    engine_iter_t *it;
    assert_int_equal(engine_query(e, &m, 1, INT64_MIN + 1, INT64_MAX - 1, &it), 0);
    const st_label_t *l;
    size_t nl, n = 0, got = 0;
    const int64_t *ts;
    const double *v;
    while (engine_iter_next(it, &l, &nl, &ts, &v, &n) == 1) {
        assert_int_equal(nl, 2);
        assert_memory_equal(l[1].value, h, 1);
        got += n;
        if (last)
            *last = v[n - 1];
    }
    engine_iter_destroy(it);
    return got;
}

static void test_learn_and_write_by_key(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_t *e = open_engine(dir, 1);
    engine_write_result_t r;
    assert_int_equal(resolve(e, "A"), UINT32_MAX); /* not learnt yet */
    assert_int_equal(put(e, lab_a, "A", 0, 1000, 1.0, 0, &r), 0);
    assert_int_equal(put(e, lab_b, "B", 0, 1000, 5.0, 0, &r), 0);
    uint32_t ia = resolve(e, "A"), ib = resolve(e, "B");
    assert_int_not_equal(ia, UINT32_MAX);
    assert_int_not_equal(ib, UINT32_MAX);
    assert_int_not_equal(ia, ib);
    /* by id and key, no labels: the same series */
    assert_int_equal(put(e, NULL, "A", ia + 1, 2000, 2.0, 0, &r), 0);
    assert_int_equal(r.written, 1);
    assert_int_equal(r.new_series, 0);
    double last = 0;
    assert_int_equal(count(e, "a", &last), 2);
    assert_true(last == 2.0);
    assert_int_equal(count(e, "b", NULL), 1);
    /* another encoding of lab_a: learnt as another key of the same id */
    assert_int_equal(resolve(e, "a"), UINT32_MAX);
    assert_int_equal(put(e, lab_a, "a", 0, 3000, 3.0, 0, &r), 0);
    assert_int_equal(r.new_series, 0);
    assert_int_equal(resolve(e, "a"), ia);
    /* an id never given: refused, nothing written */
    assert_int_equal(put(e, NULL, "A", 1000 + 1, 4000, 4.0, 0, &r), ST_EINVAL);
    assert_int_equal(r.bad, 0);
    assert_int_equal(count(e, "a", NULL), 3);
    /* keys live as long as the engine: after a reopen, learnt again */
    assert_int_equal(engine_close(e), 0);
    e = open_engine(dir, 1);
    assert_int_equal(resolve(e, "A"), UINT32_MAX);
    assert_int_equal(put(e, lab_a, "A", 0, 5000, 5.0, 0, &r), 0);
    assert_int_equal(r.new_series, 0);
    assert_int_equal(resolve(e, "A"), ia);
    assert_int_equal(count(e, "a", NULL), 4);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

static void test_no_labels_needs_decoder(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_t *e = open_engine(dir, 0);
    engine_write_result_t r;
    assert_int_equal(put(e, lab_a, "A", 0, 1000, 1.0, 0, &r), 0);
    uint32_t ia = resolve(e, "A");
    assert_int_not_equal(ia, UINT32_MAX);
    assert_int_equal(put(e, NULL, "A", ia + 1, 2000, 2.0, 0, &r), ST_EINVAL);
    assert_int_equal(put(e, lab_a, "A", ia + 1, 2000, 2.0, 0, &r), 0); /* labels given: fine */
    assert_int_equal(count(e, "a", NULL), 2);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

static void test_newer_delete_hides_keyed_write(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_t *e = open_engine(dir, 1);
    engine_write_result_t r;
    assert_int_equal(put(e, lab_a, "A", 0, 1000, 1.0, 10, &r), 0);
    assert_int_equal(put(e, lab_b, "B", 0, 1000, 1.0, 10, &r), 0);
    uint32_t ia = resolve(e, "A"), ib = resolve(e, "B");
    st_matcher_t m = {ST_MATCH_EQ, "host", "a"};
    engine_delete_result_t d;
    assert_int_equal(engine_delete_v(e, &m, 1, 0, 10000, 7, 50, 0, &d), 0);
    /* older than the delete, by key: hidden for host=a, kept for host=b */
    assert_int_equal(put(e, NULL, "A", ia + 1, 2000, 2.0, 20, &r), 0);
    assert_int_equal(put(e, NULL, "B", ib + 1, 2000, 2.0, 20, &r), 0);
    assert_int_equal(count(e, "a", NULL), 0);
    assert_int_equal(count(e, "b", NULL), 2);
    /* newer than the delete: kept */
    assert_int_equal(put(e, NULL, "A", ia + 1, 3000, 3.0, 60, &r), 0);
    assert_int_equal(count(e, "a", NULL), 1);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

/* Write by labels with key and reference (id1 as resolve found it). */
static int put_ref(engine_t *e, const st_label_t *l, const char *key, uint32_t id1,
                   const uint8_t *ref, int64_t t, double v, uint64_t version,
                   engine_write_result_t *r)
{
    engine_series_batch_t b = {l, 2, &t, &v, 1};
    engine_series_key_t k = {(const uint8_t *)key, (uint32_t)strlen(key), id1, ref};
    engine_write_result_init(r);
    return engine_write_keyed(e, &b, &k, 1, version, r);
}

/* Write by reference alone, as node_write does: its key and id, no labels. */
static int put_by_ref(engine_t *e, const uint8_t *ref, int64_t t, double v, uint64_t version,
                      engine_write_result_t *r)
{
    engine_series_key_t k;
    if (engine_keys_resolve_refs(e, &ref, 1, &k) != 1)
        return ST_ENOENT;
    engine_series_batch_t b = {NULL, 0, &t, &v, 1};
    engine_write_result_init(r);
    return engine_write_keyed(e, &b, &k, 1, version, r);
}

static void test_refs(void **state)
{
    (void)state;
    char *dir = make_dir();
    engine_t *e = open_engine(dir, 1);
    engine_write_result_t r;
    uint8_t ra[ENGINE_REF_LEN], rb[ENGINE_REF_LEN], rx[ENGINE_REF_LEN];
    memset(ra, 0xa1, sizeof ra);
    memset(rb, 0xb2, sizeof rb);
    memset(rx, 0xa1, sizeof rx);
    rx[15] = 0; /* ra but for its last byte: another reference */
    const uint8_t *q[3] = {ra, rb, rx};
    engine_series_key_t k[3];
    assert_int_equal(engine_keys_resolve_refs(e, q, 3, k), 0);
    assert_null(k[0].key);
    assert_int_equal(k[0].id1, 0);
    /* lab_a new, with its reference; lab_b known before, then a reference */
    assert_int_equal(put(e, lab_b, "B", 0, 1000, 1.0, 0, &r), 0);
    assert_int_equal(put_ref(e, lab_a, "A", 0, ra, 1000, 1.0, 0, &r), 0);
    uint32_t ia = resolve(e, "A"), ib = resolve(e, "B");
    assert_int_equal(put_ref(e, lab_b, "B", ib + 1, rb, 2000, 2.0, 0, &r), 0);
    assert_int_equal(engine_keys_resolve_refs(e, q, 3, k), 2);
    assert_int_equal(k[0].id1, ia + 1);
    assert_int_equal(k[0].len, 1);
    assert_memory_equal(k[0].key, "A", 1);
    assert_int_equal(k[1].id1, ib + 1);
    assert_memory_equal(k[1].key, "B", 1);
    assert_null(k[2].key); /* 15 bytes alike are not the reference */
    /* a write by reference alone lands in its series */
    assert_int_equal(put_by_ref(e, ra, 3000, 3.0, 0, &r), 0);
    assert_int_equal(r.written, 1);
    assert_int_equal(r.new_series, 0);
    double last = 0;
    assert_int_equal(count(e, "a", &last), 2);
    assert_true(last == 3.0);
    assert_int_equal(count(e, "b", NULL), 2);
    /* a newer delete hides an older write by reference (labels from the key) */
    st_matcher_t m = {ST_MATCH_EQ, "host", "a"};
    engine_delete_result_t d;
    assert_int_equal(engine_delete_v(e, &m, 1, 0, 10000, 7, 50, 0, &d), 0);
    assert_int_equal(put_by_ref(e, ra, 4000, 4.0, 20, &r), 0);
    assert_int_equal(count(e, "a", NULL), 0);
    assert_int_equal(put_by_ref(e, ra, 5000, 5.0, 60, &r), 0);
    assert_int_equal(count(e, "a", NULL), 1);
    /* references past four a key (and 1024) are forgotten together; keys stay */
    static uint8_t many[1100][ENGINE_REF_LEN];
    for (size_t i = 0; i < 1100; i++) {
        memcpy(many[i] + 4, &i, sizeof i); /* (the lowest bit is not part of a reference) */
        many[i][15] = 0x5c;
        assert_int_equal(put_ref(e, lab_b, "B", ib + 1, many[i], 6000, 6.0, 0, &r), 0);
    }
    const uint8_t *m0 = many[1099];
    assert_int_equal(engine_keys_resolve_refs(e, &m0, 1, k), 1);
    assert_int_equal(engine_keys_resolve_refs(e, q, 2, k), 0);
    assert_int_equal(resolve(e, "A"), ia);
    assert_int_equal(engine_close(e), 0);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_learn_and_write_by_key),
        cmocka_unit_test(test_no_labels_needs_decoder),
        cmocka_unit_test(test_newer_delete_hides_keyed_write),
        cmocka_unit_test(test_refs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

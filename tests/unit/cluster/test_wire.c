/* Unit tests for common/cluster/wire: our encoder is readable by protobuf-c and round-trips. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "st_err.h"
#include "strata.pb-c.h"
#include "wire.h"

static const st_label_t L[3] = {
    {"__name__", "cpu_usage", 8, 9}, {"host", "h\xc3\xa9", 4, 3}, {"empty", "", 5, 0}};

static void test_protobuf_c_reads_ours(void **state)
{
    int64_t ts[4] = {1451606400000, 1451606410000, 1451606405000, INT64_MIN};
    double v[4] = {1.5, -0.0, NAN, 1e308};
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(wire_put_varint_field(&b, 1, 7), 0);
    assert_int_equal(wire_put_series(&b, 2, L, 3, ts, v, 4), 0);
    assert_int_equal(wire_put_series(&b, 2, L, 1, ts, v, 0), 0); /* no samples */
    Strata__WriteRequest *r = strata__write_request__unpack(NULL, b.len, b.data);
    assert_non_null(r);
    assert_int_equal(r->shard, 7);
    assert_int_equal(r->n_series, 2);
    Strata__SeriesSamples *s = r->series[0];
    assert_int_equal(s->n_labels, 3);
    assert_memory_equal(s->labels[1]->value.data, "h\xc3\xa9", 3);
    assert_int_equal(s->labels[2]->value.len, 0);
    assert_int_equal(s->n_timestamps, 4);
    int64_t prev = 0;
    for (size_t i = 0; i < 4; i++) { /* delta-coded */
        prev = (int64_t)((uint64_t)prev + (uint64_t)s->timestamps[i]);
        assert_true(prev == ts[i]);
    }
    assert_int_equal(s->n_values, 4);
    assert_memory_equal(s->values, v, sizeof v);
    assert_int_equal(r->series[1]->n_values, 0);
    strata__write_request__free_unpacked(r, NULL);
    st_buf_deinit(&b);
}

/* Labels encoded beforehand, in runs, give the same bytes as labels
 * encoded on the fly (the write path encodes a point's tags once). */
static void test_preencoded_labels(void **state)
{
    int64_t ts[3] = {1000, 2000, 1500};
    double v[3] = {1, 2, 3};
    st_buf_t a, pre1, pre2, b;
    st_buf_init(&a);
    st_buf_init(&pre1);
    st_buf_init(&pre2);
    st_buf_init(&b);
    assert_int_equal(wire_put_series(&a, 2, L, 3, ts, v, 3), 0);
    assert_int_equal(wire_put_series(&a, 2, L, 3, ts, v, 0), 0);
    assert_int_equal(wire_put_labels(&pre1, L, 1), 0);
    assert_int_equal(wire_put_labels(&pre2, L + 1, 2), 0);
    wire_bytes_t runs[3] = {{pre1.data, pre1.len}, {NULL, 0}, {pre2.data, pre2.len}};
    assert_int_equal(wire_put_series_enc(&b, 2, runs, 3, ts, v, 3), 0);
    assert_int_equal(wire_put_series_enc(&b, 2, runs, 3, ts, v, 0), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    st_buf_deinit(&a);
    st_buf_deinit(&pre1);
    st_buf_deinit(&pre2);
    st_buf_deinit(&b);
}

static void test_roundtrip_zero_copy(void **state)
{
    enum { N = 1000 };
    int64_t ts[N];
    double v[N];
    for (int i = 0; i < N; i++) {
        ts[i] = -5000 + i * 10;
        v[i] = i * 0.25;
    }
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(wire_put_series(&b, 2, L, 3, ts, v, N), 0);
    const uint8_t *p = b.data, *end = b.data + b.len;
    wire_field_t f;
    assert_int_equal(wire_next(&p, end, &f), 1);
    assert_int_equal(f.num, 2);
    wire_series_t s;
    assert_int_equal(wire_series_decode(f.data, f.len, &s), 0);
    assert_int_equal(s.nlabels, 3);
    assert_true(s.labels[0].name >= (const char *)b.data &&
                s.labels[0].name < (const char *)end); /* zero-copy */
    assert_int_equal(st_labels_cmp(s.labels, 3, L, 3), 0);
    int64_t ots[N];
    double ov[N];
    size_t n;
    assert_int_equal(wire_series_samples(&s, ots, ov, N - 1, &n), ST_ELIMIT);
    assert_int_equal(wire_series_samples(&s, ots, ov, N, &n), 0);
    assert_int_equal(n, N);
    assert_memory_equal(ots, ts, sizeof ts);
    assert_memory_equal(ov, v, sizeof v);
    assert_int_equal(wire_next(&p, end, &f), 0);
    st_buf_deinit(&b);
}

static void test_versions(void **state)
{
    int64_t ts[3] = {10, 20, 30};
    double v[3] = {1, 2, 3};
    uint64_t ver[3] = {0, 1ull << 50, UINT64_MAX}, out[3];
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(wire_put_series_v(&b, 1, L, 3, ts, v, ver, 3), 0);
    Strata__ReadResponse *r = strata__read_response__unpack(NULL, b.len, b.data);
    assert_non_null(r); /* protobuf-c reads them */
    assert_int_equal(r->series[0]->n_versions, 3);
    assert_memory_equal(r->series[0]->versions, ver, sizeof ver);
    strata__read_response__free_unpacked(r, NULL);
    const uint8_t *p = b.data;
    wire_field_t f;
    assert_int_equal(wire_next(&p, b.data + b.len, &f), 1);
    wire_series_t s;
    assert_int_equal(wire_series_decode(f.data, f.len, &s), 0);
    assert_int_equal(wire_series_versions(&s, out, 3), 0);
    assert_memory_equal(out, ver, sizeof ver);
    assert_int_equal(wire_series_versions(&s, out, 2), ST_ECORRUPT); /* count differs */
    /* no versions field: all 0 */
    b.len = 0;
    assert_int_equal(wire_put_series(&b, 1, L, 3, ts, v, 3), 0);
    p = b.data;
    assert_int_equal(wire_next(&p, b.data + b.len, &f), 1);
    assert_int_equal(wire_series_decode(f.data, f.len, &s), 0);
    memset(out, 0xff, sizeof out);
    assert_int_equal(wire_series_versions(&s, out, 3), 0);
    assert_true(out[0] == 0 && out[1] == 0 && out[2] == 0);
    st_buf_deinit(&b);
    (void)state;
}

static void test_reads_protobuf_c_output(void **state)
{
    Strata__Label l = STRATA__LABEL__INIT;
    l.name = (ProtobufCBinaryData){1, (uint8_t *)"a"};
    l.value = (ProtobufCBinaryData){1, (uint8_t *)"b"};
    Strata__Label *lp = &l;
    int64_t d[2] = {100, 5};
    double v[2] = {1, 2};
    Strata__SeriesSamples s = STRATA__SERIES_SAMPLES__INIT;
    s.n_labels = 1;
    s.labels = &lp;
    s.n_timestamps = 2;
    s.timestamps = d;
    s.n_values = 2;
    s.values = v;
    uint8_t buf[256];
    size_t len = strata__series_samples__pack(&s, buf);
    wire_series_t ws;
    assert_int_equal(wire_series_decode(buf, len, &ws), 0);
    int64_t ts[2];
    double ov[2];
    size_t n;
    assert_int_equal(wire_series_samples(&ws, ts, ov, 2, &n), 0);
    assert_true(ts[0] == 100 && ts[1] == 105);
    assert_true(ov[1] == 2.0);
}

static void test_malformed(void **state)
{
    wire_series_t s;
    const uint8_t bad_len[] = {0x0a, 0x05, 0x01};              /* LEN past end */
    const uint8_t group[] = {0x0b};                            /* start group */
    const uint8_t bad_vals[] = {0x1a, 0x03, 1, 2, 3};          /* 3 bytes of doubles */
    const uint8_t field0[] = {0x02, 0x00};                     /* field number 0 */
    const uint8_t trunc_varint[] = {0x08, 0xff};               /* varint cut */
    const uint8_t mismatch[] = {0x12, 0x01, 0x02, 0x1a, 0x00}; /* 1 ts, 0 values */
    assert_int_equal(wire_series_decode(bad_len, sizeof bad_len, &s), ST_ECORRUPT);
    assert_int_equal(wire_series_decode(group, sizeof group, &s), ST_ECORRUPT);
    assert_int_equal(wire_series_decode(bad_vals, sizeof bad_vals, &s), ST_ECORRUPT);
    assert_int_equal(wire_series_decode(field0, sizeof field0, &s), ST_ECORRUPT);
    assert_int_equal(wire_series_decode(trunc_varint, sizeof trunc_varint, &s), ST_ECORRUPT);
    assert_int_equal(wire_series_decode(mismatch, sizeof mismatch, &s), 0);
    int64_t ts[4];
    double v[4];
    size_t n;
    assert_int_equal(wire_series_samples(&s, ts, v, 4, &n), ST_ECORRUPT);
}

/* wire_label_decode: the usual layout (name, value) on the fast path, and
 * every other layout protobuf allows on the general one, read alike. */
static void test_label_layouts(void **state)
{
    (void)state;
    static const struct {
        const uint8_t *b;
        size_t n;
        const char *name, *value;
        int rc;
    } cases[] = {
        {(const uint8_t *)"\x0a\x01"
                          "a"
                          "\x12\x02"
                          "bc",
         7, "a", "bc", 0}, /* fast */
        {(const uint8_t *)"\x0a\x01"
                          "a"
                          "\x12\x00",
         5, "a", "", 0}, /* empty value */
        {(const uint8_t *)"\x12\x02"
                          "bc"
                          "\x0a\x01"
                          "a",
         7, "a", "bc", 0}, /* value first */
        {(const uint8_t *)"\x0a\x01"
                          "a",
         3, "a", "", 0}, /* no value */
        {(const uint8_t *)"\x0a\x01"
                          "a"
                          "\x12\x01"
                          "b"
                          "\x18\x07",
         8, "a", "b", 0}, /* extra varint */
        {(const uint8_t *)"\x0a\x01"
                          "a"
                          "\x12\x05"
                          "b",
         6, "", "", ST_ECORRUPT}, /* value cut */
        {(const uint8_t *)"\x0a\x09"
                          "a"
                          "\x12\x01"
                          "b",
         6, "", "", ST_ECORRUPT}, /* name past end */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        st_label_t l;
        int rc = wire_label_decode(cases[i].b, cases[i].n, &l);
        assert_int_equal(rc, cases[i].rc);
        if (rc)
            continue;
        assert_int_equal(l.name_len, strlen(cases[i].name));
        assert_memory_equal(l.name, cases[i].name, l.name_len);
        assert_int_equal(l.value_len, strlen(cases[i].value));
        assert_memory_equal(l.value, cases[i].value, l.value_len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protobuf_c_reads_ours),
        cmocka_unit_test(test_roundtrip_zero_copy),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_preencoded_labels),
        cmocka_unit_test(test_reads_protobuf_c_output),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_label_layouts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

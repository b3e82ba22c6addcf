/*
 * test_cli_rread — the remote-read codec of `strata migrate` (cli/rread.h):
 * the ReadRequest bytes field by field, a ReadResponse built here decoded
 * back (labels, samples, NaN bits, unknown fields skipped), every truncation
 * of it rejected or decoded without reading past the end, the limits, and
 * snappy both ways. Also the export-line sample counter import and migrate
 * use (cli_json_line_samples).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"
#include "rread.h"
#include "st_buf.h"
#include "st_err.h"
#include "st_varint.h"

/* ---- a tiny protobuf writer for building responses ---------------------------------------- */

static void tag(st_buf_t *b, unsigned f, unsigned wt)
{
    assert_int_equal(st_buf_put_uvarint(b, (uint64_t)f << 3 | wt), 0);
}

static void bytes(st_buf_t *b, unsigned f, const void *p, size_t n)
{
    tag(b, f, 2);
    assert_int_equal(st_buf_put_uvarint(b, n), 0);
    assert_int_equal(st_buf_append(b, p, n), 0);
}

static void str(st_buf_t *b, unsigned f, const char *s)
{
    bytes(b, f, s, strlen(s));
}

static void label(st_buf_t *ts, const char *n, const char *v)
{
    st_buf_t l;
    st_buf_init(&l);
    str(&l, 1, n);
    str(&l, 2, v);
    bytes(ts, 1, l.data, l.len);
    st_buf_deinit(&l);
}

static void sample(st_buf_t *ts, double v, int64_t t)
{
    st_buf_t s;
    st_buf_init(&s);
    tag(&s, 1, 1);
    assert_int_equal(st_buf_put_u64le(&s, st_f64_bits(v)), 0);
    tag(&s, 2, 0);
    assert_int_equal(st_buf_put_uvarint(&s, (uint64_t)t), 0);
    bytes(ts, 2, s.data, s.len);
    st_buf_deinit(&s);
}

/* ReadResponse{results:[{timeseries:[a{x=1} 2 samples, b 1 sample]}, {timeseries:[c 1]}]} */
static void build_response(st_buf_t *out)
{
    st_buf_t ts, qr;
    st_buf_init(&ts);
    st_buf_init(&qr);
    label(&ts, "__name__", "a");
    label(&ts, "x", "1");
    tag(&ts, 9, 0); /* an unknown varint field */
    st_buf_put_uvarint(&ts, 300);
    sample(&ts, 1.5, 1000);
    sample(&ts, st_bits_f64(0x7ff0000000000002ULL), 2000); /* the stale marker's NaN */
    bytes(&qr, 1, ts.data, ts.len);
    st_buf_reset(&ts);
    label(&ts, "__name__", "b");
    sample(&ts, -0.0, -5);
    bytes(&qr, 1, ts.data, ts.len);
    str(&qr, 7, "unknown bytes");
    bytes(out, 1, qr.data, qr.len);
    st_buf_reset(&qr);
    st_buf_reset(&ts);
    label(&ts, "__name__", "c");
    sample(&ts, 1e300, 1700000000000);
    bytes(&qr, 1, ts.data, ts.len);
    bytes(out, 1, qr.data, qr.len);
    st_buf_deinit(&ts);
    st_buf_deinit(&qr);
}

typedef struct seen {
    int series;
    char names[4][16];
    size_t labels[4], samples[4];
    rread_sample_t first[4], last[4];
} seen_t;

static int on_series(void *ud, const rread_series_t *s)
{
    seen_t *v = ud;
    if (v->series >= 4)
        return ST_ELIMIT;
    int i = v->series++;
    for (size_t k = 0; k < s->nlabels; k++)
        if (s->labels[k].name_len == 8 && memcmp(s->labels[k].name, "__name__", 8) == 0)
            snprintf(v->names[i], sizeof(v->names[i]), "%.*s", (int)s->labels[k].value_len,
                     s->labels[k].value);
    v->labels[i] = s->nlabels;
    v->samples[i] = s->nsamples;
    if (s->nsamples) {
        v->first[i] = s->samples[0];
        v->last[i] = s->samples[s->nsamples - 1];
    }
    return 0;
}

static void test_decode_response(void **state)
{
    (void)state;
    st_buf_t b;
    st_buf_init(&b);
    build_response(&b);
    seen_t v = {0};
    char err[200];
    assert_int_equal(rread_decode_response(b.data, b.len, on_series, &v, err, sizeof(err)), 0);
    assert_int_equal(v.series, 3);
    assert_string_equal(v.names[0], "a");
    assert_int_equal(v.labels[0], 2);
    assert_int_equal(v.samples[0], 2);
    assert_true(v.first[0].v == 1.5 && v.first[0].t_ms == 1000);
    assert_true(st_f64_bits(v.last[0].v) == 0x7ff0000000000002ULL);
    assert_string_equal(v.names[1], "b");
    assert_true(v.first[1].t_ms == -5 && signbit(v.first[1].v));
    assert_string_equal(v.names[2], "c");
    assert_true(v.first[2].v == 1e300 && v.first[2].t_ms == 1700000000000);

    /* every truncation: an error or fewer series, never a crash or a read past the end */
    for (size_t n = 0; n < b.len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, b.data, n);
        seen_t w = {0};
        int rc = rread_decode_response(copy, n, on_series, &w, err, sizeof(err));
        assert_true(rc == 0 || rc == ST_EPARSE);
        if (rc == ST_EPARSE)
            assert_non_null(strstr(err, "byte "));
        free(copy);
    }
    /* the callback's error stops the decode */
    seen_t full = {.series = 4};
    assert_int_equal(rread_decode_response(b.data, b.len, on_series, &full, err, sizeof(err)),
                     ST_ELIMIT);
    /* a group wire type and a length past the end */
    static const uint8_t group[] = {0x0b};
    assert_int_equal(rread_decode_response(group, 1, on_series, &v, err, sizeof(err)), ST_EPARSE);
    static const uint8_t longer[] = {0x0a, 0x05, 0x0a};
    assert_int_equal(rread_decode_response(longer, 3, on_series, &v, err, sizeof(err)), ST_EPARSE);
    st_buf_deinit(&b);
}

static void test_label_limit(void **state)
{
    (void)state;
    st_buf_t ts, qr, b;
    st_buf_init(&ts);
    st_buf_init(&qr);
    st_buf_init(&b);
    for (int i = 0; i <= RREAD_MAX_LABELS; i++)
        label(&ts, "l", "v");
    bytes(&qr, 1, ts.data, ts.len);
    bytes(&b, 1, qr.data, qr.len);
    seen_t v = {0};
    char err[200];
    assert_int_equal(rread_decode_response(b.data, b.len, on_series, &v, err, sizeof(err)),
                     ST_ELIMIT);
    assert_non_null(strstr(err, "labels"));
    st_buf_deinit(&ts);
    st_buf_deinit(&qr);
    st_buf_deinit(&b);
}

static void test_encode_request(void **state)
{
    (void)state;
    st_matcher_t m[2] = {{ST_MATCH_EQ, "__name__", "up"}, {ST_MATCH_RE, "job", "a.*"}};
    st_buf_t got, q, lm, want;
    st_buf_init(&got);
    st_buf_init(&q);
    st_buf_init(&lm);
    st_buf_init(&want);
    assert_int_equal(rread_encode_request(&got, 1000, 2000, m, 2), 0);
    tag(&q, 1, 0);
    st_buf_put_uvarint(&q, 1000);
    tag(&q, 2, 0);
    st_buf_put_uvarint(&q, 2000);
    str(&lm, 2, "__name__"); /* EQ = 0: the default, not written */
    str(&lm, 3, "up");
    bytes(&q, 3, lm.data, lm.len);
    st_buf_reset(&lm);
    tag(&lm, 1, 0);
    st_buf_put_uvarint(&lm, 2);
    str(&lm, 2, "job");
    str(&lm, 3, "a.*");
    bytes(&q, 3, lm.data, lm.len);
    bytes(&want, 1, q.data, q.len);
    assert_int_equal(got.len, want.len);
    assert_memory_equal(got.data, want.data, want.len);
    st_buf_deinit(&got);
    st_buf_deinit(&q);
    st_buf_deinit(&lm);
    st_buf_deinit(&want);
}

static void test_snappy(void **state)
{
    (void)state;
    st_buf_t raw, c, back;
    st_buf_init(&raw);
    st_buf_init(&c);
    st_buf_init(&back);
    for (int i = 0; i < 1000; i++)
        st_buf_append(&raw, "abcdefgh", 8);
    assert_int_equal(rread_snappy_compress(&c, raw.data, raw.len), 0);
    assert_true(c.len < raw.len);
    assert_int_equal(rread_snappy_uncompress(&back, c.data, c.len, 1 << 20), 0);
    assert_int_equal(back.len, raw.len);
    assert_memory_equal(back.data, raw.data, raw.len);
    assert_int_equal(rread_snappy_uncompress(&back, c.data, c.len, 100), ST_ELIMIT);
    assert_int_equal(rread_snappy_uncompress(&back, c.data, c.len / 2, 1 << 20), ST_EPARSE);
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_int_not_equal(rread_snappy_uncompress(&back, junk, sizeof(junk), 1 << 20), 0);
    st_buf_deinit(&raw);
    st_buf_deinit(&c);
    st_buf_deinit(&back);
}

static void test_json_line_samples(void **state)
{
    (void)state;
    const char *l1 = "{\"metric\":{\"__name__\":\"m\",\"timestamps\":\"x\"},\"values\":[1,NaN,3],"
                     "\"timestamps\":[1000, 2000 ,3000]}\n";
    assert_int_equal(cli_json_line_samples(l1, strlen(l1)), 3);
    const char *l2 = "{\"metric\":{},\"values\":[],\"timestamps\":[]}";
    assert_int_equal(cli_json_line_samples(l2, strlen(l2)), 0);
    const char *l3 = "{\"metric\":{},\"timestamps\" : [5]}";
    assert_int_equal(cli_json_line_samples(l3, strlen(l3)), 1);
    assert_int_equal(cli_json_line_samples("", 0), 0);
    assert_int_equal(cli_json_line_samples("\"timestamps\"", 12), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_response),   cmocka_unit_test(test_label_limit),
        cmocka_unit_test(test_encode_request),    cmocka_unit_test(test_snappy),
        cmocka_unit_test(test_json_line_samples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

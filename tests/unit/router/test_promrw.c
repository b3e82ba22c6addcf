/* Unit tests for router/promrw (remote-write bodies -> series) and the
 * remote-write side of router/wbatch (wbatch_add_series): requests are
 * built here field by field with Prometheus' numbering, snappy-compressed,
 * and decoded back; every valid series comes out sorted with its samples
 * bit-exact (stale markers included), bad series are refused with a
 * reason and the rest delivered, malformed and oversized bodies are
 * refused, and added series land on topo_shard_of_labels() of their labels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <snappy-c.h>

#include "promrw.h"
#include "st_buf.h"
#include "st_err.h"
#include "st_labels.h"
#include "topo.h"
#include "wbatch.h"
#include "wire.h"

#define STALE_NAN 0x7ff0000000000002ULL

/* ---- building requests ---- */

static void put_label(st_buf_t *b, const char *name, const char *value)
{
    size_t m;
    assert_int_equal(wire_begin(b, 1, &m), 0);
    assert_int_equal(wire_put_bytes_field(b, 1, name, strlen(name)), 0);
    assert_int_equal(wire_put_bytes_field(b, 2, value, strlen(value)), 0);
    wire_end(b, m);
}

static void put_sample(st_buf_t *b, uint64_t bits, int64_t ts)
{
    size_t m;
    assert_int_equal(wire_begin(b, 2, &m), 0);
    st_buf_put_u8(b, (1 << 3) | WIRE_I64);
    st_buf_put_u64le(b, bits);
    assert_int_equal(wire_put_varint_field(b, 2, (uint64_t)ts), 0);
    wire_end(b, m);
}

static uint64_t bits_of(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

/* One TimeSeries from "name=value" pairs (in the order given) and samples. */
static void put_series(st_buf_t *b, const char *const *kv, size_t nkv, const uint64_t *vals,
                       const int64_t *ts, size_t n)
{
    size_t m;
    assert_int_equal(wire_begin(b, 1, &m), 0);
    for (size_t i = 0; i + 1 < nkv; i += 2)
        put_label(b, kv[i], kv[i + 1]);
    for (size_t i = 0; i < n; i++)
        put_sample(b, vals[i], ts[i]);
    wire_end(b, m);
}

static uint8_t *compress(const st_buf_t *b, size_t *len)
{
    size_t cap = snappy_max_compressed_length(b->len);
    uint8_t *out = malloc(cap);
    assert_non_null(out);
    assert_int_equal(snappy_compress((const char *)b->data, b->len, (char *)out, &cap), SNAPPY_OK);
    *len = cap;
    return out;
}

/* ---- collecting what the decoder delivers ---- */

typedef struct got {
    size_t nseries, nbad;
    size_t index[8];
    char first_name[8][64];
    uint32_t nlabels[8];
    size_t nsamples[8];
    uint64_t v0[8];
    int64_t ts0[8];
    size_t bad_index[8];
    char bad_reason[8][PROMRW_REASON_MAX];
    int sorted[8];
} got_t;

static int on_series(void *arg, const promrw_series_t *s)
{
    got_t *g = arg;
    size_t i = g->nseries++;
    assert_true(i < 8);
    g->index[i] = s->index;
    snprintf(g->first_name[i], sizeof g->first_name[i], "%.*s", (int)s->labels[0].name_len,
             s->labels[0].name);
    g->nlabels[i] = s->nlabels;
    g->nsamples[i] = s->n;
    g->v0[i] = bits_of(s->v[0]);
    g->ts0[i] = s->ts[0];
    const char *why;
    g->sorted[i] = st_labels_validate(s->labels, s->nlabels, &why) == 0;
    return 0;
}

static void on_bad(void *arg, size_t index, const char *reason)
{
    got_t *g = arg;
    size_t i = g->nbad++;
    assert_true(i < 8);
    g->bad_index[i] = index;
    snprintf(g->bad_reason[i], sizeof g->bad_reason[i], "%s", reason);
}

static int decode(const st_buf_t *b, got_t *g, promrw_stats_t *st)
{
    size_t clen;
    uint8_t *c = compress(b, &clen);
    promrw_t *d;
    assert_int_equal(promrw_create(1 << 20, &d), 0);
    const uint8_t *pb;
    size_t pblen;
    assert_int_equal(promrw_uncompress(d, c, clen, &pb, &pblen), 0);
    assert_int_equal(pblen, b->len);
    memset(g, 0, sizeof *g);
    int rc = promrw_decode(d, pb, pblen, on_series, on_bad, g, st);
    promrw_destroy(d);
    free(c);
    return rc;
}

static void test_series_samples_and_stale(void **state)
{
    (void)state;
    st_buf_t b;
    st_buf_init(&b);
    /* unsorted labels: delivered sorted */
    const char *kv[] = {"job", "node", "__name__", "up", "instance", "a:1"};
    uint64_t vals[] = {bits_of(1.5), STALE_NAN, bits_of(-0.0)};
    int64_t ts[] = {1700000000000, 1700000001000, 1700000002000};
    put_series(&b, kv, 6, vals, ts, 3);
    /* exemplar and histogram inside the next series, metadata at the end */
    size_t m;
    assert_int_equal(wire_begin(&b, 1, &m), 0);
    put_label(&b, "__name__", "x");
    put_label(&b, "empty", ""); /* dropped */
    put_sample(&b, STALE_NAN, 5);
    assert_int_equal(wire_put_bytes_field(&b, 3, "\x0a\x00", 2), 0); /* exemplar */
    assert_int_equal(wire_put_bytes_field(&b, 4, "", 0), 0);         /* histogram */
    wire_end(&b, m);
    assert_int_equal(wire_put_bytes_field(&b, 3, "\x08\x01", 2), 0); /* metadata */
    got_t g;
    promrw_stats_t st;
    assert_int_equal(decode(&b, &g, &st), 0);
    assert_int_equal(g.nseries, 2);
    assert_int_equal(g.nbad, 0);
    assert_string_equal(g.first_name[0], "__name__");
    assert_true(g.sorted[0]);
    assert_int_equal(g.nlabels[0], 3);
    assert_int_equal(g.nsamples[0], 3);
    assert_int_equal(g.ts0[0], 1700000000000);
    assert_int_equal(g.v0[0], bits_of(1.5));
    assert_int_equal(g.nlabels[1], 1);
    assert_int_equal(g.v0[1], STALE_NAN); /* bit-exact */
    assert_int_equal(st.series, 2);
    assert_int_equal(st.samples, 4);
    assert_int_equal(st.exemplars, 1);
    assert_int_equal(st.histograms, 1);
    assert_int_equal(st.metadata, 1);
    st_buf_deinit(&b);
}

static void test_bad_series_refused_rest_delivered(void **state)
{
    (void)state;
    st_buf_t b;
    st_buf_init(&b);
    uint64_t v[] = {bits_of(1)};
    int64_t ts[] = {1};
    const char *dup[] = {"__name__", "a", "x", "1", "x", "2"};
    const char *noname[] = {"x", "1"};
    const char *badutf[] = {"__name__", "a", "x", "\xff\xfe"};
    const char *good[] = {"__name__", "ok"};
    put_series(&b, dup, 6, v, ts, 1);
    put_series(&b, noname, 2, v, ts, 1);
    put_series(&b, badutf, 4, v, ts, 1);
    put_series(&b, good, 2, v, ts, 1);
    /* 65 labels */
    size_t m;
    assert_int_equal(wire_begin(&b, 1, &m), 0);
    put_label(&b, "__name__", "many");
    for (int i = 0; i < 64; i++) {
        char n[16];
        snprintf(n, sizeof n, "l%02d", i);
        put_label(&b, n, "v");
    }
    put_sample(&b, bits_of(1), 1);
    wire_end(&b, m);
    got_t g;
    promrw_stats_t st;
    assert_int_equal(decode(&b, &g, &st), 0);
    assert_int_equal(g.nseries, 1);
    assert_int_equal(g.index[0], 3);
    assert_int_equal(g.nbad, 4);
    assert_int_equal(st.bad_series, 4);
    assert_int_equal(g.bad_index[0], 0);
    assert_non_null(strstr(g.bad_reason[0], "duplicate label name"));
    assert_non_null(strstr(g.bad_reason[0], "series 0 (a)"));
    assert_non_null(strstr(g.bad_reason[1], "no __name__ label"));
    assert_non_null(strstr(g.bad_reason[2], "UTF-8"));
    assert_non_null(strstr(g.bad_reason[3], "too many labels"));
    st_buf_deinit(&b);
}

static void test_malformed_and_limits(void **state)
{
    (void)state;
    promrw_t *d;
    assert_int_equal(promrw_create(100, &d), 0);
    const uint8_t *pb;
    size_t pblen;
    /* not snappy: a literal longer than the body */
    const uint8_t junk[] = {0x05, 'x', 'y'};
    assert_int_equal(promrw_uncompress(d, junk, sizeof junk, &pb, &pblen), ST_ECORRUPT);
    assert_int_equal(promrw_uncompress(d, (const uint8_t *)"", 0, &pb, &pblen), ST_ECORRUPT);
    /* a huge preamble is refused before anything is allocated */
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 'a'};
    assert_int_equal(promrw_uncompress(d, huge, sizeof huge, &pb, &pblen), ST_ELIMIT);
    /* inflates past the limit: refused from the preamble */
    st_buf_t big;
    st_buf_init(&big);
    for (int i = 0; i < 200; i++)
        st_buf_put_u8(&big, 0);
    size_t clen;
    uint8_t *c = compress(&big, &clen);
    assert_int_equal(promrw_uncompress(d, c, clen, &pb, &pblen), ST_ELIMIT);
    free(c);
    /* a truncated protobuf */
    st_buf_t b;
    st_buf_init(&b);
    const char *kv[] = {"__name__", "a"};
    uint64_t v[] = {bits_of(1)};
    int64_t ts[] = {1};
    put_series(&b, kv, 2, v, ts, 1);
    got_t g = {0};
    promrw_stats_t st;
    assert_int_equal(promrw_decode(d, b.data, b.len - 1, on_series, on_bad, &g, &st), ST_ECORRUPT);
    assert_int_equal(g.nseries, 0);
    assert_int_equal(promrw_decode(d, b.data, b.len, on_series, on_bad, &g, &st), 0);
    assert_int_equal(g.nseries, 1);
    promrw_destroy(d);
    st_buf_deinit(&b);
    st_buf_deinit(&big);
}

/* ---- wbatch_add_series ---- */

static void test_wbatch_add_series_places_and_retains(void **state)
{
    (void)state;
    topo_t *t;
    char err[256];
    assert_int_equal(
        topo_load_string("[cluster]\nshards = 16\nreplication_factor = 1\n"
                         "[node \"n1\"]\nrpc = 127.0.0.1:7001\nhttp = 127.0.0.1:8001\n"
                         "[node \"n2\"]\nrpc = 127.0.0.1:7002\nhttp = 127.0.0.1:8002\n",
                         NULL, &t, err, sizeof err),
        0);
    wbatch_t *b;
    assert_int_equal(wbatch_create(t, &b), 0);
    wbatch_set_retention(b, 100000, 50000); /* samples before 50000 are too old */
    uint64_t total = 0;
    for (int i = 0; i < 40; i++) {
        char val[16];
        snprintf(val, sizeof val, "h%d", i);
        st_label_t l[2] = {{"__name__", "cpu", 8, 3}, {"host", val, 4, (uint32_t)strlen(val)}};
        int64_t ts[3] = {60000, 70000, 80000};
        double v[3] = {1, 2, 3};
        assert_int_equal(wbatch_add_series(b, (uint64_t)i, l, 2, ts, v, 3), 0);
        /* the same series again in the same request: one entry */
        assert_int_equal(wbatch_add_series(b, (uint64_t)i, l, 2, ts + 2, v + 2, 1), 0);
        total += 4;
    }
    st_label_t old[1] = {{"__name__", "old", 8, 3}};
    int64_t ots[2] = {10000, 90000};
    double ov[2] = {1, 2};
    assert_int_equal(wbatch_add_series(b, 40, old, 1, ots, ov, 2), 0);
    wbatch_reject(b, 41, "series 41: refused");
    assert_int_equal(wbatch_finish(b), 0);
    assert_int_equal(wbatch_lines_ok(b), 40); /* an item counts once, however many calls */
    assert_int_equal(wbatch_lines_bad(b), 2);
    assert_int_equal(wbatch_lines_too_old(b), 1);
    size_t nrej;
    const wbatch_rejected_t *rej = wbatch_rejected(b, &nrej);
    assert_int_equal(nrej, 2);
    assert_int_equal(rej[0].line, 40);
    assert_non_null(strstr(rej[0].reason, "older than the retention"));
    /* decode every shard entry: each series on its shard, samples counted */
    size_t nsh;
    const wbatch_shard_t *sh = wbatch_shards(b, &nsh);
    uint64_t samples = 0, series = 0;
    for (size_t i = 0; i < nsh; i++) {
        const uint8_t *p = wbatch_data(b) + sh[i].off, *end = p + sh[i].len;
        wire_field_t f;
        assert_int_equal(wire_next(&p, end, &f), 1); /* NodeWrite.shards */
        const uint8_t *q = f.data, *qend = f.data + f.len;
        while (wire_next(&q, qend, &f) == 1) {
            if (f.num != WIRE_WRITE_REQUEST_SERIES)
                continue;
            wire_series_t s;
            assert_int_equal(wire_series_decode(f.data, f.len, &s), 0);
            assert_int_equal(topo_shard_of_labels(t, s.labels, s.nlabels), sh[i].shard);
            samples += s.nvals;
            series++;
        }
    }
    assert_int_equal(series, 41);
    assert_int_equal(samples, total + 1); /* the old series keeps its recent sample */
    wbatch_destroy(b);
    topo_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_series_samples_and_stale),
        cmocka_unit_test(test_bad_series_refused_rest_delivered),
        cmocka_unit_test(test_malformed_and_limits),
        cmocka_unit_test(test_wbatch_add_series_places_and_retains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for router/wbatch: line protocol -> per-shard NodeWrite
 * entries. Every series must land on topo_shard_of_labels() of its labels
 * (the one documented placement rule), in both sharding modes, whatever the
 * measurements, fields, tag order and escapes; samples of one series are
 * grouped in body order; rejected lines are kept with their reason; series
 * references (a series sent before goes as its reference alone, and with
 * its labels again on demand). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lp.h"
#include "st_err.h"
#include "st_labels.h"
#include "topo.h"
#include "wbatch.h"
#include "wire.h"

#define NODES3                                                                                     \
    "[node \"n1\"]\nrpc = 127.0.0.1:7001\nhttp = 127.0.0.1:8001\n"                                 \
    "[node \"n2\"]\nrpc = 127.0.0.1:7002\nhttp = 127.0.0.1:8002\n"                                 \
    "[node \"n3\"]\nrpc = 127.0.0.1:7003\nhttp = 127.0.0.1:8003\n"

static const char *INI_SERIES = "[cluster]\nshards = 16\nreplication_factor = 2\n" NODES3;
static const char *INI_METRIC =
    "[cluster]\nshards = 16\nreplication_factor = 2\nsharding = metric\n" NODES3;

/* What a body turned into, decoded back from the wire. */
typedef struct seen {
    uint64_t series, samples;
    uint32_t nshards_hit;
} seen_t;

static topo_t *load(const char *ini)
{
    topo_t *t;
    char err[256];
    assert_int_equal(topo_load_string(ini, NULL, &t, err, sizeof err), 0);
    return t;
}

static wbatch_t *parse(const topo_t *t, const char *body)
{
    lp_opts_t o = {.series = 1, .names_only = 1}; /* the router's mode */
    lp_parser_t *p;
    assert_int_equal(lp_parser_create(&o, &p), 0);
    lp_parser_set_precision(p, LP_PREC_MS);
    lp_parser_set_default_ts(p, 1000);
    wbatch_t *b;
    assert_int_equal(wbatch_create(t, &b), 0);
    assert_int_equal(wbatch_parse(b, p, body, strlen(body)), 0);
    lp_parser_destroy(p);
    return b;
}

/* Decode every shard entry; check each series sits on the shard the
 * topology's placement function gives its labels. */
static void check_placement(const topo_t *t, const wbatch_t *b, seen_t *out)
{
    memset(out, 0, sizeof *out);
    size_t n;
    const wbatch_shard_t *sh = wbatch_shards(b, &n);
    const uint8_t *data = wbatch_data(b);
    uint32_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            assert_true(sh[i].shard > prev); /* ascending, one entry per shard */
        prev = sh[i].shard;
        const uint8_t *p = data + sh[i].off, *end = p + sh[i].len;
        wire_field_t f;
        assert_int_equal(wire_next(&p, end, &f), 1); /* NodeWrite.shards */
        assert_int_equal(f.num, 1);
        assert_int_equal(f.type, WIRE_LEN);
        assert_ptr_equal(f.data + f.len, end);
        const uint8_t *q = f.data, *qend = f.data + f.len;
        int64_t shard = -1;
        uint64_t nseries = 0;
        while (wire_next(&q, qend, &f) == 1) {
            if (f.num == 1 && f.type == WIRE_VARINT) {
                shard = (int64_t)f.u;
                continue;
            }
            assert_int_equal(f.num, 2);
            wire_series_t s;
            assert_int_equal(wire_series_decode(f.data, f.len, &s), 0);
            assert_int_equal(shard, sh[i].shard);
            assert_int_equal(topo_shard_of_labels(t, s.labels, s.nlabels), sh[i].shard);
            out->samples += s.nvals;
            nseries++;
        }
        assert_true(nseries > 0);
        out->series += nseries;
        out->nshards_hit++;
    }
}

static const char *MIXED = "cpu,host=a,region=eu usage_user=1,usage_system=2,usage_idle=3 1000\n"
                           "cpu,region=eu,host=a usage_user=4 2000\n" /* same tags, other order */
                           "mem,host=a used=10i,free=20u,ok=t,note=\"x\" 1000\n"
                           "disk,path=/var\\ log,dev=sd\\,a,x\\=y=z\\ z io=1.5\n" /* escapes */
                           "net,host=b bytes=7 3000\n"
                           "cpu,host=b,region=us usage_user=5 1000\n";

static void test_mixed_series_placement(void **state)
{
    (void)state;
    const char *inis[] = {INI_SERIES, INI_METRIC};
    for (size_t k = 0; k < 2; k++) {
        topo_t *t = load(inis[k]);
        wbatch_t *b = parse(t, MIXED);
        assert_int_equal(wbatch_lines_ok(b), 6);
        assert_int_equal(wbatch_lines_bad(b), 0);
        seen_t s;
        check_placement(t, b, &s);
        /* cpu{a}: user (2 samples), system, idle; mem: used, free, ok (the
         * string field makes no series); disk io; net bytes; cpu{b} user */
        assert_int_equal(s.series, 9);
        assert_int_equal(s.samples, 10);
        wbatch_destroy(b);
        topo_destroy(t);
    }
}

/* Many series: they spread over shards (a constant shard would fail the
 * comparison with topo_shard_of_labels, as would any other hash). */
static void test_many_series_placement(void **state)
{
    (void)state;
    const char *inis[] = {INI_SERIES, INI_METRIC};
    for (size_t k = 0; k < 2; k++) {
        topo_t *t = load(inis[k]);
        size_t cap = 1 << 16, len = 0;
        char *body = malloc(cap);
        assert_non_null(body);
        for (int h = 0; h < 200; h++)
            len += (size_t)snprintf(body + len, cap - len, "m%d,host=h%d,dc=d%d f1=%d,f2=%d %d\n",
                                    h % 7, h, h % 3, h, h, 1000 + h);
        wbatch_t *b = parse(t, body);
        seen_t s;
        check_placement(t, b, &s);
        assert_int_equal(s.series, 400);
        assert_int_equal(s.samples, 400);
        assert_true(s.nshards_hit > 4);
        wbatch_destroy(b);
        free(body);
        topo_destroy(t);
    }
}

/* Call fn on every series of every shard entry of b, decoded. */
static void each_series(const wbatch_t *b, void (*fn)(void *arg, const wire_series_t *s), void *arg)
{
    size_t n;
    const wbatch_shard_t *sh = wbatch_shards(b, &n);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = wbatch_data(b) + sh[i].off, *end = p + sh[i].len;
        wire_field_t f;
        assert_int_equal(wire_next(&p, end, &f), 1);
        const uint8_t *q = f.data, *qend = f.data + f.len;
        while (wire_next(&q, qend, &f) == 1) {
            if (f.num != 2)
                continue;
            wire_series_t s;
            assert_int_equal(wire_series_decode(f.data, f.len, &s), 0);
            fn(arg, &s);
        }
    }
}

/* One series' samples are one SeriesSamples, in body order. */
static void grouping_order_series(void *arg, const wire_series_t *s)
{
    int i_name = st_labels_find(s->labels, s->nlabels, ST_METRIC_LABEL);
    assert_true(i_name >= 0);
    if (s->labels[i_name].value_len != 5 || memcmp(s->labels[i_name].value, "cpu_v", 5))
        return;
    int64_t ts[8];
    double v[8];
    size_t ns;
    assert_int_equal(wire_series_samples(s, ts, v, 8, &ns), 0);
    assert_int_equal(ns, 3);
    assert_int_equal(ts[0], 30);
    assert_int_equal(ts[1], 10);
    assert_int_equal(ts[2], 20);
    assert_true(v[0] == 3 && v[1] == 1 && v[2] == 2);
    (*(int *)arg)++;
}

static void test_grouping_order(void **state)
{
    (void)state;
    topo_t *t = load(INI_SERIES);
    wbatch_t *b = parse(t, "cpu,host=a v=3 30\ncpu,host=a v=1 10\nother v=9 5\n"
                           "cpu,host=a v=2 20\n");
    int found = 0;
    each_series(b, grouping_order_series, &found);
    assert_int_equal(found, 1);
    wbatch_destroy(b);
    topo_destroy(t);
}

/* Points of one tagset with their fields in other orders, some missing,
 * some new: every sample lands in its own series, in body order, and the
 * labels stay sorted (a tag before __name__, one after). */
static const struct {
    const char *name;
    size_t n;
    double v[4];
    int64_t ts[4];
} FIELD_ORDERS[] = {{"cpu_a", 4, {1, 4, 6, 8}, {10, 20, 30, 40}},
                    {"cpu_b", 3, {2, 3, 7}, {10, 20, 30}},
                    {"cpu_c", 1, {5}, {30}}};

static void field_orders_series(void *arg, const wire_series_t *s)
{
    int *found = arg;
    assert_int_equal(s->nlabels, 3);
    assert_memory_equal(s->labels[0].name, "Zone", 4);
    assert_memory_equal(s->labels[1].name, ST_METRIC_LABEL, 8);
    assert_memory_equal(s->labels[2].name, "host", 4);
    int64_t ts[8];
    double v[8];
    size_t ns;
    assert_int_equal(wire_series_samples(s, ts, v, 8, &ns), 0);
    for (size_t k = 0; k < 3; k++) {
        if (s->labels[1].value_len != 5 || memcmp(s->labels[1].value, FIELD_ORDERS[k].name, 5))
            continue;
        found[k]++;
        assert_int_equal(ns, FIELD_ORDERS[k].n);
        for (size_t x = 0; x < ns; x++) {
            assert_true(v[x] == FIELD_ORDERS[k].v[x]);
            assert_int_equal(ts[x], FIELD_ORDERS[k].ts[x]);
        }
    }
}

static void test_field_orders(void **state)
{
    (void)state;
    topo_t *t = load(INI_SERIES);
    wbatch_t *b = parse(t, "cpu,host=a,Zone=z a=1,b=2 10\ncpu,host=a,Zone=z b=3,a=4 20\n"
                           "cpu,Zone=z,host=a c=5,a=6,b=7 30\ncpu,host=a,Zone=z a=8 40\n");
    int found[3] = {0};
    each_series(b, field_orders_series, found);
    for (size_t k = 0; k < 3; k++)
        assert_int_equal(found[k], 1);
    wbatch_destroy(b);
    topo_destroy(t);
}

static void test_rejected(void **state)
{
    (void)state;
    topo_t *t = load(INI_SERIES);
    wbatch_t *b = parse(t, "good v=1 1\nbad line\ngood2 v=2 2\n,x=1 v=1\n");
    assert_int_equal(wbatch_lines_ok(b), 2);
    assert_int_equal(wbatch_lines_bad(b), 2);
    size_t n;
    const wbatch_rejected_t *r = wbatch_rejected(b, &n);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].line, 2);
    assert_int_equal(r[1].line, 4);
    assert_true(r[0].reason[0] != '\0');
    seen_t s;
    check_placement(t, b, &s);
    assert_int_equal(s.series, 2);
    wbatch_destroy(b);

    /* more bad lines than are kept: all counted, WBATCH_MAX_REJECTED kept */
    size_t cap = 64 * (WBATCH_MAX_REJECTED + 10), len = 0;
    char *body = malloc(cap);
    assert_non_null(body);
    for (int i = 0; i < WBATCH_MAX_REJECTED + 10; i++)
        len += (size_t)snprintf(body + len, cap - len, "nofield%d\n", i);
    b = parse(t, body);
    assert_int_equal(wbatch_lines_bad(b), WBATCH_MAX_REJECTED + 10);
    wbatch_rejected(b, &n);
    assert_int_equal(n, WBATCH_MAX_REJECTED);
    wbatch_shards(b, &n);
    assert_int_equal(n, 0);
    wbatch_destroy(b);
    free(body);
    topo_destroy(t);
}

/* Lines older than now - retention are rejected with their timestamp and
 * the retention named; the others are placed as usual; retention 0 keeps
 * everything. */
static void test_too_old(void **state)
{
    (void)state;
    topo_t *t = load(INI_SERIES);
    lp_opts_t o = {.series = 1};
    lp_parser_t *p;
    assert_int_equal(lp_parser_create(&o, &p), 0);
    lp_parser_set_precision(p, LP_PREC_MS);
    int64_t now = 1700000000000, day = 86400000;
    lp_parser_set_default_ts(p, now);
    const char *buf = "old v=1 1451606400000\n"   /* 2016-01-01 */
                      "new v=2 1699999999000\n"   /* now - 1 s */
                      "edge v=3 1697408000000\n"  /* now - 30d: kept */
                      "older v=4 1697407999999\n" /* 1 ms before */
                      "dflt v=5\nbad\n";
    wbatch_t *b;
    assert_int_equal(wbatch_create(t, &b), 0);
    wbatch_set_retention(b, now, 30 * day);
    assert_int_equal(wbatch_parse(b, p, buf, strlen(buf)), 0);
    assert_int_equal(wbatch_lines_ok(b), 3);
    assert_int_equal(wbatch_lines_bad(b), 3);
    assert_int_equal(wbatch_lines_too_old(b), 2);
    size_t n;
    const wbatch_rejected_t *r = wbatch_rejected(b, &n);
    assert_int_equal(n, 3);
    assert_int_equal(r[0].line, 1);
    assert_string_equal(r[0].reason,
                        "timestamp 2016-01-01T00:00:00Z is older than the retention (30d)");
    assert_int_equal(r[1].line, 4);
    assert_string_equal(r[1].reason,
                        "timestamp 2023-10-15T22:13:19.999Z is older than the retention (30d)");
    assert_int_equal(r[2].line, 6);
    seen_t s;
    check_placement(t, b, &s);
    assert_int_equal(s.series, 3);
    wbatch_destroy(b);
    /* retention 0: forever */
    assert_int_equal(wbatch_create(t, &b), 0);
    wbatch_set_retention(b, now, 0);
    assert_int_equal(wbatch_parse(b, p, buf, strlen(buf)), 0);
    assert_int_equal(wbatch_lines_ok(b), 5);
    assert_int_equal(wbatch_lines_too_old(b), 0);
    wbatch_destroy(b);
    lp_parser_destroy(p);
    topo_destroy(t);
}

/* Lines further ahead than now + max_future are rejected with their
 * timestamp and the horizon named; the line at the horizon is kept;
 * max_future 0 accepts any timestamp. */
static void test_too_far_future(void **state)
{
    (void)state;
    topo_t *t = load(INI_SERIES);
    lp_opts_t o = {.series = 1};
    lp_parser_t *p;
    assert_int_equal(lp_parser_create(&o, &p), 0);
    lp_parser_set_precision(p, LP_PREC_MS);
    int64_t now = 1700000000000, day = 86400000;
    lp_parser_set_default_ts(p, now);
    const char *buf = "far v=1 9000000000000\n"  /* 2255 */
                      "ok v=2 1700000001000\n"   /* now + 1 s */
                      "edge v=3 1700086400000\n" /* now + 1d: kept */
                      "over v=4 1700086400001\n" /* 1 ms past */
                      "old v=5 1451606400000\n"  /* older than the retention */
                      "dflt v=6\n";
    wbatch_t *b;
    assert_int_equal(wbatch_create(t, &b), 0);
    wbatch_set_retention(b, now, 30 * day);
    wbatch_set_max_future(b, now, day);
    assert_int_equal(wbatch_parse(b, p, buf, strlen(buf)), 0);
    assert_int_equal(wbatch_lines_ok(b), 3);
    assert_int_equal(wbatch_lines_bad(b), 3);
    assert_int_equal(wbatch_lines_too_far_future(b), 2);
    assert_int_equal(wbatch_lines_too_old(b), 1);
    size_t n;
    const wbatch_rejected_t *r = wbatch_rejected(b, &n);
    assert_int_equal(n, 3);
    assert_int_equal(r[0].line, 1);
    assert_string_equal(r[0].reason, "timestamp 2255-03-14T16:00:00Z is more than 1d ahead of "
                                     "the server clock (max_future)");
    assert_int_equal(r[1].line, 4);
    assert_string_equal(r[1].reason, "timestamp 2023-11-15T22:13:20.001Z is more than 1d ahead "
                                     "of the server clock (max_future)");
    assert_int_equal(r[2].line, 5);
    seen_t s;
    check_placement(t, b, &s);
    assert_int_equal(s.series, 3);
    wbatch_destroy(b);
    /* max_future 0: any timestamp */
    assert_int_equal(wbatch_create(t, &b), 0);
    wbatch_set_max_future(b, now, 0);
    assert_int_equal(wbatch_parse(b, p, buf, strlen(buf)), 0);
    assert_int_equal(wbatch_lines_ok(b), 6);
    assert_int_equal(wbatch_lines_too_far_future(b), 0);
    wbatch_destroy(b);
    lp_parser_destroy(p);
    topo_destroy(t);
}

/* With a piece size, a shard's series are cut into several entries of
 * about that size, in shard order, and together they hold every series
 * and sample exactly once, each on its shard. */
static void test_pieces(void **state)
{
    (void)state;
    topo_t *t = load(INI_SERIES);
    size_t cap = 64 * 5000, len = 0;
    char *body = malloc(cap);
    assert_non_null(body);
    for (int i = 0; i < 5000; i++)
        len += (size_t)snprintf(body + len, cap - len, "pc,s=%05d v=%d,w=2 %d\n", i, i, 1000 + i);
    lp_opts_t o = {.series = 1};
    lp_parser_t *p;
    assert_int_equal(lp_parser_create(&o, &p), 0);
    lp_parser_set_precision(p, LP_PREC_MS);
    wbatch_t *b;
    assert_int_equal(wbatch_create(t, &b), 0);
    wbatch_set_piece_max(b, 4096);
    assert_int_equal(wbatch_parse(b, p, body, len), 0);
    size_t n;
    const wbatch_shard_t *sh = wbatch_shards(b, &n);
    assert_true(n > 16); /* more entries than shards */
    uint64_t series = 0, samples = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            assert_true(sh[i].shard >= sh[i - 1].shard);
        assert_true(sh[i].len < 4096 + 200); /* closes once over the size */
        const uint8_t *q = wbatch_data(b) + sh[i].off, *end = q + sh[i].len;
        wire_field_t f;
        assert_int_equal(wire_next(&q, end, &f), 1);
        const uint8_t *r = f.data, *rend = f.data + f.len;
        while (wire_next(&r, rend, &f) == 1) {
            if (f.num != 2)
                continue;
            wire_series_t ws;
            assert_int_equal(wire_series_decode(f.data, f.len, &ws), 0);
            assert_int_equal(topo_shard_of_labels(t, ws.labels, ws.nlabels), sh[i].shard);
            series++;
            samples += ws.nvals;
        }
    }
    assert_int_equal(series, 10000);
    assert_int_equal(samples, 10000);
    wbatch_destroy(b);
    lp_parser_destroy(p);
    free(body);
    topo_destroy(t);
}

/* One batch of body with references r and pieces of about 4096 bytes. */
static wbatch_t *parse_refs(const topo_t *t, wbatch_refs_t *r, const char *body, size_t len)
{
    lp_opts_t o = {.series = 1, .names_only = 1};
    lp_parser_t *p;
    assert_int_equal(lp_parser_create(&o, &p), 0);
    lp_parser_set_precision(p, LP_PREC_MS);
    wbatch_t *b;
    assert_int_equal(wbatch_create(t, &b), 0);
    wbatch_set_piece_max(b, 4096);
    wbatch_set_refs(b, r);
    assert_int_equal(wbatch_parse(b, p, body, len), 0);
    lp_parser_destroy(p);
    return b;
}

/* A series' view in a piece: its reference, labels (if sent), samples. */
typedef struct rseries {
    uint8_t ref[WIRE_REF_LEN];
    size_t nlabels, nvals;
    uint32_t shard;
    char host[16];
    double v0;
} rseries_t;

/* Every series of every piece (labels or not), in order; returns how many. */
static size_t walk(const wbatch_t *b, const uint8_t *const *data, const size_t *len, size_t n,
                   rseries_t *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *q = data[i], *end = q + len[i];
        wire_field_t f;
        assert_int_equal(wire_next(&q, end, &f), 1);
        const uint8_t *r = f.data, *rend = f.data + f.len;
        uint32_t shard = UINT32_MAX;
        while (wire_next(&r, rend, &f) == 1) {
            if (f.num == 1) {
                shard = (uint32_t)f.u;
                continue;
            }
            wire_series_t ws;
            assert_int_equal(wire_series_decode(f.data, f.len, &ws), 0);
            assert_non_null(ws.ref);
            assert_true(k < cap);
            rseries_t *x = &out[k++];
            memcpy(x->ref, ws.ref, WIRE_REF_LEN);
            x->nlabels = ws.nlabels;
            x->nvals = ws.nvals;
            x->shard = shard;
            x->host[0] = 0;
            for (size_t l = 0; l < ws.nlabels; l++)
                if (ws.labels[l].name_len == 1 && ws.labels[l].name[0] == 'h')
                    snprintf(x->host, sizeof x->host, "%.*s", (int)ws.labels[l].value_len,
                             ws.labels[l].value);
            memcpy(&x->v0, ws.vals, 8);
        }
    }
    (void)b;
    return k;
}

/* Series references: a first batch sends every series with labels and a
 * reference; a second batch of the same series sends references alone (a
 * second router, another seed, sends labels again); wbatch_piece_labels
 * gives every piece again with labels and the same references and
 * samples; pieces stay about as large in series as with labels; a full
 * set is cleared (labels again). */
static void test_refs(void **state)
{
    (void)state;
    topo_t *t = load(INI_SERIES);
    enum { N = 600 };
    size_t cap = 64 * N, len = 0;
    char *body = malloc(cap);
    assert_non_null(body);
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(body + len, cap - len, "m,h=h%04d,dc=eu a=%d,b=2 %d\n", i, i,
                                1000 + i);
    wbatch_refs_t *r, *r2;
    assert_int_equal(wbatch_refs_create(42, 1u << 20, &r), 0);
    assert_int_equal(wbatch_refs_create(43, 1u << 20, &r2), 0);
    static rseries_t one[2 * N], two[2 * N], lab[2 * N], other[2 * N];
    const uint8_t *data[256];
    size_t lens[256], n;
    wbatch_t *b1 = parse_refs(t, r, body, len);
    const wbatch_shard_t *sh = wbatch_shards(b1, &n);
    assert_true(n < 256);
    for (size_t i = 0; i < n; i++) {
        data[i] = wbatch_data(b1) + sh[i].off;
        lens[i] = sh[i].len;
    }
    size_t n1 = n;
    assert_int_equal(walk(b1, data, lens, n, one, 2 * N), 2 * N);
    for (size_t i = 0; i < 2 * N; i++)
        assert_int_equal(one[i].nlabels, 3); /* __name__, dc, h */
    assert_int_equal(wbatch_refs_count(r), 2 * N);
    wbatch_t *b2 = parse_refs(t, r, body, len);
    sh = wbatch_shards(b2, &n);
    assert_true(n >= n1 - 1 && n <= n1 + 1); /* pieces hold as many series */
    for (size_t i = 0; i < n; i++) {
        data[i] = wbatch_data(b2) + sh[i].off;
        lens[i] = sh[i].len;
    }
    assert_int_equal(walk(b2, data, lens, n, two, 2 * N), 2 * N);
    for (size_t i = 0; i < 2 * N; i++) { /* same order, same references, no labels */
        assert_int_equal(two[i].nlabels, 0);
        assert_memory_equal(two[i].ref, one[i].ref, WIRE_REF_LEN);
        assert_int_equal(two[i].nvals, 1);
        assert_true(two[i].v0 == one[i].v0);
        if (i)
            assert_memory_not_equal(two[i].ref, two[i - 1].ref, WIRE_REF_LEN);
    }
    for (size_t i = 0; i < n; i++)
        assert_int_equal(wbatch_piece_labels(b2, i, &data[i], &lens[i]), 0);
    assert_int_equal(walk(b2, data, lens, n, lab, 2 * N), 2 * N);
    for (size_t i = 0; i < 2 * N; i++) { /* labels back, as the first batch sent them */
        assert_int_equal(lab[i].nlabels, 3);
        assert_string_equal(lab[i].host, one[i].host);
        assert_int_equal(lab[i].shard, one[i].shard);
        assert_memory_equal(lab[i].ref, one[i].ref, WIRE_REF_LEN);
        assert_true(lab[i].v0 == one[i].v0);
    }
    wbatch_t *b3 = parse_refs(t, r2, body, len); /* another router: labels, other references */
    sh = wbatch_shards(b3, &n);
    for (size_t i = 0; i < n; i++) {
        data[i] = wbatch_data(b3) + sh[i].off;
        lens[i] = sh[i].len;
    }
    assert_int_equal(walk(b3, data, lens, n, other, 2 * N), 2 * N);
    for (size_t i = 0; i < 2 * N; i++) {
        assert_int_equal(other[i].nlabels, 3);
        assert_memory_not_equal(other[i].ref, one[i].ref, WIRE_REF_LEN);
    }
    wbatch_t *plain;
    assert_int_equal(wbatch_create(t, &plain), 0);
    assert_int_equal(wbatch_piece_labels(plain, 0, &data[0], &lens[0]), ST_EINVAL);
    wbatch_destroy(plain);
    wbatch_destroy(b1);
    wbatch_destroy(b2);
    wbatch_destroy(b3);
    /* a set of at most 100: full, then cleared: labels again for some */
    wbatch_refs_t *small;
    assert_int_equal(wbatch_refs_create(42, 100, &small), 0);
    wbatch_destroy(parse_refs(t, small, body, len));
    assert_true(wbatch_refs_count(small) <= 100);
    wbatch_refs_destroy(small);
    wbatch_refs_destroy(r);
    wbatch_refs_destroy(r2);
    free(body);
    topo_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixed_series_placement),
        cmocka_unit_test(test_many_series_placement),
        cmocka_unit_test(test_grouping_order),
        cmocka_unit_test(test_field_orders),
        cmocka_unit_test(test_rejected),
        cmocka_unit_test(test_too_old),
        cmocka_unit_test(test_too_far_future),
        cmocka_unit_test(test_pieces),
        cmocka_unit_test(test_refs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for router/import: golden inputs for JSON lines, Prometheus
 * text and CSV (good lines decoded exactly, bad lines named with their
 * reason, decoding going on after them), the column spec, CSV rows written
 * and read back, and special values bit-exact through export_json. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "export_json.h"
#include "import.h"
#include "st_err.h"
#include "topo.h"
#include "wbatch.h"
#include "wire.h"

/* What a body decoded to, as text: one "line: labels ts=v ts=v" per series
 * (values as hex bits) and "line: ERR reason" per bad line. */
typedef struct out {
    st_buf_t b;
} out_t;

static int on_series(void *arg, uint64_t line, const st_label_t *l, size_t nl, const int64_t *ts,
                     const double *v, size_t n)
{
    out_t *o = arg;
    char tmp[128];
    int k = snprintf(tmp, sizeof tmp, "%llu:", (unsigned long long)line);
    st_buf_append(&o->b, tmp, (size_t)k);
    for (size_t i = 0; i < nl; i++) {
        k = snprintf(tmp, sizeof tmp, " %.*s=%.*s", (int)l[i].name_len, l[i].name,
                     (int)l[i].value_len, l[i].value);
        st_buf_append(&o->b, tmp, (size_t)k);
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t u;
        memcpy(&u, &v[i], 8);
        k = snprintf(tmp, sizeof tmp, " %lld@%016llx", (long long)ts[i], (unsigned long long)u);
        st_buf_append(&o->b, tmp, (size_t)k);
    }
    st_buf_put_u8(&o->b, '\n');
    return 0;
}

static void on_error(void *arg, uint64_t line, const char *reason)
{
    out_t *o = arg;
    char tmp[300];
    int k = snprintf(tmp, sizeof tmp, "%llu: ERR %s\n", (unsigned long long)line, reason);
    st_buf_append(&o->b, tmp, (size_t)k);
}

static char *run(int fmt, const char *body, const char *spec, int *bad)
{
    imp_t *d;
    assert_int_equal(imp_create(&d), 0);
    out_t o;
    st_buf_init(&o.b);
    imp_csv_spec_t *sp = NULL;
    if (fmt == 2) {
        char err[200];
        assert_int_equal(imp_csv_spec_parse(spec, strlen(spec), 0, &sp, err, sizeof err), 0);
    }
    int rc = fmt == 0   ? imp_json(d, body, strlen(body), on_series, on_error, &o)
             : fmt == 1 ? imp_prom(d, body, strlen(body), 777, on_series, on_error, &o)
                        : imp_csv(d, sp, body, strlen(body), 777, on_series, on_error, &o);
    assert_true(rc >= 0);
    *bad = rc;
    st_buf_put_u8(&o.b, 0);
    imp_csv_spec_free(sp);
    imp_destroy(d);
    char *s = strdup((char *)o.b.data);
    st_buf_deinit(&o.b);
    return s;
}

static void expect(int fmt, const char *body, const char *spec, const char *want, int want_bad)
{
    int bad;
    char *got = run(fmt, body, spec, &bad);
    if (strcmp(got, want) != 0 || bad != want_bad) {
        print_message("got (%d bad):\n%s\nwant (%d bad):\n%s\n", bad, got, want_bad, want);
        fail();
    }
    free(got);
}

static void test_json_golden(void **state)
{
    (void)state;
    expect(
        0,
        "{\"metric\":{\"__name__\":\"m\",\"b\":\"2\",\"a\":\"1\"},\"values\":[1.5,2],"
        "\"timestamps\":[1000,2000]}\n"
        "\n"
        " { \"timestamps\" : [ 5 ] , \"values\" : [ -0 ] , \"metric\" : { \"__name__\" : "
        "\"x\\u00e9\\n\", \"e\":\"\" } }\r\n"
        "{\"metric\":{\"__name__\":\"m\"},\"values\":[1],\"timestamps\":[1,2]}\n"
        "{\"metric\":{\"a\":\"b\"},\"values\":[1],\"timestamps\":[1]}\n"
        "{\"metric\":{\"__name__\":\"m\"},\"values\":[tru],\"timestamps\":[1]}\n"
        "{\"metric\":{\"__name__\":\"m\"},\"values\":[1],\"timestamps\":[1]} x\n"
        "{\"metric\":{\"__name__\":\"m\",\"__name__\":\"n\"},\"values\":[1],\"timestamps\":[1]}\n"
        "{\"metric\":{\"__name__\":\"m\"},\"values\":[NaN,Infinity,-Infinity,5e-324],"
        "\"timestamps\":[-1,0,1,9223372036854775807]}\n"
        "{\"metric\":{\"__name__\":\"m\"},\"values\":[1],\"timestamps\":[1],\"x\":1}\n"
        "{\"metric\":{\"__name__\":\"m\"},\"values\":[+Inf,-Inf,Inf],\"timestamps\":[1,2,3]}\n"
        "{\"metric\":{\"__name__\":\"m\"},\"values\":[],\"timestamps\":[]}",
        NULL,
        "1: __name__=m a=1 b=2 1000@3ff8000000000000 2000@4000000000000000\n"
        "3: __name__=x\xc3\xa9\n 5@8000000000000000\n"
        "4: ERR \"values\" has 1 items but \"timestamps\" has 2\n"
        "5: ERR no metric name (__name__)\n"
        "6: ERR invalid value 'tru' in \"values\"\n"
        "7: ERR unexpected bytes after the object\n"
        "8: ERR duplicate label name\n"
        "9: __name__=m -1@7ff8000000000001 0@7ff0000000000000 1@fff0000000000000 "
        "9223372036854775807@0000000000000001\n"
        "10: ERR unknown or repeated key \"x\" (want metric, values, timestamps)\n"
        "11: __name__=m 1@7ff0000000000000 2@fff0000000000000 3@7ff0000000000000\n",
        6);
}

static void test_prom_golden(void **state)
{
    (void)state;
    expect(1,
           "# HELP m help\n"
           "# TYPE m counter\n"
           "m{b=\"x\\\"y\\\\z\\n\",a=\"1\",} 1.5 1000\n"
           "  up 1\n"
           "m2 +Inf\n"
           "m3 -inf 5\n"
           "m4 NaN\n"
           "m{a=\"1\"}\n"
           "m{a=1} 1\n"
           "9m 1\n"
           "m 1 2 3\n"
           "m{a=\"\\t\"} 1\n"
           "m 0x10\n"
           "m 1e999\n"
           "x:y_z{quantile=\"0.99\"} 3 -5\n",
           NULL,
           "3: __name__=m a=1 b=x\"y\\z\n 1000@3ff8000000000000\n"
           "4: __name__=up 777@3ff0000000000000\n"
           "5: __name__=m2 777@7ff0000000000000\n"
           "6: __name__=m3 5@fff0000000000000\n"
           "7: __name__=m4 777@7ff8000000000001\n"
           "8: ERR no value\n"
           "9: ERR expected '\"' to open a label value\n"
           "10: ERR invalid metric name '9m 1'\n"
           "11: ERR unexpected '3' after the timestamp\n"
           "12: ERR invalid escape '\\t' in a label value (want \\\\, \\\" or \\n)\n"
           "13: ERR invalid value '0x10'\n"
           "14: ERR invalid value '1e999'\n"
           "15: __name__=x:y_z quantile=0.99 -5@4008000000000000\n",
           7);
}

static void test_csv_golden(void **state)
{
    (void)state;
    const char *spec = "2:metric:ask,3:metric:bid,1:label:ticker,4:time:unix_s";
    expect(2,
           "GOOG,1.23,4.56,1700000000\n"
           "\"MS,FT\",3,,1700000000.5\n"
           "AAPL,,,1\n"
           "X,1,2\n"
           "X,1,2,abc\n"
           "X,one,2,1\n"
           "\"unterminated,1,2,1\n"
           ",7,8,-1.25\n",
           spec,
           "1: __name__=ask ticker=GOOG 1700000000000@3ff3ae147ae147ae\n"
           "1: __name__=bid ticker=GOOG 1700000000000@40123d70a3d70a3d\n"
           "2: __name__=ask ticker=MS,FT 1700000000500@4008000000000000\n"
           "4: ERR row has 3 columns; the format uses column 4\n"
           "5: ERR invalid unix_s time 'abc' in column 4\n"
           "6: ERR invalid value 'one' in column 2\n"
           "7: ERR unterminated quoted field\n"
           "8: __name__=ask -1250@401c000000000000\n"
           "8: __name__=bid -1250@4020000000000000\n",
           4);
    expect(
        2,
        "a;b,2026-11-21T19:50:45.123+01:00,5\nx,1970-01-01T00:00:00Z,1\nx,2026-13-01T00:00:00Z,1\n",
        "1:label:k,2:time:rfc3339,3:metric:m",
        "1: __name__=m k=a;b 1795287045123@4014000000000000\n"
        "2: __name__=m k=x 0@3ff0000000000000\n"
        "3: ERR invalid rfc3339 time '2026-13-01T00:00:00Z' in column 2\n",
        1);
    expect(2, "5,1700000000123456789\n", "1:metric:m,2:time:unix_ns",
           "1: __name__=m 1700000000123@4014000000000000\n", 0);
    expect(2, "5,-1\n", "1:metric:m,2:time:unix_ns", "1: __name__=m -1@4014000000000000\n", 0);
}

static void test_spec_errors(void **state)
{
    (void)state;
    const char *bad[][2] = {
        {"", "empty format"},
        {"1:label:a", "the format has no metric column"},
        {"1:metric:a,1:label:b", "column 1 is used twice"},
        {"1:metric:a,2:time:unix_x", "invalid time format 'unix_x' (unix_s, unix_ms, unix_ns, "
                                     "rfc3339)"},
        {"1:metric:a,2:time:unix_s,3:time:unix_s", "more than one time column"},
        {"0:metric:a", "invalid entry '0:metric:a': want <column>:<type>:<context> with column "
                       "1..1024"},
        {"1:gauge:a", "invalid column type 'gauge' in '1:gauge:a' (metric, label, time)"},
        {"1:metric:", "entry '1:metric:' needs a name of 1..256 bytes"},
        {"1:metric:a,2:label:__name__", "a label column cannot be __name__"},
        {"__name__,__value__", "format entries are <column>:<type>:<context>, e.g. "
                               "1:metric:price,2:label:ticker,3:time:unix_s"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        imp_csv_spec_t *sp = (imp_csv_spec_t *)1;
        char err[300];
        assert_int_equal(imp_csv_spec_parse(bad[i][0], strlen(bad[i][0]), 0, &sp, err, sizeof err),
                         ST_EINVAL);
        assert_null(sp);
        assert_string_equal(err, bad[i][1]);
    }
    imp_csv_spec_t *sp;
    char err[300];
    assert_int_equal(imp_csv_spec_parse("__name__,x:y", 12, 1, &sp, err, sizeof err), ST_EINVAL);
    assert_int_equal(imp_csv_spec_parse("__name__,__value__,__timestamp__:rfc3339,host", 45, 1, &sp,
                                        err, sizeof err),
                     0);
    imp_csv_spec_free(sp);
}

static void test_csv_rows_roundtrip(void **state)
{
    (void)state;
    st_label_t l[] = {{"__name__", "cpu", 8, 3}, {"host", "a,\"b\"", 4, 5}};
    int64_t ts[] = {1700000000123, -1500, 0};
    double v[] = {1.5, -0.0, 1e300};
    imp_csv_spec_t *sp;
    char err[200];
    st_buf_t b;
    st_buf_init(&b);
    const char *spec = "1:label:host,2:metric:mem,3:metric:cpu,4:time:unix_s";
    assert_int_equal(imp_csv_spec_parse(spec, strlen(spec), 0, &sp, err, sizeof err), 0);
    assert_int_equal(imp_csv_rows(&b, sp, l, 2, ts, v, 3), 0);
    st_buf_put_u8(&b, 0);
    assert_string_equal((char *)b.data, "\"a,\"\"b\"\"\",,1.5,1700000000.123\n"
                                        "\"a,\"\"b\"\"\",,-0,-1.500\n"
                                        "\"a,\"\"b\"\"\",,1e+300,0\n");
    /* read back with the same spec: the same samples */
    b.len--;
    expect(2, (char *)b.data, spec,
           "1: __name__=cpu host=a,\"b\" 1700000000123@3ff8000000000000\n"
           "2: __name__=cpu host=a,\"b\" -1500@8000000000000000\n"
           "3: __name__=cpu host=a,\"b\" 0@7e37e43c8800759c\n",
           0);
    imp_csv_spec_free(sp);
    st_buf_reset(&b);
    const char *vm = "__name__,__value__,__timestamp__:rfc3339,host,nope";
    assert_int_equal(imp_csv_spec_parse(vm, strlen(vm), 1, &sp, err, sizeof err), 0);
    assert_int_equal(imp_csv_rows(&b, sp, l, 2, ts, v, 2), 0);
    st_buf_put_u8(&b, 0);
    assert_string_equal((char *)b.data, "cpu,1.5,2023-11-14T22:13:20.123Z,\"a,\"\"b\"\"\",\n"
                                        "cpu,-0,1969-12-31T23:59:58.500Z,\"a,\"\"b\"\"\",\n");
    imp_csv_spec_free(sp);
    st_buf_deinit(&b);
}

struct cap {
    double v[16];
    int64_t ts[16];
    size_t n;
    char q[8];
};

static int capture(void *arg, uint64_t line, const st_label_t *ll, size_t nl, const int64_t *t,
                   const double *vv, size_t k)
{
    struct cap *cc = arg;
    (void)line;
    assert_int_equal(nl, 2);
    memcpy(cc->q, ll[1].value, ll[1].value_len);
    memcpy(cc->v, vv, k * 8);
    memcpy(cc->ts, t, k * 8);
    cc->n = k;
    return 0;
}

/* Every special value export_json writes comes back with the same bits
 * (NaN: the one NaN its "NaN" stands for). */
static void test_json_special_roundtrip(void **state)
{
    (void)state;
    uint64_t bits[] = {0x8000000000000000ull, 0x0000000000000001ull, 0x000fffffffffffffull,
                       0x7fefffffffffffffull, 0x7ff0000000000000ull, 0xfff0000000000000ull,
                       IMPORT_NAN_BITS,       0x3fb999999999999aull, 0x4340000000000001ull,
                       0xc3e0000000000000ull};
    size_t n = sizeof bits / sizeof bits[0];
    double v[16];
    int64_t ts[16];
    for (size_t i = 0; i < n; i++) {
        memcpy(&v[i], &bits[i], 8);
        ts[i] = (int64_t)i * 1000 - 3;
    }
    st_label_t l[] = {{"__name__", "m", 8, 1}, {"q", "\"\\\n\x01", 1, 4}};
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(export_json_line(&b, l, 2, ts, v, n), 0);
    imp_t *d;
    assert_int_equal(imp_create(&d), 0);
    struct cap c = {0};
    int rc = imp_json(d, (const char *)b.data, b.len, capture, NULL, &c);
    assert_int_equal(rc, 0);
    assert_int_equal(c.n, n);
    assert_memory_equal(c.q, "\"\\\n\x01", 4);
    for (size_t i = 0; i < n; i++) {
        uint64_t u;
        memcpy(&u, &c.v[i], 8);
        assert_int_equal(u, bits[i]);
        assert_int_equal(c.ts[i], ts[i]);
    }
    imp_destroy(d);
    st_buf_deinit(&b);
}

static void test_value_parse(void **state)
{
    (void)state;
    double v;
    const char *good[] = {"1", "-1.5", "+2", "Inf", "-inf", "+Infinity", "nan", "NaN", ".5", "1e3"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(imp_parse_value(good[i], strlen(good[i]), &v), 0);
    const char *bad[] = {"", "+", "-", "++1", "1x", "0x1p3", "infinit", "1e400", "--1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(imp_parse_value(bad[i], strlen(bad[i]), &v), ST_EPARSE);
}

/* Imported series go into a wbatch like line protocol's: each series on
 * topo_shard_of_labels() of its labels, samples grouped per series in body
 * order (a series imported on two lines is one entry), bad lines and lines
 * older than the retention rejected with their reason. */
static int to_batch(void *arg, uint64_t line, const st_label_t *l, size_t nl, const int64_t *ts,
                    const double *v, size_t n)
{
    return wbatch_add_series(arg, line, l, nl, ts, v, n);
}

static void to_batch_err(void *arg, uint64_t line, const char *reason)
{
    wbatch_reject(arg, line, reason);
}

static void test_wbatch_placement(void **state)
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
    st_buf_t body;
    st_buf_init(&body);
    for (int i = 0; i < 200; i++) {
        char line[200];
        int k = snprintf(line, sizeof line,
                         "{\"metric\":{\"__name__\":\"m%d\",\"host\":\"h%d\"},\"values\":[1,2],"
                         "\"timestamps\":[%d,%d]}\n",
                         i % 5, i % 50, 100000 + i, 200000 + i);
        st_buf_append(&body, line, (size_t)k);
    }
    const char *tail = "{\"metric\":{\"__name__\":\"old\"},\"values\":[1],\"timestamps\":[5]}\nx\n";
    st_buf_append(&body, tail, strlen(tail));
    wbatch_t *b;
    assert_int_equal(wbatch_create(t, &b), 0);
    wbatch_set_retention(b, 300000, 250000);
    imp_t *d;
    assert_int_equal(imp_create(&d), 0);
    assert_int_equal(imp_json(d, (const char *)body.data, body.len, to_batch, to_batch_err, b), 1);
    assert_int_equal(wbatch_finish(b), 0);
    assert_int_equal(wbatch_lines_ok(b), 200);
    assert_int_equal(wbatch_lines_bad(b), 2);
    assert_int_equal(wbatch_lines_too_old(b), 1);
    size_t nrej;
    const wbatch_rejected_t *rej = wbatch_rejected(b, &nrej);
    assert_int_equal(nrej, 2);
    assert_int_equal(rej[0].line, 201);
    assert_string_equal(
        rej[0].reason,
        "1 sample(s) from 1970-01-01T00:00:00.005Z are older than the retention (250s)");
    assert_int_equal(rej[1].line, 202);
    size_t n;
    const wbatch_shard_t *sh = wbatch_shards(b, &n);
    uint64_t series = 0, samples = 0;
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
            assert_int_equal(topo_shard_of_labels(t, s.labels, s.nlabels), sh[i].shard);
            int64_t ts[8];
            double v[8];
            size_t cnt;
            assert_int_equal(wire_series_samples(&s, ts, v, 8, &cnt), 0);
            assert_int_equal(cnt, 8); /* 4 lines of 2 samples: one entry */
            samples += cnt;
            series++;
        }
    }
    assert_int_equal(series, 50); /* (m i%5, h i%50): i%50 decides i%5 too */
    assert_int_equal(samples, 400);
    imp_destroy(d);
    wbatch_destroy(b);
    topo_destroy(t);
    st_buf_deinit(&body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_golden),        cmocka_unit_test(test_prom_golden),
        cmocka_unit_test(test_csv_golden),         cmocka_unit_test(test_spec_errors),
        cmocka_unit_test(test_csv_rows_roundtrip), cmocka_unit_test(test_json_special_roundtrip),
        cmocka_unit_test(test_value_parse),        cmocka_unit_test(test_wbatch_placement),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

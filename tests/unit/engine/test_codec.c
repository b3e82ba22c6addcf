/* Unit tests for node/engine/codec: round trips, mode choice, sizes, bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <float.h>
#include <math.h>

#include <cmocka.h>

#include "codec.h"
#include "codec_internal.h"
#include "st_buf.h"
#include "st_err.h"
#include "st_varint.h"

static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double rnd_unit(void)
{
    return (double)(rnd() >> 11) * 0x1p-53;
}

static double rnd_normal(void)
{
    double u1 = rnd_unit() + 0x1p-60, u2 = rnd_unit();
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

static double from_text(double x, int decimals)
{
    char t[64];
    snprintf(t, sizeof t, "%.*f", decimals, x);
    return strtod(t, NULL);
}

/*
 * Encode, peek, decode and compare bit for bit. Returns the encoded size;
 * *tsm / *vm (if not NULL) receive the chosen modes.
 */
static size_t roundtrip(const int64_t *ts, const double *v, size_t n, int *tsm, int *vm)
{
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(st_buf_put_u8(&b, 0xAB), 0); /* blocks need not start at 0 */
    assert_int_equal(codec_encode(ts, v, n, &b), 0);
    const uint8_t *p = b.data + 1;
    size_t len = b.len - 1;

    size_t pn;
    int64_t mint, maxt;
    assert_int_equal(codec_peek(p, len, &pn, &mint, &maxt), 0);
    assert_int_equal(pn, n);
    assert_true(mint == ts[0]);
    assert_true(maxt == ts[n - 1]);

    int64_t *ts2 = malloc(n * sizeof *ts2);
    double *v2 = malloc(n * sizeof *v2);
    assert_non_null(ts2);
    assert_non_null(v2);
    size_t dn = 0;
    assert_int_equal(codec_decode(p, len, ts2, v2, n, &dn), 0);
    assert_int_equal(dn, n);
    assert_memory_equal(ts2, ts, n * sizeof *ts);
    assert_memory_equal(v2, v, n * sizeof *v);
    if (n > 1)
        assert_int_equal(codec_decode(p, len, ts2, v2, n - 1, &dn), ST_ELIMIT);

    int a, c;
    assert_int_equal(codec_block_modes(p, len, &a, &c), 0);
    if (tsm)
        *tsm = a;
    if (vm)
        *vm = c;
    free(ts2);
    free(v2);
    st_buf_deinit(&b);
    return len;
}

static void fill_regular(int64_t *ts, size_t n, int64_t t0, int64_t step)
{
    for (size_t i = 0; i < n; i++)
        ts[i] = t0 + (int64_t)i * step;
}

/* TSBS devops random walk: int(state) or round(state, 2) via text. */
static void fill_walk(double *v, size_t n, int decimals)
{
    double st = rnd_unit() * 100;
    for (size_t i = 0; i < n; i++) {
        if (i) {
            st += rnd_normal();
            st = st < 0 ? 0 : st > 100 ? 100 : st;
        }
        v[i] = decimals ? from_text(st, decimals) : (double)(int)st;
    }
}

static void test_devops_int(void **state)
{
    (void)state;
    enum { N = 1080 };
    int64_t ts[N];
    double v[N];
    size_t total = 0;
    for (int s = 0; s < 50; s++) {
        fill_regular(ts, N, 1451606400000 + s, 10000);
        fill_walk(v, N, 0);
        int tsm, vm;
        total += roundtrip(ts, v, N, &tsm, &vm);
        assert_int_equal(tsm, CODEC_TS_CONST);
        assert_int_equal(vm, CODEC_V_DEC_DELTA);
    }
    assert_true((double)total / (50.0 * N) <= 0.35);
}

static void test_devops_2dec(void **state)
{
    (void)state;
    enum { N = 1080 };
    int64_t ts[N];
    double v[N];
    size_t total = 0;
    for (int s = 0; s < 50; s++) {
        fill_regular(ts, N, 1451606400000, 10000);
        fill_walk(v, N, 2);
        int vm;
        total += roundtrip(ts, v, N, NULL, &vm);
        assert_int_equal(vm, CODEC_V_DEC_DELTA);
    }
    assert_true((double)total / (50.0 * N) <= 1.2);
}

static void test_const_values(void **state)
{
    (void)state;
    enum { N = 500 };
    int64_t ts[N];
    double v[N];
    fill_regular(ts, N, -5000, 7);
    for (size_t i = 0; i < N; i++)
        v[i] = 0.1;
    int tsm, vm;
    size_t len = roundtrip(ts, v, N, &tsm, &vm);
    assert_int_equal(tsm, CODEC_TS_CONST);
    assert_int_equal(vm, CODEC_V_CONST);
    assert_true(len <= 16);
    /* A constant NaN with payload and a constant -0.0 are still CONST. */
    uint64_t nanbits = 0x7ff00000deadbeefull;
    for (size_t i = 0; i < N; i++)
        memcpy(&v[i], &nanbits, 8);
    roundtrip(ts, v, N, NULL, &vm);
    assert_int_equal(vm, CODEC_V_CONST);
    for (size_t i = 0; i < N; i++)
        v[i] = -0.0;
    roundtrip(ts, v, N, NULL, &vm);
    assert_int_equal(vm, CODEC_V_CONST);
}

static void test_dec_dod(void **state)
{
    (void)state;
    enum { N = 1000 };
    int64_t ts[N];
    double v[N];
    fill_regular(ts, N, 0, 1000);
    for (size_t i = 0; i < N; i++)
        v[i] = from_text(1000.5 + 0.25 * (double)i, 2); /* a steady counter */
    int vm;
    size_t len = roundtrip(ts, v, N, NULL, &vm);
    assert_int_equal(vm, CODEC_V_DEC_DOD);
    assert_true(len < N / 8 + 32);
}

static void test_negative_exponent(void **state)
{
    (void)state;
    enum { N = 300 };
    int64_t ts[N];
    double v[N];
    fill_regular(ts, N, 0, 1);
    for (size_t i = 0; i < N; i++)
        v[i] = (double)(rnd() % 4) * 1e9 - 1e12;
    int vm;
    size_t len = roundtrip(ts, v, N, NULL, &vm);
    assert_int_equal(vm, CODEC_V_DEC_DELTA);
    assert_true(len < N / 2 + 32); /* about 3 bits per sample */
}

static void test_xor_specials(void **state)
{
    (void)state;
    const uint64_t nan_payloads[] = {0x7ff8000000000000ull, 0xfff8000000000001ull,
                                     0x7ff0000000000001ull, 0x7fffffffffffffffull};
    double specials[] = {0.0,     -0.0,     INFINITY,  -INFINITY, DBL_MAX,  -DBL_MAX,
                         DBL_MIN, 4.9e-324, -4.9e-324, 1e-300,    1.79e308, 2.2250738585072009e-308,
                         1.0,     -1.0,     0.1,       1e22,      1e23,     9007199254740993.0};
    enum { N = 64 };
    int64_t ts[N];
    double v[N];
    fill_regular(ts, N, 100, 10);
    for (size_t i = 0; i < N; i++) {
        if (i % 3 == 0)
            memcpy(&v[i], &nan_payloads[i % 4], 8);
        else
            v[i] = specials[i % (sizeof specials / sizeof specials[0])];
    }
    int vm;
    roundtrip(ts, v, N, NULL, &vm);
    assert_int_equal(vm, CODEC_V_XOR);
    /* A single -0.0 among decimals forces XOR; +0.0 does not. */
    for (size_t i = 0; i < N; i++)
        v[i] = from_text((double)i * 0.5, 1);
    roundtrip(ts, v, N, NULL, &vm);
    assert_int_equal(vm, CODEC_V_DEC_DOD);
    v[7] = -0.0;
    roundtrip(ts, v, N, NULL, &vm);
    assert_int_equal(vm, CODEC_V_XOR);
    v[7] = 0.0;
    v[9] = nextafter(v[9], 1e9); /* not a short decimal */
    roundtrip(ts, v, N, NULL, &vm);
    assert_int_equal(vm, CODEC_V_XOR);
}

static void test_small_blocks(void **state)
{
    (void)state;
    int64_t ts[3] = {INT64_MIN, 0, INT64_MAX};
    double v[3] = {NAN, -0.0, 5e-324};
    int tsm, vm;
    roundtrip(ts, v, 1, &tsm, &vm);
    assert_int_equal(tsm, CODEC_TS_CONST);
    assert_int_equal(vm, CODEC_V_CONST);
    roundtrip(ts + 2, v + 2, 1, NULL, NULL);
    roundtrip(ts, v, 2, &tsm, NULL); /* span 2^63 */
    assert_int_equal(tsm, CODEC_TS_CONST);
    roundtrip(ts, v, 3, &tsm, NULL); /* steps 2^63 and 2^63 - 1 */
    assert_int_not_equal(tsm, CODEC_TS_CONST);
    int64_t t2[2] = {INT64_MIN, INT64_MAX}; /* span 2^64 - 1 */
    roundtrip(t2, v, 2, NULL, NULL);
    double d2[2] = {1.5, 2.5};
    roundtrip(t2, d2, 2, NULL, &vm);
    assert_int_equal(vm, CODEC_V_DEC_DELTA);
}

static void test_extreme_timestamps(void **state)
{
    (void)state;
    int64_t ts[8] = {INT64_MIN, INT64_MIN + 1, INT64_MIN + 3, -1, 0, 1, INT64_MAX - 1, INT64_MAX};
    double v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int tsm;
    roundtrip(ts, v, 8, &tsm, NULL);
    assert_int_not_equal(tsm, CODEC_TS_CONST);
    roundtrip(ts + 1, v, 7, NULL, NULL);
    roundtrip(ts, v, 7, NULL, NULL);
    /* Constant huge step from INT64_MIN. */
    int64_t big[4];
    fill_regular(big, 4, INT64_MIN, INT64_MAX / 3);
    roundtrip(big, v, 4, &tsm, NULL);
    assert_int_equal(tsm, CODEC_TS_CONST);
}

static void test_irregular_timestamps(void **state)
{
    (void)state;
    enum { N = 2000 };
    int64_t ts[N];
    double v[N];
    fill_walk(v, N, 2);
    /* Jittered: delta-of-delta pays. */
    for (size_t i = 0; i < N; i++)
        ts[i] = 1700000000000 + (int64_t)i * 15000 + (int64_t)(rnd() % 21) - 10;
    int tsm;
    roundtrip(ts, v, N, &tsm, NULL);
    assert_int_equal(tsm, CODEC_TS_DOD);
    /* Random gaps: plain deltas pay. */
    ts[0] = -77;
    for (size_t i = 1; i < N; i++)
        ts[i] = ts[i - 1] + 1 + (int64_t)(rnd() % 1000);
    roundtrip(ts, v, N, &tsm, NULL);
    assert_int_equal(tsm, CODEC_TS_DELTA);
    /* Regular with one huge gap: the Rice escape keeps it cheap. */
    fill_regular(ts, N, 0, 10);
    for (size_t i = N / 2; i < N; i++)
        ts[i] += (int64_t)1 << 50;
    size_t len = roundtrip(ts, v, N, &tsm, NULL);
    size_t len_regular;
    fill_regular(ts, N, 0, 10);
    len_regular = roundtrip(ts, v, N, NULL, NULL);
    assert_true(len < len_regular + N / 8 + 40);
}

static void test_value_outliers(void **state)
{
    (void)state;
    enum { N = 1000 };
    int64_t ts[N];
    double v[N];
    fill_regular(ts, N, 0, 1);
    for (size_t i = 0; i < N; i++)
        v[i] = (double)(rnd() % 3);
    v[500] = 4503599627370495.0; /* 2^52 - 1 */
    v[501] = -4503599627370495.0;
    int vm;
    size_t len = roundtrip(ts, v, N, NULL, &vm);
    assert_int_equal(vm, CODEC_V_DEC_DELTA);
    assert_true(len < N * 3 / 8 + 64);
    /* Exactly 2^53 is out of the decimal range. */
    v[500] = 9007199254740992.0;
    roundtrip(ts, v, N, NULL, &vm);
    assert_int_equal(vm, CODEC_V_XOR);
}

static void test_randomized(void **state)
{
    (void)state;
    enum { MAXN = 3000 };
    int64_t *ts = malloc(MAXN * sizeof *ts);
    double *v = malloc(MAXN * sizeof *v);
    int seen_ts[CODEC_TS_MODES] = {0}, seen_v[CODEC_V_MODES] = {0};
    for (int it = 0; it < 400; it++) {
        size_t n = 1 + (size_t)(rnd() % (it % 4 == 0 ? 5 : MAXN));
        int tk = (int)(rnd() % 4), vk = (int)(rnd() % 6);
        int64_t t = (int64_t)rnd();
        if (t > 0)
            t /= 2;
        for (size_t i = 0; i < n; i++) {
            uint64_t gap = tk == 0   ? 1000
                           : tk == 1 ? 1 + rnd() % 50
                           : tk == 2 ? 1 + (rnd() >> 44)
                                     : 1;
            if (i && (uint64_t)INT64_MAX - (uint64_t)t < gap + MAXN)
                gap = 1;
            t = i ? (int64_t)((uint64_t)t + gap) : t;
            ts[i] = t;
            uint64_t r = rnd();
            switch (vk) {
            case 0:
                v[i] = (double)(int64_t)(r % 200) - 100;
                break;
            case 1:
                v[i] = from_text((double)(r % 100000) / 1000.0, 3);
                break;
            case 2:
                memcpy(&v[i], &r, 8);
                break;
            case 3:
                v[i] = i ? v[i - 1] : 3.25;
                break;
            case 4:
                v[i] = (double)i * 12.5;
                break;
            default:
                v[i] = (r & 1) ? (double)(r >> 40) : ldexp((double)(r >> 12), -(int)(r % 1100));
                break;
            }
        }
        int a, b;
        roundtrip(ts, v, n, &a, &b);
        seen_ts[a]++;
        seen_v[b]++;
    }
    for (int i = 0; i < CODEC_TS_MODES; i++)
        assert_true(seen_ts[i] > 0);
    for (int i = 0; i < CODEC_V_MODES; i++)
        assert_true(seen_v[i] > 0);
    free(ts);
    free(v);
}

static void test_max_samples(void **state)
{
    (void)state;
    size_t n = CODEC_MAX_SAMPLES;
    int64_t *ts = malloc((n + 1) * sizeof *ts);
    double *v = malloc((n + 1) * sizeof *v);
    assert_non_null(ts);
    assert_non_null(v);
    for (size_t i = 0; i <= n; i++) {
        ts[i] = (int64_t)i * 10 + (int64_t)(rnd() % 3);
        v[i] = (double)(rnd() % 1000) / 10;
    }
    int tsm, vm;
    roundtrip(ts, v, n, &tsm, &vm);
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(codec_encode(ts, v, n + 1, &b), ST_EINVAL);
    assert_int_equal(codec_encode(ts, v, 0, &b), ST_EINVAL);
    assert_int_equal(b.len, 0);
    /* A header claiming MAX+1 samples is corrupt. */
    assert_int_equal(codec_encode(ts, v, 3, &b), 0);
    uint8_t hdr[16];
    size_t hl = 0;
    hdr[hl++] = b.data[0];
    hl += st_uvarint_put(hdr + hl, (uint64_t)CODEC_MAX_SAMPLES + 1);
    hl += st_uvarint_put(hdr + hl, 0);
    hl += st_uvarint_put(hdr + hl, 0);
    size_t pn;
    assert_int_equal(codec_peek(hdr, hl, &pn, NULL, NULL), ST_ECORRUPT);
    st_buf_deinit(&b);
    free(ts);
    free(v);
}

static void test_encode_rejects(void **state)
{
    (void)state;
    int64_t ts[4] = {1, 2, 2, 3};
    double v[4] = {1, 2, 3, 4};
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(st_buf_put_u8(&b, 7), 0);
    assert_int_equal(codec_encode(ts, v, 4, &b), ST_EINVAL); /* duplicate */
    int64_t ts2[3] = {5, 4, 6};
    assert_int_equal(codec_encode(ts2, v, 3, &b), ST_EINVAL); /* unsorted */
    int64_t ts3[2] = {INT64_MAX, INT64_MIN};
    assert_int_equal(codec_encode(ts3, v, 2, &b), ST_EINVAL);
    assert_int_equal(codec_encode(NULL, v, 1, &b), ST_EINVAL);
    assert_int_equal(b.len, 1); /* untouched on error */
    st_buf_deinit(&b);
}

/* Encode a few blocks covering every mode, for the corruption tests. */
static size_t sample_blocks(st_buf_t *b, size_t *off, size_t max)
{
    enum { N = 200 };
    int64_t ts[N];
    double v[N];
    size_t k = 0;
    for (int tk = 0; tk < 3; tk++) {
        for (int vk = 0; vk < 4 && k < max; vk++) {
            for (size_t i = 0; i < N; i++) {
                ts[i] = tk == 0   ? (int64_t)i * 10
                        : tk == 1 ? (int64_t)(i * i * 7 + rnd() % 3)
                                  : (int64_t)i * 1000 + (int64_t)(rnd() % 5);
                uint64_t r = rnd();
                v[i] = vk == 0   ? 42.0
                       : vk == 1 ? (double)(r % 50)
                       : vk == 2 ? (double)i * 0.5
                                 : st_bits_f64(r);
            }
            off[k++] = b->len;
            assert_int_equal(codec_encode(ts, v, N, b), 0);
        }
    }
    off[k] = b->len;
    return k;
}

static void test_truncated(void **state)
{
    (void)state;
    st_buf_t b;
    st_buf_init(&b);
    size_t off[16];
    size_t nb = sample_blocks(&b, off, 12);
    int64_t ts[300];
    double v[300];
    for (size_t j = 0; j < nb; j++) {
        size_t len = off[j + 1] - off[j];
        /* Copy each prefix to its own allocation so ASan sees overreads. */
        for (size_t l = 0; l < len; l++) {
            uint8_t *p = malloc(l ? l : 1);
            memcpy(p, b.data + off[j], l);
            size_t n;
            assert_int_equal(codec_decode(p, l, ts, v, 300, &n), ST_ECORRUPT);
            free(p);
        }
        /* Trailing garbage is rejected too. */
        uint8_t *p = malloc(len + 1);
        memcpy(p, b.data + off[j], len);
        p[len] = 0;
        size_t n;
        assert_int_equal(codec_decode(p, len + 1, ts, v, 300, &n), ST_ECORRUPT);
        assert_int_equal(codec_decode(p, len, ts, v, 300, &n), 0);
        free(p);
    }
    size_t n;
    assert_int_equal(codec_decode(NULL, 0, ts, v, 300, &n), ST_ECORRUPT);
    assert_int_equal(codec_peek(NULL, 0, &n, NULL, NULL), ST_ECORRUPT);
    st_buf_deinit(&b);
}

/* Samples in groups of 9 consecutive ms (a downsampling tier's buckets:
 * count, sum, min, max, first, first offset, last, last offset, resets) of
 * a 10 s counter into 1-minute buckets: a columnar block, far smaller than
 * the interleaved coding, read back bit for bit; every prefix refused. */
static void test_columnar(void **state)
{
    (void)state;
    enum { G = 400, S = 9, N = G * S };
    int64_t *ts = malloc(N * sizeof *ts);
    double *v = malloc(N * sizeof *v);
    double c = 1000;
    for (size_t j = 0; j < G; j++) {
        int64_t end = 1577836800000 + (int64_t)(j + 1) * 60000;
        double first = c, sum = 0;
        for (int i = 0; i < 6; i++) {
            sum += c;
            c += (double)(rnd() % 50);
        }
        double last = c - 1;
        double f[S] = {6, sum, first, last, first, 50000, last, 0, -0.0};
        for (size_t k = 0; k < S; k++) {
            ts[j * S + k] = end - (S - 1) + (int64_t)k;
            v[j * S + k] = f[k];
        }
    }
    int tsm, vm;
    size_t len = roundtrip(ts, v, N, &tsm, &vm);
    assert_int_equal(vm, CODEC_V_COLUMNS);
    assert_int_equal(tsm, CODEC_TS_CONST);
    /* sum, first (= min) and last (= max) columns of 7-9 bit deltas; the
     * rest constant or repeated: under 4 bytes a bucket */
    assert_true(len < G * 4);
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(codec_encode(ts, v, N, &b), 0);
    int64_t *ts2 = malloc(N * sizeof *ts2);
    double *v2 = malloc(N * sizeof *v2);
    size_t n;
    for (size_t l = 0; l < b.len; l += (l < 64 ? 1 : 7)) {
        uint8_t *p = malloc(l ? l : 1);
        memcpy(p, b.data, l);
        assert_int_equal(codec_decode(p, l, ts2, v2, N, &n), ST_ECORRUPT);
        free(p);
    }
    /* hostile headers: one column, more columns than samples allow, a
     * column referring to itself */
    uint8_t *p = malloc(b.len);
    uint8_t tmp[16];
    size_t hl = 1 + st_uvarint_put(tmp, N) + st_uvarint_put(tmp, st_zigzag(ts[0])) +
                st_uvarint_put(tmp, (uint64_t)(ts[N - 1] - ts[0]));
    for (int bad = 1; bad <= 17; bad += 16) {
        memcpy(p, b.data, b.len);
        p[hl] = (uint8_t)bad;
        assert_int_equal(codec_decode(p, b.len, ts2, v2, N, &n), ST_ECORRUPT);
    }
    memcpy(p, b.data, b.len);
    p[hl + 1] = CODEC_V_SAME; /* the first column (after a CONST group section) */
    p[hl + 2] = 0;
    assert_int_equal(codec_decode(p, b.len, ts2, v2, N, &n), ST_ECORRUPT);
    free(p);
    /* a gauge with two decimals: min, max and last apart from first, coded
     * as small differences from it; read back bit for bit, every prefix
     * refused */
    double g = 50;
    for (size_t j = 0; j < G; j++) {
        double x[6], sum = 0, lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < 6; i++) {
            g += (double)((int)(rnd() % 201) - 100) / 100;
            x[i] = from_text(g, 2);
            sum += x[i];
            lo = x[i] < lo ? x[i] : lo;
            hi = x[i] > hi ? x[i] : hi;
        }
        double f[S] = {6, sum, lo, hi, x[0], 50000, x[5], 0, -0.0};
        for (size_t k = 0; k < S; k++)
            v[j * S + k] = f[k];
    }
    size_t glen = roundtrip(ts, v, N, &tsm, &vm);
    assert_int_equal(vm, CODEC_V_COLUMNS);
    st_buf_reset(&b);
    assert_int_equal(codec_encode(ts, v, N, &b), 0);
    assert_int_equal(b.len, glen);
    for (size_t l = 0; l < b.len; l += (l < 64 ? 1 : 5)) {
        uint8_t *q = malloc(l ? l : 1);
        memcpy(q, b.data, l);
        assert_int_equal(codec_decode(q, l, ts2, v2, N, &n), ST_ECORRUPT);
        free(q);
    }
    size_t gilen = roundtrip(ts, v, N - 4, &tsm, &vm);
    assert_true(gilen > 2 * glen);
    /* a cut through a group: the interleaved coding, several times larger */
    size_t ilen = roundtrip(ts, v, N - 4, &tsm, &vm);
    assert_true(vm != CODEC_V_COLUMNS);
    assert_true(ilen > 3 * len);
    st_buf_deinit(&b);
    free(ts);
    free(v);
    free(ts2);
    free(v2);
}

static void test_corrupted(void **state)
{
    (void)state;
    st_buf_t b;
    st_buf_init(&b);
    size_t off[16];
    size_t nb = sample_blocks(&b, off, 12);
    int64_t ts[300];
    double v[300];
    int failures = 0;
    for (size_t j = 0; j < nb; j++) {
        size_t len = off[j + 1] - off[j];
        uint8_t *p = malloc(len);
        for (int it = 0; it < 2000; it++) {
            memcpy(p, b.data + off[j], len);
            int flips = 1 + (int)(rnd() % 3);
            for (int f = 0; f < flips; f++)
                p[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
            size_t n;
            int rc = codec_decode(p, len, ts, v, 300, &n);
            assert_true(rc == 0 || rc == ST_ECORRUPT || rc == ST_ELIMIT);
            if (rc == 0) {
                assert_true(n >= 1 && n <= 300);
                for (size_t i = 1; i < n; i++)
                    assert_true(ts[i] > ts[i - 1]);
            } else {
                failures++;
            }
        }
        free(p);
    }
    assert_true(failures > 0);
    /* Header fields: bad version, unknown modes, zero count, span overflow. */
    uint8_t h[32];
    size_t n;
    h[0] = 0xE0;
    h[1] = 1;
    h[2] = 0;
    h[3] = 0;
    assert_int_equal(codec_peek(h, 4, &n, NULL, NULL), ST_ECORRUPT);
    h[0] = 3;
    assert_int_equal(codec_peek(h, 4, &n, NULL, NULL), ST_ECORRUPT);
    h[0] = 5 << 2;
    assert_int_equal(codec_peek(h, 4, &n, NULL, NULL), ST_ECORRUPT);
    h[0] = 0;
    assert_int_equal(codec_peek(h, 4, &n, NULL, NULL), 0);
    h[1] = 0;
    assert_int_equal(codec_peek(h, 4, &n, NULL, NULL), ST_ECORRUPT);
    size_t l = 0;
    h[l++] = 0;
    l += st_uvarint_put(h + l, 2);
    l += st_uvarint_put(h + l, st_zigzag(10));
    l += st_uvarint_put(h + l, (uint64_t)INT64_MAX); /* 10 + span > INT64_MAX */
    assert_int_equal(codec_peek(h, l, &n, NULL, NULL), ST_ECORRUPT);
    st_buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_devops_int),
        cmocka_unit_test(test_devops_2dec),
        cmocka_unit_test(test_const_values),
        cmocka_unit_test(test_dec_dod),
        cmocka_unit_test(test_negative_exponent),
        cmocka_unit_test(test_xor_specials),
        cmocka_unit_test(test_small_blocks),
        cmocka_unit_test(test_extreme_timestamps),
        cmocka_unit_test(test_irregular_timestamps),
        cmocka_unit_test(test_value_outliers),
        cmocka_unit_test(test_randomized),
        cmocka_unit_test(test_max_samples),
        cmocka_unit_test(test_encode_rejects),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_corrupted),
        cmocka_unit_test(test_columnar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

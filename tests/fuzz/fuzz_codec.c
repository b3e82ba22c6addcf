/*
 * fuzz_codec — the block codec under hostile input.
 *
 * 1. The input as a raw block: codec_peek and codec_decode must not crash,
 *    and a block that decodes must agree with peek and have strictly
 *    increasing timestamps.
 * 2. The input as a recipe for samples: encode, decode, compare bit for bit
 *    (abort on any mismatch). The first byte picks how timestamps and values
 *    are drawn from the rest, so short inputs reach every coding mode.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "st_buf.h"
#include "st_err.h"
#include "st_varint.h"

#define FUZZ_MAX_N 4096

static int64_t ts_in[FUZZ_MAX_N], ts_out[FUZZ_MAX_N];
static double v_in[FUZZ_MAX_N], v_out[FUZZ_MAX_N];

static void check_at(int cond, int line)
{
    if (!cond) {
        fprintf(stderr, "fuzz_codec: check failed at line %d\n", line);
        abort();
    }
}
#define check(cond) check_at((cond), __LINE__)

static void decode_raw(const uint8_t *data, size_t size)
{
    size_t n = 0;
    int64_t mint = 0, maxt = 0;
    int prc = codec_peek(data, size, &n, &mint, &maxt);
    size_t dn = 0;
    int rc = codec_decode(data, size, ts_out, v_out, FUZZ_MAX_N, &dn);
    check(rc == 0 || rc == ST_ECORRUPT || rc == ST_ELIMIT);
    if (rc == 0) {
        check(prc == 0 && dn == n && dn >= 1 && dn <= FUZZ_MAX_N);
        check(ts_out[0] == mint && ts_out[dn - 1] == maxt);
        for (size_t i = 1; i < dn; i++)
            check(ts_out[i] > ts_out[i - 1]);
    }
    if (rc == ST_ELIMIT)
        check(prc == 0 && n > FUZZ_MAX_N);
}

/* Pull bytes from the input, zeros once it runs out. */
typedef struct src {
    const uint8_t *p;
    size_t left;
} src_t;

static uint64_t take(src_t *s, unsigned nbytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < nbytes; i++) {
        uint64_t b = 0;
        if (s->left) {
            b = *s->p++;
            s->left--;
        }
        v |= b << (8 * i);
    }
    return v;
}

static void roundtrip(const uint8_t *data, size_t size)
{
    if (size < 2)
        return;
    unsigned sel = data[0], width = 1 + data[1] % 8;
    src_t s = {data + 2, size - 2};
    unsigned tmode = sel & 3, vmode = (sel >> 2) & 7;
    size_t per = 1 + (vmode == 2 ? 8 : width) + (tmode == 2 ? 2 : tmode == 3 ? 8 : 0);
    size_t n = (size - 2) / per + 1;
    if (n > FUZZ_MAX_N)
        n = FUZZ_MAX_N;
    /* t is biased (t ^ 2^63) so unsigned order is int64 order. */
    uint64_t t = take(&s, 8);
    double scale = (double)(1 + (sel >> 5)); /* decimal places 1..8 */
    for (size_t i = 0; i < n; i++) {
        uint64_t gap;
        switch (tmode) {
        case 0:
            gap = 10000;
            break;
        case 1:
            gap = 1 + take(&s, 1);
            break;
        case 2:
            gap = 1000 + take(&s, 2);
            break;
        default:
            gap = take(&s, 8);
            break;
        }
        gap += gap == 0;
        if (i) {
            /* Stop at INT64_MAX: timestamps must stay increasing. */
            if (gap > UINT64_MAX - t) {
                n = i;
                break;
            }
            t += gap;
        }
        uint64_t u = t ^ ((uint64_t)1 << 63);
        memcpy(&ts_in[i], &u, sizeof u);
        uint64_t r;
        switch (vmode) {
        case 0:
            v_in[i] = (double)(int64_t)(take(&s, width) % 201) - 100;
            break;
        case 1:
            r = take(&s, width);
            v_in[i] = (double)(int64_t)(r >> 1) / (r & 1 ? 100.0 : scale * 10.0);
            break;
        case 2:
            v_in[i] = st_bits_f64(take(&s, 8));
            break;
        case 3:
            v_in[i] = i && take(&s, 1) % 4 ? v_in[i - 1] : (double)take(&s, width);
            break;
        case 4:
            v_in[i] = (double)i * 0.125 + (double)(take(&s, 1) % 2);
            break;
        case 5:
            r = take(&s, width);
            v_in[i] = (double)(int64_t)(r & 0xfffff) * 1e6 * (r & 0x100000 ? -1 : 1);
            break;
        default:
            r = take(&s, width);
            v_in[i] = st_bits_f64(0x4059000000000000ull ^ (r << 20));
            break;
        }
    }
    st_buf_t b;
    st_buf_init(&b);
    int rc = codec_encode(ts_in, v_in, n, &b);
    if (rc == ST_ENOMEM) {
        st_buf_deinit(&b);
        return;
    }
    check(rc == 0);
    size_t dn = 0;
    check(codec_decode(b.data, b.len, ts_out, v_out, FUZZ_MAX_N, &dn) == 0);
    check(dn == n);
    check(memcmp(ts_in, ts_out, n * sizeof ts_in[0]) == 0);
    check(memcmp(v_in, v_out, n * sizeof v_in[0]) == 0);
    /* Every strict prefix is corrupt. */
    if (b.len > 1)
        check(codec_decode(b.data, b.len - 1 - data[1] % (b.len - 1), ts_out, v_out, FUZZ_MAX_N,
                           &dn) == ST_ECORRUPT);
    st_buf_deinit(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode_raw(data, size);
    roundtrip(data, size);
    return 0;
}

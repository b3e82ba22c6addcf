/*
 * codec — lossless block compression of one series' samples.
 *
 * BLOCK LAYOUT
 *
 * Integers named uvarint are LEB128; svarint is a zigzag-mapped uvarint
 * (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...); u8 is one byte; u64le is 8 bytes
 * little-endian. Timestamp arithmetic is modulo 2^64 (two's complement).
 *
 *   u8       format  bits 0-1: timestamp mode, bits 2-4: value mode,
 *                    bits 5-7: version (0; 1 is a columnar block, below).
 *                    Other values are corrupt.
 *   uvarint  n       sample count, 1 <= n <= CODEC_MAX_SAMPLES
 *   svarint  t0      first timestamp
 *   uvarint  span    t[n-1] - t0 (as unsigned 64-bit). 0 when n == 1.
 *                    t0 + span <= INT64_MAX. codec_peek needs only this.
 *   ...      timestamp section, then value section, then the block ends:
 *                    bytes after the value section make the block corrupt.
 *
 * Timestamp section, with d[i] = t[i] - t[i-1] (1 <= d[i], unsigned):
 *   CONST (0)  empty. n == 1, or n >= 2 and step = span / (n-1) exactly,
 *              step >= 1; t[i] = t0 + i * step.
 *   DELTA (1)  n >= 2. u8 k, then a bitstream of n-1 Rice_k(d[i] - 1),
 *              i = 1..n-1.
 *   DOD   (2)  n >= 3. uvarint d[1], u8 k, then a bitstream of n-2
 *              Rice_k(zigzag(d[i] - d[i-1])), i = 2..n-1.
 *   In DELTA/DOD the decoded deltas must each be >= 1 and sum to span.
 *
 * Value section:
 *   CONST     (0)  u64le: the bits of v[0]; every value is bit-identical.
 *   DEC_DELTA (1)  svarint e (-22 <= e <= 22), svarint m[0], u8 k, then a
 *                  bitstream of n-1 Rice_k(zigzag(m[i] - m[i-1])).
 *   DEC_DOD   (2)  n >= 3. svarint e, svarint m[0], svarint m[1] - m[0],
 *                  u8 k, then a bitstream of n-2
 *                  Rice_k(zigzag((m[i]-m[i-1]) - (m[i-1]-m[i-2]))).
 *       For both DEC modes |m[i]| < 2^53 and the value is the IEEE double
 *       (double)m / 10^e when e >= 0, (double)m * 10^-e when e < 0: one
 *       correctly rounded operation on exact operands (10^22 is the largest
 *       power of ten a double holds exactly), so every platform decodes the
 *       same bits. The encoder uses a DEC mode only if this reproduces every
 *       value bit-exactly (so -0.0, NaN and infinities force XOR).
 *   XOR       (3)  a bitstream: 64 bits of v[0]; then for i >= 1, with
 *                  x = bits(v[i]) ^ bits(v[i-1]) and a window (lz, tz)
 *                  starting at (0, 0):
 *                    '0'                     x == 0
 *                    '1' '0' + w bits        x >> tz, w = 64 - lz - tz;
 *                                            x must fit the window
 *                    '1' '1' + 6 bits lz + 6 bits (w - 1) + w bits
 *                                            new window, x >> tz,
 *                                            tz = 64 - lz - w >= 0
 *
 * Bitstreams pack bits LSB-first: the first bit is bit 0 of the first
 * byte, and a multi-bit field is written least significant bit first. A
 * bitstream ends at the next byte boundary (padding bits are written as 0
 * and not checked). Rice_k(z), 0 <= k <= 63, with q = z >> k:
 *     q < 24:  q one-bits, a zero-bit, then the low k bits of z;
 *     q >= 24: 24 one-bits (escape), 6 bits (L - 1) where L = bit length of
 *              z (1..64), then the low L - 1 bits of z (its top bit is 1).
 * The escape bounds the cost of an outlier to 93 bits whatever k is.
 *
 * COLUMNAR BLOCKS (version 1): samples that come in groups of s
 * consecutive milliseconds (t, t+1, ..., t+s-1), such as a downsampling
 * tier's buckets (engine_tier.h: one sample per field), are stored as s
 * columns sharing one timestamp stream. Header as above with bits 0-1 the
 * group starts' timestamp mode and bits 2-4 zero, then:
 *   u8       s       2 <= s <= 16, n % s == 0, g = n / s >= 1 groups
 *   ...      the g group starts G[j] as a timestamp section (CONST, DELTA
 *                    or DOD as above over g timestamps from t0 with span
 *                    span - (s - 1)); G[j] - G[j-1] >= s.
 *                    Sample j * s + c has timestamp G[j] + c.
 *   then for each column c = 0..s-1 (values j * s + c, j = 0..g-1):
 *     u8 mode 0..3  a value section as above over the column's g values
 *                   (DEC_DOD needs g >= 3)
 *     u8 mode 4     SAME: u8 i < c; the column repeats column i bit for
 *                   bit (a field derivable from another one costs 2 bytes)
 *     u8 mode 5     DIFF: u8 i < c, uvarint e (0 <= e <= 22), u8 k, then a
 *                   bitstream of g Rice_k(zigzag(d[j])): with r[j] the
 *                   mantissa of column i's value j at exponent e (the m
 *                   with m / 10^e == value bit-exactly, |m| < 2^53: found
 *                   as the encoder finds decimal mantissas; none is
 *                   corrupt), value j is (double)(r[j] + d[j]) / 10^e,
 *                   |r[j] + d[j]| < 2^53 (a bucket's min or max next to
 *                   its first or last value costs a few bits)
 * A decoder of version 0 only refuses these blocks as corrupt; this one
 * reads both.
 *
 * ENCODER CHOICES: the candidate codings' exact sizes are computed and the
 * smallest is written. Delta-of-delta orders are only sized when the sum of
 * their residuals' bit lengths is not clearly above the delta order's, and
 * XOR is not sized when its minimum (64 + n - 1 bits) cannot win; counting
 * stops once XOR is larger than the best so far. Each stream's Rice k is
 * found by a histogram estimate then a local search on the exact cost. The
 * decimal exponent is the smallest e >= 0 that reproduces all values; when
 * e == 0 and every mantissa is a multiple of 10^j (j <= 18), e = -j.
 * Samples in groups of s consecutive ms (s read off the first group; at
 * least two groups) are also encoded as a columnar block, kept if smaller.
 *
 * DECODER SAFETY: every read is bounds-checked against [p, p+len): the bit
 * reader feeds zero bytes past the end and the section is rejected if it
 * consumed any of them. Running sums use unsigned arithmetic and are checked
 * (timestamps strictly increasing and ending at t0 + span; |m| < 2^53).
 */
#include "codec.h"
#include "codec_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"
#include "st_varint.h"

#define RICE_QESC 24u
#define DEC_EMAX 22
#define DEC_NEG_MAX 18
#define MANT_LIM ((uint64_t)1 << 53)
#define WSLACK 16 /* the bit writer stores 8 bytes at a time */

static const double pow10_tab[DEC_EMAX + 1] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

static inline int64_t u2i(uint64_t u)
{
    int64_t i;
    memcpy(&i, &u, sizeof i);
    return i;
}

static inline unsigned bitlen(uint64_t z)
{
    return z ? 64u - (unsigned)__builtin_clzll(z) : 0u;
}

static inline uint64_t lowmask(unsigned nb)
{
    return nb ? ~(uint64_t)0 >> (64 - nb) : 0;
}

static size_t uvarint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t svarint_len(int64_t v)
{
    return uvarint_len(st_zigzag(v));
}

/* ---- bit writer: LSB-first, 64-bit accumulator, < 8 pending bits ---- */

typedef struct bw {
    uint8_t *p;
    uint64_t acc;
    unsigned n;
} bw_t;

/* nb <= 56 and v < 2^nb. Stores 8 bytes at p: the buffer needs slack. */
static inline void bw_put(bw_t *w, uint64_t v, unsigned nb)
{
    w->acc |= v << w->n;
    w->n += nb;
    st_store_u64le(w->p, w->acc);
    w->p += w->n >> 3;
    w->acc >>= w->n & ~7u;
    w->n &= 7;
}

static inline void bw_put_wide(bw_t *w, uint64_t v, unsigned nb)
{
    if (nb > 56) {
        bw_put(w, v & 0xffffffffu, 32);
        v >>= 32;
        nb -= 32;
    }
    bw_put(w, v, nb);
}

/* Bytes written, including a final partial byte. */
static inline size_t bw_finish(bw_t *w, const uint8_t *start)
{
    return (size_t)(w->p - start) + (w->n ? 1 : 0);
}

/* ---- bit reader: LSB-first, zero-fills past the end and counts it ---- */

typedef struct br {
    const uint8_t *start, *p, *end;
    uint64_t acc;
    unsigned n;  /* valid bits in acc (bits above may hold the next byte) */
    size_t virt; /* zero bytes fed past the end */
} br_t;

static void br_init(br_t *r, const uint8_t *p, const uint8_t *end)
{
    r->start = r->p = p;
    r->end = end;
    r->acc = 0;
    r->n = 0;
    r->virt = 0;
}

/* Afterwards n >= 56. */
static inline void br_refill(br_t *r)
{
    if (r->end - r->p >= 8) {
        r->acc |= st_load_u64le(r->p) << r->n;
        r->p += (63 - r->n) >> 3;
        r->n |= 56;
        return;
    }
    while (r->n <= 56) {
        uint64_t b = 0;
        if (r->p < r->end)
            b = *r->p++;
        else
            r->virt++;
        r->acc |= b << r->n;
        r->n += 8;
    }
}

static inline void br_skip(br_t *r, unsigned nb)
{
    r->acc >>= nb;
    r->n -= nb;
}

/* nb <= 56 */
static inline uint64_t br_get(br_t *r, unsigned nb)
{
    if (r->n < nb)
        br_refill(r);
    uint64_t v = r->acc & lowmask(nb);
    br_skip(r, nb);
    return v;
}

static inline uint64_t br_get_wide(br_t *r, unsigned nb)
{
    if (nb <= 56)
        return br_get(r, nb);
    uint64_t lo = br_get(r, 32);
    return lo | br_get(r, nb - 32) << 32;
}

/* End the bitstream: returns the byte after it, or NULL if it overran. */
static const uint8_t *br_finish(br_t *r)
{
    size_t total = (size_t)(r->p - r->start) + r->virt;
    size_t used_bits = total * 8 - r->n;
    if (r->virt * 8 > r->n || used_bits > (size_t)(r->end - r->start) * 8)
        return NULL;
    return r->start + (used_bits + 7) / 8;
}

/* ---- Rice coding ---- */

static inline uint64_t rice_len(uint64_t z, unsigned k)
{
    uint64_t q = z >> k;
    return q < RICE_QESC ? q + 1 + k : RICE_QESC + 6 + bitlen(z) - 1;
}

static uint64_t rice_cost(const uint64_t *z, size_t cnt, unsigned k)
{
    uint64_t bits = 0;
    for (size_t i = 0; i < cnt; i++)
        bits += rice_len(z[i], k);
    return bits;
}

/* The k in 0..63 minimising the stream's size; *bits receives that size.
 * A first guess from the mean (a geometric-like residual of mean m costs
 * least near k = log2(m)), then exact costs at three neighbouring k in one
 * pass and a walk downhill: the size is near convex in k. The guess costs
 * one pass of adds, where a per-k model over a bit-length histogram cost
 * more than the exact passes on the short blocks of many series. */
static unsigned rice_pick(const uint64_t *z, size_t cnt, uint64_t *bits)
{
    if (cnt == 0) {
        *bits = 0;
        return 0;
    }
    unsigned __int128 sum = 0;
    size_t i;
    for (i = 0; i < cnt; i++)
        sum += z[i];
    uint64_t mean = (uint64_t)(sum / cnt);
    unsigned k0 = mean ? bitlen(mean) - 1 : 0;
    /* Exact costs at three neighbouring k in one pass, then walk downhill. */
    unsigned kl = k0 > 0 ? k0 - 1 : 0;
    kl = kl > 61 ? 61 : kl;
    uint64_t c[3] = {0, 0, 0};
    for (i = 0; i < cnt; i++) {
        c[0] += rice_len(z[i], kl);
        c[1] += rice_len(z[i], kl + 1);
        c[2] += rice_len(z[i], kl + 2);
    }
    unsigned j = c[1] < c[0] ? (c[2] < c[1] ? 2 : 1) : (c[2] < c[0] ? 2 : 0);
    k0 = kl + j;
    uint64_t c0 = c[j];
    if (j != 1) {
        int dir = j == 0 ? -1 : 1;
        while ((dir < 0 && k0 > 0) || (dir > 0 && k0 < 63)) {
            unsigned k = dir < 0 ? k0 - 1 : k0 + 1;
            uint64_t ck = rice_cost(z, cnt, k);
            if (ck >= c0)
                break;
            c0 = ck;
            k0 = k;
        }
    }
    *bits = c0;
    return k0;
}

static inline void rice_put(bw_t *w, uint64_t z, unsigned k)
{
    uint64_t q = z >> k;
    if (q < RICE_QESC) {
        unsigned qq = (unsigned)q;
        if (qq + 1 + k <= 56) {
            bw_put(w, lowmask(qq) | (z & lowmask(k)) << (qq + 1), qq + 1 + k);
        } else {
            bw_put(w, lowmask(qq), qq + 1);
            bw_put_wide(w, z & lowmask(k), k);
        }
    } else {
        unsigned L = bitlen(z);
        bw_put(w, lowmask(RICE_QESC) | (uint64_t)(L - 1) << RICE_QESC, RICE_QESC + 6);
        bw_put_wide(w, z & lowmask(L - 1), L - 1);
    }
}

static void rice_write(bw_t *w, const uint64_t *z, size_t cnt, unsigned k)
{
    for (size_t i = 0; i < cnt; i++)
        rice_put(w, z[i], k);
}

static inline __attribute__((always_inline)) uint64_t rice_get(br_t *r, unsigned k)
{
    if (r->n < 56)
        br_refill(r);
    /* Run of one-bits, capped at the escape length (<= 24 < 56 valid bits). */
    unsigned q = (unsigned)__builtin_ctzll(~r->acc | (uint64_t)1 << RICE_QESC);
    if (q < RICE_QESC) {
        if (q + 1 + k <= 56) {
            uint64_t z = (uint64_t)q << k | (r->acc >> (q + 1) & lowmask(k));
            br_skip(r, q + 1 + k);
            return z;
        }
        br_skip(r, q + 1);
        return (uint64_t)q << k | br_get_wide(r, k);
    }
    br_skip(r, RICE_QESC);
    unsigned l1 = (unsigned)br_get(r, 6);
    return (uint64_t)1 << l1 | br_get_wide(r, l1);
}

/*
 * ---- XOR (Gorilla) value coding ----
 * With w == NULL only counts bits, and stops early once past `limit`.
 */
static uint64_t xor_code(const double *v, size_t n, bw_t *w, uint64_t limit)
{
    uint64_t prev = st_f64_bits(v[0]);
    uint64_t bits = 64;
    unsigned wl = 0, wt = 0; /* window: leading and trailing zeros */
    if (w) {
        bw_put(w, prev & 0xffffffffu, 32);
        bw_put(w, prev >> 32, 32);
    }
    for (size_t i = 1; i < n; i++) {
        if (bits > limit)
            return bits;
        uint64_t cur = st_f64_bits(v[i]);
        uint64_t x = cur ^ prev;
        prev = cur;
        if (x == 0) {
            bits += 1;
            if (w)
                bw_put(w, 0, 1);
            continue;
        }
        unsigned lz = (unsigned)__builtin_clzll(x), tz = (unsigned)__builtin_ctzll(x);
        unsigned ws = 64 - wl - wt, ns = 64 - lz - tz;
        if (lz >= wl && tz >= wt && ws <= ns + 12) {
            bits += 2 + ws;
            if (w) {
                bw_put(w, 1, 2);
                bw_put_wide(w, x >> wt, ws);
            }
        } else {
            bits += 14 + ns;
            wl = lz;
            wt = tz;
            if (w) {
                bw_put(w, 3 | lz << 2 | (ns - 1) << 8, 14);
                bw_put_wide(w, x >> tz, ns);
            }
        }
    }
    return bits;
}

static int xor_decode(br_t *r, double *v, size_t n)
{
    uint64_t prev = br_get_wide(r, 64);
    unsigned wl = 0, wt = 0;
    v[0] = st_bits_f64(prev);
    for (size_t i = 1; i < n; i++) {
        if (r->n < 56)
            br_refill(r);
        uint64_t a = r->acc;
        if (!(a & 1)) {
            br_skip(r, 1);
        } else if (!(a & 2)) {
            br_skip(r, 2);
            prev ^= br_get_wide(r, 64 - wl - wt) << wt;
        } else {
            unsigned lz = (unsigned)(a >> 2) & 63, ns = ((unsigned)(a >> 8) & 63) + 1;
            br_skip(r, 14);
            if (lz + ns > 64)
                return ST_ECORRUPT;
            wl = lz;
            wt = 64 - lz - ns;
            prev ^= br_get_wide(r, ns) << wt;
        }
        v[i] = st_bits_f64(prev);
    }
    return 0;
}

/* ---- decimal value coding ---- */

/* m with m / 10^e == x bit-exactly and |m| < 2^53, if there is one. */
static inline int dec_try(double x, unsigned e, int64_t *m)
{
    double r = x * pow10_tab[e];
    if (!(fabs(r) < 0x1p53))
        return 0;
    int64_t t = (int64_t)r;
    double f = r - (double)t; /* exact */
    t += (f >= 0.5) - (f <= -0.5);
    if (t >= (int64_t)MANT_LIM || t <= -(int64_t)MANT_LIM)
        return 0;
    double back = e ? (double)t / pow10_tab[e] : (double)t; /* x / 1.0 == x */
    if (st_f64_bits(back) != st_f64_bits(x))
        return 0;
    *m = t;
    return 1;
}

/* Fill m[] and *e_out; 0 if no exponent reproduces every value. */
static int dec_find(const double *v, size_t n, int64_t *m, int *e_out)
{
    unsigned e = 0;
    size_t redo = 0; /* m[0..redo) were computed with a smaller e */
    for (size_t i = 0; i < n; i++) {
        while (!dec_try(v[i], e, &m[i])) {
            if (++e > DEC_EMAX)
                return 0;
            redo = i;
        }
    }
    for (size_t i = 0; i < redo; i++) {
        if (!dec_try(v[i], e, &m[i])) {
            /* Rare: not monotone in e near 2^53. Retry from scratch. */
            for (;;) {
                if (++e > DEC_EMAX)
                    return 0;
                size_t j = 0;
                while (j < n && dec_try(v[j], e, &m[j]))
                    j++;
                if (j == n)
                    break;
            }
            break;
        }
    }
    int ee = (int)e;
    if (e == 0) {
        /* Integers: factor out a common power of ten (e < 0). */
        int64_t pw = 1;
        int j = 0;
        while (j < DEC_NEG_MAX) {
            int64_t np = pw * 10;
            size_t i = 0;
            while (i < n && m[i] % np == 0)
                i++;
            if (i < n)
                break;
            pw = np;
            j++;
        }
        if (j > 0) {
            for (size_t i = 0; i < n; i++)
                m[i] /= pw;
            ee = -j;
        }
    }
    *e_out = ee;
    return 1;
}

/* ---- header ---- */

typedef struct hdr {
    unsigned ts_mode, val_mode;
    size_t n;
    size_t cols, groups; /* columnar block: s and g (cols 0: not columnar) */
    uint64_t gspan;      /* columnar block: G[g-1] - G[0] */
    int64_t t0;
    uint64_t span;
    const uint8_t *body; /* first byte after the header */
} hdr_t;

static int hdr_parse(const uint8_t *p, size_t len, hdr_t *h)
{
    if (!p || len < 1)
        return ST_ECORRUPT;
    const uint8_t *end = p + len, *q = p + 1;
    unsigned fmt = p[0];
    h->ts_mode = fmt & 3;
    h->val_mode = (fmt >> 2) & 7;
    h->cols = h->groups = 0;
    h->gspan = 0;
    int columnar = (fmt >> 5) == CODEC_VERSION_COLS;
    if (((fmt >> 5) != CODEC_VERSION && !columnar) || h->ts_mode >= CODEC_TS_MODES ||
        h->val_mode >= (columnar ? 1u : CODEC_V_MODES))
        return ST_ECORRUPT;
    uint64_t n;
    int r = st_uvarint_get(q, end, &n);
    if (r <= 0 || n < 1 || n > CODEC_MAX_SAMPLES)
        return ST_ECORRUPT;
    q += r;
    r = st_svarint_get(q, end, &h->t0);
    if (r <= 0)
        return ST_ECORRUPT;
    q += r;
    r = st_uvarint_get(q, end, &h->span);
    if (r <= 0)
        return ST_ECORRUPT;
    q += r;
    if (h->span > (uint64_t)INT64_MAX - (uint64_t)h->t0)
        return ST_ECORRUPT;
    if (columnar) {
        if (q >= end || *q < 2 || *q > CODEC_COLS_MAX || n % *q || h->span < (uint64_t)*q - 1)
            return ST_ECORRUPT;
        size_t s = *q++, g = (size_t)n / s;
        uint64_t gs = h->span - (s - 1);
        if (g == 1 && (gs != 0 || h->ts_mode != CODEC_TS_CONST))
            return ST_ECORRUPT;
        if (h->ts_mode == CODEC_TS_CONST && g >= 2 && (gs % (g - 1) != 0 || gs / (g - 1) < s))
            return ST_ECORRUPT;
        if (h->ts_mode == CODEC_TS_DOD && g < 3)
            return ST_ECORRUPT;
        h->n = (size_t)n;
        h->cols = s;
        h->groups = g;
        h->gspan = gs;
        h->val_mode = CODEC_V_COLUMNS;
        h->body = q;
        return 0;
    }
    if (n == 1 && (h->span != 0 || h->ts_mode != CODEC_TS_CONST))
        return ST_ECORRUPT;
    if (h->ts_mode == CODEC_TS_CONST && n >= 2 && (h->span < n - 1 || h->span % (n - 1) != 0))
        return ST_ECORRUPT;
    if ((h->ts_mode == CODEC_TS_DOD || h->val_mode == CODEC_V_DEC_DOD) && n < 3)
        return ST_ECORRUPT;
    h->n = (size_t)n;
    h->body = q;
    return 0;
}

int codec_block_modes(const uint8_t *p, size_t len, int *ts_mode, int *val_mode)
{
    hdr_t h;
    int rc = hdr_parse(p, len, &h);
    if (rc)
        return rc;
    *ts_mode = (int)h.ts_mode;
    *val_mode = (int)h.val_mode;
    return 0;
}

int codec_peek(const uint8_t *p, size_t len, size_t *n, int64_t *mint, int64_t *maxt)
{
    hdr_t h;
    int rc = hdr_parse(p, len, &h);
    if (rc)
        return rc;
    if (n)
        *n = h.n;
    if (mint)
        *mint = h.t0;
    if (maxt)
        *maxt = u2i((uint64_t)h.t0 + h.span);
    return 0;
}

/* ---- encoder ---- */

/* Write a bitstream of Rice codes into out (room reserved by the caller). */
static void put_rice_stream(st_buf_t *out, const uint64_t *z, size_t cnt, unsigned k)
{
    bw_t w = {out->data + out->len, 0, 0};
    rice_write(&w, z, cnt, k);
    out->len += bw_finish(&w, out->data + out->len);
}

static int encode_ts(const int64_t *ts, size_t n, uint64_t *za, uint64_t *zb, st_buf_t *out,
                     unsigned *mode)
{
    uint64_t d1 = n > 1 ? (uint64_t)ts[1] - (uint64_t)ts[0] : 0;
    int same = 1;
    for (size_t i = 2; i < n; i++)
        same &= (uint64_t)ts[i] - (uint64_t)ts[i - 1] == d1;
    if (same) {
        *mode = CODEC_TS_CONST;
        return 0;
    }
    /* n >= 3 here. za: delta - 1; zb: zigzag(delta-of-delta). */
    uint64_t prev = d1;
    uint64_t suma_d = 0, suma_dd = 0; /* bit lengths predict the smaller */
    za[0] = d1 - 1;
    for (size_t i = 2; i < n; i++) {
        uint64_t d = (uint64_t)ts[i] - (uint64_t)ts[i - 1];
        za[i - 1] = d - 1;
        zb[i - 2] = st_zigzag(u2i(d - prev));
        suma_d += bitlen(za[i - 1]);
        suma_dd += bitlen(zb[i - 2]);
        prev = d;
    }
    uint64_t ba, bb;
    unsigned ka = rice_pick(za, n - 1, &ba), kb = 0;
    size_t sa = 1 + (size_t)((ba + 7) / 8), sb = SIZE_MAX;
    if (suma_dd < suma_d + suma_d / 8 + 16) {
        kb = rice_pick(zb, n - 2, &bb);
        sb = uvarint_len(d1) + 1 + (size_t)((bb + 7) / 8);
    }
    int rc = st_buf_reserve(out, (sa < sb ? sa : sb) + WSLACK);
    if (rc)
        return rc;
    if (sa <= sb) {
        *mode = CODEC_TS_DELTA;
        out->data[out->len++] = (uint8_t)ka;
        put_rice_stream(out, za, n - 1, ka);
    } else {
        *mode = CODEC_TS_DOD;
        out->len += st_uvarint_put(out->data + out->len, d1);
        out->data[out->len++] = (uint8_t)kb;
        put_rice_stream(out, zb, n - 2, kb);
    }
    return 0;
}

static int encode_values(const double *v, size_t n, int64_t *m, uint64_t *za, uint64_t *zb,
                         st_buf_t *out, unsigned *mode)
{
    uint64_t b0 = st_f64_bits(v[0]);
    int same = 1;
    for (size_t i = 1; i < n; i++)
        same &= st_f64_bits(v[i]) == b0;
    if (same) {
        *mode = CODEC_V_CONST;
        return st_buf_put_u64le(out, b0);
    }
    /* n >= 2 here. */
    size_t best = SIZE_MAX;
    unsigned bmode = CODEC_V_XOR, ka = 0, kb = 0;
    int e = 0;
    if (dec_find(v, n, m, &e)) {
        /* Sums of residual bit lengths predict which order is smaller. */
        uint64_t sa = 0, sb = 0;
        za[0] = st_zigzag(m[1] - m[0]);
        for (size_t i = 2; i < n; i++) {
            za[i - 1] = st_zigzag(m[i] - m[i - 1]);
            zb[i - 2] = st_zigzag((m[i] - m[i - 1]) - (m[i - 1] - m[i - 2]));
            sa += bitlen(za[i - 1]);
            sb += bitlen(zb[i - 2]);
        }
        uint64_t bits;
        ka = rice_pick(za, n - 1, &bits);
        size_t head = svarint_len(e) + svarint_len(m[0]) + 1;
        best = head + (size_t)((bits + 7) / 8);
        bmode = CODEC_V_DEC_DELTA;
        if (n >= 3 && sb < sa + sa / 8 + 16) {
            kb = rice_pick(zb, n - 2, &bits);
            size_t s = head + svarint_len(m[1] - m[0]) + (size_t)((bits + 7) / 8);
            if (s < best) {
                best = s;
                bmode = CODEC_V_DEC_DOD;
            }
        }
    }
    /* XOR costs at least 64 + (n-1) bits: skip counting when it cannot win. */
    if (best > 8 + (n - 1) / 8) {
        size_t s =
            (size_t)((xor_code(v, n, NULL, best == SIZE_MAX ? UINT64_MAX : (uint64_t)best * 8) +
                      7) /
                     8);
        if (s < best) {
            best = s;
            bmode = CODEC_V_XOR;
        }
    }
    int rc = st_buf_reserve(out, best + WSLACK);
    if (rc)
        return rc;
    *mode = bmode;
    if (bmode == CODEC_V_XOR) {
        bw_t w = {out->data + out->len, 0, 0};
        xor_code(v, n, &w, UINT64_MAX);
        out->len += bw_finish(&w, out->data + out->len);
        return 0;
    }
    out->len += st_uvarint_put(out->data + out->len, st_zigzag(e));
    out->len += st_uvarint_put(out->data + out->len, st_zigzag(m[0]));
    if (bmode == CODEC_V_DEC_DELTA) {
        out->data[out->len++] = (uint8_t)ka;
        put_rice_stream(out, za, n - 1, ka);
    } else {
        out->len += st_uvarint_put(out->data + out->len, st_zigzag(m[1] - m[0]));
        out->data[out->len++] = (uint8_t)kb;
        put_rice_stream(out, zb, n - 2, kb);
    }
    return 0;
}

/* Width s of the groups of consecutive-ms timestamps (read off the first
 * group), if the block is made of at least two such groups; else 0. */
static size_t group_width(const int64_t *ts, size_t n)
{
    size_t s = 1;
    while (s < n && s <= CODEC_COLS_MAX && (uint64_t)ts[s] - (uint64_t)ts[0] == s)
        s++;
    if (s < 2 || s > CODEC_COLS_MAX || s >= n || n % s)
        return 0;
    for (size_t j = s; j < n; j += s)
        for (size_t c = 1; c < s; c++)
            if ((uint64_t)ts[j + c] - (uint64_t)ts[j] != c)
                return 0;
    return s;
}

/* DIFF: column cc against column rc (g values), in out if smaller than
 * `best` bytes; returns 1 if written. m holds 2 * g words. */
static int encode_diff(const double *cc, const double *rc, size_t g, size_t ref, int64_t *m,
                       uint64_t *z, size_t best, st_buf_t *out, int *err)
{
    unsigned e = 0;
    size_t i = 0;
    while (i < g) { /* the smallest e that both columns' values take exactly */
        if (dec_try(cc[i], e, &m[i]) && dec_try(rc[i], e, &m[g + i])) {
            i++;
            continue;
        }
        if (++e > DEC_EMAX)
            return 0;
        i = 0;
    }
    for (i = 0; i < g; i++)
        z[i] = st_zigzag(m[i] - m[g + i]);
    uint64_t bits;
    unsigned k = rice_pick(z, g, &bits);
    size_t size = 3 + 1 + (size_t)((bits + 7) / 8);
    if (size >= best)
        return 0;
    if ((*err = st_buf_reserve(out, size + WSLACK)))
        return 0;
    out->data[out->len++] = CODEC_V_DIFF;
    out->data[out->len++] = (uint8_t)ref;
    out->len += st_uvarint_put(out->data + out->len, e);
    out->data[out->len++] = (uint8_t)k;
    put_rice_stream(out, z, g, k);
    return 1;
}

/* The columnar block of n samples in groups of s (group_width); scratch as
 * codec_encode's (3 * n words) plus col (n doubles) and g (n / s words). */
static int encode_columns(const int64_t *ts, const double *v, size_t n, size_t s, uint64_t *za,
                          uint64_t *zb, int64_t *m, double *col, int64_t *gs, st_buf_t *out)
{
    size_t g = n / s, start = out->len;
    unsigned gmode = 0;
    int rc = st_buf_reserve(out, 2 + 3 * ST_UVARINT_MAX);
    if (rc)
        return rc;
    out->data[out->len++] = 0; /* format, patched below */
    out->len += st_uvarint_put(out->data + out->len, (uint64_t)n);
    out->len += st_uvarint_put(out->data + out->len, st_zigzag(ts[0]));
    out->len += st_uvarint_put(out->data + out->len, (uint64_t)ts[n - 1] - (uint64_t)ts[0]);
    out->data[out->len++] = (uint8_t)s;
    for (size_t j = 0; j < g; j++)
        gs[j] = ts[j * s];
    if ((rc = encode_ts(gs, g, za, zb, out, &gmode)))
        return rc;
    for (size_t c = 0; c < s; c++) {
        double *cc = col + c * g;
        for (size_t j = 0; j < g; j++)
            cc[j] = v[j * s + c];
        size_t same = c;
        for (size_t i = 0; i < c && same == c; i++)
            if (!memcmp(col + i * g, cc, g * sizeof *cc))
                same = i;
        if ((rc = st_buf_reserve(out, 2)))
            return rc;
        if (same < c) {
            out->data[out->len++] = CODEC_V_SAME;
            out->data[out->len++] = (uint8_t)same;
            continue;
        }
        size_t at = out->len++;
        unsigned cm = 0;
        if ((rc = encode_values(cc, g, m, za, zb, out, &cm)))
            return rc;
        out->data[at] = (uint8_t)cm;
        /* a difference from an earlier column, if smaller */
        size_t best = out->len - at, pick = c;
        st_buf_t d;
        st_buf_init(&d);
        for (size_t i = 0; i < c && !rc; i++) {
            size_t mark = d.len;
            if (encode_diff(cc, col + i * g, g, i, m, za, best, &d, &rc)) {
                memmove(d.data, d.data + mark, d.len - mark);
                d.len -= mark;
                best = d.len;
                pick = i;
            } else {
                d.len = mark;
            }
        }
        if (!rc && pick < c) {
            out->len = at;
            rc = st_buf_append(out, d.data, d.len);
        }
        st_buf_deinit(&d);
        if (rc)
            return rc;
    }
    out->data[start] = (uint8_t)(CODEC_VERSION_COLS << 5 | gmode);
    return 0;
}

int codec_encode(const int64_t *ts, const double *v, size_t n, st_buf_t *out)
{
    if (!ts || !v || !out || n < 1 || n > CODEC_MAX_SAMPLES)
        return ST_EINVAL;
    for (size_t i = 1; i < n; i++)
        if (ts[i] <= ts[i - 1])
            return ST_EINVAL;
    size_t start = out->len;
    uint64_t *scratch = malloc(n * 3 * sizeof(uint64_t));
    if (!scratch)
        return ST_ENOMEM;
    uint64_t *za = scratch, *zb = scratch + n;
    int64_t *m = (int64_t *)(scratch + 2 * n);
    unsigned tmode = 0, vmode = 0;
    int rc = st_buf_reserve(out, 1 + 3 * ST_UVARINT_MAX);
    if (rc)
        goto out;
    out->data[out->len++] = 0; /* format, patched below */
    out->len += st_uvarint_put(out->data + out->len, (uint64_t)n);
    out->len += st_uvarint_put(out->data + out->len, st_zigzag(ts[0]));
    out->len += st_uvarint_put(out->data + out->len, (uint64_t)ts[n - 1] - (uint64_t)ts[0]);
    rc = encode_ts(ts, n, za, zb, out, &tmode);
    if (rc)
        goto out;
    rc = encode_values(v, n, m, za, zb, out, &vmode);
    if (rc)
        goto out;
    out->data[start] = (uint8_t)(CODEC_VERSION << 5 | vmode << 2 | tmode);
    size_t s = group_width(ts, n);
    if (s) { /* the columnar form, kept if smaller */
        st_buf_t cb;
        st_buf_init(&cb);
        double *col = malloc(n * sizeof *col);
        int64_t *gs = malloc((n / s) * sizeof *gs);
        rc = col && gs ? encode_columns(ts, v, n, s, za, zb, m, col, gs, &cb) : ST_ENOMEM;
        if (!rc && cb.len < out->len - start) {
            out->len = start;
            rc = st_buf_append(out, cb.data, cb.len);
        }
        free(col);
        free(gs);
        st_buf_deinit(&cb);
    }
out:
    if (rc)
        out->len = start;
    free(scratch);
    return rc;
}

/* ---- decoder ---- */

static const uint8_t *decode_ts(const hdr_t *h, const uint8_t *p, const uint8_t *end, int64_t *ts)
{
    size_t n = h->n;
    uint64_t t0 = (uint64_t)h->t0, span = h->span;
    ts[0] = h->t0;
    if (h->ts_mode == CODEC_TS_CONST) {
        uint64_t step = n > 1 ? span / (n - 1) : 0, t = t0;
        for (size_t i = 1; i < n; i++) {
            t += step;
            ts[i] = u2i(t);
        }
        return p;
    }
    uint64_t d = 0, acc = 0;
    size_t i = 1;
    int bad = 0;
    if (h->ts_mode == CODEC_TS_DOD) {
        int r = st_uvarint_get(p, end, &d);
        if (r <= 0)
            return NULL;
        p += r;
        if (d == 0 || d > span)
            return NULL;
        acc = d;
        ts[1] = u2i(t0 + acc);
        i = 2;
    }
    if (p >= end || *p > 63)
        return NULL;
    unsigned k = *p++;
    br_t r;
    br_init(&r, p, end);
    if (h->ts_mode == CODEC_TS_DELTA) {
        for (; i < n; i++) {
            d = rice_get(&r, k) + 1;
            uint64_t nacc = acc + d;
            bad |= (nacc <= acc) | (nacc > span);
            acc = nacc;
            ts[i] = u2i(t0 + acc);
        }
    } else {
        for (; i < n; i++) {
            d += (uint64_t)st_unzigzag(rice_get(&r, k));
            uint64_t nacc = acc + d;
            bad |= (nacc <= acc) | (nacc > span);
            acc = nacc;
            ts[i] = u2i(t0 + acc);
        }
    }
    if (bad || acc != span)
        return NULL;
    return br_finish(&r);
}

static const uint8_t *decode_values(const hdr_t *h, const uint8_t *p, const uint8_t *end, double *v)
{
    size_t n = h->n;
    if (h->val_mode == CODEC_V_CONST) {
        if (end - p < 8)
            return NULL;
        double c = st_bits_f64(st_load_u64le(p));
        for (size_t i = 0; i < n; i++)
            v[i] = c;
        return p + 8;
    }
    br_t r;
    if (h->val_mode == CODEC_V_XOR) {
        br_init(&r, p, end);
        if (xor_decode(&r, v, n))
            return NULL;
        return br_finish(&r);
    }
    int64_t e, m0, d1 = 0;
    int rc = st_svarint_get(p, end, &e);
    if (rc <= 0 || e < -DEC_EMAX || e > DEC_EMAX)
        return NULL;
    p += rc;
    rc = st_svarint_get(p, end, &m0);
    if (rc <= 0)
        return NULL;
    p += rc;
    size_t i = 1;
    const uint64_t lim = 2 * (MANT_LIM - 1); /* |m| < 2^53  <=>  m + 2^53-1 <= lim */
    uint64_t m = (uint64_t)m0, d = 0;
    if (h->val_mode == CODEC_V_DEC_DOD) {
        rc = st_svarint_get(p, end, &d1);
        if (rc <= 0)
            return NULL;
        p += rc;
        d = (uint64_t)d1;
        i = 2;
    }
    if (p >= end || *p > 63)
        return NULL;
    unsigned k = *p++;
    br_init(&r, p, end);
    /* value = m / 10^e, or m * 10^-e when e < 0 (one rounding either way) */
    const int neg = e < 0;
    const double s = pow10_tab[neg ? -e : e];
#define DEC_VAL(mm) (neg ? (double)u2i(mm) * s : (double)u2i(mm) / s)
    uint64_t bad = (m + (MANT_LIM - 1) > lim);
    v[0] = DEC_VAL(m);
    if (i == 2) {
        m += d;
        bad |= (m + (MANT_LIM - 1) > lim);
        v[1] = DEC_VAL(m);
    }
    if (h->val_mode == CODEC_V_DEC_DELTA) {
        for (; i < n; i++) {
            m += (uint64_t)st_unzigzag(rice_get(&r, k));
            bad |= (m + (MANT_LIM - 1) > lim);
            v[i] = DEC_VAL(m);
        }
    } else {
        for (; i < n; i++) {
            d += (uint64_t)st_unzigzag(rice_get(&r, k));
            m += d;
            bad |= (m + (MANT_LIM - 1) > lim);
            v[i] = DEC_VAL(m);
        }
    }
#undef DEC_VAL
    if (bad)
        return NULL;
    return br_finish(&r);
}

/* A columnar block's timestamps: the group starts, then each group. */
static const uint8_t *decode_groups(const hdr_t *h, const uint8_t *p, const uint8_t *end,
                                    int64_t *ts)
{
    hdr_t gh = *h;
    gh.n = h->groups;
    gh.span = h->gspan;
    size_t s = h->cols, g = h->groups;
    p = decode_ts(&gh, p, end, ts);
    if (!p)
        return NULL;
    for (size_t j = 1; j < g; j++)
        if ((uint64_t)ts[j] - (uint64_t)ts[j - 1] < s)
            return NULL;
    for (size_t j = g; j-- > 0;) { /* in place, from the back: j * s >= j */
        int64_t t = ts[j];
        for (size_t c = s; c-- > 0;)
            ts[j * s + c] = u2i((uint64_t)t + c);
    }
    return p;
}

/* A DIFF column (after its mode byte) into cc; NULL if corrupt. */
static const uint8_t *decode_diff(const uint8_t *p, const uint8_t *end, size_t c, const double *col,
                                  size_t g, double *cc)
{
    uint64_t e;
    int r;
    if (end - p < 3 || p[0] >= c)
        return NULL;
    const double *rc = col + p[0] * g;
    p++;
    if ((r = st_uvarint_get(p, end, &e)) <= 0 || e > DEC_EMAX)
        return NULL;
    p += r;
    if (p >= end || *p > 63)
        return NULL;
    unsigned k = *p++;
    br_t b;
    br_init(&b, p, end);
    const uint64_t lim = 2 * (MANT_LIM - 1);
    uint64_t bad = 0;
    for (size_t i = 0; i < g; i++) {
        int64_t m;
        uint64_t d = (uint64_t)st_unzigzag(rice_get(&b, k));
        if (!dec_try(rc[i], (unsigned)e, &m)) {
            bad = 1;
            m = 0;
        }
        uint64_t x = (uint64_t)m + d;
        bad |= (x + (MANT_LIM - 1) > lim);
        cc[i] = e ? (double)u2i(x) / pow10_tab[e] : (double)u2i(x);
    }
    if (bad)
        return NULL;
    return br_finish(&b);
}

/* A columnar block's values: each column, then interleaved into v. */
static int decode_columns(const hdr_t *h, const uint8_t **pp, const uint8_t *end, double *v)
{
    size_t s = h->cols, g = h->groups;
    const uint8_t *p = *pp;
    double *col = malloc(h->n * sizeof *col);
    if (!col)
        return ST_ENOMEM;
    int rc = 0;
    for (size_t c = 0; c < s && !rc; c++) {
        double *cc = col + c * g;
        if (p >= end) {
            rc = ST_ECORRUPT;
        } else if (*p == CODEC_V_SAME) {
            if (end - p < 2 || p[1] >= c) {
                rc = ST_ECORRUPT;
            } else {
                memcpy(cc, col + p[1] * g, g * sizeof *cc);
                p += 2;
            }
        } else if (*p == CODEC_V_DIFF) {
            const uint8_t *q = decode_diff(p + 1, end, c, col, g, cc);
            if (!q)
                rc = ST_ECORRUPT;
            else
                p = q;
        } else if (*p < CODEC_V_MODES && (*p != CODEC_V_DEC_DOD || g >= 3)) {
            hdr_t ch = *h;
            ch.n = g;
            ch.val_mode = *p++;
            if (!(p = decode_values(&ch, p, end, cc)))
                rc = ST_ECORRUPT;
        } else {
            rc = ST_ECORRUPT;
        }
    }
    if (!rc)
        for (size_t c = 0; c < s; c++)
            for (size_t j = 0; j < g; j++)
                v[j * s + c] = col[c * g + j];
    free(col);
    *pp = p;
    return rc;
}

int codec_decode(const uint8_t *p, size_t len, int64_t *ts, double *v, size_t cap, size_t *n)
{
    if (!ts || !v || !n)
        return ST_EINVAL;
    hdr_t h;
    int rc = hdr_parse(p, len, &h);
    if (rc)
        return rc;
    if (h.n > cap)
        return ST_ELIMIT;
    const uint8_t *end = p + len;
    if (h.cols) {
        const uint8_t *q = decode_groups(&h, h.body, end, ts);
        if (!q)
            return ST_ECORRUPT;
        if ((rc = decode_columns(&h, &q, end, v)))
            return rc;
        if (q != end)
            return ST_ECORRUPT;
        *n = h.n;
        return 0;
    }
    const uint8_t *q = decode_ts(&h, h.body, end, ts);
    if (!q)
        return ST_ECORRUPT;
    q = decode_values(&h, q, end, v);
    if (q != end)
        return ST_ECORRUPT;
    *n = h.n;
    return 0;
}

int codec_decode_ts(const uint8_t *p, size_t len, int64_t *ts, size_t cap, size_t *n)
{
    if (!ts || !n)
        return ST_EINVAL;
    hdr_t h;
    int rc = hdr_parse(p, len, &h);
    if (rc)
        return rc;
    if (h.n > cap)
        return ST_ELIMIT;
    const uint8_t *end = p + len;
    if (!(h.cols ? decode_groups(&h, h.body, end, ts) : decode_ts(&h, h.body, end, ts)))
        return ST_ECORRUPT;
    *n = h.n;
    return 0;
}

/* st_text — see st_text.h. */
#include "st_text.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
size_t st_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t need;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
        v = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        v = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return need;
}

size_t st_utf8_put(char *d, unsigned cp)
{
    if (cp < 0x80) {
        d[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (char)(0xc0 | (cp >> 6));
        d[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xe0 | (cp >> 12));
        d[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        d[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    d[0] = (char)(0xf0 | (cp >> 18));
    d[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    d[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

int st_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int st_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path (label names and most values): 8 bytes a step */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w & 0x8080808080808080ull)
                break;
            i += 8;
        }
        while (i < n && p[i] < 0x80)
            i++;
        if (i == n)
            break;
        uint32_t cp;
        size_t len = st_utf8_seq(p + i, n - i, &cp);
        if (len == 0)
            return 0;
        i += len;
    }
    return 1;
}

int st_json_escape(st_buf_t *b, const void *sv, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = sv;
    size_t i = 0;
    while (i < len) {
        /* Copy the longest run that needs no escaping in one append. */
        size_t j = i;
        while (j < len && s[j] >= 0x20 && s[j] < 0x80 && s[j] != '"' && s[j] != '\\')
            j++;
        if (j > i) {
            int rc = st_buf_append(b, s + i, j - i);
            if (rc)
                return rc;
            i = j;
            continue;
        }
        unsigned char c = s[i];
        char esc[8];
        size_t el = 0;
        const void *src = esc;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            el = 2;
            i++;
        } else if (c < 0x20) {
            esc[0] = '\\';
            el = 2;
            switch (c) {
            case '\n':
                esc[1] = 'n';
                break;
            case '\r':
                esc[1] = 'r';
                break;
            case '\t':
                esc[1] = 't';
                break;
            case '\b':
                esc[1] = 'b';
                break;
            case '\f':
                esc[1] = 'f';
                break;
            default:
                memcpy(esc + 1, "u00", 3);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                el = 6;
            }
            i++;
        } else {
            uint32_t cp;
            size_t sl = st_utf8_seq(s + i, len - i, &cp);
            if (sl == 0) {
                memcpy(esc, "\xef\xbf\xbd", 3);
                el = 3;
                i++;
            } else if (cp == 0x2028 || cp == 0x2029) {
                memcpy(esc, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
                el = 6;
                i += sl;
            } else {
                src = s + i;
                el = sl;
                i += sl;
            }
        }
        int rc = st_buf_append(b, src, el);
        if (rc)
            return rc;
    }
    return 0;
}

int st_json_str(st_buf_t *b, const void *s, size_t len)
{
    size_t len0 = b->len;
    int rc = st_buf_put_u8(b, '"');
    if (!rc)
        rc = st_json_escape(b, s, len);
    if (!rc)
        rc = st_buf_put_u8(b, '"');
    if (rc)
        b->len = len0;
    return rc;
}

/* ---- numbers -------------------------------------------------------------- */

/*
 * Shortest round-trip digits, slow path (any finite v > 0).
 * A normal double whose shortest form has d <= 15 significant digits prints
 * as exactly those digits (plus zeros) at 15 digits (DBL_DIG: 15-digit
 * decimals survive decimal -> double -> decimal), so 15, 16, 17 digits are
 * tried in that order and trailing zeros dropped: the same answer as trying
 * 1, 2, ... 17 digits, in at most 3 snprintf calls instead of up to 17.
 * Subnormals (fewer bits of precision) take the long way.
 */
static int shortest_slow(double v, char *dig, int *exp10)
{
    char tmp[40];
    for (int p = v < DBL_MIN ? 0 : 14; p < 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p, v);
        if (p == 16 || strtod(tmp, NULL) == v)
            break;
    }
    /* tmp: d.ddde[+-]XX */
    int nd = 0;
    char *e = strchr(tmp, 'e');
    for (char *p = tmp; p < e; p++)
        if (*p >= '0' && *p <= '9')
            dig[nd++] = *p;
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    dig[nd] = 0;
    *exp10 = atoi(e + 1);
    return nd;
}

/* 10^k as integers, k <= 17. */
static const uint64_t P10U[18] = {1ull,
                                  10ull,
                                  100ull,
                                  1000ull,
                                  10000ull,
                                  100000ull,
                                  1000000ull,
                                  10000000ull,
                                  100000000ull,
                                  1000000000ull,
                                  10000000000ull,
                                  100000000000ull,
                                  1000000000000ull,
                                  10000000000000ull,
                                  100000000000000ull,
                                  1000000000000000ull,
                                  10000000000000000ull,
                                  100000000000000000ull};

#if LDBL_MANT_DIG >= 64
/* 10^k, exact in a 64-bit mantissa for k <= 27 (5^27 < 2^64). */
static const long double P10L[28] = {1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,
                                     1e7L,  1e8L,  1e9L,  1e10L, 1e11L, 1e12L, 1e13L,
                                     1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L, 1e20L,
                                     1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};
/* 10^k, exact as doubles for k <= 22. */
static const double P10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* D * 10^-k == v, decided exactly: D and 10^k are exact doubles and one
 * IEEE division is correctly rounded (Clinger's fast path). */
static int round_trips(uint64_t d, int k, double v)
{
    return d < (1ull << 53) && k >= 0 && k <= 22 && (double)d / P10[k] == v;
}

/*
 * Fast shortest digits for v in [1e-7, 1e15) (what query results mostly
 * hold); 0 = not handled. With e fixed so that 10^e <= v < 10^(e+1), for
 * p = 15, 16 significant digits the two p-digit integers nearest to
 * v * 10^(p-1-e) are checked exactly with round_trips(); a candidate it
 * cannot decide (>= 2^53, or 10^k inexact) sends the value to the slow
 * path. At 17 digits the rounding of v * 10^k (computed with a 64-bit
 * mantissa, error < 1/128 unit) is within half an ulp of v, so it always
 * round-trips; it is the closest 17-digit string (what Prometheus prints)
 * unless v * 10^k is within 1/64 of a tie, which goes to the slow path.
 */
static int shortest_fast(double v, char *dig, int *exp10)
{
    if (!(v >= 1e-7 && v < 1e15))
        return 0;
    int b2;
    frexp(v, &b2); /* v in [2^(b2-1), 2^b2): log10(v) within one of this */
    int e = (int)floor((double)(b2 - 1) * 0.30102999566398120);
    long double x17 = 0;
    for (int tries = 0;; tries++) {
        int k = 16 - e;
        if (tries == 4 || k < 0 || k > 27)
            return 0;
        x17 = (long double)v * P10L[k];
        if (x17 < 1e16L)
            e--;
        else if (x17 >= 1e17L)
            e++;
        else
            break;
    }
    /* x17 = v * 10^(16-e) in [1e16, 1e17): whole part and fraction (exact) */
    uint64_t whole = (uint64_t)x17;
    long double f = x17 - (long double)whole;
    for (int p = 15; p <= 17; p++) {
        int k = p - 1 - e;
        uint64_t div = P10U[17 - p];
        /* v * 10^k = (whole + f) / div: its integer part and fraction */
        long double frac = ((long double)(whole % div) + f) / (long double)div;
        uint64_t base = whole / div;
        uint64_t near = base + (frac >= 0.5L);
        uint64_t cand[2] = {near, frac >= 0.5L ? near - 1 : near + 1};
        /* x17 carries up to 1/256 unit of rounding error: near a tie which
         * candidate is closest (the one Go and Prometheus print) is not
         * known here; it matters when both would round-trip */
        int tie = frac > 0.5L - 1.0L / 128 && frac < 0.5L + 1.0L / 128;
        if (tie && p == 17)
            return 0;
        for (int c = 0; c < (p == 17 ? 1 : 2); c++) {
            uint64_t d = cand[c];
            int ee = e, kk = k;
            if (d == P10U[p]) { /* rounds up into the next decade: 10^(e+1) */
                d = P10U[p - 1];
                ee = e + 1;
                kk = k - 1;
            }
            if (d < P10U[p - 1] || d >= P10U[p])
                continue;
            if (p < 17) {
                if (d >= (1ull << 53) || kk > 22)
                    return 0; /* cannot decide quickly */
                if (!round_trips(d, kk, v))
                    continue;
                if (tie && c == 0 && cand[1] < P10U[p] && round_trips(cand[1], k, v))
                    return 0; /* both round-trip: the closer one is not known */
            }
            for (int i = p - 1; i >= 0; i--) {
                dig[i] = (char)('0' + d % 10);
                d /= 10;
            }
            int nd = p;
            while (nd > 1 && dig[nd - 1] == '0')
                nd--;
            dig[nd] = 0;
            *exp10 = ee;
            return nd;
        }
    }
    return 0;
}
#endif

#if defined(__SIZEOF_INT128__)
/* 5^k for k <= 27 (5^27 < 2^63). */
static const uint64_t P5U[28] = {
    1ull,
    5ull,
    25ull,
    125ull,
    625ull,
    3125ull,
    15625ull,
    78125ull,
    390625ull,
    1953125ull,
    9765625ull,
    48828125ull,
    244140625ull,
    1220703125ull,
    6103515625ull,
    30517578125ull,
    152587890625ull,
    762939453125ull,
    3814697265625ull,
    19073486328125ull,
    95367431640625ull,
    476837158203125ull,
    2384185791015625ull,
    11920928955078125ull,
    59604644775390625ull,
    298023223876953125ull,
    1490116119384765625ull,
    7450580596923828125ull,
};

/* floor(x * 2^s) for |s| < 64 as used below, and whether it was exact. */
static uint64_t floor_shift(unsigned __int128 x, int s, int *exact)
{
    if (s >= 0) {
        *exact = 1;
        return (uint64_t)(x << s);
    }
    *exact = (x & (((unsigned __int128)1 << -s) - 1)) == 0;
    return (uint64_t)(x >> -s);
}

/* "00" "01" ... "99": two digits per division. */
static const char DIGITS2[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Digit removal state: floors of the bounds and of v, whether vm is in
 * the interval with only zeros dropped, whether vr's dropped digits after
 * the last one are all zero, the last dropped digit of vr, the count. */
typedef struct drop {
    uint64_t vm, vr, vp;
    int vm_tz, vr_tz;
    unsigned last;
    int removed;
} drop_t;

/* Drop n digits (when a shorter number is still in (vm, vp], or always
 * with force); n is a constant at each call so the divisions become
 * multiplications. */
static inline __attribute__((always_inline)) void drop_digits(drop_t *d, int n, int force)
{
    uint64_t pn = P10U[n], p1 = P10U[n - 1];
    if (!force && d->vp / pn <= d->vm / pn)
        return;
    d->vm_tz &= d->vm % pn == 0;
    d->vr_tz &= d->last == 0 && d->vr % p1 == 0;
    d->last = (unsigned)(d->vr / p1 % 10);
    d->vr /= pn;
    d->vp /= pn;
    d->vm /= pn;
    d->removed += n;
}

/*
 * Exact shortest digits for a normal v in [1e-10, 1e16) with 128-bit
 * integers; 0 = not handled. v = m * 2^e2; the doubles next to v bound the
 * decimals that read back as v: (c -+ 1/2 ulp), or with a lower gap half
 * as wide when v is a power of two (m = 2^52); the bounds belong to the
 * interval when m is even (round-half-even reading). At the scale 10^k
 * that puts v in [1e17, 1e19) the interval is wider than 10 (so at least
 * one digit is dropped and rounding sees the first dropped digit), and
 * L, C, U = bound * 10^k = bound * 5^k * 2^(f + k) are exact in 128 bits
 * (5^k < 2^63, bound < 2^56), so their floors vm, vr, vp (< 2^64) and
 * whether each is an integer are exact. Digits are then dropped while the interval
 * still holds a shorter number (vp/10 > vm/10, and further while vm is
 * exact and in the interval with trailing zeros); the result is vr rounded
 * (half to even on an exact tie), or vr + 1 when vr is below the interval:
 * the shortest decimal that reads back as v, the closest such one to v,
 * as Go's strconv (Ryu) prints it. pow2_go = 0 leaves powers of two to
 * the caller (the printf-loop layout wants the symmetric answer there).
 */
static int shortest_exact(double v, char *dig, int *exp10, int pow2_go)
{
    if (!(v >= 1e-10 && v < 1e16))
        return 0;
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int bexp = (int)(bits >> 52) & 0x7ff;
    uint64_t frac = bits & ((1ull << 52) - 1);
    uint64_t m = frac | (1ull << 52);
    int e2 = bexp - 1075;
    uint64_t c, dl, du;
    int f;
    if (frac == 0) {
        if (!pow2_go)
            return 0;
        c = 4 * m; /* lower neighbour is half as far */
        dl = 1;
        du = 2;
        f = e2 - 2;
    } else {
        c = 2 * m;
        dl = 1;
        du = 1;
        f = e2 - 1;
    }
    int incl = (m & 1) == 0;
    /* floor(log10(v)) or one less: v in [2^(bexp-1023), 2^(bexp-1022)) */
    int e = (int)floor((double)(bexp - 1023) * 0.30102999566398120);
    int k = 17 - e;
    if (k < 0 || k > 27)
        return 0;
    int s = f + k;
    if (s >= 8 || s <= -120)
        return 0;
    unsigned __int128 p5 = P5U[k];
    unsigned __int128 xc = (unsigned __int128)c * p5;
    int ex_m, ex_r, ex_p;
    uint64_t vm = floor_shift(xc - dl * p5, s, &ex_m);
    uint64_t vr = floor_shift(xc, s, &ex_r);
    uint64_t vp = floor_shift(xc + du * p5, s, &ex_p);
    if (ex_p && !incl)
        vp--;
    drop_t d = {vm, vr, vp, incl && ex_m, ex_r, 0, 0};
    /* How many digits can go is monotone in the count, so it is found by
     * trying 16, 8, 4, 2, 1 once each; dropping n digits at once keeps
     * the same flags as n single steps. */
    drop_digits(&d, 16, 0);
    drop_digits(&d, 8, 0);
    drop_digits(&d, 4, 0);
    drop_digits(&d, 2, 0);
    drop_digits(&d, 1, 0);
    if (d.vm_tz) {
        while (d.vm % 10 == 0)
            drop_digits(&d, 1, 0);
    }
    if (d.vr_tz && d.last == 5 && d.vr % 2 == 0)
        d.last = 4; /* exact tie: to even */
    uint64_t out = d.vr + ((d.vr == d.vm && !d.vm_tz) || d.last >= 5);
    int removed = d.removed;
    while (out % 10 == 0) {
        out /= 10;
        removed++;
    }
    char tmp[24], *end = tmp + sizeof tmp, *q = end;
    while (out >= 100) {
        unsigned r = (unsigned)(out % 100);
        out /= 100;
        q -= 2;
        memcpy(q, DIGITS2 + 2 * r, 2);
    }
    if (out >= 10) {
        q -= 2;
        memcpy(q, DIGITS2 + 2 * out, 2);
    } else {
        *--q = (char)('0' + out);
    }
    int nd = (int)(end - q);
    memcpy(dig, q, (size_t)nd);
    dig[nd] = 0;
    *exp10 = nd - 1 + removed - k;
    return nd;
}
#endif

/*
 * Slow shortest digits of an exact power of two (a normal v with no
 * fraction bits), whose lower neighbour is twice as near as the upper
 * one: for 1, 2, ... digits the nearest decimal at that length reads back
 * as v, or else its neighbour on the other side of v may (the interval
 * reaches further up); the first that does is Go's answer.
 */
static int shortest_pow2(double v, char *dig, int *exp10)
{
    char tmp[48];
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, v);
        double r = strtod(tmp, NULL);
        char *ep = strchr(tmp, 'e');
        int x = atoi(ep + 1);
        uint64_t d = 0;
        for (char *c = tmp; c < ep; c++)
            if (*c >= '0' && *c <= '9')
                d = d * 10 + (uint64_t)(*c - '0');
        if (r != v) {
            if (r < v && ++d == P10U[p]) { /* 99..9 + 1 = 10..0, one decade up */
                d = P10U[p - 1];
                x++;
            } else if (r > v && --d < P10U[p - 1]) { /* 10..0 - 1 = 99..9, one down */
                d = P10U[p] - 1;
                x--;
            }
            snprintf(tmp, sizeof tmp, "%" PRIu64 "e%d", d, x - (p - 1));
            if (strtod(tmp, NULL) != v)
                continue;
        }
        int nd = p;
        for (int i = p - 1; i >= 0; i--) {
            dig[i] = (char)('0' + d % 10);
            d /= 10;
        }
        while (nd > 1 && dig[nd - 1] == '0')
            nd--;
        dig[nd] = 0;
        *exp10 = x;
        return nd;
    }
    return shortest_slow(v, dig, exp10);
}

static int shortest_digits(double v, char *dig, int *exp10, int pow2_go)
{
    int nd;
#if defined(__SIZEOF_INT128__)
    nd = shortest_exact(v, dig, exp10, pow2_go);
    if (nd)
        return nd;
#else
    (void)pow2_go;
#endif
    if (pow2_go && v >= DBL_MIN) {
        uint64_t bits;
        memcpy(&bits, &v, sizeof bits);
        if ((bits & ((1ull << 52) - 1)) == 0)
            return shortest_pow2(v, dig, exp10);
    }
#if LDBL_MANT_DIG >= 64
    nd = shortest_fast(v, dig, exp10);
    if (nd)
        return nd;
#endif
    return shortest_slow(v, dig, exp10);
}

int st_shortest_digits(double v, char *dig, int *exp10)
{
    return shortest_digits(v, dig, exp10, 1);
}

int st_shortest_digits_ref(double v, char *dig, int *exp10)
{
    return shortest_slow(v, dig, exp10);
}

size_t st_fmt_double_to(char *out, double v)
{
    if (isnan(v)) {
        memcpy(out, "NaN", 3);
        return 3;
    }
    if (isinf(v)) {
        memcpy(out, v > 0 ? "+Inf" : "-Inf", 4);
        return 4;
    }
    char *p = out;
    if (signbit(v))
        *p++ = '-';
    if (v == 0) {
        *p++ = '0';
        return (size_t)(p - out);
    }
    char dig[40];
    int e;
    int nd = st_shortest_digits(fabs(v), dig, &e);
    /* value = 0.dig * 10^(e+1) */
    int point = e + 1; /* digits before the decimal point */
    if (point <= 0) {
        *p++ = '0';
        *p++ = '.';
        memset(p, '0', (size_t)-point);
        p += -point;
        memcpy(p, dig, (size_t)nd);
        p += nd;
    } else if (point >= nd) {
        memcpy(p, dig, (size_t)nd);
        memset(p + nd, '0', (size_t)(point - nd));
        p += point;
    } else {
        memcpy(p, dig, (size_t)point);
        p += point;
        *p++ = '.';
        memcpy(p, dig + point, (size_t)(nd - point));
        p += nd - point;
    }
    return (size_t)(p - out);
}

int st_fmt_double(st_buf_t *b, double v)
{
    if (st_buf_reserve(b, ST_FMT_DOUBLE_MAX))
        return ST_ENOMEM;
    b->len += st_fmt_double_to((char *)b->data + b->len, v);
    return 0;
}

/* The printf("%.15g".."%.17g") loop itself: the reference for subnormals. */
static int fmt_g_loop(char *tmp, size_t cap, double v)
{
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, cap, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    return n;
}

int st_fmt_double_g(st_buf_t *b, double v)
{
    char tmp[48];
    int n;
    if (isnan(v))
        return ST_BUF_LIT(b, "NaN");
    if (isinf(v))
        return v > 0 ? ST_BUF_LIT(b, "+Inf") : ST_BUF_LIT(b, "-Inf");
    double a = fabs(v);
    if (v == 0 || a < DBL_MIN) {
        /* 0, -0, subnormals: %.15g of a subnormal may round-trip without
         * being the shortest form, so print exactly what the loop prints */
        n = fmt_g_loop(tmp, sizeof tmp, v);
        return st_buf_append(b, tmp, (size_t)n);
    }
    /* For a normal double the closest P-digit decimal round-trips exactly
     * when P >= the shortest digit count nd, so the loop stops at
     * P = max(15, nd) and prints the shortest digits; %g then chooses the
     * layout from P and the exponent, and drops trailing zeros. */
    char dig[24];
    int e;
    int nd = shortest_digits(a, dig, &e, 0);
    int prec = nd > 15 ? nd : 15;
    char *p = tmp;
    if (v < 0)
        *p++ = '-';
    if (e < -4 || e >= prec) {
        *p++ = dig[0];
        if (nd > 1) {
            *p++ = '.';
            memcpy(p, dig + 1, (size_t)nd - 1);
            p += nd - 1;
        }
        p += snprintf(p, (size_t)(tmp + sizeof tmp - p), "e%c%02d", e < 0 ? '-' : '+',
                      e < 0 ? -e : e);
    } else if (e < 0) {
        *p++ = '0';
        *p++ = '.';
        for (int i = 0; i < -e - 1; i++)
            *p++ = '0';
        memcpy(p, dig, (size_t)nd);
        p += nd;
    } else if (nd <= e + 1) {
        memcpy(p, dig, (size_t)nd);
        p += nd;
        for (int i = nd; i < e + 1; i++)
            *p++ = '0';
    } else {
        memcpy(p, dig, (size_t)e + 1);
        p += e + 1;
        *p++ = '.';
        memcpy(p, dig + e + 1, (size_t)(nd - e - 1));
        p += nd - e - 1;
    }
    return st_buf_append(b, tmp, (size_t)(p - tmp));
}

/* ---- Go quoted strings ---------------------------------------------------- */

static int is_octal(char c)
{
    return c >= '0' && c <= '7';
}

/* Record an error at scan position `end` (escape at errpos, letter esc). */
static st_unquote_err_t unq_fail(st_unquote_t *res, st_unquote_err_t e, size_t end, size_t errpos,
                                 char esc)
{
    res->end = end;
    res->errpos = errpos;
    res->esc = esc;
    return e;
}

st_unquote_err_t st_unquote_go(const char *s, size_t n, size_t start, char *dst, st_unquote_t *res)
{
    char q = s[start];
    size_t pos = start + 1;
    char *d = dst;
    memset(res, 0, sizeof *res);
    while (pos < n && s[pos] != q) {
        char c = s[pos];
        if (q != '`' && c == '\n')
            return unq_fail(res, ST_UNQ_UNTERMINATED, pos, start, 0);
        if (q == '`' || c != '\\') {
            *d++ = c;
            pos++;
            continue;
        }
        size_t epos = pos;
        if (++pos >= n)
            break;
        c = s[pos++];
        switch (c) {
        case 'a':
            *d++ = '\a';
            break;
        case 'b':
            *d++ = '\b';
            break;
        case 'f':
            *d++ = '\f';
            break;
        case 'n':
            *d++ = '\n';
            break;
        case 'r':
            *d++ = '\r';
            break;
        case 't':
            *d++ = '\t';
            break;
        case 'v':
            *d++ = '\v';
            break;
        case '\\':
        case '"':
        case '\'':
            *d++ = c;
            break;
        case 'x': {
            int h1 = pos + 1 < n ? st_hexval(s[pos]) : -1;
            int h2 = h1 >= 0 ? st_hexval(s[pos + 1]) : -1;
            if (h2 < 0)
                return unq_fail(res, ST_UNQ_BAD_X, pos, epos, c);
            *d++ = (char)(h1 * 16 + h2);
            pos += 2;
            break;
        }
        case 'u':
        case 'U': {
            size_t nd = c == 'u' ? 4 : 8;
            unsigned cp = 0;
            if (pos + nd > n)
                return unq_fail(res, ST_UNQ_BAD_U, pos, epos, c);
            for (size_t i = 0; i < nd; i++) {
                int h = st_hexval(s[pos + i]);
                if (h < 0)
                    return unq_fail(res, ST_UNQ_BAD_U, pos, epos, c);
                cp = cp * 16 + (unsigned)h;
            }
            if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return unq_fail(res, ST_UNQ_BAD_CODEPOINT, pos, epos, c);
            pos += nd;
            d += st_utf8_put(d, cp);
            break;
        }
        default:
            if (is_octal(c)) {
                if (pos + 2 > n || !is_octal(s[pos]) || !is_octal(s[pos + 1]))
                    return unq_fail(res, ST_UNQ_BAD_OCTAL, pos, epos, c);
                unsigned v = (unsigned)(c - '0') * 64 + (unsigned)(s[pos] - '0') * 8 +
                             (unsigned)(s[pos + 1] - '0');
                if (v > 255)
                    return unq_fail(res, ST_UNQ_BAD_OCTAL, pos, epos, c);
                *d++ = (char)v;
                pos += 2;
                break;
            }
            return unq_fail(res, ST_UNQ_UNKNOWN_ESCAPE, pos, epos, c);
        }
    }
    if (pos >= n)
        return unq_fail(res, ST_UNQ_UNTERMINATED, start, start, 0);
    pos++; /* closing quote */
    *d = '\0';
    res->len = (size_t)(d - dst);
    res->end = pos;
    if (!st_utf8_valid(dst, res->len))
        return unq_fail(res, ST_UNQ_BAD_UTF8, pos, start, 0);
    return ST_UNQ_OK;
}

const char *st_unquote_strerror(st_unquote_err_t e)
{
    switch (e) {
    case ST_UNQ_OK:
        return "ok";
    case ST_UNQ_UNTERMINATED:
        return "unterminated quoted string";
    case ST_UNQ_BAD_X:
        return "invalid \\x escape in quoted string";
    case ST_UNQ_BAD_U:
        return "invalid unicode escape in quoted string";
    case ST_UNQ_BAD_CODEPOINT:
        return "unicode escape is not a valid code point";
    case ST_UNQ_BAD_OCTAL:
        return "invalid octal escape in quoted string";
    case ST_UNQ_UNKNOWN_ESCAPE:
        return "unknown escape sequence in quoted string";
    case ST_UNQ_BAD_UTF8:
        return "quoted string is not valid UTF-8";
    }
    return "invalid quoted string";
}

/* ---- Prometheus names ----------------------------------------------------- */

static int name_ok(const char *s, size_t n, int colon)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
              (i > 0 && c >= '0' && c <= '9')))
            return 0;
    }
    return 1;
}

int st_prom_label_name_ok(const char *s, size_t n)
{
    return name_ok(s, n, 0);
}

int st_prom_metric_name_ok(const char *s, size_t n)
{
    return name_ok(s, n, 1);
}

/* ---- durations ------------------------------------------------------------ */

#define MS_DAY 86400000LL

/* Units largest first; "ms" is looked up before "m" and "s". */
static const struct {
    const char *u;
    size_t len;
    int64_t ms;
} dur_units[] = {{"y", 1, 365 * MS_DAY}, {"w", 1, 7 * MS_DAY}, {"d", 1, MS_DAY}, {"h", 1, 3600000},
                 {"m", 1, 60000},        {"s", 1, 1000},       {"ms", 2, 1}};
enum { DUR_Y = 0, DUR_MS = 6, DUR_NUNITS = 7 };

/* Index in dur_units of the unit at s[0..n), or -1. */
static int dur_unit(const char *s, size_t n)
{
    if (n >= 2 && s[0] == 'm' && s[1] == 's')
        return DUR_MS;
    for (int i = 0; n >= 1 && i < DUR_MS; i++)
        if (s[0] == dur_units[i].u[0])
            return i;
    return -1;
}

int st_duration_parse(const char *s, size_t n, unsigned flags, int64_t cap, int64_t *ms,
                      size_t *used)
{
    size_t p = 0;
    int64_t total = 0;
    int last = -1;
    while (p < n && s[p] >= '0' && s[p] <= '9') {
        int64_t v = 0;
        for (; p < n && s[p] >= '0' && s[p] <= '9'; p++) {
            if (v > (cap - (s[p] - '0')) / 10)
                return ST_ELIMIT;
            v = v * 10 + (s[p] - '0');
        }
        int u = dur_unit(s + p, n - p);
        if (u < 0 || (u == DUR_Y && !(flags & ST_DUR_YEARS)))
            return ST_EPARSE;
        if ((flags & ST_DUR_ORDERED) && u <= last)
            return ST_EPARSE;
        last = u;
        p += dur_units[u].len;
        if (v > (cap - total) / dur_units[u].ms)
            return ST_ELIMIT;
        total += v * dur_units[u].ms;
    }
    if (last < 0)
        return ST_EPARSE;
    *ms = total;
    *used = p;
    return 0;
}

int st_fmt_duration(st_buf_t *b, int64_t ms)
{
    char tmp[32];
    int rc = 0;
    if (ms < 0) {
        rc = ST_BUF_LIT(b, "-");
        ms = ms == INT64_MIN ? INT64_MAX : -ms;
    }
    if (ms == 0)
        return rc ? rc : ST_BUF_LIT(b, "0s");
    for (size_t i = 0; i < DUR_NUNITS && !rc; i++) {
        if (ms >= dur_units[i].ms) {
            int n =
                snprintf(tmp, sizeof tmp, "%" PRId64 "%s", ms / dur_units[i].ms, dur_units[i].u);
            rc = st_buf_append(b, tmp, (size_t)n);
            ms %= dur_units[i].ms;
        }
    }
    return rc;
}

const char *st_fmt_duration_one(char *buf, size_t cap, int64_t ms)
{
    if (ms == 0) {
        snprintf(buf, cap, "0");
        return buf;
    }
    size_t u = 2; /* d: weeks and years are not used here */
    while (ms % dur_units[u].ms)
        u++;
    snprintf(buf, cap, "%" PRId64 "%s", ms / dur_units[u].ms, dur_units[u].u);
    return buf;
}

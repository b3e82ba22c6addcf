/* promql_result — Prometheus HTTP API rendering of evaluation results. */
#include "promql_eval.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"
#include "st_text.h"

/* ---- JSON ---------------------------------------------------------------- */

/*
 * Shortest round-trip digits of |v| (finite, non-zero): digits and exponent.
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

static int shortest(double v, char *dig, int *exp10)
{
#if LDBL_MANT_DIG >= 64
    int nd = shortest_fast(v, dig, exp10);
    if (nd)
        return nd;
#endif
    return shortest_slow(v, dig, exp10);
}

int promql_fmt_value(st_buf_t *b, double v)
{
    if (isnan(v))
        return ST_BUF_LIT(b, "NaN");
    if (isinf(v))
        return v > 0 ? ST_BUF_LIT(b, "+Inf") : ST_BUF_LIT(b, "-Inf");
    int rc = 0;
    if (v == 0)
        return signbit(v) ? ST_BUF_LIT(b, "-0") : ST_BUF_LIT(b, "0");
    if (v < 0) {
        rc |= st_buf_put_u8(b, '-');
        v = -v;
    }
    char dig[40];
    int e;
    int nd = shortest(v, dig, &e);
    /* value = 0.dig * 10^(e+1) */
    int point = e + 1; /* digits before the decimal point */
    if (point <= 0) {
        rc |= ST_BUF_LIT(b, "0.");
        for (int i = 0; i < -point; i++)
            rc |= st_buf_put_u8(b, '0');
        rc |= st_buf_append(b, dig, (size_t)nd);
    } else if (point >= nd) {
        rc |= st_buf_append(b, dig, (size_t)nd);
        for (int i = nd; i < point; i++)
            rc |= st_buf_put_u8(b, '0');
    } else {
        rc |= st_buf_append(b, dig, (size_t)point);
        rc |= st_buf_put_u8(b, '.');
        rc |= st_buf_append(b, dig + point, (size_t)(nd - point));
    }
    return rc ? ST_ENOMEM : 0;
}

/* Seconds with up to 3 decimals, trailing zeros dropped ("12", "12.5", "12.125"). */
static int fmt_ts(st_buf_t *b, int64_t ms)
{
    char tmp[32], *end = tmp + sizeof tmp, *p = end;
    uint64_t a = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
    unsigned frac = (unsigned)(a % 1000);
    uint64_t secs = a / 1000;
    if (frac) {
        int nd = 3;
        while (frac % 10 == 0) {
            frac /= 10;
            nd--;
        }
        for (int i = 0; i < nd; i++) {
            *--p = (char)('0' + frac % 10);
            frac /= 10;
        }
        *--p = '.';
    }
    do {
        *--p = (char)('0' + secs % 10);
        secs /= 10;
    } while (secs);
    if (ms < 0)
        *--p = '-';
    return st_buf_append(b, p, (size_t)(end - p));
}

static int fmt_point(st_buf_t *b, int64_t ts, double v)
{
    int rc = st_buf_put_u8(b, '[');
    rc |= fmt_ts(b, ts);
    rc |= ST_BUF_LIT(b, ",\"");
    rc |= promql_fmt_value(b, v);
    rc |= ST_BUF_LIT(b, "\"]");
    return rc;
}

static int fmt_metric(st_buf_t *b, const promql_series_t *s)
{
    int rc = ST_BUF_LIT(b, "{\"metric\":{");
    for (size_t i = 0; i < s->nlabels; i++) {
        if (i)
            rc |= st_buf_put_u8(b, ',');
        rc |= st_json_str(b, s->labels[i].name, s->labels[i].name_len);
        rc |= st_buf_put_u8(b, ':');
        rc |= st_json_str(b, s->labels[i].value, s->labels[i].value_len);
    }
    rc |= st_buf_put_u8(b, '}');
    return rc;
}

int promql_result_json(const promql_result_t *r, int range, st_buf_t *b)
{
    int rc = 0;
    switch (r->type) {
    case PROMQL_RES_SCALAR:
        rc |= ST_BUF_LIT(b, "{\"resultType\":\"scalar\",\"result\":");
        rc |= fmt_point(b, r->ts_ms, r->scalar);
        rc |= st_buf_put_u8(b, '}');
        break;
    case PROMQL_RES_STRING:
        rc |= ST_BUF_LIT(b, "{\"resultType\":\"string\",\"result\":[");
        rc |= fmt_ts(b, r->ts_ms);
        rc |= st_buf_put_u8(b, ',');
        rc |= st_json_str(b, r->str, r->str_len);
        rc |= ST_BUF_LIT(b, "]}");
        break;
    default: {
        int mat = range || r->type == PROMQL_RES_MATRIX;
        rc |= mat ? ST_BUF_LIT(b, "{\"resultType\":\"matrix\",\"result\":[")
                  : ST_BUF_LIT(b, "{\"resultType\":\"vector\",\"result\":[");
        for (size_t i = 0; i < r->nseries; i++) {
            const promql_series_t *s = &r->series[i];
            if (i)
                rc |= st_buf_put_u8(b, ',');
            rc |= fmt_metric(b, s);
            if (mat) {
                rc |= ST_BUF_LIT(b, ",\"values\":[");
                for (size_t k = 0; k < s->n; k++) {
                    if (k)
                        rc |= st_buf_put_u8(b, ',');
                    rc |= fmt_point(b, s->ts[k], s->v[k]);
                }
                rc |= ST_BUF_LIT(b, "]}");
            } else {
                rc |= ST_BUF_LIT(b, ",\"value\":");
                rc |= fmt_point(b, s->ts[0], s->v[0]);
                rc |= st_buf_put_u8(b, '}');
            }
        }
        rc |= ST_BUF_LIT(b, "]}");
    }
    }
    return rc ? ST_ENOMEM : 0;
}

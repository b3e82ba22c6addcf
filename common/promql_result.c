/* promql_result — Prometheus HTTP API rendering of evaluation results. */
#include "promql_eval.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_util.h"
#include "st_err.h"

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
static int shortest(double v, char *dig, int *exp10)
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

static int fmt_ts(st_buf_t *b, int64_t ms)
{
    char tmp[32];
    int n;
    uint64_t a = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
    const char *sign = ms < 0 ? "-" : "";
    unsigned frac = (unsigned)(a % 1000);
    if (!frac)
        n = snprintf(tmp, sizeof tmp, "%s%" PRIu64, sign, a / 1000);
    else if (frac % 100 == 0)
        n = snprintf(tmp, sizeof tmp, "%s%" PRIu64 ".%u", sign, a / 1000, frac / 100);
    else if (frac % 10 == 0)
        n = snprintf(tmp, sizeof tmp, "%s%" PRIu64 ".%02u", sign, a / 1000, frac / 10);
    else
        n = snprintf(tmp, sizeof tmp, "%s%" PRIu64 ".%03u", sign, a / 1000, frac);
    return st_buf_append(b, tmp, (size_t)n);
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
        rc |= http_json_str(b, s->labels[i].name, s->labels[i].name_len);
        rc |= st_buf_put_u8(b, ':');
        rc |= http_json_str(b, s->labels[i].value, s->labels[i].value_len);
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
        rc |= http_json_str(b, r->str, r->str_len);
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

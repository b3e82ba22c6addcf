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

/* Seconds with up to 3 decimals, trailing zeros dropped ("12", "12.5",
 * "12.125") written at out (room for 24 bytes); returns the length. */
static size_t fmt_ts_to(char *out, int64_t ms)
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
    memcpy(out, p, (size_t)(end - p));
    return (size_t)(end - p);
}

static int fmt_ts(st_buf_t *b, int64_t ms)
{
    if (st_buf_reserve(b, 24))
        return ST_ENOMEM;
    b->len += fmt_ts_to((char *)b->data + b->len, ms);
    return 0;
}

/* [ts,"v"]: one reservation, written in place (the bulk of a matrix). */
static int fmt_point(st_buf_t *b, int64_t ts, double v)
{
    if (st_buf_reserve(b, 24 + ST_FMT_DOUBLE_MAX + 5))
        return ST_ENOMEM;
    char *p0 = (char *)b->data + b->len, *p = p0;
    *p++ = '[';
    p += fmt_ts_to(p, ts);
    *p++ = ',';
    *p++ = '"';
    p += st_fmt_double_to(p, v);
    *p++ = '"';
    *p++ = ']';
    b->len += (size_t)(p - p0);
    return 0;
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

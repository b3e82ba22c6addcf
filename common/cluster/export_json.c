/* export_json — VictoriaMetrics-style export lines; see export_json.h. */
#include "export_json.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"
#include "st_text.h"

int export_json_number(st_buf_t *b, double v)
{
    char tmp[40];
    int n;
    if (isnan(v)) {
        n = snprintf(tmp, sizeof tmp, "NaN");
    } else if (isinf(v)) {
        n = snprintf(tmp, sizeof tmp, v > 0 ? "Infinity" : "-Infinity");
    } else if (v == 0 && signbit(v)) {
        n = snprintf(tmp, sizeof tmp, "-0");
    } else if (fabs(v) < 9007199254740992.0 && v == (double)(int64_t)v) {
        n = snprintf(tmp, sizeof tmp, "%" PRId64, (int64_t)v);
    } else {
        return st_fmt_double_g(b, v);
    }
    return st_buf_append(b, tmp, (size_t)n);
}

int export_json_labels(st_buf_t *b, const st_label_t *l, size_t n)
{
    int rc = st_buf_put_u8(b, '{');
    for (size_t i = 0; i < n && !rc; i++) {
        if (i)
            rc |= st_buf_put_u8(b, ',');
        rc |= st_json_str(b, l[i].name, l[i].name_len);
        rc |= st_buf_put_u8(b, ':');
        rc |= st_json_str(b, l[i].value, l[i].value_len);
    }
    rc |= st_buf_put_u8(b, '}');
    return rc ? ST_ENOMEM : 0;
}

int export_json_line(st_buf_t *b, const st_label_t *l, size_t nl, const int64_t *ts,
                     const double *v, size_t n)
{
    int rc = ST_BUF_LIT(b, "{\"metric\":");
    rc |= export_json_labels(b, l, nl);
    rc |= ST_BUF_LIT(b, ",\"values\":[");
    for (size_t i = 0; i < n && !rc; i++) {
        if (i)
            rc |= st_buf_put_u8(b, ',');
        rc |= export_json_number(b, v[i]);
    }
    rc |= ST_BUF_LIT(b, "],\"timestamps\":[");
    char tmp[24];
    for (size_t i = 0; i < n && !rc; i++) {
        int k = snprintf(tmp, sizeof tmp, i ? ",%" PRId64 : "%" PRId64, ts[i]);
        rc |= st_buf_append(b, tmp, (size_t)k);
    }
    rc |= ST_BUF_LIT(b, "]}\n");
    return rc ? ST_ENOMEM : 0;
}

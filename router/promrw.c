/*
 * promrw — remote-write bodies -> series. See promrw.h.
 *
 * Wire layout (prompb): WriteRequest{1: TimeSeries, 3: MetricMetadata},
 * TimeSeries{1: Label, 2: Sample, 3: Exemplar, 4: Histogram},
 * Label{1: name, 2: value}, Sample{1: double value, 2: int64 timestamp}.
 * Fields are read with wire_next(); unknown fields are skipped as protobuf
 * says. A series' labels go into a fixed array (one more than the limit, so
 * "too many" is seen without storing them), its samples into arrays that
 * grow once and are kept for the next request.
 */
#include "promrw.h"

#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"
#include "wire.h"

enum {
    F_WRITE_SERIES = 1,
    F_WRITE_METADATA = 3,
    F_SERIES_LABEL = 1,
    F_SERIES_SAMPLE = 2,
    F_SERIES_EXEMPLAR = 3,
    F_SERIES_HISTOGRAM = 4,
    F_LABEL_NAME = 1,
    F_LABEL_VALUE = 2,
    F_SAMPLE_VALUE = 1,
    F_SAMPLE_TS = 2,
};

#define PROMRW_SAMPLES_MIN 1024 /* first size of the sample arrays */

struct promrw {
    size_t max_decoded;
    uint8_t *buf; /* inflated body */
    size_t bufcap;
    st_label_t lab[ST_LABELS_MAX + 1];
    int64_t *ts;
    double *v;
    size_t cap;
};

int promrw_create(size_t max_decoded, promrw_t **out)
{
    promrw_t *d = calloc(1, sizeof *d);
    *out = d;
    if (!d)
        return ST_ENOMEM;
    d->max_decoded = max_decoded;
    return 0;
}

void promrw_destroy(promrw_t *d)
{
    if (!d)
        return;
    free(d->buf);
    free(d->ts);
    free(d->v);
    free(d);
}

int promrw_uncompress(promrw_t *d, const uint8_t *body, size_t len, const uint8_t **out,
                      size_t *outlen)
{
    size_t n;
    if (snappy_uncompressed_length((const char *)body, len, &n) != SNAPPY_OK)
        return ST_ECORRUPT;
    if (n > d->max_decoded)
        return ST_ELIMIT;
    if (n + 1 > d->bufcap) {
        uint8_t *b = malloc(n + 1);
        if (!b)
            return ST_ENOMEM;
        free(d->buf);
        d->buf = b;
        d->bufcap = n + 1;
    }
    size_t got = n;
    if (snappy_uncompress((const char *)body, len, (char *)d->buf, &got) != SNAPPY_OK || got != n)
        return ST_ECORRUPT;
    *out = d->buf;
    *outlen = n;
    return 0;
}

/* The common sample encoding (value, then timestamp) is read inline; any
 * other field order or extra fields go through wire_next(). */
static int decode_sample(const uint8_t *p, size_t len, int64_t *ts, double *v)
{
    const uint8_t *end = p + len;
    wire_field_t f;
    int rc;
    uint64_t u = 0, t = 0;
    while ((rc = wire_next(&p, end, &f)) == 1) {
        if (f.num == F_SAMPLE_VALUE && f.type == WIRE_I64)
            u = f.u;
        else if (f.num == F_SAMPLE_TS && f.type == WIRE_VARINT)
            t = f.u;
    }
    memcpy(v, &u, sizeof *v);
    *ts = (int64_t)t;
    return rc;
}

static int grow_samples(promrw_t *d, size_t need)
{
    size_t cap = d->cap ? d->cap : PROMRW_SAMPLES_MIN;
    while (cap < need)
        cap *= 2;
    int64_t *ts = realloc(d->ts, cap * sizeof *ts);
    if (ts)
        d->ts = ts;
    double *v = ts ? realloc(d->v, cap * sizeof *v) : NULL;
    if (!v)
        return ST_ENOMEM;
    d->v = v;
    d->cap = cap;
    return 0;
}

static int label_less(const st_label_t *a, const st_label_t *b)
{
    uint32_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(a->name, b->name, n);
    return c < 0 || (c == 0 && a->name_len < b->name_len);
}

static void say_bad(promrw_bad_fn bad, void *arg, size_t index, const st_label_t *l, uint32_t n,
                    const char *why)
{
    char reason[PROMRW_REASON_MAX];
    int k = st_labels_find(l, n, ST_METRIC_LABEL);
    if (k >= 0 && l[k].value_len)
        snprintf(reason, sizeof reason, "series %zu (%.*s): %s", index,
                 (int)(l[k].value_len < 64 ? l[k].value_len : 64), l[k].value, why);
    else
        snprintf(reason, sizeof reason, "series %zu: %s", index, why);
    bad(arg, index, reason);
}

/* One TimeSeries: collect, check, deliver (or refuse). */
static int decode_series(promrw_t *d, const uint8_t *p, size_t len, size_t index,
                         promrw_series_fn fn, promrw_bad_fn bad, void *arg, promrw_stats_t *st)
{
    const uint8_t *end = p + len;
    wire_field_t f;
    int rc;
    uint32_t nl = 0, too_many = 0;
    size_t ns = 0;
    while ((rc = wire_next(&p, end, &f)) == 1) {
        if (f.type != WIRE_LEN)
            continue;
        switch (f.num) {
        case F_SERIES_LABEL: {
            st_label_t l;
            if ((rc = wire_label_decode(f.data, f.len, &l)) < 0)
                return rc;
            if (l.value_len == 0)
                break; /* empty value: no label */
            if (nl == ST_LABELS_MAX + 1) {
                too_many = 1;
                break;
            }
            d->lab[nl++] = l;
            break;
        }
        case F_SERIES_SAMPLE:
            if (ns == d->cap && (rc = grow_samples(d, ns + 1)) < 0)
                return rc;
            if ((rc = decode_sample(f.data, f.len, &d->ts[ns], &d->v[ns])) < 0)
                return rc;
            ns++;
            break;
        case F_SERIES_EXEMPLAR:
            st->exemplars++;
            break;
        case F_SERIES_HISTOGRAM:
            st->histograms++;
            break;
        default:
            break;
        }
    }
    if (rc < 0)
        return rc;
    st->series++;
    /* Prometheus sends labels sorted; sort anything else (insertion sort:
     * a handful of labels, nearly always already in order) */
    for (uint32_t i = 1; i < nl; i++) {
        st_label_t x = d->lab[i];
        uint32_t k = i;
        while (k > 0 && label_less(&x, &d->lab[k - 1])) {
            d->lab[k] = d->lab[k - 1];
            k--;
        }
        d->lab[k] = x;
    }
    const char *why = NULL;
    if (too_many || nl > ST_LABELS_MAX)
        why = "too many labels (max 64)";
    else if (st_labels_validate(d->lab, nl, &why) == 0 &&
             st_labels_find(d->lab, nl, ST_METRIC_LABEL) < 0)
        why = "no __name__ label";
    if (why) {
        st->bad_series++;
        say_bad(bad, arg, index, d->lab, nl, why);
        return 0;
    }
    if (ns == 0)
        return 0; /* nothing to write (e.g. exemplars or histograms only) */
    st->samples += ns;
    promrw_series_t s = {index, d->lab, nl, d->ts, d->v, ns};
    return fn(arg, &s);
}

int promrw_decode(promrw_t *d, const uint8_t *msg, size_t len, promrw_series_fn fn,
                  promrw_bad_fn bad, void *arg, promrw_stats_t *st)
{
    const uint8_t *p = msg, *end = msg + len;
    wire_field_t f;
    int rc;
    size_t index = 0;
    memset(st, 0, sizeof *st);
    while ((rc = wire_next(&p, end, &f)) == 1) {
        if (f.num == F_WRITE_SERIES && f.type == WIRE_LEN) {
            if ((rc = decode_series(d, f.data, f.len, index++, fn, bad, arg, st)) < 0)
                return rc;
        } else if (f.num == F_WRITE_METADATA && f.type == WIRE_LEN) {
            st->metadata++;
        }
    }
    return rc < 0 ? rc : 0;
}

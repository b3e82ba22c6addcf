/*
 * rread — Prometheus remote-read messages by hand, snappy by libsnappy. See rread.h.
 *
 * The decoder walks the message tree with one reader per level; every length
 * is checked against what is left of its enclosing message before it is
 * used, so a truncated or lying body ends in ST_EPARSE, never a read past
 * the buffer. Labels and samples of the current series go into two arrays
 * reused from series to series.
 */
#include "rread.h"

#include <snappy-c.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"
#include "st_varint.h"

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* ---- encoding ----------------------------------------------------------------------------- */

static int put_tag(st_buf_t *b, unsigned field, unsigned wt)
{
    return st_buf_put_uvarint(b, (uint64_t)field << 3 | wt);
}

static int put_bytes(st_buf_t *b, unsigned field, const void *p, size_t n)
{
    int rc = put_tag(b, field, WT_LEN);
    if (rc == 0)
        rc = st_buf_put_uvarint(b, n);
    return rc == 0 ? st_buf_append(b, p, n) : rc;
}

int rread_encode_request(st_buf_t *out, int64_t start_ms, int64_t end_ms, const st_matcher_t *m,
                         size_t n)
{
    st_buf_t q, lm;
    st_buf_init(&q);
    st_buf_init(&lm);
    int rc = put_tag(&q, 1, WT_VARINT);
    rc = rc ? rc : st_buf_put_uvarint(&q, (uint64_t)start_ms);
    rc = rc ? rc : put_tag(&q, 2, WT_VARINT);
    rc = rc ? rc : st_buf_put_uvarint(&q, (uint64_t)end_ms);
    for (size_t i = 0; i < n && rc == 0; i++) {
        st_buf_reset(&lm);
        if (m[i].type != ST_MATCH_EQ) {
            rc = put_tag(&lm, 1, WT_VARINT);
            rc = rc ? rc : st_buf_put_uvarint(&lm, (uint64_t)m[i].type);
        }
        rc = rc ? rc : put_bytes(&lm, 2, m[i].name, strlen(m[i].name));
        rc = rc ? rc : put_bytes(&lm, 3, m[i].value, strlen(m[i].value));
        rc = rc ? rc : put_bytes(&q, 3, lm.data, lm.len);
    }
    rc = rc ? rc : put_bytes(out, 1, q.data, q.len);
    st_buf_deinit(&q);
    st_buf_deinit(&lm);
    return rc;
}

/* ---- decoding ----------------------------------------------------------------------------- */

typedef struct rd {
    const uint8_t *p, *end;
} rd_t;

typedef struct dctx {
    rread_label_t *labels;
    size_t nlabels, labels_cap;
    rread_sample_t *samples;
    size_t nsamples, samples_cap;
    const uint8_t *base;
    char *err;
    size_t errlen;
    rread_series_fn fn;
    void *ud;
} dctx_t;

static int fail(dctx_t *d, const uint8_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(dctx_t *d, const uint8_t *at, const char *fmt, ...)
{
    if (d->err && d->errlen) {
        int k = snprintf(d->err, d->errlen, "byte %zu: ", (size_t)(at - d->base));
        va_list ap;
        va_start(ap, fmt);
        if (k >= 0 && (size_t)k < d->errlen)
            vsnprintf(d->err + k, d->errlen - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return ST_EPARSE;
}

static int get_varint(dctx_t *d, rd_t *r, uint64_t *v)
{
    int k = st_uvarint_get(r->p, r->end, v);
    if (k <= 0)
        return fail(d, r->p, "bad varint");
    r->p += k;
    return 0;
}

/* The next field: its number, wire type and, for WT_LEN, the sub-reader. */
static int next_field(dctx_t *d, rd_t *r, unsigned *field, unsigned *wt, rd_t *sub, uint64_t *v)
{
    uint64_t tag;
    int rc = get_varint(d, r, &tag);
    if (rc < 0)
        return rc;
    *field = (unsigned)(tag >> 3);
    *wt = (unsigned)(tag & 7);
    if (*field == 0)
        return fail(d, r->p, "field number 0");
    switch (*wt) {
    case WT_VARINT:
        return get_varint(d, r, v);
    case WT_I64:
        if (r->end - r->p < 8)
            return fail(d, r->p, "truncated fixed64");
        *v = st_load_u64le(r->p);
        r->p += 8;
        return 0;
    case WT_I32:
        if (r->end - r->p < 4)
            return fail(d, r->p, "truncated fixed32");
        *v = st_load_u32le(r->p);
        r->p += 4;
        return 0;
    case WT_LEN: {
        uint64_t n;
        if ((rc = get_varint(d, r, &n)) < 0)
            return rc;
        if (n > (uint64_t)(r->end - r->p))
            return fail(d, r->p, "length %llu past the end", (unsigned long long)n);
        sub->p = r->p;
        sub->end = r->p + n;
        r->p += n;
        return 0;
    }
    default:
        return fail(d, r->p, "unsupported wire type %u", *wt);
    }
}

static int decode_label(dctx_t *d, rd_t r)
{
    if (d->nlabels == RREAD_MAX_LABELS)
        return ST_ELIMIT;
    if (d->nlabels == d->labels_cap &&
        st_grow(&d->labels, &d->labels_cap, sizeof(*d->labels), 16) < 0)
        return ST_ENOMEM;
    rread_label_t *l = &d->labels[d->nlabels++];
    *l = (rread_label_t){.name = "", .value = ""};
    while (r.p < r.end) {
        unsigned f, wt;
        rd_t s;
        uint64_t v;
        int rc = next_field(d, &r, &f, &wt, &s, &v);
        if (rc < 0)
            return rc;
        if ((f == 1 || f == 2) && wt != WT_LEN)
            return fail(d, r.p, "label field %u: wire type %u", f, wt);
        if (f == 1) {
            l->name = (const char *)s.p;
            l->name_len = (size_t)(s.end - s.p);
        } else if (f == 2) {
            l->value = (const char *)s.p;
            l->value_len = (size_t)(s.end - s.p);
        }
    }
    return 0;
}

static int decode_sample(dctx_t *d, rd_t r)
{
    if (d->nsamples == RREAD_MAX_SAMPLES)
        return ST_ELIMIT;
    if (d->nsamples == d->samples_cap &&
        st_grow(&d->samples, &d->samples_cap, sizeof(*d->samples), 64) < 0)
        return ST_ENOMEM;
    rread_sample_t *s = &d->samples[d->nsamples++];
    *s = (rread_sample_t){0};
    while (r.p < r.end) {
        unsigned f, wt;
        rd_t sub;
        uint64_t v;
        int rc = next_field(d, &r, &f, &wt, &sub, &v);
        if (rc < 0)
            return rc;
        if (f == 1 && wt == WT_I64)
            s->v = st_bits_f64(v);
        else if (f == 2 && wt == WT_VARINT)
            s->t_ms = (int64_t)v;
        else if (f == 1 || f == 2)
            return fail(d, r.p, "sample field %u: wire type %u", f, wt);
    }
    return 0;
}

static int decode_series(dctx_t *d, rd_t r)
{
    d->nlabels = d->nsamples = 0;
    while (r.p < r.end) {
        unsigned f, wt;
        rd_t s;
        uint64_t v;
        int rc = next_field(d, &r, &f, &wt, &s, &v);
        if (rc == 0 && (f == 1 || f == 2) && wt != WT_LEN)
            rc = fail(d, r.p, "series field %u: wire type %u", f, wt);
        else if (rc == 0 && f == 1)
            rc = decode_label(d, s);
        else if (rc == 0 && f == 2)
            rc = decode_sample(d, s);
        if (rc < 0)
            return rc;
    }
    rread_series_t ser = {d->labels, d->nlabels, d->samples, d->nsamples};
    return d->fn(d->ud, &ser);
}

/* The children (field `want`, WT_LEN) of a message, each decoded by `child`. */
static int decode_repeated(dctx_t *d, rd_t r, unsigned want, int (*child)(dctx_t *, rd_t))
{
    while (r.p < r.end) {
        unsigned f, wt;
        rd_t s;
        uint64_t v;
        int rc = next_field(d, &r, &f, &wt, &s, &v);
        if (rc < 0)
            return rc;
        if (f != want)
            continue;
        if (wt != WT_LEN)
            return fail(d, r.p, "field %u: wire type %u", f, wt);
        if ((rc = child(d, s)) < 0)
            return rc;
    }
    return 0;
}

/* QueryResult: its timeseries. */
static int decode_result(dctx_t *d, rd_t r)
{
    return decode_repeated(d, r, 1, decode_series);
}

int rread_decode_response(const uint8_t *p, size_t n, rread_series_fn fn, void *ud, char *err,
                          size_t errlen)
{
    dctx_t d = {.base = p, .err = err, .errlen = errlen, .fn = fn, .ud = ud};
    if (err && errlen)
        err[0] = '\0';
    rd_t r = {p, p + n};
    int rc = decode_repeated(&d, r, 1, decode_result);
    if (rc == ST_ELIMIT && err && errlen && !err[0])
        snprintf(err, errlen, "a series has over %u labels or %u samples", RREAD_MAX_LABELS,
                 RREAD_MAX_SAMPLES);
    free(d.labels);
    free(d.samples);
    return rc;
}

/* ---- snappy ------------------------------------------------------------------------------- */

int rread_snappy_compress(st_buf_t *out, const void *p, size_t n)
{
    size_t cap = snappy_max_compressed_length(n);
    st_buf_reset(out);
    if (st_buf_reserve(out, cap) < 0)
        return ST_ENOMEM;
    if (snappy_compress(p, n, (char *)out->data, &cap) != SNAPPY_OK)
        return ST_ENOMEM;
    out->len = cap;
    return 0;
}

int rread_snappy_uncompress(st_buf_t *out, const void *p, size_t n, size_t max)
{
    size_t len;
    st_buf_reset(out);
    if (snappy_uncompressed_length(p, n, &len) != SNAPPY_OK)
        return ST_EPARSE;
    if (len > max)
        return ST_ELIMIT;
    if (st_buf_reserve(out, len + 1) < 0)
        return ST_ENOMEM;
    if (snappy_uncompress(p, n, (char *)out->data, &len) != SNAPPY_OK)
        return ST_EPARSE;
    out->len = len;
    return 0;
}

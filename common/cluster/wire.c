/* wire — protobuf wire format for hot payloads; see wire.h. */
#include "wire.h"

#include <string.h>

#include "st_err.h"
#include "st_varint.h"

int wire_next_any(const uint8_t **pp, const uint8_t *end, wire_field_t *f)
{
    const uint8_t *p = *pp;
    if (p >= end)
        return 0;
    uint64_t key;
    int k = st_uvarint_get(p, end, &key);
    if (k <= 0)
        return ST_ECORRUPT;
    p += k;
    f->num = (uint32_t)(key >> 3);
    f->type = (uint32_t)(key & 7);
    if (f->num == 0 || key >> 3 > UINT32_MAX)
        return ST_ECORRUPT;
    f->data = NULL;
    f->len = 0;
    switch (f->type) {
    case WIRE_VARINT:
        if ((k = st_uvarint_get(p, end, &f->u)) <= 0)
            return ST_ECORRUPT;
        p += k;
        break;
    case WIRE_I64:
        if (end - p < 8)
            return ST_ECORRUPT;
        f->u = st_load_u64le(p);
        p += 8;
        break;
    case WIRE_I32:
        if (end - p < 4)
            return ST_ECORRUPT;
        f->u = st_load_u32le(p);
        p += 4;
        break;
    case WIRE_LEN: {
        uint64_t n;
        if ((k = st_uvarint_get(p, end, &n)) <= 0)
            return ST_ECORRUPT;
        p += k;
        if (n > (uint64_t)(end - p))
            return ST_ECORRUPT;
        f->data = p;
        f->len = (size_t)n;
        p += n;
        break;
    }
    default:
        return ST_ECORRUPT;
    }
    *pp = p;
    return 1;
}

static size_t put_key(uint8_t *p, uint32_t field, uint32_t type)
{
    return st_uvarint_put(p, ((uint64_t)field << 3) | type);
}

int wire_begin(st_buf_t *b, uint32_t field, size_t *mark)
{
    if (st_buf_reserve(b, 16))
        return ST_ENOMEM;
    b->len += put_key(b->data + b->len, field, WIRE_LEN);
    *mark = b->len;
    b->len += 5; /* length placeholder */
    return 0;
}

void wire_end(st_buf_t *b, size_t mark)
{
    uint64_t n = b->len - mark - 5;
    uint8_t *p = b->data + mark;
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)((n & 0x7f) | 0x80);
        n >>= 7;
    }
    p[4] = (uint8_t)(n & 0x7f);
}

int wire_put_varint_field(st_buf_t *b, uint32_t field, uint64_t v)
{
    if (st_buf_reserve(b, 2 * ST_UVARINT_MAX))
        return ST_ENOMEM;
    b->len += put_key(b->data + b->len, field, WIRE_VARINT);
    b->len += st_uvarint_put(b->data + b->len, v);
    return 0;
}

int wire_put_bytes_field(st_buf_t *b, uint32_t field, const void *p, size_t n)
{
    if (st_buf_reserve(b, 2 * ST_UVARINT_MAX + n))
        return ST_ENOMEM;
    b->len += put_key(b->data + b->len, field, WIRE_LEN);
    b->len += st_uvarint_put(b->data + b->len, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* Labels as repeated Label field (1 in SeriesSamples and StepSeries); the caller reserved room. */
static uint8_t *put_labels(uint8_t *p, const st_label_t *l, size_t nl)
{
    for (size_t i = 0; i < nl; i++) {
        size_t inner = 1 + (size_t)st_uvarint_put((uint8_t[10]){0}, l[i].name_len) + l[i].name_len +
                       1 + (size_t)st_uvarint_put((uint8_t[10]){0}, l[i].value_len) +
                       l[i].value_len;
        p += put_key(p, WIRE_SERIES_SAMPLES_LABELS, WIRE_LEN);
        p += st_uvarint_put(p, inner);
        p += put_key(p, WIRE_LABEL_NAME, WIRE_LEN);
        p += st_uvarint_put(p, l[i].name_len);
        memcpy(p, l[i].name, l[i].name_len);
        p += l[i].name_len;
        p += put_key(p, WIRE_LABEL_VALUE, WIRE_LEN);
        p += st_uvarint_put(p, l[i].value_len);
        memcpy(p, l[i].value, l[i].value_len);
        p += l[i].value_len;
    }
    return p;
}

static size_t labels_room(const st_label_t *l, size_t nl);

int wire_put_labels(st_buf_t *b, const st_label_t *l, size_t nl)
{
    if (st_buf_reserve(b, labels_room(l, nl)))
        return ST_ENOMEM;
    b->len = (size_t)(put_labels(b->data + b->len, l, nl) - b->data);
    return 0;
}

int wire_put_fixed64_field(st_buf_t *b, uint32_t field, uint64_t v)
{
    if (st_buf_reserve(b, ST_UVARINT_MAX + 8))
        return ST_ENOMEM;
    b->len += put_key(b->data + b->len, field, WIRE_I64);
    st_store_u64le(b->data + b->len, v);
    b->len += 8;
    return 0;
}

/* n doubles as a packed field (little-endian); the caller reserved room. */
static uint8_t *put_doubles(uint8_t *p, uint32_t field, const double *v, size_t n)
{
    p += put_key(p, field, WIRE_LEN);
    p += st_uvarint_put(p, 8 * n);
    for (size_t i = 0; i < n; i++) {
        st_store_u64le(p, st_f64_bits(v[i]));
        p += 8;
    }
    return p;
}

static size_t labels_room(const st_label_t *l, size_t nl)
{
    size_t need = 0;
    for (size_t i = 0; i < nl; i++)
        need += 3 * ST_UVARINT_MAX + l[i].name_len + l[i].value_len + 3;
    return need;
}

/* Patch a 5-byte varint length placeholder at lenp. */
static void patch_len5(uint8_t *lenp, uint64_t tl)
{
    for (int i = 0; i < 4; i++) {
        lenp[i] = (uint8_t)((tl & 0x7f) | 0x80);
        tl >>= 7;
    }
    lenp[4] = (uint8_t)(tl & 0x7f);
}

/* A packed varint field (5-byte length placeholder patched at the end);
 * returns the new write position. */
static uint8_t *put_packed_varints(uint8_t *p, uint32_t field, const uint64_t *u, size_t n)
{
    p += put_key(p, field, WIRE_LEN);
    uint8_t *lenp = p;
    p += 5;
    uint8_t *start = p;
    for (size_t i = 0; i < n; i++)
        p += st_uvarint_put(p, u[i]);
    patch_len5(lenp, (uint64_t)(p - start));
    return p;
}

int wire_put_series(st_buf_t *b, uint32_t field, const st_label_t *l, size_t nl, const int64_t *ts,
                    const double *v, size_t n)
{
    return wire_put_series_v(b, field, l, nl, ts, v, NULL, n);
}

/* The timestamps, values and versions of a SeriesSamples; the caller
 * reserved room. Returns the new write position. */
static uint8_t *put_samples(uint8_t *p, const int64_t *ts, const double *v, const uint64_t *vers,
                            size_t n)
{
    if (!n)
        return p;
    /* timestamps: packed, 5-byte length placeholder patched below */
    p += put_key(p, WIRE_SERIES_SAMPLES_TIMESTAMPS, WIRE_LEN);
    uint8_t *lenp = p;
    p += 5;
    uint8_t *start = p;
    int64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        p += st_uvarint_put(p, st_zigzag((int64_t)((uint64_t)ts[i] - (uint64_t)prev)));
        prev = ts[i];
    }
    patch_len5(lenp, (uint64_t)(p - start));
    p = put_doubles(p, WIRE_SERIES_SAMPLES_VALUES, v, n);
    if (vers)
        p = put_packed_varints(p, WIRE_SERIES_SAMPLES_VERSIONS, vers, n);
    return p;
}

#define SAMPLES_ROOM(n) (3 * 16 + (n) * (2 * ST_UVARINT_MAX + 8))

int wire_put_series_v(st_buf_t *b, uint32_t field, const st_label_t *l, size_t nl,
                      const int64_t *ts, const double *v, const uint64_t *vers, size_t n)
{
    size_t need = 16 + labels_room(l, nl) + SAMPLES_ROOM(n);
    if (st_buf_reserve(b, need))
        return ST_ENOMEM;
    size_t mark;
    wire_begin(b, field, &mark);
    uint8_t *p = put_labels(b->data + b->len, l, nl);
    p = put_samples(p, ts, v, vers, n);
    b->len = (size_t)(p - b->data);
    wire_end(b, mark);
    return 0;
}

int wire_put_series_enc(st_buf_t *b, uint32_t field, const wire_bytes_t *lab, size_t nlab,
                        const int64_t *ts, const double *v, size_t n)
{
    return wire_put_series_enc_ref(b, field, lab, nlab, NULL, ts, v, n);
}

int wire_put_series_enc_ref(st_buf_t *b, uint32_t field, const wire_bytes_t *lab, size_t nlab,
                            const uint8_t ref[WIRE_REF_LEN], const int64_t *ts, const double *v,
                            size_t n)
{
    size_t need = 16 + 2 + WIRE_REF_LEN + SAMPLES_ROOM(n);
    for (size_t i = 0; i < nlab; i++)
        need += lab[i].len;
    if (st_buf_reserve(b, need))
        return ST_ENOMEM;
    size_t mark;
    wire_begin(b, field, &mark);
    uint8_t *p = b->data + b->len;
    for (size_t i = 0; i < nlab; i++) {
        if (lab[i].len) /* an empty one may have no bytes at all */
            memcpy(p, lab[i].p, lab[i].len);
        p += lab[i].len;
    }
    if (ref) {
        p += put_key(p, WIRE_SERIES_SAMPLES_REF, WIRE_LEN);
        *p++ = WIRE_REF_LEN;
        memcpy(p, ref, WIRE_REF_LEN);
        p += WIRE_REF_LEN;
    }
    p = put_samples(p, ts, v, NULL, n);
    b->len = (size_t)(p - b->data);
    size_t inner = b->len - mark - 5;
    if (ref && inner < 0x80) { /* a one-byte length: 4 bytes less, and the readers' fast path */
        memmove(b->data + mark + 1, b->data + mark + 5, inner);
        b->data[mark] = (uint8_t)inner;
        b->len -= 4;
    } else {
        wire_end(b, mark);
    }
    return 0;
}

int wire_put_step_series(st_buf_t *b, uint32_t field, const st_label_t *l, size_t nl,
                         const uint8_t *present, size_t present_len, const double *v, size_t n)
{
    if (st_buf_reserve(b, 16 + labels_room(l, nl) + 2 * 16 + present_len + 8 * n))
        return ST_ENOMEM;
    size_t mark;
    wire_begin(b, field, &mark);
    uint8_t *p = put_labels(b->data + b->len, l, nl);
    if (present_len) {
        p += put_key(p, WIRE_STEP_SERIES_PRESENT, WIRE_LEN);
        p += st_uvarint_put(p, present_len);
        memcpy(p, present, present_len);
        p += present_len;
    }
    if (n) {
        p = put_doubles(p, WIRE_STEP_SERIES_VALUES, v, n);
    }
    b->len = (size_t)(p - b->data);
    wire_end(b, mark);
    return 0;
}

int wire_label_decode(const uint8_t *p, size_t len, st_label_t *l)
{
    const uint8_t *end = p + len;
    wire_field_t f;
    int rc;
    /* fast path: name (field 1) then value (field 2), each shorter than 128
     * bytes, nothing else: how every encoder of ours writes a label */
    if (len >= 4 && p[0] == ((WIRE_LABEL_NAME << 3) | WIRE_LEN) && p[1] < 0x80 &&
        (size_t)p[1] + 4 <= len) {
        const uint8_t *v = p + 2 + p[1];
        if (v[0] == ((WIRE_LABEL_VALUE << 3) | WIRE_LEN) && v[1] < 0x80 && v + 2 + v[1] == end) {
            l->name = (const char *)p + 2;
            l->name_len = p[1];
            l->value = (const char *)v + 2;
            l->value_len = v[1];
            return 0;
        }
    }
    l->name = l->value = "";
    l->name_len = l->value_len = 0;
    while ((rc = wire_next(&p, end, &f)) == 1) {
        if (f.type != WIRE_LEN || f.len > UINT32_MAX)
            continue;
        if (f.num == WIRE_LABEL_NAME) {
            l->name = (const char *)f.data;
            l->name_len = (uint32_t)f.len;
        } else if (f.num == WIRE_LABEL_VALUE) {
            l->value = (const char *)f.data;
            l->value_len = (uint32_t)f.len;
        }
    }
    return rc;
}

/* wire_series_decode reads a StepSeries as a SeriesSamples (the bitmap in
 * ts/ts_len): the two must keep the same field numbers. */
_Static_assert(WIRE_STEP_SERIES_LABELS == WIRE_SERIES_SAMPLES_LABELS &&
                   WIRE_STEP_SERIES_PRESENT == WIRE_SERIES_SAMPLES_TIMESTAMPS &&
                   WIRE_STEP_SERIES_VALUES == WIRE_SERIES_SAMPLES_VALUES,
               "StepSeries and SeriesSamples field numbers differ");

/* Everything of s but the labels array: nothing read yet. */
static void series_reset(wire_series_t *s)
{
    s->nlabels = 0;
    s->ts = s->vals = NULL;
    s->ts_len = s->nvals = 0;
    s->vers = NULL;
    s->vers_len = 0;
    s->lab = NULL;
    s->lab_len = 0;
    s->lab_split = 0;
    s->ref = NULL;
}

/* A SeriesSamples field other than a label: the samples' columns (each at
 * most once); other fields are skipped. 0 or ST_ECORRUPT. */
static int series_column(wire_series_t *s, const wire_field_t *f)
{
    if (f->num == WIRE_SERIES_SAMPLES_TIMESTAMPS) {
        if (s->ts)
            return ST_ECORRUPT; /* one packed run only: we never split them */
        s->ts = f->data;
        s->ts_len = f->len;
    } else if (f->num == WIRE_SERIES_SAMPLES_VALUES) {
        if (s->vals || f->len % 8)
            return ST_ECORRUPT;
        s->vals = f->data;
        s->nvals = f->len / 8;
    } else if (f->num == WIRE_SERIES_SAMPLES_VERSIONS) {
        if (s->vers)
            return ST_ECORRUPT;
        s->vers = f->data;
        s->vers_len = f->len;
    } else if (f->num == WIRE_SERIES_SAMPLES_REF) {
        if (s->ref || f->len != WIRE_REF_LEN)
            return ST_ECORRUPT;
        s->ref = f->data;
    }
    return 0;
}

int wire_series_decode(const uint8_t *p, size_t len, wire_series_t *s)
{
    const uint8_t *end = p + len;
    wire_field_t f;
    int rc;
    series_reset(s);
    while ((rc = wire_next(&p, end, &f)) == 1) {
        if (f.type != WIRE_LEN)
            continue; /* unknown scalar field: skip, as protobuf does */
        if (f.num == WIRE_SERIES_SAMPLES_LABELS) {
            if (s->nlabels >= ST_LABELS_MAX)
                return ST_ELIMIT;
            if ((rc = wire_label_decode(f.data, f.len, &s->labels[s->nlabels])) < 0)
                return rc;
            s->nlabels++;
        } else if ((rc = series_column(s, &f)) < 0) {
            return rc;
        }
    }
    return rc < 0 ? rc : 0;
}

int wire_series_scan(const uint8_t *p, size_t len, wire_series_t *s)
{
    const uint8_t *end = p + len;
    wire_field_t f;
    int rc, split = 0; /* another field came after the first label */
    series_reset(s);
    const uint8_t *at = p;
    while ((rc = wire_next(&p, end, &f)) == 1) {
        if (f.num == WIRE_SERIES_SAMPLES_LABELS && f.type == WIRE_LEN) {
            if (!s->lab) {
                s->lab = at;
            } else if (split) {
                s->lab = NULL; /* not contiguous: decoded the long way */
                s->lab_len = 0;
                s->lab_split = 1;
                return 0;
            }
            s->lab_len = (size_t)(p - s->lab);
            if (++s->nlabels > ST_LABELS_MAX)
                return ST_ELIMIT;
        } else {
            split = s->lab != NULL;
            if (f.type != WIRE_LEN) {
                at = p;
                continue;
            }
            if ((rc = series_column(s, &f)) < 0)
                return rc;
        }
        at = p;
    }
    s->nlabels = 0;
    return rc < 0 ? rc : 0;
}

int wire_labels_decode(const uint8_t *p, size_t len, st_label_t *out, size_t cap, size_t *n)
{
    const uint8_t *end = p + len;
    wire_field_t f;
    int rc;
    *n = 0;
    while ((rc = wire_next(&p, end, &f)) == 1) {
        if (f.num != WIRE_SERIES_SAMPLES_LABELS || f.type != WIRE_LEN)
            return ST_ECORRUPT;
        if (*n >= cap)
            return ST_ELIMIT;
        if ((rc = wire_label_decode(f.data, f.len, &out[*n])) < 0)
            return rc;
        (*n)++;
    }
    return rc < 0 ? rc : 0;
}

int wire_series_samples(const wire_series_t *s, int64_t *ts, double *v, size_t cap, size_t *n)
{
    if (s->nvals > cap)
        return ST_ELIMIT;
    const uint8_t *p = s->ts, *end = s->ts + s->ts_len;
    int64_t prev = 0;
    size_t i = 0;
    while (p < end) {
        uint64_t u;
        int k = st_uvarint_get(p, end, &u);
        if (k <= 0 || i >= s->nvals)
            return ST_ECORRUPT;
        p += k;
        prev = (int64_t)((uint64_t)prev + (uint64_t)st_unzigzag(u));
        ts[i++] = prev;
    }
    if (i != s->nvals)
        return ST_ECORRUPT;
    for (size_t j = 0; j < i; j++)
        v[j] = st_bits_f64(st_load_u64le(s->vals + 8 * j));
    *n = i;
    return 0;
}

int wire_series_versions(const wire_series_t *s, uint64_t *vers, size_t n)
{
    const uint8_t *p = s->vers, *end = s->vers + s->vers_len;
    size_t i = 0;
    if (!p) {
        memset(vers, 0, n * sizeof *vers);
        return 0;
    }
    while (p < end) {
        int k = i < n ? st_uvarint_get(p, end, &vers[i]) : 0;
        if (k <= 0)
            return ST_ECORRUPT;
        p += k;
        i++;
    }
    return i == n ? 0 : ST_ECORRUPT;
}

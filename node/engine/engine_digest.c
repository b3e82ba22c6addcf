/*
 * engine_digest — digests of an engine's samples for anti-entropy (see the
 * comment above engine_digest_t in engine.h).
 *
 * Why: replicas of a shard must find what one holds and the other lacks
 * without sending each other the data. How: one pass over every series
 * (engine_query of all series over all time, one series in memory at a
 * time) adds a 64-bit hash per sample into the cell (time window, series
 * bucket) it belongs to. Cells combine by wrapping addition, so the visit
 * order does not matter and two equal sample sets give equal cells; a cell
 * that differs names a bucket of series and a window of time to stream.
 *
 * Wire form (engine_digest_encode): "SDG1", uvarint nbuckets, svarint
 * window_ms, uvarint n, then per window: svarint start delta (from the
 * previous start, the first from 0), uvarint cells with data, and per cell
 * uvarint bucket delta (from the previous bucket + 1), 8 bytes
 * little-endian hash, uvarint count. Decoding checks every bound.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "st_varint.h"

#define DIGEST_MAGIC "SDG1"

int64_t engine_partition_ms(const engine_t *e)
{
    return e->o.partition_ms;
}

uint32_t engine_digest_bucket(const st_label_t *l, size_t nl, uint32_t nbuckets)
{
    uint64_t h = st_labels_hash(l, nl);
    return nbuckets > 1 ? (uint32_t)((h >> 17) % nbuckets) : 0;
}

/* A 64-bit mix (the finaliser of SplitMix64): cheap, and every input bit
 * moves every output bit. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

uint64_t engine_digest_sample(uint64_t key, int64_t ts, double v)
{
    return mix64(key ^ mix64((uint64_t)ts + UINT64_C(0x9e3779b97f4a7c15)) ^
                 mix64(st_f64_bits(v) ^ UINT64_C(0x5851f42d4c957f2d)));
}

int engine_digest_create(uint32_t nbuckets, int64_t window_ms, engine_digest_t **out)
{
    if (!nbuckets || nbuckets > ENGINE_DIGEST_BUCKETS_MAX || window_ms < 1)
        return ST_EINVAL;
    engine_digest_t *d = calloc(1, sizeof *d);
    if (!d)
        return ST_ENOMEM;
    d->nbuckets = nbuckets;
    d->window_ms = window_ms;
    *out = d;
    return 0;
}

void engine_digest_destroy(engine_digest_t *d)
{
    if (!d)
        return;
    free(d->start);
    free(d->hash);
    free(d->count);
    free(d);
}

static int64_t window_of(const engine_digest_t *d, int64_t ts)
{
    int64_t q = ts / d->window_ms;
    if (ts % d->window_ms < 0)
        q--;
    return q * d->window_ms;
}

/* Index of window `start`, inserted (zeroed cells) when missing. */
static int window_index(engine_digest_t *d, int64_t start, size_t *idx)
{
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->start[mid] < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < d->n && d->start[lo] == start) {
        *idx = lo;
        return 0;
    }
    if (d->n >= ENGINE_DIGEST_WINDOWS_MAX ||
        (uint64_t)(d->n + 1) * d->nbuckets > ENGINE_DIGEST_CELLS_MAX)
        return ST_ELIMIT;
    size_t nb = d->nbuckets;
    if (d->n == d->cap) {
        /* room doubles: a shard of thousands of partitions is not copied
         * once per window it adds */
        size_t nc = d->cap ? 2 * d->cap : 16;
        if (nc > ENGINE_DIGEST_WINDOWS_MAX)
            nc = ENGINE_DIGEST_WINDOWS_MAX;
        if (nc > ENGINE_DIGEST_CELLS_MAX / nb) /* >= n + 1: checked above */
            nc = ENGINE_DIGEST_CELLS_MAX / nb;
        int64_t *s = realloc(d->start, nc * sizeof *s);
        if (!s)
            return ST_ENOMEM;
        d->start = s;
        uint64_t *h = realloc(d->hash, nc * nb * sizeof *h);
        if (!h)
            return ST_ENOMEM;
        d->hash = h;
        uint64_t *c = realloc(d->count, nc * nb * sizeof *c);
        if (!c)
            return ST_ENOMEM;
        d->count = c;
        d->cap = nc;
    }
    int64_t *s = d->start;
    uint64_t *h = d->hash, *c = d->count;
    memmove(s + lo + 1, s + lo, (d->n - lo) * sizeof *s);
    memmove(h + (lo + 1) * nb, h + lo * nb, (d->n - lo) * nb * sizeof *h);
    memmove(c + (lo + 1) * nb, c + lo * nb, (d->n - lo) * nb * sizeof *c);
    s[lo] = start;
    memset(h + lo * nb, 0, nb * sizeof *h);
    memset(c + lo * nb, 0, nb * sizeof *c);
    d->n++;
    *idx = lo;
    return 0;
}

int engine_digest_add(engine_digest_t *d, const st_label_t *l, size_t nl, const int64_t *ts,
                      const double *v, size_t n)
{
    uint64_t key = st_labels_hash(l, nl);
    uint32_t b = engine_digest_bucket(l, nl, d->nbuckets);
    int64_t cur = 0;
    size_t wi = 0;
    int have = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t w = window_of(d, ts[i]);
        if (!have || w != cur) {
            int rc = window_index(d, w, &wi);
            if (rc)
                return rc;
            cur = w;
            have = 1;
        }
        size_t cell = wi * d->nbuckets + b;
        d->hash[cell] += engine_digest_sample(key, ts[i], v[i]);
        d->count[cell]++;
    }
    return 0;
}

int engine_digest_range(engine_t *e, engine_digest_t *d, int64_t mint, int64_t maxt)
{
    mint = mint < ENGINE_TS_MIN ? ENGINE_TS_MIN : mint;
    maxt = maxt > ENGINE_TS_MAX ? ENGINE_TS_MAX : maxt;
    if (maxt < mint)
        return 0;
    static const st_matcher_t all = {ST_MATCH_RE, ST_METRIC_LABEL, ".+"};
    engine_iter_t *it;
    int rc = engine_query(e, &all, 1, mint, maxt, &it);
    if (rc)
        return rc;
    const st_label_t *l;
    size_t nl, n;
    const int64_t *ts;
    const double *v;
    while ((rc = engine_iter_next(it, &l, &nl, &ts, &v, &n)) == 1)
        if ((rc = engine_digest_add(d, l, nl, ts, v, n)))
            break;
    engine_iter_destroy(it);
    return rc < 0 ? rc : 0;
}

int engine_digest(engine_t *e, uint32_t nbuckets, int64_t window_ms, engine_digest_t **out)
{
    engine_digest_t *d;
    int rc = engine_digest_create(nbuckets, window_ms ? window_ms : e->o.partition_ms, &d);
    if (rc)
        return rc;
    if ((rc = engine_digest_range(e, d, ENGINE_TS_MIN, ENGINE_TS_MAX))) {
        engine_digest_destroy(d);
        return rc;
    }
    *out = d;
    return 0;
}

int engine_digest_merge(engine_digest_t *into, const engine_digest_t *from)
{
    if (into->nbuckets != from->nbuckets || into->window_ms != from->window_ms)
        return ST_EINVAL;
    size_t nb = into->nbuckets;
    for (size_t w = 0; w < from->n; w++) {
        size_t wi;
        int rc = window_index(into, from->start[w], &wi);
        if (rc)
            return rc;
        for (size_t b = 0; b < nb; b++) {
            into->hash[wi * nb + b] += from->hash[w * nb + b];
            into->count[wi * nb + b] += from->count[w * nb + b];
        }
    }
    return 0;
}

int engine_digest_encode(const engine_digest_t *d, uint8_t **out, size_t *len)
{
    size_t nb = d->nbuckets, used = 0;
    for (size_t i = 0; i < d->n * nb; i++)
        used += d->count[i] || d->hash[i];
    size_t cap =
        4 + 3 * ST_UVARINT_MAX + d->n * 2 * ST_UVARINT_MAX + used * (2 * ST_UVARINT_MAX + 8);
    uint8_t *p = malloc(cap), *q = p;
    if (!p)
        return ST_ENOMEM;
    memcpy(q, DIGEST_MAGIC, 4);
    q += 4;
    q += st_uvarint_put(q, nb);
    q += st_uvarint_put(q, st_zigzag(d->window_ms));
    q += st_uvarint_put(q, d->n);
    int64_t prev = 0;
    for (size_t w = 0; w < d->n; w++) {
        q += st_uvarint_put(q, st_zigzag((int64_t)((uint64_t)d->start[w] - (uint64_t)prev)));
        prev = d->start[w];
        const uint64_t *h = d->hash + w * nb, *c = d->count + w * nb;
        size_t cells = 0;
        for (size_t b = 0; b < nb; b++)
            cells += c[b] || h[b];
        q += st_uvarint_put(q, cells);
        size_t next = 0;
        for (size_t b = 0; b < nb; b++) {
            if (!c[b] && !h[b])
                continue;
            q += st_uvarint_put(q, b - next);
            next = b + 1;
            st_store_u64le(q, h[b]);
            q += 8;
            q += st_uvarint_put(q, c[b]);
        }
    }
    *out = p;
    *len = (size_t)(q - p);
    return 0;
}

/* Read one uvarint at *p or fail the decode. */
#define GETU(var)                                                                                  \
    do {                                                                                           \
        int k_ = st_uvarint_get(p, end, &(var));                                                   \
        if (k_ <= 0)                                                                               \
            goto bad;                                                                              \
        p += k_;                                                                                   \
    } while (0)

int engine_digest_decode(const uint8_t *p, size_t len, engine_digest_t **out)
{
    const uint8_t *end = p + len;
    engine_digest_t *d = NULL;
    uint64_t nb, wms, n;
    if (len < 4 || memcmp(p, DIGEST_MAGIC, 4))
        return ST_ECORRUPT;
    p += 4;
    GETU(nb);
    GETU(wms);
    GETU(n);
    int64_t window_ms = st_unzigzag(wms);
    /* every window costs at least two bytes: no allocation beyond the input */
    if (n > ENGINE_DIGEST_WINDOWS_MAX || n > (uint64_t)(end - p) / 2 ||
        engine_digest_create((uint32_t)(nb <= ENGINE_DIGEST_BUCKETS_MAX ? nb : 0), window_ms, &d))
        return ST_ECORRUPT;
    int64_t prev = 0;
    for (uint64_t w = 0; w < n; w++) {
        uint64_t delta, cells;
        GETU(delta);
        int64_t start = (int64_t)((uint64_t)prev + (uint64_t)st_unzigzag(delta));
        if (w && start <= prev)
            goto bad; /* ascending, no duplicates */
        if (window_of(d, start) != start)
            goto bad;
        size_t wi;
        if (window_index(d, start, &wi) || wi != d->n - 1)
            goto bad;
        prev = start;
        GETU(cells);
        if (cells > nb)
            goto bad;
        uint64_t next = 0;
        for (uint64_t c = 0; c < cells; c++) {
            uint64_t bd, cnt;
            GETU(bd);
            if (bd >= nb - next)
                goto bad;
            uint64_t b = next + bd;
            next = b + 1;
            if (end - p < 8)
                goto bad;
            d->hash[wi * nb + b] = st_load_u64le(p);
            p += 8;
            GETU(cnt);
            d->count[wi * nb + b] = cnt;
        }
    }
    if (p != end)
        goto bad;
    *out = d;
    return 0;
bad:
    engine_digest_destroy(d);
    return ST_ECORRUPT;
}

int64_t engine_digest_diff(const engine_digest_t *a, const engine_digest_t *b,
                           engine_digest_diff_cb cb, void *arg)
{
    if (a->nbuckets != b->nbuckets || a->window_ms != b->window_ms)
        return ST_EINVAL;
    size_t nb = a->nbuckets, i = 0, j = 0;
    int64_t diffs = 0;
    while (i < a->n || j < b->n) {
        int64_t start;
        const uint64_t *ha = NULL, *ca = NULL, *hb = NULL, *cb_ = NULL;
        if (j >= b->n || (i < a->n && a->start[i] < b->start[j])) {
            start = a->start[i];
            ha = a->hash + i * nb;
            ca = a->count + i * nb;
            i++;
        } else if (i >= a->n || b->start[j] < a->start[i]) {
            start = b->start[j];
            hb = b->hash + j * nb;
            cb_ = b->count + j * nb;
            j++;
        } else {
            start = a->start[i];
            ha = a->hash + i * nb;
            ca = a->count + i * nb;
            hb = b->hash + j * nb;
            cb_ = b->count + j * nb;
            i++;
            j++;
        }
        for (size_t k = 0; k < nb; k++) {
            uint64_t xh = ha ? ha[k] : 0, xc = ca ? ca[k] : 0;
            uint64_t yh = hb ? hb[k] : 0, yc = cb_ ? cb_[k] : 0;
            if (xh == yh && xc == yc)
                continue;
            diffs++;
            if (cb) {
                int rc = cb(arg, start, (uint32_t)k, xc, yc);
                if (rc)
                    return rc;
            }
        }
    }
    return diffs;
}

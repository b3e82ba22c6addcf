/*
 * sset — in-memory series collected from EXPORT pages, merged across
 * replicas. See sset.h.
 */
#include "sset.h"

#include <stdlib.h>
#include <string.h>

#include "st_buf.h"
#include "st_crc32c.h"
#include "st_err.h"
#include "wire.h"

void sset_init(sset_t *ss, uint64_t max_samples)
{
    memset(ss, 0, sizeof *ss);
    ss->max_samples = max_samples;
}

static void series_free(sset_series_t *s)
{
    for (size_t l = 0; l < s->nlabels; l++) {
        free((char *)s->labels[l].name);
        free((char *)s->labels[l].value);
    }
    free(s->labels);
    free(s->ts);
    free(s->v);
    memset(s, 0, sizeof *s);
}

void sset_free(sset_t *ss)
{
    for (size_t i = 0; i < ss->n; i++)
        series_free(&ss->s[i]);
    free(ss->s);
    memset(ss, 0, sizeof *ss);
}

static char *copy_n(const char *s, size_t n)
{
    char *c = malloc(n + 1);
    if (c) {
        if (n)
            memcpy(c, s, n);
        c[n] = '\0';
    }
    return c;
}

int sset_add_page(sset_t *ss, const uint8_t *p, size_t len, int *done, uint32_t *next_shard,
                  uint64_t *next_pos)
{
    const uint8_t *end = p + len;
    wire_field_t f;
    int rc;
    *done = 1;
    while ((rc = wire_next(&p, end, &f)) == 1) {
        if (f.num == WIRE_READ_RESPONSE_DONE && f.type == WIRE_VARINT) {
            *done = f.u != 0;
        } else if (f.num == WIRE_READ_RESPONSE_NEXT_SHARD && f.type == WIRE_VARINT) {
            *next_shard = (uint32_t)f.u;
        } else if (f.num == WIRE_READ_RESPONSE_NEXT_POS && f.type == WIRE_VARINT) {
            *next_pos = f.u;
        } else if (f.num == WIRE_READ_RESPONSE_SERIES && f.type == WIRE_LEN) {
            wire_series_t ws;
            if ((rc = wire_series_decode(f.data, f.len, &ws)) < 0)
                return rc;
            if (ss->n == ss->cap && st_grow(&ss->s, &ss->cap, sizeof *ss->s, 64))
                return ST_ENOMEM;
            sset_series_t *fs = &ss->s[ss->n];
            memset(fs, 0, sizeof *fs);
            fs->origin = ss->origin;
            fs->labels = calloc(ws.nlabels ? ws.nlabels : 1, sizeof *fs->labels);
            fs->ts = malloc((ws.nvals ? ws.nvals : 1) * sizeof *fs->ts);
            fs->v = malloc((ws.nvals ? ws.nvals : 1) * sizeof *fs->v);
            ss->n++; /* owned from here on */
            if (!fs->labels || !fs->ts || !fs->v)
                return ST_ENOMEM;
            for (size_t k = 0; k < ws.nlabels; k++) {
                fs->labels[k].name = copy_n(ws.labels[k].name, ws.labels[k].name_len);
                fs->labels[k].value = copy_n(ws.labels[k].value, ws.labels[k].value_len);
                fs->labels[k].name_len = ws.labels[k].name_len;
                fs->labels[k].value_len = ws.labels[k].value_len;
                fs->nlabels = k + 1;
                if (!fs->labels[k].name || !fs->labels[k].value)
                    return ST_ENOMEM;
            }
            if ((rc = wire_series_samples(&ws, fs->ts, fs->v, ws.nvals, &fs->n)) < 0)
                return rc;
            ss->samples += fs->n;
            if (ss->max_samples && ss->samples > ss->max_samples)
                return ST_ELIMIT;
        }
    }
    return rc < 0 ? rc : 0;
}

static int cmp_bytes(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al > bl) - (al < bl);
}

static int cmp_labels(const sset_series_t *a, const sset_series_t *b)
{
    size_t n = a->nlabels < b->nlabels ? a->nlabels : b->nlabels;
    for (size_t i = 0; i < n; i++) {
        int c = cmp_bytes(a->labels[i].name, a->labels[i].name_len, b->labels[i].name,
                          b->labels[i].name_len);
        if (c)
            return c;
        c = cmp_bytes(a->labels[i].value, a->labels[i].value_len, b->labels[i].value,
                      b->labels[i].value_len);
        if (c)
            return c;
    }
    return (a->nlabels > b->nlabels) - (a->nlabels < b->nlabels);
}

/* Sort key: labels, then the order added (so "first added wins" holds). */
typedef struct ref {
    sset_series_t *s;
    size_t idx;
} ref_t;

static int cmp_ref(const void *x, const void *y)
{
    const ref_t *a = x, *b = y;
    int c = cmp_labels(a->s, b->s);
    return c ? c : (a->idx > b->idx) - (a->idx < b->idx);
}

/* Merge b into a (a wins on equal timestamps). */
static int fold(sset_series_t *a, sset_series_t *b)
{
    size_t cap = a->n + b->n;
    int64_t *ts = malloc((cap ? cap : 1) * sizeof *ts);
    double *v = malloc((cap ? cap : 1) * sizeof *v);
    if (!ts || !v) {
        free(ts);
        free(v);
        return ST_ENOMEM;
    }
    size_t i = 0, k = 0, n = 0;
    while (i < a->n || k < b->n) {
        if (k >= b->n || (i < a->n && a->ts[i] <= b->ts[k])) {
            if (k < b->n && a->ts[i] == b->ts[k])
                k++;
            ts[n] = a->ts[i];
            v[n++] = a->v[i++];
        } else {
            ts[n] = b->ts[k];
            v[n++] = b->v[k++];
        }
    }
    free(a->ts);
    free(a->v);
    a->ts = ts;
    a->v = v;
    a->n = n;
    return 0;
}

/* Samples of s at or before cutoff (timestamps ascend). */
static size_t upto(const sset_series_t *s, int64_t cutoff)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->ts[mid] <= cutoff)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* What one copy holds up to the cutoff: count and checksum. */
typedef struct summary {
    size_t n;
    uint32_t crc;
} summary_t;

static summary_t summarize(const sset_series_t *s, int64_t cutoff)
{
    summary_t m = {upto(s, cutoff), 0};
    m.crc = st_crc32c(0, s->ts, m.n * sizeof *s->ts);
    m.crc = st_crc32c(m.crc, s->v, m.n * sizeof *s->v);
    return m;
}

static int same_copy(const sset_series_t *a, const sset_series_t *b)
{
    return a->n == b->n && !memcmp(a->ts, b->ts, a->n * sizeof *a->ts) &&
           !memcmp(a->v, b->v, a->n * sizeof *a->v);
}

/* The run r[0..k) of one label set: judged before folding (the copies'
 * arrays are gone after). Fills origins and summaries of distinct origins
 * (the fullest copy of each); returns 1 when the run needs a closer look
 * after folding, 0 when every copy agrees and `expect` origins sent one. */
static int prejudge(const ref_t *r, size_t k, size_t expect, int64_t cutoff, uint32_t *origin,
                    summary_t *sum, size_t *nor)
{
    size_t no = 0;
    int differ = 0;
    for (size_t i = 0; i < k; i++) {
        const sset_series_t *s = r[i].s;
        if (i && !same_copy(r[0].s, s))
            differ = 1;
        size_t o = 0;
        while (o < no && origin[o] != s->origin)
            o++;
        if (o == no) {
            if (no == SSET_COPIES_MAX)
                continue;
            origin[no++] = s->origin;
        }
    }
    *nor = no;
    if (!differ && no == expect)
        return 0;
    /* the closer look: each origin's fullest copy up to the cutoff */
    uint8_t seen[SSET_COPIES_MAX] = {0};
    for (size_t i = 0; i < k; i++) {
        size_t o = 0;
        while (o < no && origin[o] != r[i].s->origin)
            o++;
        if (o == no)
            continue;
        summary_t m = summarize(r[i].s, cutoff);
        if (!seen[o] || m.n > sum[o].n)
            sum[o] = m;
        seen[o] = 1;
    }
    return 1;
}

int sset_merge_check(sset_t *ss, size_t expect, int64_t cutoff, sset_diverged_fn fn, void *arg)
{
    if (!ss->n)
        return 0;
    ref_t *r = malloc(ss->n * sizeof *r);
    sset_series_t *out = malloc(ss->n * sizeof *out);
    if (!r || !out) {
        free(r);
        free(out);
        return ST_ENOMEM;
    }
    for (size_t i = 0; i < ss->n; i++)
        r[i] = (ref_t){&ss->s[i], i};
    if (ss->n > 1)
        qsort(r, ss->n, sizeof *r, cmp_ref);
    size_t m = 0;
    int rc = 0;
    for (size_t i = 0; i < ss->n;) {
        size_t e = i + 1;
        while (e < ss->n && cmp_labels(r[i].s, r[e].s) == 0)
            e++;
        uint32_t origin[SSET_COPIES_MAX];
        summary_t sum[SSET_COPIES_MAX];
        size_t no = 0;
        int look = fn && prejudge(&r[i], e - i, expect, cutoff, origin, sum, &no);
        out[m++] = *r[i].s;
        for (size_t k = i + 1; k < e; k++) {
            if (!rc)
                rc = fold(&out[m - 1], r[k].s);
            series_free(r[k].s);
        }
        if (look && !rc) {
            summary_t all = summarize(&out[m - 1], cutoff);
            uint8_t stale[SSET_COPIES_MAX];
            int any = no != expect, conflict = 0;
            for (size_t o = 0; o < no; o++) {
                stale[o] = sum[o].n < all.n;
                any |= stale[o];
                conflict |= sum[o].n == all.n && sum[o].crc != all.crc;
            }
            if (conflict)
                memset(stale, 1, no);
            if (any || conflict)
                fn(arg, &out[m - 1], origin, stale, no);
        }
        i = e;
    }
    free(r);
    free(ss->s);
    ss->s = out;
    ss->n = ss->cap = m;
    uint64_t total = 0;
    for (size_t i = 0; i < m; i++)
        total += out[i].n;
    ss->samples = total;
    return rc;
}

int sset_merge(sset_t *ss)
{
    if (ss->n < 2)
        return 0;
    return sset_merge_check(ss, 0, 0, NULL, NULL);
}

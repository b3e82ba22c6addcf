/*
 * engine_count — how many samples each selected series holds in a time
 * range, mostly without decoding them (engine_count in engine.h). SQL's
 * count() and PromQL's count_over_time need the number, not the samples.
 *
 * A segment's index keeps each block's sample count and time range, so a
 * block wholly inside the range adds its count as is, unless a tombstone
 * newer than the segment selects the series over the block's range (then
 * the block is decoded and masked). Blocks the range cuts are decoded and
 * the samples inside counted; head samples are counted by binary search.
 *
 * The sum is exact only when no timestamp is held twice: a series whose
 * sources (segments, frozen head, active head) overlap in time may hold a
 * sample in two of them (a rewrite, an unmerged compaction), which the
 * reader deduplicates. Such a series is counted through the ordinary reader
 * (engine_iter_ids), so the answer always equals what engine_query reads.
 * A series under a per-metric retention is counted from its cut on (what
 * engine_query hides is not counted).
 *
 * engine_tstats walks the same way and also sums engine_ts_mix() of the
 * timestamps and keeps the first and last: an order-free fingerprint of a
 * series' set of timestamps (SQL's count(*) compares the fields of a row's
 * tag set with it). The timestamps are then needed, not only the header
 * counts: a whole block in range decodes only its timestamp section
 * (codec_decode_ts; no staleness marker can hide in a decimal value
 * coding) and its sum is kept with the segment (seg_ref_t.tsh: a file
 * never changes, so the sum stays right; writes, deletes and compactions
 * make other files or tombstones, which the walk sees as for counting);
 * the other blocks are decoded and masked as for counting.
 */
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "codec_internal.h"
#include "engine_internal.h"
#include "st_err.h"
#include "st_time.h"
#include "tomb.h"

typedef struct span {
    int64_t mint, maxt;
    int src; /* segment index, or -1/-2 for the frozen/active head */
} span_t;

typedef struct cnt {
    engine_t *e;
    int64_t mint, maxt;
    int no_stale; /* ENGINE_COUNT_NO_STALE */
    int hash;     /* engine_tstats: fingerprint the timestamps too */
    seg_ref_t **segs;
    size_t nsegs;
    tomb_t **tombs;
    size_t ntombs;
    span_t *sp;
    size_t nsp, spcap;
    int64_t *ts;
    double *v;
    size_t cap;
    engine_count_stats_t st;
} cnt_t;

static int span_add(cnt_t *c, int64_t mint, int64_t maxt, int src)
{
    if (c->nsp == c->spcap) {
        size_t cap = c->spcap ? c->spcap * 2 : 64;
        span_t *sp = realloc(c->sp, cap * sizeof *sp);
        if (!sp)
            return ST_ENOMEM;
        c->sp = sp;
        c->spcap = cap;
    }
    c->sp[c->nsp++] = (span_t){mint, maxt, src};
    return 0;
}

static int span_cmp(const void *a, const void *b)
{
    const span_t *x = a, *y = b;
    return x->mint < y->mint ? -1 : x->mint > y->mint;
}

/* Do spans of two different sources overlap? (sorts c->sp) */
static int spans_overlap(cnt_t *c)
{
    if (c->nsp < 2)
        return 0;
    qsort(c->sp, c->nsp, sizeof *c->sp, span_cmp);
    int64_t end = c->sp[0].maxt;
    int src = c->sp[0].src;
    for (size_t i = 1; i < c->nsp; i++) {
        if (c->sp[i].mint <= end && c->sp[i].src != src)
            return 1;
        if (c->sp[i].maxt > end) {
            end = c->sp[i].maxt;
            src = c->sp[i].src;
        }
    }
    return 0;
}

/* Could a tombstone mask samples of `id` in [mint, maxt] held by a source of seq_max? */
static int tomb_touches(const cnt_t *c, uint32_t id, uint64_t seq_max, int64_t mint, int64_t maxt)
{
    for (size_t j = 0; j < c->ntombs; j++) {
        const tomb_t *t = c->tombs[j];
        if (t->seq > seq_max && t->start <= maxt && t->end >= mint && tomb_has_id(t, id))
            return 1;
    }
    return 0;
}

#define STALE_NAN 0x7ff0000000000002ULL /* Prometheus' staleness marker */

static size_t in_range(const int64_t *ts, size_t n, int64_t mint, int64_t maxt, size_t *first)
{
    size_t lo = 0, hi = n; /* first >= mint */
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        if (ts[m] < mint)
            lo = m + 1;
        else
            hi = m;
    }
    size_t a = lo;
    hi = n; /* first > maxt */
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        if (ts[m] <= maxt)
            lo = m + 1;
        else
            hi = m;
    }
    *first = a;
    return lo - a;
}

uint64_t engine_ts_mix(int64_t t)
{
    /* splitmix64's finaliser: a bijection of 64-bit words whose outputs
     * look independent, so sums over different sets rarely meet */
    uint64_t z = (uint64_t)t + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int is_stale(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u == STALE_NAN;
}

/* Add the samples of sorted ts/v[0..n) in the range to *a (staleness
 * markers left out with no_stale; v may be NULL when none can be one). */
static void acc_in(const cnt_t *c, engine_tstats_t *a, const int64_t *ts, const double *v, size_t n)
{
    size_t f, k = in_range(ts, n, c->mint, c->maxt, &f);
    if (!c->hash) {
        uint64_t got = k;
        for (size_t i = f; v && c->no_stale && i < f + k; i++)
            got -= is_stale(v[i]);
        a->count += got;
        return;
    }
    uint64_t h = 0, got = 0;
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (size_t i = f; i < f + k; i++) {
        if (v && c->no_stale && is_stale(v[i]))
            continue;
        h += engine_ts_mix(ts[i]);
        got++;
        if (ts[i] < lo)
            lo = ts[i];
        hi = ts[i]; /* sorted */
    }
    a->count += got;
    a->hash += h;
    if (got && lo < a->mint)
        a->mint = lo;
    if (got && hi > a->maxt)
        a->maxt = hi;
}

/* Can a block's header count stand for its samples? A decimal value coding
 * holds no NaN, so no staleness marker. */
static int header_ok(const cnt_t *c, const seg_entry_t *en)
{
    int tm, vm;
    if (!c->no_stale)
        return 1;
    return codec_block_modes(en->block, en->block_len, &tm, &vm) == 0 &&
           (vm == CODEC_V_DEC_DELTA || vm == CODEC_V_DEC_DOD);
}

/* The spans of the heads' samples of `id` (head_mu held). */
static int head_spans(cnt_t *c, head_t *h, uint32_t id, int src)
{
    head_series_t *s = h ? head_series_at(h, id) : NULL;
    if (!s || !s->n)
        return 0;
    if (s->maxt < c->mint || s->mint > c->maxt)
        return 0;
    return span_add(c, s->mint, s->maxt, src);
}

static void head_count(cnt_t *c, head_t *h, uint32_t id, engine_tstats_t *a)
{
    head_series_t *s = h ? head_series_at(h, id) : NULL;
    if (!s || !s->n)
        return;
    if (s->maxt < c->mint || s->mint > c->maxt)
        return;
    head_series_normalize(h, s);
    c->st.decoded += s->n;
    acc_in(c, a, s->ts, s->v, s->n);
}

/* Room for n decoded samples in c->ts / c->v. */
static int reserve(cnt_t *c, size_t n)
{
    if (n > c->cap) {
        size_t cap = c->cap ? c->cap : 1024;
        while (cap < n)
            cap *= 2;
        int64_t *ts = realloc(c->ts, cap * sizeof *ts);
        if (!ts)
            return ST_ENOMEM;
        c->ts = ts;
        double *v = realloc(c->v, cap * sizeof *v);
        if (!v)
            return ST_ENOMEM;
        c->v = v;
        c->cap = cap;
    }
    return 0;
}

/* Decode one block and count its samples in range that no tombstone masks. */
static int block_count(cnt_t *c, const seg_entry_t *en, uint32_t id, uint64_t seq_max,
                       engine_tstats_t *a)
{
    size_t got;
    int rc = reserve(c, en->count);
    if (!rc)
        rc = codec_decode(en->block, en->block_len, c->ts, c->v, en->count, &got);
    if (!rc && got != en->count)
        rc = ST_ECORRUPT;
    if (rc)
        return rc;
    c->st.decoded += got;
    if (c->ntombs)
        got = tomb_mask(c->tombs, c->ntombs, id, seq_max, c->ts, c->v, got);
    /* a block is sorted, and masking keeps the order */
    acc_in(c, a, c->ts, c->v, got);
    return 0;
}

/* A segment's kept fingerprints: h[i] is valid once ready[i] is set
 * (release / acquire; racing writers store the same value). */
typedef struct seg_tshash {
    size_t n;
    _Atomic uint64_t *h;
    _Atomic uint8_t *ready;
} seg_tshash_t;

/* r's fingerprints (r pinned), made on first use; NULL without memory. */
static seg_tshash_t *tshash_of(seg_ref_t *r)
{
    seg_tshash_t *t = atomic_load_explicit(&r->tsh, memory_order_acquire);
    if (t)
        return t;
    size_t n = seg_entry_count(r->seg);
    t = calloc(1, sizeof *t + n * (sizeof(uint64_t) + 1));
    if (!t)
        return NULL;
    t->n = n;
    t->h = (_Atomic uint64_t *)(t + 1);
    t->ready = (_Atomic uint8_t *)(t->h + n);
    seg_tshash_t *none = NULL;
    if (!atomic_compare_exchange_strong(&r->tsh, &none, t)) {
        free(t);
        t = none;
    }
    return t;
}

/* A block (entry i of r) wholly in range, unmasked, without staleness
 * markers: its count from the header; fingerprinting, the sum of its
 * timestamps' mixes, decoded once and kept with the segment. */
static int block_whole(cnt_t *c, seg_ref_t *r, size_t i, const seg_entry_t *en, engine_tstats_t *a)
{
    c->st.from_headers += en->count;
    a->count += en->count;
    if (!c->hash)
        return 0;
    seg_tshash_t *t = tshash_of(r);
    int kept = t && i < t->n;
    uint64_t h = 0;
    if (kept && atomic_load_explicit(&t->ready[i], memory_order_acquire)) {
        h = atomic_load_explicit(&t->h[i], memory_order_relaxed);
        c->st.ts_cached += en->count;
    } else {
        size_t got;
        int rc = reserve(c, en->count);
        if (!rc)
            rc = codec_decode_ts(en->block, en->block_len, c->ts, en->count, &got);
        if (!rc && got != en->count)
            rc = ST_ECORRUPT;
        if (rc)
            return rc;
        for (size_t k = 0; k < got; k++)
            h += engine_ts_mix(c->ts[k]);
        if (kept) {
            atomic_store_explicit(&t->h[i], h, memory_order_relaxed);
            atomic_store_explicit(&t->ready[i], 1, memory_order_release);
        }
    }
    a->hash += h;
    if (en->mint < a->mint)
        a->mint = en->mint;
    if (en->maxt > a->maxt)
        a->maxt = en->maxt;
    return 0;
}

/* One pass over the segment blocks of `id`: pass 0 notes their spans,
 * pass 1 adds up their counts. */
static int seg_blocks(cnt_t *c, uint32_t id, int pass, engine_tstats_t *total)
{
    int rc = 0;
    for (size_t k = 0; k < c->nsegs && !rc; k++) {
        seg_ref_t *r = c->segs[k];
        size_t first, n;
        if (!seg_ref_may_hold(r, id, c->mint, c->maxt))
            continue;
        if ((rc = seg_ref_pin(r)) != 0)
            break;
        if (seg_find(r->seg, id, &first, &n) != 0) {
            seg_ref_unpin(r);
            continue;
        }
        for (size_t i = first; i < first + n && !rc; i++) {
            seg_entry_t en;
            if ((rc = seg_entry(r->seg, i, &en)))
                break;
            if (en.maxt < c->mint || en.mint > c->maxt)
                continue;
            if (pass == 0) {
                rc = span_add(c, en.mint, en.maxt, (int)k);
            } else if (en.mint >= c->mint && en.maxt <= c->maxt && header_ok(c, &en) &&
                       !tomb_touches(c, id, r->seq_max, en.mint, en.maxt)) {
                rc = block_whole(c, r, i, &en, total);
            } else {
                rc = block_count(c, &en, id, r->seq_max, total);
            }
        }
        seg_ref_unpin(r);
    }
    return rc;
}

/* Through the ordinary reader: sources overlap, so duplicates may exist. */
static int count_slow(cnt_t *c, uint32_t id, engine_tstats_t *total)
{
    uint32_t *ids = malloc(sizeof *ids);
    if (!ids)
        return ST_ENOMEM;
    ids[0] = id;
    engine_iter_t *it;
    int rc = engine_iter_ids(c->e, ids, 1, c->mint, c->maxt, &it);
    if (rc)
        return rc;
    const st_label_t *l;
    size_t nl, n;
    const int64_t *ts;
    const double *v;
    if ((rc = engine_iter_next(it, &l, &nl, &ts, &v, &n)) == 1) {
        acc_in(c, total, ts, v, n);
        c->st.decoded += n;
        rc = 0;
    }
    engine_iter_destroy(it);
    c->st.slow_series++;
    return rc;
}

static const engine_tstats_t acc_zero = {0, 0, INT64_MAX, INT64_MIN};

static int count_series(cnt_t *c, uint32_t id, engine_tstats_t *total)
{
    engine_t *e = c->e;
    *total = acc_zero;
    c->nsp = 0;
    int rc = seg_blocks(c, id, 0, total); /* the segments are this scan's snapshot */
    if (rc)
        return rc;
    /* the heads' spans checked and their samples counted under one hold of
     * head_mu, so a write landing between cannot make a duplicate */
    pthread_mutex_lock(&e->head_mu);
    rc = head_spans(c, e->frozen, id, -1);
    if (!rc)
        rc = head_spans(c, e->head, id, -2);
    int overlap = !rc && spans_overlap(c);
    /* heads: a delete prunes them in place, so no tombstone applies */
    if (!rc && !overlap) {
        head_count(c, e->frozen, id, total);
        head_count(c, e->head, id, total);
    }
    pthread_mutex_unlock(&e->head_mu);
    if (rc || !c->nsp)
        return rc;
    if (overlap) {
        *total = acc_zero;
        return count_slow(c, id, total);
    }
    return seg_blocks(c, id, 1, total);
}

/* engine_count (ccb) or engine_tstats (tcb). */
static int count_all(engine_t *e, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                     int flags, engine_count_cb ccb, engine_tstats_cb tcb, void *arg,
                     engine_count_stats_t *stats)
{
    cnt_t c = {.e = e,
               .mint = mint,
               .maxt = maxt,
               .no_stale = !!(flags & ENGINE_COUNT_NO_STALE),
               .hash = tcb != NULL};
    uint32_t *ids;
    size_t nids;
    int rc = engine_select_ids(e, m, nm, &ids, &nids);
    if (rc)
        return rc;
    if (nids && mint <= maxt)
        rc = engine_collect_segs(e, mint, maxt, &c.segs, &c.nsegs);
    if (!rc && c.nsegs) {
        c.ntombs = engine_tomb_snapshot(e, mint, maxt, &c.tombs);
        if (c.ntombs == SIZE_MAX) {
            c.ntombs = 0;
            rc = ST_ENOMEM;
        }
    }
    st_label_t labels[ST_LABELS_MAX];
    int64_t now = st_now_ms();
    for (size_t i = 0; i < nids && !rc && mint <= maxt; i++) {
        engine_tstats_t n;
        int nl = -1;
        c.mint = mint;
        if (atomic_load(&e->nmret)) { /* a per-metric retention starts the range later */
            pthread_rwlock_rdlock(&e->idx_lock);
            nl = idx_labels(e->idx, ids[i], labels);
            pthread_rwlock_unlock(&e->idx_lock);
            if (nl < 0) {
                rc = nl;
                break;
            }
            int64_t cut = engine_metric_cut(e, labels, (size_t)nl, now);
            if (cut > c.mint)
                c.mint = cut;
            if (c.mint > maxt)
                continue;
        }
        if ((rc = count_series(&c, ids[i], &n)) != 0) {
            if (rc < 0)
                engine_set_error("cannot count series %u: %s", ids[i], st_strerror(rc));
            break;
        }
        if (!n.count)
            continue;
        if (nl < 0) {
            pthread_rwlock_rdlock(&e->idx_lock);
            nl = idx_labels(e->idx, ids[i], labels);
            pthread_rwlock_unlock(&e->idx_lock);
        }
        if (nl < 0) {
            rc = nl;
            break;
        }
        c.st.series++;
        c.st.samples += n.count;
        rc = tcb ? tcb(arg, labels, (size_t)nl, &n) : ccb(arg, labels, (size_t)nl, n.count);
    }
    for (size_t i = 0; i < c.nsegs; i++)
        seg_ref_release(c.segs[i]);
    free(c.segs);
    free(c.tombs);
    free(c.sp);
    free(c.ts);
    free(c.v);
    free(ids);
    if (stats)
        *stats = c.st;
    return rc;
}

int engine_count(engine_t *e, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                 int flags, engine_count_cb cb, void *arg, engine_count_stats_t *stats)
{
    return count_all(e, m, nm, mint, maxt, flags, cb, NULL, arg, stats);
}

int engine_tstats(engine_t *e, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                  int flags, engine_tstats_cb cb, void *arg, engine_count_stats_t *stats)
{
    return count_all(e, m, nm, mint, maxt, flags, NULL, cb, arg, stats);
}

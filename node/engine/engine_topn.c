/*
 * engine_topn — each selected series' newest (or oldest) timestamp in a
 * range, from block headers (engine_edge in engine.h). SQL's
 * `ORDER BY time DESC LIMIT n` needs to know where the newest rows are
 * before it reads any: the n-th newest of these edges bounds a window
 * that holds at least n rows.
 *
 * A segment block's header keeps its time range, and its maxt (mint) is a
 * sample's own timestamp: a block wholly inside the range gives its edge
 * without decoding. A block the range cuts is decoded only when it could
 * hold a better edge than the one found so far. Head samples are sorted
 * (normalised) and binary-searched. A per-metric retention's cut starts
 * the range later, as engine_query does.
 *
 * An estimate on one side only: tombstones are not applied (a deleted
 * sample's timestamp may be reported), so an edge may be newer (older)
 * than what engine_query returns, never the other way. Callers treat the
 * edges as a hint and check what they then read (router_sql.c grows its
 * window when it is short).
 */
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "engine_internal.h"
#include "st_err.h"
#include "st_time.h"

typedef struct edge {
    int64_t mint, maxt;
    int oldest;
    int64_t *ts;
    double *v;
    size_t cap;
} edge_t;

/* Is t in range and better than *best (found: *has)? */
static void consider(const edge_t *c, int64_t t, int64_t *best, int *has)
{
    if (t < c->mint || t > c->maxt)
        return;
    if (!*has || (c->oldest ? t < *best : t > *best)) {
        *best = t;
        *has = 1;
    }
}

/* The edge of sorted ts[0..n) inside the range. */
static void sorted_edge(const edge_t *c, const int64_t *ts, size_t n, int64_t *best, int *has)
{
    size_t lo = 0, hi = n;
    if (c->oldest) { /* first >= mint */
        while (lo < hi) {
            size_t m = lo + (hi - lo) / 2;
            if (ts[m] < c->mint)
                lo = m + 1;
            else
                hi = m;
        }
        if (lo < n)
            consider(c, ts[lo], best, has);
    } else { /* last <= maxt */
        while (lo < hi) {
            size_t m = lo + (hi - lo) / 2;
            if (ts[m] <= c->maxt)
                lo = m + 1;
            else
                hi = m;
        }
        if (lo > 0)
            consider(c, ts[lo - 1], best, has);
    }
}

static int block_edge(edge_t *c, const seg_entry_t *en, int64_t *best, int *has)
{
    if (en->count > c->cap) {
        size_t cap = c->cap ? c->cap : 1024;
        while (cap < en->count)
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
    size_t got;
    int rc = codec_decode(en->block, en->block_len, c->ts, c->v, en->count, &got);
    if (rc)
        return rc;
    sorted_edge(c, c->ts, got, best, has);
    return 0;
}

static int seg_edge(edge_t *c, seg_ref_t **segs, size_t nsegs, uint32_t id, int64_t *best, int *has)
{
    int rc = 0;
    for (size_t k = 0; k < nsegs && !rc; k++) {
        seg_ref_t *r = segs[k];
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
            int64_t edge = c->oldest ? en.mint : en.maxt;
            if (edge >= c->mint && edge <= c->maxt) {
                consider(c, edge, best, has);
                continue;
            }
            /* cut by the range: decode only when it may beat the best */
            int64_t far = c->oldest ? c->mint : c->maxt;
            if (*has && (c->oldest ? far >= *best : far <= *best))
                continue;
            rc = block_edge(c, &en, best, has);
        }
        seg_ref_unpin(r);
    }
    return rc;
}

static void head_edge(edge_t *c, head_t *h, uint32_t id, int64_t *best, int *has)
{
    head_series_t *s = h ? head_series_at(h, id) : NULL;
    if (!s || !s->n)
        return;
    if (s->maxt < c->mint || s->mint > c->maxt)
        return;
    head_series_normalize(h, s);
    sorted_edge(c, s->ts, s->n, best, has);
}

int engine_edge(engine_t *e, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                int oldest, engine_edge_cb cb, void *arg)
{
    edge_t c = {.mint = mint, .maxt = maxt, .oldest = oldest};
    uint32_t *ids = NULL;
    size_t nids = 0;
    const char *why = NULL;
    seg_ref_t **segs = NULL;
    size_t nsegs = 0;
    pthread_rwlock_rdlock(&e->idx_lock);
    int rc = idx_select(e->idx, m, nm, &ids, &nids, &why);
    pthread_rwlock_unlock(&e->idx_lock);
    if (rc) {
        if (why)
            engine_set_error("%s", why);
        return rc;
    }
    if (nids && mint <= maxt)
        rc = engine_collect_segs(e, mint, maxt, &segs, &nsegs);
    st_label_t labels[ST_LABELS_MAX];
    int64_t now = st_now_ms();
    for (size_t i = 0; i < nids && !rc && mint <= maxt; i++) {
        pthread_rwlock_rdlock(&e->idx_lock);
        int nl = idx_labels(e->idx, ids[i], labels);
        pthread_rwlock_unlock(&e->idx_lock);
        if (nl < 0) {
            rc = nl;
            break;
        }
        c.mint = mint;
        if (atomic_load(&e->nmret)) { /* a per-metric retention starts the range later */
            int64_t cut = engine_metric_cut(e, labels, (size_t)nl, now);
            if (cut > c.mint)
                c.mint = cut;
            if (c.mint > maxt)
                continue;
        }
        int64_t best = 0;
        int has = 0;
        rc = seg_edge(&c, segs, nsegs, ids[i], &best, &has);
        if (rc)
            break;
        pthread_mutex_lock(&e->head_mu);
        head_edge(&c, e->frozen, ids[i], &best, &has);
        head_edge(&c, e->head, ids[i], &best, &has);
        pthread_mutex_unlock(&e->head_mu);
        if (has)
            rc = cb(arg, labels, (size_t)nl, best);
    }
    for (size_t i = 0; i < nsegs; i++)
        seg_ref_release(segs[i]);
    free(segs);
    free(c.ts);
    free(c.v);
    free(ids);
    return rc;
}

/*
 * engine_query — select series through the label index, then merge each
 * series' samples from every source in age order: segments by ascending
 * sequence, the frozen head, the active head. Sources are concatenated
 * oldest first and stably sorted, so for equal timestamps the value with the
 * highest version is kept, and of equal versions the newest source's (last
 * write wins). A segment sample's version is its block's vmax.
 *
 * The iterator holds references to the segments it saw at creation, so a
 * concurrent compaction or retention pass cannot unmap them underneath it;
 * each segment is pinned (opened if the LRU closed it) only while one
 * series is read from it, so a wide query does not hold every file open;
 * head samples are copied under head_mu series by series.
 *
 * Segment selection: each segment's in-memory summary (time range, series
 * ids; seg.h) is kept while its file is closed, so a segment that cannot
 * hold a selected series in the range is dropped when the iterator is made
 * and one that cannot hold the series being read is skipped, both without
 * opening the file (counted in seg_reads_skipped).
 *
 * Lookups: a segment's entries are found from where the previous series'
 * search ended there (seg_find_from; ids come ascending from the index),
 * and a series read from several sources (segments, frozen and active
 * head: each strictly ascending) is merged source by source, in time
 * linear in its samples plus the overlaps (merge_runs); a sort only when a
 * source is found out of order.
 *
 * Per-metric retentions (engine_opts.metric_retention): a series' samples
 * older than its metric's cut at the iterator's creation are not returned,
 * whether or not the retention pass has removed them yet.
 */
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "engine_internal.h"
#include "st_err.h"
#include "st_time.h"
#include "tomb.h"

struct engine_iter {
    engine_t *e;
    uint32_t *ids;
    size_t nids, pos;
    int64_t mint, maxt;
    int64_t now; /* for the per-metric retentions */
    seg_ref_t **segs;
    size_t *hint; /* [nsegs]: seg_find_from's position in each */
    size_t nsegs;
    tomb_t **tombs; /* tombstones that may mask these segments (engine_delete.c) */
    size_t ntombs;
    st_label_t labels[ST_LABELS_MAX];
    int64_t *ts;
    double *v;
    uint64_t *ver; /* versions: exact from the head, the block's vmax from segments */
    size_t n, cap;
    size_t *run; /* where each source's samples start in ts/v/ver (load_series) */
    size_t nrun, runcap;
    int64_t *mts; /* merge scratch (merge_runs) */
    double *mv;
    uint64_t *mver;
    size_t mcap;
    size_t lo;        /* the last engine_iter_next returned [lo, lo + count) */
    uint64_t skipped; /* segment reads avoided by summaries */
};

/* Room for `need` (ts, value, version) triples in three arrays of *cap. */
static int grow3(int64_t **ts, double **v, uint64_t **ver, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    int64_t *t = realloc(*ts, c * sizeof *t);
    if (!t)
        return ST_ENOMEM;
    *ts = t;
    double *x = realloc(*v, c * sizeof *x);
    if (!x)
        return ST_ENOMEM;
    *v = x;
    uint64_t *vr = realloc(*ver, c * sizeof *vr);
    if (!vr)
        return ST_ENOMEM;
    *ver = vr;
    *cap = c; /* only once all three hold c */
    return 0;
}

static int it_reserve(engine_iter_t *it, size_t extra)
{
    return grow3(&it->ts, &it->v, &it->ver, &it->cap, it->n + extra);
}

/* Note that a source's samples start at it->n. */
static int run_begin(engine_iter_t *it)
{
    if (it->nrun == it->runcap) {
        size_t cap = it->runcap ? it->runcap * 2 : 16;
        size_t *r = realloc(it->run, cap * sizeof *r);
        if (!r)
            return ST_ENOMEM;
        it->run = r;
        it->runcap = cap;
    }
    it->run[it->nrun++] = it->n;
    return 0;
}

static int merge_reserve(engine_iter_t *it, size_t n)
{
    return grow3(&it->mts, &it->mv, &it->mver, &it->mcap, n);
}

/* Drop the segments whose summary shows no selected id in
 * the range: they are never opened for this iterator. */
static void prune_segs(engine_iter_t *it)
{
    if (!it->nids)
        return;
    uint32_t lo = UINT32_MAX, hi = 0; /* ids need not be sorted (engine_iter_ids) */
    for (size_t i = 0; i < it->nids; i++) {
        lo = it->ids[i] < lo ? it->ids[i] : lo;
        hi = it->ids[i] > hi ? it->ids[i] : hi;
    }
    size_t w = 0;
    for (size_t k = 0; k < it->nsegs; k++) {
        seg_ref_t *r = it->segs[k];
        seg_summary_t *m = atomic_load(&r->sum);
        if (m && !seg_summary_may_overlap(m, lo, hi, it->mint, it->maxt)) {
            seg_ref_release(r);
            it->skipped++;
        } else {
            it->segs[w++] = r;
        }
    }
    it->nsegs = w;
}

/* Segments and tombstones of a selected iterator. */
static int iter_start(engine_iter_t *it, int rc, engine_iter_t **out)
{
    it->now = st_now_ms();
    if (!rc && it->nids && it->mint <= it->maxt)
        rc = engine_collect_segs(it->e, it->mint, it->maxt, &it->segs, &it->nsegs);
    if (!rc)
        prune_segs(it);
    if (!rc && it->nsegs && !(it->hint = calloc(it->nsegs, sizeof *it->hint)))
        rc = ST_ENOMEM;
    if (!rc && it->nsegs) {
        it->ntombs = engine_tomb_snapshot(it->e, it->mint, it->maxt, &it->tombs);
        if (it->ntombs == SIZE_MAX) {
            it->ntombs = 0;
            rc = ST_ENOMEM;
        }
    }
    if (rc) {
        engine_iter_destroy(it);
        return rc;
    }
    *out = it;
    return 0;
}

int engine_query(engine_t *e, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                 engine_iter_t **out)
{
    engine_iter_t *it = calloc(1, sizeof *it);
    if (!it)
        return ST_ENOMEM;
    it->e = e;
    it->mint = mint;
    it->maxt = maxt;
    int rc = engine_select_ids(e, m, nm, &it->ids, &it->nids);
    if (rc) {
        free(it);
        return rc;
    }
    return iter_start(it, rc, out);
}

int engine_select_ids(engine_t *e, const st_matcher_t *m, size_t nm, uint32_t **ids, size_t *n)
{
    const char *why = NULL;
    *ids = NULL;
    *n = 0;
    pthread_rwlock_rdlock(&e->idx_lock);
    int rc = idx_select(e->idx, m, nm, ids, n, &why);
    pthread_rwlock_unlock(&e->idx_lock);
    if (rc && why)
        engine_set_error("%s", why);
    return rc;
}

int engine_select_count(engine_t *e, const st_matcher_t *m, size_t nm, size_t *count)
{
    uint32_t *ids;
    size_t n;
    int rc = engine_select_ids(e, m, nm, &ids, &n);
    free(ids);
    *count = rc ? 0 : n;
    return rc;
}

int engine_iter_ids(engine_t *e, uint32_t *ids, size_t n, int64_t mint, int64_t maxt,
                    engine_iter_t **out)
{
    engine_iter_t *it = calloc(1, sizeof *it);
    if (!it) {
        free(ids);
        return ST_ENOMEM;
    }
    it->e = e;
    it->mint = mint;
    it->maxt = maxt;
    it->ids = ids;
    it->nids = n;
    return iter_start(it, 0, out);
}

/* Copy head samples of `id` in range (head_mu held). */
static int copy_head(engine_iter_t *it, head_t *h, uint32_t id, int *sources)
{
    head_series_t *s = h ? head_series_at(h, id) : NULL;
    if (!s || s->n == 0 || s->maxt < it->mint || s->mint > it->maxt)
        return 0;
    head_series_normalize(h, s);
    int rc = it_reserve(it, s->n);
    if (!rc)
        rc = run_begin(it);
    if (rc)
        return rc;
    memcpy(it->ts + it->n, s->ts, s->n * sizeof *it->ts);
    memcpy(it->v + it->n, s->v, s->n * sizeof *it->v);
    head_series_versions(h, s, 0, s->n, it->ver + it->n);
    it->n += s->n;
    (*sources)++;
    return 0;
}

/*
 * Merge the sources of one series, each strictly ascending (a segment's
 * blocks are ordered, disjoint and deduplicated; a head series is
 * normalized), in source order: a source that starts after what is merged
 * so far is moved up; one that reaches back is merged with the merged
 * samples from the first it reaches, keeping of equal timestamps the
 * higher version and, on a tie, the later source (the rule of
 * samples_sort_dedup, whose stable sort saw the sources in this order).
 * Work is linear in the samples plus the overlaps. Returns the new count,
 * or SIZE_MAX when a source is not strictly ascending or memory is short
 * (the caller sorts instead: nothing was changed then).
 */
static size_t merge_runs(engine_iter_t *it)
{
    int64_t *ts = it->ts;
    double *v = it->v;
    uint64_t *ver = it->ver;
    for (size_t r = 0; r < it->nrun; r++) {
        size_t a = it->run[r], b = r + 1 < it->nrun ? it->run[r + 1] : it->n;
        for (size_t i = a + 1; i < b; i++)
            if (ts[i] <= ts[i - 1])
                return SIZE_MAX;
    }
    if (merge_reserve(it, it->n)) /* the most one merge can take */
        return SIZE_MAX;
    size_t m = 0; /* [0, m): merged, strictly ascending */
    for (size_t r = 0; r < it->nrun; r++) {
        size_t a = it->run[r], b = r + 1 < it->nrun ? it->run[r + 1] : it->n;
        if (a == b)
            continue;
        if (m == 0 || ts[a] > ts[m - 1]) { /* after everything so far */
            if (m != a) {
                memmove(ts + m, ts + a, (b - a) * sizeof *ts);
                memmove(v + m, v + a, (b - a) * sizeof *v);
                memmove(ver + m, ver + a, (b - a) * sizeof *ver);
            }
            m += b - a;
            continue;
        }
        size_t lo = 0, hi = m; /* the first merged sample at or after ts[a] */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (ts[mid] < ts[a])
                lo = mid + 1;
            else
                hi = mid;
        }
        size_t i = lo, j = a, w = 0;
        while (i < m || j < b) {
            size_t from;
            if (j >= b || (i < m && ts[i] < ts[j])) {
                from = i++;
            } else if (i >= m || ts[j] < ts[i]) {
                from = j++;
            } else { /* equal: the higher version, the later source on a tie */
                from = ver[i] > ver[j] ? i : j;
                i++;
                j++;
            }
            it->mts[w] = ts[from];
            it->mv[w] = v[from];
            it->mver[w] = ver[from];
            w++;
        }
        memcpy(ts + lo, it->mts, w * sizeof *ts);
        memcpy(v + lo, it->mv, w * sizeof *v);
        memcpy(ver + lo, it->mver, w * sizeof *ver);
        m = lo + w;
    }
    return m;
}

/* Sort and dedup it's samples (samples_sort_dedup) from the first one not
 * below every later sample: the part before is in order and holds no
 * timestamp of the rest. Returns the new count. */
static size_t sort_tail(engine_iter_t *it)
{
    const int64_t *ts = it->ts;
    size_t n = it->n, k = 1;
    while (k < n && ts[k] > ts[k - 1])
        k++;
    if (k >= n)
        return n;
    int64_t min = ts[k];
    for (size_t i = k + 1; i < n; i++)
        min = ts[i] < min ? ts[i] : min;
    size_t lo = 0, hi = k; /* the first of [0, k) at or after min */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ts[mid] < min)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo + samples_sort_dedup(it->ts + lo, it->v + lo, it->ver + lo, n - lo);
}

static int load_series(engine_iter_t *it, uint32_t id)
{
    int sources = 0, rc = 0;
    it->n = 0;
    it->nrun = 0;
    for (size_t k = 0; k < it->nsegs && !rc; k++) {
        size_t first, cnt;
        seg_ref_t *r = it->segs[k];
        if (!seg_ref_may_hold(r, id, it->mint, it->maxt)) {
            it->skipped++;
            continue;
        }
        if ((rc = seg_ref_pin(r)) != 0) /* opened lazily, closed by the LRU */
            break;
        if (seg_find_from(r->seg, id, &it->hint[k], &first, &cnt) != 0) {
            seg_ref_unpin(r);
            continue;
        }
        int used = 0;
        if ((rc = run_begin(it)))
            break;
        for (size_t i = first; i < first + cnt && !rc; i++) {
            seg_entry_t en;
            if ((rc = seg_entry(r->seg, i, &en)))
                break;
            if (en.maxt < it->mint || en.mint > it->maxt)
                continue;
            if ((rc = it_reserve(it, en.count)))
                break;
            size_t got;
            rc =
                codec_decode(en.block, en.block_len, it->ts + it->n, it->v + it->n, en.count, &got);
            if (!rc && got != en.count)
                rc = ST_ECORRUPT;
            if (!rc && it->ntombs) /* deleted after this segment was written */
                got = tomb_mask(it->tombs, it->ntombs, id, r->seq_max, it->ts + it->n,
                                it->v + it->n, got);
            for (size_t j = 0; !rc && j < got; j++)
                it->ver[it->n + j] = en.vmax;
            it->n += got;
            used = 1;
        }
        seg_ref_unpin(r);
        sources += used;
    }
    if (rc) {
        engine_set_error("cannot read series %u: %s", id, st_strerror(rc));
        return rc;
    }
    engine_t *e = it->e;
    pthread_mutex_lock(&e->head_mu);
    rc = copy_head(it, e->frozen, id, &sources);
    if (!rc)
        rc = copy_head(it, e->head, id, &sources);
    pthread_mutex_unlock(&e->head_mu);
    if (rc)
        return rc;
    /* blocks of one segment are ordered and disjoint, so one source is sorted */
    if (sources > 1) {
        size_t m = merge_runs(it);
        it->n = m != SIZE_MAX ? m : sort_tail(it);
    }
    return 0;
}

int engine_iter_next(engine_iter_t *it, const st_label_t **labels, size_t *nlabels,
                     const int64_t **ts, const double **values, size_t *n)
{
    while (it->pos < it->nids) {
        uint32_t id = it->ids[it->pos++];
        int rc = load_series(it, id);
        if (rc)
            return rc;
        /* trim to [mint, maxt], then to its metric's retention */
        size_t lo = 0, hi = it->n;
        while (lo < hi && it->ts[lo] < it->mint)
            lo++;
        while (hi > lo && it->ts[hi - 1] > it->maxt)
            hi--;
        if (lo == hi)
            continue;
        pthread_rwlock_rdlock(&it->e->idx_lock);
        int nl = idx_labels(it->e->idx, id, it->labels);
        pthread_rwlock_unlock(&it->e->idx_lock);
        if (nl < 0)
            return nl;
        int64_t cut = engine_metric_cut(it->e, it->labels, (size_t)nl, it->now);
        while (lo < hi && it->ts[lo] < cut)
            lo++;
        if (lo == hi)
            continue;
        *labels = it->labels;
        *nlabels = (size_t)nl;
        *ts = it->ts + lo;
        *values = it->v + lo;
        *n = hi - lo;
        it->lo = lo;
        return 1;
    }
    return 0;
}

const uint64_t *engine_iter_versions(const engine_iter_t *it)
{
    return it->ver + it->lo;
}

size_t engine_iter_pos(const engine_iter_t *it)
{
    return it->pos;
}

void engine_iter_seek(engine_iter_t *it, size_t pos)
{
    it->pos = pos < it->nids ? pos : it->nids;
}

void engine_iter_destroy(engine_iter_t *it)
{
    if (!it)
        return;
    atomic_fetch_add(&it->e->seg_reads_skipped, it->skipped);
    for (size_t i = 0; i < it->nsegs; i++)
        seg_ref_release(it->segs[i]);
    free(it->segs);
    free(it->hint);
    free(it->tombs);
    free(it->ids);
    free(it->ts);
    free(it->v);
    free(it->ver);
    free(it->run);
    free(it->mts);
    free(it->mv);
    free(it->mver);
    free(it);
}

/*
 * Before a flush gives the frozen head's samples their block's version
 * (engine.h, VERSIONS), drop the frozen samples that already lose: a
 * sample of a segment or of the active head at the same timestamp holds a
 * higher version. Otherwise a hidden older value would be promoted to its
 * new block's vmax and win. Only series with versions that a segment may
 * hold in their time range are read (summaries decide, unopened), and of
 * those only the window the segments' time ranges cover is read from the
 * files (a head usually overlaps the last flushed one by a few seconds:
 * reading the series' whole range cost ~2% of a replica's ingest CPU);
 * outside it the active head is the only rival, compared directly.
 */
int engine_frozen_resolve(engine_t *e, head_t *f, uint64_t *dropped)
{
    if (!f || f->mint > f->maxt)
        return 0;
    seg_ref_t **segs = NULL;
    size_t nsegs = 0;
    int rc = engine_collect_segs(e, f->mint, f->maxt, &segs, &nsegs);
    if (rc || !nsegs) {
        free(segs);
        return rc;
    }
    for (uint32_t id = 0; id < f->ns && !rc; id++) {
        /* a frozen head takes no appends: its series and their version
         * arrays are fixed; only a delete may shrink a series (head_mu) */
        head_series_t *s = head_series_at(f, id);
        if (!s || !head_series_versioned(s))
            continue;
        pthread_mutex_lock(&e->head_mu);
        int versioned = s->n > 0;
        int64_t mint = versioned ? s->mint : 0, maxt = versioned ? s->maxt : 0;
        pthread_mutex_unlock(&e->head_mu);
        if (!versioned)
            continue;
        int contested = 0, ranged = 1;
        int64_t wlo = INT64_MAX, whi = INT64_MIN; /* the contesting files' union */
        for (size_t k = 0; k < nsegs && ranged; k++) {
            int64_t a, b;
            if (!seg_ref_may_hold(segs[k], id, mint, maxt))
                continue;
            contested = 1;
            if ((ranged = seg_ref_range(segs[k], &a, &b)) != 0) {
                wlo = a < wlo ? a : wlo;
                whi = b > whi ? b : whi;
            }
        }
        if (!contested)
            continue;
        if (ranged) { /* may_hold said they overlap: the window is not empty */
            wlo = wlo > mint ? wlo : mint;
            whi = whi < maxt ? whi : maxt;
        } else {
            wlo = mint;
            whi = maxt;
        }
        uint32_t *ids = malloc(sizeof *ids);
        if (!ids) {
            rc = ST_ENOMEM;
            break;
        }
        ids[0] = id;
        engine_iter_t *it;
        if ((rc = engine_iter_ids(e, ids, 1, wlo, whi, &it)) != 0)
            break;
        rc = load_series(it, id); /* segments + frozen + active head, merged */
        if (!rc) {
            pthread_mutex_lock(&e->head_mu);
            head_series_normalize(f, s);
            head_t *ah = e->head; /* the active head, outside the window */
            head_series_t *as = head_series_at(ah, id);
            if (as)
                head_series_normalize(ah, as);
            uint32_t w = 0, ja = 0;
            size_t j = 0;
            int64_t nmin = INT64_MAX, nmax = INT64_MIN;
            for (uint32_t i = 0; i < s->n; i++) {
                int64_t t = s->ts[i];
                uint64_t ver = head_version(f, s, i);
                if (t >= wlo && t <= whi) {
                    while (j < it->n && it->ts[j] < t)
                        j++;
                    if (j < it->n && it->ts[j] == t && it->ver[j] > ver)
                        continue; /* hidden by a higher version */
                } else if (as) {
                    while (ja < as->n && as->ts[ja] < t)
                        ja++;
                    if (ja < as->n && as->ts[ja] == t && head_version(ah, as, ja) > ver)
                        continue;
                }
                s->ts[w] = s->ts[i];
                s->v[w] = s->v[i];
                s->vi[w] = s->vi[i];
                nmin = s->ts[w] < nmin ? s->ts[w] : nmin;
                nmax = s->ts[w] > nmax ? s->ts[w] : nmax;
                w++;
            }
            *dropped += s->n - w;
            f->samples -= s->n - w;
            s->n = w;
            s->mint = nmin;
            s->maxt = nmax;
            pthread_mutex_unlock(&e->head_mu);
        }
        engine_iter_destroy(it);
    }
    for (size_t k = 0; k < nsegs; k++)
        seg_ref_release(segs[k]);
    free(segs);
    return rc;
}

/*
 * engine_segs — the read side of the partition table, shared by flush,
 * compaction, retention and every reader: dropping a reference to a
 * segment (the last one closes it and, when compaction replaced it,
 * unlinks the file), taking references to the segments of a time range
 * under parts_mu, and a series' per-metric retention cut.
 *
 * Kept apart from engine_flush.c (which writes the table) so that the
 * readers (engine_query.c, engine_count.c, engine_tier.c) and the flush
 * path depend on this file, not on each other: engine_flush.c may call the
 * query side (the version check before a flush) without a circle.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_internal.h"

void seg_ref_release(seg_ref_t *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    seg_ref_lru_drop(r);
    if (atomic_load(&r->obsolete))
        unlink(r->path);
    seg_summary_free(atomic_load(&r->sum));
    free(atomic_load(&r->tsh)); /* one allocation (engine_count.c, tshash_of) */
    free(r->path);
    free(r);
}

int engine_collect_segs(engine_t *e, int64_t mint, int64_t maxt, seg_ref_t ***out, size_t *n)
{
    pthread_mutex_lock(&e->parts_mu);
    size_t cnt = 0;
    for (size_t i = 0; i < e->nparts; i++)
        if (e->parts[i]->start <= maxt && e->parts[i]->end > mint)
            cnt += e->parts[i]->nsegs;
    seg_ref_t **v = cnt ? malloc(cnt * sizeof *v) : NULL;
    if (cnt && !v) {
        pthread_mutex_unlock(&e->parts_mu);
        return ST_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < e->nparts; i++) {
        part_t *p = e->parts[i];
        if (!(p->start <= maxt && p->end > mint))
            continue;
        for (size_t j = 0; j < p->nsegs; j++) {
            atomic_fetch_add(&p->segs[j]->refs, 1);
            v[k++] = p->segs[j];
        }
    }
    pthread_mutex_unlock(&e->parts_mu);
    *out = v;
    *n = k;
    return 0;
}

int64_t engine_metric_cut(engine_t *e, const st_label_t *l, size_t nl, int64_t now_ms)
{
    if (!atomic_load(&e->nmret))
        return ENGINE_TS_MIN;
    int64_t cut = ENGINE_TS_MIN;
    for (size_t i = 0; i < nl; i++) {
        if (l[i].name_len != sizeof ST_METRIC_LABEL - 1 ||
            memcmp(l[i].name, ST_METRIC_LABEL, l[i].name_len))
            continue;
        pthread_rwlock_rdlock(&e->mret_lock);
        size_t lo = 0, hi = e->nmret;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            const char *m = e->mret[mid].metric;
            int c = strncmp(m, l[i].value, l[i].value_len);
            if (c == 0)
                c = m[l[i].value_len] ? 1 : 0;
            if (c == 0) {
                cut = now_ms - e->mret[mid].ms;
                break;
            }
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        pthread_rwlock_unlock(&e->mret_lock);
        break;
    }
    return cut;
}

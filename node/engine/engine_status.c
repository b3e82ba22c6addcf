/*
 * engine_status — cardinality counting for /api/v1/status/tsdb (see
 * engine_label_pairs in engine.h).
 *
 * How: under the index read lock, the ids of the selected series (or all
 * ids) are walked once; each label of each series is counted in an
 * open-addressing table keyed by the pair. The table keeps pointers into
 * the index (idx_labels: valid until idx_close), so nothing is copied; the
 * callback runs after the walk, still under the lock.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

#define PAIRS_MIN 1024 /* first table size (power of 2) */

typedef struct pair {
    st_label_t l;
    uint64_t hash;
    uint64_t series; /* 0: empty slot */
} pair_t;

typedef struct pairs {
    pair_t *t;
    size_t cap, n;
} pairs_t;

static int pairs_grow(pairs_t *p)
{
    size_t cap = p->cap ? p->cap * 2 : PAIRS_MIN;
    pair_t *t = calloc(cap, sizeof *t);
    if (!t)
        return ST_ENOMEM;
    for (size_t i = 0; i < p->cap; i++) {
        if (!p->t[i].series)
            continue;
        size_t k = p->t[i].hash & (cap - 1);
        while (t[k].series)
            k = (k + 1) & (cap - 1);
        t[k] = p->t[i];
    }
    free(p->t);
    p->t = t;
    p->cap = cap;
    return 0;
}

static int pairs_add(pairs_t *p, const st_label_t *l)
{
    if ((p->n + 1) * 2 > p->cap && pairs_grow(p))
        return ST_ENOMEM;
    uint64_t h = st_labels_hash(l, 1);
    size_t k = h & (p->cap - 1);
    while (p->t[k].series) {
        pair_t *e = &p->t[k];
        if (e->hash == h && e->l.name_len == l->name_len && e->l.value_len == l->value_len &&
            memcmp(e->l.name, l->name, l->name_len) == 0 &&
            memcmp(e->l.value, l->value, l->value_len) == 0) {
            e->series++;
            return 0;
        }
        k = (k + 1) & (p->cap - 1);
    }
    p->t[k] = (pair_t){*l, h, 1};
    p->n++;
    return 0;
}

int engine_label_pairs(engine_t *e, const st_matcher_t *m, size_t nm, uint64_t *series,
                       engine_pair_cb cb, void *arg)
{
    uint32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    pairs_t p = {0};
    *series = 0;
    pthread_rwlock_rdlock(&e->idx_lock);
    if (nm) {
        const char *why = NULL;
        rc = idx_select(e->idx, m, nm, &ids, &n, &why);
        if (rc && why)
            engine_set_error("%s", why);
    } else {
        n = idx_count(e->idx);
    }
    st_label_t l[ST_LABELS_MAX];
    int dead = engine_tomb_any_dead(e); /* series a delete emptied are not counted */
    for (size_t i = 0; i < n && !rc; i++) {
        uint32_t id = nm ? ids[i] : (uint32_t)i;
        if (dead && engine_tomb_filter_ids(e, &id, 1) == 0)
            continue;
        int nl = idx_labels(e->idx, id, l);
        if (nl < 0)
            continue; /* an id the index no longer knows */
        (*series)++;
        for (int k = 0; k < nl && !rc; k++)
            rc = pairs_add(&p, &l[k]);
    }
    for (size_t i = 0; i < p.cap && !rc; i++)
        if (p.t[i].series)
            rc = cb(arg, &p.t[i].l, p.t[i].series);
    pthread_rwlock_unlock(&e->idx_lock);
    free(p.t);
    free(ids);
    return rc;
}

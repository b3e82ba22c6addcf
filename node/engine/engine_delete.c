/*
 * engine_delete — the operations of deletion: engine_delete (mask, log and
 * save a tombstone, or count what it would remove), engine_purge (compact
 * the partitions that still hold deleted samples) and engine_tomb_ready
 * (re-check the dead series at open). The tombstones' state, masking and
 * persistence live in engine_tomb.c; this file sits above the read
 * iterator (engine_query.c) and compaction (engine_flush.c), which only use
 * engine_tomb.c, so the three never use each other in a circle.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "st_err.h"
#include "st_time.h"
#include "tomb.h"

/* Count (with n > 0 samples) / check visibility of series through a query
 * over ids: the shared iterator does the masking. */
static int scan_ids(engine_t *e, const uint32_t *ids, size_t n, int64_t start, int64_t end,
                    uint64_t *series, uint64_t *samples, uint8_t *stays)
{
    uint32_t *copy = malloc((n ? n : 1) * sizeof *copy);
    if (!copy)
        return ST_ENOMEM;
    if (n)
        memcpy(copy, ids, n * sizeof *copy);
    engine_iter_t *it;
    int rc = engine_iter_ids(e, copy, n, ENGINE_TS_MIN, ENGINE_TS_MAX, &it);
    if (rc)
        return rc;
    const st_label_t *l;
    size_t nl, cnt;
    const int64_t *ts;
    const double *v;
    while ((rc = engine_iter_next(it, &l, &nl, &ts, &v, &cnt)) == 1) {
        size_t k = engine_iter_pos(it) - 1, in = 0;
        for (size_t i = 0; i < cnt; i++)
            in += ts[i] >= start && ts[i] <= end;
        if (in) {
            (*series)++;
            *samples += in;
        }
        if (stays && cnt > in)
            stays[k] = 1;
    }
    engine_iter_destroy(it);
    return rc < 0 ? rc : 0;
}

/* A versioned delete, under head_mu: series created since its selection
 * (a write racing the delete, maybe older than it) are selected too, so
 * the head prune reaches them; their `stays` is 1 (just written). */
static int reselect(engine_t *e, tomb_t *t, uint32_t seen, uint8_t **stays)
{
    pthread_rwlock_rdlock(&e->idx_lock);
    uint32_t now = idx_count(e->idx);
    pthread_rwlock_unlock(&e->idx_lock);
    if (now == seen)
        return 0;
    uint32_t *old = t->ids;
    size_t nold = t->nids;
    t->ids = NULL;
    t->nids = 0;
    int rc = engine_tomb_select(e, t);
    uint8_t *st = rc ? NULL : calloc(t->nids ? t->nids : 1, 1);
    if (!rc && !st)
        rc = ST_ENOMEM;
    for (size_t i = 0, j = 0; !rc && i < t->nids; i++) { /* both ascending */
        while (j < nold && old[j] < t->ids[i])
            j++;
        st[i] = j < nold && old[j] == t->ids[i] ? (*stays)[j] : 1;
    }
    free(old);
    if (!rc) {
        free(*stays);
        *stays = st;
    }
    return rc;
}

int engine_tomb_ready(engine_t *e)
{
    int rc = 0;
    pthread_mutex_lock(&e->tomb_mu);
    size_t n = e->ntombs;
    pthread_mutex_unlock(&e->tomb_mu);
    for (size_t i = 0; i < n && !rc; i++)
        rc = engine_tomb_select(e, e->tombs[i]);
    /* the dead list may be stale (written again, then crashed): re-check */
    if (!rc && atomic_load(&e->ndead)) {
        uint32_t *ids = malloc(atomic_load(&e->ndead) * sizeof *ids);
        size_t nd = 0;
        if (!ids)
            return ST_ENOMEM;
        for (size_t i = 0; i < e->dead_cap; i++)
            if (e->dead[i])
                ids[nd++] = (uint32_t)i;
        uint8_t *stays = calloc(nd ? nd : 1, 1);
        uint64_t s = 0, c = 0;
        rc = stays ? scan_ids(e, ids, nd, 1, 0, &s, &c, stays) : ST_ENOMEM;
        for (size_t i = 0; i < nd && !rc; i++)
            if (stays[i] || ids[i] >= idx_count(e->idx))
                engine_tomb_dead_set(e, ids[i], 0);
        free(stays);
        free(ids);
    }
    if (!rc && e->tomb_dirty) {
        rc = engine_tomb_save(e);
        e->tomb_dirty = 0;
    }
    return rc;
}

int engine_delete(engine_t *e, const st_matcher_t *m, size_t nm, int64_t start, int64_t end,
                  uint64_t id, int dry_run, engine_delete_result_t *r)
{
    return engine_delete_v(e, m, nm, start, end, id, 0, dry_run, r);
}

int engine_delete_v(engine_t *e, const st_matcher_t *m, size_t nm, int64_t start, int64_t end,
                    uint64_t id, uint64_t version, int dry_run, engine_delete_result_t *r)
{
    memset(r, 0, sizeof *r);
    if (nm == 0 || nm > TOMB_MATCHERS_MAX || start > end) {
        engine_set_error(nm == 0                  ? "a delete needs at least one matcher"
                         : nm > TOMB_MATCHERS_MAX ? "too many matchers in a delete (max 64)"
                                                  : "delete range: start after end");
        return ST_EINVAL;
    }
    if (start < ENGINE_TS_MIN)
        start = ENGINE_TS_MIN;
    if (end > ENGINE_TS_MAX)
        end = ENGINE_TS_MAX;
    pthread_mutex_lock(&e->flush_mu);
    if (id) {
        int seen = 0;
        pthread_mutex_lock(&e->tomb_mu);
        for (size_t i = 0; i < e->ntombs && !seen; i++)
            seen = e->tombs[i]->id == id;
        pthread_mutex_unlock(&e->tomb_mu);
        if (seen) { /* a repeated delivery (hint replay, retry): already applied */
            pthread_mutex_unlock(&e->flush_mu);
            r->duplicate = 1;
            return 0;
        }
    }
    tomb_t *t = NULL;
    uint8_t *stays = NULL;
    int rc = tomb_new(m, nm, start, end, id, 0, st_now_ms(), &t);
    pthread_rwlock_rdlock(&e->idx_lock);
    uint32_t seen = idx_count(e->idx);
    pthread_rwlock_unlock(&e->idx_lock);
    if (!rc) {
        t->version = version;
        rc = engine_tomb_select(e, t);
    }
    if (!rc && !(stays = calloc(t->nids ? t->nids : 1, 1)))
        rc = ST_ENOMEM;
    if (!rc)
        rc = scan_ids(e, t->ids, t->nids, start, end, &r->series, &r->samples, stays);
    /* a versioned delete is kept even when it selects nothing here yet: an
     * older write arriving later (hint, repair) must stay hidden */
    if (rc || dry_run || (t->nids == 0 && !version)) {
        pthread_mutex_unlock(&e->flush_mu);
        tomb_free(t);
        free(stays);
        return rc;
    }
    t->seq = e->next_seq++;
    st_buf_t rec;
    st_buf_init(&rec);
    uint64_t lsn = 0;
    pthread_mutex_lock(&e->head_mu);
    if (version)
        rc = reselect(e, t, seen, &stays);
    if (!rc && e->o.wal_durability != ENGINE_WAL_NONE) {
        rc = tomb_encode(&rec, t);
        if (!rc)
            rc = wal_append(e->wal, WAL_REC_TOMB, rec.data, rec.len, &lsn);
    }
    /* one that selects nothing changes no data and no dead list: its WAL
     * record makes it durable, and the tombstones file takes it before
     * that WAL file goes (engine_tomb_save_dirty) -- a delete of series
     * other shards hold costs this shard no file rewrite */
    int defer = t->nids == 0 && e->o.wal_durability != ENGINE_WAL_NONE;
    if (!rc) {
        engine_tomb_head_prune(e->head, t->ids, t->nids, start, end, version);
        engine_tomb_head_prune(e->frozen, t->ids, t->nids, start, end, version);
        engine_head_account(e);
        pthread_mutex_lock(&e->tomb_mu);
        for (size_t i = 0; i < t->nids; i++)
            if (!stays[i] && !engine_tomb_head_has(e->head, t->ids[i]) &&
                !engine_tomb_head_has(e->frozen, t->ids[i]))
                engine_tomb_dead_set(e, t->ids[i], 1);
        pthread_mutex_unlock(&e->tomb_mu);
        rc = engine_tomb_push(e, t);
        if (!rc)
            t = NULL;
    }
    pthread_mutex_unlock(&e->head_mu);
    st_buf_deinit(&rec);
    free(stays);
    if (!rc && e->o.wal_durability != ENGINE_WAL_NONE)
        rc = wal_sync(e->wal, lsn);
    if (!rc && defer) {
        e->tomb_dirty = 1;
    } else if (!rc) {
        rc = engine_tomb_save(e);
        e->tomb_dirty = rc ? e->tomb_dirty : 0;
    }
    pthread_mutex_unlock(&e->flush_mu);
    tomb_free(t);
    if (!rc) {
        atomic_fetch_add(&e->deletes, 1);
        atomic_fetch_add(&e->samples_deleted, r->samples);
    }
    return rc;
}

int engine_purge(engine_t *e, uint64_t *bytes)
{
    uint64_t before = atomic_load(&e->purge_bytes);
    int rc = 0;
    pthread_mutex_lock(&e->flush_mu);
    for (size_t i = 0; !rc; i++) {
        pthread_mutex_lock(&e->parts_mu);
        if (i >= e->nparts) {
            pthread_mutex_unlock(&e->parts_mu);
            break;
        }
        int64_t start = e->parts[i]->start;
        int pending = engine_tomb_part_pending(e, e->parts[i]);
        pthread_mutex_unlock(&e->parts_mu);
        if (pending)
            rc = engine_compact_part(e, start);
    }
    pthread_mutex_unlock(&e->flush_mu);
    engine_tomb_refresh(e);
    if (bytes)
        *bytes = atomic_load(&e->purge_bytes) - before;
    return rc;
}

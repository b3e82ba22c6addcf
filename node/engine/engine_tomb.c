/*
 * engine_tomb — the tombstones of deletion by matchers and time range: their
 * durability, masking on reads, purge by compaction, and the series a
 * delete emptied (hidden from label answers).
 *
 * Why this shape: a delete must hide data at once, survive a crash, leave
 * later writes alone, and eventually free the bytes. So:
 *  - engine_delete takes flush_mu (no flush or compaction runs), gives the
 *    tombstone the next flush sequence T (reserved: no segment gets it), so
 *    every existing segment is older (seq_max < T) and every later one newer;
 *  - under head_mu it appends a WAL record and prunes the heads in place,
 *    so the head holds only samples written after the delete; WAL replay
 *    applies the record at its place among the writes (same outcome);
 *  - the tombstone goes to <dir>/tombstones (atomic rewrite: tmp, fsync,
 *    rename, fsync dir) because the WAL files are deleted after a flush;
 *  - reads mask samples of segments older than T (tomb_mask);
 *  - compaction drops masked samples and names its output up to T, after
 *    which nothing older than T overlaps the range: the tombstone is "done"
 *    (kept, small, for idempotence of repeated deliveries by id).
 *  - a series left with no sample at all is "dead": label names / values
 *    and /api/v1/status/tsdb skip it until it is written again. The dead
 *    list is saved with the tombstones and re-checked at open.
 *  - a versioned tombstone (version V, engine_delete_v) obeys last write
 *    wins by version instead of arrival (tomb.h): the heads keep their
 *    samples of versions >= V when it is applied; a later write of a lower
 *    version is filtered as it enters the head (engine_tomb_filter, under
 *    head_mu like the delete's prune, so a write and a delete racing give
 *    the same outcome in either order; WAL replay filters the same way);
 *    it is kept even when it selects nothing yet (a late older write may
 *    create the series) and it travels in repair (engine_tomb_list).
 *
 * Locks: tomb_mu is a leaf (taken last, nothing called under it locks).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine_internal.h"
#include "st_err.h"
#include "st_file.h"
#include "st_time.h"
#include "tomb.h"

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The series the tombstone's matchers select now (idx_lock taken here). */
int engine_tomb_select(engine_t *e, tomb_t *t)
{
    uint32_t *ids = NULL;
    size_t n = 0;
    const char *why = NULL;
    pthread_rwlock_rdlock(&e->idx_lock);
    int rc = idx_select(e->idx, t->m, t->nm, &ids, &n, &why);
    pthread_rwlock_unlock(&e->idx_lock);
    if (rc) {
        if (why)
            engine_set_error("%s", why);
        return rc;
    }
    if (n > 1)
        qsort(ids, n, sizeof *ids, cmp_u32);
    free(t->ids);
    t->ids = ids;
    t->nids = n;
    return 0;
}

int engine_tomb_push(engine_t *e, tomb_t *t)
{
    pthread_mutex_lock(&e->tomb_mu);
    int rc = 0;
    if (e->ntombs == e->tombs_cap && st_grow(&e->tombs, &e->tombs_cap, sizeof *e->tombs, 8))
        rc = ST_ENOMEM;
    else
        e->tombs[e->ntombs++] = t;
    pthread_mutex_unlock(&e->tomb_mu);
    if (!rc)
        atomic_fetch_add(&e->ntombs_live, 1);
    uint64_t vm = atomic_load(&e->tomb_vmax);
    while (!rc && t->version > vm && !atomic_compare_exchange_weak(&e->tomb_vmax, &vm, t->version))
        ;
    return rc;
}

void engine_tomb_dead_set(engine_t *e, uint32_t id, int on)
{
    if (on) {
        if (id >= e->dead_cap) {
            size_t cap = e->dead_cap ? e->dead_cap : 1024;
            while (cap <= id)
                cap *= 2;
            uint8_t *d = realloc(e->dead, cap);
            if (!d)
                return; /* then the series stays listed: harmless */
            memset(d + e->dead_cap, 0, cap - e->dead_cap);
            e->dead = d;
            e->dead_cap = cap;
        }
        if (!e->dead[id]) {
            e->dead[id] = 1;
            atomic_fetch_add(&e->ndead, 1);
        }
    } else if (id < e->dead_cap && e->dead[id]) {
        e->dead[id] = 0;
        atomic_fetch_sub(&e->ndead, 1);
    }
}

/* Write <dir>/tombstones from the tombstones and dead list (flush_mu held). */
int engine_tomb_save(engine_t *e)
{
    st_buf_t b;
    st_buf_init(&b);
    uint32_t *dead = NULL;
    size_t nd = 0;
    pthread_mutex_lock(&e->tomb_mu);
    size_t want = atomic_load(&e->ndead);
    if (want && (dead = malloc(want * sizeof *dead)) != NULL)
        for (size_t i = 0; i < e->dead_cap && nd < want; i++)
            if (e->dead[i])
                dead[nd++] = (uint32_t)i;
    int rc = tomb_file_encode(&b, e->tombs, e->ntombs, dead, nd);
    pthread_mutex_unlock(&e->tomb_mu);
    free(dead);
    char path[4096], tmp[4100];
    snprintf(path, sizeof path, "%s/tombstones", e->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = -1;
    if (!rc) {
        fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
        rc = fd < 0 ? ST_EIO : st_write_all(fd, b.data, b.len);
    }
    if (!rc && fdatasync(fd) != 0)
        rc = ST_EIO;
    int en = errno;
    if (fd >= 0)
        close(fd);
    if (!rc && rename(tmp, path) != 0) {
        en = errno;
        rc = ST_EIO;
    }
    if (!rc)
        rc = st_fsync_dir(e->dir);
    if (rc == ST_EIO)
        engine_set_error("cannot write %s: %s", path, strerror(en));
    st_buf_deinit(&b);
    return rc;
}

int engine_tomb_save_dirty(engine_t *e)
{
    if (!e->tomb_dirty)
        return 0;
    int rc = engine_tomb_save(e);
    if (!rc)
        e->tomb_dirty = 0;
    return rc;
}

int engine_tomb_load(engine_t *e)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tombstones.tmp", e->dir);
    unlink(path); /* a save that did not reach its rename */
    snprintf(path, sizeof path, "%s/tombstones", e->dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        engine_set_error("cannot open %s: %s", path, strerror(errno));
        return ST_EIO;
    }
    struct stat st;
    int rc = fstat(fd, &st) == 0 ? 0 : ST_EIO;
    uint8_t *buf = NULL;
    if (!rc && (buf = malloc(st.st_size ? (size_t)st.st_size : 1)) == NULL)
        rc = ST_ENOMEM;
    if (!rc)
        rc = st_pread_all(fd, buf, (size_t)st.st_size, 0);
    close(fd);
    tomb_t **t = NULL;
    size_t n = 0, nd = 0;
    uint32_t *dead = NULL;
    if (!rc)
        rc = tomb_file_decode(buf, (size_t)st.st_size, &t, &n, &dead, &nd);
    free(buf);
    if (rc) {
        engine_set_error("cannot load %s: %s", path, st_strerror(rc));
        return rc == ST_EAGAIN ? ST_ECORRUPT : rc;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        if (t[i]->seq >= e->next_seq)
            e->next_seq = t[i]->seq + 1;
        rc = engine_tomb_push(e, t[i]);
        if (rc)
            for (size_t j = i; j < n; j++)
                tomb_free(t[j]);
    }
    free(t);
    pthread_mutex_lock(&e->tomb_mu);
    for (size_t i = 0; i < nd; i++)
        engine_tomb_dead_set(e, dead[i], 1);
    pthread_mutex_unlock(&e->tomb_mu);
    free(dead);
    return rc;
}

/* Remove samples of series ids[] in [start, end] from a head (head_mu held);
 * with version > 0 only those of a lower version (0 included). */
uint64_t engine_tomb_head_prune(head_t *h, const uint32_t *ids, size_t n, int64_t start,
                                int64_t end, uint64_t version)
{
    uint64_t gone = 0;
    if (!h)
        return 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t id = ids[k];
        head_series_t *s = head_series_at(h, id);
        if (!s || s->n == 0 || s->maxt < start || s->mint > end)
            continue;
        head_series_normalize(h, s);
        uint32_t w = 0;
        int64_t mint = INT64_MAX, maxt = INT64_MIN;
        for (uint32_t i = 0; i < s->n; i++) {
            if (s->ts[i] >= start && s->ts[i] <= end &&
                (!version || head_version(h, s, i) < version))
                continue;
            s->ts[w] = s->ts[i];
            s->v[w] = s->v[i];
            if (s->vi)
                s->vi[w] = s->vi[i];
            if (s->ts[w] < mint)
                mint = s->ts[w];
            if (s->ts[w] > maxt)
                maxt = s->ts[w];
            w++;
        }
        gone += s->n - w;
        h->samples -= s->n - w;
        s->n = w;
        s->mint = mint;
        s->maxt = maxt;
    }
    return gone;
}

int engine_tomb_head_has(const head_t *h, uint32_t id)
{
    const head_series_t *s = h ? head_series_at(h, id) : NULL;
    return s && s->n > 0;
}

int engine_tomb_replay(engine_t *e, const uint8_t *p, size_t len)
{
    tomb_t *t;
    int rc = tomb_decode(p, len, &t);
    if (rc) {
        engine_set_error("malformed WAL tombstone record");
        return rc;
    }
    if ((rc = engine_tomb_select(e, t)) != 0) {
        tomb_free(t);
        return rc;
    }
    engine_tomb_head_prune(e->head, t->ids, t->nids, t->start, t->end, t->version);
    if (t->seq >= e->next_seq)
        e->next_seq = t->seq + 1;
    int known = 0;
    pthread_mutex_lock(&e->tomb_mu);
    for (size_t i = 0; i < e->ntombs && !known; i++)
        known = e->tombs[i]->seq == t->seq;
    pthread_mutex_unlock(&e->tomb_mu);
    if (known) {
        tomb_free(t);
        return 0;
    }
    e->tomb_dirty = 1; /* logged but not saved before the crash */
    if ((rc = engine_tomb_push(e, t)) != 0)
        tomb_free(t);
    return rc;
}

void engine_tomb_free(engine_t *e)
{
    for (size_t i = 0; i < e->ntombs; i++)
        tomb_free(e->tombs[i]);
    free(e->tombs);
    free(e->dead);
    e->tombs = NULL;
    e->dead = NULL;
    e->ntombs = e->tombs_cap = e->dead_cap = 0;
}

void engine_tomb_note_write(engine_t *e, const uint32_t *ids, size_t n)
{
    pthread_mutex_lock(&e->tomb_mu);
    for (size_t i = 0; i < n; i++)
        engine_tomb_dead_set(e, ids[i], 0);
    pthread_mutex_unlock(&e->tomb_mu);
}

size_t engine_tomb_filter_ids(engine_t *e, uint32_t *ids, size_t n)
{
    if (!atomic_load(&e->ndead))
        return n;
    size_t w = 0;
    pthread_mutex_lock(&e->tomb_mu);
    for (size_t i = 0; i < n; i++)
        if (!(ids[i] < e->dead_cap && e->dead[ids[i]]))
            ids[w++] = ids[i];
    pthread_mutex_unlock(&e->tomb_mu);
    return w;
}

int engine_tomb_any_dead(engine_t *e)
{
    return atomic_load(&e->ndead) != 0;
}

size_t engine_tomb_snapshot(engine_t *e, int64_t mint, int64_t maxt, tomb_t ***out)
{
    *out = NULL;
    if (!atomic_load(&e->ntombs_live))
        return 0;
    size_t n = 0;
    pthread_mutex_lock(&e->tomb_mu);
    tomb_t **a = malloc((e->ntombs ? e->ntombs : 1) * sizeof *a);
    for (size_t i = 0; a && i < e->ntombs; i++) {
        tomb_t *t = e->tombs[i];
        if (!t->done && t->start <= maxt && t->end >= mint && t->nids)
            a[n++] = t;
    }
    pthread_mutex_unlock(&e->tomb_mu);
    if (!a)
        return SIZE_MAX;
    if (!n) {
        free(a);
        return 0;
    }
    *out = a;
    return n;
}

/* Is some segment of p older than a tombstone overlapping p? (parts_mu held) */
static int part_pending_unsafe(engine_t *e, const part_t *p, const tomb_t *t)
{
    if (t->done || t->start >= p->end || t->end < p->start || !t->nids)
        return 0;
    for (size_t i = 0; i < p->nsegs; i++)
        if (p->segs[i]->seq_max < t->seq)
            return 1;
    (void)e;
    return 0;
}

int engine_tomb_part_pending(engine_t *e, const part_t *p)
{
    if (!atomic_load(&e->ntombs_live))
        return 0;
    int any = 0;
    pthread_mutex_lock(&e->tomb_mu);
    for (size_t i = 0; i < e->ntombs && !any; i++)
        any = part_pending_unsafe(e, p, e->tombs[i]);
    pthread_mutex_unlock(&e->tomb_mu);
    return any;
}

/* Mark the tombstones with nothing older left in their range done; returns
 * how many stay pending. */
uint64_t engine_tomb_refresh(engine_t *e)
{
    uint64_t pending = 0;
    pthread_mutex_lock(&e->parts_mu);
    pthread_mutex_lock(&e->tomb_mu);
    for (size_t i = 0; i < e->ntombs; i++) {
        tomb_t *t = e->tombs[i];
        if (t->done)
            continue;
        int any = 0;
        for (size_t j = 0; j < e->nparts && !any; j++)
            any = part_pending_unsafe(e, e->parts[j], t);
        if (any) {
            pending++;
        } else {
            t->done = 1;
            atomic_fetch_sub(&e->ntombs_live, 1);
        }
    }
    pthread_mutex_unlock(&e->tomb_mu);
    pthread_mutex_unlock(&e->parts_mu);
    return pending;
}

void engine_tomb_compacted(engine_t *e, uint64_t in_bytes, uint64_t out_bytes)
{
    if (in_bytes > out_bytes)
        atomic_fetch_add(&e->purge_bytes, in_bytes - out_bytes);
    atomic_fetch_add(&e->purges, 1);
    engine_tomb_refresh(e);
}

uint64_t engine_tomb_pending(engine_t *e, int64_t *eta_ms)
{
    uint64_t pending = engine_tomb_refresh(e);
    int64_t eta = 0, now = st_now_ms(), quiet = 2 * e->o.memtable_max_age_ms;
    if (pending) {
        pthread_mutex_lock(&e->parts_mu);
        for (size_t j = 0; j < e->nparts; j++) {
            part_t *p = e->parts[j];
            int any = 0;
            pthread_mutex_lock(&e->tomb_mu);
            for (size_t i = 0; i < e->ntombs && !any; i++)
                any = part_pending_unsafe(e, p, e->tombs[i]);
            pthread_mutex_unlock(&e->tomb_mu);
            int64_t left = p->last_flush_ms + quiet - now;
            if (any && left > eta)
                eta = left;
        }
        pthread_mutex_unlock(&e->parts_mu);
        if (eta < 1000)
            eta = 1000; /* the background thread looks every 250 ms; say 1 s */
    }
    if (eta_ms)
        *eta_ms = eta;
    return pending;
}

size_t engine_tomb_drop_masked(engine_t *e, const st_label_t *l, size_t nl, int64_t *ts, double *v,
                               uint64_t *ver, size_t n)
{
    if (!n)
        return 0;
    pthread_mutex_lock(&e->tomb_mu);
    size_t nt = e->ntombs;
    pthread_mutex_unlock(&e->tomb_mu);
    if (!nt)
        return n;
    uint32_t id;
    pthread_rwlock_rdlock(&e->idx_lock);
    int found = idx_lookup(e->idx, l, nl, st_labels_hash(l, nl), &id) == 0;
    pthread_rwlock_unlock(&e->idx_lock);
    if (!found)
        return n; /* a series no delete here selected */
    size_t w = 0;
    pthread_mutex_lock(&e->tomb_mu);
    for (size_t i = 0; i < n; i++) {
        int masked = 0;
        for (size_t k = 0; k < e->ntombs && !masked; k++) {
            const tomb_t *t = e->tombs[k];
            masked = ts[i] >= t->start && ts[i] <= t->end &&
                     (!t->version || (ver ? ver[i] : 0) < t->version) && tomb_has_id(t, id);
        }
        if (masked)
            continue;
        ts[w] = ts[i];
        v[w] = v[i];
        if (ver)
            ver[w] = ver[i];
        w++;
    }
    pthread_mutex_unlock(&e->tomb_mu);
    return w;
}

int engine_tomb_may_hide(engine_t *e, uint64_t version)
{
    return version && version < atomic_load(&e->tomb_vmax);
}

int engine_tomb_filter(engine_t *e, const st_label_t *l, size_t nl, uint64_t version,
                       const int64_t **ts, const double **v, size_t *n, void **owned)
{
    *owned = NULL;
    if (!*n || !engine_tomb_may_hide(e, version))
        return 0;
    const int64_t *t0 = *ts;
    int64_t mint = INT64_MAX, maxt = INT64_MIN;
    for (size_t i = 0; i < *n; i++) {
        mint = t0[i] < mint ? t0[i] : mint;
        maxt = t0[i] > maxt ? t0[i] : maxt;
    }
    /* the tombstones that hide some of it: newer, overlapping, selecting l */
    tomb_t **hit = NULL;
    size_t nhit = 0;
    int rc = 0;
    pthread_mutex_lock(&e->tomb_mu);
    for (size_t k = 0; k < e->ntombs && !rc; k++) {
        tomb_t *t = e->tombs[k];
        if (t->version <= version || t->start > maxt || t->end < mint)
            continue;
        int m = tomb_match(t, l, nl);
        if (m < 0) {
            rc = m;
        } else if (m) {
            tomb_t **h = realloc(hit, (nhit + 1) * sizeof *h);
            if (!h)
                rc = ST_ENOMEM;
            else
                (hit = h)[nhit++] = t;
        }
    }
    pthread_mutex_unlock(&e->tomb_mu);
    if (rc || !nhit) {
        free(hit);
        return rc;
    }
    /* start/end of a tombstone never change: read without the lock */
    size_t cnt = *n, w = 0;
    uint8_t *mem = malloc(cnt * (sizeof(int64_t) + sizeof(double)));
    if (!mem) {
        free(hit);
        return ST_ENOMEM;
    }
    int64_t *ots = (int64_t *)mem;
    double *ov = (double *)(mem + cnt * sizeof(int64_t));
    for (size_t i = 0; i < cnt; i++) {
        int hidden = 0;
        for (size_t k = 0; k < nhit && !hidden; k++)
            hidden = t0[i] >= hit[k]->start && t0[i] <= hit[k]->end;
        if (hidden)
            continue;
        ots[w] = t0[i];
        ov[w++] = (*v)[i];
    }
    free(hit);
    if (w == cnt) {
        free(mem);
        return 0;
    }
    atomic_fetch_add(&e->samples_hidden_late, cnt - w);
    *ts = ots;
    *v = ov;
    *n = w;
    *owned = mem;
    return 0;
}

/* One tombstone's contribution to the summary hash (splitmix64 of both). */
static uint64_t tomb_mix(uint64_t id, uint64_t version)
{
    uint64_t z = id * 0x9e3779b97f4a7c15ull ^ version;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Repair exchanges the versioned tombstones with an id: only those can be
 * applied on another replica with the same outcome. */
static int tomb_travels(const tomb_t *t)
{
    return t->version && t->id;
}

void engine_tomb_summary(engine_t *e, uint64_t *count, uint64_t *hash)
{
    uint64_t c = 0, h = 0;
    pthread_mutex_lock(&e->tomb_mu);
    for (size_t i = 0; i < e->ntombs; i++)
        if (tomb_travels(e->tombs[i])) {
            c++;
            h += tomb_mix(e->tombs[i]->id, e->tombs[i]->version);
        }
    pthread_mutex_unlock(&e->tomb_mu);
    *count = c;
    *hash = h;
}

int engine_tomb_list(engine_t *e, size_t from, engine_tomb_cb cb, void *arg, size_t *next)
{
    /* tombstones are never freed before close and never change once
     * pushed: the callback runs without the lock */
    size_t i = from;
    int rc = 0;
    for (;; i++) {
        pthread_mutex_lock(&e->tomb_mu);
        tomb_t *t = i < e->ntombs ? e->tombs[i] : NULL;
        pthread_mutex_unlock(&e->tomb_mu);
        if (!t)
            break;
        if (!tomb_travels(t))
            continue;
        engine_tomb_info_t in = {t->id, t->version, t->start, t->end, t->m, t->nm};
        if ((rc = cb(arg, &in)) != 0)
            break;
    }
    if (next)
        *next = i;
    return rc;
}

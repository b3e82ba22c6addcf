/*
 * engine_flush — partitions, segment lifecycle, flush, compaction, retention.
 *
 * Flush (engine_flush):
 *   1. freeze: under head_mu the active head becomes `frozen` and the WAL is
 *      rotated to file S (records before S = the frozen head);
 *   2. idx_persist: series.log gets every series created so far;
 *   3. the partitions the frozen head touches are written in ascending
 *      order, in batches of FLUSH_BATCH: each partition's level-0 segment
 *      (a new sequence number) is written to a .tmp file, ONE file open at a
 *      time whatever the head spans; the batch is made durable with one
 *      syncfs, renamed into place, published, and synced again; the frozen
 *      head's done_before moves past it, so a failed or interrupted flush
 *      resumes after the last published partition;
 *   4. the frozen head is dropped and WAL files before S are removed.
 * A crash anywhere leaves the WAL files, so replay rebuilds the same head;
 * samples that already reached a segment are deduplicated on read.
 *
 * Failures (ENOSPC, EMFILE, ...) are counted, recorded with their cause for
 * engine_health and logged once through opts.log; the background thread
 * retries with back-off and the first success clears them. A failed WAL is
 * recovered by engine_wal_recover (see there).
 *
 * Segment files are opened lazily by readers (seg_ref_pin) and kept in the
 * node budget's LRU (engine_budget.c), so neither flushes nor reads hold a
 * descriptor or mapping per partition.
 *
 * Reads merge sources newest-last: segments by ascending sequence, then the
 * frozen head, then the active head; for equal timestamps the newest wins.
 *
 * Compaction merges all segments of a partition into one, named with the
 * range of sequences it covers; on open, a segment whose range is inside
 * another's is superseded and removed (crash between rename and unlink).
 *
 * Retention removes whole partitions that end before now - retention.
 * Per-metric retentions (opts.metric_retention): compaction drops the
 * samples of a series older than its metric's cut; the retention pass
 * drops a partition that every series in it has outlived (cut >= end), and
 * compacts one where some series has (the rest keep theirs). A partition
 * is looked at again only when it got a segment or a cut crossed its end
 * since (part_t.mret_*). Reads hide what is past the cut meanwhile.
 * engine_set_metric_retention adds dynamic ones (the cluster's rule set):
 * the table is rebuilt, swapped under mret_lock, and every partition is
 * looked at again.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "engine_internal.h"
#include "st_buf.h"
#include "st_err.h"
#include "st_time.h"
#include "st_file.h"
#include "tomb.h"

/* ---- segment references ---- */

static void part_dir(const engine_t *e, int64_t start, char *buf, size_t len)
{
    snprintf(buf, len, "%s/parts/%" PRId64, e->dir, start);
}

/* Find or create the partition starting at `start` (parts_mu held). */
static part_t *part_get_unsafe(engine_t *e, int64_t start, int create)
{
    size_t lo = 0, hi = e->nparts;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (e->parts[mid]->start < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < e->nparts && e->parts[lo]->start == start)
        return e->parts[lo];
    if (!create)
        return NULL;
    if (e->nparts == e->parts_cap && st_grow(&e->parts, &e->parts_cap, sizeof *e->parts, 16))
        return NULL;
    part_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->start = start;
    p->end = start + e->o.partition_ms;
    memmove(e->parts + lo + 1, e->parts + lo, (e->nparts - lo) * sizeof *e->parts);
    e->parts[lo] = p;
    e->nparts++;
    return p;
}

/* Insert a reference keeping ascending seq_max (parts_mu held). */
static int part_add_seg_unsafe(part_t *p, seg_ref_t *r)
{
    if (p->nsegs == p->cap && st_grow(&p->segs, &p->cap, sizeof *p->segs, 4))
        return ST_ENOMEM;
    size_t i = p->nsegs;
    while (i > 0 && p->segs[i - 1]->seq_max > r->seq_max) {
        p->segs[i] = p->segs[i - 1];
        i--;
    }
    p->segs[i] = r;
    p->nsegs++;
    return 0;
}

/* A reference to a segment file, not opened yet (seg_ref_pin opens it). */
static seg_ref_t *seg_ref_new(engine_t *e, const char *path, uint64_t seq_min, uint64_t seq_max,
                              int *rc)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        *rc = errno == ENOENT ? ST_ENOENT : ST_EIO;
        return NULL;
    }
    seg_ref_t *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        *rc = ST_ENOMEM;
        return NULL;
    }
    r->seq_min = seq_min;
    r->seq_max = seq_max;
    r->size = (uint64_t)sb.st_size;
    r->bud = e->bud;
    r->eng_open = &e->open_files;
    r->eng_opens = &e->seg_opens;
    atomic_init(&r->refs, 1);
    atomic_init(&r->obsolete, 0);
    *rc = 0;
    return r;
}

static int load_part_dir(engine_t *e, int64_t start, const char *dpath)
{
    DIR *d = opendir(dpath);
    if (!d)
        return ST_EIO;
    struct dirent *de;
    int rc = 0;
    part_t *p = part_get_unsafe(e, start, 1);
    if (!p) {
        closedir(d);
        return ST_ENOMEM;
    }
    char path[4096];
    while ((de = readdir(d)) != NULL && !rc) {
        size_t len = strlen(de->d_name);
        if (snprintf(path, sizeof path, "%s/%s", dpath, de->d_name) >= (int)sizeof path)
            continue;
        if (len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0) {
            unlink(path); /* a flush or compaction that never finished */
            continue;
        }
        uint64_t smax, smin;
        char tail[8];
        if (sscanf(de->d_name, "%16" SCNx64 "-%16" SCNx64 "%7s", &smax, &smin, tail) != 3 ||
            strcmp(tail, ".seg") != 0)
            continue;
        seg_ref_t *r = seg_ref_new(e, path, smin, smax, &rc);
        if (r && (rc = seg_ref_pin(r)) != 0) {
            seg_ref_release(r);
            r = NULL;
        }
        if (!r) {
            engine_set_error("cannot open segment %s: %s", path, st_strerror(rc));
            break;
        }
        int64_t have = seg_get_meta(r->seg)->part_start;
        seg_ref_unpin(r);
        if (have != start) {
            engine_set_error("segment %s belongs to partition %" PRId64 ", not %" PRId64, path,
                             have, start);
            seg_ref_release(r);
            rc = ST_ECORRUPT;
            break;
        }
        rc = part_add_seg_unsafe(p, r);
        if (smax >= e->next_seq)
            e->next_seq = smax + 1;
    }
    closedir(d);
    if (rc)
        return rc;
    /* drop segments superseded by a compaction that covers their sequences */
    size_t w = 0;
    for (size_t i = 0; i < p->nsegs; i++) {
        seg_ref_t *r = p->segs[i];
        int superseded = 0;
        for (size_t j = 0; j < p->nsegs; j++) {
            seg_ref_t *o = p->segs[j];
            if (o != r && o->seq_min <= r->seq_min && o->seq_max >= r->seq_max &&
                (o->seq_max - o->seq_min > r->seq_max - r->seq_min))
                superseded = 1;
        }
        if (superseded) {
            atomic_store(&r->obsolete, 1);
            seg_ref_release(r);
        } else {
            p->segs[w++] = r;
        }
    }
    p->nsegs = w;
    return 0;
}

int engine_parts_load(engine_t *e)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/parts", e->dir);
    if (st_mkdir(path) != 0) {
        engine_set_error("cannot create %s: %s", path, strerror(errno));
        return ST_EIO;
    }
    DIR *d = opendir(path);
    if (!d)
        return ST_EIO;
    struct dirent *de;
    int rc = 0;
    e->next_seq = 1;
    while ((de = readdir(d)) != NULL && !rc) {
        char *end;
        errno = 0;
        long long start = strtoll(de->d_name, &end, 10);
        if (de->d_name[0] == '.' || *end != '\0' || errno)
            continue;
        char dpath[4096];
        if (snprintf(dpath, sizeof dpath, "%s/%s", path, de->d_name) >= (int)sizeof dpath)
            continue;
        rc = load_part_dir(e, start, dpath);
    }
    closedir(d);
    return rc;
}

void engine_parts_free(engine_t *e)
{
    for (size_t i = 0; i < e->nparts; i++) {
        for (size_t j = 0; j < e->parts[i]->nsegs; j++)
            seg_ref_release(e->parts[i]->segs[j]);
        free(e->parts[i]->segs);
        free(e->parts[i]);
    }
    free(e->parts);
    e->parts = NULL;
    e->nparts = 0;
}

/* ---- flush ---- */

typedef struct part_writer {
    int64_t start;
    seg_writer_t *w;
    char path[4096];
    uint64_t seq;
    size_t blocks;
    seg_summary_t *sum; /* taken from the writer before it finishes (NULL: unknown) */
} part_writer_t;

/* Blocks of n samples (ver: their versions, NULL = all 0); a block's
 * version is the highest of its samples' (engine.h, VERSIONS). */
static int write_blocks(seg_writer_t *w, uint32_t id, const int64_t *ts, const double *v,
                        const uint64_t *ver, size_t n, st_buf_t *buf)
{
    for (size_t off = 0, k; off < n; off += k) {
        k = n - off < ENGINE_BLOCK_MAX ? n - off : ENGINE_BLOCK_MAX;
        /* a cut between samples 1 ms apart moves back to the start of their
         * run: a tier's bucket (one sample per field) stays in one block,
         * where the codec stores it as columns */
        size_t cut = k;
        while (off + cut < n && cut > ENGINE_BLOCK_MAX / 2 &&
               (uint64_t)ts[off + cut] - (uint64_t)ts[off + cut - 1] == 1)
            cut--;
        if (off + cut < n && (uint64_t)ts[off + cut] - (uint64_t)ts[off + cut - 1] != 1)
            k = cut;
        uint64_t vmax = 0;
        for (size_t i = 0; ver && i < k; i++)
            vmax = ver[off + i] > vmax ? ver[off + i] : vmax;
        st_buf_reset(buf);
        int rc = codec_encode(ts + off, v + off, k, buf);
        if (!rc)
            rc = seg_writer_add_v(w, id, (uint32_t)k, ts[off], ts[off + k - 1], vmax, buf->data,
                                  buf->len);
        if (rc)
            return rc;
    }
    return 0;
}

static int open_part_writer(engine_t *e, part_writer_t *pw, int64_t start, uint64_t seq_min,
                            uint64_t seq_max, uint64_t level, int sync)
{
    char dpath[4096];
    part_dir(e, start, dpath, sizeof dpath);
    if (st_mkdir(dpath) != 0)
        return ST_EIO;
    if (snprintf(pw->path, sizeof pw->path, "%s/%016" PRIx64 "-%016" PRIx64 ".seg", dpath, seq_max,
                 seq_min) >= (int)sizeof pw->path)
        return ST_ELIMIT;
    pw->start = start;
    pw->seq = seq_max;
    pw->blocks = 0;
    pw->sum = NULL;
    seg_meta_t meta = {
        .part_start = start, .part_end = start + e->o.partition_ms, .seq = seq_max, .level = level};
    int rc = seg_writer_create(pw->path, &meta, &pw->w);
    if (!rc && sync) {
        /* make the partition directory entry itself durable */
        char parts[4096];
        snprintf(parts, sizeof parts, "%s/parts", e->dir);
        st_fsync_dir(parts);
    }
    return rc;
}

/* The writer's summary of what it holds (before finishing it); NULL when
 * it cannot tell: the first open summarizes the file then. */
static seg_summary_t *writer_summary(seg_writer_t *w)
{
    seg_summary_t *m = NULL;
    return seg_writer_summary(w, &m) == 0 ? m : NULL;
}

/* Publish a finished segment file in its partition (*sum moves to it). */
int engine_publish_seg(engine_t *e, const char *path, int64_t start, uint64_t smin, uint64_t smax,
                       seg_summary_t **sum)
{
    int rc;
    seg_ref_t *r = seg_ref_new(e, path, smin, smax, &rc);
    if (!r)
        return rc;
    atomic_store(&r->sum, *sum);
    *sum = NULL;
    pthread_mutex_lock(&e->parts_mu);
    part_t *p = part_get_unsafe(e, start, 1);
    rc = p ? part_add_seg_unsafe(p, r) : ST_ENOMEM;
    if (p)
        p->last_flush_ms = st_now_ms();
    pthread_mutex_unlock(&e->parts_mu);
    if (rc)
        seg_ref_release(r);
    return rc;
}

int engine_freeze_head(engine_t *e, int wait)
{
    (void)wait;
    pthread_mutex_lock(&e->head_mu);
    if (e->frozen || e->head->samples == 0) {
        pthread_mutex_unlock(&e->head_mu);
        return e->frozen ? ST_EBUSY : 0;
    }
    head_t *fresh = head_create();
    if (!fresh) {
        pthread_mutex_unlock(&e->head_mu);
        return ST_ENOMEM;
    }
    uint32_t seq = 0;
    int rc = e->o.wal_durability == ENGINE_WAL_NONE ? 0 : wal_rotate(e->wal, &seq);
    if (rc) {
        int en = errno;
        pthread_mutex_unlock(&e->head_mu);
        head_destroy(fresh);
        atomic_fetch_add(&e->wal_errors, 1);
        engine_fail(e, FAIL_WAL, "%s (WAL rotation)", strerror(en));
        return rc;
    }
    e->frozen = e->head;
    e->head = fresh;
    fresh->created_ms = st_now_ms();
    e->frozen->wal_seq = seq;
    engine_head_account(e);
    pthread_mutex_unlock(&e->head_mu);
    return 0;
}

/* Index of the first sample of s at or after t (samples sorted). */
static uint32_t first_at(const head_series_t *s, int64_t t)
{
    uint32_t lo = 0, hi = s->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->ts[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/*
 * Write the frozen head's samples of the partition starting at `start`
 * (cur[id]: each series' next sample; advanced) as one level-0 segment,
 * left as "<path>.tmp" for the batch to sync and commit. One file open at a
 * time, whatever the head spans.
 */
static int flush_one_part(engine_t *e, head_t *f, uint32_t *cur, const uint32_t *ids, size_t nids,
                          int64_t start, st_buf_t *buf, part_writer_t *pw)
{
    pthread_mutex_lock(&e->parts_mu);
    uint64_t seq = e->next_seq++;
    pthread_mutex_unlock(&e->parts_mu);
    int rc = open_part_writer(e, pw, start, seq, seq, 0, 0);
    if (rc)
        return rc;
    int64_t end = start + e->o.partition_ms;
    uint64_t *vs = NULL; /* versions of a series' samples, from the head's table */
    size_t vcap = 0;
    for (size_t k = 0; k < nids && !rc; k++) {
        uint32_t id = ids[k];
        head_series_t *s = head_series_at(f, id);
        if (!s || cur[id] >= s->n || s->ts[cur[id]] >= end)
            continue;
        uint32_t j = cur[id];
        while (j < s->n && s->ts[j] < end)
            j++;
        const uint64_t *ver = NULL;
        if (s->vi) {
            if (vcap < j - cur[id]) {
                uint64_t *nv = realloc(vs, (j - cur[id]) * sizeof *nv);
                if (!nv) {
                    rc = ST_ENOMEM;
                    break;
                }
                vs = nv;
                vcap = j - cur[id];
            }
            head_series_versions(f, s, cur[id], j - cur[id], vs);
            ver = vs;
        }
        rc = write_blocks(pw->w, id, s->ts + cur[id], s->v + cur[id], ver, j - cur[id], buf);
        cur[id] = j;
    }
    free(vs);
    if (rc) {
        int en = errno;
        seg_writer_abort(pw->w);
        errno = en;
        return rc;
    }
    pw->sum = writer_summary(pw->w);
    rc = seg_writer_finish_deferred(pw->w);
    if (rc) {
        seg_summary_free(pw->sum);
        pw->sum = NULL;
    }
    return rc;
}

/* Make everything written under the data dir durable: one syncfs(2) for a
 * whole batch of segment files instead of three fsyncs each. */
static int sync_data_fs(engine_t *e)
{
    int fd = open(e->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ST_EIO;
    int rc = syncfs(fd) == 0 ? 0 : ST_EIO;
    int en = errno;
    close(fd);
    errno = en;
    return rc;
}

#define FLUSH_BATCH 256 /* partitions written between two syncs */

/*
 * The frozen head's series ordered by their next unwritten timestamp (a
 * binary min-heap), so each partition is written from the series that have
 * samples in it: a flush costs O(pairs of series and partition x log
 * series), not O(partitions x series ids) -- a head spanning thousands of
 * partitions with a million series ids took minutes of CPU that way.
 */
typedef struct fq_item {
    int64_t ts;
    uint32_t id;
} fq_item_t;

typedef struct flush_queue {
    fq_item_t *h;
    size_t n, cap;
    uint32_t *ids; /* scratch: the ids of one partition (cap entries) */
} flush_queue_t;

static void fq_down(flush_queue_t *q, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < q->n && q->h[l].ts < q->h[m].ts)
            m = l;
        if (l + 1 < q->n && q->h[l + 1].ts < q->h[m].ts)
            m = l + 1;
        if (m == i)
            return;
        fq_item_t t = q->h[i];
        q->h[i] = q->h[m];
        q->h[m] = t;
        i = m;
    }
}

static void fq_push(flush_queue_t *q, int64_t ts, uint32_t id)
{
    size_t i = q->n++; /* never over cap: an id is in the heap at most once */
    q->h[i] = (fq_item_t){ts, id};
    while (i > 0 && q->h[(i - 1) / 2].ts > q->h[i].ts) {
        fq_item_t t = q->h[i];
        q->h[i] = q->h[(i - 1) / 2];
        q->h[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

/* (Re)build from the cursors: every series with samples left. */
static int fq_build(flush_queue_t *q, const head_t *f, const uint32_t *cur)
{
    size_t n = 0;
    for (uint32_t id = 0; id < f->ns; id++) {
        const head_series_t *s = head_series_at(f, id);
        n += s && cur[id] < s->n;
    }
    if (n > q->cap) {
        fq_item_t *h = realloc(q->h, n * sizeof *h);
        if (!h)
            return ST_ENOMEM;
        q->h = h;
        uint32_t *ids = realloc(q->ids, n * sizeof *ids);
        if (!ids)
            return ST_ENOMEM;
        q->ids = ids;
        q->cap = n;
    }
    q->n = 0;
    for (uint32_t id = 0; id < f->ns; id++) {
        const head_series_t *s = head_series_at(f, id);
        if (s && cur[id] < s->n)
            q->h[q->n++] = (fq_item_t){s->ts[cur[id]], id};
    }
    for (size_t i = q->n / 2; i-- > 0;)
        fq_down(q, i);
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Take out the series with a next sample before `end` (ascending ids). */
static size_t fq_take(flush_queue_t *q, int64_t end)
{
    size_t k = 0;
    while (q->n && q->h[0].ts < end) {
        q->ids[k++] = q->h[0].id;
        q->h[0] = q->h[--q->n];
        fq_down(q, 0);
    }
    qsort(q->ids, k, sizeof *q->ids, cmp_u32);
    return k;
}

/* Put back the series of q->ids[0..k) that have samples left. */
static void fq_put_back(flush_queue_t *q, const head_t *f, const uint32_t *cur, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        const head_series_t *s = head_series_at(f, q->ids[i]);
        if (cur[q->ids[i]] < s->n)
            fq_push(q, s->ts[cur[q->ids[i]]], q->ids[i]);
    }
}

/*
 * One batch: the next partitions (at most FLUSH_BATCH) written as .tmp
 * files, one file open at a time; synced; renamed into place and
 * published; synced again. done_before moves past each published one.
 * Returns 0 with *more = 0 when the frozen head is all written.
 */
static int flush_batch(engine_t *e, head_t *f, uint32_t *cur, flush_queue_t *q, st_buf_t *buf,
                       int64_t deadline_ms, int *more)
{
    part_writer_t *pw = malloc(FLUSH_BATCH * sizeof *pw);
    if (!pw)
        return ST_ENOMEM;
    size_t np = 0;
    int rc = 0;
    *more = 0;
    while (np < FLUSH_BATCH) {
        if (q->n == 0)
            break;
        if ((deadline_ms && st_now_ms() >= deadline_ms) || atomic_load(&e->stopping)) {
            rc = ST_ETIMEDOUT;
            break;
        }
        int64_t start = engine_part_start(e, q->h[0].ts);
        size_t k = fq_take(q, start + e->o.partition_ms);
        rc = flush_one_part(e, f, cur, q->ids, k, start, buf, &pw[np]);
        fq_put_back(q, f, cur, k);
        if (rc) {
            int en = errno;
            engine_set_error("cannot write a segment of partition %" PRId64 ": %s", start,
                             rc == ST_EIO ? strerror(en) : st_strerror(rc));
            engine_fail(e, FAIL_FLUSH, "%s (partition %" PRId64 ")",
                        rc == ST_EIO ? strerror(en) : st_strerror(rc), start);
            break;
        }
        np++;
    }
    if (np == FLUSH_BATCH)
        *more = 1;
    int rc2 = np ? sync_data_fs(e) : 0;
    for (size_t k = 0; k < np && !rc2; k++) {
        if ((rc2 = seg_commit(pw[k].path)) == 0)
            rc2 = engine_publish_seg(e, pw[k].path, pw[k].start, pw[k].seq, pw[k].seq, &pw[k].sum);
        if (!rc2)
            f->done_before = pw[k].start + e->o.partition_ms;
    }
    if (!rc2 && np)
        rc2 = sync_data_fs(e);
    if (rc2) {
        int en = errno;
        for (size_t k = 0; k < np; k++) { /* what was not committed is rewritten later */
            char tmp[sizeof pw[k].path + 8];
            snprintf(tmp, sizeof tmp, "%s.tmp", pw[k].path);
            unlink(tmp);
        }
        engine_set_error("cannot sync segments: %s", strerror(en));
        engine_fail(e, FAIL_FLUSH, "%s (syncing %zu segments)", strerror(en), np);
        rc = rc ? rc : rc2;
    }
    for (size_t k = 0; k < np; k++)
        seg_summary_free(pw[k].sum); /* those not published */
    free(pw);
    return rc;
}

/*
 * Write the frozen head as level-0 segments, one partition at a time in
 * ascending order (flush_mu held). A failure or the deadline leaves the
 * frozen head in place with done_before past the partitions already
 * published, so the next attempt resumes there.
 */
static int flush_frozen_unsafe(engine_t *e, int64_t deadline_ms)
{
    head_t *f = e->frozen;
    if (!f)
        return 0;
    uint32_t wal_seq = f->wal_seq;
    int keep_wal = f->keep_wal;
    int rc;
    pthread_rwlock_wrlock(&e->idx_lock);
    rc = idx_persist(e->idx);
    int en = errno;
    pthread_rwlock_unlock(&e->idx_lock);
    if (rc) {
        engine_set_error("cannot persist series.log: %s", st_strerror(rc));
        engine_fail(e, FAIL_FLUSH, "%s (series.log)",
                    rc == ST_EIO ? strerror(en) : st_strerror(rc));
        return rc;
    }
    uint64_t hidden = 0; /* versioned samples a higher version already hides */
    if (f->done_before == INT64_MIN && (rc = engine_frozen_resolve(e, f, &hidden)) != 0) {
        engine_fail(e, FAIL_FLUSH, "%s (resolving versions)", st_strerror(rc));
        return rc;
    }
    uint32_t *cur = f->ns ? calloc(f->ns, sizeof *cur) : NULL;
    if (f->ns && !cur)
        return ST_ENOMEM;
    /* series are normalized under head_mu: readers may be looking at them */
    pthread_mutex_lock(&e->head_mu);
    for (uint32_t id = 0; id < f->ns; id++) {
        head_series_t *s = head_series_at(f, id);
        if (!s || s->n == 0)
            continue;
        head_series_normalize(f, s);
        cur[id] = f->done_before == INT64_MIN ? 0 : first_at(s, f->done_before);
    }
    pthread_mutex_unlock(&e->head_mu);
    st_buf_t buf;
    st_buf_init(&buf);
    flush_queue_t q = {0};
    int more = 1;
    while (more && !rc) {
        /* resume where the last batch stopped (a failure rewinds cursors) */
        if (f->done_before != INT64_MIN)
            for (uint32_t id = 0; id < f->ns; id++) {
                const head_series_t *s = head_series_at(f, id);
                if (s && s->n)
                    cur[id] = first_at(s, f->done_before);
            }
        rc = fq_build(&q, f, cur);
        if (!rc)
            rc = flush_batch(e, f, cur, &q, &buf, deadline_ms, &more);
    }
    st_buf_deinit(&buf);
    free(q.h);
    free(q.ids);
    free(cur);
    if (rc)
        return rc;
    pthread_mutex_lock(&e->head_mu);
    e->flush_err = 0;
    e->frozen = NULL;
    engine_head_account(e);
    pthread_cond_broadcast(&e->head_cv);
    pthread_mutex_unlock(&e->head_mu);
    head_destroy(f);
    atomic_fetch_add(&e->flushes, 1);
    engine_recovered(e, FAIL_FLUSH);
    if (e->o.wal_durability != ENGINE_WAL_NONE && !keep_wal) {
        rc = engine_tomb_save_dirty(e); /* a tombstone only in these WAL files */
        if (!rc)
            rc = wal_remove_before(e->wal, wal_seq);
    }
    return rc;
}

int engine_flush_frozen(engine_t *e, int64_t deadline_ms)
{
    int rc = flush_frozen_unsafe(e, deadline_ms);
    if (rc && rc != ST_ETIMEDOUT) {
        /* the frozen head stays and the next flush retries it; wake writers
         * waiting on backpressure so they can report the failure */
        atomic_fetch_add(&e->flush_errors, 1);
        pthread_mutex_lock(&e->head_mu);
        e->flush_err = rc;
        pthread_cond_broadcast(&e->head_cv);
        pthread_mutex_unlock(&e->head_mu);
    }
    return rc;
}

/*
 * The WAL failed (a write or fsync error, e.g. ENOSPC): it refuses every
 * append from then on, because what reached its file is unknown. Both heads
 * hold everything written (a write enters the head only after its WAL
 * append), so once they are in segments the old WAL files are not needed:
 * flush them, then restart the WAL in a fresh file (with series.log
 * persisted first under the index lock, so no sample record can name a
 * series that neither series.log nor the new WAL defines), then drop the
 * old files. Any failure leaves the state as it was; the caller retries.
 */
int engine_wal_recover(engine_t *e)
{
    int rc = engine_flush_frozen(e, 0);
    if (rc)
        return rc;
    pthread_mutex_lock(&e->head_mu);
    if (e->head->samples) {
        head_t *fresh = head_create();
        if (!fresh) {
            pthread_mutex_unlock(&e->head_mu);
            return ST_ENOMEM;
        }
        e->frozen = e->head;
        e->frozen->keep_wal = 1;
        e->head = fresh;
        fresh->created_ms = st_now_ms();
    }
    pthread_mutex_unlock(&e->head_mu);
    if ((rc = engine_flush_frozen(e, 0)) != 0)
        return rc;
    uint32_t seq = 0;
    pthread_rwlock_wrlock(&e->idx_lock);
    rc = idx_persist(e->idx);
    if (!rc)
        rc = wal_restart(e->wal, &seq);
    int en = errno;
    pthread_rwlock_unlock(&e->idx_lock);
    if (rc) {
        atomic_fetch_add(&e->wal_errors, 1);
        engine_fail(e, FAIL_WAL, "%s (restarting the WAL)",
                    rc == ST_EIO ? strerror(en) : st_strerror(rc));
        return rc;
    }
    rc = engine_tomb_save_dirty(e);
    if (!rc)
        rc = wal_remove_before(e->wal, seq);
    if (!rc)
        engine_recovered(e, FAIL_WAL);
    return rc;
}

int engine_flush(engine_t *e)
{
    pthread_mutex_lock(&e->flush_mu);
    int rc;
    if (e->o.wal_durability != ENGINE_WAL_NONE && wal_failed(e->wal, NULL)) {
        rc = engine_wal_recover(e);
    } else {
        rc = engine_freeze_head(e, 0); /* EBUSY: a previous attempt failed */
        budget_flush_begin(e->bud);
        if (rc == ST_EBUSY && (rc = engine_flush_frozen(e, 0)) == 0)
            rc = engine_freeze_head(e, 0);
        if (!rc)
            rc = engine_flush_frozen(e, 0);
        budget_flush_end(e->bud);
    }
    pthread_mutex_unlock(&e->flush_mu);
    return rc;
}

/* ---- compaction ---- */

typedef struct cursor {
    seg_ref_t *r;
    size_t i, n;
} cursor_t;

typedef struct merge_buf {
    int64_t *ts;
    double *v;
    uint64_t *ver;
    size_t n, cap;
    int64_t *dts;
    double *dv;
    size_t dcap;
} merge_buf_t;

static int mb_reserve(merge_buf_t *m, size_t extra)
{
    if (m->n + extra <= m->cap)
        return 0;
    size_t cap = m->cap ? m->cap : 4096;
    while (cap < m->n + extra)
        cap *= 2;
    int64_t *ts = realloc(m->ts, cap * sizeof *ts);
    if (!ts)
        return ST_ENOMEM;
    m->ts = ts;
    double *v = realloc(m->v, cap * sizeof *v);
    if (!v)
        return ST_ENOMEM;
    m->v = v;
    uint64_t *ver = realloc(m->ver, cap * sizeof *ver);
    if (!ver)
        return ST_ENOMEM;
    m->ver = ver;
    m->cap = cap;
    return 0;
}

/* The per-metric cut of series id (ENGINE_TS_MIN: none). */
static int64_t id_cut(engine_t *e, uint32_t id, int64_t now)
{
    if (!e->nmret)
        return ENGINE_TS_MIN;
    st_label_t l[ST_LABELS_MAX];
    pthread_rwlock_rdlock(&e->idx_lock);
    int nl = idx_labels(e->idx, id, l);
    pthread_rwlock_unlock(&e->idx_lock);
    return nl < 0 ? ENGINE_TS_MIN : engine_metric_cut(e, l, (size_t)nl, now);
}

int engine_compact_part(engine_t *e, int64_t part_start)
{
    return engine_compact_part_ex(e, part_start, 0, st_now_ms());
}

int engine_compact_part_ex(engine_t *e, int64_t part_start, int force, int64_t now)
{
    seg_ref_t **in = NULL;
    size_t nin = 0;
    pthread_mutex_lock(&e->parts_mu);
    part_t *p = part_get_unsafe(e, part_start, 0);
    /* one segment is rewritten too when it holds deleted samples (a purge) */
    if (p && (p->nsegs >= 2 || (p->nsegs == 1 && (force || engine_tomb_part_pending(e, p))))) {
        in = malloc(p->nsegs * sizeof *in);
        if (in) {
            nin = p->nsegs;
            for (size_t i = 0; i < nin; i++) {
                in[i] = p->segs[i];
                atomic_fetch_add(&in[i]->refs, 1);
            }
        }
    }
    int64_t part_end = p ? p->end : part_start;
    pthread_mutex_unlock(&e->parts_mu);
    if (nin < 1) {
        free(in);
        return 0;
    }
    uint64_t smin = UINT64_MAX, smax = 0, in_bytes = 0;
    for (size_t i = 0; i < nin; i++) {
        if (in[i]->seq_min < smin)
            smin = in[i]->seq_min;
        if (in[i]->seq_max > smax)
            smax = in[i]->seq_max;
        in_bytes += in[i]->size;
    }
    /* tombstones over the partition: their samples are dropped, and the
     * output covers sequences up to theirs (no real segment has a
     * tombstone's sequence), so nothing older than them is left here */
    tomb_t **tombs = NULL;
    size_t ntombs = engine_tomb_snapshot(e, part_start, part_end - 1, &tombs);
    if (ntombs == SIZE_MAX) {
        for (size_t i = 0; i < nin; i++)
            seg_ref_release(in[i]);
        free(in);
        return ST_ENOMEM;
    }
    for (size_t i = 0; i < ntombs; i++)
        if (tombs[i]->seq > smax)
            smax = tombs[i]->seq;
    if (force && nin == 1 &&
        smax == in[0]->seq_max) { /* a forced rewrite needs a name of its own */
        pthread_mutex_lock(&e->parts_mu);
        smax = e->next_seq++;
        pthread_mutex_unlock(&e->parts_mu);
    }
    size_t pinned = 0;
    int rc = 0;
    while (pinned < nin && (rc = seg_ref_pin(in[pinned])) == 0)
        pinned++;
    part_writer_t pw;
    if (!rc)
        rc = open_part_writer(e, &pw, part_start, smin, smax, 1, 1);
    cursor_t *cur = rc ? NULL : calloc(nin, sizeof *cur);
    merge_buf_t mb = {0};
    st_buf_t buf;
    st_buf_init(&buf);
    if (!cur && !rc) {
        seg_writer_abort(pw.w);
        rc = ST_ENOMEM;
    }
    for (size_t i = 0; i < nin && !rc; i++) {
        cur[i].r = in[i];
        cur[i].n = seg_entry_count(in[i]->seg);
    }
    while (!rc) {
        /* the smallest series id among the cursors */
        uint32_t id = UINT32_MAX;
        int any = 0;
        for (size_t i = 0; i < nin; i++) {
            if (cur[i].i < cur[i].n) {
                seg_entry_t en;
                if ((rc = seg_entry(cur[i].r->seg, cur[i].i, &en)))
                    break;
                if (!any || en.series_id < id)
                    id = en.series_id;
                any = 1;
            }
        }
        if (rc || !any)
            break;
        /* concatenate its blocks oldest source first, then sort+dedup (stable) */
        mb.n = 0;
        for (size_t i = 0; i < nin && !rc; i++) {
            seg_entry_t en;
            while (cur[i].i < cur[i].n && !rc) {
                if ((rc = seg_entry(cur[i].r->seg, cur[i].i, &en)))
                    break;
                if (en.series_id != id)
                    break;
                if ((rc = mb_reserve(&mb, en.count)))
                    break;
                size_t got;
                rc =
                    codec_decode(en.block, en.block_len, mb.ts + mb.n, mb.v + mb.n, en.count, &got);
                if (!rc && got != en.count)
                    rc = ST_ECORRUPT;
                if (ntombs) /* purge what a later delete masks */
                    got = tomb_mask(tombs, ntombs, id, in[i]->seq_max, mb.ts + mb.n, mb.v + mb.n,
                                    got);
                for (size_t k = 0; k < got; k++) /* a flushed sample has its block's version */
                    mb.ver[mb.n + k] = en.vmax;
                mb.n += got;
                cur[i].i++;
            }
        }
        if (rc)
            break;
        size_t n = samples_sort_dedup(mb.ts, mb.v, mb.ver, mb.n);
        int64_t cut = id_cut(e, id, now);
        size_t lo = 0;
        while (lo < n && mb.ts[lo] < cut) /* past its metric's retention */
            lo++;
        if (lo) {
            memmove(mb.ts, mb.ts + lo, (n - lo) * sizeof *mb.ts);
            memmove(mb.v, mb.v + lo, (n - lo) * sizeof *mb.v);
            if (mb.ver)
                memmove(mb.ver, mb.ver + lo, (n - lo) * sizeof *mb.ver);
            n -= lo;
        }
        if (n == 0)
            continue; /* every sample of the series deleted */
        rc = write_blocks(pw.w, id, mb.ts, mb.v, mb.ver, n, &buf);
    }
    seg_summary_t *sum = NULL;
    if (!rc && cur) {
        sum = writer_summary(pw.w);
        rc = seg_writer_finish(pw.w);
    } else if (cur) {
        seg_writer_abort(pw.w);
    }
    free(cur);
    free(mb.ts);
    free(mb.v);
    free(mb.ver);
    st_buf_deinit(&buf);
    int en = errno;
    for (size_t i = 0; i < pinned; i++)
        seg_ref_unpin(in[i]);
    if (!rc) {
        seg_ref_t *out = seg_ref_new(e, pw.path, smin, smax, &rc);
        if (out) {
            atomic_store(&out->sum, sum);
            sum = NULL;
            pthread_mutex_lock(&e->parts_mu);
            p = part_get_unsafe(e, part_start, 1);
            /* replace the inputs (still in the list: flush_mu excludes other compactions
             * and retention; flushes only add newer segments) */
            size_t w = 0;
            for (size_t i = 0; i < p->nsegs; i++) {
                int was_input = 0;
                for (size_t j = 0; j < nin; j++)
                    if (p->segs[i] == in[j])
                        was_input = 1;
                if (was_input) {
                    atomic_store(&p->segs[i]->obsolete, 1);
                    seg_ref_release(p->segs[i]);
                } else {
                    p->segs[w++] = p->segs[i];
                }
            }
            p->nsegs = w;
            rc = part_add_seg_unsafe(p, out);
            pthread_mutex_unlock(&e->parts_mu);
            atomic_fetch_add(&e->compactions, 1);
            engine_recovered(e, FAIL_COMPACT);
            if (ntombs)
                engine_tomb_compacted(e, in_bytes, out->size);
        }
    } else {
        const char *why = rc == ST_EIO ? strerror(en) : st_strerror(rc);
        engine_set_error("compaction of partition %" PRId64 " failed: %s", part_start, why);
        atomic_fetch_add(&e->compaction_errors, 1);
        engine_fail(e, FAIL_COMPACT, "%s (partition %" PRId64 ")", why, part_start);
    }
    seg_summary_free(sum);
    for (size_t i = 0; i < nin; i++)
        seg_ref_release(in[i]);
    free(in);
    free(tombs);
    return rc;
}

int engine_compact(engine_t *e)
{
    pthread_mutex_lock(&e->flush_mu);
    int rc = 0;
    for (size_t i = 0;; i++) {
        pthread_mutex_lock(&e->parts_mu);
        if (i >= e->nparts) {
            pthread_mutex_unlock(&e->parts_mu);
            break;
        }
        int64_t start = e->parts[i]->start;
        size_t n = e->parts[i]->nsegs;
        pthread_mutex_unlock(&e->parts_mu);
        if (n >= 2 && (rc = engine_compact_part(e, start)))
            break;
    }
    pthread_mutex_unlock(&e->flush_mu);
    return rc;
}

/* ---- retention ---- */

static int mret_cmp(const void *a, const void *b)
{
    return strcmp(((const engine_metric_retention_t *)a)->metric,
                  ((const engine_metric_retention_t *)b)->metric);
}

/* A sorted table of a[na] and b[nb] (entries with ms <= 0 left out; a
 * metric in both: the shorter), names copied into *strs. 0 or ST_ENOMEM. */
static int mret_build(const engine_metric_retention_t *a, size_t na,
                      const engine_metric_retention_t *b, size_t nb,
                      engine_metric_retention_t **out, size_t *nout, char **strs)
{
    size_t bytes = 1, k = 0;
    *out = NULL;
    *strs = NULL;
    *nout = 0;
    for (size_t i = 0; i < na + nb; i++)
        bytes += strlen(i < na ? a[i].metric : b[i - na].metric) + 1;
    if (!na && !nb)
        return 0;
    engine_metric_retention_t *v = malloc((na + nb) * sizeof *v);
    char *q = malloc(bytes), *q0 = q;
    if (!v || !q) {
        free(v);
        free(q);
        return ST_ENOMEM;
    }
    for (size_t i = 0; i < na + nb; i++) {
        const engine_metric_retention_t *x = i < na ? &a[i] : &b[i - na];
        if (x->ms <= 0)
            continue;
        size_t len = strlen(x->metric) + 1;
        memcpy(q, x->metric, len);
        v[k++] = (engine_metric_retention_t){q, x->ms};
        q += len;
    }
    qsort(v, k, sizeof *v, mret_cmp);
    size_t w = 0;
    for (size_t i = 0; i < k; i++) {
        if (w && strcmp(v[w - 1].metric, v[i].metric) == 0) {
            if (v[i].ms < v[w - 1].ms)
                v[w - 1].ms = v[i].ms;
            continue;
        }
        v[w++] = v[i];
    }
    *out = v;
    *nout = w;
    *strs = q0;
    return 0;
}

static int64_t mret_shortest(const engine_metric_retention_t *v, size_t n)
{
    int64_t m = INT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (v[i].ms < m)
            m = v[i].ms;
    return m;
}

int engine_mret_init(engine_t *e)
{
    const engine_metric_retention_t *in = e->o.metric_retention;
    size_t n = in ? e->o.n_metric_retention : 0, k = 0;
    e->o.metric_retention = NULL;
    e->o.n_metric_retention = 0;
    e->mret_min = INT64_MAX;
    if (mret_build(in, n, NULL, 0, &e->mret_st, &e->nmret_st, &e->mret_st_strs) ||
        mret_build(in, n, NULL, 0, &e->mret, &k, &e->mret_strs))
        return ST_ENOMEM;
    e->mret_min = mret_shortest(e->mret, k);
    atomic_store(&e->nmret, k);
    e->o.metric_retention = e->mret_st;
    e->o.n_metric_retention = e->nmret_st;
    return 0;
}

int engine_set_metric_retention(engine_t *e, const engine_metric_retention_t *r, size_t n)
{
    engine_metric_retention_t *v;
    char *strs;
    size_t k;
    if (mret_build(e->mret_st, e->nmret_st, r, n, &v, &k, &strs))
        return ST_ENOMEM;
    pthread_rwlock_wrlock(&e->mret_lock);
    engine_metric_retention_t *ov = e->mret;
    char *os = e->mret_strs;
    e->mret = v;
    e->mret_strs = strs;
    e->mret_min = mret_shortest(v, k);
    atomic_store(&e->nmret, k);
    pthread_rwlock_unlock(&e->mret_lock);
    free(ov);
    free(os);
    /* a new cut may cover partitions already looked at: look again */
    pthread_mutex_lock(&e->parts_mu);
    for (size_t i = 0; i < e->nparts; i++)
        e->parts[i]->mret_checked = 0;
    e->mret_gen++;
    pthread_mutex_unlock(&e->parts_mu);
    return 0;
}

/* What the per-metric retentions want of the partition [start, end) now:
 * 0 nothing, 1 drop it (every series in it is past its cut), 2 compact it
 * (some are). */
static int mret_verdict(engine_t *e, int64_t start, int64_t end, int64_t now, int *out)
{
    seg_ref_t **refs;
    size_t nr;
    int rc = engine_collect_segs(e, start, end - 1, &refs, &nr);
    if (rc)
        return rc;
    int all = nr > 0, any = 0;
    uint32_t last = UINT32_MAX;
    int last_full = 0;
    for (size_t i = 0; i < nr && !rc; i++) {
        if ((rc = seg_ref_pin(refs[i])))
            break;
        size_t ne = seg_entry_count(refs[i]->seg);
        for (size_t j = 0; j < ne && !rc; j++) {
            uint32_t id;
            if ((rc = seg_entry_id(refs[i]->seg, j, &id)))
                break;
            if (id != last) {
                last = id;
                last_full = id_cut(e, id, now) >= end;
            }
            all &= last_full;
            any |= last_full;
        }
        seg_ref_unpin(refs[i]);
    }
    for (size_t i = 0; i < nr; i++)
        seg_ref_release(refs[i]);
    free(refs);
    *out = all ? 1 : any ? 2 : 0;
    return rc;
}

/* Remove partition i from the list (parts_mu held) and return it. */
static part_t *part_take_unsafe(engine_t *e, size_t i)
{
    part_t *p = e->parts[i];
    memmove(e->parts + i, e->parts + i + 1, (e->nparts - i - 1) * sizeof *e->parts);
    e->nparts--;
    return p;
}

/* Free a partition taken off the list: its segments go once unread. */
static void part_discard(engine_t *e, part_t *victim)
{
    for (size_t j = 0; j < victim->nsegs; j++) {
        atomic_store(&victim->segs[j]->obsolete, 1);
        seg_ref_release(victim->segs[j]);
    }
    char dpath[4096];
    part_dir(e, victim->start, dpath, sizeof dpath);
    rmdir(dpath); /* succeeds once the last reader released its segments */
    free(victim->segs);
    free(victim);
}

/* Drop the partition starting at start (flush_mu held). */
static void drop_part(engine_t *e, int64_t start)
{
    pthread_mutex_lock(&e->parts_mu);
    part_t *victim = NULL;
    for (size_t i = 0; i < e->nparts && !victim; i++)
        if (e->parts[i]->start == start)
            victim = part_take_unsafe(e, i);
    pthread_mutex_unlock(&e->parts_mu);
    if (victim)
        part_discard(e, victim);
}

/* The per-metric retentions over the partitions some cut has passed whole. */
static int apply_metric_retention(engine_t *e, int64_t now)
{
    int rc = 0;
    pthread_mutex_lock(&e->flush_mu);
    for (size_t i = 0; !rc; i++) {
        pthread_mutex_lock(&e->parts_mu);
        pthread_rwlock_rdlock(&e->mret_lock);
        if (!e->nmret || i >= e->nparts || e->parts[i]->end > now - e->mret_min) {
            pthread_rwlock_unlock(&e->mret_lock);
            pthread_mutex_unlock(&e->parts_mu);
            break;
        }
        part_t *p = e->parts[i];
        int64_t start = p->start, end = p->end, checked = p->mret_checked;
        uint64_t gen = e->mret_gen;
        uint64_t seq = p->nsegs ? p->segs[p->nsegs - 1]->seq_max : 0;
        int again = !p->nsegs ? 0 : seq != p->mret_seq || !checked;
        for (size_t r = 0; r < e->nmret && !again; r++)
            again = checked < end + e->mret[r].ms && end + e->mret[r].ms <= now;
        pthread_rwlock_unlock(&e->mret_lock);
        pthread_mutex_unlock(&e->parts_mu);
        if (!again)
            continue;
        int what = 0;
        if ((rc = mret_verdict(e, start, end, now, &what)))
            break;
        if (what == 1) {
            drop_part(e, start);
            atomic_fetch_add(&e->mret_drops, 1);
            i--; /* the next partition moved to i */
            continue;
        }
        if (what == 2) {
            if ((rc = engine_compact_part_ex(e, start, 1, now)))
                break;
            atomic_fetch_add(&e->mret_rewrites, 1);
        }
        pthread_mutex_lock(&e->parts_mu);
        part_t *q = part_get_unsafe(e, start, 0);
        if (q && gen == e->mret_gen) { /* else the retentions changed meanwhile */
            q->mret_checked = now;
            q->mret_seq = q->nsegs ? q->segs[q->nsegs - 1]->seq_max : 0;
        }
        pthread_mutex_unlock(&e->parts_mu);
    }
    pthread_mutex_unlock(&e->flush_mu);
    return rc;
}

int engine_apply_retention(engine_t *e, int64_t now_ms)
{
    int rc = 0;
    if (e->o.retention_ms > 0)
        rc = engine_drop_before(e, now_ms - e->o.retention_ms);
    if (!rc && e->nmret)
        rc = apply_metric_retention(e, now_ms);
    return rc;
}

int engine_partition_after(engine_t *e, int64_t after, int64_t *start)
{
    int rc = ST_ENOENT;
    pthread_mutex_lock(&e->parts_mu);
    for (size_t i = 0; i < e->nparts && rc; i++)
        if (e->parts[i]->start >= after && e->parts[i]->nsegs) {
            *start = e->parts[i]->start;
            rc = 0;
        }
    pthread_mutex_unlock(&e->parts_mu);
    return rc;
}

int64_t engine_partition_flushed_ms(engine_t *e, int64_t start)
{
    int64_t t = 0;
    pthread_mutex_lock(&e->parts_mu);
    for (size_t i = 0; i < e->nparts; i++)
        if (e->parts[i]->start == start)
            t = e->parts[i]->last_flush_ms;
    pthread_mutex_unlock(&e->parts_mu);
    return t;
}

int engine_drop_before(engine_t *e, int64_t cutoff)
{
    pthread_mutex_lock(&e->flush_mu);
    for (;;) {
        pthread_mutex_lock(&e->parts_mu);
        part_t *victim = NULL;
        if (e->nparts > 0 && e->parts[0]->end <= cutoff)
            victim = part_take_unsafe(e, 0);
        pthread_mutex_unlock(&e->parts_mu);
        if (!victim)
            break;
        part_discard(e, victim);
    }
    pthread_mutex_unlock(&e->flush_mu);
    return 0;
}

/*
 * engine_copy — moving sealed segment files between replicas of a shard
 * (the API and its rules are in engine.h, "Copying sealed segment files").
 *
 * Why: rebuilding a replica by streaming samples decodes and re-encodes
 * every block twice; a sealed segment can travel as bytes. Segments name
 * series by engine-local ids, so the receiver maps them.
 *
 * How, sending side: engine_copy_list takes references to the segments of
 * the partitions no pending delete covers (under head_mu then parts_mu, so
 * "sealed" is read consistently), reads each file for its CRC if asked,
 * and notes series.log's persisted size last: a flush persists series.log
 * before it writes segments, so that size covers every id the files use.
 * engine_copy_read reads a chunk of one listed file (found again by its
 * partition and sequence numbers: compaction may have replaced it).
 *
 * Receiving side: a scratch directory "<dir>/copy.tmp" holds the sender's
 * series.log and one received file at a time. engine_copy_install opens
 * the received file with seg_open (header, footer and directory CRCs),
 * checks every block's CRC, resolves each sender id to labels (the loaded
 * sender index) and to a local id (created like a write creates one:
 * budget_admit_series, then series.log persisted before the segment may
 * refer to it), sorts the entries by local id and writes the blocks
 * unchanged into a new segment with the next flush sequence number under
 * flush_mu. It re-checks under parts_mu that the partition still has no
 * segment before publishing; otherwise the new file is removed (ST_EEXIST)
 * and the pull repair fills the partition instead.
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

#include "engine_internal.h"
#include "st_crc32c.h"
#include "st_file.h"
#include "st_time.h"

#define COPY_DIR "copy.tmp"
#define COPY_READ_CHUNK (1u << 20)

/* ---- sending side ---- */

static int file_crc(const char *path, uint32_t *crc)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? ST_ENOENT : ST_EIO;
    uint8_t *buf = malloc(COPY_READ_CHUNK);
    if (!buf) {
        close(fd);
        return ST_ENOMEM;
    }
    uint32_t c = 0;
    int rc = 0;
    for (;;) {
        ssize_t k = read(fd, buf, COPY_READ_CHUNK);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            rc = ST_EIO;
            break;
        }
        if (k == 0)
            break;
        c = st_crc32c(c, buf, (size_t)k);
    }
    free(buf);
    close(fd);
    *crc = c;
    return rc;
}

static int wanted(const int64_t *parts, size_t nparts, int64_t start)
{
    if (!nparts)
        return 1;
    for (size_t i = 0; i < nparts; i++)
        if (parts[i] == start)
            return 1;
    return 0;
}

int engine_copy_list(engine_t *e, const int64_t *parts, size_t nparts, int with_crc,
                     engine_seg_file_t **out, size_t *n, uint64_t *series_log)
{
    *out = NULL;
    *n = 0;
    /* per-metric retentions hide samples as their cuts move, files or
     * not: a partition a cut may be inside of is never "sealed" */
    int64_t unstable_before = INT64_MIN;
    if (atomic_load(&e->nmret)) {
        pthread_rwlock_rdlock(&e->mret_lock);
        unstable_before = st_now_ms() - e->mret_min;
        pthread_rwlock_unlock(&e->mret_lock);
    }
    pthread_mutex_lock(&e->head_mu);
    pthread_mutex_lock(&e->parts_mu);
    size_t cnt = 0;
    for (size_t i = 0; i < e->nparts; i++)
        cnt += e->parts[i]->nsegs;
    engine_seg_file_t *v = cnt ? calloc(cnt, sizeof *v) : NULL;
    seg_ref_t **refs = cnt ? calloc(cnt, sizeof *refs) : NULL;
    if (cnt && (!v || !refs)) {
        pthread_mutex_unlock(&e->parts_mu);
        pthread_mutex_unlock(&e->head_mu);
        free(v);
        free(refs);
        return ST_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < e->nparts; i++) {
        part_t *p = e->parts[i];
        if (!p->nsegs || !wanted(parts, nparts, p->start) || engine_tomb_part_pending(e, p))
            continue;
        int sealed = !head_has_part(e->head, p->start) &&
                     !(e->frozen && head_has_part(e->frozen, p->start)) &&
                     p->start >= unstable_before;
        for (size_t j = 0; j < p->nsegs; j++) {
            seg_ref_t *r = p->segs[j];
            atomic_fetch_add(&r->refs, 1);
            refs[k] = r;
            v[k].part_start = p->start;
            v[k].seq_min = r->seq_min;
            v[k].seq_max = r->seq_max;
            v[k].size = r->size;
            v[k].sealed = sealed;
            k++;
        }
    }
    pthread_mutex_unlock(&e->parts_mu);
    pthread_mutex_unlock(&e->head_mu);
    int rc = 0;
    for (size_t i = 0; i < k; i++) {
        if (with_crc && !rc)
            rc = file_crc(refs[i]->path, &v[i].crc);
        seg_ref_release(refs[i]);
    }
    free(refs);
    if (rc) {
        free(v);
        return rc;
    }
    pthread_rwlock_rdlock(&e->idx_lock);
    *series_log = idx_disk_bytes(e->idx);
    pthread_rwlock_unlock(&e->idx_lock);
    if (!k) {
        free(v);
        v = NULL;
    }
    *out = v;
    *n = k;
    return 0;
}

/* A reference to the listed file f, or NULL (gone). */
static seg_ref_t *find_ref(engine_t *e, const engine_seg_file_t *f)
{
    seg_ref_t *found = NULL;
    pthread_mutex_lock(&e->parts_mu);
    for (size_t i = 0; i < e->nparts && !found; i++) {
        part_t *p = e->parts[i];
        if (p->start != f->part_start)
            continue;
        for (size_t j = 0; j < p->nsegs; j++)
            if (p->segs[j]->seq_min == f->seq_min && p->segs[j]->seq_max == f->seq_max) {
                found = p->segs[j];
                atomic_fetch_add(&found->refs, 1);
                break;
            }
    }
    pthread_mutex_unlock(&e->parts_mu);
    return found;
}

static int read_at(const char *path, uint64_t limit, uint64_t off, uint8_t *buf, size_t cap,
                   size_t *got)
{
    *got = 0;
    if (off >= limit)
        return 0;
    if (cap > limit - off)
        cap = (size_t)(limit - off);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? ST_ENOENT : ST_EIO;
    int rc = st_pread_all(fd, buf, cap, off);
    close(fd);
    if (rc == ST_EAGAIN)
        return ST_ENOENT; /* shorter than listed: not the file that was listed */
    if (!rc)
        *got = cap;
    return rc;
}

int engine_copy_read(engine_t *e, const engine_seg_file_t *f, uint64_t limit, uint64_t off,
                     uint8_t *buf, size_t cap, size_t *got)
{
    if (!f) {
        char path[4096];
        snprintf(path, sizeof path, "%s/series.log", e->dir);
        pthread_rwlock_rdlock(&e->idx_lock);
        uint64_t have = idx_disk_bytes(e->idx);
        pthread_rwlock_unlock(&e->idx_lock);
        return read_at(path, limit < have ? limit : have, off, buf, cap, got);
    }
    seg_ref_t *r = find_ref(e, f);
    if (!r)
        return ST_ENOENT;
    int rc = read_at(r->path, r->size, off, buf, cap, got);
    seg_ref_release(r);
    return rc;
}

/* ---- receiving side ---- */

struct engine_copy {
    engine_t *e;
    char dir[4096];
    idx_t *src; /* the sender's series (engine_copy_load_series) */
};

/* Remove the files of dir, then dir (one level: the scratch dir is flat). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        char p[4096 + 256];
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(dir);
}

int engine_copy_begin(engine_t *e, engine_copy_t **out)
{
    engine_copy_t *c = calloc(1, sizeof *c);
    if (!c)
        return ST_ENOMEM;
    c->e = e;
    if (snprintf(c->dir, sizeof c->dir, "%s/%s", e->dir, COPY_DIR) >= (int)sizeof c->dir) {
        free(c);
        return ST_ELIMIT;
    }
    remove_dir(c->dir);
    if (st_mkdir(c->dir)) {
        engine_set_error("cannot create %s: %s", c->dir, strerror(errno));
        free(c);
        return ST_EIO;
    }
    *out = c;
    return 0;
}

const char *engine_copy_path(engine_copy_t *c, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", c->dir, name);
    return buf;
}

int engine_copy_load_series(engine_copy_t *c)
{
    if (c->src) {
        idx_close(c->src);
        c->src = NULL;
    }
    int rc = idx_open(c->dir, &c->src);
    if (rc)
        engine_set_error("the sender's series.log: %s", st_strerror(rc));
    return rc;
}

/* parts_mu held. */
static int part_empty_unsafe(engine_t *e, int64_t start)
{
    for (size_t i = 0; i < e->nparts; i++)
        if (e->parts[i]->start == start)
            return e->parts[i]->nsegs == 0;
    return 1;
}

int engine_copy_part_empty(engine_t *e, int64_t start)
{
    pthread_mutex_lock(&e->head_mu);
    pthread_mutex_lock(&e->parts_mu);
    int empty = part_empty_unsafe(e, start) && !head_has_part(e->head, start) &&
                !(e->frozen && head_has_part(e->frozen, start));
    pthread_mutex_unlock(&e->parts_mu);
    pthread_mutex_unlock(&e->head_mu);
    if (!empty)
        return 0;
    struct tomb **t = NULL;
    size_t nt = engine_tomb_snapshot(e, start, start + e->o.partition_ms - 1, &t);
    free(t);
    return nt == 0;
}

typedef struct mapped {
    uint32_t id; /* local */
    uint32_t entry;
} mapped_t;

static int cmp_mapped(const void *a, const void *b)
{
    const mapped_t *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->entry < y->entry ? -1 : x->entry > y->entry;
}

/* The local id of the sender's series sid (created when new). */
static int map_series(engine_copy_t *c, uint32_t sid, uint32_t *id, int *created)
{
    engine_t *e = c->e;
    st_label_t l[ST_LABELS_MAX];
    int nl = idx_labels(c->src, sid, l);
    if (nl <= 0) {
        engine_set_error("series id %u is not in the sender's series.log", sid);
        return ST_ECORRUPT;
    }
    uint64_t h = st_labels_hash(l, (size_t)nl);
    pthread_rwlock_wrlock(&e->idx_lock);
    int rc = idx_lookup(e->idx, l, (size_t)nl, h, id);
    if (rc == ST_ENOENT) {
        const char *why;
        uint64_t lv = 0;
        const char *limit;
        if ((rc = st_labels_validate(l, (size_t)nl, &why))) {
            engine_set_error("series id %u: %s", sid, why);
        } else if ((limit = budget_admit_series(e->bud, 0, &lv))) {
            engine_set_error("%s limit %llu reached on this node", limit, (unsigned long long)lv);
            rc = ST_ELIMIT;
        } else if ((rc = idx_add(e->idx, l, (size_t)nl, h, id))) {
            budget_series_charge(e->bud, 1, 0);
        } else {
            e->series_charged++;
            *created = 1;
        }
    }
    pthread_rwlock_unlock(&e->idx_lock);
    return rc;
}

/* Entries of s mapped to local ids, sorted by (local id, entry). */
static int map_entries(engine_copy_t *c, seg_t *s, mapped_t **out, uint64_t *samples)
{
    size_t n = seg_entry_count(s);
    mapped_t *m = malloc((n ? n : 1) * sizeof *m);
    if (!m)
        return ST_ENOMEM;
    int rc = 0, created = 0;
    uint32_t prev_sid = UINT32_MAX, prev_id = 0;
    *samples = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        seg_entry_t en;
        if ((rc = seg_entry(s, i, &en))) { /* the block CRC */
            engine_set_error("received segment: block %zu: %s", i, st_strerror(rc));
            break;
        }
        if (en.series_id != prev_sid && !(rc = map_series(c, en.series_id, &prev_id, &created)))
            prev_sid = en.series_id;
        m[i].id = prev_id;
        m[i].entry = (uint32_t)i;
        *samples += en.count;
    }
    if (!rc && created) { /* durable before any segment names them */
        pthread_rwlock_wrlock(&c->e->idx_lock);
        rc = idx_persist(c->e->idx);
        pthread_rwlock_unlock(&c->e->idx_lock);
        if (rc)
            engine_set_error("cannot persist series.log: %s", st_strerror(rc));
    }
    if (rc) {
        free(m);
        return rc;
    }
    qsort(m, n, sizeof *m, cmp_mapped);
    *out = m;
    return 0;
}

/* Write s's blocks in the order of m into a new segment of partition
 * start, made durable (flush_mu held); *path gets its name. */
static int write_installed(engine_t *e, seg_t *s, const mapped_t *m, int64_t start, char *path,
                           size_t cap, uint64_t *seq_out, seg_summary_t **sum)
{
    size_t n = seg_entry_count(s);
    char dpath[4096];
    snprintf(dpath, sizeof dpath, "%s/parts/%" PRId64, e->dir, start);
    if (st_mkdir(dpath)) {
        engine_set_error("cannot create %s: %s", dpath, strerror(errno));
        return ST_EIO;
    }
    uint64_t seq = e->next_seq++;
    snprintf(path, cap, "%s/%016" PRIx64 "-%016" PRIx64 ".seg", dpath, seq, seq);
    seg_meta_t meta = {.part_start = start,
                       .part_end = start + e->o.partition_ms,
                       .seq = seq,
                       .level = seg_get_meta(s)->level};
    seg_writer_t *w;
    int rc = seg_writer_create(path, &meta, &w);
    if (rc) {
        engine_set_error("cannot create %s: %s", path, st_strerror(rc));
        return rc;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        seg_entry_t en;
        if (!(rc = seg_entry(s, m[i].entry, &en)))
            rc = seg_writer_add_v(w, m[i].id, en.count, en.mint, en.maxt, en.vmax, en.block,
                                  en.block_len);
    }
    if (rc) {
        seg_writer_abort(w);
        engine_set_error("cannot write %s: %s", path, st_strerror(rc));
        return rc;
    }
    if (seg_writer_summary(w, sum))
        *sum = NULL;
    char parts[4096];
    snprintf(parts, sizeof parts, "%s/parts", e->dir);
    st_fsync_dir(parts);
    if ((rc = seg_writer_finish(w))) {
        seg_summary_free(*sum);
        *sum = NULL;
        engine_set_error("cannot finish %s: %s", path, st_strerror(rc));
        return rc;
    }
    *seq_out = seq;
    return 0;
}

typedef struct received {
    seg_t *s;
    mapped_t *m;
    char path[4096 + 64]; /* the installed file */
    uint64_t seq;
    seg_summary_t *sum;
    int written;
} received_t;

int engine_copy_install(engine_copy_t *c, int64_t start, const char *const *paths, size_t n,
                        uint64_t *samples)
{
    engine_t *e = c->e;
    *samples = 0;
    received_t *v = calloc(n ? n : 1, sizeof *v);
    int rc = 0;
    if (!v) {
        rc = ST_ENOMEM;
        goto out;
    }
    if (!c->src) {
        engine_set_error("the sender's series.log is not loaded");
        rc = ST_EINVAL;
        goto out;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        if ((rc = seg_open(paths[i], &v[i].s))) {
            engine_set_error("received segment: %s", st_strerror(rc));
            break;
        }
        const seg_meta_t *meta = seg_get_meta(v[i].s);
        if (meta->part_start != start || meta->part_end - meta->part_start != e->o.partition_ms) {
            engine_set_error("received segment covers [%" PRId64 ", %" PRId64
                             "), not a partition of %" PRId64 " ms at %" PRId64,
                             meta->part_start, meta->part_end, e->o.partition_ms, start);
            rc = ST_EINVAL;
            break;
        }
        uint64_t k = 0;
        if (!(rc = map_entries(c, v[i].s, &v[i].m, &k)))
            *samples += k;
    }
    if (!rc && !engine_copy_part_empty(e, start)) {
        engine_set_error("partition %" PRId64 " has data here", start);
        rc = ST_EEXIST;
    }
    if (rc)
        goto out;
    /* every file written and durable first, then all published at once:
     * flush and compaction also take flush_mu, so only retention or a
     * delete can touch the partition meanwhile (checked again) */
    pthread_mutex_lock(&e->flush_mu);
    for (size_t i = 0; i < n && !rc; i++)
        if (!(rc = write_installed(e, v[i].s, v[i].m, start, v[i].path, sizeof v[i].path, &v[i].seq,
                                   &v[i].sum)))
            v[i].written = 1;
    if (!rc && !engine_copy_part_empty(e, start)) {
        engine_set_error("partition %" PRId64 " got data meanwhile", start);
        rc = ST_EEXIST;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        if ((rc = engine_publish_seg(e, v[i].path, start, v[i].seq, v[i].seq, &v[i].sum)))
            break;
        v[i].written = 0; /* published: the engine owns it */
        atomic_fetch_add(&e->segments_installed, 1);
    }
    pthread_mutex_unlock(&e->flush_mu);
out:
    for (size_t i = 0; v && i < n; i++) {
        if (v[i].written)
            unlink(v[i].path);
        seg_summary_free(v[i].sum);
        free(v[i].m);
        seg_close(v[i].s);
    }
    for (size_t i = 0; i < n; i++)
        unlink(paths[i]);
    free(v);
    return rc;
}

void engine_copy_end(engine_copy_t *c)
{
    if (!c)
        return;
    idx_close(c->src);
    remove_dir(c->dir);
    free(c);
}

/* ---- tokens of sealed partitions ---- */

static uint64_t mix(uint64_t h, uint64_t x)
{
    h ^= x + UINT64_C(0x9e3779b97f4a7c15) + (h << 6) + (h >> 2);
    h *= UINT64_C(0xbf58476d1ce4e5b9);
    return h ^ (h >> 31);
}

static int cmp_file(const void *a, const void *b)
{
    const engine_seg_file_t *x = a, *y = b;
    if (x->part_start != y->part_start)
        return x->part_start < y->part_start ? -1 : 1;
    return x->seq_max < y->seq_max ? -1 : x->seq_max > y->seq_max;
}

int engine_copy_parts(const engine_seg_file_t *f, size_t n, engine_part_token_t **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    if (!n)
        return 0;
    engine_seg_file_t *s = malloc(n * sizeof *s);
    engine_part_token_t *v = malloc(n * sizeof *v);
    if (!s || !v) {
        free(s);
        free(v);
        return ST_ENOMEM;
    }
    memcpy(s, f, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_file);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!k || v[k - 1].start != s[i].part_start) {
            v[k].start = s[i].part_start;
            v[k].token = UINT64_C(0x243f6a8885a308d3);
            v[k].sealed = 1;
            k++;
        }
        engine_part_token_t *p = &v[k - 1];
        p->token = mix(mix(mix(p->token, s[i].seq_min), s[i].seq_max), s[i].size);
        p->sealed &= s[i].sealed != 0;
    }
    free(s);
    *out = v;
    *nout = k;
    return 0;
}

const engine_part_token_t *engine_copy_part_find(const engine_part_token_t *v, size_t n,
                                                 int64_t start)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].start < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo].start == start ? &v[lo] : NULL;
}

size_t engine_copy_skip(const engine_part_token_t *mine, size_t nmine,
                        const engine_part_token_t *theirs, size_t ntheirs,
                        const engine_part_equal_t *eq, size_t neq, int64_t *skip)
{
    size_t k = 0;
    for (size_t i = 0; i < nmine; i++) {
        const engine_part_token_t *t = engine_copy_part_find(theirs, ntheirs, mine[i].start);
        if (!mine[i].sealed || !t || !t->sealed)
            continue;
        for (size_t j = 0; j < neq; j++)
            if (eq[j].start == mine[i].start && eq[j].mine == mine[i].token &&
                eq[j].theirs == t->token) {
                skip[k++] = mine[i].start;
                break;
            }
    }
    return k;
}

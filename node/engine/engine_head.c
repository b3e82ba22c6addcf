/*
 * engine_head — the in-memory head: per-series arrays of (ts, value).
 *
 * Appends are usually in time order and land at the end of the series'
 * arrays. An append older than the series' newest sample only sets the
 * `unsorted` flag; the series is sorted (stable, so the later of two writes
 * of one timestamp stays later) and deduplicated (last write wins) when it
 * is read or flushed. `bytes` counts allocated capacity, which is what the
 * flush threshold (memtable_max_bytes) bounds.
 *
 * Versions (engine.h, VERSIONS): the head interns each distinct version
 * (one per write) in a small table (vt, hashed by vslot; vt[0] = 0) and a
 * series keeps, once a sample with a version != 0 arrives, one uint32
 * index into it a sample (vi; its earlier samples get index 0), in any
 * order: sorting moves the indices along. 4 bytes a sample, counted in
 * `bytes`. Deduplication keeps, of equal timestamps, the highest version
 * and, on a tie, the later write.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "st_err.h"

#define HEAD_INIT_CAP 16
#define HEAD_SERIES_MAX (1u << 30) /* samples of one series in one head */

head_t *head_create(void)
{
    head_t *h = calloc(1, sizeof *h);
    if (h) {
        h->mint = INT64_MAX;
        h->maxt = INT64_MIN;
        h->done_before = INT64_MIN;
    }
    return h;
}

/*
 * Series arrays: a buddy allocator per head. A slab (malloc'ed; the
 * first 64 KiB, each next twice the last up to 1 MiB, so a small head
 * stays small and a large one's slabs are all one size, reused by the
 * next head as they are; h->slab is kept by address and a block's slab
 * found by binary search) starts with its map (one byte per 256-byte
 * unit: class + 1 where a free block starts, else 0; the map's own units
 * are never free); the rest is cut into blocks of 2^k bytes. A freed block
 * merges with its buddy (offset ^ size) while that one is free and of the
 * same size, so the arrays series outgrow (all of a head's series grow at
 * about the same time) become the larger blocks the next series grow
 * into. The head's lock covers it all; destroying the head frees the slabs
 * with a handful of free() calls instead of one per series. Compared with
 * malloc (a lock, and bins whose chunk headers lie in cold memory) a
 * growth is a list pop and a few map bytes.
 */
typedef struct head_free {
    struct head_free *next, *prev;
} head_free_t;

/* Under ASan a free block is poisoned past its links (a stale pointer into
 * a series' old arrays is reported as it would be with malloc). */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAD_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(HEAD_ASAN)
#include <sanitizer/asan_interface.h>
#define BLOCK_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define BLOCK_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define BLOCK_POISON(p, n) ((void)(p), (void)(n))
#define BLOCK_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define SLAB_MAX ((size_t)1 << HEAD_SLAB_LOG)
#define UNIT ((size_t)1 << HEAD_BLOCK_MIN_LOG)
#define BLOCK_MAX ((size_t)1 << HEAD_BLOCK_MAX_LOG) /* larger: malloc'ed */

/* Bytes of a series' block: a power of two, at least one unit. */
static size_t block_bytes(uint32_t cap, size_t per)
{
    size_t want = (size_t)cap * per, b = UNIT;
    while (b < want)
        b <<= 1;
    return b;
}

static unsigned block_class(size_t bytes)
{
    unsigned k = 0;
    while ((UNIT << k) < bytes)
        k++;
    return k;
}

static void free_push(head_t *h, uint8_t *slab, size_t off, unsigned k)
{
    head_free_t *f = (head_free_t *)(slab + off);
    BLOCK_UNPOISON(f, sizeof *f); /* the upper half of a split lay inside a free block */
    f->prev = NULL;
    f->next = h->bfree[k];
    if (f->next)
        f->next->prev = f;
    h->bfree[k] = f;
    slab[off / UNIT] = (uint8_t)(k + 1);
    BLOCK_POISON(slab + off + sizeof *f, (UNIT << k) - sizeof *f);
}

static void free_unlink(head_t *h, uint8_t *slab, size_t off, unsigned k)
{
    head_free_t *f = (head_free_t *)(slab + off);
    if (f->prev)
        f->prev->next = f->next;
    else
        h->bfree[k] = f->next;
    if (f->next)
        f->next->prev = f->prev;
    slab[off / UNIT] = 0;
}

/* The slab holding b: the last one that starts at or before it. */
static uint8_t *slab_of(const head_t *h, const void *b)
{
    uint32_t lo = 0, hi = h->nslab; /* the answer is in [lo, hi) */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if ((const uint8_t *)b >= h->slab[mid].base)
            lo = mid;
        else
            hi = mid;
    }
    return h->slab[lo].base;
}

/* A new slab with room for a block of `bytes` (at most half a slab). */
static int slab_new(head_t *h, size_t bytes)
{
    if (h->nslab == h->slabcap) {
        uint32_t nc = h->slabcap ? h->slabcap * 2 : 16;
        struct head_slab *ns = realloc(h->slab, nc * sizeof *ns);
        if (!ns)
            return ST_ENOMEM;
        h->slab = ns;
        h->slabcap = nc;
    }
    size_t size = (size_t)1 << HEAD_SLAB_FIRST_LOG;
    for (uint32_t i = 0; i < h->nslab && size < SLAB_MAX; i++)
        size <<= 1;
    while (size < 2 * bytes)
        size <<= 1;
    uint8_t *slab = malloc(size);
    if (!slab)
        return ST_ENOMEM;
    uint32_t at = h->nslab;
    while (at > 0 && h->slab[at - 1].base > slab)
        at--;
    memmove(h->slab + at + 1, h->slab + at, (h->nslab - at) * sizeof *h->slab);
    h->slab[at] = (struct head_slab){slab, size};
    h->nslab++;
    h->slab_bytes += size;
    size_t map = size / UNIT; /* a power of two, at least one unit */
    memset(slab, 0, map);
    /* [map, size): blocks of map, 2 map, ... half the slab */
    for (size_t off = map; off < size; off <<= 1)
        free_push(h, slab, off, block_class(off));
    return 0;
}

/* A block of `bytes` (a power of two) for h's series arrays. */
static void *block_get(head_t *h, size_t bytes)
{
    if (bytes > BLOCK_MAX)
        return malloc(bytes);
    unsigned k = block_class(bytes), j = k;
    while (j < HEAD_BLOCK_CLASSES && !h->bfree[j])
        j++;
    if (j == HEAD_BLOCK_CLASSES) {
        if (slab_new(h, bytes))
            return NULL;
        for (j = k; !h->bfree[j]; j++)
            ;
    }
    uint8_t *b = (uint8_t *)h->bfree[j], *slab = slab_of(h, b);
    size_t off = (size_t)(b - slab);
    free_unlink(h, slab, off, j);
    while (j > k) { /* split: the upper half stays free */
        j--;
        free_push(h, slab, off + (UNIT << j), j);
    }
    BLOCK_UNPOISON(b, bytes);
    return b;
}

static void block_put(head_t *h, void *p, size_t bytes)
{
    if (bytes > BLOCK_MAX) {
        free(p);
        return;
    }
    uint8_t *slab = slab_of(h, p);
    size_t off = (size_t)((uint8_t *)p - slab);
    unsigned k = block_class(bytes);
    while (k + 1 < HEAD_BLOCK_CLASSES) {
        size_t buddy = off ^ (UNIT << k);
        if (slab[buddy / UNIT] != k + 1)
            break;
        free_unlink(h, slab, buddy, k);
        off &= ~(UNIT << k);
        k++;
    }
    free_push(h, slab, off, k);
}

void head_destroy(head_t *h)
{
    if (!h)
        return;
    for (uint32_t c = 0; c < h->ns / HEAD_CHUNK; c++) {
        if (!h->chunk[c])
            continue;
        for (uint32_t i = 0; i < HEAD_CHUNK; i++) {
            head_series_t *s = &h->chunk[c][i]; /* v and vi lie in the same block */
            if (s->ts && block_bytes(s->cap, 16 + (s->vi ? sizeof *s->vi : 0)) > BLOCK_MAX)
                free(s->ts);
        }
        free(h->chunk[c]);
    }
    for (uint32_t i = 0; i < h->nslab; i++)
        free(h->slab[i].base);
    free(h->slab);
    free(h->chunk);
    free(h->pset);
    free(h->vt);
    free(h->vslot);
    free(h);
}

#define PSET_EMPTY INT64_MIN /* never a partition start: timestamps are clamped */

static uint32_t pset_slot(int64_t start, uint32_t cap)
{
    uint64_t x = (uint64_t)start * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(x >> 32) & (cap - 1);
}

int head_add_part(head_t *h, int64_t start)
{
    if (h->pcap) {
        for (uint32_t i = pset_slot(start, h->pcap);; i = (i + 1) & (h->pcap - 1)) {
            if (h->pset[i] == start)
                return 0;
            if (h->pset[i] == PSET_EMPTY)
                break;
        }
    }
    if ((h->npart + 1) * 2 > h->pcap) {
        uint32_t cap = h->pcap ? h->pcap * 2 : 16;
        int64_t *n = malloc((size_t)cap * sizeof *n);
        if (!n)
            return ST_ENOMEM;
        for (uint32_t i = 0; i < cap; i++)
            n[i] = PSET_EMPTY;
        for (uint32_t k = 0; k < h->pcap; k++) {
            if (h->pset[k] == PSET_EMPTY)
                continue;
            uint32_t i = pset_slot(h->pset[k], cap);
            while (n[i] != PSET_EMPTY)
                i = (i + 1) & (cap - 1);
            n[i] = h->pset[k];
        }
        h->bytes += (uint64_t)(cap - h->pcap) * sizeof *n;
        free(h->pset);
        h->pset = n;
        h->pcap = cap;
    }
    uint32_t i = pset_slot(start, h->pcap);
    while (h->pset[i] != PSET_EMPTY)
        i = (i + 1) & (h->pcap - 1);
    h->pset[i] = start;
    h->npart++;
    return 0;
}

int head_has_part(const head_t *h, int64_t start)
{
    if (!h || !h->pcap)
        return 0;
    for (uint32_t i = pset_slot(start, h->pcap);; i = (i + 1) & (h->pcap - 1)) {
        if (h->pset[i] == start)
            return 1;
        if (h->pset[i] == PSET_EMPTY)
            return 0;
    }
}

/* The struct of series id, its chunk made if needed (zeroed: not live). */
static head_series_t *head_slot(head_t *h, uint32_t id)
{
    if (id >= h->ns) {
        uint32_t n = h->ns ? h->ns : 1024;
        while (n <= id)
            n *= 2;
        head_series_t **c = realloc(h->chunk, (size_t)(n / HEAD_CHUNK) * sizeof *c);
        if (!c)
            return NULL;
        size_t old = h->ns / HEAD_CHUNK;
        memset(c + old, 0, (n / HEAD_CHUNK - old) * sizeof *c);
        h->bytes += (uint64_t)(n / HEAD_CHUNK - old) * sizeof *c;
        h->chunk = c;
        h->ns = n;
    }
    head_series_t **c = &h->chunk[id / HEAD_CHUNK];
    if (!*c) {
        size_t sz = HEAD_CHUNK * sizeof **c;
        if (!(*c = aligned_alloc(64, sz)))
            return NULL;
        memset(*c, 0, sz);
        h->bytes += sz;
    }
    return &(*c)[id % HEAD_CHUNK];
}

int head_series_versioned(const head_series_t *s)
{
    return s->vi != NULL;
}

uint64_t head_version(const head_t *h, const head_series_t *s, uint32_t i)
{
    return s->vi ? h->vt[s->vi[i]] : 0;
}

void head_series_versions(const head_t *h, const head_series_t *s, uint32_t from, uint32_t n,
                          uint64_t *out)
{
    if (!s->vi) {
        memset(out, 0, (size_t)n * sizeof *out);
        return;
    }
    for (uint32_t i = 0; i < n; i++)
        out[i] = h->vt[s->vi[from + i]];
}

static uint32_t vslot_of(uint64_t version, uint32_t cap)
{
    return (uint32_t)((version * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

/* The index of `version` (!= 0) in h->vt, added if new. */
static int head_vindex(head_t *h, uint64_t version, uint32_t *out)
{
    if (h->nvt && h->vt[h->vlast] == version) {
        *out = h->vlast;
        return 0;
    }
    if (h->vscap) {
        for (uint32_t i = vslot_of(version, h->vscap);; i = (i + 1) & (h->vscap - 1)) {
            uint32_t x = h->vslot[i];
            if (!x)
                break;
            if (h->vt[x - 1] == version) {
                *out = h->vlast = x - 1;
                return 0;
            }
        }
    }
    if (h->nvt == UINT32_MAX - 1)
        return ST_ELIMIT;
    if (h->nvt + 1 >= h->vtcap) { /* +1: vt[0] = 0 comes with the first */
        uint32_t cap = h->vtcap ? h->vtcap * 2 : 64;
        uint64_t *vt = realloc(h->vt, (size_t)cap * sizeof *vt);
        if (!vt)
            return ST_ENOMEM;
        h->bytes += (uint64_t)(cap - h->vtcap) * sizeof *vt;
        h->vt = vt;
        h->vtcap = cap;
        if (!h->nvt)
            h->vt[h->nvt++] = 0;
    }
    if ((h->nvt + 1) * 2 > h->vscap) { /* at most half full */
        uint32_t cap = h->vscap ? h->vscap * 2 : 128;
        uint32_t *sl = calloc(cap, sizeof *sl);
        if (!sl)
            return ST_ENOMEM;
        for (uint32_t x = 1; x < h->nvt; x++) {
            uint32_t i = vslot_of(h->vt[x], cap);
            while (sl[i])
                i = (i + 1) & (cap - 1);
            sl[i] = x + 1;
        }
        h->bytes += (uint64_t)(cap - h->vscap) * sizeof *sl;
        free(h->vslot);
        h->vslot = sl;
        h->vscap = cap;
    }
    uint32_t x = h->nvt++;
    h->vt[x] = version;
    uint32_t i = vslot_of(version, h->vscap);
    while (h->vslot[i])
        i = (i + 1) & (h->vscap - 1);
    h->vslot[i] = x + 1;
    *out = h->vlast = x;
    return 0;
}

/*
 * Room for `need` samples in s's arrays, with vi (its samples so far at
 * version index 0) when `vi` or it has one. The three arrays are one
 * block (ts, then v, then vi; s->ts is the block): one allocation a
 * growth instead of three.
 */
static int series_grow(head_t *h, head_series_t *s, uint32_t need, int vi)
{
    vi = vi || s->vi;
    if (need <= s->cap && (!vi || s->vi))
        return 0;
    size_t per = 16 + (vi ? sizeof *s->vi : 0);
    uint32_t want = s->cap ? s->cap : HEAD_INIT_CAP;
    while (want < need)
        want *= 2;
    size_t bytes = block_bytes(want, per);
    if ((bytes / per) > UINT32_MAX)
        return ST_ELIMIT;
    uint32_t cap = (uint32_t)(bytes / per);
    uint8_t *b = block_get(h, bytes);
    if (!b)
        return ST_ENOMEM;
    int64_t *nts = (int64_t *)b;
    double *nv = (double *)(b + (size_t)cap * 8);
    uint32_t *nvi = vi ? (uint32_t *)(b + (size_t)cap * 16) : NULL;
    if (s->n) {
        memcpy(nts, s->ts, (size_t)s->n * sizeof *nts);
        memcpy(nv, s->v, (size_t)s->n * sizeof *nv);
        if (s->vi)
            memcpy(nvi, s->vi, (size_t)s->n * sizeof *nvi);
        else if (nvi)
            memset(nvi, 0, (size_t)s->n * sizeof *nvi);
    }
    size_t oper = 16 + (s->vi ? sizeof *s->vi : 0);
    h->bytes += (uint64_t)cap * per - (uint64_t)s->cap * oper;
    if (s->ts)
        block_put(h, s->ts, block_bytes(s->cap, oper));
    s->ts = nts;
    s->v = nv;
    s->vi = nvi;
    s->cap = cap;
    return 0;
}

int head_append(head_t *h, uint32_t id, const int64_t *ts, const double *v, size_t n,
                uint64_t version, uint64_t *ooo)
{
    if (n == 0)
        return 0;
    if (n > HEAD_SERIES_MAX)
        return ST_ELIMIT;
    head_series_t *s = head_slot(h, id);
    if (!s)
        return ST_ENOMEM;
    if (!s->live) {
        s->mint = INT64_MAX;
        s->maxt = INT64_MIN;
        s->live = 1;
    }
    if (s->n > HEAD_SERIES_MAX - n)
        return ST_ELIMIT; /* the doubling capacity stays within uint32 */
    uint32_t vx = 0;
    int rc = version ? head_vindex(h, version, &vx) : 0;
    if (!rc) /* the series' first version: its samples so far have 0 */
        rc = series_grow(h, s, s->n + (uint32_t)n, vx != 0);
    if (rc)
        return rc; /* nothing appended */
    int64_t prev = s->n ? s->ts[s->n - 1] : INT64_MIN;
    for (size_t i = 0; i < n; i++) {
        int64_t t = ts[i];
        if (t <= prev && (s->n + i > 0)) {
            s->unsorted = 1;
            (*ooo)++;
        }
        prev = t;
        if (t < s->mint)
            s->mint = t;
        if (t > s->maxt)
            s->maxt = t;
    }
    memcpy(s->ts + s->n, ts, n * sizeof *ts);
    memcpy(s->v + s->n, v, n * sizeof *v);
    if (s->vi)
        for (size_t i = 0; i < n; i++)
            s->vi[s->n + i] = vx;
    s->n += (uint32_t)n;
    h->samples += n;
    if (s->mint < h->mint)
        h->mint = s->mint;
    if (s->maxt > h->maxt)
        h->maxt = s->maxt;
    return 0;
}

void head_series_normalize(const head_t *h, head_series_t *s)
{
    if (!s->unsorted)
        return;
    s->n = (uint32_t)(s->vi ? samples_sort_dedup_vi(s->ts, s->v, s->vi, h->vt, s->n)
                            : samples_sort_dedup(s->ts, s->v, NULL, s->n));
    s->unsorted = 0;
}

/* The (ts, value, version) triples being sorted: the version as a value
 * (ver) or as an index into vt (vi), or neither (all 0). */
typedef struct triples {
    int64_t *ts;
    double *v;
    uint64_t *ver;
    uint32_t *vi;
    const uint64_t *vt;
} triples_t;

static inline void tr_copy(triples_t *d, size_t k, const triples_t *s, size_t j)
{
    d->ts[k] = s->ts[j];
    d->v[k] = s->v[j];
    if (d->ver)
        d->ver[k] = s->ver[j];
    if (d->vi)
        d->vi[k] = s->vi[j];
}

static inline uint64_t tr_version(const triples_t *a, size_t i)
{
    return a->ver ? a->ver[i] : a->vi ? a->vt[a->vi[i]] : 0;
}

/* The end of the ascending (non-decreasing) run of ts that starts at lo. */
static size_t run_end(const int64_t *ts, size_t lo, size_t n)
{
    size_t i = lo + 1;
    while (i < n && ts[i] >= ts[i - 1])
        i++;
    return i < n ? i : n;
}

/* Natural stable merge sort of a by ts, using scratch b (same shape): each
 * pass merges neighbouring ascending runs, so a series read from a few
 * sorted sources (segments, head) takes a pass or two, not log2(n). */
static void merge_sort(triples_t a, triples_t b, size_t n)
{
    triples_t orig = a;
    for (size_t runs = 2; runs > 1;) {
        runs = 0;
        for (size_t lo = 0; lo < n; runs++) {
            size_t mid = run_end(a.ts, lo, n);
            size_t hi = mid < n ? run_end(a.ts, mid, n) : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                if (a.ts[j] < a.ts[i])
                    tr_copy(&b, k++, &a, j++);
                else
                    tr_copy(&b, k++, &a, i++);
            }
            while (i < mid)
                tr_copy(&b, k++, &a, i++);
            while (j < hi)
                tr_copy(&b, k++, &a, j++);
            lo = hi;
        }
        triples_t t = a;
        a = b;
        b = t;
    }
    if (a.ts != orig.ts) {
        memcpy(orig.ts, a.ts, n * sizeof *a.ts);
        memcpy(orig.v, a.v, n * sizeof *a.v);
        if (orig.ver)
            memcpy(orig.ver, a.ver, n * sizeof *a.ver);
        if (orig.vi)
            memcpy(orig.vi, a.vi, n * sizeof *a.vi);
    }
}

/*
 * Stable insertion sort by ts of a[0, n) whose a[0, from) is sorted,
 * while it has moved at most `budget` samples (SIZE_MAX: no bound; the
 * sample that goes past it is still put in place). Returns 1 when sorted,
 * 0 when the budget ran out: then a prefix is sorted and the rest
 * untouched, so a stable sort of the whole is still stable.
 */
static int insertion_sort(triples_t a, size_t from, size_t n, size_t budget)
{
    for (size_t i = from ? from : 1; i < n; i++) {
        int64_t t = a.ts[i];
        double x = a.v[i];
        uint64_t ver = a.ver ? a.ver[i] : 0;
        uint32_t vi = a.vi ? a.vi[i] : 0;
        size_t j = i;
        while (j > 0 && a.ts[j - 1] > t) {
            tr_copy(&a, j, &a, j - 1);
            j--;
        }
        a.ts[j] = t;
        a.v[j] = x;
        if (a.ver)
            a.ver[j] = ver;
        if (a.vi)
            a.vi[j] = vi;
        if (budget != SIZE_MAX) {
            if (i - j > budget)
                return i + 1 == n; /* a[0, i] sorted, the rest untouched */
            budget -= i - j;
        }
    }
    return 1;
}

#define SORT_SCRATCH_MAX 65536 /* samples: 1.5 MiB of scratch kept per thread at most */

/* samples_sort_dedup's merge scratch, per thread: a flush sorts thousands
 * of series in a row; given back by the key's destructor when a thread
 * ends (downsampling threads, an embedder's threads) */
static __thread struct {
    void *p;
    size_t cap;
} scratch;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
    free(p);
    scratch.p = NULL;
    scratch.cap = 0;
}

static void scratch_key_make(void)
{
    (void)pthread_key_create(&scratch_key, scratch_free);
}

static void merge_or_insert(triples_t a, size_t n);

static size_t sort_dedup(triples_t a, size_t n)
{
    if (n < 2)
        return n;
    size_t first = 1; /* the first sample not after its predecessor */
    while (first < n && a.ts[first] > a.ts[first - 1])
        first++;
    if (first == n)
        return n;
    /* nearly sorted (a series written by a few connections at once: a
     * sample or a batch late here and there): insertion sort, while it
     * moves at most 2n samples; then (or for a disorder that costs more)
     * a merge sort (both stable); without memory for the merge, insertion
     * sort: slow but allocation-free */
    if (!insertion_sort(a, first, n, 2 * n))
        merge_or_insert(a, n);
    /* dedup: of each equal-timestamp run keep the highest version, the last
     * of those (stable sort: later writes come later) */
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        size_t best = i, j = i + 1;
        for (; j < n && a.ts[j] == a.ts[i]; j++)
            if ((!a.ver && !a.vi) || tr_version(&a, j) >= tr_version(&a, best))
                best = j;
        tr_copy(&a, w, &a, best);
        w++;
        i = j;
    }
    return w;
}

/* Stable sort of a[0, n) by ts: a merge sort in this thread's scratch (or
 * its own), an insertion sort without memory for it. */
static void merge_or_insert(triples_t a, size_t n)
{
    triples_t b = {NULL, NULL, NULL, NULL, a.vt};
    /* the merge scratch: this thread's (kept, up to SORT_SCRATCH_MAX
     * samples: a flush sorts thousands of series in a row), else its own */
    void *own = NULL;
    if (n > 32) {
        size_t need = n * (sizeof *b.ts + sizeof *b.v + (a.ver ? sizeof *b.ver : 0) +
                           (a.vi ? sizeof *b.vi : 0));
        if (n <= SORT_SCRATCH_MAX && scratch.cap < need) {
            pthread_once(&scratch_once, scratch_key_make);
            void *np = realloc(scratch.p, need);
            if (np) {
                scratch.p = np;
                scratch.cap = need;
                (void)pthread_setspecific(scratch_key, scratch.p); /* freed when the thread ends */
            }
        }
        void *mem = n <= SORT_SCRATCH_MAX && scratch.cap >= need ? scratch.p : (own = malloc(need));
        if (mem) {
            b.ts = mem;
            b.v = (double *)(b.ts + n);
            b.ver = a.ver ? (uint64_t *)(b.v + n) : NULL;
            b.vi = a.vi ? (uint32_t *)(b.ver ? (void *)(b.ver + n) : (void *)(b.v + n)) : NULL;
        }
    }
    if (b.ts)
        merge_sort(a, b, n);
    else
        insertion_sort(a, 1, n, SIZE_MAX);
    free(own);
}

size_t samples_sort_dedup(int64_t *ts, double *v, uint64_t *ver, size_t n)
{
    return sort_dedup((triples_t){ts, v, ver, NULL, NULL}, n);
}

size_t samples_sort_dedup_vi(int64_t *ts, double *v, uint32_t *vi, const uint64_t *vt, size_t n)
{
    return sort_dedup((triples_t){ts, v, NULL, vi, vt}, n);
}

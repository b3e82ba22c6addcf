/*
 * engine_head.h — the in-memory head of an engine (engine_head.c): per
 * series, arrays of timestamps, values and version indices, found by id
 * through a table of chunks of series structs. Internal to the engine:
 * callers hold the engine's head_mu (engine_internal.h).
 */
#ifndef ENGINE_HEAD_H
#define ENGINE_HEAD_H

#include <stddef.h>
#include <stdint.h>

/*
 * Versions of head samples (engine.h, VERSIONS), exact: the head keeps
 * each distinct version once (vt; vt[0] = 0) and a versioned series one
 * 4-byte index into it a sample (vi, parallel to ts and v); a series that
 * only ever had version 0 has no vi. A head sees one version per write,
 * so the table stays small, and a sample costs 4 bytes, not 8.
 */
typedef struct head_series {
    int64_t *ts;
    double *v;
    uint32_t *vi; /* per sample: its version's index in the head's vt; NULL: all 0 */
    uint32_t n, cap;
    int64_t mint, maxt;
    uint8_t unsorted; /* an append went backwards: sort + dedup before reading */
    uint8_t live;     /* in the head (its chunk holds HEAD_CHUNK slots) */
} __attribute__((aligned(64))) head_series_t; /* one cache line */

/* Series structs lie in chunks of this many consecutive ids: a series is
 * found by arithmetic on a small chunk table, not through a pointer of its
 * own (that load missed the cache once a series on the write path). */
#define HEAD_CHUNK 16u

/* Series arrays are blocks of 2^k bytes, 2^HEAD_BLOCK_MIN_LOG up to half
 * the largest slab, from buddy-allocated slabs (engine_head.c): a head's
 * first slab is 2^HEAD_SLAB_FIRST_LOG bytes, each next one twice the last
 * up to 2^HEAD_SLAB_LOG; larger blocks come from malloc. */
#define HEAD_BLOCK_MIN_LOG 8   /* 256 B */
#define HEAD_SLAB_FIRST_LOG 16 /* 64 KiB: a small head stays small */
#define HEAD_SLAB_LOG 20       /* 1 MiB */
#define HEAD_BLOCK_MAX_LOG (HEAD_SLAB_LOG - 1)
#define HEAD_BLOCK_CLASSES (HEAD_BLOCK_MAX_LOG - HEAD_BLOCK_MIN_LOG + 1)

typedef struct head {
    head_series_t **chunk; /* by id / HEAD_CHUNK; NULL: none of its ids (head_series_at) */
    uint32_t ns;           /* ids the chunk table covers (a multiple of HEAD_CHUNK) */
    uint64_t samples;
    uint64_t bytes;
    int64_t created_ms; /* wall clock of the first append */
    uint32_t wal_seq;   /* frozen: the WAL file begun when it froze (older files are its) */
    int keep_wal;       /* frozen without a WAL rotation (WAL failed): its flush removes none */
    int64_t mint, maxt;
    int64_t *pset; /* open-addressing set of the partition starts it spans */
    uint32_t npart, pcap;
    int64_t done_before; /* frozen: partitions starting before this are in segments */
    uint64_t *vt;        /* distinct versions of its samples, vt[0] = 0 (NULL: none yet) */
    uint32_t nvt, vtcap;
    uint32_t *vslot; /* open addressing over vt: index + 1, 0 = empty */
    uint32_t vscap;
    uint32_t vlast; /* index of the version looked up last (a write's series share one) */
    /* the series arrays' slabs (engine_head.c): free blocks per class,
     * in doubly linked lists through the blocks themselves */
    struct head_free *bfree[HEAD_BLOCK_CLASSES];
    struct head_slab {
        uint8_t *base;
        size_t size;
    } * slab; /* by address */
    uint32_t nslab, slabcap;
    uint64_t slab_bytes; /* their sizes' sum */
} head_t;

head_t *head_create(void);
void head_destroy(head_t *h);
/* The series `id` of h, NULL if h holds none. */
static inline head_series_t *head_series_at(const head_t *h, uint32_t id)
{
    head_series_t *c = id < h->ns ? h->chunk[id / HEAD_CHUNK] : NULL;
    return c && c[id % HEAD_CHUNK].live ? &c[id % HEAD_CHUNK] : NULL;
}
/* Prefetch what head_append(h, id, ...) touches, a few series ahead:
 * first the series' struct, then (the struct arrived) the ends of its
 * arrays. Hints only: nothing is read that may be missing. Always inlined:
 * GCC takes a function of nothing but prefetches for one without effects
 * and drops its calls before it would inline them. */
static inline __attribute__((always_inline)) void head_prefetch_series(const head_t *h, uint32_t id)
{
    head_series_t *c = id < h->ns ? h->chunk[id / HEAD_CHUNK] : NULL;
    if (c)
        __builtin_prefetch(&c[id % HEAD_CHUNK]);
}
static inline __attribute__((always_inline)) void head_prefetch_tail(const head_t *h, uint32_t id)
{
    const head_series_t *s = head_series_at(h, id);
    if (s && s->n && s->n < s->cap) {
        __builtin_prefetch(s->ts + s->n - 1); /* the newest, read to check the order */
        __builtin_prefetch(s->v + s->n);
        if (s->vi)
            __builtin_prefetch(s->vi + s->n);
    }
}
/* Append n samples of series `id`, all of version `version`; counts
 * out-of-order appends in *ooo. */
int head_append(head_t *h, uint32_t id, const int64_t *ts, const double *v, size_t n,
                uint64_t version, uint64_t *ooo);
/* Note that the head holds samples of the partition starting at `start`. */
int head_add_part(head_t *h, int64_t start);
/* Does head h hold samples of the partition starting at start? */
int head_has_part(const head_t *h, int64_t start);
/* Sort + dedup (highest version, then last write wins) a series of head h
 * in place if needed. */
void head_series_normalize(const head_t *h, head_series_t *s);
/* Does the series hold a sample with a version != 0? */
int head_series_versioned(const head_series_t *s);
/* The version of sample i of series s of head h. */
uint64_t head_version(const head_t *h, const head_series_t *s, uint32_t i);
/* The versions of samples [from, from + n) into out (0 where none). */
void head_series_versions(const head_t *h, const head_series_t *s, uint32_t from, uint32_t n,
                          uint64_t *out);

/* Stable sort by timestamp, then keep one sample of each run of equal
 * timestamps: the one with the highest version, the last of those on a tie.
 * ver (parallel to ts, may be NULL: all 0) is sorted along. */
size_t samples_sort_dedup(int64_t *ts, double *v, uint64_t *ver, size_t n);
/* samples_sort_dedup with each sample's version as an index into vt (vi
 * sorted along), as a head series keeps them. */
size_t samples_sort_dedup_vi(int64_t *ts, double *v, uint32_t *vi, const uint64_t *vt, size_t n);

#endif

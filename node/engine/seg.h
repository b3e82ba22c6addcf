/*
 * seg — immutable segment files: one per (time partition, flush).
 *
 * A segment holds, for many series, blocks of encoded samples (opaque bytes
 * produced by codec.h) plus a directory of entries sorted by (series id,
 * mint): id, mint, maxt, sample count, offset, length and the CRC-32C of
 * each block. Files are written to "<path>.tmp", fsynced, renamed into
 * place and the directory fsynced, so a reader never sees a half-written
 * segment. Readers mmap the file and verify the header, footer and
 * directory CRC at open and each block's CRC when it is fetched.
 * Format: docs/storage-format.md.
 */
#ifndef SEG_H
#define SEG_H

#include <stddef.h>
#include <stdint.h>

typedef struct seg seg_t;
typedef struct seg_writer seg_writer_t;

typedef struct seg_meta {
    int64_t part_start; /* partition [start, end) in ms */
    int64_t part_end;
    uint64_t seq;   /* flush sequence: a larger seq holds newer writes */
    uint64_t level; /* 0 = flushed from the head, >0 = compacted */
} seg_meta_t;

typedef struct seg_entry {
    uint32_t series_id;
    uint32_t count;
    int64_t mint;
    int64_t maxt;
    const uint8_t *block; /* points into the mapping (valid until seg_close) */
    uint32_t block_len;
    uint64_t vmax; /* highest version of the block's samples (0 in format 1 files) */
} seg_entry_t;

/* Start writing the segment that will be named `path`. */
int seg_writer_create(const char *path, const seg_meta_t *meta, seg_writer_t **out);
/* Add a block; calls must come in non-decreasing (series_id, mint) order. */
int seg_writer_add(seg_writer_t *w, uint32_t series_id, uint32_t count, int64_t mint, int64_t maxt,
                   const uint8_t *block, size_t len);
/* The same with the block's version (its samples' highest; engine.h VERSIONS). */
int seg_writer_add_v(seg_writer_t *w, uint32_t series_id, uint32_t count, int64_t mint,
                     int64_t maxt, uint64_t vmax, const uint8_t *block, size_t len);
/* Write the directory and footer, fsync, rename into place, fsync the dir. Frees w. */
int seg_writer_finish(seg_writer_t *w);
/*
 * The same without any sync or rename: the complete file stays at
 * "<path>.tmp" (frees w). For callers that write many segments and make
 * them durable together: sync the file system (syncfs), seg_commit each
 * path, sync again. A crash before seg_commit leaves only a .tmp file.
 */
int seg_writer_finish_deferred(seg_writer_t *w);
/* Rename "<path>.tmp" to `path` (no sync). */
int seg_commit(const char *path);
/* Discard the temporary file. Frees w. */
void seg_writer_abort(seg_writer_t *w);

/* Open and validate a segment (ST_ECORRUPT / ST_EVERSION on a bad file). */
int seg_open(const char *path, seg_t **out);
void seg_close(seg_t *s);
const seg_meta_t *seg_get_meta(const seg_t *s);
size_t seg_entry_count(const seg_t *s);
uint64_t seg_file_size(const seg_t *s);
/* Index of the first entry with this series id (and how many), or ST_ENOENT. */
int seg_find(const seg_t *s, uint32_t series_id, size_t *first, size_t *count);
/* The same, searching forward from *hint (an index; 0 at first) when the
 * entry there is not past series_id, else from the start; *hint becomes
 * where the search ended. For ids read in ascending order: each lookup
 * starts where the previous one ended. */
int seg_find_from(const seg_t *s, uint32_t series_id, size_t *hint, size_t *first, size_t *count);
/* Entry i with its block CRC checked (ST_ECORRUPT on mismatch). */
int seg_entry(const seg_t *s, size_t i, seg_entry_t *e);
/* Only the series id of entry i (from the directory, checked at open). */
int seg_entry_id(const seg_t *s, size_t i, uint32_t *id);

/*
 * A segment's summary: the time range its entries cover and the set of
 * series ids it holds, small enough to keep in memory for every segment
 * (at most SEG_SUMMARY_MAX_BYTES of id set, whatever the segment holds) so
 * a reader can skip a segment without opening it. The id set is exact (a
 * sorted list, or a bitmap over [id_min, id_max]) when that fits, else a
 * Bloom filter: seg_summary_may_hold never answers 0 for an id the segment
 * holds. Built by the writer (from the blocks it was given) or from an
 * open segment's directory; immutable once built, so many threads may read
 * one at once.
 */
typedef struct seg_summary seg_summary_t;
#define SEG_SUMMARY_MAX_BYTES 1024

/* The summary of what was added to w so far (call before finishing it). */
int seg_writer_summary(const seg_writer_t *w, seg_summary_t **out);
/* The summary of an open segment. */
int seg_summarize(const seg_t *s, seg_summary_t **out);
void seg_summary_free(seg_summary_t *m);
/* 0 when the segment surely holds no sample of `id` in [mint, maxt]. */
int seg_summary_may_hold(const seg_summary_t *m, uint32_t id, int64_t mint, int64_t maxt);
/* The time range every entry lies in. */
void seg_summary_range(const seg_summary_t *m, int64_t *mint, int64_t *maxt);
/* 0 when the segment surely holds no sample of an id in [id_lo, id_hi]
 * in [mint, maxt]. */
int seg_summary_may_overlap(const seg_summary_t *m, uint32_t id_lo, uint32_t id_hi, int64_t mint,
                            int64_t maxt);
/* Bytes the summary takes in memory. */
size_t seg_summary_bytes(const seg_summary_t *m);

#endif

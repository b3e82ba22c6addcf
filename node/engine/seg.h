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
} seg_entry_t;

/* Start writing the segment that will be named `path`. */
int seg_writer_create(const char *path, const seg_meta_t *meta, seg_writer_t **out);
/* Add a block; calls must come in non-decreasing (series_id, mint) order. */
int seg_writer_add(seg_writer_t *w, uint32_t series_id, uint32_t count, int64_t mint, int64_t maxt,
                   const uint8_t *block, size_t len);
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
/* Entry i with its block CRC checked (ST_ECORRUPT on mismatch). */
int seg_entry(const seg_t *s, size_t i, seg_entry_t *e);

#endif

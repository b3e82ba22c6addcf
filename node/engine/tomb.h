/*
 * tomb — tombstones: what a delete leaves behind in an engine, and their
 * byte format (WAL record and the <dir>/tombstones file).
 *
 * A tombstone is (matchers, [start, end] inclusive, seq). It masks the
 * samples of the series its matchers selected whose timestamp is in range
 * and that are held by a source older than the delete: a segment whose
 * seq_max < seq (every source flushed before the delete; the heads are
 * pruned in place when the delete happens). A sample written later lands
 * in a newer source and is kept: a delete is not a permanent block.
 *
 * This module is pure (no engine state): encoding, decoding with limits
 * (fuzzed: tests/fuzz/fuzz_tombstone.c) and masking a series' samples.
 *
 * Record (all integers LEB128 varints, s = zigzag):
 *   u8 version (1) | id | seq | s start | s end | s created_ms | nm
 *   nm x { u8 type (st_match_type_t) | name_len | name | value_len | value }
 * File: "STTOMB01" | u32le body_len | u32le crc32c(body) | body
 *   body: ntomb | ntomb x { rec_len | record } | ndead | ndead x delta(id)
 */
#ifndef TOMB_H
#define TOMB_H

#include <stddef.h>
#include <stdint.h>

#include "st_buf.h"
#include "st_matcher.h"

#define TOMB_MATCHERS_MAX 64         /* matchers of one tombstone */
#define TOMB_STR_MAX 65536           /* bytes of a matcher's name or value */
#define TOMB_FILE_MAX_TOMBS 1000000u /* tombstones in one file */
#define TOMB_FILE_MAGIC "STTOMB01"

typedef struct tomb {
    uint64_t id;        /* the delete's id (a repeated delivery is ignored); 0: none */
    uint64_t seq;       /* masks segments with seq_max < seq */
    int64_t start, end; /* inclusive, ms */
    int64_t created_ms;
    size_t nm;
    st_matcher_t *m; /* strings owned (NUL-terminated) */
    /* runtime only, not encoded */
    uint32_t *ids; /* series the matchers selected, ascending */
    size_t nids;
    int done; /* no segment older than seq overlaps the range any more */
} tomb_t;

/* Copy matchers and strings into a new tombstone (ids empty). */
int tomb_new(const st_matcher_t *m, size_t nm, int64_t start, int64_t end, uint64_t id,
             uint64_t seq, int64_t created_ms, tomb_t **out);
void tomb_free(tomb_t *t);

/* Append one record. Returns 0 or ST_ENOMEM. */
int tomb_encode(st_buf_t *b, const tomb_t *t);
/* Decode one record of exactly len bytes into a new tombstone. Returns 0,
 * ST_ECORRUPT (malformed, over a limit) or ST_ENOMEM. */
int tomb_decode(const uint8_t *p, size_t len, tomb_t **out);

/* The whole file. */
int tomb_file_encode(st_buf_t *b, tomb_t *const *t, size_t n, const uint32_t *dead, size_t ndead);
/* Decode a file image; on success the caller owns *t (tomb_free each, then
 * free the array) and *dead (free). Returns 0, ST_ECORRUPT or ST_ENOMEM. */
int tomb_file_decode(const uint8_t *p, size_t len, tomb_t ***t, size_t *n, uint32_t **dead,
                     size_t *ndead);

/* Does t select series `id` (binary search in t->ids)? */
int tomb_has_id(const tomb_t *t, uint32_t id);
/*
 * Remove from ts/v[0..n) (sorted or not) the samples of series `id` that a
 * tombstone of t[0..nt) masks in a source of sequence `src_seq` (only those
 * with seq > src_seq apply). Returns the count kept (in place, order kept).
 */
size_t tomb_mask(tomb_t *const *t, size_t nt, uint32_t id, uint64_t src_seq, int64_t *ts, double *v,
                 size_t n);

#endif

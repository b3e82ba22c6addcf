/*
 * tomb — tombstones: what a delete leaves behind in an engine, and their
 * byte format (WAL record and the <dir>/tombstones file).
 *
 * A tombstone is (matchers, [start, end] inclusive, seq, version). It masks
 * the samples of the series its matchers selected whose timestamp is in
 * range and that are held by a source older than the delete: a segment
 * whose seq_max < seq (every source flushed before the delete; the heads
 * are pruned in place when the delete happens).
 *
 * version 0 (unversioned: engine_delete, and every tombstone written before
 * versions existed): a sample written later lands in a newer source and is
 * kept, whatever it is: a delete hides what its replica stored before it.
 * version V > 0 (engine_delete_v: the coordinator's hybrid logical clock,
 * as for writes): the delete hides the samples whose version is lower than
 * V and never one with a higher version, whatever the arrival order. The
 * engine keeps that rule at three places (engine_tomb.c): the heads are
 * pruned of versions < V only; a later versioned write is filtered against
 * the tombstones with a higher version as it enters the head (tomb_match on
 * its labels: exact, also for series created after the delete); and the
 * older segments are masked as above (exact for blocks with vmax < V; the
 * one imprecision is in engine.h, VERSIONS).
 *
 * This module is pure (no engine state): encoding, decoding with limits
 * (fuzzed: tests/fuzz/fuzz_tombstone.c), masking a series' samples and
 * matching a label set.
 *
 * Record (all integers LEB128 varints, s = zigzag):
 *   u8 format (1) | id | seq | s start | s end | s created_ms | nm
 *   nm x { u8 type (st_match_type_t) | name_len | name | value_len | value }
 * format 2 (a versioned tombstone; version 0 is always written as format 1,
 * so records written before versions existed and new unversioned ones are
 * the same bytes): u8 2 | id | seq | version (> 0) | then as format 1 from
 * s start on.
 * File: "STTOMB01" | u32le body_len | u32le crc32c(body) | body
 *   body: ntomb | ntomb x { rec_len | record } | ndead | ndead x delta(id)
 */
#ifndef TOMB_H
#define TOMB_H

#include <stddef.h>
#include <stdint.h>

#include "st_buf.h"
#include "st_labels.h"
#include "st_matcher.h"

#define TOMB_MATCHERS_MAX 64         /* matchers of one tombstone */
#define TOMB_STR_MAX 65536           /* bytes of a matcher's name or value */
#define TOMB_FILE_MAX_TOMBS 1000000u /* tombstones in one file */
#define TOMB_FILE_MAGIC "STTOMB01"

typedef struct tomb_re tomb_re_t;

typedef struct tomb {
    uint64_t id;        /* the delete's id (a repeated delivery is ignored); 0: none */
    uint64_t seq;       /* masks segments with seq_max < seq */
    uint64_t version;   /* 0: unversioned; else hides versions < it (see above) */
    int64_t start, end; /* inclusive, ms */
    int64_t created_ms;
    size_t nm;
    st_matcher_t *m; /* strings owned (NUL-terminated) */
    /* runtime only, not encoded */
    uint32_t *ids; /* series the matchers selected, ascending */
    size_t nids;
    int done;      /* no segment older than seq overlaps the range any more */
    tomb_re_t *re; /* tomb_match: the compiled regexes (made on first use) */
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
/*
 * Does t's selection hold the series with these sorted labels? Prometheus'
 * rules (a missing label reads as ""; regexes fully anchored, UTF-8,
 * dot-all, with the label index's match limits). Returns 1, 0, or ST_ENOMEM.
 * Compiles t's regexes on first use: not thread-safe per tombstone (the
 * engine calls it under tomb_mu). A regex that runs into its match limit
 * counts as a match (a deleted sample is never brought back).
 */
int tomb_match(tomb_t *t, const st_label_t *l, size_t nl);

#endif

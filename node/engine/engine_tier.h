/*
 * engine_tier — downsampling tiers: old data kept as fixed-width buckets.
 *
 * A tier (AGE:RES) holds, for every series, one bucket per RES of time for
 * data older than AGE. A bucket ending at E covers the samples with
 * timestamps in (E - RES, E] (left-open, like a PromQL range window, so a
 * window (t - range, t] with t and range multiples of RES is exactly a run
 * of whole buckets). It keeps what the rollup functions need to answer
 * exactly on whole buckets: count, sum, min, max, the first and last sample
 * (value and timestamp) and the counter-reset correction (the sum of the
 * values before each decrease, what rate/increase add back).
 *
 * Storage: tier k of a shard is an ordinary engine (engine.h) in
 * <shard dir>/tier-<RES ms>/, so it inherits the WAL, segments, compression
 * and crash safety. A source series {L} becomes the series {L, __tier__="b"}
 * with 9 samples per bucket at S+1 .. S+9 (S = E - RES, the bucket's start):
 * count, sum, min, max, first, E - first_ts, last, E - last_ts, reset
 * correction. A bucket therefore never straddles a partition, and the block
 * codec stores a series' buckets as columns (codec.c, columnar blocks): one
 * timestamp stream for the bucket starts, a value stream per field, a field
 * equal to another (min = first on a counter, all of them when a bucket
 * holds one sample) as a reference. Layout 1, written before, put the 9
 * samples at E-8 .. E; tier_decode reads both. <tier dir>/WATERMARK
 * (one decimal line, written atomically) is W: every bucket ending at or
 * before W has been moved into this tier from the finer one (or from raw
 * data for the first tier); queries read tier k for bucket ends in
 * (W[k+1], W[k]] and raw data after W[0].
 *
 * The pass (engine_tiers_run, also run by a background thread) moves one
 * partition-long chunk (W, W + partition] at a time once W + partition is
 * older than the tier's age: reads the source, aggregates, writes and
 * flushes the tier, then persists W and only then drops the source
 * partitions that end at or before W. A crash in between redoes the chunk
 * (the rewrite is idempotent: the same buckets, last write wins). A chunk
 * waits while its source partitions are still being written (see
 * engine_tiers_open); samples written after their chunk was moved
 * (backfill past the watermark) are dropped by the next pass, like data
 * past retention.
 *
 * Thread safety: every function may be called from any thread; a pass and
 * queries run concurrently (a rwlock keeps a query from seeing a watermark
 * move while it reads).
 */
#ifndef ENGINE_TIER_H
#define ENGINE_TIER_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"

#define TIER_LABEL "__tier__"
#define TIER_SERIES_VALUE "b"
#define TIER_MAX 8
#define TIER_FIELDS 9 /* samples per bucket in a tier series */

typedef struct tier_bucket {
    int64_t end; /* covers (end - res, end] */
    int64_t first_ts, last_ts;
    double count, sum, min, max, first, last;
    double rsum; /* sum of the values before each decrease (-0.0: none) */
} tier_bucket_t;

/* ---- bucket math (pure) ---- */

/* End of the bucket of width res holding ts: the multiple of res >= ts. */
int64_t tier_bucket_end(int64_t ts, int64_t res);
/* Aggregate n samples (ascending timestamps) into buckets of width res;
 * out has room for n; returns the number of buckets. */
size_t tier_aggregate(const int64_t *ts, const double *v, size_t n, int64_t res,
                      tier_bucket_t *out);
/* Fold bucket b (later in time) into a. */
void tier_merge(tier_bucket_t *a, const tier_bucket_t *b);
/* Re-aggregate n ascending buckets into width res (a multiple of theirs),
 * in place; returns the new count. */
size_t tier_rebucket(tier_bucket_t *b, size_t n, int64_t res);
/* Timestamp of field 0..8 of the bucket ending at end (width res). */
int64_t tier_field_ts(int64_t end, int64_t res, int field);
/* The 9 samples of each bucket of width res >= 9 ms (ts out[9 * i ...]). */
void tier_encode(const tier_bucket_t *b, size_t n, int64_t res, int64_t *ts, double *v);
/*
 * Rebuild buckets of width res from tier samples (ascending): groups whose
 * end is outside [lo, hi] are skipped (a range cut through them); a group
 * inside that is incomplete or inconsistent is ST_ECORRUPT. out has room
 * for n / 9 + 1 buckets; *nout gets the count.
 */
int tier_decode(const int64_t *ts, const double *v, size_t n, int64_t res, int64_t lo, int64_t hi,
                tier_bucket_t *out, size_t *nout);

/* ---- the tiers of one engine ---- */

typedef struct engine_tier_spec {
    int64_t age_ms, res_ms;
} engine_tier_spec_t;

typedef struct engine_tiers engine_tiers_t;

/*
 * Open the tiers of `raw` (which stays the caller's) under dir/tier-<res>/
 * with the options of base (its budget and log shared; partition_ms and
 * retention_ms taken as they are). spec: n <= TIER_MAX tiers, finest first,
 * as topo validates them. interval_ms > 0 starts a background thread that
 * runs a pass that often, and a chunk then moves only once the source
 * partitions it reads had no segment written for two intervals (a load or
 * backfill in progress is waited for); 0: only engine_tiers_run, which
 * moves whatever is due.
 */
int engine_tiers_open(engine_t *raw, const char *dir, const engine_tier_spec_t *spec, size_t n,
                      const engine_opts_t *base, int64_t interval_ms, engine_tiers_t **out);
void engine_tiers_close(engine_tiers_t *t);

/* One pass at wall-clock time now_ms; at most max_chunks chunks per tier.
 * Returns the number of chunks moved, or a negative ST_E* code
 * (engine_last_error() says why). */
int engine_tiers_run(engine_tiers_t *t, int64_t now_ms, unsigned max_chunks);

/*
 * Buckets of width res for the series matching m, bucket ends in
 * [mint, maxt]: tiers whose width divides res are re-aggregated, coarser
 * ones are passed as they are (*used_res gets the coarsest width actually
 * read, res if none was coarser), raw data after the first watermark is
 * aggregated on the fly. res 0: raw samples as they are (one bucket each,
 * ending at its timestamp) and tier buckets as they are. cb gets each
 * series once (labels sorted, buckets ascending); a non-zero return stops
 * and is returned. *read (added to) counts raw samples and tier buckets
 * read.
 */
typedef int (*engine_tier_cb)(void *arg, const st_label_t *labels, size_t nlabels,
                              const tier_bucket_t *b, size_t n);
int engine_tiers_select(engine_tiers_t *t, const st_matcher_t *m, size_t nm, int64_t mint,
                        int64_t maxt, int64_t res, engine_tier_cb cb, void *arg, int64_t *used_res,
                        uint64_t *read);

/*
 * Samples of the series matching m in [mint, maxt] for a raw read (export,
 * a PromQL selector): raw samples after the first watermark, each bucket's
 * last sample (its own timestamp and value) before it. cb as
 * engine_tiers_select's, one series at a time, sorted by labels.
 */
typedef int (*engine_tier_samples_cb)(void *arg, const st_label_t *labels, size_t nlabels,
                                      const int64_t *ts, const double *v, size_t n);
int engine_tiers_select_samples(engine_tiers_t *t, const st_matcher_t *m, size_t nm, int64_t mint,
                                int64_t maxt, engine_tier_samples_cb cb, void *arg, uint64_t *read);

/* Raw data is only in the engine after this (INT64_MIN: no tier has data). */
int64_t engine_tiers_raw_after(engine_tiers_t *t);

typedef struct engine_tier_stats {
    int64_t res_ms;
    int64_t watermark_ms;     /* INT64_MIN: nothing moved yet */
    uint64_t buckets_written; /* since open */
    uint64_t chunks;          /* chunks moved since open */
    uint64_t disk_bytes;      /* the tier engine's */
    uint64_t series;
} engine_tier_stats_t;
/* Stats of tier i < returned count. */
size_t engine_tiers_stats(engine_tiers_t *t, engine_tier_stats_t *out, size_t cap);
/* Failed passes since open. */
uint64_t engine_tiers_errors(engine_tiers_t *t);

#endif

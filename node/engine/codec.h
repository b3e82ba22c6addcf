/*
 * codec — lossless compression of one series' block of samples.
 *
 * A block holds n >= 1 samples with strictly increasing int64 timestamps
 * (ms) and float64 values. Values come back bit-exact: NaN payloads, -0.0,
 * infinities and denormals included. The encoder picks, per block, the
 * smallest of several value codings (constant, decimal-integer with
 * entropy-coded deltas, Gorilla XOR) and of several timestamp codings
 * (constant step, entropy-coded delta-of-delta). Samples in groups of
 * consecutive milliseconds (a downsampling tier's buckets, one sample per
 * field) may instead be stored as a columnar block: one timestamp stream
 * for the groups, one value stream per column, a column equal to or close
 * to an earlier one coded against it. Format: codec.c (BLOCK LAYOUT,
 * COLUMNAR BLOCKS) and docs/storage-format.md.
 */
#ifndef CODEC_H
#define CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "st_buf.h"

/* A decoder refuses blocks that claim more samples than this. */
#define CODEC_MAX_SAMPLES (1u << 20)

/*
 * Append the encoding of n samples to `out`. Timestamps must be strictly
 * increasing (ST_EINVAL otherwise); 1 <= n <= CODEC_MAX_SAMPLES.
 */
int codec_encode(const int64_t *ts, const double *v, size_t n, st_buf_t *out);

/* Read only the header: sample count, first and last timestamp. */
int codec_peek(const uint8_t *p, size_t len, size_t *n, int64_t *mint, int64_t *maxt);

/*
 * Decode a block into ts[]/v[] (capacity `cap`); *n receives the count.
 * Returns 0, ST_ELIMIT if cap is too small, ST_ECORRUPT on any malformed
 * input (never reads outside [p, p+len)).
 */
int codec_decode(const uint8_t *p, size_t len, int64_t *ts, double *v, size_t cap, size_t *n);

/*
 * Decode only a block's timestamps into ts[] (capacity `cap`): the value
 * section is skipped, not checked. Returns as codec_decode.
 */
int codec_decode_ts(const uint8_t *p, size_t len, int64_t *ts, size_t cap, size_t *n);

#endif

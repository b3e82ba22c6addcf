/*
 * promrw — Prometheus remote write 1.0 bodies decoded into series and
 * samples, free of sockets so it can be unit-tested and fuzzed.
 *
 * A body is a prompb WriteRequest (proto/prompb.proto) compressed with
 * snappy's block format. promrw_uncompress() reads snappy's length preamble
 * first and refuses a body that would inflate past the decoder's limit
 * before allocating anything; promrw_decode() then walks the message with
 * the generic field iterator of wire.h, zero-copy: label slices point into
 * the inflated buffer, samples are unpacked into the decoder's scratch
 * arrays, and each series goes to the caller's callback with its labels
 * sorted, validated (st_labels_validate: UTF-8, lengths, at most 64, unique
 * names) and a non-empty __name__. A series that breaks those rules goes to
 * the `bad` callback with its position and a reason instead; the rest of
 * the request is still delivered. Exemplars, metadata and native histograms
 * are skipped and counted. Labels with an empty value are dropped (in
 * Prometheus an empty value is the same as no label).
 *
 * One decoder per thread: it keeps its buffers between requests.
 */
#ifndef PROMRW_H
#define PROMRW_H

#include <stddef.h>
#include <stdint.h>

#include "st_labels.h"

#define PROMRW_REASON_MAX 200 /* bytes of a bad series' reason, NUL included */

typedef struct promrw promrw_t;

/* What a request carried (including what was skipped). */
typedef struct promrw_stats {
    uint64_t series;     /* TimeSeries messages */
    uint64_t samples;    /* samples of delivered series */
    uint64_t bad_series; /* series given to the bad callback */
    uint64_t exemplars, metadata, histograms;
} promrw_stats_t;

/* One valid series: labels sorted, pointing into the decoded buffer. The
 * arrays are valid during the callback only. */
typedef struct promrw_series {
    size_t index; /* 0-based position in the WriteRequest */
    const st_label_t *labels;
    uint32_t nlabels;
    const int64_t *ts; /* milliseconds */
    const double *v;   /* bit-exact (stale markers included) */
    size_t n;
} promrw_series_t;

/* A valid series: 0, or an ST_* code that stops decoding and is returned. */
typedef int (*promrw_series_fn)(void *arg, const promrw_series_t *s);
/* A series refused (reason: "series 3 {__name__=\"up\", ...}: label value is not valid UTF-8"). */
typedef void (*promrw_bad_fn)(void *arg, size_t index, const char *reason);

/* max_decoded: the largest inflated body accepted. Returns 0 or ST_ENOMEM. */
int promrw_create(size_t max_decoded, promrw_t **out);
void promrw_destroy(promrw_t *d);

/*
 * Inflate a snappy block into the decoder's buffer (*out valid until the
 * next call). Returns 0, ST_ECORRUPT (not a snappy block), ST_ELIMIT (its
 * inflated length is over max_decoded: nothing allocated), ST_ENOMEM.
 */
int promrw_uncompress(promrw_t *d, const uint8_t *body, size_t len, const uint8_t **out,
                      size_t *outlen);

/*
 * Decode a WriteRequest. Returns 0, ST_ECORRUPT (malformed protobuf: stats
 * tell how far it got), ST_ENOMEM, or the callback's error.
 */
int promrw_decode(promrw_t *d, const uint8_t *msg, size_t len, promrw_series_fn fn,
                  promrw_bad_fn bad, void *arg, promrw_stats_t *st);

#endif

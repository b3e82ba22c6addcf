/*
 * rread — the client side of Prometheus remote read (sampled responses),
 * for `strata migrate --kind prometheus`: a ReadRequest encoder and a
 * ReadResponse decoder, hand-written (the few prompb messages below), plus
 * the snappy block format both bodies travel in. Pure (no I/O), so the unit
 * tests and the fuzz target drive them directly.
 *
 *   ReadRequest  { repeated Query queries = 1; }
 *   Query        { int64 start_timestamp_ms = 1; int64 end_timestamp_ms = 2;
 *                  repeated LabelMatcher matchers = 3; }
 *   LabelMatcher { Type type = 1 (EQ, NEQ, RE, NRE: st_match_type_t's values);
 *                  string name = 2; string value = 3; }
 *   ReadResponse { repeated QueryResult results = 1; }
 *   QueryResult  { repeated TimeSeries timeseries = 1; }
 *   TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
 *   Label        { string name = 1; string value = 2; }
 *   Sample       { double value = 1; int64 timestamp = 2; }
 *
 * Unknown fields are skipped (any wire type but groups), so newer servers'
 * additions (hints, chunks, histograms) do not break the decoder.
 */
#ifndef RREAD_H
#define RREAD_H

#include <stddef.h>
#include <stdint.h>

#include "st_buf.h"
#include "st_matcher.h"

/* Limits of one decoded series (the decoder's memory stays bounded). */
#define RREAD_MAX_LABELS 1024
#define RREAD_MAX_SAMPLES (1u << 26)
/* Largest uncompressed response accepted. */
#define RREAD_MAX_BODY ((size_t)1 << 30)

typedef struct rread_label {
    const char *name, *value; /* into the decoded buffer, not NUL-terminated */
    size_t name_len, value_len;
} rread_label_t;

typedef struct rread_sample {
    int64_t t_ms;
    double v;
} rread_sample_t;

typedef struct rread_series {
    const rread_label_t *labels;
    size_t nlabels;
    const rread_sample_t *samples;
    size_t nsamples;
} rread_series_t;

/* Called once per TimeSeries; return 0 to go on, a negative ST_E* to stop. */
typedef int (*rread_series_fn)(void *ud, const rread_series_t *s);

/* Append one ReadRequest with one Query (protobuf, not compressed). Returns 0 or ST_ENOMEM. */
int rread_encode_request(st_buf_t *out, int64_t start_ms, int64_t end_ms, const st_matcher_t *m,
                         size_t n);

/*
 * Decode a ReadResponse (protobuf, uncompressed) and call fn for every
 * series of every result. Returns 0, ST_EPARSE (malformed; err says where),
 * ST_ELIMIT (a series over the limits above), ST_ENOMEM, or what fn returned.
 */
int rread_decode_response(const uint8_t *p, size_t n, rread_series_fn fn, void *ud, char *err,
                          size_t errlen);

/* Replace out with the snappy block compression of [p, p+n). 0 or ST_ENOMEM. */
int rread_snappy_compress(st_buf_t *out, const void *p, size_t n);
/* Replace out with the snappy block [p, p+n) uncompressed (at most max bytes): 0, ST_EPARSE,
 * ST_ELIMIT, ST_ENOMEM. */
int rread_snappy_uncompress(st_buf_t *out, const void *p, size_t n, size_t max);

#endif

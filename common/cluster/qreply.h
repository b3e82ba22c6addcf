/*
 * qreply — the QueryResponse of a pushed-down query part (QUERY RPC, see
 * docs/query.md): encoded by the node from an evaluation result, decoded
 * by the router straight into the evaluator. Free of sockets.
 *
 * A reply holds one StepSeries per series (labels; a bitmap of the grid
 * steps that have a value, left out when all have one; the values, packed
 * little-endian doubles), then the raw samples read, the values sent and
 * the series selected (field names: wire_fields.h, WIRE_QUERY_RESPONSE_*).
 */
#ifndef QREPLY_H
#define QREPLY_H

#include <stddef.h>
#include <stdint.h>

#include "promql_eval.h"
#include "st_buf.h"

/*
 * Append the series of res (a range or instant evaluation on the grid
 * start + i * step, i < steps) to out as QueryResponse fields. *points gets
 * the number of values. Returns 0; ST_EINVAL when a point is off the grid;
 * ST_ELIMIT when out grows past max_bytes (message in msg); ST_ENOMEM.
 */
int qreply_encode(const promql_result_t *res, int64_t start, int64_t step, uint32_t steps,
                  size_t max_bytes, st_buf_t *out, uint64_t *points, char *msg, size_t msglen);

/* The counters at the end of a reply (0 when absent or malformed). */
typedef struct qreply_counts {
    uint64_t samples;       /* raw samples the node read */
    uint64_t points;        /* values in the reply */
    uint64_t series;        /* series the node selected */
    uint64_t resolution_ms; /* every selection read buckets this wide (0: raw samples) */
    int avg;                /* a pushed avg's reply: sums, then counts (field 6 present) */
    uint64_t avg_sums;      /* avg: series [0, avg_sums) are the per-group sums */
} qreply_counts_t;
void qreply_counts(const uint8_t *p, size_t len, qreply_counts_t *out);
/* Append the counters (fields 2, 3, 4; 5 when non-zero; 6 when avg). 0 or ST_ENOMEM. */
int qreply_put_counts(st_buf_t *out, const qreply_counts_t *c);

/*
 * Feed every series of a reply for a grid of nsteps steps into sink.
 * Returns 0, ST_ECORRUPT (malformed: bad framing, a bitmap of the wrong
 * size, more values than steps or than bits set), ST_ELIMIT (over 64
 * labels), ST_ENOMEM, or the sink's error.
 */
int qreply_decode(const uint8_t *p, size_t len, size_t nsteps, promql_vsink_t *sink);

/*
 * A pushed avg's reply (its sums, then the same groups' counts: one
 * evaluation on the node serves both parts): feed part 0 (the sums) or
 * part 1 (the counts) into sink. As qreply_decode; ST_ECORRUPT also when
 * the reply is not an avg's (no avg_sums field, or not twice as many
 * series).
 */
int qreply_decode_avg(const uint8_t *p, size_t len, size_t nsteps, int part, promql_vsink_t *sink);

#endif

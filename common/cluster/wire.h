/*
 * wire — hand-rolled protobuf encoding of the hot RPC payloads.
 *
 * The write path moves millions of samples per second; protobuf-c would
 * allocate a struct per label and per series on decode. These helpers speak
 * the same wire format as proto/strata.proto (so protobuf-c and any other
 * implementation can read what they write, and tests check that), but
 * encode straight into an st_buf_t and decode zero-copy: label slices point
 * into the received frame.
 *
 *   message Label         { bytes name = 1; bytes value = 2; }
 *   message SeriesSamples { repeated Label labels = 1;
 *                           repeated sint64 timestamps = 2 [packed];  // t0, t1-t0, ...
 *                           repeated double values = 3 [packed];
 *                           repeated uint64 versions = 4 [packed];  // repair pages
 *                           bytes ref = 5; }                        // forwards (repl.h)
 *   message WriteRequest  { uint32 shard = 1; repeated SeriesSamples series = 2; }
 *   message StepSeries    { repeated Label labels = 1; bytes present = 2;
 *                           repeated double values = 3 [packed]; }
 *
 * (NodeWrite, the envelope around WriteRequests, is repl.c's; QueryResponse
 * is qreply.c's.) Field numbers are named in wire_fields.h, included here.
 *
 * Timestamps are delta-coded (first absolute, then differences): regular
 * scrapes cost 2-3 bytes per timestamp instead of 6. Nested message lengths
 * are written as 5-byte varints and patched afterwards, which protobuf
 * parsers accept (a varint may carry redundant continuation bytes), so
 * encoding is one pass with no copies.
 */
#ifndef WIRE_H
#define WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "st_buf.h"
#include "st_labels.h"
#include "wire_fields.h"

enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };

#define WIRE_REF_LEN 16 /* SeriesSamples.ref: a series reference (repl.h) */

/* A field read by wire_next(): varint/i64/i32 in `u`, LEN in (data, len). */
typedef struct wire_field {
    uint32_t num;
    uint32_t type;
    uint64_t u;
    const uint8_t *data;
    size_t len;
} wire_field_t;
_Static_assert(offsetof(wire_field_t, type) == offsetof(wire_field_t, num) + 4,
               "wire_next stores num and type together");

/*
 * Read the next field of a message at *p (advanced past it). Returns 1 with
 * a field, 0 at the end, ST_ECORRUPT on malformed input. Groups are rejected.
 */
int wire_next_any(const uint8_t **p, const uint8_t *end, wire_field_t *f);
static inline int wire_next(const uint8_t **pp, const uint8_t *end, wire_field_t *f)
{
    /* inline fast path, most fields of a write: a one-byte key of a LEN
     * field and a one-byte length (wire_next_any reads them the same way) */
    const uint8_t *p = *pp;
    if (end - p >= 2 && (p[0] & 0x87) == WIRE_LEN && p[0] >= 8 && p[1] < 0x80 &&
        p[1] <= end - p - 2) {
        /* num and type in one 8-byte store: callers test both, and the
         * compiler reads them as one 8-byte load, which two 4-byte stores
         * could not forward (a stall of a dozen cycles a field) */
        uint64_t nt = (uint64_t)(p[0] >> 3) | (uint64_t)WIRE_LEN << 32;
        memcpy(&f->num, &nt, sizeof nt);
        f->u = 0;
        f->data = p + 2;
        f->len = p[1];
        *pp = p + 2 + p[1];
        return 1;
    }
    return wire_next_any(pp, end, f);
}

/* Open a nested LEN field; returns its start offset for wire_end(). */
int wire_begin(st_buf_t *b, uint32_t field, size_t *mark);
/* Patch the length of the nested field opened at `mark`. */
void wire_end(st_buf_t *b, size_t mark);
int wire_put_varint_field(st_buf_t *b, uint32_t field, uint64_t v);
int wire_put_bytes_field(st_buf_t *b, uint32_t field, const void *p, size_t n);
int wire_put_fixed64_field(st_buf_t *b, uint32_t field, uint64_t v);
/* Append labels as the repeated Label field 1 of the message being written
 * (SeriesSamples, StepSeries, TagSetStats). */
int wire_put_labels(st_buf_t *b, const st_label_t *l, size_t nl);

/* Append one SeriesSamples as field `field` of the enclosing message. */
int wire_put_series(st_buf_t *b, uint32_t field, const st_label_t *l, size_t nl, const int64_t *ts,
                    const double *v, size_t n);
/* The same with per-sample versions (field versions; vers NULL: none). */
int wire_put_series_v(st_buf_t *b, uint32_t field, const st_label_t *l, size_t nl,
                      const int64_t *ts, const double *v, const uint64_t *vers, size_t n);

/* A run of bytes already in wire format. */
typedef struct wire_bytes {
    const uint8_t *p;
    size_t len;
} wire_bytes_t;
/* Append one SeriesSamples whose labels are already encoded (Label fields
 * as wire_put_labels() writes them, in runs concatenated in order): the
 * write path encodes the tags of a point once for all its fields. */
int wire_put_series_enc(st_buf_t *b, uint32_t field, const wire_bytes_t *lab, size_t nlab,
                        const int64_t *ts, const double *v, size_t n);

/* The same with field ref (NULL: none; its labels may be none: nlab 0,
 * the series named by its reference alone). */
int wire_put_series_enc_ref(st_buf_t *b, uint32_t field, const wire_bytes_t *lab, size_t nlab,
                            const uint8_t ref[WIRE_REF_LEN], const int64_t *ts, const double *v,
                            size_t n);

/* Append one StepSeries (labels, present bitmap, values) as field `field`.
 * It decodes with wire_series_decode: ts/ts_len are then the bitmap. */
int wire_put_step_series(st_buf_t *b, uint32_t field, const st_label_t *l, size_t nl,
                         const uint8_t *present, size_t present_len, const double *v, size_t n);

/* A decoded SeriesSamples: labels point into the message. */
typedef struct wire_series {
    st_label_t labels[ST_LABELS_MAX];
    size_t nlabels;
    const uint8_t *ts; /* packed zigzag deltas */
    size_t ts_len;
    const uint8_t *vals; /* packed little-endian doubles */
    size_t nvals;
    const uint8_t *vers; /* packed varint versions, NULL when absent */
    size_t vers_len;
    /* wire_series_scan: the bytes of the label fields (their keys and
     * lengths included) when they are contiguous, else NULL */
    const uint8_t *lab;
    size_t lab_len;
    int lab_split;      /* wire_series_scan: labels that do not lie together (lab NULL) */
    const uint8_t *ref; /* the 16 bytes of field `ref` (WIRE_REF_LEN), NULL when absent */
} wire_series_t;

/* Decode a Label message (name 1, value 2: also Prometheus' prompb.Label)
 * zero-copy; a missing field is "". Returns 0 or ST_ECORRUPT. */
int wire_label_decode(const uint8_t *p, size_t len, st_label_t *l);

/* Decode a SeriesSamples message (ST_ECORRUPT, ST_ELIMIT for > 64 labels). */
int wire_series_decode(const uint8_t *p, size_t len, wire_series_t *s);
/*
 * wire_series_decode without decoding the labels (nlabels stays 0): their
 * fields are only skipped, and [lab, lab + lab_len) is where they lie when
 * nothing else comes between them (lab NULL otherwise, or when there are
 * none: lab_split tells the two apart; then call wire_series_decode). The
 * same bytes always hold the same
 * labels, so a writer can name a series by them (engine_keys_resolve).
 */
int wire_series_scan(const uint8_t *p, size_t len, wire_series_t *s);
/* Decode the label fields [p, p + len) of wire_series_scan into out[0, *n)
 * (ST_ECORRUPT, ST_ELIMIT for more than cap). */
int wire_labels_decode(const uint8_t *p, size_t len, st_label_t *out, size_t cap, size_t *n);
/*
 * Unpack its samples into ts[]/v[] (capacity cap). ST_ECORRUPT when the
 * timestamp and value counts differ, ST_ELIMIT when cap is too small.
 */
int wire_series_samples(const wire_series_t *s, int64_t *ts, double *v, size_t cap, size_t *n);
/* Unpack its n versions (n from wire_series_samples); all 0 when the
 * message has none; ST_ECORRUPT when the count differs. */
int wire_series_versions(const wire_series_t *s, uint64_t *vers, size_t n);

#endif

/*
 * rowstats — SQL's count(*) from timestamp fingerprints (the ROW_STATS RPC).
 *
 * A row of a SQL table is one (tag set, timestamp): the tag set is a
 * series' labels without __name__, and the fields of one tag set are
 * separate series, maybe on different shards and nodes. A tag set's rows
 * are the union of its series' timestamp sets. Each node fingerprints the
 * timestamp set of every selected series (engine_tstats: count, an
 * order-free 64-bit hash, first, last) and groups its series by tag set
 * here; the router merges the nodes' answers here too. When every series
 * of a tag set has the same fingerprint, the union is any one of the sets,
 * so the tag set's rows are that count (exact unless two different
 * timestamp sets collide in the 64-bit hash). A tag set whose series
 * differ is marked: its rows are counted from its samples
 * (rowstats_samples, rowstats_resolve).
 *
 * Encoded as RowStatsResponse (proto/strata.proto; field numbers in
 * wire_fields.h). Pure: no sockets, no engine.
 */
#ifndef ROWSTATS_H
#define ROWSTATS_H

#include <stddef.h>
#include <stdint.h>

#include "st_buf.h"
#include "st_labels.h"

/* One timestamp set's fingerprint. */
typedef struct rowstat {
    uint64_t count, hash;
    int64_t mint, maxt;
} rowstat_t;

typedef struct rowstats rowstats_t;

/* At most max_sets tag sets and as many metric names (ST_ELIMIT beyond). */
int rowstats_create(size_t max_sets, rowstats_t **out);
void rowstats_destroy(rowstats_t *rs);

/* A series (labels sorted, with __name__) and its fingerprint: the name
 * joins the metric names, the other labels are its tag set. 0, ST_ELIMIT,
 * ST_ENOMEM. */
int rowstats_add_series(rowstats_t *rs, const st_label_t *l, size_t nl, const rowstat_t *st);
/* A tag set (labels sorted, without __name__) with one fingerprint, or
 * marked as differing. Merged with an entry of the same tag set: the set
 * differs unless both agree on one fingerprint. */
int rowstats_add_set(rowstats_t *rs, const st_label_t *l, size_t nl, const rowstat_t *st,
                     int differ);
int rowstats_add_metric(rowstats_t *rs, const char *name, size_t len);
/* A shard could not answer from its engine (downsampling tiers): the
 * caller must count from samples. */
void rowstats_set_raw(rowstats_t *rs);
int rowstats_raw(const rowstats_t *rs);

/* Append the RowStatsResponse. ST_ELIMIT when it would pass max_bytes. */
int rowstats_encode(const rowstats_t *rs, size_t max_bytes, st_buf_t *out);
/* Merge a RowStatsResponse into rs: 0, ST_ECORRUPT, ST_ELIMIT (tag sets,
 * or more than ST_LABELS_MAX labels), ST_ENOMEM. */
int rowstats_decode(rowstats_t *rs, const uint8_t *p, size_t len);

size_t rowstats_nsets(const rowstats_t *rs);
/* Tag set i's labels (NUL-terminated strings, valid while rs lives). */
const st_label_t *rowstats_labels(const rowstats_t *rs, size_t i, size_t *nl);
int rowstats_differ(const rowstats_t *rs, size_t i);
/* Tag set i's rows: the count its series agree on; for a differing set,
 * the distinct timestamps given (after rowstats_resolve). */
uint64_t rowstats_rows(const rowstats_t *rs, size_t i);
/* How many tag sets differ. */
size_t rowstats_ndiffer(const rowstats_t *rs);
size_t rowstats_nmetrics(const rowstats_t *rs);
const char *rowstats_metric(const rowstats_t *rs, size_t i);

/* The tag set of labels l (with or without __name__): its index, or -1. */
long rowstats_find(const rowstats_t *rs, const st_label_t *l, size_t nl);
/* Timestamps of a series of differing tag set i (any order, repeats
 * allowed): they count in its rows at rowstats_resolve. Ignored for a set
 * that agrees. ST_ENOMEM. */
int rowstats_samples(rowstats_t *rs, size_t i, const int64_t *ts, size_t n);
/* Each differing set's rows: its distinct timestamps given. ST_ENOMEM. */
int rowstats_resolve(rowstats_t *rs);

#endif

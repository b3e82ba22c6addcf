/*
 * resp_cmd — the pure half of the TS.* commands of the RESP door: argument
 * parsing for every option (TS.CREATE/ALTER/ADD/INCRBY options, range
 * options, FILTER expressions), the sample pipeline of a range read
 * (FILTER_BY_TS, FILTER_BY_VALUE, ALIGN, AGGREGATION with BUCKETTIMESTAMP
 * and EMPTY, COUNT, reverse order), GROUPBY/REDUCE and the per-series
 * settings carried by the metadata series.
 *
 * Why apart from router_resp.c: no sockets and no router state here, so
 * the unit tests and fuzz_resp_cmd.c drive it directly. Errors come back as
 * the text valkey-timeseries clients match on (written into err).
 *
 * How: parsers read an argv slice (resp_arg_t, pointing into the request
 * buffer); the structs they fill point into that argv too, except where
 * noted (filter matcher strings and FILTER_BY_TS lists are owned: free with
 * the matching _free).
 */
#ifndef RESP_CMD_H
#define RESP_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "resp.h"
#include "st_buf.h"
#include "st_matcher.h"

#define RESP_TS_MAX_LABELS 64        /* LABELS pairs of one key */
#define RESP_TS_MAX_FILTERS 32       /* FILTER expressions of one command */
#define RESP_TS_MAX_FILTER_TS 128    /* FILTER_BY_TS timestamps */
#define RESP_TS_MAX_BUCKETS 10000000 /* buckets one aggregation may answer (EMPTY fills gaps) */
#define RESP_TS_META_NAME "__ts_meta__"
#define RESP_TS_KEY_LABEL "__ts_key__"

enum resp_dup { DUP_UNSET = -1, DUP_BLOCK, DUP_FIRST, DUP_LAST, DUP_MIN, DUP_MAX, DUP_SUM };
const char *resp_dup_name(int dup);      /* "block", ... */
int resp_dup_parse(const resp_arg_t *a); /* DUP_* or DUP_UNSET */

/* The options of TS.CREATE / TS.ALTER / TS.ADD / TS.INCRBY / TS.DECRBY. */
typedef struct resp_tsopts {
    int has_retention, has_encoding, has_chunk, has_ignore, has_labels, has_ts;
    int64_t retention_ms;
    int compressed; /* ENCODING COMPRESSED|UNCOMPRESSED */
    int64_t chunk_size;
    int dup;    /* DUPLICATE_POLICY */
    int on_dup; /* ON_DUPLICATE (TS.ADD) */
    int64_t ignore_max_time;
    double ignore_max_val;
    const resp_arg_t *labels; /* name, value, name, value ... */
    size_t nlabels;           /* pairs */
    int64_t ts;               /* TIMESTAMP (INCRBY/DECRBY) */
    int ts_now;               /* TIMESTAMP * */
} resp_tsopts_t;

enum { RESP_OPTS_CREATE, RESP_OPTS_ALTER, RESP_OPTS_ADD, RESP_OPTS_INCR };
/* Parse the options in argv[0..argc) for command kind `kind`. 0, or -1 with err. */
int resp_tsopts_parse(const resp_arg_t *argv, size_t argc, int kind, resp_tsopts_t *o, char *err,
                      size_t errlen);

/* A timestamp argument: digits (ms), '*' (now, when star_ok) -> *now = 1. */
int resp_parse_ts(const resp_arg_t *a, int64_t *ts, int *now);
int resp_parse_int(const resp_arg_t *a, int64_t *v);
int resp_parse_double(const resp_arg_t *a, double *v);

enum resp_agg {
    AGG_NONE = 0,
    AGG_AVG,
    AGG_SUM,
    AGG_MIN,
    AGG_MAX,
    AGG_RANGE,
    AGG_COUNT,
    AGG_FIRST,
    AGG_LAST,
    AGG_STD_P,
    AGG_STD_S,
    AGG_VAR_P,
    AGG_VAR_S,
    AGG_TWA,
    AGG__COUNT
};
const char *resp_agg_name(int agg);
int resp_agg_parse(const resp_arg_t *a); /* AGG_* or -1 */

enum { BT_START, BT_END, BT_MID };

/* The options of TS.RANGE/REVRANGE/MRANGE/MREVRANGE/MGET. */
typedef struct resp_range {
    int64_t from, to;
    int latest, rev;
    int64_t *filter_ts; /* owned, sorted */
    size_t nfilter_ts;
    int has_fbv;
    double vmin, vmax;
    int64_t count; /* -1: all */
    int has_align;
    int64_t align;
    int agg;
    int64_t bucket;
    int bt;
    int empty;
    /* MRANGE / MGET */
    int withlabels;
    const resp_arg_t *selected; /* SELECTED_LABELS names */
    size_t nselected;
    st_matcher_t filters[RESP_TS_MAX_FILTERS]; /* owned strings */
    size_t nfilters;
    const resp_arg_t *groupby; /* label, or NULL */
    int reducer;               /* AGG_* */
} resp_range_t;

enum { RESP_RANGE_ONE, RESP_RANGE_MULTI, RESP_RANGE_MGET };
/* Parse argv[0..argc): for ONE and MULTI, starting with fromTimestamp
 * toTimestamp; for MGET only the options. now_ms replaces '+' only in
 * ALIGN end; '-' is INT64_MIN, '+' INT64_MAX. 0, or -1 with err. */
int resp_range_parse(const resp_arg_t *argv, size_t argc, int kind, resp_range_t *o, char *err,
                     size_t errlen);
void resp_range_free(resp_range_t *o);
/* FILTER expressions into matchers: l=v l!=v l= l!= l=(a,b) l!=(a,b). At
 * least one must select (l=v or l=(a,...)). 0, or -1 with err. */
int resp_filter_parse(const resp_arg_t *argv, size_t argc, st_matcher_t *m, size_t cap, size_t *n,
                      char *err, size_t errlen);
void resp_matchers_free(st_matcher_t *m, size_t n);
/* Does the label set (name, value pairs as C strings) match every matcher? */
int resp_labels_match(const st_matcher_t *m, size_t nm, const char *const *kv, size_t npairs);

/* A series' samples in time order (ts, v; n). */
typedef struct resp_samples {
    int64_t *ts;
    double *v;
    size_t n, cap;
} resp_samples_t;
int resp_samples_push(resp_samples_t *s, int64_t ts, double v);
void resp_samples_free(resp_samples_t *s);

/* Apply o to s in place: range [from,to], FILTER_BY_TS, FILTER_BY_VALUE,
 * AGGREGATION (ALIGN, BUCKETTIMESTAMP, EMPTY), then REV and COUNT.
 * Returns 0, ST_ELIMIT (more than RESP_TS_MAX_BUCKETS buckets) or
 * ST_ENOMEM. */
int resp_range_apply(const resp_range_t *o, resp_samples_t *s);
/* The aggregation of v[0..n) (timestamps ts) for agg over the bucket
 * [bstart, bend): the reduction GROUPBY uses too (ts may be NULL except for
 * twa). */
double resp_agg_values(int agg, const int64_t *ts, const double *v, size_t n, int64_t bstart,
                       int64_t bend);

/* Per-series settings as the labels of the metadata series. */
typedef struct resp_meta {
    int64_t retention_ms; /* 0: none */
    int dup;              /* DUP_UNSET: the server default (block) */
    int64_t chunk_size;
    int compressed;
    int64_t ignore_max_time;
    double ignore_max_val;
} resp_meta_t;
void resp_meta_default(resp_meta_t *m);
/* Apply the settings in o (what it has) onto m. */
void resp_meta_apply(resp_meta_t *m, const resp_tsopts_t *o);
/* Reserved label names of the metadata series, and their values. */
int resp_meta_to_json(st_buf_t *b, const resp_meta_t *m);
/* The same (name, value) pairs handed to fn one by one (values valid during
 * the call); stops at fn's first non-zero return and returns it. */
typedef int (*resp_meta_kv_fn)(void *arg, const char *name, const char *value);
int resp_meta_each(const resp_meta_t *m, resp_meta_kv_fn fn, void *arg);
/* Read one reserved label (name, value) into m; 1 if it was one, 0 not. */
int resp_meta_label(resp_meta_t *m, const char *name, const char *value);
/* Is name reserved (starts with "__ts_")? */
int resp_meta_reserved(const char *name);

#endif

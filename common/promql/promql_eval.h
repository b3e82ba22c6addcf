/*
 * promql_eval — storage-agnostic PromQL evaluator over the AST of promql.h.
 *
 *   static int sel(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
 *                  promql_sink_t *sink)
 *   {   for each matching series: promql_sink_add(sink, labels, n, ts, v, cnt); return 0; }
 *
 *   promql_result_t *r;
 *   if (promql_eval(expr, start, end, step, NULL, sel, arg, &r, err, sizeof err) == 0) {
 *       promql_result_json(r, start != end, &buf);
 *       promql_result_free(r);
 *   }
 *
 * The select callback is called once per selector (per matcher set of a
 * MetricsQL `or` selector) with the whole time range the query needs for it;
 * it pushes samples with timestamps sorted ascending (ms). The evaluator
 * copies everything it keeps. A non-zero return from the callback aborts the
 * evaluation with that code. See docs/promql.md, "Evaluation".
 */
#ifndef PROMQL_EVAL_H
#define PROMQL_EVAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "promql.h"
#include "st_buf.h"
#include "st_labels.h"
#include "st_matcher.h"

typedef struct promql_sink promql_sink_t;

/* Copy one series into the sink (labels need not be sorted). 0 or ST_E*. */
int promql_sink_add(promql_sink_t *sink, const st_label_t *labels, size_t nlabels,
                    const int64_t *ts, const double *v, size_t n);

typedef int (*promql_select_fn)(void *arg, const st_matcher_t *m, size_t nm, int64_t mint_ms,
                                int64_t maxt_ms, promql_sink_t *sink);

/*
 * Downsampled data (a storage with tiers, e.g. engine_tier.h): one bucket
 * per res ms, covering (end - res, end]. A select of buckets pushes whole
 * series of ascending buckets with promql_sink_add_buckets.
 */
typedef struct promql_bucket {
    int64_t end, first_ts, last_ts;
    double count, sum, min, max, first, last;
    double rsum; /* sum of the values before each decrease (-0.0: none) */
} promql_bucket_t;
int promql_sink_add_buckets(promql_sink_t *sink, const st_label_t *labels, size_t nlabels,
                            const promql_bucket_t *b, size_t n);
typedef int (*promql_bucket_fn)(void *arg, const st_matcher_t *m, size_t nm, int64_t mint_ms,
                                int64_t maxt_ms, int64_t res_ms, promql_sink_t *sink);

/*
 * Sample counts: count_over_time of a plain range selector at one instant
 * asks the storage for counts instead of samples. The callback pushes, per
 * series with samples in [mint_ms, maxt_ms], one sample at maxt_ms whose
 * value is that number, staleness markers left out (as a range selection
 * drops them). NULL: counted from the samples.
 */
typedef int (*promql_count_fn)(void *arg, const st_matcher_t *m, size_t nm, int64_t mint_ms,
                               int64_t maxt_ms, promql_sink_t *sink);

/*
 * Pushed-down subtrees (promql_plan.h): results computed elsewhere, one
 * value per step of the grid start + i * step, i < nsteps. The callback
 * adds series with promql_vsink_add(); present is a bitmap over the steps
 * (bit i of byte i / 8; NULL = every step) and v holds one value per
 * present step, in order.
 */
typedef struct promql_vsink promql_vsink_t;
int promql_vsink_add(promql_vsink_t *sink, const st_label_t *labels, size_t nlabels,
                     const uint8_t *present, const double *v, size_t nv);
typedef int (*promql_remote_fn)(void *arg, const promql_node_t *n, int part, int64_t start_ms,
                                int64_t step_ms, size_t nsteps, promql_vsink_t *sink);

/*
 * The limit that refused an evaluation (ST_ELIMIT / ST_ETIMEDOUT), for the
 * caller's counters. promql_limit_name() gives the setting that sets it:
 * "query_max_samples", "query_max_series", "query_max_mb",
 * "query_total_max_mb", "request_timeout", "regex_match_limit".
 */
typedef enum promql_limit {
    PROMQL_LIMIT_NONE = 0,
    PROMQL_LIMIT_SAMPLES,     /* max_samples (subquery steps included) */
    PROMQL_LIMIT_SERIES,      /* max_series */
    PROMQL_LIMIT_BYTES,       /* max_bytes of this evaluation */
    PROMQL_LIMIT_TOTAL_BYTES, /* *shared_bytes over shared_max_bytes */
    PROMQL_LIMIT_TIMEOUT,     /* deadline passed or cancelled */
    PROMQL_LIMIT_REGEX,       /* a regex exceeded its match or depth limit */
    PROMQL_LIMIT_COUNT
} promql_limit_t;
const char *promql_limit_name(promql_limit_t l);

typedef struct promql_eval_opts {
    int64_t lookback_ms;  /* 0: 5 minutes */
    uint64_t max_samples; /* 0: 50,000,000; values of subquery steps count too */
    uint64_t max_series;  /* 0: unlimited */
    int64_t deadline_ms;  /* CLOCK_MONOTONIC ms; 0: none */
    /* Bytes the evaluation may materialise (its arena, which holds every
     * selected sample, intermediate and result), checked before each
     * allocation; 0: unlimited. With shared_bytes, the evaluation's bytes
     * are also added to *shared_bytes (several evaluations running at once,
     * e.g. all the queries of a node) and refused past shared_max_bytes;
     * they are given back when the evaluation fails or its result is freed. */
    uint64_t max_bytes;
    _Atomic uint64_t *shared_bytes;
    uint64_t shared_max_bytes;
    /* Non-NULL: the evaluation stops ("query cancelled") once it is non-zero. */
    const atomic_int *cancel;
    /* Non-NULL: set to the limit that refused the evaluation (else NONE). */
    promql_limit_t *refused;
    /* Marked subtrees (node->push != 0) are not evaluated but asked of
     * remote(arg, ...) (same arg as the select callback); NULL: evaluate
     * everything here. */
    promql_remote_fn remote;
    /* A part of a larger query (a node evaluating a pushed subtree): what
     * @ start() / @ end() refer to, and no 11,000-point limit on the grid. */
    int subquery;
    int64_t query_start_ms, query_end_ms;
    /* Downsampling: the bucket widths the storage has (ms, finest first) and
     * how to select buckets (same arg as the select callback). A rollup
     * that is exact on whole buckets (promql_bucket_exact) over a plain
     * range selector whose window and every evaluation time are multiples
     * of a width reads buckets of the largest such width instead of raw
     * samples. NULL / 0: raw samples only. */
    const int64_t *tier_res;
    size_t ntier_res;
    promql_bucket_fn buckets;
    /* A node answering a router's pushed avg: when the root is an avg
     * aggregation, the result is its per-group sums followed by its
     * per-group counts (the same groups, each half sorted by labels;
     * promql_result_t.avg_sums says where the counts start), the argument
     * evaluated once. Other roots are not affected. */
    int avg_parts;
    /* Sample counts from the storage (same arg as the select callback). */
    promql_count_fn counts;
} promql_eval_opts_t;

/* 1 if the rollup function `name` gives the same answer from whole buckets
 * as from the raw samples (see docs: sum/count/min/max/last/present
 * _over_time, rate, increase, delta). */
int promql_bucket_exact(const char *name);

typedef enum {
    PROMQL_RES_MATRIX,
    PROMQL_RES_VECTOR,
    PROMQL_RES_SCALAR,
    PROMQL_RES_STRING
} promql_result_type_t;

typedef struct promql_series {
    st_label_t *labels; /* sorted */
    size_t nlabels;
    int64_t *ts; /* ms */
    double *v;
    size_t n; /* 1 for a vector element */
} promql_series_t;

typedef struct promql_result {
    promql_result_type_t type;
    promql_series_t *series; /* MATRIX (sorted by labels), VECTOR */
    size_t nseries;
    int64_t ts_ms;   /* VECTOR, SCALAR, STRING: evaluation time */
    double scalar;   /* SCALAR */
    const char *str; /* STRING */
    size_t str_len;
    size_t avg_sums;     /* opts.avg_parts with an avg root: series [0, avg_sums) are sums */
    void *mem_;          /* internal */
    uint64_t mem_bytes_; /* internal: bytes charged to the budgets */
    _Atomic uint64_t *mem_shared_; /* internal */
} promql_result_t;

/*
 * Evaluate expr at start, start+step, ..., end (instant query: start == end).
 * A rollup without a window (MetricsQL `rate(m)`) uses the step as its
 * window, also in an instant query: pass PROMQL_INSTANT_STEP_MS there unless
 * the caller gave a step (MetricsQL's rule). A range query (start != end) yields a MATRIX (a scalar
 * expression becomes one series without labels; a string is an error); an
 * instant query yields the expression's type. Returns 0, ST_EINVAL (bad
 * arguments or evaluation error, message in err), ST_ELIMIT (max samples /
 * series / bytes, a regex's match limit: the message names the setting,
 * o->refused says which), ST_ETIMEDOUT ("query timed out", "query
 * cancelled"), ST_ENOMEM or the callback's code.
 */
/* The step of an instant query when the caller passes none (MetricsQL: 5m),
 * i.e. the window of its window-less rollups. */
#define PROMQL_INSTANT_STEP_MS 300000

int promql_eval(const promql_expr_t *expr, int64_t start_ms, int64_t end_ms, int64_t step_ms,
                const promql_eval_opts_t *o, promql_select_fn fn, void *arg, promql_result_t **out,
                char *err, size_t errlen);
void promql_result_free(promql_result_t *r);

/*
 * Append the Prometheus HTTP API "data" object for r: {"resultType":...,
 * "result":...}. range != 0 renders a VECTOR as a matrix too. 0 or ST_ENOMEM.
 */
int promql_result_json(const promql_result_t *r, int range, st_buf_t *out);

#endif

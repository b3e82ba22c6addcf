/*
 * promql_eval_int — internals shared by the evaluator's files. Calls go one
 * way: promql_eval.c (the evaluator) reaches the functions of promql_funcs.c
 * only through the table row the parser put in a call node; both files call
 * promql_pe.c (leaf helpers: arena, errors, labels, series sets), which calls
 * neither. A function evaluates its arguments through the context's
 * eval/matrix callbacks, which promql_eval sets in every context.
 */
#ifndef PROMQL_EVAL_INT_H
#define PROMQL_EVAL_INT_H

#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include "promql_eval.h"

typedef struct pe_chunk {
    struct pe_chunk *next;
    size_t used, cap;
    max_align_t data[];
} pe_chunk_t;

/* One output/intermediate series: labels fixed, one value per step. */
typedef struct pe_ser {
    st_label_t *l;
    size_t nl;
    double *v;
    uint8_t *ok; /* present at step i */
} pe_ser_t;

/* Raw samples of a series (selected data or a subquery's inner result). */
typedef struct pe_raw {
    st_label_t *l;
    size_t nl;
    int64_t *ts;
    double *v;
    size_t n;
    promql_bucket_t *b; /* non-NULL: buckets (ts = their ends), not samples */
} pe_raw_t;

typedef struct pe_val {
    promql_type_t type;
    pe_ser_t *s; /* VECTOR */
    size_t ns, cap;
    double *sc; /* SCALAR: per step */
    const char *str;
    size_t slen;
} pe_val_t;

typedef struct pe_ctx pe_ctx_t;
typedef struct pe_grid pe_grid_t;

/* Evaluate node n on grid g into out (an instant vector, scalar or string). */
typedef void pe_eval_fn(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out);
/* Materialize a range-vector argument: raw series, window, and per-step eval times. */
typedef void pe_matrix_fn(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_raw_t **out,
                          size_t *nout, int64_t *range, int64_t **times);
/* The same as buckets when the storage can answer exactly from them (see
 * promql_eval_opts_t.tier_res); returns 0 (nothing done) otherwise. */
typedef int pe_buckets_fn(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_raw_t **out,
                          size_t *nout, int64_t *range, int64_t **times);

/* count_over_time of a plain range selector at one instant, when the
 * storage counts (promql_eval_opts_t.counts): one sample per series at the
 * evaluation time holding its count; returns 0 (nothing done) otherwise.
 * Same shape as pe_buckets_fn. */
typedef pe_buckets_fn pe_counts_fn;

/* What pe_stream_fn hands each series to: r's labels are the evaluation's,
 * its samples only borrowed for the call. */
typedef void pe_each_fn(pe_ctx_t *c, void *arg, const pe_raw_t *r);
/* A plain range selector (one matcher set) streamed: *range and *times set
 * first (as pe_matrix_fn sets them), then each(c, arg, series) for every
 * selected series in the storage's order, without stale markers; no series
 * is kept. Returns 0 (nothing done) for anything else. */
typedef int pe_stream_fn(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, int64_t *range,
                         int64_t **times, pe_each_fn *each, void *arg);

struct pe_ctx {
    pe_eval_fn *eval;       /* set by promql_eval; what a function calls for its arguments */
    pe_matrix_fn *matrix;   /* likewise for a range-vector argument */
    pe_buckets_fn *buckets; /* likewise, from downsampled buckets */
    pe_counts_fn *counts;   /* likewise, sample counts only */
    pe_stream_fn *stream;   /* likewise, a series at a time */
    const int64_t *tier_res;
    size_t ntier_res;
    promql_bucket_fn bfn;
    promql_count_fn cfn; /* promql_eval_opts_t.counts */
    pe_chunk_t *mem;
    jmp_buf jb;
    int rc;
    int sink_rc; /* failure inside promql_sink_add (reported after the callback returns) */
    char *err;
    size_t errlen;
    int64_t qstart, qend; /* outer query, for @ start()/end() */
    int64_t lookback;
    uint64_t max_samples, max_series, samples, series;
    uint64_t bytes, max_bytes; /* charged to this evaluation (arena chunks) */
    _Atomic uint64_t *shared;  /* every evaluation's bytes (a node's queries) */
    uint64_t shared_max;
    const atomic_int *cancel;
    promql_limit_t refused;
    unsigned subquery_depth; /* > 0: inside a subquery's inner evaluation */
    int64_t deadline;
    unsigned tick;
    promql_select_fn fn;
    promql_remote_fn remote;
    void *arg;
};

/* The time grid a node is evaluated on. */
struct pe_grid {
    int64_t start, step;
    size_t n;
};

static inline int64_t pe_t(const pe_grid_t *g, size_t i)
{
    return g->start + (int64_t)i * g->step;
}

/* Index past the last sample of r at or before t[k], going on from j (the
 * answer for step k - 1); the scan restarts when times go back (@). */
static inline size_t pe_upto(const pe_raw_t *r, size_t j, const int64_t *t, size_t k)
{
    if (k && t[k] < t[k - 1])
        j = 0;
    while (j < r->n && r->ts[j] <= t[k])
        j++;
    return j;
}

/* ---- promql_pe.c ---- */

/* Arena memory (zeroed), charged to the byte budgets before it is taken. */
void *pe_alloc(pe_ctx_t *c, size_t n);
/* The same, not zeroed: for arrays the caller fills entirely. */
void *pe_alloc_raw(pe_ctx_t *c, size_t n);
/* Free an arena chain (the context's, or a result's); a few chunks stay
 * with the calling thread for its next evaluations. */
void pe_mem_free(pe_chunk_t *k);
/* Give back `bytes` charged to *shared (NULL: nothing). */
void pe_mem_release(_Atomic uint64_t *shared, uint64_t bytes);
/* Fail with limit l refusing the evaluation (rc ST_ELIMIT or ST_ETIMEDOUT). */
_Noreturn void pe_refuse(pe_ctx_t *c, promql_limit_t l, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Count n more values against max_samples (refused past it). */
void pe_count_samples(pe_ctx_t *c, uint64_t n);
/* Room for one more of *n elements of size sz in the pe_alloc'd array *arr
 * (capacity *cap doubles, starting at first). */
void pe_grow(pe_ctx_t *c, void **arr, size_t n, size_t *cap, size_t sz, size_t first);
char *pe_strdup(pe_ctx_t *c, const char *s, size_t n);
_Noreturn void pe_fail(pe_ctx_t *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void pe_check(pe_ctx_t *c);
pe_ser_t *pe_add_ser(pe_ctx_t *c, pe_val_t *v, const st_label_t *l, size_t nl, size_t nsteps);
st_label_t *pe_labels_drop_name(pe_ctx_t *c, const st_label_t *l, size_t *nl);
st_label_t *pe_labels_set(pe_ctx_t *c, const st_label_t *l, size_t *nl, const char *name,
                          const char *val, size_t vlen);
const st_label_t *pe_label_get(const st_label_t *l, size_t nl, const char *name);
static inline int pe_lname_eq(const st_label_t *l, const char *name)
{
    size_t len = strlen(name);
    return l->name_len == len && !memcmp(l->name, name, len);
}
void pe_dedup(pe_ctx_t *c, pe_val_t *v, size_t nsteps);

/* A label set to group by, and its index among the keys. */
typedef struct pe_gkey {
    const st_label_t *l;
    size_t nl;
    size_t idx;
} pe_gkey_t;
/* Assign group ids (0..ngroups-1) to keys; returns ngroups; rep[g] = a key index. */
size_t pe_group_keys(pe_ctx_t *c, pe_gkey_t *k, size_t n, size_t *gid, size_t **rep);

/* Prometheus' quantile over v (sorted in place). */
double pe_quantile(double q, double *v, size_t n);
/* A quantile q outside [0, 1] (or NaN): 1 with its answer in *r (NaN,
 * -Inf, +Inf), as Prometheus answers it for any data. */
static inline int pe_quantile_out_of_range(double q, double *r)
{
    if (q >= 0 && q <= 1)
        return 0;
    *r = isnan(q) ? NAN : q < 0 ? -INFINITY : INFINITY;
    return 1;
}
/* One step of Prometheus' running mean (n = count including v). */
double pe_mean_add(double mean, double n, double v);

#endif

/* promql_eval_int — internals shared by promql_eval.c and promql_funcs.c. */
#ifndef PROMQL_EVAL_INT_H
#define PROMQL_EVAL_INT_H

#include <math.h>
#include <setjmp.h>
#include <stdint.h>

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
} pe_raw_t;

typedef struct pe_val {
    promql_type_t type;
    pe_ser_t *s; /* VECTOR */
    size_t ns, cap;
    double *sc; /* SCALAR: per step */
    const char *str;
    size_t slen;
} pe_val_t;

typedef struct pe_ctx {
    pe_chunk_t *mem;
    jmp_buf jb;
    int rc;
    int sink_rc; /* failure inside promql_sink_add (reported after the callback returns) */
    char *err;
    size_t errlen;
    int64_t qstart, qend; /* outer query, for @ start()/end() */
    int64_t lookback;
    uint64_t max_samples, max_series, samples, series;
    int64_t deadline;
    unsigned tick;
    promql_select_fn fn;
    promql_remote_fn remote;
    void *arg;
} pe_ctx_t;

/* The time grid a node is evaluated on. */
typedef struct pe_grid {
    int64_t start, step;
    size_t n;
} pe_grid_t;

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

void *pe_alloc(pe_ctx_t *c, size_t n);
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
void pe_dedup(pe_ctx_t *c, pe_val_t *v, size_t nsteps);
void pe_eval(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out);
/* Materialize a range-vector argument: raw series, window, and per-step eval times. */
void pe_matrix(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_raw_t **out,
               size_t *nout, int64_t *range, int64_t **times);
void pe_call(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out);
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

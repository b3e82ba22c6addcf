/*
 * promql_pe — the evaluator's leaf helpers, shared by promql_eval.c (the
 * evaluator) and promql_funcs.c (the function implementations): the per-query
 * arena (pe_alloc), errors (pe_fail longjmps to promql_eval), label-set edits,
 * series sets (pe_add_ser, pe_dedup, grouping) and the quantile and mean both
 * aggregations and rollups use. It sits below both files and calls neither,
 * so calls between the PromQL files go one way (promql_eval_int.h).
 */
#include "promql_eval_int.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"
#include "st_time.h"

/* ---- memory, errors ------------------------------------------------------ */

#define MIB (1024.0 * 1024.0)

/* Charge a chunk of `bytes` to the evaluation and the shared budget, before
 * it is allocated: past either limit the query is refused, never grown. */
static void charge(pe_ctx_t *c, uint64_t bytes)
{
    if (c->max_bytes && c->bytes + bytes > c->max_bytes)
        pe_refuse(c, PROMQL_LIMIT_BYTES, ST_ELIMIT,
                  "query would materialise more than %.0f MiB (query_max_mb)",
                  (double)c->max_bytes / MIB);
    if (c->shared) {
        uint64_t now = atomic_fetch_add(c->shared, bytes) + bytes;
        if (c->shared_max && now > c->shared_max) {
            atomic_fetch_sub(c->shared, bytes);
            pe_refuse(c, PROMQL_LIMIT_TOTAL_BYTES, ST_ELIMIT,
                      "queries running on this node would materialise more than %.0f MiB "
                      "together (query_total_max_mb)",
                      (double)c->shared_max / MIB);
        }
    }
    c->bytes += bytes;
}

void pe_mem_release(_Atomic uint64_t *shared, uint64_t bytes)
{
    if (shared && bytes)
        atomic_fetch_sub(shared, bytes);
}

void pe_count_samples(pe_ctx_t *c, uint64_t n)
{
    c->samples += n;
    if (c->samples > c->max_samples)
        pe_refuse(c, PROMQL_LIMIT_SAMPLES, ST_ELIMIT,
                  "query processing would load too many samples into memory");
}

/* Freed arena chunks of the default size kept by each thread for its next
 * evaluations (pe_mem_free): a query reuses warm memory instead of taking
 * fresh chunks (page faults) and giving them back every time. At most
 * PE_CACHE_CHUNKS per thread; they are charged like new ones when taken. */
#define PE_CHUNK (1u << 20)
#define PE_CACHE_CHUNKS 2
static _Thread_local pe_chunk_t *chunk_cache;
static _Thread_local unsigned chunk_cached;

void *pe_alloc_raw(pe_ctx_t *c, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!n)
        n = 16;
    if (!c->mem || c->mem->cap - c->mem->used < n) {
        size_t cap = n > PE_CHUNK ? n : PE_CHUNK;
        if (cap > SIZE_MAX / 2)
            pe_refuse(c, PROMQL_LIMIT_BYTES, ST_ELIMIT,
                      "query would materialise more than %.0f MiB (query_max_mb)",
                      (double)c->max_bytes / MIB);
        charge(c, sizeof(pe_chunk_t) + cap);
        pe_chunk_t *k;
        if (cap == PE_CHUNK && chunk_cache) {
            k = chunk_cache;
            chunk_cache = k->next;
            chunk_cached--;
        } else if (!(k = malloc(sizeof *k + cap))) {
            pe_mem_release(c->shared, sizeof *k + cap);
            c->bytes -= sizeof *k + cap;
            pe_fail(c, ST_ENOMEM, "out of memory");
        }
        k->used = 0;
        k->cap = cap;
        k->next = c->mem;
        c->mem = k;
    }
    void *p = (char *)c->mem->data + c->mem->used;
    c->mem->used += n;
    return p;
}

void *pe_alloc(pe_ctx_t *c, size_t n)
{
    void *p = pe_alloc_raw(c, n);
    memset(p, 0, n ? n : 1);
    return p;
}

void pe_grow(pe_ctx_t *c, void **arr, size_t n, size_t *cap, size_t sz, size_t first)
{
    if (n < *cap)
        return;
    size_t nc = *cap ? *cap * 2 : first;
    void *na = pe_alloc(c, nc * sz);
    if (n)
        memcpy(na, *arr, n * sz);
    *arr = na;
    *cap = nc;
}

char *pe_strdup(pe_ctx_t *c, const char *s, size_t n)
{
    char *d = pe_alloc_raw(c, n + 1);
    if (n)
        memcpy(d, s, n);
    d[n] = 0;
    return d;
}

void pe_mem_free(pe_chunk_t *k)
{
    while (k) {
        pe_chunk_t *nx = k->next;
        if (k->cap == PE_CHUNK && chunk_cached < PE_CACHE_CHUNKS) {
            k->next = chunk_cache;
            chunk_cache = k;
            chunk_cached++;
        } else {
            free(k);
        }
        k = nx;
    }
}

/* The message, the code and the limit (if one refused it); to promql_eval. */
static _Noreturn void vfail(pe_ctx_t *c, promql_limit_t l, int rc, const char *fmt, va_list ap)
{
    if (c->err && c->errlen)
        vsnprintf(c->err, c->errlen, fmt, ap);
    c->refused = l;
    c->rc = rc;
    longjmp(c->jb, 1);
}

void pe_fail(pe_ctx_t *c, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(c, PROMQL_LIMIT_NONE, rc, fmt, ap);
}

void pe_refuse(pe_ctx_t *c, promql_limit_t l, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(c, l, rc, fmt, ap);
}

/* Called per series and per step batch: the clock is read every 16th call
 * (a few ns each), so a passed deadline or a cancel stops the work within
 * milliseconds. */
void pe_check(pe_ctx_t *c)
{
    if ((++c->tick & 15) != 0)
        return;
    if (c->cancel && atomic_load_explicit(c->cancel, memory_order_relaxed))
        pe_refuse(c, PROMQL_LIMIT_TIMEOUT, ST_ETIMEDOUT, "query cancelled");
    if (c->deadline && st_mono_ms() > c->deadline)
        pe_refuse(c, PROMQL_LIMIT_TIMEOUT, ST_ETIMEDOUT, "query timed out");
}

/* ---- labels ------------------------------------------------------------- */

const st_label_t *pe_label_get(const st_label_t *l, size_t nl, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < nl; i++)
        if (l[i].name_len == len && !memcmp(l[i].name, name, len))
            return &l[i];
    return NULL;
}

st_label_t *pe_labels_drop_name(pe_ctx_t *c, const st_label_t *l, size_t *nl)
{
    st_label_t *o = pe_alloc(c, (*nl + 1) * sizeof *o);
    size_t k = 0;
    for (size_t i = 0; i < *nl; i++)
        if (!pe_lname_eq(&l[i], ST_METRIC_LABEL))
            o[k++] = l[i];
    *nl = k;
    return o;
}

/* Copy of l with name=val (val empty: removed); stays sorted. */
st_label_t *pe_labels_set(pe_ctx_t *c, const st_label_t *l, size_t *nl, const char *name,
                          const char *val, size_t vlen)
{
    st_label_t *o = pe_alloc(c, (*nl + 1) * sizeof *o);
    size_t k = 0;
    for (size_t i = 0; i < *nl; i++)
        if (!pe_lname_eq(&l[i], name))
            o[k++] = l[i];
    if (vlen) {
        size_t len = strlen(name);
        o[k].name = pe_strdup(c, name, len);
        o[k].name_len = (uint32_t)len;
        o[k].value = pe_strdup(c, val, vlen);
        o[k].value_len = (uint32_t)vlen;
        k++;
        st_labels_sort(o, k);
    }
    *nl = k;
    return o;
}

pe_ser_t *pe_add_ser(pe_ctx_t *c, pe_val_t *v, const st_label_t *l, size_t nl, size_t nsteps)
{
    pe_grow(c, (void **)&v->s, v->ns, &v->cap, sizeof *v->s, 8);
    /* a subquery's inner steps are values the query materialises: counted
     * (Prometheus counts them too) before they are allocated */
    if (c->subquery_depth)
        pe_count_samples(c, nsteps);
    pe_ser_t *s = &v->s[v->ns++];
    s->l = (st_label_t *)l;
    s->nl = nl;
    s->v = pe_alloc(c, nsteps * sizeof(double));
    s->ok = pe_alloc(c, nsteps);
    return s;
}

/* ---- grouping by label sets (sort-based) ---------------------------------- */

static int gkey_cmp(const void *a, const void *b)
{
    const pe_gkey_t *x = a, *y = b;
    int r = st_labels_cmp(x->l, x->nl, y->l, y->nl);
    if (r)
        return r;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Assign group ids (0..ngroups-1) to keys; returns ngroups; rep[g] = a key index. */
size_t pe_group_keys(pe_ctx_t *c, pe_gkey_t *k, size_t n, size_t *gid, size_t **rep)
{
    pe_gkey_t *s = pe_alloc(c, (n + 1) * sizeof *s);
    memcpy(s, k, n * sizeof *s);
    qsort(s, n, sizeof *s, gkey_cmp);
    size_t *r = pe_alloc(c, (n + 1) * sizeof *r);
    size_t g = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || st_labels_cmp(s[i - 1].l, s[i - 1].nl, s[i].l, s[i].nl))
            r[g++] = s[i].idx;
        gid[s[i].idx] = g - 1;
    }
    if (rep)
        *rep = r;
    return g;
}

/* Merge series with identical labels when never present at the same step. */
void pe_dedup(pe_ctx_t *c, pe_val_t *v, size_t nsteps)
{
    if (v->ns < 2)
        return;
    pe_gkey_t *k = pe_alloc(c, v->ns * sizeof *k);
    size_t *gid = pe_alloc(c, v->ns * sizeof *gid), *rep;
    for (size_t i = 0; i < v->ns; i++)
        k[i] = (pe_gkey_t){v->s[i].l, v->s[i].nl, i};
    size_t ng = pe_group_keys(c, k, v->ns, gid, &rep);
    if (ng == v->ns)
        return;
    pe_ser_t *o = pe_alloc(c, ng * sizeof *o);
    for (size_t g = 0; g < ng; g++)
        o[g] = v->s[rep[g]];
    for (size_t i = 0; i < v->ns; i++) {
        pe_ser_t *d = &o[gid[i]];
        if (d->v == v->s[i].v)
            continue;
        for (size_t t = 0; t < nsteps; t++) {
            if (!v->s[i].ok[t])
                continue;
            if (d->ok[t])
                pe_fail(c, ST_EINVAL, "vector cannot contain metrics with the same labelset");
            d->ok[t] = 1;
            d->v[t] = v->s[i].v[t];
        }
    }
    v->s = o;
    v->ns = v->cap = ng;
}

/* ---- quantiles and means ---------------------------------------------------- */

/* x sorts before y: ascending, NaN first (Prometheus sorts NaN as the smallest value). */
static inline int dbl_before(double x, double y)
{
    if (isnan(x) || isnan(y))
        return isnan(x) && !isnan(y);
    return x < y;
}

static inline void dbl_swap(double *v, ptrdiff_t i, ptrdiff_t j)
{
    double t = v[i];
    v[i] = v[j];
    v[j] = t;
}

/* Quickselect: v[k] becomes the value an ascending sort would put there,
 * with no larger value before it and no smaller one after it. O(n) on
 * average where a sort is O(n log n): quantile and quantile_over_time call
 * this once per group or window and step. */
static void select_kth(double *v, ptrdiff_t n, ptrdiff_t k)
{
    ptrdiff_t lo = 0, hi = n - 1;
    while (hi - lo >= 16) {
        ptrdiff_t mid = lo + (hi - lo) / 2;
        if (dbl_before(v[mid], v[lo]))
            dbl_swap(v, lo, mid);
        if (dbl_before(v[hi], v[lo]))
            dbl_swap(v, lo, hi);
        if (dbl_before(v[hi], v[mid]))
            dbl_swap(v, mid, hi);
        double p = v[mid]; /* v[lo] <= p <= v[hi]: both scans stop in range */
        ptrdiff_t i = lo, j = hi;
        while (i <= j) {
            while (dbl_before(v[i], p))
                i++;
            while (dbl_before(p, v[j]))
                j--;
            if (i <= j)
                dbl_swap(v, i++, j--);
        }
        /* [lo, j] <= p, [i, hi] >= p, anything between equals p */
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return;
    }
    for (ptrdiff_t i = lo + 1; i <= hi; i++) /* a short run: insertion sort */
        for (ptrdiff_t j = i; j > lo && dbl_before(v[j], v[j - 1]); j--)
            dbl_swap(v, j, j - 1);
}

/* Prometheus' quantile over an array (reordered in place): the values at
 * ranks floor(q(n-1)) and the next one of the sorted array, interpolated;
 * found by selection instead of a sort. */
double pe_quantile(double q, double *v, size_t n)
{
    double r;
    if (n == 0)
        return NAN;
    if (pe_quantile_out_of_range(q, &r))
        return r;
    double rank = q * (double)(n - 1);
    size_t lo = (size_t)floor(rank), hi = lo + 1 < n ? lo + 1 : n - 1;
    double w = rank - floor(rank);
    select_kth(v, (ptrdiff_t)n, (ptrdiff_t)lo);
    double a = v[lo], b = a;
    if (hi != lo) { /* the next rank: the smallest value after lo */
        b = v[lo + 1];
        for (size_t i = lo + 2; i < n; i++)
            if (dbl_before(v[i], b))
                b = v[i];
    }
    return a * (1 - w) + b * w;
}

/*
 * One step of Prometheus' running mean (avg, avg_over_time): mean += v/n -
 * mean/n, except that an infinite mean stays as it is when v is finite or an
 * infinity of the same sign (so [+Inf, 1] is +Inf, [+Inf, -Inf] NaN).
 */
double pe_mean_add(double mean, double n, double v)
{
    if (isinf(mean) && ((isinf(v) && (mean > 0) == (v > 0)) || (!isinf(v) && !isnan(v))))
        return mean;
    return mean + (v / n - mean / n);
}

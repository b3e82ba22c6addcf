/*
 * promql_eval — evaluator core: selectors, operators, aggregations, results.
 * Its leaf helpers (arena, errors, labels, series sets) are in promql_pe.c;
 * the functions (promql_funcs.c) run through the table row the parser put in
 * a call node and evaluate their arguments through the pe_ctx callbacks this
 * file sets, so neither of those files calls back into this one.
 */
#include "promql_eval_int.h"
#include "promql_plan.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "st_err.h"
#include "st_text.h"
#include "st_time.h"

static void pe_eval(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out);

/* ---- labels ------------------------------------------------------------- */

static int in_names(const st_label_t *l, const promql_labels_t *names)
{
    for (size_t i = 0; i < names->n; i++)
        if (pe_lname_eq(l, names->names[i]))
            return 1;
    return 0;
}

/* Labels kept by on(names) (on=1) or ignoring(names) + __name__ (on=0). */
static st_label_t *sig_labels(pe_ctx_t *c, const st_label_t *l, size_t nl, int on,
                              const promql_labels_t *names, size_t *nout)
{
    st_label_t *o = pe_alloc(c, (nl + 1) * sizeof *o);
    size_t k = 0;
    for (size_t i = 0; i < nl; i++) {
        int in = in_names(&l[i], names);
        if (on ? in : (!in && !pe_lname_eq(&l[i], ST_METRIC_LABEL)))
            o[k++] = l[i];
    }
    *nout = k;
    return o;
}

/* ---- selection ------------------------------------------------------------ */

/* One more series of n samples (or values) into the evaluation: the limits. */
static void sink_account(pe_ctx_t *c, size_t n)
{
    if (++c->series > c->max_series)
        pe_refuse(c, PROMQL_LIMIT_SERIES, ST_ELIMIT,
                  "query processing would load too many series into memory");
    pe_count_samples(c, n);
    pe_check(c);
}

/* The evaluator's own sorted copy of a caller's labels. */
static st_label_t *copy_labels(pe_ctx_t *c, const st_label_t *labels, size_t n)
{
    st_label_t *l = pe_alloc(c, (n + 1) * sizeof *l);
    for (size_t i = 0; i < n; i++) {
        l[i].name = pe_strdup(c, labels[i].name, labels[i].name_len);
        l[i].name_len = labels[i].name_len;
        l[i].value = pe_strdup(c, labels[i].value, labels[i].value_len);
        l[i].value_len = labels[i].value_len;
    }
    st_labels_sort(l, n);
    return l;
}

/* What a caller hands to promql_sink_add / promql_vsink_add. */
typedef struct sink_in {
    const st_label_t *labels;
    size_t nlabels;
    const int64_t *ts;      /* sink: sample times */
    const uint8_t *present; /* vsink: step bitmap, or NULL for every step */
    const double *v;
    size_t n;
    const promql_bucket_t *b; /* sink: buckets instead of ts / v */
} sink_in_t;

/* Account for one series from a caller's callback and add it with add(); a
 * failure (limits, memory, bad data) is caught here, never longjmp'd through
 * the caller's select callback, and returned (and remembered) instead. */
static int sink_call(pe_ctx_t *c, void (*add)(pe_ctx_t *, void *, const sink_in_t *), void *sk,
                     const sink_in_t *in)
{
    if (c->sink_rc)
        return c->sink_rc;
    jmp_buf outer;
    memcpy(outer, c->jb, sizeof outer);
    if (setjmp(c->jb)) {
        memcpy(c->jb, outer, sizeof outer);
        c->sink_rc = c->rc;
        return c->rc;
    }
    sink_account(c, in->n);
    add(c, sk, in);
    memcpy(c->jb, outer, sizeof outer);
    return 0;
}

struct promql_sink {
    pe_ctx_t *c;
    pe_raw_t *r;
    size_t n, cap;
    int drop_stale;   /* a range vector's samples: stale markers are left out */
    pe_each_fn *each; /* non-NULL: each series goes to each(), none is kept */
    void *each_arg;
};

/* Prometheus' staleness marker: a NaN with this payload, which a scraper
 * writes once a series disappears (remote write brings it in bit-exact).
 * At an instant selector it hides the series; range selections skip it. */
#define PE_STALE_NAN 0x7ff0000000000002ULL

static int pe_is_stale(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u == PE_STALE_NAN;
}

/* The index of v's first stale marker (n: none). */
static size_t first_stale(const double *v, size_t n)
{
    size_t k = 0;
    while (k < n && !pe_is_stale(v[k]))
        k++;
    return k;
}

/* in's samples into ts and v (room for in->n), leaving out the stale
 * markers from `first` on (the index of the first one; in->n: none, a
 * plain copy); how many were copied. */
static size_t copy_unstale(const sink_in_t *in, size_t first, int64_t *ts, double *v)
{
    memcpy(ts, in->ts, first * sizeof *ts);
    memcpy(v, in->v, first * sizeof *v);
    size_t k = first;
    for (size_t j = first; j < in->n; j++)
        if (!pe_is_stale(in->v[j])) {
            ts[k] = in->ts[j];
            v[k++] = in->v[j];
        }
    return k;
}

/* A series handed on as it comes (pe_stream, eval_vs): the samples are
 * the caller's, read in place while they are still in the cache; only a
 * range vector's series holding stale markers is copied (without them). */
static void sink_each(pe_ctx_t *c, promql_sink_t *sk, const sink_in_t *in)
{
    pe_raw_t r = {copy_labels(c, in->labels, in->nlabels),
                  in->nlabels,
                  (int64_t *)in->ts,
                  (double *)in->v,
                  in->n,
                  NULL};
    size_t first = sk->drop_stale ? first_stale(in->v, in->n) : in->n;
    if (first < in->n) {
        r.ts = pe_alloc_raw(c, (in->n + 1) * sizeof *r.ts);
        r.v = pe_alloc_raw(c, (in->n + 1) * sizeof *r.v);
        r.n = copy_unstale(in, first, r.ts, r.v);
    }
    sk->each(c, sk->each_arg, &r);
}

static void sink_add(pe_ctx_t *c, void *skv, const sink_in_t *in)
{
    promql_sink_t *sk = skv;
    size_t n = in->n;
    if (sk->each && !in->b) {
        sink_each(c, sk, in);
        return;
    }
    pe_grow(c, (void **)&sk->r, sk->n, &sk->cap, sizeof *sk->r, 16);
    pe_raw_t *r = &sk->r[sk->n++];
    r->l = copy_labels(c, in->labels, in->nlabels);
    r->nl = in->nlabels;
    r->ts = pe_alloc_raw(c, (n + 1) * sizeof *r->ts); /* filled below */
    r->v = pe_alloc_raw(c, (n + 1) * sizeof *r->v);
    r->ts[n] = 0;
    r->v[n] = 0;
    r->b = NULL;
    if (in->b) {
        r->b = pe_alloc(c, (n + 1) * sizeof *r->b);
        if (n)
            memcpy(r->b, in->b, n * sizeof *in->b);
        for (size_t i = 0; i < n; i++) {
            r->ts[i] = in->b[i].end;
            r->v[i] = in->b[i].last;
        }
    } else if (n) {
        /* the copy leaves stale markers out of a range vector while the
         * samples are at hand (a pass over them all afterwards cost more
         * than the copy) */
        n = copy_unstale(in, sk->drop_stale ? first_stale(in->v, n) : n, r->ts, r->v);
    }
    r->n = n;
}

int promql_sink_add_buckets(promql_sink_t *sk, const st_label_t *labels, size_t nlabels,
                            const promql_bucket_t *b, size_t n)
{
    return sink_call(sk->c, sink_add, sk, &(sink_in_t){labels, nlabels, NULL, NULL, NULL, n, b});
}

int promql_sink_add(promql_sink_t *sk, const st_label_t *labels, size_t nlabels, const int64_t *ts,
                    const double *v, size_t n)
{
    return sink_call(sk->c, sink_add, sk, &(sink_in_t){labels, nlabels, ts, NULL, v, n, NULL});
}

static int raw_cmp(const void *a, const void *b)
{
    const pe_raw_t *x = a, *y = b;
    return st_labels_cmp(x->l, x->nl, y->l, y->nl);
}

/* Select raw samples (res == 0) or buckets of width res. */
static void do_select_each(pe_ctx_t *c, const promql_node_t *vs, int64_t mint, int64_t maxt,
                           int64_t res, int drop_stale, pe_each_fn *each, void *each_arg,
                           pe_raw_t **out, size_t *nout)
{
    promql_sink_t sk = {c, NULL, 0, 0, drop_stale, each, each_arg};
    size_t nsets = vs->u.vs.nsets ? vs->u.vs.nsets : 1;
    for (size_t s = 0; s < nsets; s++) {
        size_t nm = vs->u.vs.nsets ? vs->u.vs.sets[s].n : 0;
        st_matcher_t *m = pe_alloc(c, (nm + 1) * sizeof *m);
        size_t k = 0;
        if (vs->u.vs.name)
            m[k++] = (st_matcher_t){ST_MATCH_EQ, ST_METRIC_LABEL, vs->u.vs.name};
        for (size_t i = 0; i < nm; i++)
            m[k++] = vs->u.vs.sets[s].m[i];
        int rc = res < 0   ? c->cfn(c->arg, m, k, mint, maxt, &sk)
                 : res > 0 ? c->bfn(c->arg, m, k, mint, maxt, res, &sk)
                           : c->fn(c->arg, m, k, mint, maxt, &sk);
        if (c->sink_rc) {
            c->rc = c->sink_rc;
            longjmp(c->jb, 1); /* message already set */
        }
        if (rc && c->err && c->errlen && c->err[0]) { /* the callback said why */
            c->rc = rc < 0 ? rc : ST_EIO;
            longjmp(c->jb, 1);
        }
        if (rc)
            pe_fail(c, rc < 0 ? rc : ST_EIO, "select failed: %s", st_strerror(rc));
    }
    if (each)
        return;
    if (sk.n)
        qsort(sk.r, sk.n, sizeof *sk.r, raw_cmp);
    size_t k = 0; /* drop duplicates from overlapping `or` sets */
    for (size_t i = 0; i < sk.n; i++)
        if (!k || raw_cmp(&sk.r[k - 1], &sk.r[i]))
            sk.r[k++] = sk.r[i];
    *out = sk.r;
    *nout = k;
}

static void do_select(pe_ctx_t *c, const promql_node_t *vs, int64_t mint, int64_t maxt, int64_t res,
                      int drop_stale, pe_raw_t **out, size_t *nout)
{
    do_select_each(c, vs, mint, maxt, res, drop_stale, NULL, NULL, out, nout);
}

static int64_t at_time(pe_ctx_t *c, const promql_at_t *at, int64_t t)
{
    switch (at->kind) {
    case PROMQL_AT_TS:
        return (int64_t)llround(at->ts * 1000.0);
    case PROMQL_AT_START:
        return c->qstart;
    case PROMQL_AT_END:
        return c->qend;
    default:
        return t;
    }
}

/* Per-step evaluation times of a selector/subquery: (@ or t) - offset. */
static int64_t *sel_times(pe_ctx_t *c, const pe_grid_t *g, const promql_at_t *at, int64_t off,
                          int64_t *mn, int64_t *mx)
{
    int64_t *t = pe_alloc(c, (g->n + 1) * sizeof *t);
    *mn = INT64_MAX;
    *mx = INT64_MIN;
    for (size_t i = 0; i < g->n; i++) {
        t[i] = at_time(c, at, pe_t(g, i)) - off;
        if (t[i] < *mn)
            *mn = t[i];
        if (t[i] > *mx)
            *mx = t[i];
    }
    return t;
}

/* An instant selector's steps of one series: its last sample within the
 * lookback before each, unless that is a stale marker. */
typedef struct vs_job {
    const pe_grid_t *g;
    const int64_t *t; /* per-step evaluation times */
    pe_val_t *out;
} vs_job_t;

static void vs_series(pe_ctx_t *c, void *arg, const pe_raw_t *r)
{
    vs_job_t *vj = arg;
    pe_ser_t *s = NULL;
    size_t j = 0;
    for (size_t k = 0; k < vj->g->n; k++) {
        j = pe_upto(r, j, vj->t, k);
        if (j == 0 || r->ts[j - 1] <= vj->t[k] - c->lookback || pe_is_stale(r->v[j - 1]))
            continue;
        if (!s)
            s = pe_add_ser(c, vj->out, r->l, r->nl, vj->g->n);
        s->ok[k] = 1;
        s->v[k] = r->v[j - 1];
    }
    pe_check(c);
}

static int pe_ser_cmp(const void *a, const void *b)
{
    const pe_ser_t *x = a, *y = b;
    return st_labels_cmp(x->l, x->nl, y->l, y->nl);
}

static void eval_vs(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    int64_t mn, mx;
    int64_t *t = sel_times(c, g, &n->u.vs.at, n->u.vs.offset_ms, &mn, &mx);
    pe_raw_t *r;
    size_t nr;
    vs_job_t vj = {g, t, out};
    if (!c->subquery_depth && n->u.vs.nsets <= 1) {
        /* a series at a time, read where the storage decoded it; then in
         * the order of their labels, as a materialised selection is */
        size_t before = out->ns;
        do_select_each(c, n, mn - c->lookback + 1, mx, 0, 0, vs_series, &vj, &r, &nr);
        if (out->ns - before > 1)
            qsort(out->s + before, out->ns - before, sizeof *out->s, pe_ser_cmp);
        return;
    }
    do_select(c, n, mn - c->lookback + 1, mx, 0, 0, &r, &nr);
    /* inside a subquery every selected series becomes g->n steps (counted
     * by pe_add_ser): refused here before any is allocated */
    if (c->subquery_depth && nr && c->samples + (uint64_t)nr * g->n > c->max_samples)
        pe_count_samples(c, (uint64_t)nr * g->n);
    for (size_t i = 0; i < nr; i++)
        vs_series(c, &vj, &r[i]);
}

static void pe_matrix(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_raw_t **out,
                      size_t *nout, int64_t *range, int64_t **times)
{
    int64_t mn, mx;
    if (n->kind == PROMQL_PAREN) {
        pe_matrix(c, n->u.paren.expr, g, out, nout, range, times);
        return;
    }
    if (n->kind == PROMQL_MATRIX_SELECTOR) {
        const promql_node_t *vs = n->u.ms.vs;
        *range = n->u.ms.window_omitted ? g->step : n->u.ms.range_ms;
        *times = sel_times(c, g, &vs->u.vs.at, vs->u.vs.offset_ms, &mn, &mx);
        do_select(c, vs, mn - *range + 1, mx, 0, 1, out, nout);
        return;
    }
    if (n->kind != PROMQL_SUBQUERY)
        pe_fail(c, ST_EINVAL, "expected a range vector");
    *range = n->u.sq.range_ms;
    int64_t step = n->u.sq.step_ms ? n->u.sq.step_ms : 60000;
    *times = sel_times(c, g, &n->u.sq.at, n->u.sq.offset_ms, &mn, &mx);
    int64_t lo = mn - *range;
    /* inner grid: multiples of step in [lo, mx] */
    int64_t s0 = lo / step * step;
    if (s0 < lo)
        s0 += step;
    if (s0 > mx) {
        *out = NULL;
        *nout = 0;
        return;
    }
    pe_grid_t ig = {s0, step, (size_t)((mx - s0) / step) + 1};
    pe_val_t iv = {0};
    /* every series the inner evaluation materialises counts its steps
     * against max_samples (pe_add_ser), before it is allocated */
    c->subquery_depth++;
    pe_count_samples(c, ig.n);
    pe_eval(c, n->u.sq.expr, &ig, &iv);
    if (iv.type == PROMQL_TYPE_SCALAR) {
        pe_ser_t *s = pe_add_ser(c, &iv, NULL, 0, ig.n);
        for (size_t i = 0; i < ig.n; i++) {
            s->ok[i] = 1;
            s->v[i] = iv.sc[i];
        }
    }
    c->subquery_depth--;
    pe_raw_t *r = pe_alloc(c, (iv.ns + 1) * sizeof *r);
    for (size_t i = 0; i < iv.ns; i++) {
        size_t cnt = 0;
        for (size_t k = 0; k < ig.n; k++)
            cnt += iv.s[i].ok[k];
        r[i].l = iv.s[i].l;
        r[i].nl = iv.s[i].nl;
        r[i].ts = pe_alloc(c, (cnt + 1) * sizeof(int64_t));
        r[i].v = pe_alloc(c, (cnt + 1) * sizeof(double));
        for (size_t k = 0; k < ig.n; k++)
            if (iv.s[i].ok[k]) {
                r[i].ts[r[i].n] = pe_t(&ig, k);
                r[i].v[r[i].n++] = iv.s[i].v[k];
            }
        pe_check(c);
    }
    *out = r;
    *nout = iv.ns;
}

/* A plain range selector whose window and evaluation times are multiples
 * of a bucket width the storage has: its buckets (the largest such width). */
static int pe_buckets(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_raw_t **out,
                      size_t *nout, int64_t *range, int64_t **times)
{
    n = promql_unparen(n);
    if (!c->bfn || !c->ntier_res || n->kind != PROMQL_MATRIX_SELECTOR)
        return 0;
    const promql_node_t *vs = n->u.ms.vs;
    int64_t rng = n->u.ms.window_omitted ? g->step : n->u.ms.range_ms, mn, mx;
    int64_t *t = sel_times(c, g, &vs->u.vs.at, vs->u.vs.offset_ms, &mn, &mx);
    int64_t res = 0;
    for (size_t i = c->ntier_res; i-- > 0 && !res;) {
        int64_t w = c->tier_res[i];
        int ok = w > 0 && rng > 0 && rng % w == 0;
        for (size_t k = 0; k < g->n && ok; k++)
            ok = t[k] % w == 0;
        if (ok)
            res = w;
    }
    if (!res)
        return 0;
    *range = rng;
    *times = t;
    do_select(c, vs, mn - rng + 1, mx, res, 0, out, nout);
    return 1;
}

static int pe_counts(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_raw_t **out,
                     size_t *nout, int64_t *range, int64_t **times)
{
    n = promql_unparen(n);
    if (!c->cfn || g->n != 1 || n->kind != PROMQL_MATRIX_SELECTOR)
        return 0;
    const promql_node_t *vs = n->u.ms.vs;
    int64_t mn, mx;
    *range = n->u.ms.window_omitted ? g->step : n->u.ms.range_ms;
    *times = sel_times(c, g, &vs->u.vs.at, vs->u.vs.offset_ms, &mn, &mx);
    do_select(c, vs, mn - *range + 1, mx, -1, 0, out, nout);
    return 1;
}

/* A plain range selector of one matcher set, streamed: each series to
 * each() as the storage hands it over (see pe_stream_fn). */
static int pe_stream(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, int64_t *range,
                     int64_t **times, pe_each_fn *each, void *arg)
{
    n = promql_unparen(n);
    if (n->kind != PROMQL_MATRIX_SELECTOR || n->u.ms.vs->u.vs.nsets > 1)
        return 0;
    const promql_node_t *vs = n->u.ms.vs;
    int64_t mn, mx;
    *range = n->u.ms.window_omitted ? g->step : n->u.ms.range_ms;
    *times = sel_times(c, g, &vs->u.vs.at, vs->u.vs.offset_ms, &mn, &mx);
    pe_raw_t *none;
    size_t nnone;
    do_select_each(c, vs, mn - *range + 1, mx, 0, 1, each, arg, &none, &nnone);
    return 1;
}

/* ---- binary operators ---------------------------------------------------- */

/* Returns the value; *keep = 0 when a comparison is false. */
static double binop(promql_binop_t op, double a, double b, int *keep)
{
    *keep = 1;
    switch (op) {
    case PROMQL_OP_ADD:
        return a + b;
    case PROMQL_OP_SUB:
        return a - b;
    case PROMQL_OP_MUL:
        return a * b;
    case PROMQL_OP_DIV:
        return a / b;
    case PROMQL_OP_MOD:
        return fmod(a, b);
    case PROMQL_OP_POW:
        return pow(a, b);
    case PROMQL_OP_ATAN2:
        return atan2(a, b);
    case PROMQL_OP_EQL:
        *keep = a == b;
        return a;
    case PROMQL_OP_NEQ:
        *keep = a != b;
        return a;
    case PROMQL_OP_LSS:
        *keep = a < b;
        return a;
    case PROMQL_OP_LTE:
        *keep = a <= b;
        return a;
    case PROMQL_OP_GTR:
        *keep = a > b;
        return a;
    case PROMQL_OP_GTE:
        *keep = a >= b;
        return a;
    default:
        *keep = 0;
        return 0;
    }
}

/* The value binary node n gives for result r of binop() on a sample of
 * value v: r, or for a comparison 0/1 with bool (always kept), else v. */
static double cmp_value(const promql_node_t *n, double r, double v, int *keep)
{
    if (!promql_binop_is_cmp(n->u.bin.op))
        return r;
    if (!n->u.bin.bool_mod)
        return v;
    r = *keep;
    *keep = 1;
    return r;
}

static void eval_vec_scalar(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *vec,
                            const double *sc, int swap, pe_val_t *out)
{
    promql_binop_t op = n->u.bin.op;
    int drop = !promql_binop_is_cmp(op) || n->u.bin.bool_mod;
    out->type = PROMQL_TYPE_VECTOR;
    for (size_t i = 0; i < vec->ns; i++) {
        pe_ser_t *in = &vec->s[i];
        size_t nl = in->nl;
        st_label_t *l = drop ? pe_labels_drop_name(c, in->l, &nl) : in->l;
        pe_ser_t *o = pe_add_ser(c, out, l, nl, g->n);
        for (size_t k = 0; k < g->n; k++) {
            if (!in->ok[k])
                continue;
            double a = in->v[k], b = sc[k];
            int keep;
            double r =
                cmp_value(n, swap ? binop(op, b, a, &keep) : binop(op, a, b, &keep), a, &keep);
            if (keep) {
                o->ok[k] = 1;
                o->v[k] = r;
            }
        }
    }
    if (drop)
        pe_dedup(c, out, g->n);
}

typedef struct sigs {
    pe_gkey_t *k;
    size_t *gid; /* per series: group of its signature (shared numbering lhs+rhs) */
    size_t ng;
} sigs_t;

/* Signatures of lhs then rhs series, numbered jointly. */
static void make_sigs(pe_ctx_t *c, const promql_node_t *n, pe_val_t *a, pe_val_t *b, sigs_t *s)
{
    size_t tot = a->ns + b->ns;
    s->k = pe_alloc(c, (tot + 1) * sizeof *s->k);
    s->gid = pe_alloc(c, (tot + 1) * sizeof *s->gid);
    int on = n->u.bin.has_matching && n->u.bin.on;
    for (size_t i = 0; i < tot; i++) {
        pe_ser_t *x = i < a->ns ? &a->s[i] : &b->s[i - a->ns];
        size_t nl;
        st_label_t *l = sig_labels(c, x->l, x->nl, on, &n->u.bin.match, &nl);
        s->k[i] = (pe_gkey_t){l, nl, i};
    }
    s->ng = pe_group_keys(c, s->k, tot, s->gid, NULL);
}

static void eval_setop(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *a,
                       pe_val_t *b, pe_val_t *out)
{
    sigs_t s;
    make_sigs(c, n, a, b, &s);
    uint8_t *seen = pe_alloc(c, s.ng + 1);
    out->type = PROMQL_TYPE_VECTOR;
    promql_binop_t op = n->u.bin.op;
    pe_ser_t **lo = pe_alloc(c, (a->ns + 1) * sizeof *lo);
    for (size_t i = 0; i < a->ns; i++)
        lo[i] = pe_add_ser(c, out, a->s[i].l, a->s[i].nl, g->n);
    pe_ser_t **ro = NULL;
    if (op == PROMQL_OP_OR) {
        ro = pe_alloc(c, (b->ns + 1) * sizeof *ro);
        for (size_t i = 0; i < b->ns; i++)
            ro[i] = pe_add_ser(c, out, b->s[i].l, b->s[i].nl, g->n);
    }
    for (size_t k = 0; k < g->n; k++) {
        memset(seen, 0, s.ng);
        const pe_val_t *src = op == PROMQL_OP_OR ? a : b;
        size_t base = op == PROMQL_OP_OR ? 0 : a->ns;
        for (size_t i = 0; i < src->ns; i++)
            if (src->s[i].ok[k])
                seen[s.gid[base + i]] = 1;
        if (op == PROMQL_OP_OR) {
            for (size_t i = 0; i < a->ns; i++)
                if (a->s[i].ok[k]) {
                    lo[i]->ok[k] = 1;
                    lo[i]->v[k] = a->s[i].v[k];
                }
            for (size_t i = 0; i < b->ns; i++)
                if (b->s[i].ok[k] && !seen[s.gid[a->ns + i]]) {
                    ro[i]->ok[k] = 1;
                    ro[i]->v[k] = b->s[i].v[k];
                }
        } else {
            for (size_t i = 0; i < a->ns; i++) {
                if (!a->s[i].ok[k])
                    continue;
                int m = seen[s.gid[i]];
                if (op == PROMQL_OP_AND ? m : !m) {
                    lo[i]->ok[k] = 1;
                    lo[i]->v[k] = a->s[i].v[k];
                }
            }
        }
    }
    pe_dedup(c, out, g->n);
}

static st_label_t *result_labels(pe_ctx_t *c, const promql_node_t *n, const pe_ser_t *l,
                                 const pe_ser_t *r, size_t *nl)
{
    promql_binop_t op = n->u.bin.op;
    *nl = l->nl;
    st_label_t *o = l->l;
    if (!promql_binop_is_cmp(op) || n->u.bin.bool_mod)
        o = pe_labels_drop_name(c, o, nl);
    if (n->u.bin.card == PROMQL_CARD_ONE_TO_ONE) {
        if (n->u.bin.has_matching && n->u.bin.on) {
            st_label_t *x = pe_alloc(c, (*nl + 1) * sizeof *x);
            size_t k = 0;
            for (size_t i = 0; i < *nl; i++)
                if (in_names(&o[i], &n->u.bin.match))
                    x[k++] = o[i];
            o = x;
            *nl = k;
        } else if (n->u.bin.has_matching) {
            st_label_t *x = pe_alloc(c, (*nl + 1) * sizeof *x);
            size_t k = 0;
            for (size_t i = 0; i < *nl; i++)
                if (!in_names(&o[i], &n->u.bin.match))
                    x[k++] = o[i];
            o = x;
            *nl = k;
        }
    }
    for (size_t i = 0; i < n->u.bin.include.n; i++) {
        const char *nm = n->u.bin.include.names[i];
        const st_label_t *rv = pe_label_get(r->l, r->nl, nm);
        o = pe_labels_set(c, o, nl, nm, rv ? rv->value : "", rv ? rv->value_len : 0);
    }
    return o;
}

typedef struct pair {
    struct pair *next;
    size_t j;
    pe_ser_t *s;
} pair_t;

static void eval_vec_vec(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *a,
                         pe_val_t *b, pe_val_t *out)
{
    sigs_t s;
    int swap = n->u.bin.card == PROMQL_CARD_ONE_TO_MANY;
    make_sigs(c, n, a, b, &s);
    /* "one" side = rhs (or lhs when swapped) */
    pe_val_t *many = swap ? b : a, *one = swap ? a : b;
    size_t mbase = swap ? a->ns : 0, obase = swap ? 0 : a->ns;
    size_t *cur = pe_alloc(c, (s.ng + 1) * sizeof *cur); /* one-side series index + 1 */
    size_t *mcnt = pe_alloc(c, (s.ng + 1) * sizeof *mcnt);
    /* output series per (many i, one j) pair, created lazily */
    pair_t **pair = pe_alloc(c, (many->ns + 1) * sizeof *pair);
    out->type = PROMQL_TYPE_VECTOR;
    promql_binop_t op = n->u.bin.op;
    for (size_t k = 0; k < g->n; k++) {
        pe_check(c);
        memset(cur, 0, s.ng * sizeof *cur);
        memset(mcnt, 0, s.ng * sizeof *mcnt);
        for (size_t j = 0; j < one->ns; j++) {
            if (!one->s[j].ok[k])
                continue;
            size_t gi = s.gid[obase + j];
            if (cur[gi])
                pe_fail(c, ST_EINVAL,
                        "found duplicate series for the match group on the %s hand side of the "
                        "operation; many-to-many matching not allowed: matching labels must be "
                        "unique on one side",
                        swap ? "left" : "right");
            cur[gi] = j + 1;
        }
        for (size_t i = 0; i < many->ns; i++) {
            if (!many->s[i].ok[k])
                continue;
            size_t gi = s.gid[mbase + i];
            if (!cur[gi])
                continue;
            if (n->u.bin.card == PROMQL_CARD_ONE_TO_ONE && mcnt[gi]++)
                pe_fail(c, ST_EINVAL,
                        "multiple matches for labels: many-to-one matching must be explicit "
                        "(group_left/group_right)");
            size_t j = cur[gi] - 1;
            double lv = many->s[i].v[k], rv = one->s[j].v[k];
            if (swap) {
                double t = lv;
                lv = rv;
                rv = t;
            }
            int keep;
            double r = cmp_value(n, binop(op, lv, rv, &keep), lv, &keep);
            if (!keep)
                continue;
            /* one-to-one output labels depend on the lhs only; group_x on the pair */
            size_t key = n->u.bin.card == PROMQL_CARD_ONE_TO_ONE ? 0 : j;
            pair_t *pp = pair[i];
            while (pp && pp->j != key)
                pp = pp->next;
            if (!pp) {
                size_t nl;
                st_label_t *l = result_labels(c, n, &many->s[i], &one->s[j], &nl);
                pp = pe_alloc(c, sizeof *pp);
                pp->j = key;
                pp->s = pe_add_ser(c, out, l, nl, g->n);
                pp->next = pair[i];
                pair[i] = pp;
            }
            pp->s->ok[k] = 1;
            pp->s->v[k] = r;
        }
    }
    pe_dedup(c, out, g->n);
}

static void eval_binary(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    pe_val_t a = {0}, b = {0};
    pe_eval(c, n->u.bin.lhs, g, &a);
    pe_eval(c, n->u.bin.rhs, g, &b);
    promql_binop_t op = n->u.bin.op;
    if (a.type == PROMQL_TYPE_SCALAR && b.type == PROMQL_TYPE_SCALAR) {
        out->type = PROMQL_TYPE_SCALAR;
        out->sc = pe_alloc(c, g->n * sizeof(double));
        for (size_t k = 0; k < g->n; k++) {
            int keep;
            double r = binop(op, a.sc[k], b.sc[k], &keep);
            out->sc[k] = promql_binop_is_cmp(op) ? keep : r;
        }
        return;
    }
    if (op == PROMQL_OP_AND || op == PROMQL_OP_OR || op == PROMQL_OP_UNLESS) {
        eval_setop(c, n, g, &a, &b, out);
        return;
    }
    if (a.type == PROMQL_TYPE_SCALAR)
        eval_vec_scalar(c, n, g, &b, a.sc, 1, out);
    else if (b.type == PROMQL_TYPE_SCALAR)
        eval_vec_scalar(c, n, g, &a, b.sc, 0, out);
    else
        eval_vec_vec(c, n, g, &a, &b, out);
}

/* ---- aggregations --------------------------------------------------------- */
static void agg_labels(pe_ctx_t *c, const promql_node_t *n, const pe_ser_t *s, pe_gkey_t *k)
{
    size_t nl;
    if (n->u.agg.grouping != PROMQL_GROUP_WITHOUT)
        k->l = sig_labels(c, s->l, s->nl, 1, &n->u.agg.labels, &nl);
    else
        k->l = sig_labels(c, s->l, s->nl, 0, &n->u.agg.labels, &nl);
    k->nl = nl;
}

/*
 * topk/bottomk pick, per group and step, what a selection sort of the
 * group's present series (in input order) would put first: at each place
 * a, the first remaining series with the best value is swapped with the one
 * at a (NaN is worst). The answers, ties and output order included, are
 * those of that sort, but found with a heap keyed by (value, current place)
 * in O(m + k log m): the swap moves one series to a later place, a key that
 * only grows (a sift down). m = the group's series, k = the param.
 */
typedef struct topk_heap {
    const pe_val_t *in;
    size_t k;     /* step */
    int top;      /* topk: larger is better */
    size_t *h;    /* heap of series indices */
    size_t *hpos; /* [series] its slot in h */
    size_t *pos;  /* [series] its place in the selection order */
    size_t n;
} topk_heap_t;

static inline int topk_better(int top, double x, double y)
{
    return top ? (x > y || (isnan(y) && !isnan(x))) : (x < y || (isnan(y) && !isnan(x)));
}

/* i goes before j: a better value, or the same rank and an earlier place. */
static inline int topk_less(const topk_heap_t *t, size_t i, size_t j)
{
    double x = t->in->s[i].v[t->k], y = t->in->s[j].v[t->k];
    if (topk_better(t->top, x, y))
        return 1;
    if (topk_better(t->top, y, x))
        return 0;
    return t->pos[i] < t->pos[j];
}

static void topk_down(topk_heap_t *t, size_t at)
{
    size_t e = t->h[at];
    for (;;) {
        size_t l = 2 * at + 1, best = l;
        if (l >= t->n)
            break;
        if (l + 1 < t->n && topk_less(t, t->h[l + 1], t->h[l]))
            best = l + 1;
        if (!topk_less(t, t->h[best], e))
            break;
        t->h[at] = t->h[best];
        t->hpos[t->h[at]] = at;
        at = best;
    }
    t->h[at] = e;
    t->hpos[e] = at;
}

static void eval_topk(pe_ctx_t *c, const promql_node_t *n, int top, const pe_grid_t *g,
                      pe_val_t *in, size_t *gid, size_t ng, const double *param, pe_val_t *out)
{
    (void)n;
    pe_ser_t **o = pe_alloc(c, (in->ns + 1) * sizeof *o);
    size_t *idx = pe_alloc(c, (in->ns + 1) * sizeof *idx);
    /* groups in the order of their first input series (Prometheus' output order) */
    size_t *order = pe_alloc(c, (ng + 1) * sizeof *order);
    uint8_t *seen = pe_alloc(c, ng + 1);
    size_t no = 0;
    for (size_t i = 0; i < in->ns; i++)
        if (!seen[gid[i]]) {
            seen[gid[i]] = 1;
            order[no++] = gid[i];
        }
    /* each group's series in input order: mem[first[gr] .. first[gr + 1]) */
    size_t *first = pe_alloc(c, (ng + 2) * sizeof *first);
    size_t *mem = pe_alloc(c, (in->ns + 1) * sizeof *mem);
    for (size_t i = 0; i < in->ns; i++)
        first[gid[i] + 2]++;
    for (size_t gr = 0; gr < ng; gr++)
        first[gr + 2] += first[gr + 1];
    for (size_t i = 0; i < in->ns; i++)
        mem[first[gid[i] + 1]++] = i;
    topk_heap_t t = {.in = in,
                     .top = top,
                     .h = pe_alloc(c, (in->ns + 1) * sizeof(size_t)),
                     .hpos = pe_alloc(c, (in->ns + 1) * sizeof(size_t)),
                     .pos = pe_alloc(c, (in->ns + 1) * sizeof(size_t))};
    for (size_t k = 0; k < g->n; k++) {
        double kk = param[k];
        /* Prometheus refuses a k that is not an int64 (even with no input at
         * that step). Not when the whole evaluation selected no series at
         * all: the router plans a query by evaluating it once without data,
         * where scalar() is NaN. */
        if (!(kk >= -9223372036854775808.0 && kk <= 9223372036854775807.0)) {
            if (c->series == 0)
                continue;
            st_buf_t b;
            st_buf_init(&b);
            st_fmt_double(&b, kk);
            st_buf_put_u8(&b, 0);
            char msg[64];
            snprintf(msg, sizeof msg, "%s", b.data ? (const char *)b.data : "NaN");
            st_buf_deinit(&b);
            pe_fail(c, ST_EINVAL, "Scalar value %s overflows int64", msg);
        }
        if (kk < 1)
            continue;
        t.k = k;
        for (size_t oi = 0; oi < no; oi++) {
            size_t gr = order[oi];
            size_t m = 0;
            for (size_t x = first[gr]; x < first[gr + 1]; x++) {
                size_t i = mem[x];
                if (in->s[i].ok[k]) {
                    t.pos[i] = m;
                    t.h[m] = i;
                    idx[m++] = i;
                }
            }
            size_t want = kk >= (double)m ? m : (size_t)kk;
            if (!want)
                continue;
            t.n = m;
            for (size_t x = 0; x < m; x++)
                t.hpos[t.h[x]] = x;
            for (size_t x = m / 2; x-- > 0;)
                topk_down(&t, x);
            for (size_t a = 0; a < want; a++) {
                size_t i = t.h[0]; /* the selection sort's pick for place a */
                t.h[0] = t.h[--t.n];
                if (t.n)
                    topk_down(&t, 0);
                size_t p = t.pos[i];
                if (p != a) { /* the series at place a moves to p */
                    size_t e = idx[a];
                    idx[p] = e;
                    t.pos[e] = p;
                    topk_down(&t, t.hpos[e]);
                }
                idx[a] = i;
                if (!o[i])
                    o[i] = pe_add_ser(c, out, in->s[i].l, in->s[i].nl, g->n);
                o[i]->ok[k] = 1;
                o[i]->v[k] = in->s[i].v[k];
            }
            pe_check(c);
        }
    }
}

static void fmt_count_value(st_buf_t *b, double v);

/* Aggregation n with operator op (n's own, or the one that merges partial
 * results) over the evaluated input. */
static void agg_apply(pe_ctx_t *c, const promql_node_t *n, promql_aggop_t op, const pe_grid_t *g,
                      pe_val_t *inp, const double *param, pe_val_t *out)
{
    pe_val_t in = *inp;
    out->type = PROMQL_TYPE_VECTOR;
    pe_gkey_t *keys = pe_alloc(c, (in.ns + 1) * sizeof *keys);
    size_t *gid = pe_alloc(c, (in.ns + 1) * sizeof *gid), *rep;
    for (size_t i = 0; i < in.ns; i++) {
        agg_labels(c, n, &in.s[i], &keys[i]);
        keys[i].idx = i;
    }
    size_t ng = pe_group_keys(c, keys, in.ns, gid, &rep);
    if (op == PROMQL_AGG_TOPK || op == PROMQL_AGG_BOTTOMK) {
        eval_topk(c, n, op == PROMQL_AGG_TOPK, g, &in, gid, ng, param, out);
        return;
    }
    if (promql_agg_info(op)->flags & PROMQL_AGGF_NO_EVAL)
        pe_fail(c, ST_EINVAL, "aggregation %s is not supported", promql_aggop_str(op));
    if (op == PROMQL_AGG_COUNT_VALUES) {
        const promql_node_t *p = promql_unparen(n->u.agg.param);
        if (p->kind != PROMQL_STRING)
            pe_fail(c, ST_EINVAL, "count_values: label must be a string literal");
        const char *lname = p->u.str.s;
        if (!st_prom_label_name_ok(lname, p->u.str.len))
            pe_fail(c, ST_EINVAL, "invalid label name \"%s\"", lname);
        pe_val_t tmp = {0};
        st_buf_t b;
        st_buf_init(&b);
        for (size_t k = 0; k < g->n; k++)
            for (size_t i = 0; i < in.ns; i++) {
                if (!in.s[i].ok[k])
                    continue;
                b.len = 0;
                fmt_count_value(&b, in.s[i].v[k]);
                size_t nl = keys[rep[gid[i]]].nl;
                st_label_t *l =
                    pe_labels_set(c, keys[rep[gid[i]]].l, &nl, lname, (const char *)b.data, b.len);
                pe_ser_t *s = pe_add_ser(c, &tmp, l, nl, g->n);
                s->ok[k] = 1;
                s->v[k] = 1;
            }
        st_buf_deinit(&b);
        /* sum the singletons per label set */
        pe_gkey_t *k2 = pe_alloc(c, (tmp.ns + 1) * sizeof *k2);
        size_t *g2 = pe_alloc(c, (tmp.ns + 1) * sizeof *g2), *r2;
        for (size_t i = 0; i < tmp.ns; i++)
            k2[i] = (pe_gkey_t){tmp.s[i].l, tmp.s[i].nl, i};
        size_t n2 = pe_group_keys(c, k2, tmp.ns, g2, &r2);
        pe_ser_t **os = pe_alloc(c, (n2 + 1) * sizeof *os);
        for (size_t x = 0; x < n2; x++)
            os[x] = pe_add_ser(c, out, tmp.s[r2[x]].l, tmp.s[r2[x]].nl, g->n);
        for (size_t i = 0; i < tmp.ns; i++)
            for (size_t k = 0; k < g->n; k++)
                if (tmp.s[i].ok[k]) {
                    os[g2[i]]->ok[k] = 1;
                    os[g2[i]]->v[k] += 1;
                }
        return;
    }
    pe_ser_t **os = pe_alloc(c, (ng + 1) * sizeof *os);
    for (size_t x = 0; x < ng; x++)
        os[x] = pe_add_ser(c, out, keys[rep[x]].l, keys[rep[x]].nl, g->n);
    double *buf = pe_alloc(c, (in.ns + 1) * sizeof *buf);
    size_t *cnt = pe_alloc(c, (ng + 1) * sizeof *cnt);
    double *mean = pe_alloc(c, (ng + 1) * sizeof *mean);
    double *m2 = pe_alloc(c, (ng + 1) * sizeof *m2);
    size_t *members = NULL, *first = NULL;
    if (op == PROMQL_AGG_QUANTILE) {
        /* the input series of each group, in input order (a counting sort
         * by group): each step visits every series once, not once per group */
        members = pe_alloc(c, (in.ns + 1) * sizeof *members);
        first = pe_alloc(c, (ng + 2) * sizeof *first);
        memset(first, 0, (ng + 2) * sizeof *first);
        for (size_t i = 0; i < in.ns; i++)
            first[gid[i] + 2]++;
        for (size_t gr = 2; gr < ng + 2; gr++)
            first[gr] += first[gr - 1];
        for (size_t i = 0; i < in.ns; i++)
            members[first[gid[i] + 1]++] = i;
    }
    for (size_t k = 0; k < g->n; k++) {
        pe_check(c);
        memset(cnt, 0, ng * sizeof *cnt);
        memset(mean, 0, ng * sizeof *mean);
        memset(m2, 0, ng * sizeof *m2);
        for (size_t i = 0; i < in.ns; i++) {
            if (!in.s[i].ok[k])
                continue;
            size_t gr = gid[i];
            double v = in.s[i].v[k];
            pe_ser_t *o = os[gr];
            size_t cn = ++cnt[gr];
            switch (op) {
            case PROMQL_AGG_SUM:
                o->v[k] = cn == 1 ? v : o->v[k] + v;
                break;
            case PROMQL_AGG_MIN:
                if (cn == 1 || v < o->v[k] || isnan(o->v[k]))
                    o->v[k] = v;
                break;
            case PROMQL_AGG_MAX:
                if (cn == 1 || v > o->v[k] || isnan(o->v[k]))
                    o->v[k] = v;
                break;
            case PROMQL_AGG_COUNT:
                o->v[k] = (double)cn;
                break;
            case PROMQL_AGG_GROUP:
                o->v[k] = 1;
                break;
            case PROMQL_AGG_AVG:
                mean[gr] = cn == 1 ? v : pe_mean_add(mean[gr], (double)cn, v);
                break;
            case PROMQL_AGG_STDDEV:
            case PROMQL_AGG_STDVAR: {
                double d = v - mean[gr];
                mean[gr] += d / (double)cn;
                m2[gr] += d * (v - mean[gr]);
                break;
            }
            default:
                break;
            }
            o->ok[k] = 1;
        }
        if (op == PROMQL_AGG_AVG || op == PROMQL_AGG_STDDEV || op == PROMQL_AGG_STDVAR)
            for (size_t gr = 0; gr < ng; gr++) {
                if (!cnt[gr])
                    continue;
                double var = m2[gr] / (double)cnt[gr];
                os[gr]->v[k] = op == PROMQL_AGG_AVG      ? mean[gr]
                               : op == PROMQL_AGG_STDVAR ? var
                                                         : sqrt(var);
            }
        if (op == PROMQL_AGG_QUANTILE)
            for (size_t gr = 0; gr < ng; gr++) {
                size_t m = 0;
                for (size_t x = first[gr]; x < first[gr + 1]; x++) {
                    size_t i = members[x];
                    if (in.s[i].ok[k])
                        buf[m++] = in.s[i].v[k];
                }
                if (m)
                    os[gr]->v[k] = pe_quantile(param[k], buf, m);
            }
    }
}

static const double *agg_param(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g)
{
    pe_val_t pv = {0};
    if (!n->u.agg.param || n->u.agg.param->type != PROMQL_TYPE_SCALAR)
        return NULL;
    pe_eval(c, n->u.agg.param, g, &pv);
    return pv.sc;
}

static void eval_aggregate(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    pe_val_t in = {0};
    const double *param = agg_param(c, n, g);
    pe_eval(c, n->u.agg.expr, g, &in);
    agg_apply(c, n, n->u.agg.op, g, &in, param, out);
}

/* opts.avg_parts: avg n as its sums then its counts, the argument evaluated
 * once (a router's pushed avg otherwise costs the node two evaluations). */
static void eval_avg_parts(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out,
                           size_t *nsums)
{
    pe_val_t in = {0}, sums = {0}, cnts = {0};
    pe_eval(c, n->u.agg.expr, g, &in);
    agg_apply(c, n, PROMQL_AGG_SUM, g, &in, NULL, &sums);
    agg_apply(c, n, PROMQL_AGG_COUNT, g, &in, NULL, &cnts);
    memset(out, 0, sizeof *out);
    out->type = PROMQL_TYPE_VECTOR;
    out->ns = out->cap = sums.ns + cnts.ns;
    out->s = pe_alloc(c, (out->ns + 1) * sizeof *out->s);
    if (sums.ns)
        memcpy(out->s, sums.s, sums.ns * sizeof *out->s);
    if (cnts.ns)
        memcpy(out->s + sums.ns, cnts.s, cnts.ns * sizeof *out->s);
    *nsums = sums.ns;
}

/* ---- pushed-down subtrees -------------------------------------------------- */

struct promql_vsink {
    pe_ctx_t *c;
    pe_val_t *v;
    size_t nsteps;
};

static void vsink_add(pe_ctx_t *c, void *skv, const sink_in_t *in)
{
    promql_vsink_t *sk = skv;
    pe_ser_t *s =
        pe_add_ser(c, sk->v, copy_labels(c, in->labels, in->nlabels), in->nlabels, sk->nsteps);
    size_t k = 0;
    for (size_t i = 0; i < sk->nsteps && k < in->n; i++)
        if (!in->present || (in->present[i >> 3] >> (i & 7)) & 1) {
            s->ok[i] = 1;
            s->v[i] = in->v[k++];
        }
    if (k != in->n)
        pe_fail(c, ST_EPROTO, "pushed-down result has more values than steps");
}

int promql_vsink_add(promql_vsink_t *sk, const st_label_t *labels, size_t nlabels,
                     const uint8_t *present, const double *v, size_t nv)
{
    return sink_call(sk->c, vsink_add, sk,
                     &(sink_in_t){labels, nlabels, NULL, present, v, nv, NULL});
}

static int pser_cmp(const void *a, const void *b)
{
    const pe_ser_t *x = a, *y = b;
    return st_labels_cmp(x->l, x->nl, y->l, y->nl);
}

/* Every node's answer for one part of a pushed subtree, sorted by labels
 * (the order a local selection would have produced). */
static void remote_part(pe_ctx_t *c, const promql_node_t *n, int part, const pe_grid_t *g,
                        pe_val_t *out)
{
    memset(out, 0, sizeof *out);
    out->type = PROMQL_TYPE_VECTOR;
    promql_vsink_t sk = {c, out, g->n};
    int rc = c->remote(c->arg, n, part, g->start, g->step, g->n, &sk);
    if (c->sink_rc) {
        c->rc = c->sink_rc;
        longjmp(c->jb, 1); /* message already set */
    }
    if (rc)
        pe_fail(c, rc < 0 ? rc : ST_EIO, "pushed-down evaluation failed: %s", st_strerror(rc));
    if (out->ns > 1)
        qsort(out->s, out->ns, sizeof *out->s, pser_cmp);
}

static void eval_remote(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    if (n->push == PROMQL_PUSH_SERIES) {
        remote_part(c, n, 0, g, out);
        /* a label set produced on two nodes: merged, or the same error as here */
        pe_dedup(c, out, g->n);
        return;
    }
    promql_aggop_t op = n->u.agg.op;
    const double *param = agg_param(c, n, g);
    pe_val_t in;
    remote_part(c, n, 0, g, &in);
    if (op == PROMQL_AGG_TOPK || op == PROMQL_AGG_BOTTOMK)
        pe_dedup(c, &in, g->n); /* full label sets: a clash between nodes is an error */
    if (op != PROMQL_AGG_AVG) {
        /* partial counts add up; the other operators merge with themselves */
        agg_apply(c, n, op == PROMQL_AGG_COUNT ? PROMQL_AGG_SUM : op, g, &in, param, out);
        return;
    }
    pe_val_t sums = {0}, cin, cnts = {0};
    agg_apply(c, n, PROMQL_AGG_SUM, g, &in, NULL, &sums);
    remote_part(c, n, 1, g, &cin);
    agg_apply(c, n, PROMQL_AGG_SUM, g, &cin, NULL, &cnts);
    /* both come out sorted by their group labels */
    memset(out, 0, sizeof *out);
    out->type = PROMQL_TYPE_VECTOR;
    size_t j = 0;
    for (size_t i = 0; i < sums.ns; i++) {
        while (j < cnts.ns &&
               st_labels_cmp(cnts.s[j].l, cnts.s[j].nl, sums.s[i].l, sums.s[i].nl) < 0)
            j++;
        if (j == cnts.ns ||
            st_labels_cmp(cnts.s[j].l, cnts.s[j].nl, sums.s[i].l, sums.s[i].nl) != 0)
            continue;
        pe_ser_t *o = pe_add_ser(c, out, sums.s[i].l, sums.s[i].nl, g->n);
        for (size_t k = 0; k < g->n; k++)
            if (sums.s[i].ok[k] && cnts.s[j].ok[k] && cnts.s[j].v[k] > 0) {
                o->ok[k] = 1;
                o->v[k] = sums.s[i].v[k] / cnts.s[j].v[k];
            }
    }
}

/* ---- dispatcher ---------------------------------------------------------- */

/* A call runs through the row the parser resolved (n->u.call.func); a
 * function the evaluator lacks still evaluates an instant-vector first
 * argument, so that argument's errors come first. */
static void eval_call(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    const promql_func_t *f = n->u.call.func;
    if (f && f->eval) {
        f->eval(c, n, g, out);
        return;
    }
    if (n->u.call.nargs > 0 && n->u.call.args[0]->type == PROMQL_TYPE_VECTOR) {
        pe_val_t a;
        pe_eval(c, n->u.call.args[0], g, &a);
    }
    pe_fail(c, ST_EINVAL, "function \"%s\" is not supported", n->u.call.name);
}

static void pe_eval(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    pe_check(c);
    memset(out, 0, sizeof *out);
    out->type = n->type;
    if (n->push && c->remote) {
        eval_remote(c, n, g, out);
        return;
    }
    switch (n->kind) {
    case PROMQL_NUMBER:
        out->sc = pe_alloc(c, g->n * sizeof(double));
        for (size_t k = 0; k < g->n; k++)
            out->sc[k] = n->u.number;
        return;
    case PROMQL_STRING:
        out->str = n->u.str.s;
        out->slen = n->u.str.len;
        return;
    case PROMQL_PAREN:
        pe_eval(c, n->u.paren.expr, g, out);
        return;
    case PROMQL_VECTOR_SELECTOR:
        eval_vs(c, n, g, out);
        return;
    case PROMQL_MATRIX_SELECTOR:
    case PROMQL_SUBQUERY:
        pe_fail(c, ST_EINVAL, "range vector is only allowed as a function argument");
    case PROMQL_UNARY:
        pe_eval(c, n->u.unary.expr, g, out);
        if (n->u.unary.op != PROMQL_OP_SUB)
            return;
        if (out->type == PROMQL_TYPE_SCALAR) {
            for (size_t k = 0; k < g->n; k++)
                out->sc[k] = -out->sc[k];
            return;
        }
        for (size_t i = 0; i < out->ns; i++) {
            out->s[i].l = pe_labels_drop_name(c, out->s[i].l, &out->s[i].nl);
            for (size_t k = 0; k < g->n; k++)
                out->s[i].v[k] = -out->s[i].v[k];
        }
        pe_dedup(c, out, g->n);
        return;
    case PROMQL_BINARY:
        eval_binary(c, n, g, out);
        return;
    case PROMQL_AGGREGATE:
        eval_aggregate(c, n, g, out);
        return;
    case PROMQL_CALL:
        eval_call(c, n, g, out);
        return;
    }
}

/* ---- results ---------------------------------------------------------------- */

static int ser_cmp(const void *a, const void *b)
{
    const promql_series_t *x = a, *y = b;
    return st_labels_cmp(x->labels, x->nlabels, y->labels, y->nlabels);
}

/* Instant results whose order the query defines: sort(), sort_desc(), topk, bottomk. */
static int root_keeps_order(const promql_node_t *n)
{
    n = promql_unparen(n);
    if (n->kind == PROMQL_CALL)
        return n->u.call.func && (n->u.call.func->flags & PROMQL_FN_ORDERED);
    if (n->kind == PROMQL_AGGREGATE)
        return n->u.agg.op == PROMQL_AGG_TOPK || n->u.agg.op == PROMQL_AGG_BOTTOMK;
    return 0;
}

/* An instant query of a range vector (`m[5m]`, `expr[1h:1m]`): its samples. */
static void eval_range_root(pe_ctx_t *c, const promql_node_t *root, const pe_grid_t *g,
                            promql_result_t *r)
{
    pe_raw_t *raw;
    size_t nraw;
    int64_t range, *te;
    pe_matrix(c, root, g, &raw, &nraw, &range, &te);
    r->type = PROMQL_RES_MATRIX;
    r->series = pe_alloc(c, (nraw + 1) * sizeof *r->series);
    for (size_t i = 0; i < nraw; i++) {
        size_t lo = 0, hi = raw[i].n;
        while (lo < hi && raw[i].ts[lo] <= te[0] - range)
            lo++;
        while (hi > lo && raw[i].ts[hi - 1] > te[0])
            hi--;
        if (lo == hi)
            continue;
        pe_count_samples(c, hi - lo);
        promql_series_t *s = &r->series[r->nseries++];
        s->labels = raw[i].l;
        s->nlabels = raw[i].nl;
        s->ts = raw[i].ts + lo;
        s->v = raw[i].v + lo;
        s->n = hi - lo;
        pe_check(c);
    }
    qsort(r->series, r->nseries, sizeof *r->series, ser_cmp);
}

int promql_eval(const promql_expr_t *expr, int64_t start_ms, int64_t end_ms, int64_t step_ms,
                const promql_eval_opts_t *o, promql_select_fn fn, void *arg, promql_result_t **out,
                char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = 0;
    if (!expr || !fn || step_ms <= 0 || end_ms < start_ms) {
        if (err && errlen)
            snprintf(err, errlen, "invalid query range or step");
        return ST_EINVAL;
    }
    if (!(o && o->subquery) && (end_ms - start_ms) / step_ms > 11000) {
        if (err && errlen)
            snprintf(err, errlen,
                     "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing "
                     "the query resolution (?step=XX)");
        return ST_ELIMIT;
    }
    pe_ctx_t *c = calloc(1, sizeof *c);
    if (!c)
        return ST_ENOMEM;
    c->err = err;
    c->errlen = errlen;
    c->qstart = o && o->subquery ? o->query_start_ms : start_ms;
    c->qend = o && o->subquery ? o->query_end_ms : end_ms;
    c->remote = o ? o->remote : NULL;
    c->lookback = o && o->lookback_ms > 0 ? o->lookback_ms : 300000;
    c->max_samples = o && o->max_samples ? o->max_samples : 50000000;
    c->max_series = o && o->max_series ? o->max_series : UINT64_MAX;
    c->deadline = o ? o->deadline_ms : 0;
    c->max_bytes = o ? o->max_bytes : 0;
    c->shared = o ? o->shared_bytes : NULL;
    c->shared_max = o ? o->shared_max_bytes : 0;
    c->cancel = o ? o->cancel : NULL;
    if (o && o->refused)
        *o->refused = PROMQL_LIMIT_NONE;
    c->fn = fn;
    c->arg = arg;
    c->eval = pe_eval;
    c->matrix = pe_matrix;
    c->buckets = pe_buckets;
    c->counts = pe_counts;
    c->stream = pe_stream;
    c->tier_res = o ? o->tier_res : NULL;
    c->ntier_res = o ? o->ntier_res : 0;
    c->bfn = o ? o->buckets : NULL;
    c->cfn = o ? o->counts : NULL;
    int range = start_ms != end_ms;
    if (setjmp(c->jb)) {
        int rc = c->rc;
        if (o && o->refused)
            *o->refused = c->refused;
        pe_mem_free(c->mem);
        pe_mem_release(c->shared, c->bytes);
        free(c);
        return rc;
    }
    if (c->deadline && st_mono_ms() > c->deadline)
        pe_refuse(c, PROMQL_LIMIT_TIMEOUT, ST_ETIMEDOUT, "query timed out");
    const promql_node_t *root = promql_root(expr);
    pe_grid_t g = {start_ms, step_ms, (size_t)((end_ms - start_ms) / step_ms) + 1};
    promql_result_t *r = pe_alloc(c, sizeof *r);
    r->ts_ms = start_ms;
    if (root->type == PROMQL_TYPE_MATRIX) {
        if (range)
            pe_fail(c, ST_EINVAL,
                    "invalid expression type \"range vector\" for range query, must be Scalar or "
                    "instant Vector");
        eval_range_root(c, root, &g, r);
        r->mem_ = c->mem;
        r->mem_bytes_ = c->bytes;
        r->mem_shared_ = c->shared;
        free(c);
        *out = r;
        return 0;
    }
    pe_val_t v;
    const promql_node_t *ur = promql_unparen(root);
    size_t vsums = SIZE_MAX; /* avg_parts: the series of v that are sums */
    if (o && o->avg_parts && ur->kind == PROMQL_AGGREGATE && ur->u.agg.op == PROMQL_AGG_AVG)
        eval_avg_parts(c, ur, &g, &v, &vsums);
    else
        pe_eval(c, root, &g, &v);
    if (v.type == PROMQL_TYPE_STRING) {
        if (range)
            pe_fail(c, ST_EINVAL,
                    "invalid expression type \"string\" for range query, must be Scalar or "
                    "instant Vector");
        r->type = PROMQL_RES_STRING;
        r->str = v.str;
        r->str_len = v.slen;
    } else if (v.type == PROMQL_TYPE_SCALAR && !range) {
        r->type = PROMQL_RES_SCALAR;
        r->scalar = v.sc[0];
    } else {
        if (v.type == PROMQL_TYPE_SCALAR) {
            pe_ser_t *s = pe_add_ser(c, &v, NULL, 0, g.n);
            for (size_t k = 0; k < g.n; k++) {
                s->ok[k] = 1;
                s->v[k] = v.sc[k];
            }
        }
        r->type = range ? PROMQL_RES_MATRIX : PROMQL_RES_VECTOR;
        r->series = pe_alloc(c, (v.ns + 1) * sizeof *r->series);
        for (size_t i = 0; i < v.ns; i++) {
            size_t cnt = 0;
            if (i == vsums)
                r->avg_sums = r->nseries;
            for (size_t k = 0; k < g.n; k++)
                cnt += v.s[i].ok[k];
            if (!cnt)
                continue;
            pe_count_samples(c, cnt);
            promql_series_t *s = &r->series[r->nseries++];
            s->labels = v.s[i].l;
            s->nlabels = v.s[i].nl;
            s->ts = pe_alloc_raw(c, cnt * sizeof *s->ts); /* cnt values below */
            s->v = pe_alloc_raw(c, cnt * sizeof *s->v);
            for (size_t k = 0; k < g.n; k++)
                if (v.s[i].ok[k]) {
                    s->ts[s->n] = pe_t(&g, k);
                    s->v[s->n++] = v.s[i].v[k];
                }
        }
        if (vsums != SIZE_MAX) { /* each half sorted on its own */
            if (vsums == v.ns)
                r->avg_sums = r->nseries;
            qsort(r->series, r->avg_sums, sizeof *r->series, ser_cmp);
            qsort(r->series + r->avg_sums, r->nseries - r->avg_sums, sizeof *r->series, ser_cmp);
        } else if (range || !root_keeps_order(root)) {
            qsort(r->series, r->nseries, sizeof *r->series, ser_cmp);
        }
    }
    r->mem_ = c->mem;
    r->mem_bytes_ = c->bytes;
    r->mem_shared_ = c->shared;
    free(c);
    *out = r;
    return 0;
}

void promql_result_free(promql_result_t *r)
{
    if (!r)
        return;
    _Atomic uint64_t *shared = r->mem_shared_;
    uint64_t bytes = r->mem_bytes_;
    pe_mem_free(r->mem_); /* r lives in that memory */
    pe_mem_release(shared, bytes);
}

const char *promql_limit_name(promql_limit_t l)
{
    static const char *const names[PROMQL_LIMIT_COUNT] = {
        [PROMQL_LIMIT_NONE] = "none",
        [PROMQL_LIMIT_SAMPLES] = "query_max_samples",
        [PROMQL_LIMIT_SERIES] = "query_max_series",
        [PROMQL_LIMIT_BYTES] = "query_max_mb",
        [PROMQL_LIMIT_TOTAL_BYTES] = "query_total_max_mb",
        [PROMQL_LIMIT_TIMEOUT] = "request_timeout",
        [PROMQL_LIMIT_REGEX] = "regex_match_limit",
    };
    return (unsigned)l < PROMQL_LIMIT_COUNT ? names[l] : "none";
}

static void fmt_count_value(st_buf_t *b, double v)
{
    st_fmt_double(b, v);
}

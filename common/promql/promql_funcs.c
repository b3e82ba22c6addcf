/*
 * promql_funcs — PromQL functions: rollups over range vectors and instant
 * functions, and the one function table (funcs[], at the end) that the
 * parser, the planner and the evaluator read: a row per function with its
 * argument and result types, flags, and the implementation the evaluator
 * calls through the row the parser resolved for the call. The functions use
 * the leaf helpers of promql_pe.c and evaluate their arguments through the
 * context's eval/matrix callbacks, so this file calls nothing in the
 * evaluator (promql_eval.c) and the parser may read the table.
 */
#include "promql_eval_int.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "st_err.h"
#include "st_text.h"

/* ---- rollups -------------------------------------------------------------- */

typedef enum {
    R_RATE,
    R_INCREASE,
    R_DELTA,
    R_IRATE,
    R_IDELTA,
    R_DERIV,
    R_PREDICT,
    R_RESETS,
    R_CHANGES,
    R_AVG,
    R_MIN,
    R_MAX,
    R_SUM,
    R_COUNT,
    R_QUANTILE,
    R_STDDEV,
    R_STDVAR,
    R_LAST,
    R_PRESENT,
    R_ABSENT,
    R_HOLT
} rollup_t;

/* The extrapolation of Prometheus' extrapolatedRate: n samples from (t0, v0)
 * to t1, whose change (resets added back for a counter) is res. */
static double extrapolate(int64_t t0, int64_t t1, double v0, size_t n, double res, int64_t te,
                          int64_t range, int counter, int is_rate)
{
    double to_start = (double)(t0 - (te - range)) / 1000.0;
    double to_end = (double)(te - t1) / 1000.0;
    double sampled = (double)(t1 - t0) / 1000.0;
    double avg = sampled / (double)(n - 1);
    if (counter && res > 0 && v0 >= 0) {
        double to_zero = sampled * (v0 / res);
        if (to_zero < to_start)
            to_start = to_zero;
    }
    double thr = avg * 1.1, interval = sampled;
    interval += to_start >= thr ? avg / 2 : to_start;
    interval += to_end >= thr ? avg / 2 : to_end;
    double f = interval / sampled;
    if (is_rate)
        f /= (double)range / 1000.0;
    return res * f;
}

/* What a counter adds back between prev and cur: prev at a reset, else
 * -0.0, which leaves any double (NaN, -0.0 included) unchanged. Done with a
 * mask because the compiler turns a ternary back into a branch (rates of
 * gauges reset at every other sample: a branch mispredicts half the time). */
static double reset_add(double prev, double cur)
{
    uint64_t m = (uint64_t)0 - (uint64_t)(cur < prev), b;
    memcpy(&b, &prev, sizeof b);
    b = (b & m) | (0x8000000000000000ull & ~m); /* prev or -0.0 */
    double add;
    memcpy(&add, &b, sizeof add);
    return add;
}

/* Prometheus' extrapolatedRate over samples in (te - range, te]. */
static int extrapolated(const int64_t *ts, const double *v, size_t n, int64_t te, int64_t range,
                        int counter, int is_rate, double *out)
{
    if (n < 2)
        return 0;
    double res = v[n - 1] - v[0];
    if (counter) /* resets add the value before them (equal to the branchy loop bit for bit) */
        for (size_t i = 1; i < n; i++)
            res += reset_add(v[i - 1], v[i]);
    *out = extrapolate(ts[0], ts[n - 1], v[0], n, res, te, range, counter, is_rate);
    return 1;
}

/* The same from whole buckets: the first and last samples, the count, and
 * the resets inside (rsum) and between buckets, added in time order. */
static int extrapolated_b(const promql_bucket_t *b, size_t n, int64_t te, int64_t range,
                          int counter, int is_rate, double *out)
{
    double cnt = 0;
    for (size_t i = 0; i < n; i++)
        cnt += b[i].count;
    if (n == 0 || cnt < 2)
        return 0;
    double res = b[n - 1].last - b[0].first;
    if (counter)
        for (size_t i = 0; i < n; i++) {
            if (i)
                res += reset_add(b[i - 1].last, b[i].first);
            res += b[i].rsum;
        }
    *out = extrapolate(b[0].first_ts, b[n - 1].last_ts, b[0].first, (size_t)cnt, res, te, range,
                       counter, is_rate);
    return 1;
}

static void linreg(const int64_t *ts, const double *v, size_t n, int64_t t0, double *slope,
                   double *icpt)
{
    double sx = 0, sy = 0, sxy = 0, sx2 = 0;
    int cst = 1;
    for (size_t i = 0; i < n; i++) {
        double x = (double)(ts[i] - t0) / 1000.0;
        sx += x;
        sy += v[i];
        sxy += x * v[i];
        sx2 += x * x;
        if (i && v[i] != v[0])
            cst = 0;
    }
    if (cst && isfinite(v[0])) {
        *slope = 0;
        *icpt = v[0];
        return;
    }
    double nn = (double)n;
    double cov = sxy - sx * sy / nn, var = sx2 - sx * sx / nn;
    *slope = cov / var;
    *icpt = sy / nn - *slope * sx / nn;
}

/*
 * Double exponential smoothing (holt_winters in Prometheus 2, renamed
 * double_exponential_smoothing in 3): level s and trend b start at v[0] and
 * v[1] - v[0]; each later sample moves s towards it by sf, and b towards the
 * latest change of s by tf (b unchanged for the first step).
 */
static int smooth2(const double *v, size_t n, double sf, double tf, double *out)
{
    if (n < 2)
        return 0;
    double prev = 0, s = v[0], b = v[1] - v[0];
    for (size_t i = 1; i < n; i++) {
        if (i > 1)
            b = tf * (s - prev) + (1 - tf) * b;
        double next = sf * v[i] + (1 - sf) * (s + b);
        prev = s;
        s = next;
    }
    *out = s;
    return 1;
}

static int rollup1(rollup_t r, const int64_t *ts, const double *v, size_t n, int64_t te,
                   int64_t range, int64_t tgrid, double param, double param2, double *tmp,
                   double *out)
{
    switch (r) {
    case R_HOLT:
        return smooth2(v, n, param, param2, out);
    case R_RATE:
        return extrapolated(ts, v, n, te, range, 1, 1, out);
    case R_INCREASE:
        return extrapolated(ts, v, n, te, range, 1, 0, out);
    case R_DELTA:
        return extrapolated(ts, v, n, te, range, 0, 0, out);
    case R_IRATE:
    case R_IDELTA: {
        if (n < 2)
            return 0;
        double d = v[n - 1] - v[n - 2];
        if (r == R_IDELTA) {
            *out = d;
            return 1;
        }
        if (v[n - 1] < v[n - 2])
            d = v[n - 1];
        int64_t dt = ts[n - 1] - ts[n - 2];
        if (dt == 0)
            return 0;
        *out = d / ((double)dt / 1000.0);
        return 1;
    }
    case R_DERIV:
    case R_PREDICT: {
        if (n < 2)
            return 0;
        double s, ic;
        linreg(ts, v, n, r == R_DERIV ? ts[0] : tgrid, &s, &ic);
        *out = r == R_DERIV ? s : ic + s * param;
        return 1;
    }
    default:
        break;
    }
    if (n == 0)
        return 0;
    double acc = 0;
    switch (r) {
    case R_RESETS:
    case R_CHANGES:
        for (size_t i = 1; i < n; i++) {
            if (r == R_RESETS)
                acc += v[i] < v[i - 1];
            else
                acc += v[i] != v[i - 1] && !(isnan(v[i]) && isnan(v[i - 1]));
        }
        break;
    case R_SUM:
        for (size_t i = 0; i < n; i++)
            acc += v[i];
        break;
    case R_COUNT:
        acc = (double)n;
        break;
    case R_MIN:
    case R_MAX: {
        /* a NaN is replaced by the next value; then NaNs never win: one
         * branch-free loop per operator (the windows overlap, so these
         * loops are most of a min/max_over_time's time) */
        size_t i = 1;
        acc = v[0];
        while (isnan(acc) && i < n)
            acc = v[i++];
        if (r == R_MIN)
            for (; i < n; i++)
                acc = v[i] < acc ? v[i] : acc;
        else
            for (; i < n; i++)
                acc = v[i] > acc ? v[i] : acc;
        break;
    }
    case R_AVG:
        /* the sum divided once (no division per sample) while it stays
         * finite; else Prometheus' running mean, whose infinities and NaN
         * rules this keeps */
        for (size_t i = 0; i < n; i++)
            acc += v[i];
        if (isfinite(acc)) {
            acc /= (double)n;
            break;
        }
        acc = v[0];
        for (size_t i = 1; i < n; i++)
            acc = pe_mean_add(acc, (double)(i + 1), v[i]);
        break;
    case R_STDDEV:
    case R_STDVAR: {
        double mean = 0, m2 = 0;
        for (size_t i = 0; i < n; i++) {
            double d = v[i] - mean;
            mean += d / (double)(i + 1);
            m2 += d * (v[i] - mean);
        }
        acc = m2 / (double)n;
        if (r == R_STDDEV)
            acc = sqrt(acc);
        break;
    }
    case R_QUANTILE:
        memcpy(tmp, v, n * sizeof *v);
        acc = pe_quantile(param, tmp, n);
        break;
    case R_LAST:
        acc = v[n - 1];
        break;
    case R_PRESENT:
        acc = 1;
        break;
    default:
        return 0;
    }
    *out = acc;
    return 1;
}

/* Rollups exact on whole buckets (promql_bucket_exact). */
static int bucket_rollup(rollup_t r)
{
    switch (r) {
    case R_SUM:
    case R_COUNT:
    case R_MIN:
    case R_MAX:
    case R_LAST:
    case R_PRESENT:
    case R_RATE:
    case R_INCREASE:
    case R_DELTA:
        return 1;
    default:
        return 0;
    }
}

/* rollup1 over n whole buckets of the window. */
static int rollup_b(rollup_t r, const promql_bucket_t *b, size_t n, int64_t te, int64_t range,
                    double *out)
{
    if (r == R_RATE || r == R_INCREASE || r == R_DELTA)
        return extrapolated_b(b, n, te, range, r != R_DELTA, r == R_RATE, out);
    if (n == 0)
        return 0;
    double acc = 0;
    switch (r) {
    case R_SUM:
        for (size_t i = 0; i < n; i++)
            acc += b[i].sum;
        break;
    case R_COUNT:
        for (size_t i = 0; i < n; i++)
            acc += b[i].count;
        break;
    case R_MIN:
    case R_MAX:
        acc = r == R_MIN ? b[0].min : b[0].max;
        for (size_t i = 1; i < n; i++) {
            double v = r == R_MIN ? b[i].min : b[i].max;
            if ((r == R_MIN ? v < acc : v > acc) || isnan(acc))
                acc = v;
        }
        break;
    case R_LAST:
        acc = b[n - 1].last;
        break;
    default: /* R_PRESENT */
        acc = 1;
        break;
    }
    *out = acc;
    return 1;
}

/*
 * Labels absent() / absent_over_time() report, as Prometheus builds them:
 * matchers in order, the first name="v" of a name sets it, any later matcher
 * of that name (of any type) removes it again; name="" means no label. So
 * {a="x",a="y"} and {a="x",a=~"y"} give {}, {a=~"y",a="x"} gives {a="x"}.
 */
static st_label_t *absent_labels(pe_ctx_t *c, const promql_node_t *a, size_t *nl)
{
    a = promql_unparen(a);
    if (a->kind == PROMQL_MATRIX_SELECTOR)
        a = a->u.ms.vs;
    *nl = 0;
    if (a->kind != PROMQL_VECTOR_SELECTOR || a->u.vs.nsets > 1)
        return NULL;
    size_t nm = a->u.vs.nsets ? a->u.vs.sets[0].n : 0;
    const st_matcher_t *ms = nm ? a->u.vs.sets[0].m : NULL;
    st_label_t *l = pe_alloc(c, (nm + 1) * sizeof *l);
    size_t k = 0;
    for (size_t i = 0; i < nm; i++) {
        const st_matcher_t *m = &ms[i];
        if (m->type != ST_MATCH_EQ || !strcmp(m->name, ST_METRIC_LABEL))
            continue;
        int drop = !m->value[0];
        for (size_t j = 0; j < nm && !drop; j++)
            if (j != i && !strcmp(ms[j].name, m->name) && (j > i || ms[j].type == ST_MATCH_EQ))
                drop = 1;
        if (drop)
            continue;
        l[k++] =
            (st_label_t){m->name, m->value, (uint32_t)strlen(m->name), (uint32_t)strlen(m->value)};
    }
    st_labels_sort(l, k);
    *nl = k;
    return l;
}

/* One rollup over a grid: what each series is evaluated with. */
typedef struct rollup_job {
    rollup_t r;
    const pe_grid_t *g;
    int64_t range;
    int64_t *te; /* per-step evaluation times */
    const double *param, *param2;
    int counted; /* raw holds counts (pe_counts_fn), one sample a window */
    int keep;    /* the metric name stays */
    double *tmp; /* scratch of rollup1, tmpcap values */
    size_t tmpcap;
    pe_val_t *out;
    pe_raw_t *from; /* streamed: the input series of out->s[i], to order by */
    size_t fromcap;
} rollup_job_t;

/* The rollup of one series into j->out (nothing if no window holds a sample). */
static void rollup_series(pe_ctx_t *c, rollup_job_t *j, const pe_raw_t *raw)
{
    const pe_grid_t *g = j->g;
    const int64_t *te = j->te;
    rollup_t r = j->r;
    if (raw->n >= j->tmpcap) {
        j->tmpcap = raw->n + 1 > 2 * j->tmpcap ? raw->n + 1 : 2 * j->tmpcap;
        j->tmp = pe_alloc_raw(c, j->tmpcap * sizeof *j->tmp);
    }
    pe_ser_t *s = NULL;
    size_t lo = 0, hi = 0;
    for (size_t k = 0; k < g->n; k++) {
        if (k && te[k] < te[k - 1])
            lo = hi = 0;
        while (hi < raw->n && raw->ts[hi] <= te[k])
            hi++;
        while (lo < hi && raw->ts[lo] <= te[k] - j->range)
            lo++;
        double v;
        if (r == R_HOLT && hi > lo) { /* checked where a series has samples */
            if (!(j->param[k] > 0 && j->param[k] < 1))
                pe_fail(c, ST_EINVAL, "invalid smoothing factor. Expected: 0 < sf < 1, got: %f",
                        j->param[k]);
            if (!(j->param2[k] > 0 && j->param2[k] < 1))
                pe_fail(c, ST_EINVAL, "invalid trend factor. Expected: 0 < tf < 1, got: %f",
                        j->param2[k]);
        }
        if (j->counted) { /* one sample: the series' count */
            if (hi == lo)
                continue;
            v = raw->v[lo];
        } else if (raw->b ? !rollup_b(r, raw->b + lo, hi - lo, te[k], j->range, &v)
                          : !rollup1(r, raw->ts + lo, raw->v + lo, hi - lo, te[k], j->range,
                                     pe_t(g, k), j->param ? j->param[k] : 0,
                                     j->param2 ? j->param2[k] : 0, j->tmp, &v))
            continue;
        if (!s) {
            size_t nl = raw->nl;
            st_label_t *l = j->keep ? raw->l : pe_labels_drop_name(c, raw->l, &nl);
            s = pe_add_ser(c, j->out, l, nl, g->n);
        }
        s->ok[k] = 1;
        s->v[k] = v;
    }
    pe_check(c);
}

/* pe_each_fn: a streamed series; its labels are kept to order the output by. */
static void rollup_each(pe_ctx_t *c, void *arg, const pe_raw_t *raw)
{
    rollup_job_t *j = arg;
    size_t before = j->out->ns;
    rollup_series(c, j, raw);
    if (j->out->ns == before)
        return;
    pe_grow(c, (void **)&j->from, before, &j->fromcap, sizeof *j->from, 64);
    j->from[before] = (pe_raw_t){raw->l, raw->nl, NULL, NULL, 0, NULL};
}

typedef struct ser_from {
    pe_ser_t s;
    const pe_raw_t *from;
} ser_from_t;

static int ser_from_cmp(const void *a, const void *b)
{
    const pe_raw_t *x = ((const ser_from_t *)a)->from, *y = ((const ser_from_t *)b)->from;
    return st_labels_cmp(x->l, x->nl, y->l, y->nl);
}

/* Streamed output in the order of its input series' labels, the order of a
 * materialised selection (the series are the same; float sums downstream
 * add them in this order). */
static void rollup_order(pe_ctx_t *c, rollup_job_t *j)
{
    pe_val_t *out = j->out;
    if (out->ns < 2)
        return;
    ser_from_t *t = pe_alloc_raw(c, out->ns * sizeof *t);
    for (size_t i = 0; i < out->ns; i++)
        t[i] = (ser_from_t){out->s[i], &j->from[i]};
    qsort(t, out->ns, sizeof *t, ser_from_cmp);
    for (size_t i = 0; i < out->ns; i++)
        out->s[i] = t[i].s;
}

static void eval_rollup(pe_ctx_t *c, const promql_node_t *n, rollup_t r, const pe_grid_t *g,
                        pe_val_t *out)
{
    const promql_node_t *marg = n->u.call.args[0];
    pe_val_t pv = {0}, pv2 = {0};
    rollup_job_t j = {.r = r, .g = g, .out = out};
    if (r == R_HOLT) {
        c->eval(c, n->u.call.args[1], g, &pv);
        c->eval(c, n->u.call.args[2], g, &pv2);
        j.param = pv.sc;
        j.param2 = pv2.sc;
    } else if (r == R_QUANTILE) {
        c->eval(c, n->u.call.args[0], g, &pv);
        j.param = pv.sc;
        marg = n->u.call.args[1];
    } else if (r == R_PREDICT) {
        c->eval(c, n->u.call.args[1], g, &pv);
        j.param = pv.sc;
    }
    j.keep = n->u.call.keep_metric_names || r == R_LAST;
    out->type = PROMQL_TYPE_VECTOR;
    pe_raw_t *raw;
    size_t nraw;
    j.counted = r == R_COUNT && c->counts(c, marg, g, &raw, &nraw, &j.range, &j.te);
    if (!j.counted && !(bucket_rollup(r) && c->buckets(c, marg, g, &raw, &nraw, &j.range, &j.te))) {
        /* a series at a time, while its samples are in the cache: the
         * rollup reads them where the storage decoded them */
        if (r != R_ABSENT && c->stream(c, marg, g, &j.range, &j.te, rollup_each, &j)) {
            rollup_order(c, &j);
            if (!j.keep)
                pe_dedup(c, out, g->n);
            return;
        }
        c->matrix(c, marg, g, &raw, &nraw, &j.range, &j.te);
    }
    if (r == R_ABSENT) {
        size_t nl;
        st_label_t *l = absent_labels(c, marg, &nl);
        pe_ser_t *s = pe_add_ser(c, out, l, nl, g->n);
        for (size_t k = 0; k < g->n; k++) {
            int any = 0;
            for (size_t i = 0; i < nraw && !any; i++)
                for (size_t jj = 0; jj < raw[i].n && !any; jj++)
                    any = raw[i].ts[jj] > j.te[k] - j.range && raw[i].ts[jj] <= j.te[k];
            if (!any) {
                s->ok[k] = 1;
                s->v[k] = 1;
            }
        }
        return;
    }
    for (size_t i = 0; i < nraw; i++)
        rollup_series(c, &j, &raw[i]);
    if (!j.keep)
        pe_dedup(c, out, g->n);
}

/* ---- instant functions ------------------------------------------------------ */

/* Go's math.Max / math.Min, which Prometheus uses for clamp*(): an infinity
 * wins over NaN, NaN over any other value, +0 over -0 (max). */
static double go_max(double x, double y)
{
    if ((isinf(x) && x > 0) || (isinf(y) && y > 0))
        return INFINITY;
    if (isnan(x) || isnan(y))
        return NAN;
    if (x == 0 && y == 0)
        return signbit(x) ? y : x;
    return x > y ? x : y;
}

static double go_min(double x, double y)
{
    if ((isinf(x) && x < 0) || (isinf(y) && y < 0))
        return -INFINITY;
    if (isnan(x) || isnan(y))
        return NAN;
    if (x == 0 && y == 0)
        return signbit(x) ? x : y;
    return x < y ? x : y;
}

static double sgn(double x)
{
    return x > 0 ? 1 : x < 0 ? -1 : x;
}

static double deg(double x)
{
    return x * 180 / M_PI;
}

static double rad(double x)
{
    return x * M_PI / 180;
}

static void copy_vec(pe_ctx_t *c, const pe_val_t *in, pe_val_t *out, int drop, size_t nsteps)
{
    out->type = PROMQL_TYPE_VECTOR;
    for (size_t i = 0; i < in->ns; i++) {
        size_t nl = in->s[i].nl;
        st_label_t *l = drop ? pe_labels_drop_name(c, in->s[i].l, &nl) : in->s[i].l;
        pe_ser_t *s = pe_add_ser(c, out, l, nl, nsteps);
        memcpy(s->v, in->s[i].v, nsteps * sizeof(double));
        memcpy(s->ok, in->s[i].ok, nsteps);
    }
}

/* The UTC calendar fields of t (seconds); 0 for NaN and infinities. */
static int utc(double t, struct tm *tm)
{
    if (isnan(t) || isinf(t))
        return 0;
    time_t tt = (time_t)floor(t);
    gmtime_r(&tt, tm);
    return 1;
}

#define DATE_PART(fname, expr)                                                                     \
    static double fname(double t)                                                                  \
    {                                                                                              \
        struct tm tm;                                                                              \
        return utc(t, &tm) ? (double)(expr) : NAN;                                                 \
    }
DATE_PART(day_of_month, tm.tm_mday)
DATE_PART(day_of_week, tm.tm_wday)
DATE_PART(day_of_year, tm.tm_yday + 1)
DATE_PART(hour, tm.tm_hour)
DATE_PART(minute, tm.tm_min)
DATE_PART(month, tm.tm_mon + 1)
DATE_PART(year, tm.tm_year + 1900)
#undef DATE_PART

static double days_in_month(double t)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    struct tm tm;
    if (!utc(t, &tm))
        return NAN;
    int y = tm.tm_year + 1900;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return dm[tm.tm_mon] + (tm.tm_mon == 1 && leap);
}

/* label_replace() regexes run with these PCRE2 limits (as the nodes' index
 * does), so a pattern with nested quantifiers fails fast with an error. */
#define PE_RE_MATCH_LIMIT 1000000u
#define PE_RE_DEPTH_LIMIT 10000u

static pcre2_code *compile_re(pe_ctx_t *c, const char *re, size_t len)
{
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)re, len,
                                     PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF | PCRE2_DOTALL,
                                     &ec, &eo, NULL);
    if (!code)
        pe_fail(c, ST_EINVAL, "invalid regular expression in label_replace(): %s", re);
    return code;
}

static const char *str_arg(const promql_node_t *a, size_t *len)
{
    a = promql_unparen(a);
    if (a->kind != PROMQL_STRING)
        return NULL;
    *len = a->u.str.len;
    return a->u.str.s;
}

/* Expand $1, ${1}, $name in tmpl using the match; appends to b. */
static void expand(st_buf_t *b, const char *tmpl, size_t tl, const char *src, PCRE2_SIZE *ov,
                   uint32_t ng, pcre2_code *code)
{
    for (size_t i = 0; i < tl; i++) {
        if (tmpl[i] != '$' || i + 1 >= tl) {
            st_buf_put_u8(b, (uint8_t)tmpl[i]);
            continue;
        }
        if (tmpl[i + 1] == '$') {
            st_buf_put_u8(b, '$');
            i++;
            continue;
        }
        size_t j = i + 1, s, e;
        int br = tmpl[j] == '{';
        if (br)
            j++;
        s = j;
        while (j < tl && (tmpl[j] == '_' || (tmpl[j] >= '0' && tmpl[j] <= '9') ||
                          (tmpl[j] >= 'a' && tmpl[j] <= 'z') || (tmpl[j] >= 'A' && tmpl[j] <= 'Z')))
            j++;
        e = j;
        if (br) {
            if (j >= tl || tmpl[j] != '}') {
                st_buf_put_u8(b, '$');
                continue;
            }
            j++;
        }
        if (e == s) {
            st_buf_put_u8(b, '$');
            continue;
        }
        char name[64];
        size_t nl = e - s < sizeof name - 1 ? e - s : sizeof name - 1;
        memcpy(name, tmpl + s, nl);
        name[nl] = 0;
        int num = -1;
        char *endp;
        long x = strtol(name, &endp, 10);
        if (*endp == 0)
            num = (int)x;
        else
            num = pcre2_substring_number_from_name(code, (PCRE2_SPTR)name);
        if (num >= 0 && (uint32_t)num < ng && ov[2 * num] != PCRE2_UNSET)
            st_buf_append(b, src + ov[2 * num], ov[2 * num + 1] - ov[2 * num]);
        i = j - 1;
    }
}

static void label_replace(pe_ctx_t *c, const promql_node_t *n, pe_val_t *in, pe_val_t *out,
                          size_t nsteps)
{
    size_t dl = 0, rl = 0, sl = 0, rel = 0;
    const char *dst = str_arg(n->u.call.args[1], &dl);
    const char *repl = str_arg(n->u.call.args[2], &rl);
    const char *src = str_arg(n->u.call.args[3], &sl);
    const char *re = str_arg(n->u.call.args[4], &rel);
    if (!dst || !repl || !src || !re)
        pe_fail(c, ST_EINVAL, "label_replace: arguments must be string literals");
    if (!st_prom_label_name_ok(dst, dl) && strcmp(dst, ST_METRIC_LABEL))
        pe_fail(c, ST_EINVAL, "invalid destination label name in label_replace(): %s", dst);
    pcre2_code *code = compile_re(c, re, rel);
    (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* the interpreter if it fails */
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    if (mc) {
        pcre2_set_match_limit(mc, PE_RE_MATCH_LIMIT);
        pcre2_set_depth_limit(mc, PE_RE_DEPTH_LIMIT);
    }
    st_buf_t b;
    st_buf_init(&b);
    uint32_t ng = 0;
    pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &ng);
    ng++;
    out->type = PROMQL_TYPE_VECTOR;
    for (size_t i = 0; i < in->ns; i++) {
        const st_label_t *sv = pe_label_get(in->s[i].l, in->s[i].nl, src);
        const char *s = sv ? sv->value : "";
        size_t slen = sv ? sv->value_len : 0;
        size_t nl = in->s[i].nl;
        st_label_t *l = in->s[i].l;
        int rc = md && mc ? pcre2_match(code, (PCRE2_SPTR)s, slen, 0, 0, md, mc) : -1;
        if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
            rc == PCRE2_ERROR_JIT_STACKLIMIT || rc == PCRE2_ERROR_HEAPLIMIT) {
            st_buf_deinit(&b);
            pcre2_match_data_free(md);
            pcre2_match_context_free(mc);
            pcre2_code_free(code);
            pe_refuse(c, PROMQL_LIMIT_REGEX, ST_ELIMIT,
                      "regex \"%.100s\" in label_replace() exceeded its match limit "
                      "(nested quantifiers backtrack exponentially)",
                      re);
        }
        if (rc > 0) {
            b.len = 0;
            expand(&b, repl, rl, s, pcre2_get_ovector_pointer(md), ng, code);
            l = pe_labels_set(c, l, &nl, dst, (const char *)b.data, b.len);
        }
        pe_ser_t *o = pe_add_ser(c, out, l, nl, nsteps);
        memcpy(o->v, in->s[i].v, nsteps * sizeof(double));
        memcpy(o->ok, in->s[i].ok, nsteps);
    }
    st_buf_deinit(&b);
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    pcre2_code_free(code);
    pe_dedup(c, out, nsteps);
}

static void label_join(pe_ctx_t *c, const promql_node_t *n, pe_val_t *in, pe_val_t *out,
                       size_t nsteps)
{
    size_t dl = 0, sepl = 0;
    const char *dst = str_arg(n->u.call.args[1], &dl);
    const char *sep = str_arg(n->u.call.args[2], &sepl);
    if (!dst || !sep)
        pe_fail(c, ST_EINVAL, "label_join: arguments must be string literals");
    if (!st_prom_label_name_ok(dst, dl) && strcmp(dst, ST_METRIC_LABEL))
        pe_fail(c, ST_EINVAL, "invalid destination label name in label_join(): %s", dst);
    st_buf_t b;
    st_buf_init(&b);
    out->type = PROMQL_TYPE_VECTOR;
    for (size_t i = 0; i < in->ns; i++) {
        b.len = 0;
        for (size_t a = 3; a < n->u.call.nargs; a++) {
            size_t ln;
            const char *nm = str_arg(n->u.call.args[a], &ln);
            if (!nm)
                continue;
            if (a > 3)
                st_buf_append(&b, sep, sepl);
            const st_label_t *v = pe_label_get(in->s[i].l, in->s[i].nl, nm);
            if (v)
                st_buf_append(&b, v->value, v->value_len);
        }
        size_t nl = in->s[i].nl;
        st_label_t *l = pe_labels_set(c, in->s[i].l, &nl, dst, (const char *)b.data, b.len);
        pe_ser_t *o = pe_add_ser(c, out, l, nl, nsteps);
        memcpy(o->v, in->s[i].v, nsteps * sizeof(double));
        memcpy(o->ok, in->s[i].ok, nsteps);
    }
    st_buf_deinit(&b);
    pe_dedup(c, out, nsteps);
}

/* ---- histogram_quantile ---------------------------------------------------- */

typedef struct bucket {
    double ub, cnt;
} bucket_t;

static int bucket_cmp(const void *a, const void *b)
{
    double x = ((const bucket_t *)a)->ub, y = ((const bucket_t *)b)->ub;
    return x < y ? -1 : x > y;
}

static double bucket_quantile(double q, bucket_t *b, size_t n)
{
    double r;
    if (pe_quantile_out_of_range(q, &r))
        return r;
    qsort(b, n, sizeof *b, bucket_cmp);
    if (n < 2 || !isinf(b[n - 1].ub) || b[n - 1].ub < 0)
        return NAN;
    /* merge equal upper bounds, then enforce monotonicity */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k && b[k - 1].ub == b[i].ub)
            b[k - 1].cnt += b[i].cnt;
        else
            b[k++] = b[i];
    }
    n = k;
    /* monotonic: raise each count to the running maximum (NaN counts stay) */
    double mx = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (b[i].cnt > mx)
            mx = b[i].cnt;
        else if (b[i].cnt < mx)
            b[i].cnt = mx;
    }
    if (n < 2)
        return NAN;
    double total = b[n - 1].cnt;
    if (total == 0)
        return NAN;
    double rank = q * total;
    /* the first bucket with count >= rank among the first n - 1, by binary
     * search as Prometheus does (with NaN counts the predicate is not
     * monotonic, and a linear scan would answer differently) */
    size_t i = 0, j = n - 1;
    while (i < j) {
        size_t h = i + (j - i) / 2;
        if (!(b[h].cnt >= rank))
            i = h + 1;
        else
            j = h;
    }
    if (i == n - 1)
        return b[n - 2].ub;
    if (i == 0 && b[0].ub <= 0)
        return b[0].ub;
    double start = 0, end = b[i].ub, cnt = b[i].cnt;
    if (i > 0) {
        start = b[i - 1].ub;
        cnt -= b[i - 1].cnt;
        rank -= b[i - 1].cnt;
    }
    return start + (end - start) * (rank / cnt);
}

static void histogram_quantile(pe_ctx_t *c, const pe_grid_t *g, const double *q, pe_val_t *in,
                               pe_val_t *out)
{
    out->type = PROMQL_TYPE_VECTOR;
    /* group series by labels without le and __name__ */
    size_t *gid = pe_alloc(c, (in->ns + 1) * sizeof *gid);
    double *ub = pe_alloc(c, (in->ns + 1) * sizeof *ub);
    st_label_t **gl = pe_alloc(c, (in->ns + 1) * sizeof *gl);
    size_t *gn = pe_alloc(c, (in->ns + 1) * sizeof *gn);
    size_t ng = 0;
    for (size_t i = 0; i < in->ns; i++) {
        const st_label_t *le = pe_label_get(in->s[i].l, in->s[i].nl, "le");
        gid[i] = SIZE_MAX;
        if (!le)
            continue;
        char tmp[64];
        size_t n = le->value_len < 63 ? le->value_len : 63;
        memcpy(tmp, le->value, n);
        tmp[n] = 0;
        char *e;
        ub[i] = strtod(tmp, &e);
        if (e == tmp || *e)
            continue;
        size_t nl = in->s[i].nl;
        st_label_t *l = pe_labels_drop_name(c, in->s[i].l, &nl);
        l = pe_labels_set(c, l, &nl, "le", "", 0);
        size_t gi = 0;
        while (gi < ng && st_labels_cmp(gl[gi], gn[gi], l, nl))
            gi++;
        if (gi == ng) {
            gl[ng] = l;
            gn[ng++] = nl;
        }
        gid[i] = gi;
    }
    bucket_t *b = pe_alloc(c, (in->ns + 1) * sizeof *b);
    for (size_t gi = 0; gi < ng; gi++) {
        pe_ser_t *o = pe_add_ser(c, out, gl[gi], gn[gi], g->n);
        for (size_t k = 0; k < g->n; k++) {
            size_t m = 0;
            for (size_t i = 0; i < in->ns; i++)
                if (gid[i] == gi && in->s[i].ok[k])
                    b[m++] = (bucket_t){ub[i], in->s[i].v[k]};
            if (!m)
                continue;
            o->ok[k] = 1;
            o->v[k] = bucket_quantile(q[k], b, m);
        }
    }
}

/* ---- implementations (promql_eval_fn) ---------------------------------------- */

static int64_t sample_ts_selector(pe_ctx_t *c, const promql_node_t *a, const pe_grid_t *g,
                                  pe_val_t *out);

/* The first argument evaluated when it is an instant vector (else empty). */
static pe_val_t vec_arg0(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g)
{
    pe_val_t a = {0};
    if (n->u.call.nargs > 0 && n->u.call.args[0]->type == PROMQL_TYPE_VECTOR)
        c->eval(c, n->u.call.args[0], g, &a);
    return a;
}

static void f_rollup(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    eval_rollup(c, n, (rollup_t)n->u.call.func->op, g, out);
}

/* time(), pi(): one scalar per step (fn1 of the step's time). */
static double pi_at(double t)
{
    (void)t;
    return M_PI;
}

static double time_at(double t)
{
    return t;
}

static void f_scalar_of_time(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    out->type = PROMQL_TYPE_SCALAR;
    out->sc = pe_alloc(c, g->n * sizeof(double));
    for (size_t k = 0; k < g->n; k++)
        out->sc[k] = n->u.call.func->fn1((double)pe_t(g, k) / 1000.0);
}

static void f_vector(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    pe_val_t a;
    c->eval(c, n->u.call.args[0], g, &a);
    out->type = PROMQL_TYPE_VECTOR;
    pe_ser_t *s = pe_add_ser(c, out, NULL, 0, g->n);
    for (size_t k = 0; k < g->n; k++) {
        s->ok[k] = 1;
        s->v[k] = a.sc[k];
    }
}

static void f_timestamp(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    sample_ts_selector(c, n->u.call.args[0], g, out);
}

static void f_scalar(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    pe_val_t a = vec_arg0(c, n, g);
    out->type = PROMQL_TYPE_SCALAR;
    out->sc = pe_alloc(c, g->n * sizeof(double));
    for (size_t k = 0; k < g->n; k++) {
        size_t cnt = 0;
        double v = NAN;
        for (size_t i = 0; i < a.ns; i++)
            if (a.s[i].ok[k]) {
                cnt++;
                v = a.s[i].v[k];
            }
        out->sc[k] = cnt == 1 ? v : NAN;
    }
}

static void f_absent(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    pe_val_t a = vec_arg0(c, n, g);
    out->type = PROMQL_TYPE_VECTOR;
    size_t nl;
    st_label_t *l = absent_labels(c, n->u.call.args[0], &nl);
    pe_ser_t *s = pe_add_ser(c, out, l, nl, g->n);
    for (size_t k = 0; k < g->n; k++) {
        int any = 0;
        for (size_t i = 0; i < a.ns && !any; i++)
            any = a.s[i].ok[k];
        if (!any) {
            s->ok[k] = 1;
            s->v[k] = 1;
        }
    }
}

/* sort (op 0), sort_desc (op 1): order only matters for instant queries (one
 * step). A stable merge sort (equal values and absent ones keep their input
 * order; NaN and absent last): O(n log n) at a million series. */
static int sort_before(int desc, const pe_ser_t *a, const pe_ser_t *b)
{
    double x = a->ok[0] ? a->v[0] : NAN;
    double y = b->ok[0] ? b->v[0] : NAN;
    return desc ? (x > y || (isnan(y) && !isnan(x))) : (x < y || (isnan(y) && !isnan(x)));
}

static void f_sort(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    pe_val_t a = vec_arg0(c, n, g);
    int desc = n->u.call.func->op;
    copy_vec(c, &a, out, 0, g->n);
    size_t ns = out->ns;
    pe_ser_t *src = out->s, *tmp = pe_alloc(c, (ns + 1) * sizeof *tmp);
    for (size_t w = 1; w < ns; w *= 2) {
        for (size_t lo = 0; lo < ns; lo += 2 * w) {
            size_t mid = lo + w < ns ? lo + w : ns, hi = lo + 2 * w < ns ? lo + 2 * w : ns;
            size_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi)
                tmp[o++] = sort_before(desc, &src[j], &src[i]) ? src[j++] : src[i++];
            while (i < mid)
                tmp[o++] = src[i++];
            while (j < hi)
                tmp[o++] = src[j++];
        }
        pe_ser_t *t = src;
        src = tmp;
        tmp = t;
        pe_check(c);
    }
    if (src != out->s && ns)
        memcpy(out->s, src, ns * sizeof *src);
}

static void f_label_replace(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    pe_val_t a = vec_arg0(c, n, g);
    label_replace(c, n, &a, out, g->n);
}

static void f_label_join(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    pe_val_t a = vec_arg0(c, n, g);
    label_join(c, n, &a, out, g->n);
}

static void f_histogram_quantile(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g,
                                 pe_val_t *out)
{
    pe_val_t q = vec_arg0(c, n, g), v;
    c->eval(c, n->u.call.args[1], g, &v);
    if (n->u.call.args[0]->type != PROMQL_TYPE_SCALAR)
        pe_fail(c, ST_EINVAL, "histogram_quantile: quantile must be a scalar");
    c->eval(c, n->u.call.args[0], g, &q);
    histogram_quantile(c, g, q.sc, &v, out);
}

/* Element-wise: fn1 applied to every value (math and date functions); a
 * date function without an argument takes the step's time. */
static void f_map(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    double (*fn)(double) = n->u.call.func->fn1;
    int keep = n->u.call.keep_metric_names;
    pe_val_t a = vec_arg0(c, n, g);
    if (n->u.call.nargs == 0) {
        out->type = PROMQL_TYPE_VECTOR;
        pe_ser_t *s = pe_add_ser(c, out, NULL, 0, g->n);
        for (size_t k = 0; k < g->n; k++) {
            s->ok[k] = 1;
            s->v[k] = fn((double)pe_t(g, k) / 1000.0);
        }
        return;
    }
    copy_vec(c, &a, out, !keep, g->n);
    for (size_t s = 0; s < out->ns; s++)
        for (size_t k = 0; k < g->n; k++)
            out->s[s].v[k] = fn(out->s[s].v[k]);
    if (!keep)
        pe_dedup(c, out, g->n);
}

enum { CL_ROUND, CL_CLAMP, CL_MIN, CL_MAX };

/* round (CL_ROUND), clamp, clamp_min, clamp_max: element-wise with scalar parameters. */
static void f_clamp(pe_ctx_t *c, const promql_node_t *n, const pe_grid_t *g, pe_val_t *out)
{
    size_t na = n->u.call.nargs;
    int keep = n->u.call.keep_metric_names, op = n->u.call.func->op;
    pe_val_t a = vec_arg0(c, n, g), p1 = {0}, p2 = {0};
    if (na > 1)
        c->eval(c, n->u.call.args[1], g, &p1);
    if (na > 2)
        c->eval(c, n->u.call.args[2], g, &p2);
    copy_vec(c, &a, out, !keep, g->n);
    for (size_t s = 0; s < out->ns; s++)
        for (size_t k = 0; k < g->n; k++) {
            double *v = &out->s[s].v[k];
            if (op == CL_ROUND) {
                double to = na > 1 ? p1.sc[k] : 1;
                double inv = 1.0 / to;
                *v = floor(*v * inv + 0.5) / inv;
            } else if (op == CL_CLAMP) {
                if (p1.sc[k] > p2.sc[k]) {
                    out->s[s].ok[k] = 0;
                    continue;
                }
                *v = go_max(p1.sc[k], go_min(p2.sc[k], *v));
            } else if (op == CL_MIN) {
                *v = go_max(p1.sc[k], *v);
            } else {
                *v = go_min(p1.sc[k], *v);
            }
        }
    if (!keep)
        pe_dedup(c, out, g->n);
}

/* ---- the function table ------------------------------------------------------ */

#define S PROMQL_TYPE_SCALAR
#define V PROMQL_TYPE_VECTOR
#define M PROMQL_TYPE_MATRIX
#define STR PROMQL_TYPE_STRING
#define LOCAL PROMQL_FN_LOCAL

/* rollup over one range vector; element-wise math; date part (argument optional) */
#define ROLLUP(name, r)                                                                            \
    {                                                                                              \
        name, {M}, 1, 0, V, LOCAL, f_rollup, r, NULL                                               \
    }
#define MATH(name, fn)                                                                             \
    {                                                                                              \
        name, {V}, 1, 0, V, LOCAL, f_map, 0, fn                                                    \
    }
#define DATE(name, fn)                                                                             \
    {                                                                                              \
        name, {V}, 1, 1, V, LOCAL, f_map, 0, fn                                                    \
    }

/*
 * Every function the parser knows, sorted by name (bsearch): argument types,
 * argument count (variadic: see promql_func_t), result type, flags, the
 * evaluator (NULL: accepted by the parser, "not supported" when evaluated)
 * and its variant.
 */
static const promql_func_t funcs[] = {
    MATH("abs", fabs),
    {"absent", {V}, 1, 0, V, 0, f_absent, 0, NULL},
    {"absent_over_time", {M}, 1, 0, V, 0, f_rollup, R_ABSENT, NULL},
    MATH("acos", acos),
    MATH("acosh", acosh),
    MATH("asin", asin),
    MATH("asinh", asinh),
    MATH("atan", atan),
    MATH("atanh", atanh),
    ROLLUP("avg_over_time", R_AVG),
    MATH("ceil", ceil),
    ROLLUP("changes", R_CHANGES),
    {"clamp", {V, S, S}, 3, 0, V, LOCAL, f_clamp, CL_CLAMP, NULL},
    {"clamp_max", {V, S}, 2, 0, V, LOCAL, f_clamp, CL_MAX, NULL},
    {"clamp_min", {V, S}, 2, 0, V, LOCAL, f_clamp, CL_MIN, NULL},
    MATH("cos", cos),
    MATH("cosh", cosh),
    ROLLUP("count_over_time", R_COUNT),
    DATE("day_of_month", day_of_month),
    DATE("day_of_week", day_of_week),
    DATE("day_of_year", day_of_year),
    DATE("days_in_month", days_in_month),
    MATH("deg", deg),
    ROLLUP("delta", R_DELTA),
    ROLLUP("deriv", R_DERIV),
    {"double_exponential_smoothing", {M, S, S}, 3, 0, V, LOCAL, f_rollup, R_HOLT, NULL},
    MATH("exp", exp),
    MATH("floor", floor),
    {"histogram_avg", {V}, 1, 0, V, 0, NULL, 0, NULL},
    {"histogram_count", {V}, 1, 0, V, 0, NULL, 0, NULL},
    {"histogram_fraction", {S, S, V}, 3, 0, V, 0, NULL, 0, NULL},
    {"histogram_quantile", {S, V}, 2, 0, V, 0, f_histogram_quantile, 0, NULL},
    {"histogram_stddev", {V}, 1, 0, V, 0, NULL, 0, NULL},
    {"histogram_stdvar", {V}, 1, 0, V, 0, NULL, 0, NULL},
    {"histogram_sum", {V}, 1, 0, V, 0, NULL, 0, NULL},
    {"holt_winters", {M, S, S}, 3, 0, V, LOCAL, f_rollup, R_HOLT, NULL},
    DATE("hour", hour),
    ROLLUP("idelta", R_IDELTA),
    ROLLUP("increase", R_INCREASE),
    ROLLUP("irate", R_IRATE),
    {"label_join", {V, STR, STR, STR}, 4, -1, V, LOCAL, f_label_join, 0, NULL},
    {"label_replace", {V, STR, STR, STR, STR}, 5, 0, V, LOCAL, f_label_replace, 0, NULL},
    ROLLUP("last_over_time", R_LAST),
    MATH("ln", log),
    MATH("log10", log10),
    MATH("log2", log2),
    {"mad_over_time", {M}, 1, 0, V, 0, NULL, 0, NULL},
    ROLLUP("max_over_time", R_MAX),
    ROLLUP("min_over_time", R_MIN),
    DATE("minute", minute),
    DATE("month", month),
    {"pi", {0}, 0, 0, S, PROMQL_FN_CONST, f_scalar_of_time, 0, pi_at},
    {"predict_linear", {M, S}, 2, 0, V, LOCAL, f_rollup, R_PREDICT, NULL},
    ROLLUP("present_over_time", R_PRESENT),
    {"quantile_over_time", {S, M}, 2, 0, V, LOCAL, f_rollup, R_QUANTILE, NULL},
    MATH("rad", rad),
    ROLLUP("rate", R_RATE),
    ROLLUP("resets", R_RESETS),
    {"round", {V, S}, 2, 1, V, LOCAL, f_clamp, CL_ROUND, NULL},
    {"scalar", {V}, 1, 0, S, 0, f_scalar, 0, NULL},
    MATH("sgn", sgn),
    MATH("sin", sin),
    MATH("sinh", sinh),
    {"sort", {V}, 1, 0, V, PROMQL_FN_ORDERED, f_sort, 0, NULL},
    {"sort_by_label", {V, STR}, 2, -1, V, 0, NULL, 0, NULL},
    {"sort_by_label_desc", {V, STR}, 2, -1, V, 0, NULL, 0, NULL},
    {"sort_desc", {V}, 1, 0, V, PROMQL_FN_ORDERED, f_sort, 1, NULL},
    MATH("sqrt", sqrt),
    ROLLUP("stddev_over_time", R_STDDEV),
    ROLLUP("stdvar_over_time", R_STDVAR),
    ROLLUP("sum_over_time", R_SUM),
    MATH("tan", tan),
    MATH("tanh", tanh),
    {"time", {0}, 0, 0, S, PROMQL_FN_CONST, f_scalar_of_time, 0, time_at},
    {"timestamp", {V}, 1, 0, V, LOCAL, f_timestamp, 0, NULL},
    {"vector", {S}, 1, 0, V, 0, f_vector, 0, NULL},
    DATE("year", year),
};

const promql_func_t *promql_func_lookup(const char *name, size_t len)
{
    size_t lo = 0, hi = sizeof funcs / sizeof funcs[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *fn = funcs[mid].name;
        size_t fl = strlen(fn);
        int c = memcmp(name, fn, len < fl ? len : fl);
        if (c == 0)
            c = len < fl ? -1 : len > fl ? 1 : 0;
        if (c == 0)
            return &funcs[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* timestamp(v): the sample's own timestamp for a plain selector, else eval time. */
static int64_t sample_ts_selector(pe_ctx_t *c, const promql_node_t *a, const pe_grid_t *g,
                                  pe_val_t *out)
{
    const promql_node_t *x = promql_unparen(a);
    pe_val_t in;
    c->eval(c, a, g, &in);
    copy_vec(c, &in, out, 1, g->n);
    if (x->kind != PROMQL_VECTOR_SELECTOR) {
        for (size_t s = 0; s < out->ns; s++)
            for (size_t k = 0; k < g->n; k++)
                out->s[s].v[k] = (double)pe_t(g, k) / 1000.0;
        pe_dedup(c, out, g->n);
        return 0;
    }
    /* re-run the lookup keeping timestamps: select via a matrix over the lookback */
    promql_node_t ms;
    memset(&ms, 0, sizeof ms);
    ms.kind = PROMQL_MATRIX_SELECTOR;
    ms.type = PROMQL_TYPE_MATRIX;
    ms.u.ms.vs = (promql_node_t *)x;
    ms.u.ms.range_ms = c->lookback;
    pe_raw_t *raw;
    size_t nraw;
    int64_t range, *te;
    c->matrix(c, &ms, g, &raw, &nraw, &range, &te);
    /* raw and out (before dedup) are both sorted by the original labels */
    size_t o = 0;
    for (size_t i = 0; i < nraw && o < in.ns; i++) {
        if (st_labels_cmp(raw[i].l, raw[i].nl, in.s[o].l, in.s[o].nl))
            continue;
        size_t j = 0;
        for (size_t k = 0; k < g->n; k++) {
            j = pe_upto(&raw[i], j, te, k);
            if (out->s[o].ok[k] && j)
                out->s[o].v[k] = (double)raw[i].ts[j - 1] / 1000.0;
        }
        o++;
    }
    pe_dedup(c, out, g->n);
    return 0;
}

int promql_bucket_exact(const char *name)
{
    const promql_func_t *f = promql_func_lookup(name, strlen(name));
    return f && f->eval == f_rollup && bucket_rollup((rollup_t)f->op);
}

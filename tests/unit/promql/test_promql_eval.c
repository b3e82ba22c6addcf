/*
 * test_promql_eval — table-driven tests for the PromQL evaluator.
 *
 * Data is loaded with a tiny DSL like promqltest's "load 1m" blocks:
 *   metric{a="b"} 0+10x10     values 0,10,...,100 at 0,1m,...,10m
 *   metric 1 _ 3 _x2 5-1x2    "_" is a missing sample, "_xN" N missing
 * and served by an in-memory select callback that applies the matchers
 * (=, !=, =~ and !~ via anchored PCRE2). Each case is a query, an eval time
 * or range, and the expected result rendered compactly:
 *   "{i=0,job=api} 100 | {} 5"   series in result order, values "%.10g",
 *                                "_" where a range step has no value;
 *   "scalar 600", "string foo", "ERR:substring", "" (empty vector/matrix).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "promql.h"
#include "promql_eval.h"
#include "st_err.h"
#include "st_text.h"

/* ---- in-memory storage ------------------------------------------------------ */

#define MAXS 64
#define MAXP 64

typedef struct mser {
    st_label_t l[8];
    size_t nl;
    char text[256]; /* label storage */
    int64_t ts[MAXP];
    double v[MAXP];
    size_t n;
} mser_t;

static mser_t db[MAXS];
static size_t ndb;
static int nselects;

static const char *load_text = "m{job=\"api\",i=\"0\"} 0+10x10\n"
                               "m{job=\"api\",i=\"1\"} 0+20x10\n"
                               "m{job=\"web\",i=\"0\"} 0+30x10\n"
                               "reset 0 10 20 5 15 25\n"
                               "gauge 1 5 3 _ 8 2\n"
                               "info{job=\"api\",owner=\"team1\"} 1x10\n"
                               "h_bucket{le=\"0.1\"} 0+1x10\n"
                               "h_bucket{le=\"0.5\"} 0+3x10\n"
                               "h_bucket{le=\"1\"} 0+5x10\n"
                               "h_bucket{le=\"+Inf\"} 0+6x10\n"
                               "nm{x=\"1\"} 0+1x10\n"
                               "nm2{x=\"1\"} _x5 7 _x2 9\n";

static void load(const char *text, int64_t interval_ms)
{
    ndb = 0;
    const char *p = text;
    while (*p) {
        mser_t *s = &db[ndb++];
        memset(s, 0, sizeof *s);
        char *w = s->text;
        const char *q = p;
        while (*q && *q != '{' && *q != ' ')
            q++;
        memcpy(w, "__name__", 9);
        s->l[s->nl].name = w;
        s->l[s->nl].name_len = 8;
        w += 9;
        memcpy(w, p, (size_t)(q - p));
        s->l[s->nl].value = w;
        s->l[s->nl++].value_len = (uint32_t)(q - p);
        w += q - p + 1;
        p = q;
        if (*p == '{') {
            p++;
            while (*p != '}') {
                q = strchr(p, '=');
                memcpy(w, p, (size_t)(q - p));
                s->l[s->nl].name = w;
                s->l[s->nl].name_len = (uint32_t)(q - p);
                w += q - p + 1;
                p = q + 2; /* =" */
                q = strchr(p, '"');
                memcpy(w, p, (size_t)(q - p));
                s->l[s->nl].value = w;
                s->l[s->nl++].value_len = (uint32_t)(q - p);
                w += q - p + 1;
                p = q + 1;
                if (*p == ',')
                    p++;
            }
            p++;
        }
        int64_t t = 0;
        while (*p && *p != '\n') {
            while (*p == ' ')
                p++;
            if (*p == '\n' || !*p)
                break;
            char tok[64];
            size_t k = 0;
            while (*p && *p != ' ' && *p != '\n')
                tok[k++] = *p++;
            tok[k] = 0;
            if (tok[0] == '_') {
                long cnt = tok[1] == 'x' ? strtol(tok + 2, NULL, 10) : 1;
                t += cnt * interval_ms;
                continue;
            }
            char *e;
            double a = strtod(tok, &e), d = 0;
            long cnt = 0;
            if (*e == '+' || *e == '-') {
                int neg = *e == '-';
                d = strtod(e + 1, &e);
                if (neg)
                    d = -d;
            }
            if (*e == 'x')
                cnt = strtol(e + 1, NULL, 10);
            for (long i = 0; i <= cnt; i++) {
                s->ts[s->n] = t;
                s->v[s->n++] = a + d * (double)i;
                t += interval_ms;
            }
        }
        if (*p == '\n')
            p++;
    }
}

static int label_matches(const mser_t *s, const st_matcher_t *m)
{
    const char *v = "";
    size_t vl = 0;
    for (size_t i = 0; i < s->nl; i++)
        if (strlen(m->name) == s->l[i].name_len &&
            !memcmp(m->name, s->l[i].name, s->l[i].name_len)) {
            v = s->l[i].value;
            vl = s->l[i].value_len;
        }
    if (m->type == ST_MATCH_EQ || m->type == ST_MATCH_NE) {
        int eq = strlen(m->value) == vl && !memcmp(m->value, v, vl);
        return m->type == ST_MATCH_EQ ? eq : !eq;
    }
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)m->value, PCRE2_ZERO_TERMINATED,
                                   PCRE2_ANCHORED | PCRE2_ENDANCHORED, &ec, &eo, NULL);
    if (!re)
        return 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = pcre2_match(re, (PCRE2_SPTR)v, vl, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return m->type == ST_MATCH_RE ? rc > 0 : rc <= 0;
}

static int mem_select(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                      promql_sink_t *sink)
{
    (void)arg;
    nselects++;
    for (size_t i = 0; i < ndb; i++) {
        int ok = 1;
        for (size_t j = 0; j < nm && ok; j++)
            ok = label_matches(&db[i], &m[j]);
        if (!ok)
            continue;
        size_t lo = 0, hi = db[i].n;
        while (lo < hi && db[i].ts[lo] < mint)
            lo++;
        while (hi > lo && db[i].ts[hi - 1] > maxt)
            hi--;
        if (hi == lo)
            continue;
        int rc = promql_sink_add(sink, db[i].l, db[i].nl, db[i].ts + lo, db[i].v + lo, hi - lo);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- rendering -------------------------------------------------------------- */

static void render(const promql_result_t *r, int64_t start, int64_t end, int64_t step, char *out,
                   size_t cap)
{
    size_t n = 0;
    out[0] = 0;
#define APP(...) n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, __VA_ARGS__)
    if (r->type == PROMQL_RES_SCALAR) {
        if (isnan(r->scalar))
            APP("scalar NaN");
        else
            APP("scalar %.10g", r->scalar);
        return;
    }
    if (r->type == PROMQL_RES_STRING) {
        APP("string %.*s", (int)r->str_len, r->str);
        return;
    }
    for (size_t i = 0; i < r->nseries; i++) {
        const promql_series_t *s = &r->series[i];
        APP("%s{", i ? " | " : "");
        for (size_t j = 0; j < s->nlabels; j++)
            APP("%s%.*s=%.*s", j ? "," : "", (int)s->labels[j].name_len, s->labels[j].name,
                (int)s->labels[j].value_len, s->labels[j].value);
        APP("}");
        if (r->type == PROMQL_RES_MATRIX && start == end) { /* raw samples: v@t */
            for (size_t k = 0; k < s->n; k++)
                APP(" %.10g@%g", s->v[k], (double)s->ts[k] / 1000.0);
            continue;
        }
        size_t k = 0;
        for (int64_t t = start; t <= end; t += step) {
            if (k < s->n && s->ts[k] == t && isnan(s->v[k]))
                APP(" NaN"), k++;
            else if (k < s->n && s->ts[k] == t)
                APP(" %.10g", s->v[k++]);
            else
                APP(" _");
        }
    }
#undef APP
}

typedef struct ecase {
    const char *q;
    double start, end; /* seconds; end < 0: instant at start */
    double step;       /* seconds (range queries) */
    const char *want;
} ecase_t;

#define I(q, t, w)                                                                                 \
    {                                                                                              \
        q, t, -1, 300, w                                                                           \
    }
#define R(q, s, e, st, w)                                                                          \
    {                                                                                              \
        q, s, e, st, w                                                                             \
    }

static const ecase_t cases[] = {
    /* (1) selectors, lookback, offset, @ */
    I("m", 600,
      "{__name__=m,i=0,job=api} 100 | {__name__=m,i=0,job=web} 300 | "
      "{__name__=m,i=1,job=api} 200"),
    I("m{i=\"0\"}", 630, "{__name__=m,i=0,job=api} 100 | {__name__=m,i=0,job=web} 300"),
    I("m{i=\"0\"}", 899, "{__name__=m,i=0,job=api} 100 | {__name__=m,i=0,job=web} 300"),
    I("m{i=\"0\"}", 900, ""),
    I("m{job=~\"a.*\"}", 60, "{__name__=m,i=0,job=api} 10 | {__name__=m,i=1,job=api} 20"),
    I("m{job=~\"a\"}", 60, ""),
    I("m{job!~\"a.*\",i!=\"1\"}", 60, "{__name__=m,i=0,job=web} 30"),
    I("{__name__=~\"m|gauge\",job!=\"api\"}", 60,
      "{__name__=gauge} 5 | {__name__=m,i=0,job=web} 30"),
    I("m{job=\"api\" or job=\"web\",i=\"0\"}", 60,
      "{__name__=m,i=0,job=api} 10 | {__name__=m,i=0,job=web} 30 | {__name__=m,i=1,job=api} 20"),
    I("m{job=\"web\" or i=\"0\"}", 60, "{__name__=m,i=0,job=api} 10 | {__name__=m,i=0,job=web} 30"),
    I("gauge", 180, "{__name__=gauge} 3"),
    I("gauge", 200, "{__name__=gauge} 3"),
    I("m{job=\"api\",i=\"0\"} offset 2m", 600, "{__name__=m,i=0,job=api} 80"),
    I("m{job=\"api\",i=\"0\"} offset -1m", 300, "{__name__=m,i=0,job=api} 60"),
    I("m{i=\"1\"} @ 300", 600, "{__name__=m,i=1,job=api} 100"),
    I("m{i=\"1\"} @ 300 offset 1m", 600, "{__name__=m,i=1,job=api} 80"),
    R("m{job=\"api\",i=\"0\"}", 0, 300, 60, "{__name__=m,i=0,job=api} 0 10 20 30 40 50"),
    R("gauge", 0, 300, 60, "{__name__=gauge} 1 5 3 3 8 2"),
    R("m{job=\"api\",i=\"0\"}", 600, 1200, 300, "{__name__=m,i=0,job=api} 100 _ _"),
    R("m{job=\"api\",i=\"0\"} @ start()", 120, 240, 60, "{__name__=m,i=0,job=api} 20 20 20"),
    R("m{job=\"api\",i=\"0\"} @ end()", 120, 240, 60, "{__name__=m,i=0,job=api} 40 40 40"),
    R("nm2", 0, 600, 60, "{__name__=nm2,x=1} _ _ _ _ _ 7 7 7 9 9 9"),
    I("1", 100, "scalar 1"),
    I("\"foo\"", 100, "string foo"),
    /* an instant query of a range vector returns its raw samples */
    I("gauge[2m]", 300, "{__name__=gauge} 8@240 2@300"),
    I("(gauge[3m] offset 1m)", 300, "{__name__=gauge} 3@120 8@240"),
    I("gauge[2m:1m]", 300, "{__name__=gauge} 8@240 2@300"),
    I("nonexistent[5m]", 300, ""),
    R("gauge[2m]", 0, 60, 60, "ERR:invalid expression type \"range vector\" for range query"),
    R("time()", 0, 120, 60, "{} 0 60 120"),
    /* (2) rollups */
    I("rate(m{job=\"api\",i=\"0\"}[5m])", 600, "{i=0,job=api} 0.1666666667"),
    I("increase(m{job=\"api\",i=\"0\"}[5m])", 600, "{i=0,job=api} 50"),
    I("increase(m{job=\"api\",i=\"0\"}[5m])", 630, "{i=0,job=api} 50"),
    I("increase(m{job=\"api\",i=\"0\"}[5m])", 750, "{i=0,job=api} 30"),
    I("increase(m{job=\"api\",i=\"0\"}[5m])", 240, "{i=0,job=api} 40"),
    I("rate(m{job=\"api\",i=\"0\"}[5m])", 240, "{i=0,job=api} 0.1333333333"),
    I("increase(reset[5m])", 300, "{} 43.75"),
    I("rate(m{job=\"api\",i=\"0\"}[1m])", 600, ""),
    R("rate(m{job=\"api\",i=\"0\"}[2m])", 120, 240, 60,
      "{i=0,job=api} 0.1666666667 0.1666666667 0.1666666667"),
    I("delta(gauge[5m])", 300, "{} -3.75"),
    I("rate(reset[5m])", 300, "{} 0.1458333333"),
    R("increase(reset[2m])", 120, 300, 60, "{} 20 10 15 20"),
    R("rate(m{job=\"api\",i=\"0\"})", 240, 480, 120,
      "{i=0,job=api} 0.1666666667 0.1666666667 0.1666666667"),
    I("delta(m{job=\"api\",i=\"0\"}[5m])", 250, "{i=0,job=api} 50"),
    I("increase(m{job=\"api\",i=\"0\"}[10m])", 900, "{i=0,job=api} 55"),
    I("irate(reset[5m])", 300, "{} 0.1666666667"),
    I("irate(reset[5m])", 180, "{} 0.08333333333"),
    I("idelta(reset[5m])", 180, "{} -15"),
    I("resets(reset[10m])", 300, "{} 1"),
    I("changes(reset[10m])", 300, "{} 5"),
    I("changes(info[10m])", 300, "{job=api,owner=team1} 0"),
    I("deriv(m{job=\"api\",i=\"0\"}[5m])", 600, "{i=0,job=api} 0.1666666667"),
    I("predict_linear(m{job=\"api\",i=\"0\"}[5m], 60)", 600, "{i=0,job=api} 110"),
    I("avg_over_time(gauge[5m])", 300, "{} 4.5"),
    I("min_over_time(gauge[5m])", 300, "{} 2"),
    I("max_over_time(gauge[5m])", 300, "{} 8"),
    I("sum_over_time(gauge[5m])", 300, "{} 18"),
    I("count_over_time(gauge[5m])", 300, "{} 4"),
    I("count_over_time(gauge[10m])", 300, "{} 5"),
    I("quantile_over_time(0.5, gauge[5m])", 300, "{} 4"),
    I("stdvar_over_time(gauge[5m])", 300, "{} 5.25"),
    I("stddev_over_time(gauge[5m])", 300, "{} 2.291287847"),
    I("last_over_time(gauge[5m])", 300, "{__name__=gauge} 2"),
    I("present_over_time(gauge[5m])", 300, "{} 1"),
    I("absent_over_time(nonexistent[5m])", 300, "{} 1"),
    I("absent_over_time(nonexistent{job=\"x\",i=~\"y\"}[5m])", 300, "{job=x} 1"),
    I("absent_over_time(gauge[5m])", 300, ""),
    I("rate(m{job=\"api\",i=\"0\"})", 600, "{i=0,job=api} 0.1666666667"),
    I("rate(m{job=\"api\",i=\"0\"}[5m]) keep_metric_names", 600,
      "{__name__=m,i=0,job=api} 0.1666666667"),
    I("rate(m{job=\"api\",i=\"0\"}[5m] offset 5m)", 900, "{i=0,job=api} 0.1666666667"),
    I("sum_over_time(m{job=\"api\",i=\"0\"}[2m] @ 120)", 600, "{i=0,job=api} 30"),
    /* (3) aggregations */
    I("sum(m)", 600, "{} 600"),
    I("sum by (job) (m)", 600, "{job=api} 300 | {job=web} 300"),
    I("sum without (i) (m)", 600, "{job=api} 300 | {job=web} 300"),
    I("count by (i) (m)", 600, "{i=0} 2 | {i=1} 1"),
    I("avg(m)", 600, "{} 200"),
    I("min(m)", 600, "{} 100"),
    I("max by (job) (m)", 600, "{job=api} 200 | {job=web} 300"),
    I("group(m)", 600, "{} 1"),
    I("stddev(m)", 600, "{} 81.64965809"),
    I("stdvar(m)", 600, "{} 6666.666667"),
    I("topk(1, m)", 600, "{__name__=m,i=0,job=web} 300"),
    I("bottomk(2, m)", 600, "{__name__=m,i=0,job=api} 100 | {__name__=m,i=1,job=api} 200"),
    /* topk/bottomk (instant): groups in order of their first input series, best first */
    I("topk by (job) (1, m)", 600, "{__name__=m,i=1,job=api} 200 | {__name__=m,i=0,job=web} 300"),
    I("topk(3, m)", 600,
      "{__name__=m,i=0,job=web} 300 | {__name__=m,i=1,job=api} 200 | {__name__=m,i=0,job=api} 100"),
    I("bottomk(3, m)", 600,
      "{__name__=m,i=0,job=api} 100 | {__name__=m,i=1,job=api} 200 | {__name__=m,i=0,job=web} 300"),
    /* k must be an int64, but an evaluation that selected nothing (the
     * router's planning pass) does not fail on it */
    I("topk(scalar(m), m)", 600, "ERR:Scalar value NaN overflows int64"),
    I("topk(scalar(m), nonexistent)", 600, "ERR:Scalar value NaN overflows int64"),
    I("bottomk(scalar(nonexistent), nonexistent)", 600, ""),
    R("topk(scalar(gauge) + 1, m)", 0, 600, 60, "ERR:Scalar value NaN overflows int64"),
    /* avg: Prometheus' running mean keeps an infinite mean */
    I("avg(m{i=\"0\"} / 0 or nm)", 600, "{} inf"),
    I("avg(m{i=\"0\"} / 0 or -nm)", 600, "{} inf"),
    I("avg_over_time((gauge / 0 or vector(1))[3m:1m])", 300, "{} inf"),
    I("quantile(0.5, m)", 600, "{} 200"),
    I("quantile(0.25, m)", 600, "{} 150"),
    /* NaN sorts first: [NaN, 100, 200, 300] */
    I("quantile(0.5, m{i=\"0\"} or vector(0 / 0) or m{i=\"1\"})", 600, "{} 150"),
    I("quantile(0, m or vector(0 / 0))", 600, "{} NaN"),
    /* [1, NaN, NaN, 1, 1] sorts to [NaN, NaN, 1, 1, 1] */
    I("quantile_over_time(0.25, ((gauge - 3) / (gauge - 3))[5m:1m])", 300, "{} NaN"),
    I("quantile_over_time(0.5, ((gauge - 3) / (gauge - 3))[5m:1m])", 300, "{} 1"),
    I("count_values(\"v\", m)", 600, "{v=100} 1 | {v=200} 1 | {v=300} 1"),
    I("count_values by (job) (\"v\", info)", 600, "{job=api,v=1} 1"),
    I("count_values(\"1v\", m)", 600, "ERR:invalid label name \"1v\""),
    R("sum(m)", 0, 120, 60, "{} 0 60 120"),
    /* (4) binary operators */
    I("2 ^ 3", 0, "scalar 8"),
    I("7 % 3", 0, "scalar 1"),
    I("1 < bool 2", 0, "scalar 1"),
    I("1 atan2 1", 0, "scalar 0.7853981634"),
    I("-(1 + 2) * 2", 0, "scalar -6"),
    I("m{i=\"0\"} * 2", 600, "{i=0,job=api} 200 | {i=0,job=web} 600"),
    I("2 - m{job=\"web\"}", 600, "{i=0,job=web} -298"),
    I("-m{job=\"web\"}", 600, "{i=0,job=web} -300"),
    I("m > 150", 600, "{__name__=m,i=0,job=web} 300 | {__name__=m,i=1,job=api} 200"),
    I("150 < m", 600, "{__name__=m,i=0,job=web} 300 | {__name__=m,i=1,job=api} 200"),
    I("m > bool 150", 600, "{i=0,job=api} 0 | {i=0,job=web} 1 | {i=1,job=api} 1"),
    I("m{job=\"api\"} / on(i) m{job=\"web\"}", 600, "{i=0} 0.3333333333"),
    I("m{job=\"api\"} + m{job=\"api\"}", 600, "{i=0,job=api} 200 | {i=1,job=api} 400"),
    I("m{job=\"api\"} - ignoring(job) m{job=\"web\"}", 600, "{i=0} -200"),
    I("m == on(i, job) m{i=\"1\"}", 600, "{i=1,job=api} 200"),
    I("m * on(job) group_left(owner) info", 600,
      "{i=0,job=api,owner=team1} 100 | {i=1,job=api,owner=team1} 200"),
    I("info * on(job) group_right(owner) m", 600,
      "{i=0,job=api,owner=team1} 100 | {i=1,job=api,owner=team1} 200"),
    I("m / ignoring(job) m", 600, "ERR:many-to-many matching not allowed"),
    I("m * on(job) info", 600, "ERR:many-to-one matching must be explicit"),
    I("m and m{i=\"0\"}", 600, "{__name__=m,i=0,job=api} 100 | {__name__=m,i=0,job=web} 300"),
    I("m{job=\"api\"} or m{job=\"web\"}", 600,
      "{__name__=m,i=0,job=api} 100 | {__name__=m,i=0,job=web} 300 | {__name__=m,i=1,job=api} 200"),
    I("m unless m{job=\"web\"}", 600,
      "{__name__=m,i=0,job=api} 100 | {__name__=m,i=1,job=api} 200"),
    I("m and on(job) info", 600, "{__name__=m,i=0,job=api} 100 | {__name__=m,i=1,job=api} 200"),
    I("m unless ignoring(i) m{i=\"1\"}", 600, "{__name__=m,i=0,job=web} 300"),
    I("rate(m[5m]) + rate(nm[5m])", 600, ""),
    I("nm + m", 600, ""),
    R("nm2 or nm", 240, 360, 60, "{__name__=nm,x=1} 4 _ _ | {__name__=nm2,x=1} _ 7 7"),
    I("m{job=\"api\"} + m{job=\"web\"}", 600, ""),
    /* (5) functions */
    I("abs(-m{job=\"web\"})", 600, "{i=0,job=web} 300"),
    I("abs(m{job=\"web\"}) keep_metric_names", 600, "{__name__=m,i=0,job=web} 300"),
    I("ceil(vector(1.25))", 0, "{} 2"),
    I("floor(vector(-1.5))", 0, "{} -2"),
    I("round(vector(2.5))", 0, "{} 3"),
    I("round(vector(-2.5))", 0, "{} -2"),
    I("round(vector(1.234), 0.1)", 0, "{} 1.2"),
    I("clamp(vector(5), 0, 3)", 0, "{} 3"),
    I("clamp(vector(5), 3, 0)", 0, ""),
    I("clamp_min(vector(1), 2)", 0, "{} 2"),
    I("clamp_max(vector(1), 0.5)", 0, "{} 0.5"),
    /* NaN bounds give NaN, as Go's math.Max/Min; an infinity beats NaN */
    I("clamp_min(vector(1), scalar(nonexistent))", 0, "{} NaN"),
    I("clamp_max(vector(1), scalar(nonexistent))", 0, "{} NaN"),
    I("clamp(vector(1), scalar(nonexistent), 2)", 0, "{} NaN"),
    I("clamp(vector(1), 0, scalar(nonexistent))", 0, "{} NaN"),
    I("clamp_min(vector(1 / 0), scalar(nonexistent))", 0, "{} inf"),
    I("clamp_max(vector(-1 / 0), scalar(nonexistent))", 0, "{} -inf"),
    I("exp(vector(0))", 0, "{} 1"),
    I("ln(vector(1))", 0, "{} 0"),
    I("log2(vector(8))", 0, "{} 3"),
    I("log10(vector(1000))", 0, "{} 3"),
    I("sqrt(vector(16))", 0, "{} 4"),
    I("sgn(vector(-3))", 0, "{} -1"),
    I("deg(vector(pi()))", 0, "{} 180"),
    I("rad(vector(180))", 0, "{} 3.141592654"),
    I("holt_winters(m{job=\"api\",i=\"0\"}[5m], 0.5, 0.5)", 600, "{i=0,job=api} 100"),
    I("holt_winters(gauge[5m], 0.5, 0.5)", 300, "{} 3.125"),
    I("double_exponential_smoothing(gauge[5m], 0.5, 0.5)", 300, "{} 3.125"),
    I("holt_winters(gauge[1m], 0.5, 0.5)", 300, ""),
    I("holt_winters(gauge[5m], 1, 0.5)", 300, "ERR:invalid smoothing factor"),
    I("holt_winters(gauge[5m], 0.5, 0)", 300, "ERR:invalid trend factor"),
    I("holt_winters(nonexistent[5m], 1, 0.5)", 300, ""),
    I("label_replace(m{job=\"api\",i=\"0\"}, \"foo\", \"$1-x\", \"job\", \"(a.)i\")", 600,
      "{__name__=m,foo=ap-x,i=0,job=api} 100"),
    I("label_replace(m{job=\"api\",i=\"0\"}, \"foo\", \"$1\", \"job\", \"a\")", 600,
      "{__name__=m,i=0,job=api} 100"),
    I("label_replace(m{job=\"api\",i=\"0\"}, \"job\", \"\", \"job\", \".*\")", 600,
      "{__name__=m,i=0} 100"),
    I("label_replace(m{job=\"api\",i=\"0\"}, \"x\", \"${name}!\", \"job\", \"(?P<name>.*)\")", 600,
      "{__name__=m,i=0,job=api,x=api!} 100"),
    I("label_join(m{job=\"api\",i=\"0\"}, \"foo\", \",\", \"job\", \"i\")", 600,
      "{__name__=m,foo=api,0,i=0,job=api} 100"),
    I("time()", 600, "scalar 600"),
    I("timestamp(gauge)", 200, "{} 120"),
    I("timestamp(m{i=\"1\"} offset 1m)", 200, "{i=1,job=api} 120"),
    I("vector(time())", 600, "{} 600"),
    I("scalar(m{i=\"1\"})", 600, "scalar 200"),
    I("scalar(m)", 600, "scalar NaN"),
    I("sort_desc(m)", 600,
      "{__name__=m,i=0,job=web} 300 | {__name__=m,i=1,job=api} 200 | {__name__=m,i=0,job=api} 100"),
    I("sort(m)", 600,
      "{__name__=m,i=0,job=api} 100 | {__name__=m,i=1,job=api} 200 | {__name__=m,i=0,job=web} 300"),
    I("absent(nonexistent{job=\"x\"})", 600, "{job=x} 1"),
    I("absent(m)", 600, ""),
    /* a label with two matchers, or an empty value, is not reported */
    I("absent(nonexistent{job=\"x\",job=\"y\"})", 600, "{} 1"),
    I("absent(nonexistent{job=\"x\",job=~\"x.*\",i=\"1\"})", 600, "{i=1} 1"),
    I("absent(nonexistent{job=~\"x.*\",job=\"x\",i=\"1\"})", 600, "{i=1,job=x} 1"),
    I("absent(nonexistent{job=\"x\",job=\"y\",job=\"z\"})", 600, "{} 1"),
    I("absent(nonexistent{job=\"\",i=\"1\"})", 600, "{i=1} 1"),
    I("year(vector(0))", 0, "{} 1970"),
    I("day_of_week(vector(0))", 0, "{} 4"),
    I("days_in_month(vector(1707000000))", 0, "{} 29"),
    I("hour(vector(18120))", 0, "{} 5"),
    I("minute(vector(18120))", 0, "{} 2"),
    I("day_of_year(vector(3456000))", 0, "{} 41"),
    I("month()", 3456000, "{} 2"),
    I("day_of_month()", 3456000, "{} 10"),
    I("histogram_quantile(0.5, h_bucket)", 600, "{} 0.5"),
    I("histogram_quantile(0.25, h_bucket)", 600, "{} 0.2"),
    I("histogram_quantile(0.9, h_bucket)", 600, "{} 1"),
    I("histogram_quantile(0.1, h_bucket)", 600, "{} 0.06"),
    I("histogram_quantile(0.5, sum by (le) (rate(h_bucket[5m])))", 600, "{} 0.5"),
    I("histogram_quantile(0.5, h_bucket)", 0, "{} NaN"),
    /* all counts NaN (0/0): no bucket reaches rank NaN -> the last finite bound */
    I("histogram_quantile(0.5, h_bucket / 0)", 0, "{} 1"),
    /* a NaN count does not reset the running maximum: [1, NaN, 0.5, 0.8, 2] becomes
     * [1, NaN, 1, 1, 2], rank 0.7 falls in bucket 3 (after the NaN): NaN, not 3.67 */
    I("histogram_quantile(0.35, label_replace(vector(1), \"le\", \"1\", \"\", \"\") or "
      "label_replace(vector(0 / 0), \"le\", \"2\", \"\", \"\") or "
      "label_replace(vector(0.5), \"le\", \"3\", \"\", \"\") or "
      "label_replace(vector(0.8), \"le\", \"4\", \"\", \"\") or "
      "label_replace(vector(2), \"le\", \"+Inf\", \"\", \"\"))",
      0, "{} NaN"),
    /* (6) subqueries */
    I("max_over_time(m{job=\"api\",i=\"0\"}[5m:1m])", 600, "{i=0,job=api} 100"),
    I("sum_over_time(m{job=\"api\",i=\"0\"}[3m:1m])", 600, "{i=0,job=api} 270"),
    I("sum_over_time(m{job=\"api\",i=\"0\"}[3m:1m])", 630, "{i=0,job=api} 270"),
    I("count_over_time(m{job=\"api\",i=\"0\"}[5m:2m])", 600, "{i=0,job=api} 3"),
    I("rate(m{job=\"api\",i=\"0\"}[5m:1m])", 600, "{i=0,job=api} 0.1666666667"),
    I("max_over_time(rate(m{job=\"api\",i=\"0\"}[2m])[4m:2m])", 600, "{i=0,job=api} 0.1666666667"),
    I("sum_over_time(m{job=\"api\",i=\"0\"}[2m:1m] offset 1m)", 600, "{i=0,job=api} 170"),
    R("count_over_time(m{job=\"api\",i=\"0\"}[2m:1m])", 60, 180, 60, "{i=0,job=api} 2 2 2"),
    I("max_over_time(vector(time())[2m:1m])", 600, "{} 600"),
};

static void test_cases(void **state)
{
    (void)state;
    load(load_text, 60000);
    int fails = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const ecase_t *c = &cases[i];
        promql_expr_t *e;
        char err[256], got[2048];
        int rc = promql_parse(c->q, strlen(c->q), &e, err, sizeof err);
        if (rc) {
            print_error("case %zu %s: parse: %s\n", i, c->q, err);
            fails++;
            continue;
        }
        int64_t s = (int64_t)(c->start * 1000), en = c->end < 0 ? s : (int64_t)(c->end * 1000);
        int64_t step = (int64_t)(c->step * 1000);
        promql_result_t *r = NULL;
        rc = promql_eval(e, s, en, step, NULL, mem_select, NULL, &r, err, sizeof err);
        if (rc)
            snprintf(got, sizeof got, "ERR:%s", err);
        else
            render(r, s, en, step, got, sizeof got);
        int ok = !strncmp(c->want, "ERR:", 4) ? (rc && strstr(got, c->want + 4) != NULL)
                                              : !strcmp(got, c->want);
        if (!ok) {
            print_error("case %zu %s @%g: got   [%s]\n                     want  [%s]\n", i, c->q,
                        c->start, got, c->want);
            fails++;
        }
        promql_result_free(r);
        promql_free(e);
    }
    assert_int_equal(fails, 0);
}

/* ---- quantile by selection, min/max loops, avg as a sum: against the plain way ---- */

static int ref_cmp(const void *a, const void *b) /* ascending, NaN first */
{
    double x = *(const double *)a, y = *(const double *)b;
    if (isnan(x) || isnan(y))
        return isnan(y) - isnan(x);
    return x < y ? -1 : x > y;
}

/* One instant value of q over the series r (loaded by the caller). */
static double eval_one(const char *q, int64_t t)
{
    promql_expr_t *e;
    char err[256];
    assert_int_equal(promql_parse(q, strlen(q), &e, err, sizeof err), 0);
    promql_result_t *r = NULL;
    assert_int_equal(promql_eval(e, t, t, 1000, NULL, mem_select, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r->nseries, 1);
    double v = r->series[0].v[0];
    promql_result_free(r);
    promql_free(e);
    return v;
}

static void same_or_nan(double want, double got)
{
    if (isnan(want))
        assert_true(isnan(got));
    else
        assert_true(memcmp(&want, &got, sizeof want) == 0);
}

static void test_quantile_select(void **state)
{
    (void)state;
    static const double qs[] = {0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1};
    uint64_t seed = 12345;
    for (int trial = 0; trial < 300; trial++) {
        mser_t *s = &db[0];
        memset(s, 0, sizeof *s);
        ndb = 1;
        memcpy(s->text, "__name__\0r", 11);
        s->l[0] = (st_label_t){s->text, s->text + 9, 8, 1};
        s->nl = 1;
        s->n = 1 + (size_t)trial % MAXP;
        for (size_t i = 0; i < s->n; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            unsigned k = (unsigned)(seed >> 33);
            double v = (double)(k % 1000) / 8.0 - 60; /* duplicates, negatives */
            if (trial % 3 == 1 && k % 17 == 0)
                v = NAN;
            if (trial % 3 == 2 && k % 13 == 0)
                v = k % 2 ? INFINITY : -INFINITY;
            s->ts[i] = (int64_t)i * 1000;
            s->v[i] = v;
        }
        int64_t t = (int64_t)(s->n - 1) * 1000 + 500;
        double sorted[MAXP];
        memcpy(sorted, s->v, s->n * sizeof *sorted);
        qsort(sorted, s->n, sizeof *sorted, ref_cmp);
        for (size_t x = 0; x < sizeof qs / sizeof qs[0]; x++) {
            double rank = qs[x] * (double)(s->n - 1);
            size_t lo = (size_t)floor(rank), hi = lo + 1 < s->n ? lo + 1 : s->n - 1;
            double w = rank - floor(rank);
            char q[64];
            snprintf(q, sizeof q, "quantile_over_time(%g, r[100s])", qs[x]);
            same_or_nan(sorted[lo] * (1 - w) + sorted[hi] * w, eval_one(q, t));
        }
        double mn = s->v[0], mx = s->v[0];
        for (size_t i = 1; i < s->n; i++) {
            if (s->v[i] < mn || isnan(mn))
                mn = s->v[i];
            if (s->v[i] > mx || isnan(mx))
                mx = s->v[i];
        }
        same_or_nan(mn, eval_one("min_over_time(r[100s])", t));
        same_or_nan(mx, eval_one("max_over_time(r[100s])", t));
        /* avg_over_time: Prometheus' running mean (its infinity rules), or
         * within 1e-12 of it where the sum stays finite */
        double mean = s->v[0];
        for (size_t i = 1; i < s->n; i++) {
            double x = s->v[i], k = (double)(i + 1);
            if (!(isinf(mean) && ((isinf(x) && (mean > 0) == (x > 0)) || (!isinf(x) && !isnan(x)))))
                mean = mean + (x / k - mean / k);
        }
        double avg = eval_one("avg_over_time(r[100s])", t);
        if (isfinite(mean) && isfinite(avg))
            assert_true(fabs(mean - avg) <= 1e-12 * fmax(1, fabs(mean)));
        else
            same_or_nan(mean, avg);
    }
    /* a sum that overflows: the running mean */
    db[0].n = 3;
    db[0].v[0] = db[0].v[1] = db[0].v[2] = 1e308;
    same_or_nan(1e308, eval_one("avg_over_time(r[100s])", 2500));
}

/* ---- window-less rollups in instant queries ------------------------------------- */

static void eval_render(const char *q, int64_t t, int64_t step, char *out, size_t cap)
{
    promql_expr_t *e;
    char err[256];
    assert_int_equal(promql_parse(q, strlen(q), &e, err, sizeof err), 0);
    promql_result_t *r = NULL;
    int rc = promql_eval(e, t, t, step, NULL, mem_select, NULL, &r, err, sizeof err);
    if (rc)
        print_error("%s: %s\n", q, err);
    assert_int_equal(rc, 0);
    render(r, t, t, step, out, cap);
    promql_result_free(r);
    promql_free(e);
}

/* MetricsQL: a rollup without a window uses the step as its window, also in
 * an instant query, whose step is PROMQL_INSTANT_STEP_MS (5m) unless the
 * caller gives one: f(m) equals f(m[step]). */
static void test_windowless_instant(void **state)
{
    (void)state;
    load(load_text, 60000);
    static const char *const fns[] = {"rate",           "increase",         "irate",
                                      "delta",          "idelta",           "changes",
                                      "resets",         "avg_over_time",    "sum_over_time",
                                      "min_over_time",  "max_over_time",    "count_over_time",
                                      "last_over_time", "stddev_over_time", "deriv"};
    static const char *const sels[] = {"m{job=\"api\",i=\"1\"}", "reset", "gauge"};
    static const int64_t steps[] = {PROMQL_INSTANT_STEP_MS, 120000, 30000};
    char q[256], got[1024], want[1024];
    for (size_t f = 0; f < sizeof fns / sizeof fns[0]; f++)
        for (size_t s = 0; s < sizeof sels / sizeof sels[0]; s++)
            for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
                snprintf(q, sizeof q, "%s(%s[%llds])", fns[f], sels[s],
                         (long long)(steps[k] / 1000));
                eval_render(q, 300000, steps[k], want, sizeof want);
                snprintf(q, sizeof q, "%s(%s)", fns[f], sels[s]);
                eval_render(q, 300000, steps[k], got, sizeof got);
                if (strcmp(got, want))
                    print_error("%s step %lld: got [%s] want [%s]\n", q, (long long)steps[k], got,
                                want);
                assert_string_equal(got, want);
            }
    /* the values at 600 s: m{i=1} = 0, 20, ..., 200, one sample a minute */
    static const struct {
        const char *q;
        int64_t step;
        const char *want;
    } vals[] = {
        {"count_over_time(m{i=\"1\"})", PROMQL_INSTANT_STEP_MS, "{i=1,job=api} 5"},
        {"count_over_time(m{i=\"1\"})", 120000, "{i=1,job=api} 2"},
        {"increase(m{i=\"1\"})", PROMQL_INSTANT_STEP_MS, "{i=1,job=api} 100"},
        {"rate(m{i=\"1\"})", PROMQL_INSTANT_STEP_MS, "{i=1,job=api} 0.3333333333"},
        {"avg_over_time(m{i=\"1\"})", PROMQL_INSTANT_STEP_MS, "{i=1,job=api} 160"},
        {"avg_over_time(m{i=\"1\"})", 120000, "{i=1,job=api} 190"},
        /* inside a subquery the window is the subquery's step */
        {"max_over_time(count_over_time(m{i=\"1\"})[4m:2m])", PROMQL_INSTANT_STEP_MS,
         "{i=1,job=api} 2"},
    };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        eval_render(vals[i].q, 600000, vals[i].step, got, sizeof got);
        if (strcmp(got, vals[i].want))
            print_error("%s step %lld: got [%s]\n", vals[i].q, (long long)vals[i].step, got);
        assert_string_equal(got, vals[i].want);
    }
}

/* ---- staleness markers ------------------------------------------------------------ */

/* Prometheus' staleness marker (a NaN with payload 2, remote write stores it
 * bit-exact): at an instant selector the series is gone from the marker on;
 * range selections skip it. */
static void test_staleness(void **state)
{
    (void)state;
    load("st 1 2 3 4 5\n", 60000); /* 0, 60, 120, 180, 240 s */
    uint64_t stale = 0x7ff0000000000002ULL;
    memcpy(&db[0].v[3], &stale, sizeof stale); /* at 180 s */
    ndb = 1;
    db[0].n = 4; /* the series stops after its marker */
    char got[256];
    eval_render("st", 170000, 1000, got, sizeof got);
    assert_string_equal(got, "{__name__=st} 3");
    eval_render("st", 200000, 1000, got, sizeof got);
    assert_string_equal(got, "");
    eval_render("count_over_time(st[10m])", 200000, 1000, got, sizeof got);
    assert_string_equal(got, "{} 3");
    eval_render("last_over_time(st[10m])", 200000, 1000, got, sizeof got);
    assert_string_equal(got, "{__name__=st} 3");
    /* a marker between samples: the range skips it and keeps what follows */
    db[0].n = 5;
    eval_render("count_over_time(st[10m])", 300000, 1000, got, sizeof got);
    assert_string_equal(got, "{} 4");
    eval_render("sum_over_time(st[10m])", 300000, 1000, got, sizeof got);
    assert_string_equal(got, "{} 11");
    eval_render("last_over_time(st[10m])", 300000, 1000, got, sizeof got);
    assert_string_equal(got, "{__name__=st} 5");
}

/* ---- JSON ---------------------------------------------------------------------- */

static void json_of(const char *q, int64_t s, int64_t e, int64_t step, char *out, size_t cap)
{
    promql_expr_t *x;
    char err[256];
    assert_int_equal(promql_parse(q, strlen(q), &x, err, sizeof err), 0);
    promql_result_t *r;
    assert_int_equal(promql_eval(x, s, e, step, NULL, mem_select, NULL, &r, err, sizeof err), 0);
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(promql_result_json(r, s != e, &b), 0);
    snprintf(out, cap, "%.*s", (int)b.len, (const char *)b.data);
    st_buf_deinit(&b);
    promql_result_free(r);
    promql_free(x);
}

static void test_json(void **state)
{
    (void)state;
    load(load_text, 60000);
    char out[1024];
    json_of("time()", 600000, 600000, 1000, out, sizeof out);
    assert_string_equal(out, "{\"resultType\":\"scalar\",\"result\":[600,\"600\"]}");
    json_of("vector(1.5)", 1435781451781, 1435781451781, 1000, out, sizeof out);
    assert_string_equal(
        out, "{\"resultType\":\"vector\",\"result\":[{\"metric\":{},\"value\":[1435781451.781,"
             "\"1.5\"]}]}");
    json_of("m{job=\"api\",i=\"0\"}", 0, 60000, 60000, out, sizeof out);
    assert_string_equal(out, "{\"resultType\":\"matrix\",\"result\":[{\"metric\":{\"__name__\":"
                             "\"m\",\"i\":\"0\",\"job\":\"api\"},\"values\":[[0,\"0\"],[60,"
                             "\"10\"]]}]}");
    json_of("\"a\\\"b\"", 1500, 1500, 1000, out, sizeof out);
    assert_string_equal(out, "{\"resultType\":\"string\",\"result\":[1.5,\"a\\\"b\"]}");
    json_of("m{job=\"nope\"}", 1050, 1050, 1000, out, sizeof out);
    assert_string_equal(out, "{\"resultType\":\"vector\",\"result\":[]}");
    json_of("vector(1/0) or label_replace(vector(-1/0), \"a\", \"b\", \"\", \"\")", 1, 1, 1000, out,
            sizeof out);
    assert_string_equal(out, "{\"resultType\":\"vector\",\"result\":[{\"metric\":{},\"value\":[0."
                             "001,\"+Inf\"]},{\"metric\":{\"a\":\"b\"},\"value\":[0.001,\"-Inf\"]}"
                             "]}");
    json_of("scalar(m)", 600000, 600000, 1000, out, sizeof out);
    assert_string_equal(out, "{\"resultType\":\"scalar\",\"result\":[600,\"NaN\"]}");
    json_of("time()", 0, 120000, 60000, out, sizeof out);
    assert_string_equal(out, "{\"resultType\":\"matrix\",\"result\":[{\"metric\":{},\"values\":[["
                             "0,\"0\"],[60,\"60\"],[120,\"120\"]]}]}");
}

static const double P10I[7] = {1, 10, 100, 1000, 10000, 100000, 1000000};
static const double P10D[22] = {1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0,  1e1,  1e2,  1e3,
                                1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14};

static void fmtv(double v, const char *want)
{
    st_buf_t b;
    st_buf_init(&b);
    assert_int_equal(st_fmt_double(&b, v), 0);
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%.*s", (int)b.len, (const char *)b.data);
    assert_string_equal(tmp, want);
    st_buf_deinit(&b);
}

static void fmtv_small(double v, int zeros, const char *digits)
{
    char want[400];
    int n = snprintf(want, sizeof want, "0.");
    for (int i = 0; i < zeros; i++)
        want[n++] = '0';
    snprintf(want + n, sizeof want - (size_t)n, "%s", digits);
    fmtv(v, want);
}

static void test_fmt_value(void **state)
{
    (void)state;
    fmtv(1, "1");
    fmtv(0.1, "0.1");
    fmtv(1.0 / 3, "0.3333333333333333");
    fmtv(1e21, "1000000000000000000000");
    fmtv(1e-7, "0.0000001");
    fmtv(-0.5, "-0.5");
    fmtv(123.456, "123.456");
    fmtv(1.5e300 * 1e10, "+Inf");
    fmtv(-1.5e300 * 1e10, "-Inf");
    fmtv(0, "0");
    fmtv(100, "100");
    fmtv(12345678.9, "12345678.9");
    fmtv(2.5e-5, "0.000025");
    /* shortest round trip at 15, 16 and 17 significant digits */
    fmtv(0.1 + 0.2, "0.30000000000000004");
    fmtv(1.0 / 7, "0.14285714285714285");
    fmtv(123456789012345.6, "123456789012345.6");
    fmtv(9007199254740993.0, "9007199254740992");
    fmtv(4.35, "4.35");
    /* "0." + 299 zeros + "1"; a subnormal has fewer digits than a normal double */
    fmtv_small(1e-300, 299, "1");
    fmtv_small(5e-324 * 3, 322, "15");
}

/* Reference: the shortest of 1..17 significant digits that parses back to v
 * (glibc rounds correctly, so at that length it is the closest string, the
 * one Go and Prometheus print); its digits without trailing zeros. */
static void ref_digits(double v, char *out)
{
    char tmp[64];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, fabs(v));
        if (strtod(tmp, NULL) == fabs(v))
            break;
    }
    int n = 0;
    for (const char *q = tmp; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9')
            out[n++] = *q;
    while (n > 1 && out[n - 1] == '0')
        n--;
    out[n] = 0;
}

/* The significant digits of a plain decimal, without trailing zeros. */
static void sig_digits(const char *s, char *out)
{
    int n = 0, started = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            continue;
        if (*s != '0')
            started = 1;
        if (started && n < 390)
            out[n++] = *s;
    }
    while (n > 1 && out[n - 1] == '0')
        n--;
    out[n] = 0;
}

/* The fast path against the reference on many values of the kinds query
 * results hold: the same digits as the shortest closest string. */
static void test_fmt_value_random(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252ull;
    st_buf_t b;
    st_buf_init(&b);
    for (int i = 0; i < 120000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double v;
        switch (i % 6) {
        case 0: /* any bit pattern, finite */
            memcpy(&v, &x, sizeof v);
            if (!isfinite(v))
                continue;
            break;
        case 1: /* rates, ratios */
            v = (double)(x >> 11) / 9007199254740992.0 * 1000.0;
            break;
        case 2: /* decimals with 2..6 places */
            v = (double)(x % 100000000) / P10I[2 + (x >> 40) % 5];
            break;
        case 3: /* around powers of ten */
            v = P10D[(x >> 20) % 22] * (1.0 + ((double)(x % 2001) - 1000.0) * 1e-16);
            break;
        case 4: /* small, and thirds of 6-decimal values (ties at 17 digits) */
            if (x & 1) {
                v = (double)(x % 100000000) / 1e6 / 3;
                break;
            }
            v = (double)(x >> 11) / 9007199254740992.0 * 1e-6;
            break;
        default: /* integers and near-integers */
            v = (double)(x % 1000000000000000ull) + ((x >> 60) ? 0.0 : 0.5);
            break;
        }
        b.len = 0;
        assert_int_equal(st_fmt_double(&b, v), 0);
        st_buf_put_u8(&b, 0);
        const char *s = (const char *)b.data;
        double back = strtod(s, NULL);
        char got[400], want[64];
        sig_digits(s, got);
        ref_digits(v, want);
        if (back != v || (v != 0 && strcmp(got, want)))
            fail_msg("%.17g printed as %s (digits %s, want %s)", v, s, got, want);
    }
    st_buf_deinit(&b);
}

/* ---- limits, select-once ------------------------------------------------------- */

static void test_limits(void **state)
{
    (void)state;
    load(load_text, 60000);
    promql_expr_t *e;
    char err[256];
    const char *q = "sum(rate(m[5m]))";
    assert_int_equal(promql_parse(q, strlen(q), &e, err, sizeof err), 0);
    promql_result_t *r = NULL;
    promql_eval_opts_t o = {0};
    o.max_samples = 5;
    assert_int_equal(
        promql_eval(e, 600000, 600000, 1000, &o, mem_select, NULL, &r, err, sizeof err), ST_ELIMIT);
    assert_non_null(strstr(err, "too many samples"));
    o.max_samples = 0;
    o.deadline_ms = 1;
    assert_int_equal(
        promql_eval(e, 600000, 600000, 1000, &o, mem_select, NULL, &r, err, sizeof err),
        ST_ETIMEDOUT);
    assert_string_equal(err, "query timed out");
    o.deadline_ms = 0;
    o.max_series = 2;
    assert_int_equal(
        promql_eval(e, 600000, 600000, 1000, &o, mem_select, NULL, &r, err, sizeof err), ST_ELIMIT);
    /* a range query selects once per selector */
    nselects = 0;
    assert_int_equal(promql_eval(e, 0, 600000, 60000, NULL, mem_select, NULL, &r, err, sizeof err),
                     0);
    assert_int_equal(nselects, 1);
    assert_int_equal(r->type, PROMQL_RES_MATRIX);
    assert_int_equal(r->nseries, 1);
    assert_int_equal(r->series[0].n, 10); /* no rate at t=0 */
    promql_result_free(r);
    assert_int_equal(promql_eval(e, 10, 0, 1000, NULL, mem_select, NULL, &r, err, sizeof err),
                     ST_EINVAL);
    promql_free(e);
    q = "\"s\"";
    assert_int_equal(promql_parse(q, strlen(q), &e, err, sizeof err), 0);
    assert_int_equal(promql_eval(e, 0, 60000, 1000, NULL, mem_select, NULL, &r, err, sizeof err),
                     ST_EINVAL);
    promql_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),     cmocka_unit_test(test_json),
        cmocka_unit_test(test_fmt_value), cmocka_unit_test(test_fmt_value_random),
        cmocka_unit_test(test_limits),    cmocka_unit_test(test_windowless_instant),
        cmocka_unit_test(test_staleness), cmocka_unit_test(test_quantile_select),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

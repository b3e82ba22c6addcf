/*
 * router_sql — SQL statements against the cluster (router_sql.h), and the
 * HTTP door: POST /sql (body = the statement, or a form with q=), GET
 * /sql?q=. Answers {"columns":[{"name":..,"type":..}],"rows":[[..]]} or,
 * with Accept: text/csv, CSV with a header row; errors as
 * {"error":"syntax error at position N: ...","sqlstate":"42601"} with
 * 400 (statement), 422 (a query limit), 501 (not available), 503.
 *
 * A statement's steps (see router_sql.h for the mapping to PromQL):
 *   1. loop: parse, plan;
 *   2. loop: router_promql_run (fan-out, pushdown, limits, deadline);
 *   3. worker: sql_exec over the series (rows, WHERE, groups, order);
 *   4. loop: cb with the result.
 *
 * count(*) of a statement that names no field (sql_push_plan sets
 * push.rows) takes another step 2: ROW_STATS (router_rowstats.c) gives
 * each tag set's rows when its fields' timestamp fingerprints agree; the
 * tag sets whose fields differ are read raw over a selection narrowed to
 * them (sql_count_narrow) and their rows counted from the samples
 * (rowstats_resolve); step 3 feeds one row per tag set (sql_count_feed).
 * When the nodes cannot answer (tiers, an older node, a limit), or no tag
 * set has data, or a GROUP BY key is a field, the statement is planned
 * again from its text and its rows are read as for any statement.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "http_util.h"
#include "readopt.h"
#include "repl.h"
#include "router_delete.h"
#include "router_rowstats.h"
#include "router_sql.h"
#include "auth_gate.h"
#include "wbatch.h"
#include "st_err.h"
#include "st_text.h"
#include "st_time.h"
#include "strata.pb-c.h"

#define SQL_WINDOW_FIRST_MS 60000 /* ORDER BY time ... LIMIT: the first window read */
#define SQL_WINDOW_GROWTH 16      /* ... and how it grows while rows are short */
#define SQL_PROBE_GROWTH 2        /* each probe's segment past the last empty one */
#define SQL_TOPN_NARROW_MAX 1000  /* LIMIT + OFFSET up to which the read names TOPN's tag sets */
#define SQL_PUSH_INFLIGHT 8       /* partial-aggregate queries of a statement in flight */

typedef enum { FETCH_NONE, FETCH_DATA, FETCH_TABLES, FETCH_COLUMNS, FETCH_PUSH } fetch_t;

typedef struct sqljob {
    uv_work_t w;
    router_t *r;
    router_sql_cb cb;
    void *arg;
    sql_stmt_t *stmt;
    sql_plan_t plan;
    char **params;
    size_t nparams;
    int64_t now, deadline;
    fetch_t fetch;
    int catalog; /* 1: information_schema.tables, 2: .columns, 3: SHOW TABLES, 4: SHOW COLUMNS */
    const char *ctable;                  /* the table of a columns catalog */
    int retried;                         /* refetched with all fields */
    int64_t wstart, wend;                /* the whole range of a windowed read (plan.time_order) */
    int64_t window;                      /* the current window's length; 0: not windowed */
    int64_t probe_w, probe_lo, probe_hi; /* the probe's window; known empty / with data */
    int64_t probe_step;                  /* the last empty segment's length */
    promql_result_t *pr;                 /* what the nodes returned */
    sql_push_t push;                     /* FETCH_PUSH: the partial-aggregate queries */
    promql_result_t *prs[SQL_PUSH_MAX];
    size_t pushed;                         /* answers the job owns (prs[0..pushed)) */
    struct sqljob *push_arg[SQL_PUSH_MAX]; /* each query's callback argument: its index */
    size_t push_next, push_pending;
    char *topn_mem; /* the matchers TOPN's tag sets added (plan.m[topn_nm0..]) */
    size_t topn_nm0;
    int push_issuing, push_status;
    char *names[SQL_PUSH_MAX]; /* their metric names */
    st_label_t **lab;          /* label sets made for them */
    size_t nlab, labcap;
    /* count(*) per tag set (push.rows) */
    char *text; /* the statement, to plan it again for the rows */
    size_t textlen;
    int64_t dstart, dend; /* the default range */
    rowstats_t *rows;
    st_label_t *rows_lab; /* the rows' label sets, fed to sql_exec */
    double *rows_v;
    char *rows_name;
    int64_t rows_at;
    sql_result_t *res;
    uint64_t deleted;
    int status;
    const char *sqlstate;
    char err[SQL_ERR_MAX + 64];
} sqljob_t;

static metric_counter_t *sql_ok, *sql_err, *topn_window, *topn_probe;
static metric_counter_t *count_fp, *count_samples, *count_rows; /* count(*) by path */

int router_sql_metrics(router_t *r)
{
    sql_ok = metrics_counter(r->metrics, "strata_router_sql_statements_total",
                             "SQL statements answered (HTTP /sql and PostgreSQL), by result.",
                             "result", "ok", NULL);
    sql_err = metrics_counter(r->metrics, "strata_router_sql_statements_total",
                              "SQL statements answered (HTTP /sql and PostgreSQL), by result.",
                              "result", "error", NULL);
    topn_window = metrics_counter(
        r->metrics, "strata_router_sql_topn_total",
        "SQL ORDER BY time ... LIMIT reads by how the window was found: the nodes' TOPN keys "
        "(window) or probing (probe: fewer keys than rows asked, a failed TOPN, or OFFSET + "
        "LIMIT over 100000).",
        "how", "window", NULL);
    topn_probe = metrics_counter(
        r->metrics, "strata_router_sql_topn_total",
        "SQL ORDER BY time ... LIMIT reads by how the window was found: the nodes' TOPN keys "
        "(window) or probing (probe: fewer keys than rows asked, a failed TOPN, or OFFSET + "
        "LIMIT over 100000).",
        "how", "probe", NULL);
    static const char *const help =
        "SQL count(*) statements counted per tag set by how: timestamp fingerprints only, "
        "fingerprints and the samples of tag sets whose fields differ, or rows read (fallback).";
    count_fp = metrics_counter(r->metrics, "strata_router_sql_count_star_total", help, "path",
                               "fingerprints", NULL);
    count_samples = metrics_counter(r->metrics, "strata_router_sql_count_star_total", help, "path",
                                    "samples", NULL);
    count_rows = metrics_counter(r->metrics, "strata_router_sql_count_star_total", help, "path",
                                 "rows", NULL);
    return sql_ok && sql_err && topn_window && topn_probe && count_fp && count_samples && count_rows
               ? 0
               : ST_ENOMEM;
}

static void job_free(sqljob_t *j)
{
    free(j->topn_mem);
    for (size_t i = 0; i < j->pushed; i++) {
        promql_result_free(j->prs[i]);
        free(j->names[i]);
    }
    for (size_t i = 0; i < j->nlab; i++)
        free(j->lab[i]);
    free(j->lab);
    rowstats_destroy(j->rows);
    free(j->rows_lab);
    free(j->rows_v);
    free(j->rows_name);
    free(j->text);
    promql_result_free(j->pr);
    sql_result_free(j->res);
    sql_stmt_free(j->stmt);
    for (size_t i = 0; i < j->nparams; i++)
        free(j->params[i]);
    free(j->params);
    free(j);
}

static void answer(sqljob_t *j)
{
    router_sql_answer_t a = {.status = j->status,
                             .sqlstate = j->sqlstate,
                             .msg = j->err,
                             .stmt = j->stmt,
                             .res = j->status ? NULL : j->res,
                             .deleted = j->deleted};
    metric_counter_inc(j->status ? sql_err : sql_ok);
    j->cb(j->arg, &a);
    job_free(j);
}

static void fail(sqljob_t *j, int status, const char *sqlstate, const char *msg)
{
    j->status = status;
    j->sqlstate = sqlstate;
    if (msg != j->err)
        snprintf(j->err, sizeof j->err, "%s", msg);
    answer(j);
}

/* SQLSTATE of an ST_* code from the library. */
static const char *state_of(int rc)
{
    switch (rc) {
    case ST_EPARSE:
        return "42601"; /* syntax_error */
    case ST_ELIMIT:
        return "54000"; /* program_limit_exceeded */
    case ST_ETIMEDOUT:
        return "57014"; /* query_canceled */
    case ST_ENOMEM:
        return "53200"; /* out_of_memory */
    default:
        return "42000"; /* syntax_error_or_access_rule_violation */
    }
}

static int status_of(int rc)
{
    return rc == ST_ELIMIT ? 422 : rc == ST_ETIMEDOUT || rc == ST_ENOMEM ? 503 : 400;
}

/* ---- step 3: exec on the thread pool ------------------------------------- */

/* count(*): the rows of the tag sets whose fields differ from their samples
 * (the narrowed raw read in j->pr), then one row per tag set. */
static int rows_feed(sqljob_t *j, sql_exec_t *x)
{
    rowstats_t *rs = j->rows;
    int rc = 0;
    for (size_t i = 0; j->pr && i < j->pr->nseries && !rc; i++) {
        const promql_series_t *s = &j->pr->series[i];
        long k = rowstats_find(rs, s->labels, s->nlabels);
        if (k >= 0)
            rc = rowstats_samples(rs, (size_t)k, s->ts, s->n);
    }
    if (!rc)
        rc = rowstats_resolve(rs);
    size_t n = rowstats_nsets(rs), nlab = 0, nl;
    for (size_t i = 0; i < n; i++) {
        rowstats_labels(rs, i, &nl);
        nlab += nl + 1;
    }
    j->rows_lab = malloc((nlab ? nlab : 1) * sizeof *j->rows_lab);
    j->rows_v = malloc((n ? n : 1) * sizeof *j->rows_v);
    if (!rc && (!j->rows_lab || !j->rows_v ||
                asprintf(&j->rows_name, "%s_%s", sql_stmt_table(j->stmt), j->push.rows) < 0)) {
        j->rows_name = NULL;
        rc = ST_ENOMEM;
    }
    j->rows_at = j->plan.start;
    for (size_t i = 0, off = 0; i < n && !rc; i++) {
        const st_label_t *l = rowstats_labels(rs, i, &nl);
        j->rows_v[i] = (double)rowstats_rows(rs, i);
        rc = sql_count_feed(x, j->stmt, j->rows_name, j->rows_lab + off, l, nl, &j->rows_at,
                            &j->rows_v[i]);
        off += nl + 1;
    }
    return rc;
}

static int columns_of(sqljob_t *j)
{
    /* tags and fields of table j->ctable from the label sets returned */
    const char **tags = NULL, **fields = NULL;
    size_t nt = 0, nf = 0, ct = 0, cf = 0;
    size_t tl = strlen(j->ctable);
    int rc = 0;
    for (size_t i = 0; i < j->pr->nseries && !rc; i++) {
        const promql_series_t *s = &j->pr->series[i];
        for (size_t k = 0; k < s->nlabels && !rc; k++) {
            const st_label_t *l = &s->labels[k];
            const char *name = l->name;
            const char ***arr = &tags;
            size_t *n = &nt, *cap = &ct;
            if (!strcmp(name, ST_METRIC_LABEL)) {
                name = l->value_len == tl ? "value" : l->value + tl + 1;
                arr = &fields, n = &nf, cap = &cf;
            }
            size_t f = 0;
            while (f < *n && strcmp((*arr)[f], name))
                f++;
            if (f < *n)
                continue;
            if (*n == *cap && st_grow(arr, cap, sizeof **arr, 16)) {
                rc = ST_ENOMEM;
                break;
            }
            (*arr)[(*n)++] = name;
        }
    }
    /* sorted: insertion sort keeps it simple (tables have few columns) */
    for (int pass = 0; pass < 2 && !rc; pass++) {
        const char **a = pass ? fields : tags;
        size_t n = pass ? nf : nt;
        for (size_t i = 1; i < n; i++)
            for (size_t k = i; k > 0 && strcmp(a[k - 1], a[k]) > 0; k--) {
                const char *t = a[k];
                a[k] = a[k - 1];
                a[k - 1] = t;
            }
    }
    if (!rc)
        rc = sql_columns_result(j->ctable, tags, nt, fields, nf, j->catalog == 2, &j->res);
    free(tags);
    free(fields);
    return rc;
}

static int tables_of(sqljob_t *j)
{
    const char **names = malloc((j->pr->nseries + 1) * sizeof *names);
    if (!names)
        return ST_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < j->pr->nseries; i++) {
        const promql_series_t *s = &j->pr->series[i];
        int k = st_labels_find(s->labels, s->nlabels, ST_METRIC_LABEL);
        if (k >= 0)
            names[n++] = s->labels[k].value;
    }
    int rc = sql_tables_result(names, n, j->catalog == 1, &j->res);
    free(names);
    return rc;
}

static void exec_work(uv_work_t *w)
{
    sqljob_t *j = w->data;
    sql_exec_opts_t o = {.max_rows = topo_router(j->r->topo)->query_max_samples,
                         .max_bytes = topo_router(j->r->topo)->query_max_bytes,
                         .deadline_ms = j->deadline};
    sql_exec_t *x = NULL;
    sql_result_t *cat = NULL;
    int rc = 0;
    if (j->catalog) {
        rc = j->catalog == 2 || j->catalog == 4 ? columns_of(j) : tables_of(j);
        if (rc || j->catalog > 2)
            goto out;
        cat = j->res; /* SELECT over the catalog table */
        j->res = NULL;
    }
    /* partial aggregates: a point of the first aggregate is a group (tag
     * set, bucket); the executor sizes its tables once */
    for (size_t q = 0; q < j->pushed; q++)
        for (size_t i = 0;
             j->prs[q] && !strcmp(j->push.q[q].field, j->push.q[0].field) && i < j->prs[q]->nseries;
             i++)
            o.groups_hint += j->prs[q]->series[i].n;
    /* the pushed answers alone: a row per (tag set, bucket), each its group */
    o.rows_are_groups = j->pushed && !j->rows && !j->pr && !j->catalog;
    rc = sql_exec_create(j->stmt, &j->plan, &o, &x);
    if (rc)
        goto out;
    sql_exec_set_params(x, j->now, (const char *const *)j->params, j->nparams);
    if (cat)
        sql_exec_table(x, cat);
    for (size_t i = 0; j->pr && !cat && !j->rows && i < j->pr->nseries && !rc; i++) {
        const promql_series_t *s = &j->pr->series[i];
        rc = sql_exec_series(x, s->labels, s->nlabels, s->ts, s->v, s->n);
    }
    if (j->rows && !rc)
        rc = rows_feed(j, x);
    /* partial aggregates: each query's series are a synthetic field, at the
     * rows' time (the labels and times are rewritten in place: the
     * results are ours) */
    for (size_t q = 0; q < j->pushed && !rc; q++) {
        promql_result_t *pr = j->prs[q];
        const sql_push_q_t *pq = &j->push.q[q];
        char *name = NULL;
        if (asprintf(&name, "%s_%s", sql_stmt_table(j->stmt), pq->field) < 0) {
            rc = ST_ENOMEM;
            break;
        }
        j->names[q] = name;
        for (size_t i = 0; i < pr->nseries && !rc; i++) {
            promql_series_t *s = &pr->series[i];
            st_label_t *l = malloc((s->nlabels + 1) * sizeof *l);
            if (!l) {
                rc = ST_ENOMEM;
                break;
            }
            memcpy(l, s->labels, s->nlabels * sizeof *l);
            l[s->nlabels] = (st_label_t){ST_METRIC_LABEL, name, 8, (uint32_t)strlen(name)};
            j->lab[j->nlab++] = l; /* freed with the job */
            for (size_t k = 0; k < s->n; k++)
                s->ts[k] += pq->shift;
            rc = sql_exec_series(x, l, s->nlabels + 1, s->ts, s->v, s->n);
            if (j->nlab == j->labcap) {
                st_label_t **nl = realloc(j->lab, 2 * j->labcap * sizeof *nl);
                if (!nl)
                    rc = ST_ENOMEM;
                else {
                    j->lab = nl;
                    j->labcap *= 2;
                }
            }
        }
    }
    if (!rc)
        rc = sql_exec_finish(x, &j->res, j->err, sizeof j->err);
    else
        snprintf(j->err, sizeof j->err, "%s", st_strerror(rc));
out:
    if (rc) {
        if (!j->err[0])
            snprintf(j->err, sizeof j->err, "%s", st_strerror(rc));
        j->status = status_of(rc);
        j->sqlstate = state_of(rc);
        /* the codes drivers tell apart (PostgreSQL's undefined_column,
         * undefined_function) */
        if (rc == ST_EINVAL && strstr(j->err, "does not exist"))
            j->sqlstate = strstr(j->err, "column \"")   ? "42703"
                          : strstr(j->err, "function ") ? "42883"
                                                        : j->sqlstate;
    }
    sql_exec_destroy(x);
    sql_result_free(cat);
}

static void fetch(sqljob_t *j);

/* A windowed read (ORDER BY time ... LIMIT): short of rows and the window
 * not yet the whole range: grow it and read again. */
static int window_grow(sqljob_t *j)
{
    if (!j->window || j->status || !j->res || sql_result_nrows(j->res) >= (size_t)j->plan.limit)
        return 0;
    int narrowed = j->topn_mem != NULL;
    if (narrowed) { /* the tag sets TOPN named held too few rows: all of them */
        j->plan.nm = j->topn_nm0;
        free(j->topn_mem);
        j->topn_mem = NULL;
    }
    if (j->plan.start <= j->wstart && j->plan.end >= j->wend && !narrowed)
        return 0;
    /* the part past the empty stretch the probes found grows */
    j->window = j->probe_lo + (j->window - j->probe_lo) * SQL_WINDOW_GROWTH;
    if (j->plan.time_order < 0)
        j->plan.start = j->wend - j->window < j->wstart ? j->wstart : j->wend - j->window;
    else
        j->plan.end = j->wstart + j->window > j->wend ? j->wend : j->wstart + j->window;
    sql_result_free(j->res);
    j->res = NULL;
    promql_result_free(j->pr);
    j->pr = NULL;
    return 1;
}

static void exec_after(uv_work_t *w, int status)
{
    sqljob_t *j = w->data;
    (void)status;
    if (window_grow(j)) {
        fetch(j);
        return;
    }
    answer(j);
}

static void exec_start(sqljob_t *j)
{
    j->w.data = j;
    if (uv_queue_work(j->r->loop, &j->w, exec_work, exec_after))
        fail(j, 503, "53000", "cannot queue work");
}

/* ---- step 2: the fetch ------------------------------------------------------ */

static void on_fetched(void *arg, int status, const char *msg, promql_result_t *res)
{
    sqljob_t *j = arg;
    if (status) {
        fail(j, status, status == 422 ? "54000" : status == 503 ? "57014" : "42000", msg);
        return;
    }
    j->pr = res;
    /* the names a query used were all tags: read every field */
    if (j->fetch == FETCH_DATA && !j->retried && !j->plan.all_fields && res && res->nseries == 0) {
        promql_result_free(res);
        j->pr = NULL;
        j->retried = 1;
        j->plan.all_fields = 1;
        fetch(j);
        return;
    }
    exec_start(j);
}

static void push_next(sqljob_t *j);
static void probe(sqljob_t *j, int64_t w);
static void window_read(sqljob_t *j, int64_t w);

/* ---- ORDER BY time ... LIMIT n: TOPN (RPC 56) finds where the rows are ----
 *
 * Each node answers the newest (ASC: oldest) n (tag set, time) keys of the
 * series the statement reads (from block headers, no decoding); the merge
 * (sql_topn.c) gives the time of the n-th newest key across the cluster,
 * and the raw read is the window from there to the range's end: it holds
 * at least n rows when the keys are rows WHERE keeps. When it does not
 * (a value filter, a deleted sample, a user's confining matchers) the
 * window grows as before (window_grow), so the answer stays exact; with
 * fewer than n keys in all, or a failed TOPN, the probes of today run. */

typedef struct topnjob {
    sqljob_t *j;
    fanout_t *fan;
    sql_topn_t *t;
    selector_t sel;
    int failed; /* 1: fall back to the probes; 2: fail the statement (err set) */
    int status;
    char err[256];
} topnjob_t;

static int t_build(void *ctx, const fanout_call_t *c, uint8_t *type, unsigned *timeout_ms,
                   st_buf_t *out)
{
    topnjob_t *t = ctx;
    sqljob_t *j = t->j;
    Strata__TopnRequest rq = STRATA__TOPN_REQUEST__INIT;
    Strata__Matcher mm[SELECTOR_MAX_MATCHERS], *mp[SELECTOR_MAX_MATCHERS];
    for (size_t i = 0; i < t->sel.n; i++) {
        const st_matcher_t *m = &t->sel.m[i];
        strata__matcher__init(&mm[i]);
        mm[i].type = (Strata__Matcher__Type)m->type;
        mm[i].name = (ProtobufCBinaryData){strlen(m->name), (uint8_t *)m->name};
        mm[i].value = (ProtobufCBinaryData){strlen(m->value), (uint8_t *)m->value};
        mp[i] = &mm[i];
    }
    rq.n_matchers = t->sel.n;
    rq.matchers = mp;
    rq.n_shards = c->nshards;
    rq.shards = (uint32_t *)c->shards;
    rq.start_ms = j->wstart;
    rq.end_ms = j->wend - 1;
    rq.n = (uint32_t)(j->plan.limit + sql_stmt_offset(j->stmt));
    rq.oldest = j->plan.time_order > 0;
    *type = RPC_TOPN;
    int64_t left = j->deadline - st_mono_ms();
    *timeout_ms = left > 1000 ? (unsigned)left : 1000;
    return router_pack(out, &rq.base);
}

static int t_reply(void *ctx, fanout_call_t *c, const uint8_t *payload, size_t len)
{
    topnjob_t *t = ctx;
    (void)c;
    Strata__TopnResponse *r = strata__topn_response__unpack(NULL, len, payload);
    int rc = !r || r->n_labels != r->n_ts ? ST_EPROTO : 0;
    const uint8_t **lab = NULL;
    size_t *lablen = NULL;
    if (!rc && r->n_ts) {
        lab = malloc(r->n_ts * sizeof *lab);
        lablen = malloc(r->n_ts * sizeof *lablen);
        if (!lab || !lablen)
            rc = ST_ENOMEM;
        for (size_t i = 0; !rc && i < r->n_ts; i++)
            lab[i] = r->labels[i].data, lablen[i] = r->labels[i].len;
        if (!rc)
            rc = sql_topn_add(t->t, r->ts, lab, lablen, r->n_ts);
    }
    free(lab);
    free(lablen);
    if (r)
        strata__topn_response__free_unpacked(r, NULL);
    if (rc) {
        t->failed = 1;
        return FANOUT_STOP;
    }
    return FANOUT_DONE;
}

static int t_failed(void *ctx, const fanout_call_t *c, const fanout_failure_t *f)
{
    topnjob_t *t = ctx;
    (void)c;
    if (f->node_said && f->status == ST_EPROTO) { /* a node without TOPN: the probes */
        t->failed = 1;
        return FANOUT_STOP;
    }
    return FANOUT_FAILOVER;
}

static void t_end(void *ctx, fanout_how_t how, const fanout_call_t *c)
{
    topnjob_t *t = ctx;
    (void)c;
    if (how == FANOUT_UNAVAILABLE) {
        t->failed = 2;
        t->status = 503;
        fanout_unavailable_msg(t->fan, t->err, sizeof t->err);
    } else if (how != FANOUT_COMPLETE) {
        t->failed = 1;
    }
}

static void t_idle(void *ctx)
{
    topnjob_t *t = ctx;
    sqljob_t *j = t->j;
    int64_t edge = 0;
    size_t got = t->failed ? 0 : sql_topn_finish(t->t, &edge);
    int failed = t->failed, status = t->status;
    size_t want = (size_t)(j->plan.limit + sql_stmt_offset(j->stmt));
    /* WHERE applied exactly by the read: only the rows of the kept keys'
     * tag sets can be the answer (every other row comes later) */
    size_t nm = 0;
    if (!failed && got >= want && want <= SQL_TOPN_NARROW_MAX && j->plan.exact &&
        sql_topn_matchers(t->t, j->plan.m + j->plan.nm, SQL_MAX_ITEMS - j->plan.nm, &nm,
                          &j->topn_mem) == 0 &&
        nm) {
        j->topn_nm0 = j->plan.nm;
        j->plan.nm += nm;
    }
    char err[sizeof t->err];
    snprintf(err, sizeof err, "%s", t->err);
    fanout_destroy(t->fan);
    sql_topn_destroy(t->t);
    selector_free(&t->sel);
    free(t);
    if (failed == 2) {
        fail(j, status, "57014", err);
        return;
    }
    int64_t full = j->wend - j->wstart;
    if (failed || got < want) {
        /* fewer keys than rows asked: each node gave all it holds (its
         * window grew to the whole range), so the range is the window */
        if (!failed) {
            metric_counter_inc(topn_window);
            window_read(j, full);
            return;
        }
        metric_counter_inc(topn_probe);
        int64_t future = j->plan.time_order < 0 ? j->wend - j->now : 0;
        probe(j, future > SQL_WINDOW_FIRST_MS ? future : SQL_WINDOW_FIRST_MS);
        return;
    }
    metric_counter_inc(topn_window);
    /* the window [edge, wend) (DESC) or [wstart, edge] (ASC) */
    window_read(j, j->plan.time_order < 0 ? j->wend - edge : edge - j->wstart + 1);
}

static const fanout_ops_t topn_ops = {t_build, t_reply, t_failed, t_end, t_idle};

/* 0: TOPN under way (the job is its from here); else use the probes. */
static int topn_start(sqljob_t *j)
{
    int64_t n = j->plan.limit + sql_stmt_offset(j->stmt);
    int need = 1, partial = 0;
    char msg[128];
    if (n <= 0 || n > SQL_TOPN_MAX ||
        readopt_parse(j->r->topo, NULL, NULL, &need, &partial, msg, sizeof msg))
        return -1;
    topnjob_t *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    t->j = j;
    st_buf_t q;
    st_buf_init(&q);
    int rc = sql_plan_selector(j->stmt, &j->plan, &q);
    if (!rc)
        rc = selector_parse((const char *)q.data, q.len, &t->sel, msg, sizeof msg);
    st_buf_deinit(&q);
    if (!rc)
        rc = sql_topn_create((size_t)n, j->plan.time_order > 0, &t->t);
    fanout_cfg_t cfg = router_fanout_cfg(j->r, need, partial, 1, 64, &topn_ops, t);
    if (rc || fanout_create(&cfg, &t->fan)) {
        selector_free(&t->sel);
        sql_topn_destroy(t->t);
        free(t);
        return -1;
    }
    j->probe_lo = j->probe_hi = 0;
    fanout_start(t->fan);
    return 0;
}

/* Read the window of w ms at the range's end (DESC) or start (ASC). */
static void window_read(sqljob_t *j, int64_t w)
{
    int64_t full = j->wend - j->wstart;
    j->window = w < full ? w : full;
    if (j->plan.time_order < 0)
        j->plan.start = j->wend - j->window, j->plan.end = j->wend;
    else
        j->plan.start = j->wstart, j->plan.end = j->wstart + j->window;
    fetch(j);
}

/* A probe's answer: whether its segment [lo, w) (ms from the range's end
 * for DESC, from its start for ASC) holds data. Probes are pushed and read
 * only their segment, but cost what the samples in it cost to decode, so
 * they stay short near the data: the first DESC probe is the future part
 * of the range (usually empty); then segments past the empty stretch
 * [0, lo), each twice as long as the last empty one (one minute first);
 * a segment with data (w becomes hi) starts that growth again from lo
 * (halving [lo, hi) when the next segment would reach hi). So a probe
 * with data decodes at most about the distance from lo to the newest
 * (oldest) data, and that distance shrinks each time. At a minute, the
 * raw read starts just past the newest (oldest) data instead of reading
 * an empty stretch and then far too much. */
static void on_probed(void *arg, int status, const char *msg, promql_result_t *res)
{
    sqljob_t *j = arg;
    if (status) {
        fail(j, status, status == 422 ? "54000" : status == 503 ? "57014" : "42000", msg);
        return;
    }
    int any = res && res->nseries > 0 && res->series[0].n > 0 && res->series[0].v[0] > 0;
    promql_result_free(res);
    int64_t full = j->wend - j->wstart, w = j->probe_w;
    if (any) {
        j->probe_hi = w;
        j->probe_step = 0;
    } else {
        j->probe_lo = w;
    }
    if (!j->probe_hi && w >= full) {
        window_read(j, full); /* no data at all: an empty answer */
        return;
    }
    if (j->probe_hi && j->probe_hi - j->probe_lo <= SQL_WINDOW_FIRST_MS) {
        window_read(j, j->probe_hi + SQL_WINDOW_FIRST_MS);
        return;
    }
    j->probe_step = j->probe_step ? j->probe_step * SQL_PROBE_GROWTH : SQL_WINDOW_FIRST_MS;
    int64_t next = j->probe_lo + j->probe_step;
    if (j->probe_hi && next >= j->probe_hi)
        next = j->probe_lo + (j->probe_hi - j->probe_lo) / 2;
    probe(j, next);
}

/* Probe the segment [probe_lo, w). */
static void probe(sqljob_t *j, int64_t w)
{
    int64_t full = j->wend - j->wstart, lo = j->probe_lo;
    if (w > full)
        w = full;
    j->probe_w = w;
    st_buf_t q;
    st_buf_init(&q);
    ST_BUF_LIT(&q, "count(last_over_time("); /* keeps __name__: no clash */
    int rc = sql_plan_selector(j->stmt, &j->plan, &q);
    char range[96];
    if (j->plan.time_order < 0 && lo > 0)
        snprintf(range, sizeof range, "[%lldms] offset %lldms))", (long long)(w - lo),
                 (long long)lo);
    else
        snprintf(range, sizeof range, "[%lldms]))", (long long)(w - lo));
    if (!rc)
        rc = st_buf_append(&q, range, strlen(range));
    if (!rc)
        rc = st_buf_put_u8(&q, 0);
    if (rc) {
        st_buf_deinit(&q);
        fail(j, 503, "53200", "out of memory");
        return;
    }
    int64_t at = j->plan.time_order < 0 ? j->wend - 1 : j->wstart + w - 1;
    router_promql_run(j->r, (char *)q.data, at, at, PROMQL_INSTANT_STEP_MS, j->deadline, 1,
                      on_probed, j);
    st_buf_deinit(&q);
}

/* The partial-aggregate queries run side by side (at most
 * SQL_PUSH_INFLIGHT at a time): a statement's fixed cost is one round trip,
 * not one per query. Each answer lands at its query's index; the first
 * failure stops the issuing and is the statement's error once every query
 * in flight has answered (they point into the job). */
static void push_finish(sqljob_t *j)
{
    if (j->push_issuing || j->push_pending || (!j->push_status && j->push_next < j->push.nq))
        return;
    j->pushed = j->push.nq; /* every answer (NULL when none) is the job's */
    if (j->push_status) {
        int st = j->push_status;
        fail(j, st, st == 422 ? "54000" : st == 503 ? "57014" : "42000", j->err);
        return;
    }
    exec_start(j);
}

static void on_pushed(void *arg, int status, const char *msg, promql_result_t *res)
{
    sqljob_t *j = *(sqljob_t **)arg;
    size_t i = (size_t)((sqljob_t **)arg - j->push_arg);
    if (status && !j->push_status) {
        j->push_status = status;
        snprintf(j->err, sizeof j->err, "%s", msg ? msg : "query failed");
    }
    if (status)
        promql_result_free(res);
    else
        j->prs[i] = res;
    j->push_pending--;
    push_next(j);
}

/* Issue the next partial-aggregate queries (pushed to the nodes). */
static void push_next(sqljob_t *j)
{
    if (j->push_issuing)
        return; /* an answer came back while issuing: the loop goes on */
    j->push_issuing = 1;
    while (!j->push_status && j->push_next < j->push.nq && j->push_pending < SQL_PUSH_INFLIGHT) {
        size_t i = j->push_next++;
        const sql_push_q_t *q = &j->push.q[i];
        j->push_arg[i] = j;
        j->push_pending++;
        router_promql_run(j->r, q->promql, q->start, q->end,
                          q->step ? q->step : PROMQL_INSTANT_STEP_MS, j->deadline, 1, on_pushed,
                          &j->push_arg[i]);
    }
    j->push_issuing = 0;
    push_finish(j);
}

/* count(*) the ordinary way: the statement planned again from its text
 * (sql_push_plan rewrote it), its rows read. */
static void rows_fallback(sqljob_t *j)
{
    metric_counter_inc(count_rows);
    rowstats_destroy(j->rows);
    j->rows = NULL;
    j->push.rows = NULL;
    j->push.nq = 0;
    sql_stmt_t *s;
    int rc = sql_parse(j->text, j->textlen, &s, j->err, sizeof j->err);
    if (!rc) {
        sql_stmt_free(j->stmt);
        j->stmt = s;
        rc = sql_plan(j->stmt, j->now, j->dstart, j->dend, (const char *const *)j->params,
                      j->nparams, &j->plan, j->err, sizeof j->err);
    }
    if (rc) {
        fail(j, status_of(rc), state_of(rc), j->err);
        return;
    }
    j->fetch = FETCH_DATA;
    fetch(j);
}

/* ROW_STATS answered: every tag set's fingerprint verdict. */
static void on_rows(void *arg, int status, const char *msg, rowstats_t *rs)
{
    sqljob_t *j = arg;
    if (status == ROUTER_ROWSTATS_SAMPLES) {
        rows_fallback(j);
        return;
    }
    if (status) {
        fail(j, status, "57014", msg);
        return;
    }
    j->rows = rs;
    size_t n = rowstats_nsets(rs), nm = rowstats_nmetrics(rs), nd = rowstats_ndiffer(rs);
    const char **metrics = malloc((nm ? nm : 1) * sizeof *metrics);
    const st_label_t **sets = malloc((nd ? nd : 1) * sizeof *sets);
    size_t *nls = malloc((nd ? nd : 1) * sizeof *nls);
    int rc = metrics && sets && nls ? 0 : ST_ENOMEM, back = !n;
    for (size_t i = 0; i < nm && !rc; i++)
        metrics[i] = rowstats_metric(rs, i);
    if (!rc && !back)
        back = sql_count_groups_field(j->stmt, metrics, nm);
    for (size_t i = 0, k = 0; i < n && nd && !rc && !back; i++)
        if (rowstats_differ(rs, i)) {
            sets[k] = rowstats_labels(rs, i, &nls[k]);
            k++;
        }
    /* the tag sets whose fields differ: their samples, over a selection
     * narrowed to them when that is short enough */
    if (!rc && !back && nd)
        rc = sql_count_narrow(j->stmt, &j->plan, sets, nls, nd) < 0 ? ST_ENOMEM : 0;
    free(metrics);
    free((void *)sets);
    free(nls);
    if (rc) {
        fail(j, 503, "53200", "out of memory");
        return;
    }
    if (back) {
        rows_fallback(j);
        return;
    }
    metric_counter_inc(nd ? count_samples : count_fp);
    if (nd) {
        j->fetch = FETCH_DATA;
        fetch(j);
    } else if (j->push.nq) {
        push_next(j);
    } else {
        exec_start(j);
    }
}

/* count(*): ask the nodes for the tag sets' timestamp fingerprints. */
static void rows_start(sqljob_t *j)
{
    st_buf_t q;
    st_buf_init(&q);
    selector_t sel;
    j->plan.all_fields = 1; /* the rows of every field */
    int rc = sql_plan_selector(j->stmt, &j->plan, &q);
    if (!rc)
        rc = selector_parse((const char *)q.data, q.len, &sel, j->err, sizeof j->err);
    st_buf_deinit(&q);
    if (rc) {
        j->err[0] = 0;
        rows_fallback(j);
        return;
    }
    router_rowstats_run(j->r, &sel, j->plan.start, j->plan.end - 1, j->deadline, on_rows, j);
}

static void fetch(sqljob_t *j)
{
    st_buf_t q;
    st_buf_init(&q);
    int64_t start = j->plan.start, end = j->plan.end;
    char range[64];
    snprintf(range, sizeof range, "[%lldms]", (long long)(end - start));
    int rc = 0;
    if (j->fetch == FETCH_DATA) {
        rc = sql_plan_selector(j->stmt, &j->plan, &q);
        if (!rc)
            rc = st_buf_append(&q, range, strlen(range));
    } else if (j->fetch == FETCH_TABLES) {
        ST_BUF_LIT(&q, "count by (__name__) (last_over_time({__name__=~\".+\"}");
        st_buf_append(&q, range, strlen(range));
        rc = ST_BUF_LIT(&q, "))");
    } else {
        /* last_over_time keeps __name__: one point per series, all labels */
        ST_BUF_LIT(&q, "last_over_time({__name__=~\"");
        for (int k = 0; k < 2; k++) {
            if (k)
                st_buf_put_u8(&q, '|');
            for (const char *c = j->ctable; *c; c++) {
                if (strchr("\\.+*?()|[]{}^$", *c))
                    ST_BUF_LIT(&q, "\\\\");
                if (*c == '"')
                    st_buf_put_u8(&q, '\\');
                st_buf_put_u8(&q, (uint8_t)*c);
            }
        }
        ST_BUF_LIT(&q, "_.+\"}");
        st_buf_append(&q, range, strlen(range));
        rc = st_buf_put_u8(&q, ')');
    }
    if (!rc)
        rc = st_buf_put_u8(&q, 0);
    if (rc) {
        st_buf_deinit(&q);
        fail(j, 503, "53200", "out of memory");
        return;
    }
    /* an instant query at end - 1 ms: the range (end-1-R, end-1] = [start, end) */
    /* raw rows come in EXPORT pages; catalogs may be pushed down */
    router_promql_run(j->r, (char *)q.data, end - 1, end - 1, PROMQL_INSTANT_STEP_MS, j->deadline,
                      j->fetch != FETCH_DATA, on_fetched, j);
    st_buf_deinit(&q);
}

/* ---- step 1: parse and dispatch -------------------------------------------- */

static const struct {
    const char *name, *value;
} settings[] = {
    {"server_version", "14.0"},
    {"server_version_num", "140000"},
    {"client_encoding", "UTF8"},
    {"server_encoding", "UTF8"},
    {"datestyle", "ISO, MDY"},
    {"timezone", "UTC"},
    {"integer_datetimes", "on"},
    {"standard_conforming_strings", "on"},
    {"transaction_isolation", "read committed"},
    {"default_transaction_isolation", "read committed"},
    {"search_path", "public"},
    {"max_identifier_length", "63"},
    {"application_name", ""},
    {"is_superuser", "off"},
    {"intervalstyle", "postgres"},
};

static int show_var(sqljob_t *j)
{
    const char *name = sql_stmt_table(j->stmt);
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        if (strcmp(settings[i].name, name))
            continue;
        j->res = sql_result_create();
        if (!j->res || sql_result_col(j->res, name, SQL_TEXT))
            return ST_ENOMEM;
        sql_val_t v = {.type = SQL_TEXT};
        v.u.t.s = settings[i].value;
        v.u.t.len = strlen(settings[i].value);
        return sql_result_row(j->res, &v);
    }
    snprintf(j->err, sizeof j->err, "unrecognized configuration parameter \"%s\"", name);
    return ST_ENOENT;
}

void router_sql_tag(const router_sql_answer_t *a, char *buf, size_t cap)
{
    if (a->stmt && sql_stmt_kind(a->stmt) == SQL_DELETE)
        snprintf(buf, cap, "DELETE %llu", (unsigned long long)a->deleted);
    else
        sql_result_tag(a->res, a->stmt, buf, cap);
}

/* ---- DELETE: router_delete_submit over what SELECT * would read ------------ */

static void on_deleted(void *arg, int status, const router_delete_result_t *res)
{
    sqljob_t *j = arg;
    if (status) {
        snprintf(j->err, sizeof j->err, "delete failed on %u shard(s): %.300s", res->shards_failed,
                 res->why);
        fail(j, 503, "58000", j->err);
        return;
    }
    j->deleted = res->samples;
    answer(j);
}

static void sql_delete(sqljob_t *j, int64_t dstart, int64_t dend)
{
    int rc = sql_plan(j->stmt, j->now, dstart, dend, (const char *const *)j->params, j->nparams,
                      &j->plan, j->err, sizeof j->err);
    if (rc) {
        fail(j, status_of(rc), state_of(rc), j->err);
        return;
    }
    const char *schema = sql_stmt_schema(j->stmt);
    if (schema[0] && strcmp(schema, "public")) {
        fail(j, 400, "42501", "only tables of the public schema can be deleted from");
        return;
    }
    if (!j->plan.exact || j->plan.nfields) {
        fail(j, 400, "0A000",
             "DELETE takes a WHERE of bounds on time and tag matchers (=, !=, IN, LIKE, ~) "
             "joined by AND, nothing else");
        return;
    }
    if (!j->plan.needs_data) { /* an empty time range */
        answer(j);
        return;
    }
    j->plan.all_fields = 1;
    st_buf_t q;
    st_buf_init(&q);
    selector_t sel;
    rc = sql_plan_selector(j->stmt, &j->plan, &q);
    if (!rc)
        rc = selector_parse((const char *)q.data, q.len, &sel, j->err, sizeof j->err);
    st_buf_deinit(&q);
    if (rc) {
        fail(j, rc == ST_ENOMEM ? 503 : 400, rc == ST_ENOMEM ? "53200" : "42601",
             rc == ST_ENOMEM ? "out of memory" : j->err);
        return;
    }
    rc = router_delete_submit(j->r, &sel, 1, j->plan.start, j->plan.end - 1, 0, 0, on_deleted, j);
    selector_free(&sel);
    if (rc)
        fail(j, rc == ST_ENOMEM ? 503 : 400, rc == ST_ENOMEM ? "53200" : "42601", st_strerror(rc));
}

static void job_insert(sqljob_t *j, const auth_user_t *user);

/* May user run a statement of this kind? 0, or 403 with j->err set. */
static int sql_allowed(sqljob_t *j, const auth_user_t *u)
{
    if (!u)
        return 0;
    sql_kind_t k = sql_stmt_kind(j->stmt);
    auth_role_t need = k == SQL_DELETE   ? AUTH_ROLE_ADMIN
                       : k == SQL_INSERT ? AUTH_ROLE_WRITE
                                         : AUTH_ROLE_READ;
    if (auth_user_role(u) < need) {
        snprintf(j->err, sizeof j->err, "user '%s' has role %s; %s needs the %s role",
                 auth_user_name(u), auth_role_name(auth_user_role(u)), sql_stmt_tag(j->stmt),
                 auth_role_name(need));
        return 403;
    }
    const char *schema = sql_stmt_schema(j->stmt);
    /* a confined user's INSERT: the write pipeline keeps the rows inside
     * its selector (as for /write) */
    if (auth_user_selector(u) && k != SQL_INSERT &&
        (k != SQL_SELECT || !sql_stmt_table(j->stmt)[0] ||
         (schema[0] && strcmp(schema, "public")))) {
        if (k == SQL_EMPTY || k == SQL_SET || k == SQL_TXN || k == SQL_SHOW_VAR ||
            (k == SQL_SELECT && !sql_stmt_table(j->stmt)[0]))
            return 0; /* reads no series */
        snprintf(j->err, sizeof j->err,
                 "user '%s' is confined to a selector; only SELECT from a table is allowed",
                 auth_user_name(u));
        return 403;
    }
    return 0;
}

/* A confined user's matchers ANDed into what a planned SELECT reads: 0 or
 * 403 (no room). */
static int sql_confine(sqljob_t *j, const auth_user_t *u)
{
    const st_matcher_t *m;
    size_t n = u ? auth_user_matchers(u, &m) : 0;
    if (j->plan.nm + n > SQL_MAX_ITEMS) {
        snprintf(j->err, sizeof j->err, "too many conditions for a confined user");
        return 403;
    }
    for (size_t i = 0; i < n; i++)
        j->plan.m[j->plan.nm++] = m[i];
    if (n)
        j->plan.exact = 0;
    return 0;
}

void router_sql_run(router_t *r, const auth_user_t *user, const char *text, size_t len,
                    const char *const *params, size_t nparams, router_sql_cb cb, void *arg)
{
    sqljob_t *j = calloc(1, sizeof *j);
    if (!j) {
        router_sql_answer_t a = {503, "53200", "out of memory", NULL, NULL, 0};
        cb(arg, &a);
        return;
    }
    j->r = r;
    j->cb = cb;
    j->arg = arg;
    j->now = st_now_ms();
    j->deadline = st_mono_ms() + r->timeout_ms;
    if (nparams) {
        j->params = calloc(nparams, sizeof *j->params);
        if (!j->params) {
            fail(j, 503, "53200", "out of memory");
            return;
        }
        j->nparams = nparams;
        for (size_t i = 0; i < nparams; i++)
            if (params[i] && !(j->params[i] = strdup(params[i]))) {
                fail(j, 503, "53200", "out of memory");
                return;
            }
    }
    int rc = sql_parse(text, len, &j->stmt, j->err, sizeof j->err);
    if (!rc && !(j->text = malloc(len ? len : 1))) {
        fail(j, 503, "53200", "out of memory");
        return;
    }
    if (!rc) {
        memcpy(j->text, text, len);
        j->textlen = len;
    }
    if (rc) {
        fail(j, status_of(rc == ST_EINVAL ? ST_EPARSE : rc),
             rc == ST_EINVAL ? "0A000" : state_of(rc), j->err);
        return;
    }
    if ((size_t)sql_stmt_nparams(j->stmt) > nparams) {
        snprintf(j->err, sizeof j->err, "statement uses $%d but %zu parameter(s) were given",
                 sql_stmt_nparams(j->stmt), nparams);
        fail(j, 400, "08P01", j->err);
        return;
    }
    if (sql_allowed(j, user)) {
        fail(j, 403, "42501", j->err);
        return;
    }
    const topo_storage_t *st = topo_storage(r->topo);
    int64_t dstart = st->retention_ms ? j->now - st->retention_ms : 0;
    int64_t dend = j->now + st->max_future_ms + 1;
    j->dstart = dstart;
    j->dend = dend;
    const char *schema = sql_stmt_schema(j->stmt), *table = sql_stmt_table(j->stmt);
    switch (sql_stmt_kind(j->stmt)) {
    case SQL_EMPTY:
    case SQL_SET:
    case SQL_TXN:
        answer(j);
        return;
    case SQL_SHOW_VAR:
        if ((rc = show_var(j))) {
            fail(j, rc == ST_ENOENT ? 400 : 503, rc == ST_ENOENT ? "42704" : "53200", j->err);
            return;
        }
        answer(j);
        return;
    case SQL_DELETE:
        sql_delete(j, dstart, dend);
        return;
    case SQL_INSERT:
        job_insert(j, user);
        return;
    case SQL_SHOW_TABLES:
        j->catalog = 3;
        j->fetch = FETCH_TABLES;
        j->plan.start = dstart, j->plan.end = dend;
        fetch(j);
        return;
    case SQL_SHOW_COLUMNS:
        j->catalog = 4;
        j->ctable = table;
        j->fetch = FETCH_COLUMNS;
        j->plan.start = dstart, j->plan.end = dend;
        fetch(j);
        return;
    case SQL_SELECT:
        break;
    }
    rc = sql_plan(j->stmt, j->now, dstart, dend, (const char *const *)j->params, j->nparams,
                  &j->plan, j->err, sizeof j->err);
    if (rc) {
        fail(j, status_of(rc), state_of(rc), j->err);
        return;
    }
    if (sql_confine(j, user)) {
        fail(j, 403, "42501", j->err);
        return;
    }
    if (!strcmp(schema, "information_schema") || !strcmp(schema, "pg_catalog")) {
        if (!strcmp(table, "tables")) {
            j->catalog = 1;
            j->fetch = FETCH_TABLES;
        } else if (!strcmp(table, "columns")) {
            j->catalog = 2;
            for (size_t i = 0; i < j->plan.nm; i++)
                if (!strcmp(j->plan.m[i].name, "table_name") && j->plan.m[i].type == ST_MATCH_EQ)
                    j->ctable = j->plan.m[i].value;
            if (!j->ctable) {
                fail(j, 400, "0A000",
                     "information_schema.columns needs WHERE table_name = '<table>'");
                return;
            }
            j->fetch = FETCH_COLUMNS;
        } else {
            snprintf(j->err, sizeof j->err, "relation \"%s.%s\" does not exist", schema, table);
            fail(j, 400, "42P01", j->err);
            return;
        }
        j->plan.start = dstart, j->plan.end = dend;
        j->plan.nm = 0; /* the catalog filters itself */
        fetch(j);
        return;
    }
    if (schema[0] && strcmp(schema, "public")) {
        snprintf(j->err, sizeof j->err, "schema \"%s\" does not exist", schema);
        fail(j, 400, "3F000", j->err);
        return;
    }
    if (!j->plan.needs_data) {
        exec_start(j);
        return;
    }
    rc = sql_push_plan(j->stmt, &j->plan, &j->push);
    if (rc < 0) {
        fail(j, 503, "53200", "out of memory");
        return;
    }
    if (rc == 1 && (j->lab = malloc(64 * sizeof *j->lab))) {
        j->labcap = 64;
        j->fetch = FETCH_PUSH;
        if (j->push.rows)
            rows_start(j);
        else
            push_next(j);
        return;
    }
    j->fetch = FETCH_DATA;
    if (j->plan.time_order && j->plan.limit > 0 &&
        j->plan.end - j->plan.start > SQL_WINDOW_FIRST_MS) {
        j->wstart = j->plan.start;
        j->wend = j->plan.end;
        if (!topn_start(j))
            return;
        metric_counter_inc(topn_probe);
        int64_t future = j->plan.time_order < 0 ? j->wend - j->now : 0;
        probe(j, future > SQL_WINDOW_FIRST_MS ? future : SQL_WINDOW_FIRST_MS);
        return;
    }
    fetch(j);
}

/* ---- the HTTP door ------------------------------------------------------- */

typedef struct sqlhttp {
    http_req_t *req;
    int csv;
} sqlhttp_t;

static void http_error(http_req_t *req, int status, const char *sqlstate, const char *msg)
{
    st_buf_t b;
    st_buf_init(&b);
    ST_BUF_LIT(&b, "{\"error\":");
    st_json_str(&b, msg, strlen(msg));
    const char *p = strstr(msg, "at position ");
    if (p) {
        ST_BUF_LIT(&b, ",\"position\":");
        p += strlen("at position ");
        while (*p >= '0' && *p <= '9')
            st_buf_put_u8(&b, (uint8_t)*p++);
    }
    if (sqlstate) {
        ST_BUF_LIT(&b, ",\"sqlstate\":");
        st_json_str(&b, sqlstate, strlen(sqlstate));
    }
    ST_BUF_LIT(&b, "}\n");
    if (b.data)
        http_respond(req, status, "application/json", b.data, b.len);
    else
        http_respond_error(req, 503, "out of memory");
    st_buf_deinit(&b);
}

static void http_answer(void *arg, const router_sql_answer_t *a)
{
    sqlhttp_t *h = arg;
    if (a->status) {
        http_error(h->req, a->status, a->sqlstate, a->msg);
        free(h);
        return;
    }
    st_buf_t b;
    st_buf_init(&b);
    int rc = 0;
    if (!a->res) {
        char tag[64];
        router_sql_tag(a, tag, sizeof tag);
        ST_BUF_LIT(&b, "{\"columns\":[],\"rows\":[],\"command\":");
        st_json_str(&b, tag, strlen(tag));
        if (a->stmt && sql_stmt_kind(a->stmt) == SQL_DELETE) {
            char n[48];
            int k = snprintf(n, sizeof n, ",\"deleted\":%llu", (unsigned long long)a->deleted);
            st_buf_append(&b, n, (size_t)k);
        }
        rc = ST_BUF_LIT(&b, "}\n");
    } else {
        rc = h->csv ? sql_result_csv(a->res, &b) : sql_result_json(a->res, &b);
    }
    if (rc)
        http_respond_error(h->req, 503, "out of memory");
    else
        http_respond(h->req, 200, h->csv ? "text/csv; charset=utf-8" : "application/json", b.data,
                     b.len);
    st_buf_deinit(&b);
    free(h);
}

/* ---- INSERT: the write pipeline of /write (router_write_submit) ------------- */

typedef struct sqlins {
    sql_stmt_t *stmt; /* owned unless job is set */
    sqljob_t *job;    /* a statement of router_sql_run (PostgreSQL): it owns stmt */
    wbatch_t *b;
    uint64_t item;
    int64_t now;
} sqlins_t;

static int ins_sample(void *arg, const st_label_t *l, size_t nl, int64_t ts, double v)
{
    sqlins_t *a = arg;
    const char *why;
    if (st_labels_validate(l, nl, &why)) {
        wbatch_reject(a->b, a->item++, why);
        return 0;
    }
    return wbatch_add_series(a->b, a->item++, l, (uint32_t)nl, &ts, &v, 1);
}

/* Worker: the statement's rows into the batch (400 and nothing written when
 * a row is not one Strata can store). */
static int ins_build(void *arg, http_req_t *req, wbatch_t *b, char *msg, size_t msglen)
{
    sqlins_t *a = arg;
    (void)req;
    a->b = b;
    const char *const *params = a->job ? (const char *const *)a->job->params : NULL;
    size_t np = a->job ? a->job->nparams : 0;
    int rc = sql_insert_each(a->stmt, a->now, params, np, ins_sample, a, msg, msglen);
    if (rc && rc != ST_ENOMEM && !msg[0])
        snprintf(msg, msglen, "%s", st_strerror(rc));
    return rc ? (rc == ST_ENOMEM ? ST_ENOMEM : ST_EINVAL) : wbatch_finish(b);
}

static void ins_done(void *arg, router_t *r, const wbatch_t *b)
{
    sqlins_t *a = arg;
    (void)r;
    if (!a->job) { /* a job is counted and freed by its answer (ins_sink) */
        metric_counter_inc(b ? sql_ok : sql_err);
        sql_stmt_free(a->stmt);
    }
    free(a);
}

/* The write pipeline's HTTP answer to an INSERT of router_sql_run: 204 is
 * the statement's success ("INSERT 0 n"), anything else its error (the
 * "error" text of the JSON body). Runs before or after ins_done; the job is
 * answered (and freed) here. */
static int ins_sink(void *arg, int status, const char *ctype, const http_header_t *hdrs,
                    size_t nhdrs, const void *data, size_t len, int final)
{
    sqljob_t *j = arg;
    (void)ctype, (void)hdrs, (void)nhdrs;
    if (!final)
        return 0;
    if (status == 204 || status == 200) {
        answer(j);
        return 0;
    }
    const char *msg = "write failed";
    json_t *doc = len ? json_loadb(data, len, 0, NULL) : NULL;
    json_t *e = doc ? json_object_get(doc, "error") : NULL;
    if (e && json_is_string(e))
        msg = json_string_value(e);
    snprintf(j->err, sizeof j->err, "%s", msg);
    json_decref(doc);
    fail(j, status,
         status == 403   ? "42501"
         : status == 413 ? "54000"
         : status == 400 ? "22000"
                         : "58000",
         j->err);
    return 0;
}

/* INSERT for a door without HTTP (PostgreSQL): the same write pipeline as
 * POST /sql's INSERT (validation, retention, sharding, replication, the
 * cluster's write consistency, a confined user's filter), through an
 * in-process request that carries the session's user. */
static void job_insert(sqljob_t *j, const auth_user_t *user)
{
    sqlins_t *a = calloc(1, sizeof *a);
    http_limits_t hl;
    http_limits_default(&hl);
    http_req_t *req = NULL;
    if (!a || http_req_local(&hl, "POST", "/sql", "text/plain", NULL, 0, ins_sink, j, &req)) {
        free(a);
        fail(j, 503, "53200", "out of memory");
        return;
    }
    req->data = (void *)user;
    a->stmt = j->stmt;
    a->job = j;
    a->now = j->now;
    router_write_src_t src = {ins_build, ins_done, "value", "values", a, 0};
    router_write_submit(j->r, req, 0, a->now, &src);
}

/* INSERT over HTTP: answered like /write (204, 400 partial write, 503). */
static void http_insert(router_t *r, http_req_t *req, sql_stmt_t *stmt)
{
    /* /sql needs read; an INSERT needs write (a users file: the gate let
     * the request through with its user) */
    const auth_user_t *u = auth_gate_user(req);
    if (u && auth_user_role(u) < AUTH_ROLE_WRITE) {
        sql_stmt_free(stmt);
        auth_gate_forbid(r->auth, req, "has role read; INSERT needs the write role");
        return;
    }
    sqlins_t *a = calloc(1, sizeof *a);
    int consistency = repl_consistency_param(http_req_param(req, "consistency"));
    if (!a || consistency < 0) {
        free(a);
        sql_stmt_free(stmt);
        if (consistency < 0)
            http_respond_error(req, 400, "invalid consistency (sync, quorum, async)");
        else
            http_respond_error(req, 503, "out of memory");
        return;
    }
    a->stmt = stmt;
    a->now = st_now_ms();
    router_write_src_t src = {ins_build, ins_done, "value", "values", a, 0};
    router_write_submit(r, req, consistency, a->now, &src);
}

void router_handle_sql(router_t *r, http_req_t *req)
{
    if (req->method != HTTP_METHOD_GET && req->method != HTTP_METHOD_POST) {
        http_respond_error(req, 405, "use GET or POST");
        return;
    }
    const char *q = NULL;
    size_t qlen = 0;
    http_params_t form;
    http_params_init(&form);
    const char *ct = http_req_header(req, "Content-Type");
    if (req->method == HTTP_METHOD_POST &&
        !(ct && strstr(ct, "application/x-www-form-urlencoded"))) {
        q = (const char *)req->body;
        qlen = req->body_len;
    } else {
        char msg[300];
        int lrc = router_read_load(req, &form, msg, sizeof msg);
        q = lrc ? NULL : http_params_get(&form, "q");
        qlen = q ? strlen(q) : 0;
        if (!q && req->method == HTTP_METHOD_POST && req->body_len) {
            /* a form content type without q= (curl --data-binary sends
             * one by default): the body is the statement */
            q = (const char *)req->body;
            qlen = req->body_len;
        } else if (lrc) {
            http_params_deinit(&form);
            http_error(req, 400, "08P01", msg);
            return;
        }
    }
    if (!q || !qlen) {
        http_params_deinit(&form);
        http_error(req, 400, "42601",
                   "no statement: send it as the POST body, or as q= (GET or a POST form)");
        return;
    }
    sqlhttp_t *h = calloc(1, sizeof *h);
    if (!h) {
        http_params_deinit(&form);
        http_respond_error(req, 503, "out of memory");
        return;
    }
    h->req = req;
    const char *acc = http_req_header(req, "Accept");
    h->csv = acc && strstr(acc, "text/csv") != NULL;
    size_t sp = 0;
    while (sp < qlen && (q[sp] == ' ' || q[sp] == '\n' || q[sp] == '\t' || q[sp] == '\r'))
        sp++;
    if (qlen - sp >= 6 && !strncasecmp(q + sp, "insert", 6)) {
        sql_stmt_t *stmt;
        char err[SQL_ERR_MAX];
        int rc = sql_parse(q, qlen, &stmt, err, sizeof err);
        http_params_deinit(&form);
        free(h);
        if (rc) {
            metric_counter_inc(sql_err);
            http_error(req, status_of(rc == ST_EINVAL ? ST_EPARSE : rc),
                       rc == ST_EINVAL ? "0A000" : state_of(rc), err);
            return;
        }
        http_insert(r, req, stmt);
        return;
    }
    router_sql_run(r, auth_gate_user(req), q, qlen, NULL, 0, http_answer, h);
    http_params_deinit(&form);
}

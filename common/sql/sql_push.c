/*
 * sql_push — aggregates the nodes compute. A SELECT whose WHERE the plan
 * consumed exactly (time bounds, tag = / IN with non-empty literals), whose
 * GROUP BY is tags and at most one time_bucket/date_bin/time_bucket_gapfill
 * (interval, time),
 * and whose aggregates are count/sum/min/max/avg of fields, is answered
 * from PromQL partial aggregates instead of raw samples:
 *
 *   count(f) -> sum by (tags) (count_over_time(T_f{m}[w]))
 *   sum(f)   -> sum by (tags) (sum_over_time(...))
 *   min(f)   -> min by (tags) (min_over_time(...)),  max likewise
 *   avg(f)   -> the sum and the count above, divided here
 *
 * The windows are exact: a bucket [b, b+B) is the window (t-B, t] of a
 * range query at t = b+B-1 ms (timestamps are whole ms); a bucket the
 * range [start, end) cuts is its own instant query over the part inside.
 * Each query's series become a synthetic field (`__p<k>`) of rows at the
 * bucket's start, and the statement is rewritten to aggregate those rows
 * (count -> sum of counts, avg -> sum / sum): GROUP BY, HAVING, ORDER BY,
 * LIMIT then run unchanged on a handful of rows. WHERE is dropped (the
 * reads applied it).
 *
 * count(*) in a statement that names no field and has no time bucket is
 * answered per tag set instead (sql_count.c): sql_push_t.rows names its
 * synthetic field, and the caller feeds one row per tag set holding the
 * tag set's rows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql_exec_int.h"
#include "st_err.h"
#include "st_text.h"

#define PUSH_MAX_BUCKETS 100000

typedef struct agg {
    sql_expr_t *e;
    int fn; /* 0 count, 1 sum, 2 min, 3 max, 4 avg, 5 count(*) (FN_ROWS) */
    const char *field;
    int slot; /* first synthetic field */
} agg_t;

typedef struct pctx {
    sql_stmt_t *s;
    const char *gtags[SQL_MAX_ITEMS];
    size_t ngt;
    const sql_expr_t *bucket;
    int64_t B;
    agg_t aggs[SQL_PUSH_MAX];
    size_t nagg;
    int nslot;
    int rows_ok; /* count(*) may be answered per tag set */
} pctx_t;

#define FN_ROWS 5

static const char *const fns[] = {"count", "sum", "min", "max", "avg", NULL};

static int is_tag(const pctx_t *c, const char *n)
{
    for (size_t i = 0; i < c->ngt; i++)
        if (!strcmp(c->gtags[i], n))
            return 1;
    return 0;
}

static int is_alias(const sql_stmt_t *s, const char *n)
{
    for (size_t i = 0; i < s->nitems; i++)
        if (s->aliases[i] && !strcmp(s->aliases[i], n))
            return 1;
    return 0;
}

static int bucket_of(const sql_expr_t *e, int64_t *B)
{
    /* time_bucket_gapfill buckets alike; its start and finish (literals)
     * only tell the executor which empty buckets to add */
    int gf = e->kind == E_FUNC && !strcmp(e->name, "time_bucket_gapfill");
    if (e->kind != E_FUNC || e->nargs < 2 || e->nargs > (gf ? 4u : 2u) ||
        (strcmp(e->name, "time_bucket") && strcmp(e->name, "date_bin") && !gf))
        return 0;
    for (size_t i = 2; i < e->nargs; i++)
        if (e->args[i]->kind != E_LIT)
            return 0;
    const sql_expr_t *a = e->args[0], *t = e->args[1];
    if (t->kind != E_COL || strcmp(t->name, "time") || a->kind != E_LIT)
        return 0;
    if (a->lit.type == SQL_INTERVAL)
        *B = a->lit.u.i;
    else if (a->lit.type != SQL_TEXT || sql_parse_interval(a->lit.u.t.s, a->lit.u.t.len, B))
        return 0;
    return *B > 0;
}

/* matchers a narrowed selection may add */

int sql_count_is_star(const sql_expr_t *e)
{
    return e->kind == E_FUNC && !strcmp(e->name, "count") && e->nargs == 1 &&
           e->args[0]->kind == E_STAR && !e->distinct && !e->within;
}

const sql_expr_t *sql_group_expr(const sql_stmt_t *s, const sql_expr_t *e)
{
    if (e->kind == E_LIT && e->lit.type == SQL_INT && e->lit.u.i >= 1 &&
        (size_t)e->lit.u.i <= s->nitems)
        return s->items[e->lit.u.i - 1];
    if (e->kind == E_COL)
        for (size_t i = 0; i < s->nitems; i++)
            if (s->aliases[i] && !strcmp(s->aliases[i], e->name))
                return s->items[i];
    return e;
}

/* Check e (outside aggregates: only group tags, aliases, the bucket and
 * literals), collecting the aggregate calls. 0: not pushable. */
static int check(pctx_t *c, sql_expr_t *e, int top_item)
{
    (void)top_item;
    if (e->kind == E_FUNC && sql_is_aggregate(e->name)) {
        if (sql_count_is_star(e)) {
            if (!c->rows_ok || c->nagg == SQL_PUSH_MAX)
                return 0;
            c->aggs[c->nagg++] = (agg_t){e, FN_ROWS, "*", -1};
            return 1;
        }
        int fn = -1;
        for (int i = 0; fns[i]; i++)
            if (!strcmp(fns[i], e->name) || (i == 4 && !strcmp(e->name, "mean")))
                fn = i;
        if (fn < 0 || e->nargs != 1 || e->distinct || e->within || e->args[0]->kind != E_COL)
            return 0;
        const char *f = e->args[0]->name;
        if (!strcmp(f, "time") || is_tag(c, f) || !st_prom_label_name_ok(f, strlen(f)))
            return 0;
        if (c->nagg == SQL_PUSH_MAX)
            return 0;
        c->aggs[c->nagg++] = (agg_t){e, fn, f, -1};
        return 1;
    }
    if (e->kind == E_COL)
        return is_tag(c, e->name) || is_alias(c->s, e->name);
    if (e->kind == E_STAR || e->kind == E_PARAM)
        return 0;
    int64_t B;
    if (bucket_of(e, &B))
        return c->bucket && B == c->B;
    for (size_t i = 0; i < e->nargs; i++)
        if (!check(c, e->args[i], 0))
            return 0;
    return 1;
}

static sql_expr_t *col(sql_stmt_t *s, const char *name)
{
    sql_expr_t *e = sql_alloc(s, sizeof *e);
    if (e) {
        e->kind = E_COL;
        e->name = (char *)name;
    }
    return e;
}

static sql_expr_t *call(sql_stmt_t *s, const char *fn, sql_expr_t *arg)
{
    sql_expr_t *e = sql_alloc(s, sizeof *e);
    sql_expr_t **a = sql_alloc(s, sizeof *a);
    if (!e || !a || !arg)
        return NULL;
    e->kind = E_FUNC;
    e->name = (char *)fn;
    a[0] = arg;
    e->args = a;
    e->nargs = 1;
    return e;
}

static const char *slot_name(sql_stmt_t *s, int k)
{
    char b[24];
    snprintf(b, sizeof b, "__p%d", k);
    return sql_strndup(s, b, strlen(b));
}

/* One query: OUTER by (tags) (INNER(sel[w])). */
static int add_query(pctx_t *c, const sql_plan_t *p, sql_push_t *out, int slot, int fn, int inner,
                     const char *field, int64_t qstart, int64_t qend, int64_t step, int64_t w,
                     int64_t shift)
{
    static const char *const inners[] = {"count_over_time", "sum_over_time", "min_over_time",
                                         "max_over_time"};
    static const char *const outers[] = {"sum", "sum", "min", "max"};
    if (out->nq == SQL_PUSH_MAX)
        return ST_ELIMIT;
    st_buf_t b;
    st_buf_init(&b);
    int o = fn == 4 ? inner : fn; /* avg: its sum (1) and count (0) */
    st_buf_append(&b, outers[o], strlen(outers[o]));
    if (c->ngt) {
        ST_BUF_LIT(&b, " by (");
        for (size_t i = 0; i < c->ngt; i++) {
            if (i)
                st_buf_put_u8(&b, ',');
            st_buf_append(&b, c->gtags[i], strlen(c->gtags[i]));
        }
        st_buf_put_u8(&b, ')');
    }
    ST_BUF_LIT(&b, " (");
    st_buf_append(&b, inners[o], strlen(inners[o]));
    ST_BUF_LIT(&b, "({__name__=\"");
    st_buf_append(&b, c->s->table, strlen(c->s->table));
    if (strcmp(field, "value")) {
        st_buf_put_u8(&b, '_');
        st_buf_append(&b, field, strlen(field));
    }
    st_buf_put_u8(&b, '"');
    for (size_t i = 0; i < p->nm; i++) {
        static const char *const ops[] = {"=", "!=", "=~", "!~"};
        st_buf_put_u8(&b, ',');
        st_buf_append(&b, p->m[i].name, strlen(p->m[i].name));
        st_buf_append(&b, ops[p->m[i].type], strlen(ops[p->m[i].type]));
        st_buf_put_u8(&b, '"');
        for (const char *ch = p->m[i].value; *ch; ch++) {
            if (*ch == '"' || *ch == '\\')
                st_buf_put_u8(&b, '\\');
            st_buf_put_u8(&b, (uint8_t)*ch);
        }
        st_buf_put_u8(&b, '"');
    }
    char win[48];
    snprintf(win, sizeof win, "}[%lldms]))", (long long)w);
    st_buf_append(&b, win, strlen(win));
    st_buf_put_u8(&b, 0);
    if (!b.data)
        return ST_ENOMEM;
    char *q = sql_strndup(c->s, (char *)b.data, b.len - 1);
    st_buf_deinit(&b);
    if (!q)
        return ST_ENOMEM;
    out->q[out->nq++] = (sql_push_q_t){q, qstart, qend, step, shift, slot_name(c->s, slot)};
    return out->q[out->nq - 1].field ? 0 : ST_ENOMEM;
}

/* The queries of one aggregate slot over [start, end). */
static int slot_queries(pctx_t *c, const sql_plan_t *p, sql_push_t *out, int slot, int fn,
                        int inner, const char *field)
{
    int64_t start = p->start, end = p->end, B = c->B;
    if (!c->bucket) /* one instant query over the range; rows at start */
        return add_query(c, p, out, slot, fn, inner, field, end - 1, end - 1, 0, end - start,
                         start - (end - 1));
    int64_t b0 = start / B * B - (start % B < 0 ? B : 0);
    int64_t bl = (end - 1) / B * B - ((end - 1) % B < 0 ? B : 0);
    int rc = 0;
    if (b0 == bl)
        return add_query(c, p, out, slot, fn, inner, field, end - 1, end - 1, 0, end - start,
                         b0 - (end - 1));
    int64_t m0 = b0, m1 = bl;
    if (start != b0) { /* the first bucket, cut */
        rc = add_query(c, p, out, slot, fn, inner, field, b0 + B - 1, b0 + B - 1, 0, b0 + B - start,
                       b0 - (b0 + B - 1));
        m0 = b0 + B;
    }
    if (!rc && end != bl + B) { /* the last bucket, cut */
        rc = add_query(c, p, out, slot, fn, inner, field, end - 1, end - 1, 0, end - bl,
                       bl - (end - 1));
        m1 = bl - B;
    }
    if (!rc && m0 <= m1) /* whole buckets: one range query */
        rc = add_query(c, p, out, slot, fn, inner, field, m0 + B - 1, m1 + B - 1, B, B, -(B - 1));
    return rc;
}

int sql_push_plan(sql_stmt_t *s, const sql_plan_t *p, sql_push_t *out)
{
    out->nq = 0;
    out->rows = NULL;
    if (s->kind != SQL_SELECT || !s->table[0] || !p->needs_data || !p->exact || s->distinct ||
        s->schema[0])
        return 0;
    pctx_t *c = calloc(1, sizeof *c);
    if (!c)
        return ST_ENOMEM;
    c->s = s;
    int ok = 1, rc = 0;
    for (size_t i = 0; i < s->ngroup && ok; i++) {
        const sql_expr_t *g = sql_group_expr(s, s->group[i]);
        int64_t B;
        if (g->kind == E_COL && strcmp(g->name, "time") &&
            st_prom_label_name_ok(g->name, strlen(g->name)) && c->ngt < SQL_MAX_ITEMS &&
            strcmp(g->name, "__name__"))
            c->gtags[c->ngt++] = g->name;
        else if (bucket_of(g, &B) && !c->bucket)
            c->bucket = g, c->B = B;
        else
            ok = 0;
    }
    if (ok && c->bucket && (p->end - p->start) / c->B > PUSH_MAX_BUCKETS)
        ok = 0;
    /* count(*) counts the rows of every field: only when the statement
     * names no field (a name the plan took for a field but that is grouped
     * by is a tag here; the caller checks that it is no field) */
    c->rows_ok = !c->bucket;
    for (size_t i = 0; i < p->nfields && c->rows_ok && !p->all_fields; i++)
        c->rows_ok = is_tag(c, p->fields[i]);
    for (size_t i = 0; i < s->nitems && ok; i++)
        ok = check(c, s->items[i], 1);
    if (ok && s->having)
        ok = check(c, s->having, 0);
    for (size_t i = 0; i < s->norder && ok; i++)
        ok = (s->order[i]->kind == E_LIT && s->order[i]->lit.type == SQL_INT) ||
             check(c, s->order[i], 0);
    if (!ok || !c->nagg)
        goto out;
    /* the queries: one slot per distinct (function, field); avg takes two */
    for (size_t i = 0; i < c->nagg && !rc; i++) {
        agg_t *a = &c->aggs[i];
        for (size_t k = 0; k < i; k++)
            if (c->aggs[k].fn == a->fn && !strcmp(c->aggs[k].field, a->field))
                a->slot = c->aggs[k].slot;
        if (a->slot >= 0)
            continue;
        a->slot = c->nslot;
        c->nslot += a->fn == 4 ? 2 : 1;
        if (a->fn == FN_ROWS) {
            out->rows = slot_name(s, a->slot);
            rc = out->rows ? 0 : ST_ENOMEM;
        } else if (a->fn == 4) {
            rc = slot_queries(c, p, out, a->slot, 4, 1, a->field);
            if (!rc)
                rc = slot_queries(c, p, out, a->slot + 1, 4, 0, a->field);
        } else {
            rc = slot_queries(c, p, out, a->slot, a->fn, 0, a->field);
        }
    }
    if (rc) {
        out->nq = 0;
        out->rows = NULL;
        if (rc == ST_ELIMIT)
            rc = 0; /* too many parts: read raw */
        goto out;
    }
    /* rewrite: the aggregates over the synthetic fields; names kept */
    for (size_t i = 0; i < s->nitems; i++)
        if (s->items[i]->kind == E_FUNC && sql_is_aggregate(s->items[i]->name) && !s->aliases[i])
            s->aliases[i] = s->items[i]->name;
    for (size_t i = 0; i < c->nagg && !rc; i++) {
        agg_t *a = &c->aggs[i];
        sql_expr_t *e = a->e;
        const char *f0 = slot_name(s, a->slot);
        if (a->fn == FN_ROWS) { /* sum(rows)::bigint: count(*)'s type */
            sql_expr_t *sum = call(s, "sum", col(s, f0));
            sql_expr_t **args = sql_alloc(s, sizeof *args);
            if (!sum || !args) {
                rc = ST_ENOMEM;
                break;
            }
            args[0] = sum;
            e->kind = E_CAST;
            e->name = "bigint";
            e->args = args;
            e->nargs = 1;
        } else if (a->fn == 4) {
            sql_expr_t *sum = call(s, "sum", col(s, f0));
            sql_expr_t *cnt = call(s, "sum", col(s, slot_name(s, a->slot + 1)));
            sql_expr_t **args = sql_alloc(s, 2 * sizeof *args);
            if (!sum || !cnt || !args) {
                rc = ST_ENOMEM;
                break;
            }
            args[0] = sum, args[1] = cnt;
            e->kind = E_BIN;
            e->op = OP_DIV;
            e->args = args;
            e->nargs = 2;
            e->name = NULL;
        } else {
            sql_expr_t *arg = col(s, f0);
            if (!arg) {
                rc = ST_ENOMEM;
                break;
            }
            e->name = a->fn == 0 ? "sum" : (char *)fns[a->fn];
            e->args[0] = arg;
        }
    }
    s->where = NULL;
out:
    free(c);
    if (rc) {
        out->nq = 0;
        out->rows = NULL;
    }
    return rc ? rc : out->nq > 0 || out->rows;
}

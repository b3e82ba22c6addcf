/*
 * sql_exec — runs a planned SELECT over the series the router read.
 *
 *   1. sql_exec_series() keeps each series (pointers: the caller keeps the
 *      arrays alive until sql_exec_finish returns);
 *   2. finish: columns = time, the tags (union of label names, sorted), the
 *      fields (metric name minus "T_", `value` for T itself, sorted); series
 *      sorted by tag set; each tag set's fields merged by timestamp into
 *      rows (a field without a sample at that time is NULL);
 *   3. each row: WHERE; then either into its group (GROUP BY keys hashed,
 *      one accumulator per aggregate call) or projected into an output row;
 *   4. groups: HAVING, projection; ORDER BY (aliases, ordinals, any
 *      expression), OFFSET, LIMIT.
 * Bounds: rows built (max_rows), bytes of output rows and groups
 * (max_bytes), the deadline (checked every 4096 rows).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql_exec_int.h"
#include "st_err.h"
#include "st_text.h"
#include "st_time.h"

typedef struct xser {
    const st_label_t *l;
    size_t nl;
    const int64_t *ts;
    const double *v;
    size_t n;
    int field; /* column index */
} xser_t;

typedef struct acc {
    int64_t n;
    double sum, sumsq, min, max, first, last, p;
    int64_t fts, lts;
    double *vals;
    size_t nv, cap;
} acc_t;

typedef struct group {
    uint64_t hash;
    char *key;
    size_t keylen;
    sql_val_t *row; /* first row */
    acc_t *acc;
    int filled; /* a bucket time_bucket_gapfill added: its aggregates are NULL */
} group_t;

typedef struct gslot {
    uint64_t hash; /* the group's, here too: a probe reads one cache line */
    size_t gi;     /* group index + 1; 0: free */
} gslot_t;

typedef struct outrow {
    sql_val_t *v; /* nout + norder */
    uint64_t seq; /* emission order: ORDER BY's ties keep it (tag set, then time) */
} outrow_t;

struct sql_result {
    sql_stmt_t mem; /* arena only */
    char **names;
    sql_type_t *types;
    size_t ncols;
    /* per column: the text copied last and its copy (a tag set's rows
     * repeat their tags: one copy) */
    const char **lastsrc;
    const char **lastdup;
    size_t *lastlen;
    sql_val_t **rows;
    size_t nrows, cap;
};

struct sql_exec {
    sql_stmt_t *s;
    const sql_plan_t *p;
    sql_exec_opts_t o;
    xser_t *ser;
    size_t nser, cap;
    /* columns of the source table */
    const char **cols;
    size_t ncols, ntags;
    const sql_result_t *src; /* a catalog table instead of series */
    /* output */
    sql_expr_t **out; /* select items after * expansion */
    char **outnames;
    size_t nout;
    sql_expr_t **aggs;
    uint8_t *aggfn; /* each aggregate's function (AF_*), found once */
    size_t nagg;
    int grouped;
    group_t *g;
    size_t ng, gcap;
    gslot_t *gtab; /* open addressing */
    size_t gtabcap;
    size_t glast; /* the group the previous row went to + 1 (rows come in runs) */
    outrow_t *rows;
    uint64_t nemitted;
    size_t nrows, rcap;
    uint64_t bytes, built;
    int gapfill; /* groups emitted in (series, bucket) order: no early LIMIT cut */
    acc_t *dacc; /* rows_are_groups: the accumulators of the row at hand */
    sql_val_t *daggv;
    st_buf_t key; /* the GROUP BY key of the row at hand */
    sql_stmt_t mem;
    sql_xctx_t x;
    char err[SQL_ERR_MAX];
};

/* ---- result ------------------------------------------------------------------ */

sql_result_t *sql_result_create(void)
{
    return calloc(1, sizeof(sql_result_t));
}

static void arena_free(sql_stmt_t *m)
{
    sql_arena_free(m);
}

void sql_result_free(sql_result_t *r)
{
    if (!r)
        return;
    arena_free(&r->mem);
    free(r->names);
    free(r->types);
    free(r->rows);
    free(r);
}

int sql_result_col(sql_result_t *r, const char *name, sql_type_t t)
{
    char **nn = realloc(r->names, (r->ncols + 1) * sizeof *nn);
    if (!nn)
        return ST_ENOMEM;
    r->names = nn;
    sql_type_t *nt = realloc(r->types, (r->ncols + 1) * sizeof *nt);
    if (!nt)
        return ST_ENOMEM;
    r->types = nt;
    r->names[r->ncols] = sql_strndup(&r->mem, name, strlen(name));
    if (!r->names[r->ncols])
        return ST_ENOMEM;
    r->types[r->ncols++] = t;
    return 0;
}

/* A row of the result's own (its arena or adopted): coerced into the
 * columns' types, its texts copied into the result. intern: the caller's
 * texts stay put and unchanged until the result is built (the executor's:
 * labels, literals, parameters, its arena), so a text at the address copied
 * last in its column is that copy again. */
static int result_fix(sql_result_t *r, sql_val_t *row, int intern)
{
    if (intern && !r->lastsrc && r->ncols) {
        r->lastsrc = sql_alloc(&r->mem, r->ncols * sizeof *r->lastsrc);
        r->lastdup = sql_alloc(&r->mem, r->ncols * sizeof *r->lastdup);
        r->lastlen = sql_alloc(&r->mem, r->ncols * sizeof *r->lastlen);
        if (!r->lastsrc || !r->lastdup || !r->lastlen) {
            r->lastsrc = NULL;
            return ST_ENOMEM;
        }
    }
    for (size_t c = 0; c < r->ncols; c++) {
        sql_val_t *v = &row[c];
        if (v->type == SQL_INT && r->types[c] == SQL_FLOAT) {
            v->u.f = (double)v->u.i;
            v->type = SQL_FLOAT;
        }
        if (v->type != SQL_TEXT)
            continue;
        if (intern && r->lastsrc[c] && r->lastsrc[c] == v->u.t.s && r->lastlen[c] == v->u.t.len) {
            v->u.t.s = r->lastdup[c];
        } else {
            const char *src = v->u.t.s;
            v->u.t.s = sql_strndup(&r->mem, src, v->u.t.len);
            if (!v->u.t.s)
                return ST_ENOMEM;
            if (intern) {
                r->lastsrc[c] = src;
                r->lastdup[c] = v->u.t.s;
                r->lastlen[c] = v->u.t.len;
            }
        }
    }
    return 0;
}

static int result_grow(sql_result_t *r)
{
    if (r->nrows < r->cap)
        return 0;
    size_t cap = r->cap ? 2 * r->cap : 64;
    sql_val_t **nr = realloc(r->rows, cap * sizeof *nr);
    if (!nr)
        return ST_ENOMEM;
    r->rows = nr;
    r->cap = cap;
    return 0;
}

static int result_copy(sql_result_t *r, const sql_val_t *vals, int intern)
{
    if (result_grow(r))
        return ST_ENOMEM;
    sql_val_t *row = sql_alloc_nz(&r->mem, (r->ncols ? r->ncols : 1) * sizeof *row);
    if (!row)
        return ST_ENOMEM;
    if (r->ncols)
        memcpy(row, vals, r->ncols * sizeof *row);
    int rc = result_fix(r, row, intern);
    if (rc)
        return rc;
    r->rows[r->nrows++] = row;
    return 0;
}

int sql_result_row(sql_result_t *r, const sql_val_t *vals)
{
    return result_copy(r, vals, 0);
}

size_t sql_result_ncols(const sql_result_t *r)
{
    return r->ncols;
}
size_t sql_result_nrows(const sql_result_t *r)
{
    return r->nrows;
}
const char *sql_result_colname(const sql_result_t *r, size_t c)
{
    return r->names[c];
}
sql_type_t sql_result_coltype(const sql_result_t *r, size_t c)
{
    return r->types[c];
}
const sql_val_t *sql_result_cell(const sql_result_t *r, size_t row, size_t c)
{
    return &r->rows[row][c];
}

static int json_val(st_buf_t *b, const sql_val_t *v)
{
    switch (v->type) {
    case SQL_NULL:
        return ST_BUF_LIT(b, "null");
    case SQL_BOOL:
        return v->u.i ? ST_BUF_LIT(b, "true") : ST_BUF_LIT(b, "false");
    case SQL_INT:
    case SQL_INTERVAL:
        if (v->type == SQL_INT)
            return sql_val_text(b, v);
        break;
    case SQL_FLOAT: {
        if (isnan(v->u.f) || isinf(v->u.f))
            break;
        char d[24];
        size_t nd = sql_fmt_integral(d, v->u.f);
        return nd ? st_buf_append(b, d, nd) : st_fmt_double(b, v->u.f);
    }
    case SQL_TIME: {
        /* RFC 3339, formatted on the stack (a time per row) */
        char t[64];
        size_t n = sql_time_chars(t + 1, v->u.i) + 1;
        t[0] = '"';
        t[11] = 'T';
        t[n - 3] = 'Z'; /* "+00" -> "Z" */
        t[n - 2] = '"';
        return st_buf_append(b, t, n - 1);
    }
    case SQL_TEXT:
        return st_json_str(b, v->u.t.s, v->u.t.len);
    default:
        break;
    }
    st_buf_t t;
    st_buf_init(&t);
    int rc = sql_val_text(&t, v);
    if (!rc)
        rc = st_json_str(b, t.data ? (char *)t.data : "", t.len);
    st_buf_deinit(&t);
    return rc;
}

int sql_result_json(const sql_result_t *r, st_buf_t *out)
{
    ST_BUF_LIT(out, "{\"columns\":[");
    for (size_t c = 0; c < r->ncols; c++) {
        if (c)
            st_buf_put_u8(out, ',');
        ST_BUF_LIT(out, "{\"name\":");
        st_json_str(out, r->names[c], strlen(r->names[c]));
        ST_BUF_LIT(out, ",\"type\":");
        const char *tn = sql_type_name(r->types[c]);
        st_json_str(out, tn, strlen(tn));
        st_buf_put_u8(out, '}');
    }
    ST_BUF_LIT(out, "],\"rows\":[");
    for (size_t i = 0; i < r->nrows; i++) {
        if (i)
            st_buf_put_u8(out, ',');
        st_buf_put_u8(out, '[');
        for (size_t c = 0; c < r->ncols; c++) {
            if (c)
                st_buf_put_u8(out, ',');
            json_val(out, &r->rows[i][c]);
        }
        st_buf_put_u8(out, ']');
    }
    return ST_BUF_LIT(out, "]}\n");
}

static void csv_field(st_buf_t *b, const char *s, size_t n)
{
    int q = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r')
            q = 1;
    if (!q) {
        st_buf_append(b, s, n);
        return;
    }
    st_buf_put_u8(b, '"');
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            st_buf_put_u8(b, '"');
        st_buf_put_u8(b, (uint8_t)s[i]);
    }
    st_buf_put_u8(b, '"');
}

int sql_result_csv(const sql_result_t *r, st_buf_t *out)
{
    for (size_t c = 0; c < r->ncols; c++) {
        if (c)
            st_buf_put_u8(out, ',');
        csv_field(out, r->names[c], strlen(r->names[c]));
    }
    ST_BUF_LIT(out, "\r\n");
    st_buf_t t;
    st_buf_init(&t);
    for (size_t i = 0; i < r->nrows; i++) {
        for (size_t c = 0; c < r->ncols; c++) {
            if (c)
                st_buf_put_u8(out, ',');
            t.len = 0;
            const sql_val_t *v = &r->rows[i][c];
            if (v->type == SQL_TIME)
                json_val(&t, v); /* RFC 3339, quoted */
            else
                sql_val_text(&t, v);
            if (v->type == SQL_TIME && t.len >= 2)
                csv_field(out, (char *)t.data + 1, t.len - 2);
            else
                csv_field(out, t.data ? (char *)t.data : "", t.len);
        }
        ST_BUF_LIT(out, "\r\n");
    }
    st_buf_deinit(&t);
    return out->data || !r->ncols ? 0 : ST_ENOMEM;
}

int sql_result_tag(const sql_result_t *r, const sql_stmt_t *s, char *buf, size_t cap)
{
    if (s->kind == SQL_SELECT || s->kind == SQL_SHOW_TABLES || s->kind == SQL_SHOW_COLUMNS)
        return snprintf(buf, cap, "SELECT %zu", r ? r->nrows : 0);
    if (s->kind == SQL_SHOW_VAR)
        return snprintf(buf, cap, "SHOW");
    if (s->kind == SQL_INSERT)
        return snprintf(buf, cap, "INSERT 0 %zu", s->nrows);
    return snprintf(buf, cap, "%s", s->tag ? s->tag : "");
}

/* ---- exec ------------------------------------------------------------------ */

int sql_exec_create(sql_stmt_t *s, const sql_plan_t *p, const sql_exec_opts_t *o, sql_exec_t **out)
{
    sql_exec_t *x = calloc(1, sizeof *x);
    if (!x)
        return ST_ENOMEM;
    x->s = s;
    x->p = p;
    x->o = *o;
    x->x.s = s;
    x->x.now = st_now_ms();
    x->x.mem = &x->mem;
    x->x.err = x->err;
    x->x.errlen = sizeof x->err;
    *out = x;
    return 0;
}

void sql_exec_set_params(sql_exec_t *x, int64_t now_ms, const char *const *params, size_t n)
{
    x->x.now = now_ms;
    x->x.params = params;
    x->x.nparams = n;
}

int sql_exec_series(sql_exec_t *x, const st_label_t *l, size_t nl, const int64_t *ts,
                    const double *v, size_t n)
{
    if (x->nser == x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 256;
        xser_t *ns = realloc(x->ser, cap * sizeof *ns);
        if (!ns)
            return ST_ENOMEM;
        x->ser = ns;
        x->cap = cap;
    }
    x->ser[x->nser++] = (xser_t){l, nl, ts, v, n, -1};
    return 0;
}

void sql_exec_table(sql_exec_t *x, const sql_result_t *t)
{
    x->src = t;
}

size_t sql_exec_nseries(const sql_exec_t *x)
{
    return x->nser;
}

/* ORDER BY ... LIMIT cuts the rows as they come (emit): each row its own
 * block then; otherwise the rows live in the arena. */
static int rows_malloced(const sql_exec_t *x)
{
    return x->s->norder && x->s->limit >= 0;
}

void sql_exec_destroy(sql_exec_t *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < x->ng; i++)
        for (size_t k = 0; k < x->nagg; k++)
            free(x->g[i].acc[k].vals);
    free(x->g);
    free(x->gtab);
    for (size_t i = 0; rows_malloced(x) && i < x->nrows; i++)
        free(x->rows[i].v);
    free(x->rows);
    free(x->ser);
    free(x->aggfn);
    free(x->dacc);
    free(x->daggv);
    free(x->cols);
    free(x->out);
    free(x->outnames);
    free(x->aggs);
    st_buf_deinit(&x->key);
    arena_free(&x->mem);
    free(x);
}

static const char *field_of(const sql_exec_t *x, const st_label_t *l, size_t nl)
{
    int i = st_labels_find(l, nl, ST_METRIC_LABEL);
    if (i < 0)
        return NULL;
    size_t tl = strlen(x->s->table);
    if (l[i].value_len == tl)
        return "value";
    if (l[i].value_len > tl + 1)
        return l[i].value + tl + 1; /* label values are NUL-terminated in results */
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Compare label sets without __name__. */
static int cmp_tagset(const xser_t *a, const xser_t *b)
{
    size_t i = 0, j = 0;
    for (;;) {
        while (i < a->nl && !strcmp(a->l[i].name, ST_METRIC_LABEL))
            i++;
        while (j < b->nl && !strcmp(b->l[j].name, ST_METRIC_LABEL))
            j++;
        if (i == a->nl || j == b->nl)
            return (i < a->nl) - (j < b->nl);
        int c = strcmp(a->l[i].name, b->l[j].name);
        if (!c)
            c = strcmp(a->l[i].value, b->l[j].value);
        if (c)
            return c;
        i++, j++;
    }
}

static int cmp_ser(const void *pa, const void *pb)
{
    const xser_t *a = pa, *b = pb;
    int c = cmp_tagset(a, b);
    return c ? c : a->field - b->field;
}

static int find_col(const sql_exec_t *x, const char *name)
{
    for (size_t i = 0; i < x->ncols; i++)
        if (!strcmp(x->cols[i], name))
            return (int)i;
    return -1;
}

static sql_type_t col_type(const sql_exec_t *x, int c)
{
    if (x->src)
        return x->src->types[c];
    return c == 0 ? SQL_TIME : (size_t)c <= x->ntags ? SQL_TEXT : SQL_FLOAT;
}

/* Resolve columns and aliases of e; assign aggregate slots. in_agg: inside one. */
static int resolve(sql_exec_t *x, sql_expr_t *e, int aliases, int in_agg, int allow_agg)
{
    if (e->kind == E_COL) {
        int c = find_col(x, e->name);
        if (c >= 0) {
            e->col = c + 1;
            return 0;
        }
        if (aliases)
            for (size_t i = 0; i < x->s->nitems; i++)
                if (x->s->aliases[i] && !strcmp(x->s->aliases[i], e->name)) {
                    e->col = -(int)(i + 1);
                    return 0;
                }
        if (x->nser == 0 && !x->src) { /* no data: an unknown column is NULL */
            e->col = 0;
            return 0;
        }
        snprintf(x->err, sizeof x->err, "error at position %zu: column \"%s\" does not exist",
                 e->pos + 1, e->name);
        return ST_EINVAL;
    }
    if (e->kind == E_FUNC && sql_is_aggregate(e->name)) {
        if (in_agg || !allow_agg) {
            snprintf(x->err, sizeof x->err,
                     "error at position %zu: aggregate %s() is not allowed %s", e->pos + 1, e->name,
                     in_agg ? "inside another aggregate" : "in WHERE or GROUP BY");
            return ST_EINVAL;
        }
        if (e->distinct) {
            snprintf(x->err, sizeof x->err,
                     "error at position %zu: %s(DISTINCT ...) is not supported", e->pos + 1,
                     e->name);
            return ST_EINVAL;
        }
        int pc = !strcmp(e->name, "percentile_cont");
        size_t want = !strcmp(e->name, "approx_percentile") ? 2 : 1;
        if (e->nargs != want || (pc && !e->within)) {
            snprintf(x->err, sizeof x->err, "error at position %zu: %s() takes %s", e->pos + 1,
                     e->name,
                     pc          ? "a fraction and WITHIN GROUP (ORDER BY column)"
                     : want == 2 ? "a column and a fraction"
                                 : "one argument");
            return ST_EINVAL;
        }
        if (x->nagg == SQL_MAX_ITEMS) {
            snprintf(x->err, sizeof x->err, "too many aggregates (max %d)", SQL_MAX_ITEMS);
            return ST_ELIMIT;
        }
        if (!e->agg) {
            sql_expr_t **na = realloc(x->aggs, (x->nagg + 1) * sizeof *na);
            if (!na)
                return ST_ENOMEM;
            x->aggs = na;
            x->aggs[x->nagg++] = e;
            e->agg = (int)x->nagg;
        }
        for (size_t i = 0; i < e->nargs; i++) {
            int rc = resolve(x, e->args[i], 0, 1, allow_agg);
            if (rc)
                return rc;
        }
        return e->within ? resolve(x, e->within, 0, 1, allow_agg) : 0;
    }
    if (e->kind == E_FUNC && !sql_func_known(e->name)) {
        snprintf(x->err, sizeof x->err, "error at position %zu: function %s() does not exist",
                 e->pos + 1, e->name);
        return ST_EINVAL;
    }
    /* a bucket width written as text ('1 minute'): parsed once, not per row */
    int64_t iv;
    if (e->kind == E_FUNC && e->nargs >= 2 && e->args[0]->kind == E_LIT &&
        e->args[0]->lit.type == SQL_TEXT &&
        (!strcmp(e->name, "time_bucket") || !strcmp(e->name, "date_bin") ||
         !strcmp(e->name, "time_bucket_gapfill")) &&
        !sql_parse_interval(e->args[0]->lit.u.t.s, e->args[0]->lit.u.t.len, &iv) && iv > 0)
        e->args[0]->lit = (sql_val_t){.type = SQL_INTERVAL, .u.i = iv};
    for (size_t i = 0; i < e->nargs; i++) {
        int rc = resolve(x, e->args[i], aliases, in_agg, allow_agg);
        if (rc)
            return rc;
    }
    return 0;
}

static sql_type_t etype(const sql_exec_t *x, const sql_expr_t *e)
{
    switch (e->kind) {
    case E_LIT:
        return e->lit.type == SQL_NULL ? SQL_TEXT : e->lit.type;
    case E_PARAM:
        return SQL_TEXT;
    case E_COL:
        if (e->col < 0)
            return etype(x, x->s->items[-e->col - 1]);
        return e->col ? col_type(x, e->col - 1) : SQL_TEXT;
    case E_STAR:
        return SQL_INT;
    case E_NOT:
    case E_ISNULL:
    case E_IN:
    case E_BETWEEN:
    case E_LIKE:
        return SQL_BOOL;
    case E_NEG:
        return etype(x, e->args[0]);
    case E_CAST: {
        const char *t = e->name;
        if (strstr(t, "int") || !strcmp(t, "oid"))
            return SQL_INT;
        if (strstr(t, "float") || !strcmp(t, "double") || !strcmp(t, "real") ||
            !strcmp(t, "numeric") || !strcmp(t, "decimal"))
            return SQL_FLOAT;
        if (strstr(t, "timestamp") || !strcmp(t, "date"))
            return SQL_TIME;
        if (!strcmp(t, "interval"))
            return SQL_INTERVAL;
        if (strstr(t, "bool"))
            return SQL_BOOL;
        return SQL_TEXT;
    }
    case E_FUNC: {
        const char *f = e->name;
        if (!strcmp(f, "count") || !strcmp(f, "length") || !strcmp(f, "char_length"))
            return SQL_INT;
        if (!strcmp(f, "min") || !strcmp(f, "max") || !strcmp(f, "first") || !strcmp(f, "last")) {
            sql_type_t t = etype(x, e->args[0]);
            return t == SQL_INT ? SQL_FLOAT : t;
        }
        if (!strcmp(f, "sum") && etype(x, e->args[0]) == SQL_INTERVAL)
            return SQL_INTERVAL;
        if (!strcmp(f, "now") || strstr(f, "time_bucket") || !strcmp(f, "date_bin") ||
            !strcmp(f, "date_trunc") || !strcmp(f, "to_timestamp") ||
            !strcmp(f, "current_timestamp"))
            return SQL_TIME;
        if (!strcmp(f, "lower") || !strcmp(f, "upper") || !strcmp(f, "version") ||
            !strncmp(f, "current_", 8) || !strcmp(f, "session_user"))
            return SQL_TEXT;
        if (!strcmp(f, "locf") && e->nargs)
            return etype(x, e->args[0]);
        if (!strcmp(f, "coalesce") && e->nargs)
            return etype(x, e->args[0]);
        if (!strcmp(f, "abs"))
            return etype(x, e->args[0]);
        return SQL_FLOAT;
    }
    case E_BIN: {
        if (e->op <= OP_GE || e->op >= OP_RE)
            return SQL_BOOL;
        if (e->op == OP_CONCAT)
            return SQL_TEXT;
        sql_type_t a = etype(x, e->args[0]), b = etype(x, e->args[1]);
        if (a == SQL_TIME && b == SQL_TIME)
            return SQL_INTERVAL;
        if (a == SQL_TIME || b == SQL_TIME)
            return SQL_TIME;
        if (a == SQL_INTERVAL && b == SQL_INTERVAL)
            return SQL_INTERVAL;
        return a == SQL_INT && b == SQL_INT ? SQL_INT : SQL_FLOAT;
    }
    }
    return SQL_TEXT;
}

static const char *out_name(const sql_expr_t *e)
{
    if (e->kind == E_COL)
        return e->name;
    if (e->kind == E_FUNC)
        return e->name;
    if (e->kind == E_CAST)
        return out_name(e->args[0]);
    return "?column?";
}

/* Build the columns and output items (SELECT * expanded). */
static int setup(sql_exec_t *x)
{
    sql_stmt_t *s = x->s;
    /* fields and tags */
    const char **tags = NULL, **fields = NULL;
    size_t nt = 0, nf = 0, ct = 0, cf = 0;
    int rc = ST_ENOMEM;
    for (size_t i = 0; i < x->nser; i++) {
        xser_t *se = &x->ser[i];
        const char *f = field_of(x, se->l, se->nl);
        if (f && !(nf && bsearch(&f, fields, nf, sizeof *fields, cmp_str))) {
            if (nf == cf && st_grow(&fields, &cf, sizeof *fields, 16))
                goto out;
            fields[nf++] = f;
            if (nf > 1)
                qsort(fields, nf, sizeof *fields, cmp_str);
        }
        for (size_t k = 0; k < se->nl; k++) {
            const char *t = se->l[k].name;
            if (!strcmp(t, ST_METRIC_LABEL) || (nt && bsearch(&t, tags, nt, sizeof *tags, cmp_str)))
                continue;
            if (nt == ct && st_grow(&tags, &ct, sizeof *tags, 16))
                goto out;
            tags[nt++] = t;
            if (nt > 1)
                qsort(tags, nt, sizeof *tags, cmp_str);
        }
    }
    if (x->src) {
        nt = nf = 0;
        x->ncols = x->src->ncols;
        x->cols = malloc((x->ncols ? x->ncols : 1) * sizeof *x->cols);
        if (!x->cols)
            goto out;
        for (size_t c = 0; c < x->ncols; c++)
            x->cols[c] = x->src->names[c];
        goto items;
    }
    x->ncols = 1 + nt + nf;
    x->ntags = nt;
    x->cols = malloc(x->ncols * sizeof *x->cols);
    if (!x->cols)
        goto out;
    x->cols[0] = "time";
    if (nt)
        if (nt)
            memcpy(x->cols + 1, tags, nt * sizeof *tags);
    if (nf)
        if (nf)
            memcpy(x->cols + 1 + nt, fields, nf * sizeof *fields);
    for (size_t i = 0; i < x->nser; i++) {
        const char *f = field_of(x, x->ser[i].l, x->ser[i].nl);
        x->ser[i].field =
            f ? (int)(1 + nt +
                      (size_t)((const char **)bsearch(&f, fields, nf, sizeof *fields, cmp_str) -
                               fields))
              : -1;
    }
items:;
    /* output items */
    size_t nout = 0;
    for (size_t i = 0; i < s->nitems; i++)
        nout += s->items[i]->kind == E_STAR ? x->ncols : 1;
    x->out = malloc((nout ? nout : 1) * sizeof *x->out);
    x->outnames = malloc((nout ? nout : 1) * sizeof *x->outnames);
    if (!x->out || !x->outnames)
        goto out;
    for (size_t i = 0; i < s->nitems; i++) {
        if (s->items[i]->kind == E_STAR) {
            for (size_t c = 0; c < x->ncols; c++) {
                sql_expr_t *e = sql_alloc(&x->mem, sizeof *e);
                if (!e)
                    goto out;
                e->kind = E_COL;
                e->name = (char *)x->cols[c];
                e->col = (int)c + 1;
                x->outnames[x->nout] = e->name;
                x->out[x->nout++] = e;
            }
            continue;
        }
        x->outnames[x->nout] = s->aliases[i] ? s->aliases[i] : (char *)out_name(s->items[i]);
        x->out[x->nout++] = s->items[i];
    }
    rc = 0;
out:
    free(tags);
    free(fields);
    if (rc)
        snprintf(x->err, sizeof x->err, "out of memory");
    return rc;
}

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    /* FNV's low bits (the table's index) hardly depend on the key's last
     * bytes (a bucket's time): mix the high bits down (SplitMix64's end) */
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

static int key_add(st_buf_t *k, const sql_val_t *v)
{
    st_buf_put_u8(k, (uint8_t)v->type);
    if (v->type == SQL_TEXT) {
        st_buf_put_uvarint(k, v->u.t.len);
        return st_buf_append(k, v->u.t.s, v->u.t.len);
    }
    if (v->type == SQL_FLOAT)
        return st_buf_append(k, &v->u.f, sizeof v->u.f);
    if (v->type != SQL_NULL)
        return st_buf_append(k, &v->u.i, sizeof v->u.i);
    return 0;
}

static int over_bytes(sql_exec_t *x, size_t add)
{
    x->bytes += add;
    if (x->o.max_bytes && x->bytes > x->o.max_bytes) {
        snprintf(x->err, sizeof x->err, "query would materialise more than %llu MiB (query_max_mb)",
                 (unsigned long long)(x->o.max_bytes >> 20));
        return ST_ELIMIT;
    }
    return 0;
}

static int copy_row(sql_exec_t *x, const sql_val_t *row, size_t n, sql_val_t **out)
{
    sql_val_t *r = sql_alloc_nz(&x->mem, (n ? n : 1) * sizeof *r);
    if (!r)
        return ST_ENOMEM;
    /* text points into the series' labels, the parameters or the arena:
     * all valid until sql_exec_finish returns */
    if (n)
        memcpy(r, row, n * sizeof *r);
    *out = r;
    return over_bytes(x, n * sizeof *r);
}

/* Size the groups and their hash table for n groups at once. */
static int groups_reserve(sql_exec_t *x, size_t n)
{
    if (n <= x->gcap)
        return 0;
    size_t tab = 128;
    while (tab < 2 * n)
        tab *= 2;
    group_t *ng = realloc(x->g, n * sizeof *ng);
    if (!ng)
        return ST_ENOMEM;
    x->g = ng;
    x->gcap = n;
    if (tab <= x->gtabcap)
        return 0;
    gslot_t *nt = calloc(tab, sizeof *nt);
    if (!nt)
        return ST_ENOMEM;
    for (size_t k = 0; k < x->ng; k++) {
        size_t i = x->g[k].hash & (tab - 1);
        while (nt[i].gi)
            i = (i + 1) & (tab - 1);
        nt[i] = (gslot_t){x->g[k].hash, k + 1};
    }
    free(x->gtab);
    x->gtab = nt;
    x->gtabcap = tab;
    return 0;
}

static group_t *find_group(sql_exec_t *x, const char *key, size_t len, int *rc)
{
    uint64_t h = hash_bytes(key, len);
    *rc = 0;
    if (x->glast) {
        group_t *g = &x->g[x->glast - 1];
        if (g->hash == h && g->keylen == len && !memcmp(g->key, key, len))
            return g;
    }
    if (x->gtabcap) {
        for (size_t i = h & (x->gtabcap - 1);; i = (i + 1) & (x->gtabcap - 1)) {
            size_t gi = x->gtab[i].gi;
            if (!gi)
                break;
            if (x->gtab[i].hash != h)
                continue;
            group_t *g = &x->g[gi - 1];
            if (g->keylen == len && !memcmp(g->key, key, len)) {
                x->glast = gi;
                return g;
            }
        }
    }
    /* new group */
    if ((*rc = over_bytes(x, sizeof(group_t) + len + x->nagg * sizeof(acc_t) + 64)))
        return NULL;
    if (x->ng == x->gcap) {
        size_t cap = x->gcap ? 2 * x->gcap : 64;
        group_t *ng = realloc(x->g, cap * sizeof *ng);
        if (!ng) {
            *rc = ST_ENOMEM;
            return NULL;
        }
        x->g = ng;
        x->gcap = cap;
    }
    if ((x->ng + 1) * 2 > x->gtabcap) {
        size_t cap = x->gtabcap ? 2 * x->gtabcap : 128;
        gslot_t *nt = calloc(cap, sizeof *nt);
        if (!nt) {
            *rc = ST_ENOMEM;
            return NULL;
        }
        for (size_t k = 0; k < x->ng; k++) {
            size_t i = x->g[k].hash & (cap - 1);
            while (nt[i].gi)
                i = (i + 1) & (cap - 1);
            nt[i] = (gslot_t){x->g[k].hash, k + 1};
        }
        free(x->gtab);
        x->gtab = nt;
        x->gtabcap = cap;
    }
    group_t *g = &x->g[x->ng];
    memset(g, 0, sizeof *g);
    g->hash = h;
    g->key = sql_alloc_nz(&x->mem, len ? len : 1);
    g->acc = sql_alloc(&x->mem, (x->nagg ? x->nagg : 1) * sizeof *g->acc);
    if (!g->key || !g->acc) {
        *rc = ST_ENOMEM;
        return NULL;
    }
    memcpy(g->key, key, len);
    g->keylen = len;
    for (size_t k = 0; k < x->nagg; k++) {
        g->acc[k].min = INFINITY;
        g->acc[k].max = -INFINITY;
    }
    size_t i = h & (x->gtabcap - 1);
    while (x->gtab[i].gi)
        i = (i + 1) & (x->gtabcap - 1);
    x->gtab[i] = (gslot_t){h, ++x->ng};
    x->glast = x->ng;
    return g;
}

/* The aggregate functions, told apart once per statement (aggfn_of), not
 * by name per row. */
enum {
    AF_COUNT,
    AF_SUM,
    AF_AVG,
    AF_MIN,
    AF_MAX,
    AF_FIRST,
    AF_LAST,
    AF_STDDEV,
    AF_PCT,
    AF_VALS = 16
};

static uint8_t aggfn_of(const sql_expr_t *e)
{
    const char *f = e->name;
    int vals = e->within || !strcmp(f, "approx_percentile") || !strcmp(f, "median");
    int fn = !strcmp(f, "count")                       ? AF_COUNT
             : !strcmp(f, "sum")                       ? AF_SUM
             : !strcmp(f, "avg") || !strcmp(f, "mean") ? AF_AVG
             : !strcmp(f, "min")                       ? AF_MIN
             : !strcmp(f, "max")                       ? AF_MAX
             : !strcmp(f, "first")                     ? AF_FIRST
             : !strcmp(f, "last")                      ? AF_LAST
             : !strncmp(f, "stddev", 6)                ? AF_STDDEV
                                                       : AF_PCT;
    return (uint8_t)(fn | (vals ? AF_VALS : 0));
}

static int accumulate(sql_exec_t *x, group_t *g, const sql_val_t *row)
{
    for (size_t k = 0; k < x->nagg; k++) {
        const sql_expr_t *e = x->aggs[k];
        acc_t *a = &g->acc[k];
        sql_val_t v;
        const sql_expr_t *arg = e->within ? e->within : e->args[0];
        int rc = sql_eval(&x->x, arg, row, &v);
        if (rc)
            return rc;
        if (v.type == SQL_NULL)
            continue;
        double d;
        if (v.type == SQL_FLOAT)
            d = v.u.f;
        else if (v.type == SQL_TEXT) {
            if ((x->aggfn[k] & ~AF_VALS) == AF_COUNT) {
                a->n++;
                continue;
            }
            snprintf(x->err, sizeof x->err, "error at position %zu: %s() needs numbers", e->pos + 1,
                     e->name);
            return ST_EINVAL;
        } else
            d = (double)v.u.i;
        int64_t ts = row[0].u.i;
        if (!a->n || ts < a->fts) {
            a->fts = ts;
            a->first = d;
        }
        if (!a->n || ts >= a->lts) {
            a->lts = ts;
            a->last = d;
        }
        a->n++;
        a->sum += d;
        a->sumsq += d * d;
        if (d < a->min || isnan(a->min))
            a->min = d;
        if (d > a->max || isnan(a->max))
            a->max = d;
        if (x->aggfn[k] & AF_VALS) {
            if (a->nv == a->cap) {
                if ((rc = over_bytes(x, (a->cap ? a->cap : 16) * sizeof(double))))
                    return rc;
                if (st_grow(&a->vals, &a->cap, sizeof *a->vals, 16))
                    return ST_ENOMEM;
            }
            a->vals[a->nv++] = d;
        }
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int finish_aggs(sql_exec_t *x, group_t *g, sql_val_t *out)
{
    for (size_t k = 0; k < x->nagg; k++) {
        const sql_expr_t *e = x->aggs[k];
        acc_t *a = &g->acc[k];
        const char *f = e->name;
        sql_val_t v = {.type = SQL_NULL};
        int fn = x->aggfn[k] & ~AF_VALS;
        if (fn == AF_COUNT) {
            v.type = SQL_INT;
            v.u.i = a->n;
        } else if (a->n == 0) {
            /* NULL */
        } else if (fn == AF_SUM) {
            v.type = SQL_FLOAT, v.u.f = a->sum;
        } else if (fn == AF_AVG) {
            v.type = SQL_FLOAT, v.u.f = a->sum / (double)a->n;
        } else if (fn == AF_MIN || fn == AF_MAX || fn == AF_FIRST || fn == AF_LAST) {
            double d = fn == AF_MIN     ? a->min
                       : fn == AF_MAX   ? a->max
                       : fn == AF_FIRST ? a->first
                                        : a->last;
            sql_type_t at = etype(x, e->within ? e->within : e->args[0]);
            if (at == SQL_TIME || at == SQL_INTERVAL)
                v.type = at, v.u.i = (int64_t)d;
            else
                v.type = SQL_FLOAT, v.u.f = d;
        } else if (fn == AF_STDDEV) {
            int pop = !strcmp(f, "stddev_pop");
            if (a->n > 1 || pop) {
                double n = (double)a->n, mean = a->sum / n;
                double var = (a->sumsq - n * mean * mean) / (pop ? n : n - 1);
                v.type = SQL_FLOAT, v.u.f = sqrt(var < 0 ? 0 : var);
            }
        } else { /* percentiles: linear interpolation (percentile_cont) */
            sql_val_t pv;
            double p = 0.5;
            if (strcmp(f, "median")) {
                int rc = sql_eval(&x->x, e->within ? e->args[0] : e->args[1], NULL, &pv);
                if (rc)
                    return rc;
                if (pv.type == SQL_FLOAT)
                    p = pv.u.f;
                else if (pv.type == SQL_INT)
                    p = (double)pv.u.i;
                if (!(p >= 0 && p <= 1)) {
                    snprintf(x->err, sizeof x->err,
                             "error at position %zu: percentile %g is not between 0 and 1",
                             e->pos + 1, p);
                    return ST_EINVAL;
                }
            }
            if (a->nv > 1)
                qsort(a->vals, a->nv, sizeof *a->vals, cmp_double);
            double pos = p * (double)(a->nv - 1);
            size_t lo = (size_t)floor(pos), hi = (size_t)ceil(pos);
            v.type = SQL_FLOAT;
            v.u.f = a->vals[lo] + (a->vals[hi] - a->vals[lo]) * (pos - (double)lo);
        }
        out[k] = v;
    }
    return 0;
}

static int cmp_rows(const void *pa, const void *pb, void *arg);

static int emit(sql_exec_t *x, const sql_val_t *row)
{
    size_t w = x->nout + x->s->norder;
    sql_val_t vals[2 * SQL_MAX_ITEMS + 64];
    sql_val_t *big = NULL;
    sql_val_t *v = vals;
    if (w > sizeof vals / sizeof vals[0]) {
        big = malloc(w * sizeof *big);
        if (!big)
            return ST_ENOMEM;
        v = big;
    }
    int rc = 0;
    for (size_t i = 0; i < x->nout && !rc; i++)
        rc = sql_eval(&x->x, x->out[i], row, &v[i]);
    for (size_t i = 0; i < x->s->norder && !rc; i++) {
        const sql_expr_t *o = x->s->order[i];
        if (o->kind == E_LIT && o->lit.type == SQL_INT) {
            if (o->lit.u.i < 1 || (size_t)o->lit.u.i > x->nout) {
                snprintf(x->err, sizeof x->err,
                         "error at position %zu: ORDER BY position %lld is not in select list",
                         o->pos + 1, (long long)o->lit.u.i);
                rc = ST_EINVAL;
                break;
            }
            v[x->nout + i] = v[o->lit.u.i - 1];
        } else {
            rc = sql_eval(&x->x, o, row, &v[x->nout + i]);
        }
    }
    if (!rc) {
        if (x->nrows == x->rcap && st_grow(&x->rows, &x->rcap, sizeof *x->rows, 256))
            rc = ST_ENOMEM;
        /* text points into the series' labels, the parameters or the arena:
         * all valid until sql_exec_finish returns */
        int own = rows_malloced(x);
        sql_val_t *r = rc    ? NULL
                       : own ? malloc((w ? w : 1) * sizeof *r)
                             : sql_alloc_nz(&x->mem, (w ? w : 1) * sizeof *r);
        if (!rc && !r)
            rc = ST_ENOMEM;
        if (!rc && !(rc = over_bytes(x, w * sizeof *r))) {
            if (w)
                memcpy(r, v, w * sizeof *r);
            x->rows[x->nrows++] = (outrow_t){r, x->nemitted++};
        } else if (own) {
            free(r);
        }
    }
    free(big);
    /* ORDER BY ... LIMIT: keep the best offset + limit rows only (sorted
     * and cut whenever twice that many, plus slack, have gathered) */
    if (!rc && x->s->norder && x->s->limit >= 0 && !x->gapfill) {
        size_t k = (size_t)x->s->limit + (size_t)x->s->offset;
        if (x->nrows >= 2 * k + 1024) {
            qsort_r(x->rows, x->nrows, sizeof *x->rows, cmp_rows, x);
            for (size_t i = k; i < x->nrows; i++)
                free(x->rows[i].v);
            x->bytes -= (x->nrows - k) * w * sizeof(sql_val_t);
            x->nrows = k;
        }
    }
    return rc;
}

/* rows_are_groups: the row is its group; its aggregates, HAVING and the
 * output row at once (what the groups' pass does, in the same order). */
static int row_group(sql_exec_t *x, const sql_val_t *row)
{
    group_t g = {.acc = x->dacc};
    for (size_t k = 0; k < x->nagg; k++)
        x->dacc[k] = (acc_t){.min = INFINITY, .max = -INFINITY};
    int rc = accumulate(x, &g, row);
    if (!rc)
        rc = finish_aggs(x, &g, x->daggv);
    for (size_t k = 0; k < x->nagg; k++)
        free(x->dacc[k].vals);
    if (rc)
        return rc;
    x->x.aggs = x->daggv;
    x->x.row = row;
    int keep = 1;
    if (x->s->having) {
        sql_val_t h;
        rc = sql_eval(&x->x, x->s->having, NULL, &h);
        keep = !rc && (h.type == SQL_BOOL || h.type == SQL_INT) && h.u.i;
    }
    if (!rc && keep)
        rc = emit(x, NULL);
    x->x.aggs = NULL;
    x->x.row = NULL;
    return rc;
}

static int row_in(sql_exec_t *x, const sql_val_t *row)
{
    sql_stmt_t *s = x->s;
    if (s->where) {
        sql_val_t w;
        int rc = sql_eval(&x->x, s->where, row, &w);
        if (rc)
            return rc;
        if (!((w.type == SQL_BOOL || w.type == SQL_INT) && w.u.i))
            return 0;
    }
    if (!x->grouped)
        return emit(x, row);
    if (x->dacc)
        return row_group(x, row);
    st_buf_t *k = &x->key; /* reused from row to row */
    k->len = 0;
    int rc = 0;
    for (size_t i = 0; i < s->ngroup && !rc; i++) {
        sql_val_t v;
        rc = sql_eval(&x->x, s->group[i], row, &v);
        if (!rc)
            rc = key_add(k, &v);
    }
    group_t *g = NULL;
    if (!rc)
        g = find_group(x, k->data ? (char *)k->data : "", k->len, &rc);
    if (rc)
        return rc;
    if (!g->row && (rc = copy_row(x, row, x->ncols, &g->row)))
        return rc;
    return accumulate(x, g, row);
}

/* ---- gap filling: time_bucket_gapfill, locf, interpolate ------------------------ */

/* The GROUP BY key that is time_bucket_gapfill(...) (an alias resolved), or -1. */
static int gapfill_key(const sql_exec_t *x, const sql_expr_t **fn)
{
    const sql_stmt_t *s = x->s;
    for (size_t i = 0; i < s->ngroup; i++) {
        const sql_expr_t *e = s->group[i];
        if (e->kind == E_COL && e->col < 0)
            e = s->items[-e->col - 1];
        if (e->kind == E_FUNC && !strcmp(e->name, "time_bucket_gapfill")) {
            *fn = e;
            return (int)i;
        }
    }
    return -1;
}

typedef struct gfent {
    const char *sk; /* the group's key without the bucket */
    size_t sklen;
    int64_t b; /* its bucket */
    size_t gi;
} gfent_t;

static int cmp_gfent(const void *pa, const void *pb)
{
    const gfent_t *a = pa, *b = pb;
    size_t n = a->sklen < b->sklen ? a->sklen : b->sklen;
    int c = n ? memcmp(a->sk, b->sk, n) : 0;
    if (c)
        return c;
    if (a->sklen != b->sklen)
        return a->sklen < b->sklen ? -1 : 1;
    return a->b < b->b ? -1 : a->b > b->b;
}

/* Evaluate the GROUP BY keys over row into k: all of them (skip < 0), or
 * all but key skip. */
static int group_key(sql_exec_t *x, const sql_val_t *row, int skip, st_buf_t *k)
{
    k->len = 0;
    for (size_t i = 0; i < x->s->ngroup; i++) {
        if ((int)i == skip)
            continue;
        sql_val_t v;
        int rc = sql_eval(&x->x, x->s->group[i], row, &v);
        if (rc || (rc = key_add(k, &v)))
            return rc;
    }
    return 0;
}

/* The groups' (series key, bucket) entries, sorted. */
static int gapfill_entries(sql_exec_t *x, int gk, const sql_expr_t *fn, gfent_t **out)
{
    gfent_t *e = malloc((x->ng ? x->ng : 1) * sizeof *e);
    st_buf_t k;
    st_buf_init(&k);
    int rc = e ? 0 : ST_ENOMEM;
    for (size_t i = 0; i < x->ng && !rc; i++) {
        sql_val_t b;
        if ((rc = group_key(x, x->g[i].row, gk, &k)) || (rc = sql_eval(&x->x, fn, x->g[i].row, &b)))
            break;
        char *sk = sql_alloc(&x->mem, k.len ? k.len : 1);
        if (!sk) {
            rc = ST_ENOMEM;
            break;
        }
        if (k.len)
            memcpy(sk, k.data, k.len);
        e[i] = (gfent_t){sk, k.len, b.type == SQL_TIME ? b.u.i : INT64_MIN, i};
    }
    st_buf_deinit(&k);
    if (rc) {
        free(e);
        return rc;
    }
    if (x->ng > 1)
        qsort(e, x->ng, sizeof *e, cmp_gfent);
    *out = e;
    return 0;
}

/* Add the missing buckets of [start, finish) to every series (the other
 * GROUP BY keys) as groups without rows (aggregates NULL, count 0), then
 * give the emit order: *out[i] the groups sorted by series, bucket. */
static int gapfill(sql_exec_t *x, int gk, const sql_expr_t *fn, gfent_t **out)
{
    int64_t width, start, finish;
    sql_val_t a;
    int rc = sql_eval(&x->x, fn->args[0], NULL, &a);
    if (rc)
        return rc;
    if (a.type == SQL_INTERVAL || a.type == SQL_INT)
        width = a.u.i;
    else if (a.type != SQL_TEXT || sql_parse_interval(a.u.t.s, a.u.t.len, &width))
        width = 0;
    int have_start = 0, have_finish = 0;
    if (fn->nargs > 2 && !(rc = sql_eval(&x->x, fn->args[2], NULL, &a)) && a.type != SQL_NULL)
        have_start = !sql_as_time(&a, &start);
    if (!rc && fn->nargs > 3 && !(rc = sql_eval(&x->x, fn->args[3], NULL, &a)) &&
        a.type != SQL_NULL)
        have_finish = !sql_as_time(&a, &finish);
    if (rc)
        return rc;
    if (!have_start)
        start = x->p ? x->p->start : 0;
    if (!have_finish)
        finish = x->p ? x->p->end : 0;
    if (width <= 0 || finish <= start || (finish - start) / width >= SQL_GAPFILL_MAX) {
        snprintf(x->err, sizeof x->err,
                 "error at position %zu: time_bucket_gapfill needs a positive width and at most "
                 "%d buckets from start to finish: bound time in WHERE (time >= .. AND time < ..) "
                 "or pass start and finish",
                 fn->pos + 1, SQL_GAPFILL_MAX);
        return ST_EINVAL;
    }
    if (x->src || !x->ncols) {
        snprintf(x->err, sizeof x->err, "time_bucket_gapfill needs a table with a time column");
        return ST_EINVAL;
    }
    gfent_t *e;
    if ((rc = gapfill_entries(x, gk, fn, &e)))
        return rc;
    size_t n0 = x->ng;
    sql_val_t *tmp = malloc(x->ncols * sizeof *tmp);
    st_buf_t k;
    st_buf_init(&k);
    if (!tmp)
        rc = ST_ENOMEM;
    for (size_t i = 0; i < n0 && !rc;) {
        size_t j = i + 1;
        while (j < n0 && e[j].sklen == e[i].sklen && !memcmp(e[j].sk, e[i].sk, e[i].sklen))
            j++;
        /* series e[i..j): a row of it with each bucket's time */
        memcpy(tmp, x->g[e[i].gi].row, x->ncols * sizeof *tmp);
        tmp[0].type = SQL_TIME;
        tmp[0].u.i = start;
        sql_val_t b;
        if ((rc = sql_eval(&x->x, fn, tmp, &b)))
            break;
        if (b.type != SQL_TIME)
            b.u.i = start;
        for (int64_t t = b.u.i; t < finish && !rc; t += width) {
            tmp[0].u.i = t;
            if ((rc = group_key(x, tmp, -1, &k)))
                break;
            group_t *g = find_group(x, k.data ? (char *)k.data : "", k.len, &rc);
            if (g && !g->row) {
                g->filled = 1;
                rc = copy_row(x, tmp, x->ncols, &g->row);
            }
        }
        i = j;
    }
    st_buf_deinit(&k);
    free(tmp);
    free(e);
    if (rc)
        return rc;
    return gapfill_entries(x, gk, fn, out);
}

static int as_double(const sql_val_t *v, double *d)
{
    if (v->type == SQL_FLOAT)
        *d = v->u.f;
    else if (v->type == SQL_INT)
        *d = (double)v->u.i;
    else
        return -1;
    return 0;
}

/* After the groups of a gap-filled query were emitted in (series, bucket)
 * order (sid[r], bt[r] of output row r): fill the NULLs of the select
 * items locf(...) (the series' last value before) and interpolate(...)
 * (linear in time between the series' values before and after; none at
 * the ends), and the ORDER BY keys that name those items. */
static int gapfill_columns(sql_exec_t *x, const size_t *sid, const int64_t *bt)
{
    size_t n = x->nrows;
    size_t *next = malloc((n ? n : 1) * sizeof *next);
    if (!next)
        return ST_ENOMEM;
    for (size_t c = 0; c < x->nout; c++) {
        const sql_expr_t *e = x->out[c];
        if (e->kind != E_FUNC || (strcmp(e->name, "locf") && strcmp(e->name, "interpolate")))
            continue;
        int interp = e->name[0] == 'i';
        /* next[r]: the series' next row with a value at c (n: none) */
        for (size_t r = n, after = n; r-- > 0;) {
            next[r] = after;
            if (r > 0 && sid[r - 1] != sid[r])
                after = n;
            else if (x->rows[r].v[c].type != SQL_NULL)
                after = r;
        }
        size_t prev = n;
        for (size_t r = 0; r < n; r++) {
            if (r > 0 && sid[r] != sid[r - 1])
                prev = n;
            sql_val_t *v = &x->rows[r].v[c];
            if (v->type != SQL_NULL) {
                prev = r;
                continue;
            }
            if (prev == n)
                continue;
            const sql_val_t *pv = &x->rows[prev].v[c];
            if (!interp) {
                *v = *pv;
                continue;
            }
            double d0, d1;
            size_t nx = next[r];
            if (nx == n || as_double(pv, &d0) || as_double(&x->rows[nx].v[c], &d1))
                continue;
            double f = (double)(bt[r] - bt[prev]) / (double)(bt[nx] - bt[prev]);
            *v = (sql_val_t){.type = SQL_FLOAT, .u.f = d0 + (d1 - d0) * f};
        }
        /* ORDER BY keys that are this item (ordinal, alias or the same expression) */
        for (size_t i = 0; i < x->s->norder; i++) {
            const sql_expr_t *o = x->s->order[i];
            int same =
                o == e ||
                (o->kind == E_LIT && o->lit.type == SQL_INT && o->lit.u.i == (int64_t)c + 1) ||
                (o->kind == E_COL && o->col < 0 && x->s->items[-o->col - 1] == e);
            for (size_t r = 0; same && r < n; r++)
                x->rows[r].v[x->nout + i] = x->rows[r].v[c];
        }
    }
    free(next);
    return 0;
}

static int cmp_rows(const void *pa, const void *pb, void *arg)
{
    const sql_exec_t *sort_x = arg;
    const outrow_t *a = pa, *b = pb;
    const sql_stmt_t *s = sort_x->s;
    for (size_t i = 0; i < s->norder; i++) {
        const sql_val_t *va = &a->v[sort_x->nout + i], *vb = &b->v[sort_x->nout + i];
        int c = sql_val_compare(va, vb);
        if (s->desc[i]) {
            c = -c;
            /* PostgreSQL: NULLs first in DESC: the negation does it */
        }
        if (c)
            return c;
    }
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int build_result(sql_exec_t *x, sql_result_t **out)
{
    sql_result_t *r = sql_result_create();
    if (!r)
        return ST_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < x->nout && !rc; i++)
        rc = sql_result_col(r, x->outnames[i], etype(x, x->out[i]));
    size_t from = (size_t)x->s->offset, to = x->nrows;
    if (from > to)
        from = to;
    if (x->s->limit >= 0 && from + (size_t)x->s->limit < to)
        to = from + (size_t)x->s->limit;
    if (to > from) { /* the row pointers sized once */
        sql_val_t **nr = realloc(r->rows, (to - from) * sizeof *nr);
        if (nr) {
            r->rows = nr;
            r->cap = to - from;
        }
    }
    /* rows in the arena are the result's own: adopted, with the arena */
    int adopt = !rows_malloced(x) && r->cap >= to - from;
    for (size_t i = from; i < to && !rc; i++) {
        if (!adopt) {
            rc = result_copy(r, x->rows[i].v, 1);
        } else if (!(rc = result_fix(r, x->rows[i].v, 1))) {
            r->rows[r->nrows++] = x->rows[i].v;
        }
    }
    if (adopt && !rc) { /* the groups' accumulators (in the arena) done with first */
        for (size_t i = 0; i < x->ng; i++)
            for (size_t k = 0; k < x->nagg; k++)
                free(x->g[i].acc[k].vals);
        x->ng = 0;
        sql_arena_move(&r->mem, &x->mem);
    }
    if (rc) {
        sql_result_free(r);
        snprintf(x->err, sizeof x->err, "out of memory");
        return rc;
    }
    *out = r;
    return 0;
}

int sql_exec_finish(sql_exec_t *x, sql_result_t **out, char *err, size_t errlen)
{
    sql_stmt_t *s = x->s;
    int rc = setup(x);
    if (rc)
        goto fail;
    for (size_t i = 0; i < x->nout && !rc; i++)
        rc = resolve(x, x->out[i], 0, 0, 1);
    if (!rc && s->where)
        rc = resolve(x, s->where, 0, 0, 0);
    for (size_t i = 0; i < s->ngroup && !rc; i++)
        rc = resolve(x, s->group[i], 1, 0, 0);
    if (!rc && s->having)
        rc = resolve(x, s->having, 1, 0, 1);
    for (size_t i = 0; i < s->norder && !rc; i++)
        rc = resolve(x, s->order[i], 1, 0, 1);
    if (rc)
        goto fail;
    if (s->distinct) {
        snprintf(x->err, sizeof x->err, "SELECT DISTINCT is not supported; use GROUP BY");
        rc = ST_EINVAL;
        goto fail;
    }
    x->aggfn = malloc(x->nagg ? x->nagg : 1);
    if (!x->aggfn) {
        rc = ST_ENOMEM;
        goto fail;
    }
    for (size_t k = 0; k < x->nagg; k++)
        x->aggfn[k] = aggfn_of(x->aggs[k]);
    x->grouped = s->ngroup > 0 || x->nagg > 0;
    /* GROUP BY ordinal / alias: group by that item */
    for (size_t i = 0; i < s->ngroup; i++) {
        sql_expr_t *g = s->group[i];
        if (g->kind == E_LIT && g->lit.type == SQL_INT && g->lit.u.i >= 1 &&
            (size_t)g->lit.u.i <= s->nitems)
            s->group[i] = s->items[g->lit.u.i - 1];
    }
    if (!x->src && !s->table[0]) { /* SELECT without FROM: one row */
        sql_val_t none = {.type = SQL_NULL};
        rc = row_in(x, &none);
    }
    for (size_t i = 0; x->src && i < x->src->nrows && !rc; i++)
        rc = row_in(x, x->src->rows[i]);
    if (rc)
        goto fail;
    if (!x->src && x->p && x->p->needs_data) {
        const sql_expr_t *gf = NULL;
        if (x->o.rows_are_groups && x->grouped && s->ngroup > 0 && !s->where &&
            gapfill_key(x, &gf) < 0) {
            x->dacc = calloc(x->nagg ? x->nagg : 1, sizeof *x->dacc);
            x->daggv = calloc(x->nagg ? x->nagg : 1, sizeof *x->daggv);
            if (!x->dacc || !x->daggv) {
                rc = ST_ENOMEM;
                goto fail;
            }
            if (!rows_malloced(x) && x->o.groups_hint && x->o.groups_hint < ((size_t)1 << 24)) {
                outrow_t *nr = realloc(x->rows, x->o.groups_hint * sizeof *nr);
                if (!nr) {
                    rc = ST_ENOMEM;
                    goto fail;
                }
                x->rows = nr;
                x->rcap = x->o.groups_hint;
            }
        } else if (x->grouped && x->o.groups_hint &&
                   (rc = groups_reserve(x, x->o.groups_hint < ((size_t)1 << 24)
                                               ? x->o.groups_hint
                                               : ((size_t)1 << 24))))
            goto fail;
        if (x->nser > 1)
            qsort(x->ser, x->nser, sizeof *x->ser, cmp_ser);
        sql_val_t *row = malloc(x->ncols * sizeof *row);
        size_t *cur = NULL, curcap = 0;
        if (!row) {
            rc = ST_ENOMEM;
            goto fail;
        }
        int stop = 0;
        uint64_t early = !x->grouped && !s->norder && s->limit >= 0
                             ? (uint64_t)s->limit + (uint64_t)s->offset
                             : UINT64_MAX;
        for (size_t a = 0; a < x->nser && !rc && !stop;) {
            size_t b = a + 1;
            while (b < x->nser && !cmp_tagset(&x->ser[a], &x->ser[b]))
                b++;
            if (curcap < b - a) {
                size_t *nc = realloc(cur, (b - a) * sizeof *nc);
                if (!nc) {
                    rc = ST_ENOMEM;
                    break;
                }
                cur = nc;
                curcap = b - a;
            }
            /* tags of this set */
            for (size_t c = 0; c < x->ncols; c++)
                row[c].type = SQL_NULL;
            const xser_t *se = &x->ser[a];
            for (size_t k = 0; k < se->nl; k++) {
                if (!strcmp(se->l[k].name, ST_METRIC_LABEL))
                    continue;
                int c = find_col(x, se->l[k].name);
                row[c].type = SQL_TEXT;
                row[c].u.t.s = se->l[k].value;
                row[c].u.t.len = se->l[k].value_len;
            }
            if (b > a)
                memset(cur, 0, (b - a) * sizeof *cur);
            for (;;) {
                int64_t t = INT64_MAX;
                for (size_t k = a; k < b; k++)
                    if (cur[k - a] < x->ser[k].n && x->ser[k].ts[cur[k - a]] < t)
                        t = x->ser[k].ts[cur[k - a]];
                if (t == INT64_MAX)
                    break;
                row[0].type = SQL_TIME;
                row[0].u.i = t;
                for (size_t c = 1 + x->ntags; c < x->ncols; c++)
                    row[c].type = SQL_NULL;
                for (size_t k = a; k < b; k++) {
                    xser_t *q = &x->ser[k];
                    if (cur[k - a] < q->n && q->ts[cur[k - a]] == t) {
                        if (q->field > 0) {
                            row[q->field].type = SQL_FLOAT;
                            row[q->field].u.f = q->v[cur[k - a]];
                        }
                        cur[k - a]++;
                    }
                }
                if (x->o.max_rows && ++x->built > x->o.max_rows) {
                    snprintf(x->err, sizeof x->err,
                             "query would build more than %llu rows (query_max_samples)",
                             (unsigned long long)x->o.max_rows);
                    rc = ST_ELIMIT;
                    break;
                }
                if (x->o.deadline_ms && (x->built & 4095) == 0 && st_mono_ms() > x->o.deadline_ms) {
                    snprintf(x->err, sizeof x->err, "query timed out");
                    rc = ST_ETIMEDOUT;
                    break;
                }
                if ((rc = row_in(x, row)))
                    break;
                if (x->nrows >= early) {
                    stop = 1;
                    break;
                }
            }
            a = b;
        }
        free(row);
        free(cur);
        if (rc)
            goto fail;
    }
    if (x->grouped) {
        if (x->ng == 0 && s->ngroup == 0) { /* aggregates over no rows: one row */
            find_group(x, "", 0, &rc);
            if (rc)
                goto fail;
        }
        const sql_expr_t *gfn = NULL;
        int gk = gapfill_key(x, &gfn);
        gfent_t *gorder = NULL;
        size_t *sid = NULL;
        int64_t *bt = NULL;
        if (gk >= 0) {
            x->gapfill = 1;
            if ((rc = gapfill(x, gk, gfn, &gorder)))
                goto fail;
            sid = malloc((x->ng ? x->ng : 1) * sizeof *sid);
            bt = malloc((x->ng ? x->ng : 1) * sizeof *bt);
        }
        sql_val_t *aggv = malloc((x->nagg ? x->nagg : 1) * sizeof *aggv);
        sql_val_t *nullrow = calloc(x->ncols, sizeof *nullrow);
        if (!aggv || !nullrow || (gk >= 0 && (!sid || !bt))) {
            free(aggv);
            free(nullrow);
            free(gorder);
            free(sid);
            free(bt);
            rc = ST_ENOMEM;
            goto fail;
        }
        if (!rows_malloced(x) && x->rcap < x->ng) { /* a row per group at most */
            outrow_t *nr = realloc(x->rows, x->ng * sizeof *nr);
            if (nr) {
                x->rows = nr;
                x->rcap = x->ng;
            }
        }
        size_t series = 0;
        for (size_t i = 0; i < x->ng && !rc; i++) {
            group_t *g = &x->g[gorder ? gorder[i].gi : i];
            if (gorder && i > 0 &&
                (gorder[i].sklen != gorder[i - 1].sklen ||
                 memcmp(gorder[i].sk, gorder[i - 1].sk, gorder[i].sklen)))
                series++;
            rc = finish_aggs(x, g, aggv);
            if (rc)
                break;
            for (size_t k = 0; g->filled && k < x->nagg; k++)
                aggv[k].type = SQL_NULL;
            x->x.aggs = aggv;
            x->x.row = g->row ? g->row : nullrow;
            if (s->having) {
                sql_val_t h;
                rc = sql_eval(&x->x, s->having, NULL, &h);
                if (rc)
                    break;
                if (!((h.type == SQL_BOOL || h.type == SQL_INT) && h.u.i))
                    continue;
            }
            size_t before = x->nrows;
            rc = emit(x, NULL);
            if (!rc && gorder && x->nrows > before) {
                sid[before] = series;
                bt[before] = gorder[i].b;
            }
        }
        x->x.aggs = NULL;
        x->x.row = NULL;
        if (!rc && gorder)
            rc = gapfill_columns(x, sid, bt);
        free(aggv);
        free(nullrow);
        free(gorder);
        free(sid);
        free(bt);
        if (rc)
            goto fail;
    }
    if (s->norder && x->nrows > 1) {
        qsort_r(x->rows, x->nrows, sizeof *x->rows, cmp_rows, x);
    }
    rc = build_result(x, out);
    if (rc)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "%s", x->err[0] ? x->err : st_strerror(rc));
    return rc;
}

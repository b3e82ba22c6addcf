/*
 * sql_eval — scalar expression evaluation over one row: literals,
 * parameters ($n, text converted on use), columns, arithmetic, comparison
 * with SQL's three-valued logic (NULL propagates; WHERE keeps only true),
 * LIKE/ILIKE, ~ regexes (PCRE2, unanchored as PostgreSQL), IN, BETWEEN,
 * casts and the scalar functions of one table (funcs[]). Aggregate calls
 * read the current group's finished values (x->aggs).
 * Types: int op int stays int (division truncates, by zero is an error),
 * else float; time +- interval is a time, time - time an interval; a text
 * compared with a time is parsed as a timestamp.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sql_exec_int.h"
#include "st_err.h"

#define STRATA_VERSION_TEXT "PostgreSQL 14.0 (Strata SQL)"

static int fail(sql_xctx_t *x, const sql_expr_t *e, const char *fmt, const char *a)
{
    char m[200];
    snprintf(m, sizeof m, fmt, a);
    snprintf(x->err, x->errlen, "error at position %zu: %s", e->pos + 1, m);
    return ST_EINVAL;
}

int sql_expr_has_col(const sql_expr_t *e)
{
    if (e->kind == E_COL || e->kind == E_STAR || e->agg)
        return 1;
    if (e->kind == E_FUNC && sql_is_aggregate(e->name))
        return 1;
    for (size_t i = 0; i < e->nargs; i++)
        if (sql_expr_has_col(e->args[i]))
            return 1;
    return 0;
}

int sql_as_time(const sql_val_t *v, int64_t *t)
{
    switch (v->type) {
    case SQL_TIME:
    case SQL_INT:
        *t = v->u.i;
        return 0;
    case SQL_FLOAT:
        *t = (int64_t)v->u.f;
        return 0;
    case SQL_TEXT:
        return sql_parse_time(v->u.t.s, v->u.t.len, t);
    default:
        return ST_EINVAL;
    }
}

static int as_num(const sql_val_t *v, double *d)
{
    switch (v->type) {
    case SQL_INT:
    case SQL_BOOL:
    case SQL_TIME:
    case SQL_INTERVAL:
        *d = (double)v->u.i;
        return 0;
    case SQL_FLOAT:
        *d = v->u.f;
        return 0;
    case SQL_TEXT: {
        char buf[64], *end;
        if (v->u.t.len == 0 || v->u.t.len >= sizeof buf)
            return ST_EINVAL;
        memcpy(buf, v->u.t.s, v->u.t.len);
        buf[v->u.t.len] = 0;
        *d = strtod(buf, &end);
        return *end ? ST_EINVAL : 0;
    }
    default:
        return ST_EINVAL;
    }
}

static sql_val_t vnull(void)
{
    return (sql_val_t){.type = SQL_NULL};
}

static sql_val_t vbool(int b)
{
    sql_val_t v = {.type = SQL_BOOL};
    v.u.i = b != 0;
    return v;
}

static sql_val_t vfloat(double d)
{
    sql_val_t v = {.type = SQL_FLOAT};
    v.u.f = d;
    return v;
}

static sql_val_t vint(sql_type_t t, int64_t i)
{
    sql_val_t v = {.type = t};
    v.u.i = i;
    return v;
}

static sql_val_t vtext(const char *s, size_t n)
{
    sql_val_t v = {.type = SQL_TEXT};
    v.u.t.s = s;
    v.u.t.len = n;
    return v;
}

static int text_dup(sql_xctx_t *x, const char *s, size_t n, sql_val_t *out)
{
    char *d = sql_strndup(x->mem ? x->mem : x->s, s, n);
    if (!d)
        return ST_ENOMEM;
    *out = vtext(d, n);
    return 0;
}

/* -1, 0, 1; 2 when a NULL is involved; ST_EINVAL-coded 3 when incomparable */
static int compare(const sql_val_t *a, const sql_val_t *b)
{
    if (a->type == SQL_NULL || b->type == SQL_NULL)
        return 2;
    if (a->type == SQL_TEXT && b->type == SQL_TEXT) {
        size_t n = a->u.t.len < b->u.t.len ? a->u.t.len : b->u.t.len;
        int c = memcmp(a->u.t.s, b->u.t.s, n);
        if (c)
            return c < 0 ? -1 : 1;
        return a->u.t.len < b->u.t.len ? -1 : a->u.t.len > b->u.t.len;
    }
    if (a->type == SQL_TIME || b->type == SQL_TIME) {
        int64_t x, y;
        if (sql_as_time(a, &x) || sql_as_time(b, &y))
            return 3;
        return x < y ? -1 : x > y;
    }
    if (a->type == SQL_INT && b->type == SQL_INT)
        return a->u.i < b->u.i ? -1 : a->u.i > b->u.i;
    double x, y;
    if (as_num(a, &x) || as_num(b, &y))
        return 3;
    if (isnan(x) || isnan(y)) /* PostgreSQL: NaN is above every number */
        return isnan(x) ? (isnan(y) ? 0 : 1) : -1;
    return x < y ? -1 : x > y;
}

int sql_val_compare(const sql_val_t *a, const sql_val_t *b)
{
    int c = compare(a, b);
    if (c == 2) /* NULLs last */
        return a->type == SQL_NULL ? (b->type == SQL_NULL ? 0 : 1) : -1;
    return c == 3 ? 0 : c;
}

static int truth(const sql_val_t *v)
{
    if (v->type == SQL_BOOL || v->type == SQL_INT)
        return v->u.i != 0;
    if (v->type == SQL_FLOAT)
        return v->u.f != 0;
    return -1; /* NULL, other */
}

static int regex_match(sql_xctx_t *x, const sql_expr_t *e, const sql_val_t *s, const sql_val_t *re,
                       int ci, int anchored)
{
    int ec;
    PCRE2_SIZE eo;
    uint32_t opts = (ci ? PCRE2_CASELESS : 0) | PCRE2_UTF | (anchored ? PCRE2_DOTALL : 0);
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)re->u.t.s, re->u.t.len, opts, &ec, &eo, NULL);
    if (!code)
        return fail(x, e, "invalid regular expression '%.60s'", re->u.t.s);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    if (!md || !mc) {
        pcre2_match_context_free(mc);
        pcre2_match_data_free(md);
        pcre2_code_free(code);
        return ST_ENOMEM;
    }
    pcre2_set_match_limit(mc, 1000000);
    pcre2_set_depth_limit(mc, 10000);
    int rc = pcre2_match(code, (PCRE2_SPTR)s->u.t.s, s->u.t.len, 0,
                         anchored ? PCRE2_ANCHORED | PCRE2_ENDANCHORED : 0, md, mc);
    pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
    pcre2_code_free(code);
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT)
        return fail(x, e, "regex '%.60s' exceeded its match limit", re->u.t.s);
    return rc >= 0;
}

/* ---- scalar functions: one table ------------------------------------------- */

typedef int (*fn_t)(sql_xctx_t *x, const sql_expr_t *e, sql_val_t *a, size_t n, sql_val_t *out);

static int f_now(sql_xctx_t *x, const sql_expr_t *e, sql_val_t *a, size_t n, sql_val_t *out)
{
    (void)e, (void)a, (void)n;
    *out = vint(SQL_TIME, x->now);
    return 0;
}

static int bucket(sql_xctx_t *x, const sql_expr_t *e, sql_val_t *a, size_t n, int64_t origin,
                  sql_val_t *out)
{
    int64_t iv, t;
    if (a[0].type == SQL_NULL || a[1].type == SQL_NULL) {
        *out = vnull();
        return 0;
    }
    if (a[0].type == SQL_INTERVAL || a[0].type == SQL_INT)
        iv = a[0].u.i;
    else if (a[0].type != SQL_TEXT || sql_parse_interval(a[0].u.t.s, a[0].u.t.len, &iv))
        return fail(x, e, "%s: the first argument must be an interval such as '1 minute'", e->name);
    if (iv <= 0)
        return fail(x, e, "%s: the interval must be positive", e->name);
    if (sql_as_time(&a[1], &t))
        return fail(x, e, "%s: the second argument must be a time", e->name);
    if (n > 2 && sql_as_time(&a[2], &origin))
        return fail(x, e, "%s: the origin must be a time", e->name);
    int64_t d = t - origin;
    int64_t q = d / iv - (d % iv < 0);
    *out = vint(SQL_TIME, origin + q * iv);
    return 0;
}

static int f_time_bucket(sql_xctx_t *x, const sql_expr_t *e, sql_val_t *a, size_t n, sql_val_t *out)
{
    return bucket(x, e, a, n, 0, out);
}

/* time_bucket_gapfill(width, time [, start, finish]): the bucket of
 * time_bucket (origin the epoch); start and finish bound the buckets the
 * executor fills (sql_exec.c), so they must be times. */
static int f_gapfill(sql_xctx_t *x, const sql_expr_t *e, sql_val_t *a, size_t n, sql_val_t *out)
{
    int64_t t;
    for (size_t i = 2; i < n; i++)
        if (a[i].type != SQL_NULL && sql_as_time(&a[i], &t))
            return fail(x, e, "%s: start and finish must be times", e->name);
    return bucket(x, e, a, 2, 0, out);
}

/* locf(v) / interpolate(v): v itself here; the executor fills the NULLs of
 * gap-filled buckets afterwards (sql_exec.c). interpolate is float8. */
static int f_fill(sql_xctx_t *x, const sql_expr_t *e, sql_val_t *a, size_t n, sql_val_t *out)
{
    (void)x, (void)n;
    *out = a[0];
    if (e->name[0] == 'i' && a[0].type == SQL_INT)
        *out = (sql_val_t){.type = SQL_FLOAT, .u.f = (double)a[0].u.i};
    else if (e->name[0] == 'i' && a[0].type != SQL_NULL && a[0].type != SQL_FLOAT)
        return fail(x, e, "%s", "interpolate() needs a number");
    return 0;
}

static int f_date_trunc(sql_xctx_t *x, const sql_expr_t *e, sql_val_t *a, size_t n, sql_val_t *out)
{
    (void)n;
    static const struct {
        const char *u;
        int64_t ms;
    } u[] = {{"millisecond", 1},
             {"second", 1000},
             {"minute", 60000},
             {"hour", 3600000},
             {"day", 86400000}};
    if (a[0].type != SQL_TEXT)
        return fail(x, e, "%s: the first argument must be a unit such as 'minute'", e->name);
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++)
        if (strlen(u[i].u) == a[0].u.t.len && !strncasecmp(u[i].u, a[0].u.t.s, a[0].u.t.len)) {
            sql_val_t b[2] = {vint(SQL_INTERVAL, u[i].ms), a[1]};
            return bucket(x, e, b, 2, 0, out);
        }
    return fail(x, e, "date_trunc: unit '%.20s' not supported (millisecond..day)", a[0].u.t.s);
}

static int f_math(sql_xctx_t *x, const sql_expr_t *e, sql_val_t *a, size_t n, sql_val_t *out)
{
    double d;
    if (a[0].type == SQL_NULL) {
        *out = vnull();
        return 0;
    }
    if (as_num(&a[0], &d))
        return fail(x, e, "%s: a number is needed", e->name);
    const char *f = e->name;
    if (!strcmp(f, "abs") && a[0].type == SQL_INT) {
        *out = vint(SQL_INT, a[0].u.i < 0 ? -a[0].u.i : a[0].u.i);
        return 0;
    }
    if (!strcmp(f, "abs"))
        d = fabs(d);
    else if (!strcmp(f, "round")) {
        double sc = 1;
        if (n > 1) {
            double p;
            if (as_num(&a[1], &p))
                return fail(x, e, "%s: the precision must be a number", f);
            sc = pow(10, p);
        }
        d = round(d * sc) / sc;
    } else if (!strcmp(f, "floor"))
        d = floor(d);
    else if (!strcmp(f, "ceil") || !strcmp(f, "ceiling"))
        d = ceil(d);
    else if (!strcmp(f, "sqrt"))
        d = sqrt(d);
    else if (!strcmp(f, "ln"))
        d = log(d);
    else if (!strcmp(f, "log10") || !strcmp(f, "log"))
        d = log10(d);
    else if (!strcmp(f, "exp"))
        d = exp(d);
    else if (!strcmp(f, "power") || !strcmp(f, "pow")) {
        double p;
        if (n < 2 || as_num(&a[1], &p))
            return fail(x, e, "%s: two numbers are needed", f);
        d = pow(d, p);
    }
    *out = vfloat(d);
    return 0;
}

static int f_case(sql_xctx_t *x, const sql_expr_t *e, sql_val_t *a, size_t n, sql_val_t *out)
{
    (void)n;
    if (a[0].type == SQL_NULL) {
        *out = vnull();
        return 0;
    }
    if (a[0].type != SQL_TEXT)
        return fail(x, e, "%s: text is needed", e->name);
    if (!strcmp(e->name, "length") || !strcmp(e->name, "char_length")) {
        *out = vint(SQL_INT, (int64_t)a[0].u.t.len);
        return 0;
    }
    int rc = text_dup(x, a[0].u.t.s, a[0].u.t.len, out);
    if (rc)
        return rc;
    char *s = (char *)out->u.t.s;
    for (size_t i = 0; i < out->u.t.len; i++)
        s[i] = e->name[0] == 'u' ? (char)toupper((unsigned char)s[i])
                                 : (char)tolower((unsigned char)s[i]);
    return 0;
}

static int f_coalesce(sql_xctx_t *x, const sql_expr_t *e, sql_val_t *a, size_t n, sql_val_t *out)
{
    (void)x, (void)e;
    *out = vnull();
    for (size_t i = 0; i < n; i++)
        if (a[i].type != SQL_NULL) {
            *out = a[i];
            break;
        }
    return 0;
}

static int f_text(sql_xctx_t *x, const sql_expr_t *e, sql_val_t *a, size_t n, sql_val_t *out)
{
    (void)a, (void)n, (void)x;
    const char *v = !strcmp(e->name, "version")            ? STRATA_VERSION_TEXT
                    : !strcmp(e->name, "current_database") ? "strata"
                    : !strcmp(e->name, "current_schema")   ? "public"
                                                           : "strata";
    *out = vtext(v, strlen(v));
    return 0;
}

static int f_to_timestamp(sql_xctx_t *x, const sql_expr_t *e, sql_val_t *a, size_t n,
                          sql_val_t *out)
{
    (void)n;
    double d;
    if (a[0].type == SQL_NULL) {
        *out = vnull();
        return 0;
    }
    if (a[0].type == SQL_TEXT) {
        int64_t t;
        if (sql_parse_time(a[0].u.t.s, a[0].u.t.len, &t))
            return fail(x, e, "to_timestamp: cannot parse '%.40s'", a[0].u.t.s);
        *out = vint(SQL_TIME, t);
        return 0;
    }
    if (as_num(&a[0], &d))
        return fail(x, e, "%s: seconds since the epoch are needed", e->name);
    *out = vint(SQL_TIME, (int64_t)llround(d * 1000));
    return 0;
}

static const struct sql_fn {
    const char *name;
    size_t min, max;
    fn_t fn;
} funcs[] = {
    {"now", 0, 0, f_now},
    {"current_timestamp", 0, 0, f_now},
    {"time_bucket", 2, 3, f_time_bucket},
    {"date_bin", 2, 3, f_time_bucket},
    {"time_bucket_gapfill", 2, 4, f_gapfill},
    {"locf", 1, 1, f_fill},
    {"interpolate", 1, 1, f_fill},
    {"date_trunc", 2, 2, f_date_trunc},
    {"to_timestamp", 1, 1, f_to_timestamp},
    {"abs", 1, 1, f_math},
    {"round", 1, 2, f_math},
    {"floor", 1, 1, f_math},
    {"ceil", 1, 1, f_math},
    {"ceiling", 1, 1, f_math},
    {"sqrt", 1, 1, f_math},
    {"ln", 1, 1, f_math},
    {"log", 1, 1, f_math},
    {"log10", 1, 1, f_math},
    {"exp", 1, 1, f_math},
    {"power", 2, 2, f_math},
    {"pow", 2, 2, f_math},
    {"lower", 1, 1, f_case},
    {"upper", 1, 1, f_case},
    {"length", 1, 1, f_case},
    {"char_length", 1, 1, f_case},
    {"coalesce", 1, SQL_MAX_ITEMS, f_coalesce},
    {"version", 0, 0, f_text},
    {"current_database", 0, 0, f_text},
    {"current_schema", 0, 0, f_text},
    {"current_user", 0, 0, f_text},
    {"session_user", 0, 0, f_text},
};

/* The aggregate functions (sql_exec.c computes them). */
static const char *const aggregates[] = {"count",
                                         "sum",
                                         "avg",
                                         "mean",
                                         "min",
                                         "max",
                                         "first",
                                         "last",
                                         "stddev",
                                         "stddev_samp",
                                         "stddev_pop",
                                         "percentile_cont",
                                         "approx_percentile",
                                         "median",
                                         NULL};

int sql_is_aggregate(const char *name)
{
    for (size_t i = 0; aggregates[i]; i++)
        if (!strcmp(aggregates[i], name))
            return 1;
    return 0;
}

int sql_has_aggregate(const sql_expr_t *e)
{
    if (!e)
        return 0;
    if (e->kind == E_FUNC && sql_is_aggregate(e->name))
        return 1;
    for (size_t i = 0; i < e->nargs; i++)
        if (sql_has_aggregate(e->args[i]))
            return 1;
    return 0;
}

int sql_func_known(const char *name)
{
    for (size_t i = 0; i < sizeof funcs / sizeof funcs[0]; i++)
        if (!strcmp(funcs[i].name, name))
            return 1;
    return sql_is_aggregate(name);
}

static int param(sql_xctx_t *x, const sql_expr_t *e, sql_val_t *out)
{
    if ((size_t)e->param > x->nparams)
        return fail(x, e, "there is no parameter $%s", "n");
    const char *p = x->params[e->param - 1];
    *out = p ? vtext(p, strlen(p)) : vnull();
    return 0;
}

static int cast(sql_xctx_t *x, const sql_expr_t *e, sql_val_t v, sql_val_t *out)
{
    const char *t = e->name;
    if (v.type == SQL_NULL) {
        *out = v;
        return 0;
    }
    double d;
    if (!strcmp(t, "text") || !strcmp(t, "varchar") || !strcmp(t, "regclass") ||
        !strcmp(t, "name") || !strcmp(t, "char")) {
        if (v.type == SQL_TEXT) {
            *out = v;
            return 0;
        }
        st_buf_t b;
        st_buf_init(&b);
        int rc = sql_val_text(&b, &v);
        if (!rc)
            rc = text_dup(x, b.data ? (char *)b.data : "", b.len, out);
        st_buf_deinit(&b);
        return rc;
    }
    if (!strcmp(t, "float8") || !strcmp(t, "double") || !strcmp(t, "float") || !strcmp(t, "real") ||
        !strcmp(t, "numeric") || !strcmp(t, "float4") || !strcmp(t, "decimal")) {
        if (as_num(&v, &d))
            return fail(x, e, "cannot cast to %s", t);
        *out = vfloat(d);
        return 0;
    }
    if (!strcmp(t, "int") || !strcmp(t, "int8") || !strcmp(t, "bigint") || !strcmp(t, "integer") ||
        !strcmp(t, "int4") || !strcmp(t, "smallint") || !strcmp(t, "oid")) {
        if (as_num(&v, &d) || !(d >= -9.2e18 && d <= 9.2e18))
            return fail(x, e, "cannot cast to %s", t);
        *out = vint(SQL_INT, (int64_t)llround(d));
        return 0;
    }
    if (!strcmp(t, "timestamptz") || !strcmp(t, "timestamp") || !strcmp(t, "date")) {
        int64_t ms;
        if (sql_as_time(&v, &ms))
            return fail(x, e, "cannot cast to %s", t);
        *out = vint(SQL_TIME, ms);
        return 0;
    }
    if (!strcmp(t, "interval")) {
        int64_t ms;
        if (v.type == SQL_INTERVAL)
            ms = v.u.i;
        else if (v.type != SQL_TEXT || sql_parse_interval(v.u.t.s, v.u.t.len, &ms))
            return fail(x, e, "cannot cast to %s", t);
        *out = vint(SQL_INTERVAL, ms);
        return 0;
    }
    if (!strcmp(t, "bool") || !strcmp(t, "boolean")) {
        int b = truth(&v);
        if (v.type == SQL_TEXT)
            b = v.u.t.len && strchr("tTyY1", v.u.t.s[0]);
        *out = vbool(b > 0);
        return 0;
    }
    return fail(x, e, "type \"%s\" is not supported", t);
}

static int arith(sql_xctx_t *x, const sql_expr_t *e, const sql_val_t *a, const sql_val_t *b,
                 sql_val_t *out)
{
    int op = e->op;
    if (a->type == SQL_NULL || b->type == SQL_NULL) {
        *out = vnull();
        return 0;
    }
    if (op == OP_CONCAT) {
        st_buf_t buf;
        st_buf_init(&buf);
        int rc = sql_val_text(&buf, a);
        if (!rc)
            rc = sql_val_text(&buf, b);
        if (!rc)
            rc = text_dup(x, buf.data ? (char *)buf.data : "", buf.len, out);
        st_buf_deinit(&buf);
        return rc;
    }
    /* time arithmetic */
    if (a->type == SQL_TIME && b->type == SQL_INTERVAL && (op == OP_ADD || op == OP_SUB)) {
        *out = vint(SQL_TIME, op == OP_ADD ? a->u.i + b->u.i : a->u.i - b->u.i);
        return 0;
    }
    if (a->type == SQL_INTERVAL && b->type == SQL_TIME && op == OP_ADD) {
        *out = vint(SQL_TIME, a->u.i + b->u.i);
        return 0;
    }
    if (a->type == SQL_TIME && b->type == SQL_TIME && op == OP_SUB) {
        *out = vint(SQL_INTERVAL, a->u.i - b->u.i);
        return 0;
    }
    if (a->type == SQL_INTERVAL && b->type == SQL_INTERVAL && (op == OP_ADD || op == OP_SUB)) {
        *out = vint(SQL_INTERVAL, op == OP_ADD ? a->u.i + b->u.i : a->u.i - b->u.i);
        return 0;
    }
    if (a->type == SQL_INT && b->type == SQL_INT) {
        int64_t p = a->u.i, q = b->u.i, r;
        switch (op) {
        case OP_ADD:
            if (__builtin_add_overflow(p, q, &r))
                return fail(x, e, "%s", "bigint out of range");
            break;
        case OP_SUB:
            if (__builtin_sub_overflow(p, q, &r))
                return fail(x, e, "%s", "bigint out of range");
            break;
        case OP_MUL:
            if (__builtin_mul_overflow(p, q, &r))
                return fail(x, e, "%s", "bigint out of range");
            break;
        default:
            if (q == 0)
                return fail(x, e, "%s", "division by zero");
            if (p == INT64_MIN && q == -1)
                return fail(x, e, "%s", "bigint out of range");
            r = op == OP_DIV ? p / q : p % q;
        }
        *out = vint(SQL_INT, r);
        return 0;
    }
    double p, q;
    if (as_num(a, &p) || as_num(b, &q) || a->type == SQL_TIME || b->type == SQL_TIME)
        return fail(x, e, "%s", "operator does not apply to these types");
    double r = op == OP_ADD   ? p + q
               : op == OP_SUB ? p - q
               : op == OP_MUL ? p * q
               : op == OP_DIV ? p / q
                              : fmod(p, q);
    if ((op == OP_DIV || op == OP_MOD) && q == 0)
        return fail(x, e, "%s", "division by zero");
    *out = vfloat(r);
    return 0;
}

int sql_eval(sql_xctx_t *x, const sql_expr_t *e, const sql_val_t *row, sql_val_t *out)
{
    sql_val_t a, b, c;
    int rc;
    if (e->agg) {
        if (!x->aggs)
            return fail(x, e, "aggregate %s() is not allowed here", e->name);
        *out = x->aggs[e->agg - 1];
        return 0;
    }
    switch (e->kind) {
    case E_LIT:
        *out = e->lit;
        return 0;
    case E_PARAM:
        return param(x, e, out);
    case E_COL:
        if (e->col < 0)
            return sql_eval(x, x->s->items[-e->col - 1], row, out);
        if (!row && x->row)
            row = x->row;
        if (!row)
            return fail(x, e, "column \"%s\" is not allowed here", e->name);
        *out = e->col ? row[e->col - 1] : vnull();
        return 0;
    case E_STAR:
        *out = vint(SQL_INT, 1);
        return 0;
    case E_NEG:
        if ((rc = sql_eval(x, e->args[0], row, &a)))
            return rc;
        if (a.type == SQL_NULL)
            *out = a;
        else if (a.type == SQL_INT || a.type == SQL_INTERVAL)
            *out = vint(a.type, -a.u.i);
        else if (a.type == SQL_FLOAT)
            *out = vfloat(-a.u.f);
        else if (!as_num(&a, &a.u.f))
            *out = vfloat(-a.u.f);
        else
            return fail(x, e, "%s", "unary minus needs a number");
        return 0;
    case E_NOT:
        if ((rc = sql_eval(x, e->args[0], row, &a)))
            return rc;
        *out = truth(&a) < 0 ? vnull() : vbool(!truth(&a));
        return 0;
    case E_ISNULL:
        if ((rc = sql_eval(x, e->args[0], row, &a)))
            return rc;
        *out = vbool((a.type == SQL_NULL) != e->inv);
        return 0;
    case E_CAST:
        if ((rc = sql_eval(x, e->args[0], row, &a)))
            return rc;
        return cast(x, e, a, out);
    case E_BETWEEN: {
        if ((rc = sql_eval(x, e->args[0], row, &a)) || (rc = sql_eval(x, e->args[1], row, &b)) ||
            (rc = sql_eval(x, e->args[2], row, &c)))
            return rc;
        int lo = compare(&a, &b), hi = compare(&a, &c);
        if (lo == 3 || hi == 3)
            return fail(x, e, "%s", "BETWEEN compares values of different types");
        if (lo == 2 || hi == 2)
            *out = vnull();
        else
            *out = vbool((lo >= 0 && hi <= 0) != e->inv);
        return 0;
    }
    case E_IN: {
        if ((rc = sql_eval(x, e->args[0], row, &a)))
            return rc;
        if (a.type == SQL_NULL) {
            *out = vnull();
            return 0;
        }
        int found = 0, null = 0;
        for (size_t i = 1; i < e->nargs && !found; i++) {
            if ((rc = sql_eval(x, e->args[i], row, &b)))
                return rc;
            int cmp = compare(&a, &b);
            if (cmp == 2)
                null = 1;
            else if (cmp == 0)
                found = 1;
        }
        *out = found ? vbool(!e->inv) : null ? vnull() : vbool(e->inv);
        return 0;
    }
    case E_LIKE: {
        if ((rc = sql_eval(x, e->args[0], row, &a)) || (rc = sql_eval(x, e->args[1], row, &b)))
            return rc;
        if (a.type == SQL_NULL || b.type == SQL_NULL) {
            *out = vnull();
            return 0;
        }
        if (a.type != SQL_TEXT || b.type != SQL_TEXT)
            return fail(x, e, "%s", "LIKE needs text");
        st_buf_t re;
        st_buf_init(&re);
        sql_like_regex(&re, b.u.t.s, b.u.t.len, 0);
        if (!re.data && b.u.t.len) {
            st_buf_deinit(&re);
            return ST_ENOMEM;
        }
        sql_val_t r = vtext(re.data ? (char *)re.data : "", re.len);
        rc = regex_match(x, e, &a, &r, e->op, 1);
        st_buf_deinit(&re);
        if (rc < 0)
            return rc;
        *out = vbool(rc != e->inv);
        return 0;
    }
    case E_BIN:
        break;
    case E_FUNC: {
        /* the table is searched once per call site: the index is kept in
         * the expression (the same answer whichever thread writes it) */
        if (!e->fn)
            for (size_t i = 0; i < sizeof funcs / sizeof funcs[0]; i++)
                if (!strcmp(funcs[i].name, e->name)) {
                    ((sql_expr_t *)e)->fn = (int)i + 1;
                    break;
                }
        if (!e->fn)
            return fail(x, e, "function %s() does not exist", e->name);
        const struct sql_fn *f = &funcs[e->fn - 1];
        if (e->nargs < f->min || e->nargs > f->max)
            return fail(x, e, "wrong number of arguments to %s()", e->name);
        sql_val_t av[SQL_MAX_ITEMS];
        for (size_t i = 0; i < e->nargs; i++)
            if ((rc = sql_eval(x, e->args[i], row, &av[i])))
                return rc;
        return f->fn(x, e, av, e->nargs, out);
    }
    }
    /* binary */
    if (e->op == OP_AND || e->op == OP_OR) {
        if ((rc = sql_eval(x, e->args[0], row, &a)))
            return rc;
        int l = truth(&a);
        if (e->op == OP_AND && l == 0) {
            *out = vbool(0);
            return 0;
        }
        if (e->op == OP_OR && l == 1) {
            *out = vbool(1);
            return 0;
        }
        if ((rc = sql_eval(x, e->args[1], row, &b)))
            return rc;
        int r = truth(&b);
        if (e->op == OP_AND)
            *out = r == 0 ? vbool(0) : (l < 0 || r < 0) ? vnull() : vbool(1);
        else
            *out = r == 1 ? vbool(1) : (l < 0 || r < 0) ? vnull() : vbool(0);
        return 0;
    }
    if ((rc = sql_eval(x, e->args[0], row, &a)) || (rc = sql_eval(x, e->args[1], row, &b)))
        return rc;
    if (e->op >= OP_RE) {
        if (a.type == SQL_NULL || b.type == SQL_NULL) {
            *out = vnull();
            return 0;
        }
        if (a.type != SQL_TEXT || b.type != SQL_TEXT)
            return fail(x, e, "%s", "a regex match needs text");
        rc = regex_match(x, e, &a, &b, e->op == OP_REI || e->op == OP_NREI, 0);
        if (rc < 0)
            return rc;
        *out = vbool(rc != (e->op == OP_NRE || e->op == OP_NREI));
        return 0;
    }
    if (e->op >= OP_EQ && e->op <= OP_GE) {
        int cmp = compare(&a, &b);
        if (cmp == 3)
            return fail(x, e, "%s", "cannot compare values of different types");
        if (cmp == 2) {
            *out = vnull();
            return 0;
        }
        int r = e->op == OP_EQ   ? cmp == 0
                : e->op == OP_NE ? cmp != 0
                : e->op == OP_LT ? cmp < 0
                : e->op == OP_LE ? cmp <= 0
                : e->op == OP_GT ? cmp > 0
                                 : cmp >= 0;
        *out = vbool(r);
        return 0;
    }
    return arith(x, e, &a, &b, out);
}

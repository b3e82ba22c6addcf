/*
 * sql_plan — what a SELECT must read: the time range [start, end) from the
 * WHERE conjuncts on `time`, label matchers from the conjuncts that compare
 * a column with string literals (=, !=, IN, LIKE, ~), and the fields: the
 * names used as values (not grouped by, not compared with strings). The
 * plan only narrows what is read: sql_exec evaluates the whole WHERE on
 * every row again, so a matcher or a bound here must select a superset of
 * the rows WHERE keeps.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql_exec_int.h"
#include "st_err.h"

static int is_time_col(const sql_expr_t *e)
{
    return e->kind == E_COL && !strcmp(e->name, "time");
}

static int is_str_const(sql_xctx_t *x, const sql_expr_t *e, sql_val_t *v)
{
    if (e->kind != E_LIT && e->kind != E_PARAM)
        return 0;
    if (sql_eval(x, e, NULL, v))
        return 0;
    return v->type == SQL_TEXT;
}

/* The value of a constant expression (no columns), as a time. */
static int const_time(sql_xctx_t *x, const sql_expr_t *e, int64_t *t)
{
    if (sql_expr_has_col(e))
        return 0;
    sql_val_t v;
    if (sql_eval(x, e, NULL, &v))
        return 0;
    return sql_as_time(&v, t) == 0;
}

static int add_matcher(sql_plan_t *p, sql_stmt_t *s, st_match_type_t t, const char *name,
                       const char *val, size_t vlen)
{
    if (p->nm == SQL_MAX_ITEMS)
        return 0;
    char *v = sql_strndup(s, val, vlen);
    if (!v)
        return ST_ENOMEM;
    p->m[p->nm++] = (st_matcher_t){t, name, v};
    return 0;
}

static int conjunct1(sql_xctx_t *x, sql_plan_t *p, const sql_expr_t *e, int *exact);

/* A conjunct: narrows the read; *exact stays 1 when the read applies it
 * exactly (time bounds, tag = or IN with non-empty strings). */
static int conjunct(sql_xctx_t *x, sql_plan_t *p, const sql_expr_t *e)
{
    if (e->kind == E_BIN && e->op == OP_AND) {
        int rc = conjunct(x, p, e->args[0]);
        return rc ? rc : conjunct(x, p, e->args[1]);
    }
    int exact = 0;
    int rc = conjunct1(x, p, e, &exact);
    if (!exact)
        p->exact = 0;
    return rc;
}

static int conjunct1(sql_xctx_t *x, sql_plan_t *p, const sql_expr_t *e, int *exact)
{
    sql_stmt_t *s = x->s;
    int64_t t;
    if (e->kind == E_BETWEEN && !e->inv && is_time_col(e->args[0])) {
        int64_t lo, hi;
        if (const_time(x, e->args[1], &lo) && const_time(x, e->args[2], &hi)) {
            if (lo > p->start)
                p->start = lo;
            if (hi + 1 < p->end)
                p->end = hi + 1;
            *exact = 1;
        }
        return 0;
    }
    if (e->kind == E_BIN && e->op >= OP_EQ && e->op <= OP_GE) {
        const sql_expr_t *l = e->args[0], *r = e->args[1];
        int op = e->op;
        if (!is_time_col(l) && is_time_col(r)) { /* X < time  ->  time > X */
            const sql_expr_t *tmp = l;
            l = r, r = tmp;
            op = op == OP_LT   ? OP_GT
                 : op == OP_LE ? OP_GE
                 : op == OP_GT ? OP_LT
                 : op == OP_GE ? OP_LE
                               : op;
        }
        if (is_time_col(l) && const_time(x, r, &t)) {
            if ((op == OP_GE || op == OP_EQ) && t > p->start)
                p->start = t;
            if (op == OP_GT && t + 1 > p->start)
                p->start = t + 1;
            if ((op == OP_LE || op == OP_EQ) && t + 1 < p->end)
                p->end = t + 1;
            if (op == OP_LT && t < p->end)
                p->end = t;
            *exact = op != OP_NE;
            return 0;
        }
        sql_val_t v;
        if (l->kind == E_COL && !is_time_col(l) && (op == OP_EQ || op == OP_NE) &&
            is_str_const(x, r, &v) && v.u.t.len > 0 && (*exact = op == OP_EQ, 1))
            return add_matcher(p, s, op == OP_EQ ? ST_MATCH_EQ : ST_MATCH_NE, l->name, v.u.t.s,
                               v.u.t.len);
        return 0;
    }
    if (e->kind == E_BIN && (e->op == OP_RE || e->op == OP_REI) && e->args[0]->kind == E_COL &&
        !is_time_col(e->args[0])) {
        sql_val_t v;
        if (!is_str_const(x, e->args[1], &v))
            return 0;
        st_buf_t b;
        st_buf_init(&b);
        if (e->op == OP_REI)
            ST_BUF_LIT(&b, "(?i)");
        ST_BUF_LIT(&b, ".*(?:");
        st_buf_append(&b, v.u.t.s, v.u.t.len);
        ST_BUF_LIT(&b, ").*");
        int rc = b.data ? add_matcher(p, s, ST_MATCH_RE, e->args[0]->name, (char *)b.data, b.len)
                        : ST_ENOMEM;
        st_buf_deinit(&b);
        return rc;
    }
    if (e->kind == E_IN && !e->inv && e->args[0]->kind == E_COL && !is_time_col(e->args[0])) {
        st_buf_t b;
        st_buf_init(&b);
        for (size_t i = 1; i < e->nargs; i++) {
            sql_val_t v;
            if (!is_str_const(x, e->args[i], &v) || !v.u.t.len) {
                st_buf_deinit(&b);
                return 0;
            }
            if (i > 1)
                st_buf_put_u8(&b, '|');
            sql_re_escape(&b, v.u.t.s, v.u.t.len);
        }
        *exact = 1;
        int rc = b.data ? add_matcher(p, s, ST_MATCH_RE, e->args[0]->name, (char *)b.data, b.len)
                        : ST_ENOMEM;
        st_buf_deinit(&b);
        return rc;
    }
    if (e->kind == E_LIKE && !e->inv && e->args[0]->kind == E_COL && !is_time_col(e->args[0])) {
        sql_val_t v;
        if (!is_str_const(x, e->args[1], &v) || !v.u.t.len || !strcmp(v.u.t.s, "%"))
            return 0;
        st_buf_t b;
        st_buf_init(&b);
        sql_like_regex(&b, v.u.t.s, v.u.t.len, e->op);
        int rc = b.data ? add_matcher(p, s, ST_MATCH_RE, e->args[0]->name, (char *)b.data, b.len)
                        : ST_ENOMEM;
        st_buf_deinit(&b);
        return rc;
    }
    return 0;
}

/* Names a statement compares with strings or groups by: tags. */
static void mark_tags(const sql_expr_t *e, const char **tags, size_t *nt)
{
    if (!e)
        return;
    const sql_expr_t *c = NULL;
    if ((e->kind == E_BIN && e->op >= OP_EQ) || e->kind == E_LIKE || e->kind == E_IN) {
        if (e->args[0]->kind == E_COL && e->nargs > 1 && e->args[1]->kind == E_LIT &&
            e->args[1]->lit.type == SQL_TEXT)
            c = e->args[0];
    }
    if (c && *nt < SQL_MAX_ITEMS)
        tags[(*nt)++] = c->name;
    for (size_t i = 0; i < e->nargs; i++)
        mark_tags(e->args[i], tags, nt);
}

static int listed(const char *const *l, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(l[i], s))
            return 1;
    return 0;
}

static void collect_cols(const sql_expr_t *e, const char **tags, size_t nt, const char **f,
                         size_t *nf, int *star)
{
    if (!e)
        return;
    if (e->kind == E_COL && strcmp(e->name, "time") && !listed(tags, nt, e->name) &&
        !listed(f, *nf, e->name) && *nf < SQL_MAX_ITEMS)
        f[(*nf)++] = e->name;
    for (size_t i = 0; i < e->nargs; i++)
        collect_cols(e->args[i], tags, nt, f, nf, star);
    collect_cols(e->within, tags, nt, f, nf, star);
}

int sql_plan(sql_stmt_t *s, int64_t now_ms, int64_t default_start, int64_t default_end,
             const char *const *params, size_t nparams, sql_plan_t *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->start = default_start;
    p->end = default_end;
    if (s->kind != SQL_SELECT && s->kind != SQL_DELETE) {
        snprintf(err, errlen, "not a SELECT");
        return ST_EINVAL;
    }
    p->needs_data = s->table[0] != 0;
    p->exact = 1;
    sql_xctx_t x = {.s = s, .now = now_ms, .params = params, .nparams = nparams};
    if (s->where) {
        int rc = conjunct(&x, p, s->where);
        if (rc) {
            snprintf(err, errlen, "out of memory");
            return rc;
        }
    }
    if (p->end <= p->start)
        p->needs_data = 0;
    const char *tags[SQL_MAX_ITEMS];
    size_t nt = 0;
    mark_tags(s->where, tags, &nt);
    mark_tags(s->having, tags, &nt);
    for (size_t i = 0; i < s->ngroup; i++)
        if (s->group[i]->kind == E_COL && nt < SQL_MAX_ITEMS)
            tags[nt++] = s->group[i]->name;
    const char **f = sql_alloc(s, SQL_MAX_ITEMS * sizeof *f);
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return ST_ENOMEM;
    }
    size_t nf = 0;
    int star = 0;
    for (size_t i = 0; i < s->nitems; i++) {
        if (s->items[i]->kind == E_STAR)
            star = 1;
        collect_cols(s->items[i], tags, nt, f, &nf, &star);
    }
    collect_cols(s->where, tags, nt, f, &nf, &star);
    collect_cols(s->having, tags, nt, f, &nf, &star);
    for (size_t i = 0; i < s->norder; i++)
        collect_cols(s->order[i], tags, nt, f, &nf, &star);
    /* select aliases used in ORDER BY / HAVING are not fields */
    size_t k = 0;
    for (size_t i = 0; i < nf; i++) {
        int alias = 0;
        for (size_t j = 0; j < s->nitems; j++)
            if (s->aliases[j] && !strcmp(s->aliases[j], f[i]))
                alias = 1;
        if (!alias)
            f[k++] = f[i];
    }
    nf = k;
    p->fields = f;
    p->nfields = nf;
    int agg = sql_has_aggregate(s->having);
    for (size_t i = 0; i < s->nitems; i++)
        agg |= sql_has_aggregate(s->items[i]);
    for (size_t i = 0; i < s->nitems; i++)
        if (s->aliases[i] && !strcmp(s->aliases[i], "time"))
            agg = 1; /* "time" is not the column */
    if (s->limit >= 0 && s->norder && !agg && !s->ngroup && !s->distinct &&
        is_time_col(s->order[0])) {
        p->time_order = s->desc[0] ? -1 : 1;
        p->limit = s->limit;
    }
    p->all_fields = star || nf == 0;
    return 0;
}

void sql_plan_free(sql_plan_t *p)
{
    (void)p; /* everything lives in the statement's arena */
}

int sql_plan_selector(const sql_stmt_t *s, const sql_plan_t *p, st_buf_t *out)
{
    ST_BUF_LIT(out, "{__name__=~\"");
    st_buf_t re;
    st_buf_init(&re);
    sql_re_escape(&re, s->table, strlen(s->table));
    if (p->all_fields) {
        st_buf_append(out, re.data, re.len);
        st_buf_put_u8(out, '|');
        st_buf_append(out, re.data, re.len);
        ST_BUF_LIT(out, "_.+");
    } else {
        int first = 1;
        for (size_t i = 0; i < p->nfields; i++) {
            if (!first)
                st_buf_put_u8(out, '|');
            first = 0;
            if (!strcmp(p->fields[i], "value")) {
                st_buf_append(out, re.data, re.len);
                continue;
            }
            st_buf_append(out, re.data, re.len);
            st_buf_put_u8(out, '_');
            sql_re_escape(out, p->fields[i], strlen(p->fields[i]));
        }
    }
    st_buf_deinit(&re);
    ST_BUF_LIT(out, "\"");
    for (size_t i = 0; i < p->nm; i++) {
        static const char *const ops[] = {"=", "!=", "=~", "!~"};
        st_buf_put_u8(out, ',');
        st_buf_append(out, p->m[i].name, strlen(p->m[i].name));
        st_buf_append(out, ops[p->m[i].type], strlen(ops[p->m[i].type]));
        st_buf_put_u8(out, '"');
        for (const char *c = p->m[i].value; *c; c++) {
            if (*c == '"' || *c == '\\')
                st_buf_put_u8(out, '\\');
            if (*c == '\n')
                ST_BUF_LIT(out, "\\n");
            else
                st_buf_put_u8(out, (uint8_t)*c);
        }
        st_buf_put_u8(out, '"');
    }
    st_buf_put_u8(out, '}');
    return out->data ? 0 : ST_ENOMEM;
}

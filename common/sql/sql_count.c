/*
 * sql_count — count(*) from rows per tag set instead of rows built from
 * samples (docs/sql.md, "How a SELECT runs").
 *
 * A row is one (tag set, timestamp); a tag set's rows are the union of
 * its fields' timestamp sets. The router gets, per tag set, either the
 * count its field series agree on (their timestamp fingerprints are
 * equal: common/cluster/rowstats.h) or, for a tag set whose fields
 * differ, its samples, read raw over a selection narrowed to such tag
 * sets (sql_count_narrow). sql_push.c rewrites count(*) into
 * sum(<rows field>)::bigint and the router feeds one synthetic row per
 * tag set (sql_count_feed), so GROUP BY tags, HAVING, ORDER BY and LIMIT
 * run unchanged on those rows. Only statements that name no field take
 * this way (a statement naming fields reads only them, and so counts only
 * the rows those fields have); a GROUP BY key that turns out to be a field
 * sends the statement back to the rows (sql_count_groups_field).
 */
#include <stdlib.h>
#include <string.h>

#include "sql_exec_int.h"
#include "st_err.h"

#define NARROW_MATCHERS 32 /* The field of table t a metric name is, or NULL. */
static const char *field_of(const char *t, size_t tl, const char *m)
{
    if (strncmp(m, t, tl))
        return NULL;
    if (!m[tl])
        return "value";
    return m[tl] == '_' && m[tl + 1] ? m + tl + 1 : NULL;
}

int sql_count_groups_field(const sql_stmt_t *s, const char *const *metrics, size_t n)
{
    size_t tl = strlen(s->table);
    for (size_t g = 0; g < s->ngroup; g++) {
        const sql_expr_t *e = sql_group_expr(s, s->group[g]);
        if (e->kind != E_COL)
            continue;
        for (size_t i = 0; i < n; i++) {
            const char *f = field_of(s->table, tl, metrics[i]);
            if (f && !strcmp(f, e->name))
                return 1;
        }
    }
    return 0;
}

typedef struct sval {
    const char *s;
    size_t len;
} sval_t;

static int cmp_sval(const void *pa, const void *pb)
{
    const sval_t *a = pa, *b = pb;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, n);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* The regex of label `name`'s values over the sets into re ("" when a set
 * lacks it); vals: room for n values. */
static int name_regex(st_buf_t *re, const char *name, const st_label_t *const *sets,
                      const size_t *nls, size_t n, sval_t *vals)
{
    size_t nv = 0;
    for (size_t i = 0; i < n; i++) {
        int k = st_labels_find(sets[i], nls[i], name);
        vals[nv++] = k < 0 ? (sval_t){"", 0} : (sval_t){sets[i][k].value, sets[i][k].value_len};
    }
    qsort(vals, nv, sizeof *vals, cmp_sval);
    for (size_t i = 0; i < nv; i++) {
        if (i && !cmp_sval(&vals[i], &vals[i - 1]))
            continue;
        if (i)
            st_buf_put_u8(re, '|');
        sql_re_escape(re, vals[i].s, vals[i].len);
    }
    return re->len > SQL_COUNT_NARROW_MAX ? ST_ELIMIT : 0;
}

int sql_count_narrow(sql_stmt_t *s, sql_plan_t *p, const st_label_t *const *sets, const size_t *nls,
                     size_t n)
{
    const char *names[NARROW_MATCHERS];
    size_t nn = 0, bytes = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < nls[i]; k++) {
            size_t j = 0;
            while (j < nn && strcmp(names[j], sets[i][k].name))
                j++;
            if (j < nn)
                continue;
            if (nn == NARROW_MATCHERS || p->nm + nn >= SQL_MAX_ITEMS)
                return 0;
            names[nn++] = sets[i][k].name;
        }
    sval_t *vals = malloc((n ? n : 1) * sizeof *vals);
    const char *res[NARROW_MATCHERS];
    if (!vals)
        return ST_ENOMEM;
    int rc = 0;
    for (size_t j = 0; j < nn && !rc; j++) {
        st_buf_t re;
        st_buf_init(&re);
        rc = name_regex(&re, names[j], sets, nls, n, vals);
        if (!rc && !(res[j] = sql_strndup(s, re.data ? (char *)re.data : "", re.len)))
            rc = ST_ENOMEM;
        bytes += re.len;
        st_buf_deinit(&re);
        if (!rc && bytes > SQL_COUNT_NARROW_MAX)
            rc = ST_ELIMIT;
    }
    free(vals);
    if (rc)
        return rc == ST_ELIMIT ? 0 : rc;
    for (size_t j = 0; j < nn; j++) {
        char *name = sql_strndup(s, names[j], strlen(names[j]));
        if (!name)
            return ST_ENOMEM;
        p->m[p->nm++] = (st_matcher_t){ST_MATCH_RE, name, res[j]};
    }
    return 1;
}

int sql_count_feed(sql_exec_t *x, const sql_stmt_t *s, const char *rows_metric, st_label_t *lab,
                   const st_label_t *l, size_t nl, const int64_t *at, const double *v)
{
    if (*v == 0 && s->ngroup)
        return 0;
    if (nl)
        memcpy(lab, l, nl * sizeof *lab);
    lab[nl] = (st_label_t){ST_METRIC_LABEL, rows_metric, 8, (uint32_t)strlen(rows_metric)};
    return sql_exec_series(x, lab, nl + 1, at, v, 1);
}

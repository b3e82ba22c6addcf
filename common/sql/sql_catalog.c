/*
 * sql_catalog — the tables about tables: SHOW TABLES, SHOW COLUMNS,
 * information_schema.tables/columns and the pg_catalog answers psql's \dt
 * and \d need, built from the cluster's metric names and label names
 * (the router fetches those); and INSERT's rows turned into samples.
 * A catalog table is a result that sql_exec can then filter, sort and
 * project like any other (sql_exec_table).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql_exec_int.h"
#include "st_err.h"

static sql_val_t txt(const char *s)
{
    sql_val_t v = {.type = SQL_TEXT};
    v.u.t.s = s;
    v.u.t.len = strlen(s);
    return v;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The table names of metric names: each name and its part before the first
 * '_', sorted, distinct. *out: malloc'd array of pointers into a malloc'd
 * buffer (*mem). */
int sql_table_names(const char *const *metrics, size_t n, const char ***out, size_t *nout,
                    char **mem)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += 2 * (strlen(metrics[i]) + 1);
    char *buf = malloc(bytes ? bytes : 1);
    const char **t = malloc((2 * n + 1) * sizeof *t);
    if (!buf || !t) {
        free(buf);
        free(t);
        return ST_ENOMEM;
    }
    size_t k = 0, at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(metrics[i]);
        memcpy(buf + at, metrics[i], l + 1);
        t[k++] = buf + at;
        at += l + 1;
        const char *u = strchr(metrics[i], '_');
        if (u && u != metrics[i]) {
            size_t pl = (size_t)(u - metrics[i]);
            memcpy(buf + at, metrics[i], pl);
            buf[at + pl] = 0;
            t[k++] = buf + at;
            at += pl + 1;
        }
    }
    if (k > 1)
        qsort(t, k, sizeof *t, cmp_str);
    size_t d = 0;
    for (size_t i = 0; i < k; i++)
        if (!d || strcmp(t[d - 1], t[i]))
            t[d++] = t[i];
    *out = t;
    *nout = d;
    *mem = buf;
    return 0;
}

int sql_tables_result(const char *const *metrics, size_t n, int info_schema, sql_result_t **out)
{
    const char **t;
    size_t nt;
    char *mem;
    int rc = sql_table_names(metrics, n, &t, &nt, &mem);
    if (rc)
        return rc;
    sql_result_t *r = sql_result_create();
    if (!r) {
        rc = ST_ENOMEM;
        goto out;
    }
    if (info_schema) {
        rc = sql_result_col(r, "table_catalog", SQL_TEXT);
        rc = rc ? rc : sql_result_col(r, "table_schema", SQL_TEXT);
        rc = rc ? rc : sql_result_col(r, "table_name", SQL_TEXT);
        rc = rc ? rc : sql_result_col(r, "table_type", SQL_TEXT);
    } else {
        rc = sql_result_col(r, "table_name", SQL_TEXT);
    }
    for (size_t i = 0; i < nt && !rc; i++) {
        sql_val_t row[4] = {txt("strata"), txt("public"), txt(t[i]), txt("BASE TABLE")};
        rc = sql_result_row(r, info_schema ? row : row + 2);
    }
out:
    free(t);
    free(mem);
    if (rc) {
        sql_result_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int sql_columns_result(const char *table, const char *const *tags, size_t ntags,
                       const char *const *fields, size_t nfields, int info_schema,
                       sql_result_t **out)
{
    sql_result_t *r = sql_result_create();
    if (!r)
        return ST_ENOMEM;
    int rc = 0;
    if (info_schema) {
        rc = sql_result_col(r, "table_catalog", SQL_TEXT);
        rc = rc ? rc : sql_result_col(r, "table_schema", SQL_TEXT);
        rc = rc ? rc : sql_result_col(r, "table_name", SQL_TEXT);
    }
    rc = rc ? rc : sql_result_col(r, "column_name", SQL_TEXT);
    if (info_schema)
        rc = rc ? rc : sql_result_col(r, "ordinal_position", SQL_INT);
    rc = rc ? rc : sql_result_col(r, "data_type", SQL_TEXT);
    if (!info_schema)
        rc = rc ? rc : sql_result_col(r, "column_kind", SQL_TEXT);
    size_t n = 1 + ntags + nfields;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *name = i == 0 ? "time" : i <= ntags ? tags[i - 1] : fields[i - 1 - ntags];
        sql_type_t t = i == 0 ? SQL_TIME : i <= ntags ? SQL_TEXT : SQL_FLOAT;
        const char *kind = i == 0 ? "time" : i <= ntags ? "tag" : "field";
        sql_val_t pos = {.type = SQL_INT};
        pos.u.i = (int64_t)i + 1;
        sql_val_t full[6] = {txt("strata"), txt("public"), txt(table),
                             txt(name),     pos,           txt(sql_type_name(t))};
        sql_val_t brief[3] = {txt(name), txt(sql_type_name(t)), txt(kind)};
        rc = sql_result_row(r, info_schema ? full : brief);
    }
    if (rc) {
        sql_result_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* ---- INSERT ------------------------------------------------------------------- */

int sql_insert_each(const sql_stmt_t *cs, int64_t now_ms, const char *const *params, size_t nparams,
                    sql_insert_fn fn, void *arg, char *err, size_t errlen)
{
    sql_stmt_t *s = (sql_stmt_t *)cs;
    sql_stmt_t mem = {0};
    sql_xctx_t x = {.s = s,
                    .now = now_ms,
                    .params = params,
                    .nparams = nparams,
                    .mem = &mem,
                    .err = err,
                    .errlen = errlen};
    int tcol = -1;
    for (size_t c = 0; c < s->ncols; c++)
        if (!strcmp(s->cols[c], "time"))
            tcol = (int)c;
    size_t tl = strlen(s->table);
    int rc = 0;
    char name[ST_LABEL_NAME_MAX + 1];
    st_label_t l[ST_LABELS_MAX];
    sql_val_t v[SQL_MAX_ITEMS];
    for (size_t r = 0; r < s->nrows && !rc; r++) {
        for (size_t c = 0; c < s->ncols && !rc; c++)
            rc = sql_eval(&x, s->vals[r * s->ncols + c], NULL, &v[c]);
        if (rc)
            break;
        int64_t ts = now_ms;
        if (tcol >= 0 && v[tcol].type != SQL_NULL && sql_as_time(&v[tcol], &ts)) {
            snprintf(err, errlen, "row %zu: time is not a timestamp", r + 1);
            rc = ST_EINVAL;
            break;
        }
        /* tags: text values; fields: numbers (a parameter's text that is a number is a field) */
        size_t nl = 1;
        for (size_t c = 0; c < s->ncols; c++) {
            if ((int)c == tcol || v[c].type != SQL_TEXT)
                continue;
            sql_val_t num;
            if (s->vals[r * s->ncols + c]->kind == E_PARAM) {
                char *end;
                char buf[64];
                size_t n = v[c].u.t.len < 63 ? v[c].u.t.len : 63;
                memcpy(buf, v[c].u.t.s, n);
                buf[n] = 0;
                num.u.f = strtod(buf, &end);
                if (n && !*end) {
                    num.type = SQL_FLOAT;
                    v[c] = num;
                    continue;
                }
            }
            if (nl == ST_LABELS_MAX) {
                snprintf(err, errlen, "row %zu: too many tags (max %d)", r + 1, ST_LABELS_MAX - 1);
                rc = ST_EINVAL;
                break;
            }
            l[nl++] = (st_label_t){s->cols[c], v[c].u.t.s, (uint32_t)strlen(s->cols[c]),
                                   (uint32_t)v[c].u.t.len};
        }
        if (rc)
            break;
        size_t fields = 0;
        for (size_t c = 0; c < s->ncols && !rc; c++) {
            if ((int)c == tcol || v[c].type == SQL_TEXT || v[c].type == SQL_NULL)
                continue;
            double d;
            if (v[c].type == SQL_FLOAT)
                d = v[c].u.f;
            else if (v[c].type == SQL_INT || v[c].type == SQL_BOOL)
                d = (double)v[c].u.i;
            else {
                snprintf(err, errlen, "row %zu: column %s: a number or text is needed", r + 1,
                         s->cols[c]);
                rc = ST_EINVAL;
                break;
            }
            const char *f = s->cols[c];
            int n = !strcmp(f, "value") ? snprintf(name, sizeof name, "%s", s->table)
                                        : snprintf(name, sizeof name, "%s_%s", s->table, f);
            if (n < 0 || (size_t)n >= sizeof name || (size_t)n < tl) {
                snprintf(err, errlen, "row %zu: metric name %s_%s too long", r + 1, s->table, f);
                rc = ST_EINVAL;
                break;
            }
            l[0] =
                (st_label_t){ST_METRIC_LABEL, name, (uint32_t)strlen(ST_METRIC_LABEL), (uint32_t)n};
            st_label_t sorted[ST_LABELS_MAX];
            memcpy(sorted, l, nl * sizeof *l);
            st_labels_sort(sorted, nl);
            rc = fn(arg, sorted, nl, ts, d);
            fields++;
        }
        if (!rc && !fields) {
            snprintf(err, errlen, "row %zu: no field value (a number) to store", r + 1);
            rc = ST_EINVAL;
        }
    }
    sql_arena_free(&mem);
    return rc;
}

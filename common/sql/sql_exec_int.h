/*
 * sql_exec_int — the expression evaluator's context, shared by the planner
 * (constant folding of time bounds and string literals) and the executor.
 */
#ifndef SQL_EXEC_INT_H
#define SQL_EXEC_INT_H

#include "sql_int.h"

typedef struct sql_xctx {
    sql_stmt_t *s;
    int64_t now;
    const char *const *params;
    size_t nparams;
    const sql_val_t *aggs; /* group mode: the finished aggregates of the group */
    const sql_val_t *row;  /* group mode: the group's first row */
    sql_stmt_t *mem;       /* arena for text made while evaluating */
    char *err;
    size_t errlen;
} sql_xctx_t;

/* Evaluate e over row (NULL: constants only). 0, or ST_EINVAL with x->err. */
int sql_eval(sql_xctx_t *x, const sql_expr_t *e, const sql_val_t *row, sql_val_t *out);
int sql_expr_has_col(const sql_expr_t *e);
/* v as a time: TIME, or TEXT in a timestamp format, or a number of ms. */
int sql_as_time(const sql_val_t *v, int64_t *t);
/* Order of two values for ORDER BY (NULLs last). */
int sql_val_compare(const sql_val_t *a, const sql_val_t *b);
/* A function of the scalar table or an aggregate. */
int sql_func_known(const char *name);
/* s with every PCRE2 metacharacter escaped (sql_val.c). */
void sql_re_escape(st_buf_t *b, const char *s, size_t n);
void sql_like_regex(st_buf_t *b, const char *s, size_t n, int ci);

/* A time as PostgreSQL text "YYYY-MM-DD HH:MM:SS[.mmm]+00" into buf (>= 48
 * bytes), without allocating: its length (sql_val.c). */
size_t sql_time_chars(char *buf, int64_t ms);

#endif

/*
 * router_sql — one SQL statement run against the cluster, for every SQL
 * door (HTTP /sql in router_sql.c, PostgreSQL wire in router_pg.c).
 *
 * A SELECT whose aggregates the nodes can compute becomes PromQL partial
 * aggregates (sql_push.c) run with pushdown; any other becomes one PromQL
 * instant query of a range selector over the table's metrics
 * (`{__name__=~"T|T_(f..)",tag matchers}[end-start]` at end-1ms: exactly
 * the samples in [start, end)), read raw in EXPORT pages. Both go through
 * router_promql_run (fan-out, limits, deadline), and the series returned
 * go through sql_exec on the thread pool. SHOW TABLES and
 * information_schema read the metric names / label sets the same way.
 * SET, BEGIN/COMMIT, SHOW <setting> are answered here without the nodes.
 */
#ifndef ROUTER_SQL_H
#define ROUTER_SQL_H

#include "router.h"
#include "sql.h"

typedef struct router_sql_answer {
    int status;              /* 0, or 400 (statement), 422 (limit), 501, 503 */
    const char *sqlstate;    /* PostgreSQL SQLSTATE of an error */
    const char *msg;         /* the error */
    const sql_stmt_t *stmt;  /* NULL when the statement did not parse */
    const sql_result_t *res; /* rows, or NULL for SET/BEGIN/... */
} router_sql_answer_t;

/* cb runs once on the loop; the answer's parts live during the call only. */
typedef void (*router_sql_cb)(void *arg, const router_sql_answer_t *a);

/* Run text with parameters $1..$nparams (text, NULL = SQL NULL; copied). */
void router_sql_run(router_t *r, const char *text, size_t len, const char *const *params,
                    size_t nparams, router_sql_cb cb, void *arg);

/* Register the SQL counters (router_server.c). */
int router_sql_metrics(router_t *r);

#endif

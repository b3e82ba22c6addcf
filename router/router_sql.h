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

#include "auth.h"
#include "router.h"
#include "sql.h"

typedef struct router_sql_answer {
    int status;              /* 0, or 400 (statement), 422 (limit), 501, 503 */
    const char *sqlstate;    /* PostgreSQL SQLSTATE of an error */
    const char *msg;         /* the error */
    const sql_stmt_t *stmt;  /* NULL when the statement did not parse */
    const sql_result_t *res; /* rows, or NULL for SET/BEGIN/DELETE/... */
    uint64_t deleted;        /* DELETE: the samples removed */
} router_sql_answer_t;

/* cb runs once on the loop; the answer's parts live during the call only. */
typedef void (*router_sql_cb)(void *arg, const router_sql_answer_t *a);

/*
 * Run text with parameters $1..$nparams (text, NULL = SQL NULL; copied) for
 * user (NULL: no users file). With a user, the statement's kind needs a
 * role: DELETE admin, INSERT write, the rest read; a user confined to a
 * selector may not run DELETE here, and its INSERT writes only the rows
 * inside its selector. Refused: 403, SQLSTATE 42501.
 *
 * INSERT goes through the /write pipeline (router_write_submit: validation,
 * retention, sharding, replication, the cluster's write consistency) as an
 * in-process request carrying user; its answer is "INSERT 0 n", or the
 * write's error (400: 22000, 403: 42501, 413: 54000, else 58000).
 *
 * DELETE FROM t WHERE <bounds on time> AND <tag matchers> removes the
 * samples SELECT * FROM t WHERE ... reads (every field of t) through
 * router_delete_submit; any other condition is refused (0A000).
 */
void router_sql_run(router_t *r, const auth_user_t *user, const char *text, size_t len,
                    const char *const *params, size_t nparams, router_sql_cb cb, void *arg);

/* The PostgreSQL command tag of a successful answer ("SELECT 3", "DELETE 12"). */
void router_sql_tag(const router_sql_answer_t *a, char *buf, size_t cap);

/* Register the SQL counters (router_server.c). */
int router_sql_metrics(router_t *r);

#endif

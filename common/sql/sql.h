/*
 * sql — Strata's SQL dialect: a hand-written lexer and recursive-descent
 * parser into an AST (sql_parse), a planner that turns a SELECT into what
 * the cluster must read (sql_plan: table, fields, label matchers, time
 * range), and an executor that turns the series read into rows and runs
 * WHERE / GROUP BY / aggregates / HAVING / ORDER BY / LIMIT over them with
 * a bounded row count (sql_exec). No sockets: the router fetches, this
 * library computes, the HTTP and PostgreSQL doors format.
 *
 * Table model (docs/sql.md): a line-protocol measurement `cpu` with fields
 * `usage_user`, `usage_system` is stored as the metrics `cpu_usage_user`,
 * `cpu_usage_system` (router/lp.c). Table `T` is every metric named `T` or
 * `T_<field>`: its columns are `time`, the labels (tags) and one column per
 * field (`value` for the metric named exactly `T`). So every metric name is
 * a table too (time, labels, value), and a measurement is found by the
 * prefix of its metric names. Rows are the (tag set, timestamp) pairs; a
 * field a row has no sample for is NULL.
 *
 * Errors: ST_EPARSE with "syntax error at position N: ..." (N counts bytes
 * from 1), ST_EINVAL for semantic errors, ST_ELIMIT for the row bound.
 */
#ifndef SQL_H
#define SQL_H

#include <stddef.h>
#include <stdint.h>

#include "st_buf.h"
#include "st_labels.h"
#include "st_matcher.h"

#define SQL_ERR_MAX 300
#define SQL_MAX_LEN (1u << 20) /* bytes of one statement */
#define SQL_MAX_DEPTH 64       /* expression nesting */
#define SQL_MAX_ITEMS 256      /* select items, group/order keys, IN list entries */
#define SQL_MAX_PARAMS 64      /* $1..$64 */
#define SQL_MAX_INSERT_ROWS 100000
#define SQL_GAPFILL_MAX 100000 /* buckets time_bucket_gapfill fills per series */

/* ---- values --------------------------------------------------------------- */

typedef enum sql_type {
    SQL_NULL,
    SQL_BOOL,
    SQL_INT,   /* int8 */
    SQL_FLOAT, /* float8 */
    SQL_TEXT,
    SQL_TIME,    /* timestamptz, ms since the epoch */
    SQL_INTERVAL /* ms */
} sql_type_t;

typedef struct sql_val {
    sql_type_t type;
    union {
        int64_t i; /* BOOL, INT, TIME, INTERVAL */
        double f;
        struct {
            const char *s; /* not NUL-terminated; owned by the AST, a row or the result */
            size_t len;
        } t;
    } u;
} sql_val_t;

const char *sql_type_name(sql_type_t t);
/* Append v as text (PostgreSQL's text output: timestamps
 * "2026-01-02 03:04:05.678+00", intervals "00:01:00"); NULL appends nothing. */
int sql_val_text(st_buf_t *b, const sql_val_t *v);
/* Parse "2026-01-02T03:04:05.678Z", "2026-01-02 03:04:05+02:00", "2026-01-02"
 * into ms. 0 or ST_EPARSE. */
int sql_parse_time(const char *s, size_t n, int64_t *ms);
/* "1 minute", "5m", "2 hours", "1h30m", "00:05:00": 0 with *ms, or ST_EPARSE. */
int sql_parse_interval(const char *s, size_t n, int64_t *ms);

/* ---- statements ----------------------------------------------------------- */

typedef struct sql_expr sql_expr_t;
typedef struct sql_stmt sql_stmt_t;

typedef enum sql_kind {
    SQL_SELECT,
    SQL_SHOW_TABLES,
    SQL_SHOW_COLUMNS, /* table in sql_stmt_table() */
    SQL_SHOW_VAR,     /* SHOW name: name in sql_stmt_table() */
    SQL_SET,          /* SET ... (accepted, nothing to do) */
    SQL_TXN,          /* BEGIN, COMMIT, ROLLBACK, START TRANSACTION, END */
    SQL_INSERT,
    SQL_DELETE,
    SQL_EMPTY /* only ';' or blanks */
} sql_kind_t;

/* Parse one statement (a trailing ';' allowed). Returns 0 with *out, or an
 * ST_* code with a message in err (ST_EPARSE: "... at position N"). */
int sql_parse(const char *text, size_t len, sql_stmt_t **out, char *err, size_t errlen);
void sql_stmt_free(sql_stmt_t *s);
sql_kind_t sql_stmt_kind(const sql_stmt_t *s);
/* The table of SELECT/INSERT/DELETE/SHOW COLUMNS ("" for SELECT without FROM),
 * or the variable of SHOW. schema: "" or the name before the dot. */
const char *sql_stmt_table(const sql_stmt_t *s);
const char *sql_stmt_schema(const sql_stmt_t *s);
/* The command tag PostgreSQL clients expect ("SELECT", "SET", "BEGIN", ...). */
const char *sql_stmt_tag(const sql_stmt_t *s);
/* Highest $n used (0: none). */
int sql_stmt_nparams(const sql_stmt_t *s);

/* ---- plan: what a SELECT reads -------------------------------------------- */

typedef struct sql_plan {
    int64_t start, end; /* [start, end) in ms */
    int all_fields;     /* SELECT * or a column the planner cannot tell */
    const char **fields;
    size_t nfields;
    st_matcher_t m[SQL_MAX_ITEMS]; /* label matchers from WHERE (ANDed, exact) */
    size_t nm;
    int needs_data; /* 0: no FROM (SELECT 1, version()) or an empty range */
    /* ORDER BY time DESC (-1) / ASC (1) ... LIMIT without aggregates: the
     * statement may be run over a window at the end (start) of the range
     * first; when it yields `limit` rows they are the answer (every row
     * outside is later in the order), else the window grows. 0: no. */
    int time_order;
    int64_t limit;
    int exact; /* every WHERE conjunct is a time bound or an exact tag matcher */
} sql_plan_t;

/* now_ms: the statement's clock; default_start/default_end: the range when
 * WHERE gives no bound on time. params: $1.. as text (NULL entries: SQL NULL).
 * Returns 0, or ST_EINVAL with err. Strings in p live as long as s. */
int sql_plan(sql_stmt_t *s, int64_t now_ms, int64_t default_start, int64_t default_end,
             const char *const *params, size_t nparams, sql_plan_t *p, char *err, size_t errlen);
void sql_plan_free(sql_plan_t *p);
/* The PromQL selector reading the plan's metrics: {__name__=~"T|T_(f1|f2)",m...}. */
int sql_plan_selector(const sql_stmt_t *s, const sql_plan_t *p, st_buf_t *out);

/* ---- pushdown: aggregates the nodes compute (sql_push.c) -------------------- */

#define SQL_PUSH_MAX 64
typedef struct sql_push_q {
    const char *promql;
    int64_t start, end, step; /* an instant query when start == end */
    int64_t shift;            /* add to each timestamp: the rows' time */
    const char *field;        /* the synthetic field its series become */
} sql_push_q_t;
typedef struct sql_push {
    sql_push_q_t q[SQL_PUSH_MAX];
    size_t nq;
    /* count(*) (a statement naming no field, no time bucket): the synthetic
     * field of one row per tag set at the range's start holding the tag
     * set's rows (sql_count.c; see sql_count_feed); NULL: none */
    const char *rows;
} sql_push_t;
/* 1 when the planned SELECT s can be answered from the queries in *out
 * (and the rows per tag set when out->rows): s is then rewritten to run
 * over their series (fed to sql_exec with __name__ = <table>_<field> and
 * timestamps + shift); 0: read raw rows (s unchanged); ST_ENOMEM. */
int sql_push_plan(sql_stmt_t *s, const sql_plan_t *p, sql_push_t *out);

/* ---- ORDER BY time ... LIMIT: where the rows are (sql_topn.c) ------------- */

#define SQL_TOPN_MAX 100000 /* LIMIT + OFFSET answered through the nodes' TOPN */
typedef struct sql_topn sql_topn_t;
/* Merge the nodes' newest (oldest: oldest) n (tag set, time) keys. */
int sql_topn_create(size_t n, int oldest, sql_topn_t **out);
/* One node's keys: times and tag sets ("name\0value\0" per label but
 * __name__, sorted by name; lab NULL: all empty), any order, past n
 * ignored. 0 or ST_ENOMEM. */
int sql_topn_add(sql_topn_t *t, const int64_t *ts, const uint8_t *const *lab, const size_t *lablen,
                 size_t k);
/* The number of distinct keys kept (at most n), and with it the time of the
 * last of them in *edge: every key not kept comes later in the order (time,
 * then tag set, as SQL orders rows). */
size_t sql_topn_finish(sql_topn_t *t, int64_t *edge);
/* After finish: one regex matcher per label name of the kept tag sets, each
 * the alternation of their values (empty for a tag set without it), so
 * they select every kept tag set. *mem holds the strings (free it).
 * 0, ST_ELIMIT (more than max names) or ST_ENOMEM. */
int sql_topn_matchers(const sql_topn_t *t, st_matcher_t *m, size_t max, size_t *nm, char **mem);
void sql_topn_destroy(sql_topn_t *t);
/* A SELECT's OFFSET (0: none). */
int64_t sql_stmt_offset(const sql_stmt_t *s);

/* ---- results -------------------------------------------------------------- */

typedef struct sql_result sql_result_t;

typedef struct sql_exec_opts {
    uint64_t max_rows;    /* rows built from the series before filtering */
    uint64_t max_bytes;   /* bytes of rows held */
    int64_t deadline_ms;  /* st_mono_ms() deadline; 0: none */
    uint64_t groups_hint; /* groups the caller expects (0: unknown): tables sized once */
    /* each row built from the series is a group of its own (partial
     * aggregates at bucket starts, labels the GROUP BY tags): rows go
     * straight to the output, no group table */
    int rows_are_groups;
} sql_exec_opts_t;

typedef struct sql_exec sql_exec_t;
/* Feed the series read for a planned SELECT (any order, labels include
 * __name__), then finish. */
int sql_exec_create(sql_stmt_t *s, const sql_plan_t *p, const sql_exec_opts_t *o, sql_exec_t **out);
int sql_exec_series(sql_exec_t *x, const st_label_t *l, size_t nl, const int64_t *ts,
                    const double *v, size_t n);
/* Instead of series: run over the rows of a catalog table t (kept by the
 * caller until finish returns). */
void sql_exec_table(sql_exec_t *x, const sql_result_t *t);
/* Series fed so far. */
size_t sql_exec_nseries(const sql_exec_t *x);
/* The statement's clock and parameters ($1.. as text, NULL = SQL NULL). */
void sql_exec_set_params(sql_exec_t *x, int64_t now_ms, const char *const *params, size_t n);
/* Run the statement over what was fed: 0 with *out, or an ST_* code with err. */
int sql_exec_finish(sql_exec_t *x, sql_result_t **out, char *err, size_t errlen);
void sql_exec_destroy(sql_exec_t *x);

/* A result built directly (SHOW, catalogs): columns, then rows of values. */
sql_result_t *sql_result_create(void);
int sql_result_col(sql_result_t *r, const char *name, sql_type_t t);
int sql_result_row(sql_result_t *r, const sql_val_t *vals); /* ncols values, copied */
void sql_result_free(sql_result_t *r);
size_t sql_result_ncols(const sql_result_t *r);
size_t sql_result_nrows(const sql_result_t *r);
const char *sql_result_colname(const sql_result_t *r, size_t c);
sql_type_t sql_result_coltype(const sql_result_t *r, size_t c);
const sql_val_t *sql_result_cell(const sql_result_t *r, size_t row, size_t c);
/* {"columns":[{"name":..,"type":..}],"rows":[[..]]}: numbers as JSON numbers
 * (NaN/Inf as strings), times RFC 3339 strings. */
int sql_result_json(const sql_result_t *r, st_buf_t *out);
/* RFC 4180 CSV with a header row. */
int sql_result_csv(const sql_result_t *r, st_buf_t *out);
/* The tag of the command that produced r ("SELECT n"). */
int sql_result_tag(const sql_result_t *r, const sql_stmt_t *s, char *buf, size_t cap);

/* Build the result of SHOW COLUMNS FROM t / information_schema.columns from
 * the label names and field names seen for t. */
int sql_columns_result(const char *table, const char *const *tags, size_t ntags,
                       const char *const *fields, size_t nfields, int info_schema,
                       sql_result_t **out);
/* SHOW TABLES / information_schema.tables / pg_catalog listings from metric names. */
int sql_tables_result(const char *const *metrics, size_t n, int info_schema, sql_result_t **out);
/* The table names of metric names: each name and its part before the first
 * '_', sorted and distinct; *out and *mem are malloc'd (free both). */
int sql_table_names(const char *const *metrics, size_t n, const char ***out, size_t *nout,
                    char **mem);

/* ---- INSERT --------------------------------------------------------------- */

/* For each sample of an INSERT: its labels (sorted, __name__ = T_field or T
 * for `value`), time and value. fn returns 0 or stops with its code. */
typedef int (*sql_insert_fn)(void *arg, const st_label_t *l, size_t nl, int64_t ts, double v);
int sql_insert_each(const sql_stmt_t *s, int64_t now_ms, const char *const *params, size_t nparams,
                    sql_insert_fn fn, void *arg, char *err, size_t errlen);

/* ---- count(*) per tag set (sql_count.c) ------------------------------------- */

/* 1 when a GROUP BY key of s names a field of its table among these
 * metric names (the rows per tag set then cannot answer it), else 0. */
int sql_count_groups_field(const sql_stmt_t *s, const char *const *metrics, size_t n);
/* Narrow p's matchers to a superset of these tag sets (label sets without
 * __name__): per label name, its values as alternatives ("" when a set
 * lacks it). 1 when narrowed; 0 when that would take more than
 * SQL_COUNT_NARROW_MAX bytes or matchers (p unchanged); ST_ENOMEM. */
#define SQL_COUNT_NARROW_MAX 32768
int sql_count_narrow(sql_stmt_t *s, sql_plan_t *p, const st_label_t *const *sets, const size_t *nls,
                     size_t n);
/* Feed the rows of one tag set (labels without __name__) to x, the
 * executor of the rewritten s, as a series named rows_metric (<table>_<the
 * rows field of sql_push_plan>) with one sample (*at, *v); a tag set
 * without rows (*v == 0) only when s has no GROUP BY (no group of its
 * own). lab: room for nl + 1 labels, kept by the caller until
 * sql_exec_finish returns, as are *v and *at. */
int sql_count_feed(sql_exec_t *x, const sql_stmt_t *s, const char *rows_metric, st_label_t *lab,
                   const st_label_t *l, size_t nl, const int64_t *at, const double *v);

#endif

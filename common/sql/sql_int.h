/*
 * sql_int — the AST shared by sql_parse.c (builds it), sql_plan.c (reads
 * WHERE for matchers and the time range) and sql_exec.c (evaluates it).
 * Every node and string of a statement lives in the statement's arena and
 * is freed with it.
 */
#ifndef SQL_INT_H
#define SQL_INT_H

#include "sql.h"

typedef enum sql_ekind {
    E_LIT,
    E_COL,  /* name (qual.name) */
    E_STAR, /* count(*) argument, SELECT * */
    E_PARAM,
    E_FUNC,
    E_BIN,
    E_NOT,
    E_NEG,
    E_IN,      /* args[0] IN (args[1..]) */
    E_BETWEEN, /* args[0] BETWEEN args[1] AND args[2] */
    E_LIKE,    /* args[0] LIKE args[1]; op 1: ILIKE */
    E_ISNULL,
    E_CAST /* args[0]::name */
} sql_ekind_t;

typedef enum sql_op {
    OP_OR,
    OP_AND,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_MOD,
    OP_CONCAT,
    OP_RE,   /* ~ */
    OP_NRE,  /* !~ */
    OP_REI,  /* ~* */
    OP_NREI, /* !~* */
} sql_op_t;

struct sql_expr {
    sql_ekind_t kind;
    int op;
    int inv;    /* NOT IN, NOT LIKE, IS NOT NULL, NOT BETWEEN */
    size_t pos; /* byte offset in the statement */
    sql_val_t lit;
    char *name; /* column, function (lower case), cast type */
    sql_expr_t **args;
    size_t nargs;
    int distinct;       /* count(DISTINCT x) */
    int param;          /* $n */
    int agg;            /* aggregate slot + 1 (sql_exec.c); 0: not an aggregate call */
    int col;            /* resolved column + 1; -(item + 1): a select alias (sql_exec.c) */
    sql_expr_t *within; /* percentile_cont(p) WITHIN GROUP (ORDER BY within) */
    int fn;             /* scalar function: sql_eval.c's table index + 1 (found once) */
};

typedef struct sql_arena_blk sql_arena_blk_t;

struct sql_stmt {
    sql_kind_t kind;
    char *text;
    char *table, *schema, *alias;
    /* SELECT */
    sql_expr_t **items;
    char **aliases; /* NULL entries: no alias */
    size_t nitems;
    int distinct;
    sql_expr_t *where, *having;
    sql_expr_t **group;
    size_t ngroup;
    sql_expr_t **order;
    int *desc;
    size_t norder;
    int64_t limit; /* -1: none */
    int64_t offset;
    /* INSERT */
    char **cols;
    size_t ncols;
    sql_expr_t **vals; /* nrows * ncols */
    size_t nrows;
    int maxparam;
    const char *tag;
    sql_arena_blk_t *arena;
};

/* An integral double of magnitude under 1e15 (not 0) as its digits, what
 * the shortest round-trip formatters (st_fmt_double, st_fmt_double_g)
 * print for it, without their digit search; buf holds 24. 0: another value. */
size_t sql_fmt_integral(char *buf, double v);
void *sql_alloc(sql_stmt_t *s, size_t n); /* zeroed */
void *sql_alloc_nz(sql_stmt_t *s, size_t n);
char *sql_strndup(sql_stmt_t *s, const char *p, size_t n);
void sql_arena_free(sql_stmt_t *s); /* the arena only */
/* from's arena becomes to's (freed with it); from's is empty */
void sql_arena_move(sql_stmt_t *to, sql_stmt_t *from);

/* Is name an aggregate function? */
int sql_is_aggregate(const char *name);
/* Does e contain an aggregate call? */
int sql_has_aggregate(const sql_expr_t *e);

/* Is e count(*)? (sql_count.c) */
int sql_count_is_star(const sql_expr_t *e);
/* The expression GROUP BY key e stands for: an ordinal or a select alias
 * resolved (sql_push.c). */
const sql_expr_t *sql_group_expr(const sql_stmt_t *s, const sql_expr_t *e);

#endif

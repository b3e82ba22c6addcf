/*
 * promql — a PromQL (+ some MetricsQL) parser: text -> typed AST. No evaluation.
 *
 *   promql_expr_t *e;
 *   char err[256];
 *   if (promql_parse(q, strlen(q), &e, err, sizeof err) == 0) {
 *       const promql_node_t *root = promql_root(e);
 *       ...
 *       promql_free(e);
 *   }
 *
 * Every node and string lives in one arena owned by the promql_expr_t handle.
 * The parser type-checks like Prometheus does at parse time (function and
 * aggregation argument types, binary operand types, set operators, bool,
 * vector matching) and reports errors as "LINE:COL: parse error: MESSAGE"
 * (1-based line and byte column of the offending token).
 *
 * Limits: query length PROMQL_MAX_LEN, recursion depth PROMQL_MAX_DEPTH, AST
 * depth PROMQL_MAX_TREE_DEPTH, PROMQL_MAX_NODES nodes; exceeding one returns
 * ST_ELIMIT. Syntax and type errors return ST_EPARSE. See docs/promql.md.
 */
#ifndef PROMQL_H
#define PROMQL_H

#include <stddef.h>
#include <stdint.h>

#include "st_buf.h"
#include "st_matcher.h"

#define PROMQL_MAX_LEN 65536
#define PROMQL_MAX_DEPTH 256
#define PROMQL_MAX_TREE_DEPTH 1024
#define PROMQL_MAX_NODES 100000

typedef enum {
    PROMQL_NUMBER,
    PROMQL_STRING,
    PROMQL_VECTOR_SELECTOR,
    PROMQL_MATRIX_SELECTOR,
    PROMQL_SUBQUERY,
    PROMQL_UNARY,
    PROMQL_BINARY,
    PROMQL_AGGREGATE,
    PROMQL_CALL,
    PROMQL_PAREN
} promql_kind_t;

/* Value types, as Prometheus names them in error messages. */
typedef enum {
    PROMQL_TYPE_NONE = 0,
    PROMQL_TYPE_SCALAR,
    PROMQL_TYPE_VECTOR, /* instant vector */
    PROMQL_TYPE_MATRIX, /* range vector */
    PROMQL_TYPE_STRING
} promql_type_t;

typedef enum {
    PROMQL_OP_ADD,
    PROMQL_OP_SUB,
    PROMQL_OP_MUL,
    PROMQL_OP_DIV,
    PROMQL_OP_MOD,
    PROMQL_OP_POW,
    PROMQL_OP_ATAN2,
    PROMQL_OP_EQL, /* == */
    PROMQL_OP_NEQ,
    PROMQL_OP_LSS,
    PROMQL_OP_LTE,
    PROMQL_OP_GTR,
    PROMQL_OP_GTE,
    PROMQL_OP_AND,
    PROMQL_OP_OR,
    PROMQL_OP_UNLESS
} promql_binop_t;

typedef enum {
    PROMQL_AGG_SUM,
    PROMQL_AGG_AVG,
    PROMQL_AGG_MIN,
    PROMQL_AGG_MAX,
    PROMQL_AGG_COUNT,
    PROMQL_AGG_GROUP,
    PROMQL_AGG_STDDEV,
    PROMQL_AGG_STDVAR,
    PROMQL_AGG_TOPK,
    PROMQL_AGG_BOTTOMK,
    PROMQL_AGG_QUANTILE,
    PROMQL_AGG_COUNT_VALUES,
    PROMQL_AGG_LIMITK,
    PROMQL_AGG_LIMIT_RATIO
} promql_aggop_t;

typedef enum {
    PROMQL_CARD_ONE_TO_ONE,
    PROMQL_CARD_MANY_TO_ONE, /* group_left */
    PROMQL_CARD_ONE_TO_MANY, /* group_right */
    PROMQL_CARD_MANY_TO_MANY /* set operators */
} promql_card_t;

typedef enum { PROMQL_GROUP_NONE, PROMQL_GROUP_BY, PROMQL_GROUP_WITHOUT } promql_grouping_t;

typedef enum { PROMQL_AT_NONE, PROMQL_AT_TS, PROMQL_AT_START, PROMQL_AT_END } promql_at_kind_t;

typedef struct promql_at {
    promql_at_kind_t kind;
    double ts; /* seconds since the epoch, for PROMQL_AT_TS */
} promql_at_t;

typedef struct promql_labels {
    const char **names; /* NUL-terminated */
    size_t n;
} promql_labels_t;

/* One conjunction of matchers; a selector is the OR of its sets (MetricsQL). */
typedef struct promql_matcher_set {
    st_matcher_t *m;
    size_t n;
} promql_matcher_set_t;

typedef struct promql_node promql_node_t;

/* Evaluator internals (promql_eval_int.h) a function's implementation takes. */
struct pe_ctx;
struct pe_grid;
struct pe_val;
typedef void promql_eval_fn(struct pe_ctx *c, const promql_node_t *n, const struct pe_grid *g,
                            struct pe_val *out);

/* Function flags (promql_func_t.flags). */
/* series-local: a series' value depends on that series (and constant
 * arguments) only, so the nodes may evaluate it (promql_plan.h) */
#define PROMQL_FN_LOCAL 1u
#define PROMQL_FN_CONST 2u   /* reads no data: time(), pi() */
#define PROMQL_FN_ORDERED 4u /* an instant result keeps the order the function gives it */

/*
 * A known function: one row of the single function table (promql_funcs.c)
 * that the parser (argument and result types), the planner (flags) and the
 * evaluator (eval) all read.
 */
typedef struct promql_func {
    const char *name;
    promql_type_t args[6];
    int nargs;
    int variadic; /* 0: exactly nargs; k > 0: nargs-1 .. nargs-1+k; -1: >= nargs-1 (last repeats) */
    promql_type_t ret;
    unsigned flags;        /* PROMQL_FN_* */
    promql_eval_fn *eval;  /* NULL: parsed but not evaluated ("not supported") */
    int op;                /* which variant eval computes (rollup kind, desc, ...) */
    double (*fn1)(double); /* element-wise evals: the per-value function */
} promql_func_t;

/* An aggregation operator: one row of the aggregation table (promql_parse.c). */
typedef struct promql_agg {
    const char *name;
    promql_type_t param; /* PROMQL_TYPE_NONE, or the type of the parameter (topk's k ...) */
    unsigned flags;      /* PROMQL_AGGF_* */
} promql_agg_t;

#define PROMQL_AGGF_MERGEABLE 1u    /* rebuilt from per-node partial results (pushdown) */
#define PROMQL_AGGF_MERGE_NUMBER 2u /* ... only when its parameter is a number literal */
#define PROMQL_AGGF_NO_EVAL 4u      /* parsed but not evaluated ("not supported") */

struct promql_node {
    promql_kind_t kind;
    promql_type_t type; /* result type */
    uint32_t pos;       /* byte offset of the node's first token */
    uint8_t push;       /* promql_plan.h: 0, or how the nodes evaluate this subtree */
    union {
        double number;
        struct {
            const char *s; /* NUL-terminated, may contain NULs: use len */
            size_t len;
        } str;
        struct {
            const char *name; /* metric identifier before '{', or NULL */
            promql_matcher_set_t *sets;
            size_t nsets;
            int has_offset;
            int64_t offset_ms;
            promql_at_t at;
        } vs;
        struct {
            promql_node_t *vs; /* PROMQL_VECTOR_SELECTOR: carries offset and @ */
            int64_t range_ms;
            int window_omitted; /* MetricsQL rate(m): evaluator uses the step */
        } ms;
        struct {
            promql_node_t *expr;
            int64_t range_ms, step_ms; /* step_ms 0: omitted ([1h:]) */
            int has_offset;
            int64_t offset_ms;
            promql_at_t at;
        } sq;
        struct {
            promql_binop_t op; /* PROMQL_OP_ADD or PROMQL_OP_SUB */
            promql_node_t *expr;
        } unary;
        struct {
            promql_binop_t op;
            int bool_mod;
            promql_node_t *lhs, *rhs;
            promql_card_t card;
            int has_matching; /* on(...) or ignoring(...) present */
            int on;           /* 1 on, 0 ignoring */
            promql_labels_t match;
            promql_labels_t include; /* group_left/group_right labels */
        } bin;
        struct {
            promql_aggop_t op;
            promql_node_t *param; /* topk k, quantile q, count_values label; or NULL */
            promql_node_t *expr;
            promql_grouping_t grouping;
            promql_labels_t labels;
        } agg;
        struct {
            const char *name;
            const promql_func_t *func; /* NULL for an unknown function (lax mode) */
            promql_node_t **args;
            size_t nargs;
            int keep_metric_names;
        } call;
        struct {
            promql_node_t *expr;
        } paren;
    } u;
};

/* == != < <= > >= (filters, or 0/1 with bool). */
static inline int promql_binop_is_cmp(promql_binop_t op)
{
    return op >= PROMQL_OP_EQL && op <= PROMQL_OP_GTE;
}

/* n without the parentheses around it. */
static inline const promql_node_t *promql_unparen(const promql_node_t *n)
{
    while (n->kind == PROMQL_PAREN)
        n = n->u.paren.expr;
    return n;
}

typedef struct promql_expr promql_expr_t;

/* Parse flags for promql_parse_ex. */
#define PROMQL_F_LAX_FUNCS 1u /* accept unknown function names (any args, vector result) */

/*
 * Parse [q, q+len). On success *out owns the AST (free with promql_free).
 * Returns 0, ST_EPARSE or ST_ELIMIT (message in err), or ST_ENOMEM.
 */
int promql_parse(const char *q, size_t len, promql_expr_t **out, char *err, size_t errlen);
int promql_parse_ex(const char *q, size_t len, unsigned flags, promql_expr_t **out, char *err,
                    size_t errlen);
const promql_node_t *promql_root(const promql_expr_t *e);
/*
 * Parse a bare series selector, as match[] takes it (selector.c): the root
 * is one PROMQL_VECTOR_SELECTOR with at most one matcher set. Nothing else
 * may follow; `or` is a label name, not a set separator; regexes, empty
 * matchers, a repeated metric name and quoted label names are not checked
 * here (the index does at query time); errors are worded as selector.c
 * always worded them ("1:COL: MESSAGE"), "too many label matchers" when
 * name and matchers exceed max_matchers (ST_ELIMIT).
 */
int promql_parse_selector(const char *q, size_t len, size_t max_matchers, promql_expr_t **out,
                          char *err, size_t errlen);
void promql_free(promql_expr_t *e);

/*
 * Append the canonical text of n to b: single spaces around binary operators,
 * every binary operand that is itself a binary expression parenthesized,
 * durations normalized (90m -> 1h30m), strings double-quoted. Parsing the
 * output yields an AST that prints identically. Returns 0 or ST_ENOMEM.
 */
int promql_format(const promql_node_t *n, st_buf_t *b);

/* "scalar", "instant vector", "range vector", "string". */
const char *promql_type_name(promql_type_t t);
const char *promql_binop_str(promql_binop_t op);
const char *promql_aggop_str(promql_aggop_t op);
/* Known-function table lookup (NULL when unknown). */
const promql_func_t *promql_func_lookup(const char *name, size_t len);
/* The aggregation table's row for op (never NULL for a valid op). */
const promql_agg_t *promql_agg_info(promql_aggop_t op);

/* ---- Lexer (shared by the parser and tests) ---------------------------- */

typedef enum {
    PQ_EOF,
    PQ_IDENT,
    PQ_NUMBER,
    PQ_DURATION,
    PQ_STRING,
    PQ_LBRACE,
    PQ_RBRACE,
    PQ_LPAREN,
    PQ_RPAREN,
    PQ_LBRACKET,
    PQ_RBRACKET,
    PQ_COMMA,
    PQ_COLON,
    PQ_AT,
    PQ_ASSIGN,    /* =  */
    PQ_EQ_REGEX,  /* =~ */
    PQ_NEQ_REGEX, /* !~ */
    PQ_ADD,
    PQ_SUB,
    PQ_MUL,
    PQ_DIV,
    PQ_MOD,
    PQ_POW,
    PQ_EQLC, /* == */
    PQ_NEQ,
    PQ_LSS,
    PQ_LTE,
    PQ_GTR,
    PQ_GTE
} promql_tok_t;

typedef struct promql_token {
    promql_tok_t type;
    uint32_t pos, len; /* raw text span */
    double num;        /* PQ_NUMBER */
    int64_t ms;        /* PQ_DURATION */
    const char *str;   /* PQ_STRING: unescaped, NUL-terminated */
    size_t slen;
} promql_token_t;

/* Lexer flags for promql_lex_ex. */
#define PROMQL_LEX_SELECTOR 1u /* selector.c: no '#' comments, selector.c's string errors */
/*
 * Tokenize [q, q+len) into toks (room for len + 1 tokens, the last PQ_EOF);
 * unescaped string bodies go to strbuf (room for len + 1 bytes). Returns the
 * number of tokens, or -1 (-2 for an error inside a quoted string) with
 * *errpos and a message in err; *errtok (if not NULL) is where the failing
 * token starts.
 */
long promql_lex_ex(const char *q, size_t len, unsigned flags, promql_token_t *toks, char *strbuf,
                   size_t *errpos, size_t *errtok, char *err, size_t errlen);
/* A short description for error messages: <op:*>, identifier "x", "(" ... */
void promql_tok_describe(const char *q, const promql_token_t *t, char *out, size_t outlen);

/* Text helpers shared with the printer. */
int promql_fmt_number(st_buf_t *b, double v);
int promql_fmt_string(st_buf_t *b, const char *s, size_t len);

#endif

/*
 * promql_parse — recursive-descent / precedence-climbing PromQL parser with
 * Prometheus' parse-time type checks; see promql.h and docs/promql.md.
 *
 * Grammar (lowest precedence first; ^ is right-associative, the rest left):
 *
 *   expr    := binary(1)
 *   binary(k) := unary { OP(>=k) [bool] [on|ignoring (labels) [group_left|group_right [(labels)]]]
 *                        binary(k+1 or k for ^) }
 *       1: or   2: and unless   3: == != <= < >= >   4: + -   5: * / % atan2   6: ^
 *   unary   := ('+'|'-') binary(6) | postfix        (so -2^2 is -(2^2))
 *   postfix := primary { '[' dur ']' | '[' dur ':' [dur] ']' | offset ['-'] dur
 *                        | '@' (number | start() | end()) | keep_metric_names }
 *   primary := number | string | '(' expr ')' | selector | call | aggregate
 *
 * Functions are checked against the one function table (promql_funcs.c,
 * promql_func_lookup); a call node keeps its row, which the planner and the
 * evaluator read. Aggregation operators have their table here (aggs[]).
 *
 * promql_parse_selector() runs the same lexer and vector-selector grammar
 * for match[] (selector.c) in "selector mode": a bare selector only, `or` is
 * a label name, no query-time checks, and selector.c's error wording.
 *
 * Memory: every node, string and array is carved from a chunked arena owned by
 * the promql_expr_t; growing arrays are reallocated inside the arena (the old
 * copy is simply abandoned, bounded waste). Errors are recorded once in the
 * parser (first error wins) and every function returns NULL/-1 after that.
 */
#include "promql.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "st_err.h"
#include "st_text.h"
#include "st_labels.h"

typedef struct blk {
    struct blk *next;
    size_t used, cap;
    _Alignas(16) char data[];
} blk_t;

struct promql_expr {
    blk_t *blocks;
    promql_node_t *root;
};

/* Nodes carry their AST depth (PAREN is free) for the tree-depth limit. */
typedef struct inode {
    promql_node_t n;
    uint32_t depth;
} inode_t;

typedef struct parser {
    const char *q;
    size_t len;
    promql_token_t *toks;
    size_t i;
    promql_expr_t *e;
    unsigned flags;
    int sel;             /* promql_parse_selector: match[] rules and wording */
    size_t max_matchers; /* sel: limit on name + matchers */
    const char *str_err; /* sel: a string at str_tok failed to lex (at str_pos) */
    size_t str_tok, str_pos;
    int depth;
    size_t nodes;
    int rc;
    char *err;
    size_t errlen;
} parser_t;

enum { PREC_OR = 1, PREC_AND = 2, PREC_CMP = 3, PREC_ADD = 4, PREC_MUL = 5, PREC_POW = 6 };

/* ---- errors, arena ----------------------------------------------------- */

static void vfail(parser_t *p, int rc, size_t pos, const char *fmt, va_list ap)
{
    if (p->rc)
        return;
    p->rc = rc;
    if (!p->err || !p->errlen)
        return;
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos && i < p->len; i++) {
        if (p->q[i] == '\n' && !p->sel) /* selector.c counted bytes on "line 1" */
            line++, col = 1;
        else
            col++;
    }
    int k = snprintf(p->err, p->errlen, p->sel ? "%zu:%zu: " : "%zu:%zu: parse error: ", line, col);
    if (k >= 0 && (size_t)k < p->errlen)
        vsnprintf(p->err + k, p->errlen - (size_t)k, fmt, ap);
}

/* Record the first error (rc ST_EPARSE or ST_ELIMIT) at pos; returns NULL. */
static void *fail_rc(parser_t *p, int rc, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void *fail_rc(parser_t *p, int rc, size_t pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(p, rc, pos, fmt, ap);
    va_end(ap);
    return NULL;
}
#define fail(p, pos, ...) fail_rc((p), ST_EPARSE, (pos), __VA_ARGS__)
#define fail_limit(p, pos, ...) fail_rc((p), ST_ELIMIT, (pos), __VA_ARGS__)

static void *arena_alloc(parser_t *p, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    blk_t *b = p->e->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 16384 ? n : 16384;
        b = malloc(sizeof *b + cap);
        if (!b) {
            if (!p->rc)
                p->rc = ST_ENOMEM;
            return NULL;
        }
        b->used = 0;
        b->cap = cap;
        b->next = p->e->blocks;
        p->e->blocks = b;
    }
    void *r = b->data + b->used;
    b->used += n;
    memset(r, 0, n);
    return r;
}

static char *arena_str(parser_t *p, const char *s, size_t n)
{
    char *d = arena_alloc(p, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Append elem to the arena array *arr of *n elements (capacity doubles at powers of 2). */
static int arena_push(parser_t *p, void **arr, size_t *n, const void *elem, size_t sz)
{
    if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4, ...: grow */
        size_t cap = *n ? *n * 2 : 2;
        void *na = arena_alloc(p, cap * sz);
        if (!na)
            return -1;
        if (*n)
            memcpy(na, *arr, *n * sz);
        *arr = na;
    }
    memcpy((char *)*arr + *n * sz, elem, sz);
    (*n)++;
    return 0;
}

static promql_node_t *new_node(parser_t *p, promql_kind_t kind, size_t pos)
{
    if (++p->nodes > PROMQL_MAX_NODES)
        return fail_limit(p, pos, "query has too many nodes (max %d)", PROMQL_MAX_NODES);
    inode_t *in = arena_alloc(p, sizeof *in);
    if (!in)
        return NULL;
    in->n.kind = kind;
    in->n.pos = (uint32_t)pos;
    in->depth = 1;
    return &in->n;
}

static uint32_t depth_of(const promql_node_t *n)
{
    return n ? ((const inode_t *)(const void *)n)->depth : 0;
}

/* Set n's depth from its children; fail when the tree is too deep. */
static promql_node_t *seal(parser_t *p, promql_node_t *n)
{
    uint32_t d = 0;
    switch (n->kind) {
    case PROMQL_MATRIX_SELECTOR:
        d = depth_of(n->u.ms.vs);
        break;
    case PROMQL_SUBQUERY:
        d = depth_of(n->u.sq.expr);
        break;
    case PROMQL_UNARY:
        d = depth_of(n->u.unary.expr);
        break;
    case PROMQL_BINARY:
        d = depth_of(n->u.bin.lhs);
        if (depth_of(n->u.bin.rhs) > d)
            d = depth_of(n->u.bin.rhs);
        break;
    case PROMQL_AGGREGATE:
        d = depth_of(n->u.agg.expr);
        if (depth_of(n->u.agg.param) > d)
            d = depth_of(n->u.agg.param);
        break;
    case PROMQL_CALL:
        for (size_t i = 0; i < n->u.call.nargs; i++)
            if (depth_of(n->u.call.args[i]) > d)
                d = depth_of(n->u.call.args[i]);
        break;
    case PROMQL_PAREN:
        ((inode_t *)(void *)n)->depth = depth_of(n->u.paren.expr);
        return n;
    default:
        break;
    }
    ((inode_t *)(void *)n)->depth = d + 1;
    if (d + 1 > PROMQL_MAX_TREE_DEPTH)
        return fail_limit(p, n->pos, "expression nested too deeply (max %d)",
                          PROMQL_MAX_TREE_DEPTH);
    return n;
}

/* ---- tokens ------------------------------------------------------------- */

static const promql_token_t *peek(parser_t *p)
{
    return &p->toks[p->i];
}

static const promql_token_t *peek2(parser_t *p)
{
    return p->toks[p->i].type == PQ_EOF ? &p->toks[p->i] : &p->toks[p->i + 1];
}

static const promql_token_t *next(parser_t *p)
{
    const promql_token_t *t = &p->toks[p->i];
    if (t->type != PQ_EOF)
        p->i++;
    return t;
}

static int tok_is_kw(parser_t *p, const promql_token_t *t, const char *kw)
{
    size_t n = strlen(kw);
    return t->type == PQ_IDENT && t->len == n && strncasecmp(p->q + t->pos, kw, n) == 0;
}

static void *unexpected(parser_t *p, const promql_token_t *t, const char *ctx)
{
    char d[80];
    promql_tok_describe(p->q, t, d, sizeof d);
    return fail(p, t->pos, "unexpected %s%s%s", d, ctx ? " " : "", ctx ? ctx : "");
}

static int expect(parser_t *p, promql_tok_t type, const char *ctx)
{
    if (peek(p)->type != type) {
        unexpected(p, peek(p), ctx);
        return -1;
    }
    next(p);
    return 0;
}

/* ---- tables ------------------------------------------------------------- */

#define S PROMQL_TYPE_SCALAR
#define V PROMQL_TYPE_VECTOR
#define M PROMQL_TYPE_MATRIX
#define STR PROMQL_TYPE_STRING

/* The aggregation operators, indexed by promql_aggop_t: name, parameter type,
 * flags (functions: promql_funcs.c). */
static const promql_agg_t aggs[] = {
    [PROMQL_AGG_SUM] = {"sum", PROMQL_TYPE_NONE, PROMQL_AGGF_MERGEABLE},
    [PROMQL_AGG_AVG] = {"avg", PROMQL_TYPE_NONE, PROMQL_AGGF_MERGEABLE},
    [PROMQL_AGG_MIN] = {"min", PROMQL_TYPE_NONE, PROMQL_AGGF_MERGEABLE},
    [PROMQL_AGG_MAX] = {"max", PROMQL_TYPE_NONE, PROMQL_AGGF_MERGEABLE},
    [PROMQL_AGG_COUNT] = {"count", PROMQL_TYPE_NONE, PROMQL_AGGF_MERGEABLE},
    [PROMQL_AGG_GROUP] = {"group", PROMQL_TYPE_NONE, PROMQL_AGGF_MERGEABLE},
    [PROMQL_AGG_STDDEV] = {"stddev", PROMQL_TYPE_NONE, 0},
    [PROMQL_AGG_STDVAR] = {"stdvar", PROMQL_TYPE_NONE, 0},
    /* k must be the same number on every node and the router */
    [PROMQL_AGG_TOPK] = {"topk", S, PROMQL_AGGF_MERGEABLE | PROMQL_AGGF_MERGE_NUMBER},
    [PROMQL_AGG_BOTTOMK] = {"bottomk", S, PROMQL_AGGF_MERGEABLE | PROMQL_AGGF_MERGE_NUMBER},
    [PROMQL_AGG_QUANTILE] = {"quantile", S, 0},
    [PROMQL_AGG_COUNT_VALUES] = {"count_values", STR, 0},
    [PROMQL_AGG_LIMITK] = {"limitk", S, PROMQL_AGGF_NO_EVAL},
    [PROMQL_AGG_LIMIT_RATIO] = {"limit_ratio", S, PROMQL_AGGF_NO_EVAL},
};

#define NAGGS (sizeof aggs / sizeof aggs[0])

const promql_agg_t *promql_agg_info(promql_aggop_t op)
{
    static const promql_agg_t unknown = {"?", PROMQL_TYPE_NONE, 0};
    return (size_t)op < NAGGS ? &aggs[op] : &unknown;
}

static int agg_lookup(parser_t *p, const promql_token_t *t)
{
    for (size_t i = 0; i < NAGGS; i++)
        if (tok_is_kw(p, t, aggs[i].name))
            return (int)i;
    return -1;
}

const char *promql_aggop_str(promql_aggop_t op)
{
    return promql_agg_info(op)->name;
}

const char *promql_binop_str(promql_binop_t op)
{
    static const char *const s[] = {"+",  "-", "*",  "/", "%",  "^",   "atan2", "==",
                                    "!=", "<", "<=", ">", ">=", "and", "or",    "unless"};
    return (size_t)op < sizeof s / sizeof s[0] ? s[op] : "?";
}

const char *promql_type_name(promql_type_t t)
{
    switch (t) {
    case S:
        return "scalar";
    case V:
        return "instant vector";
    case M:
        return "range vector";
    case STR:
        return "string";
    default:
        return "none";
    }
}

/* Binary operator at token t, or -1. */
static int binop_of(parser_t *p, const promql_token_t *t, int *prec)
{
    static const struct {
        promql_tok_t tok;
        promql_binop_t op;
        int prec;
    } ops[] = {{PQ_ADD, PROMQL_OP_ADD, PREC_ADD},  {PQ_SUB, PROMQL_OP_SUB, PREC_ADD},
               {PQ_MUL, PROMQL_OP_MUL, PREC_MUL},  {PQ_DIV, PROMQL_OP_DIV, PREC_MUL},
               {PQ_MOD, PROMQL_OP_MOD, PREC_MUL},  {PQ_POW, PROMQL_OP_POW, PREC_POW},
               {PQ_EQLC, PROMQL_OP_EQL, PREC_CMP}, {PQ_NEQ, PROMQL_OP_NEQ, PREC_CMP},
               {PQ_LSS, PROMQL_OP_LSS, PREC_CMP},  {PQ_LTE, PROMQL_OP_LTE, PREC_CMP},
               {PQ_GTR, PROMQL_OP_GTR, PREC_CMP},  {PQ_GTE, PROMQL_OP_GTE, PREC_CMP}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (t->type == ops[i].tok) {
            *prec = ops[i].prec;
            return (int)ops[i].op;
        }
    if (tok_is_kw(p, t, "and"))
        return *prec = PREC_AND, PROMQL_OP_AND;
    if (tok_is_kw(p, t, "unless"))
        return *prec = PREC_AND, PROMQL_OP_UNLESS;
    if (tok_is_kw(p, t, "or"))
        return *prec = PREC_OR, PROMQL_OP_OR;
    if (tok_is_kw(p, t, "atan2"))
        return *prec = PREC_MUL, PROMQL_OP_ATAN2;
    return -1;
}

static int is_setop(promql_binop_t op)
{
    return op >= PROMQL_OP_AND;
}

/* ---- selectors ---------------------------------------------------------- */

/* Regexes are compiled where they are used (the nodes' index), with these
 * flags; a bad one is a parse error here, as in Prometheus. */
static int valid_regex(parser_t *p, const promql_token_t *v)
{
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)v->str, v->slen,
                                   PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_DOTALL,
                                   &ec, &eo, NULL);
    if (re) {
        pcre2_code_free(re);
        return 1;
    }
    PCRE2_UCHAR why[128];
    if (pcre2_get_error_message(ec, why, sizeof why) < 0)
        snprintf((char *)why, sizeof why, "error %d", ec);
    fail(p, v->pos, "error parsing regexp: %s at offset %zu", (const char *)why, (size_t)eo);
    return 0;
}

/*
 * Does the matcher match the empty string? Regexes are not compiled here, so
 * =~ / !~ are judged syntactically: "", ".*", "^.*$" and ".*?" match empty.
 */
static int matches_empty(const st_matcher_t *m)
{
    const char *v = m->value;
    int re_empty = !strcmp(v, "") || !strcmp(v, ".*") || !strcmp(v, "^.*$") || !strcmp(v, ".*?") ||
                   !strcmp(v, "(.*)");
    switch (m->type) {
    case ST_MATCH_EQ:
        return v[0] == '\0';
    case ST_MATCH_NE:
        return v[0] != '\0';
    case ST_MATCH_RE:
        return re_empty;
    default:
        return !re_empty;
    }
}

/* `or` between matcher sets (MetricsQL); a plain label name for match[]. */
static int is_or(parser_t *p, const promql_token_t *t)
{
    return !p->sel && tok_is_kw(p, t, "or");
}

/* Selector mode: does t stand for a string that failed to lex? Then report
 * why (1). */
static int sel_str_err(parser_t *p, const promql_token_t *t)
{
    if (!p->sel || !p->str_err || t->type != PQ_EOF || t->pos != p->str_tok)
        return 0;
    fail(p, p->str_pos, "%s", p->str_err);
    return 1;
}

/* Selector mode: t is not what the matcher list needs here. The end of the
 * input, or the character at t (a token the selector grammar has no use for,
 * or one the lexer rejected: the input was lexed up to it). */
static void *sel_bad(parser_t *p, const promql_token_t *t, const char *what)
{
    if (t->pos >= p->len)
        return fail(p, t->pos, "unexpected end of input inside braces");
    if (!what)
        return fail(p, t->pos, "unexpected character '%c' in label matcher", p->q[t->pos]);
    return fail(p, t->pos, "%s", what);
}

static promql_node_t *parse_selector(parser_t *p, const promql_token_t *name)
{
    const promql_token_t *first = name ? name : peek(p);
    promql_node_t *n = new_node(p, PROMQL_VECTOR_SELECTOR, first->pos);
    if (!n)
        return NULL;
    n->type = V;
    if (name && !(n->u.vs.name = arena_str(p, p->q + name->pos, name->len)))
        return NULL;
    if (peek(p)->type == PQ_LBRACE) {
        size_t brace = next(p)->pos, count = name != NULL;
        promql_matcher_set_t cur = {0};
        for (;;) {
            const promql_token_t *t = peek(p);
            if (t->type == PQ_RBRACE || t->type == PQ_EOF || is_or(p, t)) {
                /* end of a set; 'or' as a label name is handled below */
                int sep = t->type == PQ_IDENT && peek2(p)->type != PQ_ASSIGN &&
                          peek2(p)->type != PQ_NEQ && peek2(p)->type != PQ_EQ_REGEX &&
                          peek2(p)->type != PQ_NEQ_REGEX;
                if (t->type == PQ_IDENT && !sep)
                    goto matcher;
                if (t->type == PQ_EOF && sel_str_err(p, t))
                    return NULL;
                if (t->type == PQ_EOF)
                    return p->sel ? sel_bad(p, t, NULL) : unexpected(p, t, "inside braces");
                if (cur.n == 0 && (sep || n->u.vs.nsets > 0))
                    return fail(p, t->pos, "empty matcher set in 'or' list");
                if (cur.n > 0 &&
                    arena_push(p, (void **)&n->u.vs.sets, &n->u.vs.nsets, &cur, sizeof cur))
                    return NULL;
                cur = (promql_matcher_set_t){0};
                next(p);
                if (!sep)
                    break;
                continue;
            }
        matcher:;
            st_matcher_t m = {0};
            size_t mpos = t->pos;
            if (t->type == PQ_IDENT) {
                if (!st_prom_label_name_ok(p->q + t->pos, t->len))
                    return fail(p, t->pos, "invalid label name");
                m.name = arena_str(p, p->q + t->pos, t->len);
            } else if (t->type == PQ_STRING) {
                if (!p->sel && (t->slen == 0 || memchr(t->str, '\0', t->slen)))
                    return fail(p, t->pos, "invalid quoted label or metric name");
                if (memchr(t->str, '\0', t->slen)) /* names are C strings from here */
                    return fail(p, t->pos, "NUL byte in quoted label or metric name");
                m.name = arena_str(p, t->str, t->slen);
            } else if (p->sel) {
                return sel_bad(p, t, NULL);
            } else {
                return unexpected(p, t, "in label matching, expected label name");
            }
            if (!m.name)
                return NULL;
            next(p);
            const promql_token_t *op = peek(p), *end = t;
            if (t->type == PQ_STRING &&
                (op->type == PQ_COMMA || op->type == PQ_RBRACE || is_or(p, op))) {
                /* {"quoted.metric"} */
                m.type = ST_MATCH_EQ;
                m.value = m.name;
                m.name = ST_METRIC_LABEL;
            } else {
                switch (op->type) {
                case PQ_ASSIGN:
                    m.type = ST_MATCH_EQ;
                    break;
                case PQ_NEQ:
                    m.type = ST_MATCH_NE;
                    break;
                case PQ_EQ_REGEX:
                    m.type = ST_MATCH_RE;
                    break;
                case PQ_NEQ_REGEX:
                    m.type = ST_MATCH_NRE;
                    break;
                case PQ_EQLC: /* "==": for match[], '=' then a bad value */
                    if (p->sel)
                        return fail(p, op->pos + 1,
                                    "expected a quoted string as label matcher value");
                    /* fall through */
                default:
                    if (p->sel)
                        return sel_bad(
                            p, op, "expected a matcher operator (=, !=, =~, !~) after label name");
                    return unexpected(p, op, "in label matching, expected label matching operator");
                }
                next(p);
                const promql_token_t *v = peek(p);
                if (v->type != PQ_STRING && sel_str_err(p, v))
                    return NULL;
                if (v->type != PQ_STRING)
                    return p->sel
                               ? fail(p, v->pos, "expected a quoted string as label matcher value")
                               : unexpected(p, v, "in label matching, expected string");
                next(p);
                /* a value is a C string from here: "1\x00x" would match "1" */
                if (memchr(v->str, '\0', v->slen))
                    return fail(p, v->pos, "NUL byte in label matcher value");
                if (!(m.value = arena_str(p, v->str, v->slen)))
                    return NULL;
                if ((m.type == ST_MATCH_RE || m.type == ST_MATCH_NRE) && !p->sel &&
                    !valid_regex(p, v))
                    return NULL;
                end = v;
            }
            if (n->u.vs.name && !p->sel && !strcmp(m.name, ST_METRIC_LABEL))
                return fail(p, mpos, "metric name must not be set twice: \"%s\"", n->u.vs.name);
            if (p->sel && ++count > p->max_matchers)
                return fail_limit(p, end->pos + end->len, "too many label matchers (max %zu)",
                                  p->max_matchers);
            if (arena_push(p, (void **)&cur.m, &cur.n, &m, sizeof m))
                return NULL;
            t = peek(p);
            if (t->type == PQ_COMMA)
                next(p);
            else if (t->type != PQ_RBRACE && !is_or(p, t))
                return p->sel ? sel_bad(p, t, "expected ',' or '}' in label matchers")
                              : unexpected(p, t, "in label matching, expected \",\" or \"}\"");
        }
        if (!n->u.vs.name && !p->sel) {
            for (size_t s = 0; s < n->u.vs.nsets; s++) {
                int ok = 0;
                for (size_t i = 0; i < n->u.vs.sets[s].n && !ok; i++)
                    ok = !matches_empty(&n->u.vs.sets[s].m[i]);
                if (!ok)
                    return fail(p, brace,
                                "vector selector must contain at least one non-empty matcher");
            }
            if (n->u.vs.nsets == 0)
                return fail(p, brace,
                            "vector selector must contain at least one non-empty matcher");
        }
    }
    return n;
}

/* ---- durations, offsets, @ ---------------------------------------------- */

/* A duration token, or a number of seconds. */
static int parse_duration(parser_t *p, int64_t *ms, int allow_sign, const char *ctx)
{
    int neg = 0;
    const promql_token_t *t = peek(p);
    if (allow_sign && (t->type == PQ_SUB || t->type == PQ_ADD)) {
        neg = t->type == PQ_SUB;
        next(p);
        t = peek(p);
    }
    if (t->type == PQ_DURATION) {
        *ms = t->ms;
    } else if (t->type == PQ_NUMBER) {
        double v = t->num * 1000.0;
        if (!(v >= 0 && v < 9.2e18))
            return fail(p, t->pos, "duration out of range"), -1;
        *ms = (int64_t)llround(v);
    } else {
        unexpected(p, t, ctx);
        return -1;
    }
    next(p);
    if (neg)
        *ms = -*ms;
    return 0;
}

static int parse_labels(parser_t *p, promql_labels_t *out, const char *ctx)
{
    if (expect(p, PQ_LPAREN, ctx))
        return -1;
    for (;;) {
        const promql_token_t *t = peek(p);
        if (t->type == PQ_RPAREN) {
            next(p);
            return 0;
        }
        const char *name;
        if (t->type == PQ_IDENT) {
            if (!st_prom_label_name_ok(p->q + t->pos, t->len)) {
                fail(p, t->pos, "invalid label name in grouping");
                return -1;
            }
            name = arena_str(p, p->q + t->pos, t->len);
        } else if (t->type == PQ_STRING) {
            if (t->slen == 0 || memchr(t->str, '\0', t->slen)) {
                fail(p, t->pos, "invalid label name in grouping");
                return -1;
            }
            name = arena_str(p, t->str, t->slen);
        } else {
            unexpected(p, t, "in grouping opts, expected label");
            return -1;
        }
        if (!name || arena_push(p, (void **)&out->names, &out->n, &name, sizeof name))
            return -1;
        next(p);
        t = peek(p);
        if (t->type == PQ_COMMA)
            next(p);
        else if (t->type != PQ_RPAREN) {
            unexpected(p, t, "in grouping opts, expected \",\" or \")\"");
            return -1;
        }
    }
}

static promql_node_t *parse_expr(parser_t *p, int min_prec);

/* ---- calls and aggregations --------------------------------------------- */

static int parse_args(parser_t *p, promql_node_t ***args, size_t *nargs, const char *ctx)
{
    if (expect(p, PQ_LPAREN, ctx))
        return -1;
    if (peek(p)->type == PQ_RPAREN) {
        next(p);
        return 0;
    }
    for (;;) {
        promql_node_t *a = parse_expr(p, 1);
        if (!a || arena_push(p, (void **)args, nargs, &a, sizeof a))
            return -1;
        const promql_token_t *t = peek(p);
        if (t->type == PQ_COMMA) {
            next(p);
            continue;
        }
        if (t->type == PQ_RPAREN) {
            next(p);
            return 0;
        }
        unexpected(p, t, ctx);
        return -1;
    }
}

static promql_node_t *parse_call(parser_t *p, const promql_token_t *name)
{
    promql_node_t *n = new_node(p, PROMQL_CALL, name->pos);
    if (!n)
        return NULL;
    const promql_func_t *f = promql_func_lookup(p->q + name->pos, name->len);
    if (!f && !(p->flags & PROMQL_F_LAX_FUNCS))
        return fail(p, name->pos, "unknown function with name \"%.*s\"", (int)name->len,
                    p->q + name->pos);
    n->u.call.func = f;
    if (!(n->u.call.name = arena_str(p, p->q + name->pos, name->len)))
        return NULL;
    if (parse_args(p, &n->u.call.args, &n->u.call.nargs, "in function call"))
        return NULL;
    size_t got = n->u.call.nargs;
    if (!f) {
        n->type = V;
        return seal(p, n);
    }
    n->type = f->ret;
    if (f->variadic == 0 && got != (size_t)f->nargs)
        return fail(p, name->pos, "expected %d argument(s) in call to \"%s\", got %zu", f->nargs,
                    f->name, got);
    if (f->variadic != 0) {
        size_t min = (size_t)f->nargs - 1;
        if (got < min)
            return fail(p, name->pos,
                        "expected at least %zu argument(s) in call to \"%s\", got %zu", min,
                        f->name, got);
        if (f->variadic > 0 && got > min + (size_t)f->variadic)
            return fail(p, name->pos, "expected at most %zu argument(s) in call to \"%s\", got %zu",
                        min + (size_t)f->variadic, f->name, got);
    }
    for (size_t i = 0; i < got; i++) {
        promql_type_t want = f->args[i < (size_t)f->nargs ? i : (size_t)f->nargs - 1];
        promql_node_t *a = n->u.call.args[i];
        if (want == M && a->kind == PROMQL_VECTOR_SELECTOR) {
            /* MetricsQL: rate(m) — window omitted, the evaluator uses the step */
            promql_node_t *ms = new_node(p, PROMQL_MATRIX_SELECTOR, a->pos);
            if (!ms)
                return NULL;
            ms->type = M;
            ms->u.ms.vs = a;
            ms->u.ms.window_omitted = 1;
            n->u.call.args[i] = a = seal(p, ms);
            if (!a)
                return NULL;
        }
        if (a->type != want)
            return fail(p, a->pos, "expected type %s in call to function \"%s\", got %s",
                        promql_type_name(want), f->name, promql_type_name(a->type));
    }
    return seal(p, n);
}

static promql_node_t *parse_aggregate(parser_t *p, const promql_token_t *name, int op)
{
    promql_node_t *n = new_node(p, PROMQL_AGGREGATE, name->pos);
    if (!n)
        return NULL;
    n->type = V;
    n->u.agg.op = (promql_aggop_t)op;
    for (int pass = 0; pass < 2; pass++) {
        const promql_token_t *t = peek(p);
        if (pass == 1 && n->u.agg.grouping != PROMQL_GROUP_NONE)
            break;
        if (tok_is_kw(p, t, "by") || tok_is_kw(p, t, "without")) {
            n->u.agg.grouping = tok_is_kw(p, t, "by") ? PROMQL_GROUP_BY : PROMQL_GROUP_WITHOUT;
            next(p);
            if (parse_labels(p, &n->u.agg.labels, "in grouping opts, expected \"(\""))
                return NULL;
        }
        if (pass == 0) {
            promql_node_t **args = NULL;
            size_t nargs = 0;
            if (parse_args(p, &args, &nargs, "in aggregation"))
                return NULL;
            promql_type_t pt = aggs[n->u.agg.op].param;
            size_t want = pt ? 2 : 1;
            if (nargs != want)
                return fail(p, name->pos,
                            "wrong number of arguments for aggregate expression provided, "
                            "expected %zu, got %zu",
                            want, nargs);
            n->u.agg.expr = args[want - 1];
            if (pt) {
                n->u.agg.param = args[0];
                if (args[0]->type != pt)
                    return fail(p, args[0]->pos,
                                "expected type %s in aggregation parameter, got %s",
                                promql_type_name(pt), promql_type_name(args[0]->type));
            }
            if (n->u.agg.expr->type != V)
                return fail(p, n->u.agg.expr->pos,
                            "expected type instant vector in aggregation expression, got %s",
                            promql_type_name(n->u.agg.expr->type));
        }
    }
    return seal(p, n);
}

/* ---- primary and postfix ------------------------------------------------ */

static promql_node_t *parse_primary(parser_t *p)
{
    const promql_token_t *t = peek(p);
    promql_node_t *n;
    switch (t->type) {
    case PQ_NUMBER:
        next(p);
        if (!(n = new_node(p, PROMQL_NUMBER, t->pos)))
            return NULL;
        n->type = S;
        n->u.number = t->num;
        return n;
    case PQ_STRING:
        next(p);
        if (!(n = new_node(p, PROMQL_STRING, t->pos)))
            return NULL;
        n->type = STR;
        n->u.str.len = t->slen;
        if (!(n->u.str.s = arena_str(p, t->str, t->slen)))
            return NULL;
        return n;
    case PQ_LPAREN: {
        next(p);
        if (!(n = new_node(p, PROMQL_PAREN, t->pos)))
            return NULL;
        if (!(n->u.paren.expr = parse_expr(p, 1)))
            return NULL;
        n->type = n->u.paren.expr->type;
        if (expect(p, PQ_RPAREN, "in paren expression, expected \")\""))
            return NULL;
        return seal(p, n);
    }
    case PQ_LBRACE:
        return parse_selector(p, NULL);
    case PQ_IDENT: {
        if (tok_is_kw(p, t, "inf") || tok_is_kw(p, t, "nan")) {
            next(p);
            if (!(n = new_node(p, PROMQL_NUMBER, t->pos)))
                return NULL;
            n->type = S;
            n->u.number = tok_is_kw(p, t, "inf") ? INFINITY : NAN;
            return n;
        }
        int prec, agg = agg_lookup(p, t);
        if (agg >= 0) {
            next(p);
            return parse_aggregate(p, t, agg);
        }
        if (binop_of(p, t, &prec) >= 0)
            return unexpected(p, t, NULL);
        next(p);
        if (peek(p)->type == PQ_LPAREN)
            return parse_call(p, t);
        return parse_selector(p, t);
    }
    default:
        return unexpected(p, t, NULL);
    }
}

static int parse_at(parser_t *p, promql_at_t *at)
{
    const promql_token_t *t = peek(p);
    if (tok_is_kw(p, t, "start") || tok_is_kw(p, t, "end")) {
        at->kind = tok_is_kw(p, t, "start") ? PROMQL_AT_START : PROMQL_AT_END;
        next(p);
        if (expect(p, PQ_LPAREN, "in @ modifier, expected \"(\"") ||
            expect(p, PQ_RPAREN, "in @ modifier, expected \")\""))
            return -1;
        return 0;
    }
    int neg = 0;
    if (t->type == PQ_SUB || t->type == PQ_ADD) {
        neg = t->type == PQ_SUB;
        next(p);
        t = peek(p);
    }
    if (tok_is_kw(p, t, "inf") || tok_is_kw(p, t, "nan")) {
        fail(p, t->pos, "timestamp out of bounds for @ modifier");
        return -1;
    }
    if (t->type != PQ_NUMBER) {
        unexpected(p, t, "in @ modifier, expected number, start() or end()");
        return -1;
    }
    double v = neg ? -t->num : t->num;
    if (!isfinite(v) || fabs(v) > 9.2e15) {
        fail(p, t->pos, "timestamp out of bounds for @ modifier");
        return -1;
    }
    at->kind = PROMQL_AT_TS;
    at->ts = v;
    next(p);
    return 0;
}

static promql_node_t *parse_postfix(parser_t *p, promql_node_t *n)
{
    for (;;) {
        const promql_token_t *t = peek(p);
        if (t->type == PQ_LBRACKET) {
            next(p);
            int64_t range, step = 0;
            if (parse_duration(p, &range, 0, "in range, expected duration"))
                return NULL;
            if (range <= 0)
                return fail(p, t->pos, "range must be greater than 0");
            if (peek(p)->type == PQ_COLON) {
                next(p);
                if (peek(p)->type != PQ_RBRACKET) {
                    if (parse_duration(p, &step, 0, "in subquery, expected duration"))
                        return NULL;
                    if (step <= 0)
                        return fail(p, t->pos, "subquery step must be greater than 0");
                }
                if (expect(p, PQ_RBRACKET, "in subquery, expected \"]\""))
                    return NULL;
                if (n->type != V)
                    return fail(p, t->pos, "subquery is only allowed on instant vector, got %s",
                                promql_type_name(n->type));
                promql_node_t *sq = new_node(p, PROMQL_SUBQUERY, n->pos);
                if (!sq)
                    return NULL;
                sq->type = M;
                sq->u.sq.expr = n;
                sq->u.sq.range_ms = range;
                sq->u.sq.step_ms = step;
                if (!(n = seal(p, sq)))
                    return NULL;
                continue;
            }
            if (expect(p, PQ_RBRACKET, "in range, expected \"]\""))
                return NULL;
            if (n->kind != PROMQL_VECTOR_SELECTOR)
                return fail(p, t->pos, "ranges only allowed for vector selectors");
            if (n->u.vs.has_offset)
                return fail(p, t->pos, "no offset modifiers allowed before range");
            if (n->u.vs.at.kind != PROMQL_AT_NONE)
                return fail(p, t->pos, "no @ modifiers allowed before range");
            promql_node_t *ms = new_node(p, PROMQL_MATRIX_SELECTOR, n->pos);
            if (!ms)
                return NULL;
            ms->type = M;
            ms->u.ms.vs = n;
            ms->u.ms.range_ms = range;
            if (!(n = seal(p, ms)))
                return NULL;
        } else if (tok_is_kw(p, t, "offset") || t->type == PQ_AT) {
            int is_off = t->type != PQ_AT;
            next(p);
            int *has_off;
            int64_t *off;
            promql_at_t *at;
            if (n->kind == PROMQL_VECTOR_SELECTOR || n->kind == PROMQL_MATRIX_SELECTOR) {
                promql_node_t *vs = n->kind == PROMQL_VECTOR_SELECTOR ? n : n->u.ms.vs;
                has_off = &vs->u.vs.has_offset, off = &vs->u.vs.offset_ms, at = &vs->u.vs.at;
            } else if (n->kind == PROMQL_SUBQUERY) {
                has_off = &n->u.sq.has_offset, off = &n->u.sq.offset_ms, at = &n->u.sq.at;
            } else {
                return fail(p, t->pos,
                            "%s modifier must be preceded by an instant vector selector or range "
                            "vector selector or a subquery",
                            is_off ? "offset" : "@");
            }
            if (is_off) {
                if (*has_off)
                    return fail(p, t->pos, "offset may not be set multiple times");
                if (parse_duration(p, off, 1, "in offset, expected duration"))
                    return NULL;
                *has_off = 1;
            } else {
                if (at->kind != PROMQL_AT_NONE)
                    return fail(p, t->pos, "@ <timestamp> may not be set multiple times");
                if (parse_at(p, at))
                    return NULL;
            }
        } else if (tok_is_kw(p, t, "keep_metric_names") && n->kind == PROMQL_CALL) {
            if (n->u.call.keep_metric_names)
                return unexpected(p, t, NULL);
            next(p);
            n->u.call.keep_metric_names = 1;
        } else {
            return n;
        }
    }
}

/* ---- unary and binary --------------------------------------------------- */

static promql_node_t *parse_unary(parser_t *p)
{
    const promql_token_t *t = peek(p);
    if (t->type != PQ_ADD && t->type != PQ_SUB) {
        promql_node_t *n = parse_primary(p);
        return n ? parse_postfix(p, n) : NULL;
    }
    next(p);
    promql_node_t *e = parse_expr(p, PREC_POW);
    if (!e)
        return NULL;
    if (e->kind == PROMQL_NUMBER) { /* fold -1 into a literal, as Prometheus does */
        if (t->type == PQ_SUB)
            e->u.number = -e->u.number;
        e->pos = t->pos;
        return e;
    }
    if (e->type != S && e->type != V)
        return fail(p, t->pos,
                    "unary expression only allowed on expressions of type scalar or instant "
                    "vector, got \"%s\"",
                    promql_type_name(e->type));
    promql_node_t *n = new_node(p, PROMQL_UNARY, t->pos);
    if (!n)
        return NULL;
    n->type = e->type;
    n->u.unary.op = t->type == PQ_SUB ? PROMQL_OP_SUB : PROMQL_OP_ADD;
    n->u.unary.expr = e;
    return seal(p, n);
}

static promql_node_t *check_binary(parser_t *p, promql_node_t *n, size_t oppos)
{
    promql_binop_t op = n->u.bin.op;
    promql_type_t lt = n->u.bin.lhs->type, rt = n->u.bin.rhs->type;
    if (n->u.bin.bool_mod && !promql_binop_is_cmp(op))
        return fail(p, oppos, "bool modifier can only be used on comparison operators");
    if (promql_binop_is_cmp(op) && !n->u.bin.bool_mod && lt == S && rt == S)
        return fail(p, oppos, "comparisons between scalars must use BOOL modifier");
    if ((lt != S && lt != V) || (rt != S && rt != V))
        return fail(p, oppos,
                    "binary expression must contain only scalar and instant vector types");
    if ((lt != V || rt != V) && n->u.bin.has_matching)
        return fail(p, oppos, "vector matching only allowed between instant vectors");
    if (is_setop(op) && (lt == S || rt == S))
        return fail(p, oppos, "set operator \"%s\" not allowed in binary scalar expression",
                    promql_binop_str(op));
    if (is_setop(op) &&
        (n->u.bin.card == PROMQL_CARD_MANY_TO_ONE || n->u.bin.card == PROMQL_CARD_ONE_TO_MANY))
        return fail(p, oppos, "no grouping allowed for \"%s\" operation", promql_binop_str(op));
    if (is_setop(op))
        n->u.bin.card = PROMQL_CARD_MANY_TO_MANY;
    if (n->u.bin.on)
        for (size_t i = 0; i < n->u.bin.include.n; i++)
            for (size_t j = 0; j < n->u.bin.match.n; j++)
                if (!strcmp(n->u.bin.include.names[i], n->u.bin.match.names[j]))
                    return fail(p, oppos,
                                "label \"%s\" must not occur in ON and GROUP clause at once",
                                n->u.bin.include.names[i]);
    n->type = (lt == V || rt == V) ? V : S;
    return seal(p, n);
}

static promql_node_t *parse_expr(parser_t *p, int min_prec)
{
    if (++p->depth > PROMQL_MAX_DEPTH)
        return fail_limit(p, peek(p)->pos, "query nested too deeply (max %d)", PROMQL_MAX_DEPTH);
    promql_node_t *lhs = parse_unary(p);
    while (lhs) {
        const promql_token_t *t = peek(p);
        int prec, op = binop_of(p, t, &prec);
        if (op < 0 || prec < min_prec)
            break;
        next(p);
        promql_node_t *n = new_node(p, PROMQL_BINARY, lhs->pos);
        if (!n)
            return NULL;
        n->u.bin.op = (promql_binop_t)op;
        n->u.bin.lhs = lhs;
        if (tok_is_kw(p, peek(p), "bool")) {
            next(p);
            n->u.bin.bool_mod = 1;
        }
        if (tok_is_kw(p, peek(p), "on") || tok_is_kw(p, peek(p), "ignoring")) {
            n->u.bin.has_matching = 1;
            n->u.bin.on = tok_is_kw(p, next(p), "on");
            if (parse_labels(p, &n->u.bin.match, "in vector matching, expected \"(\""))
                return NULL;
            const promql_token_t *g = peek(p);
            if (tok_is_kw(p, g, "group_left") || tok_is_kw(p, g, "group_right")) {
                n->u.bin.card = tok_is_kw(p, g, "group_left") ? PROMQL_CARD_MANY_TO_ONE
                                                              : PROMQL_CARD_ONE_TO_MANY;
                next(p);
                if (peek(p)->type == PQ_LPAREN &&
                    parse_labels(p, &n->u.bin.include, "in grouping, expected \"(\""))
                    return NULL;
            }
        }
        if (!(n->u.bin.rhs = parse_expr(p, op == PROMQL_OP_POW ? prec : prec + 1)))
            return NULL;
        lhs = check_binary(p, n, t->pos);
    }
    p->depth--;
    return lhs;
}

/* ---- entry points ------------------------------------------------------- */

/* A bare selector (promql_parse_selector): optional metric name, optional
 * {matchers}, nothing after. */
static promql_node_t *parse_bare_selector(parser_t *p)
{
    const promql_token_t *t = peek(p), *name = NULL;
    promql_node_t *n = NULL;
    if (t->type == PQ_IDENT)
        name = next(p);
    if (name || peek(p)->type == PQ_LBRACE)
        n = parse_selector(p, name);
    if (p->rc)
        return NULL;
    t = peek(p);
    if (t->pos < p->len)
        return fail(p, t->pos, "unexpected character '%c' after selector", p->q[t->pos]);
    if (!n || (!n->u.vs.name && n->u.vs.nsets == 0))
        return fail(p, t->pos, "empty selector");
    return n;
}

/* Lex and parse: an expression, or (sel) a bare selector. */
static int parse_text(parser_t *p, const char *q, size_t len, promql_expr_t **out)
{
    *out = NULL;
    if (p->err && p->errlen)
        p->err[0] = '\0';
    if (len > PROMQL_MAX_LEN) {
        fail_limit(p, 0, p->sel ? "selector longer than %d bytes" : "query longer than %d bytes",
                   PROMQL_MAX_LEN);
        return ST_ELIMIT;
    }
    promql_expr_t *e = calloc(1, sizeof *e);
    promql_token_t *toks = malloc((len + 1) * sizeof *toks);
    char *sb = malloc(len + 1);
    int rc = 0;
    if (!e || !toks || !sb) {
        rc = ST_ENOMEM;
        goto out;
    }
    p->e = e;
    p->toks = toks;
    size_t epos = 0, etok = 0;
    char msg[128];
    long nt = promql_lex_ex(q, len, p->sel ? PROMQL_LEX_SELECTOR : 0, toks, sb, &epos, &etok, msg,
                            sizeof msg);
    /* selector mode: parse up to the token the lexer rejected and let the
     * grammar say what it is (a bad string where one may stand reports the
     * lexer's error, see sel_str_err; anything else an unexpected character) */
    if (nt < 0 && p->sel) {
        if (nt == -2) {
            p->str_err = msg;
            p->str_tok = etok;
            p->str_pos = epos;
        }
        char msg2[128];
        nt = promql_lex_ex(q, etok, PROMQL_LEX_SELECTOR, toks, sb, &epos, NULL, msg2, sizeof msg2);
    }
    if (nt < 0) {
        fail(p, epos, "%s", msg);
        rc = p->rc;
        goto out;
    }
    if (p->sel) {
        e->root = parse_bare_selector(p);
    } else if (toks[0].type == PQ_EOF) {
        fail(p, 0, "no expression found in input");
    } else {
        e->root = parse_expr(p, 1);
        if (e->root && peek(p)->type != PQ_EOF)
            unexpected(p, peek(p), NULL);
    }
    rc = p->rc;
out:
    free(toks);
    free(sb);
    if (rc) {
        promql_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

int promql_parse_ex(const char *q, size_t len, unsigned flags, promql_expr_t **out, char *err,
                    size_t errlen)
{
    parser_t p = {.q = q, .len = len, .flags = flags, .err = err, .errlen = errlen};
    return parse_text(&p, q, len, out);
}

int promql_parse_selector(const char *q, size_t len, size_t max_matchers, promql_expr_t **out,
                          char *err, size_t errlen)
{
    parser_t p = {
        .q = q, .len = len, .sel = 1, .max_matchers = max_matchers, .err = err, .errlen = errlen};
    return parse_text(&p, q, len, out);
}

int promql_parse(const char *q, size_t len, promql_expr_t **out, char *err, size_t errlen)
{
    return promql_parse_ex(q, len, 0, out, err, errlen);
}

const promql_node_t *promql_root(const promql_expr_t *e)
{
    return e ? e->root : NULL;
}

void promql_free(promql_expr_t *e)
{
    if (!e)
        return;
    blk_t *b = e->blocks;
    while (b) {
        blk_t *nx = b->next;
        free(b);
        b = nx;
    }
    free(e);
}

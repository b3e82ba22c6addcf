/*
 * sql_parse — lexer and recursive-descent parser of Strata's SQL dialect
 * (grammar in docs/sql.md). The lexer hands out one token at a time from
 * the statement text; the parser builds the AST of sql_int.h in the
 * statement's arena. Expression precedence, lowest first:
 *   OR < AND < NOT < comparison (= <> != < <= > >= ~ !~ ~* !~* LIKE ILIKE
 *   IN BETWEEN IS [NOT] NULL) < + - || < * / % < unary - < postfix ::type
 * Nesting is bounded by SQL_MAX_DEPTH, lists by SQL_MAX_ITEMS, the text by
 * SQL_MAX_LEN. Every error names the byte position (from 1) where it is.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sql_int.h"
#include "st_err.h"

/* ---- arena ---------------------------------------------------------------- */

struct sql_arena_blk {
    sql_arena_blk_t *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

/* Uninitialised arena memory. Blocks grow with the arena (8 KiB, doubling
 * up to 1 MiB): a statement takes one block, an executor's many groups and
 * rows take a few large ones. */
void *sql_alloc_nz(sql_stmt_t *s, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    sql_arena_blk_t *b = s->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = b ? 2 * b->cap : 8192;
        if (cap > ((size_t)1 << 20))
            cap = (size_t)1 << 20;
        if (cap < n)
            cap = n;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = s->arena;
        b->used = 0;
        b->cap = cap;
        s->arena = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

void *sql_alloc(sql_stmt_t *s, size_t n)
{
    void *p = sql_alloc_nz(s, n);
    if (p)
        memset(p, 0, n);
    return p;
}

char *sql_strndup(sql_stmt_t *s, const char *p, size_t n)
{
    char *d = sql_alloc_nz(s, n + 1);
    if (d) {
        if (n)
            memcpy(d, p, n);
        d[n] = 0;
    }
    return d;
}

void sql_arena_free(sql_stmt_t *s)
{
    sql_arena_blk_t *b = s->arena;
    while (b) {
        sql_arena_blk_t *n = b->next;
        free(b);
        b = n;
    }
    s->arena = NULL;
}

void sql_arena_move(sql_stmt_t *to, sql_stmt_t *from)
{
    sql_arena_blk_t **t = &to->arena;
    while (*t)
        t = &(*t)->next;
    *t = from->arena;
    from->arena = NULL;
}

void sql_stmt_free(sql_stmt_t *s)
{
    if (!s)
        return;
    sql_arena_free(s);
    free(s);
}

/* ---- lexer ---------------------------------------------------------------- */

typedef enum {
    T_EOF,
    T_IDENT,  /* bare word (keywords too) */
    T_QIDENT, /* "quoted" */
    T_NUM,
    T_STR,
    T_PARAM,
    T_OP /* punctuation and operators: text in tok */
} tkind_t;

typedef struct parser {
    sql_stmt_t *s;
    const char *p;
    size_t len, at; /* lexer position */
    tkind_t k;      /* current token */
    size_t tpos, tlen;
    char *tstr; /* decoded T_STR / T_QIDENT */
    size_t tstrlen;
    int depth;
    char *err;
    size_t errlen;
    int rc;
    jmp_buf jb;
} parser_t;

static _Noreturn void failf(parser_t *P, int rc, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static _Noreturn void failf(parser_t *P, int rc, size_t pos, const char *fmt, ...)
{
    char msg[SQL_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(P->err, P->errlen, "%s at position %zu: %s",
             rc == ST_EPARSE ? "syntax error" : "error", pos + 1, msg);
    P->rc = rc;
    longjmp(P->jb, 1);
}

static void *palloc(parser_t *P, size_t n)
{
    void *p = sql_alloc(P->s, n);
    if (!p) {
        P->rc = ST_ENOMEM;
        snprintf(P->err, P->errlen, "out of memory");
        longjmp(P->jb, 1);
    }
    return p;
}

static const char *tok_show(parser_t *P, char *buf, size_t cap)
{
    if (P->k == T_EOF)
        return "end of statement";
    snprintf(buf, cap, "'%.*s'", (int)(P->tlen > 40 ? 40 : P->tlen), P->p + P->tpos);
    return buf;
}

static _Noreturn void expected(parser_t *P, const char *what)
{
    char b[64];
    failf(P, ST_EPARSE, P->tpos, "expected %s, got %s", what, tok_show(P, b, sizeof b));
}

static void next(parser_t *P)
{
    const char *p = P->p;
    size_t n = P->len, i = P->at;
    for (;;) {
        while (i < n && isspace((unsigned char)p[i]))
            i++;
        if (i + 1 < n && p[i] == '-' && p[i + 1] == '-') {
            while (i < n && p[i] != '\n')
                i++;
            continue;
        }
        if (i + 1 < n && p[i] == '/' && p[i + 1] == '*') {
            size_t st = i;
            i += 2;
            while (i + 1 < n && !(p[i] == '*' && p[i + 1] == '/'))
                i++;
            if (i + 1 >= n)
                failf(P, ST_EPARSE, st, "unterminated comment");
            i += 2;
            continue;
        }
        break;
    }
    P->tpos = i;
    if (i >= n) {
        P->k = T_EOF;
        P->tlen = 0;
        P->at = i;
        return;
    }
    unsigned char c = (unsigned char)p[i];
    size_t st = i;
    if (isalpha(c) || c == '_' || c >= 0x80) {
        while (i < n && (isalnum((unsigned char)p[i]) || p[i] == '_' || p[i] == '$' ||
                         (unsigned char)p[i] >= 0x80))
            i++;
        P->k = T_IDENT;
    } else if (isdigit(c) || (c == '.' && i + 1 < n && isdigit((unsigned char)p[i + 1]))) {
        while (i < n && isdigit((unsigned char)p[i]))
            i++;
        if (i < n && p[i] == '.') {
            i++;
            while (i < n && isdigit((unsigned char)p[i]))
                i++;
        }
        if (i < n && (p[i] == 'e' || p[i] == 'E')) {
            size_t j = i + 1;
            if (j < n && (p[j] == '+' || p[j] == '-'))
                j++;
            if (j < n && isdigit((unsigned char)p[j])) {
                i = j;
                while (i < n && isdigit((unsigned char)p[i]))
                    i++;
            }
        }
        P->k = T_NUM;
    } else if (c == '\'' || c == '"' || ((c == 'E' || c == 'e') && 0)) {
        char q = (char)c;
        i++;
        char *d = palloc(P, n - i + 1);
        size_t dl = 0;
        for (;;) {
            if (i >= n)
                failf(P, ST_EPARSE, st, "unterminated %s",
                      q == '\'' ? "string literal" : "quoted identifier");
            if (p[i] == q) {
                if (i + 1 < n && p[i + 1] == q) {
                    d[dl++] = q;
                    i += 2;
                    continue;
                }
                i++;
                break;
            }
            d[dl++] = p[i++];
        }
        d[dl] = 0;
        P->tstr = d;
        P->tstrlen = dl;
        P->k = q == '\'' ? T_STR : T_QIDENT;
    } else if (c == '$' && i + 1 < n && isdigit((unsigned char)p[i + 1])) {
        i++;
        while (i < n && isdigit((unsigned char)p[i]))
            i++;
        P->k = T_PARAM;
    } else {
        static const char *const ops[] = {"<>", "!=",  "<=", ">=", "||",
                                          "::", "!~*", "!~", "~*", NULL};
        P->k = T_OP;
        size_t l = 1;
        for (size_t k = 0; ops[k]; k++) {
            size_t ol = strlen(ops[k]);
            if (i + ol <= n && !memcmp(p + i, ops[k], ol)) {
                l = ol;
                break;
            }
        }
        if (l == 1 && !strchr("(),.;*+-/%=<>~[]", c))
            failf(P, ST_EPARSE, i, "unexpected character '%c'", isprint(c) ? c : '?');
        i += l;
    }
    P->tlen = i - st;
    P->at = i;
}

static int is_kw(parser_t *P, const char *kw)
{
    return P->k == T_IDENT && P->tlen == strlen(kw) && !strncasecmp(P->p + P->tpos, kw, P->tlen);
}

static int accept_kw(parser_t *P, const char *kw)
{
    if (!is_kw(P, kw))
        return 0;
    next(P);
    return 1;
}

static void expect_kw(parser_t *P, const char *kw)
{
    if (!accept_kw(P, kw)) {
        char w[48];
        snprintf(w, sizeof w, "%s", kw);
        for (char *c = w; *c; c++)
            *c = (char)toupper((unsigned char)*c);
        expected(P, w);
    }
}

static int is_op(parser_t *P, const char *op)
{
    return P->k == T_OP && P->tlen == strlen(op) && !memcmp(P->p + P->tpos, op, P->tlen);
}

static int accept_op(parser_t *P, const char *op)
{
    if (!is_op(P, op))
        return 0;
    next(P);
    return 1;
}

static void expect_op(parser_t *P, const char *op)
{
    if (!accept_op(P, op)) {
        char w[16];
        snprintf(w, sizeof w, "'%s'", op);
        expected(P, w);
    }
}

/* Words that end an expression or a select item (never an implicit alias). */
static const char *const reserved[] = {
    "select",  "from", "where", "group", "by",   "having", "order",  "limit", "offset",
    "and",     "or",   "not",   "as",    "asc",  "desc",   "in",     "like",  "ilike",
    "between", "is",   "null",  "union", "on",   "join",   "values", "into",  "nulls",
    "within",  "case", "when",  "then",  "else", "end",    NULL};

static int is_reserved(parser_t *P)
{
    if (P->k != T_IDENT)
        return 0;
    for (size_t i = 0; reserved[i]; i++)
        if (is_kw(P, reserved[i]))
            return 1;
    return 0;
}

/* An identifier (bare: as written; "quoted": as written). */
static char *ident(parser_t *P, const char *what)
{
    if (P->k == T_QIDENT) {
        char *r = sql_strndup(P->s, P->tstr, P->tstrlen);
        next(P);
        return r;
    }
    if (P->k != T_IDENT || is_reserved(P))
        expected(P, what);
    char *r = sql_strndup(P->s, P->p + P->tpos, P->tlen);
    next(P);
    return r;
}

/* ---- expressions ---------------------------------------------------------- */

static sql_expr_t *expr(parser_t *P);

static sql_expr_t *mk(parser_t *P, sql_ekind_t k, size_t pos)
{
    sql_expr_t *e = palloc(P, sizeof *e);
    e->kind = k;
    e->pos = pos;
    return e;
}

static sql_expr_t *mk_bin(parser_t *P, int op, sql_expr_t *l, sql_expr_t *r, size_t pos)
{
    sql_expr_t *e = mk(P, E_BIN, pos);
    e->op = op;
    e->args = palloc(P, 2 * sizeof *e->args);
    e->args[0] = l;
    e->args[1] = r;
    e->nargs = 2;
    return e;
}

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* The arguments of f( ... ): bounded list. */
static void call_args(parser_t *P, sql_expr_t *f)
{
    sql_expr_t *tmp[SQL_MAX_ITEMS];
    size_t n = 0;
    if (accept_op(P, "*")) {
        tmp[n++] = mk(P, E_STAR, P->tpos);
    } else if (!is_op(P, ")")) {
        if (accept_kw(P, "distinct"))
            f->distinct = 1;
        do {
            if (n == SQL_MAX_ITEMS)
                failf(P, ST_EPARSE, P->tpos, "too many arguments (max %d)", SQL_MAX_ITEMS);
            tmp[n++] = expr(P);
        } while (accept_op(P, ","));
    }
    expect_op(P, ")");
    f->args = palloc(P, (n ? n : 1) * sizeof *f->args);
    memcpy(f->args, tmp, n * sizeof *tmp);
    f->nargs = n;
}

/* The decimal digits of the current token from offset skip (the input is
 * not NUL-terminated: never strtol past the token); saturates at 10^18. */
static int64_t tok_digits(const parser_t *P, size_t skip)
{
    int64_t v = 0;
    for (size_t i = skip; i < P->tlen; i++) {
        char c = P->p[P->tpos + i];
        if (c < '0' || c > '9')
            break;
        v = v > 100000000000000000LL ? 1000000000000000000LL : v * 10 + (c - '0');
    }
    return v;
}

static sql_expr_t *primary(parser_t *P)
{
    size_t pos = P->tpos;
    sql_expr_t *e;
    if (P->k == T_NUM) {
        e = mk(P, E_LIT, pos);
        char buf[64];
        size_t l = P->tlen < sizeof buf - 1 ? P->tlen : sizeof buf - 1;
        memcpy(buf, P->p + P->tpos, l);
        buf[l] = 0;
        if (strpbrk(buf, ".eE")) {
            e->lit.type = SQL_FLOAT;
            e->lit.u.f = strtod(buf, NULL);
        } else {
            char *end;
            unsigned long long v = strtoull(buf, &end, 10);
            if (P->tlen > 19 || v > (unsigned long long)INT64_MAX) {
                e->lit.type = SQL_FLOAT;
                e->lit.u.f = strtod(buf, NULL);
            } else {
                e->lit.type = SQL_INT;
                e->lit.u.i = (int64_t)v;
            }
        }
        next(P);
        return e;
    }
    if (P->k == T_STR) {
        e = mk(P, E_LIT, pos);
        e->lit.type = SQL_TEXT;
        e->lit.u.t.s = P->tstr;
        e->lit.u.t.len = P->tstrlen;
        next(P);
        return e;
    }
    if (P->k == T_PARAM) {
        e = mk(P, E_PARAM, pos);
        long v = (long)tok_digits(P, 1);
        if (v < 1 || v > SQL_MAX_PARAMS)
            failf(P, ST_EPARSE, pos, "parameter $%ld out of range ($1..$%d)", v, SQL_MAX_PARAMS);
        e->param = (int)v;
        if (e->param > P->s->maxparam)
            P->s->maxparam = e->param;
        next(P);
        return e;
    }
    if (accept_op(P, "(")) {
        e = expr(P);
        expect_op(P, ")");
        return e;
    }
    if (accept_op(P, "*"))
        return mk(P, E_STAR, pos);
    if (P->k == T_IDENT && (is_kw(P, "interval") || is_kw(P, "timestamp") ||
                            is_kw(P, "timestamptz") || is_kw(P, "date"))) {
        int iv = is_kw(P, "interval");
        next(P);
        if (P->k == T_STR) {
            e = mk(P, E_LIT, pos);
            if (iv) {
                e->lit.type = SQL_INTERVAL;
                if (sql_parse_interval(P->tstr, P->tstrlen, &e->lit.u.i))
                    failf(P, ST_EPARSE, P->tpos, "invalid interval '%.40s'", P->tstr);
            } else {
                e->lit.type = SQL_TIME;
                if (sql_parse_time(P->tstr, P->tstrlen, &e->lit.u.i))
                    failf(P, ST_EPARSE, P->tpos, "invalid timestamp '%.40s'", P->tstr);
            }
            next(P);
            return e;
        }
        if (!iv && is_kw(P, "with")) { /* timestamp with time zone 'x' */
            next(P);
            expect_kw(P, "time");
            expect_kw(P, "zone");
            if (P->k != T_STR)
                expected(P, "a timestamp string");
            e = mk(P, E_LIT, pos);
            e->lit.type = SQL_TIME;
            if (sql_parse_time(P->tstr, P->tstrlen, &e->lit.u.i))
                failf(P, ST_EPARSE, P->tpos, "invalid timestamp '%.40s'", P->tstr);
            next(P);
            return e;
        }
        /* a column named like the keyword */
        P->at = pos;
        next(P);
    }
    if (accept_kw(P, "null")) {
        e = mk(P, E_LIT, pos);
        e->lit.type = SQL_NULL;
        return e;
    }
    if (accept_kw(P, "true") || accept_kw(P, "false")) {
        e = mk(P, E_LIT, pos);
        e->lit.type = SQL_BOOL;
        e->lit.u.i = P->p[pos] == 't' || P->p[pos] == 'T';
        return e;
    }
    if (accept_kw(P, "cast")) {
        expect_op(P, "(");
        sql_expr_t *a = expr(P);
        expect_kw(P, "as");
        e = mk(P, E_CAST, pos);
        e->args = palloc(P, sizeof *e->args);
        e->args[0] = a;
        e->nargs = 1;
        e->name = ident(P, "a type name");
        lower(e->name);
        while (P->k == T_IDENT && !is_op(P, ")"))
            next(P); /* "double precision", "with time zone" */
        expect_op(P, ")");
        return e;
    }
    if (is_kw(P, "current_timestamp") || is_kw(P, "current_date") || is_kw(P, "current_user") ||
        is_kw(P, "current_schema") || is_kw(P, "session_user")) {
        e = mk(P, E_FUNC, pos);
        e->name = sql_strndup(P->s, P->p + P->tpos, P->tlen);
        lower(e->name);
        if (!strcmp(e->name, "current_timestamp"))
            e->name = "now";
        next(P);
        if (accept_op(P, "("))
            call_args(P, e);
        return e;
    }
    if (P->k == T_IDENT || P->k == T_QIDENT) {
        int quoted = P->k == T_QIDENT;
        char *name = ident(P, "an expression");
        if (!quoted && accept_op(P, "(")) {
            e = mk(P, E_FUNC, pos);
            lower(name);
            e->name = name;
            call_args(P, e);
            if (accept_kw(P, "within")) {
                expect_kw(P, "group");
                expect_op(P, "(");
                expect_kw(P, "order");
                expect_kw(P, "by");
                e->within = expr(P);
                if (!accept_kw(P, "asc") && accept_kw(P, "desc"))
                    failf(P, ST_EPARSE, pos, "WITHIN GROUP (ORDER BY ... DESC) is not supported");
                expect_op(P, ")");
            }
            return e;
        }
        e = mk(P, E_COL, pos);
        e->name = name;
        while (accept_op(P, ".")) { /* t.col, schema.t.col: keep the last part */
            if (accept_op(P, "*")) {
                e->kind = E_STAR;
                return e;
            }
            e->name = ident(P, "a column name");
        }
        return e;
    }
    expected(P, "an expression");
}

static sql_expr_t *postfix(parser_t *P)
{
    sql_expr_t *e = primary(P);
    while (is_op(P, "::")) {
        size_t pos = P->tpos;
        next(P);
        sql_expr_t *c = mk(P, E_CAST, pos);
        c->args = palloc(P, sizeof *c->args);
        c->args[0] = e;
        c->nargs = 1;
        c->name = ident(P, "a type name");
        lower(c->name);
        if (!strcmp(c->name, "double") && is_kw(P, "precision"))
            next(P);
        if (accept_op(P, "[")) /* ::text[] and the like */
            expect_op(P, "]");
        e = c;
    }
    return e;
}

static void enter(parser_t *P)
{
    if (++P->depth > SQL_MAX_DEPTH)
        failf(P, ST_EPARSE, P->tpos, "expression nested too deeply (max %d)", SQL_MAX_DEPTH);
}

static sql_expr_t *unary(parser_t *P)
{
    size_t pos = P->tpos;
    if (accept_op(P, "-")) {
        enter(P);
        sql_expr_t *e = mk(P, E_NEG, pos);
        e->args = palloc(P, sizeof *e->args);
        e->args[0] = unary(P);
        e->nargs = 1;
        P->depth--;
        return e;
    }
    if (accept_op(P, "+"))
        return unary(P);
    return postfix(P);
}

static sql_expr_t *mul(parser_t *P)
{
    sql_expr_t *l = unary(P);
    for (;;) {
        size_t pos = P->tpos;
        int op = accept_op(P, "*")   ? OP_MUL
                 : accept_op(P, "/") ? OP_DIV
                 : accept_op(P, "%") ? OP_MOD
                                     : -1;
        if (op < 0)
            return l;
        l = mk_bin(P, op, l, unary(P), pos);
    }
}

static sql_expr_t *add(parser_t *P)
{
    sql_expr_t *l = mul(P);
    for (;;) {
        size_t pos = P->tpos;
        int op = accept_op(P, "+")    ? OP_ADD
                 : accept_op(P, "-")  ? OP_SUB
                 : accept_op(P, "||") ? OP_CONCAT
                                      : -1;
        if (op < 0)
            return l;
        l = mk_bin(P, op, l, mul(P), pos);
    }
}

static sql_expr_t *cmp(parser_t *P)
{
    sql_expr_t *l = add(P);
    size_t pos = P->tpos;
    static const struct {
        const char *t;
        int op;
    } ops[] = {{"=", OP_EQ},     {"<>", OP_NE},  {"!=", OP_NE}, {"<=", OP_LE},
               {">=", OP_GE},    {"<", OP_LT},   {">", OP_GT},  {"~*", OP_REI},
               {"!~*", OP_NREI}, {"!~", OP_NRE}, {"~", OP_RE}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (accept_op(P, ops[i].t))
            return mk_bin(P, ops[i].op, l, add(P), pos);
    if (accept_kw(P, "is")) {
        sql_expr_t *e = mk(P, E_ISNULL, pos);
        e->inv = accept_kw(P, "not");
        expect_kw(P, "null");
        e->args = palloc(P, sizeof *e->args);
        e->args[0] = l;
        e->nargs = 1;
        return e;
    }
    int inv = 0;
    if (is_kw(P, "not")) {
        size_t save = P->at;
        tkind_t k = P->k;
        size_t tp = P->tpos, tl = P->tlen;
        next(P);
        if (!is_kw(P, "in") && !is_kw(P, "like") && !is_kw(P, "ilike") && !is_kw(P, "between")) {
            P->at = save, P->k = k, P->tpos = tp, P->tlen = tl;
            return l;
        }
        inv = 1;
    }
    if (accept_kw(P, "in")) {
        expect_op(P, "(");
        sql_expr_t *tmp[SQL_MAX_ITEMS];
        size_t n = 0;
        tmp[n++] = l;
        do {
            if (n == SQL_MAX_ITEMS)
                failf(P, ST_EPARSE, P->tpos, "IN list too long (max %d)", SQL_MAX_ITEMS - 1);
            tmp[n++] = expr(P);
        } while (accept_op(P, ","));
        expect_op(P, ")");
        sql_expr_t *e = mk(P, E_IN, pos);
        e->inv = inv;
        e->args = palloc(P, n * sizeof *e->args);
        memcpy(e->args, tmp, n * sizeof *tmp);
        e->nargs = n;
        return e;
    }
    if (is_kw(P, "like") || is_kw(P, "ilike")) {
        int ci = is_kw(P, "ilike");
        next(P);
        sql_expr_t *e = mk_bin(P, 0, l, add(P), pos);
        e->kind = E_LIKE;
        e->op = ci;
        e->inv = inv;
        return e;
    }
    if (accept_kw(P, "between")) {
        sql_expr_t *lo = add(P);
        expect_kw(P, "and");
        sql_expr_t *hi = add(P);
        sql_expr_t *e = mk(P, E_BETWEEN, pos);
        e->inv = inv;
        e->args = palloc(P, 3 * sizeof *e->args);
        e->args[0] = l, e->args[1] = lo, e->args[2] = hi;
        e->nargs = 3;
        return e;
    }
    return l;
}

static sql_expr_t *notx(parser_t *P)
{
    size_t pos = P->tpos;
    if (accept_kw(P, "not")) {
        enter(P);
        sql_expr_t *e = mk(P, E_NOT, pos);
        e->args = palloc(P, sizeof *e->args);
        e->args[0] = notx(P);
        e->nargs = 1;
        P->depth--;
        return e;
    }
    return cmp(P);
}

static sql_expr_t *andx(parser_t *P)
{
    sql_expr_t *l = notx(P);
    for (;;) {
        size_t pos = P->tpos;
        if (!accept_kw(P, "and"))
            return l;
        l = mk_bin(P, OP_AND, l, notx(P), pos);
    }
}

static sql_expr_t *expr(parser_t *P)
{
    enter(P);
    sql_expr_t *l = andx(P);
    for (;;) {
        size_t pos = P->tpos;
        if (!accept_kw(P, "or"))
            break;
        l = mk_bin(P, OP_OR, l, andx(P), pos);
    }
    P->depth--;
    return l;
}

/* ---- statements ----------------------------------------------------------- */

static sql_expr_t **expr_list(parser_t *P, size_t *n, int **desc)
{
    sql_expr_t *tmp[SQL_MAX_ITEMS];
    int d[SQL_MAX_ITEMS];
    size_t k = 0;
    do {
        if (k == SQL_MAX_ITEMS)
            failf(P, ST_EPARSE, P->tpos, "list too long (max %d)", SQL_MAX_ITEMS);
        tmp[k] = expr(P);
        d[k] = 0;
        if (desc) {
            if (accept_kw(P, "desc"))
                d[k] = 1;
            else
                accept_kw(P, "asc");
            if (accept_kw(P, "nulls") && !accept_kw(P, "first"))
                expect_kw(P, "last");
        }
        k++;
    } while (accept_op(P, ","));
    sql_expr_t **r = palloc(P, k * sizeof *r);
    memcpy(r, tmp, k * sizeof *tmp);
    if (desc) {
        *desc = palloc(P, k * sizeof **desc);
        memcpy(*desc, d, k * sizeof *d);
    }
    *n = k;
    return r;
}

static void table_ref(parser_t *P)
{
    sql_stmt_t *s = P->s;
    s->table = ident(P, "a table name");
    if (accept_op(P, ".")) {
        s->schema = s->table;
        lower(s->schema);
        s->table = ident(P, "a table name");
    }
    if (accept_kw(P, "as"))
        s->alias = ident(P, "an alias");
    else if (P->k == T_IDENT && !is_reserved(P))
        s->alias = ident(P, "an alias");
}

static int64_t count(parser_t *P, const char *what)
{
    if (P->k != T_NUM || memchr(P->p + P->tpos, '.', P->tlen) || P->tlen > 18)
        expected(P, what);
    int64_t v = tok_digits(P, 0);
    next(P);
    return v;
}

static void select_stmt(parser_t *P)
{
    sql_stmt_t *s = P->s;
    s->kind = SQL_SELECT;
    s->tag = "SELECT";
    s->limit = -1;
    if (accept_kw(P, "distinct"))
        s->distinct = 1;
    else
        accept_kw(P, "all");
    sql_expr_t *items[SQL_MAX_ITEMS];
    char *al[SQL_MAX_ITEMS];
    size_t n = 0;
    do {
        if (n == SQL_MAX_ITEMS)
            failf(P, ST_EPARSE, P->tpos, "too many select items (max %d)", SQL_MAX_ITEMS);
        items[n] = expr(P);
        al[n] = NULL;
        if (accept_kw(P, "as"))
            al[n] = ident(P, "an alias");
        else if ((P->k == T_IDENT && !is_reserved(P)) || P->k == T_QIDENT)
            al[n] = ident(P, "an alias");
        n++;
    } while (accept_op(P, ","));
    s->items = palloc(P, n * sizeof *s->items);
    s->aliases = palloc(P, n * sizeof *s->aliases);
    memcpy(s->items, items, n * sizeof *items);
    memcpy(s->aliases, al, n * sizeof *al);
    s->nitems = n;
    if (accept_kw(P, "from"))
        table_ref(P);
    else
        s->table = "";
    if (is_kw(P, "join") || is_kw(P, "inner") || is_kw(P, "left") || is_op(P, ","))
        failf(P, ST_EINVAL, P->tpos, "joins are not supported");
    if (accept_kw(P, "where"))
        s->where = expr(P);
    if (accept_kw(P, "group")) {
        expect_kw(P, "by");
        s->group = expr_list(P, &s->ngroup, NULL);
    }
    if (accept_kw(P, "having"))
        s->having = expr(P);
    if (accept_kw(P, "order")) {
        expect_kw(P, "by");
        s->order = expr_list(P, &s->norder, &s->desc);
    }
    for (int k = 0; k < 2; k++) {
        if (accept_kw(P, "limit")) {
            if (accept_kw(P, "all"))
                s->limit = -1;
            else
                s->limit = count(P, "a row count");
        }
        if (accept_kw(P, "offset")) {
            s->offset = count(P, "a row count");
            if (!accept_kw(P, "rows"))
                accept_kw(P, "row");
        }
    }
    if (is_kw(P, "union"))
        failf(P, ST_EINVAL, P->tpos, "UNION is not supported");
}

static void insert_stmt(parser_t *P)
{
    sql_stmt_t *s = P->s;
    s->kind = SQL_INSERT;
    s->tag = "INSERT";
    expect_kw(P, "into");
    table_ref(P);
    char *cols[SQL_MAX_ITEMS];
    size_t nc = 0;
    if (accept_op(P, "(")) {
        do {
            if (nc == SQL_MAX_ITEMS)
                failf(P, ST_EPARSE, P->tpos, "too many columns (max %d)", SQL_MAX_ITEMS);
            cols[nc++] = ident(P, "a column name");
        } while (accept_op(P, ","));
        expect_op(P, ")");
    } else {
        failf(P, ST_EINVAL, P->tpos,
              "INSERT needs its column list: INSERT INTO t (time, tag..., field...) VALUES (...)");
    }
    s->cols = palloc(P, nc * sizeof *s->cols);
    memcpy(s->cols, cols, nc * sizeof *cols);
    s->ncols = nc;
    expect_kw(P, "values");
    size_t cap = 16;
    s->vals = palloc(P, cap * nc * sizeof *s->vals);
    do {
        size_t rpos = P->tpos;
        if (s->nrows == SQL_MAX_INSERT_ROWS)
            failf(P, ST_EPARSE, rpos, "too many rows in one INSERT (max %d)", SQL_MAX_INSERT_ROWS);
        if (s->nrows == cap) {
            sql_expr_t **nv = palloc(P, 2 * cap * nc * sizeof *nv);
            memcpy(nv, s->vals, cap * nc * sizeof *nv);
            s->vals = nv;
            cap *= 2;
        }
        expect_op(P, "(");
        size_t k = 0;
        do {
            if (k == nc)
                failf(P, ST_EINVAL, P->tpos, "row has more values than the %zu columns", nc);
            s->vals[s->nrows * nc + k++] = expr(P);
        } while (accept_op(P, ","));
        if (k != nc)
            failf(P, ST_EINVAL, rpos, "row has %zu values for %zu columns", k, nc);
        expect_op(P, ")");
        s->nrows++;
    } while (accept_op(P, ","));
}

static void statement(parser_t *P)
{
    sql_stmt_t *s = P->s;
    if (P->k == T_EOF || is_op(P, ";")) {
        s->kind = SQL_EMPTY;
        s->tag = "";
        return;
    }
    if (accept_kw(P, "select")) {
        select_stmt(P);
    } else if (accept_kw(P, "show")) {
        s->tag = "SHOW";
        if (accept_kw(P, "tables")) {
            s->kind = SQL_SHOW_TABLES;
        } else if (accept_kw(P, "columns") || accept_kw(P, "fields")) {
            s->kind = SQL_SHOW_COLUMNS;
            if (!accept_kw(P, "from"))
                expect_kw(P, "in");
            table_ref(P);
        } else {
            s->kind = SQL_SHOW_VAR;
            s->table = ident(P, "TABLES, COLUMNS or a setting name");
            lower(s->table);
            while (accept_op(P, "."))
                s->table = ident(P, "a setting name");
        }
    } else if (is_kw(P, "set") || is_kw(P, "reset") || is_kw(P, "discard") ||
               is_kw(P, "deallocate")) {
        s->kind = SQL_SET;
        s->tag = is_kw(P, "set")       ? "SET"
                 : is_kw(P, "reset")   ? "RESET"
                 : is_kw(P, "discard") ? "DISCARD ALL"
                                       : "DEALLOCATE";
        while (P->k != T_EOF && !is_op(P, ";"))
            next(P);
    } else if (is_kw(P, "begin") || is_kw(P, "start") || is_kw(P, "commit") ||
               is_kw(P, "rollback") || is_kw(P, "end") || is_kw(P, "abort")) {
        s->kind = SQL_TXN;
        s->tag = is_kw(P, "begin") || is_kw(P, "start")      ? "BEGIN"
                 : is_kw(P, "rollback") || is_kw(P, "abort") ? "ROLLBACK"
                                                             : "COMMIT";
        while (P->k != T_EOF && !is_op(P, ";"))
            next(P);
    } else if (accept_kw(P, "insert")) {
        insert_stmt(P);
    } else if (accept_kw(P, "delete")) {
        s->kind = SQL_DELETE;
        s->tag = "DELETE";
        expect_kw(P, "from");
        table_ref(P);
        if (accept_kw(P, "where"))
            s->where = expr(P);
    } else {
        expected(P, "SELECT, SHOW, INSERT, DELETE, SET, BEGIN, COMMIT or ROLLBACK");
    }
    accept_op(P, ";");
    if (P->k != T_EOF) {
        if (is_kw(P, "union"))
            failf(P, ST_EINVAL, P->tpos, "UNION is not supported");
        if (P->k != T_EOF && s->kind != SQL_EMPTY)
            failf(P, ST_EPARSE, P->tpos, "expected end of statement (one statement at a time)%s",
                  "");
    }
}

int sql_parse(const char *text, size_t len, sql_stmt_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (len > SQL_MAX_LEN) {
        snprintf(err, errlen, "statement longer than %u bytes", SQL_MAX_LEN);
        return ST_ELIMIT;
    }
    sql_stmt_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return ST_ENOMEM;
    }
    parser_t *P = calloc(1, sizeof *P);
    if (!P) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return ST_ENOMEM;
    }
    P->s = s;
    P->p = text;
    P->len = len;
    P->err = err;
    P->errlen = errlen;
    s->table = "";
    s->schema = "";
    if (setjmp(P->jb)) {
        int rc = P->rc;
        free(P);
        sql_stmt_free(s);
        return rc;
    }
    s->text = sql_strndup(s, text, len);
    if (!s->text) {
        P->rc = ST_ENOMEM;
        longjmp(P->jb, 1);
    }
    next(P);
    statement(P);
    free(P);
    *out = s;
    return 0;
}

sql_kind_t sql_stmt_kind(const sql_stmt_t *s)
{
    return s->kind;
}

const char *sql_stmt_table(const sql_stmt_t *s)
{
    return s->table ? s->table : "";
}

const char *sql_stmt_schema(const sql_stmt_t *s)
{
    return s->schema ? s->schema : "";
}

const char *sql_stmt_tag(const sql_stmt_t *s)
{
    return s->tag ? s->tag : "";
}

int sql_stmt_nparams(const sql_stmt_t *s)
{
    return s->maxparam;
}

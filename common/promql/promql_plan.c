/*
 * promql_plan — marks the subtrees of a query the nodes evaluate (see
 * promql_plan.h and docs/query.md).
 *
 * One walk from the root: a vector-valued subtree that is series-local is
 * marked SERIES and not entered; an aggregation with a mergeable operator
 * over a series-local argument is marked PARTIAL; anything else is entered
 * to look for pushable parts below it. Which functions are series-local and
 * which aggregations merge is read from the function and aggregation tables
 * (PROMQL_FN_LOCAL, PROMQL_AGGF_MERGEABLE; promql.h).
 */
#include "promql_plan.h"

#include <string.h>

#include "st_err.h"

/* A scalar or string that reads no data: literals, arithmetic on them, time(), pi(). */
static int is_const(const promql_node_t *n)
{
    switch (n->kind) {
    case PROMQL_NUMBER:
    case PROMQL_STRING:
        return 1;
    case PROMQL_PAREN:
        return is_const(n->u.paren.expr);
    case PROMQL_UNARY:
        return is_const(n->u.unary.expr);
    case PROMQL_BINARY:
        return is_const(n->u.bin.lhs) && is_const(n->u.bin.rhs);
    case PROMQL_CALL:
        return n->u.call.nargs == 0 && n->u.call.func && (n->u.call.func->flags & PROMQL_FN_CONST);
    default:
        return 0;
    }
}

/* Series-local: evaluating it per shard and joining equals evaluating it
 * once. *sel_only is cleared when anything besides selectors (and the
 * parens, unary minus and scalar arithmetic around them) is involved. */
static int is_local(const promql_node_t *n, int *sel_only)
{
    switch (n->kind) {
    case PROMQL_VECTOR_SELECTOR:
        return 1;
    case PROMQL_MATRIX_SELECTOR:
        *sel_only = 0;
        return 1;
    case PROMQL_SUBQUERY:
        *sel_only = 0;
        return n->u.sq.expr->type == PROMQL_TYPE_VECTOR && is_local(n->u.sq.expr, sel_only);
    case PROMQL_PAREN:
        return is_local(n->u.paren.expr, sel_only);
    case PROMQL_UNARY:
        return n->type == PROMQL_TYPE_VECTOR && is_local(n->u.unary.expr, sel_only);
    case PROMQL_BINARY: {
        const promql_node_t *l = n->u.bin.lhs, *r = n->u.bin.rhs;
        if (n->u.bin.op == PROMQL_OP_AND || n->u.bin.op == PROMQL_OP_OR ||
            n->u.bin.op == PROMQL_OP_UNLESS)
            return 0;
        if (l->type == PROMQL_TYPE_VECTOR && r->type == PROMQL_TYPE_SCALAR)
            return is_const(r) && is_local(l, sel_only);
        if (l->type == PROMQL_TYPE_SCALAR && r->type == PROMQL_TYPE_VECTOR)
            return is_const(l) && is_local(r, sel_only);
        return 0;
    }
    case PROMQL_CALL: {
        if (!n->u.call.func || n->type != PROMQL_TYPE_VECTOR || n->u.call.nargs == 0 ||
            !(n->u.call.func->flags & PROMQL_FN_LOCAL))
            return 0;
        *sel_only = 0;
        for (size_t i = 0; i < n->u.call.nargs; i++) {
            const promql_node_t *a = n->u.call.args[i];
            int ok = (a->type == PROMQL_TYPE_VECTOR || a->type == PROMQL_TYPE_MATRIX)
                         ? is_local(a, sel_only)
                         : is_const(a);
            if (!ok)
                return 0;
        }
        return 1;
    }
    default:
        return 0;
    }
}

static int mergeable(const promql_node_t *n)
{
    unsigned f = promql_agg_info(n->u.agg.op)->flags;
    if (!(f & PROMQL_AGGF_MERGEABLE))
        return 0;
    return !(f & PROMQL_AGGF_MERGE_NUMBER) ||
           (n->u.agg.param && promql_unparen(n->u.agg.param)->kind == PROMQL_NUMBER);
}

static size_t mark(promql_node_t *n, unsigned flags)
{
    int sel_only = 1;
    n->push = PROMQL_PUSH_NONE;
    if (n->type == PROMQL_TYPE_VECTOR && is_local(n, &sel_only)) {
        if (!(sel_only && (flags & PROMQL_PLAN_NO_BARE_SELECTORS))) {
            n->push = PROMQL_PUSH_SERIES;
            return 1;
        }
        return 0;
    }
    switch (n->kind) {
    case PROMQL_AGGREGATE:
        sel_only = 1;
        if (mergeable(n) && n->u.agg.expr->type == PROMQL_TYPE_VECTOR &&
            is_local(n->u.agg.expr, &sel_only)) {
            n->push = PROMQL_PUSH_PARTIAL;
            return 1;
        }
        return (n->u.agg.param ? mark(n->u.agg.param, flags) : 0) + mark(n->u.agg.expr, flags);
    case PROMQL_PAREN:
        return mark(n->u.paren.expr, flags);
    case PROMQL_UNARY:
        return mark(n->u.unary.expr, flags);
    case PROMQL_BINARY:
        return mark(n->u.bin.lhs, flags) + mark(n->u.bin.rhs, flags);
    case PROMQL_SUBQUERY:
        return mark(n->u.sq.expr, flags);
    case PROMQL_CALL: {
        size_t k = 0;
        for (size_t i = 0; i < n->u.call.nargs; i++)
            k += mark(n->u.call.args[i], flags);
        return k;
    }
    default:
        return 0;
    }
}

size_t promql_plan(promql_expr_t *e, unsigned flags)
{
    promql_node_t *root = (promql_node_t *)promql_root(e);
    promql_node_t *n = (promql_node_t *)promql_unparen(root);
    /* An instant topk/bottomk by groups lists the groups in the order their
     * first input series come in; merged partial results do not keep that
     * order, so only its argument is pushed. */
    if ((flags & PROMQL_PLAN_INSTANT) && n->kind == PROMQL_AGGREGATE &&
        (n->u.agg.op == PROMQL_AGG_TOPK || n->u.agg.op == PROMQL_AGG_BOTTOMK) &&
        n->u.agg.grouping != PROMQL_GROUP_NONE) {
        promql_plan_clear(e);
        return mark(n->u.agg.expr, flags);
    }
    return mark(root, flags);
}

static void clear(promql_node_t *n)
{
    n->push = PROMQL_PUSH_NONE;
    switch (n->kind) {
    case PROMQL_AGGREGATE:
        if (n->u.agg.param)
            clear(n->u.agg.param);
        clear(n->u.agg.expr);
        break;
    case PROMQL_PAREN:
        clear(n->u.paren.expr);
        break;
    case PROMQL_UNARY:
        clear(n->u.unary.expr);
        break;
    case PROMQL_BINARY:
        clear(n->u.bin.lhs);
        clear(n->u.bin.rhs);
        break;
    case PROMQL_SUBQUERY:
        clear(n->u.sq.expr);
        break;
    case PROMQL_MATRIX_SELECTOR:
        clear(n->u.ms.vs);
        break;
    case PROMQL_CALL:
        for (size_t i = 0; i < n->u.call.nargs; i++)
            clear(n->u.call.args[i]);
        break;
    default:
        break;
    }
}

void promql_plan_clear(promql_expr_t *e)
{
    clear((promql_node_t *)promql_root(e));
}

int promql_push_parts(const promql_node_t *n)
{
    return n->push == PROMQL_PUSH_PARTIAL && n->u.agg.op == PROMQL_AGG_AVG ? 2 : 1;
}

int promql_push_text(const promql_node_t *n, int part, st_buf_t *b)
{
    if (n->push != PROMQL_PUSH_PARTIAL)
        return promql_format(n, b);
    /* the same aggregation with the operator the node computes */
    promql_node_t tmp = *n;
    if (n->u.agg.op == PROMQL_AGG_AVG)
        tmp.u.agg.op = part == 0 ? PROMQL_AGG_SUM : PROMQL_AGG_COUNT;
    return promql_format(&tmp, b);
}

static int put_json_str(st_buf_t *b, const char *s, size_t len)
{
    int rc = st_buf_put_u8(b, '"');
    for (size_t i = 0; i < len && !rc; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            rc = st_buf_put_u8(b, '\\');
            if (!rc)
                rc = st_buf_put_u8(b, c);
        } else if (c < 0x20) {
            char tmp[8];
            static const char hex[] = "0123456789abcdef";
            tmp[0] = '\\';
            tmp[1] = 'u';
            tmp[2] = '0';
            tmp[3] = '0';
            tmp[4] = hex[c >> 4];
            tmp[5] = hex[c & 15];
            rc = st_buf_append(b, tmp, 6);
        } else {
            rc = st_buf_put_u8(b, c);
        }
    }
    return rc ? rc : st_buf_put_u8(b, '"');
}

static int put_text(st_buf_t *b, const promql_node_t *n, int part)
{
    st_buf_t t;
    st_buf_init(&t);
    int rc = part < 0 ? promql_format(n, &t) : promql_push_text(n, part, &t);
    if (!rc)
        rc = put_json_str(b, t.data ? (const char *)t.data : "", t.len);
    st_buf_deinit(&t);
    return rc;
}

static int explain(const promql_node_t *n, st_buf_t *b, int *first)
{
    if (n->push) {
        int rc = *first ? 0 : st_buf_put_u8(b, ',');
        *first = 0;
        if (!rc)
            rc = n->push == PROMQL_PUSH_SERIES ? ST_BUF_LIT(b, "{\"push\":\"series\",\"expr\":")
                                               : ST_BUF_LIT(b, "{\"push\":\"partial\",\"expr\":");
        if (!rc)
            rc = put_text(b, n, -1);
        if (!rc)
            rc = ST_BUF_LIT(b, ",\"parts\":[");
        for (int p = 0; p < promql_push_parts(n) && !rc; p++) {
            if (p)
                rc = st_buf_put_u8(b, ',');
            if (!rc)
                rc = put_text(b, n, p);
        }
        return rc ? rc : ST_BUF_LIT(b, "]}");
    }
    int rc = 0;
    switch (n->kind) {
    case PROMQL_AGGREGATE:
        if (n->u.agg.param)
            rc = explain(n->u.agg.param, b, first);
        return rc ? rc : explain(n->u.agg.expr, b, first);
    case PROMQL_PAREN:
        return explain(n->u.paren.expr, b, first);
    case PROMQL_UNARY:
        return explain(n->u.unary.expr, b, first);
    case PROMQL_BINARY:
        rc = explain(n->u.bin.lhs, b, first);
        return rc ? rc : explain(n->u.bin.rhs, b, first);
    case PROMQL_SUBQUERY:
        return explain(n->u.sq.expr, b, first);
    case PROMQL_CALL:
        for (size_t i = 0; i < n->u.call.nargs && !rc; i++)
            rc = explain(n->u.call.args[i], b, first);
        return rc;
    default:
        return 0;
    }
}

int promql_plan_explain(const promql_expr_t *e, st_buf_t *b)
{
    int first = 1;
    int rc = st_buf_put_u8(b, '[');
    if (!rc)
        rc = explain(promql_root(e), b, &first);
    return rc ? rc : st_buf_put_u8(b, ']');
}

/*
 * promql_format — print an AST back as canonical PromQL (see promql.h).
 *
 * Canonical form: binary operands that are themselves binary expressions are
 * parenthesized (so precedence is visible: 1 + 2 * 3 -> 1 + (2 * 3)), as are
 * binary operands of unary operators; PAREN nodes print their own parens and
 * are never wrapped again, which makes print -> parse -> print a fixed point.
 */
#include "promql.h"

#include <string.h>

#include "st_err.h"
#include "st_text.h"
#include "st_labels.h"

static int put(st_buf_t *b, const char *s)
{
    return st_buf_append(b, s, strlen(s));
}

static int put_label(st_buf_t *b, const char *name)
{
    return st_prom_label_name_ok(name, strlen(name)) ? put(b, name)
                                                     : promql_fmt_string(b, name, strlen(name));
}

static int put_labels(st_buf_t *b, const promql_labels_t *l)
{
    int rc = put(b, "(");
    for (size_t i = 0; i < l->n && !rc; i++) {
        if (i)
            rc = put(b, ", ");
        if (!rc)
            rc = put_label(b, l->names[i]);
    }
    return rc ? rc : put(b, ")");
}

static int put_mods(st_buf_t *b, int has_offset, int64_t offset_ms, const promql_at_t *at)
{
    int rc = 0;
    if (at->kind == PROMQL_AT_TS) {
        rc = put(b, " @ ");
        if (!rc)
            rc = promql_fmt_number(b, at->ts);
    } else if (at->kind == PROMQL_AT_START) {
        rc = put(b, " @ start()");
    } else if (at->kind == PROMQL_AT_END) {
        rc = put(b, " @ end()");
    }
    if (!rc && has_offset) {
        rc = put(b, " offset ");
        if (!rc)
            rc = st_fmt_duration(b, offset_ms);
    }
    return rc;
}

static int put_selector(st_buf_t *b, const promql_node_t *n)
{
    int rc = 0;
    if (n->u.vs.name)
        rc = put(b, n->u.vs.name);
    if (!rc && (n->u.vs.nsets || !n->u.vs.name)) {
        static const char *const ops[] = {"=", "!=", "=~", "!~"};
        rc = put(b, "{");
        for (size_t s = 0; s < n->u.vs.nsets && !rc; s++) {
            if (s)
                rc = put(b, " or ");
            for (size_t i = 0; i < n->u.vs.sets[s].n && !rc; i++) {
                const st_matcher_t *m = &n->u.vs.sets[s].m[i];
                if (i)
                    rc = put(b, ", ");
                if (!rc)
                    rc = put_label(b, m->name);
                if (!rc)
                    rc = put(b, ops[m->type & 3]);
                if (!rc)
                    rc = promql_fmt_string(b, m->value, strlen(m->value));
            }
        }
        if (!rc)
            rc = put(b, "}");
    }
    return rc;
}

static int fmt(const promql_node_t *n, st_buf_t *b);

static int fmt_wrapped(const promql_node_t *n, st_buf_t *b)
{
    if (n->kind != PROMQL_BINARY)
        return fmt(n, b);
    int rc = put(b, "(");
    if (!rc)
        rc = fmt(n, b);
    return rc ? rc : put(b, ")");
}

static int fmt(const promql_node_t *n, st_buf_t *b)
{
    int rc = 0;
    switch (n->kind) {
    case PROMQL_NUMBER:
        return promql_fmt_number(b, n->u.number);
    case PROMQL_STRING:
        return promql_fmt_string(b, n->u.str.s, n->u.str.len);
    case PROMQL_VECTOR_SELECTOR:
        rc = put_selector(b, n);
        return rc ? rc : put_mods(b, n->u.vs.has_offset, n->u.vs.offset_ms, &n->u.vs.at);
    case PROMQL_MATRIX_SELECTOR: {
        const promql_node_t *vs = n->u.ms.vs;
        rc = put_selector(b, vs);
        if (!rc && !n->u.ms.window_omitted) {
            rc = put(b, "[");
            if (!rc)
                rc = st_fmt_duration(b, n->u.ms.range_ms);
            if (!rc)
                rc = put(b, "]");
        }
        return rc ? rc : put_mods(b, vs->u.vs.has_offset, vs->u.vs.offset_ms, &vs->u.vs.at);
    }
    case PROMQL_SUBQUERY:
        rc = fmt_wrapped(n->u.sq.expr, b);
        if (!rc)
            rc = put(b, "[");
        if (!rc)
            rc = st_fmt_duration(b, n->u.sq.range_ms);
        if (!rc)
            rc = put(b, ":");
        if (!rc && n->u.sq.step_ms)
            rc = st_fmt_duration(b, n->u.sq.step_ms);
        if (!rc)
            rc = put(b, "]");
        return rc ? rc : put_mods(b, n->u.sq.has_offset, n->u.sq.offset_ms, &n->u.sq.at);
    case PROMQL_UNARY:
        rc = put(b, n->u.unary.op == PROMQL_OP_SUB ? "-" : "+");
        return rc ? rc : fmt_wrapped(n->u.unary.expr, b);
    case PROMQL_BINARY:
        rc = fmt_wrapped(n->u.bin.lhs, b);
        if (!rc)
            rc = put(b, " ");
        if (!rc)
            rc = put(b, promql_binop_str(n->u.bin.op));
        if (!rc && n->u.bin.bool_mod)
            rc = put(b, " bool");
        if (!rc && n->u.bin.has_matching) {
            rc = put(b, n->u.bin.on ? " on" : " ignoring");
            if (!rc)
                rc = put_labels(b, &n->u.bin.match);
            if (!rc && n->u.bin.card == PROMQL_CARD_MANY_TO_ONE)
                rc = put(b, " group_left");
            else if (!rc && n->u.bin.card == PROMQL_CARD_ONE_TO_MANY)
                rc = put(b, " group_right");
            if (!rc && (n->u.bin.card == PROMQL_CARD_MANY_TO_ONE ||
                        n->u.bin.card == PROMQL_CARD_ONE_TO_MANY))
                rc = put_labels(b, &n->u.bin.include);
        }
        if (!rc)
            rc = put(b, " ");
        return rc ? rc : fmt_wrapped(n->u.bin.rhs, b);
    case PROMQL_AGGREGATE:
        rc = put(b, promql_aggop_str(n->u.agg.op));
        if (!rc && n->u.agg.grouping != PROMQL_GROUP_NONE) {
            rc = put(b, n->u.agg.grouping == PROMQL_GROUP_BY ? " by " : " without ");
            if (!rc)
                rc = put_labels(b, &n->u.agg.labels);
            if (!rc)
                rc = put(b, " ");
        }
        if (!rc)
            rc = put(b, "(");
        if (!rc && n->u.agg.param) {
            rc = fmt(n->u.agg.param, b);
            if (!rc)
                rc = put(b, ", ");
        }
        if (!rc)
            rc = fmt(n->u.agg.expr, b);
        return rc ? rc : put(b, ")");
    case PROMQL_CALL:
        rc = put(b, n->u.call.name);
        if (!rc)
            rc = put(b, "(");
        for (size_t i = 0; i < n->u.call.nargs && !rc; i++) {
            if (i)
                rc = put(b, ", ");
            if (!rc)
                rc = fmt(n->u.call.args[i], b);
        }
        if (!rc)
            rc = put(b, ")");
        if (!rc && n->u.call.keep_metric_names)
            rc = put(b, " keep_metric_names");
        return rc;
    case PROMQL_PAREN:
        rc = put(b, "(");
        if (!rc)
            rc = fmt(n->u.paren.expr, b);
        return rc ? rc : put(b, ")");
    }
    return ST_EINVAL;
}

int promql_format(const promql_node_t *n, st_buf_t *b)
{
    return n ? fmt(n, b) : ST_EINVAL;
}

/*
 * fuzz_promql_plan — the pushdown planner (promql_plan.h) on arbitrary queries.
 *
 * Input: byte 0 gives the planner flags (bit 0 NO_BARE_SELECTORS, bit 1
 * INSTANT; an empty input plans with 0).
 *   byte 0 < 0x80: the whole input (byte 0 included) is the query text;
 *   byte 0 >= 0x80 (no query starts so): the rest of the input drives a
 *     generator of well-typed queries (selectors, rollups, subqueries,
 *     aggregations, binary and set operators, functions), so random bytes
 *     reach the planner too; bit 2 then parses with PROMQL_F_LAX_FUNCS and
 *     lets the generator use unknown functions.
 * Inputs that do not parse are skipped. Checks, for every pushed subtree n:
 *   - n is an instant vector, marked SERIES or PARTIAL, nothing below it
 *     is marked; a PARTIAL one is a mergeable aggregation (topk/bottomk
 *     with a number literal k), in 2 parts for avg, else 1;
 *   - promql_push_text succeeds for every part, and its output parses
 *     again (strictly: nodes know no unknown functions) as an instant
 *     vector, prints back identically, and plans again as a pushed root of
 *     the same kind (a reparse may fail with ST_ELIMIT only: the canonical
 *     text can be longer or nest deeper than the input);
 * and for the whole query: the count promql_plan returns is the number of
 * marked subtrees, promql_plan_explain succeeds and lists them, planning
 * again gives the same count, promql_plan_clear leaves no mark.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promql.h"
#include "promql_plan.h"
#include "st_buf.h"
#include "st_err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_promql_plan: check failed: %s (line %d)\n  query: %s\n", #c,     \
                    __LINE__, g_query);                                                            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const char *g_query = "";

/* ---- the generator ----------------------------------------------------------- */

typedef struct gen {
    const uint8_t *p, *end;
    char *out;
    size_t len, cap;
    int lax;
} gen_t;

static unsigned pick(gen_t *g, unsigned n)
{
    return g->p < g->end ? (unsigned)(*g->p++ % n) : 0;
}

static void put(gen_t *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(g->out + g->len, g->cap - g->len, fmt, ap);
    va_end(ap);
    if (k > 0)
        g->len = g->len + (size_t)k < g->cap ? g->len + (size_t)k : g->cap - 1;
}

#define ONE_OF(g, arr) ((arr)[pick((g), sizeof(arr) / sizeof((arr)[0]))])

static void gen_vec(gen_t *g, int depth);

static void gen_scalar(gen_t *g, int depth)
{
    static const char *const lits[] = {"2", "0.5", "(3)", "-1", "1e3", "NaN", "Inf", "0"};
    static const char *const ops[] = {"+", "-", "*", "/", "%", "^", "==bool", "> bool"};
    switch (depth > 0 ? pick(g, 6) : 0) {
    case 1:
        put(g, "%s", pick(g, 2) ? "time()" : "pi()");
        break;
    case 2:
        put(g, "scalar(");
        gen_vec(g, depth - 1);
        put(g, ")");
        break;
    case 3:
        put(g, "(");
        gen_scalar(g, depth - 1);
        put(g, " %s ", ONE_OF(g, ops));
        gen_scalar(g, depth - 1);
        put(g, ")");
        break;
    case 4:
        put(g, "-");
        gen_scalar(g, depth - 1);
        break;
    default:
        put(g, "%s", ONE_OF(g, lits));
        break;
    }
}

static void gen_selector(gen_t *g)
{
    static const char *const sels[] = {"x",
                                       "y",
                                       "m{a=\"1\"}",
                                       "{__name__=~\"a|b\"}",
                                       "x{a=\"1\" or b!=\"2\"}",
                                       "h_bucket{le=~\".+\"}"};
    static const char *const mods[] = {"", "", " offset 5m", " @ end()", " @ 100", " offset -1m"};
    put(g, "%s%s", ONE_OF(g, sels), ONE_OF(g, mods));
}

static void gen_range(gen_t *g, int depth)
{
    static const char *const ranges[] = {"[5m]", "[1m]", "[1h]", "[30s] offset 1m",
                                         "[5m] @ start()"};
    static const char *const sq[] = {"[5m:1m]", "[1h:]", "[10m:30s] offset 1m", "[5m:1m] @ end()"};
    if (depth > 0 && pick(g, 3) == 0) {
        put(g, "(");
        gen_vec(g, depth - 1);
        put(g, ")%s", ONE_OF(g, sq));
        return;
    }
    put(g, "%s%s", ONE_OF(g, ((const char *const[]){"x", "y", "m{a=\"1\"}"})), ONE_OF(g, ranges));
}

static void gen_grouping(gen_t *g)
{
    static const char *const gr[] = {"",           " by (a)",     " without (a)",  " by (le)",
                                     " by (a, b)", " without ()", " by (__name__)"};
    put(g, "%s", ONE_OF(g, gr));
}

static void gen_vec(gen_t *g, int depth)
{
    static const char *const rollups[] = {
        "rate",          "irate",          "increase",         "delta",
        "deriv",         "changes",        "resets",           "max_over_time",
        "avg_over_time", "last_over_time", "absent_over_time", "present_over_time"};
    static const char *const aggs[] = {"sum",   "avg",   "min",    "max",
                                       "count", "group", "stddev", "stdvar"};
    static const char *const kaggs[] = {"topk", "bottomk", "limitk"};
    static const char *const ks[] = {"2", "(3)", "1 + 1", "0.5", "-1"};
    static const char *const binops[] = {"+",  "-",  "*",      "/",  "%",    "^",
                                         "==", "!=", "> bool", "<=", "atan2"};
    static const char *const setops[] = {"and", "or", "unless"};
    static const char *const matching[] = {"", " on(a)", " ignoring(b)", " on(a) group_left(b)",
                                           " ignoring(a) group_right"};
    static const char *const funcs[] = {"abs",       "ceil",   "floor",     "exp",
                                        "sqrt",      "sgn",    "timestamp", "sort",
                                        "sort_desc", "absent", "hour",      "day_of_week"};
    if (depth <= 0 || g->p >= g->end) {
        gen_selector(g);
        return;
    }
    switch (pick(g, 16)) {
    case 0:
        gen_selector(g);
        break;
    case 1:
        put(g, "%s(", ONE_OF(g, rollups));
        gen_range(g, depth);
        put(g, ")%s", pick(g, 4) ? "" : " keep_metric_names");
        break;
    case 2:
        switch (pick(g, 3)) {
        case 0:
            put(g, "quantile_over_time(");
            gen_scalar(g, depth - 1);
            put(g, ", ");
            break;
        case 1:
            put(g, "predict_linear(");
            break;
        default:
            put(g, "holt_winters(");
            break;
        }
        gen_range(g, depth);
        put(g, "%s", ONE_OF(g, ((const char *const[]){")", ", 60)", ", 0.5, 0.5)"})));
        break;
    case 3:
    case 4:
        put(g, "%s", ONE_OF(g, aggs));
        gen_grouping(g);
        put(g, " (");
        gen_vec(g, depth - 1);
        put(g, ")");
        break;
    case 5:
        put(g, "%s", ONE_OF(g, kaggs));
        gen_grouping(g);
        put(g, " (");
        if (pick(g, 3))
            put(g, "%s", ONE_OF(g, ks));
        else
            gen_scalar(g, depth - 1);
        put(g, ", ");
        gen_vec(g, depth - 1);
        put(g, ")");
        break;
    case 6:
        switch (pick(g, 3)) {
        case 0:
            put(g, "quantile");
            gen_grouping(g);
            put(g, " (0.9, ");
            break;
        case 1:
            put(g, "count_values");
            gen_grouping(g);
            put(g, " (\"v\", ");
            break;
        default:
            put(g, "histogram_quantile(0.9, ");
            break;
        }
        gen_vec(g, depth - 1);
        put(g, ")");
        break;
    case 7:
    case 8:
        if (pick(g, 2)) {
            gen_vec(g, depth - 1);
            put(g, " %s ", ONE_OF(g, binops));
            gen_scalar(g, depth - 1);
        } else {
            gen_scalar(g, depth - 1);
            put(g, " %s ", ONE_OF(g, binops));
            gen_vec(g, depth - 1);
        }
        break;
    case 9:
        put(g, "(");
        gen_vec(g, depth - 1);
        put(g, " %s%s ", ONE_OF(g, binops), ONE_OF(g, matching));
        gen_vec(g, depth - 1);
        put(g, ")");
        break;
    case 10:
        put(g, "(");
        gen_vec(g, depth - 1);
        put(g, " %s%s ", ONE_OF(g, setops),
            ONE_OF(g, ((const char *const[]){"", " on(a)", " ignoring(b)"})));
        gen_vec(g, depth - 1);
        put(g, ")");
        break;
    case 11:
        put(g, "%s(", ONE_OF(g, funcs));
        gen_vec(g, depth - 1);
        put(g, ")");
        break;
    case 12:
        switch (pick(g, 4)) {
        case 0:
            put(g, "label_replace(");
            gen_vec(g, depth - 1);
            put(g, ", \"d\", \"$1\", \"a\", \"(.*)\")");
            break;
        case 1:
            put(g, "label_join(");
            gen_vec(g, depth - 1);
            put(g, ", \"d\", \"-\", \"a\", \"b\")");
            break;
        case 2:
            put(g, "clamp(");
            gen_vec(g, depth - 1);
            put(g, ", ");
            gen_scalar(g, depth - 1);
            put(g, ", 5)");
            break;
        default:
            put(g, "round(");
            gen_vec(g, depth - 1);
            put(g, ", ");
            gen_scalar(g, depth - 1);
            put(g, ")");
            break;
        }
        break;
    case 13:
        put(g, "vector(");
        gen_scalar(g, depth - 1);
        put(g, ")");
        break;
    case 14:
        if (g->lax) {
            put(g, "unknown_fn(");
            gen_vec(g, depth - 1);
            put(g, ")");
            break;
        }
        put(g, "(");
        gen_vec(g, depth - 1);
        put(g, ")");
        break;
    default:
        put(g, "-");
        gen_vec(g, depth - 1);
        break;
    }
}

/* ---- the checks -------------------------------------------------------------- */

static size_t children(const promql_node_t *n, const promql_node_t **kid, size_t cap)
{
    size_t k = 0;
    switch (n->kind) {
    case PROMQL_AGGREGATE:
        if (n->u.agg.param)
            kid[k++] = n->u.agg.param;
        kid[k++] = n->u.agg.expr;
        break;
    case PROMQL_PAREN:
        kid[k++] = n->u.paren.expr;
        break;
    case PROMQL_UNARY:
        kid[k++] = n->u.unary.expr;
        break;
    case PROMQL_BINARY:
        kid[k++] = n->u.bin.lhs;
        kid[k++] = n->u.bin.rhs;
        break;
    case PROMQL_SUBQUERY:
        kid[k++] = n->u.sq.expr;
        break;
    case PROMQL_MATRIX_SELECTOR:
        kid[k++] = n->u.ms.vs;
        break;
    case PROMQL_CALL:
        for (size_t i = 0; i < n->u.call.nargs && k < cap; i++)
            kid[k++] = n->u.call.args[i];
        break;
    default:
        break;
    }
    return k;
}

static size_t count_marks(const promql_node_t *n)
{
    const promql_node_t *kid[8];
    size_t c = n->push != 0;
    if (n->kind == PROMQL_CALL) {
        for (size_t i = 0; i < n->u.call.nargs; i++)
            c += count_marks(n->u.call.args[i]);
        return c;
    }
    size_t k = children(n, kid, 8);
    for (size_t i = 0; i < k; i++)
        c += count_marks(kid[i]);
    return c;
}

static const promql_node_t *unparen(const promql_node_t *n)
{
    while (n->kind == PROMQL_PAREN)
        n = n->u.paren.expr;
    return n;
}

static void check_part(const promql_node_t *n, int part, unsigned flags)
{
    st_buf_t b;
    st_buf_init(&b);
    int rc = promql_push_text(n, part, &b);
    if (rc == ST_ENOMEM) {
        st_buf_deinit(&b);
        return;
    }
    CHECK(rc == 0 && b.len > 0);
    promql_expr_t *e = NULL;
    char err[256];
    rc = promql_parse((const char *)b.data, b.len, &e, err, sizeof err);
    if (rc == ST_ELIMIT || rc == ST_ENOMEM) {
        st_buf_deinit(&b);
        return;
    }
    if (rc)
        fprintf(stderr, "pushed text does not parse: %.*s: %s\n", (int)b.len, (const char *)b.data,
                err);
    CHECK(rc == 0);
    const promql_node_t *r = promql_root(e);
    CHECK(r->type == PROMQL_TYPE_VECTOR);
    /* canonical: prints back identically */
    st_buf_t b2;
    st_buf_init(&b2);
    CHECK(promql_format(r, &b2) == 0);
    CHECK(b2.len == b.len && memcmp(b2.data, b.data, b.len) == 0);
    st_buf_deinit(&b2);
    /* what a node evaluates is itself pushed whole, the same way */
    CHECK(promql_plan(e, flags & ~PROMQL_PLAN_INSTANT) == 1);
    CHECK(r->push == n->push);
    CHECK(count_marks(r) == 1);
    if (n->push == PROMQL_PUSH_PARTIAL) {
        promql_aggop_t want = n->u.agg.op != PROMQL_AGG_AVG
                                  ? n->u.agg.op
                                  : (part == 0 ? PROMQL_AGG_SUM : PROMQL_AGG_COUNT);
        CHECK(r->kind == PROMQL_AGGREGATE && r->u.agg.op == want);
        CHECK(r->u.agg.grouping == n->u.agg.grouping && r->u.agg.labels.n == n->u.agg.labels.n);
        CHECK(promql_push_parts(r) == 1);
    }
    promql_free(e);
    st_buf_deinit(&b);
}

/* Every outermost marked node: its invariants and parts. Returns how many. */
static size_t check_marks(const promql_node_t *n, unsigned flags)
{
    const promql_node_t *kid[8];
    if (n->push) {
        CHECK(n->type == PROMQL_TYPE_VECTOR);
        CHECK(n->push == PROMQL_PUSH_SERIES || n->push == PROMQL_PUSH_PARTIAL);
        CHECK(count_marks(n) == 1); /* nothing below it */
        int parts = promql_push_parts(n);
        if (n->push == PROMQL_PUSH_PARTIAL) {
            CHECK(n->kind == PROMQL_AGGREGATE);
            promql_aggop_t op = n->u.agg.op;
            CHECK(op == PROMQL_AGG_SUM || op == PROMQL_AGG_AVG || op == PROMQL_AGG_MIN ||
                  op == PROMQL_AGG_MAX || op == PROMQL_AGG_COUNT || op == PROMQL_AGG_GROUP ||
                  op == PROMQL_AGG_TOPK || op == PROMQL_AGG_BOTTOMK);
            if (op == PROMQL_AGG_TOPK || op == PROMQL_AGG_BOTTOMK)
                CHECK(n->u.agg.param && unparen(n->u.agg.param)->kind == PROMQL_NUMBER);
            CHECK(parts == (op == PROMQL_AGG_AVG ? 2 : 1));
        } else {
            CHECK(parts == 1);
            if (flags & PROMQL_PLAN_NO_BARE_SELECTORS)
                CHECK(unparen(n)->kind != PROMQL_VECTOR_SELECTOR);
        }
        for (int p = 0; p < parts; p++)
            check_part(n, p, flags);
        return 1;
    }
    size_t c = 0;
    if (n->kind == PROMQL_CALL) {
        for (size_t i = 0; i < n->u.call.nargs; i++)
            c += check_marks(n->u.call.args[i], flags);
        return c;
    }
    size_t k = children(n, kid, 8);
    for (size_t i = 0; i < k; i++)
        c += check_marks(kid[i], flags);
    return c;
}

static size_t count_substr(const uint8_t *s, size_t len, const char *needle)
{
    size_t nl = strlen(needle), c = 0;
    for (size_t i = 0; i + nl <= len; i++)
        if (!memcmp(s + i, needle, nl))
            c++;
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned flags = size ? data[0] & 3u : 0;
    unsigned pflags = 0;
    const char *q = (const char *)data;
    size_t qlen = size;
    static char gbuf[8192];
    if (size && data[0] >= 0x80) {
        gen_t g = {data + 1, data + size, gbuf, 0, sizeof gbuf, (data[0] & 4) != 0};
        gbuf[0] = 0;
        gen_vec(&g, 1 + (int)pick(&g, 6));
        q = gbuf;
        qlen = g.len;
        if (g.lax)
            pflags = PROMQL_F_LAX_FUNCS;
    }
    promql_expr_t *e = NULL;
    char err[256];
    if (promql_parse_ex(q, qlen, pflags, &e, err, sizeof err) != 0)
        return 0;
    char qcopy[512];
    snprintf(qcopy, sizeof qcopy, "%.*s", (int)(qlen < 500 ? qlen : 500), q);
    g_query = qcopy;

    const promql_node_t *root = promql_root(e);
    size_t n = promql_plan(e, flags);
    CHECK(check_marks(root, flags) == n);
    CHECK(count_marks(root) == n);

    st_buf_t b;
    st_buf_init(&b);
    int rc = promql_plan_explain(e, &b);
    if (rc != ST_ENOMEM) {
        CHECK(rc == 0);
        CHECK(b.len >= 2 && b.data[0] == '[' && b.data[b.len - 1] == ']');
        CHECK(count_substr(b.data, b.len, "{\"push\":") == n);
        /* planning again: the same plan */
        CHECK(promql_plan(e, flags) == n);
        CHECK(count_marks(root) == n);
        st_buf_t b2;
        st_buf_init(&b2);
        if (promql_plan_explain(e, &b2) == 0)
            CHECK(b2.len == b.len && memcmp(b2.data, b.data, b.len) == 0);
        st_buf_deinit(&b2);
    }
    st_buf_deinit(&b);
    promql_plan_clear(e);
    CHECK(count_marks(root) == 0);
    CHECK(promql_plan(e, flags) == n);
    promql_free(e);
    g_query = "";
    return 0;
}

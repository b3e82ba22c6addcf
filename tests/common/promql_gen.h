/*
 * promql_gen.h — random well-typed PromQL queries and AST walks for tests.
 *
 * Shared by tests/unit/test_promql_plan.c (random end-to-end comparisons of
 * pushdown against plain evaluation; choices from a seeded PRNG) and
 * tests/fuzz/fuzz_promql_plan.c (choices from the fuzzer's input bytes).
 * Header-only: everything is static, and marked unused where one of them
 * may not call it.
 *
 * The grammar is data. A nonterminal is a list of alternatives, each a
 * template whose <name> markers stand for other nonterminals (a '<' that
 * does not open such a marker is text, as in "<" and "<="). Generating one
 * picks an alternative through the caller's choose() and expands it. Depth
 * bounds the recursion: the value nonterminals (<v> instant vector, <s>
 * scalar, <d> vector without ties) expand one level deeper than the
 * template that names them, and below depth 1 a nonterminal with a leaf
 * list picks from that instead. The names are those of test_promql_plan's
 * dataset (any name does for the fuzzer).
 *
 * Every alternative says what it is; the caller's flags say what to leave
 * out, so the end-to-end comparison generates only what it can check:
 *   PGEN_INEXACT  left out with PGEN_EXACT: pushdown may answer otherwise
 *                 and still be right (a sum added up per shard differs in
 *                 its last bits, and rounding, %, == or a counter function
 *                 over it magnify that; ties in topk/bottomk and limitk
 *                 pick per shard), see test_e2e_known;
 *   PGEN_EXTRA    left out with PGEN_CORE: more syntax for the fuzzer that
 *                 the end-to-end comparison has never run on its dataset;
 *   PGEN_UNKNOWN  only with PGEN_LAX: a function that parses only with
 *                 PROMQL_F_LAX_FUNCS.
 * No flags: the whole grammar (the fuzzer's).
 */
#ifndef STRATA_TESTS_PROMQL_GEN_H
#define STRATA_TESTS_PROMQL_GEN_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "promql.h"

/* what an alternative is */
enum { PGEN_INEXACT = 1u, PGEN_EXTRA = 2u, PGEN_UNKNOWN = 4u };
/* what the generator leaves out (pgen_t.flags) */
enum { PGEN_EXACT = 1u, PGEN_CORE = 2u, PGEN_LAX = 4u };

typedef struct pgen {
    unsigned (*choose)(void *ctx, unsigned n); /* a number in [0, n); asked for n >= 2 only */
    void *ctx;
    unsigned flags; /* PGEN_EXACT | PGEN_CORE | PGEN_LAX */
    char *out;      /* the query, NUL-terminated */
    size_t cap;     /* of out (at least 1) */
    size_t len;
    int truncated; /* out was too small: the query is cut short */
} pgen_t;

typedef struct pgen_alt {
    const char *t; /* the template */
    unsigned is;   /* PGEN_INEXACT | PGEN_EXTRA | PGEN_UNKNOWN, or 0 */
} pgen_alt_t;

/* ---- the grammar ------------------------------------------------------------- */

/* instant vectors */
static const pgen_alt_t pgen_r_v[] = {
    {"<sel>", 0},
    {"<rcall>", 0},
    {"<sq_rollup>(<subquery>)", 0},
    {"<merge_agg><grouping> (<v>)", 0},
    {"<merge_agg><grouping> (<v>)", 0},
    {"<kagg><grouping> (<k>, <d>)", 0},
    {"<kagg><grouping> (<k>, <v>)", PGEN_INEXACT}, /* ties */
    {"<nagg>", 0},
    {"(<v> <arith> <s>)", 0},
    {"(<s> <arith> <v>)", 0},
    {"<v> <arith> <s>", PGEN_EXTRA},
    {"<s> <arith> <v>", PGEN_EXTRA},
    {"(<v> <arith><matching> <v>)", 0},
    {"(<v> <setop><set_matching> <v>)", 0},
    {"<func>(<v>)", 0},
    {"<call>", 0},
    {"<router_fn>(<v>)", 0},
    {"histogram_quantile(<quantile>, <hist>)", 0},
    {"-(<v>)", 0},
    {"-<v>", PGEN_EXTRA},
    {"(<v>)", PGEN_EXTRA},
    {"vector(<s>)", PGEN_EXTRA},
    {"<param_rollup>", PGEN_EXTRA},
    {"unknown_fn(<v>)", PGEN_UNKNOWN},
};
static const pgen_alt_t pgen_r_v_leaf[] = {{"<sel>", 0}, {"<rcall>", 0}};

/*
 * Instant vectors whose values at a step are (almost surely) all different:
 * the argument of a topk/bottomk. Which of several equal values topk picks
 * depends on the set it picks from, so with ties a partial topk may return
 * other (equally valid) series. No label_replace here drops a label.
 */
static const pgen_alt_t pgen_r_d[] = {
    {"<d_base>", 0},
    {"<d_base>", 0},
    {"<d_agg> (<d>)", 0},
    {"(<d> <d_op>)", 0},
    {"label_replace(<d>, \"x\", \"$1\", \"job\", \"(.*)\")", 0},
    {"<d_sq_rollup>((<d>)[5m:1m])", 0},
    {"<d_kagg> (<d_k>, <d>)", 0},
    {"-(<d>)", 0},
};
static const pgen_alt_t pgen_r_d_leaf[] = {{"<d_base>", 0}};
static const pgen_alt_t pgen_r_d_base[] = {{"cpu", 0},
                                           {"cpu{instance!=\"0\"}", 0},
                                           {"req_total", 0},
                                           {"rate(req_total[5m])", 0},
                                           {"irate(req_total[1m])", 0},
                                           {"rate(lat_bucket[5m])", 0},
                                           {"deriv(cpu[5m])", 0},
                                           {"avg_over_time(cpu[5m])", 0},
                                           {"max_over_time(cpu[10m] offset 1m)", 0},
                                           {"last_over_time(cpu[5m] @ 1500)", 0}};
static const pgen_alt_t pgen_r_d_agg[] = {{"sum by (job)", 0},       {"avg without (instance)", 0},
                                          {"max by (job, code)", 0}, {"min by (instance)", 0},
                                          {"sum without (code)", 0}, {"avg by (le)", 0}};
static const pgen_alt_t pgen_r_d_op[] = {{"* 2", 0}, {"- 0.3", 0}, {"/ -4", 0}, {"+ time()", 0}};
static const pgen_alt_t pgen_r_d_sq_rollup[] = {{"max_over_time", 0}, {"avg_over_time", 0}};
static const pgen_alt_t pgen_r_d_kagg[] = {{"topk", 0}, {"bottomk", 0}};
static const pgen_alt_t pgen_r_d_k[] = {{"1", 0}, {"2", 0}, {"3", 0}, {"4", 0}};

/* scalars */
static const pgen_alt_t pgen_r_s[] = {
    {"<num>", 0},
    {"<num>", 0},
    {"time()", 0},
    {"scalar(<v>)", 0},
    {"(<s> * 2)", 0},
    {"pi()", PGEN_EXTRA},
    {"(<s> <scalar_op> <s>)", PGEN_EXTRA},
    {"-<s>", PGEN_EXTRA},
};
static const pgen_alt_t pgen_r_s_leaf[] = {{"<num>", 0}};
static const pgen_alt_t pgen_r_num[] = {{"2", 0},
                                        {"0.5", 0},
                                        {"10", 0},
                                        {"-1", 0},
                                        {"0.3", 0},
                                        {"(3)", PGEN_EXTRA},
                                        {"1e3", PGEN_EXTRA},
                                        {"NaN", PGEN_EXTRA},
                                        {"Inf", PGEN_EXTRA},
                                        {"0", PGEN_EXTRA}};
static const pgen_alt_t pgen_r_scalar_op[] = {{"+", 0},
                                              {"-", 0},
                                              {"*", 0},
                                              {"/", 0},
                                              {"%", PGEN_INEXACT},
                                              {"^", 0},
                                              {"==bool", PGEN_INEXACT},
                                              {"> bool", 0}};

/* selectors */
static const pgen_alt_t pgen_r_sel[] = {{"<sel_name><sel_mod>", 0}};
static const pgen_alt_t pgen_r_sel_name[] = {
    {"req_total", 0},
    {"req_total{code=\"500\"}", 0},
    {"req_total{job=~\"api|db\"}", 0},
    {"cpu", 0},
    {"cpu{instance!=\"0\"}", 0},
    {"lat_bucket", 0},
    {"info", 0},
    {"nonexistent", 0},
    {"{__name__=~\"cpu|info\"}", PGEN_EXTRA},
    {"req_total{job=\"api\" or code!=\"200\"}", PGEN_EXTRA},
    {"lat_bucket{le=~\".+\"}", PGEN_EXTRA},
};
static const pgen_alt_t pgen_r_sel_mod[] = {{"", 0},
                                            {"", 0},
                                            {"", 0},
                                            {" offset 1m", 0},
                                            {" offset 5m", 0},
                                            {" @ end()", 0},
                                            {" @ start()", 0},
                                            {" @ 1500", 0},
                                            {" offset -1m", PGEN_EXTRA},
                                            {" @ 100", PGEN_EXTRA}};

/* range vectors and what goes over them */
static const pgen_alt_t pgen_r_rcall[] = {
    {"<rollup>(<range>)", 0},
    {"<rollup>(<range>)", 0},
    {"<rollup>(<range>)", 0},
    {"<rollup>(<range>) keep_metric_names", PGEN_EXTRA},
};
static const pgen_alt_t pgen_r_range[] = {
    {"<msel>", 0}, {"<subquery>", PGEN_EXTRA | PGEN_INEXACT}, /* rate() over a subquery, ... */
};
static const pgen_alt_t pgen_r_range_leaf[] = {{"<msel>", 0}};
static const pgen_alt_t pgen_r_msel[] = {{"<msel_name>[<msel_len>]<msel_mod>", 0}};
static const pgen_alt_t pgen_r_msel_name[] = {
    {"req_total", 0}, {"req_total{code=\"200\"}", 0}, {"lat_bucket", 0}, {"cpu", 0}};
static const pgen_alt_t pgen_r_msel_len[] = {{"1m", 0},  {"2m", 0},           {"5m", 0},
                                             {"10m", 0}, {"30s", PGEN_EXTRA}, {"1h", PGEN_EXTRA}};
static const pgen_alt_t pgen_r_msel_mod[] = {{"", 0},
                                             {"", 0},
                                             {"", 0},
                                             {" offset 2m", 0},
                                             {" @ end()", 0},
                                             {" @ 1200", 0},
                                             {" @ start()", PGEN_EXTRA}};
static const pgen_alt_t pgen_r_subquery[] = {{"(<v>)[<sq_len>:<sq_step>]<sq_mod>", 0}};
static const pgen_alt_t pgen_r_sq_len[] = {{"5m", 0}, {"10m", 0}, {"1h", PGEN_EXTRA}};
static const pgen_alt_t pgen_r_sq_step[] = {{"30s", 0}, {"1m", 0}, {"", 0}};
static const pgen_alt_t pgen_r_sq_mod[] = {
    {"", 0}, {" offset 1m", PGEN_EXTRA}, {" @ end()", PGEN_EXTRA}};
static const pgen_alt_t pgen_r_rollup[] = {{"rate", 0},
                                           {"increase", 0},
                                           {"delta", 0},
                                           {"irate", 0},
                                           {"deriv", 0},
                                           {"max_over_time", 0},
                                           {"min_over_time", 0},
                                           {"avg_over_time", 0},
                                           {"sum_over_time", 0},
                                           {"count_over_time", 0},
                                           {"changes", 0},
                                           {"resets", 0},
                                           {"last_over_time", 0},
                                           {"stddev_over_time", 0},
                                           {"absent_over_time", PGEN_EXTRA},
                                           {"present_over_time", PGEN_EXTRA}};
/* over a subquery, counter functions read last-bit differences in a pushed
 * sum (partial sums add up in another order) as counter resets */
static const pgen_alt_t pgen_r_sq_rollup[] = {{"max_over_time", 0},
                                              {"min_over_time", 0},
                                              {"avg_over_time", 0},
                                              {"sum_over_time", 0},
                                              {"last_over_time", 0},
                                              {"count_over_time", 0},
                                              {"rate", PGEN_INEXACT},
                                              {"irate", PGEN_INEXACT},
                                              {"increase", PGEN_INEXACT},
                                              {"resets", PGEN_INEXACT},
                                              {"changes", PGEN_INEXACT},
                                              {"deriv", PGEN_EXTRA},
                                              {"absent_over_time", PGEN_EXTRA}};
static const pgen_alt_t pgen_r_param_rollup[] = {
    {"quantile_over_time(<s>, <range>)", 0},
    {"predict_linear(<range>, 60)", 0},
    {"holt_winters(<range>, 0.5, 0.5)", 0},
};

/* aggregations */
static const pgen_alt_t pgen_r_merge_agg[] = {{"sum", 0}, {"avg", 0},   {"min", 0},
                                              {"max", 0}, {"count", 0}, {"group", 0}};
static const pgen_alt_t pgen_r_kagg[] = {
    {"topk", 0}, {"bottomk", 0}, {"limitk", PGEN_INEXACT}}; /* limitk: any k series */
static const pgen_alt_t pgen_r_k[] = {{"1", 0},
                                      {"2", 0},
                                      {"3", 0},
                                      {"(3)", PGEN_EXTRA},
                                      {"1 + 1", PGEN_EXTRA},
                                      {"0.5", PGEN_EXTRA},
                                      {"-1", PGEN_EXTRA},
                                      {"<s>", PGEN_EXTRA}};
static const pgen_alt_t pgen_r_nagg[] = {
    {"stddev<grouping> (<v>)", 0},
    {"stdvar<grouping> (<v>)", 0},
    {"quantile<grouping> (0.7, <v>)", 0},
    {"count_values<grouping> (\"v\", <v>)", PGEN_EXTRA},
};
static const pgen_alt_t pgen_r_grouping[] = {{"", 0},
                                             {"", 0},
                                             {" by (job)", 0},
                                             {" by (job, code)", 0},
                                             {" by (instance)", 0},
                                             {" by (le)", 0},
                                             {" without (instance)", 0},
                                             {" without (code, instance)", 0},
                                             {" without ()", 0},
                                             {" by (__name__)", 0}};

/* binary operators */
static const pgen_alt_t pgen_r_arith[] = {
    {"+", 0},
    {"-", 0},
    {"*", 0},
    {"/", 0},
    {">", 0},
    {"<", 0},
    {"> bool", 0},
    {"^", 0},
    {"%", PGEN_INEXACT}, /* 10 % x multiplies the last-bit difference of x by 10 / x */
    {"==", PGEN_INEXACT},
    {"!=", PGEN_INEXACT},
    {"<=", PGEN_EXTRA},
    {"atan2", PGEN_EXTRA},
};
static const pgen_alt_t pgen_r_setop[] = {{"and", 0}, {"or", 0}, {"unless", 0}};
static const pgen_alt_t pgen_r_set_matching[] = {
    {"", 0}, {" on(job)", 0}, {" ignoring(code)", 0}, {" on(job, instance)", 0}};
static const pgen_alt_t pgen_r_matching[] = {
    {"<set_matching>", 0},
    {" on(job) group_left(code)", PGEN_EXTRA},
    {" ignoring(code) group_right", PGEN_EXTRA},
};

/* functions */
static const pgen_alt_t pgen_r_func[] = {
    {"abs", 0},
    {"sqrt", 0},
    {"ln", 0},
    {"exp", 0},
    {"-", 0},
    /* a sum that is an integer (or 0) in exact arithmetic lands on either
     * side of it, depending on the order of the additions */
    {"ceil", PGEN_INEXACT},
    {"floor", PGEN_INEXACT},
    {"sgn", PGEN_INEXACT},
    {"hour", PGEN_EXTRA},
    {"day_of_week", PGEN_EXTRA},
};
static const pgen_alt_t pgen_r_call[] = {
    {"label_replace(<v>, \"x\", \"$1-y\", \"job\", \"(.*)\")", 0},
    {"label_join(<v>, \"x\", \"-\", \"job\", \"le\")", 0},
    {"clamp(<v>, 0.2, <s>)", 0},
    {"timestamp(<v>)", 0},
    {"clamp(<v>, <s>, 5)", PGEN_EXTRA},
    {"round(<v>, <s>)", PGEN_INEXACT},
};
static const pgen_alt_t pgen_r_router_fn[] = {
    {"absent", 0}, {"absent", 0}, {"sort_desc", 0}, {"sort", 0}};
static const pgen_alt_t pgen_r_quantile[] = {{"0.1", 0}, {"0.2", 0}, {"0.3", 0},
                                             {"0.4", 0}, {"0.5", 0}, {"0.6", 0},
                                             {"0.7", 0}, {"0.8", 0}, {"0.9", 0}};
static const pgen_alt_t pgen_r_hist[] = {
    {"rate(lat_bucket[5m])", 0},
    {"rate(lat_bucket[5m])", 0},
    {"sum by (le) (rate(lat_bucket[<hist_range>]))", 0},
    {"sum by (le, job) (rate(lat_bucket[<hist_range>]))", 0},
    {"<v>", PGEN_EXTRA},
};
static const pgen_alt_t pgen_r_hist_range[] = {{"5m", 0}, {"2m", 0}};

typedef struct pgen_nt {
    const char *name;
    const pgen_alt_t *alt, *leaf; /* leaf: the alternatives below depth 1 (NULL: alt) */
    unsigned nalt, nleaf;
    int deeper; /* a value: one level deeper than the template naming it */
} pgen_nt_t;

#define PGEN_N(a) (unsigned)(sizeof(a) / sizeof((a)[0]))
/* clang-format off */
#define PGEN_NT(n) {#n, pgen_r_##n, NULL, PGEN_N(pgen_r_##n), 0, 0}
#define PGEN_VALUE(n) \
    {#n, pgen_r_##n, pgen_r_##n##_leaf, PGEN_N(pgen_r_##n), PGEN_N(pgen_r_##n##_leaf), 1}

static const pgen_nt_t pgen_nts[] = {
    PGEN_VALUE(v), PGEN_VALUE(d), PGEN_VALUE(s),
    PGEN_NT(d_base), PGEN_NT(d_agg), PGEN_NT(d_op), PGEN_NT(d_sq_rollup), PGEN_NT(d_kagg),
    PGEN_NT(d_k), PGEN_NT(num), PGEN_NT(scalar_op),
    PGEN_NT(sel), PGEN_NT(sel_name), PGEN_NT(sel_mod),
    PGEN_NT(rcall), PGEN_NT(msel), PGEN_NT(msel_name), PGEN_NT(msel_len), PGEN_NT(msel_mod),
    PGEN_NT(subquery), PGEN_NT(sq_len), PGEN_NT(sq_step), PGEN_NT(sq_mod), PGEN_NT(rollup),
    PGEN_NT(sq_rollup), PGEN_NT(param_rollup),
    PGEN_NT(merge_agg), PGEN_NT(kagg), PGEN_NT(k), PGEN_NT(nagg), PGEN_NT(grouping),
    PGEN_NT(arith), PGEN_NT(setop), PGEN_NT(set_matching), PGEN_NT(matching),
    PGEN_NT(func), PGEN_NT(call), PGEN_NT(router_fn), PGEN_NT(quantile), PGEN_NT(hist),
    PGEN_NT(hist_range),
    /* not a value, but with leaves: no subquery in a range below depth 1 */
    {"range", pgen_r_range, pgen_r_range_leaf, PGEN_N(pgen_r_range), PGEN_N(pgen_r_range_leaf), 0},
};
/* clang-format on */

#undef PGEN_NT
#undef PGEN_VALUE

/* ---- the generator ----------------------------------------------------------- */

static void pgen_put(pgen_t *g, const char *s, size_t n)
{
    if (n >= g->cap - g->len) {
        n = g->cap - 1 - g->len;
        g->truncated = 1;
    }
    memcpy(g->out + g->len, s, n);
    g->len += n;
    g->out[g->len] = 0;
}

static int pgen_allowed(const pgen_t *g, unsigned is)
{
    if ((is & PGEN_INEXACT) && (g->flags & PGEN_EXACT))
        return 0;
    if ((is & PGEN_EXTRA) && (g->flags & PGEN_CORE))
        return 0;
    return !(is & PGEN_UNKNOWN) || (g->flags & PGEN_LAX);
}

/* One of the allowed alternatives; choose() is asked only if there are several. */
static const char *pgen_pick(pgen_t *g, const pgen_alt_t *a, unsigned n)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++)
        k += (unsigned)pgen_allowed(g, a[i].is);
    unsigned c = k > 1 ? g->choose(g->ctx, k) % k : 0;
    for (unsigned i = 0; i < n; i++)
        if (pgen_allowed(g, a[i].is) && c-- == 0)
            return a[i].t;
    return ""; /* nothing allowed */
}

/* Where the marker at t ('<') ends ('>'), or NULL if t opens no marker. */
static const char *pgen_marker_end(const char *t)
{
    const char *p = t + 1;
    while ((*p >= 'a' && *p <= 'z') || *p == '_')
        p++;
    return p > t + 1 && *p == '>' ? p : NULL;
}

static const pgen_nt_t *pgen_find(const char *name, size_t len)
{
    for (size_t i = 0; i < PGEN_N(pgen_nts); i++)
        if (strlen(pgen_nts[i].name) == len && !memcmp(pgen_nts[i].name, name, len))
            return &pgen_nts[i];
    abort(); /* a marker names no nonterminal: the grammar is wrong */
}

static void pgen_gen(pgen_t *g, const pgen_nt_t *nt, int depth);

static void pgen_expand(pgen_t *g, const char *t, int depth)
{
    for (;;) {
        const char *m = strchr(t, '<'), *e = NULL;
        while (m && !(e = pgen_marker_end(m)))
            m = strchr(m + 1, '<');
        if (!m) {
            pgen_put(g, t, strlen(t));
            return;
        }
        pgen_put(g, t, (size_t)(m - t));
        const pgen_nt_t *nt = pgen_find(m + 1, (size_t)(e - m - 1));
        pgen_gen(g, nt, nt->deeper ? depth - 1 : depth);
        t = e + 1;
    }
}

static void pgen_gen(pgen_t *g, const pgen_nt_t *nt, int depth)
{
    int leaf = depth <= 0 && nt->leaf;
    pgen_expand(g, pgen_pick(g, leaf ? nt->leaf : nt->alt, leaf ? nt->nleaf : nt->nalt), depth);
}

/*
 * A random instant-vector query, nested up to `depth` levels (at least 1),
 * into g->out (g->len long, g->truncated if it did not fit). Returns g->len.
 */
static __attribute__((unused)) size_t pgen_query(pgen_t *g, int depth)
{
    g->len = 0;
    g->out[0] = 0;
    g->truncated = 0;
    pgen_gen(g, pgen_find("v", 1), depth);
    return g->len;
}

#undef PGEN_N

/* ---- AST walks --------------------------------------------------------------- */

/* The i-th child of n in evaluation order, NULL past the last (a matrix
 * selector's vector selector included, so walks see every node). */
static __attribute__((unused)) const promql_node_t *pgen_kid(const promql_node_t *n, size_t i)
{
    switch (n->kind) {
    case PROMQL_AGGREGATE:
        if (n->u.agg.param && i-- == 0)
            return n->u.agg.param;
        return i == 0 ? n->u.agg.expr : NULL;
    case PROMQL_PAREN:
        return i == 0 ? n->u.paren.expr : NULL;
    case PROMQL_UNARY:
        return i == 0 ? n->u.unary.expr : NULL;
    case PROMQL_BINARY:
        return i == 0 ? n->u.bin.lhs : i == 1 ? n->u.bin.rhs : NULL;
    case PROMQL_SUBQUERY:
        return i == 0 ? n->u.sq.expr : NULL;
    case PROMQL_MATRIX_SELECTOR:
        return i == 0 ? n->u.ms.vs : NULL;
    case PROMQL_CALL:
        return i < n->u.call.nargs ? n->u.call.args[i] : NULL;
    default:
        return NULL;
    }
}

/* Pushdown marks anywhere in the tree (also below a marked node). */
static __attribute__((unused)) size_t pgen_count_marks(const promql_node_t *n)
{
    size_t c = n->push != 0;
    const promql_node_t *k;
    for (size_t i = 0; (k = pgen_kid(n, i)); i++)
        c += pgen_count_marks(k);
    return c;
}

static __attribute__((unused)) const promql_node_t *pgen_unparen(const promql_node_t *n)
{
    while (n->kind == PROMQL_PAREN)
        n = n->u.paren.expr;
    return n;
}

#endif

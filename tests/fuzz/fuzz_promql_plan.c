/*
 * fuzz_promql_plan — the pushdown planner (promql_plan.h) on arbitrary queries.
 *
 * Input: byte 0 gives the planner flags (bit 0 NO_BARE_SELECTORS, bit 1
 * INSTANT; an empty input plans with 0).
 *   byte 0 < 0x80: the whole input (byte 0 included) is the query text;
 *   byte 0 >= 0x80 (no query starts so): the rest of the input drives the
 *     generator of well-typed queries in tests/common/promql_gen.h (its
 *     whole grammar: selectors, rollups, subqueries, aggregations, binary
 *     and set operators, functions), so random bytes reach the planner too;
 *     bit 2 then parses with PROMQL_F_LAX_FUNCS and lets the generator use
 *     unknown functions.
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
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promql.h"
#include "promql_plan.h"
#include "st_buf.h"
#include "st_err.h"

#include "../common/promql_gen.h"

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

/* The generator's choices: the input's bytes, then 0. */
typedef struct bytes {
    const uint8_t *p, *end;
} bytes_t;

static unsigned pick(void *ctx, unsigned n)
{
    bytes_t *b = ctx;
    return b->p < b->end ? (unsigned)(*b->p++ % n) : 0;
}

/* ---- the checks -------------------------------------------------------------- */

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
    CHECK(pgen_count_marks(r) == 1);
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
    if (n->push) {
        CHECK(n->type == PROMQL_TYPE_VECTOR);
        CHECK(n->push == PROMQL_PUSH_SERIES || n->push == PROMQL_PUSH_PARTIAL);
        CHECK(pgen_count_marks(n) == 1); /* nothing below it */
        int parts = promql_push_parts(n);
        if (n->push == PROMQL_PUSH_PARTIAL) {
            CHECK(n->kind == PROMQL_AGGREGATE);
            promql_aggop_t op = n->u.agg.op;
            CHECK(op == PROMQL_AGG_SUM || op == PROMQL_AGG_AVG || op == PROMQL_AGG_MIN ||
                  op == PROMQL_AGG_MAX || op == PROMQL_AGG_COUNT || op == PROMQL_AGG_GROUP ||
                  op == PROMQL_AGG_TOPK || op == PROMQL_AGG_BOTTOMK);
            if (op == PROMQL_AGG_TOPK || op == PROMQL_AGG_BOTTOMK)
                CHECK(n->u.agg.param && pgen_unparen(n->u.agg.param)->kind == PROMQL_NUMBER);
            CHECK(parts == (op == PROMQL_AGG_AVG ? 2 : 1));
        } else {
            CHECK(parts == 1);
            if (flags & PROMQL_PLAN_NO_BARE_SELECTORS)
                CHECK(pgen_unparen(n)->kind != PROMQL_VECTOR_SELECTOR);
        }
        for (int p = 0; p < parts; p++)
            check_part(n, p, flags);
        return 1;
    }
    size_t c = 0;
    const promql_node_t *k;
    for (size_t i = 0; (k = pgen_kid(n, i)); i++)
        c += check_marks(k, flags);
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
        bytes_t src = {data + 1, data + size};
        pgen_t g = {.choose = pick,
                    .ctx = &src,
                    .flags = (data[0] & 4) ? PGEN_LAX : 0,
                    .out = gbuf,
                    .cap = sizeof gbuf};
        qlen = pgen_query(&g, 1 + (int)pick(&src, 6));
        q = gbuf;
        if (g.flags & PGEN_LAX)
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
    CHECK(pgen_count_marks(root) == n);

    st_buf_t b;
    st_buf_init(&b);
    int rc = promql_plan_explain(e, &b);
    if (rc != ST_ENOMEM) {
        CHECK(rc == 0);
        CHECK(b.len >= 2 && b.data[0] == '[' && b.data[b.len - 1] == ']');
        CHECK(count_substr(b.data, b.len, "{\"push\":") == n);
        /* planning again: the same plan */
        CHECK(promql_plan(e, flags) == n);
        CHECK(pgen_count_marks(root) == n);
        st_buf_t b2;
        st_buf_init(&b2);
        if (promql_plan_explain(e, &b2) == 0)
            CHECK(b2.len == b.len && memcmp(b2.data, b.data, b.len) == 0);
        st_buf_deinit(&b2);
    }
    st_buf_deinit(&b);
    promql_plan_clear(e);
    CHECK(pgen_count_marks(root) == 0);
    CHECK(promql_plan(e, flags) == n);
    promql_free(e);
    g_query = "";
    return 0;
}

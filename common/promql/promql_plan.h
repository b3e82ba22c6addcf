/*
 * promql_plan — which parts of a PromQL query the storage nodes evaluate
 * (pushdown), free of sockets so it can be unit-tested. See docs/query.md.
 *
 * Every series lives on exactly one shard, so an expression whose value for
 * a series depends on that series alone ("series-local": selectors, rollup
 * functions over a series' window, element-wise functions, arithmetic with
 * constants, subqueries of such) gives the same answer whether it is
 * evaluated once over all data or once per node and the answers are joined.
 * promql_plan() marks the largest such subtrees PROMQL_PUSH_SERIES.
 *
 * Aggregations whose result can be rebuilt from per-node partial results
 * are marked PROMQL_PUSH_PARTIAL when their argument is series-local: each
 * node returns its own sum/min/max/count/group/topk/bottomk per group and
 * step, and the router aggregates those again with the same grouping
 * (count becomes a sum of counts; avg is a sum and a count, fetched as two
 * parts, divided at the router).
 *
 *   promql_plan(expr, 0);               marks nodes (node->push)
 *   for each marked node n, part < promql_push_parts(n):
 *       promql_push_text(n, part, &buf) is what a node evaluates.
 *
 * Anything else (joins between vectors, stddev, quantile, sort, absent,
 * histogram_quantile, ...) runs on the router over the pushed results.
 */
#ifndef PROMQL_PLAN_H
#define PROMQL_PLAN_H

#include <stddef.h>

#include "promql.h"
#include "st_buf.h"

enum {
    PROMQL_PUSH_NONE = 0,
    PROMQL_PUSH_SERIES = 1,  /* nodes evaluate it; the router joins the series */
    PROMQL_PUSH_PARTIAL = 2, /* an aggregation: nodes return partials per group */
};

/* Do not push a bare selector (a subtree with no rollup, no function, no
 * aggregation): for a step shorter than the scrape interval its per-step
 * values would be larger than the raw samples. */
#define PROMQL_PLAN_NO_BARE_SELECTORS 1u
/* An instant query: the order of its result may matter (topk by groups). */
#define PROMQL_PLAN_INSTANT 2u

/* Mark the pushed subtrees of e; returns how many. Planning twice is harmless. */
size_t promql_plan(promql_expr_t *e, unsigned flags);
/* Clear every mark (plan again from scratch, or run without pushdown). */
void promql_plan_clear(promql_expr_t *e);
/* Number of separate results a pushed node needs: 2 for avg, else 1. */
int promql_push_parts(const promql_node_t *n);
/* The PromQL a node evaluates for part `part` of pushed node n. 0 or ST_ENOMEM. */
int promql_push_text(const promql_node_t *n, int part, st_buf_t *b);
/* The plan as a JSON array, one object per pushed subtree in evaluation
 * order: {"push":"series"|"partial","expr":TEXT,"parts":[TEXT,...]}.
 * 0 or ST_ENOMEM. */
int promql_plan_explain(const promql_expr_t *e, st_buf_t *b);

#endif

/* Fuzz target: a QueryResponse from a node (qreply_decode: what the router
 * feeds into the evaluator for a pushed-down part) never crashes, over-reads
 * or leaks, whatever the bytes; the grid size comes from the first byte.
 * avg(x) reads the reply as a pushed avg's (qreply_decode_avg: sums, then
 * counts), as the router does. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "promql.h"
#include "promql_eval.h"
#include "promql_plan.h"
#include "qreply.h"

typedef struct {
    const uint8_t *p;
    size_t len;
    int avg;
} reply_t;

static int no_select(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                     promql_sink_t *sink)
{
    (void)arg, (void)m, (void)nm, (void)mint, (void)maxt, (void)sink;
    return 0;
}

static int remote(void *arg, const promql_node_t *n, int part, int64_t start, int64_t step,
                  size_t nsteps, promql_vsink_t *sink)
{
    const reply_t *r = arg;
    (void)n, (void)part, (void)start, (void)step;
    qreply_counts_t cnt;
    qreply_counts(r->p, r->len, &cnt);
    if (r->avg)
        return qreply_decode_avg(r->p, r->len, nsteps, part, sink);
    return qreply_decode(r->p, r->len, nsteps, sink);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char *const qs[] = {"x", "sum by (a) (rate(x[5m]))", "avg(x)", "topk(2, x)"};
    const char *q = qs[data[0] & 3];
    size_t nsteps = 1 + (data[0] >> 2); /* 1..64 */
    promql_expr_t *e;
    char err[256];
    if (promql_parse(q, strlen(q), &e, err, sizeof err))
        return 0;
    promql_plan(e, 0);
    reply_t r = {data + 1, size - 1, (data[0] & 3) == 2};
    promql_eval_opts_t o = {.remote = remote, .max_samples = 1u << 20};
    promql_result_t *res = NULL;
    int64_t start = 1000000;
    if (promql_eval(e, start, start + (int64_t)(nsteps - 1) * 15000, 15000, &o, no_select, &r, &res,
                    err, sizeof err) == 0)
        promql_result_free(res);
    promql_free(e);
    return 0;
}

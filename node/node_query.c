/*
 * node_query — the QUERY RPC: evaluate the part of a PromQL query the
 * router pushed down to this node (docs/query.md).
 *
 * Runs on the thread pool. The text is parsed and evaluated with the same
 * evaluator the router uses, selecting from the requested shards' engines
 * only, on the grid the router gives (which may be a subquery's grid, so
 * the 11,000-point limit does not apply and @ start()/end() refer to the
 * outer query). The answer is one StepSeries per result series: a bitmap
 * of the steps that have a value and the values, packed.
 *
 * Bounds (issue 11): the router's max_samples (subquery steps count too),
 * max_series, max_bytes ([router] query_max_mb: the evaluation's arena,
 * checked before each allocation) and timeout_ms (the router's deadline,
 * checked per series selected and every few evaluation steps); all
 * evaluations of the node together hold at most [storage]
 * query_total_max_mb (n->query_bytes). A regex over its PCRE2 match limit
 * fails in the index (idx_match.c). Each refusal is counted in
 * strata_node_queries_refused_total{limit="<setting>"}.
 *
 * Downsampling ([downsampling] tiers, engine_tier.h): the evaluator is
 * given the tier widths and nq_buckets, so a rollup exact on whole buckets
 * whose window and evaluation times are multiples of a width reads the
 * widest such buckets; the reply's resolution_ms says the width read when
 * every selection read buckets (0 otherwise: the router's
 * X-Strata-Resolution). Raw selections reaching before the first tier's
 * watermark read each bucket's last sample there (nq_select_tiered).
 *
 * A pushed avg (the router sends the text `avg by (g) (X)` when its plan
 * has the parts `sum by (g) (X)` and `count by (g) (X)`) is evaluated once
 * (promql_eval_opts_t.avg_parts): the reply holds the per-group sums, then
 * the counts, and says where the counts start (QueryResponse.avg_sums), so
 * X is selected, decoded and rolled up once instead of twice.
 *
 * Cancellation: a QueryRequest with a query_id takes a slot of
 * n->running for its evaluation; a CANCEL RPC of that id (the router
 * answered without waiting for this node: another node's refusal, a failed
 * shard, its deadline) sets the slot's flag, which the evaluator checks
 * with its deadline and nq_select between series. A CANCEL that finds no
 * query of its id is remembered in a small ring (the last
 * NODE_CANCELLED_MAX ids): a QUERY that was queued behind the work pool
 * when its CANCEL came starts cancelled. Such a query ends with
 * "query cancelled", counted in strata_node_queries_cancelled_total. The
 * slots are claimed and searched under a spin lock held for a scan of
 * NODE_RUNNING_MAX entries at most (never across any other work); with
 * every slot taken a query runs uncancellable (its deadline still holds).
 *
 * Small queries on the loop (node_query_ex with on_loop): the thread-pool
 * hop (a queue, a wake-up, the answer posted back) costs more than a
 * dashboard's one-series read. node_rpc.c first evaluates each QUERY on
 * the loop under a budget: no subquery, no shard with tiers, no regex
 * matcher, at most NODE_INLINE_SERIES series and NODE_INLINE_SAMPLES samples
 * selected, (samples + 1) x steps at most NQ_INLINE_WORK. Past any of
 * them the evaluation stops at once (the selection callback refuses) and
 * NODE_QUERY_LATER sends the request to the pool, which evaluates it from
 * the start; the loop spent at most that budget on it. Before a selection
 * reads any series, the index's count of the series it selects over all
 * shards is checked (node_select_small), so a wide query leaves the loop
 * after its first index lookups, not after a budget of wasted reads.
 */
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node.h"
#include "promql.h"
#include "promql_eval.h"
#include "qreply.h"
#include "rowstats.h"
#include "st_err.h"
#include "st_time.h"
#include "strata.pb-c.h"
#include "wire.h"

#define NQ_MAX_SAMPLES 50000000ull
#define NQ_MAX_STEPS 10000000u /* grid points (a 1-year subquery at 5 s) */
#define NQ_TIMEOUT_MS 120000u  /* when the router sends none */
#define NQ_MAX_BYTES                                                                               \
    (1024ull << 20) /* bytes one evaluation may hold when the router sends none                    \
                     */
#define NQ_MAX_REPLY (RPC_FRAME_MAX_DEFAULT - (1u << 20))
#define NQ_INLINE_WORK 1000000u /* on the loop: (samples + 1) x steps at most */
#define NQ_INLINE_STEPS 11000u  /* ... grid points at most */

typedef struct nq {
    node_t *n;
    const Strata__QueryRequest *r;
    uint64_t samples, series;
    int64_t deadline;
    const atomic_int *cancel; /* NULL: not cancellable */
    int regex_limit;          /* a shard's index refused a regex (match limit) */
    int raw_read;             /* a selection read raw samples */
    int64_t res_read;         /* the widest buckets read (0: none) */
    char *msg;
    size_t msglen;
    int on_loop; /* evaluating on the loop under its budget (NODE_INLINE_*, NQ_INLINE_*) */
    int later;   /* ... which this query exceeds: the pool evaluates it */
} nq_t;

/* On the loop: would n more series of cnt samples pass the budget? Else
 * flags the query for the pool (the callbacks then stop the evaluation). */
static int nq_over_budget(nq_t *q, uint64_t series, uint64_t cnt)
{
    if (!q->on_loop)
        return 0;
    uint64_t samples = q->samples + cnt;
    if (q->series + series > NODE_INLINE_SERIES || samples > NODE_INLINE_SAMPLES ||
        (samples + 1) * q->r->steps > NQ_INLINE_WORK) {
        q->later = 1;
        snprintf(q->msg, q->msglen, "over the loop's budget");
        return 1;
    }
    return 0;
}

int node_has_regex(const st_matcher_t *m, size_t nm)
{
    for (size_t i = 0; i < nm; i++)
        if (m[i].type == ST_MATCH_RE || m[i].type == ST_MATCH_NRE)
            return 1;
    return 0;
}

/* On the loop, regex matchers go to the pool: the index may take long. */
static int nq_regex_later(nq_t *q, const st_matcher_t *m, size_t nm)
{
    if (!q->on_loop || !node_has_regex(m, nm))
        return 0;
    q->later = 1;
    snprintf(q->msg, q->msglen, "over the loop's budget");
    return 1;
}

int node_select_small(node_t *n, const uint32_t *shards, size_t nshards, const st_matcher_t *m,
                      size_t nm, uint64_t max_series)
{
    /* a bound: series without samples in the range count too */
    uint64_t total = 0;
    for (size_t si = 0; si < nshards && total <= max_series; si++) {
        size_t cnt;
        if (engine_select_count(n->engines[shards[si]], m, nm, &cnt))
            return 0; /* the pool's run reports it */
        total += cnt;
    }
    return total <= max_series;
}

static int has_subquery(const promql_node_t *n)
{
    if (!n)
        return 0;
    switch (n->kind) {
    case PROMQL_SUBQUERY:
        return 1;
    case PROMQL_UNARY:
        return has_subquery(n->u.unary.expr);
    case PROMQL_BINARY:
        return has_subquery(n->u.bin.lhs) || has_subquery(n->u.bin.rhs);
    case PROMQL_AGGREGATE:
        return has_subquery(n->u.agg.param) || has_subquery(n->u.agg.expr);
    case PROMQL_CALL:
        for (size_t i = 0; i < n->u.call.nargs; i++)
            if (has_subquery(n->u.call.args[i]))
                return 1;
        return 0;
    case PROMQL_PAREN:
        return has_subquery(n->u.paren.expr);
    default:
        return 0;
    }
}

static void running_lock(node_t *n)
{
    while (atomic_exchange_explicit(&n->running_lock, 1, memory_order_acquire))
        sched_yield(); /* the holder scans NODE_RUNNING_MAX slots at most */
}

static void running_unlock(node_t *n)
{
    atomic_store_explicit(&n->running_lock, 0, memory_order_release);
}

/* A free slot for query id (flag cleared), or NULL (no id, or all taken). */
static node_running_t *running_add(node_t *n, uint64_t id)
{
    node_running_t *slot = NULL;
    if (!id)
        return NULL;
    running_lock(n);
    int early = 0; /* its CANCEL came first */
    for (size_t i = 0; i < NODE_CANCELLED_MAX && !early; i++)
        early = n->cancelled[i] == id;
    for (size_t i = 0; i < NODE_RUNNING_MAX && !slot; i++)
        if (n->running[i].id == 0) {
            slot = &n->running[i];
            slot->id = id;
            atomic_store(&slot->cancel, early);
        }
    running_unlock(n);
    return slot;
}

static void running_remove(node_t *n, node_running_t *slot)
{
    if (!slot)
        return;
    running_lock(n);
    slot->id = 0;
    running_unlock(n);
}

size_t node_query_cancel(node_t *n, uint64_t query_id)
{
    size_t found = 0;
    if (!query_id)
        return 0;
    running_lock(n);
    for (size_t i = 0; i < NODE_RUNNING_MAX; i++)
        if (n->running[i].id == query_id) {
            atomic_store(&n->running[i].cancel, 1);
            found++;
        }
    if (!found) {
        n->cancelled[n->cancelled_next] = query_id;
        n->cancelled_next = (n->cancelled_next + 1) % NODE_CANCELLED_MAX;
    }
    running_unlock(n);
    return found;
}

/* The deadline passed or a CANCEL came: the message and code to stop with. */
static int nq_stopped(nq_t *q)
{
    if (q->cancel && atomic_load_explicit(q->cancel, memory_order_relaxed)) {
        snprintf(q->msg, q->msglen, "query cancelled");
        return ST_ETIMEDOUT;
    }
    if (st_mono_ms() > q->deadline) {
        snprintf(q->msg, q->msglen, "query timed out");
        return ST_ETIMEDOUT;
    }
    return 0;
}

typedef struct nq_bsink {
    nq_t *q;
    promql_sink_t *sink;
} nq_bsink_t;

/* engine_tier_samples_cb for a raw selection reaching into the tiers. */
static int nq_tier_samples(void *arg, const st_label_t *l, size_t nl, const int64_t *ts,
                           const double *v, size_t n)
{
    nq_bsink_t *bs = arg;
    bs->q->series++;
    int rc = promql_sink_add(bs->sink, l, nl, ts, v, n);
    return rc ? rc : nq_stopped(bs->q);
}

/* A raw selection over a shard whose older data is in tiers: raw samples
 * after the first watermark, the buckets' last samples before it. */
static int nq_select_tiered(nq_t *q, engine_tiers_t *t, uint32_t shard, const st_matcher_t *m,
                            size_t nm, int64_t mint, int64_t maxt, promql_sink_t *sink)
{
    nq_bsink_t bs = {q, sink};
    int rc = engine_tiers_select_samples(t, m, nm, mint, maxt, nq_tier_samples, &bs, &q->samples);
    if (rc) {
        q->regex_limit = rc == ST_ELIMIT;
        if (rc < 0 && !q->msg[0])
            snprintf(q->msg, q->msglen, "shard %u: %s", shard, engine_last_error());
    }
    return rc;
}

static int nq_select(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                     promql_sink_t *sink)
{
    nq_t *q = arg;
    q->raw_read = 1;
    if (nq_regex_later(q, m, nm))
        return ST_EBUSY;
    if (q->on_loop && !node_select_small(q->n, q->r->shards, q->r->n_shards, m, nm,
                                         NODE_INLINE_SERIES - q->series))
        return nq_over_budget(q, NODE_INLINE_SERIES + 1, 0), ST_EBUSY;
    for (size_t si = 0; si < q->r->n_shards; si++) {
        engine_t *e = q->n->engines[q->r->shards[si]];
        engine_tiers_t *tiers = q->n->tiers[q->r->shards[si]];
        engine_iter_t *it;
        int rc = nq_stopped(q);
        if (rc)
            return rc;
        if (tiers && engine_tiers_raw_after(tiers) != INT64_MIN &&
            mint <= engine_tiers_raw_after(tiers)) {
            if ((rc = nq_select_tiered(q, tiers, q->r->shards[si], m, nm, mint, maxt, sink)))
                return rc;
            continue;
        }
        rc = engine_query(e, m, nm, mint, maxt, &it);
        if (rc) {
            q->regex_limit = rc == ST_ELIMIT;
            snprintf(q->msg, q->msglen, "shard %u: %s", q->r->shards[si], engine_last_error());
            return rc;
        }
        const st_label_t *l;
        size_t nl, cnt;
        const int64_t *ts;
        const double *v;
        /* between series: a long selection stops at the deadline or a CANCEL */
        while ((rc = engine_iter_next(it, &l, &nl, &ts, &v, &cnt)) == 1) {
            if (nq_over_budget(q, 1, cnt)) {
                rc = ST_EBUSY;
                break;
            }
            q->samples += cnt;
            q->series++;
            if ((rc = promql_sink_add(sink, l, nl, ts, v, cnt)) || (rc = nq_stopped(q)))
                break;
        }
        engine_iter_destroy(it);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* engine_count_cb: a series' count as one sample at the window's end. */
typedef struct nq_csink {
    nq_t *q;
    promql_sink_t *sink;
    int64_t at;
} nq_csink_t;

static int nq_count_series(void *arg, const st_label_t *l, size_t nl, uint64_t count)
{
    nq_csink_t *cs = arg;
    double v = (double)count;
    if (nq_over_budget(cs->q, 1, 1))
        return ST_EBUSY;
    cs->q->series++;
    int rc = promql_sink_add(cs->sink, l, nl, &cs->at, &v, 1);
    return rc ? rc : nq_stopped(cs->q);
}

/* promql_count_fn: count_over_time from block headers (engine_count),
 * on requests whose shards keep no tiers. */
static int nq_counts(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                     promql_sink_t *sink)
{
    nq_t *q = arg;
    nq_csink_t cs = {q, sink, maxt};
    if (nq_regex_later(q, m, nm))
        return ST_EBUSY;
    if (q->on_loop && !node_select_small(q->n, q->r->shards, q->r->n_shards, m, nm,
                                         NODE_INLINE_SERIES - q->series))
        return nq_over_budget(q, NODE_INLINE_SERIES + 1, 0), ST_EBUSY;
    for (size_t si = 0; si < q->r->n_shards; si++) {
        engine_count_stats_t st = {0};
        int rc = nq_stopped(q);
        if (!rc)
            rc = engine_count(q->n->engines[q->r->shards[si]], m, nm, mint, maxt,
                              ENGINE_COUNT_NO_STALE, nq_count_series, &cs, &st);
        q->samples += st.decoded;
        metric_counter_add(q->n->count_from_headers, st.from_headers);
        if (rc) {
            q->regex_limit = rc == ST_ELIMIT;
            if (rc < 0 && !q->msg[0])
                snprintf(q->msg, q->msglen, "shard %u: %s", q->r->shards[si], engine_last_error());
            return rc;
        }
    }
    q->raw_read = 1;
    return 0;
}

/* engine_tier_cb: one series' buckets into the evaluator. */
_Static_assert(sizeof(tier_bucket_t) == sizeof(promql_bucket_t) &&
                   offsetof(tier_bucket_t, rsum) == offsetof(promql_bucket_t, rsum) &&
                   offsetof(tier_bucket_t, count) == offsetof(promql_bucket_t, count) &&
                   offsetof(tier_bucket_t, last) == offsetof(promql_bucket_t, last),
               "tier_bucket_t and promql_bucket_t are one layout");

static int nq_bucket_series(void *arg, const st_label_t *l, size_t nl, const tier_bucket_t *b,
                            size_t n)
{
    nq_bsink_t *bs = arg;
    bs->q->series++;
    int rc = promql_sink_add_buckets(bs->sink, l, nl, (const promql_bucket_t *)b, n);
    return rc ? rc : nq_stopped(bs->q);
}

/* promql_bucket_fn: buckets of width res from every requested shard's tiers. */
static int nq_buckets(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                      int64_t res, promql_sink_t *sink)
{
    nq_t *q = arg;
    nq_bsink_t bs = {q, sink};
    for (size_t si = 0; si < q->r->n_shards; si++) {
        engine_tiers_t *t = q->n->tiers[q->r->shards[si]];
        int rc = nq_stopped(q);
        if (rc)
            return rc;
        if (!t) /* no tiers: only the raw path selects (not reached: no widths given) */
            return ST_EINVAL;
        int64_t used = res;
        rc = engine_tiers_select(t, m, nm, mint, maxt, res, nq_bucket_series, &bs, &used,
                                 &q->samples);
        if (used > q->res_read)
            q->res_read = used;
        if (rc) {
            q->regex_limit = rc == ST_ELIMIT;
            if (rc < 0 && !q->msg[0])
                snprintf(q->msg, q->msglen, "shard %u: %s", q->r->shards[si], engine_last_error());
            return rc;
        }
    }
    return 0;
}

/* Are these shards this node's? 0 with msg when one is not. */
static int shards_local(node_t *n, const uint32_t *shards, size_t nshards, char *msg, size_t msglen)
{
    for (size_t i = 0; i < nshards; i++)
        if (shards[i] >= (uint32_t)topo_shards(n->topo) || !n->engines[shards[i]]) {
            snprintf(msg, msglen, "shard %u is not placed on node %s", shards[i],
                     topo_node_id(n->topo, n->self));
            return 0;
        }
    return 1;
}

int node_query(node_t *n, const uint8_t *payload, size_t len, st_buf_t *out, char *msg,
               size_t msglen)
{
    return node_query_ex(n, payload, len, 0, out, msg, msglen);
}

int node_query_ex(node_t *n, const uint8_t *payload, size_t len, int on_loop, st_buf_t *out,
                  char *msg, size_t msglen)
{
    Strata__QueryRequest *r = strata__query_request__unpack(NULL, len, payload);
    if (!r) {
        snprintf(msg, msglen, "malformed QueryRequest");
        return ST_EPROTO;
    }
    int rc = ST_EINVAL;
    promql_expr_t *e = NULL;
    promql_result_t *res = NULL;
    if (r->step_ms <= 0 || r->steps == 0 || r->steps > NQ_MAX_STEPS ||
        r->step_ms > (INT64_MAX / 2) / (int64_t)r->steps || r->lookback_ms < 0) {
        snprintf(msg, msglen, "invalid grid: step %lld ms x %u steps, lookback %lld ms",
                 (long long)r->step_ms, r->steps, (long long)r->lookback_ms);
        goto done;
    }
    if (!shards_local(n, r->shards, r->n_shards, msg, msglen))
        goto done;
    if (r->expr.len > PROMQL_MAX_LEN) {
        rc = ST_ELIMIT;
        snprintf(msg, msglen, "expression longer than %d bytes", PROMQL_MAX_LEN);
        goto done;
    }
    if ((rc = promql_parse((const char *)r->expr.data, r->expr.len, &e, msg, msglen)))
        goto done;
    if (promql_root(e)->type != PROMQL_TYPE_VECTOR) {
        rc = ST_EINVAL;
        snprintf(msg, msglen, "a pushed-down expression must be an instant vector");
        goto done;
    }
    int notiers = 1;
    for (size_t i = 0; i < r->n_shards; i++)
        notiers = notiers && !n->tiers[r->shards[i]];
    if (on_loop && (!notiers || r->steps > NQ_INLINE_STEPS || has_subquery(promql_root(e)))) {
        rc = NODE_QUERY_LATER;
        goto done;
    }
    node_running_t *slot = running_add(n, r->query_id);
    nq_t q = {n, r, 0, 0, 0, slot ? &slot->cancel : NULL, 0, 0, 0, msg, msglen, on_loop, 0};
    q.deadline = st_mono_ms() + (r->timeout_ms ? r->timeout_ms : NQ_TIMEOUT_MS);
    const topo_storage_t *st = topo_storage(n->topo);
    promql_limit_t refused = PROMQL_LIMIT_NONE;
    promql_eval_opts_t o = {
        .lookback_ms = r->lookback_ms,
        .max_samples =
            r->max_samples && r->max_samples < NQ_MAX_SAMPLES ? r->max_samples : NQ_MAX_SAMPLES,
        .max_series = r->max_series,
        .deadline_ms = q.deadline,
        .cancel = q.cancel,
        .max_bytes = r->max_bytes ? r->max_bytes : NQ_MAX_BYTES,
        .shared_bytes = &n->query_bytes,
        .shared_max_bytes = st->query_total_max_bytes,
        .refused = &refused,
        .subquery = 1,
        .query_start_ms = r->query_start_ms,
        .query_end_ms = r->query_end_ms,
        .avg_parts = 1,
    };
    const topo_tier_t *tt;
    size_t ntiers = topo_tiers(n->topo, &tt);
    int64_t widths[TOPO_TIERS_MAX];
    int tiered = ntiers > 0;
    for (size_t i = 0; i < r->n_shards && tiered; i++)
        tiered = n->tiers[r->shards[i]] != NULL;
    if (tiered) {
        for (size_t i = 0; i < ntiers; i++)
            widths[i] = tt[i].res_ms;
        o.tier_res = widths;
        o.ntier_res = ntiers;
        o.buckets = nq_buckets;
    }
    if (notiers)
        o.counts = nq_counts;
    int64_t end = r->start_ms + (int64_t)(r->steps - 1) * r->step_ms;
    msg[0] = 0;
    rc = promql_eval(e, r->start_ms, end, r->step_ms, &o, nq_select, &q, &res, msg, msglen);
    int cancelled = rc && q.cancel && atomic_load(q.cancel);
    running_remove(n, slot);
    if (rc && q.later) { /* over the loop's budget: the pool starts over */
        msg[0] = 0;
        rc = NODE_QUERY_LATER;
        goto done;
    }
    metric_counter_add(n->query_samples, q.samples);
    if (cancelled) {
        metric_counter_inc(n->queries_cancelled);
        snprintf(msg, msglen, "query cancelled");
        goto done;
    }
    if (rc) {
        if (q.regex_limit)
            refused = PROMQL_LIMIT_REGEX;
        else if (rc == ST_ETIMEDOUT)
            refused = PROMQL_LIMIT_TIMEOUT;
        if (refused != PROMQL_LIMIT_NONE)
            metric_counter_inc(n->query_refused[refused]);
        if (!msg[0])
            snprintf(msg, msglen, "%s", st_strerror(rc));
        goto done;
    }
    uint64_t points = 0;
    if ((rc = qreply_encode(res, r->start_ms, r->step_ms, r->steps, NQ_MAX_REPLY, out, &points, msg,
                            msglen)))
        goto done;
    const promql_node_t *root = promql_unparen(promql_root(e));
    qreply_counts_t cnt = {q.samples,
                           points,
                           q.series,
                           q.raw_read ? 0 : (uint64_t)q.res_read,
                           root->kind == PROMQL_AGGREGATE && root->u.agg.op == PROMQL_AGG_AVG,
                           res->avg_sums};
    if (cnt.resolution_ms)
        metric_counter_inc(n->queries_downsampled);
    rc = qreply_put_counts(out, &cnt);
    metric_counter_inc(n->queries);
    metric_counter_add(n->query_points, points);
done:
    promql_result_free(res);
    if (e)
        promql_free(e);
    strata__query_request__free_unpacked(r, NULL);
    return rc;
}

/* RPC matchers as C strings in one arena (NUL bytes refused): the reads of
 * node_rpc.c and the deletes of node_delete.c share it. */
int node_matchers_from(Strata__Matcher *const *ms, size_t nms, matchers_t *out, char *msg,
                       size_t msglen)
{
    out->n = 0;
    out->arena = NULL;
    if (nms > NODE_READ_MAX_MATCHERS) {
        snprintf(msg, msglen, "too many matchers (max %d)", NODE_READ_MAX_MATCHERS);
        return ST_ELIMIT;
    }
    size_t bytes = 0;
    for (size_t i = 0; i < nms; i++)
        bytes += ms[i]->name.len + ms[i]->value.len + 2;
    out->arena = malloc(bytes + 1);
    if (!out->arena)
        return ST_ENOMEM;
    char *p = out->arena;
    for (size_t i = 0; i < nms; i++) {
        const Strata__Matcher *m = ms[i];
        if ((unsigned)m->type > ST_MATCH_NRE) {
            snprintf(msg, msglen, "unknown matcher type %d", m->type);
            return ST_EINVAL;
        }
        /* name and value become C strings below: a NUL would cut them short */
        if ((m->name.len && memchr(m->name.data, 0, m->name.len)) ||
            (m->value.len && memchr(m->value.data, 0, m->value.len))) {
            snprintf(msg, msglen, "NUL byte in matcher %zu", i);
            return ST_EINVAL;
        }
        out->m[i].type = (st_match_type_t)m->type;
        out->m[i].name = p;
        if (m->name.len) /* protobuf-c leaves data NULL for empty bytes */
            memcpy(p, m->name.data, m->name.len);
        p += m->name.len;
        *p++ = '\0';
        out->m[i].value = p;
        if (m->value.len)
            memcpy(p, m->value.data, m->value.len);
        p += m->value.len;
        *p++ = '\0';
    }
    out->n = nms;
    return 0;
}

/* ---- TOPN: the newest (oldest) n row keys (SQL ORDER BY time ... LIMIT) ----
 *
 * A key is (tag set, time); its tag set travels as "name\0value\0" per label
 * but __name__ (labels are sorted by name), kept in one buffer. Keys sort
 * by time, then by those bytes: the order SQL gives rows of equal time
 * (sql_exec.c compares tag sets label by label, which is the same). */

typedef struct tkey {
    int64_t ts;
    uint64_t tagset; /* hash */
    size_t off;      /* its tag set's bytes in topn_t.lab */
    uint32_t len;
} tkey_t;

typedef struct topn {
    tkey_t *k;
    size_t n, cap;
    st_buf_t lab;
    int64_t deadline;
    int oldest;
} topn_t;

static int topn_key(topn_t *t, const st_label_t *l, size_t nl, uint64_t h, int64_t ts, size_t off,
                    uint32_t len)
{
    (void)l, (void)nl;
    if (t->n == t->cap && st_grow(&t->k, &t->cap, sizeof *t->k, 1024))
        return ST_ENOMEM;
    t->k[t->n++] = (tkey_t){ts, h, off, len};
    return 0;
}

/* Append l's tag set bytes to t->lab: 0 with *off / *len, or ST_ENOMEM. */
static int topn_lab(topn_t *t, const st_label_t *l, size_t nl, size_t *off, uint32_t *len)
{
    *off = t->lab.len;
    for (size_t i = 0; i < nl; i++) {
        if (!strcmp(l[i].name, ST_METRIC_LABEL))
            continue;
        st_buf_append(&t->lab, l[i].name, l[i].name_len);
        st_buf_put_u8(&t->lab, 0);
        st_buf_append(&t->lab, l[i].value, l[i].value_len);
        if (st_buf_put_u8(&t->lab, 0))
            return ST_ENOMEM;
    }
    *len = (uint32_t)(t->lab.len - *off);
    return 0;
}

static int topn_edge(void *arg, const st_label_t *l, size_t nl, int64_t ts)
{
    topn_t *t = arg;
    size_t off;
    uint32_t len;
    int rc = topn_lab(t, l, nl, &off, &len);
    if (!rc)
        rc = topn_key(t, l, nl, st_labels_hash_noname(l, nl), ts, off, len);
    if (!rc && (t->n & 4095) == 0 && st_mono_ms() > t->deadline)
        rc = ST_ETIMEDOUT;
    return rc;
}

/* ---- ROW_STATS: timestamp fingerprints per tag set (SQL count(*)) ---- */

#define NRS_MAX_SETS 1000000u /* tag sets when the router sends no max_series */

typedef struct nrs {
    rowstats_t *rs;
    int64_t deadline;
    uint64_t series;
} nrs_t;

static int nrs_series(void *arg, const st_label_t *l, size_t nl, const engine_tstats_t *t)
{
    nrs_t *x = arg;
    rowstat_t st = {t->count, t->hash, t->mint, t->maxt};
    int rc = rowstats_add_series(x->rs, l, nl, &st);
    if (!rc && (++x->series & 255) == 0 && st_mono_ms() > x->deadline)
        rc = ST_ETIMEDOUT;
    return rc;
}

static int tkey_cmp(const void *pa, const void *pb, void *arg)
{
    const topn_t *t = arg;
    const tkey_t *a = pa, *b = pb;
    if (a->ts != b->ts)
        return (a->ts > b->ts ? -1 : 1) * (t->oldest ? -1 : 1);
    uint32_t m = a->len < b->len ? a->len : b->len;
    int c = m ? memcmp(t->lab.data + a->off, t->lab.data + b->off, m) : 0;
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* Sort t's keys, keep the first r->n distinct ones: their count. */
static size_t topn_distinct(topn_t *t, const Strata__TopnRequest *r)
{
    size_t k = 0;
    if (t->n > 1) /* t->k is NULL with no key */
        qsort_r(t->k, t->n, sizeof *t->k, tkey_cmp, t);
    for (size_t i = 0; i < t->n && k < r->n; i++)
        if (!k || tkey_cmp(&t->k[i], &t->k[k - 1], t))
            t->k[k++] = t->k[i];
    t->n = k;
    return k;
}

/* The keys of every sample in [lo, hi] of one shard: each series' newest
 * (oldest) n. */
static int topn_window(topn_t *t, engine_t *e, const matchers_t *m, int64_t lo, int64_t hi,
                       const Strata__TopnRequest *r, char *msg, size_t msglen)
{
    engine_iter_t *it;
    int rc = engine_query(e, m->m, m->n, lo, hi, &it);
    if (rc) {
        snprintf(msg, msglen, "%s", engine_last_error());
        return rc;
    }
    const st_label_t *l;
    size_t nl, cnt;
    const int64_t *ts;
    const double *v;
    while ((rc = engine_iter_next(it, &l, &nl, &ts, &v, &cnt)) == 1) {
        size_t take = cnt < r->n ? cnt : r->n;
        size_t from = r->oldest ? 0 : cnt - take;
        uint64_t h = st_labels_hash_noname(l, nl);
        size_t off;
        uint32_t len;
        rc = topn_lab(t, l, nl, &off, &len);
        for (size_t i = from; !rc && i < from + take; i++)
            rc = topn_key(t, l, nl, h, ts[i], off, len);
        if (!rc && st_mono_ms() > t->deadline) {
            snprintf(msg, msglen, "timed out");
            rc = ST_ETIMEDOUT;
        }
        if (rc)
            break;
    }
    engine_iter_destroy(it);
    return rc < 0 ? rc : 0;
}

int node_topn(node_t *n, const uint8_t *payload, size_t len, st_buf_t *out, char *msg,
              size_t msglen)
{
    Strata__TopnRequest *r = strata__topn_request__unpack(NULL, len, payload);
    if (!r) {
        snprintf(msg, msglen, "malformed TopnRequest");
        return ST_EPROTO;
    }
    matchers_t m;
    topn_t t = {.deadline = st_mono_ms() + NQ_TIMEOUT_MS, .oldest = r->oldest};
    st_buf_init(&t.lab);
    int rc = node_matchers_from(r->matchers, r->n_matchers, &m, msg, msglen);
    if (!rc && (r->n == 0 || r->n > NODE_TOPN_MAX)) {
        snprintf(msg, msglen, "n must be 1..%u", NODE_TOPN_MAX);
        rc = ST_EINVAL;
    }
    for (size_t i = 0; !rc && i < r->n_shards; i++) {
        if (r->shards[i] >= (uint32_t)topo_shards(n->topo) || !n->engines[r->shards[i]]) {
            snprintf(msg, msglen, "shard %u is not placed on node %s", r->shards[i],
                     topo_node_id(n->topo, n->self));
            rc = ST_EINVAL;
            break;
        }
        rc = engine_edge(n->engines[r->shards[i]], m.m, m.n, r->start_ms, r->end_ms, r->oldest,
                         topn_edge, &t);
        if (rc)
            snprintf(msg, msglen, "shard %u: %s", r->shards[i],
                     rc == ST_ETIMEDOUT ? "timed out" : engine_last_error());
    }
    uint64_t series = t.n;
    size_t k = rc ? 0 : topn_distinct(&t, r);
    /* fewer distinct keys than asked (few tag sets): the samples of a window
     * from the newest (oldest) edge, growing until it holds n keys or is
     * the whole range */
    int64_t w = 60000, edge = k ? t.k[0].ts : 0;
    for (int round = 0;
         !rc && k && k < r->n && round<32; round++, w = w> INT64_MAX / 8 ? INT64_MAX : w * 8) {
        int64_t lo = r->oldest || edge - r->start_ms <= w ? r->start_ms : edge - w;
        int64_t hi = !r->oldest || r->end_ms - edge <= w ? r->end_ms : edge + w;
        t.n = 0;
        t.lab.len = 0;
        for (size_t i = 0; !rc && i < r->n_shards; i++)
            rc = topn_window(&t, n->engines[r->shards[i]], &m, lo, hi, r, msg, msglen);
        k = rc ? 0 : topn_distinct(&t, r);
        if (lo == r->start_ms && hi == r->end_ms)
            break;
    }
    if (!rc) {
        Strata__TopnResponse resp = STRATA__TOPN_RESPONSE__INIT;
        uint64_t *hs = malloc((k ? k : 1) * sizeof *hs);
        int64_t *ts = malloc((k ? k : 1) * sizeof *ts);
        ProtobufCBinaryData *lb = malloc((k ? k : 1) * sizeof *lb);
        if (!hs || !ts || !lb) {
            rc = ST_ENOMEM;
        } else {
            for (size_t i = 0; i < k; i++) {
                hs[i] = t.k[i].tagset, ts[i] = t.k[i].ts;
                lb[i] = (ProtobufCBinaryData){t.k[i].len, t.lab.data + t.k[i].off};
            }
            resp.n_tagsets = resp.n_ts = resp.n_labels = k;
            resp.tagsets = hs;
            resp.ts = ts;
            resp.labels = lb;
            resp.series = series;
            size_t plen = strata__topn_response__get_packed_size(&resp);
            rc = st_buf_reserve(out, plen);
            if (!rc) {
                strata__topn_response__pack(&resp, out->data + out->len);
                out->len += plen;
            }
        }
        free(hs);
        free(ts);
        free(lb);
    }
    free(t.k);
    st_buf_deinit(&t.lab);
    free(m.arena);
    strata__topn_request__free_unpacked(r, NULL);
    return rc;
}

int node_row_stats(node_t *n, const Strata__ReadRequest *r, const st_matcher_t *m, size_t nm,
                   st_buf_t *out, char *msg, size_t msglen)
{
    if (!shards_local(n, r->shards, r->n_shards, msg, msglen))
        return ST_EINVAL;
    nrs_t x = {NULL, st_mono_ms() + (r->timeout_ms ? r->timeout_ms : NQ_TIMEOUT_MS), 0};
    size_t max_sets = r->max_series && r->max_series < NRS_MAX_SETS ? r->max_series : NRS_MAX_SETS;
    int rc = rowstats_create(max_sets, &x.rs);
    uint64_t samples = 0;
    for (size_t si = 0; si < r->n_shards && !rc && !rowstats_raw(x.rs); si++) {
        engine_tiers_t *tiers = n->tiers[r->shards[si]];
        if (tiers && engine_tiers_raw_after(tiers) != INT64_MIN &&
            r->start_ms <= engine_tiers_raw_after(tiers)) {
            rowstats_set_raw(x.rs); /* reads go through the tiers there (nq_select) */
            break;
        }
        engine_count_stats_t st = {0};
        rc = engine_tstats(n->engines[r->shards[si]], m, nm, r->start_ms, r->end_ms,
                           ENGINE_COUNT_NO_STALE, nrs_series, &x, &st);
        samples += st.samples;
        if (rc == ST_ETIMEDOUT)
            snprintf(msg, msglen, "row stats timed out (request_timeout)");
        else if (rc == ST_ELIMIT &&
                 (rowstats_nsets(x.rs) >= max_sets || rowstats_nmetrics(x.rs) >= max_sets))
            snprintf(msg, msglen, "more than %zu tag sets", max_sets);
        else if (rc)
            snprintf(msg, msglen, "shard %u: %s", r->shards[si], engine_last_error());
    }
    if (!rc && (rc = rowstats_encode(x.rs, NQ_MAX_REPLY, out)) == ST_ELIMIT)
        snprintf(msg, msglen, "row stats larger than %u bytes", (unsigned)NQ_MAX_REPLY);
    rowstats_destroy(x.rs);
    metric_counter_add(n->row_stats_samples, samples);
    if (!rc)
        metric_counter_inc(n->row_stats);
    return rc;
}

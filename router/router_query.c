/*
 * router_query — /api/v1/query and /api/v1/query_range (GET or POST form).
 *
 * A query runs in three steps (docs/query.md):
 *   1. worker: parse; plan the pushdown (promql_plan.h marks the subtrees
 *      the nodes evaluate); evaluate once without data: the evaluator
 *      reports each raw selection (matchers, time range) and each pushed
 *      part (subtree, grid) it needs;
 *   2. loop:   fetch them all through the fan-out core (fanout.h),
 *      Q_MAX_INFLIGHT at a time: for every group of the read plan (one
 *      node, the shards it answers for) a QUERY RPC per pushed part and
 *      paged EXPORT RPCs per raw selection. A node that fails moves its
 *      shards to their next replica; what it had sent for pushed parts is
 *      dropped, raw samples are folded;
 *   3. worker: evaluate again, serving selections from the fetched samples
 *      and pushed parts from the nodes' answers (partial aggregates are
 *      merged there), and render Prometheus' JSON.
 * A pushed avg (plan parts: its sum and its count) is one QUERY RPC of
 * the avg's own text: the node evaluates the argument once and answers
 * the sums, then the counts (qreply_decode_avg serves each part).
 * Quorum reads (several replicas per shard) fetch raw samples only: the
 * replicas' samples are folded before evaluation. pushdown=0 turns the
 * pushdown off for one query.
 * Errors use Prometheus' format and types: bad_data (400), execution (422),
 * timeout (503), unavailable (503).
 * Limits: [router] query_max_samples / query_max_series (counted here and
 * sent to the nodes), query_max_mb (bytes one evaluation materialises, here
 * and on each node: QueryRequest.max_bytes), request_timeout (the deadline,
 * sent as timeout_ms; nodes stop at it). A refusal is a 422 naming the
 * setting (a timeout a 503) and counted in
 * strata_router_queries_refused_total{limit="<setting>"}.
 * Cancellation: every QueryRequest of one query carries the same query id;
 * when the router answers while nodes still work for it (a node's refusal
 * or failure ends the query, the deadline passed) or the client closes
 * the connection during the fetch, a CANCEL of that id goes to every node
 * with a call still outstanding (fanout_busy_nodes), which stops those
 * evaluations at once instead of at the deadline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http_util.h"
#include "promql.h"
#include "promql_eval.h"
#include "promql_plan.h"
#include "fanout.h"
#include "qreply.h"
#include "readopt.h"
#include "router.h"
#include "router_rrepair.h"
#include "sset.h"
#include "st_err.h"
#include "st_time.h"
#include "st_log.h"
#include "st_text.h"
#include "strata.pb-c.h"
#include "wire.h"

#define Q_MAX_SELECTS 64           /* raw selections per query */
#define Q_MAX_REMOTES 64           /* pushed-down parts per query */
#define Q_MAX_POINTS 11000         /* points per series of a range query */
#define Q_ERR_MAX 512              /* bytes of an error message */
#define Q_MSG_MAX 300              /* bytes of a parameter error */
#define Q_NODE_TEXT_MAX 300        /* bytes of a node's error text quoted */
#define Q_REPLIES_MIN 8            /* first size of a part's reply list */
#define Q_MAX_INFLIGHT 32          /* RPCs in flight per query */
#define Q_BARE_SELECTOR_STEP 10000 /* push bare selectors from this step up (ms) */
#define Q_CANCEL_TIMEOUT_MS 2000   /* a CANCEL's answer is awaited this long (then dropped) */
#define Q_ID_STRIDE 0x9e3779b97f4a7c15ull /* odd: successive ids differ in every bit range */
#define Q_INLINE_TEXT_MAX 1024            /* plan on the loop: query text up to this, no subquery */
#define Q_INLINE_SAMPLES 16384 /* evaluate on the loop: fetched samples + points up to this */
#define Q_INLINE_WORK 1000000  /* ... and (those + 1) x steps up to this */

typedef struct qselect {
    st_matcher_t m[ROUTER_MAX_MATCHERS];
    size_t nm;
    int64_t mint, maxt;
    sset_t set;
} qselect_t;

/* One node's answer to a pushed part. */
typedef struct qreply {
    size_t group;
    uint8_t *data;
    size_t len;
} qreply_t;

/* A pushed part: subtree n on a grid (an avg: both its parts, sums and
 * counts, from one RPC). */
typedef struct qremote {
    const promql_node_t *n;
    int part;
    int avg;
    int64_t start, step;
    size_t nsteps;
    st_buf_t text;
    qreply_t *r;
    size_t nr, cap;
} qremote_t;

typedef struct qjob {
    uv_work_t w;
    router_t *r;
    http_req_t *req;
    char *query;
    int range;
    int64_t start, end, step, deadline;
    promql_expr_t *expr;
    router_rrcheck_t *rr; /* read repair check of phase 2's folds (NULL: none) */
    qselect_t sel[Q_MAX_SELECTS];
    size_t nsel;
    qremote_t rem[Q_MAX_REMOTES];
    size_t nrem;
    int pushdown;  /* 0 off, 1 on (when the read allows it) */
    size_t pushed; /* subtrees the plan pushed */
    int phase;     /* 1: plan, 2: evaluate */
    int status;
    const char *etype;
    char err[Q_ERR_MAX];
    st_buf_t out;
    uint64_t samples, series;         /* fetched: samples + values; series the nodes selected */
    uint64_t max_samples, max_series; /* [router] query_max_samples, query_max_series */
    uint64_t max_bytes;               /* [router] query_max_mb (here and on every node) */
    promql_limit_t refused;           /* the limit the evaluation ran into */
    uint64_t qid;                     /* QueryRequest.query_id: what a CANCEL names */
    int64_t res_ms;                   /* widest downsampled buckets a pushed part read */
    int res_raw;                      /* a pushed part read raw samples */
    /* fetch state */
    int need, partial, responded;
    fanout_t *fan;
    int fan_idle; /* the fan-out is idle (or was never started) */
    int inline2;  /* fetch complete, small: evaluate on the loop once the fan-out idles */
    /* a confined user (auth.h): its matchers, ANDed into every selector */
    const st_matcher_t *confine;
    size_t nconfine;
    void **confined_sets; /* the arrays that replaced the parser's (sets, matchers) */
    size_t nconfined, confined_cap;
    /* another door's query (router_promql_run): no HTTP request, the
     * result or the error goes to cb */
    router_promql_cb cb;
    void *cb_arg;
    promql_result_t *res;
} qjob_t;

static void free_job(qjob_t *j)
{
    router_rrcheck_end(j->r, j->rr);
    for (size_t i = 0; i < j->nsel; i++) {
        qselect_t *s = &j->sel[i];
        for (size_t k = 0; k < s->nm; k++) {
            free((char *)s->m[k].name);
            free((char *)s->m[k].value);
        }
        sset_free(&s->set);
    }
    for (size_t i = 0; i < j->nrem; i++) {
        qremote_t *q = &j->rem[i];
        for (size_t k = 0; k < q->nr; k++)
            free(q->r[k].data);
        free(q->r);
        st_buf_deinit(&q->text);
    }
    fanout_destroy(j->fan);
    promql_result_free(j->res);
    if (j->expr)
        promql_free(j->expr);
    for (size_t i = 0; i < j->nconfined; i++)
        free(j->confined_sets[i]);
    free(j->confined_sets);
    st_buf_deinit(&j->out);
    free(j->query);
    free(j);
}

/* After an answer the job goes once the fan-out (if any) is idle. */
static void maybe_free(qjob_t *j)
{
    if (j->responded && (!j->fan || j->fan_idle))
        free_job(j);
}

/* A query id unique within this router (a Weyl sequence from a per-process
 * seed: ids of two routers collide with negligible probability). Loop thread. */
static uint64_t next_query_id(void)
{
    static uint64_t last;
    if (!last)
        last = ((uint64_t)getpid() << 32) ^ (uint64_t)st_now_ms() * Q_ID_STRIDE;
    last += Q_ID_STRIDE;
    if (!last)
        last += Q_ID_STRIDE;
    return last;
}

static void cancel_done(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    (void)arg, (void)status, (void)type, (void)payload, (void)len; /* best effort */
}

/* Tell the nodes that still owe the fetch an answer to stop its QUERYs. */
static void cancel_nodes(qjob_t *j)
{
    if (!j->fan || j->fan_idle)
        return;
    uint32_t nn = topo_node_count(j->r->topo);
    uint32_t *nodes = malloc((nn ? nn : 1) * sizeof *nodes);
    if (!nodes)
        return;
    size_t n = fanout_busy_nodes(j->fan, nodes, nn);
    Strata__CancelRequest c = STRATA__CANCEL_REQUEST__INIT;
    c.query_id = j->qid;
    uint8_t buf[16];
    size_t len = strata__cancel_request__pack(&c, buf);
    for (size_t i = 0; i < n; i++)
        rpc_client_call(j->r->clients[nodes[i]], RPC_CANCEL, buf, len, Q_CANCEL_TIMEOUT_MS,
                        cancel_done, NULL);
    free(nodes);
}

/* Answer with an error (once); nodes still working for it are cancelled. */
static void respond_error(qjob_t *j, int status, const char *etype, const char *msg)
{
    if (!j->responded) {
        if (j->cb)
            j->cb(j->cb_arg, status, msg, NULL);
        else
            router_prom_error(j->req, status, etype, msg);
        j->responded = 1;
        cancel_nodes(j);
    }
    maybe_free(j);
}

/* The client closed the connection: during the fetch, stop it and cancel
 * the nodes' work (during an evaluation the answer finds the connection
 * gone; the worker holds the job then). */
static void on_client_gone(http_req_t *req, int event, void *arg)
{
    qjob_t *j = arg;
    (void)req;
    if (event == HTTP_NOTIFY_DRAIN || j->responded || !j->fan || j->fan_idle)
        return;
    respond_error(j, 503, "canceled", "client closed the connection");
    fanout_stop(j->fan); /* may free the job (idle) */
}

static int same_matchers(const qselect_t *s, const st_matcher_t *m, size_t nm, int64_t mint,
                         int64_t maxt)
{
    if (s->nm != nm || s->mint != mint || s->maxt != maxt)
        return 0;
    for (size_t i = 0; i < nm; i++)
        if (s->m[i].type != m[i].type || strcmp(s->m[i].name, m[i].name) ||
            strcmp(s->m[i].value, m[i].value))
            return 0;
    return 1;
}

/* Pass 1: remember what is needed, return nothing. */
static int plan_select(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                       promql_sink_t *sink)
{
    qjob_t *j = arg;
    (void)sink;
    for (size_t i = 0; i < j->nsel; i++)
        if (same_matchers(&j->sel[i], m, nm, mint, maxt))
            return 0;
    if (j->nsel == Q_MAX_SELECTS || nm > ROUTER_MAX_MATCHERS) {
        snprintf(j->err, sizeof j->err, "query needs more than %d selections", Q_MAX_SELECTS);
        return ST_ELIMIT;
    }
    qselect_t *s = &j->sel[j->nsel++];
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < nm; i++) {
        s->m[i].type = m[i].type;
        s->m[i].name = strdup(m[i].name);
        s->m[i].value = strdup(m[i].value);
        if (!s->m[i].name || !s->m[i].value)
            return ST_ENOMEM;
        s->nm = i + 1;
    }
    s->mint = mint;
    s->maxt = maxt;
    sset_init(&s->set, 0);
    return 0;
}

/* A partial avg: its sum and count parts come from one RPC of its own text. */
static int remote_avg(const promql_node_t *n)
{
    return n->push == PROMQL_PUSH_PARTIAL && n->kind == PROMQL_AGGREGATE &&
           n->u.agg.op == PROMQL_AGG_AVG;
}

static qremote_t *find_remote(qjob_t *j, const promql_node_t *n, int part, int64_t start,
                              int64_t step, size_t nsteps)
{
    if (remote_avg(n))
        part = 0;
    for (size_t i = 0; i < j->nrem; i++) {
        qremote_t *q = &j->rem[i];
        if (q->n == n && q->part == part && q->start == start && q->step == step &&
            q->nsteps == nsteps)
            return q;
    }
    return NULL;
}

static int plan_remote(void *arg, const promql_node_t *n, int part, int64_t start, int64_t step,
                       size_t nsteps, promql_vsink_t *sink)
{
    qjob_t *j = arg;
    (void)sink;
    if (find_remote(j, n, part, start, step, nsteps))
        return 0;
    if (j->nrem == Q_MAX_REMOTES) {
        snprintf(j->err, sizeof j->err, "query needs more than %d pushed-down parts",
                 Q_MAX_REMOTES);
        return ST_ELIMIT;
    }
    qremote_t *q = &j->rem[j->nrem++];
    memset(q, 0, sizeof *q);
    q->n = n;
    q->part = part;
    q->start = start;
    q->step = step;
    q->nsteps = nsteps;
    q->avg = remote_avg(n);
    if (q->avg)
        q->part = 0;
    st_buf_init(&q->text);
    return q->avg ? promql_format(n, &q->text) : promql_push_text(n, part, &q->text);
}

/* Pass 2: serve from the fetched data. */
static int serve_select(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                        promql_sink_t *sink)
{
    qjob_t *j = arg;
    for (size_t i = 0; i < j->nsel; i++) {
        qselect_t *s = &j->sel[i];
        if (!same_matchers(s, m, nm, mint, maxt))
            continue;
        for (size_t k = 0; k < s->set.n; k++) {
            const sset_series_t *fs = &s->set.s[k];
            int rc = promql_sink_add(sink, fs->labels, fs->nlabels, fs->ts, fs->v, fs->n);
            if (rc)
                return rc;
        }
        return 0;
    }
    return ST_EINVAL; /* a selection the plan did not see */
}

static int serve_remote(void *arg, const promql_node_t *n, int part, int64_t start, int64_t step,
                        size_t nsteps, promql_vsink_t *sink)
{
    qjob_t *j = arg;
    const qremote_t *q = find_remote(j, n, part, start, step, nsteps);
    if (!q)
        return ST_EINVAL; /* a part the plan did not see */
    int rc = 0;
    for (size_t i = 0; i < q->nr && !rc; i++)
        if (!fanout_group_failed(j->fan, q->r[i].group))
            rc = q->avg ? qreply_decode_avg(q->r[i].data, q->r[i].len, q->nsteps, part, sink)
                        : qreply_decode(q->r[i].data, q->r[i].len, q->nsteps, sink);
    if (rc == ST_ECORRUPT)
        snprintf(j->err, sizeof j->err, "malformed pushed-down result from a node");
    return rc;
}

/* The limit a node's error text names (its evaluator's messages). */
static promql_limit_t node_limit(const char *msg, int status)
{
    if (status == ST_ETIMEDOUT)
        return PROMQL_LIMIT_TIMEOUT;
    if (strstr(msg, "(query_total_max_mb)"))
        return PROMQL_LIMIT_TOTAL_BYTES;
    if (strstr(msg, "(query_max_mb)"))
        return PROMQL_LIMIT_BYTES;
    if (strstr(msg, "match limit"))
        return PROMQL_LIMIT_REGEX;
    if (strstr(msg, "too many series"))
        return PROMQL_LIMIT_SERIES;
    if (strstr(msg, "too many samples"))
        return PROMQL_LIMIT_SAMPLES;
    return PROMQL_LIMIT_NONE;
}

static void count_refused(qjob_t *j, promql_limit_t l)
{
    if (l > PROMQL_LIMIT_NONE && l < PROMQL_LIMIT_COUNT)
        metric_counter_inc(j->r->q_refused[l]);
}

/* Name the limits in a limit error, so the user knows which knob it was
 * (a byte or regex limit names itself). */
static void limit_hint(qjob_t *j)
{
    if (strstr(j->err, "max_mb)") || strstr(j->err, "match limit"))
        return;
    size_t n = strlen(j->err);
    snprintf(j->err + n, sizeof j->err - n,
             " (limits: [router] query_max_samples = %llu, query_max_series = %llu)",
             (unsigned long long)j->max_samples, (unsigned long long)j->max_series);
}

/* AND the confined user's matchers into every matcher set of every
 * selector under n (the parsed tree is this job's own, so it is changed in
 * place; the new arrays are the job's). 0, or -1 with j->err set. */
/* p belongs to the job from now on (freed even when this fails). */
static int keep_confined(qjob_t *j, void *p)
{
    if (j->nconfined == j->confined_cap &&
        st_grow(&j->confined_sets, &j->confined_cap, sizeof *j->confined_sets, 8)) {
        free(p);
        return -1;
    }
    j->confined_sets[j->nconfined++] = p;
    return 0;
}

static int confine_tree(qjob_t *j, promql_node_t *n, int depth)
{
    if (!n)
        return 0;
    if (depth > PROMQL_MAX_TREE_DEPTH) {
        snprintf(j->err, sizeof j->err, "query too deep");
        return -1;
    }
    int rc = 0;
    switch (n->kind) {
    case PROMQL_VECTOR_SELECTOR:
        if (n->u.vs.nsets == 0) { /* a bare name: one set, of the user's matchers */
            promql_matcher_set_t *one = calloc(1, sizeof *one);
            if (!one || keep_confined(j, one)) {
                snprintf(j->err, sizeof j->err, "out of memory");
                return -1;
            }
            n->u.vs.sets = one;
            n->u.vs.nsets = 1;
        }
        for (size_t i = 0; i < n->u.vs.nsets; i++) {
            promql_matcher_set_t *set = &n->u.vs.sets[i];
            if (set->n + j->nconfine > ROUTER_MAX_MATCHERS) {
                snprintf(j->err, sizeof j->err,
                         "more than %d matchers in a selector with the user's selector",
                         ROUTER_MAX_MATCHERS);
                return -1;
            }
            st_matcher_t *m = malloc((set->n + j->nconfine) * sizeof *m);
            if (!m || keep_confined(j, m)) {
                snprintf(j->err, sizeof j->err, "out of memory");
                return -1;
            }
            if (set->n) /* a bare {} has no matchers of its own */
                memcpy(m, set->m, set->n * sizeof *m);
            memcpy(m + set->n, j->confine, j->nconfine * sizeof *m);
            set->m = m;
            set->n += j->nconfine;
        }
        return 0;
    case PROMQL_MATRIX_SELECTOR:
        return confine_tree(j, n->u.ms.vs, depth + 1);
    case PROMQL_SUBQUERY:
        return confine_tree(j, n->u.sq.expr, depth + 1);
    case PROMQL_UNARY:
        return confine_tree(j, n->u.unary.expr, depth + 1);
    case PROMQL_BINARY:
        if ((rc = confine_tree(j, n->u.bin.lhs, depth + 1)) != 0)
            return rc;
        return confine_tree(j, n->u.bin.rhs, depth + 1);
    case PROMQL_AGGREGATE:
        if ((rc = confine_tree(j, n->u.agg.param, depth + 1)) != 0)
            return rc;
        return confine_tree(j, n->u.agg.expr, depth + 1);
    case PROMQL_CALL:
        for (size_t i = 0; i < n->u.call.nargs && !rc; i++)
            rc = confine_tree(j, n->u.call.args[i], depth + 1);
        return rc;
    case PROMQL_PAREN:
        return confine_tree(j, n->u.paren.expr, depth + 1);
    default:
        return 0;
    }
}

static void eval_work(uv_work_t *w)
{
    qjob_t *j = w->data;
    if (j->phase == 1) {
        if (promql_parse(j->query, strlen(j->query), &j->expr, j->err, sizeof j->err)) {
            j->status = 400;
            j->etype = "bad_data";
            return;
        }
        if (j->nconfine &&
            confine_tree(j, (promql_node_t *)(uintptr_t)promql_root(j->expr), 0) != 0) {
            j->status = 422;
            j->etype = "execution";
            return;
        }
        promql_type_t t = promql_root(j->expr)->type;
        if (j->range && t != PROMQL_TYPE_SCALAR && t != PROMQL_TYPE_VECTOR) {
            snprintf(j->err, sizeof j->err,
                     "invalid expression type \"%s\" for range query, must be Scalar or instant "
                     "Vector",
                     promql_type_name(t));
            j->status = 400;
            j->etype = "bad_data";
            return;
        }
        if (j->pushdown)
            j->pushed = promql_plan(j->expr, !j->range ? PROMQL_PLAN_INSTANT
                                             : j->step < Q_BARE_SELECTOR_STEP
                                                 ? PROMQL_PLAN_NO_BARE_SELECTORS
                                                 : 0);
    }
    if (j->phase == 2 && (j->need > 1 || fanout_failovers(j->fan))) {
        /* several replicas answered for some shards: fold duplicates */
        for (size_t i = 0; i < j->nsel; i++) {
            if (router_rrcheck_merge(j->rr, &j->sel[i].set)) {
                j->status = 503;
                j->etype = "internal";
                snprintf(j->err, sizeof j->err, "out of memory");
                return;
            }
        }
    }
    promql_eval_opts_t o = {.max_samples = j->max_samples,
                            .max_series = j->max_series,
                            .deadline_ms = j->deadline,
                            .max_bytes = j->max_bytes,
                            .refused = &j->refused,
                            .remote = j->phase == 1 ? plan_remote : serve_remote};
    promql_result_t *res = NULL;
    int rc =
        promql_eval(j->expr, j->start, j->end, j->step, &o,
                    j->phase == 1 ? plan_select : serve_select, j, &res, j->err, sizeof j->err);
    if (rc) {
        j->status = rc == ST_ETIMEDOUT ? 503 : 422;
        j->etype = rc == ST_ETIMEDOUT ? "timeout" : "execution";
        if (!j->err[0])
            snprintf(j->err, sizeof j->err, "%s", st_strerror(rc));
        if (rc == ST_ELIMIT)
            limit_hint(j);
        count_refused(j, j->refused);
        return;
    }
    if (j->phase == 2 && j->cb) {
        j->res = res; /* handed to cb on the loop */
        return;
    }
    if (j->phase == 2) {
        ST_BUF_LIT(&j->out, "{\"status\":\"success\",\"data\":");
        rc = promql_result_json(res, j->range, &j->out);
        char warn[FANOUT_WARNING_MAX];
        size_t nw = fanout_partial_warning(j->fan, warn, sizeof warn);
        if (nw) {
            ST_BUF_LIT(&j->out, ",\"warnings\":[");
            st_json_str(&j->out, warn, nw);
            st_buf_put_u8(&j->out, ']');
        }
        st_buf_put_u8(&j->out, '}');
        if (rc) {
            j->status = 503;
            j->etype = "internal";
            snprintf(j->err, sizeof j->err, "out of memory");
        }
    }
    promql_result_free(res);
}

static void eval_after(uv_work_t *w, int status);

/* A subquery ([range:step]) in the text: ':' inside brackets, outside
 * string literals. Its planning pass may walk many inner steps. */
static int text_has_subquery(const char *q)
{
    int depth = 0;
    for (const char *p = q; *p; p++) {
        if (*p == '"' || *p == '\'' || *p == '`') {
            char quote = *p;
            while (p[1] && p[1] != quote)
                p += p[1] == '\\' && quote != '`' && p[2] ? 2 : 1;
            if (!p[1])
                return 1; /* unterminated: let the worker's parser say so */
            p++;
        } else if (*p == '[') {
            depth++;
        } else if (*p == ']') {
            depth -= depth > 0;
        } else if (*p == ':' && depth) {
            return 1;
        }
    }
    return 0;
}

/*
 * Where a phase runs. The thread pool keeps long evaluations off the
 * loop, but each hand-off (a worker's wake-up, then the loop's) costs more
 * than the work of a small query: planning a short query without
 * subqueries (its no-data pass over at most 11,000 steps), or evaluating
 * and rendering at most Q_INLINE_SAMPLES fetched samples and points, whose
 * windows over all steps visit at most Q_INLINE_WORK samples. Those run on
 * the loop (HTTP queries only).
 */
static int phase_inline(const qjob_t *j, int phase)
{
    if (j->cb) /* other doors expect their callback from the loop's top */
        return 0;
    if (strlen(j->query) > Q_INLINE_TEXT_MAX || text_has_subquery(j->query))
        return 0;
    if (phase == 1)
        return 1;
    uint64_t steps = j->step > 0 ? (uint64_t)((j->end - j->start) / j->step) + 1 : 1;
    return j->samples <= Q_INLINE_SAMPLES && (j->samples + 1) * steps <= Q_INLINE_WORK &&
           j->need == 1 && !fanout_failovers(j->fan);
}

static void start_phase(qjob_t *j, int phase)
{
    j->phase = phase;
    if (phase == 2 && j->nsel) {
        /* read repair over the time the selections read */
        int64_t lo = j->sel[0].mint, hi = j->sel[0].maxt;
        for (size_t i = 1; i < j->nsel; i++) {
            lo = j->sel[i].mint < lo ? j->sel[i].mint : lo;
            hi = j->sel[i].maxt > hi ? j->sel[i].maxt : hi;
        }
        j->rr = router_rrcheck_begin(j->r, j->fan, j->need, lo, hi);
    }
    j->w.data = j;
    if (phase_inline(j, phase)) {
        eval_work(&j->w);
        eval_after(&j->w, 0);
        return;
    }
    if (uv_queue_work(j->r->loop, &j->w, eval_work, eval_after) != 0)
        respond_error(j, 503, "internal", "cannot queue work");
}

/* Items of the fan-out: pushed parts [0, nrem), then selections. */
static int q_build(void *ctx, const fanout_call_t *c, uint8_t *type, unsigned *timeout_ms,
                   st_buf_t *out)
{
    qjob_t *j = ctx;
    router_t *r = j->r;
    int64_t left = j->deadline - st_mono_ms();
    *timeout_ms = (unsigned)(left < 1 ? 1 : left);
    if (c->item >= j->nrem) {
        const qselect_t *s = &j->sel[c->item - j->nrem];
        *type = RPC_EXPORT;
        metric_counter_inc(r->q_raw);
        router_read_req_t rq = {
            .m = s->m, .nm = s->nm, .start = s->mint, .end = s->maxt, .timeout_ms = *timeout_ms};
        return router_pack_read(out, c, &rq);
    }
    const qremote_t *q = &j->rem[c->item];
    Strata__QueryRequest rq = STRATA__QUERY_REQUEST__INIT;
    rq.n_shards = c->nshards;
    rq.shards = (uint32_t *)c->shards;
    rq.expr = (ProtobufCBinaryData){q->text.len, q->text.data};
    rq.start_ms = q->start;
    rq.step_ms = q->step;
    rq.steps = (uint32_t)q->nsteps;
    rq.query_start_ms = j->start;
    rq.query_end_ms = j->end;
    rq.max_samples = j->max_samples;
    rq.max_series = j->max_series;
    rq.timeout_ms = *timeout_ms;
    rq.max_bytes = j->max_bytes;
    rq.query_id = j->qid;
    *type = RPC_QUERY;
    metric_counter_inc(r->q_pushed);
    return router_pack(out, &rq.base);
}

/* A pushed part's answer: kept (by group: dropped if the group fails over). */
static int q_remote_reply(qjob_t *j, const fanout_call_t *c, const uint8_t *payload, size_t len)
{
    qremote_t *q = &j->rem[c->item];
    qreply_counts_t cnt;
    qreply_counts(payload, len, &cnt);
    if (!cnt.resolution_ms)
        j->res_raw = 1;
    else if ((int64_t)cnt.resolution_ms > j->res_ms)
        j->res_ms = (int64_t)cnt.resolution_ms;
    j->samples += cnt.points;
    j->series += cnt.series;
    if (j->samples > j->max_samples || j->series > j->max_series) {
        snprintf(j->err, sizeof j->err, "query processing would load too many %s into memory",
                 j->series > j->max_series ? "series" : "samples");
        limit_hint(j);
        count_refused(j, j->series > j->max_series ? PROMQL_LIMIT_SERIES : PROMQL_LIMIT_SAMPLES);
        respond_error(j, 422, "execution", j->err);
        return FANOUT_STOP;
    }
    if (q->nr == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : Q_REPLIES_MIN;
        qreply_t *nr = realloc(q->r, cap * sizeof *nr);
        if (!nr) {
            respond_error(j, 503, "internal", "out of memory");
            return FANOUT_STOP;
        }
        q->r = nr;
        q->cap = cap;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) {
        respond_error(j, 503, "internal", "out of memory");
        return FANOUT_STOP;
    }
    if (len)
        memcpy(copy, payload, len);
    q->r[q->nr++] = (qreply_t){c->group, copy, len};
    return FANOUT_DONE;
}

static int q_reply(void *ctx, fanout_call_t *c, const uint8_t *payload, size_t len)
{
    qjob_t *j = ctx;
    if (c->item < j->nrem)
        return q_remote_reply(j, c, payload, len);
    int done;
    uint32_t nshard = 0;
    uint64_t npos = 0;
    qselect_t *s = &j->sel[c->item - j->nrem];
    uint64_t before = s->set.samples;
    s->set.origin = c->node; /* read repair: which replica sent these series */
    int rc = sset_add_page(&s->set, payload, len, &done, &nshard, &npos);
    j->samples += s->set.samples - before;
    if (!rc && j->samples > j->max_samples)
        rc = ST_ELIMIT;
    if (rc) {
        snprintf(j->err, sizeof j->err, "%s",
                 rc == ST_ELIMIT ? "query processing would load too many samples into memory"
                                 : "malformed reply from a node");
        if (rc == ST_ELIMIT) {
            limit_hint(j);
            count_refused(j, PROMQL_LIMIT_SAMPLES);
        }
        respond_error(j, 422, "execution", j->err);
        return FANOUT_STOP;
    }
    if (done)
        return FANOUT_DONE;
    c->cursor_shard = nshard; /* the next page goes out first */
    c->cursor_pos = npos;
    return FANOUT_MORE;
}

/* A node's error about the query itself ends it; anything else fails the
 * node's group over to the next replicas. */
static int q_failed(void *ctx, const fanout_call_t *c, const fanout_failure_t *f)
{
    qjob_t *j = ctx;
    char msg[Q_NODE_TEXT_MAX + TOPO_ID_MAX + 16];
    int remote = c->item < j->nrem;
    snprintf(msg, sizeof msg, "node %s: %.*s", topo_node_id(j->r->topo, c->node),
             (int)(f->len < Q_NODE_TEXT_MAX ? f->len : Q_NODE_TEXT_MAX),
             f->node_said ? (const char *)f->msg : "");
    if (f->status == ST_ETIMEDOUT && st_mono_ms() >= j->deadline) {
        if (!j->responded)
            count_refused(j, PROMQL_LIMIT_TIMEOUT);
        respond_error(j, 503, "timeout", "query timed out");
        return FANOUT_STOP;
    }
    if (f->node_said && f->status == ST_EINVAL && !remote) {
        respond_error(j, 400, "bad_data", msg);
        return FANOUT_STOP;
    }
    /* a node's limit (a pushed part's, or a regex of a raw selection): the
     * other replicas would refuse it too */
    if (f->node_said && (f->status == ST_ELIMIT ||
                         (remote && (f->status == ST_EINVAL || f->status == ST_EPARSE)))) {
        snprintf(j->err, sizeof j->err, "%s", msg);
        if (f->status == ST_ELIMIT) {
            limit_hint(j);
            if (!j->responded)
                count_refused(j, node_limit(msg, f->status));
        }
        respond_error(j, 422, "execution", j->err);
        return FANOUT_STOP;
    }
    if (f->node_said && f->status == ST_ETIMEDOUT) {
        if (!j->responded)
            count_refused(j, PROMQL_LIMIT_TIMEOUT);
        respond_error(j, 503, "timeout", msg);
        return FANOUT_STOP;
    }
    st_warn("read failed over", "node=%s err=\"%s\"", topo_node_id(j->r->topo, c->node),
            st_strerror(f->status));
    metric_counter_inc(j->r->rpc_fail);
    return FANOUT_FAILOVER;
}

static void q_end(void *ctx, fanout_how_t how, const fanout_call_t *c)
{
    qjob_t *j = ctx;
    (void)c;
    if (how == FANOUT_COMPLETE) {
        /* inside the fan-out's call: a small evaluation waits for q_idle
         * (right after this, when the fan-out may be destroyed) */
        if (phase_inline(j, 2))
            j->inline2 = 1;
        else
            start_phase(j, 2);
    } else if (how == FANOUT_UNAVAILABLE) {
        /* shards without enough replicas and no partial_response=1 */
        char msg[FANOUT_MISSING_MAX + 160];
        fanout_unavailable_msg(j->fan, msg, sizeof msg);
        respond_error(j, 503, "unavailable", msg);
    } else {
        respond_error(j, 503, "internal", "out of memory");
    }
}

static void q_idle(void *ctx)
{
    qjob_t *j = ctx;
    j->fan_idle = 1;
    if (j->inline2 && !j->responded) {
        j->inline2 = 0;
        start_phase(j, 2); /* small: evaluates here */
        return;
    }
    maybe_free(j);
}

static const fanout_ops_t query_ops = {q_build, q_reply, q_failed, q_end, q_idle};

static void eval_after(uv_work_t *w, int status)
{
    qjob_t *j = w->data;
    (void)status;
    router_rrcheck_end(j->r, j->rr); /* counts and queues what the folds found */
    j->rr = NULL;
    if (j->status) {
        respond_error(j, j->status, j->etype, j->err);
        return;
    }
    if (j->phase == 2 && j->cb) {
        promql_result_t *res = j->res;
        j->res = NULL;
        j->responded = 1;
        j->cb(j->cb_arg, 0, NULL, res);
        free_job(j);
        return;
    }
    if (j->phase == 2) {
        char pushed[32], res[32] = "raw";
        snprintf(pushed, sizeof pushed, "%zu", j->pushed);
        const topo_tier_t *tt;
        /* with tiers: which data answered (raw when anything read raw samples) */
        if (j->res_ms && !j->res_raw && !j->nsel)
            st_fmt_duration_one(res, sizeof res, j->res_ms);
        http_header_t h[2] = {{"X-Strata-Pushdown", pushed}, {"X-Strata-Resolution", res}};
        http_respond_headers(j->req, 200, "application/json", h,
                             topo_tiers(j->r->topo, &tt) ? 2 : 1, j->out.data, j->out.len);
        j->responded = 1;
        free_job(j);
        return;
    }
    /* plan done: fetch what it needs */
    router_t *r = j->r;
    /* items: the pushed parts, then the selections */
    fanout_cfg_t cfg =
        router_fanout_cfg(r, j->need, j->partial, j->nrem + j->nsel, Q_MAX_INFLIGHT, &query_ops, j);
    if (fanout_create(&cfg, &j->fan)) {
        respond_error(j, 503, "internal", "out of memory");
        return;
    }
    j->qid = next_query_id();
    if (j->req)
        http_req_notify(j->req, on_client_gone, j);
    fanout_start(j->fan); /* the job is the fan-out's from here */
}

void router_handle_query(router_t *r, http_req_t *req, int range)
{
    qjob_t *j = calloc(1, sizeof *j);
    if (!j) {
        http_respond_error(req, 503, "out of memory");
        return;
    }
    j->r = r;
    j->req = req;
    j->range = range;
    j->max_samples = topo_router(r->topo)->query_max_samples;
    j->max_series = topo_router(r->topo)->query_max_series;
    j->max_bytes = topo_router(r->topo)->query_max_bytes;
    st_buf_init(&j->out);
    http_params_t form;
    char msg[Q_MSG_MAX];
    const char *q = NULL;
    const char *v;
    int64_t now_ms = st_now_ms();
    int64_t timeout = r->timeout_ms;
    if (router_read_load(req, &form, msg, sizeof msg))
        goto bad;
    q = http_params_get(&form, "query");
    if (!q || !*q) {
        snprintf(msg, sizeof msg, "invalid parameter \"query\": no query provided");
        goto bad;
    }
    /* An instant query's step is the window of its window-less rollups
     * (MetricsQL): `step` if given, else PROMQL_INSTANT_STEP_MS. */
    const char *stv = http_params_get(&form, "step");
    j->step = stv && (*stv || range) ? readopt_duration_ms(stv)
              : range                ? -1
                                     : PROMQL_INSTANT_STEP_MS;
    if (range) {
        const char *sv = http_params_get(&form, "start"), *ev = http_params_get(&form, "end");
        if (!sv || http_parse_time_ms(sv, strlen(sv), &j->start)) {
            snprintf(msg, sizeof msg,
                     "invalid parameter \"start\": cannot parse \"%.64s\" to a "
                     "valid timestamp",
                     sv ? sv : "");
            goto bad;
        }
        if (!ev || http_parse_time_ms(ev, strlen(ev), &j->end)) {
            snprintf(msg, sizeof msg,
                     "invalid parameter \"end\": cannot parse \"%.64s\" to a "
                     "valid timestamp",
                     ev ? ev : "");
            goto bad;
        }
        if (j->end < j->start) {
            snprintf(msg, sizeof msg,
                     "invalid parameter \"end\": end timestamp must not be before "
                     "start time");
            goto bad;
        }
        if (j->step <= 0)
            goto bad_step;
        if ((j->end - j->start) / j->step > Q_MAX_POINTS) {
            snprintf(msg, sizeof msg,
                     "exceeded maximum resolution of 11,000 points per "
                     "timeseries. Try decreasing the query resolution "
                     "(?step=XX)");
            goto bad;
        }
    } else {
        j->start = now_ms;
        if ((v = http_params_get(&form, "time")) && *v &&
            http_parse_time_ms(v, strlen(v), &j->start)) {
            snprintf(msg, sizeof msg,
                     "invalid parameter \"time\": cannot parse \"%.64s\" to a "
                     "valid timestamp",
                     v);
            goto bad;
        }
        j->end = j->start;
        if (j->step <= 0)
            goto bad_step;
    }
    if ((v = http_params_get(&form, "timeout")) && *v) {
        int64_t t = readopt_duration_ms(v);
        if (t <= 0) {
            snprintf(msg, sizeof msg, "invalid parameter \"timeout\": cannot parse \"%.64s\"", v);
            goto bad;
        }
        if (t < timeout)
            timeout = t;
    }
    j->deadline = st_mono_ms() + timeout;
    if (router_read_params(r, &form, &j->need, &j->partial, msg, sizeof msg))
        goto bad;
    j->pushdown = j->need == 1;
    if ((v = http_params_get(&form, "pushdown")) && *v) {
        if (!strcmp(v, "0") || !strcmp(v, "false")) {
            j->pushdown = 0;
        } else if (strcmp(v, "1") && strcmp(v, "true")) {
            snprintf(msg, sizeof msg, "invalid parameter \"pushdown\": want 0, 1, true or false");
            goto bad;
        }
    }
    j->query = strdup(q);
    if (auth_gate_user(req))
        j->nconfine = auth_user_matchers(auth_gate_user(req), &j->confine);
    http_params_deinit(&form);
    if (!j->query) {
        http_respond_error(req, 503, "out of memory");
        free_job(j);
        return;
    }
    metric_counter_inc(r->reads);
    start_phase(j, 1);
    return;
bad_step:
    snprintf(msg, sizeof msg,
             "invalid parameter \"step\": zero or negative query resolution step widths are not "
             "accepted. Try a positive integer");
bad:
    http_params_deinit(&form);
    respond_error(j, 400, "bad_data", msg);
}

void router_promql_run(router_t *r, const char *query, int64_t start, int64_t end, int64_t step,
                       int64_t deadline, int pushdown, router_promql_cb cb, void *arg)
{
    qjob_t *j = calloc(1, sizeof *j);
    char msg[Q_MSG_MAX];
    if (!j || !(j->query = strdup(query))) {
        free(j);
        cb(arg, 503, "out of memory", NULL);
        return;
    }
    j->r = r;
    j->cb = cb;
    j->cb_arg = arg;
    j->range = start != end;
    j->start = start;
    j->end = end;
    j->step = step;
    j->deadline = deadline;
    j->max_samples = topo_router(r->topo)->query_max_samples;
    j->max_series = topo_router(r->topo)->query_max_series;
    j->max_bytes = topo_router(r->topo)->query_max_bytes;
    st_buf_init(&j->out);
    if (readopt_parse(r->topo, NULL, NULL, &j->need, &j->partial, msg, sizeof msg)) {
        respond_error(j, 400, "bad_data", msg);
        return;
    }
    j->pushdown = pushdown && j->need == 1;
    metric_counter_inc(r->reads);
    start_phase(j, 1);
}

/*
 * fanout — the scatter-gather core of reads. See fanout.h.
 *
 * State: the read plan, a queue of calls not sent yet (a deque: new work at
 * the back, a call's next page at the front), the count of calls in flight
 * (held ones included) and a failed flag per plan group. Every public entry
 * point that may run callbacks counts itself in `depth`; only the outermost
 * one sends (pump) and, on its way out, ends the fan-out (COMPLETE once the
 * queue is empty and nothing is in flight) and calls `idle`, as its very
 * last step, so a callback may stop the fan-out or resume a call re-entrantly
 * and `idle` may destroy it.
 */
#include "fanout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_err.h"

#define FANOUT_QUEUE_MIN 64 /* first queue allocation (calls) */

struct fanout_rpc {
    fanout_t *f;
    fanout_call_t c;
    int sent;         /* at a node: fanout_reply() follows */
    uint32_t sent_to; /* that node */
};

struct fanout {
    fanout_cfg_t cfg;
    readplan_t plan;
    int planned;
    fanout_rpc_t **q; /* calls not sent: q[head .. head+n) */
    size_t qhead, qn, qcap;
    size_t inflight;
    uint8_t *gfailed;  /* [plan.ng] */
    uint32_t *at_node; /* [topo nodes] calls sent to the node, not answered yet */
    uint32_t nnodes;
    size_t gcap;
    unsigned failovers;
    int depth, stopped, ended, idled, pumping;
    st_buf_t req;
    char missing[FANOUT_MISSING_MAX];
};

/* Queue a call: at the back, or at the front (a next page goes first). */
static int push(fanout_t *f, fanout_rpc_t *r, int front)
{
    if (front && f->qhead > 0) {
        f->q[--f->qhead] = r;
        f->qn++;
        return 0;
    }
    if (front || f->qhead + f->qn == f->qcap) {
        /* move the calls to the start (one slot further for a front push),
         * in a larger array when full */
        size_t cap = f->qn + 1 > f->qcap ? (f->qcap ? 2 * f->qcap : FANOUT_QUEUE_MIN) : f->qcap;
        fanout_rpc_t **nq = cap == f->qcap ? f->q : malloc(cap * sizeof *nq);
        if (!nq)
            return ST_ENOMEM;
        if (f->qn)
            memmove(nq + (front ? 1 : 0), f->q + f->qhead, f->qn * sizeof *nq);
        if (nq != f->q)
            free(f->q);
        f->q = nq;
        f->qcap = cap;
        f->qhead = 0;
        if (front) {
            f->q[0] = r;
            f->qn++;
            return 0;
        }
    }
    f->q[f->qhead + f->qn++] = r;
    return 0;
}

static fanout_rpc_t *pop(fanout_t *f)
{
    if (!f->qn)
        return NULL;
    f->qn--;
    return f->q[f->qhead++];
}

/* Calls for plan groups [from, ng): every item of every non-empty group. */
static int enqueue_groups(fanout_t *f, size_t from)
{
    if (f->plan.ng > f->gcap) {
        uint8_t *g = realloc(f->gfailed, f->plan.ng);
        if (!g)
            return ST_ENOMEM;
        memset(g + f->gcap, 0, f->plan.ng - f->gcap);
        f->gfailed = g;
        f->gcap = f->plan.ng;
    }
    for (size_t gi = from; gi < f->plan.ng; gi++) {
        if (f->plan.g[gi].n == 0)
            continue;
        for (size_t it = 0; it < f->cfg.nitems; it++) {
            fanout_rpc_t *r = calloc(1, sizeof *r);
            if (!r || push(f, r, 0)) {
                free(r);
                return ST_ENOMEM;
            }
            r->f = f;
            r->c.group = gi;
            r->c.item = it;
        }
    }
    return 0;
}

static void note_missing(fanout_t *f)
{
    readplan_missing_str(&f->plan, f->missing, sizeof f->missing);
}

/* No more sends; queued calls go. */
static void stop(fanout_t *f)
{
    f->stopped = 1;
    fanout_rpc_t *r;
    while ((r = pop(f)) != NULL)
        free(r);
}

static void end(fanout_t *f, fanout_how_t how, const fanout_call_t *c)
{
    if (f->ended)
        return;
    f->ended = 1;
    stop(f);
    f->cfg.ops->end(f->cfg.ctx, how, c);
}

/* Group c->group failed: its shards to their next replicas. */
static void failover(fanout_t *f, const fanout_call_t *c)
{
    size_t gi = c->group;
    if (f->gfailed[gi])
        return;
    f->gfailed[gi] = 1;
    f->failovers++;
    uint32_t before = f->plan.nmissing;
    size_t ng = f->plan.ng;
    if (readplan_failover(&f->plan, gi, f->cfg.up, f->cfg.up_arg) || enqueue_groups(f, ng)) {
        end(f, FANOUT_NOMEM, c);
        return;
    }
    if (f->plan.nmissing != before) {
        note_missing(f);
        if (!f->cfg.partial)
            end(f, FANOUT_UNAVAILABLE, c);
    }
}

static void refresh(fanout_t *f, fanout_call_t *c)
{
    const readplan_group_t *g = &f->plan.g[c->group];
    c->node = g->node;
    c->shards = g->shards;
    c->nshards = g->n;
}

/* Apply a callback's verdict on a call that was in flight. */
static void apply(fanout_t *f, fanout_rpc_t *r, int verdict)
{
    switch (verdict) {
    case FANOUT_HOLD:
        f->inflight++;
        return; /* fanout_resume() decides */
    case FANOUT_MORE:
        if (!f->stopped && !f->gfailed[r->c.group]) {
            if (push(f, r, 1) == 0)
                return;
            free(r);
            end(f, FANOUT_NOMEM, NULL);
            return;
        }
        break;
    case FANOUT_FAILOVER:
        if (!f->stopped)
            failover(f, &r->c);
        break;
    case FANOUT_STOP:
        stop(f);
        break;
    default:
        break;
    }
    free(r);
}

static void failed(fanout_t *f, fanout_rpc_t *r, const fanout_failure_t *why)
{
    f->inflight--;
    if (f->stopped || f->gfailed[r->c.group]) {
        free(r);
        return;
    }
    refresh(f, &r->c);
    int v = f->cfg.ops->failed(f->cfg.ctx, &r->c, why);
    apply(f, r, v == FANOUT_FAILOVER ? FANOUT_FAILOVER : FANOUT_STOP);
}

static void send_one(fanout_t *f, fanout_rpc_t *r)
{
    refresh(f, &r->c);
    st_buf_reset(&f->req);
    uint8_t type = 0;
    unsigned timeout = 0;
    f->inflight++;
    int rc = f->cfg.ops->build(f->cfg.ctx, &r->c, &type, &timeout, &f->req);
    if (rc == 0)
        rc = f->cfg.send(f->cfg.send_arg, r->c.node, type, f->req.data, f->req.len, timeout, r);
    if (rc == 0 && r->c.node < f->nnodes) {
        r->sent = 1;
        r->sent_to = r->c.node;
        f->at_node[r->c.node]++;
    }
    if (rc) {
        fanout_failure_t why = {.status = rc, .at_send = 1};
        failed(f, r, &why);
    }
}

static void pump(fanout_t *f)
{
    if (f->pumping)
        return; /* the loop further up goes on */
    f->pumping = 1;
    while (!f->stopped && f->qn && f->inflight < f->cfg.max_inflight) {
        fanout_rpc_t *r = pop(f);
        if (f->gfailed[r->c.group]) {
            free(r);
            continue;
        }
        send_one(f, r);
    }
    f->pumping = 0;
}

static void enter(fanout_t *f)
{
    f->depth++;
}

/* Leave an entry point: the outermost one sends, ends and idles. */
static void leave(fanout_t *f)
{
    if (f->depth > 1) {
        f->depth--;
        return;
    }
    pump(f);
    if (!f->stopped && !f->qn && !f->inflight)
        end(f, FANOUT_COMPLETE, NULL);
    f->depth--;
    if (f->stopped && !f->inflight && !f->idled && !f->depth) {
        f->idled = 1;
        f->cfg.ops->idle(f->cfg.ctx); /* may destroy f: nothing after this */
    }
}

int fanout_create(const fanout_cfg_t *cfg, fanout_t **out)
{
    *out = NULL;
    fanout_t *f = calloc(1, sizeof *f);
    if (!f)
        return ST_ENOMEM;
    f->cfg = *cfg;
    if (f->cfg.max_inflight < 1)
        f->cfg.max_inflight = 1;
    st_buf_init(&f->req);
    f->nnodes = (uint32_t)topo_node_count(cfg->topo);
    f->at_node = calloc(f->nnodes ? f->nnodes : 1, sizeof *f->at_node);
    if (!f->at_node) {
        fanout_destroy(f);
        return ST_ENOMEM;
    }
    f->planned = 1;
    if (readplan_init(&f->plan, cfg->topo, cfg->need, cfg->up, cfg->up_arg) ||
        enqueue_groups(f, 0)) {
        fanout_destroy(f);
        return ST_ENOMEM;
    }
    if (f->plan.nmissing)
        note_missing(f);
    *out = f;
    return 0;
}

void fanout_start(fanout_t *f)
{
    enter(f);
    if (f->plan.nmissing && !f->cfg.partial)
        end(f, FANOUT_UNAVAILABLE, NULL);
    leave(f);
}

void fanout_reply(fanout_rpc_t *r, int status, int node_said, const uint8_t *payload, size_t len)
{
    fanout_t *f = r->f;
    enter(f);
    if (r->sent) {
        r->sent = 0;
        f->at_node[r->sent_to]--;
    }
    if (status != 0) {
        fanout_failure_t why = {status, node_said, 0, payload, len};
        failed(f, r, &why);
    } else {
        f->inflight--;
        if (f->stopped || f->gfailed[r->c.group]) {
            free(r);
        } else {
            refresh(f, &r->c);
            int v = f->cfg.ops->reply(f->cfg.ctx, &r->c, payload, len);
            apply(f, r, v == FANOUT_FAILOVER ? FANOUT_STOP : v);
        }
    }
    leave(f);
}

void fanout_resume(fanout_t *f, fanout_call_t *c, int verdict)
{
    fanout_rpc_t *r = (fanout_rpc_t *)((char *)c - offsetof(fanout_rpc_t, c));
    enter(f);
    f->inflight--;
    apply(f, r, verdict == FANOUT_HOLD || verdict == FANOUT_FAILOVER ? FANOUT_STOP : verdict);
    leave(f);
}

void fanout_stop(fanout_t *f)
{
    enter(f);
    stop(f);
    leave(f);
}

void fanout_destroy(fanout_t *f)
{
    if (!f)
        return;
    fanout_rpc_t *r;
    while ((r = pop(f)) != NULL)
        free(r);
    free(f->q);
    free(f->gfailed);
    free(f->at_node);
    if (f->planned)
        readplan_free(&f->plan);
    st_buf_deinit(&f->req);
    free(f);
}

const char *fanout_missing(const fanout_t *f)
{
    return f->missing;
}

void fanout_unavailable_msg(const fanout_t *f, char *buf, size_t len)
{
    snprintf(buf, len,
             "no replica answered for shard(s) %s (read_consistency=%s); retry, or pass "
             "partial_response=1 to accept a partial result",
             f->missing, f->cfg.need > 1 ? "quorum" : "one");
}

#define GROUP_MSG_SHARDS_MAX 300 /* bytes of shard list in a group message */

void fanout_group_msg(const fanout_t *f, size_t group, const char *why, char *buf, size_t len)
{
    size_t off = 0;
    const readplan_group_t *g = &f->plan.g[group];
    off += (size_t)snprintf(buf, len, "no replica answered for shard(s) ");
    for (size_t i = 0; i < g->n && off < GROUP_MSG_SHARDS_MAX && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%u", i ? "," : "", g->shards[i]);
    if (off < len)
        snprintf(buf + off, len - off, " (node %s: %s)", topo_node_id(f->cfg.topo, g->node), why);
}

size_t fanout_partial_warning(const fanout_t *f, char *buf, size_t len)
{
    if (!f->missing[0])
        return 0;
    char none[FANOUT_MISSING_MAX], few[FANOUT_MISSING_MAX];
    readplan_unserved_str(&f->plan, none, sizeof none);
    readplan_short_str(&f->plan, few, sizeof few);
    int k = 0;
    if (none[0] && few[0])
        k = snprintf(buf, len,
                     "partial response: no replica answered for shard(s) %s; partial response: "
                     "fewer than %u replicas (read_consistency=quorum) answered for shard(s) %s",
                     none, f->plan.need, few);
    else if (none[0])
        k = snprintf(buf, len, "partial response: no replica answered for shard(s) %s", none);
    else if (few[0])
        k = snprintf(buf, len,
                     "partial response: fewer than %u replicas (read_consistency=quorum) answered "
                     "for shard(s) %s",
                     f->plan.need, few);
    if (k <= 0)
        return 0;
    return (size_t)k < len ? (size_t)k : len - 1;
}

int fanout_group_failed(const fanout_t *f, size_t gi)
{
    return gi < f->gcap && f->gfailed[gi];
}

size_t fanout_groups(const fanout_t *f)
{
    return f->planned ? f->plan.ng : 0;
}

const readplan_group_t *fanout_group(const fanout_t *f, size_t gi)
{
    return gi < fanout_groups(f) ? &f->plan.g[gi] : NULL;
}

unsigned fanout_failovers(const fanout_t *f)
{
    return f->failovers;
}

size_t fanout_busy_nodes(const fanout_t *f, uint32_t *nodes, size_t cap)
{
    size_t n = 0;
    for (uint32_t i = 0; i < f->nnodes && n < cap; i++)
        if (f->at_node[i])
            nodes[n++] = i;
    return n;
}

int64_t fanout_try_ms(int64_t left, uint32_t need, uint32_t rf, int64_t min_ms)
{
    if (left <= 0)
        return 0;
    if (need >= rf || left <= min_ms)
        return left; /* no replica to fail over to, or too little left to split */
    return left / 2 > min_ms ? left / 2 : min_ms;
}

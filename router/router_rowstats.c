/*
 * router_rowstats — ROW_STATS over one replica per shard (router_rowstats.h).
 *
 * One fan-out item: a ReadRequest per plan group (its shards, the
 * selector's matchers, the range, max_series = [router] query_max_series
 * tag sets, the time left), each RowStatsResponse merged into one
 * rowstats table as it comes (rowstats_decode: a tag set differs unless
 * every node agrees on its fingerprint). A connection failure moves the
 * group's shards to their next replica; a node's own refusal, a reply
 * saying a shard reads through tiers, or a malformed reply ends the
 * fan-out with ROUTER_ROWSTATS_SAMPLES (the caller counts from rows).
 */
#include "router_rowstats.h"

#include <stdio.h>
#include <stdlib.h>

#include "readopt.h"
#include "st_err.h"
#include "st_time.h"

#define ROWSTATS_INFLIGHT 32 /* calls in flight: every node at once */

typedef struct rsjob {
    router_t *r;
    fanout_t *fan;
    selector_t sel;
    int64_t start, end, deadline;
    rowstats_t *rs;
    router_rowstats_cb cb;
    void *arg;
} rsjob_t;

/* Answer once (the fan-out may still be winding down). */
static void rs_answer(rsjob_t *j, int status, const char *msg)
{
    router_rowstats_cb cb = j->cb;
    rowstats_t *rs = status ? NULL : j->rs;
    if (!cb)
        return;
    j->cb = NULL;
    if (!status)
        j->rs = NULL;
    cb(j->arg, status, msg, rs);
}

static int rs_build(void *ctx, const fanout_call_t *c, uint8_t *type, unsigned *timeout_ms,
                    st_buf_t *out)
{
    rsjob_t *j = ctx;
    int64_t left = j->deadline - st_mono_ms();
    *type = RPC_ROW_STATS;
    *timeout_ms = (unsigned)(left > 1 ? left : 1);
    router_read_req_t rq = {.m = j->sel.m,
                            .nm = j->sel.n,
                            .start = j->start,
                            .end = j->end,
                            .max_series = topo_router(j->r->topo)->query_max_series,
                            .timeout_ms = *timeout_ms};
    return router_pack_read(out, c, &rq);
}

static int rs_reply(void *ctx, fanout_call_t *c, const uint8_t *payload, size_t len)
{
    rsjob_t *j = ctx;
    (void)c;
    if (rowstats_decode(j->rs, payload, len) || rowstats_raw(j->rs)) {
        rs_answer(j, ROUTER_ROWSTATS_SAMPLES, "count from rows");
        return FANOUT_STOP;
    }
    return FANOUT_DONE;
}

static int rs_failed(void *ctx, const fanout_call_t *c, const fanout_failure_t *f)
{
    rsjob_t *j = ctx;
    (void)c;
    if (f->node_said || f->at_send) {
        rs_answer(j, ROUTER_ROWSTATS_SAMPLES, "count from rows");
        return FANOUT_STOP;
    }
    metric_counter_inc(j->r->rpc_fail);
    return FANOUT_FAILOVER;
}

static void rs_end(void *ctx, fanout_how_t how, const fanout_call_t *c)
{
    rsjob_t *j = ctx;
    char msg[FANOUT_WARNING_MAX + 64];
    if (how == FANOUT_COMPLETE) {
        rs_answer(j, 0, NULL);
        return;
    }
    if (how == FANOUT_NOMEM)
        snprintf(msg, sizeof msg, "out of memory");
    else if (c)
        fanout_group_msg(j->fan, c->group, "unavailable", msg, sizeof msg);
    else
        fanout_unavailable_msg(j->fan, msg, sizeof msg);
    rs_answer(j, 503, msg);
}

static void rs_idle(void *ctx)
{
    rsjob_t *j = ctx;
    fanout_destroy(j->fan);
    selector_free(&j->sel);
    rowstats_destroy(j->rs);
    free(j);
}

static const fanout_ops_t rs_ops = {rs_build, rs_reply, rs_failed, rs_end, rs_idle};

void router_rowstats_run(router_t *r, selector_t *sel, int64_t start, int64_t end, int64_t deadline,
                         router_rowstats_cb cb, void *arg)
{
    rsjob_t *j = calloc(1, sizeof *j);
    int need = 1, partial = 0;
    char msg[300];
    if (!j) {
        selector_free(sel);
        cb(arg, ROUTER_ROWSTATS_SAMPLES, "out of memory", NULL);
        return;
    }
    *j = (rsjob_t){r, NULL, *sel, start, end, deadline, NULL, cb, arg};
    sel->arena = NULL; /* taken */
    sel->n = 0;
    /* one replica per shard, each series once: only when the cluster's
     * reads ask one (as for PromQL's pushdown); else count from rows */
    if (readopt_parse(r->topo, NULL, NULL, &need, &partial, msg, sizeof msg) || need != 1 ||
        rowstats_create(topo_router(r->topo)->query_max_series, &j->rs)) {
        rs_answer(j, ROUTER_ROWSTATS_SAMPLES, "count from rows");
        rs_idle(j);
        return;
    }
    fanout_cfg_t cfg = router_fanout_cfg(r, 1, partial, 1, ROWSTATS_INFLIGHT, &rs_ops, j);
    if (fanout_create(&cfg, &j->fan)) {
        rs_answer(j, ROUTER_ROWSTATS_SAMPLES, "out of memory");
        rs_idle(j);
        return;
    }
    metric_counter_inc(r->reads);
    fanout_start(j->fan);
}

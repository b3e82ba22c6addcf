/*
 * router_rrepair — read repair (router_rrepair.h): the router's glue
 * around rrepair.h (who answered, what differed, the queue) and the
 * RPC_REPAIR calls it starts.
 *
 * Detection costs nothing when replicas agree: sset_merge_check compares
 * each copy with the first one by memcmp before folding (the fold reads
 * the same memory anyway); only a label set whose copies differ is looked
 * at closer (counts and checksums up to the cutoff). Samples newer than
 * now - (replica_timeout + READ_REPAIR_GRACE_MS) are not compared: a write
 * may still be on its way to a replica. A replica that other nodes hold
 * hints for is not repaired (the hints will heal it; read plans avoid it
 * anyway).
 *
 * A repair is RepairRequest{shards: [S], peer: source, start_ms, end_ms}
 * sent to the stale node (peer "" when no replica answered in full: every
 * other replica). Its answer only ends it (rrepair_done); what it moved is
 * in the node's repair counters and /cluster.
 */
#include "router_rrepair.h"

#include <stdlib.h>
#include <string.h>

#include "router.h"
#include "rrepair.h"
#include "st_err.h"
#include "st_log.h"
#include "st_time.h"
#include "strata.pb-c.h"

#define READ_REPAIR_GRACE_MS 1000          /* on top of replica_timeout: see above */
#define READ_REPAIR_RPC_TIMEOUT_MS 300000u /* one targeted repair on a node */

struct router_rrepair {
    rrepair_t *q;
    metric_counter_t *divergent, *started, *dropped;
};

struct router_rrcheck {
    const topo_t *topo;
    rrepair_answers_t ans;
    rrepair_found_t found;
    int64_t start, end, cutoff;
    size_t expect;
};

typedef struct rr_call {
    router_t *r;
    uint32_t shard, node;
} rr_call_t;

int router_rrepair_init(router_t *r)
{
    struct router_rrepair *x = calloc(1, sizeof *x);
    if (!x)
        return ST_ENOMEM;
    r->rrepair = x;
    x->divergent = metrics_counter(r->metrics, "strata_router_read_repair_divergent_total",
                                   "Quorum reads that saw the replicas of a shard disagree.", NULL);
    x->started = metrics_counter(r->metrics, "strata_router_read_repairs_total",
                                 "Read repairs started (RPC_REPAIR of one shard on a stale "
                                 "replica, over the read's time range).",
                                 NULL);
    x->dropped = metrics_counter(r->metrics, "strata_router_read_repair_dropped_total",
                                 "Read repairs not queued: queue full or rate limited.", NULL);
    if (!x->divergent || !x->started || !x->dropped)
        return ST_ENOMEM;
    if (topo_replication(r->topo)->read_repair &&
        rrepair_create(topo_shards(r->topo), topo_node_count(r->topo), NULL, &x->q))
        return ST_ENOMEM;
    return 0;
}

void router_rrepair_free(router_t *r)
{
    if (!r->rrepair)
        return;
    rrepair_destroy(r->rrepair->q);
    free(r->rrepair);
    r->rrepair = NULL;
}

/* ---- one read ---- */

router_rrcheck_t *router_rrcheck_begin(router_t *r, const fanout_t *f, int need, int64_t start,
                                       int64_t end)
{
    if (need < 2 || !r->rrepair || !r->rrepair->q || !f)
        return NULL;
    router_rrcheck_t *c = calloc(1, sizeof *c);
    if (!c || rrepair_answers_init(&c->ans, topo_shards(r->topo))) {
        free(c);
        return NULL;
    }
    c->topo = r->topo;
    c->start = start;
    c->end = end;
    c->cutoff = st_now_ms() - topo_replication(r->topo)->replica_timeout_ms - READ_REPAIR_GRACE_MS;
    c->expect = (size_t)need;
    for (size_t gi = 0; gi < fanout_groups(f); gi++) {
        const readplan_group_t *g = fanout_group(f, gi);
        if (fanout_group_failed(f, gi))
            continue;
        for (uint32_t k = 0; k < g->n; k++)
            rrepair_answers_add(&c->ans, g->shards[k], g->node);
    }
    return c;
}

static void on_diverged(void *arg, const sset_series_t *merged, const uint32_t *origin,
                        const uint8_t *stale, size_t n)
{
    router_rrcheck_t *c = arg;
    uint32_t shard = topo_shard_of_labels(c->topo, merged->labels, merged->nlabels);
    int has_old = merged->n && merged->ts[0] <= c->cutoff;
    rrepair_judge(&c->found, &c->ans, shard, has_old, origin, stale, n, c->start, c->end);
}

int router_rrcheck_merge(router_rrcheck_t *c, sset_t *ss)
{
    if (!c)
        return sset_merge(ss);
    return sset_merge_check(ss, c->expect, c->cutoff, on_diverged, c);
}

/* ---- the repairs ---- */

static void pump(router_t *r);

static void on_repaired(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    rr_call_t *c = arg;
    router_t *r = c->r;
    if (status || type != RPC_REPAIR_RESP) {
        st_warn("read repair failed", "shard=%u node=%s status=%d err=\"%.*s\"", c->shard,
                topo_node_id(r->topo, c->node), status,
                type == RPC_ERROR && payload ? (int)(len > 200 ? 200 : len) : 0,
                payload ? (const char *)payload : "");
    } else {
        Strata__RepairResponse *resp = strata__repair_response__unpack(NULL, len, payload);
        for (size_t i = 0; resp && i < resp->n_shards; i++) {
            const Strata__RepairState *x = resp->shards[i];
            if (x->error && x->error[0])
                st_warn("read repair failed", "shard=%u node=%s err=\"%s\"", x->shard,
                        topo_node_id(r->topo, c->node), x->error);
            else
                st_info("read repair done",
                        "shard=%u node=%s series=%llu samples=%llu resolved=%llu ms=%llu", x->shard,
                        topo_node_id(r->topo, c->node), (unsigned long long)x->series_pulled,
                        (unsigned long long)x->samples_pulled,
                        (unsigned long long)x->samples_resolved,
                        (unsigned long long)x->duration_ms);
        }
        if (resp)
            strata__repair_response__free_unpacked(resp, NULL);
    }
    if (r->rrepair && r->rrepair->q) {
        rrepair_done(r->rrepair->q, c->shard, c->node);
        pump(r);
    }
    free(c);
}

/* Start what may start. */
static void pump(router_t *r)
{
    struct router_rrepair *x = r->rrepair;
    rrepair_item_t it;
    while (rrepair_next(x->q, st_mono_ms(), &it)) {
        Strata__RepairRequest q = STRATA__REPAIR_REQUEST__INIT;
        uint32_t sh = it.shard;
        q.n_shards = 1;
        q.shards = &sh;
        q.peer = it.source >= 0 ? (char *)topo_node_id(r->topo, (uint32_t)it.source) : "";
        q.start_ms = it.start;
        q.end_ms = it.end;
        st_buf_t b;
        st_buf_init(&b);
        rr_call_t *c = malloc(sizeof *c);
        int rc = c ? router_pack(&b, &q.base) : ST_ENOMEM;
        if (!rc) {
            *c = (rr_call_t){r, it.shard, it.node};
            rc = rpc_client_call(r->clients[it.node], RPC_REPAIR, b.data, b.len,
                                 READ_REPAIR_RPC_TIMEOUT_MS, on_repaired, c);
        }
        st_buf_deinit(&b);
        if (rc) {
            free(c);
            rrepair_done(x->q, it.shard, it.node);
            metric_counter_inc(x->dropped);
            continue;
        }
        metric_counter_inc(x->started);
        st_info("read repair", "shard=%u node=%s from=%s start_ms=%lld end_ms=%lld", it.shard,
                topo_node_id(r->topo, it.node), *q.peer ? q.peer : "(every replica)",
                (long long)it.start, (long long)it.end);
    }
}

void router_rrcheck_end(router_t *r, router_rrcheck_t *c)
{
    if (!c)
        return;
    struct router_rrepair *x = r->rrepair;
    if (c->found.n && x && x->q) {
        metric_counter_inc(x->divergent);
        int64_t now = st_mono_ms();
        for (size_t i = 0; i < c->found.n; i++) {
            const rrepair_item_t *it = &c->found.pair[i];
            if (router_hints_for(r, it->node))
                continue; /* its hints will heal it */
            rrepair_verdict_t v = rrepair_offer(x->q, it, now);
            if (v == RREPAIR_FULL || v == RREPAIR_RATE)
                metric_counter_inc(x->dropped);
        }
        metric_counter_add(x->dropped, c->found.dropped);
        pump(r);
    }
    rrepair_answers_free(&c->ans);
    free(c);
}

/*
 * router — helpers every router handler shares: node liveness, replica
 * choice, read parameters, the Prometheus error body, the fan-out's RPC
 * transport and read requests. main() and the route
 * table live in router_main.c / router_server.c and call into here, never
 * the other way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_util.h"
#include "readopt.h"
#include "readplan.h"
#include "router.h"
#include "st_err.h"
#include "st_text.h"
#include "strata.pb-c.h"

int router_limit_metrics(router_t *r)
{
    for (size_t i = 0; i < REPL_NLIMITS; i++) {
        r->samples_refused[i] = metrics_counter(
            r->metrics, "strata_router_samples_refused_total",
            "Samples a node refused under a cardinality limit (the rest of the write was stored).",
            "limit", repl_limit_name(i), NULL);
        if (!r->samples_refused[i])
            return ST_ENOMEM;
    }
    return 0;
}

void router_count_refused(router_t *r, const char *limit, uint64_t n)
{
    metric_counter_add(r->samples_refused[repl_limit_index(limit)], n);
}

int router_node_up(const router_t *r, uint32_t node)
{
    return rpc_client_state(r->clients[node]) == RPC_CLIENT_UP;
}

#define ROUTER_STATE_MAX 300 /* bytes of "degraded: <reason>" */

struct router_health {
    uint8_t degraded;
    char state[ROUTER_STATE_MAX];
};

static int node_degraded(const router_t *r, uint32_t node)
{
    return r->health && r->health[node].degraded;
}

int router_up_fn(void *arg, uint32_t node)
{
    const router_t *r = arg;
    if (!router_node_up(r, node))
        return 0;
    return node_degraded(r, node) || router_hints_for(r, node) ? 1 : READPLAN_PREFERRED;
}

void router_note_health(router_t *r, uint32_t node, int degraded, const char *reason)
{
    if (!r->health && !degraded)
        return;
    if (!r->health && !(r->health = calloc(topo_node_count(r->topo), sizeof *r->health)))
        return;
    struct router_health *h = &r->health[node];
    h->degraded = degraded != 0;
    snprintf(h->state, sizeof h->state, "degraded: %s", reason && *reason ? reason : "unknown");
}

void router_health_free(router_t *r)
{
    free(r->health);
    r->health = NULL;
}

int router_read_load(http_req_t *req, http_params_t *params, char *msg, size_t msglen)
{
    int rc = http_req_params_all(req, params);
    if (rc == 0)
        return 0;
    /* params->err names the parameter and the position of a bad escape or NUL */
    if (rc == ST_EPARSE)
        snprintf(msg, msglen, "cannot parse the form body: %s", params->err);
    else
        snprintf(msg, msglen, "out of memory");
    return -1;
}

int router_read_params(const router_t *r, const http_params_t *params, int *need, int *partial,
                       char *msg, size_t msglen)
{
    return readopt_parse(r->topo, http_params_get(params, "read_consistency"),
                         http_params_get(params, "partial_response"), need, partial, msg, msglen);
}

/* rpc_call_cb -> the fan-out (an RPC_ERROR reply carries the node's text). */
static void on_fanout_reply(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    fanout_reply(arg, status, type == RPC_ERROR, payload, len);
}

int router_fanout_send(void *arg, uint32_t node, uint8_t type, const uint8_t *req, size_t len,
                       unsigned timeout_ms, fanout_rpc_t *rpc)
{
    router_t *r = arg;
    return rpc_client_call(r->clients[node], type, req, len, timeout_ms, on_fanout_reply, rpc);
}

int router_pack_read(st_buf_t *out, const fanout_call_t *c, const router_read_req_t *in)
{
    Strata__ReadRequest rq = STRATA__READ_REQUEST__INIT;
    Strata__Matcher mm[ROUTER_MAX_MATCHERS], *mp[ROUTER_MAX_MATCHERS];
    if (in->nm > ROUTER_MAX_MATCHERS)
        return ST_ELIMIT;
    for (size_t i = 0; i < in->nm; i++) {
        const st_matcher_t *m = &in->m[i];
        strata__matcher__init(&mm[i]);
        mm[i].type = (Strata__Matcher__Type)m->type;
        mm[i].name = (ProtobufCBinaryData){strlen(m->name), (uint8_t *)m->name};
        mm[i].value = (ProtobufCBinaryData){strlen(m->value), (uint8_t *)m->value};
        mp[i] = &mm[i];
    }
    if (in->nm) {
        rq.n_matchers = in->nm;
        rq.matchers = mp;
    }
    rq.n_shards = c->nshards;
    rq.shards = (uint32_t *)c->shards;
    rq.start_ms = in->start;
    rq.end_ms = in->end;
    rq.max_samples = ROUTER_EXPORT_PAGE;
    rq.max_series = in->max_series;
    rq.cursor_shard = c->cursor_shard;
    rq.cursor_pos = c->cursor_pos;
    rq.timeout_ms = in->timeout_ms;
    if (in->label_name)
        rq.label_name = (ProtobufCBinaryData){strlen(in->label_name), (uint8_t *)in->label_name};
    return router_pack(out, &rq.base);
}

int router_pack(st_buf_t *out, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    if (st_buf_reserve(out, len))
        return ST_ENOMEM;
    protobuf_c_message_pack(m, out->data + out->len);
    out->len += len;
    return 0;
}

fanout_cfg_t router_fanout_cfg(router_t *r, int need, int partial, size_t nitems,
                               size_t max_inflight, const fanout_ops_t *ops, void *ctx)
{
    return (fanout_cfg_t){.topo = r->topo,
                          .need = (uint32_t)need,
                          .partial = partial,
                          .nitems = nitems,
                          .max_inflight = max_inflight,
                          .up = router_up_fn,
                          .up_arg = r,
                          .send = router_fanout_send,
                          .send_arg = r,
                          .ops = ops,
                          .ctx = ctx};
}

uint64_t router_hints_for(const router_t *r, uint32_t node)
{
    uint32_t nn = topo_node_count(r->topo);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < nn; i++)
        if (i != node)
            sum += r->hints_held[(size_t)i * nn + node];
    return sum;
}

const char *router_node_state(const router_t *r, uint32_t node)
{
    rpc_client_state_t st = rpc_client_state(r->clients[node]);
    if (st == RPC_CLIENT_DOWN)
        return "down";
    if (st != RPC_CLIENT_UP)
        return "connecting";
    if (node_degraded(r, node))
        return r->health[node].state;
    return router_hints_for(r, node) ? "catching_up" : "up";
}

uint32_t router_pick_replica(const router_t *r, uint32_t shard)
{
    const uint32_t *rep = topo_shard_replicas(r->topo, shard);
    uint32_t rf = topo_replication_factor(r->topo);
    for (uint32_t k = 0; k < rf; k++)
        if (router_node_up(r, rep[k]))
            return rep[k];
    return rep[0];
}

void router_prom_error(http_req_t *req, int status, const char *etype, const char *msg)
{
    st_buf_t b;
    st_buf_init(&b);
    ST_BUF_LIT(&b, "{\"status\":\"error\",\"errorType\":");
    st_json_str(&b, etype, strlen(etype));
    ST_BUF_LIT(&b, ",\"error\":");
    st_json_str(&b, msg, strlen(msg));
    st_buf_put_u8(&b, '}');
    http_respond(req, status, "application/json", b.data, b.len);
    st_buf_deinit(&b);
}

/*
 * router — helpers every router handler shares: node liveness, replica
 * choice, read parameters, the Prometheus error body. main() and the route
 * table live in router_main.c and call into here, never the other way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_util.h"
#include "router.h"
#include "st_err.h"
#include "st_text.h"

int router_node_up(const router_t *r, uint32_t node)
{
    return rpc_client_state(r->clients[node]) == RPC_CLIENT_UP;
}

int router_up_fn(void *arg, uint32_t node)
{
    return router_node_up(arg, node);
}

int router_read_params(const router_t *r, http_req_t *req, http_params_t *form, int *need,
                       int *partial, char *msg, size_t msglen)
{
    const char *v = form ? http_params_get(form, "read_consistency") : NULL;
    if (!v)
        v = http_req_param(req, "read_consistency");
    int quorum = topo_read_consistency(r->topo) == TOPO_READ_QUORUM;
    if (v && *v) {
        if (!strcmp(v, "one")) {
            quorum = 0;
        } else if (!strcmp(v, "quorum")) {
            quorum = 1;
        } else {
            snprintf(msg, msglen, "invalid parameter \"read_consistency\": \"%.32s\" (one, quorum)",
                     v);
            return -1;
        }
    }
    *need = quorum ? (int)(topo_replication_factor(r->topo) / 2 + 1) : 1;
    v = form ? http_params_get(form, "partial_response") : NULL;
    if (!v)
        v = http_req_param(req, "partial_response");
    *partial = v && (!strcmp(v, "1") || !strcmp(v, "true"));
    return 0;
}

void router_missing_msg(char *msg, size_t len, const char *shards, int need)
{
    snprintf(msg, len,
             "no replica answered for shard(s) %s (read_consistency=%s); retry, or pass "
             "partial_response=1 to accept a partial result",
             shards, need > 1 ? "quorum" : "one");
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

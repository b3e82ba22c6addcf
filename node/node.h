/*
 * node — strata-node: the storage engines of the shards placed on this
 * node, served over RPC (routers and peers) and HTTP (operators, probes).
 *
 * Threads: the libuv loop thread runs the RPC and HTTP servers and never
 * touches the disk; every engine call (write, query, labels, stats) runs in
 * a uv_queue_work job on the libuv thread pool (UV_THREADPOOL_SIZE is set
 * at startup) and answers from the after-work callback on the loop thread.
 * Each shard has its own engine in <data-dir>/shard-<n>/.
 */
#ifndef NODE_H
#define NODE_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "engine.h"
#include "http.h"
#include "metrics.h"
#include "rpc_uv.h"
#include "topo.h"

#define NODE_EXPORT_PAGE_SAMPLES 1000000  /* default page size of EXPORT */
#define NODE_HTTP_EXPORT_MAX (512u << 20) /* local /api/v1/export response cap */

typedef struct node {
    uv_loop_t *loop;
    topo_t *topo;
    int self;
    char *data_dir;
    engine_t **engines; /* [shards]; NULL when the shard is not placed here */
    rpc_server_t *rpc;
    struct node_repl *repl; /* coordinated writes, hints, peers (node_repl.h) */
    http_server_t *http;
    metrics_t *metrics;
    int ready;
    atomic_int jobs; /* engine jobs in flight */
    metric_counter_t *rpc_requests, *rpc_errors, *samples_written, *write_rejected;
    metric_counter_t *http_exports;
    metric_counter_t *queries, *query_samples, *query_points;
} node_t;

void node_rpc_handler(void *arg, rpc_conn_t *conn, uint8_t type, uint64_t reqid,
                      const uint8_t *payload, size_t len);
/* QUERY: evaluate a pushed-down QueryRequest over local shards (thread pool).
 * Appends a QueryResponse to out; else returns ST_E* with a message. */
int node_query(node_t *n, const uint8_t *payload, size_t len, st_buf_t *out, char *msg,
               size_t msglen);
void node_http_handler(http_req_t *req, void *arg);
int node_metrics_register(node_t *n);

#endif

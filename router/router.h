/*
 * router — strata-router: a stateless HTTP front end. It hashes every
 * series to a shard with the topology of cluster.ini, sends each node one
 * RPC per request carrying all the shards that node serves, and fans reads
 * out to one replica per shard.
 *
 * Threads: one libuv loop runs the HTTP server and the RPC clients (one per
 * node, persistent, reconnecting). CPU work — parsing line protocol,
 * grouping and encoding batches, turning export pages into JSON — runs in
 * uv_queue_work jobs; the loop only moves bytes.
 */
#ifndef ROUTER_H
#define ROUTER_H

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <uv.h>

#include "fanout.h"
#include "http.h"
#include "metrics.h"
#include "rpc_uv.h"
#include "st_matcher.h"
#include "topo.h"

#define ROUTER_EXPORT_PAGE (1u << 19) /* samples per EXPORT page */
#define ROUTER_MAX_SERIES 2000000     /* /api/v1/series answer cap */
#define ROUTER_MAX_MATCHERS 64        /* matchers in one read request */
#define ROUTER_LISTEN_MAX 300         /* bytes of --listen HOST:PORT */

typedef struct router {
    uv_loop_t *loop;
    topo_t *topo;
    char listen[ROUTER_LISTEN_MAX];
    rpc_client_t **clients; /* [node] */
    http_server_t *http;
    metrics_t *metrics;
    int64_t timeout_ms;
    uint64_t max_body;
    metric_counter_t *lines_ok, *lines_bad, *samples, *write_503, *rpc_fail, *reads;
    metric_counter_t *lines_too_old;    /* of lines_bad: timestamp before now - retention */
    metric_counter_t *q_pushed, *q_raw; /* query RPCs: QUERY, EXPORT */
    /* health from the heartbeat (STATS every heartbeat_interval) */
    uv_timer_t heartbeat;
    uint64_t *hints_held; /* [node][node]: records node i holds for node j */
    uint8_t *stats_fresh; /* [node]: last heartbeat answered */
    uint8_t *stats_inflight;
} router_t;

/* readplan_up_fn over router_node_up. */
int router_up_fn(void *arg, uint32_t node);
/* The parameters of a read, read one way by every read endpoint:
 * http_req_params_all() (a POST form body, then the query string) into
 * *params, which the caller deinits whatever the result. Returns 0, or -1
 * with a 400 message in msg (a form body that cannot be decoded). */
int router_read_load(http_req_t *req, http_params_t *params, char *msg, size_t msglen);
/* Read options shared by every read: readopt_parse() of read_consistency
 * and partial_response in params. Returns 0, or -1 with msg set (400). */
int router_read_params(const router_t *r, const http_params_t *params, int *need, int *partial,
                       char *msg, size_t msglen);

/* fanout_send_fn over the router's RPC clients (arg: the router_t). */
int router_fanout_send(void *arg, uint32_t node, uint8_t type, const uint8_t *req, size_t len,
                       unsigned timeout_ms, fanout_rpc_t *rpc);

/* A ReadRequest (EXPORT, SERIES, LABEL_*) for a fan-out call: its shards
 * and page cursor, these matchers, time range and limits; pages of
 * ROUTER_EXPORT_PAGE samples. */
typedef struct router_read_req {
    const st_matcher_t *m;
    size_t nm; /* <= ROUTER_MAX_MATCHERS */
    int64_t start, end;
    uint64_t max_series;    /* 0: none */
    const char *label_name; /* LABEL_VALUES; NULL otherwise */
} router_read_req_t;
/* Append it, packed, to out. Returns 0, ST_ELIMIT or ST_ENOMEM. */
int router_pack_read(st_buf_t *out, const fanout_call_t *c, const router_read_req_t *rq);
/* Append any protobuf message, packed, to out. Returns 0 or ST_ENOMEM. */
int router_pack(st_buf_t *out, const ProtobufCMessage *m);
/* A fan-out over the router's nodes (health, RPC clients) for these
 * callbacks: see fanout_cfg_t. */
fanout_cfg_t router_fanout_cfg(router_t *r, int need, int partial, size_t nitems,
                               size_t max_inflight, const fanout_ops_t *ops, void *ctx);

/* Hint records other nodes hold for `node` (as of the last heartbeat). */
uint64_t router_hints_for(const router_t *r, uint32_t node);
/* "up", "down", "connecting" or "catching_up" (up, others hold hints for it). */
const char *router_node_state(const router_t *r, uint32_t node);

/* Node index that serves `shard` now: the first replica whose client is up
 * (the first replica when none is). */
uint32_t router_pick_replica(const router_t *r, uint32_t shard);
int router_node_up(const router_t *r, uint32_t node);

void router_handle_write(router_t *r, http_req_t *req);
/* A write body in another format than line protocol (router_import.c): the
 * /write pipeline (gzip, consistency=, grouping and placement in wbatch.h,
 * delivery, 204/400/503 answers) with `decode` in place of the line-protocol
 * parser. decode runs on the thread pool and fills b with wbatch_add_series /
 * wbatch_reject (now_ms: the request's clock); it returns 0 or ST_ENOMEM.
 * arg belongs to the write from the call on (free_arg(arg) when done). */
struct wbatch;
typedef struct router_decoder {
    int (*decode)(void *arg, struct wbatch *b, const char *body, size_t len, int64_t now_ms);
    void (*free_arg)(void *arg);
} router_decoder_t;
void router_write_decoded(router_t *r, http_req_t *req, const router_decoder_t *dec, void *arg);
/* Answer {"status":"error","errorType":etype,"error":msg} (Prometheus API format). */
void router_prom_error(http_req_t *req, int status, const char *etype, const char *msg);

void router_handle_export(router_t *r, http_req_t *req);
/* /api/v1/export with each series written by fmt->line (e.g. CSV rows)
 * instead of a JSON line; arg belongs to the read from the call on. */
typedef struct router_export_fmt {
    const char *content_type;
    int (*line)(void *arg, st_buf_t *b, const st_label_t *l, size_t nl, const int64_t *ts,
                const double *v, size_t n);
    void (*free_arg)(void *arg);
} router_export_fmt_t;
void router_handle_export_as(router_t *r, http_req_t *req, const router_export_fmt_t *fmt,
                             void *arg);
/* The sorted, distinct label names (label_name NULL) or values of
 * label_name over the series matching `match` (a selector; NULL: all), for
 * a handler that answers in its own format: fn gets them and answers req
 * (the strings are valid during the call). A read that fails is answered
 * by the read itself (Prometheus error JSON, 400/503); fn is then called
 * with req NULL, only to let go of arg. */
typedef void (*router_strings_fn)(void *arg, http_req_t *req, const char *const *s, size_t n);
void router_collect_strings(router_t *r, http_req_t *req, const char *label_name, const char *match,
                            router_strings_fn fn, void *arg);
void router_handle_series(router_t *r, http_req_t *req);
void router_handle_labels(router_t *r, http_req_t *req, const char *label_name);
void router_handle_query(router_t *r, http_req_t *req, int range);

#endif

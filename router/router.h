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

#include "auth_gate.h"
#include "fanout.h"
#include "http.h"
#include "metrics.h"
#include "promql_eval.h"
#include "repl.h"
#include "rpc_uv.h"
#include "selector.h"
#include "st_matcher.h"
#include "topo.h"

#define ROUTER_EXPORT_PAGE (1u << 19) /* samples per EXPORT page */
#define ROUTER_MAX_SERIES 2000000     /* /api/v1/series answer cap */
#define ROUTER_MAX_MATCHERS 64        /* matchers in one read request */
#define ROUTER_LISTEN_MAX 300         /* bytes of --listen HOST:PORT */
#define ROUTER_WRITE_MSG_MAX 300      /* bytes of a write's 400 message */
/* Writes: a shard's series are cut into pieces of about this many bytes and
 * sent in RPCs of about this size, at most ROUTER_WRITE_WINDOW in flight
 * per node per request (router_write.c): the loop never copies or
 * compresses a huge frame at once, so heartbeats are never stuck behind it.
 * The size also bounds what a write keeps in flight on the nodes (each
 * piece is held by its coordinator and queued on the replicas until
 * written): 512 KiB instead of 1 MiB took a node's peak RSS at 4000 hosts,
 * RF=3, from ~230 to ~180 MiB for ~2% of the ingest rate. */
#define ROUTER_WRITE_PIECE (512u << 10)
/* Series references a router remembers sending with labels (wbatch.h):
 * then it forgets them all (32 MiB of table at most). */
#define ROUTER_WRITE_REFS_MAX (1u << 20)
#define ROUTER_WRITE_WINDOW 2

typedef struct router {
    uv_loop_t *loop;
    topo_t *topo;
    char listen[ROUTER_LISTEN_MAX];
    rpc_client_t **clients; /* [node] */
    http_server_t *http;
    metrics_t *metrics;
    auth_gate_t *auth; /* users, roles, 401/403 ([security] users_file) */
    int64_t timeout_ms;
    uint64_t max_body;
    metric_counter_t *lines_ok, *lines_bad, *samples, *write_503, *rpc_fail, *reads;
    metric_counter_t *lines_too_old;        /* of lines_bad: timestamp before now - retention */
    metric_counter_t *lines_too_far_future; /* of lines_bad: after now + max_future */
    metric_counter_t *write_busy;           /* of write_503: a node over head_max_mb */
    metric_counter_t *write_refused;        /* 400: a cardinality limit refused samples */
    metric_counter_t *samples_refused[REPL_NLIMITS]; /* by limit (router.c) */
    metric_counter_t *q_pushed, *q_raw;              /* query RPCs: QUERY, EXPORT */
    /* Prometheus remote write / read (router_promrw.c) */
    metric_counter_t *rw_requests, *rw_series, *rw_samples, *rw_bad_series, *rw_bad_requests;
    metric_counter_t *rw_exemplars, *rw_metadata, *rw_histograms, *rr_requests, *federate;
    metric_counter_t
        *q_refused[PROMQL_LIMIT_COUNT]; /* queries refused, by limit (router_query.c) */
    /* health from the heartbeat (STATS every heartbeat_interval) */
    uv_timer_t heartbeat;
    uint64_t *hints_held; /* [node][node]: records node i holds for node j */
    uint8_t *stats_fresh; /* [node]: last heartbeat answered */
    uint8_t *stats_inflight;
    struct router_health *health;   /* [node]: degraded state from STATS (router.c) */
    struct router_console *console; /* web console counters, node figures (router_console.c) */
    struct router_rules *rules;     /* compaction rules: the newest set known (router_rules.c) */
    struct router_repair_seen *repair_seen; /* nodes' repair state from STATS (router_repair.c) */
    struct router_rrepair *rrepair;         /* read repair: queue, counters (router_rrepair.c) */
    struct wbatch_refs *wrefs;              /* series references sent with labels (wbatch.h) */
    metric_counter_t *write_labels;         /* pieces sent again with labels (ST_ENOREF) */
} router_t;

/* Register samples_refused (strata_router_samples_refused_total{limit}). */
int router_limit_metrics(router_t *r);
/* Count n samples a node refused under the limit named `limit`. */
void router_count_refused(router_t *r, const char *limit, uint64_t n);

/* readplan_up_fn: 0 when the node is down, 1 when it is up but degraded
 * or behind (other nodes hold hints for it), READPLAN_PREFERRED otherwise. */
int router_up_fn(void *arg, uint32_t node);
/* A node's STATS said degraded (reason) or not: kept for /cluster and the
 * read plan (the loop thread; allocates on first use). */
void router_note_health(router_t *r, uint32_t node, int degraded, const char *reason);
/* Free what router_note_health allocated. */
void router_health_free(router_t *r);
/* The parameters of a read, read one way by every read endpoint:
 * http_req_params_all() (a POST form body, then the query string) into
 * *params, which the caller deinits whatever the result. Returns 0, or -1
 * with a 400 message in msg (a form body that cannot be decoded). */
int router_read_load(http_req_t *req, http_params_t *params, char *msg, size_t msglen);
/* Every match[] of params parsed into sel[*n...] (at most max in all;
 * *n counts the parsed ones, which the caller frees). Returns 0, or -1 with
 * a 400 message in err. */
int router_read_matches(const http_params_t *params, selector_t *sel, size_t max, size_t *n,
                        char *err, size_t errlen);
/* A confined user's selector (auth_gate_user(req)) ANDed into sel[0..*n)
 * (into a new sel[0] when *n is 0, so the read is still confined); nothing
 * for other users. Returns 0, or -1 with a 400 message in err (too many
 * matchers together). */
int router_read_confine(const http_req_t *req, selector_t *sel, size_t max, size_t *n, char *err,
                        size_t errlen);
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
    unsigned timeout_ms;    /* the node's deadline for the call; 0: none */
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
/* "up", "down", "connecting", "degraded: <reason>" (up, its STATS say an
 * engine is degraded) or "catching_up" (up, others hold hints for it). */
const char *router_node_state(const router_t *r, uint32_t node);

/* Node index that serves `shard` now: the first replica whose client is up
 * (the first replica when none is). */
uint32_t router_pick_replica(const router_t *r, uint32_t shard);
int router_node_up(const router_t *r, uint32_t node);

void router_handle_write(router_t *r, http_req_t *req);
/* What a write format adds to the write pipeline of router_write.c: build()
 * fills the batch from the request on a worker thread: 0, or an ST_* code
 * answered with msg when it wrote one (ST_ELIMIT 413, ST_ENOMEM 503, else
 * 400: a bad body, nothing written), else 503 for ST_ENOMEM, 500; done() runs on the loop when the
 * job ends, with the batch when it was built and answered from (to count
 * it), else NULL, and frees arg. item/items name the unit of a rejection
 * in a 400 answer ("line"/"lines"). drop_body: nothing (arg, done) points
 * into the request's body once build() returned, so its memory is given
 * back before the pieces are sent. */
typedef struct wbatch wbatch_t;
typedef struct router_write_src {
    int (*build)(void *arg, http_req_t *req, wbatch_t *b, char *msg, size_t msglen);
    void (*done)(void *arg, router_t *r, const wbatch_t *b);
    const char *item, *items;
    void *arg;
    int drop_body;
} router_write_src_t;
/* Build (src), place, send and answer one write request like /write:
 * retention, consistency, failover, 204 / 400 / 503. */
void router_write_submit(router_t *r, http_req_t *req, int consistency, int64_t now_ms,
                         const router_write_src_t *src);
/* POST /api/v1/write, /api/v1/read and GET/POST /federate (router_promrw.c). */
void router_handle_promrw_write(router_t *r, http_req_t *req);
void router_handle_promrw_read(router_t *r, http_req_t *req);
void router_handle_federate(router_t *r, http_req_t *req);
/* A write body in another text format than line protocol (router_import.c):
 * /write's body checks (gzip, consistency=) then router_write_submit() with
 * `decode` in place of the line-protocol parser. decode runs on the thread
 * pool and fills b with wbatch_add_series / wbatch_reject (now_ms: the
 * request's clock); it returns 0 or ST_ENOMEM. arg belongs to the write from
 * the call on (free_arg(arg) when done). */
typedef struct router_decoder {
    int (*decode)(void *arg, wbatch_t *b, const char *body, size_t len, int64_t now_ms);
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
/* Run a PromQL query for another door (SQL): an instant query when start
 * == end, else a range query; the same plan, pushdown, fan-out and limits
 * as /api/v1/query (default read consistency), deadline an st_mono_ms()
 * time; pushdown 0: raw samples are fetched in EXPORT pages (a big raw
 * read), 1: the plan may push parts to the nodes. cb runs once on the loop: status 0 with the
 * result (cb owns it: promql_result_free), or an HTTP status (400, 422, 503) and a message. */
typedef void (*router_promql_cb)(void *arg, int status, const char *msg, promql_result_t *res);
void router_promql_run(router_t *r, const char *query, int64_t start, int64_t end, int64_t step,
                       int64_t deadline, int pushdown, router_promql_cb cb, void *arg);
/* POST/GET /sql (router_sql.c). */
void router_handle_sql(router_t *r, http_req_t *req);

#endif

/*
 * node — strata-node: the storage engines of the shards placed on this
 * node, served over RPC (routers and peers) and HTTP (operators, probes).
 *
 * Threads: the libuv loop thread runs the RPC and HTTP servers and never
 * touches the disk; every engine call (write, query, labels, stats) runs in
 * a uv_queue_work job on the libuv thread pool (UV_THREADPOOL_SIZE is set
 * at startup) and answers from the after-work callback on the loop thread.
 * Each shard has its own engine in <data-dir>/shard-<n>/.
 *
 * Files: node_main.c (command line), node_server.c (start, run, stop),
 * node_rpc.c (RPC requests), node_write.c (local writes), node_repl.c
 * (coordinated writes, hints, peers), node_query.c (pushed-down PromQL),
 * node_http.c (HTTP routes), node_metrics.c (metrics).
 */
#ifndef NODE_H
#define NODE_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "engine.h"
#include "engine_tier.h"
#include "auth_gate.h"
#include "http.h"
#include "metrics.h"
#include "promql_eval.h"
#include "repl.h"
#include "rpc_uv.h"
#include "st_hlc.h"
#include "st_log.h"
#include "topo.h"

/* A ReadRequest that leaves max_samples / max_series at 0 gets pages of
 * these sizes (the router always sets both: ROUTER_EXPORT_PAGE samples and
 * 50000 series in router_read.c; the defaults serve other RPC clients). */
#define NODE_EXPORT_PAGE_SAMPLES 1000000  /* default samples per EXPORT page */
#define NODE_EXPORT_PAGE_SERIES 100000    /* default series per EXPORT/SERIES page */
#define NODE_READ_MAX_MATCHERS 64         /* matchers one ReadRequest may carry */
#define NODE_TOPN_MAX 100000u             /* keys one TOPN may ask for (SQL_TOPN_MAX) */
#define NODE_HTTP_EXPORT_MAX (512u << 20) /* local /api/v1/export response cap */
#define NODE_DEGRADED_REASON_MAX 256      /* bytes of a degraded reason (NUL included) */
#define NODE_RUNNING_MAX 256  /* pushed-down queries a CANCEL reaches (more run uncancellable) */
#define NODE_CANCELLED_MAX 64 /* ids of CANCELs that found no query (their QUERY may follow) */

/* A running pushed-down query that a CANCEL may stop (node_query.c). */
typedef struct node_running {
    uint64_t id;       /* the router's query id; 0: free slot */
    atomic_int cancel; /* the evaluation's promql_eval_opts_t.cancel */
} node_running_t;

typedef struct node {
    uv_loop_t *loop;
    topo_t *topo;
    int self;
    char *node_id; /* this node's [node "ID"] (--node-id or the hostname) */
    char *data_dir;
    engine_t **engines;      /* [shards]; NULL when the shard is not placed here */
    engine_tiers_t **tiers;  /* [shards]; downsampling tiers of engines[s] ([downsampling]) */
    engine_budget_t *budget; /* [storage] limits shared by the engines (node_server.c) */
    rpc_server_t *rpc;
    rpc_budget_t *rpc_budget; /* [replication] rpc_inflight_max_mb, for rpc's connections */
    struct node_repl *repl;   /* coordinated writes, hints, peers (node_repl.h) */
    struct node_rules *rules; /* compaction rules: the set and its evaluation (node_rules.h) */
    st_hlc_t hlc; /* versions of the writes this node coordinates (zeroed = initialized);
                     it observes the versions of writes forwarded to it */
    struct node_repair *repair; /* anti-entropy, repair, rebuild (node_repair.h) */
    http_server_t *http;
    metrics_t *metrics;
    auth_gate_t *auth; /* [security] users_file: credentials on the HTTP data endpoints */
    int ready;
    atomic_int jobs; /* engine jobs in flight */
    metric_counter_t *rpc_requests, *rpc_errors, *samples_written, *write_rejected;
    metric_counter_t *http_exports;
    metric_counter_t *queries, *query_samples, *query_points;
    metric_counter_t *count_from_headers;            /* count_over_time samples not decoded */
    metric_counter_t *row_stats, *row_stats_samples; /* ROW_STATS (node_query.c) */
    /* node_query.c: running pushed-down queries by id (slots claimed and
     * searched under the spin lock running_lock; CANCEL sets their flag) */
    node_running_t running[NODE_RUNNING_MAX];
    uint64_t cancelled[NODE_CANCELLED_MAX]; /* ring: CANCELs that came before their QUERY */
    size_t cancelled_next;
    atomic_int running_lock;
    metric_counter_t *queries_cancelled, *reads_timed_out;
    metric_counter_t *deletes_served;      /* shard deletes applied (node_delete.c) */
    metric_counter_t *queries_downsampled; /* evaluations answered from tier buckets only */
    /* node_query.c: bytes all running pushed-down queries hold ([storage]
     * query_total_max_mb), and the queries refused per limit */
    _Atomic uint64_t query_bytes;
    metric_counter_t *query_refused[PROMQL_LIMIT_COUNT];
    metric_counter_t *series_refused[REPL_NLIMITS]; /* by limit (node_write.c) */
    uv_signal_t sig_term, sig_int;                  /* node_server.c: shutdown */
    uv_signal_t sig_hup;                            /* node_server.c: reload certificates */
    tls_set_t tls; /* [security]: node HTTP listener, RPC server and peer clients */
    int shutting_down;
} node_t;

/* rpc_log_fn for the node's RPC server and peer clients: into st_log. */
static inline void node_rpc_log(void *arg, int level, const char *msg, const char *kv)
{
    (void)arg;
    st_log(level, msg, "%s", kv ? kv : "");
}

/* rpc_handler_fn: the node's RPC requests (node_rpc.c), arg = the node_t. */
/* Matchers of a request, with NUL-terminated copies (node_rpc.c). */
typedef struct matchers {
    st_matcher_t m[NODE_READ_MAX_MATCHERS];
    size_t n;
    char *arena; /* free() it whatever the result */
} matchers_t;
struct Strata__Matcher;
int node_matchers_from(struct Strata__Matcher *const *ms, size_t nms, matchers_t *out, char *msg,
                       size_t msglen);
/* RPC_DELETE (dry run, purge) over this node's shards (node_delete.c). */
int node_delete_rpc(node_t *n, const uint8_t *payload, size_t len, st_buf_t *out, char *msg,
                    size_t msglen);
/* A WriteRequest's delete field applied to its shard's engine with the
 * WriteRequest's version (0: unversioned) (node_delete.c): *samples gets the
 * samples in range before it. Returns 0 or ST_E* with msg set. */
int node_delete_shard(node_t *n, uint32_t shard, const uint8_t *p, size_t len, uint64_t version,
                      uint64_t *samples, char *msg, size_t msglen);
/* RPC_TOMBS: a page of a local shard's versioned tombstones (node_delete.c). */
int node_delete_tombs_rpc(node_t *n, const uint8_t *payload, size_t len, st_buf_t *out, char *msg,
                          size_t msglen);
/* Apply the tombstones of a TombsResponse page to a local shard (repair;
 * dry_run: only count): *next_cursor, *done from the page; *applied gets
 * the count not known here before. 0 or ST_E* with msg set. */
int node_delete_tombs_apply(node_t *n, uint32_t shard, const uint8_t *page, size_t len, int dry_run,
                            uint64_t *applied, uint64_t *next_cursor, int *done, int *same,
                            char *msg, size_t msglen);

void node_rpc_handler(void *arg, rpc_conn_t *conn, uint8_t type, uint64_t reqid,
                      const uint8_t *payload, size_t len);
/* QUERY: evaluate a pushed-down QueryRequest over local shards (thread pool).
 * Appends a QueryResponse to out; else returns ST_E* with a message. */
int node_query(node_t *n, const uint8_t *payload, size_t len, st_buf_t *out, char *msg,
               size_t msglen);
/* The budget of a read answered on the loop (QUERY, EXPORT, SERIES):
 * series and samples selected at most, and no regex matcher. */
#define NODE_INLINE_SERIES 256
#define NODE_INLINE_SAMPLES 16384
/* 1 when matchers m select at most max_series series over these local
 * shards (index lookups only; 0 on an error too). */
int node_select_small(node_t *n, const uint32_t *shards, size_t nshards, const st_matcher_t *m,
                      size_t nm, uint64_t max_series);
/* 1 when one of m[0, nm) is a regex matcher (=~ or !~). */
int node_has_regex(const st_matcher_t *m, size_t nm);
/* The same; on_loop: only when it is small (node_query.c), else
 * NODE_QUERY_LATER with nothing appended (evaluate it off the loop). */
#define NODE_QUERY_LATER 1
int node_query_ex(node_t *n, const uint8_t *payload, size_t len, int on_loop, st_buf_t *out,
                  char *msg, size_t msglen);
/* TOPN: the newest (oldest) n (tag set, time) keys of the local shards'
 * series (SQL ORDER BY time ... LIMIT; thread pool). Appends a TopnResponse
 * to out; else returns ST_E* with a message. */
int node_topn(node_t *n, const uint8_t *payload, size_t len, st_buf_t *out, char *msg,
              size_t msglen);
/* ROW_STATS (node_query.c): for a ReadRequest's local shards, matchers and
 * inclusive range [start_ms, end_ms], each tag set's timestamp fingerprint
 * (rowstats.h; at most max_series tag sets, until timeout_ms); appends a
 * RowStatsResponse to out, else ST_E* with msg. */
struct Strata__ReadRequest;
int node_row_stats(node_t *n, const struct Strata__ReadRequest *r, const st_matcher_t *m, size_t nm,
                   st_buf_t *out, char *msg, size_t msglen);
/* CANCEL: set the cancel flag of every running QUERY with this id (any
 * thread; the loop's). Returns how many were found (0: ignored). */
size_t node_query_cancel(node_t *n, uint64_t query_id);
/* TSDB_STATUS (node_status.c): append a TsdbStatusResponse for these local
 * shards and matchers (nm 0: all series) to out; else ST_E* with msg. */
int node_tsdb_status(node_t *n, const uint32_t *shards, size_t nshards, const st_matcher_t *m,
                     size_t nm, st_buf_t *out, char *msg, size_t msglen);
/* http_handler_fn: the node's routes (node_http.c), arg = the node_t. */
void node_http_handler(http_req_t *req, void *arg);
/* Count series a cardinality limit (by name) refused (node_write.c). */
void node_count_series_refused(node_t *n, const char *limit, uint64_t series);
/* The node's counters and the engines' gauges in n->metrics (node_metrics.c). */
int node_metrics_register(node_t *n);
/* The engine stats summed over the shards open here (any thread); the
 * first `cap` of their ids go to shards[] (may be NULL). Returns how many
 * ids were written. */
size_t node_engine_totals(node_t *n, engine_stats_t *t, uint32_t *shards, size_t cap);
/* 1 when a local engine reports itself degraded (engine_health: flushes,
 * WAL or compaction failing, disk full, out of descriptors), with the
 * first reason in why ("shard 3: <reason>"); 0 otherwise. Any thread
 * (engine_health takes only a short lock of its own). */
int node_degraded(node_t *n, char *why, size_t cap);

#endif

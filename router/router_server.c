/*
 * router_server — strata-router's start, run and stop (see
 * router_server.h), the routes of its HTTP API, and the endpoints that
 * are about the cluster rather than its data (/cluster, /ready, /health,
 * /metrics, /ping).
 *
 * One router per process: router_server_t holds the router_t every
 * handler gets, plus what only start/stop need. The routes are one table
 * (exact path, or prefix + segment + suffix, the handler, the role it
 * needs and whether it confines a user to its selector); with [security]
 * users_file every request passes the auth gate (auth_gate.h: 401/403,
 * SIGHUP reload) before its handler runs; the writes,
 * reads and queries are answered in router_write.c, router_read.c and
 * router_query.c.
 *
 * The heartbeat asks every node that is up for its STATS (one call per
 * node in flight) and keeps the hint counts it reports: /cluster shows
 * them and router_node_state says "catching_up" from them.
 */
#include "router_server.h"

#include <signal.h>
#include <stdio.h>
#include <sys/random.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "router.h"
#include "router_console.h"
#include "router_resp.h"
#include "router_delete.h"
#include "router_rules.h"
#include "router_repair.h"
#include "router_rrepair.h"
#include "router_import.h"
#include "router_pg.h"
#include "router_sql.h"
#include "net_listen.h"
#include "st_err.h"
#include "st_log.h"
#include "st_text.h"
#include "st_time.h"
#include "strata.pb-c.h"
#include "wbatch.h"

#define ROUTER_MIN_HEARTBEAT_MS 200     /* floor for [replication] heartbeat_interval */
#define ROUTER_HTTP_CLOSE_GRACE_MS 5000 /* in-flight requests on shutdown */
#define ROUTER_MAX_LABEL_NAME 1024      /* bytes of <name> in /api/v1/label/<name>/values */

/* One per node: the RPC client's state callback and the heartbeat call. */
typedef struct node_ctx {
    router_server_t *s;
    uint32_t node;
} node_ctx_t;

struct router_server {
    router_t r; /* what the handlers get */
    const char *listen;
    char host[256];
    int port;
    node_ctx_t *nodes; /* [node] */
    uv_signal_t sig_term, sig_int;
    uv_signal_t sig_hup; /* reload certificates */
    tls_set_t tls;       /* [security]: HTTPS listener, RPC client certificate */
    int shutting_down;
    const char *resp_listen; /* NULL: no RESP door */
    char resp_host[256];
    int resp_port;
    router_resp_t *resp;
    const char *pg_listen; /* NULL: no PostgreSQL door */
    char pg_host[256];
    int pg_port;
    router_pg_t *pg;
};

/* HOST:PORT into host and *port: 0, or -1. */
static int split_addr(const char *a, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(a, ':');
    *port = colon ? atoi(colon + 1) : 0;
    if (!colon || colon == a || (size_t)(colon - a) >= cap || *port <= 0 || *port > 65535)
        return -1;
    memcpy(host, a, (size_t)(colon - a));
    host[colon - a] = '\0';
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') { /* [v6]:port */
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    return 0;
}

/* ---- heartbeat ---------------------------------------------------------- */

static void on_stats(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    node_ctx_t *c = arg;
    router_t *r = &c->s->r;
    uint32_t nn = topo_node_count(r->topo), node = c->node;
    (void)type;
    r->stats_inflight[node] = 0;
    Strata__NodeStats *st = status ? NULL : strata__node_stats__unpack(NULL, len, payload);
    r->stats_fresh[node] = st != NULL;
    if (st) {
        for (uint32_t j = 0; j < nn; j++)
            r->hints_held[(size_t)node * nn + j] = 0;
        for (size_t k = 0; k < st->n_hints; k++) {
            int j = topo_node_index(r->topo, st->hints[k]->peer);
            if (j >= 0)
                r->hints_held[(size_t)node * nn + (uint32_t)j] = st->hints[k]->pending_records;
        }
        router_note_health(r, node, st->degraded, st->degraded_reason);
        router_status_note(r, node, st);
        router_repair_note(r, node, st);
        strata__node_stats__free_unpacked(st, NULL);
    }
    /* a node that does not answer keeps its last known hint counts: the
     * hints are still on its disk */
}

static void on_heartbeat(uv_timer_t *t)
{
    router_server_t *s = t->data;
    router_t *r = &s->r;
    uint32_t nn = topo_node_count(r->topo);
    for (uint32_t i = 0; i < nn; i++) {
        if (r->stats_inflight[i] || !router_node_up(r, i))
            continue;
        if (rpc_client_call(r->clients[i], RPC_STATS, NULL, 0, (unsigned)r->timeout_ms, on_stats,
                            &s->nodes[i]) == 0)
            r->stats_inflight[i] = 1;
    }
    router_rules_tick(r); /* nodes behind on the compaction rules get the newest set */
}

static void rpc_log(void *arg, int level, const char *msg, const char *kv)
{
    st_log(level, msg, "%s", kv ? kv : "");
}

static void on_state(void *arg, rpc_client_t *cli, rpc_client_state_t state, int err)
{
    node_ctx_t *c = arg;
    const topo_t *t = c->s->r.topo;
    if (state == RPC_CLIENT_UP)
        st_info("node up", "node=%s", topo_node_id(t, c->node));
    else if (state == RPC_CLIENT_DOWN)
        st_warn("node down", "node=%s err=\"%s\"", topo_node_id(t, c->node), st_strerror(err));
}

/* ---- the cluster's endpoints -------------------------------------------- */

static void respond_json(http_req_t *req, int status, st_buf_t *b)
{
    http_respond(req, status, "application/json", b->data, b->len);
    st_buf_deinit(b);
}

static void handle_cluster(router_t *r, http_req_t *req)
{
    st_buf_t b;
    st_buf_init(&b);
    char tmp[256];
    const topo_t *t = r->topo;
    ST_BUF_LIT(&b, "{\"cluster\":");
    st_json_str(&b, topo_cluster_name(t), strlen(topo_cluster_name(t)));
    int k = snprintf(tmp, sizeof tmp,
                     ",\"fingerprint\":\"%s\",\"shards\":%u,\"replication_factor\":%u,"
                     "\"write_consistency\":\"%s\",\"read_consistency\":\"%s\",\"nodes\":[",
                     topo_fingerprint_hex(t), topo_shards(t), topo_replication_factor(t),
                     topo_write_consistency_name(topo_write_consistency(t)),
                     topo_read_consistency_name(topo_read_consistency(t)));
    st_buf_append(&b, tmp, (size_t)k);
    for (uint32_t i = 0; i < topo_node_count(t); i++) {
        if (i)
            st_buf_put_u8(&b, ',');
        ST_BUF_LIT(&b, "{\"id\":");
        st_json_str(&b, topo_node_id(t, i), strlen(topo_node_id(t, i)));
        ST_BUF_LIT(&b, ",\"rpc\":");
        st_json_str(&b, topo_node_rpc(t, i)->addr, strlen(topo_node_rpc(t, i)->addr));
        ST_BUF_LIT(&b, ",\"http\":");
        st_json_str(&b, topo_node_http(t, i)->addr, strlen(topo_node_http(t, i)->addr));
        uint64_t held = 0;
        for (uint32_t j = 0; j < topo_node_count(t); j++)
            held += r->hints_held[(size_t)i * topo_node_count(t) + j];
        k = snprintf(tmp, sizeof tmp,
                     ",\"state\":\"%s\",\"pending_rpcs\":%zu,\"hints_pending\":%llu,"
                     "\"hints_held\":%llu}",
                     router_node_state(r, i), rpc_client_pending(r->clients[i]),
                     (unsigned long long)router_hints_for(r, i), (unsigned long long)held);
        st_buf_append(&b, tmp, (size_t)k - 1); /* the closing brace after the repair fields */
        router_repair_node_json(r, i, &b);
        st_buf_put_u8(&b, '}');
    }
    ST_BUF_LIT(&b, "],\"placement\":[");
    for (uint32_t s = 0; s < topo_shards(t); s++) {
        k = snprintf(tmp, sizeof tmp, "%s{\"shard\":%u,\"replicas\":[", s ? "," : "", s);
        st_buf_append(&b, tmp, (size_t)k);
        const uint32_t *rep = topo_shard_replicas(t, s);
        for (uint32_t i = 0; i < topo_replication_factor(t); i++) {
            if (i)
                st_buf_put_u8(&b, ',');
            st_json_str(&b, topo_node_id(t, rep[i]), strlen(topo_node_id(t, rep[i])));
        }
        ST_BUF_LIT(&b, "]");
        router_repair_shard_json(r, s, &b);
        ST_BUF_LIT(&b, "}");
    }
    ST_BUF_LIT(&b, "]}");
    respond_json(req, 200, &b);
}

static void handle_ready(router_t *r, http_req_t *req)
{
    st_buf_t b;
    st_buf_init(&b);
    int missing = 0;
    char tmp[32];
    for (uint32_t s = 0; s < topo_shards(r->topo); s++) {
        uint32_t node = router_pick_replica(r, s);
        if (router_node_up(r, node))
            continue;
        int k = snprintf(tmp, sizeof tmp, "%s%u", missing ? "," : "", s);
        st_buf_append(&b, tmp, (size_t)k);
        missing++;
    }
    if (!missing) {
        st_buf_deinit(&b);
        http_respond(req, 200, "text/plain; charset=utf-8", "ready\n", 6);
        return;
    }
    st_buf_t out;
    st_buf_init(&out);
    ST_BUF_LIT(&out, "not ready: no reachable replica for shard(s) ");
    st_buf_append(&out, b.data, b.len);
    st_buf_put_u8(&out, '\n');
    http_respond(req, 503, "text/plain; charset=utf-8", out.data, out.len);
    st_buf_deinit(&out);
    st_buf_deinit(&b);
}

static void handle_health(router_t *r, http_req_t *req)
{
    http_respond(req, 200, "text/plain; charset=utf-8", "ok\n", 3);
}

static void handle_metrics(router_t *r, http_req_t *req)
{
    http_respond_metrics(req, r->metrics);
}

static void handle_ping(router_t *r, http_req_t *req)
{
    http_respond(req, 204, NULL, NULL, 0); /* InfluxDB clients probe this */
}

/* ---- routes ------------------------------------------------------------- */

#define LABEL_VALUES_PREFIX "/api/v1/label/"
#define LABEL_VALUES_SUFFIX "/values"

/* The non-empty segment of `path` between prefix and suffix: its start,
 * with its length in *len; NULL when path is not prefix SEGMENT suffix. */
static const char *path_segment(const char *path, const char *prefix, const char *suffix,
                                size_t *len)
{
    size_t n = strlen(path), pl = strlen(prefix), sl = strlen(suffix);
    if (n <= pl + sl || strncmp(path, prefix, pl) != 0 || strcmp(path + n - sl, suffix) != 0)
        return NULL;
    *len = n - pl - sl;
    return path + pl;
}

/* <name> of /api/v1/label/<name>/values into name[cap]: 0, or -1 when the
 * path has no name or one too long. */
static int label_values_name(const char *path, char *name, size_t cap)
{
    size_t n;
    const char *seg = path_segment(path, LABEL_VALUES_PREFIX, LABEL_VALUES_SUFFIX, &n);
    if (!seg || n >= cap)
        return -1;
    memcpy(name, seg, n);
    name[n] = '\0';
    return 0;
}

static void handle_label_names(router_t *r, http_req_t *req)
{
    router_handle_labels(r, req, NULL);
}

static void handle_label_values(router_t *r, http_req_t *req)
{
    char name[ROUTER_MAX_LABEL_NAME];
    if (label_values_name(req->path, name, sizeof name) != 0) {
        http_respond_error(req, 400, "invalid label name");
        return;
    }
    router_handle_labels(r, req, name);
}

static void handle_query(router_t *r, http_req_t *req)
{
    router_handle_query(r, req, 0);
}

static void handle_query_range(router_t *r, http_req_t *req)
{
    router_handle_query(r, req, 1);
}

/* GET /api/v1/admin/users: every user's name, role, selector and which
 * credentials it has (never a hash). */
static void handle_users(router_t *r, http_req_t *req)
{
    const auth_db_t *db = auth_gate_db(r->auth);
    st_buf_t b;
    st_buf_init(&b);
    ST_BUF_LIT(&b, "{\"status\":\"success\",\"data\":[");
    for (size_t i = 0; db && i < auth_db_count(db); i++) {
        const auth_user_t *u = auth_db_user_at(db, i);
        const char *sel = auth_user_selector(u);
        if (i)
            st_buf_put_u8(&b, ',');
        ST_BUF_LIT(&b, "{\"name\":");
        st_json_str(&b, auth_user_name(u), strlen(auth_user_name(u)));
        ST_BUF_LIT(&b, ",\"role\":\"");
        st_buf_append(&b, auth_role_name(auth_user_role(u)),
                      strlen(auth_role_name(auth_user_role(u))));
        ST_BUF_LIT(&b, "\",\"selector\":");
        if (sel)
            st_json_str(&b, sel, strlen(sel));
        else
            ST_BUF_LIT(&b, "null");
        ST_BUF_LIT(&b, ",\"password\":");
        if (auth_user_has_password(u))
            ST_BUF_LIT(&b, "true");
        else
            ST_BUF_LIT(&b, "false");
        ST_BUF_LIT(&b, ",\"token\":");
        if (auth_user_has_token(u))
            ST_BUF_LIT(&b, "true}");
        else
            ST_BUF_LIT(&b, "false}");
    }
    ST_BUF_LIT(&b, "]}");
    respond_json(req, 200, &b);
}

/* Roles: R_OPEN needs no credential; R_METRICS is read or open by
 * [security] metrics_auth. CONFINES: the handler ANDs a confined user's
 * selector into what it reads or writes (router_read_confine, the write
 * filter, the query tree); a confined user gets 403 on the other routes. */
#define R_OPEN AUTH_ROLE_NONE
#define R_READ AUTH_ROLE_READ
#define R_WRITE AUTH_ROLE_WRITE
#define R_ADMIN AUTH_ROLE_ADMIN
#define R_METRICS (-1)
#define CONFINES 1

/* Any method; a handler that cares checks it. */
static const struct router_route {
    const char *path;   /* the exact path; with suffix: the prefix */
    const char *suffix; /* NULL, or: path SEGMENT suffix (path_segment) */
    void (*fn)(router_t *r, http_req_t *req);
    int role;     /* auth_role_t, or R_METRICS */
    int confines; /* CONFINES, or 0 */
} routes[] = {
    {"/write", NULL, router_handle_write, R_WRITE, CONFINES},
    {"/api/v2/write", NULL, router_handle_write, R_WRITE, CONFINES},
    {"/api/v1/export", NULL, router_handle_export, R_READ, CONFINES},
    {"/api/v1/series", NULL, router_handle_series, R_READ, CONFINES},
    {"/api/v1/labels", NULL, handle_label_names, R_READ, CONFINES},
    {LABEL_VALUES_PREFIX, LABEL_VALUES_SUFFIX, handle_label_values, R_READ, CONFINES},
    {"/health", NULL, handle_health, R_OPEN, CONFINES},
    {"/ready", NULL, handle_ready, R_OPEN, CONFINES},
    {"/metrics", NULL, handle_metrics, R_METRICS, 0},
    {"/cluster", NULL, handle_cluster, R_READ, 0},
    {"/ping", NULL, handle_ping, R_OPEN, CONFINES},
    {"/api/v1/query", NULL, handle_query, R_READ, CONFINES},
    {"/api/v1/query_range", NULL, handle_query_range, R_READ, CONFINES},
    {"/sql", NULL, router_handle_sql, R_READ, 0}, /* INSERT needs write: checked in router_sql */
    {"/api/v1/write", NULL, router_handle_promrw_write, R_WRITE, CONFINES},
    {"/api/v1/read", NULL, router_handle_promrw_read, R_READ, CONFINES},
    {"/federate", NULL, router_handle_federate, R_READ, CONFINES},
    {"/api/v1/import", NULL, router_handle_import, R_WRITE, CONFINES},
    {"/api/v1/import/prometheus", NULL, router_handle_import_prom, R_WRITE, CONFINES},
    {"/api/v1/import/csv", NULL, router_handle_import_csv, R_WRITE, CONFINES},
    {"/api/v1/export/csv", NULL, router_handle_export_csv, R_READ, CONFINES},
    {"/api/v1/status/buildinfo", NULL, router_handle_buildinfo, R_READ, CONFINES},
    {"/api/v1/status/tsdb", NULL, router_handle_tsdb_status, R_READ, CONFINES},
    {"/api/v1/metadata", NULL, router_handle_metadata, R_READ, CONFINES},
    {"/api/v1/query_exemplars", NULL, router_handle_exemplars, R_READ, CONFINES},
    {"/api/v1/format_query", NULL, router_handle_format_query, R_READ, CONFINES},
    {"/api/v1/rules", NULL, router_handle_rules, R_READ, CONFINES},
    {"/api/v1/alerts", NULL, router_handle_alerts, R_READ, CONFINES},
    {"/query", NULL, router_handle_influx_query, R_READ, CONFINES},
    {"/api/v1/admin/users", NULL, handle_users, R_ADMIN, 0},
    {"/api/v1/admin/tsdb/delete_series", NULL, router_handle_delete_series, R_ADMIN, 0},
    {"/api/v1/admin/tsdb/clean_tombstones", NULL, router_handle_clean_tombstones, R_ADMIN, 0},
    /* GET: read role; POST and DELETE ask the gate for admin in the handler */
    {"/api/v1/admin/rules", NULL, router_handle_admin_rules, R_READ, 0},
    {"/api/v1/admin/repair", NULL, router_handle_repair, R_ADMIN, 0},
    {"/api/v1/status/nodes", NULL, router_handle_nodes_status, R_READ, 0},
    {"/", NULL, router_handle_console, R_OPEN, CONFINES},
    {"/ui/", "", router_handle_console, R_OPEN, CONFINES}, /* /ui/<file> */
};

/* The route's handler, once the gate let req through (now or after a
 * password check on the thread pool). */
static void run_route(void *arg, const void *route, http_req_t *req)
{
    router_t *r = arg;
    const struct router_route *rt = route;
    const auth_user_t *u = auth_gate_user(req);
    if (u && !rt->confines && auth_user_selector(u))
        auth_gate_forbid(
            r->auth, req,
            "is confined to a selector; this endpoint cannot be confined, so it is refused");
    else
        rt->fn(r, req);
}

static void route(http_req_t *req, void *arg)
{
    router_t *r = arg;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct router_route *rt = &routes[i];
        size_t n;
        if (rt->suffix ? path_segment(req->path, rt->path, rt->suffix, &n) != NULL
                       : strcmp(req->path, rt->path) == 0) {
            int role = rt->role;
            if (role == R_METRICS)
                role = topo_security(r->topo)->metrics_auth ? R_READ : R_OPEN;
            if (auth_gate_check(r->auth, req, (auth_role_t)role, run_route, r, rt))
                run_route(r, rt, req);
            return;
        }
    }
    http_respond_error(req, 404, "not found");
}

/* ---- start, run, stop --------------------------------------------------- */

int router_server_load(const router_opts_t *o, router_server_t **out)
{
    *out = NULL;
    router_server_t *s = calloc(1, sizeof *s);
    if (!s) {
        fprintf(stderr, "strata-router: out of memory\n");
        return 1;
    }
    char err[1024];
    if (topo_load_file(o->config, &s->r.topo, err, sizeof err) != 0) {
        fprintf(stderr, "strata-router: %s\n", err);
        free(s);
        return 1;
    }
    /* --listen wins; else [router] listen (validated by topo, default 127.0.0.1:8086) */
    const char *listen = o->listen ? o->listen : topo_router(s->r.topo)->listen.addr;
    if (split_addr(listen, s->host, sizeof s->host, &s->port)) {
        fprintf(stderr, "strata-router: --listen must be HOST:PORT, got '%s'\n", listen);
        topo_destroy(s->r.topo);
        free(s);
        return 1;
    }
    s->listen = listen;
    /* the RESP door: --resp-listen, else [router] resp_listen, else off */
    const char *rl = o->resp_listen ? o->resp_listen : topo_router(s->r.topo)->resp_listen.addr;
    if (rl && split_addr(rl, s->resp_host, sizeof s->resp_host, &s->resp_port)) {
        fprintf(stderr, "strata-router: --resp-listen must be HOST:PORT, got '%s'\n", rl);
        topo_destroy(s->r.topo);
        free(s);
        return 1;
    }
    s->resp_listen = rl;
    /* --pg-listen wins; else [router] pg_listen; neither: no PostgreSQL door */
    s->pg_listen = o->pg_listen ? o->pg_listen : topo_router(s->r.topo)->pg_listen.addr;
    if (s->pg_listen && split_addr(s->pg_listen, s->pg_host, sizeof s->pg_host, &s->pg_port)) {
        fprintf(stderr, "strata-router: --pg-listen must be HOST:PORT, got '%s'\n", s->pg_listen);
        topo_destroy(s->r.topo);
        free(s);
        return 1;
    }
    *out = s;
    return 0;
}

int router_server_check(router_server_t *s)
{
    topo_print(s->r.topo, stdout);
    printf("router listen: %s\n", s->listen);
    if (s->resp_listen)
        printf("router resp_listen: %s\n", s->resp_listen);
    if (s->pg_listen)
        printf("router pg_listen: %s\n", s->pg_listen);
    topo_destroy(s->r.topo);
    free(s);
    return 0;
}

static int register_metrics(router_t *r)
{
    const struct {
        metric_counter_t **c;
        const char *name, *help;
    } counters[] = {
        {&r->lines_ok, "strata_router_lines_written_total", "Line-protocol lines accepted."},
        {&r->lines_bad, "strata_router_lines_rejected_total",
         "Line-protocol lines rejected (bad syntax, limits, older than retention)."},
        {&r->lines_too_old, "strata_router_lines_too_old_total",
         "Line-protocol lines rejected: timestamp older than the retention."},
        {&r->lines_too_far_future, "strata_router_lines_too_far_future_total",
         "Line-protocol lines rejected: timestamp further ahead than max_future."},
        {&r->write_busy, "strata_router_write_busy_total",
         "Writes answered 503 + Retry-After: a node's head was over head_max_mb."},
        {&r->write_refused, "strata_router_write_refused_total",
         "Writes answered 400: a node's cardinality limit refused some samples."},
        {&r->samples, "strata_router_samples_written_total", "Samples acknowledged by nodes."},
        {&r->write_503, "strata_router_write_unavailable_total",
         "Writes answered 503 (a shard missed its consistency)."},
        {&r->rpc_fail, "strata_router_rpc_failures_total",
         "Node RPCs that failed (unreachable, timeout, error)."},
        {&r->write_labels, "strata_router_write_pieces_with_labels_total",
         "Write pieces sent again with their labels: the node did not know some series "
         "references (it restarted, or another router's node took over)."},
        {&r->reads, "strata_router_reads_total", "Export, series and label requests."},
        {&r->q_pushed, "strata_router_query_pushed_total",
         "Pushed-down query parts sent to nodes (QUERY RPCs)."},
        {&r->q_raw, "strata_router_query_raw_selects_total",
         "Raw-sample selections fetched for queries (EXPORT RPCs)."},
        {&r->rw_requests, "strata_router_remote_write_requests_total",
         "Prometheus remote-write requests (POST /api/v1/write)."},
        {&r->rw_series, "strata_router_remote_write_series_total",
         "TimeSeries received by remote write."},
        {&r->rw_samples, "strata_router_remote_write_samples_total",
         "Samples of valid series received by remote write."},
        {&r->rw_bad_series, "strata_router_remote_write_series_rejected_total",
         "Remote-write series refused (labels, limits, older than retention)."},
        {&r->rw_bad_requests, "strata_router_remote_bad_requests_total",
         "Remote write/read requests refused whole (not snappy, bad protobuf, too large)."},
        {&r->rw_exemplars, "strata_router_remote_write_exemplars_ignored_total",
         "Exemplars received by remote write and not stored."},
        {&r->rw_metadata, "strata_router_remote_write_metadata_ignored_total",
         "Metric metadata entries received by remote write and not stored."},
        {&r->rw_histograms, "strata_router_remote_write_histograms_ignored_total",
         "Native histogram samples received by remote write and not stored."},
        {&r->rr_requests, "strata_router_remote_read_requests_total",
         "Prometheus remote-read requests (POST /api/v1/read)."},
        {&r->federate, "strata_router_federate_requests_total", "GET /federate requests."},
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        if (!(*counters[i].c =
                  metrics_counter(r->metrics, counters[i].name, counters[i].help, NULL)))
            return ST_ENOMEM;
    for (int l = PROMQL_LIMIT_NONE + 1; l < PROMQL_LIMIT_COUNT; l++)
        if (!(r->q_refused[l] = metrics_counter(
                  r->metrics, "strata_router_queries_refused_total",
                  "Queries and reads refused (422, or 503 on timeout), by the limit that "
                  "refused them (here or on a node).",
                  "limit", promql_limit_name((promql_limit_t)l), NULL)))
            return ST_ENOMEM;
    if (router_sql_metrics(r))
        return ST_ENOMEM;
    return router_limit_metrics(r);
}

/* One persistent, reconnecting client per node. */
static int create_clients(router_server_t *s)
{
    router_t *r = &s->r;
    uint32_t nn = topo_node_count(r->topo);
    rpc_identity_t me = {topo_cluster_name(r->topo), topo_fingerprint(r->topo), r->listen};
    for (uint32_t i = 0; i < nn; i++) {
        s->nodes[i] = (node_ctx_t){s, i};
        /* a connection opened during a partition gives up after
         * replica_timeout (not the client's 5 s default) and retries within
         * 1 s, so a healed node is seen up at once (as the nodes' peers) */
        int64_t rt = topo_replication(r->topo)->replica_timeout_ms;
        rpc_client_opts_t co = {.log = rpc_log,
                                .connect_timeout_ms = (unsigned)(rt > 0 && rt < 5000 ? rt : 5000),
                                .backoff_max_ms = 1000,
                                .on_state = on_state,
                                .state_arg = &s->nodes[i],
                                .ping_interval_ms =
                                    (unsigned)topo_replication(r->topo)->heartbeat_interval_ms,
                                .default_timeout_ms = (unsigned)r->timeout_ms,
                                .tls = s->tls.rpc_client,
                                .raw_loopback = 1,
                                .peer_node_id = topo_node_id(r->topo, i)};
        const topo_addr_t *a = topo_node_rpc(r->topo, i);
        int rc = rpc_client_create(r->loop, a->host, a->port, &me, &co, &r->clients[i]);
        if (rc) {
            st_error("cannot create RPC client", "node=%s err=\"%s\"", topo_node_id(r->topo, i),
                     st_strerror(rc));
            return 1;
        }
    }
    return 0;
}

static void on_closed(void *arg)
{
    (void)arg;
}

/* Once the HTTP server is closed (in-flight requests answered or past the
 * grace period), close the node clients; then the loop runs dry. */
static void on_http_closed(void *arg)
{
    router_t *r = arg;
    for (uint32_t i = 0; i < topo_node_count(r->topo); i++)
        rpc_client_close(r->clients[i], on_closed, NULL);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    router_server_t *s = sig->data;
    if (s->shutting_down++)
        return;
    st_info("shutting down", "signal=%d", signum);
    router_resp_close(s->resp);
    auth_gate_close(s->r.auth);
    http_server_close(s->r.http, ROUTER_HTTP_CLOSE_GRACE_MS, on_http_closed, &s->r);
    router_pg_close(s->pg);
    uv_timer_stop(&s->r.heartbeat);
    uv_close((uv_handle_t *)&s->r.heartbeat, NULL);
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    uv_close((uv_handle_t *)&s->sig_int, NULL);
    uv_close((uv_handle_t *)&s->sig_hup, NULL);
}

/* SIGHUP: new TLS sessions use the certificates on disk now; connections
 * already open keep theirs. A file that fails to load keeps the old one. */
static void on_sighup(uv_signal_t *sig, int signum)
{
    router_server_t *s = sig->data;
    char err[512];
    (void)signum;
    if (tls_set_reload(&s->tls, err, sizeof err) != 0)
        st_error("tls reload failed; keeping the previous certificates", "err=\"%s\"", err);
    else if (s->tls.listen || s->tls.rpc_client)
        st_info("tls certificates reloaded", "listen=%s", s->listen);
}

/* [security] TLS contexts; rpc_cert/rpc_key may name the process as {id} ("router"). */
static int load_tls(router_server_t *s)
{
    const topo_security_t *sec = topo_security(s->r.topo);
    char cert[TOPO_PATH_MAX + 16], key[TOPO_PATH_MAX + 16], err[512];
    if (topo_security_path(sec->rpc_cert, "router", cert, sizeof cert) ||
        topo_security_path(sec->rpc_key, "router", key, sizeof key)) {
        st_error("[security] rpc_cert/rpc_key too long", "listen=%s", s->listen);
        return 1;
    }
    tls_files_t f = {
        sec->tls_cert, sec->tls_key, sec->tls_client_ca, sec->rpc_tls ? sec->rpc_ca : NULL,
        cert,          key};
    if (tls_set_create(&f, 0, &s->tls, err, sizeof err) != 0) {
        st_error("cannot set up TLS", "err=\"%s\"", err);
        return 1;
    }
    return tls_set_metrics(&s->tls, s->r.metrics, "router") != 0;
}

int router_server_start(router_server_t *s)
{
    router_t *r = &s->r;
    signal(SIGPIPE, SIG_IGN);
    /* Threads for the CPU work of requests: one per CPU, at least 2 (unless
     * UV_THREADPOOL_SIZE is set). */
    net_thread_pool_size(1, 2);
    snprintf(r->listen, sizeof r->listen, "router:%s", s->listen);
    r->loop = uv_default_loop();
    r->timeout_ms = topo_router(r->topo)->request_timeout_ms;
    r->max_body = topo_router(r->topo)->max_body_bytes;
    uint32_t nn = topo_node_count(r->topo);
    r->clients = calloc(nn, sizeof *r->clients);
    s->nodes = calloc(nn, sizeof *s->nodes);
    if (!r->clients || !s->nodes || metrics_create(&r->metrics) || register_metrics(r) ||
        router_import_metrics(r) || router_console_metrics(r) || router_delete_metrics(r) ||
        router_rules_create(r) || router_rrepair_init(r)) {
        fprintf(stderr, "strata-router: out of memory\n");
        return 1;
    }
    /* the users file first: a bad one stops the router before it connects */
    char aerr[1024];
    int arc = auth_gate_create(r->loop, topo_security(r->topo)->users_file, r->metrics,
                               "strata-router", &r->auth, aerr, sizeof aerr);
    if (arc) {
        st_error("cannot load the users file", "err=\"%s\"",
                 arc == ST_ENOMEM ? "out of memory" : aerr);
        return 1;
    }
    if (load_tls(s) != 0 || create_clients(s) != 0)
        return 1;
    r->hints_held = calloc((size_t)nn * nn, sizeof *r->hints_held);
    r->stats_fresh = calloc(nn, 1);
    r->stats_inflight = calloc(nn, 1);
    uint64_t seed; /* series references: secret, this process's own */
    if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
        seed = (uint64_t)st_now_ms() * 0x9e3779b97f4a7c15u ^ (uint64_t)getpid();
    if (!r->hints_held || !r->stats_fresh || !r->stats_inflight ||
        wbatch_refs_create(seed, ROUTER_WRITE_REFS_MAX, &r->wrefs)) {
        fprintf(stderr, "strata-router: out of memory\n");
        return 1;
    }
    uv_timer_init(r->loop, &r->heartbeat);
    r->heartbeat.data = s;
    int64_t hb = topo_replication(r->topo)->heartbeat_interval_ms;
    if (hb < ROUTER_MIN_HEARTBEAT_MS)
        hb = ROUTER_MIN_HEARTBEAT_MS;
    uv_timer_start(&r->heartbeat, on_heartbeat, (uint64_t)hb, (uint64_t)hb);
    http_limits_t hl;
    http_limits_default(&hl);
    hl.max_body_bytes = r->max_body;
    /* issue 11: the whole request within request_timeout, idle keep-alive
     * connections closed after idle_timeout, request bodies buffered at
     * once under max_inflight_mb */
    hl.request_timeout_ms = (uint32_t)r->timeout_ms;
    hl.keepalive_timeout_ms = (uint32_t)topo_router(r->topo)->idle_timeout_ms;
    hl.max_inflight_bytes = (size_t)topo_router(r->topo)->max_inflight_bytes;
    int rc = http_server_create(r->loop, s->host, s->port, &hl, route, r, &r->http);
    if (rc) {
        st_error("cannot listen", "addr=%s err=\"%s\"", s->listen, st_strerror(rc));
        return 1;
    }
    http_server_metrics(r->http, r->metrics, "router");
    http_server_set_tls(r->http, s->tls.listen);
    if (s->resp_listen) {
        rc = router_resp_start(r, s->resp_host, s->resp_port, route, r, &s->resp);
        if (rc) {
            st_error("cannot listen (RESP)", "addr=%s err=\"%s\"", s->resp_listen, st_strerror(rc));
            return 1;
        }
        router_resp_set_tls(s->resp, s->tls.listen);
        st_info("RESP door open", "resp_listen=%s", s->resp_listen);
    }
    if (s->pg_listen && (rc = router_pg_create(r, s->pg_host, s->pg_port, &s->pg))) {
        st_error("cannot listen", "pg_listen=%s err=\"%s\"", s->pg_listen, st_strerror(rc));
        return 1;
    }
    if (s->pg)
        router_pg_set_tls(s->pg, s->tls.listen);
    uv_signal_init(r->loop, &s->sig_term);
    uv_signal_init(r->loop, &s->sig_int);
    s->sig_term.data = s->sig_int.data = s;
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    uv_signal_init(r->loop, &s->sig_hup);
    s->sig_hup.data = s;
    uv_signal_start(&s->sig_hup, on_sighup, SIGHUP);
    st_info("strata-router started",
            "listen=%s pg_listen=%s nodes=%u shards=%u fingerprint=%s version=%s", s->listen,
            s->pg_listen ? s->pg_listen : "off", nn, topo_shards(r->topo),
            topo_fingerprint_hex(r->topo), STRATA_VERSION);
    return 0;
}

void router_server_run(router_server_t *s)
{
    uv_run(s->r.loop, UV_RUN_DEFAULT);
}

int router_server_stop(router_server_t *s)
{
    router_t *r = &s->r;
    uv_loop_close(r->loop);
    auth_gate_destroy(r->auth);
    router_rules_destroy(r);
    metrics_destroy(r->metrics);
    tls_set_destroy(&s->tls);
    free(r->hints_held);
    free(r->stats_fresh);
    free(r->stats_inflight);
    wbatch_refs_destroy(r->wrefs);
    router_health_free(r);
    router_status_free(r);
    router_repair_free(r);
    router_rrepair_free(r);
    free(r->clients);
    free(s->nodes);
    st_info("strata-router stopped", "listen=%s", s->listen); /* s->listen may be in topo */
    topo_destroy(r->topo);
    free(s);
    return 0;
}

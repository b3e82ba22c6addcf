/*
 * strata-router — entry point: flags, cluster.ini, one RPC client per node,
 * the HTTP API, peer health from RPC state, clean shutdown on SIGTERM.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_util.h"
#include "router.h"
#include "st_err.h"
#include "st_text.h"
#include "st_log.h"
#include "strata.pb-c.h"

static router_t R;
static uv_signal_t sig_term, sig_int;
static int shutting_down;

typedef struct hb_ctx {
    router_t *r;
    uint32_t node;
} hb_ctx_t;

static void on_stats(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    hb_ctx_t *c = arg;
    router_t *r = c->r;
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
        strata__node_stats__free_unpacked(st, NULL);
    }
    /* a node that does not answer keeps its last known hint counts: the
     * hints are still on its disk */
    free(c);
}

static void on_heartbeat(uv_timer_t *t)
{
    router_t *r = t->data;
    uint32_t nn = topo_node_count(r->topo);
    for (uint32_t i = 0; i < nn; i++) {
        if (r->stats_inflight[i] || !router_node_up(r, i))
            continue;
        hb_ctx_t *c = malloc(sizeof *c);
        if (!c)
            continue;
        c->r = r;
        c->node = i;
        if (rpc_client_call(r->clients[i], RPC_STATS, NULL, 0, (unsigned)r->timeout_ms, on_stats,
                            c) == 0)
            r->stats_inflight[i] = 1;
        else
            free(c);
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: strata-router --config FILE [--listen HOST:PORT] [--check]\n"
               "                     [--log-level debug|info|warn|error]\n"
               "\n"
               "  --config FILE       cluster.ini (see docs/configuration.md)\n"
               "  --listen HOST:PORT  HTTP API address (default 127.0.0.1:8086)\n"
               "  --check             validate the config, print the topology, exit 0/1\n"
               "  --version, --help\n");
}

static void rpc_log(void *arg, int level, const char *msg, const char *kv)
{
    st_log(level, msg, "%s", kv ? kv : "");
}

static void on_state(void *arg, rpc_client_t *cli, rpc_client_state_t state, int err)
{
    uint32_t node = (uint32_t)(uintptr_t)arg;
    if (state == RPC_CLIENT_UP)
        st_info("node up", "node=%s", topo_node_id(R.topo, node));
    else if (state == RPC_CLIENT_DOWN)
        st_warn("node down", "node=%s err=\"%s\"", topo_node_id(R.topo, node), st_strerror(err));
}

static void respond_json(http_req_t *req, int status, st_buf_t *b)
{
    http_respond(req, status, "application/json", b->data, b->len);
    st_buf_deinit(b);
}

static void handle_cluster(http_req_t *req)
{
    st_buf_t b;
    st_buf_init(&b);
    char tmp[256];
    const topo_t *t = R.topo;
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
            held += R.hints_held[(size_t)i * topo_node_count(t) + j];
        k = snprintf(tmp, sizeof tmp,
                     ",\"state\":\"%s\",\"pending_rpcs\":%zu,\"hints_pending\":%llu,"
                     "\"hints_held\":%llu}",
                     router_node_state(&R, i), rpc_client_pending(R.clients[i]),
                     (unsigned long long)router_hints_for(&R, i), (unsigned long long)held);
        st_buf_append(&b, tmp, (size_t)k);
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
        ST_BUF_LIT(&b, "]}");
    }
    ST_BUF_LIT(&b, "]}");
    respond_json(req, 200, &b);
}

static void handle_ready(http_req_t *req)
{
    st_buf_t b;
    st_buf_init(&b);
    int missing = 0;
    char tmp[32];
    for (uint32_t s = 0; s < topo_shards(R.topo); s++) {
        uint32_t node = router_pick_replica(&R, s);
        if (router_node_up(&R, node))
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

static void handler(http_req_t *req, void *arg)
{
    const char *p = req->path;
    if (!strcmp(p, "/write") || !strcmp(p, "/api/v2/write")) {
        router_handle_write(&R, req);
    } else if (!strcmp(p, "/api/v1/export")) {
        router_handle_export(&R, req);
    } else if (!strcmp(p, "/api/v1/series")) {
        router_handle_series(&R, req);
    } else if (!strcmp(p, "/api/v1/labels")) {
        router_handle_labels(&R, req, NULL);
    } else if (!strncmp(p, "/api/v1/label/", 14) && strlen(p) > 21 &&
               !strcmp(p + strlen(p) - 7, "/values")) {
        size_t n = strlen(p) - 14 - 7;
        char name[1024];
        if (n == 0 || n >= sizeof name) {
            http_respond_error(req, 400, "invalid label name");
            return;
        }
        memcpy(name, p + 14, n);
        name[n] = '\0';
        router_handle_labels(&R, req, name);
    } else if (!strcmp(p, "/health")) {
        http_respond(req, 200, "text/plain; charset=utf-8", "ok\n", 3);
    } else if (!strcmp(p, "/ready")) {
        handle_ready(req);
    } else if (!strcmp(p, "/metrics")) {
        st_buf_t b;
        st_buf_init(&b);
        if (metrics_render(R.metrics, &b) == 0)
            http_respond(req, 200, METRICS_CONTENT_TYPE, b.data, b.len);
        else
            http_respond_error(req, 500, "cannot render metrics");
        st_buf_deinit(&b);
    } else if (!strcmp(p, "/cluster")) {
        handle_cluster(req);
    } else if (!strcmp(p, "/ping")) {
        http_respond(req, 204, NULL, NULL, 0); /* InfluxDB clients probe this */
    } else if (!strcmp(p, "/api/v1/query")) {
        router_handle_query(&R, req, 0);
    } else if (!strcmp(p, "/api/v1/query_range")) {
        router_handle_query(&R, req, 1);
    } else {
        http_respond_error(req, 404, "not found");
    }
}

static void on_closed(void *arg)
{
    (void)arg;
}

/* Once the HTTP server is closed (in-flight requests answered or past the
 * grace period), close the node clients; then the loop runs dry. */
static void on_http_closed(void *arg)
{
    for (uint32_t i = 0; i < topo_node_count(R.topo); i++)
        rpc_client_close(R.clients[i], on_closed, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    if (shutting_down++)
        return;
    st_info("shutting down", "signal=%d", signum);
    http_server_close(R.http, 5000, on_http_closed, NULL);
    uv_timer_stop(&R.heartbeat);
    uv_close((uv_handle_t *)&R.heartbeat, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
}

int main(int argc, char **argv)
{
    const char *config = NULL, *listen = "127.0.0.1:8086";
    int check = 0;
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"listen", required_argument, 0, 'L'},
                                         {"check", no_argument, 0, 'k'},
                                         {"log-level", required_argument, 0, 'l'},
                                         {"version", no_argument, 0, 'v'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'L':
            listen = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'l': {
            int lv = st_log_parse_level(optarg);
            if (lv < 0) {
                fprintf(stderr, "strata-router: unknown log level '%s'\n", optarg);
                return 2;
            }
            st_log_set_level(lv);
            break;
        }
        case 'v':
            printf("strata-router %s\n", STRATA_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!config || optind != argc) {
        fprintf(stderr, "strata-router: %s\n",
                config ? "unexpected argument" : "--config is required");
        usage(stderr);
        return 2;
    }
    char err[1024];
    if (topo_load_file(config, &R.topo, err, sizeof err) != 0) {
        fprintf(stderr, "strata-router: %s\n", err);
        return 1;
    }
    char host[256];
    const char *colon = strrchr(listen, ':');
    int port = colon ? atoi(colon + 1) : 0;
    if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host || port <= 0 ||
        port > 65535) {
        fprintf(stderr, "strata-router: --listen must be HOST:PORT, got '%s'\n", listen);
        return 1;
    }
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    if (check) {
        topo_print(R.topo, stdout);
        printf("router listen: %s\n", listen);
        topo_destroy(R.topo);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    if (!getenv("UV_THREADPOOL_SIZE")) {
        long nproc = sysconf(_SC_NPROCESSORS_ONLN);
        char tp[32];
        snprintf(tp, sizeof tp, "%ld", nproc < 2 ? 2 : nproc);
        setenv("UV_THREADPOOL_SIZE", tp, 1);
    }
    snprintf(R.listen, sizeof R.listen, "router:%s", listen);
    R.loop = uv_default_loop();
    R.timeout_ms = topo_router(R.topo)->request_timeout_ms;
    R.max_body = topo_router(R.topo)->max_body_bytes;
    if (metrics_create(&R.metrics)) {
        fprintf(stderr, "strata-router: out of memory\n");
        return 1;
    }
    metrics_t *m = R.metrics;
    R.lines_ok = metrics_counter(m, "strata_router_lines_written_total",
                                 "Line-protocol lines accepted.", NULL);
    R.lines_bad = metrics_counter(m, "strata_router_lines_rejected_total",
                                  "Line-protocol lines rejected (bad syntax or limits).", NULL);
    R.samples = metrics_counter(m, "strata_router_samples_written_total",
                                "Samples acknowledged by nodes.", NULL);
    R.write_503 = metrics_counter(m, "strata_router_write_unavailable_total",
                                  "Writes answered 503 (a shard missed its consistency).", NULL);
    R.rpc_fail = metrics_counter(m, "strata_router_rpc_failures_total",
                                 "Node RPCs that failed (unreachable, timeout, error).", NULL);
    R.reads =
        metrics_counter(m, "strata_router_reads_total", "Export, series and label requests.", NULL);
    R.q_pushed = metrics_counter(m, "strata_router_query_pushed_total",
                                 "Pushed-down query parts sent to nodes (QUERY RPCs).", NULL);
    R.q_raw = metrics_counter(m, "strata_router_query_raw_selects_total",
                              "Raw-sample selections fetched for queries (EXPORT RPCs).", NULL);
    uint32_t nn = topo_node_count(R.topo);
    R.clients = calloc(nn, sizeof *R.clients);
    rpc_identity_t me = {topo_cluster_name(R.topo), topo_fingerprint(R.topo), R.listen};
    for (uint32_t i = 0; i < nn; i++) {
        rpc_client_opts_t co = {.log = rpc_log,
                                .on_state = on_state,
                                .state_arg = (void *)(uintptr_t)i,
                                .ping_interval_ms =
                                    (unsigned)topo_replication(R.topo)->heartbeat_interval_ms,
                                .default_timeout_ms = (unsigned)R.timeout_ms};
        const topo_addr_t *a = topo_node_rpc(R.topo, i);
        int rc = rpc_client_create(R.loop, a->host, a->port, &me, &co, &R.clients[i]);
        if (rc) {
            st_error("cannot create RPC client", "node=%s err=\"%s\"", topo_node_id(R.topo, i),
                     st_strerror(rc));
            return 1;
        }
    }
    R.hints_held = calloc((size_t)nn * nn, sizeof *R.hints_held);
    R.stats_fresh = calloc(nn, 1);
    R.stats_inflight = calloc(nn, 1);
    if (!R.hints_held || !R.stats_fresh || !R.stats_inflight) {
        fprintf(stderr, "strata-router: out of memory\n");
        return 1;
    }
    uv_timer_init(R.loop, &R.heartbeat);
    R.heartbeat.data = &R;
    {
        int64_t hb = topo_replication(R.topo)->heartbeat_interval_ms;
        if (hb < 200)
            hb = 200;
        uv_timer_start(&R.heartbeat, on_heartbeat, (uint64_t)hb, (uint64_t)hb);
    }
    http_limits_t hl;
    http_limits_default(&hl);
    hl.max_body_bytes = R.max_body;
    int rc = http_server_create(R.loop, host, port, &hl, handler, NULL, &R.http);
    if (rc) {
        st_error("cannot listen", "addr=%s err=\"%s\"", listen, st_strerror(rc));
        return 1;
    }
    http_server_metrics(R.http, R.metrics, "router");
    uv_signal_init(R.loop, &sig_term);
    uv_signal_init(R.loop, &sig_int);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    st_info("strata-router started", "listen=%s nodes=%u shards=%u fingerprint=%s version=%s",
            listen, nn, topo_shards(R.topo), topo_fingerprint_hex(R.topo), STRATA_VERSION);
    uv_run(R.loop, UV_RUN_DEFAULT);
    uv_loop_close(R.loop);
    metrics_destroy(R.metrics);
    free(R.hints_held);
    free(R.stats_fresh);
    free(R.stats_inflight);
    free(R.clients);
    topo_destroy(R.topo);
    st_info("strata-router stopped", "listen=%s", listen);
    return 0;
}

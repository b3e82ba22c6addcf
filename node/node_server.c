/*
 * node_server — strata-node's start, run and stop (see node_server.h).
 *
 * Start order: config and node id (node_load), then the thread pool size,
 * the metrics, the data directory, one engine per local shard (the
 * [storage] memtable budget is per node, split over the local shards),
 * the RPC server (retrying while its own name does not resolve yet), the
 * HTTP server, replication, and last the signal handlers. A signal closes
 * the servers and the peer clients; the loop then runs dry once queued
 * engine jobs are done, and node_stop flushes the engines.
 */
#include "node_server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node_repair.h"
#include "node_repl.h"
#include "node_rules.h"
#include "net_listen.h"
#include "st_err.h"
#include "wire.h"
#include "st_file.h"
#include "st_log.h"

#define NODE_MIN_MEMTABLE_BYTES (1u << 20) /* per shard, whatever the split */
#define NODE_CLOSE_FLUSH_MS 5000           /* engine_close bound, split over the shards */
#define NODE_TIER_INTERVAL_MS 5000         /* downsampling pass: at most this far apart */
#define NODE_RPC_RESOLVE_ATTEMPTS 120      /* 1 s apart: how long to wait for our name */
#define NODE_HTTP_CLOSE_GRACE_MS 5000      /* in-flight requests on shutdown */

int node_check_file(const char *config)
{
    topo_t *t = NULL;
    char err[1024];
    if (topo_load_file(config, &t, err, sizeof err) != 0) {
        fprintf(stderr, "strata-node: %s\n", err);
        return 1;
    }
    topo_print(t, stdout);
    printf("this node: none given (--node-id picks one; the whole file was checked)\n");
    topo_destroy(t);
    return 0;
}

int node_load(const node_opts_t *o, node_t **out)
{
    *out = NULL;
    node_t *n = calloc(1, sizeof *n);
    if (!n) {
        fprintf(stderr, "strata-node: out of memory\n");
        return 1;
    }
    char err[1024];
    if (topo_load_file(o->config, &n->topo, err, sizeof err) != 0) {
        fprintf(stderr, "strata-node: %s\n", err);
        free(n);
        return 1;
    }
    char host[256];
    const char *id = o->node_id;
    if (!id) {
        if (gethostname(host, sizeof host) != 0) {
            fprintf(stderr, "strata-node: cannot read hostname; pass --node-id\n");
            topo_destroy(n->topo);
            free(n);
            return 1;
        }
        host[sizeof host - 1] = '\0';
        id = host;
    }
    n->self = topo_node_index(n->topo, id);
    if (n->self < 0) {
        fprintf(stderr, "strata-node: node id '%s' is not a [node] in %s (pass --node-id)\n", id,
                o->config);
        topo_destroy(n->topo);
        free(n);
        return 1;
    }
    n->node_id = strdup(id);
    n->data_dir = strdup(o->data_dir);
    if (!n->node_id || !n->data_dir) {
        fprintf(stderr, "strata-node: out of memory\n");
        node_stop(n);
        return 1;
    }
    *out = n;
    return 0;
}

int node_check(node_t *n)
{
    topo_print(n->topo, stdout);
    printf("this node: %s\n", n->node_id);
    node_stop(n); /* nothing started: frees only */
    return 0;
}

/* cluster.ini's wal_durability as the engine's WAL mode, one case each. */
static engine_wal_mode_t engine_wal_mode(topo_wal_durability_t d)
{
    switch (d) {
    case TOPO_WAL_EVERY_WRITE:
        return ENGINE_WAL_EVERY_WRITE;
    case TOPO_WAL_PERIODIC:
        return ENGINE_WAL_PERIODIC;
    case TOPO_WAL_OS_DEFAULT:
        return ENGINE_WAL_OS_DEFAULT;
    case TOPO_WAL_NONE:
        return ENGINE_WAL_NONE;
    }
    return ENGINE_WAL_EVERY_WRITE; /* topo_load accepts no other value */
}

/* The engines' failures and recoveries, one line each, into st_log. */
static void engine_log(void *arg, int level, const char *msg)
{
    (void)arg;
    st_log(level, "storage engine", "detail=\"%s\"", msg);
}

/* The [downsampling] tiers of a shard's engine, in <dir>/tier-<res ms>. */
static int open_tiers(node_t *n, uint32_t shard, const char *dir, const engine_opts_t *eo)
{
    const topo_tier_t *tt;
    size_t nt = topo_tiers(n->topo, &tt);
    if (!nt)
        return 0;
    engine_tier_spec_t spec[TOPO_TIERS_MAX];
    for (size_t i = 0; i < nt && i < TOPO_TIERS_MAX; i++)
        spec[i] = (engine_tier_spec_t){tt[i].age_ms, tt[i].res_ms};
    int rc = engine_tiers_open(n->engines[shard], dir, spec, nt, eo, NODE_TIER_INTERVAL_MS,
                               &n->tiers[shard]);
    if (rc)
        st_error("cannot open the downsampling tiers", "shard=%u dir=%s err=\"%s\" detail=\"%s\"",
                 shard, dir, st_strerror(rc), engine_last_error());
    return rc ? 1 : 0;
}

/*
 * One engine per shard placed here, in <data-dir>/shard-<n>, sharing one
 * budget built from [storage] (head memory, open files, series limits per
 * node); node_stop destroys it after the engines.
 */
static int open_engines(node_t *n, size_t *nlocal_out)
{
    const uint32_t *local;
    size_t nlocal = topo_node_shards(n->topo, (uint32_t)n->self, &local);
    const topo_storage_t *st = topo_storage(n->topo);
    engine_budget_opts_t bo = {
        .head_max_bytes = st->head_max_bytes,
        .max_open_files = st->max_open_files,
        .max_series = st->max_series,
        .max_new_series_per_hour = st->max_new_series_per_hour,
        .max_new_series_per_write = st->max_new_series_per_write,
    };
    if (engine_budget_create(&bo, &n->budget)) {
        st_error("cannot create the storage budget", "err=\"%s\"", st_strerror(ST_ENOMEM));
        return 1;
    }
    engine_opts_t eo;
    engine_opts_default(&eo);
    eo.wal_durability = engine_wal_mode(st->wal_durability);
    eo.wal_sync_interval_ms = st->wal_sync_interval_ms;
    eo.partition_ms = st->partition_ms;
    eo.retention_ms = st->retention_ms;
    eo.memtable_max_age_ms = st->memtable_max_age_ms;
    eo.memtable_max_bytes = st->memtable_max_bytes / (nlocal ? nlocal : 1);
    if (eo.memtable_max_bytes < NODE_MIN_MEMTABLE_BYTES)
        eo.memtable_max_bytes = NODE_MIN_MEMTABLE_BYTES;
    eo.budget = n->budget;
    eo.max_future_ms = st->max_future_ms;
    eo.head_max_partitions =
        st->head_max_partitions > UINT32_MAX ? UINT32_MAX : (uint32_t)st->head_max_partitions;
    /* the node must stop within 10 s: split the close bound over the shards */
    eo.close_max_ms = NODE_CLOSE_FLUSH_MS / (int64_t)(nlocal ? nlocal : 1);
    if (eo.close_max_ms < 100)
        eo.close_max_ms = 100;
    eo.log = engine_log;
    eo.log_arg = n;
    eo.key_labels = wire_labels_decode; /* node_write.c passes known series by key */
    /* [retention] METRIC = DURATION: honoured by reads and compaction too */
    size_t nret = topo_retention_overrides(n->topo);
    engine_metric_retention_t *mret = calloc(nret ? nret : 1, sizeof *mret);
    if (!mret) {
        st_error("cannot open shard", "err=\"%s\"", st_strerror(ST_ENOMEM));
        return 1;
    }
    for (size_t i = 0; i < nret; i++)
        topo_retention_override(n->topo, i, &mret[i].metric, &mret[i].ms);
    eo.metric_retention = mret;
    eo.n_metric_retention = nret;
    for (size_t i = 0; i < nlocal; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/shard-%u", n->data_dir, local[i]);
        int rc = engine_open(dir, &eo, &n->engines[local[i]]);
        if (rc) {
            st_error("cannot open shard", "shard=%u dir=%s err=\"%s\" detail=\"%s\"", local[i], dir,
                     st_strerror(rc), engine_last_error());
            free(mret);
            return 1;
        }
        if (engine_last_error()[0])
            st_warn("shard recovered with a warning", "shard=%u detail=\"%s\"", local[i],
                    engine_last_error());
        if (open_tiers(n, local[i], dir, &eo)) {
            free(mret);
            return 1;
        }
    }
    free(mret); /* the engines keep copies */
    *nlocal_out = nlocal;
    return 0;
}

/* --rpc-listen HOST:PORT (HOST may be [v6]) into *addr, host[] holding the
 * host; 0, or exit status 2 with a message when malformed. With a '[' the
 * text shown (in the message, as addr->addr) starts after it, as it always
 * has: a known quirk, kept so that messages do not change here. */
static int parse_rpc_listen(const char *s, topo_addr_t *addr, char *host, size_t hostcap)
{
    const char *colon = strrchr(s, ':');
    char *endp = NULL;
    long port = colon ? strtol(colon + 1, &endp, 10) : -1;
    size_t hl = colon ? (size_t)(colon - s) : 0;
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
        s++;
        hl -= 2;
    }
    if (!colon || !endp || *endp || port < 1 || port > 65535 || hl == 0 || hl >= hostcap) {
        fprintf(stderr, "strata-node: --rpc-listen: expected HOST:PORT, got '%s'\n", s);
        return 2;
    }
    memcpy(host, s, hl);
    host[hl] = '\0';
    *addr = (topo_addr_t){s, host, (uint16_t)port};
    return 0;
}

static void on_closed(void *arg)
{
    (void)arg;
}

static void on_signal(uv_signal_t *s, int signum)
{
    node_t *n = s->data;
    if (n->shutting_down++)
        return;
    st_info("shutting down", "signal=%d", signum);
    n->ready = 0;
    auth_gate_close(n->auth);
    if (n->http)
        http_server_close(n->http, NODE_HTTP_CLOSE_GRACE_MS, on_closed, NULL);
    n->http = NULL;
    if (n->rpc)
        rpc_server_close(n->rpc, on_closed, NULL);
    n->rpc = NULL;
    node_repl_shutdown(n->repl);
    node_rules_shutdown(n->rules);
    node_repair_shutdown(n->repair);
    uv_close((uv_handle_t *)&n->sig_term, NULL);
    uv_close((uv_handle_t *)&n->sig_int, NULL);
    uv_close((uv_handle_t *)&n->sig_hup, NULL);
}

/* SIGHUP: new TLS sessions use the certificates on disk now; connections
 * already open keep theirs. A file that fails to load keeps the old one. */
static void on_sighup(uv_signal_t *s, int signum)
{
    node_t *n = s->data;
    char err[512];
    (void)signum;
    if (tls_set_reload(&n->tls, err, sizeof err) != 0)
        st_error("tls reload failed; keeping the previous certificates", "err=\"%s\"", err);
    else if (n->tls.listen || n->tls.rpc_server)
        st_info("tls certificates reloaded", "node=%s", n->node_id);
}

/* [security] TLS contexts; rpc_cert/rpc_key may name the node as {id}. */
static int load_tls(node_t *n)
{
    const topo_security_t *sec = topo_security(n->topo);
    char cert[TOPO_PATH_MAX + 256], key[TOPO_PATH_MAX + 256], err[512];
    if (topo_security_path(sec->rpc_cert, n->node_id, cert, sizeof cert) ||
        topo_security_path(sec->rpc_key, n->node_id, key, sizeof key)) {
        st_error("[security] rpc_cert/rpc_key too long", "node=%s", n->node_id);
        return 1;
    }
    tls_files_t f = {
        sec->tls_cert, sec->tls_key, sec->tls_client_ca, sec->rpc_tls ? sec->rpc_ca : NULL,
        cert,          key};
    if (tls_set_create(&f, 1, &n->tls, err, sizeof err) != 0) {
        st_error("cannot set up TLS", "err=\"%s\"", err);
        return 1;
    }
    if (tls_set_metrics(&n->tls, n->metrics, "node_http") != 0)
        return 1;
    if (sec->rpc_tls)
        st_info("rpc mutual TLS on", "node=%s cert=%s ca=%s", n->node_id, cert, sec->rpc_ca);
    else
        st_warn("rpc is plaintext and unauthenticated: anyone who reaches the RPC port can "
                "read and write shards; set [security] rpc_tls = on",
                "node=%s", n->node_id);
    return 0;
}

/* The RPC server on ra. In Kubernetes a pod's own DNS name
 * (strata-node-0.strata-node) can appear a little after the pod starts:
 * wait for it (bounded) rather than exit and crash-loop. */
static int listen_rpc(node_t *n, const topo_addr_t *ra, const rpc_identity_t *me)
{
    /* issue 11: a started frame completes within rpc_frame_timeout; the
     * connections' receive buffers share rpc_inflight_max_mb */
    const topo_replication_t *rp = topo_replication(n->topo);
    int rc = rpc_budget_create(rp->rpc_inflight_max_bytes, &n->rpc_budget);
    if (rc)
        return rc;
    rpc_server_opts_t ro = {.log = node_rpc_log,
                            .frame_timeout_ms = (unsigned)rp->rpc_frame_timeout_ms,
                            .budget = n->rpc_budget,
                            .raw_loopback = 1,
                            .tls = n->tls.rpc_server};
    for (int attempt = 0;; attempt++) {
        rc = rpc_server_create(n->loop, ra->host, ra->port, me, &ro, node_rpc_handler, n, &n->rpc);
        if (rc != ST_EINVAL || attempt >= NODE_RPC_RESOLVE_ATTEMPTS || n->shutting_down)
            break;
        if (attempt % 10 == 0)
            st_warn("rpc address does not resolve yet; retrying", "addr=%s attempt=%d", ra->addr,
                    attempt + 1);
        uv_run(n->loop, UV_RUN_NOWAIT); /* let a half-made handle close */
        sleep(1);
    }
    if (rc)
        st_error("cannot listen for RPC", "addr=%s err=\"%s\"", ra->addr, st_strerror(rc));
    else
        rpc_server_metrics(n->rpc, n->metrics, "node");
    return rc;
}

int node_start(node_t *n, const node_opts_t *o)
{
    signal(SIGPIPE, SIG_IGN);
    /* The thread pool runs every engine call: at least 4 threads, 2 per CPU
     * (unless UV_THREADPOOL_SIZE is set). */
    net_thread_pool_size(2, 4);
    n->loop = uv_default_loop();
    n->engines = calloc(topo_shards(n->topo), sizeof *n->engines);
    n->tiers = calloc(topo_shards(n->topo), sizeof *n->tiers);
    if (!n->engines || !n->tiers || metrics_create(&n->metrics) || node_metrics_register(n)) {
        fprintf(stderr, "strata-node: out of memory\n");
        return 1;
    }
    /* the users file first: a bad one stops the node before it opens anything */
    char aerr[1024];
    int arc = auth_gate_create(n->loop, topo_security(n->topo)->users_file, n->metrics,
                               "strata-node", &n->auth, aerr, sizeof aerr);
    if (arc) {
        st_error("cannot load the users file", "err=\"%s\"",
                 arc == ST_ENOMEM ? "out of memory" : aerr);
        return 1;
    }
    if (st_mkdir_p(n->data_dir) != 0) {
        st_error("cannot create data dir", "dir=%s err=\"%s\"", n->data_dir, strerror(errno));
        return 1;
    }
    int fresh = node_repair_fresh_dir(n->data_dir); /* before the shard dirs exist */
    size_t nlocal;
    if (open_engines(n, &nlocal) != 0)
        return 1;
    const topo_addr_t *ra = topo_node_rpc(n->topo, (uint32_t)n->self);
    topo_addr_t bind_addr;
    char bind_host[256];
    if (o->rpc_listen) {
        int bad = parse_rpc_listen(o->rpc_listen, &bind_addr, bind_host, sizeof bind_host);
        if (bad)
            return bad;
        ra = &bind_addr;
    }
    rpc_identity_t me = {topo_cluster_name(n->topo), topo_fingerprint(n->topo), n->node_id};
    if (load_tls(n) != 0 || listen_rpc(n, ra, &me) != 0)
        return 1;
    const topo_addr_t *ha = topo_node_http(n->topo, (uint32_t)n->self);
    http_limits_t hl;
    http_limits_default(&hl);
    int rc = http_server_create(n->loop, ha->host, ha->port, &hl, node_http_handler, n, &n->http);
    if (rc) {
        st_error("cannot listen for HTTP", "addr=%s err=\"%s\"", ha->addr, st_strerror(rc));
        return 1;
    }
    http_server_metrics(n->http, n->metrics, "node");
    http_server_set_tls(n->http, n->tls.listen);
    if ((rc = node_rules_create(n, &n->rules)) != 0) {
        st_error("cannot start the compaction rules", "err=\"%s\"", st_strerror(rc));
        return 1;
    }
    if ((rc = node_repl_create(n, &me, &n->repl)) != 0) {
        st_error("cannot start replication", "err=\"%s\"", st_strerror(rc));
        return 1;
    }
    node_repl_set_hooks(n->repl, node_rules_observe, node_rules_peer_up);
    if ((rc = node_repair_create(n, &me, fresh, &n->repair)) != 0) {
        st_error("cannot start repair", "err=\"%s\"", st_strerror(rc));
        return 1;
    }
    uv_signal_init(n->loop, &n->sig_term);
    uv_signal_init(n->loop, &n->sig_int);
    n->sig_term.data = n->sig_int.data = n;
    uv_signal_start(&n->sig_term, on_signal, SIGTERM);
    uv_signal_start(&n->sig_int, on_signal, SIGINT);
    uv_signal_init(n->loop, &n->sig_hup);
    n->sig_hup.data = n;
    uv_signal_start(&n->sig_hup, on_sighup, SIGHUP);
    n->ready = 1;
    st_info("strata-node started",
            "node=%s rpc=%s http=%s shards=%zu data_dir=%s fingerprint=%016llx version=%s",
            n->node_id, ra->addr, ha->addr, nlocal, n->data_dir,
            (unsigned long long)topo_fingerprint(n->topo), STRATA_VERSION);
    return 0;
}

void node_run(node_t *n)
{
    uv_run(n->loop, UV_RUN_DEFAULT);
}

int node_stop(node_t *n)
{
    int failed = 0, rc;
    node_repair_destroy(n->repair); /* its thread writes into the engines */
    n->repair = NULL;
    for (uint32_t s = 0; n->tiers && s < topo_shards(n->topo); s++)
        engine_tiers_close(n->tiers[s]); /* before the engines they read */
    for (uint32_t s = 0; n->engines && s < topo_shards(n->topo); s++) {
        if (n->engines[s] && (rc = engine_close(n->engines[s])) != 0) {
            st_error("flush on shutdown failed", "shard=%d err=\"%s\" detail=\"%s\"", (int)s,
                     st_strerror(rc), engine_last_error());
            failed = 1;
        }
    }
    engine_budget_destroy(n->budget); /* after every engine */
    node_repl_destroy(n->repl);
    node_rules_destroy(n->rules);
    if (n->loop)
        uv_loop_close(n->loop);
    rpc_budget_destroy(n->rpc_budget);
    tls_set_destroy(&n->tls);
    auth_gate_destroy(n->auth);
    metrics_destroy(n->metrics);
    free(n->engines);
    free(n->tiers);
    free(n->data_dir);
    topo_destroy(n->topo);
    if (n->loop)
        st_info("strata-node stopped", "node=%s clean=%d", n->node_id, !failed);
    free(n->node_id);
    free(n);
    return failed;
}

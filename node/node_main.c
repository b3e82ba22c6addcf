/*
 * strata-node — entry point: flags, cluster.ini, one engine per local
 * shard, the RPC and HTTP servers on one libuv loop, and a clean shutdown
 * on SIGTERM/SIGINT (stop accepting, let in-flight engine jobs finish,
 * flush every engine, exit 0).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node.h"
#include "node_repl.h"
#include "st_err.h"
#include "st_log.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: strata-node --config FILE [--node-id ID] [--data-dir DIR] [--check]\n"
               "                   [--log-level debug|info|warn|error]\n"
               "\n"
               "  --config FILE     cluster.ini (see docs/configuration.md)\n"
               "  --node-id ID      this node's [node \"ID\"] section (default: hostname)\n"
               "  --data-dir DIR    where the shards' data lives (default: ./strata-data)\n"
               "  --check           validate the config, print the topology, exit 0/1\n"
               "  --rpc-listen HOST:PORT  bind RPC here instead of the [node] rpc address\n"
               "                    (which stays the address peers and routers dial)\n"
               "  --version, --help\n");
}

static void rpc_log(void *arg, int level, const char *msg, const char *kv)
{
    st_log(level, msg, "%s", kv ? kv : "");
}

static node_t N;

/* mkdir -p */
static int make_dirs(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        buf[i] = c;
    }
    return 0;
}
static uv_signal_t sig_term, sig_int;
static int shutting_down;

static void on_closed(void *arg)
{
    (void)arg;
}

static void on_signal(uv_signal_t *s, int signum)
{
    if (shutting_down++)
        return;
    st_info("shutting down", "signal=%d", signum);
    N.ready = 0;
    if (N.http)
        http_server_close(N.http, 5000, on_closed, NULL);
    N.http = NULL;
    if (N.rpc)
        rpc_server_close(N.rpc, on_closed, NULL);
    N.rpc = NULL;
    node_repl_shutdown(N.repl);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
}

int main(int argc, char **argv)
{
    const char *config = NULL, *node_id = NULL, *data_dir = "./strata-data";
    const char *rpc_listen = NULL;
    int check = 0;
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"rpc-listen", required_argument, 0, 'r'},
                                         {"node-id", required_argument, 0, 'n'},
                                         {"data-dir", required_argument, 0, 'd'},
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
        case 'n':
            node_id = optarg;
            break;
        case 'd':
            data_dir = optarg;
            break;
        case 'r':
            rpc_listen = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'l': {
            int lv = st_log_parse_level(optarg);
            if (lv < 0) {
                fprintf(stderr, "strata-node: unknown log level '%s'\n", optarg);
                return 2;
            }
            st_log_set_level(lv);
            break;
        }
        case 'v':
            printf("strata-node %s\n", STRATA_VERSION);
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
        fprintf(stderr, "strata-node: %s\n",
                config ? "unexpected argument" : "--config is required");
        usage(stderr);
        return 2;
    }
    char err[1024];
    topo_t *topo;
    if (topo_load_file(config, &topo, err, sizeof err) != 0) {
        fprintf(stderr, "strata-node: %s\n", err);
        return 1;
    }
    char host[256];
    if (!node_id) {
        if (gethostname(host, sizeof host) != 0) {
            fprintf(stderr, "strata-node: cannot read hostname; pass --node-id\n");
            return 1;
        }
        host[sizeof host - 1] = '\0';
        node_id = host;
    }
    int self = topo_node_index(topo, node_id);
    if (self < 0) {
        fprintf(stderr, "strata-node: node id '%s' is not a [node] in %s (pass --node-id)\n",
                node_id, config);
        return 1;
    }
    if (check) {
        topo_print(topo, stdout);
        printf("this node: %s\n", node_id);
        topo_destroy(topo);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    if (!getenv("UV_THREADPOOL_SIZE")) {
        long nproc = sysconf(_SC_NPROCESSORS_ONLN);
        char tp[32];
        snprintf(tp, sizeof tp, "%ld", nproc * 2 < 4 ? 4 : nproc * 2);
        setenv("UV_THREADPOOL_SIZE", tp, 1);
    }

    N.topo = topo;
    N.self = self;
    N.data_dir = strdup(data_dir);
    N.loop = uv_default_loop();
    int nshards = (int)topo_shards(topo);
    N.engines = calloc((size_t)nshards, sizeof *N.engines);
    if (metrics_create(&N.metrics) || node_metrics_register(&N)) {
        fprintf(stderr, "strata-node: out of memory\n");
        return 1;
    }
    if (make_dirs(data_dir) != 0) {
        st_error("cannot create data dir", "dir=%s err=\"%s\"", data_dir, strerror(errno));
        return 1;
    }
    /* engines: the [storage] budget is per node, split over the local shards */
    const uint32_t *local;
    size_t nlocal = topo_node_shards(topo, (uint32_t)self, &local);
    const topo_storage_t *st = topo_storage(topo);
    engine_opts_t eo;
    engine_opts_default(&eo);
    eo.wal_durability = (engine_wal_mode_t)st->wal_durability;
    eo.wal_sync_interval_ms = st->wal_sync_interval_ms;
    eo.partition_ms = st->partition_ms;
    eo.retention_ms = st->retention_ms;
    eo.memtable_max_age_ms = st->memtable_max_age_ms;
    eo.memtable_max_bytes = st->memtable_max_bytes / (nlocal ? nlocal : 1);
    if (eo.memtable_max_bytes < (1u << 20))
        eo.memtable_max_bytes = 1u << 20;
    for (size_t i = 0; i < nlocal; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/shard-%u", data_dir, local[i]);
        int rc = engine_open(dir, &eo, &N.engines[local[i]]);
        if (rc) {
            st_error("cannot open shard", "shard=%u dir=%s err=\"%s\" detail=\"%s\"", local[i], dir,
                     st_strerror(rc), engine_last_error());
            return 1;
        }
        if (engine_last_error()[0])
            st_warn("shard recovered with a warning", "shard=%u detail=\"%s\"", local[i],
                    engine_last_error());
    }
    /* servers */
    const topo_addr_t *ra = topo_node_rpc(topo, (uint32_t)self);
    topo_addr_t bind_addr;
    char bind_host[256];
    if (rpc_listen) {
        const char *colon = strrchr(rpc_listen, ':');
        char *endp = NULL;
        long port = colon ? strtol(colon + 1, &endp, 10) : -1;
        size_t hl = colon ? (size_t)(colon - rpc_listen) : 0;
        if (hl >= 2 && rpc_listen[0] == '[' && rpc_listen[hl - 1] == ']') {
            rpc_listen++;
            hl -= 2;
        }
        if (!colon || !endp || *endp || port < 1 || port > 65535 || hl == 0 ||
            hl >= sizeof bind_host) {
            fprintf(stderr, "strata-node: --rpc-listen: expected HOST:PORT, got '%s'\n",
                    rpc_listen);
            return 2;
        }
        memcpy(bind_host, rpc_listen, hl);
        bind_host[hl] = '\0';
        bind_addr = (topo_addr_t){rpc_listen, bind_host, (uint16_t)port};
        ra = &bind_addr;
    }
    const topo_addr_t *ha = topo_node_http(topo, (uint32_t)self);
    rpc_identity_t me = {topo_cluster_name(topo), topo_fingerprint(topo), node_id};
    rpc_server_opts_t ro = {.log = rpc_log};
    /* In Kubernetes a pod's own DNS name (strata-node-0.strata-node) can
     * appear a little after the pod starts: wait for it (bounded) rather
     * than exit and crash-loop. */
    int rc;
    for (int attempt = 0;; attempt++) {
        rc = rpc_server_create(N.loop, ra->host, ra->port, &me, &ro, node_rpc_handler, &N, &N.rpc);
        if (rc != ST_EINVAL || attempt >= 120 || shutting_down)
            break;
        if (attempt % 10 == 0)
            st_warn("rpc address does not resolve yet; retrying", "addr=%s attempt=%d", ra->addr,
                    attempt + 1);
        uv_run(N.loop, UV_RUN_NOWAIT); /* let a half-made handle close */
        sleep(1);
    }
    if (rc) {
        st_error("cannot listen for RPC", "addr=%s err=\"%s\"", ra->addr, st_strerror(rc));
        return 1;
    }
    http_limits_t hl;
    http_limits_default(&hl);
    rc = http_server_create(N.loop, ha->host, ha->port, &hl, node_http_handler, &N, &N.http);
    if (rc) {
        st_error("cannot listen for HTTP", "addr=%s err=\"%s\"", ha->addr, st_strerror(rc));
        return 1;
    }
    http_server_metrics(N.http, N.metrics, "node");
    if ((rc = node_repl_create(&N, &me, &N.repl)) != 0) {
        st_error("cannot start replication", "err=\"%s\"", st_strerror(rc));
        return 1;
    }
    uv_signal_init(N.loop, &sig_term);
    uv_signal_init(N.loop, &sig_int);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    N.ready = 1;
    st_info("strata-node started",
            "node=%s rpc=%s http=%s shards=%zu data_dir=%s fingerprint=%016llx version=%s", node_id,
            ra->addr, ha->addr, nlocal, data_dir, (unsigned long long)topo_fingerprint(topo),
            STRATA_VERSION);
    uv_run(N.loop, UV_RUN_DEFAULT);
    /* the loop ends when servers are closed and queued engine jobs are done */
    int failed = 0;
    for (int s = 0; s < nshards; s++) {
        if (N.engines[s] && (rc = engine_close(N.engines[s])) != 0) {
            st_error("flush on shutdown failed", "shard=%d err=\"%s\" detail=\"%s\"", s,
                     st_strerror(rc), engine_last_error());
            failed = 1;
        }
    }
    node_repl_destroy(N.repl);
    uv_loop_close(N.loop);
    metrics_destroy(N.metrics);
    free(N.engines);
    free(N.data_dir);
    topo_destroy(topo);
    st_info("strata-node stopped", "node=%s clean=%d", node_id, !failed);
    return failed;
}

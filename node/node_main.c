/*
 * strata-node — entry point: the command line (one st_opts table), then
 * load, start, run and stop (node_server.c).
 */
#include "node_server.h"
#include "st_mem.h"
#include "st_opts.h"

int main(int argc, char **argv)
{
    st_mem_tune(); /* before any thread: see st_mem.h */
    node_opts_t o = {.data_dir = "./strata-data"};
    const st_opt_t opts[] = {
        ST_OPT_REQUIRED("config", "FILE", "cluster.ini (see docs/configuration.md)", &o.config),
        ST_OPT_STR("node-id", "ID", "this node's [node \"ID\"] section (default: hostname)",
                   &o.node_id),
        ST_OPT_STR("data-dir", "DIR", "where the shards' data lives (default: ./strata-data)",
                   &o.data_dir),
        ST_OPT_FLAG("check",
                    "validate the config, print the topology, exit 0/1\n"
                    "(without --node-id: the whole file, no node looked up)",
                    &o.check),
        ST_OPT_STR("rpc-listen", "HOST:PORT",
                   "bind RPC here instead of the [node] rpc address\n"
                   "(which stays the address peers and routers dial)",
                   &o.rpc_listen),
    };
    const st_opts_spec_t spec = {
        .prog = "strata-node",
        .version = STRATA_VERSION,
        .synopsis = "--config FILE [--node-id ID] [--data-dir DIR] [--check]",
        .help_col = 20,
        .opts = opts,
        .nopts = sizeof opts / sizeof opts[0],
    };
    int rc = st_opts_parse(&spec, argc, argv);
    if (rc != ST_OPTS_RUN)
        return rc;
    if (o.check && !o.node_id)
        return node_check_file(o.config);
    node_t *n;
    if ((rc = node_load(&o, &n)) != 0)
        return rc;
    if (o.check)
        return node_check(n);
    if ((rc = node_start(n, &o)) != 0)
        return rc;
    node_run(n);
    return node_stop(n);
}

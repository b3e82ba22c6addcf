/*
 * strata-router — entry point: the command line (one st_opts table), then
 * load, start, run and stop (router_server.c).
 */
#include "router_server.h"
#include "st_mem.h"
#include "st_opts.h"

int main(int argc, char **argv)
{
    st_mem_tune();         /* before any thread: see st_mem.h */
    router_opts_t o = {0}; /* no --listen: [router] listen of the file */
    const st_opt_t opts[] = {
        ST_OPT_REQUIRED("config", "FILE", "cluster.ini (see docs/configuration.md)", &o.config),
        ST_OPT_STR("listen", "HOST:PORT",
                   "HTTP API address (default [router] listen or 127.0.0.1:8086)", &o.listen),
        ST_OPT_STR("resp-listen", "HOST:PORT",
                   "RESP (valkey-timeseries TS.*) address (default [router] resp_listen; off when "
                   "neither is set)",
                   &o.resp_listen),
        ST_OPT_STR("pg-listen", "HOST:PORT",
                   "PostgreSQL wire protocol address (default [router] pg_listen; off when unset)",
                   &o.pg_listen),
        ST_OPT_FLAG("check", "validate the config, print the topology, exit 0/1", &o.check),
    };
    const st_opts_spec_t spec = {
        .prog = "strata-router",
        .version = STRATA_VERSION,
        .synopsis = "--config FILE [--listen HOST:PORT] [--resp-listen HOST:PORT] [--pg-listen "
                    "HOST:PORT] [--check]",
        .help_col = 22,
        .opts = opts,
        .nopts = sizeof opts / sizeof opts[0],
    };
    int rc = st_opts_parse(&spec, argc, argv);
    if (rc != ST_OPTS_RUN)
        return rc;
    router_server_t *s;
    if ((rc = router_server_load(&o, &s)) != 0)
        return rc;
    if (o.check)
        return router_server_check(s);
    if ((rc = router_server_start(s)) != 0)
        return rc;
    router_server_run(s);
    return router_server_stop(s);
}

/*
 * router_server — strata-router's life cycle: load cluster.ini and check
 * --listen, create one RPC client per node, start the heartbeat (STATS per
 * node: hint counts for /cluster) and the HTTP API on one libuv loop, run
 * until SIGTERM/SIGINT, then stop cleanly (HTTP first, in-flight requests
 * answered or past the grace period, then the node clients).
 *
 * Each step that fails says why (stderr before the loop exists, st_log
 * after) and returns the process exit status, so main() only passes it on.
 */
#ifndef ROUTER_SERVER_H
#define ROUTER_SERVER_H

typedef struct router_server router_server_t;

/* What the command line asks for (router_main.c fills it). */
typedef struct router_opts {
    const char *config;      /* cluster.ini */
    const char *listen;      /* HOST:PORT of the HTTP API; NULL: [router] listen */
    const char *resp_listen; /* HOST:PORT of the RESP door; NULL: [router] resp_listen */
    int check;               /* validate, print the topology, exit */
    const char *pg_listen;   /* HOST:PORT of the PostgreSQL door; NULL: [router] pg_listen */
} router_opts_t;

/* Load the config and check --listen (else the file's [router] listen): 0 with *out, or
 * exit status 1. */
int router_server_load(const router_opts_t *o, router_server_t **out);
/* --check: print the topology and the listen address, free s; exit status 0. */
int router_server_check(router_server_t *s);
/* Create the node clients, the heartbeat, the HTTP server and the signal
 * handlers: 0, or exit status 1. */
int router_server_start(router_server_t *s);
/* Run the loop until a signal has closed the servers and the clients. */
void router_server_run(router_server_t *s);
/* Free everything; exit status 0. */
int router_server_stop(router_server_t *s);

#endif

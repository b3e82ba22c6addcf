/*
 * node_server — strata-node's life cycle: load cluster.ini and find this
 * node in it, open one engine per local shard, start the RPC and HTTP
 * servers and replication on one libuv loop, run until SIGTERM/SIGINT,
 * then stop cleanly (stop accepting, let in-flight engine jobs finish,
 * flush every engine).
 *
 * Each step that fails says why (stderr before the loop exists, st_log
 * after) and returns the process exit status, so main() only passes it on.
 */
#ifndef NODE_SERVER_H
#define NODE_SERVER_H

#include "node.h"

/* What the command line asks for (node_main.c fills it). */
typedef struct node_opts {
    const char *config;     /* cluster.ini */
    const char *node_id;    /* NULL: the hostname */
    const char *data_dir;   /* shards' data */
    const char *rpc_listen; /* HOST:PORT to bind RPC on; NULL: the [node] rpc address */
    int check;              /* validate, print the topology, exit (no node id: the whole file) */
} node_opts_t;

/* Load the config and find this node in it: 0 with *out, or exit status 1. */
int node_load(const node_opts_t *o, node_t **out);
/* --check without --node-id: load and check the whole file, print the topology; exit status 0/1. */
int node_check_file(const char *config);
/* --check: print the topology and this node's id, free n; exit status 0. */
int node_check(node_t *n);
/* Open the engines, start the servers, replication and signal handlers:
 * 0, or the exit status (1; 2 for a malformed --rpc-listen). */
int node_start(node_t *n, const node_opts_t *o);
/* Run the loop until a signal has closed the servers and jobs are done. */
void node_run(node_t *n);
/* Flush and close the engines, free n: exit status 0, or 1 if a flush failed. */
int node_stop(node_t *n);

#endif

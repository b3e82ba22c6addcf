/*
 * node_write — the node's local write path: WriteRequests (one shard's
 * batch each, as repl_scan finds them in a NodeWrite) into this node's
 * engines, and the NodeWriteResult that answers them.
 *
 * Two callers: node_rpc.c for writes this node does not coordinate
 * (forwarded by a coordinator, or RF = 1) and node_repl.c for the
 * coordinator's own copy of a coordinated write.
 */
#ifndef NODE_WRITE_H
#define NODE_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"
#include "repl.h"

/* A shard's local write outcome. */
typedef struct node_shard_result {
    uint32_t shard;
    int code; /* 0 or ST_E* */
    uint64_t samples;
    char msg[400];
} node_shard_result_t;

/* Write the WriteRequests `e[0..ne)` into this node's engines (thread pool
 * only: it does disk I/O). res[i] gets entry i's outcome. Returns 0 or
 * ST_ENOMEM (then res is unspecified). */
int node_write_local(node_t *n, const repl_entry_t *e, size_t ne, node_shard_result_t *res);

/* Pack res[0..n) as a NodeWriteResult into out. */
int node_pack_write_result(const node_shard_result_t *res, size_t n, st_buf_t *out);

#endif

/*
 * node_repl — the node's side of replication: coordinating a write across
 * a shard's replicas, the durable hint queue per peer, its replay, and the
 * node's view of its peers' health.
 *
 * Coordinated write: the router sends a shard's batch to its first
 * reachable replica. That node (the coordinator) forwards the WriteRequest
 * bytes it received, unchanged, to the other replicas (NodeWrite with
 * forwarded = true) while it writes them locally on the thread pool
 * (node_write.h), and
 * answers the router per shard once the mode is met (sync: all RF; quorum:
 * floor(RF/2)+1 with itself; async: itself) or can no longer be met.
 * Every replica that did not ack (down, timed out, refused, or whose own
 * local write failed: EIO, ENOSPC, EBUSY, ...) gets a hint: the bytes go to
 * <data-dir>/hints/<peer-id>/ (hints.h), replayed in order once the peer is
 * up, with backoff. A shard that missed its mode because a replica was
 * busy (head over head_max_mb) is answered ST_EBUSY with a Retry-After; one
 * met without the coordinator's own copy is answered with
 * coordinator_missed set, and the router hands the batch on to the next
 * replica, which stores it and hints this node.
 *
 * Threads: everything here runs on the loop thread except the thread-pool
 * jobs (local writes, hint appends/peeks/acks/syncs, stats snapshots).
 */
#ifndef NODE_REPL_H
#define NODE_REPL_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"
#include "repl.h"

typedef struct node_repl node_repl_t;

/* Open the hint queues and create the peer clients. */
int node_repl_create(node_t *n, const rpc_identity_t *me, node_repl_t **out);
/* Coordinate one RPC_WRITE (payload copied): replies on conn later. */
void node_repl_write(node_repl_t *r, rpc_conn_t *conn, uint64_t reqid, const uint8_t *payload,
                     size_t len);
/* The outcome of a submitted write: code 0, or ST_E* with a sentence. */
typedef void (*node_repl_done_fn)(void *arg, int code, const char *msg);
/* A NodeWrite (payload copied; consistency in its envelope) that this node
 * originates (compaction rules): its shard's first live replica
 * coordinates it (this node when it is that replica; else the call goes to
 * the peer, and on to the next replica when that one fails, or met the
 * consistency without its own copy). done runs
 * once, later, on the loop. Loop thread only. */
void node_repl_submit(node_repl_t *r, uint32_t shard, const uint8_t *payload, size_t len,
                      node_repl_done_fn done, void *arg);
/* What a layer above replication (the compaction rules, node_rules.h) is
 * told, so that this file does not call it: `observe` after this node
 * stored a write it coordinates (a worker thread), `peer_up` when a peer's
 * connection comes up (loop thread). Set once, before the loop runs;
 * either may be NULL. */
struct node_shard_result;
typedef void (*node_repl_observe_fn)(node_t *n, const repl_entry_t *e, size_t ne,
                                     const struct node_shard_result *res);
typedef void (*node_repl_peer_up_fn)(node_t *n, rpc_client_t *cli);
void node_repl_set_hooks(node_repl_t *r, node_repl_observe_fn observe,
                         node_repl_peer_up_fn peer_up);
/* The RPC client of peer `node` when it is up, else NULL (loop thread). */
rpc_client_t *node_repl_peer(node_repl_t *r, uint32_t node);
/* Stop timers and close the peer clients (on SIGTERM, on the loop). */
void node_repl_shutdown(node_repl_t *r);
/* Close the hint queues and free (after the loop has ended). */
void node_repl_destroy(node_repl_t *r);

/* Fill the hints/peers part of NodeStats (any thread). The arrays are
 * owned by the caller: free with node_repl_stats_free. */
struct Strata__NodeStats;
int node_repl_stats(node_repl_t *r, struct Strata__NodeStats *st);
void node_repl_stats_free(struct Strata__NodeStats *st);

#endif

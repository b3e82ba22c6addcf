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

#define NODE_LIMIT_NAME_MAX 64 /* bytes of a limit's name */

/* A shard's local write outcome. code ST_EBUSY: the node's head is over
 * head_max_mb and nothing was written (retry_after_s says when to retry);
 * code 0 with refused_samples: a cardinality limit refused those samples
 * (their series are new) and the rest was written. */
typedef struct node_shard_result {
    uint32_t shard;
    int code; /* 0 or ST_E* */
    uint64_t samples;
    uint64_t refused_samples;
    char limit[NODE_LIMIT_NAME_MAX];
    uint64_t limit_value;
    uint32_t retry_after_s;
    int coordinator_missed; /* a coordinated write met its mode without this copy */
    char msg[400];          /* the error, or the refusal's reason */
} node_shard_result_t;

/* Write the WriteRequests `e[0..ne)` into this node's engines (thread pool
 * only: it does disk I/O). res[i] gets entry i's outcome. The entries are
 * one write for max_new_series_per_write. Counts refusals (by limit) and
 * busy refusals in the node's metrics. Series may come as their
 * reference alone (a coordinator's forward, repl_put_forward_refs; a
 * router's write, wbatch.h): an entry with a reference this node does not
 * know is refused whole with ST_ENOREF (nothing of it written: the sender
 * sends it again with labels). Returns 0 or ST_ENOMEM (then res is
 * unspecified). */
int node_write_local(node_t *n, const repl_entry_t *e, size_t ne, node_shard_result_t *res);
/*
 * The WriteRequest msg[0..len) of `shard` with every series that came as
 * its reference alone given its labels back (the key bytes the shard's
 * engine kept with the reference) before the reference, appended to out
 * (message bytes); copied as it is when none did. For a replica that does
 * not know a router's references (ST_ENOREF) and for hints, which must
 * not depend on references. Returns 0, ST_ENOREF (a reference this node
 * does not know either: nothing appended) or ST_ENOMEM.
 */
int node_write_expand(node_t *n, uint32_t shard, const uint8_t *msg, size_t len, st_buf_t *out);

/* Register the counters node_write_local feeds (at startup). */
int node_write_metrics(node_t *n);

/* Pack res[0..n) as a NodeWriteResult into out. */
int node_pack_write_result(const node_shard_result_t *res, size_t n, st_buf_t *out);

#endif

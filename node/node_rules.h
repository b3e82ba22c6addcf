/*
 * node_rules — compaction rules on the node: the cluster's rule set
 * (stored in <data_dir>/rules, exchanged with RPC_RULES) and their
 * evaluation as samples arrive.
 *
 * Agreement: every node holds the newest rule set it has seen (rules.h:
 * version, then CRC). A set arrives by RPC_RULES from a router (create or
 * delete) or from a peer: when a peer connection comes up, each side
 * offers its set and takes the other's if newer, so a node that was down
 * while a rule was created gets it as soon as it is connected again.
 *
 * Evaluation: the node that coordinates a write (the one the router sent
 * it to; never the forwarded copies or hint replays) evaluates the rules
 * over the samples it has just stored, so exactly one replica evaluates
 * each sample. Per (rule, source series) it keeps the open bucket in
 * memory; a sample in a later bucket closes it and the bucket's value is
 * written at the bucket's start time to the destination series through
 * node_repl_submit (the destination shard's first live replica
 * coordinates it with the cluster's consistency). A (rule, series) with no
 * open bucket in memory (after a restart, a failover to this replica, or
 * a rule set change) is rebuilt from the stored samples of the current
 * and the previous bucket; the previous bucket is written again (the same
 * value: idempotent). A late sample (older than the open bucket: parallel
 * writers, a backfill) makes its closed bucket be recomputed from the
 * stored samples and written again (unlike valkey-timeseries, which
 * ignores it); one out of order inside the open bucket makes the open
 * bucket be recomputed from storage when it closes.
 */
#ifndef NODE_RULES_H
#define NODE_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"
#include "node_write.h"
#include "repl.h"

#define NODE_RULES_STATES_MAX 4000000      /* open buckets (rule x series) held in memory */
#define NODE_RULES_PENDING_MAX (64u << 20) /* bytes of closed buckets waiting to be written */

typedef struct node_rules node_rules_t;

/* Load <data_dir>/rules (a damaged file is logged and ignored: the peers
 * hand the set back) and register the metrics. Before the loop runs. */
int node_rules_create(node_t *n, node_rules_t **out);
/* Close the loop handles (on shutdown, on the loop). */
void node_rules_shutdown(node_rules_t *r);
void node_rules_destroy(node_rules_t *r);

/* RPC_RULES (thread pool): install a newer set, answer RulesResponse. */
int node_rules_rpc(node_t *n, const uint8_t *payload, size_t len, st_buf_t *out, char *msg,
                   size_t msglen);
/* The coordinator's local write of entries e[0..ne) is done (thread pool):
 * evaluate the rules over the entries written (res[i].code == 0). */
void node_rules_observe(node_t *n, const repl_entry_t *e, size_t ne,
                        const node_shard_result_t *res);
/* A peer connection came up (loop): offer our set, take theirs if newer. */
void node_rules_peer_up(node_t *n, rpc_client_t *cli);

#endif

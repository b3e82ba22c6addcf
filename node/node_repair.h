/*
 * node_repair — anti-entropy between the replicas of a shard, on-demand
 * repair (RPC_REPAIR, `strata repair`) and rebuilding a replica that starts
 * with an empty data directory. docs/operations.md "Repair" describes it
 * for operators.
 *
 * Repair is pull-only: this node compares the digest of each of its shards
 * (engine_digest: sample count and hash per time window and series bucket)
 * with the digest a peer replica computes with the same shape, asks the
 * peer for the series of every differing cell (RPC_REPAIR_PULL, pages of
 * bounded size), and writes the samples it lacks through engine_write_ex,
 * the normal write path (WAL, head, limits). Every replica runs the same
 * pass against the others, so a shard converges in both directions. Same
 * timestamp with another value is a conflict: counted and left as it is
 * until writes carry versions (last version wins then).
 *
 * A dry run compares and counts without writing, against the first
 * replica that answers (the others would count the same samples again).
 *
 * Each pass first asks the peer for its shard's segment files
 * (RPC_COPY_LIST) and copies, as files, those of every partition this node
 * holds nothing of (node_copy.h; not in a dry run); only then digests are
 * compared, so the pull moves just the head and what differs. A sealed
 * partition (no unflushed samples, no pending delete) found equal on both
 * sides is remembered per (shard, partition, peer) with both sides' file
 * tokens and not compared again until either token changes (a flush,
 * compaction, retention rewrite or copy into it; a late write unseals it)
 * -- strata_repair_partitions_skipped_total. The digest of a sealed
 * partition is cached the same way, so a digest reads only the rest.
 *
 * "Copy shard S from A to B" is the same pass run on B against A only
 * (RepairRequest{shards: [S], peer: A} sent to B); rebuilding is that pass
 * for every local shard, run at start when the data directory was empty
 * (no <data-dir>/node.marker and no shard directory) and repeated until
 * each shard has been pulled from at least one replica. Until then the
 * node reports itself rebuilding (NodeStats.rebuilding, degraded in STATS
 * so routers prefer other replicas; /cluster shows it); then it writes the
 * marker. An empty directory gets <data-dir>/node.rebuilding at once, removed
 * only with the marker: a node stopped or killed mid-rebuild (its shard
 * directories already exist) rebuilds again at its next start.
 *
 * Threads: one repair thread per node (the schedule, [replication]
 * repair_interval, the rebuild and every RPC_REPAIR) with its own libuv
 * loop and RPC clients to the peers. An RPC_REPAIR is queued for that
 * thread (node_repair_enqueue, at most NODE_REPAIR_QUEUE_MAX waiting, then
 * ST_EBUSY) and answered on the node's loop when its pass ends: a pass
 * waits on peers, and the thread pool that serves the peers' DIGEST and
 * REPAIR_PULL calls (and every write) must never fill up with passes
 * waiting on each other. One pass at a time per node. Streaming is bounded in memory (one page and
 * one series at a time) and in rate ([replication] repair_max_mb_per_s).
 */
#ifndef NODE_REPAIR_H
#define NODE_REPAIR_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"

#define NODE_REPAIR_MARKER "node.marker"   /* in the data dir: not a fresh directory */
#define NODE_REPAIR_PAGE_SAMPLES 100000u   /* samples per REPAIR_PULL page (default) */
#define NODE_REPAIR_PAGE_MAX 1000000u      /* most a REPAIR_PULL may ask per page */
#define NODE_REPAIR_RETRY_MS 500           /* rebuild: retry after a failed pass */
#define NODE_REPAIR_CALL_TIMEOUT_MS 60000u /* one DIGEST / REPAIR_PULL call */
#define NODE_REPAIR_QUEUE_MAX 64u          /* RPC_REPAIRs waiting for the repair thread */

/* in the data dir while a rebuild has begun and not finished */
#define NODE_REPAIR_REBUILDING "node.rebuilding"

typedef struct node_repair node_repair_t;

/* 1 when data_dir holds neither the marker nor any shard directory (then
 * NODE_REPAIR_REBUILDING is written there), or holds NODE_REPAIR_REBUILDING:
 * a node killed before its rebuild finished rebuilds again at its next
 * start instead of counting as a full replica. */
int node_repair_fresh_dir(const char *data_dir);
/* Start the repair thread; rebuild: the data dir was fresh (rebuild the
 * local shards from their replicas before counting as a full replica). */
int node_repair_create(node_t *n, const rpc_identity_t *me, int rebuild, node_repair_t **out);
/* Ask the thread and any pass in progress to stop (on the loop; on
 * SIGTERM). Queued RPC_REPAIRs are answered ST_ECLOSED; the loop runs until
 * every one is answered. */
void node_repair_shutdown(node_repair_t *r);
/* Stop the thread (a pass in progress stops at its next step) and free.
 * Before the engines are closed. NULL is a no-op. */
void node_repair_destroy(node_repair_t *r);
/* 1 while rebuilding, with a one-line state in why ("rebuilding: 2 of 4
 * shards pulled"); 0 otherwise. Any thread. */
int node_repair_rebuilding(node_repair_t *r, char *why, size_t cap);

/* An RPC_REPAIR for the repair thread. The caller fills the request part
 * and keeps job and payload alive until done(job) runs on the node's loop
 * with err (0: the RepairResponse in *out; else msg). */
typedef struct node_repair_job node_repair_job_t;
struct node_repair_job {
    const uint8_t *payload; /* a RepairRequest */
    size_t len;
    st_buf_t *out;
    char *msg;
    size_t msglen;
    int err;
    void (*done)(node_repair_job_t *job);
    node_repair_job_t *next; /* the queue's */
};
/* Queue job (on the loop): 0, or ST_EBUSY (NODE_REPAIR_QUEUE_MAX waiting)
 * / ST_ECLOSED (shutting down) / ST_EUNAVAIL (no repair) with job->msg set
 * and done not called. */
int node_repair_enqueue(node_repair_t *r, node_repair_job_t *job);

/* RPC handlers, on a thread-pool thread: append the reply to out, or
 * return ST_E* with msg set. */
int node_repair_digest_rpc(node_t *n, const uint8_t *p, size_t len, st_buf_t *out, char *msg,
                           size_t msglen);
int node_repair_pull_rpc(node_t *n, const uint8_t *p, size_t len, st_buf_t *out, char *msg,
                         size_t msglen);

/* The repair part of NodeStats (rebuilding, last repair per local shard);
 * free with node_repair_stats_free. Any thread. */
struct Strata__NodeStats;
int node_repair_stats(node_repair_t *r, struct Strata__NodeStats *st);
void node_repair_stats_free(struct Strata__NodeStats *st);

#endif

/*
 * router_rrepair — read repair for read_consistency=quorum: a read that
 * folds the answers of several replicas of a shard (an export, a PromQL
 * query's raw selections) notes the replicas whose copy lacked samples or
 * held other values, and the router asks each such replica to repair that
 * shard over the read's time range from a replica that answered in full
 * (RPC_REPAIR with a time range: node_repair.c pulls what differs and
 * resolves conflicts by version). Asynchronous and bounded (rrepair.h);
 * [replication] read_repair = off turns it off.
 *
 * Use: router_rrcheck_begin() on the loop thread once the fan-out is
 * complete (NULL when the read is not checked), router_rrcheck_merge()
 * instead of sset_merge() (any thread), router_rrcheck_end() on the loop
 * thread (counts and queues what was found; frees the check).
 *
 * Metrics: strata_router_read_repair_divergent_total (reads that saw
 * replicas disagree), strata_router_read_repairs_total (repairs started),
 * strata_router_read_repair_dropped_total (not queued: queue full or rate
 * limited).
 */
#ifndef ROUTER_RREPAIR_H
#define ROUTER_RREPAIR_H

#include <stdint.h>

#include "fanout.h"
#include "sset.h"

struct router;
typedef struct router_rrcheck router_rrcheck_t;

/* Counters and the queue (the loop thread, at start). 0 or ST_ENOMEM. */
int router_rrepair_init(struct router *r);
void router_rrepair_free(struct router *r);

/* A check for a read over [start, end] that asked `need` replicas per
 * shard, fanned out by f (complete): NULL when read repair is off, need is
 * 1, or memory is short (the read goes on unchecked). */
router_rrcheck_t *router_rrcheck_begin(struct router *r, const fanout_t *f, int need, int64_t start,
                                       int64_t end);
/* sset_merge(ss), noting divergence into c (c NULL: plain sset_merge). */
int router_rrcheck_merge(router_rrcheck_t *c, sset_t *ss);
/* Count the read, queue its repairs and start what may start; frees c
 * (NULL: nothing). */
void router_rrcheck_end(struct router *r, router_rrcheck_t *c);

#endif

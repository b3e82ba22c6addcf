/*
 * router_rowstats — the ROW_STATS fan-out: each shard's tag sets with the
 * timestamp fingerprint their series agree on (common/cluster/rowstats.h),
 * merged over the shards, for SQL's count(*) (router_sql.c).
 *
 * One replica per shard (read plan, failover, partial results as the
 * cluster's default read options say). The answer comes once, on the loop:
 *   status 0                 rs: every tag set (the callback owns it);
 *   ROUTER_ROWSTATS_SAMPLES  the nodes cannot answer (a shard reads through
 *                            downsampling tiers, a node refused: unknown
 *                            request, a limit, its deadline; a malformed
 *                            reply): count from the rows instead;
 *   503                      shards without a replica that is up (msg).
 */
#ifndef ROUTER_ROWSTATS_H
#define ROUTER_ROWSTATS_H

#include "router.h"
#include "rowstats.h"
#include "selector.h"

#define ROUTER_ROWSTATS_SAMPLES 1

typedef void (*router_rowstats_cb)(void *arg, int status, const char *msg, rowstats_t *rs);

/* The series of sel (taken: freed by the fan-out) with samples in [start,
 * end] (inclusive), until deadline (st_mono_ms()). */
void router_rowstats_run(router_t *r, selector_t *sel, int64_t start, int64_t end, int64_t deadline,
                         router_rowstats_cb cb, void *arg);

#endif

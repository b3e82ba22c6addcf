/*
 * router_delete — deleting data through the cluster: the Prometheus admin
 * endpoints POST /api/v1/admin/tsdb/delete_series and clean_tombstones, and
 * router_delete_submit(), the one entry the other doors use (RESP TS.DEL,
 * SQL DELETE).
 */
#ifndef ROUTER_DELETE_H
#define ROUTER_DELETE_H

#include "router.h"

#define ROUTER_DELETE_MAX_SELECTORS 64 /* match[] of one delete */

typedef struct router_delete_result {
    uint64_t series;        /* series with samples in range (summed over the shards) */
    uint64_t samples;       /* those samples: what went (or would go, dry run) */
    uint32_t shards_failed; /* shards no replica accepted */
    char why[400];          /* their reasons, "shard 3: n1: ...; ..." ("" if none) */
} router_delete_result_t;

/* status: 0 (every shard decided OK) or ST_EUNAVAIL (some failed: res->why). */
typedef void (*router_delete_cb)(void *arg, int status, const router_delete_result_t *res);

/*
 * Delete the samples in [start, end] (inclusive, ms) of the series matching
 * any of sel[0..nsel) (each a set of matchers ANDed), on every shard. Each
 * shard's delete goes to its first replica that is up, which coordinates it
 * like a write (consistency: repl_consistency_param's value, 0 = cluster
 * default; replicas that miss it get it through hinted handoff, in order
 * with the writes); a shard whose coordinator fails moves on to its next
 * replica (deletes carry an id, so a repeated delivery does nothing).
 * dry_run: nothing changes, res counts what would go (one replica per
 * shard). Loop thread only; sel is copied; cb is called once, later, on
 * the loop. Returns 0 or ST_EINVAL / ST_ENOMEM (then cb is never called).
 */
int router_delete_submit(router_t *r, const selector_t *sel, size_t nsel, int64_t start,
                         int64_t end, int dry_run, int consistency, router_delete_cb cb, void *arg);

/* Register strata_router_deletes_total and friends: 0 or ST_ENOMEM. */
int router_delete_metrics(router_t *r);

void router_handle_delete_series(router_t *r, http_req_t *req);
void router_handle_clean_tombstones(router_t *r, http_req_t *req);

#endif

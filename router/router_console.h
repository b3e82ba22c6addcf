/*
 * router_console — the router's web console and the status it needs.
 *
 *   GET /, /ui/<file>       the console bundle embedded at build time
 *                           (console_assets.h): index.html no-cache,
 *                           hashed files immutable for a year, gzip when
 *                           the client accepts it, ETag / 304.
 *   GET /api/v1/status/nodes each node's state and key figures from the
 *                           router's heartbeat (STATS), with the ingest rate
 *                           and the cluster's series count sampled over the
 *                           last hour, for the console's Cluster and
 *                           Cardinality pages.
 *
 * The figures are kept on the loop thread by router_status_note(), called
 * with every STATS answer; nothing here sends an RPC of its own.
 */
#ifndef ROUTER_CONSOLE_H
#define ROUTER_CONSOLE_H

#include "router.h"
#include "strata.pb-c.h"

/* Register the console's counters (strata_router_console_requests_total). */
int router_console_metrics(router_t *r);
/* A node answered STATS with st (the loop thread; allocates on first use). */
void router_status_note(router_t *r, uint32_t node, const Strata__NodeStats *st);
/* Free what router_status_note allocated. */
void router_status_free(router_t *r);

void router_handle_console(router_t *r, http_req_t *req);
void router_handle_nodes_status(router_t *r, http_req_t *req);

#endif

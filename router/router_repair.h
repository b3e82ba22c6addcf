/*
 * router_repair — POST /api/v1/admin/repair: run anti-entropy repair now on
 * the nodes and answer with a per-node, per-shard summary (router_repair.c
 * documents the parameters and the JSON).
 */
#ifndef ROUTER_REPAIR_H
#define ROUTER_REPAIR_H

#include "http.h"

#include "st_buf.h"

struct router;
struct Strata__NodeStats;
void router_handle_repair(struct router *r, http_req_t *req);
/* A node's STATS answer: keep its rebuilding flag and last repair per shard
 * (the loop thread; allocates on first use). */
void router_repair_note(struct router *r, uint32_t node, const struct Strata__NodeStats *st);
/* /cluster fields: ,"rebuilding":B for a node; ,"repair":{...} for a shard
 * (the latest repair among its replicas: when, and what it moved). */
int router_repair_node_json(struct router *r, uint32_t node, st_buf_t *b);
int router_repair_shard_json(struct router *r, uint32_t shard, st_buf_t *b);
void router_repair_free(struct router *r);

#endif

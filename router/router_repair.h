/*
 * router_repair — POST /api/v1/admin/repair: run anti-entropy repair now on
 * the nodes and answer with a per-node, per-shard summary (router_repair.c
 * documents the parameters and the JSON).
 */
#ifndef ROUTER_REPAIR_H
#define ROUTER_REPAIR_H

#include "http.h"

struct router;
void router_handle_repair(struct router *r, http_req_t *req);

#endif

/*
 * router_rules — compaction rules through the router:
 *   GET    /api/v1/admin/rules            the rule set (read role)
 *   POST   /api/v1/admin/rules            create (admin role): source,
 *          aggregation, bucket, [align], dest, [labels], [exact] as a form,
 *          query or JSON body
 *   DELETE /api/v1/admin/rules?id=N       remove (admin role); or
 *          ?source=S&dest=D (the RESP door's TS.DELETERULE)
 *
 * The set lives on the nodes (node_rules.h). A change reads the newest set
 * from every node that is up (RPC_RULES), applies the change with version
 * + 1 and offers the new set to every node that is up; it succeeds when at
 * least one node took it (the others get it from their peers when they
 * connect, and from this router's heartbeat, which asks every node for its
 * version and pushes the newest set to a node that is behind). Two routers
 * changing the rules at the same moment: both sets carry the same version,
 * the one with the higher CRC wins everywhere and the other change is
 * lost (the caller sees its rule missing from the list).
 */
#ifndef ROUTER_RULES_H
#define ROUTER_RULES_H

#include "router.h"
#include "rules.h"

#define ROUTER_RULES_TIMEOUT_MS 10000 /* a node's answer to RPC_RULES */

typedef struct router_rules router_rules_t;

/* Register the metrics and the cache (at startup). 0 or ST_ENOMEM. */
int router_rules_create(router_t *r);
void router_rules_destroy(router_t *r);
/* The heartbeat: ask every node that is up for its version; push the
 * newest set to the nodes that are behind (loop). */
void router_rules_tick(router_t *r);
/* The newest set this router knows (a copy into out, initialised here;
 * free with rules_free). 0 or ST_ENOMEM. */
int router_rules_snapshot(router_t *r, rules_t *out);

void router_handle_admin_rules(router_t *r, http_req_t *req);

#endif

/*
 * router_import — handlers of the import formats, CSV export, the probe
 * endpoints and InfluxDB 1.x /query (see router_import.c). The route table
 * in router_server.c points at them.
 */
#ifndef ROUTER_IMPORT_H
#define ROUTER_IMPORT_H

#include "router.h"

/* Register the counters (strata_router_import_*): 0 or ST_ENOMEM. */
int router_import_metrics(router_t *r);

void router_handle_import(router_t *r, http_req_t *req);
void router_handle_import_prom(router_t *r, http_req_t *req);
void router_handle_import_csv(router_t *r, http_req_t *req);
void router_handle_export_csv(router_t *r, http_req_t *req);
void router_handle_buildinfo(router_t *r, http_req_t *req);
void router_handle_metadata(router_t *r, http_req_t *req);
void router_handle_exemplars(router_t *r, http_req_t *req);
void router_handle_rules(router_t *r, http_req_t *req);
void router_handle_alerts(router_t *r, http_req_t *req);
void router_handle_format_query(router_t *r, http_req_t *req);
void router_handle_tsdb_status(router_t *r, http_req_t *req);
void router_handle_influx_query(router_t *r, http_req_t *req);

#endif

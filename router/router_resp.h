/*
 * router_resp — the router's RESP door (valkey-timeseries TS.* commands,
 * docs/resp.md): a libuv TCP listener on --resp-listen / [router]
 * resp_listen that parses commands with resp.h, runs them through the one
 * command table in router_resp.c and answers in RESP2 or RESP3.
 *
 * Why it reuses the HTTP handlers: every door reaches the same series with
 * the same sharding, consistency, limits and failover. A TS.* command
 * becomes one or more in-process HTTP requests (http_req_local) given to
 * the router's own route table: writes are /api/v1/import JSON lines,
 * reads /api/v1/export, /api/v1/series and label lists; the answer is then
 * shaped into RESP here. No socket is involved in between.
 */
#ifndef ROUTER_RESP_H
#define ROUTER_RESP_H

#include "router.h"
#include "tls.h"

typedef struct router_resp router_resp_t;
/* The router's HTTP dispatcher (route table of router_server.c). */
typedef void (*router_route_fn)(http_req_t *req, void *arg);

/* Listen on host:port; commands go through route(arg). 0 and *out, or an
 * ST_* error (address in use, ...). */
int router_resp_start(router_t *r, const char *host, int port, router_route_fn route, void *arg,
                      router_resp_t **out);
/* Speak TLS on every connection accepted from now on (the router's
 * [security] tls_cert/tls_key context, shared with HTTP; not owned). NULL:
 * plaintext. A client that does not start a TLS handshake gets one
 * plaintext "-ERR Protocol error: this port speaks TLS only" line and is
 * closed (counted in strata_tls_handshake_failures_total{reason="not_tls"}). */
void router_resp_set_tls(router_resp_t *s, tls_ctx_t *tls);
/* Stop accepting, close every connection; the memory is freed once the
 * handles are closed (the loop runs on). */
void router_resp_close(router_resp_t *s);

#endif

/*
 * router_pg — the PostgreSQL wire protocol door of strata-router
 * (--pg-listen HOST:PORT or [router] pg_listen; off when neither is set).
 * Bytes go through pgwire.c; statements through router_sql.c.
 */
#ifndef ROUTER_PG_H
#define ROUTER_PG_H

#include "router.h"
#include "tls.h"

typedef struct router_pg router_pg_t;

/* Listen on host:port: 0 with *out, or an ST_* code. */
int router_pg_create(router_t *r, const char *host, int port, router_pg_t **out);
/* Answer SSLRequest with 'S' and run TLS with tls (not owned; NULL: 'N'). */
void router_pg_set_tls(router_pg_t *s, tls_ctx_t *tls);
/* Close the listener and every connection (statements still running end
 * without an answer); the handles are freed by the loop, then the server. */
void router_pg_close(router_pg_t *s);

#endif

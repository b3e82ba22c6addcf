/*
 * auth_gate — the users file at an HTTP door (strata-router, strata-node):
 * who sent this request, may they use this route, and what the client
 * hears when not.
 *
 * Why a second library (strata_auth_gate) beside strata_auth: this part
 * needs the loop (timers, SIGHUP) and the HTTP server, which the pure auth
 * library must not; the daemons link it, the unit tests of auth do not.
 *
 * How: auth_gate_check() parses the credential (auth_cred_parse: the
 * Authorization header, else u=/p=), checks it against the users database
 * and the route's role, and either lets the handler run (req->data is the
 * user, NULL when the gate is open) or answers itself:
 *   401 {"status":"error","errorType":"unauthorized","error":...} with
 *       WWW-Authenticate: Basic realm="strata" and Bearer realm="strata";
 *   403 {"status":"error","errorType":"forbidden","error":"user 'u' has
 *       role read; this endpoint needs the write role"}.
 * Every failure is counted (strata_auth_failures_total{reason}) and logged
 * with the reason, the client address, the path and the user name — never
 * a password or token. A client address with more than
 * AUTH_GATE_FREE_FAILS recent failures gets its 401s late (a timer; the
 * loop is never blocked): 250 ms doubling per failure up to
 * AUTH_GATE_MAX_DELAY_MS, forgotten AUTH_GATE_FORGET_MS after its last
 * failure; the table of addresses is bounded (AUTH_GATE_SLOTS, the oldest
 * entry is reused).
 *
 * Reload: SIGHUP (and auth_gate_reload) reads the users file again; a file
 * that does not parse keeps the old users (logged, counted). Connections
 * stay open. Requests still running keep pointing into the old database,
 * so it is freed only AUTH_GATE_RETIRE_MS later (at most
 * AUTH_GATE_MAX_RETIRED kept; more reloads in that window are refused).
 */
#ifndef AUTH_GATE_H
#define AUTH_GATE_H

#include <uv.h>

#include "auth.h"
#include "http.h"
#include "metrics.h"

#define AUTH_GATE_SLOTS 4096 /* client addresses remembered for the slowdown */
#define AUTH_GATE_FREE_FAILS 3
#define AUTH_GATE_MAX_DELAY_MS 4000
#define AUTH_GATE_FORGET_MS 60000
#define AUTH_GATE_MAX_PENDING 1024 /* delayed 401s in flight; more are answered at once */
#define AUTH_GATE_RETIRE_MS 600000
#define AUTH_GATE_MAX_RETIRED 32
#define AUTH_GATE_MAX_SLOW 64 /* password checks on the thread pool at once */

typedef struct auth_gate auth_gate_t;

/* A gate on loop for the users file at path (NULL: open — every check
 * passes, and a warning is logged naming `who`). Registers its metrics in
 * m and starts a SIGHUP handler when path is set. Returns 0, or ST_* with
 * the reason in err (the file does not load). */
int auth_gate_create(uv_loop_t *loop, const char *path, metrics_t *m, const char *who,
                     auth_gate_t **out, char *err, size_t errlen);
/* 1 when a users file is configured. */
int auth_gate_enabled(const auth_gate_t *g);
/*
 * May req use a route that needs role `need` (AUTH_ROLE_NONE: open)?
 * 1: yes, run the handler now (req->data = the user or NULL); 0: not now —
 * the gate has answered req (401/403, now or after the delay), or a
 * password is being checked on the thread pool (PBKDF2 is slow on purpose;
 * the loop never runs it) and next(ctx, route, req) runs on the loop when
 * it passes. At most AUTH_GATE_MAX_SLOW such checks run at once; more are
 * answered 503 with Retry-After: 1.
 */
typedef void (*auth_gate_next_fn)(void *ctx, const void *route, http_req_t *req);
int auth_gate_check(auth_gate_t *g, http_req_t *req, auth_role_t need, auth_gate_next_fn next,
                    void *ctx, const void *route);
/* A failed login at another door (PostgreSQL) from remote ("ip:port"):
 * counted in the same per-address table as HTTP failures; the delay its
 * answer should get (ms; 0 for the first AUTH_GATE_FREE_FAILS). */
uint64_t auth_gate_note_failure(auth_gate_t *g, const char *remote);
/* 403 from a handler: "user 'u' <what>". */
void auth_gate_forbid(auth_gate_t *g, http_req_t *req, const char *what);
/* The user auth_gate_check let through (NULL: open gate or open route). */
const auth_user_t *auth_gate_user(const http_req_t *req);
/* The users now (NULL: open gate); valid until the next reload plus
 * AUTH_GATE_RETIRE_MS. */
const auth_db_t *auth_gate_db(const auth_gate_t *g);
/* Read the users file again: 0, or ST_* with err set (old users kept). */
int auth_gate_reload(auth_gate_t *g, char *err, size_t errlen);
/* Answer the delayed 401s now and close the handles (before the loop ends). */
void auth_gate_close(auth_gate_t *g);
/* Free (after auth_gate_close and the loop ran). */
void auth_gate_destroy(auth_gate_t *g);

#endif

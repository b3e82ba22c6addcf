/*
 * node_http — the node's HTTP endpoints:
 *   /health                process up (200 "ok")
 *   /ready                 engines open and RPC listening (200), else 503
 *                          "starting", or 503 "degraded: <reason>" while an
 *                          engine reports itself degraded (engine_health)
 *   /metrics               Prometheus text format
 *   /api/v1/export         local data: ?shard=N (default: every local shard),
 *                          match[]=SELECTOR (optional, repeatable), start, end;
 *                          GET or POST (else 405); a POST form body is read
 *                          with the query string (http_req_params_all)
 * Any other path is 404 "not found". The routes are one table (path,
 * methods allowed, role, handler). With [security] users_file the data
 * endpoint needs a credential of the read role (auth_gate.h) and refuses
 * confined users (a node export cannot be confined); /metrics needs read
 * unless metrics_auth = off; /health and /ready stay open. Exports run on the thread pool and are
 * capped at NODE_HTTP_EXPORT_MAX bytes per response (an operator tool; the router's export is
 * paged).
 */
#include <stdlib.h>
#include <string.h>

#include "export_json.h"
#include "node.h"
#include "selector.h"
#include "st_buf.h"
#include "st_err.h"
#include "st_log.h"

#define NODE_HTTP_MAX_MATCH 16 /* match[] selectors in one export */

typedef struct export_job {
    uv_work_t w;
    node_t *n;
    http_req_t *req;
    int shard; /* -1 = all local shards */
    selector_t sel[NODE_HTTP_MAX_MATCH];
    size_t nsel;
    int64_t start, end;
    st_buf_t out;
    int status;
    char msg[512];
} export_job_t;

static const st_matcher_t all_series = {ST_MATCH_RE, ST_METRIC_LABEL, ".+"};

static void export_work(uv_work_t *w)
{
    export_job_t *j = w->data;
    node_t *n = j->n;
    size_t nsel = j->nsel ? j->nsel : 1;
    for (int s = 0; s < (int)topo_shards(n->topo) && j->status == 200; s++) {
        if (!n->engines[s] || (j->shard >= 0 && s != j->shard))
            continue;
        /* series matching several selectors are written once: the engine's
         * ids are unique per shard, so track the labels' hashes */
        uint64_t *seen = NULL;
        size_t nseen = 0, cap = 0;
        for (size_t k = 0; k < nsel && j->status == 200; k++) {
            const st_matcher_t *m = j->nsel ? j->sel[k].m : &all_series;
            size_t nm = j->nsel ? j->sel[k].n : 1;
            engine_iter_t *it;
            int rc = engine_query(n->engines[s], m, nm, j->start, j->end, &it);
            if (rc) {
                j->status = rc == ST_EINVAL ? 400 : 500;
                snprintf(j->msg, sizeof j->msg, "%s", engine_last_error());
                break;
            }
            const st_label_t *l;
            size_t nl, cnt;
            const int64_t *ts;
            const double *v;
            while ((rc = engine_iter_next(it, &l, &nl, &ts, &v, &cnt)) == 1) {
                if (nsel > 1) {
                    uint64_t h = st_labels_hash(l, nl);
                    int dup = 0;
                    for (size_t i = 0; i < nseen && !dup; i++)
                        dup = seen[i] == h;
                    if (dup)
                        continue;
                    if (nseen == cap && st_grow(&seen, &cap, sizeof *seen, 256)) {
                        rc = ST_ENOMEM;
                        break;
                    }
                    seen[nseen++] = h;
                }
                if ((rc = export_json_line(&j->out, l, nl, ts, v, cnt)))
                    break;
                if (j->out.len > NODE_HTTP_EXPORT_MAX) {
                    j->status = 413;
                    snprintf(j->msg, sizeof j->msg,
                             "export larger than %u MiB; narrow match[], start/end or shard",
                             NODE_HTTP_EXPORT_MAX >> 20);
                    break;
                }
            }
            engine_iter_destroy(it);
            if (rc < 0) {
                j->status = 500;
                snprintf(j->msg, sizeof j->msg, "shard %d: %s", s, st_strerror(rc));
            }
        }
        free(seen);
    }
}

static void export_after(uv_work_t *w, int status)
{
    export_job_t *j = w->data;
    atomic_fetch_sub(&j->n->jobs, 1);
    if (j->status == 200)
        http_respond(j->req, 200, "application/stream+json", j->out.data, j->out.len);
    else
        http_respond_error(j->req, j->status, j->msg);
    for (size_t i = 0; i < j->nsel; i++)
        selector_free(&j->sel[i]);
    st_buf_deinit(&j->out);
    free(j);
}

static void handle_export(node_t *n, http_req_t *req)
{
    export_job_t *j = calloc(1, sizeof *j);
    if (!j) {
        http_respond_error(req, 500, "out of memory");
        return;
    }
    j->n = n;
    j->req = req;
    j->status = 200;
    j->shard = -1;
    j->start = INT64_MIN;
    j->end = INT64_MAX;
    st_buf_init(&j->out);
    const char *v;
    char err[300];
    http_params_t params;
    int prc = http_req_params_all(req, &params);
    if (prc) {
        if (prc == ST_EPARSE)
            snprintf(err, sizeof err, "cannot parse the form body: %s", params.err);
        else
            snprintf(err, sizeof err, "out of memory");
        goto bad;
    }
    if ((v = http_params_get(&params, "shard")) != NULL) {
        char *end;
        long s = strtol(v, &end, 10);
        if (*v == '\0' || *end || s < 0 || s >= (long)topo_shards(n->topo)) {
            snprintf(err, sizeof err, "invalid shard '%.64s' (0..%d)", v,
                     (int)topo_shards(n->topo) - 1);
            goto bad;
        }
        j->shard = (int)s;
    }
    if ((v = http_params_get(&params, "start")) != NULL &&
        http_parse_time_ms(v, strlen(v), &j->start) != 0) {
        snprintf(err, sizeof err, "invalid start '%.64s'", v);
        goto bad;
    }
    if ((v = http_params_get(&params, "end")) != NULL &&
        http_parse_time_ms(v, strlen(v), &j->end) != 0) {
        snprintf(err, sizeof err, "invalid end '%.64s'", v);
        goto bad;
    }
    size_t it = 0;
    const http_param_t *p;
    while ((p = http_params_next(&params, "match[]", &it)) != NULL) {
        if (j->nsel == NODE_HTTP_MAX_MATCH) {
            snprintf(err, sizeof err, "too many match[] (max %d)", NODE_HTTP_MAX_MATCH);
            goto bad;
        }
        char perr[256];
        if (selector_parse(p->value, p->value_len, &j->sel[j->nsel], perr, sizeof perr)) {
            snprintf(err, sizeof err, "invalid match[]: %s", perr);
            goto bad;
        }
        j->nsel++;
    }
    http_params_deinit(&params);
    j->w.data = j;
    metric_counter_inc(n->http_exports);
    atomic_fetch_add(&n->jobs, 1);
    if (uv_queue_work(n->loop, &j->w, export_work, export_after) == 0)
        return;
    atomic_fetch_sub(&n->jobs, 1);
    snprintf(err, sizeof err, "cannot queue work");
bad:
    http_params_deinit(&params);
    for (size_t i = 0; i < j->nsel; i++)
        selector_free(&j->sel[i]);
    free(j);
    http_respond_error(req, 400, err);
}

static void handle_health(node_t *n, http_req_t *req)
{
    http_respond(req, 200, "text/plain; charset=utf-8", "ok\n", 3);
}

/* /metrics reads the engines' stats, which wait for engine locks a big
 * write or a flush may hold for a while: it is rendered on the thread pool
 * so that the loop (heartbeats, RPC frames) never waits on an engine. */
typedef struct metrics_job {
    uv_work_t w;
    node_t *n;
    http_req_t *req;
    int rc;
    st_buf_t out;
} metrics_job_t;

static void metrics_work(uv_work_t *w)
{
    metrics_job_t *j = w->data;
    j->rc = metrics_render(j->n->metrics, &j->out);
}

static void metrics_after(uv_work_t *w, int status)
{
    metrics_job_t *j = w->data;
    (void)status;
    atomic_fetch_sub(&j->n->jobs, 1);
    if (j->rc)
        http_respond_error(j->req, 500, "cannot render metrics");
    else
        http_respond(j->req, 200, METRICS_CONTENT_TYPE, j->out.data, j->out.len);
    st_buf_deinit(&j->out);
    free(j);
}

static void handle_metrics(node_t *n, http_req_t *req)
{
    metrics_job_t *j = calloc(1, sizeof *j);
    if (!j) {
        http_respond_error(req, 503, "out of memory");
        return;
    }
    j->n = n;
    j->req = req;
    st_buf_init(&j->out);
    j->w.data = j;
    atomic_fetch_add(&n->jobs, 1);
    if (uv_queue_work(n->loop, &j->w, metrics_work, metrics_after) == 0)
        return;
    atomic_fetch_sub(&n->jobs, 1);
    free(j);
    http_respond_error(req, 503, "cannot queue work");
}

/* engine_health takes only the engines' short health lock: answered here. */
static void handle_ready(node_t *n, http_req_t *req)
{
    static const char ctype[] = "text/plain; charset=utf-8";
    char why[NODE_DEGRADED_REASON_MAX];
    if (!n->ready) {
        http_respond(req, 503, ctype, "starting\n", 9);
        return;
    }
    if (!node_degraded(n, why, sizeof why)) {
        http_respond(req, 200, ctype, "ready\n", 6);
        return;
    }
    char body[NODE_DEGRADED_REASON_MAX + 16];
    int k = snprintf(body, sizeof body, "degraded: %s\n", why);
    http_respond(req, 503, ctype, body, (size_t)k < sizeof body ? (size_t)k : sizeof body - 1);
}

#define METHOD(m) (1u << (m))
#define ROLE_METRICS (-1)

/* The node's routes: exact paths; methods 0 = any, else a mask of
 * METHOD(HTTP_METHOD_*) with the 405 text for the others. */
static const struct node_route {
    const char *path;
    unsigned methods;
    const char *not_allowed;
    void (*fn)(node_t *n, http_req_t *req);
    int role; /* auth_role_t, or ROLE_METRICS (read or open by [security] metrics_auth) */
} routes[] = {
    {"/health", 0, NULL, handle_health, AUTH_ROLE_NONE},
    {"/ready", 0, NULL, handle_ready, AUTH_ROLE_NONE},
    {"/metrics", 0, NULL, handle_metrics, ROLE_METRICS},
    {"/api/v1/export", METHOD(HTTP_METHOD_GET) | METHOD(HTTP_METHOD_POST), "use GET or POST",
     handle_export, AUTH_ROLE_READ},
};

/* The route's handler, once the gate let req through (now or after a
 * password check on the thread pool). */
static void run_route(void *arg, const void *route, http_req_t *req)
{
    node_t *n = arg;
    const struct node_route *r = route;
    if (auth_gate_user(req) && auth_user_selector(auth_gate_user(req)))
        auth_gate_forbid(
            n->auth, req,
            "is confined to a selector; a node export cannot be confined, so it is refused");
    else if (r->methods && !(r->methods & METHOD(req->method)))
        http_respond_error(req, 405, r->not_allowed);
    else
        r->fn(n, req);
}

void node_http_handler(http_req_t *req, void *arg)
{
    node_t *n = arg;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct node_route *r = &routes[i];
        if (strcmp(req->path, r->path) != 0)
            continue;
        int role = r->role == ROLE_METRICS
                       ? (topo_security(n->topo)->metrics_auth ? AUTH_ROLE_READ : AUTH_ROLE_NONE)
                       : r->role;
        if (auth_gate_check(n->auth, req, (auth_role_t)role, run_route, n, r))
            run_route(n, r, req);
        return;
    }
    http_respond_error(req, 404, "not found");
}

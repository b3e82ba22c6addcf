/*
 * router_console — the web console's files and the node status it reads
 * (see router_console.h).
 *
 * Files: looked up by name in the table console_embed.c generated (a
 * handful of entries: a linear scan). The answer is the stored bytes, or
 * the stored gzip bytes when Accept-Encoding names gzip, never compressed
 * per request. index.html must be revalidated on every load (no-cache, its
 * ETag makes that a 304), so a new router version is picked up at once;
 * every other file has a content hash in its name and is cached for a year.
 *
 * Status: the last STATS figures of each node, an ingest rate from the
 * growth of samples_written over at least ROUTER_RATE_WINDOW_MS, and a
 * ring of (time, series) samples of the whole cluster: the nodes' series
 * summed and divided by the replication factor (every series is held
 * replication_factor times), one sample every ROUTER_HISTORY_STEP_MS.
 */
#include "router_console.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console_assets.h"
#include "st_err.h"
#include "st_text.h"
#include "st_time.h"

#define ROUTER_RATE_WINDOW_MS 5000   /* ingest rate: samples_written growth over >= this */
#define ROUTER_HISTORY_STEP_MS 10000 /* one series-count sample per 10 s ... */
#define ROUTER_HISTORY_LEN 360       /* ... for the last hour */
#define CONSOLE_YEAR "public, max-age=31536000, immutable"

static const char console_off_text[] =
    "Strata: the web console is not part of this build (strata-router was built with\n"
    "STRATA_CONSOLE=OFF). The HTTP API answers as usual: /api/v1/query, /cluster, /metrics.\n";

enum { CONSOLE_SERVED, CONSOLE_NOT_MODIFIED, CONSOLE_NOT_FOUND, CONSOLE_BAD_METHOD, CONSOLE_NRES };
static const char *const console_result[CONSOLE_NRES] = {"served", "not_modified", "not_found",
                                                         "bad_method"};

typedef struct node_figures {
    int have;      /* a STATS answer arrived */
    int64_t at_ms; /* when */
    uint64_t series, head_samples, disk_bytes, samples_written;
    int64_t base_ms; /* rate window start */
    uint64_t base_written;
    double rate; /* samples/s over the last full window */
} node_figures_t;

struct router_console {
    metric_counter_t *req[CONSOLE_NRES];
    node_figures_t *nodes; /* [node] */
    int64_t hist_ms[ROUTER_HISTORY_LEN];
    uint64_t hist_series[ROUTER_HISTORY_LEN];
    size_t hist_n, hist_next;
};

int router_console_metrics(router_t *r)
{
    struct router_console *c = calloc(1, sizeof *c);
    if (!c || !(c->nodes = calloc(topo_node_count(r->topo), sizeof *c->nodes))) {
        free(c);
        return ST_ENOMEM;
    }
    r->console = c;
    for (int i = 0; i < CONSOLE_NRES; i++)
        if (!(c->req[i] = metrics_counter(r->metrics, "strata_router_console_requests_total",
                                          "Web console file requests (/ and /ui/...), by result.",
                                          "result", console_result[i], NULL)))
            return ST_ENOMEM;
    return 0;
}

void router_status_free(router_t *r)
{
    if (r->console)
        free(r->console->nodes);
    free(r->console);
    r->console = NULL;
}

static void note_history(router_t *r, int64_t now)
{
    struct router_console *c = r->console;
    size_t last = (c->hist_next + ROUTER_HISTORY_LEN - 1) % ROUTER_HISTORY_LEN;
    if (c->hist_n && now - c->hist_ms[last] < ROUTER_HISTORY_STEP_MS)
        return;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < topo_node_count(r->topo); i++)
        sum += c->nodes[i].series;
    c->hist_ms[c->hist_next] = now;
    c->hist_series[c->hist_next] = sum / topo_replication_factor(r->topo);
    c->hist_next = (c->hist_next + 1) % ROUTER_HISTORY_LEN;
    if (c->hist_n < ROUTER_HISTORY_LEN)
        c->hist_n++;
}

void router_status_note(router_t *r, uint32_t node, const Strata__NodeStats *st)
{
    if (!r->console)
        return;
    node_figures_t *f = &r->console->nodes[node];
    int64_t now = st_now_ms();
    if (!f->have || st->samples_written < f->base_written) { /* first, or the node restarted */
        f->base_ms = now;
        f->base_written = st->samples_written;
        f->rate = 0;
    } else if (now - f->base_ms >= ROUTER_RATE_WINDOW_MS) {
        f->rate =
            (double)(st->samples_written - f->base_written) * 1000.0 / (double)(now - f->base_ms);
        f->base_ms = now;
        f->base_written = st->samples_written;
    }
    f->have = 1;
    f->at_ms = now;
    f->series = st->series;
    f->head_samples = st->head_samples;
    f->disk_bytes = st->disk_bytes;
    f->samples_written = st->samples_written;
    note_history(r, now);
}

/* ---- files -------------------------------------------------------------- */

static const console_asset_t *find_asset(const char *name)
{
    for (size_t i = 0; i < console_nassets; i++)
        if (strcmp(console_assets[i].name, name) == 0)
            return &console_assets[i];
    return NULL;
}

static void count(router_t *r, int result)
{
    if (r->console)
        metric_counter_inc(r->console->req[result]);
}

void router_handle_console(router_t *r, http_req_t *req)
{
    if (req->method != HTTP_METHOD_GET && req->method != HTTP_METHOD_HEAD) {
        count(r, CONSOLE_BAD_METHOD);
        http_respond_error(req, 405, "method not allowed: use GET");
        return;
    }
    const char *name = strcmp(req->path, "/") == 0 ? "index.html" : req->path + strlen("/ui/");
    if (!console_nassets && strcmp(req->path, "/") == 0) {
        count(r, CONSOLE_SERVED);
        http_respond(req, 200, "text/plain; charset=utf-8", console_off_text,
                     sizeof console_off_text - 1);
        return;
    }
    const console_asset_t *a = find_asset(name);
    if (!a) {
        count(r, CONSOLE_NOT_FOUND);
        http_respond_error(req, 404, "not found");
        return;
    }
    http_header_t h[4] = {
        {"Cache-Control", a->immutable ? CONSOLE_YEAR : "no-cache"},
        {"ETag", a->etag},
        {"Vary", "Accept-Encoding"},
        {"Content-Encoding", "gzip"},
    };
    if (http_has_token(http_req_header(req, "If-None-Match"), a->etag)) {
        count(r, CONSOLE_NOT_MODIFIED);
        http_respond_headers(req, 304, NULL, h, 3, NULL, 0);
        return;
    }
    count(r, CONSOLE_SERVED);
    if (http_has_token(http_req_header(req, "Accept-Encoding"), "gzip"))
        http_respond_headers(req, 200, a->content_type, h, 4, a->gz, a->gz_len);
    else
        http_respond_headers(req, 200, a->content_type, h, 3, a->data, a->len);
}

/* ---- /api/v1/status/nodes ----------------------------------------------- */

void router_handle_nodes_status(router_t *r, http_req_t *req)
{
    if (req->method != HTTP_METHOD_GET && req->method != HTTP_METHOD_HEAD) {
        router_prom_error(req, 405, "bad_data", "method not allowed: use GET");
        return;
    }
    const topo_t *t = r->topo;
    uint32_t nn = topo_node_count(t);
    int64_t now = st_now_ms();
    st_buf_t b;
    st_buf_init(&b);
    char tmp[512];
    ST_BUF_LIT(&b, "{\"status\":\"success\",\"data\":{\"cluster\":");
    st_json_str(&b, topo_cluster_name(t), strlen(topo_cluster_name(t)));
    int k = snprintf(tmp, sizeof tmp,
                     ",\"fingerprint\":\"%s\",\"shards\":%u,\"replication_factor\":%u,"
                     "\"now\":%lld,\"nodes\":[",
                     topo_fingerprint_hex(t), topo_shards(t), topo_replication_factor(t),
                     (long long)now);
    st_buf_append(&b, tmp, (size_t)k);
    for (uint32_t i = 0; i < nn; i++) {
        const node_figures_t *f = r->console ? &r->console->nodes[i] : NULL;
        const char *state = router_node_state(r, i);
        uint64_t held = 0;
        for (uint32_t j = 0; j < nn; j++)
            held += r->hints_held[(size_t)i * nn + j];
        if (i)
            st_buf_put_u8(&b, ',');
        ST_BUF_LIT(&b, "{\"id\":");
        st_json_str(&b, topo_node_id(t, i), strlen(topo_node_id(t, i)));
        ST_BUF_LIT(&b, ",\"http\":");
        st_json_str(&b, topo_node_http(t, i)->addr, strlen(topo_node_http(t, i)->addr));
        ST_BUF_LIT(&b, ",\"state\":");
        st_json_str(&b, state, strlen(state));
        k = snprintf(tmp, sizeof tmp,
                     ",\"up\":%s,\"pending_rpcs\":%zu,\"hints_pending\":%llu,\"hints_held\":%llu,"
                     "\"stats_age_ms\":%lld,\"series\":%llu,\"head_samples\":%llu,"
                     "\"disk_bytes\":%llu,\"samples_written\":%llu,\"ingest_rate\":%.1f}",
                     router_node_up(r, i) ? "true" : "false", rpc_client_pending(r->clients[i]),
                     (unsigned long long)router_hints_for(r, i), (unsigned long long)held,
                     f && f->have ? (long long)(now - f->at_ms) : -1LL,
                     (unsigned long long)(f ? f->series : 0),
                     (unsigned long long)(f ? f->head_samples : 0),
                     (unsigned long long)(f ? f->disk_bytes : 0),
                     (unsigned long long)(f ? f->samples_written : 0), f ? f->rate : 0.0);
        st_buf_append(&b, tmp, (size_t)k);
    }
    ST_BUF_LIT(&b, "],\"series_history\":[");
    const struct router_console *c = r->console;
    size_t n = c ? c->hist_n : 0;
    for (size_t i = 0; i < n; i++) {
        size_t at = (c->hist_next + ROUTER_HISTORY_LEN - n + i) % ROUTER_HISTORY_LEN;
        k = snprintf(tmp, sizeof tmp, "%s[%.3f,%llu]", i ? "," : "", c->hist_ms[at] / 1000.0,
                     (unsigned long long)c->hist_series[at]);
        st_buf_append(&b, tmp, (size_t)k);
    }
    ST_BUF_LIT(&b, "]}}");
    http_respond(req, 200, "application/json", b.data, b.len);
    st_buf_deinit(&b);
}

/*
 * strata status — GET /cluster, /health and /ready and print a table:
 * cluster name and fingerprint, each node with its state and the shards it
 * leads (first replica in placement order, or the entry's "leader") and
 * holds, and whether every shard has a replica on a node in state "up".
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "st_err.h"

static const char *CMD = "status";

static bool state_is_up(const char *s)
{
    return s && (strcasecmp(s, "up") == 0 || strcasecmp(s, "catching_up") == 0 ||
                 strcasecmp(s, "ok") == 0 || strcasecmp(s, "healthy") == 0 ||
                 strcasecmp(s, "ready") == 0);
}

typedef struct node_row {
    const char *id;
    json_t *obj;
    int leads, holds;
} node_row_t;

/* Display text of member `key` of o ("" when absent); nb holds a number's text. */
static const char *member_text(json_t *o, const char *key, char nb[CLI_JSON_NUMBUF])
{
    return cli_json_text(json_object_get(o, key), nb, NULL);
}

static int find_node(node_row_t *rows, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].id && id && strcmp(rows[i].id, id) == 0)
            return (int)i;
    return -1;
}

/* Printable one-line excerpt of a body. */
static void excerpt(const st_buf_t *b, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < b->len && n + 1 < cap && n < 160; i++) {
        char c = (char)b->data[i];
        out[n++] = (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

static int print_cluster(json_t *root, int ready_code, bool *all_reachable)
{
    json_t *nodes = json_object_get(root, "nodes");
    json_t *placement = json_object_get(root, "placement");
    size_t nn = json_array_size(nodes);
    node_row_t *rows = calloc(nn ? nn : 1, sizeof(*rows));
    if (rows == NULL)
        return ST_ENOMEM;
    size_t r;
    json_t *n, *v;
    const char *key;
    char nb[CLI_JSON_NUMBUF], nb2[CLI_JSON_NUMBUF];
    json_array_foreach(nodes, r, n)
    {
        rows[r].obj = n;
        rows[r].id = json_string_value(json_object_get(n, "id"));
        if (rows[r].id == NULL)
            rows[r].id = json_string_value(json_object_get(n, "name"));
        if (rows[r].id == NULL)
            rows[r].id = "?";
    }
    /* top-level scalars, the known ones first */
    static const char *const known[] = {"cluster", "name", "fingerprint", "shards",
                                        "replication_factor"};
    for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++) {
        v = json_object_get(root, known[k]);
        if (v && !json_is_array(v) && !json_is_object(v))
            printf("%-20s %s\n", known[k], cli_json_text(v, nb, NULL));
    }
    json_object_foreach(root, key, v)
    {
        bool skip = json_is_array(v) || json_is_object(v);
        for (size_t k = 0; k < sizeof(known) / sizeof(known[0]) && !skip; k++)
            skip = strcmp(key, known[k]) == 0;
        if (!skip)
            printf("%-20s %s\n", key, cli_json_text(v, nb, NULL));
    }
    /* placement: from the router, or the default rule s -> (s+k) mod N */
    int64_t nshards = (int64_t)cli_json_num(json_object_get(root, "shards"), 0);
    int64_t rf = (int64_t)cli_json_num(json_object_get(root, "replication_factor"), 0);
    bool computed = false;
    size_t np = json_array_size(placement);
    if (np == 0 && nshards > 0 && rf > 0 && nn > 0) {
        np = (size_t)nshards;
        computed = true;
    }
    bool have_state = false;
    for (size_t i = 0; i < nn; i++)
        if (json_object_get(rows[i].obj, "state"))
            have_state = true;
    size_t ok_shards = 0;
    char missing[512] = "";
    size_t mlen = 0, nmissing = 0;
    for (size_t s = 0; s < np; s++) {
        int64_t shard = (int64_t)s;
        bool reachable = false;
        if (computed) {
            for (int64_t k = 0; k < rf && k < (int64_t)nn; k++) {
                size_t ni = (size_t)((s + (size_t)k) % nn);
                if (k == 0)
                    rows[ni].leads++;
                rows[ni].holds++;
                reachable |= state_is_up(json_string_value(json_object_get(rows[ni].obj, "state")));
            }
        } else {
            json_t *pe = json_array_get(placement, s), *reps = json_object_get(pe, "replicas"), *rp;
            shard = (int64_t)cli_json_num(json_object_get(pe, "shard"), (double)s);
            const char *leader = json_string_value(json_object_get(pe, "leader"));
            size_t k;
            json_array_foreach(reps, k, rp)
            {
                int ni = find_node(rows, nn, json_string_value(rp));
                if (ni < 0)
                    continue;
                if (leader ? strcmp(leader, rows[ni].id) == 0 : k == 0)
                    rows[ni].leads++;
                rows[ni].holds++;
                reachable |= state_is_up(json_string_value(json_object_get(rows[ni].obj, "state")));
            }
        }
        if (reachable) {
            ok_shards++;
        } else {
            nmissing++;
            if (mlen + 24 < sizeof(missing))
                mlen += (size_t)snprintf(missing + mlen, sizeof(missing) - mlen, "%s%lld",
                                         mlen ? "," : "", (long long)shard);
        }
    }
    /* node table */
    int wid = 4, wst = 5, wrpc = 3, whttp = 4;
    for (size_t i = 0; i < nn; i++) {
        int l = (int)strlen(rows[i].id);
        wid = l > wid ? l : wid;
        l = (int)strlen(member_text(rows[i].obj, "state", nb));
        wst = l > wst ? l : wst;
        l = (int)strlen(member_text(rows[i].obj, "rpc", nb));
        wrpc = l > wrpc ? l : wrpc;
        l = (int)strlen(member_text(rows[i].obj, "http", nb));
        whttp = l > whttp ? l : whttp;
    }
    printf("\n%-*s  %-*s  %-*s  %-*s  %5s  %5s  %s\n", wid, "NODE", wst, "STATE", wrpc, "RPC",
           whttp, "HTTP", "LEADS", "HOLDS", "DETAILS");
    for (size_t i = 0; i < nn; i++) {
        json_t *o = rows[i].obj;
        char nb3[CLI_JSON_NUMBUF];
        const char *st = member_text(o, "state", nb);
        printf("%-*s  %-*s  %-*s  %-*s  %5d  %5d", wid, rows[i].id, wst, *st ? st : "-", wrpc,
               member_text(o, "rpc", nb2), whttp, member_text(o, "http", nb3), rows[i].leads,
               rows[i].holds);
        bool first = true;
        json_object_foreach(o, key, v)
        {
            if (strcmp(key, "id") == 0 || strcmp(key, "name") == 0 || strcmp(key, "state") == 0 ||
                strcmp(key, "rpc") == 0 || strcmp(key, "http") == 0 || json_is_array(v) ||
                json_is_object(v))
                continue;
            printf("%s%s=%s", first ? "  " : " ", key, cli_json_text(v, nb, NULL));
            first = false;
        }
        printf("\n");
    }
    /* hinted handoff: writes other nodes still hold for a node */
    for (size_t i = 0; i < nn; i++) {
        json_t *h = json_object_get(rows[i].obj, "hints_pending");
        const char *hv = h ? cli_json_text(h, nb, NULL) : "0";
        if (h && strcmp(hv, "0") != 0)
            printf("%s: %s hinted write(s) waiting on other nodes (%s)\n", rows[i].id, hv,
                   member_text(rows[i].obj, "state", nb2));
    }
    printf("\n");
    if (np == 0) {
        printf("placement: not reported by the router\n");
        *all_reachable = ready_code == 200;
    } else if (!have_state) {
        printf("shards: %zu%s; replica reachability unknown (no node state reported)\n", np,
               computed ? " (placement from the default rule)" : "");
        *all_reachable = ready_code == 200;
    } else {
        printf("shards: %zu/%zu have a reachable replica%s", ok_shards, np,
               computed ? " (placement from the default rule)" : "");
        if (nmissing)
            printf("; NO reachable replica for shard%s %s%s", nmissing > 1 ? "s" : "", missing,
                   mlen + 24 >= sizeof(missing) ? ",..." : "");
        printf("\n");
        *all_reachable = nmissing == 0;
    }
    free(rows);
    return 0;
}

typedef struct status_opts {
    cli_common_t common;
    bool raw, require_ready;
} status_opts_t;

static int run_status(void *opts, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const status_opts_t *o = opts;
    httpc_url_t url;
    const char *shown;
    int rc = cli_common_router(CMD, &o->common, &url, &shown);
    if (rc != 0)
        return rc;
    httpc_conn_t *conn = cli_common_conn(&o->common, &url);
    if (conn == NULL)
        return cli_fail(CMD, "out of memory");
    st_buf_t body;
    st_buf_init(&body);
    httpc_resp_t resp;
    int ret = CLI_EXIT_FAIL;
    json_t *doc = NULL;

    if ((rc = cli_get(conn, "/cluster", &resp, &body)) < 0) {
        ret = cli_fail(CMD, "GET %s/cluster: %s", shown,
                       *httpc_conn_errmsg(conn) ? httpc_conn_errmsg(conn) : st_strerror(rc));
        goto out;
    }
    if (resp.status != 200) {
        char ex[200];
        excerpt(&body, ex, sizeof(ex));
        ret = cli_fail(CMD, "GET /cluster: HTTP %d %s%s%s", resp.status, resp.reason,
                       *ex ? ": " : "", ex);
        goto out;
    }
    if (o->raw) {
        fwrite(body.data, 1, body.len, stdout);
        if (body.len == 0 || body.data[body.len - 1] != '\n')
            putchar('\n');
        ret = CLI_EXIT_OK;
        goto out;
    }
    char err[160];
    doc = cli_json_parse((const char *)body.data, body.len, err, sizeof(err));
    if (doc == NULL || !json_is_object(doc)) {
        ret = cli_fail(CMD, "GET /cluster: not a JSON object (%s)", doc ? "wrong type" : err);
        goto out;
    }
    /* /health and /ready: status codes (and the reason when not ready) */
    char health[64], ready[256];
    int ready_code = 0;
    rc = cli_get(conn, "/health", &resp, &body);
    if (rc < 0)
        snprintf(health, sizeof(health), "error (%s)", st_strerror(rc));
    else
        snprintf(health, sizeof(health), "%s (HTTP %d)", resp.status == 200 ? "ok" : "FAILING",
                 resp.status);
    rc = cli_get(conn, "/ready", &resp, &body);
    if (rc < 0) {
        snprintf(ready, sizeof(ready), "error (%s)", st_strerror(rc));
    } else {
        char ex[200];
        excerpt(&body, ex, sizeof(ex));
        ready_code = resp.status;
        if (resp.status == 200)
            snprintf(ready, sizeof(ready), "yes (HTTP 200)");
        else
            snprintf(ready, sizeof(ready), "NO (HTTP %d)%s%.200s", resp.status, *ex ? ": " : "",
                     ex);
    }
    printf("%-20s %s\n%-20s %s\n%-20s %s\n", "router", shown, "health", health, "ready", ready);
    bool all = false;
    if (print_cluster(doc, ready_code, &all) < 0) {
        ret = cli_fail(CMD, "out of memory");
        goto out;
    }
    fflush(stdout);
    ret = CLI_EXIT_OK;
    if (o->require_ready && (!all || ready_code != 200))
        ret = cli_fail(CMD, "cluster not ready");
out:
    json_decref(doc);
    st_buf_deinit(&body);
    httpc_conn_destroy(conn);
    return ret;
}

static const cli_opt_t STATUS_OPTS[] = {
    CLI_OPT_ROUTER,
    CLI_OPT_CONFIG,
    CLI_OPT_FLAG(status_opts_t, raw, "json", "print the router's /cluster JSON unchanged"),
    CLI_OPT_FLAG(status_opts_t, require_ready, "require-ready",
                 "exit 1 when some shard has no reachable replica"),
    CLI_OPT_TIMEOUT("per-request inactivity timeout"),
    CLI_OPT_END,
};

static const status_opts_t STATUS_DEFAULTS = {.common = CLI_COMMON_DEFAULTS};

const cli_cmd_t cli_cmd_status = {
    .name = "status",
    .args = "",
    .summary = "cluster, nodes, shard placement and readiness",
    .synopsis = "status [--router URL] [--json] [--require-ready] [--timeout SECS]",
    .about = "Show the cluster as the router sees it: GET /cluster, /health, /ready.\n",
    .help_col = 21,
    .min_args = 0,
    .max_args = 0,
    .opts = STATUS_OPTS,
    .opts_size = sizeof(status_opts_t),
    .defaults = &STATUS_DEFAULTS,
    .run = run_status,
};

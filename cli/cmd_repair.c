/*
 * strata repair [--shard N] [--node ID] [--from ID] [--dry-run] — run
 * anti-entropy repair now through POST /api/v1/admin/repair (admin role),
 * one request per shard (every shard of the cluster unless --shard), with a
 * progress bar on stderr and a summary on stdout: per node, the series and
 * samples it pulled from the other replicas (repair moves data INTO the
 * node that lacks it; every replica of a shard is asked, so each direction
 * shows as the node it went into), conflicts and bytes.
 *
 * --node ID runs the passes only on that node; --from ID pulls only from
 * that replica (--shard N --node B --from A: copy shard N from A to B).
 * --dry-run compares and counts, writes nothing. Exit 1 when a node could
 * not be repaired (its error is printed).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "st_err.h"
#include "st_time.h"

static const char *CMD = "repair";

#define REPAIR_NODES_MAX 1024

typedef struct repair_opts {
    cli_common_t common;
    const char *shard, *node, *from;
    bool dry_run;
} repair_opts_t;

typedef struct node_sum {
    char id[72];
    uint64_t series, samples, conflicts, resolved, bytes, cells, files, skipped;
    int errors;
} node_sum_t;

typedef struct sums {
    node_sum_t n[REPAIR_NODES_MAX];
    size_t nn;
    int errors;
} sums_t;

static node_sum_t *sum_of(sums_t *s, const char *id)
{
    for (size_t i = 0; i < s->nn; i++)
        if (!strcmp(s->n[i].id, id))
            return &s->n[i];
    if (s->nn == REPAIR_NODES_MAX)
        return NULL;
    node_sum_t *n = &s->n[s->nn++];
    memset(n, 0, sizeof *n);
    snprintf(n->id, sizeof n->id, "%s", id);
    return n;
}

/* Add one reply's nodes to the sums; errors printed on stderr. */
static void add_reply(sums_t *s, json_t *doc, unsigned shard)
{
    json_t *nodes = json_object_get(json_object_get(doc, "data"), "nodes");
    size_t i;
    json_t *nd;
    json_array_foreach(nodes, i, nd)
    {
        const char *id = json_string_value(json_object_get(nd, "node"));
        const char *err = json_string_value(json_object_get(nd, "error"));
        node_sum_t *n = sum_of(s, id ? id : "?");
        if (!n)
            continue;
        if (err && *err) {
            fprintf(stderr, "\nstrata repair: shard %u on %s: %s\n", shard, n->id, err);
            n->errors++;
            s->errors++;
        }
        size_t k;
        json_t *sh;
        json_array_foreach(json_object_get(nd, "shards"), k, sh)
        {
            n->series += (uint64_t)json_integer_value(json_object_get(sh, "series"));
            n->samples += (uint64_t)json_integer_value(json_object_get(sh, "samples"));
            n->conflicts += (uint64_t)json_integer_value(json_object_get(sh, "conflicts"));
            n->resolved += (uint64_t)json_integer_value(json_object_get(sh, "resolved"));
            n->bytes += (uint64_t)json_integer_value(json_object_get(sh, "bytes"));
            n->cells += (uint64_t)json_integer_value(json_object_get(sh, "cells_differing"));
            n->files += (uint64_t)json_integer_value(json_object_get(sh, "files"));
            n->skipped += (uint64_t)json_integer_value(json_object_get(sh, "skipped"));
            const char *se = json_string_value(json_object_get(sh, "error"));
            if (se && *se) {
                fprintf(stderr, "\nstrata repair: shard %u on %s: %s\n", shard, n->id, se);
                n->errors++;
                s->errors++;
            }
        }
    }
}

static void progress(bool tty, size_t done, size_t total, const sums_t *s)
{
    uint64_t samples = 0;
    for (size_t i = 0; i < s->nn; i++)
        samples += s->n[i].samples;
    char cnt[32];
    cli_fmt_count(cnt, sizeof cnt, (double)samples);
    if (!tty) {
        fprintf(stderr, "progress: shards=%zu/%zu samples=%llu\n", done, total,
                (unsigned long long)samples);
        return;
    }
    char bar[21];
    size_t fill = total ? done * 20 / total : 20;
    for (size_t i = 0; i < 20; i++)
        bar[i] = i < fill ? '#' : '-';
    bar[20] = '\0';
    fprintf(stderr, "\r[%s] %zu/%zu shards  %s samples moved", bar, done, total, cnt);
    fflush(stderr);
}

static int run_repair(void *opts, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const repair_opts_t *o = opts;
    httpc_url_t url;
    const char *shown;
    int rc = cli_common_router(CMD, &o->common, &url, &shown);
    if (rc != 0)
        return rc;
    uint64_t one = 0;
    bool has_shard = o->shard && *o->shard;
    if (has_shard && cli_parse_u64(o->shard, 0, UINT32_MAX, &one))
        return cli_fail(CMD, "bad --shard '%s' (a shard number)", o->shard);
    httpc_conn_t *conn = cli_common_conn(&o->common, &url);
    if (!conn)
        return cli_fail(CMD, "out of memory");
    st_buf_t body, target;
    st_buf_init(&body);
    st_buf_init(&target);
    sums_t *s = calloc(1, sizeof *s);
    int ret = CLI_EXIT_OK;
    size_t total = 1;
    if (!s) {
        ret = cli_fail(CMD, "out of memory");
        goto out;
    }
    if (!has_shard) { /* every shard: how many from /cluster */
        httpc_resp_t resp;
        if ((rc = cli_get(conn, "/cluster", &resp, &body)) < 0 || resp.status != 200) {
            ret = cli_fail(CMD, "GET %s/cluster: %s", shown,
                           rc < 0 ? st_strerror(rc) : "unexpected status");
            goto out;
        }
        json_t *doc = cli_json_parse((const char *)body.data, body.len, NULL, 0);
        total = (size_t)json_integer_value(json_object_get(doc, "shards"));
        json_decref(doc);
        if (!total) {
            ret = cli_fail(CMD, "GET %s/cluster: no shard count", shown);
            goto out;
        }
    }
    bool tty = isatty(2);
    int64_t t0 = st_mono_ms();
    for (size_t i = 0; i < total && !cli_interrupted; i++) {
        unsigned shard = has_shard ? (unsigned)one : (unsigned)i;
        st_buf_reset(&target);
        char head[96];
        snprintf(head, sizeof head, "/api/v1/admin/repair?shard=%u", shard);
        st_buf_append(&target, head, strlen(head));
        if (o->node && *o->node) {
            ST_BUF_LIT(&target, "&node=");
            httpc_query_escape(&target, o->node);
        }
        if (o->from && *o->from) {
            ST_BUF_LIT(&target, "&from=");
            httpc_query_escape(&target, o->from);
        }
        if (o->dry_run)
            ST_BUF_LIT(&target, "&dry_run=1");
        st_buf_put_u8(&target, '\0');
        st_buf_reset(&body);
        httpc_resp_t resp;
        rc = httpc_request(conn, "POST", (const char *)target.data, NULL, NULL, 0, &resp,
                           httpc_collect, &body);
        if (rc < 0) {
            ret = cli_fail(CMD, "%s",
                           *httpc_conn_errmsg(conn) ? httpc_conn_errmsg(conn) : st_strerror(rc));
            goto out;
        }
        json_t *doc = cli_json_parse((const char *)body.data, body.len, NULL, 0);
        if (resp.status != 200) {
            const char *msg = json_string_value(json_object_get(doc, "error"));
            ret = cli_fail(CMD, "HTTP %d %s: %.300s", resp.status, resp.reason,
                           msg ? msg : "(no message)");
            json_decref(doc);
            goto out;
        }
        add_reply(s, doc, shard);
        json_decref(doc);
        progress(tty, i + 1, total, s);
    }
    if (tty)
        fputc('\n', stderr);
    printf("repair%s: %zu shard(s) in %.1f s%s\n", o->dry_run ? " (dry run)" : "", total,
           (double)(st_mono_ms() - t0) / 1000.0, cli_interrupted ? " (interrupted)" : "");
    for (size_t i = 0; i < s->nn; i++) {
        const node_sum_t *n = &s->n[i];
        char b[32];
        cli_fmt_bytes(b, sizeof b, (double)n->bytes);
        printf("  into %-12s %llu series, %llu samples %s; %llu differing cells, %llu "
               "conflicting samples (%llu %s to the newer version), %s received; %llu "
               "files copied, %llu sealed partitions skipped%s\n",
               n->id, (unsigned long long)n->series, (unsigned long long)n->samples,
               o->dry_run ? "missing" : "pulled", (unsigned long long)n->cells,
               (unsigned long long)n->conflicts, (unsigned long long)n->resolved,
               o->dry_run ? "would be set" : "set", b, (unsigned long long)n->files,
               (unsigned long long)n->skipped, n->errors ? ", ERRORS" : "");
    }
    if (s->errors)
        ret = CLI_EXIT_FAIL;
    if (cli_interrupted)
        ret = CLI_EXIT_INTERRUPTED;
out:
    free(s);
    httpc_conn_destroy(conn);
    st_buf_deinit(&target);
    st_buf_deinit(&body);
    return ret;
}

static const cli_opt_t REPAIR_OPTS[] = {
    CLI_OPT_ROUTER,
    CLI_OPT_CONFIG,
    {.name = "shard",
     .kind = CLI_STR,
     .off = offsetof(repair_opts_t, shard),
     .label = "--shard N",
     .help = "only this shard (default: every shard)"},
    {.name = "node",
     .kind = CLI_STR,
     .off = offsetof(repair_opts_t, node),
     .label = "--node ID",
     .help = "run the repair only on this node\n(default: every replica)"},
    {.name = "from",
     .kind = CLI_STR,
     .off = offsetof(repair_opts_t, from),
     .label = "--from ID",
     .help = "pull only from this replica\n(with --shard and --node: copy a shard)"},
    CLI_OPT_FLAG(repair_opts_t, dry_run, "dry-run",
                 "compare and count what differs; write nothing"),
    CLI_OPT_TIMEOUT("inactivity timeout"),
    CLI_OPT_END,
};

static const repair_opts_t REPAIR_DEFAULTS = {.common = CLI_COMMON_DEFAULTS};

const cli_cmd_t cli_cmd_repair = {
    .name = "repair",
    .args = "",
    .summary = "compare replicas and pull what each lacks (anti-entropy)",
    .synopsis = "repair [--shard N] [--node ID] [--from ID] [--dry-run]",
    .about = "Run anti-entropy repair now through POST /api/v1/admin/repair: the\n"
             "replicas of each shard compare digests and pull the samples they lack.\n",
    .help_col = 22,
    .min_args = 0,
    .max_args = 0,
    .opts = REPAIR_OPTS,
    .opts_size = sizeof(repair_opts_t),
    .defaults = &REPAIR_DEFAULTS,
    .run = run_repair,
};

/*
 * strata delete SELECTOR... — POST /api/v1/admin/tsdb/delete_series: remove
 * the samples of the matching series in [--start, --end] (all time when
 * omitted). --dry-run prints how many series and samples would go and
 * changes nothing; --purge then asks the nodes to compact the partitions
 * holding deleted samples now (POST /api/v1/admin/tsdb/clean_tombstones)
 * instead of at their next compaction.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "st_err.h"

static const char *CMD = "delete";

typedef struct delete_opts {
    cli_common_t common;
    double start, end;
    bool has_start, has_end;
    bool dry_run, purge;
    const char *consistency;
} delete_opts_t;

/* POST target; 0 with *status, or a failure already printed. */
static int post(httpc_conn_t *conn, const char *target, int *status, st_buf_t *body)
{
    httpc_resp_t resp;
    int rc = httpc_request(conn, "POST", target, NULL, NULL, 0, &resp, httpc_collect, body);
    if (rc < 0)
        return cli_fail(CMD, "%s",
                        *httpc_conn_errmsg(conn) ? httpc_conn_errmsg(conn) : st_strerror(rc));
    *status = resp.status;
    if (resp.status >= 300) {
        st_buf_put_u8(body, '\0');
        json_t *doc = cli_json_parse((const char *)body->data, body->len - 1, NULL, 0);
        const char *msg = json_string_value(json_object_get(doc, "error"));
        rc = cli_fail(CMD, "HTTP %d %s: %.300s", resp.status, resp.reason,
                      msg ? msg : (const char *)body->data);
        json_decref(doc);
        return rc;
    }
    return 0;
}

static int run_delete(void *opts, int argc, char **argv)
{
    const delete_opts_t *o = opts;
    httpc_url_t url;
    const char *shown;
    int rc = cli_common_router(CMD, &o->common, &url, &shown);
    if (rc != 0)
        return rc;
    st_buf_t target, body;
    st_buf_init(&target);
    st_buf_init(&body);
    ST_BUF_LIT(&target, "/api/v1/admin/tsdb/delete_series?");
    for (int i = 0; i < argc; i++) {
        st_buf_append(&target, i > 0 ? "&match%5B%5D=" : "match%5B%5D=", i > 0 ? 13 : 12);
        httpc_query_escape(&target, argv[i]);
    }
    char num[96];
    if (o->has_start) {
        snprintf(num, sizeof(num), "&start=%.3f", o->start);
        st_buf_append(&target, num, strlen(num));
    }
    if (o->has_end) {
        snprintf(num, sizeof(num), "&end=%.3f", o->end);
        st_buf_append(&target, num, strlen(num));
    }
    if (o->consistency && *o->consistency) {
        ST_BUF_LIT(&target, "&consistency=");
        httpc_query_escape(&target, o->consistency);
    }
    if (o->dry_run)
        ST_BUF_LIT(&target, "&dry_run=1");
    httpc_conn_t *conn =
        st_buf_put_u8(&target, '\0') == 0 ? cli_common_conn(&o->common, &url) : NULL;
    if (conn == NULL) {
        st_buf_deinit(&target);
        return cli_fail(CMD, "out of memory");
    }
    int status = 0, ret = post(conn, (const char *)target.data, &status, &body);
    if (ret == 0 && o->dry_run) {
        json_t *doc = cli_json_parse((const char *)body.data, body.len, NULL, 0);
        json_t *d = json_object_get(doc, "data");
        printf("would delete: %lld series, %lld samples\n",
               (long long)json_integer_value(json_object_get(d, "series")),
               (long long)json_integer_value(json_object_get(d, "samples")));
        json_decref(doc);
    } else if (ret == 0) {
        printf("deleted\n");
    }
    if (ret == 0 && o->purge && !o->dry_run) {
        st_buf_reset(&body);
        ret = post(conn, "/api/v1/admin/tsdb/clean_tombstones", &status, &body);
        if (ret == 0)
            printf("purged (deleted samples removed from disk)\n");
    }
    httpc_conn_destroy(conn);
    st_buf_deinit(&target);
    st_buf_deinit(&body);
    return ret;
}

static const cli_opt_t DELETE_OPTS[] = {
    CLI_OPT_ROUTER,
    CLI_OPT_CONFIG,
    {.name = "start",
     .kind = CLI_TIME,
     .off = offsetof(delete_opts_t, start),
     .given = CLI_GIVEN(delete_opts_t, has_start),
     .label = "--start T, --end T",
     .help = "RFC 3339, unix seconds, 'now' or relative ('-1h');\n"
             "both omitted: all time"},
    {.name = "end",
     .kind = CLI_TIME,
     .off = offsetof(delete_opts_t, end),
     .given = CLI_GIVEN(delete_opts_t, has_end)},
    CLI_OPT_FLAG(delete_opts_t, dry_run, "dry-run",
                 "print the series and samples that would go; delete nothing"),
    CLI_OPT_FLAG(delete_opts_t, purge, "purge",
                 "then remove the deleted samples from disk now\n"
                 "(else at the next compaction of their partitions)"),
    CLI_OPT_CHOICE(delete_opts_t, consistency, "consistency", "sync|quorum|async",
                   " (sync|quorum|async)", "--consistency C",
                   "acks needed per shard (default: the cluster's)"),
    CLI_OPT_TIMEOUT("inactivity timeout"),
    CLI_OPT_END,
};

static const delete_opts_t DELETE_DEFAULTS = {.common = CLI_COMMON_DEFAULTS, .consistency = ""};

const cli_cmd_t cli_cmd_delete = {
    .name = "delete",
    .args = "SELECTOR",
    .summary = "delete samples by selector and time range",
    .synopsis = "delete SELECTOR... [--start T] [--end T] [--dry-run] [--purge]",
    .about = "Delete the samples of the series matching each SELECTOR (match[]) in\n"
             "[--start, --end] through POST /api/v1/admin/tsdb/delete_series. Writes\n"
             "made after the delete are kept.\n",
    .help_col = 22,
    .min_args = 1,
    .max_args = -1,
    .opts = DELETE_OPTS,
    .opts_size = sizeof(delete_opts_t),
    .defaults = &DELETE_DEFAULTS,
    .run = run_delete,
};

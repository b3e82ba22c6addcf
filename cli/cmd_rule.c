/*
 * strata rule add|list|remove — compaction rules through the router's
 * /api/v1/admin/rules: add SOURCE DEST (a selector and the destination
 * metric name or {=}-selector) with --aggregation and --bucket; list
 * prints one rule a line (id, aggregation, bucket, source -> dest; a key's
 * retention: id, "retain", duration, key); remove
 * ID deletes one.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "st_err.h"

static const char *CMD = "rule";

typedef struct rule_opts {
    cli_common_t common;
    const char *aggregation, *bucket, *align, *labels;
    bool exact;
} rule_opts_t;

/* method target [form body]; 0 with the body collected, or a failure printed. */
static int call(httpc_conn_t *conn, const char *method, const char *target, const st_buf_t *form,
                st_buf_t *body)
{
    httpc_resp_t resp;
    const char *hdr = form ? "Content-Type: application/x-www-form-urlencoded\r\n" : NULL;
    int rc = httpc_request(conn, method, target, hdr, form ? form->data : NULL,
                           form ? form->len : 0, &resp, httpc_collect, body);
    if (rc < 0)
        return cli_fail(CMD, "%s",
                        *httpc_conn_errmsg(conn) ? httpc_conn_errmsg(conn) : st_strerror(rc));
    if (resp.status >= 300) {
        json_t *doc = cli_json_parse((const char *)body->data, body->len, NULL, 0);
        const char *msg = json_string_value(json_object_get(doc, "error"));
        rc = cli_fail(CMD, "HTTP %d %s: %.300s", resp.status, resp.reason,
                      msg ? msg : "(no error text)");
        json_decref(doc);
        return rc;
    }
    return 0;
}

static void form_kv(st_buf_t *f, const char *k, const char *v)
{
    if (f->len)
        st_buf_put_u8(f, '&');
    st_buf_append(f, k, strlen(k));
    st_buf_put_u8(f, '=');
    httpc_query_escape(f, v);
}

static int list(httpc_conn_t *conn)
{
    st_buf_t body;
    st_buf_init(&body);
    int ret = call(conn, "GET", "/api/v1/admin/rules", NULL, &body);
    if (ret == 0) {
        json_t *doc = cli_json_parse((const char *)body.data, body.len, NULL, 0);
        json_t *rules = json_object_get(json_object_get(doc, "data"), "rules");
        size_t i;
        json_t *r;
        json_array_foreach(rules, i, r)
        {
            json_t *keep = json_object_get(r, "retention_ms");
            if (keep) { /* a key's retention (TS.CREATE ... RETENTION) */
                printf("%-6lld %-6s %10lldms  %s\n",
                       (long long)json_integer_value(json_object_get(r, "id")), "retain",
                       (long long)json_integer_value(keep),
                       json_string_value(json_object_get(r, "source")));
                continue;
            }
            printf("%-6lld %-6s %10lldms  %s%s -> %s\n",
                   (long long)json_integer_value(json_object_get(r, "id")),
                   json_string_value(json_object_get(r, "aggregation")),
                   (long long)json_integer_value(json_object_get(r, "bucket_ms")),
                   json_string_value(json_object_get(r, "source")),
                   json_is_true(json_object_get(r, "exact")) ? " (exact)" : "",
                   json_string_value(json_object_get(r, "dest")));
        }
        json_decref(doc);
    }
    st_buf_deinit(&body);
    return ret;
}

static int run_rule(void *opts, int argc, char **argv)
{
    const rule_opts_t *o = opts;
    const char *verb = argv[0];
    int is_add = !strcmp(verb, "add"), is_list = !strcmp(verb, "list"),
        is_rm = !strcmp(verb, "remove");
    if (!is_add && !is_list && !is_rm)
        return cli_usage_error(CMD, "unknown action '%s' (add, list or remove)", verb);
    if ((is_add && argc != 3) || (is_list && argc != 1) || (is_rm && argc != 2))
        return cli_usage_error(CMD, is_add    ? "add needs SOURCE and DEST"
                                    : is_list ? "list takes no argument"
                                              : "remove needs one rule ID");
    if (is_add && (!o->aggregation || !o->bucket))
        return cli_usage_error(CMD, "add needs --aggregation and --bucket");
    httpc_url_t url;
    const char *shown;
    int rc = cli_common_router(CMD, &o->common, &url, &shown);
    if (rc != 0)
        return rc;
    httpc_conn_t *conn = cli_common_conn(&o->common, &url);
    if (!conn)
        return cli_fail(CMD, "out of memory");
    int ret;
    st_buf_t body, f;
    st_buf_init(&body);
    st_buf_init(&f);
    if (is_list) {
        ret = list(conn);
    } else if (is_add) {
        form_kv(&f, "source", argv[1]);
        form_kv(&f, "dest", argv[2]);
        form_kv(&f, "aggregation", o->aggregation);
        form_kv(&f, "bucket", o->bucket);
        if (o->align)
            form_kv(&f, "align", o->align);
        if (o->labels)
            form_kv(&f, "labels", o->labels);
        if (o->exact)
            form_kv(&f, "exact", "1");
        ret = call(conn, "POST", "/api/v1/admin/rules", &f, &body);
        if (ret == 0) {
            json_t *doc = cli_json_parse((const char *)body.data, body.len, NULL, 0);
            printf("rule %lld added\n", (long long)json_integer_value(
                                            json_object_get(json_object_get(doc, "data"), "id")));
            json_decref(doc);
        }
    } else {
        ST_BUF_LIT(&f, "/api/v1/admin/rules?id=");
        httpc_query_escape(&f, argv[1]);
        st_buf_put_u8(&f, '\0');
        ret = call(conn, "DELETE", (const char *)f.data, NULL, &body);
        if (ret == 0)
            printf("rule %s removed\n", argv[1]);
    }
    httpc_conn_destroy(conn);
    st_buf_deinit(&body);
    st_buf_deinit(&f);
    return ret;
}

static const cli_opt_t RULE_OPTS[] = {
    CLI_OPT_ROUTER,
    CLI_OPT_CONFIG,
    CLI_OPT_CHOICE(rule_opts_t, aggregation, "aggregation",
                   "avg|sum|min|max|range|count|first|last|std.p|std.s|var.p|var.s|twa",
                   " (avg|sum|min|max|range|count|first|last|std.p|std.s|var.p|var.s|twa)",
                   "--aggregation A", "add: the bucket aggregator"),
    {.name = "bucket",
     .kind = CLI_STR,
     .off = offsetof(rule_opts_t, bucket),
     .label = "--bucket D",
     .help = "add: bucket duration (1m, 10s, 500ms, or seconds)"},
    {.name = "align",
     .kind = CLI_STR,
     .off = offsetof(rule_opts_t, align),
     .label = "--align MS",
     .help = "add: buckets start at MS + k * bucket (default 0)"},
    {.name = "labels",
     .kind = CLI_STR,
     .off = offsetof(rule_opts_t, labels),
     .label = "--labels K=V,...",
     .help = "add: labels added to the destination"},
    CLI_OPT_FLAG(rule_opts_t, exact, "exact", "add: SOURCE names exactly one series (its labels)"),
    CLI_OPT_TIMEOUT("inactivity timeout"),
    CLI_OPT_END,
};

static const rule_opts_t RULE_DEFAULTS = {.common = CLI_COMMON_DEFAULTS};

const cli_cmd_t cli_cmd_rule = {
    .name = "rule",
    .args = "add|list|remove [ARGS]",
    .summary = "manage compaction rules (downsampling into other series)",
    .synopsis = "rule add SOURCE DEST --aggregation A --bucket D [--align MS] [--labels K=V,...]\n"
                "       [--exact] | rule list | rule remove ID",
    .about = "Compaction rules aggregate each series SOURCE matches into buckets written to\n"
             "DEST (a metric name, or NAME{k=\"v\"}) as samples arrive, on every node of the\n"
             "cluster (/api/v1/admin/rules).\n",
    .help_col = 22,
    .min_args = 1,
    .max_args = 3,
    .opts = RULE_OPTS,
    .opts_size = sizeof(rule_opts_t),
    .defaults = &RULE_DEFAULTS,
    .run = run_rule,
};

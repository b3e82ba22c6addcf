/*
 * strata export SELECTOR... — GET /api/v1/export and stream the response to
 * stdout as it arrives: --format json passes the router's lines through
 * unchanged (one {"metric":{...},"values":[...],"timestamps":[...]} object
 * per series per line); --format csv turns each line into
 * "series,timestamp,value" rows (series in PromQL notation, timestamp in ms
 * as sent, value as sent).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "st_err.h"

static const char *CMD = "export";

#define MAX_LINE ((size_t)512 << 20)

typedef struct ectx {
    const httpc_resp_t *resp;
    bool csv;
    st_buf_t line;  /* csv: partial line */
    st_buf_t out;   /* csv: rows */
    st_buf_t error; /* non-200 body */
    uint64_t series, samples;
    bool closed; /* stdout's reader is gone: stop quietly */
    char fail[256];
} ectx_t;

/* cli_stdout_write() or, with flush, cli_stdout_flush(): 0 or ST_EIO (e->closed or e->fail). */
static int write_out(ectx_t *e, const void *p, size_t n, bool flush)
{
    int rc = flush ? cli_stdout_flush() : cli_stdout_write(p, n);
    if (rc == CLI_STDOUT_CLOSED)
        e->closed = true;
    else if (rc < 0)
        snprintf(e->fail, sizeof(e->fail), "writing stdout: %s", strerror(errno));
    return rc == 0 ? 0 : ST_EIO;
}

/* One export line -> CSV rows. */
static int csv_line(ectx_t *e, const char *s, size_t n)
{
    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' '))
        n--;
    if (n == 0)
        return 0;
    char err[200];
    json_t *doc = cli_json_parse(s, n, err, sizeof(err));
    if (doc == NULL) {
        snprintf(e->fail, sizeof(e->fail), "bad export line %llu from the router: %s",
                 (unsigned long long)e->series + 1, err);
        return ST_EPARSE;
    }
    json_t *vals = json_object_get(doc, "values"), *ts = json_object_get(doc, "timestamps");
    st_buf_t series;
    st_buf_init(&series);
    int rc = cli_fmt_series(&series, json_object_get(doc, "metric"));
    st_buf_reset(&e->out);
    size_t nrows =
        json_array_size(vals) < json_array_size(ts) ? json_array_size(vals) : json_array_size(ts);
    for (size_t i = 0; rc == 0 && i < nrows; i++) {
        char vb[CLI_JSON_NUMBUF], tb[CLI_JSON_NUMBUF];
        size_t vl, tl;
        const char *vt = cli_json_text(json_array_get(vals, i), vb, &vl);
        const char *tt = cli_json_text(json_array_get(ts, i), tb, &tl);
        if ((rc = cli_csv_field(&e->out, (const char *)series.data, series.len)) < 0 ||
            (rc = st_buf_put_u8(&e->out, ',')) < 0 || (rc = cli_csv_field(&e->out, tt, tl)) < 0 ||
            (rc = st_buf_put_u8(&e->out, ',')) < 0 || (rc = cli_csv_field(&e->out, vt, vl)) < 0 ||
            (rc = st_buf_put_u8(&e->out, '\n')) < 0)
            break;
        e->samples++;
    }
    e->series++;
    if (rc == 0)
        rc = write_out(e, e->out.data, e->out.len, false);
    st_buf_deinit(&series);
    json_decref(doc);
    return rc;
}

static int on_body(void *ud, const char *p, size_t n)
{
    ectx_t *e = ud;
    if (e->resp->status != 200)
        return e->error.len + n > (1 << 20) ? 0 : st_buf_append(&e->error, p, n);
    if (!e->csv) {
        int rc = write_out(e, p, n, false);
        return rc == 0 ? write_out(e, NULL, 0, true) : rc;
    }
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (e->line.len + take > MAX_LINE) {
            snprintf(e->fail, sizeof(e->fail), "an export line is over %zu MiB", MAX_LINE >> 20);
            return ST_ELIMIT;
        }
        if (st_buf_append(&e->line, p, take) < 0)
            return ST_ENOMEM;
        if (nl == NULL)
            break;
        int rc = csv_line(e, (const char *)e->line.data, e->line.len);
        if (rc < 0)
            return rc;
        st_buf_reset(&e->line);
        p += take + 1;
        n -= take + 1;
    }
    return write_out(e, NULL, 0, true);
}

typedef struct export_opts {
    cli_common_t common;
    double start, end;
    bool has_start, has_end;
    const char *format;
} export_opts_t;

static int run_export(void *opts, int argc, char **argv)
{
    const export_opts_t *o = opts;
    bool csv = strcmp(o->format, "csv") == 0;
    httpc_url_t url;
    const char *shown;
    int rc = cli_common_router(CMD, &o->common, &url, &shown);
    if (rc != 0)
        return rc;
    st_buf_t target;
    st_buf_init(&target);
    st_buf_append(&target, "/api/v1/export?", 15);
    for (int i = 0; i < argc; i++) {
        st_buf_append(&target, i > 0 ? "&match%5B%5D=" : "match%5B%5D=", i > 0 ? 13 : 12);
        httpc_query_escape(&target, argv[i]);
    }
    char num[64];
    if (o->has_start) {
        snprintf(num, sizeof(num), "&start=%.3f", o->start);
        st_buf_append(&target, num, strlen(num));
    }
    if (o->has_end) {
        snprintf(num, sizeof(num), "&end=%.3f", o->end);
        st_buf_append(&target, num, strlen(num));
    }
    if (st_buf_put_u8(&target, '\0') < 0) {
        st_buf_deinit(&target);
        return cli_fail(CMD, "out of memory");
    }
    httpc_conn_t *conn = cli_common_conn(&o->common, &url);
    if (conn == NULL) {
        st_buf_deinit(&target);
        return cli_fail(CMD, "out of memory");
    }
    httpc_resp_t resp;
    ectx_t e = {.resp = &resp, .csv = csv};
    st_buf_init(&e.line);
    st_buf_init(&e.out);
    st_buf_init(&e.error);
    int ret = CLI_EXIT_OK;
    static const char CSV_HEAD[] = "series,timestamp,value\n";
    rc = csv ? write_out(&e, CSV_HEAD, sizeof(CSV_HEAD) - 1, false) : 0;
    if (rc == 0)
        rc = httpc_request(conn, "GET", (const char *)target.data, NULL, NULL, 0, &resp, on_body,
                           &e);
    if (rc == 0 && resp.status == 200 && csv && e.line.len > 0)
        rc = csv_line(&e, (const char *)e.line.data, e.line.len); /* no final newline */
    if (rc == 0 && !e.closed)
        rc = write_out(&e, NULL, 0, true);
    if (e.closed) {
        /* the reader closed stdout (`| head`): done, quietly */
    } else if (rc < 0) {
        ret = cli_fail(CMD, "%s",
                       *e.fail                    ? e.fail
                       : *httpc_conn_errmsg(conn) ? httpc_conn_errmsg(conn)
                                                  : st_strerror(rc));
    } else if (resp.status != 200) {
        json_t *doc = cli_json_parse((const char *)e.error.data, e.error.len, NULL, 0);
        const char *msg = json_string_value(json_object_get(doc, "error"));
        st_buf_put_u8(&e.error, '\0');
        ret = cli_fail(CMD, "HTTP %d %s: %.300s", resp.status, resp.reason,
                       msg ? msg : (const char *)e.error.data);
        json_decref(doc);
    }
    httpc_conn_destroy(conn);
    st_buf_deinit(&target);
    st_buf_deinit(&e.line);
    st_buf_deinit(&e.out);
    st_buf_deinit(&e.error);
    return ret;
}

static const cli_opt_t EXPORT_OPTS[] = {
    CLI_OPT_ROUTER,
    CLI_OPT_CONFIG,
    {.name = "start",
     .kind = CLI_TIME,
     .off = offsetof(export_opts_t, start),
     .given = CLI_GIVEN(export_opts_t, has_start),
     .label = "--start T, --end T",
     .help = "RFC 3339, unix seconds, 'now' or relative ('-1h', 'now-30m')"},
    {.name = "end",
     .kind = CLI_TIME,
     .off = offsetof(export_opts_t, end),
     .given = CLI_GIVEN(export_opts_t, has_end)},
    CLI_OPT_CHOICE(export_opts_t, format, "format", "json|csv", " (json|csv)", "--format F",
                   "json (default: the router's lines unchanged) or csv\n"
                   "(header series,timestamp,value; timestamps in ms)"),
    CLI_OPT_TIMEOUT("inactivity timeout"),
    CLI_OPT_END,
};

static const export_opts_t EXPORT_DEFAULTS = {.common = CLI_COMMON_DEFAULTS, .format = "json"};

const cli_cmd_t cli_cmd_export = {
    .name = "export",
    .args = "SELECTOR",
    .summary = "raw samples as JSON lines or CSV",
    .synopsis = "export SELECTOR... [--start T] [--end T] [--format json|csv]",
    .about = "Stream raw samples of the series matching each SELECTOR (match[]) from\n"
             "GET /api/v1/export to stdout.\n",
    .help_col = 22,
    .min_args = 1,
    .max_args = -1,
    .opts = EXPORT_OPTS,
    .opts_size = sizeof(export_opts_t),
    .defaults = &EXPORT_DEFAULTS,
    .run = run_export,
};

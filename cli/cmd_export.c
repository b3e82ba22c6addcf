/*
 * strata export SELECTOR... — GET /api/v1/export and stream the response to
 * stdout as it arrives: --format json passes the router's lines through
 * unchanged (one {"metric":{...},"values":[...],"timestamps":[...]} object
 * per series per line); --format csv turns each line into
 * "series,timestamp,value" rows (series in PromQL notation, timestamp in ms
 * as sent, value as sent).
 */
#include <errno.h>
#include <getopt.h>
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
    char fail[256];
} ectx_t;

static void help(void)
{
    printf("usage: strata export SELECTOR... [--start T] [--end T] [--format json|csv]\n"
           "\n"
           "Stream raw samples of the series matching each SELECTOR (match[]) from\n"
           "GET /api/v1/export to stdout.\n"
           "  --router URL        router address (default %s, env STRATA_ROUTER)\n"
           "  --start T, --end T  RFC 3339, unix seconds, 'now' or relative ('-1h', 'now-30m')\n"
           "  --format F          json (default: the router's lines unchanged) or csv\n"
           "                      (header series,timestamp,value; timestamps in ms)\n"
           "  --timeout SECS      inactivity timeout (default %d)\n",
           CLI_DEFAULT_ROUTER, CLI_IO_TIMEOUT_MS / 1000);
}

static int write_out(ectx_t *e, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, stdout) != n) {
        snprintf(e->fail, sizeof(e->fail), "writing stdout: %s", strerror(errno));
        return ST_EIO;
    }
    return 0;
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
        rc = write_out(e, e->out.data, e->out.len);
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
        int rc = write_out(e, p, n);
        fflush(stdout);
        return rc;
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
    fflush(stdout);
    return 0;
}

int cmd_export(int argc, char **argv)
{
    static const struct option opts[] = {{"router", required_argument, NULL, 'r'},
                                         {"start", required_argument, NULL, 's'},
                                         {"end", required_argument, NULL, 'e'},
                                         {"format", required_argument, NULL, 'f'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *router = NULL;
    const char *start = NULL, *end = NULL;
    bool csv = false;
    double timeout = CLI_IO_TIMEOUT_MS / 1000.0, now = (double)time(NULL), ts_start, ts_end;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
            router = optarg;
            break;
        case 's':
            if (cli_parse_time(optarg, now, &ts_start) < 0)
                return cli_usage_error(CMD, "bad --start '%s'", optarg);
            start = optarg;
            break;
        case 'e':
            if (cli_parse_time(optarg, now, &ts_end) < 0)
                return cli_usage_error(CMD, "bad --end '%s'", optarg);
            end = optarg;
            break;
        case 'f':
            if (strcmp(optarg, "csv") == 0)
                csv = true;
            else if (strcmp(optarg, "json") != 0)
                return cli_usage_error(CMD, "bad --format '%s' (json|csv)", optarg);
            break;
        case 't':
            if (cli_parse_duration(optarg, &timeout) < 0 || timeout <= 0)
                return cli_usage_error(CMD, "bad --timeout '%s'", optarg);
            break;
        case 'h':
            help();
            return CLI_EXIT_OK;
        default:
            return cli_usage_error(CMD, "bad option");
        }
    }
    if (optind >= argc)
        return cli_usage_error(CMD, "missing SELECTOR");
    httpc_url_t url;
    const char *shown;
    if (cli_router(router, &url, &shown) < 0)
        return cli_usage_error(CMD, "bad router URL '%s' (want http://HOST:PORT)", shown);
    st_buf_t target;
    st_buf_init(&target);
    st_buf_append(&target, "/api/v1/export?", 15);
    for (int i = optind; i < argc; i++) {
        st_buf_append(&target, i > optind ? "&match%5B%5D=" : "match%5B%5D=", i > optind ? 13 : 12);
        httpc_query_escape(&target, argv[i]);
    }
    char num[64];
    if (start) {
        snprintf(num, sizeof(num), "&start=%.3f", ts_start);
        st_buf_append(&target, num, strlen(num));
    }
    if (end) {
        snprintf(num, sizeof(num), "&end=%.3f", ts_end);
        st_buf_append(&target, num, strlen(num));
    }
    if (st_buf_put_u8(&target, '\0') < 0) {
        st_buf_deinit(&target);
        return cli_fail(CMD, "out of memory");
    }
    httpc_conn_t *conn = httpc_conn_create(&url, CLI_CONNECT_TIMEOUT_MS, (int)(timeout * 1000));
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
    if (csv)
        printf("series,timestamp,value\n");
    int rc =
        httpc_request(conn, "GET", (const char *)target.data, NULL, NULL, 0, &resp, on_body, &e);
    if (rc == 0 && resp.status == 200 && csv && e.line.len > 0)
        rc = csv_line(&e, (const char *)e.line.data, e.line.len); /* no final newline */
    fflush(stdout);
    if (rc < 0) {
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

/*
 * strata query PROMQL — GET /api/v1/query (instant) or /api/v1/query_range
 * (when --start, --end or --step is given) and print the Prometheus result:
 * a table for vectors and scalars; for matrices a summary row per series
 * (points, min, max, last), an ASCII chart when there are few series, and
 * every point with --values. On {"status":"error"} the errorType and error
 * go to stderr and the exit code is 1.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "st_err.h"

static const char *CMD = "query";

#define CHART_MAX_SERIES 6
static const char CHART_SYMS[CHART_MAX_SERIES] = {'*', '+', 'o', 'x', '#', '@'};

static const char *series_text(st_buf_t *b, json_t *metric)
{
    st_buf_reset(b);
    if (cli_fmt_series(b, metric) < 0 || st_buf_put_u8(b, '\0') < 0)
        return "?";
    return (const char *)b->data;
}

static int term_width(void)
{
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
        return ws.ws_col;
    return 80;
}

/* Width of the SERIES column: the longest series, between 6 and 100. */
static int series_width(st_buf_t *b, json_t *result)
{
    size_t w = 6, i;
    json_t *s;
    json_array_foreach(result, i, s)
    {
        size_t l = strlen(series_text(b, json_object_get(s, "metric")));
        w = l > w ? l : w;
    }
    return w > 100 ? 100 : (int)w;
}

/* Time (element 0) and value text (element 1) of a [time, "value"] pair. */
static double pair_time(json_t *p)
{
    return cli_json_num(json_array_get(p, 0), NAN);
}

static double pair_value(json_t *p)
{
    return cli_json_num(json_array_get(p, 1), NAN);
}

static const char *pair_text(json_t *p, char nb[CLI_JSON_NUMBUF])
{
    return cli_json_text(json_array_get(p, 1), nb, NULL);
}

static void print_vector(json_t *result)
{
    st_buf_t b;
    st_buf_init(&b);
    int w = series_width(&b, result);
    printf("%-*s  %-20s  %s\n", w, "SERIES", "VALUE", "TIMESTAMP");
    size_t i;
    json_t *s;
    json_array_foreach(result, i, s)
    {
        json_t *v = json_object_get(s, "value");
        char tbuf[40], nb[CLI_JSON_NUMBUF];
        cli_fmt_time(tbuf, sizeof(tbuf), pair_time(v));
        printf("%-*s  %-20s  %s\n", w, series_text(&b, json_object_get(s, "metric")),
               pair_text(v, nb), tbuf);
    }
    if (json_array_size(result) == 0)
        printf("(empty result)\n");
    st_buf_deinit(&b);
}

static void print_chart(json_t *result, int width)
{
    double tmin = INFINITY, tmax = -INFINITY, vmin = INFINITY, vmax = -INFINITY;
    size_t i, j;
    json_t *s, *p;
    json_array_foreach(result, i, s)
    {
        json_array_foreach(json_object_get(s, "values"), j, p)
        {
            double t = pair_time(p), v = pair_value(p);
            if (!isfinite(t) || !isfinite(v))
                continue;
            tmin = t < tmin ? t : tmin;
            tmax = t > tmax ? t : tmax;
            vmin = v < vmin ? v : vmin;
            vmax = v > vmax ? v : vmax;
        }
    }
    if (!isfinite(tmin) || !isfinite(vmin))
        return;
    enum { H = 12 };
    char ylab[3][32];
    snprintf(ylab[0], sizeof(ylab[0]), "%.6g", vmax);
    snprintf(ylab[1], sizeof(ylab[1]), "%.6g", (vmax + vmin) / 2);
    snprintf(ylab[2], sizeof(ylab[2]), "%.6g", vmin);
    int lw = 0;
    for (int k = 0; k < 3; k++)
        lw = (int)strlen(ylab[k]) > lw ? (int)strlen(ylab[k]) : lw;
    int W = width - lw - 4;
    if (W > 120)
        W = 120;
    if (W < 10)
        W = 10;
    char grid[H][121];
    for (int r = 0; r < H; r++) {
        memset(grid[r], ' ', (size_t)W);
        grid[r][W] = '\0';
    }
    json_array_foreach(result, i, s)
    {
        json_array_foreach(json_object_get(s, "values"), j, p)
        {
            double t = pair_time(p), v = pair_value(p);
            if (!isfinite(t) || !isfinite(v))
                continue;
            int col = tmax > tmin ? (int)lround((t - tmin) / (tmax - tmin) * (W - 1)) : W / 2;
            int row = vmax > vmin ? (int)lround((v - vmin) / (vmax - vmin) * (H - 1)) : H / 2;
            char *cell = &grid[H - 1 - row][col];
            *cell = (*cell == ' ' || *cell == CHART_SYMS[i]) ? CHART_SYMS[i] : '%';
        }
    }
    printf("\n");
    for (int r = 0; r < H; r++) {
        const char *lab = r == 0 ? ylab[0] : r == H / 2 ? ylab[1] : r == H - 1 ? ylab[2] : "";
        printf("%*s |%s\n", lw, lab, grid[r]);
    }
    printf("%*s +", lw, "");
    for (int k = 0; k < W; k++)
        putchar('-');
    char t0[40], t1[40];
    cli_fmt_time(t0, sizeof(t0), tmin);
    cli_fmt_time(t1, sizeof(t1), tmax);
    int gap = W - (int)strlen(t0) - (int)strlen(t1);
    printf("\n%*s  %s%*s%s\n", lw, "", t0, gap > 1 ? gap : 1, "", t1);
    st_buf_t b;
    st_buf_init(&b);
    json_array_foreach(result, i, s)
    {
        printf("%*s  %c %s\n", lw, "", CHART_SYMS[i],
               series_text(&b, json_object_get(s, "metric")));
    }
    if (json_array_size(result) > 1)
        printf("%*s  %% overlapping points\n", lw, "");
    st_buf_deinit(&b);
}

static void print_matrix(json_t *result, bool values, bool chart)
{
    st_buf_t b;
    st_buf_init(&b);
    int w = series_width(&b, result);
    size_t i, j;
    json_t *s, *p;
    char nb[CLI_JSON_NUMBUF];
    if (values) {
        printf("%-*s  %-24s  %s\n", w, "SERIES", "TIMESTAMP", "VALUE");
        json_array_foreach(result, i, s)
        {
            const char *name = series_text(&b, json_object_get(s, "metric"));
            json_array_foreach(json_object_get(s, "values"), j, p)
            {
                char tbuf[40];
                cli_fmt_time(tbuf, sizeof(tbuf), pair_time(p));
                printf("%-*s  %-24s  %s\n", w, name, tbuf, pair_text(p, nb));
            }
        }
        printf("\n");
    }
    printf("%-*s  %6s  %-14s  %-14s  %s\n", w, "SERIES", "POINTS", "MIN", "MAX", "LAST");
    json_array_foreach(result, i, s)
    {
        json_t *vals = json_object_get(s, "values");
        double mn = INFINITY, mx = -INFINITY;
        const char *last = "-";
        json_array_foreach(vals, j, p)
        {
            double v = pair_value(p);
            last = pair_text(p, nb);
            if (isnan(v))
                continue;
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
        char smn[32] = "-", smx[32] = "-";
        if (mn <= mx) {
            snprintf(smn, sizeof(smn), "%.10g", mn);
            snprintf(smx, sizeof(smx), "%.10g", mx);
        }
        printf("%-*s  %6zu  %-14s  %-14s  %s\n", w, series_text(&b, json_object_get(s, "metric")),
               json_array_size(vals), smn, smx, last);
    }
    if (json_array_size(result) == 0)
        printf("(empty result)\n");
    if (chart && json_array_size(result) > 0 && json_array_size(result) <= CHART_MAX_SERIES)
        print_chart(result, term_width());
    st_buf_deinit(&b);
}

static void append_param(st_buf_t *t, const char *k, const char *v)
{
    st_buf_put_u8(t, '&');
    st_buf_append(t, k, strlen(k));
    st_buf_put_u8(t, '=');
    httpc_query_escape(t, v);
}

typedef struct query_opts {
    cli_common_t common;
    double t_eval, t_start, t_end, step;
    bool has_time, has_start, has_end, has_step;
    bool values, no_chart, raw;
} query_opts_t;

static int run_query(void *opts, int argc, char **argv)
{
    (void)argc;
    query_opts_t *o = opts;
    bool range = o->has_start || o->has_end || o->has_step;
    if (range && o->has_time)
        return cli_usage_error(CMD, "--time is for instant queries; use --start/--end/--step");
    if (range) {
        if (!o->has_end)
            o->t_end = o->common.now;
        if (!o->has_start)
            o->t_start = o->t_end - 3600;
        if (o->t_end < o->t_start)
            return cli_usage_error(CMD, "--end is before --start");
        if (!o->has_step) {
            o->step = ceil((o->t_end - o->t_start) / 240.0);
            if (o->step < 1)
                o->step = 1;
        }
    }
    httpc_url_t url;
    const char *shown;
    int rc = cli_common_router(CMD, &o->common, &url, &shown);
    if (rc != 0)
        return rc;

    st_buf_t target, body;
    st_buf_init(&target);
    st_buf_init(&body);
    const char *path = range ? "/api/v1/query_range?query=" : "/api/v1/query?query=";
    st_buf_append(&target, path, strlen(path));
    httpc_query_escape(&target, argv[0]);
    char num[64];
    if (range) {
        snprintf(num, sizeof(num), "%.3f", o->t_start);
        append_param(&target, "start", num);
        snprintf(num, sizeof(num), "%.3f", o->t_end);
        append_param(&target, "end", num);
        snprintf(num, sizeof(num), "%.3f", o->step);
        append_param(&target, "step", num);
    } else if (o->has_time) {
        snprintf(num, sizeof(num), "%.3f", o->t_eval);
        append_param(&target, "time", num);
    }
    int ret = CLI_EXIT_FAIL;
    json_t *root = NULL;
    httpc_conn_t *conn = cli_common_conn(&o->common, &url);
    if (conn == NULL || st_buf_put_u8(&target, '\0') < 0) {
        ret = cli_fail(CMD, "out of memory");
        goto out;
    }
    httpc_resp_t resp;
    rc = cli_get(conn, (const char *)target.data, &resp, &body);
    if (rc < 0) {
        ret = cli_fail(CMD, "%s",
                       *httpc_conn_errmsg(conn) ? httpc_conn_errmsg(conn) : st_strerror(rc));
        goto out;
    }
    if (o->raw) {
        fwrite(body.data, 1, body.len, stdout);
        if (body.len == 0 || body.data[body.len - 1] != '\n')
            putchar('\n');
        ret = resp.status == 200 ? CLI_EXIT_OK : cli_fail(CMD, "HTTP %d", resp.status);
        goto out;
    }
    char err[160];
    root = cli_json_parse((const char *)body.data, body.len, err, sizeof(err));
    const char *status = json_string_value(json_object_get(root, "status"));
    if (status == NULL) {
        st_buf_put_u8(&body, '\0');
        ret = cli_fail(CMD, "HTTP %d %s: %.300s", resp.status, resp.reason,
                       body.len > 1 ? (const char *)body.data : "(empty body)");
        goto out;
    }
    size_t i;
    json_t *wn;
    char nb[CLI_JSON_NUMBUF];
    json_array_foreach(json_object_get(root, "warnings"), i, wn)
    {
        fprintf(stderr, "warning: %s\n", cli_json_text(wn, nb, NULL));
    }
    if (strcmp(status, "success") != 0) {
        const char *et = json_string_value(json_object_get(root, "errorType"));
        const char *e = json_string_value(json_object_get(root, "error"));
        ret = cli_fail(CMD, "%s%s%s", et ? et : "", et ? ": " : "", e ? e : "query failed");
        goto out;
    }
    json_t *data = json_object_get(root, "data");
    const char *rtype = json_string_value(json_object_get(data, "resultType"));
    json_t *result = json_object_get(data, "result");
    if (rtype == NULL || result == NULL) {
        ret = cli_fail(CMD, "no data.resultType/data.result in the response");
        goto out;
    }
    if (strcmp(rtype, "vector") == 0 && json_is_array(result)) {
        print_vector(result);
    } else if (strcmp(rtype, "matrix") == 0 && json_is_array(result)) {
        print_matrix(result, o->values, !o->no_chart);
    } else if ((strcmp(rtype, "scalar") == 0 || strcmp(rtype, "string") == 0) &&
               json_is_array(result)) {
        char tbuf[40];
        cli_fmt_time(tbuf, sizeof(tbuf), pair_time(result));
        printf("%s  %s  %s\n", rtype, pair_text(result, nb), tbuf);
    } else {
        ret = cli_fail(CMD, "unknown resultType '%s'", rtype);
        goto out;
    }
    ret = CLI_EXIT_OK;
out:
    fflush(stdout);
    json_decref(root);
    httpc_conn_destroy(conn);
    st_buf_deinit(&target);
    st_buf_deinit(&body);
    return ret;
}

#define Q_TIME(nm, field, seen, lab, text)                                                         \
    {                                                                                              \
        .name = nm, .kind = CLI_TIME, .off = offsetof(query_opts_t, field),                        \
        .given = CLI_GIVEN(query_opts_t, seen), .label = lab, .help = text                         \
    }

static const cli_opt_t QUERY_OPTS[] = {
    CLI_OPT_ROUTER,
    CLI_OPT_CONFIG,
    Q_TIME("time", t_eval, has_time, "--time T",
           "evaluation time of an instant query (default: the router's now)"),
    /* the label is longer than the column: the text brings its own gap */
    Q_TIME("start", t_start, has_start, "--start T, --end T",
           "   RFC 3339, unix seconds, 'now' or relative ('-1h', 'now-30m')"),
    Q_TIME("end", t_end, has_end, NULL, NULL),
    {.name = "step",
     .kind = CLI_DURATION,
     .off = offsetof(query_opts_t, step),
     .given = CLI_GIVEN(query_opts_t, has_step),
     .lo = 0,
     .lo_open = true,
     .hi = INFINITY,
     .label = "--step S",
     .help = "range step: 15s, 1m, 1h or seconds"},
    CLI_OPT_FLAG(query_opts_t, values, "values", "range: print every point, not only the summary"),
    CLI_OPT_FLAG(query_opts_t, no_chart, "no-chart", "range: no ASCII chart"),
    CLI_OPT_FLAG(query_opts_t, raw, "raw", "print the router's JSON unchanged"),
    CLI_OPT_TIMEOUT("inactivity timeout"),
    CLI_OPT_END,
};

static const query_opts_t QUERY_DEFAULTS = {.common = CLI_COMMON_DEFAULTS};

const cli_cmd_t cli_cmd_query = {
    .name = "query",
    .args = "PROMQL",
    .summary = "instant or range query, as a table or chart",
    .synopsis = "query PROMQL [--time T] [--start T --end T --step S] [options]",
    .about = "Run a PromQL query: instant (GET /api/v1/query) or, with --start/--end/--step,\n"
             "range (GET /api/v1/query_range; --end defaults to now, --start to end-1h,\n"
             "--step to about 1/240 of the range).\n",
    .help_col = 19,
    .min_args = 1,
    .max_args = 1,
    .too_many = "too many arguments (quote the query)",
    .opts = QUERY_OPTS,
    .opts_size = sizeof(query_opts_t),
    .defaults = &QUERY_DEFAULTS,
    .run = run_query,
};

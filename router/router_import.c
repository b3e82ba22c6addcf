/*
 * router_import — the other doors in and out: /api/v1/import (JSON lines),
 * /api/v1/import/prometheus, /api/v1/import/csv, /api/v1/export/csv; the
 * endpoints Grafana and Prometheus client libraries probe
 * (/api/v1/status/buildinfo, metadata, query_exemplars, format_query,
 * rules, alerts); and a minimal InfluxDB 1.x /query for the clients that
 * call it before writing.
 *
 * Imports decode with import.h on the thread pool and go through the
 * /write pipeline (router_write_decoded: gzip, grouping and placement in
 * wbatch.h, delivery, 204 / 400 naming the bad lines / 503). CSV export is
 * /api/v1/export with rows in place of JSON lines (router_handle_export_as).
 *
 * /query answers from the index; the metric-name mapping of line protocol
 * (measurement m, field f -> metric m_f) is read back as: measurement = the
 * metric name up to its first '_', field = the rest ("value" for a name
 * without '_'). One database is listed: "strata" (writes ignore db=).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_util.h"
#include "import.h"
#include "promql.h"
#include "router.h"
#include "router_import.h"
#include "selector.h"
#include "st_err.h"
#include "st_text.h"
#include "strata.pb-c.h"
#include "wbatch.h"

#define IMPORT_FORMAT_MAX 4096 /* bytes of a format= spec */
#define INFLUX_QUERY_MAX 4096  /* bytes of q= */
#define INFLUX_NAME_MAX 256    /* bytes of a measurement name in FROM */
#define INFLUX_DB "strata"
#define TSDB_DEFAULT_LIMIT 10   /* limit= of /api/v1/status/tsdb */
#define TSDB_MAX_LIMIT 10000    /* largest limit= */
#define TSDB_MAX_PAIRS 10000000 /* distinct label pairs one answer may sum */

enum { IMP_JSON, IMP_PROM, IMP_CSV };

static struct {
    metric_counter_t *req[3], *bad_req, *influx_ok, *influx_bad;
} im;

int router_import_metrics(router_t *r)
{
    static const char *fmt[3] = {"json", "prometheus", "csv"};
    for (int i = 0; i < 3; i++)
        if (!(im.req[i] = metrics_counter(r->metrics, "strata_router_import_requests_total",
                                          "Import requests by format (/api/v1/import*).", "format",
                                          fmt[i], NULL)))
            return ST_ENOMEM;
    im.bad_req = metrics_counter(r->metrics, "strata_router_import_refused_total",
                                 "Import and CSV export requests refused before decoding "
                                 "(bad format=, timestamp=, method).",
                                 NULL);
    im.influx_ok =
        metrics_counter(r->metrics, "strata_router_influx_queries_total",
                        "InfluxDB 1.x /query statements by result.", "result", "ok", NULL);
    im.influx_bad =
        metrics_counter(r->metrics, "strata_router_influx_queries_total",
                        "InfluxDB 1.x /query statements by result.", "result", "refused", NULL);
    return im.bad_req && im.influx_ok && im.influx_bad ? 0 : ST_ENOMEM;
}

/* ---- imports ------------------------------------------------------------ */

typedef struct iarg {
    int kind;
    int64_t ts; /* default timestamp (prometheus); 0: the request's clock */
    int has_ts;
    imp_csv_spec_t *spec;
} iarg_t;

static __thread imp_t *tl_imp;

static int on_series(void *arg, uint64_t line, const st_label_t *l, size_t n, const int64_t *ts,
                     const double *v, size_t cnt)
{
    return wbatch_add_series(arg, line, l, n, ts, v, cnt);
}

static void on_bad(void *arg, uint64_t line, const char *reason)
{
    wbatch_reject(arg, line, reason);
}

static int decode(void *arg, struct wbatch *b, const char *body, size_t len, int64_t now_ms)
{
    iarg_t *a = arg;
    if (!tl_imp && imp_create(&tl_imp))
        return ST_ENOMEM;
    int64_t dflt = a->has_ts ? a->ts : now_ms;
    int rc = a->kind == IMP_JSON ? imp_json(tl_imp, body, len, on_series, on_bad, b)
             : a->kind == IMP_PROM
                 ? imp_prom(tl_imp, body, len, dflt, on_series, on_bad, b)
                 : imp_csv(tl_imp, a->spec, body, len, dflt, on_series, on_bad, b);
    return rc < 0 ? rc : 0;
}

static void free_iarg(void *arg)
{
    iarg_t *a = arg;
    imp_csv_spec_free(a->spec);
    free(a);
}

static const router_decoder_t import_decoder = {decode, free_iarg};

static void refuse(http_req_t *req, int status, const char *msg)
{
    metric_counter_inc(im.bad_req);
    http_respond_error(req, status, msg);
}

static void start_import(router_t *r, http_req_t *req, int kind)
{
    if (req->method != HTTP_METHOD_POST) {
        refuse(req, 405, "use POST");
        return;
    }
    metric_counter_inc(im.req[kind]);
    iarg_t *a = calloc(1, sizeof *a);
    if (!a) {
        http_respond_error(req, 503, "out of memory");
        return;
    }
    a->kind = kind;
    char msg[400];
    const char *v;
    if (kind == IMP_PROM && (v = http_req_param(req, "timestamp")) && *v) {
        /* integer: milliseconds (as VictoriaMetrics); else RFC 3339 */
        char *end;
        long long x = strtoll(v, &end, 10);
        if (*end == '\0')
            a->ts = x;
        else if (http_parse_time_ms(v, strlen(v), &a->ts) != 0) {
            snprintf(msg, sizeof msg,
                     "invalid timestamp '%.64s' (integer milliseconds or RFC 3339)", v);
            free(a);
            refuse(req, 400, msg);
            return;
        }
        a->has_ts = 1;
    }
    if (kind == IMP_CSV) {
        v = http_req_param(req, "format");
        if (!v || !*v) {
            free(a);
            refuse(req, 400,
                   "missing format= (e.g. format=1:metric:price,2:label:ticker,3:time:unix_s)");
            return;
        }
        char err[300];
        size_t n = strlen(v);
        int rc = n > IMPORT_FORMAT_MAX ? ST_ELIMIT
                                       : imp_csv_spec_parse(v, n, 0, &a->spec, err, sizeof err);
        if (rc) {
            snprintf(msg, sizeof msg, "invalid format: %s",
                     rc == ST_ELIMIT ? "longer than 4096 bytes" : err);
            free(a);
            refuse(req, rc == ST_ENOMEM ? 503 : 400, msg);
            return;
        }
    }
    router_write_decoded(r, req, &import_decoder, a);
}

void router_handle_import(router_t *r, http_req_t *req)
{
    start_import(r, req, IMP_JSON);
}

void router_handle_import_prom(router_t *r, http_req_t *req)
{
    start_import(r, req, IMP_PROM);
}

void router_handle_import_csv(router_t *r, http_req_t *req)
{
    start_import(r, req, IMP_CSV);
}

/* ---- CSV export --------------------------------------------------------- */

static int csv_line(void *arg, st_buf_t *b, const st_label_t *l, size_t nl, const int64_t *ts,
                    const double *v, size_t n)
{
    return imp_csv_rows(b, arg, l, nl, ts, v, n);
}

static void free_spec(void *arg)
{
    imp_csv_spec_free(arg);
}

static const router_export_fmt_t csv_fmt = {"text/csv; charset=utf-8", csv_line, free_spec};

void router_handle_export_csv(router_t *r, http_req_t *req)
{
    http_params_t params;
    char err[300], msg[400];
    if (router_read_load(req, &params, err, sizeof err)) {
        http_params_deinit(&params);
        router_prom_error(req, 400, "bad_data", err);
        return;
    }
    const char *v = http_params_get(&params, "format");
    imp_csv_spec_t *spec = NULL;
    int rc = !v || !*v ? ST_EINVAL
             : strlen(v) > IMPORT_FORMAT_MAX
                 ? ST_ELIMIT
                 : imp_csv_spec_parse(v, strlen(v), 1, &spec, err, sizeof err);
    if (rc) {
        snprintf(msg, sizeof msg, "%s",
                 !v || !*v         ? "missing format= (e.g. format=__name__,__value__,"
                                     "__timestamp__:unix_ms,host or 1:metric:cpu,2:label:host,"
                                     "3:time:rfc3339)"
                 : rc == ST_ELIMIT ? "invalid format: longer than 4096 bytes"
                                   : err);
        if (v && *v && rc != ST_ELIMIT)
            snprintf(msg, sizeof msg, "invalid format: %s", err);
        http_params_deinit(&params);
        metric_counter_inc(im.bad_req);
        router_prom_error(req, 400, "bad_data", msg);
        return;
    }
    http_params_deinit(&params);
    router_handle_export_as(r, req, &csv_fmt, spec);
}

/* ---- probes ------------------------------------------------------------- */

static void respond_ok(http_req_t *req, const char *data_json)
{
    st_buf_t b;
    st_buf_init(&b);
    ST_BUF_LIT(&b, "{\"status\":\"success\",\"data\":");
    st_buf_append(&b, data_json, strlen(data_json));
    st_buf_put_u8(&b, '}');
    http_respond(req, 200, "application/json", b.data, b.len);
    st_buf_deinit(&b);
}

void router_handle_buildinfo(router_t *r, http_req_t *req)
{
    (void)r;
    respond_ok(req, "{\"version\":\"" STRATA_VERSION "\",\"revision\":\"\",\"branch\":\"\","
                    "\"buildUser\":\"\",\"buildDate\":\"\",\"goVersion\":\"\"}");
}

void router_handle_metadata(router_t *r, http_req_t *req)
{
    (void)r;
    respond_ok(req, "{}"); /* no metric metadata is stored */
}

void router_handle_exemplars(router_t *r, http_req_t *req)
{
    (void)r;
    respond_ok(req, "[]"); /* no exemplars are stored */
}

void router_handle_rules(router_t *r, http_req_t *req)
{
    (void)r;
    respond_ok(req, "{\"groups\":[]}");
}

void router_handle_alerts(router_t *r, http_req_t *req)
{
    (void)r;
    respond_ok(req, "{\"alerts\":[]}");
}

void router_handle_format_query(router_t *r, http_req_t *req)
{
    (void)r;
    http_params_t params;
    char err[400];
    if (router_read_load(req, &params, err, sizeof err)) {
        http_params_deinit(&params);
        router_prom_error(req, 400, "bad_data", err);
        return;
    }
    const char *q = http_params_get(&params, "query");
    promql_expr_t *e = NULL;
    if (!q || !*q) {
        http_params_deinit(&params);
        router_prom_error(
            req, 400, "bad_data",
            "invalid parameter \"query\": 1:1: parse error: no expression found in input");
        return;
    }
    char perr[300];
    int rc = promql_parse(q, strlen(q), &e, perr, sizeof perr);
    http_params_deinit(&params);
    if (rc) {
        snprintf(err, sizeof err, "invalid parameter \"query\": %s", perr);
        router_prom_error(req, rc == ST_ENOMEM ? 503 : 400, "bad_data", err);
        return;
    }
    st_buf_t f, b;
    st_buf_init(&f);
    st_buf_init(&b);
    rc = promql_format(promql_root(e), &f);
    promql_free(e);
    rc |= ST_BUF_LIT(&b, "{\"status\":\"success\",\"data\":");
    rc |= st_json_str(&b, f.data, f.len);
    rc |= st_buf_put_u8(&b, '}');
    if (rc)
        router_prom_error(req, 503, "internal", "out of memory");
    else
        http_respond(req, 200, "application/json", b.data, b.len);
    st_buf_deinit(&f);
    st_buf_deinit(&b);
}

/* ---- InfluxDB 1.x /query ------------------------------------------------ */

enum { IQ_MEASUREMENTS, IQ_TAG_KEYS, IQ_FIELD_KEYS };

typedef struct iq {
    int what;
    char from[INFLUX_NAME_MAX + 1]; /* "": every measurement */
} iq_t;

static void influx_error(http_req_t *req, int status, const char *msg)
{
    metric_counter_inc(im.influx_bad);
    st_buf_t b;
    st_buf_init(&b);
    ST_BUF_LIT(&b, "{\"error\":");
    st_json_str(&b, msg, strlen(msg));
    st_buf_put_u8(&b, '}');
    http_respond(req, status, "application/json", b.data, b.len);
    st_buf_deinit(&b);
}

/* Case-insensitive keyword at *p followed by a space or the end. */
static int kw(const char **p, const char *word)
{
    size_t n = strlen(word);
    if (strncasecmp(*p, word, n) != 0 || ((*p)[n] && (*p)[n] != ' ' && (*p)[n] != '\t'))
        return 0;
    *p += n;
    while (**p == ' ' || **p == '\t')
        (*p)++;
    return 1;
}

/* A name, bare or "double-quoted", into out: 0 or -1. */
static int ident(const char **p, char *out, size_t cap)
{
    size_t k = 0;
    const char *s = *p;
    if (*s == '"') {
        s++;
        while (*s && *s != '"' && k + 1 < cap)
            out[k++] = *s++;
        if (*s != '"')
            return -1;
        s++;
    } else {
        while (*s && *s != ' ' && *s != '\t' && *s != ';' && k + 1 < cap)
            out[k++] = *s++;
    }
    out[k] = '\0';
    while (*s == ' ' || *s == '\t')
        s++;
    *p = s;
    return k ? 0 : -1;
}

/* Measurement and field of a metric name (first '_' splits). */
static size_t meas_len(const char *name)
{
    const char *u = strchr(name, '_');
    return u && u != name ? (size_t)(u - name) : strlen(name);
}

static void put_values_header(st_buf_t *b, const char *name, const char *cols)
{
    ST_BUF_LIT(b, "{\"name\":");
    st_json_str(b, name, strlen(name));
    ST_BUF_LIT(b, ",\"columns\":");
    st_buf_append(b, cols, strlen(cols));
    ST_BUF_LIT(b, ",\"values\":[");
}

static void on_strings(void *arg, http_req_t *req, const char *const *s, size_t n)
{
    iq_t *q = arg;
    if (!req) {
        free(q);
        return;
    }
    st_buf_t b;
    st_buf_init(&b);
    ST_BUF_LIT(&b, "{\"results\":[{\"statement_id\":0");
    if (q->what == IQ_MEASUREMENTS) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            size_t ml = meas_len(s[i]);
            if (i && meas_len(s[i - 1]) == ml && memcmp(s[i - 1], s[i], ml) == 0)
                continue;
            if (!k++) {
                ST_BUF_LIT(&b, ",\"series\":[");
                put_values_header(&b, "measurements", "[\"name\"]");
            } else {
                st_buf_put_u8(&b, ',');
            }
            st_buf_put_u8(&b, '[');
            st_json_str(&b, s[i], ml);
            st_buf_put_u8(&b, ']');
        }
        if (k)
            ST_BUF_LIT(&b, "]}]");
    } else if (q->what == IQ_FIELD_KEYS) {
        /* s: metric names m_f, sorted: grouped by measurement */
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            size_t ml = meas_len(s[i]);
            int same = i && meas_len(s[i - 1]) == ml && memcmp(s[i - 1], s[i], ml) == 0;
            if (!same) {
                if (k++)
                    ST_BUF_LIT(&b, "]},");
                else
                    ST_BUF_LIT(&b, ",\"series\":[");
                char m[INFLUX_NAME_MAX + 1];
                snprintf(m, sizeof m, "%.*s", (int)ml, s[i]);
                put_values_header(&b, m, "[\"fieldKey\",\"fieldType\"]");
            } else {
                st_buf_put_u8(&b, ',');
            }
            st_buf_put_u8(&b, '[');
            const char *f = s[i][ml] == '_' ? s[i] + ml + 1 : "value";
            st_json_str(&b, f, strlen(f));
            ST_BUF_LIT(&b, ",\"float\"]");
        }
        if (k)
            ST_BUF_LIT(&b, "]}]");
    } else {
        /* s: label names of the measurement's series */
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(s[i], ST_METRIC_LABEL) == 0)
                continue;
            if (!k++) {
                ST_BUF_LIT(&b, ",\"series\":[");
                put_values_header(&b, q->from, "[\"tagKey\"]");
            } else {
                st_buf_put_u8(&b, ',');
            }
            st_buf_put_u8(&b, '[');
            st_json_str(&b, s[i], strlen(s[i]));
            st_buf_put_u8(&b, ']');
        }
        if (k)
            ST_BUF_LIT(&b, "]}]");
    }
    ST_BUF_LIT(&b, "}]}");
    http_respond(req, 200, "application/json", b.data, b.len);
    st_buf_deinit(&b);
    free(q);
}

/* {__name__=~"<from>(_.*)?"} with the regex metacharacters of from escaped. */
static void from_selector(const char *from, char *out, size_t cap)
{
    size_t k = (size_t)snprintf(out, cap, "{__name__=~\"");
    for (const char *p = from; *p && k + 16 < cap; p++) {
        if (strchr("\\.+*?()|[]{}^$", *p)) {
            out[k++] = '\\';
            out[k++] = '\\';
        } else if (*p == '"') {
            out[k++] = '\\';
        }
        out[k++] = *p;
    }
    snprintf(out + k, cap - k, "(_.*)?\"}");
}

void router_handle_influx_query(router_t *r, http_req_t *req)
{
    http_params_t params;
    char err[600], q[INFLUX_QUERY_MAX + 1];
    if (router_read_load(req, &params, err, sizeof err)) {
        http_params_deinit(&params);
        influx_error(req, 400, err);
        return;
    }
    const char *v = http_params_get(&params, "q");
    if (!v || !*v || strlen(v) > INFLUX_QUERY_MAX) {
        http_params_deinit(&params);
        influx_error(req, 400,
                     v && *v ? "q= longer than 4096 bytes" : "missing required parameter \"q\"");
        return;
    }
    snprintf(q, sizeof q, "%s", v);
    http_params_deinit(&params);
    /* one statement; a trailing ';' and spaces are fine */
    size_t n = strlen(q);
    while (n && (q[n - 1] == ' ' || q[n - 1] == ';' || q[n - 1] == '\n' || q[n - 1] == '\t'))
        q[--n] = '\0';
    const char *p = q;
    while (*p == ' ' || *p == '\t' || *p == '\n')
        p++;
    char name[INFLUX_NAME_MAX + 1];
    if (kw(&p, "CREATE") && kw(&p, "DATABASE")) {
        if (ident(&p, name, sizeof name) == 0) {
            const char *ok = "{\"results\":[{\"statement_id\":0}]}";
            metric_counter_inc(im.influx_ok);
            http_respond(req, 200, "application/json", ok, strlen(ok));
            return; /* a no-op: Strata has one database; db= is ignored */
        }
    }
    p = q;
    while (*p == ' ' || *p == '\t' || *p == '\n')
        p++;
    if (kw(&p, "SHOW")) {
        if (kw(&p, "DATABASES") && !*p) {
            metric_counter_inc(im.influx_ok);
            const char *ok =
                "{\"results\":[{\"statement_id\":0,\"series\":[{\"name\":"
                "\"databases\",\"columns\":[\"name\"],\"values\":[[\"" INFLUX_DB "\"]]}]}]}";
            http_respond(req, 200, "application/json", ok, strlen(ok));
            return;
        }
        iq_t *iq = calloc(1, sizeof *iq);
        if (!iq) {
            influx_error(req, 503, "out of memory");
            return;
        }
        int ok = 0;
        if (kw(&p, "MEASUREMENTS")) {
            iq->what = IQ_MEASUREMENTS;
            ok = !*p;
        } else if (kw(&p, "TAG") && kw(&p, "KEYS")) {
            iq->what = IQ_TAG_KEYS;
            ok = kw(&p, "FROM") && ident(&p, iq->from, sizeof iq->from) == 0 && !*p;
        } else if (kw(&p, "FIELD") && kw(&p, "KEYS")) {
            iq->what = IQ_FIELD_KEYS;
            ok = !*p || (kw(&p, "FROM") && ident(&p, iq->from, sizeof iq->from) == 0 && !*p);
        }
        if (ok) {
            metric_counter_inc(im.influx_ok);
            char sel[2 * INFLUX_NAME_MAX + 64];
            if (iq->from[0])
                from_selector(iq->from, sel, sizeof sel);
            router_collect_strings(r, req, iq->what == IQ_TAG_KEYS ? NULL : ST_METRIC_LABEL,
                                   iq->from[0] ? sel : NULL, on_strings, iq);
            return;
        }
        free(iq);
    }
    snprintf(err, sizeof err,
             "error parsing query: Strata answers only CREATE DATABASE, SHOW DATABASES, SHOW "
             "MEASUREMENTS, SHOW TAG KEYS FROM <measurement>, SHOW FIELD KEYS [FROM "
             "<measurement>]; query with PromQL at /api/v1/query (got '%.200s')",
             q);
    influx_error(req, 400, err);
}

/* ---- /api/v1/status/tsdb ------------------------------------------------ */

/* One label pair summed over the shards: key = name NUL value. */
typedef struct tpair {
    char *key;
    uint32_t nlen, vlen;
    uint64_t hash, series;
} tpair_t;

typedef struct tjob {
    router_t *r;
    http_req_t *req;
    fanout_t *fan;
    selector_t sel;
    int has_sel;
    size_t limit;
    uint64_t series;
    tpair_t *t; /* open addressing; key NULL = empty */
    size_t cap, n;
    char why[300];
} tjob_t;

static void tjob_free(tjob_t *j)
{
    for (size_t i = 0; i < j->cap; i++)
        free(j->t[i].key);
    free(j->t);
    if (j->has_sel)
        selector_free(&j->sel);
    fanout_destroy(j->fan);
    free(j);
}

static int tpair_add(tjob_t *j, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen,
                     uint64_t series)
{
    if ((j->n + 1) * 2 > j->cap) {
        if (j->n >= TSDB_MAX_PAIRS)
            return ST_ELIMIT;
        size_t cap = j->cap ? j->cap * 2 : 1024;
        tpair_t *t = calloc(cap, sizeof *t);
        if (!t)
            return ST_ENOMEM;
        for (size_t i = 0; i < j->cap; i++) {
            if (!j->t[i].key)
                continue;
            size_t k = j->t[i].hash & (cap - 1);
            while (t[k].key)
                k = (k + 1) & (cap - 1);
            t[k] = j->t[i];
        }
        free(j->t);
        j->t = t;
        j->cap = cap;
    }
    st_label_t l = {(const char *)name, (const char *)value, (uint32_t)nlen, (uint32_t)vlen};
    uint64_t h = st_labels_hash(&l, 1);
    size_t k = h & (j->cap - 1);
    while (j->t[k].key) {
        tpair_t *e = &j->t[k];
        if (e->hash == h && e->nlen == nlen && e->vlen == vlen && memcmp(e->key, name, nlen) == 0 &&
            memcmp(e->key + nlen + 1, value, vlen) == 0) {
            e->series += series;
            return 0;
        }
        k = (k + 1) & (j->cap - 1);
    }
    char *key = malloc(nlen + vlen + 2);
    if (!key)
        return ST_ENOMEM;
    memcpy(key, name, nlen);
    key[nlen] = '\0';
    memcpy(key + nlen + 1, value, vlen);
    key[nlen + 1 + vlen] = '\0';
    j->t[k] = (tpair_t){key, (uint32_t)nlen, (uint32_t)vlen, h, series};
    j->n++;
    return 0;
}

static int tsdb_build(void *ctx, const fanout_call_t *c, uint8_t *type, unsigned *timeout_ms,
                      st_buf_t *out)
{
    tjob_t *j = ctx;
    *type = RPC_TSDB_STATUS;
    *timeout_ms = (unsigned)j->r->timeout_ms;
    router_read_req_t rq = {.m = j->has_sel ? j->sel.m : NULL,
                            .nm = j->has_sel ? j->sel.n : 0,
                            .start = INT64_MIN,
                            .end = INT64_MAX};
    return router_pack_read(out, c, &rq);
}

static int tsdb_reply(void *ctx, fanout_call_t *c, const uint8_t *payload, size_t len)
{
    tjob_t *j = ctx;
    Strata__TsdbStatusResponse *res = strata__tsdb_status_response__unpack(NULL, len, payload);
    int rc = res ? 0 : ST_EPROTO;
    if (res) {
        j->series += res->num_series;
        for (size_t i = 0; i < res->n_pairs && !rc; i++) {
            const Strata__LabelPairCount *p = res->pairs[i];
            rc = tpair_add(j, p->name.data, p->name.len, p->value.data, p->value.len, p->series);
        }
        strata__tsdb_status_response__free_unpacked(res, NULL);
    }
    if (rc == ST_ELIMIT) {
        router_prom_error(j->req, 422, "execution",
                          "too many label pairs (limit 10000000); narrow match[]");
        return FANOUT_STOP;
    }
    if (rc) {
        char msg[400];
        fanout_group_msg(j->fan, c->group, rc == ST_ENOMEM ? "out of memory" : "malformed reply",
                         msg, sizeof msg);
        router_prom_error(j->req, 503, "unavailable", msg);
        return FANOUT_STOP;
    }
    return FANOUT_DONE;
}

static int tsdb_failed(void *ctx, const fanout_call_t *c, const fanout_failure_t *f)
{
    tjob_t *j = ctx;
    (void)c;
    if (f->node_said && f->len)
        snprintf(j->why, sizeof j->why, "%.*s", (int)(f->len < 250 ? f->len : 250),
                 (const char *)f->msg);
    else
        snprintf(j->why, sizeof j->why, "%s", st_strerror(f->status));
    if (f->node_said && f->status == ST_EINVAL) {
        router_prom_error(j->req, 400, "bad_data", j->why);
        return FANOUT_STOP;
    }
    metric_counter_inc(j->r->rpc_fail);
    return FANOUT_FAILOVER;
}

typedef struct tstat {
    const char *name;
    size_t len;
    uint64_t v;
} tstat_t;

static int stat_cmp(const void *a, const void *b)
{
    const tstat_t *x = a, *y = b;
    if (x->v != y->v)
        return x->v > y->v ? -1 : 1;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int key_cmp(const void *a, const void *b)
{
    const tpair_t *x = a, *y = b;
    return strcmp(x->key, y->key); /* by name (NUL ends it), then value */
}

static void put_stats(st_buf_t *b, const char *field, tstat_t *s, size_t n, size_t limit)
{
    qsort(s, n, sizeof *s, stat_cmp);
    st_buf_put_u8(b, ',');
    st_json_str(b, field, strlen(field));
    ST_BUF_LIT(b, ":[");
    for (size_t i = 0; i < n && i < limit; i++) {
        char tmp[40];
        if (i)
            st_buf_put_u8(b, ',');
        ST_BUF_LIT(b, "{\"name\":");
        st_json_str(b, s[i].name, s[i].len);
        int k = snprintf(tmp, sizeof tmp, ",\"value\":%llu}", (unsigned long long)s[i].v);
        st_buf_append(b, tmp, (size_t)k);
    }
    st_buf_put_u8(b, ']');
}

static void tsdb_answer(tjob_t *j)
{
    /* pairs sorted by name then value: one run per label name */
    size_t n = 0;
    for (size_t i = 0; i < j->cap; i++)
        if (j->t[i].key)
            j->t[n++] = j->t[i];
    for (size_t i = n; i < j->cap; i++)
        j->t[i].key = NULL;
    qsort(j->t, n, sizeof *j->t, key_cmp);
    tstat_t *metrics = calloc(n + 1, sizeof *metrics), *pairs = calloc(n + 1, sizeof *pairs),
            *values = calloc(n + 1, sizeof *values), *mem = calloc(n + 1, sizeof *mem);
    char **pairnames = calloc(n + 1, sizeof *pairnames);
    st_buf_t b;
    st_buf_init(&b);
    if (!metrics || !pairs || !values || !mem || !pairnames) {
        router_prom_error(j->req, 503, "internal", "out of memory");
        goto out;
    }
    size_t nm = 0, nn = 0;
    for (size_t i = 0; i < n; i++) {
        tpair_t *p = &j->t[i];
        if (i == 0 || strcmp(p->key, j->t[i - 1].key) != 0) {
            values[nn] = (tstat_t){p->key, p->nlen, 0};
            mem[nn++] = (tstat_t){p->key, p->nlen, 0};
        }
        values[nn - 1].v++;
        mem[nn - 1].v += (uint64_t)p->vlen * p->series;
        if (p->nlen == 8 && memcmp(p->key, ST_METRIC_LABEL, 8) == 0)
            metrics[nm++] = (tstat_t){p->key + 9, p->vlen, p->series};
        /* "name=value" */
        pairnames[i] = malloc(p->nlen + p->vlen + 2);
        if (!pairnames[i]) {
            router_prom_error(j->req, 503, "internal", "out of memory");
            goto out;
        }
        memcpy(pairnames[i], p->key, p->nlen);
        pairnames[i][p->nlen] = '=';
        memcpy(pairnames[i] + p->nlen + 1, p->key + p->nlen + 1, p->vlen + 1);
        pairs[i] = (tstat_t){pairnames[i], p->nlen + 1 + p->vlen, p->series};
    }
    char tmp[200];
    int k = snprintf(tmp, sizeof tmp,
                     "{\"status\":\"success\",\"data\":{\"headStats\":{\"numSeries\":%llu,"
                     "\"numLabelPairs\":%zu,\"chunkCount\":0,\"minTime\":0,\"maxTime\":0}",
                     (unsigned long long)j->series, n);
    st_buf_append(&b, tmp, (size_t)k);
    put_stats(&b, "seriesCountByMetricName", metrics, nm, j->limit);
    put_stats(&b, "labelValueCountByLabelName", values, nn, j->limit);
    put_stats(&b, "memoryInBytesByLabelName", mem, nn, j->limit);
    put_stats(&b, "seriesCountByLabelValuePair", pairs, n, j->limit);
    ST_BUF_LIT(&b, "}");
    char w[FANOUT_WARNING_MAX];
    size_t wl = fanout_partial_warning(j->fan, w, sizeof w);
    if (wl) {
        ST_BUF_LIT(&b, ",\"warnings\":[");
        st_json_str(&b, w, wl);
        st_buf_put_u8(&b, ']');
    }
    st_buf_put_u8(&b, '}');
    http_respond(j->req, 200, "application/json", b.data, b.len);
out:
    if (pairnames)
        for (size_t i = 0; i < n; i++)
            free(pairnames[i]);
    free(pairnames);
    free(metrics);
    free(pairs);
    free(values);
    free(mem);
    st_buf_deinit(&b);
}

static void tsdb_end(void *ctx, fanout_how_t how, const fanout_call_t *c)
{
    tjob_t *j = ctx;
    char msg[600];
    if (how == FANOUT_COMPLETE) {
        tsdb_answer(j);
        return;
    }
    if (c)
        fanout_group_msg(j->fan, c->group, how == FANOUT_NOMEM ? "out of memory" : j->why, msg,
                         sizeof msg);
    else
        fanout_unavailable_msg(j->fan, msg, sizeof msg);
    router_prom_error(j->req, 503, "unavailable", msg);
}

static void tsdb_idle(void *ctx)
{
    tjob_free(ctx);
}

static const fanout_ops_t tsdb_ops = {tsdb_build, tsdb_reply, tsdb_failed, tsdb_end, tsdb_idle};

void router_handle_tsdb_status(router_t *r, http_req_t *req)
{
    metric_counter_inc(r->reads);
    tjob_t *j = calloc(1, sizeof *j);
    if (!j) {
        http_respond_error(req, 503, "out of memory");
        return;
    }
    j->r = r;
    j->req = req;
    j->limit = TSDB_DEFAULT_LIMIT;
    http_params_t params;
    char err[400];
    int need, partial;
    if (router_read_load(req, &params, err, sizeof err))
        goto bad;
    const char *v = http_params_get(&params, "limit");
    if (v && *v) {
        char *end;
        long long x = strtoll(v, &end, 10);
        if (*end || x < 1 || x > TSDB_MAX_LIMIT) {
            snprintf(err, sizeof err, "invalid parameter \"limit\": want 1..%d, got \"%.32s\"",
                     TSDB_MAX_LIMIT, v);
            goto bad;
        }
        j->limit = (size_t)x;
    }
    if (http_params_count(&params, "match[]") > 1) {
        snprintf(err, sizeof err, "at most one match[] parameter");
        goto bad;
    }
    if ((v = http_params_get(&params, "match[]")) != NULL) {
        char perr[300];
        if (selector_parse(v, strlen(v), &j->sel, perr, sizeof perr)) {
            snprintf(err, sizeof err, "invalid parameter \"match[]\": %s", perr);
            goto bad;
        }
        j->has_sel = 1;
    }
    size_t nsel = (size_t)j->has_sel;
    if (router_read_confine(req, &j->sel, 1, &nsel, err, sizeof err))
        goto bad;
    j->has_sel = (int)nsel;
    if (router_read_params(r, &params, &need, &partial, err, sizeof err))
        goto bad;
    /* one replica per shard whatever read_consistency says: each series once */
    fanout_cfg_t cfg = router_fanout_cfg(r, 1, partial, 1, 1, &tsdb_ops, j);
    if (fanout_create(&cfg, &j->fan)) {
        snprintf(err, sizeof err, "out of memory");
        goto bad;
    }
    http_params_deinit(&params);
    fanout_start(j->fan);
    return;
bad:
    http_params_deinit(&params);
    router_prom_error(req, 400, "bad_data", err);
    tjob_free(j);
}

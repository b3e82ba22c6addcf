/*
 * router_query — /api/v1/query and /api/v1/query_range (GET or POST form).
 *
 * Without pushdown yet, a query runs in three steps:
 *   1. worker: parse, then evaluate once with a recording select callback
 *      that returns no data: the evaluator reports exactly which (matchers,
 *      time range) it needs, once per selector;
 *   2. loop:   fetch each of them from one replica per shard (paged EXPORT
 *      RPCs, node by node) into memory, bounded by max samples;
 *   3. worker: evaluate again, serving the selects from what was fetched,
 *      and render Prometheus' JSON.
 * Errors use Prometheus' format and types: bad_data (400), execution (422),
 * timeout (503), unavailable (503).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_util.h"
#include "promql.h"
#include "promql_eval.h"
#include "router.h"
#include "st_err.h"
#include "st_log.h"
#include "strata.pb-c.h"
#include "wire.h"

#define Q_MAX_SELECTS 64
#define Q_MAX_SAMPLES 50000000ull
#define Q_MAX_POINTS 11000

typedef struct fseries {
    st_label_t *labels;
    size_t nlabels;
    int64_t *ts;
    double *v;
    size_t n;
} fseries_t;

typedef struct qselect {
    st_matcher_t m[64];
    size_t nm;
    int64_t mint, maxt;
    fseries_t *s;
    size_t ns, cap;
} qselect_t;

typedef struct qjob {
    uv_work_t w;
    router_t *r;
    http_req_t *req;
    char *query;
    int range;
    int64_t start, end, step, deadline;
    promql_expr_t *expr;
    qselect_t sel[Q_MAX_SELECTS];
    size_t nsel;
    int phase; /* 1: plan, 2: evaluate */
    int status;
    const char *etype;
    char err[512];
    st_buf_t out;
    uint64_t samples;
    /* fetch state */
    size_t cur_sel;
    uint32_t cur_node, nnodes;
    uint32_t **node_shards;
    size_t *node_n;
    uint32_t cursor_shard;
    uint64_t cursor_pos;
} qjob_t;

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* A NUL-terminated copy of exactly n bytes (labels may hold any UTF-8, even U+0000). */
static char *copy_n(const char *s, size_t n)
{
    char *c = malloc(n + 1);
    if (c) {
        if (n)
            memcpy(c, s, n);
        c[n] = '\0';
    }
    return c;
}

static void free_job(qjob_t *j)
{
    for (size_t i = 0; i < j->nsel; i++) {
        qselect_t *s = &j->sel[i];
        for (size_t k = 0; k < s->nm; k++) {
            free((char *)s->m[k].name);
            free((char *)s->m[k].value);
        }
        for (size_t k = 0; k < s->ns; k++) {
            for (size_t l = 0; l < s->s[k].nlabels; l++) {
                free((char *)s->s[k].labels[l].name);
                free((char *)s->s[k].labels[l].value);
            }
            free(s->s[k].labels);
            free(s->s[k].ts);
            free(s->s[k].v);
        }
        free(s->s);
    }
    for (uint32_t i = 0; i < j->nnodes && j->node_shards; i++)
        free(j->node_shards[i]);
    free(j->node_shards);
    free(j->node_n);
    if (j->expr)
        promql_free(j->expr);
    st_buf_deinit(&j->out);
    free(j->query);
    free(j);
}

static void respond_error(qjob_t *j, int status, const char *etype, const char *msg)
{
    router_prom_error(j->req, status, etype, msg);
    free_job(j);
}

static int same_matchers(const qselect_t *s, const st_matcher_t *m, size_t nm, int64_t mint,
                         int64_t maxt)
{
    if (s->nm != nm || s->mint != mint || s->maxt != maxt)
        return 0;
    for (size_t i = 0; i < nm; i++)
        if (s->m[i].type != m[i].type || strcmp(s->m[i].name, m[i].name) ||
            strcmp(s->m[i].value, m[i].value))
            return 0;
    return 1;
}

/* Pass 1: remember what is needed, return nothing. */
static int plan_select(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                       promql_sink_t *sink)
{
    qjob_t *j = arg;
    for (size_t i = 0; i < j->nsel; i++)
        if (same_matchers(&j->sel[i], m, nm, mint, maxt))
            return 0;
    if (j->nsel == Q_MAX_SELECTS || nm > 64)
        return ST_ELIMIT;
    qselect_t *s = &j->sel[j->nsel++];
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < nm; i++) {
        s->m[i].type = m[i].type;
        s->m[i].name = strdup(m[i].name);
        s->m[i].value = strdup(m[i].value);
        if (!s->m[i].name || !s->m[i].value)
            return ST_ENOMEM;
        s->nm = i + 1;
    }
    s->mint = mint;
    s->maxt = maxt;
    return 0;
}

/* Pass 2: serve from the fetched data. */
static int serve_select(void *arg, const st_matcher_t *m, size_t nm, int64_t mint, int64_t maxt,
                        promql_sink_t *sink)
{
    qjob_t *j = arg;
    for (size_t i = 0; i < j->nsel; i++) {
        qselect_t *s = &j->sel[i];
        if (!same_matchers(s, m, nm, mint, maxt))
            continue;
        for (size_t k = 0; k < s->ns; k++) {
            int rc = promql_sink_add(sink, s->s[k].labels, s->s[k].nlabels, s->s[k].ts, s->s[k].v,
                                     s->s[k].n);
            if (rc)
                return rc;
        }
        return 0;
    }
    return ST_EINVAL; /* a selection the plan did not see */
}

static void eval_work(uv_work_t *w)
{
    qjob_t *j = w->data;
    if (j->phase == 1) {
        if (promql_parse(j->query, strlen(j->query), &j->expr, j->err, sizeof j->err)) {
            j->status = 400;
            j->etype = "bad_data";
            return;
        }
    }
    promql_eval_opts_t o = {.max_samples = Q_MAX_SAMPLES, .deadline_ms = j->deadline};
    promql_result_t *res = NULL;
    int rc =
        promql_eval(j->expr, j->start, j->end, j->step, &o,
                    j->phase == 1 ? plan_select : serve_select, j, &res, j->err, sizeof j->err);
    if (rc) {
        j->status = rc == ST_ETIMEDOUT ? 503 : 422;
        j->etype = rc == ST_ETIMEDOUT ? "timeout" : "execution";
        if (!j->err[0])
            snprintf(j->err, sizeof j->err, "%s", st_strerror(rc));
        return;
    }
    if (j->phase == 2) {
        ST_BUF_LIT(&j->out, "{\"status\":\"success\",\"data\":");
        rc = promql_result_json(res, j->range, &j->out);
        st_buf_put_u8(&j->out, '}');
        if (rc) {
            j->status = 503;
            j->etype = "internal";
            snprintf(j->err, sizeof j->err, "out of memory");
        }
    }
    promql_result_free(res);
}

static void next_fetch(qjob_t *j);
static void eval_after(uv_work_t *w, int status);

static void start_phase(qjob_t *j, int phase)
{
    j->phase = phase;
    j->w.data = j;
    if (uv_queue_work(j->r->loop, &j->w, eval_work, eval_after) != 0)
        respond_error(j, 503, "internal", "cannot queue work");
}

static void eval_after(uv_work_t *w, int status)
{
    qjob_t *j = w->data;
    if (j->status) {
        respond_error(j, j->status, j->etype, j->err);
        return;
    }
    if (j->phase == 2) {
        http_respond(j->req, 200, "application/json", j->out.data, j->out.len);
        free_job(j);
        return;
    }
    /* plan done: fetch what it needs */
    router_t *r = j->r;
    j->nnodes = topo_node_count(r->topo);
    j->node_shards = calloc(j->nnodes, sizeof *j->node_shards);
    j->node_n = calloc(j->nnodes, sizeof *j->node_n);
    uint32_t nshards = topo_shards(r->topo);
    if (!j->node_shards || !j->node_n) {
        respond_error(j, 503, "internal", "out of memory");
        return;
    }
    for (uint32_t i = 0; i < j->nnodes; i++)
        if (!(j->node_shards[i] = malloc(nshards * sizeof **j->node_shards))) {
            respond_error(j, 503, "internal", "out of memory");
            return;
        }
    for (uint32_t s = 0; s < nshards; s++) {
        uint32_t node = router_pick_replica(r, s);
        j->node_shards[node][j->node_n[node]++] = s;
    }
    for (uint32_t i = 0; i < j->nnodes; i++) {
        if (j->node_n[i] && !router_node_up(r, i)) {
            char msg[200];
            snprintf(msg, sizeof msg, "no replica answered for the shards of node %s: node is down",
                     topo_node_id(r->topo, i));
            respond_error(j, 503, "unavailable", msg);
            return;
        }
    }
    next_fetch(j);
}

static int store_page(qjob_t *j, const uint8_t *p, size_t len, int *done, uint32_t *nshard,
                      uint64_t *npos)
{
    qselect_t *s = &j->sel[j->cur_sel];
    const uint8_t *end = p + len;
    wire_field_t f;
    int rc;
    *done = 1;
    while ((rc = wire_next(&p, end, &f)) == 1) {
        if (f.num == 2 && f.type == WIRE_VARINT) {
            *done = f.u != 0;
        } else if (f.num == 3 && f.type == WIRE_VARINT) {
            *nshard = (uint32_t)f.u;
        } else if (f.num == 4 && f.type == WIRE_VARINT) {
            *npos = f.u;
        } else if (f.num == 1 && f.type == WIRE_LEN) {
            wire_series_t ws;
            if ((rc = wire_series_decode(f.data, f.len, &ws)) < 0)
                return rc;
            if (s->ns == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 64;
                fseries_t *ns = realloc(s->s, cap * sizeof *ns);
                if (!ns)
                    return ST_ENOMEM;
                s->s = ns;
                s->cap = cap;
            }
            fseries_t *fs = &s->s[s->ns];
            memset(fs, 0, sizeof *fs);
            fs->labels = calloc(ws.nlabels ? ws.nlabels : 1, sizeof *fs->labels);
            fs->ts = malloc((ws.nvals ? ws.nvals : 1) * sizeof *fs->ts);
            fs->v = malloc((ws.nvals ? ws.nvals : 1) * sizeof *fs->v);
            s->ns++; /* owned from here on, freed with the job */
            if (!fs->labels || !fs->ts || !fs->v)
                return ST_ENOMEM;
            for (size_t k = 0; k < ws.nlabels; k++) {
                fs->labels[k].name = copy_n(ws.labels[k].name, ws.labels[k].name_len);
                fs->labels[k].value = copy_n(ws.labels[k].value, ws.labels[k].value_len);
                fs->labels[k].name_len = ws.labels[k].name_len;
                fs->labels[k].value_len = ws.labels[k].value_len;
                fs->nlabels = k + 1;
                if (!fs->labels[k].name || !fs->labels[k].value)
                    return ST_ENOMEM;
            }
            if ((rc = wire_series_samples(&ws, fs->ts, fs->v, ws.nvals, &fs->n)) < 0)
                return rc;
            j->samples += fs->n;
            if (j->samples > Q_MAX_SAMPLES)
                return ST_ELIMIT;
        }
    }
    return rc < 0 ? rc : 0;
}

static void on_page(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    qjob_t *j = arg;
    if (status != 0) {
        char msg[400];
        if (type == RPC_ERROR && len)
            snprintf(msg, sizeof msg, "node %s: %.*s", topo_node_id(j->r->topo, j->cur_node),
                     (int)(len < 300 ? len : 300), (const char *)payload);
        else
            snprintf(msg, sizeof msg, "no replica answered for the shards of node %s: %s",
                     topo_node_id(j->r->topo, j->cur_node), st_strerror(status));
        respond_error(j, status == ST_EINVAL ? 400 : 503,
                      status == ST_EINVAL ? "bad_data" : "unavailable", msg);
        return;
    }
    int done;
    uint32_t nshard = 0;
    uint64_t npos = 0;
    int rc = store_page(j, payload, len, &done, &nshard, &npos);
    if (rc) {
        respond_error(j, 422, "execution",
                      rc == ST_ELIMIT ? "query processing would load too many samples into memory"
                                      : "malformed reply from a node");
        return;
    }
    if (done) {
        j->cur_node++;
        j->cursor_shard = 0;
        j->cursor_pos = 0;
    } else {
        j->cursor_shard = nshard;
        j->cursor_pos = npos;
    }
    next_fetch(j);
}

static void next_fetch(qjob_t *j)
{
    router_t *r = j->r;
    for (;;) {
        if (j->cur_sel >= j->nsel) {
            start_phase(j, 2);
            return;
        }
        if (j->cur_node >= j->nnodes) {
            j->cur_sel++;
            j->cur_node = 0;
            continue;
        }
        if (j->node_n[j->cur_node] == 0) {
            j->cur_node++;
            continue;
        }
        break;
    }
    qselect_t *s = &j->sel[j->cur_sel];
    Strata__ReadRequest rq = STRATA__READ_REQUEST__INIT;
    Strata__Matcher mm[64], *mp[64];
    for (size_t i = 0; i < s->nm; i++) {
        strata__matcher__init(&mm[i]);
        mm[i].type = (Strata__Matcher__Type)s->m[i].type;
        mm[i].name = (ProtobufCBinaryData){strlen(s->m[i].name), (uint8_t *)s->m[i].name};
        mm[i].value = (ProtobufCBinaryData){strlen(s->m[i].value), (uint8_t *)s->m[i].value};
        mp[i] = &mm[i];
    }
    rq.n_matchers = s->nm;
    rq.matchers = mp;
    rq.n_shards = j->node_n[j->cur_node];
    rq.shards = j->node_shards[j->cur_node];
    rq.start_ms = s->mint;
    rq.end_ms = s->maxt;
    rq.max_samples = ROUTER_EXPORT_PAGE;
    rq.cursor_shard = j->cursor_shard;
    rq.cursor_pos = j->cursor_pos;
    size_t len = strata__read_request__get_packed_size(&rq);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        respond_error(j, 503, "internal", "out of memory");
        return;
    }
    strata__read_request__pack(&rq, buf);
    int rc = rpc_client_call(r->clients[j->cur_node], RPC_EXPORT, buf, len, (unsigned)r->timeout_ms,
                             on_page, j);
    free(buf);
    if (rc)
        respond_error(j, 503, "unavailable", st_strerror(rc));
}

/* "15s", "1m30s", "250ms" or float seconds -> ms; -1 if invalid. */
static int64_t parse_step(const char *s)
{
    char *end;
    double secs = strtod(s, &end);
    if (end != s && *end == '\0')
        return isfinite(secs) ? (int64_t)llround(secs * 1000) : -1;
    int64_t total = 0;
    const char *p = s;
    while (*p) {
        int64_t n = 0;
        if (*p < '0' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9')
            n = n * 10 + (*p++ - '0');
        int64_t unit;
        if (p[0] == 'm' && p[1] == 's') {
            unit = 1;
            p += 2;
        } else if (*p == 's') {
            unit = 1000;
            p++;
        } else if (*p == 'm') {
            unit = 60000;
            p++;
        } else if (*p == 'h') {
            unit = 3600000;
            p++;
        } else if (*p == 'd') {
            unit = 86400000;
            p++;
        } else if (*p == 'w') {
            unit = 604800000;
            p++;
        } else if (*p == 'y') {
            unit = 31536000000;
            p++;
        } else {
            return -1;
        }
        total += n * unit;
    }
    return p == s ? -1 : total;
}

static const char *param(http_req_t *req, http_params_t *form, const char *name)
{
    const char *v = http_params_get(form, name);
    return v ? v : http_req_param(req, name);
}

void router_handle_query(router_t *r, http_req_t *req, int range)
{
    qjob_t *j = calloc(1, sizeof *j);
    if (!j) {
        http_respond_error(req, 503, "out of memory");
        return;
    }
    j->r = r;
    j->req = req;
    j->range = range;
    st_buf_init(&j->out);
    http_params_t form;
    http_params_init(&form);
    const char *ct = http_req_header(req, "Content-Type");
    if (req->method == HTTP_METHOD_POST && ct &&
        strncmp(ct, "application/x-www-form-urlencoded", 33) == 0)
        http_params_parse(&form, (const char *)req->body, req->body_len);
    char msg[300];
    const char *q = param(req, &form, "query");
    const char *v;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    int64_t timeout = r->timeout_ms;
    if (!q || !*q) {
        snprintf(msg, sizeof msg, "invalid parameter \"query\": no query provided");
        goto bad;
    }
    if (range) {
        const char *sv = param(req, &form, "start"), *ev = param(req, &form, "end");
        const char *stv = param(req, &form, "step");
        if (!sv || http_parse_time_ms(sv, strlen(sv), &j->start)) {
            snprintf(msg, sizeof msg,
                     "invalid parameter \"start\": cannot parse \"%.64s\" to a "
                     "valid timestamp",
                     sv ? sv : "");
            goto bad;
        }
        if (!ev || http_parse_time_ms(ev, strlen(ev), &j->end)) {
            snprintf(msg, sizeof msg,
                     "invalid parameter \"end\": cannot parse \"%.64s\" to a "
                     "valid timestamp",
                     ev ? ev : "");
            goto bad;
        }
        if (j->end < j->start) {
            snprintf(msg, sizeof msg,
                     "invalid parameter \"end\": end timestamp must not be before "
                     "start time");
            goto bad;
        }
        j->step = stv ? parse_step(stv) : -1;
        if (j->step <= 0) {
            snprintf(msg, sizeof msg,
                     "invalid parameter \"step\": zero or negative query "
                     "resolution step widths are not accepted. Try a positive "
                     "integer");
            goto bad;
        }
        if ((j->end - j->start) / j->step > Q_MAX_POINTS) {
            snprintf(msg, sizeof msg,
                     "exceeded maximum resolution of 11,000 points per "
                     "timeseries. Try decreasing the query resolution "
                     "(?step=XX)");
            goto bad;
        }
    } else {
        j->start = now_ms;
        if ((v = param(req, &form, "time")) && *v && http_parse_time_ms(v, strlen(v), &j->start)) {
            snprintf(msg, sizeof msg,
                     "invalid parameter \"time\": cannot parse \"%.64s\" to a "
                     "valid timestamp",
                     v);
            goto bad;
        }
        j->end = j->start;
        j->step = 1000;
    }
    if ((v = param(req, &form, "timeout")) && *v) {
        int64_t t = parse_step(v);
        if (t <= 0) {
            snprintf(msg, sizeof msg, "invalid parameter \"timeout\": cannot parse \"%.64s\"", v);
            goto bad;
        }
        if (t < timeout)
            timeout = t;
    }
    j->deadline = mono_ms() + timeout;
    j->query = strdup(q);
    http_params_deinit(&form);
    if (!j->query) {
        http_respond_error(req, 503, "out of memory");
        free_job(j);
        return;
    }
    metric_counter_inc(r->reads);
    start_phase(j, 1);
    return;
bad:
    http_params_deinit(&form);
    respond_error(j, 400, "bad_data", msg);
}

/*
 * router_query — /api/v1/query and /api/v1/query_range (GET or POST form).
 *
 * Without pushdown yet, a query runs in three steps:
 *   1. worker: parse, then evaluate once with a recording select callback
 *      that returns no data: the evaluator reports exactly which (matchers,
 *      time range) it needs, once per selector;
 *   2. loop:   fetch each of them from one replica per shard (quorum:
 *      floor(RF/2)+1, folded) with paged EXPORT RPCs, group by group of
 *      readplan.h (failing over to the next replica when one fails), into
 *      memory, bounded by max samples;
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
#include "readplan.h"
#include "router.h"
#include "st_err.h"
#include "sset.h"
#include "st_log.h"
#include "strata.pb-c.h"
#include "wire.h"

#define Q_MAX_SELECTS 64
#define Q_MAX_SAMPLES 50000000ull
#define Q_MAX_POINTS 11000

typedef struct qselect {
    st_matcher_t m[64];
    size_t nm;
    int64_t mint, maxt;
    sset_t set;
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
    /* fetch state: groups of the plan outer, selects inner */
    readplan_t plan;
    int planned, need, partial, failovers;
    size_t cur_group, cur_sel;
    uint32_t cursor_shard;
    uint64_t cursor_pos;
    char missing[256]; /* shards left out (partial_response=1) */
} qjob_t;

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* A NUL-terminated copy of exactly n bytes (labels may hold any UTF-8, even U+0000). */
static void free_job(qjob_t *j)
{
    for (size_t i = 0; i < j->nsel; i++) {
        qselect_t *s = &j->sel[i];
        for (size_t k = 0; k < s->nm; k++) {
            free((char *)s->m[k].name);
            free((char *)s->m[k].value);
        }
        sset_free(&s->set);
    }
    if (j->planned)
        readplan_free(&j->plan);
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
    sset_init(&s->set, 0);
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
        for (size_t k = 0; k < s->set.n; k++) {
            const sset_series_t *fs = &s->set.s[k];
            int rc = promql_sink_add(sink, fs->labels, fs->nlabels, fs->ts, fs->v, fs->n);
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
        promql_type_t t = promql_root(j->expr)->type;
        if (j->range && t != PROMQL_TYPE_SCALAR && t != PROMQL_TYPE_VECTOR) {
            snprintf(j->err, sizeof j->err,
                     "invalid expression type \"%s\" for range query, must be Scalar or instant "
                     "Vector",
                     promql_type_name(t));
            j->status = 400;
            j->etype = "bad_data";
            return;
        }
    }
    if (j->phase == 2 && (j->need > 1 || j->failovers)) {
        /* several replicas answered for some shards: fold duplicates */
        for (size_t i = 0; i < j->nsel; i++) {
            if (sset_merge(&j->sel[i].set)) {
                j->status = 503;
                j->etype = "internal";
                snprintf(j->err, sizeof j->err, "out of memory");
                return;
            }
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
        if (j->missing[0]) {
            char warn[400];
            int k = snprintf(warn, sizeof warn,
                             ",\"warnings\":[\"partial response: no replica answered for "
                             "shard(s) %s\"]",
                             j->missing);
            st_buf_append(&j->out, warn, (size_t)k);
        }
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
static int unavailable(qjob_t *j);

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
    j->planned = 1;
    if (readplan_init(&j->plan, r->topo, (uint32_t)j->need, router_up_fn, r)) {
        respond_error(j, 503, "internal", "out of memory");
        return;
    }
    if (j->plan.nmissing && !unavailable(j))
        return;
    next_fetch(j);
}

/* Shards without enough replicas: fail the query naming them, or (with
 * partial_response=1) note them for the warning. Returns 1 to go on. */
static int unavailable(qjob_t *j)
{
    readplan_missing_str(&j->plan, j->missing, sizeof j->missing);
    if (j->partial)
        return 1;
    char msg[400];
    router_missing_msg(msg, sizeof msg, j->missing, j->need);
    respond_error(j, 503, "unavailable", msg);
    return 0;
}

static void on_page(void *arg, int status, uint8_t type, const uint8_t *payload, size_t len)
{
    qjob_t *j = arg;
    const readplan_group_t *g = &j->plan.g[j->cur_group];
    if (status != 0) {
        char msg[400];
        if (status == ST_EINVAL && type == RPC_ERROR) {
            snprintf(msg, sizeof msg, "node %s: %.*s", topo_node_id(j->r->topo, g->node),
                     (int)(len < 300 ? len : 300), (const char *)payload);
            respond_error(j, 400, "bad_data", msg);
            return;
        }
        /* the replica failed: its shards move on to their next replica
         * (what it already sent is folded with theirs) */
        st_warn("read failed over", "node=%s err=\"%s\"", topo_node_id(j->r->topo, g->node),
                st_strerror(status));
        metric_counter_inc(j->r->rpc_fail);
        j->failovers++;
        uint32_t before = j->plan.nmissing;
        if (readplan_failover(&j->plan, j->cur_group, router_up_fn, j->r)) {
            respond_error(j, 503, "internal", "out of memory");
            return;
        }
        if (j->plan.nmissing != before && !unavailable(j))
            return;
        j->cur_group++;
        j->cur_sel = 0;
        j->cursor_shard = 0;
        j->cursor_pos = 0;
        next_fetch(j);
        return;
    }
    int done;
    uint32_t nshard = 0;
    uint64_t npos = 0;
    qselect_t *s = &j->sel[j->cur_sel];
    uint64_t before = s->set.samples;
    int rc = sset_add_page(&s->set, payload, len, &done, &nshard, &npos);
    j->samples += s->set.samples - before;
    if (!rc && j->samples > Q_MAX_SAMPLES)
        rc = ST_ELIMIT;
    if (rc) {
        respond_error(j, 422, "execution",
                      rc == ST_ELIMIT ? "query processing would load too many samples into memory"
                                      : "malformed reply from a node");
        return;
    }
    if (done) {
        j->cur_sel++;
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
        if (j->cur_group >= j->plan.ng) {
            start_phase(j, 2);
            return;
        }
        if (j->cur_sel >= j->nsel || j->plan.g[j->cur_group].n == 0) {
            j->cur_group++;
            j->cur_sel = 0;
            continue;
        }
        break;
    }
    const readplan_group_t *g = &j->plan.g[j->cur_group];
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
    rq.n_shards = g->n;
    rq.shards = g->shards;
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
    int64_t left = j->deadline - mono_ms();
    int rc = rpc_client_call(r->clients[g->node], RPC_EXPORT, buf, len,
                             (unsigned)(left < 1 ? 1 : left), on_page, j);
    free(buf);
    if (rc)
        on_page(j, rc, 0, NULL, 0);
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
    if (router_read_params(r, req, &form, &j->need, &j->partial, msg, sizeof msg))
        goto bad;
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

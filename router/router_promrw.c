/*
 * router_promrw — the Prometheus doors of the router:
 *
 *   POST /api/v1/write   remote write 1.0 (snappy + prompb WriteRequest).
 *       worker: inflate and decode (promrw.h) straight into a wbatch
 *       (wbatch_add_series), then the pipeline of /write takes over
 *       (router_write_submit: placement, consistency, failover, hints): 204;
 *       400 naming the refused series (the others are written: Prometheus
 *       drops a request answered 400 and does not retry it); 400 for a body
 *       that is not snappy or not a WriteRequest, 413 past max_body_bytes
 *       (compressed, or inflated: checked before inflating); 503 only when
 *       a shard missed its consistency, so senders retry exactly then.
 *   POST /api/v1/read    remote read, SAMPLES response type: every Query is
 *       a raw selection fetched with EXPORT pages over the read plan
 *       (fanout.h, folded with sset.h as /api/v1/query does; a quorum
 *       read queues read repair of replicas that disagree, router_rrepair.h),
 *       bounded by [router] query_max_samples and query_max_series; the ReadResponse
 *       is encoded by hand and snappy-compressed.
 *   GET/POST /federate   the latest sample (within 5 minutes, not a stale
 *       marker) of each series matching match[], in the text exposition
 *       format with "# TYPE name untyped" and timestamps in milliseconds.
 *
 * Reads and federation share one collect job: items (matchers + time
 * range), one sset each, the fan-out's callbacks, then a worker renders.
 */
#include <math.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fanout.h"
#include "http_util.h"
#include "prompb.pb-c.h"
#include "promrw.h"
#include "repl.h"
#include "router.h"
#include "router_rrepair.h"
#include "selector.h"
#include "sset.h"
#include "st_err.h"
#include "st_log.h"
#include "st_text.h"
#include "st_time.h"
#include "wbatch.h"
#include "wire.h"

#define PROMRR_MAX_QUERIES 64                /* Queries in one ReadRequest */
#define PROMRR_MAX_INFLIGHT 16               /* EXPORT RPCs in flight per read */
#define FEDERATE_LOOKBACK_MS 300000          /* Prometheus' lookback delta */
#define FEDERATE_MAX_SEL 16                  /* match[] parameters */
#define PROMRW_ERR_MAX 512                   /* bytes of an error message */
#define PROMRW_NODE_TEXT_MAX 250             /* bytes of a node's error text quoted */
#define PROM_STALE_NAN 0x7ff0000000000002ULL /* Prometheus' staleness marker */

/* ---- remote write --------------------------------------------------------- */

typedef struct rw_src {
    size_t max_body;
    promrw_stats_t st;
    int decoded; /* the body decoded (counted even if the write fails later) */
} rw_src_t;

static __thread promrw_t *tl_dec;

static int rw_series(void *arg, const promrw_series_t *s)
{
    return wbatch_add_series(arg, s->index, s->labels, s->nlabels, s->ts, s->v, s->n);
}

static void rw_bad(void *arg, size_t index, const char *reason)
{
    wbatch_reject(arg, index, reason);
}

static int rw_build(void *arg, http_req_t *req, wbatch_t *b, char *msg, size_t msglen)
{
    rw_src_t *src = arg;
    if (!tl_dec && promrw_create(src->max_body, &tl_dec))
        return ST_ENOMEM;
    const uint8_t *pb;
    size_t pblen;
    int rc = promrw_uncompress(tl_dec, req->body, req->body_len, &pb, &pblen);
    if (rc == ST_ECORRUPT) {
        snprintf(msg, msglen,
                 "body is not snappy-compressed (block format): expected a Prometheus remote "
                 "write 1.0 request");
        return rc;
    }
    if (rc == ST_ELIMIT) {
        snprintf(msg, msglen, "decoded body exceeds max_body_bytes (%zu)", src->max_body);
        return rc;
    }
    if (rc)
        return rc;
    rc = promrw_decode(tl_dec, pb, pblen, rw_series, rw_bad, b, &src->st);
    if (rc == ST_ECORRUPT) {
        snprintf(msg, msglen, "malformed protobuf WriteRequest (after %llu series)",
                 (unsigned long long)src->st.series);
        return rc;
    }
    if (rc)
        return rc;
    src->decoded = 1;
    return wbatch_finish(b);
}

static void rw_done(void *arg, router_t *r, const wbatch_t *b)
{
    rw_src_t *src = arg;
    metric_counter_inc(r->rw_requests);
    if (src->decoded) {
        metric_counter_add(r->rw_series, src->st.series);
        metric_counter_add(r->rw_samples, src->st.samples);
        metric_counter_add(r->rw_exemplars, src->st.exemplars);
        metric_counter_add(r->rw_metadata, src->st.metadata);
        metric_counter_add(r->rw_histograms, src->st.histograms);
    }
    if (b)
        metric_counter_add(r->rw_bad_series, wbatch_lines_bad(b));
    else
        metric_counter_inc(r->rw_bad_requests);
    free(src);
}

void router_handle_promrw_write(router_t *r, http_req_t *req)
{
    if (req->method != HTTP_METHOD_POST) {
        http_respond_error(req, 405, "use POST");
        return;
    }
    const char *ce = http_req_header(req, "Content-Encoding");
    if (ce && strcasecmp(ce, "snappy") != 0) {
        metric_counter_inc(r->rw_bad_requests);
        http_respond_error(req, 415, "unsupported Content-Encoding (remote write uses snappy)");
        return;
    }
    int consistency = repl_consistency_param(http_req_param(req, "consistency"));
    if (consistency < 0) {
        metric_counter_inc(r->rw_bad_requests);
        http_respond_error(req, 400, "invalid consistency (sync, quorum, async)");
        return;
    }
    rw_src_t *src = calloc(1, sizeof *src);
    if (!src) {
        http_respond_error(req, 503, "out of memory");
        return;
    }
    src->max_body = r->max_body;
    router_write_src_t ws = {rw_build, rw_done, "series", "series", src, 0};
    router_write_submit(r, req, consistency, st_now_ms(), &ws);
}

/* ---- collect: raw selections over the read plan --------------------------- */

enum { C_READ, C_FEDERATE };

typedef struct citem {
    st_matcher_t m[ROUTER_MAX_MATCHERS];
    size_t nm;
    int64_t start, end;
    sset_t set;
} citem_t;

typedef struct cjob {
    router_t *r;
    http_req_t *req;
    int kind;
    citem_t *items;
    size_t nitems;
    Prompb__ReadRequest *rr;          /* read: owns the matchers' strings */
    selector_t sel[FEDERATE_MAX_SEL]; /* federate: owns them */
    size_t nsel;
    int need, partial;
    fanout_t *fan;
    router_rrcheck_t *rrc; /* read repair check of the folds (NULL: none) */
    int fan_idle, busy, responded;
    uint64_t samples, max_samples, max_series;
    uv_work_t w;
    st_buf_t out;
    int status; /* of the rendered answer: 200, or an error with err */
    char err[PROMRW_ERR_MAX];
} cjob_t;

static void cjob_free(cjob_t *j)
{
    for (size_t i = 0; i < j->nitems; i++)
        sset_free(&j->items[i].set);
    free(j->items);
    if (j->rr)
        prompb__read_request__free_unpacked(j->rr, NULL);
    for (size_t i = 0; i < j->nsel; i++)
        selector_free(&j->sel[i]);
    fanout_destroy(j->fan);
    router_rrcheck_end(j->r, j->rrc);
    st_buf_deinit(&j->out);
    free(j);
}

static void maybe_free(cjob_t *j)
{
    if (j->fan_idle && !j->busy && j->responded)
        cjob_free(j);
}

static void c_error(cjob_t *j, int status, const char *msg)
{
    if (j->responded)
        return;
    j->responded = 1;
    if (j->kind == C_READ)
        http_respond(j->req, status, "text/plain; charset=utf-8", msg, strlen(msg));
    else
        http_respond_error(j->req, status, msg);
}

static int c_build(void *ctx, const fanout_call_t *c, uint8_t *type, unsigned *timeout_ms,
                   st_buf_t *out)
{
    cjob_t *j = ctx;
    const citem_t *it = &j->items[c->item];
    *type = RPC_EXPORT;
    *timeout_ms = (unsigned)j->r->timeout_ms;
    router_read_req_t rq = {.m = it->m, .nm = it->nm, .start = it->start, .end = it->end};
    return router_pack_read(out, c, &rq);
}

static int c_reply(void *ctx, fanout_call_t *c, const uint8_t *payload, size_t len)
{
    cjob_t *j = ctx;
    citem_t *it = &j->items[c->item];
    int done;
    uint32_t nshard = 0;
    uint64_t npos = 0, before = it->set.samples;
    it->set.origin = c->node; /* read repair: which replica sent these series */
    int rc = sset_add_page(&it->set, payload, len, &done, &nshard, &npos);
    j->samples += it->set.samples - before;
    if (!rc && j->samples > j->max_samples)
        rc = ST_ELIMIT;
    if (rc) {
        if (rc == ST_ELIMIT)
            snprintf(j->err, sizeof j->err,
                     "the read would load more than %llu samples into memory "
                     "([router] query_max_samples); narrow the matchers or the time range",
                     (unsigned long long)j->max_samples);
        else
            snprintf(j->err, sizeof j->err, "%s",
                     rc == ST_ENOMEM ? "out of memory" : "malformed reply from a node");
        c_error(j, rc == ST_ELIMIT ? 422 : 503, j->err);
        return FANOUT_STOP;
    }
    if (done)
        return FANOUT_DONE;
    c->cursor_shard = nshard;
    c->cursor_pos = npos;
    return FANOUT_MORE;
}

static int c_failed(void *ctx, const fanout_call_t *c, const fanout_failure_t *f)
{
    cjob_t *j = ctx;
    if (f->node_said && f->status == ST_EINVAL) {
        snprintf(j->err, sizeof j->err, "node %s: %.*s", topo_node_id(j->r->topo, c->node),
                 (int)(f->len < PROMRW_NODE_TEXT_MAX ? f->len : PROMRW_NODE_TEXT_MAX),
                 (const char *)f->msg);
        c_error(j, 400, j->err);
        return FANOUT_STOP;
    }
    st_warn("read failed over", "node=%s err=\"%s\"", topo_node_id(j->r->topo, c->node),
            st_strerror(f->status));
    metric_counter_inc(j->r->rpc_fail);
    return FANOUT_FAILOVER;
}

static void render_work(uv_work_t *w);
static void render_after(uv_work_t *w, int status);

static void c_end(void *ctx, fanout_how_t how, const fanout_call_t *c)
{
    cjob_t *j = ctx;
    (void)c;
    if (how == FANOUT_COMPLETE) {
        j->w.data = j;
        j->busy = 1;
        if (j->nitems) { /* read repair over the time the items read */
            int64_t lo = j->items[0].start, hi = j->items[0].end;
            for (size_t i = 1; i < j->nitems; i++) {
                lo = j->items[i].start < lo ? j->items[i].start : lo;
                hi = j->items[i].end > hi ? j->items[i].end : hi;
            }
            j->rrc = router_rrcheck_begin(j->r, j->fan, j->need, lo, hi);
        }
        if (uv_queue_work(j->r->loop, &j->w, render_work, render_after) != 0) {
            j->busy = 0;
            c_error(j, 503, "cannot queue work");
        }
    } else if (how == FANOUT_UNAVAILABLE) {
        char msg[FANOUT_MISSING_MAX + 160];
        fanout_unavailable_msg(j->fan, msg, sizeof msg);
        metric_counter_inc(j->r->rpc_fail);
        c_error(j, 503, msg);
    } else {
        c_error(j, 503, "out of memory");
    }
}

static void c_idle(void *ctx)
{
    cjob_t *j = ctx;
    j->fan_idle = 1;
    if (!j->responded && !j->busy)
        c_error(j, 503, "read stopped");
    maybe_free(j);
}

static const fanout_ops_t collect_ops = {c_build, c_reply, c_failed, c_end, c_idle};

static void c_start(cjob_t *j)
{
    fanout_cfg_t cfg = router_fanout_cfg(j->r, j->need, j->partial, j->nitems, PROMRR_MAX_INFLIGHT,
                                         &collect_ops, j);
    if (fanout_create(&cfg, &j->fan)) {
        c_error(j, 503, "out of memory");
        j->fan_idle = 1;
        maybe_free(j);
        return;
    }
    fanout_start(j->fan); /* the job is the fan-out's from here */
}

static cjob_t *c_new(router_t *r, http_req_t *req, int kind)
{
    cjob_t *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->r = r;
    j->req = req;
    j->kind = kind;
    j->need = 1;
    j->max_samples = topo_router(r->topo)->query_max_samples;
    j->max_series = topo_router(r->topo)->query_max_series;
    st_buf_init(&j->out);
    return j;
}

/* ---- rendering -------------------------------------------------------------- */

/* A LEN field holding a fixed64 (Sample.value) and a varint (timestamp). */
static int put_sample(st_buf_t *b, double v, int64_t ts)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    uint8_t tmp[2 + 1 + 8 + 1 + 10];
    size_t n = 2;
    tmp[n++] = (1 << 3) | WIRE_I64;
    for (int k = 0; k < 8; k++)
        tmp[n++] = (uint8_t)(u >> (8 * k));
    tmp[n++] = (2 << 3) | WIRE_VARINT;
    uint64_t t = (uint64_t)ts;
    while (t >= 0x80) {
        tmp[n++] = (uint8_t)(t | 0x80);
        t >>= 7;
    }
    tmp[n++] = (uint8_t)t;
    tmp[0] = (2 << 3) | WIRE_LEN; /* TimeSeries.samples */
    tmp[1] = (uint8_t)(n - 2);
    return st_buf_append(b, tmp, n);
}

/* ReadResponse{QueryResult{TimeSeries{labels, samples}}} for every query. */
static int render_read(cjob_t *j, st_buf_t *pb)
{
    int rc = 0;
    uint64_t series = 0;
    for (size_t q = 0; q < j->nitems && !rc; q++) {
        size_t mres;
        rc = wire_begin(pb, 1, &mres); /* ReadResponse.results */
        sset_t *ss = &j->items[q].set;
        for (size_t i = 0; i < ss->n && !rc; i++) {
            const sset_series_t *s = &ss->s[i];
            if (++series > j->max_series) {
                snprintf(j->err, sizeof j->err,
                         "the read matches more than %llu series ([router] query_max_series)",
                         (unsigned long long)j->max_series);
                j->status = 422;
                return ST_ELIMIT;
            }
            size_t mts;
            rc = wire_begin(pb, 1, &mts); /* QueryResult.timeseries */
            for (size_t k = 0; k < s->nlabels && !rc; k++) {
                size_t ml;
                rc = wire_begin(pb, 1, &ml); /* TimeSeries.labels */
                rc |= wire_put_bytes_field(pb, 1, s->labels[k].name, s->labels[k].name_len);
                rc |= wire_put_bytes_field(pb, 2, s->labels[k].value, s->labels[k].value_len);
                wire_end(pb, ml);
            }
            for (size_t k = 0; k < s->n && !rc; k++)
                rc = put_sample(pb, s->v[k], s->ts[k]);
            wire_end(pb, mts);
        }
        wire_end(pb, mres);
    }
    return rc ? ST_ENOMEM : 0;
}

static int is_stale(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u == PROM_STALE_NAN;
}

typedef struct fed_row {
    const sset_series_t *s;
    const st_label_t *name; /* NULL: none */
} fed_row_t;

static int row_cmp(const void *a, const void *b)
{
    const fed_row_t *x = a, *y = b;
    uint32_t xl = x->name ? x->name->value_len : 0, yl = y->name ? y->name->value_len : 0;
    int c = memcmp(x->name ? x->name->value : "", y->name ? y->name->value : "", xl < yl ? xl : yl);
    if (c || xl != yl)
        return c ? c : xl < yl ? -1 : 1;
    return st_labels_cmp(x->s->labels, x->s->nlabels, y->s->labels, y->s->nlabels);
}

/* Text exposition label value: backslash, double quote and newline escaped. */
static int put_label_value(st_buf_t *b, const char *v, size_t n)
{
    int rc = 0;
    size_t from = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *esc = v[i] == '\\'   ? "\\\\"
                          : v[i] == '"'  ? "\\\""
                          : v[i] == '\n' ? "\\n"
                                         : NULL;
        if (!esc)
            continue;
        rc = st_buf_append(b, v + from, i - from);
        rc |= st_buf_append(b, esc, 2);
        from = i + 1;
    }
    return rc | st_buf_append(b, v + from, n - from);
}

static int render_federate(cjob_t *j, st_buf_t *b)
{
    size_t total = 0;
    for (size_t q = 0; q < j->nitems; q++)
        total += j->items[q].set.n;
    fed_row_t *rows = malloc((total ? total : 1) * sizeof *rows);
    if (!rows)
        return ST_ENOMEM;
    size_t n = 0;
    for (size_t q = 0; q < j->nitems; q++) {
        const sset_t *ss = &j->items[q].set;
        for (size_t i = 0; i < ss->n; i++) {
            const sset_series_t *s = &ss->s[i];
            if (!s->n || is_stale(s->v[s->n - 1]))
                continue; /* a series that went stale is gone */
            int k = st_labels_find(s->labels, s->nlabels, ST_METRIC_LABEL);
            rows[n++] = (fed_row_t){s, k >= 0 ? &s->labels[k] : NULL};
        }
    }
    qsort(rows, n, sizeof *rows, row_cmp);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const fed_row_t *row = &rows[i];
        if (i && row_cmp(row, &rows[i - 1]) == 0)
            continue; /* matched by two match[] */
        const char *name = row->name ? row->name->value : "";
        size_t nlen = row->name ? row->name->value_len : 0;
        if (i == 0 || !rows[i - 1].name != !row->name ||
            (row->name && (rows[i - 1].name->value_len != nlen ||
                           memcmp(rows[i - 1].name->value, name, nlen) != 0))) {
            ST_BUF_LIT(b, "# TYPE ");
            st_buf_append(b, name, nlen);
            ST_BUF_LIT(b, " untyped\n");
        }
        st_buf_append(b, name, nlen);
        int first = 1;
        for (size_t k = 0; k < row->s->nlabels; k++) {
            const st_label_t *l = &row->s->labels[k];
            if (l == row->name)
                continue;
            st_buf_put_u8(b, first ? '{' : ',');
            first = 0;
            st_buf_append(b, l->name, l->name_len);
            ST_BUF_LIT(b, "=\"");
            put_label_value(b, l->value, l->value_len);
            st_buf_put_u8(b, '"');
        }
        if (!first)
            st_buf_put_u8(b, '}');
        st_buf_put_u8(b, ' ');
        const sset_series_t *s = row->s;
        st_fmt_double_g(b, s->v[s->n - 1]);
        char ts[32];
        int k = snprintf(ts, sizeof ts, " %lld\n", (long long)s->ts[s->n - 1]);
        rc = st_buf_append(b, ts, (size_t)k);
    }
    free(rows);
    return rc ? ST_ENOMEM : 0;
}

static void render_work(uv_work_t *w)
{
    cjob_t *j = w->data;
    int rc = 0;
    for (size_t q = 0; q < j->nitems && !rc; q++)
        rc = router_rrcheck_merge(j->rrc, &j->items[q].set);
    j->status = 200;
    if (!rc && j->kind == C_FEDERATE) {
        rc = render_federate(j, &j->out);
    } else if (!rc) {
        st_buf_t pb;
        st_buf_init(&pb);
        rc = render_read(j, &pb);
        if (!rc) {
            size_t max = snappy_max_compressed_length(pb.len), got = max;
            if (st_buf_reserve(&j->out, max))
                rc = ST_ENOMEM;
            else if (snappy_compress((const char *)pb.data, pb.len, (char *)j->out.data, &got) !=
                     SNAPPY_OK)
                rc = ST_ENOMEM;
            else
                j->out.len = got;
        }
        st_buf_deinit(&pb);
    }
    if (rc && j->status == 200) {
        j->status = 503;
        snprintf(j->err, sizeof j->err, "%s", st_strerror(rc));
    }
}

static void render_after(uv_work_t *w, int status)
{
    cjob_t *j = w->data;
    (void)status;
    j->busy = 0;
    router_rrcheck_end(j->r, j->rrc);
    j->rrc = NULL;
    if (j->status != 200) {
        c_error(j, j->status, j->err);
    } else if (!j->responded) {
        j->responded = 1;
        if (j->kind == C_READ) {
            http_header_t h = {"Content-Encoding", "snappy"};
            http_respond_headers(j->req, 200, "application/x-protobuf", &h, 1, j->out.data,
                                 j->out.len);
        } else {
            http_respond(j->req, 200, "text/plain; version=0.0.4; charset=utf-8", j->out.data,
                         j->out.len);
        }
    }
    maybe_free(j);
}

/* ---- remote read ------------------------------------------------------------ */

static const st_match_type_t match_types[] = {ST_MATCH_EQ, ST_MATCH_NE, ST_MATCH_RE, ST_MATCH_NRE};

void router_handle_promrw_read(router_t *r, http_req_t *req)
{
    metric_counter_inc(r->rr_requests);
    if (req->method != HTTP_METHOD_POST) {
        http_respond_error(req, 405, "use POST");
        return;
    }
    char err[PROMRW_ERR_MAX];
    size_t n;
    if (snappy_uncompressed_length((const char *)req->body, req->body_len, &n) != SNAPPY_OK) {
        http_respond(req, 400, "text/plain; charset=utf-8",
                     "body is not snappy-compressed (block format)", 44);
        return;
    }
    if (n > r->max_body) {
        http_respond_error(req, 413, "decoded body exceeds max_body_bytes");
        return;
    }
    char *raw = malloc(n ? n : 1);
    size_t got = n;
    if (!raw) {
        http_respond_error(req, 503, "out of memory");
        return;
    }
    cjob_t *j = NULL;
    if (snappy_uncompress((const char *)req->body, req->body_len, raw, &got) != SNAPPY_OK ||
        got != n) {
        snprintf(err, sizeof err, "body is not snappy-compressed (block format)");
        goto bad;
    }
    Prompb__ReadRequest *rr = prompb__read_request__unpack(NULL, n, (const uint8_t *)raw);
    if (!rr) {
        snprintf(err, sizeof err, "malformed protobuf ReadRequest");
        goto bad;
    }
    j = c_new(r, req, C_READ);
    if (!j) {
        prompb__read_request__free_unpacked(rr, NULL);
        free(raw);
        http_respond_error(req, 503, "out of memory");
        return;
    }
    j->rr = rr;
    int samples_ok = rr->n_accepted_response_types == 0;
    for (size_t i = 0; i < rr->n_accepted_response_types; i++)
        samples_ok |=
            rr->accepted_response_types[i] == PROMPB__READ_REQUEST__RESPONSE_TYPE__SAMPLES;
    if (!samples_ok) {
        snprintf(err, sizeof err, "only the SAMPLES response type is implemented");
        goto bad;
    }
    if (rr->n_queries > PROMRR_MAX_QUERIES) {
        snprintf(err, sizeof err, "too many queries in one read (max %d)", PROMRR_MAX_QUERIES);
        goto bad;
    }
    j->items = calloc(rr->n_queries ? rr->n_queries : 1, sizeof *j->items);
    if (!j->items) {
        snprintf(err, sizeof err, "out of memory");
        goto bad;
    }
    j->nitems = rr->n_queries;
    for (size_t q = 0; q < rr->n_queries; q++) {
        const Prompb__Query *pq = rr->queries[q];
        citem_t *it = &j->items[q];
        sset_init(&it->set, 0);
        if (pq->n_matchers == 0 || pq->n_matchers > ROUTER_MAX_MATCHERS) {
            snprintf(err, sizeof err, "query %zu: between 1 and %d matchers needed", q,
                     ROUTER_MAX_MATCHERS);
            goto bad;
        }
        if (pq->end_timestamp_ms < pq->start_timestamp_ms) {
            snprintf(err, sizeof err, "query %zu: end before start", q);
            goto bad;
        }
        for (size_t k = 0; k < pq->n_matchers; k++) {
            const Prompb__LabelMatcher *lm = pq->matchers[k];
            if ((unsigned)lm->type > 3) {
                snprintf(err, sizeof err, "query %zu: unknown matcher type %d", q, lm->type);
                goto bad;
            }
            it->m[k] = (st_matcher_t){match_types[lm->type], lm->name, lm->value};
        }
        it->nm = pq->n_matchers;
        const st_matcher_t *cm; /* a confined user's selector, ANDed in */
        size_t ncm = auth_gate_user(req) ? auth_user_matchers(auth_gate_user(req), &cm) : 0;
        if (it->nm + ncm > ROUTER_MAX_MATCHERS) {
            snprintf(err, sizeof err, "query %zu: more than %d matchers with the user's selector",
                     q, ROUTER_MAX_MATCHERS);
            goto bad;
        }
        for (size_t k = 0; k < ncm; k++)
            it->m[it->nm++] = cm[k];
        it->start = pq->start_timestamp_ms;
        it->end = pq->end_timestamp_ms;
    }
    free(raw);
    if (j->nitems == 0) {
        j->fan_idle = 1;
        j->w.data = j;
        render_work(&j->w);
        render_after(&j->w, 0);
        return;
    }
    c_start(j);
    return;
bad:
    free(raw);
    metric_counter_inc(r->rw_bad_requests);
    http_respond(req, 400, "text/plain; charset=utf-8", err, strlen(err));
    if (j)
        cjob_free(j);
}

/* ---- federate --------------------------------------------------------------- */

void router_handle_federate(router_t *r, http_req_t *req)
{
    metric_counter_inc(r->federate);
    char err[PROMRW_ERR_MAX];
    http_params_t params;
    cjob_t *j = c_new(r, req, C_FEDERATE);
    if (!j) {
        http_respond_error(req, 503, "out of memory");
        return;
    }
    if (router_read_load(req, &params, err, sizeof err))
        goto bad;
    if (router_read_params(r, &params, &j->need, &j->partial, err, sizeof err))
        goto bad;
    if (router_read_matches(&params, j->sel, FEDERATE_MAX_SEL, &j->nsel, err, sizeof err))
        goto bad;
    if (j->nsel == 0) {
        snprintf(err, sizeof err, "no match[] parameter provided");
        goto bad;
    }
    if (router_read_confine(req, j->sel, FEDERATE_MAX_SEL, &j->nsel, err, sizeof err))
        goto bad;
    j->items = calloc(j->nsel, sizeof *j->items);
    if (!j->items) {
        snprintf(err, sizeof err, "out of memory");
        goto bad;
    }
    j->nitems = j->nsel;
    int64_t now = st_now_ms();
    for (size_t i = 0; i < j->nsel; i++) {
        citem_t *ci = &j->items[i];
        sset_init(&ci->set, 0);
        memcpy(ci->m, j->sel[i].m, j->sel[i].n * sizeof ci->m[0]);
        ci->nm = j->sel[i].n;
        ci->start = now - FEDERATE_LOOKBACK_MS;
        ci->end = now;
    }
    http_params_deinit(&params);
    c_start(j);
    return;
bad:
    http_params_deinit(&params);
    http_respond_error(req, 400, err);
    cjob_free(j);
}

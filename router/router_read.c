/*
 * router_read — /api/v1/export, /api/v1/series, /api/v1/labels and
 * /api/v1/label/<name>/values, fanned out to one replica per shard. GET or
 * POST: parameters come from the query string and a form body alike
 * (router_read_load, the one reader every read endpoint uses).
 *
 * The fan-out core (fanout.h) walks the read plan one request at a time:
 * for each group (a node and the shards it answers for), for each match[]
 * selector, EXPORT / SERIES / LABEL_* pages until the node says done, with
 * failover to the shards' next replicas and the missing-shard rules; this
 * file builds the requests and takes the replies. With
 * read_consistency=quorum, floor(RF/2)+1 replicas answer per shard: series
 * and labels are de-duplicated as usual, exports are collected (sset.h),
 * folded and sent at the end; the fold notes replicas that disagree and
 * queues their read repair (router_rrepair.h). Export pages are turned into JSON lines on
 * the thread pool (the call is held meanwhile) and streamed to the client
 * with chunked encoding; when the client reads slowly the call stays held
 * until the HTTP layer reports the buffer drained, so memory stays bounded
 * by one page. A group that already streamed something is not failed over:
 * the stream ends with an error line. Series and label answers are
 * collected, de-duplicated and sent at the end. A shard whose replica
 * cannot answer fails the read with 503 naming it (never a silent partial
 * result), unless partial_response=1 asked for one. A node's regex over
 * its match limit is a 422 (execution), not failed over.
 *
 * Deadline: a read is answered within [router] request_timeout as a whole
 * (until its response starts: a streaming export then goes on page by
 * page, each page given request_timeout, as the client drains it). Each
 * call carries the time it may take to the node (ReadRequest.timeout_ms),
 * which stops there. When the shards have spare replicas, one call gets
 * half of the time left (READ_TRY_MIN_MS at least): a frozen replica costs
 * at most that half, and the next replica still has the other half to
 * answer in (test_replication's SIGSTOP); without spares (RF 1, or quorum
 * over every replica) a call gets all of it. Past the deadline the answer
 * is 503 (timeout) naming request_timeout, counted in
 * strata_router_queries_refused_total{limit="request_timeout"}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export_json.h"
#include "fanout.h"
#include "http_util.h"
#include "router.h"
#include "router_rrepair.h"
#include "selector.h"
#include "sset.h"
#include "st_err.h"
#include "st_text.h"
#include "st_log.h"
#include "st_time.h"
#include "wire.h"

enum { K_EXPORT, K_SERIES, K_LABELS, K_VALUES };

#define MAX_SEL 16                       /* match[] parameters per read */
#define READ_SERIES_PER_PAGE 50000       /* max_series of a read page */
#define READ_QUORUM_MAX_SAMPLES 50000000 /* samples a quorum export may buffer */
#define READ_WHY_MAX 300                 /* bytes of a failure reason */
#define READ_NODE_TEXT_MAX 250           /* bytes of a node's error text quoted */
#define READ_MSG_MAX 600                 /* bytes of an error message */
#define READ_SEEN_MIN 1024               /* first size of the series hash set */
#define READ_STRS_MIN 64                 /* first size of the label string list */
#define READ_TRY_MIN_MS 500              /* a call's time, however little is left (unless less) */
#define READ_DEADLINE_SLACK_MS 20        /* a call timer may fire this early against st_mono_ms */

typedef struct rjob {
    router_t *r;
    http_req_t *req;
    int kind;
    selector_t sel[MAX_SEL];
    size_t nsel;
    int64_t start, end;
    char *label_name;
    fanout_t *fan;
    int fan_idle;     /* the fan-out is idle, or was never started */
    int64_t deadline; /* st_mono_ms() by which the response must start */
    int need, partial, buffered;
    size_t emitted_group;   /* the group that streamed something: no failover */
    char why[READ_WHY_MAX]; /* the last failure */
    sset_t set;             /* buffered export (read_consistency=quorum): merged at the end */
    router_rrcheck_t *rr;   /* read repair check of the fold (NULL: none) */
    int started, paused, closed, busy; /* busy: a work job is in flight */
    fanout_call_t *held;               /* the call whose page is being converted or sent */
    int held_verdict;                  /* what the fan-out is told once the client drained */
    /* de-duplication of series across selectors (hash set) */
    uint64_t *seen;
    size_t nseen, seencap;
    /* collected answers */
    st_buf_t acc;
    size_t nacc;
    char **strs;
    size_t nstrs, strcap;
    /* page conversion */
    uv_work_t w;
    uint8_t *page;
    size_t page_len;
    st_buf_t json;
    int page_done;
    uint32_t next_shard;
    uint64_t next_pos;
    int page_err;
    const router_export_fmt_t *fmt; /* export lines in another format; NULL: JSON */
    void *fmt_arg;
    router_strings_fn strings_fn; /* label names/values to a caller, not the client */
    void *strings_arg;
    int strings_done; /* strings_fn was called */
} rjob_t;

/* One series' export line(s) in the job's format. */
static int render_line(const rjob_t *j, st_buf_t *b, const st_label_t *l, size_t nl,
                       const int64_t *ts, const double *v, size_t n)
{
    if (j->fmt)
        return j->fmt->line(j->fmt_arg, b, l, nl, ts, v, n);
    return export_json_line(b, l, nl, ts, v, n);
}

static const char *export_type(const rjob_t *j)
{
    return j->fmt ? j->fmt->content_type : "application/stream+json";
}

static void free_job(rjob_t *j)
{
    for (size_t i = 0; i < j->nsel; i++)
        selector_free(&j->sel[i]);
    fanout_destroy(j->fan);
    sset_free(&j->set);
    free(j->label_name);
    free(j->seen);
    st_buf_deinit(&j->acc);
    st_buf_deinit(&j->json);
    for (size_t i = 0; i < j->nstrs; i++)
        free(j->strs[i]);
    free(j->strs);
    free(j->page);
    if (j->fmt && j->fmt->free_arg)
        j->fmt->free_arg(j->fmt_arg);
    if (j->strings_fn && !j->strings_done)
        j->strings_fn(j->strings_arg, NULL, NULL, 0); /* failed and answered: let go of arg */
    free(j);
}

/* The job goes once the fan-out is idle and no work job runs. */
static void maybe_free(rjob_t *j)
{
    if (j->fan_idle && !j->busy)
        free_job(j);
}

/* 1 if h was new (and is now in the set), 0 if seen, <0 on OOM. */
static int seen_add(rjob_t *j, uint64_t h)
{
    if ((j->nseen + 1) * 2 > j->seencap) {
        size_t cap = j->seencap ? j->seencap * 2 : READ_SEEN_MIN;
        uint64_t *t = calloc(cap, sizeof *t);
        if (!t)
            return ST_ENOMEM;
        for (size_t i = 0; i < j->seencap; i++) {
            if (!j->seen[i])
                continue;
            size_t k = j->seen[i] & (cap - 1);
            while (t[k])
                k = (k + 1) & (cap - 1);
            t[k] = j->seen[i];
        }
        free(j->seen);
        j->seen = t;
        j->seencap = cap;
    }
    if (h == 0)
        h = 1; /* 0 marks an empty slot */
    size_t k = h & (j->seencap - 1);
    while (j->seen[k]) {
        if (j->seen[k] == h)
            return 0;
        k = (k + 1) & (j->seencap - 1);
    }
    j->seen[k] = h;
    j->nseen++;
    return 1;
}

/* Answer that call c's shards could not be read: 503, or an error line
 * ending a stream already started. */
static void fail_unavailable(rjob_t *j, const fanout_call_t *c, const char *why)
{
    char msg[READ_MSG_MAX];
    fanout_group_msg(j->fan, c->group, why, msg, sizeof msg);
    metric_counter_inc(j->r->rpc_fail);
    if (!j->started) {
        router_prom_error(j->req, 503, "unavailable", msg);
    } else {
        /* too late for a status code: end the stream with an error line */
        st_buf_t b;
        st_buf_init(&b);
        ST_BUF_LIT(&b, "{\"error\":");
        st_json_str(&b, msg, strlen(msg));
        ST_BUF_LIT(&b, "}\n");
        http_respond_chunk(j->req, b.data, b.len);
        http_respond_end(j->req);
        st_buf_deinit(&b);
    }
}

static void put_warnings(rjob_t *j, st_buf_t *b)
{
    char w[FANOUT_WARNING_MAX];
    size_t n = fanout_partial_warning(j->fan, w, sizeof w);
    if (!n)
        return;
    ST_BUF_LIT(b, ",\"warnings\":[");
    st_json_str(b, w, n);
    st_buf_put_u8(b, ']');
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Worker: fold a buffered (quorum) export and render it. */
static void render_work(uv_work_t *w)
{
    rjob_t *j = w->data;
    st_buf_reset(&j->json);
    j->page_err = router_rrcheck_merge(j->rr, &j->set);
    for (size_t i = 0; i < j->set.n && !j->page_err; i++) {
        const sset_series_t *fs = &j->set.s[i];
        if (render_line(j, &j->json, fs->labels, fs->nlabels, fs->ts, fs->v, fs->n) < 0)
            j->page_err = ST_ENOMEM;
    }
}

static void export_headers(rjob_t *j, http_header_t *h, size_t *nh)
{
    *nh = 0;
    if (fanout_missing(j->fan)[0]) {
        h[0].name = "X-Strata-Missing-Shards";
        h[0].value = fanout_missing(j->fan);
        *nh = 1;
    }
}

static void render_after(uv_work_t *w, int status)
{
    rjob_t *j = w->data;
    (void)status;
    j->busy = 0;
    router_rrcheck_end(j->r, j->rr);
    j->rr = NULL;
    if (j->closed) {
        maybe_free(j);
        return;
    }
    if (j->page_err) {
        router_prom_error(j->req, 503, "internal", st_strerror(j->page_err));
    } else {
        http_header_t h[1];
        size_t nh;
        export_headers(j, h, &nh);
        http_respond_headers(j->req, 200, export_type(j), h, nh, j->json.data, j->json.len);
    }
    maybe_free(j);
}

/* Every call done: answer (a buffered export is folded first). */
static void finish(rjob_t *j)
{
    st_buf_t b;
    st_buf_init(&b);
    switch (j->kind) {
    case K_EXPORT:
        if (j->buffered) {
            j->w.data = j;
            j->busy = 1;
            j->rr = router_rrcheck_begin(j->r, j->fan, j->need, j->start, j->end);
            if (uv_queue_work(j->r->loop, &j->w, render_work, render_after) != 0) {
                j->busy = 0;
                router_rrcheck_end(j->r, j->rr);
                j->rr = NULL;
                router_prom_error(j->req, 503, "internal", "cannot queue work");
            }
            st_buf_deinit(&b);
            return;
        }
        if (j->started) {
            http_respond_end(j->req);
        } else {
            http_header_t h[1];
            size_t nh;
            export_headers(j, h, &nh);
            http_respond_headers(j->req, 200, export_type(j), h, nh, "", 0);
        }
        break;
    case K_SERIES:
        ST_BUF_LIT(&b, "{\"status\":\"success\",\"data\":[");
        st_buf_append(&b, j->acc.data, j->acc.len);
        ST_BUF_LIT(&b, "]");
        put_warnings(j, &b);
        st_buf_put_u8(&b, '}');
        http_respond(j->req, 200, "application/json", b.data, b.len);
        break;
    default:
        if (j->nstrs)
            qsort(j->strs, j->nstrs, sizeof *j->strs, cmp_str);
        if (j->strings_fn) {
            size_t k = 0;
            for (size_t i = 0; i < j->nstrs; i++) {
                if (k && strcmp(j->strs[i], j->strs[k - 1]) == 0) {
                    free(j->strs[i]);
                    continue;
                }
                j->strs[k++] = j->strs[i];
            }
            j->nstrs = k;
            j->strings_done = 1;
            j->strings_fn(j->strings_arg, j->req, (const char *const *)j->strs, k);
            break;
        }
        ST_BUF_LIT(&b, "{\"status\":\"success\",\"data\":[");
        for (size_t i = 0, k = 0; i < j->nstrs; i++) {
            if (i && strcmp(j->strs[i], j->strs[i - 1]) == 0)
                continue;
            if (k++)
                st_buf_put_u8(&b, ',');
            st_json_str(&b, j->strs[i], strlen(j->strs[i]));
        }
        ST_BUF_LIT(&b, "]");
        put_warnings(j, &b);
        st_buf_put_u8(&b, '}');
        http_respond(j->req, 200, "application/json", b.data, b.len);
    }
    st_buf_deinit(&b);
}

/* Worker: a ReadResponse page -> JSON (export) or JSON objects (series). */
static void page_work(uv_work_t *w)
{
    rjob_t *j = w->data;
    const uint8_t *p = j->page, *end = p + j->page_len;
    wire_field_t f;
    int rc;
    j->page_done = 1;
    j->next_shard = 0;
    j->next_pos = 0;
    st_buf_reset(&j->json);
    if (j->buffered) {
        j->page_err = sset_add_page(&j->set, j->page, j->page_len, &j->page_done, &j->next_shard,
                                    &j->next_pos);
        return;
    }
    int64_t *ts = NULL;
    double *v = NULL;
    size_t cap = 0;
    while ((rc = wire_next(&p, end, &f)) == 1) {
        if (f.num == WIRE_READ_RESPONSE_DONE && f.type == WIRE_VARINT) {
            j->page_done = f.u != 0;
        } else if (f.num == WIRE_READ_RESPONSE_NEXT_SHARD && f.type == WIRE_VARINT) {
            j->next_shard = (uint32_t)f.u;
        } else if (f.num == WIRE_READ_RESPONSE_NEXT_POS && f.type == WIRE_VARINT) {
            j->next_pos = f.u;
        } else if (f.num == WIRE_READ_RESPONSE_SERIES && f.type == WIRE_LEN) {
            wire_series_t s;
            if ((rc = wire_series_decode(f.data, f.len, &s)) < 0)
                break;
            if (j->nsel > 1 || j->kind == K_SERIES) {
                int fresh = seen_add(j, st_labels_hash(s.labels, s.nlabels));
                if (fresh < 0) {
                    rc = fresh;
                    break;
                }
                if (!fresh)
                    continue;
            }
            if (j->kind == K_SERIES) {
                if (j->nacc++)
                    st_buf_put_u8(&j->acc, ',');
                rc = export_json_labels(&j->acc, s.labels, s.nlabels);
                if (j->nacc > ROUTER_MAX_SERIES)
                    rc = ST_ELIMIT;
                if (rc)
                    break;
                continue;
            }
            if (s.nvals > cap) {
                cap = s.nvals;
                int64_t *nts = realloc(ts, cap * sizeof *ts);
                double *nv = nts ? realloc(v, cap * sizeof *v) : NULL;
                if (!nts || !nv) {
                    ts = nts ? nts : ts;
                    rc = ST_ENOMEM;
                    break;
                }
                ts = nts;
                v = nv;
            }
            size_t n;
            if ((rc = wire_series_samples(&s, ts, v, cap, &n)) < 0)
                break;
            if ((rc = render_line(j, &j->json, s.labels, s.nlabels, ts, v, n)) < 0)
                break;
        }
    }
    free(ts);
    free(v);
    j->page_err = rc < 0 ? rc : 0;
}

/* Tell the fan-out what became of the held call (the job may be gone). */
static void release(rjob_t *j, int verdict)
{
    fanout_call_t *c = j->held;
    j->held = NULL;
    fanout_resume(j->fan, c, verdict);
}

static void on_notify(http_req_t *req, int event, void *arg)
{
    rjob_t *j = arg;
    (void)req;
    if (event == HTTP_NOTIFY_DRAIN) {
        if (j->paused && !j->busy) {
            j->paused = 0;
            release(j, j->held_verdict);
        }
    } else {
        j->closed = 1;
        if (j->paused && !j->busy) {
            /* a call held for the client: the reply callback or page_after
             * handle the other cases */
            j->paused = 0;
            http_respond_end(j->req);
            release(j, FANOUT_STOP);
        }
    }
}

static void page_after(uv_work_t *w, int status)
{
    rjob_t *j = w->data;
    (void)status;
    j->busy = 0;
    free(j->page);
    j->page = NULL;
    if (j->closed) {
        if (j->started)
            http_respond_end(j->req);
        release(j, FANOUT_STOP);
        return;
    }
    if (j->page_err) {
        if (j->page_err == ST_ELIMIT)
            http_respond_error(j->req, 422,
                               j->buffered ? "too many samples for a quorum export (limit "
                                             "50000000); narrow match[] or the time range, or "
                                             "use read_consistency=one"
                                           : "too many series; narrow match[] or the time range");
        else
            fail_unavailable(j, j->held, st_strerror(j->page_err));
        release(j, FANOUT_STOP);
        return;
    }
    int verdict = FANOUT_DONE;
    if (!j->page_done) {
        j->held->cursor_shard = j->next_shard;
        j->held->cursor_pos = j->next_pos;
        verdict = FANOUT_MORE;
    }
    if (j->kind == K_EXPORT && j->json.len) {
        j->emitted_group = j->held->group;
        if (!j->started) {
            http_header_t h[1];
            size_t nh;
            export_headers(j, h, &nh);
            if (http_respond_start_headers(j->req, 200, export_type(j), h, nh)) {
                release(j, FANOUT_STOP);
                return;
            }
            http_req_notify(j->req, on_notify, j);
            j->started = 1;
        }
        int rc = http_respond_chunk(j->req, j->json.data, j->json.len);
        st_buf_reset(&j->json);
        if (rc < 0) {
            http_respond_end(j->req);
            release(j, FANOUT_STOP);
            return;
        }
        if (rc == 1) {
            j->paused = 1;
            j->held_verdict = verdict;
            return; /* on_notify(DRAIN) resumes */
        }
    }
    release(j, verdict);
}

/* Label names or values of one node: collected, sorted at the end. */
static int add_strings(rjob_t *j, const uint8_t *payload, size_t len)
{
    const uint8_t *p = payload, *end = payload + len;
    wire_field_t f;
    int rc;
    while ((rc = wire_next(&p, end, &f)) == 1) {
        if (f.num != WIRE_STRING_LIST_VALUES || f.type != WIRE_LEN)
            continue;
        if (j->nstrs == j->strcap) {
            size_t cap = j->strcap ? j->strcap * 2 : READ_STRS_MIN;
            char **ns = realloc(j->strs, cap * sizeof *ns);
            if (!ns)
                return ST_ENOMEM;
            j->strs = ns;
            j->strcap = cap;
        }
        char *s = strndup((const char *)f.data, f.len);
        if (!s)
            return ST_ENOMEM;
        j->strs[j->nstrs++] = s;
    }
    return rc < 0 ? rc : 0;
}

static int read_build(void *ctx, const fanout_call_t *c, uint8_t *type, unsigned *timeout_ms,
                      st_buf_t *out)
{
    rjob_t *j = ctx;
    const selector_t *s = j->nsel ? &j->sel[c->item] : NULL;
    *type = j->kind == K_EXPORT   ? RPC_EXPORT
            : j->kind == K_SERIES ? RPC_SERIES
            : j->kind == K_LABELS ? RPC_LABEL_NAMES
                                  : RPC_LABEL_VALUES;
    /* the deadline rules of the head comment */
    int64_t left = j->started ? j->r->timeout_ms : j->deadline - st_mono_ms();
    if (left <= 0)
        return ST_ETIMEDOUT; /* read_failed: past the deadline */
    *timeout_ms = (unsigned)fanout_try_ms(left, (uint32_t)j->need,
                                          topo_replication_factor(j->r->topo), READ_TRY_MIN_MS);
    router_read_req_t rq = {.m = s ? s->m : NULL,
                            .nm = s ? s->n : 0,
                            .start = j->start,
                            .end = j->end,
                            .max_series = READ_SERIES_PER_PAGE,
                            .label_name = j->label_name,
                            .timeout_ms = *timeout_ms};
    return router_pack_read(out, c, &rq);
}

static int read_reply(void *ctx, fanout_call_t *c, const uint8_t *payload, size_t len)
{
    rjob_t *j = ctx;
    if (j->closed) {
        if (j->started)
            http_respond_end(j->req);
        return FANOUT_STOP;
    }
    if (j->kind == K_LABELS || j->kind == K_VALUES) {
        if (add_strings(j, payload, len) < 0) {
            fail_unavailable(j, c, "malformed reply");
            return FANOUT_STOP;
        }
        return FANOUT_DONE;
    }
    /* export / series page: convert off the loop, the call held meanwhile */
    j->page = malloc(len ? len : 1);
    if (!j->page) {
        fail_unavailable(j, c, "out of memory");
        return FANOUT_STOP;
    }
    if (len)
        memcpy(j->page, payload, len);
    j->page_len = len;
    j->held = c;
    j->set.origin = c->node; /* read repair: which replica sent these series */
    j->w.data = j;
    j->busy = 1;
    if (uv_queue_work(j->r->loop, &j->w, page_work, page_after) != 0) {
        j->busy = 0;
        j->held = NULL;
        fail_unavailable(j, c, "cannot queue work");
        return FANOUT_STOP;
    }
    return FANOUT_HOLD;
}

/* A replica failed: its shards move on to their next replica, unless part
 * of its answer was already streamed (then the stream ends with an error
 * line) or the node rejected the read itself. */
static int read_failed(void *ctx, const fanout_call_t *c, const fanout_failure_t *f)
{
    rjob_t *j = ctx;
    if (j->closed) {
        if (j->started)
            http_respond_end(j->req);
        return FANOUT_STOP;
    }
    if (f->at_send)
        snprintf(j->why, sizeof j->why, "%s",
                 f->status == ST_EBUSY ? "node queue full (overloaded)" : st_strerror(f->status));
    else if (f->node_said && f->len)
        snprintf(j->why, sizeof j->why, "%.*s",
                 (int)(f->len < READ_NODE_TEXT_MAX ? f->len : READ_NODE_TEXT_MAX),
                 (const char *)f->msg);
    else
        snprintf(j->why, sizeof j->why, "%s", st_strerror(f->status));
    if (f->status == ST_ETIMEDOUT && !j->started &&
        st_mono_ms() >= j->deadline - READ_DEADLINE_SLACK_MS) {
        char msg[READ_MSG_MAX];
        snprintf(msg, sizeof msg, "read did not complete within request_timeout (%lld ms): %s",
                 (long long)j->r->timeout_ms, j->why);
        metric_counter_inc(j->r->q_refused[PROMQL_LIMIT_TIMEOUT]);
        router_prom_error(j->req, 503, "timeout", msg);
        return FANOUT_STOP;
    }
    if (f->node_said && (f->status == ST_EINVAL || f->status == ST_ELIMIT)) {
        /* the node rejected the query itself (a bad regex: 400; a regex over
         * its match limit: 422, as a query refused by a limit) */
        int lim = f->status == ST_ELIMIT;
        if (lim && strstr(j->why, "match limit"))
            metric_counter_inc(j->r->q_refused[PROMQL_LIMIT_REGEX]);
        if (j->started)
            http_respond_end(j->req);
        else
            router_prom_error(j->req, lim ? 422 : 400, lim ? "execution" : "bad_data", j->why);
        return FANOUT_STOP;
    }
    if (j->emitted_group == c->group) {
        fail_unavailable(j, c, j->why);
        return FANOUT_STOP;
    }
    st_warn("read failed over", "node=%s err=\"%s\"", topo_node_id(j->r->topo, c->node), j->why);
    metric_counter_inc(j->r->rpc_fail);
    return FANOUT_FAILOVER;
}

static void read_end(void *ctx, fanout_how_t how, const fanout_call_t *c)
{
    rjob_t *j = ctx;
    if (how == FANOUT_COMPLETE) {
        finish(j);
    } else if (c) {
        fail_unavailable(j, c, how == FANOUT_NOMEM ? "out of memory" : j->why);
    } else if (how == FANOUT_UNAVAILABLE) {
        /* never a silent partial result: a shard without enough reachable
         * replicas fails the read now, naming it, unless partial_response=1 */
        char msg[READ_MSG_MAX];
        fanout_unavailable_msg(j->fan, msg, sizeof msg);
        metric_counter_inc(j->r->rpc_fail);
        router_prom_error(j->req, 503, "unavailable", msg);
    } else {
        router_prom_error(j->req, 503, "internal", "out of memory");
    }
}

static void read_idle(void *ctx)
{
    rjob_t *j = ctx;
    j->fan_idle = 1;
    maybe_free(j);
}

static const fanout_ops_t read_ops = {read_build, read_reply, read_failed, read_end, read_idle};

int router_read_matches(const http_params_t *params, selector_t *sel, size_t max, size_t *n,
                        char *err, size_t errlen)
{
    size_t it = 0;
    const http_param_t *p;
    while ((p = http_params_next(params, "match[]", &it)) != NULL) {
        if (*n == max) {
            snprintf(err, errlen, "too many match[] parameters (max %zu)", max);
            return -1;
        }
        char perr[300];
        if (selector_parse(p->value, p->value_len, &sel[*n], perr, sizeof perr)) {
            snprintf(err, errlen, "invalid parameter \"match[]\": %s", perr);
            return -1;
        }
        (*n)++;
    }
    return 0;
}

int router_read_confine(const http_req_t *req, selector_t *sel, size_t max, size_t *n, char *err,
                        size_t errlen)
{
    const auth_user_t *u = auth_gate_user(req);
    const st_matcher_t *m;
    size_t nm = u ? auth_user_matchers(u, &m) : 0;
    if (!nm)
        return 0;
    if (*n == 0 && max > 0) {
        memset(&sel[0], 0, sizeof sel[0]); /* no arena: the matchers are the user's */
        *n = 1;
    }
    for (size_t i = 0; i < *n; i++) {
        if (sel[i].n + nm > SELECTOR_MAX_MATCHERS) {
            snprintf(err, errlen,
                     "invalid parameter \"match[]\": more than %d matchers with the user's "
                     "selector",
                     SELECTOR_MAX_MATCHERS);
            return -1;
        }
        memcpy(&sel[i].m[sel[i].n], m, nm * sizeof *m);
        sel[i].n += nm;
    }
    return 0;
}

/* Parse params, plan which node serves which shards, start (fmt_arg is
 * the job's from here). */
static void start_read(router_t *r, http_req_t *req, int kind, const char *label_name,
                       const router_export_fmt_t *fmt, void *fmt_arg)
{
    metric_counter_inc(r->reads);
    rjob_t *j = calloc(1, sizeof *j);
    if (!j) {
        if (fmt && fmt->free_arg)
            fmt->free_arg(fmt_arg);
        http_respond_error(req, 503, "out of memory");
        return;
    }
    j->fmt = fmt;
    j->fmt_arg = fmt_arg;
    j->r = r;
    j->req = req;
    j->kind = kind;
    j->start = INT64_MIN;
    j->end = INT64_MAX;
    st_buf_init(&j->acc);
    st_buf_init(&j->json);
    char err[400];
    const char *v;
    http_params_t params;
    if (router_read_load(req, &params, err, sizeof err))
        goto bad;
    if ((v = http_params_get(&params, "start")) && *v &&
        http_parse_time_ms(v, strlen(v), &j->start) != 0) {
        snprintf(err, sizeof err, "invalid parameter \"start\": cannot parse \"%.64s\" as a time",
                 v);
        goto bad;
    }
    if ((v = http_params_get(&params, "end")) && *v &&
        http_parse_time_ms(v, strlen(v), &j->end) != 0) {
        snprintf(err, sizeof err, "invalid parameter \"end\": cannot parse \"%.64s\" as a time", v);
        goto bad;
    }
    if (j->end < j->start) {
        snprintf(err, sizeof err, "end timestamp must not be before start time");
        goto bad;
    }
    if (router_read_matches(&params, j->sel, MAX_SEL, &j->nsel, err, sizeof err))
        goto bad;
    if (j->nsel == 0 && (kind == K_EXPORT || kind == K_SERIES)) {
        snprintf(err, sizeof err, "no match[] parameter provided");
        goto bad;
    }
    if (router_read_confine(req, j->sel, MAX_SEL, &j->nsel, err, sizeof err))
        goto bad;
    if (label_name && !(j->label_name = strdup(label_name))) {
        snprintf(err, sizeof err, "out of memory");
        goto bad;
    }
    if (router_read_params(r, &params, &j->need, &j->partial, err, sizeof err))
        goto bad;
    j->buffered = kind == K_EXPORT && j->need > 1;
    sset_init(&j->set, READ_QUORUM_MAX_SAMPLES);
    j->emitted_group = SIZE_MAX;
    j->deadline = st_mono_ms() + r->timeout_ms;
    /* one call at a time, in plan order: pages stream as they come */
    fanout_cfg_t cfg =
        router_fanout_cfg(r, j->need, j->partial, j->nsel ? j->nsel : 1, 1, &read_ops, j);
    if (fanout_create(&cfg, &j->fan)) {
        snprintf(err, sizeof err, "out of memory");
        goto bad;
    }
    http_params_deinit(&params);
    fanout_start(j->fan); /* the job is the fan-out's from here */
    return;
bad:
    http_params_deinit(&params);
    router_prom_error(req, 400, "bad_data", err);
    free_job(j);
}

void router_handle_export(router_t *r, http_req_t *req)
{
    start_read(r, req, K_EXPORT, NULL, NULL, NULL);
}

void router_handle_series(router_t *r, http_req_t *req)
{
    start_read(r, req, K_SERIES, NULL, NULL, NULL);
}

void router_handle_labels(router_t *r, http_req_t *req, const char *label_name)
{
    start_read(r, req, label_name ? K_VALUES : K_LABELS, label_name, NULL, NULL);
}

void router_handle_export_as(router_t *r, http_req_t *req, const router_export_fmt_t *fmt,
                             void *arg)
{
    start_read(r, req, K_EXPORT, NULL, fmt, arg);
}

void router_collect_strings(router_t *r, http_req_t *req, const char *label_name, const char *match,
                            router_strings_fn fn, void *arg)
{
    metric_counter_inc(r->reads);
    rjob_t *j = calloc(1, sizeof *j);
    char err[400];
    if (!j || (label_name && !(j->label_name = strdup(label_name)))) {
        free(j);
        http_respond_error(req, 503, "out of memory");
        return;
    }
    j->r = r;
    j->req = req;
    j->kind = label_name ? K_VALUES : K_LABELS;
    j->start = INT64_MIN;
    j->end = INT64_MAX;
    j->strings_fn = fn;
    j->strings_arg = arg;
    st_buf_init(&j->acc);
    st_buf_init(&j->json);
    http_params_t params;
    http_params_init(&params);
    if (match && selector_parse(match, strlen(match), &j->sel[0], err, sizeof err) == 0)
        j->nsel = 1;
    else if (match)
        goto bad;
    if (router_read_confine(req, j->sel, MAX_SEL, &j->nsel, err, sizeof err))
        goto bad;
    if (router_read_params(r, &params, &j->need, &j->partial, err, sizeof err))
        goto bad;
    sset_init(&j->set, READ_QUORUM_MAX_SAMPLES);
    j->emitted_group = SIZE_MAX;
    j->deadline = st_mono_ms() + r->timeout_ms;
    fanout_cfg_t cfg =
        router_fanout_cfg(r, j->need, j->partial, j->nsel ? j->nsel : 1, 1, &read_ops, j);
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
    free_job(j);
}
